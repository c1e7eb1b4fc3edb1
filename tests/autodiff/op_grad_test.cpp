// Finite-difference checks of the gradient rule of every differentiable op kind, each on small
// random shapes in fp64, plus the structural facts (roles, errors, zero-gradient ops).
#include <gtest/gtest.h>

#include "fd_check.h"

namespace strata::testing {
namespace {

using ir::Attrs;
using ir::OpKind;
using ir::Shape;
using ir::Value;
using Feeds = std::map<std::string, interp::Tensor>;

struct Case {
  ir::Graph g;
  Feeds feeds;
  Filler fill{42};
  Value param(const std::string& name, Shape shape, bool positive = false, double low = 0.2, double high = 1.0) {
    feeds[name] = fill.tensor(shape, low, high, positive);
    return g.parameter(name, std::move(shape));
  }
  Value ids(const std::string& name, Shape shape, std::vector<double> values) {
    feeds[name] = interp::Tensor(shape, std::move(values));
    return g.input(name, std::move(shape), DType::i32);
  }
  // Probes y, checks every gradient, and makes sure something was checked.
  void check(Value y, double tolerance = 1e-6) {
    finish_with_probe(g, y, feeds, fill);
    EXPECT_GT(expect_gradients_match(g, feeds, fill, tolerance), 0);
  }
};

void check_unary(OpKind kind, bool positive = false, Attrs attrs = {}) {
  Case c;
  Value x = c.param("x", {2, 3}, positive);
  c.check(c.g.add_value(kind, {x}, std::move(attrs)));
}

TEST(OpGrad, Unary) {
  check_unary(OpKind::Neg);
  check_unary(OpKind::Exp);
  check_unary(OpKind::Log, true);
  check_unary(OpKind::Tanh);
  check_unary(OpKind::Sqrt, true);
  check_unary(OpKind::Rsqrt, true);
  check_unary(OpKind::Relu);
  check_unary(OpKind::Gelu);
  check_unary(OpKind::Scale, false, {{"scalar", -1.5}});
}

void check_binary(OpKind kind, Shape a_shape, Shape b_shape, bool positive_b = false) {
  Case c;
  Value a = c.param("a", std::move(a_shape));
  Value b = c.param("b", std::move(b_shape), positive_b);
  c.check(c.g.add_value(kind, {a, b}));
}

TEST(OpGrad, BinaryWithBroadcasting) {
  for (OpKind kind : {OpKind::Add, OpKind::Sub, OpKind::Mul, OpKind::Div, OpKind::Max}) {
    SCOPED_TRACE(ir::op_kind_name(kind));
    check_binary(kind, {2, 3}, {2, 3}, kind == OpKind::Div);
    check_binary(kind, {2, 3, 4}, {3, 1}, kind == OpKind::Div);
    check_binary(kind, {1, 4}, {3, 1}, kind == OpKind::Div);
  }
}

TEST(OpGrad, MultiUseAccumulates) {  // y = x * x + exp(x): x has three uses
  Case c;
  Value x = c.param("x", {3});
  Value sq = c.g.add_value(OpKind::Mul, {x, x});
  c.check(c.g.add_value(OpKind::Add, {sq, c.g.add_value(OpKind::Exp, {x})}));
}

TEST(OpGrad, Reductions) {
  for (OpKind kind : {OpKind::ReduceSum, OpKind::ReduceMax, OpKind::ReduceMean}) {
    for (int64_t keepdims : {0, 1}) {
      SCOPED_TRACE(std::string(ir::op_kind_name(kind)) + " keepdims " + std::to_string(keepdims));
      Case c;
      Value x = c.param("x", {2, 3, 4});
      c.check(c.g.add_value(kind, {x}, {{"axes", std::vector<int64_t>{0, -1}}, {"keepdims", keepdims}}));
    }
    Case all;  // no axes: every dim
    all.check(all.g.add_value(kind, {all.param("x", {2, 3})}));
  }
}

TEST(OpGrad, Layout) {
  {
    Case c;
    c.check(c.g.add_value(OpKind::Reshape, {c.param("x", {2, 6})}, {{"shape", Shape{3, 2, 2}}}));
  }
  {
    Case c;
    c.check(c.g.add_value(OpKind::Transpose, {c.param("x", {2, 3, 4})}, {{"perm", std::vector<int64_t>{2, 0, 1}}}));
  }
  {
    Case c;  // size-1 dim expands, new leading dim
    c.check(c.g.add_value(OpKind::Broadcast, {c.param("x", {3, 1})},
                          {{"shape", Shape{2, 3, 4}}, {"dims", std::vector<int64_t>{1, 2}}}));
  }
  {
    Case c;  // dims out of order: a transpose inside the broadcast
    c.check(c.g.add_value(OpKind::Broadcast, {c.param("x", {4, 3})},
                          {{"shape", Shape{3, 2, 4}}, {"dims", std::vector<int64_t>{2, 0}}}));
  }
  {
    Case c;
    c.check(c.g.add_value(OpKind::Slice, {c.param("x", {4, 5})},
                          {{"starts", std::vector<int64_t>{1, 0}}, {"limits", std::vector<int64_t>{3, 4}}}));
  }
  {
    Case c;
    c.check(c.g.add_value(OpKind::Pad, {c.param("x", {2, 3})},
                          {{"low", std::vector<int64_t>{1, 0}}, {"high", std::vector<int64_t>{0, 2}}}));
  }
  {
    Case c;
    Value a = c.param("a", {2, 3});
    Value b = c.param("b", {2, 1});
    c.check(c.g.add_value(OpKind::Concat, {a, b, a}, {{"axis", int64_t{-1}}}));
  }
}

TEST(OpGrad, DotMatmul) {
  Case c;
  Value a = c.param("a", {3, 4});
  Value b = c.param("b", {4, 2});
  c.check(c.g.add_value(OpKind::Dot, {a, b},
                        {{"lhs_contract", std::vector<int64_t>{1}}, {"rhs_contract", std::vector<int64_t>{0}}}));
}

TEST(OpGrad, DotBatchedWithPermutedDims) {
  // lhs [c=3, b=2, f=2, c2=2], rhs [c2=2, f=3, b=2, c=3]: batch and contract dims out of order.
  Case c;
  Value a = c.param("a", {3, 2, 2, 2});
  Value b = c.param("b", {2, 3, 2, 3});
  c.check(c.g.add_value(OpKind::Dot, {a, b},
                        {{"lhs_batch", std::vector<int64_t>{1}}, {"rhs_batch", std::vector<int64_t>{2}},
                         {"lhs_contract", std::vector<int64_t>{3, 0}}, {"rhs_contract", std::vector<int64_t>{0, 3}}}));
}

TEST(OpGrad, Gather) {
  Case c;
  Value table = c.param("table", {5, 3});
  Value ids = c.ids("ids", {2, 2}, {4, 0, 4, 2});  // a repeated id accumulates
  c.check(c.g.add_value(OpKind::Gather, {table, ids}));
}

TEST(OpGrad, Softmax) {
  for (int64_t axis : {0, -1}) {
    Case c;
    c.check(c.g.add_value(OpKind::Softmax, {c.param("x", {3, 4})}, {{"axis", axis}}));
  }
}

TEST(OpGrad, LayerNorm) {
  Case c;
  Value x = c.param("x", {2, 3, 4});
  Value gamma = c.param("gamma", {4});
  Value beta = c.param("beta", {4});
  c.check(c.g.add_value(OpKind::LayerNorm, {x, gamma, beta}, {{"eps", 1e-5}}));
}

TEST(OpGrad, BatchNorm) {
  Case c;
  Value x = c.param("x", {3, 2, 2, 3});
  Value gamma = c.param("gamma", {2});
  Value beta = c.param("beta", {2});
  c.check(c.g.add_value(OpKind::BatchNorm, {x, gamma, beta}, {{"eps", 1e-5}}));
}

TEST(OpGrad, Conv2d) {
  for (int64_t stride : {1, 2}) {
    SCOPED_TRACE(stride);
    Case c;
    Value x = c.param("x", {2, 2, 5, 5});
    Value w = c.param("w", {3, 2, 3, 3});
    c.check(c.g.add_value(OpKind::Conv2d, {x, w}, {{"stride", stride}, {"padding", int64_t{1}}}));
  }
}

TEST(OpGrad, Pools) {
  for (OpKind kind : {OpKind::AvgPool2d, OpKind::MaxPool2d}) {
    SCOPED_TRACE(ir::op_kind_name(kind));
    Case c;
    Value x = c.param("x", {2, 2, 5, 5});
    c.check(c.g.add_value(kind, {x}, {{"window", int64_t{3}}, {"stride", int64_t{2}}, {"padding", int64_t{1}}}));
  }
}

TEST(OpGrad, MoEGate) {
  // Distinct probabilities (spread over [0.05, 1]) so that a 1e-5 step cannot change the routing;
  // capacity 2 with 5 tokens and top-2 of 3 experts forces dropped choices.
  Case c;
  Value probs = c.param("probs", {2, 5, 3}, true, 0.05, 1.0);
  c.check(c.g.add_value(OpKind::MoEGate, {probs}, {{"k", int64_t{2}}, {"capacity", int64_t{2}}}));
}

TEST(OpGrad, CrossEntropy) {
  Case c;
  Value logits = c.param("logits", {3, 5});
  Value labels = c.ids("labels", {3}, {4, 0, 2});
  Value loss = c.g.add_value(OpKind::CrossEntropy, {logits, labels});
  c.g.mark_output(loss);
  EXPECT_GT(expect_gradients_match(c.g, c.feeds, c.fill), 0);
}

TEST(OpGrad, StepAndIndicatorHaveNoGradient) {
  // y = x * step(x) * indicator(x) == relu(x) with masks treated as constants: gradient = masks.
  Case c;
  Value x = c.param("x", {4});
  Value masked = c.g.add_value(OpKind::Mul, {x, c.g.add_value(OpKind::Step, {x})});
  c.check(c.g.add_value(OpKind::Mul, {masked, c.g.add_value(OpKind::Indicator, {x})}));
}

TEST(Autodiff, RolesAndForwardOps) {
  Case c;
  Value w = c.param("w", {3, 2});
  Value x = c.g.input("x", {4, 3});
  Value y = c.g.add_value(OpKind::Dot, {x, w},
                          {{"lhs_contract", std::vector<int64_t>{1}}, {"rhs_contract", std::vector<int64_t>{0}}});
  Value loss = c.g.add_value(OpKind::ReduceMean, {c.g.add_value(OpKind::Tanh, {y})});
  c.g.mark_output(loss);
  const int32_t forward_ops = c.g.num_ops();
  auto gg = autodiff::build_gradient_graph(c.g);
  ASSERT_TRUE(gg.is_ok()) << gg.error().message();
  for (ir::OpId id = 0; id < gg->graph.num_ops(); ++id) {
    const ir::Op& op = gg->graph.op(id);
    if (id < forward_ops) {
      EXPECT_EQ(op.role, ir::Role::forward) << op.name;
    } else {
      EXPECT_EQ(op.role, ir::Role::backward) << op.name;
      EXPECT_GE(op.forward_op, 0) << op.name;
      EXPECT_LT(op.forward_op, forward_ops) << op.name;
    }
  }
  // The gradient of w is a Dot made for the forward Dot; x (an Input) gets no gradient ops.
  const ir::Op& grad_op = gg->graph.op(gg->gradients.at(w.op).op);
  EXPECT_EQ(grad_op.forward_op, y.op);
  EXPECT_EQ(gg->gradients.size(), 1u);
  EXPECT_EQ(gg->graph.ops_of_kind(OpKind::Dot).size(), 2u);
}

TEST(Autodiff, UnusedParameterGetsZeroGradient) {
  Case c;
  Value used = c.param("used", {2});
  Value unused = c.param("unused", {3});
  c.g.mark_output(c.g.add_value(OpKind::ReduceSum, {c.g.add_value(OpKind::Exp, {used})}));
  auto gg = autodiff::build_gradient_graph(c.g);
  ASSERT_TRUE(gg.is_ok());
  auto run = interp::run(gg->graph, c.feeds, interp::Precision::f64);
  ASSERT_TRUE(run.is_ok());
  EXPECT_EQ(run->value(gg->gradients.at(unused.op)).data, std::vector<double>(3, 0.0));
  EXPECT_GT(expect_gradients_match(c.g, c.feeds, c.fill), 0);
}

TEST(Autodiff, Errors) {
  {
    Case c;  // two outputs
    Value x = c.param("x", {2});
    c.g.mark_output(x);
    c.g.mark_output(x);
    auto gg = autodiff::build_gradient_graph(c.g);
    ASSERT_FALSE(gg.is_ok());
    EXPECT_EQ(gg.error().field, "outputs");
  }
  {
    Case c;  // non-scalar loss
    c.g.mark_output(c.g.add_value(OpKind::Exp, {c.param("x", {2})}));
    auto gg = autodiff::build_gradient_graph(c.g);
    ASSERT_FALSE(gg.is_ok());
    EXPECT_EQ(gg.error().field, "outputs[0]");
  }
  {
    Case c;  // a grad op on the path has no rule
    Value x = c.param("x", {2});
    Value gg_op = c.g.add_value(OpKind::GeluGrad, {x, x}, {}, "second_order");
    c.g.mark_output(c.g.add_value(OpKind::ReduceSum, {gg_op}));
    auto gg = autodiff::build_gradient_graph(c.g);
    ASSERT_FALSE(gg.is_ok());
    EXPECT_EQ(gg.error().field, "ops.second_order");
    EXPECT_NE(gg.error().reason.find("GeluGrad"), std::string::npos);
  }
}

}  // namespace
}  // namespace strata::testing
