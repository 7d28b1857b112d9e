// The resource registry's store: kinds, upserting and finding resources,
// jobs' deployed builds, and the journal of node executions.
// resources_specs.cc reads what the stored specs say.
#include "daemon/runtime/resources.h"

#include <array>
#include <utility>

#include "daemon/runtime/launcher.h"
#include "daemon/runtime/module_db.h"

namespace gitopsd::runtime {
namespace {

const std::vector<std::string> kMigrations = {
    R"sql(CREATE TABLE runtime_resources (
      kind TEXT NOT NULL,              -- Addon | BuildService | DeploymentService | Job | SecretGroup
      name TEXT NOT NULL,
      node_kind TEXT NOT NULL,         -- as declared (ManualJob, Job, ...)
      spec TEXT NOT NULL,              -- compact JSON, secret values included: never shown as is
      created_at INTEGER NOT NULL,
      updated_at INTEGER NOT NULL,
      deployed_build TEXT NOT NULL DEFAULT '',  -- jobs: the build a JobRun runs
      PRIMARY KEY (kind, name));
    CREATE TABLE runtime_node_executions (
      run_id INTEGER NOT NULL,
      node_path TEXT NOT NULL,
      attempt INTEGER NOT NULL,
      kind TEXT NOT NULL,
      detail TEXT NOT NULL,            -- compact JSON: what the node was about to do
      started_at INTEGER NOT NULL,
      outcome TEXT,                    -- compact JSON once finished, NULL before
      PRIMARY KEY (run_id, node_path, attempt)))sql",
};

constexpr std::array<ResourceKind, 5> kKinds = {ResourceKind::kAddon, ResourceKind::kBuildService,
                                                ResourceKind::kDeploymentService, ResourceKind::kJob,
                                                ResourceKind::kSecretGroup};

std::optional<ResourceKind> ParseKind(std::string_view name) {
  for (ResourceKind k : kKinds) {
    if (ResourceKindName(k) == name) return k;
  }
  return std::nullopt;
}

Result<json::Value> ParseStored(const std::string& text, const std::string& what) {
  auto v = json::Parse(text);
  if (!v) return Fail("the stored " + what + " is not valid JSON: " + v.error().message);
  return std::move(*v);
}

// spec.name, or "" when it is not a string.
std::string NameOf(const json::Value& spec) {
  const json::Value* name = spec.Find("name");
  return name && name->is_string() ? name->as_string() : "";
}

Resource ReadRow(const sqlite::Statement& st, json::Value spec) {
  Resource r;
  r.kind = ParseKind(st.Text(0)).value_or(ResourceKind::kAddon);
  r.name = st.Text(1);
  r.node_kind = st.Text(2);
  r.spec = std::move(spec);
  r.created_at = st.Int(4);
  r.updated_at = st.Int(5);
  r.deployed_build = st.Text(6);
  return r;
}

constexpr const char* kColumns = "kind, name, node_kind, spec, created_at, updated_at, deployed_build";

}  // namespace

std::string_view ResourceKindName(ResourceKind kind) {
  switch (kind) {
    case ResourceKind::kAddon:
      return "Addon";
    case ResourceKind::kBuildService:
      return "BuildService";
    case ResourceKind::kDeploymentService:
      return "DeploymentService";
    case ResourceKind::kJob:
      return "Job";
    case ResourceKind::kSecretGroup:
      return "SecretGroup";
  }
  return "Unknown";
}

std::string_view ResourceNoun(ResourceKind kind) {
  switch (kind) {
    case ResourceKind::kAddon:
      return "addon";
    case ResourceKind::kBuildService:
      return "build service";
    case ResourceKind::kDeploymentService:
      return "service";
    case ResourceKind::kJob:
      return "job";
    case ResourceKind::kSecretGroup:
      return "secret group";
  }
  return "resource";
}

std::optional<ResourceKind> ResourceKindOfNode(std::string_view node_kind) {
  if (node_kind == "ManualJob" || node_kind == "Job") return ResourceKind::kJob;
  return ParseKind(node_kind);
}

// ---- the registry ----

Result<std::unique_ptr<ResourceRegistry>> ResourceRegistry::Open(const std::string& state_dir) {
  auto db = OpenModuleDatabase(state_dir + "/state.db", "runtime-resources", kMigrations);
  if (!db) return std::unexpected(db.error());
  return std::unique_ptr<ResourceRegistry>(new ResourceRegistry(state_dir, std::move(*db)));
}

Result<UpsertOutcome> ResourceRegistry::Upsert(std::string_view node_kind, const json::Value& spec) {
  auto kind = ResourceKindOfNode(node_kind);
  if (!kind) return Fail("\"" + std::string(node_kind) + "\" is not a resource kind");
  const std::string name = NameOf(spec);
  if (!spec.is_object() || name.empty()) {
    return Fail(std::string(node_kind) + " node: spec.name must be a non-empty string");
  }
  if (auto s = CheckResourceName(std::string(ResourceNoun(*kind)), name); !s) return std::unexpected(s.error());
  std::lock_guard lock(mu_);
  auto tx = sqlite::Transaction::Begin(db_);
  if (!tx) return std::unexpected(tx.error());
  auto existing = FindLocked(*kind, name);
  if (!existing) return std::unexpected(existing.error());
  UpsertOutcome out;
  const int64_t now = NowMillis();
  if (*existing && (*existing)->spec == spec && (*existing)->node_kind == node_kind) {
    out.resource = std::move(**existing);
    return out;  // unchanged: nothing to write
  }
  auto st = db_.Cached(
      "INSERT INTO runtime_resources (kind, name, node_kind, spec, created_at, updated_at) "
      "VALUES (?1, ?2, ?3, ?4, ?5, ?5) ON CONFLICT (kind, name) DO UPDATE SET "
      "node_kind = excluded.node_kind, spec = excluded.spec, updated_at = excluded.updated_at");
  if (!st) return std::unexpected(st.error());
  (*st)
      ->Bind(1, ResourceKindName(*kind))
      .Bind(2, name)
      .Bind(3, node_kind)
      .Bind(4, json::SerializeCompact(spec))
      .Bind(5, now);
  if (auto s = (*st)->Run(); !s) return std::unexpected(s.error());
  if (auto s = tx->Commit(); !s) return std::unexpected(s.error());
  out.created = !existing->has_value();
  out.changed = true;
  if (*existing) out.resource = std::move(**existing);
  out.resource.kind = *kind;
  out.resource.name = name;
  out.resource.node_kind = std::string(node_kind);
  out.resource.spec = spec;
  if (out.created) out.resource.created_at = now;
  out.resource.updated_at = now;
  return out;
}

Result<std::optional<Resource>> ResourceRegistry::FindLocked(ResourceKind kind, const std::string& name) {
  auto st = db_.Cached(std::string("SELECT ") + kColumns + " FROM runtime_resources WHERE kind = ?1 AND name = ?2");
  if (!st) return std::unexpected(st.error());
  (*st)->Bind(1, ResourceKindName(kind)).Bind(2, name);
  auto row = (*st)->Step();
  if (!row) return std::unexpected(row.error());
  if (!*row) return std::optional<Resource>();
  auto spec = ParseStored((*st)->Text(3), std::string(ResourceNoun(kind)) + " \"" + name + "\"");
  if (!spec) return std::unexpected(spec.error());
  Resource r = ReadRow(**st, std::move(*spec));
  (*st)->Reset();
  return std::optional<Resource>(std::move(r));
}

Result<std::optional<Resource>> ResourceRegistry::Find(ResourceKind kind, const std::string& name) {
  std::lock_guard lock(mu_);
  return FindLocked(kind, name);
}

Result<Resource> ResourceRegistry::Require(ResourceKind kind, const std::string& name) {
  auto found = Find(kind, name);
  if (!found) return std::unexpected(found.error());
  if (!*found) {
    return Fail(std::string(ResourceNoun(kind)) + " \"" + name + "\" does not exist; declare it in a Template");
  }
  return std::move(**found);
}

Result<std::vector<Resource>> ResourceRegistry::ListLocked(std::optional<ResourceKind> kind) {
  auto st = db_.Prepare(std::string("SELECT ") + kColumns + " FROM runtime_resources" +
                        (kind ? " WHERE kind = ?1" : "") + " ORDER BY kind, name");
  if (!st) return std::unexpected(st.error());
  if (kind) st->Bind(1, ResourceKindName(*kind));
  return sqlite::ReadAll<Resource>(*st, [](const sqlite::Statement& row) -> Result<Resource> {
    auto spec = ParseStored(row.Text(3), "resource " + row.Text(1));
    if (!spec) return std::unexpected(spec.error());
    return ReadRow(row, std::move(*spec));
  });
}

Result<std::vector<Resource>> ResourceRegistry::List(std::optional<ResourceKind> kind) {
  std::lock_guard lock(mu_);
  return ListLocked(kind);
}

Status ResourceRegistry::Remove(ResourceKind kind, const std::string& name) {
  std::lock_guard lock(mu_);
  auto st = db_.Cached("DELETE FROM runtime_resources WHERE kind = ?1 AND name = ?2");
  if (!st) return std::unexpected(st.error());
  return (*st)->Bind(1, ResourceKindName(kind)).Bind(2, name).Run();
}

Status ResourceRegistry::SetDeployedBuild(const std::string& job, const std::string& build) {
  std::lock_guard lock(mu_);
  auto st = db_.Cached("UPDATE runtime_resources SET deployed_build = ?2 WHERE kind = 'Job' AND name = ?1");
  if (!st) return std::unexpected(st.error());
  if (auto s = (*st)->Bind(1, job).Bind(2, build).Run(); !s) return s;
  if (db_.Changes() == 0) return Fail("job \"" + job + "\" does not exist; declare it in a Template");
  return Ok();
}

// ---- the journal ----

Status ResourceRegistry::RecordStart(const Execution& e) {
  std::lock_guard lock(mu_);
  auto st = db_.Cached(
      "INSERT OR REPLACE INTO runtime_node_executions (run_id, node_path, attempt, kind, detail, started_at, outcome) "
      "VALUES (?1, ?2, ?3, ?4, ?5, ?6, NULL)");
  if (!st) return std::unexpected(st.error());
  return (*st)
      ->Bind(1, e.run_id)
      .Bind(2, e.node_path)
      .Bind(3, static_cast<int64_t>(e.attempt))
      .Bind(4, e.kind)
      .Bind(5, json::SerializeCompact(e.detail))
      .Bind(6, e.started_at ? e.started_at : NowMillis())
      .Run();
}

Status ResourceRegistry::RecordOutcome(int64_t run_id, const std::string& node_path, int attempt,
                                       const json::Value& outcome) {
  std::lock_guard lock(mu_);
  auto st = db_.Cached(
      "UPDATE runtime_node_executions SET outcome = ?4 WHERE run_id = ?1 AND node_path = ?2 AND attempt = ?3");
  if (!st) return std::unexpected(st.error());
  return (*st)
      ->Bind(1, run_id)
      .Bind(2, node_path)
      .Bind(3, static_cast<int64_t>(attempt))
      .Bind(4, json::SerializeCompact(outcome))
      .Run();
}

Result<std::optional<Execution>> ResourceRegistry::FindExecution(int64_t run_id, const std::string& node_path,
                                                                 int attempt) {
  std::lock_guard lock(mu_);
  auto st = db_.Cached(
      "SELECT kind, detail, started_at, outcome FROM runtime_node_executions "
      "WHERE run_id = ?1 AND node_path = ?2 AND attempt = ?3");
  if (!st) return std::unexpected(st.error());
  (*st)->Bind(1, run_id).Bind(2, node_path).Bind(3, static_cast<int64_t>(attempt));
  auto row = (*st)->Step();
  if (!row) return std::unexpected(row.error());
  if (!*row) return std::optional<Execution>();
  Execution e;
  e.run_id = run_id;
  e.node_path = node_path;
  e.attempt = attempt;
  e.kind = (*st)->Text(0);
  e.started_at = (*st)->Int(2);
  e.finished = !(*st)->IsNull(3);
  std::string detail = (*st)->Text(1), outcome = e.finished ? (*st)->Text(3) : "";
  (*st)->Reset();
  auto d = ParseStored(detail, "execution detail");
  if (!d) return std::unexpected(d.error());
  e.detail = std::move(*d);
  if (e.finished) {
    auto o = ParseStored(outcome, "execution outcome");
    if (!o) return std::unexpected(o.error());
    e.outcome = std::move(*o);
  }
  return std::optional<Execution>(std::move(e));
}

}  // namespace gitopsd::runtime
