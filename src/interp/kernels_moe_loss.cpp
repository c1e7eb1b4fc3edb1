// MoE top-k gating (+grad) and the softmax cross-entropy loss (+grad).
#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "kernels.h"

namespace strata::interp::kernels {
namespace {

using ir::OpKind;

// Routing of probs[G, S, E] with top-{k} and {capacity} slots per expert and group: slot[(g*S+s)*E+e]
// is the capacity slot token s got at expert e, or -1. Tokens arrive in order s = 0, 1, ...; each
// tries its k experts from the most probable down (ties: lower expert index) and takes the next
// free slot of an expert that still has room (a full expert drops that choice).
std::vector<int64_t> route(const Tensor& probs, int64_t k, int64_t capacity) {
  const int64_t groups = probs.shape[0], tokens = probs.shape[1], experts = probs.shape[2];
  std::vector<int64_t> slot(static_cast<size_t>(probs.numel()), -1);
  std::vector<int64_t> order(static_cast<size_t>(experts));
  for (int64_t g = 0; g < groups; ++g) {
    std::vector<int64_t> used(static_cast<size_t>(experts), 0);
    for (int64_t s = 0; s < tokens; ++s) {
      const int64_t base = (g * tokens + s) * experts;
      std::iota(order.begin(), order.end(), 0);
      std::stable_sort(order.begin(), order.end(), [&](int64_t x, int64_t y) { return probs[base + x] > probs[base + y]; });
      for (int64_t j = 0; j < k; ++j) {
        const int64_t e = order[j];
        if (used[e] < capacity) slot[base + e] = used[e]++;
      }
    }
  }
  return slot;
}

Status moe_gate(const Args& a) {
  const Tensor& probs = a.in(0);
  const int64_t capacity = attr_int(a.op, "capacity", 1);
  const std::vector<int64_t> slot = route(probs, attr_int(a.op, "k", 1), capacity);
  for (int64_t i = 0; i < probs.numel(); ++i) {
    if (slot[i] >= 0) a.out()[i * capacity + slot[i]] = probs[i];
  }
  return Status::ok();
}

// The routing is piecewise constant in probs, so dprobs[g,s,e] = dcombine[g,s,e,slot] (0 if dropped).
Status moe_gate_grad(const Args& a) {
  const Tensor& probs = a.in(0);
  const Tensor& dcombine = a.in(1);
  const int64_t capacity = attr_int(a.op, "capacity", 1);
  const std::vector<int64_t> slot = route(probs, attr_int(a.op, "k", 1), capacity);
  for (int64_t i = 0; i < probs.numel(); ++i) a.out()[i] = slot[i] >= 0 ? dcombine[i * capacity + slot[i]] : 0.0;
  return Status::ok();
}

// Row-wise softmax of logits[N, V] into `p`; checks the labels.
Status softmax_rows(const Tensor& logits, const Tensor& labels, std::vector<double>& p) {
  const int64_t rows = logits.shape[0], vocab = logits.shape[1];
  p.assign(logits.data.begin(), logits.data.end());
  for (int64_t n = 0; n < rows; ++n) {
    const auto label = static_cast<int64_t>(labels[n]);
    if (label < 0 || label >= vocab) {
      return make_error("", "inputs[1]", "label " + std::to_string(label) + " outside [0, " + std::to_string(vocab) + ")");
    }
    double top = -std::numeric_limits<double>::infinity(), sum = 0.0;
    for (int64_t v = 0; v < vocab; ++v) top = std::max(top, p[n * vocab + v]);
    for (int64_t v = 0; v < vocab; ++v) sum += p[n * vocab + v] = std::exp(p[n * vocab + v] - top);
    for (int64_t v = 0; v < vocab; ++v) p[n * vocab + v] /= sum;
  }
  return Status::ok();
}

Status cross_entropy(const Args& a) {
  const Tensor& logits = a.in(0);
  const int64_t rows = logits.shape[0], vocab = logits.shape[1];
  std::vector<double> p;
  STRATA_RETURN_IF_ERROR(softmax_rows(logits, a.in(1), p));
  double loss = 0.0;
  for (int64_t n = 0; n < rows; ++n) loss -= std::log(p[n * vocab + static_cast<int64_t>(a.in(1)[n])]);
  const int64_t mean_rows = a.op.attrs.int_or("mean_rows", rows);
  a.out()[0] = mean_rows > 0 ? loss / static_cast<double>(mean_rows) : 0.0;
  return Status::ok();
}

// dlogits = (softmax - onehot(label)) * dloss / N ({mean_rows} when set).
Status cross_entropy_grad(const Args& a) {
  const Tensor& logits = a.in(0);
  const int64_t rows = logits.shape[0], vocab = logits.shape[1];
  std::vector<double> p;
  STRATA_RETURN_IF_ERROR(softmax_rows(logits, a.in(1), p));
  const double scale = a.in(2)[0] / static_cast<double>(std::max<int64_t>(a.op.attrs.int_or("mean_rows", rows), 1));
  for (int64_t n = 0; n < rows; ++n) {
    for (int64_t v = 0; v < vocab; ++v) {
      const double onehot = v == static_cast<int64_t>(a.in(1)[n]) ? 1.0 : 0.0;
      a.out()[n * vocab + v] = (p[n * vocab + v] - onehot) * scale;
    }
  }
  return Status::ok();
}

}  // namespace

std::vector<Entry> moe_loss_kernels() {
  return {
      {OpKind::MoEGate, moe_gate},
      {OpKind::MoEGateGrad, moe_gate_grad},
      {OpKind::CrossEntropy, cross_entropy},
      {OpKind::CrossEntropyGrad, cross_entropy_grad},
  };
}

}  // namespace strata::interp::kernels
