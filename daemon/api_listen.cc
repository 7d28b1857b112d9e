#include "daemon/api_listen.h"

#include <Poco/Net/Context.h>
#include <Poco/Net/NetException.h>
#include <Poco/Net/NetSSL.h>
#include <Poco/Net/SSLException.h>
#include <Poco/Net/SecureServerSocket.h>
#include <Poco/Net/SocketAddress.h>
#include <openssl/ssl.h>
#include <pwd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <mutex>

#include "daemon/api.h"
#include "daemon/config.h"

namespace gitopsd::daemon {
namespace {

namespace fs = std::filesystem;
using Poco::Net::Context;

void InitializeSslOnce() {
  static std::once_flag once;
  std::call_once(once, [] { Poco::Net::initializeSSL(); });
}

// No client certificates are asked for: clients prove who they are with
// bearer tokens, as over plain HTTP.
// A passphrase would need someone to type it at every start; OpenSSL might
// even ask on a terminal. Said plainly instead.
Status CheckKeyNotEncrypted(const std::string& key_file) {
  std::ifstream in(key_file, std::ios::binary);
  std::string line;
  for (int i = 0; i < 64 && std::getline(in, line); ++i) {
    if (line.find("ENCRYPTED") != std::string::npos) {
      return Fail("tls.keyFile " + key_file +
                  " is protected by a passphrase; gitopsd needs the key unencrypted (openssl "
                  "pkey -in " + key_file + " -out NEW.key), readable by its user only");
    }
  }
  return Ok();
}

Result<Context::Ptr> ServerContext(const std::string& cert_file, const std::string& key_file) {
  if (auto s = CheckKeyNotEncrypted(key_file); !s) return std::unexpected(s.error());
  InitializeSslOnce();
  Context::Params params;
  params.certificateFile = cert_file;
  params.privateKeyFile = key_file;
  params.verificationMode = Context::VERIFY_NONE;
  params.loadDefaultCAs = false;
  params.cipherList = "HIGH:!aNULL:!eNULL:!MD5:!RC4:!3DES";
  Context::Ptr context;
  try {
    context = new Context(Context::TLS_SERVER_USE, params);
    context->requireMinimumProtocol(Context::PROTO_TLSV1_2);
  } catch (const Poco::Exception& e) {
    return Fail("tls: cannot use the certificate " + cert_file + " and key " + key_file + ": " +
                e.displayText() +
                " (certFile must be a PEM certificate chain, keyFile its unencrypted PEM key)");
  }
  if (SSL_CTX_check_private_key(context->sslContext()) != 1) {
    return Fail("tls: the key " + key_file + " does not belong to the certificate " + cert_file);
  }
  return context;
}

// True when a process accepts connections on the socket at `path`.
Result<bool> SocketAnswers(const std::string& path) {
  try {
    Poco::Net::StreamSocket probe;
    probe.connect(Poco::Net::SocketAddress(Poco::Net::SocketAddress::UNIX_LOCAL, path),
                  Poco::Timespan(2, 0));
    return true;
  } catch (const Poco::Net::ConnectionRefusedException&) {
    return false;
  } catch (const Poco::Exception& e) {
    return Fail("unixSocket: cannot tell whether " + path + " is in use: " + e.displayText());
  }
}

// Fails when `path` holds something that must not be replaced.
Status CheckSocketPath(const std::string& path) {
  struct stat st{};
  if (::lstat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) return Ok();
    return Fail("unixSocket: " + path + ": " + std::strerror(errno));
  }
  if (!S_ISSOCK(st.st_mode)) {
    return Fail("unixSocket: " + path +
                " exists and is not a socket; move it away or choose another path");
  }
  auto answers = SocketAnswers(path);
  if (!answers) return std::unexpected(answers.error());
  if (*answers) {
    return Fail("unixSocket: a process is listening on " + path +
                " (another gitopsd?); stop it or choose another path");
  }
  return Ok();  // left by a process that is gone: replaced by the rename
}

}  // namespace

Status CheckServerTls(const std::string& cert_file, const std::string& key_file) {
  if (cert_file.empty() && key_file.empty()) return Ok();
  auto context = ServerContext(cert_file, key_file);
  if (!context) return std::unexpected(context.error());
  return Ok();
}

Status CheckTlsFiles(const ApiOptions& options) {
  return CheckServerTls(options.tls_cert_file, options.tls_key_file);
}

Result<Poco::Net::ServerSocket> OpenTcpListener(const ApiOptions& options) {
  auto listen = ParseListen(options.listen);
  if (!listen) return Fail("listen: \"" + options.listen + "\" is not host:port");
  const bool tls = !options.tls_cert_file.empty() || !options.tls_key_file.empty();
  Context::Ptr context;
  if (tls) {
    auto made = ServerContext(options.tls_cert_file, options.tls_key_file);
    if (!made) return std::unexpected(made.error());
    context = *made;
  }
  try {
    Poco::Net::SocketAddress address(listen->host, listen->port);
    if (tls) return Poco::Net::ServerSocket(Poco::Net::SecureServerSocket(address, 512, context));
    return Poco::Net::ServerSocket(address, 512);
  } catch (const Poco::Exception& e) {
    return Fail("cannot listen on " + options.listen + ": " + e.displayText());
  }
}

Result<Poco::Net::ServerSocket> OpenUnixListener(const std::string& path, UnixSocketFile* file) {
  if (auto s = CheckSocketPath(path); !s) return std::unexpected(s.error());
  const fs::path target(path);
  const std::string temp =
      (target.parent_path() / ("." + target.filename().string() + "." + std::to_string(::getpid())))
          .string();
  ::unlink(temp.c_str());
  Poco::Net::ServerSocket socket;
  try {
    socket.bind(Poco::Net::SocketAddress(Poco::Net::SocketAddress::UNIX_LOCAL, temp), false);
    socket.listen(64);
  } catch (const Poco::Exception& e) {
    ::unlink(temp.c_str());
    return Fail("unixSocket: cannot listen on " + path + ": " + e.displayText() +
                " (does its folder " + target.parent_path().string() +
                " exist and is it writable? under systemd: RuntimeDirectory=gitopsd)");
  }
  // Renaming the socket with its final mode into place leaves no moment
  // when the path answers with umask-made permissions, and replaces a
  // stale socket in one step.
  if (::chmod(temp.c_str(), 0660) != 0 || ::rename(temp.c_str(), path.c_str()) != 0) {
    const std::string why = std::strerror(errno);
    ::unlink(temp.c_str());
    return Fail("unixSocket: cannot put the socket at " + path + ": " + why);
  }
  struct stat st{};
  if (::stat(path.c_str(), &st) != 0) {
    return Fail("unixSocket: " + path + " vanished after it was made: " + std::strerror(errno));
  }
  *file = UnixSocketFile(path, st.st_dev, st.st_ino);
  return socket;
}

void UnixSocketFile::Remove() const {
  if (path_.empty()) return;
  struct stat st{};
  if (::lstat(path_.c_str(), &st) != 0) return;
  if (st.st_dev == dev_ && st.st_ino == ino_) ::unlink(path_.c_str());
}

std::optional<std::string> PeerCredentials(const Poco::Net::StreamSocket& socket) {
  struct ucred cred{};
  socklen_t size = sizeof cred;
  if (::getsockopt(socket.impl()->sockfd(), SOL_SOCKET, SO_PEERCRED, &cred, &size) != 0) {
    return std::nullopt;
  }
  std::string who = "uid " + std::to_string(cred.uid);
  struct passwd pw{};
  struct passwd* found = nullptr;
  char buffer[1024];
  if (::getpwuid_r(cred.uid, &pw, buffer, sizeof buffer, &found) == 0 && found) {
    who += std::string(" (") + found->pw_name + ")";
  }
  return who;
}

}  // namespace gitopsd::daemon
