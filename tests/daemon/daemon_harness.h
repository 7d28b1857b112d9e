// Driving the real gitopsd binary: start it on a free loopback port with a
// configuration written by the test, talk HTTP to it, wait for conditions
// with a deadline (never a fixed sleep), and stop it by PID.
#pragma once
#include <sys/types.h>

#include <chrono>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "sync/json.h"
#include "tests/support/process.h"
#include "tests/support/temp_dir.h"

namespace gitopsd::test {

std::string GitopsdBinary();
std::string GitopsctlBinary();

struct HttpReply {
  int status = 0;  // 0: no answer (error says why)
  std::string body;
  std::map<std::string, std::string> headers;
  std::string error;
  std::optional<json::Value> Json() const;  // the body parsed, if it is JSON
};

HttpReply Http(int port, const std::string& method, const std::string& path,
               const std::map<std::string, std::string>& headers = {},
               const std::string& body = "");

// Polls `condition` every 20 ms until it holds or `timeout` passes.
bool WaitUntil(const std::function<bool()>& condition,
               std::chrono::milliseconds timeout = std::chrono::seconds(20));

// Runs `gitopsd args...` to completion.
CommandResult RunGitopsd(const std::vector<std::string>& args);
// Runs `gitopsctl args...` to completion with extra environment variables
// (GITOPSD_URL, GITOPSD_SERVER, GITOPSD_TOKEN and GITOPSD_CACERT are cleared
// and XDG_CONFIG_HOME points nowhere, unless given).
CommandResult RunGitopsctl(const std::vector<std::string>& args,
                           std::map<std::string, std::string> env = {},
                           const std::string& cwd = "");

// Waits up to `timeout` for the process to exit; its exit code, or nullopt
// if it is still running (then it is left running).
std::optional<int> WaitForExit(Process& process, std::chrono::milliseconds timeout);

// A gitopsd serve process on 127.0.0.1:<free port>.
class DaemonUnderTest {
 public:
  explicit DaemonUnderTest(std::string dir) : dir_(std::move(dir)) {}

  // Writes `config` (a JSON text; "@PORT@" and "@STATE@" are replaced) to
  // <dir>/gitopsd.json and starts `gitopsd serve --config` on it.
  ::testing::AssertionResult StartWithConfig(const std::string& config);
  // Starts `gitopsd serve <args>` (the port must be in args as @PORT@).
  ::testing::AssertionResult StartWithArgs(std::vector<std::string> args);
  // Environment variables for the next start.
  void SetEnv(const std::string& name, const std::string& value) { env_[name] = value; }

  int port() const { return port_; }
  std::string state_dir() const { return dir_ + "/state"; }
  std::string config_path() const { return dir_ + "/gitopsd.json"; }
  // Where the daemon's stdout and stderr go (appended to across restarts).
  std::string log_path() const { return dir_ + "/gitopsd.log"; }
  Process& process() { return *process_; }
  std::string Output() const { return process_ ? process_->Output() : ""; }

  HttpReply Get(const std::string& path, const std::map<std::string, std::string>& headers = {}) {
    return Http(port_, "GET", path, headers);
  }
  HttpReply Post(const std::string& path, const std::map<std::string, std::string>& headers = {},
                 const std::string& body = "") {
    return Http(port_, "POST", path, headers, body);
  }
  HttpReply Put(const std::string& path, const std::map<std::string, std::string>& headers,
                const std::string& body) {
    return Http(port_, "PUT", path, headers, body);
  }
  HttpReply Delete(const std::string& path, const std::map<std::string, std::string>& headers = {}) {
    return Http(port_, "DELETE", path, headers);
  }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }
  bool WaitReady(std::chrono::milliseconds timeout = std::chrono::seconds(20));
  void Stop() { process_.reset(); }

 private:
  std::string dir_;
  int port_ = -1;
  std::map<std::string, std::string> env_;
  std::optional<Process> process_;
};

// Services the runtime started outlive the daemon by design: tests that
// deploy some end them with this, by the pids GET /api/v1/services reports.
void KillReportedServices(DaemonUnderTest& daemon);

// Live processes (zombies excluded) whose working folder is inside `dir`
// (e.g. a daemon's state folder: its builds, jobs and services), and whose
// argv has `word` when it is not empty.
std::vector<pid_t> ProcessesIn(const std::string& dir, const std::string& word = "");

}  // namespace gitopsd::test
