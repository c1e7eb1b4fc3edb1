// The baselines: their strategy filters on hand-made ops, and every method of compare() on a tiny
// GPT through the planner with a greedy stage solver over the real strategy sets, checking each
// method's structure, that no restriction beats the full search's objective, ZeRO-2's derivation,
// out-of-memory reporting, and the table and JSON.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "strata/autodiff/autodiff.h"
#include "strata/baselines/baselines.h"
#include "strata/cluster/alpha_beta.h"
#include "strata/intra/stage_solver.h"
#include "strata/models/models.h"
#include "baselines/greedy_solver.h"

namespace strata::baselines {
namespace {

using intra::OpSharding;
using intra::Strategy;

Strategy strategy(const std::string& text) {
  auto sharding = intra::parse_op_sharding(text);
  EXPECT_TRUE(sharding.is_ok()) << text;
  return {"test", *sharding, 0, 0, 0};
}

ir::Op op(ir::OpKind kind, ir::Role role, std::vector<int64_t> shape) {
  ir::Op o;
  o.kind = kind;
  o.role = role;
  o.outputs.push_back(ir::TensorType{std::move(shape), DType::f32});
  return o;
}

TEST(Filters, ReplicatedWeightsForbidsAnySplitOfParametersAndUpdates) {
  const auto allow = replicated_weights_filter().allow;
  const ir::Op weight = op(ir::OpKind::Parameter, ir::Role::forward, {8, 16});
  EXPECT_TRUE(allow(weight, strategy("[]->[RR]")));
  EXPECT_FALSE(allow(weight, strategy("[]->[S0R]")));
  EXPECT_FALSE(allow(weight, strategy("[]->[RS1]")));
  const ir::Op state = op(ir::OpKind::Parameter, ir::Role::update, {8, 16});
  EXPECT_FALSE(allow(state, strategy("[]->[S01R]")));
  const ir::Op update = op(ir::OpKind::SgdUpdate, ir::Role::update, {8, 16});
  EXPECT_TRUE(allow(update, strategy("[RR,RR]->[RR]")));
  EXPECT_FALSE(allow(update, strategy("[RR,RR]->[RRP0]")));  // a pending sum is an axis in use
  // Activations may split as they like.
  const ir::Op dot = op(ir::OpKind::Dot, ir::Role::forward, {8, 16});
  EXPECT_TRUE(allow(dot, strategy("[S0R,RR]->[S0R]")));
}

TEST(Filters, ZeroThreeSplitsWeightsOverEveryAxisWhenItCan) {
  const cluster::LogicalMesh line{4, 1}, square{2, 2};
  const ir::Op weight = op(ir::OpKind::Parameter, ir::Role::forward, {8, 6});
  EXPECT_TRUE(zero3_filter(line).allow(weight, strategy("[]->[S0R]")));
  EXPECT_FALSE(zero3_filter(line).allow(weight, strategy("[]->[RR]")));
  EXPECT_TRUE(zero3_filter(square).allow(weight, strategy("[]->[S01R]")));
  EXPECT_TRUE(zero3_filter(square).allow(weight, strategy("[]->[S0S1]")));
  EXPECT_FALSE(zero3_filter(square).allow(weight, strategy("[]->[S0R]")));  // axis 1 left whole
  // No dimension divides by 4: stays replicated.
  const ir::Op odd = op(ir::OpKind::Parameter, ir::Role::forward, {3, 6});
  EXPECT_TRUE(zero3_filter(line).allow(odd, strategy("[]->[RR]")));
  // The update of a weight follows it; activations are free.
  const ir::Op update = op(ir::OpKind::SgdUpdate, ir::Role::update, {8, 6});
  EXPECT_TRUE(zero3_filter(line).allow(update, strategy("[S0R,S0R]->[S0R]")));
  EXPECT_FALSE(zero3_filter(line).allow(update, strategy("[RR,RR]->[RR]")));
  EXPECT_TRUE(zero3_filter(line).allow(op(ir::OpKind::Dot, ir::Role::forward, {8, 6}), strategy("[RR,RR]->[RR]")));
}

struct Fixture {
  models::ModelSpec spec;
  cluster::ClusterSpec cluster;
  Fixture() {
    auto m = models::load_model_config(std::string(STRATA_SOURCE_DIR) + "/configs/models/gpt-tiny.yaml");
    EXPECT_TRUE(m.is_ok()) << m.error().message();
    spec = *m;
    spec.layers = 4;
    auto c = cluster::load_cluster(std::string(STRATA_SOURCE_DIR) + "/configs/clusters/cpu-4.yaml");
    EXPECT_TRUE(c.is_ok()) << c.error().message();
    cluster = *c;
  }
};

CompareOptions greedy_options() {
  CompareOptions o;
  o.planner.solve = testing_solver::greedy;
  o.planner.num_layers = 4;
  return o;
}

const MethodResult& find(const std::vector<MethodResult>& results, Method m) {
  auto it = std::find_if(results.begin(), results.end(), [&](const MethodResult& r) { return r.method == m; });
  STRATA_CHECK(it != results.end(), "method missing");
  return *it;
}

// The training graph the plans were made for (one micro-batch of the chosen count).
ir::Graph training_graph(const Fixture& f, const plan::Plan& p) {
  auto forward = models::build_forward_graph(f.spec, p.micro_batch_size());
  EXPECT_TRUE(forward.is_ok());
  autodiff::TrainingOptions t;
  t.optimizer = autodiff::Optimizer::adam;
  auto training = autodiff::build_training_graph(*forward, t);
  EXPECT_TRUE(training.is_ok());
  return std::move(training).value();
}

TEST(Compare, EveryMethodOnATinyGpt) {
  Fixture f;
  const cluster::AlphaBetaModel comm(f.cluster);
  auto results = compare(f.spec, f.cluster, comm, greedy_options());
  ASSERT_TRUE(results.is_ok()) << results.error().message();
  ASSERT_EQ(results->size(), all_methods().size());
  for (size_t i = 0; i < results->size(); ++i) {
    const MethodResult& r = (*results)[i];
    EXPECT_EQ(r.method, all_methods()[i]);
    ASSERT_TRUE(r.feasible) << method_name(r.method) << ": " << r.reason;
    EXPECT_TRUE(plan::validate(r.result.plan, &f.cluster).is_ok()) << method_name(r.method);
    EXPECT_GT(r.result.tflops_per_device, 0) << method_name(r.method);
  }
  const MethodResult& strata = find(*results, Method::strata);
  // Every method but ZeRO-2 (derived outside the ILP) searches a subset of the full search space
  // with the same solver, stage costs and micro-batch counts.
  for (Method m : {Method::data_parallel, Method::zero3, Method::megatron, Method::intra_only, Method::inter_only,
                   Method::equal_layer, Method::equal_mesh}) {
    EXPECT_LE(strata.result.stats.dp_optimum_seconds, find(*results, m).result.dp_objective_seconds * (1 + 1e-9))
        << method_name(m);
  }
  // One stage on all four devices.
  for (Method m : {Method::data_parallel, Method::zero2, Method::zero3, Method::intra_only}) {
    const plan::Plan& p = find(*results, m).result.plan;
    ASSERT_EQ(p.num_stages(), 1) << method_name(m);
    EXPECT_EQ(p.stages[0].submesh.num_devices(), 4) << method_name(m);
  }
  // Whole weights in data parallel and in every inter-only stage; split ones in ZeRO-3.
  const plan::Plan& dp = find(*results, Method::data_parallel).result.plan;
  const plan::Plan& z3 = find(*results, Method::zero3).result.plan;
  const ir::Graph graph = training_graph(f, dp);
  int parameters = 0;
  for (ir::OpId id = 0; id < graph.num_ops(); ++id) {
    const ir::Op& o = graph.op(id);
    if (o.kind != ir::OpKind::Parameter) continue;
    ++parameters;
    EXPECT_EQ(dp.stages[0].strategies.at(o.name).find('S'), std::string::npos) << o.name;
    EXPECT_NE(z3.stages[0].strategies.at(o.name).find('S'), std::string::npos) << o.name;
    for (const plan::Stage& st : find(*results, Method::inter_only).result.plan.stages) {
      if (st.strategies.count(o.name)) {
        EXPECT_EQ(st.strategies.at(o.name).find('S'), std::string::npos) << o.name;
      }
    }
  }
  EXPECT_GT(parameters, 10);
  EXPECT_LT(z3.stages[0].weights_bytes, dp.stages[0].weights_bytes);
  // ZeRO-2: data parallel with the optimizer state and its update over the 4 devices.
  const plan::Plan& z2 = find(*results, Method::zero2).result.plan;
  EXPECT_EQ(z2.stages[0].weights_bytes, dp.stages[0].weights_bytes);
  EXPECT_EQ(z2.stages[0].optimizer_state_bytes, (dp.stages[0].optimizer_state_bytes + 3) / 4);
  EXPECT_DOUBLE_EQ(z2.stages[0].update_seconds, dp.stages[0].update_seconds / 4);
  EXPECT_TRUE(z2.stages[0].strategies.empty());
  EXPECT_LT(z2.predicted.peak_memory_bytes, dp.predicted.peak_memory_bytes);
  EXPECT_LE(find(*results, Method::zero2).result.step_seconds, find(*results, Method::data_parallel).result.step_seconds);
  // The ablations keep their restriction.
  const plan::Plan& layer = find(*results, Method::equal_layer).result.plan;
  for (const plan::Stage& st : layer.stages) {
    EXPECT_EQ(st.last_layer - st.first_layer, layer.stages[0].last_layer - layer.stages[0].first_layer);
  }
  const plan::Plan& mesh = find(*results, Method::equal_mesh).result.plan;
  for (const plan::Stage& st : mesh.stages) EXPECT_EQ(st.submesh.num_devices() * mesh.num_stages(), 4);
  const MethodResult& grid = find(*results, Method::megatron);
  EXPECT_NE(grid.detail.find(" x tp "), std::string::npos);

  const std::string table = compare_table(f.spec.name, f.cluster.name, 4, *results);
  for (Method m : all_methods()) EXPECT_NE(table.find(method_name(m)), std::string::npos) << table;
  EXPECT_NE(table.find("1.00x"), std::string::npos) << table;
  const Json json = compare_json(f.spec.name, f.cluster.name, 4, *results);
  ASSERT_EQ(json["methods"].size(), all_methods().size());
  EXPECT_EQ(json["methods"][0]["method"].as_string(), "strata");
  EXPECT_DOUBLE_EQ(json["methods"][0]["step_seconds"].as_number(), strata.result.step_seconds);
  EXPECT_EQ(json["devices"].as_int(), 4);
}

TEST(Compare, WhatDoesNotFitIsOutOfMemory) {
  Fixture f;
  const cluster::AlphaBetaModel comm(f.cluster);
  CompareOptions o = greedy_options();
  o.methods = {Method::data_parallel, Method::zero2, Method::zero3};
  o.planner.num_micro_batches = 1;  // one B, so no method can trade activations for micro-batches
  auto roomy = compare(f.spec, f.cluster, comm, o);
  ASSERT_TRUE(roomy.is_ok()) << roomy.error().message();
  const int64_t dp = (*roomy)[0].result.plan.predicted.peak_memory_bytes;
  const int64_t z3 = (*roomy)[2].result.plan.predicted.peak_memory_bytes;
  ASSERT_LT(z3, dp);
  // A budget below data parallel's peak but above ZeRO-3's.
  o.planner.memory_budget_bytes = (dp + z3) / 2;
  auto tight = compare(f.spec, f.cluster, comm, o);
  ASSERT_TRUE(tight.is_ok()) << tight.error().message();
  EXPECT_FALSE((*tight)[0].feasible);
  EXPECT_TRUE((*tight)[0].out_of_memory) << (*tight)[0].reason;
  // ZeRO-2 (covered by ZeroTwoFitsWhereDataParallelDoesNot) may fit or not here.
  EXPECT_TRUE((*tight)[2].feasible) << (*tight)[2].reason;
  EXPECT_LE((*tight)[2].result.plan.predicted.peak_memory_bytes, o.planner.memory_budget_bytes);
  const std::string table = compare_table(f.spec.name, f.cluster.name, 4, *tight);
  EXPECT_NE(table.find("OOM"), std::string::npos) << table;
  EXPECT_TRUE(compare_json(f.spec.name, f.cluster.name, 4, *tight)["methods"][0]["out_of_memory"].as_bool());
}

// A comm model with hand-picked collective seconds: all-reduce 3 s, reduce-scatter 1 s,
// all-gather 0.5 s, whatever the group and bytes.
class FixedComm : public cluster::CommModel {
 public:
  double seconds(cluster::Collective kind, const cluster::CommGroup&, int64_t, DType) const override {
    switch (kind) {
      case cluster::Collective::all_reduce: return 3;
      case cluster::Collective::reduce_scatter: return 1;
      case cluster::Collective::all_gather: return 0.5;
      default: return 0;
    }
  }
  std::string describe() const override { return "fixed"; }
};

TEST(Compare, ZeroTwoShardsTheStateAndUpdateOfAHandMadePlan) {
  planner::PlanResult dp;
  plan::Plan& p = dp.plan;
  p.cluster = {"cpu-4", 1, 4};
  p.global_batch = 8;
  p.num_micro_batches = 2;
  plan::Stage s;
  s.last_layer = 3;
  s.submesh = {1, 4};
  s.logical_mesh = {1, 4};
  s.forward_seconds = 1;
  s.backward_seconds = 2;
  s.update_seconds = 0.4;
  s.grad_sync_seconds = 0.3;
  s.weights_bytes = 1000;
  s.optimizer_state_bytes = 2002;  // not a multiple of 4: each device's shard is rounded up
  s.activation_bytes_per_micro_batch = 100;
  s.strategies["w"] = "[]->[RR]";
  p.stages.push_back(s);
  dp.training_flops = 4e12;
  auto z2 = zero2_from_data_parallel(dp, FixedComm(), DType::f32);
  ASSERT_TRUE(z2.is_ok()) << z2.error().message();
  const plan::Stage& z = z2->plan.stages[0];
  EXPECT_EQ(z.weights_bytes, 1000);          // replicated
  EXPECT_EQ(z.optimizer_state_bytes, 501);   // ceil(2002 / 4)
  EXPECT_DOUBLE_EQ(z.update_seconds, 0.1);   // 0.4 / 4
  EXPECT_DOUBLE_EQ(z.grad_sync_seconds, 0.15);  // 0.3 * (RS 1 + AG 0.5) / AR 3
  EXPECT_TRUE(z.strategies.empty());
  // One stage, 1F1B: 2 micro-batches of 1 + 2 s, then the sync and the update.
  EXPECT_DOUBLE_EQ(z2->step_seconds, 2 * 3 + 0.15 + 0.1);
  EXPECT_DOUBLE_EQ(z2->plan.predicted.step_seconds, z2->step_seconds);
  // Weights, the state's shard and one micro-batch's activations.
  EXPECT_EQ(z2->plan.predicted.peak_memory_bytes, 1000 + 501 + 100);
  EXPECT_DOUBLE_EQ(z2->tflops_per_device, 4e12 / (6.25 * 4) / 1e12);
  // Not a one-stage plan: an error naming the field.
  planner::PlanResult two = dp;
  two.plan.stages.push_back(s);
  EXPECT_EQ(zero2_from_data_parallel(two, FixedComm(), DType::f32).error().field, "plan.stages");
}

TEST(Compare, ZeroTwoFitsWhereDataParallelDoesNot) {
  Fixture f;
  const cluster::AlphaBetaModel comm(f.cluster);
  CompareOptions o = greedy_options();
  o.methods = {Method::data_parallel, Method::zero2};
  // Wider and one sequence per micro-batch, so that weights and state outweigh the activations.
  f.spec.hidden = 128;
  o.planner.num_micro_batches = 8;
  auto roomy = compare(f.spec, f.cluster, comm, o);
  ASSERT_TRUE(roomy.is_ok()) << roomy.error().message();
  ASSERT_TRUE((*roomy)[0].feasible && (*roomy)[1].feasible);
  const plan::Stage& dp = (*roomy)[0].result.plan.stages[0];
  const plan::Stage& z2 = (*roomy)[1].result.plan.stages[0];
  // Hand count: data parallel holds weights + state + activations; ZeRO-2 a quarter of the state.
  EXPECT_EQ((*roomy)[0].result.plan.predicted.peak_memory_bytes,
            dp.weights_bytes + dp.optimizer_state_bytes + dp.activation_bytes_per_micro_batch);
  EXPECT_EQ(z2.weights_bytes, dp.weights_bytes);
  EXPECT_EQ(z2.optimizer_state_bytes, (dp.optimizer_state_bytes + 3) / 4);
  EXPECT_EQ((*roomy)[1].result.plan.predicted.peak_memory_bytes,
            z2.weights_bytes + z2.optimizer_state_bytes + z2.activation_bytes_per_micro_batch);
  // Adam: the state is two moments of every weight.
  EXPECT_EQ(dp.optimizer_state_bytes, 2 * dp.weights_bytes);
  // Alpha-beta: reduce-scatter + all-gather cost what the all-reduce did; the update is a quarter.
  EXPECT_NEAR(z2.grad_sync_seconds, dp.grad_sync_seconds, 1e-12 + 1e-9 * dp.grad_sync_seconds);
  EXPECT_DOUBLE_EQ(z2.update_seconds, dp.update_seconds / 4);
  EXPECT_NE((*roomy)[1].detail.find("sharded over 4"), std::string::npos);

  // A budget below what data parallel's weights and state alone need, above ZeRO-2's whole plan.
  const int64_t z2_peak = (*roomy)[1].result.plan.predicted.peak_memory_bytes;
  ASSERT_LT(z2_peak, dp.weights_bytes + dp.optimizer_state_bytes) << "the tiny model's activations are too large";
  o.planner.memory_budget_bytes = z2_peak;
  auto tight = compare(f.spec, f.cluster, comm, o);
  ASSERT_TRUE(tight.is_ok()) << tight.error().message();
  EXPECT_TRUE((*tight)[0].out_of_memory) << (*tight)[0].reason;
  ASSERT_TRUE((*tight)[1].feasible) << (*tight)[1].reason;
  EXPECT_LE((*tight)[1].result.plan.predicted.peak_memory_bytes, z2_peak);
  // Below the weights and their state's shard nothing fits.
  o.planner.memory_budget_bytes = z2.weights_bytes + z2.optimizer_state_bytes - 1;
  auto none = compare(f.spec, f.cluster, comm, o);
  ASSERT_TRUE(none.is_ok()) << none.error().message();
  EXPECT_FALSE((*none)[1].feasible);
  EXPECT_TRUE((*none)[1].out_of_memory);
  EXPECT_NE((*none)[1].reason.find("no data-parallel plan fits in"), std::string::npos) << (*none)[1].reason;
  EXPECT_NE((*none)[1].reason.find("optimizer state sharded over 4 devices"), std::string::npos) << (*none)[1].reason;
}

TEST(Compare, MethodNamesRoundTrip) {
  for (Method m : all_methods()) EXPECT_EQ(*parse_method(method_name(m)), m);
  EXPECT_EQ(parse_method("zero-1").error().message(),
            "methods: unknown method 'zero-1' (known: strata, data-parallel, zero-2, zero-3, megatron-grid, "
            "intra-only, inter-only, equal-layer, equal-mesh)");
}

}  // namespace
}  // namespace strata::baselines
