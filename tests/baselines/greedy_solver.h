// A greedy stage solver for the baselines' tests: per op the cheapest allowed strategy, so every
// restriction of the strategies can only raise a stage's cost, without lp_solve's time.
#pragma once

#include <algorithm>
#include <cmath>

#include "strata/intra/stage_solver.h"

namespace strata::baselines::testing_solver {

inline bool uses_mesh(const intra::ShardingSpec& spec) {
  if (spec.partial[0] || spec.partial[1]) return true;
  return std::any_of(spec.dims.begin(), spec.dims.end(), [](intra::DimSharding d) { return d != intra::DimSharding::R; });
}

// Per op the cheapest allowed strategy, where a Parameter left whole on a mesh of several devices
// also pays the all-reduce of its gradient; memory from the chosen local shapes. Every restriction
// can only raise a stage's cost, so the full search must be at least as good as every method.
inline Expected<intra::StageSolution> greedy(const intra::StageProblem& p) {
  const ir::Graph& g = *p.graph;
  std::vector<ir::OpId> ops = p.ops;
  if (ops.empty()) {
    for (ir::OpId id = 0; id < g.num_ops(); ++id) ops.push_back(id);
  }
  const cluster::CommGroup group{p.submesh, p.mesh, -1, false};
  intra::StageSolution s;
  for (ir::OpId id : ops) {
    const ir::Op& op = g.op(id);
    STRATA_ASSIGN_OR_RETURN(std::vector<intra::Strategy> strategies, intra::enumerate_strategies(g, id, p.mesh, *p.compute));
    double best = INFINITY, best_sync = 0;
    const intra::Strategy* chosen = nullptr;
    for (const intra::Strategy& st : strategies) {
      if (p.allow && !p.allow(op, st)) continue;
      double sync = 0;
      if (op.kind == ir::OpKind::Parameter && op.role == ir::Role::forward && p.mesh.num_devices() > 1 &&
          !uses_mesh(st.sharding.outputs[0])) {
        sync = p.comm->seconds(cluster::Collective::all_reduce, group, op.outputs[0].bytes(), op.outputs[0].dtype);
      }
      const double cost = p.num_micro_batches * (st.compute_seconds + st.comm_seconds) + sync;
      if (cost < best) {
        best = cost;
        best_sync = sync;
        chosen = &st;
      }
    }
    if (chosen == nullptr) {
      s.reason = "no allowed strategy for " + op.name;
      return s;
    }
    s.shardings[op.name] = chosen->sharding;
    const double t = chosen->compute_seconds + chosen->comm_seconds;
    (op.role == ir::Role::forward ? s.forward_seconds : op.role == ir::Role::backward ? s.backward_seconds : s.update_seconds) += t;
    s.grad_sync_seconds += best_sync;
    STRATA_ASSIGN_OR_RETURN(auto local, intra::local_shape(chosen->sharding.outputs[0], op.outputs[0].shape, p.mesh));
    const int64_t bytes = ir::TensorType{local, op.outputs[0].dtype}.bytes();
    if (op.kind == ir::OpKind::Parameter) {
      (op.role == ir::Role::update ? s.optimizer_state_bytes : s.weights_bytes) += bytes;
    } else if (op.role == ir::Role::forward) {
      s.activation_bytes += bytes;
    }
  }
  const int64_t memory = s.weights_bytes + s.optimizer_state_bytes + s.activation_bytes;
  s.feasible = p.memory_budget_bytes == 0 || memory <= p.memory_budget_bytes;
  if (!s.feasible) s.reason = "needs " + std::to_string(memory) + " bytes, over the memory budget";
  return s;
}

}  // namespace strata::baselines::testing_solver
