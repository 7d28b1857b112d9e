// The `${...}` evaluator of the release runner: values, functions, and the
// errors a flow author sees.
#include "daemon/runner/evaluate.h"

#include <gtest/gtest.h>

namespace gitopsd::runner {
namespace {

json::Value Json(std::string_view text) {
  auto v = json::Parse(text);
  EXPECT_TRUE(v.has_value()) << text;
  return v ? *v : json::Value();
}

class EvaluateTest : public ::testing::Test {
 protected:
  EvaluateTest() {
    args_ = Json(R"({"ENV": "prod", "COUNT": "3", "FLAG": "false", "NAME": "My Shop_API"})");
    refs_["app"] = Json(R"({"branch": "feature/login", "sha": "0123abcd", "pullRequestId": 42})");
    refs_["svc"] = Json(R"({"id": "api", "ports": [{"dns": "api.local", "port": 8080}], "ready": true})");
    scope_.args = &args_;
    scope_.refs = &refs_;
    scope_.now = std::chrono::system_clock::time_point(std::chrono::milliseconds(1767225600123));  // 2026-01-01
  }

  json::Value Eval(std::string_view text) {
    auto v = EvaluateString(text, scope_, "spec.x");
    EXPECT_TRUE(v.has_value()) << text << ": " << (v ? "" : v.error().ToString());
    return v ? *v : json::Value();
  }
  std::string Text(std::string_view text) {
    json::Value v = Eval(text);
    return v.is_string() ? v.as_string() : "<" + json::SerializeCompact(v) + ">";
  }
  std::string Compact(std::string_view text) { return json::SerializeCompact(Eval(text)); }
  std::string Error(std::string_view text) {
    auto v = EvaluateString(text, scope_, "spec.steps[2].spec.jobId");
    EXPECT_FALSE(v.has_value()) << text << " evaluated to " << (v ? json::SerializeCompact(*v) : "");
    return v ? "" : v.error().ToString();
  }

  json::Value args_;
  RefMap refs_;
  Scope scope_;
};

TEST_F(EvaluateTest, PlainStringsAndEscapesPassThrough) {
  EXPECT_EQ(Text("no expressions"), "no expressions");
  EXPECT_EQ(Text("literal \\${HOME} stays"), "literal ${HOME} stays");
}

TEST_F(EvaluateTest, ArgsAndRefsInterpolateIntoText) {
  EXPECT_EQ(Text("web-${args.ENV}"), "web-prod");
  EXPECT_EQ(Text("${refs.app.branch}@${refs.app.sha}"), "feature/login@0123abcd");
  EXPECT_EQ(Text("http://${refs.svc.ports.0.dns}:${refs.svc.ports.0.port}/"), "http://api.local:8080/");
  EXPECT_EQ(Text("pr-${refs.app.pullRequestId}"), "pr-42");
}

TEST_F(EvaluateTest, AWholeExpressionKeepsItsJsonType) {
  EXPECT_EQ(Compact("${refs.app.pullRequestId}"), "42");
  EXPECT_EQ(Compact("${refs.svc.ready}"), "true");
  EXPECT_EQ(Compact("${refs.svc.ports.0}"), R"({"dns":"api.local","port":8080})");
  EXPECT_EQ(Compact("${fn.add(args.COUNT, 2)}"), "5");
  EXPECT_EQ(Compact("${fn.eq(args.ENV, 'prod')}"), "true");
  EXPECT_EQ(Compact("ports: ${refs.svc.ports}"), R"("ports: [{\"dns\":\"api.local\",\"port\":8080}]")");
}

TEST_F(EvaluateTest, BooleanFunctions) {
  EXPECT_EQ(Compact("${fn.if(fn.eq(args.ENV, 'prod'), 3, 1)}"), "3");
  EXPECT_EQ(Compact("${fn.if(fn.eq(args.ENV, 'dev'), 3, 1)}"), "1");
  EXPECT_EQ(Compact("${fn.if(false, 'x')}"), R"("")");
  EXPECT_EQ(Compact("${fn.neq(args.ENV, 'dev')}"), "true");
  EXPECT_EQ(Compact("${fn.not(args.FLAG)}"), "true");  // "false" is false
  EXPECT_EQ(Compact("${fn.and(true, args.ENV, refs.svc.ready)}"), "true");
  EXPECT_EQ(Compact("${fn.and(true, '')}"), "false");
  EXPECT_EQ(Compact("${fn.or(false, 0, 'x')}"), "true");
  EXPECT_EQ(Compact("${fn.eq(args.COUNT, 3)}"), "true");  // "3" and 3 compare as numbers
  EXPECT_EQ(Compact("${fn.eq(refs.app.pullRequestId, '42')}"), "true");
}

TEST_F(EvaluateTest, Comparisons) {
  EXPECT_EQ(Compact("${fn.gt(args.COUNT, 2)}"), "true");
  EXPECT_EQ(Compact("${fn.gt(10, 9)}"), "true");  // numbers, not text
  EXPECT_EQ(Compact("${fn.lt(2, 10)}"), "true");
  EXPECT_EQ(Compact("${fn.gte(3, args.COUNT)}"), "true");
  EXPECT_EQ(Compact("${fn.lte(4, 3)}"), "false");
  EXPECT_EQ(Compact("${fn.lt('a', 'b')}"), "true");
}

TEST_F(EvaluateTest, Arithmetic) {
  EXPECT_EQ(Compact("${fn.add(1.5, 2)}"), "3.5");
  EXPECT_EQ(Compact("${fn.subtract(10, args.COUNT)}"), "7");
  EXPECT_EQ(Text("replicas-${fn.add(1, 1)}"), "replicas-2");
}

TEST_F(EvaluateTest, StringFunctions) {
  EXPECT_EQ(Text("${fn.slug(args.NAME)}"), "my-shop-api");
  EXPECT_EQ(Text("${fn.slug(refs.app.branch)}"), "feature-login");
  EXPECT_EQ(Text("${fn.toLower('ABC-d')}"), "abc-d");
  EXPECT_EQ(Text("${fn.toUpper(args.ENV)}"), "PROD");
  EXPECT_EQ(Text("${fn.replace('a-b-c', '-', '_')}"), "a_b-c");
  EXPECT_EQ(Text("${fn.replaceAll('a-b-c', '-', '_')}"), "a_b_c");
  EXPECT_EQ(Text("${fn.toBase64('user:pa ss')}"), "dXNlcjpwYSBzcw==");
  EXPECT_EQ(Text("${fn.fromBase64('dXNlcjpwYSBzcw==')}"), "user:pa ss");
  EXPECT_EQ(Text("${fn.fromBase64(fn.toBase64('round trip!'))}"), "round trip!");
  EXPECT_EQ(Compact("${fn.length('héllo')}"), "5");
  EXPECT_EQ(Compact("${fn.length(refs.svc.ports)}"), "1");
  EXPECT_EQ(Text("${fn.concat('a', 1, true)}"), "a1true");
}

TEST_F(EvaluateTest, SplitJoinAndArrays) {
  EXPECT_EQ(Compact("${fn.split('a,b,c', ',')}"), R"(["a","b","c"])");
  EXPECT_EQ(Compact("${fn.split('a,b,c', ',', 2)}"), R"(["a","b"])");
  EXPECT_EQ(Text("${fn.join(fn.split('a,b,c', ','), '/')}"), "a/b/c");
  EXPECT_EQ(Text("${fn.join(fn.split('x y', ' '))}"), "x,y");
  EXPECT_EQ(Compact("${fn.concat(fn.split('a,b', ','), 'c')}"), R"(["a","b","c"])");
}

TEST_F(EvaluateTest, DateFormats) {
  EXPECT_EQ(Text("${fn.date()}"), "2026-01-01T00:00:00.123Z");
  EXPECT_EQ(Text("${fn.date('YYYYMMDD-HHmm')}"), "20260101-0000");
  EXPECT_EQ(Text("${fn.date('[build-]X')}"), "build-1767225600");
}

TEST_F(EvaluateTest, RandomSecrets) {
  std::string a = Text("${fn.randomSecret(32)}");
  std::string b = Text("${fn.randomSecret(32)}");
  EXPECT_EQ(a.size(), 32u);
  EXPECT_NE(a, b);
  std::string hex = Text("${fn.randomSecret(16, 'hex')}");
  EXPECT_EQ(hex.size(), 16u);
  EXPECT_EQ(hex.find_first_not_of("0123456789abcdef"), std::string::npos);
  EXPECT_NE(Error("${fn.randomSecret(8, 'rot13')}").find("unknown encoding"), std::string::npos);
}

TEST_F(EvaluateTest, UnresolvedInsideAFunctionCountsAsFalse) {
  EXPECT_EQ(Text("${fn.if(refs.build.id, 'built', 'none')}"), "none");
  EXPECT_EQ(Text("${fn.if(args.MISSING, 'set', 'unset')}"), "unset");
  EXPECT_EQ(Compact("${fn.not(refs.svc.nothing)}"), "true");
}

TEST_F(EvaluateTest, UnresolvedAtTheTopLevelIsAnErrorNamingWhereAndWhat) {
  std::string e = Error("job-${args.MISSING}");
  EXPECT_NE(e.find("spec.steps[2].spec.jobId"), std::string::npos) << e;
  EXPECT_NE(e.find("${args.MISSING}"), std::string::npos) << e;
  EXPECT_NE(e.find("not set"), std::string::npos) << e;

  e = Error("${refs.build.id}");
  EXPECT_NE(e.find("no trigger or node has the ref \"build\""), std::string::npos) << e;

  e = Error("${refs.svc.ports.3.dns}");
  EXPECT_NE(e.find("refs.svc.ports has no \"3\""), std::string::npos) << e;

  e = Error("${refs.app.tag}");
  EXPECT_NE(e.find("fields: branch, sha, pullRequestId"), std::string::npos) << e;
}

TEST_F(EvaluateTest, ARefToANodeThatRunsLaterSaysSo) {
  NameSet all = {"migrate"};
  scope_.all_refs = &all;
  std::string e = Error("${refs.migrate.id}");
  EXPECT_NE(e.find("does not run before this node"), std::string::npos) << e;
}

TEST_F(EvaluateTest, BadFunctionArgumentsAreErrors) {
  EXPECT_NE(Error("${fn.add('abc', 1)}").find("fn.add: \"abc\" is not a number"), std::string::npos);
  EXPECT_NE(Error("${fn.fromBase64('***')}").find("is not base64"), std::string::npos);
  EXPECT_NE(Error("${fn.join('abc')}").find("fn.join takes an array"), std::string::npos);
  EXPECT_NE(Error("${fn.nope(1)}").find("unknown function fn.nope"), std::string::npos);
  EXPECT_NE(Error("${args.X").find("unterminated"), std::string::npos);
}

TEST_F(EvaluateTest, PendingRefsArePlaceholdersInADryRun) {
  NameSet pending = {"build"};
  scope_.pending_refs = &pending;
  EXPECT_TRUE(EvaluateString("${refs.build.id}", scope_).has_value());
  EXPECT_TRUE(EvaluateString("img:${fn.slug(refs.build.anything.0.deep)}", scope_).has_value());
  // A function of a placeholder is not computed, so it cannot fail on it.
  EXPECT_TRUE(EvaluateString("${fn.add(refs.build.count, 1)}", scope_).has_value());
  EXPECT_FALSE(EvaluateString("${refs.other.id}", scope_).has_value());
}

TEST_F(EvaluateTest, ResolveWalksObjectsAndArraysAndCollectsEveryError) {
  json::Value spec = Json(R"({
    "id": "${args.ENV}-api",
    "replicas": "${fn.if(fn.eq(args.ENV, 'prod'), 3, 1)}",
    "env": [{"name": "SHA", "value": "${refs.app.sha}"}, {"name": "X", "value": "${args.NOPE}"}],
    "other": "${refs.none.id}",
    "n": 5
  })");
  std::vector<EvalError> errors;
  json::Value out = Resolve(spec, scope_, "spec.steps[0].spec", &errors);
  ASSERT_EQ(errors.size(), 2u);
  EXPECT_EQ(errors[0].where, "spec.steps[0].spec.env[1].value");
  EXPECT_EQ(errors[0].expression, "${args.NOPE}");
  EXPECT_EQ(errors[1].where, "spec.steps[0].spec.other");
  EXPECT_EQ(out.Find("id")->as_string(), "prod-api");
  EXPECT_EQ(out.Find("replicas")->as_double(), 3);
  EXPECT_EQ(out.Find("env")->items()[0].Find("value")->as_string(), "0123abcd");
  EXPECT_EQ(out.Find("n")->as_double(), 5);
}

TEST(Truthiness, FollowsTheDocumentedRules) {
  EXPECT_FALSE(IsTruthy(json::Value()));
  EXPECT_FALSE(IsTruthy(json::Value::Bool(false)));
  EXPECT_FALSE(IsTruthy(json::Value::Number(0)));
  EXPECT_FALSE(IsTruthy(json::Value::String("")));
  EXPECT_FALSE(IsTruthy(json::Value::String("false")));
  EXPECT_FALSE(IsTruthy(json::Value::String("FALSE")));
  EXPECT_FALSE(IsTruthy(json::Value::String("0")));
  EXPECT_TRUE(IsTruthy(json::Value::String("true")));
  EXPECT_TRUE(IsTruthy(json::Value::String("no")));
  EXPECT_TRUE(IsTruthy(json::Value::Number(2)));
  EXPECT_TRUE(IsTruthy(json::Value::Object()));
}

}  // namespace
}  // namespace gitopsd::runner
