// The IR graph over a Boost.Graph bidirectional adjacency_list: vertex = Op (vertex index = OpId),
// edge = one use of one output. Ops are only appended, so ids stay a topological order.
#include "strata/ir/graph.h"

#include <algorithm>
#include <boost/graph/adjacency_list.hpp>
#include <map>

namespace strata::ir {

namespace {

struct EdgeProps {
  int32_t src_index = 0;  // which output of the source op
  int32_t dst_index = 0;  // which input of the target op
};

using BoostGraph = boost::adjacency_list<boost::vecS, boost::vecS, boost::bidirectionalS, Op, EdgeProps>;

// Escapes a string for a double-quoted Graphviz id or label.
std::string dot_escape(const std::string& text) {
  std::string out;
  for (char c : text) {
    if (c == '"' || c == '\\') out += '\\';
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out += c;
  }
  return out;
}

Json attr_json(const AttrValue& value) {
  if (const auto* v = std::get_if<int64_t>(&value)) return Json(*v);
  if (const auto* v = std::get_if<double>(&value)) return Json(*v);
  if (const auto* v = std::get_if<std::vector<int64_t>>(&value)) {
    Json list = Json::array();
    for (int64_t x : *v) list.push(Json(x));
    return list;
  }
  return Json(std::get<std::string>(value));
}

Json type_json(const TensorType& type) {
  Json shape = Json::array();
  for (int64_t d : type.shape) shape.push(Json(d));
  Json out = Json::object();
  out.set("dtype", dtype_name(type.dtype));
  out.set("shape", std::move(shape));
  return out;
}

}  // namespace

struct Graph::Impl {
  BoostGraph graph;
  std::map<std::string, OpId> names;
  std::vector<Value> outputs;
};

Graph::Graph() : impl_(std::make_unique<Impl>()) {}
Graph::~Graph() = default;
Graph::Graph(const Graph& other) : impl_(std::make_unique<Impl>(*other.impl_)) {}
Graph& Graph::operator=(const Graph& other) {
  if (this != &other) impl_ = std::make_unique<Impl>(*other.impl_);
  return *this;
}
// A moved-from graph may only be destroyed or assigned to.
Graph::Graph(Graph&&) noexcept = default;
Graph& Graph::operator=(Graph&&) noexcept = default;

Expected<OpId> Graph::try_add(OpKind kind, std::vector<Value> inputs, Attrs attrs, std::string name, Role role,
                              OpId forward_op) {
  const OpId id = num_ops();
  if (name.empty()) {
    name = std::string(op_kind_name(kind)) + "_" + std::to_string(id);
    // A user may already have taken the generated name: add a suffix until it is free.
    for (int n = 2; impl_->names.count(name) > 0; ++n) {
      name = std::string(op_kind_name(kind)) + "_" + std::to_string(id) + "_" + std::to_string(n);
    }
  }
  if (impl_->names.count(name) > 0) return make_error("", name, "duplicate op name");
  std::vector<TensorType> input_types;
  for (size_t i = 0; i < inputs.size(); ++i) {
    const Value v = inputs[i];
    if (v.op < 0 || v.op >= id) {
      return make_error("", name + ".inputs[" + std::to_string(i) + "]",
                        "refers to op " + std::to_string(v.op) + ", which does not exist");
    }
    const Op& producer = op(v.op);
    if (v.index < 0 || v.index >= static_cast<int32_t>(producer.outputs.size())) {
      return make_error("", name + ".inputs[" + std::to_string(i) + "]",
                        "output " + std::to_string(v.index) + " of " + producer.name + ", which has " +
                            std::to_string(producer.outputs.size()) + " output(s)");
    }
    input_types.push_back(producer.outputs[v.index]);
  }
  if (forward_op != kNoOp && (forward_op < 0 || forward_op >= id)) {
    return make_error("", name + ".forward_op", "refers to op " + std::to_string(forward_op) + ", which does not exist");
  }
  auto types = infer_types(kind, input_types, attrs);
  if (!types) return types.error().under(name);

  Op op_value;
  op_value.id = id;
  op_value.name = name;
  op_value.kind = kind;
  op_value.attrs = std::move(attrs);
  op_value.inputs = std::move(inputs);
  op_value.outputs = std::move(*types);
  op_value.role = role;
  op_value.forward_op = forward_op;
  // add_vertex without a property, then fill it: the property overload goes through Boost's
  // named_graph path, which trips GCC's maybe-uninitialized warning under the sanitizers.
  const auto vertex = boost::add_vertex(impl_->graph);
  STRATA_CHECK(static_cast<OpId>(vertex) == id, "vertex index must equal op id");
  impl_->graph[vertex] = std::move(op_value);
  const Op& added = impl_->graph[vertex];
  for (size_t i = 0; i < added.inputs.size(); ++i) {
    boost::add_edge(static_cast<size_t>(added.inputs[i].op), vertex,
                    EdgeProps{added.inputs[i].index, static_cast<int32_t>(i)}, impl_->graph);
  }
  impl_->names.emplace(added.name, id);
  return id;
}

OpId Graph::add(OpKind kind, std::vector<Value> inputs, Attrs attrs, std::string name, Role role, OpId forward_op) {
  auto id = try_add(kind, std::move(inputs), std::move(attrs), std::move(name), role, forward_op);
  STRATA_CHECK(id.is_ok(), std::string("Graph::add(") + op_kind_name(kind) + "): " + id.status().message());
  return *id;
}

Value Graph::add_value(OpKind kind, std::vector<Value> inputs, Attrs attrs, std::string name) {
  const OpId id = add(kind, std::move(inputs), std::move(attrs), std::move(name));
  STRATA_CHECK(op(id).outputs.size() == 1, std::string("add_value on multi-output op ") + op_kind_name(kind));
  return Value{id, 0};
}

Value Graph::parameter(const std::string& name, Shape shape, DType dtype, const std::string& init, double init_std) {
  Attrs attrs{{"shape", std::move(shape)}, {"dtype", std::string(dtype_name(dtype))}, {"init", init},
              {"init_std", init_std}};
  return add_value(OpKind::Parameter, {}, std::move(attrs), name);
}

Value Graph::input(const std::string& name, Shape shape, DType dtype) {
  Attrs attrs{{"shape", std::move(shape)}, {"dtype", std::string(dtype_name(dtype))}};
  return add_value(OpKind::Input, {}, std::move(attrs), name);
}

Value Graph::constant(Shape shape, double value, DType dtype, const std::string& name) {
  Attrs attrs{{"shape", std::move(shape)}, {"dtype", std::string(dtype_name(dtype))}, {"value", value}};
  return add_value(OpKind::Constant, {}, std::move(attrs), name);
}

int32_t Graph::num_ops() const { return static_cast<int32_t>(boost::num_vertices(impl_->graph)); }

const Op& Graph::op(OpId id) const {
  STRATA_CHECK(id >= 0 && id < num_ops(), "op id out of range: " + std::to_string(id));
  return impl_->graph[static_cast<size_t>(id)];
}

const TensorType& Graph::type(Value value) const {
  const Op& producer = op(value.op);
  STRATA_CHECK(value.index >= 0 && value.index < static_cast<int32_t>(producer.outputs.size()),
               "output index out of range for " + producer.name);
  return producer.outputs[value.index];
}

Expected<OpId> Graph::find(const std::string& name) const {
  auto it = impl_->names.find(name);
  if (it == impl_->names.end()) return make_error("", name, "no op of that name");
  return it->second;
}

std::vector<Use> Graph::uses(Value value) const {
  op(value.op);  // checks the id
  std::vector<Use> result;
  for (auto [it, end] = boost::out_edges(static_cast<size_t>(value.op), impl_->graph); it != end; ++it) {
    const EdgeProps& e = impl_->graph[*it];
    if (e.src_index == value.index) {
      result.push_back(Use{static_cast<OpId>(boost::target(*it, impl_->graph)), e.dst_index});
    }
  }
  std::sort(result.begin(), result.end(), [](const Use& a, const Use& b) {
    return a.user != b.user ? a.user < b.user : a.input_index < b.input_index;
  });
  return result;
}

std::vector<OpId> Graph::users(OpId id) const {
  op(id);  // checks the id
  std::vector<OpId> result;
  for (auto [it, end] = boost::out_edges(static_cast<size_t>(id), impl_->graph); it != end; ++it) {
    result.push_back(static_cast<OpId>(boost::target(*it, impl_->graph)));
  }
  std::sort(result.begin(), result.end());
  result.erase(std::unique(result.begin(), result.end()), result.end());
  return result;
}

std::vector<OpId> Graph::ops_of_kind(OpKind kind) const {
  std::vector<OpId> result;
  for (OpId id = 0; id < num_ops(); ++id) {
    if (op(id).kind == kind) result.push_back(id);
  }
  return result;
}

std::vector<OpId> Graph::parameters() const { return ops_of_kind(OpKind::Parameter); }
std::vector<OpId> Graph::inputs() const { return ops_of_kind(OpKind::Input); }

void Graph::mark_output(Value value) {
  type(value);  // checks the value exists
  impl_->outputs.push_back(value);
}

const std::vector<Value>& Graph::outputs() const { return impl_->outputs; }

void Graph::set_role(OpId id, Role role, OpId forward_op) {
  op(id);  // checks the id
  STRATA_CHECK(forward_op == kNoOp || (forward_op >= 0 && forward_op < num_ops()),
               "forward op out of range: " + std::to_string(forward_op));
  Op& target = impl_->graph[static_cast<size_t>(id)];
  target.role = role;
  target.forward_op = forward_op;
}

double Graph::op_flops(OpId id) const {
  const Op& o = op(id);
  std::vector<TensorType> input_types;
  for (const Value& v : o.inputs) input_types.push_back(type(v));
  return ir::op_flops(o.kind, input_types, o.outputs, o.attrs);
}

double Graph::total_flops() const {
  double total = 0;
  for (OpId id = 0; id < num_ops(); ++id) total += op_flops(id);
  return total;
}

int64_t Graph::parameter_count() const {
  int64_t total = 0;
  for (OpId id : parameters()) total += op(id).outputs[0].numel();
  return total;
}

int64_t Graph::parameter_bytes() const {
  int64_t total = 0;
  for (OpId id : parameters()) total += op(id).outputs[0].bytes();
  return total;
}

std::string Graph::to_dot() const {
  std::string out = "digraph strata {\n  node [shape=box, fontname=\"monospace\"];\n";
  for (OpId id = 0; id < num_ops(); ++id) {
    const Op& o = op(id);
    std::string label = o.name + "\n" + op_kind_name(o.kind);
    for (const TensorType& t : o.outputs) label += "\n" + type_string(t);
    out += "  n" + std::to_string(id) + " [label=\"" + dot_escape(label) + "\"";
    if (o.role != Role::forward) out += std::string(", style=dashed, tooltip=\"") + role_name(o.role) + "\"";
    out += "];\n";
  }
  for (OpId id = 0; id < num_ops(); ++id) {
    const Op& o = op(id);
    for (size_t i = 0; i < o.inputs.size(); ++i) {
      out += "  n" + std::to_string(o.inputs[i].op) + " -> n" + std::to_string(id);
      if (o.inputs[i].index != 0 || o.inputs.size() > 1) {
        out += " [label=\"" + std::to_string(o.inputs[i].index) + ":" + std::to_string(i) + "\"]";
      }
      out += ";\n";
    }
  }
  return out + "}\n";
}

Json Graph::to_json() const {
  Json ops = Json::array();
  for (OpId id = 0; id < num_ops(); ++id) {
    const Op& o = op(id);
    Json attrs = Json::object();
    for (const auto& [key, value] : o.attrs.values()) attrs.set(key, attr_json(value));
    Json inputs = Json::array();
    for (const Value& v : o.inputs) {
      Json in = Json::object();
      in.set("op", Json(static_cast<int64_t>(v.op)));
      in.set("index", Json(static_cast<int64_t>(v.index)));
      inputs.push(std::move(in));
    }
    Json outputs = Json::array();
    for (const TensorType& t : o.outputs) outputs.push(type_json(t));
    Json entry = Json::object();
    entry.set("id", Json(static_cast<int64_t>(id)));
    entry.set("name", o.name);
    entry.set("kind", op_kind_name(o.kind));
    entry.set("role", role_name(o.role));
    if (o.forward_op != kNoOp) entry.set("forward_op", Json(static_cast<int64_t>(o.forward_op)));
    entry.set("attrs", std::move(attrs));
    entry.set("inputs", std::move(inputs));
    entry.set("outputs", std::move(outputs));
    entry.set("flops", op_flops(id));
    ops.push(std::move(entry));
  }
  Json graph_outputs = Json::array();
  for (const Value& v : impl_->outputs) {
    Json out = Json::object();
    out.set("op", Json(static_cast<int64_t>(v.op)));
    out.set("index", Json(static_cast<int64_t>(v.index)));
    graph_outputs.push(std::move(out));
  }
  Json root = Json::object();
  root.set("ops", std::move(ops));
  root.set("outputs", std::move(graph_outputs));
  root.set("total_flops", total_flops());
  root.set("parameter_count", parameter_count());
  return root;
}

}  // namespace strata::ir
