// One valid sample per op kind, so that a kind added to the enum without a shape rule, a FLOP
// rule or a table row in enum order fails here; checks facts that hold across all kinds.
#include <gtest/gtest.h>

#include <cmath>
#include <map>

#include "ir_test_util.h"

namespace strata::ir {
namespace {

using testing::f32;
using testing::i32;
using Ints = std::vector<int64_t>;

struct Sample {
  std::vector<TensorType> inputs;
  Attrs attrs;
  size_t outputs = 1;
};

std::map<OpKind, Sample> samples() {
  const TensorType x = f32({2, 3});
  const TensorType img = f32({2, 4, 8, 8});
  const Attrs pool{{"window", int64_t{2}}, {"stride", int64_t{2}}};
  Attrs pool_grad = pool;
  pool_grad.set("input_shape", Ints{2, 4, 8, 8});
  Attrs conv_gi{{"input_shape", Ints{2, 4, 8, 8}}};
  Attrs conv_gf{{"filter_shape", Ints{5, 4, 3, 3}}};
  const Attrs moe{{"k", int64_t{1}}, {"capacity", int64_t{2}}};
  return {
      {OpKind::Parameter, {{}, {{"shape", Ints{2, 3}}}}},
      {OpKind::Input, {{}, {{"shape", Ints{2, 3}}}}},
      {OpKind::Constant, {{}, {{"shape", Ints{2, 3}}, {"value", 0.0}}}},
      {OpKind::Neg, {{x}, {}}},
      {OpKind::Exp, {{x}, {}}},
      {OpKind::Log, {{x}, {}}},
      {OpKind::Tanh, {{x}, {}}},
      {OpKind::Sqrt, {{x}, {}}},
      {OpKind::Rsqrt, {{x}, {}}},
      {OpKind::Relu, {{x}, {}}},
      {OpKind::Gelu, {{x}, {}}},
      {OpKind::Scale, {{x}, {{"scalar", 2.0}}}},
      {OpKind::Step, {{x}, {}}},
      {OpKind::Indicator, {{x}, {}}},
      {OpKind::GeluGrad, {{x, x}, {}}},
      {OpKind::Add, {{x, x}, {}}},
      {OpKind::Sub, {{x, x}, {}}},
      {OpKind::Mul, {{x, x}, {}}},
      {OpKind::Div, {{x, x}, {}}},
      {OpKind::Max, {{x, x}, {}}},
      {OpKind::ReduceSum, {{x}, {{"axes", Ints{1}}}}},
      {OpKind::ReduceMax, {{x}, {{"axes", Ints{1}}}}},
      {OpKind::ReduceMean, {{x}, {{"axes", Ints{1}}}}},
      {OpKind::Reshape, {{x}, {{"shape", Ints{6}}}}},
      {OpKind::Transpose, {{x}, {{"perm", Ints{1, 0}}}}},
      {OpKind::Broadcast, {{x}, {{"shape", Ints{4, 2, 3}}, {"dims", Ints{1, 2}}}}},
      {OpKind::Slice, {{x}, {{"starts", Ints{0, 1}}, {"limits", Ints{2, 3}}}}},
      {OpKind::Concat, {{x, x}, {{"axis", int64_t{0}}}}},
      {OpKind::Pad, {{x}, {{"low", Ints{1, 0}}, {"high", Ints{0, 1}}}}},
      {OpKind::Dot, {{x, f32({3, 5})}, {{"lhs_contract", Ints{1}}, {"rhs_contract", Ints{0}}}}},
      {OpKind::Gather, {{f32({10, 3}), i32({2})}, {}}},
      {OpKind::GatherGrad, {{i32({2}), f32({2, 3})}, {{"vocab", int64_t{10}}}}},
      {OpKind::Softmax, {{x}, {{"axis", int64_t{-1}}}}},
      {OpKind::SoftmaxGrad, {{x, x}, {{"axis", int64_t{-1}}}}},
      {OpKind::LayerNorm, {{x, f32({3}), f32({3})}, {}}},
      {OpKind::LayerNormGrad, {{x, f32({3}), x}, {}, 3}},
      {OpKind::Conv2d, {{img, f32({5, 4, 3, 3})}, {}}},
      {OpKind::Conv2dGradInput, {{f32({5, 4, 3, 3}), f32({2, 5, 6, 6})}, conv_gi}},
      {OpKind::Conv2dGradFilter, {{img, f32({2, 5, 6, 6})}, conv_gf}},
      {OpKind::BatchNorm, {{img, f32({4}), f32({4})}, {}}},
      {OpKind::BatchNormGrad, {{img, f32({4}), img}, {}, 3}},
      {OpKind::AvgPool2d, {{img}, pool}},
      {OpKind::AvgPool2dGrad, {{f32({2, 4, 4, 4})}, pool_grad}},
      {OpKind::MaxPool2d, {{img}, pool}},
      {OpKind::MaxPool2dGrad, {{img, f32({2, 4, 4, 4})}, pool}},
      {OpKind::MoEGate, {{f32({1, 4, 3})}, moe}},
      {OpKind::MoEGateGrad, {{f32({1, 4, 3}), f32({1, 4, 3, 2})}, moe}},
      {OpKind::CrossEntropy, {{x, i32({2})}, {}}},
      {OpKind::CrossEntropyGrad, {{x, i32({2}), f32({})}, {}}},
      {OpKind::SgdUpdate, {{x, x}, {{"lr", 0.1}}}},
      {OpKind::AdamUpdate, {{x, x, x, x}, {{"lr", 0.1}}, 3}},
      {OpKind::Attention, {{f32({2, 4, 8}), f32({2, 5, 8}), f32({2, 5, 3}), f32({4, 5})}, {{"scale", 0.5}}, 2}},
      {OpKind::AttentionGrad,
       {{f32({2, 4, 8}), f32({2, 5, 8}), f32({2, 5, 3}), f32({4, 5}), f32({2, 4, 3}), f32({2, 4}), f32({2, 4, 3})},
        {{"scale", 0.5}},
        3}},
  };
}

TEST(AllKinds, EveryKindHasAValidSample) {
  const auto all = samples();
  ASSERT_EQ(all.size(), static_cast<size_t>(OpKind::kCount)) << "a kind lacks a sample here";
  for (const auto& [kind, sample] : all) {
    SCOPED_TRACE(op_kind_name(kind));
    const OpInfo& info = op_info(kind);
    EXPECT_GE(static_cast<int>(sample.inputs.size()), info.min_inputs);
    EXPECT_EQ(info.is_source, sample.inputs.empty());
    auto out = infer_types(kind, sample.inputs, sample.attrs);
    ASSERT_TRUE(out.is_ok()) << out.error().message();
    EXPECT_EQ(out->size(), sample.outputs);
    if (info.elementwise) {
      EXPECT_EQ(type_string((*out)[0]), type_string(sample.inputs[0]));
    }
    const double flops = op_flops(kind, sample.inputs, *out, sample.attrs);
    EXPECT_TRUE(std::isfinite(flops));
    EXPECT_GE(flops, 0);
    if (info.is_source) {
      EXPECT_EQ(flops, 0);
    }
  }
}

TEST(AllKinds, LayoutOpsCountNoFlopsAndComputeOpsDo) {
  const auto all = samples();
  for (OpKind kind : {OpKind::Reshape, OpKind::Transpose, OpKind::Broadcast, OpKind::Slice, OpKind::Concat,
                      OpKind::Pad}) {
    const Sample& s = all.at(kind);
    auto out = infer_types(kind, s.inputs, s.attrs);
    ASSERT_TRUE(out.is_ok());
    EXPECT_EQ(op_flops(kind, s.inputs, *out, s.attrs), 0) << op_kind_name(kind);
  }
  for (OpKind kind : {OpKind::Exp, OpKind::Add, OpKind::Dot, OpKind::Softmax, OpKind::Conv2d,
                      OpKind::CrossEntropyGrad, OpKind::AdamUpdate, OpKind::MaxPool2dGrad}) {
    const Sample& s = all.at(kind);
    auto out = infer_types(kind, s.inputs, s.attrs);
    ASSERT_TRUE(out.is_ok());
    EXPECT_GT(op_flops(kind, s.inputs, *out, s.attrs), 0) << op_kind_name(kind);
  }
}

}  // namespace
}  // namespace strata::ir
