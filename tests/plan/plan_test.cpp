// Plan YAML: byte-identical round trips, the example plan, and every validation rule's error.
#include <gtest/gtest.h>

#include <cmath>
#include <string>

#include "strata/core/units.h"
#include "strata/plan/plan.h"

namespace strata::plan {
namespace {

std::string source_dir() { return STRATA_SOURCE_DIR; }

std::string example_text() {
  auto text = read_text_file(source_dir() + "/configs/plans/example-gpt-2stage.yaml");
  EXPECT_TRUE(text.is_ok()) << text.status().message();
  return *text;
}

// The example plan, parsed as if from "plan.yaml", after `edit` rewrote its text.
Status validate_edited(const std::string& from, const std::string& to) {
  std::string text = example_text();
  auto at = text.find(from);
  EXPECT_NE(at, std::string::npos) << from;
  text.replace(at, from.size(), to);
  auto plan = parse_plan(text, "plan.yaml");
  if (!plan.is_ok()) return plan.error();
  return validate(*plan);
}

std::string error_of(const std::string& from, const std::string& to) {
  Status status = validate_edited(from, to);
  EXPECT_FALSE(status.is_ok()) << "edit " << from << " -> " << to << " was accepted";
  return status.message();
}

TEST(Plan, ExampleParsesAndValidates) {
  auto plan = read_plan(source_dir() + "/configs/plans/example-gpt-2stage.yaml");
  ASSERT_TRUE(plan.is_ok()) << plan.error().message();
  EXPECT_EQ(plan->model, "gpt-1.3b");
  EXPECT_EQ(plan->cluster.num_devices(), 8);
  ASSERT_EQ(plan->num_stages(), 2);
  EXPECT_EQ(plan->stages[1].first_layer, 12);
  EXPECT_EQ(plan->stages[1].first_gpu, 4);
  EXPECT_EQ(plan->stages[1].submesh, (cluster::Submesh{1, 4}));
  EXPECT_DOUBLE_EQ(plan->stages[1].backward_seconds, 0.026);
  EXPECT_DOUBLE_EQ(plan->cross_stage_link.bandwidth_bytes_per_second, 1.5e11);
  EXPECT_EQ(plan->stages[0].send_bytes, 33554432);
  EXPECT_TRUE(plan->stages[0].strategies.empty());  // a cost-only plan
  EXPECT_EQ(plan->micro_batch_size(), 4);
  EXPECT_EQ(plan->training.optimizer, "adam");
  EXPECT_TRUE(boundary_is_intra_node(*plan, 0));
  // model_file is relative to the plan's directory.
  auto model = read_text_file(plan->model_path());
  ASSERT_TRUE(model.is_ok()) << model.error().message();
  EXPECT_NE(model->find("name: gpt-1.3b"), std::string::npos);
}

TEST(Plan, ExampleRoundTripsByteForByte) {
  std::string text = example_text();
  auto plan = parse_plan(text, "example.yaml");
  ASSERT_TRUE(plan.is_ok()) << plan.error().message();
  EXPECT_EQ(plan_to_yaml(*plan), text);
}

TEST(Plan, BuiltPlanRoundTripsThroughAFile) {
  Plan plan;
  plan.model = "odd \"name\" \\ here";
  plan.cluster = {"two-nodes", 2, 2};
  plan.global_batch = 12;
  plan.num_micro_batches = 3;
  plan.schedule = "gpipe";
  plan.cross_stage_link = {1.0 / 3.0 * 1e10, 1.25e-5};
  Stage a;
  a.first_layer = 0;
  a.last_layer = 4;
  a.submesh = {1, 2};
  a.logical_mesh = {2, 1};
  a.forward_seconds = 0.1 + 0.2;  // not exactly representable in short decimal form
  a.backward_seconds = 2.0 / 3.0;
  a.weights_bytes = 123456789012;
  a.send_bytes = 77;
  a.strategies = {{"z.op", "[R]->[R]"}, {"a: op", "[S0,RS1]->[S0S1]"}};
  Stage b = a;
  b.first_layer = 5;
  b.last_layer = 9;
  b.first_node = 1;
  b.submesh = {1, 2};
  b.strategies = {{"y", "[]->[RRP1]"}};
  plan.model_file = "/abs/model.yaml";
  plan.training = {"sgd", 0.5, 0.8, 0.9, 1e-7, 0.01};
  plan.stages = {a, b};
  plan.predicted = {1.0e-3 / 7, 999};
  std::string text = plan_to_yaml(plan);
  std::string path = testing::TempDir() + "/plan_roundtrip.yaml";
  ASSERT_TRUE(write_plan(plan, path).is_ok());
  auto back = read_plan(path);
  ASSERT_TRUE(back.is_ok()) << back.error().message();
  EXPECT_EQ(back->model, plan.model);
  EXPECT_EQ(back->stages[0].forward_seconds, a.forward_seconds);  // exact, not approximately
  EXPECT_EQ(back->stages[0].backward_seconds, a.backward_seconds);
  EXPECT_EQ(back->stages[0].weights_bytes, 123456789012);
  EXPECT_EQ(back->stages[0].strategies.at("a: op"), "[S0,RS1]->[S0S1]");
  EXPECT_EQ(back->training, plan.training);
  EXPECT_EQ(back->model_path(), "/abs/model.yaml");
  EXPECT_EQ(back->predicted.step_seconds, plan.predicted.step_seconds);
  EXPECT_EQ(plan_to_yaml(*back), text);
  EXPECT_FALSE(boundary_is_intra_node(*back, 0));  // node 0 -> node 1
}

TEST(PlanValidation, LayersMustBeContiguous) {
  EXPECT_EQ(error_of("layers: [12, 23]", "layers: [13, 23]"),
            "plan.yaml: stages[1].layers: starts at layer 13 but stages[0] ends at layer 11");
  EXPECT_EQ(error_of("layers: [0, 11]", "layers: [1, 11]"),
            "plan.yaml: stages[0].layers: starts at layer 1 but the first stage must start at layer 0");
  EXPECT_EQ(error_of("layers: [12, 23]", "layers: [12, 10]"),
            "plan.yaml: stages[1].layers: last layer 10 is before first layer 12");
}

TEST(PlanValidation, LogicalMeshMustMatchTheSubmesh) {
  EXPECT_EQ(error_of("logical_mesh: {n0: 1, n1: 4}\n    forward_seconds: 0.013",
                     "logical_mesh: {n0: 2, n1: 1}\n    forward_seconds: 0.013"),
            "plan.yaml: stages[1].logical_mesh: 2x1 has 2 devices but the submesh has 4");
}

TEST(PlanValidation, SubmeshesMustNotOverlap) {
  EXPECT_EQ(error_of("first_gpu: 4", "first_gpu: 2"),
            "plan.yaml: stages[1].submesh: node 0 GPU 2 is already used by stages[0]");
}

TEST(PlanValidation, SubmeshesMustTileTheCluster) {
  EXPECT_EQ(error_of("cols: 4, first_node: 0, first_gpu: 4}\n    logical_mesh: {n0: 1, n1: 4}",
                     "cols: 2, first_node: 0, first_gpu: 4}\n    logical_mesh: {n0: 1, n1: 2}"),
            "plan.yaml: stages: the submeshes do not tile the cluster: node 0 GPU 6 is in no stage");
}

TEST(PlanValidation, SubmeshMustFit) {
  EXPECT_EQ(error_of("first_gpu: 4", "first_gpu: 6"),
            "plan.yaml: stages[1].submesh: 1x4 at node 0, GPU 6 does not fit in the 1x8 cluster");
}

TEST(PlanValidation, MicroBatchesMustDivideTheBatch) {
  EXPECT_EQ(error_of("num_micro_batches: 8", "num_micro_batches: 5"),
            "plan.yaml: num_micro_batches: 5 does not divide global_batch 32");
}

TEST(PlanValidation, MicroBatchSizeMustMatch) {
  EXPECT_EQ(error_of("micro_batch_size: 4", "micro_batch_size: 2"),
            "plan.yaml: micro_batch_size: 2 x num_micro_batches 8 is not global_batch 32");
  // Optional on read: without it the plan still says 4 and writes it back.
  std::string text = example_text();
  text.replace(text.find("micro_batch_size: 4\n"), 20, "");
  auto plan = parse_plan(text, "plan.yaml");
  ASSERT_TRUE(plan.is_ok()) << plan.error().message();
  EXPECT_EQ(plan->micro_batch_size(), 4);
  EXPECT_EQ(plan_to_yaml(*plan), example_text());
}

TEST(PlanValidation, TrainingBlock) {
  EXPECT_EQ(error_of("optimizer: \"adam\"", "optimizer: \"lamb\""),
            "plan.yaml: training.optimizer: must be \"adam\" or \"sgd\", got \"lamb\"");
  EXPECT_EQ(error_of("beta2: 0.999", "beta2: 1"), "plan.yaml: training.beta2: must be below 1");
  EXPECT_EQ(error_of("lr: 0.001", "lr: 0"), "plan.yaml: training.lr: must be positive");
  EXPECT_EQ(error_of("eps: 1e-08", "epsilon: 1e-08"), "plan.yaml: training.epsilon: unknown field");
  // Every key optional; the defaults are written back explicitly.
  std::string text = example_text();
  const size_t from = text.find("training:\n");
  const size_t to = text.find("cross_stage_link:");
  text.replace(from, to - from, "training: {optimizer: sgd}\n");
  auto plan = parse_plan(text, "plan.yaml");
  ASSERT_TRUE(plan.is_ok()) << plan.error().message();
  EXPECT_EQ(plan->training.optimizer, "sgd");
  EXPECT_EQ(plan->training.lr, Training{}.lr);
  EXPECT_NE(plan_to_yaml(*plan).find("training:\n  optimizer: \"sgd\"\n  lr: 0.001\n"), std::string::npos);
}

TEST(PlanValidation, LearningRateSchedule) {
  const std::string wd = "weight_decay: 0\n";
  EXPECT_EQ(error_of(wd, wd + "  warmup_steps: -1\n"), "plan.yaml: training.warmup_steps: must be non-negative, got -1");
  EXPECT_EQ(error_of(wd, wd + "  decay: \"exponential\"\n"),
            "plan.yaml: training.decay: must be \"constant\", \"linear\" or \"cosine\", got \"exponential\"");
  EXPECT_EQ(error_of(wd, wd + "  decay: \"cosine\"\n  warmup_steps: 10\n  decay_steps: 10\n"),
            "plan.yaml: training.decay_steps: 10 must exceed warmup_steps 10 for a cosine decay");
  EXPECT_EQ(error_of(wd, wd + "  decay: \"linear\"\n  decay_steps: 100\n  min_lr: 0.01\n"),
            "plan.yaml: training.min_lr: must lie in [0, lr]");
  EXPECT_EQ(error_of(wd, wd + "  decay_steps: 100\n"),
            "plan.yaml: training.decay_steps: is read only by a linear or cosine decay");
  EXPECT_EQ(error_of(wd, wd + "  min_lr: 0.0001\n"), "plan.yaml: training.min_lr: is read only by a linear or cosine decay");
  EXPECT_EQ(error_of(wd, wd + "  warmup: 4\n"), "plan.yaml: training.warmup: unknown field");
  // A schedule round-trips; a constant lr writes no schedule keys (the example's text is unchanged).
  std::string text = example_text();
  EXPECT_EQ(text.find("warmup_steps"), std::string::npos);
  text.replace(text.find(wd), wd.size(), wd + "  warmup_steps: 4\n  decay: \"cosine\"\n  decay_steps: 20\n  min_lr: 1e-04\n");
  auto plan = parse_plan(text, "plan.yaml");
  ASSERT_TRUE(plan.is_ok()) << plan.error().message();
  ASSERT_TRUE(validate(*plan).is_ok()) << validate(*plan).message();
  EXPECT_EQ(plan->training.warmup_steps, 4);
  EXPECT_EQ(plan->training.decay, "cosine");
  EXPECT_EQ(plan->training.decay_steps, 20);
  EXPECT_EQ(plan->training.min_lr, 1e-4);
  EXPECT_EQ(plan_to_yaml(*plan), text);
}

TEST(Plan, LearningRateOfEachStep) {
  Training constant;
  constant.lr = 0.3;
  for (int64_t step : {1, 2, 1000}) EXPECT_EQ(learning_rate(constant, step), 0.3);
  Training warm = constant;
  warm.warmup_steps = 4;
  EXPECT_DOUBLE_EQ(learning_rate(warm, 1), 0.3 / 4);
  EXPECT_DOUBLE_EQ(learning_rate(warm, 2), 0.3 * 2 / 4);
  EXPECT_DOUBLE_EQ(learning_rate(warm, 3), 0.3 * 3 / 4);
  EXPECT_EQ(learning_rate(warm, 4), 0.3);
  EXPECT_EQ(learning_rate(warm, 5), 0.3);
  // Warmup 4, then a decay over steps 4..12 to min_lr 0.1, which then stays.
  Training linear = warm;
  linear.decay = "linear";
  linear.decay_steps = 12;
  linear.min_lr = 0.1;
  EXPECT_DOUBLE_EQ(learning_rate(linear, 2), 0.15);
  EXPECT_DOUBLE_EQ(learning_rate(linear, 6), 0.1 + 0.2 * 0.75);
  EXPECT_DOUBLE_EQ(learning_rate(linear, 8), 0.2);
  EXPECT_DOUBLE_EQ(learning_rate(linear, 12), 0.1);
  EXPECT_DOUBLE_EQ(learning_rate(linear, 50), 0.1);
  Training cosine = linear;
  cosine.decay = "cosine";
  EXPECT_DOUBLE_EQ(learning_rate(cosine, 3), 0.3 * 3 / 4);
  EXPECT_DOUBLE_EQ(learning_rate(cosine, 8), (0.3 + 0.1) / 2);  // the midpoint
  EXPECT_DOUBLE_EQ(learning_rate(cosine, 6), 0.1 + 0.2 * 0.5 * (1 + std::sqrt(0.5)));  // cos(pi/4)
  EXPECT_DOUBLE_EQ(learning_rate(cosine, 12), 0.1);
  EXPECT_TRUE(validate_schedule(cosine).is_ok());
  EXPECT_FALSE(has_schedule(constant));
  EXPECT_TRUE(has_schedule(warm));
}

TEST(PlanValidation, ModelFileIsOptionalButNotEmpty) {
  EXPECT_EQ(error_of("model_file: \"../models/gpt-1.3b.yaml\"", "model_file: \"\""),
            "plan.yaml: model_file: must not be empty (leave the key out instead)");
  std::string text = example_text();
  text.replace(text.find("model_file:"), text.find("cluster:") - text.find("model_file:"), "");
  auto plan = parse_plan(text, "dir/plan.yaml");
  ASSERT_TRUE(plan.is_ok()) << plan.error().message();
  EXPECT_EQ(plan->model_path(), "");
  plan->model_file = "m.yaml";
  EXPECT_EQ(plan->model_path(), "dir/m.yaml");
}

TEST(PlanValidation, StrategiesAllOrNone) {
  EXPECT_EQ(error_of("send_bytes: 0\n    strategies: {}", "send_bytes: 0\n    strategies: {x: \"[]->[R]\"}"),
            "plan.yaml: stages[0].strategies: is empty but other stages list strategies: every stage must, or none");
}

// A two-op graph split over the example's two stages.
TEST(PlanValidation, StrategiesCoverTheTrainingGraphExactly) {
  ir::Graph graph;
  ir::Value x = graph.input("x", {4, 8});
  graph.add_value(ir::OpKind::Relu, {x}, {}, "y");
  auto plan = parse_plan(example_text(), "plan.yaml");
  ASSERT_TRUE(plan.is_ok());
  EXPECT_TRUE(validate_strategies(*plan, graph).is_ok());  // cost-only: nothing to check
  plan->stages[0].strategies = {{"x", "[]->[S0R]"}};
  plan->stages[1].strategies = {{"y", "[S0R]->[S0R]"}};
  EXPECT_TRUE(validate_strategies(*plan, graph).is_ok()) << validate_strategies(*plan, graph).message();
  plan->stages[1].strategies["x"] = "[]->[R]";
  EXPECT_EQ(validate_strategies(*plan, graph).message(), "plan.yaml: stages[1].strategies.x: op is already in stages[0]");
  plan->stages[1].strategies = {{"z", "[R]->[R]"}};
  EXPECT_EQ(validate_strategies(*plan, graph).message(), "plan.yaml: stages[1].strategies.z: no such op in the training graph");
  plan->stages[1].strategies = {{"y", "[S0R]->[Q]"}};
  EXPECT_NE(validate_strategies(*plan, graph).message().find("plan.yaml: stages[1].strategies.y: bad sharding \"[S0R]->[Q]\""),
            std::string::npos)
      << validate_strategies(*plan, graph).message();
  plan->stages[1].strategies.clear();
  EXPECT_EQ(validate_strategies(*plan, graph).message(),
            "plan.yaml: stages: op 'y' of the training graph is in no stage's strategies");
}

TEST(PlanValidation, ScheduleMustBeKnown) {
  EXPECT_EQ(error_of("schedule: \"1f1b\"", "schedule: \"interleaved\""),
            "plan.yaml: schedule: must be \"1f1b\" or \"gpipe\", got \"interleaved\"");
}

TEST(PlanValidation, FieldErrorsNameTheField) {
  EXPECT_EQ(error_of("    forward_seconds: 0.013\n", ""), "plan.yaml: stages[1].forward_seconds: missing field");
  EXPECT_EQ(error_of("backward_seconds: 0.024", "backward_seconds: -1"),
            "plan.yaml: stages[0].backward_seconds: must be non-negative, got -1");
  EXPECT_EQ(error_of("send_bytes: 0", "send_byte: 0"), "plan.yaml: stages[1].send_byte: unknown field");
  EXPECT_EQ(error_of("gpus_per_node: 8", "gpus_per_node: eight"), "plan.yaml: cluster.gpus_per_node: must be an integer");
}

TEST(PlanValidation, ClusterSpecMustMatch) {
  auto plan = parse_plan(example_text(), "plan.yaml");
  ASSERT_TRUE(plan.is_ok());
  cluster::ClusterSpec spec;
  spec.name = "aws-p3-2node";
  spec.num_nodes = 2;
  spec.gpus_per_node = 8;
  EXPECT_EQ(validate(*plan, &spec).message(),
            "plan.yaml: cluster: plan is for 1x8 (nodes x GPUs) but cluster 'aws-p3-2node' is 2x8");
  spec.num_nodes = 1;
  EXPECT_TRUE(validate(*plan, &spec).is_ok());
}

TEST(Plan, ReportListsStages) {
  auto plan = parse_plan(example_text(), "plan.yaml");
  ASSERT_TRUE(plan.is_ok());
  std::string text = report(*plan);
  EXPECT_NE(text.find("gpt-1.3b on aws-p3-1node (1 node(s) x 8 GPUs)"), std::string::npos) << text;
  EXPECT_NE(text.find("micro-batches of 4, schedule 1f1b, 2 stage(s)"), std::string::npos) << text;
  EXPECT_NE(text.find("12-23"), std::string::npos) << text;
  EXPECT_NE(text.find("1x4@0:4"), std::string::npos) << text;
}

}  // namespace
}  // namespace strata::plan

namespace strata::plan {
namespace {

TEST(Plan, TrainingBlockGivesTheAutodiffOptions) {
  const autodiff::TrainingOptions sgd = autodiff_options({"sgd", 0.5, 0.8, 0.9, 1e-7, 0.01});
  EXPECT_EQ(sgd.optimizer, autodiff::Optimizer::sgd);
  EXPECT_EQ(sgd.lr, 0.5);
  EXPECT_EQ(sgd.beta1, 0.8);
  EXPECT_EQ(sgd.beta2, 0.9);
  EXPECT_EQ(sgd.eps, 1e-7);
  EXPECT_EQ(sgd.weight_decay, 0.01);
  EXPECT_EQ(autodiff_options(Training{}).optimizer, autodiff::Optimizer::adam);
}

}  // namespace
}  // namespace strata::plan
