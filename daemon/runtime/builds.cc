#include "daemon/runtime/builds.h"

#include <algorithm>
#include <cctype>
#include <condition_variable>
#include <filesystem>
#include <mutex>
#include <set>
#include <utility>

#include "daemon/runtime/launcher.h"
#include "daemon/runtime/module_db.h"
#include "sync/git.h"
#include "sync/sqlite.h"

namespace gitopsd::runtime {
namespace {

namespace fs = std::filesystem;
using std::chrono::milliseconds;

const std::vector<std::string> kMigrations = {
    R"sql(CREATE TABLE builds (
      service TEXT NOT NULL,
      commit_id TEXT NOT NULL,
      status TEXT NOT NULL,            -- running | succeeded | failed
      started_at INTEGER NOT NULL,
      ended_at INTEGER NOT NULL DEFAULT 0,
      exit_code INTEGER,
      error TEXT NOT NULL DEFAULT '',
      log_path TEXT NOT NULL,
      dir TEXT NOT NULL,
      attempts INTEGER NOT NULL DEFAULT 0,
      pid INTEGER,                     -- the build's process group while it runs
      pid_start INTEGER,
      PRIMARY KEY (service, commit_id)))sql",
};

constexpr const char* kColumns =
    "service, commit_id, status, started_at, ended_at, exit_code, error, log_path, dir, attempts";

BuildState ParseState(const std::string& text) {
  if (text == "succeeded") return BuildState::kSucceeded;
  if (text == "failed") return BuildState::kFailed;
  return BuildState::kRunning;
}

bool IsCommitId(const std::string& id) {
  return id.size() == 40 && std::ranges::all_of(id, [](unsigned char c) {
           return std::isdigit(c) != 0 || (c >= 'a' && c <= 'f');
         });
}

}  // namespace

const char* BuildStateName(BuildState state) {
  switch (state) {
    case BuildState::kRunning: return "running";
    case BuildState::kSucceeded: return "succeeded";
    case BuildState::kFailed: return "failed";
  }
  return "unknown";
}

struct ProcessBuildRunner::Impl {
  std::string state_dir;
  ProcessBuildOptions options;
  sqlite::Database db;
  std::mutex db_mu;  // serialises use of `db`

  std::mutex inflight_mu;
  std::condition_variable inflight_done;
  std::set<std::string> inflight;  // "service/commit" being built

  Impl(std::string dir, ProcessBuildOptions opts, sqlite::Database database)
      : state_dir(std::move(dir)), options(opts), db(std::move(database)) {}

  BuildRecord FromRow(const sqlite::Statement& st) const {
    BuildRecord r;
    r.service = st.Text(0);
    r.commit = st.Text(1);
    r.state = ParseState(st.Text(2));
    r.started_at = st.Int(3);
    r.ended_at = st.Int(4);
    if (!st.IsNull(5)) r.exit_code = static_cast<int>(st.Int(5));
    r.error = st.Text(6);
    r.log_path = st.Text(7);
    r.dir = st.Text(8);
    r.attempts = static_cast<int>(st.Int(9));
    if (r.state == BuildState::kFailed) r.log_tail = ReadTail(r.log_path, options.log_tail_lines);
    return r;
  }

  Result<std::optional<BuildRecord>> Find(const std::string& service, const std::string& commit) {
    std::lock_guard lock(db_mu);
    auto st = db.Prepare(std::string("SELECT ") + kColumns + " FROM builds WHERE service = ?1 AND commit_id = ?2");
    if (!st) return std::unexpected(st.error());
    st->Bind(1, service).Bind(2, commit);
    auto row = st->Step();
    if (!row) return std::unexpected(row.error());
    if (!*row) return std::optional<BuildRecord>();
    return std::optional<BuildRecord>(FromRow(*st));
  }

  Status MarkRunning(const BuildRecord& r) {
    std::lock_guard lock(db_mu);
    auto st = db.Prepare(
        "INSERT INTO builds (service, commit_id, status, started_at, log_path, dir, attempts) "
        "VALUES (?1, ?2, 'running', ?3, ?4, ?5, 1) ON CONFLICT (service, commit_id) DO UPDATE SET "
        "status = 'running', started_at = excluded.started_at, ended_at = 0, exit_code = NULL, "
        "error = '', log_path = excluded.log_path, dir = excluded.dir, attempts = builds.attempts + 1, "
        "pid = NULL, pid_start = NULL");
    if (!st) return std::unexpected(st.error());
    return st->Bind(1, r.service).Bind(2, r.commit).Bind(3, r.started_at).Bind(4, r.log_path).Bind(5, r.dir).Run();
  }

  Status RecordProcess(const BuildRecord& r, const ProcessIdentity& id) {
    std::lock_guard lock(db_mu);
    auto st = db.Prepare("UPDATE builds SET pid = ?3, pid_start = ?4 WHERE service = ?1 AND commit_id = ?2");
    if (!st) return std::unexpected(st.error());
    return st->Bind(1, r.service).Bind(2, r.commit).Bind(3, static_cast<int64_t>(id.pid)).Bind(4, id.start_time).Run();
  }

  Status MarkEnded(const BuildRecord& r) {
    std::lock_guard lock(db_mu);
    auto st = db.Prepare(
        "UPDATE builds SET status = ?3, ended_at = ?4, exit_code = ?5, error = ?6, pid = NULL, pid_start = NULL "
        "WHERE service = ?1 AND commit_id = ?2");
    if (!st) return std::unexpected(st.error());
    st->Bind(1, r.service).Bind(2, r.commit).Bind(3, BuildStateName(r.state)).Bind(4, r.ended_at);
    if (r.exit_code) {
      st->Bind(5, static_cast<int64_t>(*r.exit_code));
    } else {
      st->BindNull(5);
    }
    return st->Bind(6, r.error).Run();
  }

  // A previous daemon's builds that were running did not finish: stop what
  // is left of them and record them failed.
  Status FailInterrupted() {
    std::vector<ProcessIdentity> leftovers;
    {
      std::lock_guard lock(db_mu);
      auto st = db.Prepare("SELECT pid, pid_start FROM builds WHERE status = 'running' AND pid IS NOT NULL");
      if (!st) return std::unexpected(st.error());
      auto rows = sqlite::ReadAll<ProcessIdentity>(*st, [](const sqlite::Statement& row) {
        return ProcessIdentity{static_cast<pid_t>(row.Int(0)), row.Int(1)};
      });
      if (!rows) return std::unexpected(rows.error());
      leftovers = std::move(*rows);
    }
    for (const ProcessIdentity& id : leftovers) TerminateGroup(id, options.stop_grace);
    std::lock_guard lock(db_mu);
    auto st = db.Prepare(
        "UPDATE builds SET status = 'failed', ended_at = ?1, pid = NULL, pid_start = NULL, "
        "error = 'interrupted: the daemon stopped while this build ran' WHERE status = 'running'");
    if (!st) return std::unexpected(st.error());
    return st->Bind(1, NowMillis()).Run();
  }

  // Runs the build command in the fresh checkout; fills state, exit code, error.
  void RunCommand(const BuildSpec& spec, BuildRecord* r) {
    LaunchSpec launch{.argv = spec.command,
                      .shell = spec.shell,
                      .cwd = spec.workdir.empty() ? r->dir : (fs::path(r->dir) / spec.workdir).string(),
                      .env = spec.env,
                      .log_file = r->log_path};
    LogFollower follow(r->log_path, spec.output);
    auto child = Child::Launch(launch);
    if (!child) {
      r->state = BuildState::kFailed;
      r->error = child.error().message;
      AppendToLog(r->log_path, "==> gitopsd: " + r->error + "\n");
      return;
    }
    (void)RecordProcess(*r, child->identity());  // best effort: only used to clean up after a crash
    auto deadline = std::chrono::steady_clock::now() + spec.timeout;
    ExitStatus exit = child->Wait(deadline, options.stop_grace, [&] {
      follow.Poll();
      return spec.abandon && spec.abandon();
    });
    follow.Flush();
    if (exit.signal == 0 && !exit.timed_out) r->exit_code = exit.exit_code;
    r->state = exit.ok() ? BuildState::kSucceeded : BuildState::kFailed;
    if (exit.timed_out) {
      r->error = "timed out after " + DurationText(spec.timeout) + "; stopped";
    } else if (exit.abandoned) {
      r->error = "stopped: the run was cancelled or its node timed out";
    } else if (!exit.ok()) {
      r->error = "the build command failed: " + exit.Describe();
    }
    if (!r->error.empty()) AppendToLog(r->log_path, "==> gitopsd: " + r->error + "\n");
  }

  Result<BuildRecord> BuildOnce(const BuildSpec& spec, const git::Repository& repo, const std::string& commit) {
    auto known = Find(spec.service, commit);
    if (!known) return std::unexpected(known.error());
    if (*known && (*known)->succeeded()) {
      BuildRecord cached = **known;
      cached.cached = true;
      return cached;
    }
    const fs::path base = fs::path(state_dir) / "builds" / spec.service / commit;
    BuildRecord r;
    r.service = spec.service;
    r.commit = commit;
    r.dir = (base / "src").string();
    r.log_path = (base / "build.log").string();
    r.started_at = NowMillis();
    r.attempts = *known ? (*known)->attempts + 1 : 1;
    std::error_code ec;
    fs::remove_all(r.dir, ec);
    if (ec) return Fail("cannot clear the build folder " + r.dir + ": " + ec.message());
    if (auto s = repo.ExportTree(commit, r.dir); !s) {
      return Fail("cannot build " + spec.service + " at " + commit + ": " + s.error().message);
    }
    if (auto s = MarkRunning(r); !s) return std::unexpected(s.error());
    AppendToLog(r.log_path, "==> gitopsd: build of " + spec.service + " at " + commit + ", attempt " +
                                std::to_string(r.attempts) + "\n");
    RunCommand(spec, &r);
    r.ended_at = NowMillis();
    if (auto s = MarkEnded(r); !s) return std::unexpected(s.error());
    if (!r.succeeded()) r.log_tail = ReadTail(r.log_path, options.log_tail_lines);
    return r;
  }
};

ProcessBuildRunner::ProcessBuildRunner(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
ProcessBuildRunner::~ProcessBuildRunner() = default;

Result<std::unique_ptr<ProcessBuildRunner>> ProcessBuildRunner::Open(const std::string& state_dir,
                                                                      ProcessBuildOptions options) {
  std::error_code ec;
  fs::create_directories(state_dir, ec);
  auto db = OpenModuleDatabase(state_dir + "/state.db", "runtime-builds", kMigrations);
  if (!db) return std::unexpected(db.error());
  auto impl = std::make_unique<Impl>(state_dir, options, std::move(*db));
  if (auto s = impl->FailInterrupted(); !s) return std::unexpected(s.error());
  return std::unique_ptr<ProcessBuildRunner>(new ProcessBuildRunner(std::move(impl)));
}

Result<BuildRecord> ProcessBuildRunner::Build(const BuildSpec& spec, const git::Repository& repo,
                                              const std::string& commit) {
  if (auto s = CheckResourceName("build service", spec.service); !s) return std::unexpected(s.error());
  if (!IsCommitId(commit)) return Fail("cannot build " + spec.service + ": '" + commit + "' is not a commit id");
  if (spec.command.empty()) return Fail("cannot build " + spec.service + ": it has no build command");
  const std::string key = spec.service + "/" + commit;
  {
    std::unique_lock lock(impl_->inflight_mu);
    impl_->inflight_done.wait(lock, [&] { return !impl_->inflight.contains(key); });
    impl_->inflight.insert(key);
  }
  auto result = impl_->BuildOnce(spec, repo, commit);
  {
    std::lock_guard lock(impl_->inflight_mu);
    impl_->inflight.erase(key);
  }
  impl_->inflight_done.notify_all();
  return result;
}

Result<std::optional<BuildRecord>> ProcessBuildRunner::Find(const std::string& service, const std::string& commit) {
  return impl_->Find(service, commit);
}

Result<std::vector<BuildRecord>> ProcessBuildRunner::List(const std::string& service) {
  std::lock_guard lock(impl_->db_mu);
  auto st = impl_->db.Prepare(std::string("SELECT ") + kColumns +
                              " FROM builds WHERE ?1 = '' OR service = ?1 ORDER BY started_at DESC");
  if (!st) return std::unexpected(st.error());
  st->Bind(1, service);
  return sqlite::ReadAll<BuildRecord>(*st, [this](const sqlite::Statement& row) { return impl_->FromRow(row); });
}

}  // namespace gitopsd::runtime
