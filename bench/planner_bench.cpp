// planner_bench: Strata's plan (planner::plan_model) against the best Megatron-style
// data × tensor × pipeline grid with uniform layers (planner::best_grid_plan), both under the same
// cost model (intra-op ILP on the roofline + alpha-beta cluster model, simulated 1F1B step), with
// the search time of each, and the re-plan time from the on-disk stage cache.
//
//   planner_bench [--suite gpt|moe|all] [--only NAME] [--max-devices N] [--layers L]
//                 [--micro-batches B] [--threads T] [--time-limit S] [--cache DIR] [--no-grid]
//                 [--compose auto|on|off]
//
// Run from the repository root (it reads configs/). One row per (model, cluster).
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "strata/cluster/alpha_beta.h"
#include "strata/core/args.h"
#include "strata/core/units.h"
#include "strata/planner/planner.h"

namespace {

using namespace strata;

struct Case {
  const char* suite;
  const char* model;
  const char* cluster;
};

// The Alpa paper's weak-scaling suites (GPT: Table 4; MoE: Table 5) on p3.16xlarge nodes.
const Case kCases[] = {
    {"gpt", "gpt-350m", "aws-p3-1node-1gpu"}, {"gpt", "gpt-1.3b", "aws-p3-1node-4gpu"},
    {"gpt", "gpt-2.6b", "aws-p3-1node"},      {"gpt", "gpt-6.7b", "aws-p3-2node"},
    {"gpt", "gpt-15b", "aws-p3-4node"},       {"gpt", "gpt-39b", "aws-p3-8node"},
    {"moe", "moe-380m", "aws-p3-1node-1gpu"}, {"moe", "moe-690m", "aws-p3-1node-4gpu"},
    {"moe", "moe-1.3b", "aws-p3-1node"},      {"moe", "moe-2.4b", "aws-p3-2node"},
    {"moe", "moe-10b", "aws-p3-4node"},       {"moe", "moe-27b", "aws-p3-8node"},
};

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace

int main(int argc, char** argv) {
  ArgParser args("planner_bench", "Strata plan vs the best Megatron-style grid plan, with search times.");
  args.option("suite", "gpt, moe or all (default all)", "S")
      .option("only", "only this model", "NAME")
      .option("max-devices", "skip clusters with more devices", "N")
      .option("layers", "layers to cluster into (default: the planner's)", "L")
      .option("micro-batches", "force B for both", "B")
      .option("threads", "threads solving stages (default 2)", "T")
      .option("time-limit", "ILP time limit per stage (default 30)", "S")
      .option("compose", "stage costs composed from per-block solutions: auto (default), on, off", "MODE")
      .option("cache", "stage cache directory (default /tmp/strata-planner-bench-cache, emptied first)", "DIR")
      .flag("no-grid", "skip the grid search");
  if (Status status = args.parse(argc, argv); !status) {
    std::fprintf(stderr, "planner_bench: %s\n", status.message().c_str());
    return 2;
  }
  if (args.help_requested()) {
    std::printf("%s", args.help_text().c_str());
    return 0;
  }
  const std::string suite = args.get("suite", "all");
  auto max_devices = args.get_int("max-devices", 1 << 30);
  auto layers = args.get_int("layers", 0);
  auto micro_batches = args.get_int("micro-batches", 0);
  auto threads = args.get_int("threads", 2);
  auto time_limit = args.get_double("time-limit", 30);
  for (const Status& s : {max_devices.status(), layers.status(), micro_batches.status(), threads.status(),
                          time_limit.status()}) {
    if (!s.is_ok()) {
      std::fprintf(stderr, "planner_bench: %s\n", s.message().c_str());
      return 2;
    }
  }
  const std::string cache = args.get("cache", "/tmp/strata-planner-bench-cache");

  std::printf("# planner_bench: Strata (stage DP over the intra-op ILP) vs the best dp x tp x pp grid (uniform layers,\n");
  std::printf("# parameters replicated over dp), one cost model, simulated 1F1B step; throughput = training FLOPs/step/device\n");
  std::printf("# layers %s, B %s, ILP time limit %.0f s, %lld thread(s)\n",
              *layers > 0 ? std::to_string(*layers).c_str() : "auto",
              *micro_batches > 0 ? std::to_string(*micro_batches).c_str() : "searched", *time_limit,
              static_cast<long long>(*threads));
  std::printf("%-9s %-18s %4s %3s | %-22s %9s %8s %9s %9s | %-16s %9s %8s %9s | %6s\n", "model", "cluster", "dev", "L",
              "strata stages/B", "step_s", "TFLOP/s", "search_s", "replan_s", "grid dp,tp,pp,B", "step_s", "TFLOP/s",
              "search_s", "ratio");
  for (const Case& c : kCases) {
    if (suite != "all" && suite != c.suite) continue;
    if (args.has("only") && args.get("only") != c.model) continue;
    auto spec = models::load_model_config(std::string("configs/models/") + c.model + ".yaml");
    auto cluster = cluster::load_cluster(std::string("configs/clusters/") + c.cluster + ".yaml");
    if (!spec || !cluster) {
      std::fprintf(stderr, "planner_bench: %s\n", (!spec ? spec.error() : cluster.error()).message().c_str());
      return 2;
    }
    if (cluster->num_devices() > *max_devices) continue;
    cluster::AlphaBetaModel comm(*cluster);
    planner::PlannerOptions options;
    options.num_layers = static_cast<int>(*layers);
    options.num_micro_batches = static_cast<int>(*micro_batches);
    options.num_threads = static_cast<int>(*threads);
    options.ilp_time_limit_seconds = *time_limit;
    const std::string compose = args.get("compose", "auto");
    if (compose != "auto" && compose != "on" && compose != "off") {
      std::fprintf(stderr, "planner_bench: --compose: must be auto, on or off, got '%s'\n", compose.c_str());
      return 2;
    }
    options.layer_composition = compose == "on"    ? planner::PlannerOptions::Composition::on
                                : compose == "off" ? planner::PlannerOptions::Composition::off
                                                   : planner::PlannerOptions::Composition::automatic;
    options.cache_dir = cache + "/" + c.model + "-" + c.cluster;
    std::filesystem::remove_all(options.cache_dir);

    auto start = std::chrono::steady_clock::now();
    auto planned = planner::plan_model(*spec, *cluster, comm, options);
    const double search = seconds_since(start);
    start = std::chrono::steady_clock::now();
    auto replanned = planner::plan_model(*spec, *cluster, comm, options);
    const double replan = seconds_since(start);
    std::string strata_cell = "-", grid_cell = "-";
    double strata_step = 0, strata_tflops = 0, grid_step = 0, grid_tflops = 0, grid_search = 0;
    double strata_objective = 0, grid_objective = 0;
    if (planned) {
      strata_cell = std::to_string(planned->plan.num_stages()) + " stages, B=" +
                    std::to_string(planned->plan.num_micro_batches);
      strata_step = planned->step_seconds;
      strata_tflops = planned->tflops_per_device;
      strata_objective = planned->dp_objective_seconds;
    } else {
      strata_cell = "failed";
      std::fprintf(stderr, "%s on %s: %s\n", c.model, c.cluster, planned.error().message().c_str());
    }
    if (!args.has("no-grid")) {
      auto grid = planner::best_grid_plan(*spec, *cluster, comm, options);
      if (grid && grid->best >= 0) {
        const planner::GridResult& best = grid->points[grid->best];
        grid_cell = std::to_string(best.point.dp) + "," + std::to_string(best.point.tp) + "," +
                    std::to_string(best.point.pp) + "," + std::to_string(best.point.num_micro_batches);
        grid_step = best.result.step_seconds;
        grid_tflops = best.result.tflops_per_device;
        grid_objective = best.result.dp_objective_seconds;
        grid_search = grid->search_seconds;
      } else {
        grid_cell = grid ? "none fits" : "failed";
        if (!grid) std::fprintf(stderr, "%s grid: %s\n", c.model, grid.error().message().c_str());
      }
    }
    std::printf("%-9s %-18s %4d %3d | %-22s %9.4f %8.3f %9.1f %9.2f | %-16s %9.4f %8.3f %9.1f | %6.3f\n", c.model,
                c.cluster, cluster->num_devices(), planned ? planned->stats.num_layers : 0, strata_cell.c_str(),
                strata_step, strata_tflops, search, replanned ? replan : -1.0, grid_cell.c_str(), grid_step,
                grid_tflops, grid_search, grid_step > 0 && strata_step > 0 ? grid_step / strata_step : 0.0);
    std::printf("#   DP objective (sum t + (B-1) max t): strata %.4f s, grid %.4f s\n", strata_objective, grid_objective);
    if (planned) {
      const planner::PlanStats& st = planned->stats;
      std::printf("#   strata search: %lld candidate stages, %lld stage problems solved (%lld stage ILP runs), %lld chunk "
                  "ILPs run, %lld chunk ILPs reused from identical blocks\n",
                  static_cast<long long>(st.candidates), static_cast<long long>(st.problems_solved),
                  static_cast<long long>(st.ilp_solves), static_cast<long long>(st.chunk_ilps),
                  static_cast<long long>(st.chunk_hits));
      if (st.composed) {
        std::printf("#   composed stage costs: %lld block problems, %lld stages priced with pinned shardings, %lld exact "
                    "fallbacks\n",
                    static_cast<long long>(st.layer_solves), static_cast<long long>(st.evaluations),
                    static_cast<long long>(st.exact_fallbacks));
      }
    }
    std::fflush(stdout);
  }
  return 0;
}
