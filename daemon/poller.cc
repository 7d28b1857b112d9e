#include "daemon/poller.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <map>

#include "daemon/metrics.h"
#include "sync/store.h"

namespace gitopsd::daemon {

using std::chrono::milliseconds;

milliseconds NextPollDelay(milliseconds interval, int64_t consecutive_failures) {
  if (consecutive_failures <= 0) return interval;
  const milliseconds cap = std::max(interval, milliseconds(5 * 60 * 1000));
  milliseconds delay = interval;
  for (int64_t i = 1; i < consecutive_failures && delay < cap; ++i) delay *= 2;
  return std::min(delay, cap);
}

Poller::Poller(store::Store& store, DaemonMetrics& metrics, std::vector<PollTarget> targets,
               SyncListener* listener)
    : store_(store), metrics_(metrics), listener_(listener) {
  for (auto& t : targets) {
    auto w = std::make_unique<Worker>();
    metrics_.RegisterRepository(t.name);
    if (t.writeback) metrics_.RegisterWriteBack(t.name);
    w->target = std::move(t);
    workers_.push_back(std::move(w));
  }
}

Poller::~Poller() { Stop(); }

void Poller::Start() {
  if (started_) return;
  started_ = true;
  RefreshObjectCounts();
  RefreshWriteBackGauges();
  std::shared_lock workers(workers_mu_);
  for (auto& w : workers_) StartWorker(*w);
}

void Poller::StartWorker(Worker& w) {
  if (auto state = store_.GetRepository(w.target.name); state && *state) {
    metrics_.SetAppliedCommit(w.target.name, (*state)->applied_commit);
  }
  Worker* raw = &w;
  w.thread = std::thread([this, raw] { Run(*raw); });
}

std::vector<Poller::Worker*> Poller::Workers() const {
  std::shared_lock workers(workers_mu_);
  std::vector<Worker*> out;
  for (const auto& w : workers_) out.push_back(w.get());
  return out;
}

void Poller::BeginStop() {
  for (Worker* w : Workers()) BeginStop(*w);
}

void Poller::BeginStop(Worker& w) {
  std::lock_guard lock(w.mu);
  w.stopping = true;
  w.wake.notify_all();
  w.done.notify_all();
}

bool Poller::Stop(milliseconds grace) {
  BeginStop();
  const bool forever = grace >= std::chrono::hours(24);
  const auto deadline = std::chrono::steady_clock::now() + (forever ? milliseconds(0) : grace);
  bool all = true;
  for (Worker* w : Workers()) all = Join(*w, forever, deadline) && all;
  // A removed repository's thread left running (its fetch hung) still uses
  // this poller.
  std::shared_lock workers(workers_mu_);
  for (const auto& w : retired_) {
    std::lock_guard lock(w->mu);
    all = all && w->exited;
  }
  return all;
}

bool Poller::Join(Worker& w, bool forever, std::chrono::steady_clock::time_point deadline) {
  if (!w.thread.joinable()) return true;
  std::unique_lock lock(w.mu);
  auto exited = [&] { return w.exited; };
  if (forever) {
    w.done.wait(lock, exited);
  } else if (!w.done.wait_until(lock, deadline, exited)) {
    spdlog::warn("{}: a sync is still running (a fetch that does not answer?)", w.target.name);
    return false;
  }
  lock.unlock();
  w.thread.join();
  return true;
}

Status Poller::Add(PollTarget target) {
  std::unique_lock workers(workers_mu_);
  for (const auto& w : workers_) {
    if (w->target.name == target.name) return Fail("repository " + target.name + " is synced already");
  }
  auto w = std::make_unique<Worker>();
  metrics_.RegisterRepository(target.name);
  if (target.writeback) metrics_.RegisterWriteBack(target.name);
  w->target = std::move(target);
  if (started_) StartWorker(*w);
  workers_.push_back(std::move(w));
  return Ok();
}

bool Poller::Remove(const std::string& name, milliseconds grace) {
  std::unique_ptr<Worker> gone;
  {
    std::unique_lock workers(workers_mu_);
    auto it = std::ranges::find_if(workers_, [&](const auto& w) { return w->target.name == name; });
    if (it == workers_.end()) return true;
    gone = std::move(*it);
    workers_.erase(it);
  }
  BeginStop(*gone);
  const bool joined = Join(*gone, false, std::chrono::steady_clock::now() + grace);
  if (!joined) gone->thread.detach();  // it ends once its fetch answers; the worker is kept below
  std::unique_lock workers(workers_mu_);
  retired_.push_back(std::move(gone));
  return joined;
}

Poller::Worker* Poller::Find(const std::string& name) const {
  std::shared_lock workers(workers_mu_);
  for (const auto& w : workers_) {
    if (w->target.name == name) return w.get();
  }
  return nullptr;
}

bool Poller::Has(const std::string& name) const { return Find(name) != nullptr; }

std::vector<std::string> Poller::Names() const {
  std::vector<std::string> names;
  for (const Worker* w : Workers()) names.push_back(w->target.name);
  return names;
}

std::optional<SyncOutcome> Poller::RequestSync(const std::string& name, milliseconds timeout) {
  Worker* w = Find(name);
  if (!w) return std::nullopt;
  std::unique_lock lock(w->mu);
  if (w->stopping) return std::nullopt;
  const uint64_t ticket = ++w->requested;
  w->wake.notify_all();
  w->done.wait_for(lock, timeout, [&] { return w->served >= ticket || w->stopping; });
  if (w->served < ticket) return std::nullopt;
  return w->last;
}

bool Poller::Ready() const { return Pending().empty(); }

std::vector<std::string> Poller::Pending() const {
  std::vector<std::string> pending;
  for (const Worker* w : Workers()) {
    std::lock_guard lock(w->mu);
    if (!w->first_done) pending.push_back(w->target.name);
  }
  return pending;
}

void Poller::Run(Worker& w) {
  using Clock = std::chrono::steady_clock;
  int64_t failures = 0;
  auto next_sync = Clock::now();  // the first attempt starts at once
  WriteBackState wb;
  std::unique_lock lock(w.mu);
  while (true) {
    const auto deadline = wb.retry_at ? std::min(next_sync, *wb.retry_at) : next_sync;
    w.wake.wait_until(lock, deadline, [&] {
      return w.stopping || w.requested > w.served || w.writeback_requested;
    });
    if (w.stopping) break;
    const auto now = Clock::now();
    const bool sync_due = w.requested > w.served || now >= next_sync;
    const bool writeback_due = w.writeback_requested || (wb.retry_at && now >= *wb.retry_at);
    w.writeback_requested = false;
    const uint64_t serving = w.requested;
    lock.unlock();

    if (sync_due) {
      const auto started = Clock::now();
      SyncOutcome outcome = SyncOnce(w);
      const double seconds = std::chrono::duration<double>(Clock::now() - started).count();
      failures = outcome.fetch_failed ? failures + 1 : 0;
      const milliseconds delay = NextPollDelay(w.target.interval, failures);
      next_sync = Clock::now() + delay;
      Report(w, outcome, seconds);
      if (outcome.fetch_failed) {
        spdlog::warn("{}: fetch failed ({} in a row), next attempt in {} ms: {}", w.target.name,
                     failures, delay.count(), outcome.error);
      }
      // Before RequestSync is answered, so that whoever asked for the sync
      // sees the runs it caused.
      if (outcome.ok && (outcome.report.changed() || !w.synced_once) && listener_) {
        listener_->ObjectsChanged(w.target.name,
                                  w.synced_once ? &outcome.report.changed_objects : nullptr);
      }
      if (outcome.ok) w.synced_once = true;
      // Answer RequestSync before the write-back runs: it asked for a sync.
      lock.lock();
      w.served = serving;
      w.last = std::move(outcome);
      w.first_done = true;
      w.done.notify_all();
      lock.unlock();
    }
    // After a sync, a Run is due only when edits wait and no backoff holds
    // it back; a new edit (RequestWriteBack) or the retry time always runs it.
    if (w.target.writeback &&
        (writeback_due || (sync_due && !wb.retry_at && HasUnfinishedEdits(w)))) {
      WriteBackOnce(w, wb);
    }
    lock.lock();
  }
  w.exited = true;
  w.done.notify_all();
}

bool Poller::HasUnfinishedEdits(const Worker& w) {
  auto n = store_.CountUnfinishedEdits(w.target.name);
  if (!n) {
    spdlog::error("{}: cannot count pending write-backs: {}", w.target.name, n.error().message);
    return true;  // let Run find out
  }
  return *n > 0;
}

void Poller::WriteBackOnce(Worker& w, WriteBackState& state) {
  const std::string& name = w.target.name;
  auto result = w.target.writeback->Run();
  const std::string error = result ? result->error : result.error().message;
  if (result) {
    if (result->edits_pushed > 0 && listener_) {
      listener_->ObjectsChanged(name, &result->changed_objects);
    }
    metrics_.RecordWriteBack(name, result->edits_pushed, result->conflicts);
    for (const auto& detail : result->conflict_details) spdlog::warn("{}: {}", name, detail);
    if (result->edits_pushed > 0 || result->conflicts > 0 || !result->commit.empty()) {
      spdlog::info("{}", result->Summary());
    } else {
      spdlog::debug("{}", result->Summary());
    }
  }
  if (error.empty()) {
    if (state.failures > 0) spdlog::info("{}: write-back works again", name);
    state = WriteBackState{};
  } else {
    ++state.failures;
    metrics_.RecordWriteBackFailure(name);
    const milliseconds delay = NextPollDelay(w.target.writeback_retry, state.failures);
    state.retry_at = std::chrono::steady_clock::now() + delay;
    if (error != state.last_error) {
      spdlog::warn("{}: write-back failed, the edits stay pending (retrying with backoff, next in "
                   "{} ms): {}",
                   name, delay.count(), error);
      state.last_error = error;
    } else {
      spdlog::debug("{}: write-back failed again ({} in a row): {}", name, state.failures, error);
    }
  }
  RefreshWriteBackGauges();
}

bool Poller::RequestWriteBack(const std::string& name) {
  Worker* w = Find(name);
  if (!w || !w->target.writeback) return false;
  std::lock_guard lock(w->mu);
  w->writeback_requested = true;
  w->wake.notify_all();
  return true;
}

sync::WriteBack* Poller::WriteBackFor(const std::string& name) const {
  Worker* w = Find(name);
  return w ? w->target.writeback.get() : nullptr;
}

std::vector<std::string> Poller::WriteBackNames() const {
  std::vector<std::string> names;
  for (const Worker* w : Workers()) {
    if (w->target.writeback) names.push_back(w->target.name);
  }
  return names;
}

void Poller::RefreshWriteBackGauges() {
  std::lock_guard lock(counts_mu_);
  for (const Worker* w : Workers()) {
    if (!w->target.writeback) continue;
    if (auto n = store_.CountUnfinishedEdits(w->target.name)) {
      metrics_.SetWriteBackPending(w->target.name, static_cast<double>(*n));
    }
  }
  if (auto open = store_.ListConflicts(true)) {
    metrics_.SetConflictsOpen(static_cast<double>(open->size()));
  }
}

SyncOutcome Poller::SyncOnce(Worker& w) {
  SyncOutcome out;
  auto result = w.target.reconciler->Sync();
  out.finished_at = std::chrono::system_clock::now();
  if (result) {
    out.ok = true;
    out.report = std::move(*result);
    return out;
  }
  out.error = result.error().message;
  // The reconciler records fetch failures in the store; anything else (a
  // store or mirror problem) is not the remote's fault.
  if (auto state = store_.GetRepository(w.target.name); state && *state) {
    out.fetch_failed = (*state)->fetch_failures > 0 && !(*state)->last_fetch_error.empty();
  }
  return out;
}

void Poller::Report(const Worker& w, const SyncOutcome& outcome, double seconds) {
  const std::string& name = w.target.name;
  if (!outcome.ok) {
    metrics_.RecordSync(name, outcome.fetch_failed ? "fetch_error" : "error", seconds);
    if (outcome.fetch_failed) {
      metrics_.RecordFetchFailure(name);
    } else {
      spdlog::error("{}: sync failed: {}", name, outcome.error);
    }
    return;
  }
  const sync::SyncReport& r = outcome.report;
  metrics_.RecordSync(name, "success", seconds);
  const bool first = !w.first_done;
  if (r.changed() || !r.errors.empty() || first) {
    spdlog::info("{}", r.Summary());
  } else {
    spdlog::debug("{}", r.Summary());
  }
  const std::string short_commit = r.to_commit.substr(0, 7);
  for (const Diagnostic& d : r.errors) {
    spdlog::warn("{} (commit {})", d.ToString(), short_commit);
  }
  metrics_.SetLastSyncTimestamp(
      name, std::chrono::duration<double>(outcome.finished_at.time_since_epoch()).count());
  metrics_.SetAppliedCommit(name, r.to_commit);
  if (auto errors = store_.ListErrors(name)) {
    std::map<std::string, int> files;
    for (const auto& e : *errors) files[e.path] += 1;
    metrics_.SetSyncErrors(name, static_cast<double>(files.size()));
  }
  if (r.changed() || first) RefreshObjectCounts();
}

void Poller::RefreshObjectCounts() {
  std::lock_guard lock(counts_mu_);
  auto stored = store_.CountObjectsByKind();
  if (!stored) {
    spdlog::error("cannot count objects: {}", stored.error().message);
    return;
  }
  std::map<std::string, int64_t> counts{{"Template", 0}, {"ReleaseFlow", 0}, {"PreviewTemplate", 0}};
  for (const auto& [kind, n] : *stored) counts[kind] = n;
  for (const auto& [kind, n] : counts) metrics_.SetObjects(kind, static_cast<double>(n));
}

}  // namespace gitopsd::daemon
