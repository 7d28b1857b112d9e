// Child processes for tests: run a command to completion, or start a server
// in the foreground and be sure it is gone when the test ends.
//
// What callers can rely on:
//  - No shell is involved: argv goes to posix_spawnp as is.
//  - A Process runs in its own process group; its destructor sends SIGTERM to
//    that group, waits up to the grace period, then SIGKILL, and reaps the PID,
//    so servers that fork workers (lighttpd's CGIs, sshd's sessions) leave
//    nothing behind.
//  - Nothing throws; failures are reported as values.
#pragma once
#include <sys/types.h>

#include <chrono>
#include <map>
#include <string>
#include <vector>

#include "sync/status.h"

namespace gitopsd::test {

struct SpawnOptions {
  std::string cwd;                          // "" = the current folder
  std::map<std::string, std::string> env;   // added to (or overriding) the test's environment
  std::string output_file;                  // stdout and stderr go here; "" = /dev/null
};

class Process {
 public:
  static Result<Process> Start(const std::vector<std::string>& argv, const SpawnOptions& options);

  Process(Process&& other) noexcept;
  Process& operator=(Process&& other) noexcept;
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;
  ~Process();

  pid_t pid() const { return pid_; }
  // True while the child has not exited (reaps it if it has).
  bool Running();
  // SIGTERM to the group, wait up to `grace`, then SIGKILL; reaps the child.
  // Returns the exit status as from waitpid (or -1 if already reaped).
  int Stop(std::chrono::milliseconds grace = std::chrono::milliseconds(3000));
  // What the child wrote so far (the output file), for failure messages.
  std::string Output() const;

 private:
  Process(pid_t pid, std::string output_file) : pid_(pid), output_file_(std::move(output_file)) {}
  pid_t pid_ = -1;
  int status_ = -1;
  std::string output_file_;
};

struct CommandResult {
  int exit_code = -1;  // -1 if it could not be started or died by a signal
  std::string output;  // stdout and stderr, interleaved
  bool ok() const { return exit_code == 0; }
};

// Runs argv to completion in `cwd` with extra environment variables.
CommandResult RunCommand(const std::vector<std::string>& argv, const std::string& cwd = "",
                         const std::map<std::string, std::string>& env = {});

// "a b c" for messages.
std::string JoinArgv(const std::vector<std::string>& argv);

// A TCP port on 127.0.0.1 that was free a moment ago (bind to port 0).
int FreeLoopbackPort();

// True once 127.0.0.1:port accepts a connection, false after `timeout`.
bool WaitForPort(int port, std::chrono::milliseconds timeout);

// The absolute path of an executable found on PATH (or given absolute), or "".
std::string FindExecutable(const std::string& name);

}  // namespace gitopsd::test
