// Proofs of the simulator against pipeline closed forms beyond the uniform case: 1F1B with the
// slowest stage last, GPipe with link latency, a hand-computed 1F1B timeline with latency, the
// activation peaks of every small (S, B), and the full per-stage 1F1B pattern read from the trace.
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <numeric>
#include <random>

#include "strata/sim/simulator.h"

namespace strata::sim {
namespace {

// S one-GPU stages on one node; links cost `latency` per message and (almost) nothing per byte.
plan::Plan pipeline(const std::vector<double>& forward, const std::vector<double>& backward, int micro_batches,
                    const std::string& schedule, double latency = 0) {
  plan::Plan p;
  p.model = "proof";
  const int stages = static_cast<int>(forward.size());
  p.cluster = {"proof", 1, stages};
  p.num_micro_batches = micro_batches;
  p.global_batch = micro_batches;
  p.schedule = schedule;
  p.cross_stage_link = {1e30, latency};
  for (int s = 0; s < stages; ++s) {
    plan::Stage stage;
    stage.first_layer = stage.last_layer = s;
    stage.first_gpu = s;
    stage.forward_seconds = forward[s];
    stage.backward_seconds = backward[s];
    stage.weights_bytes = 4096 * (s + 1);
    stage.optimizer_state_bytes = 8192;
    stage.activation_bytes_per_micro_batch = 512 + s;
    stage.send_bytes = 1 << 20;
    p.stages.push_back(stage);
  }
  EXPECT_TRUE(plan::validate(p).is_ok()) << plan::validate(p).message();
  return p;
}

// When the last stage is strictly the slowest (t = f + b), it never idles once its first forward
// arrives: it starts at Σ_{s<S-1} f_s, runs B·t_{S-1}, and the last gradient then walks back
// through Σ_{s<S-1} b_s. So the 1F1B step is Σ t_s + (B − 1)·t_{S-1}: the DP's objective, exact.
TEST(PipelineForms, OneFOneBWithTheSlowestStageLastIsSumPlusBMinusOneMax) {
  std::mt19937 rng(11);
  std::uniform_real_distribution<double> seconds(0.05, 2.0);
  for (int trial = 0; trial < 200; ++trial) {
    const int S = 2 + trial % 5;
    const int B = 1 + (trial / 5) % 12;
    std::vector<double> f(S), b(S);
    double upstream_max = 0;
    for (int s = 0; s + 1 < S; ++s) {
      f[s] = seconds(rng);
      b[s] = seconds(rng);
      upstream_max = std::max(upstream_max, f[s] + b[s]);
    }
    // Split a last-stage time above every upstream one at random between forward and backward.
    const double last = upstream_max + seconds(rng);
    f[S - 1] = last * std::uniform_real_distribution<double>(0.2, 0.8)(rng);
    b[S - 1] = last - f[S - 1];
    double sum = 0;
    for (int s = 0; s < S; ++s) sum += f[s] + b[s];
    const Result r = simulate(pipeline(f, b, B, "1f1b"));
    EXPECT_NEAR(r.pipeline_seconds, sum + (B - 1) * last, 1e-9) << "trial " << trial << " S=" << S << " B=" << B;
    EXPECT_NEAR(r.stages[S - 1].recv_wait_seconds, std::accumulate(f.begin(), f.end() - 1, 0.0), 1e-9)
        << "the bottleneck waits only for its first activation, trial " << trial;
  }
}

// GPipe with a per-message link latency d ≤ min(f, b): stage s starts forward k at s(f+d) + k·f,
// the last stage runs its B backwards right after its B forwards, and each gradient then crosses
// S − 1 links: step = B(f + b) + (S − 1)(f + b + 2d) + sync + update.
TEST(PipelineForms, GPipeWithLinkLatencyMatchesTheClosedForm) {
  const double f = 2, b = 3, d = 0.5, sync = 0.75, update = 0.25;
  for (int S : {1, 2, 3, 4, 7}) {
    for (int B : {1, 2, 4, 8, 11}) {
      plan::Plan p = pipeline(std::vector<double>(S, f), std::vector<double>(S, b), B, "gpipe", d);
      for (auto& stage : p.stages) {
        stage.grad_sync_seconds = sync;
        stage.update_seconds = update;
      }
      const Result r = simulate(p);
      SCOPED_TRACE("S=" + std::to_string(S) + " B=" + std::to_string(B));
      EXPECT_NEAR(r.step_seconds, B * (f + b) + (S - 1) * (f + b + 2 * d) + sync + update, 1e-9);
      EXPECT_EQ(r.intra_node_bytes, int64_t(2) * (S - 1) * B * (1 << 20));
    }
  }
}

// 1F1B with latency 0.5 on both links, f = b = 1, S = 2, B = 3, by hand:
//   stage 0: F0[0,1] F1[1,2] (grad 0 arrives 4) B0[4,5] F2[5,6] (grad 1 at 6) B1[6,7] (grad 2 at 9) B2[9,10]
//   stage 1: F0[1.5,2.5] B0[2.5,3.5] F1[3.5,4.5] B1[4.5,5.5] (act 2 at 6.5) F2[6.5,7.5] B2[7.5,8.5]
// The second send of stage 0 waits for the link (free at 1.5): it leaves at 2, arrives at 2.5.
// The step is 10, one more than the latency-free 8 plus the 2(S−1)d = 1 of a single round trip:
// 1F1B keeps only S micro-batches in flight, so the round trip's latency recurs.
TEST(PipelineForms, OneFOneBWithLatencyHandComputed) {
  const Result r = simulate(pipeline({1, 1}, {1, 1}, 3, "1f1b", 0.5));
  EXPECT_DOUBLE_EQ(r.step_seconds, 10);
  EXPECT_DOUBLE_EQ(r.stages[1].end_seconds, 8.5);
  EXPECT_DOUBLE_EQ(r.stages[0].recv_wait_seconds, (4 - 2) + (6 - 6) + (9 - 7));
  EXPECT_DOUBLE_EQ(r.stages[1].recv_wait_seconds, 1.5 + (6.5 - 5.5));
  // The same pipeline under GPipe follows the closed form above: 3·2 + 1·(2 + 1) = 9.
  EXPECT_DOUBLE_EQ(simulate(pipeline({1, 1}, {1, 1}, 3, "gpipe", 0.5)).step_seconds, 9);
}

// Every small pipeline: 1F1B stage s holds min(S − s, B) micro-batches at its peak, GPipe holds B,
// and the per-device peak is weights + optimizer state + that many activations.
TEST(PipelineForms, ActivationPeaksOfEverySmallPipeline) {
  for (int S = 1; S <= 6; ++S) {
    for (int B = 1; B <= 9; ++B) {
      const std::vector<double> f(S, 1.0), b(S, 2.0);
      const Result gpipe = simulate(pipeline(f, b, B, "gpipe"));
      const Result ofob = simulate(pipeline(f, b, B, "1f1b"));
      int64_t ofob_peak = 0;
      for (int s = 0; s < S; ++s) {
        SCOPED_TRACE("S=" + std::to_string(S) + " B=" + std::to_string(B) + " s=" + std::to_string(s));
        const int64_t fixed = 4096 * (s + 1) + 8192;
        EXPECT_EQ(gpipe.stages[s].peak_micro_batches_in_flight, B);
        EXPECT_EQ(gpipe.stages[s].peak_memory_bytes, fixed + B * (512 + s));
        const int held = std::min(S - s, B);
        EXPECT_EQ(ofob.stages[s].peak_micro_batches_in_flight, held);
        EXPECT_EQ(ofob.stages[s].peak_memory_bytes, fixed + held * (512 + s));
        ofob_peak = std::max(ofob_peak, fixed + held * (512 + s));
      }
      EXPECT_EQ(ofob.peak_memory_bytes, ofob_peak);
    }
  }
}

struct TraceEvent {
  std::string name;
  std::string category;
  int micro_batch = -1;
  double start = 0;
  double end = 0;
};

// The trace's complete ("X") events of one stage and thread, in start order.
std::vector<TraceEvent> events_of(const Json& trace, int stage, int thread) {
  std::vector<TraceEvent> out;
  for (const Json& e : trace["traceEvents"].elements()) {
    if (e["ph"].as_string() != "X" || e["pid"].as_int() != stage || e["tid"].as_int() != thread) continue;
    const Json& args = e["args"];
    const int mb = args.has("micro_batch") ? int(args["micro_batch"].as_int()) : -1;
    const double ts = e["ts"].as_number();
    out.push_back({e["name"].as_string(), e["cat"].as_string(), mb, ts, ts + e["dur"].as_number()});
  }
  std::stable_sort(out.begin(), out.end(), [](const TraceEvent& a, const TraceEvent& b) { return a.start < b.start; });
  return out;
}

// A 4-stage 1F1B plan's trace, every stage: warm-up forwards 0..w−1 (w = min(3 − s, B)), then
// forward w+i alternating with backward i, then the remaining backwards, then sync and update,
// with no overlap on the compute thread; activations leave after their forward and arrive before
// the next stage's forward, gradients likewise backwards.
TEST(PipelineForms, FourStageOneFOneBTracePatternOnEveryStage) {
  const int S = 4;
  for (int B : {2, 4, 8}) {
    SCOPED_TRACE("B=" + std::to_string(B));
    plan::Plan p = pipeline({0.004, 0.003, 0.005, 0.002}, {0.006, 0.007, 0.004, 0.008}, B, "1f1b", 0.0005);
    for (auto& stage : p.stages) stage.grad_sync_seconds = stage.update_seconds = 0.001;
    const Result r = simulate(p);
    auto parsed = Json::parse(trace_json(p, r).dump(), "trace.json");
    ASSERT_TRUE(parsed.is_ok()) << parsed.error().message();
    std::map<std::pair<int, int>, double> forward_end, backward_end, forward_start, backward_start;
    for (int s = 0; s < S; ++s) {
      const std::vector<TraceEvent> compute = events_of(*parsed, s, 0);
      std::vector<std::string> expected;
      const int warmup = std::min(S - s - 1, B);
      int next_f = 0, next_b = 0;
      while (next_f < warmup) expected.push_back("F" + std::to_string(next_f++));
      while (next_f < B) {
        expected.push_back("F" + std::to_string(next_f++));
        expected.push_back("B" + std::to_string(next_b++));
      }
      while (next_b < B) expected.push_back("B" + std::to_string(next_b++));
      expected.push_back("sync");
      expected.push_back("update");
      std::vector<std::string> names;
      for (size_t i = 0; i < compute.size(); ++i) {
        names.push_back(compute[i].name);
        if (i > 0) {
          EXPECT_GE(compute[i].start, compute[i - 1].end - 1e-9) << "overlap on stage " << s;
        }
        if (compute[i].category == "forward") {
          forward_start[{s, compute[i].micro_batch}] = compute[i].start;
          forward_end[{s, compute[i].micro_batch}] = compute[i].end;
        } else if (compute[i].category == "backward") {
          backward_start[{s, compute[i].micro_batch}] = compute[i].start;
          backward_end[{s, compute[i].micro_batch}] = compute[i].end;
        }
      }
      EXPECT_EQ(names, expected) << "stage " << s;
    }
    for (int s = 0; s < S; ++s) {
      int activations = 0, gradients = 0;
      for (const TraceEvent& send : events_of(*parsed, s, 1)) {
        const int mb = send.micro_batch;
        if (send.category == "send_activation") {
          ++activations;
          EXPECT_GE(send.start, forward_end.at({s, mb}) - 1e-9);
          EXPECT_LE(send.end, forward_start.at({s + 1, mb}) + 1e-9);
        } else {
          ASSERT_EQ(send.category, "send_gradient");
          ++gradients;
          EXPECT_GE(send.start, backward_end.at({s, mb}) - 1e-9);
          EXPECT_LE(send.end, backward_start.at({s - 1, mb}) + 1e-9);
        }
      }
      EXPECT_EQ(activations, s + 1 < S ? B : 0) << "stage " << s;
      EXPECT_EQ(gradients, s > 0 ? B : 0) << "stage " << s;
    }
  }
}

}  // namespace
}  // namespace strata::sim
