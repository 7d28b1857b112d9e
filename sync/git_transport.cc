// Connecting to the remote and fetching: URLs, credentials (offered once),
// SSH host keys pinned to known_hosts, the CA file, and errors that say
// what went wrong in words.
#include <algorithm>
#include <cctype>
#include <filesystem>
#include <mutex>
#include <utility>

#include "sync/git_internal.h"

namespace gitopsd::git {
namespace git_internal {
namespace {


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

}  // namespace

Result<RemotePtr> FindOrigin(git_repository* repo, const std::string& dir) {
  git_remote* raw_remote = nullptr;
  if (git_remote_lookup(&raw_remote, repo, "origin") < 0) {
    return Fail("mirror " + dir + " has no remote origin: " + LastError());
  }
  return RemotePtr(raw_remote);
}

bool IsBranchName(const std::string& branch) {
  const std::string ref = "refs/heads/" + branch;
  int valid = 0;
  return !branch.empty() && git_reference_name_is_valid(&valid, ref.c_str()) >= 0 && valid;
}

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

}  // namespace git_internal

using namespace git_internal;

namespace {

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

}  // namespace

Result<std::string> Repository::Fetch(const std::string& branch, const Credentials& creds) {
  InitLibrary();
  auto origin = FindOrigin(repo_.get(), dir_);
  if (!origin) return std::unexpected(origin.error());
  RemotePtr remote = std::move(*origin);
  const std::string url = git_remote_url(remote.get());
  const std::string prefix = "cannot fetch branch '" + branch + "' from " + RedactUrl(url) + ": ";
  const std::string remote_ref = "refs/heads/" + branch;
  if (!IsBranchName(branch)) return Fail(prefix + "'" + branch + "' is not a valid branch name");

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

}  // namespace gitopsd::git
