// Rooms that keep their own tables in the state database: migrations run
// once, rooms do not disturb each other, a newer database is refused.
#include "daemon/runtime/module_db.h"

#include <gtest/gtest.h>

#include "tests/support/temp_dir.h"

namespace gitopsd::runtime {
namespace {

TEST(ModuleDatabase, MigratesOnceAndKeepsRoomsApart) {
  test::TempDir dir("moduledb");
  const std::string path = dir.Sub("state.db");
  std::vector<std::string> a = {"CREATE TABLE a_items (x INTEGER)"};
  {
    auto db = OpenModuleDatabase(path, "a", a);
    ASSERT_TRUE(db.has_value()) << db.error().message;
    ASSERT_TRUE(db->Exec("INSERT INTO a_items VALUES (1)"));
  }
  a.push_back("ALTER TABLE a_items ADD COLUMN y INTEGER DEFAULT 7");
  auto again = OpenModuleDatabase(path, "a", a);  // only the second migration runs
  ASSERT_TRUE(again.has_value()) << again.error().message;
  auto row = again->Prepare("SELECT x, y FROM a_items");
  ASSERT_TRUE(row.has_value());
  ASSERT_TRUE(row->Step().value_or(false));
  EXPECT_EQ(row->Int(0), 1);
  EXPECT_EQ(row->Int(1), 7);
  auto other = OpenModuleDatabase(path, "b", {"CREATE TABLE b_items (z TEXT)"});
  ASSERT_TRUE(other.has_value()) << other.error().message;
}

TEST(ModuleDatabase, ANewerVersionIsRefused) {
  test::TempDir dir("moduledb");
  const std::string path = dir.Sub("state.db");
  ASSERT_TRUE(OpenModuleDatabase(path, "a", {"CREATE TABLE t1 (x)", "CREATE TABLE t2 (x)"}));
  auto older = OpenModuleDatabase(path, "a", {"CREATE TABLE t1 (x)"});
  ASSERT_FALSE(older.has_value());
  EXPECT_NE(older.error().message.find("newer gitopsd"), std::string::npos)
      << older.error().message;
}

}  // namespace
}  // namespace gitopsd::runtime
