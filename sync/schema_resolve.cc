// Registering schema documents and resolving "$ref"s: from a URI with a
// fragment to the compiled node it names, compiling the target on demand.
#include "sync/schema_compiler.h"

#include <memory>
#include <utility>
#include <vector>

namespace gitopsd::schema::internal {

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

}  // namespace gitopsd::schema::internal
