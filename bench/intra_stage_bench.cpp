// Benchmark of solve_stage on a real model: ILP size and solve time for one GPT-2.6B layer and for
// the whole GPT-2.6B training graph (Adam) on a 2x4 logical mesh of one aws-p3 node, the whole
// graph both in chunks of 64 decision nodes (the default) and as one ILP under the time limit.
// step_s is the solver's objective: one training step of global_batch / micro_batch micro-batches.
// Usage (from the repository root): intra_stage_bench [model.yaml] [cluster.yaml] [micro_batch] [time_limit_s]
#include <sys/utsname.h>

#include <chrono>
#include <cstdio>
#include <string>
#include <thread>

#include "strata/autodiff/autodiff.h"
#include "strata/cluster/alpha_beta.h"
#include "strata/intra/stage_solver.h"
#include "strata/models/models.h"

namespace {

using namespace strata;

int fail(const Error& error) {
  std::fprintf(stderr, "intra_stage_bench: %s\n", error.message().c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string model_path = argc > 1 ? argv[1] : "configs/models/gpt-2.6b.yaml";
  const std::string cluster_path = argc > 2 ? argv[2] : "configs/clusters/aws-p3-1node.yaml";
  const int64_t micro_batch = argc > 3 ? std::stoll(argv[3]) : 8;
  const double time_limit = argc > 4 ? std::stod(argv[4]) : 600;

  auto spec = models::load_model_config(model_path);
  if (!spec.is_ok()) return fail(spec.error());
  auto cluster = cluster::load_cluster(cluster_path);
  if (!cluster.is_ok()) return fail(cluster.error());
  auto forward = models::build_forward_graph(*spec, micro_batch);
  if (!forward.is_ok()) return fail(forward.error());
  autodiff::TrainingOptions options;
  options.optimizer = autodiff::Optimizer::adam;
  auto graph = autodiff::build_training_graph(*forward, options);
  if (!graph.is_ok()) return fail(graph.error());
  const cluster::AlphaBetaModel comm(*cluster);

  utsname machine{};
  uname(&machine);
  std::printf("# intra_stage_bench: solve_stage with lp_solve 5.5, %s, micro-batch %lld, Adam, on %s, mesh 2x4, "
              "alpha-beta comm model, time limit %.0f s\n",
              spec->name.c_str(), static_cast<long long>(micro_batch), cluster->name.c_str(), time_limit);
  std::printf("# machine: %s %s %s, %u hardware threads\n", machine.sysname, machine.release, machine.machine,
              std::thread::hardware_concurrency());
  std::printf("%-12s %6s %7s %9s %5s %10s %12s %9s %9s %12s %s\n", "stage", "ops", "nodes", "decisions", "ilps",
              "variables", "constraints", "total_s", "solve_s", "step_s", "result");
  struct Case {
    const char* name;
    std::vector<ir::OpId> ops;
    int max_decisions;  // StageProblem::max_ilp_decision_nodes
  };
  const std::vector<ir::OpId> layer = intra::ops_owned_by_prefix(*graph, "layer0.");
  const Case cases[] = {{"layer", layer, 0}, {"model", {}, 64}, {"model-1ilp", {}, 0}};
  for (const Case& c : cases) {
    intra::StageProblem problem;
    problem.graph = &*graph;
    problem.ops = c.ops;
    problem.submesh = {1, 8};
    problem.mesh = {2, 4};
    problem.cluster = &*cluster;
    problem.comm = &comm;
    problem.time_limit_seconds = time_limit;
    problem.num_micro_batches = static_cast<int>(spec->global_batch / micro_batch);
    problem.max_ilp_decision_nodes = c.max_decisions;
    auto request = intra::build_stage_request(problem);
    if (!request.is_ok()) return fail(request.error());
    int decisions = 0;
    for (const intra::SolverNode& node : request->request.nodes) decisions += node.follow < 0 ? 1 : 0;
    intra::ilp::LpSolveSolver solver;
    const auto start = std::chrono::steady_clock::now();
    auto solution = intra::solve_stage(problem, solver);
    const double total_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    const size_t ops = c.ops.empty() ? static_cast<size_t>(graph->num_ops()) : c.ops.size();
    if (!solution.is_ok()) {
      std::printf("%-12s %6zu %7zu %9d %5s %10s %12s %9.1f %9s %12s %s\n", c.name, ops, request->request.nodes.size(),
                  decisions, "1", "-", "-", total_seconds, "-", "-", solution.error().message().c_str());
      continue;
    }
    std::printf("%-12s %6zu %7zu %9d %5d %10d %12d %9.3f %9.3f %12.6f %s\n", c.name, ops, request->request.nodes.size(),
                decisions, solution->num_ilps, solution->num_variables, solution->num_constraints, total_seconds,
                solution->solve_seconds, solution->objective_seconds,
                solution->feasible ? "feasible" : solution->reason.c_str());
    std::fflush(stdout);
  }
  return 0;
}
