// Shape inference for sources, elementwise ops, reductions, layout ops and dot_general:
// correct output types, and for each bad input an Error naming the right field.
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

TEST(SourceShapes, ShapeAndDtypeFromAttributes) {
  expect_types(OpKind::Input, {}, {{"shape", Shape{4, 16}}, {"dtype", std::string("i32")}}, {i32({4, 16})});
  expect_types(OpKind::Input, {}, {{"shape", Shape{3}}}, {f32({3})});  // dtype defaults to f32
  expect_types(OpKind::Parameter, {}, {{"shape", Shape{8, 2}}, {"dtype", std::string("bf16")}}, {bf16({8, 2})});
  expect_types(OpKind::Constant, {}, {{"shape", Shape{}}, {"value", 1.0}}, {f32({})});
  expect_error(OpKind::Input, {}, {}, "shape", "missing attribute");
  expect_error(OpKind::Input, {}, {{"shape", Shape{2, -3}}}, "shape", "negative dimension");
  expect_error(OpKind::Input, {}, {{"shape", Shape{2}}, {"dtype", std::string("f8")}}, "dtype", "unknown dtype");
  expect_error(OpKind::Input, {}, {{"shape", Shape{2}}, {"dtype", int64_t{1}}}, "dtype", "expected a string");
  expect_error(OpKind::Parameter, {}, {{"shape", Shape{2}}, {"dtype", std::string("i32")}}, "dtype",
               "floating-point");
  expect_error(OpKind::Parameter, {}, {{"shape", Shape{2}}, {"init", std::string("xavier")}}, "init", "xavier");
  expect_error(OpKind::Constant, {}, {{"shape", Shape{2}}}, "value", "missing attribute");
}

TEST(ElementwiseShapes, UnaryKeepsType) {
  for (OpKind kind : {OpKind::Neg, OpKind::Exp, OpKind::Log, OpKind::Tanh, OpKind::Sqrt, OpKind::Rsqrt,
                      OpKind::Relu, OpKind::Gelu, OpKind::Step, OpKind::Indicator}) {
    expect_types(kind, {bf16({2, 3})}, {}, {bf16({2, 3})});
  }
  expect_types(OpKind::Scale, {f32({5})}, {{"scalar", 0.5}}, {f32({5})});
  expect_error(OpKind::Scale, {f32({5})}, {}, "scalar", "missing attribute");
  expect_error(OpKind::Exp, {i32({5})}, {}, "inputs[0]", "floating-point");
  expect_types(OpKind::Neg, {i32({5})}, {}, {i32({5})});
  expect_types(OpKind::GeluGrad, {f32({2, 3}), f32({2, 3})}, {}, {f32({2, 3})});
  expect_error(OpKind::GeluGrad, {f32({2, 3}), f32({3, 2})}, {}, "inputs[1]", "f32[3, 2]");
}

TEST(ElementwiseShapes, NumpyBroadcasting) {
  expect_types(OpKind::Add, {f32({2, 3, 4}), f32({4})}, {}, {f32({2, 3, 4})});
  expect_types(OpKind::Mul, {f32({2, 1, 4}), f32({3, 1})}, {}, {f32({2, 3, 4})});
  expect_types(OpKind::Sub, {f32({}), f32({7, 2})}, {}, {f32({7, 2})});
  expect_types(OpKind::Div, {f32({1}), f32({1})}, {}, {f32({1})});
  expect_types(OpKind::Max, {f32({5, 1}), f32({1, 6})}, {}, {f32({5, 6})});
  expect_error(OpKind::Add, {f32({2, 3}), f32({4})}, {}, "inputs[1]", "cannot broadcast [2, 3] with [4]: 3 vs 4");
  expect_error(OpKind::Add, {f32({2}), bf16({2})}, {}, "inputs[1]", "dtype bf16 differs");
}

TEST(ReductionShapes, AxesKeepdimsAndNegativeAxes) {
  expect_types(OpKind::ReduceSum, {f32({2, 3, 4})}, {{"axes", Ints{1}}}, {f32({2, 4})});
  expect_types(OpKind::ReduceMax, {f32({2, 3, 4})}, {{"axes", Ints{-1}}, {"keepdims", int64_t{1}}},
               {f32({2, 3, 1})});
  expect_types(OpKind::ReduceMean, {f32({2, 3, 4})}, {{"axes", Ints{0, 2}}}, {f32({3})});
  expect_types(OpKind::ReduceSum, {f32({2, 3})}, {}, {f32({})});  // no axes: all dims
  expect_types(OpKind::ReduceSum, {f32({2, 3})}, {{"keepdims", int64_t{1}}}, {f32({1, 1})});
  expect_error(OpKind::ReduceSum, {f32({2, 3})}, {{"axes", Ints{2}}}, "axes", "axis 2 out of range for rank 2");
  expect_error(OpKind::ReduceSum, {f32({2, 3})}, {{"axes", Ints{1, -1}}}, "axes", "listed twice");
  expect_error(OpKind::ReduceSum, {f32({2, 3})}, {{"axes", Ints{0}}, {"keepdims", int64_t{2}}}, "keepdims",
               "expected 0 or 1");
  expect_error(OpKind::ReduceSum, {f32({2, 3})}, {{"axes", int64_t{0}}}, "axes", "expected an integer list");
}

TEST(LayoutShapes, Reshape) {
  expect_types(OpKind::Reshape, {f32({2, 3, 4})}, {{"shape", Ints{6, 4}}}, {f32({6, 4})});
  expect_types(OpKind::Reshape, {f32({2, 3, 4})}, {{"shape", Ints{-1, 12}}}, {f32({2, 12})});
  expect_error(OpKind::Reshape, {f32({2, 3, 4})}, {{"shape", Ints{5, 5}}}, "shape",
               "[5, 5] has 25 elements, input f32[2, 3, 4] has 24");
  expect_error(OpKind::Reshape, {f32({2, 3, 4})}, {{"shape", Ints{-1, 5}}}, "shape", "cannot infer -1");
  expect_error(OpKind::Reshape, {f32({4})}, {{"shape", Ints{-1, -1}}}, "shape", "bad dimension -1");
}

TEST(LayoutShapes, Transpose) {
  expect_types(OpKind::Transpose, {f32({2, 3, 4})}, {{"perm", Ints{2, 0, 1}}}, {f32({4, 2, 3})});
  expect_error(OpKind::Transpose, {f32({2, 3, 4})}, {{"perm", Ints{0, 1}}}, "perm", "2 entries for rank 3");
  expect_error(OpKind::Transpose, {f32({2, 3, 4})}, {{"perm", Ints{0, 1, 1}}}, "perm", "not a permutation");
  expect_error(OpKind::Transpose, {f32({2, 3})}, {{"perm", Ints{0, 2}}}, "perm", "not a permutation");
}

TEST(LayoutShapes, Broadcast) {
  expect_types(OpKind::Broadcast, {f32({4})}, {{"shape", Ints{2, 3, 4}}, {"dims", Ints{2}}}, {f32({2, 3, 4})});
  expect_types(OpKind::Broadcast, {f32({2, 1})}, {{"shape", Ints{2, 5, 7}}, {"dims", Ints{0, 2}}},
               {f32({2, 5, 7})});
  expect_error(OpKind::Broadcast, {f32({4})}, {{"shape", Ints{2, 3}}, {"dims", Ints{1}}}, "dims",
               "input dim 0 of size 4 cannot become output dim 1 of size 3");
  expect_error(OpKind::Broadcast, {f32({4})}, {{"shape", Ints{4}}, {"dims", Ints{1}}}, "dims", "out of range");
  expect_error(OpKind::Broadcast, {f32({1, 1})}, {{"shape", Ints{4, 4}}, {"dims", Ints{0, 0}}}, "dims",
               "listed twice");
  expect_error(OpKind::Broadcast, {f32({4, 4})}, {{"shape", Ints{4, 4}}, {"dims", Ints{0}}}, "dims",
               "1 entries for input rank 2");
  expect_error(OpKind::Broadcast, {f32({4})}, {{"dims", Ints{0}}}, "shape", "missing attribute");
}

TEST(LayoutShapes, SliceConcatPad) {
  expect_types(OpKind::Slice, {f32({8, 6})}, {{"starts", Ints{2, 0}}, {"limits", Ints{5, 6}}}, {f32({3, 6})});
  expect_error(OpKind::Slice, {f32({8, 6})}, {{"starts", Ints{2, 0}}, {"limits", Ints{9, 6}}}, "limits",
               "limit 9 outside [2, 8] for dim 0");
  expect_error(OpKind::Slice, {f32({8, 6})}, {{"starts", Ints{-1, 0}}, {"limits", Ints{2, 6}}}, "starts",
               "start -1 outside dim 0");
  expect_error(OpKind::Slice, {f32({8, 6})}, {{"starts", Ints{0}}, {"limits", Ints{2, 6}}}, "starts",
               "1 entries for rank 2");

  expect_types(OpKind::Concat, {f32({2, 3}), f32({2, 5}), f32({2, 1})}, {{"axis", int64_t{-1}}}, {f32({2, 9})});
  expect_types(OpKind::Concat, {f32({2, 3}), f32({4, 3})}, {{"axis", int64_t{0}}}, {f32({6, 3})});
  expect_error(OpKind::Concat, {f32({2, 3}), f32({4, 3})}, {{"axis", int64_t{1}}}, "inputs[1]",
               "dim 0 is 4, inputs[0] has 2");
  expect_error(OpKind::Concat, {f32({2, 3}), f32({2})}, {{"axis", int64_t{0}}}, "inputs[1]", "rank 2");
  expect_error(OpKind::Concat, {f32({2, 3})}, {{"axis", int64_t{2}}}, "axis", "out of range");
  expect_error(OpKind::Concat, {f32({2, 3})}, {}, "axis", "missing attribute");

  expect_types(OpKind::Pad, {f32({3, 6})}, {{"low", Ints{2, 0}}, {"high", Ints{3, 1}}}, {f32({8, 7})});
  expect_error(OpKind::Pad, {f32({3, 6})}, {{"low", Ints{2, -1}}, {"high", Ints{3, 1}}}, "low", "negative");
  expect_error(OpKind::Pad, {f32({3, 6})}, {{"low", Ints{2, 0}}, {"high", Ints{3}}}, "high", "1 entries");
}

Attrs dot_attrs(Ints lb, Ints rb, Ints lc, Ints rc) {
  return Attrs{{"lhs_batch", lb}, {"rhs_batch", rb}, {"lhs_contract", lc}, {"rhs_contract", rc}};
}

TEST(DotShapes, MatmulBatchedAndOuter) {
  // [M, K] x [K, N]
  expect_types(OpKind::Dot, {f32({4, 768}), f32({768, 1024})}, dot_attrs({}, {}, {1}, {0}), {f32({4, 1024})});
  // Batched attention scores: [B, H, S, D] x [B, H, T, D] -> [B, H, S, T].
  expect_types(OpKind::Dot, {f32({2, 12, 128, 64}), f32({2, 12, 256, 64})}, dot_attrs({0, 1}, {0, 1}, {3}, {3}),
               {f32({2, 12, 128, 256})});
  // Batch dims come first even if they are not leading in the operand.
  expect_types(OpKind::Dot, {f32({5, 3, 7}), f32({7, 3, 9})}, dot_attrs({1}, {1}, {2}, {0}), {f32({3, 5, 9})});
  // Absent attributes: an outer product.
  expect_types(OpKind::Dot, {f32({3}), f32({4})}, {}, {f32({3, 4})});
}

TEST(DotShapes, Errors) {
  expect_error(OpKind::Dot, {f32({4, 768}), f32({1024, 8})}, dot_attrs({}, {}, {1}, {0}), "rhs_contract",
               "contracting dims differ: 768 vs 1024");
  expect_error(OpKind::Dot, {f32({2, 4, 8}), f32({3, 8, 5})}, dot_attrs({0}, {0}, {2}, {1}), "rhs_batch",
               "batch dims differ: 2 vs 3");
  expect_error(OpKind::Dot, {f32({4, 8}), f32({8, 8})}, dot_attrs({}, {}, {1}, {}), "rhs_contract",
               "has 0 dims, lhs_contract has 1");
  expect_error(OpKind::Dot, {f32({4, 8}), f32({8, 8})}, dot_attrs({1}, {0}, {1}, {1}), "lhs_contract",
               "dim 1 is used twice");
  expect_error(OpKind::Dot, {f32({4, 8}), f32({8, 8})}, dot_attrs({}, {}, {2}, {0}), "lhs_contract",
               "dim 2 out of range for rank 2");
  expect_error(OpKind::Dot, {f32({4, 8}), bf16({8, 8})}, dot_attrs({}, {}, {1}, {0}), "inputs[1]", "differs");
  expect_error(OpKind::Dot, {f32({4, 8}), f32({8, 8})}, {{"lhs_contract", int64_t{1}}}, "lhs_contract",
               "expected an integer list");
}

TEST(DotFlops, DotGeneral) {
  // 2 * B * M * N * K
  auto attrs = dot_attrs({0}, {0}, {2}, {1});
  std::vector<TensorType> in{f32({3, 5, 7}), f32({3, 7, 11})};
  auto out = infer_types(OpKind::Dot, in, attrs);
  ASSERT_TRUE(out.is_ok());
  EXPECT_DOUBLE_EQ(op_flops(OpKind::Dot, in, *out, attrs), 2.0 * 3 * 5 * 11 * 7);
  // Two contracting dims.
  auto attrs2 = dot_attrs({}, {}, {1, 2}, {0, 1});
  std::vector<TensorType> in2{f32({4, 6, 8}), f32({6, 8, 10})};
  auto out2 = infer_types(OpKind::Dot, in2, attrs2);
  ASSERT_TRUE(out2.is_ok());
  EXPECT_EQ(type_string((*out2)[0]), "f32[4, 10]");
  EXPECT_DOUBLE_EQ(op_flops(OpKind::Dot, in2, *out2, attrs2), 2.0 * 4 * 10 * 6 * 8);
}

TEST(OtherFlops, ElementwiseReductionLayout) {
  EXPECT_DOUBLE_EQ(op_flops(OpKind::Add, {f32({4, 5}), f32({5})}, {f32({4, 5})}, {}), 20);
  EXPECT_DOUBLE_EQ(op_flops(OpKind::Gelu, {f32({4, 5})}, {f32({4, 5})}, {}), 160);
  EXPECT_DOUBLE_EQ(op_flops(OpKind::ReduceSum, {f32({4, 5})}, {f32({4})}, {{"axes", Ints{1}}}), 20);
  EXPECT_DOUBLE_EQ(op_flops(OpKind::Transpose, {f32({4, 5})}, {f32({5, 4})}, {{"perm", Ints{1, 0}}}), 0);
  EXPECT_DOUBLE_EQ(op_flops(OpKind::Reshape, {f32({4, 5})}, {f32({20})}, {{"shape", Ints{20}}}), 0);
  EXPECT_DOUBLE_EQ(op_flops(OpKind::Parameter, {}, {f32({4, 5})}, {}), 0);
}

}  // namespace
}  // namespace strata::ir
