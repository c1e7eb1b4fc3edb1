// What one planning run shares between the DP search, the grid plans and the plan writer: the
// training graph per micro-batch count, the layers, the stage cache, lower bounds for pruning,
// and turning chosen stages into a plan::Plan.
#pragma once

#include <atomic>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "planner/stage_cache.h"
#include "strata/inter/stage_dp.h"
#include "strata/planner/layers.h"
#include "strata/planner/planner.h"

namespace strata::planner {

// One candidate stage as the plan writer needs it.
struct ChosenStage {
  int first_layer = 0, last_layer = 0;
  cluster::Submesh submesh;
  cluster::LogicalMesh mesh;
  inter::SubmeshPlacement placement;
};

class Context {
 public:
  // Checks the options, builds a training graph per micro-batch count and the layers.
  static Expected<std::unique_ptr<Context>> create(const models::ModelSpec& spec, const cluster::ClusterSpec& cluster,
                                                   const cluster::CommModel& comm, const PlannerOptions& options);

  const std::vector<int>& micro_batch_counts() const { return counts_; }
  int index_of(int num_micro_batches) const;  // into micro_batch_counts(); -1 when absent
  int num_layers() const { return layers_.num_layers; }
  int64_t memory_budget() const { return budget_; }
  const PlannerOptions& options() const { return options_; }
  const cluster::ClusterSpec& cluster() const { return cluster_; }

  // The intra-op solution of layers [first, last] on `mesh` with the graph of micro-batch count
  // index b, from the cache when an identical problem was solved before.
  Expected<intra::StageSolution> solve(int b, int first, int last, const cluster::Submesh& submesh,
                                       const cluster::LogicalMesh& mesh, const StrategyFilter& filter);

  // Whether stage costs are composed from per-block solutions (decided in create()).
  bool composing() const { return composing_; }
  // What the DP sees of layers [first, last] on `mesh` (fwd + bwd + (update + grad sync) / B, and
  // memory). Exact: the stage's own solution (solve()). Composing: each unit (block) of its layers
  // solved alone (one cached problem per distinct block structure; when the sum does not fit the
  // device, all again with memory priced, at the least price of a ladder at which the sum fits:
  // a Lagrangian relaxation of the budget), their costs summed plus, for each
  // pair of linked blocks (one reads a value of the other), what the pair costs more than the two
  // alone (resharding between them, activations one keeps for the other's backward): the pair
  // priced as one stage, both pinned.
  struct Estimate {
    inter::StageCost cost;
    std::string reason;  // why, when not feasible
  };
  Expected<Estimate> stage_estimate(int b, int first, int last, const cluster::Submesh& submesh,
                                            const cluster::LogicalMesh& mesh, const StrategyFilter& filter);
  // The solution a plan uses for that stage: exact, solve(); composing, the per-block shardings
  // of stage_estimate priced as one stage (every edge inside it included), or solve() when they
  // cannot be (counted in exact_fallbacks).
  Expected<intra::StageSolution> plan_solution(int b, int first, int last, const cluster::Submesh& submesh,
                                               const cluster::LogicalMesh& mesh, const StrategyFilter& filter);

  // Lower bounds, per device, for layers [first, last] on `devices` devices: the forward and
  // backward seconds (their ops' roofline time split perfectly), and the parameter and optimizer
  // state bytes (split perfectly).
  double seconds_lower_bound(int b, int first, int last, int devices) const;
  int64_t memory_lower_bound(int b, int first, int last, int devices) const;

  // What the DP sees of a solution: fwd + bwd + (update + grad sync) / B, and its memory.
  static inter::StageCost stage_cost(const intra::StageSolution& solution, int num_micro_batches);

  // The plan of `stages` with micro-batch count index b (strategies, costs, send bytes, then the
  // simulator's prediction); `solutions` are the stages' intra-op solutions.
  Expected<PlanResult> make_plan(int b, const std::vector<ChosenStage>& stages,
                                 const std::vector<intra::StageSolution>& solutions) const;

  // Counters.
  std::atomic<int64_t> problems_solved{0}, ilp_solves{0}, memory_hits{0}, disk_hits{0};
  // Chunk ILPs of split stages: solved, and answered by chunk_cache (identical blocks).
  std::atomic<int64_t> chunk_ilps{0}, chunk_hits{0};
  // Composing: per-unit solutions asked, stages priced with pinned shardings, exact fallbacks,
  // stages that needed priced memory but were pruned by the time cap first.
  std::atomic<int64_t> layer_solves{0}, evaluations{0}, exact_fallbacks{0}, pruned_priced{0};
  // Composing: a known plan's DP objective. A stage whose blocks' fastest shardings do not fit
  // and whose B x (their seconds) exceeds it is not priced (infeasible: it cannot be optimal).
  void set_time_cap(double objective_seconds) { time_cap_ = objective_seconds; }
  double graph_seconds = 0;

  void report_progress(int64_t total);  // one more candidate answered, out of `total`

 private:
  Context(const models::ModelSpec& spec, const cluster::ClusterSpec& cluster, const cluster::CommModel& comm,
          const PlannerOptions& options);
  Status build(const models::ModelSpec& spec);
  const std::vector<ir::OpId>& ops_of(int first, int last);
  std::string structure(int b, int first, int last);
  // Cache key of the problem of `ops` (whose structure() hash is `structure`) on `mesh`.
  std::string stage_key(const std::string& structure, const cluster::Submesh& submesh, const cluster::LogicalMesh& mesh,
                        const std::string& tag) const;
  StageSolveFn solver();  // options.solve, or lp_solve (counting chunk ILPs)
  // The problem of `ops` on `mesh` with graph b, the cluster's costs and the options' time limit.
  intra::StageProblem problem_for(int b, const std::vector<ir::OpId>& ops, const cluster::Submesh& submesh,
                                  const cluster::LogicalMesh& mesh) const;
  // The cached solution of `ops` (ascending ids; structure hash `structure`); budget < 0: the
  // fastest sharding, again under the device's budget when it does not fit (solve()); budget >= 0:
  // under exactly that budget (0: none).
  Expected<CachedSolution> cached_solve(int b, const std::vector<ir::OpId>& ops, const std::string& structure,
                                        const cluster::Submesh& submesh, const cluster::LogicalMesh& mesh,
                                        const StrategyFilter& filter, int64_t budget);

  // `solve` run at most once per key through the stage cache (memory, then disk); a solver error
  // becomes an unusable solution with its reason. count_hits: count memory and disk hits.
  Expected<CachedSolution> cached_answer(const std::string& key, const ir::Graph& graph,
                                         const std::vector<ir::OpId>& ops,
                                         const std::function<Expected<intra::StageSolution>()>& solve,
                                         bool count_hits);

  // Composition (see stage_estimate). A layer's ops are cut into units, one per block (ops whose
  // forward op's name has the same first component: "layer7", "embed"), in forward order, so a
  // layer of three identical transformer blocks asks one block problem, not a three-block one.
  struct UnitChoice {
    std::shared_ptr<const CachedSolution> solution;
    inter::StageCost cost;
  };
  struct Composed {
    bool feasible = false;
    std::string reason;
    inter::StageCost cost;
    int level = -1;  // memory price level every unit was solved at (-1: none)
    double units_seconds = 0;  // the units alone, links left out
  };
  using MeshKey = std::tuple<int, int, int, int, std::string>;  // submesh rows, cols, mesh n0, n1, filter tag
  void build_units();
  // Unit u's solution at memory price `level` (-1: unpriced, the fastest sharding).
  Expected<UnitChoice> unit(int b, int u, const cluster::Submesh& submesh, const cluster::LogicalMesh& mesh,
                            const StrategyFilter& filter, int level);
  // Memory prices, seconds per byte: a ladder of kPriceLevels levels, a factor 4 apart, from 2^-10
  // to 2^20 times the base price (price_base_).
  static constexpr int kPriceLevels = 16;
  double price_of(int b, int level) const;
  // The cached solution of `ops` with every byte it keeps priced at price_of(b, level) in the
  // ILP's objective (no memory row: exact and fast), its costs and memory then priced as is.
  Expected<CachedSolution> priced_solve(int b, const std::vector<ir::OpId>& ops, const std::string& structure,
                                        const cluster::Submesh& submesh, const cluster::LogicalMesh& mesh,
                                        const StrategyFilter& filter, int level);
  Expected<Composed> compose(int b, int first, int last, const cluster::Submesh& submesh,
                             const cluster::LogicalMesh& mesh, const StrategyFilter& filter);
  // `units` (whose ops are `ops`, structure hash `structure`) priced as one stage with each
  // unit's ops pinned to the strategies of its own solution at levels[k]. An unusable
  // solution (with its reason) when a pinned strategy is not among the op's strategies here.
  Expected<CachedSolution> pinned(int b, const std::vector<int>& units, const std::vector<ir::OpId>& ops,
                                  const std::string& structure, const cluster::Submesh& submesh,
                                  const cluster::LogicalMesh& mesh, const StrategyFilter& filter,
                                  const std::vector<int>& levels);
  // What units u < v cost together beyond alone_u + alone_v (zero when nothing links them).
  Expected<inter::StageCost> link_cost(int b, int u, int v, int level_u, int level_v,
                                       const inter::StageCost& alone_u, const inter::StageCost& alone_v,
                                       const cluster::Submesh& submesh, const cluster::LogicalMesh& mesh,
                                       const StrategyFilter& filter);
  std::vector<int> unit_range(int first, int last) const;  // the units of layers [first, last]

  struct BatchGraph {
    int num_micro_batches = 1;
    int64_t micro_batch = 0;
    ir::Graph graph;
    std::unique_ptr<GraphSignature> signature;
    double training_flops = 0;                 // one micro-batch, forward + backward + update
    std::vector<double> layer_seconds;         // Σ roofline seconds of forward + backward ops
    std::vector<int64_t> layer_state_bytes;    // Σ bytes of parameters and optimizer state
    std::vector<cost::FusedOp> fused;          // how the cuda backend runs each op; empty: as built
  };

  models::ModelSpec spec_;
  cluster::ClusterSpec cluster_;
  const cluster::CommModel& comm_;
  PlannerOptions options_;
  std::unique_ptr<cost::ComputeModel> own_compute_;
  const cost::ComputeModel* compute_ = nullptr;
  int64_t budget_ = 0;
  std::vector<int> counts_;
  std::vector<BatchGraph> graphs_;
  LayerAssignment layers_;
  std::string environment_;  // hash of everything but the stage's structure
  StageCache cache_;
  intra::ChunkCache chunk_cache_;
  std::mutex mutex_;
  std::map<std::pair<int, int>, std::vector<ir::OpId>> ops_;
  std::map<std::tuple<int, int, int>, std::string> structures_;
  bool composing_ = false;
  std::atomic<double> time_cap_{std::numeric_limits<double>::infinity()};
  std::mutex compose_mutex_;
  std::vector<std::vector<ir::OpId>> units_;  // ops of each unit, ascending ids
  std::vector<int> unit_begin_;               // per layer, its first unit; [num_layers]: the unit count
  std::vector<std::vector<int>> unit_links_;  // per unit, the later units that read its values or whose values it reads
  std::map<std::pair<int, int>, std::string> unit_structures_;                            // (b, unit)
  std::vector<double> price_base_;  // per B: seconds per byte of the middle price level
  std::map<std::tuple<int, int, int, MeshKey>, UnitChoice> units_memo_;                    // (b, unit, level, mesh)
  // (b, unit, linked later unit, their levels, mesh)
  std::map<std::tuple<int, int, int, int, int, MeshKey>, inter::StageCost> boundary_memo_;
  std::map<std::tuple<int, int, int, MeshKey>, Composed> composed_memo_;                // (b, first, last, mesh)
  std::mutex progress_mutex_;
  int64_t progress_done_ = 0;
};

// Default micro-batch counts: powers of two dividing the global batch, at most 1024 (micro-batches of one sequence for a 1024 batch): 1 and the 4 largest.
std::vector<int> default_micro_batch_counts(int64_t global_batch);
// Candidate stages the stage DP asks about for one B.
int64_t dp_candidates(int num_layers, const cluster::ClusterSpec& cluster);
// Default layer count of a model (see planner.cpp).
int default_num_layers(const models::ModelSpec& spec, int clusterable_ops);
// (rows, cols) for `devices` devices, or nullopt when no stage submesh has that many.
std::optional<cluster::Submesh> submesh_for(int devices, const cluster::ClusterSpec& cluster);

}  // namespace strata::planner
