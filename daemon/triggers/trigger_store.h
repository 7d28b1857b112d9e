// What the triggers room remembers in <stateDir>/state.db (module
// "triggers"), so that a trigger fires exactly once across restarts:
//
//  - Trigger events: a new head of a watched branch (or pull request) for
//    one trigger of one flow. RecordHead() compares the head with the last
//    one handled for that (flow, trigger, branch) and, in one transaction,
//    records the event as pending and the head as handled: the same head is
//    never recorded twice, and a head seen while the daemon was down is
//    recorded by the first look after the restart. The dispatcher then
//    starts the run (idempotently, keyed by the event id) and marks the
//    event started; pending events are picked up again after a crash.
//  - Baselines: the first look at a trigger records the current heads
//    without firing (a flow added to Git does not deploy every existing
//    branch); only later heads fire.
//  - Webhook tokens (generic webhook triggers): one per flow or preview
//    template; only the SHA-256 of a token is stored, the token itself is
//    shown once when created or rotated.
//  - Forge deliveries: the ids of webhook deliveries already handled, so a
//    replayed delivery is ignored (kept 7 days).
//
// Thread-safe (one connection, serialised).
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "sync/status.h"

namespace gitopsd::triggers {

// Which flow a trigger belongs to.
struct FlowKey {
  std::string kind;  // "ReleaseFlow" | "PreviewTemplate"
  std::string name;
  bool operator==(const FlowKey&) const = default;
};

enum class EventStatus { kPending, kStarted, kSkipped };
const char* EventStatusName(EventStatus s);  // "pending", "started", "skipped"

struct TriggerEvent {
  int64_t id = 0;
  FlowKey flow;
  std::string trigger;        // the trigger's ref
  std::string repository;     // configured repository name
  std::string branch;         // the source branch
  std::string sha;            // the head that fired
  std::string previous_sha;   // the head handled before it ("" for a new branch or pull request)
  std::string pull_request;   // "" for a push; the PR / MR number otherwise
  EventStatus status = EventStatus::kPending;
  std::optional<int64_t> run_id;
  std::string reason;         // skipped: why
  int64_t created_at = 0;     // ms since the epoch
};

struct HeadSeen {
  std::string repository, branch, sha, pull_request;
};

// What gitopsd knows of a pull request beyond its head ref: forge webhooks
// tell the source branch, the draft flag and whether it is open; a pull
// request found only by polling refs/pull/N/head has an unknown ("")
// source branch.
struct PullRequestInfo {
  std::string number;
  std::string source_branch;
  bool draft = false;
  bool open = true;
};

struct WebhookToken {
  FlowKey flow;
  int64_t created_at = 0;
  int64_t last_used_at = 0;  // 0 = never
};

class TriggerStore {
 public:
  static Result<std::unique_ptr<TriggerStore>> Open(const std::string& state_dir);
  ~TriggerStore();
  TriggerStore(const TriggerStore&) = delete;
  TriggerStore& operator=(const TriggerStore&) = delete;

  // ---- heads and events ----
  // Records the current heads one trigger of one flow watches (every
  // matching branch, or every open pull request), in one transaction: a
  // pending event for each head new for its (branch, pull request), none
  // for a head handled before. The very first look at a trigger is a
  // baseline: its heads are recorded as handled without events, unless
  // `fire_on_first` (previews of pull requests already open). A branch
  // first seen after the baseline fires.
  Result<std::vector<TriggerEvent>> RecordHeads(const FlowKey& flow, const std::string& trigger,
                                                const std::vector<HeadSeen>& heads, bool fire_on_first);
  // Forgets the handled head of a (flow, trigger, branch, pull request): a
  // deleted branch or a closed PR, so that a later branch of that name (or
  // the PR reopened) fires. For a pull request the branch is not compared.
  Status ForgetHead(const FlowKey& flow, const std::string& trigger, const std::string& branch,
                    const std::string& pull_request);
  // The heads handled for one trigger of a flow (its branches and pull
  // requests as last seen).
  Result<std::vector<HeadSeen>> Handled(const FlowKey& flow, const std::string& trigger);
  Result<std::vector<TriggerEvent>> Pending();
  Status MarkStarted(int64_t event_id, int64_t run_id);
  Status MarkSkipped(int64_t event_id, const std::string& reason);
  // Newest first; `flow` empty = all.
  Result<std::vector<TriggerEvent>> Events(const FlowKey& flow, int limit);

  // ---- pull requests ----
  // Records what a webhook said of a pull request (an empty source branch
  // keeps the one known).
  Status NotePullRequest(const std::string& repository, const PullRequestInfo& pr);
  // Every pull request known for the repository, by number.
  Result<std::vector<PullRequestInfo>> PullRequests(const std::string& repository);

  // ---- webhook tokens ----
  // A new random token for `flow` (replacing any earlier one); returned once.
  Result<std::string> RotateToken(const FlowKey& flow);
  Result<std::optional<FlowKey>> FlowOfToken(const std::string& token);
  Result<std::vector<WebhookToken>> Tokens();
  Status RemoveToken(const FlowKey& flow);

  // ---- forge deliveries ----
  // True the first time `delivery_id` is seen for `forge`; false for a replay.
  // Deliveries older than 7 days are forgotten.
  Result<bool> FirstDelivery(const std::string& forge, const std::string& delivery_id);

 private:
  struct Impl;
  explicit TriggerStore(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace gitopsd::triggers
