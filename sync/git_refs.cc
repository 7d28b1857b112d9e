// Repository: the remote's refs (ls-remote), fetching any one ref, and the
// commits between two heads — what the triggers watch.
#include "sync/git_internal.h"

namespace gitopsd::git {

using namespace git_internal;

namespace {

using RevwalkPtr = Owned<git_revwalk, git_revwalk_free>;

// An open connection to origin for fetching, with its callbacks' state.
struct Connection {
  RemotePtr remote;
  TransportContext ctx;
  git_remote_callbacks callbacks{};
  std::string url;
  ~Connection() {
    if (remote) git_remote_disconnect(remote.get());
  }
};

// An anonymous remote on origin's URL: it has no configured refspecs, so a
// fetch updates only the ref asked for (a named remote would also update
// refs/remotes/origin/*, which the sync loop writes with a handle of its own).
Status Connect(git_repository* repo, const std::string& dir, const Credentials& creds, Connection* c) {
  git_remote* origin = nullptr;
  if (git_remote_lookup(&origin, repo, "origin") < 0) {
    return Fail("mirror " + dir + " has no remote origin: " + LastError());
  }
  RemotePtr named(origin);
  c->url = git_remote_url(origin);
  git_remote* raw = nullptr;
  if (git_remote_create_anonymous(&raw, repo, c->url.c_str()) < 0) {
    return Fail("cannot open a connection to " + RedactUrl(c->url) + ": " + LastError());
  }
  c->remote.reset(raw);
  if (auto ready = PrepareTransport(&c->ctx, c->url, creds); !ready) return ready;
  c->callbacks = MakeCallbacks(&c->ctx);
  git_remote_connect_options options;
  git_remote_connect_options_init(&options, GIT_REMOTE_CONNECT_OPTIONS_VERSION);
  options.callbacks = c->callbacks;
  if (int rc = git_remote_connect_ext(raw, GIT_DIRECTION_FETCH, &options); rc < 0) {
    return Fail(DescribeTransportFailure(c->ctx, rc));
  }
  return Ok();
}

}  // namespace

Result<std::vector<RemoteRef>> Repository::ListRemote(const Credentials& creds) {
  InitLibrary();
  Connection c;
  if (auto s = Connect(repo_.get(), dir_, creds, &c); !s) {
    return Fail("cannot list the refs of " + RedactUrl(c.url) + ": " + s.error().message);
  }
  const git_remote_head** heads = nullptr;
  size_t count = 0;
  if (git_remote_ls(&heads, &count, c.remote.get()) < 0) {
    return Fail("cannot list the refs of " + RedactUrl(c.url) + ": " + LastError());
  }
  std::vector<RemoteRef> refs;
  refs.reserve(count);
  for (size_t i = 0; i < count; ++i) {
    std::string_view name = heads[i]->name;
    if (name.ends_with("^{}")) continue;  // peeled tags
    refs.push_back(RemoteRef{std::string(name), OidString(heads[i]->oid)});
  }
  return refs;
}

Result<std::string> Repository::FetchRef(const std::string& remote_ref, const std::string& local_ref,
                                         const Credentials& creds) {
  InitLibrary();
  const std::string prefix = "cannot fetch " + remote_ref + ": ";
  int valid = 0;
  for (const std::string* ref : {&remote_ref, &local_ref}) {
    if (git_reference_name_is_valid(&valid, ref->c_str()) < 0 || !valid) {
      return Fail(prefix + "'" + *ref + "' is not a valid ref name");
    }
  }
  Connection c;
  if (auto s = Connect(repo_.get(), dir_, creds, &c); !s) return Fail(prefix + s.error().message);
  std::string refspec = "+" + remote_ref + ":" + local_ref;
  char* chars = refspec.data();
  git_strarray refspecs{&chars, 1};
  git_fetch_options options;
  git_fetch_options_init(&options, GIT_FETCH_OPTIONS_VERSION);
  options.callbacks = c.callbacks;
  options.prune = GIT_FETCH_NO_PRUNE;
  options.update_fetchhead = 0;
  options.download_tags = GIT_REMOTE_DOWNLOAD_TAGS_NONE;
  int rc = git_remote_download(c.remote.get(), &refspecs, &options);
  if (rc == 0) {
    rc = git_remote_update_tips(c.remote.get(), &c.callbacks, 0, GIT_REMOTE_DOWNLOAD_TAGS_NONE, "gitopsd: fetch");
  }
  if (rc < 0) return Fail(prefix + DescribeTransportFailure(c.ctx, rc));
  git_oid oid;
  if (git_reference_name_to_id(&oid, repo_.get(), local_ref.c_str()) < 0) {
    return Fail(prefix + "the remote does not have it");
  }
  return OidString(oid);
}

Result<std::vector<CommitInfo>> Repository::CommitsBetween(const std::string& from, const std::string& to,
                                                           size_t limit) const {
  git_revwalk* raw = nullptr;
  if (git_revwalk_new(&raw, repo_.get()) < 0) return Fail("cannot walk commits: " + LastError());
  RevwalkPtr walk(raw);
  git_revwalk_sorting(walk.get(), GIT_SORT_TOPOLOGICAL | GIT_SORT_TIME);
  auto to_oid = ParseOid(to, "commit");
  if (!to_oid) return std::unexpected(to_oid.error());
  if (git_revwalk_push(walk.get(), &*to_oid) < 0) return Fail("commit " + to + " is not in the mirror");
  if (!from.empty()) {
    auto from_oid = ParseOid(from, "commit");
    if (!from_oid) return std::unexpected(from_oid.error());
    // A previous head the mirror does not have (a force-push made it
    // unreachable and it was never fetched) hides nothing.
    (void)git_revwalk_hide(walk.get(), &*from_oid);
  }
  std::vector<CommitInfo> out;
  git_oid oid;
  while (out.size() < limit && git_revwalk_next(&oid, walk.get()) == 0) {
    auto info = LookupCommit(OidString(oid));
    if (!info) return std::unexpected(info.error());
    out.push_back(std::move(*info));
  }
  return out;
}

}  // namespace gitopsd::git
