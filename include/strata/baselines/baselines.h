// Baselines planned under the SAME cost model as Strata (one intra-op ILP, one stage DP, one
// simulator), each giving a plan::Plan and its simulated step: data parallel, ZeRO-2/3-style
// sharded data parallel, the best Megatron-style grid, intra-op only, inter-op only, and the
// equal-layer and equal-mesh ablations of the inter-op pass (docs/compare.md). A method that fits
// no plan in memory is reported as out of memory, as in the Alpa paper.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "strata/core/json.h"
#include "strata/core/status.h"
#include "strata/planner/planner.h"

namespace strata::baselines {

enum class Method {
  strata,         // the full two-level search (planner::plan_model)
  data_parallel,  // one stage on every device, weights and optimizer state replicated
  zero2,          // one stage, weights replicated, gradients and optimizer state sharded (zero2_from_data_parallel)
  zero3,          // one stage, weights, optimizer state and updates sharded (gathered where used)
  megatron,       // the best data × tensor × pipeline grid (planner::best_grid_plan)
  intra_only,     // one stage on every device, any sharding (the full ILP)
  inter_only,     // the stage DP, each stage's weights replicated (replicated or data parallel)
  equal_layer,    // the stage DP with every stage holding the same number of layers
  equal_mesh,     // the stage DP with every stage on the same number of devices
};

const char* method_name(Method method);  // "strata", "data-parallel", "zero-2", ...
Expected<Method> parse_method(const std::string& name);
std::vector<Method> all_methods();

// Strategy filters (see planner::StrategyFilter). `mesh` is the stage's logical mesh.
//  replicated weights: every Parameter and every update op (optimizer state, update) uses no
//    mesh axis: each device holds the whole model; activations split as the ILP likes, which
//    with whole weights means along batch-like dimensions only.
//  ZeRO-3: Parameters and update ops must split their first output over every mesh axis of size
//    > 1 whenever one of its dimensions divides by the device count; the ILP pays the gathers
//    of the weights where forward and backward ops use them.
planner::StrategyFilter replicated_weights_filter();
planner::StrategyFilter zero3_filter(const cluster::LogicalMesh& mesh);

// ZeRO-2 (DeepSpeed's stage 2) from a one-stage data-parallel plan: weights stay replicated; the
// gradients are reduce-scattered into n shards (n: the stage's devices), each device updates its
// shard of the optimizer state, and the updated weights are all-gathered. So the optimizer state
// bytes and update seconds are divided by n (rounded up / exactly), the gradient all-reduce
// seconds scaled by (RS + AG) / AR of the weight bytes under `comm` (1 under alpha-beta), and the
// plan re-simulated. Gradients are sharded too, but the cost model counts no gradient buffer for
// any method (the intra-op memory is weights, optimizer state and activations), so here they
// change the communication only. compare() plans the data-parallel stage with its memory budget
// raised by (n-1)/n of the optimizer state, so ZeRO-2 fits where data parallel does not. The
// intra-op ILP cannot express the sharded update itself (an update op produces its parameter's own
// spec for the next step), so the result carries no per-op strategies.
Expected<planner::PlanResult> zero2_from_data_parallel(const planner::PlanResult& data_parallel,
                                                       const cluster::CommModel& comm, DType dtype);

struct MethodResult {
  Method method = Method::strata;
  bool feasible = false;
  bool out_of_memory = false;    // infeasible because nothing fits in memory
  std::string reason;            // why infeasible
  std::string detail;            // e.g. "dp 2 x tp 4 x pp 1" for the grid
  planner::PlanResult result;    // when feasible: the plan, simulated step, TFLOP/s per device
  double search_seconds = 0;     // wall time of this method's search
};

struct CompareOptions {
  planner::PlannerOptions planner;     // shared by every method (solve: the stage solver to use)
  std::vector<Method> methods = all_methods();
  // Called after each method (for progress on a terminal).
  std::function<void(const MethodResult&)> on_result;
};

// Runs every method of `options` on (spec, cluster). Errors only for bad input (options, model,
// cluster); infeasible methods are results with feasible = false.
Expected<std::vector<MethodResult>> compare(const models::ModelSpec& spec, const cluster::ClusterSpec& cluster,
                                            const cluster::CommModel& comm, const CompareOptions& options);

// The table: method, stages, meshes, micro-batches, predicted step, TFLOP/s per device, peak
// memory per device, and speed relative to the first feasible row's method ("OOM" rows).
std::string compare_table(const std::string& model, const std::string& cluster, int devices,
                          const std::vector<MethodResult>& results);
Json compare_json(const std::string& model, const std::string& cluster, int devices,
                  const std::vector<MethodResult>& results);

}  // namespace strata::baselines
