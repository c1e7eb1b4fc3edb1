// The nccl profiler backend: one GPU per rank, NCCL collectives and send/recv timed with CUDA
// events on a private stream, GEMM with cuBLAS. Every CUDA, NCCL and cuBLAS call is checked.
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <nccl.h>

#include <string>

#include "../backend.h"

namespace strata::profile {
namespace {

#define STRATA_CUDA_CALL(call)                                                                            \
  do {                                                                                                    \
    const cudaError_t strata_cuda_rc_ = (call);                                                           \
    if (strata_cuda_rc_ != cudaSuccess) {                                                                 \
      return make_error("", "", std::string("CUDA call ") + #call + " failed: " + cudaGetErrorString(strata_cuda_rc_)); \
    }                                                                                                     \
  } while (0)

#define STRATA_NCCL_CALL(call)                                                                            \
  do {                                                                                                    \
    const ncclResult_t strata_nccl_rc_ = (call);                                                          \
    if (strata_nccl_rc_ != ncclSuccess) {                                                                 \
      return make_error("", "", std::string("NCCL call ") + #call + " failed: " + ncclGetErrorString(strata_nccl_rc_)); \
    }                                                                                                     \
  } while (0)

#define STRATA_CUBLAS_CALL(call)                                                                          \
  do {                                                                                                    \
    const cublasStatus_t strata_cublas_rc_ = (call);                                                      \
    if (strata_cublas_rc_ != CUBLAS_STATUS_SUCCESS) {                                                     \
      return make_error("", "", std::string("cuBLAS call ") + #call + " failed: status " +                \
                                    std::to_string(static_cast<int>(strata_cublas_rc_)));                 \
    }                                                                                                     \
  } while (0)

ncclDataType_t nccl_type(DType dtype) {
  switch (dtype) {
    case DType::f32: return ncclFloat32;
    case DType::f64: return ncclFloat64;
    case DType::f16: return ncclFloat16;
    case DType::bf16: return ncclBfloat16;
    case DType::i32: return ncclInt32;
  }
  STRATA_UNREACHABLE("unknown dtype");
}

// Device buffers shared by every group of this rank: a send and a receive buffer of max_bytes.
struct DeviceBuffers {
  void* send = nullptr;
  void* recv = nullptr;
  cudaStream_t stream = nullptr;
  cudaEvent_t start = nullptr;
  cudaEvent_t stop = nullptr;
};

class NcclGroupTimer : public GroupTimer {
 public:
  NcclGroupTimer(ncclComm_t comm, MPI_Comm mpi_comm, const DeviceBuffers& buffers)
      : comm_(comm), mpi_comm_(mpi_comm), buffers_(buffers) {}
  ~NcclGroupTimer() override { ncclCommDestroy(comm_); }

  Expected<double> collective(cluster::Collective kind, int64_t count, DType dtype, int warmup,
                              int iterations) override {
    int size = 1;
    STRATA_NCCL_CALL(ncclCommCount(comm_, &size));
    const size_t chunk = static_cast<size_t>(count / size);
    const size_t chunk_bytes = chunk * static_cast<size_t>(dtype_bytes(dtype));
    const ncclDataType_t type = nccl_type(dtype);
    cudaStream_t stream = buffers_.stream;
    auto once = [&]() -> Status {
      switch (kind) {
        case cluster::Collective::all_reduce:
          STRATA_NCCL_CALL(ncclAllReduce(buffers_.send, buffers_.recv, static_cast<size_t>(count), type, ncclSum,
                                         comm_, stream));
          break;
        case cluster::Collective::all_gather:
          STRATA_NCCL_CALL(ncclAllGather(buffers_.send, buffers_.recv, chunk, type, comm_, stream));
          break;
        case cluster::Collective::reduce_scatter:
          STRATA_NCCL_CALL(ncclReduceScatter(buffers_.send, buffers_.recv, chunk, type, ncclSum, comm_, stream));
          break;
        case cluster::Collective::all_to_all: {
          STRATA_NCCL_CALL(ncclGroupStart());
          for (int peer = 0; peer < size; ++peer) {
            char* send = static_cast<char*>(buffers_.send) + peer * chunk_bytes;
            char* recv = static_cast<char*>(buffers_.recv) + peer * chunk_bytes;
            STRATA_NCCL_CALL(ncclSend(send, chunk, type, peer, comm_, stream));
            STRATA_NCCL_CALL(ncclRecv(recv, chunk, type, peer, comm_, stream));
          }
          STRATA_NCCL_CALL(ncclGroupEnd());
          break;
        }
        case cluster::Collective::send_recv:
          STRATA_UNREACHABLE("send_recv is timed by ping_pong");
      }
      return Status::ok();
    };
    return time(once, warmup, iterations, 1);
  }

  Expected<double> ping_pong(int64_t bytes, int warmup, int iterations) override {
    int rank = 0;
    STRATA_NCCL_CALL(ncclCommUserRank(comm_, &rank));
    const int peer = 1 - rank;
    const size_t count = static_cast<size_t>(bytes);
    auto once = [&]() -> Status {
      for (int turn = 0; turn < 2; ++turn) {
        if ((turn == 0) == (rank == 0)) {
          STRATA_NCCL_CALL(ncclSend(buffers_.send, count, ncclInt8, peer, comm_, buffers_.stream));
        } else {
          STRATA_NCCL_CALL(ncclRecv(buffers_.recv, count, ncclInt8, peer, comm_, buffers_.stream));
        }
      }
      return Status::ok();
    };
    return time(once, warmup, iterations, 2);
  }

 private:
  template <typename F>
  Expected<double> time(F& once, int warmup, int iterations, int divisor) {
    for (int i = 0; i < warmup; ++i) STRATA_RETURN_IF_ERROR(once());
    STRATA_CUDA_CALL(cudaStreamSynchronize(buffers_.stream));
    STRATA_MPI_CALL(MPI_Barrier(mpi_comm_));
    STRATA_CUDA_CALL(cudaEventRecord(buffers_.start, buffers_.stream));
    for (int i = 0; i < iterations; ++i) STRATA_RETURN_IF_ERROR(once());
    STRATA_CUDA_CALL(cudaEventRecord(buffers_.stop, buffers_.stream));
    STRATA_CUDA_CALL(cudaEventSynchronize(buffers_.stop));
    float milliseconds = 0;
    STRATA_CUDA_CALL(cudaEventElapsedTime(&milliseconds, buffers_.start, buffers_.stop));
    return milliseconds * 1e-3 / iterations / divisor;
  }

  ncclComm_t comm_;
  MPI_Comm mpi_comm_;
  DeviceBuffers buffers_;
};

class NcclBackend : public Backend {
 public:
  ~NcclBackend() override {
    if (cublas_ != nullptr) cublasDestroy(cublas_);
    if (buffers_.start != nullptr) cudaEventDestroy(buffers_.start);
    if (buffers_.stop != nullptr) cudaEventDestroy(buffers_.stop);
    if (buffers_.stream != nullptr) cudaStreamDestroy(buffers_.stream);
    cudaFree(buffers_.send);
    cudaFree(buffers_.recv);
  }

  Status init(MPI_Comm world, int64_t max_bytes) {
    MPI_Comm local = MPI_COMM_NULL;
    STRATA_MPI_CALL(MPI_Comm_split_type(world, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &local));
    int local_rank = 0;
    const int rank_rc = MPI_Comm_rank(local, &local_rank);
    MPI_Comm_free(&local);
    STRATA_MPI_CALL(rank_rc);
    int devices = 0;
    STRATA_CUDA_CALL(cudaGetDeviceCount(&devices));
    if (devices == 0) return make_error("", "--backend", "nccl: no CUDA device visible to this rank");
    STRATA_CUDA_CALL(cudaSetDevice(local_rank % devices));
    cudaDeviceProp properties{};
    STRATA_CUDA_CALL(cudaGetDeviceProperties(&properties, local_rank % devices));
    device_name_ = properties.name;
    STRATA_CUDA_CALL(cudaMalloc(&buffers_.send, static_cast<size_t>(max_bytes)));
    STRATA_CUDA_CALL(cudaMalloc(&buffers_.recv, static_cast<size_t>(max_bytes)));
    STRATA_CUDA_CALL(cudaMemset(buffers_.send, 0, static_cast<size_t>(max_bytes)));
    STRATA_CUDA_CALL(cudaStreamCreateWithFlags(&buffers_.stream, cudaStreamNonBlocking));
    STRATA_CUDA_CALL(cudaEventCreate(&buffers_.start));
    STRATA_CUDA_CALL(cudaEventCreate(&buffers_.stop));
    STRATA_CUBLAS_CALL(cublasCreate(&cublas_));
    STRATA_CUBLAS_CALL(cublasSetStream(cublas_, buffers_.stream));
    int nccl_version = 0, cuda_version = 0, cublas_version = 0;
    STRATA_NCCL_CALL(ncclGetVersion(&nccl_version));
    STRATA_CUDA_CALL(cudaRuntimeGetVersion(&cuda_version));
    STRATA_CUBLAS_CALL(cublasGetVersion(cublas_, &cublas_version));
    versions_ = mpi_library_version() + "; NCCL " + std::to_string(nccl_version) + "; CUDA runtime " +
                std::to_string(cuda_version) + "; cuBLAS " + std::to_string(cublas_version);
    return Status::ok();
  }

  std::string name() const override { return "nccl"; }
  std::string device_name() const override { return device_name_; }
  std::string library_versions() const override { return versions_; }
  Status check_dtype(DType dtype) const override {
    if (dtype == DType::i32) return make_error("", "--dtypes", "i32 is not profiled (float dtypes only)");
    return Status::ok();
  }
  int default_warmup() const override { return 5; }
  int default_iterations() const override { return 20; }
  std::vector<GemmShape> gemm_shapes() const override {
    return {{1024, 1024, 1024}, {2048, 2048, 2048}, {4096, 4096, 4096}, {8192, 8192, 8192},
            {8192, 1024, 8192}, {1024, 8192, 8192}, {8192, 8192, 1024}};
  }
  std::vector<DType> gemm_dtypes(const std::vector<DType>& requested) const override {
    std::vector<DType> dtypes;
    for (DType dtype : requested) {
      if (dtype == DType::f32 || dtype == DType::f16 || dtype == DType::bf16) dtypes.push_back(dtype);
    }
    return dtypes;
  }

  Expected<std::unique_ptr<GroupTimer>> group(MPI_Comm comm) override {
    int rank = 0, size = 0;
    STRATA_MPI_CALL(MPI_Comm_rank(comm, &rank));
    STRATA_MPI_CALL(MPI_Comm_size(comm, &size));
    ncclUniqueId id;
    if (rank == 0) STRATA_NCCL_CALL(ncclGetUniqueId(&id));
    STRATA_MPI_CALL(MPI_Bcast(&id, sizeof id, MPI_BYTE, 0, comm));
    ncclComm_t nccl_comm = nullptr;
    STRATA_NCCL_CALL(ncclCommInitRank(&nccl_comm, size, id, rank));
    return std::unique_ptr<GroupTimer>(std::make_unique<NcclGroupTimer>(nccl_comm, comm, buffers_));
  }

  Expected<double> gemm(const GemmShape& shape, DType dtype, int warmup, int iterations) override {
    const cudaDataType_t type = dtype == DType::f32 ? CUDA_R_32F : dtype == DType::f16 ? CUDA_R_16F : CUDA_R_16BF;
    const size_t element = static_cast<size_t>(dtype_bytes(dtype));
    void *a = nullptr, *b = nullptr, *c = nullptr;
    STRATA_CUDA_CALL(cudaMalloc(&a, static_cast<size_t>(shape.m * shape.k) * element));
    STRATA_CUDA_CALL(cudaMalloc(&b, static_cast<size_t>(shape.k * shape.n) * element));
    STRATA_CUDA_CALL(cudaMalloc(&c, static_cast<size_t>(shape.m * shape.n) * element));
    auto result = time_gemm(shape, type, a, b, c, warmup, iterations);
    cudaFree(a);
    cudaFree(b);
    cudaFree(c);
    return result;
  }

 private:
  Expected<double> time_gemm(const GemmShape& shape, cudaDataType_t type, void* a, void* b, void* c, int warmup,
                             int iterations) {
    const float one = 1.0f, zero = 0.0f;
    const int m = static_cast<int>(shape.m), n = static_cast<int>(shape.n), k = static_cast<int>(shape.k);
    auto once = [&]() -> Status {
      // Column-major C (m×n) = A (m×k) · B (k×n), accumulated in fp32.
      STRATA_CUBLAS_CALL(cublasGemmEx(cublas_, CUBLAS_OP_N, CUBLAS_OP_N, m, n, k, &one, a, type, m, b, type, k,
                                      &zero, c, type, m, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
      return Status::ok();
    };
    for (int i = 0; i < warmup; ++i) STRATA_RETURN_IF_ERROR(once());
    STRATA_CUDA_CALL(cudaEventRecord(buffers_.start, buffers_.stream));
    for (int i = 0; i < iterations; ++i) STRATA_RETURN_IF_ERROR(once());
    STRATA_CUDA_CALL(cudaEventRecord(buffers_.stop, buffers_.stream));
    STRATA_CUDA_CALL(cudaEventSynchronize(buffers_.stop));
    float milliseconds = 0;
    STRATA_CUDA_CALL(cudaEventElapsedTime(&milliseconds, buffers_.start, buffers_.stop));
    return milliseconds * 1e-3 / iterations;
  }

  DeviceBuffers buffers_;
  cublasHandle_t cublas_ = nullptr;
  std::string device_name_;
  std::string versions_;
};

}  // namespace

Expected<std::unique_ptr<Backend>> make_nccl_backend(MPI_Comm world, int64_t max_bytes) {
  auto backend = std::make_unique<NcclBackend>();
  STRATA_RETURN_IF_ERROR(backend->init(world, max_bytes));
  return std::unique_ptr<Backend>(std::move(backend));
}

}  // namespace strata::profile
