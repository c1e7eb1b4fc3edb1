// Internal to src/autodiff: the gradient-rule signature, the helper that emits backward ops for one
// forward op, and the per-concern rule lists that autodiff.cpp puts in its table keyed by OpKind.
#pragma once

#include <optional>
#include <vector>

#include "strata/ir/graph.h"

namespace strata::autodiff::rules {

using ir::Attrs;
using ir::OpKind;
using ir::Shape;
using ir::Value;

// Emits ops into the graph as Role::backward ops of forward op `forward`.
struct Emitter {
  ir::Graph& graph;
  ir::OpId forward;

  ir::OpId op(OpKind kind, std::vector<Value> inputs, Attrs attrs = {});
  Value value(OpKind kind, std::vector<Value> inputs, Attrs attrs = {}) { return {op(kind, std::move(inputs), std::move(attrs)), 0}; }
  Value constant(const Shape& shape, double fill, DType dtype);
  // Sums a gradient of a broadcast result (numpy rules) back to `target` shape.
  Value unbroadcast(Value grad, const Shape& target);
  // By value: adding ops may move the graph's storage.
  ir::TensorType type(Value v) const { return graph.type(v); }
};

// What a rule sees: the forward op, the gradient of its output 0, and which inputs need one.
struct RuleArgs {
  ir::Op op;  // a copy, for the same reason
  Value dy;
  std::vector<bool> needed;
  Value x(size_t i) const { return op.inputs[i]; }
  Value y() const { return {op.id, 0}; }
};

// Returns one gradient per input (std::nullopt where none is needed or defined).
using Grads = std::vector<std::optional<Value>>;
using Rule = Grads (*)(Emitter& e, const RuleArgs& a);

struct Entry {
  OpKind kind;
  Rule rule;
};

std::vector<Entry> elementwise_rules();  // grad_rules_elementwise.cpp (incl. reductions)
std::vector<Entry> layout_rules();       // grad_rules_layout.cpp (incl. Dot)
std::vector<Entry> nn_rules();           // grad_rules_nn.cpp

}  // namespace strata::autodiff::rules
