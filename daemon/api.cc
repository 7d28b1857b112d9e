#include "daemon/api.h"

#include <Poco/Net/HTTPRequestHandler.h>
#include <Poco/Net/HTTPRequestHandlerFactory.h>
#include <Poco/Net/HTTPServerConnection.h>
#include <Poco/Net/HTTPServerParams.h>
#include <Poco/Net/HTTPServerRequest.h>
#include <Poco/Net/HTTPServerResponse.h>
#include <Poco/Net/NetException.h>
#include <Poco/Net/ServerSocket.h>
#include <Poco/Net/SocketAddress.h>
#include <Poco/Net/StreamSocket.h>
#include <Poco/Net/TCPServer.h>
#include <Poco/Net/TCPServerConnectionFactory.h>
#include <Poco/ThreadPool.h>
#include <Poco/String.h>
#include <Poco/URI.h>
#include <spdlog/spdlog.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <thread>

#include "daemon/api_json.h"
#include "daemon/api_listen.h"
#include "daemon/api_previews.h"
#include "daemon/api_resources.h"
#include "daemon/api_routes.h"
#include "daemon/api_runs.h"
#include "daemon/api_write.h"
#include "daemon/metrics.h"
#include "daemon/poller.h"
#include "daemon/tokens.h"
#include "sync/json.h"
#include "sync/model.h"
#include "sync/store.h"

namespace gitopsd::daemon {
namespace {

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
  Router(const ApiOptions& options, const ApiDeps& deps)
      : options_(options),
        deps_(deps),
        writes_(options, deps, stopping_),
        runs_(options, deps, stopping_),
        hooks_(deps.hooks) {}

  // Waits in progress (for a push) end early; no new ones start.
  void BeginStop() { stopping_ = true; }

  // One answered request, for /metrics.
  void Count(const std::string& method, const std::string& path, int status,
             std::chrono::steady_clock::time_point started) {
    if (!deps_.metrics) return;
    const std::chrono::duration<double> took = std::chrono::steady_clock::now() - started;
    deps_.metrics->RecordHttpRequest(MethodLabel(method), RouteTemplate(path), status, took.count());
  }

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
      deps_.poller->RefreshWriteBackGauges();
      Response r = Text(200, deps_.metrics->Render());
      r.content_type = "text/plain; version=0.0.4; charset=utf-8";
      return r;
    }
    if (p.size() >= 2 && p[0] == "api" && p[1] == "v1") {
      return HandleV1(req, std::vector<std::string>(p.begin() + 2, p.end()));
    }
    if (auto r = hooks_.RouteHooks(req, p)) return std::move(*r);
    return NotFound(req.path);
  }

 private:
  Response HandleV1(const Request& req, const std::vector<std::string>& p) {
    const bool get = req.method == "GET";
    if (p.size() == 1 && p[0] == "objects") {
      return get ? ListObjects(req) : MethodNotAllowed(req.method, "GET");
    }
    if (p.size() == 3 && p[0] == "objects") {
      if (get) return GetObject(req, p[1], p[2]);
      if (req.method == "PUT") return writes_.PutObject(req, p[1], p[2]);
      if (req.method == "DELETE") return writes_.DeleteObject(req, p[1], p[2]);
      return MethodNotAllowed(req.method, "GET, PUT, DELETE");
    }
    if (p.size() == 2 && p[0] == "writebacks") {
      return get ? writes_.GetWriteBack(p[1]) : MethodNotAllowed(req.method, "GET");
    }
    if (p.size() == 1 && p[0] == "conflicts") {
      return get ? writes_.ListConflicts(req) : MethodNotAllowed(req.method, "GET");
    }
    if (p.size() == 3 && p[0] == "conflicts" && p[2] == "resolve") {
      return req.method == "POST" ? writes_.ResolveConflict(req, p[1])
                                  : MethodNotAllowed(req.method, "POST");
    }
    if (p.size() == 1 && p[0] == "sync") {
      return get ? SyncStatus() : MethodNotAllowed(req.method, "GET");
    }
    if (p.size() == 3 && p[0] == "repositories" && p[2] == "sync") {
      return req.method == "POST" ? SyncNow(req, p[1]) : MethodNotAllowed(req.method, "POST");
    }
    if (auto r = runs_.Route(req, p)) return std::move(*r);
    if (auto r = hooks_.RouteTokens(req, p)) return std::move(*r);
    if (auto r = RoutePreviews(deps_, req, p)) return std::move(*r);
    if (auto r = RouteResources(deps_, req, p)) return std::move(*r);
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
    auto conflicts = deps_.store->ListConflicts(true);
    if (!conflicts) return StoreError(conflicts.error());
    std::vector<json::Value> items;
    for (const auto& r : *repos) {
      if (!deps_.poller->Has(r.name)) continue;  // no longer configured
      auto errors = deps_.store->ListErrors(r.name);
      if (!errors) return StoreError(errors.error());
      auto unfinished = deps_.store->CountUnfinishedEdits(r.name);
      if (!unfinished) return StoreError(unfinished.error());
      std::vector<json::Value> open;
      for (const auto& c : *conflicts) {
        if (c.repository != r.name) continue;
        open.push_back(json::Value::Object({{"id", Int(c.id)},
                                            {"kind", Str(c.kind)},
                                            {"name", Str(c.name)},
                                            {"path", Str(c.path)},
                                            {"inForce", Str(c.in_force)},
                                            {"createdAt", StrOrNull(IsoTime(c.created_at_ms))}}));
      }
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
           {"writeBack", json::Value::Bool(deps_.poller->WriteBackFor(r.name) != nullptr)},
           {"pendingWriteBacks", Int(*unfinished)},
           {"conflicts", json::Value::Array(std::move(open))}}));
    }
    return Json(200, json::Value::Object({{"repositories", json::Value::Array(std::move(items))}}));
  }

  Response SyncNow(const Request& req, const std::string& name) {
    WriteAuth auth = RequireWrite(deps_.tokens, req);
    if (auth.refused) return *auth.refused;
    const std::string& who = auth.who;
    if (!deps_.poller->Has(name)) {
      return ErrorResponse(404, "not_found", "no repository named \"" + name + "\" is configured");
    }
    spdlog::info("{}: sync requested through the API by token \"{}\"", name, who);
    if (deps_.hooks.look) deps_.hooks.look(name);  // and the triggers look at its heads
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
  std::atomic<bool> stopping_{false};
  WriteRoutes writes_;
  RunRoutes runs_;
  HookRoutes hooks_;
};

// ---- Slow clients.

// Poco's timeout bounds each read, so a client that trickles a byte now and
// then would hold a thread for as long as it likes. The guard gives every
// connection a deadline while the server waits for the client (the headers
// of a request, then its body) and shuts the socket down when it passes: the
// blocked read ends, the request is dropped and the thread is free again.
class SlowClientGuard {
 public:
  explicit SlowClientGuard(std::chrono::milliseconds limit)
      : limit_(limit), thread_([this] { Loop(); }) {}
  ~SlowClientGuard() {
    {
      std::lock_guard lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }
  SlowClientGuard(const SlowClientGuard&) = delete;
  SlowClientGuard& operator=(const SlowClientGuard&) = delete;

  // A new connection: its first request must arrive within the limit.
  uint64_t Add(const Poco::Net::StreamSocket& socket) {
    std::string peer;
    try {
      peer = socket.peerAddress().toString();
    } catch (const Poco::Exception&) {
      peer = "?";
    }
    std::lock_guard lock(mu_);
    const uint64_t id = ++next_id_;
    entries_.emplace(id, Entry{socket, std::move(peer), Clock::now() + limit_, false, false});
    cv_.notify_all();
    return id;
  }
  void Remove(uint64_t id) {
    std::lock_guard lock(mu_);
    entries_.erase(id);
  }
  // The client has to send the rest of its request within the limit from now.
  void Arm(uint64_t id) { SetDeadline(id, Clock::now() + limit_, false); }
  // An answer went out; the next request (if any) must come within the
  // limit. A kept-alive connection left idle that long is closed quietly.
  void ArmForNextRequest(uint64_t id) { SetDeadline(id, Clock::now() + limit_, true); }
  // The server is working on the request: no deadline.
  void Disarm(uint64_t id) { SetDeadline(id, std::nullopt, false); }
  bool Expired(uint64_t id) const {
    std::lock_guard lock(mu_);
    auto it = entries_.find(id);
    return it != entries_.end() && it->second.expired;
  }
  // Shutdown: every connection is cut, whatever it is doing.
  void AbortAll() {
    std::lock_guard lock(mu_);
    for (auto& [id, e] : entries_) Cut(e);
  }

 private:
  using Clock = std::chrono::steady_clock;
  struct Entry {
    Poco::Net::StreamSocket socket;
    std::string peer;
    std::optional<Clock::time_point> deadline;
    bool expired;
    bool between_requests;  // answered one request, no byte of the next yet known
  };

  void SetDeadline(uint64_t id, std::optional<Clock::time_point> deadline, bool between) {
    std::lock_guard lock(mu_);
    auto it = entries_.find(id);
    if (it == entries_.end() || it->second.expired) return;
    it->second.deadline = deadline;
    it->second.between_requests = between;
    cv_.notify_all();
  }

  static void Cut(Entry& e) {
    e.expired = true;
    e.deadline.reset();
    try {
      e.socket.shutdown();
    } catch (const Poco::Exception&) {
      // Already closed by the peer: nothing left to cut.
    }
  }

  void Loop() {
    std::unique_lock lock(mu_);
    while (!stop_) {
      const auto now = Clock::now();
      auto next = Clock::time_point::max();
      for (auto& [id, e] : entries_) {
        if (!e.deadline) continue;
        if (*e.deadline <= now) {
          if (e.between_requests) {
            spdlog::debug("closing the idle connection from {} after {} ms", e.peer,
                          limit_.count());
          } else {
            spdlog::info("closing the connection from {}: no complete request within {} ms",
                         e.peer, limit_.count());
          }
          Cut(e);
        } else {
          next = std::min(next, *e.deadline);
        }
      }
      if (next == Clock::time_point::max()) {
        cv_.wait(lock);
      } else {
        cv_.wait_until(lock, next);
      }
    }
  }

  const std::chrono::milliseconds limit_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::map<uint64_t, Entry> entries_;
  uint64_t next_id_ = 0;
  bool stop_ = false;
  std::thread thread_;  // last: starts once everything above exists
};

// The guard's id of the connection this thread serves (a connection stays
// on one thread from accept to close).
thread_local uint64_t tls_connection = 0;
// Who is at the other end when the connection came in on the unix socket
// (unset on TCP): RequireWrite trusts such requests.
thread_local std::optional<std::string> tls_local_peer;

// ---- Poco glue.

class Handler : public Poco::Net::HTTPRequestHandler {
 public:
  Handler(Router& router, SlowClientGuard& guard, size_t max_body)
      : router_(router), guard_(guard), max_body_(max_body) {}

  void handleRequest(Poco::Net::HTTPServerRequest& in,
                     Poco::Net::HTTPServerResponse& out) override {
    const uint64_t connection = tls_connection;
    const auto started = std::chrono::steady_clock::now();
    guard_.Arm(connection);  // the headers are in; now the body
    Response r;
    try {
      auto dispatched = Dispatch(in, connection);
      if (!dispatched) {  // cut off while sending its body: nothing to answer
        out.setKeepAlive(false);
        return;
      }
      r = std::move(*dispatched);
    } catch (const std::exception& e) {
      if (guard_.Expired(connection)) return;
      spdlog::error("{} {}: {}", in.getMethod(), PathForLog(path_), e.what());
      r = ErrorResponse(500, "internal", e.what());
    }
    spdlog::debug("{} {} -> {}", in.getMethod(), PathForLog(path_), r.status);
    out.setStatusAndReason(static_cast<Poco::Net::HTTPResponse::HTTPStatus>(r.status));
    for (const auto& [k, v] : r.headers) out.set(k, v);
    out.set("Cache-Control", "no-store");
    if (!r.content_type.empty()) out.setContentType(r.content_type);
    if (r.status == 304) {
      out.setContentLength(0);
      out.send();
    } else if (r.stream) {
      Stream(r, out);
    } else {
      out.setContentLength64(static_cast<Poco::Int64>(r.body.size()));
      out.send().write(r.body.data(), static_cast<std::streamsize>(r.body.size()));
    }
    router_.Count(in.getMethod(), path_, r.status, started);
    guard_.ArmForNextRequest(connection);
  }

 private:
  // A streamed body: chunked, each piece flushed as it is written. The
  // writer says false once the client is gone or the server stops (the
  // guard cuts every socket then), which ends the route's loop.
  static void Stream(const Response& r, Poco::Net::HTTPServerResponse& out) {
    out.setChunkedTransferEncoding(true);
    out.setKeepAlive(false);
    std::ostream& body = out.send();
    r.stream([&body](std::string_view piece) {
      try {
        body.write(piece.data(), static_cast<std::streamsize>(piece.size()));
        body.flush();
      } catch (const std::exception&) {
        return false;
      }
      return static_cast<bool>(body);
    });
  }

  // nullopt when the client was cut off before its request was complete.
  std::optional<Response> Dispatch(Poco::Net::HTTPServerRequest& in, uint64_t connection) {
    Request req;
    req.method = in.getMethod();
    try {
      Poco::URI uri(in.getURI());
      req.path = uri.getPath();
      path_ = req.path;
      for (const auto& [k, v] : uri.getQueryParameters()) req.query[k] = v;
    } catch (const Poco::Exception& e) {
      return ErrorResponse(400, "bad_request", "malformed URI: " + e.displayText());
    }
    req.authorization = in.get("Authorization", "");
    req.content_type = in.get("Content-Type", "");
    req.if_match = in.get("If-Match", "");
    req.if_none_match = in.get("If-None-Match", "");
    for (const auto& [name, value] : in) req.headers[Poco::toLower(name)] = value;
    req.local_peer = tls_local_peer;
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
    // A body cut short (the guard shut the socket, or the client hung up)
    // must never reach a route as if it were the whole request.
    if (guard_.Expired(connection)) return std::nullopt;
    if (in.hasContentLength() &&
        static_cast<Poco::Int64>(req.body.size()) != in.getContentLength64()) {
      return std::nullopt;
    }
    guard_.Disarm(connection);
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
  SlowClientGuard& guard_;
  size_t max_body_;
  std::string path_;  // the request's path once parsed (a handler serves one request)
};

class HandlerFactory : public Poco::Net::HTTPRequestHandlerFactory {
 public:
  HandlerFactory(Router& router, SlowClientGuard& guard, size_t max_body)
      : router_(router), guard_(guard), max_body_(max_body) {}
  Poco::Net::HTTPRequestHandler* createRequestHandler(
      const Poco::Net::HTTPServerRequest&) override {
    return new Handler(router_, guard_, max_body_);
  }

 private:
  Router& router_;
  SlowClientGuard& guard_;
  size_t max_body_;
};

// Poco's HTTP connection, registered with the guard for its lifetime.
class GuardedConnection : public Poco::Net::HTTPServerConnection {
 public:
  GuardedConnection(const Poco::Net::StreamSocket& socket, Poco::Net::HTTPServerParams::Ptr params,
                    Poco::Net::HTTPRequestHandlerFactory::Ptr factory, SlowClientGuard& guard,
                    bool local)
      : HTTPServerConnection(socket, params, factory), guard_(guard), local_(local) {}

  void run() override {
    struct Registration {
      SlowClientGuard& guard;
      uint64_t id;
      ~Registration() {
        guard.Remove(id);
        tls_connection = 0;
        tls_local_peer.reset();
      }
    } registration{guard_, guard_.Add(socket())};
    tls_connection = registration.id;
    if (local_) tls_local_peer = PeerCredentials(socket()).value_or("uid unknown");
    HTTPServerConnection::run();
  }

 private:
  SlowClientGuard& guard_;
  bool local_;  // accepted on the unix socket
};

class ConnectionFactory : public Poco::Net::TCPServerConnectionFactory {
 public:
  ConnectionFactory(Poco::Net::HTTPServerParams::Ptr params,
                    Poco::Net::HTTPRequestHandlerFactory::Ptr handlers, SlowClientGuard& guard,
                    bool local)
      : params_(std::move(params)), handlers_(std::move(handlers)), guard_(guard), local_(local) {}
  Poco::Net::TCPServerConnection* createConnection(const Poco::Net::StreamSocket& socket) override {
    return new GuardedConnection(socket, params_, handlers_, guard_, local_);
  }

 private:
  Poco::Net::HTTPServerParams::Ptr params_;
  Poco::Net::HTTPRequestHandlerFactory::Ptr handlers_;
  SlowClientGuard& guard_;
  bool local_;
};

}  // namespace

struct ApiServer::Impl {
  Impl(const ApiOptions& options, const ApiDeps& deps)
      : router(options, deps),
        guard(options.read_timeout),
        pool("http", 2, std::max(2, options.max_threads)) {}
  Router router;
  SlowClientGuard guard;
  Poco::ThreadPool pool;
  std::unique_ptr<Poco::Net::TCPServer> server;
  std::unique_ptr<Poco::Net::TCPServer> local_server;  // on the unix socket
  UnixSocketFile socket_file;
  uint16_t port = 0;
  bool stopped = false;
};

ApiServer::ApiServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
ApiServer::~ApiServer() { Stop(); }

uint16_t ApiServer::port() const { return impl_->port; }

void ApiServer::Stop() {
  if (!impl_ || impl_->stopped || !impl_->server) return;
  impl_->stopped = true;
  impl_->router.BeginStop();
  impl_->server->stop();  // no new connections
  if (impl_->local_server) impl_->local_server->stop();
  impl_->socket_file.Remove();
  impl_->guard.AbortAll();  // and the open ones end now
  impl_->pool.joinAll();
}

Result<std::unique_ptr<ApiServer>> ApiServer::Start(const ApiOptions& options,
                                                    const ApiDeps& deps) {
  auto impl = std::make_unique<Impl>(options, deps);
  // The unix socket first: a refusal there (another daemon owns it) must
  // come before this one shows up on the TCP port.
  std::optional<Poco::Net::ServerSocket> local_socket;
  if (!options.unix_socket.empty()) {
    auto opened = OpenUnixListener(options.unix_socket, &impl->socket_file);
    if (!opened) return std::unexpected(opened.error());
    local_socket = std::move(*opened);
  }
  auto socket = OpenTcpListener(options);
  if (!socket) {
    impl->socket_file.Remove();
    return std::unexpected(socket.error());
  }
  try {
    impl->port = socket->address().port();
    const Poco::Timespan timeout(
        std::chrono::duration_cast<std::chrono::microseconds>(options.read_timeout).count());
    Poco::Net::HTTPServerParams::Ptr params = new Poco::Net::HTTPServerParams;
    params->setMaxThreads(options.max_threads);
    params->setMaxQueued(options.max_queued);
    params->setTimeout(timeout);
    params->setKeepAlive(true);
    params->setKeepAliveTimeout(timeout);
    params->setMaxKeepAliveRequests(100);
    params->setServerName("gitopsd");
    Poco::Net::HTTPRequestHandlerFactory::Ptr handlers =
        new HandlerFactory(impl->router, impl->guard, options.max_body_bytes);
    impl->server = std::make_unique<Poco::Net::TCPServer>(
        new ConnectionFactory(params, handlers, impl->guard, false), impl->pool, *socket, params);
    if (local_socket) {
      impl->local_server = std::make_unique<Poco::Net::TCPServer>(
          new ConnectionFactory(params, handlers, impl->guard, true), impl->pool, *local_socket,
          params);
    }
    impl->server->start();
    if (impl->local_server) impl->local_server->start();
  } catch (const Poco::Exception& e) {
    impl->socket_file.Remove();
    return Fail("cannot listen on " + options.listen + ": " + e.displayText());
  } catch (const std::exception& e) {
    impl->socket_file.Remove();
    return Fail("cannot listen on " + options.listen + ": " + e.what());
  }
  if (!options.tls_cert_file.empty()) {
    spdlog::info("API over HTTPS (TLS 1.2 or later) with the certificate {}", options.tls_cert_file);
  }
  if (local_socket) {
    spdlog::info("API also on the unix socket {} (mode 0660; its requests need no token)",
                 options.unix_socket);
  }
  return std::unique_ptr<ApiServer>(new ApiServer(std::move(impl)));
}

}  // namespace gitopsd::daemon
