// How long one op takes on one device: a roofline of FLOPs against the dtype's peak rate and of
// bytes moved against HBM bandwidth, from the cluster YAML; GEMMs from a profile's table when given,
// and from a profile that measured them, the achieved bandwidth of memory-bound ops and a fixed
// per-op cost of the executor (added to every op it runs).
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "strata/cluster/cluster.h"
#include "strata/cost/fused.h"
#include "strata/ir/op.h"
#include "strata/profile/store.h"

namespace strata::cost {

struct ComputeOptions {
  double contraction_efficiency = 0.6;  // share of peak a GEMM/convolution reaches
  double other_efficiency = 0.3;        // share of peak elementwise and normalisation ops reach
  double bandwidth_efficiency = 0.8;    // share of HBM bandwidth any op reaches
};

class ComputeModel {
 public:
  explicit ComputeModel(cluster::ClusterSpec spec, ComputeOptions options = {});

  // Measured GEMMs (profile::Profile::gemm): Dot ops are then priced by the nearest measured
  // shape of their dtype (in log m, n, k), scaled by the FLOP ratio. Points with seconds <= 0 or
  // empty dims are ignored.
  void use_gemm_table(std::vector<profile::GemmPoint> points);
  bool has_gemm_table() const { return !gemm_.empty(); }
  const std::vector<profile::GemmPoint>& gemm_table() const { return gemm_; }

  // Everything a profile measured for compute: its GEMM table, the runtime's per-op cost, the
  // achieved bandwidth of memory-bound ops and the fused attention (each only when it has it).
  void use_profile(const profile::Profile& profile);
  // The fused attention's measured kernels (profile::Profile::attention). With points the model
  // prices the graph as the cuda backend runs it (fused_for_cuda: an attention block as its
  // Attention and AttentionGrad at these rates, epilogue-fused ops free); with none, every op of
  // the graph as built (a cpu profile, no profile, an older cuda profile). A profile that timed
  // the fused kernels was measured through that backend, so its presence decides.
  void use_attention_table(std::vector<profile::AttentionPoint> points) { attention_ = std::move(points); }
  bool prices_cuda_fusion() const { return !attention_.empty(); }
  const std::vector<profile::AttentionPoint>& attention_table() const { return attention_; }
  // Added to every op the executor runs (not to sources: Parameter, Input, Constant).
  void set_op_overhead(std::optional<double> seconds) { op_overhead_ = seconds; }
  // Replaces bandwidth · bandwidth_efficiency in the roofline's memory term (measured, so no
  // efficiency factor on top).
  void set_memory_bandwidth(std::optional<double> bytes_per_second) { memory_bandwidth_ = bytes_per_second; }
  // Per class of op, the bandwidth its measured kernel reached (profile::MemoryOpCurve names:
  // "add" for binary elementwise ops, "gelu" unary, "softmax" Softmax(Grad), "layer_norm"
  // LayerNorm(Grad)); other ops use memory_bandwidth(). use_profile sets these from the largest
  // point of each curve.
  void set_memory_op_bandwidths(std::map<std::string, double> by_class) { class_bandwidth_ = std::move(by_class); }
  std::optional<double> op_overhead() const { return op_overhead_; }
  std::optional<double> memory_bandwidth() const { return memory_bandwidth_; }
  // One line on where the numbers come from (measured or the cluster file's datasheet values).
  std::string describe() const;

  // Roofline seconds: max(flops / (peak(dtype) · efficiency), bytes / (bandwidth · efficiency)).
  double roofline_seconds(double flops, int64_t bytes, DType dtype, bool contraction) const;
  // One execution of an op with these (per-device) input/output types and attributes.
  double op_seconds(ir::OpKind kind, const std::vector<ir::TensorType>& inputs,
                    const std::vector<ir::TensorType>& outputs, const ir::Attrs& attrs) const;
  // One op as the target backend runs it (`how` from fused_for_cuda; How::runs is op_seconds):
  // fused away, nothing; an attention carrier, its whole block's kernel times its devices' share
  // (its local output elements over how.whole_elements) plus the per-op cost.
  double op_seconds(const FusedOp& how, ir::OpKind kind, const std::vector<ir::TensorType>& inputs,
                    const std::vector<ir::TensorType>& outputs, const ir::Attrs& attrs) const;
  // A whole attention block's Attention (or AttentionGrad) kernel: the measured point of the
  // nearest shape (log distance in head dim, batch*heads and S*T), scaled by work
  // batch_heads * S * T * (D + Dv). Needs prices_cuda_fusion().
  double attention_seconds(const AttentionShape& block, bool backward) const;
  // A gradient of this (device) type summed over `micro_batches` > 1 micro-batches, as the
  // executor does: an Add into the sum per micro-batch after the first, one Scale by 1/B.
  double accumulation_seconds(const ir::TensorType& grad, int micro_batches) const;
  // Seconds for C[m,n] = A[m,k]·B[k,n] (times `batch`), from the table when there is one.
  double gemm_seconds(int64_t batch, int64_t m, int64_t n, int64_t k, DType dtype) const;

  const cluster::ClusterSpec& spec() const { return spec_; }
  const ComputeOptions& options() const { return options_; }

 private:
  cluster::ClusterSpec spec_;
  ComputeOptions options_;
  std::vector<profile::GemmPoint> gemm_;
  std::optional<double> op_overhead_;
  std::optional<double> memory_bandwidth_;
  std::map<std::string, double> class_bandwidth_;
  std::vector<profile::AttentionPoint> attention_;
  double memory_seconds(ir::OpKind kind, double flops, int64_t bytes, DType dtype) const;
};

// Bytes one device holds of a tensor of `type` whose dims are split into `parts[d]` blocks.
int64_t sharded_bytes(const ir::TensorType& type, const std::vector<int64_t>& parts);

}  // namespace strata::cost
