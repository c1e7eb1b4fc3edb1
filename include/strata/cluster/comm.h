// The seam between communication costs and whoever asks for them (cost, intra, sim): how long a
// collective over one logical-mesh axis takes. Implementations: the analytic alpha-beta model
// from the cluster YAML (cluster module) and the measured profile (profile module).
#pragma once

#include <cstdint>
#include <string>

#include "strata/cluster/cluster.h"
#include "strata/core/dtype.h"

namespace strata::cluster {

enum class Collective { all_reduce, all_gather, reduce_scatter, all_to_all, send_recv };
const char* collective_name(Collective kind);

// The replica group a collective runs over: logical mesh `mesh` of submesh `submesh`, along
// `axis` (0 or 1), or over all devices when axis is -1. send_recv: `submesh` is ignored and
// `cross_node` says whether the two ends are on different nodes.
struct CommGroup {
  Submesh submesh;
  LogicalMesh mesh;
  int axis = -1;
  bool cross_node = false;
  int group_size() const { return axis == 0 ? mesh.n0 : axis == 1 ? mesh.n1 : mesh.num_devices(); }
};

class CommModel {
 public:
  virtual ~CommModel() = default;
  // Seconds for one collective whose per-device buffer is `bytes` (the full, unsharded buffer for
  // all-reduce; the output for all-gather; the input for reduce-scatter; each rank's send buffer
  // for all-to-all; the message for send_recv). Zero for a group of one.
  virtual double seconds(Collective kind, const CommGroup& group, int64_t bytes, DType dtype) const = 0;
  virtual std::string describe() const = 0;
};

}  // namespace strata::cluster
