#include "sync/git.h"

#include <git2.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <filesystem>
#include <map>
#include <mutex>
#include <optional>
#include <utility>

#include "sync/known_hosts.h"

namespace gitopsd::git {
namespace {

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

std::string LastError() {
  const git_error* error = git_error_last();
  return error != nullptr && error->message != nullptr ? error->message : "unknown libgit2 error";
}

std::string OidString(const git_oid& oid) {
  char buf[GIT_OID_HEXSZ + 1];
  git_oid_tostr(buf, sizeof(buf), &oid);
  return buf;
}

Result<git_oid> ParseOid(const std::string& id, std::string_view what) {
  git_oid oid;
  bool hex = id.size() == GIT_OID_HEXSZ &&
             std::ranges::all_of(id, [](unsigned char c) { return std::isxdigit(c) != 0; });
  if (!hex || git_oid_fromstr(&oid, id.c_str()) < 0) {
    return Fail("'" + id + "' is not a " + std::string(what) + " id (expected 40 hex digits)");
  }
  return oid;
}

std::string Lower(std::string s) {
  std::ranges::transform(s, s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

// The parts of a remote URL the transport checks need.
struct UrlParts {
  std::string scheme;  // "file", "http", "https", "ssh", ...
  std::string host;
  int port = 0;
};

UrlParts ParseUrl(const std::string& url) {
  UrlParts parts;
  size_t sep = url.find("://");
  if (sep == std::string::npos) {
    // scp-like "user@host:path" is SSH; anything else is a local path.
    size_t colon = url.find(':');
    size_t slash = url.find('/');
    if (colon != std::string::npos && (slash == std::string::npos || colon < slash)) {
      size_t at = url.rfind('@', colon);
      parts.scheme = "ssh";
      parts.host = url.substr(at == std::string::npos ? 0 : at + 1,
                              colon - (at == std::string::npos ? 0 : at + 1));
      parts.port = 22;
    } else {
      parts.scheme = "file";
    }
    return parts;
  }
  parts.scheme = Lower(url.substr(0, sep));
  if (parts.scheme == "ssh+git" || parts.scheme == "git+ssh") parts.scheme = "ssh";
  size_t start = sep + 3;
  size_t end = url.find('/', start);
  std::string authority = url.substr(start, end == std::string::npos ? std::string::npos : end - start);
  size_t at = authority.rfind('@');
  std::string hostport = at == std::string::npos ? authority : authority.substr(at + 1);
  std::string port;
  if (hostport.starts_with('[')) {
    size_t close = hostport.find(']');
    parts.host = hostport.substr(1, close == std::string::npos ? std::string::npos : close - 1);
    if (close != std::string::npos && close + 1 < hostport.size() && hostport[close + 1] == ':') {
      port = hostport.substr(close + 2);
    }
  } else {
    size_t colon = hostport.rfind(':');
    parts.host = hostport.substr(0, colon);
    if (colon != std::string::npos) port = hostport.substr(colon + 1);
  }
  if (!port.empty() && port.size() <= 5 &&
      std::ranges::all_of(port, [](unsigned char c) { return std::isdigit(c); })) {
    parts.port = std::stoi(port);
  } else if (parts.scheme == "ssh") {
    parts.port = 22;
  } else if (parts.scheme == "http") {
    parts.port = 80;
  } else if (parts.scheme == "https") {
    parts.port = 443;
  }
  return parts;
}

std::string ReplaceAll(std::string text, const std::string& what, const std::string& with) {
  if (what.empty()) return text;
  for (size_t pos = text.find(what); pos != std::string::npos; pos = text.find(what, pos + with.size())) {
    text.replace(pos, what.size(), with);
  }
  return text;
}

// libgit2 1.5 keeps CA locations process-wide; set them only when they change.
Status UseCaFile(const std::string& ca_file) {
  static std::mutex mutex;
  static std::string current;
  std::lock_guard lock(mutex);
  if (ca_file.empty() || ca_file == current) return Ok();
  if (git_libgit2_opts(GIT_OPT_SET_SSL_CERT_LOCATIONS, ca_file.c_str(), nullptr) < 0) {
    return Fail("cannot use CA file " + ca_file + ": " + LastError());
  }
  current = ca_file;
  return Ok();
}

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

// Fills in `ctx` for a connection to `url`: loads known_hosts for ssh://
// (refusing to go on without one) and the CA file for https://.
Status PrepareTransport(TransportContext* ctx, const std::string& url, const Credentials& creds) {
  ctx->creds = &creds;
  ctx->url = ParseUrl(url);
  if (ctx->url.scheme == "ssh") {
    if (creds.known_hosts_file.empty()) {
      return Fail(
          "no known_hosts file is configured, and gitopsd never connects over SSH "
          "without verifying the host key; set known_hosts_file");
    }
    auto known = KnownHosts::Load(creds.known_hosts_file);
    if (!known) return std::unexpected(known.error());
    ctx->known_hosts = std::move(*known);
  }
  return UseCaFile(creds.ca_file);
}

// Configured credentials never change within a fetch, so they are offered
// once: when the server rejects them libgit2 asks again, and the second ask
// is the signal to give up (libgit2 would otherwise loop until "too many
// authentication replays", and servers such as lighttpd delay each 401 ~1 s).
// With the anonymous first request that makes at most two attempts.
constexpr int kMaxCredentialOffers = 1;

int AcquireCredentials(git_credential** out, const char* /*url*/, const char* username_from_url,
                       unsigned int allowed_types, void* payload) {
  auto* ctx = static_cast<TransportContext*>(payload);
  const Credentials& creds = *ctx->creds;
  std::string user = creds.username;
  if (user.empty() && username_from_url != nullptr) user = username_from_url;

  if ((allowed_types & GIT_CREDENTIAL_SSH_KEY) != 0) {
    if (user.empty()) user = "git";
    if (creds.ssh_key_file.empty()) {
      ctx->cause = "authentication failed: the SSH server wants a key and no ssh_key_file is configured";
      return GIT_EAUTH;
    }
    if (ctx->ssh_key_offers++ >= kMaxCredentialOffers) {
      ctx->cause = "authentication failed: the SSH server rejected the key " + creds.ssh_key_file +
                   " for user '" + user + "'";
      return GIT_EAUTH;
    }
    std::string pub = creds.ssh_key_file + ".pub";
    std::error_code ec;
    bool has_pub = std::filesystem::exists(pub, ec);
    return git_credential_ssh_key_new(out, user.c_str(), has_pub ? pub.c_str() : nullptr,
                                      creds.ssh_key_file.c_str(), nullptr);
  }
  if ((allowed_types & GIT_CREDENTIAL_USERPASS_PLAINTEXT) != 0) {
    if (user.empty() && creds.password.empty()) {
      ctx->cause = "authentication failed: the server requires a user name and password and none is configured";
      return GIT_EAUTH;
    }
    if (ctx->userpass_offers++ >= kMaxCredentialOffers) {
      ctx->cause = "authentication failed: the server rejected the password for user '" + user + "'";
      return GIT_EAUTH;
    }
    return git_credential_userpass_plaintext_new(out, user.c_str(), creds.password.c_str());
  }
  if ((allowed_types & GIT_CREDENTIAL_USERNAME) != 0) {
    return git_credential_username_new(out, user.empty() ? "git" : user.c_str());
  }
  ctx->cause = "authentication failed: the server asks for an authentication method gitopsd does not support";
  return GIT_EAUTH;
}

int RefuseHostKey(TransportContext* ctx, std::string cause) {
  ctx->cause = std::move(cause);
  git_error_set_str(GIT_ERROR_SSH, ctx->cause.c_str());
  return GIT_ECERTIFICATE;
}

// Pins SSH host keys to known_hosts; TLS certificates keep libgit2's verdict.
int CheckCertificate(git_cert* cert, int /*valid*/, const char* host, void* payload) {
  auto* ctx = static_cast<TransportContext*>(payload);
  if (cert->cert_type != GIT_CERT_HOSTKEY_LIBSSH2) return GIT_PASSTHROUGH;
  const auto* hostkey = reinterpret_cast<const git_cert_hostkey*>(cert);
  std::string hostname = host != nullptr && *host != '\0' ? host : ctx->url.host;
  std::string name = KnownHostsName(hostname, ctx->url.port);
  if ((hostkey->type & GIT_CERT_SSH_RAW) == 0 || hostkey->hostkey == nullptr) {
    return RefuseHostKey(ctx, "the SSH host key of " + name + " cannot be verified (libgit2 gave no raw key)");
  }
  if (!ctx->known_hosts) {
    return RefuseHostKey(ctx, "no known_hosts file is loaded for " + name);
  }
  std::string blob(hostkey->hostkey, hostkey->hostkey_len);
  std::string type = KeyTypeOfBlob(blob);
  std::string offered = type + " key " + SshFingerprint(blob);
  const std::string& file = ctx->creds->known_hosts_file;
  switch (ctx->known_hosts->Check(hostname, ctx->url.port, type, blob)) {
    case HostKeyVerdict::kMatch:
      return 0;
    case HostKeyVerdict::kUnknownHost:
      return RefuseHostKey(ctx, "host key verification failed: " + name + " offered the " + offered +
                                    ", and known_hosts file " + file +
                                    " has no key of that type for it; if you trust this key, add it "
                                    "(ssh-keyscan -p " + std::to_string(ctx->url.port) + " " +
                                    hostname + ")");
    case HostKeyVerdict::kMismatch:
      return RefuseHostKey(ctx, "host key verification failed: " + name + " offered the " + offered +
                                    ", which does not match the key in known_hosts file " + file +
                                    "; the host key changed or someone is intercepting the connection");
    case HostKeyVerdict::kRevoked:
      return RefuseHostKey(ctx, "host key verification failed: " + name + " offered the " + offered +
                                    ", which is marked @revoked in known_hosts file " + file);
  }
  return GIT_ECERTIFICATE;
}

git_remote_callbacks MakeCallbacks(TransportContext* ctx) {
  git_remote_callbacks callbacks;
  git_remote_init_callbacks(&callbacks, GIT_REMOTE_CALLBACKS_VERSION);
  callbacks.credentials = AcquireCredentials;
  callbacks.certificate_check = CheckCertificate;
  callbacks.payload = ctx;
  return callbacks;
}

// Turns a failed libgit2 network call into the cause part of a sentence.
std::string DescribeTransportFailure(const TransportContext& ctx, int code) {
  if (!ctx.cause.empty()) return ctx.cause;
  std::string message = ReplaceAll(LastError(), ctx.creds->password, "***");
  std::string lower = Lower(message);
  if (code == GIT_EAUTH || lower.find("authentication") != std::string::npos ||
      lower.find("401") != std::string::npos) {
    return "authentication failed (" + message + ")";
  }
  if (code == GIT_ECERTIFICATE) {
    return "the server's certificate was rejected (" + message + "); for a private CA set ca_file";
  }
  if (lower.find("404") != std::string::npos || lower.find("could not find repository") != std::string::npos ||
      lower.find("failed to resolve path") != std::string::npos) {
    return "there is no repository at this URL (" + message + ")";
  }
  for (const char* unreachable : {"failed to connect", "failed to resolve", "connection refused",
                                  "timed out", "no route to host", "network is unreachable",
                                  "failed to start ssh session", "name or service not known"}) {
    if (lower.find(unreachable) != std::string::npos) {
      return "cannot reach the remote (" + message + ")";
    }
  }
  return message;
}

// Succeeds if the connected remote advertises refs/heads/<branch>; else the
// error says so and lists the branches it does have.
Status CheckRemoteHasBranch(git_remote* remote, const std::string& branch) {
  const git_remote_head** heads = nullptr;
  size_t head_count = 0;
  if (git_remote_ls(&heads, &head_count, remote) < 0) {
    return Fail("cannot list the remote's branches: " + LastError());
  }
  constexpr std::string_view kHeads = "refs/heads/";
  std::string available;
  for (size_t i = 0; i < head_count; ++i) {
    std::string_view name = heads[i]->name;
    if (!name.starts_with(kHeads)) continue;
    if (name.substr(kHeads.size()) == branch) return Ok();
    available += (available.empty() ? "" : ", ") + std::string(name.substr(kHeads.size()));
  }
  return Fail("branch '" + branch + "' does not exist on the remote" +
              (available.empty() ? " (the remote has no branches)" : " (it has: " + available + ")"));
}

std::string NormalizeFolder(std::string folder) {
  while (folder.starts_with("./")) folder.erase(0, 2);
  while (folder.starts_with('/')) folder.erase(0, 1);
  while (folder.ends_with('/')) folder.pop_back();
  return folder == "." ? "" : folder;
}

std::string JoinPath(const std::string& folder, const char* path) {
  return folder.empty() ? std::string(path) : folder + "/" + path;
}

EntryKind KindOfMode(uint32_t mode) {
  switch (mode) {
    case GIT_FILEMODE_BLOB_EXECUTABLE:
      return EntryKind::kExecutable;
    case GIT_FILEMODE_LINK:
      return EntryKind::kSymlink;
    case GIT_FILEMODE_COMMIT:
      return EntryKind::kSubmodule;
    case GIT_FILEMODE_TREE:
      return EntryKind::kTree;
    default:
      return EntryKind::kFile;
  }
}

Result<CommitPtr> FindCommit(git_repository* repo, const std::string& commit_id) {
  auto oid = ParseOid(commit_id, "commit");
  if (!oid) return std::unexpected(oid.error());
  git_commit* raw = nullptr;
  if (git_commit_lookup(&raw, repo, &*oid) < 0) {
    return Fail("commit " + commit_id + " is not in the mirror (" + LastError() + ")");
  }
  return CommitPtr(raw);
}

// The tree of `folder` at `commit_id`; null when the commit id is empty or
// the folder is missing or not a folder (both count as an empty folder).
Result<TreePtr> FolderTree(git_repository* repo, const std::string& commit_id, const std::string& folder) {
  if (commit_id.empty()) return TreePtr();
  auto commit = FindCommit(repo, commit_id);
  if (!commit) return std::unexpected(commit.error());
  git_tree* root = nullptr;
  if (git_commit_tree(&root, commit->get()) < 0) {
    return Fail("cannot read the tree of commit " + commit_id + ": " + LastError());
  }
  TreePtr root_tree(root);
  if (folder.empty()) return root_tree;
  git_tree_entry* raw_entry = nullptr;
  int rc = git_tree_entry_bypath(&raw_entry, root_tree.get(), folder.c_str());
  if (rc == GIT_ENOTFOUND) return TreePtr();
  if (rc < 0) return Fail("cannot look up '" + folder + "' in commit " + commit_id + ": " + LastError());
  TreeEntryPtr entry(raw_entry);
  if (git_tree_entry_type(entry.get()) != GIT_OBJECT_TREE) return TreePtr();
  git_tree* sub = nullptr;
  if (git_tree_lookup(&sub, repo, git_tree_entry_id(entry.get())) < 0) {
    return Fail("cannot read folder '" + folder + "' of commit " + commit_id + ": " + LastError());
  }
  return TreePtr(sub);
}

Change ToChange(const git_diff_delta& delta, const std::string& folder) {
  Change change;
  switch (delta.status) {
    case GIT_DELTA_ADDED:
    case GIT_DELTA_COPIED:
      change.kind = Change::Kind::kAdded;
      break;
    case GIT_DELTA_DELETED:
      change.kind = Change::Kind::kDeleted;
      break;
    case GIT_DELTA_RENAMED:
      change.kind = Change::Kind::kRenamed;
      break;
    default:  // MODIFIED, TYPECHANGE
      change.kind = Change::Kind::kModified;
      break;
  }
  change.old_path = JoinPath(folder, delta.old_file.path);
  change.new_path = JoinPath(folder, delta.new_file.path);
  change.old_kind = KindOfMode(delta.old_file.mode);
  change.new_kind = KindOfMode(delta.new_file.mode);
  if (change.kind == Change::Kind::kAdded) {
    change.old_path = change.new_path;
    change.old_kind = change.new_kind;
  } else {
    change.old_blob_id = OidString(delta.old_file.id);
  }
  if (change.kind == Change::Kind::kDeleted) {
    change.new_path = change.old_path;
    change.new_kind = change.old_kind;
  } else {
    change.new_blob_id = OidString(delta.new_file.id);
  }
  return change;
}

struct WalkState {
  std::string folder;
  std::vector<TreeEntry>* out;
};

int CollectEntry(const char* root, const git_tree_entry* entry, void* payload) {
  auto* state = static_cast<WalkState*>(payload);
  if (git_tree_entry_type(entry) == GIT_OBJECT_TREE) return 0;  // descend
  std::string relative = std::string(root) + git_tree_entry_name(entry);
  state->out->push_back(TreeEntry{JoinPath(state->folder, relative.c_str()),
                                  OidString(*git_tree_entry_id(entry)),
                                  KindOfMode(git_tree_entry_filemode(entry))});
  return 0;
}

// ---- Writing: commits without a work tree, and pushes ------------------------

using ReferencePtr = Owned<git_reference, git_reference_free>;
using SignaturePtr = Owned<git_signature, git_signature_free>;
using TreeBuilderPtr = Owned<git_treebuilder, git_treebuilder_free>;

// A FileWrite path must name a file inside the repository in Git's own form,
// so that what is committed is exactly what the caller named.
Status CheckWritePath(const std::string& path) {
  if (path.empty()) return Fail("a file path is empty");
  if (path.front() == '/') {
    return Fail("file path '" + path + "' is absolute; use a path relative to the repository root");
  }
  size_t start = 0;
  while (true) {
    size_t slash = path.find('/', start);
    std::string_view part(path.data() + start, (slash == std::string::npos ? path.size() : slash) - start);
    if (part.empty() || part == "." || part == "..") {
      return Fail("file path '" + path + "' has an empty, '.' or '..' component");
    }
    if (Lower(std::string(part)) == ".git") return Fail("file path '" + path + "' points into .git");
    if (part.find('\0') != std::string_view::npos) {
      return Fail("file path '" + path + "' contains a NUL byte");
    }
    if (slash == std::string::npos) return Ok();
    start = slash + 1;
  }
}

Result<TreePtr> EmptyTree(git_repository* repo) {
  git_treebuilder* raw_builder = nullptr;
  if (git_treebuilder_new(&raw_builder, repo, nullptr) < 0) {
    return Fail("cannot make an empty tree: " + LastError());
  }
  TreeBuilderPtr builder(raw_builder);
  git_oid oid;
  git_tree* raw_tree = nullptr;
  if (git_treebuilder_write(&oid, builder.get()) < 0 || git_tree_lookup(&raw_tree, repo, &oid) < 0) {
    return Fail("cannot make an empty tree: " + LastError());
  }
  return TreePtr(raw_tree);
}

// The entry at `path` in `tree`, or null if there is none (a missing folder
// on the way, or a file where a folder would be, also mean none).
TreeEntryPtr EntryAt(git_tree* tree, const std::string& path) {
  git_tree_entry* raw = nullptr;
  if (git_tree_entry_bypath(&raw, tree, path.c_str()) < 0) {
    git_error_clear();
    return TreeEntryPtr();
  }
  return TreeEntryPtr(raw);
}

// Turns one FileWrite into a tree update, or nullopt when it changes nothing
// (deleting a missing file). Writes the blob for new content.
Result<std::optional<git_tree_update>> ToTreeUpdate(git_repository* repo, git_tree* base,
                                                    const std::string& path,
                                                    const std::optional<std::string>& content) {
  TreeEntryPtr existing = EntryAt(base, path);
  if (existing && git_tree_entry_type(existing.get()) == GIT_OBJECT_TREE) {
    return Fail("'" + path + "' is a folder in the parent commit, not a file");
  }
  git_tree_update update{};
  update.path = path.c_str();
  if (!content) {
    if (!existing) return std::optional<git_tree_update>();
    update.action = GIT_TREE_UPDATE_REMOVE;
    return std::optional(update);
  }
  if (git_blob_create_from_buffer(&update.id, repo, content->data(), content->size()) < 0) {
    return Fail("cannot store the content of '" + path + "': " + LastError());
  }
  update.action = GIT_TREE_UPDATE_UPSERT;
  bool executable = existing && git_tree_entry_filemode(existing.get()) == GIT_FILEMODE_BLOB_EXECUTABLE;
  update.filemode = executable ? GIT_FILEMODE_BLOB_EXECUTABLE : GIT_FILEMODE_BLOB;
  return std::optional(update);
}

// The id of the tree `writes` make of `base` (base's own id when they change
// nothing). One update per path, the last write winning; the map keeps each
// path's storage alive for the git_tree_update that points into it.
Result<git_oid> ApplyWrites(git_repository* repo, git_tree* base, const std::vector<FileWrite>& writes) {
  std::map<std::string, const std::optional<std::string>*> latest;
  for (const FileWrite& write : writes) {
    if (auto valid = CheckWritePath(write.path); !valid) return std::unexpected(valid.error());
    latest[write.path] = &write.content;
  }
  std::vector<git_tree_update> updates;
  for (const auto& [path, content] : latest) {
    auto update = ToTreeUpdate(repo, base, path, *content);
    if (!update) return std::unexpected(update.error());
    if (*update) updates.push_back(**update);
  }
  git_oid tree_id = *git_tree_id(base);
  if (!updates.empty() && git_tree_create_updated(&tree_id, repo, base, updates.size(), updates.data()) < 0) {
    return Fail("cannot apply the file changes (" + LastError() + ")");
  }
  return tree_id;
}

int RecordPushStatus(const char* /*refname*/, const char* status, void* payload) {
  static_cast<TransportContext*>(payload)->push_status = status != nullptr ? status : "";
  return 0;
}

// Keeps what the server writes on the sideband (hook output, "remote: ..."),
// bounded so a chatty server cannot grow it without limit.
int RecordRemoteOutput(const char* text, int length, void* payload) {
  constexpr size_t kMaxRemoteOutput = 16 * 1024;
  auto* ctx = static_cast<TransportContext*>(payload);
  if (length > 0 && ctx->remote_output.size() < kMaxRemoteOutput) {
    ctx->remote_output.append(
        text, std::min(static_cast<size_t>(length), kMaxRemoteOutput - ctx->remote_output.size()));
  }
  return 0;
}

// The server's sideband text as one line: progress overwritten with '\r'
// keeps its last state, blank lines go, lines are joined with "; ".
std::string RemoteMessage(const std::string& output) {
  std::string joined;
  size_t start = 0;
  while (start < output.size()) {
    size_t end = output.find('\n', start);
    if (end == std::string::npos) end = output.size();
    std::string line = output.substr(start, end - start);
    auto blank = [](unsigned char c) { return std::isspace(c) != 0; };
    while (!line.empty() && blank(line.back())) line.pop_back();
    if (size_t cr = line.rfind('\r'); cr != std::string::npos) line.erase(0, cr + 1);
    while (!line.empty() && blank(line.front())) line.erase(0, 1);
    if (!line.empty()) joined += (joined.empty() ? "" : "; ") + line;
    start = end + 1;
  }
  return joined;
}

std::string WithoutFinalPeriod(std::string text) {
  while (!text.empty() && (text.back() == '.' || text.back() == ' ')) text.pop_back();
  return text;
}

PushResult MovedRemote(const std::string& branch, const std::string& detail) {
  return PushResult{PushOutcome::kRejectedNonFastForward,
                    "branch '" + branch + "' moved on the remote (" + detail + ")"};
}

// A ref status the server reported for a refused update. "non-fast-forward"
// and "fetch first" (and a ref that changed under receive-pack: "... but
// expected ...") mean the branch moved; anything else is a refusal.
PushResult ClassifyRejection(const std::string& branch, const std::string& status,
                             const std::string& remote) {
  std::string lower = Lower(status + " " + remote);
  std::string detail = remote.empty() ? status : remote + " (" + status + ")";
  for (const char* moved : {"non-fast-forward", "fetch first", "but expected"}) {
    if (lower.find(moved) != std::string::npos) return MovedRemote(branch, detail);
  }
  return PushResult{PushOutcome::kRejected, detail};
}

// Runs one push of `refspec` with gitopsd's credential and host-key checks;
// the server's verdict on the ref and its sideband text land in `ctx`.
int PushRef(git_remote* remote, std::string refspec, TransportContext* ctx) {
  char* refspec_chars = refspec.data();
  git_strarray refspecs{&refspec_chars, 1};
  git_push_options options;
  git_push_options_init(&options, GIT_PUSH_OPTIONS_VERSION);
  options.callbacks = MakeCallbacks(ctx);
  options.callbacks.push_update_reference = RecordPushStatus;
  options.callbacks.sideband_progress = RecordRemoteOutput;
  return git_remote_push(remote, &refspecs, &options);
}

// What a finished git_remote_push means: an outcome, or the cause of a
// transport failure. libgit2 refuses a non-fast-forward itself when it sees
// the remote head (GIT_ENONFASTFORWARD); the server reports its verdict
// through push_update_reference.
Result<PushResult> PushVerdict(int rc, const TransportContext& ctx, const std::string& branch) {
  if (rc == GIT_ENONFASTFORWARD) return MovedRemote(branch, WithoutFinalPeriod(LastError()));
  if (rc < 0) {
    std::string failure = DescribeTransportFailure(ctx, rc);
    if (ctx.cause.empty() && failure.find("status code: 403") != std::string::npos) {
      return PushResult{PushOutcome::kRejected, "permission denied (" + failure + ")"};
    }
    return Fail(failure);
  }
  if (!ctx.push_status) return Fail("the remote did not report the result of the update");
  if (!ctx.push_status->empty()) {
    return ClassifyRejection(branch, *ctx.push_status, RemoteMessage(ctx.remote_output));
  }
  return PushResult{PushOutcome::kPushed, ""};
}

// Deletes the private ref a push goes out from, however the push ends.
class OutgoingRef {
 public:
  OutgoingRef(git_repository* repo, std::string name) : repo_(repo), name_(std::move(name)) {}
  OutgoingRef(const OutgoingRef&) = delete;
  OutgoingRef& operator=(const OutgoingRef&) = delete;
  ~OutgoingRef() {
    git_reference* raw = nullptr;
    if (git_reference_lookup(&raw, repo_, name_.c_str()) == 0) {
      ReferencePtr ref(raw);
      git_reference_delete(ref.get());
    }
    git_error_clear();
  }
  const std::string& name() const { return name_; }

 private:
  git_repository* repo_;
  std::string name_;
};

}  // namespace

void InitLibrary() {
  static std::once_flag once;
  std::call_once(once, [] { git_libgit2_init(); });
}

std::string RedactUrl(const std::string& url) {
  size_t sep = url.find("://");
  if (sep == std::string::npos) return url;
  size_t start = sep + 3;
  size_t end = url.find('/', start);
  if (end == std::string::npos) end = url.size();
  size_t at = url.rfind('@', end - 1);
  if (at == std::string::npos || at < start) return url;
  std::string_view userinfo(url.data() + start, at - start);
  if (userinfo.find(':') == std::string_view::npos) return url;  // no password
  return url.substr(0, start) + url.substr(at + 1);
}

void Repository::RepoDeleter::operator()(git_repository* repo) const { git_repository_free(repo); }

Repository::Repository(std::unique_ptr<git_repository, RepoDeleter> repo, std::string dir)
    : repo_(std::move(repo)), dir_(std::move(dir)) {}
Repository::Repository(Repository&&) noexcept = default;
Repository& Repository::operator=(Repository&&) noexcept = default;
Repository::~Repository() = default;

Result<Repository> Repository::OpenOrInit(const std::string& dir, const std::string& url) {
  InitLibrary();
  if (url.empty()) return Fail("cannot set up the mirror in " + dir + ": the remote URL is empty");
  std::error_code ec;
  bool has_content = std::filesystem::exists(dir, ec) && !std::filesystem::is_empty(dir, ec);
  git_repository* raw = nullptr;
  if (has_content) {
    if (git_repository_open_ext(&raw, dir.c_str(),
                                GIT_REPOSITORY_OPEN_NO_SEARCH | GIT_REPOSITORY_OPEN_BARE, nullptr) < 0) {
      return Fail(dir + " exists but is not a Git repository (" + LastError() +
                  "); remove it or choose another folder");
    }
  } else {
    git_repository_init_options options;
    git_repository_init_options_init(&options, GIT_REPOSITORY_INIT_OPTIONS_VERSION);
    options.flags = GIT_REPOSITORY_INIT_BARE | GIT_REPOSITORY_INIT_MKPATH;
    options.initial_head = "main";
    if (git_repository_init_ext(&raw, dir.c_str(), &options) < 0) {
      return Fail("cannot create a Git mirror in " + dir + ": " + LastError());
    }
  }
  std::unique_ptr<git_repository, RepoDeleter> repo(raw);

  git_remote* raw_remote = nullptr;
  int rc = git_remote_lookup(&raw_remote, repo.get(), "origin");
  RemotePtr remote(raw_remote);
  if (rc == GIT_ENOTFOUND) {
    rc = git_remote_create(&raw_remote, repo.get(), "origin", url.c_str());
    remote.reset(raw_remote);
  } else if (rc == 0 && url != git_remote_url(remote.get())) {
    rc = git_remote_set_url(repo.get(), "origin", url.c_str());
  }
  if (rc < 0) {
    return Fail("cannot set remote origin of " + dir + " to " + RedactUrl(url) + ": " + LastError());
  }
  return Repository(std::move(repo), dir);
}

Result<std::string> Repository::Fetch(const std::string& branch, const Credentials& creds) {
  InitLibrary();
  git_remote* raw_remote = nullptr;
  if (git_remote_lookup(&raw_remote, repo_.get(), "origin") < 0) {
    return Fail("mirror " + dir_ + " has no remote origin: " + LastError());
  }
  RemotePtr remote(raw_remote);
  const std::string url = git_remote_url(remote.get());
  const std::string prefix = "cannot fetch branch '" + branch + "' from " + RedactUrl(url) + ": ";
  const std::string remote_ref = "refs/heads/" + branch;
  int valid = 0;
  if (branch.empty() || git_reference_name_is_valid(&valid, remote_ref.c_str()) < 0 || !valid) {
    return Fail(prefix + "'" + branch + "' is not a valid branch name");
  }

  TransportContext ctx;
  if (auto ready = PrepareTransport(&ctx, url, creds); !ready) return Fail(prefix + ready.error().message);

  git_remote_callbacks callbacks = MakeCallbacks(&ctx);
  git_remote_connect_options connect_options;
  git_remote_connect_options_init(&connect_options, GIT_REMOTE_CONNECT_OPTIONS_VERSION);
  connect_options.callbacks = callbacks;
  int rc = git_remote_connect_ext(remote.get(), GIT_DIRECTION_FETCH, &connect_options);
  if (rc < 0) return Fail(prefix + DescribeTransportFailure(ctx, rc));

  if (auto listed = CheckRemoteHasBranch(remote.get(), branch); !listed) {
    git_remote_disconnect(remote.get());
    return Fail(prefix + listed.error().message);
  }

  std::string refspec = "+" + remote_ref + ":refs/remotes/origin/" + branch;
  char* refspec_chars = refspec.data();
  git_strarray refspecs{&refspec_chars, 1};
  git_fetch_options fetch_options;
  git_fetch_options_init(&fetch_options, GIT_FETCH_OPTIONS_VERSION);
  fetch_options.callbacks = callbacks;
  fetch_options.prune = GIT_FETCH_NO_PRUNE;
  fetch_options.update_fetchhead = 0;
  fetch_options.download_tags = GIT_REMOTE_DOWNLOAD_TAGS_NONE;
  rc = git_remote_download(remote.get(), &refspecs, &fetch_options);
  if (rc == 0) {
    rc = git_remote_update_tips(remote.get(), &callbacks, 0, GIT_REMOTE_DOWNLOAD_TAGS_NONE,
                                "gitopsd: fetch");
  }
  std::string failure = rc < 0 ? DescribeTransportFailure(ctx, rc) : "";
  git_remote_disconnect(remote.get());
  if (rc < 0) return Fail(prefix + failure);
  return FetchedHead(branch);
}

Result<std::string> Repository::FetchedHead(const std::string& branch) const {
  git_oid oid;
  std::string ref = "refs/remotes/origin/" + branch;
  if (git_reference_name_to_id(&oid, repo_.get(), ref.c_str()) < 0) {
    return Fail("branch '" + branch + "' has not been fetched into " + dir_ + " yet");
  }
  return OidString(oid);
}

Result<std::vector<Change>> Repository::DiffTrees(const std::string& old_commit,
                                                  const std::string& new_commit,
                                                  const std::string& folder) const {
  const std::string dir = NormalizeFolder(folder);
  auto old_tree = FolderTree(repo_.get(), old_commit, dir);
  if (!old_tree) return std::unexpected(old_tree.error());
  if (new_commit.empty()) return Fail("cannot diff: the new commit id is empty");
  auto new_tree = FolderTree(repo_.get(), new_commit, dir);
  if (!new_tree) return std::unexpected(new_tree.error());

  const std::string what = "cannot diff '" + dir + "' between " +
                           (old_commit.empty() ? std::string("the empty tree") : old_commit) +
                           " and " + new_commit + ": ";
  git_diff_options options;
  git_diff_options_init(&options, GIT_DIFF_OPTIONS_VERSION);
  options.flags = GIT_DIFF_INCLUDE_TYPECHANGE;
  git_diff* raw = nullptr;
  if (git_diff_tree_to_tree(&raw, repo_.get(), old_tree->get(), new_tree->get(), &options) < 0) {
    return Fail(what + LastError());
  }
  DiffPtr diff(raw);
  git_diff_find_options find;
  git_diff_find_options_init(&find, GIT_DIFF_FIND_OPTIONS_VERSION);
  find.flags = GIT_DIFF_FIND_RENAMES;
  if (git_diff_find_similar(diff.get(), &find) < 0) return Fail(what + LastError());

  std::vector<Change> changes;
  size_t count = git_diff_num_deltas(diff.get());
  changes.reserve(count);
  for (size_t i = 0; i < count; ++i) {
    const git_diff_delta* delta = git_diff_get_delta(diff.get(), i);
    if (delta == nullptr || delta->status == GIT_DELTA_UNMODIFIED) continue;
    changes.push_back(ToChange(*delta, dir));
  }
  return changes;
}

Result<std::vector<TreeEntry>> Repository::ListTree(const std::string& commit,
                                                    const std::string& folder) const {
  WalkState state{NormalizeFolder(folder), nullptr};
  auto tree = FolderTree(repo_.get(), commit, state.folder);
  if (!tree) return std::unexpected(tree.error());
  std::vector<TreeEntry> entries;
  if (!*tree) return entries;
  state.out = &entries;
  if (git_tree_walk(tree->get(), GIT_TREEWALK_PRE, CollectEntry, &state) < 0) {
    return Fail("cannot list '" + state.folder + "' at commit " + commit + ": " + LastError());
  }
  return entries;
}

Result<size_t> Repository::BlobSize(const std::string& blob_id) const {
  auto oid = ParseOid(blob_id, "blob");
  if (!oid) return std::unexpected(oid.error());
  git_odb* raw_odb = nullptr;
  if (git_repository_odb(&raw_odb, repo_.get()) < 0) {
    return Fail("cannot open the object database of " + dir_ + ": " + LastError());
  }
  OdbPtr odb(raw_odb);
  size_t size = 0;
  git_object_t type = GIT_OBJECT_INVALID;
  if (git_odb_read_header(&size, &type, odb.get(), &*oid) < 0) {
    return Fail("blob " + blob_id + " is not in the mirror (" + LastError() + ")");
  }
  if (type != GIT_OBJECT_BLOB) return Fail("object " + blob_id + " is not a blob");
  return size;
}

Result<std::string> Repository::ReadBlob(const std::string& blob_id, size_t max_bytes) const {
  auto size = BlobSize(blob_id);
  if (!size) return std::unexpected(size.error());
  if (*size > max_bytes) {
    return Fail("blob " + blob_id + " is " + std::to_string(*size) + " bytes, more than the limit of " +
                std::to_string(max_bytes) + " bytes");
  }
  auto oid = ParseOid(blob_id, "blob");
  git_blob* raw = nullptr;
  if (git_blob_lookup(&raw, repo_.get(), &*oid) < 0) {
    return Fail("cannot read blob " + blob_id + ": " + LastError());
  }
  BlobPtr blob(raw);
  const char* content = static_cast<const char*>(git_blob_rawcontent(blob.get()));
  return std::string(content, static_cast<size_t>(git_blob_rawsize(blob.get())));
}

Status Repository::ExportTree(const std::string& commit, const std::string& dest_dir) const {
  const std::string what = "cannot export commit " + commit + " into " + dest_dir + ": ";
  auto found = FindCommit(repo_.get(), commit);
  if (!found) return std::unexpected(found.error());
  std::error_code ec;
  std::filesystem::create_directories(dest_dir, ec);
  if (ec) return Fail(what + ec.message());
  if (!std::filesystem::is_empty(dest_dir, ec)) return Fail(what + "the folder is not empty");
  git_tree* raw_tree = nullptr;
  if (git_commit_tree(&raw_tree, found->get()) < 0) return Fail(what + LastError());
  TreePtr tree(raw_tree);
  auto empty = EmptyTree(repo_.get());
  if (!empty) return std::unexpected(empty.error());
  git_checkout_options opts = GIT_CHECKOUT_OPTIONS_INIT;
  // Against an empty baseline every file is an addition, whatever HEAD of
  // the mirror points at; the mirror's index is neither read nor written.
  opts.checkout_strategy = GIT_CHECKOUT_FORCE | GIT_CHECKOUT_DONT_UPDATE_INDEX | GIT_CHECKOUT_DONT_WRITE_INDEX;
  opts.baseline = empty->get();
  opts.target_directory = dest_dir.c_str();
  if (git_checkout_tree(repo_.get(), reinterpret_cast<const git_object*>(tree.get()), &opts) < 0) {
    return Fail(what + LastError());
  }
  return Ok();
}

Result<CommitInfo> Repository::LookupCommit(const std::string& commit_id) const {
  auto commit = FindCommit(repo_.get(), commit_id);
  if (!commit) return std::unexpected(commit.error());
  CommitInfo info;
  info.id = OidString(*git_commit_id(commit->get()));
  const char* message = git_commit_message(commit->get());
  info.message = message != nullptr ? message : "";
  if (const git_signature* author = git_commit_author(commit->get()); author != nullptr) {
    info.author_name = author->name != nullptr ? author->name : "";
    info.author_email = author->email != nullptr ? author->email : "";
  }
  info.time = static_cast<int64_t>(git_commit_time(commit->get()));
  return info;
}

bool Repository::HasCommit(const std::string& commit_id) const {
  return FindCommit(repo_.get(), commit_id).has_value();
}

bool Repository::IsAncestor(const std::string& ancestor, const std::string& descendant) const {
  auto ancestor_commit = FindCommit(repo_.get(), ancestor);
  auto descendant_commit = FindCommit(repo_.get(), descendant);
  if (!ancestor_commit || !descendant_commit) return false;
  const git_oid* ancestor_id = git_commit_id(ancestor_commit->get());
  const git_oid* descendant_id = git_commit_id(descendant_commit->get());
  if (git_oid_equal(ancestor_id, descendant_id)) return true;
  return git_graph_descendant_of(repo_.get(), descendant_id, ancestor_id) == 1;
}

Result<std::string> Repository::CreateCommit(const std::string& parent, const std::vector<FileWrite>& writes,
                                             const Signature& author, const std::string& message) {
  const std::string what = "cannot create a commit " +
                           (parent.empty() ? std::string("without parent") : "on " + parent) + " in " + dir_ +
                           ": ";
  CommitPtr parent_commit;
  TreePtr base;
  if (parent.empty()) {
    auto empty = EmptyTree(repo_.get());
    if (!empty) return Fail(what + empty.error().message);
    base = std::move(*empty);
  } else {
    auto found = FindCommit(repo_.get(), parent);
    if (!found) return Fail(what + found.error().message);
    parent_commit = std::move(*found);
    git_tree* raw_tree = nullptr;
    if (git_commit_tree(&raw_tree, parent_commit.get()) < 0) return Fail(what + LastError());
    base.reset(raw_tree);
  }

  auto tree_id = ApplyWrites(repo_.get(), base.get(), writes);
  if (!tree_id) return Fail(what + tree_id.error().message);
  git_tree* raw_tree = nullptr;
  if (git_tree_lookup(&raw_tree, repo_.get(), &*tree_id) < 0) return Fail(what + LastError());
  TreePtr tree(raw_tree);

  git_signature* raw_signature = nullptr;
  if (git_signature_now(&raw_signature, author.name.c_str(), author.email.c_str()) < 0) {
    return Fail(what + "the author '" + author.name + " <" + author.email + ">' is not valid (" +
                LastError() + ")");
  }
  SignaturePtr signature(raw_signature);
  const git_commit* parents[] = {parent_commit.get()};
  git_oid commit_id;
  if (git_commit_create(&commit_id, repo_.get(), nullptr, signature.get(), signature.get(), nullptr,
                        message.c_str(), tree.get(), parent_commit ? 1 : 0, parents) < 0) {
    return Fail(what + LastError());
  }
  return OidString(commit_id);
}

Result<PushResult> Repository::Push(const std::string& commit, const std::string& branch,
                                    const Credentials& creds) {
  InitLibrary();
  git_remote* raw_remote = nullptr;
  if (git_remote_lookup(&raw_remote, repo_.get(), "origin") < 0) {
    return Fail("mirror " + dir_ + " has no remote origin: " + LastError());
  }
  RemotePtr remote(raw_remote);
  const std::string url = git_remote_url(remote.get());
  const std::string prefix =
      "cannot push commit " + commit + " to branch '" + branch + "' of " + RedactUrl(url) + ": ";
  const std::string remote_ref = "refs/heads/" + branch;
  int valid = 0;
  if (branch.empty() || git_reference_name_is_valid(&valid, remote_ref.c_str()) < 0 || !valid) {
    return Fail(prefix + "'" + branch + "' is not a valid branch name");
  }
  auto found = FindCommit(repo_.get(), commit);
  if (!found) return Fail(prefix + found.error().message);
  const git_oid commit_id = *git_commit_id(found->get());

  TransportContext ctx;
  if (auto ready = PrepareTransport(&ctx, url, creds); !ready) return Fail(prefix + ready.error().message);

  // libgit2 pushes from a ref, so the commit gets a private one for the
  // push, unique so that pushes from other Repository objects on this
  // folder cannot delete it under this one.
  static std::atomic<uint64_t> push_count{0};
  OutgoingRef outgoing(repo_.get(), "refs/gitopsd/outgoing/" + commit + "-" + std::to_string(getpid()) + "-" +
                                        std::to_string(++push_count));
  if (git_reference_create(nullptr, repo_.get(), outgoing.name().c_str(), &commit_id, 1, nullptr) < 0) {
    return Fail(prefix + "cannot create " + outgoing.name() + " in " + dir_ + ": " + LastError());
  }
  int rc = PushRef(remote.get(), outgoing.name() + ":" + remote_ref, &ctx);  // no '+': never forced
  auto verdict = PushVerdict(rc, ctx, branch);
  if (!verdict) return Fail(prefix + verdict.error().message);
  if (verdict->outcome != PushOutcome::kPushed) return verdict;

  const std::string tracking = "refs/remotes/origin/" + branch;
  if (git_reference_create(nullptr, repo_.get(), tracking.c_str(), &commit_id, 1, "gitopsd: push") < 0) {
    return Fail("commit " + commit + " was pushed to branch '" + branch + "' of " + RedactUrl(url) +
                ", but " + tracking + " in " + dir_ + " could not be updated: " + LastError());
  }
  return verdict;
}

}  // namespace gitopsd::git
