// Internal to the cuda backend: XLA dot_general on device tensors through cuBLAS. Operands go to
// the GEMM in place when their free and contracting dims each merge into one strided dim with one
// of them unit-stride (transposes become GEMM flags); others are first permuted to
// [batch, free, contract]. Batch dims become a strided batch, or a pointer-array batch when they
// do not merge into one stride (e.g. attention heads inside a [B, S, N, D] tensor).
#pragma once

#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <array>
#include <map>
#include <memory>
#include <optional>
#include <vector>

#include "cuda_common.h"
#include "cuda_tensor.h"
#include "strata/fusion/cuda_fusion.h"
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

using fusion::kGemmEpilogueAttr;  // strata/fusion/cuda_fusion.h

// What a cuBLASLt epilogue adds to a Dot without batch dims whose rhs has one free dim (the
// output's last, `cols` long): out = gemm + bias[cols] broadcast over the rows; with `gelu_aux`,
// out = gelu(gemm + bias) (the tanh form, as the Gelu op) and gelu_aux = gemm + bias, in out's
// element type and layout.
//
// Backward (bias unset): `bias_grad` (fp32, cols long) gets the sum of the rhs over the contracted
// dims (BGRADA: the rhs is a dense layer's output gradient dy, the Dot its weight gradient); with
// `dgelu_input` (the Gelu's input, in out's type and layout) out = gemm * gelu'(dgelu_input) and
// bias_grad the sum of out over the rows (DGELU_BGRAD).
//
// `residual` (forward, no gelu_aux): out = gemm + bias + residual, the residual in out's type and
// layout as the GEMM's C with beta 1 (a residual Add read in the GEMM instead of a pass of its own).
struct GemmEpilogue {
  const void* bias = nullptr;
  const void* residual = nullptr;
  Elem bias_elem = Elem::f32;
  void* gelu_aux = nullptr;
  void* bias_grad = nullptr;
  const void* dgelu_input = nullptr;
};

// The cuBLASLt algorithm of each GEMM key (shape, layouts, types, epilogue, workspace, device),
// chosen on its first use: the fastest of up to kGemmTuneCandidates heuristic answers, each timed on
// scratch outputs, then kept for the owner's life (the backend's: one choice per key per process;
// ranks may choose differently). On GPT-1.3B's shapes on an H200 it gained nothing over the first
// answer (within about 2%, fc2's dx +5%), so the backend asks for it only with STRATA_CUDA_GEMM_TUNE=1.
inline constexpr int kGemmTuneCandidates = 16;
struct GemmTuner {
  std::map<std::array<int64_t, 14>, std::optional<cublasLtMatmulAlgo_t>> best;  // nullopt: no kernel
  int64_t tuned = 0;   // keys chosen (those with no kernel too)
  int64_t reused = 0;  // calls that found their key in `best`
};

// The handles and scratch a cuBLASLt call needs (the backend's; the workspace is shared with the
// cuBLAS handle, both on one stream). No tuner: every call takes cuBLASLt's first heuristic answer.
struct GemmContext {
  cublasHandle_t blas = nullptr;
  cublasLtHandle_t lt = nullptr;
  void* workspace = nullptr;
  size_t workspace_bytes = 0;
  cudaStream_t stream = nullptr;
  GemmTuner* tuner = nullptr;
};

// run_dot with `epilogue` in one cublasLtMatmul (an empty epilogue: the plain GEMM). Ok(false) with
// nothing written when the shape is outside what the epilogue takes (batch dims, several rhs free
// dims, a gelu_aux leading dim that is not a multiple of 8) or cuBLASLt offers no kernel: the
// caller then runs it unfused (or through run_dot).
Expected<bool> run_dot_epilogue(const GemmContext& ctx, const ir::Op& op, const DotOperand& lhs, const DotOperand& rhs,
                                void* out, Elem out_elem, const ir::Shape& out_shape, Elem gemm_elem,
                                const GemmEpilogue& epilogue);

// A Dot that fuse_for_cuda marked (its reader adds a bias): run_op records it instead of running
// it, the bias Add (and a Gelu after it) attach their part, and whoever needs the bytes first runs
// it (run_deferred_dot). The operands' storage (and a weight's bf16 copy) is kept alive here.
struct DeferredDot {
  GemmContext ctx;
  ir::Op op;
  DotOperand lhs, rhs;  // no `tensor`: the bf16 copy, if any, is already `data`
  std::vector<std::shared_ptr<const void>> keep;
  Elem gemm_elem = Elem::bf16;
  bool pointer_batches = false;
  GemmEpilogue epilogue;  // bias set by the Add; gelu_aux by the Gelu (in run_deferred_dot's call)
  std::shared_ptr<const void> bias_keep;
};

// The deferred Dot (plus its bias and residual) into `out`, through the epilogue when cuBLASLt takes
// it, else as run_dot and in-place Adds of the bias and the residual. `gelu_out`: also the Gelu of the sum into gelu_out (the sum to
// `out`) when the fused GEMM runs; Ok(false) when it did not (then only `out` holds the sum).
Expected<bool> run_deferred_dot(const DeferredDot& dot, void* out, Elem out_elem, void* gelu_out = nullptr);

}  // namespace strata::runtime::cuda
