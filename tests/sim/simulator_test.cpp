// The simulator against closed forms (uniform and non-uniform pipelines), hand-computed
// timelines, memory peaks, communication, and the 1F1B order read back from the trace JSON.
#include <gtest/gtest.h>

#include <algorithm>
#include <numeric>
#include <random>

#include "strata/sim/simulator.h"

namespace strata::sim {
namespace {

// S stages of one GPU each on one node, zero-cost communication unless changed.
plan::Plan synthetic(const std::vector<double>& forward, const std::vector<double>& backward, int micro_batches,
                     const std::string& schedule) {
  plan::Plan p;
  p.model = "synthetic";
  const int stages = static_cast<int>(forward.size());
  p.cluster = {"synthetic", 1, stages};
  p.num_micro_batches = micro_batches;
  p.global_batch = 2 * micro_batches;
  p.schedule = schedule;
  p.cross_stage_link = {1e30, 0};
  for (int s = 0; s < stages; ++s) {
    plan::Stage stage;
    stage.first_layer = stage.last_layer = s;
    stage.first_gpu = s;
    stage.forward_seconds = forward[s];
    stage.backward_seconds = backward[s];
    stage.weights_bytes = 1000 + s;
    stage.optimizer_state_bytes = 2000;
    stage.activation_bytes_per_micro_batch = 100;
    p.stages.push_back(stage);
  }
  EXPECT_TRUE(plan::validate(p).is_ok()) << plan::validate(p).message();
  return p;
}

TEST(Simulator, UniformStagesMatchTheClosedForm) {
  const double f = 1.5, b = 2.75, sync = 0.25, update = 0.125;
  for (const std::string schedule : {"gpipe", "1f1b"}) {
    for (int S : {1, 2, 3, 4, 6}) {
      for (int B : {1, 2, 4, 8, 13}) {
        plan::Plan p = synthetic(std::vector<double>(S, f), std::vector<double>(S, b), B, schedule);
        for (auto& stage : p.stages) {
          stage.grad_sync_seconds = sync;
          stage.update_seconds = update;
        }
        Result r = simulate(p);
        SCOPED_TRACE(schedule + " S=" + std::to_string(S) + " B=" + std::to_string(B));
        EXPECT_NEAR(r.pipeline_seconds, (B + S - 1) * (f + b), 1e-9);
        EXPECT_NEAR(r.step_seconds, (B + S - 1) * (f + b) + sync + update, 1e-9);
        EXPECT_NEAR(r.bubble_fraction, double(S - 1) / (B + S - 1), 1e-12);
        EXPECT_NEAR(r.stages[0].bubble_fraction, double(S - 1) / (B + S - 1), 1e-12);
      }
    }
  }
}

// GPipe with any stage times: the forwards and then the backwards are flow shops of identical
// jobs, so the step is Σf + Σb + (B-1)(max f + max b).
TEST(Simulator, GPipeNonUniformMatchesFlowShopForm) {
  std::mt19937 rng(7);
  std::uniform_real_distribution<double> seconds(0.1, 3.0);
  for (int trial = 0; trial < 40; ++trial) {
    const int S = 1 + trial % 5;
    const int B = 1 + (trial * 7) % 9;
    std::vector<double> f(S), b(S);
    for (int s = 0; s < S; ++s) {
      f[s] = seconds(rng);
      b[s] = seconds(rng);
    }
    Result r = simulate(synthetic(f, b, B, "gpipe"));
    const double expected = std::accumulate(f.begin(), f.end(), 0.0) + std::accumulate(b.begin(), b.end(), 0.0) +
                            (B - 1) * (*std::max_element(f.begin(), f.end()) + *std::max_element(b.begin(), b.end()));
    EXPECT_NEAR(r.step_seconds, expected, 1e-9) << "trial " << trial;
  }
}

// Hand-computed 1F1B timelines (S=2, B=3).
// Slow last stage (f 1,2; b 2,4): stage 1 runs F0[1,3] B0[3,7] F1[7,9] B1[9,13] F2[13,15] B2[15,19],
// stage 0 ends with B2[19,21]: 21 = Σt + (B-1)·max t = 9 + 2·6.
// Slow first stage (f 2,1; b 3,1): stage 0 runs F0 F1 B0[4,7] F2[7,9] B1[9,12] B2[12,15] without a
// gap: 15 = B·t0, below Σt + (B-1)·max t = 17, so that form holds only when the bottleneck is last.
TEST(Simulator, OneFOneBHandComputedTimelines) {
  Result slow_last = simulate(synthetic({1, 2}, {2, 4}, 3, "1f1b"));
  EXPECT_DOUBLE_EQ(slow_last.step_seconds, 21);
  EXPECT_DOUBLE_EQ(slow_last.stages[1].end_seconds, 19);
  EXPECT_DOUBLE_EQ(slow_last.stages[0].recv_wait_seconds, (7 - 2) + (13 - 10) + (19 - 15));
  Result slow_first = simulate(synthetic({2, 1}, {3, 1}, 3, "1f1b"));
  EXPECT_DOUBLE_EQ(slow_first.step_seconds, 15);
  EXPECT_DOUBLE_EQ(slow_first.stages[1].end_seconds, 11);
  EXPECT_DOUBLE_EQ(slow_first.stages[0].recv_wait_seconds, 0);
  // The same slow-first pipeline under GPipe: 3 + 4 + 2·(2 + 3) = 17.
  EXPECT_DOUBLE_EQ(simulate(synthetic({2, 1}, {3, 1}, 3, "gpipe")).step_seconds, 17);
}

TEST(Simulator, PeakActivationsGPipeHoldsAllOneFOneBHoldsStagesAhead) {
  const int S = 4, B = 6;
  Result gpipe = simulate(synthetic(std::vector<double>(S, 1), std::vector<double>(S, 2), B, "gpipe"));
  Result ofob = simulate(synthetic(std::vector<double>(S, 1), std::vector<double>(S, 2), B, "1f1b"));
  for (int s = 0; s < S; ++s) {
    EXPECT_EQ(gpipe.stages[s].peak_micro_batches_in_flight, B) << s;
    EXPECT_EQ(ofob.stages[s].peak_micro_batches_in_flight, S - s) << s;
    EXPECT_EQ(ofob.stages[s].peak_memory_bytes, (1000 + s) + 2000 + (S - s) * 100) << s;
  }
  EXPECT_EQ(gpipe.peak_memory_bytes, 1003 + 2000 + B * 100);
  EXPECT_EQ(ofob.peak_memory_bytes, 1000 + 2000 + S * 100);
  // Fewer micro-batches than stages: 1F1B holds at most B.
  Result few = simulate(synthetic(std::vector<double>(S, 1), std::vector<double>(S, 2), 2, "1f1b"));
  EXPECT_EQ(few.stages[0].peak_micro_batches_in_flight, 2);
  EXPECT_EQ(few.stages[3].peak_micro_batches_in_flight, 1);
}

TEST(Simulator, TransfersCostLatencyPlusBytesOverBandwidth) {
  plan::Plan p = synthetic({1, 1}, {1, 1}, 1, "1f1b");
  p.cross_stage_link = {1e9, 0.5};
  p.stages[0].send_bytes = 1000000000;  // 1 s on the wire + 0.5 s latency, each way
  // F0 [0,1] -> arrives 2.5; stage 1 F0 [2.5,3.5] B0 [3.5,4.5] -> arrives 6; stage 0 B0 [6,7].
  Result r = simulate(p);
  EXPECT_DOUBLE_EQ(r.step_seconds, 7);
  EXPECT_EQ(r.intra_node_bytes, 2000000000);
  EXPECT_EQ(r.inter_node_bytes, 0);
  // The same stages on two nodes: the traffic is inter-node.
  p.cluster = {"two", 2, 1};
  p.stages[1].first_node = 1;
  p.stages[1].first_gpu = 0;
  ASSERT_TRUE(plan::validate(p).is_ok());
  Result two = simulate(p);
  EXPECT_EQ(two.inter_node_bytes, 2000000000);
  EXPECT_EQ(two.intra_node_bytes, 0);
}

TEST(Simulator, SendsOnOneLinkAreSerialised) {
  plan::Plan p = synthetic({0, 0}, {0, 0}, 2, "gpipe");
  p.cross_stage_link = {1e9, 0};
  p.stages[0].send_bytes = 2000000000;  // 2 s each; both are ready at t = 0
  Result r = simulate(p);
  // Activations arrive at 2 and 4; stage 1 then sends both gradients (the same 2 GB) at 4, so they
  // arrive at 6 and 8, not both at 6.
  EXPECT_DOUBLE_EQ(r.step_seconds, 8);
}

std::vector<std::string> compute_names(const Json& trace, int pid) {
  std::vector<std::pair<double, std::string>> events;
  for (const Json& e : trace["traceEvents"].elements()) {
    if (e["ph"].as_string() == "X" && e["pid"].as_int() == pid && e["tid"].as_int() == 0) {
      const std::string& name = e["name"].as_string();
      if (name[0] == 'F' || name[0] == 'B') events.push_back({e["ts"].as_number(), name});
    }
  }
  std::stable_sort(events.begin(), events.end(),
                   [](const auto& a, const auto& b) { return a.first < b.first; });
  std::vector<std::string> names;
  for (const auto& [ts, name] : events) names.push_back(name);
  return names;
}

TEST(Trace, FourStageOneFOneBOrderReadsBackFromJson) {
  plan::Plan p = synthetic(std::vector<double>(4, 0.001), std::vector<double>(4, 0.002), 6, "1f1b");
  Result r = simulate(p);
  auto parsed = Json::parse(trace_json(p, r).dump(), "trace.json");
  ASSERT_TRUE(parsed.is_ok()) << parsed.error().message();
  using V = std::vector<std::string>;
  EXPECT_EQ(compute_names(*parsed, 3), (V{"F0", "B0", "F1", "B1", "F2", "B2", "F3", "B3", "F4", "B4", "F5", "B5"}));
  EXPECT_EQ(compute_names(*parsed, 0), (V{"F0", "F1", "F2", "F3", "B0", "F4", "B1", "F5", "B2", "B3", "B4", "B5"}));
  // Stage 3's first forward starts after three 1 ms forwards upstream, in microseconds.
  for (const Json& e : (*parsed)["traceEvents"].elements()) {
    if (e["ph"].as_string() == "X" && e["pid"].as_int() == 3 && e["name"].as_string() == "F0") {
      EXPECT_DOUBLE_EQ(e["ts"].as_number(), 3000);
      EXPECT_DOUBLE_EQ(e["dur"].as_number(), 1000);
      EXPECT_EQ(e["cat"].as_string(), "forward");
    }
  }
  int process_names = 0;
  for (const Json& e : (*parsed)["traceEvents"].elements()) {
    if (e["ph"].as_string() == "M" && e["name"].as_string() == "process_name") ++process_names;
  }
  EXPECT_EQ(process_names, 4);
}

TEST(Trace, ResultJsonAndReportCarryTheNumbers) {
  plan::Plan p = synthetic({1, 2}, {2, 4}, 3, "1f1b");
  Result r = simulate(p);
  Json j = result_json(p, r);
  EXPECT_DOUBLE_EQ(j["step_seconds"].as_number(), 21);
  EXPECT_EQ(j["stages"].size(), 2u);
  EXPECT_EQ(j["stages"][1]["peak_micro_batches_in_flight"].as_int(), 1);
  std::string text = report(p, r);
  EXPECT_NE(text.find("2 stage(s), 3 micro-batches"), std::string::npos) << text;
  EXPECT_NE(text.find("step 21"), std::string::npos) << text;
}

}  // namespace
}  // namespace strata::sim
