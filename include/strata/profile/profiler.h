// `strata profile`'s engine: on every MPI rank (one per device), time each collective over every
// submesh / logical mesh / axis, point-to-point and GEMM, and gather the Profile on rank 0.
#pragma once

// The MPI C API only: Open MPI's deprecated C++ bindings would need libmpi_cxx.
#ifndef OMPI_SKIP_MPICXX
#define OMPI_SKIP_MPICXX 1
#endif
#include <mpi.h>

#include <cstdint>
#include <ostream>
#include <string>
#include <vector>

#include "strata/cluster/cluster.h"
#include "strata/profile/store.h"

namespace strata::profile {

struct ProfilerOptions {
  std::string backend = "cpu";          // "cpu" (MPI on host memory) or "nccl" (needs STRATA_CUDA)
  int64_t max_bytes = 0;                // largest message; 0: 4 MiB for cpu, 1 GiB for nccl
  std::vector<DType> dtypes = {DType::f32};
  int warmup_iterations = 0;            // 0: the backend's default
  int timed_iterations = 0;             // 0: the backend's default
};

// Message sizes measured: 1 KiB, 4 KiB, ... (×4) up to max_bytes.
std::vector<int64_t> profile_sizes(int64_t max_bytes);

// nccl-tests' bus-bandwidth factor for a collective over n ranks (docs/profile_schema.md).
double bus_bandwidth_factor(cluster::Collective kind, int n);

// Collective over `world`, whose size must equal spec.num_devices(). Rank 0 prints the table to
// `table` and gets the whole Profile back; other ranks get an empty Profile. An error on any rank
// is returned on every rank.
Expected<Profile> run_profiler(const cluster::ClusterSpec& spec, const ProfilerOptions& options, MPI_Comm world,
                               std::ostream& table);

}  // namespace strata::profile
