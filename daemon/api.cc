#include "daemon/api.h"

#include <Poco/Net/HTTPRequestHandler.h>
#include <Poco/Net/HTTPRequestHandlerFactory.h>
#include <Poco/Net/HTTPServer.h>
#include <Poco/Net/HTTPServerParams.h>
#include <Poco/Net/HTTPServerRequest.h>
#include <Poco/Net/HTTPServerResponse.h>
#include <Poco/Net/NetException.h>
#include <Poco/Net/ServerSocket.h>
#include <Poco/Net/SocketAddress.h>
#include <Poco/ThreadPool.h>
#include <Poco/URI.h>
#include <spdlog/spdlog.h>

#include <ctime>
#include <map>
#include <set>

#include "daemon/config.h"
#include "daemon/metrics.h"
#include "daemon/poller.h"
#include "daemon/tokens.h"
#include "sync/json.h"
#include "sync/model.h"
#include "sync/store.h"

namespace gitopsd::daemon {
namespace {

// ---- A request and a response without Poco, so the routes read plainly.

struct Request {
  std::string method;
  std::string path;
  std::map<std::string, std::string> query;
  std::string authorization;
  std::string if_none_match;
  std::string body;
};

struct Response {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;
};

json::Value Str(std::string s) { return json::Value::String(std::move(s)); }
json::Value Int(int64_t n) { return json::Value::NumberText(std::to_string(n)); }
json::Value StrOrNull(const std::string& s) { return s.empty() ? json::Value::Null() : Str(s); }

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

Response MethodNotAllowed(const std::string& method, const std::string& allow) {
  Response r = ErrorResponse(405, "method_not_allowed", method + " is not allowed here; use " + allow);
  r.headers.emplace_back("Allow", allow);
  return r;
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

std::vector<std::string> SplitPath(const std::string& path) {
  std::vector<std::string> parts;
  size_t i = 0;
  while (i < path.size()) {
    size_t j = path.find('/', i);
    if (j == std::string::npos) j = path.size();
    if (j > i) parts.push_back(path.substr(i, j - i));
    i = j + 1;
  }
  return parts;
}

json::Value DiagnosticJson(const Diagnostic& d, const std::string& commit) {
  return json::Value::Object({{"path", Str(d.path)},
                              {"line", Int(d.line)},
                              {"column", Int(d.col)},
                              {"message", Str(d.message)},
                              {"rule", Str(d.rule)},
                              {"commit", Str(commit)}});
}

// ---- The routes.

class Router {
 public:
  Router(const ApiOptions& options, const ApiDeps& deps) : options_(options), deps_(deps) {}

  Response Handle(const Request& req) {
    const std::vector<std::string> p = SplitPath(req.path);
    const bool get = req.method == "GET";
    if (p.size() == 1 && p[0] == "healthz") {
      if (!get) return MethodNotAllowed(req.method, "GET");
      return Text(200, "ok\n");
    }
    if (p.size() == 1 && p[0] == "readyz") return get ? Ready() : MethodNotAllowed(req.method, "GET");
    if (p.size() == 1 && p[0] == "metrics") {
      if (!get) return MethodNotAllowed(req.method, "GET");
      Response r = Text(200, deps_.metrics->Render());
      r.content_type = "text/plain; version=0.0.4; charset=utf-8";
      return r;
    }
    if (p.size() >= 2 && p[0] == "api" && p[1] == "v1") {
      return HandleV1(req, std::vector<std::string>(p.begin() + 2, p.end()));
    }
    return NotFound(req.path);
  }

 private:
  Response HandleV1(const Request& req, const std::vector<std::string>& p) {
    const bool get = req.method == "GET";
    if (p.size() == 1 && p[0] == "objects") {
      return get ? ListObjects(req) : MethodNotAllowed(req.method, "GET");
    }
    if (p.size() == 3 && p[0] == "objects") {
      return get ? GetObject(req, p[1], p[2]) : MethodNotAllowed(req.method, "GET");
    }
    if (p.size() == 1 && p[0] == "sync") {
      return get ? SyncStatus() : MethodNotAllowed(req.method, "GET");
    }
    if (p.size() == 3 && p[0] == "repositories" && p[2] == "sync") {
      return req.method == "POST" ? SyncNow(req, p[1]) : MethodNotAllowed(req.method, "POST");
    }
    return NotFound(req.path);
  }

  static Response Text(int status, std::string body) {
    Response r;
    r.status = status;
    r.content_type = "text/plain; charset=utf-8";
    r.body = std::move(body);
    return r;
  }

  static Response NotFound(const std::string& path) {
    return ErrorResponse(404, "not_found", "no such endpoint: " + path);
  }

  static Response StoreError(const Error& e) {
    spdlog::error("store: {}", e.message);
    return ErrorResponse(500, "internal", "the state database failed: " + e.message);
  }

  Response Ready() {
    std::vector<std::string> pending = deps_.poller->Pending();
    if (pending.empty()) return Text(200, "ready\n");
    std::string names;
    std::vector<json::Value> list;
    for (const auto& n : pending) {
      names += (names.empty() ? "" : ", ") + n;
      list.push_back(Str(n));
    }
    Response r = Json(
        503, json::Value::Object(
                 {{"error", json::Value::Object(
                                {{"code", Str("not_ready")},
                                 {"message", Str("waiting for the first sync of: " + names)}})},
                  {"pending", json::Value::Array(std::move(list))}}));
    return r;
  }

  // (repository, path) pairs of the files in error now.
  Result<std::set<std::pair<std::string, std::string>>> FilesInError() {
    auto errors = deps_.store->ListErrors();
    if (!errors) return std::unexpected(errors.error());
    std::set<std::pair<std::string, std::string>> files;
    for (const auto& e : *errors) files.emplace(e.repository, e.path);
    return files;
  }

  Response ListObjects(const Request& req) {
    std::string kind;
    if (auto it = req.query.find("kind"); it != req.query.end() && !it->second.empty()) {
      auto k = model::ParseKind(it->second);
      if (!k) {
        return ErrorResponse(400, "bad_request",
                             "unknown kind \"" + it->second +
                                 "\"; use Template, ReleaseFlow or PreviewTemplate");
      }
      kind = model::KindName(*k);
    }
    auto objects = deps_.store->ListObjects(kind);
    if (!objects) return StoreError(objects.error());
    auto bad = FilesInError();
    if (!bad) return StoreError(bad.error());
    std::vector<json::Value> items;
    for (const auto& o : *objects) {
      const bool in_error = bad->contains({o.repository, o.path});
      items.push_back(json::Value::Object({{"kind", Str(o.kind)},
                                           {"name", Str(o.name)},
                                           {"revision", Int(o.revision)},
                                           {"path", Str(o.path)},
                                           {"repository", Str(o.repository)},
                                           {"sourceCommit", Str(o.source_commit)},
                                           {"updatedAt", StrOrNull(IsoTime(o.updated_at_ms))},
                                           {"status", Str(in_error ? "error" : "synced")}}));
    }
    return Json(200, json::Value::Object({{"objects", json::Value::Array(std::move(items))}}));
  }

  Response GetObject(const Request& req, const std::string& kind_text, const std::string& name) {
    auto kind = model::ParseKind(kind_text);
    if (!kind) {
      return ErrorResponse(404, "not_found",
                           "unknown kind \"" + kind_text +
                               "\"; use templates, release-flows or previews");
    }
    auto object = deps_.store->GetObject(model::KindName(*kind), name);
    if (!object) return StoreError(object.error());
    if (!*object) {
      return ErrorResponse(404, "not_found",
                           std::string(model::KindName(*kind)) + " \"" + name + "\" does not exist");
    }
    const std::string etag = "\"" + std::to_string((*object)->revision) + "\"";
    Response r;
    r.headers.emplace_back("ETag", etag);
    if (req.if_none_match == etag) {
      r.status = 304;
      r.content_type.clear();
      return r;
    }
    r.body = (*object)->body + "\n";
    return r;
  }

  Response SyncStatus() {
    auto repos = deps_.store->ListRepositories();
    if (!repos) return StoreError(repos.error());
    std::set<std::string> pending;
    for (auto& n : deps_.poller->Pending()) pending.insert(n);
    std::vector<json::Value> items;
    for (const auto& r : *repos) {
      if (!deps_.poller->Has(r.name)) continue;  // no longer configured
      auto errors = deps_.store->ListErrors(r.name);
      if (!errors) return StoreError(errors.error());
      std::vector<json::Value> errs;
      for (const auto& e : *errors) {
        errs.push_back(json::Value::Object({{"path", Str(e.path)},
                                            {"line", Int(e.line)},
                                            {"column", Int(e.col)},
                                            {"message", Str(e.message)},
                                            {"rule", Str(e.rule)},
                                            {"commit", Str(e.commit_id)}}));
      }
      items.push_back(json::Value::Object(
          {{"name", Str(r.name)},
           {"url", Str(r.url)},
           {"branch", Str(r.branch)},
           {"fetchedCommit", StrOrNull(r.fetched_commit)},
           {"appliedCommit", StrOrNull(r.applied_commit)},
           {"lastSyncAt", StrOrNull(IsoTime(r.last_sync_at_ms))},
           {"lastSyncDurationMs", Int(r.last_sync_duration_us / 1000)},
           {"firstSyncDone", json::Value::Bool(!pending.contains(r.name))},
           {"fetchFailures", Int(r.fetch_failures)},
           {"fetchFailuresTotal", Int(r.fetch_failures_total)},
           {"lastFetchError", StrOrNull(r.last_fetch_error)},
           {"errors", json::Value::Array(std::move(errs))},
           {"pendingWriteBacks", Int(0)},
           {"conflicts", json::Value::Array()}}));
    }
    return Json(200, json::Value::Object({{"repositories", json::Value::Array(std::move(items))}}));
  }

  // 401 without a valid token, 403 when it may not write (or no tokens exist).
  std::optional<Response> RequireWrite(const Request& req, std::string* who) {
    if (!deps_.tokens) {
      return ErrorResponse(403, "forbidden",
                           "writes are disabled: no API tokens are configured. Set \"apiTokensFile\" "
                           "in the configuration to a JSON file of [{\"name\", \"role\": \"write\", "
                           "\"sha256\": \"<hex SHA-256 of the token>\"}] and restart gitopsd");
    }
    std::string_view auth = req.authorization;
    constexpr std::string_view kBearer = "bearer ";
    std::string token;
    if (auth.size() > kBearer.size()) {
      std::string scheme(auth.substr(0, kBearer.size()));
      for (char& c : scheme) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      if (scheme == kBearer) token = std::string(auth.substr(kBearer.size()));
    }
    while (!token.empty() && token.back() == ' ') token.pop_back();
    if (token.empty()) {
      Response r = ErrorResponse(401, "unauthorized",
                                 "this request needs an \"Authorization: Bearer <token>\" header "
                                 "with a write token");
      r.headers.emplace_back("WWW-Authenticate", "Bearer realm=\"gitopsd\"");
      return r;
    }
    auto principal = deps_.tokens->Authenticate(token);
    if (!principal) {
      Response r = ErrorResponse(401, "unauthorized", "the bearer token is not valid");
      r.headers.emplace_back("WWW-Authenticate", "Bearer realm=\"gitopsd\", error=\"invalid_token\"");
      return r;
    }
    if (principal->role != Role::kWrite) {
      return ErrorResponse(403, "forbidden",
                           "token \"" + principal->name + "\" has the read role; this needs write");
    }
    *who = principal->name;
    return std::nullopt;
  }

  Response SyncNow(const Request& req, const std::string& name) {
    std::string who;
    if (auto denied = RequireWrite(req, &who)) return *denied;
    if (!deps_.poller->Has(name)) {
      return ErrorResponse(404, "not_found", "no repository named \"" + name + "\" is configured");
    }
    spdlog::info("{}: sync requested through the API by token \"{}\"", name, who);
    auto outcome = deps_.poller->RequestSync(
        name, std::chrono::duration_cast<std::chrono::milliseconds>(options_.sync_timeout));
    if (!outcome) {
      return ErrorResponse(503, "unavailable",
                           "the sync of \"" + name + "\" did not finish within " +
                               std::to_string(options_.sync_timeout.count()) +
                               "s (or gitopsd is shutting down); it goes on in the background");
    }
    if (!outcome->ok) {
      if (outcome->fetch_failed) return ErrorResponse(502, "fetch_failed", outcome->error);
      return ErrorResponse(500, "sync_failed", outcome->error);
    }
    const sync::SyncReport& r = outcome->report;
    std::vector<json::Value> errors;
    for (const auto& d : r.errors) errors.push_back(DiagnosticJson(d, r.to_commit));
    return Json(200, json::Value::Object({{"repository", Str(r.repository)},
                                          {"from", StrOrNull(r.from_commit)},
                                          {"to", StrOrNull(r.to_commit)},
                                          {"changed", json::Value::Bool(r.changed())},
                                          {"added", Int(r.added)},
                                          {"updated", Int(r.updated)},
                                          {"deleted", Int(r.deleted)},
                                          {"filesChanged", Int(r.files_changed)},
                                          {"filesFailed", Int(r.files_failed)},
                                          {"errors", json::Value::Array(std::move(errors))},
                                          {"fetchMs", Int(r.fetch_us / 1000)},
                                          {"applyMs", Int(r.apply_us / 1000)}}));
  }

  ApiOptions options_;
  ApiDeps deps_;
};

// ---- Poco glue.

class Handler : public Poco::Net::HTTPRequestHandler {
 public:
  Handler(Router& router, size_t max_body) : router_(router), max_body_(max_body) {}

  void handleRequest(Poco::Net::HTTPServerRequest& in,
                     Poco::Net::HTTPServerResponse& out) override {
    Response r;
    try {
      r = Dispatch(in);
    } catch (const std::exception& e) {
      spdlog::error("{} {}: {}", in.getMethod(), in.getURI(), e.what());
      r = ErrorResponse(500, "internal", e.what());
    }
    spdlog::debug("{} {} -> {}", in.getMethod(), in.getURI(), r.status);
    out.setStatus(static_cast<Poco::Net::HTTPResponse::HTTPStatus>(r.status));
    for (const auto& [k, v] : r.headers) out.set(k, v);
    out.set("Cache-Control", "no-store");
    if (!r.content_type.empty()) out.setContentType(r.content_type);
    if (r.status == 304) {
      out.setContentLength(0);
      out.send();
      return;
    }
    out.setContentLength64(static_cast<Poco::Int64>(r.body.size()));
    out.send().write(r.body.data(), static_cast<std::streamsize>(r.body.size()));
  }

 private:
  Response Dispatch(Poco::Net::HTTPServerRequest& in) {
    Request req;
    req.method = in.getMethod();
    try {
      Poco::URI uri(in.getURI());
      req.path = uri.getPath();
      for (const auto& [k, v] : uri.getQueryParameters()) req.query[k] = v;
    } catch (const Poco::Exception& e) {
      return ErrorResponse(400, "bad_request", "malformed URI: " + e.displayText());
    }
    req.authorization = in.get("Authorization", "");
    req.if_none_match = in.get("If-None-Match", "");
    if (in.hasContentLength() && in.getContentLength64() > static_cast<Poco::Int64>(max_body_)) {
      Drain(in.stream());
      return TooLarge();
    }
    if (in.hasContentLength() || in.getChunkedTransferEncoding()) {
      std::istream& body = in.stream();
      char buf[8192];
      while (body) {
        body.read(buf, sizeof buf);
        req.body.append(buf, static_cast<size_t>(body.gcount()));
        if (req.body.size() > max_body_) {
          Drain(body);
          return TooLarge();
        }
      }
    }
    return router_.Handle(req);
  }

  // Reads and drops what the client still sends (up to a cap), so that it
  // gets to read the 413 instead of a reset connection.
  static void Drain(std::istream& body) {
    constexpr size_t kDrainCap = 16 << 20;
    char buf[8192];
    size_t drained = 0;
    while (body && drained < kDrainCap) {
      body.read(buf, sizeof buf);
      drained += static_cast<size_t>(body.gcount());
    }
  }

  Response TooLarge() const {
    Response r = ErrorResponse(413, "too_large",
                               "the request body is larger than " + std::to_string(max_body_) +
                                   " bytes");
    r.headers.emplace_back("Connection", "close");
    return r;
  }

  Router& router_;
  size_t max_body_;
};

class Factory : public Poco::Net::HTTPRequestHandlerFactory {
 public:
  Factory(Router& router, size_t max_body) : router_(router), max_body_(max_body) {}
  Poco::Net::HTTPRequestHandler* createRequestHandler(
      const Poco::Net::HTTPServerRequest&) override {
    return new Handler(router_, max_body_);
  }

 private:
  Router& router_;
  size_t max_body_;
};

}  // namespace

struct ApiServer::Impl {
  Impl(const ApiOptions& options, const ApiDeps& deps)
      : router(options, deps), pool("http", 2, std::max(2, options.max_threads)) {}
  Router router;
  Poco::ThreadPool pool;
  std::unique_ptr<Poco::Net::HTTPServer> server;
  uint16_t port = 0;
  bool stopped = false;
};

ApiServer::ApiServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
ApiServer::~ApiServer() { Stop(); }

uint16_t ApiServer::port() const { return impl_->port; }

void ApiServer::Stop() {
  if (!impl_ || impl_->stopped || !impl_->server) return;
  impl_->stopped = true;
  impl_->server->stopAll(true);
  impl_->pool.joinAll();
}

Result<std::unique_ptr<ApiServer>> ApiServer::Start(const ApiOptions& options,
                                                    const ApiDeps& deps) {
  auto listen = ParseListen(options.listen);
  if (!listen) return Fail("listen: \"" + options.listen + "\" is not host:port");
  auto impl = std::make_unique<Impl>(options, deps);
  try {
    Poco::Net::SocketAddress address(listen->host, listen->port);
    Poco::Net::ServerSocket socket(address, 64);
    impl->port = socket.address().port();
    auto* params = new Poco::Net::HTTPServerParams;
    params->setMaxThreads(options.max_threads);
    params->setMaxQueued(options.max_queued);
    params->setTimeout(Poco::Timespan(options.read_timeout.count(), 0));
    params->setKeepAlive(true);
    params->setKeepAliveTimeout(Poco::Timespan(options.read_timeout.count(), 0));
    params->setMaxKeepAliveRequests(100);
    params->setServerName("gitopsd");
    impl->server = std::make_unique<Poco::Net::HTTPServer>(
        new Factory(impl->router, options.max_body_bytes), impl->pool, socket, params);
    impl->server->start();
  } catch (const Poco::Exception& e) {
    return Fail("cannot listen on " + options.listen + ": " + e.displayText());
  } catch (const std::exception& e) {
    return Fail("cannot listen on " + options.listen + ": " + e.what());
  }
  return std::unique_ptr<ApiServer>(new ApiServer(std::move(impl)));
}

}  // namespace gitopsd::daemon
