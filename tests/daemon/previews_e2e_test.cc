// Preview environments end to end with the example shop: a pull request
// opened (a signed GitHub webhook, then what Git says) gets one preview with
// its own copy of the database serving the PR's code; a new commit re-runs
// the same preview; closing the PR tears it down and nothing of it remains
// (service, process, database, state folders).
#include <gtest/gtest.h>
#include <signal.h>

#include <filesystem>

#include "daemon/triggers/forge.h"
#include "tests/daemon/run_waits.h"
#include "tests/daemon/write_fixture.h"

namespace gitopsd::test {
namespace {

namespace fs = std::filesystem;
using std::chrono::seconds;

constexpr const char* kSecret = "preview-secret";

class PreviewsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const fs::path example = fs::path(GITOPSD_EXAMPLES_DIR) / "shop";
    fs::copy(example, repo_.work_path(), fs::copy_options::recursive | fs::copy_options::overwrite_existing);
    ASSERT_TRUE(repo_.MakeExecutable("bin/shop"));
    ASSERT_FALSE(repo_.Commit("the shop").empty());
    ASSERT_TRUE(repo_.Push());
    ASSERT_TRUE(WriteTextFile(dir_.Sub("tokens.json"),
                              "[{\"name\": \"ci\", \"role\": \"write\", \"sha256\": \"" +
                                  daemon::ToHex(daemon::HashToken(kWriteToken)) + "\"}]\n"));
    ASSERT_TRUE(WriteTextFile(dir_.Sub("hook.secret"), kSecret));
    daemon_.SetEnv("GITOPSD_RUNNER_POLL", "100ms");
    const int port_min = 20900 + static_cast<int>(getpid() % 5) * 20;  // apart from the other tests' ranges
    const std::string config =
        "{\"stateDir\": \"@STATE@\", \"listen\": \"127.0.0.1:@PORT@\", \"apiTokensFile\": \"tokens.json\", "
        "\"repositories\": [{\"name\": \"shop\", \"url\": \"" + repo_.file_url() +
        "\", \"pollInterval\": \"1h\", \"sync\": {\"writeBack\": false}, \"webhook\": {\"type\": \"github\", "
        "\"secretFile\": \"hook.secret\", \"forgeUrl\": \"https://github.com/acme/shop\"}}], "
        "\"runtime\": {\"portRange\": [" + std::to_string(port_min) + ", " + std::to_string(port_min + 19) +
        "]}, \"log\": {\"level\": \"debug\"}}";
    ASSERT_TRUE(daemon_.StartWithConfig(config));
    ASSERT_TRUE(daemon_.WaitReady()) << daemon_.Output();
    // The shop Template autoruns: production's database and web service.
    ASSERT_TRUE(WaitUntil([&] { return !ServiceNamed("shop-web").is_null(); }, seconds(90))) << daemon_.Output();
  }

  void TearDown() override {
    KillReportedServices(daemon_);
    daemon_.Stop();
  }

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
    auto body = daemon_.Get("/api/v1/previews/" + name).Json();
    return body ? *body : json::Value();
  }

  size_t LivePreviews() {
    auto body = daemon_.Get("/api/v1/previews").Json();
    return body && body->Find("previews") ? body->Find("previews")->items().size() : 0;
  }

  // Commits VERSION on feature/a and pushes it as the PR's head too.
  std::string PushPullRequest(const std::string& version) {
    EXPECT_TRUE(repo_.WriteFile("VERSION", version + "\n"));
    std::string sha = repo_.Commit("version " + version + " [skip ci]");
    EXPECT_TRUE(repo_.Push("feature/a"));
    EXPECT_TRUE(repo_.Git({"push", "-q", "-f", "origin", "HEAD:refs/pull/1/head"}).ok());
    return sha;
  }

  HttpReply PullRequestHook(const std::string& action, const std::string& sha, bool merged,
                            const std::string& delivery) {
    const std::string body = R"({"action": ")" + action + R"(", "number": 1,
      "pull_request": {"number": 1, "state": ")" + (action == "closed" ? "closed" : "open") + R"(",
        "draft": false, "merged": )" + (merged ? "true" : "false") + R"(,
        "head": {"ref": "feature/a", "sha": ")" + sha + R"(",
                 "repo": {"full_name": "acme/shop", "clone_url": "https://github.com/acme/shop.git"}},
        "base": {"ref": "main", "sha": ")" + std::string(40, '0') + R"(",
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

  std::string ServedVersion(const std::string& url) {
    if (url.empty()) return "";
    const int port = std::stoi(url.substr(url.rfind(':') + 1));
    auto page = Http(port, "GET", "/").Json();
    return page ? StringField(*page, "version") : "";
  }

  bool WaitForStatus(const std::string& name, const std::string& status) {
    return WaitUntil([&] { return StringField(Preview(name), "status") == status; }, seconds(90));
  }

  TempDir dir_{"previews-e2e"};
  FixtureRepo repo_{dir_.path(), "shop"};
  DaemonUnderTest daemon_{dir_.path()};
};

TEST_F(PreviewsTest, APullRequestGetsOnePreviewThatFollowsItAndGoesWhenItCloses) {
  ASSERT_TRUE(repo_.CheckoutNewBranch("feature/a"));
  const std::string v2 = PushPullRequest("2");
  ASSERT_EQ(PullRequestHook("opened", v2, false, "pr-d1").status, 202);
  ASSERT_TRUE(WaitForStatus("pr-1", "ready")) << json::SerializeCompact(Preview("pr-1")) << daemon_.Output();
  json::Value preview = Preview("pr-1");
  EXPECT_EQ(StringField(preview, "sha"), v2);
  EXPECT_EQ(StringField(preview, "pullRequest"), "1");
  EXPECT_EQ(ServedVersion(StringField(preview, "url")), "2") << "the preview serves the PR's code";
  EXPECT_FALSE(ServiceNamed("web-pr-1").is_null());
  const std::string db = daemon_.state_dir() + "/addons/db-pr-1";
  EXPECT_TRUE(fs::exists(db)) << "its own copy of the database";
  const int64_t first_run = static_cast<int64_t>(NumberField(preview, "setupRun"));

  // A new commit on the PR re-runs the same preview.
  const std::string v3 = PushPullRequest("3");
  ASSERT_EQ(PullRequestHook("synchronize", v3, false, "pr-d2").status, 202);
  ASSERT_TRUE(WaitUntil([&] {
    json::Value p = Preview("pr-1");
    return StringField(p, "sha") == v3 && StringField(p, "status") == "ready";
  }, seconds(90))) << json::SerializeCompact(Preview("pr-1"));
  preview = Preview("pr-1");
  EXPECT_GT(static_cast<int64_t>(NumberField(preview, "setupRun")), first_run);
  EXPECT_EQ(ServedVersion(StringField(preview, "url")), "3");
  EXPECT_EQ(LivePreviews(), 1u) << "never a second preview for one PR";
  const int pid = static_cast<int>(NumberField(ServiceNamed("web-pr-1"), "pid"));
  ASSERT_GT(pid, 0);

  // Closed: everything of it goes; production stays.
  ASSERT_EQ(PullRequestHook("closed", v3, false, "pr-d3").status, 202);
  ASSERT_TRUE(WaitForStatus("pr-1", "gone")) << json::SerializeCompact(Preview("pr-1")) << daemon_.Output();
  EXPECT_EQ(LivePreviews(), 0u);
  EXPECT_TRUE(ServiceNamed("web-pr-1").is_null());
  EXPECT_TRUE(WaitUntil([&] { return kill(pid, 0) != 0; }, seconds(10))) << "its process is gone";
  EXPECT_FALSE(fs::exists(db)) << "its database is gone";
  EXPECT_FALSE(fs::exists(daemon_.state_dir() + "/services/web-pr-1"));
  EXPECT_FALSE(fs::exists(daemon_.state_dir() + "/jobs/migrate-pr-1"));
  auto addons = daemon_.Get("/api/v1/addons");
  EXPECT_FALSE(Contains(addons.body, "db-pr-1")) << addons.body;
  EXPECT_TRUE(Contains(addons.body, "shop-db")) << "production's database stays";
  EXPECT_FALSE(ServiceNamed("shop-web").is_null());
}

TEST_F(PreviewsTest, DeleteTearsAPreviewDownAndSkipTeardownSkipsItsTeardownRun) {
  ASSERT_TRUE(repo_.CheckoutNewBranch("feature/a"));
  const std::string v2 = PushPullRequest("2");
  ASSERT_EQ(PullRequestHook("opened", v2, false, "pr-e1").status, 202);
  ASSERT_TRUE(WaitForStatus("pr-1", "ready")) << daemon_.Output();
  EXPECT_EQ(daemon_.Delete("/api/v1/previews/pr-1").status, 401);
  auto deleted = daemon_.Delete("/api/v1/previews/pr-1?skipTeardown=true",
                                {{"Authorization", Bearer(kWriteToken)}});
  EXPECT_EQ(deleted.status, 202) << deleted.body;
  ASSERT_TRUE(WaitForStatus("pr-1", "gone"));
  EXPECT_TRUE(NumberField(Preview("pr-1"), "teardownRun") < 0) << "skipped: no teardown run";
  EXPECT_TRUE(ServiceNamed("web-pr-1").is_null());
  EXPECT_EQ(daemon_.Delete("/api/v1/previews/pr-1", {{"Authorization", Bearer(kWriteToken)}}).status, 404);
}

}  // namespace
}  // namespace gitopsd::test
