#include "daemon/api_write.h"

#include <spdlog/spdlog.h>

#include <chrono>
#include <thread>

#include "daemon/poller.h"
#include "sync/model.h"
#include "sync/store.h"
#include "sync/writeback.h"

namespace gitopsd::daemon {
namespace {

Response StoreFailed(const Error& e) {
  spdlog::error("store: {}", e.message);
  return ErrorResponse(500, "internal", "the state database failed: " + e.message);
}

bool Finished(const std::string& state) {
  return state == "pushed" || state == "conflict" || state == "superseded";
}

std::string Href(int64_t edit_id) { return "/api/v1/writebacks/" + std::to_string(edit_id); }

// A stored JSON text as a JSON value: null when empty, the text itself as a
// string if it does not parse (it always should).
json::Value JsonOrNull(const std::string& text) {
  if (text.empty()) return json::Value::Null();
  auto v = json::Parse(text);
  return v ? std::move(*v) : Str(text);
}

json::Value EditJson(const store::EditRecord& e) {
  return json::Value::Object({{"id", Int(e.id)},
                              {"repository", Str(e.repository)},
                              {"kind", Str(e.kind)},
                              {"name", Str(e.name)},
                              {"op", Str(e.op)},
                              {"status", Str(e.state)},
                              {"commit", StrOrNull(e.commit_id)},
                              {"attempts", Int(e.attempts)},
                              {"lastError", StrOrNull(e.last_error)},
                              {"createdAt", StrOrNull(IsoTime(e.created_at_ms))},
                              {"updatedAt", StrOrNull(IsoTime(e.updated_at_ms))}});
}

json::Value ConflictJson(const store::ConflictRecord& c) {
  json::Value pointers = JsonOrNull(c.pointers);
  if (!pointers.is_array()) pointers = json::Value::Array();
  return json::Value::Object({{"id", Int(c.id)},
                              {"repository", Str(c.repository)},
                              {"kind", Str(c.kind)},
                              {"name", Str(c.name)},
                              {"path", Str(c.path)},
                              {"policy", Str(c.policy)},
                              {"inForce", Str(c.in_force)},
                              {"pointers", std::move(pointers)},
                              {"base", JsonOrNull(c.base_body)},
                              {"git", JsonOrNull(c.git_body)},
                              {"api", JsonOrNull(c.api_body)},
                              {"createdAt", StrOrNull(IsoTime(c.created_at_ms))},
                              {"resolvedAt", StrOrNull(IsoTime(c.resolved_at_ms))},
                              {"resolution", StrOrNull(c.resolution)}});
}

Response UnsupportedMediaType(const std::string& got) {
  return ErrorResponse(415, "unsupported_media_type",
                       "send the object as \"Content-Type: application/json\"" +
                           (got.empty() ? std::string(" (no Content-Type was given)")
                                        : " (got \"" + got + "\")"));
}

}  // namespace

Response WriteRoutes::EditFailed(const sync::EditError& error) {
  using sync::EditErrorCode;
  switch (error.code) {
    case EditErrorCode::kInvalid: {
      std::vector<json::Value> details;
      for (const auto& d : error.diagnostics) {
        details.push_back(json::Value::Object({{"path", Str(d.path)},
                                               {"line", Int(d.line)},
                                               {"column", Int(d.col)},
                                               {"message", Str(d.message)},
                                               {"rule", Str(d.rule)}}));
      }
      std::string message = error.message;
      if (!error.diagnostics.empty()) message = error.diagnostics.front().ToString();
      return ErrorResponse(422, "invalid_object", message, std::move(details));
    }
    case EditErrorCode::kNameMismatch:
      return ErrorResponse(400, "name_mismatch", error.message);
    case EditErrorCode::kPrecondition:
      return ErrorResponse(412, "precondition_failed", error.message);
    case EditErrorCode::kNotFound:
      return ErrorResponse(404, "not_found", error.message);
    case EditErrorCode::kNotWritable:
      return ErrorResponse(409, "not_writable", error.message);
    case EditErrorCode::kResolved:
      return ErrorResponse(409, "already_resolved", error.message);
    case EditErrorCode::kInternal:
      break;
  }
  spdlog::error("write-back: {}", error.message);
  return ErrorResponse(500, "internal", error.message);
}

std::optional<Response> WriteRoutes::Precheck(const Request& req, const std::string& kind_text,
                                              bool needs_body, std::string* who,
                                              std::string* kind,
                                              std::optional<int64_t>* if_match) {
  WriteAuth auth = RequireWrite(deps_.tokens, req);
  if (auth.refused) return auth.refused;
  *who = auth.who;
  auto parsed = model::ParseKind(kind_text);
  if (!parsed) {
    return ErrorResponse(404, "unknown_kind",
                         "unknown kind \"" + kind_text +
                             "\"; use templates, release-flows or previews");
  }
  *kind = model::KindName(*parsed);
  if (needs_body && !IsJsonContentType(req.content_type)) {
    return UnsupportedMediaType(req.content_type);
  }
  bool ok = true;
  *if_match = ParseIfMatch(req.if_match, &ok);
  if (!ok) {
    return ErrorResponse(400, "bad_if_match",
                         "If-Match must be the object's revision as its ETag gives it, e.g. "
                         "If-Match: \"3\" (got " + req.if_match + ")");
  }
  return std::nullopt;
}

std::optional<Response> WriteRoutes::PickTarget(const Request& req, const std::string& kind,
                                                const std::string& name, bool must_exist,
                                                Target* target) {
  auto object = deps_.store->GetObject(kind, name);
  if (!object) return StoreFailed(object.error());
  std::string wanted;
  if (auto it = req.query.find("repository"); it != req.query.end()) wanted = it->second;
  const std::string what = kind + "/" + name;
  if (*object) {
    const std::string& owner = (*object)->repository;
    if (!wanted.empty() && wanted != owner) {
      return ErrorResponse(409, "not_writable",
                           what + " comes from repository \"" + owner +
                               "\"; it cannot be written to \"" + wanted + "\"");
    }
    target->repository = owner;
  } else if (must_exist) {
    return ErrorResponse(404, "not_found", kind + " \"" + name + "\" does not exist");
  } else if (!wanted.empty()) {
    if (!deps_.poller->Has(wanted)) {
      return ErrorResponse(404, "not_found", "no repository named \"" + wanted + "\" is configured");
    }
    target->repository = wanted;
  } else {
    const std::vector<std::string> names = deps_.poller->WriteBackNames();
    if (names.empty()) {
      return ErrorResponse(409, "not_writable",
                           "no repository has \"sync\": {\"writeBack\": true}: objects can only be "
                           "changed in Git");
    }
    target->repository = names.front();
  }
  target->writeback = deps_.poller->WriteBackFor(target->repository);
  if (!target->writeback) {
    return ErrorResponse(409, "not_writable",
                         "repository \"" + target->repository +
                             "\" has write-back off (\"sync\": {\"writeBack\": false}); change " +
                             what + " in Git instead");
  }
  return std::nullopt;
}

Response WriteRoutes::PutObject(const Request& req, const std::string& kind_text,
                                const std::string& name) {
  std::string who, kind;
  std::optional<int64_t> if_match;
  if (auto refused = Precheck(req, kind_text, true, &who, &kind, &if_match)) return *refused;
  Target target;
  if (auto refused = PickTarget(req, kind, name, false, &target)) return *refused;
  sync::EditRequest edit{kind, name, req.body, if_match, who};
  auto receipt = target.writeback->Submit(edit);
  if (!receipt) return EditFailed(receipt.error());
  return Accepted("PUT", who, kind, name, target.repository, *receipt);
}

Response WriteRoutes::DeleteObject(const Request& req, const std::string& kind_text,
                                   const std::string& name) {
  std::string who, kind;
  std::optional<int64_t> if_match;
  if (auto refused = Precheck(req, kind_text, false, &who, &kind, &if_match)) return *refused;
  Target target;
  if (auto refused = PickTarget(req, kind, name, true, &target)) return *refused;
  sync::EditRequest edit{kind, name, std::nullopt, if_match, who};
  auto receipt = target.writeback->Submit(edit);
  if (!receipt) return EditFailed(receipt.error());
  return Accepted("DELETE", who, kind, name, target.repository, *receipt);
}

std::optional<store::EditRecord> WriteRoutes::WaitForPush(int64_t edit_id) {
  const auto deadline = std::chrono::steady_clock::now() + options_.writeback_wait;
  std::optional<store::EditRecord> last;
  while (true) {
    if (auto edit = deps_.store->GetEdit(edit_id); edit && *edit) {
      last = std::move(**edit);
      if (Finished(last->state)) return last;
    }
    if (std::chrono::steady_clock::now() >= deadline || stopping_.load()) return last;
    std::this_thread::sleep_for(std::chrono::milliseconds(15));
  }
}

Response WriteRoutes::Accepted(const std::string& op, const std::string& who,
                               const std::string& kind, const std::string& name,
                               const std::string& repository, const sync::EditReceipt& receipt) {
  std::vector<json::Member> body{{"kind", Str(kind)}, {"name", Str(name)},
                                 {"revision", Int(receipt.revision)}};
  std::vector<std::pair<std::string, std::string>> headers;
  if (receipt.revision > 0) {
    headers.emplace_back("ETag", "\"" + std::to_string(receipt.revision) + "\"");
  }
  if (receipt.edit_id == 0) {  // the object already is what was asked for
    spdlog::info("{} {}/{} by token \"{}\": no change (revision {})", op, kind, name, who,
                 receipt.revision);
    body.emplace_back("writeBack", json::Value::Null());
    Response r = Json(200, json::Value::Object(std::move(body)));
    r.headers = std::move(headers);
    return r;
  }
  spdlog::info("edit {}: {} {}/{} by token \"{}\" (revision {})", receipt.edit_id, op, kind, name,
               who, receipt.revision);
  deps_.poller->RequestWriteBack(repository);
  deps_.poller->RefreshWriteBackGauges();
  const std::optional<store::EditRecord> edit = WaitForPush(receipt.edit_id);
  int status = 202;
  std::vector<json::Member> wb{{"id", Int(receipt.edit_id)}};
  if (edit && edit->state == "pushed") {
    status = receipt.created ? 201 : 200;
    wb.emplace_back("status", Str("pushed"));
    wb.emplace_back("commit", Str(edit->commit_id));
    if (receipt.created) {
      headers.emplace_back("Location", "/api/v1/objects/" +
                                           std::string(model::KindFolder(*model::ParseKind(kind))) +
                                           "/" + name);
    }
  } else {
    wb.emplace_back("status", Str(edit ? edit->state : "pending"));
    wb.emplace_back("href", Str(Href(receipt.edit_id)));
    if (edit && !edit->last_error.empty()) wb.emplace_back("lastError", Str(edit->last_error));
    headers.emplace_back("Location", Href(receipt.edit_id));
  }
  body.emplace_back("writeBack", json::Value::Object(std::move(wb)));
  Response r = Json(status, json::Value::Object(std::move(body)));
  r.headers = std::move(headers);
  return r;
}

Response WriteRoutes::GetWriteBack(const std::string& id_text) {
  auto id = ParseId(id_text);
  if (!id) return ErrorResponse(404, "not_found", "no write-back with id \"" + id_text + "\"");
  auto edit = deps_.store->GetEdit(*id);
  if (!edit) return StoreFailed(edit.error());
  if (!*edit) return ErrorResponse(404, "not_found", "no write-back with id " + id_text);
  return Json(200, EditJson(**edit));
}

Response WriteRoutes::ListConflicts(const Request& req) {
  bool all = false;
  if (auto it = req.query.find("all"); it != req.query.end()) {
    all = it->second == "true" || it->second == "1" || it->second.empty();
  }
  auto conflicts = deps_.store->ListConflicts(!all);
  if (!conflicts) return StoreFailed(conflicts.error());
  std::vector<json::Value> items;
  for (const auto& c : *conflicts) items.push_back(ConflictJson(c));
  return Json(200, json::Value::Object({{"conflicts", json::Value::Array(std::move(items))}}));
}

Response WriteRoutes::ResolveConflict(const Request& req, const std::string& id_text) {
  WriteAuth auth = RequireWrite(deps_.tokens, req);
  if (auth.refused) return *auth.refused;
  auto id = ParseId(id_text);
  if (!id) return ErrorResponse(404, "not_found", "no conflict with id \"" + id_text + "\"");
  auto conflict = deps_.store->GetConflict(*id);
  if (!conflict) return StoreFailed(conflict.error());
  if (!*conflict) return ErrorResponse(404, "not_found", "no conflict with id " + id_text);
  const store::ConflictRecord& c = **conflict;
  if (!IsJsonContentType(req.content_type)) return UnsupportedMediaType(req.content_type);

  constexpr const char* kShape =
      "send {\"take\": \"git\"} or {\"take\": \"api\"}, or {\"body\": {...the object...}}";
  auto doc = json::Parse(req.body);
  if (!doc) {
    const json::LineCol at = json::LocateOffset(req.body, doc.error().offset);
    return ErrorResponse(400, "bad_request",
                         "the body is not JSON (line " + std::to_string(at.line) + ", column " +
                             std::to_string(at.col) + ": " + doc.error().message + "); " + kShape);
  }
  const json::Value* take = doc->Find("take");
  const json::Value* object = doc->Find("body");
  if (!doc->is_object() || (take == nullptr) == (object == nullptr) ||
      (take && (!take->is_string() || (take->as_string() != "git" && take->as_string() != "api"))) ||
      (object && !object->is_object())) {
    return ErrorResponse(400, "bad_request", kShape);
  }
  if (c.resolved_at_ms > 0) {
    return ErrorResponse(409, "already_resolved",
                         "conflict " + id_text + " was resolved already (" + c.resolution + ")");
  }
  sync::WriteBack* writeback = deps_.poller->WriteBackFor(c.repository);
  if (!writeback) {
    return ErrorResponse(409, "not_writable",
                         "repository \"" + c.repository + "\" has write-back off or is gone");
  }
  std::optional<std::string> body_text;
  if (object) body_text = json::Serialize(*object);
  const std::string how = take ? take->as_string() : "body";
  auto receipt = writeback->Resolve(*id, how == "body" ? "" : how, body_text, auth.who);
  if (!receipt) return EditFailed(receipt.error());
  spdlog::info("conflict {} of {}/{} resolved by token \"{}\" ({})", *id, c.kind, c.name, auth.who,
               how);
  deps_.poller->RefreshWriteBackGauges();
  return Accepted("RESOLVE", auth.who, c.kind, c.name, c.repository, *receipt);
}

}  // namespace gitopsd::daemon
