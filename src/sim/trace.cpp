// Outputs of a simulation: the Chrome/Perfetto trace (docs/trace.md), the --json numbers and the
// human table.
#include <cmath>
#include <cstdio>
#include <utility>
#include <vector>

#include "strata/core/units.h"
#include "strata/sim/simulator.h"

namespace strata::sim {
namespace {

// Trace timestamps are microseconds; rounding to nanoseconds keeps the text stable.
double micros(double seconds) { return std::round(seconds * 1e9) / 1e3; }

std::string mesh_text(const plan::Stage& stage) {
  return std::to_string(stage.logical_mesh.n0) + "x" + std::to_string(stage.logical_mesh.n1);
}

// An object from its members in order (Json::set returns the member, so it does not chain).
Json object(std::vector<std::pair<std::string, Json>> members) {
  Json out = Json::object();
  for (auto& [key, value] : members) out.set(key, std::move(value));
  return out;
}

Json metadata(const char* name, int pid, int tid, Json args) {
  return object({{"name", name}, {"ph", "M"}, {"pid", pid}, {"tid", tid}, {"args", std::move(args)}});
}

}  // namespace

Json trace_json(const plan::Plan& plan, const Result& result) {
  Json events = Json::array();
  for (int s = 0; s < plan.num_stages(); ++s) {
    const plan::Stage& stage = plan.stages[s];
    std::string label = "stage " + std::to_string(s) + " (layers " + std::to_string(stage.first_layer) + "-" +
                        std::to_string(stage.last_layer) + ", mesh " + mesh_text(stage) + ")";
    events.push(metadata("process_name", s, 0, object({{"name", label}})));
    events.push(metadata("process_sort_index", s, 0, object({{"sort_index", s}})));
    events.push(metadata("thread_name", s, 0, object({{"name", "compute"}})));
    events.push(metadata("thread_name", s, 1, object({{"name", "send"}})));
  }
  for (const Event& e : result.events) {
    Json args = e.micro_batch >= 0 ? object({{"micro_batch", e.micro_batch}}) : Json::object();
    events.push(object({{"name", e.name},
                        {"cat", e.category},
                        {"ph", "X"},
                        {"pid", e.stage},
                        {"tid", e.thread},
                        {"ts", micros(e.start_seconds)},
                        {"dur", micros(e.end_seconds) - micros(e.start_seconds)},
                        {"args", std::move(args)}}));
  }
  return object({{"traceEvents", std::move(events)}, {"displayTimeUnit", "ms"}});
}

Json result_json(const plan::Plan& plan, const Result& result) {
  Json stages = Json::array();
  for (const StageResult& s : result.stages) {
    stages.push(object({{"busy_seconds", s.busy_seconds},
                        {"pipeline_end_seconds", s.pipeline_end_seconds},
                        {"end_seconds", s.end_seconds},
                        {"bubble_fraction", s.bubble_fraction},
                        {"recv_wait_seconds", s.recv_wait_seconds},
                        {"peak_micro_batches_in_flight", s.peak_micro_batches_in_flight},
                        {"peak_memory_bytes", s.peak_memory_bytes}}));
  }
  return object({{"model", plan.model},
                 {"schedule", plan.schedule},
                 {"num_stages", plan.num_stages()},
                 {"num_micro_batches", plan.num_micro_batches},
                 {"step_seconds", result.step_seconds},
                 {"pipeline_seconds", result.pipeline_seconds},
                 {"bubble_fraction", result.bubble_fraction},
                 {"peak_memory_bytes", result.peak_memory_bytes},
                 {"communication_bytes",
                  object({{"intra_node", result.intra_node_bytes}, {"inter_node", result.inter_node_bytes}})},
                 {"stages", std::move(stages)}});
}

std::string report(const plan::Plan& plan, const Result& result) {
  std::string out = "simulated " + plan.schedule + " step of " + plan.model + ": " +
                    std::to_string(plan.num_stages()) + " stage(s), " + std::to_string(plan.num_micro_batches) +
                    " micro-batches\n";
  out += "  stage  mesh   busy        recv wait   bubble   in flight  peak memory/device\n";
  for (int s = 0; s < plan.num_stages(); ++s) {
    const StageResult& r = result.stages[s];
    char line[200];
    std::snprintf(line, sizeof(line), "  %-5d  %-5s  %-10s  %-10s  %5.1f%%   %-9d  %s\n", s,
                  mesh_text(plan.stages[s]).c_str(), format_seconds(r.busy_seconds).c_str(),
                  format_seconds(r.recv_wait_seconds).c_str(), 100 * r.bubble_fraction,
                  r.peak_micro_batches_in_flight, format_bytes(double(r.peak_memory_bytes)).c_str());
    out += line;
  }
  char line[300];
  std::snprintf(line, sizeof(line),
                "  step %s (pipeline %s), bubble %.1f%%, peak memory %s per device\n"
                "  stage-to-stage traffic: %s intra-node, %s inter-node\n",
                format_seconds(result.step_seconds).c_str(), format_seconds(result.pipeline_seconds).c_str(),
                100 * result.bubble_fraction, format_bytes(double(result.peak_memory_bytes)).c_str(),
                format_bytes(double(result.intra_node_bytes)).c_str(),
                format_bytes(double(result.inter_node_bytes)).c_str());
  out += line;
  return out;
}

}  // namespace strata::sim
