#include "daemon/runtime/jobs.h"

#include <algorithm>
#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <thread>
#include <utility>

#include "daemon/runtime/launcher.h"
#include "daemon/runtime/module_db.h"
#include "sync/sqlite.h"

namespace gitopsd::runtime {
namespace {

namespace fs = std::filesystem;
using std::chrono::milliseconds;

// Sleeps `delay`, waking early when `abandon` turns true; returns whether it did.
bool SleepUnlessAbandoned(const std::function<bool()>& abandon, milliseconds delay) {
  const auto until = std::chrono::steady_clock::now() + delay;
  while (std::chrono::steady_clock::now() < until) {
    if (abandon && abandon()) return true;
    std::this_thread::sleep_for(std::min(milliseconds(50), delay));
  }
  return abandon && abandon();
}
using SteadyClock = std::chrono::steady_clock;

const std::vector<std::string> kMigrations = {
    R"sql(CREATE TABLE job_runs (
      id INTEGER PRIMARY KEY AUTOINCREMENT,
      job TEXT NOT NULL,
      build TEXT NOT NULL,
      status TEXT NOT NULL,            -- running | succeeded | failed
      attempts INTEGER NOT NULL DEFAULT 0,
      exit_code INTEGER,
      error TEXT NOT NULL DEFAULT '',
      log_path TEXT NOT NULL DEFAULT '',
      status_file TEXT NOT NULL DEFAULT '',  -- the running attempt's exit status, written by the wrapper
      started_at INTEGER NOT NULL,
      ended_at INTEGER NOT NULL DEFAULT 0,
      pid INTEGER,                     -- the running attempt's process group
      pid_start INTEGER);
    CREATE INDEX job_runs_by_job ON job_runs (job, id))sql",
};

constexpr const char* kColumns =
    "id, job, build, status, attempts, exit_code, error, log_path, started_at, ended_at";

// Runs "$@" and writes its exit status to $1 before exiting with it, so the
// status outlives a daemon that is not there to reap the process.
constexpr const char* kWrapper = "f=$1; shift; \"$@\"; s=$?; echo $s > \"$f\"; exit $s";

JobState ParseState(const std::string& text) {
  if (text == "succeeded") return JobState::kSucceeded;
  if (text == "failed") return JobState::kFailed;
  return JobState::kRunning;
}

std::optional<int> ReadStatusFile(const std::string& path) {
  std::ifstream in(path);
  int code = -1;
  if (!in || !(in >> code)) return std::nullopt;
  return code;
}

// A run adopted from a previous daemon: its attempt's process still runs.
struct Adopted {
  int64_t run_id = 0;
  ProcessIdentity process;
  std::string status_file;
};

}  // namespace

const char* JobStateName(JobState state) {
  switch (state) {
    case JobState::kRunning: return "running";
    case JobState::kSucceeded: return "succeeded";
    case JobState::kFailed: return "failed";
  }
  return "unknown";
}

struct ProcessJobRunner::Impl {
  std::string state_dir;
  ProcessJobOptions options;
  sqlite::Database db;
  std::mutex db_mu;  // serialises use of `db`

  std::mutex watch_mu;
  std::condition_variable watch_cv;
  bool stopping = false;
  std::vector<Adopted> adopted;
  std::thread watcher;

  Impl(std::string dir, ProcessJobOptions opts, sqlite::Database database)
      : state_dir(std::move(dir)), options(opts), db(std::move(database)) {}

  ~Impl() {
    {
      std::lock_guard lock(watch_mu);
      stopping = true;
    }
    watch_cv.notify_all();
    if (watcher.joinable()) watcher.join();
  }

  static JobRun FromRow(const sqlite::Statement& st) {
    JobRun r;
    r.id = st.Int(0);
    r.job = st.Text(1);
    r.build = st.Text(2);
    r.state = ParseState(st.Text(3));
    r.attempts = static_cast<int>(st.Int(4));
    if (!st.IsNull(5)) r.exit_code = static_cast<int>(st.Int(5));
    r.error = st.Text(6);
    r.log_path = st.Text(7);
    r.started_at = st.Int(8);
    r.ended_at = st.Int(9);
    return r;
  }

  Result<std::optional<JobRun>> Get(int64_t id) {
    std::lock_guard lock(db_mu);
    auto st = db.Prepare(std::string("SELECT ") + kColumns + " FROM job_runs WHERE id = ?1");
    if (!st) return std::unexpected(st.error());
    st->Bind(1, id);
    auto row = st->Step();
    if (!row) return std::unexpected(row.error());
    if (!*row) return std::optional<JobRun>();
    return std::optional<JobRun>(FromRow(*st));
  }

  Result<int64_t> Insert(const JobSpec& spec, int64_t started_at) {
    std::lock_guard lock(db_mu);
    auto st = db.Prepare("INSERT INTO job_runs (job, build, status, started_at) VALUES (?1, ?2, 'running', ?3)");
    if (!st) return std::unexpected(st.error());
    if (auto s = st->Bind(1, spec.job).Bind(2, spec.build).Bind(3, started_at).Run(); !s) {
      return std::unexpected(s.error());
    }
    return db.LastInsertRowId();
  }

  Status RecordAttempt(const JobRun& run, const std::string& status_file, const ProcessIdentity& process) {
    std::lock_guard lock(db_mu);
    auto st = db.Prepare(
        "UPDATE job_runs SET attempts = ?2, log_path = ?3, status_file = ?4, pid = ?5, pid_start = ?6 WHERE id = ?1");
    if (!st) return std::unexpected(st.error());
    return st->Bind(1, run.id)
        .Bind(2, static_cast<int64_t>(run.attempts))
        .Bind(3, run.log_path)
        .Bind(4, status_file)
        .Bind(5, static_cast<int64_t>(process.pid))
        .Bind(6, process.start_time)
        .Run();
  }

  Status MarkEnded(const JobRun& run) {
    std::lock_guard lock(db_mu);
    auto st = db.Prepare(
        "UPDATE job_runs SET status = ?2, attempts = ?3, exit_code = ?4, error = ?5, log_path = ?6, ended_at = ?7, "
        "pid = NULL, pid_start = NULL WHERE id = ?1");
    if (!st) return std::unexpected(st.error());
    st->Bind(1, run.id).Bind(2, JobStateName(run.state)).Bind(3, static_cast<int64_t>(run.attempts));
    if (run.exit_code) {
      st->Bind(4, static_cast<int64_t>(*run.exit_code));
    } else {
      st->BindNull(4);
    }
    return st->Bind(5, run.error).Bind(6, run.log_path).Bind(7, run.ended_at).Run();
  }

  // Ends a run from what its attempt's wrapper left behind.
  void Settle(int64_t run_id, const std::string& status_file, const std::string& reason_if_missing) {
    auto found = Get(run_id);
    if (!found || !*found) return;
    JobRun run = **found;
    run.ended_at = NowMillis();
    if (auto code = ReadStatusFile(status_file)) {
      run.exit_code = *code;
      run.state = *code == 0 ? JobState::kSucceeded : JobState::kFailed;
      if (*code != 0) run.error = "exit code " + std::to_string(*code);
    } else {
      run.state = JobState::kFailed;
      run.error = reason_if_missing;
    }
    if (!run.log_path.empty()) AppendToLog(run.log_path, "==> gitopsd: settled after a daemon restart: " +
                                                             (run.error.empty() ? "succeeded" : run.error) + "\n");
    (void)MarkEnded(run);
  }

  // Runs a previous daemon left "running": settle the finished, adopt the living.
  Status Recover() {
    std::vector<Adopted> found;
    {
      std::lock_guard lock(db_mu);
      auto st = db.Prepare("SELECT id, pid, pid_start, status_file FROM job_runs WHERE status = 'running'");
      if (!st) return std::unexpected(st.error());
      auto rows = sqlite::ReadAll<Adopted>(*st, [](const sqlite::Statement& row) {
        return Adopted{row.Int(0), {static_cast<pid_t>(row.IsNull(1) ? -1 : row.Int(1)), row.Int(2)}, row.Text(3)};
      });
      if (!rows) return std::unexpected(rows.error());
      found = std::move(*rows);
    }
    for (Adopted& run : found) {
      if (IsRunning(run.process)) {
        adopted.push_back(std::move(run));
      } else {
        Settle(run.run_id, run.status_file, "the job's process died with the daemon");
      }
    }
    if (!adopted.empty()) watcher = std::thread([this] { WatchAdopted(); });
    return Ok();
  }

  void WatchAdopted() {
    std::unique_lock lock(watch_mu);
    while (!stopping && !adopted.empty()) {
      watch_cv.wait_for(lock, options.poll_interval, [this] { return stopping; });
      std::erase_if(adopted, [this](const Adopted& run) {
        if (IsRunning(run.process)) return false;
        Settle(run.run_id, run.status_file, "the job's process ended without leaving an exit status");
        return true;
      });
    }
  }

  // One attempt: its process under the wrapper, waited for until `deadline`.
  Result<ExitStatus> RunAttempt(const JobSpec& spec, JobRun* run, const std::string& program,
                                std::optional<SteadyClock::time_point> deadline) {
    const std::string status_file = (fs::path(run->log_path).parent_path() / "exit-status").string();
    std::error_code ec;
    fs::remove(status_file, ec);
    LaunchSpec launch{.argv = {kWrapper, "gitopsd-job", status_file},
                      .shell = true,
                      .cwd = spec.build_dir,
                      .env = spec.env,
                      .log_file = run->log_path};
    if (spec.shell) {
      launch.argv.insert(launch.argv.end(), {"/bin/sh", "-c"});
      launch.argv.insert(launch.argv.end(), spec.command.begin(), spec.command.end());
    } else {
      launch.argv.push_back(program);
      launch.argv.insert(launch.argv.end(), spec.command.begin() + 1, spec.command.end());
    }
    LogFollower follow(run->log_path, spec.output);
    AppendToLog(run->log_path, "==> gitopsd: job " + spec.job + " run " + std::to_string(run->id) + ", attempt " +
                                   std::to_string(run->attempts) + "\n");
    auto child = Child::Launch(launch);
    if (!child) return std::unexpected(child.error());
    if (auto s = RecordAttempt(*run, status_file, child->identity()); !s) return std::unexpected(s.error());
    ExitStatus exit = child->Wait(
        deadline, options.stop_grace,
        [&] {
          follow.Poll();
          return spec.abandon && spec.abandon();
        },
        spec.leave);
    follow.Flush();
    return exit;
  }

  // Attempts until one succeeds, the retries run out or the deadline passes.
  void RunAttempts(const JobSpec& spec, JobRun* run, const std::string& program) {
    std::optional<SteadyClock::time_point> deadline;
    if (spec.active_deadline.count() > 0) deadline = SteadyClock::now() + spec.active_deadline;
    const std::string deadline_error = "deadline exceeded: stopped after " + DurationText(spec.active_deadline) +
                                       " (activeDeadlineSeconds)";
    milliseconds delay = spec.retry_delay;
    while (true) {
      ++run->attempts;
      auto exit = RunAttempt(spec, run, program, deadline);
      if (!exit) {
        run->state = JobState::kFailed;
        run->error = exit.error().message;
        return;
      }
      if (exit->left) {
        AppendToLog(run->log_path, "==> gitopsd: the daemon is stopping; the job goes on and the next start "
                                   "adopts it\n");
        return;  // still running
      }
      run->exit_code = exit->signal == 0 && !exit->timed_out ? std::optional<int>(exit->exit_code) : std::nullopt;
      if (exit->ok()) {
        run->state = JobState::kSucceeded;
        run->error.clear();
        return;
      }
      run->state = JobState::kFailed;
      run->error = exit->timed_out ? deadline_error : exit->Describe();
      if (exit->abandoned) run->error = "stopped: the run was cancelled or its node timed out";
      if (exit->timed_out || exit->abandoned || run->attempts > spec.backoff_limit) return;
      if (deadline && SteadyClock::now() + delay >= *deadline) {
        std::this_thread::sleep_until(*deadline);
        run->error = deadline_error + "; last attempt: " + exit->Describe();
        return;
      }
      AppendToLog(run->log_path, "==> gitopsd: attempt " + std::to_string(run->attempts) + " failed (" +
                                     exit->Describe() + "); retrying in " + DurationText(delay) + "\n");
      if (SleepUnlessAbandoned(spec.abandon, delay)) {
        run->error = "stopped between attempts: the run was cancelled or its node timed out; last attempt: " +
                     exit->Describe();
        return;
      }
      delay *= 2;
    }
  }
};

ProcessJobRunner::ProcessJobRunner(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
ProcessJobRunner::~ProcessJobRunner() = default;

Result<std::unique_ptr<ProcessJobRunner>> ProcessJobRunner::Open(const std::string& state_dir,
                                                                  ProcessJobOptions options) {
  std::error_code ec;
  fs::create_directories(state_dir, ec);
  auto db = OpenModuleDatabase(state_dir + "/state.db", "runtime-jobs", kMigrations);
  if (!db) return std::unexpected(db.error());
  auto impl = std::make_unique<Impl>(state_dir, options, std::move(*db));
  if (auto s = impl->Recover(); !s) return std::unexpected(s.error());
  return std::unique_ptr<ProcessJobRunner>(new ProcessJobRunner(std::move(impl)));
}

Result<JobRun> ProcessJobRunner::Run(const JobSpec& spec) {
  if (auto s = CheckResourceName("job", spec.job); !s) return std::unexpected(s.error());
  JobRun run;
  run.job = spec.job;
  run.build = spec.build;
  run.started_at = NowMillis();
  auto id = impl_->Insert(spec, run.started_at);
  if (!id) return std::unexpected(id.error());
  run.id = *id;
  const fs::path dir = fs::path(impl_->state_dir) / "jobs" / spec.job / std::to_string(run.id);
  std::error_code ec;
  fs::create_directories(dir, ec);
  run.log_path = (dir / "job.log").string();

  auto program = ResolveProgram(LaunchSpec{.argv = spec.command, .shell = spec.shell, .cwd = spec.build_dir,
                                           .env = spec.env});
  if (!program) {
    run.state = JobState::kFailed;
    run.error = program.error().message;
    AppendToLog(run.log_path, "==> gitopsd: " + run.error + "\n");
  } else {
    impl_->RunAttempts(spec, &run, *program);
    if (run.state == JobState::kRunning) return run;  // left running (spec.leave): recorded as running
  }
  run.ended_at = NowMillis();
  if (auto s = impl_->MarkEnded(run); !s) return std::unexpected(s.error());
  return run;
}

Result<std::optional<JobRun>> ProcessJobRunner::Get(int64_t run_id) { return impl_->Get(run_id); }

Result<std::vector<JobRun>> ProcessJobRunner::List(const std::string& job) {
  std::lock_guard lock(impl_->db_mu);
  auto st = impl_->db.Prepare(std::string("SELECT ") + kColumns +
                              " FROM job_runs WHERE ?1 = '' OR job = ?1 ORDER BY id DESC");
  if (!st) return std::unexpected(st.error());
  st->Bind(1, job);
  return sqlite::ReadAll<JobRun>(*st, Impl::FromRow);
}

Result<JobRun> ProcessJobRunner::WaitFor(int64_t run_id, milliseconds timeout) {
  auto deadline = SteadyClock::now() + timeout;
  while (true) {
    auto run = impl_->Get(run_id);
    if (!run) return std::unexpected(run.error());
    if (!*run) return Fail("job run " + std::to_string(run_id) + " does not exist");
    if ((*run)->state != JobState::kRunning || SteadyClock::now() >= deadline) return **run;
    std::this_thread::sleep_for(milliseconds(20));
  }
}

}  // namespace gitopsd::runtime
