// The analytic communication model: ring collectives priced with a per-step latency (alpha) and
// the bottleneck link's bandwidth (beta), from the cluster YAML alone. The fallback of any profile.
#pragma once

#include <string>

#include "strata/cluster/comm.h"

namespace strata::cluster {

// True when some replica group of `axis` (-1: all devices) of `mesh` over `submesh` holds devices
// of two different nodes. Devices of a (rows, cols) submesh are numbered row-major; row r is node r.
bool group_spans_nodes(const Submesh& submesh, const LogicalMesh& mesh, int axis);

class AlphaBetaModel : public CommModel {
 public:
  explicit AlphaBetaModel(ClusterSpec spec) : spec_(std::move(spec)) {}
  // Ring formulas, n = group size, B = bytes, bw/alpha of the bottleneck link:
  //   all_reduce 2(n-1)/n·B/bw + 2(n-1)·alpha; all_gather, reduce_scatter, all_to_all
  //   (n-1)/n·B/bw + (n-1)·alpha; send_recv B/bw + alpha.
  double seconds(Collective kind, const CommGroup& group, int64_t bytes, DType dtype) const override;
  std::string describe() const override;
  const ClusterSpec& spec() const { return spec_; }

 private:
  ClusterSpec spec_;
};

}  // namespace strata::cluster
