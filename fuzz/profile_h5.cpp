// Fuzz target: the HDF5 profile reader. The input is written to a temporary file and read back
// with profile::Store::read, as `strata plan --profile` would.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>

#include "fuzz/fuzz_util.h"
#include "strata/profile/store.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string path =
      (std::filesystem::temp_directory_path() / ("strata-fuzz-profile-" + std::to_string(::getpid()) + ".h5")).string();
  std::FILE* out = std::fopen(path.c_str(), "wb");
  if (out == nullptr) std::abort();
  if (size > 0 && std::fwrite(data, 1, size, out) != size) std::abort();
  if (std::fclose(out) != 0) std::abort();
  strata::Expected<strata::profile::Profile> profile = strata::profile::Store::read(path);
  if (!profile) {
    strata::fuzz::check_error(profile.error(), path);
  } else {
    // What a read profile promises the interpolation: usable curves and GEMM points.
    for (const auto& curve : profile->collectives) {
      if (curve.sizes_bytes.empty() || curve.sizes_bytes.size() != curve.seconds.size()) std::abort();
      if (curve.mesh.num_devices() != curve.submesh.num_devices()) std::abort();
    }
    for (const auto& point : profile->gemm) {
      if (point.m <= 0 || point.n <= 0 || point.k <= 0 || !(point.seconds > 0)) std::abort();
    }
  }
  std::remove(path.c_str());
  return 0;
}
