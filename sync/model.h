// The object model: turns one file of a synced folder into a validated
// object (a Template, a ReleaseFlow or a PreviewTemplate), or into the list
// of everything wrong with it.
//
// Loading a file means, in order: parse the JSON (size and depth limits
// enforced), tell the object's kind (top-level "kind", else the first
// folder: templates/, release-flows/, previews/) and name ("name", else the
// file stem), validate against the kind's JSON Schema (schemas/, embedded in
// the binary), then run the checks a schema cannot express: node kinds per
// kind of object, unique refs, ${...} expressions that must resolve
// (arguments declared, refs naming a trigger or a node that runs earlier,
// functions known and called with the right number of arguments).
//
// Every problem is a Diagnostic with a line and column and a stable rule id:
//   json-syntax, json-utf8, json-depth, json-size, json-duplicate-key  (parser)
//   schema:<keyword>  (schema:required, schema:additionalProperties, ...)
//   model:<check>     (model:kind, model:name, model:node-kind,
//                      model:unsupported, model:argument-overrides,
//                      model:duplicate-ref, model:expression, model:arg,
//                      model:ref, model:config)
// A LoadResult holds an object if and only if there are no diagnostics.
#pragma once
#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "sync/diagnostic.h"
#include "sync/json.h"
#include "sync/status.h"

namespace gitopsd::schema {
class Validator;
}

namespace gitopsd::model {

enum class Kind { kTemplate, kReleaseFlow, kPreviewTemplate };

// "Template", "ReleaseFlow", "PreviewTemplate".
const char* KindName(Kind kind);
// The folder of a kind below the sync folder: "templates", "release-flows",
// "previews".
const char* KindFolder(Kind kind);
// Accepts the kind names and the spellings used in URLs and on the command
// line: "Template", "template", "templates", "ReleaseFlow", "release-flow",
// "release-flows", "PreviewTemplate", "preview", "previews" (and the
// lower-case "releaseflow", "previewtemplate").
std::optional<Kind> ParseKind(std::string_view text);

struct Object {
  Kind kind = Kind::kTemplate;
  std::string name;  // from "name", else the file stem
  std::string path;  // repository-relative path of the file it came from
  json::Value body;  // the parsed file, as written
};

struct LoadOptions {
  size_t max_bytes = 1 << 20;  // larger files are refused (json-size)
  size_t max_depth = 64;       // deeper nesting is refused (json-depth)
};

struct LoadResult {
  std::optional<Object> object;  // set iff diagnostics is empty
  Diagnostics diagnostics;       // sorted by line and column
};

class Loader {
 public:
  // Compiles the embedded schemas. Fails only if one of them is broken,
  // which is a build defect, not a user error.
  static Result<Loader> Create(LoadOptions options = {});

  Loader(Loader&&) noexcept;
  Loader& operator=(Loader&&) noexcept;
  Loader(const Loader&) = delete;
  Loader& operator=(const Loader&) = delete;
  ~Loader();

  // `path` is the repository-relative path (used in messages);
  // `folder_relative` is the path below the sync folder (e.g.
  // "release-flows/prod.json"), from which the kind and the default name
  // come. Thread-safe: any number of Loads may run at once.
  LoadResult Load(std::string_view path, std::string_view folder_relative, std::string_view text) const;
  LoadResult Load(std::string_view path, std::string_view folder_relative, std::string_view text,
                  const LoadOptions& options) const;

  // Validates a configuration document against config.schema.json, plus
  // what the schema cannot say (unique repository names, a port range that
  // is not reversed). On success, and only then, stores the parsed document
  // in *out (when out is not null). Thread-safe.
  Diagnostics ValidateConfig(std::string_view path, std::string_view text, json::Value* out) const;

 private:
  Loader(std::unique_ptr<schema::Validator> validator, LoadOptions options);

  std::unique_ptr<schema::Validator> validator_;
  LoadOptions options_;
};

}  // namespace gitopsd::model
