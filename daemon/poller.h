// The sync loop: one thread per repository that calls Reconciler::Sync()
// every poll interval, or sooner when asked (RequestSync, from the API or a
// webhook). Idle threads sleep on a condition variable: no CPU, no busy
// loop. Calls for one repository never overlap.
//
// After each attempt the poller logs one line (SyncReport::Summary(), or a
// warning with the fetch error), one line per diagnostic
// ("path:line:col: error: message [rule] (commit abc1234)"), and updates
// the metrics. A failing fetch backs off (see NextPollDelay). The daemon is
// ready once every repository finished its first attempt, good or bad.
#pragma once
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "sync/reconcile.h"

namespace gitopsd::store {
class Store;
}

namespace gitopsd::daemon {

class DaemonMetrics;

struct PollTarget {
  std::string name;
  std::chrono::milliseconds interval{60'000};
  std::unique_ptr<sync::Reconciler> reconciler;
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
  Poller(store::Store& store, DaemonMetrics& metrics, std::vector<PollTarget> targets);
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

  bool Has(const std::string& name) const;
  std::vector<std::string> Names() const;

  // Wakes the repository's thread and waits up to `timeout` for a sync that
  // began after this call. nullopt: unknown name, timeout, or shutting down.
  // Thread-safe.
  std::optional<SyncOutcome> RequestSync(const std::string& name,
                                         std::chrono::milliseconds timeout);

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
    bool stopping = false;
    bool first_done = false;
    bool exited = false;  // Run() returned
    SyncOutcome last;
  };

  void Run(Worker& w);
  SyncOutcome SyncOnce(Worker& w);
  void Report(const Worker& w, const SyncOutcome& outcome, double seconds);
  void RefreshObjectCounts();
  Worker* Find(const std::string& name) const;

  store::Store& store_;
  DaemonMetrics& metrics_;
  std::vector<std::unique_ptr<Worker>> workers_;
  std::mutex counts_mu_;  // one count at a time, so a stale one never lands last
  bool started_ = false;
};

}  // namespace gitopsd::daemon
