// Layer clustering (Alpa §5.1): cut the forward ops, in topological order, into a given number
// of contiguous layers of balanced cost, preferring cuts that few bytes cross.
#pragma once

#include <vector>

#include "strata/core/status.h"

namespace strata::inter {

struct LayerClustering {
  // num_layers + 1 entries: layer j holds ops [boundaries[j], boundaries[j+1]).
  std::vector<int> boundaries;
  std::vector<double> layer_cost;  // cost of each layer
  double max_layer_cost = 0;
  double cut_bytes_total = 0;      // bytes crossing the num_layers - 1 cuts
  double objective = 0;            // max_layer_cost + comm_weight * cut_bytes_total
};

// Minimises max layer cost + comm_weight × Σ bytes at the chosen cuts, exactly, over every way
// to cut op_cost into num_layers non-empty contiguous groups. cut_bytes[i] = bytes crossing a
// cut placed after op i; it has op_cost.size() - 1 entries (or op_cost.size(): the last, a cut
// after the final op, is then ignored). Costs and bytes must be finite and ≥ 0. Ties are broken
// deterministically (the same input always gives the same boundaries).
Expected<LayerClustering> cluster_layers(const std::vector<double>& op_cost,
                                         const std::vector<double>& cut_bytes, int num_layers,
                                         double comm_weight);

// The slow reference: tries every composition. For tests; needs op_cost.size() ≤ 20.
Expected<LayerClustering> cluster_layers_brute_force(const std::vector<double>& op_cost,
                                                     const std::vector<double>& cut_bytes,
                                                     int num_layers, double comm_weight);

}  // namespace strata::inter
