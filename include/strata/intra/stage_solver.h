// One pipeline stage's intra-op plan: strategies for every op of the stage on one logical mesh,
// chosen by the ILP (compute + communication + resharding, under a per-device memory budget).
// The planner (inter), the baselines and `strata plan --intra-only` call solve_stage.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "strata/cluster/cluster.h"
#include "strata/cluster/comm.h"
#include "strata/cost/compute.h"
#include "strata/intra/solver.h"
#include "strata/intra/strategy.h"
#include "strata/ir/graph.h"

namespace strata::intra {

// Answers of chunk ILPs (StageProblem::max_ilp_decision_nodes) by the exact content of the chunk's
// solver request (every cost, memory figure, follow map, edge matrix, the budget, the time limit)
// and the solver's name: an identical request gets the answer the solver gave it before, so the
// cache never changes a result (up to ILPs that stopped at their time limit). Chunks are cut at
// block boundaries, so the identical blocks of a transformer give identical chunk requests, within
// a stage and across the stages of a planner search. Thread-safe; share one across solve_stage calls.
class ChunkCache {
 public:
  std::optional<SolverResponse> find(const std::string& key);
  void store(const std::string& key, const SolverResponse& response);
  int64_t hits() const;
  int64_t misses() const;

 private:
  mutable std::mutex mutex_;
  std::unordered_map<std::string, SolverResponse> entries_;
  int64_t hits_ = 0, misses_ = 0;
};

struct StageProblem {
  const ir::Graph* graph = nullptr;     // training graph of ONE micro-batch
  std::vector<ir::OpId> ops;            // ops of the stage (forward ops of its layers + their backward/update ops); empty = all
  cluster::Submesh submesh;
  cluster::LogicalMesh mesh;
  const cluster::ClusterSpec* cluster = nullptr;
  const cluster::CommModel* comm = nullptr;
  // Prices the ops; when null, a ComputeModel of *cluster with default options is used.
  const cost::ComputeModel* compute = nullptr;
  // Optional, not owned: cost::fused_for_cuda(*graph), used when compute prices the cuda backend's
  // fused graph (computed here when null).
  const std::vector<cost::FusedOp>* fused = nullptr;
  int64_t memory_budget_bytes = 0;      // per device; 0 = none
  double time_limit_seconds = 30;
  // Micro-batches per step: the objective is one step, num_micro_batches × (forward + backward)
  // + update + gradient sync, so that re-gathering sharded weights every micro-batch (ZeRO-3
  // style) is weighed against syncing gradients once. At 1 the two tie up to the update's cost.
  int num_micro_batches = 1;
  // Stages with more decision nodes (ops that do not follow another) than this are solved as
  // ILPs over chunks of consecutive layers: a first pass in order (each chunk optimal given the
  // chunks before it), then one sweep re-solving each chunk with all others fixed, kept only
  // where it lowers the step cost. Memory: a chunk may use what the other chunks leave
  // (their choice, or the least they can use). Not a global optimum; 0: always one ILP.
  // Chunks hold whole blocks (runs of decision nodes whose forward op's name has the same first
  // component, "layer3." in the transformers), as many as fit; a block larger than the limit is
  // cut into equal pieces.
  int max_ilp_decision_nodes = 64;
  // Optional, not owned: chunk ILPs answered from here when an identical one was solved before.
  ChunkCache* chunk_cache = nullptr;
  // Drop strategies that another strategy of the same decision node dominates before the ILP:
  // no more compute + communication, no more memory, and no more resharding on every edge towards
  // every strategy of the other end (followers folded in). Exact: some optimum (with the same
  // cost, under the same budget) survives. Forbidden (+inf) strategies are dropped too.
  bool prune_dominated = true;
  // Under a memory budget, first price memory into the costs (Lagrangian relaxation: up to this
  // many solves WITHOUT the memory row, which elimination keeps exact and fast) and improve the
  // best fitting answer by one-node moves; then the budgeted ILP (or chunk ILPs) as without it,
  // unless the search proved its answer optimal. The cheaper answer within the budget is kept, so
  // it is never worse than the budgeted ILP alone (0: the budgeted ILP alone). Why: the memory row
  // makes lp_solve slow, at its time limit it returns whatever incumbent it has (or none), and
  // chunks cannot hand memory to one another.
  int budget_search_solves = 12;
  // Optional restriction (baselines: data-parallel only, ZeRO, Megatron...): return false to forbid a strategy.
  std::function<bool(const ir::Op&, const Strategy&)> allow;
};

struct StageSolution {
  bool feasible = false;
  std::string reason;                                  // why, when not feasible (e.g. memory needed vs budget)
  std::map<std::string, OpSharding> shardings;         // op name -> sharding, EVERY op of the stage
  double forward_seconds = 0, backward_seconds = 0;    // per micro-batch: compute + comm + resharding of forward / backward ops
  double update_seconds = 0, grad_sync_seconds = 0;    // per step: update ops, and resharding of gradients into the update ops
  int64_t weights_bytes = 0, optimizer_state_bytes = 0, activation_bytes = 0;  // per device; activations kept from forward to backward for ONE micro-batch
  int num_variables = 0, num_constraints = 0;  // summed over the ILPs solved
  double solve_seconds = 0;
  int num_ilps = 0;                               // 1 unless the stage was split: its chunks (max_ilp_decision_nodes)
  int ilps_solved = 0;                            // solver runs (a split stage: two passes over its chunks), the budget search's included
  int chunk_cache_hits = 0;                       // chunk ILPs answered by problem.chunk_cache instead
  int budget_search_solves = 0;                   // unbudgeted solves of the budget search (budget_search_solves)
  int budget_search_moves = 0;                    // one-node moves it made (repair and improvement)
  double budget_search_objective_seconds = 0;     // the search's answer, before the budgeted ILP (0: none)
  double budget_search_wall_seconds = 0;          // time the search took
  double objective_seconds = 0;                   // the solver objective: one step (see num_micro_batches)
};

// The ops of a stage made of the forward ops whose names start with `prefix` (e.g. "layer3."):
// those ops, and every backward and update op whose forward op is one of them. Ascending ids.
std::vector<ir::OpId> ops_owned_by_prefix(const ir::Graph& graph, const std::string& prefix);

// The solver request solve_stage builds, with what each solver node stands for (tests and
// benchmarks solve it with other solvers). One node per op of the stage, in op-id order.
struct StageRequest {
  SolverRequest request;
  std::vector<ir::OpId> node_ops;                 // per node: the op
  std::vector<std::vector<Strategy>> strategies;  // per node: its strategies (after `allow` and pruning)
  int strategies_before_pruning = 0;              // over decision nodes
  int strategies_after_pruning = 0;
};
Expected<StageRequest> build_stage_request(const StageProblem& problem);

// Edges from ops outside the stage (values received from another stage) are dropped: such a
// value enters in whatever spec the consumer wants, and its transfer is the inter-op level's
// cost; values consumed outside the stage likewise. Deterministic: the same problem gives the
// same solution. Errors: a null graph/cluster/comm, an op id out of range, a mesh that does not
// match the submesh's device count.
Expected<StageSolution> solve_stage(const StageProblem& problem, ilp::Solver& solver);

}  // namespace strata::intra
