// Releases for real: the example shop (examples/shop) committed to a fixture
// repository, its Template and its production ReleaseFlow run by the engine
// with the runtime executor, on real processes: builds, the migration job,
// the web service on its PORT, SQLite backups and restores, a webhook.
#include "daemon/runner/executor.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <mutex>
#include <random>
#include <thread>

#include "daemon/runner/engine.h"
#include "daemon/runtime/addons.h"
#include "daemon/runtime/builds.h"
#include "daemon/runtime/jobs.h"
#include "daemon/runtime/resources.h"
#include "daemon/runtime/services.h"
#include "sync/git.h"
#include "tests/support/git_servers.h"
#include "tests/support/temp_dir.h"

namespace gitopsd::runner {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using test::FixtureRepo;
using test::TempDir;

json::Value Json(std::string_view text) {
  auto v = json::Parse(text);
  EXPECT_TRUE(v.has_value()) << (v ? "" : v.error().message) << "\n" << text;
  return v ? *v : json::Value();
}

json::Value Example(const std::string& rel) {
  return Json(test::ReadTextFile(std::string(GITOPSD_SOURCE_DIR) + "/examples/shop/.gitops/" + rel));
}

int Connect(int port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

// GET http://127.0.0.1:port/ as JSON (null if nothing answers).
json::Value GetPage(int port) {
  int fd = Connect(port);
  if (fd < 0) return json::Value();
  std::string request = "GET / HTTP/1.0\r\nHost: x\r\n\r\n";
  (void)!write(fd, request.data(), request.size());
  std::string response;
  char buffer[4096];
  for (ssize_t n; (n = read(fd, buffer, sizeof(buffer))) > 0;) response.append(buffer, static_cast<size_t>(n));
  close(fd);
  size_t body = response.find("\r\n\r\n");
  if (body == std::string::npos) return json::Value();
  return Json(response.substr(body + 4));
}

std::vector<std::string> Strings(const json::Value* v) {
  std::vector<std::string> out;
  if (v && v->is_array()) {
    for (const json::Value& item : v->items()) out.push_back(item.is_string() ? item.as_string() : "?");
  }
  return out;
}

std::string Field(const json::Value& v, std::string_view key) {
  const json::Value* f = v.Find(key);
  return f && f->is_string() ? f->as_string() : "";
}

// Answers every POST with 200 and keeps the bodies.
class WebhookReceiver {
 public:
  WebhookReceiver() {
    fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(addr);
    bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
    listen(fd_, 8);
    getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
    thread_ = std::thread([this] { Serve(); });
  }
  ~WebhookReceiver() {
    stop_ = true;
    thread_.join();
    close(fd_);
  }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_) + "/hooks/deploys"; }
  std::vector<std::string> bodies() {
    std::lock_guard lock(mu_);
    return bodies_;
  }

 private:
  void Serve() {
    while (!stop_) {
      pollfd p{fd_, POLLIN, 0};
      if (poll(&p, 1, 50) <= 0) continue;
      int client = accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (client < 0) continue;
      std::string request;
      char buffer[4096];
      size_t want = std::string::npos;
      for (ssize_t n; request.size() < want && (n = read(client, buffer, sizeof(buffer))) > 0;) {
        request.append(buffer, static_cast<size_t>(n));
        size_t head = request.find("\r\n\r\n");
        size_t cl = request.find("Content-Length: ");
        if (head != std::string::npos && cl != std::string::npos) want = head + 4 + std::stoul(request.substr(cl + 16));
      }
      std::string reply = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
      (void)!write(client, reply.data(), reply.size());
      close(client);
      std::lock_guard lock(mu_);
      bodies_.push_back(request.substr(std::min(request.size(), request.find("\r\n\r\n") + 4)));
    }
  }

  int fd_ = -1, port_ = 0;
  std::atomic<bool> stop_ = false;
  std::thread thread_;
  std::mutex mu_;
  std::vector<std::string> bodies_;
};

class ReleaseTest : public ::testing::Test {
 protected:
  void SetUp() override {
    fs::copy(std::string(GITOPSD_SOURCE_DIR) + "/examples/shop", origin_.work_path(),
             fs::copy_options::recursive | fs::copy_options::overwrite_existing);
    first_commit_ = origin_.Commit("shop 1");
    ASSERT_FALSE(first_commit_.empty());
    ASSERT_TRUE(origin_.Push());
    ASSERT_NO_FATAL_FAILURE(Fetch());

    auto builds = runtime::ProcessBuildRunner::Open(state_dir_);
    ASSERT_TRUE(builds) << builds.error().message;
    builds_ = std::move(*builds);
    auto jobs = runtime::ProcessJobRunner::Open(state_dir_);
    ASSERT_TRUE(jobs) << jobs.error().message;
    jobs_ = std::move(*jobs);
    runtime::ProcessServiceOptions options;
    // Below the ephemeral range, and apart per test process (ctest runs them in parallel).
    options.port_min = 24000 + static_cast<int>(getpid() % 800) * 10;
    options.port_max = options.port_min + 9;
    options.tick = 100ms;
    options.ready_timeout = 20s;
    options.stop_grace = 3s;
    auto services = runtime::ProcessServiceManager::Open(state_dir_, options);
    ASSERT_TRUE(services) << services.error().message;
    services_ = std::move(*services);
    runtime::LocalAddonsOptions addon_options;
    addon_options.state_dir = state_dir_;
    auto addons = runtime::LocalAddons::Open(addon_options);
    ASSERT_TRUE(addons) << addons.error().message;
    addons_ = std::move(*addons);
    auto registry = runtime::ResourceRegistry::Open(state_dir_);
    ASSERT_TRUE(registry) << registry.error().message;
    registry_ = std::move(*registry);

    executor_ = MakeRuntimeExecutor(RuntimeDeps{
        .builds = builds_.get(),
        .jobs = jobs_.get(),
        .services = services_.get(),
        .addons = addons_.get(),
        .resources = registry_.get(),
        .open_mirror = [this](const std::string& repository) { return OpenMirror(repository); },
        .head_of = [this](const std::string& repository, const std::string& branch) -> Result<std::string> {
          auto mirror = OpenMirror(repository);
          if (!mirror) return std::unexpected(mirror.error());
          return (*mirror)->FetchedHead(branch);
        },
    });
    auto engine = Engine::Open(
        EngineOptions{.state_db = state_dir_ + "/state.db", .poll_initial = 50ms, .poll_max = 500ms}, executor_.get());
    ASSERT_TRUE(engine) << engine.error().message;
    engine_ = std::move(*engine);
  }

  void TearDown() override {
    engine_.reset();
    if (services_) {
      if (auto all = services_->List()) {
        for (const runtime::ServiceStatus& s : *all) (void)services_->Remove(s.service);
      }
    }
  }

  Result<std::unique_ptr<git::Repository>> OpenMirror(const std::string& repository) {
    if (repository != "shop") return Fail("repository \"" + repository + "\" is not configured");
    auto mirror = git::Repository::OpenOrInit(mirror_dir_, origin_.file_url());
    if (!mirror) return std::unexpected(mirror.error());
    return std::make_unique<git::Repository>(std::move(*mirror));
  }

  void Fetch() {
    auto mirror = OpenMirror("shop");
    ASSERT_TRUE(mirror) << mirror.error().message;
    auto fetched = (*mirror)->Fetch("main", {});
    ASSERT_TRUE(fetched) << fetched.error().message;
  }

  // Commits `files` on main, pushes and fetches; returns the commit.
  std::string CommitAndFetch(const std::map<std::string, std::string>& files, const std::string& message) {
    for (const auto& [path, content] : files) EXPECT_TRUE(origin_.WriteFile(path, content));
    std::string commit = origin_.Commit(message);
    EXPECT_TRUE(origin_.Push());
    Fetch();
    return commit;
  }

  // Starts the flow and waits for its end; the run with its nodes.
  RunRecord Run(const std::string& kind, const std::string& name, const json::Value& body,
                json::Value args = json::Value::Object(), json::Value refs = json::Value::Object()) {
    StartRequest request;
    request.flow_kind = kind;
    request.flow_name = name;
    request.flow_revision = "1";
    request.body = body;
    request.args = std::move(args);
    request.trigger_refs = std::move(refs);
    auto id = engine_->Start(request);
    EXPECT_TRUE(id) << (id ? "" : id.error().message);
    if (!id) return {};
    auto status = engine_->Wait(*id, 90s);
    EXPECT_TRUE(status && IsFinished(*status)) << "run " << *id << " did not finish";
    auto run = engine_->Get(*id);
    EXPECT_TRUE(run) << (run ? "" : run.error().message);
    return run ? *run : RunRecord{};
  }

  RunRecord RunTemplate() { return Run("Template", "shop", Example("templates/shop.json")); }

  RunRecord RunProduction(const std::string& sha, const std::string& notify_url) {
    return Run("ReleaseFlow", "production", Example("release-flows/production.json"),
               json::Value::Object({{"NOTIFY_URL", json::Value::String(notify_url)}}),
               Json(R"({"app": {"branch": "main", "sha": ")" + sha + R"("}})"));
  }

  static const NodeRecord* Node(const RunRecord& run, const std::string& ref) {
    for (const NodeRecord& n : run.nodes) {
      if (n.ref == ref) return &n;
    }
    ADD_FAILURE() << "no node " << ref;
    return nullptr;
  }

  static std::string Describe(const RunRecord& run) { return json::Serialize(RunToJson(run)); }

  int WebPort() {
    auto status = services_->Get("shop-web");
    return status && *status ? (*status)->port : -1;
  }

  TempDir dir_{"release"};
  FixtureRepo origin_{dir_.path(), "shop"};
  std::string mirror_dir_ = dir_.Sub("mirrors/shop.git");
  std::string state_dir_ = dir_.Sub("state");
  std::string first_commit_;
  std::unique_ptr<runtime::ProcessBuildRunner> builds_;
  std::unique_ptr<runtime::ProcessJobRunner> jobs_;
  std::unique_ptr<runtime::ProcessServiceManager> services_;
  std::unique_ptr<runtime::LocalAddons> addons_;
  std::unique_ptr<runtime::ResourceRegistry> registry_;
  std::unique_ptr<NodeExecutor> executor_;
  std::unique_ptr<Engine> engine_;
};

TEST_F(ReleaseTest, TemplateThenProductionFlowShipsANewVersionWithItsMigration) {
  RunRecord setup = RunTemplate();
  ASSERT_EQ(setup.status, RunStatus::kSuccess) << Describe(setup);
  const std::string v1 = "shop-builder@" + first_commit_;
  EXPECT_EQ(Field(Node(setup, "first-build")->data, "id"), v1);
  json::Value page = GetPage(WebPort());
  ASSERT_TRUE(page.is_object()) << "shop-web does not answer on port " << WebPort();
  EXPECT_EQ(Field(page, "version"), "1");
  auto job = registry_->Require(runtime::ResourceKind::kJob, "shop-migrate");
  ASSERT_TRUE(job) << job.error().message;
  EXPECT_EQ(job->deployed_build, v1);

  WebhookReceiver hooks;
  const std::string sha = CommitAndFetch(
      {{"VERSION", "2\n"}, {"migrations/002_mugs.sql", "INSERT INTO items (name) VALUES ('mug')\n"}}, "shop 2");
  RunRecord release = RunProduction(sha, hooks.url());
  ASSERT_EQ(release.status, RunStatus::kSuccess) << Describe(release);

  page = GetPage(WebPort());
  EXPECT_EQ(Field(page, "version"), "2");
  EXPECT_EQ(Strings(page.Find("migrations")), (std::vector<std::string>{"001_items.sql", "002_mugs.sql"}));
  EXPECT_EQ(Strings(page.Find("items")), (std::vector<std::string>{"kettle", "mug", "teapot"}));

  const std::string v2 = "shop-builder@" + sha;
  const json::Value& deploy = Node(release, "deploy")->data;
  EXPECT_EQ(Field(deploy, "build"), v2);
  EXPECT_EQ(Field(deploy, "previousBuild"), v1) << "what a rollback redeploys";
  EXPECT_EQ(Field(Node(release, "ship-migrate")->data, "previousBuild"), v1);
  EXPECT_EQ(Field(Node(release, "migrate")->data, "build"), v2);

  auto backups = addons_->ListBackups("shop-db");
  ASSERT_TRUE(backups) << backups.error().message;
  ASSERT_EQ(backups->size(), 1u);
  EXPECT_EQ(backups->front().status, runtime::BackupStatus::kSuccess);
  EXPECT_EQ(Field(Node(release, "pre-release-backup")->data, "id"), backups->front().id);
  EXPECT_TRUE(fs::exists(backups->front().path));

  auto bodies = hooks.bodies();
  ASSERT_EQ(bodies.size(), 1u);
  json::Value message = Json(bodies[0]);
  EXPECT_NE(Field(message, "message").find("Deployed " + sha + " of main (backup " + backups->front().id + ")"),
            std::string::npos)
      << bodies[0];
}

TEST_F(ReleaseTest, AFailingMigrationStopsTheReleaseAndTheBackupRestores) {
  RunRecord setup = RunTemplate();
  ASSERT_EQ(setup.status, RunStatus::kSuccess) << Describe(setup);
  const int port = WebPort();

  WebhookReceiver hooks;
  const std::string sha =
      CommitAndFetch({{"VERSION", "2\n"}, {"migrations/002_broken.sql", "CREATE TABLE broken (\n"}}, "shop 2, broken");
  RunRecord release = RunProduction(sha, hooks.url());
  ASSERT_EQ(release.status, RunStatus::kFailure) << Describe(release);
  EXPECT_NE(release.error.find("JobRun \"migrate\""), std::string::npos) << release.error;
  EXPECT_NE(release.error.find("job \"shop-migrate\""), std::string::npos) << release.error;
  EXPECT_EQ(Node(release, "migrate")->status, NodeStatus::kFailure);
  EXPECT_EQ(Node(release, "deploy")->status, NodeStatus::kSkipped);
  EXPECT_TRUE(hooks.bodies().empty());

  // The old version still serves, on its port; the job got as far as 001.
  EXPECT_EQ(WebPort(), port);
  json::Value page = GetPage(port);
  EXPECT_EQ(Field(page, "version"), "1");
  EXPECT_EQ(Strings(page.Find("migrations")), (std::vector<std::string>{"001_items.sql"}));

  // The pre-release backup puts the database back as it was before the release.
  const std::string backup = Field(Node(release, "pre-release-backup")->data, "id");
  ASSERT_FALSE(backup.empty());
  json::Value restore = Json(R"({"apiVersion": "v1.2", "spec": {"kind": "Workflow", "spec": {"type": "sequential",
      "steps": [{"kind": "Action", "ref": "restore", "spec": {"kind": "AddonBackup", "spec": {"type": "restore",
      "data": {"addonId": "shop-db", "backupId": ")" +
                             backup + R"("}}}}]}}})");
  RunRecord restored = Run("ReleaseFlow", "restore", restore);
  ASSERT_EQ(restored.status, RunStatus::kSuccess) << Describe(restored);
  EXPECT_EQ(Field(Node(restored, "restore")->data, "backupId"), backup);
  page = GetPage(port);
  EXPECT_EQ(Field(page, "version"), "1");
  EXPECT_TRUE(Strings(page.Find("migrations")).empty()) << json::Serialize(page);
}

// The dry run's first problem, or "" when the flow would start.
std::string DryRunProblem(Engine& engine, const json::Value& flow) {
  StartRequest request;
  request.flow_name = "probe";
  request.body = flow;
  auto started = engine.Start(request);
  if (started) {
    (void)engine.Cancel(*started);
    return "";
  }
  EXPECT_EQ(started.error().code, RunError::Code::kInvalid) << started.error().message;
  return started.error().message;
}

json::Value FlowOfSteps(const std::string& steps) {
  return Json(R"({"apiVersion": "v1.2", "spec": {"kind": "Workflow", "spec": {"type": "sequential", "steps": [)" +
              steps + "]}}}");
}

TEST_F(ReleaseTest, AFlowNamingAMissingJobServiceOrAddonFailsItsDryRunNamingTheNode) {
  std::string problem = DryRunProblem(*engine_, FlowOfSteps(
      R"({"kind": "JobRun", "ref": "migrate", "spec": {"jobId": "shop-nope"}, "condition": "success"})"));
  EXPECT_NE(problem.find("spec.spec.steps[0].spec.jobId"), std::string::npos) << problem;
  EXPECT_NE(problem.find("job \"shop-nope\" does not exist; declare it in a Template"), std::string::npos)
      << problem;

  problem = DryRunProblem(*engine_, FlowOfSteps(
      R"({"kind": "AddonBackup", "spec": {"addonId": "shop-db"}},
         {"kind": "Release", "spec": {"type": "build", "origin": {"id": "shop-builder", "branch": "main"},
                                      "target": {"id": "shop-wbe", "type": "service"}}})"));
  EXPECT_NE(problem.find("spec.spec.steps[0].spec.addonId: addon \"shop-db\" does not exist"), std::string::npos)
      << problem;
  EXPECT_NE(problem.find("(and 2 more)"), std::string::npos) << problem;  // the build service and the service

  // Declared by an earlier node of the same flow (a Template), it may be used.
  EXPECT_EQ(DryRunProblem(*engine_, FlowOfSteps(
                R"({"kind": "Addon", "spec": {"name": "scratch-db", "type": "sqlite"}},
                   {"kind": "AddonBackup", "spec": {"addonId": "scratch-db"}})")),
            "");
  // Once the Template ran, the resources exist for every flow.
  RunRecord setup = RunTemplate();
  ASSERT_EQ(setup.status, RunStatus::kSuccess) << Describe(setup);
  EXPECT_EQ(DryRunProblem(*engine_, FlowOfSteps(R"({"kind": "JobRun", "spec": {"jobId": "shop-migrate"}})")), "");
  // Still missing: the first problem named with its path.
  problem = DryRunProblem(*engine_, FlowOfSteps(
      R"({"kind": "Condition", "spec": {"kind": "Service", "spec": {"type": "running",
                                        "data": {"serviceId": "shop-api"}}}})"));
  EXPECT_NE(problem.find("spec.spec.steps[0].spec.spec.data.serviceId: service \"shop-api\" does not exist"),
            std::string::npos)
      << problem;

  // A reference that cannot resolve is a dry-run error naming the node path.
  problem = DryRunProblem(*engine_, FlowOfSteps(R"({"kind": "JobRun", "spec": {"jobId": "${refs.migrator.name}"}})"));
  EXPECT_NE(problem.find("spec.spec.steps[0].spec.jobId"), std::string::npos) << problem;
}

TEST_F(ReleaseTest, AReleaseOfTypeDeploymentPromotesWhatTheOriginRuns) {
  RunRecord setup = RunTemplate();
  ASSERT_EQ(setup.status, RunStatus::kSuccess) << Describe(setup);
  const std::string v1 = "shop-builder@" + first_commit_;
  const std::string sha = CommitAndFetch({{"VERSION", "2\n"}}, "shop 2");
  const std::string v2 = "shop-builder@" + sha;

  // The migration job gets v2; a second service is declared, running nothing.
  RunRecord staged = Run("ReleaseFlow", "stage", FlowOfSteps(R"(
      {"kind": "Build", "ref": "b", "spec": {"id": "shop-builder", "sha": ")" + sha + R"("}, "condition": "success"},
      {"kind": "Release", "spec": {"type": "build", "origin": {"id": "shop-builder", "build": "${refs.b.id}"},
                                   "target": {"id": "shop-migrate", "type": "job"}}},
      {"kind": "Addon", "ref": "db", "spec": {"name": "shop-db", "type": "sqlite"}},
      {"kind": "DeploymentService", "spec": {"name": "shop-web-prod",
          "deployment": {"command": ["bin/shop", "serve"]},
          "runtimeEnvironment": {"DATABASE_PATH": "${refs.db.path}"},
          "healthChecks": [{"protocol": "HTTP", "path": "/healthz"}]}})"));
  ASSERT_EQ(staged.status, RunStatus::kSuccess) << Describe(staged);

  // Promote: the job's build to the new service, the old service's build to the job.
  RunRecord promoted = Run("ReleaseFlow", "promote", FlowOfSteps(R"(
      {"kind": "Release", "ref": "to-prod", "spec": {"type": "deployment",
          "origin": {"id": "shop-migrate", "type": "job"}, "target": {"id": "shop-web-prod", "type": "service"}}},
      {"kind": "Release", "ref": "to-job", "spec": {"type": "deployment",
          "origin": {"id": "shop-web", "type": "service"}, "target": {"id": "shop-migrate", "type": "job"}}})"));
  ASSERT_EQ(promoted.status, RunStatus::kSuccess) << Describe(promoted);
  EXPECT_EQ(Field(Node(promoted, "to-prod")->data, "build"), v2);
  EXPECT_EQ(Field(Node(promoted, "to-prod")->data, "previousBuild"), "");
  EXPECT_EQ(Field(Node(promoted, "to-job")->data, "build"), v1);
  EXPECT_EQ(Field(Node(promoted, "to-job")->data, "previousBuild"), v2);
  auto prod = services_->Get("shop-web-prod");
  ASSERT_TRUE(prod && *prod);
  EXPECT_EQ(Field(GetPage((*prod)->port), "version"), "2");
  EXPECT_EQ(Field(GetPage(WebPort()), "version"), "1");
  auto job = registry_->Require(runtime::ResourceKind::kJob, "shop-migrate");
  ASSERT_TRUE(job) << job.error().message;
  EXPECT_EQ(job->deployed_build, v1);

  // Promoting from a service that runs nothing fails clearly.
  ASSERT_TRUE(services_->Stop("shop-web-prod"));
  RunRecord nothing = Run("ReleaseFlow", "promote-nothing", FlowOfSteps(R"(
      {"kind": "Release", "spec": {"type": "deployment",
          "origin": {"id": "shop-web-prod", "type": "service"}, "target": {"id": "shop-migrate", "type": "job"}}})"));
  EXPECT_EQ(nothing.status, RunStatus::kFailure);
  EXPECT_NE(nothing.error.find("service \"shop-web-prod\""), std::string::npos) << nothing.error;
}

TEST_F(ReleaseTest, CancelStopsARunningJobBuildAndDeployAndKeepsTheOldVersion) {
  RunRecord setup = RunTemplate();
  ASSERT_EQ(setup.status, RunStatus::kSuccess) << Describe(setup);
  const std::string marker = dir_.Sub("job-started");
  // A migration that hangs, a build that hangs, a service that never gets healthy.
  ASSERT_TRUE(origin_.WriteFile("bin/hang", "#!/bin/sh\necho \"hanging on $1\"\ntouch \"$1\"\nexec sleep 600\n"));
  ASSERT_TRUE(origin_.MakeExecutable("bin/hang"));
  const std::string hang_sha = CommitAndFetch({{"VERSION", "3\n"}}, "a command that hangs");

  auto start = [&](const std::string& name, const std::string& steps) {
    StartRequest request;
    request.flow_name = name;
    request.body = FlowOfSteps(steps);
    auto id = engine_->Start(request);
    EXPECT_TRUE(id) << (id ? "" : id.error().message);
    return id ? *id : -1;
  };
  auto cancel_when = [&](int64_t id, const std::function<bool()>& ready) {
    for (int i = 0; i < 400 && !ready(); ++i) std::this_thread::sleep_for(25ms);
    EXPECT_TRUE(ready());
    const auto asked = std::chrono::steady_clock::now();
    EXPECT_TRUE(engine_->Cancel(id));
    auto status = engine_->Wait(id, 20s);
    EXPECT_TRUE(status && IsFinished(*status));
    EXPECT_LT(std::chrono::steady_clock::now() - asked, 8s) << "the cancel waited for the work to end";
    auto run = engine_->Get(id);
    return run ? *run : RunRecord{};
  };

  // 1. A job that hangs: the cancel kills it; the job run is recorded failed.
  int64_t job_run = start("hang-job", R"(
      {"kind": "Build", "ref": "b", "spec": {"id": "shop-builder", "sha": ")" + hang_sha + R"("}, "condition": "success"},
      {"kind": "Release", "spec": {"type": "build", "origin": {"id": "shop-builder", "build": "${refs.b.id}"},
                                   "target": {"id": "shop-migrate", "type": "job"}}},
      {"kind": "Action", "ref": "hang", "spec": {"kind": "Job", "spec": {"type": "execute",
          "data": {"jobId": "shop-migrate", "command": ["bin/hang", ")" + marker + R"("]}}}})");
  // Its output reaches the node's log while it runs.
  auto live_output = [&] {
    auto run = engine_->Get(job_run);
    if (!run) return false;
    for (const NodeRecord& n : run->nodes) {
      if (n.ref == "hang") return n.log.find("  hanging on " + marker + "\n") != std::string::npos;
    }
    return false;
  };
  RunRecord cancelled = cancel_when(job_run, live_output);
  EXPECT_EQ(cancelled.status, RunStatus::kAborted) << Describe(cancelled);
  auto runs = jobs_->List("shop-migrate");
  ASSERT_TRUE(runs && !runs->empty());
  EXPECT_EQ(runs->front().state, runtime::JobState::kFailed);
  EXPECT_NE(runs->front().error.find("cancelled"), std::string::npos) << runs->front().error;

  // 2. A build that hangs.
  const std::string build_sha = CommitAndFetch({{"Makefile", "build:\n\ttouch " + marker + "-build && sleep 600\n"}},
                                               "a build that hangs");
  int64_t build_run = start("hang-build", R"(
      {"kind": "Build", "spec": {"id": "shop-builder", "sha": ")" + build_sha + R"("}})");
  cancelled = cancel_when(build_run, [&] { return fs::exists(marker + "-build"); });
  EXPECT_EQ(cancelled.status, RunStatus::kAborted) << Describe(cancelled);
  auto build = builds_->Find("shop-builder", build_sha);
  ASSERT_TRUE(build && *build);
  EXPECT_EQ((*build)->state, runtime::BuildState::kFailed);

  // 3. A deploy whose new process never gets healthy: the old one keeps serving.
  const int port = WebPort();
  const std::string sick_sha = CommitAndFetch(
      {{"Makefile", "build:\n\ttrue\n"}, {"bin/shop", "#!/bin/sh\ntouch " + marker + "-sick\nexec sleep 600\n"}},
      "a web server that never answers");
  int64_t deploy_run = start("sick-deploy", R"(
      {"kind": "Build", "ref": "b", "spec": {"id": "shop-builder", "sha": ")" + sick_sha + R"("}, "condition": "success"},
      {"kind": "Release", "spec": {"type": "build", "origin": {"id": "shop-builder", "build": "${refs.b.id}"},
                                   "target": {"id": "shop-web", "type": "service"}}})");
  cancelled = cancel_when(deploy_run, [&] { return fs::exists(marker + "-sick"); });
  EXPECT_EQ(cancelled.status, RunStatus::kAborted) << Describe(cancelled);
  EXPECT_EQ(WebPort(), port);
  EXPECT_EQ(Field(GetPage(port), "version"), "1");
  auto web = services_->Get("shop-web");
  ASSERT_TRUE(web && *web);
  EXPECT_EQ((*web)->build, "shop-builder@" + first_commit_);
}

TEST_F(ReleaseTest, RecheckAfterARestartVerifiesInsteadOfRunningAgain) {
  RunRecord setup = RunTemplate();
  ASSERT_EQ(setup.status, RunStatus::kSuccess) << Describe(setup);
  const std::string v1 = "shop-builder@" + first_commit_;
  auto context = [](int64_t run, const std::string& kind, json::Value spec) {
    NodeContext ctx;
    ctx.run_id = run;
    ctx.node_path = "0.3";
    ctx.kind = kind;
    ctx.spec = std::move(spec);
    ctx.cancelled = [] { return false; };
    ctx.log = [](std::string_view) {};
    return ctx;
  };
  auto job_runs = [&] { return jobs_->List("shop-migrate").value_or(std::vector<runtime::JobRun>{}).size(); };

  // Finished before the restart: the journal answers.
  NodeContext run_job = context(9001, "JobRun", Json(R"({"jobId": "shop-migrate"})"));
  NodeOutcome first = executor_->Execute(run_job);
  ASSERT_EQ(first.status, NodeOutcome::Status::kSuccess) << first.error;
  ASSERT_EQ(job_runs(), 1u);
  NodeOutcome again = executor_->Recheck(run_job, json::Value());
  EXPECT_EQ(again.status, NodeOutcome::Status::kSuccess);
  EXPECT_EQ(Field(again.data, "runId"), Field(first.data, "runId"));
  EXPECT_EQ(job_runs(), 1u);

  // Started but its outcome never recorded (the daemon died): the job run
  // recorded after the journal entry is the answer.
  NodeContext cut = context(9002, "JobRun", Json(R"({"jobId": "shop-migrate"})"));
  runtime::Execution journaled{.run_id = 9002,
                               .node_path = "0.3",
                               .attempt = 1,
                               .kind = "JobRun",
                               .detail = json::Value::Object(
                                   {{"job", json::Value::String("shop-migrate")}, {"build", json::Value::String(v1)}})};
  ASSERT_TRUE(registry_->RecordStart(journaled));
  auto job = registry_->Require(runtime::ResourceKind::kJob, "shop-migrate");
  ASSERT_TRUE(job);
  auto build = builds_->Find("shop-builder", first_commit_);
  ASSERT_TRUE(build && *build);
  auto env = registry_->RuntimeEnvironment(*job, *addons_);
  ASSERT_TRUE(env) << env.error().message;
  auto started = jobs_->Run({.job = "shop-migrate",
                             .build = v1,
                             .build_dir = (*build)->dir,
                             .command = {"bin/shop", "migrate"},
                             .env = *env});
  ASSERT_TRUE(started && started->succeeded());
  ASSERT_EQ(job_runs(), 2u);
  NodeOutcome verified = executor_->Recheck(cut, json::Value());
  EXPECT_EQ(verified.status, NodeOutcome::Status::kSuccess) << verified.error;
  EXPECT_EQ(Field(verified.data, "runId"), std::to_string(started->id));
  EXPECT_EQ(job_runs(), 2u) << "rechecking never starts the job again";

  // A deploy cut off after it took effect: the service's current build says so.
  auto before = services_->Get("shop-web");
  ASSERT_TRUE(before && *before);
  NodeContext deploy = context(9003, "Release", json::Value::Object());
  runtime::Execution deploying{.run_id = 9003,
                               .node_path = "0.3",
                               .attempt = 1,
                               .kind = "Release",
                               .detail = Json(R"({"target": "shop-web", "targetType": "service", "build": ")" + v1 +
                                              R"(", "previousBuild": ""})")};
  ASSERT_TRUE(registry_->RecordStart(deploying));
  NodeOutcome deployed = executor_->Recheck(deploy, json::Value());
  EXPECT_EQ(deployed.status, NodeOutcome::Status::kSuccess) << deployed.error;
  auto after = services_->Get("shop-web");
  ASSERT_TRUE(after && *after);
  EXPECT_EQ((*after)->pid, (*before)->pid) << "the running service was not redeployed";
}

}  // namespace
}  // namespace gitopsd::runner
