// gitopsctl's HTTP side: one request at a time to a gitopsd API over plain
// HTTP (Poco's HTTPClientSession stays in client.cc). Errors are values: a
// request that gets no answer says why, an answer with an error status is
// a reply like any other and ErrorMessage() reads the server's message.
#pragma once
#include <cstdint>
#include <functional>
#include <map>
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

class Client {
 public:
  // server: "http://host:port" (a path prefix is kept: http://h/gitopsd).
  static Result<Client> Create(const std::string& server, std::string token);

  // path is absolute below the server ("/api/v1/sync"); headers are added
  // to Authorization (when a token is set) and, with a body,
  // Content-Type: application/json.
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

 private:
  Client(std::string server, std::string host, uint16_t port, std::string prefix, std::string token)
      : server_(std::move(server)),
        host_(std::move(host)),
        port_(port),
        prefix_(std::move(prefix)),
        token_(std::move(token)) {}
  std::string server_;
  std::string host_;
  uint16_t port_ = 0;
  std::string prefix_;
  std::string token_;
};

// Percent-encodes one path segment (names in URLs).
std::string EncodeSegment(const std::string& segment);

}  // namespace gitopsd::ctl
