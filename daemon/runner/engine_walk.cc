// Walking a run's node tree: a node at a time, a Workflow's steps in order
// or in parallel, an Approval until approved, any other node through the
// NodeExecutor with retries and polling; and recording each node's state
// changes in the run store.
#include <spdlog/spdlog.h>

#include <algorithm>
#include <thread>

#include "daemon/runner/engine_internal.h"

namespace gitopsd::runner {
namespace {

constexpr std::string_view kWorkflow = "Workflow";
constexpr std::string_view kApproval = "Approval";

std::string JoinErrors(const std::vector<EvalError>& errors) {
  std::string out;
  for (const EvalError& e : errors) out += (out.empty() ? "" : "; ") + e.ToString();
  return out;
}

Outcome FromStatus(NodeStatus s) {
  switch (s) {
    case NodeStatus::kSuccess: return Outcome::kSuccess;
    case NodeStatus::kSkipped: return Outcome::kSkipped;
    case NodeStatus::kAborted: return Outcome::kAborted;
    default: return Outcome::kFailure;
  }
}

}  // namespace

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

}  // namespace gitopsd::runner
