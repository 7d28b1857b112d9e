// The JSON document model of gitopsd: a small owning tree that remembers
// where each value starts in its source text, so that every error can name
// a line and a column. Parsing is done by simdjson (On-Demand); this header
// keeps simdjson out of everything that includes it.
//
// Object members keep their order and duplicate keys are rejected at parse
// time. Numbers keep their source text, so writing a parsed document back
// never changes how a number is spelled.
#pragma once
#include <cstddef>
#include <cstdint>
#include <expected>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "sync/diagnostic.h"

namespace gitopsd::json {

enum class Type : uint8_t { kNull, kBool, kNumber, kString, kArray, kObject };

const char* TypeName(Type t);  // "null", "boolean", "number", "string", "array", "object"

class Value;
using Member = std::pair<std::string, Value>;

class Value {
 public:
  Value() = default;
  static Value Null() { return Value(); }
  static Value Bool(bool b);
  static Value Number(double d);          // canonical spelling
  static Value NumberText(std::string raw);  // REQUIRES: raw is a valid JSON number
  static Value String(std::string s);
  static Value Array(std::vector<Value> items = {});
  static Value Object(std::vector<Member> members = {});

  Type type() const { return type_; }
  bool is_null() const { return type_ == Type::kNull; }
  bool is_bool() const { return type_ == Type::kBool; }
  bool is_number() const { return type_ == Type::kNumber; }
  bool is_string() const { return type_ == Type::kString; }
  bool is_array() const { return type_ == Type::kArray; }
  bool is_object() const { return type_ == Type::kObject; }
  // True for numbers with no fractional part (1 and 1.0 both count, as in
  // JSON Schema draft 6 and later).
  bool is_integer() const;

  bool as_bool() const { return bool_; }
  double as_double() const { return number_; }
  const std::string& as_string() const { return text_; }    // string value
  const std::string& number_text() const { return text_; }  // number as spelled
  const std::vector<Value>& items() const { return items_; }
  std::vector<Value>& items() { return items_; }
  const std::vector<Member>& members() const { return members_; }
  std::vector<Member>& members() { return members_; }

  // Object lookup; nullptr when absent or when this is not an object.
  const Value* Find(std::string_view key) const;
  Value* Find(std::string_view key);
  // Sets or replaces a member, keeping its position when it exists.
  void Set(std::string key, Value v);
  bool Erase(std::string_view key);

  // Byte offset of the value's first character in the parsed text
  // (0 for values built in code).
  uint32_t offset() const { return offset_; }
  void set_offset(uint32_t o) { offset_ = o; }
  // For a value that is an object member: byte offset of its key's opening
  // quote (0 otherwise). Errors about a key ("unknown key") point here.
  uint32_t key_offset() const { return key_offset_; }
  void set_key_offset(uint32_t o) { key_offset_ = o; }

  // Deep equality as JSON Schema defines it: numbers by value, objects
  // regardless of member order.
  friend bool operator==(const Value& a, const Value& b);

 private:
  Type type_ = Type::kNull;
  bool bool_ = false;
  double number_ = 0;
  uint32_t offset_ = 0;
  uint32_t key_offset_ = 0;
  std::string text_;
  std::vector<Value> items_;
  std::vector<Member> members_;
};

struct ParseOptions {
  size_t max_bytes = 1 << 20;  // larger inputs are refused, not parsed
  size_t max_depth = 64;       // nesting of arrays and objects
};

// A parse problem: a byte offset into the text, a message and a rule id
// ("json-syntax", "json-utf8", "json-depth", "json-size", "json-duplicate-key").
struct ParseError {
  size_t offset = 0;
  std::string message;
  std::string rule;
};

std::expected<Value, ParseError> Parse(std::string_view text,
                                       const ParseOptions& options = {});

struct LineCol {
  int line = 1;
  int col = 1;
};
// 1-based line and column of a byte offset; "\r\n" counts as one break.
LineCol LocateOffset(std::string_view text, size_t offset);

// Canonical text: 2-space indent, members in their stored order, "\n"
// newlines, a trailing newline, non-ASCII kept as UTF-8.
std::string Serialize(const Value& v);
// Compact one-line text (for storage and the HTTP API).
std::string SerializeCompact(const Value& v);
// Appends s as a quoted, escaped JSON string.
void AppendQuoted(std::string& out, std::string_view s);

}  // namespace gitopsd::json
