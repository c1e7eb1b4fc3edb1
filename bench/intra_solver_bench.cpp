// Benchmark of the intra-op ILP: size (variables, constraints) and lp_solve time on random chain
// graphs of 10..500 nodes with 4-8 strategies each, with and without a memory budget.
#include <sys/utsname.h>

#include <algorithm>
#include <cstdio>
#include <random>
#include <thread>

#include "strata/intra/solver.h"

namespace {

using strata::intra::SolverEdge;
using strata::intra::SolverNode;
using strata::intra::SolverRequest;

// Costs in seconds (compute 1-10 ms, resharding 0-5 ms, zero on the diagonal as for matching
// specs), memory 1-64 MiB per strategy. With a budget, it sits a quarter of the way from the
// least to the most memory, so the memory row binds.
SolverRequest chain_request(int nodes, uint32_t seed, bool with_budget) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> strategies(4, 8), mebibytes(1, 64);
  std::uniform_real_distribution<double> compute(1e-3, 1e-2), reshard(0, 5e-3);
  SolverRequest request;
  request.time_limit_seconds = 60;
  int64_t least = 0, most = 0;
  for (int i = 0; i < nodes; ++i) {
    SolverNode node;
    node.name = "op" + std::to_string(i);
    const int k = strategies(rng);
    for (int s = 0; s < k; ++s) {
      node.strategy_cost.push_back(compute(rng));
      node.strategy_memory_bytes.push_back(int64_t{mebibytes(rng)} << 20);
    }
    least += *std::min_element(node.strategy_memory_bytes.begin(), node.strategy_memory_bytes.end());
    most += *std::max_element(node.strategy_memory_bytes.begin(), node.strategy_memory_bytes.end());
    if (i > 0) {
      const size_t rows = request.nodes.back().strategy_cost.size();
      SolverEdge edge{i - 1, i, {}};
      for (size_t r = 0; r < rows; ++r) {
        for (int c = 0; c < k; ++c) edge.cost.push_back(static_cast<int>(r) == c ? 0.0 : reshard(rng));
      }
      request.edges.push_back(std::move(edge));
    }
    request.nodes.push_back(std::move(node));
  }
  if (with_budget) request.memory_budget_bytes = least + (most - least) / 4;
  return request;
}

}  // namespace

int main() {
  utsname machine{};
  uname(&machine);
  std::printf("# intra_solver_bench: lp_solve 5.5 ILP on random chains, 4-8 strategies per node, time limit 60 s\n");
  std::printf("# machine: %s %s %s, %u hardware threads\n", machine.sysname, machine.release, machine.machine,
              std::thread::hardware_concurrency());
  std::printf("%8s %8s %10s %12s %12s %12s %20s\n", "nodes", "budget", "variables", "constraints", "solve_s",
              "objective_s", "status");
  strata::intra::ilp::LpSolveSolver solver;
  for (int nodes : {10, 50, 200, 500}) {
    for (bool with_budget : {false, true}) {
      const SolverRequest request = chain_request(nodes, 1000 + nodes, with_budget);
      auto response = solver.solve(request);
      if (!response.is_ok()) {
        std::fprintf(stderr, "intra_solver_bench: %s\n", response.error().message().c_str());
        return 1;
      }
      std::printf("%8d %8s %10d %12d %12.4f %12.6f %20s\n", nodes, with_budget ? "yes" : "no", response->num_variables,
                  response->num_constraints, response->solve_seconds, response->objective,
                  strata::intra::solver_status_name(response->status));
    }
  }
  return 0;
}
