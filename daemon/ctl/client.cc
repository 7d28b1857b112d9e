#include "daemon/ctl/client.h"

#include <Poco/Net/Context.h>
#include <Poco/Net/HTTPClientSession.h>
#include <Poco/Net/HTTPRequest.h>
#include <Poco/Net/HTTPResponse.h>
#include <Poco/Net/HTTPSClientSession.h>
#include <Poco/Net/NetException.h>
#include <Poco/Net/SSLException.h>
#include <Poco/Net/SocketAddress.h>
#include <Poco/Net/StreamSocket.h>
#include <Poco/StreamCopier.h>
#include <Poco/URI.h>

#include <algorithm>
#include <cctype>
#include <cstdio>

#include "daemon/tls_client.h"
#include "sync/json.h"

namespace gitopsd::ctl {

std::string Reply::Header(const std::string& lower_name) const {
  auto it = headers.find(lower_name);
  return it == headers.end() ? "" : it->second;
}

std::string EncodeSegment(const std::string& segment) {
  std::string out;
  Poco::URI::encode(segment, "/?#%&+ ", out);
  return out;
}

namespace {

using Poco::Net::Context;

enum class Scheme { kHttp, kHttps, kUnix };

// How long a connection may take to open, and a request to be sent.
const Poco::Timespan kConnectTimeout(10, 0);
const Poco::Timespan kSendTimeout(60, 0);

bool IsSslError(const Poco::Exception& e) {
  return dynamic_cast<const Poco::Net::SSLException*>(&e) != nullptr;
}

bool IsNotHttp(const Poco::Exception& e) {
  return dynamic_cast<const Poco::Net::NoMessageException*>(&e) != nullptr ||
         dynamic_cast<const Poco::Net::MessageException*>(&e) != nullptr ||
         dynamic_cast<const Poco::Net::ConnectionResetException*>(&e) != nullptr;
}

}  // namespace

struct Client::Transport {
  Scheme scheme = Scheme::kHttp;
  std::string host;
  uint16_t port = 0;
  std::string socket_path;  // kUnix
  Context::Ptr context;     // kHttps

  std::unique_ptr<Poco::Net::HTTPClientSession> Open(const Poco::Timespan& receive) const {
    std::unique_ptr<Poco::Net::HTTPClientSession> session;
    switch (scheme) {
      case Scheme::kHttp:
        session = std::make_unique<Poco::Net::HTTPClientSession>(host, port);
        break;
      case Scheme::kHttps:
        session = std::make_unique<Poco::Net::HTTPSClientSession>(host, port, context);
        break;
      case Scheme::kUnix: {
        Poco::Net::StreamSocket socket;
        socket.connect(
            Poco::Net::SocketAddress(Poco::Net::SocketAddress::UNIX_LOCAL, socket_path),
            kConnectTimeout);
        // A session made from a connected socket never connects again, so
        // the timeouts go on the socket itself.
        socket.setSendTimeout(kSendTimeout);
        socket.setReceiveTimeout(receive);
        session = std::make_unique<Poco::Net::HTTPClientSession>(socket);
        break;
      }
    }
    session->setTimeout(kConnectTimeout, kSendTimeout, receive);
    return session;
  }

  // The Host header: a unix socket has no host name.
  void Address(Poco::Net::HTTPRequest& request) const {
    if (scheme == Scheme::kUnix) request.setHost("localhost");
  }
};

namespace {

Result<Context::Ptr> ClientContext(const ClientOptions& options, const std::string& host) {
  return daemon::ClientTlsContext(daemon::TlsClientOptions{options.ca_file, options.insecure}, host);
}

}  // namespace

Result<Client> Client::Create(const ClientOptions& options) {
  const std::string& server = options.server;
  auto transport = std::make_shared<Transport>();
  if (server.starts_with("unix:")) {
    std::string path = server.substr(5);
    if (path.starts_with("//")) path = path.substr(2);
    if (!path.starts_with("/")) {
      return Fail("server " + server + ": write unix:/ABSOLUTE/PATH, e.g. unix:/run/gitopsd/api.sock");
    }
    transport->scheme = Scheme::kUnix;
    transport->socket_path = path;
    return Client(server, options.origin, std::move(transport), "", options.token);
  }
  Poco::URI uri;
  try {
    uri = Poco::URI(server);
  } catch (const Poco::Exception& e) {
    return Fail("server " + server + ": " + e.displayText());
  }
  if ((uri.getScheme() != "http" && uri.getScheme() != "https") || uri.getHost().empty()) {
    return Fail("server " + server +
                ": use http://HOST:PORT, https://HOST:PORT or unix:/PATH, e.g. "
                "http://127.0.0.1:7780");
  }
  transport->host = uri.getHost();
  transport->port = uri.getPort();
  if (uri.getScheme() == "https") {
    transport->scheme = Scheme::kHttps;
    auto context = ClientContext(options, transport->host);
    if (!context) return std::unexpected(context.error());
    transport->context = *context;
  }
  std::string prefix = uri.getPath();
  while (!prefix.empty() && prefix.back() == '/') prefix.pop_back();
  return Client(server, options.origin, std::move(transport), prefix, options.token);
}

std::string Client::Unreachable(const std::string& why, const std::string& hint) const {
  std::string where = server_;
  if (!origin_.empty()) where += " (" + origin_ + ")";
  return "cannot reach gitopsd at " + where + ": " + why + " (" + hint + ")";
}

// Runs one exchange; a Poco exception becomes the message of exit code 3,
// with a hint at the likely cause.
template <class F>
Result<Reply> Client::Exchange(F&& body) const {
  try {
    return body();
  } catch (const Poco::Exception& e) {
    const Scheme scheme = transport_->scheme;
    if (IsSslError(e)) {
      const std::string text = e.displayText();
      if (text.find("wrong version number") != std::string::npos ||
          text.find("unexpectedly closed") != std::string::npos) {
        return Fail(Unreachable("the TLS handshake failed: " + text,
                                "does the server speak plain http? then use http://"));
      }
      return Fail(Unreachable(
          "the TLS handshake failed: " + text,
          "the certificate must name " + transport_->host +
              " and be signed by a CA you trust: your own CA goes in --cacert FILE, "
              "$GITOPSD_CACERT or caFile in ctl.json; --insecure skips the check"));
    }
    if (scheme == Scheme::kHttp && IsNotHttp(e)) {
      return Fail(Unreachable(e.displayText(), "no HTTP answer: does the server speak https? then "
                                               "use https://"));
    }
    return Fail(Unreachable(e.displayText(), "is gitopsd running? set --server or $GITOPSD_URL"));
  } catch (const std::exception& e) {
    return Fail(Unreachable(e.what(), "is gitopsd running? set --server or $GITOPSD_URL"));
  }
}

Result<Reply> Client::Send(const std::string& method, const std::string& path,
                           const std::string& body,
                           const std::map<std::string, std::string>& headers) const {
  return Exchange([&]() -> Result<Reply> {
    auto session = transport_->Open(Poco::Timespan(60, 0));
    Poco::Net::HTTPRequest request(method, prefix_ + path, Poco::Net::HTTPMessage::HTTP_1_1);
    transport_->Address(request);
    request.set("User-Agent", "gitopsctl");
    request.set("Accept", "application/json");
    if (!token_.empty()) request.set("Authorization", "Bearer " + token_);
    const bool has_body = !body.empty() || method == "PUT" || method == "POST";
    if (has_body) {
      request.setContentType("application/json");
      request.setContentLength64(static_cast<Poco::Int64>(body.size()));
    }
    for (const auto& [k, v] : headers) request.set(k, v);
    std::ostream& out = session->sendRequest(request);
    if (has_body) out.write(body.data(), static_cast<std::streamsize>(body.size()));
    Poco::Net::HTTPResponse response;
    std::istream& in = session->receiveResponse(response);
    Reply reply;
    reply.status = static_cast<int>(response.getStatus());
    Poco::StreamCopier::copyToString(in, reply.body);
    for (const auto& [k, v] : response) {
      std::string name = k;
      for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      reply.headers[name] = v;
    }
    return reply;
  });
}

Result<Reply> Client::Stream(const std::string& path,
                             const std::function<void(std::string_view)>& on_data) const {
  return Exchange([&]() -> Result<Reply> {
    // A followed run may be quiet for a long time between two lines.
    auto session = transport_->Open(Poco::Timespan(24 * 3600, 0));
    Poco::Net::HTTPRequest request("GET", prefix_ + path, Poco::Net::HTTPMessage::HTTP_1_1);
    transport_->Address(request);
    request.set("User-Agent", "gitopsctl");
    if (!token_.empty()) request.set("Authorization", "Bearer " + token_);
    session->sendRequest(request);
    Poco::Net::HTTPResponse response;
    std::istream& in = session->receiveResponse(response);
    Reply reply;
    reply.status = static_cast<int>(response.getStatus());
    if (!reply.ok()) {
      Poco::StreamCopier::copyToString(in, reply.body);
      return reply;
    }
    // get() waits for the next piece; in_avail() is what else arrived with it.
    char buf[8192];
    for (int c = in.get(); c != EOF; c = in.get()) {
      buf[0] = static_cast<char>(c);
      const std::streamsize more =
          std::min<std::streamsize>(in.rdbuf()->in_avail(), sizeof buf - 1);
      if (more > 0) in.read(buf + 1, more);
      on_data(std::string_view(buf, static_cast<size_t>(1 + (more > 0 ? in.gcount() : 0))));
    }
    return reply;
  });
}

std::string Client::ErrorMessage(const Reply& reply) {
  std::string out;
  if (auto doc = json::Parse(reply.body)) {
    if (const json::Value* error = doc->Find("error"); error && error->is_object()) {
      if (const json::Value* m = error->Find("message"); m && m->is_string()) out = m->as_string();
      const json::Value* details = error->Find("details");
      if (details && details->is_array()) {
        std::string lines;
        for (const auto& d : details->items()) {
          if (d.is_string()) {
            lines += "\n" + d.as_string();
            continue;
          }
          const json::Value* path = d.Find("path");
          const json::Value* line = d.Find("line");
          const json::Value* col = d.Find("column");
          const json::Value* msg = d.Find("message");
          const json::Value* rule = d.Find("rule");
          lines += "\n" + (path && path->is_string() ? path->as_string() : std::string("?")) +
                   ":" + (line ? line->number_text() : "0") + ":" +
                   (col ? col->number_text() : "0") +
                   ": error: " + (msg && msg->is_string() ? msg->as_string() : std::string()) +
                   (rule && rule->is_string() ? " [" + rule->as_string() + "]" : "");
        }
        if (!lines.empty() && details->items().front().is_string()) {
          out += ":" + lines;
        } else if (!lines.empty()) {
          out = "the server refused the object:" + lines;
        }
      }
    }
  }
  if (out.empty()) {
    out = reply.body;
    while (!out.empty() && (out.back() == '\n' || out.back() == '\r')) out.pop_back();
  }
  return out + " (HTTP " + std::to_string(reply.status) + ")";
}

}  // namespace gitopsd::ctl
