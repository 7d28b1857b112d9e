// Real Git remotes for integration tests: fixture repositories built with the
// git command line, git-http-backend behind lighttpd with basic auth (plain
// HTTP, or HTTPS with a self-signed certificate), and sshd with its own host
// and client keys. Everything binds to 127.0.0.1 on a
// free port, lives in its own TempDir and is stopped by PID when the object
// goes away.
//
// What callers can rely on:
//  - FixtureRepo helpers report failures through ADD_FAILURE() with the git
//    command and its output, so a broken fixture names itself; they return
//    false / "" then.
//  - git runs with a fixed author and committer, no user or system config,
//    init.defaultBranch=main and protocol.file.allow=always.
//  - A server's Start() fails (never hangs) if the server does not listen
//    within a few seconds; Unavailable() says why a server cannot run here,
//    and GITOPSD_START_OR_SKIP turns that into GTEST_SKIP.
#pragma once
#include <gtest/gtest.h>

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "sync/status.h"
#include "tests/support/process.h"
#include "tests/support/temp_dir.h"

namespace gitopsd::test {

// The environment every fixture git command runs with.
std::map<std::string, std::string> FixtureGitEnv();

// Runs `git <args>` in `cwd` with FixtureGitEnv(); ADD_FAILURE on failure.
CommandResult RunGit(const std::vector<std::string>& args, const std::string& cwd);

// A bare repository `<parent>/<name>.git` and a work clone
// `<parent>/<name>.work` whose origin is the bare one, on branch main.
class FixtureRepo {
 public:
  explicit FixtureRepo(const std::string& parent_dir, const std::string& name = "fixture");
  FixtureRepo(const FixtureRepo&) = delete;
  FixtureRepo& operator=(const FixtureRepo&) = delete;

  const std::string& bare_path() const { return bare_path_; }
  const std::string& work_path() const { return work_path_; }
  std::string file_url() const { return "file://" + bare_path_; }

  // Edits in the work tree (paths relative to the repository root).
  bool WriteFile(const std::string& path, const std::string& content);
  bool Remove(const std::string& path);                              // git rm -r
  bool Rename(const std::string& from, const std::string& to);       // git mv
  bool Symlink(const std::string& target, const std::string& path);  // a 120000 entry
  bool MakeExecutable(const std::string& path);                      // a 100755 entry
  // A submodule entry (gitlink, mode 160000) at `path` pointing at `commit`,
  // without .gitmodules or a checkout: enough for tree and diff code.
  bool AddGitlink(const std::string& path, const std::string& commit);

  // Stages everything and commits; returns the new commit id ("" on failure).
  std::string Commit(const std::string& message);
  // Moves the work branch to `rev` (e.g. "HEAD~1") and resets the work tree.
  bool ResetHard(const std::string& rev);
  bool CheckoutNewBranch(const std::string& branch);

  bool Push(const std::string& branch = "main");       // HEAD -> refs/heads/<branch>
  bool ForcePush(const std::string& branch = "main");
  std::string Head();                                  // commit id of the work HEAD

  // Any other git command in the work clone.
  CommandResult Git(const std::vector<std::string>& args);

 private:
  std::string bare_path_;
  std::string work_path_;
};

// A self-signed certificate for `dns_name` (subjectAltName DNS:<dns_name>, an
// EC P-256 key, valid for a few days) made with the openssl command line.
// The certificate is its own CA: trusting `cert_file` trusts the server.
Status MakeSelfSignedCertificate(const std::string& cert_file, const std::string& key_file,
                                 const std::string& dns_name);

// lighttpd + git-http-backend (mod_cgi), basic auth for every request.
// kHttps serves TLS (mod_openssl) with a certificate made by Start() for
// DNS:localhost, so its URLs name localhost: libgit2 1.5 with mbedTLS ignores
// IP SANs and would refuse https://127.0.0.1.
class HttpGitServer {
 public:
  enum class Scheme { kHttp, kHttps };

  HttpGitServer(std::string user, std::string password, Scheme scheme = Scheme::kHttp);
  HttpGitServer(const HttpGitServer&) = delete;
  HttpGitServer& operator=(const HttpGitServer&) = delete;

  // Why the server cannot run on this machine ("" = it can); kHttps also
  // needs the openssl command line and lighttpd's mod_openssl.
  std::string Unavailable() const;
  Status Start();
  void Stop() { server_.reset(); }

  // Put bare repositories here (e.g. FixtureRepo(repos_root(), "demo")).
  const std::string& repos_root() const { return repos_root_; }
  int port() const { return port_; }
  // http://127.0.0.1:PORT/git/<repo> or https://localhost:PORT/git/<repo>
  // (repo as named under repos_root, e.g. "demo.git").
  std::string url_for(const std::string& repo) const;
  // The same with user:password@ in it, for the git CLI.
  std::string url_with_credentials_for(const std::string& repo) const;
  // kHttps: the server's certificate (PEM), to trust as a CA file; made by
  // Start() and fresh for every server. kHttp: "".
  std::string ca_file() const;
  std::string Log() const;

 private:
  std::string Origin(const std::string& userinfo) const;  // scheme://[userinfo@]host:port

  TempDir dir_{"http"};
  std::string user_, password_;
  Scheme scheme_;
  std::string repos_root_;
  int port_ = -1;
  std::optional<Process> server_;
};

// sshd in the foreground with its own ed25519 host key; one client ed25519
// key authorised for the current user.
class SshGitServer {
 public:
  SshGitServer();
  SshGitServer(const SshGitServer&) = delete;
  SshGitServer& operator=(const SshGitServer&) = delete;

  static std::string Unavailable();
  Status Start();
  void Stop() { server_.reset(); }

  const std::string& repos_root() const { return repos_root_; }
  int port() const { return port_; }
  std::string client_key_path() const { return dir_.Sub("client"); }
  // A known_hosts file with the line "[127.0.0.1]:PORT ssh-ed25519 AAAA...".
  std::string known_hosts_path() const { return dir_.Sub("known_hosts"); }
  std::string host_public_key_path() const { return dir_.Sub("hostkey.pub"); }
  // The host key's SHA256 fingerprint as ssh prints it ("SHA256:...").
  std::string host_key_fingerprint() const;
  // ssh://<current user>@127.0.0.1:PORT<abs path>
  std::string url_for(const std::string& bare_repo_abs_path) const;
  // GIT_SSH_COMMAND for the git CLI (client key, no host key checks).
  std::string git_ssh_command() const;
  std::string Log() const;

 private:
  TempDir dir_{"ssh"};
  std::string repos_root_;
  int port_ = -1;
  std::optional<Process> server_;
};

}  // namespace gitopsd::test

// Skips the test if the server cannot run here; fails it if it cannot start.
#define GITOPSD_START_OR_SKIP(server)                                                 \
  do {                                                                                \
    if (std::string why = (server).Unavailable(); !why.empty()) GTEST_SKIP() << why;  \
    if (auto started = (server).Start(); !started) FAIL() << started.error().message; \
  } while (0)
