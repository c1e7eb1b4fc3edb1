// The planning context: options, training graphs, layers, the cached stage oracle, lower bounds
// and the plan writer.
#include "planner/context.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <system_error>
#include <unordered_map>

#include "strata/autodiff/autodiff.h"
#include "strata/inter/submesh.h"
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

int64_t dp_candidates(int num_layers, const cluster::ClusterSpec& cluster) {
  const int devices = cluster.num_devices();
  int64_t total = 0;
  for (const cluster::Submesh& shape : inter::stage_submesh_shapes(cluster.num_nodes, cluster.gpus_per_node)) {
    const int64_t meshes = static_cast<int64_t>(inter::stage_logical_meshes(shape).size());
    const int64_t ranges = shape.num_devices() == devices ? 1 : int64_t{num_layers} * (num_layers + 1) / 2 - 1;
    total += meshes * ranges;
  }
  return total;
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
  using Composition = PlannerOptions::Composition;
  const int64_t candidates = static_cast<int64_t>(c.counts_.size()) * dp_candidates(c.num_layers(), cluster);
  c.composing_ = options.layer_composition == Composition::on ||
                 (options.layer_composition == Composition::automatic && candidates >= kComposeCandidates);
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

std::string Context::stage_key(int b, int first, int last, const cluster::Submesh& submesh,
                               const cluster::LogicalMesh& mesh, const std::string& tag) {
  return Hasher()
      .text(environment_)
      .text(structure(b, first, last))
      .i64(submesh.rows)
      .i64(submesh.cols)
      .i64(mesh.n0)
      .i64(mesh.n1)
      .text(tag)
      .hex();
}

StageSolveFn Context::solver() {
  if (options_.solve) return options_.solve;
  return [this](const intra::StageProblem& problem) -> Expected<intra::StageSolution> {
    intra::ilp::LpSolveSolver lp;
    auto solved = intra::solve_stage(problem, lp);
    if (solved.is_ok() && solved->num_ilps > 1) {
      chunk_ilps += solved->ilps_solved;
      chunk_hits += solved->chunk_cache_hits;
    }
    return solved;
  };
}

Expected<CachedSolution> Context::cached_solve(int b, int first, int last, const cluster::Submesh& submesh,
                                               const cluster::LogicalMesh& mesh, const StrategyFilter& filter,
                                               int64_t budget) {
  const std::vector<ir::OpId>& ops = ops_of(first, last);
  const ir::Graph& graph = graphs_[b].graph;
  std::string key = stage_key(b, first, last, submesh, mesh, filter.tag);
  if (budget >= 0) key = Hasher().text(key).text("budget").i64(budget).hex();
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
    const StageSolveFn solve = solver();
    auto run = [&](int64_t bytes) -> Expected<intra::StageSolution> {
      problem.memory_budget_bytes = bytes;
      ++ilp_solves;
      return solve(problem);
    };
    Expected<intra::StageSolution> solution = run(std::max<int64_t>(budget, 0));
    // Automatic: the fastest sharding first, without the memory row that makes the ILP much
    // harder; only when that one does not fit, again under the budget.
    if (budget < 0 && solution.is_ok() && solution->feasible &&
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
  return cached;
}

Expected<intra::StageSolution> Context::solve(int b, int first, int last, const cluster::Submesh& submesh,
                                              const cluster::LogicalMesh& mesh, const StrategyFilter& filter) {
  STRATA_ASSIGN_OR_RETURN(CachedSolution cached, cached_solve(b, first, last, submesh, mesh, filter, -1));
  return from_cached(cached, graphs_[b].graph, ops_of(first, last));
}

namespace {

// A layer's share of the device budget, rounded down onto a grid of ratio 2^(1/16) (at most 4.4%
// lost) so that layers of similar shares ask identical, cached problems. Never 0 ("no budget").
int64_t share_budget(double bytes) {
  if (bytes < 2) return 1;
  return std::max<int64_t>(1, static_cast<int64_t>(std::exp2(std::floor(16 * std::log2(bytes)) / 16)));
}

}  // namespace

Expected<Context::LayerChoice> Context::layer(int b, int l, const cluster::Submesh& submesh,
                                              const cluster::LogicalMesh& mesh, const StrategyFilter& filter,
                                              int64_t budget) {
  const auto key = std::make_tuple(b, l, budget, MeshKey{submesh.rows, submesh.cols, mesh.n0, mesh.n1, filter.tag});
  {
    std::lock_guard<std::mutex> lock(compose_mutex_);
    auto it = layers_memo_.find(key);
    if (it != layers_memo_.end()) return it->second;
  }
  ++layer_solves;
  STRATA_ASSIGN_OR_RETURN(CachedSolution cached, cached_solve(b, l, l, submesh, mesh, filter, budget));
  LayerChoice choice;
  choice.cost = stage_cost(cached.solution, counts_[b]);
  choice.solution = std::make_shared<const CachedSolution>(std::move(cached));
  std::lock_guard<std::mutex> lock(compose_mutex_);
  return layers_memo_.emplace(key, std::move(choice)).first->second;
}

Expected<CachedSolution> Context::pinned(int b, int first, int last, const cluster::Submesh& submesh,
                                         const cluster::LogicalMesh& mesh, const StrategyFilter& filter,
                                         const std::vector<int64_t>& budgets) {
  const ir::Graph& graph = graphs_[b].graph;
  std::vector<const std::string*> pin(graph.num_ops(), nullptr);
  std::vector<LayerChoice> choices;
  for (int l = first; l <= last; ++l) {
    STRATA_ASSIGN_OR_RETURN(LayerChoice choice, layer(b, l, submesh, mesh, filter, budgets[l - first]));
    const std::vector<ir::OpId>& ops = ops_of(l, l);
    const std::vector<std::string>& shardings = choice.solution->shardings;
    if (shardings.size() != ops.size()) {
      return make_error("", "cache", "a cached layer solution has " + std::to_string(shardings.size()) +
                                         " shardings for " + std::to_string(ops.size()) + " ops");
    }
    for (size_t i = 0; i < ops.size(); ++i) pin[ops[i]] = &shardings[i];
    choices.push_back(std::move(choice));
  }
  const std::vector<ir::OpId>& ops = ops_of(first, last);
  Hasher key;
  key.text(stage_key(b, first, last, submesh, mesh, "pinned"));
  for (ir::OpId id : ops) key.text(*pin[id]);
  auto compute = [&]() -> Expected<CachedSolution> {
    ++evaluations;
    std::unordered_map<std::string, const std::string*> by_name;
    for (ir::OpId id : ops) by_name.emplace(graph.op(id).name, pin[id]);
    intra::StageProblem problem;
    problem.graph = &graph;
    problem.ops = ops;
    problem.submesh = submesh;
    problem.mesh = mesh;
    problem.cluster = &cluster_;
    problem.comm = &comm_;
    problem.compute = compute_;
    problem.time_limit_seconds = options_.ilp_time_limit_seconds;
    problem.chunk_cache = &chunk_cache_;
    problem.allow = [&by_name](const ir::Op& op, const intra::Strategy& strategy) {
      auto it = by_name.find(op.name);
      return it != by_name.end() && strategy.sharding.to_string() == *it->second;
    };
    Expected<intra::StageSolution> solution = solver()(problem);
    if (!solution.is_ok()) {
      intra::StageSolution unusable;
      unusable.reason = solution.error().message();
      return to_cached(unusable, graph, ops);
    }
    return to_cached(*solution, graph, ops);
  };
  StageCache::Source source = StageCache::Source::solved;
  return cache_.get(key.hex(), compute, &source);
}

Expected<Context::Composed> Context::compose(int b, int first, int last, const cluster::Submesh& submesh,
                                             const cluster::LogicalMesh& mesh, const StrategyFilter& filter) {
  const MeshKey mesh_key{submesh.rows, submesh.cols, mesh.n0, mesh.n1, filter.tag};
  const auto key = std::make_tuple(b, first, last, mesh_key);
  {
    std::lock_guard<std::mutex> lock(compose_mutex_);
    auto it = composed_memo_.find(key);
    if (it != composed_memo_.end()) return it->second;
  }
  const int n = last - first + 1;
  Composed out;
  std::vector<int64_t> budgets(n, 0);
  std::vector<LayerChoice> choices;
  // Every layer's solution under `budgets`; false (with out.reason) when one has none.
  auto collect = [&]() -> Expected<bool> {
    choices.clear();
    for (int i = 0; i < n; ++i) {
      STRATA_ASSIGN_OR_RETURN(LayerChoice choice, layer(b, first + i, submesh, mesh, filter, budgets[i]));
      if (!choice.cost.feasible) {
        out.reason = "layer " + std::to_string(first + i) + ": " + choice.solution->solution.reason;
        return false;
      }
      choices.push_back(std::move(choice));
    }
    return true;
  };
  STRATA_ASSIGN_OR_RETURN(bool ok, collect());
  if (ok) {
    int64_t total = 0;
    for (const LayerChoice& c : choices) total += c.cost.weights_bytes + c.cost.activation_bytes;
    if (total > budget_) {
      // Each layer again under its share of the device, in proportion to what it needed.
      for (int i = 0; i < n; ++i) {
        const double need = double(choices[i].cost.weights_bytes + choices[i].cost.activation_bytes);
        budgets[i] = share_budget(double(budget_) * need / double(total));
      }
      STRATA_ASSIGN_OR_RETURN(ok, collect());
    }
  }
  if (ok) {
    out.feasible = true;
    out.budgets = budgets;
    out.cost.feasible = true;
    for (const LayerChoice& c : choices) {
      out.cost.seconds += c.cost.seconds;
      out.cost.weights_bytes += c.cost.weights_bytes;
      out.cost.activation_bytes += c.cost.activation_bytes;
    }
    // Between adjacent layers: the resharding of the values one passes to the other, and the
    // forward values of one that the other's backward keeps: the pair priced with both pinned,
    // less each alone.
    for (int i = 0; i + 1 < n; ++i) {
      const auto pair_key = std::make_tuple(b, first + i, budgets[i], budgets[i + 1], mesh_key);
      std::optional<inter::StageCost> extra;
      {
        std::lock_guard<std::mutex> lock(compose_mutex_);
        auto it = boundary_memo_.find(pair_key);
        if (it != boundary_memo_.end()) extra = it->second;
      }
      if (!extra) {
        STRATA_ASSIGN_OR_RETURN(CachedSolution pair, pinned(b, first + i, first + i + 1, submesh, mesh, filter,
                                                            {budgets[i], budgets[i + 1]}));
        const inter::StageCost both = stage_cost(pair.solution, counts_[b]);
        const inter::StageCost &one = choices[i].cost, &two = choices[i + 1].cost;
        extra = inter::StageCost{};
        if (both.feasible) {
          extra->seconds = std::max(0.0, both.seconds - one.seconds - two.seconds);
          extra->weights_bytes = std::max<int64_t>(0, both.weights_bytes - one.weights_bytes - two.weights_bytes);
          extra->activation_bytes =
              std::max<int64_t>(0, both.activation_bytes - one.activation_bytes - two.activation_bytes);
        }
        std::lock_guard<std::mutex> lock(compose_mutex_);
        boundary_memo_.emplace(pair_key, *extra);
      }
      out.cost.seconds += extra->seconds;
      out.cost.weights_bytes += extra->weights_bytes;
      out.cost.activation_bytes += extra->activation_bytes;
    }
  }
  std::lock_guard<std::mutex> lock(compose_mutex_);
  return composed_memo_.emplace(key, std::move(out)).first->second;
}

Expected<Context::Estimate> Context::stage_estimate(int b, int first, int last, const cluster::Submesh& submesh,
                                                    const cluster::LogicalMesh& mesh, const StrategyFilter& filter) {
  Estimate estimate;
  if (!composing_) {
    STRATA_ASSIGN_OR_RETURN(intra::StageSolution solution, solve(b, first, last, submesh, mesh, filter));
    estimate.cost = stage_cost(solution, counts_[b]);
    estimate.reason = solution.reason;
    return estimate;
  }
  STRATA_ASSIGN_OR_RETURN(Composed composed, compose(b, first, last, submesh, mesh, filter));
  estimate.cost = composed.cost;
  estimate.reason = composed.reason;
  return estimate;
}

Expected<intra::StageSolution> Context::plan_solution(int b, int first, int last, const cluster::Submesh& submesh,
                                                      const cluster::LogicalMesh& mesh, const StrategyFilter& filter) {
  if (composing_) {
    STRATA_ASSIGN_OR_RETURN(Composed composed, compose(b, first, last, submesh, mesh, filter));
    if (composed.feasible) {
      STRATA_ASSIGN_OR_RETURN(CachedSolution cached, pinned(b, first, last, submesh, mesh, filter, composed.budgets));
      if (cached.solution.feasible) return from_cached(cached, graphs_[b].graph, ops_of(first, last));
    }
    ++exact_fallbacks;
  }
  return solve(b, first, last, submesh, mesh, filter);
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
