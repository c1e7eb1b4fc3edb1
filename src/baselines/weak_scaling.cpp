// The weak-scaling pairs of the Alpa paper (Table 4: 1, 4, 8, 16, 32, 64 GPUs) and their runs.
#include "strata/baselines/weak_scaling.h"

#include <algorithm>
#include <filesystem>

#include "strata/cluster/alpha_beta.h"

namespace strata::baselines {
namespace {

struct Pair {
  int gpus;
  const char* model;
};

constexpr Pair kGpt[] = {{1, "gpt-350m"}, {4, "gpt-1.3b"}, {8, "gpt-2.6b"},
                         {16, "gpt-6.7b"}, {32, "gpt-15b"}, {64, "gpt-39b"}};
constexpr Pair kMoe[] = {{1, "moe-380m"}, {4, "moe-690m"}, {8, "moe-1.3b"},
                         {16, "moe-2.4b"}, {32, "moe-10b"}, {64, "moe-27b"}};
constexpr Pair kWresnet[] = {{1, "wresnet-250m"}, {4, "wresnet-1b"}, {8, "wresnet-2b"},
                             {16, "wresnet-4b"}, {32, "wresnet-6.8b"}, {64, "wresnet-13b"}};

// 1, 2 or 4 GPUs of one p3.16xlarge, else whole nodes of 8.
std::string cluster_name(int gpus) {
  if (gpus >= 8) return "aws-p3-" + std::to_string(gpus / 8) + "node.yaml";
  return "aws-p3-1node-" + std::to_string(gpus) + "gpu.yaml";
}

}  // namespace

Expected<std::vector<ScalingPoint>> paper_weak_scaling(const std::string& family, const std::string& config_dir,
                                                       int max_gpus) {
  std::vector<Pair> pairs;
  if (family == "gpt") pairs.assign(std::begin(kGpt), std::end(kGpt));
  else if (family == "moe") pairs.assign(std::begin(kMoe), std::end(kMoe));
  else if (family == "wresnet") pairs.assign(std::begin(kWresnet), std::end(kWresnet));
  else return make_error("", "family", "unknown model family '" + family + "' (gpt, moe or wresnet)");
  if (max_gpus < 0) return make_error("", "max_gpus", "must not be negative, got " + std::to_string(max_gpus));
  const std::filesystem::path root(config_dir);
  std::vector<ScalingPoint> points;
  for (const Pair& p : pairs) {
    if (max_gpus > 0 && p.gpus > max_gpus) continue;
    ScalingPoint point{p.gpus, (root / "models" / (std::string(p.model) + ".yaml")).string(),
                       (root / "clusters" / cluster_name(p.gpus)).string()};
    for (const std::string& file : {point.model_file, point.cluster_file}) {
      if (!std::filesystem::exists(file)) return make_error(file, "", "no such file (config_dir " + config_dir + ")");
    }
    points.push_back(std::move(point));
  }
  if (points.empty()) return make_error("", "max_gpus", "no point of the " + family + " family has at most " +
                                                            std::to_string(max_gpus) + " GPUs");
  return points;
}

Expected<planner::PlannerOptions> point_options(const models::ModelSpec& spec, const planner::PlannerOptions& options) {
  planner::PlannerOptions o = options;
  const int64_t global = models::effective_batch(spec, 0);
  if (global <= 0) return o;  // a generic graph: the planner answers for its fixed batch
  if (o.num_micro_batches > 0) {
    if (global % o.num_micro_batches != 0) {
      return make_error("", "micro_batches", std::to_string(o.num_micro_batches) + " does not divide the global batch " +
                                                 std::to_string(global) + " of " + spec.name);
    }
    return o;
  }
  if (o.micro_batch_candidates.empty()) return o;
  std::vector<int> kept;
  std::string given;
  for (int b : o.micro_batch_candidates) {
    if (b < 1) return make_error("", "micro_batches", "must be at least 1, got " + std::to_string(b));
    if (global % b == 0) kept.push_back(b);
    given += (given.empty() ? "" : ",") + std::to_string(b);
  }
  if (kept.empty()) {
    return make_error("", "micro_batches", "none of " + given + " divides the global batch " + std::to_string(global) +
                                               " of " + spec.name);
  }
  o.micro_batch_candidates = std::move(kept);
  return o;
}

Status check_weak_scaling(const std::vector<ScalingPoint>& points, const CompareOptions& options) {
  for (const ScalingPoint& point : points) {
    STRATA_ASSIGN_OR_RETURN(models::ModelSpec spec, models::load_model_config(point.model_file));
    STRATA_ASSIGN_OR_RETURN(cluster::ClusterSpec cluster, cluster::load_cluster(point.cluster_file));
    if (cluster.num_devices() != point.gpus) {
      return make_error(point.cluster_file, "gpus_per_node",
                        "the cluster has " + std::to_string(cluster.num_devices()) + " GPUs, the point " +
                            std::to_string(point.gpus));
    }
    STRATA_RETURN_IF_ERROR(point_options(spec, options.planner).status());
  }
  return Status::ok();
}

Expected<std::vector<ScalingResult>> run_weak_scaling(const std::vector<ScalingPoint>& points,
                                                      const CompareOptions& options,
                                                      const std::function<void(const ScalingResult&)>& on_point) {
  STRATA_RETURN_IF_ERROR(check_weak_scaling(points, options));
  std::vector<ScalingResult> out;
  for (const ScalingPoint& point : points) {
    STRATA_ASSIGN_OR_RETURN(models::ModelSpec spec, models::load_model_config(point.model_file));
    STRATA_ASSIGN_OR_RETURN(cluster::ClusterSpec cluster, cluster::load_cluster(point.cluster_file));
    const cluster::AlphaBetaModel comm(cluster);
    CompareOptions o = options;
    STRATA_ASSIGN_OR_RETURN(o.planner, point_options(spec, options.planner));
    o.planner.model_file = point.model_file;
    STRATA_ASSIGN_OR_RETURN(std::vector<MethodResult> results, compare(spec, cluster, comm, o));
    out.push_back({point, spec.name, cluster.name, std::move(results)});
    if (on_point) on_point(out.back());
  }
  return out;
}

LinePlot weak_scaling_plot(const std::string& family, const std::vector<ScalingResult>& results) {
  LinePlot plot;
  plot.title = family + " weak scaling (simulated, one cost model)";
  plot.y_label = "TFLOP/s per GPU";
  for (const ScalingResult& point : results) {
    for (const MethodResult& r : point.results) {
      const std::string name = method_name(r.method);
      auto it = std::find_if(plot.series.begin(), plot.series.end(), [&](const PlotSeries& s) { return s.name == name; });
      if (it == plot.series.end()) it = plot.series.insert(plot.series.end(), PlotSeries{name, {}});
      it->points.push_back({double(point.point.gpus), r.feasible ? r.result.tflops_per_device : 0.0, r.feasible});
    }
  }
  return plot;
}

Json weak_scaling_json(const std::string& family, const std::vector<ScalingResult>& results) {
  Json points = Json::array();
  for (const ScalingResult& r : results) {
    Json point = compare_json(r.model, r.cluster, r.point.gpus, r.results);
    point.set("model_file", r.point.model_file);
    point.set("cluster_file", r.point.cluster_file);
    points.push(std::move(point));
  }
  Json out = Json::object();
  out.set("family", family);
  out.set("points", std::move(points));
  return out;
}

}  // namespace strata::baselines
