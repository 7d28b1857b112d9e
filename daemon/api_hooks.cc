#include "daemon/api_hooks.h"

#include <spdlog/spdlog.h>

#include "daemon/api_runs.h"
#include "daemon/api_previews.h"
#include "daemon/flow_runs.h"
#include "daemon/previews/preview_manager.h"
#include "daemon/runner/engine.h"
#include "daemon/triggers/forge.h"
#include "daemon/triggers/trigger_store.h"
#include "sync/store.h"

namespace gitopsd::daemon {
namespace {

using triggers::FlowKey;

// The flow kind a path segment names.
std::optional<std::string> KindOfSegment(const std::string& segment) {
  if (segment == "release-flows") return "ReleaseFlow";
  if (segment == "preview-templates") return "PreviewTemplate";
  return std::nullopt;
}

std::string SegmentOfKind(const std::string& kind) {
  return kind == "PreviewTemplate" ? "preview-templates" : "release-flows";
}

bool Paused(const json::Value& body) {
  auto flag = [](const json::Value* v) { return v && v->is_bool() && v->as_bool(); };
  const json::Value* options = body.Find("options");
  return flag(body.Find("paused")) || (options && options->is_object() && flag(options->Find("paused")));
}

// The flow's git trigger named `ref`, or nullptr.
const json::Value* TriggerNamed(const json::Value& body, const std::string& ref) {
  const json::Value* list = body.Find("triggers");
  if (!list || !list->is_array()) return nullptr;
  for (const json::Value& t : list->items()) {
    const json::Value* r = t.is_object() ? t.Find("ref") : nullptr;
    if (r && r->is_string() && r->as_string() == ref) return &t;
  }
  return nullptr;
}

std::string TextOf(const json::Value& v, const std::string& key) {
  const json::Value* found = v.is_object() ? v.Find(key) : nullptr;
  return found && found->is_string() ? found->as_string() : "";
}

// Splits the query into trigger values, labels and arguments; an error
// names a parameter that addresses an unknown trigger or field.
std::optional<std::string> ReadHookQuery(const Request& req, const json::Value& body, RunOptions* out) {
  out->args = json::Value::Object();
  out->triggers = json::Value::Object();
  for (const auto& [key, value] : req.query) {
    if (key == "name") {
      out->name = value;
      continue;
    }
    if (key == "description") {
      out->description = value;
      continue;
    }
    const size_t dot = key.rfind('.');
    const std::string ref = dot == std::string::npos ? "" : key.substr(0, dot);
    if (dot == std::string::npos || !TriggerNamed(body, ref)) {
      out->args.Set(key, json::Value::String(value));
      continue;
    }
    const std::string field = key.substr(dot + 1);
    if (field != "branch" && field != "sha" && field != "pullRequestId" && field != "repoUrl") {
      return "query parameter \"" + key + "\": a trigger's value is .branch, .sha, .pullRequestId or .repoUrl";
    }
    json::Value* values = out->triggers.Find(ref);
    if (!values) {
      out->triggers.Set(ref, json::Value::Object());
      values = out->triggers.Find(ref);
    }
    values->Set(field, json::Value::String(value));
  }
  return std::nullopt;
}

}  // namespace

std::optional<Response> HookRoutes::RouteHooks(const Request& req, const std::vector<std::string>& p) {
  if (p.empty() || p[0] != "hooks") return std::nullopt;
  if (p.size() == 2 && (p[1] == "github" || p[1] == "gitlab" || p[1] == "gitea")) {
    if (req.method != "POST") return MethodNotAllowed(req.method, "POST");
    return ForgeHookRequest(req, p[1]);
  }
  if (p.size() == 3 && (p[1] == "release-flows" || p[1] == "previews")) {
    if (req.method != "GET" && req.method != "POST") return MethodNotAllowed(req.method, "GET, POST");
    return p[1] == "previews" ? PreviewHook(req, p[2]) : FlowHook(req, p[2]);
  }
  return std::nullopt;
}

std::optional<Response> HookRoutes::RouteTokens(const Request& req, const std::vector<std::string>& p) {
  if (p.empty() || p[0] != "webhooks") return std::nullopt;
  if (!deps_.triggers) return ErrorResponse(503, "unavailable", "webhook triggers are not running");
  if (p.size() == 1) return req.method == "GET" ? ListTokens() : MethodNotAllowed(req.method, "GET");
  if (p.size() != 3) return std::nullopt;
  auto kind = KindOfSegment(p[1]);
  if (!kind) {
    return ErrorResponse(404, "not_found", "webhooks belong to release-flows or preview-templates, not " + p[1]);
  }
  if (req.method == "POST") return RotateToken(req, *kind, p[2]);
  if (req.method == "DELETE") return RemoveToken(req, *kind, p[2]);
  return MethodNotAllowed(req.method, "POST, DELETE");
}

Response HookRoutes::FlowHook(const Request& req, const std::string& token) {
  if (!deps_.triggers || !deps_.runs) return ErrorResponse(503, "unavailable", "webhook triggers are not running");
  auto flow = deps_.triggers->FlowOfToken(token);
  if (!flow) return ErrorResponse(500, "internal", flow.error().message);
  auto note = [&](const char* result) {
    if (deps_.on_delivery) deps_.on_delivery("generic", result);
  };
  if (!*flow || (*flow)->kind != "ReleaseFlow") {
    note("refused");
    return ErrorResponse(404, "not_found", "no release flow has this webhook token");
  }
  const FlowKey& key = **flow;
  auto object = deps_.store->GetObject(key.kind, key.name);
  if (!object) return ErrorResponse(500, "internal", object.error().message);
  if (!*object) {
    return ErrorResponse(404, "not_found", key.kind + " \"" + key.name + "\" no longer exists");
  }
  auto body = json::Parse((*object)->body);
  if (!body || !body->is_object()) return ErrorResponse(500, "internal", "the stored flow is not a JSON object");
  if (Paused(*body)) {
    note("ignored");
    spdlog::info("webhook of {} \"{}\": triggers are paused, nothing started", key.kind, key.name);
    return Json(202, json::Value::Object({{"message", Str("the triggers of " + key.kind + " \"" + key.name +
                                                          "\" are paused: nothing was started")}}));
  }
  RunOptions options;
  if (auto bad = ReadHookQuery(req, *body, &options)) return ErrorResponse(400, "bad_request", *bad);
  if (auto bad = CheckTriggerValues(*body, options.triggers)) {
    note("invalid");
    return ErrorResponse(422, "invalid_run", *bad);
  }
  auto id = deps_.runs->Start(key.kind, key.name, options);
  if (!id) {
    note("invalid");
    return RunFailed(id.error());
  }
  note("accepted");
  spdlog::info("run {} of {} \"{}\" started by its webhook", *id, key.kind, key.name);
  auto run = deps_.runs->engine().Get(*id);
  if (!run) return RunFailed(run.error());
  Response r = Json(201, runner::RunToJson(*run));
  r.headers.emplace_back("Location", "/api/v1/runs/" + std::to_string(*id));
  return r;
}

std::optional<std::string> HookRoutes::CheckTriggerValues(const json::Value& body, json::Value& triggers) {
  for (auto& [ref, values] : triggers.members()) {
    const json::Value* trigger = TriggerNamed(body, ref);
    std::string repository = TextOf(*trigger, "repository");
    if (repository.empty()) repository = TextOf(*trigger, "repoUrl");
    const std::string sha = TextOf(values, "sha"), branch = TextOf(values, "branch");
    if (!sha.empty() && deps_.verify_commit) {
      if (auto s = deps_.verify_commit(repository, branch, sha); !s) return ref + ".sha: " + s.error().message;
    } else if (sha.empty() && !branch.empty() && deps_.head_of) {
      auto head = deps_.head_of(repository, branch);
      if (!head) return ref + ".branch: " + head.error().message;
      values.Set("sha", json::Value::String(*head));
    }
  }
  return std::nullopt;
}

Response HookRoutes::PreviewHook(const Request& req, const std::string& token) {
  if (!deps_.triggers || !deps_.previews) return ErrorResponse(503, "unavailable", "previews are not running");
  auto note = [&](const char* result) {
    if (deps_.on_delivery) deps_.on_delivery("generic", result);
  };
  auto flow = deps_.triggers->FlowOfToken(token);
  if (!flow) return ErrorResponse(500, "internal", flow.error().message);
  if (!*flow || (*flow)->kind != "PreviewTemplate") {
    note("refused");
    return ErrorResponse(404, "not_found", "no preview template has this webhook token");
  }
  const FlowKey& key = **flow;
  auto object = deps_.store->GetObject(key.kind, key.name);
  if (!object) return ErrorResponse(500, "internal", object.error().message);
  if (!*object) return ErrorResponse(404, "not_found", key.kind + " \"" + key.name + "\" no longer exists");
  auto body = json::Parse((*object)->body);
  if (!body || !body->is_object()) return ErrorResponse(500, "internal", "the stored template is not a JSON object");
  if (Paused(*body)) {
    note("ignored");
    return Json(202, json::Value::Object({{"message", Str("the triggers of " + key.kind + " \"" + key.name +
                                                          "\" are paused: nothing was started")}}));
  }
  RunOptions options;
  if (auto bad = ReadHookQuery(req, *body, &options)) return ErrorResponse(400, "bad_request", *bad);
  ManualRequest request;
  request.template_name = key.name;
  request.name = options.name;
  request.args = options.args;
  if (auto bad = CheckTriggerValues(*body, options.triggers)) {
    note("invalid");
    return ErrorResponse(422, "invalid_run", *bad);
  }
  for (const auto& [ref, values] : options.triggers.members()) {
    request.trigger = ref;
    request.values = values;
  }
  auto made = deps_.previews->Manual(request);
  if (!made) {
    note("invalid");
    return ErrorResponse(409, "conflict", made.error().message);
  }
  note("accepted");
  spdlog::info("preview {} of {} \"{}\" {} by its webhook (run {})", made->preview.name, key.kind, key.name,
               made->created ? "created" : "re-run", made->run);
  return Json(201, json::Value::Object({{"preview", PreviewToJson(made->preview)},
                                        {"run", Int(made->run)},
                                        {"created", Bool(made->created)}}));
}

Response HookRoutes::ForgeHookRequest(const Request& req, const std::string& forge_name) {
  auto forge = triggers::ForgeFromName(forge_name);
  if (!forge) return ErrorResponse(404, "not_found", forge.error().message);
  triggers::Headers headers;
  for (const auto& [name, value] : req.headers) headers.Add(name, value);
  auto note = [&](const char* result) {
    if (deps_.on_delivery) deps_.on_delivery(forge_name, result);
  };
  auto event = triggers::ParseDelivery(*forge, headers, req.body);
  if (!event) {
    note("invalid");
    spdlog::warn("{} webhook: the payload does not parse: {}", forge_name, event.error().message);
    return ErrorResponse(400, "bad_request", event.error().message);
  }
  // The payload names the repository; only its configured secret may vouch
  // for it. Until one verifies, nothing of the payload is acted upon.
  const ForgeHook* verified = nullptr;
  bool named = false;
  const std::vector<ForgeHook> hooks = deps_.forge_hooks ? deps_.forge_hooks() : std::vector<ForgeHook>{};
  for (const ForgeHook& hook : hooks) {
    if (hook.forge != forge_name || !triggers::NamesRepository(*event, hook.url)) continue;
    named = true;
    if (triggers::VerifyDelivery(*forge, headers, req.body, hook.secret)) {
      verified = &hook;
      break;
    }
  }
  if (!verified) {
    note("refused");
    spdlog::warn("{} webhook {} refused: {}", forge_name, event->delivery_id,
                 named ? "the signature does not verify with the repository's secret"
                       : "it names no repository configured for " + forge_name + " webhooks");
    return ErrorResponse(401, "unauthorized", "the webhook's signature does not verify");
  }
  const std::string& repository = verified->repository;
  if (!event->delivery_id.empty() && deps_.triggers) {
    auto first = deps_.triggers->FirstDelivery(forge_name, event->delivery_id);
    if (!first) return ErrorResponse(500, "internal", first.error().message);
    if (!*first) {
      note("replayed");
      spdlog::info("{} webhook {} for {}: a replayed delivery, ignored", forge_name, event->delivery_id, repository);
      return Json(200, json::Value::Object({{"ignored", Str("delivery " + event->delivery_id + " was handled before")}}));
    }
  }
  using Kind = triggers::ForgeEvent::Kind;
  using Action = triggers::ForgeEvent::PrAction;
  if (event->kind == Kind::kPing || event->kind == Kind::kIgnored) {
    note("ignored");
    spdlog::info("{} webhook {} for {}: {}", forge_name, event->delivery_id, repository,
                 event->kind == Kind::kPing ? "ping" : "ignored: " + event->ignored_reason);
    return Json(200, json::Value::Object({{"repository", Str(repository)},
                                          {"event", Str(triggers::KindName(event->kind))}}));
  }
  if (event->kind == Kind::kPullRequest && deps_.pull_request) {
    const bool closed = event->action == Action::kClosed || event->action == Action::kMerged;
    const std::string number = std::to_string(event->number);
    deps_.pull_request(repository, number, event->source_branch, event->draft, !closed,
                       closed ? std::string("pull request #") + number + " was " +
                                    (event->action == Action::kMerged ? "merged" : "closed")
                              : "");
  }
  if (deps_.look) deps_.look(repository);
  note("accepted");
  spdlog::info("{} webhook {} for {}: {} {}; looking at the repository", forge_name, event->delivery_id, repository,
               triggers::KindName(event->kind),
               event->kind == Kind::kPush ? event->branch : "#" + std::to_string(event->number) + " " +
                                                                event->action_name);
  return Json(202, json::Value::Object({{"repository", Str(repository)},
                                        {"event", Str(triggers::KindName(event->kind))}}));
}

Response HookRoutes::RotateToken(const Request& req, const std::string& kind, const std::string& name) {
  WriteAuth auth = RequireWrite(deps_.tokens, req);
  if (auth.refused) return *auth.refused;
  auto object = deps_.store->GetObject(kind, name);
  if (!object) return ErrorResponse(500, "internal", object.error().message);
  if (!*object) return ErrorResponse(404, "not_found", kind + " \"" + name + "\" does not exist");
  auto token = deps_.triggers->RotateToken(FlowKey{kind, name});
  if (!token) return ErrorResponse(500, "internal", token.error().message);
  spdlog::info("webhook token of {} \"{}\" created by token \"{}\"", kind, name, auth.who);
  return Json(201, json::Value::Object({{"kind", Str(kind)},
                                        {"name", Str(name)},
                                        {"token", Str(*token)},
                                        {"path", Str("/hooks/" + SegmentOfKind(kind) + "/" + *token)}}));
}

Response HookRoutes::RemoveToken(const Request& req, const std::string& kind, const std::string& name) {
  WriteAuth auth = RequireWrite(deps_.tokens, req);
  if (auth.refused) return *auth.refused;
  if (auto s = deps_.triggers->RemoveToken(FlowKey{kind, name}); !s) {
    return ErrorResponse(500, "internal", s.error().message);
  }
  spdlog::info("webhook token of {} \"{}\" removed by token \"{}\"", kind, name, auth.who);
  Response r;
  r.status = 204;
  return r;
}

Response HookRoutes::ListTokens() {
  auto tokens = deps_.triggers->Tokens();
  if (!tokens) return ErrorResponse(500, "internal", tokens.error().message);
  json::Value list = json::Value::Array();
  for (const triggers::WebhookToken& t : *tokens) {
    list.items().push_back(json::Value::Object({{"kind", Str(t.flow.kind)},
                                                {"name", Str(t.flow.name)},
                                                {"createdAt", Str(IsoTime(t.created_at))},
                                                {"lastUsedAt", StrOrNull(IsoTime(t.last_used_at))}}));
  }
  return Json(200, json::Value::Object({{"webhooks", std::move(list)}}));
}

}  // namespace gitopsd::daemon
