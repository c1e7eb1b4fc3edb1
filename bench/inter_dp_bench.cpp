// Search time of the stage × submesh DP (inter-op pass) against layers and cluster size, with a
// synthetic analytic oracle (compute / devices + data- and tensor-parallel communication).
// Prints one table; figures: wall seconds on this machine, oracle evaluated on 1 thread.
#include <sys/utsname.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <string>
#include <thread>

#include "strata/inter/stage_dp.h"

namespace {

using strata::inter::StageCost;
using strata::inter::StageQuery;

// A GPT-like layer: 1.5e12 FLOP fwd+bwd per 8-sequence micro-batch at a global batch of 256,
// 50M parameters (18 bytes each with fp32 Adam state), 1 GB of activations per micro-batch.
StageCost analytic_stage(const StageQuery& q, int gpus_per_node) {
  constexpr double kPeakFlops = 100e12, kIntraBandwidth = 150e9, kInterBandwidth = 25e9;
  constexpr double kParams = 50e6, kActivationBytes = 1e9, kGlobalBatch = 256;
  const double layers = q.last_layer - q.first_layer + 1;
  const double micro_batch = kGlobalBatch / q.num_micro_batches;
  const int n0 = q.logical_mesh.n0, n1 = q.logical_mesh.n1;
  const double flops = layers * 1.5e12 * micro_batch / 8;
  const double compute = flops / (n0 * n1 * kPeakFlops) * (1.0 + 0.05 * (n1 > 1));
  // Axis 0 stays in a node only for one-node submeshes; axis 1 when it divides a node.
  const double bw0 = q.submesh.rows == 1 ? kIntraBandwidth : kInterBandwidth;
  const double bw1 = gpus_per_node % n1 == 0 ? kIntraBandwidth : kInterBandwidth;
  // Data parallel: gradients (2-byte) all-reduced over axis 0, once per micro-batch here so the
  // cost scales with B as a naive schedule would; tensor parallel: 4 activation all-reduces.
  const double gradient_bytes = layers * kParams * 2 / n1;
  const double dp = n0 > 1 ? 2.0 * (n0 - 1) / n0 * gradient_bytes / bw0 : 0;
  const double activation_message = layers * 4 * 8e6 * micro_batch / 8 / n0;
  const double tp = n1 > 1 ? 2.0 * (n1 - 1) / n1 * activation_message / bw1 : 0;
  StageCost cost;
  cost.feasible = true;
  cost.seconds = compute + dp + tp;
  cost.weights_bytes = static_cast<int64_t>(layers * kParams * 18 / n1);
  cost.activation_bytes = static_cast<int64_t>(layers * kActivationBytes * micro_batch / 8 / (n0 * n1));
  return cost;
}

std::string cpu_model() {
  std::ifstream in("/proc/cpuinfo");
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("model name", 0) == 0) return line.substr(line.find(':') + 2);
  }
  return "unknown CPU";
}

}  // namespace

int main() {
  utsname host{};
  uname(&host);
  std::printf("# inter_dp_bench: stage x submesh DP search time (synthetic analytic oracle)\n");
  std::printf("# machine: %s, %u hardware threads, %s %s; compiler %s\n", cpu_model().c_str(),
              std::thread::hardware_concurrency(), host.sysname, host.release, __VERSION__);
  std::printf("# B candidates {8, 16, 32}, 80 GB per device, oracle on 1 thread\n");
  std::printf("%6s %8s %8s %10s %10s %10s %10s %10s %7s %4s %12s\n", "layers", "cluster",
              "devices", "oracle", "tmax_cand", "tmax_eval", "oracle_s", "search_s", "stages",
              "B", "step_s");
  const std::pair<int, int> clusters[] = {{1, 8}, {2, 8}, {4, 8}, {8, 8}};
  for (int layers : {8, 16, 24, 32}) {
    for (auto [nodes, gpus] : clusters) {
      strata::inter::StageDpRequest request;
      request.num_layers = layers;
      request.num_nodes = nodes;
      request.gpus_per_node = gpus;
      request.num_micro_batches = {8, 16, 32};
      request.memory_budget_bytes = int64_t{80} << 30;
      request.oracle = [gpus = gpus](const StageQuery& q) { return analytic_stage(q, gpus); };
      auto result = strata::inter::solve_stage_dp(request);
      const std::string cluster = std::to_string(nodes) + "x" + std::to_string(gpus);
      if (!result.is_ok()) {
        std::printf("%6d %8s %8d  error: %s\n", layers, cluster.c_str(), nodes * gpus,
                    result.error().message().c_str());
        continue;
      }
      const auto& s = result->stats;
      std::printf("%6d %8s %8d %10lld %10lld %10lld %10.3f %10.3f %7zu %4d %12.4f\n", layers,
                  cluster.c_str(), nodes * gpus, static_cast<long long>(s.oracle_calls),
                  static_cast<long long>(s.tmax_candidates),
                  static_cast<long long>(s.tmax_evaluated), s.oracle_seconds, s.search_seconds,
                  result->stages.size(), result->num_micro_batches, result->objective_seconds);
      std::fflush(stdout);
    }
  }
  return 0;
}
