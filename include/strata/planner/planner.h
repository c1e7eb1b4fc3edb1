// The full planner (`strata plan`): the training graph of one micro-batch, its layers
// (planner/layers.h), the stage × submesh DP (inter/stage_dp.h) whose oracle is the intra-op ILP
// (intra::solve_stage) on each candidate stage, cached on disk by content; and the Megatron-style
// data × tensor × pipeline grid plans it is compared with (the baselines reuse them).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "strata/cluster/cluster.h"
#include "strata/cluster/comm.h"
#include "strata/core/json.h"
#include "strata/core/status.h"
#include "strata/cost/compute.h"
#include "strata/intra/stage_solver.h"
#include "strata/models/models.h"
#include "strata/plan/plan.h"

namespace strata::planner {

// Solves one stage problem; the default calls intra::solve_stage with lp_solve. Tests put a
// synthetic one here. Must be a pure function of the problem (results are cached by content).
using StageSolveFn = std::function<Expected<intra::StageSolution>(const intra::StageProblem&)>;

// A restriction of the strategies the ILP may pick, with a tag naming it in cache keys (two
// filters with one tag must admit the same strategies).
struct StrategyFilter {
  std::string tag;  // "" = no filter
  std::function<bool(const ir::Op&, const intra::Strategy&)> allow;
};

// Megatron-style data × tensor parallelism on a dp × tp logical mesh: every parameter, its
// gradient sum, optimizer state and update are replicated along mesh axis 0 (data parallel:
// gradients all-reduced over it); along axis 1 the ILP picks freely (tensor parallel), so the
// filter admits Megatron's column/row-parallel patterns and anything else on that axis. The
// grid baseline is therefore at least as strong as Megatron under the same cost model.
StrategyFilter megatron_filter();

struct PlanProgress {
  int64_t done = 0;   // candidate stages answered (solved, from cache, or pruned)
  int64_t total = 0;  // candidate stages the search will ask about
};

// Candidate stages (all B) from which the automatic layer composition is used: below it every
// candidate's ILP is solved; above, the exact search takes minutes to hours on a laptop.
constexpr int64_t kComposeCandidates = 1000;

struct PlannerOptions {
  int num_stages = 0;                   // force the number of pipeline stages (0: search)
  int num_micro_batches = 0;            // force B (0: search)
  std::vector<int> micro_batch_candidates;  // the B to search when not forced (empty: default)
  int num_layers = 0;                   // layers to cluster the forward graph into (0: automatic)
  int num_threads = 1;                  // threads solving candidate stages
  std::string cache_dir;                // on-disk stage cache ("" = memory only)
  double ilp_time_limit_seconds = 30;   // per stage ILP
  int64_t memory_budget_bytes = 0;      // per device (0: the cluster's GPU memory)
  bool prune = true;                    // skip candidates that provably cannot be in the optimum
  // Stage costs for the search composed from per-block solutions (Context::stage_estimate):
  // automatic = when the search asks about at least kComposeCandidates candidate stages.
  enum class Composition { automatic, on, off };
  Composition layer_composition = Composition::automatic;
  plan::Training training;              // optimizer of the training graph
  std::string model_file;               // recorded in the plan ("" = the spec's file)
  const cost::ComputeModel* compute = nullptr;  // prices ops (null: the cluster's roofline)
  StageSolveFn solve;                   // null: intra::solve_stage with lp_solve
  std::function<void(const PlanProgress&)> progress;  // called from worker threads, serialised
};

struct PlanStats {
  int num_layers = 0;
  std::vector<int> micro_batch_candidates;
  int64_t candidates = 0;       // candidate stages the DP asked about (all B)
  int64_t problems_solved = 0;  // distinct stage problems solved (not from a cache)
  int64_t ilp_solves = 0;       // solver runs (a problem whose fastest sharding overflows memory takes two)
  int64_t chunk_ilps = 0;       // ILPs run for chunks of split stages (intra::StageProblem::max_ilp_decision_nodes)
  int64_t chunk_hits = 0;       // chunk ILPs answered by an identical chunk solved before (intra::ChunkCache)
  int64_t memory_hits = 0;      // answered by an identical problem solved in this run
  int64_t disk_hits = 0;        // answered from the on-disk cache
  int64_t pruned_memory = 0;    // parameters alone exceed the budget
  int64_t pruned_time = 0;      // B × a lower bound on its time exceeds a known plan's step
  bool composed = false;        // stage costs composed from per-block solutions (PlannerOptions::layer_composition)
  int64_t layer_solves = 0;     // composed: per-block solutions asked (each one a cached stage problem)
  int64_t evaluations = 0;      // composed: stages whose pinned per-block shardings were priced as one stage
  int64_t exact_fallbacks = 0;  // composed: stages whose pinned shardings could not be priced, solved exactly
  double upper_bound_seconds = 0;  // the known plan's DP objective used for pruning (0: none)
  double dp_optimum_seconds = 0;  // the stage DP's optimum (its plan's dp_objective_seconds)
  int simulated_plans = 0;      // plans the simulator ranked for the final choice (the DP's + uniform ones)
  bool chose_uniform = false;   // a uniform pipeline simulated faster than the DP's plan and was chosen
  double graph_seconds = 0;     // building training graphs and layers
  double solve_seconds = 0;     // wall time of candidate evaluation
  double search_seconds = 0;    // total wall time of plan_model
};

struct PlanResult {
  plan::Plan plan;               // predicted.* from the simulator
  double dp_objective_seconds = 0;  // Σ t_i + (B − 1)·max t_i of the DP (fwd + bwd only)
  double step_seconds = 0;       // simulated step (sends, gradient sync and update included)
  double training_flops = 0;     // per step (all micro-batches)
  double tflops_per_device = 0;  // training_flops / step / devices / 1e12
  PlanStats stats;
};

// Plans `spec` on `cluster`. Each candidate stage costs the faster of its unrestricted ILP
// solution and its megatron_filter one (both valid; the ILP is time-limited, and the restricted
// problem is sometimes solved better), so every grid plan's stages are among the DP's
// candidates at their grid costs. Errors name the field (options, model or cluster); when nothing
// fits, the error says how much memory per device a plan needs at least and how much there is.
Expected<PlanResult> plan_model(const models::ModelSpec& spec, const cluster::ClusterSpec& cluster,
                                const cluster::CommModel& comm, const PlannerOptions& options);

// One data × tensor × pipeline grid point: pp stages of equal layer counts (the forward graph
// cut into options.num_layers layers, or pp when 0), each on dp·tp devices as a dp × tp mesh
// with megatron_filter, B micro-batches.
struct GridPoint {
  int dp = 1, tp = 1, pp = 1;
  int num_micro_batches = 1;
};

struct GridResult {
  GridPoint point;
  bool feasible = false;
  std::string reason;       // why not, when infeasible
  PlanResult result;        // when feasible
};

// The grid plan at `point` (the options' stage/B forcing is ignored).
Expected<GridResult> grid_plan(const models::ModelSpec& spec, const cluster::ClusterSpec& cluster,
                               const cluster::CommModel& comm, const GridPoint& point,
                               const PlannerOptions& options);

// Every grid point with tp ≤ GPUs per node (powers of two), dp·tp a valid stage submesh,
// pp ≤ layers, B over the options' candidates; all results (feasible or not) and the best
// feasible one's index (-1 when none fits) in `best`.
struct GridSearch {
  std::vector<GridResult> points;
  int best = -1;
  double search_seconds = 0;
};
Expected<GridSearch> best_grid_plan(const models::ModelSpec& spec, const cluster::ClusterSpec& cluster,
                                    const cluster::CommModel& comm, const PlannerOptions& options);

// A stage's costs, memory and strategies (OpSharding text) from its intra-op solution.
void apply_solution(const intra::StageSolution& solution, plan::Stage* stage);

// The numbers `strata plan` prints, as JSON and as text.
Json result_json(const PlanResult& result);
std::string result_report(const PlanResult& result);

}  // namespace strata::planner
