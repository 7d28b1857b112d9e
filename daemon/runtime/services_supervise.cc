// ProcessServiceManager's supervision: ports, launching a service's
// process, restarts with backoff when it ends or fails its health checks,
// and the health checks themselves.
#include <Poco/Exception.h>
#include <Poco/Net/HTTPClientSession.h>
#include <Poco/Net/HTTPRequest.h>
#include <Poco/Net/HTTPResponse.h>
#include <Poco/Net/SocketAddress.h>
#include <Poco/Net/StreamSocket.h>
#include <Poco/NullStream.h>
#include <Poco/StreamCopier.h>
#include <Poco/Timespan.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <filesystem>
#include <utility>

#include "daemon/runtime/services_internal.h"

namespace gitopsd::runtime {
namespace services_internal {

// One health check of the process listening on 127.0.0.1:port.
Status CheckHealth(const HealthCheck& check, int port) {
  const Poco::Timespan timeout(static_cast<long>(check.timeout.count() / 1000),
                               static_cast<long>(check.timeout.count() % 1000) * 1000);
  try {
    if (check.kind == HealthCheck::Kind::kNone) return Ok();
    if (check.kind == HealthCheck::Kind::kTcp) {
      Poco::Net::StreamSocket socket;
      socket.connect(Poco::Net::SocketAddress("127.0.0.1", static_cast<Poco::UInt16>(port)), timeout);
      return Ok();
    }
    Poco::Net::HTTPClientSession session("127.0.0.1", static_cast<Poco::UInt16>(port));
    session.setTimeout(timeout);
    Poco::Net::HTTPRequest request(Poco::Net::HTTPRequest::HTTP_GET, check.path, Poco::Net::HTTPMessage::HTTP_1_1);
    session.sendRequest(request);
    Poco::Net::HTTPResponse response;
    std::istream& body = session.receiveResponse(response);
    Poco::NullOutputStream sink;
    Poco::StreamCopier::copyStream(body, sink);
    int code = static_cast<int>(response.getStatus());
    if (code < 200 || code > 299) return Fail("GET " + check.path + " answered " + std::to_string(code));
    return Ok();
  } catch (const Poco::Exception& e) {
    return Fail(std::string(HealthKindName(check.kind)) + " check on port " + std::to_string(port) + ": " +
                e.displayText());
  } catch (const std::exception& e) {
    return Fail(std::string(HealthKindName(check.kind)) + " check on port " + std::to_string(port) + ": " + e.what());
  }
}

// Whether a server could listen on `port` now (SO_REUSEADDR, as servers set it).
bool PortFree(int port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_ANY);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  bool free = bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
  close(fd);
  return free;
}

}  // namespace services_internal

using namespace services_internal;
namespace fs = std::filesystem;
using std::chrono::milliseconds;

// ---- Processes (REQUIRES: mu_ held) ----

int ProcessServiceManager::Impl::AllocatePort(const std::string& self, int preferred) {
  std::set<int> taken(reserved_.begin(), reserved_.end());
  for (const auto& [name, inst] : services_) {
    if (name != self && inst.state != ServiceState::kStopped) taken.insert(inst.port);
  }
  if (preferred > 0 && !taken.contains(preferred) && PortFree(preferred)) return preferred;
  const int span = options_.port_max - options_.port_min + 1;
  for (int i = 0; i < span; ++i) {
    int port = options_.port_min + (next_port_ - options_.port_min + i) % span;
    if (!taken.contains(port) && PortFree(port)) {
      next_port_ = port + 1;
      return port;
    }
  }
  return -1;
}

Result<Child> ProcessServiceManager::Impl::Launch(const ServiceSpec& spec, int port) {
  LaunchSpec launch{.argv = spec.command, .shell = spec.shell, .cwd = spec.build_dir, .env = spec.env,
                    .log_file = LogPath(spec.service)};
  launch.env["PORT"] = std::to_string(port);
  std::error_code ec;
  fs::create_directories(fs::path(launch.log_file).parent_path(), ec);
  AppendToLog(launch.log_file, "==> gitopsd: starting " + spec.build + " on port " + std::to_string(port) + "\n");
  return Child::Launch(launch);
}

void ProcessServiceManager::Impl::ScheduleRestart(const std::string& name, Instance& inst, const std::string& why) {
  const auto now = SteadyClock::now();
  if (now - inst.started >= options_.stable_after) inst.crashes_in_row = 0;
  ++inst.crashes_in_row;
  milliseconds delay = options_.restart_backoff;
  for (int i = 1; i < inst.crashes_in_row && delay < options_.restart_backoff_max; ++i) delay *= 2;
  delay = std::min(delay, options_.restart_backoff_max);
  inst.state = ServiceState::kRestarting;
  inst.restart_at = now + delay;
  inst.healthy = false;
  inst.process = ProcessIdentity{};
  inst.child.reset();
  inst.last_error = why;
  AppendToLog(LogPath(name), "==> gitopsd: " + why + "; restarting in " + DurationText(delay) + "\n");
  (void)Save(name, inst);
}

void ProcessServiceManager::Impl::Restart(const std::string& name, Instance& inst) {
  int port = AllocatePort(name, inst.port);
  if (port < 0) {
    ScheduleRestart(name, inst, "no free port in " + std::to_string(options_.port_min) + "-" +
                                    std::to_string(options_.port_max));
    return;
  }
  ++inst.restarts;
  inst.started = SteadyClock::now();
  auto child = Launch(inst.spec, port);
  if (!child) {
    ScheduleRestart(name, inst, child.error().message);
    return;
  }
  inst.port = port;
  inst.process = child->identity();
  inst.child = std::move(*child);
  inst.state = ServiceState::kRunning;
  inst.healthy = false;
  inst.healthy_once = false;
  inst.failures_in_row = 0;
  inst.next_check = inst.started;
  (void)Save(name, inst);
}

std::optional<std::string> ProcessServiceManager::Impl::Ended(Instance& inst) {
  if (inst.child) {
    if (auto exit = inst.child->TryWait()) return "its process ended (" + exit->Describe() + ")";
    return std::nullopt;
  }
  if (IsRunning(inst.process)) return std::nullopt;
  return "its process ended";
}

// ---- Supervision ----

void ProcessServiceManager::Impl::Supervise() {
  std::unique_lock lock(mu_);
  while (!stopping_) {
    lock.unlock();
    Tick();
    lock.lock();
    wake_.wait_for(lock, options_.tick, [this] { return stopping_; });
  }
}

void ProcessServiceManager::Impl::Tick() {
  std::vector<Probe> probes;
  {
    std::lock_guard lock(mu_);
    const auto now = SteadyClock::now();
    for (auto& [name, inst] : services_) {
      if (inst.busy) continue;
      if (inst.state == ServiceState::kRunning) {
        if (auto why = Ended(inst)) {
          ScheduleRestart(name, inst, *why);
          continue;
        }
        RotateLogIfLarger(LogPath(name), options_.log_max_bytes, options_.log_keep);
        if (now >= inst.next_check) {
          probes.push_back({name, inst.process.pid, inst.port, inst.spec.health, Ok()});
          inst.next_check = now + inst.spec.health.interval;
        }
      } else if (inst.state == ServiceState::kRestarting && now >= inst.restart_at) {
        Restart(name, inst);
      }
    }
  }
  for (Probe& probe : probes) probe.result = CheckHealth(probe.check, probe.port);
  for (const Probe& probe : probes) ApplyProbe(probe);
}

void ProcessServiceManager::Impl::ApplyProbe(const Probe& probe) {
  std::unique_lock lock(mu_);
  auto it = services_.find(probe.service);
  if (it == services_.end()) return;
  Instance& inst = it->second;
  if (inst.busy || inst.state != ServiceState::kRunning || inst.process.pid != probe.pid) return;
  if (probe.result) {
    inst.healthy = inst.healthy_once = true;
    inst.failures_in_row = 0;
    return;
  }
  inst.healthy = false;
  if (!inst.healthy_once && SteadyClock::now() - inst.started < options_.ready_timeout) return;  // starting
  inst.last_error = "health check failed: " + probe.result.error().message;
  if (++inst.failures_in_row < inst.spec.health.failure_threshold) return;
  // Unhealthy: stop it outside the lock, then restart it like a crash.
  inst.busy = true;
  std::optional<Child> child = std::move(inst.child);
  inst.child.reset();
  ProcessIdentity id = inst.process;
  lock.unlock();
  StopProcess(child, id);
  lock.lock();
  inst.busy = false;
  ScheduleRestart(probe.service, inst,
                  "unhealthy after " + std::to_string(inst.spec.health.failure_threshold) + " failed checks (" +
                      probe.result.error().message + ")");
  changed_.notify_all();
}

void ProcessServiceManager::Impl::StopProcess(std::optional<Child>& child, const ProcessIdentity& id) {
  if (child) {
    child->Stop(options_.stop_grace);
  } else if (id.pid > 0) {
    TerminateGroup(id, options_.stop_grace);
  }
}

}  // namespace gitopsd::runtime
