// The op table: one row per OpKind with its name, arity, flags, shape rule and FLOP rule, plus
// the attribute accessors and the entry points infer_types / op_flops that dispatch through it.
#include <array>
#include <charconv>
#include <cmath>

#include "ir/rules.h"
#include "strata/ir/op.h"

#include <algorithm>

namespace strata::ir {
namespace {

using namespace rules;

struct Row {
  OpKind kind;
  OpInfo info;
  ShapeRule shape;
  FlopRule flops;
};

constexpr int kAny = -1;

// Order must follow the enum; op_info checks it.
const std::array<Row, static_cast<size_t>(OpKind::kCount)> kTable = {{
    {OpKind::Parameter, {"Parameter", 0, 0, false, true}, parameter, zero_flops},
    {OpKind::Input, {"Input", 0, 0, false, true}, source, zero_flops},
    {OpKind::Constant, {"Constant", 0, 0, false, true}, constant, zero_flops},
    {OpKind::Neg, {"Neg", 1, 1, true, false}, unary, output_numel},
    {OpKind::Exp, {"Exp", 1, 1, true, false}, unary_float, output_numel},
    {OpKind::Log, {"Log", 1, 1, true, false}, unary_float, output_numel},
    {OpKind::Tanh, {"Tanh", 1, 1, true, false}, unary_float, output_numel},
    {OpKind::Sqrt, {"Sqrt", 1, 1, true, false}, unary_float, output_numel},
    {OpKind::Rsqrt, {"Rsqrt", 1, 1, true, false}, unary_float, output_numel},
    {OpKind::Relu, {"Relu", 1, 1, true, false}, unary, output_numel},
    {OpKind::Gelu, {"Gelu", 1, 1, true, false}, unary_float, gelu_flops},
    {OpKind::Scale, {"Scale", 1, 1, true, false}, scale, output_numel},
    {OpKind::Step, {"Step", 1, 1, true, false}, unary, output_numel},
    {OpKind::Indicator, {"Indicator", 1, 1, true, false}, unary, output_numel},
    {OpKind::GeluGrad, {"GeluGrad", 2, 2, true, false}, same_pair, gelu_grad_flops},
    {OpKind::Add, {"Add", 2, 2, true, false}, binary, output_numel},
    {OpKind::Sub, {"Sub", 2, 2, true, false}, binary, output_numel},
    {OpKind::Mul, {"Mul", 2, 2, true, false}, binary, output_numel},
    {OpKind::Div, {"Div", 2, 2, true, false}, binary, output_numel},
    {OpKind::Max, {"Max", 2, 2, true, false}, binary, output_numel},
    {OpKind::ReduceSum, {"ReduceSum", 1, 1, false, false}, reduce, input_numel},
    {OpKind::ReduceMax, {"ReduceMax", 1, 1, false, false}, reduce, input_numel},
    {OpKind::ReduceMean, {"ReduceMean", 1, 1, false, false}, reduce, input_numel},
    {OpKind::Reshape, {"Reshape", 1, 1, false, false}, reshape, zero_flops},
    {OpKind::Transpose, {"Transpose", 1, 1, false, false}, transpose, zero_flops},
    {OpKind::Broadcast, {"Broadcast", 1, 1, false, false}, broadcast, zero_flops},
    {OpKind::Slice, {"Slice", 1, 1, false, false}, slice, zero_flops},
    {OpKind::Concat, {"Concat", 1, kAny, false, false}, concat, zero_flops},
    {OpKind::Pad, {"Pad", 1, 1, false, false}, pad, zero_flops},
    {OpKind::Dot, {"Dot", 2, 2, false, false}, dot, dot_flops},
    {OpKind::Gather, {"Gather", 2, 2, false, false}, gather, zero_flops},
    {OpKind::GatherGrad, {"GatherGrad", 2, 2, false, false}, gather_grad, gather_grad_flops},
    {OpKind::Softmax, {"Softmax", 1, 1, false, false}, softmax, softmax_flops},
    {OpKind::SoftmaxGrad, {"SoftmaxGrad", 2, 2, false, false}, softmax_grad, softmax_grad_flops},
    {OpKind::LayerNorm, {"LayerNorm", 3, 3, false, false}, layer_norm, layer_norm_flops},
    {OpKind::LayerNormGrad, {"LayerNormGrad", 3, 3, false, false}, layer_norm_grad, layer_norm_grad_flops},
    {OpKind::Conv2d, {"Conv2d", 2, 2, false, false}, conv2d, conv2d_flops},
    {OpKind::Conv2dGradInput, {"Conv2dGradInput", 2, 2, false, false}, conv2d_grad_input, conv2d_grad_input_flops},
    {OpKind::Conv2dGradFilter, {"Conv2dGradFilter", 2, 2, false, false}, conv2d_grad_filter,
     conv2d_grad_filter_flops},
    {OpKind::BatchNorm, {"BatchNorm", 3, 3, false, false}, batch_norm, batch_norm_flops},
    {OpKind::BatchNormGrad, {"BatchNormGrad", 3, 3, false, false}, batch_norm_grad, batch_norm_grad_flops},
    {OpKind::AvgPool2d, {"AvgPool2d", 1, 1, false, false}, avg_pool, pool_flops},
    {OpKind::AvgPool2dGrad, {"AvgPool2dGrad", 1, 1, false, false}, avg_pool_grad, pool_grad_flops},
    {OpKind::MaxPool2d, {"MaxPool2d", 1, 1, false, false}, max_pool, pool_flops},
    {OpKind::MaxPool2dGrad, {"MaxPool2dGrad", 2, 2, false, false}, max_pool_grad, pool_grad_flops},
    {OpKind::MoEGate, {"MoEGate", 1, 1, false, false}, moe_gate, output_numel},
    {OpKind::MoEGateGrad, {"MoEGateGrad", 2, 2, false, false}, moe_gate_grad, input_numel},
    {OpKind::CrossEntropy, {"CrossEntropy", 2, 2, false, false}, cross_entropy, cross_entropy_flops},
    {OpKind::CrossEntropyGrad, {"CrossEntropyGrad", 3, 3, false, false}, cross_entropy_grad, cross_entropy_flops},
    {OpKind::Attention, {"Attention", 4, 4, false, false}, attention, attention_flops},
    {OpKind::AttentionGrad, {"AttentionGrad", 7, 7, false, false}, attention_grad, attention_grad_flops},
    {OpKind::SgdUpdate, {"SgdUpdate", 2, 2, true, false}, sgd_update, sgd_flops},
    {OpKind::AdamUpdate, {"AdamUpdate", 4, 4, true, false}, adam_update, adam_flops},
}};

const Row& row(OpKind kind) {
  const auto index = static_cast<size_t>(kind);
  STRATA_CHECK(index < kTable.size(), "op kind out of range: " + std::to_string(index));
  const Row& r = kTable[index];
  STRATA_CHECK(r.kind == kind, std::string("op table out of enum order at ") + r.info.name);
  return r;
}

Error wrong_type(const std::string& key, const char* expected) { return make_error("", key, expected); }

}  // namespace

const char* op_kind_name(OpKind kind) { return row(kind).info.name; }

bool attention_bsnd(const Attrs& attrs) {
  const auto layout = attrs.get_string("layout");
  return layout.is_ok() && *layout == "bsnd";
}

Expected<OpKind> parse_op_kind(const std::string& name) {
  for (const Row& r : kTable) {
    if (name == r.info.name) return r.kind;
  }
  return make_error("", "", "unknown op kind \"" + name + "\"");
}

const OpInfo& op_info(OpKind kind) { return row(kind).info; }

const char* role_name(Role role) {
  switch (role) {
    case Role::forward: return "forward";
    case Role::backward: return "backward";
    case Role::update: return "update";
  }
  STRATA_UNREACHABLE("bad role");
  return "";
}

Expected<int64_t> Attrs::get_int(const std::string& key) const {
  auto it = values_.find(key);
  if (it == values_.end()) return make_error("", key, "missing attribute");
  if (const auto* v = std::get_if<int64_t>(&it->second)) return *v;
  return wrong_type(key, "expected an integer");
}

Expected<double> Attrs::get_real(const std::string& key) const {
  auto it = values_.find(key);
  if (it == values_.end()) return make_error("", key, "missing attribute");
  if (const auto* v = std::get_if<double>(&it->second)) return *v;
  if (const auto* v = std::get_if<int64_t>(&it->second)) return static_cast<double>(*v);
  return wrong_type(key, "expected a number");
}

Expected<std::vector<int64_t>> Attrs::get_ints(const std::string& key) const {
  auto it = values_.find(key);
  if (it == values_.end()) return make_error("", key, "missing attribute");
  if (const auto* v = std::get_if<std::vector<int64_t>>(&it->second)) return *v;
  return wrong_type(key, "expected an integer list");
}

Expected<std::string> Attrs::get_string(const std::string& key) const {
  auto it = values_.find(key);
  if (it == values_.end()) return make_error("", key, "missing attribute");
  if (const auto* v = std::get_if<std::string>(&it->second)) return *v;
  return wrong_type(key, "expected a string");
}

// A wrong type here is a bug in the code that built the attributes: user-facing reads go
// through get_* (or rules::optional_*), which return an Error instead.
int64_t Attrs::int_or(const std::string& key, int64_t fallback) const {
  if (!has(key)) return fallback;
  auto value = get_int(key);
  STRATA_CHECK(value.is_ok(), value.status().message());
  return *value;
}

double Attrs::real_or(const std::string& key, double fallback) const {
  if (!has(key)) return fallback;
  auto value = get_real(key);
  STRATA_CHECK(value.is_ok(), value.status().message());
  return *value;
}

std::string attr_value_string(const AttrValue& value) {
  if (const auto* v = std::get_if<int64_t>(&value)) return std::to_string(*v);
  if (const auto* v = std::get_if<double>(&value)) {
    if (!std::isfinite(*v)) return std::isnan(*v) ? "nan" : (*v > 0 ? "inf" : "-inf");
    char buffer[64];
    auto result = std::to_chars(buffer, buffer + sizeof(buffer), *v);  // shortest round-trip form
    std::string text(buffer, result.ptr);
    // Keep reals recognisable as reals: "1" would read back as an integer.
    if (text.find_first_of(".eEn") == std::string::npos) text += ".0";
    return text;
  }
  if (const auto* v = std::get_if<std::vector<int64_t>>(&value)) return shape_string(*v);
  return "\"" + std::get<std::string>(value) + "\"";
}

Expected<std::vector<TensorType>> infer_types(OpKind kind, const std::vector<TensorType>& inputs,
                                              const Attrs& attrs) {
  const Row& r = row(kind);
  const auto count = static_cast<int>(inputs.size());
  if (count < r.info.min_inputs || (r.info.max_inputs != kAny && count > r.info.max_inputs)) {
    std::string expected = std::to_string(r.info.min_inputs);
    if (r.info.max_inputs == kAny) {
      expected = "at least " + expected;
    } else if (r.info.max_inputs != r.info.min_inputs) {
      expected += " to " + std::to_string(r.info.max_inputs);
    }
    return make_error("", "inputs", std::string(r.info.name) + " takes " + expected + " input(s), got " +
                                        std::to_string(count));
  }
  for (size_t i = 0; i < inputs.size(); ++i) {
    for (int64_t d : inputs[i].shape) {
      if (d < 0) return input_error(i, "negative dimension in " + shape_string(inputs[i].shape));
    }
  }
  return r.shape(inputs, attrs);
}

double op_flops(OpKind kind, const std::vector<TensorType>& inputs, const std::vector<TensorType>& outputs,
                const Attrs& attrs) {
  return row(kind).flops(inputs, outputs, attrs);
}

std::vector<int64_t> dot_free_dims(int64_t rank, const std::vector<int64_t>& batch,
                                   const std::vector<int64_t>& contract) {
  std::vector<int64_t> free;
  for (int64_t d = 0; d < rank; ++d) {
    if (std::find(batch.begin(), batch.end(), d) == batch.end() &&
        std::find(contract.begin(), contract.end(), d) == contract.end()) {
      free.push_back(d);
    }
  }
  return free;
}

}  // namespace strata::ir
