// Internal to src/ir: the per-kind shape and FLOP rules that op_table.cpp puts in its table, and
// small helpers the rule files share. Each rule sees inputs whose count already fits the arity.
#pragma once

#include <string>
#include <vector>

#include "strata/ir/op.h"

namespace strata::ir::rules {

using Types = std::vector<TensorType>;
using ShapeRule = Expected<Types> (*)(const Types& inputs, const Attrs& attrs);
using FlopRule = double (*)(const Types& inputs, const Types& outputs, const Attrs& attrs);

// --- helpers (shape_rules.cpp) ---
std::string input_field(size_t i);  // "inputs[i]"
Error input_error(size_t i, std::string reason);
// An attribute that may be absent (then `fallback`), but must be of the right type when present.
Expected<int64_t> optional_int(const Attrs& attrs, const std::string& key, int64_t fallback);
Expected<double> optional_real(const Attrs& attrs, const std::string& key, double fallback);
// Normalises a possibly negative axis against `rank`; the Error names `key`.
Expected<int64_t> normalize_axis(int64_t axis, int64_t rank, const std::string& key);
Status require_float(const Types& inputs, size_t i);
Status require_int(const Types& inputs, size_t i);
Status require_same_type(const Types& inputs, size_t a, size_t b);
Status require_rank(const Types& inputs, size_t i, int64_t rank);
// Reads a dtype name attribute (default "f32").
Expected<DType> dtype_attr(const Attrs& attrs);
// Reads an integer-list shape attribute with non-negative dims.
Expected<Shape> shape_attr(const Attrs& attrs, const std::string& key);

// --- sources, elementwise, reductions, layout, contraction (shape_rules.cpp) ---
Expected<Types> source(const Types&, const Attrs&);
Expected<Types> parameter(const Types&, const Attrs&);
Expected<Types> constant(const Types&, const Attrs&);
Expected<Types> unary(const Types&, const Attrs&);
Expected<Types> unary_float(const Types&, const Attrs&);
Expected<Types> scale(const Types&, const Attrs&);
Expected<Types> same_pair(const Types&, const Attrs&);  // (x, dy) of one type -> that type
Expected<Types> binary(const Types&, const Attrs&);
Expected<Types> reduce(const Types&, const Attrs&);
Expected<Types> reshape(const Types&, const Attrs&);
Expected<Types> transpose(const Types&, const Attrs&);
Expected<Types> broadcast(const Types&, const Attrs&);
Expected<Types> slice(const Types&, const Attrs&);
Expected<Types> concat(const Types&, const Attrs&);
Expected<Types> pad(const Types&, const Attrs&);
Expected<Types> dot(const Types&, const Attrs&);

// --- neural-network ops and optimizers (shape_rules_nn.cpp) ---
Expected<Types> gather(const Types&, const Attrs&);
Expected<Types> gather_grad(const Types&, const Attrs&);
Expected<Types> softmax(const Types&, const Attrs&);
Expected<Types> softmax_grad(const Types&, const Attrs&);
Expected<Types> layer_norm(const Types&, const Attrs&);
Expected<Types> layer_norm_grad(const Types&, const Attrs&);
Expected<Types> attention(const Types&, const Attrs&);
Expected<Types> attention_grad(const Types&, const Attrs&);
Expected<Types> conv2d(const Types&, const Attrs&);
Expected<Types> conv2d_grad_input(const Types&, const Attrs&);
Expected<Types> conv2d_grad_filter(const Types&, const Attrs&);
Expected<Types> batch_norm(const Types&, const Attrs&);
Expected<Types> batch_norm_grad(const Types&, const Attrs&);
Expected<Types> avg_pool(const Types&, const Attrs&);
Expected<Types> avg_pool_grad(const Types&, const Attrs&);
Expected<Types> max_pool(const Types&, const Attrs&);
Expected<Types> max_pool_grad(const Types&, const Attrs&);
Expected<Types> moe_gate(const Types&, const Attrs&);
Expected<Types> moe_gate_grad(const Types&, const Attrs&);
Expected<Types> cross_entropy(const Types&, const Attrs&);
Expected<Types> cross_entropy_grad(const Types&, const Attrs&);
Expected<Types> sgd_update(const Types&, const Attrs&);
Expected<Types> adam_update(const Types&, const Attrs&);

// --- FLOP rules (flops.cpp) ---
double zero_flops(const Types&, const Types&, const Attrs&);
double output_numel(const Types&, const Types&, const Attrs&);
double input_numel(const Types&, const Types&, const Attrs&);
double gelu_flops(const Types&, const Types&, const Attrs&);
double gelu_grad_flops(const Types&, const Types&, const Attrs&);
double dot_flops(const Types&, const Types&, const Attrs&);
double softmax_flops(const Types&, const Types&, const Attrs&);
double softmax_grad_flops(const Types&, const Types&, const Attrs&);
double layer_norm_flops(const Types&, const Types&, const Attrs&);
double layer_norm_grad_flops(const Types&, const Types&, const Attrs&);
double attention_flops(const Types&, const Types&, const Attrs&);
double attention_grad_flops(const Types&, const Types&, const Attrs&);
double conv2d_flops(const Types&, const Types&, const Attrs&);
double conv2d_grad_input_flops(const Types&, const Types&, const Attrs&);
double conv2d_grad_filter_flops(const Types&, const Types&, const Attrs&);
double batch_norm_flops(const Types&, const Types&, const Attrs&);
double batch_norm_grad_flops(const Types&, const Types&, const Attrs&);
double pool_flops(const Types&, const Types&, const Attrs&);
double pool_grad_flops(const Types&, const Types&, const Attrs&);
double cross_entropy_flops(const Types&, const Types&, const Attrs&);
double adam_flops(const Types&, const Types&, const Attrs&);
double sgd_flops(const Types&, const Types&, const Attrs&);
double gather_grad_flops(const Types&, const Types&, const Attrs&);

}  // namespace strata::ir::rules
