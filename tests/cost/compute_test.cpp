// The compute model: roofline limits (FLOP-bound GEMMs, bandwidth-bound elementwise ops), dtype
// peaks, the measured-GEMM table, and per-device bytes of split tensors.
#include <gtest/gtest.h>

#include "strata/cost/compute.h"

namespace strata::cost {
namespace {

cluster::ClusterSpec v100() {
  cluster::ClusterSpec spec;
  spec.name = "test";
  spec.peak_flops_f32 = 15.7e12;
  spec.peak_flops_f16 = 125e12;
  spec.memory_bandwidth_bytes_per_second = 900e9;
  return spec;
}

ir::Attrs matmul() {
  return {{"lhs_batch", std::vector<int64_t>{}}, {"rhs_batch", std::vector<int64_t>{}},
          {"lhs_contract", std::vector<int64_t>{1}}, {"rhs_contract", std::vector<int64_t>{0}}};
}

double dot_seconds(const ComputeModel& model, int64_t m, int64_t n, int64_t k, DType dtype) {
  return model.op_seconds(ir::OpKind::Dot, {{{m, k}, dtype}, {{k, n}, dtype}}, {{{m, n}, dtype}}, matmul());
}

TEST(ComputeModel, LargeGemmIsFlopBound) {
  const ComputeModel model(v100());
  const double flops = 2.0 * 4096 * 4096 * 4096;
  EXPECT_DOUBLE_EQ(dot_seconds(model, 4096, 4096, 4096, DType::f32), flops / (15.7e12 * 0.6));
  // Tensor cores: f16 uses the f16 peak; bf16 has none on this GPU and falls back to f32's.
  EXPECT_DOUBLE_EQ(dot_seconds(model, 4096, 4096, 4096, DType::f16), flops / (125e12 * 0.6));
  EXPECT_DOUBLE_EQ(dot_seconds(model, 4096, 4096, 4096, DType::bf16), flops / (15.7e12 * 0.6));
}

TEST(ComputeModel, ElementwiseIsBandwidthBound) {
  const ComputeModel model(v100());
  const ir::TensorType x{{1024, 1024}, DType::f32};
  const double seconds = model.op_seconds(ir::OpKind::Add, {x, x}, {x}, {});
  EXPECT_DOUBLE_EQ(seconds, 3.0 * x.bytes() / (900e9 * 0.8));
  // A thin GEMM (k = 1) moves more than it computes.
  const double thin = dot_seconds(model, 8192, 8192, 1, DType::f32);
  EXPECT_DOUBLE_EQ(thin, (8192.0 * 8192 + 2 * 8192) * 4 / (900e9 * 0.8));
  // Reshape relabels memory; sources cost nothing here.
  EXPECT_EQ(model.op_seconds(ir::OpKind::Reshape, {x}, {{{1024 * 1024}, DType::f32}}, {{"shape", std::vector<int64_t>{-1}}}), 0);
  EXPECT_EQ(model.op_seconds(ir::OpKind::Parameter, {}, {x}, {}), 0);
  ComputeOptions options;
  options.bandwidth_efficiency = 0.4;
  EXPECT_DOUBLE_EQ(ComputeModel(v100(), options).op_seconds(ir::OpKind::Add, {x, x}, {x}, {}), 2 * seconds);
}

TEST(ComputeModel, MeasuredGemmTable) {
  ComputeModel model(v100());
  EXPECT_FALSE(model.has_gemm_table());
  model.use_gemm_table({{1024, 1024, 1024, DType::f16, 2e-4}, {64, 64, 64, DType::f16, 5e-6},
                        {1024, 1024, 1024, DType::f32, 0}});  // a zero time is ignored
  EXPECT_TRUE(model.has_gemm_table());
  EXPECT_DOUBLE_EQ(dot_seconds(model, 1024, 1024, 1024, DType::f16), 2e-4);
  // The nearest point, scaled by FLOPs: twice the rows, twice the time.
  EXPECT_DOUBLE_EQ(dot_seconds(model, 2048, 1024, 1024, DType::f16), 4e-4);
  EXPECT_DOUBLE_EQ(dot_seconds(model, 64, 64, 32, DType::f16), 2.5e-6);
  // No f32 points: the roofline.
  EXPECT_DOUBLE_EQ(dot_seconds(model, 4096, 4096, 4096, DType::f32), 2.0 * 4096 * 4096 * 4096 / (15.7e12 * 0.6));
  EXPECT_DOUBLE_EQ(model.gemm_seconds(4, 1024, 1024, 1024, DType::f16), 8e-4);
}

// A profile's runtime costs: the measured bandwidth replaces datasheet x efficiency, the per-op
// cost lands on every executed op (Reshape too), never on sources; without them nothing changes.
TEST(ComputeModel, ProfileRuntimeCosts) {
  const ir::TensorType x{{1024, 1024}, DType::f32};
  const ComputeModel datasheet(v100());
  EXPECT_NE(datasheet.describe().find("datasheet"), std::string::npos) << datasheet.describe();
  EXPECT_NE(datasheet.describe().find("no per-op cost"), std::string::npos) << datasheet.describe();

  profile::Profile profile;
  profile.gemm = {{1024, 1024, 1024, DType::f32, 2e-4}};
  profile.op_overhead_seconds = 7e-6;
  profile.memory_ops = {{"add", {1 << 20, 1 << 24}, {1e-6, 1e-5}}, {"gelu", {1 << 24}, {3e-5}}};
  ComputeModel model(v100());
  model.use_profile(profile);
  const double bandwidth = 2.0 * (1 << 24) / 4e-5;  // 0.84 TB/s
  ASSERT_TRUE(model.memory_bandwidth().has_value());
  EXPECT_DOUBLE_EQ(*model.memory_bandwidth(), bandwidth);
  EXPECT_DOUBLE_EQ(dot_seconds(model, 1024, 1024, 1024, DType::f32), 7e-6 + 2e-4);
  EXPECT_DOUBLE_EQ(model.op_seconds(ir::OpKind::Reshape, {x}, {{{1024 * 1024}, DType::f32}},
                                    {{"shape", std::vector<int64_t>{-1}}}),
                   7e-6);
  EXPECT_EQ(model.op_seconds(ir::OpKind::Parameter, {}, {x}, {}), 0);
  EXPECT_NE(model.describe().find("measured 0.839 TB/s"), std::string::npos) << model.describe();
  // Each class at its own kernel's bandwidth (the largest point): Add at add's 1.68 TB/s, Tanh at
  // gelu's 0.56 TB/s; a Transpose (no class) at the aggregate.
  ComputeModel by_class(v100());
  by_class.use_profile(profile);
  EXPECT_DOUBLE_EQ(by_class.op_seconds(ir::OpKind::Add, {x, x}, {x}, {}), 7e-6 + 3.0 * x.bytes() / ((1 << 24) / 1e-5));
  EXPECT_DOUBLE_EQ(by_class.op_seconds(ir::OpKind::Tanh, {x}, {x}, {}), 7e-6 + 2.0 * x.bytes() / ((1 << 24) / 3e-5));
  EXPECT_DOUBLE_EQ(by_class.op_seconds(ir::OpKind::Transpose, {x}, {x}, {{"perm", std::vector<int64_t>{1, 0}}}),
                   7e-6 + 2.0 * x.bytes() / bandwidth);
  EXPECT_NE(model.describe().find("7 us per executed op"), std::string::npos) << model.describe();

  // An old profile (GEMMs only): the datasheet roofline and no per-op cost, as before.
  profile.op_overhead_seconds.reset();
  profile.memory_ops.clear();
  model.use_profile(profile);
  EXPECT_FALSE(model.op_overhead().has_value());
  EXPECT_DOUBLE_EQ(model.op_seconds(ir::OpKind::Add, {x, x}, {x}, {}), 3.0 * x.bytes() / (900e9 * 0.8));
  EXPECT_DOUBLE_EQ(dot_seconds(model, 1024, 1024, 1024, DType::f32), 2e-4);
}

TEST(ComputeModel, ShardedBytes) {
  const ir::TensorType t{{8, 6, 4}, DType::bf16};
  EXPECT_EQ(sharded_bytes(t, {}), 8 * 6 * 4 * 2);
  EXPECT_EQ(sharded_bytes(t, {4, 1, 2}), 2 * 6 * 2 * 2);
  EXPECT_EQ(sharded_bytes(t, {1, 3}), 8 * 2 * 4 * 2);
}

}  // namespace
}  // namespace strata::cost
