// Command-line flags for the strata subcommands: declared up front so that --help lists them and
// an unknown or malformed flag is a one-line error naming it.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "strata/core/status.h"

namespace strata {

class ArgParser {
 public:
  ArgParser(std::string command, std::string summary);

  // A flag that takes a value (--name VALUE or --name=VALUE).
  ArgParser& option(const std::string& name, const std::string& help, const std::string& metavar = "VALUE");
  // A flag that takes none (--name).
  ArgParser& flag(const std::string& name, const std::string& help);
  ArgParser& required(const std::string& name);

  // argv[0] is the subcommand name. On --help, help_requested() is true and nothing is checked.
  Status parse(int argc, char** argv);
  bool help_requested() const { return help_; }
  std::string help_text() const;

  bool has(const std::string& name) const;
  std::string get(const std::string& name, const std::string& fallback = "") const;
  Expected<int64_t> get_int(const std::string& name, int64_t fallback) const;
  Expected<double> get_double(const std::string& name, double fallback) const;
  const std::vector<std::string>& positional() const { return positional_; }

 private:
  struct Spec {
    std::string help;
    std::string metavar;
    bool takes_value = true;
    bool required = false;
  };
  std::string command_;
  std::string summary_;
  std::vector<std::string> order_;
  std::map<std::string, Spec> specs_;
  std::map<std::string, std::string> values_;
  std::vector<std::string> positional_;
  bool help_ = false;
};

}  // namespace strata
