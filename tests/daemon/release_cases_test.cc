// Release flows that really release, and fail cleanly: a real gitopsd over a
// tiny app (a POSIX sh build, sh jobs, a python3 web service answering its
// VERSION) whose Template declares a SQLite addon, a build service, jobs and
// the web service. Each case starts a flow over HTTP and checks what a user
// would see: the run's status, which node failed and why, and that a failed
// release left the version that ran before it serving, untouched.
#include <gtest/gtest.h>
#include <signal.h>

#include <chrono>
#include <filesystem>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "tests/daemon/run_waits.h"
#include "tests/daemon/write_fixture.h"

namespace gitopsd::test {
namespace {

namespace fs = std::filesystem;
using std::chrono::milliseconds;
using std::chrono::seconds;

// ---- the app ----

constexpr const char* kBuildSh = R"(# The app's build: a commit holding BROKEN_BUILD fails with exit code 3;
# otherwise the web service must compile.
if [ -e BROKEN_BUILD ]; then
  echo "build.sh: BROKEN_BUILD is in this commit" >&2
  exit 3
fi
exec python3 -m py_compile app/serve.py
)";

constexpr const char* kServePy = R"("""The app's web service: its VERSION on /, and /healthz.

A commit holding UNHEALTHY answers /healthz with 503, forever; one holding
DIES_AT_START exits before it listens.
"""
import http.server
import os
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
VERSION = (ROOT / "VERSION").read_text().strip()
if (ROOT / "DIES_AT_START").exists():
    sys.exit("serve.py: DIES_AT_START is in this commit")
HEALTHY = not (ROOT / "UNHEALTHY").exists()


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/healthz":
            status, body = (200, "ok") if HEALTHY else (503, "UNHEALTHY is in this commit")
        else:
            status, body = 200, VERSION
        data = (body + "\n").encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, fmt, *args):
        print(fmt % args, flush=True)


port = int(os.environ["PORT"])
print(f"app {VERSION} listening on 127.0.0.1:{port}", flush=True)
http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()
)";

constexpr const char* kRendezvousSh = R"(# Meets another job: leaves $MEETING/$ME, then waits (20 s at most) for
# $MEETING/$OTHER. It succeeds only if the other one runs at the same time.
: "${MEETING:?MEETING is not set}" "${ME:?ME is not set}" "${OTHER:?OTHER is not set}"
touch "$MEETING/$ME"
tries=0
while [ ! -e "$MEETING/$OTHER" ]; do
  tries=$((tries + 1))
  if [ "$tries" -gt 200 ]; then
    echo "$ME waited 20 s for $OTHER in vain" >&2
    exit 1
  fi
  sleep 0.1
done
echo "$ME met $OTHER"
)";

constexpr const char* kHangSh = R"(# Never ends by itself: its job's activeDeadlineSeconds has to stop it.
echo "hanging"
exec sleep 600
)";

// Committed without the executable bit.
constexpr const char* kNotExecutableSh = "#!/bin/sh\necho \"this never runs\"\n";

// Version 1 of everything; `first-build` is the build all jobs and the web
// service start on.
constexpr const char* kTemplateJson = R"({
  "apiVersion": "v1.2",
  "name": "app",
  "description": "A SQLite database, a build service, four jobs and the web service",
  "options": {"autorun": true, "concurrencyPolicy": "queue"},
  "spec": {"kind": "Workflow", "spec": {"type": "sequential", "steps": [
    {"kind": "Workflow", "ref": "base", "spec": {"type": "parallel", "steps": [
      {"kind": "Addon", "ref": "db", "spec": {"name": "app-db", "type": "sqlite"}},
      {"kind": "BuildService", "ref": "builder", "spec": {
        "name": "app-builder",
        "vcsData": {"repository": "app", "projectBranch": "main"},
        "buildSettings": {"command": ["sh", "build.sh"]}}}
    ]}},
    {"kind": "Build", "ref": "first-build",
     "spec": {"id": "${refs.builder.name}", "type": "service", "branch": "main"}, "condition": "success"},
    {"kind": "ManualJob", "spec": {"name": "left",
      "deployment": {"internal": {"id": "${refs.builder.name}", "buildId": "${refs.first-build.id}"},
                     "command": ["sh", "jobs/rendezvous.sh"]},
      "runtimeEnvironment": {"ME": "left", "OTHER": "right"}, "backoffLimit": 0, "activeDeadlineSeconds": 60}},
    {"kind": "ManualJob", "spec": {"name": "right",
      "deployment": {"internal": {"id": "${refs.builder.name}", "buildId": "${refs.first-build.id}"},
                     "command": ["sh", "jobs/rendezvous.sh"]},
      "runtimeEnvironment": {"ME": "right", "OTHER": "left"}, "backoffLimit": 0, "activeDeadlineSeconds": 60}},
    {"kind": "ManualJob", "spec": {"name": "unrunnable",
      "deployment": {"internal": {"id": "${refs.builder.name}", "buildId": "${refs.first-build.id}"},
                     "command": ["jobs/not-executable.sh"]},
      "backoffLimit": 0, "activeDeadlineSeconds": 60}},
    {"kind": "ManualJob", "spec": {"name": "hang",
      "deployment": {"internal": {"id": "${refs.builder.name}", "buildId": "${refs.first-build.id}"},
                     "command": ["sh", "jobs/hang.sh"]},
      "backoffLimit": 0, "activeDeadlineSeconds": 1}},
    {"kind": "DeploymentService", "ref": "web", "spec": {
      "name": "app-web",
      "deployment": {"instances": 1,
                     "internal": {"id": "${refs.builder.name}", "buildId": "${refs.first-build.id}"},
                     "command": ["python3", "app/serve.py"]},
      "ports": [{"name": "http", "internalPort": 8080, "protocol": "HTTP", "public": true}],
      "healthChecks": [{"protocol": "HTTP", "path": "/healthz", "type": "readinessProbe",
                        "periodSeconds": 1, "timeoutSeconds": 1},
                       {"protocol": "HTTP", "path": "/healthz", "type": "startupProbe",
                        "periodSeconds": 1, "failureThreshold": 6}]}}
  ]}}
}
)";

// The three steps of a release of main: 0.0 Build, 0.1 AddonBackup, 0.2 Release.
constexpr const char* kReleaseJson = R"({
  "apiVersion": "v1.2",
  "name": "release",
  "description": "Build main, back the database up, deploy the build to the web service",
  "options": {"concurrencyPolicy": "queue"},
  "spec": {"kind": "Workflow", "spec": {"type": "sequential", "steps": [
    {"kind": "Build", "ref": "build", "spec": {"id": "app-builder", "branch": "main"}, "condition": "success"},
    {"kind": "AddonBackup", "ref": "backup", "spec": {"addonId": "app-db"}, "condition": "success"},
    {"kind": "Release", "ref": "deploy", "spec": {"type": "build",
      "origin": {"id": "app-builder", "branch": "main", "build": "${refs.build.id}"},
      "target": {"id": "app-web", "type": "service"}}}
  ]}}
}
)";

// 0.0 Build, 0.1 JobRun of the job args.JOB names, 0.2 Release.
constexpr const char* kJobThenReleaseJson = R"({
  "apiVersion": "v1.2",
  "name": "job-then-release",
  "arguments": {"JOB": ""},
  "spec": {"kind": "Workflow", "spec": {"type": "sequential", "steps": [
    {"kind": "Build", "ref": "build", "spec": {"id": "app-builder", "branch": "main"}, "condition": "success"},
    {"kind": "JobRun", "ref": "job", "spec": {"jobId": "${args.JOB}"}, "condition": "success"},
    {"kind": "Release", "ref": "deploy", "spec": {"type": "build",
      "origin": {"id": "app-builder", "branch": "main", "build": "${refs.build.id}"},
      "target": {"id": "app-web", "type": "service"}}}
  ]}}
}
)";

// A parallel root: 0.0 runs job left, 0.1 job right, in the folder args.MEETING.
constexpr const char* kPairJson = R"({
  "apiVersion": "v1.2",
  "name": "pair",
  "arguments": {"MEETING": ""},
  "spec": {"kind": "Workflow", "spec": {"type": "parallel", "steps": [
    {"kind": "JobRun", "ref": "left", "spec": {"jobId": "left", "runtimeEnvironment": {"MEETING": "${args.MEETING}"}},
     "condition": "success"},
    {"kind": "JobRun", "ref": "right", "spec": {"jobId": "right", "runtimeEnvironment": {"MEETING": "${args.MEETING}"}},
     "condition": "success"}
  ]}}
}
)";

// One JobRun (0.0) of job left as args.ME waiting for args.OTHER; runs may overlap.
constexpr const char* kMeetJson = R"({
  "apiVersion": "v1.2",
  "name": "meet",
  "arguments": {"ME": "", "OTHER": "", "MEETING": ""},
  "options": {"concurrencyPolicy": "allow"},
  "spec": {"kind": "Workflow", "spec": {"type": "sequential", "steps": [
    {"kind": "JobRun", "ref": "meet", "spec": {"jobId": "left",
      "runtimeEnvironment": {"ME": "${args.ME}", "OTHER": "${args.OTHER}", "MEETING": "${args.MEETING}"}},
     "condition": "success"}
  ]}}
}
)";

// One Approval (0.0); one run at a time.
constexpr const char* kOneAtATimeJson = R"({
  "apiVersion": "v1.2",
  "name": "one-at-a-time",
  "options": {"concurrencyPolicy": "queue"},
  "spec": {"kind": "Workflow", "spec": {"type": "sequential", "steps": [
    {"kind": "Approval", "ref": "gate", "spec": {"amount": 1, "message": "go?"}}
  ]}}
}
)";

// A typo in the service's name: 0.0 Build, 0.1 Release to "app-wbe".
constexpr const char* kTypoServiceJson = R"({
  "apiVersion": "v1.2",
  "name": "typo-service",
  "spec": {"kind": "Workflow", "spec": {"type": "sequential", "steps": [
    {"kind": "Build", "ref": "build", "spec": {"id": "app-builder", "branch": "main"}, "condition": "success"},
    {"kind": "Release", "ref": "deploy", "spec": {"type": "build",
      "origin": {"id": "app-builder", "branch": "main", "build": "${refs.build.id}"},
      "target": {"id": "app-wbe", "type": "service"}}}
  ]}}
}
)";

// A typo in the addon's name: 0.0 Build, 0.1 AddonBackup of "app-bd", 0.2 Release.
constexpr const char* kTypoAddonJson = R"({
  "apiVersion": "v1.2",
  "name": "typo-addon",
  "spec": {"kind": "Workflow", "spec": {"type": "sequential", "steps": [
    {"kind": "Build", "ref": "build", "spec": {"id": "app-builder", "branch": "main"}, "condition": "success"},
    {"kind": "AddonBackup", "ref": "backup", "spec": {"addonId": "app-bd"}, "condition": "success"},
    {"kind": "Release", "ref": "deploy", "spec": {"type": "build",
      "origin": {"id": "app-builder", "branch": "main", "build": "${refs.build.id}"},
      "target": {"id": "app-web", "type": "service"}}}
  ]}}
}
)";

class ReleaseCasesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(repo_.WriteFile("VERSION", "1\n"));
    ASSERT_TRUE(repo_.WriteFile("build.sh", kBuildSh));
    ASSERT_TRUE(repo_.WriteFile("app/serve.py", kServePy));
    ASSERT_TRUE(repo_.WriteFile("jobs/rendezvous.sh", kRendezvousSh));
    ASSERT_TRUE(repo_.WriteFile("jobs/hang.sh", kHangSh));
    ASSERT_TRUE(repo_.WriteFile("jobs/not-executable.sh", kNotExecutableSh));
    ASSERT_TRUE(repo_.WriteFile(".gitops/templates/app.json", kTemplateJson));
    const std::pair<const char*, const char*> flows[] = {{"release", kReleaseJson},
                                                         {"job-then-release", kJobThenReleaseJson},
                                                         {"pair", kPairJson},
                                                         {"meet", kMeetJson},
                                                         {"one-at-a-time", kOneAtATimeJson},
                                                         {"typo-service", kTypoServiceJson},
                                                         {"typo-addon", kTypoAddonJson}};
    for (const auto& [name, json] : flows) {
      ASSERT_TRUE(repo_.WriteFile(std::string(".gitops/release-flows/") + name + ".json", json));
    }
    ASSERT_FALSE(repo_.Commit("the app, version 1").empty());
    ASSERT_TRUE(repo_.Push());
    ASSERT_TRUE(WriteTextFile(dir_.Sub("tokens.json"),
                              "[{\"name\": \"ci\", \"role\": \"write\", \"sha256\": \"" +
                                  daemon::ToHex(daemon::HashToken(kWriteToken)) + "\"}]\n"));
    daemon_.SetEnv("GITOPSD_RUNNER_POLL", "100ms");
    const std::string config =
        "{\"stateDir\": \"@STATE@\", \"listen\": \"127.0.0.1:@PORT@\", \"apiTokensFile\": "
        "\"tokens.json\", \"repositories\": [{\"name\": \"app\", \"url\": \"" + repo_.file_url() +
        "\", \"pollInterval\": \"1h\", \"sync\": {\"writeBack\": false}}], \"runtime\": "
        "{\"portRange\": " + PortRange() + "}, \"log\": {\"level\": \"debug\"}}";
    ASSERT_TRUE(daemon_.StartWithConfig(config));
    ASSERT_TRUE(daemon_.WaitReady()) << daemon_.Output();

    // The first sync autoran the Template: version 1 serves.
    auto runs = daemon_.Get("/api/v1/runs?flow=app").Json();
    ASSERT_TRUE(runs && runs->Find("runs") && runs->Find("runs")->items().size() == 1) << daemon_.Output();
    const json::Value setup =
        Concluded(daemon_, static_cast<int64_t>(NumberField(runs->Find("runs")->items()[0], "id")), seconds(60));
    ASSERT_EQ(StringField(setup, "status"), "success") << Explain(daemon_, setup) << daemon_.Output();
    ASSERT_TRUE(WaitUntil([&] { return ServedVersion() == "1"; })) << daemon_.Output();
    first_web_ = Web();
  }

  // What the runtime started outlives the daemon by design (services, and a
  // job a broken deadline would leave): once the daemon is gone, so that
  // nothing restarts them, end every process working in its state folder.
  void TearDown() override {
    daemon_.Stop();
    for (pid_t pid : ProcessesIn(daemon_.state_dir())) ::kill(pid, SIGKILL);
  }

  // Each case its own ports, 80 of 20000-20999 by its place in the suite:
  // ctest runs the cases in parallel processes, and two daemons handing out
  // one range would race for the same free port. (21000-23999 belong to the
  // shop, PostgreSQL and crash tests; the runtime tests use 24000 and up.)
  static std::string PortRange() {
    const ::testing::UnitTest& unit = *::testing::UnitTest::GetInstance();
    const ::testing::TestSuite& suite = *unit.current_test_suite();
    int place = -1;
    for (int i = 0; i < suite.total_test_count(); ++i) {
      if (suite.GetTestInfo(i) == unit.current_test_info()) place = i;
    }
    EXPECT_TRUE(place >= 0 && place < 12) << "more cases than port slots: split 20000-20999 anew";
    const int first = 20000 + 80 * place;
    return "[" + std::to_string(first) + ", " + std::to_string(first + 79) + "]";
  }

  // Commits `files` (path → content) with VERSION `version`, pushes, syncs.
  void Commit(const std::string& version, const std::map<std::string, std::string>& files = {}) {
    ASSERT_TRUE(repo_.WriteFile("VERSION", version + "\n"));
    for (const auto& [path, content] : files) ASSERT_TRUE(repo_.WriteFile(path, content));
    ASSERT_FALSE(repo_.Commit("version " + version).empty());
    ASSERT_TRUE(repo_.Push());
    auto synced = daemon_.Post("/api/v1/repositories/app/sync", Writer());
    ASSERT_EQ(synced.status, 200) << synced.body;
  }

  // POST .../runs; the new run's id (-1 and a failure unless 201).
  int64_t StartRun(const std::string& flow, const std::string& body = "{}") {
    auto started = daemon_.Post("/api/v1/release-flows/" + flow + "/runs", Writer(), body);
    EXPECT_EQ(started.status, 201) << flow << ": " << started.body;
    auto json = started.Json();
    return started.status == 201 && json ? static_cast<int64_t>(NumberField(*json, "id")) : -1;
  }

  json::Value GetRun(int64_t id) {
    auto body = daemon_.Get("/api/v1/runs/" + std::to_string(id)).Json();
    return body ? *body : json::Value();
  }
  std::string Status(int64_t id) { return StringField(GetRun(id), "status"); }
  bool WaitForStatus(int64_t id, const std::string& status) {
    return WaitUntil([&] { return Status(id) == status; });
  }

  // app-web as GET /api/v1/services lists it (null when it is not listed).
  json::Value Web() {
    auto body = daemon_.Get("/api/v1/services").Json();
    if (body && body->Find("services")) {
      for (const auto& s : body->Find("services")->items()) {
        if (StringField(s, "name") == "app-web") return s;
      }
    }
    return json::Value();
  }

  // The VERSION app-web answers with ("" when it does not answer).
  std::string ServedVersion() {
    const int port = static_cast<int>(NumberField(Web(), "port"));
    if (port <= 0) return "";
    auto page = Http(port, "GET", "/");
    if (page.status != 200) return "";
    std::string version = page.body;
    while (!version.empty() && (version.back() == '\n' || version.back() == '\r')) version.pop_back();
    return version;
  }

  // The web service as the Template left it: version 1 answers, from the
  // same process running the same build, and no other server of the app runs.
  void ExpectVersionOneStillServes() {
    EXPECT_EQ(ServedVersion(), "1");
    const json::Value web = Web();
    EXPECT_EQ(StringField(web, "build"), StringField(first_web_, "build")) << json::SerializeCompact(web);
    EXPECT_EQ(NumberField(web, "pid"), NumberField(first_web_, "pid")) << "never restarted";
    EXPECT_EQ(StringField(web, "state"), "running");
    EXPECT_EQ(ProcessesIn(daemon_.state_dir(), "app/serve.py").size(), 1u) << "no second server was left";
  }

  // The run failed at `path`, a `kind` node whose error (and the run's)
  // holds each of `words`.
  void ExpectFailedAt(const json::Value& run, const std::string& path, const std::string& kind,
                      const std::vector<std::string>& words) {
    EXPECT_EQ(StringField(run, "status"), "failure") << Explain(daemon_, run);
    const json::Value node = Node(run, path);
    EXPECT_EQ(StringField(node, "kind"), kind) << Explain(daemon_, run);
    EXPECT_EQ(StringField(node, "status"), "failure") << Explain(daemon_, run);
    const std::string run_error = StringField(run, "error");
    EXPECT_TRUE(run_error.starts_with("node " + path + " (" + kind)) << run_error;
    for (const std::string& word : words) {
      EXPECT_TRUE(Contains(StringField(node, "error"), word)) << "no \"" << word << "\" in the error of "
                                                              << path << ": " << StringField(node, "error");
      EXPECT_TRUE(Contains(run_error, word)) << "no \"" << word << "\" in the run's error: " << run_error;
    }
  }

  void ExpectSkipped(const json::Value& run, const std::string& path) {
    const json::Value node = Node(run, path);
    EXPECT_EQ(StringField(node, "status"), "skipped") << Explain(daemon_, run);
    EXPECT_TRUE(StringField(node, "startedAt").empty()) << "never started: " << json::SerializeCompact(node);
  }

  std::string Logs(int64_t id) { return daemon_.Get("/api/v1/runs/" + std::to_string(id) + "/logs").body; }

  TempDir dir_{"release-cases"};
  FixtureRepo repo_{dir_.path(), "app"};
  DaemonUnderTest daemon_{dir_.path()};
  json::Value first_web_;  // app-web after the Template's run
};

// Node times are ISO 8601 UTC with milliseconds: as strings they sort by time.
bool Overlap(const json::Value& a, const json::Value& b) {
  return StringField(a, "startedAt") < StringField(b, "endedAt") &&
         StringField(b, "startedAt") < StringField(a, "endedAt");
}

// ---- running at the same time ----

TEST_F(ReleaseCasesTest, AParallelWorkflowRunsItsJobsAtTheSameTime) {
  const std::string meeting = dir_.Sub("meeting");
  fs::create_directories(meeting);
  const int64_t id = StartRun("pair", R"({"arguments": {"MEETING": ")" + meeting + R"("}})");
  const json::Value run = Concluded(daemon_, id, seconds(60));

  // Each job waited for the other's file: both succeed only side by side.
  ASSERT_EQ(StringField(run, "status"), "success") << Explain(daemon_, run);
  const json::Value left = Node(run, "0.0"), right = Node(run, "0.1");
  EXPECT_EQ(StringField(left, "ref"), "left");
  EXPECT_EQ(StringField(right, "ref"), "right");
  EXPECT_EQ(DataField(left, "jobId"), "left");
  EXPECT_EQ(DataField(right, "jobId"), "right");
  EXPECT_TRUE(Overlap(left, right)) << json::SerializeCompact(left) << "\n" << json::SerializeCompact(right);
  const std::string logs = Logs(id);
  EXPECT_TRUE(Contains(logs, "left met right")) << logs;
  EXPECT_TRUE(Contains(logs, "right met left")) << logs;
  EXPECT_TRUE(fs::exists(meeting + "/left") && fs::exists(meeting + "/right"));
}

TEST_F(ReleaseCasesTest, AllowLetsTwoRunsOfOneFlowRunAtOnce) {
  const std::string meeting = dir_.Sub("meeting");
  fs::create_directories(meeting);
  auto args = [&](const std::string& me, const std::string& other) {
    return R"({"arguments": {"ME": ")" + me + R"(", "OTHER": ")" + other + R"(", "MEETING": ")" + meeting +
           R"("}})";
  };
  const int64_t a = StartRun("meet", args("a", "b"));
  const int64_t b = StartRun("meet", args("b", "a"));

  // Each run's job waited for the other run's: both succeed only side by side.
  const json::Value first = Concluded(daemon_, a, seconds(60));
  const json::Value second = Concluded(daemon_, b, seconds(60));
  ASSERT_EQ(StringField(first, "status"), "success") << Explain(daemon_, first);
  ASSERT_EQ(StringField(second, "status"), "success") << Explain(daemon_, second);
  EXPECT_TRUE(Overlap(first, second)) << json::SerializeCompact(first) << "\n" << json::SerializeCompact(second);
  EXPECT_TRUE(Contains(Logs(a), "a met b")) << Logs(a);
  EXPECT_TRUE(Contains(Logs(b), "b met a")) << Logs(b);
}

TEST_F(ReleaseCasesTest, QueueHoldsTheSecondRunUntilTheFirstConcludes) {
  const int64_t first = StartRun("one-at-a-time");
  ASSERT_TRUE(WaitForStatus(first, "approval_wait")) << Status(first);
  const int64_t second = StartRun("one-at-a-time");
  ASSERT_GT(second, first);

  // While the first waits for its approval, the second waits its turn
  // without starting a node.
  EXPECT_EQ(Status(second), "queued");
  EXPECT_FALSE(WaitUntil([&] { return Status(second) != "queued"; }, seconds(1))) << Status(second);
  EXPECT_EQ(StringField(Node(GetRun(second), "0.0"), "status"), "pending");
  EXPECT_TRUE(StringField(GetRun(second), "startedAt").empty());

  ASSERT_EQ(daemon_.Post("/api/v1/runs/" + std::to_string(first) + "/approve", Writer()).status, 200);
  const json::Value done = Concluded(daemon_, first, seconds(20));
  ASSERT_EQ(StringField(done, "status"), "success") << Explain(daemon_, done);

  // Then the second runs, and only then.
  ASSERT_TRUE(WaitForStatus(second, "approval_wait")) << Status(second);
  EXPECT_GE(StringField(GetRun(second), "startedAt"), StringField(done, "endedAt"));
  ASSERT_EQ(daemon_.Post("/api/v1/runs/" + std::to_string(second) + "/approve", Writer()).status, 200);
  const json::Value next = Concluded(daemon_, second, seconds(20));
  EXPECT_EQ(StringField(next, "status"), "success") << Explain(daemon_, next);
}

// ---- bad input: the run fails at the node at fault, and nothing deploys ----

TEST_F(ReleaseCasesTest, AJobWhoseProgramIsNotExecutableFailsItsJobRunAndNothingDeploys) {
  ASSERT_NO_FATAL_FAILURE(Commit("2"));
  const int64_t id = StartRun("job-then-release", R"({"arguments": {"JOB": "unrunnable"}})");
  const json::Value run = Concluded(daemon_, id, seconds(60));

  ExpectFailedAt(run, "0.1", "JobRun", {"job \"unrunnable\"", "jobs/not-executable.sh", "permission denied"});
  EXPECT_EQ(StringField(Node(run, "0.0"), "status"), "success") << "the build went through";
  ExpectSkipped(run, "0.2");
  ExpectVersionOneStillServes();
}

TEST_F(ReleaseCasesTest, AJobPastItsDeadlineIsStoppedAndNothingDeploys) {
  ASSERT_NO_FATAL_FAILURE(Commit("2"));
  const int64_t id = StartRun("job-then-release", R"({"arguments": {"JOB": "hang"}})");
  const json::Value run = Concluded(daemon_, id, seconds(60));

  ExpectFailedAt(run, "0.1", "JobRun", {"job \"hang\"", "deadline exceeded", "activeDeadlineSeconds"});
  ExpectSkipped(run, "0.2");
  EXPECT_TRUE(Contains(Logs(id), "hanging")) << "the job did start: " << Logs(id);
  EXPECT_TRUE(ProcessesIn(daemon_.state_dir(), "sleep 600").empty()) << "the hung process was stopped";
  ExpectVersionOneStillServes();
}

// The template's startupProbe gives a new build 6 s (failureThreshold x
// periodSeconds) to turn healthy.
TEST_F(ReleaseCasesTest, ANewBuildThatNeverTurnsHealthyFailsTheReleaseAndTheOldBuildKeepsServing) {
  ASSERT_NO_FATAL_FAILURE(Commit("2", {{"UNHEALTHY", "answer /healthz with 503\n"}}));
  const int64_t id = StartRun("release");
  const json::Value run = Concluded(daemon_, id, seconds(120));

  ExpectFailedAt(run, "0.2", "Release",
                 {"app-web", "did not become healthy within 6s", "GET /healthz answered 503",
                  StringField(first_web_, "build") + " keeps serving"});
  EXPECT_EQ(StringField(Node(run, "0.0"), "status"), "success");
  EXPECT_EQ(StringField(Node(run, "0.1"), "status"), "success");
  ExpectVersionOneStillServes();
}

TEST_F(ReleaseCasesTest, ANewBuildThatDiesAtStartFailsTheReleaseAndTheOldBuildKeepsServing) {
  ASSERT_NO_FATAL_FAILURE(Commit("2", {{"DIES_AT_START", "exit before listening\n"}}));
  const int64_t id = StartRun("release");
  const json::Value run = Concluded(daemon_, id, seconds(60));

  ExpectFailedAt(run, "0.2", "Release",
                 {"app-web", "exited during startup", "DIES_AT_START is in this commit",
                  StringField(first_web_, "build") + " keeps serving"});
  ExpectVersionOneStillServes();
}

TEST_F(ReleaseCasesTest, ABackupThatCannotBeWrittenFailsTheRunBeforeItDeploys) {
  ASSERT_NO_FATAL_FAILURE(Commit("2"));
  // Root ignores permission bits, so the folder is made impossible instead:
  // `backups` is a regular file, and nothing can be created beneath it.
  const std::string backups = daemon_.state_dir() + "/backups";
  fs::remove_all(backups);
  ASSERT_TRUE(WriteTextFile(backups, "not a folder\n"));
  const int64_t id = StartRun("release");
  const json::Value run = Concluded(daemon_, id, seconds(60));

  ExpectFailedAt(run, "0.1", "AddonBackup", {backups + "/app-db", "Not a directory"});
  ExpectSkipped(run, "0.2");
  ExpectVersionOneStillServes();
  auto listed = daemon_.Get("/api/v1/backups").Json();
  ASSERT_TRUE(listed && listed->Find("backups") && listed->Find("backups")->items().size() == 1)
      << daemon_.Get("/api/v1/backups").body;
  const json::Value failed = listed->Find("backups")->items()[0];
  EXPECT_EQ(StringField(failed, "addon"), "app-db");
  EXPECT_EQ(StringField(failed, "status"), "failed");

  // With the folder back, the same release goes through.
  fs::remove(backups);
  const json::Value again = Concluded(daemon_, StartRun("release"), seconds(60));
  ASSERT_EQ(StringField(again, "status"), "success") << Explain(daemon_, again);
  EXPECT_EQ(ServedVersion(), "2");
}

TEST_F(ReleaseCasesTest, AFailedBuildFailsTheRunAndTheServiceKeepsItsBuild) {
  ASSERT_NO_FATAL_FAILURE(Commit("2", {{"BROKEN_BUILD", "fail the build\n"}}));
  const int64_t id = StartRun("release");
  const json::Value run = Concluded(daemon_, id, seconds(60));

  ExpectFailedAt(run, "0.0", "Build", {"app-builder", repo_.Head(), "exit code 3", "BROKEN_BUILD is in this commit"});
  ExpectSkipped(run, "0.1");
  ExpectSkipped(run, "0.2");
  ExpectVersionOneStillServes();

  // The fix ships.
  ASSERT_TRUE(repo_.Remove("BROKEN_BUILD"));
  ASSERT_NO_FATAL_FAILURE(Commit("3"));
  const json::Value fixed = Concluded(daemon_, StartRun("release"), seconds(60));
  ASSERT_EQ(StringField(fixed, "status"), "success") << Explain(daemon_, fixed);
  EXPECT_EQ(ServedVersion(), "3");
  EXPECT_EQ(StringField(Web(), "build"), "app-builder@" + repo_.Head());
}

// A flow naming a resource that neither exists nor is declared by one of its
// nodes fails its dry run: 422 naming the node's path, and no run starts.
TEST_F(ReleaseCasesTest, AFlowNamingAMissingServiceOrAddonIsRefusedNamingTheNode) {
  ASSERT_NO_FATAL_FAILURE(Commit("2"));
  const std::pair<const char*, const char*> cases[] = {
      {"typo-service", "spec.spec.steps[1].spec.target.id: service \"app-wbe\" does not exist; declare it in a "
                       "Template"},
      {"typo-addon", "spec.spec.steps[1].spec.addonId: addon \"app-bd\" does not exist; declare it in a Template"}};
  for (const auto& [flow, problem] : cases) {
    auto started = daemon_.Post(std::string("/api/v1/release-flows/") + flow + "/runs", Writer(), "{}");
    EXPECT_EQ(started.status, 422) << started.body;
    auto body = started.Json();
    ASSERT_TRUE(body && body->Find("error")) << started.body;
    EXPECT_NE(StringField(*body->Find("error"), "message").find(problem), std::string::npos) << started.body;
  }
  auto runs = daemon_.Get("/api/v1/runs?flow=typo-service").Json();
  ASSERT_TRUE(runs && runs->Find("runs"));
  EXPECT_TRUE(runs->Find("runs")->items().empty()) << json::SerializeCompact(*runs);
  ExpectVersionOneStillServes();
  auto backups = daemon_.Get("/api/v1/backups").Json();
  ASSERT_TRUE(backups && backups->Find("backups"));
  EXPECT_TRUE(backups->Find("backups")->items().empty()) << "nothing was backed up";
}

}  // namespace
}  // namespace gitopsd::test
