// ProcessServiceManager's deploys: the new build's process starts next to
// the current one on another port, and becomes current only once healthy;
// a port another process took meanwhile costs a retry, not the deploy.
#include <spdlog/spdlog.h>

#include <algorithm>
#include <thread>
#include <utility>

#include "daemon/runtime/services_internal.h"

namespace gitopsd::runtime {
using namespace services_internal;
using std::chrono::milliseconds;

namespace {

// How many more times a deploy starts its new process on another port when
// the first one exited during startup because another process on the host
// took its port after AllocatePort's test bind.
constexpr int kPortRetries = 2;

}  // namespace

Status ProcessServiceManager::Impl::Deploy(const ServiceSpec& spec) {
  const std::string what = "cannot deploy " + spec.build + " to service " + spec.service + ": ";
  if (auto s = CheckResourceName("service", spec.service); !s) return Fail(what + s.error().message);
  auto program = ResolveProgram(LaunchSpec{.argv = spec.command, .shell = spec.shell, .cwd = spec.build_dir});
  if (!program) return Fail(what + program.error().message);
  std::lock_guard deploy_lock(DeployLock(spec.service));
  const std::string current = CurrentBuild(spec.service);  // keeps serving if this deploy fails

  for (int retry = 0;; ++retry) {
    auto started = StartNewProcess(spec);
    if (!started) return Fail(what + started.error().message);
    auto ready = WaitUntilHealthy(spec, started->port, started->child);
    if (ready) return Promote(spec, started->port, std::move(started->child));
    const bool exited = started->child.ended();
    Discard(*started);
    // Another process on the host may have taken the port between the test
    // bind and the new process's own: then the exit says nothing about the
    // build, and another port may well work.
    const bool port_taken = exited && !PortFree(started->port);
    const bool abandoned = spec.abandon && spec.abandon();
    std::string why = ready.error().message;
    if (port_taken) {
      why += "; another process on this host took port " + std::to_string(started->port) + " meanwhile";
      if (retry < kPortRetries && !abandoned) {
        spdlog::warn("service {}: deploying {}: {}; starting it again on another port", spec.service, spec.build,
                     why);
        AppendToLog(LogPath(spec.service), "==> gitopsd: " + why + "; starting again on another port\n");
        continue;
      }
      why += " (after " + std::to_string(retry + 1) + " ports)";
    }
    std::string tail = ReadTail(LogPath(spec.service), 10);
    return Fail("deploy of " + spec.build + " to service " + spec.service + " failed: " + why +
                (current.empty() ? "" : "; " + current + " keeps serving") +
                (tail.empty() ? "" : "\nservice log:\n" + tail));
  }
}

Result<ProcessServiceManager::Impl::Starting> ProcessServiceManager::Impl::StartNewProcess(const ServiceSpec& spec) {
  std::optional<Child> child;  // declared before the lock: a failed start is stopped outside it
  std::lock_guard lock(mu_);
  const int port = AllocatePort("", -1);
  if (port < 0) {
    return Fail("no free port in " + std::to_string(options_.port_min) + "-" + std::to_string(options_.port_max));
  }
  auto launched = Launch(spec, port);
  if (!launched) return std::unexpected(launched.error());
  child = std::move(*launched);
  reserved_.insert(port);
  if (auto s = AddStray(child->identity(), spec.service, "starting"); !s) {
    reserved_.erase(port);
    return std::unexpected(s.error());
  }
  return Starting{port, std::move(*child)};
}

void ProcessServiceManager::Impl::Discard(Starting& started) {
  ProcessIdentity id = started.child.identity();
  started.child.Stop(options_.stop_grace);
  std::lock_guard lock(mu_);
  (void)RemoveStray(id);
  reserved_.erase(started.port);
}

std::string ProcessServiceManager::Impl::CurrentBuild(const std::string& service) {
  std::lock_guard lock(mu_);
  auto it = services_.find(service);
  return it != services_.end() && it->second.state == ServiceState::kRunning ? it->second.spec.build : "";
}

Status ProcessServiceManager::Impl::WaitUntilHealthy(const ServiceSpec& spec, int port, Child& child) {
  const milliseconds window =
      spec.health.startup_window.count() > 0 ? spec.health.startup_window : options_.ready_timeout;
  const auto deadline = SteadyClock::now() + window;
  const milliseconds pause = std::clamp(spec.health.interval, milliseconds(10), milliseconds(250));
  std::string last = "no check completed";
  while (true) {
    if (auto exit = child.TryWait()) return Fail("its process exited during startup (" + exit->Describe() + ")");
    auto check = CheckHealth(spec.health, port);
    if (check) return Ok();
    last = check.error().message;
    if (SteadyClock::now() >= deadline) {
      return Fail("it did not become healthy within " + DurationText(window) + " (last check: " + last + ")");
    }
    if (spec.abandon && spec.abandon()) {
      return Fail("the deploy was abandoned (run cancelled or node timed out) before it became healthy");
    }
    std::this_thread::sleep_for(pause);
  }
}

Status ProcessServiceManager::Impl::Promote(const ServiceSpec& spec, int port, Child child) {
  std::optional<Instance> old;
  {
    std::unique_lock lock(mu_);
    changed_.wait(lock, [&] {
      auto it = services_.find(spec.service);
      return it == services_.end() || !it->second.busy;
    });
    Instance fresh;
    fresh.spec = spec;
    fresh.state = ServiceState::kRunning;
    fresh.port = port;
    fresh.process = child.identity();
    fresh.child = std::move(child);
    fresh.healthy = fresh.healthy_once = true;
    fresh.started = SteadyClock::now();
    fresh.next_check = fresh.started + spec.health.interval;
    auto it = services_.find(spec.service);
    if (it != services_.end() && it->second.process.pid > 0) old = std::move(it->second);
    auto tx = sqlite::Transaction::Begin(db_);
    if (!tx) return std::unexpected(tx.error());
    if (auto s = Save(spec.service, fresh); !s) return s;
    if (auto s = RemoveStray(fresh.process); !s) return s;
    if (old) {
      if (auto s = AddStray(old->process, spec.service, "replaced"); !s) return s;
    }
    if (auto s = tx->Commit(); !s) return s;
    services_.insert_or_assign(spec.service, std::move(fresh));
    reserved_.erase(port);
  }
  if (old) {
    StopProcess(old->child, old->process);
    std::lock_guard lock(mu_);
    (void)RemoveStray(old->process);
  }
  return Ok();
}

std::mutex& ProcessServiceManager::Impl::DeployLock(const std::string& service) {
  std::lock_guard lock(mu_);
  auto& slot = deploy_locks_[service];
  if (!slot) slot = std::make_unique<std::mutex>();
  return *slot;
}

}  // namespace gitopsd::runtime
