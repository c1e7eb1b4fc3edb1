// Optimizer-update kernels: plain SGD and Adam with decoupled weight decay (AdamW) and bias
// correction from the 1-based {step}.
#include <cmath>

#include "kernels.h"

namespace strata::interp::kernels {
namespace {

using ir::OpKind;

Status sgd_update(const Args& a) {
  const double lr = attr_real(a.op, "lr", 0.0);
  for (int64_t i = 0; i < a.in(0).numel(); ++i) a.out()[i] = a.in(0)[i] - lr * a.in(1)[i];
  return Status::ok();
}

// m' = b1 m + (1-b1) g;  v' = b2 v + (1-b2) g^2;
// p' = p - lr * (m'/(1-b1^t) / (sqrt(v'/(1-b2^t)) + eps) + weight_decay * p).
Status adam_update(const Args& a) {
  const double lr = attr_real(a.op, "lr", 0.0), b1 = attr_real(a.op, "beta1", 0.9);
  const double b2 = attr_real(a.op, "beta2", 0.999), eps = attr_real(a.op, "eps", 1e-8);
  const double decay = attr_real(a.op, "weight_decay", 0.0);
  const auto step = static_cast<double>(attr_int(a.op, "step", 1));
  const double c1 = 1.0 - std::pow(b1, step), c2 = 1.0 - std::pow(b2, step);
  for (int64_t i = 0; i < a.in(0).numel(); ++i) {
    const double p = a.in(0)[i], g = a.in(1)[i];
    const double m = b1 * a.in(2)[i] + (1.0 - b1) * g;
    const double v = b2 * a.in(3)[i] + (1.0 - b2) * g * g;
    a.out(0)[i] = p - lr * ((m / c1) / (std::sqrt(v / c2) + eps) + decay * p);
    a.out(1)[i] = m;
    a.out(2)[i] = v;
  }
  return Status::ok();
}

}  // namespace

std::vector<Entry> optimizer_kernels() {
  return {{OpKind::SgdUpdate, sgd_update}, {OpKind::AdamUpdate, adam_update}};
}

}  // namespace strata::interp::kernels
