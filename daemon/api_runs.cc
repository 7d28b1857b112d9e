#include "daemon/api_runs.h"

#include <spdlog/spdlog.h>

#include <chrono>
#include <map>
#include <thread>

#include "daemon/flow_runs.h"
#include "daemon/runner/engine.h"
#include "daemon/runner/runs.h"

namespace gitopsd::daemon {
namespace {

using runner::RunError;

Response BadRequest(std::string message) {
  return ErrorResponse(400, "bad_request", std::move(message));
}

std::string Query(const Request& req, const std::string& key) {
  auto it = req.query.find(key);
  return it == req.query.end() ? "" : it->second;
}

bool IsTrue(const std::string& v) { return v == "true" || v == "1" || v == "yes"; }

// The optional JSON object of a POST: null when the body is empty.
std::optional<json::Value> BodyObject(const Request& req, std::string* error) {
  const bool blank = req.body.find_first_not_of(" \t\r\n") == std::string::npos;
  if (blank) return json::Value::Null();
  auto doc = json::Parse(req.body);
  if (!doc) {
    const json::LineCol at = json::LocateOffset(req.body, doc.error().offset);
    *error = "the request body is not JSON: line " + std::to_string(at.line) + ", column " +
             std::to_string(at.col) + ": " + doc.error().message;
    return std::nullopt;
  }
  if (!doc->is_object()) {
    *error = "the request body must be a JSON object";
    return std::nullopt;
  }
  return std::move(*doc);
}

// {"arguments", "name", "description", "triggers"} into RunOptions.
std::optional<std::string> ReadRunOptions(const json::Value& body, RunOptions* out) {
  if (body.is_null()) return std::nullopt;
  for (const auto& [key, value] : body.members()) {
    if (key == "arguments") {
      if (!value.is_object()) return "\"arguments\" must be an object of argument values";
      out->args = value;
    } else if (key == "triggers") {
      if (!value.is_object()) return "\"triggers\" must be an object: {\"<ref>\": {\"branch\", \"sha\"}}";
      for (const auto& [ref, t] : value.members()) {
        if (!t.is_object()) return "\"triggers\"." + ref + " must be an object: {\"branch\", \"sha\"}";
      }
      out->triggers = value;
    } else if (key == "name" || key == "description") {
      if (!value.is_string()) return "\"" + key + "\" must be a string";
      (key == "name" ? out->name : out->description) = value.as_string();
    } else {
      return "unknown member \"" + key + "\"; use arguments, triggers, name or description";
    }
  }
  return std::nullopt;
}

// "== 0.2 Build build [success]" then the node's log, newline-ended.
std::string NodeHeader(const runner::NodeRecord& n) {
  std::string line = "== " + n.path + " " + n.kind;
  if (!n.ref.empty()) line += " " + n.ref;
  line += " [" + std::string(runner::NodeStatusName(n.status)) + "]";
  if (!n.error.empty()) line += " " + n.error;
  return line + "\n";
}

// "... 0.2 JobRun migrate running for 42s" for each node still at work.
std::string ProgressLines(const runner::RunRecord& run) {
  std::string out;
  const int64_t now = runner::NowMillis();
  for (const auto& n : run.nodes) {
    if (n.status == runner::NodeStatus::kPending || runner::IsFinished(n.status) || n.kind == "Workflow") continue;
    out += "... " + n.path + " " + n.kind + (n.ref.empty() ? "" : " " + n.ref) + " " +
           runner::NodeStatusName(n.status) + " for " + std::to_string(std::max<int64_t>(0, now - n.started_at) / 1000) +
           "s\n";
  }
  return out;
}

std::string WithNewline(std::string text) {
  if (!text.empty() && text.back() != '\n') text += '\n';
  return text;
}

std::string RunFooter(const runner::RunRecord& run) {
  std::string line = "== run " + std::to_string(run.id) + " " + runner::RunStatusName(run.status);
  if (!run.error.empty()) line += ": " + run.error;
  return line + "\n";
}

}  // namespace

Response RunFailed(const RunError& e) {
  switch (e.code) {
    case RunError::Code::kInvalid: {
      std::vector<json::Value> details;
      for (const auto& d : e.details) details.push_back(Str(d));
      return ErrorResponse(422, "invalid_run", e.message, std::move(details));
    }
    case RunError::Code::kNotFound:
      return ErrorResponse(404, "not_found", e.message);
    case RunError::Code::kConflict:
      return ErrorResponse(409, "conflict", e.message);
    case RunError::Code::kInternal:
      break;
  }
  spdlog::error("runner: {}", e.message);
  return ErrorResponse(500, "internal", e.message);
}

std::optional<Response> RunRoutes::Route(const Request& req, const std::vector<std::string>& p) {
  const bool post = req.method == "POST";
  const bool get = req.method == "GET";
  const bool flow_runs = p.size() == 3 && p[2] == "runs" &&
                         (p[0] == "release-flows" || p[0] == "templates");
  const bool runs = !p.empty() && p[0] == "runs";
  if (!flow_runs && !runs) return std::nullopt;
  if (!deps_.runs) {
    return ErrorResponse(503, "unavailable", "the release runner is not running");
  }
  if (flow_runs) {
    if (!post) return MethodNotAllowed(req.method, "POST");
    return StartRun(req, p[0] == "templates" ? "Template" : "ReleaseFlow", p[1]);
  }
  if (p.size() == 1) return get ? ListRuns(req) : MethodNotAllowed(req.method, "GET");
  if (p.size() == 2) return get ? GetRun(req, p[1]) : MethodNotAllowed(req.method, "GET");
  if (p.size() == 3 && p[2] == "logs") {
    return get ? Logs(req, p[1]) : MethodNotAllowed(req.method, "GET");
  }
  if (p.size() == 3 && (p[2] == "cancel" || p[2] == "approve" || p[2] == "rollback")) {
    return post ? Act(req, p[1], p[2]) : MethodNotAllowed(req.method, "POST");
  }
  return std::nullopt;
}

Response RunRoutes::RunCreated(int64_t id) {
  auto run = deps_.runs->engine().Get(id);
  if (!run) return RunFailed(run.error());
  Response r = Json(201, runner::RunToJson(*run));
  r.headers.emplace_back("Location", "/api/v1/runs/" + std::to_string(id));
  return r;
}

Response RunRoutes::StartRun(const Request& req, const std::string& kind, const std::string& name) {
  WriteAuth auth = RequireWrite(deps_.tokens, req);
  if (auth.refused) return *auth.refused;
  std::string error;
  auto body = BodyObject(req, &error);
  if (!body) return BadRequest(error);
  RunOptions options;
  if (auto bad = ReadRunOptions(*body, &options)) return BadRequest(*bad);
  auto id = deps_.runs->Start(kind, name, options);
  if (!id) return RunFailed(id.error());
  spdlog::info("run {} of {} {} started through the API by token \"{}\"", *id, kind, name, auth.who);
  return RunCreated(*id);
}

Response RunRoutes::ListRuns(const Request& req) {
  runner::RunFilter filter;
  filter.flow_name = Query(req, "flow");
  if (std::string kind = Query(req, "kind"); !kind.empty()) {
    if (kind != "ReleaseFlow" && kind != "Template" && kind != "PreviewTemplate") {
      return BadRequest("unknown flow kind \"" + kind + "\"; use ReleaseFlow, Template or PreviewTemplate");
    }
    filter.flow_kind = kind;
  }
  const std::string statuses = Query(req, "status");
  for (size_t i = 0; i < statuses.size();) {
    size_t j = statuses.find(',', i);
    if (j == std::string::npos) j = statuses.size();
    const std::string one = statuses.substr(i, j - i);
    auto s = runner::ParseRunStatus(one);
    if (!s) {
      return BadRequest("unknown status \"" + one +
                        "\"; use pending, queued, running, approval_wait, success, failure or aborted");
    }
    filter.statuses.push_back(*s);
    i = j + 1;
  }
  if (std::string limit = Query(req, "limit"); !limit.empty()) {
    auto n = ParseId(limit);
    if (!n || *n > 1000) return BadRequest("limit must be a number from 1 to 1000");
    filter.limit = static_cast<size_t>(*n);
  }
  auto runs = deps_.runs->engine().List(filter);
  if (!runs) return RunFailed(runs.error());
  std::vector<json::Value> items;
  for (const auto& r : *runs) items.push_back(runner::RunToJson(r));
  return Json(200, json::Value::Object({{"runs", json::Value::Array(std::move(items))}}));
}

Response RunRoutes::GetRun(const Request& req, const std::string& id_text) {
  auto id = ParseId(id_text);
  if (!id) return ErrorResponse(404, "not_found", "no run " + id_text);
  auto run = deps_.runs->engine().Get(*id);
  if (!run) return RunFailed(run.error());
  return Json(200, runner::RunToJson(*run, IsTrue(Query(req, "spec"))));
}

Response RunRoutes::Act(const Request& req, const std::string& id_text, const std::string& action) {
  WriteAuth auth = RequireWrite(deps_.tokens, req);
  if (auth.refused) return *auth.refused;
  auto id = ParseId(id_text);
  if (!id) return ErrorResponse(404, "not_found", "no run " + id_text);
  runner::Engine& engine = deps_.runs->engine();
  if (action == "rollback") {
    std::string error;
    auto body = BodyObject(req, &error);
    if (!body) return BadRequest(error);
    bool restore = false;
    if (body->is_object()) {
      for (const auto& [key, value] : body->members()) {
        if (key != "restoreBackup" || !value.is_bool()) {
          return BadRequest("the body is {\"restoreBackup\": true|false}");
        }
        restore = value.as_bool();
      }
    }
    auto started = deps_.runs->Rollback(*id, restore);
    if (!started) return RunFailed(started.error());
    spdlog::info("run {}: rollback of run {} started through the API by token \"{}\"", *started,
                 *id, auth.who);
    return RunCreated(*started);
  }
  auto done = action == "cancel" ? engine.Cancel(*id) : engine.Approve(*id);
  if (!done) return RunFailed(done.error());
  spdlog::info("run {}: {} through the API by token \"{}\"", *id,
               action == "cancel" ? "cancel requested" : "approved", auth.who);
  auto run = engine.Get(*id);
  if (!run) return RunFailed(run.error());
  return Json(200, runner::RunToJson(*run));
}

Response RunRoutes::Logs(const Request& req, const std::string& id_text) {
  auto id = ParseId(id_text);
  if (!id) return ErrorResponse(404, "not_found", "no run " + id_text);
  auto run = deps_.runs->engine().Get(*id);
  if (!run) return RunFailed(run.error());
  Response r;
  r.content_type = "text/plain; charset=utf-8";
  if (IsTrue(Query(req, "follow"))) {
    const int64_t run_id = *id;
    r.stream = [this, run_id](const StreamWriter& write) { FollowLogs(run_id, write); };
    return r;
  }
  for (const auto& n : run->nodes) r.body += NodeHeader(n) + WithNewline(n.log);
  if (runner::IsFinished(run->status)) r.body += RunFooter(*run);
  return r;
}

// Sends what each node logged since the last look, a node's header when
// its status changes or the output switches to it, and complete lines only
// while a node runs, until the run concludes. A node's log keeps its newest
// RunStore::kMaxLogBytes: output trimmed away between two looks is lost.
void RunRoutes::FollowLogs(int64_t id, const StreamWriter& write) {
  std::map<std::string, size_t> sent;                  // node path -> bytes of its log sent
  std::map<std::string, runner::NodeStatus> shown;    // node path -> status in its last header
  std::string current;                                // the node whose output was sent last
  auto last_write = std::chrono::steady_clock::now();
  while (!stopping_) {
    auto run = deps_.runs->engine().Get(id);
    if (!run) return;
    std::string out;
    for (const auto& n : run->nodes) {
      size_t& done = sent[n.path];
      if (n.log.size() < done) done = 0;
      const bool finished = runner::IsFinished(n.status);
      size_t upto = n.log.size();
      if (!finished) {
        const size_t nl = n.log.rfind('\n');
        upto = nl == std::string::npos || nl + 1 < done ? done : nl + 1;
      }
      const bool news = upto > done;
      auto it = shown.find(n.path);
      const bool changed =
          n.status != runner::NodeStatus::kPending && (it == shown.end() || it->second != n.status);
      if (changed || (news && current != n.path)) {
        out += NodeHeader(n);
        current = n.path;
        shown[n.path] = n.status;
      }
      if (news) {
        out += n.log.substr(done, upto - done);
        done = upto;
        if (out.back() != '\n') out += '\n';
      }
    }
    const bool concluded = runner::IsFinished(run->status);
    if (concluded) out += RunFooter(*run);
    const auto now = std::chrono::steady_clock::now();
    if (out.empty() && now - last_write >= options_.follow_progress) out = ProgressLines(*run);
    if (!out.empty()) last_write = now;
    if (!out.empty() && !write(out)) return;
    if (concluded) return;
    std::this_thread::sleep_for(options_.follow_interval);
  }
}

}  // namespace gitopsd::daemon
