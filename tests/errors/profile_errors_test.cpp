// The bad-input table for profile HDF5 files, at the loader (profile::Store::read), since no
// subcommand reads a profile yet: each case writes a valid profile, breaks one thing with the
// HDF5 C API (or the file system), and expects one Error naming the file, the field and the reason.
#include <gtest/gtest.h>
#include <hdf5.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "errors/error_test_util.h"
#include "strata/profile/store.h"

namespace strata::errors {
namespace {

namespace fs = std::filesystem;
using profile::Profile;
using profile::Store;

const std::string kCurve = "/collectives/all_reduce/1x2/1x2/axis1/f32";

Profile valid_profile() {
  Profile p;
  p.cluster_name = "cpu-2";
  p.gpu_model = "cpu";
  p.backend = "cpu";
  p.library_versions = "test";
  p.date = "2026-01-01T00:00:00Z";
  profile::CollectiveCurve curve;
  curve.kind = cluster::Collective::all_reduce;
  curve.submesh = {1, 2};
  curve.mesh = {1, 2};
  curve.axis = 1;
  curve.sizes_bytes = {1024, 4096, 16384};
  curve.seconds = {1e-5, 2e-5, 6e-5};
  p.collectives.push_back(curve);
  p.p2p.push_back({false, {1024, 4096}, {3e-6, 9e-6}});
  p.gemm.push_back({128, 64, 32, DType::f32, 2e-4});
  p.gemm.push_back({256, 64, 32, DType::f32, 4e-4});
  return p;
}

// Opens the file read-write for one change and closes it; every call is checked.
class H5Edit {
 public:
  explicit H5Edit(const std::string& path) : id_(H5Fopen(path.c_str(), H5F_ACC_RDWR, H5P_DEFAULT)) {
    EXPECT_GE(id_, 0) << "cannot open " << path;
  }
  ~H5Edit() { EXPECT_GE(H5Fclose(id_), 0); }
  hid_t id() const { return id_; }

  void delete_attr(const char* name) { EXPECT_GE(H5Adelete(id_, name), 0) << name; }
  void delete_link(const std::string& path) { EXPECT_GE(H5Ldelete(id_, path.c_str(), H5P_DEFAULT), 0) << path; }
  void move(const std::string& from, const std::string& to) {
    EXPECT_GE(H5Lmove(id_, from.c_str(), id_, to.c_str(), H5P_DEFAULT, H5P_DEFAULT), 0) << from;
  }
  // Replaces a root attribute by one of `count` ints (count 0: a scalar).
  void int_attr(const char* name, int value, hsize_t count = 0) {
    if (H5Aexists(id_, name) > 0) delete_attr(name);
    const hid_t space = count == 0 ? H5Screate(H5S_SCALAR) : H5Screate_simple(1, &count, nullptr);
    const hid_t attr = H5Acreate2(id_, name, H5T_NATIVE_INT, space, H5P_DEFAULT, H5P_DEFAULT);
    const std::vector<int> values(count == 0 ? 1 : count, value);
    EXPECT_GE(H5Awrite(attr, H5T_NATIVE_INT, values.data()), 0) << name;
    H5Aclose(attr);
    H5Sclose(space);
  }
  // Replaces a root attribute by an array of `count` fixed-length strings.
  void string_array_attr(const char* name, const std::string& value, hsize_t count) {
    if (H5Aexists(id_, name) > 0) delete_attr(name);
    const hid_t type = H5Tcopy(H5T_C_S1);
    H5Tset_size(type, value.size());
    const hid_t space = H5Screate_simple(1, &count, nullptr);
    const hid_t attr = H5Acreate2(id_, name, type, space, H5P_DEFAULT, H5P_DEFAULT);
    std::string values;
    for (hsize_t i = 0; i < count; ++i) values += value;
    EXPECT_GE(H5Awrite(attr, type, values.data()), 0) << name;
    H5Aclose(attr);
    H5Sclose(space);
    H5Tclose(type);
  }
  // Replaces a dataset by a new one with these values.
  template <typename T>
  void dataset(const std::string& path, const std::vector<T>& values) {
    if (H5Lexists(id_, path.c_str(), H5P_DEFAULT) > 0) delete_link(path);
    const hid_t type = std::is_same_v<T, double> ? H5T_NATIVE_DOUBLE : H5T_NATIVE_INT64;
    const hsize_t count = values.size();
    const hid_t space = H5Screate_simple(1, &count, nullptr);
    const hid_t set = H5Dcreate2(id_, path.c_str(), type, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    EXPECT_GE(H5Dwrite(set, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, values.data()), 0) << path;
    H5Dclose(set);
    H5Sclose(space);
  }

 private:
  hid_t id_;
};

struct ProfileCase {
  std::string id;
  std::function<void(const std::string& path)> break_it;  // spoils the valid file at `path`
  std::string field;                                      // expected in Error::field
  std::string reason;                                     // expected in Error::reason
  std::string expected_cluster;                           // passed to Store::read
};

const double kNaN = std::numeric_limits<double>::quiet_NaN();

std::vector<ProfileCase> profile_cases() {
  return {
      {"profile_truncated",
       [](const std::string& path) { fs::resize_file(path, fs::file_size(path) / 3); }, "", "truncated or corrupt", ""},
      {"profile_not_hdf5", [](const std::string& path) { std::ofstream(path, std::ios::trunc) << "model: gpt\n"; }, "",
       "not a readable HDF5 file", ""},
      {"profile_empty_file", [](const std::string& path) { std::ofstream(path, std::ios::trunc); }, "",
       "not a readable HDF5 file", ""},
      {"profile_missing_file", [](const std::string& path) { fs::remove(path); }, "", "cannot open the profile file",
       ""},
      {"profile_directory",
       [](const std::string& path) {
         fs::remove(path);
         fs::create_directory(path);
       },
       "", "is a directory", ""},
      {"profile_unchecksummed_format",
       [](const std::string& path) {
         // HDF5's default (1.6-compatible) format: superblock 0, no metadata checksums.
         const hid_t file = H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
         ASSERT_GE(file, 0);
         EXPECT_GE(H5Fclose(file), 0);
       },
       "superblock", "HDF5 format version 0 has no metadata checksums", ""},
      {"profile_schema_version", [](const std::string& path) { H5Edit(path).int_attr("schema_version", 7); },
       "schema_version", "is 7, this build reads 1", ""},
      {"profile_partial", [](const std::string& path) { H5Edit(path).delete_attr("complete"); }, "complete",
       "a partial profile", ""},
      {"profile_complete_zero", [](const std::string& path) { H5Edit(path).int_attr("complete", 0); }, "complete",
       "is 0, not 1", ""},
      {"profile_schema_version_array", [](const std::string& path) { H5Edit(path).int_attr("schema_version", 1, 4); },
       "schema_version", "must be a single value", ""},
      {"profile_cluster_string_array",
       [](const std::string& path) { H5Edit(path).string_array_attr("cluster", "cpu-2", 3); }, "cluster",
       "must be a single value", ""},
      {"profile_cluster_not_a_string", [](const std::string& path) { H5Edit(path).int_attr("cluster", 2); }, "cluster",
       "must be a fixed-length string attribute", ""},
      {"profile_missing_gpu_model", [](const std::string& path) { H5Edit(path).delete_attr("gpu_model"); },
       "gpu_model", "missing attribute", ""},
      {"profile_other_cluster", [](const std::string&) {}, "cluster", "profile is of cluster 'cpu-2', not of the requested 'dgx'",
       "dgx"},
      {"profile_missing_dataset", [](const std::string& path) { H5Edit(path).delete_link(kCurve + "/seconds"); },
       kCurve + "/seconds", "missing dataset", ""},
      {"profile_nan_seconds",
       [](const std::string& path) { H5Edit(path).dataset<double>(kCurve + "/seconds", {1e-5, kNaN, 6e-5}); }, kCurve,
       "seconds must be positive and finite (value 1 is nan)", ""},
      {"profile_negative_seconds",
       [](const std::string& path) { H5Edit(path).dataset<double>("/p2p/intra_node/seconds", {3e-6, -9e-6}); },
       "/p2p/intra_node", "seconds must be positive and finite (value 1 is -0.000009)", ""},
      {"profile_sizes_not_increasing",
       [](const std::string& path) { H5Edit(path).dataset<int64_t>(kCurve + "/sizes_bytes", {1024, 16384, 4096}); },
       kCurve, "sizes_bytes must increase", ""},
      {"profile_length_mismatch",
       [](const std::string& path) { H5Edit(path).dataset<double>(kCurve + "/seconds", {1e-5, 2e-5}); }, kCurve,
       "of equal length", ""},
      {"profile_gemm_nan_seconds",
       [](const std::string& path) { H5Edit(path).dataset<double>("/gemm/f32/seconds", {2e-4, kNaN}); }, "/gemm/f32",
       "point 1: m, n, k and seconds must be positive", ""},
      {"profile_gemm_zero_size",
       [](const std::string& path) { H5Edit(path).dataset<int64_t>("/gemm/f32/m", {0, 256}); }, "/gemm/f32",
       "point 0: m, n, k and seconds must be positive", ""},
      {"profile_gemm_length_mismatch",
       [](const std::string& path) { H5Edit(path).dataset<int64_t>("/gemm/f32/k", {32}); }, "/gemm/f32",
       "differ in length", ""},
      {"profile_bad_shape_group",
       [](const std::string& path) { H5Edit(path).move("/collectives/all_reduce/1x2", "/collectives/all_reduce/1by2"); },
       "/collectives/all_reduce/1by2", "is not a shape like 2x4", ""},
      {"profile_bad_axis_group",
       [](const std::string& path) {
         H5Edit(path).move("/collectives/all_reduce/1x2/1x2/axis1", "/collectives/all_reduce/1x2/1x2/axis7");
       },
       "/collectives/all_reduce/1x2/1x2/axis7", "must be axis0 or axis1", ""},
      {"profile_unknown_dtype_group",
       [](const std::string& path) { H5Edit(path).move(kCurve, "/collectives/all_reduce/1x2/1x2/axis1/f8"); },
       "/collectives/all_reduce/1x2/1x2/axis1/f8", "unknown dtype 'f8'", ""},
      {"profile_mesh_not_covering_submesh",
       [](const std::string& path) {
         H5Edit(path).move("/collectives/all_reduce/1x2/1x2", "/collectives/all_reduce/1x2/1x3");
       },
       "/collectives/all_reduce/1x2/1x3", "logical mesh does not cover the submesh", ""},
  };
}

class ProfileErrors : public ::testing::TestWithParam<ProfileCase> {};

TEST_P(ProfileErrors, ReadGivesOneErrorNamingFileFieldReason) {
  const ProfileCase& c = GetParam();
  const fs::path dir = fresh_temp_dir(c.id);
  const std::string path = (dir / "profile.h5").string();
  ASSERT_TRUE(Store::write(path, valid_profile()).is_ok());
  ASSERT_TRUE(Store::read(path).is_ok()) << "the unbroken profile must read";
  c.break_it(path);
  const Expected<Profile> read = Store::read(path, c.expected_cluster);
  ASSERT_FALSE(read.is_ok()) << c.id << " was accepted";
  const Error& error = read.error();
  EXPECT_EQ(error.file, path);
  if (c.field.empty()) {
    EXPECT_EQ(error.field, "");
  } else {
    EXPECT_NE(error.field.find(c.field), std::string::npos) << "field: " << error.field;
  }
  EXPECT_NE(error.reason.find(c.reason), std::string::npos) << "reason: " << error.reason;
  EXPECT_EQ(error.message().find('\n'), std::string::npos);
  fs::remove_all(dir);
}

// Printed as its id: gtest_discover_tests names each ctest entry ".../<id>" from it.
void PrintTo(const ProfileCase& c, std::ostream* out) { *out << c.id; }

INSTANTIATE_TEST_SUITE_P(Cases, ProfileErrors, ::testing::ValuesIn(profile_cases()));

}  // namespace

std::vector<std::string> profile_case_ids() {
  std::vector<std::string> ids;
  for (const ProfileCase& c : profile_cases()) ids.push_back(c.id);
  return ids;
}

}  // namespace strata::errors
