// What every subcommand shares: the one-line error report on stderr and its exit code.
#pragma once

#include <cstdio>

#include "strata/core/status.h"

namespace strata::cli {

// Prints "strata <command>: file: field: reason" and returns `code` (2 bad input, 1 other).
inline int report_failure(const char* command, const Error& error, int code) {
  std::fprintf(stderr, "strata %s: %s\n", command, error.message().c_str());
  return code;
}

}  // namespace strata::cli
