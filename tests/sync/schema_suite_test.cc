// The official JSON-Schema-Test-Suite (draft-07, as packaged by Debian in
// json-schema-test-suite) run against schema::Validator: one test per suite
// file, each failing case reported by its group and test description.
//
// Every file in tests/draft7/ runs, refRemote.json included: the "remote"
// documents it needs (http://localhost:1234/...) are the suite's own
// remotes/ folder, registered from disk, so no case needs the network.
// Skipped:
//  - the optional/ folder (bignum, ECMAScript regex details, format,
//    content, zero-terminated floats): not part of what gitopsd claims.
//  - the cases that $ref the draft-07 meta-schema
//    (http://json-schema.org/draft-07/schema#: ref.json "remote ref,
//    containing refs itself", both groups of definitions.json), but only
//    when no local copy of the meta-schema exists (see kMetaSchemaPaths).
// No case needs "format" outside optional/ in this suite version.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "sync/json.h"
#include "sync/schema.h"

namespace gitopsd::schema {
namespace {

namespace fs = std::filesystem;

const fs::path kSuiteDir = "/usr/share/json-schema-test-suite";
const fs::path kDraft7Dir = kSuiteDir / "tests" / "draft7";
// The meta-schema is the one "remote" document the suite refers to that it
// does not ship; python3-jsonschema installs the official file.
const char* const kMetaSchemaPaths[] = {
    "/usr/lib/python3/dist-packages/jsonschema/schemas/draft7.json",
};

const char* const kSuiteFiles[] = {
    "additionalItems.json", "additionalProperties.json", "allOf.json", "anyOf.json",
    "boolean_schema.json", "const.json", "contains.json", "default.json",
    "definitions.json", "dependencies.json", "enum.json", "exclusiveMaximum.json",
    "exclusiveMinimum.json", "if-then-else.json", "items.json", "maxItems.json",
    "maxLength.json", "maxProperties.json", "maximum.json", "minItems.json",
    "minLength.json", "minProperties.json", "minimum.json", "multipleOf.json",
    "not.json", "oneOf.json", "pattern.json", "patternProperties.json",
    "properties.json", "propertyNames.json", "ref.json", "refRemote.json",
    "required.json", "type.json", "uniqueItems.json",
};

std::string ReadFile(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

json::ParseOptions SuiteParseOptions() {
  json::ParseOptions options;
  options.max_bytes = size_t{64} << 20;
  options.max_depth = 512;
  return options;
}

std::optional<json::Value> LoadJson(const fs::path& path) {
  auto parsed = json::Parse(ReadFile(path), SuiteParseOptions());
  if (!parsed) {
    ADD_FAILURE() << path << ": " << parsed.error().message;
    return std::nullopt;
  }
  return std::move(*parsed);
}

// The documents every case may refer to, keyed by the URI they are served
// under in the suite's own harness.
struct Remote {
  std::string uri;
  json::Value schema;
};

std::vector<Remote> LoadRemotes() {
  std::vector<Remote> remotes;
  const fs::path dir = kSuiteDir / "remotes";
  if (fs::exists(dir)) {
    for (const auto& entry : fs::recursive_directory_iterator(dir)) {
      if (!entry.is_regular_file() || entry.path().extension() != ".json") continue;
      if (auto schema = LoadJson(entry.path())) {
        remotes.push_back({"http://localhost:1234/" + fs::relative(entry.path(), dir).generic_string(),
                           std::move(*schema)});
      }
    }
  }
  for (const char* path : kMetaSchemaPaths) {
    if (!fs::exists(path)) continue;
    if (auto schema = LoadJson(path)) {
      remotes.push_back({"http://json-schema.org/draft-07/schema", std::move(*schema)});
      break;
    }
  }
  return remotes;
}

bool NeedsMetaSchema(const json::Value& schema) {
  return json::SerializeCompact(schema).find("json-schema.org/draft-07/schema") != std::string::npos;
}

bool HasMetaSchema(const std::vector<Remote>& remotes) {
  return std::any_of(remotes.begin(), remotes.end(),
                     [](const Remote& r) { return r.uri.find("json-schema.org") != std::string::npos; });
}

class SchemaSuiteTest : public testing::TestWithParam<const char*> {};

TEST_P(SchemaSuiteTest, AllCasesOfFile) {
  const fs::path file = kDraft7Dir / GetParam();
  if (!fs::exists(file)) GTEST_SKIP() << "JSON-Schema-Test-Suite not installed: " << file << " is missing";
  static const std::vector<Remote> remotes = LoadRemotes();
  auto groups = LoadJson(file);
  ASSERT_TRUE(groups && groups->is_array());

  int passed = 0, failed = 0, skipped = 0;
  for (const json::Value& group : groups->items()) {
    const std::string& group_name = group.Find("description")->as_string();
    const json::Value& schema = *group.Find("schema");
    const auto& tests = group.Find("tests")->items();
    if (NeedsMetaSchema(schema) && !HasMetaSchema(remotes)) {
      skipped += static_cast<int>(tests.size());
      std::cout << "skipped " << GetParam() << " \"" << group_name << "\": no local draft-07 meta-schema\n";
      continue;
    }
    Validator validator;
    for (const Remote& remote : remotes) {
      ASSERT_TRUE(validator.AddSchema(remote.uri, remote.schema)) << remote.uri;
    }
    auto added = validator.AddSchema("suite.schema.json", schema);
    if (!added) {
      ADD_FAILURE() << GetParam() << " \"" << group_name << "\": schema rejected: " << added.error().message;
      failed += static_cast<int>(tests.size());
      continue;
    }
    for (const json::Value& test : tests) {
      const std::string& test_name = test.Find("description")->as_string();
      bool expect_valid = test.Find("valid")->as_bool();
      auto result = validator.Validate("suite.schema.json", *test.Find("data"));
      if (!result) {
        ADD_FAILURE() << GetParam() << " \"" << group_name << "\" / \"" << test_name
                      << "\": " << result.error().message;
        ++failed;
        continue;
      }
      if (result->empty() == expect_valid) {
        ++passed;
        continue;
      }
      ++failed;
      ADD_FAILURE() << GetParam() << " \"" << group_name << "\" / \"" << test_name << "\": expected "
                    << (expect_valid ? "valid" : "invalid") << ", got "
                    << (expect_valid ? (*result)[0].keyword + ": " + (*result)[0].message : "valid");
    }
  }
  std::cout << GetParam() << ": " << passed << " passed, " << failed << " failed, " << skipped
            << " skipped\n";
}

INSTANTIATE_TEST_SUITE_P(Draft7, SchemaSuiteTest, testing::ValuesIn(kSuiteFiles),
                         [](const testing::TestParamInfo<const char*>& info) {
                           std::string name = info.param;
                           name = name.substr(0, name.find('.'));
                           std::replace(name.begin(), name.end(), '-', '_');
                           return name;
                         });

// A suite update that adds a keyword file must not go unnoticed.
TEST(SchemaSuiteCoverage, EveryDraft7FileIsRun) {
  if (!fs::exists(kDraft7Dir)) GTEST_SKIP() << "JSON-Schema-Test-Suite not installed: " << kDraft7Dir;
  std::set<std::string> run(std::begin(kSuiteFiles), std::end(kSuiteFiles));
  for (const auto& entry : fs::directory_iterator(kDraft7Dir)) {
    if (!entry.is_regular_file()) continue;
    EXPECT_TRUE(run.contains(entry.path().filename().string()))
        << entry.path().filename() << " is in the suite but not in kSuiteFiles";
  }
}

}  // namespace
}  // namespace gitopsd::schema
