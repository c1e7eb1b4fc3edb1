// The plan for the graph after fuse_for_cuda: every op of the rewritten graph gets a stage and a
// sharding. An op that is still there as it was (same name, kind and types) keeps the planner's
// strategy. A rewritten one (Attention, AttentionGrad, a Concat, a moved Scale) takes the stage of
// the op it replaces and, on a mesh of several devices, the strategy of its own kind that agrees
// with the most of its neighbours: the specs its producers give and its kept users take. Any valid
// strategy is correct (the executor reshards where specs differ); the agreement keeps a data- or
// tensor-parallel plan free of extra collectives around the fused ops.
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "strata/cost/compute.h"
#include "strata/intra/strategy.h"
#include "strata/runtime/cuda_backend.h"

namespace strata::runtime {
namespace {

// The stage of a rewritten op: the one of the original op it is named after. A Scale moved after
// its Dot is named "<dot>.scale" (plus '_' while taken); the head Transposes of an Attention
// "<context dot>.fused_q" (k, v).
std::string anchor_name(const ir::Op& op, const std::map<std::string, int>& stage_of) {
  std::string anchor = op.name;
  if (const size_t at = anchor.find(".fused_"); !stage_of.count(anchor) && at != std::string::npos) anchor.resize(at);
  if (!stage_of.count(anchor) && op.kind == ir::OpKind::Scale) {
    while (!anchor.empty() && anchor.back() == '_') anchor.pop_back();
    const std::string suffix = ".scale";
    if (anchor.size() > suffix.size() && anchor.compare(anchor.size() - suffix.size(), suffix.size(), suffix) == 0) {
      anchor.resize(anchor.size() - suffix.size());
    }
  }
  return anchor;
}

bool same_types(const ir::Graph& a, const ir::Op& x, const ir::Graph& b, const ir::Op& y) {
  if (x.kind != y.kind || x.outputs != y.outputs || x.inputs.size() != y.inputs.size()) return false;
  for (size_t i = 0; i < x.inputs.size(); ++i) {
    if (!(a.type(x.inputs[i]) == b.type(y.inputs[i]))) return false;
  }
  return true;
}

}  // namespace

Expected<FusedPlan> fuse_plan_for_cuda(const ir::Graph& graph, const plan::Plan& plan, FusionStats* stats) {
  FusedPlan out;
  STRATA_ASSIGN_OR_RETURN(out.graph, fuse_for_cuda(graph, stats));
  const ir::Graph& fused = out.graph;
  out.plan = plan;
  std::map<std::string, int> stage_of;  // original op name -> its stage
  for (int s = 0; s < plan.num_stages(); ++s) {
    for (const auto& [name, spec] : plan.stages[static_cast<size_t>(s)].strategies) stage_of[name] = s;
    out.plan.stages[static_cast<size_t>(s)].strategies.clear();
  }
  auto strategy_error = [&](const ir::Op& op, const std::string& why) {
    return make_error(plan.source_file, "stages", "fusion for cuda: rewritten op '" + op.name + "': " + why);
  };

  // Pass 1: stages, and the strategies of the ops that are still there as they were.
  const int n = fused.num_ops();
  std::vector<int> stage(static_cast<size_t>(n), -1);
  std::vector<std::optional<intra::OpSharding>> chosen(static_cast<size_t>(n));
  for (ir::OpId id = 0; id < n; ++id) {
    const ir::Op& op = fused.op(id);
    auto at = stage_of.find(anchor_name(op, stage_of));
    if (at == stage_of.end()) return strategy_error(op, "no stage for it");
    stage[static_cast<size_t>(id)] = at->second;
    auto original = graph.find(op.name);
    if (!original.is_ok() || !same_types(graph, graph.op(*original), fused, op)) continue;
    const auto& strategies = plan.stages[static_cast<size_t>(at->second)].strategies;
    STRATA_ASSIGN_OR_RETURN(chosen[static_cast<size_t>(id)], intra::parse_op_sharding(strategies.at(op.name)));
  }

  // Pass 2, in op order (producers first): the rewritten ops. On one device the only strategy
  // is every spec R; on a mesh, the one agreeing with the most neighbour specs (ties: the least
  // output memory per device, then the enumeration's order).
  cluster::ClusterSpec nominal;  // strategies' shapes only; their costs break no tie here
  nominal.peak_flops_f32 = nominal.peak_flops_f16 = nominal.peak_flops_bf16 = 1e12;
  nominal.memory_bandwidth_bytes_per_second = 1e12;
  const cost::ComputeModel compute(nominal);
  for (ir::OpId id = 0; id < n; ++id) {
    if (chosen[static_cast<size_t>(id)]) continue;
    const ir::Op& op = fused.op(id);
    const cluster::LogicalMesh& mesh = plan.stages[static_cast<size_t>(stage[static_cast<size_t>(id)])].logical_mesh;
    STRATA_ASSIGN_OR_RETURN(auto strategies, intra::enumerate_strategies(fused, id, mesh, compute));
    if (strategies.empty()) return strategy_error(op, "its kind has no strategy on the stage's mesh");
    const intra::Strategy* best = nullptr;
    int best_score = -1;
    for (const intra::Strategy& st : strategies) {
      int score = 0;
      for (size_t i = 0; i < op.inputs.size(); ++i) {
        const ir::Value v = op.inputs[i];
        const auto& made = chosen[static_cast<size_t>(v.op)];
        if (made && stage[static_cast<size_t>(v.op)] == stage[static_cast<size_t>(id)] &&
            made->outputs[static_cast<size_t>(v.index)] == st.sharding.inputs[i]) {
          ++score;
        }
      }
      for (size_t k = 0; k < op.outputs.size(); ++k) {
        for (const ir::Use& use : fused.uses(ir::Value{id, static_cast<int32_t>(k)})) {
          const auto& taken = chosen[static_cast<size_t>(use.user)];
          if (taken && stage[static_cast<size_t>(use.user)] == stage[static_cast<size_t>(id)] &&
              taken->inputs[static_cast<size_t>(use.input_index)] == st.sharding.outputs[k]) {
            ++score;
          }
        }
      }
      if (best == nullptr || score > best_score || (score == best_score && st.memory_bytes < best->memory_bytes)) {
        best = &st;
        best_score = score;
      }
    }
    chosen[static_cast<size_t>(id)] = best->sharding;
  }
  for (ir::OpId id = 0; id < n; ++id) {
    out.plan.stages[static_cast<size_t>(stage[static_cast<size_t>(id)])].strategies[fused.op(id).name] =
        chosen[static_cast<size_t>(id)]->to_string();
  }
  return out;
}

}  // namespace strata::runtime
