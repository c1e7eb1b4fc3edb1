// Dot (XLA dot_general): output dims are batch dims (lhs_batch order), lhs free dims, rhs free
// dims; each output element sums over the paired contracting dims. Nested loops, no blocking.
#include <algorithm>

#include "kernels.h"

namespace strata::interp::kernels {
namespace {

std::vector<int64_t> ints_or_empty(const ir::Op& op, const char* key) {
  return op.attrs.has(key) ? attr_ints(op, key) : std::vector<int64_t>{};
}


Status dot(const Args& a) {
  const Tensor& lhs = a.in(0);
  const Tensor& rhs = a.in(1);
  Tensor& y = a.out();
  const auto lb = ints_or_empty(a.op, "lhs_batch"), rb = ints_or_empty(a.op, "rhs_batch");
  const auto lc = ints_or_empty(a.op, "lhs_contract"), rc = ints_or_empty(a.op, "rhs_contract");
  const auto lf = ir::dot_free_dims(lhs.rank(), lb, lc), rf = ir::dot_free_dims(rhs.rank(), rb, rc);
  const auto ls = row_major_strides(lhs.shape), rs = row_major_strides(rhs.shape);
  ir::Shape contract_shape;
  for (int64_t d : lc) contract_shape.push_back(lhs.shape[d]);
  const int64_t contract_count = shape_numel(contract_shape);
  std::vector<int64_t> index, cindex;
  for (int64_t i = 0; i < y.numel(); ++i) {
    unravel(i, y.shape, index);
    int64_t lbase = 0, rbase = 0;
    size_t pos = 0;
    for (size_t j = 0; j < lb.size(); ++j, ++pos) {
      lbase += index[pos] * ls[lb[j]];
      rbase += index[pos] * rs[rb[j]];
    }
    for (int64_t d : lf) lbase += index[pos++] * ls[d];
    for (int64_t d : rf) rbase += index[pos++] * rs[d];
    double sum = 0.0;
    for (int64_t c = 0; c < contract_count; ++c) {
      unravel(c, contract_shape, cindex);
      int64_t lo = lbase, ro = rbase;
      for (size_t j = 0; j < lc.size(); ++j) {
        lo += cindex[j] * ls[lc[j]];
        ro += cindex[j] * rs[rc[j]];
      }
      sum += lhs[lo] * rhs[ro];
    }
    y[i] = sum;
  }
  return Status::ok();
}

}  // namespace

std::vector<Entry> dot_kernels() { return {{ir::OpKind::Dot, dot}}; }

}  // namespace strata::interp::kernels
