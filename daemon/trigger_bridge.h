// The daemon's side of the dispatcher (triggers/dispatcher.h): Git through
// the configured repositories' mirrors, and firing through the release
// runner (FlowRuns) and the previews.
//
//  - MirrorGit lists a remote's branches and pull request heads
//    (refs/pull/N/head on GitHub and Gitea, refs/merge-requests/N/head on
//    GitLab) with one ls-remote, fetches the one ref an event needs, and
//    reads commits and changed paths from the mirror. Fetches of one
//    repository are serialised with Mirrors' own.
//  - RunFiring starts a release flow's run for an event with the event's
//    trigger refs {branch, sha, repoUrl, pullRequestId} and the idempotency
//    key "trigger-event-<id>"; with `coalesce`, runs of the same flow,
//    trigger and branch still queued are cancelled first (the newest head
//    wins). A flow whose concurrencyPolicy forbids a second run skips the
//    event, saying so. Previews go to `previews` when set.
//  - FlowsWithTriggers reads the ReleaseFlows and PreviewTemplates in force
//    and parses their triggers; a flow whose triggers do not parse is left
//    out and logged once per revision.
#pragma once
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "daemon/triggers/dispatcher.h"

namespace gitopsd::store {
class Store;
}

namespace gitopsd::daemon {

class Mirrors;
class FlowRuns;

class MirrorGit final : public triggers::GitView {
 public:
  // `on_fetch` (may be empty) hears of each fetch made.
  explicit MirrorGit(const Mirrors& mirrors, std::function<void(const std::string&)> on_fetch = {})
      : mirrors_(mirrors), on_fetch_(std::move(on_fetch)) {}
  Result<triggers::RemoteHeads> ListHeads(const std::string& repository) override;
  Status Fetch(const std::string& repository, const std::string& branch, const std::string& pull_request,
               const std::string& sha) override;
  Result<std::vector<triggers::Commit>> NewCommits(const std::string& repository, const std::string& from,
                                                   const std::string& to, size_t limit) override;
  Result<std::vector<std::string>> ChangedPaths(const std::string& repository, const std::string& from,
                                                const std::string& to) override;
  std::string UrlOf(const std::string& repository) override;

 private:
  const Mirrors& mirrors_;
  std::function<void(const std::string&)> on_fetch_;
  std::mutex mu_;
  // repository -> pull request number -> the remote ref of its head
  std::map<std::string, std::map<std::string, std::string>> pull_refs_;
};

// Previews, as the dispatcher needs them (implemented by the previews room).
class PreviewFiring {
 public:
  virtual ~PreviewFiring() = default;
  virtual Result<triggers::FireOutcome> Update(const triggers::TriggerEvent& event, const std::string& repo_url) = 0;
  virtual void SourceGone(const triggers::FlowKey& preview_template, const std::string& repository,
                          const std::string& branch, const std::string& pull_request, const std::string& why) = 0;
};

class RunFiring final : public triggers::Firing {
 public:
  RunFiring(FlowRuns& runs, PreviewFiring* previews) : runs_(runs), previews_(previews) {}
  Result<triggers::FireOutcome> StartRelease(const triggers::TriggerEvent& event, const std::string& repo_url,
                                             bool coalesce) override;
  Result<triggers::FireOutcome> UpdatePreview(const triggers::TriggerEvent& event,
                                              const std::string& repo_url) override;
  void SourceGone(const triggers::FlowKey& preview_template, const std::string& repository, const std::string& branch,
                  const std::string& pull_request, const std::string& why) override;

 private:
  void CancelQueued(const triggers::TriggerEvent& event);

  FlowRuns& runs_;
  PreviewFiring* previews_;
};

// The trigger refs of an event: {"<trigger>": {branch, sha, repoUrl[, pullRequestId]}}.
json::Value TriggerRefsOf(const triggers::TriggerEvent& event, const std::string& repo_url);

class FlowsWithTriggers {
 public:
  explicit FlowsWithTriggers(store::Store& store) : store_(store) {}
  std::vector<triggers::WatchingFlow> operator()();

 private:
  store::Store& store_;
  std::mutex mu_;
  std::set<std::pair<std::string, int64_t>> logged_;  // (kind/name, revision) whose triggers did not parse
};

}  // namespace gitopsd::daemon
