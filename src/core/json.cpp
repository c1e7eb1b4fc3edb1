// JSON writing (stable, minimal escaping) and a strict recursive-descent parser.
#include "strata/core/json.h"

#include <cmath>
#include <cstdio>
#include <cstdlib>

namespace strata {

bool Json::as_bool() const {
  STRATA_CHECK(kind_ == Kind::boolean, "JSON value is not a boolean");
  return bool_;
}
double Json::as_number() const {
  STRATA_CHECK(kind_ == Kind::number, "JSON value is not a number");
  return number_;
}
int64_t Json::as_int() const { return static_cast<int64_t>(std::llround(as_number())); }
const std::string& Json::as_string() const {
  STRATA_CHECK(kind_ == Kind::string, "JSON value is not a string");
  return string_;
}

Json& Json::push(Json v) {
  if (kind_ == Kind::null) kind_ = Kind::array;
  STRATA_CHECK(kind_ == Kind::array, "push on a non-array JSON value");
  elements_.push_back(std::move(v));
  return elements_.back();
}

size_t Json::size() const {
  if (kind_ == Kind::array) return elements_.size();
  if (kind_ == Kind::object) return members_.size();
  return 0;
}

const Json& Json::operator[](size_t i) const {
  STRATA_CHECK(kind_ == Kind::array && i < elements_.size(), "JSON array index out of range");
  return elements_[i];
}

Json& Json::set(const std::string& key, Json v) {
  if (kind_ == Kind::null) kind_ = Kind::object;
  STRATA_CHECK(kind_ == Kind::object, "set on a non-object JSON value");
  for (auto& [k, existing] : members_) {
    if (k == key) {
      existing = std::move(v);
      return existing;
    }
  }
  members_.emplace_back(key, std::move(v));
  return members_.back().second;
}

bool Json::has(const std::string& key) const {
  if (kind_ != Kind::object) return false;
  for (const auto& member : members_)
    if (member.first == key) return true;
  return false;
}

const Json& Json::operator[](const std::string& key) const {
  static const Json null_value;
  if (kind_ == Kind::object)
    for (const auto& member : members_)
      if (member.first == key) return member.second;
  return null_value;
}

static void escape_to(std::string& out, const std::string& s) {
  out += '"';
  for (unsigned char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\t': out += "\\t"; break;
      case '\r': out += "\\r"; break;
      default:
        if (c < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", c);
          out += buf;
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  out += '"';
}

static void format_number(std::string& out, double v, bool integral) {
  if (!std::isfinite(v)) {
    out += "null";  // JSON has no inf/nan
    return;
  }
  char buf[40];
  if (integral || (v == std::floor(v) && std::fabs(v) < 1e15)) {
    std::snprintf(buf, sizeof buf, "%lld", static_cast<long long>(v));
  } else {
    std::snprintf(buf, sizeof buf, "%.17g", v);
  }
  out += buf;
}

void Json::dump_to(std::string& out, int indent, int depth) const {
  auto newline = [&](int d) {
    if (indent < 0) return;
    out += '\n';
    out.append(static_cast<size_t>(indent * d), ' ');
  };
  switch (kind_) {
    case Kind::null: out += "null"; break;
    case Kind::boolean: out += bool_ ? "true" : "false"; break;
    case Kind::number: format_number(out, number_, integral_); break;
    case Kind::string: escape_to(out, string_); break;
    case Kind::array:
      out += '[';
      for (size_t i = 0; i < elements_.size(); ++i) {
        if (i) out += ',';
        newline(depth + 1);
        elements_[i].dump_to(out, indent, depth + 1);
      }
      if (!elements_.empty()) newline(depth);
      out += ']';
      break;
    case Kind::object:
      out += '{';
      for (size_t i = 0; i < members_.size(); ++i) {
        if (i) out += ',';
        newline(depth + 1);
        escape_to(out, members_[i].first);
        out += indent < 0 ? ":" : ": ";
        members_[i].second.dump_to(out, indent, depth + 1);
      }
      if (!members_.empty()) newline(depth);
      out += '}';
      break;
  }
}

std::string Json::dump(int indent) const {
  std::string out;
  dump_to(out, indent, 0);
  return out;
}

namespace {
struct Parser {
  const std::string& text;
  const std::string& file;
  size_t pos = 0;
  int depth = 0;

  Error fail(const std::string& reason) const {
    return make_error(file, "offset " + std::to_string(pos), reason);
  }
  void skip_space() {
    while (pos < text.size() && (text[pos] == ' ' || text[pos] == '\n' || text[pos] == '\t' || text[pos] == '\r'))
      ++pos;
  }
  bool consume(const char* word) {
    size_t n = std::char_traits<char>::length(word);
    if (text.compare(pos, n, word) == 0) {
      pos += n;
      return true;
    }
    return false;
  }
  Expected<std::string> parse_string() {
    if (pos >= text.size() || text[pos] != '"') return fail("expected a string");
    ++pos;
    std::string out;
    while (pos < text.size() && text[pos] != '"') {
      char c = text[pos++];
      if (c != '\\') {
        out += c;
        continue;
      }
      if (pos >= text.size()) break;
      char e = text[pos++];
      switch (e) {
        case '"': out += '"'; break;
        case '\\': out += '\\'; break;
        case '/': out += '/'; break;
        case 'n': out += '\n'; break;
        case 't': out += '\t'; break;
        case 'r': out += '\r'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'u': {
          if (pos + 4 > text.size()) return fail("truncated \\u escape");
          unsigned code = static_cast<unsigned>(std::strtoul(text.substr(pos, 4).c_str(), nullptr, 16));
          pos += 4;
          if (code < 0x80) {
            out += static_cast<char>(code);
          } else if (code < 0x800) {
            out += static_cast<char>(0xC0 | (code >> 6));
            out += static_cast<char>(0x80 | (code & 0x3F));
          } else {
            out += static_cast<char>(0xE0 | (code >> 12));
            out += static_cast<char>(0x80 | ((code >> 6) & 0x3F));
            out += static_cast<char>(0x80 | (code & 0x3F));
          }
          break;
        }
        default: return fail("bad escape in string");
      }
    }
    if (pos >= text.size()) return fail("unterminated string");
    ++pos;
    return out;
  }
  Expected<Json> parse_value() {
    if (++depth > 512) return fail("nesting too deep");
    skip_space();
    if (pos >= text.size()) return fail("unexpected end of input");
    char c = text[pos];
    Json result;
    if (c == '{') {
      ++pos;
      result = Json::object();
      skip_space();
      if (pos < text.size() && text[pos] == '}') {
        ++pos;
      } else {
        while (true) {
          skip_space();
          STRATA_ASSIGN_OR_RETURN(std::string key, parse_string());
          skip_space();
          if (pos >= text.size() || text[pos] != ':') return fail("expected ':'");
          ++pos;
          STRATA_ASSIGN_OR_RETURN(Json value, parse_value());
          result.set(key, std::move(value));
          skip_space();
          if (pos < text.size() && text[pos] == ',') { ++pos; continue; }
          if (pos < text.size() && text[pos] == '}') { ++pos; break; }
          return fail("expected ',' or '}'");
        }
      }
    } else if (c == '[') {
      ++pos;
      result = Json::array();
      skip_space();
      if (pos < text.size() && text[pos] == ']') {
        ++pos;
      } else {
        while (true) {
          STRATA_ASSIGN_OR_RETURN(Json value, parse_value());
          result.push(std::move(value));
          skip_space();
          if (pos < text.size() && text[pos] == ',') { ++pos; continue; }
          if (pos < text.size() && text[pos] == ']') { ++pos; break; }
          return fail("expected ',' or ']'");
        }
      }
    } else if (c == '"') {
      STRATA_ASSIGN_OR_RETURN(std::string s, parse_string());
      result = Json(std::move(s));
    } else if (consume("true")) {
      result = Json(true);
    } else if (consume("false")) {
      result = Json(false);
    } else if (consume("null")) {
      result = Json();
    } else {
      const char* start = text.c_str() + pos;
      char* end = nullptr;
      double v = std::strtod(start, &end);
      if (end == start) return fail("unexpected character");
      pos += static_cast<size_t>(end - start);
      result = Json(v);
    }
    --depth;
    return result;
  }
};
}  // namespace

Expected<Json> Json::parse(const std::string& text, const std::string& file) {
  Parser parser{text, file};
  STRATA_ASSIGN_OR_RETURN(Json value, parser.parse_value());
  parser.skip_space();
  if (parser.pos != text.size()) return parser.fail("trailing characters after JSON value");
  return value;
}

}  // namespace strata
