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

inline constexpr int kSchemaVersion = 2;

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

// An API edit on its way to Git (the outbox). States: "pending" (stored,
// not yet committed), "committed" (in a local commit, commit_id, push not
// yet confirmed), "pushed" (in the remote branch), "conflict" (overlapped a
// Git change; see ConflictRecord), "superseded" (replaced by a later edit of
// the same object before it was committed).
struct EditRecord {
  int64_t id = 0;
  std::string repository;
  std::string kind;
  std::string name;
  std::string op;         // "put" or "delete"
  std::string body;       // compact JSON of the edited object ("" for delete)
  std::string base_body;  // compact JSON both sides agreed on ("" = no file then)
  std::string path;       // file the edit goes to
  std::string actor;      // API token name
  std::string state;
  std::string commit_id;  // set once committed
  std::string last_error;
  int64_t attempts = 0;
  int64_t created_at_ms = 0;
  int64_t updated_at_ms = 0;
};

// Concurrent edits that could not merge. Both versions are kept; in_force
// says which side the policy left in force ("git" or "api").
struct ConflictRecord {
  int64_t id = 0;
  int64_t edit_id = 0;
  std::string repository;
  std::string kind;
  std::string name;
  std::string path;
  std::string base_body;
  std::string git_body;  // "" when Git deleted the file
  std::string api_body;  // "" when the API deleted the object
  std::string policy;    // "git-wins" or "api-wins"
  std::string in_force;  // "git" or "api"
  std::string pointers;  // JSON array of the overlapping JSON pointers
  int64_t created_at_ms = 0;
  int64_t resolved_at_ms = 0;  // 0 while open
  std::string resolution;      // "git", "api" or "body" once resolved
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

  // Outbox.
  Result<int64_t> AddEdit(const EditRecord& edit);  // returns the id
  Status UpdateEdit(const EditRecord& edit);         // by id: state, commit_id, errors, attempts
  // Edits of the repository in state pending or committed, oldest first.
  Result<std::vector<EditRecord>> UnfinishedEdits(const std::string& repo);
  // The unfinished edit of one object, if any.
  Result<std::optional<EditRecord>> UnfinishedEditOf(const std::string& kind,
                                                     const std::string& name);

  Result<int64_t> AddConflict(const ConflictRecord& conflict);
  Status ResolveConflict(int64_t id, const std::string& resolution, int64_t at_ms);
  Result<std::optional<ConflictRecord>> GetConflict(int64_t id);

  // Commits gitopsd made itself, so the sync never takes them as foreign.
  Status RecordOwnCommit(const std::string& repo, const std::string& commit);
  Result<bool> IsOwnCommit(const std::string& commit);

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
  Result<std::optional<EditRecord>> GetEdit(int64_t id) const;
  Result<int64_t> CountUnfinishedEdits(const std::string& repo = "") const;
  Result<std::vector<ConflictRecord>> ListConflicts(bool open_only = true) const;
  Result<std::optional<ConflictRecord>> GetConflict(int64_t id) const;

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
