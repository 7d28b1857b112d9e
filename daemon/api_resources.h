// The runtime's resources in the HTTP API (DESIGN §8), read only:
//   GET /api/v1/services   supervised services: build, state, port, pid, health
//   GET /api/v1/jobs       job runs, newest first
//   GET /api/v1/addons     databases and how to reach them (never secret values)
//   GET /api/v1/builds     builds, newest first
//   GET /api/v1/backups    addon backups, newest first
// Each answers {"<name>": [...]} with what the runtime's List call gives,
// filtered with ?service= / ?job= / ?addon= where the runtime can.
#pragma once
#include <optional>
#include <string>
#include <vector>

#include "daemon/api.h"
#include "daemon/api_json.h"

namespace gitopsd::daemon {

// The answer when `p` (the path below /api/v1, split) is one of these
// routes; nullopt otherwise.
std::optional<Response> RouteResources(const ApiDeps& deps, const Request& req,
                                       const std::vector<std::string>& p);

}  // namespace gitopsd::daemon
