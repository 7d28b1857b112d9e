#include "sync/expressions.h"

#include <gtest/gtest.h>

#include <algorithm>

namespace gitopsd::expr {
namespace {

Expr Parses(std::string_view inner) {
  auto e = ParseExpression(inner);
  EXPECT_TRUE(e.has_value()) << inner << ": " << (e ? "" : e.error().message);
  return e ? *e : Expr{};
}

Error Fails(std::string_view inner) {
  auto e = ParseExpression(inner);
  EXPECT_FALSE(e.has_value()) << "expected an error for: " << inner;
  return e ? Error{} : e.error();
}

TEST(FindExpressions, FindsEachSpanInOrder) {
  std::string_view s = "web-${args.name}-${refs.db.id}";
  auto spans = FindExpressions(s);
  ASSERT_EQ(spans.size(), 2u);
  EXPECT_EQ(spans[0].begin, 4u);
  EXPECT_EQ(spans[0].end, 16u);
  EXPECT_EQ(spans[0].inner, "args.name");
  EXPECT_EQ(spans[1].begin, 17u);
  EXPECT_EQ(spans[1].inner, "refs.db.id");
  EXPECT_TRUE(spans[1].terminated);
  EXPECT_EQ(spans[1].end, s.size());
}

TEST(FindExpressions, SkipsEscapesAndBracesInQuotes) {
  EXPECT_TRUE(FindExpressions("echo \\${HOME} and $HOME and {x}").empty());
  EXPECT_FALSE(HasExpressions("\\${HOME}"));
  EXPECT_TRUE(HasExpressions("\\${HOME} ${args.A}"));
  auto spans = FindExpressions("${fn.concat('a}', 'b')}!");
  ASSERT_EQ(spans.size(), 1u);
  EXPECT_EQ(spans[0].inner, "fn.concat('a}', 'b')");
  EXPECT_EQ(spans[0].end, 23u);
}

TEST(FindExpressions, ReportsAnUnterminatedSpan) {
  auto spans = FindExpressions("a ${args.X");
  ASSERT_EQ(spans.size(), 1u);
  EXPECT_FALSE(spans[0].terminated);
  EXPECT_EQ(spans[0].begin, 2u);
  auto parts = ParseInterpolated("a ${args.X");
  ASSERT_FALSE(parts.has_value());
  EXPECT_EQ(parts.error().pos, 2u);
}

TEST(ParseExpression, Paths) {
  Expr a = Parses("args.REGION");
  EXPECT_EQ(a.type, Expr::Type::kPath);
  EXPECT_TRUE(a.is_args());
  EXPECT_EQ(a.path, (std::vector<std::string>{"args", "REGION"}));
  Expr r = Parses(" refs.app-build.ports.0.dns ");
  EXPECT_TRUE(r.is_refs());
  EXPECT_EQ(r.pos, 1u);
  EXPECT_EQ(r.path, (std::vector<std::string>{"refs", "app-build", "ports", "0", "dns"}));
}

TEST(ParseExpression, Literals) {
  Expr s = Parses("'it\\'s'");
  EXPECT_EQ(s.type, Expr::Type::kString);
  EXPECT_EQ(s.text, "it's");
  Expr n = Parses("-12.5");
  EXPECT_EQ(n.type, Expr::Type::kNumber);
  EXPECT_EQ(n.text, "-12.5");
  EXPECT_DOUBLE_EQ(n.number, -12.5);
  Expr t = Parses("true");
  EXPECT_EQ(t.type, Expr::Type::kBool);
  EXPECT_TRUE(t.boolean);
  EXPECT_FALSE(Parses("false").boolean);
  EXPECT_EQ(Parses("''").text, "");
}

TEST(ParseExpression, NestedCalls) {
  Expr e = Parses("fn.if(fn.eq(args.branch, 'main'), 3, fn.add(1, refs.x.count))");
  ASSERT_EQ(e.type, Expr::Type::kCall);
  EXPECT_EQ(e.text, "if");
  ASSERT_EQ(e.args.size(), 3u);
  EXPECT_EQ(e.args[0].text, "eq");
  EXPECT_EQ(e.args[0].args[0].path[1], "branch");
  EXPECT_EQ(e.args[0].args[1].text, "main");
  EXPECT_EQ(e.args[1].number, 3);
  EXPECT_EQ(e.args[2].args[1].path[1], "x");
  EXPECT_EQ(e.args[2].pos, 37u);

  std::vector<std::string> seen;
  ForEachPath(e, [&](const Expr& p) { seen.push_back(p.path[0] + "." + p.path[1]); });
  EXPECT_EQ(seen, (std::vector<std::string>{"args.branch", "refs.x"}));
  EXPECT_EQ(Parses("fn.date()").args.size(), 0u);
  EXPECT_EQ(Parses("fn.and(true, false, true, true)").args.size(), 4u);
}

TEST(ParseExpression, RejectsUnknownFunctionsAndWrongArity) {
  EXPECT_EQ(Fails("fn.slugify(args.X)").message, "unknown function fn.slugify");
  EXPECT_EQ(Fails("fn.slugify(args.X)").pos, 3u);
  EXPECT_EQ(Fails("fn.slug()").message, "fn.slug takes 1 argument, not 0");
  EXPECT_EQ(Fails("fn.if(true)").message, "fn.if takes 2 to 3 arguments, not 1");
  EXPECT_EQ(Fails("fn.or(true)").message, "fn.or takes at least 2 arguments, not 1");
  EXPECT_EQ(Fails("fn.eq(1, fn.not())").pos, 9u);  // the inner call
  EXPECT_NE(Fails("slug(args.X)").message.find("fn.slug(...)"), std::string::npos);
}

TEST(ParseExpression, RejectsSyntaxErrors) {
  EXPECT_NE(Fails("").message.find("empty"), std::string::npos);
  EXPECT_EQ(Fails("fn.eq(1, 2").message, "missing ')' to close fn.eq(");
  EXPECT_EQ(Fails("fn.eq(1 2)").pos, 8u);
  EXPECT_EQ(Fails("fn.eq(1, 'x)").message, "unterminated string literal (missing ')");
  EXPECT_EQ(Fails("args.A extra").pos, 7u);
  EXPECT_NE(Fails("\"x\"").message.find("single quotes"), std::string::npos);
  EXPECT_EQ(Fails("refs.a..b").pos, 7u);
  Fails("args");
  Fails("args.A.B");
  Fails("refs.");
  Fails("1.");
  Fails("12ab");
  Fails("fn.eq(1,)");
  Fails("foo.bar");
  EXPECT_NE(Fails("secrets.DB_PASSWORD").message.find("not supported"), std::string::npos);
  EXPECT_NE(Fails("template.args.X").message.find("not supported"), std::string::npos);
}

TEST(ParseExpression, BoundsNesting) {
  std::string deep;
  for (int i = 0; i < 200; ++i) deep += "fn.not(";
  deep += "true";
  for (int i = 0; i < 200; ++i) deep += ")";
  EXPECT_NE(Fails(deep).message.find("too deeply"), std::string::npos);
}

TEST(ParseInterpolated, SplitsLiteralsAndExpressionsWithPositions) {
  auto parts = ParseInterpolated("db-${fn.toLower(args.name)}.\\${x}");
  ASSERT_TRUE(parts.has_value()) << parts.error().message;
  ASSERT_EQ(parts->size(), 3u);
  EXPECT_EQ((*parts)[0].literal, "db-");
  ASSERT_TRUE((*parts)[1].is_expr);
  EXPECT_EQ((*parts)[1].expr.pos, 5u);
  EXPECT_EQ((*parts)[1].expr.args[0].pos, 16u);
  EXPECT_EQ((*parts)[2].literal, ".${x}");

  auto bad = ParseInterpolated("ok ${args.A} then ${fn.nope()}");
  ASSERT_FALSE(bad.has_value());
  EXPECT_EQ(bad.error().pos, 23u);

  auto plain = ParseInterpolated("no expressions");
  ASSERT_TRUE(plain.has_value());
  ASSERT_EQ(plain->size(), 1u);
  EXPECT_FALSE((*plain)[0].is_expr);
}

TEST(ExprFunctions, TableIsSortedAndHasTheDocumentedSubset) {
  auto fns = Functions();
  EXPECT_TRUE(std::is_sorted(fns.begin(), fns.end(),
                             [](const Function& a, const Function& b) { return a.name < b.name; }));
  for (std::string_view name : {"slug", "eq", "neq", "if", "not", "and", "or", "toLower", "toUpper", "replace",
                                "replaceAll", "randomSecret", "toBase64", "fromBase64", "length", "split", "join",
                                "gt", "lt", "gte", "lte", "add", "subtract", "concat", "date"}) {
    EXPECT_NE(FindFunction(name), nullptr) << name;
  }
  EXPECT_EQ(FindFunction("fetchSecret"), nullptr);
  EXPECT_EQ(FindFunction("randomSecret")->max_args, 2);
}

}  // namespace
}  // namespace gitopsd::expr
