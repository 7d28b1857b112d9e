#include "sync/json.h"

#include <gtest/gtest.h>

namespace gitopsd::json {
namespace {

ParseError ParseFails(std::string_view text, ParseOptions options = {}) {
  auto r = Parse(text, options);
  EXPECT_FALSE(r.has_value()) << "expected a parse error for: " << text;
  return r.has_value() ? ParseError{} : r.error();
}

TEST(JsonParse, KeepsMemberOrderOffsetsAndNumberSpelling) {
  std::string text = "{\n  \"b\": 1.50,\n  \"a\": [true, null, \"x\"]\n}\n";
  auto v = Parse(text);
  ASSERT_TRUE(v.has_value()) << v.error().message;
  ASSERT_EQ(v->members().size(), 2u);
  EXPECT_EQ(v->members()[0].first, "b");
  EXPECT_EQ(v->members()[0].second.number_text(), "1.50");
  EXPECT_DOUBLE_EQ(v->members()[0].second.as_double(), 1.5);
  const Value* a = v->Find("a");
  ASSERT_NE(a, nullptr);
  LineCol lc = LocateOffset(text, a->offset());
  EXPECT_EQ(lc.line, 3);
  EXPECT_EQ(lc.col, 8);
  lc = LocateOffset(text, a->key_offset());
  EXPECT_EQ(lc.line, 3);
  EXPECT_EQ(lc.col, 3);
  lc = LocateOffset(text, a->items()[2].offset());
  EXPECT_EQ(lc.line, 3);
  EXPECT_EQ(lc.col, 21);
}

TEST(JsonParse, SyntaxErrorPointsAtTheProblem) {
  std::string text = "{\n  \"a\": 1\n  \"b\": 2\n}\n";
  ParseError e = ParseFails(text);
  EXPECT_EQ(e.rule, "json-syntax");
  LineCol lc = LocateOffset(text, e.offset);
  EXPECT_EQ(lc.line, 3) << e.message;
}

TEST(JsonParse, SyntaxErrorsAreDescribedPrecisely) {
  struct Case {
    std::string text;
    size_t offset;
    std::string message_part;
  } cases[] = {
      {"{\"a\": 1 \"b\": 2}", 8, "',' or '}' after the value of \"a\""},
      {"{\"a\": 1,}", 7, "trailing comma before '}'"},
      {"[1, 2,]", 5, "trailing comma before ']'"},
      {"{a: 1}", 1, "keys must be in double quotes"},
      {"{\"a\" 1}", 5, "':' after the key \"a\""},
      {"{\"a\": 'x'}", 6, "double quotes"},
      {"{\"a\": 01}", 6, "leading zeros"},
      {"{\"a\": \"x\\q\"}", 8, "invalid escape \\q"},
      {"{\"a\": \"abc", 6, "unterminated string"},
      {"{\"a\": [1, 2}", 11, "',' or ']'"},
      {"{\"a\": 1 // note\n}", 8, "comments are not allowed"},
      {"{\"a\": ", 6, "unexpected end of file"},
  };
  for (const auto& c : cases) {
    ParseError e = ParseFails(c.text);
    EXPECT_EQ(e.rule, "json-syntax") << c.text;
    EXPECT_EQ(e.offset, c.offset) << c.text << " -> " << e.message;
    EXPECT_NE(e.message.find(c.message_part), std::string::npos) << c.text << " -> " << e.message;
  }
}

TEST(JsonParse, BadLiteralIsReported) {
  std::string text = "{\"a\": tru}";
  ParseError e = ParseFails(text);
  EXPECT_EQ(e.rule, "json-syntax");
  EXPECT_EQ(e.offset, 6u) << e.message;
}

TEST(JsonParse, TrailingContentIsAnError) {
  ParseError e = ParseFails("{} {}");
  EXPECT_EQ(e.rule, "json-syntax");
}

TEST(JsonParse, EmptyFileIsAnError) {
  EXPECT_EQ(ParseFails("").rule, "json-syntax");
  EXPECT_EQ(ParseFails("  \n").rule, "json-syntax");
}

TEST(JsonParse, DuplicateKeysAreRejected) {
  std::string text = "{\"a\": 1,\n \"a\": 2}";
  ParseError e = ParseFails(text);
  EXPECT_EQ(e.rule, "json-duplicate-key");
  EXPECT_EQ(LocateOffset(text, e.offset).line, 2);
}

TEST(JsonParse, InvalidUtf8IsLocated) {
  std::string text = "{\"name\": \"caf\xC3\"}";
  ParseError e = ParseFails(text);
  EXPECT_EQ(e.rule, "json-utf8");
  EXPECT_EQ(e.offset, 13u);
}

TEST(JsonParse, DepthLimit) {
  ParseOptions options;
  options.max_depth = 4;
  EXPECT_TRUE(Parse("[[[[1]]]]", options).has_value());
  ParseError e = ParseFails("[[[[[1]]]]]", options);
  EXPECT_EQ(e.rule, "json-depth");
  EXPECT_EQ(e.offset, 4u);
  // Far deeper than simdjson's own limit is still a clean error.
  std::string deep(5000, '[');
  deep += std::string(5000, ']');
  EXPECT_EQ(ParseFails(deep).rule, "json-depth");
}

TEST(JsonParse, SizeLimit) {
  ParseOptions options;
  options.max_bytes = 10;
  ParseError e = ParseFails("{\"a\": \"0123456789\"}", options);
  EXPECT_EQ(e.rule, "json-size");
}

TEST(JsonParse, ScalarDocumentsAndEscapes) {
  auto v = Parse("\"a\\n\\u00e9\"");
  ASSERT_TRUE(v.has_value());
  EXPECT_EQ(v->as_string(), "a\n\xC3\xA9");
  for (const char* text : {"null", "null\n", " null ", "true\n", " false"}) {
    EXPECT_TRUE(Parse(text).has_value()) << text;
  }
  EXPECT_FALSE(Parse("nul").has_value());
  EXPECT_FALSE(Parse("nulll").has_value());
  EXPECT_FALSE(Parse("null x").has_value());
  EXPECT_FALSE(Parse("[null x]").has_value());
  auto n = Parse("42");
  ASSERT_TRUE(n.has_value());
  EXPECT_TRUE(n->is_integer());
}

TEST(JsonSerialize, CanonicalStyleRoundTrips) {
  std::string text =
      "{\n  \"name\": \"x\",\n  \"list\": [\n    1,\n    2.0\n  ],\n  \"empty\": {},\n  \"s\": \"a\\\"b\"\n}\n";
  auto v = Parse(text);
  ASSERT_TRUE(v.has_value());
  EXPECT_EQ(Serialize(*v), text);
  EXPECT_EQ(SerializeCompact(*v), "{\"name\":\"x\",\"list\":[1,2.0],\"empty\":{},\"s\":\"a\\\"b\"}");
}

TEST(JsonValue, EqualityIgnoresMemberOrderAndNumberSpelling) {
  auto a = Parse("{\"x\": 1, \"y\": [1.0]}");
  auto b = Parse("{\"y\": [1], \"x\": 1.0}");
  ASSERT_TRUE(a && b);
  EXPECT_TRUE(*a == *b);
  auto c = Parse("{\"y\": [2], \"x\": 1.0}");
  EXPECT_FALSE(*a == *c);
}

TEST(JsonLocate, CrLfCountsOnce) {
  std::string text = "{\r\n\"a\":\r\n1}";
  LineCol lc = LocateOffset(text, text.find('1'));
  EXPECT_EQ(lc.line, 3);
  EXPECT_EQ(lc.col, 1);
}

}  // namespace
}  // namespace gitopsd::json
