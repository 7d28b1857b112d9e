// Builds: a BuildService's commit checked out into its own folder and its
// build command run there. The runner asks a BuildRunner; the process
// implementation builds on this host, a Kubernetes one will run a Job.
//
// What callers can rely on:
//  - Build(spec, repo, commit) blocks until the build ended. A build that
//    ran and failed (non-zero exit, timeout, command not runnable) is a
//    BuildRecord in state kFailed with the reason and the log's tail, not an
//    error; an error means the build could not be tried (bad name, commit
//    missing in the mirror, state database unusable).
//  - Results are cached by (service, commit): once a commit built, building
//    it again returns the recorded success without running anything
//    (`cached` is set). A failed build is tried again from a fresh checkout.
//  - Concurrent Build calls for the same (service, commit) run it once; the
//    others wait and get its record. Thread-safe.
//  - Layout: <stateDir>/builds/<service>/<commit>/src (the tree, the build's
//    working folder) and .../build.log (appended to on every attempt).
//  - A build the daemon was running when it died is recorded kFailed
//    ("interrupted") when the runner opens, and its leftover process group
//    is stopped: a build is never assumed to have succeeded.
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

namespace gitopsd::git {
class Repository;
}

namespace gitopsd::runtime {

struct BuildSpec {
  std::string service{};               // the BuildService's name (a folder name)
  std::vector<std::string> command{};  // argv; with shell, command[0] is a /bin/sh -c script
  bool shell = false;
  std::string workdir{};  // relative to the checkout, e.g. "app"; "" = its root
  std::map<std::string, std::string> env{};
  std::chrono::milliseconds timeout = std::chrono::minutes(30);
  // Polled while the command runs: once true it is stopped and the build
  // fails (a run cancelled or its node timed out); the next Build of the
  // commit builds it again. Unset = never.
  std::function<bool()> abandon{};
  // Each line the build command writes, as it comes (polled). Unset = none.
  std::function<void(std::string_view line)> output{};
};

enum class BuildState { kRunning, kSucceeded, kFailed };
const char* BuildStateName(BuildState state);  // "running", "succeeded", "failed"

struct BuildRecord {
  std::string service{}, commit{};
  BuildState state = BuildState::kRunning;
  int64_t started_at = 0, ended_at = 0;  // ms since the epoch; ended_at 0 while running
  std::optional<int> exit_code{};        // when the command exited
  std::string error{};                   // why it failed ("exit code 2", "timed out after 30s", ...)
  std::string log_path{};
  std::string dir{};       // the checkout (.../src): what jobs and services run from
  std::string log_tail{};  // last lines of the log, for a failed build
  int attempts = 0;        // times it was run for this commit
  bool cached = false;     // this call returned an earlier success
  bool succeeded() const { return state == BuildState::kSucceeded; }
};

class BuildRunner {
 public:
  virtual ~BuildRunner() = default;
  // Builds `commit` (40 hex, present in `repo`) for spec.service, or returns
  // the cached success.
  virtual Result<BuildRecord> Build(const BuildSpec& spec, const git::Repository& repo,
                                    const std::string& commit) = 0;
  // The recorded build of (service, commit), if any.
  virtual Result<std::optional<BuildRecord>> Find(const std::string& service, const std::string& commit) = 0;
  // All recorded builds ("" = every service), newest first.
  virtual Result<std::vector<BuildRecord>> List(const std::string& service) = 0;
};

struct ProcessBuildOptions {
  std::chrono::milliseconds stop_grace = std::chrono::seconds(5);  // TERM -> KILL on timeout
  size_t log_tail_lines = 30;
};

class ProcessBuildRunner final : public BuildRunner {
 public:
  // Opens the builds tables in <state_dir>/state.db (module "runtime-builds")
  // and fails the builds a previous daemon left running.
  static Result<std::unique_ptr<ProcessBuildRunner>> Open(const std::string& state_dir,
                                                           ProcessBuildOptions options = {});
  ~ProcessBuildRunner() override;
  ProcessBuildRunner(const ProcessBuildRunner&) = delete;
  ProcessBuildRunner& operator=(const ProcessBuildRunner&) = delete;

  Result<BuildRecord> Build(const BuildSpec& spec, const git::Repository& repo, const std::string& commit) override;
  Result<std::optional<BuildRecord>> Find(const std::string& service, const std::string& commit) override;
  Result<std::vector<BuildRecord>> List(const std::string& service) override;

 private:
  struct Impl;
  explicit ProcessBuildRunner(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace gitopsd::runtime
