// gitopsctl's HTTP side: one request at a time to a gitopsd API, over plain
// HTTP, HTTPS (the server's certificate verified unless told otherwise) or
// a unix socket. Poco stays in client.cc. Errors are values: a request that
// gets no answer says why (and is what exit code 3 means), an answer with an
// error status is a reply like any other and ErrorMessage() reads the
// server's message.
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "sync/status.h"

namespace gitopsd::ctl {

struct Reply {
  int status = 0;
  std::string body;
  std::map<std::string, std::string> headers;  // names lower-cased
  std::string Header(const std::string& lower_name) const;
  bool ok() const { return status >= 200 && status < 300; }
};

struct ClientOptions {
  // http://HOST:PORT, https://HOST:PORT (a path prefix is kept:
  // http://h/gitopsd), or unix:/PATH (also unix:///PATH).
  std::string server;
  std::string token;    // "" = no Authorization header
  std::string ca_file;  // https: PEM file of the CA(s) to trust; "" = the system's
  bool insecure = false;  // https: skip verifying the server's certificate
  // Where the server came from, for messages ("--server", "$GITOPSD_URL").
  std::string origin;
};

class Client {
 public:
  // Fails (a usage error) when the server is not a URL gitopsctl can use or
  // the CA file cannot be loaded.
  static Result<Client> Create(const ClientOptions& options);

  // path is absolute below the server ("/api/v1/sync"); headers are added
  // to Authorization (when a token is set) and, with a body,
  // Content-Type: application/json. An error means no answer came.
  Result<Reply> Send(const std::string& method, const std::string& path,
                     const std::string& body = "",
                     const std::map<std::string, std::string>& headers = {}) const;
  Result<Reply> Get(const std::string& path) const { return Send("GET", path); }

  // GET of a streamed answer (logs --follow): a 2xx body goes to `on_data`
  // piece by piece as it arrives, for as long as the server sends (the
  // reply's body stays empty); any other answer is returned whole.
  Result<Reply> Stream(const std::string& path,
                       const std::function<void(std::string_view)>& on_data) const;

  const std::string& server() const { return server_; }

  // The server's {"error": {"message"}} (plus "path:line:col: error: ..."
  // lines from its details, or the details themselves when they are
  // lines of text), else the status line and body.
  static std::string ErrorMessage(const Reply& reply);

  struct Transport;  // how to open a session (client.cc)

 private:
  Client(std::string server, std::string origin, std::shared_ptr<const Transport> transport,
         std::string prefix, std::string token)
      : server_(std::move(server)),
        origin_(std::move(origin)),
        transport_(std::move(transport)),
        prefix_(std::move(prefix)),
        token_(std::move(token)) {}
  // "cannot reach gitopsd at ...: why (hint)".
  std::string Unreachable(const std::string& why, const std::string& hint) const;
  template <class F>
  Result<Reply> Exchange(F&& body) const;

  std::string server_;
  std::string origin_;
  std::shared_ptr<const Transport> transport_;
  std::string prefix_;
  std::string token_;
};

// Percent-encodes one path segment (names in URLs).
std::string EncodeSegment(const std::string& segment);

}  // namespace gitopsd::ctl
