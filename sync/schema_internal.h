// Internals of the JSON Schema validator (sync/schema.h), private to it:
// only sync/schema*.cc include this header, and anything here may change
// without notice. Callers use schema::Validator.
//
// The shape of the validator: AddSchema compiles a schema document into a
// tree of Nodes owned by a Registry (schema_compiler.h), with every $ref
// linked to the node it names and per-node summaries filled in for the
// evaluator (Summarize, FinalizeBranches). Validate walks that tree against a
// document (schema_evaluator.h). Both sides use the URI, JSON-pointer and
// message helpers declared here.
//
// Threading: only AddSchema writes a Registry; once it returns, the tree is
// read-only and may be walked by any number of threads at once.
#pragma once
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <regex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "sync/json.h"
#include "sync/status.h"

namespace gitopsd::schema::internal {

// ---------------------------------------------------------------------------
// URI references (RFC 3986) and JSON pointers (RFC 6901): schema_uri.cc.

// `ref_text` resolved against `base_text` (RFC 3986, section 5.2), enough
// for "$id" and "$ref".
std::string ResolveUri(std::string_view base_text, std::string_view ref_text);
// Splits "a#b" into ("a", "b"); a missing fragment is an empty one.
std::pair<std::string, std::string> SplitFragment(std::string_view uri);
// Decodes %XX escapes; a "%" not followed by two hex digits stays as it is.
std::string PercentDecode(std::string_view s);

// One reference token escaped for a pointer: "~" as "~0", "/" as "~1".
std::string EscapeToken(std::string_view token);
// The unescaped tokens of a pointer ("" is the root, no tokens). Fails on a
// pointer that does not start with "/" or has a bad "~" escape.
Result<std::vector<std::string>> SplitPointer(std::string_view pointer);
// The member or array item a token names, or null.
const json::Value* Child(const json::Value& v, const std::string& token);

// ---------------------------------------------------------------------------
// Types, and values as they read in messages: schema_text.cc.

// The "type" keyword as a bit mask.
enum TypeBit : uint8_t {
  kNullBit = 1, kBoolBit = 2, kObjectBit = 4, kArrayBit = 8, kNumberBit = 16, kStringBit = 32,
  kIntegerBit = 64,
};

inline constexpr std::pair<const char*, uint8_t> kTypeNames[] = {
    {"null", kNullBit},     {"boolean", kBoolBit}, {"object", kObjectBit}, {"array", kArrayBit},
    {"number", kNumberBit}, {"string", kStringBit}, {"integer", kIntegerBit},
};

// Whether v has one of the types in `mask` (TypeBits; 0 allows any type).
inline bool TypeAllows(uint8_t mask, const json::Value& v) {
  if (mask == 0) return true;
  switch (v.type()) {
    case json::Type::kNull: return mask & kNullBit;
    case json::Type::kBool: return mask & kBoolBit;
    case json::Type::kObject: return mask & kObjectBit;
    case json::Type::kArray: return mask & kArrayBit;
    case json::Type::kString: return mask & kStringBit;
    case json::Type::kNumber: return (mask & kNumberBit) || ((mask & kIntegerBit) && v.is_integer());
  }
  return false;
}

// `s` as a JSON string literal.
std::string Quote(std::string_view s);
// "string", "string or null", "object, array or null".
std::string DescribeTypes(uint8_t mask);
// A value as it reads in a message: strings quoted, containers named.
std::string Brief(const json::Value& v);
// At most `max` values, then how many more there are.
std::string JoinBrief(const std::vector<json::Value>& values, size_t max = 12);
// The length of UTF-8 text in code points, as "minLength" counts.
size_t CodePoints(std::string_view s);
// Levenshtein distance, for "did you mean" suggestions.
size_t EditDistance(std::string_view a, std::string_view b);

// ---------------------------------------------------------------------------
// The compiled tree.

// An ECMAScript regex matched over code points (std::wregex holds UTF-32 on
// the platforms gitopsd targets), so "." is one character, not one byte.
class Pattern {
 public:
  // Fails, naming the source, when std::regex cannot compile it.
  static Result<Pattern> Compile(const std::string& source);
  // Unanchored, as JSON Schema specifies. An input too complex for
  // std::regex counts as not matching.
  bool Search(std::string_view text) const;
  const std::string& source() const { return source_; }

 private:
  std::string source_;
  std::wregex regex_;
};

struct Node;

struct Bound {
  double value = 0;
  std::string text;  // as spelled in the schema, for messages
};

struct PatternProperty {
  Pattern pattern;
  const Node* schema = nullptr;
};

struct Dependency {
  std::string property;
  std::vector<std::string> required;  // array form
  const Node* schema = nullptr;       // schema form
};

// A property whose const/enum tells anyOf/oneOf branches apart ("kind").
struct Discriminator {
  std::string property;
  std::vector<json::Value> values;
};

struct Branch {
  const Node* schema = nullptr;
  // Filled in once all refs are resolved (FinalizeBranches).
  std::vector<Discriminator> discriminators;
  uint8_t types = 0;  // 0: any type
  std::string label;  // how the summary message names this form
};

struct Node {
  std::string location;  // "doc#/pointer", for messages about the schema
  std::string title;
  std::optional<bool> boolean;  // a boolean schema

  bool has_ref = false;
  std::string ref_text;     // as written
  std::string ref_uri;      // resolved against the base URI
  const Node* ref = nullptr;  // null while the referred document is not registered

  uint8_t types = 0;
  std::optional<std::vector<json::Value>> enum_values;
  std::optional<json::Value> const_value;

  std::vector<std::pair<std::string, const Node*>> properties;  // sorted by name
  std::vector<std::string> required;
  const Node* additional_properties = nullptr;
  std::vector<PatternProperty> pattern_properties;
  const Node* property_names = nullptr;
  std::vector<Dependency> dependencies;
  std::optional<uint64_t> min_properties, max_properties;

  const Node* items = nullptr;
  std::optional<std::vector<const Node*>> tuple_items;
  const Node* additional_items = nullptr;
  const Node* contains = nullptr;
  std::optional<uint64_t> min_items, max_items;
  bool unique_items = false;

  std::optional<uint64_t> min_length, max_length;
  std::optional<Pattern> pattern;

  std::optional<Bound> minimum, maximum, exclusive_minimum, exclusive_maximum, multiple_of;

  std::vector<const Node*> all_of;
  std::vector<Branch> any_of, one_of;
  const Node* not_schema = nullptr;
  const Node* if_schema = nullptr;
  const Node* then_schema = nullptr;
  const Node* else_schema = nullptr;

  // Summaries computed once compiled (Summarize), so that evaluation skips
  // whole groups of keywords a schema does not use.
  bool value_checks = false, object_checks = false, array_checks = false, string_checks = false,
       number_checks = false, combinators = false;
  // An "if" that only tests one property against a const, the shape of a
  // kind switch ({"properties": {"kind": {"const": "Build"}}, "required":
  // ["kind"]}), is decided with one lookup instead of a nested evaluation.
  struct ConstTest {
    std::string property;
    json::Value value;
    bool required = false;
  };
  std::optional<ConstTest> if_const;

  const Node* FindProperty(std::string_view name) const {
    auto it = std::lower_bound(properties.begin(), properties.end(), name,
                               [](const auto& p, std::string_view n) { return ShorterOrLess(p.first, n); });
    return it != properties.end() && it->first == name ? it->second : nullptr;
  }
  // The order of `properties`: by length first, so that most comparisons of
  // a lookup never reach memcmp.
  static bool ShorterOrLess(std::string_view a, std::string_view b) {
    return a.size() != b.size() ? a.size() < b.size() : a < b;
  }
};

// Follows $ref links; stops at an unresolved ref (or a cycle of refs).
inline const Node* Deref(const Node* n) {
  for (int hops = 0; n && n->has_ref && n->ref && hops < 64; ++hops) n = n->ref;
  return n;
}

// schema_summarize.cc. Summarize fills in n's *_checks flags and if_const;
// REQUIRES: n's keywords, and so its subschemas, are compiled ($refs need
// not be resolved yet).
void Summarize(Node& n);
// Fills in each branch's discriminators, types and label. REQUIRES: the
// $refs reachable from the branches are resolved as far as they can be.
void FinalizeBranches(std::vector<Branch>& branches);

// ---------------------------------------------------------------------------
// Registry state.

struct Location {
  std::string doc;      // registered document uri
  std::string pointer;  // canonical JSON pointer inside it
};

// Everything AddSchema builds and Validate reads.
struct Registry {
  std::map<std::string, std::unique_ptr<json::Value>> documents;
  std::unordered_map<std::string, Location> ids;    // absolute uri, or uri#anchor
  std::unordered_map<std::string, Node*> compiled;  // doc + "#" + pointer
  std::vector<std::unique_ptr<Node>> arena;
  std::vector<Node*> pending;  // $refs into documents not registered yet

  // The compiled schema a uri (with an optional fragment) names.
  Result<const Node*> Lookup(std::string_view uri) const;
};

}  // namespace gitopsd::schema::internal
