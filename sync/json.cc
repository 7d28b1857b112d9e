#include "sync/json.h"

#include <simdjson.h>

#include <algorithm>
#include <charconv>
#include <cctype>
#include <cmath>
#include <optional>
#include <cstdio>
#include <unordered_set>

namespace gitopsd::json {
namespace {

namespace od = simdjson::ondemand;

// Offset of the first byte that is not valid UTF-8, or npos.
size_t FirstInvalidUtf8(std::string_view s) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  size_t n = s.size(), i = 0;
  while (i < n) {
    unsigned char c = p[i];
    if (c < 0x80) { ++i; continue; }
    size_t len;
    uint32_t cp;
    if ((c & 0xE0) == 0xC0) { len = 2; cp = c & 0x1F; }
    else if ((c & 0xF0) == 0xE0) { len = 3; cp = c & 0x0F; }
    else if ((c & 0xF8) == 0xF0) { len = 4; cp = c & 0x07; }
    else return i;
    if (i + len > n) return i;
    for (size_t k = 1; k < len; ++k) {
      if ((p[i + k] & 0xC0) != 0x80) return i;
      cp = (cp << 6) | (p[i + k] & 0x3F);
    }
    if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
        cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
      return i;
    }
    i += len;
  }
  return std::string_view::npos;
}

std::string_view RawToken(od::value& v) { return v.raw_json_token(); }
std::string_view RawToken(od::document& d) {
  std::string_view raw;
  if (d.raw_json_token().get(raw)) return "0";
  return raw;
}

std::string_view TrimRight(std::string_view s) {
  while (!s.empty() && (s.back() == ' ' || s.back() == '\n' || s.back() == '\r' || s.back() == '\t')) {
    s.remove_suffix(1);
  }
  return s;
}

// Finds the first syntax error the way a person would describe it. simdjson
// says only that the structure is wrong, and where only roughly; this runs
// on the failure path alone, so valid documents never pay for it.
class SyntaxScanner {
 public:
  explicit SyntaxScanner(std::string_view text) : s_(text) {}

  std::optional<ParseError> Run() {
    SkipSpace();
    if (i_ >= s_.size()) return Error(i_, "the file is empty; expected a JSON value");
    if (!Value(0)) return error_;
    SkipSpace();
    if (i_ < s_.size()) return Error(i_, "unexpected content after the JSON value");
    return std::nullopt;
  }

 private:
  static constexpr int kMaxDepth = 2000;

  bool Fail(size_t at, std::string message) {
    error_ = ParseError{at, std::move(message), "json-syntax"};
    return false;
  }
  std::optional<ParseError> Error(size_t at, std::string message) {
    Fail(at, std::move(message));
    return error_;
  }
  bool AtEnd() const { return i_ >= s_.size(); }
  char Peek() const { return AtEnd() ? '\0' : s_[i_]; }

  void SkipSpace() {
    while (!AtEnd() && (s_[i_] == ' ' || s_[i_] == '\t' || s_[i_] == '\n' || s_[i_] == '\r')) ++i_;
  }

  bool Unexpected(const char* expected) {
    if (AtEnd()) return Fail(i_, std::string("unexpected end of file; expected ") + expected);
    char c = s_[i_];
    if (c == '/') return Fail(i_, "comments are not allowed in JSON");
    if (c == '\'') return Fail(i_, "strings must be in double quotes, not single quotes");
    return Fail(i_, std::string("expected ") + expected + ", found '" + std::string(1, c) + "'");
  }

  bool Value(int depth) {
    if (depth > kMaxDepth) return Fail(i_, "nesting too deep");
    switch (Peek()) {
      case '{': return Object(depth);
      case '[': return Array(depth);
      case '"': return String();
      case 't': return Literal("true");
      case 'f': return Literal("false");
      case 'n': return Literal("null");
      default:
        if (Peek() == '-' || (Peek() >= '0' && Peek() <= '9')) return Number();
        return Unexpected("a value");
    }
  }

  bool Object(int depth) {
    ++i_;  // '{'
    SkipSpace();
    if (Peek() == '}') {
      ++i_;
      return true;
    }
    while (true) {
      if (Peek() != '"') {
        if (std::isalpha(static_cast<unsigned char>(Peek())) || Peek() == '_') {
          return Fail(i_, "object keys must be in double quotes");
        }
        return Unexpected("a quoted key");
      }
      size_t key_start = i_;
      if (!String()) return false;
      std::string key(s_.substr(key_start + 1, i_ - key_start - 2));
      SkipSpace();
      if (Peek() != ':') return Unexpected(("':' after the key \"" + key + "\"").c_str());
      ++i_;
      SkipSpace();
      if (!Value(depth + 1)) return false;
      SkipSpace();
      if (Peek() == '}') {
        ++i_;
        return true;
      }
      if (Peek() != ',') {
        return Unexpected(("',' or '}' after the value of \"" + key + "\"").c_str());
      }
      size_t comma = i_++;
      SkipSpace();
      if (Peek() == '}') return Fail(comma, "trailing comma before '}'");
    }
  }

  bool Array(int depth) {
    ++i_;  // '['
    SkipSpace();
    if (Peek() == ']') {
      ++i_;
      return true;
    }
    while (true) {
      if (!Value(depth + 1)) return false;
      SkipSpace();
      if (Peek() == ']') {
        ++i_;
        return true;
      }
      if (Peek() != ',') return Unexpected("',' or ']' after an array element");
      size_t comma = i_++;
      SkipSpace();
      if (Peek() == ']') return Fail(comma, "trailing comma before ']'");
    }
  }

  bool String() {
    size_t start = i_++;
    while (!AtEnd()) {
      auto c = static_cast<unsigned char>(s_[i_]);
      if (c == '"') {
        ++i_;
        return true;
      }
      if (c < 0x20) {
        return Fail(i_, c == '\n' ? "unterminated string (a string cannot span lines; write \\n)"
                                  : "control character in a string; escape it");
      }
      if (c == '\\') {
        ++i_;
        if (AtEnd()) break;
        char e = s_[i_];
        if (e == 'u') {
          for (int k = 1; k <= 4; ++k) {
            if (i_ + k >= s_.size() || !std::isxdigit(static_cast<unsigned char>(s_[i_ + k]))) {
              return Fail(i_ - 1, "invalid \\u escape; expected four hex digits");
            }
          }
          i_ += 4;
        } else if (std::string_view("\"\\/bfnrt").find(e) == std::string_view::npos) {
          return Fail(i_ - 1, std::string("invalid escape \\") + e);
        }
      }
      ++i_;
    }
    return Fail(start, "unterminated string");
  }

  bool Number() {
    size_t start = i_;
    if (Peek() == '-') ++i_;
    auto digits = [&] {
      size_t from = i_;
      while (!AtEnd() && s_[i_] >= '0' && s_[i_] <= '9') ++i_;
      return i_ > from;
    };
    if (Peek() == '0') {
      ++i_;
      if (Peek() >= '0' && Peek() <= '9') return Fail(start, "numbers cannot have leading zeros");
    } else if (!digits()) {
      return Fail(start, "invalid number");
    }
    if (Peek() == '.') {
      ++i_;
      if (!digits()) return Fail(start, "invalid number: digits expected after '.'");
    }
    if (Peek() == 'e' || Peek() == 'E') {
      ++i_;
      if (Peek() == '+' || Peek() == '-') ++i_;
      if (!digits()) return Fail(start, "invalid number: digits expected in the exponent");
    }
    return true;
  }

  bool Literal(std::string_view word) {
    if (s_.substr(i_, word.size()) != word) {
      return Fail(i_, "invalid literal; expected true, false or null (strings need double quotes)");
    }
    i_ += word.size();
    return true;
  }

  std::string_view s_;
  size_t i_ = 0;
  ParseError error_;
};

// Replaces simdjson's generic syntax error with a precise one when the
// scanner finds it.
ParseError Refine(std::string_view text, ParseError error) {
  if (error.rule != "json-syntax") return error;
  if (auto precise = SyntaxScanner(text).Run()) return *precise;
  return error;
}

class Builder {
 public:
  Builder(const simdjson::padded_string& text, const ParseOptions& options)
      : text_(text), options_(options) {}

  std::expected<Value, ParseError> Build(od::document& doc) {
    od::json_type type;
    if (auto e = doc.type().get(type)) return Fail(doc, e);
    Value result;
    if (type == od::json_type::object || type == od::json_type::array) {
      od::value v;
      if (auto e = doc.get_value().get(v)) return Fail(doc, e);
      if (!Walk(v, 1, result)) return std::unexpected(error_);
    } else {
      // Scalars at the top level cannot be taken as od::value.
      const char* loc = nullptr;
      if (doc.current_location().get(loc)) loc = text_.data();
      if (!Scalar(doc, type, Offset(loc), result)) return std::unexpected(error_);
      // simdjson 3.0 does not move past a root null; the scanner says
      // whether anything follows it.
      if (type == od::json_type::null) {
        if (auto problem = SyntaxScanner(std::string_view(text_.data(), text_.size())).Run()) {
          return std::unexpected(*problem);
        }
        return result;
      }
    }
    // current_location() only succeeds while tokens remain.
    const char* rest = nullptr;
    if (!doc.current_location().get(rest)) {
      return std::unexpected(
          ParseError{Offset(rest), "unexpected content after the JSON value", "json-syntax"});
    }
    return result;
  }

 private:
  size_t Offset(const char* p) const {
    if (p < text_.data() || p > text_.data() + text_.size()) return text_.size();
    return static_cast<size_t>(p - text_.data());
  }

  template <class Doc>
  std::unexpected<ParseError> Fail(Doc& doc, simdjson::error_code e) {
    const char* loc = nullptr;
    size_t off = doc.current_location().get(loc) ? text_.size() : Offset(loc);
    return std::unexpected(Classify(e, off));
  }

  ParseError Classify(simdjson::error_code e, size_t off) const {
    switch (e) {
      case simdjson::DEPTH_ERROR:
        return {off, "nesting deeper than " + std::to_string(options_.max_depth) + " levels", "json-depth"};
      case simdjson::UTF8_ERROR: {
        size_t bad = FirstInvalidUtf8(std::string_view(text_.data(), text_.size()));
        return {bad == std::string_view::npos ? off : bad, "invalid UTF-8", "json-utf8"};
      }
      case simdjson::UNCLOSED_STRING:
        return {off, "unterminated string", "json-syntax"};
      case simdjson::STRING_ERROR:
        return {off, "invalid string (bad escape or control character)", "json-syntax"};
      case simdjson::NUMBER_ERROR:
      case simdjson::NUMBER_OUT_OF_RANGE:
        return {off, "invalid number", "json-syntax"};
      case simdjson::T_ATOM_ERROR:
        return {off, "invalid literal (expected true)", "json-syntax"};
      case simdjson::F_ATOM_ERROR:
        return {off, "invalid literal (expected false)", "json-syntax"};
      case simdjson::N_ATOM_ERROR:
        return {off, "invalid literal (expected null)", "json-syntax"};
      case simdjson::EMPTY:
        return {off, "the file is empty; expected a JSON value", "json-syntax"};
      default:
        return {off, std::string("invalid JSON: ") + simdjson::error_message(e), "json-syntax"};
    }
  }

  bool Error(size_t off, std::string message, std::string rule) {
    error_ = ParseError{off, std::move(message), std::move(rule)};
    return false;
  }
  bool Error(od::value& v, simdjson::error_code e) {
    const char* loc = nullptr;
    size_t off = v.current_location().get(loc) ? text_.size() : Offset(loc);
    error_ = Classify(e, off);
    return false;
  }

  template <class V>
  bool Scalar(V& v, od::json_type type, size_t off, Value& out) {
    switch (type) {
      case od::json_type::string: {
        std::string_view s;
        if (auto e = v.get_string().get(s)) return ErrorAt(off, e);
        out = Value::String(std::string(s));
        break;
      }
      case od::json_type::number: {
        double d;
        if (auto e = v.get_double().get(d)) return ErrorAt(off, e);
        out = Value::NumberText(std::string(TrimRight(RawToken(v))));
        break;
      }
      case od::json_type::boolean: {
        bool b;
        if (auto e = v.get_bool().get(b)) return ErrorAt(off, e);
        out = Value::Bool(b);
        break;
      }
      case od::json_type::null: {
        // The token itself: simdjson 3.0's is_null() refuses a root null
        // followed by whitespace.
        if (TrimRight(RawToken(v)) != "null") return ErrorAt(off, simdjson::N_ATOM_ERROR);
        out = Value::Null();
        break;
      }
      default:
        return Error(off, "unexpected value", "json-syntax");
    }
    out.set_offset(static_cast<uint32_t>(off));
    return true;
  }

  bool ErrorAt(size_t off, simdjson::error_code e) {
    error_ = Classify(e, off);
    return false;
  }

  bool Walk(od::value v, size_t depth, Value& out) {
    const char* loc = nullptr;
    if (auto e = v.current_location().get(loc)) return Error(v, e);
    size_t off = Offset(loc);
    od::json_type type;
    if (auto e = v.type().get(type)) return ErrorAt(off, e);
    bool container = type == od::json_type::object || type == od::json_type::array;
    if (container && depth > options_.max_depth) {
      return Error(off, "nesting deeper than " + std::to_string(options_.max_depth) + " levels",
                   "json-depth");
    }
    if (type == od::json_type::object) {
      od::object obj;
      if (auto e = v.get_object().get(obj)) return ErrorAt(off, e);
      out = Value::Object();
      auto& members = out.members();
      std::unordered_set<std::string_view> seen;
      for (auto field : obj) {
        od::field f;
        if (auto e = std::move(field).get(f)) return Error(v, e);
        std::string_view key;
        const char* key_loc = f.key().raw() - 1;  // the opening quote
        if (auto e = f.unescaped_key().get(key)) return ErrorAt(Offset(key_loc), e);
        members.emplace_back(std::string(key), Value());
        if (!Walk(f.value(), depth + 1, members.back().second)) return false;
        members.back().second.set_key_offset(static_cast<uint32_t>(Offset(key_loc)));
      }
      // Keys are checked once the object is complete, so the strings are stable.
      for (const auto& m : members) {
        if (!seen.insert(m.first).second) {
          return Error(m.second.offset(), "duplicate key \"" + m.first + "\"", "json-duplicate-key");
        }
      }
    } else if (type == od::json_type::array) {
      od::array arr;
      if (auto e = v.get_array().get(arr)) return ErrorAt(off, e);
      out = Value::Array();
      for (auto element : arr) {
        od::value item;
        if (auto e = std::move(element).get(item)) return Error(v, e);
        out.items().emplace_back();
        if (!Walk(item, depth + 1, out.items().back())) return false;
      }
    } else {
      return Scalar(v, type, off, out);
    }
    out.set_offset(static_cast<uint32_t>(off));
    return true;
  }

  const simdjson::padded_string& text_;
  const ParseOptions& options_;
  ParseError error_;
};

void AppendNumber(std::string& out, double d) {
  if (std::isfinite(d) && d == std::floor(d) && std::fabs(d) < 1e15) {
    out += std::to_string(static_cast<long long>(d));
    return;
  }
  char buf[64];
  auto r = std::to_chars(buf, buf + sizeof buf, d);
  out.append(buf, r.ptr);
}

void Write(std::string& out, const Value& v, int indent, bool pretty) {
  auto newline = [&](int level) {
    if (!pretty) return;
    out += '\n';
    out.append(static_cast<size_t>(level) * 2, ' ');
  };
  switch (v.type()) {
    case Type::kNull: out += "null"; break;
    case Type::kBool: out += v.as_bool() ? "true" : "false"; break;
    case Type::kNumber: out += v.number_text(); break;
    case Type::kString: AppendQuoted(out, v.as_string()); break;
    case Type::kArray:
      if (v.items().empty()) { out += "[]"; break; }
      out += '[';
      for (size_t i = 0; i < v.items().size(); ++i) {
        if (i) out += ',';
        newline(indent + 1);
        Write(out, v.items()[i], indent + 1, pretty);
      }
      newline(indent);
      out += ']';
      break;
    case Type::kObject:
      if (v.members().empty()) { out += "{}"; break; }
      out += '{';
      for (size_t i = 0; i < v.members().size(); ++i) {
        if (i) out += ',';
        newline(indent + 1);
        AppendQuoted(out, v.members()[i].first);
        out += pretty ? ": " : ":";
        Write(out, v.members()[i].second, indent + 1, pretty);
      }
      newline(indent);
      out += '}';
      break;
  }
}

}  // namespace

const char* TypeName(Type t) {
  switch (t) {
    case Type::kNull: return "null";
    case Type::kBool: return "boolean";
    case Type::kNumber: return "number";
    case Type::kString: return "string";
    case Type::kArray: return "array";
    case Type::kObject: return "object";
  }
  return "?";
}

Value Value::Bool(bool b) {
  Value v;
  v.type_ = Type::kBool;
  v.bool_ = b;
  return v;
}

Value Value::Number(double d) {
  std::string text;
  AppendNumber(text, d);
  Value v;
  v.type_ = Type::kNumber;
  v.number_ = d;
  v.text_ = std::move(text);
  return v;
}

Value Value::NumberText(std::string raw) {
  Value v;
  v.type_ = Type::kNumber;
  v.number_ = std::strtod(raw.c_str(), nullptr);
  v.text_ = std::move(raw);
  return v;
}

Value Value::String(std::string s) {
  Value v;
  v.type_ = Type::kString;
  v.text_ = std::move(s);
  return v;
}

Value Value::Array(std::vector<Value> items) {
  Value v;
  v.type_ = Type::kArray;
  v.items_ = std::move(items);
  return v;
}

Value Value::Object(std::vector<Member> members) {
  Value v;
  v.type_ = Type::kObject;
  v.members_ = std::move(members);
  return v;
}

bool Value::is_integer() const {
  return type_ == Type::kNumber && std::isfinite(number_) && number_ == std::floor(number_);
}

const Value* Value::Find(std::string_view key) const {
  for (const auto& m : members_) {
    if (m.first == key) return &m.second;
  }
  return nullptr;
}

Value* Value::Find(std::string_view key) {
  for (auto& m : members_) {
    if (m.first == key) return &m.second;
  }
  return nullptr;
}

void Value::Set(std::string key, Value v) {
  if (Value* existing = Find(key)) {
    *existing = std::move(v);
  } else {
    members_.emplace_back(std::move(key), std::move(v));
  }
}

bool Value::Erase(std::string_view key) {
  auto it = std::find_if(members_.begin(), members_.end(),
                         [&](const Member& m) { return m.first == key; });
  if (it == members_.end()) return false;
  members_.erase(it);
  return true;
}

bool operator==(const Value& a, const Value& b) {
  if (a.type_ != b.type_) return false;
  switch (a.type_) {
    case Type::kNull: return true;
    case Type::kBool: return a.bool_ == b.bool_;
    case Type::kNumber: return a.number_ == b.number_;
    case Type::kString: return a.text_ == b.text_;
    case Type::kArray: return a.items_ == b.items_;
    case Type::kObject: {
      if (a.members_.size() != b.members_.size()) return false;
      for (const auto& m : a.members_) {
        const Value* other = b.Find(m.first);
        if (!other || !(m.second == *other)) return false;
      }
      return true;
    }
  }
  return false;
}

std::expected<Value, ParseError> Parse(std::string_view text, const ParseOptions& options) {
  if (text.size() > options.max_bytes) {
    return std::unexpected(ParseError{0,
                                      "file is " + std::to_string(text.size()) +
                                          " bytes, over the limit of " +
                                          std::to_string(options.max_bytes) + " bytes",
                                      "json-size"});
  }
  // A byte-order mark is not JSON; say so plainly rather than "invalid JSON".
  if (text.size() >= 3 && static_cast<unsigned char>(text[0]) == 0xEF &&
      static_cast<unsigned char>(text[1]) == 0xBB && static_cast<unsigned char>(text[2]) == 0xBF) {
    return std::unexpected(ParseError{0, "the file starts with a UTF-8 byte-order mark; remove it",
                                      "json-syntax"});
  }
  // One parser per thread: its buffers are reused across the files of a sync.
  thread_local od::parser parser;
  simdjson::padded_string padded(text);
  od::document doc;
  if (auto e = parser.iterate(padded).get(doc)) {
    size_t off = 0;
    if (e == simdjson::UTF8_ERROR) {
      size_t bad = FirstInvalidUtf8(text);
      return std::unexpected(
          ParseError{bad == std::string_view::npos ? 0 : bad, "invalid UTF-8", "json-utf8"});
    }
    if (e == simdjson::EMPTY) {
      return std::unexpected(ParseError{0, "the file is empty; expected a JSON value", "json-syntax"});
    }
    return std::unexpected(Refine(
        text,
        ParseError{off, std::string("invalid JSON: ") + simdjson::error_message(e), "json-syntax"}));
  }
  Builder builder(padded, options);
  auto result = builder.Build(doc);
  if (!result) return std::unexpected(Refine(text, std::move(result.error())));
  return result;
}

LineCol LocateOffset(std::string_view text, size_t offset) {
  LineCol lc;
  size_t end = std::min(offset, text.size());
  size_t line_start = 0;
  for (size_t i = 0; i < end; ++i) {
    if (text[i] == '\n') {
      ++lc.line;
      line_start = i + 1;
    } else if (text[i] == '\r' && (i + 1 >= text.size() || text[i + 1] != '\n')) {
      ++lc.line;
      line_start = i + 1;
    }
  }
  lc.col = static_cast<int>(end - line_start) + 1;
  return lc;
}

void AppendQuoted(std::string& out, std::string_view s) {
  out += '"';
  for (char ch : s) {
    auto c = static_cast<unsigned char>(ch);
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (c < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", c);
          out += buf;
        } else {
          out += ch;
        }
    }
  }
  out += '"';
}

std::string Serialize(const Value& v) {
  std::string out;
  Write(out, v, 0, true);
  out += '\n';
  return out;
}

std::string SerializeCompact(const Value& v) {
  std::string out;
  Write(out, v, 0, false);
  return out;
}

}  // namespace gitopsd::json
