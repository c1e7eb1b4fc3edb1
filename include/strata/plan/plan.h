// The Plan: what the planner chose (stages, meshes, micro-batches, schedule, per-op strategies,
// per-stage costs) as plain data, its YAML form (docs/plan_format.md), validation and a report.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "strata/autodiff/autodiff.h"
#include "strata/cluster/cluster.h"
#include "strata/core/status.h"
#include "strata/ir/graph.h"

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

// The optimizer the training graph was built with (docs/plan_format.md `training`). Defaults are
// what a plan without a `training` block means; the writer always writes the block out, and the
// schedule keys only when the schedule is not the constant lr.
struct Training {
  std::string optimizer = "adam";  // "adam" or "sgd"
  double lr = 1e-3;                // the peak lr of the schedule
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0.0;
  // The lr schedule, as Megatron-LM's --lr-warmup-iters, --lr-decay-style, --lr-decay-iters and
  // --min-lr: a linear warmup to lr over steps 1..warmup_steps, then a decay to min_lr at step
  // decay_steps (counted from the start, warmup included) that stays there.
  int64_t warmup_steps = 0;
  std::string decay = "constant";  // "constant", "linear" or "cosine"
  int64_t decay_steps = 0;         // only for linear or cosine
  double min_lr = 0.0;             // only for linear or cosine
  bool operator==(const Training&) const = default;
};

// The schedule's rules (docs/plan_format.md); the first problem as an Error whose field is the
// key's name in the `training` block, with no file.
Status validate_schedule(const Training& training);
bool has_schedule(const Training& training);  // any schedule key differs from a constant lr

// The lr of 1-based step `step` under the schedule; exactly `training.lr` for a constant lr.
double learning_rate(const Training& training, int64_t step);

// The autodiff options that build the training graph a plan's `training` block describes.
autodiff::TrainingOptions autodiff_options(const Training& training);

struct Predicted {
  double step_seconds = 0;
  int64_t peak_memory_bytes = 0;  // per device, the largest over stages
};

struct Plan {
  std::string model;
  std::string model_file;  // model YAML, relative to the plan file's directory or absolute; "" = none
  ClusterShape cluster;
  int64_t global_batch = 1;
  int num_micro_batches = 1;
  std::string schedule = "1f1b";  // "1f1b" or "gpipe"
  Training training;
  cluster::Link cross_stage_link;  // between adjacent stages
  std::vector<Stage> stages;
  Predicted predicted;
  std::string source_file;  // the YAML it came from ("" when built in code); not written

  int num_stages() const { return static_cast<int>(stages.size()); }
  // Samples per micro-batch: global_batch / num_micro_batches (validate checks it divides).
  int64_t micro_batch_size() const { return num_micro_batches > 0 ? global_batch / num_micro_batches : 0; }
  // model_file as a path usable from the current directory: relative paths are taken from the
  // directory of source_file. "" when the plan names no model file.
  std::string model_path() const;
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

// The strategies against the training graph the plan runs: either no stage lists strategies (a
// cost-only plan: simulate reads it, train cannot run it) or every op of `training_graph` is in
// exactly one stage's map, no name is unknown, and every spec parses as an intra::OpSharding.
Status validate_strategies(const Plan& plan, const ir::Graph& training_graph);

// Whether stages a and a+1 sit on one node (their link is intra-node) or not.
bool boundary_is_intra_node(const Plan& plan, int stage);

// Human-readable summary: one line per stage and the predictions.
std::string report(const Plan& plan);

}  // namespace strata::plan
