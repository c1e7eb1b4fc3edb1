// Good assignments under a memory budget without the memory row: Lagrangian relaxation (the budget
// priced into every strategy's cost, each price solved like an unbudgeted problem), then local
// moves that repair or improve an assignment within the budget. solve_stage uses them beside the
// budgeted ILP, whose time-limited answers can be far from the optimum.
#pragma once

#include <cstdint>
#include <functional>
#include <limits>
#include <vector>

#include "strata/core/status.h"
#include "strata/intra/solver.h"

namespace strata::intra::detail {

// Solves a request that has no memory budget (memory_budget_bytes == 0).
using UnbudgetedSolve = std::function<Expected<SolverResponse>(const SolverRequest&)>;

struct BudgetSearch {
  std::vector<int> choice;  // cheapest assignment found within the budget; empty when none was
  double cost = std::numeric_limits<double>::infinity();  // evaluate_cost of `choice`
  int64_t memory_bytes = 0;                               // evaluate_memory_bytes of `choice`
  // max over the prices λ tried of (min over assignments of cost + λ·memory) − λ·budget: a lower
  // bound on the budgeted optimum when every solve was exact (-inf when no price was tried).
  double lower_bound = -std::numeric_limits<double>::infinity();
  bool exact = true;  // every solve reported an optimal answer (so lower_bound holds for an exact solver)
  int solves = 0;     // unbudgeted solves
  int moves = 0;      // local moves applied (repair and improvement)
};

// `request` with every strategy's cost raised by price · its memory bytes, and no budget.
SolverRequest priced_request(const SolverRequest& request, double price_seconds_per_byte);

// Minimises cost within request.memory_budget_bytes (> 0) through at most `max_solves` unbudgeted
// solves: price 0 (when that fits, it is the answer), then prices growing ×8 from cost/memory of
// the price-0 answer until one fits, then the price at which the cheapest fitting and the
// least-memory non-fitting answers tie (the secant of the lower convex hull of (memory, cost)),
// until that price finds no new hull point. The cheapest fitting answer is then improved by
// improve_within_budget; when none fits, the least-memory answer is repaired by repair_to_budget.
// Deterministic. Errors: the solve's.
Expected<BudgetSearch> lagrangian_search(const SolverRequest& request, const UnbudgetedSolve& solve, int max_solves);

// Moves of one decision node (with its followers) to a strategy that saves memory, the most bytes
// saved per second added first, until the assignment fits request.memory_budget_bytes. Returns the
// moves made; false in *fits when no move is left and it still does not fit.
int repair_to_budget(const SolverRequest& request, std::vector<int>* choice, bool* fits);

// Sweeps over the decision nodes, moving each to its cheapest strategy (with its edges to the rest
// as they are) that keeps memory within the budget (0: none), until a sweep changes nothing.
// Never raises the cost; returns the moves made. `choice` must respect the follow maps.
int improve_within_budget(const SolverRequest& request, std::vector<int>* choice);

}  // namespace strata::intra::detail
