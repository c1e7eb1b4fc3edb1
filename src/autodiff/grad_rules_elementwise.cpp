// Gradient rules of elementwise ops (binary ones un-broadcast their gradients) and reductions
// (the gradient is broadcast back over the reduced axes).
#include <cmath>

#include "grad_rules.h"

namespace strata::autodiff::rules {
namespace {

Value one(Emitter& e, Value like) { return e.constant({}, 1.0, e.type(like).dtype); }

Grads neg(Emitter& e, const RuleArgs& a) { return {e.value(OpKind::Neg, {a.dy})}; }
Grads exp(Emitter& e, const RuleArgs& a) { return {e.value(OpKind::Mul, {a.dy, a.y()})}; }
Grads log(Emitter& e, const RuleArgs& a) { return {e.value(OpKind::Div, {a.dy, a.x(0)})}; }
Grads tanh(Emitter& e, const RuleArgs& a) {  // dy * (1 - y^2)
  Value y2 = e.value(OpKind::Mul, {a.y(), a.y()});
  return {e.value(OpKind::Mul, {a.dy, e.value(OpKind::Sub, {one(e, a.y()), y2})})};
}
Grads sqrt(Emitter& e, const RuleArgs& a) {  // dy / (2 y)
  return {e.value(OpKind::Div, {e.value(OpKind::Scale, {a.dy}, {{"scalar", 0.5}}), a.y()})};
}
Grads rsqrt(Emitter& e, const RuleArgs& a) {  // -dy y^3 / 2
  Value y3 = e.value(OpKind::Mul, {a.y(), e.value(OpKind::Mul, {a.y(), a.y()})});
  return {e.value(OpKind::Scale, {e.value(OpKind::Mul, {a.dy, y3})}, {{"scalar", -0.5}})};
}
Grads relu(Emitter& e, const RuleArgs& a) {
  return {e.value(OpKind::Mul, {a.dy, e.value(OpKind::Step, {a.x(0)})})};
}
Grads gelu(Emitter& e, const RuleArgs& a) { return {e.value(OpKind::GeluGrad, {a.x(0), a.dy})}; }
Grads scale(Emitter& e, const RuleArgs& a) {
  return {e.value(OpKind::Scale, {a.dy}, {{"scalar", a.op.attrs.real_or("scalar", 1.0)}})};
}

// Binary ops: each needed input's gradient is summed back to that input's shape.
Grads binary(Emitter& e, const RuleArgs& a, Value da, Value db) {
  Grads g(2);
  if (a.needed[0]) g[0] = e.unbroadcast(da, e.type(a.x(0)).shape);
  if (a.needed[1]) g[1] = e.unbroadcast(db, e.type(a.x(1)).shape);
  return g;
}
Grads add(Emitter& e, const RuleArgs& a) { return binary(e, a, a.dy, a.dy); }
Grads sub(Emitter& e, const RuleArgs& a) {
  Grads g(2);
  if (a.needed[0]) g[0] = e.unbroadcast(a.dy, e.type(a.x(0)).shape);
  if (a.needed[1]) g[1] = e.unbroadcast(e.value(OpKind::Neg, {a.dy}), e.type(a.x(1)).shape);
  return g;
}
Grads mul(Emitter& e, const RuleArgs& a) {
  Grads g(2);
  if (a.needed[0]) g[0] = e.unbroadcast(e.value(OpKind::Mul, {a.dy, a.x(1)}), e.type(a.x(0)).shape);
  if (a.needed[1]) g[1] = e.unbroadcast(e.value(OpKind::Mul, {a.dy, a.x(0)}), e.type(a.x(1)).shape);
  return g;
}
Grads div(Emitter& e, const RuleArgs& a) {  // d(a/b) = da/b - db * y / b
  Grads g(2);
  if (a.needed[0]) g[0] = e.unbroadcast(e.value(OpKind::Div, {a.dy, a.x(1)}), e.type(a.x(0)).shape);
  if (a.needed[1]) {
    Value t = e.value(OpKind::Div, {e.value(OpKind::Mul, {a.dy, a.y()}), a.x(1)});
    g[1] = e.unbroadcast(e.value(OpKind::Neg, {t}), e.type(a.x(1)).shape);
  }
  return g;
}
// Max: the gradient goes to a where a > b, else to b (ties go to b).
Grads max(Emitter& e, const RuleArgs& a) {
  Value mask = e.value(OpKind::Step, {e.value(OpKind::Sub, {a.x(0), a.x(1)})});
  Grads g(2);
  if (a.needed[0]) g[0] = e.unbroadcast(e.value(OpKind::Mul, {a.dy, mask}), e.type(a.x(0)).shape);
  if (a.needed[1]) {
    Value rest = e.value(OpKind::Sub, {one(e, mask), mask});
    g[1] = e.unbroadcast(e.value(OpKind::Mul, {a.dy, rest}), e.type(a.x(1)).shape);
  }
  return g;
}

// Broadcasts a reduction's output-shaped value back to the input's shape.
Value expand(Emitter& e, const RuleArgs& a, Value v) {
  const Shape x = e.type(a.x(0)).shape;
  const auto rank = static_cast<int64_t>(x.size());
  std::vector<bool> reduced(x.size(), !a.op.attrs.has("axes"));
  if (a.op.attrs.has("axes")) {
    auto axes = a.op.attrs.get_ints("axes");
    STRATA_CHECK(axes.is_ok(), "ReduceSum axes were validated by the IR");
    for (int64_t axis : *axes) reduced[axis < 0 ? axis + rank : axis] = true;
  }
  const bool keepdims = a.op.attrs.int_or("keepdims", 0) == 1;
  std::vector<int64_t> dims;
  for (int64_t d = 0; d < rank; ++d) {
    if (keepdims || !reduced[d]) dims.push_back(d);
  }
  return e.value(OpKind::Broadcast, {v}, {{"shape", x}, {"dims", dims}});
}

Grads reduce_sum(Emitter& e, const RuleArgs& a) { return {expand(e, a, a.dy)}; }
Grads reduce_mean(Emitter& e, const RuleArgs& a) {
  const double count = static_cast<double>(e.type(a.x(0)).numel()) / static_cast<double>(e.type(a.y()).numel());
  return {e.value(OpKind::Scale, {expand(e, a, a.dy)}, {{"scalar", 1.0 / count}})};
}
// ReduceMax: the gradient goes to every element equal to the maximum (inputs are assumed tie-free).
Grads reduce_max(Emitter& e, const RuleArgs& a) {
  Value differs = e.value(OpKind::Indicator, {e.value(OpKind::Sub, {a.x(0), expand(e, a, a.y())})});
  Value mask = e.value(OpKind::Sub, {one(e, differs), differs});
  return {e.value(OpKind::Mul, {expand(e, a, a.dy), mask})};
}

}  // namespace

std::vector<Entry> elementwise_rules() {
  return {
      {OpKind::Neg, neg},         {OpKind::Exp, exp},     {OpKind::Log, log},
      {OpKind::Tanh, tanh},       {OpKind::Sqrt, sqrt},   {OpKind::Rsqrt, rsqrt},
      {OpKind::Relu, relu},       {OpKind::Gelu, gelu},   {OpKind::Scale, scale},
      {OpKind::Add, add},         {OpKind::Sub, sub},     {OpKind::Mul, mul},
      {OpKind::Div, div},         {OpKind::Max, max},     {OpKind::ReduceSum, reduce_sum},
      {OpKind::ReduceMean, reduce_mean}, {OpKind::ReduceMax, reduce_max},
  };
}

}  // namespace strata::autodiff::rules
