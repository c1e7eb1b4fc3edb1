// A cluster as the planner sees it: nodes of identical GPUs, links inside and between nodes,
// and the device meshes cut from it. Loaded from configs/clusters/*.yaml.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "strata/core/dtype.h"
#include "strata/core/status.h"

namespace strata::cluster {

struct Link {
  double bandwidth_bytes_per_second = 0;  // per direction, per GPU
  double latency_seconds = 0;
};

struct ClusterSpec {
  std::string name;
  std::string gpu_model;             // "V100-SXM2-16GB", "H200", ...
  int num_nodes = 1;
  int gpus_per_node = 1;
  int64_t gpu_memory_bytes = 0;
  double peak_flops_f32 = 0;         // per GPU, FLOP/s
  double peak_flops_f16 = 0;         // dense tensor-core rate for f16
  double peak_flops_bf16 = 0;        // dense tensor-core rate for bf16 (0 when unsupported)
  double memory_bandwidth_bytes_per_second = 0;  // HBM
  Link intra_node;                   // NVLink / PCIe between GPUs of one node
  Link inter_node;                   // network between nodes
  std::string source_file;           // the YAML it came from ("" when built in code)

  int num_devices() const { return num_nodes * gpus_per_node; }
  double peak_flops(DType dtype) const;  // f64 counts as f32/2
};

Expected<ClusterSpec> load_cluster(const std::string& path);
Expected<ClusterSpec> parse_cluster(const std::string& yaml_text, const std::string& file);

// A physical submesh: `rows` nodes × `cols` GPUs per node, starting at node `first_node` (and,
// inside a node, at GPU `first_gpu`). Shapes the inter-op pass uses: (1, 2^k) inside one node
// with 2^k ≤ gpus_per_node, and (n, gpus_per_node) whole nodes.
struct Submesh {
  int rows = 1;
  int cols = 1;
  int num_devices() const { return rows * cols; }
  bool operator==(const Submesh&) const = default;
};

// A 2-D logical view (n0 × n1, n0·n1 = devices) of a submesh. Axis 0 of a (rows, cols)
// submesh viewed as (rows, cols) runs across nodes; any reshaping keeps device order row-major.
struct LogicalMesh {
  int n0 = 1;
  int n1 = 1;
  int num_devices() const { return n0 * n1; }
  bool operator==(const LogicalMesh&) const = default;
};

std::vector<Submesh> submesh_shapes(const ClusterSpec& spec);
std::vector<LogicalMesh> logical_meshes(const Submesh& submesh);  // every n0·n1 = devices

}  // namespace strata::cluster
