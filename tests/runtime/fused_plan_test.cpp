// fuse_plan_for_cuda on meshes of several devices: the planner's plans of gpt-tiny, fused, keep
// every kept op's strategy, give each rewritten op a valid strategy of its own, and add no
// resharding around the fused attention (each Attention / AttentionGrad operand arrives in the
// spec its producer makes, each result leaves in the spec its users take). The values are checked
// end to end by the runtime_spmd_gpt-tiny_fused tests (spmd_check --fuse 1).
#ifdef STRATA_HAVE_CUDA
#include <gtest/gtest.h>

#include <map>
#include <string>

#include "strata/autodiff/autodiff.h"
#include "strata/cluster/alpha_beta.h"
#include "strata/cluster/cluster.h"
#include "strata/intra/strategy.h"
#include "strata/models/models.h"
#include "strata/plan/plan.h"
#include "strata/planner/planner.h"
#include "strata/runtime/cuda_backend.h"

namespace strata::runtime {
namespace {

intra::OpSharding spec_of(const plan::Plan& p, const std::string& name) {
  for (const plan::Stage& s : p.stages) {
    auto it = s.strategies.find(name);
    if (it != s.strategies.end()) return intra::parse_op_sharding(it->second).value();
  }
  ADD_FAILURE() << "no strategy for " << name;
  return {};
}

int stage_of(const plan::Plan& p, const std::string& name) {
  for (int s = 0; s < p.num_stages(); ++s) {
    if (p.stages[static_cast<size_t>(s)].strategies.count(name)) return s;
  }
  return -1;
}

void check_fused_plan(const std::string& cluster_file, int* split_attentions) {
  const std::string dir = std::string(STRATA_SOURCE_DIR) + "/configs/";
  const auto spec = models::load_model_config(dir + "models/gpt-tiny.yaml").value();
  const auto cluster = cluster::load_cluster(dir + "clusters/" + cluster_file).value();
  planner::PlannerOptions options;
  options.model_file = spec.file;
  const cluster::AlphaBetaModel comm(cluster);
  auto planned = planner::plan_model(spec, cluster, comm, options);
  ASSERT_TRUE(planned.is_ok()) << planned.error().message();
  const plan::Plan& p = planned->plan;
  const ir::Graph forward = models::build_forward_graph(spec, p.micro_batch_size()).value();
  const ir::Graph train = autodiff::build_training_graph(forward, plan::autodiff_options(p.training)).value();
  FusionStats stats;
  auto fused = fuse_plan_for_cuda(train, p, &stats);
  ASSERT_TRUE(fused.is_ok()) << fused.error().message();
  ASSERT_EQ(stats.attentions, spec.layers) << cluster_file;
  const ir::Graph& g = fused->graph;
  ASSERT_TRUE(plan::validate_strategies(fused->plan, g).is_ok()) << cluster_file;
  int attentions = 0;
  for (ir::OpId id = 0; id < g.num_ops(); ++id) {
    const ir::Op& op = g.op(id);
    auto original = train.find(op.name);
    if (original.is_ok() && train.op(*original).kind == op.kind && train.op(*original).outputs == op.outputs) {
      EXPECT_EQ(spec_of(fused->plan, op.name), spec_of(p, op.name)) << op.name << " kept its strategy";
    }
    if (op.kind != ir::OpKind::Attention && op.kind != ir::OpKind::AttentionGrad) continue;
    const intra::OpSharding mine = spec_of(fused->plan, op.name);
    const int stage = stage_of(fused->plan, op.name);
    for (size_t i = 0; i < op.inputs.size(); ++i) {
      const ir::Op& producer = g.op(op.inputs[i].op);
      if (producer.kind == ir::OpKind::Input || stage_of(fused->plan, producer.name) != stage) continue;
      EXPECT_EQ(spec_of(fused->plan, producer.name).outputs[static_cast<size_t>(op.inputs[i].index)], mine.inputs[i])
          << cluster_file << ": " << op.name << " input " << i << " from " << producer.name;
    }
    for (size_t k = 0; k < op.outputs.size(); ++k) {
      for (const ir::Use& use : g.uses(ir::Value{id, static_cast<int32_t>(k)})) {
        const ir::Op& user = g.op(use.user);
        if (stage_of(fused->plan, user.name) != stage) continue;
        EXPECT_EQ(spec_of(fused->plan, user.name).inputs[static_cast<size_t>(use.input_index)], mine.outputs[k])
            << cluster_file << ": " << op.name << " output " << k << " to " << user.name;
      }
    }
    if (op.kind == ir::OpKind::Attention && mine.to_string().find('S') != std::string::npos) ++attentions;
  }
  *split_attentions = attentions;
}

TEST(FusedPlan, PlannersPlansOfGptTinyNeedNoReshardAroundTheFusedAttention) {
  int split = 0;
  check_fused_plan("cpu-4.yaml", &split);
  // The plan splits the model's attention over several devices: so do the fused ops.
  EXPECT_GT(split, 0);
}

}  // namespace
}  // namespace strata::runtime
#endif
