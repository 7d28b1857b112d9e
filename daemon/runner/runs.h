// The release runner's records: runs and their nodes, kept in the runner's
// own tables of the state database (<stateDir>/state.db, module "runner").
//
// A run is one execution of a flow's `spec` (a snapshot of the flow's body
// and revision is kept with it, so a run never changes under a later edit);
// a node row exists for every node of the tree from the moment the run is
// created, addressed by its path: "0" is the root workflow, "0.2" its third
// step, "0.2.1" that step's second step.
//
// Every state change is one transaction; the store serialises its own
// connection, so every method is thread-safe. Times are Unix milliseconds.
#pragma once
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "sync/json.h"
#include "sync/sqlite.h"
#include "sync/status.h"

namespace gitopsd::runner {

enum class RunStatus { kPending, kQueued, kRunning, kApprovalWait, kSuccess, kFailure, kAborted };
enum class NodeStatus {
  kPending, kRunning, kWaiting, kRetrying, kApprovalWait, kSuccess, kFailure, kSkipped, kAborted
};
enum class RunKind { kRelease, kRollback };

// "pending", "queued", "running", "approval_wait", "success", "failure", "aborted".
const char* RunStatusName(RunStatus s);
std::optional<RunStatus> ParseRunStatus(std::string_view s);
// "pending", "running", "waiting", "retrying", "approval_wait", "success",
// "failure", "skipped", "aborted".
const char* NodeStatusName(NodeStatus s);
std::optional<NodeStatus> ParseNodeStatus(std::string_view s);
// Concluded: success, failure or aborted.
bool IsFinished(RunStatus s);
// Success, failure, skipped or aborted.
bool IsFinished(NodeStatus s);

struct NodeRecord {
  std::string path;  // "0.2.1"
  std::string kind;  // "Workflow", "Build", ...
  std::string ref;   // "" when the node has none
  NodeStatus status = NodeStatus::kPending;
  int attempts = 0;       // Execute calls so far
  int max_attempts = 0;   // 0 until the node first runs
  int64_t started_at = 0;  // 0: not started
  int64_t ended_at = 0;    // 0: not ended
  json::Value spec;        // the node as resolved when it started (null before)
  json::Value data;        // response data: becomes ${refs.<ref>...} (null if none)
  std::string error;
  std::string log;  // capped (RunStore::kMaxLogBytes), newest text kept
};

struct RunRecord {
  int64_t id = 0;
  std::string flow_kind;  // "ReleaseFlow", "Template", "PreviewTemplate"
  std::string flow_name;
  std::string flow_revision;
  json::Value body;  // the flow as it was when the run was created
  RunStatus status = RunStatus::kPending;
  RunKind kind = RunKind::kRelease;
  std::optional<int64_t> rollback_of;
  std::string idempotency_key;  // written at Create only ("" = none)
  std::string name;
  std::string description;
  json::Value args;          // object: every argument of the run (defaults + overrides)
  json::Value trigger_refs;  // object: trigger ref → {branch, sha, pullRequestId, repoUrl}
  bool cancel_requested = false;
  std::string error;  // why the run failed or was aborted
  int64_t created_at = 0;
  int64_t started_at = 0;
  int64_t ended_at = 0;
  std::vector<NodeRecord> nodes;  // in path order; empty when listed without nodes
};

// The run as the HTTP API shows it:
//   {"id", "flow": {"kind", "name", "revision"}, "kind": "release"|"rollback",
//    "rollbackOf", "name", "description", "status", "concluded", "error",
//    "args", "refs", "createdAt", "startedAt", "endedAt",   (ISO 8601 UTC or null)
//    "nodes": [{"path", "kind", "ref", "status", "attempts", "maxAttempts",
//               "startedAt", "endedAt", "data", "error", "log"}]}
// "nodes" only when the record holds them; "spec" (the snapshot) only when
// with_spec. Argument values are shown as given: a caller that shows runs
// to readers should mask secret arguments first.
json::Value RunToJson(const RunRecord& run, bool with_spec = false);

struct RunFilter {
  std::string flow_kind;  // "" = any
  std::string flow_name;  // "" = any
  std::vector<RunStatus> statuses;  // empty = any
  size_t limit = 100;     // newest first
  bool oldest_first = false;
};

// How many runs of one flow are in one status.
struct RunCount {
  std::string flow_kind;
  std::string flow_name;
  RunStatus status = RunStatus::kPending;
  int64_t count = 0;
};

// A change to one node. Unset fields keep their value.
struct NodeUpdate {
  std::optional<NodeStatus> status;
  std::optional<int> attempts;
  std::optional<int> max_attempts;
  std::optional<int64_t> started_at;
  std::optional<int64_t> ended_at;
  std::optional<json::Value> spec;
  std::optional<json::Value> data;
  std::optional<std::string> error;
};

class RunStore {
 public:
  static constexpr size_t kMaxLogBytes = 64 * 1024;

  // Opens <state_db> and brings the runner's tables up to date.
  static Result<std::unique_ptr<RunStore>> Open(const std::string& state_db);
  RunStore(const RunStore&) = delete;
  RunStore& operator=(const RunStore&) = delete;

  // Inserts the run (id, created_at assigned) and its nodes in one
  // transaction; returns the id.
  Result<int64_t> Create(const RunRecord& run, const std::vector<NodeRecord>& nodes);
  // The run created with this idempotency key, if any.
  Result<std::optional<int64_t>> FindByKey(const std::string& key);

  Result<std::optional<RunRecord>> Get(int64_t id, bool with_nodes = true);
  Result<std::vector<RunRecord>> List(const RunFilter& filter);  // without nodes
  // Every run the tables hold, counted by flow and status (for metrics).
  Result<std::vector<RunCount>> Count();

  // Sets the status (and error unless null); stamps started_at when it
  // becomes running for the first time and ended_at when it finishes.
  Status SetRunStatus(int64_t id, RunStatus status, const std::string* error = nullptr);
  Status RequestCancel(int64_t id);

  Status UpdateNode(int64_t run_id, const std::string& path, const NodeUpdate& update);
  // Sets every still-pending node at or below `path` ("" = the whole run)
  // to `status` with `error`, in one transaction.
  Status SettlePending(int64_t run_id, const std::string& path, NodeStatus status, const std::string& error);
  // Appends to the node's log, keeping the newest kMaxLogBytes.
  Status AppendLog(int64_t run_id, const std::string& path, std::string_view text);

 private:
  explicit RunStore(sqlite::Database db) : db_(std::move(db)) {}
  Result<std::vector<NodeRecord>> LoadNodes(int64_t run_id);

  std::mutex mu_;
  sqlite::Database db_;
};

int64_t NowMillis();

}  // namespace gitopsd::runner
