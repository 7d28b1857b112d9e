#include "tests/support/git_servers.h"

#include <gtest/gtest.h>
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <sstream>

namespace gitopsd::test {
namespace {

namespace fs = std::filesystem;

constexpr auto kServerStartTimeout = std::chrono::milliseconds(5000);
constexpr int kStartAttempts = 3;  // a free port can be taken between probe and bind
constexpr const char* kGitHttpBackend = "/usr/lib/git-core/git-http-backend";
constexpr const char* kLighttpdModOpenssl = "/usr/lib/lighttpd/mod_openssl.so";

std::string Trim(std::string text) {
  while (!text.empty() && (text.back() == '\n' || text.back() == '\r' || text.back() == ' ')) text.pop_back();
  return text;
}

std::string CurrentUser() {
  const passwd* pw = getpwuid(geteuid());
  return pw != nullptr && pw->pw_name != nullptr ? pw->pw_name : "root";
}

// Starts a server and waits until it listens on `port`; stops it on failure.
Result<Process> StartListening(const std::vector<std::string>& argv, const std::string& log_file, int port,
                               const std::string& what) {
  auto process = Process::Start(argv, SpawnOptions{.cwd = "", .env = {}, .output_file = log_file});
  if (!process) return std::unexpected(process.error());
  auto deadline = std::chrono::steady_clock::now() + kServerStartTimeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (!process->Running()) break;
    if (WaitForPort(port, std::chrono::milliseconds(50))) return std::move(*process);
  }
  process->Stop();
  return Fail(what + " did not listen on 127.0.0.1:" + std::to_string(port) + "; its output:\n" +
              ReadTextFile(log_file));
}

}  // namespace

std::map<std::string, std::string> FixtureGitEnv() {
  return {
      {"GIT_AUTHOR_NAME", "Fixture Author"},   {"GIT_AUTHOR_EMAIL", "author@example.test"},
      {"GIT_COMMITTER_NAME", "Fixture Author"}, {"GIT_COMMITTER_EMAIL", "author@example.test"},
      {"GIT_CONFIG_NOSYSTEM", "1"},             {"GIT_CONFIG_GLOBAL", "/dev/null"},
      {"GIT_TERMINAL_PROMPT", "0"},             {"LC_ALL", "C"},
  };
}

CommandResult RunGit(const std::vector<std::string>& args, const std::string& cwd) {
  std::vector<std::string> argv = {"git",          "-c", "init.defaultBranch=main", "-c",
                                   "protocol.file.allow=always", "-c", "commit.gpgsign=false",
                                   "-c",           "core.symlinks=true"};
  argv.insert(argv.end(), args.begin(), args.end());
  CommandResult result = RunCommand(argv, cwd, FixtureGitEnv());
  if (!result.ok()) {
    ADD_FAILURE() << "fixture command failed (exit " << result.exit_code << ") in " << cwd << ": "
                  << JoinArgv(argv) << "\n"
                  << result.output;
  }
  return result;
}

Status MakeSelfSignedCertificate(const std::string& cert_file, const std::string& key_file,
                                 const std::string& dns_name) {
  CommandResult openssl = RunCommand({"openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                                      "ec_paramgen_curve:prime256v1", "-nodes", "-days", "3", "-subj",
                                      "/CN=" + dns_name, "-addext", "subjectAltName=DNS:" + dns_name,
                                      "-keyout", key_file, "-out", cert_file});
  if (!openssl.ok()) return Fail("openssl could not make a certificate for " + dns_name + ": " + openssl.output);
  return Ok();
}

// ---- FixtureRepo ----------------------------------------------------------

FixtureRepo::FixtureRepo(const std::string& parent_dir, const std::string& name)
    : bare_path_(parent_dir + "/" + name + ".git"), work_path_(parent_dir + "/" + name + ".work") {
  std::error_code ec;
  fs::create_directories(parent_dir, ec);
  RunGit({"init", "-q", "--bare", "-b", "main", bare_path_}, parent_dir);
  RunGit({"init", "-q", "-b", "main", work_path_}, parent_dir);
  RunGit({"remote", "add", "origin", bare_path_}, work_path_);
}

CommandResult FixtureRepo::Git(const std::vector<std::string>& args) { return RunGit(args, work_path_); }

bool FixtureRepo::WriteFile(const std::string& path, const std::string& content) {
  std::string full = work_path_ + "/" + path;
  std::error_code ec;
  if (fs::is_symlink(full, ec)) fs::remove(full, ec);
  if (!WriteTextFile(full, content)) {
    ADD_FAILURE() << "cannot write fixture file " << full;
    return false;
  }
  return true;
}

bool FixtureRepo::Remove(const std::string& path) { return Git({"rm", "-r", "-q", "--", path}).ok(); }

bool FixtureRepo::Rename(const std::string& from, const std::string& to) {
  std::error_code ec;
  fs::create_directories(fs::path(work_path_ + "/" + to).parent_path(), ec);
  return Git({"mv", "--", from, to}).ok();
}

bool FixtureRepo::Symlink(const std::string& target, const std::string& path) {
  fs::path full = work_path_ + "/" + path;
  std::error_code ec;
  fs::create_directories(full.parent_path(), ec);
  fs::remove(full, ec);
  fs::create_symlink(target, full, ec);
  if (ec) {
    ADD_FAILURE() << "cannot create symlink " << full << " -> " << target << ": " << ec.message();
    return false;
  }
  return true;
}

bool FixtureRepo::MakeExecutable(const std::string& path) {
  std::error_code ec;
  fs::permissions(work_path_ + "/" + path, fs::perms::owner_exec | fs::perms::group_exec | fs::perms::others_exec,
                  fs::perm_options::add, ec);
  if (ec) {
    ADD_FAILURE() << "cannot make " << path << " executable: " << ec.message();
    return false;
  }
  return true;
}

bool FixtureRepo::AddGitlink(const std::string& path, const std::string& commit) {
  // An empty folder is how git shows an unpopulated submodule; without it
  // `git add -A` would stage the gitlink's removal.
  std::error_code ec;
  fs::create_directories(work_path_ + "/" + path, ec);
  return Git({"update-index", "--add", "--cacheinfo", "160000," + commit + "," + path}).ok();
}

std::string FixtureRepo::Commit(const std::string& message) {
  if (!Git({"add", "-A"}).ok()) return "";
  if (!Git({"commit", "-q", "-m", message}).ok()) return "";
  return Head();
}

std::string FixtureRepo::Head() {
  CommandResult result = Git({"rev-parse", "HEAD"});
  return result.ok() ? Trim(result.output) : "";
}

bool FixtureRepo::ResetHard(const std::string& rev) { return Git({"reset", "-q", "--hard", rev}).ok(); }

bool FixtureRepo::CheckoutNewBranch(const std::string& branch) {
  return Git({"checkout", "-q", "-b", branch}).ok();
}

bool FixtureRepo::Push(const std::string& branch) {
  return Git({"push", "-q", "origin", "HEAD:refs/heads/" + branch}).ok();
}

bool FixtureRepo::ForcePush(const std::string& branch) {
  return Git({"push", "-q", "--force", "origin", "HEAD:refs/heads/" + branch}).ok();
}

// ---- HttpGitServer --------------------------------------------------------

HttpGitServer::HttpGitServer(std::string user, std::string password, Scheme scheme)
    : user_(std::move(user)), password_(std::move(password)), scheme_(scheme), repos_root_(dir_.Sub("repos")) {
  std::error_code ec;
  fs::create_directories(repos_root_, ec);
  fs::create_directories(dir_.Sub("www"), ec);
}

std::string HttpGitServer::Unavailable() const {
  if (FindExecutable("lighttpd").empty()) return "lighttpd is not installed (apt-get install lighttpd)";
  if (FindExecutable("htpasswd").empty()) return "htpasswd is not installed (apt-get install apache2-utils)";
  if (access(kGitHttpBackend, X_OK) != 0) return std::string(kGitHttpBackend) + " is missing (install git)";
  if (scheme_ == Scheme::kHttps) {
    if (FindExecutable("openssl").empty()) return "the openssl command is not installed (apt-get install openssl)";
    if (access(kLighttpdModOpenssl, R_OK) != 0) {
      return std::string(kLighttpdModOpenssl) + " is missing (apt-get install lighttpd-mod-openssl)";
    }
  }
  return "";
}

Status HttpGitServer::Start() {
  CommandResult htpasswd =
      RunCommand({"htpasswd", "-bc", dir_.Sub("htpasswd"), user_, password_});
  if (!htpasswd.ok()) return Fail("htpasswd failed: " + htpasswd.output);
  bool tls = scheme_ == Scheme::kHttps;
  if (tls) {
    if (auto made = MakeSelfSignedCertificate(ca_file(), dir_.Sub("key.pem"), "localhost"); !made) return made;
  }
  std::string last_error;
  for (int attempt = 0; attempt < kStartAttempts; ++attempt) {
    port_ = FreeLoopbackPort();
    std::ostringstream conf;
    conf << "server.bind = \"127.0.0.1\"\n"
         << "server.port = " << port_ << "\n"
         << "server.document-root = \"" << dir_.Sub("www") << "\"\n"
         << "server.errorlog = \"" << dir_.Sub("error.log") << "\"\n"
         << "server.modules = ( " << (tls ? "\"mod_openssl\", " : "")
         << "\"mod_alias\", \"mod_setenv\", \"mod_auth\", \"mod_authn_file\", \"mod_cgi\" )\n";
    if (tls) {
      conf << "ssl.engine = \"enable\"\n"
           << "ssl.pemfile = \"" << ca_file() << "\"\n"
           << "ssl.privkey = \"" << dir_.Sub("key.pem") << "\"\n";
    }
    conf << "alias.url = ( \"/git\" => \"" << kGitHttpBackend << "\" )\n"
         << "$HTTP[\"url\"] =~ \"^/git\" {\n"
         << "  cgi.assign = ( \"\" => \"\" )\n"
         << "  setenv.add-environment = ( \"GIT_PROJECT_ROOT\" => \"" << repos_root_
         << "\", \"GIT_HTTP_EXPORT_ALL\" => \"1\" )\n"
         << "  auth.backend = \"htpasswd\"\n"
         << "  auth.backend.htpasswd.userfile = \"" << dir_.Sub("htpasswd") << "\"\n"
         << "  auth.require = ( \"\" => ( \"method\" => \"basic\", \"realm\" => \"git\", \"require\" => "
            "\"valid-user\" ) )\n"
         << "}\n";
    if (!WriteTextFile(dir_.Sub("lighttpd.conf"), conf.str())) return Fail("cannot write lighttpd.conf");
    auto server = StartListening({FindExecutable("lighttpd"), "-D", "-f", dir_.Sub("lighttpd.conf")},
                                 dir_.Sub("lighttpd.out"), port_, "lighttpd");
    if (server) {
      server_.emplace(std::move(*server));
      return Ok();
    }
    last_error = server.error().message + ReadTextFile(dir_.Sub("error.log"));
  }
  return Fail(last_error);
}

std::string HttpGitServer::Origin(const std::string& userinfo) const {
  bool tls = scheme_ == Scheme::kHttps;
  return std::string(tls ? "https://" : "http://") + (userinfo.empty() ? "" : userinfo + "@") +
         (tls ? "localhost:" : "127.0.0.1:") + std::to_string(port_);
}

std::string HttpGitServer::url_for(const std::string& repo) const { return Origin("") + "/git/" + repo; }

std::string HttpGitServer::url_with_credentials_for(const std::string& repo) const {
  return Origin(user_ + ":" + password_) + "/git/" + repo;
}

std::string HttpGitServer::ca_file() const { return scheme_ == Scheme::kHttps ? dir_.Sub("cert.pem") : ""; }

std::string HttpGitServer::Log() const {
  return ReadTextFile(dir_.Sub("lighttpd.out")) + ReadTextFile(dir_.Sub("error.log"));
}

// ---- SshGitServer ---------------------------------------------------------

SshGitServer::SshGitServer() : repos_root_(dir_.Sub("repos")) {
  std::error_code ec;
  fs::create_directories(repos_root_, ec);
}

std::string SshGitServer::Unavailable() {
  if (access("/usr/sbin/sshd", X_OK) != 0) return "/usr/sbin/sshd is missing (apt-get install openssh-server)";
  if (FindExecutable("ssh-keygen").empty()) return "ssh-keygen is missing (apt-get install openssh-client)";
  return "";
}

Status SshGitServer::Start() {
  if (geteuid() == 0) {
    // sshd's privilege-separation folder; without it sshd refuses to start as root.
    std::error_code ec;
    fs::create_directories("/run/sshd", ec);
    chmod("/run/sshd", 0755);
  }
  for (const char* key : {"hostkey", "client"}) {
    CommandResult keygen = RunCommand({"ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C",
                                       std::string("gitopsd-test-") + key, "-f", dir_.Sub(key)});
    if (!keygen.ok()) return Fail("ssh-keygen failed: " + keygen.output);
  }
  if (!WriteTextFile(dir_.Sub("authorized_keys"), ReadTextFile(dir_.Sub("client.pub")))) {
    return Fail("cannot write authorized_keys");
  }
  std::string last_error;
  for (int attempt = 0; attempt < kStartAttempts; ++attempt) {
    port_ = FreeLoopbackPort();
    std::ostringstream conf;
    conf << "Port " << port_ << "\n"
         << "ListenAddress 127.0.0.1\n"
         << "HostKey " << dir_.Sub("hostkey") << "\n"
         << "PidFile none\n"
         << "AuthorizedKeysFile " << dir_.Sub("authorized_keys") << "\n"
         << "PubkeyAuthentication yes\n"
         << "PasswordAuthentication no\n"
         << "KbdInteractiveAuthentication no\n"
         << "UsePAM no\n"
         << "StrictModes no\n"
         << "PermitRootLogin prohibit-password\n"
         << "UseDNS no\n"
         << "PrintMotd no\n"
         << "LogLevel VERBOSE\n";
    if (!WriteTextFile(dir_.Sub("sshd_config"), conf.str())) return Fail("cannot write sshd_config");
    auto server = StartListening({"/usr/sbin/sshd", "-D", "-e", "-f", dir_.Sub("sshd_config")},
                                 dir_.Sub("sshd.log"), port_, "sshd");
    if (server) {
      server_.emplace(std::move(*server));
      std::istringstream pub(ReadTextFile(host_public_key_path()));
      std::string type, key;
      pub >> type >> key;
      std::string line = "[127.0.0.1]:" + std::to_string(port_) + " " + type + " " + key + "\n";
      if (!WriteTextFile(known_hosts_path(), line)) return Fail("cannot write known_hosts");
      return Ok();
    }
    last_error = server.error().message;
  }
  return Fail(last_error);
}

std::string SshGitServer::host_key_fingerprint() const {
  CommandResult result = RunCommand({"ssh-keygen", "-l", "-E", "sha256", "-f", host_public_key_path()});
  std::istringstream words(result.output);
  std::string word;
  while (words >> word) {
    if (word.starts_with("SHA256:")) return word;
  }
  return "";
}

std::string SshGitServer::url_for(const std::string& bare_repo_abs_path) const {
  return "ssh://" + CurrentUser() + "@127.0.0.1:" + std::to_string(port_) + bare_repo_abs_path;
}

std::string SshGitServer::git_ssh_command() const {
  return "ssh -i " + client_key_path() +
         " -o IdentitiesOnly=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR";
}

std::string SshGitServer::Log() const { return ReadTextFile(dir_.Sub("sshd.log")); }

}  // namespace gitopsd::test
