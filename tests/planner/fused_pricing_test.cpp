// The compute model on the graph the cuda backend runs (cost::fused_for_cuda): with a profile that
// measured the fused attention, an attention block is its Attention and AttentionGrad at the
// measured rate, carried by one op each (scaled by the device's share), and the ops fused away
// cost nothing; without it (a cpu profile) every op is priced as before.
#include <gtest/gtest.h>

#include "planner/planner_test_util.h"
#include "strata/autodiff/autodiff.h"
#include "strata/cost/compute.h"
#include "strata/cost/fused.h"

namespace strata::planner {
namespace {

using cost::FusedOp;
using testing_util::tiny_gpt;
using testing_util::training_graph;

cluster::ClusterSpec gpu() {
  cluster::ClusterSpec spec;
  spec.name = "test";
  spec.peak_flops_f32 = 60e12;
  spec.peak_flops_bf16 = 900e12;
  spec.memory_bandwidth_bytes_per_second = 4e12;
  return spec;
}

std::vector<ir::TensorType> input_types(const ir::Graph& g, const ir::Op& op) {
  std::vector<ir::TensorType> types;
  for (const ir::Value& v : op.inputs) types.push_back(g.type(v));
  return types;
}

TEST(FusedPricing, AttentionBlockAtTheMeasuredRateAndFusedAwayOpsFree) {
  // gpt-tiny: hidden 32, 4 heads of 8, seq 16; 2 layers, micro-batch 2.
  const ir::Graph g = training_graph(tiny_gpt(2), 2);
  auto fused = cost::fused_for_cuda(g);
  ASSERT_TRUE(fused.is_ok()) << fused.error().message();
  profile::Profile measured;
  measured.op_overhead_seconds = 5e-6;
  // Two points: the nearest (head dim 8) prices the block.
  measured.attention = {{8, 16, 16, 2e-5, 6e-5}, {64, 256, 1024, 2e-4, 6e-4}};
  cost::ComputeModel model(gpu());
  model.use_profile(measured);
  ASSERT_TRUE(model.prices_cuda_fusion());
  EXPECT_NE(model.describe().find("as the cuda backend runs it"), std::string::npos) << model.describe();

  int forward = 0, backward = 0, away = 0;
  for (ir::OpId id = 0; id < g.num_ops(); ++id) {
    const ir::Op& op = g.op(id);
    const FusedOp& how = (*fused)[static_cast<size_t>(id)];
    const std::vector<ir::TensorType> in = input_types(g, op);
    const double seconds = model.op_seconds(how, op.kind, in, op.outputs, op.attrs);
    if (how.how == FusedOp::How::fused_away) {
      ++away;
      EXPECT_EQ(seconds, 0) << op.name;
      continue;
    }
    if (how.how == FusedOp::How::runs) {
      EXPECT_EQ(seconds, model.op_seconds(op.kind, in, op.outputs, op.attrs)) << op.name;
      continue;
    }
    // q [B=2, S=16, N=4, D=8]: batch_heads 8 against the point's 16, the same S and D.
    EXPECT_EQ(how.block.batch_heads, 8) << op.name;
    EXPECT_EQ(how.block.queries, 16);
    EXPECT_EQ(how.block.keys, 16);
    EXPECT_EQ(how.block.head_dim, 8);
    EXPECT_EQ(how.block.value_dim, 8);
    const bool grad = how.how == FusedOp::How::attention_grad;
    (grad ? backward : forward) += 1;
    EXPECT_DOUBLE_EQ(seconds, 5e-6 + (grad ? 6e-5 : 2e-5) * 8.0 / 16.0) << op.name;
    // Half the output on each device (batch split in two): half the block's kernel.
    std::vector<ir::TensorType> half = op.outputs;
    half[0].shape[0] /= 2;
    EXPECT_DOUBLE_EQ(model.op_seconds(how, op.kind, in, half, op.attrs), 5e-6 + (grad ? 6e-5 : 2e-5) * 8.0 / 32.0);
  }
  EXPECT_EQ(forward, 2);
  EXPECT_EQ(backward, 2);
  // Per layer at least the scores Dot, Scale, mask Add, Softmax and their backward.
  EXPECT_GE(away, 2 * 9);
}

TEST(FusedPricing, CpuProfileKeepsTheGraphAsBuilt) {
  const ir::Graph g = training_graph(tiny_gpt(2), 2);
  profile::Profile cpu;
  cpu.op_overhead_seconds = 5e-6;
  cpu.memory_ops = {{"add", {1 << 20}, {1e-6}}};
  cost::ComputeModel model(gpu());
  model.use_profile(cpu);
  EXPECT_FALSE(model.prices_cuda_fusion());
  EXPECT_NE(model.describe().find("every op of the graph as built"), std::string::npos) << model.describe();
  // The default FusedOp (what callers pass without a fused analysis) is the op as built.
  for (ir::OpId id = 0; id < g.num_ops(); ++id) {
    const ir::Op& op = g.op(id);
    const std::vector<ir::TensorType> in = input_types(g, op);
    EXPECT_EQ(model.op_seconds(FusedOp{}, op.kind, in, op.outputs, op.attrs), model.op_seconds(op.kind, in, op.outputs, op.attrs));
  }
}

// Summing a gradient over B micro-batches: B - 1 Adds into the sum and one Scale by 1/B.
TEST(FusedPricing, GradientAccumulation) {
  const ir::TensorType grad{{1024, 1024}, DType::bf16};
  cost::ComputeModel model(gpu());
  EXPECT_EQ(model.accumulation_seconds(grad, 1), 0);
  const double add = model.op_seconds(ir::OpKind::Add, {grad, grad}, {grad}, {});
  const double scale = model.op_seconds(ir::OpKind::Scale, {grad}, {grad}, {});
  EXPECT_GT(add, 0);
  EXPECT_DOUBLE_EQ(model.accumulation_seconds(grad, 4), 3 * add + scale);
}

}  // namespace
}  // namespace strata::planner
