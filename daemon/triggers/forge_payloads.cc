// Webhook payloads of GitHub, GitLab and Gitea, each read into one
// ForgeEvent. Field paths in errors are the forge's own, as its
// documentation spells them ("object_attributes.iid").
#include "daemon/triggers/forge.h"

#include <algorithm>
#include <array>
#include <cctype>
#include <charconv>
#include <optional>
#include <span>

#include "sync/json.h"

namespace gitopsd::triggers {
namespace {

using Kind = ForgeEvent::Kind;
using PrAction = ForgeEvent::PrAction;
using UrlKeys = std::span<const std::string_view>;

// GitHub caps payloads at 25 MB; a push that touches many files passes 1 MB.
constexpr size_t kMaxPayloadBytes = size_t{25} << 20;

constexpr std::array<std::string_view, 5> kGitHubRepoUrls = {"clone_url", "ssh_url", "html_url",
                                                             "git_url", "svn_url"};
constexpr std::array<std::string_view, 3> kGiteaRepoUrls = {"clone_url", "ssh_url", "html_url"};
constexpr std::array<std::string_view, 7> kGitLabProjectUrls = {
    "git_http_url", "git_ssh_url", "web_url", "http_url", "ssh_url", "url", "homepage"};
constexpr std::array<std::string_view, 4> kGitLabRepositoryUrls = {"git_http_url", "git_ssh_url",
                                                                   "url", "homepage"};

// Reads one payload. Required fields that are missing or of the wrong type
// are remembered (the first one) and reported by Finish, so that a parser
// reads as a list of fields rather than a ladder of early returns.
class PayloadReader {
 public:
  static Result<PayloadReader> Parse(std::string what, std::string_view body) {
    json::ParseOptions options;
    options.max_bytes = kMaxPayloadBytes;
    auto root = json::Parse(body, options);
    if (!root) {
      json::LineCol at = json::LocateOffset(body, root.error().offset);
      return Fail(what + " is not valid JSON: " + root.error().message + " (line " +
                  std::to_string(at.line) + ", column " + std::to_string(at.col) + ")");
    }
    if (!root->is_object()) return Fail(what + " is not a JSON object");
    return PayloadReader(std::move(what), std::move(*root));
  }

  // The value at a dotted path; nullptr when absent or null.
  const json::Value* Find(std::string_view path) const {
    const json::Value* v = &root_;
    while (v != nullptr && !path.empty()) {
      size_t dot = path.find('.');
      v = v->Find(path.substr(0, dot));
      path = dot == std::string_view::npos ? std::string_view() : path.substr(dot + 1);
    }
    return v != nullptr && !v->is_null() ? v : nullptr;
  }

  std::string Text(std::string_view path) const {
    const json::Value* v = Find(path);
    return v != nullptr && v->is_string() ? v->as_string() : std::string();
  }
  bool Flag(std::string_view path) const {
    const json::Value* v = Find(path);
    return v != nullptr && v->is_bool() && v->as_bool();
  }
  bool IsFalse(std::string_view path) const {
    const json::Value* v = Find(path);
    return v != nullptr && v->is_bool() && !v->as_bool();
  }
  // An id the forge may send as a number or a string, as text.
  std::string Id(std::string_view path) const {
    const json::Value* v = Find(path);
    if (v == nullptr) return {};
    return v->is_number() ? v->number_text() : v->is_string() ? v->as_string() : std::string();
  }

  std::string Need(std::string_view path) {
    const json::Value* v = Find(path);
    if (v != nullptr && v->is_string() && !v->as_string().empty()) return v->as_string();
    Problem(path, v, "a non-empty string");
    return {};
  }
  int64_t NeedInteger(std::string_view path) {
    const json::Value* v = Find(path);
    if (v != nullptr && v->is_number()) {
      const std::string& text = v->number_text();
      int64_t n = 0;
      auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), n);
      if (ec == std::errc() && end == text.data() + text.size() && n > 0) return n;
    }
    Problem(path, v, "a positive integer");
    return 0;
  }

  // Adds the non-empty strings object.key for each key, skipping repeats.
  void AddUrls(std::string_view object, UrlKeys keys, std::vector<std::string>* urls) const {
    for (std::string_view key : keys) {
      std::string url = Text(std::string(object) + "." + std::string(key));
      if (url.empty() || std::ranges::find(*urls, url) != urls->end()) continue;
      urls->push_back(std::move(url));
    }
  }
  void NeedUrls(const std::vector<std::string>& urls, std::string_view example) {
    if (urls.empty() && !problem_) {
      problem_ = Error{what_ + ": no repository URL (such as \"" + std::string(example) + "\")"};
    }
  }

  Result<ForgeEvent> Finish(ForgeEvent event) const {
    if (problem_) return std::unexpected(*problem_);
    return event;
  }

 private:
  PayloadReader(std::string what, json::Value root)
      : what_(std::move(what)), root_(std::move(root)) {}

  void Problem(std::string_view path, const json::Value* found, std::string_view expected) {
    if (problem_) return;
    std::string field = "\"" + std::string(path) + "\"";
    problem_ = Error{found == nullptr
                         ? what_ + ": missing " + field + " (" + std::string(expected) + ")"
                         : what_ + ": " + field + " is " + DescribeValue(*found) +
                               ", expected " + std::string(expected)};
  }
  static std::string DescribeValue(const json::Value& v) {
    if (v.is_string()) return v.as_string().empty() ? "an empty string" : "a string";
    if (v.is_number()) return "the number " + v.number_text();
    const std::string type = json::TypeName(v.type());
    return (type == "array" || type == "object" ? "an " : "a ") + type;
  }

  std::string what_;
  json::Value root_;
  std::optional<Error> problem_;
};

bool IsZeroId(std::string_view sha) {
  return !sha.empty() && sha.find_first_not_of('0') == std::string_view::npos;
}

bool EqualsIgnoringCase(std::string_view a, std::string_view b) {
  return std::ranges::equal(a, b, [](char x, char y) {
    return std::toupper(static_cast<unsigned char>(x)) ==
           std::toupper(static_cast<unsigned char>(y));
  });
}

bool StartsWithIgnoringCase(std::string_view text, std::string_view prefix) {
  return text.size() >= prefix.size() && EqualsIgnoringCase(text.substr(0, prefix.size()), prefix);
}

// Gitea's default WORK_IN_PROGRESS_PREFIXES, matched as Gitea does
// (ignoring case); older Gitea sends no "draft" field, only the title.
bool HasWipPrefix(std::string_view title) {
  return StartsWithIgnoringCase(title, "WIP:") || StartsWithIgnoringCase(title, "[WIP]");
}

void Ignore(ForgeEvent* e, std::string reason) {
  e->kind = Kind::kIgnored;
  e->ignored_reason = std::move(reason);
}

ForgeEvent Ignored(ForgeEvent e, std::string reason) {
  Ignore(&e, std::move(reason));
  return e;
}

ForgeEvent NotHandled(ForgeEvent e) {
  std::string reason = "event \"" + e.event_name + "\" is not one gitopsd acts on";
  return Ignored(std::move(e), std::move(reason));
}

// A push of `ref` to `after`: a branch push, or ignored for tags and others.
void SetPushedRef(std::string_view ref, std::string_view after, bool deleted, ForgeEvent* e) {
  constexpr std::string_view kHeads = "refs/heads/";
  if (ref.starts_with(kHeads) && ref.size() > kHeads.size()) {
    e->kind = Kind::kPush;
    e->branch = ref.substr(kHeads.size());
    e->branch_deleted = deleted || IsZeroId(after);
    e->head_sha_hint = e->branch_deleted ? std::string() : std::string(after);
  } else if (ref.starts_with("refs/tags/")) {
    Ignore(e, "tag push " + std::string(ref) + ": triggers follow branches");
  } else {
    Ignore(e, "push to " + std::string(ref) + ", which is not a branch");
  }
}

void SetPullRequest(int64_t number, std::string_view ref_prefix, ForgeEvent* e) {
  e->kind = Kind::kPullRequest;
  e->number = number;
  e->head_ref = std::string(ref_prefix) + std::to_string(number) + "/head";
}

// GitHub and Gitea: does the head live outside the repository the webhook
// belongs to? A null head.repo means the fork was deleted.
bool HeadIsFork(const PayloadReader& p) {
  std::string head_id = p.Id("pull_request.head.repo_id");
  std::string base_id = p.Id("pull_request.base.repo_id");
  if (!head_id.empty() && !base_id.empty()) return head_id != base_id;  // Gitea
  if (p.Find("pull_request.head.repo") == nullptr) return true;
  head_id = p.Id("pull_request.head.repo.id");
  base_id = p.Id("repository.id");
  if (!head_id.empty() && !base_id.empty()) return head_id != base_id;
  return !EqualsIgnoringCase(p.Text("pull_request.head.repo.full_name"),
                             p.Text("repository.full_name"));
}

// GitHub and Gitea close a pull request with "closed" whether or not it was
// merged; "merged" tells them apart.
PrAction ClosedAction(const PayloadReader& p) {
  return p.Flag("pull_request.merged") ? PrAction::kMerged : PrAction::kClosed;
}

// ---- GitHub -------------------------------------------------------------

Result<ForgeEvent> GitHubPush(PayloadReader& p, ForgeEvent e) {
  std::string ref = p.Need("ref");
  p.AddUrls("repository", kGitHubRepoUrls, &e.repo_urls);
  p.NeedUrls(e.repo_urls, "repository.clone_url");
  SetPushedRef(ref, p.Text("after"), p.Flag("deleted"), &e);
  return p.Finish(std::move(e));
}

PrAction GitHubAction(std::string_view action, const PayloadReader& p) {
  if (action == "opened") return PrAction::kOpened;
  if (action == "reopened") return PrAction::kReopened;
  if (action == "synchronize") return PrAction::kUpdated;
  if (action == "ready_for_review") return PrAction::kReadyForReview;
  if (action == "closed") return ClosedAction(p);
  // An edit that changes the base branch retargets the pull request.
  if (action == "edited" && p.Find("changes.base") != nullptr) return PrAction::kUpdated;
  return PrAction::kOther;
}

Result<ForgeEvent> GitHubPullRequest(PayloadReader& p, ForgeEvent e) {
  e.action_name = p.Need("action");
  SetPullRequest(p.NeedInteger("number"), "refs/pull/", &e);
  e.source_branch = p.Need("pull_request.head.ref");
  e.target_branch = p.Need("pull_request.base.ref");
  e.head_sha_hint = p.Need("pull_request.head.sha");
  e.draft = p.Flag("pull_request.draft");
  e.from_fork = HeadIsFork(p);
  e.action = GitHubAction(e.action_name, p);
  p.AddUrls("repository", kGitHubRepoUrls, &e.repo_urls);
  p.NeedUrls(e.repo_urls, "repository.clone_url");
  return p.Finish(std::move(e));
}

// An organisation webhook's ping names no repository.
Result<ForgeEvent> GitHubPing(PayloadReader& p, ForgeEvent e) {
  e.kind = Kind::kPing;
  p.AddUrls("repository", kGitHubRepoUrls, &e.repo_urls);
  return p.Finish(std::move(e));
}

// ---- GitLab -------------------------------------------------------------

void AddGitLabUrls(const PayloadReader& p, ForgeEvent* e) {
  p.AddUrls("project", kGitLabProjectUrls, &e->repo_urls);
  p.AddUrls("repository", kGitLabRepositoryUrls, &e->repo_urls);
}

// "Push Hook" and "Tag Push Hook" share a layout; the ref tells them apart.
Result<ForgeEvent> GitLabPush(PayloadReader& p, ForgeEvent e) {
  std::string ref = p.Need("ref");
  AddGitLabUrls(p, &e);
  p.NeedUrls(e.repo_urls, "project.git_http_url");
  SetPushedRef(ref, p.Text("after"), false, &e);
  return p.Finish(std::move(e));
}

// previous true, current false: what GitLab reports when a draft is marked
// ready (`work_in_progress` before GitLab 13.x named it `draft`).
bool Cleared(const PayloadReader& p, const std::string& change) {
  return p.Flag(change + ".previous") && p.IsFalse(change + ".current");
}

PrAction GitLabAction(std::string_view action, const PayloadReader& p) {
  if (action == "open") return PrAction::kOpened;
  if (action == "reopen") return PrAction::kReopened;
  if (action == "close") return PrAction::kClosed;
  if (action == "merge") return PrAction::kMerged;
  if (action != "update") return PrAction::kOther;  // approved, approval, unapproved...
  // oldrev is only present when the update pushed code.
  if (!p.Text("object_attributes.oldrev").empty()) return PrAction::kUpdated;
  if (p.Find("changes.target_branch") != nullptr) return PrAction::kUpdated;
  if (Cleared(p, "changes.draft") || Cleared(p, "changes.work_in_progress")) {
    return PrAction::kReadyForReview;
  }
  return PrAction::kOther;
}

Result<ForgeEvent> GitLabMergeRequest(PayloadReader& p, ForgeEvent e) {
  SetPullRequest(p.NeedInteger("object_attributes.iid"), "refs/merge-requests/", &e);
  e.source_branch = p.Need("object_attributes.source_branch");
  e.target_branch = p.Need("object_attributes.target_branch");
  e.action_name = p.Text("object_attributes.action");
  e.head_sha_hint = p.Text("object_attributes.last_commit.id");
  // `work_in_progress` is the older name of `draft`.
  e.draft = p.Find("object_attributes.draft") != nullptr
                ? p.Flag("object_attributes.draft")
                : p.Flag("object_attributes.work_in_progress");
  std::string source = p.Id("object_attributes.source_project_id");
  std::string target = p.Id("object_attributes.target_project_id");
  e.from_fork = !source.empty() && !target.empty() && source != target;
  e.action = GitLabAction(e.action_name, p);
  AddGitLabUrls(p, &e);
  p.AddUrls("object_attributes.target", kGitLabProjectUrls, &e.repo_urls);
  p.NeedUrls(e.repo_urls, "project.git_http_url");
  return p.Finish(std::move(e));
}

// ---- Gitea --------------------------------------------------------------

Result<ForgeEvent> GiteaPush(PayloadReader& p, ForgeEvent e) {
  std::string ref = p.Need("ref");
  p.AddUrls("repository", kGiteaRepoUrls, &e.repo_urls);
  p.NeedUrls(e.repo_urls, "repository.clone_url");
  SetPushedRef(ref, p.Text("after"), false, &e);
  return p.Finish(std::move(e));
}

// Gitea reports a deleted branch only as a "delete" event, with the short
// name in "ref"; no push event follows.
Result<ForgeEvent> GiteaDelete(PayloadReader& p, ForgeEvent e) {
  std::string ref_type = p.Need("ref_type");
  std::string ref = p.Need("ref");
  p.AddUrls("repository", kGiteaRepoUrls, &e.repo_urls);
  p.NeedUrls(e.repo_urls, "repository.clone_url");
  if (ref_type == "branch") {
    constexpr std::string_view kHeads = "refs/heads/";
    e.kind = Kind::kPush;
    e.branch = ref.starts_with(kHeads) ? ref.substr(kHeads.size()) : ref;
    e.branch_deleted = true;
  } else {
    Ignore(&e, "deleted " + ref_type + " " + ref + ": triggers follow branches");
  }
  return p.Finish(std::move(e));
}

PrAction GiteaAction(std::string_view action, const PayloadReader& p, bool draft) {
  if (action == "opened") return PrAction::kOpened;
  if (action == "reopened") return PrAction::kReopened;
  if (action == "synchronized") return PrAction::kUpdated;
  if (action == "closed") return ClosedAction(p);
  if (action == "edited") {
    if (p.Find("changes.ref") != nullptr) return PrAction::kUpdated;  // new target branch
    // A Gitea draft is a title prefix: losing it is being marked ready.
    if (!draft && HasWipPrefix(p.Text("changes.title.from"))) return PrAction::kReadyForReview;
  }
  return PrAction::kOther;
}

// head.ref is "refs/pull/N/head" when the head branch is gone; head.label
// then still names it.
std::string GiteaSourceBranch(PayloadReader& p) {
  std::string ref = p.Need("pull_request.head.ref");
  std::string label = p.Text("pull_request.head.label");
  return ref.starts_with("refs/") && !label.empty() ? label : ref;
}

Result<ForgeEvent> GiteaPullRequest(PayloadReader& p, ForgeEvent e) {
  e.action_name = p.Need("action");
  SetPullRequest(p.NeedInteger("number"), "refs/pull/", &e);
  e.source_branch = GiteaSourceBranch(p);
  e.target_branch = p.Need("pull_request.base.ref");
  e.head_sha_hint = p.Need("pull_request.head.sha");
  e.draft = p.Find("pull_request.draft") != nullptr ? p.Flag("pull_request.draft")
                                                    : HasWipPrefix(p.Text("pull_request.title"));
  e.from_fork = HeadIsFork(p);
  e.action = GiteaAction(e.action_name, p, e.draft);
  p.AddUrls("repository", kGiteaRepoUrls, &e.repo_urls);
  p.NeedUrls(e.repo_urls, "repository.clone_url");
  return p.Finish(std::move(e));
}

// ---- dispatch -----------------------------------------------------------

using Reader = Result<ForgeEvent> (*)(PayloadReader&, ForgeEvent);

Result<ForgeEvent> Read(ForgeEvent e, std::string_view body, Reader reader) {
  std::string what = std::string(ForgeTitle(e.forge)) + " " + e.event_name + " payload";
  auto p = PayloadReader::Parse(std::move(what), body);
  if (!p) return std::unexpected(p.error());
  return reader(*p, std::move(e));
}

Result<ForgeEvent> ParseGitHub(ForgeEvent e, std::string_view body) {
  if (e.event_name == "push") return Read(std::move(e), body, GitHubPush);
  if (e.event_name == "pull_request") return Read(std::move(e), body, GitHubPullRequest);
  if (e.event_name == "ping") return Read(std::move(e), body, GitHubPing);
  return NotHandled(std::move(e));
}

Result<ForgeEvent> ParseGitLab(ForgeEvent e, std::string_view body) {
  if (e.event_name == "Push Hook" || e.event_name == "Tag Push Hook") {
    return Read(std::move(e), body, GitLabPush);
  }
  if (e.event_name == "Merge Request Hook") return Read(std::move(e), body, GitLabMergeRequest);
  if (e.event_name == "System Hook") {
    return Ignored(std::move(e),
                   "GitLab system hooks are not handled: add a project or group webhook instead");
  }
  return NotHandled(std::move(e));
}

Result<ForgeEvent> ParseGitea(ForgeEvent e, std::string_view body) {
  if (e.event_name == "push") return Read(std::move(e), body, GiteaPush);
  if (e.event_name == "pull_request") return Read(std::move(e), body, GiteaPullRequest);
  if (e.event_name == "delete") return Read(std::move(e), body, GiteaDelete);
  if (e.event_name == "create") {
    return Ignored(std::move(e), "a created branch or tag also arrives as a push event");
  }
  return NotHandled(std::move(e));
}

}  // namespace

Result<ForgeEvent> ParseEvent(Forge forge, std::string_view event_name, std::string_view body) {
  ForgeEvent e;
  e.forge = forge;
  e.event_name = std::string(event_name);
  switch (forge) {
    case Forge::kGitHub: return ParseGitHub(std::move(e), body);
    case Forge::kGitLab: return ParseGitLab(std::move(e), body);
    case Forge::kGitea: return ParseGitea(std::move(e), body);
  }
  return Fail("unknown forge");
}

}  // namespace gitopsd::triggers
