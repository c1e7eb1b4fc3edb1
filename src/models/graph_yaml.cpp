// The generic op-graph config (family: graph): reading `ops:`/`outputs:`, building the graph with
// errors that name the op and field, and writing any ir::Graph back in the same format.
#include <cmath>
#include <cstdio>
#include <map>
#include <sstream>

#include "models/internal.h"

namespace strata::models {
namespace {

std::string index_path(const std::string& path, size_t i) { return path + "[" + std::to_string(i) + "]"; }

// "name" or "name:K" against the ops defined so far (name -> number of outputs unknown yet, so
// only the name is checked here; the output index is checked when the graph is built).
Expected<ValueRef> parse_ref(const yaml::Reader& in, const YAML::Node& node, const std::string& field,
                             const std::map<std::string, size_t>& defined, const std::string& user) {
  if (!node.IsScalar()) return in.error(field, "must be an op name or \"name:index\"");
  const std::string text = node.Scalar();
  ValueRef ref{text, 0};
  const size_t colon = text.rfind(':');
  if (colon != std::string::npos) {
    const std::string index = text.substr(colon + 1);
    if (index.empty() || index.find_first_not_of("0123456789") != std::string::npos || index.size() > 6)
      return in.error(field, "bad output index in '" + text + "'");
    ref = ValueRef{text.substr(0, colon), static_cast<int32_t>(std::stoi(index))};
  }
  if (!defined.count(ref.op))
    return in.error(field, "dangling input '" + text + "' of " + user + ": no op named '" + ref.op + "' before it");
  return ref;
}

}  // namespace

Status read_graph_ops(const yaml::Reader& in, const YAML::Node& model, ModelSpec& spec) {
  const YAML::Node ops = model["ops"];
  if (!ops.IsDefined() || ops.IsNull()) return in.error("model.ops", "missing field");
  if (!ops.IsSequence() || ops.size() == 0) return in.error("model.ops", "must be a non-empty list of ops");
  std::map<std::string, size_t> defined;
  for (size_t i = 0; i < ops.size(); ++i) {
    const std::string path = index_path("model.ops", i);
    const YAML::Node node = ops[i];
    if (!node.IsMap()) return in.error(path, "must be a map {name, op, inputs, attrs}");
    STRATA_RETURN_IF_ERROR(in.only_keys(node, path, {"name", "op", "inputs", "attrs"}));
    GraphOpSpec op;
    STRATA_ASSIGN_OR_RETURN(op.name, in.string(node, "name", path));
    if (op.name.empty() || op.name.find(':') != std::string::npos)
      return in.error(path + ".name", "must be non-empty and contain no ':'");
    if (defined.count(op.name)) return in.error(path + ".name", "duplicate op name '" + op.name + "'");
    STRATA_ASSIGN_OR_RETURN(const std::string kind, in.string(node, "op", path));
    Expected<ir::OpKind> parsed = ir::parse_op_kind(kind);
    if (!parsed) return in.error(path + ".op", "unknown op '" + kind + "' (op " + op.name + ")");
    op.kind = *parsed;
    const YAML::Node inputs = node["inputs"];
    if (inputs.IsDefined() && !inputs.IsNull()) {
      if (!inputs.IsSequence()) return in.error(path + ".inputs", "must be a list of op names");
      for (size_t j = 0; j < inputs.size(); ++j) {
        STRATA_ASSIGN_OR_RETURN(ValueRef ref, parse_ref(in, inputs[j], index_path(path + ".inputs", j), defined, "op " + op.name));
        op.inputs.push_back(ref);
      }
    }
    const YAML::Node attrs = node["attrs"];
    if (attrs.IsDefined() && !attrs.IsNull()) {
      if (!attrs.IsMap()) return in.error(path + ".attrs", "must be a map of attribute values");
      for (const auto& entry : attrs) {
        const std::string key = entry.first.Scalar();
        Expected<ir::AttrValue> value = in.attr_value(entry.second, path + ".attrs." + key);
        if (!value) return in.error(value.error().field, value.error().reason + " (op " + op.name + ")");
        op.attrs.set(key, *value);
      }
    }
    defined[op.name] = i;
    spec.ops.push_back(std::move(op));
  }
  const YAML::Node outputs = model["outputs"];
  if (!outputs.IsDefined() || outputs.IsNull()) return in.error("model.outputs", "missing field");
  if (!outputs.IsSequence() || outputs.size() == 0) return in.error("model.outputs", "must be a non-empty list");
  for (size_t j = 0; j < outputs.size(); ++j) {
    STRATA_ASSIGN_OR_RETURN(ValueRef ref, parse_ref(in, outputs[j], index_path("model.outputs", j), defined, "the graph outputs"));
    spec.outputs.push_back(ref);
  }
  return Status::ok();
}

Expected<ir::Graph> build_graph_family(const ModelSpec& spec) {
  ir::Graph graph;
  std::map<std::string, ir::OpId> ids;
  auto resolve = [&](const ValueRef& ref, const std::string& field) -> Expected<ir::Value> {
    auto it = ids.find(ref.op);
    STRATA_CHECK(it != ids.end(), "unvalidated graph spec: " + ref.op);
    const int64_t outputs = static_cast<int64_t>(graph.op(it->second).outputs.size());
    if (ref.index >= outputs)
      return make_error(spec.file, field, "op '" + ref.op + "' has " + std::to_string(outputs) +
                                              " output(s), no output " + std::to_string(ref.index));
    return ir::Value{it->second, ref.index};
  };
  for (size_t i = 0; i < spec.ops.size(); ++i) {
    const GraphOpSpec& op = spec.ops[i];
    const std::string path = "model.ops[" + std::to_string(i) + "]";
    std::vector<ir::Value> inputs;
    for (size_t j = 0; j < op.inputs.size(); ++j) {
      STRATA_ASSIGN_OR_RETURN(ir::Value value, resolve(op.inputs[j], path + ".inputs[" + std::to_string(j) + "]"));
      inputs.push_back(value);
    }
    Expected<ir::OpId> id = graph.try_add(op.kind, inputs, op.attrs, op.name);
    if (!id) {
      const Error& e = id.error();
      // The IR names the op as field (sometimes with the attribute); say which config entry it is.
      std::string field = path;
      if (!e.field.empty() && e.field != op.name) {
        const std::string prefix = op.name + ".";
        const std::string rest = e.field.rfind(prefix, 0) == 0 ? e.field.substr(prefix.size()) : e.field;
        field += rest.rfind("inputs", 0) == 0 ? "." + rest : ".attrs." + rest;
      }
      return make_error(spec.file, field, "op " + op.name + " (" + ir::op_kind_name(op.kind) + "): " + e.reason);
    }
    ids[op.name] = *id;
  }
  for (size_t j = 0; j < spec.outputs.size(); ++j) {
    STRATA_ASSIGN_OR_RETURN(ir::Value value, resolve(spec.outputs[j], "model.outputs[" + std::to_string(j) + "]"));
    graph.mark_output(value);
  }
  return graph;
}

namespace {

std::string yaml_string(const std::string& text) {
  std::string out = "\"";
  for (char c : text) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out + "\"";
}

std::string yaml_real(double value) {
  if (std::isnan(value)) return ".nan";
  if (std::isinf(value)) return value > 0 ? ".inf" : "-.inf";
  char buffer[40];
  std::snprintf(buffer, sizeof buffer, "%.17g", value);
  std::string text = buffer;
  // Keep it a real on the way back in: "2" would read as an integer.
  if (text.find_first_of(".e") == std::string::npos) text += ".0";
  return text;
}

std::string yaml_attr(const ir::AttrValue& value) {
  if (const auto* i = std::get_if<int64_t>(&value)) return std::to_string(*i);
  if (const auto* d = std::get_if<double>(&value)) return yaml_real(*d);
  if (const auto* s = std::get_if<std::string>(&value)) return yaml_string(*s);
  const auto& list = std::get<std::vector<int64_t>>(value);
  std::string out = "[";
  for (size_t i = 0; i < list.size(); ++i) out += (i ? ", " : "") + std::to_string(list[i]);
  return out + "]";
}

std::string yaml_ref(const ir::Graph& graph, ir::Value value) {
  const std::string& name = graph.op(value.op).name;
  return yaml_string(value.index == 0 ? name : name + ":" + std::to_string(value.index));
}

}  // namespace

std::string graph_to_yaml(const ir::Graph& graph, const std::string& name) {
  std::ostringstream out;
  out << "# Generic op graph written by strata (family: graph).\n";
  out << "model:\n  name: " << yaml_string(name) << "\n  family: graph\n  ops:\n";
  for (ir::OpId id = 0; id < graph.num_ops(); ++id) {
    const ir::Op& op = graph.op(id);
    out << "    - {name: " << yaml_string(op.name) << ", op: " << ir::op_kind_name(op.kind);
    if (!op.inputs.empty()) {
      out << ", inputs: [";
      for (size_t i = 0; i < op.inputs.size(); ++i) out << (i ? ", " : "") << yaml_ref(graph, op.inputs[i]);
      out << "]";
    }
    if (!op.attrs.values().empty()) {
      out << ", attrs: {";
      bool first = true;
      for (const auto& [key, value] : op.attrs.values()) {
        out << (first ? "" : ", ") << key << ": " << yaml_attr(value);
        first = false;
      }
      out << "}";
    }
    out << "}\n";
  }
  out << "  outputs: [";
  for (size_t i = 0; i < graph.outputs().size(); ++i) out << (i ? ", " : "") << yaml_ref(graph, graph.outputs()[i]);
  out << "]\n";
  return out.str();
}

}  // namespace strata::models
