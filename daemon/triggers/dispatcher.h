// The dispatcher: from "a repository may have changed" to runs and
// previews, each new head exactly once.
//
// A look at a repository (RequestLook: the poll timer, a forge webhook, a
// sync) asks its remote for the heads of its branches and pull requests
// (one ls-remote), and for every Git trigger of every flow in force that
// watches the repository:
//  - records the heads the trigger watches (matching branches; open pull
//    requests whose source branch matches) in the TriggerStore, which
//    returns an event for each head new since the last look;
//  - for each event, fetches its commit and decides with the trigger's
//    rules (rules.h) from the commits since the previous head and the paths
//    they changed: a skipped event is recorded with its reason, a firing
//    one starts a run of the release flow or updates the preview;
//  - a branch that disappeared is forgotten (its branch previews are torn
//    down), as is a pull request a webhook reported closed.
// Looks of one repository never overlap; requests that arrive during a
// look are coalesced into one more look, so a burst of webhooks costs a
// few fetches, not one each. Pending events (a crash between recording and
// starting) are started on the next look of any repository and at Start().
//
// Bursts (options.triggerBurst of the flow): "newest" (the default) skips
// an event when a newer one of the same trigger and branch is pending and
// asks Firing to drop runs that event queued and that have not started;
// "each" runs every head gitopsd observed, one after another under
// concurrencyPolicy queue. Heads pushed faster than a look are observed
// together: only the newest of them is a head gitopsd sees.
//
// Thread-safe; the looks run on one thread of their own.
#pragma once
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "daemon/triggers/rules.h"
#include "daemon/triggers/trigger_store.h"
#include "sync/status.h"

namespace gitopsd::triggers {

// What a remote has now.
struct RemoteHeads {
  std::map<std::string, std::string> branches;       // branch -> commit
  std::map<std::string, std::string> pull_requests;  // number -> head commit (refs/pull/N/head, refs/merge-requests/N/head)
};

// Git as the dispatcher needs it (the daemon implements it over its mirrors).
class GitView {
 public:
  virtual ~GitView() = default;
  virtual Result<RemoteHeads> ListHeads(const std::string& repository) = 0;
  // Makes `sha` (the head of `branch`, or of pull request `pull_request`
  // when set) available in the mirror.
  virtual Status Fetch(const std::string& repository, const std::string& branch, const std::string& pull_request,
                       const std::string& sha) = 0;
  // Commits reachable from `to` and not from `from` ("" = just `to`), newest
  // first, at most `limit`.
  virtual Result<std::vector<Commit>> NewCommits(const std::string& repository, const std::string& from,
                                                 const std::string& to, size_t limit) = 0;
  // Paths changed from `from` to `to` ("" = every path of `to`).
  virtual Result<std::vector<std::string>> ChangedPaths(const std::string& repository, const std::string& from,
                                                        const std::string& to) = 0;
  // The configured URL of the repository (for ${refs.X.repoUrl}).
  virtual std::string UrlOf(const std::string& repository) = 0;
};

// What an event did: started (or re-ran) something, or was definitively
// refused (forbid while a run is active, the preview cap): then `skipped`
// says why and the event is not tried again; or it must wait (outside a
// preview template's active hours, a full cap that queues): then `waiting`
// says why and the event stays pending, tried again on each look.
struct FireOutcome {
  std::optional<int64_t> run;
  std::string skipped;
  std::string waiting;

  static FireOutcome Started(int64_t run) { return FireOutcome{run, "", ""}; }
  static FireOutcome Skipped(std::string why) { return FireOutcome{std::nullopt, std::move(why), ""}; }
  static FireOutcome Waiting(std::string why) { return FireOutcome{std::nullopt, "", std::move(why)}; }
};

// What fires (the daemon implements it over FlowRuns and the previews).
// An error is transient: the event stays pending and is tried again.
class Firing {
 public:
  virtual ~Firing() = default;
  // Starts the run of a release flow for `event`; idempotent: the same event
  // never gets two runs (after a crash between start and MarkStarted the
  // existing run is returned). `coalesce`: runs of earlier events of the
  // same trigger and branch that are still queued are cancelled.
  virtual Result<FireOutcome> StartRelease(const TriggerEvent& event, const std::string& repo_url, bool coalesce) = 0;
  // Creates or re-runs the preview of `event` (a PreviewTemplate).
  virtual Result<FireOutcome> UpdatePreview(const TriggerEvent& event, const std::string& repo_url) = 0;
  // The source of a preview is gone: a deleted branch, a closed pull request.
  virtual void SourceGone(const FlowKey& preview_template, const std::string& repository, const std::string& branch,
                          const std::string& pull_request, const std::string& why) = 0;
};

// A flow in force with Git triggers.
struct WatchingFlow {
  FlowKey flow;
  std::vector<GitTrigger> triggers;
  bool paused = false;
  bool burst_each = false;  // options.triggerBurst == "each"
};

struct DispatcherOptions {
  size_t max_commits = 200;  // commits read per event for skip flags
  // Observers (metrics); may be empty.
  std::function<void(const std::string& repository)> on_look;
  std::function<void(bool fired)> on_event;
};

class Dispatcher {
 public:
  // `flows`: the flows in force with triggers (parse errors are the
  // caller's to log). `resolve`: the configured repository a trigger's
  // repository or repoUrl names, if any.
  Dispatcher(TriggerStore& store, GitView& git, Firing& firing, std::function<std::vector<WatchingFlow>()> flows,
             std::function<std::optional<std::string>(const std::string&)> resolve, DispatcherOptions options = {});
  ~Dispatcher();  // Stop()
  Dispatcher(const Dispatcher&) = delete;
  Dispatcher& operator=(const Dispatcher&) = delete;

  void Start();
  void Stop();

  // Looks at `repository` every `interval` (polling; webhooks make it sooner).
  void Poll(const std::string& repository, std::chrono::milliseconds interval);
  // Stops polling the repository (removed from the configuration).
  void Unpoll(const std::string& repository);
  // Asks for a look at `repository` soon; returns at once.
  void RequestLook(const std::string& repository);
  // Looks now, on the caller's thread (serialised with the dispatcher's
  // own looks); for the poller, tests and benchmarks.
  Status LookNow(const std::string& repository);
  // What a forge said of a pull request (source branch, draft, open),
  // recorded between looks, never during one:
  //  - closed or merged: its previews go, and their triggers forget its head
  //    (reopened, it fires again; `why` says which for the log);
  //  - a draft no longer: triggers that ignore drafts forget its head (seen,
  //    and skipped, while it was a draft), so the next look fires for it.
  Status PullRequestNews(const std::string& repository, const PullRequestInfo& pr, const std::string& why);

  uint64_t looks() const;  // looks done since Start (each one ls-remote)

 private:
  Status Look(const std::string& repository);
  void LookAtTrigger(const std::string& repository, const RemoteHeads& heads, const WatchingFlow& flow,
                     const GitTrigger& trigger, const std::vector<PullRequestInfo>& prs);
  void StartPending();
  void Handle(const TriggerEvent& event, const std::vector<WatchingFlow>& flows,
              const std::vector<TriggerEvent>& pending);
  // An error (Git could not be read) leaves the event pending.
  Result<Decision> Decide(const TriggerEvent& event, const GitTrigger& trigger,
                          const std::vector<PullRequestInfo>& prs);
  bool Watches(const GitTrigger& trigger, const std::string& repository) const;
  void Loop();

  TriggerStore& store_;
  GitView& git_;
  Firing& firing_;
  std::function<std::vector<WatchingFlow>()> flows_;
  std::function<std::optional<std::string>(const std::string&)> resolve_;
  DispatcherOptions options_;

  std::mutex look_mu_;  // one look at a time
  std::set<int64_t> waiting_logged_;  // events whose waiting was logged (the look's thread)
  mutable std::mutex mu_;
  std::condition_variable wake_;
  std::set<std::string> requested_;
  struct Polled {
    std::chrono::milliseconds interval;
    std::chrono::steady_clock::time_point due;
  };
  std::map<std::string, Polled> polled_;
  bool stopping_ = false;
  uint64_t looks_ = 0;
  std::thread thread_;
};

}  // namespace gitopsd::triggers
