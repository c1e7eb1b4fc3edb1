// The IR graph: ops as vertices of a Boost.Graph adjacency_list (hidden behind this API), values
// as (op, output index). Ops are added after their inputs, so op ids are a topological order.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "strata/core/json.h"
#include "strata/core/status.h"
#include "strata/ir/op.h"

namespace strata::ir {

using OpId = int32_t;
constexpr OpId kNoOp = -1;

// One output of one op.
struct Value {
  OpId op = kNoOp;
  int32_t index = 0;
  bool operator==(const Value&) const = default;
  auto operator<=>(const Value&) const = default;
};

struct Op {
  OpId id = kNoOp;
  std::string name;  // unique in the graph
  OpKind kind = OpKind::Constant;
  Attrs attrs;
  std::vector<Value> inputs;
  std::vector<TensorType> outputs;
  Role role = Role::forward;
  OpId forward_op = kNoOp;  // for backward and update ops: the forward op they belong to
};

// A use of a value: op `user` reads it as input number `input_index`.
struct Use {
  OpId user;
  int32_t input_index;
};

class Graph {
 public:
  Graph();
  ~Graph();
  Graph(const Graph&);
  Graph& operator=(const Graph&);
  Graph(Graph&&) noexcept;
  Graph& operator=(Graph&&) noexcept;

  // Adds an op after inferring its output types. Errors (bad shapes, attributes, unknown input,
  // duplicate name) come back with the op's name as field. An empty name gets "<kind>_<id>".
  Expected<OpId> try_add(OpKind kind, std::vector<Value> inputs, Attrs attrs = {}, std::string name = "",
                         Role role = Role::forward, OpId forward_op = kNoOp);
  // The same for code that builds graphs it knows are valid: a failure is our bug (STRATA_CHECK).
  OpId add(OpKind kind, std::vector<Value> inputs, Attrs attrs = {}, std::string name = "",
           Role role = Role::forward, OpId forward_op = kNoOp);
  // Convenience for single-output ops: the op's output 0.
  Value add_value(OpKind kind, std::vector<Value> inputs, Attrs attrs = {}, std::string name = "");

  // Sources.
  Value parameter(const std::string& name, Shape shape, DType dtype = DType::f32, const std::string& init = "normal",
                  double init_std = 0.02);
  Value input(const std::string& name, Shape shape, DType dtype = DType::f32);
  Value constant(Shape shape, double value, DType dtype = DType::f32, const std::string& name = "");

  int32_t num_ops() const;
  const Op& op(OpId id) const;
  const TensorType& type(Value value) const;
  Expected<OpId> find(const std::string& name) const;  // by name
  std::vector<Use> uses(Value value) const;             // in (user id, input index) order
  std::vector<OpId> users(OpId id) const;               // distinct users, ascending
  std::vector<OpId> ops_of_kind(OpKind kind) const;
  std::vector<OpId> parameters() const;
  std::vector<OpId> inputs() const;

  // Graph outputs (e.g. the loss), in the order they were marked.
  void mark_output(Value value);
  const std::vector<Value>& outputs() const;

  // Sets an op's role and forward op after creation (autodiff uses this).
  void set_role(OpId id, Role role, OpId forward_op);

  // Totals over all ops.
  double total_flops() const;
  double op_flops(OpId id) const;
  int64_t parameter_count() const;  // elements of all Parameter ops
  int64_t parameter_bytes() const;

  std::string to_dot() const;  // Graphviz: one node per op with kind and output shapes
  Json to_json() const;        // ops with name, kind, role, attrs, inputs, output types

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace strata::ir
