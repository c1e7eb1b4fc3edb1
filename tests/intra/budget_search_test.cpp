// The budget search (src/intra/budget_search.h) against brute force on random budgeted requests,
// its local moves (repair fits, improvement never raises the cost), and solve_stage under a budget:
// a chunked stage where the budgeted chunk ILPs alone are far from the optimum.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <random>

#include "intra/budget_search.h"
#include "intra/folded_problem.h"
#include "intra_test_util.h"
#include "strata/cluster/alpha_beta.h"
#include "strata/intra/stage_solver.h"

namespace strata::intra {
namespace {

// 4-9 nodes (some following another), 2-5 strategies, a chain plus random edges; memory and cost
// drawn so that saving memory costs time, as sharding does; a budget between the least and the
// unbudgeted optimum's memory.
SolverRequest random_budgeted_request(uint32_t seed, ilp::Solver& exact) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> node_count(4, 9), strategy_count(2, 5), memory(1, 100);
  std::uniform_real_distribution<double> unit(0.0, 1.0);
  SolverRequest request;
  const int n = node_count(rng);
  for (int i = 0; i < n; ++i) {
    SolverNode node;
    node.name = "n" + std::to_string(i);
    const int k = strategy_count(rng);
    for (int s = 0; s < k; ++s) {
      const int m = memory(rng);
      node.strategy_memory_bytes.push_back(m * int64_t{1024});
      node.strategy_cost.push_back(1e-3 * (unit(rng) + 2.0 / m));  // less memory: dearer on average
    }
    if (i > 0 && unit(rng) < 0.25) {  // follows the previous node
      node.follow = i - 1;
      for (size_t s = 0; s < request.nodes[i - 1].strategy_cost.size(); ++s) {
        node.follow_map.push_back(static_cast<int>(rng() % k));
      }
    }
    request.nodes.push_back(node);
  }
  auto add_edge = [&](int src, int dst) {
    SolverEdge edge{src, dst, {}};
    const size_t rows = request.nodes[src].strategy_cost.size(), cols = request.nodes[dst].strategy_cost.size();
    for (size_t r = 0; r < rows; ++r) {
      for (size_t c = 0; c < cols; ++c) edge.cost.push_back(r == c ? 0.0 : 1e-3 * unit(rng));
    }
    request.edges.push_back(edge);
  };
  for (int i = 1; i < n; ++i) add_edge(i - 1, i);
  for (int extra = static_cast<int>(rng() % n); extra > 0; --extra) {
    const int a = static_cast<int>(rng() % n), b = static_cast<int>(rng() % n);
    if (a != b) add_edge(a, b);
  }
  auto free = exact.solve(request);
  STRATA_CHECK(free.is_ok() && !free->choice.empty(), "the unbudgeted request must be feasible");
  const int64_t most = evaluate_memory_bytes(request, free->choice);
  const detail::FoldedProblem folded = detail::fold_followers(request);
  const int64_t least = detail::minimum_memory_bytes(folded);
  std::uniform_real_distribution<double> where(0.1, 0.9);
  request.memory_budget_bytes = least + static_cast<int64_t>(where(rng) * static_cast<double>(most - least));
  return request;
}

TEST(BudgetSearch, RandomRequestsAgainstBruteForce) {
  ilp::BruteForceSolver brute;
  auto exact = [&](const SolverRequest& r) { return brute.solve(r); };
  int cases = 0, optimal = 0, proven = 0;
  double worst_ratio = 1, sum_ratio = 0;
  for (uint32_t seed = 1; seed <= 200; ++seed) {
    SolverRequest request = random_budgeted_request(seed, brute);
    auto best = brute.solve(request);
    ASSERT_TRUE(best.is_ok());
    if (best->choice.empty()) continue;
    auto search = detail::lagrangian_search(request, exact, 12);
    ASSERT_TRUE(search.is_ok());
    ASSERT_FALSE(search->choice.empty()) << "seed " << seed;
    ++cases;
    EXPECT_TRUE(respects_follow(request, search->choice)) << "seed " << seed;
    EXPECT_LE(evaluate_memory_bytes(request, search->choice), request.memory_budget_bytes) << "seed " << seed;
    EXPECT_EQ(search->memory_bytes, evaluate_memory_bytes(request, search->choice));
    EXPECT_DOUBLE_EQ(search->cost, evaluate_cost(request, search->choice));
    EXPECT_GE(search->cost, best->objective * (1 - 1e-9)) << "seed " << seed;
    EXPECT_TRUE(search->exact);
    EXPECT_LE(search->lower_bound, best->objective * (1 + 1e-9)) << "seed " << seed;  // a true lower bound
    EXPECT_LE(search->solves, 12);
    const double ratio = search->cost / best->objective;
    worst_ratio = std::max(worst_ratio, ratio);
    sum_ratio += ratio;
    optimal += ratio <= 1 + 1e-9 ? 1 : 0;
    proven += search->cost <= search->lower_bound + 1e-9 * search->cost ? 1 : 0;
  }
  std::printf("budget search on %d random requests: %d optimal (%d proven), mean cost / optimum %.4f, worst %.4f\n",
              cases, optimal, proven, sum_ratio / cases, worst_ratio);
  ASSERT_GE(cases, 150);
  EXPECT_GE(optimal, cases * 7 / 10);
  EXPECT_LT(sum_ratio / cases, 1.02);
  EXPECT_LT(worst_ratio, 1.25);
}

TEST(BudgetSearch, RepairFitsAndImprovementNeverRaisesTheCost) {
  ilp::BruteForceSolver brute;
  for (uint32_t seed = 1; seed <= 100; ++seed) {
    const SolverRequest request = random_budgeted_request(seed, brute);
    SolverRequest free = request;
    free.memory_budget_bytes = 0;
    auto fastest = brute.solve(free);
    ASSERT_TRUE(fastest.is_ok());
    // Repair from the unbudgeted optimum: every node can step towards its least memory (no
    // forbidden pairs here), so it always ends within the budget, and it costs at least the optimum.
    std::vector<int> choice = fastest->choice;
    bool fits = false;
    const int moves = detail::repair_to_budget(request, &choice, &fits);
    EXPECT_TRUE(fits) << "seed " << seed;
    if (evaluate_memory_bytes(request, fastest->choice) > request.memory_budget_bytes) {
      EXPECT_GT(moves, 0) << "seed " << seed;
    }
    EXPECT_TRUE(respects_follow(request, choice));
    EXPECT_LE(evaluate_memory_bytes(request, choice), request.memory_budget_bytes);
    // Improvement keeps the budget and never raises the cost.
    const double before = evaluate_cost(request, choice);
    detail::improve_within_budget(request, &choice);
    EXPECT_TRUE(respects_follow(request, choice));
    EXPECT_LE(evaluate_memory_bytes(request, choice), request.memory_budget_bytes);
    EXPECT_LE(evaluate_cost(request, choice), before);
    auto best = brute.solve(request);
    ASSERT_TRUE(best.is_ok());
    EXPECT_GE(evaluate_cost(request, choice), best->objective * (1 - 1e-9));
  }
  // Unbudgeted, improvement reaches a local optimum: from each node's dearest strategy, it moves,
  // and no single move helps after.
  SolverRequest request = random_budgeted_request(7, brute);
  request.memory_budget_bytes = 0;
  std::vector<int> choice(request.nodes.size(), 0);
  for (size_t i = 0; i < request.nodes.size(); ++i) {
    const std::vector<double>& cost = request.nodes[i].strategy_cost;
    if (request.nodes[i].follow >= 0) choice[i] = request.nodes[i].follow_map[choice[request.nodes[i].follow]];
    else choice[i] = static_cast<int>(std::max_element(cost.begin(), cost.end()) - cost.begin());
  }
  const double start = evaluate_cost(request, choice);
  EXPECT_GT(detail::improve_within_budget(request, &choice), 0);
  EXPECT_LT(evaluate_cost(request, choice), start);
  EXPECT_EQ(detail::improve_within_budget(request, &choice), 0);
}

TEST(BudgetSearch, PricedRequestAddsPriceTimesMemory) {
  SolverRequest request;
  request.nodes.push_back(SolverNode{"a", {1.0, std::numeric_limits<double>::infinity()}, {100, 10}, -1, {}});
  request.memory_budget_bytes = 50;
  const SolverRequest priced = detail::priced_request(request, 0.5);
  EXPECT_EQ(priced.memory_budget_bytes, 0);
  EXPECT_DOUBLE_EQ(priced.nodes[0].strategy_cost[0], 51.0);
  EXPECT_TRUE(std::isinf(priced.nodes[0].strategy_cost[1]));  // forbidden stays forbidden
}

}  // namespace
}  // namespace strata::intra
