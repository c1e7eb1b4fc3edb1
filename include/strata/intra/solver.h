// The intra-op solver seam (XLA auto-sharding style): a plain request (per-node strategy costs and
// memory, resharding cost matrices on edges, a memory budget) in, a plain response out.
// Implementations: LpSolveSolver (the ILP through lp_solve) and BruteForceSolver (reference).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "strata/core/status.h"

namespace strata::intra {

struct SolverNode {
  std::string name;
  std::vector<double> strategy_cost;            // compute + communication seconds; +inf = forbidden
  std::vector<int64_t> strategy_memory_bytes;   // one per strategy
  // When follow >= 0 this node takes no decision of its own: if node `follow` picks strategy s,
  // this node picks follow_map[s] (follow_map has one entry per strategy of node `follow`).
  int follow = -1;
  std::vector<int> follow_map;
};

struct SolverEdge {
  int src = 0;
  int dst = 0;
  // Resharding seconds, row-major [src strategies × dst strategies]; +inf = forbidden pair.
  std::vector<double> cost;
};

struct SolverRequest {
  std::vector<SolverNode> nodes;
  std::vector<SolverEdge> edges;
  int64_t memory_budget_bytes = 0;  // 0: no memory constraint
  double time_limit_seconds = 0;    // <= 0: no limit
};

enum class SolverStatus { optimal, time_limit_feasible, infeasible };
const char* solver_status_name(SolverStatus status);

struct SolverResponse {
  std::vector<int> choice;  // one strategy per node (followers included); empty when infeasible
  double objective = 0;     // cost of `choice`, recomputed exactly from the request
  int num_variables = 0;
  int num_constraints = 0;
  double solve_seconds = 0;
  SolverStatus status = SolverStatus::infeasible;
  std::string message;      // why, when infeasible
};

// Checks a request's shape (sizes, indices, follow maps, no NaN or negative costs). Errors name
// the field, e.g. "edges[3].cost".
Status validate_request(const SolverRequest& request);
// Objective and memory of a full assignment (no checks of the budget; +inf when forbidden).
double evaluate_cost(const SolverRequest& request, const std::vector<int>& choice);
int64_t evaluate_memory_bytes(const SolverRequest& request, const std::vector<int>& choice);
// True when every follower's choice is what its leader's choice maps to.
bool respects_follow(const SolverRequest& request, const std::vector<int>& choice);

namespace ilp {

class Solver {
 public:
  virtual ~Solver() = default;
  virtual Expected<SolverResponse> solve(const SolverRequest& request) = 0;
  virtual const char* name() const = 0;
};

// The ILP: one-hot binaries per decision node, linearised edge variables e_ab with
// Σ_b e_ab = s_a and Σ_a e_ab = t_b, Σ memory·s ≤ budget. Followers are folded into their leader.
// Without a memory budget, decision nodes of degree ≤ 2 are first eliminated exactly (leaves and
// series nodes folded into their neighbours by min-plus products, detail::eliminate_low_degree)
// and only the remaining core goes to lp_solve; num_variables / num_constraints count that core
// (0 when nothing is left). With a budget the full ILP is solved (the memory row needs every node).
class LpSolveSolver final : public Solver {
 public:
  explicit LpSolveSolver(bool eliminate_low_degree = true) : eliminate_(eliminate_low_degree) {}
  Expected<SolverResponse> solve(const SolverRequest& request) override;
  const char* name() const override { return "lp_solve"; }

 private:
  bool eliminate_;
};

// Tries every assignment (followers forced by their map); the first minimum in lexicographic
// order wins. For tests: refuses more than `max_assignments` assignments.
class BruteForceSolver final : public Solver {
 public:
  explicit BruteForceSolver(int64_t max_assignments = 10'000'000) : max_assignments_(max_assignments) {}
  Expected<SolverResponse> solve(const SolverRequest& request) override;
  const char* name() const override { return "brute_force"; }

 private:
  int64_t max_assignments_;
};

}  // namespace ilp
}  // namespace strata::intra
