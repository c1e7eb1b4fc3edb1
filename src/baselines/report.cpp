// The compare table and its JSON: one row per method, "OOM" where nothing fit in memory.
#include <cstdio>

#include "strata/baselines/baselines.h"
#include "strata/core/units.h"

namespace strata::baselines {
namespace {

std::string mesh_text(const plan::Stage& stage) {
  return std::to_string(stage.logical_mesh.n0) + "x" + std::to_string(stage.logical_mesh.n1);
}

// Stage meshes with runs of equal ones folded: "2x4,1x8" or "4*1x2".
std::string meshes_text(const plan::Plan& plan) {
  std::string out;
  for (size_t i = 0; i < plan.stages.size();) {
    size_t j = i;
    while (j < plan.stages.size() && mesh_text(plan.stages[j]) == mesh_text(plan.stages[i])) ++j;
    if (!out.empty()) out += ",";
    out += (j - i > 1 ? std::to_string(j - i) + "*" : "") + mesh_text(plan.stages[i]);
    i = j;
  }
  return out;
}

const MethodResult* reference(const std::vector<MethodResult>& results) {
  for (const MethodResult& r : results) {
    if (r.feasible) return &r;
  }
  return nullptr;
}

}  // namespace

std::string compare_table(const std::string& model, const std::string& cluster, int devices,
                          const std::vector<MethodResult>& results) {
  const MethodResult* ref = reference(results);
  std::string out = "compare " + model + " on " + cluster + " (" + std::to_string(devices) +
                    " GPUs), one cost model" + (ref ? std::string(", speed relative to ") + method_name(ref->method) : "") +
                    "\n";
  char line[512];
  std::snprintf(line, sizeof line, "%-14s %6s  %-16s %5s %12s %10s %11s %7s  %s\n", "method", "stages", "meshes", "B",
                "step", "TFLOP/s/GPU", "mem/GPU", "speed", "notes");
  out += line;
  for (const MethodResult& r : results) {
    if (!r.feasible) {
      std::snprintf(line, sizeof line, "%-14s %6s  %-16s %5s %12s %10s %11s %7s  %s\n", method_name(r.method), "-", "-",
                    "-", r.out_of_memory ? "OOM" : "infeasible", "-", "-", "-", r.reason.c_str());
      out += line;
      continue;
    }
    const plan::Plan& p = r.result.plan;
    const double speed = ref ? ref->result.step_seconds / r.result.step_seconds : 1.0;
    std::snprintf(line, sizeof line, "%-14s %6d  %-16s %5d %12s %10.2f %11s %6.2fx  %s\n", method_name(r.method),
                  p.num_stages(), meshes_text(p).c_str(), p.num_micro_batches,
                  format_seconds(r.result.step_seconds).c_str(), r.result.tflops_per_device,
                  format_bytes(double(p.predicted.peak_memory_bytes)).c_str(), speed, r.detail.c_str());
    out += line;
  }
  return out;
}

Json compare_json(const std::string& model, const std::string& cluster, int devices,
                  const std::vector<MethodResult>& results) {
  Json methods = Json::array();
  for (const MethodResult& r : results) {
    Json m = Json::object();
    m.set("method", method_name(r.method));
    m.set("feasible", r.feasible);
    m.set("out_of_memory", r.out_of_memory);
    if (!r.feasible) m.set("reason", r.reason);
    if (!r.detail.empty()) m.set("detail", r.detail);
    if (r.feasible) {
      const plan::Plan& p = r.result.plan;
      Json meshes = Json::array();
      for (const plan::Stage& s : p.stages) meshes.push(mesh_text(s));
      m.set("stages", p.num_stages());
      m.set("meshes", std::move(meshes));
      m.set("num_micro_batches", p.num_micro_batches);
      m.set("step_seconds", r.result.step_seconds);
      m.set("tflops_per_device", r.result.tflops_per_device);
      m.set("peak_memory_bytes", p.predicted.peak_memory_bytes);
    }
    m.set("search_seconds", r.search_seconds);
    methods.push(std::move(m));
  }
  Json out = Json::object();
  out.set("model", model);
  out.set("cluster", cluster);
  out.set("devices", devices);
  out.set("methods", std::move(methods));
  return out;
}

}  // namespace strata::baselines
