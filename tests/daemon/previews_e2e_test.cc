// Preview environments end to end with the example shop: a pull request
// opened (a signed GitHub webhook, then what Git says) gets one preview with
// its own copy of the database serving the PR's code; a new commit re-runs
// the same preview; closing the PR tears it down and nothing of it remains
// (service, process, database, state folders).
#include <gtest/gtest.h>
#include <signal.h>

#include <filesystem>

#include "tests/daemon/shop_fixture.h"

namespace gitopsd::test {
namespace {

namespace fs = std::filesystem;
using std::chrono::seconds;

constexpr const char* kSecret = "preview-secret";

class PreviewsTest : public ShopFixture {
 protected:
  PreviewsTest() : ShopFixture("previews-e2e") {}

  void SetUp() override {
    ASSERT_TRUE(CopyShop());
    ASSERT_TRUE(CommitShop());
    ASSERT_TRUE(WriteTokens());
    ASSERT_TRUE(WriteHookSecret(kSecret));
    // 20900-20999, apart from the other tests' ranges.
    ASSERT_TRUE(StartDaemon(ShopConfig(PortsOfThisProcess(20900, 5), Forge::kGitHub)));
    // The shop Template autoruns: production's database and web service.
    ASSERT_TRUE(WaitForProduction(seconds(90)));
  }

  // Commits VERSION on feature/a and pushes it as the PR's head too.
  std::string PushPullRequest(const std::string& version) { return PushPullRequestVersion(1, "feature/a", version); }

  HttpReply PullRequestHook(const std::string& action, const std::string& sha, bool merged,
                            const std::string& delivery) {
    return PostPullRequestEvent({.action = action,
                                 .number = 1,
                                 .branch = "feature/a",
                                 .sha = sha,
                                 .base_sha = std::string(40, '0'),
                                 .merged = merged},
                                delivery);
  }
};

TEST_F(PreviewsTest, APullRequestGetsOnePreviewThatFollowsItAndGoesWhenItCloses) {
  ASSERT_TRUE(repo_.CheckoutNewBranch("feature/a"));
  const std::string v2 = PushPullRequest("2");
  ASSERT_EQ(PullRequestHook("opened", v2, false, "pr-d1").status, 202);
  ASSERT_TRUE(WaitForStatus("pr-1", "ready", seconds(90)));
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
  ASSERT_TRUE(WaitForStatus("pr-1", "gone", seconds(90)));
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
  ASSERT_TRUE(WaitForStatus("pr-1", "ready", seconds(90)));
  EXPECT_EQ(daemon_.Delete("/api/v1/previews/pr-1").status, 401);
  auto deleted = daemon_.Delete("/api/v1/previews/pr-1?skipTeardown=true",
                                {{"Authorization", Bearer(kWriteToken)}});
  EXPECT_EQ(deleted.status, 202) << deleted.body;
  ASSERT_TRUE(WaitForStatus("pr-1", "gone", seconds(90)));
  EXPECT_TRUE(NumberField(Preview("pr-1"), "teardownRun") < 0) << "skipped: no teardown run";
  EXPECT_TRUE(ServiceNamed("web-pr-1").is_null());
  EXPECT_EQ(daemon_.Delete("/api/v1/previews/pr-1", {{"Authorization", Bearer(kWriteToken)}}).status, 404);
}

}  // namespace
}  // namespace gitopsd::test
