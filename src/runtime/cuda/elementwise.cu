// Elementwise kernels: unary maths, binary ops with broadcasting (through strided views), the
// in-place helpers the executor needs (axpy, scale) and the optimizer updates (SGD, AdamW).
#include <algorithm>
#include <cstdint>

#include "device_util.cuh"
#include "kernels.h"

namespace strata::runtime::cuda::kernels {
namespace {

using device::grid_for;
using device::kThreads;
using device::load;
using device::offset_of;
using device::store;

constexpr float kGeluC = 0.7978845608028654f;  // sqrt(2 / pi)

__device__ __forceinline__ float gelu(float x) {
  return 0.5f * x * (1.0f + tanhf(kGeluC * (x + 0.044715f * x * x * x)));
}
__device__ __forceinline__ float gelu_derivative(float x) {
  const float t = tanhf(kGeluC * (x + 0.044715f * x * x * x));
  const float du = kGeluC * (1.0f + 3.0f * 0.044715f * x * x);
  return 0.5f * (1.0f + t) + 0.5f * x * (1.0f - t * t) * du;
}

template <Unary kOp>
__device__ __forceinline__ float apply_unary(float x, float s) {
  switch (kOp) {
    case Unary::neg: return -x;
    case Unary::exp: return expf(x);
    case Unary::log: return logf(x);
    case Unary::tanh: return tanhf(x);
    case Unary::sqrt: return sqrtf(x);
    case Unary::rsqrt: return rsqrtf(x);
    case Unary::relu: return x > 0.0f ? x : 0.0f;
    case Unary::gelu: return gelu(x);
    case Unary::scale: return x * s;
    case Unary::step: return x > 0.0f ? 1.0f : 0.0f;
    case Unary::indicator: return x != 0.0f ? 1.0f : 0.0f;
  }
  return x;
}

template <Unary kOp>
__global__ void unary_kernel(const void* x, Elem xe, void* y, Elem ye, int64_t count, float s) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < count; i += int64_t{gridDim.x} * blockDim.x) {
    store(y, ye, i, apply_unary<kOp>(load(x, xe, i), s));
  }
}

template <Binary kOp>
__device__ __forceinline__ float apply_binary(float a, float b) {
  switch (kOp) {
    case Binary::add: return a + b;
    case Binary::sub: return a - b;
    case Binary::mul: return a * b;
    case Binary::div: return a / b;
    case Binary::max: return a > b ? a : b;
    case Binary::gelu_grad: return b * gelu_derivative(a);  // (x, dy)
  }
  return a;
}

// Both operands contiguous over y (the common case: same shapes).
template <Binary kOp>
__global__ void binary_flat_kernel(const void* a, Elem ae, const void* b, Elem be, void* y, Elem ye, int64_t count) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < count; i += int64_t{gridDim.x} * blockDim.x) {
    store(y, ye, i, apply_binary<kOp>(load(a, ae, i), load(b, be, i)));
  }
}

// b repeats with period `period` along y's flat index (a trailing-dims broadcast: bias, mask).
template <Binary kOp>
__global__ void binary_period_kernel(const void* a, Elem ae, const void* b, Elem be, int64_t period, void* y, Elem ye,
                                     int64_t count) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < count; i += int64_t{gridDim.x} * blockDim.x) {
    store(y, ye, i, apply_binary<kOp>(load(a, ae, i), load(b, be, i % period)));
  }
}

template <Binary kOp>
__global__ void binary_view_kernel(const void* a, Elem ae, View av, const void* b, Elem be, View bv, void* y, Elem ye,
                                   int64_t count) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < count; i += int64_t{gridDim.x} * blockDim.x) {
    store(y, ye, i, apply_binary<kOp>(load(a, ae, offset_of(av, i)), load(b, be, offset_of(bv, i))));
  }
}

// bf16 fast paths: eight elements per thread through 16-byte loads and stores.
using device::Bf16x8;

bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

template <Unary kOp>
__global__ void unary_bf16x8_kernel(const uint4* x, uint4* y, int64_t words, float s) {
  for (int64_t w = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; w < words; w += int64_t{gridDim.x} * blockDim.x) {
    Bf16x8 in, out;
    in.word = x[w];
#pragma unroll
    for (int k = 0; k < 8; ++k) out.h[k] = __float2bfloat16_rn(apply_unary<kOp>(__bfloat162float(in.h[k]), s));
    y[w] = out.word;
  }
}

// y = op(a, b) with a and y bf16 and contiguous; b bf16 contiguous (period 0) or read at
// (i mod period) in its own type (period a multiple of 8).
template <Binary kOp>
__global__ void binary_bf16x8_kernel(const uint4* a, const void* b, Elem be, int64_t period, uint4* y, int64_t words) {
  for (int64_t w = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; w < words; w += int64_t{gridDim.x} * blockDim.x) {
    Bf16x8 x, z, out;
    x.word = a[w];
    if (period == 0) {
      z.word = static_cast<const uint4*>(b)[w];
#pragma unroll
      for (int k = 0; k < 8; ++k) {
        out.h[k] = __float2bfloat16_rn(apply_binary<kOp>(__bfloat162float(x.h[k]), __bfloat162float(z.h[k])));
      }
    } else {
      // base is a multiple of 8, so b's eight values are one or two 16-byte words: scalar loads
      // here would fetch a 32-byte sector per lane per value (the [S, S] attention mask).
      // (32-bit remainder while the index fits: a 64-bit one is a long instruction sequence.)
      const int64_t base = w * 8 < (int64_t{1} << 32) && period < (int64_t{1} << 32)
                               ? static_cast<uint32_t>(w * 8) % static_cast<uint32_t>(period)
                               : (w * 8) % period;
      float v[8];
      device::load8(b, be, base, v);
#pragma unroll
      for (int k = 0; k < 8; ++k) out.h[k] = __float2bfloat16_rn(apply_binary<kOp>(__bfloat162float(x.h[k]), v[k]));
    }
    y[w] = out.word;
  }
}

// y = op(a, b), all bf16 and contiguous: two 16-byte words of each operand per thread per step,
// both loads issued before either store (the compiler may not move a load past a store that could
// alias it), so twice the bytes are in flight as in binary_bf16x8_kernel.
template <Binary kOp>
__global__ void binary_bf16x16_kernel(const uint4* a, const uint4* b, uint4* y, int64_t words) {
  const int64_t stride = int64_t{gridDim.x} * blockDim.x;
  for (int64_t w = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; w < words; w += 2 * stride) {
    const int64_t w2 = w + stride;
    Bf16x8 x[2], z[2];
    x[0].word = a[w];
    z[0].word = b[w];
    if (w2 < words) {
      x[1].word = a[w2];
      z[1].word = b[w2];
    }
#pragma unroll
    for (int u = 0; u < 2; ++u) {
      if (u == 1 && w2 >= words) break;
      Bf16x8 out;
#pragma unroll
      for (int k = 0; k < 8; ++k) {
        out.h[k] = __float2bfloat16_rn(apply_binary<kOp>(__bfloat162float(x[u].h[k]), __bfloat162float(z[u].h[k])));
      }
      y[u == 0 ? w : w2] = out.word;
    }
  }
}

bool is_contiguous(const View& v) {
  int64_t stride = 1;
  for (int32_t d = v.rank - 1; d >= 0; --d) {
    if (v.shape[d] != 1 && v.stride[d] != stride) return false;
    stride *= v.shape[d];
  }
  return v.offset == 0;
}

// The period p when v reads element (i mod p) for flat index i: contiguous trailing dims after
// leading broadcast (stride 0) dims; 0 when v is not of that form.
int64_t period_of(const View& v) {
  int64_t stride = 1;
  int32_t d = v.rank - 1;
  for (; d >= 0 && (v.shape[d] == 1 || v.stride[d] == stride); --d) stride *= v.shape[d];
  for (; d >= 0; --d) {
    if (v.shape[d] != 1 && v.stride[d] != 0) return 0;
  }
  return v.offset == 0 ? stride : 0;
}

template <Binary kOp>
Status binary_impl(const void* a, Elem ae, View av, const void* b, Elem be, View bv, void* y, Elem ye,
                   cudaStream_t stream) {
  const int64_t count = av.numel();
  if (count == 0) return Status::ok();
  const unsigned grid = grid_for(count);
  if (ae == Elem::bf16 && ye == Elem::bf16 && count % 8 == 0 && aligned16(a) && aligned16(y) && aligned16(b) &&
      is_contiguous(av)) {
    const bool flat = be == Elem::bf16 && is_contiguous(bv);
    const int64_t period = flat ? 0 : period_of(bv);
    if (flat) {
      binary_bf16x16_kernel<kOp><<<grid_for(count / 16), kThreads, 0, stream>>>(
          static_cast<const uint4*>(a), static_cast<const uint4*>(b), static_cast<uint4*>(y), count / 8);
      STRATA_CUDA_LAUNCHED("binary_bf16x16");
      return Status::ok();
    }
    if (period > 0 && period % 8 == 0) {
      binary_bf16x8_kernel<kOp><<<grid_for(count / 8), kThreads, 0, stream>>>(
          static_cast<const uint4*>(a), b, be, period, static_cast<uint4*>(y), count / 8);
      STRATA_CUDA_LAUNCHED("binary_bf16x8");
      return Status::ok();
    }
  }
  if (is_contiguous(av) && is_contiguous(bv)) {
    binary_flat_kernel<kOp><<<grid, kThreads, 0, stream>>>(a, ae, b, be, y, ye, count);
  } else if (is_contiguous(av) && period_of(bv) > 0) {
    binary_period_kernel<kOp><<<grid, kThreads, 0, stream>>>(a, ae, b, be, period_of(bv), y, ye, count);
  } else {
    binary_view_kernel<kOp><<<grid, kThreads, 0, stream>>>(a, ae, av, b, be, bv, y, ye, count);
  }
  STRATA_CUDA_LAUNCHED("binary");
  return Status::ok();
}

__global__ void axpy_kernel(void* dst, Elem de, const void* src, Elem se, float factor, int64_t count) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < count; i += int64_t{gridDim.x} * blockDim.x) {
    store(dst, de, i, load(dst, de, i) + factor * load(src, se, i));
  }
}

__global__ void scale_kernel(void* dst, Elem de, float factor, int64_t count) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < count; i += int64_t{gridDim.x} * blockDim.x) {
    store(dst, de, i, load(dst, de, i) * factor);
  }
}

// One AdamW update in fp32 (the interpreter's formula). The moments' fused multiply-adds are
// spelled out: the compiler fused a different product in the scalar kernel (kWord false) than in
// the four-wide one (true), and left to itself it picks either in a kernel that inlines both, so
// this keeps every value's bits whichever kernel updates it.
template <bool kWord>
__device__ __forceinline__ void adam_one(const AdamParams& p, float w, float g, float& m, float& v, float& w_out) {
  if (kWord) {
    m = __fmaf_rn(1.0f - p.beta1, g, p.beta1 * m);
    v = __fmaf_rn(g, (1.0f - p.beta2) * g, p.beta2 * v);
  } else {
    m = __fmaf_rn(p.beta1, m, (1.0f - p.beta1) * g);
    v = __fmaf_rn(p.beta2, v, g * ((1.0f - p.beta2) * g));
  }
  w_out = w - p.lr * __fmaf_rn(p.weight_decay, w, (m / p.bias1) / (sqrtf(v / p.bias2) + p.eps));
}

__global__ void adam_kernel(AdamParams p, const void* param, Elem pe, const void* grad, Elem ge, const void* m_in,
                            Elem me, const void* v_in, Elem ve, float* param_out, float* m_out, float* v_out,
                            __nv_bfloat16* param_bf16, int64_t count) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < count; i += int64_t{gridDim.x} * blockDim.x) {
    float m = load(m_in, me, i), v = load(v_in, ve, i), w;
    adam_one<false>(p, load(param, pe, i), load(grad, ge, i), m, v, w);
    param_out[i] = w;
    m_out[i] = m;
    v_out[i] = v;
    if (param_bf16 != nullptr) param_bf16[i] = __float2bfloat16_rn(w);
  }
}

// Four parameters (word i) through 16-byte loads of param, m and v (fp32) and the gradient (bf16:
// 8 bytes, or fp32); with kCopy also the new parameters rounded to bf16 (8 bytes). 26 bytes per
// parameter (28 with the copy).
template <bool kBf16Grad, bool kCopy>
__device__ __forceinline__ void adam_word(const AdamParams& p, const float4* param, const void* grad,
                                          const float4* m_in, const float4* v_in, float4* param_out, float4* m_out,
                                          float4* v_out, uint2* param_bf16, int64_t i) {
  float4 w = param[i], m = m_in[i], v = v_in[i];
  float g[4];
  if (kBf16Grad) {
    const uint2 raw = static_cast<const uint2*>(grad)[i];
    const auto* h = reinterpret_cast<const __nv_bfloat16*>(&raw);
#pragma unroll
    for (int k = 0; k < 4; ++k) g[k] = __bfloat162float(h[k]);
  } else {
    const float4 gg = static_cast<const float4*>(grad)[i];
    g[0] = gg.x, g[1] = gg.y, g[2] = gg.z, g[3] = gg.w;
  }
  float* ws = &w.x;
  float* ms = &m.x;
  float* vs = &v.x;
  float wo[4];
#pragma unroll
  for (int k = 0; k < 4; ++k) adam_one<true>(p, ws[k], g[k], ms[k], vs[k], wo[k]);
  param_out[i] = make_float4(wo[0], wo[1], wo[2], wo[3]);
  m_out[i] = m;
  v_out[i] = v;
  if (kCopy) {
    uint2 copy;
    auto* h = reinterpret_cast<__nv_bfloat16*>(&copy);
#pragma unroll
    for (int k = 0; k < 4; ++k) h[k] = __float2bfloat16_rn(wo[k]);
    param_bf16[i] = copy;
  }
}

// Words grid-strided, each warp's accesses contiguous. (Eight parameters per thread as two float4s
// 32 bytes apart, with streaming cache hints, measured 2.4-2.7 TB/s on an H200 against 3.8-4.0
// for this.)
template <bool kBf16Grad, bool kCopy>
__global__ void adam_x4_kernel(AdamParams p, const float4* param, const void* grad, const float4* m_in,
                               const float4* v_in, float4* param_out, float4* m_out, float4* v_out, uint2* param_bf16,
                               int64_t words) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < words; i += int64_t{gridDim.x} * blockDim.x) {
    adam_word<kBf16Grad, kCopy>(p, param, grad, m_in, v_in, param_out, m_out, v_out, param_bf16, i);
  }
}

// Many tensors in one launch: block b updates chunk b - first_block[t] (kAdamChunkWords words) of
// the tensor t whose blocks hold b, and the last block of a tensor also its count % 4 last values.
// Passed by value, so its size stays under the 4 KB of kernel parameters.
constexpr int kAdamChunkWords = kThreads * 4;
struct AdamBatchArgs {
  AdamParams p;
  int32_t n;
  int32_t first_block[kAdamBatch + 1];
  const float4* param[kAdamBatch];
  const void* grad[kAdamBatch];
  const float4* m[kAdamBatch];
  const float4* v[kAdamBatch];
  float4* param_out[kAdamBatch];
  float4* m_out[kAdamBatch];
  float4* v_out[kAdamBatch];
  uint2* param_bf16[kAdamBatch];
  int64_t count[kAdamBatch];
  bool bf16_grad[kAdamBatch];
};
static_assert(sizeof(AdamBatchArgs) <= 4096, "AdamBatchArgs outgrows the kernel parameter space");

template <bool kBf16Grad, bool kCopy>
__device__ __forceinline__ void adam_chunk(const AdamBatchArgs& a, int t, int64_t begin, bool last) {
  const int64_t words = a.count[t] / 4;
#pragma unroll
  for (int k = 0; k < 4; ++k) {
    const int64_t i = begin + k * int64_t{blockDim.x} + threadIdx.x;
    if (i < words) {
      adam_word<kBf16Grad, kCopy>(a.p, a.param[t], a.grad[t], a.m[t], a.v[t], a.param_out[t], a.m_out[t], a.v_out[t],
                                  a.param_bf16[t], i);
    }
  }
  const int64_t i = words * 4 + threadIdx.x;  // the scalar tail, as adam_kernel does it
  if (!last || i >= a.count[t]) return;
  const auto* w = reinterpret_cast<const float*>(a.param[t]);
  const float g = kBf16Grad ? __bfloat162float(static_cast<const __nv_bfloat16*>(a.grad[t])[i])
                            : static_cast<const float*>(a.grad[t])[i];
  float m = reinterpret_cast<const float*>(a.m[t])[i], v = reinterpret_cast<const float*>(a.v[t])[i], wo;
  adam_one<false>(a.p, w[i], g, m, v, wo);
  reinterpret_cast<float*>(a.param_out[t])[i] = wo;
  reinterpret_cast<float*>(a.m_out[t])[i] = m;
  reinterpret_cast<float*>(a.v_out[t])[i] = v;
  if (kCopy) reinterpret_cast<__nv_bfloat16*>(a.param_bf16[t])[i] = __float2bfloat16_rn(wo);
}

__global__ void adam_batch_kernel(const __grid_constant__ AdamBatchArgs a) {
  int lo = 0, hi = a.n - 1;  // the last t with first_block[t] <= blockIdx.x
  while (lo < hi) {
    const int mid = (lo + hi + 1) / 2;
    if (a.first_block[mid] <= static_cast<int32_t>(blockIdx.x)) lo = mid;
    else hi = mid - 1;
  }
  const int t = lo;
  const int64_t begin = int64_t{static_cast<int32_t>(blockIdx.x) - a.first_block[t]} * kAdamChunkWords;
  const bool last = static_cast<int32_t>(blockIdx.x) + 1 == a.first_block[t + 1];
  const bool copy = a.param_bf16[t] != nullptr;
  if (a.bf16_grad[t]) {
    copy ? adam_chunk<true, true>(a, t, begin, last) : adam_chunk<true, false>(a, t, begin, last);
  } else {
    copy ? adam_chunk<false, true>(a, t, begin, last) : adam_chunk<false, false>(a, t, begin, last);
  }
}

__global__ void sgd_kernel(float lr, const void* param, Elem pe, const void* grad, Elem ge, void* out, Elem oe,
                           int64_t count) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < count; i += int64_t{gridDim.x} * blockDim.x) {
    store(out, oe, i, load(param, pe, i) - lr * load(grad, ge, i));
  }
}

}  // namespace

Status unary(Unary op, float scalar, const void* x, Elem xe, void* y, Elem ye, int64_t count, cudaStream_t stream) {
  if (count == 0) return Status::ok();
  const bool vector = xe == Elem::bf16 && ye == Elem::bf16 && count % 8 == 0 && aligned16(x) && aligned16(y);
  const unsigned grid = grid_for(vector ? count / 8 : count);
  const auto* xw = static_cast<const uint4*>(x);
  auto* yw = static_cast<uint4*>(y);
  switch (op) {
#define STRATA_UNARY_CASE(name)                                                                     \
  case Unary::name:                                                                                 \
    if (vector) {                                                                                   \
      unary_bf16x8_kernel<Unary::name><<<grid, kThreads, 0, stream>>>(xw, yw, count / 8, scalar);   \
    } else {                                                                                        \
      unary_kernel<Unary::name><<<grid, kThreads, 0, stream>>>(x, xe, y, ye, count, scalar);        \
    }                                                                                               \
    break;
    STRATA_UNARY_CASE(neg)
    STRATA_UNARY_CASE(exp)
    STRATA_UNARY_CASE(log)
    STRATA_UNARY_CASE(tanh)
    STRATA_UNARY_CASE(sqrt)
    STRATA_UNARY_CASE(rsqrt)
    STRATA_UNARY_CASE(relu)
    STRATA_UNARY_CASE(gelu)
    STRATA_UNARY_CASE(scale)
    STRATA_UNARY_CASE(step)
    STRATA_UNARY_CASE(indicator)
#undef STRATA_UNARY_CASE
  }
  STRATA_CUDA_LAUNCHED("unary");
  return Status::ok();
}

Status binary(Binary op, const void* a, Elem ae, View av, const void* b, Elem be, View bv, void* y, Elem ye,
              cudaStream_t stream) {
  switch (op) {
    case Binary::add: return binary_impl<Binary::add>(a, ae, av, b, be, bv, y, ye, stream);
    case Binary::sub: return binary_impl<Binary::sub>(a, ae, av, b, be, bv, y, ye, stream);
    case Binary::mul: return binary_impl<Binary::mul>(a, ae, av, b, be, bv, y, ye, stream);
    case Binary::div: return binary_impl<Binary::div>(a, ae, av, b, be, bv, y, ye, stream);
    case Binary::max: return binary_impl<Binary::max>(a, ae, av, b, be, bv, y, ye, stream);
    case Binary::gelu_grad: return binary_impl<Binary::gelu_grad>(a, ae, av, b, be, bv, y, ye, stream);
  }
  return make_error("", "", "binary: unknown op");
}

Status axpy(void* dst, Elem de, const void* src, Elem se, float factor, int64_t count, cudaStream_t stream) {
  if (count == 0) return Status::ok();
  axpy_kernel<<<grid_for(count), kThreads, 0, stream>>>(dst, de, src, se, factor, count);
  STRATA_CUDA_LAUNCHED("axpy");
  return Status::ok();
}

Status scale_in_place(void* dst, Elem elem, float factor, int64_t count, cudaStream_t stream) {
  if (count == 0) return Status::ok();
  scale_kernel<<<grid_for(count), kThreads, 0, stream>>>(dst, elem, factor, count);
  STRATA_CUDA_LAUNCHED("scale");
  return Status::ok();
}

Status adam(const AdamParams& p, const void* param, Elem pe, const void* grad, Elem ge, const void* m, Elem me,
            const void* v, Elem ve, void* param_out, void* m_out, void* v_out, void* param_bf16, int64_t count,
            cudaStream_t stream) {
  if (count == 0) return Status::ok();
  const bool fp32_state = pe == Elem::f32 && me == Elem::f32 && ve == Elem::f32;
  const bool aligned = aligned16(param) && aligned16(m) && aligned16(v) && aligned16(param_out) && aligned16(m_out) &&
                       aligned16(v_out) && aligned16(grad) && (param_bf16 == nullptr || aligned16(param_bf16));
  // Groups of four through the vector kernel, the remainder (and any other layout) one by one.
  const int64_t groups = fp32_state && aligned && (ge == Elem::bf16 || ge == Elem::f32) ? count / 4 : 0;
  if (groups > 0) {
    const auto* pw = static_cast<const float4*>(param);
    const auto* mw = static_cast<const float4*>(m);
    const auto* vw = static_cast<const float4*>(v);
    auto* po = static_cast<float4*>(param_out);
    auto* mo = static_cast<float4*>(m_out);
    auto* vo = static_cast<float4*>(v_out);
    auto* co = static_cast<uint2*>(param_bf16);
    const unsigned grid = grid_for(groups);
    if (ge == Elem::bf16 && co != nullptr) {
      adam_x4_kernel<true, true><<<grid, kThreads, 0, stream>>>(p, pw, grad, mw, vw, po, mo, vo, co, groups);
    } else if (ge == Elem::bf16) {
      adam_x4_kernel<true, false><<<grid, kThreads, 0, stream>>>(p, pw, grad, mw, vw, po, mo, vo, co, groups);
    } else if (co != nullptr) {
      adam_x4_kernel<false, true><<<grid, kThreads, 0, stream>>>(p, pw, grad, mw, vw, po, mo, vo, co, groups);
    } else {
      adam_x4_kernel<false, false><<<grid, kThreads, 0, stream>>>(p, pw, grad, mw, vw, po, mo, vo, co, groups);
    }
    STRATA_CUDA_LAUNCHED("adam_x4");
  }
  const int64_t done = groups * 4, rest = count - done;
  if (rest == 0) return Status::ok();
  const auto at = [](const void* base, Elem e, int64_t i) {
    return base == nullptr ? nullptr : static_cast<const char*>(base) + i * elem_bytes(e);
  };
  auto* bf16_rest = param_bf16 == nullptr ? nullptr : static_cast<__nv_bfloat16*>(param_bf16) + done;
  adam_kernel<<<grid_for(rest), kThreads, 0, stream>>>(
      p, at(param, pe, done), pe, at(grad, ge, done), ge, at(m, me, done), me, at(v, ve, done), ve,
      static_cast<float*>(param_out) + done, static_cast<float*>(m_out) + done, static_cast<float*>(v_out) + done,
      bf16_rest, rest);
  STRATA_CUDA_LAUNCHED("adam");
  return Status::ok();
}

bool adam_batchable(const AdamTensor& t) {
  return (t.grad_elem == Elem::bf16 || t.grad_elem == Elem::f32) && aligned16(t.param) && aligned16(t.grad) &&
         aligned16(t.m) && aligned16(t.v) && aligned16(t.param_out) && aligned16(t.m_out) && aligned16(t.v_out) &&
         (t.param_bf16 == nullptr || aligned16(t.param_bf16));
}

Status adam_batch(const AdamParams& p, const AdamTensor* tensors, int64_t n, cudaStream_t stream) {
  for (int64_t begin = 0; begin < n; begin += kAdamBatch) {
    AdamBatchArgs a{};
    a.p = p;
    int64_t blocks = 0;
    for (int64_t k = begin; k < std::min<int64_t>(n, begin + kAdamBatch); ++k) {
      const AdamTensor& t = tensors[k];
      STRATA_CHECK(adam_batchable(t), "adam_batch: a tensor that adam_batchable refuses");
      if (t.count == 0) continue;
      const int i = a.n++;
      a.first_block[i] = static_cast<int32_t>(blocks);
      a.param[i] = static_cast<const float4*>(t.param);
      a.grad[i] = t.grad;
      a.m[i] = static_cast<const float4*>(t.m);
      a.v[i] = static_cast<const float4*>(t.v);
      a.param_out[i] = static_cast<float4*>(t.param_out);
      a.m_out[i] = static_cast<float4*>(t.m_out);
      a.v_out[i] = static_cast<float4*>(t.v_out);
      a.param_bf16[i] = static_cast<uint2*>(t.param_bf16);
      a.count[i] = t.count;
      a.bf16_grad[i] = t.grad_elem == Elem::bf16;
      blocks += std::max<int64_t>(1, (t.count / 4 + kAdamChunkWords - 1) / kAdamChunkWords);
    }
    if (a.n == 0) continue;
    if (blocks >= (int64_t{1} << 31)) return make_error("", "", "adam_batch: more than 2^31 blocks in one launch");
    a.first_block[a.n] = static_cast<int32_t>(blocks);
    adam_batch_kernel<<<static_cast<unsigned>(blocks), kThreads, 0, stream>>>(a);
    STRATA_CUDA_LAUNCHED("adam_batch");
  }
  return Status::ok();
}

Status sgd(float lr, const void* param, Elem pe, const void* grad, Elem ge, void* param_out, int64_t count,
           cudaStream_t stream) {
  if (count == 0) return Status::ok();
  sgd_kernel<<<grid_for(count), kThreads, 0, stream>>>(lr, param, pe, grad, ge, param_out, pe, count);
  STRATA_CUDA_LAUNCHED("sgd");
  return Status::ok();
}

}  // namespace strata::runtime::cuda::kernels
