// Strategies of one op: OpSharding text, enumeration from the op's dimension labels (every
// assignment of the two mesh axes to labels), cost and memory per strategy, and local attributes.
#include "strata/intra/strategy.h"

#include <sstream>

#include "intra/dim_labels.h"

namespace strata::intra {
namespace {

using detail::DimLabels;
using detail::dim_labels;

std::string join_specs(const std::vector<ShardingSpec>& specs) {
  std::string text;
  for (size_t i = 0; i < specs.size(); ++i) {
    if (i > 0) text += ",";
    text += specs[i].to_string();
  }
  return text;
}

Expected<std::vector<ShardingSpec>> parse_spec_list(const std::string& text, const std::string& whole) {
  std::vector<ShardingSpec> specs;
  if (text.empty()) return specs;
  size_t start = 0;
  while (true) {
    const size_t comma = text.find(',', start);
    const std::string item = text.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    auto spec = parse_sharding(item);
    if (!spec.is_ok()) return make_error("", "sharding", "'" + whole + "': " + spec.error().reason);
    specs.push_back(*spec);
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return specs;
}

DimSharding dim_for(bool axis0, bool axis1) {
  if (axis0 && axis1) return DimSharding::S01;
  if (axis0) return DimSharding::S0;
  if (axis1) return DimSharding::S1;
  return DimSharding::R;
}

// The OpSharding that splits label `label0` over mesh axis 0 and `label1` over axis 1 (-1: none),
// or an Error when a dim does not divide or an output would need a partial sum the op cannot give.
Expected<OpSharding> sharding_for(const DimLabels& labels, int label0, int label1, const std::vector<ir::TensorType>& inputs,
                                  const std::vector<ir::TensorType>& outputs, const cluster::LogicalMesh& mesh) {
  auto spec_of = [&](const std::vector<int>& dims, const ir::TensorType& type, bool output) -> Expected<ShardingSpec> {
    ShardingSpec spec;
    bool present0 = label0 < 0, present1 = label1 < 0;
    for (int l : dims) {
      spec.dims.push_back(dim_for(l >= 0 && l == label0, l >= 0 && l == label1));
      present0 = present0 || (l >= 0 && l == label0);
      present1 = present1 || (l >= 0 && l == label1);
    }
    if (!present0 || !present1) {
      // A split label this tensor lacks: inputs are simply replicated over that axis (each device
      // reads the whole tensor); outputs must then be partial sums, and only over summed labels.
      if (output) {
        if (!present0) {
          if (!labels.summed[label0]) return make_error("", "sharding", "cannot split a non-linear dimension");
          spec.partial[0] = true;
        }
        if (!present1) {
          if (!labels.summed[label1]) return make_error("", "sharding", "cannot split a non-linear dimension");
          spec.partial[1] = true;
        }
      }
    }
    STRATA_RETURN_IF_ERROR(validate_sharding(spec, type.shape, mesh));
    return spec;
  };
  OpSharding sharding;
  for (size_t i = 0; i < inputs.size(); ++i) {
    STRATA_ASSIGN_OR_RETURN(ShardingSpec spec, spec_of(labels.inputs[i], inputs[i], false));
    sharding.inputs.push_back(spec);
  }
  for (size_t o = 0; o < outputs.size(); ++o) {
    STRATA_ASSIGN_OR_RETURN(ShardingSpec spec, spec_of(labels.outputs[o], outputs[o], true));
    sharding.outputs.push_back(spec);
  }
  return sharding;
}

std::vector<ir::TensorType> input_types(const ir::Graph& graph, const ir::Op& op) {
  std::vector<ir::TensorType> types;
  for (const ir::Value& value : op.inputs) types.push_back(graph.type(value));
  return types;
}

Expected<std::vector<ir::TensorType>> local_types(const std::vector<ShardingSpec>& specs,
                                                  const std::vector<ir::TensorType>& types, const cluster::LogicalMesh& mesh) {
  std::vector<ir::TensorType> local;
  for (size_t i = 0; i < types.size(); ++i) {
    STRATA_ASSIGN_OR_RETURN(ir::Shape shape, local_shape(specs[i], types[i].shape, mesh));
    local.push_back(ir::TensorType{shape, types[i].dtype});
  }
  return local;
}

// An empty spec list where the op has exactly one rank-0 tensor means that one replicated spec
// ("[]" reads as no specs; a lone scalar's spec is empty text too).
void fill_lone_scalar(std::vector<ShardingSpec>& specs, const std::vector<ir::TensorType>& types) {
  if (specs.empty() && types.size() == 1 && types[0].rank() == 0) specs.push_back(ShardingSpec{});
}

}  // namespace

std::string OpSharding::to_string() const { return "[" + join_specs(inputs) + "]->[" + join_specs(outputs) + "]"; }

bool OpSharding::operator==(const OpSharding& other) const {
  return inputs == other.inputs && outputs == other.outputs;
}

Expected<OpSharding> parse_op_sharding(const std::string& text) {
  auto bad = [&](const std::string& why) { return make_error("", "sharding", "'" + text + "': " + why); };
  const size_t arrow = text.find("->");
  if (arrow == std::string::npos) return bad("expected '[inputs]->[outputs]'");
  const std::string lhs = text.substr(0, arrow), rhs = text.substr(arrow + 2);
  auto inner = [&](const std::string& side) -> Expected<std::string> {
    if (side.size() < 2 || side.front() != '[' || side.back() != ']') return bad("each side must be in brackets");
    return side.substr(1, side.size() - 2);
  };
  STRATA_ASSIGN_OR_RETURN(std::string in_text, inner(lhs));
  STRATA_ASSIGN_OR_RETURN(std::string out_text, inner(rhs));
  OpSharding sharding;
  STRATA_ASSIGN_OR_RETURN(sharding.inputs, parse_spec_list(in_text, text));
  STRATA_ASSIGN_OR_RETURN(sharding.outputs, parse_spec_list(out_text, text));
  for (const ShardingSpec& spec : sharding.inputs) {
    if (spec.partial[0] || spec.partial[1]) return bad("an input cannot be a pending partial sum");
  }
  return sharding;
}

Expected<std::vector<Strategy>> enumerate_strategies(const ir::Graph& graph, ir::OpId id, const cluster::LogicalMesh& mesh,
                                                     const cost::ComputeModel& compute, const cost::FusedOp& how) {
  if (id < 0 || id >= graph.num_ops()) return make_error("", "op", "id " + std::to_string(id) + " out of range");
  const ir::Op& op = graph.op(id);
  const std::vector<ir::TensorType> inputs = input_types(graph, op);
  auto labels = dim_labels(op, inputs);
  if (!labels.is_ok()) return labels.error().under(op.name);
  std::vector<Strategy> strategies;
  const int n = labels->num_labels;
  const int last0 = mesh.n0 > 1 ? n - 1 : -1;
  const int last1 = mesh.n1 > 1 ? n - 1 : -1;
  for (int label0 = -1; label0 <= last0; ++label0) {
    for (int label1 = -1; label1 <= last1; ++label1) {
      auto sharding = sharding_for(*labels, label0, label1, inputs, op.outputs, mesh);
      if (!sharding.is_ok()) continue;
      Strategy strategy;
      strategy.name = std::string(op_kind_name(op.kind)) + " " + sharding->to_string();
      STRATA_ASSIGN_OR_RETURN(std::vector<ir::TensorType> local_in, local_types(sharding->inputs, inputs, mesh));
      STRATA_ASSIGN_OR_RETURN(std::vector<ir::TensorType> local_out, local_types(sharding->outputs, op.outputs, mesh));
      STRATA_ASSIGN_OR_RETURN(ir::Attrs attrs, local_attrs(op, inputs, *sharding, mesh));
      strategy.compute_seconds = compute.op_seconds(how, op.kind, local_in, local_out, attrs);
      if (op.kind == ir::OpKind::Input || op.kind == ir::OpKind::Constant) {
        // Feeding (or filling) the device's tile: its bytes written to device memory.
        strategy.compute_seconds = compute.roofline_seconds(0, local_out[0].bytes(), local_out[0].dtype, false);
      }
      for (const ir::TensorType& type : local_out) strategy.memory_bytes += type.bytes();
      strategy.sharding = std::move(*sharding);
      strategies.push_back(std::move(strategy));
    }
  }
  if (strategies.empty()) return make_error("", op.name, "no strategy fits the mesh");  // 1x1 always has one
  return strategies;
}

Expected<ir::Attrs> local_attrs(const ir::Op& op, const std::vector<ir::TensorType>& global_inputs,
                                const OpSharding& given, const cluster::LogicalMesh& mesh) {
  auto bad = [&](const std::string& why) {
    return make_error("", op.name, "sharding " + given.to_string() + ": " + why);
  };
  OpSharding sharding = given;
  fill_lone_scalar(sharding.inputs, global_inputs);
  fill_lone_scalar(sharding.outputs, op.outputs);
  if (sharding.inputs.size() != global_inputs.size() || sharding.outputs.size() != op.outputs.size()) {
    return bad("needs " + std::to_string(global_inputs.size()) + " input and " + std::to_string(op.outputs.size()) +
               " output specs");
  }
  auto labels = dim_labels(op, global_inputs);
  if (!labels.is_ok()) return labels.error().under(op.name);

  // Every dim of a label must be split the same way; unlabeled dims never; partial outputs
  // exactly where a split summed label is missing.
  std::vector<int> label_split(static_cast<size_t>(labels->num_labels), -1);  // DimSharding as int, -1 unseen
  auto check_tensor = [&](const ShardingSpec& spec, const std::vector<int>& dims, const ir::TensorType& type,
                          bool output) -> Status {
    if (!output && (spec.partial[0] || spec.partial[1])) return bad("an input cannot be a pending partial sum");
    auto valid = validate_sharding(spec, type.shape, mesh);
    if (!valid.is_ok()) return bad(valid.error().reason);
    for (size_t d = 0; d < dims.size(); ++d) {
      const int l = dims[d];
      const int split = static_cast<int>(spec.dims[d]);
      if (l < 0) {
        if (spec.dims[d] != DimSharding::R) return bad("dimension " + std::to_string(d) + " cannot be split");
        continue;
      }
      if (label_split[l] >= 0 && label_split[l] != split) return bad("dimension " + std::to_string(d) + " disagrees with its operands");
      label_split[l] = split;
    }
    return Status::ok();
  };
  for (size_t i = 0; i < global_inputs.size(); ++i) {
    STRATA_RETURN_IF_ERROR(check_tensor(sharding.inputs[i], labels->inputs[i], global_inputs[i], false));
  }
  for (size_t o = 0; o < op.outputs.size(); ++o) {
    STRATA_RETURN_IF_ERROR(check_tensor(sharding.outputs[o], labels->outputs[o], op.outputs[o], true));
  }
  for (size_t o = 0; o < op.outputs.size(); ++o) {
    bool needs[2] = {false, false};
    std::vector<bool> present(static_cast<size_t>(labels->num_labels), false);
    for (int l : labels->outputs[o]) {
      if (l >= 0) present[l] = true;
    }
    for (int l = 0; l < labels->num_labels; ++l) {
      if (present[l] || label_split[l] <= 0) continue;
      if (!labels->summed[l]) return bad("output " + std::to_string(o) + " would need a sum the op is not linear in");
      const auto split = static_cast<DimSharding>(label_split[l]);
      needs[0] = needs[0] || split == DimSharding::S0 || split == DimSharding::S01;
      needs[1] = needs[1] || split == DimSharding::S1 || split == DimSharding::S01;
    }
    for (int axis = 0; axis < 2; ++axis) {
      if (needs[axis] != sharding.outputs[o].partial[axis]) {
        return bad("output " + std::to_string(o) + (needs[axis] ? " must be" : " cannot be") +
                   " a partial sum over mesh axis " + std::to_string(axis));
      }
    }
  }

  ir::Attrs attrs = op.attrs;
  STRATA_ASSIGN_OR_RETURN(std::vector<ir::TensorType> local_out, local_types(sharding.outputs, op.outputs, mesh));
  STRATA_ASSIGN_OR_RETURN(std::vector<ir::TensorType> local_in, local_types(sharding.inputs, global_inputs, mesh));
  switch (op.kind) {
    case ir::OpKind::Parameter:
    case ir::OpKind::Input:
    case ir::OpKind::Constant:
    case ir::OpKind::Reshape:
    case ir::OpKind::Broadcast: attrs.set("shape", local_out[0].shape); break;
    case ir::OpKind::Slice: {
      STRATA_ASSIGN_OR_RETURN(std::vector<int64_t> limits, op.attrs.get_ints("limits"));
      for (size_t d = 0; d < limits.size(); ++d) {
        if (labels->inputs[0][d] >= 0) limits[d] = local_in[0].shape[d];
      }
      attrs.set("limits", limits);
      break;
    }
    case ir::OpKind::Conv2dGradInput:
    case ir::OpKind::AvgPool2dGrad: attrs.set("input_shape", local_out[0].shape); break;
    case ir::OpKind::Conv2dGradFilter: attrs.set("filter_shape", local_out[0].shape); break;
    case ir::OpKind::CrossEntropy:
    case ir::OpKind::CrossEntropyGrad:
      // Rows split: each device's share of the mean over all of them.
      if (local_in[0].shape[0] != global_inputs[0].shape[0] && !op.attrs.has("mean_rows")) {
        attrs.set("mean_rows", global_inputs[0].shape[0]);
      }
      break;
    default: break;
  }
  return attrs;
}

}  // namespace strata::intra
