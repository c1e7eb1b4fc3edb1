// Directional finite-difference checks on the real model builders (configs/models/*-tiny.yaml):
// <gradient, d> against (L(p + h d) - L(p - h d)) / 2h for one random direction d over all parameters.
#include <gtest/gtest.h>

#include "fd_check.h"
#include "strata/models/models.h"

namespace strata::testing {
namespace {

void check_model(const std::string& config) {
  auto spec = models::load_model_config(std::string(STRATA_SOURCE_DIR) + "/configs/models/" + config);
  ASSERT_TRUE(spec.is_ok()) << spec.error().message();
  auto graph = models::build_forward_graph(*spec, spec->family == models::Family::wresnet ? 0 : 1);
  ASSERT_TRUE(graph.is_ok()) << graph.error().message();
  const ir::Graph& g = *graph;
  Filler fill(3);
  std::map<std::string, interp::Tensor> feeds;
  const int64_t classes = spec->family == models::Family::wresnet ? spec->num_classes : spec->vocab;
  for (ir::OpId id : g.inputs()) {
    const ir::Op& op = g.op(id);
    const ir::Shape& shape = op.outputs[0].shape;
    interp::Tensor t(shape);
    if (op.name == "causal_mask") {
      for (int64_t q = 0; q < shape[0]; ++q) {
        for (int64_t k = 0; k < shape[1]; ++k) t[q * shape[1] + k] = k <= q ? 0.0 : -1e9;
      }
    } else if (!is_float(op.outputs[0].dtype)) {
      for (int64_t i = 0; i < t.numel(); ++i) t[i] = static_cast<double>((i * 7 + 3) % classes);
    } else {
      t = fill.tensor(shape);
    }
    feeds[op.name] = t;
  }
  // Weights of order one rather than the 0.02 init: with tiny conv weights in front of batch norm
  // the loss is so sensitive that a finite-difference step moves many ReLU inputs across zero.
  for (ir::OpId p : g.parameters()) feeds[g.op(p).name] = fill.tensor(g.op(p).outputs[0].shape, 0.2, 1.0);
  auto gg = autodiff::build_gradient_graph(g);
  ASSERT_TRUE(gg.is_ok()) << gg.error().message();
  auto out = interp::run(gg->graph, feeds, interp::Precision::f64);
  ASSERT_TRUE(out.is_ok()) << out.error().message();
  const double h = 1e-6;
  double analytic = 0.0;
  auto plus = feeds, minus = feeds;
  for (const auto& [p, grad] : gg->gradients) {
    const std::string& name = g.op(p).name;
    const interp::Tensor& gt = out->value(grad);
    for (int64_t i = 0; i < gt.numel(); ++i) {
      const double d = fill.next(0.2, 1.0, false);
      analytic += gt[i] * d;
      plus[name][i] += h * d;
      minus[name][i] -= h * d;
    }
  }
  const double numeric = (loss_of(g, plus) - loss_of(g, minus)) / (2 * h);
  EXPECT_NEAR(analytic, numeric, 1e-5 * (std::abs(analytic) + std::abs(numeric)) + 1e-9) << config;
  EXPECT_GT(std::abs(analytic), 1e-6) << config;
}

TEST(ModelsGrad, GptTiny) { check_model("gpt-tiny.yaml"); }
TEST(ModelsGrad, MoETiny) { check_model("moe-tiny.yaml"); }
TEST(ModelsGrad, WresnetTiny) { check_model("wresnet-tiny.yaml"); }

}  // namespace
}  // namespace strata::testing
