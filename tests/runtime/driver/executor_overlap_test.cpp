// Gradient all-reduces overlapped with the backward (issue 8), on the data-parallel baseline plan
// of gpt-tiny over 2 cpu ranks (mpirun -np 2): through a recording wrapper of the cpu backend and its
// communicators, every gradient whose reshard is one all-reduce starts it (all_reduce_async)
// inside the last micro-batch's backward, all of them before its last backward op, none of them
// as a blocking all-reduce in grad_sync; the trace shows them inside that backward; and the losses
// equal those of the same run with the overlap off (the all-reduces in grad_sync, the old path).
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "strata/autodiff/autodiff.h"
#include "strata/baselines/baselines.h"
#include "strata/cluster/alpha_beta.h"
#include "strata/models/models.h"
#include "strata/planner/planner.h"
#include "strata/runtime/executor.h"
#include "strata/runtime/train.h"
#include "executor_test_util.h"

namespace strata::runtime {
namespace {

// What the executor asked of the backend, in order: "backward" / "forward" / "update" for a
// run_op of that role, "all_reduce" for a blocking one, "all_reduce_async" for a started one.
using Log = std::vector<std::string>;

class RecordingCommunicator : public Communicator {
 public:
  RecordingCommunicator(std::unique_ptr<Communicator> inner, Log& log) : inner_(std::move(inner)), log_(log) {}
  int rank() const override { return inner_->rank(); }
  int size() const override { return inner_->size(); }
  Status all_reduce(DeviceTensor& t) override {
    log_.push_back("all_reduce");
    return inner_->all_reduce(t);
  }
  Expected<std::unique_ptr<Request>> all_reduce_async(TensorPtr t) override {
    log_.push_back("all_reduce_async");
    return inner_->all_reduce_async(std::move(t));
  }
  Expected<TensorPtr> all_gather(const DeviceTensor& t, int dim) override {
    log_.push_back("all_gather");
    return inner_->all_gather(t, dim);
  }
  Expected<TensorPtr> reduce_scatter(const DeviceTensor& t, int dim) override {
    log_.push_back("reduce_scatter");
    return inner_->reduce_scatter(t, dim);
  }
  Expected<TensorPtr> all_to_all(const DeviceTensor& t, int split_dim, int concat_dim) override {
    log_.push_back("all_to_all");
    return inner_->all_to_all(t, split_dim, concat_dim);
  }
  Expected<std::unique_ptr<Request>> isend(TensorPtr t, int peer, int tag) override { return inner_->isend(t, peer, tag); }
  Expected<std::unique_ptr<Request>> irecv(TensorPtr t, int peer, int tag) override { return inner_->irecv(t, peer, tag); }
  int max_tag() const override { return inner_->max_tag(); }

 private:
  std::unique_ptr<Communicator> inner_;
  Log& log_;
};

class RecordingBackend : public testing::ForwardingBackend {
 public:
  Expected<std::vector<TensorPtr>> run_op(const ir::Op& op, const std::vector<const DeviceTensor*>& in) override {
    log.push_back(op.role == ir::Role::backward ? "backward" : op.role == ir::Role::forward ? "forward" : "update");
    return ForwardingBackend::run_op(op, in);
  }
  Expected<std::unique_ptr<Communicator>> communicator(MPI_Comm comm) override {
    STRATA_ASSIGN_OR_RETURN(auto inner, ForwardingBackend::communicator(comm));
    return std::unique_ptr<Communicator>(std::make_unique<RecordingCommunicator>(std::move(inner), log));
  }

  Log log;
};

// The data-parallel baseline plan of gpt-tiny on 2 devices (weights replicated) with
// `micro_batches`, planned on rank 0 and read by every rank from its YAML (as gpt_gpu_plan_check).
plan::Plan data_parallel_plan(const models::ModelSpec& spec, int micro_batches) {
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  std::string yaml;
  if (rank == 0) {
    auto cluster = cluster::load_cluster(std::string(STRATA_SOURCE_DIR) + "/configs/clusters/aws-p3-1node-2gpu.yaml");
    STRATA_CHECK(cluster.is_ok(), cluster.error().message());
    planner::PlannerOptions options;
    options.training.optimizer = "adam";
    options.training.lr = 1e-2;
    options.training.eps = 1e-3;
    options.num_micro_batches = micro_batches;
    const cluster::AlphaBetaModel comm(*cluster);
    baselines::CompareOptions compare;
    compare.planner = options;
    compare.methods = {baselines::Method::data_parallel};
    auto results = baselines::compare(spec, *cluster, comm, compare);
    STRATA_CHECK(results.is_ok(), results.error().message());
    STRATA_CHECK(results->size() == 1 && results->at(0).feasible, "gpt-tiny: no data-parallel plan");
    const plan::Plan& planned = results->at(0).result.plan;
    STRATA_CHECK(planned.num_stages() == 1 && planned.num_micro_batches == micro_batches, "not a one-stage plan with B");
    yaml = plan::plan_to_yaml(planned);
  }
  int bytes = static_cast<int>(yaml.size());
  MPI_Bcast(&bytes, 1, MPI_INT, 0, MPI_COMM_WORLD);
  yaml.resize(static_cast<size_t>(bytes));
  MPI_Bcast(yaml.data(), bytes, MPI_CHAR, 0, MPI_COMM_WORLD);
  auto parsed = plan::parse_plan(yaml, "<rank 0's plan>");
  STRATA_CHECK(parsed.is_ok(), parsed.error().message());
  return *parsed;
}

struct Run {
  std::vector<double> losses;
  Log last_step;  // the backend calls of the last step
  int overlapped = 0;
  std::vector<TraceEvent> trace;  // the last step's
};

// Three Adam steps of gpt-tiny under the data-parallel plan with `micro_batches`.
Run train(int micro_batches, bool overlap) {
  auto spec = models::load_model_config(std::string(STRATA_SOURCE_DIR) + "/configs/models/gpt-tiny.yaml");
  STRATA_CHECK(spec.is_ok(), spec.error().message());
  const plan::Plan p = data_parallel_plan(*spec, micro_batches);
  auto forward = models::build_forward_graph(*spec, spec->global_batch / micro_batches);
  STRATA_CHECK(forward.is_ok(), forward.error().message());
  auto graph = autodiff::build_training_graph(*forward, plan::autodiff_options(p.training));
  STRATA_CHECK(graph.is_ok(), graph.error().message());

  const auto feeds = testing::random_gpt_inputs(*spec, spec->global_batch, 5);

  RecordingBackend backend;
  auto exec = Executor::create(*graph, p, backend, MPI_COMM_WORLD, 9);
  STRATA_CHECK(exec.is_ok(), exec.error().message());
  (*exec)->set_overlap_grad_sync(overlap);
  Run run;
  run.overlapped = (*exec)->num_overlapped_gradients();
  for (int step = 1; step <= 3; ++step) {
    backend.log.clear();
    (*exec)->set_trace(step == 3, MPI_Wtime());
    auto r = (*exec)->step(feeder_of(feeds), step);
    STRATA_CHECK(r.is_ok(), r.error().message());
    run.losses.push_back(r->loss);
  }
  run.last_step = backend.log;
  run.trace = (*exec)->take_trace();
  return run;
}

int count(const Log& log, const std::string& what, size_t end) {
  int n = 0;
  for (size_t i = 0; i < end && i < log.size(); ++i) n += log[i] == what;
  return n;
}

size_t last_of(const Log& log, const std::string& what) {
  size_t last = 0;
  for (size_t i = 0; i < log.size(); ++i) if (log[i] == what) last = i;
  return last;
}

void check_overlap(int micro_batches) {
  const Run on = train(micro_batches, true), off = train(micro_batches, false);
  EXPECT_GT(count(on.last_step, "update", on.last_step.size()), 10);
  // Without the overlap (the old path): no started all-reduce; the gradients that need one (the
  // others the plan computes whole on every rank) get a blocking one in grad_sync, after the last
  // backward op.
  const Log& old = off.last_step;
  EXPECT_EQ(count(old, "all_reduce_async", old.size()), 0);
  const int reduced = count(old, "all_reduce", old.size()) - count(old, "all_reduce", last_of(old, "backward"));
  EXPECT_GT(reduced, 0);
  EXPECT_EQ(on.overlapped, reduced);
  // With it: each of them started inside the backward, before its last op; no blocking all-reduce
  // after that op.
  const Log& log = on.last_step;
  const size_t last_backward = last_of(log, "backward");
  EXPECT_EQ(count(log, "all_reduce_async", log.size()), reduced);
  EXPECT_EQ(count(log, "all_reduce_async", last_backward), reduced);
  EXPECT_EQ(count(log, "all_reduce", log.size()) - count(log, "all_reduce", last_backward), 0);
  // The trace: one all_reduce_gradient per such gradient inside the last micro-batch's backward
  // instruction, one wait per gradient inside grad_sync.
  const TraceEvent* backward = nullptr;
  const TraceEvent* sync = nullptr;
  int started = 0, waits = 0;
  for (const TraceEvent& e : on.trace) {
    if (e.name == "backward" && e.micro_batch == micro_batches - 1) backward = &e;
    if (e.name == "grad_sync") sync = &e;
  }
  ASSERT_NE(backward, nullptr);
  ASSERT_NE(sync, nullptr);
  for (const TraceEvent& e : on.trace) {
    if (e.name == "all_reduce_gradient") {
      ++started;
      EXPECT_GE(e.start, backward->start);
      EXPECT_LE(e.start + e.seconds, backward->start + backward->seconds + 1e-6);
    }
    if (e.name == "wait_all_reduce_gradient") {
      ++waits;
      EXPECT_GE(e.start, sync->start);
      EXPECT_LE(e.start + e.seconds, sync->start + sync->seconds + 1e-6);
    }
  }
  EXPECT_EQ(started, reduced);
  EXPECT_EQ(waits, reduced);
  // The same sums in the same order: the same losses, to the bit; and it trains.
  ASSERT_EQ(on.losses.size(), 3u);
  for (size_t i = 0; i < 3; ++i) EXPECT_EQ(on.losses[i], off.losses[i]) << "step " << i + 1;
  EXPECT_GT(std::abs(on.losses[0] - on.losses[2]), 1e-3);
}

TEST(ExecutorOverlap, OneMicroBatch) { check_overlap(1); }
TEST(ExecutorOverlap, TwoMicroBatches) { check_overlap(2); }

}  // namespace
}  // namespace strata::runtime

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  ::testing::InitGoogleTest(&argc, argv);
  const int rc = RUN_ALL_TESTS();
  MPI_Finalize();
  return rc;
}
