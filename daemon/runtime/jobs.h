// Jobs (ManualJob / Job): a command run from a deployed build folder to
// completion. The runner asks a JobRunner; the process implementation runs
// it on this host, a Kubernetes one will create a Job.
//
// What callers can rely on:
//  - Run(spec) blocks until the run ended and returns its record; a run that
//    failed (non-zero exit, deadline, command not runnable) is a record in
//    state kFailed with the reason, not an error. Errors mean the run could
//    not be recorded (bad name, state database unusable).
//  - The exit status decides. A failed attempt is retried up to
//    backoff_limit times, after retry_delay, doubled each time; the active
//    deadline covers the whole run, retries and waits included, and stops
//    the attempt's process group when it passes (no retry after it).
//  - Every run is a row: run id, job, build, attempts, state, exit code,
//    error, log path, start, end. The log (<stateDir>/jobs/<job>/<id>/job.log)
//    holds every attempt's output, each after a "==> gitopsd:" header.
//  - The exit status survives the daemon: each attempt runs under a small
//    /bin/sh wrapper that writes it next to the log. When the runner opens
//    after a restart, a run still marked running is settled from that file
//    if its process has ended; if the process is still alive (same pid and
//    start time) it is watched until it ends; a process that is gone without
//    a status is a failed run ("the job's process died with the daemon").
//    Adopted runs are not retried. Never reported as succeeded on a guess.
//  - Thread-safe; runs of different jobs (and of one job) may overlap.
//    Destroy the runner only after every Run call has returned.
#pragma once
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "sync/status.h"

namespace gitopsd::runtime {

struct JobSpec {
  std::string job{};                   // the job's name (a folder name)
  std::string build{};                 // what it runs, for the record (e.g. "api@<commit>")
  std::string build_dir{};             // working folder: the deployed build's checkout
  std::vector<std::string> command{};  // argv; with shell, command[0] is a /bin/sh -c script
  bool shell = false;
  std::map<std::string, std::string> env{};  // addon connections, secret groups, arguments
  std::chrono::milliseconds active_deadline{0};  // 0 = none (activeDeadlineSeconds)
  int backoff_limit = 0;                         // retries after a failed attempt (backoffLimit)
  std::chrono::milliseconds retry_delay = std::chrono::seconds(10);
  // Polled while the job runs and between attempts: once true the attempt is
  // stopped and the run fails, without retries (a run cancelled or its node
  // timed out). Unset = never.
  std::function<bool()> abandon{};
  // Polled while the job runs: once true (the daemon is shutting down) the
  // daemon stops waiting and leaves the job's process running; Run returns
  // the run still running, and the next daemon adopts it as after a crash.
  // Unset = never.
  std::function<bool()> leave{};
  // Each line the job writes to its log, as it comes (polled while it runs;
  // live progress for the run's node log). Unset = none.
  std::function<void(std::string_view line)> output{};
};

enum class JobState { kRunning, kSucceeded, kFailed };
const char* JobStateName(JobState state);  // "running", "succeeded", "failed"

struct JobRun {
  int64_t id = 0;
  std::string job{}, build{};
  JobState state = JobState::kRunning;
  int attempts = 0;
  std::optional<int> exit_code{};  // of the last attempt, when it exited
  std::string error{};             // why it failed
  std::string log_path{};
  int64_t started_at = 0, ended_at = 0;  // ms since the epoch; ended_at 0 while running
  bool succeeded() const { return state == JobState::kSucceeded; }
};

class JobRunner {
 public:
  virtual ~JobRunner() = default;
  virtual Result<JobRun> Run(const JobSpec& spec) = 0;
  virtual Result<std::optional<JobRun>> Get(int64_t run_id) = 0;
  // Runs of `job` ("" = all), newest first.
  virtual Result<std::vector<JobRun>> List(const std::string& job) = 0;
  // Waits until the run is no longer running (e.g. one adopted after a
  // restart) or `timeout` passes; returns its record either way.
  virtual Result<JobRun> WaitFor(int64_t run_id, std::chrono::milliseconds timeout) = 0;
};

struct ProcessJobOptions {
  std::chrono::milliseconds stop_grace = std::chrono::seconds(5);
  std::chrono::milliseconds poll_interval = std::chrono::milliseconds(500);  // adopted runs
};

class ProcessJobRunner final : public JobRunner {
 public:
  // Opens the job tables in <state_dir>/state.db (module "runtime-jobs") and
  // settles or adopts the runs a previous daemon left running.
  static Result<std::unique_ptr<ProcessJobRunner>> Open(const std::string& state_dir, ProcessJobOptions options = {});
  ~ProcessJobRunner() override;
  ProcessJobRunner(const ProcessJobRunner&) = delete;
  ProcessJobRunner& operator=(const ProcessJobRunner&) = delete;

  Result<JobRun> Run(const JobSpec& spec) override;
  Result<std::optional<JobRun>> Get(int64_t run_id) override;
  Result<std::vector<JobRun>> List(const std::string& job) override;
  Result<JobRun> WaitFor(int64_t run_id, std::chrono::milliseconds timeout) override;

 private:
  struct Impl;
  explicit ProcessJobRunner(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace gitopsd::runtime
