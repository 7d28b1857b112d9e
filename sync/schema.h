// JSON Schema (draft-07) validation over gitopsd's own JSON tree.
//
// Schemas are registered once with AddSchema, which checks them and compiles
// them into an internal tree (regexes compiled, every $ref resolved to the
// node it names). Validate then walks that tree against a parsed document and
// reports what is wrong in terms a user can act on: each Violation carries
// the byte offset of the offending value in the document's source (for
// line:col via json::LocateOffset), its JSON pointer, the keyword and a
// sentence naming the key or value.
//
// Supported: every draft-07 validation keyword except "format" (an
// annotation here, like "title", "description", "default", "examples" and
// "$comment"); "$ref" with JSON-pointer and "$id"-anchor fragments, "$id"
// base-URI changes, refs between registered documents and recursive refs;
// boolean schemas. Unknown keywords are ignored. "pattern" and
// "patternProperties" use std::regex's ECMAScript grammar over code points,
// so Unicode property escapes (\p{L}) are rejected as invalid schemas.
//
// Threading: AddSchema must not run concurrently with anything else on the
// same Validator; once setup is done, Validate may be called from any number
// of threads at once.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "sync/json.h"
#include "sync/status.h"

namespace gitopsd::schema {

struct Violation {
  // Byte offset in the instance's source of what to point at: the offending
  // value, or for a key that is not allowed (additionalProperties: false,
  // propertyNames) the key's opening quote.
  uint32_t offset = 0;
  std::string instance_path;  // JSON pointer, e.g. "/spec/steps/0/kind"; "" is the root
  std::string keyword;        // "required", "type", "additionalProperties", "enum", ...
  std::string message;        // e.g. `missing required property "apiVersion"`
};

class Validator {
 public:
  static constexpr size_t kDefaultMaxViolations = 20;

  // max_violations bounds how many violations one Validate call reports.
  // A moved-from Validator may only be destroyed or assigned to.
  explicit Validator(size_t max_violations = kDefaultMaxViolations);
  ~Validator();
  Validator(Validator&&) noexcept;
  Validator& operator=(Validator&&) noexcept;
  Validator(const Validator&) = delete;
  Validator& operator=(const Validator&) = delete;

  // Registers and compiles a schema document under `uri` (e.g.
  // "template.schema.json", resolved like any URI reference), and also under
  // its "$id" if it has one. Fails, registering nothing, when the schema is
  // invalid: a keyword with a value of the wrong shape, a regex std::regex
  // cannot compile, a $ref into a registered document that names nothing, a
  // uri that is already registered.
  // A $ref to a document that is not registered yet is allowed and resolved
  // when that document is added, so documents may refer to each other.
  Status AddSchema(const std::string& uri, const json::Value& schema);

  // True when `uri` (with an optional fragment) names a compiled schema.
  bool HasSchema(std::string_view uri) const;

  // Validates `instance` against the schema at `uri`: a registered URI,
  // optionally with a fragment ("template.schema.json#/definitions/node").
  // Returns the violations, at most max_violations of them, ordered by their
  // position in the document; empty means valid. Fails when the uri names no
  // compiled schema, when validation reaches a $ref to a document that was
  // never registered, or when a $ref cycle does not descend into the
  // document. Never re-parses or re-compiles anything. Thread-safe.
  Result<std::vector<Violation>> Validate(std::string_view uri, const json::Value& instance) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace gitopsd::schema
