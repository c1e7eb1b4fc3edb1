// The lp_solve ILP against the brute-force reference on random small requests, follower folding
// against the same problem stated with forbidden reshardings, memory infeasibility, determinism.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>
#include <random>

#include "strata/intra/solver.h"

namespace strata::intra {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

// 2-6 nodes, 2-4 strategies, random edges (a chain plus extra pairs), costs in milliseconds.
SolverRequest random_request(uint32_t seed, bool with_budget) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> node_count(2, 6), strategy_count(2, 4), memory(1, 100);
  std::uniform_real_distribution<double> cost(0.0, 1e-3);
  SolverRequest request;
  const int n = node_count(rng);
  for (int i = 0; i < n; ++i) {
    SolverNode node;
    node.name = "n" + std::to_string(i);
    const int k = strategy_count(rng);
    for (int s = 0; s < k; ++s) {
      node.strategy_cost.push_back(cost(rng));
      node.strategy_memory_bytes.push_back(memory(rng) * 1024);
    }
    request.nodes.push_back(node);
  }
  auto add_edge = [&](int src, int dst) {
    SolverEdge edge{src, dst, {}};
    const size_t cells = request.nodes[src].strategy_cost.size() * request.nodes[dst].strategy_cost.size();
    for (size_t c = 0; c < cells; ++c) edge.cost.push_back(cost(rng));
    request.edges.push_back(edge);
  };
  for (int i = 1; i < n; ++i) add_edge(i - 1, i);
  std::uniform_int_distribution<int> pick(0, n - 1);
  for (int extra = pick(rng); extra > 0; --extra) {
    const int a = pick(rng), b = pick(rng);
    if (a != b) add_edge(a, b);
  }
  if (with_budget) {  // somewhere between the least and the most memory any assignment uses
    int64_t least = 0, most = 0;
    for (const auto& node : request.nodes) {
      least += *std::min_element(node.strategy_memory_bytes.begin(), node.strategy_memory_bytes.end());
      most += *std::max_element(node.strategy_memory_bytes.begin(), node.strategy_memory_bytes.end());
    }
    request.memory_budget_bytes = least + (most - least) / 3;
  }
  return request;
}

TEST(IntraSolver, LpSolveMatchesBruteForceOnRandomRequests) {
  ilp::LpSolveSolver lp;
  ilp::BruteForceSolver brute;
  int with_budget_active = 0;  // budgets that changed the optimum: the memory row was exercised
  for (uint32_t seed = 1; seed <= 40; ++seed) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    const SolverRequest request = random_request(seed, seed % 3 == 0);
    auto lp_response = lp.solve(request);
    auto brute_response = brute.solve(request);
    ASSERT_TRUE(lp_response.is_ok()) << lp_response.error().message();
    ASSERT_TRUE(brute_response.is_ok()) << brute_response.error().message();
    ASSERT_EQ(brute_response->status, SolverStatus::optimal);
    ASSERT_EQ(lp_response->status, SolverStatus::optimal) << lp_response->message;
    EXPECT_NEAR(lp_response->objective, brute_response->objective, 1e-12);
    EXPECT_NEAR(evaluate_cost(request, lp_response->choice), lp_response->objective, 1e-15);
    if (request.memory_budget_bytes > 0) {
      EXPECT_LE(evaluate_memory_bytes(request, lp_response->choice), request.memory_budget_bytes);
      SolverRequest unbounded = request;
      unbounded.memory_budget_bytes = 0;
      if (brute.solve(unbounded)->objective < brute_response->objective - 1e-15) ++with_budget_active;
    }
    if (request.memory_budget_bytes > 0) {  // the full ILP; without a budget only its core
      EXPECT_GT(lp_response->num_variables, 0);
      EXPECT_GE(lp_response->num_constraints, static_cast<int>(request.nodes.size()));
    }
  }
  EXPECT_GT(with_budget_active, 0);
}

// On a chain with no budget, dynamic programming (Viterbi) gives the exact optimum at sizes far
// beyond brute force.
double chain_optimum(const SolverRequest& request) {
  std::vector<double> best = request.nodes[0].strategy_cost;
  for (size_t i = 1; i < request.nodes.size(); ++i) {
    const auto& costs = request.nodes[i].strategy_cost;
    std::vector<double> next(costs.size(), kInf);
    for (size_t r = 0; r < best.size(); ++r) {
      for (size_t c = 0; c < costs.size(); ++c) {
        next[c] = std::min(next[c], best[r] + request.edges[i - 1].cost[r * costs.size() + c] + costs[c]);
      }
    }
    best = next;
  }
  return *std::min_element(best.begin(), best.end());
}

TEST(IntraSolver, LpSolveMatchesDynamicProgrammingOnLongChains) {
  for (uint32_t seed = 0; seed < 3; ++seed) {
    std::mt19937 rng(seed);
    std::uniform_real_distribution<double> cost(0.0, 1e-2);
    SolverRequest request;
    for (int i = 0; i < 40; ++i) {
      const int k = 2 + static_cast<int>(rng() % 5);
      SolverNode node{"n", {}, std::vector<int64_t>(k, 0), -1, {}};
      for (int s = 0; s < k; ++s) node.strategy_cost.push_back(cost(rng));
      if (i > 0) {
        SolverEdge edge{i - 1, i, {}};
        for (size_t c = 0; c < request.nodes.back().strategy_cost.size() * k; ++c) edge.cost.push_back(cost(rng));
        request.edges.push_back(edge);
      }
      request.nodes.push_back(node);
    }
    auto response = ilp::LpSolveSolver().solve(request);
    ASSERT_TRUE(response.is_ok());
    ASSERT_EQ(response->status, SolverStatus::optimal);
    EXPECT_NEAR(response->objective, chain_optimum(request), 1e-12) << "seed " << seed;
  }
}

TEST(IntraSolver, IlpSizeFollowsTheFormulation) {
  // Chain of 3 nodes with 2, 3, 4 strategies and a budget: 9 node + 6 + 12 edge variables;
  // 3 one-hot rows + (2+3) + (3+4) marginal rows + 1 memory row.
  SolverRequest request;
  for (int k : {2, 3, 4}) request.nodes.push_back({"n", std::vector<double>(k, 1.0), std::vector<int64_t>(k, 1), -1, {}});
  request.edges.push_back({0, 1, std::vector<double>(6, 0.5)});
  request.edges.push_back({1, 2, std::vector<double>(12, 0.5)});
  request.memory_budget_bytes = 100;
  auto response = ilp::LpSolveSolver().solve(request);
  ASSERT_TRUE(response.is_ok());
  EXPECT_EQ(response->num_variables, 27);
  EXPECT_EQ(response->num_constraints, 16);
  EXPECT_DOUBLE_EQ(response->objective, 4.0);
}

TEST(IntraSolver, MemoryBudgetBelowMinimumIsInfeasibleWithAReason) {
  SolverRequest request;
  request.nodes.push_back({"a", {1.0, 2.0}, {3000, 2000}, -1, {}});
  request.nodes.push_back({"b", {1.0, 2.0}, {1000, 500}, -1, {}});
  request.memory_budget_bytes = 2000;  // least is 2000 + 500 = 2500
  for (ilp::Solver* solver : std::initializer_list<ilp::Solver*>{new ilp::LpSolveSolver, new ilp::BruteForceSolver}) {
    std::unique_ptr<ilp::Solver> owned(solver);
    auto response = solver->solve(request);
    ASSERT_TRUE(response.is_ok()) << solver->name();
    EXPECT_EQ(response->status, SolverStatus::infeasible) << solver->name();
    EXPECT_TRUE(response->choice.empty());
    EXPECT_NE(response->message.find("2500 bytes"), std::string::npos) << response->message;
    EXPECT_NE(response->message.find("2000 bytes"), std::string::npos) << response->message;
  }
  request.memory_budget_bytes = 2500;  // exactly enough: the least-memory pair, cost 4
  auto response = ilp::LpSolveSolver().solve(request);
  ASSERT_TRUE(response.is_ok());
  EXPECT_EQ(response->status, SolverStatus::optimal);
  EXPECT_EQ(response->choice, (std::vector<int>{1, 1}));
  EXPECT_DOUBLE_EQ(response->objective, 4.0);
}

TEST(IntraSolver, ForbiddenStrategiesAndReshardingsAreAvoided) {
  SolverRequest request;
  request.nodes.push_back({"a", {kInf, 5.0}, {0, 0}, -1, {}});
  request.nodes.push_back({"b", {0.0, 0.0}, {0, 0}, -1, {}});
  request.edges.push_back({0, 1, {0.0, 0.0, kInf, 1.0}});
  auto response = ilp::LpSolveSolver().solve(request);
  ASSERT_TRUE(response.is_ok());
  EXPECT_EQ(response->choice, (std::vector<int>{1, 1}));
  EXPECT_DOUBLE_EQ(response->objective, 6.0);
  request.edges[0].cost[3] = kInf;  // now nothing is allowed
  response = ilp::LpSolveSolver().solve(request);
  ASSERT_TRUE(response.is_ok());
  EXPECT_EQ(response->status, SolverStatus::infeasible);
}

// Random requests where some nodes follow others; the "unsimplified" twin states the same
// problem without `follow`, forbidding (+inf) every non-following pair on an extra edge.
TEST(IntraSolver, FollowerFoldingGivesTheUnsimplifiedOptimum) {
  ilp::LpSolveSolver lp(/*eliminate_low_degree=*/false);  // compares the sizes of full ILPs
  ilp::BruteForceSolver brute;
  int infeasible = 0;
  for (uint32_t seed = 100; seed < 120; ++seed) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    SolverRequest request = random_request(seed, seed % 2 == 0);
    std::mt19937 rng(seed * 7);
    SolverRequest unsimplified = request;
    for (size_t i = 1; i < request.nodes.size(); i += 2) {  // odd nodes follow an earlier node
      const int leader = static_cast<int>(rng() % i);
      const size_t leader_k = request.nodes[leader].strategy_cost.size();
      const size_t own_k = request.nodes[i].strategy_cost.size();
      std::vector<int> map(leader_k);
      for (auto& s : map) s = static_cast<int>(rng() % own_k);
      request.nodes[i].follow = leader;
      request.nodes[i].follow_map = map;
      SolverEdge tie{leader, static_cast<int>(i), std::vector<double>(leader_k * own_k, kInf)};
      for (size_t s = 0; s < leader_k; ++s) tie.cost[s * own_k + map[s]] = 0.0;
      unsimplified.edges.push_back(tie);
    }
    auto folded = lp.solve(request);
    auto plain = lp.solve(unsimplified);
    auto reference = brute.solve(request);
    ASSERT_TRUE(folded.is_ok() && plain.is_ok() && reference.is_ok());
    if (reference->status == SolverStatus::infeasible) {  // the budget is too tight once nodes follow
      EXPECT_EQ(folded->status, SolverStatus::infeasible);
      EXPECT_EQ(plain->status, SolverStatus::infeasible);
      ++infeasible;
      continue;
    }
    ASSERT_EQ(folded->status, SolverStatus::optimal);
    ASSERT_EQ(plain->status, SolverStatus::optimal);
    EXPECT_NEAR(folded->objective, plain->objective, 1e-12);
    EXPECT_NEAR(folded->objective, reference->objective, 1e-12);
    EXPECT_TRUE(respects_follow(request, folded->choice));
    EXPECT_LT(folded->num_variables, plain->num_variables);
  }
  EXPECT_LT(infeasible, 5);  // most cases must compare optima
}

// Without a budget, leaves and series nodes are eliminated before the ILP (min-plus products into
// their neighbours): on random graphs from trees (nothing left for lp_solve) to dense ones (a core
// of degree >= 3 nodes), with forbidden (+inf) strategies and reshardings, the optimum equals the
// full ILP's and brute force's, and the reconstructed choice costs exactly that.
TEST(IntraSolver, LowDegreeEliminationKeepsTheOptimum) {
  ilp::LpSolveSolver eliminating, full(/*eliminate_low_degree=*/false);
  ilp::BruteForceSolver brute;
  int no_core = 0, smaller_core = 0, infeasible = 0;
  for (uint32_t seed = 1; seed <= 60; ++seed) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    std::mt19937 rng(seed * 31 + 5);
    std::uniform_real_distribution<double> cost(0.0, 1e-3), unit(0.0, 1.0);
    const int n = 3 + static_cast<int>(rng() % 6);  // 3..8 nodes
    SolverRequest request;
    for (int i = 0; i < n; ++i) {
      const int k = 2 + static_cast<int>(rng() % 3);
      SolverNode node{"n" + std::to_string(i), {}, std::vector<int64_t>(k, 1), -1, {}};
      for (int s = 0; s < k; ++s) node.strategy_cost.push_back(unit(rng) < 0.1 ? kInf : cost(rng));
      request.nodes.push_back(node);
    }
    auto add_edge = [&](int src, int dst) {
      SolverEdge edge{src, dst, {}};
      const size_t cells = request.nodes[src].strategy_cost.size() * request.nodes[dst].strategy_cost.size();
      for (size_t c = 0; c < cells; ++c) edge.cost.push_back(unit(rng) < 0.15 ? kInf : cost(rng));
      request.edges.push_back(edge);
    };
    for (int i = 1; i < n; ++i) add_edge(static_cast<int>(rng() % i), i);  // a random tree
    const int extra = static_cast<int>(seed % 4) * 5;                      // then 0, 5, 10 or 15 more edges
    for (int e = 0; e < extra; ++e) {
      const int a = static_cast<int>(rng() % n), b = static_cast<int>(rng() % n);
      if (a != b) add_edge(a, b);
    }
    auto fast = eliminating.solve(request);
    auto slow = full.solve(request);
    auto reference = brute.solve(request);
    ASSERT_TRUE(fast.is_ok() && slow.is_ok() && reference.is_ok());
    if (reference->status == SolverStatus::infeasible) {
      EXPECT_EQ(fast->status, SolverStatus::infeasible);
      EXPECT_EQ(slow->status, SolverStatus::infeasible);
      EXPECT_TRUE(fast->choice.empty());
      ++infeasible;
      continue;
    }
    ASSERT_EQ(fast->status, SolverStatus::optimal) << fast->message;
    ASSERT_EQ(slow->status, SolverStatus::optimal) << slow->message;
    EXPECT_NEAR(fast->objective, reference->objective, 1e-12);
    EXPECT_NEAR(slow->objective, reference->objective, 1e-12);
    EXPECT_EQ(evaluate_cost(request, fast->choice), fast->objective);
    EXPECT_LE(fast->num_variables, slow->num_variables);
    if (fast->num_variables == 0) ++no_core;
    else if (fast->num_variables < slow->num_variables) ++smaller_core;
  }
  // Every path ran: trees solved without lp_solve, cores through it, infeasible requests detected.
  std::printf("%d without an ILP, %d with a smaller core, %d infeasible of 60\n", no_core, smaller_core, infeasible);
  EXPECT_GT(no_core, 5);
  EXPECT_GT(smaller_core, 5);
  EXPECT_GT(infeasible, 0);
}

TEST(IntraSolver, SameRequestGivesTheSameChoice) {
  ilp::LpSolveSolver lp;
  // Ties everywhere: every cost equal, so only deterministic tie-breaking keeps the choice fixed.
  SolverRequest request = random_request(7, false);
  for (auto& node : request.nodes) std::fill(node.strategy_cost.begin(), node.strategy_cost.end(), 1.0);
  for (auto& edge : request.edges) std::fill(edge.cost.begin(), edge.cost.end(), 0.0);
  for (const SolverRequest& r : {request, random_request(8, true)}) {
    auto first = lp.solve(r);
    auto second = lp.solve(r);
    ASSERT_TRUE(first.is_ok() && second.is_ok());
    EXPECT_EQ(first->choice, second->choice);
    EXPECT_EQ(first->objective, second->objective);
  }
}

TEST(IntraSolver, MalformedRequestsAreErrorsNamingTheField) {
  SolverRequest request;
  request.nodes.push_back({"a", {1.0, 2.0}, {1, 1}, -1, {}});
  request.nodes.push_back({"b", {1.0}, {1}, 0, {0}});  // map has 1 entry, leader has 2 strategies
  auto response = ilp::LpSolveSolver().solve(request);
  ASSERT_FALSE(response.is_ok());
  EXPECT_EQ(response.error().field, "nodes[1].follow_map");
  request.nodes[1].follow_map = {0, 0};
  request.edges.push_back({0, 1, {1.0, 2.0, 3.0}});
  response = ilp::LpSolveSolver().solve(request);
  ASSERT_FALSE(response.is_ok());
  EXPECT_EQ(response.error().field, "edges[0].cost");
  request.edges[0].cost = {1.0, std::nan("")};
  EXPECT_EQ(validate_request(request).error().field, "edges[0].cost[1]");
  request.edges.clear();
  request.nodes[0].follow = 1;
  request.nodes[0].follow_map = {0};
  EXPECT_EQ(validate_request(request).error().reason, "follow chain forms a cycle");
}

}  // namespace
}  // namespace strata::intra
