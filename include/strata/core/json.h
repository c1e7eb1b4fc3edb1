// A small JSON value with a writer and a strict parser: for --json output, graph export,
// Perfetto traces and reading them back in tests. Object keys keep insertion order.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "strata/core/status.h"

namespace strata {

class Json {
 public:
  enum class Kind { null, boolean, number, string, array, object };

  Json() = default;  // null
  Json(bool v) : kind_(Kind::boolean), bool_(v) {}                       // NOLINT
  Json(int v) : kind_(Kind::number), number_(v), integral_(true) {}      // NOLINT
  Json(int64_t v) : kind_(Kind::number), number_(double(v)), integral_(true) {}  // NOLINT
  Json(uint64_t v) : kind_(Kind::number), number_(double(v)), integral_(true) {}  // NOLINT
  Json(double v) : kind_(Kind::number), number_(v) {}                    // NOLINT
  Json(const char* v) : kind_(Kind::string), string_(v) {}               // NOLINT
  Json(std::string v) : kind_(Kind::string), string_(std::move(v)) {}    // NOLINT
  static Json array() { Json j; j.kind_ = Kind::array; return j; }
  static Json object() { Json j; j.kind_ = Kind::object; return j; }

  Kind kind() const { return kind_; }
  bool is_null() const { return kind_ == Kind::null; }
  bool as_bool() const;
  double as_number() const;
  int64_t as_int() const;
  const std::string& as_string() const;

  // Arrays.
  Json& push(Json v);
  size_t size() const;  // elements of an array or members of an object
  const Json& operator[](size_t i) const;
  // Objects: set keeps the first position of a key; get returns null Json when absent.
  Json& set(const std::string& key, Json v);
  bool has(const std::string& key) const;
  const Json& operator[](const std::string& key) const;
  const std::vector<std::pair<std::string, Json>>& members() const { return members_; }
  const std::vector<Json>& elements() const { return elements_; }

  // indent < 0: one line; else pretty-printed with that many spaces.
  std::string dump(int indent = -1) const;
  static Expected<Json> parse(const std::string& text, const std::string& file = "");

 private:
  void dump_to(std::string& out, int indent, int depth) const;
  Kind kind_ = Kind::null;
  bool bool_ = false;
  double number_ = 0;
  bool integral_ = false;
  std::string string_;
  std::vector<Json> elements_;
  std::vector<std::pair<std::string, Json>> members_;
};

}  // namespace strata
