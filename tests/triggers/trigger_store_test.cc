#include "daemon/triggers/trigger_store.h"

#include <gtest/gtest.h>

#include <set>

#include "sync/sqlite.h"
#include "tests/support/temp_dir.h"

namespace gitopsd::triggers {
namespace {

const FlowKey kProduction{"ReleaseFlow", "production"};

HeadSeen Head(const std::string& branch, const std::string& sha, const std::string& pr = "") {
  return HeadSeen{.repository = "shop", .branch = branch, .sha = sha, .pull_request = pr};
}

class TriggerStoreTest : public ::testing::Test {
 protected:
  void SetUp() override { Reopen(); }

  void Reopen() {
    store_.reset();
    auto store = TriggerStore::Open(dir_.path());
    ASSERT_TRUE(store) << store.error().message;
    store_ = std::move(*store);
  }

  std::vector<TriggerEvent> Record(std::vector<HeadSeen> heads, bool fire_on_first = false) {
    auto events = store_->RecordHeads(kProduction, "app", heads, fire_on_first);
    EXPECT_TRUE(events) << events.error().message;
    return events ? *events : std::vector<TriggerEvent>{};
  }

  test::TempDir dir_{"trigger-store"};
  std::unique_ptr<TriggerStore> store_;
};

TEST_F(TriggerStoreTest, TheFirstLookIsABaselineThenEachNewHeadFiresOnce) {
  EXPECT_TRUE(Record({Head("main", "a1"), Head("feature/x", "b1")}).empty()) << "existing heads do not fire";
  EXPECT_TRUE(Record({Head("main", "a1"), Head("feature/x", "b1")}).empty());

  auto events = Record({Head("main", "a2"), Head("feature/x", "b1")});
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].branch, "main");
  EXPECT_EQ(events[0].sha, "a2");
  EXPECT_EQ(events[0].previous_sha, "a1") << "what a push brought is previous..sha";
  EXPECT_EQ(events[0].status, EventStatus::kPending);
  EXPECT_EQ(events[0].repository, "shop");
  EXPECT_GT(events[0].id, 0);

  EXPECT_TRUE(Record({Head("main", "a2")}).empty()) << "the same head never fires twice";
  auto fresh = Record({Head("fix/y", "c1")});
  ASSERT_EQ(fresh.size(), 1u) << "a branch first seen after the baseline fires";
  EXPECT_EQ(fresh[0].branch, "fix/y");
  EXPECT_EQ(fresh[0].previous_sha, "");
}

TEST_F(TriggerStoreTest, PreviewsOfPullRequestsAlreadyOpenFireOnTheFirstLook) {
  auto events = Record({Head("feature/a", "p1", "12"), Head("feature/b", "p2", "13")}, /*fire_on_first=*/true);
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0].pull_request, "12");
  EXPECT_EQ(events[1].pull_request, "13");
}

TEST_F(TriggerStoreTest, PendingEventsSurviveARestartUntilMarked) {
  Record({Head("main", "a1")});
  auto events = Record({Head("main", "a2")});
  ASSERT_EQ(events.size(), 1u);
  Reopen();
  EXPECT_TRUE(Record({Head("main", "a2")}).empty()) << "handled before the restart";
  auto pending = store_->Pending();
  ASSERT_TRUE(pending);
  ASSERT_EQ(pending->size(), 1u);
  EXPECT_EQ((*pending)[0].id, events[0].id);

  ASSERT_TRUE(store_->MarkStarted(events[0].id, 42));
  pending = store_->Pending();
  ASSERT_TRUE(pending);
  EXPECT_TRUE(pending->empty());
  auto listed = store_->Events(kProduction, 10);
  ASSERT_TRUE(listed);
  ASSERT_EQ(listed->size(), 1u);
  EXPECT_EQ((*listed)[0].status, EventStatus::kStarted);
  EXPECT_EQ((*listed)[0].run_id, 42);

  auto next = Record({Head("main", "a3")});
  ASSERT_EQ(next.size(), 1u);
  ASSERT_TRUE(store_->MarkSkipped(next[0].id, "[skip ci] in a3"));
  listed = store_->Events(FlowKey{}, 10);
  ASSERT_TRUE(listed);
  ASSERT_EQ(listed->size(), 2u);
  EXPECT_EQ((*listed)[0].status, EventStatus::kSkipped);
  EXPECT_EQ((*listed)[0].reason, "[skip ci] in a3");
  EXPECT_FALSE(store_->MarkStarted(9999, 1)) << "an unknown event is an error";
}

TEST_F(TriggerStoreTest, AForgottenBranchFiresAgainWhenItComesBack) {
  Record({Head("feature/x", "b1")});
  ASSERT_TRUE(store_->ForgetHead(kProduction, "app", "feature/x", ""));
  auto events = Record({Head("feature/x", "b1")});
  ASSERT_EQ(events.size(), 1u) << "deleted, then pushed again: a new environment";
}

TEST_F(TriggerStoreTest, WebhookTokensAreStoredAsHashesAndRotate) {
  auto token = store_->RotateToken(kProduction);
  ASSERT_TRUE(token) << token.error().message;
  EXPECT_EQ(token->size(), 64u);
  auto flow = store_->FlowOfToken(*token);
  ASSERT_TRUE(flow && *flow);
  EXPECT_EQ(**flow, kProduction);
  auto unknown = store_->FlowOfToken(std::string(64, '0'));
  ASSERT_TRUE(unknown);
  EXPECT_FALSE(*unknown);

  auto rotated = store_->RotateToken(kProduction);
  ASSERT_TRUE(rotated);
  EXPECT_NE(*rotated, *token);
  auto old = store_->FlowOfToken(*token);
  ASSERT_TRUE(old);
  EXPECT_FALSE(*old) << "the old token stops working";
  auto tokens = store_->Tokens();
  ASSERT_TRUE(tokens);
  ASSERT_EQ(tokens->size(), 1u);
  EXPECT_GT((*tokens)[0].created_at, 0);

  // Only the hash is on disk.
  auto db = sqlite::Database::Open(dir_.path() + "/state.db", false);
  ASSERT_TRUE(db);
  auto st = db->Prepare("SELECT sha256 FROM webhook_tokens");
  ASSERT_TRUE(st);
  ASSERT_TRUE(st->Step().value_or(false));
  EXPECT_NE(st->Text(0), *rotated);
  EXPECT_EQ(st->Text(0).size(), 64u);

  ASSERT_TRUE(store_->RemoveToken(kProduction));
  auto gone = store_->FlowOfToken(*rotated);
  ASSERT_TRUE(gone);
  EXPECT_FALSE(*gone);
}

TEST_F(TriggerStoreTest, PullRequestsKeepWhatWebhooksSaidOfThem) {
  ASSERT_TRUE(store_->NotePullRequest("shop", PullRequestInfo{"12", "feature/a", true, true}));
  ASSERT_TRUE(store_->NotePullRequest("shop", PullRequestInfo{"9", "", false, true}));
  ASSERT_TRUE(store_->NotePullRequest("shop", PullRequestInfo{"12", "", false, false}));  // closed
  ASSERT_TRUE(store_->NotePullRequest("other", PullRequestInfo{"1", "x", false, true}));
  auto prs = store_->PullRequests("shop");
  ASSERT_TRUE(prs) << prs.error().message;
  ASSERT_EQ(prs->size(), 2u);
  EXPECT_EQ((*prs)[0].number, "9") << "by number";
  EXPECT_EQ((*prs)[1].number, "12");
  EXPECT_EQ((*prs)[1].source_branch, "feature/a") << "an unknown branch keeps the known one";
  EXPECT_FALSE((*prs)[1].draft);
  EXPECT_FALSE((*prs)[1].open);
}

TEST_F(TriggerStoreTest, AReplayedDeliveryIsRecognised) {
  EXPECT_TRUE(store_->FirstDelivery("github", "d-1").value_or(false));
  EXPECT_FALSE(store_->FirstDelivery("github", "d-1").value_or(true));
  EXPECT_TRUE(store_->FirstDelivery("gitlab", "d-1").value_or(false)) << "ids are per forge";
  Reopen();
  EXPECT_FALSE(store_->FirstDelivery("github", "d-1").value_or(true)) << "remembered across restarts";
}

}  // namespace
}  // namespace gitopsd::triggers
