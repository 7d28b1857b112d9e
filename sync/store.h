// The control plane's state: one SQLite file (WAL) holding the objects in
// force, the tree state each repository was last applied at, the errors of
// bad files and per-repository sync status. Versioned migrations run at
// open; a database written by a newer gitopsd is refused, never downgraded.
//
// Thread-safe: one connection guarded by a mutex. Every change happens inside
// Store::Apply, one transaction: either all of it is stored or none.
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "sync/sqlite.h"
#include "sync/status.h"

namespace gitopsd::store {

inline constexpr int kSchemaVersion = 1;

// An object in force: the last good version of (kind, name).
struct ObjectRecord {
  std::string kind;           // "Template", "ReleaseFlow", "PreviewTemplate"
  std::string name;
  std::string repository;     // configured repository it came from
  std::string path;           // repository-relative path of its file
  std::string body;           // compact JSON
  std::string blob_id;        // Git blob it was read from
  std::string source_commit;  // commit that brought this version
  int64_t revision = 0;       // increases by one on every change
  int64_t updated_at_ms = 0;
};

// What a path of the sync folder held at the applied commit, good or bad.
// A bad file keeps claiming the identity its path last had, so its object
// keeps its last good version instead of being pruned.
struct FileRecord {
  std::string repository;
  std::string path;
  std::string blob_id;
  std::string kind;  // empty when the identity is unknown
  std::string name;
  bool valid = false;
  std::string body;  // compact JSON when valid
};

struct FileError {
  std::string repository;
  std::string path;
  int line = 0;
  int col = 0;
  std::string message;
  std::string rule;
  std::string commit_id;  // commit in which the problem was seen
};

struct RepositoryState {
  std::string name;
  std::string url;  // redacted
  std::string branch;
  std::string applied_commit;  // empty before the first sync
  std::string fetched_commit;
  int64_t last_sync_at_ms = 0;
  int64_t last_sync_duration_us = 0;
  int64_t fetch_failures = 0;  // consecutive; 0 after a good fetch
  int64_t fetch_failures_total = 0;
  std::string last_fetch_error;
};

// The operations of one transaction. Obtained only inside Store::Apply.
class Tx {
 public:
  Result<std::optional<FileRecord>> GetFile(const std::string& repo, const std::string& path);
  Result<std::vector<FileRecord>> FilesClaiming(const std::string& kind, const std::string& name);
  Result<std::vector<FileRecord>> ListFiles(const std::string& repo);
  Status PutFile(const FileRecord& file);
  Status DeleteFile(const std::string& repo, const std::string& path);

  Result<std::optional<ObjectRecord>> GetObject(const std::string& kind, const std::string& name);
  // Stores the object; bumps the revision when body or path changed.
  // Returns true when something changed.
  Result<bool> PutObject(const ObjectRecord& object);
  Status DeleteObject(const std::string& kind, const std::string& name);

  // Removes the errors recorded for a path (only those of `rule` if given).
  Status ClearErrors(const std::string& repo, const std::string& path,
                     const std::string& rule = "");
  Status AddError(const FileError& error);

  Status SetApplied(const std::string& repo, const std::string& commit, int64_t at_ms,
                    int64_t duration_us);

 private:
  friend class Store;
  explicit Tx(sqlite::Database& db) : db_(db) {}
  sqlite::Database& db_;
};

class Store {
 public:
  // Opens or creates the database and brings its schema to kSchemaVersion.
  static Result<std::unique_ptr<Store>> Open(const std::string& path);

  // Runs fn inside one transaction; commits only if fn succeeds.
  Status Apply(const std::function<Status(Tx&)>& fn);

  Status EnsureRepository(const std::string& name, const std::string& url,
                          const std::string& branch);
  // Records a fetch: the commit on success, or the error (counts failures).
  Status RecordFetch(const std::string& repo, const std::string& commit, const std::string& error);

  Result<std::vector<ObjectRecord>> ListObjects(const std::string& kind = "") const;
  Result<std::optional<ObjectRecord>> GetObject(const std::string& kind,
                                                const std::string& name) const;
  Result<std::vector<FileError>> ListErrors(const std::string& repo = "") const;
  Result<std::vector<RepositoryState>> ListRepositories() const;
  Result<std::optional<RepositoryState>> GetRepository(const std::string& name) const;
  Result<int64_t> CountObjects() const;
  // Objects in force per kind (kinds with none are absent).
  Result<std::map<std::string, int64_t>> CountObjectsByKind() const;

  const std::string& path() const { return db_.path(); }

 private:
  explicit Store(sqlite::Database db) : db_(std::move(db)) {}
  Status Migrate();
  mutable std::mutex mu_;
  mutable sqlite::Database db_;
};

}  // namespace gitopsd::store
