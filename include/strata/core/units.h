// Human-readable numbers with units, and whole-file I/O that reports errors as values.
#pragma once

#include <cstdint>
#include <string>

#include "strata/core/status.h"

namespace strata {

constexpr int64_t kKiB = 1024;
constexpr int64_t kMiB = 1024 * kKiB;
constexpr int64_t kGiB = 1024 * kMiB;

std::string format_bytes(double bytes);      // "1.50 GiB"
std::string format_seconds(double seconds);  // "12.3 ms"
std::string format_flops(double flops);      // "3.21 TFLOP"
std::string format_count(double count);      // "1.32 B", "350 M"

Expected<std::string> read_text_file(const std::string& path);
// Writes to path.tmp, fsyncs, renames over path: a reader never sees a half-written file.
Status write_file_atomically(const std::string& path, const std::string& contents);

}  // namespace strata
