// Internal to the cuda backend: checked CUDA/cuBLAS/NCCL calls, the element types device kernels
// understand, and strided views (shape + element strides + offset) that the layout kernels share.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <string>

#include "strata/core/dtype.h"
#include "strata/core/status.h"

// Every CUDA runtime call goes through this: a failure becomes an Error naming the call.
#define STRATA_CUDA_CALL(call)                                                                      \
  do {                                                                                              \
    const cudaError_t strata_cuda_rc_ = (call);                                                     \
    if (strata_cuda_rc_ != cudaSuccess) {                                                           \
      return ::strata::make_error("", "", std::string("CUDA call ") + #call + " failed: " +        \
                                              cudaGetErrorString(strata_cuda_rc_));                 \
    }                                                                                               \
  } while (0)

// After a kernel launch: a bad launch configuration or an earlier asynchronous fault.
#define STRATA_CUDA_LAUNCHED(what)                                                                  \
  do {                                                                                              \
    const cudaError_t strata_cuda_rc_ = cudaGetLastError();                                         \
    if (strata_cuda_rc_ != cudaSuccess) {                                                           \
      return ::strata::make_error("", "", std::string("CUDA kernel ") + (what) + " failed: " +     \
                                              cudaGetErrorString(strata_cuda_rc_));                 \
    }                                                                                               \
  } while (0)

namespace strata::runtime::cuda {

// Element types of device storage. Kernels load every float as fp32 and store in the output's type.
enum class Elem : int32_t { f32 = 0, bf16 = 1, i32 = 2 };

// The device element type of an IR dtype (f64 and f16 have no device storage here).
Expected<Elem> elem_of(DType dtype);
DType dtype_of(Elem elem);
inline int64_t elem_bytes(Elem e) { return e == Elem::bf16 ? 2 : 4; }

constexpr int kMaxRank = 8;

// A strided view of a tensor's storage: element (i0, i1, ...) lives at offset + sum(i_d * stride[d]).
// Strides may be 0 (broadcast). The layout kernels take views of equal shape on both sides.
struct View {
  int32_t rank = 0;
  int64_t shape[kMaxRank] = {};
  int64_t stride[kMaxRank] = {};
  int64_t offset = 0;
  int64_t numel() const {
    int64_t n = 1;
    for (int32_t d = 0; d < rank; ++d) n *= shape[d];
    return n;
  }
};

}  // namespace strata::runtime::cuda
