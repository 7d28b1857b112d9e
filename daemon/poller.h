// The sync loop: one thread per repository that calls Reconciler::Sync()
// every poll interval, or sooner when asked (RequestSync, from the API or a
// webhook). Idle threads sleep on a condition variable: no CPU, no busy
// loop. Calls for one repository never overlap.
//
// A repository with write-back on also has a sync::WriteBack; the same
// thread runs WriteBack::Run() right after each sync that leaves edits
// unfinished, and whenever RequestWriteBack() wakes it (a new edit), so Sync
// and Run never overlap. A failing Run is logged once per distinct error and
// retried with backoff; the edits stay pending (and visible) meanwhile.
//
// After each attempt the poller logs one line (SyncReport::Summary(), or a
// warning with the fetch error), one line per diagnostic
// ("path:line:col: error: message [rule] (commit abc1234)"), and updates
// the metrics. A failing fetch backs off (see NextPollDelay). The daemon is
// ready once every repository finished its first attempt, good or bad.
//
// A SyncListener hears, on the repository's thread, when the objects of a
// repository may have changed: after a sync that applied a new commit,
// after the first good sync of this process (what a crash may have left
// unheard), and after a write-back that pushed edits.
#pragma once
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <string>
#include <thread>
#include <vector>

#include "sync/reconcile.h"
#include "sync/status.h"
#include "sync/writeback.h"

namespace gitopsd::store {
class Store;
}

namespace gitopsd::daemon {

class DaemonMetrics;

class SyncListener {
 public:
  virtual ~SyncListener() = default;
  // Called on the repository's thread; the next sync waits for it.
  // `changed` lists the (kind, name) of the objects that changed, or is
  // nullptr when that is not known (the first sync of the process).
  virtual void ObjectsChanged(const std::string& repository,
                              const std::vector<std::pair<std::string, std::string>>* changed) = 0;
};

struct PollTarget {
  std::string name;
  std::chrono::milliseconds interval{60'000};
  std::unique_ptr<sync::Reconciler> reconciler;
  // Null when the repository's sync.writeBack is off. Refers to reconciler,
  // so it is declared (and destroyed) after it.
  std::unique_ptr<sync::WriteBack> writeback;
  // First retry delay after a failed Run; doubles per failure up to 5 min.
  std::chrono::milliseconds writeback_retry{1000};
};

struct SyncOutcome {
  bool ok = false;
  bool fetch_failed = false;  // !ok because the remote could not be fetched
  sync::SyncReport report;    // when ok
  std::string error;          // when !ok
  std::chrono::system_clock::time_point finished_at;
};

// Delay before the next attempt after `consecutive_failures` failed fetches
// (0 = last one good): the interval doubles with each failure, up to
// max(interval, 5 min).
std::chrono::milliseconds NextPollDelay(std::chrono::milliseconds interval,
                                        int64_t consecutive_failures);

class Poller {
 public:
  // `listener` may be null; it must outlive the poller.
  Poller(store::Store& store, DaemonMetrics& metrics, std::vector<PollTarget> targets,
         SyncListener* listener = nullptr);
  ~Poller();  // Stop()
  Poller(const Poller&) = delete;
  Poller& operator=(const Poller&) = delete;

  void Start();
  // Wakes every thread and joins them; a sync in progress finishes first.
  // Returns false if some sync was still running after `grace` (a fetch
  // that hangs): those threads are left running and the caller should end
  // the process (every store change is one transaction, so that is safe).
  bool Stop(std::chrono::milliseconds grace = std::chrono::milliseconds::max());
  // The first half of Stop(): no new attempt starts and RequestSync callers
  // return at once; does not wait.
  void BeginStop();

  // A repository added while running (a configuration reload): its thread
  // starts at once if the poller has started. An error if the name is taken.
  Status Add(PollTarget target);
  // Stops the repository's thread (a sync in progress finishes first, up to
  // `grace`; past it the thread is left to end by itself) and forgets the
  // repository. Pointers handed out for it (WriteBackFor) stay valid until
  // the poller is destroyed. False if the thread was left running.
  bool Remove(const std::string& name, std::chrono::milliseconds grace);

  bool Has(const std::string& name) const;
  std::vector<std::string> Names() const;

  // Wakes the repository's thread and waits up to `timeout` for a sync that
  // began after this call. nullopt: unknown name, timeout, or shutting down.
  // Thread-safe.
  std::optional<SyncOutcome> RequestSync(const std::string& name,
                                         std::chrono::milliseconds timeout);

  // Wakes the repository's thread to run its write-back now, without
  // waiting. False for an unknown name or a repository without write-back.
  // Thread-safe.
  bool RequestWriteBack(const std::string& name);
  // The write-back engine of a repository (null: unknown or writeBack off).
  // Its Submit and Resolve are thread-safe; Run belongs to the poller.
  sync::WriteBack* WriteBackFor(const std::string& name) const;
  // Repositories with write-back on, in configuration order.
  std::vector<std::string> WriteBackNames() const;
  // Sets the gauges gitopsd_writeback_pending and gitopsd_conflicts_open
  // from the store. Thread-safe.
  void RefreshWriteBackGauges();

  // True once every repository finished its first attempt.
  bool Ready() const;
  std::vector<std::string> Pending() const;

 private:
  struct Worker {
    PollTarget target;
    std::thread thread;
    mutable std::mutex mu;
    std::condition_variable wake;  // to the worker: a request or stop
    std::condition_variable done;  // from the worker: an attempt finished
    uint64_t requested = 0;        // tickets handed out by RequestSync
    uint64_t served = 0;           // requests covered by finished attempts
    bool writeback_requested = false;  // RequestWriteBack since the last Run
    bool stopping = false;
    bool first_done = false;
    bool exited = false;  // Run() returned
    bool synced_once = false;  // a good sync happened in this process (worker thread only)
    SyncOutcome last;
  };

  // The write-back side of a worker, touched only by its thread.
  struct WriteBackState {
    int64_t failures = 0;    // consecutive failed Runs
    std::string last_error;  // logged already; repeated failures stay quiet
    std::optional<std::chrono::steady_clock::time_point> retry_at;
  };

  void StartWorker(Worker& w);
  void BeginStop(Worker& w);
  bool Join(Worker& w, bool forever, std::chrono::steady_clock::time_point deadline);
  // The workers now (a snapshot: Add and Remove may change the list).
  std::vector<Worker*> Workers() const;
  void Run(Worker& w);
  SyncOutcome SyncOnce(Worker& w);
  bool HasUnfinishedEdits(const Worker& w);
  void WriteBackOnce(Worker& w, WriteBackState& state);
  void Report(const Worker& w, const SyncOutcome& outcome, double seconds);
  void RefreshObjectCounts();
  Worker* Find(const std::string& name) const;

  store::Store& store_;
  DaemonMetrics& metrics_;
  SyncListener* listener_;
  mutable std::shared_mutex workers_mu_;  // guards workers_ and retired_ (not the workers)
  std::vector<std::unique_ptr<Worker>> workers_;
  std::vector<std::unique_ptr<Worker>> retired_;  // removed; kept so handed-out pointers stay valid
  std::mutex counts_mu_;  // one count at a time, so a stale one never lands last
  bool started_ = false;
};

}  // namespace gitopsd::daemon
