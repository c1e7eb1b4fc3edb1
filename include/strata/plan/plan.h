// The Plan: what the planner chose (stages, meshes, micro-batches, schedule, per-op strategies,
// per-stage costs) as plain data, its YAML form (docs/plan_format.md), validation and a report.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "strata/cluster/cluster.h"
#include "strata/core/status.h"

namespace strata::plan {

// One pipeline stage: a contiguous layer range on one submesh, with its per-micro-batch costs.
struct Stage {
  int first_layer = 0;
  int last_layer = 0;                  // inclusive
  cluster::Submesh submesh;            // rows nodes × cols GPUs per node
  int first_node = 0;                  // where the submesh starts in the cluster
  int first_gpu = 0;
  cluster::LogicalMesh logical_mesh;
  double forward_seconds = 0;          // per micro-batch
  double backward_seconds = 0;         // per micro-batch
  double update_seconds = 0;           // optimizer update, once per step
  double grad_sync_seconds = 0;        // gradient all-reduce inside the mesh, once per step
  int64_t weights_bytes = 0;           // per device
  int64_t optimizer_state_bytes = 0;   // per device
  int64_t activation_bytes_per_micro_batch = 0;  // per device, held from forward to backward
  int64_t send_bytes = 0;              // activation bytes sent to the next stage per micro-batch
  std::map<std::string, std::string> strategies;  // op name -> sharding spec
};

// The cluster the plan was made for, enough to check the submeshes tile it.
struct ClusterShape {
  std::string name;
  int num_nodes = 1;
  int gpus_per_node = 1;
  int num_devices() const { return num_nodes * gpus_per_node; }
};

struct Predicted {
  double step_seconds = 0;
  int64_t peak_memory_bytes = 0;  // per device, the largest over stages
};

struct Plan {
  std::string model;
  ClusterShape cluster;
  int64_t global_batch = 1;
  int num_micro_batches = 1;
  std::string schedule = "1f1b";  // "1f1b" or "gpipe"
  cluster::Link cross_stage_link;  // between adjacent stages
  std::vector<Stage> stages;
  Predicted predicted;
  std::string source_file;  // the YAML it came from ("" when built in code); not written

  int num_stages() const { return static_cast<int>(stages.size()); }
};

Expected<Plan> parse_plan(const std::string& yaml_text, const std::string& file);
Expected<Plan> read_plan(const std::string& path);  // parses and validates
// Deterministic text: fixed key order, shortest round-trip numbers, so that
// write(parse(write(p))) == write(p) byte for byte.
std::string plan_to_yaml(const Plan& plan);
Status write_plan(const Plan& plan, const std::string& path);

// Every structural rule of docs/plan_format.md; the first problem as an Error naming file and
// field. `spec`, when given, must match the plan's cluster block in shape.
Status validate(const Plan& plan, const cluster::ClusterSpec* spec = nullptr);

// Whether stages a and a+1 sit on one node (their link is intra-node) or not.
bool boundary_is_intra_node(const Plan& plan, int stage);

// Human-readable summary: one line per stage and the predictions.
std::string report(const Plan& plan);

}  // namespace strata::plan
