// The SQLite addon engine: each addon is one database file under
// <stateDir>/addons/<name>/, copied with SQLite's online backup API.
#include <sqlite3.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <thread>

#include "daemon/runtime/addons_internal.h"

namespace gitopsd::runtime::addons_internal {
namespace fs = std::filesystem;
namespace {

// ---- SQLite files ---------------------------------------------------------

struct SqliteCloser {
  void operator()(sqlite3* db) const { sqlite3_close_v2(db); }
};
using SqliteHandle = std::unique_ptr<sqlite3, SqliteCloser>;

Result<SqliteHandle> OpenSqlite(const std::string& path, bool create) {
  sqlite3* raw = nullptr;
  int flags = SQLITE_OPEN_READWRITE | (create ? SQLITE_OPEN_CREATE : 0);
  int rc = sqlite3_open_v2(path.c_str(), &raw, flags, nullptr);
  SqliteHandle db(raw);
  if (rc != SQLITE_OK) {
    return Fail("cannot open SQLite file " + path + ": " +
                (raw ? sqlite3_errmsg(raw) : sqlite3_errstr(rc)));
  }
  sqlite3_busy_timeout(raw, 5000);
  // Reading the schema is the first access to the file: a file that is not
  // a database fails here rather than halfway through a copy.
  if (sqlite3_exec(raw, "SELECT count(*) FROM sqlite_master", nullptr, nullptr, nullptr) !=
      SQLITE_OK) {
    return Fail("SQLite file " + path + ": " + sqlite3_errmsg(raw));
  }
  return db;
}

// Copies the whole database `from` into `to` with the online backup API: a
// consistent snapshot of `from`, written as one transaction into `to`.
Status CopySqlite(const std::string& from, const std::string& to, bool create_target) {
  auto source = OpenSqlite(from, /*create=*/false);
  if (!source) return std::unexpected(source.error());
  auto target = OpenSqlite(to, create_target);
  if (!target) return std::unexpected(target.error());
  sqlite3_backup* backup = sqlite3_backup_init(target->get(), "main", source->get(), "main");
  if (backup == nullptr) {
    return Fail("cannot copy " + from + " to " + to + ": " + sqlite3_errmsg(target->get()));
  }
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  int rc = SQLITE_OK;
  // -1: all pages in one step, so a busy writer cannot make the copy restart forever.
  while ((rc = sqlite3_backup_step(backup, -1)) == SQLITE_BUSY || rc == SQLITE_LOCKED ||
         rc == SQLITE_OK) {
    if (rc != SQLITE_OK && std::chrono::steady_clock::now() > deadline) break;
    if (rc != SQLITE_OK) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  sqlite3_backup_finish(backup);
  if (rc != SQLITE_DONE) {
    int code = sqlite3_errcode(target->get());
    std::string why = code != SQLITE_OK ? sqlite3_errmsg(target->get()) : sqlite3_errstr(rc);
    // "disk I/O error" alone does not say that the disk is full.
    if (int os_error = sqlite3_system_errno(target->get()); os_error != 0) {
      why += std::string(" (") + std::strerror(os_error) + ")";
    }
    return Fail("cannot copy " + from + " to " + to + ": " + why);
  }
  return Ok();
}

class SqliteEngine final : public LocalAddons::Engine {
 public:
  explicit SqliteEngine(std::string state_dir) : state_dir_(std::move(state_dir)) {}

  std::string Location(const std::string& name) const override {
    return state_dir_ + "/addons/" + name + "/" + name + ".sqlite";
  }
  std::string BackupExtension() const override { return ".sqlite"; }

  Result<bool> Exists(const std::string& location) override {
    std::error_code ec;
    bool exists = fs::exists(location, ec);
    if (ec) return Fail("cannot check SQLite file " + location + ": " + ec.message());
    if (!exists) return false;
    // Adopting a file that is not a database would only fail later, in a job.
    if (auto db = OpenSqlite(location, /*create=*/false); !db) return std::unexpected(db.error());
    return true;
  }

  Status Create(const std::string& location) override {
    if (auto made = MakeFolder(fs::path(location).parent_path(), "addon"); !made) return made;
    auto db = OpenSqlite(location, /*create=*/true);
    if (!db) return std::unexpected(db.error());
    return Ok();
  }

  Status Drop(const std::string& location) override {
    RemoveSqliteFiles(location);
    std::error_code ec;
    fs::path folder = fs::path(location).parent_path();
    // The addon's own folder (addons/<name>/); leftovers of a fork go with it.
    if (folder.parent_path() == fs::path(state_dir_) / "addons") fs::remove_all(folder, ec);
    if (ec) return Fail("cannot remove the addon folder " + folder.string() + ": " + ec.message());
    return Ok();
  }

  Status Dump(const std::string& location, const std::string& file) override {
    auto copied = CopySqlite(location, file, /*create_target=*/true);
    if (!copied) return copied;
    // A backup is one self-contained file, whatever journal mode the live
    // database uses (a WAL source would otherwise mark the copy as WAL).
    auto db = OpenSqlite(file, /*create=*/false);
    if (!db) return std::unexpected(db.error());
    if (sqlite3_exec(db->get(), "PRAGMA journal_mode=DELETE", nullptr, nullptr, nullptr) !=
        SQLITE_OK) {
      return Fail("SQLite file " + file + ": " + sqlite3_errmsg(db->get()));
    }
    return Ok();
  }

  Status Restore(const std::string& location, const std::string& file) override {
    return CopySqlite(file, location, /*create_target=*/false);
  }

  Status CreateFrom(const std::string& location, const std::string& file) override {
    auto exists = Exists(location);
    if (!exists) return std::unexpected(exists.error());
    if (*exists) return Fail("SQLite file " + location + " already exists");
    if (auto made = MakeFolder(fs::path(location).parent_path(), "addon"); !made) return made;
    auto written = WriteDurably(location, [&](const std::string& temp) {
      return CopySqlite(file, temp, /*create_target=*/true);
    });
    if (!written) (void)Drop(location);
    return written;
  }

  void Connect(const std::string& location, Addon& addon) const override {
    addon.env["DATABASE_TYPE"] = "sqlite";
    addon.env["DATABASE_URL"] = "sqlite://" + location;
    addon.env["DATABASE_PATH"] = location;
  }

 private:
  std::string state_dir_;
};

}  // namespace

std::unique_ptr<LocalAddons::Engine> MakeSqliteEngine(std::string state_dir) {
  return std::make_unique<SqliteEngine>(std::move(state_dir));
}

}  // namespace gitopsd::runtime::addons_internal
