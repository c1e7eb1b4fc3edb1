// Reductions and layout kernels: ReduceSum/Max/Mean, Reshape, Transpose, Broadcast, Slice, Concat,
// Pad. Each walks the output (or input) by multi-index; clarity over speed.
#include <limits>

#include "kernels.h"

namespace strata::interp::kernels {
namespace {

using ir::OpKind;

enum class Reduce { sum, max, mean };

// Reduced axes of an op on input rank `rank`: {axes} or every axis when absent.
std::vector<bool> reduced_axes(const ir::Op& op, int64_t rank) {
  std::vector<bool> reduced(static_cast<size_t>(rank), !op.attrs.has("axes"));
  if (op.attrs.has("axes")) {
    for (int64_t axis : attr_ints(op, "axes")) reduced[norm_axis(axis, rank)] = true;
  }
  return reduced;
}

Status reduce(const Args& a, Reduce kind) {
  const Tensor& x = a.in(0);
  Tensor& y = a.out();
  const std::vector<bool> reduced = reduced_axes(a.op, x.rank());
  // Output strides over the input's dims: 0 on reduced dims (works for keepdims 0 and 1 alike).
  std::vector<int64_t> kept_shape;
  for (int64_t d = 0; d < x.rank(); ++d) kept_shape.push_back(reduced[d] ? 1 : x.shape[d]);
  const std::vector<int64_t> kept_strides = row_major_strides(kept_shape);
  const double init = kind == Reduce::max ? -std::numeric_limits<double>::infinity() : 0.0;
  for (double& v : y.data) v = init;
  std::vector<int64_t> index;
  for (int64_t i = 0; i < x.numel(); ++i) {
    unravel(i, x.shape, index);
    int64_t o = 0;
    for (int64_t d = 0; d < x.rank(); ++d) o += reduced[d] ? 0 : index[d] * kept_strides[d];
    if (kind == Reduce::max) {
      y[o] = std::max(y[o], x[i]);
    } else {
      y[o] += x[i];
    }
  }
  if (kind == Reduce::mean && y.numel() > 0) {
    const double count = static_cast<double>(x.numel() / y.numel());
    for (double& v : y.data) v /= count;
  }
  return Status::ok();
}

Status reshape(const Args& a) {
  a.out().data = a.in(0).data;
  return Status::ok();
}

// out.shape[i] = x.shape[perm[i]].
Status transpose(const Args& a) {
  const Tensor& x = a.in(0);
  Tensor& y = a.out();
  const std::vector<int64_t> perm = attr_ints(a.op, "perm");
  const std::vector<int64_t> xs = row_major_strides(x.shape);
  std::vector<int64_t> index;
  for (int64_t i = 0; i < y.numel(); ++i) {
    unravel(i, y.shape, index);
    int64_t src = 0;
    for (size_t d = 0; d < perm.size(); ++d) src += index[d] * xs[perm[d]];
    y[i] = x[src];
  }
  return Status::ok();
}

// x's dim i is output dim dims[i]; a size-1 input dim repeats.
Status broadcast(const Args& a) {
  const Tensor& x = a.in(0);
  Tensor& y = a.out();
  const std::vector<int64_t> dims = attr_ints(a.op, "dims");
  const std::vector<int64_t> xs = row_major_strides(x.shape);
  std::vector<int64_t> index;
  for (int64_t i = 0; i < y.numel(); ++i) {
    unravel(i, y.shape, index);
    int64_t src = 0;
    for (size_t d = 0; d < dims.size(); ++d) src += x.shape[d] == 1 ? 0 : index[dims[d]] * xs[d];
    y[i] = x[src];
  }
  return Status::ok();
}

Status slice(const Args& a) {
  const Tensor& x = a.in(0);
  Tensor& y = a.out();
  const std::vector<int64_t> starts = attr_ints(a.op, "starts");
  const std::vector<int64_t> xs = row_major_strides(x.shape);
  std::vector<int64_t> index;
  for (int64_t i = 0; i < y.numel(); ++i) {
    unravel(i, y.shape, index);
    int64_t src = 0;
    for (size_t d = 0; d < index.size(); ++d) src += (index[d] + starts[d]) * xs[d];
    y[i] = x[src];
  }
  return Status::ok();
}

Status pad(const Args& a) {
  const Tensor& x = a.in(0);
  Tensor& y = a.out();
  const std::vector<int64_t> low = attr_ints(a.op, "low");
  const std::vector<int64_t> ys = row_major_strides(y.shape);
  for (double& v : y.data) v = 0.0;
  std::vector<int64_t> index;
  for (int64_t i = 0; i < x.numel(); ++i) {
    unravel(i, x.shape, index);
    int64_t dst = 0;
    for (size_t d = 0; d < index.size(); ++d) dst += (index[d] + low[d]) * ys[d];
    y[dst] = x[i];
  }
  return Status::ok();
}

Status concat(const Args& a) {
  Tensor& y = a.out();
  const int64_t axis = norm_axis(attr_int(a.op, "axis", 0), y.rank());
  const std::vector<int64_t> ys = row_major_strides(y.shape);
  int64_t offset = 0;
  std::vector<int64_t> index;
  for (const Tensor* x : a.inputs) {
    for (int64_t i = 0; i < x->numel(); ++i) {
      unravel(i, x->shape, index);
      index[axis] += offset;
      int64_t dst = 0;
      for (size_t d = 0; d < index.size(); ++d) dst += index[d] * ys[d];
      y[dst] = (*x)[i];
    }
    offset += x->shape[axis];
  }
  return Status::ok();
}

}  // namespace

std::vector<Entry> layout_kernels() {
  return {
      {OpKind::ReduceSum, [](const Args& a) { return reduce(a, Reduce::sum); }},
      {OpKind::ReduceMax, [](const Args& a) { return reduce(a, Reduce::max); }},
      {OpKind::ReduceMean, [](const Args& a) { return reduce(a, Reduce::mean); }},
      {OpKind::Reshape, reshape},
      {OpKind::Transpose, transpose},
      {OpKind::Broadcast, broadcast},
      {OpKind::Slice, slice},
      {OpKind::Concat, concat},
      {OpKind::Pad, pad},
  };
}

}  // namespace strata::interp::kernels
