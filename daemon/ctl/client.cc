#include "daemon/ctl/client.h"

#include <Poco/Net/HTTPClientSession.h>
#include <Poco/Net/HTTPRequest.h>
#include <Poco/Net/HTTPResponse.h>
#include <Poco/StreamCopier.h>
#include <Poco/URI.h>

#include <algorithm>
#include <cctype>
#include <cstdio>

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

Result<Client> Client::Create(const std::string& server, std::string token) {
  Poco::URI uri;
  try {
    uri = Poco::URI(server);
  } catch (const Poco::Exception& e) {
    return Fail("--server " + server + ": " + e.displayText());
  }
  if (uri.getScheme() == "https") {
    return Fail("--server " + server +
                ": https is not supported by this gitopsctl; reach gitopsd over http (it listens "
                "on loopback by default) or through a local TLS proxy");
  }
  if (uri.getScheme() != "http" || uri.getHost().empty()) {
    return Fail("--server " + server + ": use http://HOST:PORT, e.g. http://127.0.0.1:7780");
  }
  std::string prefix = uri.getPath();
  while (!prefix.empty() && prefix.back() == '/') prefix.pop_back();
  return Client(server, uri.getHost(), uri.getPort(), prefix, std::move(token));
}

Result<Reply> Client::Send(const std::string& method, const std::string& path,
                           const std::string& body,
                           const std::map<std::string, std::string>& headers) const {
  try {
    Poco::Net::HTTPClientSession session(host_, port_);
    session.setTimeout(Poco::Timespan(60, 0));
    Poco::Net::HTTPRequest request(method, prefix_ + path, Poco::Net::HTTPMessage::HTTP_1_1);
    request.set("User-Agent", "gitopsctl");
    request.set("Accept", "application/json");
    if (!token_.empty()) request.set("Authorization", "Bearer " + token_);
    const bool has_body = !body.empty() || method == "PUT" || method == "POST";
    if (has_body) {
      request.setContentType("application/json");
      request.setContentLength64(static_cast<Poco::Int64>(body.size()));
    }
    for (const auto& [k, v] : headers) request.set(k, v);
    std::ostream& out = session.sendRequest(request);
    if (has_body) out.write(body.data(), static_cast<std::streamsize>(body.size()));
    Poco::Net::HTTPResponse response;
    std::istream& in = session.receiveResponse(response);
    Reply reply;
    reply.status = static_cast<int>(response.getStatus());
    Poco::StreamCopier::copyToString(in, reply.body);
    for (const auto& [k, v] : response) {
      std::string name = k;
      for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      reply.headers[name] = v;
    }
    return reply;
  } catch (const Poco::Exception& e) {
    return Fail("cannot reach gitopsd at " + server_ + ": " + e.displayText() +
                " (is it running? set --server or $GITOPSD_SERVER)");
  }
}

Result<Reply> Client::Stream(const std::string& path,
                             const std::function<void(std::string_view)>& on_data) const {
  try {
    Poco::Net::HTTPClientSession session(host_, port_);
    // A followed run may be quiet for a long time between two lines.
    session.setTimeout(Poco::Timespan(24 * 3600, 0));
    Poco::Net::HTTPRequest request("GET", prefix_ + path, Poco::Net::HTTPMessage::HTTP_1_1);
    request.set("User-Agent", "gitopsctl");
    if (!token_.empty()) request.set("Authorization", "Bearer " + token_);
    session.sendRequest(request);
    Poco::Net::HTTPResponse response;
    std::istream& in = session.receiveResponse(response);
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
  } catch (const Poco::Exception& e) {
    return Fail("cannot reach gitopsd at " + server_ + ": " + e.displayText() +
                " (is it running? set --server or $GITOPSD_SERVER)");
  }
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
