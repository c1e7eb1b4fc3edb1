// Shared helpers of the planner tests: model and cluster configs from the repository, GPTs of a
// chosen depth, and a synthetic stage solver whose costs depend on the stage's ops and mesh.
#pragma once

#include <gtest/gtest.h>

#include <string>

#include "strata/autodiff/autodiff.h"
#include "strata/cluster/alpha_beta.h"
#include "strata/cluster/cluster.h"
#include "strata/intra/stage_solver.h"
#include "strata/models/models.h"

namespace strata::planner::testing_util {

inline std::string source_dir() { return STRATA_SOURCE_DIR; }

inline models::ModelSpec load_model(const std::string& name) {
  auto spec = models::load_model_config(source_dir() + "/configs/models/" + name + ".yaml");
  EXPECT_TRUE(spec.is_ok()) << spec.error().message();
  return *spec;
}

inline cluster::ClusterSpec load_cluster(const std::string& name) {
  auto spec = cluster::load_cluster(source_dir() + "/configs/clusters/" + name + ".yaml");
  EXPECT_TRUE(spec.is_ok()) << spec.error().message();
  return *spec;
}

// gpt-tiny with `layers` transformer blocks.
inline models::ModelSpec tiny_gpt(int layers) {
  models::ModelSpec spec = load_model("gpt-tiny");
  spec.layers = layers;
  return spec;
}

// The training graph (Adam) of `spec` at `micro_batch`.
inline ir::Graph training_graph(const models::ModelSpec& spec, int64_t micro_batch) {
  auto forward = models::build_forward_graph(spec, micro_batch);
  EXPECT_TRUE(forward.is_ok()) << forward.error().message();
  autodiff::TrainingOptions options;
  options.optimizer = autodiff::Optimizer::adam;
  auto graph = autodiff::build_training_graph(*forward, options);
  EXPECT_TRUE(graph.is_ok()) << graph.error().message();
  return std::move(graph).value();
}

// Costs that depend on the stage's ops, parameters and mesh, so that the DP has real choices:
// each op's roofline time (the problem's compute model) splits over the devices, but axis 0 pays
// 20% per extra device in overheads; the gradient
// sync costs parameter bytes over a 1 GB/s link per extra device on axis 1, and memory is split
// perfectly. Every op replicated. Counts its calls.
struct SyntheticSolver {
  int64_t calls = 0;
  Expected<intra::StageSolution> operator()(const intra::StageProblem& p);
};

inline Expected<intra::StageSolution> SyntheticSolver::operator()(const intra::StageProblem& p) {
  ++calls;
  const ir::Graph& g = *p.graph;
  const int n = p.mesh.num_devices();
  const double slowdown = (1 + 0.2 * (p.mesh.n0 - 1)) / n;
  intra::StageSolution s;
  int64_t params = 0, state = 0, activations = 0;
  for (ir::OpId id : p.ops) {
    const ir::Op& op = g.op(id);
    if (op.kind == ir::OpKind::Parameter) (op.role == ir::Role::update ? state : params) += op.outputs[0].bytes();
    if (op.role == ir::Role::forward && op.kind != ir::OpKind::Parameter) {
      for (ir::OpId user : g.users(id)) {
        if (g.op(user).role == ir::Role::backward) {
          activations += op.outputs[0].bytes();
          break;
        }
      }
    }
    std::vector<ir::TensorType> inputs;
    for (const ir::Value& in : op.inputs) inputs.push_back(g.type(in));
    const double t = p.compute->op_seconds(op.kind, inputs, op.outputs, op.attrs) * slowdown;
    if (op.role == ir::Role::forward) s.forward_seconds += t;
    if (op.role == ir::Role::backward) s.backward_seconds += t;
    if (op.role == ir::Role::update) s.update_seconds += t;
    intra::OpSharding sharding;
    for (const ir::Value& in : op.inputs) sharding.inputs.push_back({std::vector<intra::DimSharding>(g.type(in).rank())});
    for (const ir::TensorType& out : op.outputs) sharding.outputs.push_back({std::vector<intra::DimSharding>(out.rank())});
    s.shardings[op.name] = sharding;
  }
  s.grad_sync_seconds = static_cast<double>(params) * (p.mesh.n1 - 1) / 1e9;
  s.weights_bytes = params / n;
  s.optimizer_state_bytes = state / n;
  s.activation_bytes = activations / n;
  s.feasible = p.memory_budget_bytes == 0 || s.weights_bytes + s.optimizer_state_bytes + s.activation_bytes <= p.memory_budget_bytes;
  if (!s.feasible) s.reason = "does not fit";
  return s;
}

}  // namespace strata::planner::testing_util
