// Shape inference and FLOPs for the neural-network ops and optimizer updates: output types and,
// for each bad input, an Error naming the right field with the numbers at fault.
#include <gtest/gtest.h>

#include "ir_test_util.h"

namespace strata::ir {
namespace {

using testing::bf16;
using testing::expect_error;
using testing::expect_types;
using testing::f32;
using testing::i32;
using Ints = std::vector<int64_t>;

TEST(NnShapes, GatherAndGrad) {
  expect_types(OpKind::Gather, {bf16({50257, 768}), i32({2, 1024})}, {}, {bf16({2, 1024, 768})});
  expect_types(OpKind::Gather, {f32({10, 4, 3}), i32({5})}, {}, {f32({5, 4, 3})});
  expect_error(OpKind::Gather, {f32({10, 4}), f32({5})}, {}, "inputs[1]", "expected an i32 tensor");
  expect_error(OpKind::Gather, {f32({}), i32({5})}, {}, "inputs[0]", "scalar");

  expect_types(OpKind::GatherGrad, {i32({2, 16}), f32({2, 16, 8})}, {{"vocab", int64_t{100}}}, {f32({100, 8})});
  expect_error(OpKind::GatherGrad, {i32({2, 16}), f32({2, 15, 8})}, {{"vocab", int64_t{100}}}, "inputs[1]",
               "starting with the ids' [2, 16]");
  expect_error(OpKind::GatherGrad, {i32({2}), f32({2, 8})}, {}, "vocab", "missing attribute");
  expect_error(OpKind::GatherGrad, {i32({2}), f32({2, 8})}, {{"vocab", int64_t{0}}}, "vocab", "at least 1");
}

TEST(NnShapes, SoftmaxAndGrad) {
  expect_types(OpKind::Softmax, {f32({2, 12, 8, 8})}, {{"axis", int64_t{-1}}}, {f32({2, 12, 8, 8})});
  expect_types(OpKind::Softmax, {f32({4, 8})}, {}, {f32({4, 8})});
  expect_error(OpKind::Softmax, {f32({4, 8})}, {{"axis", int64_t{2}}}, "axis", "axis 2 out of range for rank 2");
  expect_error(OpKind::Softmax, {i32({4, 8})}, {}, "inputs[0]", "floating-point");
  expect_types(OpKind::SoftmaxGrad, {f32({4, 8}), f32({4, 8})}, {{"axis", int64_t{1}}}, {f32({4, 8})});
  expect_error(OpKind::SoftmaxGrad, {f32({4, 8}), f32({4, 9})}, {}, "inputs[1]", "f32[4, 9]");
}

TEST(NnShapes, LayerNormAndGrad) {
  expect_types(OpKind::LayerNorm, {f32({2, 16, 64}), f32({64}), f32({64})}, {{"eps", 1e-5}}, {f32({2, 16, 64})});
  expect_error(OpKind::LayerNorm, {f32({2, 16, 64}), f32({32}), f32({64})}, {}, "inputs[1]",
               "expected shape [64] (the last dim of inputs[0]), got [32]");
  expect_error(OpKind::LayerNorm, {f32({2, 16, 64}), f32({64}), f32({64, 1})}, {}, "inputs[2]", "got [64, 1]");
  expect_error(OpKind::LayerNorm, {f32({2, 64}), f32({64}), f32({64})}, {{"eps", -1.0}}, "eps", "positive");
  expect_error(OpKind::LayerNorm, {f32({2, 64}), f32({64}), f32({64})}, {{"eps", std::string("x")}}, "eps",
               "expected a number");
  expect_types(OpKind::LayerNormGrad, {f32({2, 16, 64}), f32({64}), f32({2, 16, 64})}, {},
               {f32({2, 16, 64}), f32({64}), f32({64})});
  expect_error(OpKind::LayerNormGrad, {f32({2, 16, 64}), f32({64}), f32({2, 64})}, {}, "inputs[2]", "f32[2, 64]");
}

Attrs conv_attrs(int64_t stride, int64_t padding) { return Attrs{{"stride", stride}, {"padding", padding}}; }

TEST(NnShapes, Conv2dAndGrads) {
  // ResNet stem: 224 -> (224 + 6 - 7) / 2 + 1 = 112.
  expect_types(OpKind::Conv2d, {f32({8, 3, 224, 224}), f32({64, 3, 7, 7})}, conv_attrs(2, 3),
               {f32({8, 64, 112, 112})});
  expect_types(OpKind::Conv2d, {f32({1, 16, 9, 9}), f32({32, 16, 3, 3})}, {}, {f32({1, 32, 7, 7})});
  expect_error(OpKind::Conv2d, {f32({8, 3, 32, 32}), f32({64, 4, 3, 3})}, conv_attrs(1, 1), "inputs[1]",
               "input channels differ: 3 vs 4");
  expect_error(OpKind::Conv2d, {f32({8, 3, 32}), f32({64, 3, 3, 3})}, {}, "inputs[0]", "expected [N, C, H, W]");
  expect_error(OpKind::Conv2d, {f32({1, 3, 2, 2}), f32({4, 3, 5, 5})}, {}, "inputs[1]",
               "window 5 larger than padded size 2");
  expect_error(OpKind::Conv2d, {f32({1, 3, 8, 8}), f32({4, 3, 3, 3})}, conv_attrs(0, 0), "stride", "at least 1");
  expect_error(OpKind::Conv2d, {f32({1, 3, 8, 8}), f32({4, 3, 3, 3})}, conv_attrs(1, -1), "padding",
               "non-negative");

  Attrs gi = conv_attrs(2, 1);
  gi.set("input_shape", Ints{4, 16, 32, 32});
  // (32 + 2 - 3) / 2 + 1 = 16
  expect_types(OpKind::Conv2dGradInput, {f32({8, 16, 3, 3}), f32({4, 8, 16, 16})}, gi, {f32({4, 16, 32, 32})});
  expect_error(OpKind::Conv2dGradInput, {f32({8, 16, 3, 3}), f32({4, 8, 15, 16})}, gi, "inputs[1]",
               "expected shape [4, 8, 16, 16] (the forward output), got [4, 8, 15, 16]");
  expect_error(OpKind::Conv2dGradInput, {f32({8, 16, 3, 3}), f32({4, 8, 16, 16})}, conv_attrs(2, 1), "input_shape",
               "missing attribute");

  Attrs gf = conv_attrs(2, 1);
  gf.set("filter_shape", Ints{8, 16, 3, 3});
  expect_types(OpKind::Conv2dGradFilter, {f32({4, 16, 32, 32}), f32({4, 8, 16, 16})}, gf, {f32({8, 16, 3, 3})});
  expect_error(OpKind::Conv2dGradFilter, {f32({4, 15, 32, 32}), f32({4, 8, 16, 16})}, gf, "filter_shape",
               "input channels differ: 15 vs 16");
}

TEST(NnShapes, BatchNormAndGrad) {
  expect_types(OpKind::BatchNorm, {f32({8, 64, 7, 7}), f32({64}), f32({64})}, {}, {f32({8, 64, 7, 7})});
  expect_error(OpKind::BatchNorm, {f32({8, 64, 7, 7}), f32({7}), f32({64})}, {}, "inputs[1]",
               "expected shape [64] (the channels of inputs[0]), got [7]");
  expect_error(OpKind::BatchNorm, {f32({8}), f32({8}), f32({8})}, {}, "inputs[0]", "expected [N, C, ...]");
  expect_types(OpKind::BatchNormGrad, {f32({8, 64, 7, 7}), f32({64}), f32({8, 64, 7, 7})}, {},
               {f32({8, 64, 7, 7}), f32({64}), f32({64})});
}

Attrs pool_attrs(int64_t window, int64_t stride, int64_t padding) {
  return Attrs{{"window", window}, {"stride", stride}, {"padding", padding}};
}

TEST(NnShapes, PoolingAndGrads) {
  // (112 + 2 - 3) / 2 + 1 = 56
  expect_types(OpKind::MaxPool2d, {f32({8, 64, 112, 112})}, pool_attrs(3, 2, 1), {f32({8, 64, 56, 56})});
  expect_types(OpKind::AvgPool2d, {f32({8, 64, 7, 7})}, {{"window", int64_t{7}}}, {f32({8, 64, 1, 1})});
  expect_error(OpKind::AvgPool2d, {f32({8, 64, 7, 7})}, {}, "window", "missing attribute");
  expect_error(OpKind::AvgPool2d, {f32({8, 64, 7, 7})}, pool_attrs(3, 1, 3), "padding", "[0, window)");
  expect_error(OpKind::AvgPool2d, {f32({8, 64, 7})}, pool_attrs(3, 1, 0), "inputs[0]", "expected [N, C, H, W]");

  Attrs ag = pool_attrs(2, 2, 0);
  ag.set("input_shape", Ints{1, 3, 8, 8});
  expect_types(OpKind::AvgPool2dGrad, {f32({1, 3, 4, 4})}, ag, {f32({1, 3, 8, 8})});
  expect_error(OpKind::AvgPool2dGrad, {f32({1, 3, 4, 5})}, ag, "inputs[0]", "got [1, 3, 4, 5]");

  expect_types(OpKind::MaxPool2dGrad, {f32({1, 3, 8, 8}), f32({1, 3, 4, 4})}, pool_attrs(2, 2, 0),
               {f32({1, 3, 8, 8})});
  expect_error(OpKind::MaxPool2dGrad, {f32({1, 3, 8, 8}), f32({1, 3, 8, 8})}, pool_attrs(2, 2, 0), "inputs[1]",
               "expected shape [1, 3, 4, 4]");
}

TEST(NnShapes, MoEGateAndGrad) {
  Attrs attrs{{"k", int64_t{2}}, {"capacity", int64_t{5}}};
  expect_types(OpKind::MoEGate, {f32({4, 16, 8})}, attrs, {f32({4, 16, 8, 5})});
  expect_error(OpKind::MoEGate, {f32({4, 16, 8})}, {{"k", int64_t{9}}, {"capacity", int64_t{5}}}, "k",
               "must be in [1, 8] (the experts), got 9");
  expect_error(OpKind::MoEGate, {f32({4, 16, 8})}, {{"k", int64_t{1}}, {"capacity", int64_t{0}}}, "capacity",
               "at least 1");
  expect_error(OpKind::MoEGate, {f32({16, 8})}, attrs, "inputs[0]", "expected rank 3");
  expect_types(OpKind::MoEGateGrad, {f32({4, 16, 8}), f32({4, 16, 8, 5})}, attrs, {f32({4, 16, 8})});
  expect_error(OpKind::MoEGateGrad, {f32({4, 16, 8}), f32({4, 16, 8, 6})}, attrs, "inputs[1]",
               "expected shape [4, 16, 8, 5]");
}

TEST(NnShapes, CrossEntropyAndGrad) {
  expect_types(OpKind::CrossEntropy, {bf16({32, 1000}), i32({32})}, {}, {bf16({})});
  expect_error(OpKind::CrossEntropy, {f32({32, 1000}), i32({31})}, {}, "inputs[1]", "expected shape [32]");
  expect_error(OpKind::CrossEntropy, {f32({32, 1000}), f32({32})}, {}, "inputs[1]", "i32");
  expect_error(OpKind::CrossEntropy, {f32({2, 32, 1000}), i32({32})}, {}, "inputs[0]", "expected rank 2");
  expect_types(OpKind::CrossEntropyGrad, {f32({32, 1000}), i32({32}), f32({})}, {}, {f32({32, 1000})});
  expect_error(OpKind::CrossEntropyGrad, {f32({32, 1000}), i32({32}), f32({1})}, {}, "inputs[2]",
               "expected rank 0");
}

TEST(NnShapes, AttentionAndGrad) {
  const Attrs scale{{"scale", 0.125}};
  // q [B, N, S, D], k [B, N, T, D], v [B, N, T, Dv], a causal [S, T] bias -> out [B, N, S, Dv], lse f32.
  expect_types(OpKind::Attention, {bf16({2, 4, 16, 64}), bf16({2, 4, 24, 64}), bf16({2, 4, 24, 80}), f32({16, 24})},
               scale, {bf16({2, 4, 16, 80}), f32({2, 4, 16})});
  expect_types(OpKind::Attention, {f32({3, 5, 8}), f32({3, 7, 8}), f32({3, 7, 8}), f32({3, 1, 7})}, scale,
               {f32({3, 5, 8}), f32({3, 5})});
  expect_error(OpKind::Attention, {f32({3, 5, 8}), f32({3, 7, 9}), f32({3, 7, 8}), f32({5, 7})}, scale, "inputs[1]",
               "head dim differs");
  expect_error(OpKind::Attention, {f32({3, 5, 8}), f32({3, 7, 8}), f32({3, 6, 8}), f32({5, 7})}, scale, "inputs[2]",
               "key count differs");
  expect_error(OpKind::Attention, {f32({3, 5, 8}), f32({2, 7, 8}), f32({3, 7, 8}), f32({5, 7})}, scale, "inputs[1]",
               "leading dims differ");
  expect_error(OpKind::Attention, {f32({3, 5, 8}), f32({3, 7, 8}), f32({3, 7, 8}), f32({5, 6})}, scale, "inputs[3]",
               "does not broadcast into the scores [3, 5, 7]");
  expect_error(OpKind::Attention, {f32({3, 5, 8}), f32({3, 7, 8}), f32({3, 7, 8}), f32({5, 7})}, {}, "scale",
               "missing attribute");
  const TensorType q = bf16({2, 16, 64}), k = bf16({2, 24, 64}), v = bf16({2, 24, 32});
  expect_types(OpKind::AttentionGrad, {q, k, v, f32({16, 24}), bf16({2, 16, 32}), f32({2, 16}), bf16({2, 16, 32})},
               scale, {q, k, v});
  expect_error(OpKind::AttentionGrad, {q, k, v, f32({16, 24}), bf16({2, 16, 32}), bf16({2, 16}), bf16({2, 16, 32})},
               scale, "inputs[5]", "expected Attention's lse, f32 [2, 16]");
  expect_error(OpKind::AttentionGrad, {q, k, v, f32({16, 24}), bf16({2, 16, 32}), f32({2, 16}), bf16({2, 16, 64})},
               scale, "inputs[6]", "expected the gradient of out [2, 16, 32]");
  // Layout bsnd: q [B, S, N, D], k [B, T, N, D], v [B, T, N, Dv] -> out [B, S, N, Dv], lse [B, N, S].
  Attrs bsnd = scale;
  bsnd.set("layout", std::string("bsnd"));
  const TensorType bq = bf16({2, 16, 4, 64}), bk = bf16({2, 24, 4, 64}), bv = bf16({2, 24, 4, 80});
  expect_types(OpKind::Attention, {bq, bk, bv, f32({16, 24})}, bsnd, {bf16({2, 16, 4, 80}), f32({2, 4, 16})});
  expect_types(OpKind::AttentionGrad, {bq, bk, bv, f32({2, 4, 16, 24}), bf16({2, 16, 4, 80}), f32({2, 4, 16}),
                                       bf16({2, 16, 4, 80})}, bsnd, {bq, bk, bv});
  expect_error(OpKind::Attention, {bq, bf16({2, 24, 3, 64}), bv, f32({16, 24})}, bsnd, "inputs[1]", "leading dims differ");
  expect_error(OpKind::Attention, {bq, bk, bv, f32({24, 16})}, bsnd, "inputs[3]",
               "does not broadcast into the scores [2, 4, 16, 24]");
  expect_error(OpKind::Attention, {f32({3, 5, 8}), f32({3, 7, 8}), f32({3, 7, 8}), f32({5, 7})}, bsnd, "inputs[0]",
               "layout bsnd needs [B, S, N, D]");
  Attrs odd = scale;
  odd.set("layout", std::string("nsbd"));
  expect_error(OpKind::Attention, {bq, bk, bv, f32({16, 24})}, odd, "layout", "must be bnsd or bsnd");
}

TEST(NnShapes, OptimizerUpdates) {
  expect_types(OpKind::SgdUpdate, {f32({4, 4}), f32({4, 4})}, {{"lr", 0.1}}, {f32({4, 4})});
  expect_error(OpKind::SgdUpdate, {f32({4, 4}), f32({4})}, {{"lr", 0.1}}, "inputs[1]", "expected shape [4, 4]");
  expect_error(OpKind::SgdUpdate, {f32({4}), f32({4})}, {}, "lr", "missing attribute");
  Attrs adam{{"lr", 1e-3}, {"beta1", 0.9}, {"beta2", 0.999}, {"eps", 1e-8}, {"weight_decay", 0.0},
             {"step", int64_t{1}}};
  expect_types(OpKind::AdamUpdate, {f32({8}), bf16({8}), f32({8}), f32({8})}, adam, {f32({8}), f32({8}), f32({8})});
  expect_error(OpKind::AdamUpdate, {f32({8}), f32({8}), f32({8}), f32({7})}, adam, "inputs[3]",
               "expected shape [8]");
  Attrs bad_step = adam;
  bad_step.set("step", int64_t{0});
  expect_error(OpKind::AdamUpdate, {f32({8}), f32({8}), f32({8}), f32({8})}, bad_step, "step", "1-based");
  Attrs bad_beta = adam;
  bad_beta.set("beta2", 1.0);
  expect_error(OpKind::AdamUpdate, {f32({8}), f32({8}), f32({8}), f32({8})}, bad_beta, "beta2", "[0, 1)");
}

double flops_of(OpKind kind, const std::vector<TensorType>& inputs, const Attrs& attrs) {
  auto out = infer_types(kind, inputs, attrs);
  STRATA_CHECK(out.is_ok(), out.status().message());
  return op_flops(kind, inputs, *out, attrs);
}

TEST(NnFlops, DocumentedConstants) {
  // Conv: 2 * N * K * H' * W' * C * R * S; its two gradients cost the same.
  const double conv = 2.0 * 8 * 64 * 112 * 112 * 3 * 7 * 7;
  EXPECT_DOUBLE_EQ(flops_of(OpKind::Conv2d, {f32({8, 3, 224, 224}), f32({64, 3, 7, 7})}, conv_attrs(2, 3)), conv);
  Attrs gi = conv_attrs(2, 3);
  gi.set("input_shape", Ints{8, 3, 224, 224});
  EXPECT_DOUBLE_EQ(flops_of(OpKind::Conv2dGradInput, {f32({64, 3, 7, 7}), f32({8, 64, 112, 112})}, gi), conv);
  Attrs gf = conv_attrs(2, 3);
  gf.set("filter_shape", Ints{64, 3, 7, 7});
  EXPECT_DOUBLE_EQ(flops_of(OpKind::Conv2dGradFilter, {f32({8, 3, 224, 224}), f32({8, 64, 112, 112})}, gf), conv);

  EXPECT_DOUBLE_EQ(flops_of(OpKind::Softmax, {f32({4, 10})}, {}), 5 * 40);
  EXPECT_DOUBLE_EQ(flops_of(OpKind::LayerNorm, {f32({4, 10}), f32({10}), f32({10})}, {}), 8 * 40);
  EXPECT_DOUBLE_EQ(flops_of(OpKind::BatchNorm, {f32({2, 3, 4, 4}), f32({3}), f32({3})}, {}), 8 * 96);
  EXPECT_DOUBLE_EQ(flops_of(OpKind::MaxPool2d, {f32({1, 2, 8, 8})}, pool_attrs(2, 2, 0)), 4 * 2 * 16);
  EXPECT_DOUBLE_EQ(flops_of(OpKind::CrossEntropy, {f32({4, 10}), i32({4})}, {}), 5 * 40);
  EXPECT_DOUBLE_EQ(flops_of(OpKind::MoEGate, {f32({2, 4, 8})}, {{"k", int64_t{2}}, {"capacity", int64_t{3}}}),
                   2 * 4 * 8 * 3);
  EXPECT_DOUBLE_EQ(flops_of(OpKind::AdamUpdate, {f32({10}), f32({10}), f32({10}), f32({10})}, {{"lr", 0.1}}), 120);
  EXPECT_DOUBLE_EQ(flops_of(OpKind::Gather, {f32({10, 4}), i32({3})}, {}), 0);
}

}  // namespace
}  // namespace strata::ir
