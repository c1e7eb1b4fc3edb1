// `strata plan --intra-only`: the training graph of one micro-batch sharded over the whole
// cluster as a single logical mesh by intra::solve_stage; writes a one-stage plan::Plan with
// every op's strategy and the predicted costs, and prints the ILP's size and solve time.
#include "cli/plan_intra.h"

#include <cstdio>
#include <filesystem>
#include <optional>
#include <string>

#include "cli/common.h"
#include "strata/autodiff/autodiff.h"
#include "strata/cluster/alpha_beta.h"
#include "strata/core/args.h"
#include "strata/core/json.h"
#include "strata/core/units.h"
#include "strata/intra/stage_solver.h"
#include "strata/models/models.h"
#include "strata/plan/plan.h"
#include "strata/planner/planner.h"
#include "strata/profile/comm_model.h"

namespace strata::cli {
namespace {

int fail_with(const Error& error, int code) { return report_failure("plan", error, code); }

Expected<cluster::LogicalMesh> parse_mesh(const std::string& text, int devices) {
  const size_t x = text.find('x');
  auto bad = [&](const std::string& why) { return make_error("", "--mesh", "'" + text + "': " + why); };
  if (x == std::string::npos) return bad("expected N0xN1, e.g. 2x4");
  cluster::LogicalMesh mesh;
  try {
    size_t used0 = 0, used1 = 0;
    mesh.n0 = std::stoi(text.substr(0, x), &used0);
    mesh.n1 = std::stoi(text.substr(x + 1), &used1);
    if (used0 != x || used1 != text.size() - x - 1) return bad("expected N0xN1, e.g. 2x4");
  } catch (const std::exception&) {
    return bad("expected N0xN1, e.g. 2x4");
  }
  if (mesh.n0 < 1 || mesh.n1 < 1) return bad("both sizes must be at least 1");
  if (mesh.num_devices() != devices) {
    return bad("has " + std::to_string(mesh.num_devices()) + " devices, the cluster " + std::to_string(devices));
  }
  return mesh;
}

struct Best {
  intra::StageSolution solution;
  cluster::LogicalMesh mesh;
  int64_t micro_batch = 0;
  int num_micro_batches = 1;
  double step_seconds = 0;
  ir::Graph graph;
};

double step_seconds(const intra::StageSolution& s, int num_micro_batches) {
  return num_micro_batches * (s.forward_seconds + s.backward_seconds) + s.update_seconds + s.grad_sync_seconds;
}

}  // namespace

int run_plan_intra_only(int argc, char** argv) {
  ArgParser args("plan", "Plan with intra-op sharding only: one stage over the whole cluster (--intra-only).");
  args.option("model", "model config (YAML)", "M.yaml")
      .option("cluster", "cluster config (YAML)", "C.yaml")
      .option("mesh", "logical mesh of the whole cluster; default: the best of every shape", "N0xN1")
      .option("micro-batch", "samples per micro-batch; default: the largest that fits memory", "N")
      .option("profile", "measured profile (strata profile) for collectives and GEMMs", "P.h5")
      .option("time-limit", "ILP time limit per solve, seconds (default 60)", "S")
      .option("out", "write the plan here", "plan.yaml")
      .flag("intra-only", "intra-op sharding only (this planner)")
      .flag("json", "print JSON instead of text")
      .required("model")
      .required("cluster")
      .required("out");
  if (Status status = args.parse(argc, argv); !status) return fail_with(status.error(), kExitBadInput);
  if (args.help_requested()) {
    std::printf("%s", args.help_text().c_str());
    return 0;
  }
  for (const char* flag : {"model", "cluster", "profile"}) {
    if (!args.has(flag)) continue;
    if (Status status = check_input_file(args.get(flag), flag); !status) return fail_with(status.error(), kExitBadInput);
  }
  if (Status status = check_output_file(args.get("out"), "out"); !status) return fail_with(status.error(), kExitBadInput);
  auto spec = models::load_model_config(args.get("model"));
  if (!spec) return fail_with(spec.error(), kExitBadInput);
  auto cluster = cluster::load_cluster(args.get("cluster"));
  if (!cluster) return fail_with(cluster.error(), kExitBadInput);
  auto time_limit = args.get_double("time-limit", 60);
  if (!time_limit) return fail_with(time_limit.error(), kExitBadInput);
  auto micro_batch_flag = args.get_int("micro-batch", 0);
  if (!micro_batch_flag) return fail_with(micro_batch_flag.error(), kExitBadInput);
  const int64_t global_batch = spec->global_batch;
  if (*micro_batch_flag < 0 || (*micro_batch_flag > 0 && global_batch % *micro_batch_flag != 0)) {
    return fail_with(make_error("", "--micro-batch", "must divide the global batch " + std::to_string(global_batch)),
                     kExitBadInput);
  }

  const cluster::Submesh submesh{cluster->num_nodes, cluster->gpus_per_node};
  std::vector<cluster::LogicalMesh> meshes;
  if (args.has("mesh")) {
    auto mesh = parse_mesh(args.get("mesh"), submesh.num_devices());
    if (!mesh) return fail_with(mesh.error(), kExitBadInput);
    meshes.push_back(*mesh);
  } else {
    meshes = cluster::logical_meshes(submesh);
  }

  std::unique_ptr<cluster::CommModel> comm = std::make_unique<cluster::AlphaBetaModel>(*cluster);
  cost::ComputeModel compute(*cluster);
  if (args.has("profile")) {
    auto profile = profile::Store::read(args.get("profile"), cluster->name);
    if (!profile) return fail_with(profile.error(), kExitBadInput);
    compute.use_profile(*profile);
    comm = std::make_unique<profile::ProfileCommModel>(*profile, *cluster);
  }

  // Micro-batch sizes to try: the one asked for, else the global batch halved until a plan fits.
  std::vector<int64_t> micro_batches;
  if (*micro_batch_flag > 0) {
    micro_batches.push_back(*micro_batch_flag);
  } else {
    for (int64_t b = global_batch; b >= 1; b /= 2) {
      if (global_batch % b == 0) micro_batches.push_back(b);
      if (b % 2 != 0) break;
    }
  }
  autodiff::TrainingOptions options;
  options.optimizer = autodiff::Optimizer::adam;
  const plan::Training training;  // the plan's defaults are the graph's optimizer settings
  options.lr = training.lr;
  options.beta1 = training.beta1;
  options.beta2 = training.beta2;
  options.eps = training.eps;
  options.weight_decay = training.weight_decay;

  std::optional<Best> best;
  std::string last_reason;
  int num_variables = 0, num_constraints = 0;
  double solve_seconds = 0;
  for (int64_t micro_batch : micro_batches) {
    auto forward = models::build_forward_graph(*spec, micro_batch);
    if (!forward) return fail_with(forward.error(), kExitBadInput);
    auto graph = autodiff::build_training_graph(*forward, options);
    if (!graph) return fail_with(graph.error().in_file(args.get("model")), kExitBadInput);
    const int num_micro_batches = static_cast<int>(global_batch / micro_batch);
    for (const cluster::LogicalMesh& mesh : meshes) {
      intra::StageProblem problem;
      problem.graph = &*graph;
      problem.submesh = submesh;
      problem.mesh = mesh;
      problem.cluster = &*cluster;
      problem.comm = comm.get();
      problem.compute = &compute;
      problem.memory_budget_bytes = cluster->gpu_memory_bytes;
      problem.time_limit_seconds = *time_limit;
      problem.num_micro_batches = num_micro_batches;
      intra::ilp::LpSolveSolver solver;
      auto solution = intra::solve_stage(problem, solver);
      if (!solution) return fail_with(solution.error().in_file(args.get("model")), kExitFailure);
      num_variables += solution->num_variables;
      num_constraints += solution->num_constraints;
      solve_seconds += solution->solve_seconds;
      if (!solution->feasible) {
        last_reason = "micro-batch " + std::to_string(micro_batch) + " on " + std::to_string(mesh.n0) + "x" +
                      std::to_string(mesh.n1) + ": " + solution->reason;
        continue;
      }
      const double step = step_seconds(*solution, num_micro_batches);
      if (!best || step < best->step_seconds) {
        best = Best{*solution, mesh, micro_batch, num_micro_batches, step, *graph};
      }
    }
    if (best) break;  // the largest micro-batch that fits: fewer, larger GEMMs
  }
  if (!best) return fail_with(make_error(args.get("model"), "memory", "no plan fits: " + last_reason), kExitFailure);

  plan::Plan result;
  result.model = spec->name;
  result.model_file = std::filesystem::absolute(args.get("model")).lexically_normal().string();
  result.cluster = plan::ClusterShape{cluster->name, cluster->num_nodes, cluster->gpus_per_node};
  result.global_batch = global_batch;
  result.num_micro_batches = best->num_micro_batches;
  result.schedule = "1f1b";
  result.training = training;
  result.cross_stage_link = cluster->intra_node;
  plan::Stage stage;
  stage.first_layer = 0;
  stage.last_layer = static_cast<int>(std::max<int64_t>(spec->layers, 1)) - 1;
  stage.submesh = submesh;
  stage.logical_mesh = best->mesh;
  const intra::StageSolution& s = best->solution;
  planner::apply_solution(s, &stage);
  result.stages.push_back(stage);
  result.predicted.step_seconds = best->step_seconds;
  result.predicted.peak_memory_bytes = s.weights_bytes + s.optimizer_state_bytes + s.activation_bytes;
  if (Status status = plan::validate(result, &*cluster); !status) return fail_with(status.error(), kExitFailure);
  if (Status status = plan::validate_strategies(result, best->graph); !status) return fail_with(status.error(), kExitFailure);
  if (Status status = plan::write_plan(result, args.get("out")); !status) {
    return fail_with(output_error(status.error(), "out"), kExitBadInput);
  }
  // What was written reads back as a valid plan (the check `strata simulate` and `train` make).
  if (auto reread = plan::read_plan(args.get("out")); !reread) return fail_with(reread.error(), kExitFailure);

  const std::string mesh_text = std::to_string(best->mesh.n0) + "x" + std::to_string(best->mesh.n1);
  if (args.has("json")) {
    Json out = Json::object();
    out.set("plan", args.get("out"));
    out.set("mesh", mesh_text);
    out.set("micro_batch", best->micro_batch);
    out.set("num_micro_batches", best->num_micro_batches);
    out.set("ops", static_cast<int64_t>(s.shardings.size()));
    out.set("ilp_variables", num_variables);
    out.set("ilp_constraints", num_constraints);
    out.set("solve_seconds", solve_seconds);
    out.set("step_seconds", best->step_seconds);
    out.set("peak_memory_bytes", result.predicted.peak_memory_bytes);
    std::printf("%s\n", out.dump(2).c_str());
  } else {
    std::printf("intra-only plan of %s on %s: mesh %s, micro-batch %lld x %d\n", spec->name.c_str(),
                cluster->name.c_str(), mesh_text.c_str(), static_cast<long long>(best->micro_batch),
                best->num_micro_batches);
    std::printf("  ILP: %d variables, %d constraints over all solves, %s solving\n", num_variables, num_constraints,
                format_seconds(solve_seconds).c_str());
    std::printf("  per micro-batch: forward %s, backward %s; per step: update %s, gradient sync %s\n",
                format_seconds(s.forward_seconds).c_str(), format_seconds(s.backward_seconds).c_str(),
                format_seconds(s.update_seconds).c_str(), format_seconds(s.grad_sync_seconds).c_str());
    std::printf("  predicted step %s, memory per device %s (weights %s, optimizer %s, activations %s)\n",
                format_seconds(best->step_seconds).c_str(),
                format_bytes(static_cast<double>(result.predicted.peak_memory_bytes)).c_str(),
                format_bytes(static_cast<double>(s.weights_bytes)).c_str(),
                format_bytes(static_cast<double>(s.optimizer_state_bytes)).c_str(),
                format_bytes(static_cast<double>(s.activation_bytes)).c_str());
    std::printf("  wrote %s\n", args.get("out").c_str());
  }
  return 0;
}

}  // namespace strata::cli
