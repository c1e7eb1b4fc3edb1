// The measured communication model: a profile's curves, interpolated linearly in log(size), with
// the analytic alpha-beta model answering (and being counted) wherever the profile has no entry.
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "strata/cluster/alpha_beta.h"
#include "strata/profile/store.h"

namespace strata::profile {

// Seconds at `bytes` on the curve (sizes increasing, same length as seconds, non-empty): linear in
// log(bytes) between points; beyond the largest size, the last point's bandwidth; below the
// smallest, the smallest size's time (latency-bound).
double interpolate_seconds(const std::vector<int64_t>& sizes_bytes, const std::vector<double>& seconds,
                           int64_t bytes);

class ProfileCommModel : public cluster::CommModel {
 public:
  // `spec` prices what the profile lacks; the profile must be of spec.name (Store::read checks).
  ProfileCommModel(Profile profile, cluster::ClusterSpec spec);

  double seconds(cluster::Collective kind, const cluster::CommGroup& group, int64_t bytes,
                 DType dtype) const override;
  std::string describe() const override;

  // Measured GEMM time for exactly (m, n, k, dtype), if profiled.
  std::optional<double> gemm_seconds(int64_t m, int64_t n, int64_t k, DType dtype) const;

  // Lookups answered by the alpha-beta model so far, and the distinct groups they were for (each
  // listed once, sorted), e.g. "all_to_all 2x4/4x2 axis0 bf16".
  int64_t fallback_count() const;
  std::vector<std::string> fallback_groups() const;

 private:
  using Key = std::tuple<int, int, int, int, int, int, int>;  // kind, rows, cols, n0, n1, axis, dtype
  struct Curve {
    std::vector<int64_t> sizes_bytes;
    std::vector<double> seconds;
  };
  Profile profile_;
  cluster::AlphaBetaModel fallback_;
  std::map<Key, Curve> curves_;
  std::map<bool, Curve> p2p_;
  mutable std::mutex mutex_;  // guards the fallback record: seconds() is const and may run in parallel
  mutable int64_t fallback_count_ = 0;
  mutable std::set<std::string> fallback_groups_;
};

}  // namespace strata::profile
