// Build and Release nodes of the runtime executor: building a build
// service's commit, and releasing a build to a service (a deploy) or a job.
#include <memory>
#include <utility>

#include "daemon/runner/executor_internal.h"
#include "sync/git.h"

namespace gitopsd::runner::executor_internal {

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

}  // namespace gitopsd::runner::executor_internal
