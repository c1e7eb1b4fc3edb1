// The profiler's seam between the harness (profiler.cpp) and what is timed: host MPI (cpu_backend.cpp)
// or NCCL + cuBLAS on GPUs (cuda/nccl_backend.cpp). Each returns local seconds per iteration.
#pragma once

// The MPI C API only: Open MPI's deprecated C++ bindings would need libmpi_cxx.
#ifndef OMPI_SKIP_MPICXX
#define OMPI_SKIP_MPICXX 1
#endif
#include <mpi.h>

#include <memory>
#include <string>
#include <vector>

#include "strata/cluster/comm.h"
#include "strata/core/mpi_call.h"
#include "strata/core/status.h"

namespace strata::profile {

// Times operations over one communicator (a replica group, or a pair for ping-pong).
class GroupTimer {
 public:
  virtual ~GroupTimer() = default;
  // `count` elements per device as in CommModel::seconds (divisible by the group size).
  virtual Expected<double> collective(cluster::Collective kind, int64_t count, DType dtype, int warmup,
                                      int iterations) = 0;
  // Half a round trip of `bytes` between the two ranks of a 2-rank communicator.
  virtual Expected<double> ping_pong(int64_t bytes, int warmup, int iterations) = 0;
};

struct GemmShape {
  int64_t m, n, k;
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string name() const = 0;
  virtual std::string device_name() const = 0;
  virtual std::string library_versions() const = 0;
  virtual Status check_dtype(DType dtype) const = 0;
  virtual int default_warmup() const = 0;
  virtual int default_iterations() const = 0;
  virtual std::vector<GemmShape> gemm_shapes() const = 0;
  virtual std::vector<DType> gemm_dtypes(const std::vector<DType>& requested) const = 0;
  virtual Expected<std::unique_ptr<GroupTimer>> group(MPI_Comm comm) = 0;
  virtual Expected<double> gemm(const GemmShape& shape, DType dtype, int warmup, int iterations) = 0;
};

std::string mpi_library_version();
Expected<std::unique_ptr<Backend>> make_cpu_backend(int64_t max_bytes);
#ifdef STRATA_HAVE_CUDA
Expected<std::unique_ptr<Backend>> make_nccl_backend(MPI_Comm world, int64_t max_bytes);
#endif

}  // namespace strata::profile
