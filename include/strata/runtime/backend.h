// The executor's seam to devices: device tensors, one op on local tiles, the few tensor helpers
// resharding needs, and collectives over a rank group. Implementations: cpu (src/runtime/
// cpu_backend.cpp: interp kernels, MPI collectives) and cuda (src/runtime/cuda/: cuBLAS, NCCL).
#pragma once

// The MPI C API only: Open MPI's deprecated C++ bindings would need libmpi_cxx.
#ifndef OMPI_SKIP_MPICXX
#define OMPI_SKIP_MPICXX 1
#endif
#include <mpi.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "strata/core/mpi_call.h"
#include "strata/core/status.h"
#include "strata/interp/interp.h"
#include "strata/ir/graph.h"

namespace strata::runtime {

// A dense row-major tensor living on one backend's device. Only the backend that made it reads
// its storage; everyone else sees its type.
class DeviceTensor {
 public:
  explicit DeviceTensor(ir::TensorType type) : type_(std::move(type)) {}
  virtual ~DeviceTensor() = default;
  DeviceTensor(const DeviceTensor&) = delete;
  DeviceTensor& operator=(const DeviceTensor&) = delete;

  const ir::TensorType& type() const { return type_; }
  const ir::Shape& shape() const { return type_.shape; }
  DType dtype() const { return type_.dtype; }
  int64_t numel() const { return type_.numel(); }

 private:
  ir::TensorType type_;
};
using TensorPtr = std::shared_ptr<DeviceTensor>;

// A pending non-blocking transfer; the tensor it reads or writes stays alive until wait().
class Request {
 public:
  virtual ~Request() = default;
  virtual Status wait() = 0;
};

// A request that is done when made (the default non-blocking all-reduce: it ran blocking).
class DoneRequest : public Request {
 public:
  Status wait() override { return Status::ok(); }
};

// Collectives and point-to-point over one rank group (an MPI communicator: a mesh, one axis of a
// mesh, or the world). Ranks are ranks of this group. Every rank of the group must make the same
// collective calls in the same order. Collectives sum in the tensor's dtype.
class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  // In place: every rank ends with the element-wise sum over the group.
  virtual Status all_reduce(DeviceTensor& tensor) = 0;
  // all_reduce started without waiting for it: the tensor is the sum once the request's wait()
  // returned (on a device backend: for the work queued after wait()), and neither read nor written
  // in between. The request keeps the tensor alive. Non-blocking and blocking collectives of one
  // group must still be issued in the same order on every rank. The default runs all_reduce at once.
  virtual Expected<std::unique_ptr<Request>> all_reduce_async(TensorPtr tensor) {
    STRATA_RETURN_IF_ERROR(all_reduce(*tensor));
    return std::unique_ptr<Request>(std::make_unique<DoneRequest>());
  }
  // The group's tensors concatenated along `dim` in rank order (dim grows size() times).
  virtual Expected<TensorPtr> all_gather(const DeviceTensor& tensor, int dim) = 0;
  // The sum over the group, split into size() blocks along `dim`; rank r keeps block r.
  virtual Expected<TensorPtr> reduce_scatter(const DeviceTensor& tensor, int dim) = 0;
  // `tensor` split into size() blocks along `split_dim`, block r sent to rank r; the blocks
  // received are concatenated along `concat_dim` in rank order.
  virtual Expected<TensorPtr> all_to_all(const DeviceTensor& tensor, int split_dim, int concat_dim) = 0;
  // Point-to-point with a message tag (0 .. max_tag()). The receive fills a tensor of the type
  // the caller allocated.
  virtual Expected<std::unique_ptr<Request>> isend(TensorPtr tensor, int peer, int tag) = 0;
  virtual Expected<std::unique_ptr<Request>> irecv(TensorPtr tensor, int peer, int tag) = 0;
  virtual int max_tag() const = 0;
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string name() const = 0;  // "cpu", "cuda"
  // The dtype parameters and activations are stored in on this backend for a float IR dtype.
  virtual DType storage_dtype(DType ir_dtype) const = 0;

  // A zero-filled tensor.
  virtual Expected<TensorPtr> alloc(const ir::TensorType& type) = 0;
  // Host <-> device. upload rounds to `dtype` (integer dtypes hold whole numbers).
  virtual Expected<TensorPtr> upload(const interp::Tensor& host, DType dtype) = 0;
  virtual Expected<interp::Tensor> download(const DeviceTensor& tensor) = 0;

  // Runs one op whose attrs and output types are LOCAL (already partitioned); the outputs are
  // allocated by the backend, one per op.outputs. Errors name the op.
  virtual Expected<std::vector<TensorPtr>> run_op(const ir::Op& op, const std::vector<const DeviceTensor*>& inputs) = 0;

  // dst += src (same shape): gradient accumulation and partial sums.
  virtual Status add_into(DeviceTensor& dst, const DeviceTensor& src) = 0;
  // tensor *= factor, in place.
  virtual Status scale(DeviceTensor& tensor, double factor) = 0;
  // The block [starts, starts + sizes) of `tensor` as a new tensor.
  virtual Expected<TensorPtr> slice(const DeviceTensor& tensor, const std::vector<int64_t>& starts,
                                    const std::vector<int64_t>& sizes) = 0;
  // Writes `block` into `dst` at offset `starts` (the inverse of slice).
  virtual Status insert(DeviceTensor& dst, const DeviceTensor& block, const std::vector<int64_t>& starts) = 0;

  // A communicator over `comm` (the backend may keep its own library's communicator beside it;
  // `comm` must outlive the result).
  virtual Expected<std::unique_ptr<Communicator>> communicator(MPI_Comm comm) = 0;
  // Waits for all queued device work (a no-op on the cpu).
  virtual Status synchronize() = 0;
};

// "cpu" or "cuda"; anything else, or "cuda" in a build without CUDA, is an Error naming the field
// "backend". `local_rank` picks the GPU on a node (ignored by the cpu backend).
Expected<std::unique_ptr<Backend>> make_backend(const std::string& name, int local_rank);

// The cpu backend: interp kernels run in double, outputs rounded to the storage dtype; MPI
// collectives. Tensors hold fp32 values for float dtypes.
std::unique_ptr<Backend> make_cpu_backend();
#ifdef STRATA_HAVE_CUDA
// Defined in src/runtime/cuda/ (helper "cuda").
Expected<std::unique_ptr<Backend>> make_cuda_backend(int local_rank);
#endif

}  // namespace strata::runtime
