// The Git room: a bare mirror of one remote branch, fetched over file://,
// http(s):// or ssh://, read access to the commits in it (trees, diffs
// limited to a folder, blobs), and the write side for the write-back of API
// edits: commits made without a work tree and pushed, never forced.
// Everything the daemon knows about Git comes through here; libgit2 stays
// behind this header.
//
// What callers can rely on:
//  - Nothing throws; every fallible call returns Result/Status with an error
//    sentence that names the URL (passwords removed), the branch, commit or
//    path, and the cause.
//  - A Repository owns its libgit2 handle; it is move-only. One Repository
//    must be used by one thread at a time; distinct Repository objects (even
//    on the same folder) may be used from different threads.
//  - SSH host keys are always verified against an OpenSSH known_hosts file;
//    without one an ssh:// fetch is refused before connecting.
//  - Wrong credentials fail the fetch after at most two attempts (one
//    anonymous, one with the credentials); libgit2 is never left looping.
//  - Paths in TreeEntry, Change and FileWrite are relative to the repository
//    root ("<folder>/a/b.json") and use '/'.
//  - Push is never forced: a remote that moved is a PushOutcome, answered by
//    fetching and rebasing, not an error (file:// caveat at Push).
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "sync/status.h"

struct git_repository;

namespace gitopsd::git {

// Initialises libgit2 once per process. Thread-safe; every entry point below
// calls it, so callers never need to.
void InitLibrary();

// All fields optional (default member initialisers keep designated
// initialisers such as {.username = "u"} free of -Wextra warnings).
struct Credentials {
  std::string username{};          // HTTP basic user, or SSH user (else from the URL, else "git")
  std::string password{};          // HTTP basic password (never logged or put in messages)
  std::string ssh_key_file{};      // private key; public key = ssh_key_file + ".pub" if it exists
  std::string known_hosts_file{};  // OpenSSH known_hosts; REQUIRED for ssh:// (no file => refuse)
  // Extra CA bundle for HTTPS. libgit2 1.5 keeps CA locations process-wide,
  // so the last fetch that names a ca_file sets them for every HTTPS fetch
  // (with mbedTLS the file replaces the system bundle). Use one for all.
  std::string ca_file{};
};

enum class EntryKind { kFile, kExecutable, kSymlink, kSubmodule, kTree };

struct TreeEntry {
  std::string path{};     // relative to the repository root
  std::string blob_id{};  // 40 hex; for a submodule, the commit it points at
  EntryKind kind = EntryKind::kFile;
};

struct Change {
  enum class Kind { kAdded, kModified, kDeleted, kRenamed };
  Kind kind = Kind::kModified;
  std::string old_path{}, new_path{};        // both set; equal unless kRenamed
  std::string old_blob_id{}, new_blob_id{};  // empty for the missing side (added / deleted)
  EntryKind old_kind = EntryKind::kFile;     // for the missing side, the same as the other side
  EntryKind new_kind = EntryKind::kFile;
};

struct CommitInfo {
  std::string id{}, message{}, author_name{}, author_email{};
  int64_t time = 0;  // committer time, seconds since the Unix epoch
};

// One file of a commit made by CreateCommit.
struct FileWrite {
  std::string path{};                    // relative to the repository root, e.g. ".gitops/a.json"
  std::optional<std::string> content{};  // nullopt = delete the file
};

// A ref a remote advertises (ls-remote).
struct RemoteRef {
  std::string name{};  // "refs/heads/main", "refs/pull/12/head", "HEAD", ...
  std::string id{};    // the commit (or tag object) it points at, 40 hex
};

struct Signature {
  std::string name{}, email{};
};

enum class PushOutcome {
  kPushed,                  // the branch now points at the commit
  kRejectedNonFastForward,  // the branch moved on the remote: fetch, rebase, push again
  kRejected,                // the server refused (hook, protected branch, permission)
};

struct PushResult {
  PushOutcome outcome = PushOutcome::kPushed;
  // Empty for kPushed. Otherwise the reason, as the server or libgit2 gave
  // it: a hook's output with the ref status ("protected branch: main
  // (pre-receive hook declined)"), or "branch 'main' moved on the remote
  // (...)". Not a full sentence: callers put it into theirs.
  std::string message{};
};

class Repository {
 public:
  Repository(Repository&&) noexcept;
  Repository& operator=(Repository&&) noexcept;
  Repository(const Repository&) = delete;
  Repository& operator=(const Repository&) = delete;
  ~Repository();

  // A bare mirror in `dir`: opened if present, else created (with parent
  // folders) and the remote "origin" set to `url`. Creating does not fetch;
  // the first Fetch does. If the stored origin URL differs from `url`, it is
  // updated. Fails if `dir` exists, is not empty and is not a bare repository.
  static Result<Repository> OpenOrInit(const std::string& dir, const std::string& url);

  // Fetches only refs/heads/<branch> into refs/remotes/origin/<branch> with a
  // forced refspec, so force-pushes are followed. Returns the fetched commit
  // id (40 hex). Errors name the URL and the cause: unreachable remote, branch
  // missing on the remote, authentication failed, unknown/changed/revoked SSH
  // host key (with the host and the key's SHA256 fingerprint as ssh prints it).
  Result<std::string> Fetch(const std::string& branch, const Credentials& creds);

  // The refs origin advertises (one round trip; nothing is downloaded).
  // Peeled tag entries ("^{}") are left out. Errors are worded like Fetch's.
  Result<std::vector<RemoteRef>> ListRemote(const Credentials& creds);

  // Fetches one ref of origin (any name: "refs/heads/x", "refs/pull/12/head")
  // into `local_ref` of the mirror with a forced refspec; the commit fetched.
  Result<std::string> FetchRef(const std::string& remote_ref, const std::string& local_ref,
                               const Credentials& creds);

  // Commits reachable from `to` and not from `from` ("" = `to`'s whole
  // history), newest first (topological), at most `limit`. A `from` the
  // mirror does not have hides nothing.
  Result<std::vector<CommitInfo>> CommitsBetween(const std::string& from, const std::string& to,
                                                 size_t limit) const;

  // The commit id refs/remotes/origin/<branch> points at, if fetched.
  Result<std::string> FetchedHead(const std::string& branch) const;

  // Diff of two commits' trees limited to `folder` (e.g. ".gitops"; "" = the
  // whole tree), with exact and similar rename detection. old_commit empty =
  // empty tree. A folder missing in a commit (or not a folder) counts as
  // empty. Symlinks and submodules are reported with their kind (a submodule's
  // blob id is the commit it points at). Only the folder's subtrees are
  // compared and identical subtrees are skipped by id, so the cost grows with
  // the size of the change, not of the repository. A type change (file ->
  // symlink) is reported as kModified with differing kinds.
  Result<std::vector<Change>> DiffTrees(const std::string& old_commit,
                                        const std::string& new_commit,
                                        const std::string& folder) const;

  // Every non-tree entry under `folder` at `commit`, recursively (files,
  // executables, symlinks, submodules), in tree order. A folder that is
  // missing (or is not a folder) gives an empty list.
  Result<std::vector<TreeEntry>> ListTree(const std::string& commit,
                                          const std::string& folder) const;

  // Blob content; fails with a clear message if larger than max_bytes,
  // checked from the object header without reading the content.
  Result<std::string> ReadBlob(const std::string& blob_id, size_t max_bytes) const;
  Result<size_t> BlobSize(const std::string& blob_id) const;

  // Writes the tree of `commit` into `dest_dir` (made with its parents; it
  // must be empty or missing), as a checkout would: executables keep 100755,
  // symlinks stay symlinks, .gitattributes filters apply; submodules are not
  // checked out. No index or ref of the mirror changes. On failure the
  // folder may hold part of the tree: callers export into a fresh folder.
  Status ExportTree(const std::string& commit, const std::string& dest_dir) const;

  Result<CommitInfo> LookupCommit(const std::string& commit_id) const;
  bool HasCommit(const std::string& commit_id) const;

  // True if `ancestor` is `descendant` or one of its ancestors. False when
  // either is not a commit in the mirror (or not a commit id).
  bool IsAncestor(const std::string& ancestor, const std::string& descendant) const;

  // Writes a commit whose tree is `parent`'s tree with `writes` applied, in
  // the object database only: no work tree, no branch or ref points at it.
  // parent "" makes a root commit. Author and committer are `author`, now;
  // the message is stored as given. A later write to the same path wins;
  // deleting a missing path and writing identical content are no-ops (so the
  // tree may equal the parent's). Folders left empty disappear. New files
  // are 100644; an overwritten executable keeps 100755. Fails, writing no
  // commit, on a path that is absolute, has empty, "." or ".." components or
  // a ".git" component, or needs a file to be a folder (or the reverse).
  Result<std::string> CreateCommit(const std::string& parent, const std::vector<FileWrite>& writes,
                                   const Signature& author, const std::string& message);

  // Pushes `commit` (which must be in the mirror) to refs/heads/<branch> on
  // origin, never forced; a missing branch is created. On kPushed,
  // refs/remotes/origin/<branch> (FetchedHead) moves to `commit`. A remote
  // that moved, seen by libgit2 before sending or reported by the server,
  // is kRejectedNonFastForward, and nothing changes remotely. A refusal by
  // the server (hook, protected branch, HTTP 403) is kRejected with its
  // reason. Transport failures are errors worded like Fetch's ("cannot
  // push ... : authentication failed ...", "cannot reach the remote", host
  // key verification), with the same credential and host-key rules.
  // Over file:// libgit2 writes into the repository itself: server hooks do
  // not run, and a push racing another writer is not detected.
  Result<PushResult> Push(const std::string& commit, const std::string& branch,
                          const Credentials& creds);

  const std::string& path() const { return dir_; }

 private:
  struct RepoDeleter {
    void operator()(git_repository* repo) const;
  };
  Repository(std::unique_ptr<git_repository, RepoDeleter> repo, std::string dir);

  std::unique_ptr<git_repository, RepoDeleter> repo_;
  std::string dir_;
};

// Removes "user:password@" from a URL for messages and logs. A user name
// without a password (ssh://git@host/...) is kept; other text is unchanged.
std::string RedactUrl(const std::string& url);

}  // namespace gitopsd::git
