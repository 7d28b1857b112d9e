// Addons: the databases a Template declares
// ({"kind": "Addon", "spec": {"name": "shop-db", "type": "sqlite" | "postgresql"}}),
// their backups, restores, and forks for previews.
//
// `Addons` is the interface the release runner calls; `LocalAddons` is the
// embedded backend (files on this host, databases on a configured PostgreSQL
// server). A Kubernetes backend implements the same calls later.
//
// What callers can rely on (LocalAddons):
//  - EnsureAddon is idempotent: it creates what is missing, adopts what
//    exists, and records the addon so a restart knows it.
//  - A backup is visible as `success` only when its file is complete: it is
//    written under a temporary name, fsynced and renamed. A failed backup
//    leaves no file and a `failed` row naming the path and the cause; a
//    backup interrupted by a crash is marked failed (and its temporary file
//    removed) by the next Open().
//  - After each successful backup the retention rule runs: the newest
//    `keep_backups` successful backups of that addon stay, older ones (files
//    and rows) go, and so do failed rows older than the oldest kept one.
//  - Restore overwrites the addon's data with the backup's. It does not stop
//    writers: stop the services that write to the addon first, or accept
//    that their writes during the restore may be lost (SQLite: the restore
//    is one write transaction; PostgreSQL: pg_restore --clean --if-exists
//    --single-transaction, which waits for locks held by open sessions and
//    drops and recreates only the objects in the backup: a table created
//    after the backup stays). A failed restore leaves the data as it was.
//  - The PostgreSQL password only travels to child processes as PGPASSWORD
//    and to jobs/services through Addon::secret_env; it is never logged, put
//    in a URL, in argv, or in an error message. psql, pg_dump and pg_restore
//    get the connection variables plus PATH, HOME and LANG, nothing else of
//    the daemon's environment.
//  - Thread-safe. Operations on one addon are serialised; different addons
//    proceed in parallel. One LocalAddons per stateDir.
//
// Connection variables a job or service gets (Addon::env, Addon::secret_env):
//   sqlite:      DATABASE_URL=sqlite://<abs path> (i.e. sqlite:///var/...),
//                DATABASE_PATH=<abs path>
//   postgresql:  DATABASE_URL=postgresql://<user>@<host>:<port>/<db>,
//                PGHOST, PGPORT, PGUSER, PGDATABASE; secret: PGPASSWORD
//                (when the server has a password).
// Both also get DATABASE_TYPE (sqlite | postgresql). SQLAlchemy spells an
// absolute SQLite path with four slashes: such apps should use DATABASE_PATH.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "sync/sqlite.h"
#include "sync/status.h"

namespace gitopsd::runtime {

enum class AddonType { kSqlite, kPostgresql };
std::string_view AddonTypeName(AddonType type);  // "sqlite" | "postgresql"
Result<AddonType> ParseAddonType(std::string_view name);

// What a Template's Addon node asks for.
struct AddonSpec {
  // 1-63 characters of [a-z0-9-], starting with a letter (the Template's
  // resource name; also the PostgreSQL database name).
  std::string name;
  AddonType type = AddonType::kSqlite;
  // Successful backups to keep; unset = LocalAddonsOptions::keep_backups.
  std::optional<int> keep_backups;
};

struct Addon {
  std::string name;
  AddonType type = AddonType::kSqlite;
  std::string location;  // sqlite: the absolute file path; postgresql: the database name
  int64_t created_at_ms = 0;
  std::string forked_from;  // the backup id it was forked from, or ""
  int keep_backups = 0;     // the effective retention
  // The connection for jobs and services. `env` may be shown (API, logs);
  // `secret_env` must reach the child's environment and nothing else.
  std::map<std::string, std::string> env;
  std::map<std::string, std::string> secret_env;
};

enum class BackupStatus { kRunning, kSuccess, kFailed };
std::string_view BackupStatusName(BackupStatus status);  // "running" | "success" | "failed"

struct Backup {
  std::string id;  // sortable: <UTC time>-<random>, e.g. 20250101T120000.123Z-3f9a1c
  std::string addon;
  AddonType type = AddonType::kSqlite;
  std::string path;  // <stateDir>/backups/<addon>/<id>.sqlite | .dump (pg_dump -Fc)
  int64_t size_bytes = 0;
  BackupStatus status = BackupStatus::kRunning;
  std::string error;  // why it failed ("" otherwise)
  int64_t started_at_ms = 0;
  int64_t ended_at_ms = 0;  // 0 while running
};

// A backup id meaning "the newest successful backup of the addon".
inline constexpr std::string_view kLatestBackup = "latest";

class Addons {
 public:
  virtual ~Addons() = default;

  // Creates the database if missing (a different type under the same name is
  // an error) and returns how to reach it.
  virtual Result<Addon> EnsureAddon(const AddonSpec& spec) = 0;
  // The recorded addon, or nullopt.
  virtual Result<std::optional<Addon>> FindAddon(const std::string& name) = 0;
  virtual Result<std::vector<Addon>> ListAddons() = 0;
  // Deletes the file / drops the database (PostgreSQL: WITH (FORCE), which
  // disconnects open sessions) and forgets the addon. Removing an unknown
  // addon succeeds. Its backups stay unless `delete_backups`.
  virtual Status RemoveAddon(const std::string& name, bool delete_backups) = 0;

  // Backs the addon up now and applies the retention rule. On failure the
  // error names the path and cause, and a `failed` backup row records it.
  virtual Result<Backup> BackupAddon(const std::string& name) = 0;
  // Backups of `addon` ("" = all addons), newest first, with sizes and times.
  virtual Result<std::vector<Backup>> ListBackups(const std::string& addon) = 0;
  // Restores a successful backup of the same addon (an id or kLatestBackup)
  // over its current data; returns the backup used. See the contract above
  // about writers.
  virtual Result<Backup> RestoreBackup(const std::string& addon, const std::string& backup_id) = 0;
  // Creates a new addon `target` (same type as the source, must not exist)
  // holding the data of `source_addon`'s backup `backup_id` (an id or
  // kLatestBackup). A failed fork leaves no target behind.
  virtual Result<Addon> ForkAddon(const AddonSpec& target, const std::string& source_addon,
                                  const std::string& backup_id) = 0;
};

// The PostgreSQL server postgresql addons live on.
struct PostgresServerSettings {
  std::string host = "127.0.0.1";
  int port = 5432;
  std::string user = "postgres";            // needs CREATEDB (and to own the databases it drops)
  std::string password;                     // "" = none (trust, peer, or ~/.pgpass)
  std::string admin_database = "postgres";  // where CREATE/DROP DATABASE run
  // Folder of psql, pg_dump and pg_restore ("" = found on PATH). pg_dump must
  // be at least the server's major version.
  std::string bin_dir;
  int connect_timeout_seconds = 10;
};

struct LocalAddonsOptions {
  std::string state_dir;                           // holds state.db, addons/ and backups/
  std::optional<PostgresServerSettings> postgres;  // needed for postgresql addons
  int keep_backups = 7;  // default retention: successful backups kept per addon
};

class LocalAddons final : public Addons {
 public:
  // Opens <stateDir>/state.db (module "runtime-addons") and recovers from a
  // crash: backups left `running` are marked failed, their temporary files
  // removed.
  static Result<std::unique_ptr<LocalAddons>> Open(LocalAddonsOptions options);
  ~LocalAddons() override;
  LocalAddons(const LocalAddons&) = delete;
  LocalAddons& operator=(const LocalAddons&) = delete;

  Result<Addon> EnsureAddon(const AddonSpec& spec) override;
  Result<std::optional<Addon>> FindAddon(const std::string& name) override;
  Result<std::vector<Addon>> ListAddons() override;
  Status RemoveAddon(const std::string& name, bool delete_backups) override;
  Result<Backup> BackupAddon(const std::string& name) override;
  Result<std::vector<Backup>> ListBackups(const std::string& addon) override;
  Result<Backup> RestoreBackup(const std::string& addon, const std::string& backup_id) override;
  Result<Addon> ForkAddon(const AddonSpec& target, const std::string& source_addon,
                          const std::string& backup_id) override;

  // How many interrupted backups Open() marked failed.
  int recovered_backups() const { return recovered_backups_; }

  class Engine;  // one per addon type; defined in addons_internal.h

 private:
  LocalAddons(LocalAddonsOptions options, sqlite::Database db);
  Result<Engine*> EngineFor(AddonType type);
  std::shared_ptr<std::mutex> AddonLock(const std::string& name);
  Status Recover();
  Addon Describe(const std::string& name, AddonType type, const std::string& location,
                 int64_t created_at_ms, const std::string& forked_from,
                 std::optional<int> keep_backups);
  Result<std::optional<Addon>> LoadAddon(const std::string& name);
  Status RecordAddon(const AddonSpec& spec, const std::string& location,
                     const std::string& forked_from, bool ready);
  // Checks that a fork may go into `target`, drops what an interrupted fork
  // left there, and records it as not ready; returns its location.
  Result<std::string> ClaimForkTarget(const AddonSpec& target, Engine& engine,
                                      const std::string& backup_id);
  Result<Backup> ResolveBackup(const std::string& addon, const std::string& backup_id);
  Result<Backup> StartBackupRow(const Addon& addon);
  Status FinishBackupRow(Backup& backup, const Status& outcome);
  Status ApplyRetention(const Addon& addon);

  LocalAddonsOptions options_;
  std::mutex db_mutex_;  // guards db_
  sqlite::Database db_;
  std::mutex locks_mutex_;  // guards addon_locks_
  std::map<std::string, std::shared_ptr<std::mutex>> addon_locks_;
  std::unique_ptr<Engine> sqlite_engine_;
  std::unique_ptr<Engine> postgres_engine_;
  int recovered_backups_ = 0;
};

}  // namespace gitopsd::runtime
