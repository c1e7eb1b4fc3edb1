// Sharding specs of a tensor over a 2-D logical mesh (per dimension R, S0, S1 or S01, plus pending
// partial sums over mesh axes), their local shapes, and the collectives that turn one into another.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "strata/cluster/comm.h"
#include "strata/core/dtype.h"
#include "strata/core/status.h"

namespace strata::intra {

// How one tensor dimension is split: not at all, over mesh axis 0, axis 1, or both (axis 0 major:
// device (i, j) holds block i·n1 + j of n0·n1).
enum class DimSharding : uint8_t { R, S0, S1, S01 };

// The mesh axes that split a dimension, major first: R {}, S0 {0}, S1 {1}, S01 {0, 1}.
std::vector<int> mesh_axes(DimSharding dim);

struct ShardingSpec {
  std::vector<DimSharding> dims;    // one per tensor dimension
  bool partial[2] = {false, false};  // values still to be summed over mesh axis 0 / axis 1

  // "S0R", "RS1", "S01R"; pending sums as a suffix "P0", "P1" or "P01" ("RRP1"). Rank 0: "" or "P0"...
  std::string to_string() const;
  bool operator==(const ShardingSpec& other) const;
};

Expected<ShardingSpec> parse_sharding(const std::string& text);

// A spec is valid for a tensor on a mesh when its rank matches, no mesh axis is used twice (by two
// dimensions, or by a dimension and a partial sum), and every split dimension divides evenly.
Status validate_sharding(const ShardingSpec& spec, const std::vector<int64_t>& global_shape,
                         const cluster::LogicalMesh& mesh);
Expected<std::vector<int64_t>> local_shape(const ShardingSpec& spec, const std::vector<int64_t>& global_shape,
                                           const cluster::LogicalMesh& mesh);

struct ReshardStep {
  cluster::Collective kind = cluster::Collective::all_reduce;
  int axis = -1;       // mesh axis the collective runs along
  int64_t bytes = 0;   // per-device buffer, in CommModel::seconds' convention
  double seconds = 0;
  std::string after;   // the spec once this step is done
};

struct ReshardPlan {
  std::vector<ReshardStep> steps;  // in order; local slicing (free) is implicit
  double seconds = 0;
  std::string describe() const;    // "reduce_scatter(axis 0, 4096 B) -> S0R; all_gather(...)"
};

// How `from` becomes `to` for one tensor: pending sums first (reduce-scatter when `to` splits a
// dimension over that axis next, else all-reduce), then each dimension gives up the mesh axes `to`
// does not want there (all-to-all when `to` wants that axis on another dimension, else
// all-gather), then local slicing, which is free. Axes of size 1 cost nothing and are skipped.
Expected<ReshardPlan> resharding_cost(const ShardingSpec& from, const ShardingSpec& to,
                                      const std::vector<int64_t>& global_shape, DType dtype,
                                      const cluster::Submesh& submesh, const cluster::LogicalMesh& mesh,
                                      const cluster::CommModel& comm);

}  // namespace strata::intra
