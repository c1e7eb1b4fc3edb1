// The stage × submesh dynamic program of the inter-op pass (Alpa §5.2) as a plain request and
// response: contiguous layer ranges become pipeline stages, each on a submesh and logical mesh,
// minimising Σ t_i + (B − 1)·max t_i under per-device memory, with the cluster tiled exactly.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "strata/cluster/cluster.h"
#include "strata/core/status.h"
#include "strata/inter/submesh.h"

namespace strata::inter {

// One candidate stage: layers [first_layer, last_layer] on a submesh seen as a logical mesh,
// run with num_micro_batches micro-batches per step (the micro-batch size follows from it).
struct StageQuery {
  int first_layer = 0;
  int last_layer = 0;
  cluster::Submesh submesh;
  cluster::LogicalMesh logical_mesh;
  int num_micro_batches = 1;
};

// What the intra-op pass says about a candidate stage. Memory is per device.
struct StageCost {
  bool feasible = false;         // false: no sharding exists (the stage is never used)
  double seconds = 0;            // forward + backward of one micro-batch
  int64_t weights_bytes = 0;     // weights, gradients and optimizer state
  int64_t activation_bytes = 0;  // activations kept for ONE micro-batch in flight
};

// Must be a pure function of the query; with num_threads > 1 it is called from several threads.
using StageCostOracle = std::function<StageCost(const StageQuery&)>;

struct StageDpRequest {
  int num_layers = 0;
  int num_nodes = 1;
  int gpus_per_node = 1;                   // a power of two
  std::vector<int> num_micro_batches;      // candidates for B; the best is kept
  int64_t memory_budget_bytes = 0;         // per device
  StageCostOracle oracle;
  int num_threads = 1;                     // threads evaluating the oracle (each candidate once)
  int num_stages = 0;                      // only plans of exactly this many stages (0: any)
};

struct PlannedStage {
  int first_layer = 0;
  int last_layer = 0;
  cluster::Submesh submesh;
  cluster::LogicalMesh logical_mesh;
  SubmeshPlacement placement;
  double seconds = 0;              // per micro-batch
  int64_t weights_bytes = 0;
  int64_t activation_bytes = 0;
  int micro_batches_in_flight = 0;  // min(S − s, B) for stage s of S under 1F1B
  int64_t peak_memory_bytes = 0;    // weights + activations × in flight
};

struct StageDpStats {
  int64_t oracle_calls = 0;          // distinct (range, submesh, mesh, B) evaluated
  int64_t candidates_skipped = 0;    // ranges that no plan could use, never sent to the oracle
  int64_t infeasible_candidates = 0; // oracle said infeasible
  int64_t tmax_candidates = 0;       // distinct stage times over all B
  int64_t tmax_evaluated = 0;        // DP runs (binary search and the ascending sweep)
  double oracle_seconds = 0;         // wall time spent evaluating the oracle
  double search_seconds = 0;         // wall time of the DP itself
};

struct StageDpResult {
  std::vector<PlannedStage> stages;  // in pipeline order, covering layers 0..L-1
  int num_micro_batches = 0;         // the chosen B
  double sum_seconds = 0;            // Σ t_i
  double max_seconds = 0;            // max t_i
  double objective_seconds = 0;      // Σ t_i + (B − 1)·max t_i: the predicted step
  StageDpStats stats;
};

// Exact optimum over contiguous partitions × submesh shapes × logical meshes × B candidates.
// Errors name the request field; when no plan fits memory, the Error gives the least per-device
// memory any plan needs and the budget.
Expected<StageDpResult> solve_stage_dp(const StageDpRequest& request);

// The slow reference: enumerates every plan. For tests of small instances only.
Expected<StageDpResult> solve_stage_dp_brute_force(const StageDpRequest& request);

}  // namespace strata::inter
