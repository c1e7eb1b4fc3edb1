// compare(): every baseline through the planner's own machinery. Restricted methods wrap the stage
// solver: they set the strategy filter of each stage problem, or answer "infeasible" for stages
// the method may not use, so the DP, the plan writer and the simulator are the very same.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <optional>

#include "strata/autodiff/autodiff.h"
#include "strata/baselines/baselines.h"
#include "strata/core/units.h"
#include "strata/intra/stage_solver.h"
#include "strata/models/models.h"
#include "strata/planner/layers.h"

namespace strata::baselines {
namespace {

using planner::PlannerOptions;
using planner::StageSolveFn;

constexpr Method kMethods[] = {Method::strata,     Method::data_parallel, Method::zero2,
                               Method::zero3,      Method::megatron,      Method::intra_only,
                               Method::inter_only, Method::equal_layer,   Method::equal_mesh};

StageSolveFn base_solver(const PlannerOptions& options) {
  if (options.solve) return options.solve;
  return [](const intra::StageProblem& problem) -> Expected<intra::StageSolution> {
    intra::ilp::LpSolveSolver solver;
    return intra::solve_stage(problem, solver);
  };
}

intra::StageSolution infeasible(const std::string& reason) {
  intra::StageSolution solution;
  solution.reason = reason;
  return solution;
}

// Returns "" when the stage may be used, else why not.
using StageGate = std::function<std::string(const intra::StageProblem&)>;
using FilterForMesh = std::function<planner::StrategyFilter(const cluster::LogicalMesh&)>;

bool about_memory(const std::string& reason) {
  return reason.find("memory") != std::string::npos || reason.find("budget") != std::string::npos;
}

// The planner options of a method: each stage problem gets the method's filter (when given) and
// goes to the shared solver only when `gate` lets it through; stages refused for memory are
// counted in `memory_refusals`, so that a method that finds no plan can be called out of memory.
PlannerOptions restricted(const PlannerOptions& options, const FilterForMesh& filter, const StageGate& gate,
                          std::shared_ptr<std::atomic<int64_t>> memory_refusals) {
  PlannerOptions o = options;
  if (filter || gate) o.cache_dir.clear();  // the on-disk cache keys do not know the restriction
  StageSolveFn base = base_solver(options);
  o.solve = [base, filter, gate, memory_refusals](const intra::StageProblem& problem) -> Expected<intra::StageSolution> {
    if (gate) {
      if (std::string why = gate(problem); !why.empty()) return infeasible(why);
    }
    intra::StageProblem q = problem;
    if (filter) q.allow = filter(problem.mesh).allow;
    Expected<intra::StageSolution> solution = base(q);
    if (solution.is_ok() && !solution->feasible && about_memory(solution->reason)) ++*memory_refusals;
    return solution;
  };
  return o;
}

// Stages of exactly `stages` equal layer ranges of `num_layers` layers. The planner's layers are
// rebuilt with the same clustering (assign_layers with its FLOPs-per-byte weight) and a stage is
// admitted only when its op list IS one of the equal ranges, so a mismatch can only reject.
class EqualLayerGate {
 public:
  EqualLayerGate(const cluster::ClusterSpec& cluster, int num_layers, int stages)
      : cluster_(cluster), num_layers_(num_layers), stages_(stages) {}

  std::string operator()(const intra::StageProblem& problem) {
    const std::vector<std::vector<ir::OpId>>* ranges = nullptr;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (!ranges_) build(*problem.graph);
      ranges = &*ranges_;
    }
    if (ranges->empty()) return "the planner's layers could not be rebuilt";
    for (const auto& ops : *ranges) {
      if (ops == problem.ops) return "";
    }
    return "not one of " + std::to_string(stages_) + " equal layer ranges";
  }

 private:
  void build(const ir::Graph& graph) {
    ranges_.emplace();
    const cluster::Link& link = cluster_.num_nodes > 1 ? cluster_.inter_node : cluster_.intra_node;
    const DType dtype = graph.op(graph.parameters().empty() ? 0 : graph.parameters()[0]).outputs[0].dtype;
    const double weight =
        link.bandwidth_bytes_per_second > 0 ? cluster_.peak_flops(dtype) / link.bandwidth_bytes_per_second : 0;
    auto layers = planner::assign_layers(graph, num_layers_, weight);
    if (!layers.is_ok()) return;
    const int size = num_layers_ / stages_;
    for (int s = 0; s < stages_; ++s) ranges_->push_back(planner::stage_ops(*layers, s * size, (s + 1) * size - 1));
  }

  const cluster::ClusterSpec& cluster_;
  int num_layers_;
  int stages_;
  std::mutex mutex_;
  std::optional<std::vector<std::vector<ir::OpId>>> ranges_;
};

// The optimizer state of the whole model (Adam's moments: the Parameters of Role::update) in the
// training graph that `options` plan with.
Expected<int64_t> optimizer_state_bytes(const models::ModelSpec& spec, const PlannerOptions& options) {
  STRATA_ASSIGN_OR_RETURN(ir::Graph forward, models::build_forward_graph(spec, 1));
  STRATA_ASSIGN_OR_RETURN(ir::Graph training,
                          autodiff::build_training_graph(forward, plan::autodiff_options(options.training)));
  int64_t bytes = 0;
  for (ir::OpId id = 0; id < training.num_ops(); ++id) {
    const ir::Op& op = training.op(id);
    if (op.kind == ir::OpKind::Parameter && op.role == ir::Role::update) bytes += op.outputs[0].bytes();
  }
  return bytes;
}

bool is_power_of_two(int x) { return x > 0 && (x & (x - 1)) == 0; }

// Whether `devices` devices form one stage submesh of the cluster (as the DP's shapes).
bool is_stage_submesh(int devices, const cluster::ClusterSpec& cluster) {
  if (devices <= cluster.gpus_per_node) return is_power_of_two(devices);
  return devices % cluster.gpus_per_node == 0 && devices / cluster.gpus_per_node <= cluster.num_nodes;
}

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// A planner error as a method's outcome: "OOM" when the planner says nothing fits in memory or
// the solver refused stages for memory, else infeasible with the planner's words.
void record_failure(MethodResult& out, const Error& error, int64_t memory_refusals) {
  out.feasible = false;
  out.out_of_memory = error.field == "gpu_memory_gbytes" || memory_refusals > 0;
  out.reason = error.message();
}

using Refusals = std::shared_ptr<std::atomic<int64_t>>;
Refusals new_refusals() { return std::make_shared<std::atomic<int64_t>>(0); }

// One planner run as a method's outcome.
void record(MethodResult& out, Expected<planner::PlanResult> r, const Refusals& refusals) {
  if (r.is_ok()) {
    out.feasible = true;
    out.result = std::move(r).value();
  } else {
    record_failure(out, r.error(), *refusals);
  }
}

// The best of several planner runs (by simulated step); the last failure kept for the reason.
struct Best {
  MethodResult out;
  bool any = false;
  std::optional<Error> last_error;
  void offer(Expected<planner::PlanResult> r, const std::string& detail) {
    if (!r.is_ok()) {
      last_error = r.error();
      return;
    }
    if (!any || r->step_seconds < out.result.step_seconds) {
      out.result = std::move(r).value();
      out.detail = detail;
      out.feasible = true;
      any = true;
    }
  }
  MethodResult finish(const Refusals& refusals) {
    if (!any && last_error) record_failure(out, *last_error, *refusals);
    if (!any && !last_error) out.reason = "no stage count applies to this model and cluster";
    return out;
  }
};

}  // namespace

const char* method_name(Method method) {
  switch (method) {
    case Method::strata: return "strata";
    case Method::data_parallel: return "data-parallel";
    case Method::zero2: return "zero-2";
    case Method::zero3: return "zero-3";
    case Method::megatron: return "megatron-grid";
    case Method::intra_only: return "intra-only";
    case Method::inter_only: return "inter-only";
    case Method::equal_layer: return "equal-layer";
    case Method::equal_mesh: return "equal-mesh";
  }
  STRATA_UNREACHABLE("unknown method");
}

Expected<Method> parse_method(const std::string& name) {
  std::string known;
  for (Method m : kMethods) {
    if (name == method_name(m)) return m;
    known += std::string(known.empty() ? "" : ", ") + method_name(m);
  }
  return make_error("", "methods", "unknown method '" + name + "' (known: " + known + ")");
}

std::vector<Method> all_methods() { return {std::begin(kMethods), std::end(kMethods)}; }

Expected<std::vector<MethodResult>> compare(const models::ModelSpec& spec, const cluster::ClusterSpec& cluster,
                                            const cluster::CommModel& comm, const CompareOptions& options) {
  const PlannerOptions& base = options.planner;
  const int devices = cluster.num_devices();
  const FilterForMesh replicated = [](const cluster::LogicalMesh&) { return replicated_weights_filter(); };
  // The full plan (its layer count fixes the ablations') is computed once, whichever method asks first.
  std::optional<MethodResult> strata;
  auto run_strata = [&]() -> Expected<MethodResult> {
    if (strata) return *strata;
    MethodResult out;
    Refusals refusals = new_refusals();
    auto r = planner::plan_model(spec, cluster, comm, restricted(base, nullptr, nullptr, refusals));
    if (!r.is_ok() && r.error().field != "gpu_memory_gbytes" && *refusals == 0) return r.error();  // bad input
    record(out, std::move(r), refusals);
    strata = out;
    return out;
  };
  auto layers_for_ablations = [&]() -> Expected<int> {
    if (base.num_layers > 0) return base.num_layers;
    STRATA_ASSIGN_OR_RETURN(MethodResult full, run_strata());
    if (!full.feasible) return 0;  // the planner's layers are unknown: the ablations use its default
    return full.result.stats.num_layers;
  };

  std::vector<MethodResult> results;
  for (Method method : options.methods) {
    const auto start = std::chrono::steady_clock::now();
    MethodResult out;
    Refusals refusals = new_refusals();
    switch (method) {
      case Method::strata: {
        STRATA_ASSIGN_OR_RETURN(out, run_strata());
        break;
      }
      case Method::data_parallel: {
        PlannerOptions o = restricted(base, replicated, nullptr, refusals);
        o.num_stages = 1;
        record(out, planner::plan_model(spec, cluster, comm, o), refusals);
        break;
      }
      case Method::zero2: {
        // DeepSpeed's ZeRO-2: weights replicated as in data parallel; gradients reduce-scattered
        // into n shards, each device updating its shard of the optimizer state and all-gathering
        // the updated weights. Per device it holds data parallel's memory less (n-1)/n of the
        // optimizer state, so the data-parallel search runs with the budget raised by exactly that
        // (its memory test is then ZeRO-2's) and its plan is sharded and re-simulated.
        const int64_t budget = base.memory_budget_bytes > 0 ? base.memory_budget_bytes : cluster.gpu_memory_bytes;
        STRATA_ASSIGN_OR_RETURN(const int64_t state, optimizer_state_bytes(spec, base));
        PlannerOptions o = restricted(base, replicated, nullptr, refusals);
        o.num_stages = 1;
        o.memory_budget_bytes = budget + state - (state + devices - 1) / devices;
        auto dp = planner::plan_model(spec, cluster, comm, o);
        if (dp.is_ok()) dp = zero2_from_data_parallel(*dp, comm, spec.dtype);
        record(out, std::move(dp), refusals);
        if (out.feasible && out.result.plan.predicted.peak_memory_bytes > budget) {
          const int64_t needs = out.result.plan.predicted.peak_memory_bytes;
          out = MethodResult{};
          out.out_of_memory = true;
          out.reason = "the sharded plan needs " + format_bytes(double(needs)) + " per device";
        }
        if (out.out_of_memory) {
          out.reason = "no data-parallel plan fits in " + format_bytes(double(budget)) + " per device with the " +
                       "optimizer state sharded over " + std::to_string(devices) + " devices" +
                       (out.reason.empty() ? "" : " (" + out.reason + ")");
        }
        if (out.feasible) out.detail = "data parallel, optimizer state and gradients sharded over " + std::to_string(devices);
        break;
      }
      case Method::zero3: {
        PlannerOptions o = restricted(base, zero3_filter, nullptr, refusals);
        o.num_stages = 1;
        record(out, planner::plan_model(spec, cluster, comm, o), refusals);
        break;
      }
      case Method::intra_only: {
        PlannerOptions o = restricted(base, nullptr, nullptr, refusals);
        o.num_stages = 1;
        record(out, planner::plan_model(spec, cluster, comm, o), refusals);
        break;
      }
      case Method::inter_only:
        record(out, planner::plan_model(spec, cluster, comm, restricted(base, replicated, nullptr, refusals)),
               refusals);
        break;
      case Method::megatron: {
        STRATA_ASSIGN_OR_RETURN(
            planner::GridSearch search,
            planner::best_grid_plan(spec, cluster, comm, restricted(base, nullptr, nullptr, refusals)));
        if (search.best >= 0) {
          const planner::GridResult& g = search.points[search.best];
          out.feasible = true;
          out.result = g.result;
          out.detail = "dp " + std::to_string(g.point.dp) + " x tp " + std::to_string(g.point.tp) + " x pp " +
                       std::to_string(g.point.pp);
        } else {
          out.reason = search.points.empty() ? "no grid point applies" : search.points.back().reason;
          out.out_of_memory = *refusals > 0 || std::any_of(search.points.begin(), search.points.end(),
                                                           [](const planner::GridResult& g) { return about_memory(g.reason) || g.reason.find("per device") != std::string::npos; });
        }
        break;
      }
      case Method::equal_layer:
      case Method::equal_mesh: {
        STRATA_ASSIGN_OR_RETURN(const int layers, layers_for_ablations());
        if (layers == 0) {
          out.reason = "the full plan found no plan, so the layers to ablate are unknown";
          out.out_of_memory = strata && strata->out_of_memory;
          break;
        }
        Best best;
        for (int stages = 1; stages <= std::min(layers, devices); ++stages) {
          StageGate gate;
          std::string detail;
          if (method == Method::equal_layer) {
            if (layers % stages != 0) continue;
            auto shared = std::make_shared<EqualLayerGate>(cluster, layers, stages);
            gate = [shared](const intra::StageProblem& p) { return (*shared)(p); };
            detail = std::to_string(stages) + " stage(s) of " + std::to_string(layers / stages) + " layer(s)";
          } else {
            if (devices % stages != 0 || !is_stage_submesh(devices / stages, cluster)) continue;
            const int each = devices / stages;
            gate = [each](const intra::StageProblem& p) {
              return p.submesh.num_devices() == each ? std::string() : "not a stage of " + std::to_string(each) + " devices";
            };
            detail = std::to_string(stages) + " stage(s) of " + std::to_string(each) + " device(s)";
          }
          PlannerOptions o = restricted(base, nullptr, gate, refusals);
          o.num_stages = stages;
          o.num_layers = layers;
          best.offer(planner::plan_model(spec, cluster, comm, o), detail);
        }
        out = best.finish(refusals);
        break;
      }
    }
    out.method = method;
    out.search_seconds = seconds_since(start);
    if (options.on_result) options.on_result(out);
    results.push_back(std::move(out));
  }
  return results;
}

}  // namespace strata::baselines
