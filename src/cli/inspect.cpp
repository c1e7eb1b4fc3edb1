// `strata inspect`: loads a model config, builds its forward graph and reports its size: op
// counts, parameters, FLOPs per training step, parameter and activation memory; DOT export.
#include <cstdio>
#include <map>
#include <string>

#include "cli/commands.h"
#include "cli/common.h"
#include "strata/autodiff/autodiff.h"
#include "strata/core/args.h"
#include "strata/core/json.h"
#include "strata/core/units.h"
#include "strata/models/models.h"

namespace strata::cli {
namespace {

struct Summary {
  std::string name;
  std::string family;
  int64_t global_batch = 0;
  int64_t batch = 0;  // samples in the built graph (0: family graph, fixed shapes)
  int32_t num_ops = 0;
  std::map<ir::OpKind, int64_t> op_counts;
  int64_t parameters = 0;
  int64_t parameter_bytes = 0;
  double forward_flops_per_step = 0;
  double training_flops_per_step = 0;
  std::string training_method;  // how training_flops_per_step was found
  int64_t activation_bytes = 0;  // sum of output bytes of the non-Parameter ops of the built graph
};

Summary summarize(const models::ModelSpec& spec, const ir::Graph& graph, int64_t batch) {
  Summary s;
  s.name = spec.name;
  s.family = models::family_name(spec.family);
  s.global_batch = spec.global_batch;
  s.batch = batch;
  s.num_ops = graph.num_ops();
  for (ir::OpId id = 0; id < graph.num_ops(); ++id) {
    const ir::Op& op = graph.op(id);
    ++s.op_counts[op.kind];
    if (op.kind == ir::OpKind::Parameter) continue;
    for (const auto& type : op.outputs) s.activation_bytes += type.bytes();
  }
  s.parameters = graph.parameter_count();
  s.parameter_bytes = graph.parameter_bytes();
  // FLOPs scale linearly with the batch, so a micro-batch graph gives the step's by scaling.
  const double steps = batch > 0 ? static_cast<double>(spec.global_batch) / static_cast<double>(batch) : 1.0;
  s.forward_flops_per_step = graph.total_flops() * steps;
  // Training FLOPs from the autodiff gradient graph (forward + backward) when it can be built;
  // otherwise the usual estimate of 3 x forward, saying why.
  Expected<autodiff::GradientGraph> gradients = autodiff::build_gradient_graph(graph);
  if (gradients) {
    s.training_flops_per_step = gradients->graph.total_flops() * steps;
    s.training_method = "forward + backward of the autodiff gradient graph";
  } else {
    s.training_flops_per_step = 3.0 * s.forward_flops_per_step;
    s.training_method = "estimated as 3 x forward (no gradient graph: " + gradients.error().reason + ")";
  }
  return s;
}

Json to_json(const Summary& s) {
  Json counts = Json::object();
  for (const auto& [kind, count] : s.op_counts) counts.set(ir::op_kind_name(kind), count);
  Json out = Json::object();
  out.set("model", s.name);
  out.set("family", s.family);
  out.set("global_batch", s.global_batch);
  out.set("graph_batch", s.batch);
  out.set("num_ops", static_cast<int64_t>(s.num_ops));
  out.set("op_counts", counts);
  out.set("parameters", s.parameters);
  out.set("parameter_bytes", s.parameter_bytes);
  out.set("forward_flops_per_step", s.forward_flops_per_step);
  out.set("training_flops_per_step", s.training_flops_per_step);
  out.set("training_flops_method", s.training_method);
  out.set("activation_bytes", s.activation_bytes);
  return out;
}

void print_text(const Summary& s) {
  std::printf("model        %s (family %s)\n", s.name.c_str(), s.family.c_str());
  if (s.batch > 0) {
    std::printf("batch        %lld per step; graph built for %lld\n", static_cast<long long>(s.global_batch),
                static_cast<long long>(s.batch));
  } else {
    std::printf("batch        fixed by the op shapes (generic graph)\n");
  }
  std::printf("ops          %d\n", s.num_ops);
  for (const auto& [kind, count] : s.op_counts)
    std::printf("  %-16s %lld\n", ir::op_kind_name(kind), static_cast<long long>(count));
  std::printf("parameters   %s (%lld)\n", format_count(static_cast<double>(s.parameters)).c_str(),
              static_cast<long long>(s.parameters));
  std::printf("param memory %s\n", format_bytes(static_cast<double>(s.parameter_bytes)).c_str());
  std::printf("forward      %s per step\n", format_flops(s.forward_flops_per_step).c_str());
  std::printf("training     %s per step, %s\n", format_flops(s.training_flops_per_step).c_str(),
              s.training_method.c_str());
  std::printf("activations  %s (sum of forward output bytes of the built graph)\n",
              format_bytes(static_cast<double>(s.activation_bytes)).c_str());
}

int fail(const Error& error, int code) { return report_failure("inspect", error, code); }

}  // namespace

int run_inspect(int argc, char** argv) {
  ArgParser args("inspect", "Build a model's forward graph and report its size, FLOPs and memory.");
  args.option("model", "model config (YAML)", "M.yaml")
      .flag("json", "print JSON instead of text")
      .option("dot", "write the forward graph as Graphviz DOT to this file", "FILE")
      .option("graph-json", "write the forward graph (ops, attrs, types) as JSON to this file", "FILE")
      .option("micro-batch", "build the graph for this many samples (default: the global batch)", "N")
      .required("model");
  if (Status status = args.parse(argc, argv); !status) return fail(status.error(), kExitBadInput);
  if (args.help_requested()) {
    std::printf("%s", args.help_text().c_str());
    return 0;
  }
  Expected<int64_t> micro_batch = args.get_int("micro-batch", 0);
  if (!micro_batch) return fail(micro_batch.error(), kExitBadInput);
  if (args.has("micro-batch") && *micro_batch <= 0)
    return fail(make_error("", "--micro-batch", "must be positive, got " + args.get("micro-batch")), kExitBadInput);
  const std::string path = args.get("model");
  if (Status status = check_input_file(path, "model"); !status) return fail(status.error(), kExitBadInput);
  for (const char* flag : {"dot", "graph-json"}) {
    if (!args.has(flag)) continue;
    if (Status status = check_output_file(args.get(flag), flag); !status) return fail(status.error(), kExitBadInput);
  }
  Expected<models::ModelSpec> spec = models::load_model_config(path);
  if (!spec) return fail(spec.error(), kExitBadInput);
  if (*micro_batch > 0 && spec->family != models::Family::graph && spec->global_batch % *micro_batch != 0) {
    return fail(make_error("", "--micro-batch",
                           std::to_string(*micro_batch) + " does not divide the global batch " +
                               std::to_string(spec->global_batch) + " of " + path),
                kExitBadInput);
  }
  Expected<ir::Graph> graph = models::build_forward_graph(*spec, *micro_batch);
  if (!graph) return fail(graph.error().in_file(path), kExitBadInput);
  const Summary summary = summarize(*spec, *graph, models::effective_batch(*spec, *micro_batch));
  if (args.has("dot")) {
    if (Status status = write_file_atomically(args.get("dot"), graph->to_dot()); !status)
      return fail(output_error(status.error(), "dot"), kExitBadInput);
  }
  if (args.has("graph-json")) {
    if (Status status = write_file_atomically(args.get("graph-json"), graph->to_json().dump(1) + "\n"); !status)
      return fail(output_error(status.error(), "graph-json"), kExitBadInput);
  }
  if (args.has("json")) {
    std::printf("%s\n", to_json(summary).dump(2).c_str());
  } else {
    print_text(summary);
  }
  return 0;
}

}  // namespace strata::cli
