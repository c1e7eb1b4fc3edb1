// Checked HDF5 C calls for the profile store: every failing call becomes an Error naming the call,
// the file and the object; handles close themselves. HDF5's own error printing is switched off.
#pragma once

#include <hdf5.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "strata/core/status.h"

namespace strata::profile::h5 {

// An HDF5 identifier closed by `close` when the handle goes out of scope.
class Handle {
 public:
  Handle() = default;
  Handle(hid_t id, herr_t (*close)(hid_t)) : id_(id), close_(close) {}
  Handle(Handle&& other) noexcept : id_(other.id_), close_(other.close_) { other.id_ = -1; }
  Handle& operator=(Handle&& other) noexcept {
    reset();
    id_ = other.id_;
    close_ = other.close_;
    other.id_ = -1;
    return *this;
  }
  Handle(const Handle&) = delete;
  Handle& operator=(const Handle&) = delete;
  ~Handle() { reset(); }
  hid_t get() const { return id_; }
  // Gives up ownership (the caller closes the id, checking the result).
  hid_t release() {
    const hid_t id = id_;
    id_ = -1;
    return id;
  }
  void reset() {
    if (id_ >= 0 && close_ != nullptr) close_(id_);
    id_ = -1;
  }

 private:
  hid_t id_ = -1;
  herr_t (*close_)(hid_t) = nullptr;
};

Error call_failed(const std::string& file, const std::string& field, const char* call);

// A new identifier from `call`, or an Error when HDF5 returned a negative id.
inline Expected<Handle> checked(hid_t id, herr_t (*close)(hid_t), const char* call, const std::string& file,
                                const std::string& field) {
  if (id < 0) return call_failed(file, field, call);
  return Handle(id, close);
}
inline Status checked_status(herr_t status, const char* call, const std::string& file, const std::string& field) {
  if (status < 0) return call_failed(file, field, call);
  return Status::ok();
}

// Turns off HDF5's automatic error stack printing (errors reach the user as our Error values).
void silence_errors();

// Scalar attributes of one object (the file root, a group or a dataset). Errors name the file and
// `prefix + name`. Integers are stored as 64-bit, strings as fixed-length, NUL-padded when empty.
class AttrWriter {
 public:
  AttrWriter(hid_t object, std::string file, std::string prefix = "")
      : object_(object), file_(std::move(file)), prefix_(std::move(prefix)) {}
  Status int64(const char* name, int64_t value);
  Status string(const char* name, const std::string& value);

 private:
  hid_t object_;
  std::string file_;
  std::string prefix_;
};

// Reads what AttrWriter writes, refusing a missing attribute, a wrong type or an array.
class AttrReader {
 public:
  static constexpr size_t kMaxStringBytes = size_t{1} << 20;
  AttrReader(hid_t object, std::string file, std::string prefix = "")
      : object_(object), file_(std::move(file)), prefix_(std::move(prefix)) {}
  bool has(const char* name) const { return H5Aexists(object_, name) > 0; }
  Expected<int64_t> int64(const char* name);
  Expected<std::string> string(const char* name);

 private:
  // The open attribute, checked to exist and to hold a single value.
  Expected<Handle> open_single(const char* name, const std::string& field);
  hid_t object_;
  std::string file_;
  std::string prefix_;
};

}  // namespace strata::profile::h5

// STRATA_H5_OPEN(auto group, H5Gopen2(...), H5Gclose, file, field): binds a Handle or returns the Error.
#define STRATA_H5_OPEN(lhs, call, close, file, field) \
  STRATA_ASSIGN_OR_RETURN(lhs, ::strata::profile::h5::checked((call), (close), #call, (file), (field)))
// STRATA_H5_CALL(H5Dwrite(...), file, field): returns the Error when the call fails.
#define STRATA_H5_CALL(call, file, field) \
  STRATA_RETURN_IF_ERROR(::strata::profile::h5::checked_status((call), #call, (file), (field)))
