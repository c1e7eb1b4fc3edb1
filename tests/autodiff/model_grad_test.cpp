// Finite-difference checks of whole tiny models built directly with ir::Graph: a GPT-like block
// (embedding, layer norm, attention, GELU MLP, tied logits, cross-entropy), an MoE layer with
// top-2 gating, and a conv / batch-norm / ReLU / pooling net.
#include <gtest/gtest.h>

#include "fd_check.h"

namespace strata::testing {
namespace {

using ir::OpKind;
using ir::Shape;
using ir::Value;
using Feeds = std::map<std::string, interp::Tensor>;
using Ints = std::vector<int64_t>;

// x[..., K] @ w[K, N] over the last dim of x.
Value matmul(ir::Graph& g, Value x, Value w) {
  const auto last = g.type(x).rank() - 1;
  return g.add_value(OpKind::Dot, {x, w}, {{"lhs_contract", Ints{last}}, {"rhs_contract", Ints{0}}});
}

TEST(ModelGrad, GptBlock) {
  const int64_t batch = 2, seq = 3, vocab = 7, hidden = 4, ffn = 8;
  ir::Graph g;
  Feeds feeds;
  Filler fill(7);
  Value ids = g.input("ids", {batch, seq}, DType::i32);
  feeds["ids"] = interp::Tensor({batch, seq}, {1, 6, 3, 0, 3, 5});
  Value labels = g.input("labels", {batch * seq}, DType::i32);
  feeds["labels"] = interp::Tensor({batch * seq}, {6, 3, 2, 3, 5, 1});
  Value mask = g.input("mask", {seq, seq});  // causal: -30 above the diagonal
  feeds["mask"] = interp::Tensor({seq, seq}, {0, -30, -30, 0, 0, -30, 0, 0, 0});

  Value wte = g.parameter("wte", {vocab, hidden});
  Value wpe = g.parameter("wpe", {seq, hidden});
  Value h = g.add_value(OpKind::Add, {g.add_value(OpKind::Gather, {wte, ids}), wpe});
  auto layer_norm = [&](const std::string& name, Value x) {
    Value gamma = g.parameter(name + ".gamma", {hidden});
    Value beta = g.parameter(name + ".beta", {hidden});
    return g.add_value(OpKind::LayerNorm, {x, gamma, beta}, {{"eps", 1e-5}});
  };
  Value ln1 = layer_norm("ln1", h);
  Value q = matmul(g, ln1, g.parameter("wq", {hidden, hidden}));
  Value k = matmul(g, ln1, g.parameter("wk", {hidden, hidden}));
  Value v = matmul(g, ln1, g.parameter("wv", {hidden, hidden}));
  Value scores = g.add_value(OpKind::Dot, {q, k},
                             {{"lhs_batch", Ints{0}}, {"rhs_batch", Ints{0}}, {"lhs_contract", Ints{2}},
                              {"rhs_contract", Ints{2}}});
  scores = g.add_value(OpKind::Add, {g.add_value(OpKind::Scale, {scores}, {{"scalar", 0.5}}), mask});
  Value probs = g.add_value(OpKind::Softmax, {scores}, {{"axis", int64_t{-1}}});
  Value attn = g.add_value(OpKind::Dot, {probs, v},
                           {{"lhs_batch", Ints{0}}, {"rhs_batch", Ints{0}}, {"lhs_contract", Ints{2}},
                            {"rhs_contract", Ints{1}}});
  Value h2 = g.add_value(OpKind::Add, {h, matmul(g, attn, g.parameter("wo", {hidden, hidden}))});
  Value ln2 = layer_norm("ln2", h2);
  Value up = g.add_value(OpKind::Add, {matmul(g, ln2, g.parameter("w1", {hidden, ffn})), g.parameter("b1", {ffn})});
  Value down = matmul(g, g.add_value(OpKind::Gelu, {up}), g.parameter("w2", {ffn, hidden}));
  Value h3 = g.add_value(OpKind::Add, {h2, g.add_value(OpKind::Add, {down, g.parameter("b2", {hidden})})});
  Value logits = g.add_value(OpKind::Dot, {h3, wte}, {{"lhs_contract", Ints{2}}, {"rhs_contract", Ints{1}}});
  logits = g.add_value(OpKind::Reshape, {logits}, {{"shape", Shape{batch * seq, vocab}}});
  g.mark_output(g.add_value(OpKind::CrossEntropy, {logits, labels}));
  // Larger weights than the 0.02 default so that every path matters numerically.
  for (ir::OpId p : g.parameters()) feeds[g.op(p).name] = fill.tensor(g.op(p).outputs[0].shape, 0.1, 0.8);
  EXPECT_EQ(expect_gradients_match(g, feeds, fill), g.parameter_count());
}

TEST(ModelGrad, MoELayer) {
  const int64_t groups = 1, tokens = 5, hidden = 3, experts = 3, capacity = 2, ffn = 4;
  ir::Graph g;
  Feeds feeds;
  Filler fill(11);
  Value x = g.input("x", {groups, tokens, hidden});
  feeds["x"] = fill.tensor({groups, tokens, hidden});
  Value gate_logits = matmul(g, x, g.parameter("wg", {hidden, experts}));
  Value probs = g.add_value(OpKind::Softmax, {gate_logits}, {{"axis", int64_t{-1}}});
  Value combine = g.add_value(OpKind::MoEGate, {probs}, {{"k", int64_t{2}}, {"capacity", capacity}});
  Value dispatch = g.add_value(OpKind::Indicator, {combine});
  // [G, S, E, C] x [G, S, H] -> [G, E, C, H]
  Value expert_in = g.add_value(OpKind::Dot, {dispatch, x},
                                {{"lhs_batch", Ints{0}}, {"rhs_batch", Ints{0}}, {"lhs_contract", Ints{1}},
                                 {"rhs_contract", Ints{1}}});
  // [G, E, C, H] x [E, H, F] -> [E, G, C, F]
  Value mid = g.add_value(OpKind::Dot, {expert_in, g.parameter("we1", {experts, hidden, ffn})},
                          {{"lhs_batch", Ints{1}}, {"rhs_batch", Ints{0}}, {"lhs_contract", Ints{3}},
                           {"rhs_contract", Ints{1}}});
  mid = g.add_value(OpKind::Relu, {mid});
  Value expert_out = g.add_value(OpKind::Dot, {mid, g.parameter("we2", {experts, ffn, hidden})},
                                 {{"lhs_batch", Ints{0}}, {"rhs_batch", Ints{0}}, {"lhs_contract", Ints{3}},
                                  {"rhs_contract", Ints{1}}});
  // [G, S, E, C] x [E, G, C, H] -> [G, S, H]
  Value y = g.add_value(OpKind::Dot, {combine, expert_out},
                        {{"lhs_batch", Ints{0}}, {"rhs_batch", Ints{1}}, {"lhs_contract", Ints{2, 3}},
                         {"rhs_contract", Ints{0, 2}}});
  for (ir::OpId p : g.parameters()) feeds[g.op(p).name] = fill.tensor(g.op(p).outputs[0].shape, 0.2, 1.5);
  finish_with_probe(g, y, feeds, fill);
  EXPECT_EQ(expect_gradients_match(g, feeds, fill), g.parameter_count());
}

TEST(ModelGrad, ConvNet) {
  ir::Graph g;
  Feeds feeds;
  Filler fill(5);
  Value x = g.input("x", {2, 1, 5, 5});
  feeds["x"] = fill.tensor({2, 1, 5, 5});
  Value labels = g.input("labels", {2}, DType::i32);
  feeds["labels"] = interp::Tensor({2}, {3, 1});
  Value c1 = g.add_value(OpKind::Conv2d, {x, g.parameter("w1", {2, 1, 3, 3})}, {{"padding", int64_t{1}}});
  Value bn = g.add_value(OpKind::BatchNorm, {c1, g.parameter("bn.gamma", {2}), g.parameter("bn.beta", {2})},
                         {{"eps", 1e-5}});
  Value r = g.add_value(OpKind::Relu, {bn});
  Value mp = g.add_value(OpKind::MaxPool2d, {r}, {{"window", int64_t{2}}, {"stride", int64_t{2}}});  // [2,2,2,2]
  Value c2 = g.add_value(OpKind::Conv2d, {mp, g.parameter("w2", {3, 2, 1, 1})});                   // [2,3,2,2]
  Value ap = g.add_value(OpKind::AvgPool2d, {c2}, {{"window", int64_t{2}}});                        // [2,3,1,1]
  Value flat = g.add_value(OpKind::Reshape, {ap}, {{"shape", Shape{2, 3}}});
  Value logits = matmul(g, flat, g.parameter("fc", {3, 4}));
  g.mark_output(g.add_value(OpKind::CrossEntropy, {logits, labels}));
  for (ir::OpId p : g.parameters()) feeds[g.op(p).name] = fill.tensor(g.op(p).outputs[0].shape, 0.2, 1.0);
  EXPECT_EQ(expect_gradients_match(g, feeds, fill), g.parameter_count());
}

}  // namespace
}  // namespace strata::testing
