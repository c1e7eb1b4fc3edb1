// Elementwise kernels: sources (Constant), unary maths, Gelu and its gradient, and binary ops with
// numpy broadcasting (shapes aligned at the right, size-1 dims repeat).
#include <cmath>

#include "kernels.h"

namespace strata::interp::kernels {
namespace {

using ir::OpKind;

constexpr double kGeluC = 0.7978845608028654;  // sqrt(2 / pi)

double gelu(double x) { return 0.5 * x * (1.0 + std::tanh(kGeluC * (x + 0.044715 * x * x * x))); }
double gelu_derivative(double x) {
  const double u = kGeluC * (x + 0.044715 * x * x * x);
  const double t = std::tanh(u);
  const double du = kGeluC * (1.0 + 3.0 * 0.044715 * x * x);
  return 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * du;
}

template <typename F>
Status unary(const Args& a, F f) {
  const Tensor& x = a.in(0);
  Tensor& y = a.out();
  for (int64_t i = 0; i < x.numel(); ++i) y[i] = f(x[i]);
  return Status::ok();
}

// Strides of `in` seen from an output of shape `out`: 0 on broadcast dims.
std::vector<int64_t> broadcast_strides(const ir::Shape& in, const ir::Shape& out) {
  std::vector<int64_t> strides(out.size(), 0);
  const std::vector<int64_t> own = row_major_strides(in);
  const size_t offset = out.size() - in.size();
  for (size_t i = 0; i < in.size(); ++i) strides[offset + i] = in[i] == 1 ? 0 : own[i];
  return strides;
}

template <typename F>
Status binary(const Args& a, F f) {
  const Tensor& x = a.in(0);
  const Tensor& z = a.in(1);
  Tensor& y = a.out();
  const std::vector<int64_t> sx = broadcast_strides(x.shape, y.shape);
  const std::vector<int64_t> sz = broadcast_strides(z.shape, y.shape);
  std::vector<int64_t> index;
  for (int64_t i = 0; i < y.numel(); ++i) {
    unravel(i, y.shape, index);
    int64_t ix = 0, iz = 0;
    for (size_t d = 0; d < index.size(); ++d) {
      ix += index[d] * sx[d];
      iz += index[d] * sz[d];
    }
    y[i] = f(x[ix], z[iz]);
  }
  return Status::ok();
}

Status constant(const Args& a) {
  const double value = attr_real(a.op, "value", 0.0);
  for (double& v : a.out().data) v = value;
  return Status::ok();
}

Status source_fed_elsewhere(const Args& a) {
  // Input and Parameter values come from feeds or init in run(); reaching here is our bug.
  STRATA_UNREACHABLE("source op " + a.op.name + " reached its kernel");
  return Status::ok();
}

Status gelu_grad(const Args& a) {
  const Tensor& x = a.in(0);
  const Tensor& dy = a.in(1);
  for (int64_t i = 0; i < x.numel(); ++i) a.out()[i] = dy[i] * gelu_derivative(x[i]);
  return Status::ok();
}

}  // namespace

std::vector<Entry> elementwise_kernels() {
  return {
      {OpKind::Parameter, source_fed_elsewhere},
      {OpKind::Input, source_fed_elsewhere},
      {OpKind::Constant, constant},
      {OpKind::Neg, [](const Args& a) { return unary(a, [](double x) { return -x; }); }},
      {OpKind::Exp, [](const Args& a) { return unary(a, [](double x) { return std::exp(x); }); }},
      {OpKind::Log, [](const Args& a) { return unary(a, [](double x) { return std::log(x); }); }},
      {OpKind::Tanh, [](const Args& a) { return unary(a, [](double x) { return std::tanh(x); }); }},
      {OpKind::Sqrt, [](const Args& a) { return unary(a, [](double x) { return std::sqrt(x); }); }},
      {OpKind::Rsqrt, [](const Args& a) { return unary(a, [](double x) { return 1.0 / std::sqrt(x); }); }},
      {OpKind::Relu, [](const Args& a) { return unary(a, [](double x) { return x > 0 ? x : 0.0; }); }},
      {OpKind::Gelu, [](const Args& a) { return unary(a, gelu); }},
      {OpKind::Scale,
       [](const Args& a) {
         const double s = attr_real(a.op, "scalar", 1.0);
         return unary(a, [s](double x) { return x * s; });
       }},
      {OpKind::Step, [](const Args& a) { return unary(a, [](double x) { return x > 0 ? 1.0 : 0.0; }); }},
      {OpKind::Indicator, [](const Args& a) { return unary(a, [](double x) { return x != 0 ? 1.0 : 0.0; }); }},
      {OpKind::GeluGrad, gelu_grad},
      {OpKind::Add, [](const Args& a) { return binary(a, [](double x, double z) { return x + z; }); }},
      {OpKind::Sub, [](const Args& a) { return binary(a, [](double x, double z) { return x - z; }); }},
      {OpKind::Mul, [](const Args& a) { return binary(a, [](double x, double z) { return x * z; }); }},
      {OpKind::Div, [](const Args& a) { return binary(a, [](double x, double z) { return x / z; }); }},
      {OpKind::Max, [](const Args& a) { return binary(a, [](double x, double z) { return x > z ? x : z; }); }},
  };
}

}  // namespace strata::interp::kernels
