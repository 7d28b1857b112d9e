// The PostgreSQL addon engine: each addon is one database on the configured
// server, managed with its client tools (psql, pg_dump, pg_restore) run as
// child processes.
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <map>

#include "daemon/runtime/addons_internal.h"

namespace gitopsd::runtime::addons_internal {
namespace {

constexpr size_t kMaxToolOutput = 16 * 1024;

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

}  // namespace

std::unique_ptr<LocalAddons::Engine> MakePostgresEngine(PostgresServerSettings server) {
  return std::make_unique<PostgresEngine>(std::move(server));
}

}  // namespace gitopsd::runtime::addons_internal
