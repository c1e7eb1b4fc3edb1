// Weak scaling of the Alpa paper (Table 4 pairs: GPT, MoE, Wide-ResNet on 1-64 V100s of AWS p3) in
// simulation: Strata and every baseline of `strata compare` under one cost model, with the
// lp_solve ILP per stage. Prints one table; optionally writes one SVG plot per family.
//   weak_scaling_bench [--families gpt,moe,wresnet] [--min-gpus N] [--max-gpus N] [--methods LIST]
//                      [--ilp-time-limit S] [--threads N] [--layers N] [--micro-batches LIST]
//                      [--configs DIR] [--plot-prefix PATH] [--json-prefix PATH]
//   weak_scaling_bench --plot-from a.json,b.json,... --plot-prefix PATH   (merge saved runs, plan nothing)
// Figures: simulated step and TFLOP/s per GPU (training FLOPs / step / GPUs), peak memory per
// GPU, and the wall seconds each method's search took on this machine.
#include <sys/utsname.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "strata/baselines/weak_scaling.h"
#include "strata/core/args.h"
#include "strata/core/units.h"

namespace {

using namespace strata;

std::string cpu_model() {
  std::ifstream in("/proc/cpuinfo");
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("model name", 0) == 0) return line.substr(line.find(':') + 2);
  }
  return "unknown CPU";
}

std::vector<std::string> split(const std::string& list) {
  std::vector<std::string> out;
  std::stringstream in(list);
  for (std::string item; std::getline(in, item, ',');) out.push_back(item);
  return out;
}

int fail(const Error& error) {
  std::fprintf(stderr, "weak_scaling_bench: %s\n", error.message().c_str());
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  ArgParser args("weak_scaling_bench", "Weak scaling of the paper's model families, every method, in simulation.");
  args.option("families", "comma-separated: gpt, moe, wresnet", "LIST")
      .option("max-gpus", "only the points with at most this many GPUs", "N")
      .option("min-gpus", "only the points with at least this many GPUs (to resume a stopped run)", "N")
      .option("methods", "comma-separated method names (strata compare --help)", "LIST")
      .option("ilp-time-limit", "seconds per stage ILP", "S")
      .option("threads", "threads solving candidate stages", "N")
      .option("layers", "layers to cluster each model into (default: the planner's choice)", "N")
      .option("micro-batches", "comma-separated micro-batch counts to search (per model those dividing its batch)", "LIST")
      .option("configs", "the configs/ directory", "DIR")
      .option("plot-prefix", "write <prefix><family>.svg per family", "PATH")
      .option("json-prefix", "write <prefix><family>.json per family (every point's results, for --plot-from)", "PATH")
      .option("plot-from", "plan nothing: draw <plot-prefix><family>.svg from these --json-prefix files, merged", "LIST");
  if (Status status = args.parse(argc, argv); !status) return fail(status.error());
  if (args.help_requested()) {
    std::printf("%s", args.help_text().c_str());
    return 0;
  }
  if (args.has("plot-from")) {
    if (!args.has("plot-prefix")) return fail(make_error("", "--plot-prefix", "required with --plot-from"));
    auto runs = baselines::merge_weak_scaling_files(split(args.get("plot-from")));
    if (!runs) return fail(runs.error());
    for (const baselines::SavedRun& run : *runs) {
      const std::string path = args.get("plot-prefix") + run.family + ".svg";
      if (Status s = baselines::write_plot(baselines::weak_scaling_plot(run), path); !s) return fail(s.error());
      size_t methods = 0;
      for (const baselines::SavedPoint& p : run.points) methods += p.methods.size();
      std::printf("%s: %zu points, %zu method results\n", path.c_str(), run.points.size(), methods);
    }
    return 0;
  }
  baselines::CompareOptions options;
  if (args.has("methods")) {
    options.methods.clear();
    for (const std::string& name : split(args.get("methods"))) {
      auto m = baselines::parse_method(name);
      if (!m) return fail(m.error());
      options.methods.push_back(*m);
    }
  }
  auto max_gpus = args.get_int("max-gpus", 0);
  auto min_gpus = args.get_int("min-gpus", 1);
  auto limit = args.get_double("ilp-time-limit", 30);
  auto threads = args.get_int("threads", 1);
  auto layers = args.get_int("layers", 0);
  for (const Status& s : {max_gpus.status(), min_gpus.status(), limit.status(), threads.status(), layers.status()}) {
    if (!s.is_ok()) return fail(s.error());
  }
  options.planner.ilp_time_limit_seconds = *limit;
  options.planner.num_threads = static_cast<int>(*threads);
  options.planner.num_layers = static_cast<int>(*layers);
  if (args.has("micro-batches")) {
    for (const std::string& b : split(args.get("micro-batches"))) {
      char* end = nullptr;
      const long count = std::strtol(b.c_str(), &end, 10);
      if (b.empty() || *end != '\0' || count < 1 || count > (1 << 20)) {
        return fail(make_error("", "--micro-batches", "'" + b + "' is not a positive micro-batch count"));
      }
      options.planner.micro_batch_candidates.push_back(static_cast<int>(count));
    }
  }
  if (args.has("plot-prefix")) {
    if (Status s = baselines::check_plot_path(args.get("plot-prefix") + "gpt.svg"); !s) return fail(s.error());
  }
  // Every family's points are checked before any is planned (a micro-batch list of which nothing
  // divides a family's batch fails now, not after hours of planning the others).
  const std::vector<std::string> families = split(args.get("families", "gpt,moe,wresnet"));
  std::vector<std::vector<baselines::ScalingPoint>> family_points;
  for (const std::string& family : families) {
    auto points = baselines::paper_weak_scaling(family, args.get("configs", "configs"), static_cast<int>(*max_gpus));
    if (!points) return fail(points.error());
    std::erase_if(*points, [&](const baselines::ScalingPoint& p) { return p.gpus < *min_gpus; });
    if (points->empty()) {
      const std::string most = *max_gpus > 0 ? " and at most " + std::to_string(*max_gpus) : "";
      return fail(make_error("", "--min-gpus", "no point of the " + family + " family has at least " +
                                                   std::to_string(*min_gpus) + most + " GPUs"));
    }
    if (Status s = baselines::check_weak_scaling(*points, options); !s) return fail(s.error());
    family_points.push_back(std::move(points).value());
  }

  utsname host{};
  uname(&host);
  std::printf("# weak_scaling_bench: simulated weak scaling, one cost model (analytic alpha-beta + roofline)\n");
  std::printf("# machine: %s, %u hardware threads, %s %s; ILP lp_solve, %g s per stage; %d thread(s)\n",
              cpu_model().c_str(), std::thread::hardware_concurrency(), host.sysname, host.release, *limit,
              options.planner.num_threads);
  std::printf("%-8s %4s %-13s %-14s %6s %-14s %5s %11s %11s %10s %9s\n", "family", "gpus", "model", "method", "stages",
              "meshes", "B", "step_s", "TFLOP/s/GPU", "mem/GPU", "search_s");
  std::fflush(stdout);
  for (size_t f = 0; f < families.size(); ++f) {
    const std::string& family = families[f];
    // The plot is rewritten after every point, so a run stopped part way keeps the points it has.
    std::vector<baselines::ScalingResult> done;
    Status plotted = Status::ok();
    Status saved = Status::ok();
    const std::string plot_path = args.get("plot-prefix", "") + family + ".svg";
    const std::string json_path = args.get("json-prefix", "") + family + ".json";
    auto results = baselines::run_weak_scaling(family_points[f], options, [&](const baselines::ScalingResult& r) {
      for (const baselines::MethodResult& m : r.results) {
        std::string meshes = "-", stages = "-", b = "-", step = m.out_of_memory ? "OOM" : "infeasible";
        std::string tflops = "-", memory = "-";
        if (m.feasible) {
          const plan::Plan& p = m.result.plan;
          meshes.clear();
          for (const plan::Stage& s : p.stages) {
            meshes += (meshes.empty() ? "" : ",") + std::to_string(s.logical_mesh.n0) + "x" + std::to_string(s.logical_mesh.n1);
          }
          if (meshes.size() > 14) meshes = std::to_string(p.num_stages()) + " meshes";
          stages = std::to_string(p.num_stages());
          b = std::to_string(p.num_micro_batches);
          char buffer[64];
          std::snprintf(buffer, sizeof buffer, "%.4f", m.result.step_seconds);
          step = buffer;
          std::snprintf(buffer, sizeof buffer, "%.2f", m.result.tflops_per_device);
          tflops = buffer;
          memory = format_bytes(double(p.predicted.peak_memory_bytes));
        }
        std::printf("%-8s %4d %-13s %-14s %6s %-14s %5s %11s %11s %10s %9.1f\n", family.c_str(), r.point.gpus,
                    r.model.c_str(), baselines::method_name(m.method), stages.c_str(), meshes.c_str(), b.c_str(),
                    step.c_str(), tflops.c_str(), memory.c_str(), m.search_seconds);
      }
      std::fflush(stdout);
      done.push_back(r);
      if (args.has("plot-prefix") && plotted) plotted = baselines::write_plot(baselines::weak_scaling_plot(family, done), plot_path);
      if (args.has("json-prefix") && saved) {
        saved = write_file_atomically(json_path, baselines::weak_scaling_json(family, done).dump(2) + "\n");
      }
    });
    if (!results) return fail(results.error());
    if (!plotted) return fail(plotted.error());
    if (!saved) return fail(saved.error());
  }
  return 0;
}
