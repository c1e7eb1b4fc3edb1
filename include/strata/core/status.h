// Recoverable errors as values: an Error names the file, the field and the reason, so that a
// user's bad input reaches the command line as one line. Our own bugs are STRATA_CHECK (check.h).
#pragma once

#include <optional>
#include <string>
#include <utility>
#include <variant>

#include "strata/core/check.h"

namespace strata {

struct Error {
  std::string file;    // the input that was wrong ("" when not from a file)
  std::string field;   // dotted path inside it, e.g. "model.layers[3].hidden" ("" when none)
  std::string reason;  // what is wrong, in words

  // "file: field: reason", leaving out empty parts.
  std::string message() const;
  // Same error with a file name filled in where it had none.
  Error in_file(const std::string& path) const;
  // Same error with `prefix` put before the field ("layers[2]" + "hidden" -> "layers[2].hidden").
  Error under(const std::string& prefix) const;
};

Error make_error(std::string file, std::string field, std::string reason);

// Status: success or an Error. [[nodiscard]] so that a failure cannot be dropped silently.
class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(Error error) : error_(std::move(error)) {}  // NOLINT: implicit on purpose
  static Status ok() { return Status(); }
  bool is_ok() const { return !error_.has_value(); }
  explicit operator bool() const { return is_ok(); }
  const Error& error() const {
    STRATA_CHECK(error_.has_value(), "Status::error() on success");
    return *error_;
  }
  std::string message() const { return is_ok() ? "ok" : error_->message(); }

 private:
  std::optional<Error> error_;
};

// Expected<T>: a value or an Error (llvm::Expected in spirit).
template <typename T>
class [[nodiscard]] Expected {
 public:
  Expected(T value) : data_(std::move(value)) {}      // NOLINT: implicit on purpose
  Expected(Error error) : data_(std::move(error)) {}  // NOLINT: implicit on purpose
  Expected(Status status) : data_(status.error()) {}  // only from a failed Status

  bool is_ok() const { return std::holds_alternative<T>(data_); }
  explicit operator bool() const { return is_ok(); }
  const Error& error() const {
    STRATA_CHECK(!is_ok(), "Expected::error() on a value");
    return std::get<Error>(data_);
  }
  Status status() const { return is_ok() ? Status() : Status(error()); }
  T& value() & {
    STRATA_CHECK(is_ok(), "Expected::value() on an error: " + std::get<Error>(data_).message());
    return std::get<T>(data_);
  }
  const T& value() const& {
    STRATA_CHECK(is_ok(), "Expected::value() on an error: " + std::get<Error>(data_).message());
    return std::get<T>(data_);
  }
  T&& value() && {
    STRATA_CHECK(is_ok(), "Expected::value() on an error: " + std::get<Error>(data_).message());
    return std::get<T>(std::move(data_));
  }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

 private:
  std::variant<T, Error> data_;
};

}  // namespace strata

// Propagate a failed Status/Expected out of the enclosing function.
#define STRATA_RETURN_IF_ERROR(expr)                       \
  do {                                                     \
    auto strata_status_ = (expr);                          \
    if (!strata_status_.is_ok()) return strata_status_.error(); \
  } while (0)

#define STRATA_CONCAT_INNER_(a, b) a##b
#define STRATA_CONCAT_(a, b) STRATA_CONCAT_INNER_(a, b)
// STRATA_ASSIGN_OR_RETURN(auto x, make_x()); -- binds the value or returns the error.
#define STRATA_ASSIGN_OR_RETURN(lhs, expr) \
  STRATA_ASSIGN_OR_RETURN_IMPL_(STRATA_CONCAT_(strata_expected_, __LINE__), lhs, expr)
#define STRATA_ASSIGN_OR_RETURN_IMPL_(tmp, lhs, expr) \
  auto tmp = (expr);                                  \
  if (!tmp.is_ok()) return tmp.error();               \
  lhs = std::move(tmp).value()
