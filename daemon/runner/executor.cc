#include "daemon/runner/executor.h"

#include <Poco/Exception.h>
#include <Poco/Net/HTTPClientSession.h>
#include <Poco/Net/HTTPRequest.h>
#include <Poco/Net/HTTPResponse.h>
#include <Poco/Timespan.h>
#include <Poco/URI.h>

#include <algorithm>
#include <charconv>
#include <filesystem>
#include <istream>
#include <optional>
#include <sstream>
#include <utility>

#include "daemon/runtime/addons.h"
#include "daemon/runtime/builds.h"
#include "daemon/runtime/jobs.h"
#include "daemon/runtime/launcher.h"
#include "daemon/runtime/resources.h"
#include "daemon/runtime/services.h"
#include "sync/git.h"

namespace gitopsd::runner {
namespace {

namespace fs = std::filesystem;
using runtime::BuildRecord;
using runtime::Execution;
using runtime::Resource;
using runtime::ResourceKind;
using std::chrono::milliseconds;

// ---- small JSON helpers ----

json::Value Str(std::string s) { return json::Value::String(std::move(s)); }
json::Value Num(double d) { return json::Value::Number(d); }

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

// "<service>@<commit>", or a bare commit of `service`.
struct BuildRef {
  std::string service, commit;
  std::string id() const { return service + "@" + commit; }
};

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

class RuntimeExecutor final : public NodeExecutor {
 public:
  explicit RuntimeExecutor(RuntimeDeps deps) : d_(std::move(deps)) {}

  NodeOutcome Execute(const NodeContext& ctx) override;
  NodeOutcome Recheck(const NodeContext& ctx, const json::Value& recorded) override;
  ResourceExists ResourceLookup() override;

 private:
  // Records `detail` before `work` touches the runtime and its outcome after.
  template <class Work>
  NodeOutcome Journaled(const NodeContext& ctx, json::Value detail, Work&& work);

  NodeOutcome Declare(const NodeContext& ctx, ResourceKind kind);
  NodeOutcome DeclareAddon(const NodeContext& ctx);
  NodeOutcome DeclareService(const NodeContext& ctx, const runtime::UpsertOutcome& up);
  NodeOutcome DeclareJob(const NodeContext& ctx, const runtime::UpsertOutcome& up);
  NodeOutcome Build(const NodeContext& ctx);
  NodeOutcome Release(const NodeContext& ctx);
  NodeOutcome JobRun(const NodeContext& ctx, const std::string& job_id, const json::Value* env_overrides,
                     const json::Value* command);
  NodeOutcome Backup(const NodeContext& ctx);
  NodeOutcome Action(const NodeContext& ctx);
  NodeOutcome ServiceExecute(const NodeContext& ctx, const json::Value& data);
  NodeOutcome Condition(const NodeContext& ctx);
  NodeOutcome Message(const NodeContext& ctx);

  NodeOutcome RecheckBuild(const NodeContext& ctx, const Execution& e);
  NodeOutcome RecheckJobRun(const NodeContext& ctx, const Execution& e, const json::Value& recorded);
  NodeOutcome RecheckRelease(const NodeContext& ctx, const Execution& e);
  NodeOutcome RecheckBackup(const NodeContext& ctx, const Execution& e);

  // The build a Release's origin names: a build id, a commit, or the newest
  // successful build of the branch ("latest").
  Result<BuildRecord> OriginBuild(const json::Value& origin);
  // What a Release of type deployment promotes: the build its origin service
  // runs or its origin job is set to run.
  Result<BuildRecord> PromotedBuild(const json::Value& origin);
  Result<std::optional<BuildRecord>> SucceededBuild(const BuildRef& ref);
  // The build a service or job declares in deployment.internal, if any.
  Result<std::optional<BuildRecord>> DeclaredBuild(const runtime::WorkloadConfig& w);
  Result<json::Value> DeployToService(const NodeContext& ctx, const Resource& service, const BuildRecord& build,
                                      const std::string& previous);
  // The build a deployed service runs, from its status.
  Result<std::pair<runtime::ServiceStatus, BuildRecord>> RunningBuild(const std::string& service);
  // `streamed`: its output already went to the node log line by line.
  NodeOutcome JobRunOutcome(const NodeContext& ctx, const runtime::JobRun& run, bool streamed = false);

  RuntimeDeps d_;
};

template <class Work>
NodeOutcome RuntimeExecutor::Journaled(const NodeContext& ctx, json::Value detail, Work&& work) {
  Execution e;
  e.run_id = ctx.run_id;
  e.node_path = ctx.node_path;
  e.attempt = ctx.attempt;
  e.kind = ctx.kind;
  e.detail = std::move(detail);
  e.started_at = runtime::NowMillis();
  if (auto s = d_.resources->RecordStart(e); !s) {
    return NodeOutcome::Failure("not started: cannot record what this node starts (" + s.error().message + ")");
  }
  NodeOutcome out = work();
  if (out.status != NodeOutcome::Status::kWaiting) {
    if (auto s = d_.resources->RecordOutcome(ctx.run_id, ctx.node_path, ctx.attempt, OutcomeToJson(out)); !s) {
      ctx.log("warning: cannot record the outcome: " + s.error().message);
    }
  }
  return out;
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

// ---- builds ----

Result<std::optional<BuildRecord>> RuntimeExecutor::SucceededBuild(const BuildRef& ref) {
  auto found = d_.builds->Find(ref.service, ref.commit);
  if (!found) return std::unexpected(found.error());
  if (!*found || !(*found)->succeeded()) return std::optional<BuildRecord>();
  return found;
}

NodeOutcome RuntimeExecutor::Build(const NodeContext& ctx) {
  const std::string id = Text(ctx.spec, {"id"});
  if (Text(ctx.spec, {"type"}) == "job") {
    return NodeOutcome::Failure("Build of job " + Quoted(id) +
                                ": jobs run builds of a build service here; build the build service instead");
  }
  auto resource = d_.resources->Require(ResourceKind::kBuildService, id);
  if (!resource) return FailWith(resource.error());
  auto cfg = runtime::ReadBuildService(*resource);
  if (!cfg) return FailWith(cfg.error());
  std::string branch = Text(ctx.spec, {"branch"}), sha = Text(ctx.spec, {"sha"});
  if (ctx.kind == "BuildSource" && branch.empty() && sha.empty()) {
    branch = Text(ctx.spec, {"defaults", "branch"});
    sha = Text(ctx.spec, {"defaults", "sha"});
  }
  if (branch.empty() && sha.empty()) {
    if (!Text(ctx.spec, {"pullRequestId"}).empty()) {
      return NodeOutcome::Failure("Build of " + id +
                                  ": a pull request is built from its sha; give spec.sha (e.g. ${refs.app.sha})");
    }
    branch = cfg->branch;
  }
  auto mirror = d_.open_mirror(cfg->repository);
  if (!mirror) return FailWith(mirror.error());
  std::string commit = sha;
  if (commit.empty()) {
    if (branch.empty()) return NodeOutcome::Failure("Build of " + id + ": give a branch or a sha");
    auto head = d_.head_of(cfg->repository, branch);
    if (!head) return FailWith(head.error());
    commit = *head;
  }
  if (!(*mirror)->HasCommit(commit)) {
    return NodeOutcome::Failure("Build of " + id + ": commit " + commit + " is not in the mirror of repository " +
                                Quoted(cfg->repository) + "; is it on a branch gitopsd fetches?");
  }
  json::Value detail = json::Value::Object({{"service", Str(id)}, {"commit", Str(commit)}, {"branch", Str(branch)}});
  return Journaled(ctx, std::move(detail), [&] {
    ctx.log("building " + id + " at " + commit + (branch.empty() ? "" : " (" + branch + ")"));
    runtime::BuildSpec spec{
        .service = id,
        .command = cfg->command,
        .env = cfg->env,
        .timeout = cfg->timeout,
        .abandon = ctx.abandoned,
        .output = ProcessOutput(ctx)};
    auto record = d_.builds->Build(spec, **mirror, commit);
    if (!record) return FailWith(record.error());
    if (!record->succeeded()) {
      return NodeOutcome::Failure("build of " + id + " at " + commit + " failed: " + record->error +
                                  (record->log_tail.empty() ? "" : "\n" + record->log_tail));
    }
    if (record->cached) ctx.log("reused the earlier successful build of " + commit);
    return NodeOutcome::Success(BuildData(*record, branch));
  });
}

NodeOutcome RuntimeExecutor::RecheckBuild(const NodeContext& ctx, const Execution& e) {
  auto found = d_.builds->Find(Text(e.detail, {"service"}), Text(e.detail, {"commit"}));
  if (!found) return FailWith(found.error());
  if (!*found) return Execute(ctx);  // journaled, but the build was never recorded: it never started
  if ((*found)->state == runtime::BuildState::kRunning) return NodeOutcome::Waiting();
  NodeOutcome out = (*found)->succeeded() ? NodeOutcome::Success(BuildData(**found, Text(e.detail, {"branch"})))
                                          : NodeOutcome::Failure("build of " + (*found)->service + " at " +
                                                                 (*found)->commit + " failed: " + (*found)->error);
  (void)d_.resources->RecordOutcome(ctx.run_id, ctx.node_path, ctx.attempt, OutcomeToJson(out));
  return out;
}

// ---- releases ----

Result<BuildRecord> RuntimeExecutor::OriginBuild(const json::Value& origin) {
  const std::string service = Text(origin, {"id"});
  const std::string build = Text(origin, {"build"}), sha = Text(origin, {"sha"}), branch = Text(origin, {"branch"});
  if (service.empty()) return Fail("Release: origin.id must name a build service");
  if ((!build.empty() && build != "latest") || !sha.empty()) {
    BuildRef ref = !sha.empty() ? BuildRef{service, sha} : ParseBuildId(build, service);
    if (ref.service != service) {
      return Fail("Release: build " + ref.id() + " is not a build of origin " + Quoted(service));
    }
    auto found = SucceededBuild(ref);
    if (!found) return std::unexpected(found.error());
    if (!*found) return Fail("build " + ref.id() + " does not exist or did not succeed; build it first (a Build node)");
    return std::move(**found);
  }
  auto builds = d_.builds->List(service);
  if (!builds) return std::unexpected(builds.error());
  std::optional<std::string> head;
  std::unique_ptr<git::Repository> mirror;
  if (!branch.empty()) {
    auto resource = d_.resources->Require(ResourceKind::kBuildService, service);
    if (!resource) return std::unexpected(resource.error());
    auto cfg = runtime::ReadBuildService(*resource);
    if (!cfg) return std::unexpected(cfg.error());
    auto h = d_.head_of(cfg->repository, branch);
    if (!h) return std::unexpected(h.error());
    auto m = d_.open_mirror(cfg->repository);
    if (!m) return std::unexpected(m.error());
    head = *h;
    mirror = std::move(*m);
  }
  for (const BuildRecord& b : *builds) {  // newest first
    if (b.succeeded() && (!head || mirror->IsAncestor(b.commit, *head))) return b;
  }
  return Fail("build service " + Quoted(service) + " has no successful build" +
              (branch.empty() ? "" : " of branch " + Quoted(branch)) + "; add a Build node before the Release");
}

Result<BuildRecord> RuntimeExecutor::PromotedBuild(const json::Value& origin) {
  const std::string id = Text(origin, {"id"}), type = Text(origin, {"type"});
  if (type == "service") {
    auto running = RunningBuild(id);
    if (!running) return std::unexpected(running.error());
    if (running->first.state == runtime::ServiceState::kStopped) {
      return Fail("service " + Quoted(id) + " is stopped: it has no build to promote");
    }
    return std::move(running->second);
  }
  if (type != "job") {
    return Fail("Release type \"deployment\": origin.type must be \"service\" or \"job\", not " + Quoted(type));
  }
  auto job = d_.resources->Require(ResourceKind::kJob, id);
  if (!job) return std::unexpected(job.error());
  if (job->deployed_build.empty()) return Fail("job " + Quoted(id) + " has no build to promote: release one to it first");
  BuildRef ref = ParseBuildId(job->deployed_build, "");
  auto build = SucceededBuild(ref);
  if (!build) return std::unexpected(build.error());
  if (!*build) return Fail("job " + Quoted(id) + " runs build " + ref.id() + ", which is gone");
  return std::move(**build);
}

Result<json::Value> RuntimeExecutor::DeployToService(const NodeContext& ctx, const Resource& service,
                                                     const BuildRecord& build, const std::string& previous) {
  auto cfg = runtime::ReadService(service);
  if (!cfg) return std::unexpected(cfg.error());
  auto env = d_.resources->RuntimeEnvironment(service, *d_.addons);
  if (!env) return std::unexpected(env.error());
  const std::string id = build.service + "@" + build.commit;
  ctx.log("deploying " + id + " to service " + service.name +
          (previous.empty() ? "" : " (replacing " + previous + ")"));
  runtime::ServiceSpec spec{.service = service.name,
                            .build = id,
                            .build_dir = build.dir,
                            .command = cfg->command,
                            .env = std::move(*env),
                            .health = cfg->health,
                            .abandon = ctx.abandoned};
  if (auto s = d_.services->Deploy(spec); !s) return std::unexpected(s.error());
  auto status = d_.services->Get(service.name);
  if (!status) return std::unexpected(status.error());
  int port = *status ? (*status)->port : 0;
  ctx.log("service " + service.name + " runs " + id + " on port " + std::to_string(port));
  return json::Value::Object({{"target", Str(service.name)},
                              {"targetType", Str("service")},
                              {"build", Str(id)},
                              {"commit", Str(build.commit)},
                              {"previousBuild", Str(previous)},
                              {"port", Num(port)}});
}

NodeOutcome RuntimeExecutor::Release(const NodeContext& ctx) {
  const std::string type = Text(ctx.spec, {"type"});
  if (type != "build" && type != "deployment") {
    return NodeOutcome::Failure("Release type " + Quoted(type) + " is not supported; use \"build\" or \"deployment\"");
  }
  const std::string target = Text(ctx.spec, {"target", "id"}), target_type = Text(ctx.spec, {"target", "type"});
  const json::Value* origin = ctx.spec.Find("origin");
  if (!origin) return NodeOutcome::Failure("Release: spec.origin is missing");
  bool to_service = target_type == "service";
  if (!to_service && target_type != "job") {
    return NodeOutcome::Failure("Release: target.type must be \"service\" or \"job\", not " + Quoted(target_type));
  }
  auto resource = d_.resources->Require(to_service ? ResourceKind::kDeploymentService : ResourceKind::kJob, target);
  if (!resource) return FailWith(resource.error());
  auto build = type == "build" ? OriginBuild(*origin) : PromotedBuild(*origin);
  if (!build) return FailWith(build.error());
  const std::string id = build->service + "@" + build->commit;
  std::string previous = resource->deployed_build;
  if (to_service) {
    auto status = d_.services->Get(target);
    if (!status) return FailWith(status.error());
    previous = *status && (*status)->state != runtime::ServiceState::kStopped ? (*status)->build : "";
  }
  json::Value detail = json::Value::Object({{"target", Str(target)},
                                            {"targetType", Str(target_type)},
                                            {"build", Str(id)},
                                            {"commit", Str(build->commit)},
                                            {"previousBuild", Str(previous)}});
  json::Value data = detail;
  return Journaled(ctx, std::move(detail), [&] {
    if (to_service) {
      auto deployed = DeployToService(ctx, *resource, *build, previous);
      return deployed ? NodeOutcome::Success(std::move(*deployed)) : FailWith(deployed.error());
    }
    if (auto s = d_.resources->SetDeployedBuild(target, id); !s) return FailWith(s.error());
    ctx.log("job " + target + " now runs " + id + (previous.empty() ? "" : " (was " + previous + ")"));
    return NodeOutcome::Success(std::move(data));
  });
}

NodeOutcome RuntimeExecutor::RecheckRelease(const NodeContext& ctx, const Execution& e) {
  const std::string target = Text(e.detail, {"target"}), build_id = Text(e.detail, {"build"});
  json::Value data = e.detail;
  NodeOutcome out;
  if (Text(e.detail, {"targetType"}) == "job") {
    auto job = d_.resources->Require(ResourceKind::kJob, target);
    if (!job) return FailWith(job.error());
    if (job->deployed_build != build_id) {
      if (auto s = d_.resources->SetDeployedBuild(target, build_id); !s) return FailWith(s.error());
    }
    out = NodeOutcome::Success(std::move(data));
  } else {
    auto status = d_.services->Get(target);
    if (!status) return FailWith(status.error());
    if (*status && (*status)->state == runtime::ServiceState::kRunning && (*status)->build == build_id) {
      data.Set("port", Num((*status)->port));
      out = NodeOutcome::Success(std::move(data));
    } else {
      // The deploy did not take: the old process kept serving. Deploy the
      // journaled build again (not whatever "latest" means now).
      ctx.log("the deploy of " + build_id + " to " + target +
              " did not complete before the daemon stopped; deploying again");
      auto service = d_.resources->Require(ResourceKind::kDeploymentService, target);
      if (!service) return FailWith(service.error());
      BuildRef ref = ParseBuildId(build_id, "");
      auto build = SucceededBuild(ref);
      if (!build) return FailWith(build.error());
      if (!*build) return NodeOutcome::Failure("build " + build_id + " is gone; run the release again");
      auto deployed = DeployToService(ctx, *service, **build, Text(e.detail, {"previousBuild"}));
      out = deployed ? NodeOutcome::Success(std::move(*deployed)) : FailWith(deployed.error());
    }
  }
  (void)d_.resources->RecordOutcome(ctx.run_id, ctx.node_path, ctx.attempt, OutcomeToJson(out));
  return out;
}

// ---- jobs ----

NodeOutcome RuntimeExecutor::JobRunOutcome(const NodeContext& ctx, const runtime::JobRun& run, bool streamed) {
  // Not streamed (a run adopted after a restart): the output once, when the
  // run has ended; a re-check of a job still running must not copy it into
  // the node log again.
  if (run.state == runtime::JobState::kRunning) return NodeOutcome::Waiting(JobRunData(run));
  std::string tail = streamed ? "" : runtime::ReadTail(run.log_path, 20);
  if (!tail.empty()) ctx.log("job " + run.job + " run " + std::to_string(run.id) + " output (last lines):\n" + tail);
  if (run.succeeded()) return NodeOutcome::Success(JobRunData(run));
  const std::string how = run.attempts == 0 ? ") could not start: "
                                             : ") failed after " + std::to_string(run.attempts) + " attempt(s): ";
  return NodeOutcome::Failure("job " + Quoted(run.job) + " run " + std::to_string(run.id) + " (" + run.build + how +
                              run.error);
}

NodeOutcome RuntimeExecutor::JobRun(const NodeContext& ctx, const std::string& job_id, const json::Value* env_overrides,
                                    const json::Value* command) {
  if (job_id.empty()) return NodeOutcome::Failure("JobRun: spec.jobId must name a job");
  auto job = d_.resources->Require(ResourceKind::kJob, job_id);
  if (!job) return FailWith(job.error());
  auto cfg = runtime::ReadJob(*job);
  if (!cfg) return FailWith(cfg.error());
  if (job->deployed_build.empty()) {
    return NodeOutcome::Failure(
        "job " + Quoted(job_id) + " has no build to run: release one to it first (a Release node with target {id: " +
        Quoted(job_id) + ", type: \"job\"}) or set deployment.internal.buildId in its Template");
  }
  BuildRef ref = ParseBuildId(job->deployed_build, cfg->build_service);
  auto build = SucceededBuild(ref);
  if (!build) return FailWith(build.error());
  if (!*build) return NodeOutcome::Failure("job " + Quoted(job_id) + " runs build " + ref.id() + ", which is gone");
  auto overrides = StringMap(env_overrides, "JobRun spec.runtimeEnvironment");
  if (!overrides) return FailWith(overrides.error());
  auto env = d_.resources->RuntimeEnvironment(*job, *d_.addons, *overrides);
  if (!env) return FailWith(env.error());
  std::vector<std::string> argv = cfg->command;
  if (command) {
    auto custom = CommandOf(command, "Job execute");
    if (!custom) return FailWith(custom.error());
    argv = std::move(*custom);
  }
  runtime::JobSpec spec{.job = job_id,
                        .build = ref.id(),
                        .build_dir = (*build)->dir,
                        .command = std::move(argv),
                        .env = std::move(*env),
                        .active_deadline = cfg->active_deadline,
                        .backoff_limit = cfg->backoff_limit,
                        .abandon = ctx.abandoned,
                        .output = ProcessOutput(ctx)};
  json::Value detail = json::Value::Object({{"job", Str(job_id)}, {"build", Str(ref.id())}});
  return Journaled(ctx, std::move(detail), [&] {
    ctx.log("running job " + job_id + " (" + ref.id() + ")");
    auto run = d_.jobs->Run(spec);
    if (!run) return FailWith(run.error());
    return JobRunOutcome(ctx, *run, /*streamed=*/true);
  });
}

NodeOutcome RuntimeExecutor::RecheckJobRun(const NodeContext& ctx, const Execution& e, const json::Value& recorded) {
  std::optional<runtime::JobRun> found;
  if (std::string run_id = Text(recorded, {"runId"}); !run_id.empty()) {
    auto id = ParseInt(run_id);
    auto run = d_.jobs->Get(id.value_or(-1));
    if (!run) return FailWith(run.error());
    found = *run;
  }
  if (!found) {
    // The first run of the job started after the journal entry, with its build.
    auto runs = d_.jobs->List(Text(e.detail, {"job"}));
    if (!runs) return FailWith(runs.error());
    for (const runtime::JobRun& r : *runs) {  // newest first
      if (r.started_at >= e.started_at && r.build == Text(e.detail, {"build"})) found = r;
    }
  }
  if (!found) return Execute(ctx);  // journaled, but no run was ever recorded: it never started
  NodeOutcome out = JobRunOutcome(ctx, *found);
  if (out.status != NodeOutcome::Status::kWaiting) {
    (void)d_.resources->RecordOutcome(ctx.run_id, ctx.node_path, ctx.attempt, OutcomeToJson(out));
  }
  return out;
}

// ---- addons ----

NodeOutcome RuntimeExecutor::Backup(const NodeContext& ctx) {
  const std::string addon = Text(ctx.spec, {"addonId"});
  auto found = d_.addons->FindAddon(addon);
  if (!found) return FailWith(found.error());
  if (!*found) return NodeOutcome::Failure("addon " + Quoted(addon) + " does not exist; declare it in a Template");
  return Journaled(ctx, json::Value::Object({{"addonId", Str(addon)}}), [&] {
    auto backup = d_.addons->BackupAddon(addon);
    if (!backup) return FailWith(backup.error());
    ctx.log("backed up " + addon + " as " + backup->id + " (" + std::to_string(backup->size_bytes) + " bytes)");
    return NodeOutcome::Success(BackupData(*backup));
  });
}

NodeOutcome RuntimeExecutor::RecheckBackup(const NodeContext& ctx, const Execution& e) {
  auto backups = d_.addons->ListBackups(Text(e.detail, {"addonId"}));
  if (!backups) return FailWith(backups.error());
  const runtime::Backup* found = nullptr;
  for (const runtime::Backup& b : *backups) {  // newest first
    if (b.started_at_ms >= e.started_at) found = &b;
  }
  if (!found) return Execute(ctx);
  if (found->status == runtime::BackupStatus::kRunning) return NodeOutcome::Waiting();
  NodeOutcome out = found->status == runtime::BackupStatus::kSuccess
                        ? NodeOutcome::Success(BackupData(*found))
                        : NodeOutcome::Failure("backup " + found->id + " failed: " + found->error);
  (void)d_.resources->RecordOutcome(ctx.run_id, ctx.node_path, ctx.attempt, OutcomeToJson(out));
  return out;
}

// ---- actions ----

Result<std::pair<runtime::ServiceStatus, BuildRecord>> RuntimeExecutor::RunningBuild(const std::string& service) {
  auto status = d_.services->Get(service);
  if (!status) return std::unexpected(status.error());
  if (!*status || (*status)->build.empty()) {
    return Fail("service " + Quoted(service) + " is not deployed; release a build to it first");
  }
  BuildRef ref = ParseBuildId((*status)->build, "");
  auto build = SucceededBuild(ref);
  if (!build) return std::unexpected(build.error());
  if (!*build) return Fail("service " + Quoted(service) + " runs build " + ref.id() + ", which is gone");
  return std::make_pair(std::move(**status), std::move(**build));
}

NodeOutcome RuntimeExecutor::Action(const NodeContext& ctx) {
  const std::string kind = Text(ctx.spec, {"kind"}), type = Text(ctx.spec, {"spec", "type"});
  const json::Value* found = ctx.spec.Find("spec") ? ctx.spec.Find("spec")->Find("data") : nullptr;
  const json::Value data = found ? *found : json::Value::Object();
  const std::string what = "Action " + kind + " " + type;
  json::Value detail = json::Value::Object({{"action", Str(kind + " " + type)}});
  if (kind == "Service" && type == "restart") {
    const std::string service = Text(data, {"serviceId"});
    auto resource = d_.resources->Require(ResourceKind::kDeploymentService, service);
    if (!resource) return FailWith(resource.error());
    auto running = RunningBuild(service);
    if (!running) return FailWith(running.error());
    return Journaled(ctx, std::move(detail), [&] {
      auto deployed = DeployToService(ctx, *resource, running->second, running->first.build);
      return deployed ? NodeOutcome::Success(std::move(*deployed)) : FailWith(deployed.error());
    });
  }
  if (kind == "Service" && type == "execute")
    return Journaled(ctx, std::move(detail), [&] { return ServiceExecute(ctx, data); });
  if (kind == "Job" && type == "execute") {
    return JobRun(ctx, Text(data, {"jobId"}), nullptr, data.Find("command"));
  }
  if (kind == "AddonBackup" && type == "restore") {
    const std::string addon = Text(data, {"addonId"});
    std::string backup_id = Text(data, {"backupId"});
    if (backup_id.empty()) backup_id = std::string(runtime::kLatestBackup);
    auto exists = d_.addons->FindAddon(addon);
    if (!exists) return FailWith(exists.error());
    if (!*exists) return NodeOutcome::Failure("addon " + Quoted(addon) + " does not exist; declare it in a Template");
    return Journaled(ctx, std::move(detail), [&] {
      ctx.log("restoring backup " + backup_id + " of " + addon);
      auto used = d_.addons->RestoreBackup(addon, backup_id);
      if (!used) return FailWith(used.error());
      return NodeOutcome::Success(
          json::Value::Object({{"addonId", Str(addon)}, {"backupId", Str(used->id)}, {"path", Str(used->path)}}));
    });
  }
  if (kind == "Addon" && type == "restart") {
    ctx.log("addons run inside the database server or file here: nothing to restart");
    return NodeOutcome::Success(json::Value::Object({{"addonId", Str(Text(data, {"addonId"}))}}));
  }
  return NodeOutcome::Failure(what +
                              " is not supported; supported: Service restart, Service execute, Job execute, "
                              "AddonBackup restore");
}

NodeOutcome RuntimeExecutor::ServiceExecute(const NodeContext& ctx, const json::Value& data) {
  const std::string service = Text(data, {"serviceId"});
  auto resource = d_.resources->Require(ResourceKind::kDeploymentService, service);
  if (!resource) return FailWith(resource.error());
  auto argv = CommandOf(data.Find("command"), "Action Service execute");
  if (!argv) return FailWith(argv.error());
  auto running = RunningBuild(service);
  if (!running) return FailWith(running.error());
  auto env = d_.resources->RuntimeEnvironment(*resource, *d_.addons, {{"PORT", std::to_string(running->first.port)}});
  if (!env) return FailWith(env.error());
  milliseconds timeout = d_.execute_timeout;
  if (std::string t = Text(data, {"timeoutDuration"}); !t.empty()) {
    auto seconds = ParseInt(t);
    if (!seconds || *seconds < 1)
      return NodeOutcome::Failure("Action Service execute: timeoutDuration must be whole seconds, not " + Quoted(t));
    timeout = std::chrono::seconds(*seconds);
  }
  const fs::path log = fs::path(d_.resources->state_dir()) / "actions" / std::to_string(ctx.run_id) /
                       (ctx.node_path + "-" + std::to_string(ctx.attempt) + ".log");
  std::error_code ec;
  fs::create_directories(log.parent_path(), ec);
  if (const json::Value* options = data.Find("options"); options && options->Find("dispatchOnly")) {
    ctx.log("options.dispatchOnly is not supported: the command is waited for");
  }
  runtime::LaunchSpec spec{.argv = *argv, .cwd = running->second.dir, .env = std::move(*env), .log_file = log.string()};
  ctx.log("executing " + (*argv)[0] + " in service " + service + " (" + running->first.build + ")");
  auto exit = runtime::RunToCompletion(spec, timeout, std::chrono::seconds(5), ctx.abandoned);
  if (!exit) return FailWith(exit.error());
  if (std::string tail = runtime::ReadTail(log.string(), 20); !tail.empty()) ctx.log(tail);
  if (!exit->ok())
    return NodeOutcome::Failure("the command in service " + Quoted(service) + " failed: " + exit->Describe());
  return NodeOutcome::Success(json::Value::Object(
      {{"serviceId", Str(service)}, {"build", Str(running->first.build)}, {"exitCode", Num(exit->exit_code)}}));
}

// ---- conditions ----

NodeOutcome RuntimeExecutor::Condition(const NodeContext& ctx) {
  const std::string kind = Text(ctx.spec, {"kind"}), type = Text(ctx.spec, {"spec", "type"});
  const json::Value* found = ctx.spec.Find("spec") ? ctx.spec.Find("spec")->Find("data") : nullptr;
  const json::Value data = found ? *found : json::Value::Object();
  const json::Value progress = json::Value::Object({{"condition", Str(kind + " " + type)}});
  if (kind == "Service" && type == "running") {
    const std::string service = Text(data, {"serviceId"});
    if (auto r = d_.resources->Require(ResourceKind::kDeploymentService, service); !r) return FailWith(r.error());
    auto status = d_.services->Get(service);
    if (!status) return FailWith(status.error());
    if (!*status) return NodeOutcome::Waiting(progress);
    if ((*status)->state == runtime::ServiceState::kStopped) {
      return NodeOutcome::Failure("service " + Quoted(service) + " is stopped");
    }
    if ((*status)->state == runtime::ServiceState::kRunning && (*status)->healthy) {
      return NodeOutcome::Success(json::Value::Object(
          {{"serviceId", Str(service)}, {"build", Str((*status)->build)}, {"port", Num((*status)->port)}}));
    }
    return NodeOutcome::Waiting(progress);
  }
  if (kind == "Addon" && type == "running") {
    auto addon = d_.addons->FindAddon(Text(data, {"addonId"}));
    if (!addon) return FailWith(addon.error());
    if (!*addon) return NodeOutcome::Waiting(progress);
    return NodeOutcome::Success(json::Value::Object({{"addonId", Str((*addon)->name)}}));
  }
  if (kind == "Build" && type == "success") {
    BuildRef ref = ParseBuildId(Text(data, {"buildId"}), "");
    auto build = d_.builds->Find(ref.service, ref.commit);
    if (!build) return FailWith(build.error());
    if (!*build || (*build)->state == runtime::BuildState::kRunning) return NodeOutcome::Waiting(progress);
    if (!(*build)->succeeded()) return NodeOutcome::Failure("build " + ref.id() + " failed: " + (*build)->error);
    return NodeOutcome::Success(BuildData(**build, ""));
  }
  if (kind == "JobRun" && type == "success") {
    std::optional<runtime::JobRun> run;
    if (std::string id = Text(data, {"runId"}); !id.empty()) {
      auto number = ParseInt(id);
      if (!number) return NodeOutcome::Failure("Condition JobRun success: runId " + Quoted(id) + " is not a run id");
      auto got = d_.jobs->Get(*number);
      if (!got) return FailWith(got.error());
      run = *got;
    } else {
      const std::string job = Text(data, {"jobId"});
      if (auto r = d_.resources->Require(ResourceKind::kJob, job); !r) return FailWith(r.error());
      auto runs = d_.jobs->List(job);
      if (!runs) return FailWith(runs.error());
      if (!runs->empty()) run = runs->front();
    }
    if (!run || run->state == runtime::JobState::kRunning) return NodeOutcome::Waiting(progress);
    if (!run->succeeded()) return NodeOutcome::Failure("job run " + std::to_string(run->id) + " failed: " + run->error);
    return NodeOutcome::Success(JobRunData(*run));
  }
  if (kind == "AddonBackup" && type == "success") {
    auto backups = d_.addons->ListBackups(Text(data, {"addonId"}));
    if (!backups) return FailWith(backups.error());
    const std::string id = Text(data, {"backupId"});
    auto it = std::ranges::find_if(*backups, [&](const runtime::Backup& b) { return id.empty() || b.id == id; });
    if (it == backups->end() || it->status == runtime::BackupStatus::kRunning) return NodeOutcome::Waiting(progress);
    if (it->status == runtime::BackupStatus::kFailed)
      return NodeOutcome::Failure("backup " + it->id + " failed: " + it->error);
    return NodeOutcome::Success(BackupData(*it));
  }
  return NodeOutcome::Failure("Condition " + kind + " " + Quoted(type) +
                              " is not supported; supported: Service running, Addon running, Build success, "
                              "JobRun success, AddonBackup success");
}

// ---- messages ----

NodeOutcome RuntimeExecutor::Message(const NodeContext& ctx) {
  if (std::string kind = Text(ctx.spec, {"kind"}); kind != "RAW_WEBHOOK") {
    return NodeOutcome::Failure("Message kind " + Quoted(kind) + " is not supported; use RAW_WEBHOOK");
  }
  const std::string url = Text(ctx.spec, {"spec", "webhookUrl"}), message = Text(ctx.spec, {"spec", "message"});
  const json::Value* spec = ctx.spec.Find("spec");
  auto headers = StringMap(spec ? spec->Find("headers") : nullptr, "Message spec.headers");
  if (!headers) return FailWith(headers.error());
  return Journaled(ctx, json::Value::Object({{"message", Str("RAW_WEBHOOK")}}), [&] {
    std::string where;  // scheme://host:port only: a URL's path or query may hold a token
    try {
      Poco::URI uri(url);
      where = uri.getScheme() + "://" + uri.getHost() + ":" + std::to_string(uri.getPort());
      if (uri.getScheme() != "http") {
        return NodeOutcome::Failure("Message: only http:// webhook URLs are supported, not " + uri.getScheme() + "://");
      }
      Poco::Net::HTTPClientSession session(uri.getHost(), uri.getPort());
      session.setTimeout(
          Poco::Timespan(std::chrono::duration_cast<std::chrono::microseconds>(d_.message_timeout).count()));
      std::string path = uri.getPathAndQuery();
      if (path.empty()) path = "/";
      Poco::Net::HTTPRequest request(Poco::Net::HTTPRequest::HTTP_POST, path, Poco::Net::HTTPMessage::HTTP_1_1);
      std::string body;
      json::Value payload = json::Value::Object({{"message", Str(message)}});
      body = json::SerializeCompact(payload);
      request.setContentType("application/json");
      request.setContentLength(static_cast<std::streamsize>(body.size()));
      for (const auto& [k, v] : *headers) request.set(k, v);
      session.sendRequest(request) << body;
      Poco::Net::HTTPResponse response;
      std::istream& in = session.receiveResponse(response);
      std::string answer(512, '\0');
      in.read(answer.data(), static_cast<std::streamsize>(answer.size()));
      answer.resize(static_cast<size_t>(in.gcount()));
      int status = static_cast<int>(response.getStatus());
      if (status < 200 || status > 299) {
        return NodeOutcome::Failure("the webhook at " + where + " answered " + std::to_string(status) + " " +
                                    response.getReason() + (answer.empty() ? "" : ": " + answer));
      }
      ctx.log("posted the message to " + where + " (" + std::to_string(status) + ")");
      return NodeOutcome::Success(json::Value::Object({{"status", Num(status)}}));
    } catch (const Poco::Exception& e) {
      return NodeOutcome::Failure("cannot post the message to " + (where.empty() ? std::string("the webhook") : where) +
                                  ": " + e.displayText());
    } catch (const std::exception& e) {
      return NodeOutcome::Failure("cannot post the message: " + std::string(e.what()));
    }
  });
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

}  // namespace

std::unique_ptr<NodeExecutor> MakeRuntimeExecutor(RuntimeDeps deps) {
  return std::make_unique<RuntimeExecutor>(std::move(deps));
}

}  // namespace gitopsd::runner
