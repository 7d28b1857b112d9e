// The HTTP API's routes as templates ("/api/v1/runs/{id}"), for metrics and
// logs: a label that takes the raw path would grow a series per object, run
// and webhook token, and a logged path could carry a secret. Keep the table
// in api_routes.cc in step with the routers (api.cc and api_*.cc).
#pragma once
#include <string>
#include <string_view>

namespace gitopsd::daemon {

// The template of the route that serves `path` (empty segments ignored, as
// the router does), or "other" for a path no route serves.
std::string_view RouteTemplate(std::string_view path);

// `method` when it is one HTTP defines (GET, HEAD, POST, PUT, DELETE,
// PATCH, OPTIONS), else "other": clients choose the method string.
std::string_view MethodLabel(std::string_view method);

// `path` as a log may show it: the template for routes whose path holds a
// secret (webhook tokens), the path itself otherwise.
std::string PathForLog(std::string_view path);

}  // namespace gitopsd::daemon
