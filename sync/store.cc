#include "sync/store.h"

#include <sys/stat.h>

#include <array>
#include <chrono>

namespace gitopsd::store {
namespace {

// Migration i brings the schema from version i to i + 1. Append only.
constexpr std::array<const char*, kSchemaVersion> kMigrations = {
    R"sql(
CREATE TABLE repositories (
  name TEXT PRIMARY KEY,
  url TEXT NOT NULL,
  branch TEXT NOT NULL,
  applied_commit TEXT NOT NULL DEFAULT '',
  fetched_commit TEXT NOT NULL DEFAULT '',
  last_sync_at_ms INTEGER NOT NULL DEFAULT 0,
  last_sync_duration_us INTEGER NOT NULL DEFAULT 0,
  fetch_failures INTEGER NOT NULL DEFAULT 0,
  fetch_failures_total INTEGER NOT NULL DEFAULT 0,
  last_fetch_error TEXT NOT NULL DEFAULT ''
);
CREATE TABLE objects (
  kind TEXT NOT NULL,
  name TEXT NOT NULL,
  repository TEXT NOT NULL,
  path TEXT NOT NULL,
  body TEXT NOT NULL,
  blob_id TEXT NOT NULL,
  source_commit TEXT NOT NULL,
  revision INTEGER NOT NULL,
  updated_at_ms INTEGER NOT NULL,
  PRIMARY KEY (kind, name)
);
CREATE TABLE files (
  repository TEXT NOT NULL,
  path TEXT NOT NULL,
  blob_id TEXT NOT NULL,
  kind TEXT NOT NULL,
  name TEXT NOT NULL,
  valid INTEGER NOT NULL,
  body TEXT NOT NULL,
  PRIMARY KEY (repository, path)
);
CREATE INDEX files_by_identity ON files (kind, name);
CREATE TABLE file_errors (
  id INTEGER PRIMARY KEY,
  repository TEXT NOT NULL,
  path TEXT NOT NULL,
  line INTEGER NOT NULL,
  col INTEGER NOT NULL,
  message TEXT NOT NULL,
  rule TEXT NOT NULL,
  commit_id TEXT NOT NULL
);
CREATE INDEX file_errors_by_path ON file_errors (repository, path);
)sql",
    R"sql(
CREATE TABLE edits (
  id INTEGER PRIMARY KEY,
  repository TEXT NOT NULL,
  kind TEXT NOT NULL,
  name TEXT NOT NULL,
  op TEXT NOT NULL,
  body TEXT NOT NULL,
  base_body TEXT NOT NULL,
  path TEXT NOT NULL,
  actor TEXT NOT NULL,
  state TEXT NOT NULL,
  commit_id TEXT NOT NULL DEFAULT '',
  last_error TEXT NOT NULL DEFAULT '',
  attempts INTEGER NOT NULL DEFAULT 0,
  created_at_ms INTEGER NOT NULL,
  updated_at_ms INTEGER NOT NULL
);
CREATE INDEX edits_unfinished ON edits (repository, state);
CREATE INDEX edits_by_object ON edits (kind, name, state);
CREATE TABLE conflicts (
  id INTEGER PRIMARY KEY,
  edit_id INTEGER NOT NULL,
  repository TEXT NOT NULL,
  kind TEXT NOT NULL,
  name TEXT NOT NULL,
  path TEXT NOT NULL,
  base_body TEXT NOT NULL,
  git_body TEXT NOT NULL,
  api_body TEXT NOT NULL,
  policy TEXT NOT NULL,
  in_force TEXT NOT NULL,
  pointers TEXT NOT NULL,
  created_at_ms INTEGER NOT NULL,
  resolved_at_ms INTEGER NOT NULL DEFAULT 0,
  resolution TEXT NOT NULL DEFAULT ''
);
CREATE TABLE own_commits (
  commit_id TEXT PRIMARY KEY,
  repository TEXT NOT NULL
);
)sql",
};

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

#define TRY(expr)                                     \
  do {                                                \
    auto _s = (expr);                                 \
    if (!_s) return std::unexpected(_s.error());      \
  } while (0)

ObjectRecord ReadObject(const sqlite::Statement& st) {
  ObjectRecord o;
  o.kind = st.Text(0);
  o.name = st.Text(1);
  o.repository = st.Text(2);
  o.path = st.Text(3);
  o.body = st.Text(4);
  o.blob_id = st.Text(5);
  o.source_commit = st.Text(6);
  o.revision = st.Int(7);
  o.updated_at_ms = st.Int(8);
  return o;
}

constexpr const char* kObjectColumns =
    "kind, name, repository, path, body, blob_id, source_commit, revision, updated_at_ms";

FileRecord ReadFile(const sqlite::Statement& st) {
  FileRecord f;
  f.repository = st.Text(0);
  f.path = st.Text(1);
  f.blob_id = st.Text(2);
  f.kind = st.Text(3);
  f.name = st.Text(4);
  f.valid = st.Int(5) != 0;
  f.body = st.Text(6);
  return f;
}

RepositoryState ReadRepository(const sqlite::Statement& st) {
  RepositoryState r;
  r.name = st.Text(0);
  r.url = st.Text(1);
  r.branch = st.Text(2);
  r.applied_commit = st.Text(3);
  r.fetched_commit = st.Text(4);
  r.last_sync_at_ms = st.Int(5);
  r.last_sync_duration_us = st.Int(6);
  r.fetch_failures = st.Int(7);
  r.fetch_failures_total = st.Int(8);
  r.last_fetch_error = st.Text(9);
  return r;
}

constexpr const char* kRepositoryColumns =
    "name, url, branch, applied_commit, fetched_commit, last_sync_at_ms, last_sync_duration_us, "
    "fetch_failures, fetch_failures_total, last_fetch_error";


constexpr const char* kEditColumns =
    "id, repository, kind, name, op, body, base_body, path, actor, state, commit_id, last_error, "
    "attempts, created_at_ms, updated_at_ms";

EditRecord ReadEdit(const sqlite::Statement& st) {
  EditRecord e;
  e.id = st.Int(0);
  e.repository = st.Text(1);
  e.kind = st.Text(2);
  e.name = st.Text(3);
  e.op = st.Text(4);
  e.body = st.Text(5);
  e.base_body = st.Text(6);
  e.path = st.Text(7);
  e.actor = st.Text(8);
  e.state = st.Text(9);
  e.commit_id = st.Text(10);
  e.last_error = st.Text(11);
  e.attempts = st.Int(12);
  e.created_at_ms = st.Int(13);
  e.updated_at_ms = st.Int(14);
  return e;
}

constexpr const char* kConflictColumns =
    "id, edit_id, repository, kind, name, path, base_body, git_body, api_body, policy, in_force, "
    "pointers, created_at_ms, resolved_at_ms, resolution";

ConflictRecord ReadConflict(const sqlite::Statement& st) {
  ConflictRecord c;
  c.id = st.Int(0);
  c.edit_id = st.Int(1);
  c.repository = st.Text(2);
  c.kind = st.Text(3);
  c.name = st.Text(4);
  c.path = st.Text(5);
  c.base_body = st.Text(6);
  c.git_body = st.Text(7);
  c.api_body = st.Text(8);
  c.policy = st.Text(9);
  c.in_force = st.Text(10);
  c.pointers = st.Text(11);
  c.created_at_ms = st.Int(12);
  c.resolved_at_ms = st.Int(13);
  c.resolution = st.Text(14);
  return c;
}

}  // namespace

Result<std::unique_ptr<Store>> Store::Open(const std::string& path) {
  auto db = sqlite::Database::Open(path, /*create=*/true);
  if (!db) return std::unexpected(db.error());
  chmod(path.c_str(), 0600);
  std::unique_ptr<Store> store(new Store(std::move(*db)));
  TRY(store->Migrate());
  return store;
}

Status Store::Migrate() {
  std::lock_guard lock(mu_);
  auto st = db_.Prepare("PRAGMA user_version");
  if (!st) return std::unexpected(st.error());
  auto row = st->Step();
  if (!row) return std::unexpected(row.error());
  int64_t version = st->Int(0);
  if (version > kSchemaVersion) {
    return Fail("state database " + db_.path() + " has schema version " +
                std::to_string(version) + ", written by a newer gitopsd (this one knows up to " +
                std::to_string(kSchemaVersion) +
                "); upgrade gitopsd or point stateDir at another folder");
  }
  if (version > 0) {
    // A damaged file is found now, not in the middle of a sync.
    auto check = db_.Prepare("PRAGMA quick_check");
    if (!check) return std::unexpected(check.error());
    auto ok = check->Step();
    if (!ok) return std::unexpected(ok.error());
    if (check->Text(0) != "ok") {
      return Fail("state database " + db_.path() + " is damaged (" + check->Text(0) +
                  "); restore it from a backup or move it away to resync from Git");
    }
  }
  for (int64_t v = version; v < kSchemaVersion; ++v) {
    auto tx = sqlite::Transaction::Begin(db_);
    if (!tx) return std::unexpected(tx.error());
    TRY(db_.Exec(kMigrations[static_cast<size_t>(v)]));
    TRY(db_.Exec("PRAGMA user_version = " + std::to_string(v + 1)));
    TRY(tx->Commit());
  }
  return Ok();
}

Status Store::Apply(const std::function<Status(Tx&)>& fn) {
  std::lock_guard lock(mu_);
  auto tx = sqlite::Transaction::Begin(db_);
  if (!tx) return std::unexpected(tx.error());
  Tx ops(db_);
  TRY(fn(ops));
  return tx->Commit();
}

Status Store::EnsureRepository(const std::string& name, const std::string& url,
                               const std::string& branch) {
  std::lock_guard lock(mu_);
  auto st = db_.Prepare(
      "INSERT INTO repositories (name, url, branch) VALUES (?1, ?2, ?3) "
      "ON CONFLICT (name) DO UPDATE SET url = excluded.url, branch = excluded.branch");
  if (!st) return std::unexpected(st.error());
  return st->Bind(1, name).Bind(2, url).Bind(3, branch).Run();
}

Status Store::RecordFetch(const std::string& repo, const std::string& commit,
                          const std::string& error) {
  std::lock_guard lock(mu_);
  auto st = error.empty()
                ? db_.Prepare(
                      "UPDATE repositories SET fetched_commit = ?2, fetch_failures = 0, "
                      "last_fetch_error = '' WHERE name = ?1")
                : db_.Prepare(
                      "UPDATE repositories SET fetch_failures = fetch_failures + 1, "
                      "fetch_failures_total = fetch_failures_total + 1, last_fetch_error = ?3 "
                      "WHERE name = ?1");
  if (!st) return std::unexpected(st.error());
  st->Bind(1, repo);
  if (error.empty()) {
    st->Bind(2, commit);
  } else {
    st->Bind(3, error);
  }
  return st->Run();
}

Result<std::vector<ObjectRecord>> Store::ListObjects(const std::string& kind) const {
  std::lock_guard lock(mu_);
  auto st = db_.Prepare(std::string("SELECT ") + kObjectColumns +
                        " FROM objects WHERE ?1 = '' OR kind = ?1 ORDER BY kind, name");
  if (!st) return std::unexpected(st.error());
  st->Bind(1, kind);
  return sqlite::ReadAll<ObjectRecord>(*st, ReadObject);
}

Result<std::optional<ObjectRecord>> Store::GetObject(const std::string& kind,
                                                     const std::string& name) const {
  std::lock_guard lock(mu_);
  Tx tx(db_);
  return tx.GetObject(kind, name);
}

Result<std::vector<FileError>> Store::ListErrors(const std::string& repo) const {
  std::lock_guard lock(mu_);
  auto st = db_.Prepare(
      "SELECT repository, path, line, col, message, rule, commit_id FROM file_errors "
      "WHERE ?1 = '' OR repository = ?1 ORDER BY repository, path, id");
  if (!st) return std::unexpected(st.error());
  st->Bind(1, repo);
  return sqlite::ReadAll<FileError>(*st, [](const sqlite::Statement& row) {
    return FileError{row.Text(0), row.Text(1), static_cast<int>(row.Int(2)),
                     static_cast<int>(row.Int(3)), row.Text(4), row.Text(5), row.Text(6)};
  });
}

Result<std::vector<RepositoryState>> Store::ListRepositories() const {
  std::lock_guard lock(mu_);
  auto st = db_.Prepare(std::string("SELECT ") + kRepositoryColumns +
                        " FROM repositories ORDER BY name");
  if (!st) return std::unexpected(st.error());
  return sqlite::ReadAll<RepositoryState>(*st, ReadRepository);
}

Result<std::optional<RepositoryState>> Store::GetRepository(const std::string& name) const {
  std::lock_guard lock(mu_);
  auto st = db_.Prepare(std::string("SELECT ") + kRepositoryColumns +
                        " FROM repositories WHERE name = ?1");
  if (!st) return std::unexpected(st.error());
  st->Bind(1, name);
  auto row = st->Step();
  if (!row) return std::unexpected(row.error());
  if (!*row) return std::optional<RepositoryState>();
  return std::optional<RepositoryState>(ReadRepository(*st));
}

Result<int64_t> Store::CountObjects() const {
  std::lock_guard lock(mu_);
  auto st = db_.Prepare("SELECT count(*) FROM objects");
  if (!st) return std::unexpected(st.error());
  auto row = st->Step();
  if (!row) return std::unexpected(row.error());
  return st->Int(0);
}

Result<std::map<std::string, int64_t>> Store::CountObjectsByKind() const {
  std::lock_guard lock(mu_);
  auto st = db_.Prepare("SELECT kind, count(*) FROM objects GROUP BY kind");
  if (!st) return std::unexpected(st.error());
  std::map<std::string, int64_t> out;
  while (true) {
    auto row = st->Step();
    if (!row) return std::unexpected(row.error());
    if (!*row) break;
    out[st->Text(0)] = st->Int(1);
  }
  return out;
}


Result<std::optional<EditRecord>> Store::GetEdit(int64_t id) const {
  std::lock_guard lock(mu_);
  auto st = db_.Prepare(std::string("SELECT ") + kEditColumns + " FROM edits WHERE id = ?1");
  if (!st) return std::unexpected(st.error());
  st->Bind(1, id);
  auto row = st->Step();
  if (!row) return std::unexpected(row.error());
  if (!*row) return std::optional<EditRecord>();
  return std::optional<EditRecord>(ReadEdit(*st));
}

Result<int64_t> Store::CountUnfinishedEdits(const std::string& repo) const {
  std::lock_guard lock(mu_);
  auto st = db_.Prepare(
      "SELECT count(*) FROM edits WHERE state IN ('pending', 'committed') "
      "AND (?1 = '' OR repository = ?1)");
  if (!st) return std::unexpected(st.error());
  st->Bind(1, repo);
  auto row = st->Step();
  if (!row) return std::unexpected(row.error());
  return st->Int(0);
}

Result<std::vector<ConflictRecord>> Store::ListConflicts(bool open_only) const {
  std::lock_guard lock(mu_);
  auto st = db_.Prepare(std::string("SELECT ") + kConflictColumns +
                        " FROM conflicts WHERE ?1 = 0 OR resolved_at_ms = 0 ORDER BY id");
  if (!st) return std::unexpected(st.error());
  st->Bind(1, int64_t{open_only});
  return sqlite::ReadAll<ConflictRecord>(*st, ReadConflict);
}

Result<std::optional<ConflictRecord>> Store::GetConflict(int64_t id) const {
  std::lock_guard lock(mu_);
  Tx tx(db_);
  return tx.GetConflict(id);
}

// ---- Tx ----

Result<std::optional<FileRecord>> Tx::GetFile(const std::string& repo, const std::string& path) {
  auto st = db_.Cached(
      "SELECT repository, path, blob_id, kind, name, valid, body FROM files "
      "WHERE repository = ?1 AND path = ?2");
  if (!st) return std::unexpected(st.error());
  (*st)->Bind(1, repo).Bind(2, path);
  auto row = (*st)->Step();
  if (!row) return std::unexpected(row.error());
  if (!*row) return std::optional<FileRecord>();
  return std::optional<FileRecord>(ReadFile(**st));
}

Result<std::vector<FileRecord>> Tx::FilesClaiming(const std::string& kind,
                                                  const std::string& name) {
  auto st = db_.Cached(
      "SELECT repository, path, blob_id, kind, name, valid, body FROM files "
      "WHERE kind = ?1 AND name = ?2 ORDER BY repository, path");
  if (!st) return std::unexpected(st.error());
  (*st)->Bind(1, kind).Bind(2, name);
  return sqlite::ReadAll<FileRecord>(**st, ReadFile);
}

Status Tx::PutFile(const FileRecord& f) {
  auto st = db_.Cached(
      "INSERT OR REPLACE INTO files (repository, path, blob_id, kind, name, valid, body) "
      "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)");
  if (!st) return std::unexpected(st.error());
  return (*st)->Bind(1, f.repository)
      .Bind(2, f.path)
      .Bind(3, f.blob_id)
      .Bind(4, f.kind)
      .Bind(5, f.name)
      .Bind(6, int64_t{f.valid})
      .Bind(7, f.body)
      .Run();
}

Status Tx::DeleteFile(const std::string& repo, const std::string& path) {
  auto st = db_.Cached("DELETE FROM files WHERE repository = ?1 AND path = ?2");
  if (!st) return std::unexpected(st.error());
  return (*st)->Bind(1, repo).Bind(2, path).Run();
}

Result<std::optional<ObjectRecord>> Tx::GetObject(const std::string& kind,
                                                  const std::string& name) {
  auto st = db_.Cached(std::string("SELECT ") + kObjectColumns +
                        " FROM objects WHERE kind = ?1 AND name = ?2");
  if (!st) return std::unexpected(st.error());
  (*st)->Bind(1, kind).Bind(2, name);
  auto row = (*st)->Step();
  if (!row) return std::unexpected(row.error());
  if (!*row) return std::optional<ObjectRecord>();
  return std::optional<ObjectRecord>(ReadObject(**st));
}

Result<bool> Tx::PutObject(const ObjectRecord& o) {
  auto existing = GetObject(o.kind, o.name);
  if (!existing) return std::unexpected(existing.error());
  int64_t revision = 1;
  if (*existing) {
    const ObjectRecord& e = **existing;
    if (e.body == o.body && e.path == o.path && e.repository == o.repository) {
      if (e.blob_id == o.blob_id) return false;
      // Same content under a new blob (whitespace): follow the blob, keep the revision.
      auto st = db_.Cached("UPDATE objects SET blob_id = ?3 WHERE kind = ?1 AND name = ?2");
      if (!st) return std::unexpected(st.error());
      TRY((*st)->Bind(1, o.kind).Bind(2, o.name).Bind(3, o.blob_id).Run());
      return false;
    }
    revision = e.revision + 1;
  }
  auto st = db_.Cached(std::string("INSERT OR REPLACE INTO objects (") + kObjectColumns +
                        ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)");
  if (!st) return std::unexpected(st.error());
  TRY((*st)->Bind(1, o.kind)
          .Bind(2, o.name)
          .Bind(3, o.repository)
          .Bind(4, o.path)
          .Bind(5, o.body)
          .Bind(6, o.blob_id)
          .Bind(7, o.source_commit)
          .Bind(8, revision)
          .Bind(9, NowMs())
          .Run());
  return true;
}

Status Tx::DeleteObject(const std::string& kind, const std::string& name) {
  auto st = db_.Cached("DELETE FROM objects WHERE kind = ?1 AND name = ?2");
  if (!st) return std::unexpected(st.error());
  return (*st)->Bind(1, kind).Bind(2, name).Run();
}

Status Tx::ClearErrors(const std::string& repo, const std::string& path,
                       const std::string& rule) {
  auto st = db_.Cached(
      "DELETE FROM file_errors WHERE repository = ?1 AND path = ?2 AND (?3 = '' OR rule = ?3)");
  if (!st) return std::unexpected(st.error());
  return (*st)->Bind(1, repo).Bind(2, path).Bind(3, rule).Run();
}

Result<std::vector<FileRecord>> Tx::ListFiles(const std::string& repo) {
  auto st = db_.Cached(
      "SELECT repository, path, blob_id, kind, name, valid, body FROM files "
      "WHERE repository = ?1 ORDER BY path");
  if (!st) return std::unexpected(st.error());
  (*st)->Bind(1, repo);
  return sqlite::ReadAll<FileRecord>(**st, ReadFile);
}

Status Tx::AddError(const FileError& e) {
  auto st = db_.Cached(
      "INSERT INTO file_errors (repository, path, line, col, message, rule, commit_id) "
      "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)");
  if (!st) return std::unexpected(st.error());
  return (*st)->Bind(1, e.repository)
      .Bind(2, e.path)
      .Bind(3, int64_t{e.line})
      .Bind(4, int64_t{e.col})
      .Bind(5, e.message)
      .Bind(6, e.rule)
      .Bind(7, e.commit_id)
      .Run();
}

Status Tx::SetApplied(const std::string& repo, const std::string& commit, int64_t at_ms,
                      int64_t duration_us) {
  auto st = db_.Cached(
      "UPDATE repositories SET applied_commit = ?2, last_sync_at_ms = ?3, "
      "last_sync_duration_us = ?4 WHERE name = ?1");
  if (!st) return std::unexpected(st.error());
  return (*st)->Bind(1, repo).Bind(2, commit).Bind(3, at_ms).Bind(4, duration_us).Run();
}

Result<int64_t> Tx::AddEdit(const EditRecord& e) {
  auto st = db_.Cached(
      "INSERT INTO edits (repository, kind, name, op, body, base_body, path, actor, state, "
      "commit_id, last_error, attempts, created_at_ms, updated_at_ms) "
      "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?13)");
  if (!st) return std::unexpected(st.error());
  TRY((*st)->Bind(1, e.repository)
          .Bind(2, e.kind)
          .Bind(3, e.name)
          .Bind(4, e.op)
          .Bind(5, e.body)
          .Bind(6, e.base_body)
          .Bind(7, e.path)
          .Bind(8, e.actor)
          .Bind(9, e.state)
          .Bind(10, e.commit_id)
          .Bind(11, e.last_error)
          .Bind(12, e.attempts)
          .Bind(13, NowMs())
          .Run());
  return db_.LastInsertRowId();
}

Status Tx::UpdateEdit(const EditRecord& e) {
  auto st = db_.Cached(
      "UPDATE edits SET body = ?2, base_body = ?3, path = ?4, state = ?5, commit_id = ?6, "
      "last_error = ?7, attempts = ?8, actor = ?9, op = ?10, updated_at_ms = ?11 WHERE id = ?1");
  if (!st) return std::unexpected(st.error());
  return (*st)->Bind(1, e.id)
      .Bind(2, e.body)
      .Bind(3, e.base_body)
      .Bind(4, e.path)
      .Bind(5, e.state)
      .Bind(6, e.commit_id)
      .Bind(7, e.last_error)
      .Bind(8, e.attempts)
      .Bind(9, e.actor)
      .Bind(10, e.op)
      .Bind(11, NowMs())
      .Run();
}

Result<std::vector<EditRecord>> Tx::UnfinishedEdits(const std::string& repo) {
  auto st = db_.Cached(std::string("SELECT ") + kEditColumns +
                       " FROM edits WHERE repository = ?1 AND state IN ('pending', 'committed') "
                       "ORDER BY id");
  if (!st) return std::unexpected(st.error());
  (*st)->Bind(1, repo);
  return sqlite::ReadAll<EditRecord>(**st, ReadEdit);
}

Result<std::optional<EditRecord>> Tx::UnfinishedEditOf(const std::string& kind,
                                                       const std::string& name) {
  auto st = db_.Cached(std::string("SELECT ") + kEditColumns +
                       " FROM edits WHERE kind = ?1 AND name = ?2 AND state IN ('pending', "
                       "'committed') ORDER BY id DESC LIMIT 1");
  if (!st) return std::unexpected(st.error());
  (*st)->Bind(1, kind).Bind(2, name);
  auto row = (*st)->Step();
  if (!row) return std::unexpected(row.error());
  if (!*row) return std::optional<EditRecord>();
  return std::optional<EditRecord>(ReadEdit(**st));
}

Result<int64_t> Tx::AddConflict(const ConflictRecord& c) {
  auto st = db_.Cached(
      "INSERT INTO conflicts (edit_id, repository, kind, name, path, base_body, git_body, "
      "api_body, policy, in_force, pointers, created_at_ms) "
      "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)");
  if (!st) return std::unexpected(st.error());
  TRY((*st)->Bind(1, c.edit_id)
          .Bind(2, c.repository)
          .Bind(3, c.kind)
          .Bind(4, c.name)
          .Bind(5, c.path)
          .Bind(6, c.base_body)
          .Bind(7, c.git_body)
          .Bind(8, c.api_body)
          .Bind(9, c.policy)
          .Bind(10, c.in_force)
          .Bind(11, c.pointers)
          .Bind(12, NowMs())
          .Run());
  return db_.LastInsertRowId();
}

Status Tx::ResolveConflict(int64_t id, const std::string& resolution, int64_t at_ms) {
  auto st = db_.Cached(
      "UPDATE conflicts SET resolution = ?2, resolved_at_ms = ?3 WHERE id = ?1");
  if (!st) return std::unexpected(st.error());
  return (*st)->Bind(1, id).Bind(2, resolution).Bind(3, at_ms).Run();
}

Result<std::optional<ConflictRecord>> Tx::GetConflict(int64_t id) {
  auto st = db_.Cached(std::string("SELECT ") + kConflictColumns + " FROM conflicts WHERE id = ?1");
  if (!st) return std::unexpected(st.error());
  (*st)->Bind(1, id);
  auto row = (*st)->Step();
  if (!row) return std::unexpected(row.error());
  if (!*row) return std::optional<ConflictRecord>();
  return std::optional<ConflictRecord>(ReadConflict(**st));
}

Status Tx::RecordOwnCommit(const std::string& repo, const std::string& commit) {
  auto st = db_.Cached("INSERT OR IGNORE INTO own_commits (commit_id, repository) VALUES (?1, ?2)");
  if (!st) return std::unexpected(st.error());
  return (*st)->Bind(1, commit).Bind(2, repo).Run();
}

Result<bool> Tx::IsOwnCommit(const std::string& commit) {
  auto st = db_.Cached("SELECT 1 FROM own_commits WHERE commit_id = ?1");
  if (!st) return std::unexpected(st.error());
  (*st)->Bind(1, commit);
  auto row = (*st)->Step();
  if (!row) return std::unexpected(row.error());
  return *row;
}

}  // namespace gitopsd::store
