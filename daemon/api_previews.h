// Preview environments over HTTP (DESIGN §8):
//   GET    /api/v1/previews[?all=true]   live previews (and gone ones with all)
//   GET    /api/v1/previews/{name}       one preview
//   DELETE /api/v1/previews/{name}[?skipTeardown=true]   -> 202: teardown
//          started (its teardownSpec first unless skipped); gone once done
//   POST   /api/v1/previews/{name}/reset {"lifetime": minutes}
//          -> 200 {name, expiryTime}: it expires that long from now
// DELETE and reset need a write token.
#pragma once
#include <optional>
#include <string>
#include <vector>

#include "daemon/api.h"
#include "daemon/api_json.h"

namespace gitopsd::previews {
struct Preview;
}

namespace gitopsd::daemon {

std::optional<Response> RoutePreviews(const ApiDeps& deps, const Request& req, const std::vector<std::string>& p);
json::Value PreviewToJson(const previews::Preview& preview);

}  // namespace gitopsd::daemon
