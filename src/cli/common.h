// What every subcommand shares: the one-line error report on stderr and its exit code, and the
// checks of the files a flag names, so that a bad path fails at once and names the flag.
#pragma once

#include <cstdio>
#include <filesystem>
#include <string>
#include <system_error>

#include "strata/core/status.h"

namespace strata::cli {

// Exit codes of every subcommand: 0 success, 2 bad input (files, fields, flags), 1 anything else.
inline constexpr int kExitBadInput = 2;
inline constexpr int kExitFailure = 1;

// Prints "strata <command>: file: field: reason" and returns `code` (2 bad input, 1 other).
inline int report_failure(const char* command, const Error& error, int code) {
  std::fprintf(stderr, "strata %s: %s\n", command, error.message().c_str());
  return code;
}

// An input file named by --<flag>: it must exist and be a regular file (not a directory).
inline Status check_input_file(const std::string& path, const std::string& flag) {
  namespace fs = std::filesystem;
  if (path.empty()) return make_error("", "--" + flag, "needs a file name");
  std::error_code ec;
  const fs::file_status status = fs::status(path, ec);
  if (!fs::exists(status)) return make_error(path, "--" + flag, "no such file");
  if (fs::is_directory(status)) return make_error(path, "--" + flag, "is a directory, not a file");
  return Status::ok();
}

// An output file named by --<flag>: its directory must exist and it must not be a directory, so
// that a typo fails before the work rather than after it.
inline Status check_output_file(const std::string& path, const std::string& flag) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (path.empty()) return make_error("", "--" + flag, "needs a file name");
  if (fs::is_directory(path, ec)) return make_error(path, "--" + flag, "is a directory, not a file");
  const fs::path parent = fs::path(path).parent_path();
  if (!parent.empty() && !fs::is_directory(parent, ec))
    return make_error(path, "--" + flag, "cannot write: directory " + parent.string() + " does not exist");
  return Status::ok();
}

// A write of --<flag> that failed anyway (permissions, full disk): the flag becomes the field.
inline Error output_error(const Error& error, const std::string& flag) {
  Error copy = error;
  if (copy.field.empty()) copy.field = "--" + flag;
  return copy;
}

}  // namespace strata::cli
