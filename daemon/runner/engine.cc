// The run engine's lifecycle of runs (resume after a restart, launch, the
// queue of a flow, conclude) and its public calls; engine_internal.h says
// where the rest of Engine::Impl lives.
#include "daemon/runner/engine.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <thread>

#include "daemon/runner/engine_internal.h"

namespace gitopsd::runner {
namespace {

const std::vector<RunStatus> kActiveStatuses = {RunStatus::kPending, RunStatus::kQueued, RunStatus::kRunning,
                                                RunStatus::kApprovalWait};
const std::vector<RunStatus> kStartedStatuses = {RunStatus::kPending, RunStatus::kRunning,
                                                 RunStatus::kApprovalWait};

RunError Internal(const Error& e) { return RunError{RunError::Code::kInternal, e.message, {}}; }

}  // namespace

NodeOutcome NodeOutcome::Success(json::Value data) { return NodeOutcome{Status::kSuccess, std::move(data), {}}; }
NodeOutcome NodeOutcome::Failure(std::string error) { return NodeOutcome{Status::kFailure, {}, std::move(error)}; }
NodeOutcome NodeOutcome::Waiting(json::Value data) { return NodeOutcome{Status::kWaiting, std::move(data), {}}; }

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
  if (!request.idempotency_key.empty()) {
    auto existing = store_->FindByKey(request.idempotency_key);
    if (!existing) return std::unexpected(Internal(existing.error()));
    if (*existing) return **existing;
  }
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
  run.idempotency_key = request.idempotency_key;
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

RunResult<std::vector<RunCount>> Engine::Impl::Count() {
  auto counts = store_->Count();
  if (!counts) return std::unexpected(Internal(counts.error()));
  return std::move(*counts);
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
RunResult<std::vector<RunCount>> Engine::Count() { return impl_->Count(); }
RunResult<void> Engine::Cancel(int64_t id) { return impl_->Cancel(id); }
RunResult<void> Engine::Approve(int64_t id) { return impl_->Approve(id); }
RunResult<RunStatus> Engine::Wait(int64_t id, milliseconds timeout) { return impl_->Wait(id, timeout); }

}  // namespace gitopsd::runner
