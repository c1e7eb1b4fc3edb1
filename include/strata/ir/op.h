// What an op is: its kind, its attributes and the per-kind facts (name, arity, shape rule,
// FLOPs) that live in one table keyed by kind (src/ir/op_table.cpp), ggml-style.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <variant>
#include <vector>

#include "strata/core/status.h"
#include "strata/ir/types.h"

namespace strata::ir {

// The op set. Inputs are listed as (a, b, ...); attributes in braces. Unless said otherwise an
// op has one output. "axis" attributes accept negative values counted from the end.
enum class OpKind : uint16_t {
  // --- sources (no inputs) ------------------------------------------------------------------
  Parameter,  // a trainable weight {shape, dtype, init: "normal"|"zeros"|"ones", init_std}
  Input,      // a data input fed per step {shape, dtype}; integer dtype for token ids / labels
  Constant,   // a tensor filled with one value {shape, dtype, value}

  // --- elementwise unary (x) -> same type -------------------------------------------------
  Neg, Exp, Log, Tanh, Sqrt, Rsqrt, Relu, Gelu,  // Gelu: tanh approximation (GPT-2)
  Scale,      // x * {scalar}
  Step,       // 1 where x > 0 else 0 (no gradient); used by Relu's backward
  Indicator,  // 1 where x != 0 else 0 (no gradient); MoE dispatch mask from combine weights
  GeluGrad,   // (x, dy) -> dy * gelu'(x)

  // --- elementwise binary (a, b) with numpy broadcasting -------------------------------------
  Add, Sub, Mul, Div, Max,

  // --- reductions (x) {axes, keepdims: 0|1} ------------------------------------------------
  ReduceSum, ReduceMax, ReduceMean,

  // --- layout ----------------------------------------------------------------------------
  Reshape,    // (x) {shape}: same numel
  Transpose,  // (x) {perm}
  Broadcast,  // (x) {shape, dims}: x's dim i becomes output dim dims[i] (size equal or x's is 1)
  Slice,      // (x) {starts, limits}: per dim [start, limit), step 1
  Concat,     // (x0, x1, ...) {axis}
  Pad,        // (x) {low, high}: zeros before/after per dim (backward of Slice)

  // --- contraction -------------------------------------------------------------------------
  // (lhs, rhs) {lhs_batch, rhs_batch, lhs_contract, rhs_contract}: XLA dot_general. Output dims
  // are batch dims (in lhs_batch order), then lhs free dims, then rhs free dims, each in order.
  Dot,

  // --- neural-network ops --------------------------------------------------------------------
  Gather,        // (table[V, H...], ids int[...]) -> [..., H...]: embedding lookup
  GatherGrad,    // (ids int[...], dy[..., H...]) {vocab} -> [V, H...]: scatter-add
  Softmax,       // (x) {axis}
  SoftmaxGrad,   // (y, dy) {axis} -> dx = y * (dy - sum(dy*y, axis))
  LayerNorm,     // (x, gamma[H], beta[H]) {eps}: over the last dim
  LayerNormGrad, // (x, gamma, dy) {eps} -> 3 outputs: dx, dgamma, dbeta
  Conv2d,        // (x[N,C,H,W], w[K,C,R,S]) {stride, padding} -> [N,K,H',W']
  Conv2dGradInput,   // (w, dy) {stride, padding, input_shape} -> dx
  Conv2dGradFilter,  // (x, dy) {stride, padding, filter_shape} -> dw
  BatchNorm,     // (x[N,C,H,W], gamma[C], beta[C]) {eps}: training mode, batch statistics
  BatchNormGrad, // (x, gamma, dy) {eps} -> 3 outputs: dx, dgamma, dbeta
  AvgPool2d,     // (x[N,C,H,W]) {window, stride, padding}
  AvgPool2dGrad, // (dy) {window, stride, padding, input_shape}
  MaxPool2d,     // (x) {window, stride, padding}
  MaxPool2dGrad, // (x, dy) {window, stride, padding} -> dx
  // GShard top-k gating. (probs[G, S, E]) {k, capacity} -> combine weights [G, S, E, C]: token s
  // of group g goes to its top-k experts in order of arrival while an expert has room (capacity
  // C slots); combine[g,s,e,c] = probs[g,s,e] at its slot, else 0.
  MoEGate,
  MoEGateGrad,   // (probs, dcombine) {k, capacity} -> dprobs
  // (logits[N, V], labels int[N]) -> scalar mean over N of -log softmax(logits)[label]. Optional
  // {mean_rows} (>= N) divides by it instead of N: a device holding N of a split batch's mean_rows
  // rows gives its share of the global mean (the partitioner sets it; the shares sum to the mean).
  CrossEntropy,
  CrossEntropyGrad,  // (logits, labels, dloss scalar) {mean_rows} -> dlogits
  // Fused scaled-dot-product attention (made by the cuda backend's fuse_for_cuda, never by a model):
  // (q[..., S, D], k[..., T, D], v[..., T, Dv], bias) {scale} -> 2 outputs: out[..., S, Dv] (q's
  // dtype) = softmax(scale * q.k^T + bias over T) . v, and lse[..., S] f32, the row logsumexp of
  // scale * q.k^T + bias. q, k and v share the leading dims; bias broadcasts (numpy rules) into
  // [..., S, T]. A bias entry at or below kAttentionMaskedBias (-1e6) masks its logit (as -inf),
  // so a row whose every entry is masked has lse -inf and out 0 (the unfused Add + Softmax gives a
  // softmax over the masked logits there; with any entry left the two agree: exp underflows).
  // {layout: "bsnd"} takes q, k, v and gives out (and AttentionGrad's out, dout, dq, dk, dv) as
  // [B, S, N, D] instead (rank 4; lse stays [B, N, S], the bias broadcasts into [B, N, S, T]).
  Attention,
  // (q, k, v, bias, out, lse, dout) {scale} -> 3 outputs: dq, dk, dv (the types of q, k, v). No
  // gradient flows to bias; out and lse are Attention's outputs for the same q, k, v, bias.
  AttentionGrad,

  // --- optimizer updates (outputs replace the state they came from) ---------------------------
  SgdUpdate,   // (param, grad) {lr} -> new param
  // (param f32, grad, m, v) {lr, beta1, beta2, eps, weight_decay, step} -> 3 outputs:
  // new param, new m, new v. Bias correction uses {step} (1-based).
  AdamUpdate,

  kCount  // number of kinds; not an op
};

// Attention's bias: an entry at or below this masks its logit (the cuda kernels use the same
// value, kMaskedBias in src/runtime/cuda/kernels.h, to skip all-masked blocks exactly).
inline constexpr double kAttentionMaskedBias = -1e6;

const char* op_kind_name(OpKind kind);
Expected<OpKind> parse_op_kind(const std::string& name);  // the name as op_kind_name prints it

// Attribute values: integers, reals, integer lists, strings.
using AttrValue = std::variant<int64_t, double, std::vector<int64_t>, std::string>;

// Named attributes with checked accessors; keys are sorted so printing is deterministic.
class Attrs {
 public:
  Attrs() = default;
  Attrs(std::initializer_list<std::pair<const std::string, AttrValue>> init) : values_(init) {}

  Attrs& set(const std::string& key, AttrValue value) {
    values_[key] = std::move(value);
    return *this;
  }
  bool has(const std::string& key) const { return values_.count(key) > 0; }
  // Typed reads: an absent key or a wrong type is an Error naming the key (field).
  Expected<int64_t> get_int(const std::string& key) const;
  Expected<double> get_real(const std::string& key) const;  // accepts integers too
  Expected<std::vector<int64_t>> get_ints(const std::string& key) const;
  Expected<std::string> get_string(const std::string& key) const;
  // Reads that fall back to a default only when the key is absent (a wrong type is still bad).
  int64_t int_or(const std::string& key, int64_t fallback) const;
  double real_or(const std::string& key, double fallback) const;

  const std::map<std::string, AttrValue>& values() const { return values_; }
  bool operator==(const Attrs&) const = default;

 private:
  std::map<std::string, AttrValue> values_;
};

std::string attr_value_string(const AttrValue& value);

// Whether an Attention/AttentionGrad's attrs say {layout: "bsnd"} (the shape rule rejects any other
// value than "bnsd" and "bsnd", so readers after it need only this).
bool attention_bsnd(const Attrs& attrs);

// Where an op sits in the training graph.
enum class Role : uint8_t { forward, backward, update };
const char* role_name(Role role);

// Per-kind facts, one table row per OpKind.
struct OpInfo {
  const char* name;
  int min_inputs;
  int max_inputs;  // -1: any number
  bool elementwise;  // output index i reads input index i (after broadcasting) only
  bool is_source;
};
const OpInfo& op_info(OpKind kind);

// Output types of an op, given its inputs' types and attributes. An Error's field names the
// attribute or "inputs[i]" at fault; the caller adds the op name and file.
Expected<std::vector<TensorType>> infer_types(OpKind kind, const std::vector<TensorType>& inputs,
                                              const Attrs& attrs);

// The free (neither batch nor contracting) dims of one Dot operand of rank `rank`, ascending.
std::vector<int64_t> dot_free_dims(int64_t rank, const std::vector<int64_t>& batch, const std::vector<int64_t>& contract);

// Floating-point operations of one execution (multiply-add = 2 FLOPs). Layout ops count 0.
double op_flops(OpKind kind, const std::vector<TensorType>& inputs, const std::vector<TensorType>& outputs,
                const Attrs& attrs);

}  // namespace strata::ir
