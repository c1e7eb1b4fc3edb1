// Internal to src/models: typed reads of yaml-cpp nodes that turn every problem into an Error
// naming the file and the dotted field, so configs fail with one precise line.
#pragma once

#include <yaml-cpp/yaml.h>

#include <cstdint>
#include <set>
#include <string>

#include "strata/core/status.h"
#include "strata/ir/op.h"

namespace strata::models::yaml {

struct Reader {
  std::string file;
  Error error(const std::string& field, const std::string& reason) const { return make_error(file, field, reason); }

  // A required positive integer.
  Expected<int64_t> positive_int(const YAML::Node& map, const std::string& key, const std::string& path) const;
  // An optional positive integer: `fallback` when absent.
  Expected<int64_t> positive_int_or(const YAML::Node& map, const std::string& key, const std::string& path,
                                    int64_t fallback) const;
  Expected<double> positive_real_or(const YAML::Node& map, const std::string& key, const std::string& path,
                                    double fallback) const;
  Expected<std::string> string(const YAML::Node& map, const std::string& key, const std::string& path) const;
  Expected<std::string> string_or(const YAML::Node& map, const std::string& key, const std::string& path,
                                  const std::string& fallback) const;
  // Every key of `map` must be in `allowed`.
  Status only_keys(const YAML::Node& map, const std::string& path, const std::set<std::string>& allowed) const;
  // An attribute value: int, real, string (quoted scalars stay strings) or a list of ints.
  Expected<ir::AttrValue> attr_value(const YAML::Node& node, const std::string& path) const;
};

std::string join(const std::string& path, const std::string& key);  // "model" + "hidden" -> "model.hidden"

}  // namespace strata::models::yaml
