// When Git and the API both changed an object, disjoint changes merge and
// overlapping ones are reported at the place they overlap.
#include "sync/merge.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>

namespace gitopsd::json {
namespace {

Value Doc(const std::string& relative) {
  std::ifstream in(std::filesystem::path(GITOPSD_SOURCE_DIR) / "examples/shop/.gitops" / relative);
  std::stringstream s;
  s << in.rdbuf();
  auto v = Parse(s.str());
  EXPECT_TRUE(v.has_value()) << relative;
  return v ? *v : Value();
}

Value P(std::string_view text) {
  auto v = Parse(text);
  EXPECT_TRUE(v.has_value()) << text;
  return v ? *v : Value();
}

// Walks by keys, "ref=x" for ref-matched elements, or an index.
Value& At(Value& root, std::initializer_list<std::string_view> path) {
  Value* v = &root;
  for (std::string_view step : path) {
    if (v->is_array() && step.starts_with("ref=")) {
      auto it = std::find_if(v->items().begin(), v->items().end(), [&](const Value& item) {
        const Value* ref = item.Find("ref");
        return ref && ref->as_string() == step.substr(4);
      });
      EXPECT_NE(it, v->items().end()) << step;
      v = &*it;
    } else if (v->is_array()) {
      v = &v->items().at(std::stoul(std::string(step)));
    } else {
      v = v->Find(step);
      EXPECT_NE(v, nullptr) << step;
    }
  }
  return *v;
}

std::vector<std::string> Pointers(const MergeResult& r) {
  std::vector<std::string> out;
  for (const auto& c : r.conflicts) out.push_back(c.pointer);
  return out;
}

std::vector<std::string> Refs(const Value& array) {
  std::vector<std::string> out;
  for (const Value& item : array.items()) out.push_back(item.Find("ref")->as_string());
  return out;
}

// Merges both ways round; cleanliness and conflict places must not depend
// on which side is "ours".
MergeResult MergeBothWays(const Value& base, const Value& ours, const Value& theirs) {
  MergeResult r = Merge3(base, ours, theirs);
  MergeResult swapped = Merge3(base, theirs, ours);
  EXPECT_EQ(r.clean(), swapped.clean());
  auto a = Pointers(r), b = Pointers(swapped);
  std::sort(a.begin(), a.end());
  std::sort(b.begin(), b.end());
  EXPECT_EQ(a, b);
  return r;
}

// production.json with a ref on its last step (a Message without one), so
// that every step can be matched by ref.
Value Production() {
  Value v = Doc("release-flows/production.json");
  At(v, {"spec", "spec", "steps", "5"}).Set("ref", Value::String("notify"));
  return v;
}

TEST(Merge3, EditsOfDifferentKeysMerge) {
  Value base = Production();
  Value ours = base, theirs = base;
  ours.Set("description", Value::String("ours"));
  At(theirs, {"options"}).Set("concurrencyPolicy", Value::String("cancel"));
  MergeResult r = MergeBothWays(base, ours, theirs);
  ASSERT_TRUE(r.clean());
  EXPECT_EQ(r.merged.Find("description")->as_string(), "ours");
  EXPECT_EQ(At(r.merged, {"options", "concurrencyPolicy"}).as_string(), "cancel");
}

TEST(Merge3, EditsOfDifferentNodesMatchedByRefMerge) {
  Value base = Production();
  Value ours = base, theirs = base;
  At(ours, {"spec", "spec", "steps", "ref=migrate", "spec"}).Set("jobId", Value::String("m2"));
  At(theirs, {"spec", "spec", "steps", "ref=deploy"}).Set("timeoutDuration", Value::Number(60));
  MergeResult r = MergeBothWays(base, ours, theirs);
  ASSERT_TRUE(r.clean()) << Pointers(r)[0];
  EXPECT_EQ(At(r.merged, {"spec", "spec", "steps", "ref=migrate", "spec", "jobId"}).as_string(), "m2");
  EXPECT_EQ(At(r.merged, {"spec", "spec", "steps", "ref=deploy", "timeoutDuration"}), Value::Number(60));
}

TEST(Merge3, ANodeAddedOnOneSideLandsAfterItsPredecessor) {
  Value base = Doc("templates/shop.json");
  Value ours = base, theirs = base;
  auto& steps = At(ours, {"spec", "spec", "steps"}).items();
  steps.insert(steps.begin() + 3,
               P(R"({"kind": "JobRun", "ref": "run-migrate", "spec": {"jobId": "shop-migrate"}})"));
  At(theirs, {"spec", "spec", "steps", "ref=web", "spec", "deployment"}).Set("instances", Value::Number(3));
  // Theirs also adds a node at the front: it keeps its place.
  auto& their_steps = At(theirs, {"spec", "spec", "steps"}).items();
  their_steps.insert(their_steps.begin(), P(R"({"kind": "Message", "ref": "hello", "spec": {}})"));
  MergeResult r = MergeBothWays(base, ours, theirs);
  ASSERT_TRUE(r.clean());
  EXPECT_EQ(Refs(At(r.merged, {"spec", "spec", "steps"})),
            (std::vector<std::string>{"hello", "base", "first-build", "migrate", "run-migrate", "web"}));
  EXPECT_EQ(At(r.merged, {"spec", "spec", "steps", "ref=web", "spec", "deployment", "instances"}),
            Value::Number(3));
}

TEST(Merge3, AKeyDeletedOnOneSideAndUntouchedOnTheOtherIsDeleted) {
  Value base = Doc("templates/shop.json");
  Value ours = base, theirs = base;
  At(ours, {"spec", "spec", "steps", "ref=migrate", "spec"}).Erase("backoffLimit");
  At(theirs, {"spec", "spec", "steps", "ref=migrate", "spec"}).Set("activeDeadlineSeconds", Value::Number(60));
  MergeResult r = MergeBothWays(base, ours, theirs);
  ASSERT_TRUE(r.clean());
  const Value& spec = At(r.merged, {"spec", "spec", "steps", "ref=migrate", "spec"});
  EXPECT_EQ(spec.Find("backoffLimit"), nullptr);
  EXPECT_EQ(*spec.Find("activeDeadlineSeconds"), Value::Number(60));
}

TEST(Merge3, OverlappingEditsConflictWhereTheyOverlapAndTheirsStays) {
  Value base = Production();
  Value ours = base, theirs = base;
  At(ours, {"spec", "spec", "steps", "ref=migrate", "spec"}).Set("jobId", Value::String("ours"));
  At(theirs, {"spec", "spec", "steps", "ref=migrate", "spec"}).Set("jobId", Value::String("theirs"));
  ours.Set("description", Value::String("only ours changed this"));
  MergeResult r = MergeBothWays(base, ours, theirs);
  EXPECT_EQ(Pointers(r), std::vector<std::string>{"/spec/spec/steps/ref=migrate/spec/jobId"});
  EXPECT_EQ(At(r.merged, {"spec", "spec", "steps", "ref=migrate", "spec", "jobId"}).as_string(), "theirs");
  EXPECT_EQ(r.merged.Find("description")->as_string(), "only ours changed this");
}

TEST(Merge3, IdenticalEditsOnBothSidesAreNotAConflict) {
  Value base = Production();
  Value ours = base, theirs = base;
  for (Value* side : {&ours, &theirs}) {
    At(*side, {"spec", "spec", "steps", "ref=deploy"}).Set("timeoutDuration", Value::Number(60));
    side->Erase("arguments");
    side->Set("newKey", P(R"({"a": [1, 2]})"));
  }
  At(theirs, {"spec", "spec", "steps", "ref=deploy", "timeoutDuration"}) = Value::NumberText("60.0");
  MergeResult r = MergeBothWays(base, ours, theirs);
  ASSERT_TRUE(r.clean());
  EXPECT_EQ(r.merged, theirs);
}

TEST(Merge3, NestedWorkflowsMergeByRefAtEveryLevel) {
  Value base = Doc("templates/shop.json");
  Value ours = base, theirs = base;
  At(ours, {"spec", "spec", "steps", "ref=base", "spec", "steps", "ref=db", "spec"})
      .Set("version", Value::String("3.45"));
  At(theirs, {"spec", "spec", "steps", "ref=base", "spec", "steps", "ref=builder", "spec"})
      .Set("name", Value::String("builder-2"));
  MergeResult r = MergeBothWays(base, ours, theirs);
  ASSERT_TRUE(r.clean());
  EXPECT_EQ(At(r.merged, {"spec", "spec", "steps", "ref=base", "spec", "steps", "ref=db", "spec", "version"})
                .as_string(),
            "3.45");
  EXPECT_EQ(At(r.merged, {"spec", "spec", "steps", "ref=base", "spec", "steps", "ref=builder", "spec", "name"})
                .as_string(),
            "builder-2");

  At(theirs, {"spec", "spec", "steps", "ref=base", "spec", "steps", "ref=db", "spec"})
      .Set("version", Value::String("3.46"));
  r = MergeBothWays(base, ours, theirs);
  EXPECT_EQ(Pointers(r),
            std::vector<std::string>{"/spec/spec/steps/ref=base/spec/steps/ref=db/spec/version"});
}

TEST(Merge3, ANodeDeletedOnOneSide) {
  Value base = Production();
  Value ours = base, theirs = base;
  auto& steps = At(ours, {"spec", "spec", "steps"}).items();
  steps.erase(steps.begin() + 1);  // pre-release-backup
  At(theirs, {"spec", "spec", "steps", "ref=build"}).Set("condition", Value::String("running"));
  MergeResult r = MergeBothWays(base, ours, theirs);
  ASSERT_TRUE(r.clean());
  EXPECT_EQ(Refs(At(r.merged, {"spec", "spec", "steps"})),
            (std::vector<std::string>{"build", "ship-migrate", "migrate", "deploy", "notify"}));

  // Deleted on one side, changed on the other: a conflict at the node.
  At(theirs, {"spec", "spec", "steps", "ref=pre-release-backup"}).Set("condition", Value::String("running"));
  r = MergeBothWays(base, ours, theirs);
  EXPECT_EQ(Pointers(r), std::vector<std::string>{"/spec/spec/steps/ref=pre-release-backup"});
  EXPECT_EQ(Refs(At(r.merged, {"spec", "spec", "steps"})).size(), 6u);  // theirs' node stays
  r = Merge3(base, theirs, ours);
  EXPECT_EQ(Refs(At(r.merged, {"spec", "spec", "steps"})).size(), 5u);  // theirs deleted it
}

TEST(Merge3, ArraysWithoutRefsAreAtomic) {
  Value base = P(R"({"tags": ["a", "b"], "ports": [{"name": "http"}, {"name": "grpc"}], "n": [1]})");
  Value ours = base, theirs = base;
  ours.Find("tags")->items().push_back(Value::String("c"));
  theirs.Find("tags")->items().push_back(Value::String("d"));
  At(ours, {"ports", "0"}).Set("port", Value::Number(80));
  At(theirs, {"ports", "1"}).Set("port", Value::Number(81));
  ours.Find("n")->items().push_back(Value::Number(2));  // one side only: taken
  MergeResult r = MergeBothWays(base, ours, theirs);
  EXPECT_EQ(Pointers(r), (std::vector<std::string>{"/tags", "/ports"}));
  EXPECT_EQ(*r.merged.Find("tags"), *theirs.Find("tags"));
  EXPECT_EQ(*r.merged.Find("n"), *ours.Find("n"));
}

TEST(Merge3, StepsWithARefLessNodeAreOneValue) {
  // pull-requests.json has a step without a ref, so its steps cannot be
  // matched by ref: edits of two different nodes overlap at the array.
  Value base = Doc("previews/pull-requests.json");
  Value ours = base, theirs = base;
  At(ours, {"spec", "spec", "steps", "ref=migrate", "spec"}).Set("name", Value::String("m"));
  At(theirs, {"spec", "spec", "steps", "ref=web", "spec"}).Set("name", Value::String("w"));
  MergeResult r = MergeBothWays(base, ours, theirs);
  EXPECT_EQ(Pointers(r), std::vector<std::string>{"/spec/spec/steps"});
}

TEST(Merge3, DeletedAgainstChangedKeyConflicts) {
  Value base = P(R"({"a": {"x": 1}, "b": 2})");
  Value ours = P(R"({"a": {"x": 2}, "b": 2})");
  Value theirs = P(R"({"b": 2})");
  MergeResult r = MergeBothWays(base, ours, theirs);
  EXPECT_EQ(Pointers(r), std::vector<std::string>{"/a"});
  EXPECT_EQ(r.merged, theirs);
  r = Merge3(base, theirs, ours);
  EXPECT_EQ(r.merged, ours);
}

TEST(Merge3, KeysBothSidesAddedMergeLikeAnyObject) {
  Value base = P(R"({"a": 1})");
  Value ours = P(R"({"a": 1, "new": {"x": 1, "same": true}, "o": 1})");
  Value theirs = P(R"({"t": 1, "a": 1, "new": {"y": 2, "same": true}})");
  MergeResult r = MergeBothWays(base, ours, theirs);
  ASSERT_TRUE(r.clean());
  // Theirs' order, then what only ours added.
  EXPECT_EQ(SerializeCompact(r.merged), R"({"t":1,"a":1,"new":{"y":2,"same":true,"x":1},"o":1})");
  theirs.Find("new")->Set("x", Value::Number(5));
  EXPECT_EQ(Pointers(MergeBothWays(base, ours, theirs)), std::vector<std::string>{"/new/x"});
}

TEST(Merge3, ScalarsCompareAsJsonValues) {
  Value base = P(R"({"n": 1, "s": "x", "b": true, "z": null})");
  Value ours = P(R"({"n": 1.0, "s": "y", "b": true, "z": null})");
  Value theirs = P(R"({"n": 2, "s": "x", "b": false, "z": 0})");
  MergeResult r = MergeBothWays(base, ours, theirs);
  ASSERT_TRUE(r.clean());
  EXPECT_EQ(r.merged, P(R"({"n": 2, "s": "y", "b": false, "z": 0})"));
  r = MergeBothWays(P("1"), P("2"), P("3"));
  EXPECT_EQ(Pointers(r), std::vector<std::string>{""});
  EXPECT_EQ(r.merged, P("3"));
}

TEST(Merge3, PointersEscapeKeys) {
  Value base = P(R"({"a/b": {"~c": 1}})");
  MergeResult r = MergeBothWays(base, P(R"({"a/b": {"~c": 2}})"), P(R"({"a/b": {"~c": 3}})"));
  EXPECT_EQ(Pointers(r), std::vector<std::string>{"/a~1b/~0c"});
  base = P(R"([{"ref": "x/y"}])");
  r = MergeBothWays(base, P(R"([{"ref": "x/y", "v": 1}])"), P(R"([{"ref": "x/y", "v": 2}])"));
  EXPECT_EQ(Pointers(r), std::vector<std::string>{"/ref=x~1y/v"});
}

TEST(Merge3, OrderOfNodes) {
  Value base = P(R"([{"ref": "a"}, {"ref": "b"}, {"ref": "c"}])");
  // Both sides add after the same node: ours' right after it, then theirs'.
  MergeResult r = MergeBothWays(base, P(R"([{"ref": "a"}, {"ref": "o"}, {"ref": "b"}, {"ref": "c"}])"),
                                P(R"([{"ref": "a"}, {"ref": "t"}, {"ref": "b"}, {"ref": "c"}])"));
  ASSERT_TRUE(r.clean());
  EXPECT_EQ(Refs(r.merged), (std::vector<std::string>{"a", "o", "t", "b", "c"}));
  // Only ours reordered: ours' order, with theirs' edit.
  r = MergeBothWays(base, P(R"([{"ref": "c"}, {"ref": "a"}, {"ref": "b"}])"),
                    P(R"([{"ref": "a"}, {"ref": "b", "v": 1}, {"ref": "c"}])"));
  ASSERT_TRUE(r.clean());
  EXPECT_EQ(SerializeCompact(r.merged), R"([{"ref":"c"},{"ref":"a"},{"ref":"b","v":1}])");
  // Both reordered differently: a conflict at the array.
  r = MergeBothWays(base, P(R"([{"ref": "c"}, {"ref": "a"}, {"ref": "b"}])"),
                    P(R"([{"ref": "b"}, {"ref": "a"}, {"ref": "c", "v": 1}])"));
  EXPECT_EQ(Pointers(r), std::vector<std::string>{""});
  EXPECT_EQ(Refs(r.merged), (std::vector<std::string>{"b", "a", "c"}));
  // Duplicate refs make the array one value.
  r = MergeBothWays(P(R"([{"ref": "a"}, {"ref": "a"}])"), P(R"([{"ref": "a", "v": 1}, {"ref": "a"}])"),
                    P(R"([{"ref": "a"}, {"ref": "a", "v": 2}])"));
  EXPECT_EQ(Pointers(r), std::vector<std::string>{""});
}

// Random scalar edits of the examples on two sides: the merge is clean
// exactly when no path was edited differently on both sides, and a clean
// merge holds every edit.
TEST(Merge3, RandomScalarEditsMergeExactlyWhenDisjoint) {
  std::mt19937 rng(7);
  auto pick = [&](size_t n) { return std::uniform_int_distribution<size_t>(0, n - 1)(rng); };
  for (const char* file : {"templates/shop.json", "release-flows/production.json", "previews/pull-requests.json"}) {
    Value base = Doc(file);
    // The scalars not under "ref" and the paths to them.
    std::vector<std::vector<std::string>> paths;
    std::vector<std::string> path;
    auto collect = [&](auto& self, const Value& v) -> void {
      if (v.is_object()) {
        for (const Member& m : v.members()) {
          if (m.first == "ref") continue;
          path.push_back(m.first);
          self(self, m.second);
          path.pop_back();
        }
      } else if (v.is_array()) {
        for (size_t i = 0; i < v.items().size(); ++i) {
          const Value* ref = v.items()[i].is_object() ? v.items()[i].Find("ref") : nullptr;
          path.push_back(ref ? "ref=" + ref->as_string() : std::to_string(i));
          self(self, v.items()[i]);
          path.pop_back();
        }
      } else {
        paths.push_back(path);
      }
    };
    collect(collect, base);
    auto at = [](Value& root, const std::vector<std::string>& p) -> Value& {
      Value* v = &root;
      for (const std::string& step : p) {
        if (v->is_array() && step.starts_with("ref=")) {
          for (Value& item : v->items()) {
            const Value* ref = item.Find("ref");
            if (ref && ref->as_string() == step.substr(4)) v = &item;
          }
        } else if (v->is_array()) {
          v = &v->items()[std::stoul(step)];
        } else {
          v = v->Find(step);
        }
      }
      return *v;
    };
    for (int round = 0; round < 200; ++round) {
      Value ours = base, theirs = base;
      auto a = paths[pick(paths.size())], b = paths[pick(paths.size())];
      at(ours, a) = Value::String("ours");
      at(theirs, b) = Value::String(pick(4) == 0 ? "ours" : "theirs");
      MergeResult r = MergeBothWays(base, ours, theirs);
      bool overlap = a == b && !(at(ours, a) == at(theirs, b));
      // A path inside a ref-less array of objects overlaps at the array.
      auto array_prefix = [&](const std::vector<std::string>& p) {
        Value* v = &base;
        std::vector<std::string> prefix;
        for (const std::string& step : p) {
          if (v->is_array()) {
            bool keyed = std::all_of(v->items().begin(), v->items().end(), [](const Value& item) {
              const Value* ref = item.is_object() ? item.Find("ref") : nullptr;
              return ref && ref->is_string();
            });
            if (!keyed) return prefix;
          }
          prefix.push_back(step);
          v = &at(base, prefix);
        }
        return prefix;
      };
      auto pa = array_prefix(a), pb = array_prefix(b);
      if (pa.size() < a.size() && pa == pb && a != b) overlap = true;
      EXPECT_EQ(r.clean(), !overlap) << file << " round " << round;
      if (r.clean()) {
        EXPECT_EQ(at(r.merged, a), at(ours, a));
        EXPECT_EQ(at(r.merged, b), at(theirs, b));
      }
    }
  }
}

}  // namespace
}  // namespace gitopsd::json
