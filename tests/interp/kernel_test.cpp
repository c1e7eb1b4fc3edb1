// Each interpreter kernel against a small hand-computed case (or nested loops / an adjoint identity
// where a table of numbers would be unreadable).
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "strata/interp/interp.h"

namespace strata::interp {
namespace {

using ir::Attrs;
using ir::OpKind;
using ir::Shape;
using ir::Value;
using Ints = std::vector<int64_t>;
using Feeds = std::map<std::string, Tensor>;

// Runs one op on fed Inputs named in0, in1, ... and returns all of its outputs.
std::vector<Tensor> run_op(OpKind kind, const std::vector<Tensor>& inputs, Attrs attrs = {},
                           const std::vector<DType>& dtypes = {}) {
  ir::Graph g;
  Feeds feeds;
  std::vector<Value> values;
  for (size_t i = 0; i < inputs.size(); ++i) {
    const std::string name = "in" + std::to_string(i);
    values.push_back(g.input(name, inputs[i].shape, i < dtypes.size() ? dtypes[i] : DType::f32));
    feeds[name] = inputs[i];
  }
  const ir::OpId id = g.add(kind, values, std::move(attrs), "op");
  auto out = run(g, feeds, Precision::f64);
  EXPECT_TRUE(out.is_ok()) << (out ? "" : out.error().message());
  return out ? out->values[id] : std::vector<Tensor>{};
}

Tensor iota_tensor(Shape shape, double start = 0.0, double step = 1.0) {
  Tensor t(std::move(shape));
  for (int64_t i = 0; i < t.numel(); ++i) t[i] = start + step * static_cast<double>(i);
  return t;
}

void expect_values(const Tensor& t, const std::vector<double>& expected, double tolerance = 1e-12) {
  ASSERT_EQ(t.data.size(), expected.size());
  for (size_t i = 0; i < expected.size(); ++i) EXPECT_NEAR(t.data[i], expected[i], tolerance) << "at " << i;
}

TEST(Kernels, ElementwiseAndBroadcasting) {
  expect_values(run_op(OpKind::Gelu, {Tensor({2}, {1.0, -0.5})})[0], {0.8411919906082768, -0.15428599017532825}, 1e-12);
  expect_values(run_op(OpKind::Rsqrt, {Tensor({1}, {4.0})})[0], {0.5});
  expect_values(run_op(OpKind::Scale, {Tensor({2}, {1.0, -2.0})}, {{"scalar", 3.0}})[0], {3.0, -6.0});
  expect_values(run_op(OpKind::Step, {Tensor({3}, {-1.0, 0.0, 2.0})})[0], {0, 0, 1});
  expect_values(run_op(OpKind::Indicator, {Tensor({3}, {-1.0, 0.0, 2.0})})[0], {1, 0, 1});
  expect_values(run_op(OpKind::GeluGrad, {Tensor({1}, {0.0}), Tensor({1}, {3.0})})[0], {1.5});
  // [2, 1] - [3] -> [2, 3]
  expect_values(run_op(OpKind::Sub, {Tensor({2, 1}, {10, 20}), Tensor({3}, {1, 2, 3})})[0], {9, 8, 7, 19, 18, 17});
  expect_values(run_op(OpKind::Max, {Tensor({3}, {1, 5, -2}), Tensor({1}, {0})})[0], {1, 5, 0});
}

TEST(Kernels, Reductions) {
  const Tensor x({2, 3}, {1, 2, 3, 4, 5, 6});
  expect_values(run_op(OpKind::ReduceSum, {x}, {{"axes", Ints{1}}})[0], {6, 15});
  const Tensor max = run_op(OpKind::ReduceMax, {x}, {{"axes", Ints{0}}, {"keepdims", int64_t{1}}})[0];
  EXPECT_EQ(max.shape, (Shape{1, 3}));
  expect_values(max, {4, 5, 6});
  expect_values(run_op(OpKind::ReduceMean, {x})[0], {3.5});
}

TEST(Kernels, Layout) {
  const Tensor x({2, 3}, {1, 2, 3, 4, 5, 6});
  expect_values(run_op(OpKind::Transpose, {x}, {{"perm", Ints{1, 0}}})[0], {1, 4, 2, 5, 3, 6});
  expect_values(run_op(OpKind::Broadcast, {Tensor({3}, {7, 8, 9})}, {{"shape", Shape{2, 3}}, {"dims", Ints{1}}})[0],
                {7, 8, 9, 7, 8, 9});
  expect_values(run_op(OpKind::Broadcast, {Tensor({2}, {7, 8})}, {{"shape", Shape{2, 3}}, {"dims", Ints{0}}})[0],
                {7, 7, 7, 8, 8, 8});
  expect_values(run_op(OpKind::Slice, {x}, {{"starts", Ints{1, 1}}, {"limits", Ints{2, 3}}})[0], {5, 6});
  expect_values(run_op(OpKind::Pad, {Tensor({1, 2}, {1, 2})}, {{"low", Ints{1, 0}}, {"high", Ints{0, 1}}})[0],
                {0, 0, 0, 1, 2, 0});
  expect_values(run_op(OpKind::Concat, {x, Tensor({2, 1}, {9, 10})}, {{"axis", int64_t{1}}})[0],
                {1, 2, 3, 9, 4, 5, 6, 10});
  const Tensor r = run_op(OpKind::Reshape, {x}, {{"shape", Shape{3, 2}}})[0];
  EXPECT_EQ(r.shape, (Shape{3, 2}));
  expect_values(r, {1, 2, 3, 4, 5, 6});
}

TEST(Kernels, DotAgainstNestedLoops) {
  // Batched matmul with the lhs stored transposed: out[b, i, j] = sum_k lhs[b, k, i] * rhs[j, b, k].
  const int64_t B = 2, I = 3, K = 4, J = 2;
  const Tensor lhs = iota_tensor({B, K, I}, -3.0, 0.25);
  const Tensor rhs = iota_tensor({J, B, K}, 1.0, -0.5);
  const Tensor y = run_op(OpKind::Dot, {lhs, rhs},
                          {{"lhs_batch", Ints{0}}, {"rhs_batch", Ints{1}}, {"lhs_contract", Ints{1}},
                           {"rhs_contract", Ints{2}}})[0];
  ASSERT_EQ(y.shape, (Shape{B, I, J}));
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t i = 0; i < I; ++i) {
      for (int64_t j = 0; j < J; ++j) {
        double sum = 0;
        for (int64_t k = 0; k < K; ++k) sum += lhs[(b * K + k) * I + i] * rhs[(j * B + b) * K + k];
        EXPECT_DOUBLE_EQ(y[(b * I + i) * J + j], sum);
      }
    }
  }
  // Outer product: no contracting dims.
  expect_values(run_op(OpKind::Dot, {Tensor({2}, {1, 2}), Tensor({2}, {3, 4})})[0], {3, 4, 6, 8});
}

TEST(Kernels, Conv2dKnownAnswers) {
  const Tensor x = iota_tensor({1, 1, 3, 3}, 1.0);  // 1..9
  // [[1, 0], [0, -1]]: x[i, j] - x[i+1, j+1] = -4 everywhere.
  expect_values(run_op(OpKind::Conv2d, {x, Tensor({1, 1, 2, 2}, {1, 0, 0, -1})})[0], {-4, -4, -4, -4});
  // 3x3 box with padding 1: sums of neighbourhoods.
  expect_values(run_op(OpKind::Conv2d, {x, Tensor({1, 1, 3, 3}, 1.0)}, {{"padding", int64_t{1}}})[0],
                {12, 21, 16, 27, 45, 33, 24, 39, 28});
  // Stride 2, padding 1 keeps the corners' neighbourhoods.
  expect_values(run_op(OpKind::Conv2d, {x, Tensor({1, 1, 3, 3}, 1.0)}, {{"padding", int64_t{1}}, {"stride", int64_t{2}}})[0],
                {12, 16, 24, 28});
}

TEST(Kernels, ConvGradsAreAdjoints) {
  // <conv(x, w), dy> = <x, grad_input(w, dy)> = <w, grad_filter(x, dy)>.
  const Tensor x = iota_tensor({2, 2, 5, 4}, -1.0, 0.1);
  const Tensor w = iota_tensor({3, 2, 3, 2}, 0.5, -0.07);
  const Attrs conv{{"stride", int64_t{2}}, {"padding", int64_t{1}}};
  const Tensor y = run_op(OpKind::Conv2d, {x, w}, conv)[0];
  const Tensor dy = iota_tensor(y.shape, 0.3, 0.11);
  Attrs gi = conv, gf = conv;
  gi.set("input_shape", x.shape);
  gf.set("filter_shape", w.shape);
  const Tensor dx = run_op(OpKind::Conv2dGradInput, {w, dy}, gi)[0];
  const Tensor dw = run_op(OpKind::Conv2dGradFilter, {x, dy}, gf)[0];
  auto inner = [](const Tensor& a, const Tensor& b) {
    double s = 0;
    for (int64_t i = 0; i < a.numel(); ++i) s += a[i] * b[i];
    return s;
  };
  EXPECT_NEAR(inner(y, dy), inner(x, dx), 1e-9);
  EXPECT_NEAR(inner(y, dy), inner(w, dw), 1e-9);
  EXPECT_GT(std::abs(inner(y, dy)), 1.0);
}

TEST(Kernels, Pools) {
  const Tensor x = iota_tensor({1, 1, 4, 4});
  expect_values(run_op(OpKind::MaxPool2d, {x}, {{"window", int64_t{2}}})[0], {5, 7, 13, 15});
  expect_values(run_op(OpKind::AvgPool2d, {x}, {{"window", int64_t{2}}})[0], {2.5, 4.5, 10.5, 12.5});
  // Padding counts as zeros in the average: a corner of a 3x3 ones input sees 4 of 9.
  const Tensor corners = run_op(OpKind::AvgPool2d, {Tensor({1, 1, 3, 3}, 1.0)},
                                {{"window", int64_t{3}}, {"stride", int64_t{2}}, {"padding", int64_t{1}}})[0];
  expect_values(corners, {4.0 / 9, 4.0 / 9, 4.0 / 9, 4.0 / 9});
  expect_values(run_op(OpKind::MaxPool2dGrad, {x, Tensor({1, 1, 2, 2}, {1, 2, 3, 4})}, {{"window", int64_t{2}}})[0],
                {0, 0, 0, 0, 0, 1, 0, 2, 0, 0, 0, 0, 0, 3, 0, 4});
  expect_values(run_op(OpKind::AvgPool2dGrad, {Tensor({1, 1, 1, 1}, {8})},
                       {{"window", int64_t{2}}, {"input_shape", Shape{1, 1, 2, 2}}})[0],
                {2, 2, 2, 2});
}

TEST(Kernels, SoftmaxAndNorms) {
  expect_values(run_op(OpKind::Softmax, {Tensor({2, 2}, {0, 0, std::log(3.0), 0})}, {{"axis", int64_t{0}}})[0],
                {0.25, 0.5, 0.75, 0.5});
  expect_values(run_op(OpKind::SoftmaxGrad, {Tensor({2}, {0.25, 0.75}), Tensor({2}, {1, 0})}, {{"axis", int64_t{0}}})[0],
                {0.25 * 0.75, -0.75 * 0.25});
  const double s = std::sqrt(1.5);  // [1, 2, 3]: mean 2, variance 2/3
  expect_values(run_op(OpKind::LayerNorm, {Tensor({1, 3}, {1, 2, 3}), Tensor({3}, {1, 2, 1}), Tensor({3}, {0, 0, 5})},
                       {{"eps", 1e-12}})[0],
                {-s, 0, 5 + s}, 1e-9);
  // Channel 0 holds {1, 3} over N: mean 2, variance 1; channel 1 holds {5, 5}: normalises to 0.
  expect_values(run_op(OpKind::BatchNorm, {Tensor({2, 2, 1, 1}, {1, 5, 3, 5}), Tensor({2}, {2, 1}), Tensor({2}, {1, 7})},
                       {{"eps", 1e-12}})[0],
                {-1, 7, 3, 7}, 1e-6);
}

TEST(Kernels, GatherAndGrad) {
  const Tensor table({3, 2}, {1, 2, 3, 4, 5, 6});
  expect_values(run_op(OpKind::Gather, {table, Tensor({3}, {2, 0, 2})}, {}, {DType::f32, DType::i32})[0],
                {5, 6, 1, 2, 5, 6});
  expect_values(run_op(OpKind::GatherGrad, {Tensor({3}, {2, 0, 2}), Tensor({3, 2}, {1, 1, 2, 2, 3, 3})},
                       {{"vocab", int64_t{3}}}, {DType::i32, DType::f32})[0],
                {2, 2, 0, 0, 4, 4});
}

TEST(Kernels, MoEGateRoutesInArrivalOrder) {
  // Top-1, capacity 1: token 0 takes expert 0; token 1 also prefers expert 0, which is full, so it
  // is dropped; token 2 takes expert 1.
  const Tensor probs({1, 3, 2}, {0.7, 0.3, 0.6, 0.4, 0.2, 0.8});
  expect_values(run_op(OpKind::MoEGate, {probs}, {{"k", int64_t{1}}, {"capacity", int64_t{1}}})[0],
                {0.7, 0, 0, 0, 0, 0.8});
  // Top-2, capacity 2: token 2 finds both experts full except expert 1's second slot.
  const Tensor combine = run_op(OpKind::MoEGate, {probs}, {{"k", int64_t{2}}, {"capacity", int64_t{2}}})[0];
  ASSERT_EQ(combine.shape, (Shape{1, 3, 2, 2}));
  expect_values(combine, {0.7, 0, 0.3, 0, /*token 1*/ 0, 0.6, 0, 0.4, /*token 2: all full*/ 0, 0, 0, 0});
  const Tensor dcombine = iota_tensor({1, 3, 2, 2}, 1.0);
  expect_values(run_op(OpKind::MoEGateGrad, {probs, dcombine}, {{"k", int64_t{2}}, {"capacity", int64_t{2}}})[0],
                {1, 3, 6, 8, 0, 0});
}

TEST(Kernels, CrossEntropyAndGrad) {
  const Tensor logits({2, 2}, {0, std::log(3.0), 5, 5});
  const Tensor labels({2}, {1, 0});
  expect_values(run_op(OpKind::CrossEntropy, {logits, labels}, {}, {DType::f32, DType::i32})[0],
                {(-std::log(0.75) - std::log(0.5)) / 2}, 1e-12);
  expect_values(run_op(OpKind::CrossEntropyGrad, {logits, labels, Tensor({}, {4.0})}, {},
                       {DType::f32, DType::i32, DType::f32})[0],
                {0.5, -0.5, -1.0, 1.0}, 1e-12);
}

// Attention and AttentionGrad against the unfused composition they replace (Dot, Scale, Add,
// Softmax, Dot; dP Dot, SoftmaxGrad, Scale, the dq/dk/dv Dots) on random values with a causal bias.
TEST(Kernels, AttentionMatchesTheUnfusedComposition) {
  const int64_t B = 2, S = 5, T = 7, D = 3, Dv = 4;
  const double scale = 0.6;
  auto dot = [](Ints lb, Ints rb, Ints lc, Ints rc) {
    return Attrs{{"lhs_batch", lb}, {"rhs_batch", rb}, {"lhs_contract", lc}, {"rhs_contract", rc}};
  };
  ir::Graph g;
  const Value q = g.input("q", {B, S, D}), k = g.input("k", {B, T, D}), v = g.input("v", {B, T, Dv});
  const Value bias = g.input("bias", {S, T}), dout = g.input("dout", {B, S, Dv});
  const Value scores = g.add_value(OpKind::Dot, {q, k}, dot({0}, {0}, {2}, {2}), "scores");
  const Value logits = g.add_value(OpKind::Add, {g.add_value(OpKind::Scale, {scores}, {{"scalar", scale}}, "scale"), bias}, {}, "mask");
  const Value p = g.add_value(OpKind::Softmax, {logits}, {{"axis", int64_t{-1}}}, "p");
  const ir::OpId out = g.add(OpKind::Dot, {p, v}, dot({0}, {0}, {2}, {1}), "out");
  const Value dp = g.add_value(OpKind::Dot, {dout, v}, dot({0}, {0}, {2}, {2}), "dp");
  const Value ds = g.add_value(OpKind::Scale, {g.add_value(OpKind::SoftmaxGrad, {p, dp}, {{"axis", int64_t{-1}}}, "ds")},
                               {{"scalar", scale}}, "ds_scaled");
  const ir::OpId dq = g.add(OpKind::Dot, {ds, k}, dot({0}, {0}, {2}, {1}), "dq");
  const ir::OpId dk = g.add(OpKind::Dot, {ds, q}, dot({0}, {0}, {1}, {1}), "dk");
  const ir::OpId dv = g.add(OpKind::Dot, {p, dout}, dot({0}, {0}, {1}, {1}), "dv");
  const ir::OpId att = g.add(OpKind::Attention, {q, k, v, bias}, {{"scale", scale}}, "att");
  const ir::OpId grad = g.add(OpKind::AttentionGrad, {q, k, v, bias, Value{att, 0}, Value{att, 1}, dout},
                              {{"scale", scale}}, "att_grad");
  Feeds feeds;
  uint64_t state = 7;
  auto random = [&](Shape shape) {
    Tensor t(std::move(shape));
    for (int64_t i = 0; i < t.numel(); ++i) {
      state = state * 6364136223846793005ULL + 1442695040888963407ULL;
      t[i] = static_cast<double>(state >> 11) / 9007199254740992.0 * 2.0 - 1.0;
    }
    return t;
  };
  feeds["q"] = random({B, S, D});
  feeds["k"] = random({B, T, D});
  feeds["v"] = random({B, T, Dv});
  feeds["dout"] = random({B, S, Dv});
  feeds["bias"] = random({S, T});
  for (int64_t i = 0; i < S; ++i)
    for (int64_t j = i + 3; j < T; ++j) feeds["bias"][i * T + j] = -1e9;  // causal, keys shifted by 2
  auto r = run(g, feeds, Precision::f64);
  ASSERT_TRUE(r.is_ok()) << r.error().message();
  auto expect_close = [](const Tensor& got, const Tensor& want, const char* what) {
    ASSERT_EQ(got.shape, want.shape) << what;
    for (int64_t i = 0; i < want.numel(); ++i) EXPECT_NEAR(got[i], want[i], 1e-12 * (1.0 + std::abs(want[i]))) << what << " at " << i;
  };
  expect_close(r->values[att][0], r->values[out][0], "out");
  expect_close(r->values[grad][0], r->values[dq][0], "dq");
  expect_close(r->values[grad][1], r->values[dk][0], "dk");
  expect_close(r->values[grad][2], r->values[dv][0], "dv");
  // lse: log of the softmax denominator of the composed logits.
  const Tensor& l = r->values[logits.op][0];
  for (int64_t row = 0; row < B * S; ++row) {
    double sum = 0.0;
    for (int64_t j = 0; j < T; ++j) sum += std::exp(l[row * T + j]);
    EXPECT_NEAR(r->values[att][1][row], std::log(sum), 1e-12);
  }
  // The values differ from a wrong scale or a missing bias.
  EXPECT_GT(std::abs(r->values[grad][0][0]), 1e-6);
}

// Layout bsnd ([B, S, N, D] operands) gives the default layout's values, transposed: the same
// graph built both ways on the same random values.
TEST(Kernels, AttentionBsndLayoutEqualsTheTransposedDefault) {
  const int64_t B = 2, N = 3, S = 4, T = 6, D = 5, Dv = 2;
  const Ints swap{0, 2, 1, 3};
  ir::Graph g;
  const Value q = g.input("q", {B, S, N, D}), k = g.input("k", {B, T, N, D}), v = g.input("v", {B, T, N, Dv});
  const Value bias = g.input("bias", {N, S, T}), dout = g.input("dout", {B, S, N, Dv});
  const Attrs scale{{"scale", 0.7}};
  Attrs bsnd = scale;
  bsnd.set("layout", std::string("bsnd"));
  const ir::OpId att = g.add(OpKind::Attention, {q, k, v, bias}, bsnd, "att");
  const ir::OpId grad = g.add(OpKind::AttentionGrad, {q, k, v, bias, Value{att, 0}, Value{att, 1}, dout}, bsnd, "grad");
  auto t = [&](Value x, const char* name) { return g.add_value(OpKind::Transpose, {x}, {{"perm", swap}}, name); };
  const Value tq = t(q, "tq"), tk = t(k, "tk"), tv = t(v, "tv"), tdout = t(dout, "tdout");
  const ir::OpId ref = g.add(OpKind::Attention, {tq, tk, tv, bias}, scale, "ref");
  const ir::OpId ref_grad = g.add(OpKind::AttentionGrad, {tq, tk, tv, bias, Value{ref, 0}, Value{ref, 1}, tdout}, scale,
                                  "ref_grad");
  const ir::OpId out_back = g.add(OpKind::Transpose, {Value{ref, 0}}, {{"perm", swap}}, "out_back");
  std::vector<ir::OpId> grads_back;
  for (int32_t i = 0; i < 3; ++i) {
    grads_back.push_back(g.add(OpKind::Transpose, {Value{ref_grad, i}}, {{"perm", swap}}, "grad_back" + std::to_string(i)));
  }
  Feeds feeds;
  uint64_t state = 11;
  for (const char* name : {"q", "k", "v", "dout", "bias"}) {
    Tensor x(g.type(Value{*g.find(name), 0}).shape);
    for (int64_t i = 0; i < x.numel(); ++i) {
      state = state * 6364136223846793005ULL + 1442695040888963407ULL;
      x[i] = static_cast<double>(state >> 11) / 9007199254740992.0 * 2.0 - 1.0;
    }
    feeds[name] = x;
  }
  for (int64_t h = 0; h < N; ++h)  // a causal mask in head 1 only
    for (int64_t i = 0; i < S; ++i)
      for (int64_t j = i + 1; j < T; ++j) if (h == 1) feeds["bias"][(h * S + i) * T + j] = -1e9;
  auto r = run(g, feeds, Precision::f64);
  ASSERT_TRUE(r.is_ok()) << r.error().message();
  auto expect_equal = [](const Tensor& got, const Tensor& want, const char* what) {
    ASSERT_EQ(got.shape, want.shape) << what;
    for (int64_t i = 0; i < want.numel(); ++i) EXPECT_NEAR(got[i], want[i], 1e-12) << what << " at " << i;
  };
  expect_equal(r->values[att][0], r->values[out_back][0], "out");
  expect_equal(r->values[att][1], r->values[ref][1], "lse");
  for (int32_t i = 0; i < 3; ++i) expect_equal(r->values[grad][i], r->values[grads_back[i]][0], "grads");
  EXPECT_GT(std::abs(r->values[grad][0][0]), 1e-6);
  // FLOPs count the keys from k's [B, T, N, D] in this layout.
  EXPECT_DOUBLE_EQ(g.op_flops(att), g.op_flops(ref));
}

// A row whose every logit is -inf: out 0 and lse -inf (the composition gives NaN there), no gradient
// from it, and the other rows unaffected.
TEST(Kernels, AttentionFullyMaskedRow) {
  Tensor q({1, 2, 2}, {0.5, -1.0, 0.25, 2.0}), k({1, 2, 2}, {1.0, 0.0, 0.0, 1.0}), v({1, 2, 1}, {3.0, -1.0});
  const double inf = std::numeric_limits<double>::infinity();
  Tensor bias({2, 2}, {-inf, -inf, 0.0, 0.0});
  auto out = run_op(OpKind::Attention, {q, k, v, bias}, {{"scale", 1.0}});
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out[0][0], 0.0);
  EXPECT_EQ(out[1][0], -inf);
  // Row 1: logits (0.25, 2.0) -> p = softmax, out = p . (3, -1).
  const double e0 = std::exp(0.25), e1 = std::exp(2.0);
  EXPECT_NEAR(out[0][1], (3.0 * e0 - e1) / (e0 + e1), 1e-12);
  EXPECT_NEAR(out[1][1], std::log(e0 + e1), 1e-12);
  auto grads = run_op(OpKind::AttentionGrad, {q, k, v, bias, out[0], out[1], Tensor({1, 2, 1}, {1.0, 0.0})},
                      {{"scale", 1.0}});
  ASSERT_EQ(grads.size(), 3u);
  for (const Tensor& t : grads) {
    for (int64_t i = 0; i < t.numel(); ++i) EXPECT_EQ(t[i], 0.0);  // dout is zero on the live row
  }
  // Finite entries at or below kAttentionMaskedBias mask as -inf does (not a softmax over them).
  Tensor finite({2, 2}, {-1e9, ir::kAttentionMaskedBias, 0.0, 0.0});
  auto masked = run_op(OpKind::Attention, {q, k, v, finite}, {{"scale", 1.0}});
  EXPECT_EQ(masked[0][0], 0.0);
  EXPECT_EQ(masked[1][0], -inf);
  EXPECT_NEAR(masked[0][1], (3.0 * e0 - e1) / (e0 + e1), 1e-12);
  // Just above the threshold an entry still counts.
  Tensor open({2, 2}, {-1e9, 0.999 * ir::kAttentionMaskedBias, 0.0, 0.0});
  auto kept = run_op(OpKind::Attention, {q, k, v, open}, {{"scale", 1.0}});
  EXPECT_NEAR(kept[0][0], -1.0, 1e-12);  // all weight on key 1 (value -1)
  EXPECT_NEAR(kept[1][0], -1.0 + 0.999 * ir::kAttentionMaskedBias, 1e-6);  // lse: q0 . k1 + its bias
}

TEST(Kernels, OptimizerUpdates) {
  expect_values(run_op(OpKind::SgdUpdate, {Tensor({2}, {1, 2}), Tensor({2}, {10, -10})}, {{"lr", 0.1}})[0], {0, 3});
  // Step 1 from zero state: m = 0.1 g, v = 0.001 g^2, m_hat = g, v_hat = g^2.
  const auto out = run_op(OpKind::AdamUpdate, {Tensor({1}, {1.0}), Tensor({1}, {-2.0}), Tensor({1}, 0.0), Tensor({1}, 0.0)},
                          {{"lr", 0.5}, {"beta1", 0.9}, {"beta2", 0.999}, {"eps", 0.0}, {"weight_decay", 0.2}, {"step", int64_t{1}}});
  expect_values(out[0], {1.0 - 0.5 * (-1.0 + 0.2)}, 1e-12);
  expect_values(out[1], {-0.2}, 1e-12);
  expect_values(out[2], {0.004}, 1e-12);
}

}  // namespace
}  // namespace strata::interp
