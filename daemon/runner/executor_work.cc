// JobRun, AddonBackup, Action and Condition nodes of the runtime executor:
// running jobs and commands, backing up and restoring addons, and waiting
// for the runtime to reach a state.
#include <algorithm>
#include <filesystem>
#include <optional>
#include <utility>

#include "daemon/runner/executor_internal.h"

namespace gitopsd::runner::executor_internal {

namespace fs = std::filesystem;
using std::chrono::milliseconds;

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
                        // A daemon shutdown (cancelled, not abandoned): the job goes on, adopted at the next start.
                        .leave = [&ctx] { return ctx.cancelled && ctx.cancelled() && !(ctx.abandoned && ctx.abandoned()); },
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

}  // namespace gitopsd::runner::executor_internal
