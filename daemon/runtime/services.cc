#include "daemon/runtime/services.h"

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
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <unistd.h>

#include <condition_variable>
#include <filesystem>
#include <mutex>
#include <set>
#include <thread>
#include <utility>

#include "daemon/runtime/launcher.h"
#include "daemon/runtime/module_db.h"
#include "sync/sqlite.h"

namespace gitopsd::runtime {
namespace {

namespace fs = std::filesystem;
using std::chrono::milliseconds;
using SteadyClock = std::chrono::steady_clock;

// How many more times a deploy starts its new process on another port when
// the first one exited during startup because another process on the host
// took its port after AllocatePort's test bind.
constexpr int kPortRetries = 2;

const std::vector<std::string> kMigrations = {
    R"sql(CREATE TABLE services (
      service TEXT PRIMARY KEY,
      build TEXT NOT NULL,
      build_dir TEXT NOT NULL,
      command TEXT NOT NULL,           -- length-prefixed list: 3:foo5:--bar
      shell INTEGER NOT NULL,
      env TEXT NOT NULL,               -- length-prefixed list of key, value, key, value ...
      health_kind TEXT NOT NULL,       -- tcp | http | none
      health_path TEXT NOT NULL,
      health_interval_ms INTEGER NOT NULL,
      health_timeout_ms INTEGER NOT NULL,
      health_failure_threshold INTEGER NOT NULL,
      port INTEGER NOT NULL,
      pid INTEGER NOT NULL,            -- -1 when no process runs
      pid_start INTEGER NOT NULL,
      status TEXT NOT NULL,            -- running | restarting | stopped
      restarts INTEGER NOT NULL,
      last_error TEXT NOT NULL,
      updated_at INTEGER NOT NULL);
    -- Processes that must not outlive a crash of the daemon: a deploy's new
    -- process until it is current, an old one until it is stopped.
    CREATE TABLE service_strays (
      pid INTEGER NOT NULL,
      pid_start INTEGER NOT NULL,
      service TEXT NOT NULL,
      why TEXT NOT NULL,
      PRIMARY KEY (pid, pid_start)))sql",
};

std::string EncodeList(const std::vector<std::string>& items) {
  std::string out;
  for (const std::string& item : items) out += std::to_string(item.size()) + ":" + item;
  return out;
}

std::vector<std::string> DecodeList(const std::string& text) {
  std::vector<std::string> items;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t colon = text.find(':', pos);
    if (colon == std::string::npos) break;
    size_t len = std::stoul(text.substr(pos, colon - pos));
    items.push_back(text.substr(colon + 1, len));
    pos = colon + 1 + len;
  }
  return items;
}

std::string EncodeEnv(const std::map<std::string, std::string>& env) {
  std::vector<std::string> flat;
  for (const auto& [key, value] : env) flat.insert(flat.end(), {key, value});
  return EncodeList(flat);
}

std::map<std::string, std::string> DecodeEnv(const std::string& text) {
  std::vector<std::string> flat = DecodeList(text);
  std::map<std::string, std::string> env;
  for (size_t i = 0; i + 1 < flat.size(); i += 2) env[flat[i]] = flat[i + 1];
  return env;
}

const char* HealthKindName(HealthCheck::Kind kind) {
  switch (kind) {
    case HealthCheck::Kind::kHttp: return "http";
    case HealthCheck::Kind::kNone: return "none";
    case HealthCheck::Kind::kTcp: return "tcp";
  }
  return "tcp";
}

HealthCheck::Kind ParseHealthKind(const std::string& text) {
  if (text == "http") return HealthCheck::Kind::kHttp;
  if (text == "none") return HealthCheck::Kind::kNone;
  return HealthCheck::Kind::kTcp;
}

ServiceState ParseState(const std::string& text) {
  if (text == "running") return ServiceState::kRunning;
  if (text == "restarting") return ServiceState::kRestarting;
  return ServiceState::kStopped;
}

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

// A row of the services table: the instance as recorded, and the process
// it ran then (adopted only if it still runs).
struct StoredInstance {
  Instance inst;
  ProcessIdentity recorded;
};

StoredInstance ReadInstance(const sqlite::Statement& st) {
  StoredInstance row;
  Instance& inst = row.inst;
  inst.spec = ServiceSpec{.service = st.Text(0),
                          .build = st.Text(1),
                          .build_dir = st.Text(2),
                          .command = DecodeList(st.Text(3)),
                          .shell = st.Int(4) != 0,
                          .env = DecodeEnv(st.Text(5)),
                          .health = HealthCheck{.kind = ParseHealthKind(st.Text(6)),
                                                .path = st.Text(7),
                                                .interval = milliseconds(st.Int(8)),
                                                .timeout = milliseconds(st.Int(9)),
                                                .failure_threshold = static_cast<int>(st.Int(10))}};
  inst.port = static_cast<int>(st.Int(11));
  row.recorded = ProcessIdentity{static_cast<pid_t>(st.Int(12)), st.Int(13)};
  inst.state = ParseState(st.Text(14));
  inst.restarts = static_cast<int>(st.Int(15));
  inst.last_error = st.Text(16);
  return row;
}

struct Probe {
  std::string service;
  pid_t pid = -1;
  int port = 0;
  HealthCheck check;
  Status result;
};

}  // namespace

const char* ServiceStateName(ServiceState state) {
  switch (state) {
    case ServiceState::kRunning: return "running";
    case ServiceState::kRestarting: return "restarting";
    case ServiceState::kStopped: return "stopped";
  }
  return "unknown";
}

class ProcessServiceManager::Impl {
 public:
  Impl(std::string state_dir, ProcessServiceOptions options, sqlite::Database db)
      : state_dir_(std::move(state_dir)), options_(options), db_(std::move(db)), next_port_(options.port_min) {}

  ~Impl() {
    {
      std::lock_guard lock(mu_);
      stopping_ = true;
    }
    wake_.notify_all();
    if (supervisor_.joinable()) supervisor_.join();
    // The processes keep running for the next daemon to adopt.
    for (auto& [name, inst] : services_) {
      if (inst.child) inst.child->Release();
    }
  }

  Status Start() {
    if (auto s = StopStrays(); !s) return s;
    if (auto s = LoadAndAdopt(); !s) return s;
    supervisor_ = std::thread([this] { Supervise(); });
    return Ok();
  }

  Status Deploy(const ServiceSpec& spec);
  Status Stop(const std::string& service, bool forget);

  std::optional<ServiceStatus> Get(const std::string& service) {
    std::lock_guard lock(mu_);
    auto it = services_.find(service);
    if (it == services_.end()) return std::nullopt;
    return StatusOf(it->first, it->second);
  }

  std::vector<ServiceStatus> List() {
    std::lock_guard lock(mu_);
    std::vector<ServiceStatus> all;
    for (const auto& [name, inst] : services_) all.push_back(StatusOf(name, inst));
    return all;
  }

 private:
  std::string LogPath(const std::string& service) const {
    return (fs::path(state_dir_) / "services" / service / "service.log").string();
  }

  ServiceStatus StatusOf(const std::string& name, const Instance& inst) const {
    return ServiceStatus{.service = name,
                         .build = inst.spec.build,
                         .state = inst.state,
                         .port = inst.port,
                         .pid = inst.process.pid,
                         .healthy = inst.healthy,
                         .restarts = inst.restarts,
                         .last_error = inst.last_error,
                         .log_path = LogPath(name)};
  }

  // ---- State database (REQUIRES: mu_ held) ----

  Status Save(const std::string& name, const Instance& inst) {
    auto st = db_.Prepare(
        "INSERT INTO services (service, build, build_dir, command, shell, env, health_kind, health_path, "
        "health_interval_ms, health_timeout_ms, health_failure_threshold, port, pid, pid_start, status, restarts, "
        "last_error, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, "
        "?18) ON CONFLICT (service) DO UPDATE SET build = excluded.build, build_dir = excluded.build_dir, "
        "command = excluded.command, shell = excluded.shell, env = excluded.env, health_kind = excluded.health_kind, "
        "health_path = excluded.health_path, health_interval_ms = excluded.health_interval_ms, "
        "health_timeout_ms = excluded.health_timeout_ms, "
        "health_failure_threshold = excluded.health_failure_threshold, port = excluded.port, pid = excluded.pid, "
        "pid_start = excluded.pid_start, status = excluded.status, restarts = excluded.restarts, "
        "last_error = excluded.last_error, updated_at = excluded.updated_at");
    if (!st) return std::unexpected(st.error());
    const ServiceSpec& s = inst.spec;
    return st->Bind(1, name)
        .Bind(2, s.build)
        .Bind(3, s.build_dir)
        .Bind(4, EncodeList(s.command))
        .Bind(5, int64_t{s.shell ? 1 : 0})
        .Bind(6, EncodeEnv(s.env))
        .Bind(7, HealthKindName(s.health.kind))
        .Bind(8, s.health.path)
        .Bind(9, static_cast<int64_t>(s.health.interval.count()))
        .Bind(10, static_cast<int64_t>(s.health.timeout.count()))
        .Bind(11, int64_t{s.health.failure_threshold})
        .Bind(12, int64_t{inst.port})
        .Bind(13, static_cast<int64_t>(inst.process.pid))
        .Bind(14, inst.process.start_time)
        .Bind(15, ServiceStateName(inst.state))
        .Bind(16, int64_t{inst.restarts})
        .Bind(17, inst.last_error)
        .Bind(18, NowMillis())
        .Run();
  }

  Status AddStray(const ProcessIdentity& id, const std::string& service, const std::string& why) {
    auto st = db_.Prepare("INSERT OR REPLACE INTO service_strays (pid, pid_start, service, why) VALUES (?1, ?2, ?3, ?4)");
    if (!st) return std::unexpected(st.error());
    return st->Bind(1, static_cast<int64_t>(id.pid)).Bind(2, id.start_time).Bind(3, service).Bind(4, why).Run();
  }

  Status RemoveStray(const ProcessIdentity& id) {
    auto st = db_.Prepare("DELETE FROM service_strays WHERE pid = ?1 AND pid_start = ?2");
    if (!st) return std::unexpected(st.error());
    return st->Bind(1, static_cast<int64_t>(id.pid)).Bind(2, id.start_time).Run();
  }

  Status StopStrays() {
    auto st = db_.Prepare("SELECT pid, pid_start FROM service_strays");
    if (!st) return std::unexpected(st.error());
    auto strays = sqlite::ReadAll<ProcessIdentity>(*st, [](const sqlite::Statement& row) {
      return ProcessIdentity{static_cast<pid_t>(row.Int(0)), row.Int(1)};
    });
    if (!strays) return std::unexpected(strays.error());
    for (const ProcessIdentity& id : *strays) TerminateGroup(id, options_.stop_grace);
    return db_.Exec("DELETE FROM service_strays");
  }

  Status LoadAndAdopt() {
    auto st = db_.Prepare(
        "SELECT service, build, build_dir, command, shell, env, health_kind, health_path, health_interval_ms, "
        "health_timeout_ms, health_failure_threshold, port, pid, pid_start, status, restarts, last_error "
        "FROM services");
    if (!st) return std::unexpected(st.error());
    auto rows = sqlite::ReadAll<StoredInstance>(*st, ReadInstance);
    if (!rows) return std::unexpected(rows.error());
    const auto now = SteadyClock::now();
    for (auto& [inst, recorded] : *rows) {
      if (inst.state != ServiceState::kStopped && recorded.pid > 0 && IsRunning(recorded)) {
        inst.state = ServiceState::kRunning;  // adopted: supervised by polling its identity
        inst.process = recorded;
        inst.healthy_once = true;
        inst.started = now;
        inst.next_check = now;
      } else if (inst.state != ServiceState::kStopped) {
        inst.state = ServiceState::kRestarting;
        inst.restart_at = now;
        inst.last_error = "its process was gone when the daemon started";
      }
      services_.emplace(inst.spec.service, std::move(inst));
    }
    return Ok();
  }

  // ---- Processes (REQUIRES: mu_ held) ----

  // A port for `self` ("" for a deploy's new process): `preferred` if no
  // other service holds it and it is free, else the next free one in range.
  int AllocatePort(const std::string& self, int preferred) {
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

  Result<Child> Launch(const ServiceSpec& spec, int port) {
    LaunchSpec launch{.argv = spec.command, .shell = spec.shell, .cwd = spec.build_dir, .env = spec.env,
                      .log_file = LogPath(spec.service)};
    launch.env["PORT"] = std::to_string(port);
    std::error_code ec;
    fs::create_directories(fs::path(launch.log_file).parent_path(), ec);
    AppendToLog(launch.log_file, "==> gitopsd: starting " + spec.build + " on port " + std::to_string(port) + "\n");
    return Child::Launch(launch);
  }

  void ScheduleRestart(const std::string& name, Instance& inst, const std::string& why) {
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

  void Restart(const std::string& name, Instance& inst) {
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

  // Why the process has ended, or nullopt while it runs.
  static std::optional<std::string> Ended(Instance& inst) {
    if (inst.child) {
      if (auto exit = inst.child->TryWait()) return "its process ended (" + exit->Describe() + ")";
      return std::nullopt;
    }
    if (IsRunning(inst.process)) return std::nullopt;
    return "its process ended";
  }

  // ---- Supervision ----

  void Supervise() {
    std::unique_lock lock(mu_);
    while (!stopping_) {
      lock.unlock();
      Tick();
      lock.lock();
      wake_.wait_for(lock, options_.tick, [this] { return stopping_; });
    }
  }

  void Tick() {
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

  void ApplyProbe(const Probe& probe) {
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

  void StopProcess(std::optional<Child>& child, const ProcessIdentity& id) {
    if (child) {
      child->Stop(options_.stop_grace);
    } else if (id.pid > 0) {
      TerminateGroup(id, options_.stop_grace);
    }
  }

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

  Status WaitUntilHealthy(const ServiceSpec& spec, int port, Child& child) {
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

  // Makes the healthy new process current and stops the one it replaces.
  Status Promote(const ServiceSpec& spec, int port, Child child) {
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

  std::mutex& DeployLock(const std::string& service) {
    std::lock_guard lock(mu_);
    auto& slot = deploy_locks_[service];
    if (!slot) slot = std::make_unique<std::mutex>();
    return *slot;
  }

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

Status ProcessServiceManager::Impl::Stop(const std::string& service, bool forget) {
  std::lock_guard deploy_lock(DeployLock(service));  // after a deploy in progress, not during it
  std::unique_lock lock(mu_);
  changed_.wait(lock, [&] {
    auto it = services_.find(service);
    return it == services_.end() || !it->second.busy;
  });
  auto it = services_.find(service);
  if (it == services_.end()) return Fail("cannot stop service " + service + ": it is not deployed");
  Instance& inst = it->second;
  std::optional<Child> child = std::move(inst.child);
  inst.child.reset();
  ProcessIdentity id = inst.process;
  if (id.pid > 0) (void)AddStray(id, service, "stopping");
  inst.state = ServiceState::kStopped;
  inst.healthy = false;
  inst.process = ProcessIdentity{};
  inst.busy = true;
  if (auto s = Save(service, inst); !s) {
    inst.busy = false;
    return s;
  }
  lock.unlock();
  StopProcess(child, id);
  lock.lock();
  if (id.pid > 0) (void)RemoveStray(id);
  it = services_.find(service);
  it->second.busy = false;
  if (forget) {
    services_.erase(it);
    auto st = db_.Prepare("DELETE FROM services WHERE service = ?1");
    if (!st) return std::unexpected(st.error());
    if (auto s = st->Bind(1, service).Run(); !s) return s;
  }
  changed_.notify_all();
  return Ok();
}

ProcessServiceManager::ProcessServiceManager(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
ProcessServiceManager::~ProcessServiceManager() = default;

Result<std::unique_ptr<ProcessServiceManager>> ProcessServiceManager::Open(const std::string& state_dir,
                                                                            ProcessServiceOptions options) {
  if (options.port_min <= 0 || options.port_max > 65535 || options.port_min > options.port_max) {
    return Fail("the port range " + std::to_string(options.port_min) + "-" + std::to_string(options.port_max) +
                " is not valid (1-65535, low to high)");
  }
  std::error_code ec;
  fs::create_directories(state_dir, ec);
  auto db = OpenModuleDatabase(state_dir + "/state.db", "runtime-services", kMigrations);
  if (!db) return std::unexpected(db.error());
  auto impl = std::make_unique<Impl>(state_dir, options, std::move(*db));
  if (auto s = impl->Start(); !s) return std::unexpected(s.error());
  return std::unique_ptr<ProcessServiceManager>(new ProcessServiceManager(std::move(impl)));
}

Status ProcessServiceManager::Deploy(const ServiceSpec& spec) { return impl_->Deploy(spec); }
Status ProcessServiceManager::Stop(const std::string& service) { return impl_->Stop(service, false); }
Status ProcessServiceManager::Remove(const std::string& service) { return impl_->Stop(service, true); }

Result<std::optional<ServiceStatus>> ProcessServiceManager::Get(const std::string& service) {
  return impl_->Get(service);
}

Result<std::vector<ServiceStatus>> ProcessServiceManager::List() { return impl_->List(); }

}  // namespace gitopsd::runtime
