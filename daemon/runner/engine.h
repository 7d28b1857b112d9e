// The release runner's engine: runs a flow's `spec` (one root Workflow node
// tree) as a run, node by node, every step persisted in the runner's tables
// (runs.h) so that a daemon restart continues where it stopped.
//
// The engine knows nothing about processes. Workflow and Approval nodes are
// its own; every other kind (Build, JobRun, Release, AddonBackup, Action,
// Condition, Message...) goes to a NodeExecutor, which the runtime
// integration implements.
//
// What a caller can rely on:
//  - Start() dry-runs the flow first: every `${...}` of every node must be
//    able to resolve from the arguments, the trigger refs and the refs of
//    nodes that run before it; otherwise nothing is created and the error
//    names each node's JSON path and expression.
//  - Sequential workflows run their steps in order and stop at the first
//    failed step (the rest become "skipped" with "not run: ..."); parallel
//    ones start all steps together and finish when all have; nesting to any
//    depth. skipNodeExecution, condition (waiting outcomes are polled with a
//    backoff), timeoutDuration, retries / settings.maxAttempts, Approval
//    (approval_wait until Approve) and Cancel as in the grammar (§1.3, §2.5).
//  - A node's `${...}` are resolved just before it runs, with the outputs of
//    the nodes completed by then.
//  - options.concurrencyPolicy per flow: allow, queue (one at a time, in
//    creation order), forbid (a new run is refused while one is active).
//  - A node is never executed twice blindly: after a restart, a node that
//    was running or waiting is given to NodeExecutor::Recheck with the data
//    it last reported. A node whose attempt failed ("retrying") gets a new
//    attempt.
//  - Destroying the engine stops it without changing any run's state (what
//    a crash would leave, minus the crash); a new engine over the same
//    database resumes running runs and starts queued ones in order.
//
// Thread-safe. One thread per active run, plus one per parallel branch.
#pragma once
#include <chrono>
#include <cstdint>
#include <expected>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "daemon/runner/evaluate.h"
#include "daemon/runner/runs.h"
#include "sync/json.h"
#include "sync/status.h"

namespace gitopsd::runner {

// What an executor is asked to do.
struct NodeContext {
  int64_t run_id = 0;
  std::string node_path;  // "0.2.1": with run_id and attempt, an idempotency key
  std::string kind;       // "Build", "JobRun", "Release", ...
  std::string ref;        // "" when the node has none
  std::string condition;  // "", "success", "running": wait for completion (answer kWaiting meanwhile)
  json::Value spec;       // the node's "spec", every ${...} resolved
  int attempt = 1;        // 1-based
  // True once the run is cancelled, the node's timeout has passed, or the
  // daemon is shutting down: stop as soon as you can. After a shutdown the
  // node is Rechecked on the next start, whatever you return.
  std::function<bool()> cancelled;
  // True once the run is cancelled or the node's timeout has passed, but not
  // for a daemon shutdown: work this node started may then be stopped (a job
  // or build killed, a deploy's new process stopped with the old one kept).
  // On a shutdown work goes on, and is Rechecked on the next start.
  std::function<bool()> abandoned;
  // Appends a line to the node's log (kept in the run, capped).
  std::function<void(std::string_view)> log;
};

struct NodeOutcome {
  enum class Status { kSuccess, kFailure, kWaiting /* poll again later */ };
  Status status = Status::kSuccess;
  json::Value data;   // response data: ${refs.<ref>...}; kWaiting: handed back to Recheck
  std::string error;  // kFailure: what went wrong

  static NodeOutcome Success(json::Value data = json::Value::Object());
  static NodeOutcome Failure(std::string error);
  static NodeOutcome Waiting(json::Value data = json::Value::Object());
};

class NodeExecutor {
 public:
  virtual ~NodeExecutor() = default;
  // Starts or does the node's work. May block; should watch cancelled().
  virtual NodeOutcome Execute(const NodeContext& ctx) = 0;
  // Finds out what became of work started earlier: polling after kWaiting,
  // and after a daemon restart for a node that was running (then
  // `recorded_data` is what it last reported, or null when Execute had not
  // returned; use run_id + node_path + attempt to find what it started).
  virtual NodeOutcome Recheck(const NodeContext& ctx, const json::Value& recorded_data) = 0;
  // For the dry run: whether a resource a node names exists (evaluate.h's
  // DryRun). Empty (the default) when this executor has none to check.
  virtual ResourceExists ResourceLookup() { return {}; }
};

struct EngineOptions {
  std::string state_db;  // <stateDir>/state.db
  // Waiting nodes are rechecked after poll_initial, doubling up to poll_max.
  std::chrono::milliseconds poll_initial{1000};
  std::chrono::milliseconds poll_max{30000};
  // Between attempts when a node's settings.backoff.delay does not say.
  std::chrono::milliseconds retry_delay{10000};
  // Attempts when a node sets neither `retries` nor settings.maxAttempts.
  int default_max_attempts = 1;
};

struct StartRequest {
  std::string flow_kind = "ReleaseFlow";
  std::string flow_name;
  std::string flow_revision;
  json::Value body;          // the flow object: "spec", "arguments", "options"...
  json::Value args;          // object: overrides of the flow's "arguments"
  json::Value trigger_refs;  // object: trigger ref → {branch, sha, pullRequestId, repoUrl, ...}
  std::string name;
  std::string description;
  RunKind kind = RunKind::kRelease;
  std::optional<int64_t> rollback_of;
  // When set, a second Start with the same key starts nothing and answers
  // the id of the run the first one created (a trigger event retried after
  // a crash between starting its run and recording that it did).
  std::string idempotency_key;
};

struct RunError {
  enum class Code { kInvalid, kNotFound, kConflict, kInternal };  // HTTP 422, 404, 409, 500
  Code code = Code::kInternal;
  std::string message;
  std::vector<std::string> details;  // kInvalid: one line per dry-run problem
};
template <class T>
using RunResult = std::expected<T, RunError>;

class Engine {
 public:
  // Opens the state database and resumes what a previous engine left:
  // runs that were running continue, queued runs start in order.
  // `executor` must outlive the engine.
  static Result<std::unique_ptr<Engine>> Open(EngineOptions options, NodeExecutor* executor);
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // Dry-runs, applies the concurrency policy and creates the run (queued,
  // or started at once). kInvalid: the dry run failed; kConflict: refused
  // by concurrencyPolicy "forbid".
  RunResult<int64_t> Start(const StartRequest& request);

  RunResult<RunRecord> Get(int64_t id);                       // with its nodes
  RunResult<std::vector<RunRecord>> List(const RunFilter& filter);  // without nodes
  RunResult<std::vector<RunCount>> Count();                         // RunStore::Count

  // Aborts the run: running nodes see cancelled() and end "aborted", nodes
  // not started end "skipped"; the run ends "aborted". Returns at once.
  RunResult<void> Cancel(int64_t id);
  // Gives one approval to every node of the run that waits in
  // approval_wait; a node goes on once it has spec.amount approvals.
  RunResult<void> Approve(int64_t id);

  // Blocks until the run has concluded or `timeout` passed; its status then.
  RunResult<RunStatus> Wait(int64_t id, std::chrono::milliseconds timeout);

  class Impl;

 private:
  explicit Engine(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace gitopsd::runner
