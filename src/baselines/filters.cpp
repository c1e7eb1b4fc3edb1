// The strategy filters of the data-parallel family of baselines: which mesh axes a Parameter or
// an update op (optimizer state, the update itself) may split over.
#include <algorithm>

#include "strata/baselines/baselines.h"

namespace strata::baselines {
namespace {

using intra::DimSharding;
using intra::ShardingSpec;

// Mesh axes (bit 0: axis 0, bit 1: axis 1) a spec splits over or holds a pending sum over.
int axes_of(const ShardingSpec& spec) {
  int axes = (spec.partial[0] ? 1 : 0) | (spec.partial[1] ? 2 : 0);
  for (DimSharding d : spec.dims) {
    if (d == DimSharding::S0) axes |= 1;
    if (d == DimSharding::S1) axes |= 2;
    if (d == DimSharding::S01) axes |= 3;
  }
  return axes;
}

int axes_of(const intra::OpSharding& sharding) {
  int axes = 0;
  for (const ShardingSpec& spec : sharding.inputs) axes |= axes_of(spec);
  for (const ShardingSpec& spec : sharding.outputs) axes |= axes_of(spec);
  return axes;
}

bool holds_weights(const ir::Op& op) { return op.kind == ir::OpKind::Parameter || op.role == ir::Role::update; }

// ZeRO splits a tensor over the data-parallel devices when it can: when some dimension of the
// op's first output divides by the device count, the first output must use every axis of size > 1.
bool split_over_every_axis(const ir::Op& op, const intra::Strategy& strategy, const cluster::LogicalMesh& mesh) {
  const int devices = mesh.n0 * mesh.n1;
  if (devices == 1 || op.outputs.empty()) return true;
  const auto& shape = op.outputs[0].shape;
  const bool splittable = std::any_of(shape.begin(), shape.end(), [&](int64_t d) { return d % devices == 0; });
  if (!splittable) return true;
  const int wanted = (mesh.n0 > 1 ? 1 : 0) | (mesh.n1 > 1 ? 2 : 0);
  const intra::OpSharding& s = strategy.sharding;
  return !s.outputs.empty() && (axes_of(s.outputs[0]) & wanted) == wanted && !s.outputs[0].partial[0] &&
         !s.outputs[0].partial[1];
}

}  // namespace

planner::StrategyFilter replicated_weights_filter() {
  planner::StrategyFilter filter;
  filter.tag = "replicated weights: parameters and update ops use no mesh axis";
  filter.allow = [](const ir::Op& op, const intra::Strategy& strategy) {
    return !holds_weights(op) || axes_of(strategy.sharding) == 0;
  };
  return filter;
}

planner::StrategyFilter zero3_filter(const cluster::LogicalMesh& mesh) {
  planner::StrategyFilter filter;
  filter.tag = "zero-3 on " + std::to_string(mesh.n0) + "x" + std::to_string(mesh.n1);
  filter.allow = [mesh](const ir::Op& op, const intra::Strategy& strategy) {
    return !holds_weights(op) || split_over_every_axis(op, strategy, mesh);
  };
  return filter;
}

}  // namespace strata::baselines
