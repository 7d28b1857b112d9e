#include "daemon/runner/engine.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <condition_variable>
#include <map>
#include <mutex>
#include <thread>

namespace gitopsd::runner {
namespace {

using Clock = std::chrono::system_clock;
using TimePoint = Clock::time_point;
using std::chrono::milliseconds;

constexpr std::string_view kWorkflow = "Workflow";
constexpr std::string_view kApproval = "Approval";

const std::vector<RunStatus> kActiveStatuses = {RunStatus::kPending, RunStatus::kQueued, RunStatus::kRunning,
                                                RunStatus::kApprovalWait};
const std::vector<RunStatus> kStartedStatuses = {RunStatus::kPending, RunStatus::kRunning,
                                                 RunStatus::kApprovalWait};

// ---- the node tree -----------------------------------------------------

std::string StringField(const json::Value& node, std::string_view key) {
  const json::Value* v = node.is_object() ? node.Find(key) : nullptr;
  return v && v->is_string() ? v->as_string() : "";
}

bool IsParallel(const json::Value& node) {
  const json::Value* spec = node.Find("spec");
  return spec && spec->is_object() && StringField(*spec, "type") == "parallel";
}

std::string ChildPath(const std::string& path, size_t i) { return path + "." + std::to_string(i); }
std::string ChildWhere(const std::string& where, size_t i) {
  return where + ".spec.steps[" + std::to_string(i) + "]";
}

void CollectNodes(const json::Value& node, const std::string& path, std::vector<NodeRecord>& out) {
  NodeRecord r;
  r.path = path;
  r.kind = NodeKind(node);
  r.ref = NodeRef(node);
  out.push_back(std::move(r));
  if (const json::Value* steps = WorkflowSteps(node)) {
    for (size_t i = 0; i < steps->items().size(); ++i) CollectNodes(steps->items()[i], ChildPath(path, i), out);
  }
}

// ---- node settings -----------------------------------------------------

struct NodePolicy {
  int max_attempts = 1;
  milliseconds retry_delay{0};
  std::optional<double> timeout_seconds;
};

milliseconds Seconds(double s) { return milliseconds(static_cast<int64_t>(std::llround(s * 1000))); }

std::string SecondsText(double s) {
  return s == std::floor(s) ? std::to_string(static_cast<int64_t>(s)) + "s" : json::Value::Number(s).number_text() + "s";
}

Result<double> PositiveNumber(const json::Value& v, std::string_view field, double min) {
  auto n = ToNumber(v);
  if (!n || *n < min || !std::isfinite(*n)) {
    return Fail(std::string(field) + ": \"" + ToText(v) + "\" is not a number of at least " +
                json::Value::Number(min).number_text());
  }
  return *n;
}

Result<NodePolicy> ReadPolicy(const json::Value& node, const EngineOptions& options) {
  NodePolicy p;
  p.max_attempts = std::max(1, options.default_max_attempts);
  p.retry_delay = options.retry_delay;
  if (const json::Value* settings = node.Find("settings"); settings && settings->is_object()) {
    if (const json::Value* m = settings->Find("maxAttempts")) {
      auto n = PositiveNumber(*m, "settings.maxAttempts", 1);
      if (!n) return std::unexpected(n.error());
      p.max_attempts = static_cast<int>(std::min(*n, 100.0));
    }
    const json::Value* backoff = settings->Find("backoff");
    if (const json::Value* d = backoff && backoff->is_object() ? backoff->Find("delay") : nullptr) {
      auto n = PositiveNumber(*d, "settings.backoff.delay", 0);
      if (!n) return std::unexpected(n.error());
      p.retry_delay = Seconds(*n);
    }
  }
  if (const json::Value* r = node.Find("retries")) {
    auto n = PositiveNumber(*r, "retries", 0);
    if (!n) return std::unexpected(n.error());
    p.max_attempts = static_cast<int>(std::min(*n, 99.0)) + 1;
  }
  const json::Value* timeout = node.Find("timeoutDuration");
  if (timeout == nullptr) {  // Condition and Action nodes carry it in spec.spec.data
    const json::Value* spec = node.Find("spec");
    const json::Value* inner = spec && spec->is_object() ? spec->Find("spec") : nullptr;
    const json::Value* data = inner && inner->is_object() ? inner->Find("data") : nullptr;
    timeout = data && data->is_object() ? data->Find("timeoutDuration") : nullptr;
  }
  if (timeout) {
    auto n = PositiveNumber(*timeout, "timeoutDuration", 0.001);
    if (!n) return std::unexpected(n.error());
    p.timeout_seconds = *n;
  }
  return p;
}

std::string JoinErrors(const std::vector<EvalError>& errors) {
  std::string out;
  for (const EvalError& e : errors) out += (out.empty() ? "" : "; ") + e.ToString();
  return out;
}

int RecordedApprovals(const json::Value& data, std::string_view key, int fallback) {
  const json::Value* v = data.is_object() ? data.Find(key) : nullptr;
  return v ? static_cast<int>(ToNumber(*v).value_or(fallback)) : fallback;
}

RunError Internal(const Error& e) { return RunError{RunError::Code::kInternal, e.message, {}}; }

}  // namespace

NodeOutcome NodeOutcome::Success(json::Value data) { return NodeOutcome{Status::kSuccess, std::move(data), {}}; }
NodeOutcome NodeOutcome::Failure(std::string error) { return NodeOutcome{Status::kFailure, {}, std::move(error)}; }
NodeOutcome NodeOutcome::Waiting(json::Value data) { return NodeOutcome{Status::kWaiting, std::move(data), {}}; }

// ---- the engine --------------------------------------------------------

namespace {

enum class Outcome { kSuccess, kFailure, kSkipped, kAborted, kStopped /* daemon stopping: state left as is */ };
enum class Wake { kElapsed, kCancelled, kStopping };

Outcome FromStatus(NodeStatus s) {
  switch (s) {
    case NodeStatus::kSuccess: return Outcome::kSuccess;
    case NodeStatus::kSkipped: return Outcome::kSkipped;
    case NodeStatus::kAborted: return Outcome::kAborted;
    default: return Outcome::kFailure;
  }
}

}  // namespace

// Named, not anonymous: Engine::Impl holds these.
namespace detail {

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

// ---- lifecycle ---------------------------------------------------------

Status Engine::Impl::Resume() {
  std::lock_guard lock(mu_);
  RunFilter started;
  started.statuses = kStartedStatuses;
  started.oldest_first = true;
  started.limit = 100000;
  auto runs = store_->List(started);
  if (!runs) return std::unexpected(runs.error());
  for (const RunRecord& r : *runs) {
    spdlog::info("runner: resuming run {} of {} {}", r.id, r.flow_kind, r.flow_name);
    if (auto s = LaunchLocked(r.id); !s) return s;
  }
  RunFilter queued;
  queued.statuses = {RunStatus::kQueued};
  queued.oldest_first = true;
  queued.limit = 100000;
  auto waiting = store_->List(queued);
  if (!waiting) return std::unexpected(waiting.error());
  for (const RunRecord& r : *waiting) StartNextQueuedLocked(r.flow_kind, r.flow_name);
  return Ok();
}

void Engine::Impl::Stop() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  while (true) {
    std::vector<std::thread> threads;
    {
      std::lock_guard lock(mu_);
      for (auto& [id, run] : active_) {
        if (run->thread.joinable()) threads.push_back(std::move(run->thread));
      }
      for (std::thread& t : finished_) threads.push_back(std::move(t));
      finished_.clear();
    }
    if (threads.empty()) break;
    for (std::thread& t : threads) t.join();
  }
}

void Engine::Impl::ReapLocked() {
  auto self = std::this_thread::get_id();
  std::erase_if(finished_, [&](std::thread& t) {
    if (t.get_id() == self) return false;
    if (t.joinable()) t.join();  // it has left mu_ for good: it only returns now
    return true;
  });
}

Status Engine::Impl::LaunchLocked(int64_t id) {
  auto record = store_->Get(id, /*with_nodes=*/true);
  if (!record) return std::unexpected(record.error());
  if (!*record) return Fail("run " + std::to_string(id) + " vanished from the state database");
  RunRecord& r = **record;
  auto run = std::make_shared<ActiveRun>();
  run->id = id;
  run->flow_kind = r.flow_kind;
  run->flow_name = r.flow_name;
  run->body = std::move(r.body);
  run->args = std::move(r.args);
  run->cancel = r.cancel_requested;
  run->refs = RefsFromTriggers(r.trigger_refs);
  if (const json::Value* root = run->body.Find("spec")) CollectNodeRefs(*root, run->all_refs);
  for (NodeRecord& n : r.nodes) {
    if (n.status == NodeStatus::kSuccess && !n.ref.empty()) {
      run->refs[n.ref] = n.data.is_null() ? json::Value::Object() : n.data;
    }
    if (n.status == NodeStatus::kApprovalWait) {
      // Approvable as soon as the engine is open, before the run's thread
      // reaches the node again.
      run->approvals[n.path] = Approvals{RecordedApprovals(n.data, "approvals", 0), RecordedApprovals(n.data, "amount", 1)};
    }
    std::string path = n.path;
    run->recorded.emplace(std::move(path), std::move(n));
  }
  if (r.status == RunStatus::kPending || r.status == RunStatus::kQueued) {
    if (auto s = store_->SetRunStatus(id, RunStatus::kRunning); !s) return s;
  }
  ReapLocked();
  active_[id] = run;
  run->thread = std::thread([this, run] { RunMain(run); });
  return Ok();
}

void Engine::Impl::StartNextQueuedLocked(const std::string& kind, const std::string& name) {
  if (stopping_) return;
  RunFilter filter;
  filter.flow_kind = kind;
  filter.flow_name = name;
  filter.statuses = kStartedStatuses;
  filter.limit = 1;
  auto started = store_->List(filter);
  if (!started || !started->empty()) return;
  filter.statuses = {RunStatus::kQueued};
  filter.oldest_first = true;
  auto queued = store_->List(filter);
  if (!queued || queued->empty()) return;
  if (auto s = LaunchLocked(queued->front().id); !s) {
    spdlog::error("runner: cannot start queued run {}: {}", queued->front().id, s.error().message);
  }
}

void Engine::Impl::RunMain(const std::shared_ptr<ActiveRun>& run) {
  const json::Value* root = run->body.Find("spec");
  Outcome outcome = Outcome::kFailure;
  if (root != nullptr) outcome = RunNode(*run, *root, "0", "spec");
  if (outcome != Outcome::kStopped && !run->store_failed) Conclude(*run, outcome);
  std::lock_guard lock(mu_);
  if (run->thread.joinable()) finished_.push_back(std::move(run->thread));
  active_.erase(run->id);
  StartNextQueuedLocked(run->flow_kind, run->flow_name);
  cv_.notify_all();
}

void Engine::Impl::Conclude(ActiveRun& run, Outcome outcome) {
  RunStatus status = RunStatus::kSuccess;
  std::string error;
  if (outcome == Outcome::kFailure) {
    status = RunStatus::kFailure;
    std::lock_guard lock(run.mu);
    error = run.first_error.empty() ? "a node failed" : run.first_error;
  } else if (outcome == Outcome::kAborted) {
    status = RunStatus::kAborted;
    error = "cancelled";
    (void)store_->SettlePending(run.id, "", NodeStatus::kSkipped, "not run: the run was cancelled");
  }
  if (auto s = store_->SetRunStatus(run.id, status, &error); !s) {
    spdlog::error("runner: run {}: {}", run.id, s.error().message);
    return;
  }
  spdlog::info("runner: run {} of {} {} ended: {}{}", run.id, run.flow_kind, run.flow_name, RunStatusName(status),
               error.empty() ? "" : " (" + error + ")");
}

// ---- walking the tree --------------------------------------------------

Outcome Engine::Impl::RunNode(ActiveRun& run, const json::Value& node, const std::string& path,
                              const std::string& where) {
  const NodeRecord* prior = run.Recorded(path);
  if (prior && IsFinished(prior->status)) return FromStatus(prior->status);
  if (Halted(run)) return Outcome::kStopped;
  if (run.cancel) return Outcome::kAborted;  // the caller settles what did not run
  bool started = prior && prior->status != NodeStatus::kPending;
  json::Value resolved;
  if (started && prior->spec.is_object()) {
    resolved = prior->spec;  // as it was resolved when it started: never re-resolved
  } else {
    std::vector<EvalError> errors;
    {
      std::lock_guard lock(run.mu);
      Scope scope;
      scope.args = &run.args;
      scope.refs = &run.refs;
      scope.all_refs = &run.all_refs;
      resolved = ResolveNode(node, scope, where, &errors);
    }
    if (!errors.empty()) return FailNode(run, path, node, JoinErrors(errors), /*started=*/false);
    if (const json::Value* skip = resolved.Find("skipNodeExecution"); skip && IsTruthy(*skip)) {
      return SkipNode(run, path, resolved);
    }
  }
  std::string kind = NodeKind(node);
  if (kind == kWorkflow) return RunWorkflow(run, node, resolved, path, where, started);
  if (kind == kApproval) return RunApproval(run, resolved, path, started ? prior : nullptr);
  return RunAction(run, resolved, path, started ? prior : nullptr);
}

Outcome Engine::Impl::RunWorkflow(ActiveRun& run, const json::Value& node, const json::Value& resolved,
                                  const std::string& path, const std::string& where, bool started) {
  if (!started) {
    NodeUpdate u;
    u.status = NodeStatus::kRunning;
    u.started_at = NowMillis();
    u.spec = resolved;
    Save(run, path, u);
  }
  const json::Value* steps = WorkflowSteps(node);
  Outcome outcome = steps ? RunSteps(run, *steps, IsParallel(resolved), path, where) : Outcome::kSuccess;
  if (outcome == Outcome::kStopped) return outcome;
  NodeUpdate u;
  u.ended_at = NowMillis();
  if (outcome == Outcome::kFailure) {
    u.status = NodeStatus::kFailure;
    u.error = "a step failed";
  } else if (outcome == Outcome::kAborted) {
    u.status = NodeStatus::kAborted;
    u.error = "cancelled";
  } else {
    u.status = NodeStatus::kSuccess;
    outcome = Outcome::kSuccess;
  }
  Save(run, path, u);
  if (outcome == Outcome::kSuccess) {
    if (std::string ref = NodeRef(node); !ref.empty()) {
      std::lock_guard lock(run.mu);
      run.refs[ref] = json::Value::Object();
    }
  }
  return outcome;
}

Outcome Engine::Impl::RunSteps(ActiveRun& run, const json::Value& steps, bool parallel, const std::string& path,
                               const std::string& where) {
  const auto& items = steps.items();
  if (!parallel) {
    for (size_t i = 0; i < items.size(); ++i) {
      Outcome o = RunNode(run, items[i], ChildPath(path, i), ChildWhere(where, i));
      if (o == Outcome::kStopped) return o;
      if (o == Outcome::kFailure || o == Outcome::kAborted) {
        std::string why = o == Outcome::kFailure ? "not run: step " + ChildPath(path, i) + " failed"
                                                 : "not run: the run was cancelled";
        (void)store_->SettlePending(run.id, path, NodeStatus::kSkipped, why);
        return o;
      }
    }
    return Outcome::kSuccess;
  }
  std::vector<Outcome> outcomes(items.size(), Outcome::kSuccess);
  std::vector<std::thread> branches;
  branches.reserve(items.size());
  for (size_t i = 0; i < items.size(); ++i) {
    branches.emplace_back([&, i] { outcomes[i] = RunNode(run, items[i], ChildPath(path, i), ChildWhere(where, i)); });
  }
  for (std::thread& t : branches) t.join();
  for (Outcome worst : {Outcome::kStopped, Outcome::kAborted, Outcome::kFailure}) {
    if (std::find(outcomes.begin(), outcomes.end(), worst) != outcomes.end()) {
      if (worst == Outcome::kAborted) {
        (void)store_->SettlePending(run.id, path, NodeStatus::kSkipped, "not run: the run was cancelled");
      }
      return worst;
    }
  }
  return Outcome::kSuccess;
}

Outcome Engine::Impl::RunApproval(ActiveRun& run, const json::Value& resolved, const std::string& path,
                                  const NodeRecord* prior) {
  auto policy = ReadPolicy(resolved, options_);
  if (!policy) return FailNode(run, path, resolved, policy.error().message, prior != nullptr);
  const json::Value* spec = resolved.Find("spec");
  const json::Value* amount_value = spec && spec->is_object() ? spec->Find("amount") : nullptr;
  int amount = static_cast<int>(std::max(1.0, amount_value ? ToNumber(*amount_value).value_or(1) : 1));
  int given = prior ? RecordedApprovals(prior->data, "approvals", 0) : 0;
  int64_t started_at = prior ? prior->started_at : NowMillis();
  auto approval_data = [&](int n) {
    json::Value d = json::Value::Object();
    d.Set("approvals", json::Value::Number(n));
    d.Set("amount", json::Value::Number(amount));
    return d;
  };
  if (!prior) {
    NodeUpdate u;
    u.status = NodeStatus::kApprovalWait;
    u.started_at = started_at;
    u.spec = resolved;
    u.data = approval_data(given);
    Save(run, path, u);
    Log(run, path, "waiting for " + std::to_string(amount) + " approval(s)");
  }
  TimePoint deadline = policy->timeout_seconds
                           ? TimePoint(milliseconds(started_at)) + Seconds(*policy->timeout_seconds)
                           : TimePoint::max();
  {
    std::unique_lock lock(mu_);
    // A resumed node may be registered already (and approved meanwhile).
    run.approvals.try_emplace(path, Approvals{given, amount}).first->second.amount = amount;
    (void)store_->SetRunStatus(run.id, RunStatus::kApprovalWait);
    auto done = [&] { return stopping_ || run.cancel || run.approvals[path].given >= amount; };
    if (deadline == TimePoint::max()) cv_.wait(lock, done);
    else cv_.wait_until(lock, deadline, done);
    given = run.approvals[path].given;
    run.approvals.erase(path);
    if (run.approvals.empty() && !stopping_) (void)store_->SetRunStatus(run.id, RunStatus::kRunning);
  }
  if (given >= amount) return Succeed(run, path, resolved, approval_data(given));
  if (stopping_) return Outcome::kStopped;  // still approval_wait: waits again after a restart
  if (run.cancel) return AbortNode(run, path, "cancelled while waiting for approval");
  return TimedOut(run, path, resolved, *policy);
}

Outcome Engine::Impl::RunAction(ActiveRun& run, const json::Value& resolved, const std::string& path,
                                const NodeRecord* prior) {
  auto policy = ReadPolicy(resolved, options_);
  if (!policy) return FailNode(run, path, resolved, policy.error().message, prior != nullptr);
  int64_t started_at = prior ? prior->started_at : NowMillis();
  TimePoint deadline = policy->timeout_seconds
                           ? TimePoint(milliseconds(started_at)) + Seconds(*policy->timeout_seconds)
                           : TimePoint::max();
  int attempt = prior ? prior->attempts : 0;
  // A node that was running or waiting when the daemon stopped may have
  // started its work: ask, never execute blindly again.
  bool recheck = prior && (prior->status == NodeStatus::kRunning || prior->status == NodeStatus::kWaiting);
  json::Value data = prior ? prior->data : json::Value();
  NodeStatus last = prior ? prior->status : NodeStatus::kPending;
  if (!prior) {
    NodeUpdate u;
    u.status = NodeStatus::kRunning;
    u.max_attempts = policy->max_attempts;
    u.started_at = started_at;
    u.spec = resolved;
    Save(run, path, u);
  }
  NodeContext ctx = MakeContext(run, resolved, path, deadline);
  while (true) {
    if (!recheck) {
      if (Clock::now() >= deadline) return TimedOut(run, path, resolved, *policy);
      ++attempt;
      NodeUpdate u;
      u.status = NodeStatus::kRunning;
      u.attempts = attempt;
      Save(run, path, u);
      last = NodeStatus::kRunning;
    }
    ctx.attempt = std::max(attempt, 1);
    NodeOutcome out = Call(recheck, ctx, data);
    recheck = false;
    if (auto ended = PollWhileWaiting(run, ctx, out, data, last, deadline, *policy)) return *ended;
    if (out.status == NodeOutcome::Status::kSuccess) return Succeed(run, path, resolved, std::move(out.data));
    if (run.cancel) return AbortNode(run, path, "cancelled: " + out.error);
    if (Clock::now() >= deadline) return TimedOut(run, path, resolved, *policy);
    if (attempt >= policy->max_attempts) return FailNode(run, path, resolved, out.error);
    NodeUpdate u;
    u.status = NodeStatus::kRetrying;
    u.error = out.error;
    Save(run, path, u);
    Log(run, path,
        "attempt " + std::to_string(attempt) + " of " + std::to_string(policy->max_attempts) + " failed: " +
            out.error + "; trying again in " + SecondsText(policy->retry_delay.count() / 1000.0));
    Wake wake = SleepUntil(run, std::min(deadline, Clock::now() + policy->retry_delay));
    if (wake == Wake::kStopping) return Outcome::kStopped;  // "retrying": a new attempt after a restart
    if (wake == Wake::kCancelled) return AbortNode(run, path, "cancelled between attempts");
  }
}

// Polls a waiting outcome with a backoff until it succeeds or fails.
// Returns the node's end when waiting ended it (stop, cancel, timeout).
std::optional<Outcome> Engine::Impl::PollWhileWaiting(ActiveRun& run, const NodeContext& ctx, NodeOutcome& out,
                                                      json::Value& data, NodeStatus& last, TimePoint deadline,
                                                      const NodePolicy& policy) {
  milliseconds backoff = options_.poll_initial;
  while (out.status == NodeOutcome::Status::kWaiting) {
    if (last != NodeStatus::kWaiting || !(out.data == data)) {
      NodeUpdate u;
      u.status = NodeStatus::kWaiting;
      u.data = out.data;
      Save(run, ctx.node_path, u);
      last = NodeStatus::kWaiting;
    }
    data = std::move(out.data);
    Wake wake = SleepUntil(run, std::min(deadline, Clock::now() + backoff));
    backoff = std::min(backoff * 2, std::max(options_.poll_max, options_.poll_initial));
    if (wake == Wake::kStopping) return Outcome::kStopped;
    if (wake == Wake::kCancelled) return AbortNode(run, ctx.node_path, "cancelled while waiting");
    if (Clock::now() >= deadline) return TimedOut(run, ctx.node_path, ctx.spec, policy);
    out = Call(/*recheck=*/true, ctx, data);
  }
  return std::nullopt;
}

NodeContext Engine::Impl::MakeContext(ActiveRun& run, const json::Value& resolved, const std::string& path,
                                      TimePoint deadline) {
  NodeContext ctx;
  ctx.run_id = run.id;
  ctx.node_path = path;
  ctx.kind = NodeKind(resolved);
  ctx.ref = NodeRef(resolved);
  ctx.condition = StringField(resolved, "condition");
  if (const json::Value* spec = resolved.Find("spec")) ctx.spec = *spec;
  ActiveRun* r = &run;
  ctx.cancelled = [this, r, deadline] { return stopping_ || r->cancel || Clock::now() >= deadline; };
  ctx.abandoned = [r, deadline] { return r->cancel || Clock::now() >= deadline; };
  ctx.log = [this, r, path](std::string_view line) { Log(*r, path, std::string(line)); };
  return ctx;
}

NodeOutcome Engine::Impl::Call(bool recheck, const NodeContext& ctx, const json::Value& data) {
  try {
    return recheck ? executor_->Recheck(ctx, data) : executor_->Execute(ctx);
  } catch (const std::exception& e) {
    return NodeOutcome::Failure(std::string("the executor failed: ") + e.what());
  } catch (...) {
    return NodeOutcome::Failure("the executor failed with an unknown exception");
  }
}

Wake Engine::Impl::SleepUntil(ActiveRun& run, TimePoint until) {
  std::unique_lock lock(mu_);
  cv_.wait_until(lock, until, [&] { return stopping_ || run.cancel; });
  if (stopping_) return Wake::kStopping;
  return run.cancel ? Wake::kCancelled : Wake::kElapsed;
}

// ---- node state changes ------------------------------------------------

void Engine::Impl::Save(ActiveRun& run, const std::string& path, const NodeUpdate& update) {
  if (auto s = store_->UpdateNode(run.id, path, update); !s) {
    // Going on without a record could execute a node twice after a restart.
    spdlog::error("runner: run {} node {}: cannot record its state, stopping the run here: {}", run.id, path,
                  s.error().message);
    run.store_failed = true;
  }
}

void Engine::Impl::Log(ActiveRun& run, const std::string& path, const std::string& line) {
  (void)store_->AppendLog(run.id, path, line + "\n");
}

Outcome Engine::Impl::Succeed(ActiveRun& run, const std::string& path, const json::Value& resolved,
                              json::Value data) {
  if (data.is_null()) data = json::Value::Object();
  NodeUpdate u;
  u.status = NodeStatus::kSuccess;
  u.ended_at = NowMillis();
  u.data = data;
  u.error = "";
  Save(run, path, u);
  if (std::string ref = NodeRef(resolved); !ref.empty()) {
    std::lock_guard lock(run.mu);
    run.refs[ref] = std::move(data);
  }
  return Outcome::kSuccess;
}

Outcome Engine::Impl::FailNode(ActiveRun& run, const std::string& path, const json::Value& node,
                               const std::string& error, bool started) {
  NodeUpdate u;
  u.status = NodeStatus::kFailure;
  u.ended_at = NowMillis();
  if (!started) u.started_at = *u.ended_at;
  u.error = error;
  Save(run, path, u);
  std::lock_guard lock(run.mu);
  if (run.first_error.empty()) {
    std::string ref = NodeRef(node);
    run.first_error = "node " + path + " (" + NodeKind(node) + (ref.empty() ? "" : " \"" + ref + "\"") + "): " + error;
  }
  return Outcome::kFailure;
}

Outcome Engine::Impl::AbortNode(ActiveRun& run, const std::string& path, const std::string& why) {
  NodeUpdate u;
  u.status = NodeStatus::kAborted;
  u.ended_at = NowMillis();
  u.error = why;
  Save(run, path, u);
  return Outcome::kAborted;
}

Outcome Engine::Impl::TimedOut(ActiveRun& run, const std::string& path, const json::Value& node,
                               const NodePolicy& policy) {
  return FailNode(run, path, node, "timed out after " + SecondsText(policy.timeout_seconds.value_or(0)));
}

Outcome Engine::Impl::SkipNode(ActiveRun& run, const std::string& path, const json::Value& resolved) {
  NodeUpdate u;
  u.status = NodeStatus::kSkipped;
  u.spec = resolved;
  u.ended_at = NowMillis();
  u.error = "skipped: skipNodeExecution is true";
  Save(run, path, u);
  (void)store_->SettlePending(run.id, path, NodeStatus::kSkipped, "skipped with workflow " + path);
  return Outcome::kSkipped;
}

// ---- the public calls --------------------------------------------------

RunResult<int64_t> Engine::Impl::Start(const StartRequest& request) {
  std::string flow = request.flow_kind + " " + request.flow_name;
  std::vector<EvalError> errors = DryRun(request.body, request.args, request.trigger_refs, executor_->ResourceLookup());
  if (!errors.empty()) {
    RunError e{RunError::Code::kInvalid, "", {}};
    for (const EvalError& err : errors) e.details.push_back(err.ToString());
    e.message = "the dry run of " + flow + " failed, nothing was started: " + e.details.front() +
                (errors.size() > 1 ? " (and " + std::to_string(errors.size() - 1) + " more)" : "");
    return std::unexpected(std::move(e));
  }
  std::string policy = "allow";
  if (const json::Value* options = request.body.Find("options"); options && options->is_object()) {
    if (std::string p = StringField(*options, "concurrencyPolicy"); !p.empty()) policy = p;
  }
  if (policy != "allow" && policy != "queue" && policy != "forbid") {
    return std::unexpected(RunError{RunError::Code::kInvalid,
                                    flow + ": concurrencyPolicy \"" + policy +
                                        "\" is not supported; use allow, queue or forbid",
                                    {}});
  }
  std::lock_guard lock(mu_);
  if (stopping_) return std::unexpected(RunError{RunError::Code::kInternal, "the runner is stopping", {}});
  RunFilter filter;
  filter.flow_kind = request.flow_kind;
  filter.flow_name = request.flow_name;
  filter.statuses = kActiveStatuses;
  filter.limit = 1;
  filter.oldest_first = true;
  auto active = store_->List(filter);
  if (!active) return std::unexpected(Internal(active.error()));
  if (policy == "forbid" && !active->empty()) {
    return std::unexpected(RunError{RunError::Code::kConflict,
                                    flow + " already has run " + std::to_string(active->front().id) + " (" +
                                        RunStatusName(active->front().status) +
                                        ") and its concurrencyPolicy is \"forbid\": wait for it to finish or "
                                        "cancel it, then start again",
                                    {}});
  }
  RunRecord run;
  run.flow_kind = request.flow_kind;
  run.flow_name = request.flow_name;
  run.flow_revision = request.flow_revision;
  run.body = request.body;
  run.status = policy == "queue" && !active->empty() ? RunStatus::kQueued : RunStatus::kPending;
  run.kind = request.kind;
  run.rollback_of = request.rollback_of;
  run.name = request.name;
  run.description = request.description;
  run.args = MergeArgs(request.body, request.args);
  run.trigger_refs = request.trigger_refs.is_object() ? request.trigger_refs : json::Value::Object();
  std::vector<NodeRecord> nodes;
  CollectNodes(*request.body.Find("spec"), "0", nodes);
  auto id = store_->Create(run, nodes);
  if (!id) return std::unexpected(Internal(id.error()));
  spdlog::info("runner: run {} of {} created ({})", *id, flow, RunStatusName(run.status));
  if (run.status == RunStatus::kPending) {
    if (auto s = LaunchLocked(*id); !s) return std::unexpected(Internal(s.error()));
  }
  return *id;
}

RunResult<RunRecord> Engine::Impl::Get(int64_t id) {
  auto run = store_->Get(id, /*with_nodes=*/true);
  if (!run) return std::unexpected(Internal(run.error()));
  if (!*run) return std::unexpected(RunError{RunError::Code::kNotFound, "no run " + std::to_string(id), {}});
  return std::move(**run);
}

RunResult<std::vector<RunRecord>> Engine::Impl::List(const RunFilter& filter) {
  auto runs = store_->List(filter);
  if (!runs) return std::unexpected(Internal(runs.error()));
  return std::move(*runs);
}

RunResult<void> Engine::Impl::Cancel(int64_t id) {
  std::lock_guard lock(mu_);
  auto run = store_->Get(id, /*with_nodes=*/false);
  if (!run) return std::unexpected(Internal(run.error()));
  if (!*run) return std::unexpected(RunError{RunError::Code::kNotFound, "no run " + std::to_string(id), {}});
  if (IsFinished((*run)->status)) {
    return std::unexpected(RunError{RunError::Code::kConflict,
                                    "run " + std::to_string(id) + " has already ended (" +
                                        RunStatusName((*run)->status) + ")",
                                    {}});
  }
  if (auto s = store_->RequestCancel(id); !s) return std::unexpected(Internal(s.error()));
  if (auto it = active_.find(id); it != active_.end()) {
    it->second->cancel = true;
  } else {  // queued: it never started
    (void)store_->SettlePending(id, "", NodeStatus::kSkipped, "not run: the run was cancelled");
    std::string why = "cancelled before it started";
    if (auto s = store_->SetRunStatus(id, RunStatus::kAborted, &why); !s) {
      return std::unexpected(Internal(s.error()));
    }
  }
  cv_.notify_all();
  return {};
}

RunResult<void> Engine::Impl::Approve(int64_t id) {
  std::lock_guard lock(mu_);
  auto it = active_.find(id);
  if (it == active_.end() || it->second->approvals.empty()) {
    auto run = store_->Get(id, /*with_nodes=*/false);
    if (run && !*run) return std::unexpected(RunError{RunError::Code::kNotFound, "no run " + std::to_string(id), {}});
    return std::unexpected(RunError{RunError::Code::kConflict,
                                    "run " + std::to_string(id) + " has no node waiting for approval", {}});
  }
  for (auto& [path, approvals] : it->second->approvals) {
    ++approvals.given;
    json::Value d = json::Value::Object();
    d.Set("approvals", json::Value::Number(approvals.given));
    d.Set("amount", json::Value::Number(approvals.amount));
    NodeUpdate u;
    u.data = std::move(d);
    Save(*it->second, path, u);
    Log(*it->second, path, "approved (" + std::to_string(approvals.given) + " of " + std::to_string(approvals.amount) + ")");
  }
  cv_.notify_all();
  return {};
}

RunResult<RunStatus> Engine::Impl::Wait(int64_t id, milliseconds timeout) {
  auto deadline = Clock::now() + timeout;
  std::unique_lock lock(mu_);
  while (true) {
    auto run = store_->Get(id, /*with_nodes=*/false);
    if (!run) return std::unexpected(Internal(run.error()));
    if (!*run) return std::unexpected(RunError{RunError::Code::kNotFound, "no run " + std::to_string(id), {}});
    RunStatus status = (*run)->status;
    if (IsFinished(status) || Clock::now() >= deadline) return status;
    // Runs end under mu_ with a notify; the short period only bounds a missed one.
    cv_.wait_until(lock, std::min(deadline, Clock::now() + milliseconds(200)));
  }
}

// ---- Engine ------------------------------------------------------------

Engine::Engine(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Engine::~Engine() = default;

Result<std::unique_ptr<Engine>> Engine::Open(EngineOptions options, NodeExecutor* executor) {
  if (executor == nullptr) return Fail("the runner needs a node executor");
  auto store = RunStore::Open(options.state_db);
  if (!store) return std::unexpected(store.error());
  auto impl = std::make_unique<Impl>(std::move(options), executor, std::move(*store));
  if (auto s = impl->Resume(); !s) return std::unexpected(s.error());
  return std::unique_ptr<Engine>(new Engine(std::move(impl)));
}

RunResult<int64_t> Engine::Start(const StartRequest& request) { return impl_->Start(request); }
RunResult<RunRecord> Engine::Get(int64_t id) { return impl_->Get(id); }
RunResult<std::vector<RunRecord>> Engine::List(const RunFilter& filter) { return impl_->List(filter); }
RunResult<void> Engine::Cancel(int64_t id) { return impl_->Cancel(id); }
RunResult<void> Engine::Approve(int64_t id) { return impl_->Approve(id); }
RunResult<RunStatus> Engine::Wait(int64_t id, milliseconds timeout) { return impl_->Wait(id, timeout); }

}  // namespace gitopsd::runner
