// The pipeline executor: one MPI rank per device runs its stage's instruction stream
// (sched::from_plan) on its local tiles — forward and backward per micro-batch, cross-stage
// transfers, gradient accumulation, gradient resharding and the optimizer update.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "strata/core/status.h"
#include "strata/interp/interp.h"
#include "strata/ir/graph.h"
#include "strata/plan/plan.h"
#include "strata/runtime/backend.h"
#include "strata/runtime/checkpoint.h"
#include "strata/runtime/partition.h"

namespace strata::runtime {

// The whole (micro-batch sized, global over the mesh) value of Input op `input` for micro-batch
// `micro_batch` of the current step; the executor feeds each device its tile.
using Feeder = std::function<Expected<interp::Tensor>(const ir::Op& input, int micro_batch)>;

struct StepResult {
  double loss = 0;     // mean over micro-batches, the same on every rank
  double seconds = 0;  // wall time of the step on this rank
};

// What the executor held during the last step (with set_memory_tracking on): the peak bytes of
// the distinct tensors in its own keeping (parameters and optimizer state, stage values and their
// reshard caches over all micro-batches, accumulated and synced gradients), sampled after every
// op, accumulation and gradient sync. Blocks of pending sends and backend temporaries are not in it.
struct MemoryStats {
  int64_t peak_live_bytes = 0;
};

// One instruction of this rank's stream as it ran (set_trace): seconds since `origin`.
struct TraceEvent {
  // sched::op_name: forward, backward, send_activation, ...; all_reduce_gradient (a gradient's
  // all-reduce started inside the last backward, seconds = issuing it) and wait_all_reduce_gradient
  // (grad_sync waiting for one).
  std::string name;
  int64_t step = 0;
  int micro_batch = -1;  // -1 for grad_sync / optimizer_update
  int peer = -1;         // the other stage of a send/recv
  double start = 0, seconds = 0;
};

class Executor {
 public:
  // `training_graph` is the graph at micro-batch size (autodiff::build_training_graph); the plan
  // must carry strategies for every op. Collective: every rank of `world` calls it. An error on
  // any rank (bad plan, wrong world size) is returned on every rank.
  // `fuse`: run the graph after fuse_for_cuda with fuse_plan_for_cuda's plan (cuda_backend.h; built
  // with CUDA only). Unset: on the cuda backend unless STRATA_CUDA_FUSE=0; true on any backend (the
  // cpu backend runs the rewritten graph too, which tests its partition); false never.
  static Expected<std::unique_ptr<Executor>> create(const ir::Graph& training_graph, const plan::Plan& plan,
                                                    Backend& backend, MPI_Comm world, uint64_t seed,
                                                    std::optional<bool> fuse = std::nullopt);
  ~Executor();

  // One training step; `step_number` (1-based) feeds Adam's bias correction and, when the plan's
  // `training` block has an lr schedule, picks the lr every update op runs with
  // (plan::learning_rate; the graph's lr must then be the plan's peak lr, as load_planned_model
  // builds it), so a run resumed at step s + 1 continues the schedule where it was. An error is this
  // rank's: the others may stay blocked in a transfer or collective with it, so the caller must
  // end the job (MPI_Abort), as `strata train` does.
  Expected<StepResult> step(const Feeder& feed, int64_t step_number);

  // Every Parameter's (and optimizer state's) global value, by op name, on every rank. Collective.
  Expected<std::map<std::string, interp::Tensor>> gather_parameters();
  // Replaces every Parameter from global values (each rank keeps its tile); names must match.
  Status set_parameters(const std::map<std::string, interp::Tensor>& values);

  // This rank's tiles of every Parameter and optimizer state of its stage, for a checkpoint
  // (name = op name, sharding = the Parameter's spec), and their restoration from one; a tile
  // whose name, spec or shape differs from this rank's is an error naming the tensor.
  Expected<std::vector<CheckpointTensor>> local_state();
  Status load_local_state(const std::vector<CheckpointTensor>& tensors);

  // Values are freed after their last read within a micro-batch (default on); off keeps every
  // value of a micro-batch until the stream's free instruction (the old behaviour, to measure).
  void set_free_after_last_use(bool on);
  // Gradients whose reshard to the update's spec is exactly one all-reduce (data parallelism) start
  // it in the last micro-batch's backward, right after the op that makes them, and grad_sync waits
  // for it (default on); off runs every gradient's reshard in grad_sync (the old behaviour).
  void set_overlap_grad_sync(bool on);
  // How many of this rank's gradients take that path (when it is on).
  int num_overlapped_gradients() const;
  // Sampling of live bytes (a sum over the held tensors after each op; off by default).
  void set_memory_tracking(bool on);
  MemoryStats memory_stats() const;
  // Records a TraceEvent per instruction from now on, times relative to MPI_Wtime() `origin`;
  // take_trace() hands the events over and clears them.
  void set_trace(bool on, double origin);
  std::vector<TraceEvent> take_trace();

  int stage() const;
  int num_stages() const;
  // The graph this executor runs and its partition: the training graph as given, or the graph
  // after fuse_for_cuda (create's `fuse`).
  const StageGraph& stage_graph() const;
  const ir::Graph& graph() const;

 private:
  struct Impl;
  explicit Executor(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// The causal mask GPT models take: 0 where key <= query, -1e9 above the diagonal.
interp::Tensor causal_mask(int64_t seq_len);

}  // namespace strata::runtime
