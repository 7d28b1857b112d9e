#include "daemon/api_previews.h"

#include <spdlog/spdlog.h>

#include "daemon/previews/preview_manager.h"
#include "daemon/previews/preview_store.h"

namespace gitopsd::daemon {
namespace {

using previews::Preview;

bool QueryTrue(const Request& req, const std::string& key) {
  auto it = req.query.find(key);
  return it != req.query.end() && (it->second == "true" || it->second == "1");
}

json::Value OptionalId(const std::optional<int64_t>& id) { return id ? Int(*id) : json::Value(); }

// POST /api/v1/previews/{name}/reset {"lifetime": minutes}: the preview
// expires that long from now.
Response ResetExpiry(const ApiDeps& deps, const Request& req, const std::string& name) {
  if (req.method != "POST") return MethodNotAllowed(req.method, "POST");
  WriteAuth auth = RequireWrite(deps.tokens, req);
  if (auth.refused) return *auth.refused;
  auto body = json::Parse(req.body);
  const json::Value* lifetime = body && body->is_object() ? body->Find("lifetime") : nullptr;
  if (!lifetime || !lifetime->is_integer() || lifetime->as_double() < 1 || lifetime->as_double() > 525600) {
    return ErrorResponse(400, "bad_request", "give {\"lifetime\": minutes}, a whole number from 1 to 525600");
  }
  auto reset = deps.previews->ResetExpiry(name, static_cast<int64_t>(lifetime->as_double()));
  if (!reset) return ErrorResponse(404, "not_found", reset.error().message);
  return Json(200, json::Value::Object({{"name", Str(name)}, {"expiryTime", Str(IsoTime(reset->expires_at))}}));
}

}  // namespace

json::Value PreviewToJson(const Preview& p) {
  json::Value resources = json::Value::Array();
  for (const auto& r : p.resources) {
    resources.items().push_back(json::Value::Object({{"kind", Str(r.kind)}, {"name", Str(r.name)}}));
  }
  return json::Value::Object({{"name", Str(p.name)},
                              {"template", Str(p.template_name)},
                              {"status", Str(previews::PreviewStatusName(p.status))},
                              {"trigger", StrOrNull(p.trigger)},
                              {"repository", Str(p.repository)},
                              {"branch", Str(p.branch)},
                              {"pullRequest", StrOrNull(p.pull_request)},
                              {"sha", Str(p.sha)},
                              {"url", StrOrNull(p.url)},
                              {"setupRun", OptionalId(p.setup_run)},
                              {"teardownRun", OptionalId(p.teardown_run)},
                              {"createdAt", Str(IsoTime(p.created_at))},
                              {"updatedAt", Str(IsoTime(p.updated_at))},
                              {"expiresAt", StrOrNull(IsoTime(p.expires_at))},
                              {"resources", std::move(resources)},
                              {"error", StrOrNull(p.error)}});
}

std::optional<Response> RoutePreviews(const ApiDeps& deps, const Request& req, const std::vector<std::string>& p) {
  if (p.empty() || p[0] != "previews" || p.size() > 3 || (p.size() == 3 && p[2] != "reset")) return std::nullopt;
  if (!deps.previews || !deps.preview_store) {
    return ErrorResponse(503, "unavailable", "previews are not running");
  }
  if (p.size() == 1) {
    if (req.method != "GET") return MethodNotAllowed(req.method, "GET");
    auto list = deps.preview_store->List(QueryTrue(req, "all"));
    if (!list) return ErrorResponse(500, "internal", list.error().message);
    json::Value items = json::Value::Array();
    for (const Preview& preview : *list) items.items().push_back(PreviewToJson(preview));
    return Json(200, json::Value::Object({{"previews", std::move(items)}}));
  }
  const std::string& name = p[1];
  if (p.size() == 3) return ResetExpiry(deps, req, name);
  if (req.method == "GET") {
    auto found = deps.preview_store->Get(name);
    if (!found) return ErrorResponse(500, "internal", found.error().message);
    if (!*found) return ErrorResponse(404, "not_found", "no preview named \"" + name + "\"");
    return Json(200, PreviewToJson(**found));
  }
  if (req.method != "DELETE") return MethodNotAllowed(req.method, "GET, DELETE");
  WriteAuth auth = RequireWrite(deps.tokens, req);
  if (auth.refused) return *auth.refused;
  const bool skip = QueryTrue(req, "skipTeardown");
  auto torn = deps.previews->Teardown(name, skip, "deleted through the API by token \"" + auth.who + "\"" +
                                                      (skip ? " (skipTeardown)" : ""));
  if (!torn) return ErrorResponse(404, "not_found", torn.error().message);
  return Json(202, PreviewToJson(*torn));
}

}  // namespace gitopsd::daemon
