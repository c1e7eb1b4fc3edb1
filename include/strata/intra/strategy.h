// Intra-op strategies: how one op runs on a logical mesh (the spec each input is consumed in and
// each output produced in), every such way for every op kind, with its per-device compute cost
// and memory, and the op attributes each device runs with (global shapes made local).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "strata/cluster/cluster.h"
#include "strata/core/status.h"
#include "strata/cost/compute.h"
#include "strata/intra/sharding.h"
#include "strata/ir/graph.h"

namespace strata::intra {

// How one op runs on a logical mesh: the spec each input is consumed in and each output is
// produced in. Inputs are never partial; outputs may carry pending partial sums (P0/P1/P01).
struct OpSharding {
  std::vector<ShardingSpec> inputs;
  std::vector<ShardingSpec> outputs;
  // "[S0R,RS1]->[S0S1]"; a rank-0 replicated spec is empty: "[S0R,]->[P0]".
  std::string to_string() const;
  bool operator==(const OpSharding& other) const;
};

Expected<OpSharding> parse_op_sharding(const std::string& text);

struct Strategy {
  std::string name;             // the op kind and its spec, e.g. "Dot [S0R,RS1]->[S0S1]"
  OpSharding sharding;
  double compute_seconds = 0;   // per device
  double comm_seconds = 0;      // a collective the strategy itself needs (0: partial sums are paid by resharding)
  int64_t memory_bytes = 0;     // per device, outputs
};

// Every strategy of op `id` on `mesh`, each one executable by the SPMD runtime: running the op's
// kernel on each device's local input tiles (with local_attrs) yields that device's local tile of
// each output spec, partial outputs summing over the marked axes. Device (i, j) of an n0×n1 mesh
// holds block i of n0 of an S0 dimension, block j of n1 of an S1 one, block i·n1+j of an S01 one.
// A split is only generated along dimensions the op is independent over, or (as a partial sum)
// along dimensions it is linear over: never through a nonlinear reduction. Sources (Parameter,
// Input, Constant) have no inputs and never produce partial outputs. Strategies come in a fixed
// order (deterministic); mesh axes of size 1 are never used, so a 1×1 mesh gives one strategy.
// `how`: how the target backend runs the op (cost::fused_for_cuda when compute.prices_cuda_fusion()),
// which sets its compute seconds; the strategies themselves stay those of the graph as built.
Expected<std::vector<Strategy>> enumerate_strategies(const ir::Graph& graph, ir::OpId id,
                                                     const cluster::LogicalMesh& mesh,
                                                     const cost::ComputeModel& compute, const cost::FusedOp& how = {});

// The op's attributes with global shapes replaced by local ones under `sharding` (Reshape and
// Broadcast shape, Slice limits, Conv2dGradInput/AvgPool2dGrad input_shape, Conv2dGradFilter
// filter_shape, Parameter/Input/Constant shape), or an Error when the op cannot run locally
// under it (a split the op is not independent or linear over, an uneven split, a wrong arity).
Expected<ir::Attrs> local_attrs(const ir::Op& op, const std::vector<ir::TensorType>& global_inputs,
                                const OpSharding& sharding, const cluster::LogicalMesh& mesh);

}  // namespace strata::intra
