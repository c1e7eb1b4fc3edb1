// interp::run as a whole: feeds and their errors, deterministic parameter initialisation from the
// seed, fp32 rounding, output order, and kernel errors naming the op.
#include <gtest/gtest.h>

#include <cmath>

#include "strata/interp/interp.h"

namespace strata::interp {
namespace {

using ir::OpKind;
using ir::Value;
using Feeds = std::map<std::string, Tensor>;

TEST(Run, MissingInputFeedNamesTheInput) {
  ir::Graph g;
  Value x = g.input("tokens", {2});
  g.mark_output(g.add_value(OpKind::Neg, {x}));
  auto out = run(g, {}, Precision::f64);
  ASSERT_FALSE(out.is_ok());
  EXPECT_EQ(out.error().field, "feeds.tokens");
  EXPECT_NE(out.error().reason.find("tokens"), std::string::npos);
}

TEST(Run, BadFeedsAreErrors) {
  ir::Graph g;
  Value x = g.input("x", {2});
  g.mark_output(g.add_value(OpKind::Neg, {x}, {}, "neg"));
  auto wrong_shape = run(g, {{"x", Tensor({3}, 1.0)}}, Precision::f64);
  ASSERT_FALSE(wrong_shape.is_ok());
  EXPECT_EQ(wrong_shape.error().field, "feeds.x");
  auto unknown = run(g, {{"x", Tensor({2}, 1.0)}, {"y", Tensor({2}, 1.0)}}, Precision::f64);
  ASSERT_FALSE(unknown.is_ok());
  EXPECT_EQ(unknown.error().field, "feeds.y");
  auto not_source = run(g, {{"x", Tensor({2}, 1.0)}, {"neg", Tensor({2}, 1.0)}}, Precision::f64);
  ASSERT_FALSE(not_source.is_ok());
  EXPECT_EQ(not_source.error().field, "feeds.neg");
}

TEST(Run, KernelErrorNamesTheOp) {
  ir::Graph g;
  Value table = g.parameter("table", {3, 2});
  Value ids = g.input("ids", {2}, DType::i32);
  g.mark_output(g.add_value(OpKind::Gather, {table, ids}, {}, "embed"));
  auto out = run(g, {{"ids", Tensor({2}, {0, 3})}}, Precision::f64);
  ASSERT_FALSE(out.is_ok());
  EXPECT_EQ(out.error().field, "ops.embed.inputs[1]");
  EXPECT_NE(out.error().reason.find("id 3"), std::string::npos);
}

TEST(Run, OutputsInMarkedOrderAndAllValuesKept) {
  ir::Graph g;
  Value x = g.input("x", {2});
  Value a = g.add_value(OpKind::Scale, {x}, {{"scalar", 2.0}});
  Value b = g.add_value(OpKind::Exp, {x});
  g.mark_output(b);
  g.mark_output(a);
  auto out = run(g, {{"x", Tensor({2}, {0.0, 1.0})}}, Precision::f64);
  ASSERT_TRUE(out.is_ok());
  ASSERT_EQ(out->outputs.size(), 2u);
  EXPECT_EQ(out->outputs[0].data, (std::vector<double>{1.0, std::exp(1.0)}));
  EXPECT_EQ(out->outputs[1].data, (std::vector<double>{0.0, 2.0}));
  EXPECT_EQ(out->value(a).data, out->outputs[1].data);
}

TEST(Run, ParameterInitIsDeterministicPerSeedAndName) {
  ir::Graph g;
  Value w = g.parameter("w", {100, 100}, DType::f32, "normal", 0.5);
  Value z = g.parameter("z", {3}, DType::f32, "zeros");
  Value o = g.parameter("o", {3}, DType::f32, "ones");
  g.mark_output(w);
  auto a = run(g, {}, Precision::f64, 7);
  auto b = run(g, {}, Precision::f64, 7);
  auto c = run(g, {}, Precision::f64, 8);
  ASSERT_TRUE(a.is_ok() && b.is_ok() && c.is_ok());
  EXPECT_EQ(a->value(w).data, b->value(w).data);
  EXPECT_NE(a->value(w).data, c->value(w).data);
  EXPECT_EQ(a->value(z).data, std::vector<double>(3, 0.0));
  EXPECT_EQ(a->value(o).data, std::vector<double>(3, 1.0));
  double sum = 0, squares = 0;
  for (double v : a->value(w).data) {
    sum += v;
    squares += v * v;
  }
  const double n = 10000;
  EXPECT_NEAR(sum / n, 0.0, 0.02);                 // 4 standard errors of the mean
  EXPECT_NEAR(std::sqrt(squares / n), 0.5, 0.02);  // the requested std
  // A fed parameter overrides its init.
  auto fed = run(g, {{"z", Tensor({3}, 2.0)}}, Precision::f64, 7);
  ASSERT_TRUE(fed.is_ok());
  EXPECT_EQ(fed->value(z).data, std::vector<double>(3, 2.0));
  EXPECT_EQ(init_parameter(g.op(w.op), 7).data, a->value(w).data);
}

TEST(Run, Fp32RoundsEveryKernelOutput) {
  ir::Graph g;
  Value x = g.input("x", {1});
  g.mark_output(g.add_value(OpKind::Scale, {x}, {{"scalar", 1.0 / 3.0}}));
  auto f64 = run(g, {{"x", Tensor({1}, {1.0})}}, Precision::f64);
  auto f32 = run(g, {{"x", Tensor({1}, {1.0})}}, Precision::f32);
  ASSERT_TRUE(f64.is_ok() && f32.is_ok());
  EXPECT_EQ(f64->outputs[0][0], 1.0 / 3.0);
  EXPECT_EQ(f32->outputs[0][0], static_cast<double>(static_cast<float>(1.0 / 3.0)));
  EXPECT_NE(f32->outputs[0][0], f64->outputs[0][0]);
}

TEST(Run, ConstantFillsItsShape) {
  ir::Graph g;
  g.mark_output(g.constant({2, 2}, 1.5));
  auto out = run(g, {}, Precision::f64);
  ASSERT_TRUE(out.is_ok());
  EXPECT_EQ(out->outputs[0].shape, (ir::Shape{2, 2}));
  EXPECT_EQ(out->outputs[0].data, std::vector<double>(4, 1.5));
}

}  // namespace
}  // namespace strata::interp
