// The schema compiler, private to the validator (see sync/schema_internal.h):
// one AddSchema call turns a schema document into Nodes in a Registry and
// links every $ref that names a registered document. Keywords are compiled
// in schema_compile.cc; $refs, "$id"s and registration are handled in
// schema_resolve.cc.
#pragma once
#include <string>
#include <string_view>
#include <vector>

#include "sync/json.h"
#include "sync/schema_internal.h"
#include "sync/status.h"

namespace gitopsd::schema::internal {

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

}  // namespace gitopsd::schema::internal
