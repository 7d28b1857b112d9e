// Compiling schema keywords into Nodes: each keyword's value is checked and
// turned into the field the evaluator reads; subschemas are compiled where
// they sit, $refs are only recorded (schema_resolve.cc links them).
#include "sync/schema_compiler.h"

#include <algorithm>
#include <iterator>
#include <memory>

namespace gitopsd::schema::internal {
namespace {

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

}  // namespace

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

}  // namespace gitopsd::schema::internal
