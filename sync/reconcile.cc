#include "sync/reconcile.h"

#include <chrono>
#include <map>
#include <set>

#include "sync/json.h"

namespace gitopsd::sync {
namespace {

using Clock = std::chrono::steady_clock;
using Identity = std::pair<std::string, std::string>;  // (kind, name)

int64_t MicrosSince(Clock::time_point start) {
  return std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - start).count();
}

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

bool IsJson(const std::string& path) {
  return path.size() > 5 && path.compare(path.size() - 5, 5, ".json") == 0;
}

std::string Short(const std::string& commit) { return commit.substr(0, 7); }

#define TRY(expr)                                \
  do {                                           \
    auto _s = (expr);                            \
    if (!_s) return std::unexpected(_s.error()); \
  } while (0)

// A file of the new tree, loaded and validated before the transaction opens.
struct LoadedFile {
  std::string path;
  std::string blob_id;
  std::string previous_path;  // the path it had before a rename, else == path
  std::optional<model::Object> object;
  Diagnostics diagnostics;
};

// The changes of one commit, in the shape the transaction applies them.
struct ChangeSet {
  std::vector<std::string> removed_paths;
  std::vector<LoadedFile> files;
  int files_changed = 0;
};

}  // namespace

std::string SyncReport::Summary() const {
  std::string out = "repository " + repository + ": ";
  if (!changed()) {
    out += "at " + Short(to_commit) + ", nothing new";
  } else {
    out += (from_commit.empty() ? std::string("(none)") : Short(from_commit)) + " -> " +
           Short(to_commit) + ": " + std::to_string(files_changed) +
           (files_changed == 1 ? " file" : " files") + " changed, " +
           std::to_string(added) + " added, " + std::to_string(updated) + " updated, " +
           std::to_string(deleted) + " deleted, " + std::to_string(files_failed) +
           (files_failed == 1 ? " file" : " files") + " in error";
  }
  if (own_commit) out += ", a write-back commit of gitopsd";
  out += " (fetch " + std::to_string(fetch_us / 1000) + " ms, apply " +
         std::to_string(apply_us / 1000) + " ms)";
  return out;
}

Reconciler::Reconciler(RepositoryConfig config, git::Repository repo, store::Store& store,
                       const model::Loader& loader)
    : config_(std::move(config)), repo_(std::move(repo)), store_(store), loader_(loader) {}

Result<std::unique_ptr<Reconciler>> Reconciler::Create(RepositoryConfig config,
                                                       store::Store& store,
                                                       const model::Loader& loader) {
  auto repo = git::Repository::OpenOrInit(config.mirror_dir, config.url);
  if (!repo) return std::unexpected(repo.error());
  TRY(store.EnsureRepository(config.name, git::RedactUrl(config.url), config.branch));
  return std::unique_ptr<Reconciler>(
      new Reconciler(std::move(config), std::move(*repo), store, loader));
}

Result<SyncReport> Reconciler::Sync() {
  auto start = Clock::now();
  auto head = repo_.Fetch(config_.branch, config_.credentials);
  int64_t fetch_us = MicrosSince(start);
  if (!head) {
    (void)store_.RecordFetch(config_.name, "", head.error().message);
    return std::unexpected(head.error());
  }
  TRY(store_.RecordFetch(config_.name, *head, ""));
  auto report = Apply(*head);
  if (report) report->fetch_us = fetch_us;
  return report;
}

namespace {

// Reads and validates the new side of every changed .json path.
Result<ChangeSet> LoadChanges(const git::Repository& repo, const RepositoryConfig& config,
                              const model::Loader& loader,
                              const std::vector<git::Change>& changes) {
  ChangeSet set;
  const std::string prefix = config.folder.empty() ? "" : config.folder + "/";
  for (const auto& change : changes) {
    bool old_json = IsJson(change.old_path);
    bool new_json = IsJson(change.new_path);
    bool new_special = change.new_kind == git::EntryKind::kSymlink ||
                       change.new_kind == git::EntryKind::kSubmodule;
    bool old_tracked = old_json || change.old_kind == git::EntryKind::kSymlink ||
                       change.old_kind == git::EntryKind::kSubmodule;
    bool new_tracked = change.kind != git::Change::Kind::kDeleted && (new_json || new_special);
    if (!old_tracked && !new_tracked) continue;  // other files are not ours
    ++set.files_changed;
    if (change.kind == git::Change::Kind::kDeleted ||
        (change.kind == git::Change::Kind::kRenamed && !new_tracked)) {
      set.removed_paths.push_back(change.old_path);
      continue;
    }
    if (change.kind == git::Change::Kind::kRenamed && change.old_path != change.new_path) {
      set.removed_paths.push_back(change.old_path);
    }
    LoadedFile file;
    file.path = change.new_path;
    file.blob_id = change.new_blob_id;
    file.previous_path =
        change.kind == git::Change::Kind::kRenamed && old_tracked ? change.old_path : change.new_path;
    if (new_special) {
      bool link = change.new_kind == git::EntryKind::kSymlink;
      file.diagnostics.push_back(Diagnostic{
          change.new_path, 0, 0,
          link ? "symbolic links are not followed in the sync folder; commit the file itself"
               : "submodules are not supported in the sync folder; commit the files themselves",
          link ? "model:symlink" : "model:submodule"});
      set.files.push_back(std::move(file));
      continue;
    }
    std::string relative = change.new_path.substr(
        change.new_path.compare(0, prefix.size(), prefix) == 0 ? prefix.size() : 0);
    auto text = repo.ReadBlob(change.new_blob_id, config.limits.max_bytes);
    if (!text) {
      auto size = repo.BlobSize(change.new_blob_id);
      std::string message = size && *size > config.limits.max_bytes
                                ? "file is " + std::to_string(*size) +
                                      " bytes, over the limit of " +
                                      std::to_string(config.limits.max_bytes) + " bytes"
                                : text.error().message;
      file.diagnostics.push_back(Diagnostic{change.new_path, 0, 0, message, "json-size"});
    } else {
      model::LoadResult loaded = loader.Load(change.new_path, relative, *text, config.limits);
      file.object = std::move(loaded.object);
      file.diagnostics = std::move(loaded.diagnostics);
    }
    set.files.push_back(std::move(file));
  }
  return set;
}

// Applies a change set inside one transaction; fills the counts of report.
class ApplyStep {
 public:
  ApplyStep(store::Tx& tx, const RepositoryConfig& config, const std::string& commit,
            SyncReport& report)
      : tx_(tx), config_(config), commit_(commit), report_(report) {}

  Status Run(const ChangeSet& set) {
    for (const auto& path : set.removed_paths) TRY(RemovePath(path));
    for (const auto& file : set.files) TRY(PutFile(file));
    for (const auto& id : affected_) TRY(Resolve(id));
    return Ok();
  }

  // Re-decides what is in force for these identities from the recorded files.
  Status Refresh(const std::vector<Identity>& ids) {
    for (const auto& id : ids) TRY(Resolve(id));
    return Ok();
  }

 private:
  Status RemovePath(const std::string& path) {
    auto old = tx_.GetFile(config_.name, path);
    if (!old) return std::unexpected(old.error());
    if (*old && !(*old)->kind.empty()) affected_.insert({(*old)->kind, (*old)->name});
    TRY(tx_.ClearErrors(config_.name, path));
    return tx_.DeleteFile(config_.name, path);
  }

  Status PutFile(const LoadedFile& file) {
    // The identity a path claimed before: a bad file keeps claiming it, so its
    // object keeps the last good version instead of being pruned.
    std::optional<store::FileRecord> previous;
    for (const auto& p : {file.path, file.previous_path}) {
      auto r = tx_.GetFile(config_.name, p);
      if (!r) return std::unexpected(r.error());
      if (*r) {
        previous = std::move(*r);
        break;
      }
    }
    store::FileRecord record{config_.name, file.path, file.blob_id, "", "", false, ""};
    if (previous) {
      record.kind = previous->kind;
      record.name = previous->name;
      if (!previous->kind.empty()) affected_.insert({previous->kind, previous->name});
    }
    TRY(tx_.ClearErrors(config_.name, file.path));
    if (file.object) {
      record.kind = model::KindName(file.object->kind);
      record.name = file.object->name;
      record.valid = true;
      record.body = json::SerializeCompact(file.object->body);
      affected_.insert({record.kind, record.name});
    } else {
      ++report_.files_failed;
      for (const auto& d : file.diagnostics) {
        report_.errors.push_back(d);
        TRY(tx_.AddError(store::FileError{config_.name, d.path, d.line, d.col, d.message, d.rule,
                                          commit_}));
      }
    }
    return tx_.PutFile(record);
  }

  // Decides what is in force for one identity from the files claiming it.
  Status Resolve(const Identity& id) {
    auto claiming = tx_.FilesClaiming(id.first, id.second);
    if (!claiming) return std::unexpected(claiming.error());
    for (const auto& f : *claiming) {
      TRY(tx_.ClearErrors(f.repository, f.path, "model:duplicate"));
    }
    if (claiming->size() > 1) return ReportDuplicates(id, *claiming);
    // An API edit on its way to Git keeps the object; the write-back merges
    // it with what Git holds now.
    auto in_flight = tx_.UnfinishedEditOf(id.first, id.second);
    if (!in_flight) return std::unexpected(in_flight.error());
    if (*in_flight) return Ok();
    auto existing = tx_.GetObject(id.first, id.second);
    if (!existing) return std::unexpected(existing.error());
    if (claiming->empty()) {
      if (*existing && (*existing)->repository == config_.name && config_.prune) {
        TRY(tx_.DeleteObject(id.first, id.second));
        ++report_.deleted;
      }
      return Ok();
    }
    const store::FileRecord& file = claiming->front();
    if (!file.valid) return Ok();  // the last good version stays in force
    store::ObjectRecord object{id.first, id.second, file.repository, file.path, file.body,
                               file.blob_id, commit_, 0, 0};
    auto changed = tx_.PutObject(object);
    if (!changed) return std::unexpected(changed.error());
    if (*changed) {
      ++(*existing ? report_.updated : report_.added);
      report_.changed_objects.push_back(id);
    }
    return Ok();
  }

  Status ReportDuplicates(const Identity& id, const std::vector<store::FileRecord>& files) {
    for (const auto& f : files) {
      std::string others;
      for (const auto& g : files) {
        if (&g == &f) continue;
        others += (others.empty() ? "" : ", ") + g.path;
      }
      Diagnostic d{f.path, 0, 0,
                   id.first + " \"" + id.second + "\" is also defined in " + others +
                       "; neither file is applied until only one remains",
                   "model:duplicate"};
      if (f.repository == config_.name) report_.errors.push_back(d);
      TRY(tx_.AddError(
          store::FileError{f.repository, f.path, 0, 0, d.message, d.rule, commit_}));
    }
    return Ok();
  }

  store::Tx& tx_;
  const RepositoryConfig& config_;
  const std::string& commit_;
  SyncReport& report_;
  std::set<Identity> affected_;
};

}  // namespace

Status Reconciler::Refresh(const std::vector<std::pair<std::string, std::string>>& ids,
                           const std::string& commit) {
  SyncReport ignored;
  return store_.Apply([&](store::Tx& tx) -> Status {
    ApplyStep step(tx, config_, commit, ignored);
    return step.Refresh(ids);
  });
}

Result<SyncReport> Reconciler::Apply(const std::string& commit) {
  auto start = Clock::now();
  SyncReport report;
  report.repository = config_.name;
  auto state = store_.GetRepository(config_.name);
  if (!state) return std::unexpected(state.error());
  std::string applied = *state ? (*state)->applied_commit : "";
  report.from_commit = applied;
  report.to_commit = commit;
  if (applied == commit) return report;

  // The applied commit may be gone from the mirror (a new state folder for
  // the mirror, or history rewritten and pruned): then compare against the
  // recorded files instead of a tree.
  bool have_base = !applied.empty() && repo_.HasCommit(applied);
  auto changes = repo_.DiffTrees(have_base ? applied : "", commit, config_.folder);
  if (!changes) return std::unexpected(changes.error());
  auto loaded = LoadChanges(repo_, config_, loader_, *changes);
  if (!loaded) return std::unexpected(loaded.error());
  ChangeSet set = std::move(*loaded);
  report.files_changed = set.files_changed;

  TRY(store_.Apply([&](store::Tx& tx) -> Status {
    if (!have_base) {
      // Every recorded path missing from the new tree is a deletion.
      auto recorded = tx.ListFiles(config_.name);
      if (!recorded) return std::unexpected(recorded.error());
      std::set<std::string> present;
      for (const auto& f : set.files) present.insert(f.path);
      for (const auto& f : *recorded) {
        if (!present.count(f.path)) set.removed_paths.push_back(f.path);
      }
    }
    auto own = tx.IsOwnCommit(commit);
    if (!own) return std::unexpected(own.error());
    report.own_commit = *own;
    ApplyStep step(tx, config_, commit, report);
    TRY(step.Run(set));
    report.apply_us = MicrosSince(start);
    return tx.SetApplied(config_.name, commit, NowMs(), report.apply_us);
  }));
  return report;
}

}  // namespace gitopsd::sync
