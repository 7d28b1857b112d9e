// LocalAddons: opening the state database, recovering from a crash, and
// ensuring, finding, listing and removing addons; also the durable-file and
// row helpers the other addons files share (addons_internal.h).
#include "daemon/runtime/addons.h"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>

#include "daemon/runtime/addons_internal.h"
#include "daemon/runtime/module_db.h"

namespace gitopsd::runtime {
namespace fs = std::filesystem;
using namespace addons_internal;

namespace {

// Append only: migration i takes the module from version i to i + 1.
const std::vector<std::string> kMigrations = {
    R"sql(
CREATE TABLE runtime_addons (
  name TEXT PRIMARY KEY,
  type TEXT NOT NULL CHECK (type IN ('sqlite', 'postgresql')),
  location TEXT NOT NULL,           -- sqlite: absolute file path; postgresql: database name
  created_at INTEGER NOT NULL,      -- unix milliseconds
  forked_from TEXT NOT NULL DEFAULT '',
  keep_backups INTEGER,             -- NULL = the configured default
  ready INTEGER NOT NULL DEFAULT 1  -- 0 while a fork into it has not finished
);
CREATE TABLE runtime_addon_backups (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,  -- creation order: "newest" means highest seq
  id TEXT NOT NULL UNIQUE,
  addon TEXT NOT NULL,              -- no foreign key: backups may outlive their addon
  type TEXT NOT NULL,
  path TEXT NOT NULL,
  size INTEGER NOT NULL DEFAULT 0,
  status TEXT NOT NULL CHECK (status IN ('running', 'success', 'failed')),
  error TEXT NOT NULL DEFAULT '',
  started_at INTEGER NOT NULL,
  ended_at INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX runtime_addon_backups_by_addon ON runtime_addon_backups (addon, status, seq);
)sql",
};

constexpr char kModule[] = "runtime-addons";

constexpr char kAddonColumns[] =
    "name, type, location, created_at, forked_from, keep_backups, ready";

Result<AddonRow> ReadAddonRow(const sqlite::Statement& st) {
  auto type = ParseAddonType(st.Text(1));
  if (!type) return std::unexpected(type.error());
  AddonRow row{st.Text(0), *type, st.Text(2), st.Int(3), st.Text(4), std::nullopt, st.Int(6) != 0};
  if (!st.IsNull(5)) row.keep_backups = static_cast<int>(st.Int(5));
  return row;
}

}  // namespace

namespace addons_internal {

// ---- names ----------------------------------------------------------------

Status ValidateName(const std::string& name) {
  bool ok =
      !name.empty() && name.size() <= 63 && name[0] >= 'a' && name[0] <= 'z' && name.back() != '-';
  for (char c : name) ok = ok && ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-');
  if (!ok) {
    return Fail("invalid addon name \"" + name +
                "\": use 1-63 characters of a-z, 0-9 and '-', starting with a letter and not "
                "ending with '-'");
  }
  return Ok();
}

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// ---- files ----------------------------------------------------------------

Status FsyncPath(const std::string& path, bool directory) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC | (directory ? O_DIRECTORY : 0));
  if (fd < 0) return Fail("cannot open " + path + " to sync it: " + std::strerror(errno));
  int rc = fsync(fd);
  int err = errno;
  close(fd);
  if (rc != 0) return Fail("cannot sync " + path + " to disk: " + std::strerror(err));
  return Ok();
}

Status MakeFolder(const std::string& dir, const std::string& what) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return Fail("cannot create the " + what + " folder " + dir + ": " + ec.message());
  return Ok();
}

// Removes a SQLite file with its sidecars; missing files are fine.
void RemoveSqliteFiles(const std::string& path) {
  std::error_code ec;
  for (const char* suffix : {"", "-journal", "-wal", "-shm"}) fs::remove(path + suffix, ec);
}

Result<std::optional<AddonRow>> LoadAddonRow(std::mutex& db_mutex, sqlite::Database& db,
                                             const std::string& name) {
  std::lock_guard lock(db_mutex);
  auto st =
      db.Prepare(std::string("SELECT ") + kAddonColumns + " FROM runtime_addons WHERE name = ?1");
  if (!st) return std::unexpected(st.error());
  st->Bind(1, name);
  auto has = st->Step();
  if (!has) return std::unexpected(has.error());
  if (!*has) return std::optional<AddonRow>();
  auto row = ReadAddonRow(*st);
  if (!row) return std::unexpected(row.error());
  return std::optional<AddonRow>(std::move(*row));
}

Status ExecBound(sqlite::Database& db, const std::string& sql,
                 const std::vector<std::variant<std::string, int64_t>>& values) {
  auto st = db.Prepare(sql);
  if (!st) return std::unexpected(st.error());
  for (size_t i = 0; i < values.size(); ++i) {
    int index = static_cast<int>(i + 1);
    if (const auto* text = std::get_if<std::string>(&values[i])) {
      st->Bind(index, std::string_view(*text));
    } else {
      st->Bind(index, std::get<int64_t>(values[i]));
    }
  }
  return st->Run();
}

}  // namespace addons_internal

std::string_view AddonTypeName(AddonType type) {
  return type == AddonType::kSqlite ? "sqlite" : "postgresql";
}

Result<AddonType> ParseAddonType(std::string_view name) {
  if (name == "sqlite") return AddonType::kSqlite;
  if (name == "postgresql") return AddonType::kPostgresql;
  return Fail("unknown addon type \"" + std::string(name) + "\" (expected sqlite or postgresql)");
}

// ---- LocalAddons -------------------------------------------------------------

Result<std::unique_ptr<LocalAddons>> LocalAddons::Open(LocalAddonsOptions options) {
  if (options.state_dir.empty()) return Fail("addons: no stateDir configured");
  if (options.keep_backups < 1) {
    return Fail("addons: keep_backups must be at least 1 (got " +
                std::to_string(options.keep_backups) + ")");
  }
  std::error_code ec;
  options.state_dir = fs::absolute(options.state_dir, ec).lexically_normal().string();
  while (options.state_dir.size() > 1 && options.state_dir.back() == '/')
    options.state_dir.pop_back();
  if (auto made = MakeFolder(options.state_dir, "state"); !made)
    return std::unexpected(made.error());
  auto db = OpenModuleDatabase(options.state_dir + "/state.db", kModule, kMigrations);
  if (!db) return std::unexpected(db.error());
  std::unique_ptr<LocalAddons> addons(new LocalAddons(std::move(options), std::move(*db)));
  if (auto recovered = addons->Recover(); !recovered) return std::unexpected(recovered.error());
  return addons;
}

LocalAddons::LocalAddons(LocalAddonsOptions options, sqlite::Database db)
    : options_(std::move(options)), db_(std::move(db)) {
  sqlite_engine_ = MakeSqliteEngine(options_.state_dir);
  if (options_.postgres) postgres_engine_ = MakePostgresEngine(*options_.postgres);
}

LocalAddons::~LocalAddons() = default;

Status LocalAddons::Recover() {
  std::lock_guard lock(db_mutex_);
  auto st = db_.Prepare("SELECT id, path FROM runtime_addon_backups WHERE status = 'running'");
  if (!st) return std::unexpected(st.error());
  auto interrupted = sqlite::ReadAll<std::pair<std::string, std::string>>(
      *st, [](const sqlite::Statement& row) { return std::make_pair(row.Text(0), row.Text(1)); });
  if (!interrupted) return std::unexpected(interrupted.error());
  for (const auto& [id, path] : *interrupted) {
    // The rename may have happened before the crash; unrecorded, the file
    // cannot be trusted, so it goes too.
    RemoveSqliteFiles(path + kPartialSuffix);
    RemoveSqliteFiles(path);
    auto marked =
        ExecBound(db_,
                  "UPDATE runtime_addon_backups SET status = 'failed', size = 0, "
                  "error = ?2, ended_at = ?3 WHERE id = ?1",
                  {id, std::string("interrupted: gitopsd stopped during the backup"), NowMs()});
    if (!marked) return marked;
    spdlog::warn("addon backup {} was interrupted by a restart; marked failed", id);
    ++recovered_backups_;
  }
  return Ok();
}

Result<LocalAddons::Engine*> LocalAddons::EngineFor(AddonType type) {
  if (type == AddonType::kSqlite) return sqlite_engine_.get();
  if (!postgres_engine_) {
    return Fail(
        "postgresql addons need a PostgreSQL server in the runtime configuration "
        "(host, port, user, password, admin database)");
  }
  return postgres_engine_.get();
}

std::shared_ptr<std::mutex> LocalAddons::AddonLock(const std::string& name) {
  std::lock_guard lock(locks_mutex_);
  auto& slot = addon_locks_[name];
  if (!slot) slot = std::make_shared<std::mutex>();
  return slot;
}

Addon LocalAddons::Describe(const std::string& name, AddonType type, const std::string& location,
                            int64_t created_at_ms, const std::string& forked_from,
                            std::optional<int> keep_backups) {
  Addon addon{name,        type,
              location,    created_at_ms,
              forked_from, keep_backups.value_or(options_.keep_backups),
              {},          {}};
  // Without a configured PostgreSQL server the addon is still listed, without
  // a connection; everything that would use it fails in EngineFor.
  if (auto engine = EngineFor(type); engine) (*engine)->Connect(location, addon);
  return addon;
}

Result<std::optional<Addon>> LocalAddons::LoadAddon(const std::string& name) {
  auto loaded = LoadAddonRow(db_mutex_, db_, name);
  if (!loaded) return std::unexpected(loaded.error());
  std::optional<AddonRow> row = std::move(*loaded);
  if (!row || !row->ready) return std::optional<Addon>();
  return std::optional<Addon>(Describe(row->name, row->type, row->location, row->created_at_ms,
                                       row->forked_from, row->keep_backups));
}

Status LocalAddons::RecordAddon(const AddonSpec& spec, const std::string& location,
                                const std::string& forked_from, bool ready) {
  std::lock_guard lock(db_mutex_);
  auto st = db_.Prepare(
      "INSERT INTO runtime_addons (name, type, location, created_at, forked_from, keep_backups, "
      "ready) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT (name) DO UPDATE SET "
      "type = excluded.type, location = excluded.location, keep_backups = excluded.keep_backups, "
      "ready = excluded.ready, forked_from = excluded.forked_from");
  if (!st) return std::unexpected(st.error());
  st->Bind(1, spec.name).Bind(2, AddonTypeName(spec.type)).Bind(3, location).Bind(4, NowMs());
  st->Bind(5, forked_from);
  if (spec.keep_backups) {
    st->Bind(6, static_cast<int64_t>(*spec.keep_backups));
  } else {
    st->BindNull(6);
  }
  st->Bind(7, static_cast<int64_t>(ready ? 1 : 0));
  return st->Run();
}

Result<Addon> LocalAddons::EnsureAddon(const AddonSpec& spec) {
  if (auto valid = ValidateName(spec.name); !valid) return std::unexpected(valid.error());
  if (spec.keep_backups && *spec.keep_backups < 1) {
    return Fail("addon " + spec.name + ": keep_backups must be at least 1");
  }
  auto engine = EngineFor(spec.type);
  if (!engine) return Fail("addon " + spec.name + ": " + engine.error().message);
  auto addon_lock = AddonLock(spec.name);
  std::lock_guard guard(*addon_lock);
  auto loaded = LoadAddonRow(db_mutex_, db_, spec.name);
  if (!loaded) return std::unexpected(loaded.error());
  std::optional<AddonRow> row = std::move(*loaded);
  if (row && !row->ready) {
    return Fail("addon " + spec.name +
                ": a fork into it did not finish; fork it again or remove it");
  }
  if (row && row->type != spec.type) {
    return Fail("addon " + spec.name + " exists as " + std::string(AddonTypeName(row->type)) +
                ", not " + std::string(AddonTypeName(spec.type)) +
                "; remove it first to change its type");
  }
  const std::string location = row ? row->location : (*engine)->Location(spec.name);
  auto exists = (*engine)->Exists(location);
  if (!exists) return Fail("addon " + spec.name + ": " + exists.error().message);
  if (row && !*exists) {
    return Fail("addon " + spec.name + " is recorded at " + location +
                " but its data is gone; to start over, remove the addon (its backups stay), "
                "ensure it again and restore the latest backup");
  }
  if (!*exists) {
    if (auto created = (*engine)->Create(location); !created) {
      return Fail("addon " + spec.name + ": " + created.error().message);
    }
    spdlog::info("addon {} ({}) created at {}", spec.name, AddonTypeName(spec.type), location);
  }
  if (auto recorded = RecordAddon(spec, location, row ? row->forked_from : "", /*ready=*/true);
      !recorded) {
    return std::unexpected(recorded.error());
  }
  auto addon = LoadAddon(spec.name);
  if (!addon) return std::unexpected(addon.error());
  if (!*addon) return Fail("addon " + spec.name + " vanished while it was being ensured");
  return std::move(**addon);
}

Result<std::optional<Addon>> LocalAddons::FindAddon(const std::string& name) {
  return LoadAddon(name);
}

Result<std::vector<Addon>> LocalAddons::ListAddons() {
  std::vector<AddonRow> rows;
  {
    std::lock_guard lock(db_mutex_);
    auto st = db_.Prepare(std::string("SELECT ") + kAddonColumns +
                          " FROM runtime_addons WHERE ready = 1 ORDER BY name");
    if (!st) return std::unexpected(st.error());
    auto read = sqlite::ReadAll<AddonRow>(*st, ReadAddonRow);
    if (!read) return std::unexpected(read.error());
    rows = std::move(*read);
  }
  std::vector<Addon> addons;
  for (const AddonRow& row : rows) {
    addons.push_back(Describe(row.name, row.type, row.location, row.created_at_ms, row.forked_from,
                              row.keep_backups));
  }
  return addons;
}

Status LocalAddons::RemoveAddon(const std::string& name, bool delete_backups) {
  auto addon_lock = AddonLock(name);
  std::lock_guard guard(*addon_lock);
  auto loaded = LoadAddonRow(db_mutex_, db_, name);
  if (!loaded) return std::unexpected(loaded.error());
  std::optional<AddonRow> row = std::move(*loaded);
  if (row) {
    auto engine = EngineFor(row->type);
    if (!engine) return Fail("addon " + name + ": " + engine.error().message);
    if (auto dropped = (*engine)->Drop(row->location); !dropped) {
      return Fail("cannot remove addon " + name + ": " + dropped.error().message);
    }
    std::lock_guard lock(db_mutex_);
    if (auto forgot = ExecBound(db_, "DELETE FROM runtime_addons WHERE name = ?1", {name});
        !forgot) {
      return forgot;
    }
    spdlog::info("addon {} removed ({} dropped)", name, row->location);
  }
  if (!delete_backups) return Ok();
  auto backups = ListBackups(name);
  if (!backups) return std::unexpected(backups.error());
  std::lock_guard lock(db_mutex_);
  if (auto forgot = ExecBound(db_, "DELETE FROM runtime_addon_backups WHERE addon = ?1", {name});
      !forgot) {
    return forgot;
  }
  for (const Backup& backup : *backups) RemoveSqliteFiles(backup.path);
  std::error_code ec;
  fs::remove(options_.state_dir + "/backups/" + name, ec);  // only if empty
  return Ok();
}

}  // namespace gitopsd::runtime
