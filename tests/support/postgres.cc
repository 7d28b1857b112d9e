#include "tests/support/postgres.h"

#include <pwd.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <random>
#include <thread>
#include <vector>

namespace gitopsd::test {
namespace {

namespace fs = std::filesystem;

constexpr int kStartAttempts = 3;
constexpr auto kReadyTimeout = std::chrono::seconds(20);

// The newest /usr/lib/postgresql/<major>/bin that has a server, or "".
std::string FindServerBinDir() {
  std::error_code ec;
  int best = -1;
  std::string best_dir;
  for (const auto& entry : fs::directory_iterator("/usr/lib/postgresql", ec)) {
    const std::string version = entry.path().filename().string();
    if (version.empty() || !std::all_of(version.begin(), version.end(), ::isdigit)) continue;
    const std::string bin = entry.path().string() + "/bin";
    if (access((bin + "/initdb").c_str(), X_OK) != 0 ||
        access((bin + "/postgres").c_str(), X_OK) != 0) {
      continue;
    }
    if (int major = std::stoi(version); major > best) {
      best = major;
      best_dir = bin;
    }
  }
  return best_dir;
}

bool RunningAsRoot() { return geteuid() == 0; }

// initdb and postgres refuse root: run them as the postgres user then.
std::vector<std::string> AsServerUser(std::vector<std::string> argv) {
  if (!RunningAsRoot()) return argv;
  argv.insert(argv.begin(), {FindExecutable("runuser"), "-u", "postgres", "--"});
  return argv;
}

std::string RandomPassword() {
  std::random_device entropy;
  const char* hex = "0123456789abcdef";
  std::string password = "pw-";
  for (int i = 0; i < 20; ++i) password += hex[entropy() % 16];
  return password;
}

}  // namespace

PostgresServer::PostgresServer() : bin_dir_(FindServerBinDir()), password_(RandomPassword()) {}

PostgresServer::~PostgresServer() { Stop(); }

std::string PostgresServer::Unavailable() {
  if (FindServerBinDir().empty()) {
    return "no PostgreSQL server under /usr/lib/postgresql/*/bin (apt-get install postgresql)";
  }
  if (RunningAsRoot()) {
    if (getpwnam("postgres") == nullptr)
      return "running as root and there is no postgres user to run PostgreSQL as";
    if (FindExecutable("runuser").empty())
      return "running as root and runuser is missing (util-linux)";
  }
  return "";
}

Status PostgresServer::Start() {
  if (bin_dir_.empty()) return Fail(Unavailable());
  if (RunningAsRoot()) {
    const passwd* pw = getpwnam("postgres");
    if (pw == nullptr || chown(dir_.path().c_str(), pw->pw_uid, pw->pw_gid) != 0) {
      return Fail("cannot hand " + dir_.path() + " to the postgres user");
    }
  }
  const std::string password_file = dir_.Sub("pwfile");
  if (!WriteTextFile(password_file, password_ + "\n")) return Fail("cannot write " + password_file);
  if (RunningAsRoot()) {
    const passwd* pw = getpwnam("postgres");
    if (chown(password_file.c_str(), pw->pw_uid, pw->pw_gid) != 0)
      return Fail("cannot chown " + password_file);
  }
  const std::string data = dir_.Sub("data");
  CommandResult init =
      RunCommand(AsServerUser({bin_dir_ + "/initdb", "-D", data, "-U", user(), "--auth-local=trust",
                               "--auth-host=scram-sha-256", "--pwfile=" + password_file, "-E",
                               "UTF8", "--locale=C.UTF-8", "--no-sync"}));
  if (!init.ok()) return Fail("initdb failed: " + init.output);

  std::string last_error;
  for (int attempt = 0; attempt < kStartAttempts; ++attempt) {
    port_ = FreeLoopbackPort();
    auto started = Process::Start(
        AsServerUser({bin_dir_ + "/postgres", "-D", data, "-p", std::to_string(port_), "-k",
                      dir_.path(), "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c",
                      "synchronous_commit=off", "-c", "full_page_writes=off"}),
        SpawnOptions{.cwd = dir_.path(), .env = {}, .output_file = dir_.Sub("server.log")});
    if (!started) return Fail(started.error().message);
    server_.emplace(std::move(*started));
    auto deadline = std::chrono::steady_clock::now() + kReadyTimeout;
    while (server_->Running() && std::chrono::steady_clock::now() < deadline) {
      CommandResult ready = RunCommand(
          {bin_dir_ + "/pg_isready", "-q", "-h", host(), "-p", std::to_string(port_), "-t", "1"});
      if (ready.ok()) return Ok();
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    last_error = Log();
    server_.reset();  // a port taken in the meantime: try another one
  }
  return Fail("PostgreSQL did not become ready: " + last_error);
}

void PostgresServer::Stop() {
  if (!server_) return;
  if (server_->Running()) {
    RunCommand(AsServerUser({bin_dir_ + "/pg_ctl", "-D", dir_.Sub("data"), "-m", "immediate", "-w",
                             "-t", "10", "stop"}));
  }
  server_.reset();  // reaps the child; SIGTERM/SIGKILL to its group if still there
}

std::map<std::string, std::string> PostgresServer::ClientEnv() const {
  return {{"PGHOST", host()},
          {"PGPORT", std::to_string(port_)},
          {"PGUSER", user()},
          {"PGPASSWORD", password_},
          {"PGCONNECT_TIMEOUT", "5"}};
}

CommandResult PostgresServer::Psql(const std::string& database, const std::string& sql) const {
  return RunCommand({bin_dir_ + "/psql", "-X", "-w", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
                     "-d", database, "-c", sql},
                    "", ClientEnv());
}

std::string PostgresServer::Log() const { return ReadTextFile(dir_.Sub("server.log")); }

}  // namespace gitopsd::test
