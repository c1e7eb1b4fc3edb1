// The executor: walks this rank's stage stream instruction by instruction. Values live as local
// tiles keyed by (value, micro-batch); consumers reshard them to the spec they read (cached per
// spec); cross-stage values go by non-blocking sends and are received at the stream's recv
// instruction (adjacent stages) or at first use (any other stage pair, e.g. tied embeddings).
#include "strata/runtime/executor.h"

#include <algorithm>
#include <cstdlib>
#include <set>
#include <unordered_set>
#include <utility>

#include "strata/core/dtype.h"

#include "strata/sched/schedule.h"

#ifdef STRATA_HAVE_CUDA
#include "strata/runtime/cuda_backend.h"
#endif

namespace strata::runtime {

namespace {

// Agrees on success across `comm`: the first failing rank's message reaches every rank.
Status agree(const Status& mine, MPI_Comm comm) {
  int rank = 0, size = 1;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &size);
  const int failed_at = mine.is_ok() ? size : rank;
  int first = size;
  STRATA_MPI_CALL(MPI_Allreduce(&failed_at, &first, 1, MPI_INT, MPI_MIN, comm));
  if (first == size) return Status::ok();
  std::string text = first == rank ? mine.error().message() : std::string();
  int length = static_cast<int>(text.size());
  STRATA_MPI_CALL(MPI_Bcast(&length, 1, MPI_INT, first, comm));
  text.resize(static_cast<size_t>(length));
  STRATA_MPI_CALL(MPI_Bcast(text.data(), length, MPI_CHAR, first, comm));
  if (first == rank) return mine;
  return make_error("", "", "rank " + std::to_string(first) + ": " + text);
}

interp::Tensor host_slice(const interp::Tensor& t, const Box& box) {
  interp::Tensor out(box.sizes);
  const std::vector<int64_t> strides = interp::row_major_strides(t.shape);
  std::vector<int64_t> index;
  for (int64_t flat = 0; flat < out.numel(); ++flat) {
    int64_t rest = flat, offset = 0;
    index.assign(box.sizes.size(), 0);
    for (int64_t d = static_cast<int64_t>(box.sizes.size()) - 1; d >= 0; --d) {
      index[d] = rest % box.sizes[d];
      rest /= box.sizes[d];
    }
    for (size_t d = 0; d < index.size(); ++d) offset += (box.starts[d] + index[d]) * strides[d];
    out[flat] = t[offset];
  }
  return out;
}

// `t`'s block `box`: `t` itself when the box is all of it (every tensor of a one-device stage),
// else a copy in `scratch`.
const interp::Tensor& tile_of(const interp::Tensor& t, const Box& box, interp::Tensor& scratch) {
  const bool entire =
      box.sizes == t.shape && std::all_of(box.starts.begin(), box.starts.end(), [](int64_t s) { return s == 0; });
  if (entire) return t;
  scratch = host_slice(t, box);
  return scratch;
}

}  // namespace

interp::Tensor causal_mask(int64_t seq_len) {
  interp::Tensor mask({seq_len, seq_len});
  for (int64_t q = 0; q < seq_len; ++q) {
    for (int64_t k = q + 1; k < seq_len; ++k) mask[q * seq_len + k] = -1e9;
  }
  return mask;
}

struct Executor::Impl {
  std::unique_ptr<ir::Graph> owned_graph;  // the rewritten graph, when the backend runs one (cuda)
  const ir::Graph& graph;
  plan::Plan plan;
  Backend& backend;
  MPI_Comm world = MPI_COMM_NULL;
  uint64_t seed = 0;
  StageGraph sg;
  sched::Schedule schedule;
  std::vector<std::vector<int>> ranks;
  int stage = -1;
  int device = -1;
  Coord coord;
  cluster::LogicalMesh mesh;
  MPI_Comm mesh_comm = MPI_COMM_NULL;
  MPI_Comm axis_comm[2] = {MPI_COMM_NULL, MPI_COMM_NULL};
  std::unique_ptr<Communicator> world_c, axis_c[2];

  std::map<ir::OpId, TensorPtr> state;                         // Parameters of this stage
  std::vector<std::map<ir::Value, TensorPtr>> values;          // per micro-batch, spec_on(value, stage)
  std::vector<std::map<std::pair<ir::Value, std::string>, TensorPtr>> resharded;  // per micro-batch
  std::map<ir::Value, TensorPtr> accumulated;                  // gradients summed over micro-batches
  std::map<ir::Value, TensorPtr> synced;                       // accumulated, in the update op's spec
  // Overlapping the gradient all-reduce with backward compute (issue 8): the gradients whose sum
  // reaches the update's spec by exactly one all-reduce, made on this stage (overlap_grads; the
  // mesh axis of the all-reduce beside each), and the micro-batch of the stream's last backward
  // instruction. There, right after the op that makes such a gradient, its sum is complete: it is
  // scaled and its all-reduce started; grad_sync waits for it (in_flight, in issue order).
  bool overlap = true;
  std::map<ir::Value, int> overlap_grads;
  int last_backward_micro_batch = -1;
  struct InFlight {
    ir::Value grad;
    TensorPtr sum;
    std::unique_ptr<Request> request;
  };
  std::vector<InFlight> in_flight;
  std::vector<std::unique_ptr<Request>> pending_sends;
  std::vector<std::set<int>> sent, received;                   // transfer ids done, per micro-batch
  double loss_sum = 0;
  std::vector<TensorPtr> losses;  // this step's micro-batch losses, read back once at its end
  struct FedInput {
    interp::Tensor host;
    TensorPtr device;
  };
  std::map<ir::OpId, FedInput> last_fed;  // per Input op: the last tile uploaded

  // Freeing after last use: how often one micro-batch reads each value on this stage (consumer
  // ops, sends, the loss, gradient accumulation), and the reads left per micro-batch. A value is
  // dropped (with its reshard cache) at its last read; what backward reads stays stashed until
  // then, as many micro-batches as the schedule has in flight.
  std::map<ir::Value, int> reads;
  std::vector<std::map<ir::Value, int>> reads_left;
  bool free_after_last_use = true;
  MemoryStats memory;
  bool tracing = false;
  int64_t current_step = 0;
  double trace_origin = 0;
  std::vector<TraceEvent> trace;
  std::vector<TraceEvent> nested_trace;  // events inside the running instruction, recorded after it

  Impl(const ir::Graph& g, std::unique_ptr<ir::Graph> owned, const plan::Plan& p, Backend& b)
      : owned_graph(std::move(owned)), graph(owned_graph ? *owned_graph : g), plan(p), backend(b) {}

  ~Impl() {
    in_flight.clear();
    pending_sends.clear();
    for (MPI_Comm* c : {&axis_comm[0], &axis_comm[1], &mesh_comm}) {
      if (*c != MPI_COMM_NULL) MPI_Comm_free(c);
    }
  }

  int num_micro_batches() const { return plan.num_micro_batches; }
  int tag(const Transfer& t, int micro_batch) const { return t.id * (num_micro_batches() + 1) + micro_batch; }

  Status setup(MPI_Comm w, uint64_t s) {
    world = w;
    seed = s;
    int rank = 0, size = 0;
    STRATA_MPI_CALL(MPI_Comm_rank(world, &rank));
    STRATA_MPI_CALL(MPI_Comm_size(world, &size));
    ranks = stage_ranks(plan);
    std::tie(stage, device) = locate_rank(plan, rank);
    mesh = stage >= 0 ? plan.stages[stage].logical_mesh : cluster::LogicalMesh{};
    coord = coord_of(std::max(device, 0), mesh);
    // Communicators first (collective over the world), whatever the plan's problems.
    STRATA_MPI_CALL(MPI_Comm_split(world, stage < 0 ? MPI_UNDEFINED : stage, device, &mesh_comm));
    if (mesh_comm != MPI_COMM_NULL) {
      STRATA_MPI_CALL(MPI_Comm_split(mesh_comm, coord.j, coord.i, &axis_comm[0]));
      STRATA_MPI_CALL(MPI_Comm_split(mesh_comm, coord.i, coord.j, &axis_comm[1]));
    }
    Status mine = Status::ok();
    if (size != plan.cluster.num_devices()) {
      mine = make_error(plan.source_file, "cluster", "the plan needs " + std::to_string(plan.cluster.num_devices()) +
                                                        " ranks (one per device), launched with " + std::to_string(size));
    } else if (stage < 0) {
      mine = make_error(plan.source_file, "stages", "no stage's submesh holds rank " + std::to_string(rank));
    }
    if (mine.is_ok()) {
      auto partitioned = partition(graph, plan);
      if (partitioned) {
        sg = std::move(*partitioned);
      } else {
        mine = partitioned.error();
      }
    }
    STRATA_RETURN_IF_ERROR(agree(mine, world));
    schedule = sched::from_plan(plan);
    count_reads();
    STRATA_RETURN_IF_ERROR(find_overlap_grads());
    STRATA_ASSIGN_OR_RETURN(world_c, backend.communicator(world));
    STRATA_ASSIGN_OR_RETURN(axis_c[0], backend.communicator(axis_comm[0]));
    STRATA_ASSIGN_OR_RETURN(axis_c[1], backend.communicator(axis_comm[1]));
    int64_t max_tag = static_cast<int64_t>(sg.transfers.size() + 1) * (num_micro_batches() + 1);
    if (max_tag > world_c->max_tag()) {
      return make_error(plan.source_file, "stages", "too many cross-stage transfers for MPI's tag range");
    }
    for (ir::OpId id : sg.stage_ops[stage]) {
      if (graph.op(id).kind != ir::OpKind::Parameter) continue;
      STRATA_RETURN_IF_ERROR(set_parameter(id, interp::init_parameter(graph.op(id), seed)));
    }
    return Status::ok();
  }

  void count_reads() {
    reads.clear();
    for (ir::OpId id : sg.stage_ops[stage]) {
      const ir::Op& op = graph.op(id);
      if (op.role == ir::Role::update) continue;  // reads `synced` and `state`, not values
      for (const ir::Value& v : op.inputs) ++reads[v];
    }
    for (const Transfer& t : sg.transfers) {
      if (t.from_stage == stage && !t.per_step) ++reads[t.value];
    }
    const ir::Value loss = graph.outputs().at(0);
    if (sg.stage_of[loss.op] == stage) ++reads[loss];
    std::set<ir::Value> accumulated_here;
    for (const auto& [update, g] : sg.update_grad) {
      if (accumulates_here(g) && accumulated_here.insert(g).second) ++reads[g];
    }
  }

  // The gradients whose all-reduce may start inside the last backward phase (overlap_grads):
  // made on this stage, summed here, read by an update op here (the first one in update_grad
  // order is the one grad_sync reshards for) and not sent to another stage once per step, with a
  // reshard from its spec to that update's of exactly one all-reduce (the data-parallel case).
  // Everything here is a function of the plan, the partition and the mesh shape, never of this
  // rank's coordinate (reshard_steps' collectives come from the two specs alone): every rank of
  // the stage's mesh picks the same gradients, so all of them issue the same collectives.
  Status find_overlap_grads() {
    overlap_grads.clear();
    last_backward_micro_batch = -1;
    for (const sched::Instruction& in : schedule.streams[stage]) {
      if (in.op == sched::Op::backward) last_backward_micro_batch = in.micro_batch;
    }
    std::set<ir::Value> seen;
    for (const auto& [update, g] : sg.update_grad) {
      if (sg.stage_of[update] != stage || !seen.insert(g).second) continue;
      if (sg.stage_of[g.op] != stage || !accumulates_here(g)) continue;
      bool sent_per_step = false;
      for (const Transfer& t : sg.transfers) sent_per_step = sent_per_step || (t.per_step && t.value == g && t.from_stage == stage);
      if (sent_per_step) continue;
      STRATA_ASSIGN_OR_RETURN(intra::ShardingSpec have, sg.spec_on(g, stage));
      const intra::ShardingSpec& want = sg.sharding[update].inputs[1];
      if (have == want) continue;
      STRATA_ASSIGN_OR_RETURN(auto steps, reshard_steps(have, want, graph.type(g).shape, mesh, coord));
      if (steps.size() == 1 && steps[0].kind == StepKind::all_reduce) overlap_grads[g] = steps[0].axis;
    }
    return Status::ok();
  }

  // One read of `v` by micro-batch `micro_batch` is done: the last one drops it.
  void release(ir::Value v, int micro_batch) {
    if (!free_after_last_use) return;
    auto left = reads_left[micro_batch].find(v);
    if (left == reads_left[micro_batch].end() || --left->second > 0) return;
    drop(v, micro_batch);
  }
  void drop(ir::Value v, int micro_batch) {
    values[micro_batch].erase(v);
    auto& cache = resharded[micro_batch];
    for (auto it = cache.lower_bound({v, std::string()}); it != cache.end() && it->first.first == v;) it = cache.erase(it);
  }
  // A value no one on this stage reads this micro-batch (an unused output) goes at once.
  void drop_if_unread(ir::Value v, int micro_batch) {
    if (free_after_last_use && !reads_left[micro_batch].count(v)) drop(v, micro_batch);
  }

  // Bytes of the distinct tensors the executor holds: parameters and optimizer state, values and
  // reshard caches of every micro-batch, accumulated and synced gradients.
  int64_t live_bytes() const {
    std::unordered_set<const DeviceTensor*> seen;
    int64_t bytes = 0;
    auto add = [&](const TensorPtr& t) {
      if (t && seen.insert(t.get()).second) bytes += t->numel() * dtype_bytes(t->dtype());
    };
    for (const auto& [id, t] : state) add(t);
    for (const auto& per : values) for (const auto& [v, t] : per) add(t);
    for (const auto& per : resharded) for (const auto& [k, t] : per) add(t);
    for (const auto& [g, t] : accumulated) add(t);
    for (const auto& [g, t] : synced) add(t);
    for (const InFlight& f : in_flight) add(f.sum);
    return bytes;
  }
  void note_memory() {
    if (track_memory) memory.peak_live_bytes = std::max(memory.peak_live_bytes, live_bytes());
  }
  bool track_memory = false;

  Status set_parameter(ir::OpId id, const interp::Tensor& global) {
    const ir::Op& op = graph.op(id);
    if (global.shape != op.outputs[0].shape) {
      return make_error("", "parameters." + op.name, "shape " + ir::shape_string(global.shape) + " differs from the graph's " +
                                                          ir::shape_string(op.outputs[0].shape));
    }
    interp::Tensor scratch;
    const Box box = tile_box(sg.sharding[id].outputs[0], op.outputs[0].shape, mesh, coord);
    const interp::Tensor& tile = tile_of(global, box, scratch);
    STRATA_ASSIGN_OR_RETURN(state[id], backend.upload(tile, backend.storage_dtype(op.outputs[0].dtype)));
    return Status::ok();
  }

  // --- resharding -------------------------------------------------------------------------

  Expected<TensorPtr> copy(const DeviceTensor& t) {
    return backend.slice(t, std::vector<int64_t>(t.shape().size(), 0), t.shape());
  }

  Expected<TensorPtr> apply(TensorPtr t, const std::vector<LocalStep>& steps) {
    for (const LocalStep& step : steps) {
      switch (step.kind) {
        case StepKind::all_reduce: {
          // In place when no one else holds the tensor (a gradient handed over by grad_sync).
          if (t.use_count() > 1) {
            STRATA_ASSIGN_OR_RETURN(t, copy(*t));
          }
          STRATA_RETURN_IF_ERROR(axis_c[step.axis]->all_reduce(*t));
          break;
        }
        case StepKind::reduce_scatter: {
          STRATA_ASSIGN_OR_RETURN(t, axis_c[step.axis]->reduce_scatter(*t, step.dim));
          break;
        }
        case StepKind::all_gather: {
          STRATA_ASSIGN_OR_RETURN(t, axis_c[step.axis]->all_gather(*t, step.dim));
          break;
        }
        case StepKind::all_to_all: {
          STRATA_ASSIGN_OR_RETURN(t, axis_c[step.axis]->all_to_all(*t, step.dim, step.dim2));
          break;
        }
        case StepKind::slice: {
          STRATA_ASSIGN_OR_RETURN(t, backend.slice(*t, step.box.starts, step.box.sizes));
          break;
        }
        case StepKind::zero: {
          STRATA_ASSIGN_OR_RETURN(TensorPtr c, copy(*t));
          STRATA_RETURN_IF_ERROR(backend.scale(*c, 0.0));
          t = c;
          break;
        }
      }
    }
    return t;
  }

  Expected<TensorPtr> reshard(TensorPtr t, const intra::ShardingSpec& from, const intra::ShardingSpec& to,
                              const ir::Shape& shape) {
    if (from == to) return t;
    STRATA_ASSIGN_OR_RETURN(auto steps, reshard_steps(from, to, shape, mesh, coord));
    return apply(std::move(t), steps);
  }

  // --- cross-stage transfers ---------------------------------------------------------------

  Status post_send(const Transfer& t, const TensorPtr& value, int micro_batch) {
    const ir::Shape& shape = graph.type(t.value).shape;
    const intra::ShardingSpec& have = sg.sharding[t.value.op].outputs[t.value.index];
    STRATA_ASSIGN_OR_RETURN(TensorPtr complete, reshard(value, have, t.sent, shape));
    for (const Message& m : t.messages) {
      if (m.from_device != device) continue;
      STRATA_ASSIGN_OR_RETURN(TensorPtr block, backend.slice(*complete, m.from_box.starts, m.from_box.sizes));
      STRATA_ASSIGN_OR_RETURN(auto request, world_c->isend(block, ranks[t.to_stage][m.to_device], tag(t, micro_batch)));
      pending_sends.push_back(std::move(request));
    }
    return Status::ok();
  }

  Expected<TensorPtr> receive(const Transfer& t, int micro_batch) {
    const ir::Shape& shape = graph.type(t.value).shape;
    STRATA_ASSIGN_OR_RETURN(ir::Shape local, intra::local_shape(t.landing, shape, mesh));
    const DType dtype = backend.storage_dtype(graph.type(t.value).dtype);
    STRATA_ASSIGN_OR_RETURN(TensorPtr tile, backend.alloc(ir::TensorType{local, dtype}));
    std::vector<std::pair<const Message*, TensorPtr>> blocks;
    std::vector<std::unique_ptr<Request>> requests;
    for (const Message& m : t.messages) {
      if (m.to_device != device) continue;
      STRATA_ASSIGN_OR_RETURN(TensorPtr block, backend.alloc(ir::TensorType{m.to_box.sizes, dtype}));
      STRATA_ASSIGN_OR_RETURN(auto request, world_c->irecv(block, ranks[t.from_stage][m.from_device], tag(t, micro_batch)));
      requests.push_back(std::move(request));
      blocks.emplace_back(&m, block);
    }
    for (auto& r : requests) STRATA_RETURN_IF_ERROR(r->wait());
    for (auto& [m, block] : blocks) STRATA_RETURN_IF_ERROR(backend.insert(*tile, *block, m->to_box.starts));
    return tile;
  }

  Status receive_into_values(const Transfer& t, int micro_batch) {
    if (received[micro_batch].count(t.id)) return Status::ok();
    STRATA_ASSIGN_OR_RETURN(values[micro_batch][t.value], receive(t, micro_batch));
    received[micro_batch].insert(t.id);
    return Status::ok();
  }

  // --- running ops -------------------------------------------------------------------------

  Expected<TensorPtr> value_on_stage(ir::Value v, int micro_batch) {
    auto it = values[micro_batch].find(v);
    if (it != values[micro_batch].end()) return it->second;
    const Transfer* t = sg.transfer_to(v, stage);
    STRATA_CHECK(t != nullptr && !t->per_step, "value read before it was computed on its stage");
    STRATA_RETURN_IF_ERROR(receive_into_values(*t, micro_batch));
    return values[micro_batch][v];
  }

  Expected<TensorPtr> input_of(const ir::Op& op, size_t k, int micro_batch) {
    const ir::Value v = op.inputs[k];
    STRATA_ASSIGN_OR_RETURN(TensorPtr base, value_on_stage(v, micro_batch));
    const intra::ShardingSpec& want = sg.sharding[op.id].inputs[k];
    // A value made on this stage: its spec without a copy (the per-op path of one-stage plans).
    if (sg.stage_of[v.op] == stage && sg.sharding[v.op].outputs[v.index] == want) return base;
    STRATA_ASSIGN_OR_RETURN(intra::ShardingSpec have, sg.spec_on(v, stage));
    if (have == want) return base;
    auto key = std::make_pair(v, want.to_string());
    auto cached = resharded[micro_batch].find(key);
    if (cached != resharded[micro_batch].end()) return cached->second;
    STRATA_ASSIGN_OR_RETURN(TensorPtr out, reshard(base, have, want, graph.type(v).shape));
    resharded[micro_batch][key] = out;
    return out;
  }

  Status run_op(ir::OpId id, int micro_batch, const Feeder& feed) {
    const ir::Op& op = graph.op(id);
    auto& vals = values[micro_batch];
    if (op.kind == ir::OpKind::Parameter) {
      vals[ir::Value{id, 0}] = state.at(id);
      drop_if_unread(ir::Value{id, 0}, micro_batch);
      return Status::ok();
    }
    if (op.kind == ir::OpKind::Input) {
      auto whole = feed(op, micro_batch);
      if (!whole) return whole.error();
      if (whole->shape != op.outputs[0].shape) {
        return make_error("", "inputs." + op.name, "fed " + ir::shape_string(whole->shape) + ", the graph wants " +
                                                        ir::shape_string(op.outputs[0].shape));
      }
      interp::Tensor scratch;
      const Box box = tile_box(sg.sharding[id].outputs[0], op.outputs[0].shape, mesh, coord);
      const interp::Tensor& tile = tile_of(*whole, box, scratch);
      const ir::Value out{id, 0};
      // The same values as this Input's last upload (the causal mask, every micro-batch and step):
      // its device tensor again, no conversion, copy or synchronisation. Ops only read Inputs.
      FedInput& last = last_fed[id];
      if (last.device && last.host.shape == tile.shape && last.host.data == tile.data) {
        vals[out] = last.device;
      } else {
        STRATA_ASSIGN_OR_RETURN(vals[out], backend.upload(tile, backend.storage_dtype(op.outputs[0].dtype)));
        last.host = tile;
        last.device = vals[out];
      }
      note_memory();
      drop_if_unread(out, micro_batch);
      return Status::ok();
    }
    std::vector<TensorPtr> inputs;
    for (size_t k = 0; k < op.inputs.size(); ++k) {
      STRATA_ASSIGN_OR_RETURN(TensorPtr in, input_of(op, k, micro_batch));
      inputs.push_back(std::move(in));
    }
    std::vector<const DeviceTensor*> raw;
    for (const TensorPtr& t : inputs) raw.push_back(t.get());
    STRATA_ASSIGN_OR_RETURN(auto outputs, backend.run_op(sg.local_ops[id], raw));
    for (size_t k = 0; k < outputs.size(); ++k) vals[ir::Value{id, static_cast<int32_t>(k)}] = outputs[k];
    note_memory();  // the op's inputs are still held: the peak of this op
    for (const ir::Value& v : op.inputs) release(v, micro_batch);
    for (size_t k = 0; k < outputs.size(); ++k) drop_if_unread(ir::Value{id, static_cast<int32_t>(k)}, micro_batch);
    return Status::ok();
  }

  // Whether the stream carries a send instruction that covers transfer `t` for `micro_batch`.
  bool has_send_instruction(const Transfer& t, int micro_batch) const {
    const bool forward = graph.op(t.value.op).role == ir::Role::forward;
    const sched::Op kind = forward ? sched::Op::send_activation : sched::Op::send_gradient;
    if (t.to_stage != (forward ? stage + 1 : stage - 1)) return false;
    for (const sched::Instruction& in : schedule.streams[stage]) {
      if (in.op == kind && in.micro_batch == micro_batch && in.peer == t.to_stage) return true;
    }
    return false;
  }

  Status send_matching(int micro_batch, ir::Role role, int peer) {
    for (const Transfer& t : sg.transfers) {
      if (t.from_stage != stage || t.per_step || sent[micro_batch].count(t.id)) continue;
      if (graph.op(t.value.op).role != role) continue;
      if (peer >= 0 ? t.to_stage != peer : has_send_instruction(t, micro_batch)) continue;
      STRATA_RETURN_IF_ERROR(post_send(t, values[micro_batch].at(t.value), micro_batch));
      sent[micro_batch].insert(t.id);
      release(t.value, micro_batch);
    }
    return Status::ok();
  }

  Status receive_matching(int micro_batch, ir::Role role, int peer) {
    for (const Transfer& t : sg.transfers) {
      if (t.to_stage != stage || t.from_stage != peer || t.per_step) continue;
      if (graph.op(t.value.op).role != role) continue;
      STRATA_RETURN_IF_ERROR(receive_into_values(t, micro_batch));
    }
    return Status::ok();
  }

  // Where a gradient an update op reads is summed over micro-batches: on the update's stage when
  // the value is there every micro-batch, else on its producer's (then sent once, at grad_sync).
  bool accumulates_here(ir::Value g) const {
    for (const auto& [update, grad] : sg.update_grad) {
      if (!(grad == g)) continue;
      const int s = sg.stage_of[update];
      const Transfer* t = sg.transfer_to(g, s);
      const int where = (sg.stage_of[g.op] == s || (t && !t->per_step)) ? s : sg.stage_of[g.op];
      if (where == stage) return true;
    }
    return false;
  }

  Status run_phase(ir::Role role, int micro_batch, const Feeder& feed) {
    // In the last backward phase a gradient of overlap_grads is summed and its all-reduce started
    // right after the op that makes it, while the ops after it run. The order of these
    // all-reduces (and of every other collective) is the same on every rank of the mesh: all run
    // the same stage_ops in the same order, and overlap_grads is the same set on all of them.
    const bool early = overlap && role == ir::Role::backward && micro_batch == last_backward_micro_batch &&
                       !overlap_grads.empty();
    std::set<ir::Value> done;
    for (ir::OpId id : sg.stage_ops[stage]) {
      if (graph.op(id).role != role) continue;
      STRATA_RETURN_IF_ERROR(run_op(id, micro_batch, feed));
      if (!early) continue;
      for (size_t k = 0; k < graph.op(id).outputs.size(); ++k) {
        const ir::Value g{id, static_cast<int32_t>(k)};
        auto axis = overlap_grads.find(g);
        if (axis == overlap_grads.end() || !done.insert(g).second) continue;
        STRATA_RETURN_IF_ERROR(accumulate(g, micro_batch));
        STRATA_RETURN_IF_ERROR(start_all_reduce(g, axis->second, micro_batch));
      }
    }
    STRATA_RETURN_IF_ERROR(send_matching(micro_batch, role, -1));
    if (role == ir::Role::forward) {
      const ir::Value loss = graph.outputs().at(0);
      if (sg.stage_of[loss.op] == stage) {
        STRATA_ASSIGN_OR_RETURN(TensorPtr whole, reshard(values[micro_batch].at(loss), sg.sharding[loss.op].outputs[loss.index],
                                                         intra::ShardingSpec{}, {}));
        losses.push_back(whole);  // downloaded at the step's end: no synchronisation per micro-batch
        release(loss, micro_batch);
      }
      return Status::ok();
    }
    for (const auto& [update, g] : sg.update_grad) {
      if (done.count(g) || !accumulates_here(g)) continue;
      done.insert(g);
      STRATA_RETURN_IF_ERROR(accumulate(g, micro_batch));
    }
    return Status::ok();
  }

  // Adds micro-batch `micro_batch`'s gradient `g` into its sum over micro-batches.
  Status accumulate(ir::Value g, int micro_batch) {
    STRATA_ASSIGN_OR_RETURN(TensorPtr value, value_on_stage(g, micro_batch));
    auto it = accumulated.find(g);
    if (it != accumulated.end()) {
      STRATA_RETURN_IF_ERROR(backend.add_into(*it->second, *value));
      note_memory();
      release(g, micro_batch);
      return Status::ok();
    }
    release(g, micro_batch);
    // The first micro-batch's gradient becomes the sum itself when nothing else holds it (its
    // last read on this stage); otherwise the sum starts from a copy.
    if (value.use_count() > 1) {
      STRATA_ASSIGN_OR_RETURN(value, copy(*value));
    }
    accumulated[g] = std::move(value);
    note_memory();
    return Status::ok();
  }

  // g's sum is complete (the last backward phase added it): the mean over micro-batches, then its
  // all-reduce over mesh axis `axis` started in place. The sum moves from `accumulated` to
  // in_flight (held there and by the request until grad_sync waits), so nothing touches it before.
  Status start_all_reduce(ir::Value g, int axis, int micro_batch) {
    const double start = tracing ? MPI_Wtime() : 0;
    auto it = accumulated.find(g);
    STRATA_CHECK(it != accumulated.end(), "a gradient to all-reduce was not accumulated");
    TensorPtr sum = std::move(it->second);
    accumulated.erase(it);
    if (sum.use_count() > 1) {
      STRATA_ASSIGN_OR_RETURN(sum, copy(*sum));
    }
    if (num_micro_batches() > 1) STRATA_RETURN_IF_ERROR(backend.scale(*sum, 1.0 / num_micro_batches()));
    STRATA_ASSIGN_OR_RETURN(auto request, axis_c[axis]->all_reduce_async(sum));
    in_flight.push_back(InFlight{g, std::move(sum), std::move(request)});
    note_memory();
    if (tracing) {
      nested_trace.push_back(TraceEvent{"all_reduce_gradient", current_step, micro_batch, -1, start - trace_origin,
                                 MPI_Wtime() - start});
    }
    return Status::ok();
  }

  Status grad_sync() {
    // The all-reduces started in the last backward phase: their results are the synced gradients.
    for (InFlight& f : in_flight) {
      const double start = tracing ? MPI_Wtime() : 0;
      STRATA_RETURN_IF_ERROR(f.request->wait());
      f.request.reset();
      synced[f.grad] = std::move(f.sum);
      if (tracing) {
        nested_trace.push_back(TraceEvent{"wait_all_reduce_gradient", current_step, -1, -1, start - trace_origin,
                                   MPI_Wtime() - start});
      }
    }
    in_flight.clear();
    note_memory();
    const double inverse = 1.0 / num_micro_batches();
    if (num_micro_batches() > 1) {
      for (auto& [g, t] : accumulated) STRATA_RETURN_IF_ERROR(backend.scale(*t, inverse));
    }
    for (const Transfer& t : sg.transfers) {
      if (t.per_step && t.from_stage == stage) STRATA_RETURN_IF_ERROR(post_send(t, accumulated.at(t.value), num_micro_batches()));
    }
    for (const auto& [update, g] : sg.update_grad) {
      if (sg.stage_of[update] != stage || synced.count(g)) continue;
      const intra::ShardingSpec& want = sg.sharding[update].inputs[1];
      TensorPtr have;
      intra::ShardingSpec have_spec;
      const Transfer* t = sg.transfer_to(g, stage);
      if (t && t->per_step) {
        STRATA_ASSIGN_OR_RETURN(have, receive(*t, num_micro_batches()));
        have_spec = t->landing;
      } else {
        // The sends above are posted from their own blocks: the sum moves on to `synced`, so an
        // all-reduce may run in place.
        auto it = accumulated.find(g);
        STRATA_CHECK(it != accumulated.end(), "a gradient the update reads was not accumulated on its stage");
        have = std::move(it->second);
        accumulated.erase(it);
        STRATA_ASSIGN_OR_RETURN(have_spec, sg.spec_on(g, stage));
      }
      STRATA_ASSIGN_OR_RETURN(synced[g], reshard(std::move(have), have_spec, want, graph.type(g).shape));
      note_memory();
    }
    return Status::ok();
  }

  Status optimizer_update(int64_t step_number) {
    for (const auto& [update, g] : sg.update_grad) {
      if (sg.stage_of[update] != stage) continue;
      ir::Op local = sg.local_ops[update];
      if (local.kind == ir::OpKind::AdamUpdate) local.attrs.set("step", step_number);
      // Without a schedule the graph's lr stays as built, so such runs keep their values bit for bit.
      if (plan::has_schedule(plan.training)) local.attrs.set("lr", plan::learning_rate(plan.training, step_number));
      std::vector<const DeviceTensor*> inputs;
      for (size_t k = 0; k < local.inputs.size(); ++k) {
        inputs.push_back(k == 1 ? synced.at(g).get() : state.at(local.inputs[k].op).get());
      }
      STRATA_ASSIGN_OR_RETURN(auto outputs, backend.run_op(local, inputs));
      state[local.inputs[0].op] = outputs[0];
      if (local.kind == ir::OpKind::AdamUpdate) {
        state[local.inputs[2].op] = outputs[1];
        state[local.inputs[3].op] = outputs[2];
      }
    }
    return Status::ok();
  }

  Status run_stream(const Feeder& feed, int64_t step_number) {
    start_stream();
    current_step = step_number;
    for (const sched::Instruction& in : schedule.streams[stage]) {
      const double start = tracing ? MPI_Wtime() : 0;
      STRATA_RETURN_IF_ERROR(run_instruction(in, feed, step_number));
      if (tracing) {
        trace.push_back(TraceEvent{sched::op_name(in.op), step_number, in.micro_batch, in.peer, start - trace_origin,
                                   MPI_Wtime() - start});
        trace.insert(trace.end(), nested_trace.begin(), nested_trace.end());
      }
      nested_trace.clear();
    }
    for (auto& r : pending_sends) STRATA_RETURN_IF_ERROR(r->wait());
    pending_sends.clear();
    for (const TensorPtr& loss : losses) {
      STRATA_ASSIGN_OR_RETURN(interp::Tensor host, backend.download(*loss));
      loss_sum += host[0];
    }
    losses.clear();
    return backend.synchronize();
  }

  void start_stream() {
    const int b = num_micro_batches();
    values.assign(static_cast<size_t>(b), {});
    resharded.assign(static_cast<size_t>(b), {});
    sent.assign(static_cast<size_t>(b), {});
    received.assign(static_cast<size_t>(b), {});
    reads_left.assign(static_cast<size_t>(b), reads);
    accumulated.clear();
    synced.clear();
    in_flight.clear();
    loss_sum = 0;
    losses.clear();
    memory.peak_live_bytes = 0;
  }

  Status run_instruction(const sched::Instruction& in, const Feeder& feed, int64_t step_number) {
    switch (in.op) {
      case sched::Op::forward: STRATA_RETURN_IF_ERROR(run_phase(ir::Role::forward, in.micro_batch, feed)); break;
      case sched::Op::backward: STRATA_RETURN_IF_ERROR(run_phase(ir::Role::backward, in.micro_batch, feed)); break;
      case sched::Op::send_activation:
        STRATA_RETURN_IF_ERROR(send_matching(in.micro_batch, ir::Role::forward, in.peer));
        break;
      case sched::Op::send_gradient:
        STRATA_RETURN_IF_ERROR(send_matching(in.micro_batch, ir::Role::backward, in.peer));
        break;
      case sched::Op::recv_activation:
        STRATA_RETURN_IF_ERROR(receive_matching(in.micro_batch, ir::Role::forward, in.peer));
        break;
      case sched::Op::recv_gradient:
        STRATA_RETURN_IF_ERROR(receive_matching(in.micro_batch, ir::Role::backward, in.peer));
        break;
      case sched::Op::free:
        values[in.micro_batch].clear();
        resharded[in.micro_batch].clear();
        break;
      case sched::Op::grad_sync: STRATA_RETURN_IF_ERROR(grad_sync()); break;
      case sched::Op::optimizer_update: STRATA_RETURN_IF_ERROR(optimizer_update(step_number)); break;
    }
    return Status::ok();
  }
};

Executor::Executor(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Executor::~Executor() = default;

Expected<std::unique_ptr<Executor>> Executor::create(const ir::Graph& training_graph, const plan::Plan& plan,
                                                     Backend& backend, MPI_Comm world, uint64_t seed,
                                                     std::optional<bool> fuse) {
  std::unique_ptr<ir::Graph> owned;
  const plan::Plan* run_plan = &plan;
  // The cuda backend runs the graph after fuse_for_cuda (fewer passes over large tensors; the same
  // values); STRATA_CUDA_FUSE=0 runs the graph as built.
  const char* fuse_env = std::getenv("STRATA_CUDA_FUSE");
  if (fuse_env != nullptr && std::string(fuse_env) != "0" && std::string(fuse_env) != "1") {
    return make_error("", "STRATA_CUDA_FUSE", "must be 0 or 1, got '" + std::string(fuse_env) + "'");
  }
  if (!fuse) fuse = backend.name() == "cuda" && (fuse_env == nullptr || std::string(fuse_env) == "1");
#ifdef STRATA_HAVE_CUDA
  FusedPlan fused;
  if (*fuse) {
    STRATA_ASSIGN_OR_RETURN(fused, fuse_plan_for_cuda(training_graph, plan));
    owned = std::make_unique<ir::Graph>(std::move(fused.graph));
    run_plan = &fused.plan;
  }
#else
  if (*fuse) return make_error("", "fuse", "fuse_for_cuda is built only with CUDA (STRATA_CUDA=ON)");
#endif
  auto impl = std::make_unique<Impl>(training_graph, std::move(owned), *run_plan, backend);
  STRATA_RETURN_IF_ERROR(impl->setup(world, seed));
  return std::unique_ptr<Executor>(new Executor(std::move(impl)));
}

Expected<StepResult> Executor::step(const Feeder& feed, int64_t step_number) {
  Impl& m = *impl_;
  const double start = MPI_Wtime();
  // No agreement on failure here: the other ranks may be blocked in a transfer or collective with
  // this one, so a collective would hang (executor.h: the caller ends the job).
  STRATA_RETURN_IF_ERROR(m.run_stream(feed, step_number));
  // The loss lives on the last stage's devices: its first rank tells everyone.
  const ir::Value loss_value = m.graph.outputs().at(0);
  double loss = m.loss_sum / m.num_micro_batches();
  STRATA_MPI_CALL(MPI_Bcast(&loss, 1, MPI_DOUBLE, m.ranks[m.sg.stage_of[loss_value.op]][0], m.world));
  return StepResult{loss, MPI_Wtime() - start};
}

Expected<std::map<std::string, interp::Tensor>> Executor::gather_parameters() {
  Impl& m = *impl_;
  std::map<std::string, interp::Tensor> out;
  for (ir::OpId id = 0; id < m.graph.num_ops(); ++id) {
    const ir::Op& op = m.graph.op(id);
    if (op.kind != ir::OpKind::Parameter) continue;
    const int owner = m.sg.stage_of[id];
    const int root = m.ranks[owner][0];
    interp::Tensor host(op.outputs[0].shape);
    if (owner == m.stage) {
      intra::ShardingSpec whole = m.sg.sharding[id].outputs[0];
      std::fill(whole.dims.begin(), whole.dims.end(), intra::DimSharding::R);
      STRATA_ASSIGN_OR_RETURN(TensorPtr t, m.reshard(m.state.at(id), m.sg.sharding[id].outputs[0], whole, op.outputs[0].shape));
      STRATA_ASSIGN_OR_RETURN(host, m.backend.download(*t));
    }
    STRATA_MPI_CALL(MPI_Bcast(host.data.data(), static_cast<int>(host.numel()), MPI_DOUBLE, root, m.world));
    out[op.name] = std::move(host);
  }
  return out;
}

Status Executor::set_parameters(const std::map<std::string, interp::Tensor>& values) {
  Impl& m = *impl_;
  Status mine = Status::ok();
  for (ir::OpId id : m.sg.stage_ops[m.stage]) {
    const ir::Op& op = m.graph.op(id);
    if (op.kind != ir::OpKind::Parameter) continue;
    auto it = values.find(op.name);
    mine = it == values.end() ? Status(make_error("", "parameters." + op.name, "missing")) : m.set_parameter(id, it->second);
    if (!mine.is_ok()) break;
  }
  return agree(mine, m.world);
}

Expected<std::vector<CheckpointTensor>> Executor::local_state() {
  Impl& m = *impl_;
  std::vector<CheckpointTensor> out;
  for (const auto& [id, tile] : m.state) {
    const ir::Op& op = m.graph.op(id);
    CheckpointTensor t;
    t.name = op.name;
    t.sharding = m.sg.sharding[id].outputs[0].to_string();
    t.global_shape = op.outputs[0].shape;
    t.dtype = tile->dtype();
    STRATA_ASSIGN_OR_RETURN(t.value, m.backend.download(*tile));
    out.push_back(std::move(t));
  }
  return out;
}

Status Executor::load_local_state(const std::vector<CheckpointTensor>& tensors) {
  Impl& m = *impl_;
  Status mine = Status::ok();
  std::map<std::string, const CheckpointTensor*> by_name;
  for (const CheckpointTensor& t : tensors) by_name[t.name] = &t;
  for (auto& [id, tile] : m.state) {
    const ir::Op& op = m.graph.op(id);
    auto it = by_name.find(op.name);
    const std::string spec = m.sg.sharding[id].outputs[0].to_string();
    if (it == by_name.end()) {
      mine = make_error("", "tensors." + op.name, "missing from the checkpoint");
    } else if (it->second->sharding != spec || it->second->value.shape != tile->shape()) {
      mine = make_error("", "tensors." + op.name, "checkpoint tile " + it->second->sharding + " " +
                                                      ir::shape_string(it->second->value.shape) + ", this rank's " + spec +
                                                      " " + ir::shape_string(tile->shape()));
    } else {
      auto uploaded = m.backend.upload(it->second->value, tile->dtype());
      if (uploaded) {
        tile = *uploaded;
      } else {
        mine = uploaded.error();
      }
    }
    if (!mine.is_ok()) break;
  }
  return agree(mine, m.world);
}

void Executor::set_free_after_last_use(bool on) { impl_->free_after_last_use = on; }
void Executor::set_overlap_grad_sync(bool on) { impl_->overlap = on; }
int Executor::num_overlapped_gradients() const { return static_cast<int>(impl_->overlap_grads.size()); }
void Executor::set_memory_tracking(bool on) { impl_->track_memory = on; }
void Executor::set_trace(bool on, double origin) {
  impl_->tracing = on;
  impl_->trace_origin = origin;
}
std::vector<TraceEvent> Executor::take_trace() { return std::exchange(impl_->trace, {}); }
MemoryStats Executor::memory_stats() const { return impl_->memory; }

int Executor::stage() const { return impl_->stage; }
int Executor::num_stages() const { return impl_->plan.num_stages(); }
const StageGraph& Executor::stage_graph() const { return impl_->sg; }
const ir::Graph& Executor::graph() const { return impl_->graph; }

}  // namespace strata::runtime
