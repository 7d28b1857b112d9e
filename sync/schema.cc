#include "sync/schema.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <optional>
#include <regex>
#include <unordered_map>

namespace gitopsd::schema {
namespace {

std::string Quote(std::string_view s) {
  std::string out;
  json::AppendQuoted(out, s);
  return out;
}

// ---------------------------------------------------------------------------
// URI references (RFC 3986, section 5.2), enough for "$id" and "$ref".

struct UriRef {
  std::optional<std::string> scheme, authority, query, fragment;
  std::string path;
};

bool IsScheme(std::string_view s) {
  if (s.empty() || !std::isalpha(static_cast<unsigned char>(s[0]))) return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '+' || c == '-' || c == '.';
  });
}

UriRef ParseUriRef(std::string_view s) {
  UriRef r;
  if (size_t hash = s.find('#'); hash != s.npos) {
    r.fragment = std::string(s.substr(hash + 1));
    s = s.substr(0, hash);
  }
  if (size_t q = s.find('?'); q != s.npos) {
    r.query = std::string(s.substr(q + 1));
    s = s.substr(0, q);
  }
  if (size_t colon = s.find(':'); colon != s.npos && IsScheme(s.substr(0, colon))) {
    r.scheme = std::string(s.substr(0, colon));
    s = s.substr(colon + 1);
  }
  if (s.starts_with("//")) {
    size_t end = s.find('/', 2);
    r.authority = std::string(s.substr(2, end == s.npos ? s.npos : end - 2));
    s = end == s.npos ? std::string_view() : s.substr(end);
  }
  r.path = std::string(s);
  return r;
}

std::string RemoveDotSegments(std::string_view in) {
  std::string out;
  auto drop_last_segment = [&out] {
    size_t slash = out.rfind('/');
    out.erase(slash == std::string::npos ? 0 : slash);
  };
  while (!in.empty()) {
    if (in.starts_with("../")) in.remove_prefix(3);
    else if (in.starts_with("./")) in.remove_prefix(2);
    else if (in.starts_with("/./")) in.remove_prefix(2);
    else if (in == "/.") in = "/";
    else if (in.starts_with("/../")) { in.remove_prefix(3); drop_last_segment(); }
    else if (in == "/..") { in = "/"; drop_last_segment(); }
    else if (in == "." || in == "..") in = {};
    else {
      size_t end = in.find('/', 1);
      if (end == in.npos) end = in.size();
      out.append(in.substr(0, end));
      in.remove_prefix(end);
    }
  }
  return out;
}

std::string ComposeUri(const UriRef& r) {
  std::string out;
  if (r.scheme) out += *r.scheme + ":";
  if (r.authority) out += "//" + *r.authority;
  out += r.path;
  if (r.query) out += "?" + *r.query;
  if (r.fragment) out += "#" + *r.fragment;
  return out;
}

std::string ResolveUri(std::string_view base_text, std::string_view ref_text) {
  UriRef ref = ParseUriRef(ref_text);
  UriRef base = ParseUriRef(base_text);
  UriRef t;
  if (ref.scheme || ref.authority) {
    t.scheme = ref.scheme ? ref.scheme : base.scheme;
    t.authority = ref.authority;
    t.path = RemoveDotSegments(ref.path);
    t.query = ref.query;
  } else {
    t.scheme = base.scheme;
    t.authority = base.authority;
    if (ref.path.empty()) {
      t.path = base.path;
      t.query = ref.query ? ref.query : base.query;
    } else {
      if (ref.path.front() == '/') {
        t.path = RemoveDotSegments(ref.path);
      } else if (base.authority && base.path.empty()) {
        t.path = RemoveDotSegments("/" + ref.path);
      } else {
        size_t slash = base.path.rfind('/');
        std::string merged = slash == std::string::npos ? "" : base.path.substr(0, slash + 1);
        t.path = RemoveDotSegments(merged + ref.path);
      }
      t.query = ref.query;
    }
  }
  t.fragment = ref.fragment;
  return ComposeUri(t);
}

// Splits "a#b" into ("a", "b"); a missing fragment is an empty one.
std::pair<std::string, std::string> SplitFragment(std::string_view uri) {
  size_t hash = uri.find('#');
  if (hash == uri.npos) return {std::string(uri), ""};
  return {std::string(uri.substr(0, hash)), std::string(uri.substr(hash + 1))};
}

int HexDigit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::string PercentDecode(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size() && HexDigit(s[i + 1]) >= 0 && HexDigit(s[i + 2]) >= 0) {
      out.push_back(static_cast<char>(HexDigit(s[i + 1]) * 16 + HexDigit(s[i + 2])));
      i += 2;
    } else {
      out.push_back(s[i]);
    }
  }
  return out;
}

// ---------------------------------------------------------------------------
// JSON pointers (RFC 6901).

std::string EscapeToken(std::string_view token) {
  std::string out;
  for (char c : token) {
    if (c == '~') out += "~0";
    else if (c == '/') out += "~1";
    else out.push_back(c);
  }
  return out;
}

Result<std::vector<std::string>> SplitPointer(std::string_view pointer) {
  std::vector<std::string> tokens;
  if (pointer.empty()) return tokens;
  if (pointer.front() != '/') {
    return Fail("JSON pointer " + Quote(pointer) + " must start with \"/\"");
  }
  pointer.remove_prefix(1);
  while (true) {
    size_t end = pointer.find('/');
    std::string_view raw = pointer.substr(0, end);
    std::string token;
    for (size_t i = 0; i < raw.size(); ++i) {
      if (raw[i] != '~') { token.push_back(raw[i]); continue; }
      if (i + 1 < raw.size() && (raw[i + 1] == '0' || raw[i + 1] == '1')) {
        token.push_back(raw[i + 1] == '0' ? '~' : '/');
        ++i;
      } else {
        return Fail("JSON pointer has a \"~\" not followed by 0 or 1");
      }
    }
    tokens.push_back(std::move(token));
    if (end == pointer.npos) break;
    pointer.remove_prefix(end + 1);
  }
  return tokens;
}

const json::Value* Child(const json::Value& v, const std::string& token) {
  if (v.is_object()) return v.Find(token);
  if (!v.is_array() || token.empty() || token.size() > 9) return nullptr;
  if (!std::all_of(token.begin(), token.end(), [](char c) { return c >= '0' && c <= '9'; })) return nullptr;
  if (token.size() > 1 && token[0] == '0') return nullptr;
  size_t index = std::stoul(token);
  return index < v.items().size() ? &v.items()[index] : nullptr;
}

// ---------------------------------------------------------------------------
// Types and values in messages.

enum TypeBit : uint8_t {
  kNullBit = 1, kBoolBit = 2, kObjectBit = 4, kArrayBit = 8, kNumberBit = 16, kStringBit = 32,
  kIntegerBit = 64,
};

constexpr std::pair<const char*, uint8_t> kTypeNames[] = {
    {"null", kNullBit},     {"boolean", kBoolBit}, {"object", kObjectBit}, {"array", kArrayBit},
    {"number", kNumberBit}, {"string", kStringBit}, {"integer", kIntegerBit},
};

bool TypeAllows(uint8_t mask, const json::Value& v) {
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

// "string", "string or null", "object, array or null".
std::string DescribeTypes(uint8_t mask) {
  std::vector<std::string> names;
  for (const auto& [name, bit] : kTypeNames) {
    if ((mask & bit) && !(bit == kIntegerBit && (mask & kNumberBit))) names.push_back(name);
  }
  std::string out;
  for (size_t i = 0; i < names.size(); ++i) {
    if (i > 0) out += i + 1 == names.size() ? " or " : ", ";
    out += names[i];
  }
  return out;
}

// A value as it reads in a message: strings quoted, containers named.
std::string Brief(const json::Value& v) {
  constexpr size_t kMax = 60;
  std::string out;
  switch (v.type()) {
    case json::Type::kObject: return v.members().empty() ? "{}" : "an object";
    case json::Type::kArray: return v.items().empty() ? "[]" : "an array";
    case json::Type::kString: out = Quote(v.as_string()); break;
    default: out = json::SerializeCompact(v); break;
  }
  if (out.size() > kMax) {
    size_t cut = kMax - 4;
    while (cut > 0 && (out[cut] & 0xC0) == 0x80) --cut;  // keep whole characters
    out = out.substr(0, cut) + (v.is_string() ? "...\"" : "...");
  }
  return out;
}

std::string JoinBrief(const std::vector<json::Value>& values, size_t max = 12) {
  std::string out;
  for (size_t i = 0; i < values.size() && i < max; ++i) {
    if (i > 0) out += ", ";
    out += Brief(values[i]);
  }
  if (values.size() > max) out += ", ... (" + std::to_string(values.size() - max) + " more)";
  return out;
}

size_t CodePoints(std::string_view s) {
  return std::count_if(s.begin(), s.end(), [](char c) { return (c & 0xC0) != 0x80; });
}

std::wstring Utf8ToWide(std::string_view s) {
  std::wstring out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) {
    auto c = static_cast<unsigned char>(s[i]);
    size_t len = c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
    uint32_t cp = len == 1 ? c : len == 2 ? (c & 0x1F) : len == 3 ? (c & 0x0F) : (c & 0x07);
    for (size_t k = 1; k < len && i + k < s.size(); ++k) cp = (cp << 6) | (s[i + k] & 0x3F);
    out.push_back(static_cast<wchar_t>(cp));
    i += len;
  }
  return out;
}

size_t EditDistance(std::string_view a, std::string_view b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diagonal = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = up;
    }
  }
  return row[b.size()];
}

// ---------------------------------------------------------------------------
// The compiled tree.

// An ECMAScript regex matched over code points (std::wregex holds UTF-32 on
// the platforms gitopsd targets), so "." is one character, not one byte.
class Pattern {
 public:
  static Result<Pattern> Compile(const std::string& source) {
    Pattern p;
    p.source_ = source;
    try {
      p.regex_ = std::wregex(Utf8ToWide(source), std::regex::ECMAScript);
    } catch (const std::regex_error& e) {
      return Fail("invalid regular expression " + Quote(source) + ": " + e.what());
    }
    return p;
  }
  // Unanchored, as JSON Schema specifies. An input too complex for
  // std::regex counts as not matching.
  bool Search(std::string_view text) const {
    try {
      return std::regex_search(Utf8ToWide(text), regex_);
    } catch (const std::regex_error&) {
      return false;
    }
  }
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
  // Filled in once all refs are resolved (Finalize).
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
const Node* Deref(const Node* n) {
  for (int hops = 0; n && n->has_ref && n->ref && hops < 64; ++hops) n = n->ref;
  return n;
}

void CollectDiscriminators(const Node* n, std::vector<Discriminator>& out, int depth) {
  n = Deref(n);
  if (!n || n->boolean || depth > 3) return;
  for (const auto& [name, schema] : n->properties) {
    const Node* p = Deref(schema);
    if (p && p->const_value) out.push_back({name, {*p->const_value}});
    else if (p && p->enum_values && !p->enum_values->empty()) out.push_back({name, *p->enum_values});
  }
  for (const Node* part : n->all_of) CollectDiscriminators(part, out, depth + 1);
}

std::string LabelBranch(const Branch& b, size_t index) {
  const Node* n = Deref(b.schema);
  if (n && !n->title.empty()) return n->title;
  if (!b.discriminators.empty()) {
    const Discriminator& d = b.discriminators.front();
    std::string out = "object with " + Quote(d.property) + ": ";
    for (size_t i = 0; i < d.values.size() && i < 4; ++i) out += (i ? " or " : "") + Brief(d.values[i]);
    return out;
  }
  if (n && n->const_value) return Brief(*n->const_value);
  if (b.types != 0) return DescribeTypes(b.types);
  if (b.schema->has_ref) return "$ref " + Quote(b.schema->ref_text);
  return "form " + std::to_string(index + 1);
}

// A property tells branches apart when at least two branches pin it with
// const/enum and no value is allowed by two of them ("kind": "Build" vs
// "Deploy"). A property every branch pins to the same value (apiVersion),
// or that only one branch constrains (an enum field), selects nothing.
bool Discriminates(const std::vector<std::vector<Discriminator>>& candidates,
                   const std::string& property) {
  std::vector<const std::vector<json::Value>*> sets;
  for (const auto& branch : candidates) {
    for (const auto& d : branch) {
      if (d.property == property) sets.push_back(&d.values);
    }
  }
  if (sets.size() < 2) return false;
  for (size_t i = 0; i < sets.size(); ++i) {
    for (size_t j = i + 1; j < sets.size(); ++j) {
      for (const auto& value : *sets[i]) {
        if (std::find(sets[j]->begin(), sets[j]->end(), value) != sets[j]->end()) return false;
      }
    }
  }
  return true;
}

void FinalizeBranches(std::vector<Branch>& branches) {
  std::vector<std::vector<Discriminator>> candidates(branches.size());
  for (size_t i = 0; i < branches.size(); ++i) {
    std::vector<Discriminator> found;
    CollectDiscriminators(branches[i].schema, found, 0);
    for (auto& d : found) {  // the first constraint on a property wins
      auto same = [&](const Discriminator& x) { return x.property == d.property; };
      if (std::none_of(candidates[i].begin(), candidates[i].end(), same)) {
        candidates[i].push_back(std::move(d));
      }
    }
  }
  for (size_t i = 0; i < branches.size(); ++i) {
    Branch& b = branches[i];
    b.discriminators.clear();
    for (const auto& d : candidates[i]) {
      if (Discriminates(candidates, d.property)) b.discriminators.push_back(d);
    }
    const Node* n = Deref(b.schema);
    b.types = n && !n->boolean ? n->types : 0;
    b.label = LabelBranch(b, i);
  }
}

void Summarize(Node& n) {
  n.value_checks = n.types != 0 || n.enum_values || n.const_value;
  n.object_checks = !n.properties.empty() || !n.required.empty() || n.additional_properties ||
                    !n.pattern_properties.empty() || n.property_names || !n.dependencies.empty() ||
                    n.min_properties || n.max_properties;
  n.array_checks = n.items || n.tuple_items || n.contains || n.min_items || n.max_items || n.unique_items;
  n.string_checks = n.min_length || n.max_length || n.pattern;
  n.number_checks = n.minimum || n.maximum || n.exclusive_minimum || n.exclusive_maximum || n.multiple_of;
  n.combinators = !n.all_of.empty() || !n.any_of.empty() || !n.one_of.empty() || n.not_schema || n.if_schema;

  const Node* test = n.if_schema;
  if (!test || test->boolean || test->has_ref || test->value_checks || test->array_checks ||
      test->string_checks || test->number_checks || test->combinators || test->properties.size() != 1 ||
      test->additional_properties || !test->pattern_properties.empty() || test->property_names ||
      !test->dependencies.empty() || test->min_properties || test->max_properties) {
    return;
  }
  const auto& [property, schema] = test->properties.front();
  bool const_only = !schema->boolean && !schema->has_ref && schema->const_value && schema->types == 0 &&
                    !schema->enum_values && !schema->object_checks && !schema->array_checks &&
                    !schema->string_checks && !schema->number_checks && !schema->combinators;
  bool required_ok = std::all_of(test->required.begin(), test->required.end(),
                                 [&](const std::string& r) { return r == property; });
  if (const_only && required_ok) {
    n.if_const = Node::ConstTest{property, *schema->const_value, !test->required.empty()};
  }
}

// ---------------------------------------------------------------------------
// Registry state and compilation.

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


// Where a schema being compiled sits.
struct Site {
  const std::string& doc;
  std::string pointer;
  std::string base;  // base URI in effect
  std::string Under(std::string_view keyword) const { return pointer + "/" + EscapeToken(keyword); }
};

// One AddSchema call. REQUIRES: the caller rolls the registry back on failure.
class Compiler {
 public:
  explicit Compiler(Registry& registry) : s_(registry) {}

  Status AddDocument(const std::string& uri, const json::Value& schema);
  // $ref nodes of earlier documents that this call resolved.
  const std::vector<Node*>& resolved_pending() const { return resolved_pending_; }

 private:
  Result<Node*> CompileAt(const std::string& doc, const std::string& pointer, const json::Value& v,
                          std::string base);
  Result<Node*> CompileLocation(const std::string& doc, std::string_view pointer);
  Result<Node*> ResolveRef(const Node& n);  // nullptr: the document is not registered
  Status ResolveWork();
  Status RegisterId(const std::string& key, const Location& where);
  Status CompileKeywords(Node& n, const json::Value& v, const Site& site);
  Status CompileObjectKeywords(Node& n, const json::Value& v, const Site& site);
  Status CompileArrayKeywords(Node& n, const json::Value& v, const Site& site);
  Status CompileScalarKeywords(Node& n, const json::Value& v, const Site& site);
  Status CompileCombinators(Node& n, const json::Value& v, const Site& site);
  Result<const Node*> Sub(const Site& site, std::string_view keyword, const json::Value& v);
  Result<const Node*> Sub(const Site& site, std::string_view keyword, std::string_view key,
                          const json::Value& v);

  Registry& s_;
  std::vector<Node*> work_;  // $ref nodes to resolve
  std::vector<Node*> resolved_pending_;
};

std::unexpected<Error> Invalid(const Site& site, std::string_view keyword, std::string_view what) {
  return Fail("invalid schema at " + site.doc + "#" + site.pointer + ": \"" + std::string(keyword) +
              "\" " + std::string(what));
}

Result<uint64_t> NonNegative(const Site& site, std::string_view keyword, const json::Value& v) {
  if (!v.is_number() || !v.is_integer() || v.as_double() < 0) {
    return Invalid(site, keyword, "must be a non-negative integer");
  }
  return static_cast<uint64_t>(v.as_double());
}

Result<Bound> Number(const Site& site, std::string_view keyword, const json::Value& v) {
  if (!v.is_number()) return Invalid(site, keyword, "must be a number");
  return Bound{v.as_double(), v.number_text()};
}

Result<std::vector<std::string>> StringArray(const Site& site, std::string_view keyword,
                                             const json::Value& v) {
  if (!v.is_array()) return Invalid(site, keyword, "must be an array of strings");
  std::vector<std::string> out;
  for (const auto& item : v.items()) {
    if (!item.is_string()) return Invalid(site, keyword, "must be an array of strings");
    out.push_back(item.as_string());
  }
  return out;
}

Result<uint8_t> TypeMask(const Site& site, const json::Value& v) {
  std::vector<const json::Value*> names;
  if (v.is_string()) names.push_back(&v);
  else if (v.is_array()) for (const auto& item : v.items()) names.push_back(&item);
  else return Invalid(site, "type", "must be a type name or an array of them");
  uint8_t mask = 0;
  for (const json::Value* name : names) {
    auto it = std::find_if(std::begin(kTypeNames), std::end(kTypeNames), [&](const auto& t) {
      return name->is_string() && name->as_string() == t.first;
    });
    if (it == std::end(kTypeNames)) {
      return Invalid(site, "type", "has unknown type " + Brief(*name) +
                                       " (use null, boolean, object, array, number, string or integer)");
    }
    mask |= it->second;
  }
  return mask;
}

Result<const Node*> Compiler::Sub(const Site& site, std::string_view keyword, const json::Value& v) {
  auto node = CompileAt(site.doc, site.Under(keyword), v, site.base);
  if (!node) return std::unexpected(node.error());
  return *node;
}

Result<const Node*> Compiler::Sub(const Site& site, std::string_view keyword, std::string_view key,
                                  const json::Value& v) {
  auto node = CompileAt(site.doc, site.Under(keyword) + "/" + EscapeToken(key), v, site.base);
  if (!node) return std::unexpected(node.error());
  return *node;
}

Status Compiler::RegisterId(const std::string& key, const Location& where) {
  auto [it, inserted] = s_.ids.emplace(key, where);
  if (!inserted && (it->second.doc != where.doc || it->second.pointer != where.pointer)) {
    return Fail("invalid schema at " + where.doc + "#" + where.pointer + ": \"$id\" " + Quote(key) +
                " is already used by " + it->second.doc + "#" + it->second.pointer);
  }
  return Ok();
}

Result<Node*> Compiler::CompileAt(const std::string& doc, const std::string& pointer,
                                  const json::Value& v, std::string base) {
  std::string key = doc + "#" + pointer;
  if (auto it = s_.compiled.find(key); it != s_.compiled.end()) return it->second;
  auto owned = std::make_unique<Node>();
  Node* n = owned.get();
  s_.arena.push_back(std::move(owned));
  s_.compiled.emplace(key, n);
  n->location = key;
  Site site{doc, pointer, std::move(base)};
  if (v.is_bool()) {
    n->boolean = v.as_bool();
    return n;
  }
  if (!v.is_object()) {
    return Fail("invalid schema at " + key + ": a schema must be an object or a boolean, not " +
                json::TypeName(v.type()));
  }
  const json::Value* ref = v.Find("$ref");
  // Draft-07: "$ref" makes its siblings (even "$id") be ignored, but
  // "definitions" beside it can still be the target of other refs.
  if (const json::Value* id = v.Find("$id"); id && (!ref || pointer.empty())) {
    if (!id->is_string()) return Invalid(site, "$id", "must be a string");
    auto [uri, anchor] = SplitFragment(ResolveUri(site.base, id->as_string()));
    if (uri != site.base || pointer.empty()) {
      if (auto st = RegisterId(uri, {doc, pointer}); !st) return std::unexpected(st.error());
      site.base = uri;
    }
    if (!anchor.empty()) {
      if (auto st = RegisterId(uri + "#" + anchor, {doc, pointer}); !st) return std::unexpected(st.error());
    }
  }
  if (ref) {
    if (!ref->is_string()) return Invalid(site, "$ref", "must be a string");
    n->has_ref = true;
    n->ref_text = ref->as_string();
    n->ref_uri = ResolveUri(site.base, n->ref_text);
    work_.push_back(n);
    if (const json::Value* defs = v.Find("definitions"); defs && defs->is_object()) {
      for (const auto& [name, schema] : defs->members()) {
        if (auto sub = Sub(site, "definitions", name, schema); !sub) return std::unexpected(sub.error());
      }
    }
    return n;
  }
  if (auto st = CompileKeywords(*n, v, site); !st) return std::unexpected(st.error());
  return n;
}

Status Compiler::CompileKeywords(Node& n, const json::Value& v, const Site& site) {
  if (const json::Value* title = v.Find("title"); title && title->is_string()) n.title = title->as_string();
  if (const json::Value* type = v.Find("type")) {
    auto mask = TypeMask(site, *type);
    if (!mask) return std::unexpected(mask.error());
    n.types = *mask;
  }
  if (const json::Value* e = v.Find("enum")) {
    if (!e->is_array()) return Invalid(site, "enum", "must be an array");
    n.enum_values = e->items();
  }
  if (const json::Value* c = v.Find("const")) n.const_value = *c;
  if (const json::Value* defs = v.Find("definitions")) {
    if (!defs->is_object()) return Invalid(site, "definitions", "must be an object");
    for (const auto& [name, schema] : defs->members()) {
      if (auto sub = Sub(site, "definitions", name, schema); !sub) return std::unexpected(sub.error());
    }
  }
  if (auto st = CompileObjectKeywords(n, v, site); !st) return st;
  if (auto st = CompileArrayKeywords(n, v, site); !st) return st;
  if (auto st = CompileScalarKeywords(n, v, site); !st) return st;
  if (auto st = CompileCombinators(n, v, site); !st) return st;
  Summarize(n);
  return Ok();
}

Status Compiler::CompileObjectKeywords(Node& n, const json::Value& v, const Site& site) {
  if (const json::Value* props = v.Find("properties")) {
    if (!props->is_object()) return Invalid(site, "properties", "must be an object");
    for (const auto& [name, schema] : props->members()) {
      auto sub = Sub(site, "properties", name, schema);
      if (!sub) return std::unexpected(sub.error());
      n.properties.emplace_back(name, *sub);
    }
    std::sort(n.properties.begin(), n.properties.end(),
              [](const auto& a, const auto& b) { return Node::ShorterOrLess(a.first, b.first); });
  }
  if (const json::Value* req = v.Find("required")) {
    auto names = StringArray(site, "required", *req);
    if (!names) return std::unexpected(names.error());
    n.required = std::move(*names);
  }
  if (const json::Value* pp = v.Find("patternProperties")) {
    if (!pp->is_object()) return Invalid(site, "patternProperties", "must be an object");
    for (const auto& [source, schema] : pp->members()) {
      auto pattern = Pattern::Compile(source);
      if (!pattern) return Invalid(site, "patternProperties", "has an " + pattern.error().message);
      auto sub = Sub(site, "patternProperties", source, schema);
      if (!sub) return std::unexpected(sub.error());
      n.pattern_properties.push_back({std::move(*pattern), *sub});
    }
  }
  if (const json::Value* ap = v.Find("additionalProperties")) {
    auto sub = Sub(site, "additionalProperties", *ap);
    if (!sub) return std::unexpected(sub.error());
    n.additional_properties = *sub;
  }
  if (const json::Value* pn = v.Find("propertyNames")) {
    auto sub = Sub(site, "propertyNames", *pn);
    if (!sub) return std::unexpected(sub.error());
    n.property_names = *sub;
  }
  if (const json::Value* deps = v.Find("dependencies")) {
    if (!deps->is_object()) return Invalid(site, "dependencies", "must be an object");
    for (const auto& [name, dep] : deps->members()) {
      Dependency d{name, {}, nullptr};
      if (dep.is_array()) {
        auto names = StringArray(site, "dependencies", dep);
        if (!names) return std::unexpected(names.error());
        d.required = std::move(*names);
      } else {
        auto sub = Sub(site, "dependencies", name, dep);
        if (!sub) return std::unexpected(sub.error());
        d.schema = *sub;
      }
      n.dependencies.push_back(std::move(d));
    }
  }
  for (auto [keyword, field] : {std::pair{"minProperties", &n.min_properties},
                                std::pair{"maxProperties", &n.max_properties}}) {
    if (const json::Value* limit = v.Find(keyword)) {
      auto count = NonNegative(site, keyword, *limit);
      if (!count) return std::unexpected(count.error());
      *field = *count;
    }
  }
  return Ok();
}

Status Compiler::CompileArrayKeywords(Node& n, const json::Value& v, const Site& site) {
  if (const json::Value* items = v.Find("items")) {
    if (items->is_array()) {
      n.tuple_items.emplace();
      for (size_t i = 0; i < items->items().size(); ++i) {
        auto sub = Sub(site, "items", std::to_string(i), items->items()[i]);
        if (!sub) return std::unexpected(sub.error());
        n.tuple_items->push_back(*sub);
      }
    } else {
      auto sub = Sub(site, "items", *items);
      if (!sub) return std::unexpected(sub.error());
      n.items = *sub;
    }
  }
  // Draft-07: additionalItems only means something beside an items array.
  if (const json::Value* extra = v.Find("additionalItems")) {
    auto sub = Sub(site, "additionalItems", *extra);
    if (!sub) return std::unexpected(sub.error());
    if (n.tuple_items) n.additional_items = *sub;
  }
  if (const json::Value* contains = v.Find("contains")) {
    auto sub = Sub(site, "contains", *contains);
    if (!sub) return std::unexpected(sub.error());
    n.contains = *sub;
  }
  if (const json::Value* unique = v.Find("uniqueItems")) {
    if (!unique->is_bool()) return Invalid(site, "uniqueItems", "must be a boolean");
    n.unique_items = unique->as_bool();
  }
  for (auto [keyword, field] : {std::pair{"minItems", &n.min_items}, std::pair{"maxItems", &n.max_items}}) {
    if (const json::Value* limit = v.Find(keyword)) {
      auto count = NonNegative(site, keyword, *limit);
      if (!count) return std::unexpected(count.error());
      *field = *count;
    }
  }
  return Ok();
}

Status Compiler::CompileScalarKeywords(Node& n, const json::Value& v, const Site& site) {
  for (auto [keyword, field] :
       {std::pair{"minLength", &n.min_length}, std::pair{"maxLength", &n.max_length}}) {
    if (const json::Value* limit = v.Find(keyword)) {
      auto count = NonNegative(site, keyword, *limit);
      if (!count) return std::unexpected(count.error());
      *field = *count;
    }
  }
  if (const json::Value* pattern = v.Find("pattern")) {
    if (!pattern->is_string()) return Invalid(site, "pattern", "must be a string");
    auto compiled = Pattern::Compile(pattern->as_string());
    if (!compiled) return Invalid(site, "pattern", "is an " + compiled.error().message);
    n.pattern = std::move(*compiled);
  }
  for (auto [keyword, field] : {std::pair{"minimum", &n.minimum}, std::pair{"maximum", &n.maximum},
                                std::pair{"exclusiveMinimum", &n.exclusive_minimum},
                                std::pair{"exclusiveMaximum", &n.exclusive_maximum},
                                std::pair{"multipleOf", &n.multiple_of}}) {
    if (const json::Value* bound = v.Find(keyword)) {
      auto number = Number(site, keyword, *bound);
      if (!number) return std::unexpected(number.error());
      *field = std::move(*number);
    }
  }
  if (n.multiple_of && !(n.multiple_of->value > 0)) {
    return Invalid(site, "multipleOf", "must be greater than 0");
  }
  return Ok();
}

Status Compiler::CompileCombinators(Node& n, const json::Value& v, const Site& site) {
  for (const char* keyword : {"allOf", "anyOf", "oneOf"}) {
    const json::Value* list = v.Find(keyword);
    if (!list) continue;
    if (!list->is_array() || list->items().empty()) {
      return Invalid(site, keyword, "must be a non-empty array of schemas");
    }
    for (size_t i = 0; i < list->items().size(); ++i) {
      auto sub = Sub(site, keyword, std::to_string(i), list->items()[i]);
      if (!sub) return std::unexpected(sub.error());
      std::string_view name = keyword;
      if (name == "allOf") n.all_of.push_back(*sub);
      else (name == "anyOf" ? n.any_of : n.one_of).push_back(Branch{*sub, {}, 0, {}});
    }
  }
  for (auto [keyword, field] : {std::pair{"not", &n.not_schema}, std::pair{"if", &n.if_schema},
                                std::pair{"then", &n.then_schema}, std::pair{"else", &n.else_schema}}) {
    if (const json::Value* sub_value = v.Find(keyword)) {
      auto sub = Sub(site, keyword, *sub_value);
      if (!sub) return std::unexpected(sub.error());
      *field = *sub;
    }
  }
  if (!n.if_schema) n.then_schema = n.else_schema = nullptr;  // ignored without "if"
  return Ok();
}

// Compiles the value at a pointer inside a registered document (a $ref
// target), working out the base URI from the "$id"s on the way down.
Result<Node*> Compiler::CompileLocation(const std::string& doc, std::string_view pointer) {
  auto tokens = SplitPointer(pointer);
  if (!tokens) return std::unexpected(tokens.error());
  std::string canonical;
  for (const auto& t : *tokens) canonical += "/" + EscapeToken(t);
  if (auto it = s_.compiled.find(doc + "#" + canonical); it != s_.compiled.end()) return it->second;
  const json::Value* v = s_.documents.at(doc).get();
  std::string base = doc;
  for (size_t i = 0; i < tokens->size(); ++i) {
    const json::Value* id = v->is_object() ? v->Find("$id") : nullptr;
    if (id && id->is_string() && (i == 0 || !v->Find("$ref"))) {
      base = SplitFragment(ResolveUri(base, id->as_string())).first;
    }
    v = Child(*v, (*tokens)[i]);
    if (!v) return Fail("there is no value at " + Quote(canonical) + " in " + doc);
  }
  return CompileAt(doc, canonical, *v, base);
}

Result<Node*> Compiler::ResolveRef(const Node& n) {
  auto [uri, fragment] = SplitFragment(n.ref_uri);
  fragment = PercentDecode(fragment);
  auto it = s_.ids.find(uri);
  if (it == s_.ids.end()) return nullptr;
  Location where = it->second;
  if (!fragment.empty() && fragment.front() != '/') {
    auto anchor = s_.ids.find(uri + "#" + fragment);
    if (anchor == s_.ids.end()) return Fail("no \"$id\": \"#" + fragment + "\" in " + uri);
    where = anchor->second;
    fragment.clear();
  }
  return CompileLocation(where.doc, where.pointer + fragment);
}

Status Compiler::ResolveWork() {
  while (!work_.empty()) {
    Node* n = work_.back();
    work_.pop_back();
    auto target = ResolveRef(*n);
    if (!target) {
      return Fail("invalid schema at " + n->location + ": \"$ref\" " + Quote(n->ref_text) +
                  " cannot be resolved: " + target.error().message);
    }
    if (*target == nullptr) s_.pending.push_back(n);
    n->ref = *target;
  }
  return Ok();
}

Status Compiler::AddDocument(const std::string& uri, const json::Value& schema) {
  std::string doc = SplitFragment(ResolveUri("", uri)).first;
  if (s_.documents.contains(doc) || s_.ids.contains(doc)) {
    return Fail("a schema is already registered under " + Quote(doc));
  }
  const json::Value& stored = *s_.documents.emplace(doc, std::make_unique<json::Value>(schema)).first->second;
  if (auto st = RegisterId(doc, {doc, ""}); !st) return st;
  if (auto root = CompileAt(doc, "", stored, doc); !root) return std::unexpected(root.error());
  if (auto st = ResolveWork(); !st) return st;
  // Earlier documents may have been waiting for this one.
  std::vector<Node*> waiting;
  waiting.swap(s_.pending);
  for (Node* n : waiting) {
    work_.push_back(n);
    if (auto st = ResolveWork(); !st) return st;
    if (n->ref) resolved_pending_.push_back(n);
  }
  for (auto& n : s_.arena) {
    FinalizeBranches(n->any_of);
    FinalizeBranches(n->one_of);
  }
  return Ok();
}

Result<const Node*> Registry::Lookup(std::string_view uri) const {
  auto [base, fragment] = SplitFragment(ResolveUri("", uri));
  fragment = PercentDecode(fragment);
  auto it = ids.find(base);
  if (it == ids.end()) return Fail("no schema is registered under " + Quote(base));
  Location where = it->second;
  if (!fragment.empty() && fragment.front() != '/') {
    auto anchor = ids.find(base + "#" + fragment);
    if (anchor == ids.end()) return Fail("no \"$id\": \"#" + fragment + "\" in " + Quote(base));
    where = anchor->second;
    fragment.clear();
  }
  auto tokens = SplitPointer(where.pointer + fragment);
  if (!tokens) return std::unexpected(tokens.error());
  std::string canonical;
  for (const auto& t : *tokens) canonical += "/" + EscapeToken(t);
  auto node = compiled.find(where.doc + "#" + canonical);
  if (node == compiled.end()) {
    return Fail(Quote(std::string(uri)) + " does not name a schema in " + Quote(where.doc));
  }
  return node->second;
}

// ---------------------------------------------------------------------------
// Evaluation.

// One Validate pass. In checking mode it answers valid/invalid as fast as it
// can; in collecting mode it also records why, with paths and messages.
class Evaluator {
 public:
  Evaluator(std::vector<Violation>* out, size_t limit) : out_(out), limit_(limit) {}

  bool Eval(const Node& n, const json::Value& v);
  const std::string& error() const { return error_; }

 private:
  struct Segment {
    std::string_view key;
    size_t index = 0;
    bool is_index = false;
  };
  class PathScope {
   public:
    PathScope(Evaluator& e, std::string_view key) : e_(e) { e_.path_.push_back({key, 0, false}); }
    PathScope(Evaluator& e, size_t index) : e_(e) { e_.path_.push_back({{}, index, true}); }
    ~PathScope() { e_.path_.pop_back(); }

   private:
    Evaluator& e_;
  };

  bool collecting() const { return out_ != nullptr; }
  bool full() const { return out_ && out_->size() >= limit_; }
  // Whether to evaluate further keywords after one that gave `ok`.
  bool Continue(bool ok) const { return ok || (collecting() && !full()); }
  bool Test(const Node& n, const json::Value& v);
  std::vector<Violation> CollectInto(const Node& n, const json::Value& v);

  template <class Message>
  bool Reject(const json::Value& v, const char* keyword, Message&& message) {
    return RejectAt(v.offset(), keyword, std::forward<Message>(message));
  }
  template <class Message>
  bool RejectAt(uint32_t offset, const char* keyword, Message&& message) {
    if (collecting() && !full()) out_->push_back({offset, Pointer(), keyword, message()});
    return false;
  }
  std::string Pointer() const;
  std::string Subject() const;  // `"spec.steps[0].kind"`, or `the document`

  bool EvalKeywords(const Node& n, const json::Value& v);
  bool CheckValue(const Node& n, const json::Value& v);
  bool CheckObject(const Node& n, const json::Value& v);
  bool CheckMembers(const Node& n, const json::Value& v);
  bool CheckListedProperties(const Node& n, const json::Value& v);
  bool CheckPropertyNames(const Node& n, const json::Value& v);
  bool CheckDependencies(const Node& n, const json::Value& v);
  bool CheckArray(const Node& n, const json::Value& v);
  bool CheckItems(const Node& n, const json::Value& v);
  bool CheckString(const Node& n, const json::Value& v);
  bool CheckNumber(const Node& n, const json::Value& v);
  bool CheckCombinators(const Node& n, const json::Value& v);
  bool CheckOneOf(const Node& n, const json::Value& v);
  bool IfHolds(const Node& n, const json::Value& v);
  bool ExplainNoMatch(const std::vector<Branch>& branches, const json::Value& v, const char* keyword);
  bool ExplainDiscriminator(const std::vector<const Branch*>& branches, const json::Value& v,
                            const char* keyword);
  void ReportBestBranch(const std::vector<const Branch*>& branches, const json::Value& v);
  std::string UnknownKeyMessage(const Node& n, std::string_view key) const;

  std::vector<Violation>* out_;  // null: checking only
  size_t limit_;
  std::vector<Segment> path_;
  std::string subject_override_;  // set while checking property names
  int depth_ = 0;
  std::string error_;
};

// Deeper than this without the document getting deeper means a $ref cycle.
constexpr int kMaxDepth = 512;

std::string Evaluator::Pointer() const {
  std::string out;
  for (const Segment& s : path_) {
    out += '/';
    out += s.is_index ? std::to_string(s.index) : EscapeToken(s.key);
  }
  return out;
}

std::string Evaluator::Subject() const {
  if (!subject_override_.empty()) return subject_override_;
  if (path_.empty()) return "the document";
  std::string out;
  for (const Segment& s : path_) {
    if (s.is_index) {
      out += "[" + std::to_string(s.index) + "]";
    } else {
      if (!out.empty()) out += '.';
      out += s.key;
    }
  }
  return Quote(out);
}

bool Evaluator::Test(const Node& n, const json::Value& v) {
  std::vector<Violation>* saved = std::exchange(out_, nullptr);
  bool ok = Eval(n, v);
  out_ = saved;
  return ok;
}

std::vector<Violation> Evaluator::CollectInto(const Node& n, const json::Value& v) {
  std::vector<Violation> local;
  std::vector<Violation>* saved = std::exchange(out_, &local);
  Eval(n, v);
  out_ = saved;
  return local;
}

bool Evaluator::Eval(const Node& n, const json::Value& v) {
  if (!error_.empty()) return false;
  if (depth_ >= kMaxDepth) {
    error_ = "schema recursion is too deep at " + n.location +
             " (a $ref cycle that never descends into the document?)";
    return false;
  }
  ++depth_;
  bool ok = EvalKeywords(n, v);
  --depth_;
  return ok;
}

bool Evaluator::EvalKeywords(const Node& n, const json::Value& v) {
  if (n.boolean) {
    if (*n.boolean) return true;
    return Reject(v, "false", [&] { return Subject() + " is not allowed here"; });
  }
  if (n.has_ref) {
    if (n.ref) return Eval(*n.ref, v);
    error_ = "\"$ref\" " + Quote(n.ref_text) + " at " + n.location + " names " +
             Quote(SplitFragment(n.ref_uri).first) + ", which is not a registered schema";
    return false;
  }
  bool ok = !n.value_checks || CheckValue(n, v);
  if (!Continue(ok)) return false;
  switch (v.type()) {
    case json::Type::kObject: ok = (!n.object_checks || CheckObject(n, v)) && ok; break;
    case json::Type::kArray: ok = (!n.array_checks || CheckArray(n, v)) && ok; break;
    case json::Type::kString: ok = (!n.string_checks || CheckString(n, v)) && ok; break;
    case json::Type::kNumber: ok = (!n.number_checks || CheckNumber(n, v)) && ok; break;
    default: break;
  }
  if (!n.combinators || !Continue(ok)) return ok;
  return CheckCombinators(n, v) && ok;
}

bool Evaluator::CheckValue(const Node& n, const json::Value& v) {
  if (!TypeAllows(n.types, v)) {
    return Reject(v, "type", [&] {
      return "expected " + DescribeTypes(n.types) + ", got " + json::TypeName(v.type());
    });
  }
  if (n.enum_values && std::find(n.enum_values->begin(), n.enum_values->end(), v) == n.enum_values->end()) {
    return Reject(v, "enum", [&] {
      std::string allowed = n.enum_values->size() == 1 ? Brief(n.enum_values->front())
                                                       : "one of " + JoinBrief(*n.enum_values);
      return Subject() + " must be " + allowed + " (got " + Brief(v) + ")";
    });
  }
  if (n.const_value && !(*n.const_value == v)) {
    return Reject(v, "const", [&] {
      return Subject() + " must be " + Brief(*n.const_value) + " (got " + Brief(v) + ")";
    });
  }
  return true;
}

bool Evaluator::CheckObject(const Node& n, const json::Value& v) {
  bool ok = true;
  size_t count = v.members().size();
  if (n.min_properties && count < *n.min_properties) {
    ok = Reject(v, "minProperties", [&] {
      return Subject() + " must have at least " + std::to_string(*n.min_properties) + " properties (got " +
             std::to_string(count) + ")";
    });
  }
  if (n.max_properties && count > *n.max_properties) {
    ok = Reject(v, "maxProperties", [&] {
      return Subject() + " must have at most " + std::to_string(*n.max_properties) + " properties (got " +
             std::to_string(count) + ")";
    });
  }
  for (const std::string& name : n.required) {
    if (!Continue(ok)) return false;
    if (!v.Find(name)) {
      ok = Reject(v, "required", [&] {
        std::string where = path_.empty() ? "" : " in " + Subject();
        return "missing required property " + Quote(name) + where;
      });
    }
  }
  if (!Continue(ok)) return false;
  ok = CheckMembers(n, v) && ok;
  if (!Continue(ok)) return false;
  ok = CheckPropertyNames(n, v) && ok;
  if (!Continue(ok)) return false;
  return CheckDependencies(n, v) && ok;
}

std::string Evaluator::UnknownKeyMessage(const Node& n, std::string_view key) const {
  std::string message = "unknown key " + Quote(key);
  const std::string* best = nullptr;
  size_t best_distance = std::max<size_t>(1, std::min<size_t>(3, key.size() / 3)) + 1;
  for (const auto& [name, schema] : n.properties) {
    size_t d = EditDistance(key, name);
    if (d < best_distance) {
      best_distance = d;
      best = &name;
    }
  }
  if (!path_.empty()) message += " in " + Subject();
  if (best) message += " (did you mean " + Quote(*best) + "?)";
  return message;
}

bool Evaluator::CheckMembers(const Node& n, const json::Value& v) {
  // Schemas that only list a few properties (the "if" of a kind switch) are
  // cheaper to drive from the schema side.
  constexpr size_t kFewProperties = 4;
  if (n.pattern_properties.empty() && !n.additional_properties && n.properties.size() <= kFewProperties) {
    return CheckListedProperties(n, v);
  }
  bool ok = true;
  for (const auto& [key, value] : v.members()) {
    if (!Continue(ok)) return false;
    bool known = false;
    if (const Node* schema = n.FindProperty(key)) {
      known = true;
      PathScope scope(*this, key);
      ok = Eval(*schema, value) && ok;
    }
    for (const PatternProperty& pp : n.pattern_properties) {
      if (!Continue(ok)) return false;
      if (!pp.pattern.Search(key)) continue;
      known = true;
      PathScope scope(*this, key);
      ok = Eval(*pp.schema, value) && ok;
    }
    if (known || !n.additional_properties) continue;
    if (n.additional_properties->boolean == false) {
      std::string message = collecting() ? UnknownKeyMessage(n, key) : "";
      PathScope scope(*this, key);
      ok = RejectAt(value.key_offset(), "additionalProperties", [&] { return message; });
    } else {
      PathScope scope(*this, key);
      ok = Eval(*n.additional_properties, value) && ok;
    }
  }
  return ok;
}

bool Evaluator::CheckListedProperties(const Node& n, const json::Value& v) {
  bool ok = true;
  for (const auto& [name, schema] : n.properties) {
    if (!Continue(ok)) return false;
    const json::Value* value = v.Find(name);
    if (!value) continue;
    PathScope scope(*this, name);
    ok = Eval(*schema, *value) && ok;
  }
  return ok;
}

bool Evaluator::CheckPropertyNames(const Node& n, const json::Value& v) {
  if (!n.property_names) return true;
  bool ok = true;
  for (const auto& [key, value] : v.members()) {
    if (!Continue(ok)) return false;
    json::Value name = json::Value::String(key);
    name.set_offset(value.key_offset());
    if (Test(*n.property_names, name)) continue;
    ok = false;
    if (!collecting()) return false;
    PathScope scope(*this, key);
    std::string saved = std::exchange(subject_override_, "key " + Quote(key));
    Eval(*n.property_names, name);
    subject_override_ = std::move(saved);
  }
  return ok;
}

bool Evaluator::CheckDependencies(const Node& n, const json::Value& v) {
  bool ok = true;
  for (const Dependency& d : n.dependencies) {
    if (!Continue(ok)) return false;
    if (!v.Find(d.property)) continue;
    for (const std::string& name : d.required) {
      if (v.Find(name)) continue;
      ok = Reject(v, "dependencies", [&] {
        return "missing property " + Quote(name) + ", which is required when " + Quote(d.property) +
               " is present" + (path_.empty() ? "" : " in " + Subject());
      });
    }
    if (d.schema) ok = Eval(*d.schema, v) && ok;
  }
  return ok;
}

bool Evaluator::CheckArray(const Node& n, const json::Value& v) {
  bool ok = true;
  const auto& items = v.items();
  if (n.min_items && items.size() < *n.min_items) {
    ok = Reject(v, "minItems", [&] {
      return Subject() + " must have at least " + std::to_string(*n.min_items) + " item" +
             (*n.min_items == 1 ? "" : "s") + " (got " + std::to_string(items.size()) + ")";
    });
  }
  if (n.max_items && items.size() > *n.max_items) {
    ok = Reject(v, "maxItems", [&] {
      return Subject() + " must have at most " + std::to_string(*n.max_items) + " item" +
             (*n.max_items == 1 ? "" : "s") + " (got " + std::to_string(items.size()) + ")";
    });
  }
  if (!Continue(ok)) return false;
  ok = CheckItems(n, v) && ok;
  if (n.contains && Continue(ok)) {
    bool found = std::any_of(items.begin(), items.end(),
                             [&](const auto& item) { return Test(*n.contains, item); });
    if (!found) {
      ok = Reject(v, "contains", [&] {
        const Node* c = Deref(n.contains);
        if (c && c->const_value) return Subject() + " must contain " + Brief(*c->const_value);
        return Subject() + " must contain at least one item that matches the \"contains\" schema";
      });
    }
  }
  if (n.unique_items && Continue(ok)) {
    for (size_t j = 1; j < items.size() && Continue(ok); ++j) {
      for (size_t i = 0; i < j; ++i) {
        if (!(items[i] == items[j])) continue;
        std::string subject = collecting() ? Subject() : "";
        PathScope scope(*this, j);
        ok = Reject(items[j], "uniqueItems", [&] {
          return subject + " must not contain duplicates (items " + std::to_string(i) + " and " +
                 std::to_string(j) + " are equal)";
        });
        break;
      }
    }
  }
  return ok;
}

bool Evaluator::CheckItems(const Node& n, const json::Value& v) {
  bool ok = true;
  const auto& items = v.items();
  if (n.items) {
    for (size_t i = 0; i < items.size() && Continue(ok); ++i) {
      PathScope scope(*this, i);
      ok = Eval(*n.items, items[i]) && ok;
    }
    return ok;
  }
  if (!n.tuple_items) return true;
  const auto& tuple = *n.tuple_items;
  for (size_t i = 0; i < items.size() && Continue(ok); ++i) {
    if (i < tuple.size()) {
      PathScope scope(*this, i);
      ok = Eval(*tuple[i], items[i]) && ok;
    } else if (!n.additional_items) {
      break;
    } else if (n.additional_items->boolean == false) {
      std::string subject = collecting() ? Subject() : "";
      PathScope scope(*this, i);
      return RejectAt(items[i].offset(), "additionalItems", [&] {
        return subject + " must have at most " + std::to_string(tuple.size()) + " items (got " +
               std::to_string(items.size()) + ")";
      });
    } else {
      PathScope scope(*this, i);
      ok = Eval(*n.additional_items, items[i]) && ok;
    }
  }
  return ok;
}

bool Evaluator::CheckString(const Node& n, const json::Value& v) {
  bool ok = true;
  if (n.min_length || n.max_length) {
    size_t length = CodePoints(v.as_string());
    if (n.min_length && length < *n.min_length) {
      ok = Reject(v, "minLength", [&] {
        return Subject() + " must be at least " + std::to_string(*n.min_length) + " character" +
               (*n.min_length == 1 ? "" : "s") + " long (got " + std::to_string(length) + ")";
      });
    }
    if (n.max_length && length > *n.max_length) {
      ok = Reject(v, "maxLength", [&] {
        return Subject() + " must be at most " + std::to_string(*n.max_length) + " character" +
               (*n.max_length == 1 ? "" : "s") + " long (got " + std::to_string(length) + ")";
      });
    }
  }
  if (n.pattern && Continue(ok) && !n.pattern->Search(v.as_string())) {
    ok = Reject(v, "pattern", [&] {
      return Subject() + " must match the pattern " + Quote(n.pattern->source()) + " (got " + Brief(v) + ")";
    });
  }
  return ok;
}

bool IsMultipleOf(double value, double divisor) {
  double quotient = value / divisor;
  if (!std::isfinite(quotient)) return false;
  // Decimal divisors such as 0.01 are not exact in binary; accept quotients
  // within rounding error of an integer.
  return std::abs(quotient - std::round(quotient)) <= 1e-9 * std::max(1.0, std::abs(quotient));
}

bool Evaluator::CheckNumber(const Node& n, const json::Value& v) {
  bool ok = true;
  double x = v.as_double();
  auto bound = [&](const std::optional<Bound>& b, bool pass, const char* keyword, const char* relation) {
    if (!b || pass || !Continue(ok)) return;
    ok = Reject(v, keyword, [&] {
      return Subject() + " must be " + relation + " " + b->text + " (got " + v.number_text() + ")";
    });
  };
  bound(n.minimum, n.minimum && x >= n.minimum->value, "minimum", ">=");
  bound(n.maximum, n.maximum && x <= n.maximum->value, "maximum", "<=");
  bound(n.exclusive_minimum, n.exclusive_minimum && x > n.exclusive_minimum->value, "exclusiveMinimum", ">");
  bound(n.exclusive_maximum, n.exclusive_maximum && x < n.exclusive_maximum->value, "exclusiveMaximum", "<");
  if (n.multiple_of && Continue(ok) && !IsMultipleOf(x, n.multiple_of->value)) {
    ok = Reject(v, "multipleOf", [&] {
      return Subject() + " must be a multiple of " + n.multiple_of->text + " (got " + v.number_text() + ")";
    });
  }
  return ok;
}

bool Evaluator::CheckCombinators(const Node& n, const json::Value& v) {
  bool ok = true;
  for (const Node* part : n.all_of) {
    if (!Continue(ok)) return false;
    ok = Eval(*part, v) && ok;
  }
  if (!n.any_of.empty() && Continue(ok)) {
    bool any = std::any_of(n.any_of.begin(), n.any_of.end(),
                           [&](const Branch& b) { return Test(*b.schema, v); });
    if (!any) ok = ExplainNoMatch(n.any_of, v, "anyOf");
  }
  if (!n.one_of.empty() && Continue(ok)) ok = CheckOneOf(n, v) && ok;
  if (n.not_schema && Continue(ok) && Test(*n.not_schema, v)) {
    ok = Reject(v, "not", [&] { return Subject() + " must not match the schema in \"not\""; });
  }
  if (n.if_schema && Continue(ok)) {
    const Node* next = IfHolds(n, v) ? n.then_schema : n.else_schema;
    if (next) ok = Eval(*next, v) && ok;
  }
  return ok;
}

bool Evaluator::IfHolds(const Node& n, const json::Value& v) {
  if (!n.if_const) return Test(*n.if_schema, v);
  if (!v.is_object()) return true;
  const json::Value* value = v.Find(n.if_const->property);
  return value ? *value == n.if_const->value : !n.if_const->required;
}

bool Evaluator::CheckOneOf(const Node& n, const json::Value& v) {
  std::vector<size_t> matched;
  for (size_t i = 0; i < n.one_of.size(); ++i) {
    if (Test(*n.one_of[i].schema, v)) matched.push_back(i);
    if (matched.size() > 1 && !collecting()) return false;
  }
  if (matched.size() == 1) return true;
  if (matched.empty()) return ExplainNoMatch(n.one_of, v, "oneOf");
  return Reject(v, "oneOf", [&] {
    return Subject() + " matches more than one of the allowed forms (" + n.one_of[matched[0]].label +
           " and " + n.one_of[matched[1]].label + "); it must match exactly one";
  });
}

// Why no branch of an anyOf/oneOf matched, in the fewest useful words: the
// errors of the branch the document evidently meant (by a discriminating
// const/enum property such as "kind", or by being the only branch of its
// type), else one summary naming the allowed forms.
bool Evaluator::ExplainNoMatch(const std::vector<Branch>& branches, const json::Value& v,
                               const char* keyword) {
  if (!collecting()) return false;
  size_t before = out_->size();
  if (v.is_object()) {
    std::vector<const Branch*> discriminated, matching;
    for (const Branch& b : branches) {
      if (b.discriminators.empty()) continue;
      discriminated.push_back(&b);
      bool all = std::all_of(b.discriminators.begin(), b.discriminators.end(), [&](const Discriminator& d) {
        const json::Value* value = v.Find(d.property);
        return value && std::find(d.values.begin(), d.values.end(), *value) != d.values.end();
      });
      if (all) matching.push_back(&b);
    }
    if (!matching.empty()) {
      ReportBestBranch(matching, v);
    } else if (!discriminated.empty()) {
      ExplainDiscriminator(discriminated, v, keyword);
    }
  }
  if (out_->size() == before) {
    std::vector<const Branch*> typed;
    for (const Branch& b : branches) {
      if (TypeAllows(b.types, v)) typed.push_back(&b);
    }
    if (typed.size() == 1 && branches.size() > 1) ReportBestBranch(typed, v);
  }
  if (out_->size() == before) {
    Reject(v, keyword, [&] {
      std::string forms;
      for (const Branch& b : branches) forms += (forms.empty() ? "" : "; ") + b.label;
      return Subject() + " does not match any of the allowed forms: " + forms + " (got " + Brief(v) + ")";
    });
  }
  return false;
}

bool Evaluator::ExplainDiscriminator(const std::vector<const Branch*>& branches, const json::Value& v,
                                     const char* keyword) {
  // A property every discriminated branch constrains, whose value in the
  // document no branch accepts: that is the one to point at.
  for (const Discriminator& first : branches.front()->discriminators) {
    std::vector<json::Value> allowed;
    bool common = true;
    for (const Branch* b : branches) {
      auto d = std::find_if(b->discriminators.begin(), b->discriminators.end(),
                            [&](const Discriminator& x) { return x.property == first.property; });
      if (d == b->discriminators.end()) { common = false; break; }
      for (const auto& value : d->values) {
        if (std::find(allowed.begin(), allowed.end(), value) == allowed.end()) allowed.push_back(value);
      }
    }
    if (!common) continue;
    const json::Value* value = v.Find(first.property);
    if (!value) {
      return Reject(v, keyword, [&] {
        return "missing required property " + Quote(first.property) +
               (path_.empty() ? "" : " in " + Subject()) +
               " (one of " + JoinBrief(allowed) + ")";
      });
    }
    if (std::find(allowed.begin(), allowed.end(), *value) != allowed.end()) continue;
    PathScope scope(*this, first.property);
    return Reject(*value, keyword, [&] {
      return Subject() + " must be one of " + JoinBrief(allowed) + " (got " + Brief(*value) + ")";
    });
  }
  return true;
}

void Evaluator::ReportBestBranch(const std::vector<const Branch*>& branches, const json::Value& v) {
  if (branches.size() == 1) {
    Eval(*branches.front()->schema, v);
    return;
  }
  std::vector<Violation> best;
  for (const Branch* b : branches) {
    std::vector<Violation> found = CollectInto(*b->schema, v);
    if (best.empty() || (!found.empty() && found.size() < best.size())) best = std::move(found);
  }
  for (auto& violation : best) {
    if (full()) break;
    out_->push_back(std::move(violation));
  }
}

}  // namespace

struct Validator::Impl {
  size_t max_violations = kDefaultMaxViolations;
  Registry registry;
};

Validator::Validator(size_t max_violations) : impl_(std::make_unique<Impl>()) {
  impl_->max_violations = std::max<size_t>(1, max_violations);
}
Validator::~Validator() = default;
Validator::Validator(Validator&&) noexcept = default;
Validator& Validator::operator=(Validator&&) noexcept = default;

Status Validator::AddSchema(const std::string& uri, const json::Value& schema) {
  // Snapshot what a failed call could leave half-done.
  auto ids = impl_->registry.ids;
  auto compiled = impl_->registry.compiled;
  auto pending = impl_->registry.pending;
  size_t arena_size = impl_->registry.arena.size();
  std::string doc = SplitFragment(ResolveUri("", uri)).first;
  bool had_doc = impl_->registry.documents.contains(doc);

  Compiler compiler(impl_->registry);
  Status status = compiler.AddDocument(uri, schema);
  if (status) return status;
  for (Node* n : compiler.resolved_pending()) n->ref = nullptr;
  for (Node* n : pending) n->ref = nullptr;
  impl_->registry.ids = std::move(ids);
  impl_->registry.compiled = std::move(compiled);
  impl_->registry.pending = std::move(pending);
  impl_->registry.arena.resize(arena_size);
  if (!had_doc) impl_->registry.documents.erase(doc);
  return status;
}

bool Validator::HasSchema(std::string_view uri) const { return impl_->registry.Lookup(uri).has_value(); }

Result<std::vector<Violation>> Validator::Validate(std::string_view uri, const json::Value& instance) const {
  auto root = impl_->registry.Lookup(uri);
  if (!root) return std::unexpected(root.error());
  std::vector<Violation> violations;
  Evaluator check(nullptr, 0);
  bool valid = check.Eval(**root, instance);
  if (!check.error().empty()) return Fail(check.error());
  if (valid) return violations;

  Evaluator collect(&violations, impl_->max_violations);
  collect.Eval(**root, instance);
  if (!collect.error().empty()) return Fail(collect.error());
  std::stable_sort(violations.begin(), violations.end(),
                   [](const Violation& a, const Violation& b) { return a.offset < b.offset; });
  // allOf branches and shared $refs can report the same thing twice.
  std::vector<Violation> unique;
  for (auto& v : violations) {
    bool seen = std::any_of(unique.begin(), unique.end(), [&](const Violation& u) {
      return u.offset == v.offset && u.keyword == v.keyword && u.message == v.message &&
             u.instance_path == v.instance_path;
    });
    if (!seen) unique.push_back(std::move(v));
  }
  violations = std::move(unique);
  if (violations.empty()) {  // never let a document that failed the check pass
    violations.push_back({instance.offset(), "", "schema", "the document does not match " + Quote(uri)});
  }
  return violations;
}

}  // namespace gitopsd::schema
