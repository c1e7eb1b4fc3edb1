// Finite-difference gradient checks: runs build_gradient_graph's graph on the fp64 interpreter and
// compares every parameter gradient element with a central difference of the forward loss.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <map>
#include <string>

#include "strata/autodiff/autodiff.h"
#include "strata/interp/interp.h"

namespace strata::testing {

// Deterministic values in +-[low, high] (or [low, high] when `positive`).
class Filler {
 public:
  explicit Filler(uint64_t seed) : state_(seed) {}
  double next(double low, double high, bool positive) {
    state_ = state_ * 6364136223846793005ULL + 1442695040888963407ULL;
    const double u = static_cast<double>(state_ >> 11) / 9007199254740992.0;
    state_ = state_ * 6364136223846793005ULL + 1442695040888963407ULL;
    const bool negative = !positive && (state_ >> 63) != 0;
    const double magnitude = low + (high - low) * u;
    return negative ? -magnitude : magnitude;
  }
  interp::Tensor tensor(const ir::Shape& shape, double low = 0.2, double high = 1.0, bool positive = false) {
    interp::Tensor t(shape);
    for (double& x : t.data) x = next(low, high, positive);
    return t;
  }

 private:
  uint64_t state_;
};

// Marks loss = ReduceSum(y * probe) as the output, with a random Input "probe" fed into `feeds`,
// so that the gradient flowing into y is a generic tensor.
inline void finish_with_probe(ir::Graph& g, ir::Value y, std::map<std::string, interp::Tensor>& feeds, Filler& fill) {
  const ir::Shape shape = g.type(y).shape;
  ir::Value probe = g.input("probe", shape);
  feeds["probe"] = fill.tensor(shape);
  ir::Value prod = g.add_value(ir::OpKind::Mul, {y, probe});
  g.mark_output(g.add_value(ir::OpKind::ReduceSum, {prod}, {{"keepdims", int64_t{0}}}));
}

inline double loss_of(const ir::Graph& g, const std::map<std::string, interp::Tensor>& feeds) {
  auto out = interp::run(g, feeds, interp::Precision::f64);
  EXPECT_TRUE(out.is_ok()) << (out ? "" : out.error().message());
  return out ? out->outputs.at(0)[0] : 0.0;
}

// Parameters missing from `feeds` get random values; then every gradient element is compared
// with (L(p + h) - L(p - h)) / 2h. Returns the number of elements checked.
inline int64_t expect_gradients_match(const ir::Graph& forward, std::map<std::string, interp::Tensor> feeds,
                                      Filler& fill, double tolerance = 1e-6, double h = 1e-5) {
  for (ir::OpId p : forward.parameters()) {
    const ir::Op& op = forward.op(p);
    if (!feeds.count(op.name)) feeds[op.name] = fill.tensor(op.outputs[0].shape);
  }
  auto gg = autodiff::build_gradient_graph(forward);
  EXPECT_TRUE(gg.is_ok()) << (gg ? "" : gg.error().message());
  if (!gg) return 0;
  auto run = interp::run(gg->graph, feeds, interp::Precision::f64);
  EXPECT_TRUE(run.is_ok()) << (run ? "" : run.error().message());
  if (!run) return 0;
  int64_t checked = 0;
  for (const auto& [p, grad_value] : gg->gradients) {
    const std::string name = forward.op(p).name;
    const interp::Tensor& grad = run->value(grad_value);
    EXPECT_EQ(grad.shape, forward.op(p).outputs[0].shape) << name;
    for (int64_t i = 0; i < grad.numel(); ++i) {
      auto plus = feeds, minus = feeds;
      plus[name][i] += h;
      minus[name][i] -= h;
      const double numeric = (loss_of(forward, plus) - loss_of(forward, minus)) / (2 * h);
      const double analytic = grad[i];
      EXPECT_NEAR(analytic, numeric, tolerance * (std::abs(analytic) + std::abs(numeric)) + 1e-8)
          << name << "[" << i << "]";
      ++checked;
    }
  }
  return checked;
}

}  // namespace strata::testing
