// Private to ProcessServiceManager (services.h): ProcessServiceManager::Impl,
// what it knows of each service, and the helpers its files share. Impl is
// split as
//   services.cc            opening, the state database, status, Stop
//   services_supervise.cc  ports, launching, restarts with backoff, health
//                          checks of running processes
//   services_deploy.cc     deploys: a new process next to the current one,
//                          promoted once healthy
// Nothing outside daemon/runtime/services*.cc includes this header.
#pragma once
#include <chrono>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "daemon/runtime/launcher.h"
#include "daemon/runtime/services.h"
#include "sync/sqlite.h"

namespace gitopsd::runtime {
namespace services_internal {

using SteadyClock = std::chrono::steady_clock;

const char* HealthKindName(HealthCheck::Kind kind);  // "tcp", "http", "none"
// One health check of the process listening on 127.0.0.1:port.
Status CheckHealth(const HealthCheck& check, int port);
// Whether a server could listen on `port` now (SO_REUSEADDR, as servers set it).
bool PortFree(int port);

// What the manager knows of one service.
struct Instance {
  ServiceSpec spec;
  ServiceState state = ServiceState::kStopped;
  int port = 0;
  ProcessIdentity process;    // pid -1 when no process runs
  std::optional<Child> child;  // set when we are the process's parent (else adopted: polled)
  bool healthy = false;
  bool healthy_once = false;  // since the last start; failures before count only after ready_timeout
  int restarts = 0, crashes_in_row = 0, failures_in_row = 0;
  std::string last_error;
  SteadyClock::time_point started{}, next_check{}, restart_at{};
  bool busy = false;  // a thread is stopping its process outside the lock
};

// A health check the supervisor runs outside the lock, and its result.
struct Probe {
  std::string service;
  pid_t pid = -1;
  int port = 0;
  HealthCheck check;
  Status result;
};

}  // namespace services_internal

class ProcessServiceManager::Impl {
 public:
  using Instance = services_internal::Instance;
  using Probe = services_internal::Probe;

  Impl(std::string state_dir, ProcessServiceOptions options, sqlite::Database db)
      : state_dir_(std::move(state_dir)), options_(options), db_(std::move(db)), next_port_(options.port_min) {}
  // Stops supervising; the processes keep running for the next daemon to adopt.
  ~Impl();

  // Stops the strays a crash left, adopts or restarts the recorded
  // services, and starts the supervisor.
  Status Start();
  Status Deploy(const ServiceSpec& spec);
  Status Stop(const std::string& service, bool forget);
  std::optional<ServiceStatus> Get(const std::string& service);
  std::vector<ServiceStatus> List();

 private:
  std::string LogPath(const std::string& service) const;
  ServiceStatus StatusOf(const std::string& name, const Instance& inst) const;

  // ---- State database (REQUIRES: mu_ held) ----

  Status Save(const std::string& name, const Instance& inst);
  Status AddStray(const ProcessIdentity& id, const std::string& service, const std::string& why);
  Status RemoveStray(const ProcessIdentity& id);
  Status StopStrays();
  Status LoadAndAdopt();

  // ---- Processes (REQUIRES: mu_ held) ----

  // A port for `self` ("" for a deploy's new process): `preferred` if no
  // other service holds it and it is free, else the next free one in range.
  int AllocatePort(const std::string& self, int preferred);
  Result<Child> Launch(const ServiceSpec& spec, int port);
  void ScheduleRestart(const std::string& name, Instance& inst, const std::string& why);
  void Restart(const std::string& name, Instance& inst);
  // Why the process has ended, or nullopt while it runs.
  static std::optional<std::string> Ended(Instance& inst);

  // ---- Supervision ----

  void Supervise();
  void Tick();
  void ApplyProbe(const Probe& probe);
  void StopProcess(std::optional<Child>& child, const ProcessIdentity& id);

  // ---- Deploy ----

  // A deploy's new process: started on a freshly allocated port, which stays
  // reserved, and recorded as a stray until Promote makes it current.
  struct Starting {
    int port;
    Child child;
  };
  Result<Starting> StartNewProcess(const ServiceSpec& spec);
  // Stops a new process that did not become healthy and frees its port.
  void Discard(Starting& started);
  // The build a running service serves now ("" when none).
  std::string CurrentBuild(const std::string& service);
  Status WaitUntilHealthy(const ServiceSpec& spec, int port, Child& child);
  // Makes the healthy new process current and stops the one it replaces.
  Status Promote(const ServiceSpec& spec, int port, Child child);
  std::mutex& DeployLock(const std::string& service);

  friend class ProcessServiceManager;

  std::string state_dir_;
  ProcessServiceOptions options_;
  std::mutex mu_;  // guards everything below, including db_
  sqlite::Database db_;
  std::map<std::string, Instance> services_;
  std::set<int> reserved_;  // ports of deploys in progress
  int next_port_;
  std::map<std::string, std::unique_ptr<std::mutex>> deploy_locks_;
  std::condition_variable wake_;     // supervisor: stop
  std::condition_variable changed_;  // an instance stopped being busy
  bool stopping_ = false;
  std::thread supervisor_;
};

}  // namespace gitopsd::runtime
