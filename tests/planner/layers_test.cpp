// Layer assignment of real training graphs: contiguous balanced forward layers, backward and
// update ops with their forward op, the tied embedding with its first user.
#include <gtest/gtest.h>

#include "planner/planner_test_util.h"
#include "strata/autodiff/autodiff.h"
#include "strata/planner/layers.h"

namespace strata::planner {
namespace {

using testing_util::tiny_gpt;
using testing_util::training_graph;

TEST(Layers, ForwardOpsFormContiguousLayersAndTheRestFollow) {
  const ir::Graph g = training_graph(tiny_gpt(4), 2);
  auto layers = assign_layers(g, 4, 0.0);
  ASSERT_TRUE(layers.is_ok()) << layers.error().message();
  ASSERT_EQ(layers->layer_of.size(), static_cast<size_t>(g.num_ops()));
  // Forward ops (sources aside) in id order never go back a layer, and every layer has some.
  std::vector<int> seen(4, 0);
  int previous = 0;
  for (ir::OpId id : clusterable_ops(g)) {
    const int l = layers->layer_of[id];
    EXPECT_GE(l, previous) << g.op(id).name;
    previous = l;
    ++seen[l];
  }
  for (int l = 0; l < 4; ++l) EXPECT_GT(seen[l], 0) << "layer " << l;
  for (ir::OpId id = 0; id < g.num_ops(); ++id) {
    const ir::Op& op = g.op(id);
    if (op.role != ir::Role::forward) {
      ASSERT_NE(op.forward_op, ir::kNoOp) << op.name;
      EXPECT_EQ(layers->layer_of[id], layers->layer_of[op.forward_op]) << op.name;
    }
  }
  // Sources go with their first forward user; the tied embedding (also read by the LM head in
  // the last layer) and its whole Adam step stay in layer 0.
  const ir::OpId embed = *g.find("embed.token");
  EXPECT_EQ(layers->layer_of[embed], 0);
  EXPECT_EQ(layers->layer_of[*g.find("embed.token.adam")], 0);
  EXPECT_EQ(layers->layer_of[*g.find("embed.token.adam_m")], 0);
  EXPECT_EQ(layers->layer_of[*g.find("labels")], 3);  // read only by the loss
  // Balanced: each layer within the largest layer's FLOPs, and the cut bytes are reported.
  ASSERT_EQ(layers->cut_bytes.size(), 3u);
  for (int64_t bytes : layers->cut_bytes) EXPECT_GT(bytes, 0);
}

TEST(Layers, CutsFallBetweenTransformerBlocks) {
  // The 4 layers of a 4-block GPT are cut between blocks, where only the residual stream
  // (batch x seq x hidden floats) and the causal mask cross: [embedding, block 0], [block 1],
  // [block 2], [block 3, head, loss].
  const models::ModelSpec spec = tiny_gpt(4);
  const ir::Graph g = training_graph(spec, 2);
  auto layers = assign_layers(g, 4, 0.0);
  ASSERT_TRUE(layers.is_ok());
  const int64_t residual = 2 * spec.seq_len * spec.hidden * 4;
  const int64_t mask = spec.seq_len * spec.seq_len * 4;
  for (int64_t bytes : layers->cut_bytes) EXPECT_EQ(bytes, residual + mask);
  EXPECT_EQ(layers->layer_of[*g.find("layer0.ln1")], 0);
  EXPECT_EQ(layers->layer_of[*g.find("layer1.ln1")], 1);
  EXPECT_EQ(layers->layer_of[*g.find("layer3.ln1")], 3);
  EXPECT_EQ(layers->layer_of[*g.find("lm_head")], 3);
  EXPECT_DOUBLE_EQ(layers->layer_flops[1], layers->layer_flops[2]);  // identical blocks
}

TEST(Layers, StageOpsAreTheLayersOps) {
  const ir::Graph g = training_graph(tiny_gpt(2), 1);
  auto layers = assign_layers(g, 3, 0.0);
  ASSERT_TRUE(layers.is_ok());
  size_t total = 0;
  for (int l = 0; l < 3; ++l) total += stage_ops(*layers, l, l).size();
  EXPECT_EQ(total, static_cast<size_t>(g.num_ops()));
  EXPECT_EQ(stage_ops(*layers, 0, 2).size(), static_cast<size_t>(g.num_ops()));
}

TEST(Layers, Errors) {
  const ir::Graph g = training_graph(tiny_gpt(1), 1);
  EXPECT_EQ(assign_layers(g, 0, 0.0).error().message(), "num_layers: must be at least 1, got 0");
  auto too_many = assign_layers(g, 100000, 0.0);
  ASSERT_FALSE(too_many.is_ok());
  EXPECT_NE(too_many.error().message().find("100000 layers but the forward graph has only"), std::string::npos);
}

}  // namespace
}  // namespace strata::planner
