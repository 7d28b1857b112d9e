#include "daemon/runtime/resources.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <set>
#include <utility>

#include "daemon/runtime/addons.h"
#include "daemon/runtime/launcher.h"
#include "daemon/runtime/module_db.h"

namespace gitopsd::runtime {
namespace {

using std::chrono::milliseconds;

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

// ---- reading specs ----

const json::Value* At(const json::Value& v, std::initializer_list<std::string_view> path) {
  const json::Value* cur = &v;
  for (std::string_view key : path) {
    cur = cur->Find(key);
    if (!cur) return nullptr;
  }
  return cur;
}

std::string StringAt(const json::Value& v, std::initializer_list<std::string_view> path) {
  const json::Value* s = At(v, path);
  return s && s->is_string() ? s->as_string() : "";
}

// A number, or a string spelling one (a resolved "${...}").
std::optional<double> NumberOf(const json::Value* v) {
  if (!v) return std::nullopt;
  if (v->is_number()) return v->as_double();
  if (v->is_string()) {
    try {
      size_t used = 0;
      double d = std::stod(v->as_string(), &used);
      if (used == v->as_string().size()) return d;
    } catch (...) {
    }
  }
  return std::nullopt;
}

class SpecReader {
 public:
  SpecReader(const Resource& r) : r_(r) {}

  Result<std::vector<std::string>> Argv(std::initializer_list<std::string_view> path, std::string_view field,
                                        bool required) {
    const json::Value* v = At(r_.spec, path);
    if (!v) {
      if (!required) return std::vector<std::string>{};
      return Fail(Name() + " has no " + std::string(field) +
                  ": give the command as an argv array, e.g. [\"bin/app\", \"serve\"]");
    }
    std::vector<std::string> argv;
    if (v->is_array()) {
      for (const json::Value& item : v->items()) {
        if (!item.is_string()) return Fail(Name() + ": " + std::string(field) + " must be an array of strings");
        argv.push_back(item.as_string());
      }
    }
    if (!v->is_array() || (required && argv.empty())) {
      return Fail(Name() + ": " + std::string(field) + " must be a non-empty array of strings (argv)");
    }
    return argv;
  }

  Result<std::map<std::string, std::string>> StringMap(std::string_view key) {
    std::map<std::string, std::string> out;
    const json::Value* v = r_.spec.Find(key);
    if (!v || v->is_null()) return out;
    if (!v->is_object()) return Fail(Name() + ": " + std::string(key) + " must be an object of strings");
    for (const auto& [k, val] : v->members()) {
      if (val.is_string())
        out[k] = val.as_string();
      else if (val.is_number())
        out[k] = val.number_text();
      else if (val.is_bool())
        out[k] = val.as_bool() ? "true" : "false";
      else
        return Fail(Name() + ": " + std::string(key) + "." + k + " must be a string");
    }
    return out;
  }

  Result<int> Count(std::string_view key, int fallback) {
    const json::Value* v = r_.spec.Find(key);
    if (!v) return fallback;
    auto n = NumberOf(v);
    if (!n || *n < 0 || *n != std::floor(*n))
      return Fail(Name() + ": " + std::string(key) + " must be a whole number >= 0");
    return static_cast<int>(*n);
  }

  Result<milliseconds> Seconds(const json::Value* v, std::string_view field, milliseconds fallback) {
    if (!v) return fallback;
    auto n = NumberOf(v);
    if (!n || *n < 0) return Fail(Name() + ": " + std::string(field) + " must be a number of seconds");
    return milliseconds(static_cast<int64_t>(*n * 1000));
  }

  std::string Name() const { return std::string(ResourceNoun(r_.kind)) + " \"" + r_.name + "\""; }

 private:
  const Resource& r_;
};

Result<WorkloadConfig> ReadWorkload(const Resource& r) {
  SpecReader read(r);
  WorkloadConfig w;
  w.name = r.name;
  w.build_service = StringAt(r.spec, {"deployment", "internal", "id"});
  w.build_id = StringAt(r.spec, {"deployment", "internal", "buildId"});
  w.build_sha = StringAt(r.spec, {"deployment", "internal", "buildSHA"});
  w.branch = StringAt(r.spec, {"deployment", "internal", "branch"});
  if (At(r.spec, {"deployment", "external"})) {
    return Fail(read.Name() +
                ": deployment.external (an image) cannot run on the process runtime; "
                "deploy a build of a build service (deployment.internal)");
  }
  auto command = read.Argv({"deployment", "command"}, "deployment.command", /*required=*/true);
  if (!command) return std::unexpected(command.error());
  w.command = std::move(*command);
  auto env = read.StringMap("runtimeEnvironment");
  if (!env) return std::unexpected(env.error());
  w.runtime_env = std::move(*env);
  return w;
}

bool AppliesTo(const json::Value& group, const Resource& workload) {
  const std::string secret_type = StringAt(group, {"secretType"});
  if (secret_type == "build") return false;
  const json::Value* restricted = At(group, {"restrictions", "restricted"});
  if (!restricted || !restricted->is_bool() || !restricted->as_bool()) return true;
  const std::string type = workload.kind == ResourceKind::kJob ? "job" : "service";
  if (const json::Value* objects = At(group, {"restrictions", "nfObjects"}); objects && objects->is_array()) {
    for (const json::Value& o : objects->items()) {
      std::string id = StringAt(o, {"id"}), t = StringAt(o, {"type"});
      if (id == workload.name && (t.empty() || t == type)) return true;
    }
  }
  const json::Value* tags = At(group, {"restrictions", "tags"});
  const json::Value* own = workload.spec.Find("tags");
  if (tags && tags->is_array() && own && own->is_array()) {
    for (const json::Value& t : tags->items()) {
      for (const json::Value& o : own->items()) {
        if (t.is_string() && o.is_string() && t.as_string() == o.as_string()) return true;
      }
    }
  }
  return false;
}

// The connection variables a group's addonDependencies bring.
Status AddAddonEnv(const Resource& group, Addons& addons, std::map<std::string, std::string>& env) {
  const json::Value* deps = group.spec.Find("addonDependencies");
  if (!deps || !deps->is_array()) return Ok();
  for (const json::Value& dep : deps->items()) {
    const std::string addon_id = StringAt(dep, {"addonId"});
    auto addon = addons.FindAddon(addon_id);
    if (!addon) return std::unexpected(addon.error());
    if (!*addon) {
      return Fail("secret group \"" + group.name + "\" depends on addon \"" + addon_id +
                  "\", which does not exist; declare it in a Template");
    }
    std::map<std::string, std::string> all = (*addon)->env;
    all.insert((*addon)->secret_env.begin(), (*addon)->secret_env.end());
    const json::Value* keys = dep.Find("keys");
    if (!keys || !keys->is_array() || keys->items().empty()) {
      for (const auto& [k, v] : all) env[k] = v;
      continue;
    }
    for (const json::Value& key : keys->items()) {
      const std::string name = StringAt(key, {"keyName"});
      auto it = all.find(name);
      if (it == all.end()) {
        std::string known;
        for (const auto& [k, v] : all) known += (known.empty() ? "" : ", ") + k;
        return Fail("secret group \"" + group.name + "\": addon \"" + addon_id + "\" has no key \"" + name +
                    "\"; it has " + known);
      }
      env[name] = it->second;
      if (const json::Value* aliases = key.Find("aliases"); aliases && aliases->is_array()) {
        for (const json::Value& a : aliases->items()) {
          if (a.is_string()) env[a.as_string()] = it->second;
        }
      }
    }
  }
  return Ok();
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

json::Value RedactedSpec(const Resource& resource) {
  json::Value spec = resource.spec;
  if (resource.kind != ResourceKind::kSecretGroup) return spec;
  if (json::Value* secrets = spec.Find("secrets"); secrets && secrets->is_object()) {
    for (auto& [section, values] : secrets->members()) {
      if (!values.is_object()) continue;
      for (auto& [key, value] : values.members()) value = json::Value::String("***");
    }
  }
  return spec;
}

Result<BuildServiceConfig> ReadBuildService(const Resource& r) {
  SpecReader read(r);
  BuildServiceConfig b;
  b.name = r.name;
  b.repository = StringAt(r.spec, {"vcsData", "repository"});
  if (b.repository.empty()) {
    return Fail(read.Name() + " names no repository: set vcsData.repository to a configured repository's name");
  }
  b.branch = StringAt(r.spec, {"vcsData", "projectBranch"});
  auto command = read.Argv({"buildSettings", "command"}, "buildSettings.command", /*required=*/true);
  if (!command) return std::unexpected(command.error());
  b.command = std::move(*command);
  auto env = read.StringMap("buildArguments");
  if (!env) return std::unexpected(env.error());
  b.env = std::move(*env);
  auto timeout =
      read.Seconds(At(r.spec, {"buildSettings", "timeoutSeconds"}), "buildSettings.timeoutSeconds", b.timeout);
  if (!timeout) return std::unexpected(timeout.error());
  b.timeout = *timeout;
  return b;
}

// healthChecks[i]: protocol, path, periodSeconds, timeoutSeconds, failureThreshold.
Status ReadHealthCheck(SpecReader& read, const json::Value& check, size_t i, HealthCheck* h) {
  const std::string at = "healthChecks[" + std::to_string(i) + "]";
  const std::string protocol = StringAt(check, {"protocol"});
  if (protocol == "HTTP" || protocol == "HTTP/2") {
    h->kind = HealthCheck::Kind::kHttp;
    h->path = StringAt(check, {"path"});
    if (h->path.empty()) h->path = "/";
  } else if (protocol == "TCP" || protocol.empty()) {
    h->kind = HealthCheck::Kind::kTcp;
  } else {
    return Fail(read.Name() + ": " + at + ".protocol \"" + protocol + "\" is not supported; use HTTP or TCP");
  }
  auto interval = read.Seconds(check.Find("periodSeconds"), at + ".periodSeconds", h->interval);
  if (!interval) return std::unexpected(interval.error());
  auto timeout = read.Seconds(check.Find("timeoutSeconds"), at + ".timeoutSeconds", h->timeout);
  if (!timeout) return std::unexpected(timeout.error());
  h->interval = std::max(*interval, milliseconds(100));
  h->timeout = std::max(*timeout, milliseconds(100));
  if (auto n = NumberOf(check.Find("failureThreshold")); n && *n >= 1) h->failure_threshold = static_cast<int>(*n);
  return Ok();
}

Result<ServiceConfig> ReadService(const Resource& r) {
  auto workload = ReadWorkload(r);
  if (!workload) return std::unexpected(workload.error());
  ServiceConfig s;
  static_cast<WorkloadConfig&>(s) = std::move(*workload);
  const json::Value* checks = r.spec.Find("healthChecks");
  if (!checks || !checks->is_array() || checks->items().empty()) return s;
  SpecReader read(r);
  // The supervised check is the first that is not a startup probe (else the
  // startup probe itself); a startup probe sets the deploy's startup window.
  std::optional<size_t> probe, startup;
  for (size_t i = 0; i < checks->items().size(); ++i) {
    const bool is_startup = StringAt(checks->items()[i], {"type"}) == "startupProbe";
    if (is_startup && !startup) startup = i;
    if (!is_startup && !probe) probe = i;
  }
  const size_t chosen = probe.value_or(*startup);
  if (auto read_probe = ReadHealthCheck(read, checks->items()[chosen], chosen, &s.health); !read_probe) {
    return std::unexpected(read_probe.error());
  }
  if (startup) {
    HealthCheck h;
    const json::Value& check = checks->items()[*startup];
    if (auto read_startup = ReadHealthCheck(read, check, *startup, &h); !read_startup) {
      return std::unexpected(read_startup.error());
    }
    const std::string at = "healthChecks[" + std::to_string(*startup) + "].initialDelaySeconds";
    auto delay = read.Seconds(check.Find("initialDelaySeconds"), at, milliseconds(0));
    if (!delay) return std::unexpected(delay.error());
    s.health.startup_window = *delay + h.interval * h.failure_threshold;
  }
  return s;
}

Result<JobConfig> ReadJob(const Resource& r) {
  auto workload = ReadWorkload(r);
  if (!workload) return std::unexpected(workload.error());
  JobConfig j;
  static_cast<WorkloadConfig&>(j) = std::move(*workload);
  SpecReader read(r);
  auto backoff = read.Count("backoffLimit", 0);
  if (!backoff) return std::unexpected(backoff.error());
  j.backoff_limit = *backoff;
  auto deadline = read.Seconds(r.spec.Find("activeDeadlineSeconds"), "activeDeadlineSeconds", milliseconds(0));
  if (!deadline) return std::unexpected(deadline.error());
  j.active_deadline = *deadline;
  return j;
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
  const std::string name = StringAt(spec, {"name"});
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

Result<std::map<std::string, std::string>> ResourceRegistry::RuntimeEnvironment(
    const Resource& workload, Addons& addons, const std::map<std::string, std::string>& overrides) {
  auto groups = List(ResourceKind::kSecretGroup);
  if (!groups) return std::unexpected(groups.error());
  std::vector<const Resource*> applying;
  for (const Resource& g : *groups) {
    if (AppliesTo(g.spec, workload)) applying.push_back(&g);
  }
  // Higher priority wins, so it is applied last; equal priorities by name.
  std::stable_sort(applying.begin(), applying.end(), [](const Resource* a, const Resource* b) {
    return NumberOf(a->spec.Find("priority")).value_or(0) < NumberOf(b->spec.Find("priority")).value_or(0);
  });
  std::map<std::string, std::string> env;
  for (const Resource* g : applying) {
    if (auto s = AddAddonEnv(*g, addons, env); !s) return std::unexpected(s.error());
    if (const json::Value* vars = At(g->spec, {"secrets", "variables"}); vars && vars->is_object()) {
      for (const auto& [k, v] : vars->members()) {
        if (v.is_string()) env[k] = v.as_string();
      }
    }
  }
  SpecReader read(workload);
  auto own = read.StringMap("runtimeEnvironment");
  if (!own) return std::unexpected(own.error());
  for (const auto& [k, v] : *own) env[k] = v;
  for (const auto& [k, v] : overrides) env[k] = v;
  return env;
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
