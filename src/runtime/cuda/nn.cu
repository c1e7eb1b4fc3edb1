// Neural-network kernels: embedding gather and its deterministic scatter-add, softmax (+grad),
// layer norm (+grad), softmax cross-entropy (+grad). One block per row; fp32 statistics; column
// sums and the loss mean go through fixed-order partial sums so that a seed reproduces a run.
#include <cub/device/device_radix_sort.cuh>

#include <cstdint>
#include <initializer_list>

#include "device_util.cuh"
#include "kernels.h"

namespace strata::runtime::cuda::kernels {
namespace {

using device::block_reduce;
using device::grid_for;
using device::kThreads;
using device::load;
using device::store;

__global__ void gather_kernel(const void* table, Elem te, const int32_t* ids, int64_t count, int64_t vocab, int64_t row,
                              void* out, Elem oe, int32_t* flag, int32_t code) {
  for (int64_t e = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; e < count; e += int64_t{gridDim.x} * blockDim.x) {
    const int64_t i = e / row;
    int64_t id = ids[i];
    if (id < 0 || id >= vocab) {
      atomicCAS(flag, 0, code);
      id = 0;
    }
    store(out, oe, e, load(table, te, id * row + e % row));
  }
}

__global__ void iota_kernel(int32_t* out, int64_t count) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < count; i += int64_t{gridDim.x} * blockDim.x) {
    out[i] = static_cast<int32_t>(i);
  }
}

// Thread (i, column): if sorted position i starts a run of equal ids, sums that run's dy rows in
// token order into dtable[id].
__global__ void segment_sum_kernel(const int32_t* keys, const int32_t* positions, int64_t count, const void* dy,
                                   Elem dye, int64_t vocab, int64_t row, void* dtable, Elem de, int32_t* flag,
                                   int32_t code) {
  const int64_t i = blockIdx.x;
  const int64_t col = blockIdx.y * int64_t{blockDim.x} + threadIdx.x;
  if (i >= count || col >= row) return;
  const int32_t key = keys[i];
  if (i > 0 && keys[i - 1] == key) return;
  if (key < 0 || key >= vocab) {
    atomicCAS(flag, 0, code);
    return;
  }
  float acc = 0.0f;
  for (int64_t j = i; j < count && keys[j] == key; ++j) acc += load(dy, dye, positions[j] * row + col);
  store(dtable, de, key * row + col, acc);
}

// Row r of x seen as [outer, n, inner]: element j at ((r / inner) * n + j) * inner + r % inner.
struct Rows {
  int64_t n, inner;
  __device__ int64_t at(int64_t r, int64_t j) const { return ((r / inner) * n + j) * inner + r % inner; }
};

// Block-wide max and sum of exp(x - max) over one row, from one pass of online statistics.
__device__ void row_softmax_stats(const void* x, Elem xe, Rows rows, int64_t r, float* scratch, float& top,
                                  float& sum) {
  float m = -INFINITY, s = 0.0f;
  for (int64_t j = threadIdx.x; j < rows.n; j += blockDim.x) {
    const float v = load(x, xe, rows.at(r, j));
    if (v > m) {
      s = s * __expf(m - v) + 1.0f;
      m = v;
    } else {
      s += __expf(v - m);
    }
  }
  top = block_reduce<true>(m, scratch);
  sum = block_reduce<false>(m == -INFINITY ? 0.0f : s * __expf(m - top), scratch);
}

__global__ void softmax_kernel(const void* x, Elem xe, Rows rows, void* y, Elem ye) {
  __shared__ float scratch[32];
  const int64_t r = blockIdx.x;
  float top, sum;
  row_softmax_stats(x, xe, rows, r, scratch, top, sum);
  const float inv = 1.0f / sum;
  for (int64_t j = threadIdx.x; j < rows.n; j += blockDim.x) {
    const int64_t k = rows.at(r, j);
    store(y, ye, k, __expf(load(x, xe, k) - top) * inv);
  }
}

__global__ void softmax_grad_kernel(const void* y, Elem ye, const void* dy, Elem dye, Rows rows, void* dx, Elem dxe) {
  __shared__ float scratch[32];
  const int64_t r = blockIdx.x;
  float dot = 0.0f;
  for (int64_t j = threadIdx.x; j < rows.n; j += blockDim.x) {
    const int64_t k = rows.at(r, j);
    dot += load(y, ye, k) * load(dy, dye, k);
  }
  dot = block_reduce<false>(dot, scratch);
  for (int64_t j = threadIdx.x; j < rows.n; j += blockDim.x) {
    const int64_t k = rows.at(r, j);
    store(dx, dxe, k, load(y, ye, k) * (load(dy, dye, k) - dot));
  }
}

// Mean and reciprocal standard deviation (biased variance) of row r of x[rows, h], two passes.
__device__ void row_moments(const void* x, Elem xe, int64_t r, int64_t h, float eps, float* scratch, float& mean,
                            float& rstd) {
  float s = 0.0f;
  for (int64_t j = threadIdx.x; j < h; j += blockDim.x) s += load(x, xe, r * h + j);
  mean = block_reduce<false>(s, scratch) / static_cast<float>(h);
  float q = 0.0f;
  for (int64_t j = threadIdx.x; j < h; j += blockDim.x) {
    const float d = load(x, xe, r * h + j) - mean;
    q += d * d;
  }
  rstd = rsqrtf(block_reduce<false>(q, scratch) / static_cast<float>(h) + eps);
}

__global__ void layer_norm_kernel(const void* x, Elem xe, const void* gamma, Elem ge, const void* beta, Elem be,
                                  int64_t h, float eps, void* y, Elem ye) {
  __shared__ float scratch[32];
  const int64_t r = blockIdx.x;
  float mean, rstd;
  row_moments(x, xe, r, h, eps, scratch, mean, rstd);
  for (int64_t j = threadIdx.x; j < h; j += blockDim.x) {
    const float xhat = (load(x, xe, r * h + j) - mean) * rstd;
    store(y, ye, r * h + j, xhat * load(gamma, ge, j) + load(beta, be, j));
  }
}

// dx = rstd * (g - mean(g) - xhat * mean(g * xhat)), g = dy * gamma; keeps mean/rstd per row.
__global__ void layer_norm_dx_kernel(const void* x, Elem xe, const void* gamma, Elem ge, const void* dy, Elem dye,
                                     int64_t h, float eps, void* dx, Elem dxe, float* means, float* rstds) {
  __shared__ float scratch[32];
  const int64_t r = blockIdx.x;
  float mean, rstd;
  row_moments(x, xe, r, h, eps, scratch, mean, rstd);
  float sg = 0.0f, sgx = 0.0f;
  for (int64_t j = threadIdx.x; j < h; j += blockDim.x) {
    const float g = load(dy, dye, r * h + j) * load(gamma, ge, j);
    sg += g;
    sgx += g * (load(x, xe, r * h + j) - mean) * rstd;
  }
  const float mean_g = block_reduce<false>(sg, scratch) / static_cast<float>(h);
  const float mean_gx = block_reduce<false>(sgx, scratch) / static_cast<float>(h);
  for (int64_t j = threadIdx.x; j < h; j += blockDim.x) {
    const float xhat = (load(x, xe, r * h + j) - mean) * rstd;
    const float g = load(dy, dye, r * h + j) * load(gamma, ge, j);
    store(dx, dxe, r * h + j, rstd * (g - mean_g - xhat * mean_gx));
  }
  if (threadIdx.x == 0) {
    means[r] = mean;
    rstds[r] = rstd;
  }
}

// Partial column sums of dy * xhat and dy over a chunk of rows: partial[chunk][2][h].
__global__ void layer_norm_dparams_partial(const void* x, Elem xe, const void* dy, Elem dye, const float* means,
                                           const float* rstds, int64_t rows, int64_t h, int64_t chunk,
                                           float* partial) {
  const int64_t col = blockIdx.x * int64_t{blockDim.x} + threadIdx.x;
  const int64_t c = blockIdx.y;
  if (col >= h) return;
  float sg = 0.0f, sb = 0.0f;
  const int64_t end = min(rows, (c + 1) * chunk);
  for (int64_t r = c * chunk; r < end; ++r) {
    const float d = load(dy, dye, r * h + col);
    sg += d * (load(x, xe, r * h + col) - means[r]) * rstds[r];
    sb += d;
  }
  partial[(c * 2) * h + col] = sg;
  partial[(c * 2 + 1) * h + col] = sb;
}

// dgamma/dbeta = sums over chunks of partial[chunk][2][h]: 32 columns per block, each summed by
// kFinalSlices warps over every kFinalSlices-th chunk (four chunks' loads in flight), then the
// warps' sums in a fixed order (deterministic). (With 8 warps and one load at a time this took
// most of LayerNormGrad's time: ~400 chunks are 6.5 MB read by only 64 blocks.)
constexpr int kFinalSlices = 32;

__global__ void layer_norm_dparams_final(const float* partial, int64_t chunks, int64_t h, void* dgamma, Elem dge,
                                         void* dbeta, Elem dbe) {
  __shared__ float sums[2][kFinalSlices][33];
  const int lane = threadIdx.x % 32, slice = threadIdx.x / 32;
  const int64_t col = blockIdx.x * int64_t{32} + lane;
  float sg = 0.0f, sb = 0.0f;
  if (col < h) {
#pragma unroll 4
    for (int64_t c = slice; c < chunks; c += kFinalSlices) {
      sg += partial[(c * 2) * h + col];
      sb += partial[(c * 2 + 1) * h + col];
    }
  }
  sums[0][slice][lane] = sg;
  sums[1][slice][lane] = sb;
  __syncthreads();
  if (slice != 0 || col >= h) return;
  float g = 0.0f, b = 0.0f;
  for (int k = 0; k < kFinalSlices; ++k) {
    g += sums[0][k][lane];
    b += sums[1][k][lane];
  }
  store(dgamma, dge, col, g);
  store(dbeta, dbe, col, b);
}

__global__ void cross_entropy_rows_kernel(const void* logits, Elem le, const int32_t* labels, int64_t vocab,
                                          float* row_loss, int32_t* flag, int32_t code) {
  __shared__ float scratch[32];
  const int64_t r = blockIdx.x;
  float top, sum;
  row_softmax_stats(logits, le, Rows{vocab, 1}, r, scratch, top, sum);
  if (threadIdx.x == 0) {
    int64_t label = labels[r];
    if (label < 0 || label >= vocab) {
      atomicCAS(flag, 0, code);
      label = 0;
    }
    row_loss[r] = logf(sum) + top - load(logits, le, r * vocab + label);
  }
}

// One block sums the row losses in a fixed order and writes their mean.
__global__ void mean_kernel(const float* values, int64_t count, void* out, Elem oe) {
  __shared__ float scratch[32];
  float s = 0.0f;
  for (int64_t i = threadIdx.x; i < count; i += blockDim.x) s += values[i];
  s = block_reduce<false>(s, scratch);
  if (threadIdx.x == 0) store(out, oe, 0, count > 0 ? s / static_cast<float>(count) : 0.0f);
}

__global__ void cross_entropy_grad_kernel(const void* logits, Elem le, const int32_t* labels, const void* dloss,
                                          Elem dle, int64_t rows, int64_t vocab, void* dlogits, Elem de, int32_t* flag,
                                          int32_t code) {
  __shared__ float scratch[32];
  const int64_t r = blockIdx.x;
  float top, sum;
  row_softmax_stats(logits, le, Rows{vocab, 1}, r, scratch, top, sum);
  const float scale = load(dloss, dle, 0) / static_cast<float>(rows);
  int64_t label = labels[r];
  if (label < 0 || label >= vocab) {
    if (threadIdx.x == 0) atomicCAS(flag, 0, code);
    label = -1;
  }
  const float inv = 1.0f / sum;
  for (int64_t j = threadIdx.x; j < vocab; j += blockDim.x) {
    const float p = __expf(load(logits, le, r * vocab + j) - top) * inv;
    store(dlogits, de, r * vocab + j, (p - (j == label ? 1.0f : 0.0f)) * scale);
  }
}

// Cross-entropy over bf16 logit rows whose length is a multiple of 8 (the LM head's [tokens,
// vocab]): the same online statistics, eight values per 16-byte load, and the gradient written
// eight at a time; the generic kernels above read two bytes per load through a type switch.
// The gradient's write pass keeps kGradWords words a lane in flight (the loads first); the same
// for the statistics pass measured 8-9% slower on an H200 (282 -> 306 and 226 -> 248 us for the
// forward over [8192, 51200] in two runs), so it stays one word at a time.
constexpr int kGradWords = 4;

__device__ void row_softmax_stats_x8(const uint4* row, int64_t words, float* scratch, float& top, float& sum) {
  float m = -INFINITY, s = 0.0f;
  for (int64_t w = threadIdx.x; w < words; w += blockDim.x) {
    device::Bf16x8 v;
    v.word = row[w];
    float x[8];
    float wm = -INFINITY;
#pragma unroll
    for (int k = 0; k < 8; ++k) {
      x[k] = __bfloat162float(v.h[k]);
      wm = fmaxf(wm, x[k]);
    }
    if (wm > m) {
      s *= __expf(m - wm);
      m = wm;
    }
    if (m != -INFINITY) {
#pragma unroll
      for (int k = 0; k < 8; ++k) s += __expf(x[k] - m);
    }
  }
  top = block_reduce<true>(m, scratch);
  sum = block_reduce<false>(m == -INFINITY ? 0.0f : s * __expf(m - top), scratch);
}

__global__ void cross_entropy_rows_x8_kernel(const uint4* logits, const int32_t* labels, int64_t vocab,
                                             float* row_loss, int32_t* flag, int32_t code) {
  __shared__ float scratch[32];
  const int64_t r = blockIdx.x;
  float top, sum;
  row_softmax_stats_x8(logits + r * (vocab / 8), vocab / 8, scratch, top, sum);
  if (threadIdx.x == 0) {
    int64_t label = labels[r];
    if (label < 0 || label >= vocab) {
      atomicCAS(flag, 0, code);
      label = 0;
    }
    const auto* row = reinterpret_cast<const __nv_bfloat16*>(logits + r * (vocab / 8));
    row_loss[r] = logf(sum) + top - __bfloat162float(row[label]);
  }
}

__global__ void cross_entropy_grad_x8_kernel(const uint4* logits, const int32_t* labels, const void* dloss, Elem dle,
                                             int64_t rows, int64_t vocab, uint4* dlogits, int32_t* flag,
                                             int32_t code) {
  __shared__ float scratch[32];
  const int64_t r = blockIdx.x, words = vocab / 8;
  float top, sum;
  row_softmax_stats_x8(logits + r * words, words, scratch, top, sum);
  const float scale = load(dloss, dle, 0) / static_cast<float>(rows);
  int64_t label = labels[r];
  if (label < 0 || label >= vocab) {
    if (threadIdx.x == 0) atomicCAS(flag, 0, code);
    label = -1;
  }
  const float inv = 1.0f / sum;
  for (int64_t w0 = threadIdx.x; w0 < words; w0 += int64_t{kGradWords} * blockDim.x) {
    device::Bf16x8 in[kGradWords];
#pragma unroll
    for (int u = 0; u < kGradWords; ++u) {
      const int64_t w = w0 + u * int64_t{blockDim.x};
      if (w < words) in[u].word = logits[r * words + w];
    }
#pragma unroll
    for (int u = 0; u < kGradWords; ++u) {
      const int64_t w = w0 + u * int64_t{blockDim.x};
      if (w >= words) continue;
      device::Bf16x8 out;
#pragma unroll
      for (int k = 0; k < 8; ++k) {
        const float p = __expf(__bfloat162float(in[u].h[k]) - top) * inv;
        out.h[k] = __float2bfloat16_rn((p - (w * 8 + k == label ? 1.0f : 0.0f)) * scale);
      }
      dlogits[r * words + w] = out.word;
    }
  }
}

bool words_of_bf16(const void* p, Elem e, int64_t n) {
  return e == Elem::bf16 && n % 8 == 0 && reinterpret_cast<uintptr_t>(p) % 16 == 0;
}

// Rows of at most 1024 bf16 values (attention scores): one warp per row, the row held in
// registers (eight values per 16-byte load), one read and one write of device memory.
constexpr int kWarpRowWords = 4;  // 16-byte words per lane: rows up to 32 * 4 * 8 = 1024
constexpr int kRowsPerBlock = 4;

__device__ __forceinline__ float warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ __forceinline__ float warp_max(float v) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// Softmax of one row of `words` 16-byte words of bf16 (x to y) by one warp, adding add[c][k] to
// each value first when `add` is given (lane's word c, element k).
__device__ __forceinline__ void softmax_warp_row(const uint4* x, uint4* y, int64_t words, int lane,
                                                 const float (*add)[8]) {
  float v[kWarpRowWords][8];
  float top = -INFINITY;
#pragma unroll
  for (int c = 0; c < kWarpRowWords; ++c) {
    const int64_t w = lane + 32 * c;
    device::Bf16x8 in;
    in.word = w < words ? x[w] : make_uint4(0, 0, 0, 0);
#pragma unroll
    for (int k = 0; k < 8; ++k) {
      v[c][k] = w < words ? __bfloat162float(in.h[k]) + (add ? add[c][k] : 0.0f) : -INFINITY;
      top = fmaxf(top, v[c][k]);
    }
  }
  top = warp_max(top);
  float sum = 0.0f;
#pragma unroll
  for (int c = 0; c < kWarpRowWords; ++c)
#pragma unroll
    for (int k = 0; k < 8; ++k) {
      v[c][k] = __expf(v[c][k] - top);
      sum += v[c][k];
    }
  const float inv = 1.0f / warp_sum(sum);
#pragma unroll
  for (int c = 0; c < kWarpRowWords; ++c) {
    const int64_t w = lane + 32 * c;
    if (w >= words) continue;
    device::Bf16x8 out;
#pragma unroll
    for (int k = 0; k < 8; ++k) out.h[k] = __float2bfloat16_rn(v[c][k] * inv);
    y[w] = out.word;
  }
}

__global__ void softmax_warp_kernel(const uint4* x, uint4* y, int64_t rows, int64_t words) {
  const int64_t row = blockIdx.x * int64_t{kRowsPerBlock} + threadIdx.x / 32;
  if (row >= rows) return;
  softmax_warp_row(x + row * words, y + row * words, words, threadIdx.x % 32, nullptr);
}

__global__ void softmax_grad_warp_kernel(const uint4* y, const uint4* dy, uint4* dx, int64_t rows, int64_t words) {
  const int64_t row = blockIdx.x * int64_t{kRowsPerBlock} + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (row >= rows) return;
  device::Bf16x8 ys[kWarpRowWords], ds[kWarpRowWords];
  float dot = 0.0f;
#pragma unroll
  for (int c = 0; c < kWarpRowWords; ++c) {
    const int64_t w = lane + 32 * c;
    ys[c].word = w < words ? y[row * words + w] : make_uint4(0, 0, 0, 0);
    ds[c].word = w < words ? dy[row * words + w] : make_uint4(0, 0, 0, 0);
#pragma unroll
    for (int k = 0; k < 8; ++k) dot += __bfloat162float(ys[c].h[k]) * __bfloat162float(ds[c].h[k]);
  }
  dot = warp_sum(dot);
#pragma unroll
  for (int c = 0; c < kWarpRowWords; ++c) {
    const int64_t w = lane + 32 * c;
    if (w >= words) continue;
    device::Bf16x8 out;
#pragma unroll
    for (int k = 0; k < 8; ++k) {
      out.h[k] = __float2bfloat16_rn(__bfloat162float(ys[c].h[k]) * (__bfloat162float(ds[c].h[k]) - dot));
    }
    dx[row * words + w] = out.word;
  }
}

// y = softmax(x + bias) over rows of x[rows, n], one block per row: the attention mask folded into
// the softmax (no [B, N, S, S] sum written and read back). Bias element j of row r lives at
// offset_of(bias_rows, r) + j * bias_col.
__global__ void softmax_bias_kernel(const void* x, Elem xe, const void* bias, Elem be, View bias_rows, int64_t bias_col,
                                    int64_t n, void* y, Elem ye) {
  __shared__ float scratch[32];
  const int64_t r = blockIdx.x;
  const int64_t boff = device::offset_of(bias_rows, r);
  float m = -INFINITY, s = 0.0f;
  for (int64_t j = threadIdx.x; j < n; j += blockDim.x) {
    const float v = load(x, xe, r * n + j) + load(bias, be, boff + j * bias_col);
    if (v > m) {
      s = s * __expf(m - v) + 1.0f;
      m = v;
    } else {
      s += __expf(v - m);
    }
  }
  const float top = block_reduce<true>(m, scratch);
  const float inv = 1.0f / block_reduce<false>(m == -INFINITY ? 0.0f : s * __expf(m - top), scratch);
  for (int64_t j = threadIdx.x; j < n; j += blockDim.x) {
    const float v = load(x, xe, r * n + j) + load(bias, be, boff + j * bias_col);
    store(y, ye, r * n + j, __expf(v - top) * inv);
  }
}

// How softmax_bias_warp_kernel reads the bias: element by element through its view, or, for
// contiguous bias rows at a multiple of 8 elements from a 16-byte aligned base, eight values per
// step (one 16-byte bf16 word, two fp32 float4s).
enum class BiasRead { scalar, bf16x8, f32x8 };

// The same for bf16 rows of at most 1024 values, one warp per row (as softmax_warp_kernel).
template <BiasRead kRead>
__global__ void softmax_bias_warp_kernel(const uint4* x, const void* bias, Elem be, View bias_rows, int64_t bias_col,
                                         uint4* y, int64_t rows, int64_t words) {
  const int64_t row = blockIdx.x * int64_t{kRowsPerBlock} + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (row >= rows) return;
  const int64_t boff = device::offset_of(bias_rows, row);
  float add[kWarpRowWords][8];
#pragma unroll
  for (int c = 0; c < kWarpRowWords; ++c) {
    const int64_t w = lane + 32 * c;
#pragma unroll
    for (int k = 0; k < 8; ++k) add[c][k] = 0.0f;
    if (w >= words) continue;
    if (kRead == BiasRead::bf16x8) {
      device::Bf16x8 b;
      b.word = static_cast<const uint4*>(bias)[boff / 8 + w];
#pragma unroll
      for (int k = 0; k < 8; ++k) add[c][k] = __bfloat162float(b.h[k]);
    } else if (kRead == BiasRead::f32x8) {
      const float4 lo = static_cast<const float4*>(bias)[boff / 4 + 2 * w];
      const float4 hi = static_cast<const float4*>(bias)[boff / 4 + 2 * w + 1];
      add[c][0] = lo.x, add[c][1] = lo.y, add[c][2] = lo.z, add[c][3] = lo.w;
      add[c][4] = hi.x, add[c][5] = hi.y, add[c][6] = hi.z, add[c][7] = hi.w;
    } else {
#pragma unroll
      for (int k = 0; k < 8; ++k) add[c][k] = load(bias, be, boff + (w * 8 + k) * bias_col);
    }
  }
  softmax_warp_row(x + row * words, y + row * words, words, lane, add);
}

// softmax(x + bias) where row p * q_rows + q of x adds bias row q (bias element j of row q at
// q * bias_stride + j): the [S, S] mask broadcast over [B, N]. A warp loads one bias row once and
// runs the rows of kRowsPerWarp values of p with it, so the mask is read from L2 once per
// kRowsPerWarp rows instead of once per row, and no row needs an index division.
constexpr int kRowsPerWarp = 8;

template <BiasRead kRead>
__global__ void softmax_bias_rows_kernel(const uint4* x, const void* bias, int64_t bias_stride, int64_t p_rows,
                                         int64_t q_rows, uint4* y, int64_t words) {
  const int64_t warp = blockIdx.x * int64_t{kRowsPerBlock} + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  const int64_t q = warp % q_rows, p0 = (warp / q_rows) * kRowsPerWarp;
  if (p0 >= p_rows) return;
  float add[kWarpRowWords][8];
#pragma unroll
  for (int c = 0; c < kWarpRowWords; ++c) {
    const int64_t w = lane + 32 * c;
    const int64_t at = q * bias_stride + w * 8;
#pragma unroll
    for (int k = 0; k < 8; ++k) add[c][k] = 0.0f;
    if (w >= words) continue;
    if (kRead == BiasRead::bf16x8) {
      device::Bf16x8 b;
      b.word = static_cast<const uint4*>(bias)[at / 8];
#pragma unroll
      for (int k = 0; k < 8; ++k) add[c][k] = __bfloat162float(b.h[k]);
    } else {
      const float4 lo = static_cast<const float4*>(bias)[at / 4];
      const float4 hi = static_cast<const float4*>(bias)[at / 4 + 1];
      add[c][0] = lo.x, add[c][1] = lo.y, add[c][2] = lo.z, add[c][3] = lo.w;
      add[c][4] = hi.x, add[c][5] = hi.y, add[c][6] = hi.z, add[c][7] = hi.w;
    }
  }
  const int64_t p_end = min(p_rows, p0 + kRowsPerWarp);
  for (int64_t p = p0; p < p_end; ++p) {
    const int64_t row = p * q_rows + q;
    softmax_warp_row(x + row * words, y + row * words, words, lane, add);
  }
}

// The leading-dims view of a bias as (p_rows, q_rows, q stride) when row r reads bias row
// r % q_rows (outer dims broadcast, inner dims one strided run); false otherwise.
bool bias_row_period(const View& rows, int64_t& p_rows, int64_t& q_rows, int64_t& q_stride) {
  p_rows = 1, q_rows = 1, q_stride = 0;
  int32_t d = rows.rank - 1;
  for (; d >= 0 && (rows.shape[d] == 1 || rows.stride[d] != 0); --d) {
    if (rows.shape[d] == 1) continue;
    if (q_rows > 1 && rows.stride[d] != q_stride * q_rows) return false;
    if (q_rows == 1) q_stride = rows.stride[d];
    q_rows *= rows.shape[d];
  }
  for (; d >= 0; --d) {
    if (rows.shape[d] != 1 && rows.stride[d] != 0) return false;
    p_rows *= rows.shape[d];
  }
  return true;
}

// Layer norm over bf16 rows of h = 8 * words values, one warp per row, the row in registers as
// 16-byte words (kWords per lane, h <= 256 * kWords): one read of x (and dy), one write.
template <int kWords>
__device__ __forceinline__ void warp_row_moments(const device::Bf16x8 (&xs)[kWords], int lane, int64_t words,
                                                 float eps, float& mean, float& rstd) {
  const float h = static_cast<float>(words * 8);
  float s = 0.0f;
#pragma unroll
  for (int c = 0; c < kWords; ++c)
#pragma unroll
    for (int k = 0; k < 8; ++k) s += __bfloat162float(xs[c].h[k]);  // words past the row are zero
  mean = warp_sum(s) / h;
  float q = 0.0f;
#pragma unroll
  for (int c = 0; c < kWords; ++c) {
    if (lane + 32 * c >= words) continue;
#pragma unroll
    for (int k = 0; k < 8; ++k) {
      const float d = __bfloat162float(xs[c].h[k]) - mean;
      q += d * d;
    }
  }
  rstd = rsqrtf(warp_sum(q) / h + eps);
}

template <int kWords>
__global__ void layer_norm_warp_kernel(const uint4* x, const void* gamma, Elem ge, const void* beta, Elem be,
                                       int64_t rows, int64_t words, float eps, uint4* y) {
  const int64_t row = blockIdx.x * int64_t{kRowsPerBlock} + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (row >= rows) return;
  device::Bf16x8 xs[kWords];
#pragma unroll
  for (int c = 0; c < kWords; ++c) {
    const int64_t w = lane + 32 * c;
    xs[c].word = w < words ? x[row * words + w] : make_uint4(0, 0, 0, 0);
  }
  float mean, rstd;
  warp_row_moments<kWords>(xs, lane, words, eps, mean, rstd);
#pragma unroll
  for (int c = 0; c < kWords; ++c) {
    const int64_t w = lane + 32 * c;
    if (w >= words) continue;
    float g[8], b[8];
    device::load8(gamma, ge, w * 8, g);
    device::load8(beta, be, w * 8, b);
    device::Bf16x8 out;
#pragma unroll
    for (int k = 0; k < 8; ++k) {
      out.h[k] = __float2bfloat16_rn((__bfloat162float(xs[c].h[k]) - mean) * rstd * g[k] + b[k]);
    }
    y[row * words + w] = out.word;
  }
}

// Floats of one warp's column sums in layer_norm_grad_warp_kernel.
template <int kWords>
constexpr int kGradSliceFloats = 2 * kWords * 8 * 32;

// LayerNormGrad over bf16 rows of h = 8 * words values in one pass over x and dy: dx = rstd * (g -
// mean(g) - xhat * mean(g * xhat)), g = dy * gamma, one warp per row as layer_norm_warp_kernel; and
// the column sums of dy * xhat and dy over the block's `chunk` rows (warp q takes every
// kRowsPerBlock-th row from q): each lane adds its columns into its own slots of the warp's
// shared-memory slice (laid out [sum][column within the lane's words][lane]: no bank conflicts,
// no atomics), then the block adds the slices in warp order into partial[block][2][h]. Fixed
// orders throughout, so the sums are deterministic.
template <int kWords>
__global__ void layer_norm_grad_warp_kernel(const uint4* x, const void* gamma, Elem ge, const uint4* dy, int64_t rows,
                                            int64_t words, int64_t chunk, float eps, uint4* dx, float* partial) {
  extern __shared__ float slices[];  // [kRowsPerBlock][kGradSliceFloats<kWords>]
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  float* mine = slices + warp * kGradSliceFloats<kWords>;
#pragma unroll
  for (int i = 0; i < 2 * kWords * 8; ++i) mine[i * 32 + lane] = 0.0f;
  const float h = static_cast<float>(words * 8);
  const int64_t begin = blockIdx.x * chunk, end = min(rows, begin + chunk);
  // Rows of up to 2048 values: the warp's next row is loaded while this one is computed (twice the
  // registers, twice the bytes in flight); wider rows would spill.
  constexpr bool kPrefetch = kWords <= 8;
  auto load_row = [&](int64_t r, device::Bf16x8(&xr)[kWords], device::Bf16x8(&dr)[kWords]) {
#pragma unroll
    for (int c = 0; c < kWords; ++c) {
      const int64_t w = lane + 32 * c;
      const bool in = r < end && w < words;
      xr[c].word = in ? x[r * words + w] : make_uint4(0, 0, 0, 0);
      dr[c].word = in ? dy[r * words + w] : make_uint4(0, 0, 0, 0);
    }
  };
  device::Bf16x8 xs[kWords], ds[kWords], xn[kWords], dn[kWords];
  if (kPrefetch) load_row(begin + warp, xs, ds);
  for (int64_t row = begin + warp; row < end; row += kRowsPerBlock) {
    if (kPrefetch) {
      load_row(row + kRowsPerBlock, xn, dn);
    } else {
      load_row(row, xs, ds);
    }
    float mean, rstd;
    warp_row_moments<kWords>(xs, lane, words, eps, mean, rstd);
    float sg = 0.0f, sgx = 0.0f;
#pragma unroll
    for (int c = 0; c < kWords; ++c) {
      const int64_t w = lane + 32 * c;
      if (w >= words) continue;
      float gam[8];
      device::load8(gamma, ge, w * 8, gam);
#pragma unroll
      for (int k = 0; k < 8; ++k) {
        const float d = __bfloat162float(ds[c].h[k]), xhat = (__bfloat162float(xs[c].h[k]) - mean) * rstd;
        const float g = d * gam[k];
        sg += g;
        sgx += g * xhat;
        mine[(c * 8 + k) * 32 + lane] += d * xhat;
        mine[((kWords + c) * 8 + k) * 32 + lane] += d;
      }
    }
    const float mean_g = warp_sum(sg) / h, mean_gx = warp_sum(sgx) / h;
#pragma unroll
    for (int c = 0; c < kWords; ++c) {
      const int64_t w = lane + 32 * c;
      if (w >= words) continue;
      float gam[8];
      device::load8(gamma, ge, w * 8, gam);
      device::Bf16x8 out;
#pragma unroll
      for (int k = 0; k < 8; ++k) {
        const float xhat = (__bfloat162float(xs[c].h[k]) - mean) * rstd;
        const float g = __bfloat162float(ds[c].h[k]) * gam[k];
        out.h[k] = __float2bfloat16_rn(rstd * (g - mean_g - xhat * mean_gx));
      }
      dx[row * words + w] = out.word;
    }
    if (kPrefetch) {
#pragma unroll
      for (int c = 0; c < kWords; ++c) xs[c] = xn[c], ds[c] = dn[c];
    }
  }
  __syncthreads();
  const int64_t columns = words * 8;
  for (int64_t j = threadIdx.x; j < columns; j += blockDim.x) {
    const int64_t w = j / 8;
    const int at = static_cast<int>((w / 32) * 8 + j % 8) * 32 + static_cast<int>(w % 32);
    float sg = 0.0f, sb = 0.0f;
#pragma unroll
    for (int q = 0; q < kRowsPerBlock; ++q) {
      sg += slices[q * kGradSliceFloats<kWords> + at];
      sb += slices[q * kGradSliceFloats<kWords> + kWords * 8 * 32 + at];
    }
    partial[(blockIdx.x * int64_t{2}) * columns + j] = sg;
    partial[(blockIdx.x * int64_t{2} + 1) * columns + j] = sb;
  }
}

// Words per lane of a warp row for h bf16 values (0: no warp kernel).
int layer_norm_warp_words(int64_t h) {
  if (h % 8 != 0) return 0;
  const int64_t words = h / 8;
  return words <= 128 ? 4 : words <= 256 ? 8 : words <= 512 ? 16 : 0;
}

bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

bool warp_rows_fit(int64_t n, int64_t inner, std::initializer_list<std::pair<const void*, Elem>> tensors) {
  if (inner != 1 || n % 8 != 0 || n > 32 * kWarpRowWords * 8) return false;
  for (const auto& [p, e] : tensors) {
    if (e != Elem::bf16 || reinterpret_cast<uintptr_t>(p) % 16 != 0) return false;
  }
  return true;
}

unsigned warp_row_blocks(int64_t rows) { return static_cast<unsigned>((rows + kRowsPerBlock - 1) / kRowsPerBlock); }

// Threads per row block: enough to cover short rows, 256 (8 warps) for long ones.
unsigned row_threads(int64_t n) { return n >= 256 ? 256u : (n > 64 ? 128u : 64u); }

}  // namespace

Status gather(const void* table, Elem te, const int32_t* ids, int64_t id_count, int64_t vocab, int64_t row, void* out,
              Elem oe, int32_t* flag, int32_t code, cudaStream_t stream) {
  const int64_t count = id_count * row;
  if (count == 0) return Status::ok();
  gather_kernel<<<grid_for(count), kThreads, 0, stream>>>(table, te, ids, count, vocab, row, out, oe, flag, code);
  STRATA_CUDA_LAUNCHED("gather");
  return Status::ok();
}

Status gather_grad(const int32_t* ids, int64_t id_count, const void* dy, Elem dye, int64_t vocab, int64_t row,
                   void* dtable, Elem de, int32_t* flag, int32_t code, cudaStream_t stream) {
  STRATA_RETURN_IF_ERROR(fill(dtable, de, vocab * row, 0.0f, stream));
  if (id_count == 0 || row == 0) return Status::ok();
  STRATA_CHECK(id_count < (int64_t{1} << 31), "gather_grad: too many ids");
  const int n = static_cast<int>(id_count);
  int32_t* buffers = nullptr;  // positions in, keys out, positions out
  STRATA_CUDA_CALL(cudaMallocAsync(reinterpret_cast<void**>(&buffers), sizeof(int32_t) * 3 * id_count, stream));
  int32_t* positions_in = buffers;
  int32_t* keys_out = buffers + id_count;
  int32_t* positions_out = buffers + 2 * id_count;
  iota_kernel<<<grid_for(id_count), kThreads, 0, stream>>>(positions_in, id_count);
  STRATA_CUDA_LAUNCHED("iota");
  size_t temp_bytes = 0;
  STRATA_CUDA_CALL(cub::DeviceRadixSort::SortPairs(nullptr, temp_bytes, ids, keys_out, positions_in, positions_out, n,
                                                   0, 32, stream));
  void* temp = nullptr;
  STRATA_CUDA_CALL(cudaMallocAsync(&temp, temp_bytes, stream));
  STRATA_CUDA_CALL(cub::DeviceRadixSort::SortPairs(temp, temp_bytes, ids, keys_out, positions_in, positions_out, n, 0,
                                                   32, stream));
  const dim3 grid(static_cast<unsigned>(id_count), static_cast<unsigned>((row + kThreads - 1) / kThreads));
  segment_sum_kernel<<<grid, kThreads, 0, stream>>>(keys_out, positions_out, id_count, dy, dye, vocab, row, dtable, de,
                                                    flag, code);
  STRATA_CUDA_LAUNCHED("gather_grad");
  STRATA_CUDA_CALL(cudaFreeAsync(temp, stream));
  STRATA_CUDA_CALL(cudaFreeAsync(buffers, stream));
  return Status::ok();
}

Status softmax(const void* x, Elem xe, int64_t outer, int64_t n, int64_t inner, void* y, Elem ye, cudaStream_t stream) {
  if (outer * inner == 0 || n == 0) return Status::ok();
  if (warp_rows_fit(n, inner, {{x, xe}, {y, ye}})) {
    softmax_warp_kernel<<<warp_row_blocks(outer), 32 * kRowsPerBlock, 0, stream>>>(
        static_cast<const uint4*>(x), static_cast<uint4*>(y), outer, n / 8);
    STRATA_CUDA_LAUNCHED("softmax_warp");
    return Status::ok();
  }
  softmax_kernel<<<static_cast<unsigned>(outer * inner), row_threads(n), 0, stream>>>(x, xe, Rows{n, inner}, y, ye);
  STRATA_CUDA_LAUNCHED("softmax");
  return Status::ok();
}

Status softmax_bias(const void* x, Elem xe, const void* bias, Elem be, const View& bias_rows, int64_t bias_col,
                    int64_t rows, int64_t n, void* y, Elem ye, cudaStream_t stream) {
  if (rows == 0 || n == 0) return Status::ok();
  if (warp_rows_fit(n, 1, {{x, xe}, {y, ye}})) {
    bool vec = be != Elem::i32 && bias_col == 1 && reinterpret_cast<uintptr_t>(bias) % 16 == 0 &&
               bias_rows.offset % 8 == 0;
    for (int32_t d = 0; d < bias_rows.rank; ++d) vec = vec && bias_rows.stride[d] % 8 == 0;
    const unsigned blocks = warp_row_blocks(rows);
    const auto* xw = static_cast<const uint4*>(x);
    auto* yw = static_cast<uint4*>(y);
    int64_t p_rows = 1, q_rows = 1, q_stride = 0;
    if (vec && bias_row_period(bias_rows, p_rows, q_rows, q_stride)) {
      const int64_t warps = q_rows * ((p_rows + kRowsPerWarp - 1) / kRowsPerWarp);
      const unsigned row_blocks = warp_row_blocks(warps);
      if (be == Elem::bf16) {
        softmax_bias_rows_kernel<BiasRead::bf16x8><<<row_blocks, 32 * kRowsPerBlock, 0, stream>>>(
            xw, static_cast<const char*>(bias) + bias_rows.offset * 2, q_stride, p_rows, q_rows, yw, n / 8);
      } else {
        softmax_bias_rows_kernel<BiasRead::f32x8><<<row_blocks, 32 * kRowsPerBlock, 0, stream>>>(
            xw, static_cast<const char*>(bias) + bias_rows.offset * 4, q_stride, p_rows, q_rows, yw, n / 8);
      }
      STRATA_CUDA_LAUNCHED("softmax_bias_rows");
      return Status::ok();
    }
    if (vec && be == Elem::bf16) {
      softmax_bias_warp_kernel<BiasRead::bf16x8><<<blocks, 32 * kRowsPerBlock, 0, stream>>>(
          xw, bias, be, bias_rows, bias_col, yw, rows, n / 8);
    } else if (vec) {
      softmax_bias_warp_kernel<BiasRead::f32x8><<<blocks, 32 * kRowsPerBlock, 0, stream>>>(
          xw, bias, be, bias_rows, bias_col, yw, rows, n / 8);
    } else {
      softmax_bias_warp_kernel<BiasRead::scalar><<<blocks, 32 * kRowsPerBlock, 0, stream>>>(
          xw, bias, be, bias_rows, bias_col, yw, rows, n / 8);
    }
    STRATA_CUDA_LAUNCHED("softmax_bias_warp");
    return Status::ok();
  }
  softmax_bias_kernel<<<static_cast<unsigned>(rows), row_threads(n), 0, stream>>>(x, xe, bias, be, bias_rows, bias_col,
                                                                                   n, y, ye);
  STRATA_CUDA_LAUNCHED("softmax_bias");
  return Status::ok();
}

Status softmax_grad(const void* y, Elem ye, const void* dy, Elem dye, int64_t outer, int64_t n, int64_t inner, void* dx,
                    Elem dxe, cudaStream_t stream) {
  if (outer * inner == 0 || n == 0) return Status::ok();
  if (warp_rows_fit(n, inner, {{y, ye}, {dy, dye}, {dx, dxe}})) {
    softmax_grad_warp_kernel<<<warp_row_blocks(outer), 32 * kRowsPerBlock, 0, stream>>>(
        static_cast<const uint4*>(y), static_cast<const uint4*>(dy), static_cast<uint4*>(dx), outer, n / 8);
    STRATA_CUDA_LAUNCHED("softmax_grad_warp");
    return Status::ok();
  }
  softmax_grad_kernel<<<static_cast<unsigned>(outer * inner), row_threads(n), 0, stream>>>(y, ye, dy, dye,
                                                                                           Rows{n, inner}, dx, dxe);
  STRATA_CUDA_LAUNCHED("softmax_grad");
  return Status::ok();
}

Status layer_norm(const void* x, Elem xe, const void* gamma, Elem ge, const void* beta, Elem be, int64_t rows,
                  int64_t h, float eps, void* y, Elem ye, cudaStream_t stream) {
  if (rows == 0 || h == 0) return Status::ok();
  const int kw = layer_norm_warp_words(h);
  if (kw > 0 && xe == Elem::bf16 && ye == Elem::bf16 && aligned16(x) && aligned16(y) && aligned16(gamma) &&
      aligned16(beta)) {
    const auto* xw = static_cast<const uint4*>(x);
    auto* yw = static_cast<uint4*>(y);
    const unsigned blocks = warp_row_blocks(rows);
    const unsigned threads = 32 * kRowsPerBlock;
    const int64_t words = h / 8;
    if (kw == 4) {
      layer_norm_warp_kernel<4><<<blocks, threads, 0, stream>>>(xw, gamma, ge, beta, be, rows, words, eps, yw);
    } else if (kw == 8) {
      layer_norm_warp_kernel<8><<<blocks, threads, 0, stream>>>(xw, gamma, ge, beta, be, rows, words, eps, yw);
    } else {
      layer_norm_warp_kernel<16><<<blocks, threads, 0, stream>>>(xw, gamma, ge, beta, be, rows, words, eps, yw);
    }
    STRATA_CUDA_LAUNCHED("layer_norm_warp");
    return Status::ok();
  }
  layer_norm_kernel<<<static_cast<unsigned>(rows), row_threads(h), 0, stream>>>(x, xe, gamma, ge, beta, be, h, eps, y,
                                                                                 ye);
  STRATA_CUDA_LAUNCHED("layer_norm");
  return Status::ok();
}

Status layer_norm_grad(const void* x, Elem xe, const void* gamma, Elem ge, const void* dy, Elem dye, int64_t rows,
                       int64_t h, float eps, void* dx, Elem dxe, void* dgamma, Elem dge, void* dbeta, Elem dbe,
                       cudaStream_t stream) {
  if (h == 0) return Status::ok();
  if (rows == 0) {
    STRATA_RETURN_IF_ERROR(fill(dgamma, dge, h, 0.0f, stream));
    return fill(dbeta, dbe, h, 0.0f, stream);
  }
  // Chunks of rows so that (column, chunk) threads fill the chip.
  // (2^19 threads instead of 2^17 measured slower on an H200: 10.5 vs 8.9 ms for GPT-1.3B's 49.)
  int64_t chunks = std::max<int64_t>(1, std::min<int64_t>(rows / 16, (int64_t{1} << 17) / h));
  chunks = std::min<int64_t>(chunks, 65535);
  const int64_t chunk = (rows + chunks - 1) / chunks;
  chunks = (rows + chunk - 1) / chunk;
  const int kw = layer_norm_warp_words(h);
  if (kw > 0 && xe == Elem::bf16 && dye == Elem::bf16 && dxe == Elem::bf16 && aligned16(x) && aligned16(dy) &&
      aligned16(dx) && aligned16(gamma)) {
    // One pass: about three blocks of 4 warps per SM (their shared-memory slices: 8 KB per 256
    // columns of a row), each over a chunk of rows, then the chunks' column sums in a fixed order.
    const int64_t words = h / 8;
    int64_t blocks = std::min<int64_t>((rows + 4 * kRowsPerBlock - 1) / (4 * kRowsPerBlock), 3 * 132);
    const int64_t chunk = (rows + blocks - 1) / blocks;
    blocks = (rows + chunk - 1) / chunk;
    float* partial = nullptr;  // [blocks][2][h]
    STRATA_CUDA_CALL(cudaMallocAsync(reinterpret_cast<void**>(&partial), sizeof(float) * 2 * blocks * h, stream));
    const auto* xw = static_cast<const uint4*>(x);
    const auto* dyw = static_cast<const uint4*>(dy);
    auto* dxw = static_cast<uint4*>(dx);
    const unsigned threads = 32 * kRowsPerBlock;
    const auto grid = static_cast<unsigned>(blocks);
    if (kw == 4) {
      constexpr int smem = kRowsPerBlock * kGradSliceFloats<4> * sizeof(float);
      STRATA_CUDA_CALL(cudaFuncSetAttribute(layer_norm_grad_warp_kernel<4>,
                                            cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
      layer_norm_grad_warp_kernel<4><<<grid, threads, smem, stream>>>(xw, gamma, ge, dyw, rows, words, chunk, eps, dxw,
                                                                      partial);
    } else if (kw == 8) {
      constexpr int smem = kRowsPerBlock * kGradSliceFloats<8> * sizeof(float);
      STRATA_CUDA_CALL(cudaFuncSetAttribute(layer_norm_grad_warp_kernel<8>,
                                            cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
      layer_norm_grad_warp_kernel<8><<<grid, threads, smem, stream>>>(xw, gamma, ge, dyw, rows, words, chunk, eps, dxw,
                                                                      partial);
    } else {
      constexpr int smem = kRowsPerBlock * kGradSliceFloats<16> * sizeof(float);
      STRATA_CUDA_CALL(cudaFuncSetAttribute(layer_norm_grad_warp_kernel<16>,
                                            cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
      layer_norm_grad_warp_kernel<16><<<grid, threads, smem, stream>>>(xw, gamma, ge, dyw, rows, words, chunk, eps,
                                                                       dxw, partial);
    }
    STRATA_CUDA_LAUNCHED("layer_norm_grad_warp");
    layer_norm_dparams_final<<<static_cast<unsigned>((h + 31) / 32), 32 * kFinalSlices, 0, stream>>>(
        partial, blocks, h, dgamma, dge, dbeta, dbe);
    STRATA_CUDA_LAUNCHED("layer_norm_dparams_final");
    STRATA_CUDA_CALL(cudaFreeAsync(partial, stream));
    return Status::ok();
  }
  float* scratch = nullptr;  // means[rows], rstds[rows], partial[chunks][2][h]
  STRATA_CUDA_CALL(
      cudaMallocAsync(reinterpret_cast<void**>(&scratch), sizeof(float) * (2 * rows + 2 * chunks * h), stream));
  float* means = scratch;
  float* rstds = scratch + rows;
  float* partial = scratch + 2 * rows;
  layer_norm_dx_kernel<<<static_cast<unsigned>(rows), row_threads(h), 0, stream>>>(x, xe, gamma, ge, dy, dye, h, eps,
                                                                                    dx, dxe, means, rstds);
  STRATA_CUDA_LAUNCHED("layer_norm_dx");
  const dim3 grid(static_cast<unsigned>((h + kThreads - 1) / kThreads), static_cast<unsigned>(chunks));
  layer_norm_dparams_partial<<<grid, kThreads, 0, stream>>>(x, xe, dy, dye, means, rstds, rows, h, chunk, partial);
  STRATA_CUDA_LAUNCHED("layer_norm_dparams_partial");
  layer_norm_dparams_final<<<static_cast<unsigned>((h + 31) / 32), 32 * kFinalSlices, 0, stream>>>(
      partial, chunks, h, dgamma, dge, dbeta, dbe);
  STRATA_CUDA_LAUNCHED("layer_norm_dparams_final");
  STRATA_CUDA_CALL(cudaFreeAsync(scratch, stream));
  return Status::ok();
}

Status cross_entropy(const void* logits, Elem le, const int32_t* labels, int64_t rows, int64_t vocab, void* loss,
                     Elem loss_elem, int32_t* flag, int32_t code, cudaStream_t stream) {
  float* row_loss = nullptr;
  STRATA_CUDA_CALL(cudaMallocAsync(reinterpret_cast<void**>(&row_loss), sizeof(float) * std::max<int64_t>(rows, 1),
                                   stream));
  if (rows > 0 && words_of_bf16(logits, le, vocab)) {
    cross_entropy_rows_x8_kernel<<<static_cast<unsigned>(rows), row_threads(vocab / 8), 0, stream>>>(
        static_cast<const uint4*>(logits), labels, vocab, row_loss, flag, code);
    STRATA_CUDA_LAUNCHED("cross_entropy_rows_x8");
  } else if (rows > 0) {
    cross_entropy_rows_kernel<<<static_cast<unsigned>(rows), row_threads(vocab), 0, stream>>>(logits, le, labels,
                                                                                              vocab, row_loss, flag,
                                                                                              code);
    STRATA_CUDA_LAUNCHED("cross_entropy_rows");
  }
  mean_kernel<<<1, 1024, 0, stream>>>(row_loss, rows, loss, loss_elem);
  STRATA_CUDA_LAUNCHED("cross_entropy_mean");
  STRATA_CUDA_CALL(cudaFreeAsync(row_loss, stream));
  return Status::ok();
}

Status cross_entropy_grad(const void* logits, Elem le, const int32_t* labels, const void* dloss, Elem dle, int64_t rows,
                          int64_t vocab, void* dlogits, Elem de, int32_t* flag, int32_t code, cudaStream_t stream) {
  if (rows == 0 || vocab == 0) return Status::ok();
  if (words_of_bf16(logits, le, vocab) && words_of_bf16(dlogits, de, vocab)) {
    cross_entropy_grad_x8_kernel<<<static_cast<unsigned>(rows), row_threads(vocab / 8), 0, stream>>>(
        static_cast<const uint4*>(logits), labels, dloss, dle, rows, vocab, static_cast<uint4*>(dlogits), flag, code);
    STRATA_CUDA_LAUNCHED("cross_entropy_grad_x8");
    return Status::ok();
  }
  cross_entropy_grad_kernel<<<static_cast<unsigned>(rows), row_threads(vocab), 0, stream>>>(
      logits, le, labels, dloss, dle, rows, vocab, dlogits, de, flag, code);
  STRATA_CUDA_LAUNCHED("cross_entropy_grad");
  return Status::ok();
}

}  // namespace strata::runtime::cuda::kernels
