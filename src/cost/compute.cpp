// The roofline compute model and its optional measured-GEMM table.
#include "strata/cost/compute.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>

#include "strata/core/check.h"

namespace strata::cost {
namespace {

bool is_contraction(ir::OpKind kind) {
  switch (kind) {
    case ir::OpKind::Dot:
    case ir::OpKind::Conv2d:
    case ir::OpKind::Conv2dGradInput:
    case ir::OpKind::Conv2dGradFilter:
    case ir::OpKind::Attention:  // tensor-core GEMMs with the softmax fused in
    case ir::OpKind::AttentionGrad: return true;
    default: return false;
  }
}

double product(const ir::Shape& shape, const std::vector<int64_t>& dims) {
  double p = 1;
  for (int64_t d : dims) p *= static_cast<double>(shape[static_cast<size_t>(d)]);
  return p;
}

// The class of measured memory-bound kernel (profile::MemoryOpCurve::op) an op is priced by.
const char* measured_class(ir::OpKind kind) {
  switch (kind) {
    case ir::OpKind::LayerNorm:
    case ir::OpKind::LayerNormGrad: return "layer_norm";
    case ir::OpKind::Softmax:
    case ir::OpKind::SoftmaxGrad: return "softmax";
    case ir::OpKind::Neg:
    case ir::OpKind::Exp:
    case ir::OpKind::Log:
    case ir::OpKind::Tanh:
    case ir::OpKind::Sqrt:
    case ir::OpKind::Rsqrt:
    case ir::OpKind::Relu:
    case ir::OpKind::Gelu:
    case ir::OpKind::Scale:
    case ir::OpKind::Step: return "gelu";
    case ir::OpKind::Add:
    case ir::OpKind::Sub:
    case ir::OpKind::Mul:
    case ir::OpKind::Div:
    case ir::OpKind::Max:
    case ir::OpKind::GeluGrad: return "add";
    default: return nullptr;
  }
}

}  // namespace

ComputeModel::ComputeModel(cluster::ClusterSpec spec, ComputeOptions options)
    : spec_(std::move(spec)), options_(options) {}

void ComputeModel::use_gemm_table(std::vector<profile::GemmPoint> points) {
  gemm_.clear();
  for (const profile::GemmPoint& point : points) {
    if (point.seconds > 0 && point.m > 0 && point.n > 0 && point.k > 0) gemm_.push_back(point);
  }
}

void ComputeModel::use_profile(const profile::Profile& profile) {
  use_gemm_table(profile.gemm);
  set_op_overhead(profile.op_overhead_seconds);
  set_memory_bandwidth(profile.memory_bandwidth());
  std::map<std::string, double> by_class;
  for (const profile::MemoryOpCurve& curve : profile.memory_ops) {
    if (!curve.bytes.empty() && curve.seconds.size() == curve.bytes.size() && curve.seconds.back() > 0) {
      by_class[curve.op] = static_cast<double>(curve.bytes.back()) / curve.seconds.back();
    }
  }
  set_memory_op_bandwidths(std::move(by_class));
  use_attention_table(profile.attention);
}

double ComputeModel::memory_seconds(ir::OpKind kind, double flops, int64_t bytes, DType dtype) const {
  const char* name = measured_class(kind);
  auto it = name != nullptr ? class_bandwidth_.find(name) : class_bandwidth_.end();
  if (it == class_bandwidth_.end()) return roofline_seconds(flops, bytes, dtype, false);
  const double peak = spec_.peak_flops(dtype) * options_.other_efficiency;
  return std::max(peak > 0 ? flops / peak : 0.0, static_cast<double>(bytes) / it->second);
}

std::string ComputeModel::describe() const {
  char text[256];
  std::string out = has_gemm_table() ? "GEMMs from the profile's table; " : "GEMMs from the roofline; ";
  if (memory_bandwidth_) {
    std::snprintf(text, sizeof text, "memory-bound ops at the measured %.3g TB/s", *memory_bandwidth_ / 1e12);
    out += text;
    for (const auto& [name, bandwidth] : class_bandwidth_) {
      std::snprintf(text, sizeof text, ", %s %.3g", name.c_str(), bandwidth / 1e12);
      out += text;
    }
    std::snprintf(text, sizeof text, "; ");
  } else {
    std::snprintf(text, sizeof text, "memory-bound ops at the datasheet %.3g TB/s x %.2f (no measured bandwidth); ",
                  spec_.memory_bandwidth_bytes_per_second / 1e12, options_.bandwidth_efficiency);
  }
  out += text;
  if (op_overhead_) {
    std::snprintf(text, sizeof text, "%.3g us per executed op (measured); ", *op_overhead_ * 1e6);
  } else {
    std::snprintf(text, sizeof text, "no per-op cost (none measured); ");
  }
  out += text;
  if (!prices_cuda_fusion()) return out + "every op of the graph as built (no fused attention measured)";
  std::snprintf(text, sizeof text,
                "the graph as the cuda backend runs it (fuse_for_cuda: attention blocks at %zu measured points, "
                "bias/GELU epilogues and bias-gradient sums free)",
                attention_.size());
  return out + text;
}

double ComputeModel::roofline_seconds(double flops, int64_t bytes, DType dtype, bool contraction) const {
  const double efficiency = contraction ? options_.contraction_efficiency : options_.other_efficiency;
  const double peak = spec_.peak_flops(dtype) * efficiency;
  const double bandwidth =
      memory_bandwidth_ ? *memory_bandwidth_ : spec_.memory_bandwidth_bytes_per_second * options_.bandwidth_efficiency;
  const double compute = peak > 0 ? flops / peak : 0;
  const double memory = bandwidth > 0 ? static_cast<double>(bytes) / bandwidth : 0;
  return std::max(compute, memory);
}

double ComputeModel::gemm_seconds(int64_t batch, int64_t m, int64_t n, int64_t k, DType dtype) const {
  const double flops = 2.0 * static_cast<double>(batch) * static_cast<double>(m) * static_cast<double>(n) *
                       static_cast<double>(k);
  const profile::GemmPoint* nearest = nullptr;
  double best = std::numeric_limits<double>::infinity();
  for (const profile::GemmPoint& point : gemm_) {
    if (point.dtype != dtype) continue;
    auto gap = [](int64_t a, int64_t b) { return std::log(static_cast<double>(a) / static_cast<double>(b)); };
    const double distance = std::pow(gap(point.m, std::max<int64_t>(m, 1)), 2) +
                            std::pow(gap(point.n, std::max<int64_t>(n, 1)), 2) +
                            std::pow(gap(point.k, std::max<int64_t>(k, 1)), 2);
    if (distance < best) {
      best = distance;
      nearest = &point;
    }
  }
  if (nearest == nullptr) {
    const int64_t bytes = (batch * (m * k + k * n + m * n)) * dtype_bytes(dtype);
    return roofline_seconds(flops, bytes, dtype, true);
  }
  const double point_flops = 2.0 * static_cast<double>(nearest->m) * static_cast<double>(nearest->n) *
                             static_cast<double>(nearest->k);
  return nearest->seconds * flops / point_flops;
}

double ComputeModel::attention_seconds(const AttentionShape& block, bool backward) const {
  STRATA_CHECK(!attention_.empty(), "attention_seconds without measured attention");
  auto gap = [](double a, double b) { return std::log(std::max(a, 1.0) / std::max(b, 1.0)); };
  auto work = [](double batch_heads, double s, double t, double d, double dv) { return batch_heads * s * t * (d + dv); };
  const double area = static_cast<double>(block.queries) * static_cast<double>(block.keys);
  const profile::AttentionPoint* nearest = nullptr;
  double best = std::numeric_limits<double>::infinity();
  for (const profile::AttentionPoint& point : attention_) {
    const double seq = static_cast<double>(point.seq);
    const double distance = std::pow(gap(static_cast<double>(block.head_dim), static_cast<double>(point.head_dim)), 2) +
                            std::pow(gap(static_cast<double>(block.batch_heads), static_cast<double>(point.batch_heads)), 2) +
                            std::pow(gap(area, seq * seq), 2);
    if (distance < best) {
      best = distance;
      nearest = &point;
    }
  }
  const double seq = static_cast<double>(nearest->seq), d = static_cast<double>(nearest->head_dim);
  const double ratio = work(static_cast<double>(block.batch_heads), static_cast<double>(block.queries),
                            static_cast<double>(block.keys), static_cast<double>(block.head_dim),
                            static_cast<double>(block.value_dim)) /
                       work(static_cast<double>(nearest->batch_heads), seq, seq, d, d);
  return (backward ? nearest->backward_seconds : nearest->forward_seconds) * ratio;
}

double ComputeModel::accumulation_seconds(const ir::TensorType& grad, int micro_batches) const {
  if (micro_batches < 2) return 0;
  const std::vector<ir::TensorType> one{grad}, two{grad, grad};
  return (micro_batches - 1) * op_seconds(ir::OpKind::Add, two, one, {}) + op_seconds(ir::OpKind::Scale, one, one, {});
}

double ComputeModel::op_seconds(const FusedOp& how, ir::OpKind kind, const std::vector<ir::TensorType>& inputs,
                                const std::vector<ir::TensorType>& outputs, const ir::Attrs& attrs) const {
  switch (how.how) {
    case FusedOp::How::runs: return op_seconds(kind, inputs, outputs, attrs);
    case FusedOp::How::fused_away: return 0;
    case FusedOp::How::attention:
    case FusedOp::How::attention_grad: break;
  }
  const double share = how.whole_elements > 0 && !outputs.empty()
                           ? static_cast<double>(outputs[0].numel()) / static_cast<double>(how.whole_elements)
                           : 1.0;
  return op_overhead_.value_or(0.0) + share * attention_seconds(how.block, how.how == FusedOp::How::attention_grad);
}

double ComputeModel::op_seconds(ir::OpKind kind, const std::vector<ir::TensorType>& inputs,
                                const std::vector<ir::TensorType>& outputs, const ir::Attrs& attrs) const {
  if (op_info(kind).is_source) return 0;
  const double overhead = op_overhead_.value_or(0.0);
  switch (kind) {  // layout ops that only relabel memory (still issued by the executor)
    case ir::OpKind::Reshape: return overhead;
    default: break;
  }
  DType dtype = outputs.empty() ? DType::f32 : outputs[0].dtype;
  if (!inputs.empty() && is_float(inputs[0].dtype)) dtype = inputs[0].dtype;
  if (kind == ir::OpKind::Dot && !gemm_.empty()) {
    auto lhs_batch = attrs.get_ints("lhs_batch");
    auto lhs_contract = attrs.get_ints("lhs_contract");
    auto rhs_batch = attrs.get_ints("rhs_batch");
    auto rhs_contract = attrs.get_ints("rhs_contract");
    if (lhs_batch.is_ok() && lhs_contract.is_ok() && rhs_batch.is_ok() && rhs_contract.is_ok()) {
      const ir::Shape& lhs = inputs[0].shape;
      const ir::Shape& rhs = inputs[1].shape;
      const double batch = product(lhs, *lhs_batch);
      const double k = product(lhs, *lhs_contract);
      const double m = product(lhs, ir::dot_free_dims(inputs[0].rank(), *lhs_batch, *lhs_contract));
      const double n = product(rhs, ir::dot_free_dims(inputs[1].rank(), *rhs_batch, *rhs_contract));
      return overhead + gemm_seconds(static_cast<int64_t>(batch), static_cast<int64_t>(m), static_cast<int64_t>(n),
                                     static_cast<int64_t>(k), dtype);
    }
  }
  int64_t bytes = 0;
  for (const ir::TensorType& type : inputs) bytes += type.bytes();
  for (const ir::TensorType& type : outputs) bytes += type.bytes();
  const double flops = ir::op_flops(kind, inputs, outputs, attrs);
  if (is_contraction(kind)) return overhead + roofline_seconds(flops, bytes, dtype, true);
  return overhead + memory_seconds(kind, flops, bytes, dtype);
}

int64_t sharded_bytes(const ir::TensorType& type, const std::vector<int64_t>& parts) {
  int64_t elements = 1;
  for (size_t d = 0; d < type.shape.size(); ++d) {
    const int64_t split = d < parts.size() && parts[d] > 0 ? parts[d] : 1;
    elements *= type.shape[d] / split;
  }
  return elements * dtype_bytes(type.dtype);
}

}  // namespace strata::cost
