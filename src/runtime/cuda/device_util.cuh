// Internal to the cuda backend's .cu files: typed loads and stores through fp32, strided-view
// offsets, block-wide reductions and launch sizing shared by the kernels.
#pragma once

#include <cuda_bf16.h>

#include <algorithm>

#include "cuda_common.h"

namespace strata::runtime::cuda::device {

__device__ __forceinline__ float load(const void* p, Elem e, int64_t i) {
  switch (e) {
    case Elem::bf16: return __bfloat162float(static_cast<const __nv_bfloat16*>(p)[i]);
    case Elem::i32: return static_cast<float>(static_cast<const int32_t*>(p)[i]);
    default: return static_cast<const float*>(p)[i];
  }
}

__device__ __forceinline__ void store(void* p, Elem e, int64_t i, float v) {
  switch (e) {
    case Elem::bf16: static_cast<__nv_bfloat16*>(p)[i] = __float2bfloat16_rn(v); break;
    case Elem::i32: static_cast<int32_t*>(p)[i] = static_cast<int32_t>(v); break;
    default: static_cast<float*>(p)[i] = v; break;
  }
}

// Element offset of flat index `flat` (row-major over v.shape) in view v.
__device__ __forceinline__ int64_t offset_of(const View& v, int64_t flat) {
  if (v.rank == 1) return v.offset + flat * v.stride[0];
  int64_t off = v.offset;
  for (int32_t d = v.rank - 1; d >= 0; --d) {
    const int64_t n = v.shape[d];
    off += (flat % n) * v.stride[d];
    flat /= n;
  }
  return off;
}

// The same with 32-bit index arithmetic (much cheaper divisions) for views under 2^31 elements.
__device__ __forceinline__ int64_t offset_of32(const View& v, uint32_t flat) {
  if (v.rank == 1) return v.offset + static_cast<int64_t>(flat) * v.stride[0];
  int64_t off = v.offset;
  for (int32_t d = v.rank - 1; d >= 0; --d) {
    const auto n = static_cast<uint32_t>(v.shape[d]);
    off += static_cast<int64_t>(flat % n) * v.stride[d];
    flat /= n;
  }
  return off;
}

// Eight bf16 values in one 16-byte word.
union Bf16x8 {
  uint4 word;
  __nv_bfloat16 h[8];
};

// Eight consecutive values of p from element i on, through 16-byte loads for f32 and bf16 (then i
// is a multiple of 8 and p 16-byte aligned).
__device__ __forceinline__ void load8(const void* p, Elem e, int64_t i, float (&v)[8]) {
  if (e == Elem::f32) {
    const float4 lo = static_cast<const float4*>(p)[i / 4], hi = static_cast<const float4*>(p)[i / 4 + 1];
    v[0] = lo.x, v[1] = lo.y, v[2] = lo.z, v[3] = lo.w, v[4] = hi.x, v[5] = hi.y, v[6] = hi.z, v[7] = hi.w;
  } else if (e == Elem::bf16) {
    Bf16x8 w;
    w.word = static_cast<const uint4*>(p)[i / 8];
#pragma unroll
    for (int k = 0; k < 8; ++k) v[k] = __bfloat162float(w.h[k]);
  } else {
#pragma unroll
    for (int k = 0; k < 8; ++k) v[k] = load(p, e, i + k);
  }
}

// Sum (or max) over a block of blockDim.x threads (a multiple of 32, at most 1024); every thread
// gets the result. `scratch` holds 32 floats of shared memory.
template <bool kMax>
__device__ __forceinline__ float block_reduce(float v, float* scratch) {
  for (int o = 16; o > 0; o >>= 1) {
    const float w = __shfl_xor_sync(0xffffffffu, v, o);
    v = kMax ? fmaxf(v, w) : v + w;
  }
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, warps = blockDim.x / 32;
  __syncthreads();  // scratch may still be read by a previous reduction
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  v = lane < warps ? scratch[lane] : (kMax ? -INFINITY : 0.0f);
  for (int o = 16; o > 0; o >>= 1) {
    const float w = __shfl_xor_sync(0xffffffffu, v, o);
    v = kMax ? fmaxf(v, w) : v + w;
  }
  return v;
}

constexpr int kThreads = 256;

// Blocks for a grid-stride loop over `count` items.
inline unsigned grid_for(int64_t count) {
  const int64_t blocks = (count + kThreads - 1) / kThreads;
  return static_cast<unsigned>(std::clamp<int64_t>(blocks, 1, 132 * 32));
}

}  // namespace strata::runtime::cuda::device
