// Unit formatting and checked whole-file I/O.
#include "strata/core/units.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace strata {

static std::string scaled(double value, const char* const* names, int count, double step) {
  int i = 0;
  double v = value;
  while (i + 1 < count && std::fabs(v) >= step) {
    v /= step;
    ++i;
  }
  char buf[64];
  std::snprintf(buf, sizeof buf, i == 0 && v == std::floor(v) ? "%.0f %s" : "%.2f %s", v, names[i]);
  return buf;
}

std::string format_bytes(double bytes) {
  static const char* const names[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
  return scaled(bytes, names, 6, 1024.0);
}

std::string format_flops(double flops) {
  static const char* const names[] = {"FLOP", "KFLOP", "MFLOP", "GFLOP", "TFLOP", "PFLOP", "EFLOP"};
  return scaled(flops, names, 7, 1000.0);
}

std::string format_count(double count) {
  static const char* const names[] = {"", "K", "M", "B", "T"};
  std::string s = scaled(count, names, 5, 1000.0);
  while (!s.empty() && s.back() == ' ') s.pop_back();
  return s;
}

std::string format_seconds(double seconds) {
  char buf[64];
  double a = std::fabs(seconds);
  if (a >= 1.0 || a == 0.0) std::snprintf(buf, sizeof buf, "%.3f s", seconds);
  else if (a >= 1e-3) std::snprintf(buf, sizeof buf, "%.3f ms", seconds * 1e3);
  else if (a >= 1e-6) std::snprintf(buf, sizeof buf, "%.3f us", seconds * 1e6);
  else std::snprintf(buf, sizeof buf, "%.1f ns", seconds * 1e9);
  return buf;
}

Expected<std::string> read_text_file(const std::string& path) {
  // An ifstream opens a directory without complaint and reads nothing from it.
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) return make_error(path, "", "is a directory, not a file");
  std::ifstream in(path, std::ios::binary);
  if (!in) return make_error(path, "", std::string("cannot open: ") + std::strerror(errno));
  std::ostringstream buffer;
  buffer << in.rdbuf();
  if (in.bad()) return make_error(path, "", "read failed");
  return buffer.str();
}

Status write_file_atomically(const std::string& path, const std::string& contents) {
  std::string tmp = path + ".tmp";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) return make_error(path, "", std::string("cannot create: ") + std::strerror(errno));
  size_t done = 0;
  while (done < contents.size()) {
    ssize_t n = ::write(fd, contents.data() + done, contents.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      int saved = errno;
      ::close(fd);
      ::unlink(tmp.c_str());
      return make_error(path, "", std::string("write failed: ") + std::strerror(saved));
    }
    done += static_cast<size_t>(n);
  }
  if (::fsync(fd) != 0 || ::close(fd) != 0) {
    ::unlink(tmp.c_str());
    return make_error(path, "", std::string("fsync/close failed: ") + std::strerror(errno));
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    ::unlink(tmp.c_str());
    return make_error(path, "", std::string("rename failed: ") + std::strerror(errno));
  }
  return Status::ok();
}

}  // namespace strata
