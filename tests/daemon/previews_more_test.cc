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

#include <ctime>
#include <filesystem>

#include "sync/sqlite.h"
#include "tests/daemon/fake_forge_api.h"
#include "tests/daemon/run_waits.h"
#include "tests/daemon/shop_fixture.h"

namespace gitopsd::test {
namespace {

namespace fs = std::filesystem;
using std::chrono::seconds;

constexpr const char* kSecret = "previews-more-secret";
constexpr const char* kTemplatePath = ".gitops/previews/pull-requests.json";

class PreviewsMoreTest : public ShopFixture {
 protected:
  PreviewsMoreTest() : ShopFixture("previews-more") {}

  void SetUp() override {
    ASSERT_TRUE(CopyShop());
    ASSERT_TRUE(WriteTokens());
    ASSERT_TRUE(WriteHookSecret(std::string(kSecret) + "\n"));
    daemon_.SetEnv("GITOPSD_PREVIEW_TICK", "200ms");
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
    ASSERT_TRUE(CommitShop());
    main_ = repo_.Head();
    forge_ = forge;
    ASSERT_TRUE(StartDaemon(Config()));
    ASSERT_TRUE(WaitForProduction(seconds(60)));
  }

  // The runtime on 23800-23999, 20 ports per test process: ctest runs every
  // case in a process of its own, in parallel, and two daemons handing out
  // one range would race for the same free port.
  std::string Config() const { return ShopConfig(PortsOfThisProcess(23800, 10), forge_, preview_url_, forge_api_); }

  // Appends `node` to the setup steps of the preview template.
  void AppendSetupStep(const std::string& node) {
    const std::string path = repo_.work_path() + "/" + kTemplatePath;
    auto body = json::Parse(ReadTextFile(path));
    ASSERT_TRUE(body) << path;
    json::Value* spec = body->Find("spec");
    json::Value* steps = spec && spec->Find("spec") ? spec->Find("spec")->Find("steps") : nullptr;
    ASSERT_TRUE(steps && steps->is_array()) << "spec.spec.steps in " << path;
    auto step = json::Parse(node);
    ASSERT_TRUE(step) << node;
    steps->items().push_back(*step);
    ASSERT_TRUE(repo_.WriteFile(kTemplatePath, json::Serialize(*body)));
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
    const auto id = static_cast<int64_t>(NumberField(Preview(name), "teardownRun"));
    if (!WaitUntil([&] { return StringField(Run(id), "status") == "approval_wait"; }, seconds(20))) {
      ADD_FAILURE() << json::SerializeCompact(Run(id));
      return 0;
    }
    return id;
  }

  // A commit of VERSION on `branch` (from main), pushed as the branch and
  // as the head ref of pull request `number` (`prefix` refs/pull/ on GitHub,
  // refs/merge-requests/ on GitLab); returns the commit.
  std::string PushPullRequest(int number, const std::string& branch, const std::string& version,
                              const std::string& prefix = "refs/pull/") {
    EXPECT_TRUE(repo_.Git({"checkout", "-q", "-B", branch, main_}).ok());
    const std::string sha = PushPullRequestVersion(number, branch, version, prefix);
    EXPECT_FALSE(sha.empty());
    EXPECT_TRUE(repo_.Git({"checkout", "-q", main_}).ok());
    return sha;
  }

  HttpReply GitHubHook(const std::string& action, int number, const std::string& branch, const std::string& sha,
                       const std::string& delivery, bool draft = false) {
    return PostPullRequestEvent(
        {.action = action, .number = number, .branch = branch, .sha = sha, .base_sha = main_, .draft = draft},
        delivery);
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

  ::testing::AssertionResult LogSays(const std::string& text, seconds timeout = seconds(20)) {
    if (WaitUntil([&] { return Contains(daemon_.Output(), text); }, timeout)) return ::testing::AssertionSuccess();
    return ::testing::AssertionFailure() << "the log never says \"" << text << "\":\n" << daemon_.Output();
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

  std::string main_;
  Forge forge_ = Forge::kNone;
  std::string preview_url_;
  std::string forge_api_;  // the shop repository's forgeApi (", \"forgeApi\": {...}")  // runtime.previewUrl ("" = the default)
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
  EXPECT_EQ(StringField(Run(static_cast<int64_t>(NumberField(preview, "setupRun"))), "status"), "success") << "it was up first";
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

  ASSERT_TRUE(StartDaemon(Config()));
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
  ASSERT_TRUE(StartDaemon(Config()));
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

// A Message node of kind VCS comments on the pull request through the
// forge's API (forgeApi, with the token of its file) to give the preview's
// address; a token the forge refuses fails the node, saying so, and the
// token is never logged.
TEST_F(PreviewsMoreTest, APreviewPostsItsAddressOnItsPullRequest) {
  FakeForgeApi github("forge-token-1");
  ASSERT_TRUE(WriteTextFile(dir_.Sub("github.token"), "forge-token-1\n"));
  forge_api_ = R"(, "forgeApi": {"type": "github", "url": ")" + github.url() + R"(", "tokenFile": "github.token"})";
  AppendSetupStep(R"({"kind": "Message", "spec": {"kind": "VCS", "spec": {
      "vcsService": "github", "repoUrl": "https://github.com/acme/shop",
      "pullRequestId": "${refs.app.pullRequestId}",
      "message": "Preview ${args.name} is up: http://127.0.0.1:${refs.web.port}"}}})");
  Start(Forge::kGitHub);
  if (HasFatalFailure()) return;
  const std::string first = PushPullRequest(21, "feature/commented", "21");
  ASSERT_EQ(GitHubHook("opened", 21, "feature/commented", first, "delivery-21-1").status, 202);
  ASSERT_TRUE(WaitForStatus("pr-21", "ready"));
  const int port = static_cast<int>(NumberField(ServiceNamed("web-pr-21"), "port"));
  auto posted = github.received();
  ASSERT_EQ(posted.size(), 1u) << daemon_.Output();
  EXPECT_EQ(posted[0].uri, "/repos/acme/shop/issues/21/comments");
  EXPECT_EQ(posted[0].authorization, "Bearer forge-token-1");
  EXPECT_EQ(posted[0].content_type, "application/json");
  auto said = json::Parse(posted[0].body);
  ASSERT_TRUE(said) << posted[0].body;
  EXPECT_EQ(StringField(*said, "body"), "Preview pr-21 is up: http://127.0.0.1:" + std::to_string(port));
  EXPECT_EQ(posted[0].answered, 201);
  const json::Value setup = Run(NumberField(Preview("pr-21"), "setupRun"));
  EXPECT_TRUE(Contains(json::SerializeCompact(setup), "#issuecomment-")) << "the comment's page is the node's output";

  // The forge refuses a token: the node fails and says why; the run stops there.
  ASSERT_TRUE(WriteTextFile(dir_.Sub("github.token"), "revoked-token\n"));
  ASSERT_EQ(::kill(daemon_.process().pid(), SIGHUP), 0);
  ASSERT_TRUE(LogSays("configuration reloaded"));
  const std::string second = PushPullRequest(21, "feature/commented-again", "22");
  ASSERT_EQ(GitHubHook("synchronize", 21, "feature/commented-again", second, "delivery-21-2").status, 202);
  ASSERT_TRUE(WaitUntil([&] { return github.received().size() == 2; }, seconds(30))) << daemon_.Output();
  EXPECT_EQ(github.received()[1].answered, 401);
  ASSERT_TRUE(WaitUntil([&] {
    const json::Value run = Run(NumberField(Preview("pr-21"), "setupRun"));
    return StringField(run, "status") == "failure";
  }, seconds(30))) << json::SerializeCompact(Preview("pr-21"));
  const json::Value failed = Run(NumberField(Preview("pr-21"), "setupRun"));
  EXPECT_TRUE(Contains(json::SerializeCompact(failed), "answered 401 Unauthorized: {\\\"message\\\": \\\"Bad credentials"))
      << json::SerializeCompact(failed);
  EXPECT_FALSE(Contains(daemon_.Output(), "forge-token-1")) << "the token is never logged";
  EXPECT_FALSE(Contains(daemon_.Output(), "revoked-token"));
}

// Without webhooks, a pull request closed on GitHub keeps its
// refs/pull/N/head: the forge's API (forgeApi) says it is closed, and its
// preview ends; later looks do not bring it back.
TEST_F(PreviewsMoreTest, APullRequestClosedOnTheForgeEndsItsPreviewWithoutWebhooks) {
  FakeForgeApi github("forge-token-3");
  ASSERT_TRUE(WriteTextFile(dir_.Sub("github.token"), "forge-token-3\n"));
  forge_api_ = R"(, "webhook": {"type": "github", "secretFile": "hook.secret", "forgeUrl": "https://github.com/acme/shop"}, )"
               R"("forgeApi": {"type": "github", "url": ")" + github.url() + R"(", "tokenFile": "github.token"})";
  daemon_.SetEnv("GITOPSD_PREVIEW_FORGE_CHECK", "300ms");
  Start(Forge::kNone);
  if (HasFatalFailure()) return;
  PushPullRequest(31, "feature/merged-later", "31");
  PushPullRequest(32, "feature/stays-open", "32");
  Look();
  ASSERT_TRUE(WaitForStatus("pr-31", "ready"));
  ASSERT_TRUE(WaitForStatus("pr-32", "ready"));
  const pid_t web = WebPid("pr-31");
  auto asked = [&](const std::string& uri) {
    int n = 0;
    for (const auto& r : github.received()) n += r.method == "GET" && r.uri == uri ? 1 : 0;
    return n;
  };
  ASSERT_TRUE(WaitUntil([&] { return asked("/repos/acme/shop/pulls/31") >= 2; }, seconds(10)));
  EXPECT_EQ(Status("pr-31"), "ready") << "open on the forge: it stays";

  github.ClosePullRequest(31, /*merged=*/true);
  ASSERT_TRUE(WaitForStatus("pr-31", "gone"));
  EXPECT_TRUE(LogSays("pull request #31 of shop is closed on the forge"));
  EXPECT_TRUE(ServiceNamed("web-pr-31").is_null());
  EXPECT_TRUE(WaitUntil([&] { return !Alive(web); }, seconds(10))) << "its web process is gone";
  EXPECT_TRUE(WaitUntil([&] { return !fs::exists(daemon_.state_dir() + "/addons/db-pr-31"); }, seconds(10)));
  EXPECT_FALSE(ServiceNamed("web-pr-32").is_null()) << "the open one stays";
  Look();  // refs/pull/31/head is still there: no new preview for a closed pull request
  EXPECT_EQ(Status("pr-31"), "gone");
  EXPECT_EQ(Status("pr-32"), "ready");
  EXPECT_EQ(LivePreviews(), 1u);
  EXPECT_FALSE(Contains(daemon_.Output(), "forge-token-3")) << "the token is never logged";
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

  ASSERT_TRUE(StartDaemon(Config()));
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
  // The preview's address goes to the merge request as a note (GitLab's API).
  FakeForgeApi gitlab("gitlab-token-2");
  ASSERT_TRUE(WriteTextFile(dir_.Sub("gitlab.token"), "gitlab-token-2\n"));
  forge_api_ = R"(, "forgeApi": {"type": "gitlab", "url": ")" + gitlab.url() + R"(/api/v4", "tokenFile": "gitlab.token"})";
  AppendSetupStep(R"({"kind": "Message", "spec": {"kind": "VCS", "spec": {
      "vcsService": "gitlab", "repoUrl": "https://gitlab.example.com/acme/shop.git",
      "pullRequestId": "${refs.app.pullRequestId}", "message": "Preview ${args.name} is up"}}})");
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
  const auto notes = gitlab.received();
  ASSERT_EQ(notes.size(), 1u) << daemon_.Output();
  EXPECT_EQ(notes[0].uri, "/api/v4/projects/acme%2Fshop/merge_requests/8/notes");
  EXPECT_EQ(notes[0].private_token, "gitlab-token-2");
  EXPECT_EQ(notes[0].answered, 201);
  EXPECT_TRUE(Contains(notes[0].body, "Preview pr-8 is up")) << notes[0].body;

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
