// ProcessServiceManager: opening it over the state database (adopting or
// restarting what it recorded), what it records, status, and Stop;
// services_internal.h says where supervision and deploys live.
#include "daemon/runtime/services.h"

#include <filesystem>
#include <utility>

#include "daemon/runtime/module_db.h"
#include "daemon/runtime/services_internal.h"

namespace gitopsd::runtime {
using namespace services_internal;

namespace {

namespace fs = std::filesystem;
using std::chrono::milliseconds;

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

}  // namespace

namespace services_internal {

const char* HealthKindName(HealthCheck::Kind kind) {
  switch (kind) {
    case HealthCheck::Kind::kHttp: return "http";
    case HealthCheck::Kind::kNone: return "none";
    case HealthCheck::Kind::kTcp: return "tcp";
  }
  return "tcp";
}

}  // namespace services_internal

const char* ServiceStateName(ServiceState state) {
  switch (state) {
    case ServiceState::kRunning: return "running";
    case ServiceState::kRestarting: return "restarting";
    case ServiceState::kStopped: return "stopped";
  }
  return "unknown";
}

ProcessServiceManager::Impl::~Impl() {
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

Status ProcessServiceManager::Impl::Start() {
  if (auto s = StopStrays(); !s) return s;
  if (auto s = LoadAndAdopt(); !s) return s;
  supervisor_ = std::thread([this] { Supervise(); });
  return Ok();
}

std::optional<ServiceStatus> ProcessServiceManager::Impl::Get(const std::string& service) {
  std::lock_guard lock(mu_);
  auto it = services_.find(service);
  if (it == services_.end()) return std::nullopt;
  return StatusOf(it->first, it->second);
}

std::vector<ServiceStatus> ProcessServiceManager::Impl::List() {
  std::lock_guard lock(mu_);
  std::vector<ServiceStatus> all;
  for (const auto& [name, inst] : services_) all.push_back(StatusOf(name, inst));
  return all;
}

std::string ProcessServiceManager::Impl::LogPath(const std::string& service) const {
  return (fs::path(state_dir_) / "services" / service / "service.log").string();
}

ServiceStatus ProcessServiceManager::Impl::StatusOf(const std::string& name, const Instance& inst) const {
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

Status ProcessServiceManager::Impl::Save(const std::string& name, const Instance& inst) {
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

Status ProcessServiceManager::Impl::AddStray(const ProcessIdentity& id, const std::string& service,
                                             const std::string& why) {
  auto st = db_.Prepare("INSERT OR REPLACE INTO service_strays (pid, pid_start, service, why) VALUES (?1, ?2, ?3, ?4)");
  if (!st) return std::unexpected(st.error());
  return st->Bind(1, static_cast<int64_t>(id.pid)).Bind(2, id.start_time).Bind(3, service).Bind(4, why).Run();
}

Status ProcessServiceManager::Impl::RemoveStray(const ProcessIdentity& id) {
  auto st = db_.Prepare("DELETE FROM service_strays WHERE pid = ?1 AND pid_start = ?2");
  if (!st) return std::unexpected(st.error());
  return st->Bind(1, static_cast<int64_t>(id.pid)).Bind(2, id.start_time).Run();
}

Status ProcessServiceManager::Impl::StopStrays() {
  auto st = db_.Prepare("SELECT pid, pid_start FROM service_strays");
  if (!st) return std::unexpected(st.error());
  auto strays = sqlite::ReadAll<ProcessIdentity>(*st, [](const sqlite::Statement& row) {
    return ProcessIdentity{static_cast<pid_t>(row.Int(0)), row.Int(1)};
  });
  if (!strays) return std::unexpected(strays.error());
  for (const ProcessIdentity& id : *strays) TerminateGroup(id, options_.stop_grace);
  return db_.Exec("DELETE FROM service_strays");
}

Status ProcessServiceManager::Impl::LoadAndAdopt() {
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
