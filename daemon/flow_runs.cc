#include "daemon/flow_runs.h"

#include <spdlog/spdlog.h>

#include <string_view>
#include <vector>

#include "daemon/triggers/rules.h"
#include "sync/store.h"

namespace gitopsd::daemon {
namespace {

using runner::RunError;

json::Value S(std::string s) { return json::Value::String(std::move(s)); }

std::string StringOf(const json::Value& v, std::string_view key) {
  const json::Value* f = v.Find(key);
  return f && f->is_string() ? f->as_string() : "";
}

RunError Invalid(std::string message) { return RunError{RunError::Code::kInvalid, std::move(message), {}}; }

RunError Internal(const std::string& message) {
  return RunError{RunError::Code::kInternal, message, {}};
}

// The service part of a recorded build id "<service>@<commit>".
std::string ServiceOfBuild(const std::string& build) { return build.substr(0, build.find('@')); }

// A rollback Release: the recorded build onto the recorded target, waiting
// as the original node did.
std::optional<json::Value> ReleaseAgain(const runner::NodeRecord& n) {
  const std::string build = StringOf(n.data, "build");
  const json::Value* recorded = n.data.Find("target");
  if (build.empty() || !recorded || recorded->is_null()) return std::nullopt;
  // The executor records the target's id and its type apart.
  json::Value target = *recorded;
  if (recorded->is_string()) {
    std::string type = StringOf(n.data, "targetType");
    target = json::Value::Object({{"id", *recorded}, {"type", S(type.empty() ? "service" : type)}});
  }
  json::Value origin = json::Value::Object({{"id", S(ServiceOfBuild(build))}, {"build", S(build)}});
  json::Value spec = json::Value::Object(
      {{"type", S("build")}, {"origin", std::move(origin)}, {"target", std::move(target)}});
  json::Value node = json::Value::Object({{"kind", S("Release")}, {"spec", std::move(spec)}});
  for (const char* key : {"condition", "timeoutDuration"}) {
    if (const json::Value* v = n.spec.Find(key); v && !v->is_null()) node.Set(key, *v);
  }
  return node;
}

std::optional<json::Value> RestoreBackup(const runner::NodeRecord& n) {
  const std::string addon = StringOf(n.data, "addonId");
  const std::string backup = StringOf(n.data, "id");
  if (addon.empty() || backup.empty()) return std::nullopt;
  json::Value data = json::Value::Object({{"addonId", S(addon)}, {"backupId", S(backup)}});
  json::Value action = json::Value::Object(
      {{"kind", S("AddonBackup")},
       {"spec", json::Value::Object({{"type", S("restore")}, {"data", std::move(data)}})}});
  return json::Value::Object({{"kind", S("Action")}, {"spec", std::move(action)}});
}

}  // namespace

runner::RunResult<json::Value> RollbackBody(const runner::RunRecord& run, bool restore_backup) {
  std::vector<json::Value> restores, releases;
  for (const runner::NodeRecord& n : run.nodes) {
    if (n.status != runner::NodeStatus::kSuccess) continue;
    if (n.kind == "Release") {
      if (auto node = ReleaseAgain(n)) releases.push_back(std::move(*node));
    } else if (n.kind == "AddonBackup" && restore_backup) {
      if (auto node = RestoreBackup(n)) restores.push_back(std::move(*node));
    }
  }
  if (releases.empty()) {
    return std::unexpected(Invalid("run " + std::to_string(run.id) + " (" + run.flow_kind + " " +
                                   run.flow_name +
                                   ") deployed nothing: it has no successful Release node, so "
                                   "there is nothing to roll back to"));
  }
  std::vector<json::Value> steps = std::move(restores);
  for (auto& r : releases) steps.push_back(std::move(r));
  json::Value options = json::Value::Object();
  if (const json::Value* o = run.body.Find("options"); o && o->is_object()) {
    if (const json::Value* p = o->Find("concurrencyPolicy")) options.Set("concurrencyPolicy", *p);
  }
  json::Value workflow = json::Value::Object(
      {{"kind", S("Workflow")},
       {"spec", json::Value::Object({{"type", S("sequential")},
                                     {"steps", json::Value::Array(std::move(steps))}})}});
  return json::Value::Object(
      {{"apiVersion", S("v1.2")},
       {"name", S(run.flow_name)},
       {"description", S("Rollback to run " + std::to_string(run.id) + " of " + run.flow_name)},
       {"options", std::move(options)},
       {"spec", std::move(workflow)}});
}

std::string FlowRuns::BranchFor(const std::map<std::string, std::string>& branches, const std::string& repository,
                                const json::Value& trigger) {
  auto it = branches.find(repository);
  const std::string configured = it == branches.end() ? "" : it->second;
  const json::Value* rules = trigger.Find("branchRestrictions");
  if (!rules || !rules->is_array() || rules->items().empty()) return configured;
  std::string literal;
  for (const json::Value& rule : rules->items()) {
    if (!rule.is_string()) continue;
    if (!configured.empty() && triggers::MatchesPattern(rule.as_string(), configured)) return configured;
    if (literal.empty() && rule.as_string().find('*') == std::string::npos) literal = rule.as_string();
  }
  return literal.empty() ? configured : literal;
}

json::Value FlowRuns::FillTriggerRefs(const json::Value& body, const json::Value& given) {
  json::Value refs = given.is_object() ? given : json::Value::Object();
  const json::Value* triggers = body.Find("triggers");
  if (!triggers || !triggers->is_array()) return refs;
  const std::map<std::string, std::string> branches = branches_();
  for (const json::Value& trigger : triggers->items()) {
    const std::string ref = StringOf(trigger, "ref");
    const std::string repository = StringOf(trigger, "repository");
    if (ref.empty() || repository.empty() || !branches.contains(repository)) continue;
    json::Value entry = json::Value::Object();
    if (const json::Value* g = refs.Find(ref); g && g->is_object()) entry = *g;
    std::string branch = StringOf(entry, "branch");
    if (branch.empty()) {
      branch = BranchFor(branches, repository, trigger);
      if (branch.empty()) continue;
      entry.Set("branch", S(branch));
    }
    if (StringOf(entry, "sha").empty()) {
      auto head = head_of_(repository, branch);
      if (!head) {
        spdlog::debug("{}: no fetched head of {} for trigger ref {}: {}", repository, branch, ref,
                      head.error().message);
        continue;  // the dry run names the expression that needs it
      }
      entry.Set("sha", S(*head));
    }
    if (!entry.Find("repository")) entry.Set("repository", S(repository));
    if (!entry.Find("repoUrl")) {
      if (auto state = store_.GetRepository(repository); state && *state) {
        entry.Set("repoUrl", S((*state)->url));
      }
    }
    refs.Set(ref, std::move(entry));
  }
  return refs;
}

runner::RunResult<int64_t> FlowRuns::Start(const std::string& kind, const std::string& name,
                                           const RunOptions& options) {
  auto object = store_.GetObject(kind, name);
  if (!object) return std::unexpected(Internal("the state database failed: " + object.error().message));
  if (*object) return StartObject(**object, options);
  return std::unexpected(
      RunError{RunError::Code::kNotFound, kind + " \"" + name + "\" does not exist", {}});
}

runner::RunResult<int64_t> FlowRuns::StartObject(const store::ObjectRecord& object,
                                                 const RunOptions& options) {
  auto body = json::Parse(object.body, json::ParseOptions{64 << 20, 512});
  if (!body) {
    return std::unexpected(Internal(object.kind + " " + object.name + ": stored body does not parse"));
  }
  runner::StartRequest request;
  request.flow_kind = object.kind;
  request.flow_name = object.name;
  request.flow_revision = std::to_string(object.revision);
  request.args = options.args.is_object() ? options.args : json::Value::Object();
  request.trigger_refs = FillTriggerRefs(*body, options.triggers);
  request.body = std::move(*body);
  request.name = options.name;
  request.description = options.description;
  request.idempotency_key = options.idempotency_key;
  return engine_.Start(request);
}

runner::RunResult<int64_t> FlowRuns::Rollback(int64_t run_id, bool restore_backup) {
  auto run = engine_.Get(run_id);
  if (!run) return std::unexpected(run.error());
  if (!runner::IsFinished(run->status)) {
    return std::unexpected(RunError{RunError::Code::kConflict,
                                    "run " + std::to_string(run_id) + " is still " +
                                        runner::RunStatusName(run->status) +
                                        ": wait for it to end (or cancel it), then roll back",
                                    {}});
  }
  auto body = RollbackBody(*run, restore_backup);
  if (!body) return std::unexpected(body.error());
  runner::StartRequest request;
  request.flow_kind = run->flow_kind;
  request.flow_name = run->flow_name;
  request.flow_revision = run->flow_revision;
  request.body = std::move(*body);
  request.args = json::Value::Object();
  request.trigger_refs = run->trigger_refs;
  request.kind = runner::RunKind::kRollback;
  request.rollback_of = run_id;
  request.name = "rollback of run " + std::to_string(run_id);
  request.description = restore_backup ? "redeploys its builds and restores its backups"
                                       : "redeploys its builds";
  return engine_.Start(request);
}

void FlowRuns::Autorun(const std::string& repository, const ChangedObjects* changed) {
  std::lock_guard lock(autorun_mu_);
  if (changed) {
    // Only what this sync changed: the cost follows the change, not the repository.
    for (const auto& [kind, name] : *changed) {
      if (kind != "Template") continue;
      auto object = store_.GetObject(kind, name);
      if (!object) {
        spdlog::error("autorun: cannot read Template {}: {}", name, object.error().message);
        continue;
      }
      if (*object && (*object)->repository == repository) AutorunOne(**object);
    }
    return;
  }
  auto objects = store_.ListObjects("Template");
  if (!objects) {
    spdlog::error("autorun: cannot list templates: {}", objects.error().message);
    return;
  }
  for (const store::ObjectRecord& o : *objects) {
    if (o.repository == repository) AutorunOne(o);
  }
}

// REQUIRES: autorun_mu_ held.
void FlowRuns::AutorunOne(const store::ObjectRecord& o) {
  const auto key = std::make_tuple(o.name, o.revision, o.updated_at_ms);
  if (refused_.contains(key)) return;
  // Bodies are stored compact: most templates are ruled out without parsing.
  if (o.body.find("\"autorun\":true") == std::string::npos) return;
  auto body = json::Parse(o.body, json::ParseOptions{64 << 20, 512});
  if (!body) return;
  const json::Value* opts = body->Find("options");
  const json::Value* autorun = opts ? opts->Find("autorun") : nullptr;
  if (!autorun || !autorun->is_bool() || !autorun->as_bool()) return;

  runner::RunFilter filter;
  filter.flow_kind = "Template";
  filter.flow_name = o.name;
  filter.limit = 50;
  auto runs = engine_.List(filter);
  if (!runs) {
    spdlog::error("autorun: cannot list the runs of Template {}: {}", o.name, runs.error().message);
    return;
  }
  const std::string revision = std::to_string(o.revision);
  bool done = false;
  for (const auto& r : *runs) {
    if (r.flow_revision == revision && r.created_at >= o.updated_at_ms) done = true;
  }
  if (done) return;
  RunOptions options;
  options.name = "autorun";
  options.description = "revision " + revision + " synced from commit " +
                        o.source_commit.substr(0, 7);
  auto id = StartObject(o, options);
  if (!id) {
    refused_.insert(key);
    spdlog::warn("autorun: Template {} revision {} did not start: {}", o.name, revision,
                 id.error().message);
    return;
  }
  spdlog::info("autorun: Template {} revision {} (commit {}) started as run {}", o.name,
               revision, o.source_commit.substr(0, 7), *id);
}

}  // namespace gitopsd::daemon
