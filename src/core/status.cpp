// Error formatting and the assertion handler.
#include "strata/core/status.h"

#include <cstdio>
#include <cstdlib>

namespace strata {

std::string Error::message() const {
  std::string out;
  if (!file.empty()) out += file + ": ";
  if (!field.empty()) out += field + ": ";
  out += reason;
  return out;
}

Error Error::in_file(const std::string& path) const {
  Error copy = *this;
  if (copy.file.empty()) copy.file = path;
  return copy;
}

Error Error::under(const std::string& prefix) const {
  Error copy = *this;
  if (prefix.empty()) return copy;
  if (copy.field.empty()) {
    copy.field = prefix;
  } else if (copy.field.front() == '[') {
    copy.field = prefix + copy.field;
  } else {
    copy.field = prefix + "." + copy.field;
  }
  return copy;
}

Error make_error(std::string file, std::string field, std::string reason) {
  return Error{std::move(file), std::move(field), std::move(reason)};
}

namespace detail {
void check_failed(const char* condition, const char* file, int line, const std::string& message) {
  std::fprintf(stderr, "strata: internal error at %s:%d: check '%s' failed: %s\n", file, line, condition,
               message.c_str());
  std::fflush(stderr);
  std::abort();
}
}  // namespace detail

}  // namespace strata
