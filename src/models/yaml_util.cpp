// Typed, error-reporting reads of yaml-cpp nodes for the model config loader.
#include "yaml_util.h"

#include <cmath>

namespace strata::models::yaml {

std::string join(const std::string& path, const std::string& key) { return path.empty() ? key : path + "." + key; }

namespace {

// What a node holds, for "must be X, got Y": a scalar's text, else its kind (a dumped list or map
// would span lines).
std::string describe(const YAML::Node& node) {
  if (node.IsScalar()) return "'" + node.Scalar() + "'";
  if (node.IsSequence()) return "a list";
  if (node.IsMap()) return "a map";
  return "nothing";
}

bool read_int(const YAML::Node& node, int64_t& out) {
  if (!node.IsScalar() || node.Tag() == "!") return false;
  return YAML::convert<int64_t>::decode(node, out);
}

bool read_real(const YAML::Node& node, double& out) {
  if (!node.IsScalar() || node.Tag() == "!") return false;
  return YAML::convert<double>::decode(node, out);
}

}  // namespace

Expected<int64_t> Reader::positive_int(const YAML::Node& map, const std::string& key,
                                       const std::string& path) const {
  const std::string field = join(path, key);
  const YAML::Node node = map[key];
  if (!node.IsDefined() || node.IsNull()) return error(field, "missing field");
  int64_t value = 0;
  if (!read_int(node, value)) return error(field, "must be an integer, got " + describe(node));
  if (value <= 0) return error(field, "must be positive, got " + std::to_string(value));
  return value;
}

Expected<int64_t> Reader::positive_int_or(const YAML::Node& map, const std::string& key, const std::string& path,
                                          int64_t fallback) const {
  if (!map[key].IsDefined()) return fallback;
  return positive_int(map, key, path);
}

Expected<double> Reader::positive_real_or(const YAML::Node& map, const std::string& key, const std::string& path,
                                          double fallback) const {
  const std::string field = join(path, key);
  const YAML::Node node = map[key];
  if (!node.IsDefined()) return fallback;
  double value = 0;
  if (!read_real(node, value)) return error(field, "must be a number, got " + describe(node));
  if (!(value > 0) || !std::isfinite(value)) return error(field, "must be positive and finite");
  return value;
}

Expected<std::string> Reader::string(const YAML::Node& map, const std::string& key, const std::string& path) const {
  const std::string field = join(path, key);
  const YAML::Node node = map[key];
  if (!node.IsDefined() || node.IsNull()) return error(field, "missing field");
  if (!node.IsScalar()) return error(field, "must be a string");
  return node.Scalar();
}

Expected<std::string> Reader::string_or(const YAML::Node& map, const std::string& key, const std::string& path,
                                        const std::string& fallback) const {
  if (!map[key].IsDefined()) return fallback;
  return string(map, key, path);
}

Status Reader::only_keys(const YAML::Node& map, const std::string& path,
                         const std::set<std::string>& allowed) const {
  for (const auto& entry : map) {
    const std::string key = entry.first.Scalar();
    if (!allowed.count(key)) {
      std::string list;
      for (const auto& name : allowed) list += (list.empty() ? "" : ", ") + name;
      return error(join(path, key), "unknown field (expected one of: " + list + ")");
    }
  }
  return Status::ok();
}

Expected<ir::AttrValue> Reader::attr_value(const YAML::Node& node, const std::string& path) const {
  if (node.IsSequence()) {
    std::vector<int64_t> values;
    for (size_t i = 0; i < node.size(); ++i) {
      int64_t value = 0;
      if (!read_int(node[i], value))
        return error(path + "[" + std::to_string(i) + "]", "bad attribute type: list elements must be integers");
      values.push_back(value);
    }
    return ir::AttrValue(values);
  }
  if (!node.IsScalar()) return error(path, "bad attribute type: must be a number, a string or a list of integers");
  if (node.Tag() == "!") return ir::AttrValue(node.Scalar());
  int64_t integer = 0;
  if (read_int(node, integer)) return ir::AttrValue(integer);
  double real = 0;
  if (read_real(node, real)) return ir::AttrValue(real);
  return ir::AttrValue(node.Scalar());
}

}  // namespace strata::models::yaml
