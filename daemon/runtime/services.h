// Deployment services: one supervised long-running process per service.
// The runner asks a ServiceManager; the process implementation supervises
// processes on this host, a Kubernetes one will manage Deployments.
//
// What callers can rely on:
//  - Deploy(spec) starts the new build's process on a newly allocated PORT
//    (from the configured range) next to the current one, waits until it is
//    healthy (bounded by the check's startup window, else ready_timeout,
//    and by spec.abandon), then records it as current and
//    stops the old one. If it never becomes healthy (or exits), it is
//    stopped, the old process keeps serving untouched, and Deploy fails
//    with the reason and the end of the service log. Deploys of one service
//    are serialised (Stop and Remove wait for a deploy in progress).
//  - A port is allocated by a test bind, so another process on the host can
//    take it before the new process binds it. When the new process exits
//    during startup and its port is then taken, the deploy starts it again
//    on another port (at most twice more), saying so in the daemon's and
//    the service's log; only then does it fail.
//  - Supervision: a process that exits, or fails `failure_threshold` health
//    checks in a row, is restarted after a backoff that doubles from
//    restart_backoff up to restart_backoff_max (reset once it ran for
//    stable_after). A restart reuses the service's port when it is free.
//  - State (spec, environment, port, pid and pid start time, status,
//    restarts) is in the state database (module "runtime-services"). Opening
//    the manager over it re-adopts every service whose recorded process
//    still runs (same pid and start time; watched by polling, since it is no
//    longer our child) and restarts the others: never a duplicate process.
//    Processes a deploy was starting or stopping when the daemon died are
//    recorded first and stopped when the manager opens.
//  - Destroying the manager stops supervising but leaves the processes
//    running, for the next daemon to adopt; Stop/Remove end them.
//  - Output goes to <stateDir>/services/<service>/service.log, rotated by
//    copy-and-truncate to .1 .. .log_keep once larger than log_max_bytes.
//  - The environment holds secrets (addon connections, secret groups): it is
//    stored in the state database only and never logged.
//  - Thread-safe.
#pragma once
#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "sync/status.h"

namespace gitopsd::runtime {

struct HealthCheck {
  enum class Kind { kTcp, kHttp, kNone };  // kNone: healthy while the process runs
  Kind kind = Kind::kTcp;
  std::string path = "/";  // kHttp: GET http://127.0.0.1:PORT<path>, any 2xx is healthy
  std::chrono::milliseconds interval = std::chrono::seconds(10);
  std::chrono::milliseconds timeout = std::chrono::seconds(2);
  int failure_threshold = 3;  // consecutive failures before the process is restarted
  // How long a deploy's new process has to pass its first check; 0 = the
  // manager's ready_timeout. A "startupProbe" check sets it to
  // initialDelaySeconds + failureThreshold x periodSeconds (as Kubernetes).
  std::chrono::milliseconds startup_window{0};
};

struct ServiceSpec {
  std::string service{};               // the DeploymentService's name (a folder name)
  std::string build{};                 // what it runs, for status (e.g. "web@<commit>")
  std::string build_dir{};             // working folder: the build's checkout
  std::vector<std::string> command{};  // argv; with shell, command[0] is a /bin/sh -c script
  bool shell = false;
  std::map<std::string, std::string> env{};  // PORT is added (and overrides)
  HealthCheck health{};
  // Polled while a deploy waits for the new process to become healthy: once
  // true, the new process is stopped and the old one keeps serving (a run
  // cancelled or timed out). Not stored; unset = never.
  std::function<bool()> abandon{};
};

enum class ServiceState {
  kRunning,     // its process runs (see `healthy`)
  kRestarting,  // its process ended; a restart is due after the backoff
  kStopped,     // stopped on request
};
const char* ServiceStateName(ServiceState state);  // "running", "restarting", "stopped"

struct ServiceStatus {
  std::string service{}, build{};
  ServiceState state = ServiceState::kStopped;
  int port = 0;
  pid_t pid = -1;          // -1 when no process runs
  bool healthy = false;    // the last health check passed
  int restarts = 0;        // restarts since the last deploy
  std::string last_error{};  // why it last ended or failed a check
  std::string log_path{};
};

class ServiceManager {
 public:
  virtual ~ServiceManager() = default;
  virtual Status Deploy(const ServiceSpec& spec) = 0;
  // Stops the service's process; it stays listed as stopped. A later Deploy starts it again.
  virtual Status Stop(const std::string& service) = 0;
  // Stops it and forgets it (preview teardown).
  virtual Status Remove(const std::string& service) = 0;
  virtual Result<std::optional<ServiceStatus>> Get(const std::string& service) = 0;
  virtual Result<std::vector<ServiceStatus>> List() = 0;  // by name
};

struct ProcessServiceOptions {
  int port_min = 20000, port_max = 29999;  // runtime.portRange
  std::chrono::milliseconds tick = std::chrono::milliseconds(500);  // supervision period
  std::chrono::milliseconds ready_timeout = std::chrono::seconds(60);
  std::chrono::milliseconds restart_backoff = std::chrono::seconds(1);
  std::chrono::milliseconds restart_backoff_max = std::chrono::seconds(60);
  std::chrono::milliseconds stable_after = std::chrono::seconds(60);
  std::chrono::milliseconds stop_grace = std::chrono::seconds(10);
  uint64_t log_max_bytes = 10 * 1024 * 1024;
  int log_keep = 3;
};

class ProcessServiceManager final : public ServiceManager {
 public:
  // Opens the service tables in <state_dir>/state.db, stops recorded strays,
  // re-adopts or restarts the recorded services and starts supervising.
  static Result<std::unique_ptr<ProcessServiceManager>> Open(const std::string& state_dir,
                                                              ProcessServiceOptions options = {});
  ~ProcessServiceManager() override;
  ProcessServiceManager(const ProcessServiceManager&) = delete;
  ProcessServiceManager& operator=(const ProcessServiceManager&) = delete;

  Status Deploy(const ServiceSpec& spec) override;
  Status Stop(const std::string& service) override;
  Status Remove(const std::string& service) override;
  Result<std::optional<ServiceStatus>> Get(const std::string& service) override;
  Result<std::vector<ServiceStatus>> List() override;

 private:
  class Impl;
  explicit ProcessServiceManager(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace gitopsd::runtime
