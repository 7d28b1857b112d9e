// What the HTTP routes share, without Poco: a request and a response as
// plain values, the JSON error shape {"error": {"code", "message"}}, the
// bearer-token check and the parsing of the few headers the routes read.
// api.cc turns Poco's objects into these and back.
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "sync/json.h"

namespace gitopsd::daemon {

class TokenStore;

struct Request {
  std::string method;
  std::string path;
  std::map<std::string, std::string> query;
  std::string authorization;
  std::string content_type;
  std::string if_match;
  std::string if_none_match;
  std::map<std::string, std::string> headers;  // every header; names in lower case
  std::string body;
  // Set only for a request that arrived on the unix socket: who is at the
  // other end ("uid 1000"). Such a request is trusted as write role.
  std::optional<std::string> local_peer;
};

// Writes one piece of a streamed body and flushes it to the client; false
// once the client is gone (or the server is stopping): stop writing then.
using StreamWriter = std::function<bool(std::string_view)>;

struct Response {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;
  // When set, the body is sent chunked, piece by piece, by this function
  // (on the request's thread, for as long as it likes) instead of `body`.
  std::function<void(const StreamWriter&)> stream;
};

json::Value Str(std::string s);
json::Value Int(int64_t n);
json::Value StrOrNull(const std::string& s);
json::Value Bool(bool b);

Response Json(int status, const json::Value& v);
Response ErrorResponse(int status, std::string code, std::string message);
// An error with a "details" array next to code and message.
Response ErrorResponse(int status, std::string code, std::string message,
                       std::vector<json::Value> details);

// 405 with an Allow header.
Response MethodNotAllowed(const std::string& method, const std::string& allow);

// "2024-05-01T12:00:00.000Z"; "" for 0.
std::string IsoTime(int64_t unix_ms);

// The principal allowed to write, or the 401/403 answer: 401 without a
// bearer token or with an unknown one, 403 for a read token or when no
// tokens file is configured (tokens == null). A request on the unix socket
// (local_peer set) is allowed without a token, whatever the tokens: the
// socket's file permissions decide who reaches it.
struct WriteAuth {
  std::string who;                  // the token's name when allowed
  std::optional<Response> refused;  // set when not allowed
};
WriteAuth RequireWrite(const TokenStore* tokens, const Request& req);

// If-Match: "3", 3 or W/"3" -> 3. Empty header -> nullopt with *ok true;
// anything else -> *ok false.
std::optional<int64_t> ParseIfMatch(std::string_view header, bool* ok);

// True for "application/json", any case, with parameters ("; charset=utf-8").
bool IsJsonContentType(std::string_view header);

// A positive decimal id ("12"), or nullopt.
std::optional<int64_t> ParseId(std::string_view text);

}  // namespace gitopsd::daemon
