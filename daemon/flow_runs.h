// Starting runs of the flows in force: the one place that turns an object
// of the store into a runner::StartRequest. The HTTP API starts manual runs
// and rollbacks through it; the poller asks it to autorun Templates after a
// sync.
//
// What callers can rely on:
//  - A run always uses the object in force when it starts (its body and its
//    revision are snapshotted by the engine).
//  - Trigger refs a caller does not give are filled from the flow's git
//    triggers: the trigger's repository, its branch (the configured branch
//    when the branch rules allow it, else the first literal rule) and that
//    branch's fetched head. A ref that cannot be filled stays out, so the
//    dry run names the expression that needs it.
//  - Autorun starts one run per revision of a Template with
//    options.autorun: true, never for an unchanged object, and never twice
//    for one version, across daemon restarts too: the runs themselves are the
//    record (a Template run whose flow revision is the object's revision and
//    that was created after the object's last change).
//  - Thread-safe.
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <tuple>
#include <utility>

#include "daemon/runner/engine.h"
#include "sync/json.h"
#include "sync/status.h"

namespace gitopsd::store {
class Store;
struct ObjectRecord;
}  // namespace gitopsd::store

namespace gitopsd::daemon {

// The fetched head of `branch` in the configured repository `repository`.
using HeadOf = std::function<Result<std::string>(const std::string& repository,
                                                 const std::string& branch)>;

struct RunOptions {
  json::Value args;      // object of argument overrides (null = none)
  json::Value triggers;  // object: ref -> {branch, sha, ...} (null = none)
  std::string name;
  std::string description;
  std::string idempotency_key;  // runner::StartRequest::idempotency_key
};

// The flow body of a rollback of `run`: for each successful Release node a
// Release of the build it deployed to the target it deployed to, and with
// `restore_backup`, first, a restore of each backup a successful
// AddonBackup node took. kInvalid when the run deployed nothing.
runner::RunResult<json::Value> RollbackBody(const runner::RunRecord& run, bool restore_backup);

class FlowRuns {
 public:
  // `branches`: configured repository -> its synced branch, now (a
  // configuration reload may change them).
  using Branches = std::function<std::map<std::string, std::string>()>;
  FlowRuns(store::Store& store, runner::Engine& engine, HeadOf head_of, Branches branches)
      : store_(store), engine_(engine), head_of_(std::move(head_of)),
        branches_(std::move(branches)) {}
  FlowRuns(const FlowRuns&) = delete;
  FlowRuns& operator=(const FlowRuns&) = delete;

  // Starts a run of the object (kind "ReleaseFlow" or "Template") in force.
  // kNotFound when there is none.
  runner::RunResult<int64_t> Start(const std::string& kind, const std::string& name,
                                   const RunOptions& options);

  // Starts the rollback of a concluded run (kConflict while it is active).
  runner::RunResult<int64_t> Rollback(int64_t run_id, bool restore_backup);

  // Starts a run of every autorun Template of `repository` whose version in
  // force has not run yet. Problems are logged, never returned: a sync must
  // not fail because a run could not start.
  // (kind, name) of the objects a sync or write-back changed.
  using ChangedObjects = std::vector<std::pair<std::string, std::string>>;
  // Starts the autorun Templates among `changed` (all of the repository's
  // when nullptr: after a restart, when nothing says what changed).
  void Autorun(const std::string& repository, const ChangedObjects* changed);

  runner::Engine& engine() { return engine_; }

 private:
  void AutorunOne(const store::ObjectRecord& object);
  runner::RunResult<int64_t> StartObject(const store::ObjectRecord& object, const RunOptions& options);
  json::Value FillTriggerRefs(const json::Value& body, const json::Value& given);
  static std::string BranchFor(const std::map<std::string, std::string>& branches, const std::string& repository,
                               const json::Value& trigger);

  store::Store& store_;
  runner::Engine& engine_;
  HeadOf head_of_;
  Branches branches_;
  std::mutex autorun_mu_;  // one autorun pass at a time
  // (template, revision, changed at) whose autorun was refused: not
  // retried (nor logged again) until the template changes.
  std::set<std::tuple<std::string, int64_t, int64_t>> refused_;
};

}  // namespace gitopsd::daemon
