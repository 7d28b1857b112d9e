// Git triggers: which pushes and pull requests start a release flow or a
// preview. Pure code, no I/O: the caller (the poller, a forge webhook) says
// what happened — a branch, its new commits, the files they changed — and
// Evaluate answers whether a trigger fires, with a reason for the log.
//
// What callers can rely on:
//  - ParseTriggers reads the `triggers` array of a release flow, preview
//    template or blueprint, in either of two forms:
//      pipeline form (the schemas' `trigger` and `previewTrigger`):
//        {ref, repoUrl | repository, branchRestrictions, prRestrictions,
//         pathIgnoreRules, isAllowList, ciIgnoreFlagsEnabled, ciIgnoreFlags,
//         ignoreDrafts, type: "git", manualOnly, id, vcsService, ...}
//      workflow form (not in our schemas, which refuse it; read anyway):
//        {kind: "vcs-push" | "vcs-pr", ref, id, spec: {vcs{repoUrl |
//         repository}, branchNamePatterns, commitMessageFlags{enabled,
//         flags}, filePaths{enabled, allowList, paths}, ignoreDrafts}}
//    Both become the same GitTrigger. Unknown keys, wrong types, bad
//    patterns and duplicate refs are errors naming the trigger and the
//    field: `triggers[1].branchRestrictions[0]: ...`.
//  - Branches: a push fires only when its branch matches a
//    branchRestrictions pattern, a pull request only when its source branch
//    matches a prRestrictions pattern. An empty or missing list means that
//    kind of event never fires the trigger: a trigger with only
//    prRestrictions is for pull requests, and "*" means every branch.
//    (vcs-push patterns are push patterns; vcs-pr patterns are PR patterns.)
//  - Skip flags apply when ciIgnoreFlagsEnabled is true, or when it is
//    missing and ciIgnoreFlags lists some flags; enabled with no flags means
//    kDefaultSkipFlags. Flags are case-sensitive substrings of a message.
//    One flagged commit suppresses a whole push; a pull request looks only
//    at its head commit.
//  - Path rules (PathRules, .gitignore syntax): with none, every event
//    fires; an ignore list fires when some changed path is not ignored; an
//    allow list (isAllowList) when some changed path matches it. An event
//    that changed no files (an empty commit, a branch pushed at an existing
//    commit) fires an ignore list — it changed nothing the list ignores —
//    and not an allow list — it changed nothing on it. filePaths.enabled
//    and commitMessageFlags.enabled default to whether their list is
//    non-empty.
//  - Drafts fire unless ignoreDrafts. A manualOnly trigger never fires from
//    Git; manual and webhook runs still use it.
//  - Which repository an event comes from is the caller's to match against
//    repo_url or repository; Evaluate looks only at the event.
#pragma once
#include <array>
#include <string>
#include <string_view>
#include <vector>

#include "daemon/triggers/path_rules.h"
#include "sync/status.h"

namespace gitopsd::json {
class Value;
}

namespace gitopsd::triggers {

// The flags an enabled trigger with an empty ciIgnoreFlags list uses
// (Northflank's defaults).
inline constexpr std::array<std::string_view, 7> kDefaultSkipFlags = {
    "[skip ci]", "[ci skip]", "[no ci]", "[skip nf]", "[nf skip]", "[northflank skip]", "[skip northflank]"};

struct GitTrigger {
  std::string ref;                           // ${refs.REF.*}
  std::string repo_url;                      // repoUrl; empty when only `repository` is given
  std::string repository;                    // gitopsd: a configured repository's name
  std::vector<std::string> branch_patterns;  // pushes; empty: pushes never fire
  std::vector<std::string> pr_patterns;      // PR source branches; empty: PRs never fire
  PathRules path_rules;
  bool paths_allow_list = false;
  bool skip_flags_enabled = false;
  std::vector<std::string> skip_flags;  // never empty when enabled
  bool ignore_drafts = false;
  bool manual_only = false;
};

// Reads object["triggers"]; a missing array is no triggers.
Result<std::vector<GitTrigger>> ParseTriggers(const json::Value& object);

// A branch pattern: '*' matches any run of characters, '/' included;
// everything else, '!' too, matches itself. "feature/*" is a prefix, "*"
// every branch, "main" only main.
bool MatchesPattern(std::string_view pattern, std::string_view name);

// Whether `changed_paths` are reason to fire, by the trigger's path rules
// (see above for the empty change set).
bool PathsFire(const GitTrigger& trigger, const std::vector<std::string>& changed_paths);

// The first of the trigger's skip flags in `message`; empty when none (or
// when skip flags are off).
std::string SkipFlagIn(const GitTrigger& trigger, std::string_view message);
// True when any message carries a skip flag. For a pull request pass only
// the head commit's message.
bool SkipsByMessage(const GitTrigger& trigger, const std::vector<std::string>& commit_messages);

struct Commit {
  std::string sha;
  std::string message;
};

struct PushEvent {
  std::string branch;                      // "main", not "refs/heads/main"
  std::vector<Commit> commits;             // the commits the push brought
  std::vector<std::string> changed_paths;  // files they changed, repository-relative
};

struct PullRequestEvent {
  std::string source_branch;  // the branch the PR merges from
  bool draft = false;
  Commit head;                             // the PR's head commit
  std::vector<std::string> changed_paths;  // files the new commits (or the opened PR) changed
};

struct Decision {
  bool fires = false;
  // One sentence for the log: what matched, or the first reason not to
  // fire ("branch \"dev\" matches no branchRestrictions (\"main\")").
  std::string reason;
};

// Checks, in order: manualOnly, the branch, skip flags, the changed paths.
Decision Evaluate(const GitTrigger& trigger, const PushEvent& push);
// Checks, in order: manualOnly, the source branch, draft, the head commit's
// skip flags, the changed paths.
Decision Evaluate(const GitTrigger& trigger, const PullRequestEvent& pull_request);

}  // namespace gitopsd::triggers
