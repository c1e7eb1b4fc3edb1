// Internal to the cuda backend: XLA dot_general on device tensors through cuBLAS. Operands go to
// the GEMM in place when their free and contracting dims each merge into one strided dim with one
// of them unit-stride (transposes become GEMM flags); others are first permuted to
// [batch, free, contract]. Batch dims become a strided batch, or a pointer-array batch when they
// do not merge into one stride (e.g. attention heads inside a [B, S, N, D] tensor).
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include "cuda_common.h"
#include "cuda_tensor.h"
#include "strata/ir/graph.h"

// Every cuBLAS call goes through this: a failure becomes an Error naming the call.
#define STRATA_CUBLAS_CALL(call)                                                                          \
  do {                                                                                                    \
    const cublasStatus_t strata_cublas_rc_ = (call);                                                      \
    if (strata_cublas_rc_ != CUBLAS_STATUS_SUCCESS) {                                                     \
      return ::strata::make_error("", "", std::string("cuBLAS call ") + #call + " failed: " +            \
                                              cublasGetStatusString(strata_cublas_rc_));                  \
    }                                                                                                     \
  } while (0)

namespace strata::runtime::cuda {

struct DotOperand {
  const void* data;
  Elem elem;
  ir::Shape shape;
  const CudaTensor* tensor = nullptr;  // when set, an fp32 operand of a bf16 GEMM uses its cached bf16 copy
};

// out (contiguous, out_shape = the op's output shape) = dot_general(lhs, rhs) with the op's attrs.
// `gemm_elem`: bf16 (operands cast to bf16 where needed, fp32 accumulation) or f32 (all fp32).
// `pointer_batches`: two-level batches as one pointer-array GEMM instead of a loop of strided ones.
Status run_dot(cublasHandle_t handle, cudaStream_t stream, const ir::Op& op, const DotOperand& lhs,
               const DotOperand& rhs, void* out, Elem out_elem, const ir::Shape& out_shape, Elem gemm_elem,
               bool pointer_batches);

}  // namespace strata::runtime::cuda
