// The planning context: options, training graphs, layers, the cached stage oracle, lower bounds
// and the plan writer.
#include "planner/context.h"

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <system_error>

#include "strata/autodiff/autodiff.h"
#include "strata/sim/simulator.h"

namespace strata::planner {
namespace {

constexpr const char* kCacheVersion = "strata planner stage cache v3 (block-aligned chunks, dominance pruning, low-degree elimination)";

bool is_power_of_two(int64_t x) { return x > 0 && (x & (x - 1)) == 0; }

Status check_options(const PlannerOptions& o) {
  auto bad = [](const std::string& field, const std::string& why) { return make_error("", field, why); };
  if (o.num_threads < 1) return bad("threads", "must be at least 1, got " + std::to_string(o.num_threads));
  if (o.num_stages < 0) return bad("stages", "must be at least 1 (or 0 to search), got " + std::to_string(o.num_stages));
  if (o.num_micro_batches < 0) {
    return bad("micro_batches", "must be at least 1 (or 0 to search), got " + std::to_string(o.num_micro_batches));
  }
  if (o.num_layers < 0) return bad("layers", "must be at least 1 (or 0 for automatic), got " + std::to_string(o.num_layers));
  if (!(o.ilp_time_limit_seconds > 0)) return bad("ilp_time_limit_seconds", "must be positive");
  if (o.memory_budget_bytes < 0) return bad("memory_budget_bytes", "must not be negative");
  if (o.training.optimizer != "adam" && o.training.optimizer != "sgd") {
    return bad("training.optimizer", "must be adam or sgd, got " + o.training.optimizer);
  }
  return Status::ok();
}

}  // namespace

std::vector<int> default_micro_batch_counts(int64_t global_batch) {
  std::vector<int> counts;
  for (int b = 1; b <= 128 && b <= global_batch; b *= 2) {
    if (global_batch % b == 0) counts.push_back(b);
  }
  if (counts.size() > 4) counts.erase(counts.begin(), counts.end() - 4);
  return counts;
}

// Transformers: the largest divisor of the block count (of block pairs for MoE, whose blocks
// alternate dense and expert FFNs) that is at most 16, so that every layer holds the same blocks
// and identical layers share cached stage solutions. Others: 16. Never more than the ops to cluster.
int default_num_layers(const models::ModelSpec& spec, int clusterable_ops) {
  int layers = 16;
  if (spec.family == models::Family::gpt || spec.family == models::Family::moe) {
    const int64_t unit = spec.family == models::Family::moe && spec.layers % 2 == 0 ? 2 : 1;
    const int64_t blocks = spec.layers / unit;
    layers = 1;
    for (int64_t d = 1; d <= std::min<int64_t>(blocks, 16); ++d) {
      if (blocks % d == 0) layers = static_cast<int>(d);
    }
  }
  return std::max(1, std::min(layers, clusterable_ops));
}

std::optional<cluster::Submesh> submesh_for(int devices, const cluster::ClusterSpec& c) {
  if (devices >= 1 && devices <= c.gpus_per_node && is_power_of_two(devices)) return cluster::Submesh{1, devices};
  if (devices > c.gpus_per_node && devices % c.gpus_per_node == 0 && devices / c.gpus_per_node <= c.num_nodes) {
    return cluster::Submesh{devices / c.gpus_per_node, c.gpus_per_node};
  }
  return std::nullopt;
}

Context::Context(const models::ModelSpec& spec, const cluster::ClusterSpec& cluster, const cluster::CommModel& comm,
                 const PlannerOptions& options)
    : spec_(spec), cluster_(cluster), comm_(comm), options_(options), cache_(options.cache_dir) {}

Expected<std::unique_ptr<Context>> Context::create(const models::ModelSpec& spec, const cluster::ClusterSpec& cluster,
                                                   const cluster::CommModel& comm, const PlannerOptions& options) {
  STRATA_RETURN_IF_ERROR(check_options(options));
  if (!is_power_of_two(cluster.gpus_per_node)) {
    return make_error(cluster.source_file, "gpus_per_node",
                      std::to_string(cluster.gpus_per_node) + " is not a power of two: stage submeshes cannot tile a node");
  }
  std::unique_ptr<Context> context(new Context(spec, cluster, comm, options));
  Context& c = *context;
  c.budget_ = options.memory_budget_bytes > 0 ? options.memory_budget_bytes : cluster.gpu_memory_bytes;
  if (c.budget_ <= 0) return make_error(cluster.source_file, "gpu_memory_gbytes", "must be positive to plan");
  if (options.compute != nullptr) {
    c.compute_ = options.compute;
  } else {
    c.own_compute_ = std::make_unique<cost::ComputeModel>(cluster);
    c.compute_ = c.own_compute_.get();
  }
  const int64_t global = models::effective_batch(spec, 0);
  if (global <= 0) {  // a generic graph: its batch is fixed by its ops
    if (options.num_micro_batches > 1) {
      return make_error("", "micro_batches", "a family-graph model has a fixed batch: only 1 micro-batch");
    }
    c.counts_ = {1};
  } else if (options.num_micro_batches > 0) {
    c.counts_ = {options.num_micro_batches};
  } else if (!options.micro_batch_candidates.empty()) {
    c.counts_ = options.micro_batch_candidates;
  } else {
    c.counts_ = default_micro_batch_counts(global);
  }
  for (int count : c.counts_) {
    if (count < 1 || (global > 0 && global % count != 0)) {
      return make_error("", "micro_batches", std::to_string(count) + " does not divide the global batch " +
                                                 std::to_string(global) + " of " + spec.name);
    }
  }
  if (!options.cache_dir.empty()) {
    std::error_code ec;
    std::filesystem::create_directories(options.cache_dir, ec);
    if (ec || !std::filesystem::is_directory(options.cache_dir)) {
      return make_error(options.cache_dir, "cache", "cannot create the cache directory: " + ec.message());
    }
  }
  auto start = std::chrono::steady_clock::now();
  STRATA_RETURN_IF_ERROR(c.build(spec));
  c.graph_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return context;
}

Status Context::build(const models::ModelSpec& spec) {
  const int64_t global = models::effective_batch(spec, 0);
  for (int count : counts_) {
    BatchGraph bg;
    bg.num_micro_batches = count;
    bg.micro_batch = global > 0 ? global / count : 0;
    STRATA_ASSIGN_OR_RETURN(ir::Graph forward, models::build_forward_graph(spec, bg.micro_batch));
    auto training = autodiff::build_training_graph(forward, plan::autodiff_options(options_.training));
    if (!training.is_ok()) return training.error().under("training").in_file(spec.file);
    bg.graph = std::move(training).value();
    bg.training_flops = bg.graph.total_flops();
    graphs_.push_back(std::move(bg));
  }
  // One layer assignment for every B: the builders give the same ops whatever the micro-batch.
  const ir::Graph& first = graphs_[0].graph;
  const int clusterable = static_cast<int>(clusterable_ops(first).size());
  const int num_layers = options_.num_layers > 0 ? options_.num_layers : default_num_layers(spec, clusterable);
  // Bytes across a cut are priced as the FLOPs the device could do while they cross the
  // stage-to-stage link, so cuts fall where a stage boundary is cheap (between blocks).
  const cluster::Link& link = cluster_.num_nodes > 1 ? cluster_.inter_node : cluster_.intra_node;
  const DType dtype = first.op(first.parameters().empty() ? 0 : first.parameters()[0]).outputs[0].dtype;
  const double comm_weight = link.bandwidth_bytes_per_second > 0 ? cluster_.peak_flops(dtype) / link.bandwidth_bytes_per_second : 0;
  auto layers = assign_layers(first, num_layers, comm_weight);
  if (!layers.is_ok()) return layers.error().in_file(spec.file);
  layers_ = std::move(layers).value();
  for (BatchGraph& bg : graphs_) {
    if (bg.graph.num_ops() != first.num_ops()) {
      return make_error(spec.file, "model", "the builder gave different op counts for different micro-batch sizes");
    }
    bg.signature = std::make_unique<GraphSignature>(bg.graph);
    bg.layer_seconds.assign(num_layers, 0.0);
    bg.layer_state_bytes.assign(num_layers, 0);
    for (ir::OpId id = 0; id < bg.graph.num_ops(); ++id) {
      const ir::Op& op = bg.graph.op(id);
      const int layer = layers_.layer_of[id];
      if (op.kind == ir::OpKind::Parameter) bg.layer_state_bytes[layer] += op.outputs[0].bytes();
      if (op.role == ir::Role::update || ir::op_info(op.kind).is_source) continue;
      std::vector<ir::TensorType> inputs;
      for (const ir::Value& in : op.inputs) inputs.push_back(bg.graph.type(in));
      bg.layer_seconds[layer] += compute_->op_seconds(op.kind, inputs, op.outputs, op.attrs);
    }
  }
  Hasher env;
  env.text(kCacheVersion).i64(cluster_.gpus_per_node).i64(cluster_.gpu_memory_bytes);
  for (double x : {cluster_.peak_flops_f32, cluster_.peak_flops_f16, cluster_.peak_flops_bf16,
                   cluster_.memory_bandwidth_bytes_per_second, cluster_.intra_node.bandwidth_bytes_per_second,
                   cluster_.intra_node.latency_seconds, cluster_.inter_node.bandwidth_bytes_per_second,
                   cluster_.inter_node.latency_seconds, compute_->options().contraction_efficiency,
                   compute_->options().other_efficiency, compute_->options().bandwidth_efficiency,
                   options_.ilp_time_limit_seconds}) {
    env.f64(x);
  }
  env.text(comm_.describe()).i64(compute_->has_gemm_table() ? 1 : 0).i64(budget_);
  env.text(options_.solve ? "custom solver" : "lp_solve");
  environment_ = env.hex();
  return Status::ok();
}

int Context::index_of(int num_micro_batches) const {
  auto it = std::find(counts_.begin(), counts_.end(), num_micro_batches);
  return it == counts_.end() ? -1 : static_cast<int>(it - counts_.begin());
}

const std::vector<ir::OpId>& Context::ops_of(int first, int last) {
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = ops_.find({first, last});
  if (it == ops_.end()) it = ops_.emplace(std::make_pair(first, last), stage_ops(layers_, first, last)).first;
  return it->second;
}

std::string Context::structure(int b, int first, int last) {
  const std::vector<ir::OpId>& ops = ops_of(first, last);
  {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = structures_.find({b, first, last});
    if (it != structures_.end()) return it->second;
  }
  std::string hash = graphs_[b].signature->stage_hash(ops);
  std::lock_guard<std::mutex> lock(mutex_);
  structures_.emplace(std::make_tuple(b, first, last), hash);
  return hash;
}

Expected<intra::StageSolution> Context::solve(int b, int first, int last, const cluster::Submesh& submesh,
                                              const cluster::LogicalMesh& mesh, const StrategyFilter& filter) {
  const std::vector<ir::OpId>& ops = ops_of(first, last);
  const ir::Graph& graph = graphs_[b].graph;
  const std::string key = Hasher()
                              .text(environment_)
                              .text(structure(b, first, last))
                              .i64(submesh.rows)
                              .i64(submesh.cols)
                              .i64(mesh.n0)
                              .i64(mesh.n1)
                              .text(filter.tag)
                              .hex();
  auto compute = [&]() -> Expected<CachedSolution> {
    ++problems_solved;
    intra::StageProblem problem;
    problem.graph = &graph;
    problem.ops = ops;
    problem.submesh = submesh;
    problem.mesh = mesh;
    problem.cluster = &cluster_;
    problem.comm = &comm_;
    problem.compute = compute_;
    problem.time_limit_seconds = options_.ilp_time_limit_seconds;
    problem.allow = filter.allow;
    problem.chunk_cache = &chunk_cache_;
    auto run = [&](int64_t budget) -> Expected<intra::StageSolution> {
      problem.memory_budget_bytes = budget;
      ++ilp_solves;
      if (options_.solve) return options_.solve(problem);
      intra::ilp::LpSolveSolver solver;
      auto solved = intra::solve_stage(problem, solver);
      if (solved.is_ok() && solved->num_ilps > 1) {
        chunk_ilps += solved->ilps_solved;
        chunk_hits += solved->chunk_cache_hits;
      }
      return solved;
    };
    // The fastest sharding first, without the memory row that makes the ILP much harder; only
    // when that one does not fit, again under the budget.
    Expected<intra::StageSolution> solution = run(0);
    if (solution.is_ok() && solution->feasible &&
        solution->weights_bytes + solution->optimizer_state_bytes + solution->activation_bytes > budget_) {
      solution = run(budget_);
    }
    if (!solution.is_ok()) {
      // No assignment within the time limit (or a solver failure): this candidate is unusable;
      // the reason stays with it. The time limit is part of the cache key.
      intra::StageSolution unusable;
      unusable.reason = solution.error().message();
      return to_cached(unusable, graph, ops);
    }
    return to_cached(*solution, graph, ops);
  };
  StageCache::Source source = StageCache::Source::solved;
  STRATA_ASSIGN_OR_RETURN(CachedSolution cached, cache_.get(key, compute, &source));
  if (source == StageCache::Source::memory) ++memory_hits;
  if (source == StageCache::Source::disk) ++disk_hits;
  return from_cached(cached, graph, ops);
}

double Context::seconds_lower_bound(int b, int first, int last, int devices) const {
  double total = 0;
  for (int l = first; l <= last; ++l) total += graphs_[b].layer_seconds[l];
  return total / devices;
}

int64_t Context::memory_lower_bound(int b, int first, int last, int devices) const {
  int64_t total = 0;
  for (int l = first; l <= last; ++l) total += graphs_[b].layer_state_bytes[l];
  // 1% below the perfect split: rounding of each tensor's share must not make it exceed the truth.
  return static_cast<int64_t>(static_cast<double>(total) / devices * 0.99);
}

inter::StageCost Context::stage_cost(const intra::StageSolution& s, int num_micro_batches) {
  inter::StageCost cost;
  cost.feasible = s.feasible;
  if (!s.feasible) return cost;
  cost.seconds = s.forward_seconds + s.backward_seconds + (s.update_seconds + s.grad_sync_seconds) / num_micro_batches;
  cost.weights_bytes = s.weights_bytes + s.optimizer_state_bytes;
  cost.activation_bytes = s.activation_bytes;
  return cost;
}

void Context::report_progress(int64_t total) {
  std::lock_guard<std::mutex> lock(progress_mutex_);
  ++progress_done_;
  if (options_.progress) options_.progress({std::min(progress_done_, total), total});
}

Expected<PlanResult> Context::make_plan(int b, const std::vector<ChosenStage>& stages,
                                        const std::vector<intra::StageSolution>& solutions) const {
  STRATA_CHECK(stages.size() == solutions.size() && !stages.empty(), "make_plan: one solution per stage");
  const BatchGraph& bg = graphs_[b];
  const ir::Graph& graph = bg.graph;
  plan::Plan plan;
  plan.model = spec_.name;
  plan.model_file = options_.model_file.empty() ? spec_.file : options_.model_file;
  plan.cluster = {cluster_.name, cluster_.num_nodes, cluster_.gpus_per_node};
  plan.global_batch = std::max<int64_t>(1, models::effective_batch(spec_, 0));
  plan.num_micro_batches = bg.num_micro_batches;
  plan.schedule = "1f1b";
  plan.training = options_.training;
  // Stage of every op, from its layer.
  const int count = static_cast<int>(stages.size());
  std::vector<int> stage_of_layer(layers_.num_layers, -1);
  for (int s = 0; s < count; ++s) {
    for (int l = stages[s].first_layer; l <= stages[s].last_layer; ++l) stage_of_layer[l] = s;
  }
  double sum = 0, most = 0;
  for (int s = 0; s < count; ++s) {
    const intra::StageSolution& sol = solutions[s];
    if (!sol.feasible) return make_error("", "stages[" + std::to_string(s) + "]", "infeasible: " + sol.reason);
    plan::Stage st;
    st.first_layer = stages[s].first_layer;
    st.last_layer = stages[s].last_layer;
    st.submesh = stages[s].submesh;
    st.first_node = stages[s].placement.first_node;
    st.first_gpu = stages[s].placement.first_gpu;
    st.logical_mesh = stages[s].mesh;
    apply_solution(sol, &st);
    plan.stages.push_back(std::move(st));
    const double t = stage_cost(sol, bg.num_micro_batches).seconds;
    sum += t;
    most = std::max(most, t);
  }
  // Activations (every forward value but parameters) crossing each boundary, per micro-batch.
  for (ir::OpId id = 0; id < graph.num_ops(); ++id) {
    const ir::Op& op = graph.op(id);
    if (op.role != ir::Role::forward || op.kind == ir::OpKind::Parameter) continue;
    const int from = stage_of_layer[layers_.layer_of[id]];
    for (int32_t out = 0; out < static_cast<int32_t>(op.outputs.size()); ++out) {
      int to = from;
      for (const ir::Use& use : graph.uses(ir::Value{id, out})) {
        if (graph.op(use.user).role == ir::Role::forward) to = std::max(to, stage_of_layer[layers_.layer_of[use.user]]);
      }
      for (int s = from; s < to; ++s) plan.stages[s].send_bytes += op.outputs[out].bytes();
    }
  }
  bool crosses_nodes = false;
  for (int s = 0; s + 1 < count; ++s) crosses_nodes = crosses_nodes || !plan::boundary_is_intra_node(plan, s);
  plan.cross_stage_link = crosses_nodes ? cluster_.inter_node : cluster_.intra_node;
  if (Status status = plan::validate(plan, &cluster_); !status.is_ok()) {
    return status.error().under("planner produced an invalid plan");
  }
  STRATA_RETURN_IF_ERROR(plan::validate_strategies(plan, graph));
  const sim::Result simulated = sim::simulate(plan);
  plan.predicted.step_seconds = simulated.step_seconds;
  plan.predicted.peak_memory_bytes = simulated.peak_memory_bytes;

  PlanResult result;
  result.plan = std::move(plan);
  result.dp_objective_seconds = sum + (bg.num_micro_batches - 1) * most;
  result.step_seconds = simulated.step_seconds;
  result.training_flops = bg.training_flops * bg.num_micro_batches;
  if (simulated.step_seconds > 0) {
    result.tflops_per_device = result.training_flops / simulated.step_seconds / cluster_.num_devices() / 1e12;
  }
  return result;
}

void apply_solution(const intra::StageSolution& solution, plan::Stage* stage) {
  stage->forward_seconds = solution.forward_seconds;
  stage->backward_seconds = solution.backward_seconds;
  stage->update_seconds = solution.update_seconds;
  stage->grad_sync_seconds = solution.grad_sync_seconds;
  stage->weights_bytes = solution.weights_bytes;
  stage->optimizer_state_bytes = solution.optimizer_state_bytes;
  stage->activation_bytes_per_micro_batch = solution.activation_bytes;
  stage->strategies.clear();
  for (const auto& [name, sharding] : solution.shardings) stage->strategies[name] = sharding.to_string();
}

}  // namespace strata::planner
