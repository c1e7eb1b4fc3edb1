// Followers folded into their leaders: the smaller problem the ILP actually sees. Nodes that follow
// get no variables; their strategy costs, memory and edges are added to their leader's.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "strata/intra/solver.h"

namespace strata::intra::detail {

struct FoldedEdge {
  int a = 0;  // decision-node positions, a < b
  int b = 0;
  int rows = 0;  // strategies of a
  int cols = 0;  // strategies of b
  std::vector<double> cost;  // row-major rows × cols
};

struct FoldedProblem {
  std::vector<int> leader;                    // per original node: the decision node it follows (itself if none)
  std::vector<std::vector<int>> strategy_map;  // per original node: leader strategy -> its own strategy
  std::vector<int> decision_nodes;            // original indices of leaders, ascending
  std::vector<int> position;                  // original index -> position in decision_nodes, -1 for followers
  std::vector<std::vector<double>> cost;      // per decision node, per strategy (folded)
  std::vector<std::vector<int64_t>> memory_bytes;
  std::vector<FoldedEdge> edges;              // parallel edges merged
};

// `request` must have passed validate_request.
FoldedProblem fold_followers(const SolverRequest& request);
// Per-original-node choice from one strategy per decision node.
std::vector<int> expand_choice(const FoldedProblem& problem, const std::vector<int>& decision_choice);
// Least memory any assignment that respects the forbidden (+inf) node strategies can use.
int64_t minimum_memory_bytes(const FoldedProblem& problem);
// Exact elimination of decision nodes of degree <= 2 before the ILP, for problems WITHOUT a memory
// row (the eliminated nodes' memory is not tracked, so it is not used under a budget):
//  - degree 0: the node takes its cheapest strategy;
//  - degree 1 (a leaf on edge to u): for each strategy t of u, min over the leaf's strategies of
//    edge(t, s) + cost(s) is added to u's cost;
//  - degree 2 (in series between u and w): min over s of edge(u, s) + cost(s) + edge(s, w) becomes
//    an edge (u, w), summed into one that exists already.
// Repeated until every remaining node has degree >= 3 (the core). Each step keeps the optimum over
// the remaining nodes equal to the optimum of the whole problem, so the core's optimum plus the
// recorded arg-mins reconstructs an optimal assignment of the whole (ties: the lowest strategy).
struct EliminationStep {
  int node = -1;      // decision-node position eliminated
  int u = -1, w = -1;  // its neighbours when eliminated (-1: none)
  int w_count = 0;     // strategies of w
  std::vector<int> arg;  // best strategy of `node` per strategy of u (× w), or {s} with no neighbour
};
struct Elimination {
  FoldedProblem core;            // the remaining nodes (cost, memory_bytes, edges; positions renumbered)
  std::vector<int> core_nodes;   // core position -> position in the original decision nodes
  std::vector<EliminationStep> steps;  // in elimination order
};
Elimination eliminate_low_degree(const FoldedProblem& problem);
// One strategy per original decision node from one per core node.
std::vector<int> reconstruct(const Elimination& elimination, int num_decision_nodes, const std::vector<int>& core_choice);

// "memory budget 1.00 KiB (1024 bytes) is below the 2.00 KiB (2048 bytes) that the least-memory
// assignment needs".
std::string memory_infeasible_message(int64_t budget_bytes, int64_t minimum_bytes);

}  // namespace strata::intra::detail
