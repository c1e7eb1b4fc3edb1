// A plan Strata finds, trained by the runtime executor: plans a model on a cluster (the full
// planner, lp_solve ILP per stage; or with --grid DPxTPxPP the Megatron-style grid plan of that
// shape), then runs a few steps on each backend named (one rank per device) and, with two
// backends, checks that every step's loss agrees within --tolerance. Prints the chosen plan's
// shape (per stage: mesh and how many ops shard on each mesh axis), per-step losses and step
// times, and model TFLOP/s. Rank 0 plans; the other ranks read its plan.
//   mpirun -np 1 gpt_gpu_plan_check --model configs/models/gpt-tiny.yaml
//       --cluster configs/clusters/h200-1gpu.yaml --backends cuda,cpu --steps 3 [--plan-out plan.yaml]
// --collectives mpi: the cuda backend's host-staged MPI collectives, so that the N ranks of a
// multi-device plan may share one GPU (bench/gpu_multirank_check.sh).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "strata/cluster/alpha_beta.h"
#include "strata/planner/planner.h"
#include "strata/runtime/cuda_backend.h"
#include "strata/runtime/executor.h"
#include "strata/runtime/train.h"

namespace {

using namespace strata;

struct Options {
  std::string model, cluster, plan_out, grid, collectives;
  int micro_batches = 0;  // 0: the planner's choice
  std::vector<std::string> backends{"cuda", "cpu"};
  int steps = 3;
  int64_t global_batch = 0;  // 0: the model config's
  double tolerance = 2e-2;
  double peak_tflops = 989.0;
};

Expected<Options> parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; i += 2) {
    const std::string key = argv[i];
    if (i + 1 >= argc) return make_error("", key, "needs a value");
    const std::string value = argv[i + 1];
    try {
      if (key == "--model") o.model = value;
      else if (key == "--cluster") o.cluster = value;
      else if (key == "--plan-out") o.plan_out = value;
      else if (key == "--grid") o.grid = value;
      else if (key == "--micro-batches") o.micro_batches = std::stoi(value);
      else if (key == "--collectives") {
        auto c = runtime::parse_collectives(value);
        if (!c) return c.error();
        o.collectives = value;
      }
      else if (key == "--steps") o.steps = std::stoi(value);
      else if (key == "--global-batch") o.global_batch = std::stoll(value);
      else if (key == "--tolerance") o.tolerance = std::stod(value);
      else if (key == "--backends") {
        o.backends.clear();
        std::stringstream ss(value);
        for (std::string b; std::getline(ss, b, ',');) o.backends.push_back(b);
      } else return make_error("", key, "unknown flag");
    } catch (const std::exception&) {
      return make_error("", key, "'" + value + "' is not a number");
    }
  }
  if (o.model.empty() || o.cluster.empty()) return make_error("", "--model", "--model and --cluster are required");
  if (o.steps <= 0 || o.backends.empty()) return make_error("", "--steps", "needs at least one step and backend");
  return o;
}

// "DPxTPxPP" -> the grid point (micro-batches set by the caller).
Expected<planner::GridPoint> parse_grid(const std::string& text) {
  planner::GridPoint point;
  if (std::sscanf(text.c_str(), "%dx%dx%d", &point.dp, &point.tp, &point.pp) != 3 || point.dp < 1 || point.tp < 1 ||
      point.pp < 1) {
    return make_error("", "--grid", "'" + text + "' is not DPxTPxPP (three positive integers)");
  }
  return point;
}

// Per stage: its layers, logical mesh, and how many ops shard a tensor on mesh axis 0 / axis 1 or
// produce partial sums (so that a "tensor parallel" plan that replicated everything shows).
void print_shape(const plan::Plan& p) {
  for (int i = 0; i < p.num_stages(); ++i) {
    const plan::Stage& s = p.stages[static_cast<size_t>(i)];
    int axis0 = 0, axis1 = 0, partial = 0;
    for (const auto& [op, spec] : s.strategies) {
      if (spec.find("S0") != std::string::npos) ++axis0;
      if (spec.find("S1") != std::string::npos || spec.find("S01") != std::string::npos) ++axis1;
      if (spec.find('P') != std::string::npos) ++partial;
    }
    std::printf("stage %d: layers %d-%d, mesh %dx%d at node %d gpu %d, %zu ops: %d shard on axis 0, %d on axis 1, "
                "%d partial sums\n",
                i, s.first_layer, s.last_layer, s.logical_mesh.n0, s.logical_mesh.n1, s.first_node, s.first_gpu,
                s.strategies.size(), axis0, axis1, partial);
  }
}

struct Run {
  std::vector<double> losses, seconds;
};

int run(int argc, char** argv) {
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  auto fail = [&](const std::string& what) {
    if (rank == 0) std::fprintf(stderr, "gpt_gpu_plan_check: %s\n", what.c_str());
    return 1;
  };
  auto options = parse(argc, argv);
  if (!options) return fail(options.error().message());
  const Options& o = *options;
  auto spec = models::load_model_config(o.model);
  if (!spec) return fail(spec.error().message());
  if (o.global_batch > 0) spec->global_batch = o.global_batch;
  auto cluster = cluster::load_cluster(o.cluster);
  if (!cluster) return fail(cluster.error().message());

  planner::PlannerOptions popts;
  popts.training.optimizer = "adam";
  popts.training.lr = 1e-3;
  popts.training.eps = 1e-6;
  popts.model_file = o.model;
  popts.num_micro_batches = o.micro_batches;
  const cluster::AlphaBetaModel comm(*cluster);
  // Rank 0 plans (the ILP is time-limited, so ranks planning alone could disagree); the others
  // parse its plan's YAML.
  std::string yaml;
  int planned_ok = 0;
  if (rank == 0) {
    Expected<planner::PlanResult> planned = make_error("", "", "");
    if (o.grid.empty()) {
      planned = planner::plan_model(*spec, *cluster, comm, popts);
    } else if (auto point = parse_grid(o.grid); !point) {
      planned = point.error();
    } else {
      point->num_micro_batches = o.micro_batches > 0 ? o.micro_batches : 1;
      auto grid = planner::grid_plan(*spec, *cluster, comm, *point, popts);
      if (!grid) planned = grid.error();
      else if (!grid->feasible) planned = make_error("", "--grid", o.grid + " is infeasible: " + grid->reason);
      else planned = grid->result;
    }
    if (!planned) {
      std::fprintf(stderr, "gpt_gpu_plan_check: %s\n", planned.error().message().c_str());
    } else {
      const plan::Plan& p = planned->plan;
      std::printf("plan: %s, %d stage(s), %d micro-batch(es), schedule %s, predicted step %.2f ms, search %.1f s\n",
                  o.grid.empty() ? "planner" : ("grid dp x tp x pp = " + o.grid).c_str(), p.num_stages(),
                  p.num_micro_batches, p.schedule.c_str(), planned->step_seconds * 1e3, planned->stats.search_seconds);
      print_shape(p);
      yaml = plan::plan_to_yaml(p);
      planned_ok = 1;
      if (!o.plan_out.empty()) {
        if (Status s = plan::write_plan(p, o.plan_out); !s.is_ok()) {
          std::fprintf(stderr, "gpt_gpu_plan_check: %s\n", s.message().c_str());
          planned_ok = 0;
        }
      }
    }
  }
  MPI_Bcast(&planned_ok, 1, MPI_INT, 0, MPI_COMM_WORLD);
  if (planned_ok == 0) return 1;
  int64_t yaml_bytes = static_cast<int64_t>(yaml.size());
  MPI_Bcast(&yaml_bytes, 1, MPI_INT64_T, 0, MPI_COMM_WORLD);
  yaml.resize(static_cast<size_t>(yaml_bytes));
  MPI_Bcast(yaml.data(), static_cast<int>(yaml_bytes), MPI_CHAR, 0, MPI_COMM_WORLD);
  auto parsed_plan = plan::parse_plan(yaml, "<rank 0's plan>");
  if (!parsed_plan) return fail(parsed_plan.error().message());
  const plan::Plan& p = *parsed_plan;
  int world = 1;
  MPI_Comm_size(MPI_COMM_WORLD, &world);
  if (world != p.cluster.num_devices()) {
    return fail("the plan has " + std::to_string(p.cluster.num_devices()) + " devices: run under mpirun -np " +
                std::to_string(p.cluster.num_devices()) + ", not " + std::to_string(world));
  }
  if (!o.collectives.empty()) setenv("STRATA_CUDA_COLLECTIVES", o.collectives.c_str(), 1);
  const int64_t micro = spec->global_batch / p.num_micro_batches;
  auto forward = models::build_forward_graph(*spec, micro);
  if (!forward) return fail(forward.error().message());
  auto train = autodiff::build_training_graph(*forward, plan::autodiff_options(p.training));
  if (!train) return fail(train.error().message());
  auto global = models::build_forward_graph(*spec, 0);
  if (!global) return fail(global.error().message());
  // The same global-batch inputs for every backend: random tokens and labels, the causal mask.
  std::vector<std::map<std::string, interp::Tensor>> inputs;
  std::mt19937_64 rng(42);
  for (int step = 0; step < o.steps; ++step) {
    std::map<std::string, interp::Tensor> feeds;
    for (ir::OpId id : global->inputs()) {
      const ir::Op& op = global->op(id);
      interp::Tensor t(op.outputs[0].shape);
      if (op.name == "causal_mask") {
        t = runtime::causal_mask(op.outputs[0].shape[0]);
      } else {
        for (double& x : t.data) x = static_cast<double>(rng() % static_cast<uint64_t>(spec->vocab));
      }
      feeds[op.name] = std::move(t);
    }
    inputs.push_back(std::move(feeds));
  }
  const double params = static_cast<double>(global->parameter_count());
  const double tokens = static_cast<double>(spec->global_batch * spec->seq_len);
  const double model_flops = 6.0 * params * tokens + 12.0 * spec->layers * spec->hidden * spec->seq_len * tokens;

  std::vector<Run> runs;
  for (const std::string& name : o.backends) {
    int local_rank = rank;
    if (const char* env = std::getenv("OMPI_COMM_WORLD_LOCAL_RANK")) local_rank = std::atoi(env);
    auto backend = runtime::make_backend(name, local_rank);
    if (!backend) return fail(backend.error().message());
    auto exec = runtime::Executor::create(*train, p, **backend, MPI_COMM_WORLD, 7);
    if (!exec) return fail(name + ": " + exec.error().message());
    if (rank == 0) {
      // What this backend's executor runs: on cuda, the graph after fuse_for_cuda.
      const ir::Graph& g = (*exec)->graph();
      std::printf("%s executor graph: %d ops, %zu Attention\n", name.c_str(), g.num_ops(),
                  g.ops_of_kind(ir::OpKind::Attention).size());
    }
    Run r;
    for (int step = 1; step <= o.steps; ++step) {
      auto result = (*exec)->step(runtime::feeder_of(inputs[static_cast<size_t>(step - 1)]), step);
      if (!result) return fail(name + ": step " + std::to_string(step) + ": " + result.error().message());
      r.losses.push_back(result->loss);
      r.seconds.push_back(result->seconds);
      if (rank == 0) {
        std::printf("%s step %d: loss %.6f, %.1f ms, %.1f model TFLOP/s per device\n", name.c_str(), step,
                    result->loss, result->seconds * 1e3,
                    model_flops / result->seconds / 1e12 / (cluster->num_nodes * cluster->gpus_per_node));
        std::fflush(stdout);
      }
    }
    runs.push_back(std::move(r));
  }
  if (runs.size() < 2) return 0;
  double worst = 0;
  for (int step = 0; step < o.steps; ++step) {
    const double a = runs[0].losses[static_cast<size_t>(step)], b = runs[1].losses[static_cast<size_t>(step)];
    worst = std::max(worst, std::abs(a - b) / std::abs(b));
  }
  if (rank == 0) {
    std::printf("plan check: %s vs %s on %d rank(s)%s, largest relative loss difference over %d steps %.3g "
                "(tolerance %.3g): %s\n",
                o.backends[0].c_str(), o.backends[1].c_str(), world,
                o.collectives.empty() ? "" : (", " + o.collectives + " collectives").c_str(), o.steps, worst, o.tolerance,
                worst <= o.tolerance ? "PASS" : "FAIL");
  }
  return worst <= o.tolerance ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  const int rc = run(argc, argv);
  MPI_Finalize();
  return rc;
}
