#include "daemon/runtime/addons.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <spdlog/spdlog.h>
#include <sqlite3.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <chrono>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <random>
#include <thread>
#include <variant>

#include "daemon/runtime/module_db.h"

namespace gitopsd::runtime {
namespace fs = std::filesystem;

namespace {

// Append only: migration i takes the module from version i to i + 1.
const std::vector<std::string> kMigrations = {
    R"sql(
CREATE TABLE runtime_addons (
  name TEXT PRIMARY KEY,
  type TEXT NOT NULL CHECK (type IN ('sqlite', 'postgresql')),
  location TEXT NOT NULL,           -- sqlite: absolute file path; postgresql: database name
  created_at INTEGER NOT NULL,      -- unix milliseconds
  forked_from TEXT NOT NULL DEFAULT '',
  keep_backups INTEGER,             -- NULL = the configured default
  ready INTEGER NOT NULL DEFAULT 1  -- 0 while a fork into it has not finished
);
CREATE TABLE runtime_addon_backups (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,  -- creation order: "newest" means highest seq
  id TEXT NOT NULL UNIQUE,
  addon TEXT NOT NULL,              -- no foreign key: backups may outlive their addon
  type TEXT NOT NULL,
  path TEXT NOT NULL,
  size INTEGER NOT NULL DEFAULT 0,
  status TEXT NOT NULL CHECK (status IN ('running', 'success', 'failed')),
  error TEXT NOT NULL DEFAULT '',
  started_at INTEGER NOT NULL,
  ended_at INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX runtime_addon_backups_by_addon ON runtime_addon_backups (addon, status, seq);
)sql",
};

constexpr char kModule[] = "runtime-addons";
constexpr char kPartialSuffix[] = ".partial";
constexpr size_t kMaxToolOutput = 16 * 1024;

// ---- names, time, ids -----------------------------------------------------

Status ValidateName(const std::string& name) {
  bool ok =
      !name.empty() && name.size() <= 63 && name[0] >= 'a' && name[0] <= 'z' && name.back() != '-';
  for (char c : name) ok = ok && ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-');
  if (!ok) {
    return Fail("invalid addon name \"" + name +
                "\": use 1-63 characters of a-z, 0-9 and '-', starting with a letter and not "
                "ending with '-'");
  }
  return Ok();
}

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// 20250101T120000.123Z-3f9a1c: sorts by time, unique enough with the random tail
// (and the table's UNIQUE constraint catches the rest).
std::string NewBackupId(int64_t now_ms) {
  std::time_t seconds = static_cast<std::time_t>(now_ms / 1000);
  std::tm tm{};
  gmtime_r(&seconds, &tm);
  char stamp[32];
  std::strftime(stamp, sizeof(stamp), "%Y%m%dT%H%M%S", &tm);
  std::random_device entropy;
  char id[64];
  std::snprintf(id, sizeof(id), "%s.%03dZ-%06x", stamp, static_cast<int>(now_ms % 1000),
                entropy() & 0xffffffu);
  return id;
}

// ---- files ----------------------------------------------------------------

Status FsyncPath(const std::string& path, bool directory) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC | (directory ? O_DIRECTORY : 0));
  if (fd < 0) return Fail("cannot open " + path + " to sync it: " + std::strerror(errno));
  int rc = fsync(fd);
  int err = errno;
  close(fd);
  if (rc != 0) return Fail("cannot sync " + path + " to disk: " + std::strerror(err));
  return Ok();
}

Status MakeFolder(const std::string& dir, const std::string& what) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return Fail("cannot create the " + what + " folder " + dir + ": " + ec.message());
  return Ok();
}

// Removes a SQLite file with its sidecars; missing files are fine.
void RemoveSqliteFiles(const std::string& path) {
  std::error_code ec;
  for (const char* suffix : {"", "-journal", "-wal", "-shm"}) fs::remove(path + suffix, ec);
}

// Writes via `write` to path.partial, syncs it, renames it to `path` and
// syncs the folder: `path` exists only complete. Nothing is left on failure.
template <class WriteFn>
Status WriteDurably(const std::string& path, WriteFn write) {
  const std::string temp = path + kPartialSuffix;
  RemoveSqliteFiles(temp);
  Status status = write(temp);
  if (status) status = FsyncPath(temp, /*directory=*/false);
  if (status && std::rename(temp.c_str(), path.c_str()) != 0) {
    status = Fail("cannot rename " + temp + " to " + path + ": " + std::strerror(errno));
  }
  if (status) status = FsyncPath(fs::path(path).parent_path().string(), /*directory=*/true);
  if (!status) {
    RemoveSqliteFiles(temp);
    std::error_code ec;
    fs::remove(path, ec);
  }
  return status;
}

// ---- child processes (psql, pg_dump, pg_restore) ---------------------------

struct ToolRun {
  int exit_code = -1;  // -1 = killed by a signal
  std::string output;  // stdout and stderr, the last kMaxToolOutput bytes
};

// Owns posix_spawn's attribute and file-action objects.
class SpawnPlan {
 public:
  SpawnPlan() {
    posix_spawn_file_actions_init(&actions_);
    posix_spawnattr_init(&attr_);
    sigset_t defaults, empty;
    sigemptyset(&defaults);
    sigemptyset(&empty);
    for (int sig : {SIGPIPE, SIGTERM, SIGINT, SIGHUP, SIGCHLD}) sigaddset(&defaults, sig);
    posix_spawnattr_setsigdefault(&attr_, &defaults);
    posix_spawnattr_setsigmask(&attr_, &empty);
    posix_spawnattr_setflags(&attr_, POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK);
  }
  ~SpawnPlan() {
    posix_spawn_file_actions_destroy(&actions_);
    posix_spawnattr_destroy(&attr_);
  }
  SpawnPlan(const SpawnPlan&) = delete;
  SpawnPlan& operator=(const SpawnPlan&) = delete;

  posix_spawn_file_actions_t* actions() { return &actions_; }
  const posix_spawnattr_t* attr() const { return &attr_; }

 private:
  posix_spawn_file_actions_t actions_;
  posix_spawnattr_t attr_;
};

// As the launcher does: `extra` plus PATH, HOME (for ~/.pgpass) and LANG from
// the daemon, and nothing else of its environment (tokens stay in the daemon).
std::vector<std::string> ChildEnvironment(const std::map<std::string, std::string>& extra) {
  std::vector<std::string> env;
  for (const char* key : {"PATH", "HOME", "LANG"}) {
    const char* value = std::getenv(key);
    if (value != nullptr && !extra.contains(key)) env.push_back(std::string(key) + "=" + value);
  }
  for (const auto& [key, value] : extra) env.push_back(key + "=" + value);
  return env;
}

// Runs argv (no shell) to completion with ChildEnvironment(extra).
// An error only when it cannot be started; the exit code is the caller's.
Result<ToolRun> RunTool(const std::vector<std::string>& argv,
                        const std::map<std::string, std::string>& extra) {
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) return Fail(std::string("pipe: ") + std::strerror(errno));
  SpawnPlan plan;
  posix_spawn_file_actions_addopen(plan.actions(), 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(plan.actions(), fds[1], 1);
  posix_spawn_file_actions_adddup2(plan.actions(), fds[1], 2);
  std::vector<char*> args;
  for (const std::string& arg : argv) args.push_back(const_cast<char*>(arg.c_str()));
  args.push_back(nullptr);
  std::vector<std::string> env = ChildEnvironment(extra);
  std::vector<char*> envp;
  for (std::string& entry : env) envp.push_back(entry.data());
  envp.push_back(nullptr);
  pid_t pid = -1;
  int rc =
      posix_spawnp(&pid, argv[0].c_str(), plan.actions(), plan.attr(), args.data(), envp.data());
  close(fds[1]);
  if (rc != 0) {
    close(fds[0]);
    return Fail("cannot start " + argv[0] + ": " + std::strerror(rc));
  }
  ToolRun run;
  char buffer[4096];
  while (true) {
    ssize_t n = read(fds[0], buffer, sizeof(buffer));
    if (n > 0) {
      run.output.append(buffer, static_cast<size_t>(n));
      if (run.output.size() > 2 * kMaxToolOutput)
        run.output.erase(0, run.output.size() - kMaxToolOutput);
    } else if (n == 0 || errno != EINTR) {
      break;
    }
  }
  close(fds[0]);
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (run.output.size() > kMaxToolOutput) run.output.erase(0, run.output.size() - kMaxToolOutput);
  run.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return run;
}

std::string Trim(std::string text) {
  while (!text.empty() && std::isspace(static_cast<unsigned char>(text.back()))) text.pop_back();
  size_t start = 0;
  while (start < text.size() && std::isspace(static_cast<unsigned char>(text[start]))) ++start;
  return text.substr(start);
}

// ---- SQLite files ---------------------------------------------------------

struct SqliteCloser {
  void operator()(sqlite3* db) const { sqlite3_close_v2(db); }
};
using SqliteHandle = std::unique_ptr<sqlite3, SqliteCloser>;

Result<SqliteHandle> OpenSqlite(const std::string& path, bool create) {
  sqlite3* raw = nullptr;
  int flags = SQLITE_OPEN_READWRITE | (create ? SQLITE_OPEN_CREATE : 0);
  int rc = sqlite3_open_v2(path.c_str(), &raw, flags, nullptr);
  SqliteHandle db(raw);
  if (rc != SQLITE_OK) {
    return Fail("cannot open SQLite file " + path + ": " +
                (raw ? sqlite3_errmsg(raw) : sqlite3_errstr(rc)));
  }
  sqlite3_busy_timeout(raw, 5000);
  // Reading the schema is the first access to the file: a file that is not
  // a database fails here rather than halfway through a copy.
  if (sqlite3_exec(raw, "SELECT count(*) FROM sqlite_master", nullptr, nullptr, nullptr) !=
      SQLITE_OK) {
    return Fail("SQLite file " + path + ": " + sqlite3_errmsg(raw));
  }
  return db;
}

// Copies the whole database `from` into `to` with the online backup API: a
// consistent snapshot of `from`, written as one transaction into `to`.
Status CopySqlite(const std::string& from, const std::string& to, bool create_target) {
  auto source = OpenSqlite(from, /*create=*/false);
  if (!source) return std::unexpected(source.error());
  auto target = OpenSqlite(to, create_target);
  if (!target) return std::unexpected(target.error());
  sqlite3_backup* backup = sqlite3_backup_init(target->get(), "main", source->get(), "main");
  if (backup == nullptr) {
    return Fail("cannot copy " + from + " to " + to + ": " + sqlite3_errmsg(target->get()));
  }
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  int rc = SQLITE_OK;
  // -1: all pages in one step, so a busy writer cannot make the copy restart forever.
  while ((rc = sqlite3_backup_step(backup, -1)) == SQLITE_BUSY || rc == SQLITE_LOCKED ||
         rc == SQLITE_OK) {
    if (rc != SQLITE_OK && std::chrono::steady_clock::now() > deadline) break;
    if (rc != SQLITE_OK) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  sqlite3_backup_finish(backup);
  if (rc != SQLITE_DONE) {
    int code = sqlite3_errcode(target->get());
    std::string why = code != SQLITE_OK ? sqlite3_errmsg(target->get()) : sqlite3_errstr(rc);
    // "disk I/O error" alone does not say that the disk is full.
    if (int os_error = sqlite3_system_errno(target->get()); os_error != 0) {
      why += std::string(" (") + std::strerror(os_error) + ")";
    }
    return Fail("cannot copy " + from + " to " + to + ": " + why);
  }
  return Ok();
}

}  // namespace

std::string_view AddonTypeName(AddonType type) {
  return type == AddonType::kSqlite ? "sqlite" : "postgresql";
}

Result<AddonType> ParseAddonType(std::string_view name) {
  if (name == "sqlite") return AddonType::kSqlite;
  if (name == "postgresql") return AddonType::kPostgresql;
  return Fail("unknown addon type \"" + std::string(name) + "\" (expected sqlite or postgresql)");
}

std::string_view BackupStatusName(BackupStatus status) {
  switch (status) {
    case BackupStatus::kRunning:
      return "running";
    case BackupStatus::kSuccess:
      return "success";
    case BackupStatus::kFailed:
      return "failed";
  }
  return "failed";
}

namespace {
BackupStatus ParseBackupStatus(std::string_view name) {
  if (name == "running") return BackupStatus::kRunning;
  if (name == "success") return BackupStatus::kSuccess;
  return BackupStatus::kFailed;
}
}  // namespace

// ---- engines: what differs between addon types -----------------------------

// How one type of addon is created, dropped, dumped and restored. The caller
// holds the addon's lock and makes files durable (WriteDurably).
class LocalAddons::Engine {
 public:
  virtual ~Engine() = default;
  virtual std::string Location(const std::string& name) const = 0;
  virtual std::string BackupExtension() const = 0;
  virtual Result<bool> Exists(const std::string& location) = 0;
  virtual Status Create(const std::string& location) = 0;  // an empty database; fine if it exists
  virtual Status Drop(const std::string& location) = 0;    // fine if it is gone
  // Writes a complete backup of `location` into `file` (a new file).
  virtual Status Dump(const std::string& location, const std::string& file) = 0;
  virtual Status Restore(const std::string& location, const std::string& file) = 0;
  // Creates `location` (which must not exist) holding `file`'s data; on
  // failure removes what it created and nothing else.
  virtual Status CreateFrom(const std::string& location, const std::string& file) = 0;
  virtual void Connect(const std::string& location, Addon& addon) const = 0;
};

namespace {

class SqliteEngine final : public LocalAddons::Engine {
 public:
  explicit SqliteEngine(std::string state_dir) : state_dir_(std::move(state_dir)) {}

  std::string Location(const std::string& name) const override {
    return state_dir_ + "/addons/" + name + "/" + name + ".sqlite";
  }
  std::string BackupExtension() const override { return ".sqlite"; }

  Result<bool> Exists(const std::string& location) override {
    std::error_code ec;
    bool exists = fs::exists(location, ec);
    if (ec) return Fail("cannot check SQLite file " + location + ": " + ec.message());
    if (!exists) return false;
    // Adopting a file that is not a database would only fail later, in a job.
    if (auto db = OpenSqlite(location, /*create=*/false); !db) return std::unexpected(db.error());
    return true;
  }

  Status Create(const std::string& location) override {
    if (auto made = MakeFolder(fs::path(location).parent_path(), "addon"); !made) return made;
    auto db = OpenSqlite(location, /*create=*/true);
    if (!db) return std::unexpected(db.error());
    return Ok();
  }

  Status Drop(const std::string& location) override {
    RemoveSqliteFiles(location);
    std::error_code ec;
    fs::path folder = fs::path(location).parent_path();
    // The addon's own folder (addons/<name>/); leftovers of a fork go with it.
    if (folder.parent_path() == fs::path(state_dir_) / "addons") fs::remove_all(folder, ec);
    if (ec) return Fail("cannot remove the addon folder " + folder.string() + ": " + ec.message());
    return Ok();
  }

  Status Dump(const std::string& location, const std::string& file) override {
    auto copied = CopySqlite(location, file, /*create_target=*/true);
    if (!copied) return copied;
    // A backup is one self-contained file, whatever journal mode the live
    // database uses (a WAL source would otherwise mark the copy as WAL).
    auto db = OpenSqlite(file, /*create=*/false);
    if (!db) return std::unexpected(db.error());
    if (sqlite3_exec(db->get(), "PRAGMA journal_mode=DELETE", nullptr, nullptr, nullptr) !=
        SQLITE_OK) {
      return Fail("SQLite file " + file + ": " + sqlite3_errmsg(db->get()));
    }
    return Ok();
  }

  Status Restore(const std::string& location, const std::string& file) override {
    return CopySqlite(file, location, /*create_target=*/false);
  }

  Status CreateFrom(const std::string& location, const std::string& file) override {
    auto exists = Exists(location);
    if (!exists) return std::unexpected(exists.error());
    if (*exists) return Fail("SQLite file " + location + " already exists");
    if (auto made = MakeFolder(fs::path(location).parent_path(), "addon"); !made) return made;
    auto written = WriteDurably(location, [&](const std::string& temp) {
      return CopySqlite(file, temp, /*create_target=*/true);
    });
    if (!written) (void)Drop(location);
    return written;
  }

  void Connect(const std::string& location, Addon& addon) const override {
    addon.env["DATABASE_TYPE"] = "sqlite";
    addon.env["DATABASE_URL"] = "sqlite://" + location;
    addon.env["DATABASE_PATH"] = location;
  }

 private:
  std::string state_dir_;
};

class PostgresEngine final : public LocalAddons::Engine {
 public:
  explicit PostgresEngine(PostgresServerSettings server) : server_(std::move(server)) {}

  std::string Location(const std::string& name) const override { return name; }
  std::string BackupExtension() const override { return ".dump"; }

  Result<bool> Exists(const std::string& database) override {
    auto out = Psql("SELECT 1 FROM pg_database WHERE datname = '" + database + "'");
    if (!out) return std::unexpected(out.error());
    return Trim(*out) == "1";
  }

  Status Create(const std::string& database) override {
    auto created = Psql("CREATE DATABASE " + Quoted(database));
    if (!created && created.error().message.find("already exists") != std::string::npos)
      return Ok();
    if (!created) return std::unexpected(created.error());
    return Ok();
  }

  Status Drop(const std::string& database) override {
    auto dropped = Psql("DROP DATABASE IF EXISTS " + Quoted(database) + " WITH (FORCE)");
    if (!dropped) return std::unexpected(dropped.error());
    return Ok();
  }

  Status Dump(const std::string& database, const std::string& file) override {
    auto run = Run("pg_dump", {"-w", "-Fc", "-f", file, "-d", database});
    if (!run) return std::unexpected(run.error());
    return Ok();
  }

  Status Restore(const std::string& database, const std::string& file) override {
    auto run = Run("pg_restore",
                   {"-w", "--clean", "--if-exists", "--single-transaction", "-d", database, file});
    if (!run) return std::unexpected(run.error());
    return Ok();
  }

  Status CreateFrom(const std::string& database, const std::string& file) override {
    // Strict: a database that already exists is not ours to fill.
    if (auto created = Psql("CREATE DATABASE " + Quoted(database)); !created) {
      return std::unexpected(created.error());
    }
    auto restored = Run("pg_restore", {"-w", "--single-transaction", "-d", database, file});
    if (!restored) {
      (void)Drop(database);
      return std::unexpected(restored.error());
    }
    return Ok();
  }

  void Connect(const std::string& database, Addon& addon) const override {
    addon.env["DATABASE_TYPE"] = "postgresql";
    addon.env["DATABASE_URL"] = "postgresql://" + server_.user + "@" + HostForUrl() + ":" +
                                std::to_string(server_.port) + "/" + database;
    addon.env["PGHOST"] = server_.host;
    addon.env["PGPORT"] = std::to_string(server_.port);
    addon.env["PGUSER"] = server_.user;
    addon.env["PGDATABASE"] = database;
    if (!server_.password.empty()) addon.secret_env["PGPASSWORD"] = server_.password;
  }

 private:
  // Names are validated ([a-z0-9-]), so quoting cannot be escaped.
  static std::string Quoted(const std::string& name) { return "\"" + name + "\""; }

  std::string HostForUrl() const {
    return server_.host.find(':') != std::string::npos ? "[" + server_.host + "]" : server_.host;
  }

  std::string Server() const {
    return server_.user + "@" + server_.host + ":" + std::to_string(server_.port);
  }

  // Runs a PostgreSQL client tool against the configured server; the
  // password goes in PGPASSWORD, never in argv or messages.
  Result<std::string> Run(const std::string& tool, std::vector<std::string> args) {
    std::map<std::string, std::string> env = {
        {"PGHOST", server_.host},
        {"PGPORT", std::to_string(server_.port)},
        {"PGUSER", server_.user},
        {"PGCONNECT_TIMEOUT", std::to_string(server_.connect_timeout_seconds)},
        {"PGAPPNAME", "gitopsd"},
    };
    if (!server_.password.empty()) env["PGPASSWORD"] = server_.password;
    args.insert(args.begin(), server_.bin_dir.empty() ? tool : server_.bin_dir + "/" + tool);
    auto run = RunTool(args, env);
    if (!run) {
      return Fail("PostgreSQL server " + Server() + ": " + run.error().message +
                  " (install postgresql-client or set the PostgreSQL bin folder)");
    }
    if (run->exit_code != 0) {
      return Fail("PostgreSQL server " + Server() + ": " + tool + " failed (exit " +
                  std::to_string(run->exit_code) + "): " + Trim(run->output));
    }
    return run->output;
  }

  Result<std::string> Psql(const std::string& sql) {
    return Run("psql", {"-X", "-w", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d",
                        server_.admin_database, "-c", sql});
  }

  PostgresServerSettings server_;
};

// One row of runtime_addons.
struct AddonRow {
  std::string name;
  AddonType type = AddonType::kSqlite;
  std::string location;
  int64_t created_at_ms = 0;
  std::string forked_from;
  std::optional<int> keep_backups;
  bool ready = true;
};

constexpr char kAddonColumns[] =
    "name, type, location, created_at, forked_from, keep_backups, ready";
constexpr char kBackupColumns[] =
    "id, addon, type, path, size, status, error, started_at, ended_at";

Result<AddonRow> ReadAddonRow(const sqlite::Statement& st) {
  auto type = ParseAddonType(st.Text(1));
  if (!type) return std::unexpected(type.error());
  AddonRow row{st.Text(0), *type, st.Text(2), st.Int(3), st.Text(4), std::nullopt, st.Int(6) != 0};
  if (!st.IsNull(5)) row.keep_backups = static_cast<int>(st.Int(5));
  return row;
}

Result<Backup> ReadBackupRow(const sqlite::Statement& st) {
  auto type = ParseAddonType(st.Text(2));
  if (!type) return std::unexpected(type.error());
  return Backup{st.Text(0), st.Text(1), *type,
                st.Text(3), st.Int(4),  ParseBackupStatus(st.Text(5)),
                st.Text(6), st.Int(7),  st.Int(8)};
}

Result<std::optional<AddonRow>> LoadAddonRow(std::mutex& db_mutex, sqlite::Database& db,
                                             const std::string& name) {
  std::lock_guard lock(db_mutex);
  auto st =
      db.Prepare(std::string("SELECT ") + kAddonColumns + " FROM runtime_addons WHERE name = ?1");
  if (!st) return std::unexpected(st.error());
  st->Bind(1, name);
  auto has = st->Step();
  if (!has) return std::unexpected(has.error());
  if (!*has) return std::optional<AddonRow>();
  auto row = ReadAddonRow(*st);
  if (!row) return std::unexpected(row.error());
  return std::optional<AddonRow>(std::move(*row));
}

Status ExecBound(sqlite::Database& db, const std::string& sql,
                 const std::vector<std::variant<std::string, int64_t>>& values) {
  auto st = db.Prepare(sql);
  if (!st) return std::unexpected(st.error());
  for (size_t i = 0; i < values.size(); ++i) {
    int index = static_cast<int>(i + 1);
    if (const auto* text = std::get_if<std::string>(&values[i])) {
      st->Bind(index, std::string_view(*text));
    } else {
      st->Bind(index, std::get<int64_t>(values[i]));
    }
  }
  return st->Run();
}

}  // namespace

// ---- LocalAddons -------------------------------------------------------------

Result<std::unique_ptr<LocalAddons>> LocalAddons::Open(LocalAddonsOptions options) {
  if (options.state_dir.empty()) return Fail("addons: no stateDir configured");
  if (options.keep_backups < 1) {
    return Fail("addons: keep_backups must be at least 1 (got " +
                std::to_string(options.keep_backups) + ")");
  }
  std::error_code ec;
  options.state_dir = fs::absolute(options.state_dir, ec).lexically_normal().string();
  while (options.state_dir.size() > 1 && options.state_dir.back() == '/')
    options.state_dir.pop_back();
  if (auto made = MakeFolder(options.state_dir, "state"); !made)
    return std::unexpected(made.error());
  auto db = OpenModuleDatabase(options.state_dir + "/state.db", kModule, kMigrations);
  if (!db) return std::unexpected(db.error());
  std::unique_ptr<LocalAddons> addons(new LocalAddons(std::move(options), std::move(*db)));
  if (auto recovered = addons->Recover(); !recovered) return std::unexpected(recovered.error());
  return addons;
}

LocalAddons::LocalAddons(LocalAddonsOptions options, sqlite::Database db)
    : options_(std::move(options)), db_(std::move(db)) {
  sqlite_engine_ = std::make_unique<SqliteEngine>(options_.state_dir);
  if (options_.postgres) postgres_engine_ = std::make_unique<PostgresEngine>(*options_.postgres);
}

LocalAddons::~LocalAddons() = default;

Status LocalAddons::Recover() {
  std::lock_guard lock(db_mutex_);
  auto st = db_.Prepare("SELECT id, path FROM runtime_addon_backups WHERE status = 'running'");
  if (!st) return std::unexpected(st.error());
  std::vector<std::pair<std::string, std::string>> interrupted;
  while (true) {
    auto has = st->Step();
    if (!has) return std::unexpected(has.error());
    if (!*has) break;
    interrupted.emplace_back(st->Text(0), st->Text(1));
  }
  for (const auto& [id, path] : interrupted) {
    // The rename may have happened before the crash; unrecorded, the file
    // cannot be trusted, so it goes too.
    RemoveSqliteFiles(path + kPartialSuffix);
    RemoveSqliteFiles(path);
    auto marked =
        ExecBound(db_,
                  "UPDATE runtime_addon_backups SET status = 'failed', size = 0, "
                  "error = ?2, ended_at = ?3 WHERE id = ?1",
                  {id, std::string("interrupted: gitopsd stopped during the backup"), NowMs()});
    if (!marked) return marked;
    spdlog::warn("addon backup {} was interrupted by a restart; marked failed", id);
    ++recovered_backups_;
  }
  return Ok();
}

Result<LocalAddons::Engine*> LocalAddons::EngineFor(AddonType type) {
  if (type == AddonType::kSqlite) return sqlite_engine_.get();
  if (!postgres_engine_) {
    return Fail(
        "postgresql addons need a PostgreSQL server in the runtime configuration "
        "(host, port, user, password, admin database)");
  }
  return postgres_engine_.get();
}

std::shared_ptr<std::mutex> LocalAddons::AddonLock(const std::string& name) {
  std::lock_guard lock(locks_mutex_);
  auto& slot = addon_locks_[name];
  if (!slot) slot = std::make_shared<std::mutex>();
  return slot;
}

Addon LocalAddons::Describe(const std::string& name, AddonType type, const std::string& location,
                            int64_t created_at_ms, const std::string& forked_from,
                            std::optional<int> keep_backups) {
  Addon addon{name,        type,
              location,    created_at_ms,
              forked_from, keep_backups.value_or(options_.keep_backups),
              {},          {}};
  // Without a configured PostgreSQL server the addon is still listed, without
  // a connection; everything that would use it fails in EngineFor.
  if (auto engine = EngineFor(type); engine) (*engine)->Connect(location, addon);
  return addon;
}

Result<std::optional<Addon>> LocalAddons::LoadAddon(const std::string& name) {
  auto loaded = LoadAddonRow(db_mutex_, db_, name);
  if (!loaded) return std::unexpected(loaded.error());
  std::optional<AddonRow> row = std::move(*loaded);
  if (!row || !row->ready) return std::optional<Addon>();
  return std::optional<Addon>(Describe(row->name, row->type, row->location, row->created_at_ms,
                                       row->forked_from, row->keep_backups));
}

Status LocalAddons::RecordAddon(const AddonSpec& spec, const std::string& location,
                                const std::string& forked_from, bool ready) {
  std::lock_guard lock(db_mutex_);
  auto st = db_.Prepare(
      "INSERT INTO runtime_addons (name, type, location, created_at, forked_from, keep_backups, "
      "ready) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT (name) DO UPDATE SET "
      "type = excluded.type, location = excluded.location, keep_backups = excluded.keep_backups, "
      "ready = excluded.ready, forked_from = excluded.forked_from");
  if (!st) return std::unexpected(st.error());
  st->Bind(1, spec.name).Bind(2, AddonTypeName(spec.type)).Bind(3, location).Bind(4, NowMs());
  st->Bind(5, forked_from);
  if (spec.keep_backups) {
    st->Bind(6, static_cast<int64_t>(*spec.keep_backups));
  } else {
    st->BindNull(6);
  }
  st->Bind(7, static_cast<int64_t>(ready ? 1 : 0));
  return st->Run();
}

Result<Addon> LocalAddons::EnsureAddon(const AddonSpec& spec) {
  if (auto valid = ValidateName(spec.name); !valid) return std::unexpected(valid.error());
  if (spec.keep_backups && *spec.keep_backups < 1) {
    return Fail("addon " + spec.name + ": keep_backups must be at least 1");
  }
  auto engine = EngineFor(spec.type);
  if (!engine) return Fail("addon " + spec.name + ": " + engine.error().message);
  auto addon_lock = AddonLock(spec.name);
  std::lock_guard guard(*addon_lock);
  auto loaded = LoadAddonRow(db_mutex_, db_, spec.name);
  if (!loaded) return std::unexpected(loaded.error());
  std::optional<AddonRow> row = std::move(*loaded);
  if (row && !row->ready) {
    return Fail("addon " + spec.name +
                ": a fork into it did not finish; fork it again or remove it");
  }
  if (row && row->type != spec.type) {
    return Fail("addon " + spec.name + " exists as " + std::string(AddonTypeName(row->type)) +
                ", not " + std::string(AddonTypeName(spec.type)) +
                "; remove it first to change its type");
  }
  const std::string location = row ? row->location : (*engine)->Location(spec.name);
  auto exists = (*engine)->Exists(location);
  if (!exists) return Fail("addon " + spec.name + ": " + exists.error().message);
  if (row && !*exists) {
    return Fail("addon " + spec.name + " is recorded at " + location +
                " but its data is gone; to start over, remove the addon (its backups stay), "
                "ensure it again and restore the latest backup");
  }
  if (!*exists) {
    if (auto created = (*engine)->Create(location); !created) {
      return Fail("addon " + spec.name + ": " + created.error().message);
    }
    spdlog::info("addon {} ({}) created at {}", spec.name, AddonTypeName(spec.type), location);
  }
  if (auto recorded = RecordAddon(spec, location, row ? row->forked_from : "", /*ready=*/true);
      !recorded) {
    return std::unexpected(recorded.error());
  }
  auto addon = LoadAddon(spec.name);
  if (!addon) return std::unexpected(addon.error());
  if (!*addon) return Fail("addon " + spec.name + " vanished while it was being ensured");
  return std::move(**addon);
}

Result<std::optional<Addon>> LocalAddons::FindAddon(const std::string& name) {
  return LoadAddon(name);
}

Result<std::vector<Addon>> LocalAddons::ListAddons() {
  std::vector<AddonRow> rows;
  {
    std::lock_guard lock(db_mutex_);
    auto st = db_.Prepare(std::string("SELECT ") + kAddonColumns +
                          " FROM runtime_addons WHERE ready = 1 ORDER BY name");
    if (!st) return std::unexpected(st.error());
    while (true) {
      auto has = st->Step();
      if (!has) return std::unexpected(has.error());
      if (!*has) break;
      auto row = ReadAddonRow(*st);
      if (!row) return std::unexpected(row.error());
      rows.push_back(std::move(*row));
    }
  }
  std::vector<Addon> addons;
  for (const AddonRow& row : rows) {
    addons.push_back(Describe(row.name, row.type, row.location, row.created_at_ms, row.forked_from,
                              row.keep_backups));
  }
  return addons;
}

Status LocalAddons::RemoveAddon(const std::string& name, bool delete_backups) {
  auto addon_lock = AddonLock(name);
  std::lock_guard guard(*addon_lock);
  auto loaded = LoadAddonRow(db_mutex_, db_, name);
  if (!loaded) return std::unexpected(loaded.error());
  std::optional<AddonRow> row = std::move(*loaded);
  if (row) {
    auto engine = EngineFor(row->type);
    if (!engine) return Fail("addon " + name + ": " + engine.error().message);
    if (auto dropped = (*engine)->Drop(row->location); !dropped) {
      return Fail("cannot remove addon " + name + ": " + dropped.error().message);
    }
    std::lock_guard lock(db_mutex_);
    if (auto forgot = ExecBound(db_, "DELETE FROM runtime_addons WHERE name = ?1", {name});
        !forgot) {
      return forgot;
    }
    spdlog::info("addon {} removed ({} dropped)", name, row->location);
  }
  if (!delete_backups) return Ok();
  auto backups = ListBackups(name);
  if (!backups) return std::unexpected(backups.error());
  std::lock_guard lock(db_mutex_);
  if (auto forgot = ExecBound(db_, "DELETE FROM runtime_addon_backups WHERE addon = ?1", {name});
      !forgot) {
    return forgot;
  }
  for (const Backup& backup : *backups) RemoveSqliteFiles(backup.path);
  std::error_code ec;
  fs::remove(options_.state_dir + "/backups/" + name, ec);  // only if empty
  return Ok();
}

Result<Backup> LocalAddons::StartBackupRow(const Addon& addon) {
  auto engine = EngineFor(addon.type);
  if (!engine) return std::unexpected(engine.error());
  Backup backup;
  backup.addon = addon.name;
  backup.type = addon.type;
  backup.started_at_ms = NowMs();
  backup.id = NewBackupId(backup.started_at_ms);
  backup.path = options_.state_dir + "/backups/" + addon.name + "/" + backup.id +
                (*engine)->BackupExtension();
  std::lock_guard lock(db_mutex_);
  auto inserted = ExecBound(db_,
                            "INSERT INTO runtime_addon_backups (id, addon, type, path, status, "
                            "started_at) VALUES (?1, ?2, ?3, ?4, 'running', ?5)",
                            {backup.id, backup.addon, std::string(AddonTypeName(backup.type)),
                             backup.path, backup.started_at_ms});
  if (!inserted) return std::unexpected(inserted.error());
  return backup;
}

Status LocalAddons::FinishBackupRow(Backup& backup, const Status& outcome) {
  backup.ended_at_ms = NowMs();
  backup.status = outcome ? BackupStatus::kSuccess : BackupStatus::kFailed;
  backup.error = outcome ? "" : outcome.error().message;
  std::error_code ec;
  backup.size_bytes = outcome ? static_cast<int64_t>(fs::file_size(backup.path, ec)) : 0;
  if (ec) backup.size_bytes = 0;
  std::lock_guard lock(db_mutex_);
  return ExecBound(db_,
                   "UPDATE runtime_addon_backups SET status = ?2, error = ?3, size = ?4, "
                   "ended_at = ?5 WHERE id = ?1",
                   {backup.id, std::string(BackupStatusName(backup.status)), backup.error,
                    backup.size_bytes, backup.ended_at_ms});
}

Status LocalAddons::ApplyRetention(const Addon& addon) {
  std::vector<std::string> doomed;
  {
    std::lock_guard lock(db_mutex_);
    auto tx = sqlite::Transaction::Begin(db_);
    if (!tx) return std::unexpected(tx.error());
    {
      auto st = db_.Prepare(
          "SELECT seq, path FROM runtime_addon_backups WHERE addon = ?1 AND status = 'success' "
          "ORDER BY seq DESC");
      if (!st) return std::unexpected(st.error());
      st->Bind(1, addon.name);
      int64_t oldest_kept = 0;
      for (int kept = 0;;) {
        auto has = st->Step();
        if (!has) return std::unexpected(has.error());
        if (!*has) break;
        if (kept < addon.keep_backups) {
          ++kept;
          oldest_kept = st->Int(0);
        } else {
          doomed.push_back(st->Text(1));
        }
      }
      if (oldest_kept == 0) return Ok();
      // Rows go first (durably), then files: a crash in between leaves an
      // orphan file, never a listed backup without its file.
      auto pruned = ExecBound(db_,
                              "DELETE FROM runtime_addon_backups WHERE addon = ?1 AND seq < ?2 "
                              "AND status IN ('success', 'failed')",
                              {addon.name, oldest_kept});
      if (!pruned) return pruned;
    }
    if (auto committed = tx->Commit(); !committed) return committed;
  }
  for (const std::string& path : doomed) {
    RemoveSqliteFiles(path);
    spdlog::info("addon {}: backup {} deleted by retention (keep {})", addon.name, path,
                 addon.keep_backups);
  }
  return Ok();
}

Result<Backup> LocalAddons::BackupAddon(const std::string& name) {
  auto addon_lock = AddonLock(name);
  std::lock_guard guard(*addon_lock);
  auto addon = LoadAddon(name);
  if (!addon) return std::unexpected(addon.error());
  if (!*addon) return Fail("cannot back up addon " + name + ": no such addon");
  auto engine = EngineFor((*addon)->type);
  if (!engine) return std::unexpected(engine.error());
  auto backup = StartBackupRow(**addon);
  if (!backup) return std::unexpected(backup.error());

  auto started = std::chrono::steady_clock::now();
  const std::string folder = fs::path(backup->path).parent_path().string();
  Status outcome = MakeFolder(folder, "backup");
  if (outcome) {
    outcome = WriteDurably(backup->path, [&](const std::string& temp) {
      return (*engine)->Dump((*addon)->location, temp);
    });
  }
  if (!outcome) {
    outcome = Fail("backup " + backup->id + " of addon " + name + " to " + backup->path +
                   " failed: " + outcome.error().message);
  }
  if (auto recorded = FinishBackupRow(*backup, outcome); !recorded) {
    return Fail("backup " + backup->id + " of addon " + name +
                ": cannot record its outcome: " + recorded.error().message);
  }
  if (!outcome) {
    spdlog::error("{}", outcome.error().message);
    return std::unexpected(outcome.error());
  }
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() -
                                                                  started);
  spdlog::info("addon {}: backup {} done, {} bytes in {} ms", name, backup->id, backup->size_bytes,
               ms.count());
  if (auto retained = ApplyRetention(**addon); !retained) {
    spdlog::warn("addon {}: retention after backup {} failed: {}", name, backup->id,
                 retained.error().message);
  }
  return std::move(*backup);
}

Result<std::vector<Backup>> LocalAddons::ListBackups(const std::string& addon) {
  std::lock_guard lock(db_mutex_);
  auto st =
      db_.Prepare(std::string("SELECT ") + kBackupColumns +
                  " FROM runtime_addon_backups WHERE ?1 = '' OR addon = ?1 ORDER BY seq DESC");
  if (!st) return std::unexpected(st.error());
  st->Bind(1, addon);
  std::vector<Backup> backups;
  while (true) {
    auto has = st->Step();
    if (!has) return std::unexpected(has.error());
    if (!*has) break;
    auto backup = ReadBackupRow(*st);
    if (!backup) return std::unexpected(backup.error());
    backups.push_back(std::move(*backup));
  }
  return backups;
}

Result<Backup> LocalAddons::ResolveBackup(const std::string& addon, const std::string& backup_id) {
  std::optional<Backup> backup;
  {
    std::lock_guard lock(db_mutex_);
    bool latest = backup_id == kLatestBackup;
    auto st = db_.Prepare(std::string("SELECT ") + kBackupColumns +
                          (latest ? " FROM runtime_addon_backups WHERE addon = ?1 AND status = "
                                    "'success' ORDER BY seq DESC LIMIT 1"
                                  : " FROM runtime_addon_backups WHERE id = ?1"));
    if (!st) return std::unexpected(st.error());
    st->Bind(1, latest ? addon : backup_id);
    auto has = st->Step();
    if (!has) return std::unexpected(has.error());
    if (*has) {
      auto row = ReadBackupRow(*st);
      if (!row) return std::unexpected(row.error());
      backup = std::move(*row);
    }
  }
  if (!backup && backup_id == kLatestBackup) {
    return Fail("addon " + addon + " has no successful backup yet");
  }
  if (!backup) return Fail("no backup " + backup_id + " of addon " + addon);
  if (backup->addon != addon) {
    return Fail("backup " + backup_id + " belongs to addon " + backup->addon + ", not " + addon);
  }
  if (backup->status != BackupStatus::kSuccess) {
    return Fail("backup " + backup_id + " of addon " + addon + " is " +
                std::string(BackupStatusName(backup->status)) + ", not a usable backup");
  }
  std::error_code ec;
  if (!fs::is_regular_file(backup->path, ec)) {
    return Fail("the file of backup " + backup->id + " (" + backup->path + ") is missing");
  }
  return std::move(*backup);
}

Result<Backup> LocalAddons::RestoreBackup(const std::string& addon_name,
                                          const std::string& backup_id) {
  auto addon_lock = AddonLock(addon_name);
  std::lock_guard guard(*addon_lock);
  auto addon = LoadAddon(addon_name);
  if (!addon) return std::unexpected(addon.error());
  if (!*addon) return Fail("cannot restore addon " + addon_name + ": no such addon");
  auto backup = ResolveBackup(addon_name, backup_id);
  if (!backup) return Fail("cannot restore addon " + addon_name + ": " + backup.error().message);
  auto engine = EngineFor((*addon)->type);
  if (!engine) return std::unexpected(engine.error());
  auto started = std::chrono::steady_clock::now();
  if (auto restored = (*engine)->Restore((*addon)->location, backup->path); !restored) {
    return Fail("restoring backup " + backup->id + " into addon " + addon_name +
                " failed: " + restored.error().message);
  }
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() -
                                                                  started);
  spdlog::info("addon {}: restored backup {} in {} ms", addon_name, backup->id, ms.count());
  return std::move(*backup);
}

Result<Addon> LocalAddons::ForkAddon(const AddonSpec& target, const std::string& source_name,
                                     const std::string& backup_id) {
  if (auto valid = ValidateName(target.name); !valid) return std::unexpected(valid.error());
  if (target.name == source_name) return Fail("cannot fork addon " + source_name + " into itself");
  auto source_lock = AddonLock(source_name);
  auto target_lock = AddonLock(target.name);
  std::scoped_lock guard(*source_lock, *target_lock);
  auto source = LoadAddon(source_name);
  if (!source) return std::unexpected(source.error());
  if (!*source) return Fail("cannot fork addon " + source_name + ": no such addon");
  if ((*source)->type != target.type) {
    return Fail("cannot fork " + std::string(AddonTypeName((*source)->type)) + " addon " +
                source_name + " into a " + std::string(AddonTypeName(target.type)) + " addon");
  }
  auto backup = ResolveBackup(source_name, backup_id);
  if (!backup) return Fail("cannot fork addon " + source_name + ": " + backup.error().message);
  auto engine = EngineFor(target.type);
  if (!engine) return std::unexpected(engine.error());

  auto location = ClaimForkTarget(target, **engine, backup->id);
  if (!location) return std::unexpected(location.error());
  auto started = std::chrono::steady_clock::now();
  Status filled = (*engine)->CreateFrom(*location, backup->path);
  Status settled;
  {
    std::lock_guard lock(db_mutex_);
    settled = filled ? ExecBound(db_, "UPDATE runtime_addons SET ready = 1 WHERE name = ?1",
                                 {target.name})
                     : ExecBound(db_, "DELETE FROM runtime_addons WHERE name = ?1", {target.name});
  }
  if (!filled) {
    return Fail("forking backup " + backup->id + " of addon " + source_name + " into " +
                target.name + " failed: " + filled.error().message);
  }
  if (!settled) return std::unexpected(settled.error());
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() -
                                                                  started);
  spdlog::info("addon {} forked from backup {} of {} in {} ms", target.name, backup->id,
               source_name, ms.count());
  auto addon = LoadAddon(target.name);
  if (!addon) return std::unexpected(addon.error());
  if (!*addon) return Fail("addon " + target.name + " vanished while it was being forked");
  return std::move(**addon);
}

Result<std::string> LocalAddons::ClaimForkTarget(const AddonSpec& target, Engine& engine,
                                                 const std::string& backup_id) {
  auto loaded = LoadAddonRow(db_mutex_, db_, target.name);
  if (!loaded) return std::unexpected(loaded.error());
  const std::optional<AddonRow>& existing = *loaded;
  if (existing && existing->ready) {
    return Fail("cannot fork into addon " + target.name + ": it already exists (remove it first)");
  }
  if (existing) {
    // An earlier fork into it was interrupted: what it left is ours to drop.
    auto leftover_engine = EngineFor(existing->type);
    if (!leftover_engine) return std::unexpected(leftover_engine.error());
    if (auto dropped = (*leftover_engine)->Drop(existing->location); !dropped) {
      return Fail("cannot clean up the interrupted fork into addon " + target.name + ": " +
                  dropped.error().message);
    }
  }
  // The row comes first (not ready), so a crash mid-fork leaves something
  // known to be ours, which the next fork or RemoveAddon cleans up.
  std::string location = engine.Location(target.name);
  if (auto recorded = RecordAddon(target, location, backup_id, /*ready=*/false); !recorded) {
    return std::unexpected(recorded.error());
  }
  return location;
}

}  // namespace gitopsd::runtime
