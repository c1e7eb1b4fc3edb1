// The timing interpreter of sched:: instruction streams. Stages advance in turn until each is
// blocked on a receive whose send has not run; sends are asynchronous and serialised per link.
#include "strata/sim/simulator.h"

#include <algorithm>
#include <map>
#include <tuple>

namespace strata::sim {
namespace {

using sched::Instruction;
using sched::Op;

struct MessageKey {
  int from;
  int to;
  bool gradient;
  int micro_batch;
  auto operator<=>(const MessageKey&) const = default;
};

double transfer_seconds(const cluster::Link& link, int64_t bytes) {
  double seconds = link.latency_seconds;
  if (bytes > 0 && link.bandwidth_bytes_per_second > 0) seconds += double(bytes) / link.bandwidth_bytes_per_second;
  return seconds;
}

}  // namespace

Result simulate(const plan::Plan& plan, const sched::Schedule& schedule) {
  const int num_stages = plan.num_stages();
  STRATA_CHECK(schedule.num_stages == num_stages && int(schedule.streams.size()) == num_stages,
               "schedule has " + std::to_string(schedule.num_stages) + " stages, plan " + std::to_string(num_stages));
  Result result;
  result.stages.resize(num_stages);
  std::vector<size_t> pc(num_stages, 0);
  std::vector<double> clock(num_stages, 0.0);
  std::vector<int> in_flight(num_stages, 0);
  std::map<MessageKey, double> arrivals;
  std::map<std::pair<int, int>, double> link_free;  // directed link -> when it is next idle

  auto compute = [&](int s, double seconds, const std::string& name, const char* category, int mb) {
    result.events.push_back({s, 0, name, category, mb, clock[s], clock[s] + seconds});
    clock[s] += seconds;
  };

  bool progress = true;
  while (progress) {
    progress = false;
    for (int s = 0; s < num_stages; ++s) {
      const plan::Stage& stage = plan.stages[s];
      StageResult& stats = result.stages[s];
      const auto& stream = schedule.streams[s];
      while (pc[s] < stream.size()) {
        const Instruction& in = stream[pc[s]];
        switch (in.op) {
          case Op::forward:
            ++in_flight[s];
            stats.peak_micro_batches_in_flight = std::max(stats.peak_micro_batches_in_flight, in_flight[s]);
            compute(s, stage.forward_seconds, "F" + std::to_string(in.micro_batch), "forward", in.micro_batch);
            stats.busy_seconds += stage.forward_seconds;
            break;
          case Op::backward:
            compute(s, stage.backward_seconds, "B" + std::to_string(in.micro_batch), "backward", in.micro_batch);
            stats.busy_seconds += stage.backward_seconds;
            stats.pipeline_end_seconds = clock[s];
            break;
          case Op::free:
            STRATA_CHECK(in_flight[s] > 0, "free of micro-batch " + std::to_string(in.micro_batch) + " with none held");
            --in_flight[s];
            break;
          case Op::grad_sync:
            compute(s, stage.grad_sync_seconds, "sync", "grad_sync", -1);
            break;
          case Op::optimizer_update:
            compute(s, stage.update_seconds, "update", "optimizer_update", -1);
            break;
          case Op::send_activation:
          case Op::send_gradient: {
            const bool gradient = in.op == Op::send_gradient;
            STRATA_CHECK(in.peer == s + (gradient ? -1 : 1), "send to a non-adjacent stage");
            // The activation between stages b and b+1 has the size of stage b's output.
            const int boundary = std::min(s, in.peer);
            const int64_t bytes = plan.stages[boundary].send_bytes;
            double& free_at = link_free[{s, in.peer}];
            const double start = std::max(clock[s], free_at);
            const double end = start + transfer_seconds(plan.cross_stage_link, bytes);
            free_at = end;
            arrivals[{s, in.peer, gradient, in.micro_batch}] = end;
            result.events.push_back({s, 1, "send", sched::op_name(in.op), in.micro_batch, start, end});
            (plan::boundary_is_intra_node(plan, boundary) ? result.intra_node_bytes : result.inter_node_bytes) += bytes;
            break;
          }
          case Op::recv_activation:
          case Op::recv_gradient: {
            auto it = arrivals.find({in.peer, s, in.op == Op::recv_gradient, in.micro_batch});
            if (it == arrivals.end()) goto blocked;  // the matching send has not run yet
            stats.recv_wait_seconds += std::max(0.0, it->second - clock[s]);
            clock[s] = std::max(clock[s], it->second);
            arrivals.erase(it);
            break;
          }
        }
        ++pc[s];
        progress = true;
      }
    blocked:;
    }
  }
  for (int s = 0; s < num_stages; ++s) {
    STRATA_CHECK(pc[s] == schedule.streams[s].size(),
                 "schedule deadlocks: stage " + std::to_string(s) + " is stuck at " +
                     sched::to_string(schedule.streams[s][pc[s]]));
    STRATA_CHECK(in_flight[s] == 0, "stage " + std::to_string(s) + " ends holding activations");
  }
  STRATA_CHECK(arrivals.empty(), "a message was sent but never received");

  double busy_total = 0;
  for (int s = 0; s < num_stages; ++s) {
    StageResult& stats = result.stages[s];
    const plan::Stage& stage = plan.stages[s];
    stats.end_seconds = clock[s];
    stats.peak_memory_bytes = stage.weights_bytes + stage.optimizer_state_bytes +
                              int64_t(stats.peak_micro_batches_in_flight) * stage.activation_bytes_per_micro_batch;
    result.step_seconds = std::max(result.step_seconds, stats.end_seconds);
    result.pipeline_seconds = std::max(result.pipeline_seconds, stats.pipeline_end_seconds);
    result.peak_memory_bytes = std::max(result.peak_memory_bytes, stats.peak_memory_bytes);
    busy_total += stats.busy_seconds;
  }
  if (result.pipeline_seconds > 0) {
    result.bubble_fraction = 1.0 - busy_total / (num_stages * result.pipeline_seconds);
    for (auto& stats : result.stages) stats.bubble_fraction = 1.0 - stats.busy_seconds / result.pipeline_seconds;
  }
  std::stable_sort(result.events.begin(), result.events.end(), [](const Event& a, const Event& b) {
    return std::tie(a.stage, a.thread, a.start_seconds) < std::tie(b.stage, b.thread, b.start_seconds);
  });
  return result;
}

Result simulate(const plan::Plan& plan) { return simulate(plan, sched::from_plan(plan)); }

}  // namespace strata::sim
