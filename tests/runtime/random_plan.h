// Random valid plans for runtime tests: a stage layout tiling a 2×4 cluster, ops assigned to
// stages in contiguous forward order (backward and update ops follow their forward op, sources
// their first user), and per op a strategy drawn from intra::enumerate_strategies, with update
// ops (and Adam state) constrained to their Parameter's spec.
#pragma once

#include <map>
#include <random>
#include <string>
#include <vector>

#include "strata/autodiff/autodiff.h"
#include "strata/cost/compute.h"
#include "strata/intra/strategy.h"
#include "strata/models/models.h"
#include "strata/plan/plan.h"

namespace strata::runtime::testing {

struct Layout {
  int num_nodes = 2;
  int gpus_per_node = 4;
  struct Mesh {
    cluster::Submesh submesh;
    int first_node, first_gpu;
  };
  std::vector<Mesh> meshes;
};

// Stage layouts that tile 2 nodes × 4 devices with 1 to 4 stages.
inline std::vector<Layout> layouts_2x4() {
  std::vector<Layout> out;
  out.push_back({2, 4, {{{2, 4}, 0, 0}}});
  out.push_back({2, 4, {{{1, 4}, 0, 0}, {{1, 4}, 1, 0}}});
  out.push_back({2, 4, {{{1, 4}, 0, 0}, {{1, 2}, 1, 0}, {{1, 2}, 1, 2}}});
  out.push_back({2, 4, {{{1, 2}, 0, 0}, {{1, 2}, 0, 2}, {{1, 2}, 1, 0}, {{1, 2}, 1, 2}}});
  return out;
}

inline bool is_update_kind(ir::OpKind kind) { return kind == ir::OpKind::SgdUpdate || kind == ir::OpKind::AdamUpdate; }

// Assigns every op of `graph` to one of `stages` stages. With `parameters_first`, every forward
// Parameter (and so its update and optimizer state) sits on stage 0 whoever reads it: weights
// then cross to later stages every micro-batch and their gradients come back once, at grad_sync.
inline std::vector<int> assign_stages(const ir::Graph& graph, int stages, bool parameters_first = false) {
  const int n = graph.num_ops();
  std::vector<ir::OpId> compute;  // forward, non-source ops in id order
  for (ir::OpId id = 0; id < n; ++id) {
    const ir::Op& op = graph.op(id);
    if (op.role == ir::Role::forward && !ir::op_info(op.kind).is_source) compute.push_back(id);
  }
  std::vector<int> stage(static_cast<size_t>(n), -1);
  for (size_t k = 0; k < compute.size(); ++k) stage[compute[k]] = static_cast<int>(k * stages / compute.size());
  // Forward sources: the stage of their first user (users come later in id order).
  for (ir::OpId id = n - 1; id >= 0; --id) {
    const ir::Op& op = graph.op(id);
    if (op.role != ir::Role::forward || !ir::op_info(op.kind).is_source) continue;
    int first = stages - 1;
    for (ir::OpId user : graph.users(id)) {
      if (graph.op(user).role == ir::Role::forward && stage[user] >= 0) first = std::min(first, stage[user]);
    }
    stage[id] = parameters_first && op.kind == ir::OpKind::Parameter ? 0 : first;
  }
  // Backward and update ops follow their forward op; anything left (seed constants, Adam state
  // Parameters) follows its first assigned user.
  for (ir::OpId id = 0; id < n; ++id) {
    const ir::Op& op = graph.op(id);
    if (stage[id] < 0 && op.forward_op != ir::kNoOp && stage[op.forward_op] >= 0) stage[id] = stage[op.forward_op];
  }
  for (ir::OpId id = n - 1; id >= 0; --id) {
    if (stage[id] >= 0) continue;
    int first = stages - 1;
    for (ir::OpId user : graph.users(id)) first = std::min(first, stage[user] >= 0 ? stage[user] : first);
    stage[id] = first;
  }
  return stage;
}

// A random valid plan of `graph` (built at micro-batch size global_batch / micro_batches).
inline Expected<plan::Plan> random_plan(const ir::Graph& graph, const std::string& model, int64_t global_batch,
                                        int micro_batches, const plan::Training& training,
                                        const cost::ComputeModel& compute, std::mt19937& rng) {
  const auto layouts = layouts_2x4();
  const Layout& layout = layouts[std::uniform_int_distribution<size_t>(0, layouts.size() - 1)(rng)];
  plan::Plan p;
  p.model = model;
  p.cluster = plan::ClusterShape{"cpu-8", layout.num_nodes, layout.gpus_per_node};
  p.global_batch = global_batch;
  p.num_micro_batches = micro_batches;
  p.schedule = rng() % 2 ? "1f1b" : "gpipe";
  p.training = training;
  p.cross_stage_link.bandwidth_bytes_per_second = 1e9;
  for (size_t s = 0; s < layout.meshes.size(); ++s) {
    plan::Stage stage;
    stage.first_layer = stage.last_layer = static_cast<int>(s);
    stage.submesh = layout.meshes[s].submesh;
    stage.first_node = layout.meshes[s].first_node;
    stage.first_gpu = layout.meshes[s].first_gpu;
    const auto shapes = cluster::logical_meshes(stage.submesh);
    stage.logical_mesh = shapes[std::uniform_int_distribution<size_t>(0, shapes.size() - 1)(rng)];
    p.stages.push_back(stage);
  }
  const std::vector<int> stage_of = assign_stages(graph, p.num_stages(), rng() % 3 == 0);
  std::map<ir::OpId, intra::OpSharding> chosen;
  // Update ops first decide their Parameters' specs; everything else is free.
  for (ir::OpId id = 0; id < graph.num_ops(); ++id) {
    const ir::Op& op = graph.op(id);
    if (!is_update_kind(op.kind)) continue;
    const cluster::LogicalMesh& mesh = p.stages[stage_of[id]].logical_mesh;
    STRATA_ASSIGN_OR_RETURN(auto options, intra::enumerate_strategies(graph, id, mesh, compute));
    std::vector<intra::OpSharding> fits;
    for (const auto& s : options) {
      bool same = true;
      for (const auto& out : s.sharding.outputs) same = same && out == s.sharding.outputs[0];
      if (same) fits.push_back(s.sharding);
    }
    if (fits.empty()) return make_error("", op.name, "no update strategy with one spec for all outputs");
    const intra::OpSharding pick = fits[std::uniform_int_distribution<size_t>(0, fits.size() - 1)(rng)];
    chosen[id] = pick;
    const std::vector<int> state = op.kind == ir::OpKind::SgdUpdate ? std::vector<int>{0} : std::vector<int>{0, 2, 3};
    for (int k : state) chosen[op.inputs[k].op] = intra::OpSharding{{}, {pick.outputs[0]}};
  }
  for (ir::OpId id = 0; id < graph.num_ops(); ++id) {
    if (chosen.count(id)) continue;
    const cluster::LogicalMesh& mesh = p.stages[stage_of[id]].logical_mesh;
    STRATA_ASSIGN_OR_RETURN(auto options, intra::enumerate_strategies(graph, id, mesh, compute));
    if (options.empty()) return make_error("", graph.op(id).name, "no strategy");
    chosen[id] = options[std::uniform_int_distribution<size_t>(0, options.size() - 1)(rng)].sharding;
  }
  for (const auto& [id, sharding] : chosen) p.stages[stage_of[id]].strategies[graph.op(id).name] = sharding.to_string();
  return p;
}

}  // namespace strata::runtime::testing
