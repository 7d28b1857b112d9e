// Deployment services against real HTTP servers (python3 one-file apps):
// deploys that replace the old process only once the new one is healthy,
// restarts with backoff, re-adoption after a daemon restart, log rotation.
#include "daemon/runtime/services.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <future>
#include <memory>
#include <random>
#include <thread>

#include "daemon/runtime/launcher.h"
#include "tests/support/temp_dir.h"

namespace gitopsd::runtime {
namespace {

using namespace std::chrono_literals;
using test::ReadTextFile;
using test::TempDir;
using test::WriteTextFile;

constexpr const char* kApp = R"py(import http.server, os, sys, time
time.sleep(float(os.environ.get("STARTUP_DELAY", "0")))
version = os.environ.get("VERSION", "?")
healthy = os.environ.get("HEALTHY", "1") == "1"
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        code = 200 if (self.path != "/health" or healthy) else 503
        body = (version + " " + os.environ["PORT"]).encode()
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        print("request", self.path, flush=True)
print("starting", version, flush=True)
http.server.HTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
)py";

// On its first launch only, the app says which port it was given and waits
// until the test has taken that port, as another process on the host can
// between the manager's test bind and the app's own bind; app.py then fails
// with "Address already in use" and the process exits during startup.
constexpr const char* kLosesItsFirstPort = R"py(import os, runpy, time
if not os.path.exists("launched-once"):
    open("launched-once", "w").close()
    with open("port-wanted.tmp", "w") as f:
        f.write(os.environ["PORT"])
    os.rename("port-wanted.tmp", "port-wanted")
    deadline = time.time() + 10
    while not os.path.exists("port-taken") and time.time() < deadline:
        time.sleep(0.01)
runpy.run_path("app.py", run_name="__main__")
)py";

// A socket listening on a port on all addresses, as another server on the
// host holds it; closed when it goes. SO_REUSEADDR as servers set it: the
// port may still have connections in TIME_WAIT from an earlier test.
struct Listener {
  int fd = -1;
  explicit Listener(int port) : fd(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) {
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_ANY);
    addr.sin_port = htons(static_cast<uint16_t>(port));
    if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 || listen(fd, 16) != 0) {
      close(fd);
      fd = -1;
    }
  }
  Listener(const Listener&) = delete;
  Listener& operator=(const Listener&) = delete;
  ~Listener() {
    if (fd >= 0) close(fd);
  }
};

int Occurrences(const std::string& text, const std::string& what) {
  int n = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

// GET http://127.0.0.1:port/ -> the body, or "" if nothing answers.
std::string HttpGet(int port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    close(fd);
    return "";
  }
  std::string request = "GET / HTTP/1.0\r\nHost: x\r\n\r\n";
  (void)!write(fd, request.data(), request.size());
  std::string response;
  char buffer[4096];
  for (ssize_t n; (n = read(fd, buffer, sizeof(buffer))) > 0;) response.append(buffer, static_cast<size_t>(n));
  close(fd);
  size_t body = response.find("\r\n\r\n");
  return body == std::string::npos ? "" : response.substr(body + 4);
}

// Live (non-zombie) processes whose working folder is `dir`.
std::vector<pid_t> ProcessesIn(const std::string& dir) {
  std::vector<pid_t> pids;
  const std::string wanted = std::filesystem::weakly_canonical(dir).string();
  for (const auto& entry : std::filesystem::directory_iterator("/proc")) {
    const std::string name = entry.path().filename().string();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::error_code ec;
    auto cwd = std::filesystem::read_symlink(entry.path() / "cwd", ec);
    pid_t pid = std::stoi(name);
    if (!ec && cwd.string().starts_with(wanted) && ProcessStartTime(pid)) pids.push_back(pid);
  }
  return pids;
}

template <class Pred>
bool Eventually(Pred pred, std::chrono::milliseconds timeout = 5s) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (pred()) return true;
    std::this_thread::sleep_for(20ms);
  }
  return pred();
}

class ServicesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    for (const char* version : {"v1", "v2", "v3"}) {
      std::filesystem::create_directories(BuildDir(version));
      ASSERT_TRUE(WriteTextFile(BuildDir(version) + "/app.py", kApp));
    }
    // Below the ephemeral range, and apart per test process (ctest runs them in parallel).
    port_min_ = 24000 + static_cast<int>(getpid() % 800) * 10;
    Open();
  }

  void TearDown() override {
    if (manager_) {
      auto all = manager_->List();
      if (all) {
        for (const ServiceStatus& s : *all) (void)manager_->Remove(s.service);
      }
      manager_.reset();
    }
    // Whatever is left (released by a destroyed manager) goes by pid.
    for (pid_t pid : ProcessesIn(dir_.path())) {
      kill(-pid, SIGKILL);
      kill(pid, SIGKILL);
    }
    while (waitpid(-1, nullptr, WNOHANG) > 0) {
    }
  }

  void Open() {
    ProcessServiceOptions options{.port_min = port_min_,
                                  .port_max = port_min_ + 9,
                                  .tick = 20ms,
                                  .ready_timeout = 3s,
                                  .restart_backoff = 100ms,
                                  .restart_backoff_max = 400ms,
                                  .stable_after = 60s,
                                  .stop_grace = 1s,
                                  .log_max_bytes = log_max_bytes_,
                                  .log_keep = 2};
    auto manager = ProcessServiceManager::Open(state_dir_, options);
    ASSERT_TRUE(manager) << manager.error().message;
    manager_ = std::move(*manager);
  }

  std::string BuildDir(const std::string& version) const { return dir_.Sub("builds/" + version); }

  ServiceSpec Spec(const std::string& version, std::map<std::string, std::string> extra = {}) {
    extra["VERSION"] = version;
    return ServiceSpec{.service = "web",
                       .build = "web@" + version,
                       .build_dir = BuildDir(version),
                       .command = {"/usr/bin/python3", "app.py"},
                       .env = extra,
                       .health = HealthCheck{.kind = HealthCheck::Kind::kHttp,
                                             .path = "/health",
                                             .interval = 100ms,
                                             .timeout = 500ms,
                                             .failure_threshold = 2}};
  }

  ServiceStatus Status(const std::string& service = "web") {
    auto status = manager_->Get(service);
    EXPECT_TRUE(status && *status);
    return status && *status ? **status : ServiceStatus{};
  }

  TempDir dir_{"services"};
  std::string state_dir_ = dir_.Sub("state");
  int port_min_ = 0;
  uint64_t log_max_bytes_ = 10 * 1024 * 1024;
  std::unique_ptr<ProcessServiceManager> manager_;
};

TEST_F(ServicesTest, DeployStartsAHealthyProcessServingOnItsPort) {
  auto deployed = manager_->Deploy(Spec("v1"));
  ASSERT_TRUE(deployed) << deployed.error().message;
  ServiceStatus status = Status();
  EXPECT_EQ(status.build, "web@v1");
  EXPECT_EQ(status.state, ServiceState::kRunning);
  EXPECT_TRUE(status.healthy);
  EXPECT_GE(status.port, port_min_);
  EXPECT_LE(status.port, port_min_ + 9);
  EXPECT_GT(status.pid, 0);
  EXPECT_EQ(status.restarts, 0);
  EXPECT_EQ(HttpGet(status.port), "v1 " + std::to_string(status.port));
  EXPECT_NE(ReadTextFile(status.log_path).find("starting v1"), std::string::npos);
  auto all = manager_->List();
  ASSERT_TRUE(all);
  ASSERT_EQ(all->size(), 1u);
}

TEST_F(ServicesTest, ANewBuildReplacesTheOldOnlyOnceHealthyWhileTheOldKeepsServing) {
  ASSERT_TRUE(manager_->Deploy(Spec("v1")));
  ServiceStatus v1 = Status();
  auto deploy = std::async(std::launch::async, [&] { return manager_->Deploy(Spec("v2", {{"STARTUP_DELAY", "0.6"}})); });
  std::this_thread::sleep_for(300ms);
  EXPECT_EQ(deploy.wait_for(0ms), std::future_status::timeout) << "v2 cannot be healthy yet";
  EXPECT_EQ(HttpGet(v1.port), "v1 " + std::to_string(v1.port));
  EXPECT_EQ(Status().build, "web@v1");
  auto deployed = deploy.get();
  ASSERT_TRUE(deployed) << deployed.error().message;

  ServiceStatus v2 = Status();
  EXPECT_EQ(v2.build, "web@v2");
  EXPECT_NE(v2.port, v1.port);
  EXPECT_NE(v2.pid, v1.pid);
  EXPECT_EQ(HttpGet(v2.port), "v2 " + std::to_string(v2.port));
  EXPECT_TRUE(Eventually([&] { return ProcessesIn(BuildDir("v1")).empty(); }));
  EXPECT_EQ(HttpGet(v1.port), "");
}

TEST_F(ServicesTest, ABuildThatNeverBecomesHealthyIsStoppedAndTheOldKeepsServing) {
  ASSERT_TRUE(manager_->Deploy(Spec("v2")));
  ServiceStatus v2 = Status();
  auto failed = manager_->Deploy(Spec("v3", {{"HEALTHY", "0"}}));
  ASSERT_FALSE(failed);
  EXPECT_NE(failed.error().message.find("deploy of web@v3 to service web failed"), std::string::npos);
  EXPECT_NE(failed.error().message.find("did not become healthy within 3s"), std::string::npos)
      << failed.error().message;
  EXPECT_NE(failed.error().message.find("answered 503"), std::string::npos) << failed.error().message;
  EXPECT_NE(failed.error().message.find("web@v2 keeps serving"), std::string::npos) << failed.error().message;
  EXPECT_TRUE(ProcessesIn(BuildDir("v3")).empty());
  ServiceStatus after = Status();
  EXPECT_EQ(after.build, "web@v2");
  EXPECT_EQ(after.pid, v2.pid);
  EXPECT_EQ(HttpGet(v2.port), "v2 " + std::to_string(v2.port));

  auto crashing = manager_->Deploy(Spec("v3", {{"STARTUP_DELAY", "not-a-number"}}));
  ASSERT_FALSE(crashing);
  EXPECT_NE(crashing.error().message.find("exited during startup (exit code 1)"), std::string::npos)
      << crashing.error().message;
  EXPECT_NE(crashing.error().message.find("ValueError"), std::string::npos) << "the log's tail is in the error";
  EXPECT_EQ(Status().pid, v2.pid);
}

TEST_F(ServicesTest, AStartupWindowOrAnAbandonCutsTheWaitForHealthShort) {
  ASSERT_TRUE(manager_->Deploy(Spec("v2")));
  ServiceStatus v2 = Status();
  ServiceSpec sick = Spec("v3", {{"HEALTHY", "0"}});
  sick.health.startup_window = 400ms;  // below the manager's 3 s
  auto started = std::chrono::steady_clock::now();
  auto failed = manager_->Deploy(sick);
  ASSERT_FALSE(failed);
  EXPECT_LT(std::chrono::steady_clock::now() - started, 2500ms);
  EXPECT_NE(failed.error().message.find("did not become healthy within 400ms"), std::string::npos)
      << failed.error().message;

  std::atomic<bool> abandon{false};
  sick.health.startup_window = 0ms;
  sick.abandon = [&] { return abandon.load(); };
  std::thread later([&] {
    std::this_thread::sleep_for(200ms);
    abandon = true;
  });
  started = std::chrono::steady_clock::now();
  failed = manager_->Deploy(sick);
  later.join();
  ASSERT_FALSE(failed);
  EXPECT_LT(std::chrono::steady_clock::now() - started, 2500ms);
  EXPECT_NE(failed.error().message.find("abandoned"), std::string::npos) << failed.error().message;
  EXPECT_TRUE(ProcessesIn(BuildDir("v3")).empty());
  EXPECT_EQ(Status().pid, v2.pid);
  EXPECT_EQ(HttpGet(v2.port), "v2 " + std::to_string(v2.port));
}

TEST_F(ServicesTest, ANewProcessWhosePortIsTakenMeanwhileStartsAgainOnAnotherPort) {
  ASSERT_TRUE(WriteTextFile(BuildDir("v2") + "/loses_its_first_port.py", kLosesItsFirstPort));
  ServiceSpec spec = Spec("v2");
  spec.command = {"/usr/bin/python3", "loses_its_first_port.py"};
  // Someone else on the host: takes the port the first launch announces.
  int taken_port = -1;
  std::unique_ptr<Listener> someone_else;
  std::thread take([&] {
    const std::string wanted = BuildDir("v2") + "/port-wanted";
    if (!Eventually([&] { return std::filesystem::exists(wanted); }, 10s)) return;
    taken_port = std::stoi(ReadTextFile(wanted));
    someone_else = std::make_unique<Listener>(taken_port);
    (void)WriteTextFile(BuildDir("v2") + "/port-taken", "");
  });
  auto deployed = manager_->Deploy(spec);
  take.join();
  ASSERT_TRUE(someone_else && someone_else->fd >= 0) << "the test could not take port " << taken_port;
  ASSERT_TRUE(deployed) << deployed.error().message;
  ServiceStatus status = Status();
  EXPECT_EQ(status.build, "web@v2");
  EXPECT_NE(status.port, taken_port);
  EXPECT_EQ(HttpGet(status.port), "v2 " + std::to_string(status.port));
  const std::string log = ReadTextFile(status.log_path);
  EXPECT_NE(log.find("Address already in use"), std::string::npos) << log;
  EXPECT_NE(log.find("another process on this host took port " + std::to_string(taken_port) +
                     " meanwhile; starting again on another port"),
            std::string::npos)
      << log;
  EXPECT_EQ(Occurrences(log, "==> gitopsd: starting web@v2"), 2) << log;

  // A process that exits during startup on a port nobody took is the
  // build's fault: the deploy fails at once.
  auto crashing = manager_->Deploy(Spec("v3", {{"STARTUP_DELAY", "not-a-number"}}));
  ASSERT_FALSE(crashing);
  EXPECT_NE(crashing.error().message.find("exited during startup"), std::string::npos) << crashing.error().message;
  EXPECT_EQ(crashing.error().message.find("took port"), std::string::npos) << crashing.error().message;
  EXPECT_EQ(Occurrences(ReadTextFile(status.log_path), "==> gitopsd: starting web@v3"), 1);
  EXPECT_EQ(Status().pid, status.pid);
}

TEST_F(ServicesTest, AKilledProcessIsRestartedWithBackoffOnItsPort) {
  ASSERT_TRUE(manager_->Deploy(Spec("v1")));
  ServiceStatus before = Status();
  kill(before.pid, SIGKILL);
  ASSERT_TRUE(Eventually([&] {
    ServiceStatus s = Status();
    return s.restarts == 1 && s.healthy && s.pid != before.pid;
  })) << Status().last_error;
  ServiceStatus after = Status();
  EXPECT_EQ(after.port, before.port);
  EXPECT_NE(after.last_error.find("killed by signal 9"), std::string::npos) << after.last_error;
  EXPECT_EQ(HttpGet(after.port), "v1 " + std::to_string(after.port));
  std::string log = ReadTextFile(after.log_path);
  EXPECT_NE(log.find("restarting in 100ms"), std::string::npos) << log;

  kill(after.pid, SIGKILL);
  ASSERT_TRUE(Eventually([&] { return Status().restarts == 2 && Status().healthy; }));
  EXPECT_NE(ReadTextFile(after.log_path).find("restarting in 200ms"), std::string::npos);
  EXPECT_EQ(ProcessesIn(BuildDir("v1")).size(), 1u);
}

TEST_F(ServicesTest, AnUnhealthyProcessIsRestarted) {
  // Healthy at first, then /health fails: the app reads HEALTHY once, so
  // simulate by stopping (SIGSTOP) it: checks time out, the process is replaced.
  ASSERT_TRUE(manager_->Deploy(Spec("v1")));
  ServiceStatus before = Status();
  kill(before.pid, SIGSTOP);
  ASSERT_TRUE(Eventually([&] { return Status().restarts == 1 && Status().healthy; }, 8s)) << Status().last_error;
  EXPECT_NE(Status().pid, before.pid);
  EXPECT_EQ(ProcessesIn(BuildDir("v1")).size(), 1u);
}

TEST_F(ServicesTest, ADaemonRestartReadoptsTheRunningProcessWithoutADuplicate) {
  ASSERT_TRUE(manager_->Deploy(Spec("v1")));
  ServiceStatus before = Status();
  manager_.reset();  // the daemon goes away; its services do not
  ASSERT_EQ(ProcessesIn(BuildDir("v1")).size(), 1u);
  EXPECT_EQ(HttpGet(before.port), "v1 " + std::to_string(before.port));

  Open();
  ServiceStatus adopted = Status();
  EXPECT_EQ(adopted.pid, before.pid);
  EXPECT_EQ(adopted.port, before.port);
  EXPECT_EQ(adopted.state, ServiceState::kRunning);
  ASSERT_TRUE(Eventually([&] { return Status().healthy; }));
  std::this_thread::sleep_for(200ms);
  EXPECT_EQ(Status().pid, before.pid);
  EXPECT_EQ(Status().restarts, 0);
  EXPECT_EQ(ProcessesIn(BuildDir("v1")).size(), 1u);

  // Adopted processes are still supervised (by polling): a death restarts it.
  kill(before.pid, SIGKILL);
  ASSERT_TRUE(Eventually([&] { return Status().restarts == 1 && Status().healthy; })) << Status().last_error;
  EXPECT_EQ(Status().port, before.port);
  EXPECT_EQ(ProcessesIn(BuildDir("v1")).size(), 1u);
}

TEST_F(ServicesTest, ADaemonRestartRestartsAServiceWhoseProcessIsGoneOnItsPort) {
  ASSERT_TRUE(manager_->Deploy(Spec("v1")));
  ServiceStatus before = Status();
  manager_.reset();
  kill(before.pid, SIGKILL);
  ASSERT_TRUE(Eventually([&] { return ProcessesIn(BuildDir("v1")).empty(); }));
  Open();
  ASSERT_TRUE(Eventually([&] { return Status().healthy; })) << Status().last_error;
  ServiceStatus after = Status();
  EXPECT_NE(after.pid, before.pid);
  EXPECT_EQ(after.port, before.port);
  EXPECT_EQ(HttpGet(after.port), "v1 " + std::to_string(after.port));
  EXPECT_EQ(ProcessesIn(BuildDir("v1")).size(), 1u);
}

TEST_F(ServicesTest, StopEndsTheProcessAndRemoveForgetsTheService) {
  ASSERT_TRUE(manager_->Deploy(Spec("v1")));
  ASSERT_TRUE(manager_->Stop("web"));
  EXPECT_EQ(Status().state, ServiceState::kStopped);
  EXPECT_EQ(Status().pid, -1);
  EXPECT_TRUE(ProcessesIn(BuildDir("v1")).empty());
  std::this_thread::sleep_for(150ms);
  EXPECT_TRUE(ProcessesIn(BuildDir("v1")).empty()) << "a stopped service is not restarted";

  manager_.reset();
  Open();  // stays stopped across a restart
  EXPECT_EQ(Status().state, ServiceState::kStopped);
  ASSERT_TRUE(manager_->Remove("web"));
  auto gone = manager_->Get("web");
  ASSERT_TRUE(gone);
  EXPECT_FALSE(gone->has_value());
  EXPECT_FALSE(manager_->Stop("web"));
}

TEST_F(ServicesTest, ServiceLogsAreRotated) {
  manager_.reset();
  log_max_bytes_ = 4000;
  Open();
  ServiceSpec spec = Spec("v1");
  spec.command = {"while true; do echo 'a line of output from the service, long enough to fill logs'; sleep 0.002; done"};
  spec.shell = true;
  spec.health.kind = HealthCheck::Kind::kNone;
  ASSERT_TRUE(manager_->Deploy(spec));
  const std::string log = Status().log_path;
  ASSERT_TRUE(Eventually([&] { return std::filesystem::exists(log + ".2"); }, 10s));
  EXPECT_FALSE(std::filesystem::exists(log + ".3"));
  // A rotation renames .1 to .2 before it copies the log to .1: look once it has.
  EXPECT_TRUE(Eventually([&] {
    std::error_code ec;
    return std::filesystem::file_size(log + ".1", ec) > 4000u;
  }));
  EXPECT_LT(std::filesystem::file_size(log), 64u * 1024);
}

}  // namespace
}  // namespace gitopsd::runtime
