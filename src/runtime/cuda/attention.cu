// Fused attention on tensor cores (mma.sync m16n8k16, bf16 operands, fp32 accumulation), FA2-style:
// the forward keeps an online softmax per query row and writes out and the row logsumexp; the
// backward recomputes P from lse per (key tile, query tile), accumulates dK and dV in registers and
// adds dQ into an fp32 scratch with atomics. Head dims are padded with zeros to a multiple of 16.
// A pre-pass flags the (query tile, key tile) blocks of the bias that are all masked (skipped) or
// all zero (not read): see kMaskedBias in kernels.h.
#include <cuda_bf16.h>

#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "device_util.cuh"
#include "kernels.h"

namespace strata::runtime::cuda::kernels {
namespace {

using bf16 = __nv_bfloat16;
using device::load;
using device::store;

constexpr int kTile = 64;  // edge of a bias flag tile; the forward's key tiles
constexpr int kWarps = 4;  // warps of a backward block
constexpr int kBlockThreads = 32 * kWarps;
constexpr int kPad = 8;  // bf16 elements added to each shared-memory row (conflict-free fragment loads)
constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;

// kTileCausal: every entry is 0 where key <= query and masked where key > query (global indices),
// the diagonal tiles of a causal mask: the kernels compare indices instead of reading the bias.
enum : uint8_t { kTileMixed = 0, kTileMasked = 1, kTileZero = 2, kTileCausal = 3 };

struct Problem {
  int64_t batch = 0, s = 0, t = 0;
  int32_t d = 0, dv = 0;
  float scale = 1.0f;
  Elem elem = Elem::bf16;
  const void* bias = nullptr;
  Elem bias_elem = Elem::f32;
  int32_t lead_rank = 0;
  int64_t lead_shape[kMaxRank] = {};
  int64_t bias_lead_stride[kMaxRank] = {};
  int64_t flag_lead_stride[kMaxRank] = {};
  int64_t bias_offset = 0, bias_s = 0, bias_t = 0;
  int32_t q_tiles = 0, k_tiles = 0;
  const uint8_t* flags = nullptr;
  int64_t heads = 0;  // layout bsnd: q, k, v, out (and gradients) are [B, S, N, D] with N = heads
  int64_t qkv_pitch = 0;  // AttentionProblem::qkv_pitch
};

// The distance between two rows (tokens) of an out-like tensor of row width `width`, and of q, k,
// v, dq, dk, dv (qkv_pitch when they lie in one packed [B, S, 3, N, D] buffer).
__host__ __device__ __forceinline__ int64_t row_stride(const Problem& p, int64_t width) {
  return p.heads == 0 ? width : p.heads * width;
}
__host__ __device__ __forceinline__ int64_t qkv_stride(const Problem& p, int64_t width) {
  return p.qkv_pitch != 0 ? p.qkv_pitch : row_stride(p, width);
}
// The element offset of row `row` (of `rows`: S or T) of leading index b in a tensor of row width
// `width` whose rows lie `ld` apart.
__host__ __device__ __forceinline__ int64_t row_at(const Problem& p, int64_t b, int64_t rows, int64_t row, int64_t width,
                                                   int64_t ld) {
  if (p.heads == 0) return (b * rows + row) * ld;
  return (b / p.heads * rows + row) * ld + b % p.heads * width;
}

// The bias offset and flag block of leading index b.
__device__ __forceinline__ void lead_offsets(const Problem& p, int64_t b, int64_t& bias, int64_t& flags) {
  bias = p.bias_offset;
  flags = 0;
  for (int32_t i = p.lead_rank - 1; i >= 0; --i) {
    const int64_t index = b % p.lead_shape[i];
    b /= p.lead_shape[i];
    bias += index * p.bias_lead_stride[i];
    flags += index * p.flag_lead_stride[i];
  }
  flags *= int64_t{p.q_tiles} * p.k_tiles;
}

// row0 - key0 clamped to [-2 * kTile, 2 * kTile] (the same tests within a tile) as an int.
__device__ __forceinline__ int diagonal(int64_t row0, int64_t key0) {
  const int64_t d = row0 - key0;
  return static_cast<int>(d < -2 * kTile ? -2 * kTile : d > 2 * kTile ? 2 * kTile : d);
}

// 2^x in one MUFU instruction (flush to zero below 2^-126; 2^-inf = 0).
__device__ __forceinline__ float fast_exp2(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
  return y;
}

__device__ __forceinline__ uint32_t pack(float lo, float hi) {
  const __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<const uint32_t*>(&v);
}

// c += a . b for one m16n8k16 tile.
__device__ __forceinline__ void mma(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

__device__ __forceinline__ uint32_t shared_address(const bf16* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}
// Fragments through ldmatrix.x4 (four 8 x 8 matrices in one instruction; rows of 16 bytes):
// the A fragment of rows [r0, r0 + 16) x columns [c0, c0 + 16) of a row-major tile;
__device__ __forceinline__ void load_a4(uint32_t (&a)[4], const bf16* x, int ld, int r0, int c0) {
  const int lane = threadIdx.x % 32;
  const uint32_t address = shared_address(x + (r0 + (lane & 15)) * ld + c0 + (lane >> 4) * 8);
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(a[0]), "=r"(a[1]), "=r"(a[2]), "=r"(a[3])
               : "r"(address));
}
// the B fragments of n-tiles [n0, n0 + 8) (b[0], b[1]) and [n0 + 8, n0 + 16) (b[2], b[3]), k in
// [k0, k0 + 16), of a tile stored n-major (y[n * ld + k]);
__device__ __forceinline__ void load_b4(uint32_t (&b)[4], const bf16* y, int ld, int n0, int k0) {
  const int lane = threadIdx.x % 32;
  const uint32_t address = shared_address(y + (n0 + (lane & 7) + ((lane >> 4) << 3)) * ld + k0 + ((lane >> 3) & 1) * 8);
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(b[0]), "=r"(b[1]), "=r"(b[2]), "=r"(b[3])
               : "r"(address));
}
// the same of a tile stored k-major (x[k * ld + n]), through the transposing load.
__device__ __forceinline__ void load_b4_trans(uint32_t (&b)[4], const bf16* x, int ld, int k0, int n0) {
  const int lane = threadIdx.x % 32;
  const uint32_t address = shared_address(x + (k0 + (lane & 15)) * ld + n0 + (lane >> 4) * 8);
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(b[0]), "=r"(b[1]), "=r"(b[2]), "=r"(b[3])
               : "r"(address));
}

// the A fragment of rows [r0, r0 + 16) x columns [c0, c0 + 16) of a tile stored column-major
// (x[c * ld + r]), through the transposing load.
__device__ __forceinline__ void load_a4_trans(uint32_t (&a)[4], const bf16* x, int ld, int r0, int c0) {
  const int lane = threadIdx.x % 32;
  const uint32_t address = shared_address(x + (c0 + (lane & 7) + ((lane >> 4) << 3)) * ld + r0 + ((lane >> 3) & 1) * 8);
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(a[0]), "=r"(a[1]), "=r"(a[2]), "=r"(a[3])
               : "r"(address));
}

// Accumulators of a 16 x 8N tile (N n-tiles) as the A fragment of k-chunk c (16 columns).
template <int N>
__device__ __forceinline__ void acc_to_a(uint32_t (&a)[4], const float (&acc)[N][4], int c) {
  a[0] = pack(acc[2 * c][0], acc[2 * c][1]);
  a[1] = pack(acc[2 * c][2], acc[2 * c][3]);
  a[2] = pack(acc[2 * c + 1][0], acc[2 * c + 1][1]);
  a[3] = pack(acc[2 * c + 1][2], acc[2 * c + 1][3]);
}

// Rows [0, ROWS) x columns [0, DP) of a [rows, width] tensor starting at element `first`, as bf16 into
// `dst` (row-major, row length ld). Rows at or past `valid` and columns at or past `width` are zeros.
template <int DP, int kThreads = kBlockThreads, int ROWS = kTile>
__device__ void load_tile(bf16* dst, int ld, const void* src, Elem e, int64_t first, int64_t valid, int width,
                          int64_t src_ld) {
  constexpr int kChunks = DP / 8;
  const bool vec = e == Elem::bf16 && width % 8 == 0;
  for (int i = threadIdx.x; i < ROWS * kChunks; i += kThreads) {
    const int r = i / kChunks, c = (i % kChunks) * 8;
    device::Bf16x8 v;
    if (r < valid && vec && c + 8 <= width) {
      v.word = *reinterpret_cast<const uint4*>(static_cast<const bf16*>(src) + first + r * src_ld + c);
    } else {
      #pragma unroll
      for (int j = 0; j < 8; ++j) {
        const bool in = r < valid && c + j < width;
        v.h[j] = __float2bfloat16_rn(in ? load(src, e, first + r * src_ld + c + j) : 0.0f);
      }
    }
    *reinterpret_cast<uint4*>(dst + r * ld + c) = v.word;
  }
}

__device__ __forceinline__ void cp_async16(void* dst, const void* src) {
  const auto address = static_cast<uint32_t>(__cvta_generic_to_shared(dst));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(address), "l"(src));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

// load_tile, but bf16 rows of a multiple of 8 go through cp.async (complete after cp_async_commit
// and cp_async_wait); other element types and widths load synchronously.
template <int DP, int kThreads = kBlockThreads, int ROWS = kTile>
__device__ void load_tile_async(bf16* dst, int ld, const void* src, Elem e, int64_t first, int64_t valid, int width,
                                int64_t src_ld) {
  if (e != Elem::bf16 || width % 8 != 0) {
    load_tile<DP, kThreads, ROWS>(dst, ld, src, e, first, valid, width, src_ld);
    return;
  }
  constexpr int kRowsPerPass = kThreads / (DP / 8);
  if constexpr (kThreads % (DP / 8) == 0 && ROWS % kRowsPerPass == 0) {
    if (valid >= ROWS && width == DP) {  // every row and column: a thread's chunks kRowsPerPass rows apart
      const int r = threadIdx.x / (DP / 8), c = threadIdx.x % (DP / 8) * 8;
      const bf16* from = static_cast<const bf16*>(src) + first + r * src_ld + c;
      const int64_t step = kRowsPerPass * src_ld;
      #pragma unroll
      for (int j = 0; j < ROWS / kRowsPerPass; ++j) cp_async16(dst + (r + j * kRowsPerPass) * ld + c, from + j * step);
      return;
    }
  }
  constexpr int kChunks = DP / 8;
  for (int i = threadIdx.x; i < ROWS * kChunks; i += kThreads) {
    const int r = i / kChunks, c = (i % kChunks) * 8;
    if (r < valid && c < width) {
      cp_async16(dst + r * ld + c, static_cast<const bf16*>(src) + first + r * src_ld + c);
    } else {
      *reinterpret_cast<uint4*>(dst + r * ld + c) = make_uint4(0, 0, 0, 0);
    }
  }
}

// The query tiles live for any of the MT key tiles from kt0 (`flags`: one bias leading index's
// [q_tiles][k_tiles] block), into `live`; their kinds for key tile kt0 + j into kinds[j * count + n].
// Returns their count. The first warp compacts 32 tiles at a time by a ballot.
template <int MT>
__device__ int live_query_tiles(const Problem& p, const uint8_t* flags, int kt0, int count, int16_t* live,
                                uint8_t* kinds) {
  __syncthreads();  // the previous user of `live` is done
  if (threadIdx.x < 32) {
    const int lane = threadIdx.x;
    int n = 0;
    for (int base = 0; base < count; base += 32) {
      const int i = base + lane;
      uint8_t f[MT];
      bool is_live = false;
      #pragma unroll
      for (int j = 0; j < MT; ++j) {
        const bool in = i < count && kt0 + j < p.k_tiles;
        f[j] = in ? flags[int64_t{i} * p.k_tiles + kt0 + j] : uint8_t{kTileMasked};
        is_live = is_live || f[j] != kTileMasked;
      }
      const unsigned alive = __ballot_sync(0xffffffffu, is_live);
      if (is_live) {
        const int at = n + __popc(alive & ((1u << lane) - 1u));
        live[at] = static_cast<int16_t>(i);
        #pragma unroll
        for (int j = 0; j < MT; ++j) kinds[j * count + at] = f[j];
      }
      n += __popc(alive);
    }
    if (lane == 0) live[count] = static_cast<int16_t>(n);
  }
  __syncthreads();
  return live[count];
}

// live_tiles over the union of two rows of flags (`second` null: none), their kinds in kinds[0][n]
// and kinds[1][n] (kinds[1] = kinds[0] + count).
__device__ int live_tiles2(const uint8_t* first, const uint8_t* second, int count, int16_t* live, uint8_t* kinds) {
  __syncthreads();  // the previous user of `live` is done
  if (threadIdx.x < 32) {
    const int lane = threadIdx.x;
    int n = 0;
    for (int base = 0; base < count; base += 32) {
      const int i = base + lane;
      const uint8_t f0 = i < count ? first[i] : uint8_t{kTileMasked};
      const uint8_t f1 = i < count && second != nullptr ? second[i] : uint8_t{kTileMasked};
      const bool is_live = f0 != kTileMasked || f1 != kTileMasked;
      const unsigned alive = __ballot_sync(0xffffffffu, is_live);
      if (is_live) {
        const int at = n + __popc(alive & ((1u << lane) - 1u));
        live[at] = static_cast<int16_t>(i);
        kinds[at] = f0;
        kinds[count + at] = f1;
      }
      n += __popc(alive);
    }
    if (lane == 0) live[count] = static_cast<int16_t>(n);
  }
  __syncthreads();
  return live[count];
}

// A bias entry; one at or below kMaskedBias masks its logit (-inf), as the op defines.
__device__ __forceinline__ float bias_at(const Problem& p, int64_t base, int64_t row, int64_t col) {
  const float x = load(p.bias, p.bias_elem, base + row * p.bias_s + col * p.bias_t);
  return x <= kMaskedBias ? -INFINITY : x;
}

// One block per (query tile, key tile, bias leading index) of the bias: kTileMasked when every entry
// is masked (<= kMaskedBias), kTileZero when every entry is 0, kTileCausal when the entries are 0 at
// and below the diagonal (key <= query) and masked above it, else kTileMixed. Launched with
// kFlagThreads threads.
constexpr int kFlagThreads = 256;
__global__ void flag_kernel(Problem p, uint8_t* flags, int64_t flag_blocks) {
  const int64_t block = blockIdx.x;
  if (block >= flag_blocks) return;
  const int kt = static_cast<int>(block % p.k_tiles), qt = static_cast<int>(block / p.k_tiles % p.q_tiles);
  int64_t c = block / (int64_t{p.k_tiles} * p.q_tiles), base = p.bias_offset;
  for (int32_t i = p.lead_rank - 1; i >= 0; --i) {  // c runs over the non-broadcast leading dims only
    if (p.bias_lead_stride[i] == 0) continue;
    base += (c % p.lead_shape[i]) * p.bias_lead_stride[i];
    c /= p.lead_shape[i];
  }
  bool masked = true, zero = true, causal = true;
  auto classify = [&](int64_t row, int64_t col, float x) {
    x = x <= kMaskedBias ? -INFINITY : x;
    masked = masked && x == -INFINITY;
    zero = zero && x == 0.0f;
    causal = causal && x == (col <= row ? 0.0f : -INFINITY);
  };
  const int64_t row0 = int64_t{qt} * kTile, col0 = int64_t{kt} * kTile;
  const bool whole = row0 + kTile <= p.s && col0 + kTile <= p.t;
  if (whole && p.bias_elem == Elem::f32 && p.bias_t == 1 && p.bias_s % 4 == 0 && base % 4 == 0) {
    // Four float4 loads per thread issued together (a strided loop waits on each in turn).
    constexpr int kLoads = kTile * kTile / 4 / kFlagThreads;
    float4 x[kLoads];
    #pragma unroll
    for (int j = 0; j < kLoads; ++j) {
      const int c = threadIdx.x + j * kFlagThreads;
      const int64_t at = base + (row0 + c / (kTile / 4)) * p.bias_s + col0 + c % (kTile / 4) * 4;
      x[j] = *reinterpret_cast<const float4*>(static_cast<const float*>(p.bias) + at);
    }
    #pragma unroll
    for (int j = 0; j < kLoads; ++j) {
      const int c = threadIdx.x + j * kFlagThreads;
      const int64_t row = row0 + c / (kTile / 4), col = col0 + c % (kTile / 4) * 4;
      classify(row, col, x[j].x);
      classify(row, col + 1, x[j].y);
      classify(row, col + 2, x[j].z);
      classify(row, col + 3, x[j].w);
    }
  } else {
    for (int i = threadIdx.x; i < kTile * kTile; i += blockDim.x) {
      const int64_t row = row0 + i / kTile, col = col0 + i % kTile;
      if (row < p.s && col < p.t) classify(row, col, load(p.bias, p.bias_elem, base + row * p.bias_s + col * p.bias_t));
    }
  }
  masked = __syncthreads_and(masked);
  zero = __syncthreads_and(zero);
  causal = __syncthreads_and(causal);
  if (threadIdx.x == 0) flags[block] = masked ? kTileMasked : zero ? kTileZero : causal ? kTileCausal : kTileMixed;
}

// The forward: a block of kFwdWarps warps takes 2 query tiles (128 rows) through every key tile live
// for either; a warp owns 32 rows as two m16 tiles, each K and V fragment read from shared memory
// feeding two MMAs. At 8 warps per SM (255 registers) that runs no faster than 8-warp blocks of
// 16-row warps (213 vs 210 us per GPT-1.3B layer, same call): latency, not shared memory, bounds it.
// A warp skips the key tiles masked for its own query tile.
constexpr int kFwdWarps = 4;
constexpr int kFwdThreads = 32 * kFwdWarps;
constexpr int kFwdMt = 2;  // m16 tiles per warp
constexpr int kFwdRows = 16 * kFwdMt * kFwdWarps;

template <int DP>
__global__ void __launch_bounds__(kFwdThreads, DP <= 96 ? 2 : 1)
    forward_kernel(Problem p, const void* q, const void* k, const void* v, void* out, float* lse) {
  extern __shared__ __align__(16) unsigned char smem[];
  constexpr int kLd = DP + kPad;
  bf16* qs = reinterpret_cast<bf16*>(smem);  // [128][kLd]
  bf16* kv = qs + kFwdRows * kLd;             // two buffers of K [64][kLd] then V [64][kLd]
  auto* live = reinterpret_cast<int16_t*>(kv + 4 * kTile * kLd);  // [k_tiles + 1]
  auto* kinds = reinterpret_cast<uint8_t*>(live + p.k_tiles + 1);  // [2][k_tiles]
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane >> 2, t4 = lane & 3;
  const int half = warp / (kFwdWarps / 2);  // which of the block's two query tiles
  // The longest rows first: under the causal mask a block's work grows with its query tile.
  const int qt = (gridDim.x - 1 - blockIdx.x) * 2;
  const int64_t row0 = int64_t{qt} * kTile;
  for (int64_t b = blockIdx.y; b < p.batch; b += gridDim.y) {
    int64_t bias_base, flag_base;
    lead_offsets(p, b, bias_base, flag_base);
    const uint8_t* flag_row = p.flags + flag_base + int64_t{qt} * p.k_tiles;
    const int n_live = live_tiles2(flag_row, qt + 1 < p.q_tiles ? flag_row + p.k_tiles : nullptr, p.k_tiles, live, kinds);
    // Row r of b's q (k, v, out) at q_at + r * qk_ld (k_at + r * qk_ld, v_at + r * v_ld, out_at + r * out_ld).
    const int64_t qk_ld = qkv_stride(p, p.d), v_ld = qkv_stride(p, p.dv), out_ld = row_stride(p, p.dv);
    const int64_t q_at = row_at(p, b, p.s, 0, p.d, qk_ld), k_at = row_at(p, b, p.t, 0, p.d, qk_ld);
    const int64_t v_at = row_at(p, b, p.t, 0, p.dv, v_ld), out_at = row_at(p, b, p.s, 0, p.dv, out_ld);
    // K/V of live tile i go to buffer i % 2, fetched one tile ahead of the math.
    auto fetch = [&](int i) {
      const int64_t key0 = int64_t{live[i]} * kTile;
      bf16* buffer = kv + (i % 2) * 2 * kTile * kLd;
      load_tile_async<DP, kFwdThreads>(buffer, kLd, k, p.elem, k_at + key0 * qk_ld, p.t - key0, p.d, qk_ld);
      load_tile_async<DP, kFwdThreads>(buffer + kTile * kLd, kLd, v, p.elem, v_at + key0 * v_ld, p.t - key0, p.dv, v_ld);
    };
    load_tile_async<DP, kFwdThreads>(qs, kLd, q, p.elem, q_at + row0 * qk_ld, p.s - row0, p.d, qk_ld);
    load_tile_async<DP, kFwdThreads>(qs + kTile * kLd, kLd, q, p.elem, q_at + (row0 + kTile) * qk_ld, p.s - row0 - kTile,
                                     p.d, qk_ld);
    if (n_live > 0) fetch(0);
    cp_async_commit();
    // Row state per (m tile, row half r: rows g and g + 8 of the tile).
    float o[kFwdMt][DP / 8][4] = {};
    float m[kFwdMt][2], l[kFwdMt][2];
    #pragma unroll
    for (int mt = 0; mt < kFwdMt; ++mt) m[mt][0] = m[mt][1] = -INFINITY, l[mt][0] = l[mt][1] = 0.0f;
    for (int i = 0; i < n_live; ++i) {
      // Tile i landed and every warp is done with tile i - 1, whose buffer then takes tile i + 1.
      cp_async_wait<0>();
      __syncthreads();
      if (i + 1 < n_live) fetch(i + 1);
      cp_async_commit();
      const uint8_t flag = kinds[half * p.k_tiles + i];
      if (flag == kTileMasked) continue;  // live for the other query tile only
      const int64_t key0 = int64_t{live[i]} * kTile;
      const bf16* ks = kv + (i % 2) * 2 * kTile * kLd;
      const bf16* vs = ks + kTile * kLd;
      float s[kFwdMt][8][4] = {};
      #pragma unroll
      for (int kk = 0; kk < DP / 16; ++kk) {
        uint32_t qa[kFwdMt][4];  // this warp's Q rows, k-chunk kk
        #pragma unroll
        for (int mt = 0; mt < kFwdMt; ++mt) load_a4(qa[mt], qs, kLd, (warp * kFwdMt + mt) * 16, kk * 16);
        #pragma unroll
        for (int nt = 0; nt < 8; nt += 2) {
          uint32_t b[4];
          load_b4(b, ks, kLd, nt * 8, kk * 16);
          #pragma unroll
          for (int mt = 0; mt < kFwdMt; ++mt) {
            mma(s[mt][nt], qa[mt], b[0], b[1]);
            mma(s[mt][nt + 1], qa[mt], b[2], b[3]);
          }
        }
      }
      // Logits in base 2 are s * mul; the row max over the quad that shares a row.
      // The lean path: a whole tile in bounds whose bias is 0 (below the causal diagonal) or causal
      // (on it: an index test), a positive scale; s keeps the raw dot products, and the exponent
      // below is one FFMA with mul = scale * log2(e). The general path scales in place (mul = 1).
      float mx[kFwdMt][2];
      #pragma unroll
      for (int mt = 0; mt < kFwdMt; ++mt) mx[mt][0] = mx[mt][1] = -INFINITY;
      const float scale2 = p.scale * kLog2e;
      float mul = 1.0f;
      if ((flag == kTileZero || flag == kTileCausal) && key0 + kTile <= p.t && p.scale > 0.0f) {
        mul = scale2;
        if (flag == kTileCausal) {  // key0 + col <= row0 + row, i.e. col - row <= row0 - key0
          const int diag = diagonal(row0, key0);
          #pragma unroll
          for (int mt = 0; mt < kFwdMt; ++mt) {
            #pragma unroll
            for (int nt = 0; nt < 8; ++nt) {
              #pragma unroll
              for (int e = 0; e < 4; ++e) {
                const int row = (warp * kFwdMt + mt) * 16 + g + (e >= 2 ? 8 : 0), col = nt * 8 + t4 * 2 + (e & 1);
                if (col - row > diag) s[mt][nt][e] = -INFINITY;
              }
            }
          }
        }
        #pragma unroll
        for (int mt = 0; mt < kFwdMt; ++mt) {
          #pragma unroll
          for (int nt = 0; nt < 8; ++nt) {
            #pragma unroll
            for (int e = 0; e < 4; ++e) mx[mt][e >> 1] = fmaxf(mx[mt][e >> 1], s[mt][nt][e]);
          }
        }
      } else {
        const int keys_left = static_cast<int>(p.t - key0 < kTile ? p.t - key0 : kTile);
        const int rows_left = static_cast<int>(p.s - row0 < kFwdRows ? p.s - row0 : kFwdRows);
        #pragma unroll
        for (int mt = 0; mt < kFwdMt; ++mt) {
          #pragma unroll
          for (int nt = 0; nt < 8; ++nt) {
            #pragma unroll
            for (int e = 0; e < 4; ++e) {
              const int row = (warp * kFwdMt + mt) * 16 + g + (e >= 2 ? 8 : 0), col = nt * 8 + t4 * 2 + (e & 1);
              float x = s[mt][nt][e] * p.scale;
              if (flag != kTileZero && row < rows_left && col < keys_left) {
                x += bias_at(p, bias_base, row0 + row, key0 + col);
              }
              x = col < keys_left ? x * kLog2e : -INFINITY;
              s[mt][nt][e] = x;
              mx[mt][e >> 1] = fmaxf(mx[mt][e >> 1], x);
            }
          }
        }
      }
      #pragma unroll
      for (int mt = 0; mt < kFwdMt; ++mt) {
        float alpha[2], m_use[2];
        #pragma unroll
        for (int r = 0; r < 2; ++r) {
          float x = mx[mt][r];
          x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, 1));
          x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, 2));
          x *= mul;  // mul > 0 keeps the max
          const float m_new = fmaxf(m[mt][r], x);
          m_use[r] = m_new == -INFINITY ? 0.0f : m_new;  // a row all -inf so far: exp2 gives 0, not NaN
          alpha[r] = fast_exp2(m[mt][r] - m_use[r]);
          m[mt][r] = m_new;
          l[mt][r] *= alpha[r];
        }
        #pragma unroll
        for (int nt = 0; nt < 8; ++nt) {
          #pragma unroll
          for (int e = 0; e < 4; ++e) {
            s[mt][nt][e] = fast_exp2(fmaf(s[mt][nt][e], mul, -m_use[e >> 1]));
            l[mt][e >> 1] += s[mt][nt][e];
          }
        }
        #pragma unroll
        for (int dn = 0; dn < DP / 8; ++dn) {
          o[mt][dn][0] *= alpha[0];
          o[mt][dn][1] *= alpha[0];
          o[mt][dn][2] *= alpha[1];
          o[mt][dn][3] *= alpha[1];
        }
      }
      #pragma unroll
      for (int c = 0; c < 4; ++c) {
        uint32_t a[kFwdMt][4];
        #pragma unroll
        for (int mt = 0; mt < kFwdMt; ++mt) acc_to_a(a[mt], s[mt], c);
        #pragma unroll
        for (int dn = 0; dn < DP / 8; dn += 2) {
          uint32_t b[4];
          load_b4_trans(b, vs, kLd, c * 16, dn * 8);
          #pragma unroll
          for (int mt = 0; mt < kFwdMt; ++mt) {
            mma(o[mt][dn], a[mt], b[0], b[1]);
            mma(o[mt][dn + 1], a[mt], b[2], b[3]);
          }
        }
      }
    }
    cp_async_wait<0>();
    #pragma unroll
    for (int mt = 0; mt < kFwdMt; ++mt) {
      #pragma unroll
      for (int r = 0; r < 2; ++r) {
        float sum = l[mt][r];
        sum += __shfl_xor_sync(0xffffffffu, sum, 1);
        sum += __shfl_xor_sync(0xffffffffu, sum, 2);
        const int64_t row = row0 + (warp * kFwdMt + mt) * 16 + g + r * 8;
        if (row >= p.s) continue;
        const float inv = sum > 0.0f ? 1.0f / sum : 0.0f;
        const int64_t at = out_at + row * out_ld;
        #pragma unroll
        for (int dn = 0; dn < DP / 8; ++dn) {
          const int col = dn * 8 + t4 * 2;
          if (p.elem == Elem::bf16 && p.dv % 2 == 0) {  // a pair in one 4-byte store (at and col even)
            if (col < p.dv) {
              *reinterpret_cast<__nv_bfloat162*>(static_cast<bf16*>(out) + at + col) =
                  __floats2bfloat162_rn(o[mt][dn][r * 2] * inv, o[mt][dn][r * 2 + 1] * inv);
            }
            continue;
          }
          #pragma unroll
          for (int j = 0; j < 2; ++j) {
            if (col + j < p.dv) store(out, p.elem, at + col + j, o[mt][dn][r * 2 + j] * inv);
          }
        }
        if (t4 == 0) lse[b * p.s + row] = sum > 0.0f ? (m[mt][r] + log2f(sum)) * kLn2 : -INFINITY;
      }
    }
  }
}

// The backward's row pre-pass, L lanes per row (a power of two, at most 32): stats[row] = (lse in
// base 2, +inf for -inf so that P = 0; dout[row] . out[row]), and the row of the fp32 dq accumulator
// set to 0. With `vec` (bf16 or f32, dv a multiple of 8, 8 * L >= dv) a lane reads 8 values at once.
template <int L>
__global__ void row_stats_kernel(Problem p, const void* out, const void* dout, const float* lse, int64_t rows,
                                 bool vec, float2* stats, float* dq_accum) {
  const int64_t row = (blockIdx.x * int64_t{blockDim.x} + threadIdx.x) / L;
  const int sub = threadIdx.x % L;
  float acc = 0.0f;
  if (row < rows) {  // no return before the shuffles: a warp may hold rows past the last
    const int64_t at = row_at(p, row / p.s, p.s, row % p.s, p.dv, row_stride(p, p.dv));
    if (vec) {
      if (sub * 8 < p.dv) {
        float x[8], y[8];
        device::load8(out, p.elem, at + sub * 8, x);
        device::load8(dout, p.elem, at + sub * 8, y);
        #pragma unroll
        for (int j = 0; j < 8; ++j) acc += x[j] * y[j];
      }
    } else {
      for (int c = sub; c < p.dv; c += L) acc += load(out, p.elem, at + c) * load(dout, p.elem, at + c);
    }
    float* dq_row = dq_accum + row * p.d;
    if (p.d % 4 == 0) {
      for (int c = sub * 4; c < p.d; c += 4 * L) *reinterpret_cast<float4*>(dq_row + c) = make_float4(0, 0, 0, 0);
    } else {
      for (int c = sub; c < p.d; c += L) dq_row[c] = 0.0f;
    }
  }
  #pragma unroll
  for (int o = L / 2; o > 0; o >>= 1) acc += __shfl_xor_sync(0xffffffffu, acc, o);
  if (row < rows && sub == 0) stats[row] = make_float2(lse[row] == -INFINITY ? INFINITY : lse[row] * kLog2e, acc);
}

// dq from its fp32 accumulator ([batch, S, D] whatever the layout) into dq's layout, L lanes per row
// (a power of two, at most 32); bf16 rows of a multiple of 4 go 4 values per 16-byte load.
template <int L>
__global__ void convert_kernel(Problem p, const float* src, void* dst, int64_t rows) {
  const int64_t row = (blockIdx.x * int64_t{blockDim.x} + threadIdx.x) / L;
  if (row >= rows) return;
  const int sub = threadIdx.x % L;
  const int64_t at = row_at(p, row / p.s, p.s, row % p.s, p.d, qkv_stride(p, p.d));
  const float* from = src + row * p.d;
  if (p.elem == Elem::bf16 && p.d % 4 == 0) {  // at and c multiples of 4: 8-byte aligned stores
    for (int c = sub * 4; c < p.d; c += 4 * L) {
      const float4 x = *reinterpret_cast<const float4*>(from + c);
      uint2 w;
      w.x = pack(x.x, x.y);
      w.y = pack(x.z, x.w);
      *reinterpret_cast<uint2*>(static_cast<bf16*>(dst) + at + c) = w;
    }
  } else {
    for (int c = sub; c < p.d; c += L) store(dst, p.elem, at + c, from[c]);
  }
}

// Launches kernel<L> over rows * L threads, L = 8, 16 or 32 as `lanes` (rounded up) asks.
template <typename Launch>
void launch_rows(int64_t rows, int lanes, Launch&& launch) {
  const int l = lanes <= 8 ? 8 : lanes <= 16 ? 16 : 32;
  const auto blocks = static_cast<unsigned>((rows * l + 255) / 256);
  if (l == 8) launch(std::integral_constant<int, 8>{}, blocks);
  else if (l == 16) launch(std::integral_constant<int, 16>{}, blocks);
  else launch(std::integral_constant<int, 32>{}, blocks);
}

// The backward: a block of kBlockThreads (4 warps) takes MT key tiles (a warp 16 * MT keys as MT
// m16 tiles) through every query tile live for any of them, in MT passes of 64 / MT queries (P^T,
// dS^T, dK and dV of 32 keys fit the registers). MT = 2 (head dims up to 64) reads Q and dO from L2
// once per 128 keys, feeds two MMAs with each Q / dO fragment read from shared memory, and halves
// dQ's atomics: 589 vs 636 us for GPT-1.3B's layer (bench/results/2026-11-24-gpu-attention.md). A
// warp skips the query tiles masked for its own key tile (its dS^T rows 0). dQ (the query tile over
// the block's keys) goes to the fp32 accumulator by atomics, warp w adding query m-tile w.
template <int DP>
constexpr int kBwdMt = DP <= 64 ? 2 : 1;

template <int DP>
__global__ void __launch_bounds__(kBlockThreads, kBwdMt<DP> == 2 ? 2 : DP <= 64 ? 3 : 1)
    backward_kernel(Problem p, const void* q, const void* k, const void* v, const void* dout, const float2* row_stats,
                    float* dq_accum, void* dk, void* dv) {
  constexpr int MT = kBwdMt<DP>;
  constexpr int kKeys = kTile * MT;      // keys per block
  constexpr int kSub = kTile / MT;       // queries per pass of P / dS (registers)
  constexpr int kNq = kSub / 8;          // n8 tiles of queries
  constexpr int kLd = DP + kPad;
  constexpr int kSLd = kTile + kPad;     // row length of the dS^T tile ([key][query])
  extern __shared__ __align__(16) unsigned char smem[];
  bf16* ks = reinterpret_cast<bf16*>(smem);  // [kKeys][kLd] keys x d
  bf16* vs = ks + kKeys * kLd;                // [kKeys][kLd] keys x dv
  bf16* qdo = vs + kKeys * kLd;               // two buffers of Q [kTile][kLd] then dO [kTile][kLd]
  bf16* dss = qdo + 4 * kTile * kLd;          // [kKeys][kSLd] keys x queries
  auto* stats = reinterpret_cast<float2*>(dss + kKeys * kSLd);  // two buffers of [kTile] (lse2, dsum)
  auto* live = reinterpret_cast<int16_t*>(stats + 2 * kTile);    // [q_tiles + 1]
  auto* kinds = reinterpret_cast<uint8_t*>(live + p.q_tiles + 1);  // [MT][q_tiles]
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane >> 2, t4 = lane & 3;
  const int own = warp * MT / kWarps;  // the warp's key tile within the block
  const int kt0 = blockIdx.x * MT;
  const int64_t key0 = int64_t{kt0} * kTile;
  for (int64_t b = blockIdx.y; b < p.batch; b += gridDim.y) {
    int64_t bias_base, flag_base;
    lead_offsets(p, b, bias_base, flag_base);
    const int n_live = live_query_tiles<MT>(p, p.flags + flag_base, kt0, p.q_tiles, live, kinds);
    // Row r of b's q (dout, k and dk, v and dv) at q_at + r * qk_ld (do_at + r * do_ld, k_at + r * qk_ld,
    // v_at + r * v_ld).
    const int64_t qk_ld = qkv_stride(p, p.d), v_ld = qkv_stride(p, p.dv), do_ld = row_stride(p, p.dv);
    const int64_t q_at = row_at(p, b, p.s, 0, p.d, qk_ld), do_at = row_at(p, b, p.s, 0, p.dv, do_ld);
    const int64_t k_at = row_at(p, b, p.t, 0, p.d, qk_ld), v_at = row_at(p, b, p.t, 0, p.dv, v_ld);
    // Q, dO and the rows' (lse2, dsum) of live tile i go to buffer i % 2, one tile ahead.
    auto fetch = [&](int i) {
      const int64_t row0 = int64_t{live[i]} * kTile;
      bf16* buffer = qdo + (i % 2) * 2 * kTile * kLd;
      load_tile_async<DP>(buffer, kLd, q, p.elem, q_at + row0 * qk_ld, p.s - row0, p.d, qk_ld);
      load_tile_async<DP>(buffer + kTile * kLd, kLd, dout, p.elem, do_at + row0 * do_ld, p.s - row0, p.dv, do_ld);
      if (threadIdx.x < kTile) {
        float2* slot = stats + (i % 2) * kTile + threadIdx.x;
        const int64_t row = row0 + threadIdx.x;
        if (row < p.s) {
          const auto address = static_cast<uint32_t>(__cvta_generic_to_shared(slot));
          asm volatile("cp.async.ca.shared.global [%0], [%1], 8;\n" ::"r"(address), "l"(row_stats + b * p.s + row));
        } else {
          *slot = make_float2(INFINITY, 0.0f);  // P = 0
        }
      }
    };
    load_tile_async<DP, kBlockThreads, kKeys>(ks, kLd, k, p.elem, k_at + key0 * qk_ld, p.t - key0, p.d, qk_ld);
    load_tile_async<DP, kBlockThreads, kKeys>(vs, kLd, v, p.elem, v_at + key0 * v_ld, p.t - key0, p.dv, v_ld);
    if (n_live > 0) fetch(0);
    cp_async_commit();
    float dk_acc[MT][DP / 8][4] = {}, dv_acc[MT][DP / 8][4] = {};
    for (int i = 0; i < n_live; ++i) {
      // Tile i landed and every warp is done with tile i - 1 (its buffer takes tile i + 1, and dS).
      cp_async_wait<0>();
      __syncthreads();
      if (i + 1 < n_live) fetch(i + 1);
      cp_async_commit();
      const uint8_t flag = kinds[own * p.q_tiles + i];
      const int64_t tile_row0 = int64_t{live[i]} * kTile;
      const bf16* q_tile = qdo + (i % 2) * 2 * kTile * kLd;
      for (int h = 0; h < MT; ++h) {
        const int64_t row0 = tile_row0 + h * kSub;
        const bf16* qs = q_tile + h * kSub * kLd;
        const bf16* dos = q_tile + (kTile + h * kSub) * kLd;
        const float2* st = stats + (i % 2) * kTile + h * kSub;
        // S^T (this warp's keys x the tile's queries) -> P^T; dP^T = V . dO^T; dS^T = P^T (dP^T - dsum).
        float pt[MT][kNq][4] = {}, dpt[MT][kNq][4] = {};
        if (flag != kTileMasked) {  // else live for another key tile only: P = dS = 0
          #pragma unroll
          for (int kk = 0; kk < DP / 16; ++kk) {
            uint32_t a[MT][4], av[MT][4];
            #pragma unroll
            for (int mt = 0; mt < MT; ++mt) {
              load_a4(a[mt], ks, kLd, (warp * MT + mt) * 16, kk * 16);
              load_a4(av[mt], vs, kLd, (warp * MT + mt) * 16, kk * 16);
            }
            #pragma unroll
            for (int nt = 0; nt < kNq; nt += 2) {
              uint32_t bq[4], bd[4];
              load_b4(bq, qs, kLd, nt * 8, kk * 16);
              load_b4(bd, dos, kLd, nt * 8, kk * 16);
              #pragma unroll
              for (int mt = 0; mt < MT; ++mt) {
                mma(pt[mt][nt], a[mt], bq[0], bq[1]);
                mma(pt[mt][nt + 1], a[mt], bq[2], bq[3]);
                mma(dpt[mt][nt], av[mt], bd[0], bd[1]);
                mma(dpt[mt][nt + 1], av[mt], bd[2], bd[3]);
              }
            }
          }
          const float scale2 = p.scale * kLog2e;
          const int keys_left = static_cast<int>(p.t - key0 < kKeys ? p.t - key0 : kKeys);
          const int rows_left = static_cast<int>(p.s - row0 < kSub ? p.s - row0 : kSub);
          // The lean path: a whole tile whose bias is 0 or causal (an index test: key0 + local_key <=
          // row0 + local_q), no bias read.
          const bool full = (flag == kTileZero || flag == kTileCausal) && keys_left == kKeys && rows_left == kSub;
          // P^T in pt, then dS^T = P^T (dP^T - dsum) in dpt; the branches are uniform over the warp.
          #pragma unroll
          for (int mt = 0; mt < MT; ++mt) {
            const int key_base = (warp * MT + mt) * 16 + g;  // local keys key_base and key_base + 8
            if (full) {
              #pragma unroll
              for (int nt = 0; nt < kNq; ++nt) {
                const float4 stat2 = *reinterpret_cast<const float4*>(st + nt * 8 + t4 * 2);  // queries q, q + 1
                #pragma unroll
                for (int e = 0; e < 4; ++e) {
                  pt[mt][nt][e] = fast_exp2(pt[mt][nt][e] * scale2 - (e & 1 ? stat2.z : stat2.x));
                }
              }
              if (flag == kTileCausal) {
                const int diag = diagonal(row0, key0);
                #pragma unroll
                for (int nt = 0; nt < kNq; ++nt) {
                  #pragma unroll
                  for (int e = 0; e < 4; ++e) {
                    const int local_key = key_base + (e >= 2 ? 8 : 0), local_q = nt * 8 + t4 * 2 + (e & 1);
                    if (local_key - local_q > diag) pt[mt][nt][e] = 0.0f;
                  }
                }
              }
            } else {
              #pragma unroll
              for (int nt = 0; nt < kNq; ++nt) {
                const float4 stat2 = *reinterpret_cast<const float4*>(st + nt * 8 + t4 * 2);
                #pragma unroll
                for (int e = 0; e < 4; ++e) {
                  const int local_key = key_base + (e >= 2 ? 8 : 0), local_q = nt * 8 + t4 * 2 + (e & 1);
                  float x = pt[mt][nt][e] * p.scale;
                  if (flag != kTileZero && local_q < rows_left && local_key < keys_left) {
                    x += bias_at(p, bias_base, row0 + local_q, key0 + local_key);
                  }
                  pt[mt][nt][e] = local_key < keys_left ? fast_exp2(x * kLog2e - (e & 1 ? stat2.z : stat2.x)) : 0.0f;
                }
              }
            }
            #pragma unroll
            for (int nt = 0; nt < kNq; ++nt) {
              const float4 stat2 = *reinterpret_cast<const float4*>(st + nt * 8 + t4 * 2);
              #pragma unroll
              for (int e = 0; e < 4; ++e) {
                dpt[mt][nt][e] = pt[mt][nt][e] * (dpt[mt][nt][e] - (e & 1 ? stat2.w : stat2.y));
              }
            }
          }
          // dV += P^T . dO and dK += dS^T . Q over the tile's queries.
          #pragma unroll
          for (int c = 0; c < kSub / 16; ++c) {
            uint32_t ap[MT][4], ad[MT][4];
            #pragma unroll
            for (int mt = 0; mt < MT; ++mt) {
              acc_to_a(ap[mt], pt[mt], c);
              acc_to_a(ad[mt], dpt[mt], c);
            }
            #pragma unroll
            for (int dn = 0; dn < DP / 8; dn += 2) {
              uint32_t bd[4], bq[4];
              load_b4_trans(bd, dos, kLd, c * 16, dn * 8);
              load_b4_trans(bq, qs, kLd, c * 16, dn * 8);
              #pragma unroll
              for (int mt = 0; mt < MT; ++mt) {
                mma(dv_acc[mt][dn], ap[mt], bd[0], bd[1]);
                mma(dv_acc[mt][dn + 1], ap[mt], bd[2], bd[3]);
                mma(dk_acc[mt][dn], ad[mt], bq[0], bq[1]);
                mma(dk_acc[mt][dn + 1], ad[mt], bq[2], bq[3]);
              }
            }
          }
        }
        // dS^T as stored: [key][query], a pair of queries in one 4-byte store.
        #pragma unroll
        for (int mt = 0; mt < MT; ++mt) {
          #pragma unroll
          for (int nt = 0; nt < kNq; ++nt) {
            #pragma unroll
            for (int r = 0; r < 2; ++r) {
              bf16* at = dss + ((warp * MT + mt) * 16 + g + r * 8) * kSLd + h * kSub + nt * 8 + t4 * 2;
              *reinterpret_cast<uint32_t*>(at) = pack(dpt[mt][nt][2 * r], dpt[mt][nt][2 * r + 1]);
            }
          }
        }
      }
      __syncthreads();  // dS complete
      // dQ (query m-tile qm) += dS . K over the block's keys, added into the fp32 scratch.
      const int qm = warp;
      float dq[DP / 8][4] = {};
      #pragma unroll
      for (int c = 0; c < kKeys / 16; ++c) {
        uint32_t a[4];
        load_a4_trans(a, dss, kSLd, qm * 16, c * 16);
        #pragma unroll
        for (int dn = 0; dn < DP / 8; dn += 2) {
          uint32_t bk[4];
          load_b4_trans(bk, ks, kLd, c * 16, dn * 8);
          mma(dq[dn], a, bk[0], bk[1]);
          mma(dq[dn + 1], a, bk[2], bk[3]);
        }
      }
      #pragma unroll
      for (int r = 0; r < 2; ++r) {
        const int64_t row = tile_row0 + qm * 16 + g + r * 8;
        if (row >= p.s) continue;
        float* dq_row = dq_accum + (b * p.s + row) * p.d;
        #pragma unroll
        for (int dn = 0; dn < DP / 8; ++dn) {
          const int col = dn * 8 + t4 * 2;
          const float x0 = dq[dn][r * 2] * p.scale, x1 = dq[dn][r * 2 + 1] * p.scale;
          if (p.d % 2 == 0 && col + 1 < p.d) {
            atomicAdd(reinterpret_cast<float2*>(dq_row + col), make_float2(x0, x1));  // one 8-byte add
          } else {
            if (col < p.d) atomicAdd(dq_row + col, x0);
            if (col + 1 < p.d) atomicAdd(dq_row + col + 1, x1);
          }
        }
      }
    }
    cp_async_wait<0>();
    #pragma unroll
    for (int mt = 0; mt < MT; ++mt) {
      #pragma unroll
      for (int r = 0; r < 2; ++r) {
        const int64_t key = key0 + (warp * MT + mt) * 16 + g + r * 8;
        if (key >= p.t) continue;
        const int64_t dk_at = k_at + key * qk_ld, dv_at = v_at + key * v_ld;
        #pragma unroll
        for (int dn = 0; dn < DP / 8; ++dn) {
          #pragma unroll
          for (int j = 0; j < 2; ++j) {
            const int col = dn * 8 + t4 * 2 + j;
            if (col < p.d) store(dk, p.elem, dk_at + col, dk_acc[mt][dn][r * 2 + j] * p.scale);
            if (col < p.dv) store(dv, p.elem, dv_at + col, dv_acc[mt][dn][r * 2 + j]);
          }
        }
      }
    }
  }
}

// Shared memory of a block: the tiles, then the live-tile list of `tiles` entries.
size_t forward_smem(int dp, int tiles) {
  return sizeof(bf16) * (kFwdRows + 4 * kTile) * (dp + kPad) + 4 * size_t(tiles) + 2;
}
template <int DP>
size_t backward_smem(int tiles) {
  constexpr int kKeys = kTile * kBwdMt<DP>;
  return sizeof(bf16) * ((2 * kKeys + 4 * kTile) * (DP + kPad) + kKeys * (kTile + kPad)) + 2 * kTile * sizeof(float2) +
         (2 + kBwdMt<DP>) * size_t(tiles) + 2;
}

// The padded head dim the kernels are built for: the smallest of these >= max(d, dv).
constexpr int kPadded[] = {16, 32, 64, 80, 96, 128};

int padded_dim(int64_t d) {
  for (int dp : kPadded) {
    if (d <= dp) return dp;
  }
  return 0;
}

int64_t flag_bytes(const Problem& p) {
  int64_t count = 1;
  for (int32_t i = 0; i < p.lead_rank; ++i) {
    if (p.bias_lead_stride[i] != 0) count *= p.lead_shape[i];
  }
  return count * p.q_tiles * p.k_tiles;
}

Expected<Problem> make_problem(const AttentionProblem& a, Elem elem) {
  if (a.bias_view.rank < 2 || a.bias_view.rank > kMaxRank) {
    return make_error("", "inputs[3]", "bias view must span the scores' [..., S, T]");
  }
  if (a.d < 1 || a.dv < 1 || padded_dim(std::max(a.d, a.dv)) == 0) {
    return make_error("", "inputs[0]", "head dim must be in [1, 128], got " + std::to_string(std::max(a.d, a.dv)));
  }
  if (elem == Elem::i32 || a.bias_elem == Elem::i32) return make_error("", "inputs", "attention takes float tensors");
  Problem p;
  p.batch = a.batch;
  p.s = a.s;
  p.t = a.t;
  p.d = static_cast<int32_t>(a.d);
  p.dv = static_cast<int32_t>(a.dv);
  p.scale = a.scale;
  p.elem = elem;
  p.bias = a.bias;
  p.bias_elem = a.bias_elem;
  p.lead_rank = a.bias_view.rank - 2;
  int64_t lead = 1, flag_stride = 1;
  for (int32_t i = p.lead_rank - 1; i >= 0; --i) {
    p.lead_shape[i] = a.bias_view.shape[i];
    p.bias_lead_stride[i] = a.bias_view.stride[i];
    p.flag_lead_stride[i] = p.bias_lead_stride[i] != 0 ? flag_stride : 0;
    if (p.bias_lead_stride[i] != 0) flag_stride *= p.lead_shape[i];
    lead *= p.lead_shape[i];
  }
  if (lead != a.batch) return make_error("", "inputs[3]", "bias view's leading dims do not cover the batch");
  p.bias_offset = a.bias_view.offset;
  p.bias_s = a.bias_view.stride[p.lead_rank];
  p.bias_t = a.bias_view.stride[p.lead_rank + 1];
  p.heads = a.heads;
  p.qkv_pitch = a.qkv_pitch;
  p.q_tiles = static_cast<int32_t>((a.s + kTile - 1) / kTile);
  p.k_tiles = static_cast<int32_t>((a.t + kTile - 1) / kTile);
  return p;
}

int64_t align16(int64_t bytes) { return (bytes + 15) / 16 * 16; }

int64_t flag_region_bytes(const Problem& p) { return align16(flag_bytes(p)); }

Status run_flags(Problem& p, uint8_t* flags, cudaStream_t stream) {
  const int64_t blocks = flag_bytes(p);
  p.flags = flags;
  if (blocks == 0) return Status::ok();
  flag_kernel<<<static_cast<unsigned>(blocks), kFlagThreads, 0, stream>>>(p, flags, blocks);
  STRATA_CUDA_LAUNCHED("attention_flags");
  return Status::ok();
}

dim3 grid_of(int tiles, int64_t batch) { return dim3(static_cast<unsigned>(tiles), static_cast<unsigned>(std::min<int64_t>(batch, 65535))); }

template <int DP>
Status forward_dp(const Problem& p, const void* q, const void* k, const void* v, void* out, float* lse,
                  cudaStream_t stream) {
  const size_t smem = forward_smem(DP, p.k_tiles);
  STRATA_CUDA_CALL(cudaFuncSetAttribute(forward_kernel<DP>, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem)));
  forward_kernel<DP><<<grid_of((p.q_tiles + 1) / 2, p.batch), kFwdThreads, smem, stream>>>(p, q, k, v, out, lse);
  STRATA_CUDA_LAUNCHED("attention_forward");
  return Status::ok();
}

template <int DP>
Status backward_dp(const Problem& p, const void* q, const void* k, const void* v, const void* dout, const float2* stats,
                   float* dq_accum, void* dk, void* dv, cudaStream_t stream) {
  const size_t smem = backward_smem<DP>(p.q_tiles);
  STRATA_CUDA_CALL(cudaFuncSetAttribute(backward_kernel<DP>, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem)));
  backward_kernel<DP><<<grid_of((p.k_tiles + kBwdMt<DP> - 1) / kBwdMt<DP>, p.batch), kBlockThreads, smem, stream>>>(p, q, k, v, dout, stats, dq_accum,
                                                                                    dk, dv);
  STRATA_CUDA_LAUNCHED("attention_backward");
  return Status::ok();
}

Status backward_any(const Problem& p, const void* q, const void* k, const void* v, const void* dout, const float2* stats,
                    float* dq_accum, void* dk, void* dv, cudaStream_t stream) {
  switch (padded_dim(std::max(p.d, p.dv))) {
    case 16: return backward_dp<16>(p, q, k, v, dout, stats, dq_accum, dk, dv, stream);
    case 32: return backward_dp<32>(p, q, k, v, dout, stats, dq_accum, dk, dv, stream);
    case 64: return backward_dp<64>(p, q, k, v, dout, stats, dq_accum, dk, dv, stream);
    case 80: return backward_dp<80>(p, q, k, v, dout, stats, dq_accum, dk, dv, stream);
    case 96: return backward_dp<96>(p, q, k, v, dout, stats, dq_accum, dk, dv, stream);
    default: return backward_dp<128>(p, q, k, v, dout, stats, dq_accum, dk, dv, stream);
  }
}

}  // namespace

int64_t attention_workspace_bytes(const AttentionProblem& a, bool backward) {
  auto p = make_problem(a, Elem::bf16);
  if (!p.is_ok()) return 0;
  int64_t bytes = flag_region_bytes(*p);
  if (backward) bytes += align16(a.batch * a.s * a.d * 4) + align16(a.batch * a.s * 8);
  return bytes;
}

Status attention_forward(const AttentionProblem& a, const void* q, const void* k, const void* v, Elem elem, void* out,
                         float* lse, void* workspace, cudaStream_t stream) {
  STRATA_ASSIGN_OR_RETURN(Problem p, make_problem(a, elem));
  if (a.batch == 0 || a.s == 0) return Status::ok();
  STRATA_RETURN_IF_ERROR(run_flags(p, static_cast<uint8_t*>(workspace), stream));
  switch (padded_dim(std::max(a.d, a.dv))) {
    case 16: return forward_dp<16>(p, q, k, v, out, lse, stream);
    case 32: return forward_dp<32>(p, q, k, v, out, lse, stream);
    case 64: return forward_dp<64>(p, q, k, v, out, lse, stream);
    case 80: return forward_dp<80>(p, q, k, v, out, lse, stream);
    case 96: return forward_dp<96>(p, q, k, v, out, lse, stream);
    default: return forward_dp<128>(p, q, k, v, out, lse, stream);
  }
}

Status attention_backward(const AttentionProblem& a, const void* q, const void* k, const void* v, const void* out,
                          const void* dout, const float* lse, Elem elem, void* dq, void* dk, void* dv, void* workspace,
                          cudaStream_t stream) {
  STRATA_ASSIGN_OR_RETURN(Problem p, make_problem(a, elem));
  if (a.batch == 0 || (a.s == 0 && a.t == 0)) return Status::ok();
  auto* bytes = static_cast<char*>(workspace);
  STRATA_RETURN_IF_ERROR(run_flags(p, reinterpret_cast<uint8_t*>(bytes), stream));
  bytes += flag_region_bytes(p);
  auto* dq_accum = reinterpret_cast<float*>(bytes);
  const int64_t dq_count = a.batch * a.s * a.d;
  bytes += align16(dq_count * 4);
  auto* stats = reinterpret_cast<float2*>(bytes);
  const int64_t rows = a.batch * a.s;
  if (rows > 0) {  // the rows' stats, and dq_accum zeroed
    const bool vec = (elem == Elem::bf16 || elem == Elem::f32) && p.dv % 8 == 0;
    launch_rows(rows, vec ? (p.dv + 7) / 8 : 32, [&](auto lanes, unsigned blocks) {
      row_stats_kernel<decltype(lanes)::value><<<blocks, 256, 0, stream>>>(p, out, dout, lse, rows, vec, stats, dq_accum);
    });
    STRATA_CUDA_LAUNCHED("attention_row_stats");
  }
  STRATA_RETURN_IF_ERROR(backward_any(p, q, k, v, dout, stats, dq_accum, dk, dv, stream));
  if (dq_count > 0) {
    launch_rows(rows, (p.d + 3) / 4, [&](auto lanes, unsigned blocks) {
      convert_kernel<decltype(lanes)::value><<<blocks, 256, 0, stream>>>(p, dq_accum, dq, rows);
    });
    STRATA_CUDA_LAUNCHED("attention_dq");
  }
  return Status::ok();
}

}  // namespace strata::runtime::cuda::kernels
