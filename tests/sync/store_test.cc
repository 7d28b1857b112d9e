#include "sync/store.h"

#include <gtest/gtest.h>
#include <sqlite3.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <vector>

#include "sync/sqlite.h"

namespace gitopsd::store {
namespace {

namespace fs = std::filesystem;

class StoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/gitopsd-store-XXXXXX";
    dir_ = mkdtemp(tmpl);
    path_ = dir_ + "/state.db";
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::unique_ptr<Store> OpenOrDie() {
    auto s = Store::Open(path_);
    EXPECT_TRUE(s.has_value()) << s.error().message;
    return s ? std::move(*s) : nullptr;
  }
  static ObjectRecord Obj(std::string body, std::string blob = "b1") {
    return ObjectRecord{"Template", "shop", "repo", ".gitops/templates/shop.json",
                        std::move(body), std::move(blob), "c1", 0, 0};
  }
  std::string dir_, path_;
};

TEST_F(StoreTest, RevisionGrowsOnlyWhenTheObjectChanges) {
  auto store = OpenOrDie();
  ASSERT_TRUE(store);
  ASSERT_TRUE(store->Apply([](Tx& tx) -> Status {
    auto changed = tx.PutObject(Obj("{\"a\":1}"));
    EXPECT_TRUE(changed && *changed);
    return Ok();
  }));
  ASSERT_TRUE(store->Apply([](Tx& tx) -> Status {
    auto same = tx.PutObject(Obj("{\"a\":1}", "b2"));  // reformatted file, same content
    EXPECT_TRUE(same && !*same);
    auto changed = tx.PutObject(Obj("{\"a\":2}", "b3"));
    EXPECT_TRUE(changed && *changed);
    return Ok();
  }));
  auto o = store->GetObject("Template", "shop");
  ASSERT_TRUE(o && *o);
  EXPECT_EQ((*o)->revision, 2);
  EXPECT_EQ((*o)->body, "{\"a\":2}");
  EXPECT_EQ((*o)->blob_id, "b3");
}

TEST_F(StoreTest, FailedApplyLeavesNothingBehind) {
  auto store = OpenOrDie();
  ASSERT_TRUE(store);
  auto s = store->Apply([](Tx& tx) -> Status {
    EXPECT_TRUE(tx.PutObject(Obj("{}")));
    return Fail("something went wrong half way");
  });
  EXPECT_FALSE(s.has_value());
  auto count = store->CountObjects();
  ASSERT_TRUE(count);
  EXPECT_EQ(*count, 0);
}

TEST_F(StoreTest, StateSurvivesReopen) {
  {
    auto store = OpenOrDie();
    ASSERT_TRUE(store->EnsureRepository("shop", "file:///x", "main"));
    ASSERT_TRUE(store->Apply([](Tx& tx) -> Status {
      if (auto r = tx.PutObject(Obj("{}")); !r) return std::unexpected(r.error());
      return tx.SetApplied("shop", "abc", 1, 2);
    }));
    ASSERT_TRUE(store->RecordFetch("shop", "", "host unreachable"));
  }
  auto store = OpenOrDie();
  auto repo = store->GetRepository("shop");
  ASSERT_TRUE(repo && *repo);
  EXPECT_EQ((*repo)->applied_commit, "abc");
  EXPECT_EQ((*repo)->fetch_failures, 1);
  EXPECT_EQ((*repo)->last_fetch_error, "host unreachable");
  EXPECT_EQ(*store->CountObjects(), 1);
}

TEST_F(StoreTest, NewerSchemaVersionIsRefused) {
  OpenOrDie().reset();
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path_.c_str(), &db), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(db, "PRAGMA user_version = 99", nullptr, nullptr, nullptr), SQLITE_OK);
  sqlite3_close(db);
  auto s = Store::Open(path_);
  ASSERT_FALSE(s.has_value());
  EXPECT_NE(s.error().message.find("newer gitopsd"), std::string::npos) << s.error().message;
  EXPECT_NE(s.error().message.find(path_), std::string::npos);
}

TEST_F(StoreTest, GarbageFileIsRefusedWithItsName) {
  std::ofstream(path_) << std::string(8192, 'x');
  auto s = Store::Open(path_);
  ASSERT_FALSE(s.has_value());
  EXPECT_NE(s.error().message.find(path_), std::string::npos) << s.error().message;
  EXPECT_NE(s.error().message.find("not a database"), std::string::npos) << s.error().message;
}

TEST_F(StoreTest, FilesAreFoundByIdentityAndErrorsByRepository) {
  auto store = OpenOrDie();
  ASSERT_TRUE(store->Apply([](Tx& tx) -> Status {
    EXPECT_TRUE(tx.PutFile({"r", "a.json", "b1", "Template", "x", true, "{}"}));
    EXPECT_TRUE(tx.PutFile({"r", "b.json", "b2", "Template", "x", false, ""}));
    EXPECT_TRUE(tx.AddError({"r", "b.json", 3, 4, "bad", "json-syntax", "c1"}));
    auto claiming = tx.FilesClaiming("Template", "x");
    EXPECT_TRUE(claiming && claiming->size() == 2u);
    return Ok();
  }));
  auto errors = store->ListErrors("r");
  ASSERT_TRUE(errors);
  ASSERT_EQ(errors->size(), 1u);
  EXPECT_EQ((*errors)[0].line, 3);
  ASSERT_TRUE(store->Apply([](Tx& tx) { return tx.ClearErrors("r", "b.json"); }));
  EXPECT_TRUE(store->ListErrors()->empty());
}

TEST_F(StoreTest, ReadsLeaveNoSnapshotThatBlocksWritesAfterOtherConnectionsWrite) {
  auto store = OpenOrDie();
  ASSERT_TRUE(store->Apply([](Tx& tx) -> Status {
    if (auto r = tx.PutObject(Obj("{}")); !r) return std::unexpected(r.error());
    return Ok();
  }));
  ASSERT_TRUE(store->GetObject("Template", "shop").value_or(std::nullopt).has_value());
  // Another room of the daemon writes through its own connection...
  sqlite3* other = nullptr;
  ASSERT_EQ(sqlite3_open(path_.c_str(), &other), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(other, "CREATE TABLE other_room (x); INSERT INTO other_room VALUES (1)",
                         nullptr, nullptr, nullptr),
            SQLITE_OK);
  sqlite3_close(other);
  // ...and the store can still begin a write transaction.
  auto s = store->Apply([](Tx& tx) -> Status {
    if (auto r = tx.PutObject(Obj("{\"a\":1}")); !r) return std::unexpected(r.error());
    return Ok();
  });
  EXPECT_TRUE(s.has_value()) << s.error().message;
}

// sqlite::ReadAll, which the rooms' list queries share: a reader that
// returns a Result refuses a row, and the refusal is what the read returns.
TEST_F(StoreTest, ReadAllReadsEveryRowOrStopsAtARefusedOne) {
  auto db = sqlite::Database::Open(path_, /*create=*/true);
  ASSERT_TRUE(db.has_value()) << db.error().message;
  ASSERT_TRUE(db->Exec("CREATE TABLE t (n INTEGER); INSERT INTO t VALUES (1), (2), (3)").has_value());
  auto st = db->Prepare("SELECT n FROM t ORDER BY n");
  ASSERT_TRUE(st.has_value());
  auto all = sqlite::ReadAll<int64_t>(*st, [](const sqlite::Statement& row) { return row.Int(0); });
  ASSERT_TRUE(all.has_value()) << all.error().message;
  EXPECT_EQ(*all, (std::vector<int64_t>{1, 2, 3}));

  auto again = db->Prepare("SELECT n FROM t ORDER BY n");
  ASSERT_TRUE(again.has_value());
  auto refused = sqlite::ReadAll<int64_t>(*again, [](const sqlite::Statement& row) -> Result<int64_t> {
    if (row.Int(0) == 2) return Fail("row 2 is not readable");
    return row.Int(0);
  });
  ASSERT_FALSE(refused.has_value());
  EXPECT_EQ(refused.error().message, "row 2 is not readable");
}

}  // namespace
}  // namespace gitopsd::store
