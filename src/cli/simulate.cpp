// `strata simulate`: reads a plan, runs its schedule through the timing simulator and prints the
// predicted step, bubbles and memory; optionally writes a Chrome/Perfetto trace (docs/trace.md).
#include <cstdio>
#include <string>

#include "cli/commands.h"
#include "cli/common.h"
#include "strata/cluster/cluster.h"
#include "strata/core/args.h"
#include "strata/core/units.h"
#include "strata/plan/plan.h"
#include "strata/sim/simulator.h"

namespace strata::cli {
namespace {

int fail_with(const Error& error, int code) { return report_failure("simulate", error, code); }

}  // namespace

int run_simulate(int argc, char** argv) {
  ArgParser args("simulate", "Simulate a plan's pipeline schedule: step time, bubbles, memory, trace.");
  args.option("plan", "plan (YAML, docs/plan_format.md)", "plan.yaml")
      .option("cluster", "also check the plan against this cluster config", "C.yaml")
      .option("trace", "write a Chrome/Perfetto trace JSON to this file", "t.json")
      .flag("json", "print JSON instead of text")
      .required("plan");
  if (Status status = args.parse(argc, argv); !status) return fail_with(status.error(), kExitBadInput);
  if (args.help_requested()) {
    std::printf("%s", args.help_text().c_str());
    return 0;
  }
  for (const char* flag : {"plan", "cluster"}) {
    if (!args.has(flag)) continue;
    if (Status status = check_input_file(args.get(flag), flag); !status)
      return fail_with(status.error(), kExitBadInput);
  }
  if (args.has("trace")) {
    if (Status status = check_output_file(args.get("trace"), "trace"); !status)
      return fail_with(status.error(), kExitBadInput);
  }
  Expected<plan::Plan> plan = plan::read_plan(args.get("plan"));
  if (!plan) return fail_with(plan.error(), kExitBadInput);
  if (args.has("cluster")) {
    Expected<cluster::ClusterSpec> spec = cluster::load_cluster(args.get("cluster"));
    if (!spec) return fail_with(spec.error(), kExitBadInput);
    if (Status status = plan::validate(*plan, &*spec); !status) return fail_with(status.error(), kExitBadInput);
  }
  const sim::Result result = sim::simulate(*plan);
  if (args.has("trace")) {
    if (Status status = write_file_atomically(args.get("trace"), sim::trace_json(*plan, result).dump() + "\n");
        !status) {
      return fail_with(output_error(status.error(), "trace"), kExitBadInput);
    }
  }
  if (args.has("json")) {
    std::printf("%s\n", sim::result_json(*plan, result).dump(2).c_str());
  } else {
    std::printf("%s\n%s", plan::report(*plan).c_str(), sim::report(*plan, result).c_str());
  }
  return 0;
}

}  // namespace strata::cli
