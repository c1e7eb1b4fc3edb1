// The executor's gradient path makes no needless full copies: with one micro-batch the gradient a
// backward op made is the sum itself (no copy, no scaling by 1); with several, only the later
// micro-batches are added in and the sum is scaled once. Counted through a backend wrapper around
// the cpu backend, and the losses must equal the unwrapped run's (the wrapper only counts).
#include <gtest/gtest.h>

#include <string>

#include "strata/autodiff/autodiff.h"
#include "strata/models/models.h"
#include "strata/runtime/executor.h"
#include "strata/runtime/train.h"
#include "executor_test_util.h"

namespace strata::runtime {
namespace {

// Counts full-tensor copies (a slice of the whole tensor), add_into and scale calls.
class CountingBackend : public testing::ForwardingBackend {
 public:
  Status add_into(DeviceTensor& dst, const DeviceTensor& src) override {
    ++adds;
    return ForwardingBackend::add_into(dst, src);
  }
  Status scale(DeviceTensor& t, double factor) override {
    ++scales;
    return ForwardingBackend::scale(t, factor);
  }
  Expected<TensorPtr> slice(const DeviceTensor& t, const std::vector<int64_t>& starts,
                            const std::vector<int64_t>& sizes) override {
    bool whole = sizes == t.shape();
    for (int64_t s : starts) whole = whole && s == 0;
    if (whole) ++copies;
    return ForwardingBackend::slice(t, starts, sizes);
  }

  int copies = 0, adds = 0, scales = 0;
};

struct Counts {
  int copies = 0, adds = 0, scales = 0, updates = 0;
  std::vector<double> losses;
};

// Three Adam steps of gpt-tiny (global batch 2) in `micro_batches` micro-batches on one device.
Counts train(int micro_batches, bool count) {
  auto spec = models::load_model_config(std::string(STRATA_SOURCE_DIR) + "/configs/models/gpt-tiny.yaml");
  STRATA_CHECK(spec.is_ok(), spec.error().message());
  auto forward = models::build_forward_graph(*spec, 2 / micro_batches);
  STRATA_CHECK(forward.is_ok(), forward.error().message());
  autodiff::TrainingOptions options;
  options.optimizer = autodiff::Optimizer::adam;
  options.lr = 1e-2;
  options.eps = 1e-3;
  auto train = autodiff::build_training_graph(*forward, options);
  STRATA_CHECK(train.is_ok(), train.error().message());

  plan::Plan p;
  p.model = "gpt-tiny";
  p.cluster = {"one-device", 1, 1};
  p.global_batch = 2;
  p.num_micro_batches = micro_batches;
  plan::Stage stage;
  for (ir::OpId id = 0; id < train->num_ops(); ++id) {
    const ir::Op& op = train->op(id);
    intra::OpSharding sharding;
    for (const ir::Value& v : op.inputs) sharding.inputs.push_back({std::vector<intra::DimSharding>(train->type(v).rank(), intra::DimSharding::R)});
    for (const ir::TensorType& t : op.outputs) sharding.outputs.push_back({std::vector<intra::DimSharding>(t.rank(), intra::DimSharding::R)});
    stage.strategies[op.name] = sharding.to_string();
  }
  p.stages.push_back(stage);

  const auto feeds = testing::random_gpt_inputs(*spec, 2, 3);

  CountingBackend counting;
  std::unique_ptr<Backend> plain = make_cpu_backend();
  Backend& be = count ? static_cast<Backend&>(counting) : *plain;
  auto exec = Executor::create(*train, p, be, MPI_COMM_SELF, 9);
  STRATA_CHECK(exec.is_ok(), exec.error().message());
  Counts c;
  c.updates = static_cast<int>(train->ops_of_kind(ir::OpKind::AdamUpdate).size());
  for (int step = 1; step <= 3; ++step) {
    const int copies = counting.copies, adds = counting.adds, scales = counting.scales;
    auto r = (*exec)->step(feeder_of(feeds), step);
    STRATA_CHECK(r.is_ok(), r.error().message());
    c.losses.push_back(r->loss);
    c.copies = counting.copies - copies;  // the last step's counts
    c.adds = counting.adds - adds;
    c.scales = counting.scales - scales;
  }
  return c;
}

TEST(ExecutorCopies, OneMicroBatchHandsTheGradientToTheUpdate) {
  const Counts counted = train(1, true), plain = train(1, false);
  EXPECT_GT(counted.updates, 10);
  EXPECT_EQ(counted.copies, 0);
  EXPECT_EQ(counted.adds, 0);
  EXPECT_EQ(counted.scales, 0);
  ASSERT_EQ(counted.losses.size(), 3u);
  EXPECT_GT(std::abs(counted.losses[0] - counted.losses[2]), 1e-3);  // it trains
  for (size_t i = 0; i < 3; ++i) EXPECT_EQ(counted.losses[i], plain.losses[i]);
}

TEST(ExecutorCopies, MicroBatchesAddIntoTheFirstGradient) {
  const Counts counted = train(2, true), plain = train(2, false);
  // Every gradient: the first micro-batch's is kept, the second added in, the sum scaled once.
  EXPECT_EQ(counted.copies, 0);
  EXPECT_EQ(counted.adds, counted.updates);
  EXPECT_EQ(counted.scales, counted.updates);
  for (size_t i = 0; i < 3; ++i) EXPECT_EQ(counted.losses[i], plain.losses[i]);
  // Two micro-batches of one sample train like one batch of two: the same losses to rounding.
  const Counts whole = train(1, false);
  for (size_t i = 0; i < 3; ++i) EXPECT_NEAR(counted.losses[i], whole.losses[i], 1e-4 * std::abs(whole.losses[i]));
}

}  // namespace
}  // namespace strata::runtime

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  ::testing::InitGoogleTest(&argc, argv);
  const int rc = RUN_ALL_TESTS();
  MPI_Finalize();
  return rc;
}
