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
    EXPECT_LE(strata.result.dp_objective_seconds, find(*results, m).result.dp_objective_seconds * (1 + 1e-9))
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
  EXPECT_TRUE((*tight)[1].out_of_memory);  // derived from data parallel
  EXPECT_TRUE((*tight)[2].feasible) << (*tight)[2].reason;
  EXPECT_LE((*tight)[2].result.plan.predicted.peak_memory_bytes, o.planner.memory_budget_bytes);
  const std::string table = compare_table(f.spec.name, f.cluster.name, 4, *tight);
  EXPECT_NE(table.find("OOM"), std::string::npos) << table;
  EXPECT_TRUE(compare_json(f.spec.name, f.cluster.name, 4, *tight)["methods"][0]["out_of_memory"].as_bool());
}

TEST(Compare, MethodNamesRoundTrip) {
  for (Method m : all_methods()) EXPECT_EQ(*parse_method(method_name(m)), m);
  EXPECT_EQ(parse_method("zero-1").error().message(),
            "methods: unknown method 'zero-1' (known: strata, data-parallel, zero-2, zero-3, megatron-grid, "
            "intra-only, inter-only, equal-layer, equal-mesh)");
}

}  // namespace
}  // namespace strata::baselines
