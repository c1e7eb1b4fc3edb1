// ProfileCommModel: curve lookup by (collective, submesh, logical mesh, axis, dtype), log-size
// interpolation, and the counted fallback to the alpha-beta model.
#include "strata/profile/comm_model.h"

#include <algorithm>
#include <cmath>
#include <sstream>

namespace strata::profile {

double interpolate_seconds(const std::vector<int64_t>& sizes_bytes, const std::vector<double>& seconds,
                           int64_t bytes) {
  STRATA_CHECK(!sizes_bytes.empty() && sizes_bytes.size() == seconds.size(), "malformed curve");
  if (bytes <= sizes_bytes.front()) return seconds.front();
  if (bytes >= sizes_bytes.back()) {
    return seconds.back() * static_cast<double>(bytes) / static_cast<double>(sizes_bytes.back());
  }
  const size_t upper = static_cast<size_t>(
      std::upper_bound(sizes_bytes.begin(), sizes_bytes.end(), bytes) - sizes_bytes.begin());
  const size_t lower = upper - 1;
  const double x0 = std::log(static_cast<double>(sizes_bytes[lower]));
  const double x1 = std::log(static_cast<double>(sizes_bytes[upper]));
  const double t = (std::log(static_cast<double>(bytes)) - x0) / (x1 - x0);
  return seconds[lower] + t * (seconds[upper] - seconds[lower]);
}

ProfileCommModel::ProfileCommModel(Profile profile, cluster::ClusterSpec spec)
    : profile_(std::move(profile)), fallback_(std::move(spec)) {
  for (const CollectiveCurve& curve : profile_.collectives) {
    const Key key{static_cast<int>(curve.kind), curve.submesh.rows, curve.submesh.cols, curve.mesh.n0,
                  curve.mesh.n1, curve.axis, static_cast<int>(curve.dtype)};
    curves_[key] = Curve{curve.sizes_bytes, curve.seconds};
  }
  for (const P2PCurve& curve : profile_.p2p) p2p_[curve.cross_node] = Curve{curve.sizes_bytes, curve.seconds};
}

double ProfileCommModel::seconds(cluster::Collective kind, const cluster::CommGroup& group, int64_t bytes,
                                 DType dtype) const {
  const Curve* curve = nullptr;
  std::string name;
  if (kind == cluster::Collective::send_recv) {
    auto it = p2p_.find(group.cross_node);
    if (it != p2p_.end()) curve = &it->second;
    name = std::string("send_recv ") + (group.cross_node ? "inter_node" : "intra_node");
  } else {
    if (group.group_size() <= 1) return 0;
    // All devices of a mesh form the same group as axis 1 of its (1, N) view.
    cluster::LogicalMesh mesh = group.mesh;
    int axis = group.axis;
    if (axis < 0) {
      mesh = cluster::LogicalMesh{1, mesh.num_devices()};
      axis = 1;
    }
    const Key key{static_cast<int>(kind), group.submesh.rows, group.submesh.cols, mesh.n0, mesh.n1, axis,
                  static_cast<int>(dtype)};
    auto it = curves_.find(key);
    if (it != curves_.end()) curve = &it->second;
    std::ostringstream text;
    text << cluster::collective_name(kind) << ' ' << group.submesh.rows << 'x' << group.submesh.cols << '/'
         << mesh.n0 << 'x' << mesh.n1 << " axis" << axis << ' ' << dtype_name(dtype);
    name = text.str();
  }
  if (curve != nullptr) return interpolate_seconds(curve->sizes_bytes, curve->seconds, bytes);
  {
    std::lock_guard<std::mutex> lock(mutex_);
    ++fallback_count_;
    fallback_groups_.insert(name);
  }
  return fallback_.seconds(kind, group, bytes, dtype);
}

std::optional<double> ProfileCommModel::gemm_seconds(int64_t m, int64_t n, int64_t k, DType dtype) const {
  for (const GemmPoint& point : profile_.gemm) {
    if (point.m == m && point.n == n && point.k == k && point.dtype == dtype) return point.seconds;
  }
  return std::nullopt;
}

int64_t ProfileCommModel::fallback_count() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return fallback_count_;
}

std::vector<std::string> ProfileCommModel::fallback_groups() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return {fallback_groups_.begin(), fallback_groups_.end()};
}

std::string ProfileCommModel::describe() const {
  std::ostringstream out;
  out << "profile of cluster " << profile_.cluster_name << " (" << profile_.backend << ", " << profile_.date
      << "): " << curves_.size() << " collective curves, " << p2p_.size() << " p2p curves";
  const int64_t fallbacks = fallback_count();
  if (fallbacks > 0) {
    out << "; " << fallbacks << " lookups over " << fallback_groups().size()
        << " unprofiled groups fell back to the " << fallback_.describe();
  }
  return out.str();
}

}  // namespace strata::profile
