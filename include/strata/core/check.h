// Assertions for our own bugs (never for a user's input: that is an Error, see status.h).
#pragma once

#include <string>

namespace strata::detail {
[[noreturn]] void check_failed(const char* condition, const char* file, int line, const std::string& message);
}  // namespace strata::detail

#define STRATA_CHECK(cond, message)                                            \
  do {                                                                         \
    if (!(cond)) ::strata::detail::check_failed(#cond, __FILE__, __LINE__, (message)); \
  } while (0)

// A place the code never reaches (after a switch over every enumerator): unconditionally noreturn,
// so the compiler sees no missing return at any optimisation level.
#define STRATA_UNREACHABLE(message) ::strata::detail::check_failed("unreachable", __FILE__, __LINE__, (message))
