#include "daemon/previews/preview_store.h"

#include <gtest/gtest.h>

#include "tests/support/temp_dir.h"

namespace gitopsd::previews {
namespace {

Preview ForPullRequest(const std::string& name, const std::string& pr) {
  Preview p;
  p.name = name;
  p.template_name = "pull-requests";
  p.trigger = "app";
  p.repository = "shop";
  p.branch = "feature/" + pr;
  p.pull_request = pr;
  p.sha = "abc";
  p.status = PreviewStatus::kDeploying;
  p.created_at = p.updated_at = 1000;
  p.args = json::Value::Object({{"name", json::Value::String(name)}});
  return p;
}

class PreviewStoreTest : public ::testing::Test {
 protected:
  void SetUp() override { Reopen(); }
  void Reopen() {
    store_.reset();
    auto store = PreviewStore::Open(dir_.path());
    ASSERT_TRUE(store) << store.error().message;
    store_ = std::move(*store);
  }
  test::TempDir dir_{"preview-store"};
  std::unique_ptr<PreviewStore> store_;
};

TEST_F(PreviewStoreTest, APreviewIsFoundByItsPullRequestAndKeepsEverythingAcrossARestart) {
  Preview p = ForPullRequest("pr-12", "12");
  p.resources = {{"service", "web-pr-12"}, {"addon", "db-pr-12"}};
  p.setup_run = 7;
  p.expires_at = 5000;
  p.url = "http://127.0.0.1:21000";
  ASSERT_TRUE(store_->Create(p));
  Reopen();
  auto found = store_->FindBySource("pull-requests", "12", "");
  ASSERT_TRUE(found && *found);
  EXPECT_EQ((*found)->name, "pr-12");
  EXPECT_EQ((*found)->resources, p.resources);
  EXPECT_EQ((*found)->setup_run, 7);
  EXPECT_FALSE((*found)->teardown_run);
  EXPECT_EQ((*found)->expires_at, 5000);
  EXPECT_EQ((*found)->url, p.url);
  EXPECT_EQ((*found)->status, PreviewStatus::kDeploying);
  EXPECT_EQ(json::SerializeCompact((*found)->args), R"({"name":"pr-12"})");
  auto other = store_->FindBySource("pull-requests", "13", "");
  ASSERT_TRUE(other);
  EXPECT_FALSE(*other);
}

TEST_F(PreviewStoreTest, OneLivePreviewPerNameAndAGoneOneMakesRoomAgain) {
  ASSERT_TRUE(store_->Create(ForPullRequest("pr-12", "12")));
  auto again = store_->Create(ForPullRequest("pr-12", "12"));
  ASSERT_FALSE(again);
  EXPECT_NE(again.error().message.find("already exists"), std::string::npos);

  Preview gone = ForPullRequest("pr-12", "12");
  gone.status = PreviewStatus::kGone;
  ASSERT_TRUE(store_->Update(gone));
  auto found = store_->FindBySource("pull-requests", "12", "");
  ASSERT_TRUE(found);
  EXPECT_FALSE(*found) << "a gone preview is no longer the PR's";
  EXPECT_TRUE(store_->Create(ForPullRequest("pr-12", "12"))) << "the PR reopened";
  EXPECT_FALSE(store_->Update(ForPullRequest("pr-99", "99"))) << "updating a missing preview is an error";
}

TEST_F(PreviewStoreTest, BranchPreviewsAndCountsAndLists) {
  Preview branch = ForPullRequest("feature-x", "");
  branch.branch = "feature/x";
  ASSERT_TRUE(store_->Create(branch));
  Preview queued = ForPullRequest("pr-2", "2");
  queued.status = PreviewStatus::kQueued;
  queued.created_at = 2000;
  ASSERT_TRUE(store_->Create(queued));
  Preview gone = ForPullRequest("pr-1", "1");
  gone.status = PreviewStatus::kGone;
  ASSERT_TRUE(store_->Create(gone));

  auto by_branch = store_->FindBySource("pull-requests", "", "feature/x");
  ASSERT_TRUE(by_branch && *by_branch);
  EXPECT_EQ((*by_branch)->name, "feature-x");
  EXPECT_EQ(store_->CountActive("pull-requests").value_or(-1), 1) << "queued and gone do not count";
  EXPECT_EQ(store_->CountActive("").value_or(-1), 1);
  EXPECT_EQ(store_->CountActive("other").value_or(-1), 0);
  auto live = store_->List();
  ASSERT_TRUE(live);
  ASSERT_EQ(live->size(), 2u);
  EXPECT_EQ((*live)[0].name, "feature-x");
  auto all = store_->List(/*with_gone=*/true);
  ASSERT_TRUE(all);
  ASSERT_EQ(all->size(), 3u);
  EXPECT_EQ(all->back().name, "pr-1");
  EXPECT_EQ(ParsePreviewStatus("teardown_failed"), PreviewStatus::kTeardownFailed);
}

}  // namespace
}  // namespace gitopsd::previews
