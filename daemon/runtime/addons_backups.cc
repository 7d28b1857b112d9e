// LocalAddons' backups: taking one (durably, then retention), listing them,
// restoring one into its addon, and forking a new addon from one.
#include <spdlog/spdlog.h>

#include <chrono>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <random>

#include "daemon/runtime/addons_internal.h"

namespace gitopsd::runtime {
namespace fs = std::filesystem;
using namespace addons_internal;

namespace {

// 20250101T120000.123Z-3f9a1c: sorts by time, unique enough with the random tail
// (and the table's UNIQUE constraint catches the rest).
std::string NewBackupId(int64_t now_ms) {
  std::time_t seconds = static_cast<std::time_t>(now_ms / 1000);
  std::tm tm{};
  gmtime_r(&seconds, &tm);
  char stamp[32];
  std::strftime(stamp, sizeof(stamp), "%Y%m%dT%H%M%S", &tm);
  std::random_device entropy;
  char id[64];
  std::snprintf(id, sizeof(id), "%s.%03dZ-%06x", stamp, static_cast<int>(now_ms % 1000),
                entropy() & 0xffffffu);
  return id;
}

BackupStatus ParseBackupStatus(std::string_view name) {
  if (name == "running") return BackupStatus::kRunning;
  if (name == "success") return BackupStatus::kSuccess;
  return BackupStatus::kFailed;
}

constexpr char kBackupColumns[] =
    "id, addon, type, path, size, status, error, started_at, ended_at";

Result<Backup> ReadBackupRow(const sqlite::Statement& st) {
  auto type = ParseAddonType(st.Text(2));
  if (!type) return std::unexpected(type.error());
  return Backup{st.Text(0), st.Text(1), *type,
                st.Text(3), st.Int(4),  ParseBackupStatus(st.Text(5)),
                st.Text(6), st.Int(7),  st.Int(8)};
}

}  // namespace

std::string_view BackupStatusName(BackupStatus status) {
  switch (status) {
    case BackupStatus::kRunning:
      return "running";
    case BackupStatus::kSuccess:
      return "success";
    case BackupStatus::kFailed:
      return "failed";
  }
  return "failed";
}

Result<Backup> LocalAddons::StartBackupRow(const Addon& addon) {
  auto engine = EngineFor(addon.type);
  if (!engine) return std::unexpected(engine.error());
  Backup backup;
  backup.addon = addon.name;
  backup.type = addon.type;
  backup.started_at_ms = NowMs();
  backup.id = NewBackupId(backup.started_at_ms);
  backup.path = options_.state_dir + "/backups/" + addon.name + "/" + backup.id +
                (*engine)->BackupExtension();
  std::lock_guard lock(db_mutex_);
  auto inserted = ExecBound(db_,
                            "INSERT INTO runtime_addon_backups (id, addon, type, path, status, "
                            "started_at) VALUES (?1, ?2, ?3, ?4, 'running', ?5)",
                            {backup.id, backup.addon, std::string(AddonTypeName(backup.type)),
                             backup.path, backup.started_at_ms});
  if (!inserted) return std::unexpected(inserted.error());
  return backup;
}

Status LocalAddons::FinishBackupRow(Backup& backup, const Status& outcome) {
  backup.ended_at_ms = NowMs();
  backup.status = outcome ? BackupStatus::kSuccess : BackupStatus::kFailed;
  backup.error = outcome ? "" : outcome.error().message;
  std::error_code ec;
  backup.size_bytes = outcome ? static_cast<int64_t>(fs::file_size(backup.path, ec)) : 0;
  if (ec) backup.size_bytes = 0;
  std::lock_guard lock(db_mutex_);
  return ExecBound(db_,
                   "UPDATE runtime_addon_backups SET status = ?2, error = ?3, size = ?4, "
                   "ended_at = ?5 WHERE id = ?1",
                   {backup.id, std::string(BackupStatusName(backup.status)), backup.error,
                    backup.size_bytes, backup.ended_at_ms});
}

Status LocalAddons::ApplyRetention(const Addon& addon) {
  std::vector<std::string> doomed;
  {
    std::lock_guard lock(db_mutex_);
    auto tx = sqlite::Transaction::Begin(db_);
    if (!tx) return std::unexpected(tx.error());
    {
      auto st = db_.Prepare(
          "SELECT seq, path FROM runtime_addon_backups WHERE addon = ?1 AND status = 'success' "
          "ORDER BY seq DESC");
      if (!st) return std::unexpected(st.error());
      st->Bind(1, addon.name);
      auto rows = sqlite::ReadAll<std::pair<int64_t, std::string>>(
          *st, [](const sqlite::Statement& row) { return std::make_pair(row.Int(0), row.Text(1)); });
      if (!rows) return std::unexpected(rows.error());
      int64_t oldest_kept = 0;
      int kept = 0;
      for (const auto& [seq, path] : *rows) {  // newest first
        if (kept < addon.keep_backups) {
          ++kept;
          oldest_kept = seq;
        } else {
          doomed.push_back(path);
        }
      }
      if (oldest_kept == 0) return Ok();
      // Rows go first (durably), then files: a crash in between leaves an
      // orphan file, never a listed backup without its file.
      auto pruned = ExecBound(db_,
                              "DELETE FROM runtime_addon_backups WHERE addon = ?1 AND seq < ?2 "
                              "AND status IN ('success', 'failed')",
                              {addon.name, oldest_kept});
      if (!pruned) return pruned;
    }
    if (auto committed = tx->Commit(); !committed) return committed;
  }
  for (const std::string& path : doomed) {
    RemoveSqliteFiles(path);
    spdlog::info("addon {}: backup {} deleted by retention (keep {})", addon.name, path,
                 addon.keep_backups);
  }
  return Ok();
}

Result<Backup> LocalAddons::BackupAddon(const std::string& name) {
  auto addon_lock = AddonLock(name);
  std::lock_guard guard(*addon_lock);
  auto addon = LoadAddon(name);
  if (!addon) return std::unexpected(addon.error());
  if (!*addon) return Fail("cannot back up addon " + name + ": no such addon");
  auto engine = EngineFor((*addon)->type);
  if (!engine) return std::unexpected(engine.error());
  auto backup = StartBackupRow(**addon);
  if (!backup) return std::unexpected(backup.error());

  auto started = std::chrono::steady_clock::now();
  const std::string folder = fs::path(backup->path).parent_path().string();
  Status outcome = MakeFolder(folder, "backup");
  if (outcome) {
    outcome = WriteDurably(backup->path, [&](const std::string& temp) {
      return (*engine)->Dump((*addon)->location, temp);
    });
  }
  if (!outcome) {
    outcome = Fail("backup " + backup->id + " of addon " + name + " to " + backup->path +
                   " failed: " + outcome.error().message);
  }
  if (auto recorded = FinishBackupRow(*backup, outcome); !recorded) {
    return Fail("backup " + backup->id + " of addon " + name +
                ": cannot record its outcome: " + recorded.error().message);
  }
  if (!outcome) {
    spdlog::error("{}", outcome.error().message);
    return std::unexpected(outcome.error());
  }
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() -
                                                                  started);
  spdlog::info("addon {}: backup {} done, {} bytes in {} ms", name, backup->id, backup->size_bytes,
               ms.count());
  if (auto retained = ApplyRetention(**addon); !retained) {
    spdlog::warn("addon {}: retention after backup {} failed: {}", name, backup->id,
                 retained.error().message);
  }
  return std::move(*backup);
}

Result<std::vector<Backup>> LocalAddons::ListBackups(const std::string& addon) {
  std::lock_guard lock(db_mutex_);
  auto st =
      db_.Prepare(std::string("SELECT ") + kBackupColumns +
                  " FROM runtime_addon_backups WHERE ?1 = '' OR addon = ?1 ORDER BY seq DESC");
  if (!st) return std::unexpected(st.error());
  st->Bind(1, addon);
  return sqlite::ReadAll<Backup>(*st, ReadBackupRow);
}

Result<Backup> LocalAddons::ResolveBackup(const std::string& addon, const std::string& backup_id) {
  std::optional<Backup> backup;
  {
    std::lock_guard lock(db_mutex_);
    bool latest = backup_id == kLatestBackup;
    auto st = db_.Prepare(std::string("SELECT ") + kBackupColumns +
                          (latest ? " FROM runtime_addon_backups WHERE addon = ?1 AND status = "
                                    "'success' ORDER BY seq DESC LIMIT 1"
                                  : " FROM runtime_addon_backups WHERE id = ?1"));
    if (!st) return std::unexpected(st.error());
    st->Bind(1, latest ? addon : backup_id);
    auto has = st->Step();
    if (!has) return std::unexpected(has.error());
    if (*has) {
      auto row = ReadBackupRow(*st);
      if (!row) return std::unexpected(row.error());
      backup = std::move(*row);
    }
  }
  if (!backup && backup_id == kLatestBackup) {
    return Fail("addon " + addon + " has no successful backup yet");
  }
  if (!backup) return Fail("no backup " + backup_id + " of addon " + addon);
  if (backup->addon != addon) {
    return Fail("backup " + backup_id + " belongs to addon " + backup->addon + ", not " + addon);
  }
  if (backup->status != BackupStatus::kSuccess) {
    return Fail("backup " + backup_id + " of addon " + addon + " is " +
                std::string(BackupStatusName(backup->status)) + ", not a usable backup");
  }
  std::error_code ec;
  if (!fs::is_regular_file(backup->path, ec)) {
    return Fail("the file of backup " + backup->id + " (" + backup->path + ") is missing");
  }
  return std::move(*backup);
}

Result<Backup> LocalAddons::RestoreBackup(const std::string& addon_name,
                                          const std::string& backup_id) {
  auto addon_lock = AddonLock(addon_name);
  std::lock_guard guard(*addon_lock);
  auto addon = LoadAddon(addon_name);
  if (!addon) return std::unexpected(addon.error());
  if (!*addon) return Fail("cannot restore addon " + addon_name + ": no such addon");
  auto backup = ResolveBackup(addon_name, backup_id);
  if (!backup) return Fail("cannot restore addon " + addon_name + ": " + backup.error().message);
  auto engine = EngineFor((*addon)->type);
  if (!engine) return std::unexpected(engine.error());
  auto started = std::chrono::steady_clock::now();
  if (auto restored = (*engine)->Restore((*addon)->location, backup->path); !restored) {
    return Fail("restoring backup " + backup->id + " into addon " + addon_name +
                " failed: " + restored.error().message);
  }
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() -
                                                                  started);
  spdlog::info("addon {}: restored backup {} in {} ms", addon_name, backup->id, ms.count());
  return std::move(*backup);
}

Result<Addon> LocalAddons::ForkAddon(const AddonSpec& target, const std::string& source_name,
                                     const std::string& backup_id) {
  if (auto valid = ValidateName(target.name); !valid) return std::unexpected(valid.error());
  if (target.name == source_name) return Fail("cannot fork addon " + source_name + " into itself");
  auto source_lock = AddonLock(source_name);
  auto target_lock = AddonLock(target.name);
  std::scoped_lock guard(*source_lock, *target_lock);
  auto source = LoadAddon(source_name);
  if (!source) return std::unexpected(source.error());
  if (!*source) return Fail("cannot fork addon " + source_name + ": no such addon");
  if ((*source)->type != target.type) {
    return Fail("cannot fork " + std::string(AddonTypeName((*source)->type)) + " addon " +
                source_name + " into a " + std::string(AddonTypeName(target.type)) + " addon");
  }
  auto backup = ResolveBackup(source_name, backup_id);
  if (!backup) return Fail("cannot fork addon " + source_name + ": " + backup.error().message);
  auto engine = EngineFor(target.type);
  if (!engine) return std::unexpected(engine.error());

  auto location = ClaimForkTarget(target, **engine, backup->id);
  if (!location) return std::unexpected(location.error());
  auto started = std::chrono::steady_clock::now();
  Status filled = (*engine)->CreateFrom(*location, backup->path);
  Status settled;
  {
    std::lock_guard lock(db_mutex_);
    settled = filled ? ExecBound(db_, "UPDATE runtime_addons SET ready = 1 WHERE name = ?1",
                                 {target.name})
                     : ExecBound(db_, "DELETE FROM runtime_addons WHERE name = ?1", {target.name});
  }
  if (!filled) {
    return Fail("forking backup " + backup->id + " of addon " + source_name + " into " +
                target.name + " failed: " + filled.error().message);
  }
  if (!settled) return std::unexpected(settled.error());
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() -
                                                                  started);
  spdlog::info("addon {} forked from backup {} of {} in {} ms", target.name, backup->id,
               source_name, ms.count());
  auto addon = LoadAddon(target.name);
  if (!addon) return std::unexpected(addon.error());
  if (!*addon) return Fail("addon " + target.name + " vanished while it was being forked");
  return std::move(**addon);
}

Result<std::string> LocalAddons::ClaimForkTarget(const AddonSpec& target, Engine& engine,
                                                 const std::string& backup_id) {
  auto loaded = LoadAddonRow(db_mutex_, db_, target.name);
  if (!loaded) return std::unexpected(loaded.error());
  const std::optional<AddonRow>& existing = *loaded;
  if (existing && existing->ready) {
    return Fail("cannot fork into addon " + target.name + ": it already exists (remove it first)");
  }
  if (existing) {
    // An earlier fork into it was interrupted: what it left is ours to drop.
    auto leftover_engine = EngineFor(existing->type);
    if (!leftover_engine) return std::unexpected(leftover_engine.error());
    if (auto dropped = (*leftover_engine)->Drop(existing->location); !dropped) {
      return Fail("cannot clean up the interrupted fork into addon " + target.name + ": " +
                  dropped.error().message);
    }
  }
  // The row comes first (not ready), so a crash mid-fork leaves something
  // known to be ours, which the next fork or RemoveAddon cleans up.
  std::string location = engine.Location(target.name);
  if (auto recorded = RecordAddon(target, location, backup_id, /*ready=*/false); !recorded) {
    return std::unexpected(recorded.error());
  }
  return location;
}

}  // namespace gitopsd::runtime
