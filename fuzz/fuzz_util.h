// Shared by the fuzz targets: the properties every loader must keep on any input, checked with
// abort() so that libFuzzer (and the plain replay in CI) report a violation as a crash.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "strata/core/status.h"

namespace strata::fuzz {

// A bad input must come back as one Error line: a reason, no line break, and the file label the
// loader was given (or none, for errors that are not about a file).
inline void check_error(const Error& error, const std::string& file) {
  const std::string message = error.message();
  const bool ok = !error.reason.empty() && message.find('\n') == std::string::npos &&
                  message.find('\r') == std::string::npos && (error.file.empty() || error.file == file);
  if (!ok) {
    std::fprintf(stderr, "fuzz: bad error (file '%s', field '%s'): %s\n", error.file.c_str(), error.field.c_str(),
                 message.c_str());
    std::abort();
  }
}

// The fuzzer's bytes as the text a loader would read from a file.
inline std::string as_text(const uint8_t* data, size_t size) {
  return std::string(reinterpret_cast<const char*>(data), size);
}

// The loaded value, or nullptr after checking the Error of a refused input.
template <typename T>
T* loaded_or_checked(Expected<T>& loaded, const std::string& file) {
  if (loaded.is_ok()) return &loaded.value();
  check_error(loaded.error(), file);
  return nullptr;
}

}  // namespace strata::fuzz
