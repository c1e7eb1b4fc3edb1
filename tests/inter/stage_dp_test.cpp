// The stage × submesh DP against brute force on random small instances, plan validity
// (coverage, memory, tiling), caching and threading of the oracle, and its errors.
#include <gtest/gtest.h>

#include <atomic>
#include <mutex>
#include <random>
#include <set>
#include <tuple>

#include "strata/inter/stage_dp.h"

namespace strata::inter {
namespace {

uint64_t mix(uint64_t x) {  // splitmix64
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

// A pure random oracle: the same query always gets the same answer; ~15% infeasible.
StageCostOracle random_oracle(uint64_t seed) {
  return [seed](const StageQuery& q) {
    uint64_t h = seed;
    for (int v : {q.first_layer, q.last_layer, q.submesh.rows, q.submesh.cols, q.logical_mesh.n0,
                  q.num_micro_batches}) {
      h = mix(h ^ static_cast<uint64_t>(v + 1000));
    }
    StageCost c;
    c.feasible = h % 100 >= 15;
    const int layers = q.last_layer - q.first_layer + 1;
    c.seconds = layers * (0.2 + (mix(h + 1) % 1000) / 1000.0) /
                std::sqrt(static_cast<double>(q.submesh.num_devices()));
    c.weights_bytes = static_cast<int64_t>(layers * (mix(h + 2) % 60));
    c.activation_bytes = static_cast<int64_t>(layers * (mix(h + 3) % 30));
    return c;
  };
}

void expect_valid_plan(const StageDpRequest& r, const StageDpResult& plan) {
  ASSERT_FALSE(plan.stages.empty());
  const int count = static_cast<int>(plan.stages.size());
  const int nodes = r.num_nodes, gpus = r.gpus_per_node;
  std::vector<int> owner(nodes * gpus, -1);
  int next_layer = 0;
  double sum = 0, max = 0;
  for (int s = 0; s < count; ++s) {
    const PlannedStage& st = plan.stages[s];
    EXPECT_EQ(st.first_layer, next_layer);
    EXPECT_LE(st.first_layer, st.last_layer);
    next_layer = st.last_layer + 1;
    EXPECT_EQ(st.logical_mesh.num_devices(), st.submesh.num_devices());
    EXPECT_EQ(st.micro_batches_in_flight, std::min(count - s, plan.num_micro_batches));
    EXPECT_EQ(st.peak_memory_bytes,
              st.weights_bytes + st.activation_bytes * st.micro_batches_in_flight);
    EXPECT_LE(st.peak_memory_bytes, r.memory_budget_bytes);
    StageCost c = r.oracle({st.first_layer, st.last_layer, st.submesh, st.logical_mesh,
                            plan.num_micro_batches});
    EXPECT_TRUE(c.feasible);
    EXPECT_EQ(c.seconds, st.seconds);
    sum += st.seconds;
    max = std::max(max, st.seconds);
    for (int row = 0; row < st.submesh.rows; ++row) {
      for (int col = 0; col < st.submesh.cols; ++col) {
        const int node = st.placement.first_node + row, gpu = st.placement.first_gpu + col;
        ASSERT_LT(node, nodes);
        ASSERT_LT(gpu, gpus);
        ASSERT_EQ(owner[node * gpus + gpu], -1) << "two stages on node " << node << " gpu " << gpu;
        owner[node * gpus + gpu] = s;
      }
    }
  }
  EXPECT_EQ(next_layer, r.num_layers);
  for (int d = 0; d < nodes * gpus; ++d) EXPECT_NE(owner[d], -1) << "device " << d << " idle";
  EXPECT_NEAR(plan.objective_seconds, sum + (plan.num_micro_batches - 1) * max, 1e-12);
}

TEST(StageDp, MatchesBruteForceOnRandomInstances) {
  std::mt19937_64 rng(42);
  const std::pair<int, int> clusters[] = {{1, 1}, {1, 2}, {1, 4}, {2, 1}, {2, 2}, {2, 4}, {2, 4}};
  int solved = 0, unsolvable = 0, memory_bound = 0, pipelined = 0;
  for (int trial = 0; trial < 100; ++trial) {
    StageDpRequest r;
    r.num_layers = 1 + static_cast<int>(rng() % 8 < 2 ? rng() % 2 : 2 + rng() % 3);
    std::tie(r.num_nodes, r.gpus_per_node) = clusters[rng() % 7];
    r.num_micro_batches = {1 + static_cast<int>(rng() % 8)};
    if (rng() % 2) r.num_micro_batches.push_back(r.num_micro_batches[0] + 3);
    r.memory_budget_bytes = 40 + static_cast<int64_t>(rng() % 200);
    r.oracle = random_oracle(rng());
    auto fast = solve_stage_dp(r);
    auto slow = solve_stage_dp_brute_force(r);
    ASSERT_EQ(fast.is_ok(), slow.is_ok()) << "trial " << trial << ": "
                                          << (fast ? slow.error().message() : fast.error().message());
    if (!fast.is_ok()) {
      ++unsolvable;
      continue;
    }
    ++solved;
    if (fast->stages.size() >= 2) ++pipelined;
    EXPECT_NEAR(fast->objective_seconds, slow->objective_seconds, 1e-9) << "trial " << trial;
    expect_valid_plan(r, *fast);
    expect_valid_plan(r, *slow);
    // Would the plan change with no memory limit? Then memory shaped the answer.
    StageDpRequest unlimited = r;
    unlimited.memory_budget_bytes = int64_t{1} << 50;
    if (solve_stage_dp(unlimited)->objective_seconds < fast->objective_seconds - 1e-12) {
      ++memory_bound;
    }
  }
  EXPECT_GE(solved, 20);
  EXPECT_GE(pipelined, 10);  // many optima must be real pipelines, not one stage
  EXPECT_GE(unsolvable, 1);    // some instances must not fit at all
  EXPECT_GE(memory_bound, 3);  // and in some the budget must bind
}

TEST(StageDp, EachCandidateEvaluatedOnceAndThreadsGiveTheSamePlan) {
  StageDpRequest r;
  r.num_layers = 4;
  r.num_nodes = 2;
  r.gpus_per_node = 4;
  r.num_micro_batches = {2, 8};
  r.memory_budget_bytes = 200;
  auto inner = random_oracle(99);
  std::mutex mutex;
  std::set<std::tuple<int, int, int, int, int, int>> seen;
  std::atomic<int> calls{0}, repeats{0};
  r.oracle = [&](const StageQuery& q) {
    ++calls;
    std::lock_guard<std::mutex> lock(mutex);
    if (!seen.insert({q.first_layer, q.last_layer, q.submesh.rows, q.submesh.cols,
                      q.logical_mesh.n0, q.num_micro_batches})
             .second) {
      ++repeats;
    }
    return inner(q);
  };
  auto serial = solve_stage_dp(r);
  ASSERT_TRUE(serial.is_ok()) << serial.error().message();
  EXPECT_EQ(repeats.load(), 0);
  EXPECT_EQ(calls.load(), serial->stats.oracle_calls);
  EXPECT_GT(serial->stats.candidates_skipped, 0);
  EXPECT_GT(serial->stats.infeasible_candidates, 0);

  r.num_threads = 4;
  calls = 0;
  seen.clear();
  auto threaded = solve_stage_dp(r);
  ASSERT_TRUE(threaded.is_ok());
  EXPECT_EQ(repeats.load(), 0);
  EXPECT_EQ(calls.load(), threaded->stats.oracle_calls);
  EXPECT_EQ(threaded->objective_seconds, serial->objective_seconds);
  EXPECT_EQ(threaded->num_micro_batches, serial->num_micro_batches);
  ASSERT_EQ(threaded->stages.size(), serial->stages.size());
  for (size_t s = 0; s < serial->stages.size(); ++s) {
    EXPECT_EQ(threaded->stages[s].last_layer, serial->stages[s].last_layer);
    EXPECT_EQ(threaded->stages[s].submesh, serial->stages[s].submesh);
    EXPECT_EQ(threaded->stages[s].logical_mesh, serial->stages[s].logical_mesh);
    EXPECT_EQ(threaded->stages[s].placement.first_node, serial->stages[s].placement.first_node);
    EXPECT_EQ(threaded->stages[s].placement.first_gpu, serial->stages[s].placement.first_gpu);
  }
}

TEST(StageDp, PipelinesWhenMicroBatchesAmortiseTheFill) {
  // Stage time = layers / devices with a 25% loss when a stage spans 2 GPUs: with B = 1 the
  // single stage on both GPUs wins (1.25 × 2/2 = 1.25 < 1 + 1); with B = 16 two stages of one
  // layer each (1 + 1 + 15 × 1 = 17) beat it (16 × 1.25 = 20).
  StageDpRequest r;
  r.num_layers = 2;
  r.num_nodes = 1;
  r.gpus_per_node = 2;
  r.memory_budget_bytes = 1000;
  r.oracle = [](const StageQuery& q) {
    const int layers = q.last_layer - q.first_layer + 1, devices = q.submesh.num_devices();
    return StageCost{true, layers * (devices == 2 ? 1.25 : 1.0) / devices, 10, 10};
  };
  r.num_micro_batches = {1};
  auto one = solve_stage_dp(r);
  ASSERT_TRUE(one.is_ok());
  EXPECT_EQ(one->stages.size(), 1u);
  EXPECT_DOUBLE_EQ(one->objective_seconds, 1.25);
  r.num_micro_batches = {16};
  auto many = solve_stage_dp(r);
  ASSERT_TRUE(many.is_ok());
  ASSERT_EQ(many->stages.size(), 2u);
  EXPECT_DOUBLE_EQ(many->objective_seconds, 17.0);
  EXPECT_EQ(many->stages[0].micro_batches_in_flight, 2);
  EXPECT_EQ(many->stages[1].micro_batches_in_flight, 1);
}

TEST(StageDp, NothingFitsNamesTheLeastMemoryAndTheBudget) {
  // weights 1000·layers/devices, activations 100·layers/devices. One stage on (1, 2): 1100.
  // Two stages on (1, 1): the first holds min(2, B) = 2 micro-batches: 1000 + 200 = 1200.
  StageDpRequest r;
  r.num_layers = 2;
  r.num_nodes = 1;
  r.gpus_per_node = 2;
  r.num_micro_batches = {4};
  r.memory_budget_bytes = 100;
  r.oracle = [](const StageQuery& q) {
    const int layers = q.last_layer - q.first_layer + 1, devices = q.submesh.num_devices();
    return StageCost{true, 1.0, 1000 * layers / devices, 100 * layers / devices};
  };
  auto result = solve_stage_dp(r);
  ASSERT_FALSE(result.is_ok());
  EXPECT_EQ(result.error().field, "memory_budget_bytes");
  EXPECT_NE(result.error().reason.find("needs is 1100 bytes"), std::string::npos)
      << result.error().reason;
  EXPECT_NE(result.error().reason.find("the budget is 100 bytes"), std::string::npos);
  r.memory_budget_bytes = 1100;
  ASSERT_TRUE(solve_stage_dp(r).is_ok());
}

TEST(StageDp, ErrorsNameTheField) {
  StageDpRequest r;
  r.num_layers = 2;
  r.num_micro_batches = {1};
  r.memory_budget_bytes = 100;
  r.oracle = [](const StageQuery&) { return StageCost{}; };  // nothing feasible
  EXPECT_EQ(solve_stage_dp(r).error().field, "oracle");
  r.gpus_per_node = 6;
  EXPECT_EQ(solve_stage_dp(r).error().field, "cluster.gpus_per_node");
  r.gpus_per_node = 2;
  r.num_micro_batches = {};
  EXPECT_EQ(solve_stage_dp(r).error().field, "num_micro_batches");
  r.num_micro_batches = {2, 2};
  EXPECT_EQ(solve_stage_dp(r).error().field, "num_micro_batches[1]");
  r.num_micro_batches = {1};
  r.num_layers = 0;
  EXPECT_EQ(solve_stage_dp(r).error().field, "num_layers");
  r.num_layers = 1;
  r.oracle = [](const StageQuery&) { return StageCost{true, -1.0, 0, 0}; };
  EXPECT_EQ(solve_stage_dp(r).error().field, "oracle");
}

}  // namespace
}  // namespace strata::inter
