// The planning context: options, training graphs, layers, the cached stage oracle, lower bounds
// and the plan writer.
#include "planner/context.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <iterator>
#include <system_error>
#include <unordered_map>

#include "strata/autodiff/autodiff.h"
#include "strata/core/units.h"
#include "strata/inter/submesh.h"
#include "strata/sim/simulator.h"

namespace strata::planner {
namespace {

constexpr const char* kCacheVersion = "strata planner stage cache v5 (block units, memory prices, pinned stages, budget search, fused pricing, accumulation)";

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
  for (int b = 1; b <= 1024 && b <= global_batch; b *= 2) {
    if (global_batch % b == 0) counts.push_back(b);
  }
  // The 4 largest (the fewest pipeline bubbles), and 1: one stage whose micro-batch fits in memory
  // runs fastest whole (fewer, larger kernels; no accumulation), which a measured profile's per-op
  // cost shows.
  if (counts.size() > 5) counts.erase(counts.begin() + 1, counts.end() - 4);
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
  if (c.composing_ && options.num_micro_batches == 0 && options.micro_batch_candidates.empty() && c.counts_.size() > 2) {
    // A large search: the two largest default B (the fewest bubbles), half the stage problems.
    c.counts_.erase(c.counts_.begin(), c.counts_.end() - 2);
    c.graphs_.erase(c.graphs_.begin(), c.graphs_.end() - 2);
    c.price_base_.erase(c.price_base_.begin(), c.price_base_.end() - 2);
    for (BatchGraph& bg : c.graphs_) bg.signature = std::make_unique<GraphSignature>(bg.graph);  // graphs moved
  }
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
    if (compute_->prices_cuda_fusion()) {
      auto fused = cost::fused_for_cuda(bg.graph);
      if (!fused.is_ok()) return fused.error().in_file(spec.file);
      bg.fused = std::move(fused).value();
    }
    for (ir::OpId id = 0; id < bg.graph.num_ops(); ++id) {
      const ir::Op& op = bg.graph.op(id);
      const int layer = layers_.layer_of[id];
      if (op.kind == ir::OpKind::Parameter) bg.layer_state_bytes[layer] += op.outputs[0].bytes();
      if (op.role == ir::Role::update || ir::op_info(op.kind).is_source) continue;
      std::vector<ir::TensorType> inputs;
      for (const ir::Value& in : op.inputs) inputs.push_back(bg.graph.type(in));
      const cost::FusedOp how = bg.fused.empty() ? cost::FusedOp{} : bg.fused[static_cast<size_t>(id)];
      bg.layer_seconds[layer] += compute_->op_seconds(how, op.kind, inputs, op.outputs, op.attrs);
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
  env.text(compute_->describe()).f64(compute_->op_overhead().value_or(-1)).f64(compute_->memory_bandwidth().value_or(-1));
  // The measured tables by value: a re-made profile with as many points prices ops differently.
  for (const profile::GemmPoint& p : compute_->gemm_table()) {
    env.i64(p.m).i64(p.n).i64(p.k).i64(static_cast<int64_t>(p.dtype)).f64(p.seconds);
  }
  for (const profile::AttentionPoint& p : compute_->attention_table()) {
    env.i64(p.head_dim).i64(p.batch_heads).i64(p.seq).f64(p.forward_seconds).f64(p.backward_seconds);
  }
  env.text(options_.solve ? "custom solver" : "lp_solve");
  environment_ = env.hex();
  build_units();
  // Memory prices of the composition: level 10 prices a byte of parameters and
  // optimizer state at what the whole model's forward and backward take per byte on one device.
  for (const BatchGraph& bg : graphs_) {
    double seconds = 0, bytes = 0;
    for (double t : bg.layer_seconds) seconds += t;
    for (int64_t m : bg.layer_state_bytes) bytes += double(m);
    price_base_.push_back(bytes > 0 ? seconds / bytes : 1e-12);
  }
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

std::string Context::stage_key(const std::string& structure, const cluster::Submesh& submesh,
                               const cluster::LogicalMesh& mesh, const std::string& tag) const {
  return Hasher()
      .text(environment_)
      .text(structure)
      .i64(submesh.rows)
      .i64(submesh.cols)
      .i64(mesh.n0)
      .i64(mesh.n1)
      .text(tag)
      .hex();  // (the micro-batch count is the graph's: global batch / its micro-batch size)
}

intra::StageProblem Context::problem_for(int b, const std::vector<ir::OpId>& ops, const cluster::Submesh& submesh,
                                         const cluster::LogicalMesh& mesh) const {
  intra::StageProblem problem;
  problem.graph = &graphs_[b].graph;
  problem.ops = ops;
  problem.submesh = submesh;
  problem.mesh = mesh;
  problem.cluster = &cluster_;
  problem.comm = &comm_;
  problem.compute = compute_;
  problem.fused = graphs_[b].fused.empty() ? nullptr : &graphs_[b].fused;
  problem.time_limit_seconds = options_.ilp_time_limit_seconds;
  problem.num_micro_batches = counts_[b];  // the update and gradient sync run once per B micro-batches
  return problem;
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

Expected<CachedSolution> Context::cached_solve(int b, const std::vector<ir::OpId>& ops, const std::string& structure,
                                               const cluster::Submesh& submesh, const cluster::LogicalMesh& mesh,
                                               const StrategyFilter& filter, int64_t budget) {
  const ir::Graph& graph = graphs_[b].graph;
  std::string key = stage_key(structure, submesh, mesh, filter.tag);
  if (budget >= 0) key = Hasher().text(key).text("budget").i64(budget).hex();
  auto compute = [&]() -> Expected<intra::StageSolution> {
    ++problems_solved;
    intra::StageProblem problem = problem_for(b, ops, submesh, mesh);
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
    return solution;
  };
  return cached_answer(key, graph, ops, compute, true);
}

Expected<CachedSolution> Context::cached_answer(const std::string& key, const ir::Graph& graph,
                                               const std::vector<ir::OpId>& ops,
                                               const std::function<Expected<intra::StageSolution>()>& solve,
                                               bool count_hits) {
  auto compute = [&]() -> Expected<CachedSolution> {
    Expected<intra::StageSolution> solution = solve();
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
  if (count_hits && source == StageCache::Source::memory) ++memory_hits;
  if (count_hits && source == StageCache::Source::disk) ++disk_hits;
  return cached;
}

Expected<intra::StageSolution> Context::solve(int b, int first, int last, const cluster::Submesh& submesh,
                                              const cluster::LogicalMesh& mesh, const StrategyFilter& filter) {
  const std::vector<ir::OpId>& ops = ops_of(first, last);
  STRATA_ASSIGN_OR_RETURN(CachedSolution cached,
                          cached_solve(b, ops, structure(b, first, last), submesh, mesh, filter, -1));
  return from_cached(cached, graphs_[b].graph, ops);
}

namespace {

// Pinned stages: when every node has one strategy left the assignment is forced and only needs
// pricing; anything else goes to lp_solve.
class PinnedSolver final : public intra::ilp::Solver {
 public:
  Expected<intra::SolverResponse> solve(const intra::SolverRequest& request) override {
    for (const intra::SolverNode& node : request.nodes) {
      if (node.strategy_cost.size() != 1) return lp_.solve(request);
    }
    intra::SolverResponse response;
    response.choice.assign(request.nodes.size(), 0);
    response.objective = intra::evaluate_cost(request, response.choice);
    if (!std::isfinite(response.objective)) {
      response.choice.clear();
      response.message = "the pinned strategies are a forbidden combination";
      return response;
    }
    if (request.memory_budget_bytes > 0 &&
        intra::evaluate_memory_bytes(request, response.choice) > request.memory_budget_bytes) {
      response.choice.clear();
      response.message = "the pinned strategies do not fit the memory budget";
      return response;
    }
    response.status = intra::SolverStatus::optimal;
    return response;
  }
  const char* name() const override { return "pinned"; }

 private:
  intra::ilp::LpSolveSolver lp_;
};

// The first component of a name ("layer3" of "layer3.attn.qkv"), the whole name without one.
std::string block_of(const std::string& name) { return name.substr(0, name.find('.')); }

}  // namespace

void Context::build_units() {
  const ir::Graph& graph = graphs_[0].graph;
  unit_begin_.assign(layers_.num_layers + 1, 0);
  for (int l = 0; l < layers_.num_layers; ++l) {
    unit_begin_[l] = static_cast<int>(units_.size());
    // Blocks in the order of their first forward op; each op goes with its forward op's block.
    std::map<std::string, int> index;
    std::vector<std::pair<ir::OpId, std::vector<ir::OpId>>> blocks;  // (first owner, ops)
    for (ir::OpId id : ops_of(l, l)) {
      const ir::Op& op = graph.op(id);
      const ir::OpId owner = op.forward_op != ir::kNoOp ? op.forward_op : id;
      auto [it, added] = index.emplace(block_of(graph.op(owner).name), static_cast<int>(blocks.size()));
      if (added) blocks.push_back({owner, {}});
      blocks[it->second].first = std::min(blocks[it->second].first, owner);
      blocks[it->second].second.push_back(id);
    }
    std::stable_sort(blocks.begin(), blocks.end(), [](const auto& x, const auto& y) { return x.first < y.first; });
    for (auto& block : blocks) units_.push_back(std::move(block.second));
  }
  unit_begin_[layers_.num_layers] = static_cast<int>(units_.size());
  std::vector<int> unit_of(graph.num_ops(), -1);
  for (int u = 0; u < static_cast<int>(units_.size()); ++u) {
    for (ir::OpId id : units_[u]) unit_of[id] = u;
  }
  unit_links_.assign(units_.size(), {});
  for (int u = 0; u < static_cast<int>(units_.size()); ++u) {
    for (ir::OpId id : units_[u]) {
      for (const ir::Value& in : graph.op(id).inputs) {
        const int v = unit_of[in.op];
        if (v >= 0 && v != u) unit_links_[std::min(u, v)].push_back(std::max(u, v));
      }
    }
  }
  for (std::vector<int>& links : unit_links_) {
    std::sort(links.begin(), links.end());
    links.erase(std::unique(links.begin(), links.end()), links.end());
  }
}

double Context::price_of(int b, int level) const {
  return price_base_[b] * std::exp2(2 * level - 10);
}

Expected<CachedSolution> Context::priced_solve(int b, const std::vector<ir::OpId>& ops, const std::string& structure,
                                               const cluster::Submesh& submesh, const cluster::LogicalMesh& mesh,
                                               const StrategyFilter& filter, int level) {
  const ir::Graph& graph = graphs_[b].graph;
  const double price = price_of(b, level);
  const std::string key = Hasher().text(stage_key(structure, submesh, mesh, filter.tag)).text("memory price").f64(price).hex();
  auto compute = [&]() -> Expected<intra::StageSolution> {
    ++problems_solved;
    intra::StageProblem problem = problem_for(b, ops, submesh, mesh);
    problem.allow = filter.allow;
    ++ilp_solves;
    Expected<intra::StageSolution> solution = make_error("", "solver", "no solution");
    if (options_.solve) {
      solution = options_.solve(problem);  // a custom solver prices what it likes
    } else {
      // The unbudgeted ILP with `price` seconds per byte kept on the device added to every
      // strategy; then the chosen strategies priced exactly (every op pinned).
      STRATA_ASSIGN_OR_RETURN(intra::StageRequest stage, intra::build_stage_request(problem));
      for (intra::SolverNode& node : stage.request.nodes) {
        for (size_t s = 0; s < node.strategy_cost.size(); ++s) {
          node.strategy_cost[s] += price * static_cast<double>(node.strategy_memory_bytes[s]);
        }
      }
      stage.request.time_limit_seconds = options_.ilp_time_limit_seconds;
      intra::ilp::LpSolveSolver lp;
      auto response = lp.solve(stage.request);
      if (response.is_ok() && response->status != intra::SolverStatus::infeasible) {
        std::unordered_map<std::string, std::string> chosen;
        for (size_t i = 0; i < stage.node_ops.size(); ++i) {
          chosen.emplace(graph.op(stage.node_ops[i]).name, stage.strategies[i][response->choice[i]].sharding.to_string());
        }
        problem.allow = [&chosen](const ir::Op& op, const intra::Strategy& strategy) {
          auto it = chosen.find(op.name);
          return it != chosen.end() && strategy.sharding.to_string() == it->second;
        };
        PinnedSolver pinned_solver;
        solution = intra::solve_stage(problem, pinned_solver);
      } else {
        solution = response.is_ok() ? make_error("", "solver", response->message) : response.error();
      }
    }
    return solution;
  };
  return cached_answer(key, graph, ops, compute, true);
}

std::vector<int> Context::unit_range(int first, int last) const {
  std::vector<int> units;
  for (int u = unit_begin_[first]; u < unit_begin_[last + 1]; ++u) units.push_back(u);
  return units;
}

Expected<Context::UnitChoice> Context::unit(int b, int u, const cluster::Submesh& submesh,
                                            const cluster::LogicalMesh& mesh, const StrategyFilter& filter,
                                            int level) {
  const auto key = std::make_tuple(b, u, level, MeshKey{submesh.rows, submesh.cols, mesh.n0, mesh.n1, filter.tag});
  std::string structure;
  {
    std::lock_guard<std::mutex> lock(compose_mutex_);
    auto it = units_memo_.find(key);
    if (it != units_memo_.end()) return it->second;
    auto known = unit_structures_.find({b, u});
    if (known != unit_structures_.end()) structure = known->second;
  }
  if (structure.empty()) {
    structure = graphs_[b].signature->stage_hash(units_[u]);
    std::lock_guard<std::mutex> lock(compose_mutex_);
    unit_structures_.emplace(std::make_pair(b, u), structure);
  }
  ++layer_solves;
  Expected<CachedSolution> solved = level < 0 ? cached_solve(b, units_[u], structure, submesh, mesh, filter, 0)
                                             : priced_solve(b, units_[u], structure, submesh, mesh, filter, level);
  STRATA_ASSIGN_OR_RETURN(CachedSolution cached, std::move(solved));
  UnitChoice choice;
  choice.cost = stage_cost(cached.solution, counts_[b]);
  choice.solution = std::make_shared<const CachedSolution>(std::move(cached));
  std::lock_guard<std::mutex> lock(compose_mutex_);
  return units_memo_.emplace(key, std::move(choice)).first->second;
}

Expected<CachedSolution> Context::pinned(int b, const std::vector<int>& units, const std::vector<ir::OpId>& ops,
                                         const std::string& structure, const cluster::Submesh& submesh,
                                         const cluster::LogicalMesh& mesh, const StrategyFilter& filter,
                                         const std::vector<int>& levels) {
  const ir::Graph& graph = graphs_[b].graph;
  std::vector<const std::string*> pin(graph.num_ops(), nullptr);
  std::vector<UnitChoice> choices;
  for (size_t k = 0; k < units.size(); ++k) {
    const int u = units[k];
    STRATA_ASSIGN_OR_RETURN(UnitChoice choice, unit(b, u, submesh, mesh, filter, levels[k]));
    const std::vector<std::string>& shardings = choice.solution->shardings;
    if (shardings.size() != units_[u].size()) {
      return make_error("", "cache", "a cached unit solution has " + std::to_string(shardings.size()) +
                                         " shardings for " + std::to_string(units_[u].size()) + " ops");
    }
    for (size_t i = 0; i < units_[u].size(); ++i) pin[units_[u][i]] = &shardings[i];
    choices.push_back(std::move(choice));
  }
  Hasher key;
  key.text(stage_key(structure, submesh, mesh, "pinned"));
  for (ir::OpId id : ops) {
    if (pin[id] == nullptr) return make_error("", "ops", "an op of the stage is in none of its units");
    key.text(*pin[id]);
  }
  auto compute = [&]() -> Expected<intra::StageSolution> {
    ++evaluations;
    std::unordered_map<std::string, const std::string*> by_name;
    for (ir::OpId id : ops) by_name.emplace(graph.op(id).name, pin[id]);
    intra::StageProblem problem = problem_for(b, ops, submesh, mesh);
    problem.chunk_cache = &chunk_cache_;
    problem.allow = [&by_name](const ir::Op& op, const intra::Strategy& strategy) {
      auto it = by_name.find(op.name);
      return it != by_name.end() && strategy.sharding.to_string() == *it->second;
    };
    PinnedSolver pinned_solver;
    Expected<intra::StageSolution> solution =
        options_.solve ? options_.solve(problem) : intra::solve_stage(problem, pinned_solver);
    return solution;
  };
  return cached_answer(key.hex(), graph, ops, compute, false);
}

Expected<inter::StageCost> Context::link_cost(int b, int u, int v, int level_u, int level_v,
                                              const inter::StageCost& alone_u, const inter::StageCost& alone_v,
                                              const cluster::Submesh& submesh, const cluster::LogicalMesh& mesh,
                                              const StrategyFilter& filter) {
  const auto key = std::make_tuple(b, u, v, level_u, level_v,
                                   MeshKey{submesh.rows, submesh.cols, mesh.n0, mesh.n1, filter.tag});
  {
    std::lock_guard<std::mutex> lock(compose_mutex_);
    auto it = boundary_memo_.find(key);
    if (it != boundary_memo_.end()) return it->second;
  }
  std::vector<ir::OpId> ops;
  std::merge(units_[u].begin(), units_[u].end(), units_[v].begin(), units_[v].end(), std::back_inserter(ops));
  const std::string structure = graphs_[b].signature->stage_hash(ops);
  STRATA_ASSIGN_OR_RETURN(CachedSolution pair,
                          pinned(b, {u, v}, ops, structure, submesh, mesh, filter, {level_u, level_v}));
  const inter::StageCost both = stage_cost(pair.solution, counts_[b]);
  inter::StageCost extra;
  if (both.feasible) {
    extra.seconds = std::max(0.0, both.seconds - alone_u.seconds - alone_v.seconds);
    extra.weights_bytes = std::max<int64_t>(0, both.weights_bytes - alone_u.weights_bytes - alone_v.weights_bytes);
    extra.activation_bytes =
        std::max<int64_t>(0, both.activation_bytes - alone_u.activation_bytes - alone_v.activation_bytes);
  }
  std::lock_guard<std::mutex> lock(compose_mutex_);
  return boundary_memo_.emplace(key, extra).first->second;
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
  const int u0 = unit_begin_[first], n = unit_begin_[last + 1] - u0;
  // Every unit at memory price `level` (-1: none) and the links between them; an infeasible
  // result (with its reason) when a unit has no solution.
  auto at = [&](int level) -> Expected<Composed> {
    Composed c;
    c.level = level;
    std::vector<UnitChoice> choices;
    for (int i = 0; i < n; ++i) {
      STRATA_ASSIGN_OR_RETURN(UnitChoice choice, unit(b, u0 + i, submesh, mesh, filter, level));
      if (!choice.cost.feasible) {
        c.reason = "block " + block_of(graphs_[b].graph.op(units_[u0 + i].front()).name) + ": " +
                   choice.solution->solution.reason;
        return c;
      }
      c.cost.seconds += choice.cost.seconds;
      c.units_seconds += choice.cost.seconds;
      c.cost.weights_bytes += choice.cost.weights_bytes;
      c.cost.activation_bytes += choice.cost.activation_bytes;
      choices.push_back(std::move(choice));
    }
    // Between linked units (one reads a value of the other): the resharding of those values, and
    // the forward values of one that the other's backward keeps: the pair priced with both
    // pinned, less each alone.
    for (int i = 0; i < n; ++i) {
      const int u = u0 + i;
      for (int v : unit_links_[u]) {
        if (v >= u0 + n) break;
        STRATA_ASSIGN_OR_RETURN(inter::StageCost extra, link_cost(b, u, v, level, level, choices[i].cost,
                                                                  choices[v - u0].cost, submesh, mesh, filter));
        c.cost.seconds += extra.seconds;
        c.cost.weights_bytes += extra.weights_bytes;
        c.cost.activation_bytes += extra.activation_bytes;
      }
    }
    c.feasible = c.cost.feasible = true;
    return c;
  };
  auto fits = [&](const Composed& c) { return c.feasible && c.cost.weights_bytes + c.cost.activation_bytes <= budget_; };
  STRATA_ASSIGN_OR_RETURN(Composed out, at(-1));
  const double cap = time_cap_.load();
  if (out.feasible && !fits(out) && counts_[b] * out.units_seconds > cap * (1 + 1e-9)) {
    // Any price makes every unit slower than its fastest sharding: B x the units' fastest times
    // already exceed a known plan's objective, so no plan with this stage can be optimal.
    out.feasible = out.cost.feasible = false;
    out.reason = "slower than a known plan even unpriced";
    ++pruned_priced;
  } else if (out.feasible && !fits(out)) {
    // The fastest sharding does not fit: price memory (the same price for every unit, a
    // Lagrangian relaxation of the budget), the least price of the ladder at which it fits
    // (memory falls as the price rises), by bisection.
    STRATA_ASSIGN_OR_RETURN(Composed dearest, at(kPriceLevels - 1));
    if (!fits(dearest)) {
      out.feasible = out.cost.feasible = false;
      out.reason = dearest.feasible ? "needs " + format_bytes(double(dearest.cost.weights_bytes + dearest.cost.activation_bytes)) +
                                          " per device at the highest memory price, has " + format_bytes(double(budget_))
                                    : dearest.reason;
    } else {
      int lo = 0, hi = kPriceLevels - 1;  // hi fits
      out = dearest;
      while (lo < hi) {
        const int mid = (lo + hi) / 2;
        STRATA_ASSIGN_OR_RETURN(Composed c, at(mid));
        if (fits(c)) {
          hi = mid;
          out = c;
        } else {
          lo = mid + 1;
        }
      }
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
      STRATA_ASSIGN_OR_RETURN(CachedSolution cached,
                              pinned(b, unit_range(first, last), ops_of(first, last), structure(b, first, last),
                                     submesh, mesh, filter, std::vector<int>(unit_range(first, last).size(), composed.level)));
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
