// More preview environments end to end, with the example shop on a real
// daemon and a real bare repository: pull requests found by polling alone,
// the cap on live previews, expiry, drafts, a kill -9 in the middle of a
// teardown, a reopened pull request (also while its old preview is still
// being torn down), GitLab merge requests, and gitopsctl's previews and
// teardown commands.
//
// Each case starts its own daemon on the shop as it is in examples/, with
// the preview template edited where the case needs it.
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <ctime>
#include <filesystem>

#include "daemon/triggers/forge.h"
#include "sync/sqlite.h"
#include "tests/daemon/run_waits.h"
#include "tests/daemon/write_fixture.h"

namespace gitopsd::test {
namespace {

namespace fs = std::filesystem;
using std::chrono::seconds;

constexpr const char* kSecret = "previews-more-secret";
constexpr const char* kTemplatePath = ".gitops/previews/pull-requests.json";
constexpr const char* kGitHubUrl = "https://github.com/acme/shop";
constexpr const char* kGitLabUrl = "https://gitlab.example.com/acme/shop";

enum class Forge { kNone, kGitHub, kGitLab };

class PreviewsMoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const fs::path example = fs::path(GITOPSD_EXAMPLES_DIR) / "shop";
    fs::copy(example, repo_.work_path(), fs::copy_options::recursive | fs::copy_options::overwrite_existing);
    ASSERT_TRUE(repo_.MakeExecutable("bin/shop"));
    ASSERT_TRUE(WriteTextFile(dir_.Sub("tokens.json"),
                              "[{\"name\": \"ci\", \"role\": \"write\", \"sha256\": \"" +
                                  daemon::ToHex(daemon::HashToken(kWriteToken)) + "\"}]\n"));
    ASSERT_TRUE(WriteTextFile(dir_.Sub("hook.secret"), std::string(kSecret) + "\n"));
    daemon_.SetEnv("GITOPSD_RUNNER_POLL", "100ms");
    daemon_.SetEnv("GITOPSD_PREVIEW_TICK", "200ms");
  }

  void TearDown() override {
    // Services and jobs outlive the daemon by design: end every process
    // running in this test's state folder, by pid, then the daemon.
    for (pid_t pid : ProcessesIn(daemon_.state_dir())) ::kill(pid, SIGKILL);
    daemon_.Stop();
  }

  // Replaces `from` (which must be there once) in the preview template.
  void EditTemplate(const std::string& from, const std::string& to) {
    const std::string path = repo_.work_path() + "/" + kTemplatePath;
    std::string text = ReadTextFile(path);
    ASSERT_NE(text.find(from), std::string::npos) << from << " in " << path;
    ASSERT_EQ(text.find(from), text.rfind(from)) << from << " more than once in " << path;
    text.replace(text.find(from), from.size(), to);
    ASSERT_TRUE(repo_.WriteFile(kTemplatePath, text));
  }

  // Commits the shop as edited, starts the daemon on it and waits for
  // production (the shop Template's autorun) to serve.
  void Start(Forge forge) {
    ASSERT_FALSE(repo_.Commit("the shop").empty());
    ASSERT_TRUE(repo_.Push());
    main_ = repo_.Head();
    forge_ = forge;
    ASSERT_TRUE(daemon_.StartWithConfig(Config()));
    ASSERT_TRUE(daemon_.WaitReady()) << daemon_.Output();
    ASSERT_TRUE(WaitUntil([&] { return !ServiceNamed("shop-web").is_null(); }, seconds(60))) << daemon_.Output();
  }

  std::string Config() const {
    std::string webhook;
    if (forge_ == Forge::kGitHub) {
      webhook = ", \"webhook\": {\"type\": \"github\", \"secretFile\": \"hook.secret\", \"forgeUrl\": \"" +
                std::string(kGitHubUrl) + "\"}";
    } else if (forge_ == Forge::kGitLab) {
      webhook = ", \"webhook\": {\"type\": \"gitlab\", \"secretFile\": \"hook.secret\", \"forgeUrl\": \"" +
                std::string(kGitLabUrl) + "\"}";
    }
    return "{\"stateDir\": \"@STATE@\", \"listen\": \"127.0.0.1:@PORT@\", \"apiTokensFile\": \"tokens.json\", "
           "\"repositories\": [{\"name\": \"shop\", \"url\": \"" + repo_.file_url() +
           "\", \"pollInterval\": \"1h\", \"sync\": {\"writeBack\": false}" + webhook +
           "}], \"runtime\": {\"portRange\": " + PortRange() +
           (preview_url_.empty() ? "" : ", \"previewUrl\": \"" + preview_url_ + "\"") +
           "}, \"log\": {\"level\": \"debug\"}}";
  }

  // 23800-23999, 20 ports per test process: ctest runs every case in a
  // process of its own, in parallel, and two daemons handing out one range
  // would race for the same free port.
  static std::string PortRange() {
    const int first = 23800 + static_cast<int>(getpid() % 10) * 20;
    return "[" + std::to_string(first) + ", " + std::to_string(first + 19) + "]";
  }

  // The template's teardownSpec waits at an approval (instead of sending a
  // message): a teardown stays in progress until the test approves it.
  void TeardownWaitsForApproval() {
    const std::string path = repo_.work_path() + "/" + kTemplatePath;
    auto body = json::Parse(ReadTextFile(path));
    ASSERT_TRUE(body) << path;
    json::Value* teardown = body->Find("teardownSpec");
    json::Value* workflow = teardown ? teardown->Find("spec") : nullptr;
    json::Value* steps = workflow && workflow->Find("spec") ? workflow->Find("spec")->Find("steps") : nullptr;
    ASSERT_TRUE(steps && steps->is_array()) << "teardownSpec.spec.spec.steps in " << path;
    auto gate = json::Parse(R"({"kind": "Approval", "ref": "gate", "spec": {"amount": 1, "message": "tear ${args.name} down"}})");
    ASSERT_TRUE(gate);
    steps->items() = {*gate};
    ASSERT_TRUE(repo_.WriteFile(kTemplatePath, json::Serialize(*body)));
  }

  // Waits until preview `name` is being torn down and its teardown run waits
  // for approval; the run's id (0 when it does not get there).
  int64_t TeardownAtItsApproval(const std::string& name) {
    if (!WaitUntil([&] { return NumberField(Preview(name), "teardownRun") > 0; }, seconds(20))) {
      ADD_FAILURE() << json::SerializeCompact(Preview(name)) << daemon_.Output();
      return 0;
    }
    const double id = NumberField(Preview(name), "teardownRun");
    if (!WaitUntil([&] { return StringField(Run(id), "status") == "approval_wait"; }, seconds(20))) {
      ADD_FAILURE() << json::SerializeCompact(Run(id));
      return 0;
    }
    return static_cast<int64_t>(id);
  }

  // A commit of VERSION on `branch` (from main), pushed as the branch and
  // as the head ref of pull request `number` (`prefix` refs/pull/ on GitHub,
  // refs/merge-requests/ on GitLab); returns the commit.
  std::string PushPullRequest(int number, const std::string& branch, const std::string& version,
                              const std::string& prefix = "refs/pull/") {
    EXPECT_TRUE(repo_.Git({"checkout", "-q", "-B", branch, main_}).ok());
    EXPECT_TRUE(repo_.WriteFile("VERSION", version + "\n"));
    const std::string sha = repo_.Commit("version " + version + " [skip ci]");
    EXPECT_FALSE(sha.empty());
    EXPECT_TRUE(repo_.Push(branch));
    EXPECT_TRUE(repo_.Git({"push", "-q", "-f", "origin", "HEAD:" + prefix + std::to_string(number) + "/head"}).ok());
    EXPECT_TRUE(repo_.Git({"checkout", "-q", main_}).ok());
    return sha;
  }

  HttpReply GitHubHook(const std::string& action, int number, const std::string& branch, const std::string& sha,
                       const std::string& delivery, bool draft = false) {
    const std::string body = R"({"action": ")" + action + R"(", "number": )" + std::to_string(number) + R"(,
      "pull_request": {"number": )" + std::to_string(number) + R"(, "state": ")" +
                             (action == "closed" ? "closed" : "open") + R"(",
        "draft": )" + (draft ? "true" : "false") + R"(, "merged": false,
        "head": {"ref": ")" + branch + R"(", "sha": ")" + sha + R"(",
                 "repo": {"full_name": "acme/shop", "clone_url": "https://github.com/acme/shop.git"}},
        "base": {"ref": "main", "sha": ")" + main_ + R"(",
                 "repo": {"full_name": "acme/shop", "clone_url": "https://github.com/acme/shop.git"}}},
      "repository": {"full_name": "acme/shop", "html_url": "https://github.com/acme/shop",
                     "clone_url": "https://github.com/acme/shop.git", "ssh_url": "git@github.com:acme/shop.git"}})";
    return daemon_.Post("/hooks/github",
                        {{"Content-Type", "application/json"},
                         {"X-GitHub-Event", "pull_request"},
                         {"X-GitHub-Delivery", delivery},
                         {"X-Hub-Signature-256", "sha256=" + triggers::HmacSha256Hex(kSecret, body)}},
                        body);
  }

  HttpReply GitLabHook(const std::string& action, int iid, const std::string& branch, const std::string& sha,
                       const std::string& delivery, const std::string& token = kSecret) {
    const std::string body = R"({"object_kind": "merge_request", "event_type": "merge_request",
      "project": {"id": 41, "web_url": "https://gitlab.example.com/acme/shop",
                  "git_http_url": "https://gitlab.example.com/acme/shop.git",
                  "git_ssh_url": "git@gitlab.example.com:acme/shop.git"},
      "object_attributes": {"iid": )" + std::to_string(iid) + R"(, "action": ")" + action + R"(",
        "state": ")" + (action == "close" ? "closed" : "opened") + R"(", "draft": false,
        "source_branch": ")" + branch + R"(", "target_branch": "main",
        "source_project_id": 41, "target_project_id": 41, "last_commit": {"id": ")" + sha + R"("}}})";
    return daemon_.Post("/hooks/gitlab",
                        {{"Content-Type", "application/json"},
                         {"X-Gitlab-Event", "Merge Request Hook"},
                         {"X-Gitlab-Event-UUID", delivery},
                         {"X-Gitlab-Token", token}},
                        body);
  }

  // A look at the repository's heads, as a sync asks for.
  void Look() { ASSERT_EQ(daemon_.Post("/api/v1/repositories/shop/sync", Writer()).status, 200); }

  json::Value ServiceNamed(const std::string& name) {
    auto body = daemon_.Get("/api/v1/services").Json();
    if (body && body->Find("services")) {
      for (const json::Value& s : body->Find("services")->items()) {
        if (StringField(s, "name") == name && StringField(s, "state") == "running") return s;
      }
    }
    return json::Value();
  }

  json::Value Preview(const std::string& name) {
    auto reply = daemon_.Get("/api/v1/previews/" + name);
    auto body = reply.status == 200 ? reply.Json() : std::nullopt;
    return body ? *body : json::Value();
  }
  std::string Status(const std::string& name) { return StringField(Preview(name), "status"); }

  size_t LivePreviews() {
    auto body = daemon_.Get("/api/v1/previews").Json();
    return body && body->Find("previews") ? body->Find("previews")->items().size() : 0;
  }

  ::testing::AssertionResult WaitForStatus(const std::string& name, const std::string& status,
                                           seconds timeout = seconds(30)) {
    if (WaitUntil([&] { return Status(name) == status; }, timeout)) return ::testing::AssertionSuccess();
    return ::testing::AssertionFailure() << "preview " << name << " is not " << status << ": "
                                         << json::SerializeCompact(Preview(name)) << "\n"
                                         << daemon_.Output();
  }

  ::testing::AssertionResult LogSays(const std::string& text, seconds timeout = seconds(20)) {
    if (WaitUntil([&] { return Contains(daemon_.Output(), text); }, timeout)) return ::testing::AssertionSuccess();
    return ::testing::AssertionFailure() << "the log never says \"" << text << "\":\n" << daemon_.Output();
  }

  std::string ServedVersion(const std::string& url) {
    if (url.empty()) return "";
    const int port = std::stoi(url.substr(url.rfind(':') + 1));
    auto page = Http(port, "GET", "/").Json();
    return page ? StringField(*page, "version") : "";
  }

  json::Value Run(double id) {
    auto body = daemon_.Get("/api/v1/runs/" + std::to_string(static_cast<int64_t>(id))).Json();
    return body ? *body : json::Value();
  }

  // Nothing of preview `name` is left: no service or process (production's
  // web server is the only one left), no database, no state folders;
  // production still serves.
  void ExpectNothingLeftOf(const std::string& name, pid_t web_pid = 0) {
    EXPECT_TRUE(ServiceNamed("web-" + name).is_null());
    if (web_pid > 0) {
      EXPECT_TRUE(WaitUntil([&] { return !Alive(web_pid); }, seconds(10)))
          << "the preview's web process " << web_pid << " is gone";
    }
    const auto production = static_cast<pid_t>(NumberField(ServiceNamed("shop-web"), "pid"));
    EXPECT_TRUE(WaitUntil([&] { return ProcessesIn(daemon_.state_dir(), "bin/shop serve") ==
                                       std::vector<pid_t>{production}; },
                          seconds(10)))
        << "only production's web server runs";
    auto gone = [&](const std::string& path) {
      return WaitUntil([&] { return !fs::exists(daemon_.state_dir() + path); }, seconds(10));
    };
    EXPECT_TRUE(gone("/addons/db-" + name)) << "its database is gone";
    EXPECT_TRUE(gone("/services/web-" + name));
    EXPECT_TRUE(gone("/jobs/migrate-" + name));
    auto addons = daemon_.Get("/api/v1/addons");
    EXPECT_FALSE(Contains(addons.body, "db-" + name)) << addons.body;
    EXPECT_TRUE(Contains(addons.body, "shop-db")) << "production's database stays";
    EXPECT_FALSE(ServiceNamed("shop-web").is_null()) << "production stays";
  }

  // Running, not a zombie.
  static bool Alive(pid_t pid) {
    const std::string stat = ReadTextFile("/proc/" + std::to_string(pid) + "/stat");
    const size_t close = stat.rfind(')');
    return close != std::string::npos && close + 2 < stat.size() && stat[close + 2] != 'Z';
  }

  pid_t WebPid(const std::string& name) {
    return static_cast<pid_t>(NumberField(ServiceNamed("web-" + name), "pid"));
  }

  TempDir dir_{"previews-more"};
  FixtureRepo repo_{dir_.path(), "shop"};
  DaemonUnderTest daemon_{dir_.path()};
  std::string main_;
  Forge forge_ = Forge::kNone;
  std::string preview_url_;  // runtime.previewUrl ("" = the default)
};

TEST_F(PreviewsMoreTest, APullRequestFoundByPollingGetsAPreviewWithoutAnyWebhook) {
  Start(Forge::kNone);
  if (HasFatalFailure()) return;
  const std::string sha = PushPullRequest(5, "feature/polled", "5");
  Look();
  ASSERT_TRUE(WaitForStatus("pr-5", "ready"));
  const json::Value preview = Preview("pr-5");
  EXPECT_EQ(StringField(preview, "pullRequest"), "5");
  EXPECT_EQ(StringField(preview, "sha"), sha);
  EXPECT_EQ(StringField(preview, "branch"), "") << "no webhook told the source branch";
  EXPECT_EQ(ServedVersion(StringField(preview, "url")), "5") << "the preview serves the PR's head";
  EXPECT_TRUE(fs::exists(daemon_.state_dir() + "/addons/db-pr-5"));

  // Later looks see pull request 5 at the same head: not set up again. (A
  // second pull request shows when a look has been done.)
  const double setup = NumberField(preview, "setupRun");
  Look();
  PushPullRequest(15, "feature/later", "15");
  Look();
  ASSERT_TRUE(WaitForStatus("pr-15", "ready"));
  EXPECT_EQ(NumberField(Preview("pr-5"), "setupRun"), setup) << "one setup run for one head";
  EXPECT_EQ(StringField(Preview("pr-5"), "status"), "ready");
  EXPECT_EQ(LivePreviews(), 2u);
}

TEST_F(PreviewsMoreTest, APreviewsUrlFollowsTheConfiguredTemplate) {
  preview_url_ = "http://{name}.preview.test:{port}/?service={service}";
  Start(Forge::kNone);
  if (HasFatalFailure()) return;
  PushPullRequest(12, "feature/url", "12");
  Look();
  ASSERT_TRUE(WaitForStatus("pr-12", "ready"));
  const json::Value web = ServiceNamed("web-pr-12");
  ASSERT_FALSE(web.is_null());
  EXPECT_EQ(StringField(Preview("pr-12"), "url"),
            "http://pr-12.preview.test:" + std::to_string(static_cast<int>(NumberField(web, "port"))) +
                "/?service=web-pr-12");
}

TEST_F(PreviewsMoreTest, MaxPreviewsRefusesTheOneBeyondTheCap) {
  EditTemplate(R"("maxPreviews": 10)", R"("maxPreviews": 1)");
  Start(Forge::kNone);
  if (HasFatalFailure()) return;
  PushPullRequest(1, "feature/one", "11");
  PushPullRequest(2, "feature/two", "12");
  Look();
  ASSERT_TRUE(LogSays("already has 1 live previews (options.maxPreviews 1)"));
  ASSERT_TRUE(WaitForStatus("pr-1", "ready"));
  EXPECT_EQ(daemon_.Get("/api/v1/previews/pr-2").status, 404) << "no second preview";
  EXPECT_EQ(LivePreviews(), 1u);
  EXPECT_TRUE(ServiceNamed("web-pr-2").is_null());
  EXPECT_FALSE(fs::exists(daemon_.state_dir() + "/addons/db-pr-2"));
  EXPECT_TRUE(Contains(daemon_.Output(), "pull request #2")) << daemon_.Output();
}

TEST_F(PreviewsMoreTest, OverTheCapWithQueueAPreviewWaitsForAFreeSlot) {
  EditTemplate(R"("maxPreviews": 10)", R"("maxPreviews": 1, "overCap": "queue")");
  Start(Forge::kNone);
  if (HasFatalFailure()) return;
  PushPullRequest(1, "feature/one", "11");
  PushPullRequest(2, "feature/two", "12");
  Look();
  ASSERT_TRUE(WaitForStatus("pr-1", "ready"));
  ASSERT_TRUE(LogSays("it waits for a free slot"));
  EXPECT_EQ(daemon_.Get("/api/v1/previews/pr-2").status, 404) << "not yet";
  // pr-1 goes: pr-2's event, still pending, gets its preview.
  ASSERT_EQ(daemon_.Delete("/api/v1/previews/pr-1", Writer()).status, 202);
  ASSERT_TRUE(WaitForStatus("pr-2", "ready"));
  EXPECT_EQ(ServedVersion(StringField(Preview("pr-2"), "url")), "12");
  EXPECT_EQ(LivePreviews(), 1u);
}

TEST_F(PreviewsMoreTest, APreviewPastItsLifetimeIsTornDownByItself) {
  EditTemplate(R"("previewLifetime": 2880)", R"("previewLifetime": 1)");
  daemon_.SetEnv("GITOPSD_PREVIEW_MINUTE", "1s");  // previewLifetime 1 is a second
  Start(Forge::kNone);
  if (HasFatalFailure()) return;
  PushPullRequest(3, "feature/brief", "3");
  Look();
  ASSERT_TRUE(WaitForStatus("pr-3", "gone"));
  const json::Value preview = Preview("pr-3");
  EXPECT_TRUE(Contains(StringField(preview, "error"), "expired")) << json::SerializeCompact(preview);
  EXPECT_EQ(StringField(Run(NumberField(preview, "setupRun")), "status"), "success") << "it was up first";
  EXPECT_FALSE(StringField(preview, "url").empty()) << "it served first";
  EXPECT_EQ(LivePreviews(), 0u);
  ExpectNothingLeftOf("pr-3");
}

// POST /api/v1/previews/{name}/reset gives a preview a new lifetime from now.
TEST_F(PreviewsMoreTest, ResettingAPreviewsExpiryEndsItThatLongFromNow) {
  daemon_.SetEnv("GITOPSD_PREVIEW_MINUTE", "1s");  // the template's 2880 minutes are 48 minutes
  Start(Forge::kNone);
  if (HasFatalFailure()) return;
  PushPullRequest(4, "feature/reset", "4");
  Look();
  ASSERT_TRUE(WaitForStatus("pr-4", "ready"));
  EXPECT_EQ(daemon_.Post("/api/v1/previews/pr-4/reset", {}, R"({"lifetime": 2})").status, 401) << "a write token";
  EXPECT_EQ(daemon_.Post("/api/v1/previews/pr-4/reset", Writer(), R"({"lifetime": "soon"})").status, 400);
  EXPECT_EQ(daemon_.Post("/api/v1/previews/pr-99/reset", Writer(), R"({"lifetime": 2})").status, 404);
  auto reset = daemon_.Post("/api/v1/previews/pr-4/reset", Writer(), R"({"lifetime": 3})");
  ASSERT_EQ(reset.status, 200) << reset.body;
  EXPECT_EQ(StringField(*reset.Json(), "expiryTime"), StringField(Preview("pr-4"), "expiresAt"));
  EXPECT_EQ(Status("pr-4"), "ready") << "not before its new lifetime";
  ASSERT_TRUE(WaitForStatus("pr-4", "gone", seconds(20)));
  EXPECT_TRUE(Contains(StringField(Preview("pr-4"), "error"), "expired"));
}

TEST_F(PreviewsMoreTest, ADraftPullRequestGetsAPreviewOnlyOnceReadyForReview) {
  Start(Forge::kGitHub);
  if (HasFatalFailure()) return;
  const std::string sha = PushPullRequest(4, "feature/draft", "4");
  ASSERT_EQ(GitHubHook("opened", 4, "feature/draft", sha, "draft-1", /*draft=*/true).status, 202);
  ASSERT_TRUE(LogSays("draft pull request, and ignoreDrafts is set"));
  EXPECT_EQ(daemon_.Get("/api/v1/previews/pr-4").status, 404) << "a draft gets no preview";

  // Ready for review (the same head): now it gets one.
  ASSERT_EQ(GitHubHook("ready_for_review", 4, "feature/draft", sha, "draft-2").status, 202);
  ASSERT_TRUE(WaitForStatus("pr-4", "ready"));
  EXPECT_EQ(StringField(Preview("pr-4"), "sha"), sha);
  EXPECT_EQ(StringField(Preview("pr-4"), "branch"), "feature/draft");
  EXPECT_EQ(ServedVersion(StringField(Preview("pr-4"), "url")), "4");
}

TEST_F(PreviewsMoreTest, ATeardownCutOffByKillNineFinishesAfterTheRestart) {
  // The teardown waits at an approval: the daemon is killed there.
  TeardownWaitsForApproval();
  Start(Forge::kGitHub);
  if (HasFatalFailure()) return;
  const std::string sha = PushPullRequest(6, "feature/crash", "6");
  ASSERT_EQ(GitHubHook("opened", 6, "feature/crash", sha, "crash-1").status, 202);
  ASSERT_TRUE(WaitForStatus("pr-6", "ready"));
  const pid_t web = WebPid("pr-6");
  ASSERT_GT(web, 0);

  ASSERT_EQ(GitHubHook("closed", 6, "feature/crash", sha, "crash-2").status, 202);
  const int64_t teardown = TeardownAtItsApproval("pr-6");
  ASSERT_GT(teardown, 0);
  ASSERT_EQ(::kill(daemon_.process().pid(), SIGKILL), 0);
  ASSERT_TRUE(WaitForExit(daemon_.process(), seconds(5)).has_value()) << "the daemon did not die";
  EXPECT_TRUE(Alive(web)) << "the preview's service outlives the daemon";

  ASSERT_TRUE(daemon_.StartWithConfig(Config()));
  ASSERT_TRUE(daemon_.WaitReady()) << daemon_.Output();
  EXPECT_EQ(Status("pr-6"), "tearing_down") << "still waiting for its teardown run";
  EXPECT_EQ(NumberField(Preview("pr-6"), "teardownRun"), teardown) << "the same teardown run, not a second";
  ASSERT_EQ(daemon_.Post("/api/v1/runs/" + std::to_string(teardown) + "/approve", Writer()).status, 200);
  ASSERT_TRUE(WaitForStatus("pr-6", "gone", seconds(30)));
  EXPECT_EQ(StringField(Run(teardown), "status"), "success");
  ExpectNothingLeftOf("pr-6", web);
  EXPECT_EQ(LivePreviews(), 0u);
}

TEST_F(PreviewsMoreTest, ADaemonKilledBeforeItStartedTheTeardownRunStartsItAfterTheRestart) {
  TeardownWaitsForApproval();
  daemon_.SetEnv("GITOPSD_FAULT", "preview-before-teardown-run");
  Start(Forge::kGitHub);
  if (HasFatalFailure()) return;
  const std::string sha = PushPullRequest(10, "feature/window", "10");
  ASSERT_EQ(GitHubHook("opened", 10, "feature/window", sha, "window-1").status, 202);
  ASSERT_TRUE(WaitForStatus("pr-10", "ready"));
  const pid_t web = WebPid("pr-10");
  (void)GitHubHook("closed", 10, "feature/window", sha, "window-2");  // the daemon dies on it
  ASSERT_TRUE(WaitForExit(daemon_.process(), seconds(10)).has_value()) << "the fault point did not fire";

  daemon_.SetEnv("GITOPSD_FAULT", "");
  ASSERT_TRUE(daemon_.StartWithConfig(Config()));
  ASSERT_TRUE(daemon_.WaitReady()) << daemon_.Output();
  // The teardown run it had not started yet runs now: the teardownSpec is not skipped.
  const int64_t teardown = TeardownAtItsApproval("pr-10");
  ASSERT_GT(teardown, 0) << daemon_.Output();
  ASSERT_EQ(daemon_.Post("/api/v1/runs/" + std::to_string(teardown) + "/approve", Writer()).status, 200);
  ASSERT_TRUE(WaitForStatus("pr-10", "gone", seconds(30)));
  ExpectNothingLeftOf("pr-10", web);
}

TEST_F(PreviewsMoreTest, ThePreviewWebhookCreatesANamedPreviewAndReRunsItByName) {
  Start(Forge::kNone);
  if (HasFatalFailure()) return;
  const std::string sha = PushPullRequest(11, "feature/hooked", "11");
  auto created = daemon_.Post("/api/v1/webhooks/preview-templates/pull-requests", Writer());
  ASSERT_EQ(created.status, 201) << created.body;
  const std::string token = StringField(*created.Json(), "token");
  ASSERT_FALSE(token.empty());

  auto hooked = daemon_.Get("/hooks/previews/" + token + "?name=demo&app.branch=feature%2Fhooked&app.sha=" + sha);
  ASSERT_EQ(hooked.status, 201) << hooked.body;
  auto answer = hooked.Json();
  ASSERT_TRUE(answer && answer->Find("preview"));
  EXPECT_EQ(StringField(*answer->Find("preview"), "name"), "demo") << "the name is in the answer";
  EXPECT_TRUE(answer->Find("created")->as_bool());
  ASSERT_TRUE(WaitForStatus("demo", "ready"));
  EXPECT_EQ(ServedVersion(StringField(Preview("demo"), "url")), "11");

  // The same name again re-runs that preview.
  auto again = daemon_.Post("/hooks/previews/" + token + "?name=demo&app.branch=feature%2Fhooked", {}, "");
  ASSERT_EQ(again.status, 201) << again.body;
  EXPECT_FALSE(again.Json()->Find("created")->as_bool());
  EXPECT_EQ(LivePreviews(), 1u);
  // A forged commit is refused; an unknown token too.
  EXPECT_EQ(daemon_.Get("/hooks/previews/" + token + "?app.sha=" + std::string(40, 'c')).status, 422);
  EXPECT_EQ(daemon_.Get("/hooks/previews/" + std::string(64, '1')).status, 404);
}

// options.schedule: outside the active hours a pull request's event waits
// (no preview), the preview webhook still works; once the hours include now,
// the waiting event gets its preview at the next look.
TEST_F(PreviewsMoreTest, OutsideItsActiveHoursAPullRequestWaitsAndGetsItsPreviewOnceTheyOpen) {
  daemon_.SetEnv("TZ", "UTC");
  const std::time_t now = std::time(nullptr);
  std::tm utc{};
  gmtime_r(&now, &utc);
  static constexpr const char* kDays[] = {"sun", "mon", "tue", "wed", "thu", "fri", "sat"};  // tm_wday order
  const std::string closed_hours =
      R"("schedule": {")" + std::string(kDays[(utc.tm_wday + 3) % 7]) + R"(": {"startTime": 0, "endTime": 2400}})";
  EditTemplate(R"("maxPreviews": 10)", R"("maxPreviews": 10, )" + closed_hours);
  Start(Forge::kNone);
  if (HasFatalFailure()) return;
  const std::string sha = PushPullRequest(7, "feature/after-hours", "7");
  Look();
  ASSERT_TRUE(LogSays("outside the active hours of PreviewTemplate \"pull-requests\""));
  Look();
  EXPECT_EQ(daemon_.Get("/api/v1/previews/pr-7").status, 404) << "no preview outside the active hours";
  EXPECT_EQ(LivePreviews(), 0u);

  // The preview webhook is not bound by the hours.
  auto created = daemon_.Post("/api/v1/webhooks/preview-templates/pull-requests", Writer());
  ASSERT_EQ(created.status, 201) << created.body;
  const std::string token = StringField(*created.Json(), "token");
  ASSERT_EQ(daemon_.Get("/hooks/previews/" + token + "?name=by-hand&app.branch=feature%2Fafter-hours&app.sha=" + sha)
                .status,
            201);
  ASSERT_TRUE(WaitForStatus("by-hand", "ready"));

  // The template now opens today as well: the event that waited acts.
  ASSERT_TRUE(repo_.Git({"checkout", "-q", "-B", "main", main_}).ok());
  EditTemplate(closed_hours, R"("schedule": {")" + std::string(kDays[utc.tm_wday]) +
                                 R"(": {"startTime": 0, "endTime": 2400}})");
  ASSERT_FALSE(repo_.Commit("previews every day [skip ci]").empty());
  ASSERT_TRUE(repo_.Push());
  Look();
  ASSERT_TRUE(WaitForStatus("pr-7", "ready"));
  EXPECT_EQ(StringField(Preview("pr-7"), "sha"), sha);
  EXPECT_EQ(ServedVersion(StringField(Preview("pr-7"), "url")), "7");
  EXPECT_EQ(LivePreviews(), 2u);
}

TEST_F(PreviewsMoreTest, WhatAPreviewRecordedGoneLeftBehindIsSweptAtTheNextStart) {
  Start(Forge::kNone);
  if (HasFatalFailure()) return;
  PushPullRequest(13, "feature/orphan", "13");
  Look();
  ASSERT_TRUE(WaitForStatus("pr-13", "ready"));
  const pid_t web = WebPid("pr-13");
  ASSERT_GT(web, 0);
  // As if a removal had failed after the preview was recorded gone: the
  // record says gone, its process, database and folders are all still there.
  ASSERT_EQ(::kill(daemon_.process().pid(), SIGKILL), 0);
  ASSERT_TRUE(WaitForExit(daemon_.process(), seconds(5)).has_value());
  {
    auto db = sqlite::Database::Open(daemon_.state_dir() + "/state.db", false);
    ASSERT_TRUE(db) << db.error().message;
    ASSERT_TRUE(db->Exec("UPDATE previews SET status = 'gone' WHERE name = 'pr-13'"));
  }
  ASSERT_TRUE(Alive(web));
  ASSERT_TRUE(fs::exists(daemon_.state_dir() + "/addons/db-pr-13"));

  ASSERT_TRUE(daemon_.StartWithConfig(Config()));
  ASSERT_TRUE(daemon_.WaitReady()) << daemon_.Output();
  EXPECT_TRUE(Contains(daemon_.Output(), "preview pr-13 is gone but")) << daemon_.Output();
  ExpectNothingLeftOf("pr-13", web);
  EXPECT_FALSE(ServiceNamed("shop-web").is_null()) << "production is not a preview's";
}

TEST_F(PreviewsMoreTest, AReopenedPullRequestGetsANewPreview) {
  Start(Forge::kGitHub);
  if (HasFatalFailure()) return;
  const std::string sha = PushPullRequest(7, "feature/again", "7");
  ASSERT_EQ(GitHubHook("opened", 7, "feature/again", sha, "again-1").status, 202);
  ASSERT_TRUE(WaitForStatus("pr-7", "ready"));
  const json::Value first = Preview("pr-7");
  const pid_t first_web = WebPid("pr-7");
  ASSERT_EQ(GitHubHook("closed", 7, "feature/again", sha, "again-2").status, 202);
  ASSERT_TRUE(WaitForStatus("pr-7", "gone"));
  ExpectNothingLeftOf("pr-7", first_web);

  ASSERT_EQ(GitHubHook("reopened", 7, "feature/again", sha, "again-3").status, 202);
  ASSERT_TRUE(WaitForStatus("pr-7", "ready"));
  const json::Value second = Preview("pr-7");
  EXPECT_GT(NumberField(second, "setupRun"), NumberField(first, "setupRun")) << "set up anew";
  EXPECT_NE(WebPid("pr-7"), first_web);
  EXPECT_EQ(ServedVersion(StringField(second, "url")), "7");
  EXPECT_TRUE(fs::exists(daemon_.state_dir() + "/addons/db-pr-7"));
  EXPECT_EQ(LivePreviews(), 1u);
}

TEST_F(PreviewsMoreTest, APullRequestReopenedDuringItsTeardownGetsANewPreviewOnceTheOldOneIsGone) {
  TeardownWaitsForApproval();
  Start(Forge::kGitHub);
  if (HasFatalFailure()) return;
  const std::string sha = PushPullRequest(10, "feature/quick", "10");
  ASSERT_EQ(GitHubHook("opened", 10, "feature/quick", sha, "quick-1").status, 202);
  ASSERT_TRUE(WaitForStatus("pr-10", "ready"));
  const json::Value first = Preview("pr-10");
  ASSERT_EQ(GitHubHook("closed", 10, "feature/quick", sha, "quick-2").status, 202);
  const int64_t teardown = TeardownAtItsApproval("pr-10");
  ASSERT_GT(teardown, 0);

  // Reopened while the old preview is still being torn down.
  ASSERT_EQ(GitHubHook("reopened", 10, "feature/quick", sha, "quick-3").status, 202);
  ASSERT_TRUE(LogSays("pull request #10 at " + sha.substr(0, 12)));
  EXPECT_EQ(Status("pr-10"), "tearing_down");
  ASSERT_EQ(daemon_.Post("/api/v1/runs/" + std::to_string(teardown) + "/approve", Writer()).status, 200);

  // Once it is gone, the reopened pull request gets its new preview.
  ASSERT_TRUE(WaitUntil([&] { return NumberField(Preview("pr-10"), "setupRun") > NumberField(first, "setupRun"); },
                        seconds(20)))
      << json::SerializeCompact(Preview("pr-10")) << daemon_.Output();
  ASSERT_TRUE(WaitForStatus("pr-10", "ready"));
  EXPECT_EQ(ServedVersion(StringField(Preview("pr-10"), "url")), "10");
  EXPECT_EQ(LivePreviews(), 1u);
}

TEST_F(PreviewsMoreTest, AGitLabMergeRequestGetsAPreviewAndABadTokenIsRefused) {
  Start(Forge::kGitLab);
  if (HasFatalFailure()) return;
  const std::string sha = PushPullRequest(8, "feature/mr", "8", "refs/merge-requests/");

  auto refused = GitLabHook("open", 8, "feature/mr", sha, "mr-0", "not-the-secret");
  EXPECT_EQ(refused.status, 401) << refused.body;
  EXPECT_TRUE(LogSays("the signature does not verify with the repository's secret"));

  ASSERT_EQ(GitLabHook("open", 8, "feature/mr", sha, "mr-1").status, 202);
  ASSERT_TRUE(WaitForStatus("pr-8", "ready"));
  const json::Value preview = Preview("pr-8");
  EXPECT_EQ(StringField(preview, "pullRequest"), "8");
  EXPECT_EQ(StringField(preview, "branch"), "feature/mr");
  EXPECT_EQ(StringField(preview, "sha"), sha);
  EXPECT_EQ(ServedVersion(StringField(preview, "url")), "8");

  // Closed on GitLab: gone.
  const pid_t web = WebPid("pr-8");
  EXPECT_EQ(GitLabHook("close", 8, "feature/mr", sha, "mr-2", "wrong").status, 401);
  EXPECT_EQ(Status("pr-8"), "ready") << "a refused close changes nothing";
  ASSERT_EQ(GitLabHook("close", 8, "feature/mr", sha, "mr-3").status, 202);
  ASSERT_TRUE(WaitForStatus("pr-8", "gone"));
  ExpectNothingLeftOf("pr-8", web);
}

TEST_F(PreviewsMoreTest, GitopsctlListsPreviewsAndTearsOneDown) {
  Start(Forge::kGitHub);
  if (HasFatalFailure()) return;
  const std::map<std::string, std::string> env = {{"GITOPSD_SERVER", daemon_.url()},
                                                  {"GITOPSD_TOKEN", kWriteToken}};
  auto none = RunGitopsctl({"previews"}, env);
  ASSERT_EQ(none.exit_code, 0) << none.output;
  EXPECT_TRUE(Contains(none.output, "No previews.")) << none.output;

  const std::string sha = PushPullRequest(9, "feature/ctl", "9");
  ASSERT_EQ(GitHubHook("opened", 9, "feature/ctl", sha, "ctl-1").status, 202);
  ASSERT_TRUE(WaitForStatus("pr-9", "ready"));
  const std::string url = StringField(Preview("pr-9"), "url");

  auto table = RunGitopsctl({"previews"}, env);
  ASSERT_EQ(table.exit_code, 0) << table.output;
  EXPECT_TRUE(Contains(table.output, "NAME")) << table.output;
  for (const std::string& cell : {std::string("pr-9"), std::string("pull-requests"), std::string("ready"),
                                  std::string("#9 (feature/ctl)"), sha.substr(0, 7), url}) {
    EXPECT_TRUE(Contains(table.output, cell)) << cell << " in\n" << table.output;
  }
  auto as_json = RunGitopsctl({"--json", "previews"}, env);
  ASSERT_EQ(as_json.exit_code, 0) << as_json.output;
  auto doc = json::Parse(as_json.output);
  ASSERT_TRUE(doc && doc->Find("previews") && doc->Find("previews")->items().size() == 1) << as_json.output;
  const json::Value& listed = doc->Find("previews")->items()[0];
  EXPECT_EQ(StringField(listed, "name"), "pr-9");
  EXPECT_EQ(StringField(listed, "status"), "ready");
  EXPECT_EQ(StringField(listed, "sha"), sha);

  // Tearing down needs a write token, and names a live preview.
  const pid_t web = WebPid("pr-9");
  auto unauthorised = RunGitopsctl({"teardown", "pr-9"}, {{"GITOPSD_SERVER", daemon_.url()}});
  EXPECT_NE(unauthorised.exit_code, 0) << unauthorised.output;
  EXPECT_EQ(Status("pr-9"), "ready");
  auto unknown = RunGitopsctl({"teardown", "pr-99"}, env);
  EXPECT_NE(unknown.exit_code, 0) << unknown.output;
  EXPECT_TRUE(Contains(unknown.output, "pr-99")) << unknown.output;

  auto torn = RunGitopsctl({"teardown", "pr-9"}, env);
  ASSERT_EQ(torn.exit_code, 0) << torn.output;
  EXPECT_TRUE(Contains(torn.output, "pr-9 is being torn down")) << torn.output;
  ASSERT_TRUE(WaitForStatus("pr-9", "gone"));
  ExpectNothingLeftOf("pr-9", web);
  auto after = RunGitopsctl({"previews"}, env);
  EXPECT_TRUE(Contains(after.output, "No previews.")) << after.output;
  auto all = RunGitopsctl({"previews", "--all"}, env);
  EXPECT_TRUE(Contains(all.output, "pr-9") && Contains(all.output, "gone")) << all.output;
}

}  // namespace
}  // namespace gitopsd::test
