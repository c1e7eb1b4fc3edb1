// Shared by the error-table tests: where the sources are, whole-file reads, scratch directories,
// and the ids of the profile (HDF5) cases, which docs/errors.md must list as well.
#pragma once

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace strata::errors {

inline std::string source_dir() {
  const char* dir = std::getenv("STRATA_SOURCE_DIR");
  return dir ? dir : STRATA_SOURCE_DIR;
}

inline std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

// An empty directory of this test's own (several ctest processes run at once).
inline std::filesystem::path fresh_temp_dir(const std::string& name) {
  const std::filesystem::path dir = std::filesystem::temp_directory_path() /
                                    ("strata-errors-" + std::to_string(::getpid()) + "-" + name);
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

// The ids of the table in profile_errors_test.cpp.
std::vector<std::string> profile_case_ids();

}  // namespace strata::errors
