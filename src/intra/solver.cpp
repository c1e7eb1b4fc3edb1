// Request validation, exact evaluation of an assignment, and the brute-force reference solver
// that the ILP is checked against.
#include "strata/intra/solver.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <string>

#include "intra/folded_problem.h"

namespace strata::intra {

const char* solver_status_name(SolverStatus status) {
  switch (status) {
    case SolverStatus::optimal: return "optimal";
    case SolverStatus::time_limit_feasible: return "time_limit_feasible";
    case SolverStatus::infeasible: return "infeasible";
  }
  return "?";
}

namespace {

Status check_costs(const std::vector<double>& costs, const std::string& field) {
  for (size_t k = 0; k < costs.size(); ++k) {
    if (std::isnan(costs[k]) || costs[k] < 0) {
      return make_error("", field + "[" + std::to_string(k) + "]", "cost must be >= 0 (or +inf), got " + std::to_string(costs[k]));
    }
  }
  return Status::ok();
}

}  // namespace

Status validate_request(const SolverRequest& request) {
  const int n = static_cast<int>(request.nodes.size());
  for (int i = 0; i < n; ++i) {
    const SolverNode& node = request.nodes[i];
    const std::string field = "nodes[" + std::to_string(i) + "]";
    if (node.strategy_cost.empty()) return make_error("", field + ".strategy_cost", "a node needs at least one strategy");
    if (node.strategy_memory_bytes.size() != node.strategy_cost.size()) {
      return make_error("", field + ".strategy_memory_bytes", "needs one entry per strategy (" +
                                                                  std::to_string(node.strategy_cost.size()) + ")");
    }
    STRATA_RETURN_IF_ERROR(check_costs(node.strategy_cost, field + ".strategy_cost"));
    for (int64_t bytes : node.strategy_memory_bytes) {
      if (bytes < 0) return make_error("", field + ".strategy_memory_bytes", "memory must be >= 0");
    }
    if (node.follow >= 0) {
      if (node.follow >= n || node.follow == i) return make_error("", field + ".follow", "must name another node");
      const size_t leader_strategies = request.nodes[node.follow].strategy_cost.size();
      if (node.follow_map.size() != leader_strategies) {
        return make_error("", field + ".follow_map", "needs one entry per strategy of node " + std::to_string(node.follow) +
                                                         " (" + std::to_string(leader_strategies) + ")");
      }
      for (int s : node.follow_map) {
        if (s < 0 || s >= static_cast<int>(node.strategy_cost.size())) {
          return make_error("", field + ".follow_map", "strategy " + std::to_string(s) + " out of range");
        }
      }
      int steps = 0;
      for (int j = node.follow; j >= 0; j = request.nodes[j].follow) {
        if (++steps > n) return make_error("", field + ".follow", "follow chain forms a cycle");
      }
    }
  }
  for (size_t e = 0; e < request.edges.size(); ++e) {
    const SolverEdge& edge = request.edges[e];
    const std::string field = "edges[" + std::to_string(e) + "]";
    if (edge.src < 0 || edge.src >= n || edge.dst < 0 || edge.dst >= n || edge.src == edge.dst) {
      return make_error("", field, "src and dst must be two different nodes in [0, " + std::to_string(n) + ")");
    }
    const size_t expected = request.nodes[edge.src].strategy_cost.size() * request.nodes[edge.dst].strategy_cost.size();
    if (edge.cost.size() != expected) {
      return make_error("", field + ".cost", "needs src strategies × dst strategies = " + std::to_string(expected) + " entries");
    }
    STRATA_RETURN_IF_ERROR(check_costs(edge.cost, field + ".cost"));
  }
  if (request.memory_budget_bytes < 0) return make_error("", "memory_budget_bytes", "must be >= 0 (0: none)");
  return Status::ok();
}

double evaluate_cost(const SolverRequest& request, const std::vector<int>& choice) {
  STRATA_CHECK(choice.size() == request.nodes.size(), "one choice per node");
  double total = 0;
  for (size_t i = 0; i < choice.size(); ++i) total += request.nodes[i].strategy_cost[choice[i]];
  for (const SolverEdge& edge : request.edges) {
    total += edge.cost[choice[edge.src] * request.nodes[edge.dst].strategy_cost.size() + choice[edge.dst]];
  }
  return total;
}

int64_t evaluate_memory_bytes(const SolverRequest& request, const std::vector<int>& choice) {
  STRATA_CHECK(choice.size() == request.nodes.size(), "one choice per node");
  int64_t total = 0;
  for (size_t i = 0; i < choice.size(); ++i) total += request.nodes[i].strategy_memory_bytes[choice[i]];
  return total;
}

bool respects_follow(const SolverRequest& request, const std::vector<int>& choice) {
  for (size_t i = 0; i < choice.size(); ++i) {
    const SolverNode& node = request.nodes[i];
    if (node.follow >= 0 && choice[i] != node.follow_map[choice[node.follow]]) return false;
  }
  return true;
}

namespace ilp {

Expected<SolverResponse> BruteForceSolver::solve(const SolverRequest& request) {
  STRATA_RETURN_IF_ERROR(validate_request(request));
  const auto start = std::chrono::steady_clock::now();
  const size_t n = request.nodes.size();
  int64_t assignments = 1;
  for (const SolverNode& node : request.nodes) {
    assignments *= static_cast<int64_t>(node.strategy_cost.size());
    if (assignments > max_assignments_) {
      return make_error("", "nodes", "brute force refuses more than " + std::to_string(max_assignments_) + " assignments");
    }
  }
  SolverResponse response;
  response.num_variables = static_cast<int>(n);
  std::vector<int> choice(n, 0);
  double best = std::numeric_limits<double>::infinity();
  int64_t least_memory = std::numeric_limits<int64_t>::max();
  for (int64_t count = 0; count < assignments; ++count) {
    if (respects_follow(request, choice)) {
      const double cost = evaluate_cost(request, choice);
      const int64_t memory = evaluate_memory_bytes(request, choice);
      if (std::isfinite(cost)) least_memory = std::min(least_memory, memory);
      const bool fits = request.memory_budget_bytes == 0 || memory <= request.memory_budget_bytes;
      if (fits && cost < best) {
        best = cost;
        response.choice = choice;
      }
    }
    // Odometer over the last node first, so that the enumeration order is lexicographic.
    for (size_t i = n; i-- > 0;) {
      if (++choice[i] < static_cast<int>(request.nodes[i].strategy_cost.size())) break;
      choice[i] = 0;
    }
  }
  response.solve_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (response.choice.empty()) {
    response.status = SolverStatus::infeasible;
    response.message = least_memory == std::numeric_limits<int64_t>::max()
                           ? "every assignment uses a forbidden (+inf) strategy or resharding"
                           : detail::memory_infeasible_message(request.memory_budget_bytes, least_memory);
    return response;
  }
  response.status = SolverStatus::optimal;
  response.objective = best;
  return response;
}

}  // namespace ilp
}  // namespace strata::intra
