// fused_for_cuda: the cuda backend's graph (fusion::fuse_for_cuda) mapped back onto the ops as built.
#include "strata/cost/fused.h"

#include "strata/fusion/cuda_fusion.h"

namespace strata::cost {
namespace {

// An epilogue-marked bias Add, Gelu or bias-gradient ReduceSum, or a mask Add that its Softmax
// reads deferred: computed inside another op's kernel.
bool rides_on_another(const ir::Op& op) {
  const bool epilogue = op.attrs.int_or(fusion::kGemmEpilogueAttr, 0) != 0 &&
                        (op.kind == ir::OpKind::Add || op.kind == ir::OpKind::Gelu || op.kind == ir::OpKind::ReduceSum);
  return epilogue || op.attrs.int_or(fusion::kSoftmaxBiasAttr, 0) == 1;
}

}  // namespace

Expected<std::vector<FusedOp>> fused_for_cuda(const ir::Graph& graph) {
  STRATA_ASSIGN_OR_RETURN(ir::Graph fused, fusion::fuse_for_cuda(graph));
  std::vector<FusedOp> out(static_cast<size_t>(graph.num_ops()));
  for (ir::OpId id = 0; id < graph.num_ops(); ++id) {
    const ir::Op& op = graph.op(id);
    if (ir::op_info(op.kind).is_source) continue;
    FusedOp& how = out[static_cast<size_t>(id)];
    auto found = fused.find(op.name);
    if (!found.is_ok()) {
      how.how = FusedOp::How::fused_away;
      continue;
    }
    const ir::Op& made = fused.op(*found);
    if (made.kind == ir::OpKind::Attention || made.kind == ir::OpKind::AttentionGrad) {
      const ir::Shape& q = fused.type(made.inputs[0]).shape;  // [B, S, N, D] (bsnd)
      const ir::Shape& k = fused.type(made.inputs[1]).shape;
      const ir::Shape& v = fused.type(made.inputs[2]).shape;
      how.how = made.kind == ir::OpKind::Attention ? FusedOp::How::attention : FusedOp::How::attention_grad;
      how.block = {q[0] * q[2], q[1], k[1], q[3], v[3]};
      how.whole_elements = op.outputs[0].numel();
    } else if (rides_on_another(made)) {
      how.how = FusedOp::How::fused_away;
    }
  }
  return out;
}

}  // namespace strata::cost
