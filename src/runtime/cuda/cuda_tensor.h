// Internal to the cuda backend: the device tensor (stream-ordered allocation on the backend's
// stream) and the communicator factory the backend calls.
#pragma once

#include <cuda_runtime.h>

#include <memory>
#include <optional>
#include <vector>

#include "cuda_common.h"
#include "kernels.h"
#include "strata/runtime/backend.h"
#include "strata/runtime/cuda_backend.h"

namespace strata::runtime::cuda {

struct DeferredDot;  // dot.h

// Device memory (stream-ordered), shared by a tensor and its reshaped views.
struct Storage {
  Storage(int64_t bytes, cudaStream_t stream);
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;
  void* data = nullptr;
  int64_t bytes = 0;
  cudaStream_t stream = nullptr;
  cudaError_t status = cudaSuccess;
  // A bf16 copy of these fp32 values (made by CudaTensor::bf16_copy, or written by the AdamUpdate
  // kernel in the pass that wrote the values): one for every view of the bytes, dropped by an
  // in-place write.
  std::shared_ptr<Storage> bf16;
};

// Consecutive AdamUpdates the backend collected to run in a few launches (kernels::adam_batch).
// Their outputs are allocated but not written until run(): resolve() of any of them, or the
// backend before its next op of another kind. `keep` holds the inputs' and outputs' storage until
// the launch (their stream-ordered frees would otherwise come before it), so the backend launches
// a batch once it holds kAdamBatchValues parameters: the old and new state of at most that many
// values are alive at once, not of the whole model.
struct AdamBatch {
  static constexpr int64_t kAdamBatchValues = int64_t{1} << 26;
  kernels::AdamParams params{};
  std::vector<kernels::AdamTensor> tensors;
  int64_t values = 0;
  std::vector<std::shared_ptr<Storage>> keep;
  cudaStream_t stream = nullptr;
  bool ran = false;
  Status run();
};

class CudaTensor : public DeviceTensor {
 public:
  // Allocates numel * elem bytes on `stream` (uninitialised); check data() != nullptr.
  CudaTensor(ir::TensorType type, Elem elem, cudaStream_t stream);
  // A view of `storage` (a Reshape: same bytes, another shape).
  CudaTensor(ir::TensorType type, Elem elem, std::shared_ptr<Storage> storage);
  // A row view of `storage`: element i at offset + (i / width) * pitch + i % width (elements), so
  // that a Reshape keeps it. A Slice of one dim of a token row (q of qkv [B, S, 3, N, D]) and
  // AttentionGrad's dq, dk, dv in one buffer, whose Concat is then that buffer. Attention reads it
  // in place; every other reader goes through resolve(), which copies it into contiguous storage.
  struct RowView {
    int64_t offset = 0, width = 0, pitch = 0;
  };
  CudaTensor(ir::TensorType type, Elem elem, std::shared_ptr<Storage> storage, RowView view);

  Elem elem() const { return elem_; }
  void* data() const { return storage_->data; }
  const RowView* row_view() const { return row_view_ ? &*row_view_ : nullptr; }
  // The first element: data() plus a row view's offset.
  void* first() const {
    return static_cast<char*>(storage_->data) + (row_view_ ? row_view_->offset * elem_bytes(elem_) : 0);
  }
  int64_t bytes() const { return numel() * elem_bytes(elem_); }
  cudaError_t status() const { return storage_->status; }
  const std::shared_ptr<Storage>& storage() const { return storage_; }
  // Before an in-place write: a private copy of the storage when a view shares it (copy on write).
  // An in-place write also drops the storage's bf16 copy.
  Status own_storage();
  // A bf16 copy of this fp32 tensor (a weight read by a forward and a backward GEMM), made on first
  // use on `stream` unless the op that wrote the tensor also wrote it (adopt_bf16_copy), and kept
  // until the storage dies or is written in place.
  Expected<const void*> bf16_copy(cudaStream_t stream) const;
  // Takes `copy` (numel() bf16 values, the rounded contents of this fp32 tensor) as the bf16 copy.
  void adopt_bf16_copy(std::shared_ptr<Storage> copy) { storage_->bf16 = std::move(copy); }
  // The bf16 copy if one is held (tests), else nullptr.
  const void* held_bf16_copy() const { return storage_->bf16 ? storage_->bf16->data : nullptr; }

  // A deferred Add (fuse_for_cuda marks the mask Add whose only user is a Softmax): the value is
  // storage + bias, the bias read through `view` (its broadcast strides over this tensor's shape).
  // The Softmax reads both (kernels::softmax_bias); every other reader goes through as_cuda, which
  // computes the sum into storage of its own first (resolve).
  struct PendingBias {
    std::shared_ptr<Storage> storage;
    Elem elem;
    View view;
  };
  void defer_bias(PendingBias bias) { pending_ = std::make_shared<PendingBias>(std::move(bias)); }
  const PendingBias* pending_bias() const { return pending_.get(); }
  // A Dot that run_op deferred (fuse_for_cuda marked it; see DeferredDot in dot.h): the storage is
  // allocated but not written until resolve() runs the GEMM. The bias Add and the Gelu after it
  // read it as it is and run the GEMM with their epilogue.
  void defer_dot(std::shared_ptr<DeferredDot> dot) { deferred_dot_ = std::move(dot); }
  const DeferredDot* deferred_dot() const { return deferred_dot_.get(); }
  void drop_deferred_dot() const { deferred_dot_.reset(); }  // the caller wrote the bytes itself
  // An output of an AdamBatch not run yet.
  void defer_adam(std::shared_ptr<AdamBatch> batch) { adam_ = std::move(batch); }
  bool pending() const {
    return pending_ != nullptr || deferred_dot_ != nullptr || adam_ != nullptr || row_view_.has_value();
  }
  // Writes storage + bias into fresh storage and drops the bias, runs a deferred Dot into the
  // storage, or the AdamBatch that writes it, or copies a row view into storage of its own (a
  // no-op when nothing is pending). The value stays the same, so this is const.
  Status resolve() const;

 private:
  Elem elem_;
  mutable std::shared_ptr<Storage> storage_;
  mutable std::shared_ptr<PendingBias> pending_;
  mutable std::shared_ptr<DeferredDot> deferred_dot_;
  mutable std::shared_ptr<AdamBatch> adam_;
  mutable std::optional<RowView> row_view_;
};

// A zero-filled or uninitialised tensor of `shape` in `elem` (the IR dtype follows from elem).
Expected<std::shared_ptr<CudaTensor>> make_tensor(const ir::Shape& shape, Elem elem, cudaStream_t stream,
                                                  bool zero = false);
// The CudaTensor behind a DeviceTensor made by this backend; an Error for a foreign tensor. A
// deferred Add is resolved first unless `keep_pending` (the Softmax that reads it fused).
Expected<const CudaTensor*> as_cuda(const DeviceTensor& tensor, const std::string& field, bool keep_pending = false);
// The same for a tensor about to be written in place: its storage is made private first.
Expected<CudaTensor*> as_cuda_for_write(DeviceTensor& tensor, const std::string& field);

// NCCL collectives over `comm` (unique id broadcast over MPI); point-to-point through MPI with
// host staging, so that tags are honoured and sends never wait on the receiver's stream.
// Refuses two ranks on one GPU with a one-line Error that names --collectives mpi.
Expected<std::unique_ptr<Communicator>> make_nccl_communicator(MPI_Comm comm, cudaStream_t stream);
// Collectives through MPI with host staging, in stream order (CudaOptions::collectives = mpi).
Expected<std::unique_ptr<Communicator>> make_mpi_communicator(MPI_Comm comm, cudaStream_t stream);
// The one `collectives` names.
Expected<std::unique_ptr<Communicator>> make_communicator(MPI_Comm comm, cudaStream_t stream, Collectives collectives);

}  // namespace strata::runtime::cuda
