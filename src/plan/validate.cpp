// Plan validation (the rules of docs/plan_format.md, each failure one Error naming the field) and
// the human report of a plan.
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <map>
#include <sstream>
#include <vector>

#include "strata/core/units.h"
#include "strata/intra/strategy.h"
#include "strata/plan/plan.h"

namespace strata::plan {
namespace {

// Devices a plan's cluster may have (as cluster::parse_cluster allows): validate keeps a cell per device.
constexpr int64_t kMaxPlanDevices = int64_t{1} << 20;

std::string shape(int a, int b) { return std::to_string(a) + "x" + std::to_string(b); }
std::string stage_field(int i, const std::string& field) {
  return "stages[" + std::to_string(i) + "]" + (field.empty() ? "" : "." + field);
}

}  // namespace

Status validate(const Plan& plan, const cluster::ClusterSpec* spec) {
  const std::string& file = plan.source_file;
  auto fail = [&](const std::string& field, const std::string& reason) -> Status {
    return make_error(file, field, reason);
  };
  if (plan.cluster.num_nodes < 1) return fail("cluster.num_nodes", "must be at least 1");
  if (plan.cluster.gpus_per_node < 1) return fail("cluster.gpus_per_node", "must be at least 1");
  if (spec != nullptr && (spec->num_nodes != plan.cluster.num_nodes || spec->gpus_per_node != plan.cluster.gpus_per_node)) {
    return fail("cluster", "plan is for " + shape(plan.cluster.num_nodes, plan.cluster.gpus_per_node) +
                               " (nodes x GPUs) but cluster '" + spec->name + "' is " +
                               shape(spec->num_nodes, spec->gpus_per_node));
  }
  if (plan.schedule != "1f1b" && plan.schedule != "gpipe") {
    return fail("schedule", "must be \"1f1b\" or \"gpipe\", got \"" + plan.schedule + "\"");
  }
  if (plan.global_batch < 1) return fail("global_batch", "must be at least 1");
  if (plan.num_micro_batches < 1) return fail("num_micro_batches", "must be at least 1");
  if (plan.global_batch % plan.num_micro_batches != 0) {
    return fail("num_micro_batches", std::to_string(plan.num_micro_batches) + " does not divide global_batch " +
                                         std::to_string(plan.global_batch));
  }
  if (plan.training.optimizer != "adam" && plan.training.optimizer != "sgd") {
    return fail("training.optimizer", "must be \"adam\" or \"sgd\", got \"" + plan.training.optimizer + "\"");
  }
  if (!(plan.training.lr > 0)) return fail("training.lr", "must be positive");
  if (!(plan.training.beta1 < 1)) return fail("training.beta1", "must be below 1");
  if (!(plan.training.beta2 < 1)) return fail("training.beta2", "must be below 1");
  if (!(plan.training.eps > 0)) return fail("training.eps", "must be positive");
  if (Status schedule = validate_schedule(plan.training); !schedule) {
    return schedule.error().under("training").in_file(file);
  }
  if (plan.stages.empty()) return fail("stages", "must have at least one stage");
  if (plan.num_stages() > 1 && !(plan.cross_stage_link.bandwidth_bytes_per_second > 0)) {
    return fail("cross_stage_link.bandwidth_bytes_per_second", "must be positive when there are several stages");
  }

  const int nodes = plan.cluster.num_nodes;
  const int gpus = plan.cluster.gpus_per_node;
  // The tiling check below keeps one cell per device: bound the cluster as the cluster loader does.
  if (static_cast<int64_t>(nodes) * gpus > kMaxPlanDevices) {
    return fail("cluster", std::to_string(nodes) + " nodes x " + std::to_string(gpus) + " GPUs is more than " +
                               std::to_string(kMaxPlanDevices) + " devices");
  }
  std::vector<int> owner(static_cast<size_t>(nodes) * gpus, -1);
  int next_layer = 0;
  for (int i = 0; i < plan.num_stages(); ++i) {
    const Stage& s = plan.stages[i];
    if (s.first_layer != next_layer) {
      return fail(stage_field(i, "layers"), "starts at layer " + std::to_string(s.first_layer) + " but " +
                                                (i == 0 ? std::string("the first stage must start at layer 0")
                                                        : "stages[" + std::to_string(i - 1) + "] ends at layer " +
                                                              std::to_string(next_layer - 1)));
    }
    if (s.last_layer < s.first_layer) {
      return fail(stage_field(i, "layers"), "last layer " + std::to_string(s.last_layer) + " is before first layer " +
                                                std::to_string(s.first_layer));
    }
    next_layer = s.last_layer + 1;
    if (s.submesh.rows < 1 || s.submesh.cols < 1) {
      return fail(stage_field(i, "submesh"), "rows and cols must be at least 1, got " + shape(s.submesh.rows, s.submesh.cols));
    }
    // In int64: each of the four is at most 2^30, so a sum can pass INT_MAX.
    if (int64_t{s.first_node} + s.submesh.rows > nodes || int64_t{s.first_gpu} + s.submesh.cols > gpus) {
      return fail(stage_field(i, "submesh"), shape(s.submesh.rows, s.submesh.cols) + " at node " +
                                                 std::to_string(s.first_node) + ", GPU " + std::to_string(s.first_gpu) +
                                                 " does not fit in the " + shape(nodes, gpus) + " cluster");
    }
    if (s.submesh.rows > 1 && s.submesh.cols != gpus) {
      return fail(stage_field(i, "submesh"), "a submesh over several nodes must use whole nodes (cols " +
                                                 std::to_string(gpus) + "), got " + shape(s.submesh.rows, s.submesh.cols));
    }
    const int64_t mesh_devices = int64_t{s.logical_mesh.n0} * s.logical_mesh.n1;  // each up to 2^30
    if (s.logical_mesh.n0 < 1 || s.logical_mesh.n1 < 1 || mesh_devices != s.submesh.num_devices()) {
      return fail(stage_field(i, "logical_mesh"),
                  shape(s.logical_mesh.n0, s.logical_mesh.n1) + " has " + std::to_string(mesh_devices) +
                      " devices but the submesh has " + std::to_string(s.submesh.num_devices()));
    }
    for (int r = 0; r < s.submesh.rows; ++r) {
      for (int c = 0; c < s.submesh.cols; ++c) {
        int& cell = owner[static_cast<size_t>(s.first_node + r) * gpus + s.first_gpu + c];
        if (cell >= 0) {
          return fail(stage_field(i, "submesh"), "node " + std::to_string(s.first_node + r) + " GPU " +
                                                     std::to_string(s.first_gpu + c) + " is already used by stages[" +
                                                     std::to_string(cell) + "]");
        }
        cell = i;
      }
    }
  }
  // Strategies: all stages list them or none does (a cost-only plan).
  for (int i = 1; i < plan.num_stages(); ++i) {
    if (plan.stages[i].strategies.empty() != plan.stages[0].strategies.empty()) {
      const int empty = plan.stages[i].strategies.empty() ? i : 0;
      return fail(stage_field(empty, "strategies"),
                  "is empty but other stages list strategies: every stage must, or none");
    }
  }
  for (size_t d = 0; d < owner.size(); ++d) {
    if (owner[d] < 0) {
      return fail("stages", "the submeshes do not tile the cluster: node " + std::to_string(d / gpus) + " GPU " +
                                std::to_string(d % gpus) + " is in no stage");
    }
  }
  return Status::ok();
}

Status validate_strategies(const Plan& plan, const ir::Graph& training_graph) {
  const std::string& file = plan.source_file;
  bool any = false;
  for (const Stage& s : plan.stages) any = any || !s.strategies.empty();
  if (!any) return Status::ok();
  std::map<std::string, int> stage_of;  // op name -> the stage listing it
  for (int i = 0; i < plan.num_stages(); ++i) {
    for (const auto& [op, spec] : plan.stages[i].strategies) {
      const std::string field = stage_field(i, "strategies.") + op;
      auto [at, inserted] = stage_of.emplace(op, i);
      if (!inserted) return make_error(file, field, "op is already in stages[" + std::to_string(at->second) + "]");
      if (!training_graph.find(op).is_ok()) return make_error(file, field, "no such op in the training graph");
      if (auto parsed = intra::parse_op_sharding(spec); !parsed.is_ok()) {
        return make_error(file, field, "bad sharding \"" + spec + "\": " + parsed.error().reason);
      }
    }
  }
  for (ir::OpId id = 0; id < training_graph.num_ops(); ++id) {
    const std::string& name = training_graph.op(id).name;
    if (!stage_of.count(name)) {
      return make_error(file, "stages", "op '" + name + "' of the training graph is in no stage's strategies");
    }
  }
  return Status::ok();
}

bool boundary_is_intra_node(const Plan& plan, int stage) {
  STRATA_CHECK(stage >= 0 && stage + 1 < plan.num_stages(), "no boundary after stage " + std::to_string(stage));
  const Stage& a = plan.stages[stage];
  const Stage& b = plan.stages[stage + 1];
  return a.submesh.rows == 1 && b.submesh.rows == 1 && a.first_node == b.first_node;
}

std::string report(const Plan& plan) {
  std::ostringstream out;
  out << "plan: model " << plan.model << " on " << plan.cluster.name << " (" << plan.cluster.num_nodes << " node(s) x "
      << plan.cluster.gpus_per_node << " GPUs)\n";
  out << "  global batch " << plan.global_batch << " in " << plan.num_micro_batches << " micro-batches of "
      << plan.global_batch / std::max(1, plan.num_micro_batches) << ", schedule " << plan.schedule << ", "
      << plan.num_stages() << " stage(s)\n";
  out << "  stage  layers    submesh@node:gpu  logical  forward     backward    weights     activations/mb  ops\n";
  for (int i = 0; i < plan.num_stages(); ++i) {
    const Stage& s = plan.stages[i];
    char line[256];
    std::snprintf(line, sizeof(line), "  %-5d  %-8s  %-16s  %-7s  %-10s  %-10s  %-10s  %-14s  %zu\n", i,
                  (std::to_string(s.first_layer) + "-" + std::to_string(s.last_layer)).c_str(),
                  (shape(s.submesh.rows, s.submesh.cols) + "@" + std::to_string(s.first_node) + ":" +
                   std::to_string(s.first_gpu)).c_str(),
                  shape(s.logical_mesh.n0, s.logical_mesh.n1).c_str(), format_seconds(s.forward_seconds).c_str(),
                  format_seconds(s.backward_seconds).c_str(), format_bytes(double(s.weights_bytes)).c_str(),
                  format_bytes(double(s.activation_bytes_per_micro_batch)).c_str(), s.strategies.size());
    out << line;
  }
  out << "  predicted: step " << format_seconds(plan.predicted.step_seconds) << ", peak memory "
      << format_bytes(double(plan.predicted.peak_memory_bytes)) << " per device\n";
  return out.str();
}

}  // namespace strata::plan
