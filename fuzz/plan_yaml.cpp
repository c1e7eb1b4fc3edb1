// Fuzz target: plan YAML (plan::parse_plan), then plan::validate, alone and against a fixed
// 2-node x 4-GPU cluster.
#include <cstddef>
#include <cstdint>
#include <string>

#include "fuzz/fuzz_util.h"
#include "strata/plan/plan.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string file = "fuzz-plan.yaml";
  auto loaded = strata::plan::parse_plan(strata::fuzz::as_text(data, size), file);
  const strata::plan::Plan* plan = strata::fuzz::loaded_or_checked(loaded, file);
  if (plan == nullptr) return 0;
  if (strata::Status status = strata::plan::validate(*plan); !status) {
    strata::fuzz::check_error(status.error(), file);
    return 0;
  }
  strata::cluster::ClusterSpec spec;
  spec.name = "fuzz-2x4";
  spec.num_nodes = 2;
  spec.gpus_per_node = 4;
  if (strata::Status status = strata::plan::validate(*plan, &spec); !status) {
    strata::fuzz::check_error(status.error(), file);
  }
  return 0;
}
