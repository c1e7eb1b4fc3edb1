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
// "memory budget 1.00 KiB (1024 bytes) is below the 2.00 KiB (2048 bytes) that the least-memory
// assignment needs".
std::string memory_infeasible_message(int64_t budget_bytes, int64_t minimum_bytes);

}  // namespace strata::intra::detail
