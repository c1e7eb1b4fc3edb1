// The cuda backend's communicators. NcclCommunicator: collectives through NCCL on the backend's
// stream (so they order with the kernels around them); all_reduce_async on a stream and NCCL
// communicator of its own, so that it overlaps the kernels queued after it. MpiCommunicator (--collectives mpi): the
// same collectives staged through host memory and MPI, for several ranks sharing one GPU (NCCL
// refuses that) and clusters without NCCL. Both send point-to-point through MPI with host staging:
// MPI honours the message tags of the Communicator contract and a send never blocks the device
// stream on its receiver.
#include <nccl.h>

#include <algorithm>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "cuda_tensor.h"
#include "kernels.h"

namespace strata::runtime::cuda {
namespace {

#define STRATA_NCCL_CALL(call)                                                                            \
  do {                                                                                                    \
    const ncclResult_t strata_nccl_rc_ = (call);                                                          \
    if (strata_nccl_rc_ != ncclSuccess) {                                                                 \
      return make_error("", "", std::string("NCCL call ") + #call + " failed: " +                        \
                                    ncclGetErrorString(strata_nccl_rc_));                                 \
    }                                                                                                     \
  } while (0)

ncclDataType_t nccl_type(Elem e) {
  switch (e) {
    case Elem::bf16: return ncclBfloat16;
    case Elem::i32: return ncclInt32;
    default: return ncclFloat32;
  }
}

// [pre, size * block, post] seen around `dim`.
struct Around {
  int64_t pre = 1, n = 1, post = 1;
  Around(const ir::Shape& shape, int dim) {
    for (int d = 0; d < static_cast<int>(shape.size()); ++d) {
      if (d < dim) pre *= shape[d];
      if (d == dim) n = shape[d];
      if (d > dim) post *= shape[d];
    }
  }
};

View view4(int64_t a, int64_t b, int64_t c, int64_t d, int64_t sa, int64_t sb, int64_t sc, int64_t sd) {
  View v;
  v.rank = 4;
  v.shape[0] = a, v.shape[1] = b, v.shape[2] = c, v.shape[3] = d;
  v.stride[0] = sa, v.stride[1] = sb, v.stride[2] = sc, v.stride[3] = sd;
  return v;
}

// A pending MPI transfer with its host staging buffer; a receive lands on the device in wait().
class StagedRequest : public Request {
 public:
  StagedRequest(TensorPtr tensor, std::vector<unsigned char> host, bool receive, cudaStream_t stream)
      : tensor_(std::move(tensor)), host_(std::move(host)), receive_(receive), stream_(stream) {}
  ~StagedRequest() override {
    if (!done_) MPI_Wait(&request_, MPI_STATUS_IGNORE);
  }
  MPI_Request* mpi() { return &request_; }
  void* buffer() { return host_.data(); }

  Status wait() override {
    if (done_) return Status::ok();
    done_ = true;
    STRATA_MPI_CALL(MPI_Wait(&request_, MPI_STATUS_IGNORE));
    if (!receive_) return Status::ok();
    STRATA_ASSIGN_OR_RETURN(CudaTensor* t, as_cuda_for_write(*tensor_, "tensor"));
    // The wire carries fp32 for floats: land it in an fp32 buffer, then convert if needed.
    const Elem wire = t->elem() == Elem::i32 ? Elem::i32 : Elem::f32;
    STRATA_ASSIGN_OR_RETURN(auto landing, make_tensor(t->shape(), wire, stream_));
    STRATA_CUDA_CALL(cudaMemcpyAsync(landing->data(), host_.data(), host_.size(), cudaMemcpyHostToDevice, stream_));
    const int64_t n = t->numel();
    const View v = kernels::contiguous(&n, 1);
    STRATA_RETURN_IF_ERROR(kernels::copy_view(t->data(), t->elem(), v, landing->data(), wire, v, stream_));
    STRATA_CUDA_CALL(cudaStreamSynchronize(stream_));
    return Status::ok();
  }

 private:
  TensorPtr tensor_;
  std::vector<unsigned char> host_;
  bool receive_;
  cudaStream_t stream_;
  MPI_Request request_ = MPI_REQUEST_NULL;
  bool done_ = false;
};

// Host staging carries fp32 for floats (MPI has no bf16 sum; fp32 sums are at least as exact as
// NCCL's bf16 ones) and i32 for ids.
Elem wire_elem(Elem e) { return e == Elem::i32 ? Elem::i32 : Elem::f32; }
MPI_Datatype mpi_type(Elem wire) { return wire == Elem::i32 ? MPI_INT : MPI_FLOAT; }

// MPI counts are ints.
Expected<int> mpi_count(int64_t n) {
  if (n > std::numeric_limits<int>::max()) {
    return make_error("", "tensor", std::to_string(n) + " elements exceed one MPI message (2^31 - 1)");
  }
  return static_cast<int>(n);
}

// What both communicators share: the MPI group, point-to-point with host staging, argument checks
// and the host staging of device data.
class StagedCommunicator : public Communicator {
 public:
  StagedCommunicator(MPI_Comm comm, cudaStream_t stream) : comm_(comm), stream_(stream) {}

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  int max_tag() const override { return max_tag_; }

  Expected<std::unique_ptr<Request>> isend(TensorPtr tensor, int peer, int tag) override {
    STRATA_RETURN_IF_ERROR(check_peer(peer, tag));
    STRATA_ASSIGN_OR_RETURN(const CudaTensor* t, as_cuda(*tensor, "tensor"));
    const int64_t n = t->numel();
    STRATA_ASSIGN_OR_RETURN(const int bytes, mpi_count(n * 4));
    STRATA_ASSIGN_OR_RETURN(auto host, to_host(t->data(), t->elem(), n));
    auto request = std::make_unique<StagedRequest>(tensor, std::move(host), false, stream_);
    STRATA_MPI_CALL(MPI_Isend(request->buffer(), bytes, MPI_BYTE, peer, tag, comm_, request->mpi()));
    return std::unique_ptr<Request>(std::move(request));
  }

  Expected<std::unique_ptr<Request>> irecv(TensorPtr tensor, int peer, int tag) override {
    STRATA_RETURN_IF_ERROR(check_peer(peer, tag));
    STRATA_ASSIGN_OR_RETURN(const CudaTensor* t, as_cuda(*tensor, "tensor"));
    const int64_t n = t->numel();
    STRATA_ASSIGN_OR_RETURN(const int bytes, mpi_count(n * 4));
    auto request = std::make_unique<StagedRequest>(tensor, std::vector<unsigned char>(static_cast<size_t>(n * 4)),
                                                   true, stream_);
    STRATA_MPI_CALL(MPI_Irecv(request->buffer(), bytes, MPI_BYTE, peer, tag, comm_, request->mpi()));
    return std::unique_ptr<Request>(std::move(request));
  }

 protected:
  Status init_group() {
    STRATA_MPI_CALL(MPI_Comm_rank(comm_, &rank_));
    STRATA_MPI_CALL(MPI_Comm_size(comm_, &size_));
    void* value = nullptr;
    int flag = 0;
    STRATA_MPI_CALL(MPI_Comm_get_attr(comm_, MPI_TAG_UB, &value, &flag));
    max_tag_ = flag != 0 ? *static_cast<int*>(value) : 32767;
    return Status::ok();
  }

  Status check_dim(const ir::Shape& shape, int dim, int divisor, const char* field) const {
    if (dim < 0 || dim >= static_cast<int>(shape.size())) {
      return make_error("", field, std::to_string(dim) + " is not a dim of " + ir::shape_string(shape));
    }
    if (shape[dim] % divisor != 0) {
      return make_error("", field, "size " + std::to_string(shape[dim]) + " of dim " + std::to_string(dim) +
                                       " is not divisible by the group size " + std::to_string(divisor));
    }
    return Status::ok();
  }

  Status check_peer(int peer, int tag) const {
    if (peer < 0 || peer >= size_) return make_error("", "peer", std::to_string(peer) + " is not a rank of the group");
    if (tag < 0 || tag > max_tag_) return make_error("", "tag", std::to_string(tag) + " outside [0, max_tag]");
    return Status::ok();
  }

  // The tensor's data with the size() blocks along `dim` made outermost ([size, pre, b, post]);
  // the second member keeps a permuted copy alive (null when the data is already in that order).
  Expected<std::pair<const void*, std::shared_ptr<CudaTensor>>> blocks_first(const CudaTensor& t, int dim) {
    const Around a(t.shape(), dim);
    if (a.pre == 1 || size_ == 1) return std::make_pair(static_cast<const void*>(t.data()), std::shared_ptr<CudaTensor>());
    const int64_t b = a.n / size_;
    STRATA_ASSIGN_OR_RETURN(auto copy, make_tensor(t.shape(), t.elem(), stream_));
    const View src = view4(size_, a.pre, b, a.post, b * a.post, a.n * a.post, a.post, 1);
    const View dst = view4(size_, a.pre, b, a.post, a.pre * b * a.post, b * a.post, a.post, 1);
    STRATA_RETURN_IF_ERROR(kernels::copy_view(copy->data(), t.elem(), dst, t.data(), t.elem(), src, stream_));
    const void* data = copy->data();
    return std::make_pair(data, std::move(copy));
  }

  // n contiguous elements of `data` as wire elements in host memory, once the work queued on the
  // stream before has finished.
  Expected<std::vector<unsigned char>> to_host(const void* data, Elem elem, int64_t n) {
    const Elem wire = wire_elem(elem);
    std::vector<unsigned char> host(static_cast<size_t>(n * elem_bytes(wire)));
    if (n == 0) return host;
    const void* src = data;
    std::shared_ptr<CudaTensor> staged;
    if (elem != wire) {
      STRATA_ASSIGN_OR_RETURN(staged, make_tensor(ir::Shape{n}, wire, stream_));
      const View v = kernels::contiguous(&n, 1);
      STRATA_RETURN_IF_ERROR(kernels::copy_view(staged->data(), wire, v, data, elem, v, stream_));
      src = staged->data();
    }
    STRATA_CUDA_CALL(cudaMemcpyAsync(host.data(), src, host.size(), cudaMemcpyDeviceToHost, stream_));
    STRATA_CUDA_CALL(cudaStreamSynchronize(stream_));
    return host;
  }

  // Host wire elements onto the device as a contiguous tensor of `shape`; the host buffer may go
  // once this returns.
  Expected<std::shared_ptr<CudaTensor>> from_host(const std::vector<unsigned char>& host, const ir::Shape& shape,
                                                  Elem wire) {
    STRATA_ASSIGN_OR_RETURN(auto t, make_tensor(shape, wire, stream_));
    if (host.empty()) return t;
    STRATA_CUDA_CALL(cudaMemcpyAsync(t->data(), host.data(), host.size(), cudaMemcpyHostToDevice, stream_));
    STRATA_CUDA_CALL(cudaStreamSynchronize(stream_));
    return t;
  }

  MPI_Comm comm_;
  cudaStream_t stream_;
  int rank_ = 0, size_ = 1, max_tag_ = 32767;
};

// An all-reduce running on the communication stream: wait() makes the compute stream wait for
// its done event (no host block). Dropped without wait(), it still orders the compute stream after
// the all-reduce, so that the tensor's stream-ordered free cannot come first.
class NcclAllReduceRequest : public Request {
 public:
  NcclAllReduceRequest(TensorPtr tensor, cudaEvent_t done, cudaStream_t compute)
      : tensor_(std::move(tensor)), done_(done), compute_(compute) {}
  ~NcclAllReduceRequest() override {
    if (!waited_) cudaStreamWaitEvent(compute_, done_, 0);
    cudaEventDestroy(done_);
  }
  Status wait() override {
    if (waited_) return Status::ok();
    waited_ = true;
    STRATA_CUDA_CALL(cudaStreamWaitEvent(compute_, done_, 0));
    return Status::ok();
  }

 private:
  TensorPtr tensor_;
  cudaEvent_t done_;
  cudaStream_t compute_;
  bool waited_ = false;
};

class NcclCommunicator : public StagedCommunicator {
 public:
  using StagedCommunicator::StagedCommunicator;
  ~NcclCommunicator() override {
    if (async_nccl_ != nullptr) ncclCommDestroy(async_nccl_);
    if (comm_stream_ != nullptr) cudaStreamDestroy(comm_stream_);
    if (nccl_ != nullptr) ncclCommDestroy(nccl_);
  }

  Status init() {
    STRATA_RETURN_IF_ERROR(init_group());
    STRATA_RETURN_IF_ERROR(check_one_rank_per_gpu());
    ncclUniqueId id;
    if (rank_ == 0) STRATA_NCCL_CALL(ncclGetUniqueId(&id));
    STRATA_MPI_CALL(MPI_Bcast(&id, sizeof(id), MPI_BYTE, 0, comm_));
    STRATA_NCCL_CALL(ncclCommInitRank(&nccl_, size_, id, rank_));
    return Status::ok();
  }

  Status all_reduce(DeviceTensor& tensor) override {
    STRATA_ASSIGN_OR_RETURN(CudaTensor* t, as_cuda_for_write(tensor, "tensor"));
    STRATA_NCCL_CALL(ncclAllReduce(t->data(), t->data(), static_cast<size_t>(t->numel()), nccl_type(t->elem()),
                                   ncclSum, nccl_, stream_));
    return Status::ok();
  }

  // The all-reduce on comm_stream_ through async_nccl_, a second NCCL communicator over the same
  // ranks: NCCL wants every rank to issue one communicator's operations in one order, and the
  // blocking collectives the compute stream queues meanwhile (resharding inside the backward) stay
  // on nccl_ in their own order. comm_stream_ starts after the work queued on the compute stream
  // so far (the tensor's producer), the compute stream waits for the result at wait().
  Expected<std::unique_ptr<Request>> all_reduce_async(TensorPtr tensor) override {
    STRATA_ASSIGN_OR_RETURN(CudaTensor* t, as_cuda_for_write(*tensor, "tensor"));
    STRATA_RETURN_IF_ERROR(init_async());
    cudaEvent_t ready = nullptr, done = nullptr;
    STRATA_CUDA_CALL(cudaEventCreateWithFlags(&ready, cudaEventDisableTiming));
    const cudaError_t created = cudaEventCreateWithFlags(&done, cudaEventDisableTiming);
    if (created != cudaSuccess) {
      cudaEventDestroy(ready);
      STRATA_CUDA_CALL(created);
    }
    auto request = std::make_unique<NcclAllReduceRequest>(tensor, done, stream_);
    const cudaError_t recorded = cudaEventRecord(ready, stream_);
    const cudaError_t waited = recorded == cudaSuccess ? cudaStreamWaitEvent(comm_stream_, ready, 0) : recorded;
    cudaEventDestroy(ready);  // released once the recorded work completes
    STRATA_CUDA_CALL(waited);
    STRATA_NCCL_CALL(ncclAllReduce(t->data(), t->data(), static_cast<size_t>(t->numel()), nccl_type(t->elem()), ncclSum,
                                   async_nccl_, comm_stream_));
    STRATA_CUDA_CALL(cudaEventRecord(done, comm_stream_));
    return std::unique_ptr<Request>(std::move(request));
  }

  Expected<TensorPtr> all_gather(const DeviceTensor& tensor, int dim) override {
    STRATA_ASSIGN_OR_RETURN(const CudaTensor* t, as_cuda(tensor, "tensor"));
    STRATA_RETURN_IF_ERROR(check_dim(t->shape(), dim, 1, "dim"));
    ir::Shape out_shape = t->shape();
    out_shape[dim] *= size_;
    STRATA_ASSIGN_OR_RETURN(auto gathered, make_tensor(out_shape, t->elem(), stream_));
    STRATA_NCCL_CALL(ncclAllGather(t->data(), gathered->data(), static_cast<size_t>(t->numel()),
                                   nccl_type(t->elem()), nccl_, stream_));
    if (dim == 0 || size_ == 1) return TensorPtr(std::move(gathered));
    // gathered is [size, pre, n, post]; the result is [pre, size, n, post].
    const Around a(t->shape(), dim);
    STRATA_ASSIGN_OR_RETURN(auto out, make_tensor(out_shape, t->elem(), stream_));
    const View src = view4(a.pre, size_, a.n, a.post, a.n * a.post, a.pre * a.n * a.post, a.post, 1);
    const View dst = view4(a.pre, size_, a.n, a.post, size_ * a.n * a.post, a.n * a.post, a.post, 1);
    STRATA_RETURN_IF_ERROR(kernels::copy_view(out->data(), out->elem(), dst, gathered->data(), t->elem(), src, stream_));
    return TensorPtr(std::move(out));
  }

  Expected<TensorPtr> reduce_scatter(const DeviceTensor& tensor, int dim) override {
    STRATA_ASSIGN_OR_RETURN(const CudaTensor* t, as_cuda(tensor, "tensor"));
    STRATA_RETURN_IF_ERROR(check_dim(t->shape(), dim, size_, "dim"));
    STRATA_ASSIGN_OR_RETURN(auto blocks, blocks_first(*t, dim));
    ir::Shape out_shape = t->shape();
    out_shape[dim] /= size_;
    STRATA_ASSIGN_OR_RETURN(auto out, make_tensor(out_shape, t->elem(), stream_));
    STRATA_NCCL_CALL(ncclReduceScatter(blocks.first, out->data(), static_cast<size_t>(out->numel()),
                                       nccl_type(t->elem()), ncclSum, nccl_, stream_));
    return TensorPtr(std::move(out));
  }

  Expected<TensorPtr> all_to_all(const DeviceTensor& tensor, int split_dim, int concat_dim) override {
    STRATA_ASSIGN_OR_RETURN(const CudaTensor* t, as_cuda(tensor, "tensor"));
    STRATA_RETURN_IF_ERROR(check_dim(t->shape(), split_dim, size_, "split_dim"));
    STRATA_RETURN_IF_ERROR(check_dim(t->shape(), concat_dim, 1, "concat_dim"));
    STRATA_ASSIGN_OR_RETURN(auto blocks, blocks_first(*t, split_dim));
    ir::Shape block_shape = t->shape();
    block_shape[split_dim] /= size_;
    int64_t block = 1;
    for (int64_t s : block_shape) block *= s;
    ir::Shape recv_shape = block_shape;
    recv_shape.insert(recv_shape.begin(), size_);
    STRATA_ASSIGN_OR_RETURN(auto recv, make_tensor(recv_shape, t->elem(), stream_));
    const size_t block_bytes = static_cast<size_t>(block * elem_bytes(t->elem()));
    STRATA_NCCL_CALL(ncclGroupStart());
    for (int r = 0; r < size_; ++r) {
      STRATA_NCCL_CALL(ncclSend(static_cast<const char*>(blocks.first) + r * block_bytes, static_cast<size_t>(block),
                                nccl_type(t->elem()), r, nccl_, stream_));
      STRATA_NCCL_CALL(ncclRecv(static_cast<char*>(recv->data()) + r * block_bytes, static_cast<size_t>(block),
                                nccl_type(t->elem()), r, nccl_, stream_));
    }
    STRATA_NCCL_CALL(ncclGroupEnd());
    // recv is [size, pre, n, post] around concat_dim; the result is [pre, size, n, post].
    ir::Shape out_shape = block_shape;
    out_shape[concat_dim] *= size_;
    const Around a(block_shape, concat_dim);
    STRATA_ASSIGN_OR_RETURN(auto out, make_tensor(out_shape, t->elem(), stream_));
    const View src = view4(a.pre, size_, a.n, a.post, a.n * a.post, a.pre * a.n * a.post, a.post, 1);
    const View dst = view4(a.pre, size_, a.n, a.post, size_ * a.n * a.post, a.n * a.post, a.post, 1);
    STRATA_RETURN_IF_ERROR(kernels::copy_view(out->data(), out->elem(), dst, recv->data(), t->elem(), src, stream_));
    return TensorPtr(std::move(out));
  }

 private:
  // The second communicator and its stream, made at the first all_reduce_async. Collective over
  // the group: every rank reaches its first all_reduce_async at the same point of the same program
  // (the executor issues them in one order on all ranks), so all of them make it together.
  Status init_async() {
    if (async_nccl_ != nullptr) return Status::ok();
    if (comm_stream_ == nullptr) STRATA_CUDA_CALL(cudaStreamCreateWithFlags(&comm_stream_, cudaStreamNonBlocking));
    ncclUniqueId id;
    if (rank_ == 0) STRATA_NCCL_CALL(ncclGetUniqueId(&id));
    STRATA_MPI_CALL(MPI_Bcast(&id, sizeof(id), MPI_BYTE, 0, comm_));
    STRATA_NCCL_CALL(ncclCommInitRank(&async_nccl_, size_, id, rank_));
    return Status::ok();
  }

  // NCCL refuses two ranks of one communicator on one GPU ("Duplicate GPU detected") with an
  // error that names neither the cause nor the way out; the devices' UUIDs, gathered over MPI,
  // let every rank say both before NCCL is asked.
  Status check_one_rank_per_gpu() {
    int device = 0;
    STRATA_CUDA_CALL(cudaGetDevice(&device));
    cudaDeviceProp prop;
    STRATA_CUDA_CALL(cudaGetDeviceProperties(&prop, device));
    constexpr int kUuidBytes = sizeof(prop.uuid.bytes);
    std::vector<char> uuids(static_cast<size_t>(kUuidBytes * size_));
    STRATA_MPI_CALL(MPI_Allgather(prop.uuid.bytes, kUuidBytes, MPI_BYTE, uuids.data(), kUuidBytes, MPI_BYTE, comm_));
    std::vector<std::string> ids;
    for (int r = 0; r < size_; ++r) ids.emplace_back(uuids.data() + r * kUuidBytes, kUuidBytes);
    return check_distinct_devices(ids);
  }

  ncclComm_t nccl_ = nullptr;
  ncclComm_t async_nccl_ = nullptr;
  cudaStream_t comm_stream_ = nullptr;
};

// The same collectives as NcclCommunicator, each one a host round trip: the operand is copied to
// host memory after the work queued before it, combined by the MPI collective, and copied back
// before the work queued after it. Slower than NCCL, but any number of ranks may share a GPU.
// all_reduce_async keeps the blocking default (Communicator): the host round trip synchronises the
// compute stream to copy the operand out anyway, the ranks it serves share one GPU (nothing to
// overlap with on another device), and MPI progresses a non-blocking collective only inside MPI
// calls, so starting one here would mostly move the same work to wait().
class MpiCommunicator : public StagedCommunicator {
 public:
  using StagedCommunicator::StagedCommunicator;
  Status init() { return init_group(); }

  Status all_reduce(DeviceTensor& tensor) override {
    STRATA_ASSIGN_OR_RETURN(CudaTensor* t, as_cuda_for_write(tensor, "tensor"));
    const int64_t n = t->numel();
    STRATA_ASSIGN_OR_RETURN(const int count, mpi_count(n));
    const Elem wire = wire_elem(t->elem());
    STRATA_ASSIGN_OR_RETURN(auto host, to_host(t->data(), t->elem(), n));
    STRATA_MPI_CALL(MPI_Allreduce(MPI_IN_PLACE, host.data(), count, mpi_type(wire), MPI_SUM, comm_));
    STRATA_ASSIGN_OR_RETURN(auto summed, from_host(host, t->shape(), wire));
    const View v = kernels::contiguous(&n, 1);
    return kernels::copy_view(t->data(), t->elem(), v, summed->data(), wire, v, stream_);
  }

  Expected<TensorPtr> all_gather(const DeviceTensor& tensor, int dim) override {
    STRATA_ASSIGN_OR_RETURN(const CudaTensor* t, as_cuda(tensor, "tensor"));
    STRATA_RETURN_IF_ERROR(check_dim(t->shape(), dim, 1, "dim"));
    const int64_t n = t->numel();
    STRATA_ASSIGN_OR_RETURN(const int count, mpi_count(n));
    const Elem wire = wire_elem(t->elem());
    STRATA_ASSIGN_OR_RETURN(auto host, to_host(t->data(), t->elem(), n));
    std::vector<unsigned char> all(host.size() * static_cast<size_t>(size_));
    STRATA_MPI_CALL(MPI_Allgather(host.data(), count, mpi_type(wire), all.data(), count, mpi_type(wire), comm_));
    ir::Shape gathered_shape = t->shape();
    gathered_shape.insert(gathered_shape.begin(), size_);
    STRATA_ASSIGN_OR_RETURN(auto gathered, from_host(all, gathered_shape, wire));
    // gathered is [size, pre, n, post]; the result is [pre, size, n, post] (in the tensor's elem).
    ir::Shape out_shape = t->shape();
    out_shape[dim] *= size_;
    const Around a(t->shape(), dim);
    STRATA_ASSIGN_OR_RETURN(auto out, make_tensor(out_shape, t->elem(), stream_));
    const View src = view4(a.pre, size_, a.n, a.post, a.n * a.post, a.pre * a.n * a.post, a.post, 1);
    const View dst = view4(a.pre, size_, a.n, a.post, size_ * a.n * a.post, a.n * a.post, a.post, 1);
    STRATA_RETURN_IF_ERROR(kernels::copy_view(out->data(), out->elem(), dst, gathered->data(), wire, src, stream_));
    return TensorPtr(std::move(out));
  }

  Expected<TensorPtr> reduce_scatter(const DeviceTensor& tensor, int dim) override {
    STRATA_ASSIGN_OR_RETURN(const CudaTensor* t, as_cuda(tensor, "tensor"));
    STRATA_RETURN_IF_ERROR(check_dim(t->shape(), dim, size_, "dim"));
    STRATA_ASSIGN_OR_RETURN(auto blocks, blocks_first(*t, dim));
    const int64_t n = t->numel(), block = n / size_;
    STRATA_ASSIGN_OR_RETURN(const int count, mpi_count(block));
    const Elem wire = wire_elem(t->elem());
    STRATA_ASSIGN_OR_RETURN(auto host, to_host(blocks.first, t->elem(), n));
    std::vector<unsigned char> mine(static_cast<size_t>(block * elem_bytes(wire)));
    STRATA_MPI_CALL(MPI_Reduce_scatter_block(host.data(), mine.data(), count, mpi_type(wire), MPI_SUM, comm_));
    ir::Shape out_shape = t->shape();
    out_shape[dim] /= size_;
    STRATA_ASSIGN_OR_RETURN(auto summed, from_host(mine, out_shape, wire));
    STRATA_ASSIGN_OR_RETURN(auto out, make_tensor(out_shape, t->elem(), stream_));
    const View v = kernels::contiguous(&block, 1);
    STRATA_RETURN_IF_ERROR(kernels::copy_view(out->data(), out->elem(), v, summed->data(), wire, v, stream_));
    return TensorPtr(std::move(out));
  }

  Expected<TensorPtr> all_to_all(const DeviceTensor& tensor, int split_dim, int concat_dim) override {
    STRATA_ASSIGN_OR_RETURN(const CudaTensor* t, as_cuda(tensor, "tensor"));
    STRATA_RETURN_IF_ERROR(check_dim(t->shape(), split_dim, size_, "split_dim"));
    STRATA_RETURN_IF_ERROR(check_dim(t->shape(), concat_dim, 1, "concat_dim"));
    STRATA_ASSIGN_OR_RETURN(auto blocks, blocks_first(*t, split_dim));
    const int64_t n = t->numel();
    STRATA_ASSIGN_OR_RETURN(const int count, mpi_count(n / size_));
    const Elem wire = wire_elem(t->elem());
    STRATA_ASSIGN_OR_RETURN(auto host, to_host(blocks.first, t->elem(), n));
    std::vector<unsigned char> received(host.size());
    STRATA_MPI_CALL(MPI_Alltoall(host.data(), count, mpi_type(wire), received.data(), count, mpi_type(wire), comm_));
    ir::Shape block_shape = t->shape();
    block_shape[split_dim] /= size_;
    ir::Shape recv_shape = block_shape;
    recv_shape.insert(recv_shape.begin(), size_);
    STRATA_ASSIGN_OR_RETURN(auto recv, from_host(received, recv_shape, wire));
    // recv is [size, pre, n, post] around concat_dim; the result is [pre, size, n, post].
    ir::Shape out_shape = block_shape;
    out_shape[concat_dim] *= size_;
    const Around a(block_shape, concat_dim);
    STRATA_ASSIGN_OR_RETURN(auto out, make_tensor(out_shape, t->elem(), stream_));
    const View src = view4(a.pre, size_, a.n, a.post, a.n * a.post, a.pre * a.n * a.post, a.post, 1);
    const View dst = view4(a.pre, size_, a.n, a.post, size_ * a.n * a.post, a.n * a.post, a.post, 1);
    STRATA_RETURN_IF_ERROR(kernels::copy_view(out->data(), out->elem(), dst, recv->data(), wire, src, stream_));
    return TensorPtr(std::move(out));
  }
};

}  // namespace

Expected<std::unique_ptr<Communicator>> make_nccl_communicator(MPI_Comm comm, cudaStream_t stream) {
  auto c = std::make_unique<NcclCommunicator>(comm, stream);
  STRATA_RETURN_IF_ERROR(c->init());
  return std::unique_ptr<Communicator>(std::move(c));
}

Expected<std::unique_ptr<Communicator>> make_mpi_communicator(MPI_Comm comm, cudaStream_t stream) {
  auto c = std::make_unique<MpiCommunicator>(comm, stream);
  STRATA_RETURN_IF_ERROR(c->init());
  return std::unique_ptr<Communicator>(std::move(c));
}

Expected<std::unique_ptr<Communicator>> make_communicator(MPI_Comm comm, cudaStream_t stream, Collectives collectives) {
  if (collectives == Collectives::mpi) return make_mpi_communicator(comm, stream);
  return make_nccl_communicator(comm, stream);
}

}  // namespace strata::runtime::cuda
