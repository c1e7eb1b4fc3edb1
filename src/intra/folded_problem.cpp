// Folding followers into leaders (DESIGN.md: ops that cost nothing to follow get no variables).
#include "intra/folded_problem.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <set>
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

Elimination eliminate_low_degree(const FoldedProblem& problem) {
  constexpr double kInf = std::numeric_limits<double>::infinity();
  const int d = static_cast<int>(problem.cost.size());
  std::vector<std::vector<double>> cost = problem.cost;
  // Edges keyed (low, high) position; matrices row-major [strategies of low × strategies of high].
  std::map<std::pair<int, int>, std::vector<double>> edges;
  std::vector<std::set<int>> neighbours(d);
  for (const FoldedEdge& edge : problem.edges) {
    edges.emplace(std::pair(edge.a, edge.b), edge.cost);
    neighbours[edge.a].insert(edge.b);
    neighbours[edge.b].insert(edge.a);
  }
  auto size = [&](int p) { return static_cast<int>(cost[p].size()); };
  // Seconds of edge {p, q} with p on strategy sp and q on strategy sq.
  auto entry = [&](const std::vector<double>& m, int p, int sp, int q, int sq) {
    return p < q ? m[static_cast<size_t>(sp) * size(q) + sq] : m[static_cast<size_t>(sq) * size(p) + sp];
  };
  auto take_edge = [&](int p, int q) {
    auto it = edges.find(std::pair(std::min(p, q), std::max(p, q)));
    std::vector<double> m = std::move(it->second);
    edges.erase(it);
    neighbours[p].erase(q);
    neighbours[q].erase(p);
    return m;
  };
  Elimination out;
  std::vector<char> alive(d, 1);
  std::vector<int> queue(d);
  for (int p = 0; p < d; ++p) queue[p] = d - 1 - p;  // popped from the back: ascending first
  while (!queue.empty()) {
    const int v = queue.back();
    queue.pop_back();
    if (!alive[v] || neighbours[v].size() > 2) continue;
    EliminationStep step;
    step.node = v;
    const std::vector<double>& own = cost[v];
    if (neighbours[v].empty()) {
      step.arg = {static_cast<int>(std::min_element(own.begin(), own.end()) - own.begin())};
    } else if (neighbours[v].size() == 1) {
      const int u = *neighbours[v].begin();
      const std::vector<double> m = take_edge(v, u);
      step.u = u;
      step.arg.assign(size(u), 0);
      for (int t = 0; t < size(u); ++t) {
        double best = kInf;
        for (int s = 0; s < size(v); ++s) {
          const double x = own[s] + entry(m, u, t, v, s);
          if (x < best) {
            best = x;
            step.arg[t] = s;
          }
        }
        cost[u][t] += best;
      }
      queue.push_back(u);
    } else {
      const int u = *neighbours[v].begin(), w = *neighbours[v].rbegin();
      const std::vector<double> mu = take_edge(v, u), mw = take_edge(v, w);
      step.u = u;
      step.w = w;
      step.w_count = size(w);
      step.arg.assign(static_cast<size_t>(size(u)) * size(w), 0);
      std::vector<double> through(step.arg.size(), kInf);  // [u × w]
      for (int t = 0; t < size(u); ++t) {
        for (int s = 0; s < size(v); ++s) {
          const double head = own[s] + entry(mu, u, t, v, s);
          if (!(head < kInf)) continue;
          for (int r = 0; r < size(w); ++r) {
            const double x = head + entry(mw, v, s, w, r);
            const size_t k = static_cast<size_t>(t) * size(w) + r;
            if (x < through[k]) {
              through[k] = x;
              step.arg[k] = s;
            }
          }
        }
      }
      // u < w, so `through` is already the (low, high) orientation.
      auto [it, inserted] = edges.try_emplace(std::pair(u, w), std::vector<double>());
      if (inserted) {
        it->second = std::move(through);
        neighbours[u].insert(w);
        neighbours[w].insert(u);
      } else {
        for (size_t k = 0; k < through.size(); ++k) it->second[k] += through[k];
      }
      queue.push_back(w);
      queue.push_back(u);
    }
    alive[v] = 0;
    out.steps.push_back(std::move(step));
  }
  std::vector<int> core_position(d, -1);
  for (int p = 0; p < d; ++p) {
    if (!alive[p]) continue;
    core_position[p] = static_cast<int>(out.core_nodes.size());
    out.core_nodes.push_back(p);
    out.core.cost.push_back(cost[p]);
    out.core.memory_bytes.push_back(problem.memory_bytes[p]);
  }
  for (auto& [key, m] : edges) {  // ascending (low, high): the order fold_followers gives
    FoldedEdge edge;
    edge.a = core_position[key.first];
    edge.b = core_position[key.second];
    edge.rows = size(key.first);
    edge.cols = size(key.second);
    edge.cost = std::move(m);
    out.core.edges.push_back(std::move(edge));
  }
  return out;
}

std::vector<int> reconstruct(const Elimination& elimination, int num_decision_nodes, const std::vector<int>& core_choice) {
  STRATA_CHECK(core_choice.size() == elimination.core_nodes.size(), "one choice per core node");
  std::vector<int> choice(num_decision_nodes, -1);
  for (size_t c = 0; c < core_choice.size(); ++c) choice[elimination.core_nodes[c]] = core_choice[c];
  for (auto it = elimination.steps.rbegin(); it != elimination.steps.rend(); ++it) {
    if (it->u < 0) {
      choice[it->node] = it->arg[0];
    } else if (it->w < 0) {
      choice[it->node] = it->arg[choice[it->u]];
    } else {
      choice[it->node] = it->arg[static_cast<size_t>(choice[it->u]) * it->w_count + choice[it->w]];
    }
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
