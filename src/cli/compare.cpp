// `strata compare`: Strata against its baselines under one cost model, as a table (--model and
// --cluster) or as the paper's weak-scaling figure of a model family (--family), docs/compare.md.
#include <unistd.h>

#include <cstdio>
#include <sstream>
#include <string>

#include "cli/commands.h"
#include "cli/common.h"
#include "strata/baselines/weak_scaling.h"
#include "strata/cluster/alpha_beta.h"
#include "strata/core/args.h"
#include "strata/core/units.h"

namespace strata::cli {
namespace {

int fail_with(const Error& error, int code) { return report_failure("compare", error, code); }

Expected<std::vector<baselines::Method>> parse_methods(const std::string& list) {
  std::vector<baselines::Method> methods;
  std::stringstream in(list);
  for (std::string name; std::getline(in, name, ',');) {
    STRATA_ASSIGN_OR_RETURN(baselines::Method m, baselines::parse_method(name));
    methods.push_back(m);
  }
  if (methods.empty()) return make_error("", "methods", "no method named");
  return methods;
}

Expected<baselines::CompareOptions> options_from(const ArgParser& args) {
  baselines::CompareOptions o;
  if (args.has("methods")) {
    STRATA_ASSIGN_OR_RETURN(o.methods, parse_methods(args.get("methods")));
  }
  STRATA_ASSIGN_OR_RETURN(int64_t threads, args.get_int("threads", 1));
  STRATA_ASSIGN_OR_RETURN(int64_t layers, args.get_int("layers", 0));
  STRATA_ASSIGN_OR_RETURN(int64_t micro_batches, args.get_int("micro-batches", 0));
  STRATA_ASSIGN_OR_RETURN(o.planner.ilp_time_limit_seconds, args.get_double("ilp-time-limit", 30));
  o.planner.num_threads = static_cast<int>(threads);
  o.planner.num_layers = static_cast<int>(layers);
  o.planner.num_micro_batches = static_cast<int>(micro_batches);
  if (isatty(STDERR_FILENO)) {
    o.on_result = [](const baselines::MethodResult& r) {
      std::fprintf(stderr, "  %-14s %s in %.1f s\n", baselines::method_name(r.method),
                   r.feasible ? "planned" : (r.out_of_memory ? "OOM" : "infeasible"), r.search_seconds);
    };
  }
  return o;
}

int run_pair(const ArgParser& args, const baselines::CompareOptions& options) {
  Expected<models::ModelSpec> spec = models::load_model_config(args.get("model"));
  if (!spec) return fail_with(spec.error(), 2);
  Expected<cluster::ClusterSpec> cluster = cluster::load_cluster(args.get("cluster"));
  if (!cluster) return fail_with(cluster.error(), 2);
  const cluster::AlphaBetaModel comm(*cluster);
  baselines::CompareOptions o = options;
  o.planner.model_file = args.get("model");
  auto results = baselines::compare(*spec, *cluster, comm, o);
  if (!results) return fail_with(results.error(), 2);
  if (args.has("plot")) {
    baselines::ScalingResult point{{cluster->num_devices(), args.get("model"), args.get("cluster")},
                                   spec->name, cluster->name, *results};
    const baselines::LinePlot plot = baselines::weak_scaling_plot(spec->name, {point});
    if (Status status = baselines::write_plot(plot, args.get("plot")); !status) return fail_with(status.error(), 1);
  }
  if (args.has("json")) {
    std::printf("%s\n", baselines::compare_json(spec->name, cluster->name, cluster->num_devices(), *results).dump(2).c_str());
  } else {
    std::printf("%s", baselines::compare_table(spec->name, cluster->name, cluster->num_devices(), *results).c_str());
  }
  return 0;
}

int run_family(const ArgParser& args, const baselines::CompareOptions& options) {
  Expected<int64_t> max_gpus = args.get_int("max-gpus", 0);
  if (!max_gpus) return fail_with(max_gpus.error(), 2);
  const std::string family = args.get("family");
  auto points = baselines::paper_weak_scaling(family, args.get("configs", "configs"), static_cast<int>(*max_gpus));
  if (!points) return fail_with(points.error(), 2);
  const bool json = args.has("json");
  auto results = baselines::run_weak_scaling(*points, options, [&](const baselines::ScalingResult& r) {
    if (!json) std::printf("%s\n", baselines::compare_table(r.model, r.cluster, r.point.gpus, r.results).c_str());
    std::fflush(stdout);
  });
  if (!results) return fail_with(results.error(), 2);
  if (args.has("plot")) {
    if (Status status = baselines::write_plot(baselines::weak_scaling_plot(family, *results), args.get("plot"));
        !status) {
      return fail_with(status.error(), 1);
    }
  }
  if (json) std::printf("%s\n", baselines::weak_scaling_json(family, *results).dump(2).c_str());
  return 0;
}

}  // namespace

int run_compare(int argc, char** argv) {
  ArgParser args("compare", "Strata against data parallel, ZeRO-2/3, the Megatron grid, intra-only, inter-only and "
                            "the equal-layer / equal-mesh ablations, under one cost model.");
  args.option("model", "model config (YAML)", "M.yaml")
      .option("cluster", "cluster config (YAML)", "C.yaml")
      .option("family", "weak-scaling runs of the paper's gpt, moe or wresnet models instead", "gpt|moe|wresnet")
      .option("configs", "the configs/ directory holding models/ and clusters/ (with --family)", "DIR")
      .option("max-gpus", "with --family: only the points with at most this many GPUs", "N")
      .option("methods", "comma-separated subset (strata,data-parallel,zero-2,zero-3,megatron-grid,intra-only,"
                         "inter-only,equal-layer,equal-mesh)", "LIST")
      .option("plot", "write the weak-scaling plot (TFLOP/s per GPU against GPUs) to this .svg", "out.svg")
      .option("threads", "threads solving candidate stages", "N")
      .option("layers", "layers to cluster the model into (default: the planner's choice)", "N")
      .option("micro-batches", "force the number of micro-batches (default: searched)", "B")
      .option("ilp-time-limit", "seconds per stage ILP", "S")
      .flag("json", "print JSON instead of text");
  if (Status status = args.parse(argc, argv); !status) return fail_with(status.error(), 2);
  if (args.help_requested()) {
    std::printf("%s", args.help_text().c_str());
    return 0;
  }
  const bool pair = args.has("model") || args.has("cluster");
  if (pair == args.has("family")) {
    return fail_with(make_error("", "--family", "give either --model and --cluster, or --family"), 2);
  }
  if (pair && !(args.has("model") && args.has("cluster"))) {
    return fail_with(make_error("", args.has("model") ? "--cluster" : "--model", "required with the other"), 2);
  }
  if (args.has("plot")) {
    if (Status status = baselines::check_plot_path(args.get("plot")); !status) return fail_with(status.error(), 2);
  }
  Expected<baselines::CompareOptions> options = options_from(args);
  if (!options) return fail_with(options.error(), 2);
  return pair ? run_pair(args, *options) : run_family(args, *options);
}

}  // namespace strata::cli
