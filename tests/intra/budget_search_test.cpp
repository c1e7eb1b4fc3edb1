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

ir::Attrs matmul() {
  return {{"lhs_batch", std::vector<int64_t>{}}, {"rhs_batch", std::vector<int64_t>{}},
          {"lhs_contract", std::vector<int64_t>{1}}, {"rhs_contract", std::vector<int64_t>{0}}};
}

// x[batch, hidden] -> block "a": a.fc with a.w [hidden, hidden], relu -> block "b": b.fc with
// b.w [hidden, width] -> sum of squares; Adam. Two blocks whose memory costs differ per byte saved.
ir::Graph two_blocks(int64_t batch, int64_t hidden, int64_t width) {
  ir::Graph g;
  ir::Value h = g.input("x", {batch, hidden});
  h = g.add_value(ir::OpKind::Dot, {h, g.parameter("a.w", {hidden, hidden})}, matmul(), "a.fc");
  h = g.add_value(ir::OpKind::Relu, {h}, {}, "a.relu");
  h = g.add_value(ir::OpKind::Dot, {h, g.parameter("b.w", {hidden, width})}, matmul(), "b.fc");
  ir::Value sq = g.add_value(ir::OpKind::Mul, {h, h}, {}, "loss.square");
  g.mark_output(g.add_value(ir::OpKind::ReduceSum, {sq}, {}, "loss.sum"));
  autodiff::TrainingOptions options;
  options.optimizer = autodiff::Optimizer::adam;
  auto training = autodiff::build_training_graph(g, options);
  STRATA_CHECK(training.is_ok(), training.is_ok() ? "" : training.error().message());
  return *training;
}

// A chunked stage under a budget 20% below the fastest sharding's memory: the budgeted chunk ILPs
// alone (first-pass budget shares, then one sweep) cost more than twice the optimum of the one
// budgeted ILP, because no chunk can hand memory to another; with the budget search the chunked
// solve finds the optimum. Every answer keeps the budget.
TEST(BudgetSearch, ChunkedStageUnderABudgetGetsTheOptimum) {
  const cluster::ClusterSpec spec = testing::test_cluster();
  const cluster::AlphaBetaModel comm(spec);
  ilp::LpSolveSolver solver;
  const ir::Graph g = two_blocks(64, 256, 256);
  StageProblem problem;
  problem.graph = &g;
  problem.mesh = {1, 4};
  problem.submesh = {1, 4};
  problem.cluster = &spec;
  problem.comm = &comm;
  problem.num_micro_batches = 16;
  problem.max_ilp_decision_nodes = 0;
  problem.time_limit_seconds = 0;
  auto free = solve_stage(problem, solver);
  ASSERT_TRUE(free.is_ok() && free->feasible);
  auto memory = [](const StageSolution& s) { return s.weights_bytes + s.optimizer_state_bytes + s.activation_bytes; };
  problem.memory_budget_bytes = memory(*free) - memory(*free) / 5;
  problem.budget_search_solves = 0;
  auto exact = solve_stage(problem, solver);  // one budgeted ILP, no time limit: the optimum
  problem.max_ilp_decision_nodes = 2;
  auto chunks_alone = solve_stage(problem, solver);
  problem.budget_search_solves = 12;
  auto chunks_searched = solve_stage(problem, solver);
  problem.max_ilp_decision_nodes = 0;
  auto one_searched = solve_stage(problem, solver);
  for (const auto* s : {&exact, &chunks_alone, &chunks_searched, &one_searched}) {
    ASSERT_TRUE(s->is_ok() && (*s)->feasible);
    EXPECT_LE(memory(**s), problem.memory_budget_bytes);
    EXPECT_GE((*s)->objective_seconds, exact->objective_seconds * (1 - 1e-9));
  }
  std::printf("two blocks under a budget: optimum %.6g s; chunk ILPs alone %.6g s (%d chunks); with the search "
              "%.6g s (%d unbudgeted solves, %d moves); one ILP with the search %.6g s\n",
              exact->objective_seconds, chunks_alone->objective_seconds, chunks_alone->num_ilps,
              chunks_searched->objective_seconds, chunks_searched->budget_search_solves,
              chunks_searched->budget_search_moves, one_searched->objective_seconds);
  EXPECT_GT(chunks_alone->num_ilps, 2);
  EXPECT_GT(chunks_alone->objective_seconds, 2 * exact->objective_seconds);  // what the chunks alone gave
  EXPECT_LE(chunks_searched->objective_seconds, exact->objective_seconds * (1 + 1e-6));
  EXPECT_LE(one_searched->objective_seconds, exact->objective_seconds * (1 + 1e-6));
  EXPECT_GT(chunks_searched->budget_search_solves, 1);
  EXPECT_EQ(chunks_alone->budget_search_solves, 0);
}

}  // namespace
}  // namespace strata::intra
