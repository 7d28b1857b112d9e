// The bridge from a run's nodes to the runtime on this host: what each node
// kind the engine hands over (engine.h's NodeExecutor) does with builds,
// jobs, services, addons and the resources Templates declared.
//
// Node kinds and their response data (what ${refs.<ref>.<field>} reads):
//   Addon                  ensure the database (fork it from spec.source when
//                          new)                      {id, name, type, path | database, env}
//   BuildService, SecretGroup  declare it            {id, name, ...}  (never secret values)
//   DeploymentService      declare it; deploy deployment.internal's build when
//                          it names one and the service does not already run
//                          it with this spec         {id, name, build, port}
//   ManualJob / Job        declare it; deployment.internal's build becomes its
//                          deployed build            {id, name, build}
//   Build {id, branch | sha}   check out and build   {id: "<service>@<commit>", service, commit, branch, status}
//   Release type build {origin {id, branch, build: "latest" | build id | sha},
//                       target {id, type service | job}}
//                          service: deploy (start, health, stop the old one);
//                          job: set its deployed build
//                                                    {target, targetType, build, commit, previousBuild, port?}
//                          previousBuild ("" when none) is what a rollback
//                          redeploys.
//   Release type deployment {origin {id, type service | job}, target {id, type}}
//                          promote: the build the origin service runs (or the
//                          origin job is set to run) goes to the target, as above
//   JobRun {jobId, runtimeEnvironment?}  run the job's deployed build
//                                                    {jobId, runId, build, exitCode, attempts, state}
//   AddonBackup {addonId}  back it up                {id, addonId, size, path, status}
//   Action                 Service restart | execute, Job execute,
//                          AddonBackup restore {addonId, backupId | "latest"}
//   Condition              Service running, Addon running, Build / JobRun /
//                          AddonBackup success: kWaiting until true, failure
//                          once it definitively failed
//   Message RAW_WEBHOOK    POST {"message": ...} as JSON to webhookUrl (http://
//                          only; 5 s timeout); a non-2xx answer fails the node
//
// What callers can rely on:
//  - A missing resource is a failure naming it: `job "shop-migrate" does not
//    exist; declare it in a Template`.
//  - Before a node touches the runtime, what it is about to do is journaled
//    (ResourceRegistry::RecordStart), and its outcome once known. Recheck
//    after a restart answers from that journal and the runtime's own records
//    (a build's record, the job run started after the journal entry, the
//    service's current build, the job's deployed build, the addon's backups);
//    only work that provably never started is executed again. An Action or
//    Message cut off mid-way fails rather than running twice.
//  - Secret values (secret groups, PGPASSWORD) reach child environments only;
//    they are never put into response data or node logs.
//  - Thread-safe: nodes of parallel branches run concurrently.
//
// Build, JobRun, Action execute and deploys block until done whatever
// `condition` says; they watch ctx.abandoned (a cancelled run or a node
// timeout stops the process; a deploy's new process is stopped and the old
// one kept). A job adopted after a restart is not stopped by a cancel.
// Not yet: https webhooks.
#pragma once
#include <chrono>
#include <functional>
#include <memory>
#include <string>

#include "daemon/forge_api.h"
#include "daemon/runner/engine.h"
#include "sync/status.h"

namespace gitopsd::git {
class Repository;
}
namespace gitopsd::runtime {
class BuildRunner;
class JobRunner;
class ServiceManager;
class Addons;
class ResourceRegistry;
}  // namespace gitopsd::runtime

namespace gitopsd::runner {

using daemon::ForgeApiAccess;

struct RuntimeDeps {
  runtime::BuildRunner* builds = nullptr;
  runtime::JobRunner* jobs = nullptr;
  runtime::ServiceManager* services = nullptr;
  runtime::Addons* addons = nullptr;
  runtime::ResourceRegistry* resources = nullptr;  // also holds the journal
  // A fresh handle on the configured repository's bare mirror (libgit2
  // handles are per thread); an error names an unknown repository.
  std::function<Result<std::unique_ptr<git::Repository>>(const std::string& repository)> open_mirror{};
  // The fetched head commit of `branch` of the configured repository.
  std::function<Result<std::string>(const std::string& repository, const std::string& branch)> head_of{};
  // The forge API of the configured repository a VCS Message's repoUrl (or
  // repository name) names; an error says why there is none. Unset: none.
  std::function<Result<ForgeApiAccess>(const std::string& repo_url)> forge_api{};
  std::chrono::milliseconds message_timeout = std::chrono::seconds(5);
  // Action execute: when data.timeoutDuration does not say.
  std::chrono::milliseconds execute_timeout = std::chrono::minutes(10);
};

// REQUIRES: every pointer of `deps` is set and outlives the executor.
std::unique_ptr<NodeExecutor> MakeRuntimeExecutor(RuntimeDeps deps);

}  // namespace gitopsd::runner
