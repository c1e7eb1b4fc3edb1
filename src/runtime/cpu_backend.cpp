// The cpu backend: the reference interpreter's kernels run one op at a time (in double, outputs
// rounded to fp32, as interp::Precision::f32 does) and host MPI collectives. It exists so that CI
// tests every distributed code path of the executor without a GPU.
#include <algorithm>
#include <cmath>

#include "strata/runtime/backend.h"

namespace strata::runtime {
namespace {

// Host storage: values are doubles holding numbers representable in the tensor's dtype.
class CpuTensor : public DeviceTensor {
 public:
  explicit CpuTensor(ir::TensorType type) : DeviceTensor(type), host(type.shape) {}
  interp::Tensor host;
};

CpuTensor& cpu(DeviceTensor& t) { return static_cast<CpuTensor&>(t); }
const CpuTensor& cpu(const DeviceTensor& t) { return static_cast<const CpuTensor&>(t); }

double round_to(double x, DType dtype) {
  if (dtype == DType::f64) return x;
  if (is_float(dtype)) return static_cast<double>(static_cast<float>(x));
  return std::nearbyint(x);
}

void round_all(CpuTensor& t) {
  for (double& x : t.host.data) x = round_to(x, t.dtype());
}

// Copies the block of `sizes` at `src_starts` in `src` to `dst_starts` in `dst`, row by row.
void copy_block(const interp::Tensor& src, const std::vector<int64_t>& src_starts, interp::Tensor& dst,
                const std::vector<int64_t>& dst_starts, const std::vector<int64_t>& sizes) {
  const int64_t rank = static_cast<int64_t>(sizes.size());
  const int64_t count = interp::shape_numel(sizes);
  if (count == 0) return;
  if (rank == 0) {
    dst.data[0] = src.data[0];
    return;
  }
  const std::vector<int64_t> src_strides = interp::row_major_strides(src.shape);
  const std::vector<int64_t> dst_strides = interp::row_major_strides(dst.shape);
  const int64_t row = sizes.back();
  std::vector<int64_t> index(static_cast<size_t>(rank), 0);
  for (int64_t done = 0; done < count; done += row) {
    int64_t s = 0, d = 0;
    for (int64_t i = 0; i < rank; ++i) {
      s += (src_starts[i] + index[i]) * src_strides[i];
      d += (dst_starts[i] + index[i]) * dst_strides[i];
    }
    std::copy_n(src.data.begin() + s, row, dst.data.begin() + d);
    for (int64_t i = rank - 2; i >= 0; --i) {  // next row: odometer over all dims but the last
      if (++index[i] < sizes[i]) break;
      index[i] = 0;
    }
  }
}

Status check_dim(const DeviceTensor& t, int dim, int parts, const char* what) {
  if (dim < 0 || dim >= static_cast<int>(t.shape().size())) {
    return make_error("", what, "dim " + std::to_string(dim) + " outside a tensor of rank " + std::to_string(t.shape().size()));
  }
  if (t.shape()[dim] % parts != 0) {
    return make_error("", what, "dim " + std::to_string(dim) + " of size " + std::to_string(t.shape()[dim]) +
                                    " does not split into " + std::to_string(parts) + " parts");
  }
  return Status::ok();
}

// `t` cut into `parts` blocks along `dim`, laid out one block after another.
std::vector<double> blocks_along(const CpuTensor& t, int dim, int parts) {
  std::vector<int64_t> sizes = t.shape();
  sizes[dim] /= parts;
  interp::Tensor block(sizes);
  std::vector<double> out;
  out.reserve(t.host.data.size());
  std::vector<int64_t> starts(sizes.size(), 0), zero(sizes.size(), 0);
  for (int p = 0; p < parts; ++p) {
    starts[dim] = p * sizes[dim];
    copy_block(t.host, starts, block, zero, sizes);
    out.insert(out.end(), block.data.begin(), block.data.end());
  }
  return out;
}

// The inverse: `parts` consecutive blocks of shape `block_shape` concatenated along `dim`.
void concat_blocks(const std::vector<double>& flat, const std::vector<int64_t>& block_shape, int dim, int parts,
                   CpuTensor& out) {
  const int64_t block_numel = interp::shape_numel(block_shape);
  std::vector<int64_t> starts(block_shape.size(), 0), zero(block_shape.size(), 0);
  for (int p = 0; p < parts; ++p) {
    interp::Tensor block(block_shape, std::vector<double>(flat.begin() + p * block_numel, flat.begin() + (p + 1) * block_numel));
    starts[dim] = p * block_shape[dim];
    copy_block(block, zero, out.host, starts, block_shape);
  }
}

// Offsets, in row-major order over `dims`, of every index combination of those dims of a tensor
// with `strides` and `shape`.
std::vector<int64_t> dim_offsets(const ir::Shape& shape, const std::vector<int64_t>& strides,
                                 const std::vector<int64_t>& dims) {
  std::vector<int64_t> out{0};
  for (int64_t d : dims) {
    std::vector<int64_t> next;
    next.reserve(out.size() * static_cast<size_t>(shape[d]));
    for (int64_t base : out) {
      for (int64_t i = 0; i < shape[d]; ++i) next.push_back(base + i * strides[d]);
    }
    out = std::move(next);
  }
  return out;
}

std::vector<int64_t> ints_or_empty(const ir::Op& op, const char* key) {
  if (!op.attrs.has(key)) return {};
  auto values = op.attrs.get_ints(key);
  return values ? *values : std::vector<int64_t>{};
}

// Dot (dot_general) as the interpreter's kernel computes it -- output order batch, lhs free, rhs
// free; each element a double sum over the contracting dims in row-major order, from 0 -- so the
// result is bit-identical, without per-element index arithmetic: both operands are packed so the
// contracting run is contiguous. (The interpreter's nested-loop kernel was most of a cpu step.)
void fast_dot(const ir::Op& op, const interp::Tensor& lhs, const interp::Tensor& rhs, interp::Tensor& y) {
  const auto lb = ints_or_empty(op, "lhs_batch"), rb = ints_or_empty(op, "rhs_batch");
  const auto lc = ints_or_empty(op, "lhs_contract"), rc = ints_or_empty(op, "rhs_contract");
  const auto lf = ir::dot_free_dims(lhs.rank(), lb, lc), rf = ir::dot_free_dims(rhs.rank(), rb, rc);
  const auto ls = interp::row_major_strides(lhs.shape), rs = interp::row_major_strides(rhs.shape);
  const auto lbo = dim_offsets(lhs.shape, ls, lb), rbo = dim_offsets(rhs.shape, rs, rb);
  const auto lfo = dim_offsets(lhs.shape, ls, lf), rfo = dim_offsets(rhs.shape, rs, rf);
  const auto lco = dim_offsets(lhs.shape, ls, lc), rco = dim_offsets(rhs.shape, rs, rc);
  const size_t nb = lbo.size(), nl = lfo.size(), nr = rfo.size(), nc = lco.size();
  // Packed: lp[(b * nl + f) * nc + c], rp[(b * nr + g) * nc + c].
  std::vector<double> lp(nb * nl * nc), rp(nb * nr * nc);
  for (size_t b = 0; b < nb; ++b) {
    for (size_t f = 0; f < nl; ++f) {
      double* row = &lp[(b * nl + f) * nc];
      const int64_t base = lbo[b] + lfo[f];
      for (size_t c = 0; c < nc; ++c) row[c] = lhs.data[static_cast<size_t>(base + lco[c])];
    }
    for (size_t g = 0; g < nr; ++g) {
      double* row = &rp[(b * nr + g) * nc];
      const int64_t base = rbo[b] + rfo[g];
      for (size_t c = 0; c < nc; ++c) row[c] = rhs.data[static_cast<size_t>(base + rco[c])];
    }
  }
  for (size_t b = 0; b < nb; ++b) {
    for (size_t f = 0; f < nl; ++f) {
      const double* l = &lp[(b * nl + f) * nc];
      double* out = &y.data[(b * nl + f) * nr];
      for (size_t g = 0; g < nr; ++g) {
        const double* r = &rp[(b * nr + g) * nc];
        double sum = 0.0;
        for (size_t c = 0; c < nc; ++c) sum += l[c] * r[c];
        out[g] = sum;
      }
    }
  }
}

class MpiRequest : public Request {
 public:
  // `round` (a receive or a sum) rounds the tensor to its dtype once the transfer is done.
  MpiRequest(TensorPtr tensor, MPI_Request request, bool round)
      : tensor_(std::move(tensor)), request_(request), round_(round) {}
  ~MpiRequest() override {
    if (request_ != MPI_REQUEST_NULL) MPI_Wait(&request_, MPI_STATUS_IGNORE);
  }
  Status wait() override {
    STRATA_MPI_CALL(MPI_Wait(&request_, MPI_STATUS_IGNORE));
    if (round_) round_all(cpu(*tensor_));
    return Status::ok();
  }

 private:
  TensorPtr tensor_;
  MPI_Request request_;
  bool round_;
};

class CpuCommunicator : public Communicator {
 public:
  explicit CpuCommunicator(MPI_Comm comm) : comm_(comm) {
    MPI_Comm_rank(comm_, &rank_);
    MPI_Comm_size(comm_, &size_);
    int flag = 0;
    void* value = nullptr;
    MPI_Comm_get_attr(MPI_COMM_WORLD, MPI_TAG_UB, &value, &flag);
    max_tag_ = flag ? *static_cast<int*>(value) : 32767;
  }
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  int max_tag() const override { return max_tag_; }

  Status all_reduce(DeviceTensor& tensor) override {
    CpuTensor& t = cpu(tensor);
    STRATA_MPI_CALL(MPI_Allreduce(MPI_IN_PLACE, t.host.data.data(), static_cast<int>(t.host.data.size()), MPI_DOUBLE,
                                     MPI_SUM, comm_));
    round_all(t);
    return Status::ok();
  }

  // MPI_Iallreduce in place over the doubles; the sum is rounded to the dtype at wait(), as the
  // blocking all_reduce rounds it.
  Expected<std::unique_ptr<Request>> all_reduce_async(TensorPtr tensor) override {
    MPI_Request request = MPI_REQUEST_NULL;
    CpuTensor& t = cpu(*tensor);
    STRATA_MPI_CALL(MPI_Iallreduce(MPI_IN_PLACE, t.host.data.data(), static_cast<int>(t.host.data.size()), MPI_DOUBLE,
                                      MPI_SUM, comm_, &request));
    return std::unique_ptr<Request>(std::make_unique<MpiRequest>(std::move(tensor), request, true));
  }

  Expected<TensorPtr> all_gather(const DeviceTensor& tensor, int dim) override {
    STRATA_RETURN_IF_ERROR(check_dim(tensor, dim, 1, "all_gather"));
    const CpuTensor& t = cpu(tensor);
    std::vector<double> flat(t.host.data.size() * static_cast<size_t>(size_));
    const int n = static_cast<int>(t.host.data.size());
    STRATA_MPI_CALL(MPI_Allgather(t.host.data.data(), n, MPI_DOUBLE, flat.data(), n, MPI_DOUBLE, comm_));
    ir::TensorType type = t.type();
    type.shape[dim] *= size_;
    auto out = std::make_shared<CpuTensor>(type);
    concat_blocks(flat, t.shape(), dim, size_, *out);
    return TensorPtr(out);
  }

  Expected<TensorPtr> reduce_scatter(const DeviceTensor& tensor, int dim) override {
    STRATA_RETURN_IF_ERROR(check_dim(tensor, dim, size_, "reduce_scatter"));
    const CpuTensor& t = cpu(tensor);
    const std::vector<double> flat = blocks_along(t, dim, size_);
    ir::TensorType type = t.type();
    type.shape[dim] /= size_;
    auto out = std::make_shared<CpuTensor>(type);
    STRATA_MPI_CALL(MPI_Reduce_scatter_block(flat.data(), out->host.data.data(), static_cast<int>(out->numel()),
                                                MPI_DOUBLE, MPI_SUM, comm_));
    round_all(*out);
    return TensorPtr(out);
  }

  Expected<TensorPtr> all_to_all(const DeviceTensor& tensor, int split_dim, int concat_dim) override {
    STRATA_RETURN_IF_ERROR(check_dim(tensor, split_dim, size_, "all_to_all"));
    STRATA_RETURN_IF_ERROR(check_dim(tensor, concat_dim, 1, "all_to_all"));
    const CpuTensor& t = cpu(tensor);
    const std::vector<double> flat = blocks_along(t, split_dim, size_);
    std::vector<double> received(flat.size());
    const int chunk = static_cast<int>(flat.size()) / size_;
    STRATA_MPI_CALL(MPI_Alltoall(flat.data(), chunk, MPI_DOUBLE, received.data(), chunk, MPI_DOUBLE, comm_));
    std::vector<int64_t> block_shape = t.shape();
    block_shape[split_dim] /= size_;
    ir::TensorType type = t.type();
    type.shape = block_shape;
    type.shape[concat_dim] *= size_;
    auto out = std::make_shared<CpuTensor>(type);
    concat_blocks(received, block_shape, concat_dim, size_, *out);
    return TensorPtr(out);
  }

  Expected<std::unique_ptr<Request>> isend(TensorPtr tensor, int peer, int tag) override {
    MPI_Request request = MPI_REQUEST_NULL;
    CpuTensor& t = cpu(*tensor);
    STRATA_MPI_CALL(MPI_Isend(t.host.data.data(), static_cast<int>(t.host.data.size()), MPI_DOUBLE, peer, tag, comm_,
                                 &request));
    return std::unique_ptr<Request>(std::make_unique<MpiRequest>(std::move(tensor), request, false));
  }

  Expected<std::unique_ptr<Request>> irecv(TensorPtr tensor, int peer, int tag) override {
    MPI_Request request = MPI_REQUEST_NULL;
    CpuTensor& t = cpu(*tensor);
    STRATA_MPI_CALL(MPI_Irecv(t.host.data.data(), static_cast<int>(t.host.data.size()), MPI_DOUBLE, peer, tag, comm_,
                                 &request));
    return std::unique_ptr<Request>(std::make_unique<MpiRequest>(std::move(tensor), request, true));
  }

 private:
  MPI_Comm comm_;
  int rank_ = 0;
  int size_ = 1;
  int max_tag_ = 32767;
};

class CpuBackend : public Backend {
 public:
  std::string name() const override { return "cpu"; }
  DType storage_dtype(DType ir_dtype) const override { return is_float(ir_dtype) ? DType::f32 : ir_dtype; }

  Expected<TensorPtr> alloc(const ir::TensorType& type) override { return TensorPtr(std::make_shared<CpuTensor>(type)); }

  Expected<TensorPtr> upload(const interp::Tensor& host, DType dtype) override {
    if (host.numel() != interp::shape_numel(host.shape)) {
      return make_error("", "upload", "a tensor of shape " + ir::shape_string(host.shape) + " holds " +
                                          std::to_string(host.numel()) + " values");
    }
    auto t = std::make_shared<CpuTensor>(ir::TensorType{host.shape, dtype});
    t->host = host;
    round_all(*t);
    return TensorPtr(t);
  }

  Expected<interp::Tensor> download(const DeviceTensor& tensor) override { return cpu(tensor).host; }

  Expected<std::vector<TensorPtr>> run_op(const ir::Op& op, const std::vector<const DeviceTensor*>& inputs) override {
    // One op as a graph of Inputs feeding it: the interpreter re-infers the local output types,
    // which checks the partitioner's local attributes, and rounds outputs to fp32.
    ir::Graph graph;
    std::vector<ir::Value> values;
    std::map<std::string, interp::Tensor> feeds;
    for (size_t i = 0; i < inputs.size(); ++i) {
      const std::string name = "in" + std::to_string(i);
      values.push_back(graph.input(name, inputs[i]->shape(), inputs[i]->dtype()));
    }
    auto id = graph.try_add(op.kind, values, op.attrs, "op");
    if (!id) return id.error().under("ops." + op.name);
    const ir::Op& local = graph.op(*id);
    if (local.outputs != op.outputs) {
      std::string got, want;
      for (const auto& t : local.outputs) got += ir::type_string(t) + " ";
      for (const auto& t : op.outputs) want += ir::type_string(t) + " ";
      return make_error("", "ops." + op.name, "local outputs " + got + "differ from the partitioned " + want);
    }
    if (local.kind == ir::OpKind::Dot) {
      auto t = std::make_shared<CpuTensor>(local.outputs[0]);
      fast_dot(local, cpu(*inputs[0]).host, cpu(*inputs[1]).host, t->host);
      round_all(*t);
      return std::vector<TensorPtr>{t};
    }
    for (size_t i = 0; i < inputs.size(); ++i) feeds["in" + std::to_string(i)] = cpu(*inputs[i]).host;
    for (size_t i = 0; i < local.outputs.size(); ++i) graph.mark_output(ir::Value{*id, static_cast<int32_t>(i)});
    auto ran = interp::run(graph, feeds, interp::Precision::f32);
    if (!ran) return ran.error().under("ops." + op.name);
    std::vector<TensorPtr> outputs;
    for (size_t i = 0; i < local.outputs.size(); ++i) {
      auto t = std::make_shared<CpuTensor>(local.outputs[i]);
      t->host = std::move(ran->outputs[i]);
      round_all(*t);
      outputs.push_back(t);
    }
    return outputs;
  }

  Status add_into(DeviceTensor& dst, const DeviceTensor& src) override {
    if (dst.shape() != src.shape()) {
      return make_error("", "add_into", "shapes " + ir::shape_string(dst.shape()) + " and " + ir::shape_string(src.shape()) + " differ");
    }
    CpuTensor& d = cpu(dst);
    const CpuTensor& s = cpu(src);
    for (size_t i = 0; i < d.host.data.size(); ++i) d.host.data[i] += s.host.data[i];
    round_all(d);
    return Status::ok();
  }

  Status scale(DeviceTensor& tensor, double factor) override {
    CpuTensor& t = cpu(tensor);
    for (double& x : t.host.data) x *= factor;
    round_all(t);
    return Status::ok();
  }

  Expected<TensorPtr> slice(const DeviceTensor& tensor, const std::vector<int64_t>& starts,
                            const std::vector<int64_t>& sizes) override {
    STRATA_RETURN_IF_ERROR(check_block(tensor.shape(), starts, sizes, "slice"));
    auto out = std::make_shared<CpuTensor>(ir::TensorType{sizes, tensor.dtype()});
    copy_block(cpu(tensor).host, starts, out->host, std::vector<int64_t>(sizes.size(), 0), sizes);
    return TensorPtr(out);
  }

  Status insert(DeviceTensor& dst, const DeviceTensor& block, const std::vector<int64_t>& starts) override {
    STRATA_RETURN_IF_ERROR(check_block(dst.shape(), starts, block.shape(), "insert"));
    copy_block(cpu(block).host, std::vector<int64_t>(starts.size(), 0), cpu(dst).host, starts, block.shape());
    return Status::ok();
  }

  Expected<std::unique_ptr<Communicator>> communicator(MPI_Comm comm) override {
    return std::unique_ptr<Communicator>(std::make_unique<CpuCommunicator>(comm));
  }
  Status synchronize() override { return Status::ok(); }

 private:
  static Status check_block(const ir::Shape& shape, const std::vector<int64_t>& starts, const std::vector<int64_t>& sizes,
                            const char* what) {
    if (starts.size() != shape.size() || sizes.size() != shape.size()) {
      return make_error("", what, "block rank differs from the tensor's " + ir::shape_string(shape));
    }
    for (size_t d = 0; d < shape.size(); ++d) {
      if (starts[d] < 0 || sizes[d] < 0 || starts[d] + sizes[d] > shape[d]) {
        return make_error("", what, "block " + ir::shape_string(starts) + "+" + ir::shape_string(sizes) +
                                        " outside " + ir::shape_string(shape));
      }
    }
    return Status::ok();
  }
};

}  // namespace

std::unique_ptr<Backend> make_cpu_backend() { return std::make_unique<CpuBackend>(); }

Expected<std::unique_ptr<Backend>> make_backend(const std::string& name, int local_rank) {
  if (name == "cpu") return make_cpu_backend();
  if (name == "cuda") {
#ifdef STRATA_HAVE_CUDA
    return make_cuda_backend(local_rank);
#else
    (void)local_rank;
    return make_error("", "backend", "'cuda' needs a build with CUDA (configure with -DSTRATA_CUDA=ON)");
#endif
  }
  (void)local_rank;
  return make_error("", "backend", "unknown backend '" + name + "' (expected cpu or cuda)");
}

}  // namespace strata::runtime
