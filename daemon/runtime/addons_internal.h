// Private to LocalAddons (addons.h): the engine each addon type implements,
// and the helpers the addons files share. LocalAddons is split as
//   addons.cc           opening, recovery, ensuring, listing, removing addons
//                       (and the durable-file helpers below)
//   addons_backups.cc   backups: taking, listing, retention, restoring, and
//                       forking a new addon from one
//   addons_sqlite.cc    the SQLite engine (a file per addon)
//   addons_postgres.cc  the PostgreSQL engine (psql, pg_dump, pg_restore)
// Nothing outside daemon/runtime/addons*.cc includes this header.
#pragma once
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "daemon/runtime/addons.h"
#include "sync/sqlite.h"

namespace gitopsd::runtime {

// ---- engines: what differs between addon types -----------------------------

// How one type of addon is created, dropped, dumped and restored. The caller
// holds the addon's lock and makes files durable (WriteDurably).
class LocalAddons::Engine {
 public:
  virtual ~Engine() = default;
  virtual std::string Location(const std::string& name) const = 0;
  virtual std::string BackupExtension() const = 0;
  virtual Result<bool> Exists(const std::string& location) = 0;
  virtual Status Create(const std::string& location) = 0;  // an empty database; fine if it exists
  virtual Status Drop(const std::string& location) = 0;    // fine if it is gone
  // Writes a complete backup of `location` into `file` (a new file).
  virtual Status Dump(const std::string& location, const std::string& file) = 0;
  virtual Status Restore(const std::string& location, const std::string& file) = 0;
  // Creates `location` (which must not exist) holding `file`'s data; on
  // failure removes what it created and nothing else.
  virtual Status CreateFrom(const std::string& location, const std::string& file) = 0;
  virtual void Connect(const std::string& location, Addon& addon) const = 0;
};

namespace addons_internal {

inline constexpr char kPartialSuffix[] = ".partial";

// The engines, one per addon type.
std::unique_ptr<LocalAddons::Engine> MakeSqliteEngine(std::string state_dir);
std::unique_ptr<LocalAddons::Engine> MakePostgresEngine(PostgresServerSettings server);

// An addon name: 1-63 characters of a-z, 0-9 and '-', starting with a
// letter and not ending with '-'.
Status ValidateName(const std::string& name);
// Unix milliseconds now.
int64_t NowMs();

// ---- files ----------------------------------------------------------------

Status FsyncPath(const std::string& path, bool directory);
Status MakeFolder(const std::string& dir, const std::string& what);
// Removes a SQLite file with its sidecars; missing files are fine.
void RemoveSqliteFiles(const std::string& path);

// Writes via `write` to path.partial, syncs it, renames it to `path` and
// syncs the folder: `path` exists only complete. Nothing is left on failure.
template <class WriteFn>
Status WriteDurably(const std::string& path, WriteFn write) {
  const std::string temp = path + kPartialSuffix;
  RemoveSqliteFiles(temp);
  Status status = write(temp);
  if (status) status = FsyncPath(temp, /*directory=*/false);
  if (status && std::rename(temp.c_str(), path.c_str()) != 0) {
    status = Fail("cannot rename " + temp + " to " + path + ": " + std::strerror(errno));
  }
  if (status) status = FsyncPath(std::filesystem::path(path).parent_path().string(), /*directory=*/true);
  if (!status) {
    RemoveSqliteFiles(temp);
    std::error_code ec;
    std::filesystem::remove(path, ec);
  }
  return status;
}

// ---- rows of the state database ---------------------------------------------

// One row of runtime_addons.
struct AddonRow {
  std::string name;
  AddonType type = AddonType::kSqlite;
  std::string location;
  int64_t created_at_ms = 0;
  std::string forked_from;
  std::optional<int> keep_backups;
  bool ready = true;
};

Result<std::optional<AddonRow>> LoadAddonRow(std::mutex& db_mutex, sqlite::Database& db,
                                             const std::string& name);
// Runs `sql` with `values` bound to ?1, ?2, ... in order.
Status ExecBound(sqlite::Database& db, const std::string& sql,
                 const std::vector<std::variant<std::string, int64_t>>& values);

}  // namespace addons_internal
}  // namespace gitopsd::runtime
