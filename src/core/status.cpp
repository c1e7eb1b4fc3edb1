// Error formatting and the assertion handler.
#include "strata/core/status.h"

#include <cstdio>
#include <cstdlib>

namespace strata {

namespace {

// Control characters (a YAML key with "\n" in it, a byte of a corrupt file) are written as
// escapes, so that a message stays on the one line the command line promises.
void append_one_line(std::string& out, const std::string& text) {
  for (const char c : text) {
    const auto byte = static_cast<unsigned char>(c);
    if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if (byte < 0x20 || byte == 0x7f) {
      char escaped[8];
      std::snprintf(escaped, sizeof escaped, "\\x%02x", byte);
      out += escaped;
    } else {
      out += c;
    }
  }
}

}  // namespace

std::string Error::message() const {
  std::string out;
  if (!file.empty()) {
    append_one_line(out, file);
    out += ": ";
  }
  if (!field.empty()) {
    append_one_line(out, field);
    out += ": ";
  }
  append_one_line(out, reason);
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
