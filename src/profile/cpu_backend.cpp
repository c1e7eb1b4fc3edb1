// The cpu profiler backend: collectives and ping-pong with host MPI on host buffers, and a simple
// blocked fp32 GEMM. It measures the machine it runs on; its numbers exercise the whole pipeline.
#include <algorithm>
#include <cstring>

#include "backend.h"

namespace strata::profile {
namespace {

MPI_Datatype mpi_type(DType dtype) { return dtype == DType::f64 ? MPI_DOUBLE : MPI_FLOAT; }

class CpuGroupTimer : public GroupTimer {
 public:
  CpuGroupTimer(MPI_Comm comm, int64_t max_bytes)
      : comm_(comm), send_(static_cast<size_t>(max_bytes), 1), recv_(static_cast<size_t>(max_bytes), 0) {}

  Expected<double> collective(cluster::Collective kind, int64_t count, DType dtype, int warmup,
                              int iterations) override {
    int size = 1;
    STRATA_MPI_CALL(MPI_Comm_size(comm_, &size));
    STRATA_CHECK(count % size == 0 && count * dtype_bytes(dtype) <= static_cast<int64_t>(send_.size()),
                 "collective count does not fit the group or buffer");
    const int chunk = static_cast<int>(count / size);
    const MPI_Datatype type = mpi_type(dtype);
    auto once = [&]() -> Status {
      switch (kind) {
        case cluster::Collective::all_reduce:
          STRATA_MPI_CALL(MPI_Allreduce(send_.data(), recv_.data(), static_cast<int>(count), type, MPI_SUM, comm_));
          break;
        case cluster::Collective::all_gather:
          STRATA_MPI_CALL(MPI_Allgather(send_.data(), chunk, type, recv_.data(), chunk, type, comm_));
          break;
        case cluster::Collective::reduce_scatter:
          STRATA_MPI_CALL(MPI_Reduce_scatter_block(send_.data(), recv_.data(), chunk, type, MPI_SUM, comm_));
          break;
        case cluster::Collective::all_to_all:
          STRATA_MPI_CALL(MPI_Alltoall(send_.data(), chunk, type, recv_.data(), chunk, type, comm_));
          break;
        case cluster::Collective::send_recv:
          STRATA_UNREACHABLE("send_recv is timed by ping_pong");
      }
      return Status::ok();
    };
    for (int i = 0; i < warmup; ++i) STRATA_RETURN_IF_ERROR(once());
    STRATA_MPI_CALL(MPI_Barrier(comm_));
    const double start = MPI_Wtime();
    for (int i = 0; i < iterations; ++i) STRATA_RETURN_IF_ERROR(once());
    return (MPI_Wtime() - start) / iterations;
  }

  Expected<double> ping_pong(int64_t bytes, int warmup, int iterations) override {
    int rank = 0;
    STRATA_MPI_CALL(MPI_Comm_rank(comm_, &rank));
    const int count = static_cast<int>(bytes);
    auto once = [&]() -> Status {
      if (rank == 0) {
        STRATA_MPI_CALL(MPI_Send(send_.data(), count, MPI_BYTE, 1, 0, comm_));
        STRATA_MPI_CALL(MPI_Recv(recv_.data(), count, MPI_BYTE, 1, 0, comm_, MPI_STATUS_IGNORE));
      } else {
        STRATA_MPI_CALL(MPI_Recv(recv_.data(), count, MPI_BYTE, 0, 0, comm_, MPI_STATUS_IGNORE));
        STRATA_MPI_CALL(MPI_Send(send_.data(), count, MPI_BYTE, 0, 0, comm_));
      }
      return Status::ok();
    };
    for (int i = 0; i < warmup; ++i) STRATA_RETURN_IF_ERROR(once());
    STRATA_MPI_CALL(MPI_Barrier(comm_));
    const double start = MPI_Wtime();
    for (int i = 0; i < iterations; ++i) STRATA_RETURN_IF_ERROR(once());
    return (MPI_Wtime() - start) / iterations / 2;
  }

 private:
  MPI_Comm comm_;
  std::vector<char> send_;
  std::vector<char> recv_;
};

// C (m×n) = A (m×k) · B (k×n), row-major, in 64-wide blocks so that a block of B stays in cache.
void blocked_gemm(const float* a, const float* b, float* c, int64_t m, int64_t n, int64_t k) {
  constexpr int64_t kBlock = 64;
  std::fill(c, c + m * n, 0.0f);
  for (int64_t i0 = 0; i0 < m; i0 += kBlock) {
    for (int64_t p0 = 0; p0 < k; p0 += kBlock) {
      for (int64_t j0 = 0; j0 < n; j0 += kBlock) {
        for (int64_t i = i0; i < std::min(i0 + kBlock, m); ++i) {
          for (int64_t p = p0; p < std::min(p0 + kBlock, k); ++p) {
            const float scale = a[i * k + p];
            for (int64_t j = j0; j < std::min(j0 + kBlock, n); ++j) c[i * n + j] += scale * b[p * n + j];
          }
        }
      }
    }
  }
}

class CpuBackend : public Backend {
 public:
  explicit CpuBackend(int64_t max_bytes) : max_bytes_(max_bytes) {}
  std::string name() const override { return "cpu"; }
  std::string device_name() const override { return "cpu"; }
  std::string library_versions() const override { return mpi_library_version(); }
  Status check_dtype(DType dtype) const override {
    if (dtype == DType::f32 || dtype == DType::f64) return Status::ok();
    return make_error("", "--dtypes", std::string(dtype_name(dtype)) + " is not supported by the cpu backend (f32, f64)");
  }
  int default_warmup() const override { return 1; }
  int default_iterations() const override { return 5; }
  std::vector<GemmShape> gemm_shapes() const override { return {{64, 64, 64}, {128, 128, 128}, {256, 128, 64}}; }
  std::vector<DType> gemm_dtypes(const std::vector<DType>&) const override { return {DType::f32}; }
  Expected<std::unique_ptr<GroupTimer>> group(MPI_Comm comm) override {
    return std::unique_ptr<GroupTimer>(std::make_unique<CpuGroupTimer>(comm, max_bytes_));
  }
  Expected<double> gemm(const GemmShape& shape, DType dtype, int warmup, int iterations) override {
    STRATA_CHECK(dtype == DType::f32, "the cpu GEMM is fp32");
    std::vector<float> a(static_cast<size_t>(shape.m * shape.k)), b(static_cast<size_t>(shape.k * shape.n));
    std::vector<float> c(static_cast<size_t>(shape.m * shape.n));
    for (size_t i = 0; i < a.size(); ++i) a[i] = static_cast<float>(i % 7) * 0.25f;
    for (size_t i = 0; i < b.size(); ++i) b[i] = static_cast<float>(i % 5) * 0.5f;
    for (int i = 0; i < warmup; ++i) blocked_gemm(a.data(), b.data(), c.data(), shape.m, shape.n, shape.k);
    const double start = MPI_Wtime();
    for (int i = 0; i < iterations; ++i) blocked_gemm(a.data(), b.data(), c.data(), shape.m, shape.n, shape.k);
    return (MPI_Wtime() - start) / iterations;
  }

 private:
  int64_t max_bytes_;
};

}  // namespace

std::string mpi_library_version() {
  char text[MPI_MAX_LIBRARY_VERSION_STRING] = {};
  int length = 0;
  if (MPI_Get_library_version(text, &length) != MPI_SUCCESS) return "MPI (unknown version)";
  std::string version(text, static_cast<size_t>(length));
  const size_t end = version.find_first_of(",\n");
  return version.substr(0, end);
}

Expected<std::unique_ptr<Backend>> make_cpu_backend(int64_t max_bytes) {
  return std::unique_ptr<Backend>(std::make_unique<CpuBackend>(max_bytes));
}

}  // namespace strata::profile
