// Reverse-mode driver: finds the ops between the parameters and the loss, walks them backwards
// through the rule table keyed by OpKind, accumulates multi-use gradients with Add, and appends
// optimizer updates.
#include "strata/autodiff/autodiff.h"

#include <array>

#include "grad_rules.h"

namespace strata::autodiff {
namespace {

using ir::OpKind;
using ir::Value;

using RuleTable = std::array<rules::Rule, static_cast<size_t>(OpKind::kCount)>;

RuleTable build_rules() {
  RuleTable table{};
  for (auto list : {rules::elementwise_rules, rules::layout_rules, rules::nn_rules}) {
    for (const rules::Entry& e : list()) {
      auto& slot = table[static_cast<size_t>(e.kind)];
      STRATA_CHECK(slot == nullptr, std::string("two gradient rules for ") + ir::op_kind_name(e.kind));
      slot = e.rule;
    }
  }
  return table;
}

// Ops whose outputs carry no gradient by definition (sources other than Parameter, 0/1 masks).
bool zero_gradient(OpKind kind) {
  return kind == OpKind::Input || kind == OpKind::Constant || kind == OpKind::Step || kind == OpKind::Indicator;
}

}  // namespace

namespace rules {

ir::OpId Emitter::op(OpKind kind, std::vector<Value> inputs, Attrs attrs) {
  return graph.add(kind, std::move(inputs), std::move(attrs), "", ir::Role::backward, forward);
}

Value Emitter::constant(const Shape& shape, double fill, DType dtype) {
  const Value v = graph.constant(shape, fill, dtype);
  graph.set_role(v.op, ir::Role::backward, forward);
  return v;
}

Value Emitter::unbroadcast(Value grad, const Shape& target) {
  const Shape shape = type(grad).shape;
  if (shape == target) return grad;
  const size_t lead = shape.size() - target.size();
  std::vector<int64_t> axes;
  for (size_t d = 0; d < shape.size(); ++d) {
    if (d < lead || (target[d - lead] == 1 && shape[d] != 1)) axes.push_back(static_cast<int64_t>(d));
  }
  Value g = grad;
  if (!axes.empty()) g = value(OpKind::ReduceSum, {g}, {{"axes", axes}, {"keepdims", int64_t{0}}});
  if (type(g).shape != target) g = value(OpKind::Reshape, {g}, {{"shape", target}});
  return g;
}

}  // namespace rules

Expected<GradientGraph> build_gradient_graph(const ir::Graph& forward) {
  static const RuleTable kRules = build_rules();  // immutable after first use
  if (forward.outputs().size() != 1) {
    return make_error("", "outputs", "expected exactly one output (the loss), got " +
                                         std::to_string(forward.outputs().size()));
  }
  GradientGraph result{forward, forward.outputs()[0], {}};
  ir::Graph& g = result.graph;
  const ir::TensorType loss_type = g.type(result.loss);
  if (loss_type.rank() != 0 || !is_float(loss_type.dtype)) {
    return make_error("", "outputs[0]", "the loss must be a float scalar, got " + ir::type_string(loss_type));
  }
  const ir::OpId count = forward.num_ops();
  // needs[op]: some Parameter reaches this op's output through differentiable float values.
  std::vector<bool> needs(static_cast<size_t>(count), false);
  for (ir::OpId id = 0; id < count; ++id) {
    const ir::Op& op = forward.op(id);
    if (!is_float(op.outputs.empty() ? DType::i32 : op.outputs[0].dtype) || zero_gradient(op.kind)) continue;
    if (op.kind == OpKind::Parameter) {
      needs[id] = true;
      continue;
    }
    for (Value in : op.inputs) needs[id] = needs[id] || (needs[in.op] && is_float(forward.type(in).dtype));
  }
  std::map<Value, Value> grads;
  {
    rules::Emitter seed{g, result.loss.op};
    grads[result.loss] = seed.constant({}, 1.0, loss_type.dtype);
  }
  for (ir::OpId id = count - 1; id >= 0; --id) {
    if (!needs[id] || forward.op(id).kind == OpKind::Parameter) continue;
    auto dy = grads.find(Value{id, 0});
    if (dy == grads.end()) continue;  // does not reach the loss
    rules::RuleArgs args{forward.op(id), dy->second, {}};
    for (Value in : args.op.inputs) args.needed.push_back(needs[in.op] && is_float(forward.type(in).dtype));
    const rules::Rule rule = kRules[static_cast<size_t>(args.op.kind)];
    // Attention's second output (lse) is a by-product for its backward: no gradient reaches it.
    const bool lse_only_aside = args.op.kind == OpKind::Attention && grads.count(Value{id, 1}) == 0;
    if (rule == nullptr || (args.op.outputs.size() != 1 && !lse_only_aside)) {
      return make_error("", "ops." + args.op.name,
                        std::string("no gradient rule for ") + ir::op_kind_name(args.op.kind) +
                            " on the path from a parameter to the loss");
    }
    rules::Emitter emitter{g, id};
    const rules::Grads dx = rule(emitter, args);
    STRATA_CHECK(dx.size() == args.op.inputs.size(), "gradient rule gave a wrong count for " + args.op.name);
    for (size_t i = 0; i < dx.size(); ++i) {
      if (!args.needed[i] || !dx[i]) continue;
      const Value in = args.op.inputs[i];
      auto [it, inserted] = grads.emplace(in, *dx[i]);
      if (!inserted) {
        const ir::OpId sum = g.add(OpKind::Add, {it->second, *dx[i]}, {}, "", ir::Role::backward, in.op);
        it->second = Value{sum, 0};
      }
    }
  }
  for (ir::OpId p : forward.parameters()) {
    const ir::TensorType type = forward.op(p).outputs[0];
    if (!is_float(type.dtype)) continue;
    auto it = grads.find(Value{p, 0});
    if (it != grads.end()) {
      result.gradients[p] = it->second;
    } else {  // the loss does not depend on this parameter
      rules::Emitter zero{g, p};
      result.gradients[p] = zero.constant(type.shape, 0.0, type.dtype);
    }
  }
  return result;
}

Expected<ir::Graph> build_training_graph(const ir::Graph& forward, const TrainingOptions& options) {
  if (!(options.lr > 0)) return make_error("", "lr", "must be positive");
  if (options.optimizer == Optimizer::adam) {
    if (options.beta1 < 0 || options.beta1 >= 1) return make_error("", "beta1", "must be in [0, 1)");
    if (options.beta2 < 0 || options.beta2 >= 1) return make_error("", "beta2", "must be in [0, 1)");
    if (!(options.eps > 0)) return make_error("", "eps", "must be positive");
    if (options.step < 1) return make_error("", "step", "is 1-based, got " + std::to_string(options.step));
  }
  STRATA_ASSIGN_OR_RETURN(GradientGraph gg, build_gradient_graph(forward));
  ir::Graph& g = gg.graph;
  for (const auto& [p, grad] : gg.gradients) {
    const ir::Op param = g.op(p);
    const Value pv{p, 0};
    if (options.optimizer == Optimizer::sgd) {
      g.add(OpKind::SgdUpdate, {pv, grad}, {{"lr", options.lr}}, param.name + ".sgd", ir::Role::update, p);
      continue;
    }
    const ir::Shape shape = param.outputs[0].shape;
    const Value m = g.parameter(param.name + ".adam_m", shape, DType::f32, "zeros");
    const Value v = g.parameter(param.name + ".adam_v", shape, DType::f32, "zeros");
    g.set_role(m.op, ir::Role::update, p);
    g.set_role(v.op, ir::Role::update, p);
    ir::Attrs attrs{{"lr", options.lr},   {"beta1", options.beta1},       {"beta2", options.beta2},
                    {"eps", options.eps}, {"weight_decay", options.weight_decay}, {"step", options.step}};
    g.add(OpKind::AdamUpdate, {pv, grad, m, v}, attrs, param.name + ".adam", ir::Role::update, p);
  }
  return std::move(gg.graph);
}

}  // namespace strata::autodiff
