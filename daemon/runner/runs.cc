#include "daemon/runner/runs.h"

#include "daemon/runtime/module_db.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>

namespace gitopsd::runner {
namespace {

constexpr const char* kModule = "runner";

// Append only: migration i takes the runner's tables from version i to i + 1.
const std::vector<std::string>& Migrations() {
  static const std::vector<std::string> migrations = {
      R"sql(
      CREATE TABLE runner_runs (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        flow_kind TEXT NOT NULL,
        flow_name TEXT NOT NULL,
        flow_revision TEXT NOT NULL,
        body TEXT NOT NULL,
        status TEXT NOT NULL,
        kind TEXT NOT NULL,
        rollback_of INTEGER,
        name TEXT NOT NULL,
        description TEXT NOT NULL,
        args TEXT NOT NULL,
        trigger_refs TEXT NOT NULL,
        cancel_requested INTEGER NOT NULL DEFAULT 0,
        error TEXT NOT NULL DEFAULT '',
        created_at INTEGER NOT NULL,
        started_at INTEGER NOT NULL DEFAULT 0,
        ended_at INTEGER NOT NULL DEFAULT 0);
      CREATE INDEX runner_runs_by_flow ON runner_runs (flow_kind, flow_name, id);
      CREATE INDEX runner_runs_by_status ON runner_runs (status, id);
      CREATE TABLE runner_nodes (
        run_id INTEGER NOT NULL REFERENCES runner_runs (id) ON DELETE CASCADE,
        path TEXT NOT NULL,
        kind TEXT NOT NULL,
        ref TEXT NOT NULL,
        status TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        max_attempts INTEGER NOT NULL DEFAULT 0,
        started_at INTEGER NOT NULL DEFAULT 0,
        ended_at INTEGER NOT NULL DEFAULT 0,
        spec TEXT,
        data TEXT,
        error TEXT NOT NULL DEFAULT '',
        log TEXT NOT NULL DEFAULT '',
        PRIMARY KEY (run_id, path));
      )sql",
      // Runs started for an outside event (a trigger) carry its key: the
      // same key never makes two runs.
      R"sql(
      ALTER TABLE runner_runs ADD COLUMN idempotency_key TEXT;
      CREATE UNIQUE INDEX runner_runs_by_key ON runner_runs (idempotency_key) WHERE idempotency_key IS NOT NULL;
      )sql",
  };
  return migrations;
}

const char* RunKindName(RunKind k) { return k == RunKind::kRollback ? "rollback" : "release"; }

std::string JsonText(const json::Value& v) { return json::SerializeCompact(v); }

json::Value ParseStored(const std::string& text) {
  if (text.empty()) return json::Value();
  json::ParseOptions options;
  options.max_bytes = 64 << 20;
  options.max_depth = 256;
  auto v = json::Parse(text, options);
  return v ? std::move(*v) : json::Value::String(text);
}

json::Value TimeJson(int64_t ms) {
  if (ms == 0) return json::Value();
  std::time_t secs = static_cast<std::time_t>(ms / 1000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[96];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
                tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, static_cast<int>(ms % 1000));
  return json::Value::String(buf);
}

json::Value NodeToJson(const NodeRecord& n) {
  json::Value out = json::Value::Object();
  out.Set("path", json::Value::String(n.path));
  out.Set("kind", json::Value::String(n.kind));
  out.Set("ref", n.ref.empty() ? json::Value() : json::Value::String(n.ref));
  out.Set("status", json::Value::String(NodeStatusName(n.status)));
  out.Set("attempts", json::Value::Number(n.attempts));
  out.Set("maxAttempts", json::Value::Number(n.max_attempts));
  out.Set("startedAt", TimeJson(n.started_at));
  out.Set("endedAt", TimeJson(n.ended_at));
  out.Set("data", n.data);
  out.Set("error", n.error.empty() ? json::Value() : json::Value::String(n.error));
  out.Set("log", json::Value::String(n.log));
  return out;
}

constexpr const char* kRunColumns =
    "id, flow_kind, flow_name, flow_revision, body, status, kind, rollback_of, name, description, args, "
    "trigger_refs, cancel_requested, error, created_at, started_at, ended_at";

RunRecord ReadRun(const sqlite::Statement& st) {
  RunRecord r;
  r.id = st.Int(0);
  r.flow_kind = st.Text(1);
  r.flow_name = st.Text(2);
  r.flow_revision = st.Text(3);
  r.body = ParseStored(st.Text(4));
  r.status = ParseRunStatus(st.Text(5)).value_or(RunStatus::kFailure);
  r.kind = st.Text(6) == "rollback" ? RunKind::kRollback : RunKind::kRelease;
  if (!st.IsNull(7)) r.rollback_of = st.Int(7);
  r.name = st.Text(8);
  r.description = st.Text(9);
  r.args = ParseStored(st.Text(10));
  r.trigger_refs = ParseStored(st.Text(11));
  r.cancel_requested = st.Int(12) != 0;
  r.error = st.Text(13);
  r.created_at = st.Int(14);
  r.started_at = st.Int(15);
  r.ended_at = st.Int(16);
  return r;
}

// A row of "SELECT path, kind, ref, status, attempts, max_attempts,
// started_at, ended_at, spec, data, error, log FROM runner_nodes".
NodeRecord ReadNode(const sqlite::Statement& st) {
  NodeRecord n;
  n.path = st.Text(0);
  n.kind = st.Text(1);
  n.ref = st.Text(2);
  n.status = ParseNodeStatus(st.Text(3)).value_or(NodeStatus::kFailure);
  n.attempts = static_cast<int>(st.Int(4));
  n.max_attempts = static_cast<int>(st.Int(5));
  n.started_at = st.Int(6);
  n.ended_at = st.Int(7);
  if (!st.IsNull(8)) n.spec = ParseStored(st.Text(8));
  if (!st.IsNull(9)) n.data = ParseStored(st.Text(9));
  n.error = st.Text(10);
  n.log = st.Text(11);
  return n;
}

std::string Placeholders(size_t n, int first) {
  std::string out;
  for (size_t i = 0; i < n; ++i) out += (i ? ", ?" : "?") + std::to_string(first + static_cast<int>(i));
  return out;
}

}  // namespace

int64_t NowMillis() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

const char* RunStatusName(RunStatus s) {
  switch (s) {
    case RunStatus::kPending: return "pending";
    case RunStatus::kQueued: return "queued";
    case RunStatus::kRunning: return "running";
    case RunStatus::kApprovalWait: return "approval_wait";
    case RunStatus::kSuccess: return "success";
    case RunStatus::kFailure: return "failure";
    case RunStatus::kAborted: return "aborted";
  }
  return "failure";
}

std::optional<RunStatus> ParseRunStatus(std::string_view s) {
  for (RunStatus r : {RunStatus::kPending, RunStatus::kQueued, RunStatus::kRunning, RunStatus::kApprovalWait,
                      RunStatus::kSuccess, RunStatus::kFailure, RunStatus::kAborted}) {
    if (s == RunStatusName(r)) return r;
  }
  return std::nullopt;
}

const char* NodeStatusName(NodeStatus s) {
  switch (s) {
    case NodeStatus::kPending: return "pending";
    case NodeStatus::kRunning: return "running";
    case NodeStatus::kWaiting: return "waiting";
    case NodeStatus::kRetrying: return "retrying";
    case NodeStatus::kApprovalWait: return "approval_wait";
    case NodeStatus::kSuccess: return "success";
    case NodeStatus::kFailure: return "failure";
    case NodeStatus::kSkipped: return "skipped";
    case NodeStatus::kAborted: return "aborted";
  }
  return "failure";
}

std::optional<NodeStatus> ParseNodeStatus(std::string_view s) {
  for (NodeStatus n : {NodeStatus::kPending, NodeStatus::kRunning, NodeStatus::kWaiting, NodeStatus::kRetrying,
                       NodeStatus::kApprovalWait, NodeStatus::kSuccess, NodeStatus::kFailure, NodeStatus::kSkipped,
                       NodeStatus::kAborted}) {
    if (s == NodeStatusName(n)) return n;
  }
  return std::nullopt;
}

bool IsFinished(RunStatus s) {
  return s == RunStatus::kSuccess || s == RunStatus::kFailure || s == RunStatus::kAborted;
}

bool IsFinished(NodeStatus s) {
  return s == NodeStatus::kSuccess || s == NodeStatus::kFailure || s == NodeStatus::kSkipped ||
         s == NodeStatus::kAborted;
}

namespace {

// The flow's tree with the values of every SecretGroup node's secrets
// replaced by "***" (a Template may hold literal secrets; answers never do).
void MaskSecrets(json::Value& v) {
  if (v.is_array()) {
    for (json::Value& item : v.items()) MaskSecrets(item);
    return;
  }
  if (!v.is_object()) return;
  const json::Value* kind = v.Find("kind");
  json::Value* spec = v.Find("spec");
  if (kind && kind->is_string() && kind->as_string() == "SecretGroup" && spec && spec->is_object()) {
    if (json::Value* secrets = spec->Find("secrets"); secrets && secrets->is_object()) {
      for (auto& [section, values] : secrets->members()) {
        if (!values.is_object()) continue;
        for (auto& [key, value] : values.members()) value = json::Value::String("***");
      }
    }
  }
  for (auto& [key, member] : v.members()) MaskSecrets(member);
}

}  // namespace

json::Value RunToJson(const RunRecord& run, bool with_spec) {
  json::Value out = json::Value::Object();
  out.Set("id", json::Value::Number(static_cast<double>(run.id)));
  json::Value flow = json::Value::Object();
  flow.Set("kind", json::Value::String(run.flow_kind));
  flow.Set("name", json::Value::String(run.flow_name));
  flow.Set("revision", json::Value::String(run.flow_revision));
  out.Set("flow", std::move(flow));
  out.Set("kind", json::Value::String(RunKindName(run.kind)));
  out.Set("rollbackOf", run.rollback_of ? json::Value::Number(static_cast<double>(*run.rollback_of)) : json::Value());
  out.Set("name", json::Value::String(run.name));
  out.Set("description", json::Value::String(run.description));
  out.Set("status", json::Value::String(RunStatusName(run.status)));
  out.Set("concluded", json::Value::Bool(IsFinished(run.status)));
  out.Set("error", run.error.empty() ? json::Value() : json::Value::String(run.error));
  out.Set("args", run.args);
  out.Set("refs", run.trigger_refs);
  out.Set("createdAt", TimeJson(run.created_at));
  out.Set("startedAt", TimeJson(run.started_at));
  out.Set("endedAt", TimeJson(run.ended_at));
  if (with_spec) {
    const json::Value* spec = run.body.Find("spec");
    json::Value shown = spec ? *spec : json::Value();
    MaskSecrets(shown);
    out.Set("spec", std::move(shown));
  }
  if (!run.nodes.empty()) {
    json::Value nodes = json::Value::Array();
    for (const NodeRecord& n : run.nodes) nodes.items().push_back(NodeToJson(n));
    out.Set("nodes", std::move(nodes));
  }
  return out;
}

Result<std::unique_ptr<RunStore>> RunStore::Open(const std::string& state_db) {
  auto db = runtime::OpenModuleDatabase(state_db, kModule, Migrations());
  if (!db) return std::unexpected(db.error());
  return std::unique_ptr<RunStore>(new RunStore(std::move(*db)));
}

Result<int64_t> RunStore::Create(const RunRecord& run, const std::vector<NodeRecord>& nodes) {
  std::lock_guard lock(mu_);
  auto tx = sqlite::Transaction::Begin(db_);
  if (!tx) return std::unexpected(tx.error());
  int64_t id = 0;
  {
    auto st = db_.Cached(
        "INSERT INTO runner_runs (flow_kind, flow_name, flow_revision, body, status, kind, rollback_of, name, "
        "description, args, trigger_refs, created_at, idempotency_key) "
        "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)");
    if (!st) return std::unexpected(st.error());
    (*st)->Bind(1, run.flow_kind).Bind(2, run.flow_name).Bind(3, run.flow_revision).Bind(4, JsonText(run.body));
    (*st)->Bind(5, RunStatusName(run.status)).Bind(6, RunKindName(run.kind));
    if (run.rollback_of) (*st)->Bind(7, *run.rollback_of);
    else (*st)->BindNull(7);
    (*st)->Bind(8, run.name).Bind(9, run.description).Bind(10, JsonText(run.args));
    (*st)->Bind(11, JsonText(run.trigger_refs)).Bind(12, run.created_at ? run.created_at : NowMillis());
    if (run.idempotency_key.empty()) (*st)->BindNull(13);
    else (*st)->Bind(13, run.idempotency_key);
    if (auto s = (*st)->Run(); !s) return std::unexpected(s.error());
    id = db_.LastInsertRowId();
  }
  auto st = db_.Cached("INSERT INTO runner_nodes (run_id, path, kind, ref, status) VALUES (?1, ?2, ?3, ?4, ?5)");
  if (!st) return std::unexpected(st.error());
  for (const NodeRecord& n : nodes) {
    (*st)->Reset();
    (*st)->Bind(1, id).Bind(2, n.path).Bind(3, n.kind).Bind(4, n.ref).Bind(5, NodeStatusName(n.status));
    if (auto s = (*st)->Run(); !s) return std::unexpected(s.error());
  }
  if (auto s = tx->Commit(); !s) return std::unexpected(s.error());
  return id;
}

Result<std::optional<int64_t>> RunStore::FindByKey(const std::string& key) {
  std::lock_guard lock(mu_);
  auto st = db_.Cached("SELECT id FROM runner_runs WHERE idempotency_key = ?1");
  if (!st) return std::unexpected(st.error());
  (*st)->Bind(1, key);
  auto row = (*st)->Step();
  if (!row) return std::unexpected(row.error());
  if (!*row) return std::optional<int64_t>();
  return std::optional<int64_t>((*st)->Int(0));
}

Result<std::vector<NodeRecord>> RunStore::LoadNodes(int64_t run_id) {
  auto st = db_.Cached(
      "SELECT path, kind, ref, status, attempts, max_attempts, started_at, ended_at, spec, data, error, log "
      "FROM runner_nodes WHERE run_id = ?1");
  if (!st) return std::unexpected(st.error());
  (*st)->Bind(1, run_id);
  auto read = sqlite::ReadAll<NodeRecord>(**st, ReadNode);
  if (!read) return std::unexpected(read.error());
  std::vector<NodeRecord> nodes = std::move(*read);
  (*st)->Reset();
  // Path order: "0.10" after "0.9", which SQL's text order would not give.
  auto key = [](const std::string& path) {
    std::vector<long> parts;
    for (size_t at = 0; at <= path.size();) {
      size_t dot = path.find('.', at);
      if (dot == std::string::npos) dot = path.size();
      parts.push_back(std::strtol(path.c_str() + at, nullptr, 10));
      at = dot + 1;
    }
    return parts;
  };
  std::sort(nodes.begin(), nodes.end(), [&](const NodeRecord& a, const NodeRecord& b) { return key(a.path) < key(b.path); });
  return nodes;
}

Result<std::optional<RunRecord>> RunStore::Get(int64_t id, bool with_nodes) {
  std::lock_guard lock(mu_);
  auto st = db_.Cached(std::string("SELECT ") + kRunColumns + " FROM runner_runs WHERE id = ?1");
  if (!st) return std::unexpected(st.error());
  (*st)->Bind(1, id);
  auto row = (*st)->Step();
  if (!row) return std::unexpected(row.error());
  if (!*row) return std::optional<RunRecord>();
  RunRecord run = ReadRun(**st);
  (*st)->Reset();
  if (with_nodes) {
    auto nodes = LoadNodes(id);
    if (!nodes) return std::unexpected(nodes.error());
    run.nodes = std::move(*nodes);
  }
  return std::optional<RunRecord>(std::move(run));
}

Result<std::vector<RunRecord>> RunStore::List(const RunFilter& filter) {
  std::lock_guard lock(mu_);
  std::string sql = std::string("SELECT ") + kRunColumns + " FROM runner_runs WHERE 1";
  if (!filter.flow_kind.empty()) sql += " AND flow_kind = ?1";
  if (!filter.flow_name.empty()) sql += " AND flow_name = ?2";
  if (!filter.statuses.empty()) sql += " AND status IN (" + Placeholders(filter.statuses.size(), 4) + ")";
  sql += std::string(" ORDER BY id ") + (filter.oldest_first ? "ASC" : "DESC") + " LIMIT ?3";
  auto st = db_.Prepare(sql);
  if (!st) return std::unexpected(st.error());
  if (!filter.flow_kind.empty()) st->Bind(1, filter.flow_kind);
  if (!filter.flow_name.empty()) st->Bind(2, filter.flow_name);
  st->Bind(3, static_cast<int64_t>(filter.limit));
  for (size_t i = 0; i < filter.statuses.size(); ++i) {
    st->Bind(4 + static_cast<int>(i), RunStatusName(filter.statuses[i]));
  }
  return sqlite::ReadAll<RunRecord>(*st, ReadRun);
}

Result<std::vector<RunCount>> RunStore::Count() {
  std::lock_guard lock(mu_);
  auto st = db_.Prepare(
      "SELECT flow_kind, flow_name, status, COUNT(*) FROM runner_runs GROUP BY flow_kind, flow_name, status");
  if (!st) return std::unexpected(st.error());
  return sqlite::ReadAll<RunCount>(*st, [](const sqlite::Statement& row) {
    return RunCount{row.Text(0), row.Text(1), ParseRunStatus(row.Text(2)).value_or(RunStatus::kPending),
                    row.Int(3)};
  });
}

Status RunStore::SetRunStatus(int64_t id, RunStatus status, const std::string* error) {
  std::lock_guard lock(mu_);
  auto st = db_.Cached(
      "UPDATE runner_runs SET status = ?2, error = coalesce(?3, error), "
      "started_at = CASE WHEN ?2 IN ('running', 'approval_wait') AND started_at = 0 THEN ?4 ELSE started_at END, "
      "ended_at = CASE WHEN ?2 IN ('success', 'failure', 'aborted') THEN ?4 ELSE ended_at END "
      "WHERE id = ?1");
  if (!st) return std::unexpected(st.error());
  (*st)->Bind(1, id).Bind(2, RunStatusName(status)).Bind(4, NowMillis());
  if (error) (*st)->Bind(3, *error);
  else (*st)->BindNull(3);
  return (*st)->Run();
}

Status RunStore::RequestCancel(int64_t id) {
  std::lock_guard lock(mu_);
  auto st = db_.Cached("UPDATE runner_runs SET cancel_requested = 1 WHERE id = ?1");
  if (!st) return std::unexpected(st.error());
  return (*st)->Bind(1, id).Run();
}

Status RunStore::UpdateNode(int64_t run_id, const std::string& path, const NodeUpdate& u) {
  std::string sql = "UPDATE runner_nodes SET run_id = run_id";
  if (u.status) sql += ", status = ?3";
  if (u.attempts) sql += ", attempts = ?4";
  if (u.max_attempts) sql += ", max_attempts = ?5";
  if (u.started_at) sql += ", started_at = ?6";
  if (u.ended_at) sql += ", ended_at = ?7";
  if (u.spec) sql += ", spec = ?8";
  if (u.data) sql += ", data = ?9";
  if (u.error) sql += ", error = ?10";
  sql += " WHERE run_id = ?1 AND path = ?2";
  std::lock_guard lock(mu_);
  auto st = db_.Cached(sql);
  if (!st) return std::unexpected(st.error());
  sqlite::Statement& s = **st;
  s.Bind(1, run_id).Bind(2, path);
  if (u.status) s.Bind(3, NodeStatusName(*u.status));
  if (u.attempts) s.Bind(4, static_cast<int64_t>(*u.attempts));
  if (u.max_attempts) s.Bind(5, static_cast<int64_t>(*u.max_attempts));
  if (u.started_at) s.Bind(6, *u.started_at);
  if (u.ended_at) s.Bind(7, *u.ended_at);
  if (u.spec) s.Bind(8, JsonText(*u.spec));
  if (u.data) {
    if (u.data->is_null()) s.BindNull(9);
    else s.Bind(9, JsonText(*u.data));
  }
  if (u.error) s.Bind(10, *u.error);
  return s.Run();
}

Status RunStore::SettlePending(int64_t run_id, const std::string& path, NodeStatus status, const std::string& error) {
  std::lock_guard lock(mu_);
  auto st = db_.Cached(
      "UPDATE runner_nodes SET status = ?3, error = ?4, ended_at = ?5 "
      "WHERE run_id = ?1 AND status = 'pending' "
      "AND (?2 = '' OR path = ?2 OR substr(path, 1, length(?2) + 1) = ?2 || '.')");
  if (!st) return std::unexpected(st.error());
  return (*st)->Bind(1, run_id).Bind(2, path).Bind(3, NodeStatusName(status)).Bind(4, error).Bind(5, NowMillis()).Run();
}

Status RunStore::AppendLog(int64_t run_id, const std::string& path, std::string_view text) {
  std::lock_guard lock(mu_);
  auto st = db_.Cached(
      "UPDATE runner_nodes SET log = CASE WHEN length(CAST(log || ?3 AS BLOB)) > ?4 "
      "THEN CAST(substr(CAST(log || ?3 AS BLOB), -?4) AS TEXT) ELSE log || ?3 END "
      "WHERE run_id = ?1 AND path = ?2");
  if (!st) return std::unexpected(st.error());
  return (*st)->Bind(1, run_id).Bind(2, path).Bind(3, text).Bind(4, static_cast<int64_t>(kMaxLogBytes)).Run();
}

}  // namespace gitopsd::runner
