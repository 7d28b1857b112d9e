// Write-back edits files in place: the diff a reviewer sees in Git must show
// only what the API changed.
#include "sync/json_edit.h"

#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>

namespace gitopsd::json {
namespace {

namespace fs = std::filesystem;

std::string ReadFile(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

fs::path ExamplesDir() { return fs::path(GITOPSD_SOURCE_DIR) / "examples/shop/.gitops"; }

std::string Example(const std::string& relative) { return ReadFile(ExamplesDir() / relative); }

std::vector<fs::path> ExampleFiles() {
  std::vector<fs::path> files;
  for (const auto& e : fs::recursive_directory_iterator(ExamplesDir())) {
    if (e.is_regular_file() && e.path().extension() == ".json") files.push_back(e.path());
  }
  std::sort(files.begin(), files.end());
  return files;
}

Value ParseOk(std::string_view text) {
  auto v = Parse(text);
  EXPECT_TRUE(v.has_value()) << (v ? "" : v.error().message) << "\n" << text;
  return v ? *v : Value();
}

std::string Rewrite(std::string_view text, const Value& updated) {
  auto r = RewritePreservingFormat(text, updated);
  EXPECT_TRUE(r.has_value()) << (r ? "" : r.error().message);
  if (!r) return "";
  EXPECT_EQ(ParseOk(*r), updated) << *r;
  return *r;
}

// Lines split on '\n'; a "\r" stays on its line, so newline style counts.
std::vector<std::string> Lines(std::string_view text) {
  std::vector<std::string> lines;
  size_t start = 0;
  while (start <= text.size()) {
    size_t nl = text.find('\n', start);
    if (nl == std::string_view::npos) {
      lines.emplace_back(text.substr(start));
      break;
    }
    lines.emplace_back(text.substr(start, nl + 1 - start));
    start = nl + 1;
  }
  return lines;
}

// A tiny line diff: what remains between the common head and tail.
struct LineDiff {
  std::vector<std::string> removed, added;
};

LineDiff Diff(std::string_view before, std::string_view after) {
  auto a = Lines(before), b = Lines(after);
  size_t head = 0;
  while (head < a.size() && head < b.size() && a[head] == b[head]) ++head;
  size_t tail = 0;
  while (tail < a.size() - head && tail < b.size() - head &&
         a[a.size() - 1 - tail] == b[b.size() - 1 - tail])
    ++tail;
  return {{a.begin() + head, a.end() - tail}, {b.begin() + head, b.end() - tail}};
}

// Walks to a value by keys and, for arrays, "ref=x" or an index.
Value& At(Value& root, std::initializer_list<std::string_view> path) {
  Value* v = &root;
  for (std::string_view step : path) {
    if (v->is_array() && step.starts_with("ref=")) {
      Value* found = nullptr;
      for (Value& item : v->items()) {
        const Value* ref = item.Find("ref");
        if (ref && ref->as_string() == step.substr(4)) found = &item;
      }
      EXPECT_NE(found, nullptr) << step;
      v = found;
    } else if (v->is_array()) {
      v = &v->items().at(std::stoul(std::string(step)));
    } else {
      v = v->Find(step);
      EXPECT_NE(v, nullptr) << step;
    }
  }
  return *v;
}

TEST(RewritePreservingFormat, ExampleFilesRoundTripByteIdentical) {
  auto files = ExampleFiles();
  ASSERT_GE(files.size(), 3u);
  for (const auto& path : files) {
    std::string text = ReadFile(path);
    EXPECT_EQ(Rewrite(text, ParseOk(text)), text) << path;
    // A value that only compares equal (no offsets, built elsewhere) too.
    Value copy = ParseOk(SerializeCompact(ParseOk(text)));
    EXPECT_EQ(Rewrite(text, copy), text) << path;
  }
}

const char* const kStyles[] = {
    "{\n    \"a\": 1,\n    \"b\": {\n        \"c\": [1, 2],\n        \"d\": \"x\"\n    }\n}\n",
    "{\n\t\"a\": 1,\n\t\"b\": {\n\t\t\"c\": [\n\t\t\t1,\n\t\t\t2\n\t\t],\n\t\t\"d\": \"x\"\n\t}\n}\n",
    "{\r\n  \"a\": 1,\r\n  \"b\": {\r\n    \"c\": [1, 2],\r\n    \"d\": \"x\"\r\n  }\r\n}\r\n",
    "{\n  \"a\": 1,\n  \"b\": { \"c\": [1, 2], \"d\": \"x\" }\n}",
    "{\"a\":1,\"b\":{\"c\":[1,2],\"d\":\"x\"}}",
    "  { \"a\" : 1.50 , \"b\" : { \"c\" : [ 1e3 , -0 ] , \"d\" : \"\\u00e9\\/x\" } }  \n\n",
    "[\n  {\"ref\": \"one\", \"n\": 1},\n  {\"ref\": \"two\", \"n\": 2}\n]\n",
    "\"just a string\"",
    "42\n",
    "{}",
    "{\n  \"empty\": {},\n  \"none\": [],\n  \"spaced\": {  }\n}\n",
};

TEST(RewritePreservingFormat, HandWrittenStylesRoundTripByteIdentical) {
  for (const char* text : kStyles) {
    EXPECT_EQ(Rewrite(text, ParseOk(text)), text);
    EXPECT_EQ(Rewrite(text, ParseOk(SerializeCompact(ParseOk(text)))), text);
  }
}

TEST(RewritePreservingFormat, OneChangedValueChangesOneLine) {
  std::string text = Example("templates/shop.json");
  Value v = ParseOk(text);
  At(v, {"spec", "spec", "steps", "ref=migrate", "spec", "activeDeadlineSeconds"}) = Value::Number(900);
  std::string out = Rewrite(text, v);
  LineDiff d = Diff(text, out);
  ASSERT_EQ(d.removed.size(), 1u);
  ASSERT_EQ(d.added.size(), 1u);
  EXPECT_EQ(d.removed[0], "            \"activeDeadlineSeconds\": 600\n");
  EXPECT_EQ(d.added[0], "            \"activeDeadlineSeconds\": 900\n");
}

TEST(RewritePreservingFormat, OneChangedValueChangesOneLineInEveryStyle) {
  for (const char* text : kStyles) {
    Value v = ParseOk(text);
    if (!v.is_object() || !v.Find("b")) continue;
    v.Find("b")->Set("d", Value::String("y \"quoted\"\n"));
    std::string out = Rewrite(text, v);
    LineDiff d = Diff(text, out);
    EXPECT_EQ(d.removed.size(), 1u) << out;
    EXPECT_EQ(d.added.size(), 1u) << out;
    EXPECT_NE(out.find(R"("y \"quoted\"\n")"), std::string::npos) << out;
    EXPECT_EQ(out.find("\r\n") != std::string::npos, std::string_view(text).find("\r\n") != std::string::npos);
    EXPECT_EQ(out.back(), std::string_view(text).back());
  }
}

TEST(RewritePreservingFormat, ChangedValueInsideInlineObjectKeepsTheLineShape) {
  std::string text = Example("release-flows/production.json");
  Value v = ParseOk(text);
  At(v, {"spec", "spec", "steps", "ref=migrate", "spec", "jobId"}) = Value::String("shop-migrate-2");
  LineDiff d = Diff(text, Rewrite(text, v));
  ASSERT_EQ(d.added.size(), 1u);
  EXPECT_EQ(d.added[0], "          \"spec\": { \"jobId\": \"shop-migrate-2\" },\n");
}

TEST(RewritePreservingFormat, UnchangedNumbersAndEscapesKeepTheirSpelling) {
  std::string text = "{\"n\": 1.50, \"big\": 1E3, \"s\": \"caf\\u00e9\", \"t\": 1}";
  Value v = ParseOk(text);
  v.Set("t", Value::Number(2));
  v.Set("big", Value::Number(1000));  // equal by value: spelling stays
  EXPECT_EQ(Rewrite(text, v), "{\"n\": 1.50, \"big\": 1E3, \"s\": \"caf\\u00e9\", \"t\": 2}");
}

TEST(RewritePreservingFormat, AddedKeyGoesAtTheEndAtSiblingIndentation) {
  std::string text = kStyles[0];  // 4 spaces
  Value v = ParseOk(text);
  v.Find("b")->Set("e", Value::Object({{"f", Value::Bool(true)}, {"g", Value::Array()}}));
  EXPECT_EQ(Rewrite(text, v),
            "{\n    \"a\": 1,\n    \"b\": {\n        \"c\": [1, 2],\n        \"d\": \"x\",\n"
            "        \"e\": {\n            \"f\": true,\n            \"g\": []\n        }\n    }\n}\n");

  text = kStyles[1];  // tabs
  v = ParseOk(text);
  v.Set("z", Value::Array({Value::Number(7)}));
  EXPECT_EQ(Rewrite(text, v),
            "{\n\t\"a\": 1,\n\t\"b\": {\n\t\t\"c\": [\n\t\t\t1,\n\t\t\t2\n\t\t],\n\t\t\"d\": \"x\"\n\t},\n"
            "\t\"z\": [\n\t\t7\n\t]\n}\n");

  text = kStyles[2];  // CRLF
  v = ParseOk(text);
  v.Set("z", Value::Object({{"k", Value::Null()}}));
  EXPECT_EQ(Rewrite(text, v),
            "{\r\n  \"a\": 1,\r\n  \"b\": {\r\n    \"c\": [1, 2],\r\n    \"d\": \"x\"\r\n  },\r\n"
            "  \"z\": {\r\n    \"k\": null\r\n  }\r\n}\r\n");
}

TEST(RewritePreservingFormat, AddedKeyFollowsItsPredecessorInTheUpdatedValue) {
  std::string text = "{\n  \"a\": 1,\n  \"c\": 3\n}\n";
  Value v = Value::Object({{"a", Value::Number(1)}, {"b", Value::Number(2)}, {"c", Value::Number(3)}});
  EXPECT_EQ(Rewrite(text, v), "{\n  \"a\": 1,\n  \"b\": 2,\n  \"c\": 3\n}\n");
  v = Value::Object({{"first", Value::Number(0)}, {"a", Value::Number(1)}, {"c", Value::Number(3)}});
  EXPECT_EQ(Rewrite(text, v), "{\n  \"first\": 0,\n  \"a\": 1,\n  \"c\": 3\n}\n");
}

TEST(RewritePreservingFormat, OneLineObjectsStayOnOneLine) {
  std::string text = Example("templates/shop.json");
  Value v = ParseOk(text);
  At(v, {"options"}).Set("maxRuns", Value::Number(3));
  LineDiff d = Diff(text, Rewrite(text, v));
  ASSERT_EQ(d.added.size(), 1u);
  EXPECT_EQ(d.added[0], "  \"options\": { \"autorun\": true, \"concurrencyPolicy\": \"queue\", \"maxRuns\": 3 },\n");

  v = ParseOk(text);
  At(v, {"spec", "spec", "steps", "ref=web", "spec", "ports", "0"})
      .Set("extra", Value::Object({{"x", Value::Array({Value::Number(1), Value::Number(2)})}}));
  d = Diff(text, Rewrite(text, v));
  ASSERT_EQ(d.added.size(), 1u);
  EXPECT_EQ(d.added[0],
            "            \"ports\": [ { \"name\": \"${args.PORT_NAME}\", \"internalPort\": 8080, "
            "\"protocol\": \"HTTP\", \"public\": true, \"extra\": { \"x\": [1, 2] } } ],\n");

  std::string compact = "{\"a\":1,\"b\":{\"c\":[1,2]}}";
  v = ParseOk(compact);
  v.Find("b")->Set("d", Value::Object({{"e", Value::String("f")}}));
  EXPECT_EQ(Rewrite(compact, v), "{\"a\":1,\"b\":{\"c\":[1,2],\"d\":{\"e\":\"f\"}}}");
}

TEST(RewritePreservingFormat, RemovedKeyTakesItsLineAndComma) {
  std::string text = "{\n  \"a\": 1,\n  \"b\": 2,\n  \"c\": 3\n}";
  Value v = ParseOk(text);
  v.Erase("b");
  EXPECT_EQ(Rewrite(text, v), "{\n  \"a\": 1,\n  \"c\": 3\n}");
  v = ParseOk(text);
  v.Erase("c");
  EXPECT_EQ(Rewrite(text, v), "{\n  \"a\": 1,\n  \"b\": 2\n}");
  v = ParseOk(text);
  v.Erase("a");
  EXPECT_EQ(Rewrite(text, v), "{\n  \"b\": 2,\n  \"c\": 3\n}");
  v = Value::Object();
  EXPECT_EQ(Rewrite(text, v), "{}");
  EXPECT_EQ(Rewrite("{ \"a\": 1, \"b\": 2 }", ParseOk("{\"b\": 2}")), "{ \"b\": 2 }");

  std::string shop = Example("templates/shop.json");
  v = ParseOk(shop);
  At(v, {"spec", "spec", "steps", "ref=migrate", "spec"}).Erase("backoffLimit");
  LineDiff d = Diff(shop, Rewrite(shop, v));
  ASSERT_EQ(d.removed.size(), 1u);
  EXPECT_EQ(d.removed[0], "            \"backoffLimit\": 0,\n");
  EXPECT_TRUE(d.added.empty());
}

TEST(RewritePreservingFormat, ChangeInsideNestedNodesKeepsEveryOtherLine) {
  std::string text = Example("previews/pull-requests.json");
  Value v = ParseOk(text);
  // steps[1] is a parallel workflow without a ref; its second node is "db".
  At(v, {"spec", "spec", "steps", "1", "spec", "steps", "ref=db", "spec", "source", "backupId"}) =
      Value::String("nightly");
  LineDiff d = Diff(text, Rewrite(text, v));
  ASSERT_EQ(d.removed.size(), 1u);
  ASSERT_EQ(d.added.size(), 1u);
  EXPECT_EQ(d.added[0], "                  \"source\": { \"addonId\": \"shop-db\", \"backupId\": \"nightly\" }\n");
}

TEST(RewritePreservingFormat, RemovingAStepByRefRemovesOnlyItsLines) {
  std::string text = Example("release-flows/production.json");
  Value v = ParseOk(text);
  auto& steps = At(v, {"spec", "spec", "steps"}).items();
  steps.erase(steps.begin() + 1);  // pre-release-backup
  std::string removed = Rewrite(text, v);
  LineDiff d = Diff(text, removed);
  EXPECT_TRUE(d.added.empty());
  ASSERT_EQ(d.removed.size(), 6u);  // the node's lines (the diff may shift them by one)
  std::string joined;
  for (const auto& l : d.removed) joined += l;
  EXPECT_NE(joined.find("          \"ref\": \"pre-release-backup\",\n"), std::string::npos);

  // Later nodes are still matched by ref: editing one changes one line.
  At(v, {"spec", "spec", "steps", "ref=deploy", "timeoutDuration"}) = Value::Number(1200);
  d = Diff(removed, Rewrite(text, v));
  ASSERT_EQ(d.added.size(), 1u);
  EXPECT_EQ(d.added[0], "          \"timeoutDuration\": 1200\n");
}

TEST(RewritePreservingFormat, AddingAStepByRefAddsOnlyItsLines) {
  std::string text = Example("release-flows/production.json");
  Value v = ParseOk(text);
  auto& steps = At(v, {"spec", "spec", "steps"}).items();
  Value smoke = Value::Object({{"kind", Value::String("JobRun")},
                               {"ref", Value::String("smoke")},
                               {"spec", Value::Object({{"jobId", Value::String("smoke")}})}});
  steps.insert(steps.begin() + 4, smoke);  // after "migrate"
  std::string out = Rewrite(text, v);
  LineDiff d = Diff(text, out);
  EXPECT_TRUE(d.removed.empty());
  std::vector<std::string> expected = {"        {\n",
                                       "          \"kind\": \"JobRun\",\n",
                                       "          \"ref\": \"smoke\",\n",
                                       "          \"spec\": {\n",
                                       "            \"jobId\": \"smoke\"\n",
                                       "          }\n",
                                       "        },\n"};
  // The diff may align the added block one node earlier or later; the text
  // added is the node either way.
  ASSERT_EQ(d.added.size(), expected.size());
  std::string joined;
  for (const auto& l : d.added) joined += l;
  EXPECT_NE(joined.find("\"ref\": \"smoke\""), std::string::npos);
  EXPECT_EQ(ParseOk(out), v);

  // Appending after the last node: its lines, and a comma after the node
  // before it (a line diff may show that as the new node's first line).
  v = ParseOk(text);
  At(v, {"spec", "spec", "steps"}).items().push_back(smoke);
  out = Rewrite(text, v);
  d = Diff(text, out);
  EXPECT_LE(d.removed.size(), 1u);
  EXPECT_EQ(d.added.size() - d.removed.size(), 7u);
  EXPECT_NE(out.find("        },\n        {\n          \"kind\": \"JobRun\",\n          \"ref\": \"smoke\""),
            std::string::npos)
      << out;
}

TEST(RewritePreservingFormat, MovedNodesKeepTheirText) {
  std::string text = "[\n  {\"ref\": \"a\", \"v\": 1},\n  {\"ref\": \"b\", \"v\": 2},\n  [3, 4]\n]";
  Value v = ParseOk(text);
  std::reverse(v.items().begin(), v.items().end());
  v.items()[1].Set("v", Value::Number(5));
  EXPECT_EQ(Rewrite(text, v), "[\n  [3, 4],\n  {\"ref\": \"b\", \"v\": 5},\n  {\"ref\": \"a\", \"v\": 1}\n]");
}

TEST(RewritePreservingFormat, InlineArraysGrowAndShrinkOnTheirLine) {
  std::string text = Example("templates/shop.json");
  Value v = ParseOk(text);
  auto& cmd = At(v, {"spec", "spec", "steps", "ref=base", "spec", "steps", "ref=builder", "spec",
                     "buildSettings", "command"});
  cmd.items().push_back(Value::String("--verbose"));
  cmd.items().erase(cmd.items().begin());
  LineDiff d = Diff(text, Rewrite(text, v));
  ASSERT_EQ(d.added.size(), 1u);
  EXPECT_EQ(d.added[0],
            "                  \"buildSettings\": { \"command\": [\"-c\", \"make build\", \"--verbose\"] },\n");
}

TEST(RewritePreservingFormat, ValuesOfANewTypeAreWrittenInPlace) {
  std::string text = "{\n  \"a\": 1,\n  \"b\": { \"c\": 2 },\n  \"d\": []\n}\n";
  Value v = ParseOk(text);
  v.Set("a", Value::Object({{"x", Value::Number(1)}}));
  v.Find("b")->Set("c", Value::Array({Value::Number(1), Value::String("two")}));
  v.Set("d", Value::Array({Value::Object({{"y", Value::Null()}})}));
  EXPECT_EQ(Rewrite(text, v),
            "{\n  \"a\": {\n    \"x\": 1\n  },\n  \"b\": { \"c\": [1, \"two\"] },\n"
            "  \"d\": [\n    {\n      \"y\": null\n    }\n  ]\n}\n");
}

TEST(RewritePreservingFormat, KeyOrderOfTheFileWins) {
  std::string text = Example("templates/shop.json");
  Value v = ParseOk(text);
  std::reverse(v.members().begin(), v.members().end());
  EXPECT_EQ(Rewrite(text, v), text);
}

TEST(RewritePreservingFormat, RefusesWhatItCannotWrite) {
  auto r = RewritePreservingFormat("{\"a\": }", Value::Object());
  ASSERT_FALSE(r.has_value());
  EXPECT_NE(r.error().message.find("line 1"), std::string::npos) << r.error().message;
  r = RewritePreservingFormat("{\"a\": 1}", Value::Object({{"a", Value::Number(std::nan(""))}}));
  ASSERT_FALSE(r.has_value());
  EXPECT_NE(r.error().message.find("cannot represent"), std::string::npos) << r.error().message;
}

// Random edits of the example files, each applied to the output of the
// previous one: every output holds the updated value, rewriting it again
// changes nothing, and an edit of one scalar changes at most one line.
class RandomEditor {
 public:
  explicit RandomEditor(uint32_t seed) : rng_(seed) {}

  // Returns true when the edit changed exactly one scalar in place.
  bool Edit(Value& root) {
    std::vector<Value*> nodes;
    Collect(root, nodes, false);
    Value& target = *nodes[Pick(nodes.size())];
    switch (Pick(7)) {
      case 0:
        if (!target.is_object() && !target.is_array()) {
          target = RandomScalar();
          return true;
        }
        return false;
      case 1:
        if (target.is_object()) target.Set("k" + std::to_string(Pick(1000)), RandomValue(2));
        return false;
      case 2:
        if (target.is_object() && !target.members().empty()) {
          target.members().erase(target.members().begin() + Pick(target.members().size()));
        }
        return false;
      case 3:
        if (target.is_array()) {
          auto& items = target.items();
          Value item = items.empty() ? RandomValue(2) : items[Pick(items.size())];
          if (item.is_object() && item.Find("ref")) item.Set("ref", Value::String("r" + std::to_string(Pick(1 << 20))));
          items.insert(items.begin() + Pick(items.size() + 1), std::move(item));
        }
        return false;
      case 4:
        if (target.is_array() && !target.items().empty()) {
          target.items().erase(target.items().begin() + Pick(target.items().size()));
        }
        return false;
      case 5:
        if (&target != &root) target = RandomValue(2);
        return false;
      default:
        if (target.is_array() && target.items().size() > 1) {
          std::swap(target.items().front(), target.items().back());
        }
        return false;
    }
  }

 private:
  size_t Pick(size_t n) { return std::uniform_int_distribution<size_t>(0, n - 1)(rng_); }

  // A "ref" is an element's identity, not a value edited in place.
  static void Collect(Value& v, std::vector<Value*>& out, bool is_ref) {
    if (!is_ref) out.push_back(&v);
    for (Value& item : v.items()) Collect(item, out, false);
    for (Member& m : v.members()) Collect(m.second, out, m.first == "ref");
  }

  Value RandomScalar() {
    switch (Pick(5)) {
      case 0: return Value::Null();
      case 1: return Value::Bool(Pick(2) == 1);
      case 2: return Value::Number(static_cast<double>(Pick(100000)) / 8);
      case 3: return Value::NumberText("-1.25e2");
      default: {
        static const char* const kPieces[] = {"a", "\"", "\\", "\n", "\t", "\x01", "/", "\xc3\xa9", " "};
        std::string s = "s";
        for (size_t i = Pick(6); i > 0; --i) s += kPieces[Pick(std::size(kPieces))];
        return Value::String(s);
      }
    }
  }

  Value RandomValue(int depth) {
    size_t kind = depth > 0 ? Pick(4) : 0;
    if (kind <= 1) return RandomScalar();
    if (kind == 2) {
      std::vector<Value> items;
      for (size_t i = Pick(3); i > 0; --i) items.push_back(RandomValue(depth - 1));
      return Value::Array(std::move(items));
    }
    Value obj = Value::Object();
    for (size_t i = Pick(3); i > 0; --i) obj.Set("n" + std::to_string(Pick(50)), RandomValue(depth - 1));
    return obj;
  }

  std::mt19937 rng_;
};

TEST(RewritePreservingFormat, RandomEditsOfTheExamplesHoldTheirValue) {
  RandomEditor editor(20240611);
  std::vector<std::string> inputs;
  for (const auto& path : ExampleFiles()) inputs.push_back(ReadFile(path));
  // Documents whose root is an object or an array (json::Parse refuses a
  // root "null" followed by whitespace, which a random root scalar may hit).
  for (const char* style : kStyles) {
    if (style[std::strspn(style, " \n")] == '{' || style[0] == '[') inputs.push_back(style);
  }
  for (const std::string& input : inputs) {
    std::string text = input;
    Value v = ParseOk(text);
    for (int round = 0; round < 150; ++round) {
      bool one_scalar = editor.Edit(v);
      auto out = RewritePreservingFormat(text, v);
      ASSERT_TRUE(out.has_value()) << out.error().message << "\n" << text;
      ASSERT_EQ(ParseOk(*out), v) << *out;
      ASSERT_EQ(Rewrite(*out, v), *out);
      if (one_scalar) {
        LineDiff d = Diff(text, *out);
        EXPECT_LE(d.removed.size(), 1u) << text << "\n---\n" << *out;
        EXPECT_LE(d.added.size(), 1u) << text << "\n---\n" << *out;
      }
      EXPECT_EQ(out->find("\r\n") != std::string::npos, input.find("\r\n") != std::string::npos);
      text = std::move(*out);
    }
  }
}

// Not a pass/fail figure: prints how long an edit of a 1 MiB file takes,
// next to a plain parse and a canonical Serialize of the same file.
TEST(RewritePreservingFormat, OneMebibyteFileTiming) {
  std::string text = "{\n    \"steps\": [\n";
  int n = 0;
  while (text.size() < (size_t{1} << 20) - 400) {
    if (n) text += ",\n";
    text += "        {\n            \"kind\": \"Build\",\n            \"ref\": \"step-" + std::to_string(n) +
            "\",\n            \"spec\": { \"id\": \"builder\", \"branch\": \"main\", \"n\": " +
            std::to_string(n) + " },\n            \"tags\": [\"a\", \"b\"]\n        }";
    ++n;
  }
  text += "\n    ]\n}\n";
  ASSERT_LE(text.size(), size_t{1} << 20);
  Value v = ParseOk(text);
  At(v, {"steps", std::to_string(n / 2), "spec", "branch"}) = Value::String("release");
  auto& steps = At(v, {"steps"}).items();
  steps.erase(steps.begin() + n / 3);

  using Clock = std::chrono::steady_clock;
  // The best of five runs of each, in milliseconds.
  auto best_ms = [](auto&& fn) {
    double best = 1e9;
    for (int i = 0; i < 5; ++i) {
      auto t0 = Clock::now();
      fn();
      best = std::min(best, std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
    }
    return best;
  };
  double parse_ms = best_ms([&] { (void)Parse(text); });
  double serialize_ms = best_ms([&] { (void)Serialize(v); });
  Result<std::string> rewritten;
  double rewrite_ms = best_ms([&] { rewritten = RewritePreservingFormat(text, v); });
  ASSERT_TRUE(rewritten.has_value()) << rewritten.error().message;
  std::string out = *rewritten;
  EXPECT_EQ(ParseOk(out), v);
  LineDiff d = Diff(text, out);
  EXPECT_GT(d.removed.size(), 5u);  // the removed node, then up to the edit
  EXPECT_EQ(d.removed.size() - d.added.size(), 6u);
  std::printf("[ figures  ] %zu bytes, %d nodes: json::Parse %.1f ms, json::Serialize %.1f ms, "
              "RewritePreservingFormat %.1f ms (it parses twice: the input, and its output as a check)\n",
              text.size(), n, parse_ms, serialize_ms, rewrite_ms);
}

}  // namespace
}  // namespace gitopsd::json
