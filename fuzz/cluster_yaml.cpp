// Fuzz target: cluster YAML (parse_cluster), then the submesh and logical-mesh shapes the planner
// enumerates from it when the cluster is of a plausible size.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "fuzz/fuzz_util.h"
#include "strata/cluster/cluster.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string file = "fuzz-cluster.yaml";
  auto loaded = strata::cluster::parse_cluster(strata::fuzz::as_text(data, size), file);
  const strata::cluster::ClusterSpec* spec = strata::fuzz::loaded_or_checked(loaded, file);
  if (spec == nullptr) return 0;
  // What a loaded spec promises its users.
  if (spec->num_nodes < 1 || spec->gpus_per_node < 1 || spec->gpu_memory_bytes <= 0 || !(spec->peak_flops_f32 > 0) ||
      !(spec->intra_node.bandwidth_bytes_per_second > 0) || !(spec->inter_node.bandwidth_bytes_per_second > 0)) {
    std::abort();
  }
  if (static_cast<int64_t>(spec->num_nodes) * spec->gpus_per_node > 4096) return 0;
  for (const auto& submesh : strata::cluster::submesh_shapes(*spec)) {
    for (const auto& mesh : strata::cluster::logical_meshes(submesh)) {
      if (mesh.num_devices() != submesh.num_devices()) std::abort();
    }
  }
  return 0;
}
