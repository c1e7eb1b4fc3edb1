// The weak-scaling pairs of the Alpa paper (Table 4: 1, 4, 8, 16, 32, 64 GPUs) and their runs.
#include "strata/baselines/weak_scaling.h"

#include <algorithm>
#include <cmath>
#include <filesystem>

#include "strata/cluster/alpha_beta.h"
#include "strata/core/units.h"

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

SavedRun saved_run(const std::string& family, const std::vector<ScalingResult>& results) {
  SavedRun run{family, {}};
  for (const ScalingResult& point : results) {
    SavedPoint saved{point.point.gpus, point.model, point.cluster, {}};
    for (const MethodResult& r : point.results) {
      saved.methods.push_back({method_name(r.method), r.feasible, r.out_of_memory,
                               r.feasible ? r.result.tflops_per_device : 0.0});
    }
    run.points.push_back(std::move(saved));
  }
  return run;
}

LinePlot weak_scaling_plot(const SavedRun& run) {
  LinePlot plot;
  plot.title = run.family + " weak scaling (simulated, one cost model)";
  plot.y_label = "TFLOP/s per GPU";
  for (Method method : all_methods()) {
    PlotSeries series{method_name(method), {}};
    for (const SavedPoint& point : run.points) {
      for (const SavedMethod& m : point.methods) {
        if (m.method == series.name) series.points.push_back({double(point.gpus), m.feasible ? m.tflops_per_device : 0.0, m.feasible});
      }
    }
    if (!series.points.empty()) plot.series.push_back(std::move(series));
  }
  return plot;
}

LinePlot weak_scaling_plot(const std::string& family, const std::vector<ScalingResult>& results) {
  return weak_scaling_plot(saved_run(family, results));
}

namespace {

// A field of `object` of the given kind, or an error naming file and field.
Expected<const Json*> field_of(const Json& object, const std::string& key, Json::Kind kind, const std::string& file,
                               const std::string& where) {
  static const char* const kNames[] = {"null", "a boolean", "a number", "a string", "an array", "an object"};
  const std::string name = where.empty() ? key : where + "." + key;
  if (!object.has(key)) return make_error(file, name, "missing");
  const Json& value = object[key];
  if (value.kind() != kind) {
    return make_error(file, name, std::string("must be ") + kNames[int(kind)] + ", got " + kNames[int(value.kind())]);
  }
  return &value;
}

}  // namespace

Expected<SavedRun> parse_weak_scaling_json(const std::string& text, const std::string& file) {
  STRATA_ASSIGN_OR_RETURN(Json json, Json::parse(text, file));
  if (json.kind() != Json::Kind::object) return make_error(file, "family", "the file is not a JSON object");
  SavedRun run;
  STRATA_ASSIGN_OR_RETURN(const Json* family, field_of(json, "family", Json::Kind::string, file, ""));
  run.family = family->as_string();
  if (run.family.empty()) return make_error(file, "family", "must not be empty");
  STRATA_ASSIGN_OR_RETURN(const Json* points, field_of(json, "points", Json::Kind::array, file, ""));
  for (size_t i = 0; i < points->size(); ++i) {
    const Json& p = (*points)[i];
    const std::string at = "points[" + std::to_string(i) + "]";
    if (p.kind() != Json::Kind::object) return make_error(file, at, "must be an object");
    SavedPoint point;
    STRATA_ASSIGN_OR_RETURN(const Json* devices, field_of(p, "devices", Json::Kind::number, file, at));
    if (devices->as_number() < 1 || devices->as_number() != std::floor(devices->as_number()) ||
        devices->as_number() > (1 << 20)) {
      return make_error(file, at + ".devices", "must be a positive whole number, got " + devices->dump());
    }
    point.gpus = int(devices->as_number());
    STRATA_ASSIGN_OR_RETURN(const Json* model, field_of(p, "model", Json::Kind::string, file, at));
    STRATA_ASSIGN_OR_RETURN(const Json* cluster, field_of(p, "cluster", Json::Kind::string, file, at));
    point.model = model->as_string();
    point.cluster = cluster->as_string();
    STRATA_ASSIGN_OR_RETURN(const Json* methods, field_of(p, "methods", Json::Kind::array, file, at));
    for (size_t k = 0; k < methods->size(); ++k) {
      const Json& m = (*methods)[k];
      const std::string mat = at + ".methods[" + std::to_string(k) + "]";
      if (m.kind() != Json::Kind::object) return make_error(file, mat, "must be an object");
      SavedMethod saved;
      STRATA_ASSIGN_OR_RETURN(const Json* name, field_of(m, "method", Json::Kind::string, file, mat));
      if (auto known = parse_method(name->as_string()); !known) {
        return make_error(file, mat + ".method", known.error().reason);
      }
      saved.method = name->as_string();
      for (const SavedMethod& other : point.methods) {
        if (other.method == saved.method) return make_error(file, mat + ".method", "'" + saved.method + "' twice in one point");
      }
      STRATA_ASSIGN_OR_RETURN(const Json* feasible, field_of(m, "feasible", Json::Kind::boolean, file, mat));
      saved.feasible = feasible->as_bool();
      if (m.has("out_of_memory")) {
        STRATA_ASSIGN_OR_RETURN(const Json* oom, field_of(m, "out_of_memory", Json::Kind::boolean, file, mat));
        saved.out_of_memory = oom->as_bool();
      }
      if (saved.feasible) {
        STRATA_ASSIGN_OR_RETURN(const Json* tflops, field_of(m, "tflops_per_device", Json::Kind::number, file, mat));
        saved.tflops_per_device = tflops->as_number();
        if (!std::isfinite(saved.tflops_per_device) || saved.tflops_per_device < 0) {
          return make_error(file, mat + ".tflops_per_device", "must be a non-negative number, got " + tflops->dump());
        }
      }
      point.methods.push_back(std::move(saved));
    }
    run.points.push_back(std::move(point));
  }
  return run;
}

Expected<std::vector<SavedRun>> merge_weak_scaling_files(const std::vector<std::string>& files) {
  if (files.empty()) return make_error("", "plot-from", "no result files given");
  struct Origin {
    std::string family;
    int gpus;
    std::string file;
  };
  std::vector<SavedRun> merged;
  std::vector<Origin> origins;  // which file first gave each (family, GPUs) point
  for (const std::string& file : files) {
    STRATA_ASSIGN_OR_RETURN(std::string text, read_text_file(file));
    STRATA_ASSIGN_OR_RETURN(SavedRun run, parse_weak_scaling_json(text, file));
    auto into = std::find_if(merged.begin(), merged.end(), [&](const SavedRun& r) { return r.family == run.family; });
    if (into == merged.end()) into = merged.insert(merged.end(), SavedRun{run.family, {}});
    for (size_t i = 0; i < run.points.size(); ++i) {
      SavedPoint& point = run.points[i];
      const std::string at = "points[" + std::to_string(i) + "]";
      auto same = std::find_if(into->points.begin(), into->points.end(), [&](const SavedPoint& p) { return p.gpus == point.gpus; });
      if (same == into->points.end()) {
        origins.push_back({run.family, point.gpus, file});
        into->points.push_back(std::move(point));
        continue;
      }
      const std::string first = std::find_if(origins.begin(), origins.end(), [&](const Origin& o) {
                                  return o.family == run.family && o.gpus == point.gpus;
                                })->file;
      const std::string where = " at " + std::to_string(point.gpus) + " GPUs of " + run.family + ", but " + first + " has '";
      if (same->model != point.model) return make_error(file, at + ".model", "'" + point.model + "'" + where + same->model + "'");
      if (same->cluster != point.cluster) {
        return make_error(file, at + ".cluster", "'" + point.cluster + "'" + where + same->cluster + "'");
      }
      for (size_t k = 0; k < point.methods.size(); ++k) {
        const SavedMethod& m = point.methods[k];
        for (const SavedMethod& had : same->methods) {
          if (had.method == m.method) {
            return make_error(file, at + ".methods[" + std::to_string(k) + "]",
                              "'" + m.method + "' at " + std::to_string(point.gpus) + " GPUs of " + run.family +
                                  " is already in " + first);
          }
        }
        same->methods.push_back(m);
      }
    }
  }
  for (SavedRun& run : merged) {
    std::stable_sort(run.points.begin(), run.points.end(), [](const SavedPoint& a, const SavedPoint& b) { return a.gpus < b.gpus; });
  }
  return merged;
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
