// The Alpa paper's weak-scaling experiments (its Table 4 and Figure 7) in simulation: per model
// family, a larger model on more GPUs of the AWS p3 cluster, every method compared at each point.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "strata/baselines/baselines.h"
#include "strata/baselines/plot.h"

namespace strata::baselines {

struct ScalingPoint {
  int gpus = 1;
  std::string model_file;    // configs/models/<name>.yaml
  std::string cluster_file;  // configs/clusters/aws-p3-*.yaml
};

// The (model, cluster) pairs of `family` ("gpt", "moe" or "wresnet") with at most `max_gpus`
// GPUs (0: all, 1 to 64), under `config_dir` (the repository's configs/). 1-4 GPU clusters are
// aws-p3-1node-<n>gpu.yaml, 8-64 GPUs aws-p3-<n/8>node.yaml. Errors: an unknown family, a
// missing file.
Expected<std::vector<ScalingPoint>> paper_weak_scaling(const std::string& family, const std::string& config_dir,
                                                       int max_gpus = 0);

struct ScalingResult {
  ScalingPoint point;
  std::string model;    // its name
  std::string cluster;  // its name
  std::vector<MethodResult> results;
};

// The planner options of one point: those of `options` with only the micro-batch candidates that
// divide the model's global batch (the families' batches differ: GPT and MoE 1024, Wide-ResNet
// 1536, so one list such as 512,1024 serves all three). Errors (field micro_batches): a forced
// count that does not divide the batch, or candidates none of which does.
Expected<planner::PlannerOptions> point_options(const models::ModelSpec& spec, const planner::PlannerOptions& options);

// Loads every point's model and cluster and checks its GPUs and point_options(), so that bad
// input fails before any planning starts.
Status check_weak_scaling(const std::vector<ScalingPoint>& points, const CompareOptions& options);

// compare() at every point (after check_weak_scaling) (the analytic alpha-beta communication model of each cluster);
// `on_point` is called after each point.
Expected<std::vector<ScalingResult>> run_weak_scaling(const std::vector<ScalingPoint>& points,
                                                      const CompareOptions& options,
                                                      const std::function<void(const ScalingResult&)>& on_point = {});

// The JSON of a run (weak_scaling_bench --json-prefix): {"family", "points": [compare_json of each
// point plus "model_file" and "cluster_file"]}.
Json weak_scaling_json(const std::string& family, const std::vector<ScalingResult>& results);

// What a plot needs of a run, read back from weak_scaling_json (so that runs made by separate
// processes -- one point each, or one method added later -- draw one plot).
struct SavedMethod {
  std::string method;  // a method_name()
  bool feasible = false;
  bool out_of_memory = false;
  double tflops_per_device = 0;  // when feasible
};
struct SavedPoint {
  int gpus = 0;
  std::string model;
  std::string cluster;
  std::vector<SavedMethod> methods;
};
struct SavedRun {
  std::string family;
  std::vector<SavedPoint> points;
};

SavedRun saved_run(const std::string& family, const std::vector<ScalingResult>& results);
// Parses one run's JSON; `file` names it in errors ("<file>: points[1].methods[0].method: ...").
// Errors: not JSON, a missing or mistyped field, an unknown method, a non-positive GPU count, a
// feasible method without a finite non-negative TFLOP/s.
Expected<SavedRun> parse_weak_scaling_json(const std::string& text, const std::string& file);
// Reads and parses each file and merges the runs of each family (in order of first appearance),
// points sorted by GPUs. Errors, naming the later file: two runs disagree on the model or cluster
// of a family's GPU count, or both hold the same method at the same point.
Expected<std::vector<SavedRun>> merge_weak_scaling_files(const std::vector<std::string>& files);

// One line per method (in all_methods() order): x the GPUs, y TFLOP/s per GPU, crosses where out
// of memory.
LinePlot weak_scaling_plot(const SavedRun& run);
LinePlot weak_scaling_plot(const std::string& family, const std::vector<ScalingResult>& results);

}  // namespace strata::baselines
