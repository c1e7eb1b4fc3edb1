// Layer clustering by dynamic programming: the smallest feasible max layer cost first (a
// min-max DP), then, for each larger candidate max, the fewest bytes at the cuts under it.
#include "strata/inter/layer_clustering.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <string>

namespace strata::inter {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

Status validate(const std::vector<double>& op_cost, const std::vector<double>& cut_bytes,
                int num_layers, double comm_weight) {
  const size_t n = op_cost.size();
  if (n == 0) return make_error("", "op_cost", "is empty: there are no ops to cluster");
  if (num_layers < 1) {
    return make_error("", "num_layers", "must be at least 1, got " + std::to_string(num_layers));
  }
  if (static_cast<size_t>(num_layers) > n) {
    return make_error("", "num_layers",
                      std::to_string(num_layers) + " layers need at least as many ops, got " +
                          std::to_string(n));
  }
  if (cut_bytes.size() != n - 1 && cut_bytes.size() != n) {
    return make_error("", "cut_bytes",
                      "has " + std::to_string(cut_bytes.size()) + " entries, expected " +
                          std::to_string(n - 1) + " (one per cut between consecutive ops)");
  }
  for (size_t i = 0; i < n; ++i) {
    if (!std::isfinite(op_cost[i]) || op_cost[i] < 0) {
      return make_error("", "op_cost[" + std::to_string(i) + "]", "must be finite and >= 0");
    }
  }
  for (size_t i = 0; i < cut_bytes.size(); ++i) {
    if (!std::isfinite(cut_bytes[i]) || cut_bytes[i] < 0) {
      return make_error("", "cut_bytes[" + std::to_string(i) + "]", "must be finite and >= 0");
    }
  }
  if (!std::isfinite(comm_weight) || comm_weight < 0) {
    return make_error("", "comm_weight", "must be finite and >= 0");
  }
  return Status::ok();
}

std::vector<double> prefix_sums(const std::vector<double>& op_cost) {
  std::vector<double> prefix(op_cost.size() + 1, 0.0);
  for (size_t i = 0; i < op_cost.size(); ++i) prefix[i + 1] = prefix[i] + op_cost[i];
  return prefix;
}

// Fills in costs, max, bytes and objective from boundaries; the same arithmetic for the DP
// and the brute force, so that their objectives compare exactly.
LayerClustering summarise(std::vector<int> boundaries, const std::vector<double>& prefix,
                          const std::vector<double>& cut_bytes, double comm_weight) {
  LayerClustering out;
  out.boundaries = std::move(boundaries);
  for (size_t j = 0; j + 1 < out.boundaries.size(); ++j) {
    double cost = prefix[out.boundaries[j + 1]] - prefix[out.boundaries[j]];
    out.layer_cost.push_back(cost);
    out.max_layer_cost = std::max(out.max_layer_cost, cost);
    if (j > 0) out.cut_bytes_total += cut_bytes[out.boundaries[j] - 1];
  }
  out.objective = out.max_layer_cost + comm_weight * out.cut_bytes_total;
  return out;
}

// The smallest achievable max layer cost over every split into num_layers groups.
double min_max_layer_cost(const std::vector<double>& prefix, int num_layers) {
  const int n = static_cast<int>(prefix.size()) - 1;
  std::vector<double> previous(n + 1, kInf), current(n + 1, kInf);
  for (int i = 1; i <= n; ++i) previous[i] = prefix[i];
  for (int k = 2; k <= num_layers; ++k) {
    std::fill(current.begin(), current.end(), kInf);
    for (int i = k; i <= n; ++i) {
      double best = kInf;
      // The last group is ops [j, i); it grows as j falls, so stop once it alone is no better.
      for (int j = i - 1; j >= k - 1; --j) {
        double last = prefix[i] - prefix[j];
        if (last >= best) break;
        best = std::min(best, std::max(previous[j], last));
      }
      current[i] = best;
    }
    std::swap(previous, current);
  }
  return previous[n];
}

// Fewest bytes at the cuts with every layer's cost ≤ threshold; empty when none exists.
std::vector<int> min_cut_bytes_under(const std::vector<double>& prefix,
                                     const std::vector<double>& cut_bytes, int num_layers,
                                     double threshold) {
  const int n = static_cast<int>(prefix.size()) - 1;
  std::vector<std::vector<double>> bytes(num_layers + 1, std::vector<double>(n + 1, kInf));
  std::vector<std::vector<int>> parent(num_layers + 1, std::vector<int>(n + 1, -1));
  for (int i = 1; i <= n; ++i) {
    if (prefix[i] - prefix[0] <= threshold) bytes[1][i] = 0;
  }
  for (int k = 2; k <= num_layers; ++k) {
    for (int i = k; i <= n; ++i) {
      for (int j = i - 1; j >= k - 1; --j) {
        if (prefix[i] - prefix[j] > threshold) break;
        if (bytes[k - 1][j] == kInf) continue;
        double total = bytes[k - 1][j] + cut_bytes[j - 1];
        if (total < bytes[k][i]) {
          bytes[k][i] = total;
          parent[k][i] = j;
        }
      }
    }
  }
  if (bytes[num_layers][n] == kInf) return {};
  std::vector<int> boundaries(num_layers + 1, 0);
  boundaries[num_layers] = n;
  for (int k = num_layers, i = n; k > 1; --k) {
    i = parent[k][i];
    boundaries[k - 1] = i;
  }
  return boundaries;
}

}  // namespace

Expected<LayerClustering> cluster_layers(const std::vector<double>& op_cost,
                                         const std::vector<double>& cut_bytes, int num_layers,
                                         double comm_weight) {
  STRATA_RETURN_IF_ERROR(validate(op_cost, cut_bytes, num_layers, comm_weight));
  const std::vector<double> prefix = prefix_sums(op_cost);
  const int n = static_cast<int>(op_cost.size());

  const double lowest_max = min_max_layer_cost(prefix, num_layers);
  std::vector<int> first = min_cut_bytes_under(prefix, cut_bytes, num_layers, lowest_max);
  STRATA_CHECK(!first.empty(), "no clustering under the min-max layer cost");
  LayerClustering best = summarise(std::move(first), prefix, cut_bytes, comm_weight);
  if (comm_weight == 0) return best;

  // A clustering whose max layer cost is T has objective ≥ T, so only layer costs in
  // (lowest_max, best.objective) can still win; each is the cost of some contiguous run of ops.
  std::vector<double> thresholds;
  for (int j = 0; j < n; ++j) {
    for (int i = j + 1; i <= n; ++i) {
      double cost = prefix[i] - prefix[j];
      if (cost >= best.objective) break;
      if (cost > lowest_max) thresholds.push_back(cost);
    }
  }
  std::sort(thresholds.begin(), thresholds.end());
  thresholds.erase(std::unique(thresholds.begin(), thresholds.end()), thresholds.end());
  // The fewest cut bytes under threshold T never rise as T does, and a clustering found under T
  // has objective ≤ T + comm_weight × those bytes. So only the smallest threshold of each bytes
  // value can win (the optimum's own max layer cost T* is at or after it, with no fewer bytes):
  // jump from one to the next by bisection instead of solving every threshold.
  auto under = [&](size_t i) {
    std::vector<int> boundaries = min_cut_bytes_under(prefix, cut_bytes, num_layers, thresholds[i]);
    STRATA_CHECK(!boundaries.empty(), "a larger threshold cannot be infeasible");
    return summarise(std::move(boundaries), prefix, cut_bytes, comm_weight);
  };
  for (size_t i = 0; i < thresholds.size() && thresholds[i] < best.objective;) {
    LayerClustering candidate = under(i);
    const double bytes = candidate.cut_bytes_total;
    if (candidate.objective < best.objective) best = std::move(candidate);
    size_t lo = i + 1, hi = thresholds.size();  // the first threshold with fewer bytes is in [lo, hi]
    while (lo < hi) {
      const size_t mid = lo + (hi - lo) / 2;
      if (under(mid).cut_bytes_total < bytes) {
        hi = mid;
      } else {
        lo = mid + 1;
      }
    }
    i = lo;
  }
  return best;
}

Expected<LayerClustering> cluster_layers_brute_force(const std::vector<double>& op_cost,
                                                     const std::vector<double>& cut_bytes,
                                                     int num_layers, double comm_weight) {
  STRATA_RETURN_IF_ERROR(validate(op_cost, cut_bytes, num_layers, comm_weight));
  STRATA_CHECK(op_cost.size() <= 20, "brute force is for small inputs");
  const std::vector<double> prefix = prefix_sums(op_cost);
  const int n = static_cast<int>(op_cost.size());
  LayerClustering best;
  best.objective = kInf;
  std::vector<int> boundaries{0};
  std::function<void(int)> extend = [&](int start) {
    int groups_left = num_layers - (static_cast<int>(boundaries.size()) - 1);
    if (groups_left == 1) {
      boundaries.push_back(n);
      LayerClustering candidate = summarise(boundaries, prefix, cut_bytes, comm_weight);
      if (candidate.objective < best.objective) best = std::move(candidate);
      boundaries.pop_back();
      return;
    }
    for (int end = start + 1; end <= n - (groups_left - 1); ++end) {
      boundaries.push_back(end);
      extend(end);
      boundaries.pop_back();
    }
  };
  extend(0);
  return best;
}

}  // namespace strata::inter
