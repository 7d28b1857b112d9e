#include "daemon/api_resources.h"

#include <spdlog/spdlog.h>

#include <map>

#include "daemon/runtime/addons.h"
#include "daemon/runtime/builds.h"
#include "daemon/runtime/jobs.h"
#include "daemon/runtime/services.h"

namespace gitopsd::daemon {
namespace {

Response Unavailable() { return ErrorResponse(503, "unavailable", "the runtime is not running"); }

Response Failed(const std::string& what, const Error& e) {
  spdlog::error("runtime: cannot list {}: {}", what, e.message);
  return ErrorResponse(500, "internal", "cannot list " + what + ": " + e.message);
}

std::string Query(const Request& req, const std::string& key) {
  auto it = req.query.find(key);
  return it == req.query.end() ? "" : it->second;
}

json::Value IntOrNull(const std::optional<int>& n) { return n ? Int(*n) : json::Value::Null(); }

Response List(const std::string& key, std::vector<json::Value> items) {
  return Json(200, json::Value::Object({{key, json::Value::Array(std::move(items))}}));
}

Response Services(runtime::ServiceManager& services) {
  auto list = services.List();
  if (!list) return Failed("services", list.error());
  std::vector<json::Value> items;
  for (const auto& s : *list) {
    items.push_back(json::Value::Object({{"name", Str(s.service)},
                                         {"build", StrOrNull(s.build)},
                                         {"state", Str(runtime::ServiceStateName(s.state))},
                                         {"healthy", Bool(s.healthy)},
                                         {"port", s.port > 0 ? Int(s.port) : json::Value::Null()},
                                         {"pid", s.pid > 0 ? Int(s.pid) : json::Value::Null()},
                                         {"restarts", Int(s.restarts)},
                                         {"lastError", StrOrNull(s.last_error)},
                                         {"log", StrOrNull(s.log_path)}}));
  }
  return List("services", std::move(items));
}

Response Jobs(runtime::JobRunner& jobs, const std::string& job) {
  auto list = jobs.List(job);
  if (!list) return Failed("job runs", list.error());
  std::vector<json::Value> items;
  for (const auto& j : *list) {
    items.push_back(json::Value::Object({{"id", Int(j.id)},
                                         {"job", Str(j.job)},
                                         {"build", StrOrNull(j.build)},
                                         {"state", Str(runtime::JobStateName(j.state))},
                                         {"attempts", Int(j.attempts)},
                                         {"exitCode", IntOrNull(j.exit_code)},
                                         {"error", StrOrNull(j.error)},
                                         {"log", StrOrNull(j.log_path)},
                                         {"startedAt", StrOrNull(IsoTime(j.started_at))},
                                         {"endedAt", StrOrNull(IsoTime(j.ended_at))}}));
  }
  return List("jobs", std::move(items));
}

// Only the shown part of the connection: secret_env never leaves the runtime.
Response Addons(runtime::Addons& addons) {
  auto list = addons.ListAddons();
  if (!list) return Failed("addons", list.error());
  std::vector<json::Value> items;
  for (const auto& a : *list) {
    std::vector<json::Member> env;
    for (const auto& [k, v] : a.env) env.emplace_back(k, Str(v));
    items.push_back(json::Value::Object({{"name", Str(a.name)},
                                         {"type", Str(std::string(runtime::AddonTypeName(a.type)))},
                                         {"location", Str(a.location)},
                                         {"forkedFrom", StrOrNull(a.forked_from)},
                                         {"keepBackups", Int(a.keep_backups)},
                                         {"createdAt", StrOrNull(IsoTime(a.created_at_ms))},
                                         {"env", json::Value::Object(std::move(env))}}));
  }
  return List("addons", std::move(items));
}

Response Builds(runtime::BuildRunner& builds, const std::string& service) {
  auto list = builds.List(service);
  if (!list) return Failed("builds", list.error());
  std::vector<json::Value> items;
  for (const auto& b : *list) {
    items.push_back(json::Value::Object({{"id", Str(b.service + "@" + b.commit)},
                                         {"service", Str(b.service)},
                                         {"commit", Str(b.commit)},
                                         {"state", Str(runtime::BuildStateName(b.state))},
                                         {"attempts", Int(b.attempts)},
                                         {"exitCode", IntOrNull(b.exit_code)},
                                         {"error", StrOrNull(b.error)},
                                         {"log", StrOrNull(b.log_path)},
                                         {"startedAt", StrOrNull(IsoTime(b.started_at))},
                                         {"endedAt", StrOrNull(IsoTime(b.ended_at))}}));
  }
  return List("builds", std::move(items));
}

Response Backups(runtime::Addons& addons, const std::string& addon) {
  auto list = addons.ListBackups(addon);
  if (!list) return Failed("backups", list.error());
  std::vector<json::Value> items;
  for (const auto& b : *list) {
    items.push_back(json::Value::Object({{"id", Str(b.id)},
                                         {"addon", Str(b.addon)},
                                         {"type", Str(std::string(runtime::AddonTypeName(b.type)))},
                                         {"status", Str(std::string(runtime::BackupStatusName(b.status)))},
                                         {"size", Int(b.size_bytes)},
                                         {"path", Str(b.path)},
                                         {"error", StrOrNull(b.error)},
                                         {"startedAt", StrOrNull(IsoTime(b.started_at_ms))},
                                         {"endedAt", StrOrNull(IsoTime(b.ended_at_ms))}}));
  }
  return List("backups", std::move(items));
}

}  // namespace

std::optional<Response> RouteResources(const ApiDeps& deps, const Request& req,
                                       const std::vector<std::string>& p) {
  if (p.size() != 1) return std::nullopt;
  const std::string& what = p[0];
  if (what != "services" && what != "jobs" && what != "addons" && what != "builds" &&
      what != "backups") {
    return std::nullopt;
  }
  if (req.method != "GET") return MethodNotAllowed(req.method, "GET");
  if (what == "services") return deps.services ? Services(*deps.services) : Unavailable();
  if (what == "jobs") return deps.jobs ? Jobs(*deps.jobs, Query(req, "job")) : Unavailable();
  if (what == "builds") return deps.builds ? Builds(*deps.builds, Query(req, "service")) : Unavailable();
  if (!deps.addons) return Unavailable();
  return what == "addons" ? Addons(*deps.addons) : Backups(*deps.addons, Query(req, "addon"));
}

}  // namespace gitopsd::daemon
