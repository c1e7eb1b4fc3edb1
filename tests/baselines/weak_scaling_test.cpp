// The weak-scaling points of the paper and their micro-batch counts: one list shared by the three
// families (GPT and MoE batches of 1024, Wide-ResNet of 1536) keeps per model only the counts
// that divide its batch (regression: the Wide-ResNet run stopped on "1024 does not divide the
// global batch 1536"), and a list of which nothing divides fails before any planning.
#include <gtest/gtest.h>

#include <atomic>

#include "baselines/greedy_solver.h"
#include "strata/baselines/weak_scaling.h"

namespace strata::baselines {
namespace {

const std::string kConfigs = std::string(STRATA_SOURCE_DIR) + "/configs";

models::ModelSpec load(const std::string& name) {
  auto spec = models::load_model_config(kConfigs + "/models/" + name + ".yaml");
  EXPECT_TRUE(spec.is_ok()) << spec.error().message();
  return *spec;
}

TEST(WeakScaling, PaperPointsUseTheOneNodeClustersUpToFourGpus) {
  auto points = paper_weak_scaling("wresnet", kConfigs);
  ASSERT_TRUE(points.is_ok()) << points.error().message();
  ASSERT_EQ(points->size(), 6u);
  const int gpus[] = {1, 4, 8, 16, 32, 64};
  const char* clusters[] = {"aws-p3-1node-1gpu.yaml", "aws-p3-1node-4gpu.yaml", "aws-p3-1node.yaml",
                            "aws-p3-2node.yaml",      "aws-p3-4node.yaml",      "aws-p3-8node.yaml"};
  for (size_t i = 0; i < points->size(); ++i) {
    EXPECT_EQ((*points)[i].gpus, gpus[i]);
    EXPECT_EQ((*points)[i].cluster_file, kConfigs + "/clusters/" + clusters[i]);
  }
  EXPECT_EQ((*points)[0].model_file, kConfigs + "/models/wresnet-250m.yaml");
  EXPECT_TRUE(check_weak_scaling(*points, CompareOptions{}).is_ok());
  EXPECT_EQ(paper_weak_scaling("gpt", kConfigs, 4)->size(), 2u);
  EXPECT_EQ(paper_weak_scaling("bert", kConfigs).error().message(),
            "family: unknown model family 'bert' (gpt, moe or wresnet)");
}

TEST(WeakScaling, MicroBatchCountsThatDoNotDivideTheBatchAreLeftOut) {
  planner::PlannerOptions o;
  o.micro_batch_candidates = {512, 1024};
  auto wresnet = point_options(load("wresnet-250m"), o);  // batch 1536
  ASSERT_TRUE(wresnet.is_ok()) << wresnet.error().message();
  EXPECT_EQ(wresnet->micro_batch_candidates, std::vector<int>{512});
  auto gpt = point_options(load("gpt-350m"), o);  // batch 1024
  ASSERT_TRUE(gpt.is_ok()) << gpt.error().message();
  EXPECT_EQ(gpt->micro_batch_candidates, (std::vector<int>{512, 1024}));

  o.micro_batch_candidates = {1024, 2048};
  EXPECT_EQ(point_options(load("wresnet-250m"), o).error().message(),
            "micro_batches: none of 1024,2048 divides the global batch 1536 of wresnet-250m");
  o.micro_batch_candidates = {0};
  EXPECT_EQ(point_options(load("gpt-350m"), o).error().field, "micro_batches");
  // A forced count is kept as it is, or refused.
  o.micro_batch_candidates.clear();
  o.num_micro_batches = 1024;
  EXPECT_EQ(point_options(load("gpt-350m"), o)->num_micro_batches, 1024);
  EXPECT_EQ(point_options(load("wresnet-250m"), o).error().message(),
            "micro_batches: 1024 does not divide the global batch 1536 of wresnet-250m");
}

TEST(WeakScaling, NothingIsPlannedWhenAPointsMicroBatchesCannotWork) {
  auto points = paper_weak_scaling("wresnet", kConfigs, 1);
  ASSERT_TRUE(points.is_ok()) << points.error().message();
  auto solves = std::make_shared<std::atomic<int>>(0);
  CompareOptions o;
  o.methods = {Method::data_parallel};
  o.planner.num_micro_batches = 1024;
  o.planner.solve = [solves](const intra::StageProblem& p) {
    ++*solves;
    return testing_solver::greedy(p);
  };
  auto run = run_weak_scaling(*points, o);
  ASSERT_FALSE(run.is_ok());
  EXPECT_EQ(run.error().message(), "micro_batches: 1024 does not divide the global batch 1536 of wresnet-250m");
  EXPECT_EQ(*solves, 0);
}

// The 1-GPU Wide-ResNet point with the list that stopped last session's run: it plans, with the
// one count that divides 1536.
TEST(WeakScaling, WideResNetPlansWithTheCountsThatDivideItsBatch) {
  auto points = paper_weak_scaling("wresnet", kConfigs, 1);
  ASSERT_TRUE(points.is_ok()) << points.error().message();
  CompareOptions o;
  o.methods = {Method::data_parallel};
  o.planner.micro_batch_candidates = {512, 1024};
  o.planner.solve = testing_solver::greedy;
  o.planner.num_layers = 4;
  auto run = run_weak_scaling(*points, o);
  ASSERT_TRUE(run.is_ok()) << run.error().message();
  ASSERT_EQ(run->size(), 1u);
  const MethodResult& dp = (*run)[0].results.at(0);
  ASSERT_TRUE(dp.feasible) << dp.reason;
  EXPECT_EQ(dp.result.plan.num_micro_batches, 512);
  EXPECT_EQ(dp.result.stats.micro_batch_candidates, std::vector<int>{512});
  EXPECT_EQ((*run)[0].model, "wresnet-250m");
  EXPECT_GT(dp.result.tflops_per_device, 0);
}

}  // namespace
}  // namespace strata::baselines
