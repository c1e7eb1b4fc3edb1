// Alpha-beta pricing of ring collectives: the slowest link on the ring sets the bandwidth term,
// and each of the ring's steps pays that link's latency once.
#include "strata/cluster/alpha_beta.h"

#include <sstream>

namespace strata::cluster {

bool group_spans_nodes(const Submesh& submesh, const LogicalMesh& mesh, int axis) {
  STRATA_CHECK(mesh.num_devices() == submesh.num_devices(), "logical mesh does not match submesh");
  const int devices = submesh.num_devices();
  for (int device = 0; device < devices; ++device) {
    // The first member of this device's group along `axis` in the row-major logical view.
    int first = 0;
    if (axis == 0) first = device % mesh.n1;
    if (axis == 1) first = device - device % mesh.n1;
    if (device / submesh.cols != first / submesh.cols) return true;
  }
  return false;
}

double AlphaBetaModel::seconds(Collective kind, const CommGroup& group, int64_t bytes, DType) const {
  const bool cross = kind == Collective::send_recv ? group.cross_node
                                                   : group_spans_nodes(group.submesh, group.mesh, group.axis);
  const Link& link = cross ? spec_.inter_node : spec_.intra_node;
  const double b = static_cast<double>(bytes);
  if (kind == Collective::send_recv) return b / link.bandwidth_bytes_per_second + link.latency_seconds;
  const int n = group.group_size();
  if (n <= 1) return 0;
  const double steps = n - 1;
  const double fraction = steps / n;
  switch (kind) {
    case Collective::all_reduce:
      return 2 * fraction * b / link.bandwidth_bytes_per_second + 2 * steps * link.latency_seconds;
    case Collective::all_gather:
    case Collective::reduce_scatter:
    case Collective::all_to_all:
      return fraction * b / link.bandwidth_bytes_per_second + steps * link.latency_seconds;
    case Collective::send_recv: break;
  }
  STRATA_UNREACHABLE("unknown collective");
}

std::string AlphaBetaModel::describe() const {
  std::ostringstream out;
  out << "alpha-beta model of cluster " << spec_.name << " (intra-node "
      << spec_.intra_node.bandwidth_bytes_per_second / 1e9 << " GB/s, "
      << spec_.intra_node.latency_seconds * 1e6 << " us; inter-node "
      << spec_.inter_node.bandwidth_bytes_per_second / 1e9 << " GB/s per GPU, "
      << spec_.inter_node.latency_seconds * 1e6 << " us)";
  return out.str();
}

}  // namespace strata::cluster
