// The runtime executor's dispatch, the resources a Template declares, the
// re-check after a restart, and the helpers its files share
// (executor_internal.h says which node kinds live where).
#include <charconv>
#include <sstream>
#include <utility>

#include "daemon/runner/executor_internal.h"

namespace gitopsd::runner {
namespace executor_internal {

// ---- small JSON helpers ----

std::string Text(const json::Value& v, std::initializer_list<std::string_view> path) {
  const json::Value* cur = &v;
  for (std::string_view key : path) {
    cur = cur->Find(key);
    if (!cur) return "";
  }
  if (cur->is_string()) return cur->as_string();
  if (cur->is_number()) return cur->number_text();
  return "";
}

std::string Quoted(const std::string& s) { return "\"" + s + "\""; }

// A whole number spelled in full ("42"), or nullopt.
std::optional<int64_t> ParseInt(const std::string& text) {
  int64_t value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size()) return std::nullopt;
  return value;
}

// An argv from an array of strings, or a string split on spaces (no shell).
Result<std::vector<std::string>> CommandOf(const json::Value* v, const std::string& what) {
  std::vector<std::string> argv;
  if (v && v->is_array()) {
    for (const json::Value& item : v->items()) {
      if (!item.is_string()) return Fail(what + ": command must be an array of strings");
      argv.push_back(item.as_string());
    }
  } else if (v && v->is_string()) {
    std::istringstream in(v->as_string());
    for (std::string word; in >> word;) argv.push_back(word);
  }
  if (argv.empty()) return Fail(what + ": give a command (an argv array; write [\"sh\", \"-c\", \"...\"] for a shell)");
  return argv;
}

Result<std::map<std::string, std::string>> StringMap(const json::Value* v, const std::string& what) {
  std::map<std::string, std::string> out;
  if (!v || v->is_null()) return out;
  if (!v->is_object()) return Fail(what + " must be an object of strings");
  for (const auto& [k, val] : v->members()) {
    if (!val.is_string()) return Fail(what + "." + k + " must be a string");
    out[k] = val.as_string();
  }
  return out;
}

BuildRef ParseBuildId(const std::string& id, const std::string& service) {
  if (auto at = id.rfind('@'); at != std::string::npos) return {id.substr(0, at), id.substr(at + 1)};
  return {service, id};
}

json::Value BuildData(const BuildRecord& b, const std::string& branch) {
  return json::Value::Object({{"id", Str(b.service + "@" + b.commit)},
                              {"service", Str(b.service)},
                              {"commit", Str(b.commit)},
                              {"branch", Str(branch)},
                              {"status", Str(runtime::BuildStateName(b.state))},
                              {"cached", json::Value::Bool(b.cached)}});
}

json::Value JobRunData(const runtime::JobRun& run) {
  return json::Value::Object({{"jobId", Str(run.job)},
                              {"runId", Str(std::to_string(run.id))},
                              {"build", Str(run.build)},
                              {"state", Str(runtime::JobStateName(run.state))},
                              {"exitCode", run.exit_code ? Num(*run.exit_code) : json::Value::Null()},
                              {"attempts", Num(run.attempts)},
                              {"logPath", Str(run.log_path)}});
}

json::Value BackupData(const runtime::Backup& b) {
  return json::Value::Object({{"id", Str(b.id)},
                              {"addonId", Str(b.addon)},
                              {"size", Num(static_cast<double>(b.size_bytes))},
                              {"path", Str(b.path)},
                              {"status", Str(std::string(runtime::BackupStatusName(b.status)))}});
}

json::Value OutcomeToJson(const NodeOutcome& out) {
  return json::Value::Object({{"status", Str(out.status == NodeOutcome::Status::kSuccess ? "success" : "failure")},
                              {"data", out.data},
                              {"error", Str(out.error)}});
}

NodeOutcome OutcomeFromJson(const json::Value& v) {
  if (Text(v, {"status"}) == "success") {
    const json::Value* data = v.Find("data");
    return NodeOutcome::Success(data ? *data : json::Value::Object());
  }
  return NodeOutcome::Failure(Text(v, {"error"}));
}

NodeOutcome FailWith(const Error& e) { return NodeOutcome::Failure(e.message); }

// A process's output lines into the node log, indented under gitopsd's own.
std::function<void(std::string_view)> ProcessOutput(const NodeContext& ctx) {
  return [&ctx](std::string_view line) { ctx.log("  " + std::string(line)); };
}

ResourceExists RuntimeExecutor::ResourceLookup() {
  return [this](std::string_view kind, const std::string& name) {
    ResourceKind wanted = kind == "service"         ? ResourceKind::kDeploymentService
                          : kind == "job"           ? ResourceKind::kJob
                          : kind == "build service" ? ResourceKind::kBuildService
                                                    : ResourceKind::kAddon;
    auto found = d_.resources->Find(wanted, name);
    return !found || found->has_value();  // a lookup that failed is left to the node itself
  };
}

NodeOutcome RuntimeExecutor::Execute(const NodeContext& ctx) {
  if (auto kind = runtime::ResourceKindOfNode(ctx.kind)) return Declare(ctx, *kind);
  if (ctx.kind == "Build" || ctx.kind == "BuildSource") return Build(ctx);
  if (ctx.kind == "Release") return Release(ctx);
  if (ctx.kind == "JobRun") return JobRun(ctx, Text(ctx.spec, {"jobId"}), ctx.spec.Find("runtimeEnvironment"), nullptr);
  if (ctx.kind == "AddonBackup") return Backup(ctx);
  if (ctx.kind == "Action") return Action(ctx);
  if (ctx.kind == "Condition") return Condition(ctx);
  if (ctx.kind == "Message") return Message(ctx);
  return NodeOutcome::Failure("node kind " + Quoted(ctx.kind) + " is not supported by the process runtime");
}

// ---- resources ----

NodeOutcome RuntimeExecutor::Declare(const NodeContext& ctx, ResourceKind kind) {
  if (kind == ResourceKind::kAddon) return DeclareAddon(ctx);
  // Check the spec reads before storing it, so a bad one never replaces a good one.
  Resource candidate{kind, Text(ctx.spec, {"name"}), ctx.kind, ctx.spec, 0, 0, ""};
  std::optional<Error> invalid;
  if (auto r = runtime::ReadBuildService(candidate); kind == ResourceKind::kBuildService && !r) invalid = r.error();
  if (auto r = runtime::ReadService(candidate); kind == ResourceKind::kDeploymentService && !r) invalid = r.error();
  if (auto r = runtime::ReadJob(candidate); kind == ResourceKind::kJob && !r) invalid = r.error();
  if (invalid) return FailWith(*invalid);
  auto up = d_.resources->Upsert(ctx.kind, ctx.spec);
  if (!up) return FailWith(up.error());
  ctx.log(std::string(up->created   ? "declared "
                      : up->changed ? "updated "
                                    : "unchanged: ") +
          std::string(runtime::ResourceNoun(kind)) + " " + up->resource.name);
  if (kind == ResourceKind::kDeploymentService) return DeclareService(ctx, *up);
  if (kind == ResourceKind::kJob) return DeclareJob(ctx, *up);
  json::Value data = json::Value::Object({{"id", Str(up->resource.name)}, {"name", Str(up->resource.name)}});
  if (kind == ResourceKind::kBuildService) {
    data.Set("repository", Str(Text(ctx.spec, {"vcsData", "repository"})));
    data.Set("branch", Str(Text(ctx.spec, {"vcsData", "projectBranch"})));
  }
  if (kind == ResourceKind::kSecretGroup) {
    json::Value keys = json::Value::Array();
    if (const json::Value* vars = ctx.spec.Find("secrets"); vars && vars->Find("variables")) {
      for (const auto& [k, v] : vars->Find("variables")->members()) keys.items().push_back(Str(k));
    }
    data.Set("keys", std::move(keys));  // names only: values never leave the state database
  }
  return NodeOutcome::Success(std::move(data));
}

NodeOutcome RuntimeExecutor::DeclareAddon(const NodeContext& ctx) {
  runtime::AddonSpec spec;
  spec.name = Text(ctx.spec, {"name"});
  auto type = runtime::ParseAddonType(Text(ctx.spec, {"type"}));
  if (!type) return FailWith(type.error());
  spec.type = *type;
  auto existing = d_.addons->FindAddon(spec.name);
  if (!existing) return FailWith(existing.error());
  Result<runtime::Addon> addon = Fail("");
  if (const json::Value* source = ctx.spec.Find("source"); source && !*existing) {
    std::string from = Text(*source, {"addonId"}), backup = Text(*source, {"backupId"});
    if (backup.empty()) backup = std::string(runtime::kLatestBackup);
    ctx.log("forking addon " + spec.name + " from backup " + backup + " of " + from);
    addon = d_.addons->ForkAddon(spec, from, backup);
  } else {
    addon = d_.addons->EnsureAddon(spec);
  }
  if (!addon) return FailWith(addon.error());
  if (auto up = d_.resources->Upsert(ctx.kind, ctx.spec); !up) return FailWith(up.error());
  json::Value env = json::Value::Object();
  for (const auto& [k, v] : addon->env) env.Set(k, Str(v));  // addon->secret_env stays out
  bool sqlite = addon->type == runtime::AddonType::kSqlite;
  return NodeOutcome::Success(json::Value::Object({{"id", Str(addon->name)},
                                                   {"name", Str(addon->name)},
                                                   {"type", Str(std::string(runtime::AddonTypeName(addon->type)))},
                                                   {sqlite ? "path" : "database", Str(addon->location)},
                                                   {"env", std::move(env)}}));
}

Result<std::optional<BuildRecord>> RuntimeExecutor::DeclaredBuild(const runtime::WorkloadConfig& w) {
  std::optional<BuildRef> ref;
  if (!w.build_id.empty())
    ref = ParseBuildId(w.build_id, w.build_service);
  else if (!w.build_sha.empty())
    ref = BuildRef{w.build_service, w.build_sha};
  if (!ref) return std::optional<BuildRecord>();
  if (ref->service.empty()) {
    return Fail(Quoted(w.name) + ": deployment.internal names build " + Quoted(w.build_id + w.build_sha) +
                " but no build service (deployment.internal.id)");
  }
  auto build = SucceededBuild(*ref);
  if (!build) return std::unexpected(build.error());
  if (!*build) return Fail("build " + ref->id() + " does not exist or did not succeed; build it first (a Build node)");
  return build;
}

NodeOutcome RuntimeExecutor::DeclareService(const NodeContext& ctx, const runtime::UpsertOutcome& up) {
  auto cfg = runtime::ReadService(up.resource);
  if (!cfg) return FailWith(cfg.error());
  json::Value data = json::Value::Object({{"id", Str(cfg->name)}, {"name", Str(cfg->name)}});
  auto build = DeclaredBuild(*cfg);
  if (!build) return NodeOutcome::Failure("service " + Quoted(cfg->name) + ": " + build.error().message);
  auto status = d_.services->Get(cfg->name);
  if (!status) return FailWith(status.error());
  std::string current = *status && (*status)->state == runtime::ServiceState::kRunning ? (*status)->build : "";
  if (!*build) {
    data.Set("build", Str(current));
    if (*status) data.Set("port", Num((*status)->port));
    return NodeOutcome::Success(std::move(data));
  }
  std::string wanted = (*build)->service + "@" + (*build)->commit;
  if (current == wanted && !up.changed) {
    ctx.log("service " + cfg->name + " already runs " + wanted);
    data.Set("build", Str(wanted));
    data.Set("port", Num((*status)->port));
    return NodeOutcome::Success(std::move(data));
  }
  json::Value detail = json::Value::Object({{"id", Str(cfg->name)},
                                            {"name", Str(cfg->name)},
                                            {"target", Str(cfg->name)},
                                            {"targetType", Str("service")},
                                            {"build", Str(wanted)},
                                            {"previousBuild", Str(current)}});
  return Journaled(ctx, std::move(detail), [&] {
    auto deployed = DeployToService(ctx, up.resource, **build, current);
    if (!deployed) return FailWith(deployed.error());
    deployed->Set("id", Str(cfg->name));
    deployed->Set("name", Str(cfg->name));
    return NodeOutcome::Success(std::move(*deployed));
  });
}

NodeOutcome RuntimeExecutor::DeclareJob(const NodeContext& ctx, const runtime::UpsertOutcome& up) {
  auto cfg = runtime::ReadJob(up.resource);
  if (!cfg) return FailWith(cfg.error());
  auto build = DeclaredBuild(*cfg);
  if (!build) return NodeOutcome::Failure("job " + Quoted(cfg->name) + ": " + build.error().message);
  std::string deployed = up.resource.deployed_build;
  if (*build) {
    std::string wanted = (*build)->service + "@" + (*build)->commit;
    if (wanted != deployed) {
      if (auto s = d_.resources->SetDeployedBuild(cfg->name, wanted); !s) return FailWith(s.error());
      ctx.log("job " + cfg->name + " now runs " + wanted);
      deployed = wanted;
    }
  }
  return NodeOutcome::Success(
      json::Value::Object({{"id", Str(cfg->name)}, {"name", Str(cfg->name)}, {"build", Str(deployed)}}));
}

// ---- after a restart ----

NodeOutcome RuntimeExecutor::Recheck(const NodeContext& ctx, const json::Value& recorded) {
  if (ctx.kind == "Condition") return Condition(ctx);  // stateless: look again
  auto found = d_.resources->FindExecution(ctx.run_id, ctx.node_path, ctx.attempt);
  if (!found) return FailWith(found.error());
  // Nothing journaled: the node never touched the runtime (or only declared
  // resources, which is idempotent). Doing it now is its first time.
  if (!*found) return Execute(ctx);
  const Execution& e = **found;
  if (e.finished) return OutcomeFromJson(e.outcome);
  if (ctx.kind == "Build" || ctx.kind == "BuildSource") return RecheckBuild(ctx, e);
  if (ctx.kind == "JobRun" || (ctx.kind == "Action" && !Text(e.detail, {"job"}).empty())) {
    return RecheckJobRun(ctx, e, recorded);
  }
  if (ctx.kind == "Release" || ctx.kind == "DeploymentService") return RecheckRelease(ctx, e);
  if (ctx.kind == "AddonBackup") return RecheckBackup(ctx, e);
  NodeOutcome out = NodeOutcome::Failure(
      "the daemon stopped while this " + ctx.kind +
      " ran; it is not run again so that it cannot happen twice: check its effect and run it by hand if needed");
  (void)d_.resources->RecordOutcome(ctx.run_id, ctx.node_path, ctx.attempt, OutcomeToJson(out));
  return out;
}

}  // namespace executor_internal

std::unique_ptr<NodeExecutor> MakeRuntimeExecutor(RuntimeDeps deps) {
  return std::make_unique<executor_internal::RuntimeExecutor>(std::move(deps));
}

}  // namespace gitopsd::runner
