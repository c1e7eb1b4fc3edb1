// How the cuda backend runs each op of a graph the planner sees: fuse_for_cuda's rewrites read op
// by op, so that the compute model prices the graph the backend runs while the planner, the
// sharding and the plan keep the graph as built.
#pragma once

#include <cstdint>
#include <vector>

#include "strata/core/status.h"
#include "strata/ir/graph.h"

namespace strata::cost {

// One fused attention block, unsharded: q [B, S, N, D], k [B, T, N, D], v [B, T, N, Dv].
struct AttentionShape {
  int64_t batch_heads = 0;  // B * N
  int64_t queries = 0;      // S
  int64_t keys = 0;         // T
  int64_t head_dim = 0;     // D
  int64_t value_dim = 0;    // Dv
};

struct FusedOp {
  enum class How {
    runs,            // an op of its own, as built
    fused_away,      // the backend issues no op for it (inside an Attention, a GEMM epilogue)
    attention,       // carries its block's Attention (the context Dot)
    attention_grad,  // carries its block's AttentionGrad (the first backward Dot)
  };
  How how = How::runs;
  AttentionShape block;         // attention, attention_grad
  int64_t whole_elements = 0;   // attention, attention_grad: this op's unsharded output elements
};

// Per op id of `graph`: what fuse_for_cuda makes of it (matched by the op names it keeps, as
// cuda_backend.h documents). An Error when fuse_for_cuda fails.
Expected<std::vector<FusedOp>> fused_for_cuda(const ir::Graph& graph);

}  // namespace strata::cost
