// Git triggers as a flow author writes them and as the daemon meets pushes
// and pull requests: parsing both trigger forms, branch patterns, skip
// flags, drafts, path rules, and the reason each decision gives.
#include "daemon/triggers/rules.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "sync/json.h"

namespace gitopsd::triggers {
namespace {

using Strings = std::vector<std::string>;

Result<std::vector<GitTrigger>> ParseText(const std::string& document) {
  auto doc = json::Parse(document);
  if (!doc) return Fail("the test's JSON does not parse: " + doc.error().message);
  return ParseTriggers(*doc);
}

// The one trigger of {"triggers": [trigger_json]}.
GitTrigger Trigger(const std::string& trigger_json) {
  auto triggers = ParseText(R"({"triggers": [)" + trigger_json + "]}");
  if (!triggers) ADD_FAILURE() << triggers.error().message;
  if (!triggers || triggers->size() != 1) return {};
  return triggers->front();
}

// The error a list of triggers is refused with ("" when it is accepted).
std::string ErrorOf(const std::string& triggers_json) {
  auto triggers = ParseText(R"({"triggers": )" + triggers_json + "}");
  return triggers ? "" : triggers.error().message;
}

PushEvent Push(std::string branch, std::vector<Commit> commits, Strings paths = {"src/main.cc"}) {
  return PushEvent{std::move(branch), std::move(commits), std::move(paths)};
}

PullRequestEvent PullRequest(std::string from, bool draft, std::string head_message = "Add feature",
                             Strings paths = {"src/main.cc"}) {
  return PullRequestEvent{std::move(from), draft, Commit{"f00dfeed1234567890", std::move(head_message)},
                          std::move(paths)};
}

const Commit kPlain{"1111111111111111", "Fix the login form"};

// ---- Parsing the pipeline form

TEST(ParseTriggersTest, ReadsEveryFieldOfThePipelineForm) {
  GitTrigger t = Trigger(R"({
      "ref": "app", "type": "git", "vcsService": "github", "id": "t1", "accountLogin": "acme",
      "repoUrl": "https://github.com/acme/shop",
      "branchRestrictions": ["main", "release/*"], "prRestrictions": ["feature/*"],
      "pathIgnoreRules": ["docs/**", "*.md"], "isAllowList": false,
      "ciIgnoreFlagsEnabled": true, "ciIgnoreFlags": ["[skip deploy]"],
      "ignoreDrafts": true, "manualOnly": false})");
  EXPECT_EQ(t.ref, "app");
  EXPECT_EQ(t.repo_url, "https://github.com/acme/shop");
  EXPECT_EQ(t.repository, "");
  EXPECT_EQ(t.branch_patterns, (Strings{"main", "release/*"}));
  EXPECT_EQ(t.pr_patterns, (Strings{"feature/*"}));
  EXPECT_EQ(t.path_rules.size(), 2u);
  EXPECT_TRUE(t.path_rules.Ignored("docs/guide.txt"));
  EXPECT_FALSE(t.paths_allow_list);
  EXPECT_TRUE(t.skip_flags_enabled);
  EXPECT_EQ(t.skip_flags, (Strings{"[skip deploy]"}));
  EXPECT_TRUE(t.ignore_drafts);
  EXPECT_FALSE(t.manual_only);
}

TEST(ParseTriggersTest, AnObjectWithoutTriggersHasNone) {
  auto triggers = ParseText(R"({"apiVersion": "v1.2"})");
  ASSERT_TRUE(triggers);
  EXPECT_TRUE(triggers->empty());
}

TEST(ParseTriggersTest, ARepositoryNameStandsInForRepoUrl) {
  GitTrigger t = Trigger(R"({"ref": "app", "repository": "shop", "branchRestrictions": ["main"]})");
  EXPECT_EQ(t.repository, "shop");
  EXPECT_EQ(t.repo_url, "");
}

TEST(ParseTriggersTest, EnabledSkipFlagsWithNoListUseTheDefaults) {
  GitTrigger t = Trigger(R"({"ref": "app", "repository": "shop", "ciIgnoreFlagsEnabled": true})");
  EXPECT_TRUE(t.skip_flags_enabled);
  EXPECT_EQ(t.skip_flags, Strings(kDefaultSkipFlags.begin(), kDefaultSkipFlags.end()));
  EXPECT_EQ(t.skip_flags.front(), "[skip ci]");
}

TEST(ParseTriggersTest, ListedFlagsAreOnUnlessExplicitlyDisabled) {
  EXPECT_TRUE(Trigger(R"({"ref": "a", "repository": "shop", "ciIgnoreFlags": ["[wip]"]})").skip_flags_enabled);
  EXPECT_FALSE(Trigger(R"({"ref": "a", "repository": "shop"})").skip_flags_enabled);
  GitTrigger off = Trigger(R"({"ref": "a", "repository": "shop", "ciIgnoreFlagsEnabled": false,
                               "ciIgnoreFlags": ["[wip]"]})");
  EXPECT_FALSE(off.skip_flags_enabled);
  EXPECT_EQ(SkipFlagIn(off, "[wip] half done"), "");
}

// ---- Parsing the workflow form

TEST(ParseTriggersTest, AVcsPushTriggerBecomesBranchPatterns) {
  GitTrigger t = Trigger(R"({"kind": "vcs-push", "ref": "app", "id": "x",
      "spec": {"vcs": {"vcsService": "github", "repoUrl": "https://github.com/acme/shop"},
               "branchNamePatterns": ["main"],
               "commitMessageFlags": {"enabled": true, "flags": []},
               "filePaths": {"enabled": true, "allowList": true, "paths": ["src/**"]}}})");
  EXPECT_EQ(t.repo_url, "https://github.com/acme/shop");
  EXPECT_EQ(t.branch_patterns, (Strings{"main"}));
  EXPECT_TRUE(t.pr_patterns.empty());
  EXPECT_EQ(t.skip_flags.size(), kDefaultSkipFlags.size());
  EXPECT_TRUE(t.paths_allow_list);
  EXPECT_TRUE(t.path_rules.Ignored("src/app.cc"));  // "matched", for an allow list
}

TEST(ParseTriggersTest, AVcsPrTriggerBecomesPullRequestPatterns) {
  GitTrigger t = Trigger(R"({"kind": "vcs-pr", "ref": "app",
      "spec": {"vcs": {"repoUrl": "https://github.com/acme/shop"},
               "branchNamePatterns": ["feature/*", "fix/*"],
               "commitMessageFlags": {"enabled": true, "flags": ["[skip preview]"]},
               "filePaths": {"enabled": false, "allowList": false, "paths": ["docs/**"]},
               "ignoreDrafts": true}})");
  EXPECT_TRUE(t.branch_patterns.empty());
  EXPECT_EQ(t.pr_patterns, (Strings{"feature/*", "fix/*"}));
  EXPECT_EQ(t.skip_flags, (Strings{"[skip preview]"}));
  EXPECT_TRUE(t.path_rules.empty()) << "filePaths.enabled is false";
  EXPECT_TRUE(t.ignore_drafts);
}

// ---- Parse errors name the trigger and the field

TEST(ParseTriggersTest, ErrorsNameTheTriggerAndTheField) {
  const std::string ok = R"({"ref": "ok", "repository": "shop"})";
  EXPECT_EQ(ErrorOf("[" + ok + R"(, {"ref": "b", "repository": "shop", "branchRestrictions": ["feat ure"]}])"),
            "triggers[1].branchRestrictions[0]: \"feat ure\" has a space, which branch patterns do not allow "
            "(allowed: letters, digits and / * % - . # _ ! ' ( ) ; , & = +)");
  EXPECT_EQ(ErrorOf(R"([{"ref": "b", "repository": "shop", "prRestrictions": ["main", 7]}])"),
            "triggers[0].prRestrictions[1]: expected a string, not number");
  EXPECT_EQ(ErrorOf(R"([{"ref": "b", "repository": "shop", "isAllowList": "yes"}])"),
            "triggers[0].isAllowList: expected true or false, not string");
  EXPECT_EQ(ErrorOf(R"([{"ref": "b", "repository": "shop", "pathIgnoreRules": ["docs/**", "src/[ab"]}])"),
            "triggers[0].pathIgnoreRules[1]: rule \"src/[ab\": has a '[' with no closing ']' "
            "(write \"\\[\" for a literal '[')");
  EXPECT_EQ(ErrorOf(R"([{"ref": "b", "repository": "shop", "ciIgnoreFlags": [""]}])"),
            "triggers[0].ciIgnoreFlags[0]: is empty");
}

TEST(ParseTriggersTest, ATypoInAKeyIsAnErrorNotASilentDefault) {
  std::string error = ErrorOf(R"([{"ref": "b", "repository": "shop", "branchRestriction": ["main"]}])");
  EXPECT_TRUE(error.starts_with("triggers[0].branchRestriction: unknown key (known here: ref, type,")) << error;
}

TEST(ParseTriggersTest, EveryTriggerNeedsARefAndARepository) {
  EXPECT_TRUE(ErrorOf(R"([{"repository": "shop"}])").starts_with("triggers[0].ref: missing"));
  EXPECT_TRUE(ErrorOf(R"([{"ref": "app"}])").starts_with("triggers[0]: names no repository"));
  EXPECT_TRUE(
      ErrorOf(R"([{"ref": "my app", "repository": "shop"}])").starts_with("triggers[0].ref: \"my app\" is not a ref"));
}

TEST(ParseTriggersTest, TwoTriggersCannotShareARef) {
  EXPECT_EQ(ErrorOf(R"([{"ref": "app", "repository": "shop"}, {"ref": "app", "repository": "web"}])"),
            "triggers[1].ref: \"app\" names another trigger too; refs must be unique");
}

TEST(ParseTriggersTest, TheWorkflowFormIsCheckedToo) {
  EXPECT_EQ(ErrorOf(R"([{"kind": "cron", "ref": "nightly", "spec": {"cron": "0 3 * * *"}}])"),
            "triggers[0].kind: \"cron\" is not a kind of trigger gitopsd reads here (vcs-push, vcs-pr)");
  EXPECT_EQ(ErrorOf(R"([{"kind": "vcs-push", "ref": "app"}])"), "triggers[0].spec: missing; it is required here");
  EXPECT_TRUE(
      ErrorOf(R"([{"kind": "vcs-push", "ref": "app", "spec": {"vcs": {"repoUrl": "u"}, "ignoreDrafts": true}}])")
          .starts_with("triggers[0].spec.ignoreDrafts: unknown key"));
  EXPECT_EQ(ErrorOf(R"([{"kind": "vcs-pr", "ref": "app", "spec": {"vcs": {"repoUrl": "u"},
                        "filePaths": {"paths": ["a\\"]}}}])"),
            "triggers[0].spec.filePaths.paths[0]: rule \"a\\\": ends in a lone '\\' (write \"\\\\\" for a backslash)");
}

TEST(ParseTriggersTest, TheTriggersMustBeAnArrayOfObjects) {
  EXPECT_EQ(ErrorOf(R"({"ref": "app"})"), "triggers: expected an array, not object");
  EXPECT_EQ(ErrorOf(R"(["app"])"), "triggers[0]: expected an object, not string");
  EXPECT_EQ(ErrorOf(R"([{"ref": "app", "repository": "shop", "type": "cron"}])"),
            "triggers[0].type: \"cron\" is not a type of trigger; the only one is \"git\"");
}

// ---- Branch patterns

TEST(MatchesPatternTest, StarIsEverythingAPrefixOrAnInfix) {
  EXPECT_TRUE(MatchesPattern("*", "main"));
  EXPECT_TRUE(MatchesPattern("*", "feature/login/v2"));
  EXPECT_TRUE(MatchesPattern("feature/*", "feature/login"));
  EXPECT_TRUE(MatchesPattern("feature/*", "feature/login/v2")) << "'*' crosses '/' in branch patterns";
  EXPECT_FALSE(MatchesPattern("feature/*", "features/login"));
  EXPECT_FALSE(MatchesPattern("feature/*", "bugfix/feature/x"));
  EXPECT_TRUE(MatchesPattern("release-*-rc", "release-1.2-rc"));
  EXPECT_FALSE(MatchesPattern("release-*-rc", "release-1.2-rc2"));
  EXPECT_TRUE(MatchesPattern("*/hotfix", "team-a/hotfix"));
  EXPECT_TRUE(MatchesPattern("a*b*c", "aXbYbZc"));
}

TEST(MatchesPatternTest, APlainNameMatchesOnlyItself) {
  EXPECT_TRUE(MatchesPattern("main", "main"));
  EXPECT_FALSE(MatchesPattern("main", "main2"));
  EXPECT_FALSE(MatchesPattern("main", "x/main"));
  EXPECT_FALSE(MatchesPattern("main", "Main"));
  EXPECT_TRUE(MatchesPattern("!important", "!important")) << "'!' is a character, not a negation";
}

// ---- Pushes

TEST(EvaluatePushTest, APushToAMatchingBranchFiresAndSaysWhichRule) {
  GitTrigger t = Trigger(R"({"ref": "app", "repository": "shop", "branchRestrictions": ["main", "release/*"]})");
  Decision d = Evaluate(t, Push("release/2.4", {kPlain}));
  EXPECT_TRUE(d.fires);
  EXPECT_EQ(d.reason, "push to \"release/2.4\" matches branchRestrictions \"release/*\"");
}

TEST(EvaluatePushTest, APushToAnotherBranchDoesNotFireAndSaysWhy) {
  GitTrigger t = Trigger(R"({"ref": "app", "repository": "shop", "branchRestrictions": ["main", "release/*"]})");
  Decision d = Evaluate(t, Push("dev", {kPlain}));
  EXPECT_FALSE(d.fires);
  EXPECT_EQ(d.reason, "branch \"dev\" matches no branchRestrictions (\"main\", \"release/*\")");
}

TEST(EvaluatePushTest, WithoutBranchRestrictionsOnlyPullRequestsFire) {
  GitTrigger t = Trigger(R"({"ref": "app", "repository": "shop", "branchRestrictions": [], "prRestrictions": ["*"]})");
  Decision push = Evaluate(t, Push("main", {kPlain}));
  EXPECT_FALSE(push.fires);
  EXPECT_EQ(push.reason, "no branchRestrictions: pushes never fire this trigger");
  EXPECT_TRUE(Evaluate(t, PullRequest("feature/x", false)).fires);
}

TEST(EvaluatePushTest, OneFlaggedCommitAmongManySuppressesThePush) {
  GitTrigger t = Trigger(R"({"ref": "app", "repository": "shop", "branchRestrictions": ["*"],
                             "ciIgnoreFlagsEnabled": true})");
  std::vector<Commit> commits = {
      {"aaaaaaaaaaaaaaaaaaaa", "Add the cart"},
      {"bbbbbbbbbbbbbbbbbbbb", "Fix a typo in the docs\n\nNothing to deploy here. [ci skip]"},
      {"cccccccccccccccccccc", "Add the checkout"},
  };
  Decision d = Evaluate(t, Push("main", commits));
  EXPECT_FALSE(d.fires);
  EXPECT_EQ(d.reason, "commit bbbbbbbbbbbb says [ci skip] (\"Fix a typo in the docs\")");
  commits.erase(commits.begin() + 1);
  EXPECT_TRUE(Evaluate(t, Push("main", commits)).fires);
}

TEST(SkipFlagsTest, FlagsAreCaseSensitiveSubstrings) {
  GitTrigger t = Trigger(R"({"ref": "app", "repository": "shop", "ciIgnoreFlagsEnabled": true})");
  EXPECT_EQ(SkipFlagIn(t, "docs: tidy up[skip ci]and more"), "[skip ci]");
  EXPECT_EQ(SkipFlagIn(t, "chore [northflank skip]"), "[northflank skip]");
  EXPECT_EQ(SkipFlagIn(t, "docs [SKIP CI]"), "");
  EXPECT_EQ(SkipFlagIn(t, "skip ci"), "");
  EXPECT_TRUE(SkipsByMessage(t, {"one", "two [no ci]", "three"}));
  EXPECT_FALSE(SkipsByMessage(t, {"one", "two", "three"}));
  EXPECT_FALSE(SkipsByMessage(t, {}));
}

TEST(SkipFlagsTest, CustomFlagsReplaceTheDefaults) {
  GitTrigger t = Trigger(R"({"ref": "app", "repository": "shop", "ciIgnoreFlags": ["[skip preview]"]})");
  EXPECT_TRUE(SkipsByMessage(t, {"tweak [skip preview]"}));
  EXPECT_FALSE(SkipsByMessage(t, {"tweak [skip ci]"}));
}

TEST(SkipFlagsTest, WithFlagsOffNothingIsSkipped) {
  GitTrigger t = Trigger(R"({"ref": "app", "repository": "shop", "branchRestrictions": ["*"]})");
  EXPECT_FALSE(SkipsByMessage(t, {"[skip ci]"}));
  EXPECT_TRUE(Evaluate(t, Push("main", {{"abc", "[skip ci]"}})).fires);
}

// ---- Path rules

TEST(EvaluatePushTest, AnIgnoreListSuppressesAPushThatTouchedOnlyIgnoredPaths) {
  GitTrigger t = Trigger(R"({"ref": "app", "repository": "shop", "branchRestrictions": ["*"],
                             "pathIgnoreRules": ["docs/", "*.md"]})");
  Decision d = Evaluate(t, Push("main", {kPlain}, {"docs/a.txt", "README.md"}));
  EXPECT_FALSE(d.fires);
  EXPECT_EQ(d.reason, "only ignored paths changed: docs/a.txt, README.md");
  EXPECT_TRUE(Evaluate(t, Push("main", {kPlain}, {"docs/a.txt", "src/cart.cc"})).fires);
}

TEST(EvaluatePushTest, AnAllowListFiresOnlyWhenAListedPathChanged) {
  GitTrigger t = Trigger(R"({"ref": "api", "repository": "shop", "branchRestrictions": ["*"],
                             "pathIgnoreRules": ["services/api/**", "!services/api/**/*.md"], "isAllowList": true})");
  EXPECT_TRUE(Evaluate(t, Push("main", {kPlain}, {"web/index.html", "services/api/server.go"})).fires);
  Decision d = Evaluate(t, Push("main", {kPlain}, {"web/index.html", "services/api/README.md"}));
  EXPECT_FALSE(d.fires);
  EXPECT_EQ(d.reason, "no changed path is on the allow list (isAllowList): web/index.html, services/api/README.md");
}

TEST(EvaluatePushTest, AnEmptyChangeSetFiresAnIgnoreListButNotAnAllowList) {
  const PushEvent empty_commit = Push("main", {{"e111", "Redeploy"}}, {});
  GitTrigger ignore = Trigger(R"({"ref": "a", "repository": "shop", "branchRestrictions": ["*"],
                                  "pathIgnoreRules": ["docs/**"]})");
  GitTrigger allow = Trigger(R"({"ref": "a", "repository": "shop", "branchRestrictions": ["*"],
                                 "pathIgnoreRules": ["src/**"], "isAllowList": true})");
  GitTrigger none = Trigger(R"({"ref": "a", "repository": "shop", "branchRestrictions": ["*"]})");
  EXPECT_TRUE(Evaluate(ignore, empty_commit).fires);
  EXPECT_TRUE(Evaluate(none, empty_commit).fires);
  Decision d = Evaluate(allow, empty_commit);
  EXPECT_FALSE(d.fires);
  EXPECT_EQ(d.reason, "no files changed, and pathIgnoreRules is an allow list (isAllowList)");
}

TEST(EvaluatePushTest, ALongListOfIgnoredPathsIsShortenedInTheReason) {
  GitTrigger t =
      Trigger(R"({"ref": "a", "repository": "shop", "branchRestrictions": ["*"], "pathIgnoreRules": ["docs/"]})");
  Strings paths;
  for (int i = 0; i < 8; ++i) paths.push_back("docs/" + std::to_string(i) + ".md");
  EXPECT_EQ(Evaluate(t, Push("main", {kPlain}, paths)).reason,
            "only ignored paths changed: docs/0.md, docs/1.md, docs/2.md, docs/3.md, docs/4.md and 3 more");
}

TEST(PathsFireTest, NoRulesAlwaysFire) {
  GitTrigger t;
  EXPECT_TRUE(PathsFire(t, {}));
  EXPECT_TRUE(PathsFire(t, {"anything"}));
}

// ---- Pull requests

TEST(EvaluatePullRequestTest, MatchesTheSourceBranch) {
  GitTrigger t = Trigger(R"({"ref": "app", "repository": "shop", "prRestrictions": ["feature/*"]})");
  Decision d = Evaluate(t, PullRequest("feature/cart", false));
  EXPECT_TRUE(d.fires);
  EXPECT_EQ(d.reason, "pull request from \"feature/cart\" matches prRestrictions \"feature/*\"");
  Decision other = Evaluate(t, PullRequest("hotfix/cart", false));
  EXPECT_FALSE(other.fires);
  EXPECT_EQ(other.reason, "pull request from \"hotfix/cart\" matches no prRestrictions (\"feature/*\")");
}

TEST(EvaluatePullRequestTest, WithoutPrRestrictionsPullRequestsNeverFire) {
  GitTrigger t = Trigger(R"({"ref": "app", "repository": "shop", "branchRestrictions": ["*"]})");
  Decision d = Evaluate(t, PullRequest("feature/cart", false));
  EXPECT_FALSE(d.fires);
  EXPECT_EQ(d.reason, "no prRestrictions: pull requests never fire this trigger");
}

TEST(EvaluatePullRequestTest, DraftsFireUnlessIgnoreDraftsIsSet) {
  GitTrigger counts = Trigger(R"({"ref": "a", "repository": "shop", "prRestrictions": ["*"]})");
  GitTrigger ignores = Trigger(R"({"ref": "a", "repository": "shop", "prRestrictions": ["*"], "ignoreDrafts": true})");
  EXPECT_TRUE(Evaluate(counts, PullRequest("wip", true)).fires);
  EXPECT_TRUE(Evaluate(ignores, PullRequest("wip", false)).fires);
  Decision d = Evaluate(ignores, PullRequest("wip", true));
  EXPECT_FALSE(d.fires);
  EXPECT_EQ(d.reason, "draft pull request, and ignoreDrafts is set");
}

TEST(EvaluatePullRequestTest, OnlyTheHeadCommitsFlagCounts) {
  GitTrigger t =
      Trigger(R"({"ref": "a", "repository": "shop", "prRestrictions": ["*"], "ciIgnoreFlagsEnabled": true})");
  Decision d = Evaluate(t, PullRequest("feature/x", false, "WIP [skip nf]"));
  EXPECT_FALSE(d.fires);
  EXPECT_EQ(d.reason, "head commit f00dfeed1234 says [skip nf] (\"WIP [skip nf]\")");
  EXPECT_TRUE(Evaluate(t, PullRequest("feature/x", false, "Ready for review")).fires);
}

TEST(EvaluatePullRequestTest, PathRulesApplyToPullRequestsToo) {
  GitTrigger t =
      Trigger(R"({"ref": "a", "repository": "shop", "prRestrictions": ["*"], "pathIgnoreRules": ["**/*.md"]})");
  EXPECT_FALSE(Evaluate(t, PullRequest("docs", false, "Docs", {"README.md", "docs/x.md"})).fires);
  EXPECT_TRUE(Evaluate(t, PullRequest("docs", false, "Docs", {"README.md", "Makefile"})).fires);
}

// ---- manualOnly

TEST(EvaluateTest, AManualOnlyTriggerNeverFiresFromGit) {
  GitTrigger t = Trigger(R"({"ref": "a", "repository": "shop", "type": "git", "manualOnly": true,
                             "branchRestrictions": ["*"], "prRestrictions": ["*"]})");
  Decision push = Evaluate(t, Push("main", {kPlain}));
  Decision pr = Evaluate(t, PullRequest("feature/x", false));
  EXPECT_FALSE(push.fires);
  EXPECT_FALSE(pr.fires);
  EXPECT_TRUE(push.reason.starts_with("manualOnly:")) << push.reason;
}

}  // namespace
}  // namespace gitopsd::triggers
