// solve_stage: strategies of every op of a stage, followers folded (elementwise and layout ops
// follow their main operand, optimizer updates and their state follow the parameter), resharding
// matrices on the edges, memory from liveness, the ILP, and the stage's costs read back.
#include "strata/intra/stage_solver.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <cstring>
#include <optional>
#include <unordered_map>

#include "intra/budget_search.h"
#include "intra/folded_problem.h"

namespace strata::intra {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

// Resharding seconds between two specs of one tensor, cached by (shape, dtype, from, to): the
// same matrices recur in every layer of a model. Specs are interned to small ids once per edge, so
// a matrix costs one lookup per pair of DISTINCT specs at its ends (many strategies share a spec).
class ReshardCache {
 public:
  ReshardCache(const StageProblem& problem) : problem_(problem) {}

  // Seconds [rows × cols] from each of `from` to each of `to`, row-major.
  std::vector<double> matrix(const std::vector<const ShardingSpec*>& from, const std::vector<const ShardingSpec*>& to,
                             const ir::TensorType& type) {
    const int type_id = intern(types_, ir::type_string(type));
    std::vector<int> from_ids = ids(from), to_ids = ids(to);
    std::vector<double> out(from.size() * to.size());
    for (size_t r = 0; r < from.size(); ++r) {
      for (size_t c = 0; c < to.size(); ++c) {
        out[r * to.size() + c] = seconds(type_id, from_ids[r], *from[r], to_ids[c], *to[c], type);
      }
    }
    return out;
  }

 private:
  static int intern(std::unordered_map<std::string, int>& table, std::string key) {
    return table.try_emplace(std::move(key), static_cast<int>(table.size())).first->second;
  }
  std::vector<int> ids(const std::vector<const ShardingSpec*>& specs) {
    std::vector<int> out;
    out.reserve(specs.size());
    const ShardingSpec* last = nullptr;
    int last_id = -1;
    for (const ShardingSpec* spec : specs) {
      if (last == nullptr || !(*spec == *last)) {
        last = spec;
        last_id = intern(specs_, spec->to_string());
      }
      out.push_back(last_id);
    }
    return out;
  }
  double seconds(int type_id, int from_id, const ShardingSpec& from, int to_id, const ShardingSpec& to,
                 const ir::TensorType& type) {
    if (from_id == to_id) return 0;
    const uint64_t key = (static_cast<uint64_t>(type_id) << 42) ^ (static_cast<uint64_t>(from_id) << 21) ^
                         static_cast<uint64_t>(to_id);
    auto it = cache_.find(key);
    if (it != cache_.end()) return it->second;
    auto plan = resharding_cost(from, to, type.shape, type.dtype, problem_.submesh, problem_.mesh, *problem_.comm);
    const double value = plan.is_ok() ? plan->seconds : kInf;
    cache_.emplace(key, value);
    return value;
  }

  const StageProblem& problem_;
  std::unordered_map<std::string, int> types_, specs_;
  std::unordered_map<uint64_t, double> cache_;
};

bool is_layout_follower(ir::OpKind kind) {
  switch (kind) {
    case ir::OpKind::Reshape:
    case ir::OpKind::Transpose:
    case ir::OpKind::Broadcast:
    case ir::OpKind::Slice:
    case ir::OpKind::Pad: return true;
    default: return false;
  }
}

bool is_update(ir::OpKind kind) { return kind == ir::OpKind::SgdUpdate || kind == ir::OpKind::AdamUpdate; }

struct Builder {
  const StageProblem& problem;
  const ir::Graph& graph;
  const cost::ComputeModel& compute;
  std::vector<cost::FusedOp> fused;  // per op of graph; empty: every op as built
  ReshardCache reshard;
  std::vector<int> node_of;  // op id -> node, -1 outside the stage
  StageRequest out;

  Builder(const StageProblem& p, const cost::ComputeModel& c)
      : problem(p), graph(*p.graph), compute(c), reshard(p), node_of(p.graph->num_ops(), -1) {}

  // How often an op runs per step: update ops once, the others once per micro-batch.
  double times_per_step(const ir::Op& op) const {
    return op.role == ir::Role::update ? 1.0 : static_cast<double>(problem.num_micro_batches);
  }

  // An update op's gradient summed over the step's micro-batches before it (the executor's add of
  // each micro-batch's gradient after the first and one scale by 1/B), on the update's device tile.
  double accumulation_seconds(const ir::Op& op, const Strategy& s) const {
    if (problem.num_micro_batches < 2 || !is_update(op.kind)) return 0;
    const ir::TensorType& grad = graph.type(op.inputs[1]);
    auto shape = local_shape(s.sharding.inputs[1], grad.shape, problem.mesh);
    return compute.accumulation_seconds(ir::TensorType{*shape, grad.dtype}, problem.num_micro_batches);
  }

  // Bytes of op `id`'s outputs that stay on the device: parameters and optimizer state always,
  // forward values only when a backward op of the stage reads them.
  bool keeps_output(ir::OpId id, int32_t index) const {
    const ir::Op& op = graph.op(id);
    if (op.kind == ir::OpKind::Parameter) return true;
    if (op.role != ir::Role::forward) return false;
    for (const ir::Use& use : graph.uses(ir::Value{id, index})) {
      if (node_of[use.user] >= 0 && graph.op(use.user).role == ir::Role::backward) return true;
    }
    return false;
  }

  Status add_nodes() {
    for (ir::OpId id : out.node_ops) {
      const ir::Op& op = graph.op(id);
      const cost::FusedOp how = fused.empty() ? cost::FusedOp{} : fused[static_cast<size_t>(id)];
      STRATA_ASSIGN_OR_RETURN(std::vector<Strategy> all, enumerate_strategies(graph, id, problem.mesh, compute, how));
      std::vector<Strategy> kept;
      for (Strategy& s : all) {
        if (problem.allow && !problem.allow(op, s)) continue;
        s.compute_seconds += accumulation_seconds(op, s);
        kept.push_back(std::move(s));
      }
      if (kept.empty()) return make_error("", op.name, "the strategy restriction forbids every strategy of this op");
      SolverNode node;
      node.name = op.name;
      const double weight = times_per_step(op);
      for (const Strategy& s : kept) {
        node.strategy_cost.push_back(weight * (s.compute_seconds + s.comm_seconds));
        int64_t bytes = 0;
        for (size_t o = 0; o < op.outputs.size(); ++o) {
          if (!keeps_output(id, static_cast<int32_t>(o))) continue;
          auto shape = local_shape(s.sharding.outputs[o], op.outputs[o].shape, problem.mesh);
          bytes += ir::TensorType{*shape, op.outputs[o].dtype}.numel() * dtype_bytes(op.outputs[o].dtype);
        }
        node.strategy_memory_bytes.push_back(bytes);
      }
      out.request.nodes.push_back(std::move(node));
      out.strategies.push_back(std::move(kept));
    }
    return Status::ok();
  }

  // Resharding seconds [strategies of p × strategies of c] of input `k` of node `c` from output
  // `index` of its producer node `p`, unweighted.
  std::vector<double> edge_matrix(int p, int32_t index, int c, int k) {
    const ir::Op& consumer = graph.op(out.node_ops[c]);
    std::vector<const ShardingSpec*> from, to;
    for (const Strategy& s : out.strategies[p]) from.push_back(&s.sharding.outputs[index]);
    for (const Strategy& s : out.strategies[c]) to.push_back(&s.sharding.inputs[k]);
    return reshard.matrix(from, to, graph.type(consumer.inputs[k]));
  }

  void add_edges() {
    for (size_t c = 0; c < out.node_ops.size(); ++c) {
      const ir::Op& op = graph.op(out.node_ops[c]);
      for (size_t k = 0; k < op.inputs.size(); ++k) {
        const int p = node_of[op.inputs[k].op];
        if (p < 0) continue;  // from another stage: arrives in whatever spec this op wants
        SolverEdge edge{p, static_cast<int>(c), edge_matrix(p, op.inputs[k].index, static_cast<int>(c), static_cast<int>(k))};
        const double weight = times_per_step(op);
        for (double& x : edge.cost) x *= weight;
        out.request.edges.push_back(std::move(edge));
      }
    }
  }

  // Node `c` follows node `p` through input `k`: for each strategy of p, the strategy of c that
  // reads the value cheapest (ties: the first).
  void follow_cheapest(int c, int p, int k) {
    const ir::Op& op = graph.op(out.node_ops[c]);
    SolverNode& node = out.request.nodes[c];
    node.follow = p;
    node.follow_map.clear();
    const std::vector<double> seconds = edge_matrix(p, op.inputs[k].index, c, k);
    const size_t cols = out.strategies[c].size();
    for (size_t sp = 0; sp < out.strategies[p].size(); ++sp) {
      int best = 0;
      double best_cost = kInf;
      for (size_t sc = 0; sc < cols; ++sc) {
        const double cost = times_per_step(op) * seconds[sp * cols + sc] + node.strategy_cost[sc];
        if (cost < best_cost) {
          best_cost = cost;
          best = static_cast<int>(sc);
        }
      }
      node.follow_map.push_back(best);
    }
  }

  // Node `c` must produce output `index` exactly as node `p` produces output `p_index` (optimizer
  // state keeps its layout): p's strategies with no such match are forbidden.
  void follow_exactly(int c, int p, int p_index, int index) {
    SolverNode& node = out.request.nodes[c];
    node.follow = p;
    node.follow_map.clear();
    for (size_t sp = 0; sp < out.strategies[p].size(); ++sp) {
      const ShardingSpec& want = out.strategies[p][sp].sharding.outputs[p_index];
      int match = -1;
      for (size_t sc = 0; sc < out.strategies[c].size() && match < 0; ++sc) {
        if (out.strategies[c][sc].sharding.outputs[index] == want) match = static_cast<int>(sc);
      }
      if (match < 0) {
        out.request.nodes[p].strategy_cost[sp] = kInf;
        match = 0;
      }
      node.follow_map.push_back(match);
    }
  }

  void add_followers() {
    for (size_t c = 0; c < out.node_ops.size(); ++c) {
      const ir::Op& op = graph.op(out.node_ops[c]);
      if (is_update(op.kind)) {
        const int param = node_of[op.inputs[0].op];
        if (param < 0 || graph.op(op.inputs[0].op).kind != ir::OpKind::Parameter) continue;
        follow_exactly(static_cast<int>(c), param, op.inputs[0].index, 0);
        for (size_t k = 2; k < op.inputs.size(); ++k) {  // Adam's m and v follow the update
          const int state = node_of[op.inputs[k].op];
          if (state < 0 || graph.op(op.inputs[k].op).kind != ir::OpKind::Parameter) continue;
          if (graph.users(op.inputs[k].op).size() != 1) continue;
          follow_exactly(state, static_cast<int>(c), static_cast<int>(k) - 1, 0);
        }
        continue;
      }
      if (!op_info(op.kind).elementwise && !is_layout_follower(op.kind)) continue;
      // The operand with the most elements whose producer is in the stage leads (ties: the first).
      int lead_input = -1;
      int64_t most = -1;
      for (size_t k = 0; k < op.inputs.size(); ++k) {
        const int p = node_of[op.inputs[k].op];
        if (p < 0 || out.request.nodes[p].follow == static_cast<int>(c)) continue;
        const int64_t numel = graph.type(op.inputs[k]).numel();
        if (numel > most) {
          most = numel;
          lead_input = static_cast<int>(k);
        }
      }
      if (lead_input >= 0) follow_cheapest(static_cast<int>(c), node_of[op.inputs[lead_input].op], lead_input);
    }
  }
};

// Drops dominated strategies of decision nodes (see StageProblem::prune_dominated). Over the
// folded problem (followers' costs, memory and edges added to their leader's), strategy t of a
// decision node dominates s when cost(t) <= cost(s), memory(t) <= memory(s), and on every edge of
// the node, resharding from/to t is no more than from/to s towards each strategy of the other end
// still alive. Replacing s by t in any assignment then costs no more and uses no more memory, so
// some optimum survives each removal (ties: the earlier strategy stays).
void prune_dominated(StageRequest& stage) {
  SolverRequest& request = stage.request;
  const detail::FoldedProblem folded = detail::fold_followers(request);
  const int d = static_cast<int>(folded.decision_nodes.size());
  std::vector<std::vector<int>> incident(d);
  for (size_t e = 0; e < folded.edges.size(); ++e) {
    incident[folded.edges[e].a].push_back(static_cast<int>(e));
    incident[folded.edges[e].b].push_back(static_cast<int>(e));
  }
  std::vector<std::vector<char>> alive(d);
  for (int p = 0; p < d; ++p) {
    const std::vector<double>& cost = folded.cost[p];
    const bool any_finite = std::any_of(cost.begin(), cost.end(), [](double c) { return std::isfinite(c); });
    alive[p].assign(cost.size(), 1);
    if (any_finite) {
      for (size_t s = 0; s < cost.size(); ++s) alive[p][s] = std::isfinite(cost[s]) ? 1 : 0;
    }
  }
  auto dominates = [&](int p, int t, int s) {
    if (folded.cost[p][t] > folded.cost[p][s] || folded.memory_bytes[p][t] > folded.memory_bytes[p][s]) return false;
    for (int e : incident[p]) {
      const detail::FoldedEdge& edge = folded.edges[e];
      if (edge.a == p) {
        const double* row_t = &edge.cost[static_cast<size_t>(t) * edge.cols];
        const double* row_s = &edge.cost[static_cast<size_t>(s) * edge.cols];
        for (int c = 0; c < edge.cols; ++c) {
          if (alive[edge.b][c] && row_t[c] > row_s[c]) return false;
        }
      } else {
        for (int r = 0; r < edge.rows; ++r) {
          const size_t base = static_cast<size_t>(r) * edge.cols;
          if (alive[edge.a][r] && edge.cost[base + t] > edge.cost[base + s]) return false;
        }
      }
    }
    return true;
  };
  for (int p = 0; p < d; ++p) {
    const int k = static_cast<int>(folded.cost[p].size());
    stage.strategies_before_pruning += k;
    for (int s = 0; s < k; ++s) {
      if (!alive[p][s]) continue;
      for (int t = 0; t < k; ++t) {
        if (t != s && alive[p][t] && dominates(p, t, s)) {
          alive[p][s] = 0;
          break;
        }
      }
    }
  }
  // Rebuild the request with the survivors: leader strategies, their direct followers' maps, and
  // the rows / columns of their edges.
  const int n = static_cast<int>(request.nodes.size());
  std::vector<std::vector<int>> kept(n);
  for (int p = 0; p < d; ++p) {
    const int i = folded.decision_nodes[p];
    for (size_t s = 0; s < alive[p].size(); ++s) {
      if (alive[p][s]) kept[i].push_back(static_cast<int>(s));
    }
    stage.strategies_after_pruning += static_cast<int>(kept[i].size());
  }
  auto select = [](const auto& values, const std::vector<int>& indices) {
    std::remove_cvref_t<decltype(values)> out;
    out.reserve(indices.size());
    for (int index : indices) out.push_back(values[index]);
    return out;
  };
  for (int i = 0; i < n; ++i) {
    SolverNode& node = request.nodes[i];
    if (node.follow >= 0 && !kept[node.follow].empty()) node.follow_map = select(node.follow_map, kept[node.follow]);
  }
  for (SolverEdge& edge : request.edges) {
    const std::vector<int>& rows = kept[edge.src];
    const std::vector<int>& cols = kept[edge.dst];
    if (rows.empty() && cols.empty()) continue;
    const size_t old_cols = request.nodes[edge.dst].strategy_cost.size();
    const size_t old_rows = request.nodes[edge.src].strategy_cost.size();
    const size_t new_rows = rows.empty() ? old_rows : rows.size(), new_cols = cols.empty() ? old_cols : cols.size();
    std::vector<double> cost(new_rows * new_cols);
    for (size_t r = 0; r < new_rows; ++r) {
      const size_t from_r = rows.empty() ? r : static_cast<size_t>(rows[r]);
      for (size_t c = 0; c < new_cols; ++c) {
        const size_t from_c = cols.empty() ? c : static_cast<size_t>(cols[c]);
        cost[r * new_cols + c] = edge.cost[from_r * old_cols + from_c];
      }
    }
    edge.cost = std::move(cost);
  }
  for (int i = 0; i < n; ++i) {
    if (kept[i].empty()) continue;
    SolverNode& node = request.nodes[i];
    node.strategy_cost = select(node.strategy_cost, kept[i]);
    node.strategy_memory_bytes = select(node.strategy_memory_bytes, kept[i]);
    stage.strategies[i] = select(stage.strategies[i], kept[i]);
  }
}

// A 128-bit content hash of a solver request (and the solver's name): the chunk cache's key.
class RequestHasher {
 public:
  RequestHasher& bytes(const void* data, size_t size) {
    const auto* p = static_cast<const unsigned char*>(data);
    for (size_t i = 0; i < size; ++i) {
      a_ = (a_ ^ p[i]) * 0x100000001b3ull;
      b_ = ((b_ ^ p[i]) << 23 | (b_ ^ p[i]) >> 41) * 0x9e3779b97f4a7c15ull;
    }
    return *this;
  }
  RequestHasher& i64(int64_t value) { return bytes(&value, sizeof(value)); }
  template <typename T>
  RequestHasher& values(const std::vector<T>& v) {
    i64(static_cast<int64_t>(v.size()));
    return bytes(v.data(), v.size() * sizeof(T));
  }
  std::string hex() const {
    char buffer[33];
    std::snprintf(buffer, sizeof(buffer), "%016llx%016llx", static_cast<unsigned long long>(a_),
                  static_cast<unsigned long long>(b_ ^ (a_ >> 7)));
    return buffer;
  }

 private:
  uint64_t a_ = 0xcbf29ce484222325ull, b_ = 0x84222325cbf29ce4ull;
};

std::string request_key(const SolverRequest& request, const char* solver_name) {
  RequestHasher h;
  h.bytes(solver_name, std::strlen(solver_name)).i64(static_cast<int64_t>(request.nodes.size()));
  for (const SolverNode& node : request.nodes) {
    h.values(node.strategy_cost).values(node.strategy_memory_bytes).i64(node.follow).values(node.follow_map);
  }
  h.i64(static_cast<int64_t>(request.edges.size()));
  for (const SolverEdge& edge : request.edges) h.i64(edge.src).i64(edge.dst).values(edge.cost);
  h.i64(request.memory_budget_bytes).bytes(&request.time_limit_seconds, sizeof(double));
  return h.hex();
}

// The root leader of every node (itself when it follows no one).
std::vector<int> leaders(const SolverRequest& request) {
  std::vector<int> root(request.nodes.size());
  for (size_t i = 0; i < root.size(); ++i) {
    int r = static_cast<int>(i);
    while (request.nodes[r].follow >= 0) r = request.nodes[r].follow;
    root[i] = r;
  }
  return root;
}

int64_t least_memory(const SolverNode& node) {
  int64_t least = std::numeric_limits<int64_t>::max();
  for (size_t s = 0; s < node.strategy_cost.size(); ++s) {
    if (std::isfinite(node.strategy_cost[s])) least = std::min(least, node.strategy_memory_bytes[s]);
  }
  return least == std::numeric_limits<int64_t>::max() ? 0 : least;
}

// Chunk bookkeeping of solve_in_chunks.
struct ChunkStats {
  int chunks = 0;
  int solves = 0;
  int hits = 0;
};

// The first component of a name ("layer3" of "layer3.attn.qkv"); the whole name when it has none.
std::string block_of(const std::string& name) { return name.substr(0, name.find('.')); }

// Solves `stage` as consecutive chunks of at most `max_decisions` decision nodes, ordered by the
// forward op each node belongs to and cut at block boundaries (so a chunk is a run of whole
// layers with their backward and update ops): a first pass in order, then one sweep of block
// coordinate descent. See StageProblem::max_ilp_decision_nodes and ChunkCache. `request` is
// stage.request or a variant of it with other costs or budget (same nodes and edges).
Expected<SolverResponse> solve_in_chunks(const StageProblem& problem, const StageRequest& stage,
                                         const SolverRequest& request, ilp::Solver& solver, int max_decisions,
                                         ChunkStats* stats) {
  const int n = static_cast<int>(request.nodes.size());
  const std::vector<int> root = leaders(request);
  const ir::Graph& graph = *problem.graph;
  auto owner = [&](int node) {
    const ir::Op& op = graph.op(stage.node_ops[node]);
    return op.forward_op != ir::kNoOp ? op.forward_op : op.id;
  };
  std::vector<int> decisions;
  for (int i = 0; i < n; ++i) {
    if (root[i] == i) decisions.push_back(i);
  }
  std::stable_sort(decisions.begin(), decisions.end(), [&](int a, int b) { return owner(a) < owner(b); });
  // Runs of decisions of one block, packed whole into chunks; a run longer than the limit is cut
  // into equal pieces of its own.
  std::vector<int> chunk_of_root(n, -1);
  int num_chunks = 0, filled = 0;
  for (size_t begin = 0; begin < decisions.size();) {
    const std::string block = block_of(graph.op(owner(decisions[begin])).name);
    size_t end = begin + 1;
    while (end < decisions.size() && block_of(graph.op(owner(decisions[end])).name) == block) ++end;
    const int size = static_cast<int>(end - begin);
    if (size > max_decisions) {
      if (filled > 0) ++num_chunks;
      const int pieces = (size + max_decisions - 1) / max_decisions;
      for (int k = 0; k < size; ++k) chunk_of_root[decisions[begin + k]] = num_chunks + k * pieces / size;
      num_chunks += pieces;
      filled = 0;
    } else {
      if (filled > 0 && filled + size > max_decisions) {
        ++num_chunks;
        filled = 0;
      }
      for (size_t k = begin; k < end; ++k) chunk_of_root[decisions[k]] = num_chunks;
      filled += size;
    }
    begin = end;
  }
  if (filled > 0) ++num_chunks;
  stats->chunks = num_chunks;
  std::vector<int> chunk(n);
  for (int i = 0; i < n; ++i) chunk[i] = chunk_of_root[root[i]];

  SolverResponse total;
  total.choice.assign(n, -1);
  total.status = SolverStatus::optimal;
  std::vector<bool> solved(num_chunks, false);
  // First-pass budgets: each chunk gets its least memory plus a share of the slack (budget minus
  // every chunk's least) proportional to its span (most minus least memory over its strategies).
  // Identical blocks get identical budgets, so once their fixed neighbours repeat their chunk ILPs
  // hit the chunk cache; the shares add up to at most the budget. The sweep then lets each chunk
  // use whatever the others leave.
  std::vector<int64_t> share(num_chunks, 0);
  if (request.memory_budget_bytes > 0) {
    std::vector<int64_t> least(num_chunks, 0), span(num_chunks, 0);
    for (int i = 0; i < n; ++i) {
      const SolverNode& node = request.nodes[i];
      const int64_t low = least_memory(node);
      int64_t high = low;
      for (size_t s = 0; s < node.strategy_cost.size(); ++s) {
        if (std::isfinite(node.strategy_cost[s])) high = std::max(high, node.strategy_memory_bytes[s]);
      }
      least[chunk[i]] += low;
      span[chunk[i]] += high - low;
    }
    int64_t least_total = 0, span_total = 0;
    for (int k = 0; k < num_chunks; ++k) {
      least_total += least[k];
      span_total += span[k];
    }
    if (least_total > request.memory_budget_bytes) {  // no assignment fits, whatever the chunks do
      total.status = SolverStatus::infeasible;
      total.choice.clear();
      total.message = detail::memory_infeasible_message(request.memory_budget_bytes, least_total);
      return total;
    }
    const double slack = static_cast<double>(request.memory_budget_bytes - least_total);
    for (int k = 0; k < num_chunks; ++k) {
      const double part = span_total > 0 ? static_cast<double>(span[k]) / static_cast<double>(span_total)
                                         : 1.0 / num_chunks;
      share[k] = std::max<int64_t>(1, least[k] + static_cast<int64_t>(std::floor(slack * part)));
    }
  }
  bool first_pass = true;
  // Chunk k's ILP: edges to solved chunks become strategy costs (their choice is fixed), edges to
  // unsolved ones wait. Budget: its share in the first pass, then what the other chunks leave.
  auto solve_chunk = [&](int k) -> Expected<SolverResponse> {
    SolverRequest sub;
    std::vector<int> local(n, -1), members;
    for (int i = 0; i < n; ++i) {
      if (chunk[i] != k) continue;
      local[i] = static_cast<int>(members.size());
      members.push_back(i);
      sub.nodes.push_back(request.nodes[i]);
    }
    for (int i : members) {
      if (request.nodes[i].follow >= 0) sub.nodes[local[i]].follow = local[request.nodes[i].follow];
    }
    for (const SolverEdge& edge : request.edges) {
      const int cols = static_cast<int>(request.nodes[edge.dst].strategy_cost.size());
      const int src_chunk = chunk[edge.src], dst_chunk = chunk[edge.dst];
      if (src_chunk == k && dst_chunk == k) {
        sub.edges.push_back(SolverEdge{local[edge.src], local[edge.dst], edge.cost});
      } else if (dst_chunk == k && solved[src_chunk]) {
        std::vector<double>& cost = sub.nodes[local[edge.dst]].strategy_cost;
        for (int c = 0; c < cols; ++c) cost[c] += edge.cost[total.choice[edge.src] * cols + c];
      } else if (src_chunk == k && solved[dst_chunk]) {
        std::vector<double>& cost = sub.nodes[local[edge.src]].strategy_cost;
        for (size_t r = 0; r < cost.size(); ++r) cost[r] += edge.cost[r * cols + total.choice[edge.dst]];
      }
    }
    if (request.memory_budget_bytes > 0 && first_pass) {
      sub.memory_budget_bytes = share[k];
    } else if (request.memory_budget_bytes > 0) {
      int64_t others = 0;
      for (int i = 0; i < n; ++i) {
        if (chunk[i] == k) continue;
        others += solved[chunk[i]] ? request.nodes[i].strategy_memory_bytes[total.choice[i]]
                                   : least_memory(request.nodes[i]);
      }
      sub.memory_budget_bytes = std::max<int64_t>(1, request.memory_budget_bytes - others);
    }
    sub.time_limit_seconds = request.time_limit_seconds;
    std::string key;
    std::optional<SolverResponse> cached;
    if (problem.chunk_cache != nullptr) {
      key = request_key(sub, solver.name());
      cached = problem.chunk_cache->find(key);
    }
    SolverResponse part;
    if (cached) {
      part = std::move(*cached);
      ++stats->hits;
    } else {
      STRATA_ASSIGN_OR_RETURN(part, solver.solve(sub));
      ++stats->solves;
      total.num_variables += part.num_variables;
      total.num_constraints += part.num_constraints;
      total.solve_seconds += part.solve_seconds;
      if (problem.chunk_cache != nullptr) problem.chunk_cache->store(key, part);
    }
    if (part.status == SolverStatus::time_limit_feasible) total.status = part.status;
    if (part.status != SolverStatus::infeasible && !part.choice.empty()) {
      std::vector<int> full(n, -1);
      for (size_t m = 0; m < members.size(); ++m) full[members[m]] = part.choice[m];
      part.choice = std::move(full);
    }
    return part;
  };

  // First pass in layer order, each chunk optimal given the ones before it.
  for (int k = 0; k < num_chunks; ++k) {
    STRATA_ASSIGN_OR_RETURN(SolverResponse part, solve_chunk(k));
    if (part.status == SolverStatus::infeasible || part.choice.empty()) {
      total.status = SolverStatus::infeasible;
      total.choice.clear();
      total.message = "ILP " + std::to_string(k + 1) + " of " + std::to_string(num_chunks) + ": " + part.message;
      return total;
    }
    for (int i = 0; i < n; ++i) {
      if (chunk[i] == k) total.choice[i] = part.choice[i];
    }
    solved[k] = true;
  }
  // Then one sweep that re-solves each chunk with all the others fixed (it now sees the gradients
  // that come back from later layers); a chunk's new choice is kept only when it lowers the cost.
  // A chunk ILP that fails here (no assignment within its time limit) keeps the chunk's choice.
  first_pass = false;
  double cost = evaluate_cost(request, total.choice);
  if (num_chunks > 1) {
    for (int k = 0; k < num_chunks; ++k) {
      Expected<SolverResponse> part = solve_chunk(k);
      if (!part.is_ok() || part->status == SolverStatus::infeasible || part->choice.empty()) continue;
      std::vector<int> candidate = total.choice;
      for (int i = 0; i < n; ++i) {
        if (chunk[i] == k) candidate[i] = part->choice[i];
      }
      const double candidate_cost = evaluate_cost(request, candidate);
      if (candidate_cost < cost) {
        cost = candidate_cost;
        total.choice = std::move(candidate);
      }
    }
  }
  total.objective = evaluate_cost(request, total.choice);
  return total;
}

}  // namespace

std::optional<SolverResponse> ChunkCache::find(const std::string& key) {
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = entries_.find(key);
  if (it == entries_.end()) {
    ++misses_;
    return std::nullopt;
  }
  ++hits_;
  return it->second;
}

void ChunkCache::store(const std::string& key, const SolverResponse& response) {
  std::lock_guard<std::mutex> lock(mutex_);
  entries_.emplace(key, response);
}

int64_t ChunkCache::hits() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return hits_;
}

int64_t ChunkCache::misses() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return misses_;
}

std::vector<ir::OpId> ops_owned_by_prefix(const ir::Graph& graph, const std::string& prefix) {
  std::vector<ir::OpId> ops;
  for (ir::OpId id = 0; id < graph.num_ops(); ++id) {
    const ir::Op& op = graph.op(id);
    const ir::Op& owner = op.forward_op != ir::kNoOp ? graph.op(op.forward_op) : op;
    if (owner.name.rfind(prefix, 0) == 0) ops.push_back(id);
  }
  return ops;
}

Expected<StageRequest> build_stage_request(const StageProblem& problem) {
  if (problem.graph == nullptr) return make_error("", "graph", "stage problem without a graph");
  if (problem.cluster == nullptr) return make_error("", "cluster", "stage problem without a cluster");
  if (problem.comm == nullptr) return make_error("", "comm", "stage problem without a communication model");
  if (problem.mesh.num_devices() != problem.submesh.num_devices() || problem.mesh.n0 < 1 || problem.mesh.n1 < 1) {
    return make_error("", "mesh", std::to_string(problem.mesh.n0) + "x" + std::to_string(problem.mesh.n1) +
                                      " does not view the " + std::to_string(problem.submesh.rows) + "x" +
                                      std::to_string(problem.submesh.cols) + " submesh");
  }
  if (problem.memory_budget_bytes < 0) return make_error("", "memory_budget_bytes", "must be >= 0 (0: none)");
  if (problem.num_micro_batches < 1) return make_error("", "num_micro_batches", "must be at least 1");
  if (problem.max_ilp_decision_nodes < 0) return make_error("", "max_ilp_decision_nodes", "must be >= 0 (0: no limit)");
  if (problem.budget_search_solves < 0) return make_error("", "budget_search_solves", "must be >= 0 (0: no search)");
  std::optional<cost::ComputeModel> own;
  if (problem.compute == nullptr) own.emplace(*problem.cluster);
  Builder builder(problem, problem.compute != nullptr ? *problem.compute : *own);
  const ir::Graph& graph = *problem.graph;
  if (problem.fused != nullptr) {
    builder.fused = *problem.fused;
  } else if (builder.compute.prices_cuda_fusion()) {
    STRATA_ASSIGN_OR_RETURN(builder.fused, cost::fused_for_cuda(graph));
  }
  std::vector<ir::OpId> ops = problem.ops;
  if (ops.empty()) {
    for (ir::OpId id = 0; id < graph.num_ops(); ++id) ops.push_back(id);
  }
  std::sort(ops.begin(), ops.end());
  ops.erase(std::unique(ops.begin(), ops.end()), ops.end());
  for (ir::OpId id : ops) {
    if (id < 0 || id >= graph.num_ops()) return make_error("", "ops", "op id " + std::to_string(id) + " out of range");
    builder.node_of[id] = static_cast<int>(builder.out.node_ops.size());
    builder.out.node_ops.push_back(id);
  }
  STRATA_RETURN_IF_ERROR(builder.add_nodes());
  builder.add_followers();
  builder.add_edges();
  if (problem.prune_dominated) {
    prune_dominated(builder.out);
  } else {
    for (const SolverNode& node : builder.out.request.nodes) {
      if (node.follow < 0) builder.out.strategies_before_pruning += static_cast<int>(node.strategy_cost.size());
    }
    builder.out.strategies_after_pruning = builder.out.strategies_before_pruning;
  }
  builder.out.request.memory_budget_bytes = problem.memory_budget_bytes;
  builder.out.request.time_limit_seconds = problem.time_limit_seconds;
  return std::move(builder.out);
}

Expected<StageSolution> solve_stage(const StageProblem& problem, ilp::Solver& solver) {
  STRATA_ASSIGN_OR_RETURN(StageRequest stage, build_stage_request(problem));
  int decisions = 0;
  for (const SolverNode& node : stage.request.nodes) decisions += node.follow < 0 ? 1 : 0;
  const int limit = problem.max_ilp_decision_nodes;
  const bool split = limit > 0 && decisions > limit;
  ChunkStats chunks;
  int solver_runs = 0;
  int num_variables = 0, num_constraints = 0;
  double solve_seconds = 0;
  // Every solve of the stage (the budget search's and the budgeted ILP's) adds to the bookkeeping.
  auto solve_request = [&](const SolverRequest& request) -> Expected<SolverResponse> {
    if (!split) {
      ++solver_runs;
      STRATA_ASSIGN_OR_RETURN(SolverResponse response, solver.solve(request));
      num_variables += response.num_variables;
      num_constraints += response.num_constraints;
      solve_seconds += response.solve_seconds;
      return response;
    }
    ChunkStats run;
    STRATA_ASSIGN_OR_RETURN(SolverResponse response, solve_in_chunks(problem, stage, request, solver, limit, &run));
    chunks.chunks = run.chunks;
    chunks.solves += run.solves;
    chunks.hits += run.hits;
    num_variables += response.num_variables;
    num_constraints += response.num_constraints;
    solve_seconds += response.solve_seconds;
    return response;
  };
  // Under a budget: the Lagrangian search first (unbudgeted solves), then the budgeted ILP (or
  // chunks) as before; the cheaper answer within the budget wins, and the search's answer stands
  // where the ILP found none (infeasible chunk budget shares, or no assignment within the time limit).
  std::optional<detail::BudgetSearch> search;
  const auto search_start = std::chrono::steady_clock::now();
  if (problem.memory_budget_bytes > 0 && problem.budget_search_solves > 0) {
    auto unbudgeted = [&](const SolverRequest& request) { return solve_request(request); };
    // A failed search (an unbudgeted ILP with no assignment within its time limit) leaves the ILP alone.
    Expected<detail::BudgetSearch> found = detail::lagrangian_search(stage.request, unbudgeted, problem.budget_search_solves);
    if (found.is_ok() && !found->choice.empty()) search = std::move(*found);
  }
  const double search_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - search_start).count();
  // Proven optimal (single ILPs only: chunked solves are not exact): the budgeted ILP can add nothing.
  const bool proven = search && !split && search->exact &&
                      search->cost <= search->lower_bound + 1e-9 * std::abs(search->cost);
  SolverResponse response;
  if (!proven) {
    Expected<SolverResponse> ilp = solve_request(stage.request);
    if (!ilp.is_ok() && !search) return ilp.error();
    if (ilp.is_ok()) response = std::move(*ilp);
  }
  if (search && (response.status == SolverStatus::infeasible || response.choice.empty() ||
                 search->cost < response.objective)) {
    response.choice = search->choice;
    response.objective = search->cost;
    response.status = proven ? SolverStatus::optimal : SolverStatus::time_limit_feasible;
  }
  StageSolution solution;
  solution.num_ilps = split ? chunks.chunks : 1;
  solution.ilps_solved = split ? chunks.solves : solver_runs;
  solution.chunk_cache_hits = chunks.hits;
  solution.budget_search_solves = search ? search->solves : 0;
  solution.budget_search_moves = search ? search->moves : 0;
  solution.budget_search_objective_seconds = search ? search->cost : 0;
  solution.budget_search_wall_seconds = search_seconds;
  solution.objective_seconds = response.objective;
  solution.num_variables = num_variables;
  solution.num_constraints = num_constraints;
  solution.solve_seconds = solve_seconds;
  if (response.status == SolverStatus::infeasible || response.choice.empty()) {
    solution.reason = response.message.empty() ? "no feasible assignment" : response.message;
    return solution;
  }
  solution.feasible = true;
  const ir::Graph& graph = *problem.graph;
  auto role_seconds = [&](ir::Role role, bool into_update) -> double& {
    if (role == ir::Role::update) return into_update ? solution.grad_sync_seconds : solution.update_seconds;
    return role == ir::Role::backward ? solution.backward_seconds : solution.forward_seconds;
  };
  for (size_t n = 0; n < stage.node_ops.size(); ++n) {
    const ir::Op& op = graph.op(stage.node_ops[n]);
    const Strategy& s = stage.strategies[n][response.choice[n]];
    solution.shardings[op.name] = s.sharding;
    role_seconds(op.role, false) += s.compute_seconds + s.comm_seconds;
    for (size_t o = 0; o < op.outputs.size(); ++o) {
      auto shape = local_shape(s.sharding.outputs[o], op.outputs[o].shape, problem.mesh);
      const int64_t bytes = ir::TensorType{*shape, op.outputs[o].dtype}.bytes();
      const int64_t kept = stage.request.nodes[n].strategy_memory_bytes[response.choice[n]];
      if (op.kind == ir::OpKind::Parameter) {
        (op.role == ir::Role::update ? solution.optimizer_state_bytes : solution.weights_bytes) += bytes;
      } else if (kept > 0) {
        solution.activation_bytes += kept;
        break;  // the node's kept bytes cover all its kept outputs
      }
    }
  }
  for (const SolverEdge& edge : stage.request.edges) {
    const size_t cols = stage.request.nodes[edge.dst].strategy_cost.size();
    const ir::Op& consumer = graph.op(stage.node_ops[edge.dst]);
    const double per_step = consumer.role == ir::Role::update ? 1.0 : static_cast<double>(problem.num_micro_batches);
    const double seconds = edge.cost[response.choice[edge.src] * cols + response.choice[edge.dst]] / per_step;
    role_seconds(consumer.role, is_update(consumer.kind)) += seconds;
  }
  return solution;
}

}  // namespace strata::intra
