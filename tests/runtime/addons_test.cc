// Addons against real SQLite files and a real, throwaway PostgreSQL server:
// ensure, back up, restore, fork, remove, retention, and what a user sees
// when the backup folder or the server is not usable.
#include "daemon/runtime/addons.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/resource.h>

#include <filesystem>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "sync/sqlite.h"
#include "tests/support/git_servers.h"
#include "tests/support/postgres.h"
#include "tests/support/temp_dir.h"

namespace gitopsd::runtime {
namespace {

namespace fs = std::filesystem;
using test::TempDir;

std::unique_ptr<LocalAddons> OpenOrDie(const LocalAddonsOptions& options) {
  auto addons = LocalAddons::Open(options);
  EXPECT_TRUE(addons.has_value()) << addons.error().message;
  return addons ? std::move(*addons) : nullptr;
}

// Runs SQL on a SQLite addon the way a service would (its own connection).
void SqliteExec(const std::string& path, const std::string& sql) {
  auto db = sqlite::Database::Open(path, /*create=*/false);
  ASSERT_TRUE(db) << db.error().message;
  ASSERT_TRUE(db->Exec(sql)) << sql;
}

// The `name` column of table `items`, in id order, joined with commas.
std::string SqliteItems(const std::string& path) {
  auto db = sqlite::Database::Open(path, /*create=*/false);
  if (!db) return "error: " + db.error().message;
  auto st = db->Prepare("SELECT name FROM items ORDER BY id");
  if (!st) return "error: " + st.error().message;
  std::string items;
  while (true) {
    auto row = st->Step();
    if (!row) return "error: " + row.error().message;
    if (!*row) break;
    items += (items.empty() ? "" : ",") + st->Text(0);
  }
  return items;
}

// Every path under `root` whose name contains `part`.
std::vector<std::string> FilesContaining(const std::string& root, const std::string& part) {
  std::vector<std::string> found;
  std::error_code ec;
  for (const auto& entry : fs::recursive_directory_iterator(root, ec)) {
    if (entry.path().filename().string().find(part) != std::string::npos) {
      found.push_back(entry.path().string());
    }
  }
  return found;
}

class SqliteAddonsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    options_.state_dir = dir_.Sub("state");
    addons_ = OpenOrDie(options_);
    ASSERT_TRUE(addons_);
  }

  // An addon "shop-db" with a table `items` holding `names`.
  Addon ShopWith(const std::string& names, std::optional<int> keep = std::nullopt) {
    auto addon = addons_->EnsureAddon({"shop-db", AddonType::kSqlite, keep});
    EXPECT_TRUE(addon) << addon.error().message;
    if (!addon) return {};
    SqliteExec(addon->location,
               "CREATE TABLE IF NOT EXISTS items (id INTEGER PRIMARY KEY, name TEXT); "
               "DELETE FROM items;");
    std::string values;
    size_t start = 0;
    while (start <= names.size() && !names.empty()) {
      size_t comma = names.find(',', start);
      if (comma == std::string::npos) comma = names.size();
      values +=
          std::string(values.empty() ? "" : ",") + "('" + names.substr(start, comma - start) + "')";
      start = comma + 1;
    }
    if (!values.empty()) SqliteExec(addon->location, "INSERT INTO items (name) VALUES " + values);
    return *addon;
  }

  TempDir dir_{"addons"};
  LocalAddonsOptions options_;
  std::unique_ptr<LocalAddons> addons_;
};

TEST_F(SqliteAddonsTest, EnsureCreatesTheFileOnceAndSaysHowToReachIt) {
  auto first = addons_->EnsureAddon({"shop-db", AddonType::kSqlite, std::nullopt});
  ASSERT_TRUE(first) << first.error().message;
  const std::string expected = options_.state_dir + "/addons/shop-db/shop-db.sqlite";
  EXPECT_EQ(first->location, expected);
  EXPECT_TRUE(fs::is_regular_file(expected));
  EXPECT_EQ(first->env.at("DATABASE_URL"), "sqlite://" + expected);
  EXPECT_EQ(first->env.at("DATABASE_PATH"), expected);
  EXPECT_EQ(first->env.at("DATABASE_TYPE"), "sqlite");
  EXPECT_TRUE(first->secret_env.empty());

  SqliteExec(expected,
             "CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT); "
             "INSERT INTO items (name) VALUES ('kept')");
  auto again = addons_->EnsureAddon({"shop-db", AddonType::kSqlite, std::nullopt});
  ASSERT_TRUE(again) << again.error().message;
  EXPECT_EQ(again->location, expected);
  EXPECT_EQ(again->created_at_ms, first->created_at_ms);
  EXPECT_EQ(SqliteItems(expected), "kept");

  // A restart knows the addon.
  addons_.reset();
  addons_ = OpenOrDie(options_);
  ASSERT_TRUE(addons_);
  auto listed = addons_->ListAddons();
  ASSERT_TRUE(listed) << listed.error().message;
  ASSERT_EQ(listed->size(), 1u);
  EXPECT_EQ((*listed)[0].name, "shop-db");
  EXPECT_EQ((*listed)[0].location, expected);

  auto other_type = addons_->EnsureAddon({"shop-db", AddonType::kPostgresql, std::nullopt});
  ASSERT_FALSE(other_type);
  EXPECT_NE(other_type.error().message.find("postgresql"), std::string::npos)
      << other_type.error().message;
  auto bad_name = addons_->EnsureAddon({"Shop_DB", AddonType::kSqlite, std::nullopt});
  ASSERT_FALSE(bad_name);
  EXPECT_NE(bad_name.error().message.find("Shop_DB"), std::string::npos);
}

TEST_F(SqliteAddonsTest, RestoreBringsBackTheRowsOfTheBackup) {
  Addon shop = ShopWith("apple,pear,plum");
  auto backup = addons_->BackupAddon("shop-db");
  ASSERT_TRUE(backup) << backup.error().message;
  EXPECT_EQ(backup->status, BackupStatus::kSuccess);
  EXPECT_EQ(backup->path, options_.state_dir + "/backups/shop-db/" + backup->id + ".sqlite");
  EXPECT_EQ(SqliteItems(backup->path), "apple,pear,plum");

  SqliteExec(shop.location,
             "DELETE FROM items WHERE name = 'pear'; INSERT INTO items (name) VALUES ('fig')");
  ASSERT_EQ(SqliteItems(shop.location), "apple,plum,fig");

  auto restored = addons_->RestoreBackup("shop-db", backup->id);
  ASSERT_TRUE(restored) << restored.error().message;
  EXPECT_EQ(restored->id, backup->id);
  EXPECT_EQ(SqliteItems(shop.location), "apple,pear,plum");

  SqliteExec(shop.location, "DELETE FROM items");
  ASSERT_TRUE(addons_->RestoreBackup("shop-db", std::string(kLatestBackup)));
  EXPECT_EQ(SqliteItems(shop.location), "apple,pear,plum");

  auto unknown = addons_->RestoreBackup("shop-db", "no-such-backup");
  ASSERT_FALSE(unknown);
  EXPECT_NE(unknown.error().message.find("no-such-backup"), std::string::npos);
}

TEST_F(SqliteAddonsTest, BackupsAreListedNewestFirstWithSizesAndTimes) {
  ShopWith("a");
  auto older = addons_->BackupAddon("shop-db");
  ASSERT_TRUE(older) << older.error().message;
  ShopWith("a,b,c");
  auto newer = addons_->BackupAddon("shop-db");
  ASSERT_TRUE(newer) << newer.error().message;

  auto listed = addons_->ListBackups("shop-db");
  ASSERT_TRUE(listed) << listed.error().message;
  ASSERT_EQ(listed->size(), 2u);
  EXPECT_EQ((*listed)[0].id, newer->id);
  EXPECT_EQ((*listed)[1].id, older->id);
  for (const Backup& backup : *listed) {
    EXPECT_EQ(backup.status, BackupStatus::kSuccess);
    EXPECT_EQ(backup.addon, "shop-db");
    EXPECT_GT(backup.size_bytes, 0);
    EXPECT_EQ(backup.size_bytes, static_cast<int64_t>(fs::file_size(backup.path)));
    EXPECT_GT(backup.started_at_ms, 0);
    EXPECT_GE(backup.ended_at_ms, backup.started_at_ms);
    EXPECT_TRUE(backup.error.empty());
  }
  EXPECT_TRUE(FilesContaining(options_.state_dir, ".partial").empty());
  auto all = addons_->ListBackups("");
  ASSERT_TRUE(all);
  EXPECT_EQ(all->size(), 2u);
}

TEST_F(SqliteAddonsTest, RetentionKeepsTheNewestSuccessfulBackups) {
  ShopWith("a", /*keep=*/2);
  std::vector<Backup> made;
  for (int i = 0; i < 4; ++i) {
    auto backup = addons_->BackupAddon("shop-db");
    ASSERT_TRUE(backup) << backup.error().message;
    made.push_back(*backup);
  }
  auto listed = addons_->ListBackups("shop-db");
  ASSERT_TRUE(listed);
  ASSERT_EQ(listed->size(), 2u);
  EXPECT_EQ((*listed)[0].id, made[3].id);
  EXPECT_EQ((*listed)[1].id, made[2].id);
  EXPECT_FALSE(fs::exists(made[0].path));
  EXPECT_FALSE(fs::exists(made[1].path));
  EXPECT_TRUE(fs::exists(made[2].path));
  EXPECT_TRUE(fs::exists(made[3].path));
  auto shop = addons_->FindAddon("shop-db");
  ASSERT_TRUE(shop && *shop);
  EXPECT_EQ((*shop)->keep_backups, 2);
}

TEST_F(SqliteAddonsTest, AnUnwritableBackupFolderFailsClearlyAndLeavesNothing) {
  ShopWith("a");
  // Root ignores permission bits, so the folder is made impossible instead:
  // `backups` is a regular file, and nothing can be created beneath it.
  ASSERT_TRUE(test::WriteTextFile(options_.state_dir + "/backups", "not a folder\n"));

  auto backup = addons_->BackupAddon("shop-db");
  ASSERT_FALSE(backup);
  const std::string& message = backup.error().message;
  EXPECT_NE(message.find(options_.state_dir + "/backups/shop-db"), std::string::npos) << message;
  EXPECT_NE(message.find("Not a directory"), std::string::npos) << message;

  auto listed = addons_->ListBackups("shop-db");
  ASSERT_TRUE(listed);
  ASSERT_EQ(listed->size(), 1u);
  EXPECT_EQ((*listed)[0].status, BackupStatus::kFailed);
  EXPECT_EQ((*listed)[0].size_bytes, 0);
  EXPECT_EQ((*listed)[0].error, message);
  EXPECT_GE((*listed)[0].ended_at_ms, (*listed)[0].started_at_ms);
  EXPECT_TRUE(FilesContaining(dir_.path(), (*listed)[0].id).empty());

  auto restore = addons_->RestoreBackup("shop-db", std::string(kLatestBackup));
  ASSERT_FALSE(restore);
  EXPECT_NE(restore.error().message.find("no successful backup"), std::string::npos)
      << restore.error().message;
}

// Lowers this process's file-size limit (RLIMIT_FSIZE, which binds root too)
// so writes past `bytes` fail with EFBIG as on a full disk; restores it after.
class FileSizeLimit {
 public:
  explicit FileSizeLimit(rlim_t bytes) {
    getrlimit(RLIMIT_FSIZE, &saved_);
    old_handler_ = signal(SIGXFSZ, SIG_IGN);
    rlimit lowered = saved_;
    lowered.rlim_cur = bytes;
    setrlimit(RLIMIT_FSIZE, &lowered);
  }
  ~FileSizeLimit() {
    setrlimit(RLIMIT_FSIZE, &saved_);
    signal(SIGXFSZ, old_handler_);
  }
  FileSizeLimit(const FileSizeLimit&) = delete;
  FileSizeLimit& operator=(const FileSizeLimit&) = delete;

 private:
  rlimit saved_{};
  sighandler_t old_handler_ = SIG_DFL;
};

TEST_F(SqliteAddonsTest, ABackupThatRunsOutOfSpaceFailsClearlyAndLeavesNothing) {
  Addon shop = ShopWith("a");
  SqliteExec(shop.location,
             "CREATE TABLE blobs (data BLOB); "
             "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 512) "
             "INSERT INTO blobs SELECT randomblob(4096) FROM n");
  ASSERT_GT(fs::file_size(shop.location), 2u << 20);
  Result<Backup> backup = Fail("not run");
  {
    FileSizeLimit limit(1u << 20);  // the backup needs more than 2 MiB
    backup = addons_->BackupAddon("shop-db");
  }
  ASSERT_FALSE(backup);
  const std::string& message = backup.error().message;
  EXPECT_NE(message.find(options_.state_dir + "/backups/shop-db/"), std::string::npos) << message;
  EXPECT_NE(message.find("File too large"), std::string::npos) << message;
  auto listed = addons_->ListBackups("shop-db");
  ASSERT_TRUE(listed);
  ASSERT_EQ(listed->size(), 1u);
  EXPECT_EQ((*listed)[0].status, BackupStatus::kFailed);
  EXPECT_TRUE(FilesContaining(options_.state_dir + "/backups", (*listed)[0].id).empty());

  // With room again, the next backup works.
  auto next = addons_->BackupAddon("shop-db");
  ASSERT_TRUE(next) << next.error().message;
  EXPECT_GT(next->size_bytes, 2 << 20);
}

TEST_F(SqliteAddonsTest, ConcurrentBackupsAllSucceedWithDistinctIds) {
  ShopWith("a", /*keep=*/50);
  ASSERT_TRUE(addons_->EnsureAddon({"other-db", AddonType::kSqlite, 50}));
  std::vector<std::thread> threads;
  std::vector<std::string> errors(6);
  for (int t = 0; t < 6; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 3; ++i) {
        auto backup = addons_->BackupAddon(t % 2 == 0 ? "shop-db" : "other-db");
        if (!backup) errors[static_cast<size_t>(t)] += backup.error().message + "\n";
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  for (const std::string& error : errors) EXPECT_EQ(error, "");
  auto listed = addons_->ListBackups("");
  ASSERT_TRUE(listed);
  EXPECT_EQ(listed->size(), 18u);
  std::set<std::string> ids;
  for (const Backup& backup : *listed) {
    ids.insert(backup.id);
    EXPECT_EQ(backup.status, BackupStatus::kSuccess);
    EXPECT_TRUE(fs::exists(backup.path)) << backup.path;
  }
  EXPECT_EQ(ids.size(), 18u);
}

TEST_F(SqliteAddonsTest, ABackupInterruptedByACrashIsMarkedFailedOnRestart) {
  ShopWith("a");
  auto good = addons_->BackupAddon("shop-db");
  ASSERT_TRUE(good) << good.error().message;
  addons_.reset();
  // What a kill -9 in the middle of a backup leaves: a `running` row and a
  // half-written temporary file.
  const std::string path =
      options_.state_dir + "/backups/shop-db/20990101T000000.000Z-dead00.sqlite";
  ASSERT_TRUE(test::WriteTextFile(path + ".partial", "half a database"));
  {
    auto db = sqlite::Database::Open(options_.state_dir + "/state.db", /*create=*/false);
    ASSERT_TRUE(db) << db.error().message;
    ASSERT_TRUE(
        db->Exec("INSERT INTO runtime_addon_backups (id, addon, type, path, status, started_at) "
                 "VALUES ('20990101T000000.000Z-dead00', 'shop-db', 'sqlite', '" +
                 path + "', 'running', 1)"));
  }

  addons_ = OpenOrDie(options_);
  ASSERT_TRUE(addons_);
  EXPECT_EQ(addons_->recovered_backups(), 1);
  EXPECT_FALSE(fs::exists(path + ".partial"));
  EXPECT_FALSE(fs::exists(path));
  auto listed = addons_->ListBackups("shop-db");
  ASSERT_TRUE(listed);
  ASSERT_EQ(listed->size(), 2u);
  EXPECT_EQ((*listed)[0].status, BackupStatus::kFailed);
  EXPECT_NE((*listed)[0].error.find("interrupted"), std::string::npos) << (*listed)[0].error;
  EXPECT_EQ((*listed)[1].id, good->id);
  EXPECT_EQ((*listed)[1].status, BackupStatus::kSuccess);
  // "latest" skips the failed one.
  auto restored = addons_->RestoreBackup("shop-db", std::string(kLatestBackup));
  ASSERT_TRUE(restored) << restored.error().message;
  EXPECT_EQ(restored->id, good->id);
}

TEST_F(SqliteAddonsTest, ForkCopiesTheLatestBackupAndRemoveDeletesIt) {
  ShopWith("apple,pear");
  ASSERT_TRUE(addons_->BackupAddon("shop-db"));
  ShopWith("changed-after-the-backup");

  auto fork = addons_->ForkAddon({"pr-7-db", AddonType::kSqlite, std::nullopt}, "shop-db",
                                 std::string(kLatestBackup));
  ASSERT_TRUE(fork) << fork.error().message;
  EXPECT_EQ(fork->location, options_.state_dir + "/addons/pr-7-db/pr-7-db.sqlite");
  EXPECT_FALSE(fork->forked_from.empty());
  EXPECT_EQ(SqliteItems(fork->location), "apple,pear");
  EXPECT_TRUE(FilesContaining(options_.state_dir, ".partial").empty());

  auto twice = addons_->ForkAddon({"pr-7-db", AddonType::kSqlite, std::nullopt}, "shop-db",
                                  std::string(kLatestBackup));
  ASSERT_FALSE(twice);
  EXPECT_NE(twice.error().message.find("already exists"), std::string::npos)
      << twice.error().message;

  ASSERT_TRUE(addons_->RemoveAddon("pr-7-db", /*delete_backups=*/true));
  EXPECT_FALSE(fs::exists(fork->location));
  EXPECT_FALSE(fs::exists(options_.state_dir + "/addons/pr-7-db"));
  auto gone = addons_->FindAddon("pr-7-db");
  ASSERT_TRUE(gone);
  EXPECT_FALSE(gone->has_value());
  EXPECT_TRUE(addons_->RemoveAddon("pr-7-db", true)) << "removing twice is fine";
  EXPECT_EQ(SqliteItems(options_.state_dir + "/addons/shop-db/shop-db.sqlite"),
            "changed-after-the-backup");
}

TEST_F(SqliteAddonsTest, AForkInterruptedByACrashIsRedoneByTheNextFork) {
  ShopWith("apple");
  ASSERT_TRUE(addons_->BackupAddon("shop-db"));
  addons_.reset();
  // What a kill -9 during a fork leaves: the target's row, not ready, and a
  // half-written file.
  const std::string leftover = options_.state_dir + "/addons/pr-9-db/pr-9-db.sqlite.partial";
  ASSERT_TRUE(test::WriteTextFile(leftover, "half a database"));
  {
    auto db = sqlite::Database::Open(options_.state_dir + "/state.db", /*create=*/false);
    ASSERT_TRUE(db) << db.error().message;
    ASSERT_TRUE(db->Exec(
        "INSERT INTO runtime_addons (name, type, location, created_at, forked_from, ready) "
        "VALUES ('pr-9-db', 'sqlite', '" +
        options_.state_dir + "/addons/pr-9-db/pr-9-db.sqlite', 1, 'x', 0)"));
  }
  addons_ = OpenOrDie(options_);
  ASSERT_TRUE(addons_);
  auto hidden = addons_->FindAddon("pr-9-db");
  ASSERT_TRUE(hidden);
  EXPECT_FALSE(hidden->has_value()) << "a fork that did not finish is not an addon yet";
  auto ensure = addons_->EnsureAddon({"pr-9-db", AddonType::kSqlite, std::nullopt});
  ASSERT_FALSE(ensure);
  EXPECT_NE(ensure.error().message.find("did not finish"), std::string::npos);

  auto fork = addons_->ForkAddon({"pr-9-db", AddonType::kSqlite, std::nullopt}, "shop-db",
                                 std::string(kLatestBackup));
  ASSERT_TRUE(fork) << fork.error().message;
  EXPECT_EQ(SqliteItems(fork->location), "apple");
  EXPECT_FALSE(fs::exists(leftover));
}

TEST_F(SqliteAddonsTest, PostgresqlWithoutAConfiguredServerIsAClearError) {
  auto addon = addons_->EnsureAddon({"orders", AddonType::kPostgresql, std::nullopt});
  ASSERT_FALSE(addon);
  EXPECT_NE(addon.error().message.find("PostgreSQL server"), std::string::npos)
      << addon.error().message;
}

// ---- PostgreSQL -----------------------------------------------------------

// One throwaway cluster for all the PostgreSQL stories of this binary; each
// test uses its own database names and state folder.
class PostgresAddonsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    server_ = new test::PostgresServer();
    skip_reason_ = new std::string(test::PostgresServer::Unavailable());
    start_error_ = new std::string();
    if (skip_reason_->empty()) {
      if (auto started = server_->Start(); !started) *start_error_ = started.error().message;
    }
  }
  static void TearDownTestSuite() {
    delete server_;
    delete skip_reason_;
    delete start_error_;
    server_ = nullptr;
  }
  void SetUp() override {
    if (!skip_reason_->empty()) GTEST_SKIP() << *skip_reason_;
    ASSERT_TRUE(start_error_->empty()) << *start_error_;
    options_.state_dir = dir_.Sub("state");
    options_.postgres = Settings(server_->password());
    addons_ = OpenOrDie(options_);
    ASSERT_TRUE(addons_);
  }

  static PostgresServerSettings Settings(const std::string& password) {
    PostgresServerSettings settings;
    settings.host = server_->host();
    settings.port = server_->port();
    settings.user = server_->user();
    settings.password = password;
    settings.admin_database = server_->admin_database();
    settings.bin_dir = server_->bin_dir();
    settings.connect_timeout_seconds = 5;
    return settings;
  }

  static std::string Query(const std::string& database, const std::string& sql) {
    test::CommandResult result = server_->Psql(database, sql);
    EXPECT_TRUE(result.ok()) << sql << ": " << result.output;
    std::string out = result.output;
    while (!out.empty() && (out.back() == '\n' || out.back() == ' ')) out.pop_back();
    return out;
  }

  static bool DatabaseExists(const std::string& name) {
    return Query("postgres", "SELECT count(*) FROM pg_database WHERE datname = '" + name + "'") ==
           "1";
  }

  static test::PostgresServer* server_;
  static std::string* skip_reason_;
  static std::string* start_error_;
  TempDir dir_{"pg-addons"};
  LocalAddonsOptions options_;
  std::unique_ptr<LocalAddons> addons_;
};

test::PostgresServer* PostgresAddonsTest::server_ = nullptr;
std::string* PostgresAddonsTest::skip_reason_ = nullptr;
std::string* PostgresAddonsTest::start_error_ = nullptr;

TEST_F(PostgresAddonsTest, EnsureCreatesTheDatabaseOnceAndSaysHowToReachIt) {
  auto first = addons_->EnsureAddon({"shop-db", AddonType::kPostgresql, std::nullopt});
  ASSERT_TRUE(first) << first.error().message;
  EXPECT_TRUE(DatabaseExists("shop-db"));
  EXPECT_EQ(first->location, "shop-db");
  const std::string port = std::to_string(server_->port());
  EXPECT_EQ(first->env.at("DATABASE_URL"), "postgresql://postgres@127.0.0.1:" + port + "/shop-db");
  EXPECT_EQ(first->env.at("PGHOST"), "127.0.0.1");
  EXPECT_EQ(first->env.at("PGPORT"), port);
  EXPECT_EQ(first->env.at("PGUSER"), "postgres");
  EXPECT_EQ(first->env.at("PGDATABASE"), "shop-db");
  EXPECT_FALSE(first->env.contains("PGPASSWORD"));
  EXPECT_EQ(first->secret_env.at("PGPASSWORD"), server_->password());

  Query("shop-db", "CREATE TABLE items (id serial PRIMARY KEY, name text)");
  auto again = addons_->EnsureAddon({"shop-db", AddonType::kPostgresql, std::nullopt});
  ASSERT_TRUE(again) << again.error().message;
  EXPECT_EQ(again->created_at_ms, first->created_at_ms);
  EXPECT_EQ(Query("shop-db", "SELECT count(*) FROM items"), "0") << "the database was kept";

  ASSERT_TRUE(addons_->RemoveAddon("shop-db", true));
  EXPECT_FALSE(DatabaseExists("shop-db"));
}

TEST_F(PostgresAddonsTest, BackupRestoreForkAndRemove) {
  auto shop = addons_->EnsureAddon({"orders", AddonType::kPostgresql, std::nullopt});
  ASSERT_TRUE(shop) << shop.error().message;
  Query("orders",
        "CREATE TABLE items (id serial PRIMARY KEY, name text); "
        "INSERT INTO items (name) SELECT 'item-' || g FROM generate_series(1, 1000) g");

  auto backup = addons_->BackupAddon("orders");
  ASSERT_TRUE(backup) << backup.error().message;
  EXPECT_EQ(backup->status, BackupStatus::kSuccess);
  EXPECT_EQ(backup->path, options_.state_dir + "/backups/orders/" + backup->id + ".dump");
  EXPECT_GT(backup->size_bytes, 0);
  EXPECT_EQ(backup->size_bytes, static_cast<int64_t>(fs::file_size(backup->path)));
  EXPECT_TRUE(FilesContaining(options_.state_dir, ".partial").empty());

  Query("orders", "DELETE FROM items WHERE id > 10");
  ASSERT_EQ(Query("orders", "SELECT count(*) FROM items"), "10");
  auto restored = addons_->RestoreBackup("orders", std::string(kLatestBackup));
  ASSERT_TRUE(restored) << restored.error().message;
  EXPECT_EQ(restored->id, backup->id);
  EXPECT_EQ(Query("orders", "SELECT count(*) FROM items"), "1000");

  Query("orders", "INSERT INTO items (name) VALUES ('after-the-backup')");
  auto fork = addons_->ForkAddon({"pr-12-orders", AddonType::kPostgresql, std::nullopt}, "orders",
                                 std::string(kLatestBackup));
  ASSERT_TRUE(fork) << fork.error().message;
  EXPECT_EQ(fork->forked_from, backup->id);
  EXPECT_EQ(fork->env.at("PGDATABASE"), "pr-12-orders");
  EXPECT_EQ(Query("pr-12-orders", "SELECT count(*) FROM items"), "1000");
  EXPECT_EQ(Query("orders", "SELECT count(*) FROM items"), "1001") << "the source is untouched";

  auto listed = addons_->ListAddons();
  ASSERT_TRUE(listed);
  EXPECT_EQ(listed->size(), 2u);

  ASSERT_TRUE(addons_->RemoveAddon("pr-12-orders", /*delete_backups=*/true));
  EXPECT_FALSE(DatabaseExists("pr-12-orders"));
  ASSERT_TRUE(addons_->RemoveAddon("orders", /*delete_backups=*/true));
  EXPECT_FALSE(DatabaseExists("orders"));
  EXPECT_FALSE(fs::exists(backup->path));
}

TEST_F(PostgresAddonsTest, AWrongPasswordOrNoServerIsAClearErrorThatKeepsThePasswordSecret) {
  auto good = addons_->EnsureAddon({"audit", AddonType::kPostgresql, std::nullopt});
  ASSERT_TRUE(good) << good.error().message;
  addons_.reset();

  // The same state with a wrong password: a backup fails, is recorded failed,
  // and leaves no file.
  const std::string wrong = "wrong-secret-4711";
  options_.postgres = Settings(wrong);
  addons_ = OpenOrDie(options_);
  ASSERT_TRUE(addons_);
  auto backup = addons_->BackupAddon("audit");
  ASSERT_FALSE(backup);
  const std::string& message = backup.error().message;
  EXPECT_NE(message.find("password authentication failed"), std::string::npos) << message;
  EXPECT_NE(message.find("postgres@127.0.0.1:" + std::to_string(server_->port())),
            std::string::npos)
      << message;
  EXPECT_EQ(message.find(wrong), std::string::npos) << "the password leaked: " << message;
  auto listed = addons_->ListBackups("audit");
  ASSERT_TRUE(listed);
  ASSERT_EQ(listed->size(), 1u);
  EXPECT_EQ((*listed)[0].status, BackupStatus::kFailed);
  EXPECT_TRUE(FilesContaining(options_.state_dir + "/backups", (*listed)[0].id).empty());
  auto ensure = addons_->EnsureAddon({"audit-2", AddonType::kPostgresql, std::nullopt});
  ASSERT_FALSE(ensure);
  EXPECT_NE(ensure.error().message.find("password authentication failed"), std::string::npos);

  // No server listening at all.
  PostgresServerSettings nowhere = Settings(server_->password());
  nowhere.port = test::FreeLoopbackPort();
  options_.postgres = nowhere;
  addons_.reset();
  addons_ = OpenOrDie(options_);
  ASSERT_TRUE(addons_);
  auto unreachable = addons_->EnsureAddon({"audit-3", AddonType::kPostgresql, std::nullopt});
  ASSERT_FALSE(unreachable);
  EXPECT_NE(unreachable.error().message.find("127.0.0.1:" + std::to_string(nowhere.port)),
            std::string::npos)
      << unreachable.error().message;
  EXPECT_NE(unreachable.error().message.find("Connection refused"), std::string::npos)
      << unreachable.error().message;

  options_.postgres = Settings(server_->password());
  addons_.reset();
  addons_ = OpenOrDie(options_);
  ASSERT_TRUE(addons_);
  ASSERT_TRUE(addons_->RemoveAddon("audit", true));
}

}  // namespace
}  // namespace gitopsd::runtime
