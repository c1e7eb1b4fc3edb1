// Submesh shapes, logical meshes and the buddy-style placement that tiles the cluster with
// (1, 2^k) and whole-node submeshes (Alpa §5.2: device counts that add up always tile).
#include "strata/inter/submesh.h"

#include <algorithm>
#include <numeric>
#include <string>

namespace strata::inter {

std::vector<cluster::Submesh> stage_submesh_shapes(int num_nodes, int gpus_per_node) {
  std::vector<cluster::Submesh> shapes;
  for (int cols = 1; cols <= gpus_per_node; cols *= 2) shapes.push_back({1, cols});
  if (shapes.back().cols != gpus_per_node) shapes.push_back({1, gpus_per_node});
  for (int rows = 2; rows <= num_nodes; ++rows) shapes.push_back({rows, gpus_per_node});
  return shapes;
}

std::vector<cluster::LogicalMesh> stage_logical_meshes(const cluster::Submesh& submesh) {
  std::vector<cluster::LogicalMesh> meshes;
  const int devices = submesh.num_devices();
  for (int n0 = 1; n0 <= devices; ++n0) {
    if (devices % n0 == 0) meshes.push_back({n0, devices / n0});
  }
  return meshes;
}

Expected<std::vector<SubmeshPlacement>> place_submeshes(
    const std::vector<cluster::Submesh>& submeshes, int num_nodes, int gpus_per_node) {
  if (num_nodes < 1 || gpus_per_node < 1) {
    return make_error("", "cluster", "needs at least one node and one GPU per node");
  }
  if ((gpus_per_node & (gpus_per_node - 1)) != 0) {
    return make_error("", "cluster.gpus_per_node",
                      std::to_string(gpus_per_node) +
                          " is not a power of two: in-node submeshes (1, 2^k) may not tile it");
  }
  int total = 0;
  for (size_t i = 0; i < submeshes.size(); ++i) {
    const cluster::Submesh& s = submeshes[i];
    bool in_node = s.rows == 1 && s.cols >= 1 && s.cols <= gpus_per_node &&
                   (s.cols & (s.cols - 1)) == 0;
    bool whole_nodes = s.rows >= 1 && s.rows <= num_nodes && s.cols == gpus_per_node;
    if (!in_node && !whole_nodes) {
      return make_error("", "submeshes[" + std::to_string(i) + "]",
                        "shape (" + std::to_string(s.rows) + ", " + std::to_string(s.cols) +
                            ") is neither (1, 2^k) inside a node nor whole nodes");
    }
    total += s.num_devices();
  }
  if (total != num_nodes * gpus_per_node) {
    return make_error("", "submeshes",
                      "cover " + std::to_string(total) + " devices, the cluster has " +
                          std::to_string(num_nodes * gpus_per_node));
  }

  // Whole-node submeshes first (more rows first), then in-node ones by size; stable for ties.
  std::vector<int> order(submeshes.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) {
    const cluster::Submesh& x = submeshes[a];
    const cluster::Submesh& y = submeshes[b];
    bool x_whole = x.cols == gpus_per_node, y_whole = y.cols == gpus_per_node;
    if (x_whole != y_whole) return x_whole;
    if (x.rows != y.rows) return x.rows > y.rows;
    return x.cols > y.cols;
  });

  std::vector<SubmeshPlacement> placement(submeshes.size());
  std::vector<int> next_free_gpu(num_nodes, 0);  // in-node pieces fill each node left to right
  int next_whole_node = 0;
  for (int index : order) {
    const cluster::Submesh& s = submeshes[index];
    if (s.cols == gpus_per_node) {
      STRATA_CHECK(next_whole_node + s.rows <= num_nodes, "whole-node submeshes overflow");
      placement[index] = {next_whole_node, 0};
      for (int r = 0; r < s.rows; ++r) next_free_gpu[next_whole_node + r] = gpus_per_node;
      next_whole_node += s.rows;
      continue;
    }
    // Power-of-two sizes in falling order: each node's free space stays a multiple of the
    // current size, so the first node with room takes it, aligned.
    bool placed = false;
    for (int node = 0; node < num_nodes && !placed; ++node) {
      if (next_free_gpu[node] + s.cols <= gpus_per_node) {
        placement[index] = {node, next_free_gpu[node]};
        next_free_gpu[node] += s.cols;
        placed = true;
      }
    }
    STRATA_CHECK(placed, "power-of-two submeshes that add up must tile the cluster");
  }
  return placement;
}

}  // namespace strata::inter
