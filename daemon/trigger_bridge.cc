#include "daemon/trigger_bridge.h"

#include <spdlog/spdlog.h>

#include "daemon/flow_runs.h"
#include "daemon/mirrors.h"
#include "daemon/runner/engine.h"
#include "sync/git.h"
#include "sync/store.h"

namespace gitopsd::daemon {
namespace {

using triggers::FireOutcome;
using triggers::TriggerEvent;

constexpr std::string_view kHeads = "refs/heads/";

// "refs/pull/12/head" / "refs/merge-requests/12/head" -> "12"; "" otherwise.
std::string PullRequestNumber(std::string_view ref) {
  for (std::string_view prefix : {std::string_view("refs/pull/"), std::string_view("refs/merge-requests/")}) {
    if (!ref.starts_with(prefix) || !ref.ends_with("/head")) continue;
    std::string_view number = ref.substr(prefix.size(), ref.size() - prefix.size() - 5);
    if (!number.empty() && number.find_first_not_of("0123456789") == std::string_view::npos) {
      return std::string(number);
    }
  }
  return "";
}

std::string Text(const json::Value& v, std::string_view key) {
  const json::Value* found = v.is_object() ? v.Find(key) : nullptr;
  return found && found->is_string() ? found->as_string() : "";
}

}  // namespace

// ---- Git ----

Result<triggers::RemoteHeads> MirrorGit::ListHeads(const std::string& repository) {
  const auto config = mirrors_.Config(repository);
  if (!config) return Fail("repository \"" + repository + "\" is not configured");
  auto mirror = mirrors_.Open(repository);
  if (!mirror) return std::unexpected(mirror.error());
  auto refs = (*mirror)->ListRemote(config->credentials);
  if (!refs) return std::unexpected(refs.error());
  triggers::RemoteHeads heads;
  std::map<std::string, std::string> pulls;
  for (const git::RemoteRef& ref : *refs) {
    if (ref.name.starts_with(kHeads)) {
      heads.branches[ref.name.substr(kHeads.size())] = ref.id;
    } else if (std::string number = PullRequestNumber(ref.name); !number.empty()) {
      heads.pull_requests[number] = ref.id;
      pulls[number] = ref.name;
    }
  }
  std::lock_guard lock(mu_);
  pull_refs_[repository] = std::move(pulls);
  return heads;
}

Status MirrorGit::Fetch(const std::string& repository, const std::string& branch, const std::string& pull_request,
                        const std::string& sha) {
  auto mirror = mirrors_.Open(repository);
  if (!mirror) return std::unexpected(mirror.error());
  if ((*mirror)->HasCommit(sha)) return Ok();
  if (on_fetch_) on_fetch_(repository);
  if (pull_request.empty()) {
    auto head = mirrors_.FetchBranch(repository, branch);
    if (!head) return std::unexpected(head.error());
  } else {
    std::string remote_ref;
    {
      std::lock_guard lock(mu_);
      auto repo = pull_refs_.find(repository);
      if (repo != pull_refs_.end()) {
        if (auto it = repo->second.find(pull_request); it != repo->second.end()) remote_ref = it->second;
      }
    }
    if (remote_ref.empty()) remote_ref = "refs/pull/" + pull_request + "/head";
    const auto config = mirrors_.Config(repository);
    if (!config) return Fail("repository \"" + repository + "\" is not configured");
    auto fetched = (*mirror)->FetchRef(remote_ref, "refs/gitopsd/pull/" + pull_request, config->credentials);
    if (!fetched) return std::unexpected(fetched.error());
  }
  if (!(*mirror)->HasCommit(sha)) {
    return Fail("commit " + sha + " is no longer the head: the ref moved on since it was listed");
  }
  return Ok();
}

Result<std::vector<triggers::Commit>> MirrorGit::NewCommits(const std::string& repository, const std::string& from,
                                                            const std::string& to, size_t limit) {
  auto mirror = mirrors_.Open(repository);
  if (!mirror) return std::unexpected(mirror.error());
  // A new branch brought its head commit: its whole history is not "new".
  auto commits = (*mirror)->CommitsBetween(from, to, from.empty() ? 1 : limit);
  if (!commits) return std::unexpected(commits.error());
  std::vector<triggers::Commit> out;
  for (git::CommitInfo& c : *commits) out.push_back(triggers::Commit{std::move(c.id), std::move(c.message)});
  return out;
}

Result<std::vector<std::string>> MirrorGit::ChangedPaths(const std::string& repository, const std::string& from,
                                                         const std::string& to) {
  auto mirror = mirrors_.Open(repository);
  if (!mirror) return std::unexpected(mirror.error());
  // A previous head the mirror does not have compares with the empty tree.
  const std::string base = !from.empty() && (*mirror)->HasCommit(from) ? from : "";
  auto changes = (*mirror)->DiffTrees(base, to, "");
  if (!changes) return std::unexpected(changes.error());
  std::vector<std::string> paths;
  for (const git::Change& c : *changes) {
    paths.push_back(c.new_path);
    if (c.old_path != c.new_path) paths.push_back(c.old_path);
  }
  return paths;
}

std::string MirrorGit::UrlOf(const std::string& repository) {
  const auto config = mirrors_.Config(repository);
  return config ? git::RedactUrl(config->url) : "";
}

// ---- Firing ----

json::Value TriggerRefsOf(const TriggerEvent& event, const std::string& repo_url) {
  json::Value values = json::Value::Object({{"branch", json::Value::String(event.branch)},
                                            {"sha", json::Value::String(event.sha)},
                                            {"repoUrl", json::Value::String(repo_url)}});
  if (!event.pull_request.empty()) values.Set("pullRequestId", json::Value::String(event.pull_request));
  return json::Value::Object({{event.trigger, std::move(values)}});
}

void RunFiring::CancelQueued(const TriggerEvent& event) {
  runner::RunFilter filter;
  filter.flow_kind = event.flow.kind;
  filter.flow_name = event.flow.name;
  filter.statuses = {runner::RunStatus::kQueued};
  auto queued = runs_.engine().List(filter);
  if (!queued) return;
  for (const runner::RunRecord& run : *queued) {
    const json::Value* refs = run.trigger_refs.Find(event.trigger);
    if (!refs || Text(*refs, "branch") != event.branch || Text(*refs, "pullRequestId") != event.pull_request) {
      continue;
    }
    spdlog::info("triggers: run {} of {} \"{}\" was still queued for {}; {} is newer: cancelling it", run.id,
                 event.flow.kind, event.flow.name, Text(*refs, "sha").substr(0, 12), event.sha.substr(0, 12));
    (void)runs_.engine().Cancel(run.id);
  }
}

Result<FireOutcome> RunFiring::StartRelease(const TriggerEvent& event, const std::string& repo_url, bool coalesce) {
  if (coalesce) CancelQueued(event);
  RunOptions options;
  options.triggers = TriggerRefsOf(event, repo_url);
  options.idempotency_key = "trigger-event-" + std::to_string(event.id);
  options.description = "trigger " + event.trigger + ": " +
                        (event.pull_request.empty() ? "branch " + event.branch : "pull request #" + event.pull_request) +
                        " at " + event.sha.substr(0, 12);
  auto id = runs_.Start(event.flow.kind, event.flow.name, options);
  if (id) return FireOutcome::Started(*id);
  const runner::RunError& e = id.error();
  if (e.code == runner::RunError::Code::kConflict || e.code == runner::RunError::Code::kInvalid ||
      e.code == runner::RunError::Code::kNotFound) {
    return FireOutcome::Skipped(e.message);
  }
  return Fail(e.message);
}

Result<FireOutcome> RunFiring::UpdatePreview(const TriggerEvent& event, const std::string& repo_url) {
  if (!previews_) return FireOutcome::Skipped("previews are not running in this daemon");
  return previews_->Update(event, repo_url);
}

void RunFiring::SourceGone(const triggers::FlowKey& preview_template, const std::string& repository,
                           const std::string& branch, const std::string& pull_request, const std::string& why) {
  if (previews_) previews_->SourceGone(preview_template, repository, branch, pull_request, why);
}

// ---- flows ----

std::vector<triggers::WatchingFlow> FlowsWithTriggers::operator()() {
  std::vector<triggers::WatchingFlow> out;
  for (const char* kind : {"ReleaseFlow", "PreviewTemplate"}) {
    auto objects = store_.ListObjects(kind);
    if (!objects) {
      spdlog::error("triggers: cannot list {}s: {}", kind, objects.error().message);
      continue;
    }
    for (const store::ObjectRecord& object : *objects) {
      auto body = json::Parse(object.body, json::ParseOptions{64 << 20, 512});
      if (!body || !body->Find("triggers")) continue;
      auto parsed = triggers::ParseTriggers(*body);
      if (!parsed) {
        std::lock_guard lock(mu_);
        if (logged_.insert({object.kind + "/" + object.name, object.revision}).second) {
          spdlog::warn("triggers: {} \"{}\" (revision {}): its triggers are not used: {}", object.kind, object.name,
                       object.revision, parsed.error().message);
        }
        continue;
      }
      if (parsed->empty()) continue;
      triggers::WatchingFlow flow{.flow = {object.kind, object.name}, .triggers = std::move(*parsed)};
      const json::Value* options = body->Find("options");
      auto flag = [](const json::Value* v) { return v && v->is_bool() && v->as_bool(); };
      flow.paused = flag(body->Find("paused")) || (options && flag(options->Find("paused")));
      flow.burst_each = options && Text(*options, "triggerBurst") == "each";
      out.push_back(std::move(flow));
    }
  }
  return out;
}

}  // namespace gitopsd::daemon
