// mpirun driver: random valid plans of a model config on the cpu backend, each trained for a few
// steps, against the single-device reference interpreter on the global batch (fp32). Prints one
// line per plan and "spmd check: P passed, F failed"; exit code 0 only when all passed.
//   mpirun -np 8 spmd_check --model M.yaml --cluster C.yaml --plans N --seed S [--steps 3] [--tolerance 1e-5]
// --planned: the plan planner::plan_model finds (what `strata plan` writes) instead of random ones.
// With --write-plan FILE it only writes one random (or --planned) plan of M (model_file = M, Adam, 2 micro-batches,
// at least 2 stages) for `strata train` tests, and exits.
// --fuse 1: the executor runs the graph after fuse_for_cuda (Attention, AttentionGrad, ...) under
// fuse_plan_for_cuda's plan, on the cpu backend; the reference stays the unfused graph.
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <string>

#include "runtime/random_plan.h"
#include "strata/cluster/alpha_beta.h"
#include "strata/cluster/cluster.h"
#include "strata/planner/planner.h"
#include "strata/runtime/executor.h"
#include "strata/runtime/train.h"
#include "strata/sched/schedule.h"

namespace {

using namespace strata;

struct Options {
  std::string model, cluster, write_plan;
  int plans = 1;
  int steps = 3;
  unsigned seed = 1;
  double tolerance = 1e-5;
  bool planned = false;
  bool memory = false;
  bool fuse = false;
  bool schedule = false;  // an lr schedule: warmup over 2 steps, then a cosine decay to lr/10 at the last step
};

// The plan the planner finds for `spec` on `cluster` with `training` (micro-batches forced when > 0).
Expected<plan::Plan> planner_plan(const models::ModelSpec& spec, const cluster::ClusterSpec& cluster,
                                  const plan::Training& training, int micro_batches) {
  planner::PlannerOptions options;
  options.training = training;
  options.num_micro_batches = micro_batches;
  options.model_file = spec.file;
  // Rank 0 searches; the others read its plan (the search is deterministic but not cheap).
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  std::string text;
  if (rank == 0) {
    const cluster::AlphaBetaModel comm(cluster);
    auto result = planner::plan_model(spec, cluster, comm, options);
    text = result ? plan::plan_to_yaml(result->plan) : "error: " + result.error().message();
  }
  int length = static_cast<int>(text.size());
  MPI_Bcast(&length, 1, MPI_INT, 0, MPI_COMM_WORLD);
  text.resize(static_cast<size_t>(length));
  MPI_Bcast(text.data(), length, MPI_CHAR, 0, MPI_COMM_WORLD);
  if (text.rfind("error: ", 0) == 0) return make_error("", "planner", text.substr(7));
  return plan::parse_plan(text, "planned");
}

// Per step, the global-batch inputs: random tokens and labels, the causal mask; any other Input
// gets seeded normal values.
std::map<std::string, interp::Tensor> global_inputs(const ir::Graph& g, uint64_t seed, int64_t vocab) {
  std::mt19937_64 rng(seed);
  std::map<std::string, interp::Tensor> feeds;
  for (ir::OpId id : g.inputs()) {
    const ir::Op& op = g.op(id);
    interp::Tensor t(op.outputs[0].shape);
    if (op.name == "causal_mask") {
      t = runtime::causal_mask(op.outputs[0].shape[0]);
    } else if (!is_float(op.outputs[0].dtype)) {
      for (double& x : t.data) x = static_cast<double>(rng() % static_cast<uint64_t>(vocab));
    } else {
      std::normal_distribution<double> normal;
      for (double& x : t.data) x = normal(rng);
    }
    feeds[op.name] = t;
  }
  return feeds;
}

double relative_error(const interp::Tensor& a, const interp::Tensor& b) {
  double diff = 0, norm = 0;
  for (int64_t i = 0; i < a.numel(); ++i) {
    diff = std::max(diff, std::abs(a[i] - b[i]));
    norm = std::max(norm, std::abs(b[i]));
  }
  return diff / std::max(norm, 1e-30);
}

std::string describe(const plan::Plan& p, const ir::Graph& g) {
  std::string text = std::to_string(p.num_stages()) + " stage(s) " + p.schedule + " B=" + std::to_string(p.num_micro_batches) +
                     " " + p.training.optimizer + " meshes";
  for (const auto& s : p.stages) text += " " + std::to_string(s.logical_mesh.n0) + "x" + std::to_string(s.logical_mesh.n1);
  bool data = false, tensor = false;
  for (const auto& s : p.stages) {
    for (const auto& [name, spec] : s.strategies) {
      const ir::Op& op = g.op(*g.find(name));
      if (op.kind == ir::OpKind::Input && spec.find("->[S") != std::string::npos) data = true;
      if (op.kind == ir::OpKind::Parameter && op.role == ir::Role::forward && spec.find('S') != std::string::npos) tensor = true;
    }
  }
  text += std::string(data ? " data" : "") + (tensor ? " tensor" : "") + (p.num_stages() > 1 ? " pipeline" : "");
  int weights_elsewhere = 0;  // forward Parameters on a stage other than their first reader's
  for (ir::OpId id : g.parameters()) {
    const auto users = g.users(id);
    if (g.op(id).role != ir::Role::forward || users.empty()) continue;
    auto stage_of = [&](ir::OpId op) {
      for (int s = 0; s < p.num_stages(); ++s) {
        if (p.stages[s].strategies.count(g.op(op).name)) return s;
      }
      return -1;
    };
    if (stage_of(id) != stage_of(users.front())) ++weights_elsewhere;
  }
  if (weights_elsewhere > 0) text += " remote-weights=" + std::to_string(weights_elsewhere);
  return text;
}

// An upper bound, from the partitioned graph and the schedule alone, on the bytes the executor
// holds on this rank when it frees each value after its last read (executor.h, MemoryStats):
// parameters and optimizer state + gradients (accumulated and synced) + the forward values that
// backward reads (with their reshard copies) for every micro-batch in flight + every value and
// reshard copy of one whole phase (forward or backward of one micro-batch, nothing freed).
// Keeping every value of every in-flight micro-batch, as the executor did, exceeds it.
Expected<int64_t> memory_bound(const ir::Graph& g, const plan::Plan& p, const runtime::StageGraph& sg, int stage,
                               runtime::Backend& backend) {
  const cluster::LogicalMesh& mesh = p.stages[static_cast<size_t>(stage)].logical_mesh;
  auto bytes = [&](ir::Value v, const intra::ShardingSpec& spec) -> Expected<int64_t> {
    STRATA_ASSIGN_OR_RETURN(auto local, intra::local_shape(spec, g.type(v).shape, mesh));
    return interp::shape_numel(local) * dtype_bytes(backend.storage_dtype(g.type(v).dtype));
  };
  int64_t state = 0, grads = 0, stash = 0, phase[2] = {0, 0};
  for (ir::OpId id : sg.stage_ops[static_cast<size_t>(stage)]) {
    if (g.op(id).kind != ir::OpKind::Parameter) continue;
    STRATA_ASSIGN_OR_RETURN(int64_t b, bytes(ir::Value{id, 0}, sg.sharding[id].outputs[0]));
    state += b;
  }
  std::set<ir::Value> grad_values;
  for (const auto& [update, grad] : sg.update_grad) {
    if (sg.stage_of[update] == stage) {
      STRATA_ASSIGN_OR_RETURN(int64_t b, bytes(grad, sg.sharding[update].inputs[1]));
      grads += b;
    }
    if (!grad_values.insert(grad).second) continue;
    if (auto have = sg.spec_on(grad, stage); have) {
      STRATA_ASSIGN_OR_RETURN(int64_t b, bytes(grad, *have));
      grads += b;
    }
  }
  // Per value read on this stage: its spec here, the distinct specs its readers reshard it to,
  // and whether a backward op reads it.
  std::map<ir::Value, std::set<std::string>> specs_read;
  std::map<ir::Value, intra::ShardingSpec> spec_of;
  std::map<ir::Value, bool> read_by_backward;
  std::map<ir::Value, int> phase_of_value;  // the phase that produces or receives it
  for (ir::OpId id : sg.stage_ops[static_cast<size_t>(stage)]) {
    const ir::Op& op = g.op(id);
    if (op.role == ir::Role::update) continue;
    const int ph = op.role == ir::Role::forward ? 0 : 1;
    for (size_t k = 0; k < op.outputs.size(); ++k) {
      const ir::Value out{id, static_cast<int32_t>(k)};
      phase_of_value[out] = ph;
      if (op.kind == ir::OpKind::Parameter) continue;  // in `state`
      STRATA_ASSIGN_OR_RETURN(int64_t b, bytes(out, sg.sharding[id].outputs[k]));
      phase[ph] += b;
    }
    for (size_t k = 0; k < op.inputs.size(); ++k) {
      const ir::Value v = op.inputs[k];
      STRATA_ASSIGN_OR_RETURN(intra::ShardingSpec have, sg.spec_on(v, stage));
      spec_of[v] = have;
      if (!(have == sg.sharding[id].inputs[k]) && specs_read[v].insert(sg.sharding[id].inputs[k].to_string()).second) {
        STRATA_ASSIGN_OR_RETURN(int64_t b, bytes(v, sg.sharding[id].inputs[k]));
        phase[ph] += b;
      }
      if (op.role == ir::Role::backward) read_by_backward[v] = read_by_backward[v] || g.op(v.op).role == ir::Role::forward;
    }
  }
  for (const runtime::Transfer& t : sg.transfers) {
    if (t.to_stage != stage || t.per_step) continue;
    STRATA_ASSIGN_OR_RETURN(int64_t b, bytes(t.value, t.landing));
    phase[g.op(t.value.op).role == ir::Role::forward ? 0 : 1] += b;
  }
  for (const auto& [v, backward] : read_by_backward) {
    if (!backward) continue;
    if (g.op(v.op).kind != ir::OpKind::Parameter) {
      STRATA_ASSIGN_OR_RETURN(int64_t b, bytes(v, spec_of.at(v)));
      stash += b;
    }
    for (const std::string& text : specs_read[v]) {
      STRATA_ASSIGN_OR_RETURN(intra::ShardingSpec spec, intra::parse_sharding(text));
      STRATA_ASSIGN_OR_RETURN(int64_t b, bytes(v, spec));
      stash += b;
    }
  }
  const sched::Schedule schedule = sched::from_plan(p);
  int in_flight = 0, most = 0;
  for (const sched::Instruction& in : schedule.streams[static_cast<size_t>(stage)]) {
    if (in.op == sched::Op::forward) most = std::max(most, ++in_flight);
    if (in.op == sched::Op::backward) --in_flight;
  }
  return state + grads + most * stash + std::max(phase[0], phase[1]);
}

// Runs one plan; returns the largest relative error over losses and parameters (rank 0 checks).
Expected<double> check_plan(const models::ModelSpec& spec, const cluster::ClusterSpec& cluster,
                            const cost::ComputeModel& compute, const Options& o, std::mt19937& rng, int index, int rank) {
  const int micro_batches = 1 << std::uniform_int_distribution<int>(0, 2)(rng);
  plan::Training training;
  training.optimizer = rng() % 3 == 0 ? "sgd" : "adam";
  training.lr = 1e-2;
  // Adam divides by sqrt(v) + eps: where a gradient is zero in exact arithmetic (the attention
  // key bias: softmax ignores a shift) both runs hold rounding noise, and a tiny eps would blow
  // that noise up to ±lr. eps = 1e-3 keeps Adam's normalisation for real gradients only.
  training.eps = 1e-3;
  if (o.schedule) {
    training.warmup_steps = 2;
    training.decay = "cosine";
    training.decay_steps = std::max(o.steps, 3);
    training.min_lr = training.lr / 10;
  }
  const autodiff::TrainingOptions options = plan::autodiff_options(training);
  STRATA_ASSIGN_OR_RETURN(ir::Graph forward, models::build_forward_graph(spec, spec.global_batch / micro_batches));
  STRATA_ASSIGN_OR_RETURN(ir::Graph train, autodiff::build_training_graph(forward, options));
  STRATA_ASSIGN_OR_RETURN(plan::Plan p, o.planned ? planner_plan(spec, cluster, training, micro_batches)
                                                   : runtime::testing::random_plan(train, spec.name, spec.global_batch,
                                                                                   micro_batches, training, compute, rng));
  STRATA_RETURN_IF_ERROR(plan::validate(p));
  STRATA_RETURN_IF_ERROR(plan::validate_strategies(p, train));
  const uint64_t seed = 1000 + static_cast<uint64_t>(index);
  const double start = MPI_Wtime();
  auto backend = runtime::make_cpu_backend();
  STRATA_ASSIGN_OR_RETURN(auto exec, runtime::Executor::create(train, p, *backend, MPI_COMM_WORLD, seed,
                                                                o.fuse ? std::optional<bool>(true) : std::nullopt));
  std::string fused_line;
  if (o.fuse) {
    // The fused ops and how this plan splits them (the first Attention's strategy).
    int attentions = 0, grads = 0;
    std::string first;
    const ir::Graph& run = exec->graph();
    for (ir::OpId id = 0; id < run.num_ops(); ++id) {
      const ir::Op& op = run.op(id);
      if (op.kind == ir::OpKind::AttentionGrad) ++grads;
      if (op.kind != ir::OpKind::Attention) continue;
      if (attentions++ == 0) first = exec->stage_graph().sharding[id].to_string();
    }
    if (attentions == 0 || grads != attentions) {
      return make_error("", "fuse", "the fused graph has " + std::to_string(attentions) + " Attention and " +
                                        std::to_string(grads) + " AttentionGrad ops");
    }
    fused_line = "  fused: " + std::to_string(attentions) + " Attention + AttentionGrad, the first as " + first + "\n";
  }

  STRATA_ASSIGN_OR_RETURN(ir::Graph global_forward, models::build_forward_graph(spec, 0));
  std::vector<double> losses;
  std::vector<std::map<std::string, interp::Tensor>> feeds;
  // --memory 1: step 1 keeps every value (the old executor), the others free after last use; both
  // must match the reference, and the freeing steps must stay under memory_bound.
  int64_t kept_peak = 0, freed_peak = 0;
  exec->set_memory_tracking(o.memory);
  for (int step = 1; step <= o.steps; ++step) {
    exec->set_free_after_last_use(!(o.memory && step == 1));
    feeds.push_back(global_inputs(global_forward, seed * 31 + static_cast<uint64_t>(step), spec.vocab));
    STRATA_ASSIGN_OR_RETURN(runtime::StepResult r, exec->step(runtime::feeder_of(feeds.back()), step));
    losses.push_back(r.loss);
    int64_t& peak = step == 1 ? kept_peak : freed_peak;
    peak = std::max(peak, exec->memory_stats().peak_live_bytes);
  }
  std::string memory_line;
  if (o.memory) {
    STRATA_ASSIGN_OR_RETURN(int64_t bound, memory_bound(train, p, exec->stage_graph(), exec->stage(), *backend));
    // Every rank's figures, worst case on rank 0: the largest freed/bound and kept/bound ratios.
    double mine[3] = {static_cast<double>(freed_peak) / static_cast<double>(bound),
                      static_cast<double>(kept_peak) / static_cast<double>(bound),
                      static_cast<double>(freed_peak) / static_cast<double>(kept_peak)};
    double worst_ratio[3] = {0, 0, 0};
    MPI_Allreduce(mine, worst_ratio, 3, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
    int64_t sums[3] = {kept_peak, freed_peak, bound}, total[3] = {0, 0, 0};
    MPI_Allreduce(sums, total, 3, MPI_INT64_T, MPI_SUM, MPI_COMM_WORLD);
    char line[256];
    std::snprintf(line, sizeof(line),
                  "  memory: peak live bytes summed over ranks: kept %lld, freed %lld, bound %lld; worst rank "
                  "freed/bound %.3f, kept/bound %.3f, freed/kept %.3f\n",
                  static_cast<long long>(total[0]), static_cast<long long>(total[1]), static_cast<long long>(total[2]),
                  worst_ratio[0], worst_ratio[1], worst_ratio[2]);
    memory_line = line;
    if (worst_ratio[0] > 1.0 || worst_ratio[2] >= 1.0) {
      if (rank == 0) std::printf("%s", memory_line.c_str());
      return make_error("", "memory", "peak live bytes above the graph's bound or not below the kept peak");
    }
  }
  STRATA_ASSIGN_OR_RETURN(auto params, exec->gather_parameters());
  if (rank != 0) return 0.0;
  const double distributed_seconds = MPI_Wtime() - start;

  // The reference: the global-batch training graph on the interpreter, state carried by name.
  double worst = 0;
  std::map<std::string, interp::Tensor> state;
  for (int step = 1; step <= o.steps; ++step) {
    autodiff::TrainingOptions at_step = options;
    at_step.step = step;
    at_step.lr = plan::learning_rate(training, step);
    STRATA_ASSIGN_OR_RETURN(ir::Graph ref, autodiff::build_training_graph(global_forward, at_step));
    std::map<std::string, interp::Tensor> in = feeds[static_cast<size_t>(step - 1)];
    for (const auto& [name, t] : state) in[name] = t;
    STRATA_ASSIGN_OR_RETURN(interp::Outputs out, interp::run(ref, in, interp::Precision::f32, seed));
    const double ref_loss = out.outputs.at(0)[0];
    worst = std::max(worst, std::abs(losses[static_cast<size_t>(step - 1)] - ref_loss) / std::abs(ref_loss));
    for (ir::OpId id = 0; id < ref.num_ops(); ++id) {
      const ir::Op& op = ref.op(id);
      if (op.kind != ir::OpKind::SgdUpdate && op.kind != ir::OpKind::AdamUpdate) continue;
      state[ref.op(op.inputs[0].op).name] = out.values[id][0];
      if (op.kind == ir::OpKind::AdamUpdate) {
        state[ref.op(op.inputs[2].op).name] = out.values[id][1];
        state[ref.op(op.inputs[3].op).name] = out.values[id][2];
      }
    }
  }
  for (const auto& [name, t] : state) {
    auto it = params.find(name);
    if (it == params.end()) return make_error("", name, "the executor has no such parameter");
    const double e = relative_error(it->second, t);
    if (e > o.tolerance) std::printf("  %s: relative error %.3g\n", name.c_str(), e);
    worst = std::max(worst, e);
  }
  std::printf("plan %d: %s: losses", index, describe(p, train).c_str());
  for (double l : losses) std::printf(" %.6f", l);
  std::printf(", max relative error %.3g (%.1f s distributed, %.1f s reference)\n", worst, distributed_seconds,
              MPI_Wtime() - start - distributed_seconds);
  std::printf("%s%s", memory_line.c_str(), fused_line.c_str());
  return worst;
}

Status write_random_plan(const models::ModelSpec& spec, const cluster::ClusterSpec& cluster,
                         const cost::ComputeModel& compute, const Options& o, std::mt19937& rng) {
  plan::Training training;
  training.lr = 3e-3;
  if (o.planned) {
    STRATA_ASSIGN_OR_RETURN(plan::Plan p, planner_plan(spec, cluster, training, 0));
    return plan::write_plan(p, o.write_plan);
  }
  STRATA_ASSIGN_OR_RETURN(ir::Graph forward, models::build_forward_graph(spec, spec.global_batch / 2));
  STRATA_ASSIGN_OR_RETURN(ir::Graph train, autodiff::build_training_graph(forward, plan::autodiff_options(training)));
  for (;;) {
    STRATA_ASSIGN_OR_RETURN(plan::Plan p, runtime::testing::random_plan(train, spec.name, spec.global_batch, 2, training,
                                                                         compute, rng));
    if (p.num_stages() < 2) continue;
    p.model_file = spec.file;
    STRATA_RETURN_IF_ERROR(plan::validate(p));
    return plan::write_plan(p, o.write_plan);
  }
}

}  // namespace

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  Options o;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string key = argv[i], value = argv[i + 1];
    if (key == "--model") o.model = value;
    else if (key == "--cluster") o.cluster = value;
    else if (key == "--plans") o.plans = std::atoi(value.c_str());
    else if (key == "--steps") o.steps = std::atoi(value.c_str());
    else if (key == "--seed") o.seed = static_cast<unsigned>(std::atoi(value.c_str()));
    else if (key == "--tolerance") o.tolerance = std::atof(value.c_str());
    else if (key == "--write-plan") o.write_plan = value;
    else if (key == "--planned") o.planned = value == "1";
    else if (key == "--memory") o.memory = value == "1";
    else if (key == "--fuse") o.fuse = value == "1";
    else if (key == "--schedule") o.schedule = value == "1";
  }
  auto spec = models::load_model_config(o.model);
  auto cluster = cluster::load_cluster(o.cluster);
  if (!spec || !cluster) {
    if (rank == 0) std::fprintf(stderr, "spmd check: %s\n", (!spec ? spec.error() : cluster.error()).message().c_str());
    MPI_Finalize();
    return 2;
  }
  const cost::ComputeModel compute(*cluster);
  std::mt19937 rng(o.seed);
  if (!o.write_plan.empty()) {
    const Status written = write_random_plan(*spec, *cluster, compute, o, rng);
    if (!written.is_ok()) std::fprintf(stderr, "spmd check: %s\n", written.message().c_str());
    MPI_Finalize();
    return written.is_ok() ? 0 : 1;
  }
  int passed = 0, failed = 0;
  for (int i = 0; i < o.plans; ++i) {
    auto worst = check_plan(*spec, *cluster, compute, o, rng, i, rank);
    const bool ok = worst && *worst <= o.tolerance;
    if (!worst && rank == 0) std::printf("plan %d: error: %s\n", i, worst.error().message().c_str());
    ok ? ++passed : ++failed;
    std::fflush(stdout);
  }
  int all_failed = 0;
  MPI_Allreduce(&failed, &all_failed, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  if (rank == 0) std::printf("spmd check: %d passed, %d failed\n", o.plans - all_failed, all_failed);
  MPI_Finalize();
  return all_failed == 0 ? 0 : 1;
}
