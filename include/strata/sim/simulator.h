// The timing interpreter: runs each stage's instruction stream in order on a virtual clock, with
// receives waiting for the matching send plus its transfer time, and reports the step time,
// bubbles, memory peaks, communication volume and a Chrome/Perfetto trace (docs/trace.md).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "strata/core/json.h"
#include "strata/plan/plan.h"
#include "strata/sched/schedule.h"

namespace strata::sim {

// One interval of the timeline. thread 0 is the stage's compute stream, thread 1 its sends.
struct Event {
  int stage = 0;
  int thread = 0;
  std::string name;      // "F3", "B3", "send", "sync", "update"
  std::string category;  // "forward", "backward", "send_activation", "send_gradient", "grad_sync", "optimizer_update"
  int micro_batch = -1;
  double start_seconds = 0;
  double end_seconds = 0;
};

struct StageResult {
  double busy_seconds = 0;           // forward + backward compute
  double pipeline_end_seconds = 0;   // end of the stage's last backward
  double end_seconds = 0;            // end of its stream (after sync and update)
  double bubble_fraction = 0;        // 1 - busy / pipeline_seconds
  double recv_wait_seconds = 0;      // time spent blocked on receives
  int peak_micro_batches_in_flight = 0;
  int64_t peak_memory_bytes = 0;     // per device: weights + optimizer state + activations in flight
};

struct Result {
  double step_seconds = 0;      // the last stage to finish its stream
  double pipeline_seconds = 0;  // the last backward to finish, anywhere
  double bubble_fraction = 0;   // 1 - Σ busy / (stages · pipeline_seconds)
  int64_t peak_memory_bytes = 0;       // largest per-device peak over stages
  int64_t intra_node_bytes = 0;        // point-to-point bytes between stages on one node
  int64_t inter_node_bytes = 0;        // ... between stages on different nodes
  std::vector<StageResult> stages;
  std::vector<Event> events;  // sorted by stage, thread, start
};

// Simulates `schedule` with the plan's per-stage costs and cross-stage link. The plan must be
// valid and the schedule must match its stage count.
Result simulate(const plan::Plan& plan, const sched::Schedule& schedule);
Result simulate(const plan::Plan& plan);  // the schedule the plan names

// Chrome trace-event JSON: {"traceEvents": [...], "displayTimeUnit": "ms"}, one process per stage.
Json trace_json(const plan::Plan& plan, const Result& result);
// The numbers of `result` for --json.
Json result_json(const plan::Plan& plan, const Result& result);
// A human table: one line per stage, then the totals.
std::string report(const plan::Plan& plan, const Result& result);

}  // namespace strata::sim
