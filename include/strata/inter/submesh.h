// Submesh shapes the inter-op pass may give a stage, their logical (n0 × n1) views, and a
// concrete placement of a set of submeshes onto the cluster's nodes and GPUs that tiles it.
#pragma once

#include <vector>

#include "strata/cluster/cluster.h"
#include "strata/core/status.h"

namespace strata::inter {

// (1, 2^k) with 2^k ≤ gpus_per_node, then (n, gpus_per_node) for 2 ≤ n ≤ num_nodes; ascending
// device count, no duplicates.
std::vector<cluster::Submesh> stage_submesh_shapes(int num_nodes, int gpus_per_node);

// Every n0 × n1 = devices, ascending n0.
std::vector<cluster::LogicalMesh> stage_logical_meshes(const cluster::Submesh& submesh);

struct SubmeshPlacement {
  int first_node = 0;  // the submesh covers nodes [first_node, first_node + rows)
  int first_gpu = 0;   // and, in each, GPUs [first_gpu, first_gpu + cols)
};

// Places each submesh (result[i] for submeshes[i]): whole-node submeshes first, largest first,
// on consecutive nodes; then the in-node ones, largest first, first fit. Submeshes must have
// the shapes of stage_submesh_shapes with gpus_per_node a power of two; their devices must sum
// to the cluster's. Then the placement never fails; an Error says why the input was wrong.
Expected<std::vector<SubmeshPlacement>> place_submeshes(
    const std::vector<cluster::Submesh>& submeshes, int num_nodes, int gpus_per_node);

}  // namespace strata::inter
