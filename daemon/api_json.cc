#include "daemon/api_json.h"

#include <cctype>
#include <charconv>
#include <cstdio>
#include <ctime>

#include "daemon/tokens.h"

namespace gitopsd::daemon {

json::Value Str(std::string s) { return json::Value::String(std::move(s)); }
json::Value Int(int64_t n) { return json::Value::NumberText(std::to_string(n)); }
json::Value StrOrNull(const std::string& s) { return s.empty() ? json::Value::Null() : Str(s); }
json::Value Bool(bool b) { return json::Value::Bool(b); }

Response MethodNotAllowed(const std::string& method, const std::string& allow) {
  Response r = ErrorResponse(405, "method_not_allowed", method + " is not allowed here; use " + allow);
  r.headers.emplace_back("Allow", allow);
  return r;
}

Response Json(int status, const json::Value& v) {
  Response r;
  r.status = status;
  r.body = json::SerializeCompact(v) + "\n";
  return r;
}

Response ErrorResponse(int status, std::string code, std::string message) {
  return Json(status, json::Value::Object({{"error", json::Value::Object({
                                                         {"code", Str(std::move(code))},
                                                         {"message", Str(std::move(message))},
                                                     })}}));
}

Response ErrorResponse(int status, std::string code, std::string message,
                       std::vector<json::Value> details) {
  return Json(status,
              json::Value::Object({{"error", json::Value::Object({
                                                 {"code", Str(std::move(code))},
                                                 {"message", Str(std::move(message))},
                                                 {"details", json::Value::Array(std::move(details))},
                                             })}}));
}

std::string IsoTime(int64_t unix_ms) {
  if (unix_ms <= 0) return "";
  std::time_t secs = static_cast<std::time_t>(unix_ms / 1000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
  char out[40];
  std::snprintf(out, sizeof out, "%s.%03dZ", buf, static_cast<int>(unix_ms % 1000));
  return out;
}

namespace {

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

}  // namespace

WriteAuth RequireWrite(const TokenStore* tokens, const Request& req) {
  WriteAuth auth;
  if (req.local_peer) {
    auth.who = "unix socket, " + *req.local_peer;
    return auth;
  }
  if (!tokens) {
    auth.refused = ErrorResponse(
        403, "forbidden",
        "writes are disabled: no API tokens are configured. Set \"apiTokensFile\" in the "
        "configuration to a JSON file of [{\"name\", \"role\": \"write\", \"sha256\": \"<hex "
        "SHA-256 of the token>\"}] (gitopsctl token create NAME --role write prints one) and "
        "restart gitopsd");
    return auth;
  }
  constexpr std::string_view kBearer = "bearer ";
  std::string_view header = req.authorization;
  std::string token;
  if (header.size() > kBearer.size() && Lower(header.substr(0, kBearer.size())) == kBearer) {
    token = std::string(Trim(header.substr(kBearer.size())));
  }
  if (token.empty()) {
    Response r = ErrorResponse(401, "unauthorized",
                               "this request needs an \"Authorization: Bearer <token>\" header "
                               "with a write token");
    r.headers.emplace_back("WWW-Authenticate", "Bearer realm=\"gitopsd\"");
    auth.refused = std::move(r);
    return auth;
  }
  auto principal = tokens->Authenticate(token);
  if (!principal) {
    Response r = ErrorResponse(401, "unauthorized", "the bearer token is not valid");
    r.headers.emplace_back("WWW-Authenticate", "Bearer realm=\"gitopsd\", error=\"invalid_token\"");
    auth.refused = std::move(r);
    return auth;
  }
  if (principal->role != Role::kWrite) {
    auth.refused = ErrorResponse(
        403, "forbidden", "token \"" + principal->name + "\" has the read role; this needs write");
    return auth;
  }
  auth.who = principal->name;
  return auth;
}

std::optional<int64_t> ParseId(std::string_view text) {
  int64_t n = 0;
  if (text.empty() || text.size() > 18) return std::nullopt;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), n);
  if (ec != std::errc() || end != text.data() + text.size() || n <= 0) return std::nullopt;
  return n;
}

std::optional<int64_t> ParseIfMatch(std::string_view header, bool* ok) {
  *ok = true;
  std::string_view v = Trim(header);
  if (v.empty()) return std::nullopt;
  if (v.starts_with("W/")) v.remove_prefix(2);
  if (v.size() >= 2 && v.front() == '"' && v.back() == '"') v = v.substr(1, v.size() - 2);
  // Revisions start at 1 for objects; 0 is a valid answer for "absent" only
  // in responses, so it is accepted here and left to the precondition check.
  int64_t n = 0;
  auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
  if (v.empty() || v.size() > 18 || ec != std::errc() || end != v.data() + v.size() || n < 0) {
    *ok = false;
    return std::nullopt;
  }
  return n;
}

bool IsJsonContentType(std::string_view header) {
  std::string_view media = header.substr(0, header.find(';'));
  return Lower(Trim(media)) == "application/json";
}

}  // namespace gitopsd::daemon
