// Lagrangian relaxation of the memory row and local moves within the budget (budget_search.h).
// Why: under a budget the ILP needs the memory row, which makes lp_solve's branch and bound slow;
// stopped at its time limit it returns whatever incumbent it has, sometimes 100x the optimum.
// Pricing memory instead keeps every solve unbudgeted (exact and fast: leaf/series elimination).
#include "intra/budget_search.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <optional>

#include "intra/folded_problem.h"
#include "strata/core/check.h"

namespace strata::intra::detail {
namespace {

// a is cheaper than b by more than rounding (any finite a beats an infinite b).
bool cheaper(double a, double b) {
  if (!std::isfinite(b)) return std::isfinite(a);
  return a < b - 1e-12 * std::abs(b);
}

// An assignment over the folded problem, with each decision node's edges, for one-node moves.
class LocalMoves {
 public:
  LocalMoves(const SolverRequest& request, const std::vector<int>& choice)
      : folded_(fold_followers(request)), incident_(folded_.cost.size()), choice_(folded_.cost.size()) {
    for (size_t e = 0; e < folded_.edges.size(); ++e) {
      incident_[folded_.edges[e].a].push_back(static_cast<int>(e));
      incident_[folded_.edges[e].b].push_back(static_cast<int>(e));
    }
    for (size_t p = 0; p < choice_.size(); ++p) {
      choice_[p] = choice[folded_.decision_nodes[p]];
      memory_ += folded_.memory_bytes[p][choice_[p]];
    }
  }

  int size() const { return static_cast<int>(choice_.size()); }
  int strategies(int p) const { return static_cast<int>(folded_.cost[p].size()); }
  int current(int p) const { return choice_[p]; }
  int64_t memory() const { return memory_; }
  int64_t memory_change(int p, int s) const { return folded_.memory_bytes[p][s] - folded_.memory_bytes[p][choice_[p]]; }

  // Node p's cost under strategy s plus its edges to the neighbours' current strategies: the part
  // of the total cost that a move of p changes.
  double local_cost(int p, int s) const {
    double cost = folded_.cost[p][s];
    for (int e : incident_[p]) {
      const FoldedEdge& edge = folded_.edges[e];
      cost += edge.a == p ? edge.cost[static_cast<size_t>(s) * edge.cols + choice_[edge.b]]
                          : edge.cost[static_cast<size_t>(choice_[edge.a]) * edge.cols + s];
    }
    return cost;
  }

  void move(int p, int s) {
    memory_ += memory_change(p, s);
    choice_[p] = s;
  }

  std::vector<int> choice() const { return expand_choice(folded_, choice_); }

 private:
  FoldedProblem folded_;
  std::vector<std::vector<int>> incident_;
  std::vector<int> choice_;
  int64_t memory_ = 0;
};

}  // namespace

SolverRequest priced_request(const SolverRequest& request, double price_seconds_per_byte) {
  SolverRequest priced = request;
  priced.memory_budget_bytes = 0;
  for (SolverNode& node : priced.nodes) {
    for (size_t s = 0; s < node.strategy_cost.size(); ++s) {
      if (std::isfinite(node.strategy_cost[s])) {
        node.strategy_cost[s] += price_seconds_per_byte * static_cast<double>(node.strategy_memory_bytes[s]);
      }
    }
  }
  return priced;
}

int repair_to_budget(const SolverRequest& request, std::vector<int>* choice, bool* fits) {
  LocalMoves local(request, *choice);
  const int64_t budget = request.memory_budget_bytes;
  int moves = 0;
  while (budget > 0 && local.memory() > budget) {
    // Best move: a cost-free saving first (most bytes), else the most bytes saved per second added.
    int best_p = -1, best_s = -1;
    bool best_free = false;
    double best_score = -1;
    for (int p = 0; p < local.size(); ++p) {
      const double now = local.local_cost(p, local.current(p));
      for (int s = 0; s < local.strategies(p); ++s) {
        const int64_t saved = -local.memory_change(p, s);
        if (saved <= 0) continue;
        const double then = local.local_cost(p, s);
        if (!std::isfinite(then)) continue;
        const bool free = !std::isfinite(now) || then <= now;
        const double score = free ? static_cast<double>(saved) : static_cast<double>(saved) / (then - now);
        if ((free && !best_free) || (free == best_free && score > best_score)) {
          best_p = p;
          best_s = s;
          best_free = free;
          best_score = score;
        }
      }
    }
    if (best_p < 0) break;
    local.move(best_p, best_s);
    ++moves;
  }
  *fits = budget <= 0 || local.memory() <= budget;
  *choice = local.choice();
  return moves;
}

int improve_within_budget(const SolverRequest& request, std::vector<int>* choice) {
  LocalMoves local(request, *choice);
  const int64_t budget = request.memory_budget_bytes;
  int moves = 0;
  for (int sweep = 0; sweep < 1000; ++sweep) {
    bool changed = false;
    for (int p = 0; p < local.size(); ++p) {
      double best = local.local_cost(p, local.current(p));
      int best_s = -1;
      for (int s = 0; s < local.strategies(p); ++s) {
        if (s == local.current(p)) continue;
        if (budget > 0 && local.memory() + local.memory_change(p, s) > budget) continue;
        const double cost = local.local_cost(p, s);
        if (cheaper(cost, best)) {
          best = cost;
          best_s = s;
        }
      }
      if (best_s >= 0) {
        local.move(p, best_s);
        ++moves;
        changed = true;
      }
    }
    if (!changed) break;
  }
  *choice = local.choice();
  return moves;
}

Expected<BudgetSearch> lagrangian_search(const SolverRequest& request, const UnbudgetedSolve& solve, int max_solves) {
  STRATA_CHECK(request.memory_budget_bytes > 0, "lagrangian_search needs a memory budget");
  const int64_t budget = request.memory_budget_bytes;
  BudgetSearch out;
  struct Point {
    double price = 0;
    std::vector<int> choice;
    double cost = 0;
    int64_t memory = 0;
  };
  auto run = [&](double price) -> Expected<std::optional<Point>> {
    STRATA_ASSIGN_OR_RETURN(SolverResponse response, solve(priced_request(request, price)));
    ++out.solves;
    if (response.status != SolverStatus::optimal) out.exact = false;
    if (response.status == SolverStatus::infeasible || response.choice.empty()) return std::optional<Point>();
    Point point{price, std::move(response.choice), 0, 0};
    point.cost = evaluate_cost(request, point.choice);
    point.memory = evaluate_memory_bytes(request, point.choice);
    if (!std::isfinite(point.cost)) return std::optional<Point>();
    out.lower_bound = std::max(out.lower_bound, response.objective - price * static_cast<double>(budget));
    if (point.memory <= budget && cheaper(point.cost, out.cost)) {
      out.choice = point.choice;
      out.cost = point.cost;
      out.memory_bytes = point.memory;
    }
    return std::optional<Point>(std::move(point));
  };

  // No assignment fits (each node at its least memory is over the budget): nothing to search.
  const int64_t least = minimum_memory_bytes(fold_followers(request));
  if (least == std::numeric_limits<int64_t>::max() || least > budget) return out;
  STRATA_ASSIGN_OR_RETURN(std::optional<Point> zero, run(0));
  if (!zero) return out;  // nothing avoids the forbidden strategies, budget or not
  std::optional<Point> low = std::move(zero), high;  // the dearest non-fitting and cheapest fitting answers
  if (low->memory <= budget) {
    high = std::move(low);
    low.reset();
  }
  double price = low ? (low->cost > 0 ? low->cost : 1.0) / static_cast<double>(std::max<int64_t>(low->memory, 1)) : 0;
  while (low && !high && out.solves < max_solves) {
    STRATA_ASSIGN_OR_RETURN(std::optional<Point> point, run(price));
    if (!point) break;
    if (point->memory <= budget) high = std::move(point);
    else low = std::move(point);
    price *= 8;
  }
  // Secant steps on the lower convex hull of (memory, cost) between `low` and `high`.
  while (low && high && out.solves < max_solves && low->memory > high->memory) {
    price = (high->cost - low->cost) / static_cast<double>(low->memory - high->memory);
    if (!(price > 0) || !std::isfinite(price)) break;
    STRATA_ASSIGN_OR_RETURN(std::optional<Point> point, run(price));
    if (!point) break;
    const double line = low->cost + price * static_cast<double>(low->memory);
    if (!cheaper(point->cost + price * static_cast<double>(point->memory), line)) break;  // no new hull point
    if (point->memory <= budget) high = std::move(point);
    else low = std::move(point);
  }
  // Candidates: the cheapest fitting answer, improved; the dearest non-fitting one, repaired and improved.
  std::vector<std::vector<int>> candidates;
  if (!out.choice.empty()) candidates.push_back(out.choice);
  if (low) {
    std::vector<int> repaired = low->choice;
    bool fits = false;
    out.moves += repair_to_budget(request, &repaired, &fits);
    if (fits) candidates.push_back(std::move(repaired));
  }
  for (std::vector<int>& candidate : candidates) {
    out.moves += improve_within_budget(request, &candidate);
    const double cost = evaluate_cost(request, candidate);
    const int64_t memory = evaluate_memory_bytes(request, candidate);
    if (memory <= budget && cheaper(cost, out.cost)) {
      out.choice = std::move(candidate);
      out.cost = cost;
      out.memory_bytes = memory;
    }
  }
  return out;
}

}  // namespace strata::intra::detail
