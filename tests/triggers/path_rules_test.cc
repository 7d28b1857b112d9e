// PathRules against Git itself: the table below is what
// `git check-ignore --no-index` (git 2.39.5) answered, so a change in
// how gitopsd reads pathIgnoreRules shows up here as a difference from Git.
#include "daemon/triggers/path_rules.h"

#include <gtest/gtest.h>

#include <chrono>
#include <string>
#include <utility>
#include <vector>

namespace gitopsd::triggers {
namespace {

struct GitCase {
  const char* what;
  std::vector<std::string> rules;
  std::vector<std::pair<std::string, bool>> ignored;  // path -> does Git ignore it
};

// Produced once, by a script that, for each rule set and each path on its
// own, ran `git init`, wrote the rules as .gitignore, created the path as a
// file (its parents as directories), set core.ignorecase=false and ran
// `git check-ignore --no-index -z --stdin`; a path it printed is `true`.
// Hard-coded so that the test needs no git and cannot drift with its version.
const std::vector<GitCase> kAnswersFromGit = {
    {"a name without a slash matches at any depth",
     {"*.log"},
     {{"app.log", true},
      {"logs/app.log", true},
      {"a/b/c/debug.log", true},
      {"app.log.txt", false},
      {"log", false},
      {"logs/readme.md", false}}},
    {"a plain name matches a file or a directory at any depth",
     {"build"},
     {{"build", true},
      {"src/build", true},
      {"build/out.o", true},
      {"src/build/out.o", true},
      {"builds/x", false},
      {"rebuild", false}}},
    {"a leading slash anchors to the root",
     {"/build"},
     {{"build/out.o", true}, {"src/build/out.o", false}, {"build.txt", false}}},
    {"a slash in the middle anchors too",
     {"docs/*.md"},
     {{"docs/a.md", true}, {"docs/sub/b.md", false}, {"src/docs/a.md", false}, {"docs/a.txt", false}}},
    {"a trailing slash matches directories only",
     {"tmp/"},
     {{"tmp/x", true}, {"a/tmp/y", true}, {"tmp.txt", false}, {"a/tmp", false}}},
    {"an anchored directory", {"/vendor/"}, {{"vendor/lib.c", true}, {"src/vendor/lib.c", false}, {"vendor.c", false}}},
    {"'*' stays within one directory", {"src/*"}, {{"src/a.c", true}, {"src/sub/b.c", true}, {"lib/src/a.c", false}}},
    {"'*' in the middle of a segment",
     {"src/*_test.cc"},
     {{"src/a_test.cc", true}, {"src/a/b_test.cc", false}, {"src/_test.cc", true}, {"src/a_test.cc.orig", false}}},
    {"'?' is one character other than '/'",
     {"file?.txt", "a?b"},
     {{"file1.txt", true},
      {"file12.txt", false},
      {"file.txt", false},
      {"dir/fileX.txt", true},
      {"a/b", false},
      {"axb", true}}},
    {"a set, a range, a negated set",
     {"[abc].txt", "v[0-9].md", "x[!0-9].c"},
     {{"a.txt", true},
      {"d.txt", false},
      {"v7.md", true},
      {"vx.md", false},
      {"xa.c", true},
      {"x5.c", false},
      {"sub/b.txt", true}}},
    {"'^' negates a set too, and ']' first is a member",
     {"[^a]1", "[]]2"},
     {{"b1", true}, {"a1", false}, {"]2", true}, {"x2", false}}},
    {"a POSIX class", {"[[:digit:]][[:upper:]]*"}, {{"1A.txt", true}, {"1a.txt", false}, {"A1.txt", false}}},
    {"'*' between slashes is exactly one directory",
     {"a/*/c"},
     {{"a/b/c", true}, {"a/c", false}, {"a/b/d/c", false}, {"a/b/c/d", true}}},
    {"a '-' first or last in a set is a member",
     {"x[a-]", "y[-z]"},
     {{"xa", true}, {"x-", true}, {"xb", false}, {"y-", true}, {"yz", true}, {"yy", false}}},
    {"'**/' before a wildcard name", {"**/*.md"}, {{"x.md", true}, {"a/b/x.md", true}, {"a/x.mdx", false}}},
    {"a leading '**/' matches in every directory",
     {"**/cache"},
     {{"cache", true}, {"a/cache", true}, {"a/b/cache/x", true}, {"cachex", false}}},
    {"'**/' followed by a path",
     {"**/foo/bar"},
     {{"foo/bar", true}, {"x/foo/bar", true}, {"x/y/foo/bar/z", true}, {"foo/x/bar", false}}},
    {"a trailing '/**' matches everything below",
     {"docs/**"},
     {{"docs/a.md", true}, {"docs/x/y/z.md", true}, {"docs", false}, {"x/docs/a.md", false}}},
    {"'/**/' matches zero or more directories",
     {"a/**/b"},
     {{"a/b", true}, {"a/x/b", true}, {"a/x/y/b", true}, {"a/x/y/b/c", true}, {"x/a/b", false}, {"ab", false}}},
    {"'**' not next to a slash is a plain '*'",
     {"a**z"},
     {{"abcz", true}, {"a/z", false}, {"abc/xz", false}, {"x/abcz", true}}},
    {"a '**' that is a rule's first wildcard crosses directories, as in Git",
     {"a**/b", "/x**"},
     {{"ab", true}, {"a/b", true}, {"axx/y/b", true}, {"c/ab", false}, {"xy/z", true}, {"y/x", false}}},
    {"'**' alone matches everything", {"**"}, {{"a", true}, {"a/b/c", true}}},
    {"the last matching rule wins",
     {"*.md", "!README.md"},
     {{"README.md", false}, {"docs/README.md", false}, {"CHANGES.md", true}}},
    {"a later rule can ignore again",
     {"*.md", "!docs/*.md", "docs/secret.md"},
     {{"a.md", true}, {"docs/a.md", false}, {"docs/secret.md", true}}},
    {"nothing below an ignored directory comes back",
     {"docs/", "!docs/keep.md"},
     {{"docs/keep.md", true}, {"docs/other.md", true}}},
    {"ignoring the contents instead lets a file come back",
     {"docs/*", "!docs/keep.md"},
     {{"docs/keep.md", false}, {"docs/other.md", true}, {"docs/sub/x.md", true}}},
    {"re-including a directory re-includes what is below it",
     {"/*", "!/src/"},
     {{"src/main.cc", false}, {"README.md", true}, {"docs/a.md", true}}},
    {"escapes: a literal '#', '!', '*' and '['",
     {"\\#notes", "\\!important", "star\\*", "br\\[1]"},
     {{"#notes", true}, {"!important", true}, {"star*", true}, {"starx", false}, {"br[1]", true}, {"br1", false}}},
    {"comments and blank lines are skipped",
     {"# generated.txt", "", "   ", "real.txt"},
     {{"# generated.txt", false}, {"generated.txt", false}, {"real.txt", true}}},
    {"trailing spaces are dropped unless escaped",
     {"spaced.txt   ", "kept\\ "},
     {{"spaced.txt", true}, {"kept ", true}, {"kept", false}}},
    {"matching is case-sensitive", {"*.MD"}, {{"a.MD", true}, {"a.md", false}}},
    {"a negation that matches nothing earlier changes nothing", {"!*.c", "*.c"}, {{"main.c", true}}},
    {"a dotfile is an ordinary name",
     {".*", "!.gitignore"},
     {{".env", true}, {"config/.secret", true}, {".gitignore", false}, {"env", false}}},
};

TEST(PathRulesTest, AgreesWithGitCheckIgnore) {
  int checked = 0;
  for (const GitCase& c : kAnswersFromGit) {
    Result<PathRules> rules = PathRules::Parse(c.rules);
    ASSERT_TRUE(rules) << c.what << ": " << rules.error().message;
    for (const auto& [path, git_ignores] : c.ignored) {
      EXPECT_EQ(rules->Ignored(path), git_ignores)
          << c.what << ": Git says " << path << (git_ignores ? " is" : " is not") << " ignored";
      ++checked;
    }
  }
  EXPECT_GT(checked, 100);
}

TEST(PathRulesTest, NoRulesIgnoreNothing) {
  EXPECT_FALSE(PathRules().Ignored("anything/at/all.txt"));
  Result<PathRules> only_comments = PathRules::Parse({"# just a note", "", "  "});
  ASSERT_TRUE(only_comments);
  EXPECT_TRUE(only_comments->empty());
  EXPECT_FALSE(only_comments->Ignored("just a note"));
}

TEST(PathRulesTest, CountsRulesButNotCommentsOrBlanks) {
  Result<PathRules> rules = PathRules::Parse({"# docs are not code", "docs/**", "", "!docs/api/**"});
  ASSERT_TRUE(rules);
  EXPECT_EQ(rules->size(), 2u);
}

// Rules Git would accept and then silently never match are refused, with
// the rule's index for the caller to prefix with the field name.
TEST(PathRulesTest, RefusesRulesThatCouldNeverMatchAsMeant) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"src/[abc", "[1]: rule \"src/[abc\": has a '[' with no closing ']'"},
      {"trailing\\", "[1]: rule \"trailing\\\": ends in a lone '\\'"},
      {"[[:letter:]]", "[1]: rule \"[[:letter:]]\": unknown character class [:letter:]"},
      {"!", "[1]: rule \"!\": matches nothing"},
      {"/", "[1]: rule \"/\": matches nothing"},
      {"one\ntwo", "[1]: has a line break"},
  };
  for (const auto& [rule, expected] : cases) {
    Result<PathRules> rules = PathRules::Parse({"docs/**", rule});
    ASSERT_FALSE(rules) << rule << " was accepted";
    EXPECT_TRUE(rules.error().message.starts_with(expected)) << rules.error().message;
  }
}

TEST(PathRulesTest, AClosedSetAndAnEscapedBracketAreFine) {
  EXPECT_TRUE(PathRules::Parse({"src/[abc]", "src/\\[abc", "[[:alpha:]]x"}));
}

// A rule from a repository must not be able to stall the daemon: matching
// is linear in the path for any rule, where naive backtracking would take
// ages on this one.
TEST(PathRulesTest, APathologicalRuleStillMatchesQuickly) {
  Result<PathRules> rules = PathRules::Parse({"*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*b"});
  ASSERT_TRUE(rules);
  const std::string path(3000, 'a');
  const auto start = std::chrono::steady_clock::now();
  EXPECT_FALSE(rules->Ignored(path));
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(2));
}

}  // namespace
}  // namespace gitopsd::triggers
