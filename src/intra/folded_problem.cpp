// Folding followers into leaders (DESIGN.md: ops that cost nothing to follow get no variables).
#include "intra/folded_problem.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <utility>

#include "strata/core/check.h"
#include "strata/core/units.h"

namespace strata::intra::detail {

FoldedProblem fold_followers(const SolverRequest& request) {
  const int n = static_cast<int>(request.nodes.size());
  FoldedProblem problem;
  problem.leader.assign(n, -1);
  problem.strategy_map.assign(n, {});
  problem.position.assign(n, -1);

  // Resolve each node's leader and composed map by walking its follow chain (validated acyclic).
  for (int i = 0; i < n; ++i) {
    int root = i;
    std::vector<int> chain;  // i, its leader, ... up to (excluding) the root
    while (request.nodes[root].follow >= 0) {
      chain.push_back(root);
      root = request.nodes[root].follow;
      STRATA_CHECK(static_cast<int>(chain.size()) <= n, "follow cycle survived validation");
    }
    const int root_strategies = static_cast<int>(request.nodes[root].strategy_cost.size());
    std::vector<int> map(root_strategies);
    for (int s = 0; s < root_strategies; ++s) {
      int strategy = s;
      for (auto it = chain.rbegin(); it != chain.rend(); ++it) strategy = request.nodes[*it].follow_map[strategy];
      map[s] = strategy;
    }
    problem.leader[i] = root;
    problem.strategy_map[i] = std::move(map);
  }

  for (int i = 0; i < n; ++i) {
    if (problem.leader[i] != i) continue;
    problem.position[i] = static_cast<int>(problem.decision_nodes.size());
    problem.decision_nodes.push_back(i);
    const size_t k = request.nodes[i].strategy_cost.size();
    problem.cost.emplace_back(k, 0.0);
    problem.memory_bytes.emplace_back(k, 0);
  }
  for (int i = 0; i < n; ++i) {
    const int p = problem.position[problem.leader[i]];
    const auto& map = problem.strategy_map[i];
    for (size_t s = 0; s < map.size(); ++s) {
      problem.cost[p][s] += request.nodes[i].strategy_cost[map[s]];
      problem.memory_bytes[p][s] += request.nodes[i].strategy_memory_bytes[map[s]];
    }
  }

  std::map<std::pair<int, int>, size_t> edge_index;
  for (const SolverEdge& edge : request.edges) {
    const int src_leader = problem.leader[edge.src];
    const int dst_leader = problem.leader[edge.dst];
    const auto& src_map = problem.strategy_map[edge.src];
    const auto& dst_map = problem.strategy_map[edge.dst];
    const size_t dst_count = request.nodes[edge.dst].strategy_cost.size();
    if (src_leader == dst_leader) {  // both ends decided together: the edge is a node cost
      const int p = problem.position[src_leader];
      for (size_t s = 0; s < src_map.size(); ++s) problem.cost[p][s] += edge.cost[src_map[s] * dst_count + dst_map[s]];
      continue;
    }
    int a = problem.position[src_leader];
    int b = problem.position[dst_leader];
    const bool flipped = a > b;
    if (flipped) std::swap(a, b);
    auto [it, inserted] = edge_index.try_emplace({a, b}, problem.edges.size());
    if (inserted) {
      FoldedEdge folded;
      folded.a = a;
      folded.b = b;
      folded.rows = static_cast<int>(problem.cost[a].size());
      folded.cols = static_cast<int>(problem.cost[b].size());
      folded.cost.assign(static_cast<size_t>(folded.rows) * folded.cols, 0.0);
      problem.edges.push_back(std::move(folded));
    }
    FoldedEdge& folded = problem.edges[it->second];
    for (int r = 0; r < folded.rows; ++r) {
      for (int c = 0; c < folded.cols; ++c) {
        const int src_strategy = flipped ? src_map[c] : src_map[r];
        const int dst_strategy = flipped ? dst_map[r] : dst_map[c];
        folded.cost[static_cast<size_t>(r) * folded.cols + c] += edge.cost[src_strategy * dst_count + dst_strategy];
      }
    }
  }
  // Merged edges in a fixed order so that the ILP's columns do not depend on edge order in the map.
  std::sort(problem.edges.begin(), problem.edges.end(),
            [](const FoldedEdge& x, const FoldedEdge& y) { return std::pair(x.a, x.b) < std::pair(y.a, y.b); });
  return problem;
}

std::vector<int> expand_choice(const FoldedProblem& problem, const std::vector<int>& decision_choice) {
  STRATA_CHECK(decision_choice.size() == problem.decision_nodes.size(), "one choice per decision node");
  std::vector<int> choice(problem.leader.size());
  for (size_t i = 0; i < choice.size(); ++i) {
    choice[i] = problem.strategy_map[i][decision_choice[problem.position[problem.leader[i]]]];
  }
  return choice;
}

int64_t minimum_memory_bytes(const FoldedProblem& problem) {
  int64_t total = 0;
  for (size_t p = 0; p < problem.cost.size(); ++p) {
    int64_t best = std::numeric_limits<int64_t>::max();
    for (size_t s = 0; s < problem.cost[p].size(); ++s) {
      if (std::isfinite(problem.cost[p][s])) best = std::min(best, problem.memory_bytes[p][s]);
    }
    if (best == std::numeric_limits<int64_t>::max()) return best;  // every strategy forbidden
    total += best;
  }
  return total;
}

std::string memory_infeasible_message(int64_t budget_bytes, int64_t minimum_bytes) {
  auto describe = [](int64_t bytes) { return format_bytes(static_cast<double>(bytes)) + " (" + std::to_string(bytes) + " bytes)"; };
  return "memory budget " + describe(budget_bytes) + " is below the " + describe(minimum_bytes) +
         " that the least-memory assignment needs";
}

}  // namespace strata::intra::detail
