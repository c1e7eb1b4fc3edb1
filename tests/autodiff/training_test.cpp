// build_training_graph: SGD and Adam update ops, their state parameters and roles, and the updated
// values checked against a hand computation from the gradient.
#include <gtest/gtest.h>

#include <cmath>

#include "fd_check.h"

namespace strata::testing {
namespace {

using ir::OpKind;
using ir::Value;
using Feeds = std::map<std::string, interp::Tensor>;

// loss = sum(exp(w) * x) with w a parameter: dloss/dw = exp(w) * x.
struct Tiny {
  ir::Graph g;
  Feeds feeds;
  Tiny() {
    Value w = g.parameter("w", {3});
    Value x = g.input("x", {3});
    g.mark_output(g.add_value(OpKind::ReduceSum, {g.add_value(OpKind::Mul, {g.add_value(OpKind::Exp, {w}), x})}));
    feeds["w"] = interp::Tensor({3}, {0.5, -1.0, 0.25});
    feeds["x"] = interp::Tensor({3}, {2.0, -3.0, 0.5});
  }
  double grad(int i) const { return std::exp(feeds.at("w")[i]) * feeds.at("x")[i]; }
};

const interp::Tensor& output_of(const ir::Graph& g, const interp::Outputs& out, const std::string& name, int index) {
  return out.value(Value{g.find(name).value(), index});
}

TEST(Training, SgdUpdate) {
  Tiny t;
  autodiff::TrainingOptions options;
  options.lr = 0.1;
  auto graph = autodiff::build_training_graph(t.g, options);
  ASSERT_TRUE(graph.is_ok()) << graph.error().message();
  ASSERT_EQ(graph->ops_of_kind(OpKind::SgdUpdate).size(), 1u);
  const ir::Op& update = graph->op(graph->ops_of_kind(OpKind::SgdUpdate)[0]);
  EXPECT_EQ(update.role, ir::Role::update);
  EXPECT_EQ(update.forward_op, t.g.find("w").value());
  auto out = interp::run(*graph, t.feeds, interp::Precision::f64);
  ASSERT_TRUE(out.is_ok()) << out.error().message();
  const interp::Tensor& w = out->value(Value{update.id, 0});
  for (int i = 0; i < 3; ++i) EXPECT_NEAR(w[i], t.feeds["w"][i] - 0.1 * t.grad(i), 1e-12) << i;
}

TEST(Training, AdamUpdateFirstAndSecondStep) {
  Tiny t;
  autodiff::TrainingOptions options;
  options.optimizer = autodiff::Optimizer::adam;
  options.lr = 0.01;
  options.beta1 = 0.8;
  options.beta2 = 0.9;
  options.eps = 1e-3;
  options.weight_decay = 0.1;
  options.step = 2;
  auto graph = autodiff::build_training_graph(t.g, options);
  ASSERT_TRUE(graph.is_ok()) << graph.error().message();
  for (const char* name : {"w.adam_m", "w.adam_v"}) {
    auto id = graph->find(name);
    ASSERT_TRUE(id.is_ok()) << name;
    EXPECT_EQ(graph->op(*id).kind, OpKind::Parameter);
    EXPECT_EQ(graph->op(*id).attrs.get_string("init").value(), "zeros");
    EXPECT_EQ(graph->op(*id).role, ir::Role::update);
  }
  // Feed nonzero state as if one step had run, and check step-2 values by hand.
  t.feeds["w.adam_m"] = interp::Tensor({3}, {0.3, -0.2, 0.1});
  t.feeds["w.adam_v"] = interp::Tensor({3}, {0.5, 0.4, 0.01});
  auto out = interp::run(*graph, t.feeds, interp::Precision::f64);
  ASSERT_TRUE(out.is_ok()) << out.error().message();
  const ir::OpId update = graph->ops_of_kind(OpKind::AdamUpdate).at(0);
  EXPECT_EQ(graph->op(update).role, ir::Role::update);
  for (int i = 0; i < 3; ++i) {
    const double g = t.grad(i), p = t.feeds["w"][i];
    const double m = 0.8 * t.feeds["w.adam_m"][i] + 0.2 * g;
    const double v = 0.9 * t.feeds["w.adam_v"][i] + 0.1 * g * g;
    const double m_hat = m / (1 - 0.8 * 0.8), v_hat = v / (1 - 0.9 * 0.9);
    const double expected = p - 0.01 * (m_hat / (std::sqrt(v_hat) + 1e-3) + 0.1 * p);
    EXPECT_NEAR(out->value(Value{update, 0})[i], expected, 1e-12) << i;
    EXPECT_NEAR(out->value(Value{update, 1})[i], m, 1e-12) << i;
    EXPECT_NEAR(out->value(Value{update, 2})[i], v, 1e-12) << i;
  }
  // Unfed state starts at zero: step 1 from zero state moves w by about lr * sign(g).
  options.step = 1;
  options.weight_decay = 0;
  options.eps = 1e-12;
  auto fresh = autodiff::build_training_graph(t.g, options);
  ASSERT_TRUE(fresh.is_ok());
  t.feeds.erase("w.adam_m");
  t.feeds.erase("w.adam_v");
  auto out1 = interp::run(*fresh, t.feeds, interp::Precision::f64);
  ASSERT_TRUE(out1.is_ok());
  const interp::Tensor& w1 = output_of(*fresh, *out1, "w.adam", 0);
  for (int i = 0; i < 3; ++i) EXPECT_NEAR(w1[i], t.feeds["w"][i] - 0.01 * (t.grad(i) > 0 ? 1 : -1), 1e-9) << i;
}

TEST(Training, BadOptionsAreErrors) {
  Tiny t;
  autodiff::TrainingOptions options;
  options.lr = 0;
  auto graph = autodiff::build_training_graph(t.g, options);
  ASSERT_FALSE(graph.is_ok());
  EXPECT_EQ(graph.error().field, "lr");
  options.lr = 0.1;
  options.optimizer = autodiff::Optimizer::adam;
  options.beta2 = 1.0;
  graph = autodiff::build_training_graph(t.g, options);
  ASSERT_FALSE(graph.is_ok());
  EXPECT_EQ(graph.error().field, "beta2");
}

}  // namespace
}  // namespace strata::testing
