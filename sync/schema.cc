// Validator: the registry of compiled schemas, AddSchema's all-or-nothing
// registration and Validate's two passes (check, then collect if invalid).
// The compiler and the evaluator behind them are in sync/schema_*.cc.
#include "sync/schema.h"

#include <algorithm>
#include <utility>

#include "sync/schema_compiler.h"
#include "sync/schema_evaluator.h"
#include "sync/schema_internal.h"

namespace gitopsd::schema {
namespace {

using internal::Compiler;
using internal::Evaluator;
using internal::Node;
using internal::Quote;
using internal::Registry;
using internal::ResolveUri;
using internal::SplitFragment;

// Ordered by position in the document, without duplicates: allOf branches
// and shared $refs can report the same thing twice.
std::vector<Violation> SortedUnique(std::vector<Violation> violations) {
  std::stable_sort(violations.begin(), violations.end(),
                   [](const Violation& a, const Violation& b) { return a.offset < b.offset; });
  std::vector<Violation> unique;
  for (auto& v : violations) {
    bool seen = std::any_of(unique.begin(), unique.end(), [&](const Violation& u) {
      return u.offset == v.offset && u.keyword == v.keyword && u.message == v.message &&
             u.instance_path == v.instance_path;
    });
    if (!seen) unique.push_back(std::move(v));
  }
  return unique;
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
  violations = SortedUnique(std::move(violations));
  if (violations.empty()) {  // never let a document that failed the check pass
    violations.push_back({instance.offset(), "", "schema", "the document does not match " + Quote(uri)});
  }
  return violations;
}

}  // namespace gitopsd::schema
