// The weak-scaling points of the paper and their micro-batch counts: one list shared by the three
// families (GPT and MoE batches of 1024, Wide-ResNet of 1536) keeps per model only the counts
// that divide its batch (regression: the Wide-ResNet run stopped on "1024 does not divide the
// global batch 1536"), and a list of which nothing divides fails before any planning.
#include <gtest/gtest.h>

#include <atomic>

#include "baselines/greedy_solver.h"
#include "strata/baselines/weak_scaling.h"
#include "strata/core/units.h"

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
  // The run's JSON reads back to what the plot needs.
  auto saved = parse_weak_scaling_json(weak_scaling_json("wresnet", *run).dump(2), "run.json");
  ASSERT_TRUE(saved.is_ok()) << saved.error().message();
  EXPECT_EQ(saved->family, "wresnet");
  ASSERT_EQ(saved->points.size(), 1u);
  EXPECT_EQ(saved->points[0].gpus, 1);
  EXPECT_EQ(saved->points[0].model, "wresnet-250m");
  EXPECT_EQ(saved->points[0].cluster, "aws-p3-1node-1gpu");
  ASSERT_EQ(saved->points[0].methods.size(), 1u);
  EXPECT_EQ(saved->points[0].methods[0].method, "data-parallel");
  EXPECT_TRUE(saved->points[0].methods[0].feasible);
  EXPECT_DOUBLE_EQ(saved->points[0].methods[0].tflops_per_device, dp.result.tflops_per_device);
}

// Saved runs (weak_scaling_bench --json-prefix), written to files for merge_weak_scaling_files.
std::string write_run(const std::string& name, const std::string& text) {
  const std::string path = ::testing::TempDir() + "strata-weak-scaling-" + name + ".json";
  EXPECT_TRUE(write_file_atomically(path, text).is_ok());
  return path;
}

std::string point(int gpus, const std::string& model, const std::string& methods) {
  return "{\"model\": \"" + model + "\", \"cluster\": \"c" + std::to_string(gpus) + "\", \"devices\": " +
         std::to_string(gpus) + ", \"methods\": [" + methods + "]}";
}

std::string ok(const std::string& method, double tflops) {
  return "{\"method\": \"" + method + "\", \"feasible\": true, \"out_of_memory\": false, \"tflops_per_device\": " +
         std::to_string(tflops) + "}";
}

std::string oom(const std::string& method) {
  return "{\"method\": \"" + method + "\", \"feasible\": false, \"out_of_memory\": true}";
}

TEST(WeakScaling, SavedRunsOfSeveralProcessesDrawOnePlot) {
  // One run of 1 and 4 GPUs, another of 8 GPUs plus a method added later at 4 GPUs.
  const std::string a = write_run("a", "{\"family\": \"gpt\", \"points\": [" + point(1, "gpt-350m", ok("strata", 8.1) + "," + oom("data-parallel")) +
                                           "," + point(4, "gpt-1.3b", ok("strata", 8.3)) + "]}");
  const std::string b = write_run("b", "{\"family\": \"gpt\", \"points\": [" + point(8, "gpt-2.6b", ok("strata", 8.4)) + "," +
                                           point(4, "gpt-1.3b", ok("zero-2", 7.5)) + "]}");
  const std::string moe = write_run("moe", "{\"family\": \"moe\", \"points\": [" + point(4, "moe-690m", ok("strata", 7.9)) + "]}");
  auto merged = merge_weak_scaling_files({a, b, moe});
  ASSERT_TRUE(merged.is_ok()) << merged.error().message();
  ASSERT_EQ(merged->size(), 2u);
  const SavedRun& gpt = (*merged)[0];
  EXPECT_EQ(gpt.family, "gpt");
  ASSERT_EQ(gpt.points.size(), 3u);
  EXPECT_EQ(gpt.points[0].gpus, 1);
  EXPECT_EQ(gpt.points[1].gpus, 4);
  EXPECT_EQ(gpt.points[2].gpus, 8);
  ASSERT_EQ(gpt.points[1].methods.size(), 2u);
  EXPECT_EQ((*merged)[1].family, "moe");

  const LinePlot plot = weak_scaling_plot(gpt);
  ASSERT_EQ(plot.series.size(), 3u);  // all_methods() order
  EXPECT_EQ(plot.series[0].name, "strata");
  EXPECT_EQ(plot.series[1].name, "data-parallel");
  EXPECT_EQ(plot.series[2].name, "zero-2");
  ASSERT_EQ(plot.series[0].points.size(), 3u);  // from both files
  EXPECT_EQ(plot.series[0].points[2].x, 8);
  EXPECT_DOUBLE_EQ(plot.series[0].points[2].y, 8.4);
  EXPECT_FALSE(plot.series[1].points[0].feasible);
  EXPECT_DOUBLE_EQ(plot.series[2].points[0].y, 7.5);
  auto svg = render_svg(plot);
  ASSERT_TRUE(svg.is_ok()) << svg.error().message();
  size_t circles = 0;
  for (size_t at = svg->find("<circle"); at != std::string::npos; at = svg->find("<circle", at + 1)) ++circles;
  EXPECT_EQ(circles, 4u);  // strata at 1, 4, 8 GPUs and zero-2 at 4
  EXPECT_NE(svg->find("class=\"oom\""), std::string::npos);
}

TEST(WeakScaling, MismatchedOrMalformedSavedRunsAreRefused) {
  const std::string a = write_run("m-a", "{\"family\": \"gpt\", \"points\": [" + point(4, "gpt-1.3b", ok("strata", 8.3)) + "]}");
  auto message = [](const std::vector<std::string>& files) {
    auto merged = merge_weak_scaling_files(files);
    EXPECT_FALSE(merged.is_ok());
    return merged.is_ok() ? std::string() : merged.error().message();
  };
  const std::string other_model =
      write_run("m-model", "{\"family\": \"gpt\", \"points\": [" + point(4, "gpt-2.6b", ok("zero-2", 8.0)) + "]}");
  EXPECT_EQ(message({a, other_model}),
            other_model + ": points[0].model: 'gpt-2.6b' at 4 GPUs of gpt, but " + a + " has 'gpt-1.3b'");
  const std::string twice = write_run("m-twice", "{\"family\": \"gpt\", \"points\": [" + point(4, "gpt-1.3b", ok("strata", 8.0)) + "]}");
  EXPECT_EQ(message({a, twice}), twice + ": points[0].methods[0]: 'strata' at 4 GPUs of gpt is already in " + a);
  const std::string no_tflops =
      write_run("m-tflops", "{\"family\": \"gpt\", \"points\": [" + point(8, "gpt-2.6b", "{\"method\": \"strata\", \"feasible\": true}") + "]}");
  EXPECT_EQ(message({a, no_tflops}), no_tflops + ": points[0].methods[0].tflops_per_device: missing");
  const std::string bad_method = write_run("m-method", "{\"family\": \"gpt\", \"points\": [" + point(8, "gpt-2.6b", ok("zero-1", 1)) + "]}");
  EXPECT_NE(message({bad_method}).find(bad_method + ": points[0].methods[0].method: unknown method 'zero-1'"), std::string::npos);
  const std::string bad_gpus = write_run("m-gpus", "{\"family\": \"gpt\", \"points\": [" + point(0, "gpt-2.6b", ok("strata", 1)) + "]}");
  EXPECT_EQ(message({bad_gpus}), bad_gpus + ": points[0].devices: must be a positive whole number, got 0");
  const std::string wrong_type = write_run("m-type", "{\"family\": \"gpt\", \"points\": {}}");
  EXPECT_EQ(message({wrong_type}), wrong_type + ": points: must be an array, got an object");
  const std::string not_json = write_run("m-json", "{\"family\": \"gpt\", \"points\": [");
  EXPECT_EQ(message({not_json}).rfind(not_json + ": ", 0), 0u);
  EXPECT_EQ(message({}), "plot-from: no result files given");
  for (const std::string& m : {message({a, other_model}), message({not_json}), message({a + ".missing"})}) {
    EXPECT_EQ(m.find('\n'), std::string::npos) << m;  // one line
  }
}

}  // namespace
}  // namespace strata::baselines
