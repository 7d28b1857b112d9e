// The resource registry: what Templates declared, by name. A Template's
// resource nodes (Addon, BuildService, DeploymentService, ManualJob / Job,
// SecretGroup) are upserted here with their resolved spec; release flows
// then act on them by name only (grammar §2.1: "release flows act only on
// resources already in the stage").
//
// What callers can rely on:
//  - A resource is identified by (kind, name). Upserting the same name again
//    updates it in place (changed is reported only when the spec differs);
//    a renamed resource is a new one, the old name stays until removed.
//    ManualJob and Job are one kind: a job.
//  - Specs are kept as given, secret values included, in the state database
//    only (module "runtime-resources"). RedactedSpec() is what may be shown
//    or logged; nothing here logs.
//  - A job remembers the build it runs ("deployed build", set by a Release
//    to the job): a JobRun runs that build.
//  - The journal records what a run's node started on the runtime before it
//    starts it, and its outcome once known, so a node that was running when
//    the daemon died is re-verified, not started twice blindly.
//  - Errors name the resource and what to do ("job \"shop-migrate\" does not
//    exist; declare it in a Template").
//  - Thread-safe (one connection, serialised).
#pragma once
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "daemon/runtime/services.h"
#include "sync/json.h"
#include "sync/sqlite.h"
#include "sync/status.h"

namespace gitopsd::runtime {

class Addons;

enum class ResourceKind { kAddon, kBuildService, kDeploymentService, kJob, kSecretGroup };
// "Addon", "BuildService", "DeploymentService", "Job", "SecretGroup".
std::string_view ResourceKindName(ResourceKind kind);
// "addon", "build service", "service", "job", "secret group" (for messages).
std::string_view ResourceNoun(ResourceKind kind);
// The kind a Template node declares (ManualJob and Job are both kJob);
// nullopt for a node that declares no resource.
std::optional<ResourceKind> ResourceKindOfNode(std::string_view node_kind);

struct Resource {
  ResourceKind kind = ResourceKind::kAddon;
  std::string name;
  std::string node_kind;                   // as declared: "ManualJob", "Job", "Addon", ...
  json::Value spec;                        // the node's resolved spec; may hold secret values
  int64_t created_at = 0, updated_at = 0;  // ms since the epoch
  std::string deployed_build;              // jobs: the build a JobRun runs ("<service>@<commit>"), "" = none
};

// The spec with every secret value (a SecretGroup's secrets) replaced by "***".
json::Value RedactedSpec(const Resource& resource);

struct UpsertOutcome {
  Resource resource;
  bool created = false;
  bool changed = false;  // created, or the spec differs from the stored one
};

// ---- typed views of a stored spec (errors name the resource and field) ----

struct BuildServiceConfig {
  std::string name;
  std::string repository;                                        // vcsData.repository: a configured repository name
  std::string branch;                                            // vcsData.projectBranch ("" = none)
  std::vector<std::string> command;                              // buildSettings.command (argv)
  std::map<std::string, std::string> env;                        // buildArguments
  std::chrono::milliseconds timeout = std::chrono::minutes(30);  // buildSettings.timeoutSeconds
};

// What a service or job runs: a build of a build service and a command.
struct WorkloadConfig {
  std::string name;
  std::string build_service;                       // deployment.internal.id ("" = none declared)
  std::string build_id;                            // deployment.internal.buildId ("<service>@<commit>" or a commit)
  std::string build_sha;                           // deployment.internal.buildSHA
  std::string branch;                              // deployment.internal.branch
  std::vector<std::string> command;                // deployment.command (argv, relative to the build folder)
  std::map<std::string, std::string> runtime_env;  // runtimeEnvironment
};

struct ServiceConfig : WorkloadConfig {
  HealthCheck health;  // healthChecks[0]: HTTP path or TCP; none declared: TCP on PORT
};

struct JobConfig : WorkloadConfig {
  int backoff_limit = 0;                         // backoffLimit
  std::chrono::milliseconds active_deadline{0};  // activeDeadlineSeconds (0 = none)
};

Result<BuildServiceConfig> ReadBuildService(const Resource& resource);
Result<ServiceConfig> ReadService(const Resource& resource);
Result<JobConfig> ReadJob(const Resource& resource);

// ---- the journal of node executions ----

// One node attempt of a run, as the executor recorded it.
struct Execution {
  int64_t run_id = 0;
  std::string node_path{};
  int attempt = 1;
  std::string kind{};      // the node kind
  json::Value detail{};    // what it was about to do (commit, build, job...)
  int64_t started_at = 0;  // 0 = now (RecordStart)
  bool finished = false;
  json::Value outcome{};  // once finished: {"status": "success"|"failure", "data", "error"}
};

class ResourceRegistry {
 public:
  // Opens <state_dir>/state.db (module "runtime-resources").
  static Result<std::unique_ptr<ResourceRegistry>> Open(const std::string& state_dir);
  ResourceRegistry(const ResourceRegistry&) = delete;
  ResourceRegistry& operator=(const ResourceRegistry&) = delete;

  const std::string& state_dir() const { return state_dir_; }

  // Inserts or updates the resource a Template node declares. `spec` must be
  // an object with a usable "name".
  Result<UpsertOutcome> Upsert(std::string_view node_kind, const json::Value& spec);
  Result<std::optional<Resource>> Find(ResourceKind kind, const std::string& name);
  // Find, or an error: "<noun> \"<name>\" does not exist; declare it in a Template".
  Result<Resource> Require(ResourceKind kind, const std::string& name);
  // By kind, then name; nullopt = every kind.
  Result<std::vector<Resource>> List(std::optional<ResourceKind> kind = std::nullopt);
  // Forgets it (removing an unknown one succeeds). The runtime is not touched.
  Status Remove(ResourceKind kind, const std::string& name);
  // REQUIRES: the job exists.
  Status SetDeployedBuild(const std::string& job, const std::string& build);

  // The environment of a job or service, lowest precedence first: the secret
  // groups that apply to it (by ascending priority; a group applies to every
  // workload unless restrictions.restricted, then to those its nfObjects name
  // or that carry one of its restriction tags; secretType "build" groups do
  // not), each giving first its addonDependencies' connection variables
  // (all of the addon's, or the listed keyName under their aliases too), then
  // its variables; then the workload's runtimeEnvironment; then `overrides`.
  // PORT is the service manager's.
  Result<std::map<std::string, std::string>> RuntimeEnvironment(
      const Resource& workload, Addons& addons, const std::map<std::string, std::string>& overrides = {});

  // The journal (see the header comment). RecordStart replaces an earlier
  // record of the same attempt.
  Status RecordStart(const Execution& execution);
  Status RecordOutcome(int64_t run_id, const std::string& node_path, int attempt, const json::Value& outcome);
  Result<std::optional<Execution>> FindExecution(int64_t run_id, const std::string& node_path, int attempt);

 private:
  ResourceRegistry(std::string state_dir, sqlite::Database db) : state_dir_(std::move(state_dir)), db_(std::move(db)) {}
  Result<std::optional<Resource>> FindLocked(ResourceKind kind, const std::string& name);
  Result<std::vector<Resource>> ListLocked(std::optional<ResourceKind> kind);

  std::string state_dir_;
  std::mutex mu_;  // guards db_
  sqlite::Database db_;
};

}  // namespace gitopsd::runtime
