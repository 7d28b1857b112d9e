// Git -> control plane: keeps the store equal to the JSON objects committed
// under a repository's sync folder.
//
// Sync() fetches the watched branch into a bare mirror and, when its head
// differs from the applied commit, diffs the applied tree against the new
// one (limited to the folder), loads only the changed files and applies all
// good changes in one transaction together with the new applied commit.
// A bad file gets diagnostics and its object keeps its last good version;
// the commit's other files still apply. Renames keep identity; deleted files
// delete their objects (unless prune is off); a force-push is just another
// tree diff against what is applied.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "sync/diagnostic.h"
#include "sync/git.h"
#include "sync/model.h"
#include "sync/status.h"
#include "sync/store.h"

namespace gitopsd::sync {

struct RepositoryConfig {
  std::string name;           // configured name, e.g. "shop"
  std::string url;            // file://, https://, ssh:// or a local path
  std::string branch = "main";
  std::string folder = ".gitops";
  bool prune = true;
  git::Credentials credentials;
  model::LoadOptions limits;  // per-file size and nesting limits
  std::string mirror_dir;     // where the bare mirror lives (in the state folder)
};

struct SyncReport {
  std::string repository;
  std::string from_commit;  // applied before (empty on the first sync)
  std::string to_commit;    // applied after
  int added = 0;            // objects created
  int updated = 0;          // objects whose body or path changed
  int deleted = 0;          // objects pruned
  int files_changed = 0;    // .json files the tree diff touched
  int files_failed = 0;     // of those, how many are in error now
  Diagnostics errors;       // problems found by this sync
  // (kind, name) of the objects added or updated by this sync.
  std::vector<std::pair<std::string, std::string>> changed_objects;
  bool own_commit = false;  // to_commit is a write-back commit of gitopsd's
  int64_t fetch_us = 0;
  int64_t apply_us = 0;
  bool changed() const { return from_commit != to_commit; }
  // One log line: commit, what changed, errors, durations.
  std::string Summary() const;
};

// One per repository. Not thread-safe: the caller serialises calls.
class Reconciler {
 public:
  static Result<std::unique_ptr<Reconciler>> Create(RepositoryConfig config, store::Store& store,
                                                    const model::Loader& loader);
  // Fetch, then Apply(head). A failed fetch is recorded in the store
  // (fetch_failures, last_fetch_error) and returned; nothing else changes.
  Result<SyncReport> Sync();
  // Applies a commit present in the mirror. Idempotent.
  Result<SyncReport> Apply(const std::string& commit);

  // Re-decides the objects in force for these (kind, name) identities from
  // the files recorded at the applied commit (used once a write-back lands).
  Status Refresh(const std::vector<std::pair<std::string, std::string>>& ids,
                 const std::string& commit);

  const RepositoryConfig& config() const { return config_; }
  // The mirror, for the write-back (same thread as Sync).
  git::Repository& repository() { return repo_; }

 private:
  Reconciler(RepositoryConfig config, git::Repository repo, store::Store& store,
             const model::Loader& loader);
  RepositoryConfig config_;
  git::Repository repo_;
  store::Store& store_;
  const model::Loader& loader_;
};

}  // namespace gitopsd::sync
