// plan_model: the stage × submesh DP over the cached intra-op oracle, with exact pruning; and the
// Megatron-style grid plans.
#include "strata/planner/planner.h"

#include <algorithm>
#include <chrono>
#include <limits>
#include <mutex>
#include <thread>

#include "planner/context.h"
#include "strata/core/units.h"
#include "strata/inter/submesh.h"

namespace strata::planner {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// Layers [first, last] of each of `stages` equal parts of num_layers (the first ones one longer
// when it does not divide).
std::vector<std::pair<int, int>> uniform_ranges(int num_layers, int stages) {
  std::vector<std::pair<int, int>> ranges;
  for (int s = 0, next = 0; s < stages; ++s) {
    const int size = num_layers / stages + (s < num_layers % stages ? 1 : 0);
    ranges.push_back({next, next + size - 1});
    next += size;
  }
  return ranges;
}

// The faster of the stage's unrestricted solution and its Megatron-restricted one (a subset of
// the same strategies, so equally valid): the ILP runs under a time limit (per chunk of the
// stage), and the smaller restricted problem is sometimes solved better within it. With this
// portfolio every grid plan's stages are DP candidates with the same costs.
struct Priced {
  Context::Estimate estimate;
  const StrategyFilter* filter = nullptr;  // the one that gave it
};

const StrategyFilter& no_filter() {
  static const StrategyFilter none;
  return none;
}

const StrategyFilter& megatron() {
  static const StrategyFilter filter = megatron_filter();
  return filter;
}

Expected<Priced> faster(Context& c, int b, int first, int last, const cluster::Submesh& submesh,
                        const cluster::LogicalMesh& mesh) {
  if (c.composing() && c.cluster().gpus_per_node % mesh.n1 != 0) {
    // Composed searches keep Alpa's logical meshes: axis 1 inside a node (every grid mesh is one).
    Priced none{{}, &no_filter()};
    none.estimate.reason = "mesh axis 1 (" + std::to_string(mesh.n1) + " devices) spans nodes";
    return none;
  }
  STRATA_ASSIGN_OR_RETURN(Context::Estimate free, c.stage_estimate(b, first, last, submesh, mesh, no_filter()));
  // The grid's tensor parallelism stays inside a node: other meshes need no restricted twin; on a
  // mesh of one row nothing is sharded over axis 0 anyway.
  if (mesh.n1 > c.cluster().gpus_per_node || mesh.n0 == 1) return Priced{free, &no_filter()};
  STRATA_ASSIGN_OR_RETURN(Context::Estimate restricted, c.stage_estimate(b, first, last, submesh, mesh, megatron()));
  if (!restricted.cost.feasible) return Priced{free, &no_filter()};
  if (!free.cost.feasible || restricted.cost.seconds < free.cost.seconds) return Priced{restricted, &megatron()};
  return Priced{free, &no_filter()};
}

// A uniform pipeline: `ranges` on equal submeshes, each stage on the fastest of `meshes` that fits
// with its 1F1B in-flight micro-batches.
struct UniformPlan {
  bool feasible = false;
  std::string reason;
  double objective = kInf;
  std::vector<ChosenStage> stages;
  std::vector<const StrategyFilter*> filters;  // per stage
};

// The solutions of a plan's stages, as plans use them (Context::plan_solution).
Expected<std::vector<intra::StageSolution>> solutions_of(Context& c, int b, const std::vector<ChosenStage>& stages,
                                                         const std::vector<const StrategyFilter*>& filters) {
  std::vector<intra::StageSolution> solutions;
  for (size_t s = 0; s < stages.size(); ++s) {
    const ChosenStage& st = stages[s];
    STRATA_ASSIGN_OR_RETURN(intra::StageSolution solution,
                            c.plan_solution(b, st.first_layer, st.last_layer, st.submesh, st.mesh, *filters[s]));
    solutions.push_back(std::move(solution));
  }
  return solutions;
}

Expected<UniformPlan> uniform_plan(Context& context, int b, const std::vector<std::pair<int, int>>& ranges,
                                   const cluster::Submesh& submesh, const std::vector<cluster::LogicalMesh>& meshes,
                                   const StrategyFilter& filter) {
  UniformPlan plan;
  const int count = static_cast<int>(ranges.size());
  const int micro_batches = context.micro_batch_counts()[b];
  double sum = 0, most = 0;
  for (int s = 0; s < count; ++s) {
    const int in_flight = std::min(count - s, micro_batches);
    double best = kInf;
    const StrategyFilter* best_filter = nullptr;
    cluster::LogicalMesh best_mesh;
    std::string why;
    for (const cluster::LogicalMesh& mesh : meshes) {
      Priced priced;
      if (filter.tag.empty()) {
        STRATA_ASSIGN_OR_RETURN(priced, faster(context, b, ranges[s].first, ranges[s].second, submesh, mesh));
      } else {
        STRATA_ASSIGN_OR_RETURN(priced.estimate,
                                context.stage_estimate(b, ranges[s].first, ranges[s].second, submesh, mesh, filter));
        priced.filter = &filter;
      }
      const inter::StageCost& cost = priced.estimate.cost;
      if (!cost.feasible) {
        why = priced.estimate.reason;
        continue;
      }
      const int64_t memory = cost.weights_bytes + cost.activation_bytes * in_flight;
      if (memory > context.memory_budget()) {
        why = "needs " + format_bytes(double(memory)) + " per device with " + std::to_string(in_flight) +
              " micro-batch(es) in flight, has " + format_bytes(double(context.memory_budget()));
        continue;
      }
      if (cost.seconds < best) {
        best = cost.seconds;
        best_filter = priced.filter;
        best_mesh = mesh;
      }
    }
    if (!best_filter) {
      plan.reason = "stage " + std::to_string(s) + " (layers " + std::to_string(ranges[s].first) + ".." +
                    std::to_string(ranges[s].second) + "): " + (why.empty() ? "no mesh" : why);
      return plan;
    }
    plan.stages.push_back({ranges[s].first, ranges[s].second, submesh, best_mesh, {}});
    plan.filters.push_back(best_filter);
    sum += best;
    most = std::max(most, best);
  }
  std::vector<cluster::Submesh> submeshes(count, submesh);
  STRATA_ASSIGN_OR_RETURN(auto placement, inter::place_submeshes(submeshes, context.cluster().num_nodes,
                                                                 context.cluster().gpus_per_node));
  for (int s = 0; s < count; ++s) plan.stages[s].placement = placement[s];
  plan.feasible = true;
  plan.objective = sum + (micro_batches - 1) * most;
  return plan;
}

// Runs `work` on `threads` threads (the calling one among them) until it returns.
void run_on_threads(int threads, const std::function<void()>& work) {
  std::vector<std::thread> pool;
  for (int t = 1; t < threads; ++t) pool.emplace_back(work);
  work();
  for (std::thread& t : pool) t.join();
}

// Pipeline depths whose equal parts of the cluster are stage submeshes.
std::vector<int> uniform_depths(const Context& context) {
  std::vector<int> depths;
  const int devices = context.cluster().num_devices();
  for (int pp = 1; pp <= std::min(devices, context.num_layers()); ++pp) {
    if (devices % pp != 0 || !submesh_for(devices / pp, context.cluster())) continue;
    if (context.options().num_stages > 0 && pp != context.options().num_stages) continue;
    depths.push_back(pp);
  }
  return depths;
}

}  // namespace

StrategyFilter megatron_filter() {
  StrategyFilter filter;
  filter.tag = "megatron: parameters and their updates replicated on mesh axis 0";
  filter.allow = [](const ir::Op& op, const intra::Strategy& strategy) {
    if (op.kind != ir::OpKind::Parameter && op.role != ir::Role::update) return true;
    auto uses_axis0 = [](const std::vector<intra::ShardingSpec>& specs) {
      for (const intra::ShardingSpec& spec : specs) {
        if (spec.partial[0]) return true;
        for (intra::DimSharding d : spec.dims) {
          if (d == intra::DimSharding::S0 || d == intra::DimSharding::S01) return true;
        }
      }
      return false;
    };
    return !uses_axis0(strategy.sharding.inputs) && !uses_axis0(strategy.sharding.outputs);
  };
  return filter;
}

Expected<PlanResult> plan_model(const models::ModelSpec& spec, const cluster::ClusterSpec& cluster,
                                const cluster::CommModel& comm, const PlannerOptions& options) {
  const auto start = std::chrono::steady_clock::now();
  STRATA_ASSIGN_OR_RETURN(std::unique_ptr<Context> context, Context::create(spec, cluster, comm, options));
  Context& c = *context;
  const int devices = cluster.num_devices();
  const int layers = c.num_layers();
  const int most_stages = std::min(layers, devices);
  if (options.num_stages > most_stages) {
    return make_error("", "stages", std::to_string(options.num_stages) + " stages but at most " +
                                        std::to_string(most_stages) + " (min of " + std::to_string(layers) +
                                        " layers and " + std::to_string(devices) + " devices)");
  }
  PlanStats stats;
  stats.num_layers = layers;
  stats.micro_batch_candidates = c.micro_batch_counts();
  const int counts = static_cast<int>(c.micro_batch_counts().size());
  const std::vector<int> depths = uniform_depths(c);

  // Progress: the uniform pass's stages, then every DP candidate.
  int64_t total = 0;
  for (int pp : depths) {
    total += int64_t{counts} * pp * static_cast<int64_t>(inter::stage_logical_meshes(*submesh_for(devices / pp, cluster)).size());
  }
  total += counts * dp_candidates(layers, cluster);

  // An upper bound from uniform pipelines (equal layers, equal submeshes, any logical mesh): any
  // candidate whose B × (time lower bound) exceeds it cannot be in the optimum. Its stages are
  // DP candidates too, so they come from the cache when the DP asks.
  const auto solve_start = std::chrono::steady_clock::now();
  double upper = kInf;
  std::vector<std::pair<int, UniformPlan>> uniform;  // (B index, plan) of every feasible one
  if (options.prune) {
    // Every (B, depth) on the threads; results taken in order, so the outcome does not depend on them.
    std::vector<std::pair<int, int>> items;
    for (int b = 0; b < counts; ++b) {
      for (int pp : depths) items.emplace_back(b, pp);
    }
    std::vector<std::optional<Expected<UniformPlan>>> results(items.size());
    std::atomic<size_t> next{0};
    auto work = [&]() {
      for (size_t i = next++; i < items.size(); i = next++) {
        const auto [b, pp] = items[i];
        const cluster::Submesh submesh = *submesh_for(devices / pp, cluster);
        const auto meshes = inter::stage_logical_meshes(submesh);
        results[i] = uniform_plan(c, b, uniform_ranges(layers, pp), submesh, meshes, no_filter());
        for (int64_t k = 0; k < pp * static_cast<int64_t>(meshes.size()); ++k) c.report_progress(total);
      }
    };
    run_on_threads(std::min<int>(options.num_threads, static_cast<int>(items.size())), work);
    for (size_t i = 0; i < items.size(); ++i) {
      if (!results[i]->is_ok()) return results[i]->error();
      UniformPlan& u = results[i]->value();
      if (!u.feasible) continue;
      upper = std::min(upper, u.objective);
      uniform.emplace_back(items[i].first, std::move(u));
    }
  }
  stats.upper_bound_seconds = upper < kInf ? upper : 0;
  if (upper < kInf) c.set_time_cap(upper);

  std::mutex error_mutex;
  std::optional<Error> first_error;
  std::string first_infeasible;  // one reason a candidate had no sharding, for the error
  std::atomic<int64_t> pruned_memory{0}, pruned_time{0}, asked{0};
  inter::StageDpRequest request;
  request.num_layers = layers;
  request.num_nodes = cluster.num_nodes;
  request.gpus_per_node = cluster.gpus_per_node;
  request.num_micro_batches = c.micro_batch_counts();
  request.memory_budget_bytes = c.memory_budget();
  request.num_threads = options.num_threads;
  request.num_stages = options.num_stages;
  request.oracle = [&](const inter::StageQuery& q) -> inter::StageCost {
    ++asked;
    c.report_progress(total);
    const int b = c.index_of(q.num_micro_batches);
    const int n = q.submesh.num_devices();
    if (options.prune) {
      // Parameters and optimizer state alone exceed the budget: report that much memory (so a
      // failing search can still say how much is needed) and never use the stage.
      const int64_t memory = c.memory_lower_bound(b, q.first_layer, q.last_layer, n);
      const double seconds = c.seconds_lower_bound(b, q.first_layer, q.last_layer, n);
      if (memory > c.memory_budget()) {
        ++pruned_memory;
        return {true, seconds, memory, 0};
      }
      if (upper < kInf && q.num_micro_batches * seconds > upper * (1 + 1e-9)) {
        ++pruned_time;
        return {};
      }
    }
    auto priced = faster(c, b, q.first_layer, q.last_layer, q.submesh, q.logical_mesh);
    if (!priced.is_ok()) {
      std::lock_guard<std::mutex> lock(error_mutex);
      if (!first_error) first_error = priced.error();
      return {};
    }
    if (!priced->estimate.cost.feasible) {
      std::lock_guard<std::mutex> lock(error_mutex);
      if (first_infeasible.empty()) first_infeasible = priced->estimate.reason;
    }
    return priced->estimate.cost;
  };
  auto dp = inter::solve_stage_dp(request);
  stats.solve_seconds = seconds_since(solve_start);
  if (first_error) return *first_error;
  if (!dp.is_ok()) {
    Error error = dp.error();
    if (error.field == "memory_budget_bytes") {
      return make_error(cluster.source_file, "gpu_memory_gbytes",
                        "no plan of " + spec.name + " fits in memory (" + error.reason + ")");
    }
    if (!first_infeasible.empty()) error.reason += "; for example: " + first_infeasible;
    return error;
  }
  const int b = c.index_of(dp->num_micro_batches);
  std::vector<ChosenStage> stages;
  std::vector<const StrategyFilter*> filters;
  for (const inter::PlannedStage& s : dp->stages) {
    stages.push_back({s.first_layer, s.last_layer, s.submesh, s.logical_mesh, s.placement});
    STRATA_ASSIGN_OR_RETURN(Priced priced, faster(c, b, s.first_layer, s.last_layer, s.submesh, s.logical_mesh));
    filters.push_back(priced.filter);
  }
  STRATA_ASSIGN_OR_RETURN(std::vector<intra::StageSolution> solutions, solutions_of(c, b, stages, filters));
  STRATA_ASSIGN_OR_RETURN(PlanResult result, c.make_plan(b, stages, solutions));
  // The DP minimises Σ t_i + (B − 1)·max t_i of forward and backward; the step also pays sends,
  // gradient sync and the update. So the final choice is the simulator's: the DP's plan against
  // the uniform pipelines solved for the bound above (all in the same search space), fastest
  // simulated step first, the DP's plan on ties.
  stats.dp_optimum_seconds = result.dp_objective_seconds;
  stats.simulated_plans = 1;
  for (const auto& [ub, u] : uniform) {
    STRATA_ASSIGN_OR_RETURN(std::vector<intra::StageSolution> uniform_solutions, solutions_of(c, ub, u.stages, u.filters));
    STRATA_ASSIGN_OR_RETURN(PlanResult other, c.make_plan(ub, u.stages, uniform_solutions));
    ++stats.simulated_plans;
    if (other.step_seconds < result.step_seconds * (1 - 1e-9)) {
      result = std::move(other);
      stats.chose_uniform = true;
    }
  }
  stats.candidates = asked;
  stats.pruned_memory = pruned_memory;
  stats.pruned_time = pruned_time;
  stats.problems_solved = c.problems_solved;
  stats.ilp_solves = c.ilp_solves;
  stats.chunk_ilps = c.chunk_ilps;
  stats.chunk_hits = c.chunk_hits;
  stats.memory_hits = c.memory_hits;
  stats.disk_hits = c.disk_hits;
  stats.composed = c.composing();
  stats.layer_solves = c.layer_solves;
  stats.evaluations = c.evaluations;
  stats.exact_fallbacks = c.exact_fallbacks;
  stats.pruned_time += c.pruned_priced;
  stats.graph_seconds = c.graph_seconds;
  stats.search_seconds = seconds_since(start);
  result.stats = stats;
  return result;
}

namespace {

Expected<GridResult> grid_point(Context& c, const GridPoint& point, const StrategyFilter& filter) {
  GridResult out;
  out.point = point;
  const cluster::ClusterSpec& cluster = c.cluster();
  const int b = c.index_of(point.num_micro_batches);
  auto fail = [&](const std::string& why) {
    out.reason = why;
    return out;
  };
  if (point.dp < 1 || point.tp < 1 || point.pp < 1 || point.dp * point.tp * point.pp != cluster.num_devices()) {
    return make_error("", "grid", "dp x tp x pp = " + std::to_string(point.dp) + " x " + std::to_string(point.tp) +
                                      " x " + std::to_string(point.pp) + " is not the " +
                                      std::to_string(cluster.num_devices()) + " devices");
  }
  if (b < 0) return make_error("", "grid.num_micro_batches", std::to_string(point.num_micro_batches) + " was not prepared");
  if (point.pp > c.num_layers()) return fail("more stages than layers");
  const auto submesh = submesh_for(point.dp * point.tp, cluster);
  if (!submesh) return fail("dp x tp = " + std::to_string(point.dp * point.tp) + " devices is not a stage submesh");
  const auto start = std::chrono::steady_clock::now();
  STRATA_ASSIGN_OR_RETURN(UniformPlan u, uniform_plan(c, b, uniform_ranges(c.num_layers(), point.pp), *submesh,
                                                      {cluster::LogicalMesh{point.dp, point.tp}}, filter));
  if (!u.feasible) return fail(u.reason);
  STRATA_ASSIGN_OR_RETURN(std::vector<intra::StageSolution> solutions, solutions_of(c, b, u.stages, u.filters));
  STRATA_ASSIGN_OR_RETURN(out.result, c.make_plan(b, u.stages, solutions));
  out.feasible = true;
  out.result.stats.num_layers = c.num_layers();
  out.result.stats.micro_batch_candidates = {point.num_micro_batches};
  out.result.stats.search_seconds = seconds_since(start);
  return out;
}

PlannerOptions grid_options(const PlannerOptions& options, int num_micro_batches) {
  PlannerOptions o = options;
  o.num_stages = 0;
  o.num_micro_batches = num_micro_batches;
  return o;
}

}  // namespace

Expected<GridResult> grid_plan(const models::ModelSpec& spec, const cluster::ClusterSpec& cluster,
                               const cluster::CommModel& comm, const GridPoint& point, const PlannerOptions& options) {
  STRATA_ASSIGN_OR_RETURN(std::unique_ptr<Context> context,
                          Context::create(spec, cluster, comm, grid_options(options, point.num_micro_batches)));
  return grid_point(*context, point, megatron_filter());
}

Expected<GridSearch> best_grid_plan(const models::ModelSpec& spec, const cluster::ClusterSpec& cluster,
                                    const cluster::CommModel& comm, const PlannerOptions& options) {
  const auto start = std::chrono::steady_clock::now();
  PlannerOptions o = options;
  o.num_stages = 0;
  STRATA_ASSIGN_OR_RETURN(std::unique_ptr<Context> context, Context::create(spec, cluster, comm, o));
  Context& c = *context;
  const StrategyFilter filter = megatron_filter();
  GridSearch search;
  const int devices = cluster.num_devices();
  for (int count : c.micro_batch_counts()) {
    for (int tp = 1; tp <= cluster.gpus_per_node; tp *= 2) {
      for (int pp = 1; pp <= devices; ++pp) {
        if (devices % (pp * tp) != 0) continue;
        GridPoint point{devices / (pp * tp), tp, pp, count};
        if (!submesh_for(point.dp * tp, cluster) || pp > c.num_layers()) continue;
        STRATA_ASSIGN_OR_RETURN(GridResult r, grid_point(c, point, filter));
        search.points.push_back(std::move(r));
        const GridResult& last = search.points.back();
        if (last.feasible && (search.best < 0 || last.result.step_seconds <
                                                     search.points[search.best].result.step_seconds)) {
          search.best = static_cast<int>(search.points.size()) - 1;
        }
      }
    }
  }
  search.search_seconds = seconds_since(start);
  return search;
}

}  // namespace strata::planner
