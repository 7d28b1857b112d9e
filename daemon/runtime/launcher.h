// The process launcher: the one place where the runtime starts, waits for
// and stops processes on this host. Builds, jobs and services go through it.
//
// What callers can rely on:
//  - argv goes to the program as is; a shell (/bin/sh -c) is used only when
//    LaunchSpec::shell says so, so a ';' in an argument is just a character.
//  - The child's environment is exactly LaunchSpec::env plus PATH, HOME and
//    LANG taken from the daemon (unless env sets them): nothing else of the
//    daemon's environment (tokens, passwords) leaks into it. Descriptors
//    other than 0, 1 and 2 are closed in the child.
//  - stdin is /dev/null; stdout and stderr are appended to one log file.
//  - Every child leads its own session and process group; stopping it
//    signals the whole group (SIGTERM, a grace period, then SIGKILL), so
//    grandchildren go with it. When the leader exits on its own, what is
//    left of its group is killed before the leader is reaped.
//  - A program that cannot be run is an error naming it: "cannot run X: not
//    found" / "permission denied" / "working folder W does not exist".
//  - Nothing throws.
#pragma once
#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "sync/status.h"

namespace gitopsd::runtime {

struct LaunchSpec {
  // The program and its arguments. With shell = true, argv[0] is a script
  // for /bin/sh -c and argv[1..] become its $0, $1, ...
  std::vector<std::string> argv{};
  bool shell = false;
  std::string cwd{};                         // "" = the daemon's current folder
  std::map<std::string, std::string> env{};  // the whole environment, plus PATH/HOME/LANG
  std::string log_file{};                    // stdout+stderr appended here; "" = /dev/null
};

// How a process ended.
struct ExitStatus {
  int exit_code = -1;      // when it exited; -1 when killed by a signal
  int signal = 0;          // the signal that killed it, 0 if it exited
  bool timed_out = false;  // stopped because a deadline passed
  bool abandoned = false;  // stopped because the caller's abandon() said so
  bool left = false;       // still running: the caller's leave() said so, and it was released
  bool ok() const { return exit_code == 0 && !timed_out && !abandoned; }
  // "exit code 3", "killed by signal 9 (Killed)", "timed out (killed by ...)",
  // "stopped on request (exit code 143)".
  std::string Describe() const;
};

// A process recognisable across daemon restarts: the pid and the kernel's
// start time of that pid (field 22 of /proc/<pid>/stat), so a recycled pid
// is never taken for the process we started.
struct ProcessIdentity {
  pid_t pid = -1;
  int64_t start_time = 0;
};

// The start time of `pid`, or nullopt if there is no such (non-zombie) process.
std::optional<int64_t> ProcessStartTime(pid_t pid);

// True while the process with this identity exists and has not exited
// (a zombie counts as exited).
bool IsRunning(const ProcessIdentity& id);

// Stops a process we may not be the parent of (one adopted after a daemon
// restart): SIGTERM to its group, up to `grace`, then SIGKILL, polling its
// identity. Does nothing if the identity no longer matches. Reaps it if it
// happens to be our child.
void TerminateGroup(const ProcessIdentity& id, std::chrono::milliseconds grace);

// The absolute path the program of `spec` would be run from (after PATH
// lookup with the child's PATH, relative to spec.cwd), or the error Launch
// would give.
Result<std::string> ResolveProgram(const LaunchSpec& spec);

// A child process we started and are the parent of. Move-only. Destroying
// an owned Child stops its group (grace 2 s); Release() gives it up instead.
class Child {
 public:
  static Result<Child> Launch(const LaunchSpec& spec);

  Child(Child&& other) noexcept;
  Child& operator=(Child&& other) noexcept;
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;
  ~Child();

  pid_t pid() const { return id_.pid; }
  const ProcessIdentity& identity() const { return id_; }
  bool ended() const { return status_.has_value(); }

  // The exit status once the process has ended (it is then reaped), without
  // blocking; nullopt while it runs.
  std::optional<ExitStatus> TryWait();
  // Waits until the process ends or `deadline` passes (then stops the group
  // with `grace` and reports timed_out) or `abandon` (polled; may be empty)
  // returns true (then stops it likewise and reports abandoned), or `leave`
  // (polled; may be empty) returns true: then the process is released, left
  // running, and reported left.
  ExitStatus Wait(std::optional<std::chrono::steady_clock::time_point> deadline,
                  std::chrono::milliseconds grace, const std::function<bool()>& abandon = {},
                  const std::function<bool()>& leave = {});
  // SIGTERM to the group, up to `grace`, SIGKILL; reaps. Idempotent.
  ExitStatus Stop(std::chrono::milliseconds grace);
  // Leaves the process running and forgets it (it is not reaped by us; the
  // caller keeps its identity to find it again).
  ProcessIdentity Release();

 private:
  explicit Child(ProcessIdentity id) : id_(id) {}
  ProcessIdentity id_;
  std::optional<ExitStatus> status_;
};

// Runs `spec` to completion (or until `timeout` or `abandon`, then stops it).
Result<ExitStatus> RunToCompletion(const LaunchSpec& spec, std::chrono::milliseconds timeout,
                                   std::chrono::milliseconds grace, const std::function<bool()>& abandon = {});

// ---- Files around processes ----

// If `path` is larger than `max_bytes`: path.(keep-1) -> path.keep, ...,
// a copy of path -> path.1, and path is truncated. Copy-and-truncate, not
// rename, because the writer keeps its O_APPEND descriptor (and must survive
// the daemon, so it cannot write through a pipe to us); what it writes while
// the copy is made can be lost. Returns whether it rotated.
bool RotateLogIfLarger(const std::string& path, uint64_t max_bytes, int keep);

// The last `max_lines` lines of a file (at most the last 64 KiB), or "".
std::string ReadTail(const std::string& path, size_t max_lines);

// Appends `text` to the log file at `path` (gitopsd's own "==> gitopsd: ..."
// lines among a process's output); a file that cannot be written is skipped.
void AppendToLog(const std::string& path, const std::string& text);

// Follows a log file a process appends to and hands each new complete line
// to `sink` (without its newline), for live progress. Starts at the file's
// current end. Poll() is cheap when nothing was written; a file that shrank
// (rotated or truncated) is followed again from its start. Long lines are
// cut at 4 KiB. Not thread-safe: one follower per waiting thread.
class LogFollower {
 public:
  LogFollower(std::string path, std::function<void(std::string_view line)> sink);
  void Poll();   // new complete lines
  void Flush();  // and the last partial line, once the writer has ended

 private:
  std::string path_;
  std::function<void(std::string_view)> sink_;
  uint64_t offset_ = 0;
  std::string partial_;
};

// A resource name used as a folder name: [A-Za-z0-9._-], not starting with
// '.', at most 100 characters. `what` names it in the error ("build service").
Status CheckResourceName(const std::string& what, const std::string& name);

// Milliseconds since the Unix epoch, for records.
int64_t NowMillis();

// A duration for messages: "5s", or "1500ms" when not whole seconds.
std::string DurationText(std::chrono::milliseconds d);

}  // namespace gitopsd::runtime
