// Flag parsing with errors as values.
#include "strata/core/args.h"

#include <cerrno>
#include <cstdlib>

namespace strata {

ArgParser::ArgParser(std::string command, std::string summary)
    : command_(std::move(command)), summary_(std::move(summary)) {}

ArgParser& ArgParser::option(const std::string& name, const std::string& help, const std::string& metavar) {
  order_.push_back(name);
  specs_[name] = Spec{help, metavar, true, false};
  return *this;
}

ArgParser& ArgParser::flag(const std::string& name, const std::string& help) {
  order_.push_back(name);
  specs_[name] = Spec{help, "", false, false};
  return *this;
}

ArgParser& ArgParser::required(const std::string& name) {
  STRATA_CHECK(specs_.count(name), "required() of undeclared flag " + name);
  specs_[name].required = true;
  return *this;
}

Status ArgParser::parse(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      help_ = true;
      return Status::ok();
    }
    if (arg.rfind("--", 0) != 0) {
      positional_.push_back(arg);
      continue;
    }
    std::string name = arg.substr(2);
    std::string value;
    bool inline_value = false;
    if (auto eq = name.find('='); eq != std::string::npos) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
      inline_value = true;
    }
    auto it = specs_.find(name);
    if (it == specs_.end())
      return make_error("", "--" + name, "unknown flag for 'strata " + command_ + "' (see --help)");
    if (it->second.takes_value) {
      if (!inline_value) {
        if (i + 1 >= argc) return make_error("", "--" + name, "needs a value");
        value = argv[++i];
      }
    } else if (inline_value) {
      return make_error("", "--" + name, "takes no value");
    }
    values_[name] = value;
  }
  for (const auto& name : order_)
    if (specs_[name].required && !values_.count(name))
      return make_error("", "--" + name, "is required for 'strata " + command_ + "'");
  return Status::ok();
}

std::string ArgParser::help_text() const {
  std::string out = "usage: strata " + command_ + " [flags]\n\n" + summary_ + "\n\nflags:\n";
  for (const auto& name : order_) {
    const Spec& spec = specs_.at(name);
    std::string left = "  --" + name + (spec.takes_value ? " " + spec.metavar : "");
    if (left.size() < 28) left.append(28 - left.size(), ' ');
    else left += "  ";
    out += left + spec.help + (spec.required ? " (required)" : "") + "\n";
  }
  out += "  --help                    show this text\n";
  return out;
}

bool ArgParser::has(const std::string& name) const { return values_.count(name) > 0; }

std::string ArgParser::get(const std::string& name, const std::string& fallback) const {
  auto it = values_.find(name);
  return it == values_.end() ? fallback : it->second;
}

Expected<int64_t> ArgParser::get_int(const std::string& name, int64_t fallback) const {
  auto it = values_.find(name);
  if (it == values_.end()) return fallback;
  errno = 0;
  char* end = nullptr;
  long long v = std::strtoll(it->second.c_str(), &end, 10);
  if (errno || end == it->second.c_str() || *end != '\0')
    return make_error("", "--" + name, "'" + it->second + "' is not an integer");
  return static_cast<int64_t>(v);
}

Expected<double> ArgParser::get_double(const std::string& name, double fallback) const {
  auto it = values_.find(name);
  if (it == values_.end()) return fallback;
  errno = 0;
  char* end = nullptr;
  double v = std::strtod(it->second.c_str(), &end);
  if (errno || end == it->second.c_str() || *end != '\0')
    return make_error("", "--" + name, "'" + it->second + "' is not a number");
  return v;
}

}  // namespace strata
