// The cuda backend's options. Storage: parameters, optimizer state, losses, reductions and
// embedding gradients stay fp32; activations and their gradients are bf16 (or fp32 with
// `activations = f32`); GEMMs take bf16 operands with fp32 accumulation. Point-to-point messages
// carry fp32 for float tensors so that a receiver may allocate with storage_dtype().
#pragma once

#include <memory>

#include "strata/runtime/backend.h"

namespace strata::runtime {

struct CudaOptions {
  DType activations = DType::bf16;  // bf16 or f32
  // Dot batch dims that merge into two strided levels (batch x heads of a [B, S, N, D] tensor):
  // one pointer-array GEMM (true) or a strided-batch GEMM per outer index (false).
  bool pointer_batches = false;
};

#ifdef STRATA_HAVE_CUDA
// make_cuda_backend(local_rank) reads STRATA_CUDA_ACTIVATIONS ("bf16" or "f32") and
// STRATA_CUDA_POINTER_BATCHES ("0" or "1") into the options.
Expected<std::unique_ptr<Backend>> make_cuda_backend(int local_rank, const CudaOptions& options);

// What fuse_for_cuda changed.
struct FusionStats {
  int scales_into_operand = 0;  // Scale(Dot(a, b)) -> Dot(Scale(a), b), a the smaller operand
  int scales_after_dot = 0;     // Dot(Scale(x), y) -> Scale(Dot(x, y)) for every Dot user of a Scale
  int pad_sums_to_concat = 0;   // Add trees over Pads tiling one axis -> Concat
  int bias_adds_into_softmax = 0;  // Adds marked kSoftmaxBiasAttr (the attention mask)
};

// An Add's attribute (integer 1) that fuse_for_cuda sets where the Add's only user is a Softmax
// over the last axis and its second input broadcasts into the first's shape (x + mask). The cuda
// backend then returns the sum deferred and the Softmax computes softmax(x + mask) in one pass;
// any other reader computes the sum first. Other backends and the interpreter ignore it.
inline constexpr const char* kSoftmaxBiasAttr = "cuda_softmax_bias";

// A graph with the same values (equal in exact arithmetic; op names, roles, parameters, inputs and
// outputs kept) that makes fewer passes over large tensors on the cuda backend: see fusion.cpp.
Expected<ir::Graph> fuse_for_cuda(const ir::Graph& graph, FusionStats* stats = nullptr);
#endif

}  // namespace strata::runtime
