// The cuda backend's graph rewrites (src/fusion/cuda_fusion.cpp): pure IR, built without CUDA too,
// so that the cost model can price the graph the backend runs.
#pragma once

#include <cstdint>

#include "strata/core/status.h"
#include "strata/ir/graph.h"

namespace strata::fusion {

// What fuse_for_cuda changed.
struct FusionStats {
  int scales_into_operand = 0;  // Scale(Dot(a, b)) -> Dot(Scale(a), b), a the smaller operand
  int scales_after_dot = 0;     // Dot(Scale(x), y) -> Scale(Dot(x, y)) for every Dot user of a Scale
  int pad_sums_to_concat = 0;   // Add trees over Pads tiling one axis -> Concat
  int bias_adds_into_softmax = 0;  // Adds marked kSoftmaxBiasAttr (the attention mask)
  int attentions = 0;  // scores Dot .. context Dot (and their backward) -> Attention (+ AttentionGrad)
};

// What fuse_for_cuda may do. attention: fuse attention blocks into Attention/AttentionGrad, whose
// kernels run bf16 tensor-core GEMMs with fp32 accumulation even on fp32 activations (so an fp32
// run that must match the fp64 reference tightly turns it off).
struct FusionOptions {
  bool attention = true;
};
// The largest head dim (D and Dv) the attention kernels take.
inline constexpr int64_t kMaxAttentionHeadDim = 128;

// An Add's attribute (integer 1) that fuse_for_cuda sets where the Add's only user is a Softmax
// over the last axis and its second input broadcasts into the first's shape (x + mask). The cuda
// backend then returns the sum deferred and the Softmax computes softmax(x + mask) in one pass;
// any other reader computes the sum first. Other backends and the interpreter ignore it.
inline constexpr const char* kSoftmaxBiasAttr = "cuda_softmax_bias";

// A graph with the same values (equal in exact arithmetic; op names, roles, parameters, inputs and
// outputs kept) that makes fewer passes over large tensors on the cuda backend: see src/fusion/cuda_fusion.cpp.
Expected<ir::Graph> fuse_for_cuda(const ir::Graph& graph, FusionStats* stats = nullptr,
                                  const FusionOptions& options = {});

// fuse_for_cuda's mark of a Dot + bias Add (+ Gelu) chain, which changes no value (the interpreter
// and the cpu backend ignore it): on the Dot 1 (run_op defers it: its only reader is the bias Add);
// on the Add 1 (the bias goes into the GEMM's epilogue) or 2 (and so does the Gelu that reads the
// sum: the Add is deferred too); on that Gelu 1. In the backward, 3 on a bias gradient's
// ReduceSum(dy) (over all but the last dim) and on the weight-gradient Dot(x, dy) that computes it
// in its epilogue (the ReduceSum placed after the Dot); the backend also takes 1 on a
// GeluGrad(pre, Dot(..)) whose Dot is deferred (1 too) and whose bias-gradient ReduceSum (3) right
// after it the GEMM computes (DGELU_BGRAD; fuse_for_cuda does not mark it: slower on an H200).
inline constexpr const char* kGemmEpilogueAttr = "cuda_gemm_epilogue";

}  // namespace strata::fusion
