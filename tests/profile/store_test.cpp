// Profile store round trip and its rejections (partial, truncated, other schema, other cluster),
// and ProfileCommModel lookups: exact points, log-size interpolation, extrapolation, fallback.
#include <gtest/gtest.h>
#include <hdf5.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include "strata/profile/comm_model.h"
#include "strata/profile/store.h"

namespace strata::profile {
namespace {

using cluster::Collective;
using cluster::CommGroup;

std::string temp_path(const std::string& name) {
  return (std::filesystem::temp_directory_path() / ("strata_profile_" + std::to_string(getpid()) + "_" + name))
      .string();
}

Profile sample_profile() {
  Profile profile;
  profile.cluster_name = "cpu-4";
  profile.gpu_model = "cpu";
  profile.backend = "cpu";
  profile.library_versions = "MPI 3.1";
  profile.date = "2026-11-23T11:00:00Z";
  profile.collectives.push_back({Collective::all_reduce, {2, 2}, {2, 2}, 0, DType::f32, {1024, 4096, 16384},
                                 {1e-5, 2e-5, 6e-5}});
  profile.collectives.push_back({Collective::all_gather, {1, 2}, {1, 2}, 1, DType::bf16, {1024, 4096}, {3e-6, 5e-6}});
  profile.p2p.push_back({false, {1024, 4096}, {1e-6, 2e-6}});
  profile.p2p.push_back({true, {1024, 4096}, {4e-6, 9e-6}});
  profile.gemm.push_back({64, 64, 64, DType::f32, 1e-4});
  profile.gemm.push_back({128, 64, 32, DType::f32, 2e-4});
  return profile;
}

cluster::ClusterSpec sample_cluster() {
  cluster::ClusterSpec spec;
  spec.name = "cpu-4";
  spec.num_nodes = 2;
  spec.gpus_per_node = 2;
  spec.intra_node = {1e9, 1e-5};
  spec.inter_node = {1e8, 5e-5};
  return spec;
}

// Rewrites (or deletes, when value < 0) an integer root attribute of an HDF5 file.
void set_int_attr(const std::string& path, const char* name, int value) {
  hid_t file = H5Fopen(path.c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
  ASSERT_GE(file, 0);
  ASSERT_GE(H5Adelete(file, name), 0);
  if (value >= 0) {
    hid_t space = H5Screate(H5S_SCALAR);
    hid_t attr = H5Acreate2(file, name, H5T_NATIVE_INT, space, H5P_DEFAULT, H5P_DEFAULT);
    ASSERT_GE(H5Awrite(attr, H5T_NATIVE_INT, &value), 0);
    H5Aclose(attr);
    H5Sclose(space);
  }
  ASSERT_GE(H5Fclose(file), 0);
}

TEST(Store, RoundTrip) {
  const std::string path = temp_path("roundtrip.h5");
  ASSERT_TRUE(Store::write(path, sample_profile()).is_ok());
  EXPECT_FALSE(std::filesystem::exists(path + ".tmp"));
  auto read = Store::read(path, "cpu-4");
  ASSERT_TRUE(read.is_ok()) << read.error().message();
  EXPECT_EQ(read->cluster_name, "cpu-4");
  EXPECT_EQ(read->library_versions, "MPI 3.1");
  EXPECT_EQ(read->date, "2026-11-23T11:00:00Z");
  ASSERT_EQ(read->collectives.size(), 2u);
  // Read back in name order: all_reduce before all_gather (collective order), so index 0 is all_reduce.
  const CollectiveCurve& ar = read->collectives[0];
  EXPECT_EQ(ar.kind, Collective::all_reduce);
  EXPECT_EQ(ar.submesh, (cluster::Submesh{2, 2}));
  EXPECT_EQ(ar.axis, 0);
  EXPECT_EQ(ar.sizes_bytes, (std::vector<int64_t>{1024, 4096, 16384}));
  EXPECT_EQ(ar.seconds, (std::vector<double>{1e-5, 2e-5, 6e-5}));
  EXPECT_EQ(read->collectives[1].dtype, DType::bf16);
  ASSERT_EQ(read->p2p.size(), 2u);
  EXPECT_TRUE(read->p2p[1].cross_node);
  EXPECT_EQ(read->p2p[1].seconds[1], 9e-6);
  ASSERT_EQ(read->gemm.size(), 2u);
  EXPECT_EQ(read->gemm[1].m, 128);
  EXPECT_EQ(read->gemm[1].seconds, 2e-4);
  std::filesystem::remove(path);
}

TEST(Store, RejectsPartialProfile) {
  const std::string path = temp_path("partial.h5");
  ASSERT_TRUE(Store::write(path, sample_profile()).is_ok());
  set_int_attr(path, "complete", -1);
  auto read = Store::read(path);
  ASSERT_FALSE(read.is_ok());
  EXPECT_EQ(read.error().file, path);
  EXPECT_EQ(read.error().field, "complete");
  std::filesystem::remove(path);
}

TEST(Store, RejectsOtherSchemaVersion) {
  const std::string path = temp_path("schema.h5");
  ASSERT_TRUE(Store::write(path, sample_profile()).is_ok());
  set_int_attr(path, "schema_version", 7);
  auto read = Store::read(path);
  ASSERT_FALSE(read.is_ok());
  EXPECT_EQ(read.error().message(), path + ": schema_version: is 7, this build reads 1 (re-run strata profile)");
  std::filesystem::remove(path);
}

TEST(Store, RejectsOtherCluster) {
  const std::string path = temp_path("cluster.h5");
  ASSERT_TRUE(Store::write(path, sample_profile()).is_ok());
  auto read = Store::read(path, "aws-p3-2node");
  ASSERT_FALSE(read.is_ok());
  EXPECT_EQ(read.error().field, "cluster");
  EXPECT_NE(read.error().reason.find("'cpu-4'"), std::string::npos);
  std::filesystem::remove(path);
}

TEST(Store, RejectsTruncatedAndMissingFiles) {
  const std::string path = temp_path("truncated.h5");
  ASSERT_TRUE(Store::write(path, sample_profile()).is_ok());
  const auto size = std::filesystem::file_size(path);
  std::filesystem::resize_file(path, size / 2);
  auto read = Store::read(path);
  ASSERT_FALSE(read.is_ok());
  EXPECT_EQ(read.error().file, path);
  EXPECT_EQ(read.error().message().find('\n'), std::string::npos);
  std::ofstream(path, std::ios::trunc) << "not hdf5";
  auto garbage = Store::read(path);
  ASSERT_FALSE(garbage.is_ok());
  EXPECT_EQ(garbage.error().message(), path + ": not a readable HDF5 file (truncated or corrupt)");
  std::filesystem::remove(path);
  auto missing = Store::read(path);
  ASSERT_FALSE(missing.is_ok());
  EXPECT_EQ(missing.error().reason, "cannot open the profile file");
}

TEST(Store, RejectsUnusableCurveAndUnwritablePath) {
  const std::string path = temp_path("decreasing.h5");
  Profile profile = sample_profile();
  profile.collectives[0].sizes_bytes = {4096, 1024, 16384};
  ASSERT_TRUE(Store::write(path, profile).is_ok());
  auto read = Store::read(path);
  ASSERT_FALSE(read.is_ok());
  EXPECT_EQ(read.error().message(),
            path + ": /collectives/all_reduce/2x2/2x2/axis0/f32: sizes_bytes must increase and seconds be positive");
  std::filesystem::remove(path);
  Status written = Store::write("/nonexistent-dir/p.h5", sample_profile());
  ASSERT_FALSE(written.is_ok());
  EXPECT_EQ(written.error().file, "/nonexistent-dir/p.h5.tmp");
  EXPECT_NE(written.error().reason.find("HDF5 call H5Fcreate failed"), std::string::npos);
}

// The runtime costs (2026-11-24): written and read back; a profile without them (as every older
// file) reads them as absent; a bad value is refused naming its dataset.
TEST(Store, RuntimeCostsRoundTripAndMayBeAbsent) {
  const std::string path = temp_path("runtime_costs.h5");
  Profile profile = sample_profile();
  profile.op_overhead_seconds = 6.5e-6;
  profile.memory_ops = {{"add", {1000, 4000}, {1e-6, 2e-6}}, {"softmax", {2000, 8000}, {1e-6, 6e-6}}};
  ASSERT_TRUE(Store::write(path, profile).is_ok());
  auto read = Store::read(path);
  ASSERT_TRUE(read.is_ok()) << read.error().message();
  ASSERT_TRUE(read->op_overhead_seconds.has_value());
  EXPECT_EQ(*read->op_overhead_seconds, 6.5e-6);
  ASSERT_EQ(read->memory_ops.size(), 2u);
  EXPECT_EQ(read->memory_ops[1].op, "softmax");
  EXPECT_EQ(read->memory_ops[1].bytes, (std::vector<int64_t>{2000, 8000}));
  EXPECT_EQ(read->memory_ops[1].seconds, (std::vector<double>{1e-6, 6e-6}));
  // The largest point of each op: (4000 + 8000) bytes over (2 + 6) us.
  ASSERT_TRUE(read->memory_bandwidth().has_value());
  EXPECT_DOUBLE_EQ(*read->memory_bandwidth(), 12000.0 / 8e-6);

  ASSERT_TRUE(Store::write(path, sample_profile()).is_ok());
  auto old = Store::read(path);
  ASSERT_TRUE(old.is_ok()) << old.error().message();
  EXPECT_FALSE(old->op_overhead_seconds.has_value());
  EXPECT_TRUE(old->memory_ops.empty());
  EXPECT_FALSE(old->memory_bandwidth().has_value());

  profile.op_overhead_seconds = -1e-6;
  ASSERT_TRUE(Store::write(path, profile).is_ok());
  auto negative = Store::read(path);
  ASSERT_FALSE(negative.is_ok());
  EXPECT_EQ(negative.error().message(), path + ": /op_overhead/seconds_per_op: must hold one finite value >= 0");
  profile.op_overhead_seconds = 1e-6;
  profile.memory_ops[0].seconds = {1e-6, 0};
  ASSERT_TRUE(Store::write(path, profile).is_ok());
  auto zero = Store::read(path);
  ASSERT_FALSE(zero.is_ok());
  EXPECT_NE(zero.error().message().find("/memory_ops/add"), std::string::npos) << zero.error().message();
  std::filesystem::remove(path);
}

// The fused attention's points (session 19): written and read back; absent in older files; a
// malformed point is refused in one line naming /attention.
TEST(Store, AttentionRoundTripAndMayBeAbsent) {
  const std::string path = temp_path("attention.h5");
  Profile profile = sample_profile();
  profile.attention = {{64, 256, 1024, 2.2e-4, 6.0e-4}, {80, 512, 1024, 5.5e-4, 1.8e-3}};
  ASSERT_TRUE(Store::write(path, profile).is_ok());
  auto read = Store::read(path);
  ASSERT_TRUE(read.is_ok()) << read.error().message();
  ASSERT_EQ(read->attention.size(), 2u);
  EXPECT_EQ(read->attention[1].head_dim, 80);
  EXPECT_EQ(read->attention[1].batch_heads, 512);
  EXPECT_EQ(read->attention[1].seq, 1024);
  EXPECT_EQ(read->attention[1].forward_seconds, 5.5e-4);
  EXPECT_EQ(read->attention[1].backward_seconds, 1.8e-3);

  ASSERT_TRUE(Store::write(path, sample_profile()).is_ok());
  auto old = Store::read(path);
  ASSERT_TRUE(old.is_ok()) << old.error().message();
  EXPECT_TRUE(old->attention.empty());

  profile.attention[1].backward_seconds = 0;
  ASSERT_TRUE(Store::write(path, profile).is_ok());
  auto bad = Store::read(path);
  ASSERT_FALSE(bad.is_ok());
  EXPECT_EQ(bad.error().message(), path + ": /attention: point 1: sizes and seconds must be positive and finite");
  std::filesystem::remove(path);
}

TEST(Interpolate, ExactBetweenAndBeyond) {
  const std::vector<int64_t> sizes = {1024, 4096, 16384};
  const std::vector<double> seconds = {1e-5, 2e-5, 6e-5};
  EXPECT_DOUBLE_EQ(interpolate_seconds(sizes, seconds, 4096), 2e-5);
  EXPECT_DOUBLE_EQ(interpolate_seconds(sizes, seconds, 16384), 6e-5);
  // 2048 is halfway between 1024 and 4096 in log size.
  EXPECT_NEAR(interpolate_seconds(sizes, seconds, 2048), 1.5e-5, 1e-15);
  EXPECT_NEAR(interpolate_seconds(sizes, seconds, 8192), 4e-5, 1e-15);
  // Beyond: last bandwidth (16384 B in 60 us). Below: the smallest point's time.
  EXPECT_NEAR(interpolate_seconds(sizes, seconds, 65536), 2.4e-4, 1e-15);
  EXPECT_DOUBLE_EQ(interpolate_seconds(sizes, seconds, 10), 1e-5);
}

TEST(ProfileCommModel, LooksUpInterpolatesAndFallsBack) {
  ProfileCommModel model(sample_profile(), sample_cluster());
  CommGroup group{{2, 2}, {2, 2}, 0, false};
  EXPECT_DOUBLE_EQ(model.seconds(Collective::all_reduce, group, 4096, DType::f32), 2e-5);
  EXPECT_NEAR(model.seconds(Collective::all_reduce, group, 2048, DType::f32), 1.5e-5, 1e-15);
  CommGroup p2p{{}, {}, -1, true};
  EXPECT_DOUBLE_EQ(model.seconds(Collective::send_recv, p2p, 4096, DType::f32), 9e-6);
  // All devices of (1,2) = axis 1 of its (1,2) view, which the profile has for bf16 all-gather.
  CommGroup whole{{1, 2}, {2, 1}, -1, false};
  EXPECT_DOUBLE_EQ(model.seconds(Collective::all_gather, whole, 1024, DType::bf16), 3e-6);
  EXPECT_EQ(model.fallback_count(), 0);
  // No entry: the alpha-beta answer (axis 0 of (2,2) spans nodes: 1e8 B/s, 50 us), counted.
  const double expected = 0.5 * 4096 / 1e8 + 5e-5;
  EXPECT_NEAR(model.seconds(Collective::all_to_all, group, 4096, DType::f32), expected, 1e-15);
  EXPECT_NEAR(model.seconds(Collective::all_to_all, group, 4096, DType::f32), expected, 1e-15);
  EXPECT_NEAR(model.seconds(Collective::all_reduce, group, 4096, DType::bf16), 4096 / 1e8 + 1e-4, 1e-15);
  EXPECT_EQ(model.fallback_count(), 3);
  EXPECT_EQ(model.fallback_groups(),
            (std::vector<std::string>{"all_reduce 2x2/2x2 axis0 bf16", "all_to_all 2x2/2x2 axis0 f32"}));
  EXPECT_NE(model.describe().find("3 lookups over 2 unprofiled groups"), std::string::npos);
  EXPECT_EQ(model.gemm_seconds(128, 64, 32, DType::f32), 2e-4);
  EXPECT_FALSE(model.gemm_seconds(128, 64, 32, DType::bf16).has_value());
}

}  // namespace
}  // namespace strata::profile
