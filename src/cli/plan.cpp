// `strata plan`: the two-level search (planner::plan_model) from a model and a cluster config to a
// plan.yaml; prints stages, meshes, micro-batches, the predicted step, TFLOP/s and memory per
// device. --intra-only hands over to the intra-op-only planner (src/cli/plan_intra.cpp).
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <algorithm>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <thread>

#include "cli/commands.h"
#include "cli/common.h"
#include "cli/plan_intra.h"
#include "strata/cluster/alpha_beta.h"
#include "strata/core/args.h"
#include "strata/core/units.h"
#include "strata/planner/planner.h"
#include "strata/profile/comm_model.h"
#include "strata/sim/simulator.h"

namespace strata::cli {
namespace {

int fail_with(const Error& error, int code) { return report_failure("plan", error, code); }

// A flag's integer, at least `least`.
Expected<int> int_flag(const ArgParser& args, const std::string& name, int fallback, int least) {
  if (!args.has(name)) return fallback;
  STRATA_ASSIGN_OR_RETURN(int64_t value, args.get_int(name, fallback));
  if (value < least || value > (int64_t{1} << 20)) {
    return make_error("", "--" + name, "must be an integer from " + std::to_string(least) + ", got " +
                                           std::to_string(value));
  }
  return static_cast<int>(value);
}

// "[#####.....] 120/300 candidate stages" on stderr, redrawn at most every 1%.
class ProgressBar {
 public:
  void update(const planner::PlanProgress& p) {
    if (p.total <= 0) return;
    const int percent = static_cast<int>(100 * p.done / p.total);
    if (percent == shown_ && p.done != p.total) return;
    shown_ = percent;
    char bar[41];
    const int filled = static_cast<int>(40 * p.done / p.total);
    for (int i = 0; i < 40; ++i) bar[i] = i < filled ? '#' : '.';
    bar[40] = '\0';
    std::fprintf(stderr, "\r  [%s] %lld/%lld candidate stages", bar, static_cast<long long>(p.done),
                 static_cast<long long>(p.total));
    if (p.done == p.total) std::fprintf(stderr, "\n");
    std::fflush(stderr);
  }

 private:
  int shown_ = -1;
};

}  // namespace

int run_plan(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--intra-only") == 0) return run_plan_intra_only(argc, argv);
  }
  ArgParser args("plan", "Search a two-level (pipeline stages x intra-op sharding) plan for a model on a cluster.");
  args.option("model", "model config (YAML)", "M.yaml")
      .option("cluster", "cluster config (YAML)", "C.yaml")
      .option("profile", "measured profile (strata profile) for collectives and GEMMs", "P.h5")
      .option("out", "write the plan here (docs/plan_format.md)", "plan.yaml")
      .option("stages", "force the number of pipeline stages", "N")
      .option("micro-batches", "force the number of micro-batches B (must divide the global batch)", "B")
      .option("layers", "cluster the forward graph into L layers (default: automatic)", "L")
      .option("cache", "directory of the on-disk stage cache (re-plans reuse it)", "DIR")
      .option("threads", "threads solving candidate stages (default: the cores)", "T")
      .option("time-limit", "ILP time limit per candidate stage, seconds (default 30)", "S")
      .option("compose", "stage costs from per-block solutions: auto (default; large searches), on, off", "MODE")
      .option("compare", "also simulate this plan (e.g. a manual one) and compare its step", "P.yaml")
      .flag("intra-only", "one stage over the whole cluster, intra-op sharding only")
      .flag("json", "print JSON instead of text")
      .required("model")
      .required("cluster")
      .required("out");
  if (Status status = args.parse(argc, argv); !status) return fail_with(status.error(), 2);
  if (args.help_requested()) {
    std::printf("%s", args.help_text().c_str());
    return 0;
  }
  auto spec = models::load_model_config(args.get("model"));
  if (!spec) return fail_with(spec.error(), 2);
  auto cluster = cluster::load_cluster(args.get("cluster"));
  if (!cluster) return fail_with(cluster.error(), 2);

  planner::PlannerOptions options;
  const int cores = std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
  auto stages = int_flag(args, "stages", 0, 1);
  auto micro_batches = int_flag(args, "micro-batches", 0, 1);
  auto layers = int_flag(args, "layers", 0, 1);
  auto threads = int_flag(args, "threads", cores, 1);
  for (auto* flag : {&stages, &micro_batches, &layers, &threads}) {
    if (!*flag) return fail_with(flag->error(), 2);
  }
  options.num_stages = *stages;
  options.num_micro_batches = *micro_batches;
  options.num_layers = *layers;
  options.num_threads = *threads;
  auto time_limit = args.get_double("time-limit", 30);
  if (!time_limit || !(*time_limit > 0)) {
    return fail_with(time_limit ? make_error("", "--time-limit", "must be positive") : time_limit.error(), 2);
  }
  options.ilp_time_limit_seconds = *time_limit;
  const std::string compose = args.has("compose") ? args.get("compose") : "auto";
  if (compose == "on") {
    options.layer_composition = planner::PlannerOptions::Composition::on;
  } else if (compose == "off") {
    options.layer_composition = planner::PlannerOptions::Composition::off;
  } else if (compose != "auto") {
    return fail_with(make_error("", "--compose", "must be auto, on or off, got '" + compose + "'"), 2);
  }
  options.cache_dir = args.get("cache");
  options.model_file = args.get("model");

  std::unique_ptr<cluster::CommModel> comm = std::make_unique<cluster::AlphaBetaModel>(*cluster);
  cost::ComputeModel compute(*cluster);
  if (args.has("profile")) {
    auto profile = profile::Store::read(args.get("profile"), cluster->name);
    if (!profile) return fail_with(profile.error(), 2);
    compute.use_profile(*profile);
    comm = std::make_unique<profile::ProfileCommModel>(*profile, *cluster);
  }
  options.compute = &compute;
  std::optional<plan::Plan> manual;
  if (args.has("compare")) {
    auto read = plan::read_plan(args.get("compare"));
    if (!read) return fail_with(read.error(), 2);
    if (Status status = plan::validate(*read, &*cluster); !status) return fail_with(status.error(), 2);
    manual = std::move(read).value();
  }
  ProgressBar bar;
  if (!args.has("json") && isatty(STDERR_FILENO)) {
    options.progress = [&bar](const planner::PlanProgress& p) { bar.update(p); };
  }

  auto result = planner::plan_model(*spec, *cluster, *comm, options);
  if (!result) {
    const Error& e = result.error();
    // Options and configs are bad input; anything else (a solver failure) is not.
    const bool input = !e.file.empty() || e.field == "stages" || e.field == "micro_batches" || e.field == "layers";
    return fail_with(e, input ? 2 : 1);
  }
  // The plan names its model file relative to where it is written.
  plan::Plan& plan = result->plan;
  {
    namespace fs = std::filesystem;
    std::error_code ec;
    const fs::path out_dir = fs::absolute(args.get("out"), ec).parent_path();
    const fs::path model = fs::absolute(args.get("model"), ec);
    const fs::path relative = model.lexically_relative(out_dir);
    plan.model_file = relative.empty() ? model.string() : relative.string();
  }
  if (Status status = plan::write_plan(plan, args.get("out")); !status) return fail_with(status.error(), 1);

  double manual_step = 0;
  if (manual) manual_step = sim::simulate(*manual).step_seconds;
  if (args.has("json")) {
    Json json = planner::result_json(*result);
    json.set("out", args.get("out"));
    if (manual) {
      json.set("compare_plan", args.get("compare"));
      json.set("compare_step_seconds", manual_step);
    }
    std::printf("%s\n", json.dump(2).c_str());
  } else {
    std::printf("%s", planner::result_report(*result).c_str());
    if (manual) {
      std::printf("  compared plan %s: step %s, %.3gx the planned step\n", args.get("compare").c_str(),
                  format_seconds(manual_step).c_str(), manual_step / result->step_seconds);
    }
    std::printf("wrote %s\n", args.get("out").c_str());
  }
  return 0;
}

}  // namespace strata::cli
