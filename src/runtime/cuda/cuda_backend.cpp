// The cuda backend: device tensors on one stream (stream-ordered allocations), one kernel or
// cuBLAS call per IR op, the storage-type policy of mixed precision, and a host fallback through the
// reference interpreter for the op kinds the GPT path does not use (convolutions, pools, MoE gate).
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "cuda_tensor.h"
#include "dot.h"
#include "kernels.h"
#include "strata/runtime/cuda_backend.h"

namespace strata::runtime {
namespace cuda {

Expected<Elem> elem_of(DType dtype) {
  switch (dtype) {
    case DType::f32: return Elem::f32;
    case DType::bf16: return Elem::bf16;
    case DType::i32: return Elem::i32;
    default: return make_error("", "dtype", std::string("no device storage for ") + dtype_name(dtype));
  }
}

DType dtype_of(Elem elem) {
  switch (elem) {
    case Elem::bf16: return DType::bf16;
    case Elem::i32: return DType::i32;
    default: return DType::f32;
  }
}

Storage::Storage(int64_t size, cudaStream_t s) : bytes(size), stream(s) {
  status = cudaMallocAsync(&data, static_cast<size_t>(std::max<int64_t>(bytes, 1)), stream);
  if (status != cudaSuccess) data = nullptr;
}

Storage::~Storage() {
  if (data != nullptr) cudaFreeAsync(data, stream);
}

CudaTensor::CudaTensor(ir::TensorType type, Elem elem, cudaStream_t stream)
    : DeviceTensor(std::move(type)), elem_(elem) {
  storage_ = std::make_shared<Storage>(bytes(), stream);
}

CudaTensor::CudaTensor(ir::TensorType type, Elem elem, std::shared_ptr<Storage> storage)
    : DeviceTensor(std::move(type)), elem_(elem), storage_(std::move(storage)) {
  STRATA_CHECK(storage_->bytes >= bytes(), "CudaTensor: a view larger than its storage");
}

CudaTensor::CudaTensor(ir::TensorType type, Elem elem, std::shared_ptr<Storage> storage, RowView view)
    : CudaTensor(std::move(type), elem, std::move(storage)) {
  const int64_t rows = view.width == 0 ? 0 : numel() / view.width;
  STRATA_CHECK(view.width > 0 && view.pitch >= view.width && numel() % view.width == 0 &&
                   (rows == 0 || (view.offset + (rows - 1) * view.pitch + view.width) * elem_bytes(elem) <= storage_->bytes),
               "CudaTensor: a row view outside its storage");
  row_view_ = view;
}

Status CudaTensor::own_storage() {
  STRATA_RETURN_IF_ERROR(resolve());
  if (storage_.use_count() == 1) {
    storage_->bf16.reset();
    return Status::ok();
  }
  auto copy = std::make_shared<Storage>(storage_->bytes, storage_->stream);
  if (copy->data == nullptr) {
    return make_error("", "", std::string("device allocation for a copy on write failed: ") +
                                  cudaGetErrorString(copy->status));
  }
  STRATA_CUDA_CALL(cudaMemcpyAsync(copy->data, storage_->data, static_cast<size_t>(storage_->bytes),
                                   cudaMemcpyDeviceToDevice, storage_->stream));
  storage_ = std::move(copy);
  return Status::ok();
}

Status AdamBatch::run() {
  if (ran) return Status::ok();
  ran = true;
  Status status = kernels::adam_batch(params, tensors.data(), static_cast<int64_t>(tensors.size()), stream);
  tensors.clear();
  keep.clear();  // the frees are stream-ordered after the launch
  return status;
}

Status CudaTensor::resolve() const {
  if (row_view_) {
    auto own = std::make_shared<Storage>(bytes(), storage_->stream);
    if (own->data == nullptr) {
      return make_error("", "", std::string("device allocation for a row view's copy failed: ") +
                                    cudaGetErrorString(own->status));
    }
    const int64_t shape[2] = {numel() / row_view_->width, row_view_->width};
    View rows = kernels::contiguous(shape, 2);
    rows.stride[0] = row_view_->pitch;
    rows.offset = row_view_->offset;
    STRATA_RETURN_IF_ERROR(kernels::copy_view(own->data, elem_, kernels::contiguous(shape, 2), storage_->data, elem_,
                                              rows, storage_->stream));
    storage_ = std::move(own);
    row_view_.reset();
    return Status::ok();  // a row view has nothing else pending
  }
  if (adam_ != nullptr) {
    const std::shared_ptr<AdamBatch> batch = std::move(adam_);
    adam_.reset();
    STRATA_RETURN_IF_ERROR(batch->run());
  }
  if (deferred_dot_ != nullptr) {
    const std::shared_ptr<DeferredDot> dot = std::move(deferred_dot_);
    deferred_dot_.reset();
    auto ran = run_deferred_dot(*dot, storage_->data, elem_);
    if (!ran.is_ok()) return ran.error();
  }
  if (pending_ == nullptr) return Status::ok();
  auto sum = std::make_shared<Storage>(bytes(), storage_->stream);
  if (sum->data == nullptr) {
    return make_error("", "", std::string("device allocation for a deferred Add failed: ") +
                                  cudaGetErrorString(sum->status));
  }
  const View own = kernels::contiguous(shape().data(), static_cast<int32_t>(shape().size()));
  STRATA_RETURN_IF_ERROR(kernels::binary(kernels::Binary::add, storage_->data, elem_, own, pending_->storage->data,
                                         pending_->elem, pending_->view, sum->data, elem_, storage_->stream));
  storage_ = std::move(sum);
  pending_.reset();
  return Status::ok();
}

Expected<const void*> CudaTensor::bf16_copy(cudaStream_t stream) const {
  STRATA_CHECK(elem_ == Elem::f32, "bf16_copy of a tensor that is not fp32");
  if (storage_->bf16 == nullptr) {
    auto copy = std::make_shared<Storage>(numel() * 2, stream);
    if (copy->data == nullptr) {
      return make_error("", "", std::string("device allocation for a bf16 copy failed: ") +
                                    cudaGetErrorString(copy->status));
    }
    const int64_t n = numel();
    const View v = kernels::contiguous(&n, 1);
    STRATA_RETURN_IF_ERROR(kernels::copy_view(copy->data, Elem::bf16, v, data(), Elem::f32, v, stream));
    storage_->bf16 = std::move(copy);
  }
  return static_cast<const void*>(storage_->bf16->data);
}

Expected<std::shared_ptr<CudaTensor>> make_tensor(const ir::Shape& shape, Elem elem, cudaStream_t stream, bool zero) {
  auto t = std::make_shared<CudaTensor>(ir::TensorType{shape, dtype_of(elem)}, elem, stream);
  if (t->data() == nullptr) {
    return make_error("", "", "device allocation of " + std::to_string(t->bytes()) +
                                  " bytes failed: " + cudaGetErrorString(t->status()));
  }
  if (zero) STRATA_CUDA_CALL(cudaMemsetAsync(t->data(), 0, static_cast<size_t>(t->bytes()), stream));
  return t;
}

Expected<const CudaTensor*> as_cuda(const DeviceTensor& tensor, const std::string& field, bool keep_pending) {
  const auto* t = dynamic_cast<const CudaTensor*>(&tensor);
  if (t == nullptr) return make_error("", field, "tensor was not made by the cuda backend");
  if (!keep_pending) {
    Status resolved = t->resolve();
    if (!resolved.is_ok()) return resolved.error().under(field);
  }
  return t;
}

Expected<CudaTensor*> as_cuda_for_write(DeviceTensor& tensor, const std::string& field) {
  auto* t = dynamic_cast<CudaTensor*>(&tensor);
  if (t == nullptr) return make_error("", field, "tensor was not made by the cuda backend");
  STRATA_RETURN_IF_ERROR(t->own_storage());
  return t;
}

namespace {

using ir::OpKind;

// Numpy broadcast strides of `in` seen from `out` (aligned at the right; size-1 dims repeat).
View broadcast_view(const ir::Shape& in, const ir::Shape& out) {
  View v;
  v.rank = static_cast<int32_t>(out.size());
  std::vector<int64_t> own(in.size(), 1);
  for (int64_t i = static_cast<int64_t>(in.size()) - 2; i >= 0; --i) own[i] = own[i + 1] * in[i + 1];
  const size_t offset = out.size() - in.size();
  for (size_t i = 0; i < out.size(); ++i) {
    v.shape[i] = out[i];
    v.stride[i] = i < offset || in[i - offset] == 1 ? 0 : own[i - offset];
  }
  return v;
}

int64_t norm_axis(int64_t axis, int64_t rank) { return axis < 0 ? axis + rank : axis; }

std::vector<int64_t> ints_attr(const ir::Op& op, const char* key) {
  if (!op.attrs.has(key)) return {};
  auto v = op.attrs.get_ints(key);
  STRATA_CHECK(v.is_ok(), "op " + op.name + ": " + v.error().message());
  return *v;
}

// Whether input i of an op of `kind` may stay a row view (CudaTensor::RowView): the ops that
// carry it (Reshape), take it in place (Attention's q, k, v) or may be its buffer (Concat).
bool takes_row_view(OpKind kind, size_t i) {
  return kind == OpKind::Reshape || kind == OpKind::Concat ||
         ((kind == OpKind::Attention || kind == OpKind::AttentionGrad) && i < 3);
}

// A Slice of contiguous `from` to `to` that cuts one dim and keeps every other whole, as a row
// view of from's storage; none when it cuts more dims, or would hold more than 4 times its own
// bytes alive (until its first reader that copies it).
std::optional<CudaTensor::RowView> slice_row_view(const ir::Shape& from, const ir::Shape& to,
                                                  const std::vector<int64_t>& starts) {
  if (from.size() != to.size() || starts.size() != from.size()) return std::nullopt;
  size_t cut = from.size();
  for (size_t d = 0; d < from.size(); ++d) {
    if (to[d] == from[d]) continue;
    if (cut != from.size()) return std::nullopt;
    cut = d;
  }
  if (cut == from.size()) return std::nullopt;
  int64_t inner = 1;
  for (size_t d = cut + 1; d < from.size(); ++d) inner *= from[d];
  const CudaTensor::RowView view{starts[cut] * inner, to[cut] * inner, from[cut] * inner};
  if (view.width == 0 || view.pitch > 4 * view.width) return std::nullopt;
  return view;
}

// An A/B switch from the environment: `name` set to 0 or 1 sets `flag`; unset keeps it.
Status env_switch(const char* name, bool& flag) {
  const char* env = std::getenv(name);
  if (env == nullptr) return Status::ok();
  const std::string value = env;
  if (value != "0" && value != "1") return make_error("", name, "must be 0 or 1, got '" + value + "'");
  flag = value == "1";
  return Status::ok();
}

class CudaBackend : public Backend {
 public:
  CudaBackend(int device, const CudaOptions& options) : device_(device), options_(options) {}

  ~CudaBackend() override {
    cudaSetDevice(device_);
    (void)flush_adam();  // nothing to report an error to
    if (stream_ != nullptr) cudaStreamSynchronize(stream_);
    if (cublas_ != nullptr) cublasDestroy(cublas_);
    if (lt_ != nullptr) cublasLtDestroy(lt_);
    if (flag_ != nullptr) cudaFree(flag_);
    if (workspace_ != nullptr) cudaFree(workspace_);
    if (stream_ != nullptr) cudaStreamDestroy(stream_);
  }

  Status init() {
    STRATA_CUDA_CALL(cudaSetDevice(device_));
    STRATA_CUDA_CALL(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
    // Keep freed blocks in the stream-ordered pool instead of returning them to the driver.
    cudaMemPool_t pool;
    STRATA_CUDA_CALL(cudaDeviceGetDefaultMemPool(&pool, device_));
    uint64_t threshold = UINT64_MAX;
    STRATA_CUDA_CALL(cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &threshold));
    STRATA_CUDA_CALL(cudaMalloc(reinterpret_cast<void**>(&flag_), sizeof(int32_t)));
    STRATA_CUDA_CALL(cudaMemset(flag_, 0, sizeof(int32_t)));
    STRATA_CUBLAS_CALL(cublasCreate(&cublas_));
    STRATA_CUBLAS_CALL(cublasSetStream(cublas_, stream_));
    STRATA_CUDA_CALL(cudaMalloc(&workspace_, kWorkspaceBytes));
    STRATA_CUBLAS_CALL(cublasSetWorkspace(cublas_, workspace_, kWorkspaceBytes));
    STRATA_CUBLAS_CALL(cublasLtCreate(&lt_));
    // A/B switches: STRATA_CUDA_EPILOGUES=0 runs the chains fuse_for_cuda marked for a GEMM
    // epilogue op by op; STRATA_CUDA_MULTI_ADAM=0 runs each AdamUpdate on its own;
    // STRATA_CUDA_GEMM_TUNE=1 times each cuBLASLt GEMM key's algorithms once (GemmTuner) and sends
    // plain Dots through cuBLASLt too. Tuning is off by default: on GPT-1.3B's shapes on an H200 it
    // gained nothing over the heuristic's first answer (bench/results/2026-11-24-gpu-epilogues.md).
    // STRATA_CUDA_STRIDED_QKV=0 copies the q/k/v Slices and dq/dk/dv into their Concat (RowView);
    // STRATA_CUDA_RESIDUAL_GEMM=0 runs a residual Add after its GEMM instead of in it.
    STRATA_RETURN_IF_ERROR(env_switch("STRATA_CUDA_EPILOGUES", epilogues_));
    STRATA_RETURN_IF_ERROR(env_switch("STRATA_CUDA_RESIDUAL_GEMM", residual_gemm_));
    STRATA_RETURN_IF_ERROR(env_switch("STRATA_CUDA_STRIDED_QKV", strided_qkv_));
    STRATA_RETURN_IF_ERROR(env_switch("STRATA_CUDA_MULTI_ADAM", multi_adam_));
    STRATA_RETURN_IF_ERROR(env_switch("STRATA_CUDA_GEMM_TUNE", tune_gemms_));
    return Status::ok();
  }

  std::string name() const override { return "cuda"; }
  DType storage_dtype(DType ir_dtype) const override { return is_float(ir_dtype) ? DType::f32 : ir_dtype; }

  Expected<TensorPtr> alloc(const ir::TensorType& type) override {
    STRATA_ASSIGN_OR_RETURN(Elem elem, storage_elem(type.dtype));
    STRATA_ASSIGN_OR_RETURN(auto t, make_tensor(type.shape, elem, stream_, true));
    return TensorPtr(std::move(t));
  }

  Expected<TensorPtr> upload(const interp::Tensor& host, DType dtype) override {
    STRATA_ASSIGN_OR_RETURN(Elem elem, cuda::elem_of(dtype));
    STRATA_ASSIGN_OR_RETURN(auto t, make_tensor(host.shape, elem, stream_));
    std::vector<unsigned char> bytes(static_cast<size_t>(t->bytes()));
    for (int64_t i = 0; i < host.numel(); ++i) {
      const double x = host[i];
      if (elem == Elem::i32) {
        const auto v = static_cast<int32_t>(std::llround(x));
        std::memcpy(&bytes[static_cast<size_t>(i) * 4], &v, 4);
      } else if (elem == Elem::f32) {
        const auto v = static_cast<float>(x);
        std::memcpy(&bytes[static_cast<size_t>(i) * 4], &v, 4);
      } else {
        const uint16_t v = to_bf16(static_cast<float>(x));
        std::memcpy(&bytes[static_cast<size_t>(i) * 2], &v, 2);
      }
    }
    // Pageable source: the call returns once the bytes are staged, so `bytes` may go.
    STRATA_CUDA_CALL(cudaMemcpyAsync(t->data(), bytes.data(), bytes.size(), cudaMemcpyHostToDevice, stream_));
    STRATA_CUDA_CALL(cudaStreamSynchronize(stream_));
    return TensorPtr(std::move(t));
  }

  Expected<interp::Tensor> download(const DeviceTensor& tensor) override {
    STRATA_RETURN_IF_ERROR(flush_adam());
    STRATA_ASSIGN_OR_RETURN(const CudaTensor* t, as_cuda(tensor, "tensor"));
    std::vector<unsigned char> bytes(static_cast<size_t>(t->bytes()));
    STRATA_CUDA_CALL(cudaMemcpyAsync(bytes.data(), t->data(), bytes.size(), cudaMemcpyDeviceToHost, stream_));
    STRATA_RETURN_IF_ERROR(synchronize());
    interp::Tensor host(t->shape());
    for (int64_t i = 0; i < host.numel(); ++i) {
      const size_t at = static_cast<size_t>(i) * static_cast<size_t>(elem_bytes(t->elem()));
      if (t->elem() == Elem::i32) {
        int32_t v;
        std::memcpy(&v, &bytes[at], 4);
        host[i] = v;
      } else if (t->elem() == Elem::f32) {
        float v;
        std::memcpy(&v, &bytes[at], 4);
        host[i] = v;
      } else {
        uint16_t v;
        std::memcpy(&v, &bytes[at], 2);
        host[i] = from_bf16(v);
      }
    }
    return host;
  }

  Expected<std::vector<TensorPtr>> run_op(const ir::Op& op, const std::vector<const DeviceTensor*>& inputs) override {
    if (op.kind != OpKind::AdamUpdate) STRATA_RETURN_IF_ERROR(flush_adam());
    last_bias_grad_ = std::move(bias_grad_);
    bias_grad_ = BiasGrad{};
    std::vector<const CudaTensor*> in;
    in.reserve(inputs.size());
    for (size_t i = 0; i < inputs.size(); ++i) {
      if (inputs[i] == nullptr) return make_error("", "ops." + op.name + ".inputs[" + std::to_string(i) + "]", "null tensor");
      // A Softmax reads a deferred mask Add as it is (kernels::softmax_bias); a marked bias Add or
      // Gelu a deferred Dot (it runs the GEMM with its epilogue).
      const auto* direct = dynamic_cast<const CudaTensor*>(inputs[i]);
      const bool epilogue_input = epilogues_ && direct != nullptr && direct->pending_bias() == nullptr &&
                                  (((op.kind == OpKind::Add || op.kind == OpKind::Gelu) && i == 0) ||
                                   (op.kind == OpKind::GeluGrad && i == 1)) &&
                                  op.attrs.int_or(kGemmEpilogueAttr, 0) != 0;
      const bool viewed = direct != nullptr && direct->row_view() != nullptr;
      const bool keep_pending =
          viewed ? takes_row_view(op.kind, i)
                 : epilogue_input || (residual_add(op) && direct != nullptr && direct->deferred_dot() != nullptr) ||
                       (i == 0 && direct != nullptr && op.kind == OpKind::Softmax && direct->deferred_dot() == nullptr);
      if (direct != nullptr && (keep_pending || !direct->pending())) {
        in.push_back(direct);  // the common case: no field name to build
        continue;
      }
      auto t = as_cuda(*inputs[i], "ops." + op.name + ".inputs[" + std::to_string(i) + "]", keep_pending);
      if (!t.is_ok()) return t.error();
      in.push_back(*t);
    }
    const ir::OpInfo& info = ir::op_info(op.kind);
    if (static_cast<int>(in.size()) < info.min_inputs || (info.max_inputs >= 0 && static_cast<int>(in.size()) > info.max_inputs)) {
      return make_error("", "ops." + op.name, std::string(info.name) + " got " + std::to_string(in.size()) + " inputs");
    }
    if (op.kind == OpKind::Reshape && in.size() == 1 && in[0]->numel() == op.outputs[0].numel()) {
      // A view of the same bytes; in-place writes to either copy the storage first.
      auto elem = output_elem(op, 0, in);
      if (!elem.is_ok()) return elem.error().under("ops." + op.name);
      if (*elem == in[0]->elem()) {
        const ir::TensorType type{op.outputs[0].shape, dtype_of(*elem)};
        const CudaTensor::RowView* view = in[0]->row_view();
        return std::vector<TensorPtr>{view ? std::make_shared<CudaTensor>(type, *elem, in[0]->storage(), *view)
                                           : std::make_shared<CudaTensor>(type, *elem, in[0]->storage())};
      }
    }
    if (strided_qkv_ && (op.kind == OpKind::Slice || op.kind == OpKind::Concat)) {
      auto view = layout_in_place(op, in);
      if (!view.is_ok()) return view.error().under("ops." + op.name);
      if (*view != nullptr) return std::vector<TensorPtr>{std::move(view).value()};
    }
    if (op.kind == OpKind::AdamUpdate && multi_adam_) {
      auto deferred = defer_adam(op, in);
      if (!deferred.is_ok()) return deferred.error().under("ops." + op.name);
      if (!deferred->empty()) return std::move(deferred).value();
    }
    if (op.kind == OpKind::Add && op.attrs.int_or(kSoftmaxBiasAttr, 0) == 1 && in.size() == 2 &&
        in[0]->shape() == op.outputs[0].shape) {
      // The mask Add that fuse_for_cuda marked for its Softmax: deferred, no pass over the sum.
      auto elem = output_elem(op, 0, in);
      if (!elem.is_ok()) return elem.error().under("ops." + op.name);
      if (*elem == in[0]->elem()) {
        auto sum = std::make_shared<CudaTensor>(ir::TensorType{op.outputs[0].shape, dtype_of(*elem)}, *elem,
                                                in[0]->storage());
        sum->defer_bias({in[1]->storage(), in[1]->elem(), broadcast_view(in[1]->shape(), op.outputs[0].shape)});
        return std::vector<TensorPtr>{std::move(sum)};
      }
    }
    if (residual_add(op)) {
      auto fused = run_residual_add(op, in);
      if (!fused.is_ok()) return fused.error().under("ops." + op.name);
      if (!fused->empty()) return std::move(fused).value();
    }
    if (epilogues_ && op.attrs.int_or(kGemmEpilogueAttr, 0) != 0) {
      auto fused = run_epilogue_chain(op, in);
      if (!fused.is_ok()) return fused.error().under("ops." + op.name);
      if (!fused->empty()) return std::move(fused).value();
    }
    std::vector<std::shared_ptr<CudaTensor>> outs;
    if (op.kind == OpKind::AttentionGrad && packed_qkv_pitch(op, in) != 0) {
      auto packed = packed_gradients(op, in);
      if (!packed.is_ok()) return packed.error().under("ops." + op.name);
      outs = std::move(packed).value();
    }
    for (size_t i = outs.size(); i < op.outputs.size(); ++i) {
      auto elem = output_elem(op, i, in);
      if (!elem.is_ok()) return elem.error().under("ops." + op.name);
      auto t = make_tensor(op.outputs[i].shape, *elem, stream_);
      if (!t.is_ok()) return t.error().under("ops." + op.name);
      outs.push_back(std::move(t).value());
    }
    Status status = dispatch(op, in, outs);
    if (!status.is_ok()) return status.error().under("ops." + op.name);
    return std::vector<TensorPtr>(outs.begin(), outs.end());
  }

  // A Dot + bias Add (+ Gelu) chain that fuse_for_cuda marked (kGemmEpilogueAttr): the Dot is
  // deferred, the Add attaches its bias (and is deferred too when a Gelu follows), and the last op
  // of the chain runs one cuBLASLt GEMM with the epilogue that writes every value it still needs.
  // Backward: a weight-gradient Dot (3) or a GeluGrad of a deferred Dot also computes the bias
  // gradient, which the marked ReduceSum right after it takes (bias_grad_) instead of reducing.
  // Empty when the op is not in the shape the chain takes: run_op then runs it as usual (its
  // deferred input was resolved by as_cuda or is resolved here).
  GemmContext gemm_context() {
    return GemmContext{cublas_, lt_, workspace_, kWorkspaceBytes, stream_, tune_gemms_ ? &tuner_ : nullptr};
  }

  Expected<std::vector<TensorPtr>> run_epilogue_chain(const ir::Op& op, const std::vector<const CudaTensor*>& in) {
    const std::vector<TensorPtr> none;
    STRATA_ASSIGN_OR_RETURN(const Elem elem, output_elem(op, 0, in));
    const int64_t mark = op.attrs.int_or(kGemmEpilogueAttr, 0);
    const ir::Shape& shape = op.outputs[0].shape;
    if (op.kind == OpKind::ReduceSum && in.size() == 1) {  // the bias gradient the last op's epilogue made
      BiasGrad found = std::move(last_bias_grad_);
      last_bias_grad_ = BiasGrad{};
      if (found.grad == nullptr || found.source.lock() != in[0]->storage() || found.grad->shape() != shape ||
          found.grad->elem() != elem) {
        return none;
      }
      return std::vector<TensorPtr>{std::move(found.grad)};
    }
    if (op.kind == OpKind::Dot && mark == 3 && in.size() == 2 && !shape.empty()) {  // dW = Dot(x, dy), BGRADA
      STRATA_ASSIGN_OR_RETURN(auto out, make_tensor(shape, elem, stream_));
      STRATA_ASSIGN_OR_RETURN(auto grad, make_tensor({shape.back()}, Elem::f32, stream_));
      GemmEpilogue epilogue;
      epilogue.bias_grad = grad->data();
      const DotOperand lhs{in[0]->data(), in[0]->elem(), in[0]->shape(), in[0]};
      const DotOperand rhs{in[1]->data(), in[1]->elem(), in[1]->shape(), in[1]};
      STRATA_ASSIGN_OR_RETURN(const bool fused, run_dot_epilogue(gemm_context(), op, lhs, rhs, out->data(), elem, shape,
                                                                 activation_elem(), epilogue));
      if (!fused) return none;
      bias_grad_ = BiasGrad{std::move(grad), in[1]->storage()};
      return std::vector<TensorPtr>{std::move(out)};
    }
    if (op.kind == OpKind::GeluGrad && in.size() == 2) {  // GeluGrad(pre, Dot(..)) and its bias gradient
      const DeferredDot* dot = in[1]->deferred_dot();
      if (dot == nullptr || dot->epilogue.bias != nullptr || shape.empty() || in[0]->elem() != elem ||
          in[1]->elem() != elem || in[0]->shape() != shape || in[1]->shape() != shape) {
        STRATA_RETURN_IF_ERROR(in[1]->resolve());
        return none;
      }
      STRATA_ASSIGN_OR_RETURN(auto out, make_tensor(shape, elem, stream_));
      STRATA_ASSIGN_OR_RETURN(auto grad, make_tensor({shape.back()}, Elem::f32, stream_));
      GemmEpilogue epilogue;
      epilogue.bias_grad = grad->data();
      epilogue.dgelu_input = in[0]->data();
      STRATA_ASSIGN_OR_RETURN(const bool fused, run_dot_epilogue(dot->ctx, dot->op, dot->lhs, dot->rhs, out->data(),
                                                                 elem, shape, dot->gemm_elem, epilogue));
      if (!fused) {
        STRATA_RETURN_IF_ERROR(in[1]->resolve());
        return none;
      }
      bias_grad_ = BiasGrad{std::move(grad), out->storage()};
      return std::vector<TensorPtr>{std::move(out)};
    }
    if (op.kind == OpKind::Dot && mark == 1 && in.size() == 2) {
      auto dot = std::make_shared<DeferredDot>();
      dot->ctx = gemm_context();
      dot->op = op;
      dot->gemm_elem = activation_elem();
      dot->pointer_batches = options_.pointer_batches;
      for (size_t i = 0; i < 2; ++i) {
        DotOperand operand{in[i]->data(), in[i]->elem(), in[i]->shape()};
        dot->keep.push_back(in[i]->storage());
        if (operand.elem == Elem::f32 && dot->gemm_elem == Elem::bf16) {  // a weight: its cached bf16 copy
          STRATA_ASSIGN_OR_RETURN(operand.data, in[i]->bf16_copy(stream_));
          operand.elem = Elem::bf16;
          dot->keep.push_back(in[i]->storage()->bf16);
        }
        (i == 0 ? dot->lhs : dot->rhs) = operand;
      }
      STRATA_ASSIGN_OR_RETURN(auto out, make_tensor(op.outputs[0].shape, elem, stream_));
      out->defer_dot(std::move(dot));
      return std::vector<TensorPtr>{std::move(out)};
    }
    const DeferredDot* pending = in.empty() ? nullptr : in[0]->deferred_dot();
    if (pending == nullptr || elem != in[0]->elem() || in[0]->shape() != op.outputs[0].shape) {
      if (!in.empty()) STRATA_RETURN_IF_ERROR(in[0]->resolve());
      return none;
    }
    if (op.kind == OpKind::Add && in.size() == 2 && pending->epilogue.bias == nullptr &&
        in[1]->shape() == ir::Shape{op.outputs[0].shape.back()}) {
      auto dot = std::make_shared<DeferredDot>(*pending);
      dot->epilogue.bias = in[1]->data();
      dot->epilogue.bias_elem = in[1]->elem();
      dot->bias_keep = in[1]->storage();
      STRATA_ASSIGN_OR_RETURN(auto out, make_tensor(op.outputs[0].shape, elem, stream_));
      // Deferred for the Gelu (2), or for a residual Add that may read it (run_residual_add).
      if (op.attrs.int_or(kGemmEpilogueAttr, 0) == 2 || residual_gemm_) {
        out->defer_dot(std::move(dot));
      } else {
        STRATA_RETURN_IF_ERROR(run_deferred_dot(*dot, out->data(), elem).status());
      }
      return std::vector<TensorPtr>{std::move(out)};
    }
    if (op.kind == OpKind::Gelu && in.size() == 1 && pending->epilogue.bias != nullptr) {
      // The sum (the Add's value, which GeluGrad reads) is the epilogue's aux output.
      STRATA_ASSIGN_OR_RETURN(auto out, make_tensor(op.outputs[0].shape, elem, stream_));
      STRATA_ASSIGN_OR_RETURN(const bool fused, run_deferred_dot(*pending, in[0]->data(), elem, out->data()));
      in[0]->drop_deferred_dot();
      if (!fused) {
        STRATA_RETURN_IF_ERROR(kernels::unary(kernels::Unary::gelu, 0.0f, in[0]->data(), elem, out->data(), elem,
                                              in[0]->numel(), stream_));
      }
      return std::vector<TensorPtr>{std::move(out)};
    }
    STRATA_RETURN_IF_ERROR(in[0]->resolve());
    return none;
  }

  // An Add that fuse_for_cuda left unmarked: a residual Add when one input is a deferred Dot + bias.
  bool residual_add(const ir::Op& op) const {
    return residual_gemm_ && epilogues_ && op.kind == OpKind::Add && op.inputs.size() == 2 &&
           !op.attrs.has(kGemmEpilogueAttr) && !op.attrs.has(kSoftmaxBiasAttr);
  }

  // Add(x, y) or Add(y, x) of a deferred Dot + bias y and a tensor x of the sum's shape and type (a
  // residual connection): one GEMM that reads x as its C (GemmEpilogue::residual) instead of a pass
  // over x, y and the sum. Empty, every input resolved, when the Add is not in that shape.
  Expected<std::vector<TensorPtr>> run_residual_add(const ir::Op& op, const std::vector<const CudaTensor*>& in) {
    const size_t at = in[0]->deferred_dot() != nullptr ? 0 : 1;
    const DeferredDot* dot = in[at]->deferred_dot();
    const CudaTensor* x = in[1 - at];
    STRATA_ASSIGN_OR_RETURN(const Elem elem, output_elem(op, 0, in));
    const ir::Shape& shape = op.outputs[0].shape;
    if (dot == nullptr || dot->epilogue.bias == nullptr || x->pending() || x->elem() != elem ||
        in[at]->elem() != elem || x->shape() != shape || in[at]->shape() != shape) {
      for (const CudaTensor* t : in) STRATA_RETURN_IF_ERROR(t->resolve());
      return std::vector<TensorPtr>{};
    }
    DeferredDot fused = *dot;  // y itself stays deferred: a later reader runs its own GEMM
    fused.epilogue.residual = x->data();
    STRATA_ASSIGN_OR_RETURN(auto out, make_tensor(shape, elem, stream_));
    STRATA_RETURN_IF_ERROR(run_deferred_dot(fused, out->data(), elem).status());
    return std::vector<TensorPtr>{std::move(out)};
  }

  Status add_into(DeviceTensor& dst, const DeviceTensor& src) override {
    STRATA_RETURN_IF_ERROR(flush_adam());
    bias_grad_ = BiasGrad{};  // an in-place write: an epilogue's bias gradient may be stale
    STRATA_ASSIGN_OR_RETURN(CudaTensor* d, as_cuda_for_write(dst, "dst"));
    STRATA_ASSIGN_OR_RETURN(const CudaTensor* s, as_cuda(src, "src"));
    if (d->shape() != s->shape()) {
      return make_error("", "src", "shape " + ir::shape_string(s->shape()) + " differs from " + ir::shape_string(d->shape()));
    }
    return kernels::axpy(d->data(), d->elem(), s->data(), s->elem(), 1.0f, d->numel(), stream_);
  }

  Status scale(DeviceTensor& tensor, double factor) override {
    STRATA_RETURN_IF_ERROR(flush_adam());
    bias_grad_ = BiasGrad{};  // an in-place write: an epilogue's bias gradient may be stale
    STRATA_ASSIGN_OR_RETURN(CudaTensor* t, as_cuda_for_write(tensor, "tensor"));
    return kernels::scale_in_place(t->data(), t->elem(), static_cast<float>(factor), t->numel(), stream_);
  }

  Expected<TensorPtr> slice(const DeviceTensor& tensor, const std::vector<int64_t>& starts,
                            const std::vector<int64_t>& sizes) override {
    STRATA_RETURN_IF_ERROR(flush_adam());
    STRATA_ASSIGN_OR_RETURN(const CudaTensor* t, as_cuda(tensor, "tensor"));
    STRATA_RETURN_IF_ERROR(check_block(t->shape(), starts, sizes, "starts"));
    STRATA_ASSIGN_OR_RETURN(auto out, make_tensor(sizes, t->elem(), stream_));
    View src = kernels::contiguous(t->shape().data(), static_cast<int32_t>(t->shape().size()));
    for (size_t d = 0; d < sizes.size(); ++d) {
      src.offset += starts[d] * src.stride[d];
      src.shape[d] = sizes[d];
    }
    const View dst = kernels::contiguous(sizes.data(), static_cast<int32_t>(sizes.size()));
    STRATA_RETURN_IF_ERROR(kernels::copy_view(out->data(), out->elem(), dst, t->data(), t->elem(), src, stream_));
    return TensorPtr(std::move(out));
  }

  Status insert(DeviceTensor& dst, const DeviceTensor& block, const std::vector<int64_t>& starts) override {
    STRATA_RETURN_IF_ERROR(flush_adam());
    bias_grad_ = BiasGrad{};  // an in-place write: an epilogue's bias gradient may be stale
    STRATA_ASSIGN_OR_RETURN(CudaTensor* d, as_cuda_for_write(dst, "dst"));
    STRATA_ASSIGN_OR_RETURN(const CudaTensor* b, as_cuda(block, "block"));
    STRATA_RETURN_IF_ERROR(check_block(d->shape(), starts, b->shape(), "starts"));
    View dv = kernels::contiguous(d->shape().data(), static_cast<int32_t>(d->shape().size()));
    for (size_t i = 0; i < starts.size(); ++i) {
      dv.offset += starts[i] * dv.stride[i];
      dv.shape[i] = b->shape()[i];
    }
    const View bv = kernels::contiguous(b->shape().data(), static_cast<int32_t>(b->shape().size()));
    return kernels::copy_view(d->data(), d->elem(), dv, b->data(), b->elem(), bv, stream_);
  }

  Expected<std::unique_ptr<Communicator>> communicator(MPI_Comm comm) override {
    STRATA_RETURN_IF_ERROR(flush_adam());
    STRATA_CUDA_CALL(cudaSetDevice(device_));
    return make_communicator(comm, stream_, options_.collectives);
  }

  Status synchronize() override {
    STRATA_RETURN_IF_ERROR(flush_adam());
    STRATA_CUDA_CALL(cudaStreamSynchronize(stream_));
    int32_t flag = 0;
    STRATA_CUDA_CALL(cudaMemcpy(&flag, flag_, sizeof(flag), cudaMemcpyDeviceToHost));
    if (flag != 0) {
      STRATA_CUDA_CALL(cudaMemset(flag_, 0, sizeof(int32_t)));
      std::string name = "?";
      for (const auto& [op, code] : flag_codes_) {
        if (code == flag) name = op;
      }
      return make_error("", "ops." + name, "an id or label lies outside [0, vocab)");
    }
    return Status::ok();
  }

 private:
  static uint16_t to_bf16(float x) {
    uint32_t bits;
    std::memcpy(&bits, &x, 4);
    if (std::isnan(x)) return 0x7fc0;
    bits += 0x7fffu + ((bits >> 16) & 1u);  // round to nearest even
    return static_cast<uint16_t>(bits >> 16);
  }
  static double from_bf16(uint16_t v) {
    const uint32_t bits = static_cast<uint32_t>(v) << 16;
    float x;
    std::memcpy(&x, &bits, 4);
    return x;
  }

  Expected<Elem> storage_elem(DType dtype) const { return cuda::elem_of(storage_dtype(dtype)); }
  Elem activation_elem() const { return options_.activations == DType::f32 ? Elem::f32 : Elem::bf16; }

  static Status check_block(const ir::Shape& shape, const std::vector<int64_t>& starts, const ir::Shape& sizes,
                            const char* field) {
    if (starts.size() != shape.size() || sizes.size() != shape.size()) {
      return make_error("", field, "rank differs from the tensor's " + ir::shape_string(shape));
    }
    for (size_t d = 0; d < shape.size(); ++d) {
      if (starts[d] < 0 || sizes[d] < 0 || starts[d] + sizes[d] > shape[d]) {
        return make_error("", field, "block outside the tensor's " + ir::shape_string(shape) + " in dim " +
                                         std::to_string(d));
      }
    }
    return Status::ok();
  }

  // The storage type of output i (see cuda_backend.h): fp32 for updates, losses, reductions and
  // parameter-shaped gradient outputs; bf16 for GEMMs and gathers; otherwise bf16 when a float
  // input is bf16 and fp32 when all are fp32.
  Expected<Elem> output_elem(const ir::Op& op, size_t i, const std::vector<const CudaTensor*>& in) const {
    const DType dtype = op.outputs[i].dtype;
    if (!is_float(dtype)) return cuda::elem_of(dtype);
    if (op.role == ir::Role::update) return Elem::f32;
    switch (op.kind) {
      case OpKind::CrossEntropy:
      case OpKind::ReduceSum:
      case OpKind::ReduceMax:
      case OpKind::ReduceMean:
      case OpKind::GatherGrad:
      case OpKind::AdamUpdate:
      case OpKind::SgdUpdate:
        return Elem::f32;
      case OpKind::LayerNormGrad:
      case OpKind::BatchNormGrad:
      case OpKind::Attention:  // lse
        if (i > 0) return Elem::f32;
        break;
      case OpKind::Dot:
      case OpKind::Gather:
        return activation_elem();
      default:
        break;
    }
    for (const CudaTensor* t : in) {
      if (t->elem() == Elem::bf16) return activation_elem();
    }
    return Elem::f32;
  }

  int32_t flag_code(const std::string& op_name) {
    auto it = flag_codes_.find(op_name);
    if (it != flag_codes_.end()) return it->second;
    const auto code = static_cast<int32_t>(flag_codes_.size() + 1);
    flag_codes_.emplace(op_name, code);
    return code;
  }

  Status dispatch(const ir::Op& op, const std::vector<const CudaTensor*>& in,
                  const std::vector<std::shared_ptr<CudaTensor>>& out) {
    using kernels::Binary;
    using kernels::Unary;
    auto unary = [&](Unary u, float scalar) {
      return kernels::unary(u, scalar, in[0]->data(), in[0]->elem(), out[0]->data(), out[0]->elem(), in[0]->numel(),
                            stream_);
    };
    auto binary = [&](Binary b) {
      const ir::Shape& shape = out[0]->shape();
      return kernels::binary(b, in[0]->data(), in[0]->elem(), broadcast_view(in[0]->shape(), shape), in[1]->data(),
                             in[1]->elem(), broadcast_view(in[1]->shape(), shape), out[0]->data(), out[0]->elem(),
                             stream_);
    };
    const int32_t out_rank = static_cast<int32_t>(op.outputs[0].shape.size());
    if (op.kind != OpKind::Attention && op.kind != OpKind::AttentionGrad) {
      for (const CudaTensor* t : in) {  // a row view that run_op kept but could not use in place
        if (t->row_view() != nullptr) STRATA_RETURN_IF_ERROR(t->resolve());
      }
    }
    switch (op.kind) {
      case OpKind::Parameter:
      case OpKind::Input:
        return make_error("", "kind", std::string(ir::op_kind_name(op.kind)) + " values are uploaded, not run");
      case OpKind::Constant:
        return kernels::fill(out[0]->data(), out[0]->elem(), out[0]->numel(),
                             static_cast<float>(op.attrs.real_or("value", 0.0)), stream_);
      case OpKind::Neg: return unary(Unary::neg, 0);
      case OpKind::Exp: return unary(Unary::exp, 0);
      case OpKind::Log: return unary(Unary::log, 0);
      case OpKind::Tanh: return unary(Unary::tanh, 0);
      case OpKind::Sqrt: return unary(Unary::sqrt, 0);
      case OpKind::Rsqrt: return unary(Unary::rsqrt, 0);
      case OpKind::Relu: return unary(Unary::relu, 0);
      case OpKind::Gelu: return unary(Unary::gelu, 0);
      case OpKind::Scale: return unary(Unary::scale, static_cast<float>(op.attrs.real_or("scalar", 1.0)));
      case OpKind::Step: return unary(Unary::step, 0);
      case OpKind::Indicator: return unary(Unary::indicator, 0);
      case OpKind::GeluGrad: return binary(Binary::gelu_grad);
      case OpKind::Add: return binary(Binary::add);
      case OpKind::Sub: return binary(Binary::sub);
      case OpKind::Mul: return binary(Binary::mul);
      case OpKind::Div: return binary(Binary::div);
      case OpKind::Max: return binary(Binary::max);
      case OpKind::ReduceSum:
      case OpKind::ReduceMax:
      case OpKind::ReduceMean: {
        const ir::Shape& shape = in[0]->shape();
        const int64_t rank = static_cast<int64_t>(shape.size());
        bool reduced[kMaxRank] = {};
        STRATA_CHECK(rank <= kMaxRank, "reduce: rank above kMaxRank");
        for (int64_t d = 0; d < rank; ++d) reduced[d] = !op.attrs.has("axes");
        for (int64_t axis : ints_attr(op, "axes")) reduced[norm_axis(axis, rank)] = true;
        const auto kind = op.kind == OpKind::ReduceSum   ? kernels::ReduceKind::sum
                          : op.kind == OpKind::ReduceMax ? kernels::ReduceKind::max
                                                         : kernels::ReduceKind::mean;
        return kernels::reduce(kind, in[0]->data(), in[0]->elem(), shape.data(), static_cast<int32_t>(rank), reduced,
                                out[0]->data(), out[0]->elem(), stream_);
      }
      case OpKind::Reshape: {
        const int64_t n = in[0]->numel();
        const View v = kernels::contiguous(&n, 1);
        return kernels::copy_view(out[0]->data(), out[0]->elem(), v, in[0]->data(), in[0]->elem(), v, stream_);
      }
      case OpKind::Transpose: {
        const auto perm = ints_attr(op, "perm");
        const View xs = kernels::contiguous(in[0]->shape().data(), static_cast<int32_t>(in[0]->shape().size()));
        View src;
        src.rank = out_rank;
        for (int32_t d = 0; d < out_rank; ++d) {
          src.shape[d] = xs.shape[perm[d]];
          src.stride[d] = xs.stride[perm[d]];
        }
        return copy_to_output(out[0], in[0], src);
      }
      case OpKind::Broadcast: {
        const auto dims = ints_attr(op, "dims");
        const View xs = kernels::contiguous(in[0]->shape().data(), static_cast<int32_t>(in[0]->shape().size()));
        View src;
        src.rank = out_rank;
        for (int32_t d = 0; d < out_rank; ++d) src.shape[d] = op.outputs[0].shape[d];
        for (size_t d = 0; d < dims.size(); ++d) src.stride[dims[d]] = in[0]->shape()[d] == 1 ? 0 : xs.stride[d];
        return copy_to_output(out[0], in[0], src);
      }
      case OpKind::Slice: {
        const auto starts = ints_attr(op, "starts");
        View src = kernels::contiguous(in[0]->shape().data(), static_cast<int32_t>(in[0]->shape().size()));
        for (int32_t d = 0; d < out_rank; ++d) {
          src.offset += starts[d] * src.stride[d];
          src.shape[d] = op.outputs[0].shape[d];
        }
        return copy_to_output(out[0], in[0], src);
      }
      case OpKind::Pad: {
        const auto low = ints_attr(op, "low");
        STRATA_RETURN_IF_ERROR(kernels::fill(out[0]->data(), out[0]->elem(), out[0]->numel(), 0.0f, stream_));
        View dst = kernels::contiguous(op.outputs[0].shape.data(), out_rank);
        for (int32_t d = 0; d < out_rank; ++d) {
          dst.offset += low[d] * dst.stride[d];
          dst.shape[d] = in[0]->shape()[d];
        }
        const View src = kernels::contiguous(in[0]->shape().data(), out_rank);
        return kernels::copy_view(out[0]->data(), out[0]->elem(), dst, in[0]->data(), in[0]->elem(), src, stream_);
      }
      case OpKind::Concat: {
        const int64_t axis = norm_axis(op.attrs.int_or("axis", 0), out_rank);
        int64_t offset = 0;
        for (const CudaTensor* x : in) {
          View dst = kernels::contiguous(op.outputs[0].shape.data(), out_rank);
          dst.offset = offset * dst.stride[axis];
          for (int32_t d = 0; d < out_rank; ++d) dst.shape[d] = x->shape()[d];
          const View src = kernels::contiguous(x->shape().data(), out_rank);
          STRATA_RETURN_IF_ERROR(
              kernels::copy_view(out[0]->data(), out[0]->elem(), dst, x->data(), x->elem(), src, stream_));
          offset += x->shape()[axis];
        }
        return Status::ok();
      }
      case OpKind::Dot: {
        const DotOperand lhs{in[0]->data(), in[0]->elem(), in[0]->shape(), in[0]};
        const DotOperand rhs{in[1]->data(), in[1]->elem(), in[1]->shape(), in[1]};
        if (tune_gemms_) {  // a single GEMM through cuBLASLt, its algorithm tuned
          STRATA_ASSIGN_OR_RETURN(const bool ran, run_dot_epilogue(gemm_context(), op, lhs, rhs, out[0]->data(),
                                                                   out[0]->elem(), op.outputs[0].shape,
                                                                   activation_elem(), GemmEpilogue{}));
          if (ran) return Status::ok();
        }
        return run_dot(cublas_, stream_, op, lhs, rhs, out[0]->data(), out[0]->elem(), op.outputs[0].shape,
                       activation_elem(), options_.pointer_batches);
      }
      case OpKind::Gather: {
        if (in[1]->elem() != Elem::i32) return make_error("", "inputs[1]", "ids must be i32");
        const int64_t vocab = in[0]->shape()[0];
        const int64_t row = vocab == 0 ? 0 : in[0]->numel() / vocab;
        return kernels::gather(in[0]->data(), in[0]->elem(), static_cast<const int32_t*>(in[1]->data()),
                               in[1]->numel(), vocab, row, out[0]->data(), out[0]->elem(), flag_, flag_code(op.name),
                               stream_);
      }
      case OpKind::GatherGrad: {
        if (in[0]->elem() != Elem::i32) return make_error("", "inputs[0]", "ids must be i32");
        const int64_t vocab = op.outputs[0].shape[0];
        const int64_t row = vocab == 0 ? 0 : out[0]->numel() / vocab;
        return kernels::gather_grad(static_cast<const int32_t*>(in[0]->data()), in[0]->numel(), in[1]->data(),
                                    in[1]->elem(), vocab, row, out[0]->data(), out[0]->elem(), flag_,
                                    flag_code(op.name), stream_);
      }
      case OpKind::Softmax:
      case OpKind::SoftmaxGrad: {
        const ir::Shape& shape = in[0]->shape();
        const int64_t rank = static_cast<int64_t>(shape.size());
        const int64_t axis = norm_axis(op.attrs.int_or("axis", -1), rank);
        int64_t outer = 1, inner = 1;
        for (int64_t d = 0; d < rank; ++d) {
          if (d < axis) outer *= shape[d];
          if (d > axis) inner *= shape[d];
        }
        if (op.kind == OpKind::Softmax && in[0]->pending_bias() != nullptr) {
          const CudaTensor::PendingBias& bias = *in[0]->pending_bias();
          if (inner == 1 && rank >= 1) {
            View rows = bias.view;  // the bias's strides over the leading dims, then along a row
            rows.rank = static_cast<int32_t>(rank - 1);
            return kernels::softmax_bias(in[0]->data(), in[0]->elem(), bias.storage->data, bias.elem, rows,
                                         bias.view.stride[rank - 1], outer, shape[axis], out[0]->data(),
                                         out[0]->elem(), stream_);
          }
          STRATA_RETURN_IF_ERROR(in[0]->resolve());
        }
        if (op.kind == OpKind::Softmax) {
          return kernels::softmax(in[0]->data(), in[0]->elem(), outer, shape[axis], inner, out[0]->data(),
                                  out[0]->elem(), stream_);
        }
        return kernels::softmax_grad(in[0]->data(), in[0]->elem(), in[1]->data(), in[1]->elem(), outer, shape[axis],
                                     inner, out[0]->data(), out[0]->elem(), stream_);
      }
      case OpKind::LayerNorm:
      case OpKind::LayerNormGrad: {
        const int64_t h = in[0]->shape().empty() ? 1 : in[0]->shape().back();
        const int64_t rows = h == 0 ? 0 : in[0]->numel() / h;
        const auto eps = static_cast<float>(op.attrs.real_or("eps", 1e-5));
        if (op.kind == OpKind::LayerNorm) {
          return kernels::layer_norm(in[0]->data(), in[0]->elem(), in[1]->data(), in[1]->elem(), in[2]->data(),
                                     in[2]->elem(), rows, h, eps, out[0]->data(), out[0]->elem(), stream_);
        }
        return kernels::layer_norm_grad(in[0]->data(), in[0]->elem(), in[1]->data(), in[1]->elem(), in[2]->data(),
                                        in[2]->elem(), rows, h, eps, out[0]->data(), out[0]->elem(), out[1]->data(),
                                        out[1]->elem(), out[2]->data(), out[2]->elem(), stream_);
      }
      case OpKind::CrossEntropy:
      case OpKind::CrossEntropyGrad: {
        if (in[1]->elem() != Elem::i32) return make_error("", "inputs[1]", "labels must be i32");
        const int64_t rows = in[0]->shape()[0], vocab = in[0]->shape()[1];
        const auto* labels = static_cast<const int32_t*>(in[1]->data());
        // The kernels divide by the local rows; a device's share of a split batch's mean divides
        // by {mean_rows} (the loss scaled after, the gradient's dloss before).
        const int64_t mean_rows = op.attrs.int_or("mean_rows", rows);
        const float share = mean_rows > 0 ? static_cast<float>(static_cast<double>(rows) / static_cast<double>(mean_rows)) : 1.0f;
        if (op.kind == OpKind::CrossEntropy) {
          STRATA_RETURN_IF_ERROR(kernels::cross_entropy(in[0]->data(), in[0]->elem(), labels, rows, vocab, out[0]->data(),
                                                        out[0]->elem(), flag_, flag_code(op.name), stream_));
          if (mean_rows == rows) return Status::ok();
          return kernels::scale_in_place(out[0]->data(), out[0]->elem(), share, 1, stream_);
        }
        const void* dloss = in[2]->data();
        std::shared_ptr<CudaTensor> scaled;
        if (mean_rows != rows) {
          STRATA_ASSIGN_OR_RETURN(scaled, make_tensor({}, in[2]->elem(), stream_, /*zero=*/true));
          STRATA_RETURN_IF_ERROR(kernels::axpy(scaled->data(), scaled->elem(), dloss, in[2]->elem(), share, 1, stream_));
          dloss = scaled->data();
        }
        return kernels::cross_entropy_grad(in[0]->data(), in[0]->elem(), labels, dloss, in[2]->elem(), rows, vocab,
                                           out[0]->data(), out[0]->elem(), flag_, flag_code(op.name), stream_);
      }
      case OpKind::AdamUpdate: {
        STRATA_ASSIGN_OR_RETURN(std::shared_ptr<Storage> copy, adam_copy(*out[0]));
        STRATA_RETURN_IF_ERROR(kernels::adam(adam_params(op), in[0]->data(), in[0]->elem(), in[1]->data(),
                                             in[1]->elem(), in[2]->data(), in[2]->elem(), in[3]->data(),
                                             in[3]->elem(), out[0]->data(), out[1]->data(), out[2]->data(),
                                             copy ? copy->data : nullptr, in[0]->numel(), stream_));
        if (copy) out[0]->adopt_bf16_copy(std::move(copy));
        return Status::ok();
      }
      case OpKind::Attention:
      case OpKind::AttentionGrad: {
        // q, k, v [..., S, D] (and out, dout) in one element type; the bias broadcast over [..., S, T].
        const ir::Shape& q = in[0]->shape();
        const size_t r = q.size();
        kernels::AttentionProblem a;
        // layout bsnd: [B, S, N, D] (checked by the op's shape rule); the scores are [B, N, S, T].
        const bool bsnd = ir::attention_bsnd(op.attrs);
        a.heads = bsnd ? q[2] : 0;
        a.s = q[bsnd ? 1 : r - 2];
        a.d = q[r - 1];
        a.t = in[1]->shape()[bsnd ? 1 : r - 2];
        a.dv = in[2]->shape()[r - 1];
        a.batch = a.s * a.d == 0 ? 0 : in[0]->numel() / (a.s * a.d);
        a.scale = static_cast<float>(op.attrs.real_or("scale", 1.0));
        ir::Shape scores(q.begin(), q.end() - 1);
        if (bsnd) scores = {q[0], q[2], q[1]};
        scores.push_back(a.t);
        a.bias = in[3]->data();
        a.bias_elem = in[3]->elem();
        a.bias_view = broadcast_view(in[3]->shape(), scores);
        a.qkv_pitch = packed_qkv_pitch(op, in);
        for (size_t i = 0; i < 3 && a.qkv_pitch == 0; ++i) STRATA_RETURN_IF_ERROR(in[i]->resolve());
        const Elem elem = in[0]->elem();
        const bool backward = op.kind == OpKind::AttentionGrad;
        for (size_t i : backward ? std::vector<size_t>{1, 2, 4, 6} : std::vector<size_t>{1, 2}) {
          if (in[i]->elem() != elem) return make_error("", "inputs[" + std::to_string(i) + "]", "element type differs from q's");
        }
        for (const auto& o : backward ? out : std::vector<std::shared_ptr<CudaTensor>>{out[0]}) {
          if (o->elem() != elem) return make_error("", "outputs", "element type differs from q's");
        }
        const int64_t bytes = kernels::attention_workspace_bytes(a, backward);
        STRATA_ASSIGN_OR_RETURN(auto workspace, make_tensor({std::max<int64_t>(bytes / 4, 1)}, Elem::f32, stream_));
        if (!backward) {
          return kernels::attention_forward(a, in[0]->first(), in[1]->first(), in[2]->first(), elem, out[0]->data(),
                                            static_cast<float*>(out[1]->data()), workspace->data(), stream_);
        }
        if (in[5]->elem() != Elem::f32) return make_error("", "inputs[5]", "lse must be f32");
        // run_op made dq, dk, dv row views like q, k, v (packed_gradients) exactly when a.qkv_pitch != 0.
        return kernels::attention_backward(a, in[0]->first(), in[1]->first(), in[2]->first(), in[4]->data(),
                                           in[6]->data(), static_cast<const float*>(in[5]->data()), elem,
                                           out[0]->first(), out[1]->first(), out[2]->first(), workspace->data(),
                                           stream_);
      }
      case OpKind::SgdUpdate:
        return kernels::sgd(static_cast<float>(op.attrs.real_or("lr", 0.0)), in[0]->data(), in[0]->elem(),
                            in[1]->data(), in[1]->elem(), out[0]->data(), in[0]->numel(), stream_);
      default:
        return run_on_host(op, in, out);
    }
  }

  // A Slice as a row view of its input (the q/k/v Slices of the qkv GEMM's output), or a Concat
  // of row views that tile their buffer in order (AttentionGrad's dq, dk, dv) as that buffer: no
  // copy. Null when the op is not in that shape.
  Expected<std::shared_ptr<CudaTensor>> layout_in_place(const ir::Op& op, const std::vector<const CudaTensor*>& in) {
    STRATA_ASSIGN_OR_RETURN(const Elem elem, output_elem(op, 0, in));
    const ir::TensorType type{op.outputs[0].shape, dtype_of(elem)};
    if (op.kind == OpKind::Slice) {
      const auto view = slice_row_view(in[0]->shape(), type.shape, ints_attr(op, "starts"));
      if (!view || in[0]->row_view() != nullptr || in[0]->elem() != elem) return std::shared_ptr<CudaTensor>{};
      return std::make_shared<CudaTensor>(type, elem, in[0]->storage(), *view);
    }
    const size_t rank = type.shape.size();
    const auto axis = static_cast<size_t>(norm_axis(op.attrs.int_or("axis", 0), static_cast<int64_t>(rank)));
    int64_t pitch = 1;
    for (size_t d = axis; d < rank; ++d) pitch *= type.shape[d];
    int64_t offset = 0;
    for (const CudaTensor* x : in) {
      const CudaTensor::RowView* view = x->row_view();
      int64_t width = 1;
      for (size_t d = axis; d < x->shape().size(); ++d) width *= x->shape()[d];
      if (view == nullptr || x->storage() != in[0]->storage() || x->elem() != elem || view->offset != offset ||
          view->width != width || view->pitch != pitch) {
        return std::shared_ptr<CudaTensor>{};
      }
      offset += width;
    }
    if (offset != pitch || in[0]->storage()->bytes != type.numel() * elem_bytes(elem)) return std::shared_ptr<CudaTensor>{};
    return std::make_shared<CudaTensor>(type, elem, in[0]->storage());
  }

  // The row pitch of q, k, v when they are the row views of one token row [.., 3, N, D], in that
  // order, that the q/k/v Slices of the qkv GEMM's output make: Attention reads them in place and
  // AttentionGrad writes dq, dk, dv the same way (packed_gradients). 0 otherwise.
  static int64_t packed_qkv_pitch(const ir::Op& op, const std::vector<const CudaTensor*>& in) {
    const CudaTensor::RowView* q = in[0]->row_view();
    const ir::Shape& shape = in[0]->shape();
    if (q == nullptr || shape.size() < 2) return 0;
    // A view row must be one token: [B, S, N, D] rows of N D (layout bsnd), else rows of D.
    const int64_t token = ir::attention_bsnd(op.attrs) ? shape[shape.size() - 2] * shape.back() : shape.back();
    if (q->width != token || q->width % 8 != 0 || q->pitch != 3 * q->width || q->offset != 0) return 0;
    for (size_t i = 1; i < 3; ++i) {
      const CudaTensor::RowView* x = in[i]->row_view();
      if (x == nullptr || in[i]->storage() != in[0]->storage() || in[i]->shape() != shape ||
          in[i]->elem() != in[0]->elem() || x->width != q->width || x->pitch != q->pitch ||
          x->offset != static_cast<int64_t>(i) * q->width) {
        return 0;
      }
    }
    return q->pitch;
  }

  // dq, dk, dv as the row views of one new buffer laid out as q, k, v are (packed_qkv_pitch): the
  // Concat that follows is then that buffer.
  Expected<std::vector<std::shared_ptr<CudaTensor>>> packed_gradients(const ir::Op& op,
                                                                       const std::vector<const CudaTensor*>& in) {
    const Elem elem = in[0]->elem();
    auto storage = std::make_shared<Storage>(3 * in[0]->bytes(), stream_);
    if (storage->data == nullptr) {
      return make_error("", "", std::string("device allocation of dq, dk, dv failed: ") +
                                    cudaGetErrorString(storage->status));
    }
    std::vector<std::shared_ptr<CudaTensor>> outs;
    for (size_t i = 0; i < 3; ++i) {
      const CudaTensor::RowView& view = *in[i]->row_view();
      outs.push_back(std::make_shared<CudaTensor>(ir::TensorType{op.outputs[i].shape, dtype_of(elem)}, elem, storage,
                                                  view));
    }
    return outs;
  }

  static kernels::AdamParams adam_params(const ir::Op& op) {
    const double b1 = op.attrs.real_or("beta1", 0.9), b2 = op.attrs.real_or("beta2", 0.999);
    const auto step = static_cast<double>(op.attrs.int_or("step", 1));
    return kernels::AdamParams{static_cast<float>(op.attrs.real_or("lr", 0.0)),
                               static_cast<float>(b1),
                               static_cast<float>(b2),
                               static_cast<float>(op.attrs.real_or("eps", 1e-8)),
                               static_cast<float>(op.attrs.real_or("weight_decay", 0.0)),
                               static_cast<float>(1.0 - std::pow(b1, step)),
                               static_cast<float>(1.0 - std::pow(b2, step))};
  }

  // Storage for the bf16 copy of an updated matrix (null for other parameters): it is a GEMM
  // operand of the next forward, so the update writes the copy in the same pass (2 more bytes per
  // parameter instead of a later 6-byte cast pass and launch).
  Expected<std::shared_ptr<Storage>> adam_copy(const CudaTensor& param_out) const {
    if (activation_elem() != Elem::bf16 || param_out.elem() != Elem::f32 || param_out.shape().size() < 2) {
      return std::shared_ptr<Storage>{};
    }
    auto copy = std::make_shared<Storage>(param_out.numel() * 2, stream_);
    if (copy->data == nullptr) {
      return make_error("", "", std::string("device allocation for a bf16 copy failed: ") +
                                    cudaGetErrorString(copy->status));
    }
    return copy;
  }

  // An AdamUpdate over fp32 state joins the open AdamBatch (a new one when that already ran or has
  // other hyper-parameters): a few launches for all the parameters instead of one or two each,
  // most of them for vectors of a few thousand values. Empty when adam_batch does not take it.
  Expected<std::vector<TensorPtr>> defer_adam(const ir::Op& op, const std::vector<const CudaTensor*>& in) {
    if (in[0]->elem() != Elem::f32 || in[2]->elem() != Elem::f32 || in[3]->elem() != Elem::f32) {
      return std::vector<TensorPtr>{};
    }
    std::vector<std::shared_ptr<CudaTensor>> outs;
    for (size_t i = 0; i < 3; ++i) {
      STRATA_ASSIGN_OR_RETURN(auto t, make_tensor(op.outputs[i].shape, Elem::f32, stream_));
      outs.push_back(std::move(t));
    }
    STRATA_ASSIGN_OR_RETURN(std::shared_ptr<Storage> copy, adam_copy(*outs[0]));
    kernels::AdamTensor t;
    t.param = in[0]->data();
    t.grad = in[1]->data();
    t.grad_elem = in[1]->elem();
    t.m = in[2]->data();
    t.v = in[3]->data();
    t.param_out = outs[0]->data();
    t.m_out = outs[1]->data();
    t.v_out = outs[2]->data();
    t.param_bf16 = copy ? copy->data : nullptr;
    t.count = in[0]->numel();
    if (!kernels::adam_batchable(t)) return std::vector<TensorPtr>{};
    const kernels::AdamParams params = adam_params(op);
    if (adam_batch_ == nullptr || adam_batch_->ran ||
        std::memcmp(&adam_batch_->params, &params, sizeof(params)) != 0) {
      STRATA_RETURN_IF_ERROR(flush_adam());
      adam_batch_ = std::make_shared<AdamBatch>();
      adam_batch_->params = params;
      adam_batch_->stream = stream_;
    }
    adam_batch_->tensors.push_back(t);
    for (const CudaTensor* x : in) adam_batch_->keep.push_back(x->storage());
    for (const auto& o : outs) adam_batch_->keep.push_back(o->storage());
    if (copy) {
      adam_batch_->keep.push_back(copy);
      outs[0]->adopt_bf16_copy(std::move(copy));
    }
    for (const auto& o : outs) o->defer_adam(adam_batch_);
    adam_batch_->values += t.count;
    if (adam_batch_->values >= AdamBatch::kAdamBatchValues) STRATA_RETURN_IF_ERROR(flush_adam());
    return std::vector<TensorPtr>(outs.begin(), outs.end());
  }

  // Launches the open AdamBatch; before anything that could read its outputs or reuse its memory.
  Status flush_adam() {
    if (adam_batch_ == nullptr) return Status::ok();
    const std::shared_ptr<AdamBatch> batch = std::move(adam_batch_);
    adam_batch_.reset();
    return batch->run();
  }

  Status copy_to_output(const std::shared_ptr<CudaTensor>& out, const CudaTensor* in, const View& src) {
    const View dst = kernels::contiguous(out->shape().data(), static_cast<int32_t>(out->shape().size()));
    return kernels::copy_view(out->data(), out->elem(), dst, in->data(), in->elem(), src, stream_);
  }

  // Kinds without a device kernel here (convolutions, batch norm, pools, the MoE gate): download,
  // run the reference kernel in fp32, upload. Correct, and slow on purpose-visible: rare on GPT.
  Status run_on_host(const ir::Op& op, const std::vector<const CudaTensor*>& in,
                     const std::vector<std::shared_ptr<CudaTensor>>& out) {
    ir::Graph graph;
    std::map<std::string, interp::Tensor> feeds;
    std::vector<ir::Value> values;
    for (size_t i = 0; i < in.size(); ++i) {
      const std::string name = "input" + std::to_string(i);
      values.push_back(graph.input(name, in[i]->shape(), in[i]->elem() == Elem::i32 ? DType::i32 : DType::f32));
      STRATA_ASSIGN_OR_RETURN(feeds[name], download(*in[i]));
    }
    STRATA_ASSIGN_OR_RETURN(ir::OpId id, graph.try_add(op.kind, values, op.attrs, op.name));
    for (size_t i = 0; i < out.size(); ++i) graph.mark_output(ir::Value{id, static_cast<int32_t>(i)});
    STRATA_ASSIGN_OR_RETURN(interp::Outputs result, interp::run(graph, feeds, interp::Precision::f32));
    for (size_t i = 0; i < out.size(); ++i) {
      STRATA_ASSIGN_OR_RETURN(TensorPtr host_out, upload(result.outputs[i], dtype_of(out[i]->elem())));
      STRATA_ASSIGN_OR_RETURN(const CudaTensor* src, as_cuda(*host_out, "outputs"));
      if (src->shape() != out[i]->shape()) return make_error("", "outputs", "host kernel gave another shape");
      STRATA_CUDA_CALL(cudaMemcpyAsync(out[i]->data(), src->data(), static_cast<size_t>(src->bytes()),
                                       cudaMemcpyDeviceToDevice, stream_));
    }
    return Status::ok();
  }

  int device_;
  CudaOptions options_;
  cudaStream_t stream_ = nullptr;
  cublasHandle_t cublas_ = nullptr;
  cublasLtHandle_t lt_ = nullptr;
  // The bias gradient a GEMM epilogue computed with the op just run, for the marked ReduceSum of
  // `source` (dy, or the GeluGrad's output) if that is the next op (last_bias_grad_ while it runs).
  struct BiasGrad {
    std::shared_ptr<CudaTensor> grad;
    std::weak_ptr<Storage> source;
  };
  BiasGrad bias_grad_, last_bias_grad_;
  bool epilogues_ = true;
  bool multi_adam_ = true;
  bool strided_qkv_ = true;
  bool residual_gemm_ = true;
  std::shared_ptr<AdamBatch> adam_batch_;  // the AdamUpdates not launched yet
  bool tune_gemms_ = false;
  GemmTuner tuner_;
  static constexpr size_t kWorkspaceBytes = size_t{32} << 20;
  void* workspace_ = nullptr;
  int32_t* flag_ = nullptr;
  std::map<std::string, int32_t> flag_codes_;
};

}  // namespace
}  // namespace cuda

Expected<std::unique_ptr<Backend>> make_cuda_backend(int local_rank, const CudaOptions& options) {
  if (options.activations != DType::bf16 && options.activations != DType::f32) {
    return make_error("", "activations", std::string("must be bf16 or f32, got ") + dtype_name(options.activations));
  }
  int devices = 0;
  const cudaError_t rc = cudaGetDeviceCount(&devices);
  if (rc != cudaSuccess || devices == 0) {
    return make_error("", "backend", std::string("cuda: no usable GPU (") +
                                         (rc != cudaSuccess ? cudaGetErrorString(rc) : "0 devices") + ")");
  }
  auto backend = std::make_unique<cuda::CudaBackend>(local_rank % devices, options);
  STRATA_RETURN_IF_ERROR(backend->init());
  return std::unique_ptr<Backend>(std::move(backend));
}

Expected<std::unique_ptr<Backend>> make_cuda_backend(int local_rank) {
  CudaOptions options;
  if (const char* env = std::getenv("STRATA_CUDA_ACTIVATIONS")) {
    auto dtype = parse_dtype(env);
    if (!dtype.is_ok()) return make_error("", "STRATA_CUDA_ACTIVATIONS", dtype.error().reason);
    options.activations = *dtype;
  }
  if (const char* env = std::getenv("STRATA_CUDA_POINTER_BATCHES")) {
    const std::string value = env;
    if (value != "0" && value != "1") return make_error("", "STRATA_CUDA_POINTER_BATCHES", "must be 0 or 1, got '" + value + "'");
    options.pointer_batches = value == "1";
  }
  if (const char* env = std::getenv("STRATA_CUDA_COLLECTIVES")) {
    STRATA_ASSIGN_OR_RETURN(options.collectives, parse_collectives(env, "STRATA_CUDA_COLLECTIVES"));
  }
  return make_cuda_backend(local_rank, options);
}

}  // namespace strata::runtime
