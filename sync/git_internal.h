// Private to the Git room (git.h): owning pointers for libgit2 objects, the
// helpers the git*.cc files share, and the state of one connection to the
// remote. Repository is split as
//   git.cc            opening the mirror; reading commits, trees, diffs, blobs
//   git_transport.cc  connecting (credentials, host keys, CA file) and fetch
//   git_commit.cc     commits made without a work tree
//   git_push.cc       pushes, never forced, and what the server answered
//   git_refs.cc       the remote's refs, fetching any ref, commits between heads
// Nothing outside sync/git*.cc includes this header; libgit2 stays behind it.
#pragma once
#include <git2.h>

#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "sync/git.h"
#include "sync/known_hosts.h"

namespace gitopsd::git::git_internal {

// Owning pointer for a libgit2 object with its free function.
template <class T, auto Free>
struct Freer {
  void operator()(T* p) const { Free(p); }
};
template <class T, auto Free>
using Owned = std::unique_ptr<T, Freer<T, Free>>;

using BlobPtr = Owned<git_blob, git_blob_free>;
using CommitPtr = Owned<git_commit, git_commit_free>;
using DiffPtr = Owned<git_diff, git_diff_free>;
using OdbPtr = Owned<git_odb, git_odb_free>;
using RemotePtr = Owned<git_remote, git_remote_free>;
using TreeEntryPtr = Owned<git_tree_entry, git_tree_entry_free>;
using TreePtr = Owned<git_tree, git_tree_free>;
using ReferencePtr = Owned<git_reference, git_reference_free>;
using SignaturePtr = Owned<git_signature, git_signature_free>;
using TreeBuilderPtr = Owned<git_treebuilder, git_treebuilder_free>;

// The message of libgit2's last error on this thread.
std::string LastError();
std::string OidString(const git_oid& oid);
// `id` as an oid; an error says it is not a `what` ("commit", "blob") id.
Result<git_oid> ParseOid(const std::string& id, std::string_view what);
std::string Lower(std::string s);

// The commit `commit_id` in `repo`; an error says it is not in the mirror.
Result<CommitPtr> FindCommit(git_repository* repo, const std::string& commit_id);
Result<TreePtr> EmptyTree(git_repository* repo);

// ---- Connections to the remote ----------------------------------------------

// The parts of a remote URL the transport checks need.
struct UrlParts {
  std::string scheme;  // "file", "http", "https", "ssh", ...
  std::string host;
  int port = 0;
};

// State shared with the libgit2 callbacks of one fetch or push. libgit2
// holds a pointer to it, so it stays where it was made.
struct TransportContext {
  const Credentials* creds = nullptr;
  UrlParts url;
  std::optional<KnownHosts> known_hosts;
  int userpass_offers = 0;
  int ssh_key_offers = 0;
  std::string cause;  // set by a callback that refused; preferred over libgit2's text
  // Push only: the ref status the server reported (nullopt = none reported,
  // "" = accepted) and what it wrote on the sideband (hook output).
  std::optional<std::string> push_status;
  std::string remote_output;
};

// The mirror's remote "origin"; an error names the mirror folder `dir`.
Result<RemotePtr> FindOrigin(git_repository* repo, const std::string& dir);
// Whether refs/heads/<branch> is a valid reference name.
bool IsBranchName(const std::string& branch);
// Fills in `ctx` for a connection to `url`: loads known_hosts for ssh://
// (refusing to go on without one) and the CA file for https://.
Status PrepareTransport(TransportContext* ctx, const std::string& url, const Credentials& creds);
// libgit2 callbacks that offer the configured credentials and check host
// keys, with `ctx` as their payload.
git_remote_callbacks MakeCallbacks(TransportContext* ctx);
// Turns a failed libgit2 network call into the cause part of a sentence.
std::string DescribeTransportFailure(const TransportContext& ctx, int code);

}  // namespace gitopsd::git::git_internal
