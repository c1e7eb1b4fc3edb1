// Neural-network kernels: Gather (+grad), Softmax (+grad), LayerNorm and BatchNorm (+grads, biased
// batch variance), Conv2d (+input/filter grads), average and max pooling (+grads), fused attention
// (+grad).
#include <cmath>
#include <limits>

#include "kernels.h"

namespace strata::interp::kernels {
namespace {

using ir::OpKind;

Status gather(const Args& a) {
  const Tensor& table = a.in(0);
  const Tensor& ids = a.in(1);
  const int64_t vocab = table.shape[0];
  const int64_t row = table.numel() / std::max<int64_t>(vocab, 1);
  for (int64_t i = 0; i < ids.numel(); ++i) {
    const auto id = static_cast<int64_t>(ids[i]);
    if (id < 0 || id >= vocab) {
      return make_error("", "inputs[1]", "id " + std::to_string(id) + " outside [0, " + std::to_string(vocab) + ")");
    }
    for (int64_t j = 0; j < row; ++j) a.out()[i * row + j] = table[id * row + j];
  }
  return Status::ok();
}

Status gather_grad(const Args& a) {
  const Tensor& ids = a.in(0);
  const Tensor& dy = a.in(1);
  Tensor& dtable = a.out();
  const int64_t vocab = dtable.shape[0];
  const int64_t row = dtable.numel() / std::max<int64_t>(vocab, 1);
  for (int64_t i = 0; i < ids.numel(); ++i) {
    const auto id = static_cast<int64_t>(ids[i]);
    if (id < 0 || id >= vocab) {
      return make_error("", "inputs[0]", "id " + std::to_string(id) + " outside [0, " + std::to_string(vocab) + ")");
    }
    for (int64_t j = 0; j < row; ++j) dtable[id * row + j] += dy[i * row + j];
  }
  return Status::ok();
}

// A tensor seen as [outer, n, inner] around one axis.
struct AxisView {
  int64_t outer = 1, n = 1, inner = 1;
  AxisView(const ir::Shape& shape, int64_t axis) {
    for (int64_t d = 0; d < static_cast<int64_t>(shape.size()); ++d) {
      if (d < axis) outer *= shape[d];
      if (d == axis) n = shape[d];
      if (d > axis) inner *= shape[d];
    }
  }
  int64_t at(int64_t o, int64_t j, int64_t i) const { return (o * n + j) * inner + i; }
};

Status softmax(const Args& a) {
  const Tensor& x = a.in(0);
  const AxisView v(x.shape, norm_axis(attr_int(a.op, "axis", -1), x.rank()));
  for (int64_t o = 0; o < v.outer; ++o) {
    for (int64_t i = 0; i < v.inner; ++i) {
      double top = -std::numeric_limits<double>::infinity();
      for (int64_t j = 0; j < v.n; ++j) top = std::max(top, x[v.at(o, j, i)]);
      double sum = 0.0;
      for (int64_t j = 0; j < v.n; ++j) sum += a.out()[v.at(o, j, i)] = std::exp(x[v.at(o, j, i)] - top);
      for (int64_t j = 0; j < v.n; ++j) a.out()[v.at(o, j, i)] /= sum;
    }
  }
  return Status::ok();
}

Status softmax_grad(const Args& a) {
  const Tensor& y = a.in(0);
  const Tensor& dy = a.in(1);
  const AxisView v(y.shape, norm_axis(attr_int(a.op, "axis", -1), y.rank()));
  for (int64_t o = 0; o < v.outer; ++o) {
    for (int64_t i = 0; i < v.inner; ++i) {
      double dot = 0.0;
      for (int64_t j = 0; j < v.n; ++j) dot += dy[v.at(o, j, i)] * y[v.at(o, j, i)];
      for (int64_t j = 0; j < v.n; ++j) a.out()[v.at(o, j, i)] = y[v.at(o, j, i)] * (dy[v.at(o, j, i)] - dot);
    }
  }
  return Status::ok();
}

// Normalisation over groups of elements: LayerNorm groups a row (last dim, affine per column),
// BatchNorm groups a channel (all of N and the spatial dims, affine per channel). `group(i)` is
// element i's group, `feature(i)` its gamma/beta index.
struct NormLayout {
  int64_t groups;
  std::vector<int64_t> group_of, feature_of;
};

NormLayout layer_norm_layout(const ir::Shape& shape) {
  const int64_t h = shape.back();
  const int64_t n = shape_numel(shape);
  NormLayout l{n / std::max<int64_t>(h, 1), {}, {}};
  for (int64_t i = 0; i < n; ++i) {
    l.group_of.push_back(i / h);
    l.feature_of.push_back(i % h);
  }
  return l;
}

NormLayout batch_norm_layout(const ir::Shape& shape) {
  const int64_t c = shape[1];
  const int64_t spatial = shape_numel(shape) / std::max<int64_t>(shape[0] * c, 1);
  const int64_t n = shape_numel(shape);
  NormLayout l{c, {}, {}};
  for (int64_t i = 0; i < n; ++i) {
    const int64_t channel = (i / spatial) % c;
    l.group_of.push_back(channel);
    l.feature_of.push_back(channel);
  }
  return l;
}

// Per-group mean and reciprocal standard deviation (biased variance).
void group_stats(const Tensor& x, const NormLayout& l, double eps, std::vector<double>& mean,
                 std::vector<double>& rstd) {
  std::vector<double> count(l.groups, 0.0), var(l.groups, 0.0);
  mean.assign(l.groups, 0.0);
  for (int64_t i = 0; i < x.numel(); ++i) {
    mean[l.group_of[i]] += x[i];
    count[l.group_of[i]] += 1;
  }
  for (int64_t g = 0; g < l.groups; ++g) mean[g] /= count[g];
  for (int64_t i = 0; i < x.numel(); ++i) {
    const double d = x[i] - mean[l.group_of[i]];
    var[l.group_of[i]] += d * d;
  }
  rstd.resize(l.groups);
  for (int64_t g = 0; g < l.groups; ++g) rstd[g] = 1.0 / std::sqrt(var[g] / count[g] + eps);
}

Status norm_forward(const Args& a, const NormLayout& l) {
  const Tensor& x = a.in(0);
  std::vector<double> mean, rstd;
  group_stats(x, l, attr_real(a.op, "eps", 1e-5), mean, rstd);
  for (int64_t i = 0; i < x.numel(); ++i) {
    const int64_t g = l.group_of[i], f = l.feature_of[i];
    a.out()[i] = (x[i] - mean[g]) * rstd[g] * a.in(1)[f] + a.in(2)[f];
  }
  return Status::ok();
}

// dx = rstd * (g - mean(g) - xhat * mean(g * xhat)) with g = dy * gamma, per group.
Status norm_backward(const Args& a, const NormLayout& l) {
  const Tensor& x = a.in(0);
  const Tensor& gamma = a.in(1);
  const Tensor& dy = a.in(2);
  std::vector<double> mean, rstd;
  group_stats(x, l, attr_real(a.op, "eps", 1e-5), mean, rstd);
  std::vector<double> count(l.groups, 0.0), mean_g(l.groups, 0.0), mean_gx(l.groups, 0.0);
  for (int64_t i = 0; i < x.numel(); ++i) {
    const int64_t g = l.group_of[i], f = l.feature_of[i];
    const double xhat = (x[i] - mean[g]) * rstd[g];
    const double gi = dy[i] * gamma[f];
    count[g] += 1;
    mean_g[g] += gi;
    mean_gx[g] += gi * xhat;
    a.out(1)[f] += dy[i] * xhat;
    a.out(2)[f] += dy[i];
  }
  for (int64_t i = 0; i < x.numel(); ++i) {
    const int64_t g = l.group_of[i], f = l.feature_of[i];
    const double xhat = (x[i] - mean[g]) * rstd[g];
    a.out(0)[i] = rstd[g] * (dy[i] * gamma[f] - mean_g[g] / count[g] - xhat * mean_gx[g] / count[g]);
  }
  return Status::ok();
}

// Visits every (output position, window tap) of a 2-D window over x[N, C, H, W] -> y[N, K, P, Q]:
// f(y_index_base(n, oh, ow), ih, iw, r, s); taps that fall into the padding are skipped.
struct Window2d {
  int64_t stride, padding;
  template <typename F>
  void for_each(int64_t h, int64_t w, int64_t p, int64_t q, int64_t r_size, int64_t s_size, F f) const {
    for (int64_t oh = 0; oh < p; ++oh) {
      for (int64_t ow = 0; ow < q; ++ow) {
        for (int64_t r = 0; r < r_size; ++r) {
          for (int64_t s = 0; s < s_size; ++s) {
            const int64_t ih = oh * stride - padding + r, iw = ow * stride - padding + s;
            if (ih >= 0 && ih < h && iw >= 0 && iw < w) f(oh, ow, ih, iw, r, s);
          }
        }
      }
    }
  }
};

Window2d conv_window(const ir::Op& op) { return {attr_int(op, "stride", 1), attr_int(op, "padding", 0)}; }

// The three conv kernels share one loop nest; `mode` picks which tensor is written.
enum class ConvMode { forward, grad_input, grad_filter };

Status conv(const Args& a, ConvMode mode) {
  const ir::Shape& xs = mode == ConvMode::forward ? a.in(0).shape
                        : mode == ConvMode::grad_filter ? a.in(0).shape
                                                        : a.out().shape;
  const ir::Shape& ws = mode == ConvMode::grad_filter ? a.out().shape : a.in(mode == ConvMode::forward ? 1 : 0).shape;
  const ir::Shape& ys = mode == ConvMode::forward ? a.out().shape : a.in(1).shape;
  const int64_t n_size = xs[0], c_size = xs[1], h = xs[2], w = xs[3];
  const int64_t k_size = ws[0], r_size = ws[2], s_size = ws[3], p = ys[2], q = ys[3];
  const Window2d win = conv_window(a.op);
  auto xi = [&](int64_t n, int64_t c, int64_t ih, int64_t iw) { return ((n * c_size + c) * h + ih) * w + iw; };
  auto wi = [&](int64_t k, int64_t c, int64_t r, int64_t s) { return ((k * c_size + c) * r_size + r) * s_size + s; };
  auto yi = [&](int64_t n, int64_t k, int64_t oh, int64_t ow) { return ((n * k_size + k) * p + oh) * q + ow; };
  for (int64_t n = 0; n < n_size; ++n) {
    for (int64_t k = 0; k < k_size; ++k) {
      for (int64_t c = 0; c < c_size; ++c) {
        win.for_each(h, w, p, q, r_size, s_size, [&](int64_t oh, int64_t ow, int64_t ih, int64_t iw, int64_t r, int64_t s) {
          switch (mode) {
            case ConvMode::forward:
              a.out()[yi(n, k, oh, ow)] += a.in(0)[xi(n, c, ih, iw)] * a.in(1)[wi(k, c, r, s)];
              break;
            case ConvMode::grad_input:
              a.out()[xi(n, c, ih, iw)] += a.in(1)[yi(n, k, oh, ow)] * a.in(0)[wi(k, c, r, s)];
              break;
            case ConvMode::grad_filter:
              a.out()[wi(k, c, r, s)] += a.in(1)[yi(n, k, oh, ow)] * a.in(0)[xi(n, c, ih, iw)];
              break;
          }
        });
      }
    }
  }
  return Status::ok();
}

// Pools: square {window}, {stride} (default window), {padding}. AvgPool divides by the full
// window area (padding counts as zeros), which keeps it linear; MaxPool ignores padding and sends
// the gradient to the first maximum in row-major window order.
Window2d pool_window(const ir::Op& op) {
  const int64_t window = attr_int(op, "window", 1);
  return {attr_int(op, "stride", window), attr_int(op, "padding", 0)};
}

enum class PoolMode { avg, avg_grad, max, max_grad };

Status pool(const Args& a, PoolMode mode) {
  const ir::Shape& xs = mode == PoolMode::avg_grad ? a.out().shape : a.in(0).shape;
  const ir::Shape& ys = mode == PoolMode::avg || mode == PoolMode::max ? a.out().shape
                        : mode == PoolMode::avg_grad                   ? a.in(0).shape
                                                                        : a.in(1).shape;
  const int64_t window = attr_int(a.op, "window", 1);
  const Window2d win = pool_window(a.op);
  const int64_t planes = xs[0] * xs[1], h = xs[2], w = xs[3], p = ys[2], q = ys[3];
  const double area = static_cast<double>(window * window);
  for (int64_t plane = 0; plane < planes; ++plane) {
    const int64_t xb = plane * h * w, yb = plane * p * q;
    std::vector<double> best(static_cast<size_t>(p * q), -std::numeric_limits<double>::infinity());
    std::vector<int64_t> arg(static_cast<size_t>(p * q), -1);
    win.for_each(h, w, p, q, window, window, [&](int64_t oh, int64_t ow, int64_t ih, int64_t iw, int64_t, int64_t) {
      const int64_t yo = oh * q + ow, xo = ih * w + iw;
      switch (mode) {
        case PoolMode::avg: a.out()[yb + yo] += a.in(0)[xb + xo] / area; break;
        case PoolMode::avg_grad: a.out()[xb + xo] += a.in(0)[yb + yo] / area; break;
        case PoolMode::max:
        case PoolMode::max_grad:
          if (a.in(0)[xb + xo] > best[yo]) {
            best[yo] = a.in(0)[xb + xo];
            arg[yo] = xo;
          }
          break;
      }
    });
    for (int64_t yo = 0; yo < p * q; ++yo) {
      if (mode == PoolMode::max) a.out()[yb + yo] = best[yo];
      if (mode == PoolMode::max_grad && arg[yo] >= 0) a.out()[xb + arg[yo]] += a.in(1)[yb + yo];
    }
  }
  return Status::ok();
}

// Fused attention, the plain way: per leading index and query row, the logits over every key,
// their logsumexp, then out (forward) or dq, dk, dv (backward, with P recomputed from lse).
struct AttentionShape {
  int64_t batch = 1, s = 0, t = 0, d = 0, dv = 0;
  int64_t heads = 0;  // layout bsnd: N of q[B, S, N, D]; 0 for the default [..., S, D]
  std::vector<int64_t> bias_stride;  // per scores dim [lead..., S, T]; 0 where the bias broadcasts
  ir::Shape lead;
  explicit AttentionShape(const Args& a) {
    const ir::Shape& q = a.in(0).shape;
    const size_t r = q.size();
    if (ir::attention_bsnd(a.op.attrs)) heads = q[2];
    s = q[heads ? 1 : r - 2];
    d = q[r - 1];
    t = a.in(1).shape[heads ? 1 : r - 2];
    dv = a.in(2).shape[r - 1];
    lead.assign(q.begin(), q.end() - 2);
    if (heads) lead = {q[0], q[2]};
    for (int64_t x : lead) batch *= x;
    const ir::Shape& b = a.in(3).shape;
    const std::vector<int64_t> strides = row_major_strides(b);
    bias_stride.assign(r, 0);
    for (size_t i = 0; i < b.size(); ++i) {
      if (b[i] != 1) bias_stride[i + r - b.size()] = strides[i];
    }
  }
  // The offset of row `row` (of `rows`: S or T) of leading index b in a q/k/v/out-like tensor of
  // row width `width`.
  int64_t row_at(int64_t b, int64_t rows, int64_t row, int64_t width) const {
    if (heads == 0) return (b * rows + row) * width;
    return ((b / heads * rows + row) * heads + b % heads) * width;
  }
  int64_t bias_base(int64_t index) const {  // the offset of (index's lead dims, 0, 0)
    int64_t offset = 0;
    for (size_t i = lead.size(); i-- > 0;) {
      offset += (index % lead[i]) * bias_stride[i];
      index /= lead[i];
    }
    return offset;
  }
};

// The logits of row `row` of leading index `b`, and their logsumexp (-inf when all are -inf).
double attention_logits(const Args& a, const AttentionShape& n, int64_t b, int64_t row, double scale,
                        std::vector<double>& logits) {
  const Tensor &q = a.in(0), &k = a.in(1), &bias = a.in(3);
  const size_t r = n.bias_stride.size();
  const int64_t base = n.bias_base(b) + row * n.bias_stride[r - 2];
  double max = -std::numeric_limits<double>::infinity();
  for (int64_t j = 0; j < n.t; ++j) {
    double dot = 0.0;
    for (int64_t x = 0; x < n.d; ++x) dot += q[n.row_at(b, n.s, row, n.d) + x] * k[n.row_at(b, n.t, j, n.d) + x];
    const double b_j = bias[base + j * n.bias_stride[r - 1]];
    logits[j] = b_j <= ir::kAttentionMaskedBias ? -std::numeric_limits<double>::infinity() : scale * dot + b_j;
    max = std::max(max, logits[j]);
  }
  if (max == -std::numeric_limits<double>::infinity()) return max;
  double sum = 0.0;
  for (int64_t j = 0; j < n.t; ++j) sum += std::exp(logits[j] - max);
  return max + std::log(sum);
}

Status attention(const Args& a) {
  const AttentionShape n(a);
  const double scale = attr_real(a.op, "scale", 1.0);
  const Tensor& v = a.in(2);
  std::vector<double> logits(static_cast<size_t>(n.t));
  for (int64_t b = 0; b < n.batch; ++b) {
    for (int64_t row = 0; row < n.s; ++row) {
      const double lse = attention_logits(a, n, b, row, scale, logits);
      a.out(1)[b * n.s + row] = lse;
      if (lse == -std::numeric_limits<double>::infinity()) continue;  // out stays 0
      for (int64_t j = 0; j < n.t; ++j) {
        const double p = std::exp(logits[j] - lse);
        for (int64_t x = 0; x < n.dv; ++x) a.out(0)[n.row_at(b, n.s, row, n.dv) + x] += p * v[n.row_at(b, n.t, j, n.dv) + x];
      }
    }
  }
  return Status::ok();
}

// dP = dout . v^T, dS = P * (dP - rowsum(P * dP)), dq = scale dS . k, dk = scale dS^T . q, dv = P^T . dout.
// The inputs out and lse are not read: the reference recomputes both.
Status attention_grad(const Args& a) {
  const AttentionShape n(a);
  const double scale = attr_real(a.op, "scale", 1.0);
  const Tensor &q = a.in(0), &k = a.in(1), &v = a.in(2), &dout = a.in(6);
  std::vector<double> logits(static_cast<size_t>(n.t)), p(logits.size()), dp(logits.size());
  for (int64_t b = 0; b < n.batch; ++b) {
    for (int64_t row = 0; row < n.s; ++row) {
      const double lse = attention_logits(a, n, b, row, scale, logits);
      if (lse == -std::numeric_limits<double>::infinity()) continue;
      const int64_t qo = n.row_at(b, n.s, row, n.d), oo = n.row_at(b, n.s, row, n.dv);
      double dsum = 0.0;
      for (int64_t j = 0; j < n.t; ++j) {
        p[j] = std::exp(logits[j] - lse);
        dp[j] = 0.0;
        for (int64_t x = 0; x < n.dv; ++x) dp[j] += dout[oo + x] * v[n.row_at(b, n.t, j, n.dv) + x];
        dsum += p[j] * dp[j];
      }
      for (int64_t j = 0; j < n.t; ++j) {
        const double ds = scale * p[j] * (dp[j] - dsum);
        const int64_t ko = n.row_at(b, n.t, j, n.d), vo = n.row_at(b, n.t, j, n.dv);
        for (int64_t x = 0; x < n.d; ++x) {
          a.out(0)[qo + x] += ds * k[ko + x];
          a.out(1)[ko + x] += ds * q[qo + x];
        }
        for (int64_t x = 0; x < n.dv; ++x) a.out(2)[vo + x] += p[j] * dout[oo + x];
      }
    }
  }
  return Status::ok();
}

}  // namespace

std::vector<Entry> nn_kernels() {
  return {
      {OpKind::Gather, gather},
      {OpKind::GatherGrad, gather_grad},
      {OpKind::Softmax, softmax},
      {OpKind::SoftmaxGrad, softmax_grad},
      {OpKind::LayerNorm, [](const Args& a) { return norm_forward(a, layer_norm_layout(a.in(0).shape)); }},
      {OpKind::LayerNormGrad, [](const Args& a) { return norm_backward(a, layer_norm_layout(a.in(0).shape)); }},
      {OpKind::BatchNorm, [](const Args& a) { return norm_forward(a, batch_norm_layout(a.in(0).shape)); }},
      {OpKind::BatchNormGrad, [](const Args& a) { return norm_backward(a, batch_norm_layout(a.in(0).shape)); }},
      {OpKind::Conv2d, [](const Args& a) { return conv(a, ConvMode::forward); }},
      {OpKind::Conv2dGradInput, [](const Args& a) { return conv(a, ConvMode::grad_input); }},
      {OpKind::Conv2dGradFilter, [](const Args& a) { return conv(a, ConvMode::grad_filter); }},
      {OpKind::AvgPool2d, [](const Args& a) { return pool(a, PoolMode::avg); }},
      {OpKind::AvgPool2dGrad, [](const Args& a) { return pool(a, PoolMode::avg_grad); }},
      {OpKind::MaxPool2d, [](const Args& a) { return pool(a, PoolMode::max); }},
      {OpKind::MaxPool2dGrad, [](const Args& a) { return pool(a, PoolMode::max_grad); }},
      {OpKind::Attention, attention},
      {OpKind::AttentionGrad, attention_grad},
  };
}

}  // namespace strata::interp::kernels
