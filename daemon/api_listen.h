// The API's listening sockets: the TCP listener (plain HTTP, or HTTPS with
// the configured certificate and TLS 1.2 or later) and the optional unix
// socket for local clients. Poco's socket types appear here, so only api.cc
// includes this header.
//
// What callers can rely on:
//  - Every failure is a message naming the file or address and what to do.
//  - The unix socket file has mode 0660 from the moment it has its name
//    (it is bound under a temporary name, chmod-ed, then renamed), so the
//    umask never decides who may connect.
#pragma once
#include <sys/types.h>

#include <Poco/Net/ServerSocket.h>
#include <Poco/Net/StreamSocket.h>

#include <optional>
#include <string>

#include "sync/status.h"

namespace gitopsd::daemon {

struct ApiOptions;

// Builds the server's TLS context from options.tls_cert_file and
// tls_key_file and throws it away: the check behind CheckTlsFiles().
Status CheckServerTls(const std::string& cert_file, const std::string& key_file);

// Binds options.listen: HTTPS when a certificate is configured, else HTTP.
Result<Poco::Net::ServerSocket> OpenTcpListener(const ApiOptions& options);

// The unix socket file a listener made, so that shutdown removes that file
// and never one another process put at the same path since.
class UnixSocketFile {
 public:
  UnixSocketFile() = default;
  UnixSocketFile(std::string path, dev_t dev, ino_t ino) : path_(std::move(path)), dev_(dev), ino_(ino) {}
  // Unlinks the path if it is still the socket this process bound.
  void Remove() const;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  dev_t dev_ = 0;
  ino_t ino_ = 0;
};

// Binds a unix socket at `path` (mode 0660, listening). A stale socket left
// by a crash is replaced; a socket some process still answers on, or a path
// that is not a socket, is an error.
Result<Poco::Net::ServerSocket> OpenUnixListener(const std::string& path, UnixSocketFile* file);

// Who is at the other end of a unix socket connection: "uid 1000 (alice)";
// nullopt when the kernel does not say.
std::optional<std::string> PeerCredentials(const Poco::Net::StreamSocket& socket);

}  // namespace gitopsd::daemon
