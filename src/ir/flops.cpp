// FLOP rules, one per op family (multiply-add = 2). The constants for transcendental-heavy ops
// are rough per-element operation counts, written down here once:
//   Gelu 8/elem (tanh approx: cube, 3 mul, add, tanh, add, mul), GeluGrad 12/elem,
//   Softmax 5/elem (max, sub, exp, sum, div), SoftmaxGrad 4/elem (mul, sum, sub, mul),
//   LayerNorm/BatchNorm 8/elem (mean, var, normalise, scale, shift), their grads 12/elem,
//   CrossEntropy (and its grad) 5 per logit, Adam 12/elem, SGD 2/elem, other elementwise 1/elem.
#include <algorithm>

#include "ir/rules.h"

namespace strata::ir::rules {
namespace {

double numel(const TensorType& t) { return static_cast<double>(t.numel()); }

double product(const Shape& shape, const std::vector<int64_t>& dims) {
  double p = 1;
  for (int64_t d : dims) p *= static_cast<double>(shape[d]);
  return p;
}

std::vector<int64_t> ints(const Attrs& attrs, const std::string& key) {
  if (!attrs.has(key)) return {};
  auto values = attrs.get_ints(key);
  STRATA_CHECK(values.is_ok(), values.status().message());
  return *values;
}

// 2 * N * K * H' * W' * C * R * S for x[N,C,H,W], w[K,C,R,S], y[N,K,H',W'].
double conv_flops(const Shape& w, const Shape& y) {
  STRATA_CHECK(w.size() == 4 && y.size() == 4, "conv shapes must have rank 4");
  return 2.0 * static_cast<double>(y[0]) * static_cast<double>(y[1]) * static_cast<double>(y[2]) *
         static_cast<double>(y[3]) * static_cast<double>(w[1]) * static_cast<double>(w[2]) *
         static_cast<double>(w[3]);
}

}  // namespace

double zero_flops(const Types&, const Types&, const Attrs&) { return 0; }
double output_numel(const Types&, const Types& out, const Attrs&) { return numel(out[0]); }
double input_numel(const Types& in, const Types&, const Attrs&) { return numel(in[0]); }
double gelu_flops(const Types&, const Types& out, const Attrs&) { return 8 * numel(out[0]); }
double gelu_grad_flops(const Types&, const Types& out, const Attrs&) { return 12 * numel(out[0]); }

// 2 * prod(batch) * prod(lhs free) * prod(rhs free) * prod(contract) = 2 * numel(out) * prod(contract).
double dot_flops(const Types& in, const Types& out, const Attrs& attrs) {
  return 2.0 * numel(out[0]) * product(in[0].shape, ints(attrs, "lhs_contract"));
}

double softmax_flops(const Types&, const Types& out, const Attrs&) { return 5 * numel(out[0]); }
double softmax_grad_flops(const Types&, const Types& out, const Attrs&) { return 4 * numel(out[0]); }
double layer_norm_flops(const Types&, const Types& out, const Attrs&) { return 8 * numel(out[0]); }
double layer_norm_grad_flops(const Types& in, const Types&, const Attrs&) { return 12 * numel(in[0]); }

// Attention: its two GEMMs (2 S T D for the scores, 2 S T Dv for out, per leading index) and the
// softmax (5 per score). AttentionGrad: five GEMMs (the recomputed scores 2 S T D, dP and dv
// 2 S T Dv each, dq and dk 2 S T D each) and 9 per score (the recomputed softmax, then dS).
// The key count T of k: [..., T, D], or [B, T, N, D] in the bsnd layout.
double attention_keys(const Types& in, const Attrs& attrs) {
  const Shape& k = in[1].shape;
  return static_cast<double>(attention_bsnd(attrs) ? k[1] : k[k.size() - 2]);
}
double attention_flops(const Types& in, const Types&, const Attrs& attrs) {
  const Shape& q = in[0].shape;
  const double t = attention_keys(in, attrs);
  const double dv = static_cast<double>(in[2].shape.back());
  const double rows = numel(in[0]) / static_cast<double>(q.back());  // batch * S
  return rows * t * (2.0 * static_cast<double>(q.back()) + 2.0 * dv + 5.0);
}
double attention_grad_flops(const Types& in, const Types&, const Attrs& attrs) {
  const Shape& q = in[0].shape;
  const double t = attention_keys(in, attrs);
  const double dv = static_cast<double>(in[2].shape.back());
  const double rows = numel(in[0]) / static_cast<double>(q.back());
  return rows * t * (6.0 * static_cast<double>(q.back()) + 4.0 * dv + 9.0);
}

double conv2d_flops(const Types& in, const Types& out, const Attrs&) { return conv_flops(in[1].shape, out[0].shape); }
// (w, dy): the same multiply-adds as the forward convolution.
double conv2d_grad_input_flops(const Types& in, const Types&, const Attrs&) {
  return conv_flops(in[0].shape, in[1].shape);
}
// (x, dy) -> dw: the same multiply-adds as the forward convolution.
double conv2d_grad_filter_flops(const Types& in, const Types& out, const Attrs&) {
  return conv_flops(out[0].shape, in[1].shape);
}

double batch_norm_flops(const Types&, const Types& out, const Attrs&) { return 8 * numel(out[0]); }
double batch_norm_grad_flops(const Types& in, const Types&, const Attrs&) { return 12 * numel(in[0]); }

// window^2 reads per pooled output element (forward) or per incoming gradient element (backward).
double pool_flops(const Types&, const Types& out, const Attrs& attrs) {
  const double window = static_cast<double>(attrs.int_or("window", 1));
  return window * window * numel(out[0]);
}
double pool_grad_flops(const Types& in, const Types&, const Attrs& attrs) {
  const double window = static_cast<double>(attrs.int_or("window", 1));
  return window * window * numel(in.back());
}

double cross_entropy_flops(const Types& in, const Types&, const Attrs&) { return 5 * numel(in[0]); }
double adam_flops(const Types& in, const Types&, const Attrs&) { return 12 * numel(in[0]); }
double sgd_flops(const Types& in, const Types&, const Attrs&) { return 2 * numel(in[0]); }
// One add per scattered element of dy.
double gather_grad_flops(const Types& in, const Types&, const Attrs&) { return numel(in[1]); }

}  // namespace strata::ir::rules
