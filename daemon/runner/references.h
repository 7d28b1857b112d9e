// The resources a flow's nodes name, so that the dry run can refuse a flow
// that names a service, job, addon or build service which neither exists
// nor is declared by a node of the same flow — before anything executes.
//
// Kinds are spelled as users read them: "service", "job", "addon",
// "build service". Names are taken from resolved nodes; a name still
// holding a `${refs...}` placeholder (an output known only at run time) is
// not returned.
#pragma once
#include <optional>
#include <string>
#include <vector>

#include "sync/json.h"

namespace gitopsd::runner {

struct NamedResource {
  std::string kind;   // "service", "job", "addon", "build service"
  std::string name;
  std::string where;  // JSON path of the name: "spec.spec.steps[1].spec.jobId"
};

// What `node` (resolved; at JSON path `where`) uses by name: JobRun jobId,
// AddonBackup addonId, Build id, Release origin and target, the data of
// Condition (Service running, JobRun success) and Action nodes.
std::vector<NamedResource> UsedResources(const json::Value& node, const std::string& where);

// What `node` declares by name: DeploymentService / CombinedService (a
// service; CombinedService a build service too), ManualJob / Job / CronJob,
// Addon, BuildService.
std::vector<NamedResource> DeclaredResources(const json::Value& node, const std::string& where);

}  // namespace gitopsd::runner
