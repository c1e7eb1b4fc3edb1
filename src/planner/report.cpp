// What `strata plan` prints: the plan's stages and meshes, B, the predicted step, throughput and
// memory per device, and how the search went.
#include <cstdio>
#include <sstream>

#include "strata/core/units.h"
#include "strata/planner/planner.h"

namespace strata::planner {

Json result_json(const PlanResult& r) {
  const plan::Plan& p = r.plan;
  Json stages = Json::array();
  for (const plan::Stage& s : p.stages) {
    Json stage = Json::object();
    Json layers = Json::array();
    layers.push(s.first_layer);
    layers.push(s.last_layer);
    stage.set("layers", layers);
    stage.set("submesh", std::to_string(s.submesh.rows) + "x" + std::to_string(s.submesh.cols));
    stage.set("first_node", s.first_node);
    stage.set("first_gpu", s.first_gpu);
    stage.set("logical_mesh", std::to_string(s.logical_mesh.n0) + "x" + std::to_string(s.logical_mesh.n1));
    stage.set("forward_seconds", s.forward_seconds);
    stage.set("backward_seconds", s.backward_seconds);
    stage.set("update_seconds", s.update_seconds);
    stage.set("grad_sync_seconds", s.grad_sync_seconds);
    stage.set("memory_bytes_per_device_one_micro_batch",
              s.weights_bytes + s.optimizer_state_bytes + s.activation_bytes_per_micro_batch);
    stage.set("ops", static_cast<int64_t>(s.strategies.size()));
    stages.push(stage);
  }
  Json out = Json::object();
  out.set("model", p.model);
  out.set("cluster", p.cluster.name);
  out.set("devices", p.cluster.num_devices());
  out.set("global_batch", p.global_batch);
  out.set("num_micro_batches", p.num_micro_batches);
  out.set("micro_batch_size", p.micro_batch_size());
  out.set("num_stages", p.num_stages());
  out.set("stages", stages);
  out.set("step_seconds", r.step_seconds);
  out.set("dp_objective_seconds", r.dp_objective_seconds);
  out.set("training_flops_per_step", r.training_flops);
  out.set("tflops_per_device", r.tflops_per_device);
  out.set("peak_memory_bytes_per_device", p.predicted.peak_memory_bytes);
  Json search = Json::object();
  const PlanStats& st = r.stats;
  search.set("num_layers", st.num_layers);
  Json counts = Json::array();
  for (int b : st.micro_batch_candidates) counts.push(b);
  search.set("micro_batch_candidates", counts);
  search.set("candidates", st.candidates);
  search.set("problems_solved", st.problems_solved);
  search.set("ilp_solves", st.ilp_solves);
  search.set("chunk_ilps", st.chunk_ilps);
  search.set("chunk_hits", st.chunk_hits);
  search.set("memory_hits", st.memory_hits);
  search.set("disk_hits", st.disk_hits);
  search.set("pruned_memory", st.pruned_memory);
  search.set("pruned_time", st.pruned_time);
  search.set("composed", st.composed);
  search.set("layer_solves", st.layer_solves);
  search.set("evaluations", st.evaluations);
  search.set("exact_fallbacks", st.exact_fallbacks);
  search.set("upper_bound_seconds", st.upper_bound_seconds);
  search.set("dp_optimum_seconds", st.dp_optimum_seconds);
  search.set("simulated_plans", st.simulated_plans);
  search.set("chose_uniform", st.chose_uniform);
  search.set("graph_seconds", st.graph_seconds);
  search.set("solve_seconds", st.solve_seconds);
  search.set("search_seconds", st.search_seconds);
  out.set("search", search);
  return out;
}

std::string result_report(const PlanResult& r) {
  const plan::Plan& p = r.plan;
  std::ostringstream out;
  out << plan::report(p);
  out << "  stage  mesh      memory/device (in flight)\n";
  for (int i = 0; i < p.num_stages(); ++i) {
    const plan::Stage& s = p.stages[i];
    const int in_flight = std::min(p.num_stages() - i, p.num_micro_batches);
    const double memory = double(s.weights_bytes + s.optimizer_state_bytes) +
                          double(s.activation_bytes_per_micro_batch) * in_flight;
    char line[160];
    std::snprintf(line, sizeof(line), "  %-5d  %-8s  %s (%d)\n", i,
                  (std::to_string(s.logical_mesh.n0) + "x" + std::to_string(s.logical_mesh.n1)).c_str(),
                  format_bytes(memory).c_str(), in_flight);
    out << line;
  }
  char line[256];
  std::snprintf(line, sizeof(line), "  throughput: %.3g TFLOP/s per device (%s per step over %d devices)\n",
                r.tflops_per_device, format_flops(r.training_flops).c_str(), p.cluster.num_devices());
  out << line;
  const PlanStats& st = r.stats;
  out << "  search: " << st.num_layers << " layers, B in {";
  for (size_t i = 0; i < st.micro_batch_candidates.size(); ++i) out << (i ? ", " : "") << st.micro_batch_candidates[i];
  out << "}, " << st.candidates << " candidate stages: " << st.problems_solved << " solved (" << st.ilp_solves << " stage ILPs; "
      << st.chunk_ilps << " chunk ILPs run, " << st.chunk_hits << " reused), " << st.memory_hits
      << " identical, " << st.disk_hits << " from the cache, " << st.pruned_memory + st.pruned_time << " pruned; "
      << format_seconds(st.search_seconds) << "\n";
  if (st.composed) {
    out << "  stage costs composed from per-block solutions: " << st.layer_solves << " block problems, "
        << st.evaluations << " stages priced with pinned shardings";
    if (st.exact_fallbacks > 0) out << ", " << st.exact_fallbacks << " solved exactly instead";
    out << "\n";
  }
  if (st.simulated_plans > 1) {
    out << "  final choice: " << (st.chose_uniform ? "a uniform pipeline" : "the stage DP's plan")
        << ", the fastest simulated step of " << st.simulated_plans << " plans\n";
  }
  return out.str();
}

}  // namespace strata::planner
