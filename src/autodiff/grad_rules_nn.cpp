// Gradient rules of neural-network ops: each emits the matching *Grad op of the IR (GatherGrad,
// SoftmaxGrad, LayerNormGrad, Conv2dGrad*, BatchNormGrad, pool grads, MoEGateGrad, CrossEntropyGrad,
// AttentionGrad).
#include "grad_rules.h"

namespace strata::autodiff::rules {
namespace {

Grads gather(Emitter& e, const RuleArgs& a) {
  const int64_t vocab = e.type(a.x(0)).shape.at(0);
  return {e.value(OpKind::GatherGrad, {a.x(1), a.dy}, {{"vocab", vocab}}), std::nullopt};
}

Grads softmax(Emitter& e, const RuleArgs& a) { return {e.value(OpKind::SoftmaxGrad, {a.y(), a.dy}, a.op.attrs)}; }

// LayerNorm and BatchNorm: one grad op with outputs (dx, dgamma, dbeta).
Grads norm(Emitter& e, const RuleArgs& a, OpKind grad_kind) {
  const ir::OpId id = e.op(grad_kind, {a.x(0), a.x(1), a.dy}, a.op.attrs);
  Grads g(3);
  for (int32_t i = 0; i < 3; ++i) {
    if (a.needed[i]) g[i] = Value{id, i};
  }
  return g;
}
Grads layer_norm(Emitter& e, const RuleArgs& a) { return norm(e, a, OpKind::LayerNormGrad); }
Grads batch_norm(Emitter& e, const RuleArgs& a) { return norm(e, a, OpKind::BatchNormGrad); }

Grads conv2d(Emitter& e, const RuleArgs& a) {
  Grads g(2);
  if (a.needed[0]) {
    Attrs attrs = a.op.attrs;
    attrs.set("input_shape", e.type(a.x(0)).shape);
    g[0] = e.value(OpKind::Conv2dGradInput, {a.x(1), a.dy}, attrs);
  }
  if (a.needed[1]) {
    Attrs attrs = a.op.attrs;
    attrs.set("filter_shape", e.type(a.x(1)).shape);
    g[1] = e.value(OpKind::Conv2dGradFilter, {a.x(0), a.dy}, attrs);
  }
  return g;
}

Grads avg_pool(Emitter& e, const RuleArgs& a) {
  Attrs attrs = a.op.attrs;
  attrs.set("input_shape", e.type(a.x(0)).shape);
  return {e.value(OpKind::AvgPool2dGrad, {a.dy}, attrs)};
}
Grads max_pool(Emitter& e, const RuleArgs& a) { return {e.value(OpKind::MaxPool2dGrad, {a.x(0), a.dy}, a.op.attrs)}; }

Grads moe_gate(Emitter& e, const RuleArgs& a) { return {e.value(OpKind::MoEGateGrad, {a.x(0), a.dy}, a.op.attrs)}; }

Grads cross_entropy(Emitter& e, const RuleArgs& a) {
  return {e.value(OpKind::CrossEntropyGrad, {a.x(0), a.x(1), a.dy}), std::nullopt};
}

// Attention: one AttentionGrad (q, k, v, bias, out, lse, dout) -> (dq, dk, dv); the bias gets none
// (a mask). Only out carries a gradient: autodiff rejects a graph that differentiates lse.
Grads attention(Emitter& e, const RuleArgs& a) {
  const ir::OpId id = e.op(OpKind::AttentionGrad,
                           {a.x(0), a.x(1), a.x(2), a.x(3), a.y(), Value{a.op.id, 1}, a.dy}, a.op.attrs);
  STRATA_CHECK(!a.needed[3], "Attention's bias of " + a.op.name + " needs a gradient: fuse_for_cuda fuses masks only");
  Grads g(4);
  for (int32_t i = 0; i < 3; ++i) {
    if (a.needed[i]) g[i] = Value{id, i};
  }
  return g;
}

}  // namespace

std::vector<Entry> nn_rules() {
  return {
      {OpKind::Gather, gather},       {OpKind::Softmax, softmax},           {OpKind::LayerNorm, layer_norm},
      {OpKind::BatchNorm, batch_norm}, {OpKind::Conv2d, conv2d},            {OpKind::AvgPool2d, avg_pool},
      {OpKind::MaxPool2d, max_pool},   {OpKind::MoEGate, moe_gate},         {OpKind::CrossEntropy, cross_entropy},
      {OpKind::Attention, attention},
  };
}

}  // namespace strata::autodiff::rules
