#include "daemon/api_routes.h"

#include <array>
#include <vector>

namespace gitopsd::daemon {

namespace {

// Every route of DESIGN §8 and of the routers; a {name} segment matches any
// one segment.
constexpr std::array<std::string_view, 32> kRoutes = {
    "/healthz",
    "/readyz",
    "/metrics",
    "/api/v1/objects",
    "/api/v1/objects/{kind}/{name}",
    "/api/v1/writebacks/{id}",
    "/api/v1/conflicts",
    "/api/v1/conflicts/{id}/resolve",
    "/api/v1/sync",
    "/api/v1/repositories/{name}/sync",
    "/api/v1/release-flows/{name}/runs",
    "/api/v1/templates/{name}/runs",
    "/api/v1/runs",
    "/api/v1/runs/{id}",
    "/api/v1/runs/{id}/logs",
    "/api/v1/runs/{id}/cancel",
    "/api/v1/runs/{id}/approve",
    "/api/v1/runs/{id}/rollback",
    "/api/v1/webhooks",
    "/api/v1/webhooks/{kind}/{name}",
    "/api/v1/previews",
    "/api/v1/previews/{name}",
    "/api/v1/services",
    "/api/v1/jobs",
    "/api/v1/addons",
    "/api/v1/builds",
    "/api/v1/backups",
    "/hooks/github",
    "/hooks/gitlab",
    "/hooks/gitea",
    "/hooks/release-flows/{token}",
    "/hooks/previews/{token}",
};

std::vector<std::string_view> Segments(std::string_view path) {
  std::vector<std::string_view> parts;
  size_t i = 0;
  while (i < path.size()) {
    size_t j = path.find('/', i);
    if (j == std::string_view::npos) j = path.size();
    if (j > i) parts.push_back(path.substr(i, j - i));
    i = j + 1;
  }
  return parts;
}

bool Matches(std::string_view route, const std::vector<std::string_view>& path) {
  const std::vector<std::string_view> parts = Segments(route);
  if (parts.size() != path.size()) return false;
  for (size_t i = 0; i < parts.size(); ++i) {
    if (parts[i].starts_with('{')) continue;
    if (parts[i] != path[i]) return false;
  }
  return true;
}

}  // namespace

std::string_view RouteTemplate(std::string_view path) {
  const std::vector<std::string_view> segments = Segments(path);
  for (std::string_view route : kRoutes) {
    if (Matches(route, segments)) return route;
  }
  return "other";
}

std::string_view MethodLabel(std::string_view method) {
  for (std::string_view known : {"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"}) {
    if (method == known) return known;
  }
  return "other";
}

std::string PathForLog(std::string_view path) {
  const std::string_view route = RouteTemplate(path);
  if (route.find("{token}") != std::string_view::npos) return std::string(route);
  return std::string(path);
}

}  // namespace gitopsd::daemon
