#include "daemon/triggers/rules.h"

#include <algorithm>
#include <initializer_list>
#include <optional>
#include <set>
#include <utility>

#include "sync/json.h"

namespace gitopsd::triggers {
namespace {

constexpr size_t kMaxPatternLength = 260;
constexpr size_t kMaxPathRuleLength = 260;
constexpr size_t kMaxFlagLength = 72;
constexpr size_t kMaxRefLength = 100;

std::string Quoted(std::string_view s) {
  std::string out;
  json::AppendQuoted(out, s);
  return out;
}

// ---- Checks on single strings: empty when fine, else the problem.

using Check = std::string (*)(std::string_view);

std::string CheckLength(std::string_view s, size_t max) {
  if (s.empty()) return "is empty";
  if (s.size() > max) return "is " + std::to_string(s.size()) + " characters long; the limit is " + std::to_string(max);
  return "";
}

bool IsAlnum(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'); }

std::string Describe(char c) {
  if (c == ' ') return "a space";
  if (c > ' ' && c < 0x7F) return Quoted(std::string(1, c));
  return "a non-ASCII or control character";
}

std::string CheckPattern(std::string_view s) {
  if (std::string problem = CheckLength(s, kMaxPatternLength); !problem.empty()) return problem;
  for (char c : s) {
    if (IsAlnum(c) || std::string_view("/*%-.#_!'();,&=+").find(c) != std::string_view::npos) continue;
    return Quoted(s) + " has " + Describe(c) +
           ", which branch patterns do not allow (allowed: letters, digits and / * % - . # _ ! ' ( ) ; , & = +)";
  }
  return "";
}

std::string CheckPathRule(std::string_view s) { return CheckLength(s, kMaxPathRuleLength); }
std::string CheckFlag(std::string_view s) { return CheckLength(s, kMaxFlagLength); }

std::string CheckRef(std::string_view s) {
  if (std::string problem = CheckLength(s, kMaxRefLength); !problem.empty()) return problem;
  for (size_t i = 0; i < s.size(); ++i) {
    if (IsAlnum(s[i]) || s[i] == '_' || (i > 0 && s[i] == '-')) continue;
    return Quoted(s) + " is not a ref: use letters, digits, '_' and '-' (not first)";
  }
  return "";
}

#define TRY(expr)                                \
  do {                                           \
    auto _s = (expr);                            \
    if (!_s) return std::unexpected(_s.error()); \
  } while (0)

// ---- A JSON object being read, and the name its errors carry. Each read
// leaves `out` as it was when the key is absent.

class Reader {
 public:
  Reader(const json::Value& object, std::string name) : object_(object), name_(std::move(name)) {}

  const std::string& name() const { return name_; }
  std::string Name(std::string_view key) const { return name_ + "." + std::string(key); }
  bool Has(std::string_view key) const { return object_.Find(key) != nullptr; }

  Status OnlyKeys(std::initializer_list<std::string_view> known) const {
    for (const json::Member& m : object_.members()) {
      if (std::find(known.begin(), known.end(), m.first) != known.end()) continue;
      std::string list;
      for (std::string_view k : known) list += (list.empty() ? "" : ", ") + std::string(k);
      return Fail(Name(m.first) + ": unknown key (known here: " + list + ")");
    }
    return Ok();
  }

  Status String(std::string_view key, Check check, std::string& out) const {
    const json::Value* v = object_.Find(key);
    if (!v) return Ok();
    if (!v->is_string()) return WrongType(key, *v, "a string");
    if (std::string problem = check ? check(v->as_string()) : ""; !problem.empty())
      return Fail(Name(key) + ": " + problem);
    out = v->as_string();
    return Ok();
  }

  Status Bool(std::string_view key, bool& out) const {
    std::optional<bool> v;
    TRY(Bool(key, v));
    out = v.value_or(out);
    return Ok();
  }

  Status Bool(std::string_view key, std::optional<bool>& out) const {
    const json::Value* v = object_.Find(key);
    if (!v) return Ok();
    if (!v->is_bool()) return WrongType(key, *v, "true or false");
    out = v->as_bool();
    return Ok();
  }

  Status Strings(std::string_view key, Check check, std::vector<std::string>& out) const {
    const json::Value* v = object_.Find(key);
    if (!v) return Ok();
    if (!v->is_array()) return WrongType(key, *v, "an array of strings");
    out.clear();
    for (size_t i = 0; i < v->items().size(); ++i) {
      const json::Value& item = v->items()[i];
      const std::string at = Name(key) + "[" + std::to_string(i) + "]";
      if (!item.is_string()) return Fail(at + ": expected a string, not " + json::TypeName(item.type()));
      if (std::string problem = check(item.as_string()); !problem.empty()) return Fail(at + ": " + problem);
      out.push_back(item.as_string());
    }
    return Ok();
  }

  // A nested object; `out` stays empty when the key is absent and not required.
  Status Object(std::string_view key, bool required, std::optional<Reader>& out) const {
    const json::Value* v = object_.Find(key);
    if (!v && required) return Fail(Name(key) + ": missing; it is required here");
    if (!v) return Ok();
    if (!v->is_object()) return WrongType(key, *v, "an object");
    out.emplace(*v, Name(key));
    return Ok();
  }

 private:
  std::unexpected<Error> WrongType(std::string_view key, const json::Value& v, std::string_view expected) const {
    return Fail(Name(key) + ": expected " + std::string(expected) + ", not " + json::TypeName(v.type()));
  }

  const json::Value& object_;
  std::string name_;
};

// ---- Pieces both trigger forms share.

Status ReadRef(const Reader& r, GitTrigger& t) {
  TRY(r.String("ref", CheckRef, t.ref));
  if (t.ref.empty())
    return Fail(r.Name("ref") + ": missing; every trigger needs a ref (its name in ${refs.REF.branch})");
  return Ok();
}

// `where` holds repoUrl and repository: the trigger itself, or its spec.vcs.
Status ReadRepository(const Reader& where, GitTrigger& t) {
  TRY(where.String(
      "repoUrl", [](std::string_view s) { return CheckLength(s, 2048); }, t.repo_url));
  TRY(where.String(
      "repository", [](std::string_view s) { return CheckLength(s, 100); }, t.repository));
  if (t.repo_url.empty() && t.repository.empty()) {
    return Fail(where.name() +
                ": names no repository; give repoUrl, or repository (a repository in the daemon's configuration)");
  }
  return Ok();
}

Status ReadPathRules(const Reader& r, std::string_view key, GitTrigger& t) {
  std::vector<std::string> lines;
  TRY(r.Strings(key, CheckPathRule, lines));
  Result<PathRules> rules = PathRules::Parse(lines);
  if (!rules) return Fail(r.Name(key) + rules.error().message);  // the message starts "[i]: "
  t.path_rules = std::move(*rules);
  return Ok();
}

// Enabled defaults to whether any flags are listed; enabled with none
// listed means the defaults.
Status ReadSkipFlags(const Reader& r, std::string_view enabled_key, std::string_view flags_key, GitTrigger& t) {
  std::optional<bool> enabled;
  std::vector<std::string> flags;
  TRY(r.Bool(enabled_key, enabled));
  TRY(r.Strings(flags_key, CheckFlag, flags));
  t.skip_flags_enabled = enabled.value_or(!flags.empty());
  if (!t.skip_flags_enabled) return Ok();
  t.skip_flags = std::move(flags);
  if (t.skip_flags.empty()) t.skip_flags.assign(kDefaultSkipFlags.begin(), kDefaultSkipFlags.end());
  return Ok();
}

// ---- The pipeline form: {ref, repoUrl, branchRestrictions, ...}.

Status ReadPipelineForm(const Reader& r, GitTrigger& t) {
  TRY(r.OnlyKeys({"ref", "type", "id", "vcsService", "selfHostedVcsId", "accountLogin", "repoUrl", "repository",
                  "branchRestrictions", "prRestrictions", "pathIgnoreRules", "isAllowList", "ciIgnoreFlagsEnabled",
                  "ciIgnoreFlags", "ignoreDrafts", "manualOnly"}));
  TRY(ReadRef(r, t));
  TRY(ReadRepository(r, t));
  std::string ignored;  // accepted for compatibility
  for (std::string_view key : {"id", "vcsService", "selfHostedVcsId", "accountLogin"})
    TRY(r.String(key, nullptr, ignored));
  std::string type;
  TRY(r.String("type", nullptr, type));
  if (r.Has("type") && type != "git")
    return Fail(r.Name("type") + ": " + Quoted(type) + " is not a type of trigger; the only one is \"git\"");
  TRY(r.Strings("branchRestrictions", CheckPattern, t.branch_patterns));
  TRY(r.Strings("prRestrictions", CheckPattern, t.pr_patterns));
  TRY(ReadPathRules(r, "pathIgnoreRules", t));
  TRY(r.Bool("isAllowList", t.paths_allow_list));
  TRY(ReadSkipFlags(r, "ciIgnoreFlagsEnabled", "ciIgnoreFlags", t));
  TRY(r.Bool("ignoreDrafts", t.ignore_drafts));
  TRY(r.Bool("manualOnly", t.manual_only));
  return Ok();
}

// ---- The workflow form: {kind, ref, spec: {vcs, branchNamePatterns, ...}}.

// spec.filePaths {enabled, allowList, paths}: enabled defaults to true.
Status ReadFilePaths(const Reader& spec, GitTrigger& t) {
  std::optional<Reader> files;
  TRY(spec.Object("filePaths", false, files));
  if (!files) return Ok();
  bool enabled = true;
  TRY(files->OnlyKeys({"enabled", "allowList", "paths"}));
  TRY(files->Bool("enabled", enabled));
  TRY(files->Bool("allowList", t.paths_allow_list));
  return enabled ? ReadPathRules(*files, "paths", t) : Ok();
}

Status ReadMessageFlags(const Reader& spec, GitTrigger& t) {
  std::optional<Reader> flags;
  TRY(spec.Object("commitMessageFlags", false, flags));
  if (!flags) return Ok();
  TRY(flags->OnlyKeys({"enabled", "flags"}));
  return ReadSkipFlags(*flags, "enabled", "flags", t);
}

Status ReadWorkflowForm(const Reader& r, GitTrigger& t) {
  TRY(r.OnlyKeys({"kind", "ref", "id", "spec"}));
  std::string kind, ignored;
  TRY(r.String("kind", nullptr, kind));
  const bool pr = kind == "vcs-pr";
  if (!pr && kind != "vcs-push") {
    return Fail(r.Name("kind") + ": " + Quoted(kind) +
                " is not a kind of trigger gitopsd reads here (vcs-push, vcs-pr)");
  }
  TRY(ReadRef(r, t));
  TRY(r.String("id", nullptr, ignored));
  std::optional<Reader> spec, vcs;
  TRY(r.Object("spec", true, spec));
  TRY(pr ? spec->OnlyKeys({"vcs", "branchNamePatterns", "commitMessageFlags", "filePaths", "ignoreDrafts"})
         : spec->OnlyKeys({"vcs", "branchNamePatterns", "commitMessageFlags", "filePaths"}));
  TRY(spec->Object("vcs", true, vcs));  // vcsService, accountLogin...: accepted, ignored
  TRY(ReadRepository(*vcs, t));
  TRY(spec->Strings("branchNamePatterns", CheckPattern, pr ? t.pr_patterns : t.branch_patterns));
  TRY(ReadMessageFlags(*spec, t));
  TRY(ReadFilePaths(*spec, t));
  TRY(spec->Bool("ignoreDrafts", t.ignore_drafts));
  return Ok();
}

// ---- Reasons.

std::string QuotedList(const std::vector<std::string>& items, bool quote, size_t max = 5) {
  std::string out;
  for (size_t i = 0; i < items.size() && i < max; ++i) out += (i ? ", " : "") + (quote ? Quoted(items[i]) : items[i]);
  if (items.size() > max) out += " and " + std::to_string(items.size() - max) + " more";
  return out;
}

std::string FirstMatch(const std::vector<std::string>& patterns, std::string_view name) {
  for (const std::string& p : patterns) {
    if (MatchesPattern(p, name)) return p;
  }
  return "";
}

// "commit 1a2b3c4d5e6f says [skip ci] (\"docs: typo [skip ci]\")"
std::string SkipReason(std::string_view what, const Commit& c, const std::string& flag) {
  std::string subject = c.message.substr(0, c.message.find('\n'));
  if (subject.size() > 72) subject = subject.substr(0, 69) + "...";
  const std::string sha = c.sha.empty() ? "" : " " + c.sha.substr(0, 12);
  return std::string(what) + sha + " says " + flag + " (" + Quoted(subject) + ")";
}

// Empty when the changed paths fire the trigger.
std::string PathsReason(const GitTrigger& t, const std::vector<std::string>& changed) {
  if (PathsFire(t, changed)) return "";
  if (!t.paths_allow_list) return "only ignored paths changed: " + QuotedList(changed, false);
  if (changed.empty()) return "no files changed, and pathIgnoreRules is an allow list (isAllowList)";
  return "no changed path is on the allow list (isAllowList): " + QuotedList(changed, false);
}

Decision Fires(std::string reason) { return {true, std::move(reason)}; }
Decision DoesNotFire(std::string reason) { return {false, std::move(reason)}; }

const char kManualOnly[] = "manualOnly: Git events never fire this trigger; run it by hand or through the webhook";

}  // namespace

Result<std::vector<GitTrigger>> ParseTriggers(const json::Value& object) {
  std::vector<GitTrigger> out;
  const json::Value* list = object.Find("triggers");
  if (!list) return out;
  if (!list->is_array()) return Fail(std::string("triggers: expected an array, not ") + json::TypeName(list->type()));
  std::set<std::string> refs;
  for (size_t i = 0; i < list->items().size(); ++i) {
    const json::Value& item = list->items()[i];
    const std::string at = "triggers[" + std::to_string(i) + "]";
    if (!item.is_object()) return Fail(at + ": expected an object, not " + json::TypeName(item.type()));
    const Reader r(item, at);
    GitTrigger t;
    TRY(r.Has("kind") ? ReadWorkflowForm(r, t) : ReadPipelineForm(r, t));
    if (!refs.insert(t.ref).second)
      return Fail(r.Name("ref") + ": " + Quoted(t.ref) + " names another trigger too; refs must be unique");
    out.push_back(std::move(t));
  }
  return out;
}

bool MatchesPattern(std::string_view pattern, std::string_view name) {
  size_t p = 0, n = 0;
  size_t star = std::string_view::npos, resume = 0;  // the last '*' and where its run would end
  while (n < name.size()) {
    if (p < pattern.size() && pattern[p] == '*') {
      star = p++;
      resume = n;
    } else if (p < pattern.size() && pattern[p] == name[n]) {
      ++p;
      ++n;
    } else if (star != std::string_view::npos) {  // let the last '*' take one more character
      p = star + 1;
      n = ++resume;
    } else {
      return false;
    }
  }
  while (p < pattern.size() && pattern[p] == '*') ++p;
  return p == pattern.size();
}

bool PathsFire(const GitTrigger& trigger, const std::vector<std::string>& changed_paths) {
  if (trigger.path_rules.empty()) return true;
  if (changed_paths.empty()) return !trigger.paths_allow_list;
  for (const std::string& path : changed_paths) {
    if (trigger.path_rules.Ignored(path) == trigger.paths_allow_list) return true;
  }
  return false;
}

std::string SkipFlagIn(const GitTrigger& trigger, std::string_view message) {
  if (!trigger.skip_flags_enabled) return "";
  for (const std::string& flag : trigger.skip_flags) {
    if (message.find(flag) != std::string_view::npos) return flag;
  }
  return "";
}

bool SkipsByMessage(const GitTrigger& trigger, const std::vector<std::string>& commit_messages) {
  for (const std::string& message : commit_messages) {
    if (!SkipFlagIn(trigger, message).empty()) return true;
  }
  return false;
}

Decision Evaluate(const GitTrigger& trigger, const PushEvent& push) {
  if (trigger.manual_only) return DoesNotFire(kManualOnly);
  if (trigger.branch_patterns.empty()) return DoesNotFire("no branchRestrictions: pushes never fire this trigger");
  const std::string pattern = FirstMatch(trigger.branch_patterns, push.branch);
  if (pattern.empty()) {
    return DoesNotFire("branch " + Quoted(push.branch) + " matches no branchRestrictions (" +
                       QuotedList(trigger.branch_patterns, true) + ")");
  }
  for (const Commit& commit : push.commits) {
    const std::string flag = SkipFlagIn(trigger, commit.message);
    if (!flag.empty()) return DoesNotFire(SkipReason("commit", commit, flag));
  }
  if (std::string why = PathsReason(trigger, push.changed_paths); !why.empty()) return DoesNotFire(why);
  return Fires("push to " + Quoted(push.branch) + " matches branchRestrictions " + Quoted(pattern));
}

Decision Evaluate(const GitTrigger& trigger, const PullRequestEvent& pr) {
  if (trigger.manual_only) return DoesNotFire(kManualOnly);
  if (trigger.pr_patterns.empty()) return DoesNotFire("no prRestrictions: pull requests never fire this trigger");
  const std::string pattern = FirstMatch(trigger.pr_patterns, pr.source_branch);
  if (pattern.empty()) {
    return DoesNotFire("pull request from " + Quoted(pr.source_branch) + " matches no prRestrictions (" +
                       QuotedList(trigger.pr_patterns, true) + ")");
  }
  if (pr.draft && trigger.ignore_drafts) return DoesNotFire("draft pull request, and ignoreDrafts is set");
  if (const std::string flag = SkipFlagIn(trigger, pr.head.message); !flag.empty()) {
    return DoesNotFire(SkipReason("head commit", pr.head, flag));
  }
  if (std::string why = PathsReason(trigger, pr.changed_paths); !why.empty()) return DoesNotFire(why);
  return Fires("pull request from " + Quoted(pr.source_branch) + " matches prRestrictions " + Quoted(pattern));
}

}  // namespace gitopsd::triggers
