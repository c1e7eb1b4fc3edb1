// intra_budget_bench: one stage solved as the planner solves it (no memory row first, then under
// the GPU's memory when that does not fit), with where the step goes in the budgeted sharding:
// compute, the strategies' own collectives and resharding, by role and by the costliest ops.
//
//   intra_budget_bench [--model M.yaml] [--cluster C.yaml] [--micro-batches B] [--mesh N0xN1]
//                      [--submesh RxC] [--blocks K] [--budget-gb G] [--time-limit S] [--top N]
//
// Run from the repository root. Objective = one step of B micro-batches (StageProblem).
#include <sys/utsname.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <string>
#include <thread>

#include "strata/autodiff/autodiff.h"
#include "strata/cluster/alpha_beta.h"
#include "strata/core/args.h"
#include "strata/intra/stage_solver.h"
#include "strata/models/models.h"

namespace {

using namespace strata;

int fail(const std::string& message) {
  std::fprintf(stderr, "intra_budget_bench: %s\n", message.c_str());
  return 1;
}

bool parse_pair(const std::string& text, int* a, int* b) {
  const size_t x = text.find('x');
  if (x == std::string::npos) return false;
  try {
    *a = std::stoi(text.substr(0, x));
    *b = std::stoi(text.substr(x + 1));
  } catch (...) {
    return false;
  }
  return *a > 0 && *b > 0;
}

double gb(int64_t bytes) { return static_cast<double>(bytes) / 1e9; }

// Where the step goes in `solution`: per op, the strategy's compute and collective seconds and the
// resharding into it, all per step (× micro-batches except update ops).
void breakdown(const intra::StageProblem& problem, const intra::StageRequest& stage, const intra::StageSolution& solution,
               int top) {
  const ir::Graph& graph = *problem.graph;
  const size_t n = stage.node_ops.size();
  std::vector<int> choice(n, -1);
  for (size_t i = 0; i < n; ++i) {
    const std::string& name = graph.op(stage.node_ops[i]).name;
    auto it = solution.shardings.find(name);
    if (it == solution.shardings.end()) continue;
    for (size_t s = 0; s < stage.strategies[i].size() && choice[i] < 0; ++s) {
      if (stage.strategies[i][s].sharding == it->second) choice[i] = static_cast<int>(s);
    }
  }
  struct Row {
    size_t node;
    double compute, comm, reshard;
  };
  std::vector<Row> rows(n);
  double role_compute[3] = {0, 0, 0}, role_comm[3] = {0, 0, 0}, role_reshard[3] = {0, 0, 0};
  for (size_t i = 0; i < n; ++i) {
    const ir::Op& op = graph.op(stage.node_ops[i]);
    const double weight = op.role == ir::Role::update ? 1.0 : problem.num_micro_batches;
    rows[i].node = i;
    if (choice[i] < 0) continue;
    const intra::Strategy& s = stage.strategies[i][choice[i]];
    rows[i].compute = weight * s.compute_seconds;
    rows[i].comm = weight * s.comm_seconds;
  }
  for (const intra::SolverEdge& edge : stage.request.edges) {
    if (choice[edge.src] < 0 || choice[edge.dst] < 0) continue;
    const size_t cols = stage.request.nodes[edge.dst].strategy_cost.size();
    rows[edge.dst].reshard += edge.cost[choice[edge.src] * cols + choice[edge.dst]];
  }
  for (size_t i = 0; i < n; ++i) {
    const int r = static_cast<int>(graph.op(stage.node_ops[i]).role);
    role_compute[r] += rows[i].compute;
    role_comm[r] += rows[i].comm;
    role_reshard[r] += rows[i].reshard;
  }
  std::printf("#   per step (s)    %12s %12s %12s\n", "compute", "collective", "resharding");
  for (int r = 0; r < 3; ++r) {
    std::printf("#   %-14s %12.3f %12.3f %12.3f\n", ir::role_name(static_cast<ir::Role>(r)), role_compute[r],
                role_comm[r], role_reshard[r]);
  }
  std::stable_sort(rows.begin(), rows.end(), [](const Row& a, const Row& b) {
    return a.compute + a.comm + a.reshard > b.compute + b.comm + b.reshard;
  });
  std::printf("#   costliest ops (per step, s): compute collective resharding-in  strategy\n");
  for (int k = 0; k < top && k < static_cast<int>(rows.size()); ++k) {
    const size_t i = rows[k].node;
    std::printf("#   %-44s %9.3f %9.3f %9.3f  %s\n", graph.op(stage.node_ops[i]).name.c_str(), rows[k].compute,
                rows[k].comm, rows[k].reshard, choice[i] >= 0 ? stage.strategies[i][choice[i]].name.c_str() : "?");
  }
}

}  // namespace

int main(int argc, char** argv) {
  ArgParser args("intra_budget_bench", "One stage without, then under, a memory budget: cost and where it goes.");
  args.option("model", "model config (default configs/models/gpt-6.7b.yaml)", "M")
      .option("cluster", "cluster config (default configs/clusters/aws-p3-2node.yaml)", "C")
      .option("micro-batches", "micro-batches per step (default 128)", "B")
      .option("mesh", "logical mesh (default 2x8)", "N0xN1")
      .option("submesh", "submesh rows x cols (default 2x8)", "RxC")
      .option("blocks", "only the first K blocks layer0..layer{K-1} (default 0: the whole model)", "K")
      .option("budget-gb", "memory budget per device in GB (default: the cluster's GPU memory)", "G")
      .option("budget-fraction", "budget = this fraction of the unbudgeted answer's memory (instead of --budget-gb)", "F")
      .option("time-limit", "ILP time limit in seconds (default 2)", "S")
      .option("top", "costliest ops to list (default 12)", "N")
      .option("max-decisions", "StageProblem::max_ilp_decision_nodes (default 64; 0: one ILP)", "N")
      .option("model-layers", "override the model's layer count", "L")
      .flag("exact", "also solve the budgeted stage as one ILP without time limit or search (the optimum)")
      .option("objective-micro-batches", "StageProblem::num_micro_batches (default: B; the planner leaves it at 1)", "N")
      .option("search-solves", "StageProblem::budget_search_solves (default 12; 0: the budgeted ILP alone)", "N");
  if (Status status = args.parse(argc, argv); !status) return fail(status.message());
  if (args.help_requested()) {
    std::printf("%s", args.help_text().c_str());
    return 0;
  }
  auto micro_batches = args.get_int("micro-batches", 128);
  auto blocks = args.get_int("blocks", 0);
  auto budget_gb = args.get_double("budget-gb", 0);
  auto budget_fraction = args.get_double("budget-fraction", 0);
  auto time_limit = args.get_double("time-limit", 2);
  auto top = args.get_int("top", 12);
  auto search_solves = args.get_int("search-solves", 12);
  auto max_decisions = args.get_int("max-decisions", 64);
  auto objective_micro_batches = args.get_int("objective-micro-batches", 0);
  auto model_layers = args.get_int("model-layers", 0);
  for (const Status& s : {micro_batches.status(), blocks.status(), budget_gb.status(), budget_fraction.status(), time_limit.status(), top.status(),
                          search_solves.status(), max_decisions.status(), model_layers.status(),
                          objective_micro_batches.status()}) {
    if (!s.is_ok()) return fail(s.message());
  }
  cluster::LogicalMesh mesh{2, 8};
  cluster::Submesh submesh{2, 8};
  if (args.has("mesh") && !parse_pair(args.get("mesh"), &mesh.n0, &mesh.n1)) {
    return fail("--mesh: '" + args.get("mesh") + "': expected N0xN1");
  }
  if (args.has("submesh") && !parse_pair(args.get("submesh"), &submesh.rows, &submesh.cols)) {
    return fail("--submesh: '" + args.get("submesh") + "': expected RxC");
  }
  auto spec = models::load_model_config(args.get("model", "configs/models/gpt-6.7b.yaml"));
  if (!spec.is_ok()) return fail(spec.error().message());
  if (*model_layers > 0) spec->layers = static_cast<int>(*model_layers);
  auto cluster = cluster::load_cluster(args.get("cluster", "configs/clusters/aws-p3-2node.yaml"));
  if (!cluster.is_ok()) return fail(cluster.error().message());
  if (*micro_batches < 1 || spec->global_batch % *micro_batches != 0) {
    return fail("--micro-batches: " + std::to_string(*micro_batches) + " does not divide the global batch " +
                std::to_string(spec->global_batch));
  }
  auto forward = models::build_forward_graph(*spec, spec->global_batch / *micro_batches);
  if (!forward.is_ok()) return fail(forward.error().message());
  autodiff::TrainingOptions training;
  training.optimizer = autodiff::Optimizer::adam;
  auto graph = autodiff::build_training_graph(*forward, training);
  if (!graph.is_ok()) return fail(graph.error().message());
  const cluster::AlphaBetaModel comm(*cluster);

  intra::StageProblem problem;
  problem.graph = &*graph;
  for (int64_t k = 0; k < *blocks; ++k) {
    for (ir::OpId id : intra::ops_owned_by_prefix(*graph, "layer" + std::to_string(k) + ".")) problem.ops.push_back(id);
  }
  problem.submesh = submesh;
  problem.mesh = mesh;
  problem.cluster = &*cluster;
  problem.comm = &comm;
  problem.time_limit_seconds = *time_limit;
  problem.num_micro_batches = static_cast<int>(*objective_micro_batches > 0 ? *objective_micro_batches : *micro_batches);
  problem.budget_search_solves = static_cast<int>(*search_solves);
  problem.max_ilp_decision_nodes = static_cast<int>(*max_decisions);
  intra::ChunkCache chunk_cache;  // shared by both runs, as the planner shares one over its stages
  problem.chunk_cache = &chunk_cache;
  int64_t budget = *budget_gb > 0 ? static_cast<int64_t>(*budget_gb * 1e9) : cluster->gpu_memory_bytes;

  utsname machine{};
  uname(&machine);
  std::printf("# intra_budget_bench: %s, %s, submesh %dx%d, mesh %dx%d, B=%lld, %s, budget %.2f GB, ILP limit %.0f s, "
              "budget search %lld solves\n",
              spec->name.c_str(), cluster->name.c_str(), submesh.rows, submesh.cols, mesh.n0, mesh.n1,
              static_cast<long long>(*micro_batches),
              *blocks > 0 ? (std::to_string(*blocks) + " blocks").c_str() : "whole model", gb(budget), *time_limit,
              static_cast<long long>(*search_solves));
  std::printf("# machine: %s %s %s, %u hardware threads\n", machine.sysname, machine.release, machine.machine,
              std::thread::hardware_concurrency());
  auto stage = intra::build_stage_request(problem);
  if (!stage.is_ok()) return fail(stage.error().message());
  std::printf("%-10s %12s %9s %9s %9s %9s %8s %8s %6s %8s %6s %7s %6s %s\n", "run", "step_s", "fwd_s", "bwd_s", "upd_s",
              "sync_s", "mem_GB", "wall_s", "ilps", "solved", "cached", "search", "moves", "result");
  for (const bool budgeted : {false, true}) {
    const int64_t run_budget = budgeted ? budget : 0;
    problem.memory_budget_bytes = run_budget;
    intra::ilp::LpSolveSolver solver;
    const auto start = std::chrono::steady_clock::now();
    auto solution = intra::solve_stage(problem, solver);
    const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (!solution.is_ok()) return fail(solution.error().message());
    const int64_t memory = solution->weights_bytes + solution->optimizer_state_bytes + solution->activation_bytes;
    std::printf("%-10s %12.6g %9.4g %9.4g %9.3g %9.3g %8.4f %8.1f %6d %8d %6d %7d %6d %s\n",
                run_budget > 0 ? "budgeted" : "unbudgeted", solution->objective_seconds, solution->forward_seconds,
                solution->backward_seconds, solution->update_seconds, solution->grad_sync_seconds, gb(memory), wall,
                solution->num_ilps, solution->ilps_solved, solution->chunk_cache_hits, solution->budget_search_solves,
                solution->budget_search_moves, solution->feasible ? "feasible" : solution->reason.c_str());
    std::fflush(stdout);
    if (solution->feasible) breakdown(problem, *stage, *solution, static_cast<int>(*top));
    if (budgeted && problem.budget_search_solves > 0) {
      std::printf("# budget search: %.6g s step in %.1f s wall (%d unbudgeted solves, %d moves)\n",
                  solution->budget_search_objective_seconds, solution->budget_search_wall_seconds,
                  solution->budget_search_solves, solution->budget_search_moves);
    }
    if (!budgeted && solution->feasible && *budget_fraction > 0) {
      budget = static_cast<int64_t>(*budget_fraction * static_cast<double>(memory));
      std::printf("# budget: %.4f of %lld bytes = %lld bytes\n", *budget_fraction, static_cast<long long>(memory),
                  static_cast<long long>(budget));
    }
    if (solution->feasible && memory <= budget) break;  // as the planner: the budget only when needed
  }
  if (args.has("exact")) {
    problem.memory_budget_bytes = budget;
    problem.max_ilp_decision_nodes = 0;
    problem.time_limit_seconds = 0;
    problem.budget_search_solves = 0;
    problem.chunk_cache = nullptr;
    intra::ilp::LpSolveSolver solver;
    const auto start = std::chrono::steady_clock::now();
    auto solution = intra::solve_stage(problem, solver);
    const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (!solution.is_ok()) return fail(solution.error().message());
    const int64_t memory = solution->weights_bytes + solution->optimizer_state_bytes + solution->activation_bytes;
    std::printf("%-10s %12.6g %9.4g %9.4g %9.3g %9.3g %8.4f %8.1f %6d %8d %6d %7d %6d %s\n", "exact",
                solution->objective_seconds, solution->forward_seconds, solution->backward_seconds,
                solution->update_seconds, solution->grad_sync_seconds, gb(memory), wall, solution->num_ilps,
                solution->ilps_solved, 0, 0, 0, solution->feasible ? "feasible" : solution->reason.c_str());
  }
  return 0;
}
