// How schema::Validator reports problems to a user: where (line:col of the
// value or key, JSON pointer), what (keyword) and a message naming the thing
// to change; how it treats schemas spread over several documents; and that
// bad schemas are refused when they are added, not when a document is
// validated.
#include "sync/schema.h"

#include <gtest/gtest.h>

#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#include "sync/json.h"

namespace gitopsd::schema {
namespace {

json::Value ParseOrDie(std::string_view text) {
  auto parsed = json::Parse(text);
  EXPECT_TRUE(parsed) << (parsed ? "" : parsed.error().message) << "\n" << text;
  return parsed ? std::move(*parsed) : json::Value();
}

// A small cousin of gitopsd's template schema: a pipeline of steps whose
// "kind" selects the rest of their shape, with the node shapes kept in a
// second document as the real schemas do.
constexpr std::string_view kCommonSchema = R"({
  "$id": "common.schema.json",
  "definitions": {
    "name": {"type": "string", "pattern": "^[a-z][a-z0-9-]*$", "maxLength": 20},
    "build": {
      "type": "object",
      "properties": {
        "kind": {"const": "Build"},
        "name": {"$ref": "#/definitions/name"},
        "image": {"type": "string"}
      },
      "required": ["kind", "image"],
      "additionalProperties": false
    },
    "deploy": {
      "type": "object",
      "properties": {
        "kind": {"const": "Deploy"},
        "name": {"$ref": "#/definitions/name"},
        "target": {"type": "string", "enum": ["staging", "production"]}
      },
      "required": ["kind", "target"],
      "additionalProperties": false
    }
  }
})";

constexpr std::string_view kTemplateSchema = R"({
  "$id": "template.schema.json",
  "type": "object",
  "required": ["apiVersion", "kind", "spec"],
  "additionalProperties": false,
  "properties": {
    "apiVersion": {"const": "gitopsd/v1"},
    "kind": {"const": "Template"},
    "spec": {
      "type": "object",
      "additionalProperties": false,
      "properties": {
        "type": {"enum": ["sequential", "parallel"]},
        "pollInterval": {"type": "string"},
        "timeout": {"anyOf": [
          {"type": "string", "pattern": "^[0-9]+s$"},
          {"type": "integer", "minimum": 1}
        ]},
        "labels": {"type": "object", "propertyNames": {"pattern": "^[a-z]+$"}},
        "retries": {"type": "integer", "minimum": 0, "maximum": 10},
        "steps": {"type": "array", "items": {"$ref": "#/definitions/step"}},
        "nodes": {"type": "array", "items": {"$ref": "#/definitions/node"}}
      }
    }
  },
  "definitions": {
    "step": {"oneOf": [
      {"$ref": "common.schema.json#/definitions/build"},
      {"$ref": "common.schema.json#/definitions/deploy"}
    ]},
    "node": {
      "type": "object",
      "required": ["kind"],
      "properties": {"kind": {"enum": ["Build", "Deploy"]}},
      "allOf": [
        {"if": {"properties": {"kind": {"const": "Build"}}},
         "then": {"$ref": "common.schema.json#/definitions/build"}},
        {"if": {"properties": {"kind": {"const": "Deploy"}}},
         "then": {"$ref": "common.schema.json#/definitions/deploy"}}
      ]
    }
  }
})";

class SchemaTest : public testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(validator_.AddSchema("template.schema.json", ParseOrDie(kTemplateSchema)));
    ASSERT_TRUE(validator_.AddSchema("common.schema.json", ParseOrDie(kCommonSchema)));
  }

  // Validates `text` and renders each violation as "line:col pointer keyword: message".
  std::vector<std::string> Check(std::string_view text) {
    json::Value doc = ParseOrDie(text);
    auto result = validator_.Validate("template.schema.json", doc);
    EXPECT_TRUE(result) << (result ? "" : result.error().message);
    std::vector<std::string> out;
    if (!result) return out;
    for (const Violation& v : *result) {
      json::LineCol at = json::LocateOffset(text, v.offset);
      out.push_back(std::to_string(at.line) + ":" + std::to_string(at.col) + " " + v.instance_path + " " +
                    v.keyword + ": " + v.message);
    }
    return out;
  }

  Validator validator_;
};

using Lines = std::vector<std::string>;

TEST_F(SchemaTest, AValidDocumentHasNoViolations) {
  EXPECT_EQ(Check(R"({
  "apiVersion": "gitopsd/v1",
  "kind": "Template",
  "spec": {
    "type": "parallel",
    "timeout": "30s",
    "labels": {"team": "x"},
    "steps": [{"kind": "Build", "image": "gcc:13"}, {"kind": "Deploy", "target": "staging"}],
    "nodes": [{"kind": "Deploy", "target": "production", "name": "ship-it"}]
  }
})"),
              Lines{});
}

TEST_F(SchemaTest, MissingPropertyPointsAtTheObject) {
  EXPECT_EQ(Check("{\n  \"kind\": \"Template\",\n  \"spec\": {}\n}"),
              Lines({R"(1:1  required: missing required property "apiVersion")"}));
}

TEST_F(SchemaTest, UnknownKeyPointsAtTheKeyAndSuggestsTheNearestName) {
  EXPECT_EQ(Check(R"({
  "apiVersion": "gitopsd/v1",
  "kind": "Template",
  "spec": {
    "pollIntervall": "5m"
  }
})"),
              Lines({R"(5:5 /spec/pollIntervall additionalProperties: unknown key "pollIntervall" in "spec" (did you mean "pollInterval"?))"}));
}

TEST_F(SchemaTest, EnumNamesTheAllowedValuesAndWhatItGot) {
  EXPECT_EQ(Check(R"({"apiVersion": "gitopsd/v1", "kind": "Template",
 "spec": {"type": "serial"}})"),
              Lines({R"(2:19 /spec/type enum: "spec.type" must be one of "sequential", "parallel" (got "serial"))"}));
}

TEST_F(SchemaTest, WrongTypePointsAtTheValue) {
  EXPECT_EQ(Check(R"({"apiVersion": "gitopsd/v1", "kind": "Template",
 "spec": {"pollInterval": 5, "retries": 11}})"),
              Lines({"2:27 /spec/pollInterval type: expected string, got number",
                          R"(2:41 /spec/retries maximum: "spec.retries" must be <= 10 (got 11))"}));
}

TEST_F(SchemaTest, OneOfReportsTheBranchTheKindSelects) {
  EXPECT_EQ(Check(R"({"apiVersion": "gitopsd/v1", "kind": "Template", "spec": {"steps": [
  {"kind": "Build", "image": 3},
  {"kind": "Deploy", "target": "prod"}
]}})"),
              Lines({"2:30 /spec/steps/0/image type: expected string, got number",
                          R"(3:32 /spec/steps/1/target enum: "spec.steps[1].target" must be one of "staging", "production" (got "prod"))"}));
}

TEST_F(SchemaTest, OneOfWithAnUnknownKindPointsAtTheKind) {
  EXPECT_EQ(Check(R"({"apiVersion": "gitopsd/v1", "kind": "Template", "spec": {"steps": [
  {"kind": "Bulid", "image": "gcc"},
  {"image": "gcc"}
]}})"),
              Lines({R"(2:12 /spec/steps/0/kind oneOf: "spec.steps[0].kind" must be one of "Build", "Deploy" (got "Bulid"))",
                          R"(3:3 /spec/steps/1 oneOf: missing required property "kind" in "spec.steps[1]" (one of "Build", "Deploy"))"}));
}

TEST_F(SchemaTest, IfThenReportsTheThenSchemaDirectly) {
  EXPECT_EQ(Check(R"({"apiVersion": "gitopsd/v1", "kind": "Template", "spec": {"nodes": [
  {"kind": "Build", "name": "Compile", "imag": "gcc"}
]}})"),
              Lines({R"(2:3 /spec/nodes/0 required: missing required property "image" in "spec.nodes[0]")",
                          R"(2:29 /spec/nodes/0/name pattern: "spec.nodes[0].name" must match the pattern "^[a-z][a-z0-9-]*$" (got "Compile"))",
                          R"(2:40 /spec/nodes/0/imag additionalProperties: unknown key "imag" in "spec.nodes[0]" (did you mean "image"?))"}));
}

TEST_F(SchemaTest, AnyOfWithoutADiscriminatorNarrowsByTypeOrSummarises) {
  const char* prefix = R"({"apiVersion": "gitopsd/v1", "kind": "Template", "spec": )";
  EXPECT_EQ(Check(std::string(prefix) + R"({"timeout": "5m"}})"),
              Lines({R"(1:70 /spec/timeout pattern: "spec.timeout" must match the pattern "^[0-9]+s$" (got "5m"))"}));
  EXPECT_EQ(Check(std::string(prefix) + R"({"timeout": 0}})"),
              Lines({R"(1:70 /spec/timeout minimum: "spec.timeout" must be >= 1 (got 0))"}));
  EXPECT_EQ(Check(std::string(prefix) + R"({"timeout": true}})"),
              Lines({R"(1:70 /spec/timeout anyOf: "spec.timeout" does not match any of the allowed forms: string; integer (got true))"}));
}

TEST_F(SchemaTest, PropertyNamesPointAtTheKey) {
  EXPECT_EQ(Check(R"({"apiVersion": "gitopsd/v1", "kind": "Template", "spec": {"labels": {"Team": "x"}}})"),
              Lines({R"(1:70 /spec/labels/Team pattern: key "Team" must match the pattern "^[a-z]+$" (got "Team"))"}));
}

TEST_F(SchemaTest, ViolationsAreCappedAndInDocumentOrder) {
  std::string doc = R"({"apiVersion": "gitopsd/v1", "kind": "Template", "spec": {)";
  for (int i = 0; i < 50; ++i) doc += (i ? ", \"k" : "\"k") + std::to_string(i) + "\": 1";
  doc += "}}";
  json::Value value = ParseOrDie(doc);
  auto result = validator_.Validate("template.schema.json", value);
  ASSERT_TRUE(result);
  ASSERT_EQ(result->size(), Validator::kDefaultMaxViolations);
  EXPECT_EQ((*result)[0].message, R"(unknown key "k0" in "spec")");
  for (size_t i = 1; i < result->size(); ++i) EXPECT_LT((*result)[i - 1].offset, (*result)[i].offset);
}

TEST_F(SchemaTest, AFragmentSelectsASubschema) {
  json::Value node = ParseOrDie(R"({"kind": "Deploy"})");
  auto result = validator_.Validate("template.schema.json#/definitions/node", node);
  ASSERT_TRUE(result);
  ASSERT_EQ(result->size(), 1u);
  EXPECT_EQ((*result)[0].message, R"(missing required property "target")");
  EXPECT_TRUE(validator_.HasSchema("common.schema.json#/definitions/build"));
  EXPECT_FALSE(validator_.HasSchema("common.schema.json#/definitions/nope"));
}

TEST(SchemaValidatorTest, UnknownUriIsAnError) {
  Validator validator;
  auto result = validator.Validate("nope.schema.json", json::Value());
  ASSERT_FALSE(result);
  EXPECT_EQ(result.error().message, R"(no schema is registered under "nope.schema.json")");
}

TEST(SchemaValidatorTest, RefToADocumentNotYetRegisteredFailsValidationUntilItIs) {
  Validator validator;
  ASSERT_TRUE(validator.AddSchema("a.json", ParseOrDie(R"({"properties": {"x": {"$ref": "b.json#/definitions/n"}}})")));
  json::Value doc = ParseOrDie(R"({"x": "text"})");
  auto before = validator.Validate("a.json", doc);
  ASSERT_FALSE(before);
  EXPECT_EQ(before.error().message,
            R"("$ref" "b.json#/definitions/n" at a.json#/properties/x names "b.json", which is not a registered schema)");

  // Adding b.json with a broken target is refused and leaves a.json waiting.
  auto broken = validator.AddSchema("b.json", ParseOrDie(R"({"definitions": {"m": {"type": "integer"}}})"));
  ASSERT_FALSE(broken);
  EXPECT_EQ(broken.error().message,
            R"(invalid schema at a.json#/properties/x: "$ref" "b.json#/definitions/n" cannot be resolved: there is no value at "/definitions/n" in b.json)");
  EXPECT_FALSE(validator.HasSchema("b.json"));

  ASSERT_TRUE(validator.AddSchema("b.json", ParseOrDie(R"({"definitions": {"n": {"type": "integer"}}})")));
  auto after = validator.Validate("a.json", doc);
  ASSERT_TRUE(after);
  ASSERT_EQ(after->size(), 1u);
  EXPECT_EQ((*after)[0].message, "expected integer, got string");
}

TEST(SchemaValidatorTest, InvalidSchemasAreRefusedWithTheReason) {
  struct Case {
    const char* schema;
    const char* error;
  };
  const Case cases[] = {
      {R"({"properties": {"a": {"pattern": "(["}}})",
       R"(invalid schema at s.json#/properties/a: "pattern" is an invalid regular expression "([": )"},
      {R"({"items": {"$ref": "#/definitions/missing"}})",
       R"(invalid schema at s.json#/items: "$ref" "#/definitions/missing" cannot be resolved: there is no value at "/definitions/missing" in s.json)"},
      {R"({"type": "strng"})", R"(invalid schema at s.json#: "type" has unknown type "strng")"},
      {R"({"minLength": -1})", R"(invalid schema at s.json#: "minLength" must be a non-negative integer)"},
      {R"({"required": "name"})", R"(invalid schema at s.json#: "required" must be an array of strings)"},
      {R"({"multipleOf": 0})", R"(invalid schema at s.json#: "multipleOf" must be greater than 0)"},
      {R"({"properties": {"a": 3}})",
       R"(invalid schema at s.json#/properties/a: a schema must be an object or a boolean, not number)"},
      {R"({"anyOf": []})", R"(invalid schema at s.json#: "anyOf" must be a non-empty array of schemas)"},
  };
  for (const Case& c : cases) {
    Validator validator;
    auto added = validator.AddSchema("s.json", ParseOrDie(c.schema));
    ASSERT_FALSE(added) << c.schema;
    EXPECT_TRUE(added.error().message.starts_with(c.error)) << added.error().message;
    EXPECT_FALSE(validator.HasSchema("s.json")) << "a refused schema must not stay registered";
    ASSERT_TRUE(validator.AddSchema("s.json", ParseOrDie("{}"))) << "the uri is free again";
  }
}

TEST(SchemaValidatorTest, RegisteringTheSameUriTwiceIsRefused) {
  Validator validator;
  ASSERT_TRUE(validator.AddSchema("s.json", ParseOrDie("{}")));
  auto again = validator.AddSchema("s.json", ParseOrDie("{}"));
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().message, R"(a schema is already registered under "s.json")");
}

TEST(SchemaValidatorTest, IdAnchorsAndBaseUriChanges) {
  Validator validator;
  ASSERT_TRUE(validator.AddSchema("root.json", ParseOrDie(R"({
    "$id": "https://gitopsd.test/schemas/root.json",
    "properties": {
      "a": {"$ref": "#positive"},
      "b": {"$ref": "nested/leaf.json"},
      "c": {"$ref": "https://gitopsd.test/schemas/root.json#/definitions/pos%20int"}
    },
    "definitions": {
      "pos int": {"$id": "#positive", "type": "integer", "minimum": 1},
      "leaf": {"$id": "nested/leaf.json", "type": "string"}
    }
  })")));
  json::Value doc = ParseOrDie(R"({"a": 0, "b": 1, "c": 2})");
  auto result = validator.Validate("https://gitopsd.test/schemas/root.json", doc);
  ASSERT_TRUE(result);
  ASSERT_EQ(result->size(), 2u);
  EXPECT_EQ((*result)[0].instance_path, "/a");
  EXPECT_EQ((*result)[1].instance_path, "/b");
  EXPECT_TRUE(validator.HasSchema("https://gitopsd.test/schemas/nested/leaf.json"));
}

TEST(SchemaValidatorTest, RefSiblingsAreIgnoredAsInDraft7) {
  Validator validator;
  ASSERT_TRUE(validator.AddSchema("s.json", ParseOrDie(R"({
    "definitions": {"s": {"type": "string"}},
    "properties": {"x": {"$ref": "#/definitions/s", "maxLength": 1}}
  })")));
  auto result = validator.Validate("s.json", ParseOrDie(R"({"x": "long"})"));
  ASSERT_TRUE(result);
  EXPECT_TRUE(result->empty());
}

TEST(SchemaValidatorTest, ARefCycleThatNeverDescendsIsAnErrorNotACrash) {
  Validator validator;
  ASSERT_TRUE(validator.AddSchema("s.json", ParseOrDie(R"({"allOf": [{"$ref": "#"}]})")));
  auto result = validator.Validate("s.json", ParseOrDie("{}"));
  ASSERT_FALSE(result);
  EXPECT_NE(result.error().message.find("$ref cycle"), std::string::npos) << result.error().message;
}

TEST(SchemaValidatorTest, RecursiveSchemasFollowTheDocument) {
  Validator validator;
  ASSERT_TRUE(validator.AddSchema("tree.json", ParseOrDie(R"({
    "type": "object",
    "properties": {"value": {"type": "number"}, "children": {"type": "array", "items": {"$ref": "#"}}}
  })")));
  constexpr std::string_view text = R"({"value": 1, "children": [{"value": 2, "children": [{"value": "x"}]}]})";
  auto result = validator.Validate("tree.json", ParseOrDie(text));
  ASSERT_TRUE(result);
  ASSERT_EQ(result->size(), 1u);
  EXPECT_EQ((*result)[0].instance_path, "/children/0/children/0/value");
  EXPECT_EQ(json::LocateOffset(text, (*result)[0].offset).col, 63);
}

TEST(SchemaValidatorTest, LengthsAndPatternsCountCharactersNotBytes) {
  Validator validator;
  ASSERT_TRUE(validator.AddSchema("s.json", ParseOrDie(R"({
    "properties": {"a": {"maxLength": 5, "minLength": 5}, "b": {"pattern": "^.{5}$"}}
  })")));
  auto result = validator.Validate("s.json", ParseOrDie(R"({"a": "héllo", "b": "wörld"})"));
  ASSERT_TRUE(result);
  EXPECT_TRUE(result->empty());
  auto short_one = validator.Validate("s.json", ParseOrDie(R"({"a": "héll"})"));
  ASSERT_TRUE(short_one);
  ASSERT_EQ(short_one->size(), 1u);
  EXPECT_EQ((*short_one)[0].message, R"("a" must be at least 5 characters long (got 4))");
}

TEST(SchemaValidatorTest, MessagesForArraysAndNumbers) {
  Validator validator;
  ASSERT_TRUE(validator.AddSchema("s.json", ParseOrDie(R"({
    "properties": {
      "tags": {"type": "array", "uniqueItems": true, "minItems": 1, "contains": {"const": "main"}},
      "pair": {"items": [{"type": "string"}, {"type": "integer"}], "additionalItems": false},
      "ratio": {"multipleOf": 0.25, "exclusiveMaximum": 1}
    },
    "dependencies": {"pair": ["tags"]}
  })")));
  constexpr std::string_view text = R"({"tags": ["a", "b", "a"], "pair": ["x", 1, 2], "ratio": 1.1})";
  auto result = validator.Validate("s.json", ParseOrDie(text));
  ASSERT_TRUE(result);
  std::vector<std::string> messages;
  for (const auto& v : *result) messages.push_back(v.instance_path + " " + v.message);
  EXPECT_EQ(messages,
              Lines({R"(/tags "tags" must contain "main")",
                          R"(/tags/2 "tags" must not contain duplicates (items 0 and 2 are equal))",
                          R"(/pair/2 "pair" must have at most 2 items (got 3))",
                          R"(/ratio "ratio" must be < 1 (got 1.1))",
                          R"(/ratio "ratio" must be a multiple of 0.25 (got 1.1))"}));
}

TEST(SchemaValidatorTest, IsMoveOnly) {
  static_assert(!std::is_copy_constructible_v<Validator>);
  static_assert(std::is_nothrow_move_constructible_v<Validator>);
  Validator a;
  ASSERT_TRUE(a.AddSchema("s.json", ParseOrDie(R"({"type": "string"})")));
  Validator b = std::move(a);
  auto result = b.Validate("s.json", ParseOrDie("1"));
  ASSERT_TRUE(result);
  EXPECT_EQ(result->size(), 1u);
}

TEST_F(SchemaTest, ConcurrentValidationsAgreeWithASingleThread) {
  constexpr std::string_view text = R"({"apiVersion": "gitopsd/v1", "kind": "Template", "spec": {
    "type": "serial", "timeout": true, "steps": [{"kind": "Build"}, {"kind": "Deploy", "target": "x"}],
    "nodes": [{"kind": "Build", "image": 1}], "labels": {"A": "b"}}})";
  json::Value doc = ParseOrDie(text);
  auto expected = validator_.Validate("template.schema.json", doc);
  ASSERT_TRUE(expected);
  ASSERT_GT(expected->size(), 4u);
  std::vector<int> mismatches(8, 0);
  std::vector<std::thread> threads;
  for (size_t t = 0; t < mismatches.size(); ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 300; ++i) {
        auto got = validator_.Validate("template.schema.json", doc);
        if (!got || got->size() != expected->size()) { ++mismatches[t]; continue; }
        for (size_t k = 0; k < got->size(); ++k) {
          if ((*got)[k].message != (*expected)[k].message || (*got)[k].offset != (*expected)[k].offset) {
            ++mismatches[t];
          }
        }
      }
    });
  }
  for (auto& thread : threads) thread.join();
  for (int m : mismatches) EXPECT_EQ(m, 0);
}

}  // namespace
}  // namespace gitopsd::schema
