// Shape rules for the neural-network ops (embedding, softmax, norms, convolution, pooling, MoE
// gating, cross-entropy) and the optimizer updates. Gradient ops check that their operands agree
// with the forward op they differentiate.
#include <algorithm>
#include <cmath>

#include "ir/rules.h"

namespace strata::ir::rules {
namespace {

std::string num(int64_t v) { return std::to_string(v); }

// Spatial output size of a window of `window` sliding with `stride` over `size + 2 * padding`.
Expected<int64_t> window_output(int64_t size, int64_t window, int64_t stride, int64_t padding,
                                const std::string& field) {
  const int64_t span = size + 2 * padding - window;
  if (span < 0) {
    return make_error("", field, "window " + num(window) + " larger than padded size " + num(size + 2 * padding));
  }
  return span / stride + 1;
}

struct Window {
  int64_t stride = 1;
  int64_t padding = 0;
};

Expected<Window> conv_window(const Attrs& attrs) {
  Window w;
  STRATA_ASSIGN_OR_RETURN(w.stride, optional_int(attrs, "stride", 1));
  STRATA_ASSIGN_OR_RETURN(w.padding, optional_int(attrs, "padding", 0));
  if (w.stride < 1) return make_error("", "stride", "must be at least 1, got " + num(w.stride));
  if (w.padding < 0) return make_error("", "padding", "must be non-negative, got " + num(w.padding));
  return w;
}

// Conv2d's output shape for x[N,C,H,W] and w[K,C,R,S]; `x_field`/`w_field` name where each came from.
Expected<Shape> conv_output(const Shape& x, const Shape& w, const Window& win, const std::string& x_field,
                            const std::string& w_field) {
  if (x.size() != 4) return make_error("", x_field, "expected [N, C, H, W], got " + shape_string(x));
  if (w.size() != 4) return make_error("", w_field, "expected [K, C, R, S], got " + shape_string(w));
  if (x[1] != w[1]) {
    return make_error("", w_field, "input channels differ: " + num(x[1]) + " vs " + num(w[1]));
  }
  STRATA_ASSIGN_OR_RETURN(int64_t h, window_output(x[2], w[2], win.stride, win.padding, w_field));
  STRATA_ASSIGN_OR_RETURN(int64_t wo, window_output(x[3], w[3], win.stride, win.padding, w_field));
  return Shape{x[0], w[0], h, wo};
}

struct Pool {
  int64_t window = 1;
  int64_t stride = 1;
  int64_t padding = 0;
};

// {window} required; {stride} defaults to the window, {padding} to 0.
Expected<Pool> pool_attrs(const Attrs& attrs) {
  Pool p;
  STRATA_ASSIGN_OR_RETURN(p.window, attrs.get_int("window"));
  STRATA_ASSIGN_OR_RETURN(p.stride, optional_int(attrs, "stride", p.window));
  STRATA_ASSIGN_OR_RETURN(p.padding, optional_int(attrs, "padding", 0));
  if (p.window < 1) return make_error("", "window", "must be at least 1, got " + num(p.window));
  if (p.stride < 1) return make_error("", "stride", "must be at least 1, got " + num(p.stride));
  if (p.padding < 0 || p.padding >= p.window) {
    return make_error("", "padding", "must be in [0, window), got " + num(p.padding));
  }
  return p;
}

Expected<Shape> pool_output(const Shape& x, const Pool& p, const std::string& field) {
  if (x.size() != 4) return make_error("", field, "expected [N, C, H, W], got " + shape_string(x));
  STRATA_ASSIGN_OR_RETURN(int64_t h, window_output(x[2], p.window, p.stride, p.padding, "window"));
  STRATA_ASSIGN_OR_RETURN(int64_t w, window_output(x[3], p.window, p.stride, p.padding, "window"));
  return Shape{x[0], x[1], h, w};
}

Status require_shape(const Types& inputs, size_t i, const Shape& expected, const std::string& what) {
  if (inputs[i].shape != expected) {
    return input_error(i, "expected shape " + shape_string(expected) + " (" + what + "), got " +
                              shape_string(inputs[i].shape));
  }
  return Status::ok();
}

Status check_eps(const Attrs& attrs) {
  STRATA_ASSIGN_OR_RETURN(double eps, optional_real(attrs, "eps", 1e-5));
  if (eps <= 0) return make_error("", "eps", "must be positive");
  return Status::ok();
}

Expected<int64_t> softmax_axis(const Types& inputs, const Attrs& attrs) {
  STRATA_ASSIGN_OR_RETURN(int64_t axis, optional_int(attrs, "axis", -1));
  return normalize_axis(axis, inputs[0].rank(), "axis");
}

}  // namespace

// --- embedding ---

Expected<Types> gather(const Types& inputs, const Attrs&) {
  const TensorType& table = inputs[0];
  if (table.rank() < 1) return input_error(0, "expected a table [V, H...], got a scalar");
  STRATA_RETURN_IF_ERROR(require_int(inputs, 1));
  Shape out = inputs[1].shape;
  out.insert(out.end(), table.shape.begin() + 1, table.shape.end());
  return Types{TensorType{out, table.dtype}};
}

Expected<Types> gather_grad(const Types& inputs, const Attrs& attrs) {
  const TensorType& ids = inputs[0];
  const TensorType& dy = inputs[1];
  STRATA_RETURN_IF_ERROR(require_int(inputs, 0));
  STRATA_ASSIGN_OR_RETURN(int64_t vocab, attrs.get_int("vocab"));
  if (vocab < 1) return make_error("", "vocab", "must be at least 1, got " + num(vocab));
  if (dy.rank() < ids.rank() || !std::equal(ids.shape.begin(), ids.shape.end(), dy.shape.begin())) {
    return input_error(1, "expected a shape starting with the ids' " + shape_string(ids.shape) + ", got " +
                              shape_string(dy.shape));
  }
  Shape out{vocab};
  out.insert(out.end(), dy.shape.begin() + ids.rank(), dy.shape.end());
  return Types{TensorType{out, dy.dtype}};
}

// --- softmax and layer norm ---

Expected<Types> softmax(const Types& inputs, const Attrs& attrs) {
  STRATA_RETURN_IF_ERROR(require_float(inputs, 0));
  STRATA_RETURN_IF_ERROR(softmax_axis(inputs, attrs));
  return Types{inputs[0]};
}

Expected<Types> softmax_grad(const Types& inputs, const Attrs& attrs) {
  STRATA_RETURN_IF_ERROR(require_float(inputs, 0));
  STRATA_RETURN_IF_ERROR(require_same_type(inputs, 0, 1));
  STRATA_RETURN_IF_ERROR(softmax_axis(inputs, attrs));
  return Types{inputs[0]};
}

Expected<Types> layer_norm(const Types& inputs, const Attrs& attrs) {
  const TensorType& x = inputs[0];
  STRATA_RETURN_IF_ERROR(require_float(inputs, 0));
  if (x.rank() < 1) return input_error(0, "expected rank >= 1, got a scalar");
  const Shape hidden{x.shape.back()};
  STRATA_RETURN_IF_ERROR(require_shape(inputs, 1, hidden, "the last dim of inputs[0]"));
  STRATA_RETURN_IF_ERROR(require_shape(inputs, 2, hidden, "the last dim of inputs[0]"));
  STRATA_RETURN_IF_ERROR(check_eps(attrs));
  return Types{x};
}

Expected<Types> layer_norm_grad(const Types& inputs, const Attrs& attrs) {
  const TensorType& x = inputs[0];
  STRATA_RETURN_IF_ERROR(require_float(inputs, 0));
  if (x.rank() < 1) return input_error(0, "expected rank >= 1, got a scalar");
  STRATA_RETURN_IF_ERROR(require_shape(inputs, 1, Shape{x.shape.back()}, "the last dim of inputs[0]"));
  STRATA_RETURN_IF_ERROR(require_same_type(inputs, 0, 2));
  STRATA_RETURN_IF_ERROR(check_eps(attrs));
  return Types{x, inputs[1], inputs[1]};
}

// --- fused attention ---

namespace {

// Attention's {layout} checked: false for "bnsd" (the default: [..., S, D]), true for "bsnd"
// ([B, S, N, D]); any other value, or bsnd on an operand not of rank 4, is an Error.
Expected<bool> checked_layout(const Types& inputs, const Attrs& attrs) {
  if (!attrs.has("layout")) return false;
  STRATA_ASSIGN_OR_RETURN(std::string layout, attrs.get_string("layout"));
  if (layout != "bnsd" && layout != "bsnd") return make_error("", "layout", "must be bnsd or bsnd, got '" + layout + "'");
  if (!attention_bsnd(attrs)) return false;
  if (inputs[0].rank() != 4) return input_error(0, "layout bsnd needs [B, S, N, D], got " + shape_string(inputs[0].shape));
  return true;
}

// [B, S, N, D] <-> [B, N, S, D]: the bsnd operands seen in the default layout.
TensorType swap_seq_heads(TensorType t) {
  if (t.rank() == 4) std::swap(t.shape[1], t.shape[2]);
  return t;
}

// (q[..., S, D], k[..., T, D], v[..., T, Dv], bias) of Attention and AttentionGrad in the default
// layout: the out type [..., S, Dv] in q's dtype, or an Error naming the operand at fault.
Expected<TensorType> attention_out(const Types& inputs, const Attrs& attrs) {
  for (size_t i = 0; i < 4; ++i) STRATA_RETURN_IF_ERROR(require_float(inputs, i));
  const TensorType &q = inputs[0], &k = inputs[1], &v = inputs[2], &bias = inputs[3];
  if (q.rank() < 2) return input_error(0, "expected [..., S, D], got " + shape_string(q.shape));
  const size_t r = q.shape.size();
  if (k.shape.size() != r) return input_error(1, "rank differs from inputs[0]'s: " + shape_string(k.shape));
  if (v.shape.size() != r) return input_error(2, "rank differs from inputs[0]'s: " + shape_string(v.shape));
  for (size_t d = 0; d + 2 < r; ++d) {
    if (k.shape[d] != q.shape[d]) return input_error(1, "leading dims differ from inputs[0]'s: " + shape_string(k.shape));
    if (v.shape[d] != q.shape[d]) return input_error(2, "leading dims differ from inputs[0]'s: " + shape_string(v.shape));
  }
  if (k.shape[r - 1] != q.shape[r - 1]) return input_error(1, "head dim differs from inputs[0]'s: " + shape_string(k.shape));
  if (v.shape[r - 2] != k.shape[r - 2]) return input_error(2, "key count differs from inputs[1]'s: " + shape_string(v.shape));
  if (bias.shape.size() > r) return input_error(3, "rank above the scores' " + num(static_cast<int64_t>(r)));
  Shape scores(q.shape.begin(), q.shape.end() - 1);
  scores.push_back(k.shape[r - 2]);
  const size_t offset = r - bias.shape.size();
  for (size_t d = 0; d < bias.shape.size(); ++d) {
    if (bias.shape[d] != 1 && bias.shape[d] != scores[d + offset]) {
      return input_error(3, "does not broadcast into the scores " + shape_string(scores) + ": " + shape_string(bias.shape));
    }
  }
  STRATA_ASSIGN_OR_RETURN(double scale, attrs.get_real("scale"));
  if (!std::isfinite(scale)) return make_error("", "scale", "must be finite");
  Shape out(q.shape.begin(), q.shape.end() - 1);
  out.push_back(v.shape[r - 1]);
  return TensorType{out, q.dtype};
}

}  // namespace

// The inputs in the default layout (q, k, v and, of AttentionGrad, out and dout swapped for bsnd).
Types attention_default_layout(Types inputs, bool bsnd) {
  if (!bsnd) return inputs;
  for (size_t i : {0, 1, 2, 4, 6}) {
    if (i < inputs.size()) inputs[i] = swap_seq_heads(inputs[i]);
  }
  return inputs;
}

Expected<Types> attention(const Types& given, const Attrs& attrs) {
  STRATA_ASSIGN_OR_RETURN(bool bsnd, checked_layout(given, attrs));
  const Types inputs = attention_default_layout(given, bsnd);
  STRATA_ASSIGN_OR_RETURN(TensorType out, attention_out(inputs, attrs));
  const Shape lse(inputs[0].shape.begin(), inputs[0].shape.end() - 1);
  return Types{bsnd ? swap_seq_heads(out) : out, TensorType{lse, DType::f32}};
}

Expected<Types> attention_grad(const Types& given, const Attrs& attrs) {
  STRATA_ASSIGN_OR_RETURN(bool bsnd, checked_layout(given, attrs));
  const Types inputs = attention_default_layout(given, bsnd);
  STRATA_ASSIGN_OR_RETURN(TensorType out, attention_out(inputs, attrs));
  if (inputs[4].shape != out.shape) return input_error(4, "expected Attention's out " + shape_string(out.shape));
  const Shape lse(inputs[0].shape.begin(), inputs[0].shape.end() - 1);
  if (inputs[5].shape != lse || inputs[5].dtype != DType::f32) {
    return input_error(5, "expected Attention's lse, f32 " + shape_string(lse));
  }
  if (inputs[6].shape != out.shape) return input_error(6, "expected the gradient of out " + shape_string(out.shape));
  return Types{given[0], given[1], given[2]};
}

// --- convolution ---

Expected<Types> conv2d(const Types& inputs, const Attrs& attrs) {
  STRATA_RETURN_IF_ERROR(require_float(inputs, 0));
  if (inputs[1].dtype != inputs[0].dtype) return input_error(1, "dtype differs from inputs[0]'s");
  STRATA_ASSIGN_OR_RETURN(Window win, conv_window(attrs));
  STRATA_ASSIGN_OR_RETURN(Shape out, conv_output(inputs[0].shape, inputs[1].shape, win, "inputs[0]", "inputs[1]"));
  return Types{TensorType{out, inputs[0].dtype}};
}

// (w, dy) {input_shape}: dy must be what Conv2d of input_shape with w gives.
Expected<Types> conv2d_grad_input(const Types& inputs, const Attrs& attrs) {
  STRATA_ASSIGN_OR_RETURN(Window win, conv_window(attrs));
  STRATA_ASSIGN_OR_RETURN(Shape x, shape_attr(attrs, "input_shape"));
  STRATA_ASSIGN_OR_RETURN(Shape y, conv_output(x, inputs[0].shape, win, "input_shape", "inputs[0]"));
  STRATA_RETURN_IF_ERROR(require_shape(inputs, 1, y, "the forward output"));
  return Types{TensorType{x, inputs[1].dtype}};
}

// (x, dy) {filter_shape}: dy must be what Conv2d of x with a filter_shape filter gives.
Expected<Types> conv2d_grad_filter(const Types& inputs, const Attrs& attrs) {
  STRATA_ASSIGN_OR_RETURN(Window win, conv_window(attrs));
  STRATA_ASSIGN_OR_RETURN(Shape w, shape_attr(attrs, "filter_shape"));
  STRATA_ASSIGN_OR_RETURN(Shape y, conv_output(inputs[0].shape, w, win, "inputs[0]", "filter_shape"));
  STRATA_RETURN_IF_ERROR(require_shape(inputs, 1, y, "the forward output"));
  return Types{TensorType{w, inputs[1].dtype}};
}

// --- batch norm: x[N, C, ...], statistics per channel (dim 1) ---

Expected<Types> batch_norm(const Types& inputs, const Attrs& attrs) {
  const TensorType& x = inputs[0];
  STRATA_RETURN_IF_ERROR(require_float(inputs, 0));
  if (x.rank() < 2) return input_error(0, "expected [N, C, ...], got " + type_string(x));
  const Shape channels{x.shape[1]};
  STRATA_RETURN_IF_ERROR(require_shape(inputs, 1, channels, "the channels of inputs[0]"));
  STRATA_RETURN_IF_ERROR(require_shape(inputs, 2, channels, "the channels of inputs[0]"));
  STRATA_RETURN_IF_ERROR(check_eps(attrs));
  return Types{x};
}

Expected<Types> batch_norm_grad(const Types& inputs, const Attrs& attrs) {
  const TensorType& x = inputs[0];
  STRATA_RETURN_IF_ERROR(require_float(inputs, 0));
  if (x.rank() < 2) return input_error(0, "expected [N, C, ...], got " + type_string(x));
  STRATA_RETURN_IF_ERROR(require_shape(inputs, 1, Shape{x.shape[1]}, "the channels of inputs[0]"));
  STRATA_RETURN_IF_ERROR(require_same_type(inputs, 0, 2));
  STRATA_RETURN_IF_ERROR(check_eps(attrs));
  return Types{x, inputs[1], inputs[1]};
}

// --- pooling ---

Expected<Types> avg_pool(const Types& inputs, const Attrs& attrs) {
  STRATA_RETURN_IF_ERROR(require_float(inputs, 0));
  STRATA_ASSIGN_OR_RETURN(Pool p, pool_attrs(attrs));
  STRATA_ASSIGN_OR_RETURN(Shape out, pool_output(inputs[0].shape, p, "inputs[0]"));
  return Types{TensorType{out, inputs[0].dtype}};
}

Expected<Types> avg_pool_grad(const Types& inputs, const Attrs& attrs) {
  STRATA_ASSIGN_OR_RETURN(Pool p, pool_attrs(attrs));
  STRATA_ASSIGN_OR_RETURN(Shape x, shape_attr(attrs, "input_shape"));
  STRATA_ASSIGN_OR_RETURN(Shape y, pool_output(x, p, "input_shape"));
  STRATA_RETURN_IF_ERROR(require_shape(inputs, 0, y, "the forward output"));
  return Types{TensorType{x, inputs[0].dtype}};
}

Expected<Types> max_pool(const Types& inputs, const Attrs& attrs) { return avg_pool(inputs, attrs); }

Expected<Types> max_pool_grad(const Types& inputs, const Attrs& attrs) {
  STRATA_RETURN_IF_ERROR(require_float(inputs, 0));
  STRATA_ASSIGN_OR_RETURN(Pool p, pool_attrs(attrs));
  STRATA_ASSIGN_OR_RETURN(Shape y, pool_output(inputs[0].shape, p, "inputs[0]"));
  STRATA_RETURN_IF_ERROR(require_shape(inputs, 1, y, "the forward output"));
  if (inputs[1].dtype != inputs[0].dtype) return input_error(1, "dtype differs from inputs[0]'s");
  return Types{inputs[0]};
}

// --- MoE gating: probs[G, S, E] {k, capacity} -> [G, S, E, capacity] ---

namespace {
Expected<Shape> moe_combine_shape(const Types& inputs, const Attrs& attrs) {
  const TensorType& probs = inputs[0];
  STRATA_RETURN_IF_ERROR(require_float(inputs, 0));
  STRATA_RETURN_IF_ERROR(require_rank(inputs, 0, 3));
  STRATA_ASSIGN_OR_RETURN(int64_t k, attrs.get_int("k"));
  STRATA_ASSIGN_OR_RETURN(int64_t capacity, attrs.get_int("capacity"));
  if (k < 1 || k > probs.shape[2]) {
    return make_error("", "k", "must be in [1, " + num(probs.shape[2]) + "] (the experts), got " + num(k));
  }
  if (capacity < 1) return make_error("", "capacity", "must be at least 1, got " + num(capacity));
  return Shape{probs.shape[0], probs.shape[1], probs.shape[2], capacity};
}
}  // namespace

Expected<Types> moe_gate(const Types& inputs, const Attrs& attrs) {
  STRATA_ASSIGN_OR_RETURN(Shape out, moe_combine_shape(inputs, attrs));
  return Types{TensorType{out, inputs[0].dtype}};
}

Expected<Types> moe_gate_grad(const Types& inputs, const Attrs& attrs) {
  STRATA_ASSIGN_OR_RETURN(Shape combine, moe_combine_shape(inputs, attrs));
  STRATA_RETURN_IF_ERROR(require_shape(inputs, 1, combine, "the combine weights"));
  return Types{inputs[0]};
}

// --- loss: logits[N, V], labels i32[N] ---

Expected<Types> cross_entropy(const Types& inputs, const Attrs& attrs) {
  STRATA_RETURN_IF_ERROR(require_float(inputs, 0));
  STRATA_RETURN_IF_ERROR(require_rank(inputs, 0, 2));
  STRATA_RETURN_IF_ERROR(require_int(inputs, 1));
  STRATA_RETURN_IF_ERROR(require_shape(inputs, 1, Shape{inputs[0].shape[0]}, "one label per row of inputs[0]"));
  if (attrs.has("mean_rows")) {
    STRATA_ASSIGN_OR_RETURN(int64_t mean_rows, attrs.get_int("mean_rows"));
    if (mean_rows < std::max<int64_t>(inputs[0].shape[0], 1)) {
      return make_error("", "mean_rows", std::to_string(mean_rows) + " is fewer than the " +
                                             std::to_string(inputs[0].shape[0]) + " rows of inputs[0]");
    }
  }
  return Types{TensorType{{}, inputs[0].dtype}};
}

Expected<Types> cross_entropy_grad(const Types& inputs, const Attrs& attrs) {
  STRATA_RETURN_IF_ERROR(cross_entropy(Types{inputs[0], inputs[1]}, attrs));
  STRATA_RETURN_IF_ERROR(require_rank(inputs, 2, 0));
  return Types{inputs[0]};
}

// --- optimizers ---

Expected<Types> sgd_update(const Types& inputs, const Attrs& attrs) {
  STRATA_RETURN_IF_ERROR(require_float(inputs, 0));
  STRATA_RETURN_IF_ERROR(require_shape(inputs, 1, inputs[0].shape, "the parameter's"));
  STRATA_RETURN_IF_ERROR(attrs.get_real("lr"));
  return Types{inputs[0]};
}

Expected<Types> adam_update(const Types& inputs, const Attrs& attrs) {
  STRATA_RETURN_IF_ERROR(require_float(inputs, 0));
  for (size_t i = 1; i < 4; ++i) {
    STRATA_RETURN_IF_ERROR(require_shape(inputs, i, inputs[0].shape, "the parameter's"));
    STRATA_RETURN_IF_ERROR(require_float(inputs, i));
  }
  STRATA_RETURN_IF_ERROR(attrs.get_real("lr"));
  for (const char* key : {"beta1", "beta2"}) {
    STRATA_ASSIGN_OR_RETURN(double beta, optional_real(attrs, key, 0.9));
    if (beta < 0 || beta >= 1) return make_error("", key, "must be in [0, 1)");
  }
  STRATA_RETURN_IF_ERROR(optional_real(attrs, "eps", 1e-8));
  STRATA_RETURN_IF_ERROR(optional_real(attrs, "weight_decay", 0.0));
  STRATA_ASSIGN_OR_RETURN(int64_t step, optional_int(attrs, "step", 1));
  if (step < 1) return make_error("", "step", "is 1-based, got " + num(step));
  return Types{inputs[0], inputs[2], inputs[3]};
}

}  // namespace strata::ir::rules
