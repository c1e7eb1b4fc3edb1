// What `strata profile` measured, as plain data, and profile::Store, which reads and writes it as
// HDF5 (the layout is in docs/profile_schema.md). HDF5 types never leave src/profile/store.cpp.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "strata/cluster/comm.h"
#include "strata/core/dtype.h"
#include "strata/core/status.h"

namespace strata::profile {

constexpr int kSchemaVersion = 1;

// Time of one collective over the replica groups of one logical-mesh axis, against the
// per-device buffer size (same convention as cluster::CommModel::seconds).
struct CollectiveCurve {
  cluster::Collective kind = cluster::Collective::all_reduce;
  cluster::Submesh submesh;
  cluster::LogicalMesh mesh;
  int axis = 0;
  DType dtype = DType::f32;
  std::vector<int64_t> sizes_bytes;  // strictly increasing
  std::vector<double> seconds;
};

struct P2PCurve {
  bool cross_node = false;
  std::vector<int64_t> sizes_bytes;
  std::vector<double> seconds;
};

struct GemmPoint {
  int64_t m = 0, n = 0, k = 0;
  DType dtype = DType::f32;
  double seconds = 0;
};

// One memory-bound op of the runtime backend timed on large tensors: bytes as the cost model counts
// them (every input read once, every output written once, in the IR dtype), strictly increasing.
struct MemoryOpCurve {
  std::string op;  // "add", "softmax", ... (a group name under /memory_ops)
  std::vector<int64_t> bytes;
  std::vector<double> seconds;
};

// The cuda backend's fused attention (Attention, AttentionGrad) timed through the backend on a GPT
// causal mask: q, k, v [B, S, N, D] bf16 (batch_heads = B * N, keys = queries = seq).
struct AttentionPoint {
  int64_t head_dim = 0;
  int64_t batch_heads = 0;
  int64_t seq = 0;
  double forward_seconds = 0;
  double backward_seconds = 0;
};

struct Profile {
  int schema_version = kSchemaVersion;
  std::string cluster_name;
  std::string gpu_model;
  std::string backend;           // "cpu" or "nccl"
  std::string library_versions;  // e.g. "MPI 3.1; NCCL 2.21.5; CUDA 12.4"
  std::string date;              // ISO 8601 UTC
  std::vector<CollectiveCurve> collectives;
  std::vector<P2PCurve> p2p;
  std::vector<GemmPoint> gemm;
  // Measured through the runtime's backend (cuda profiles since 2026-11-24; absent in older files
  // and cpu profiles): seconds of executor/backend cost per op issued (a chain of tiny ops) and
  // large memory-bound ops. Absent means unknown: the cost model then keeps its datasheet roofline.
  std::optional<double> op_overhead_seconds;
  std::vector<MemoryOpCurve> memory_ops;
  // The fused attention's kernels (nccl profiles since session 19; absent: not measured). Their
  // presence says the profile measured the cuda backend's fused executor (cost::ComputeModel).
  std::vector<AttentionPoint> attention;

  // Achieved bandwidth of memory-bound ops: the largest point of each curve, total bytes over
  // total seconds; nullopt without curves.
  std::optional<double> memory_bandwidth() const;
};

class Store {
 public:
  // Writes `profile` to `path`, setting complete=1 only after everything else is written.
  static Status write(const std::string& path, const Profile& profile);
  // Reads a complete profile; a partial file, another schema_version or a profile of a cluster
  // other than `expected_cluster` (when not empty) is an Error naming the file and field.
  static Expected<Profile> read(const std::string& path, const std::string& expected_cluster = "");
};

}  // namespace strata::profile
