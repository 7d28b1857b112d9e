// Private to the run engine (engine.h): Engine::Impl, the state of a run
// being executed, and what the engine reads from a node's JSON. Engine::Impl
// is split as
//   engine.cc        the lifecycle of runs (resume, launch, queue, conclude)
//                    and the public calls
//   engine_walk.cc   walking a run's node tree, node by node, and recording
//                    each node's state changes
//   engine_nodes.cc  what a node's JSON says: its children and its settings
//                    (retries, backoff, timeout)
// Nothing outside daemon/runner/engine*.cc includes this header.
#pragma once
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "daemon/runner/engine.h"

namespace gitopsd::runner {
// Named, not anonymous: Engine::Impl holds these.
namespace detail {

using Clock = std::chrono::system_clock;
using TimePoint = Clock::time_point;
using std::chrono::milliseconds;

// ---- the node tree -----------------------------------------------------

// A string member of a node ("" when absent or not a string).
std::string StringField(const json::Value& node, std::string_view key);
bool IsParallel(const json::Value& node);
std::string ChildPath(const std::string& path, size_t i);
std::string ChildWhere(const std::string& where, size_t i);
// The records of `node` and all nodes below it, depth first.
void CollectNodes(const json::Value& node, const std::string& path, std::vector<NodeRecord>& out);

// ---- node settings -----------------------------------------------------

struct NodePolicy {
  int max_attempts = 1;
  milliseconds retry_delay{0};
  std::optional<double> timeout_seconds;
};

milliseconds Seconds(double s);
std::string SecondsText(double s);  // "3s", "1.5s"
// maxAttempts, backoff.delay, retries and timeoutDuration of a node, with the
// engine's defaults.
Result<NodePolicy> ReadPolicy(const json::Value& node, const EngineOptions& options);
// The approvals (or amount) a node's data recorded; `fallback` when none.
int RecordedApprovals(const json::Value& data, std::string_view key, int fallback);

// ---- a run being executed ----------------------------------------------

enum class Outcome { kSuccess, kFailure, kSkipped, kAborted, kStopped /* daemon stopping: state left as is */ };
enum class Wake { kElapsed, kCancelled, kStopping };

struct Approvals {
  int given = 0;
  int amount = 1;
};

// One run being executed. Lives as long as its thread.
struct ActiveRun {
  int64_t id = 0;
  std::string flow_kind;
  std::string flow_name;
  json::Value body;
  json::Value args;
  NameSet all_refs;
  std::map<std::string, NodeRecord> recorded;  // node states when this engine took the run up
  std::atomic<bool> cancel{false};
  std::atomic<bool> store_failed{false};

  std::mutex mu;  // guards refs and first_error
  RefMap refs;
  std::string first_error;

  // Guarded by Engine::Impl::mu_.
  std::map<std::string, Approvals> approvals;  // nodes waiting in approval_wait
  std::thread thread;

  const NodeRecord* Recorded(const std::string& path) const {
    auto it = recorded.find(path);
    return it == recorded.end() ? nullptr : &it->second;
  }
};

}  // namespace detail

using detail::ActiveRun;
using detail::Approvals;
using detail::ChildPath;
using detail::ChildWhere;
using detail::Clock;
using detail::CollectNodes;
using detail::IsParallel;
using detail::NodePolicy;
using detail::Outcome;
using detail::ReadPolicy;
using detail::RecordedApprovals;
using detail::Seconds;
using detail::SecondsText;
using detail::StringField;
using detail::TimePoint;
using detail::Wake;
using std::chrono::milliseconds;

class Engine::Impl {
 public:
  Impl(EngineOptions options, NodeExecutor* executor, std::unique_ptr<RunStore> store)
      : options_(std::move(options)), executor_(executor), store_(std::move(store)) {}
  ~Impl() { Stop(); }

  Status Resume();
  void Stop();
  RunResult<int64_t> Start(const StartRequest& request);
  RunResult<RunRecord> Get(int64_t id);
  RunResult<std::vector<RunRecord>> List(const RunFilter& filter);
  RunResult<std::vector<RunCount>> Count();
  RunResult<void> Cancel(int64_t id);
  RunResult<void> Approve(int64_t id);
  RunResult<RunStatus> Wait(int64_t id, milliseconds timeout);

 private:
  // Lifecycle. REQUIRES mu_ held for the *Locked ones.
  Status LaunchLocked(int64_t id);
  void StartNextQueuedLocked(const std::string& kind, const std::string& name);
  void ReapLocked();
  void RunMain(const std::shared_ptr<ActiveRun>& run);
  void Conclude(ActiveRun& run, Outcome outcome);

  // Walking the tree.
  Outcome RunNode(ActiveRun& run, const json::Value& node, const std::string& path, const std::string& where);
  Outcome RunWorkflow(ActiveRun& run, const json::Value& node, const json::Value& resolved, const std::string& path,
                      const std::string& where, bool started);
  Outcome RunSteps(ActiveRun& run, const json::Value& steps, bool parallel, const std::string& path,
                   const std::string& where);
  Outcome RunApproval(ActiveRun& run, const json::Value& resolved, const std::string& path, const NodeRecord* prior);
  Outcome RunAction(ActiveRun& run, const json::Value& resolved, const std::string& path, const NodeRecord* prior);
  std::optional<Outcome> PollWhileWaiting(ActiveRun& run, const NodeContext& ctx, NodeOutcome& out,
                                          json::Value& data, NodeStatus& last, TimePoint deadline,
                                          const NodePolicy& policy);

  // Node state changes.
  void Save(ActiveRun& run, const std::string& path, const NodeUpdate& update);
  void Log(ActiveRun& run, const std::string& path, const std::string& line);
  Outcome Succeed(ActiveRun& run, const std::string& path, const json::Value& resolved, json::Value data);
  // `started`: the node's start was recorded already (else it is stamped now).
  Outcome FailNode(ActiveRun& run, const std::string& path, const json::Value& node, const std::string& error,
                   bool started = true);
  Outcome AbortNode(ActiveRun& run, const std::string& path, const std::string& why);
  Outcome TimedOut(ActiveRun& run, const std::string& path, const json::Value& node, const NodePolicy& policy);
  Outcome SkipNode(ActiveRun& run, const std::string& path, const json::Value& resolved);

  NodeContext MakeContext(ActiveRun& run, const json::Value& resolved, const std::string& path, TimePoint deadline);
  NodeOutcome Call(bool recheck, const NodeContext& ctx, const json::Value& data);
  Wake SleepUntil(ActiveRun& run, TimePoint until);
  bool Halted(const ActiveRun& run) const { return stopping_ || run.store_failed; }

  EngineOptions options_;
  NodeExecutor* executor_;
  std::unique_ptr<RunStore> store_;

  std::mutex mu_;  // guards active_, finished_, approvals; waits use cv_
  std::condition_variable cv_;
  std::atomic<bool> stopping_{false};
  std::map<int64_t, std::shared_ptr<ActiveRun>> active_;
  std::vector<std::thread> finished_;  // threads of concluded runs, joined later
};

}  // namespace gitopsd::runner
