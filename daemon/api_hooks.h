// Webhooks: what starts runs from outside without an API token.
//
//   GET|POST /hooks/release-flows/{token}   a run of the flow the token
//        belongs to. Query: <trigger>.branch | .sha | .pullRequestId |
//        .repoUrl set that trigger's values ("%2E" for a "." in the name);
//        name, description label the run; every other parameter becomes
//        ${args.<param>}. 201 with the run; 202 while the flow's triggers
//        are paused (nothing runs); 404 for an unknown token; 422 when a
//        given sha is not a commit of the branch as fetched.
//   GET|POST /hooks/previews/{token}   creates the preview of the
//        PreviewTemplate the token belongs to, or re-runs the one named by
//        `name` (or the one of the given pull request or branch); the same
//        query as above. 201 {"preview": {...}, "run": id, "created": bool}
//        with the preview's name; 202 while paused.
//
//   POST /hooks/github | /hooks/gitlab | /hooks/gitea   forge webhooks, for
//        repositories whose configuration has "webhook": {"type": ...}. The
//        payload only says where to look: a push or pull request makes the
//        trigger dispatcher look at the repository (what runs is what Git
//        says when fetched); a closed or merged pull request tears down its
//        previews. 202 when accepted; 401 when no configured repository of
//        that forge named in the payload has a secret that verifies the
//        signature (nothing happens); 200 for a replayed delivery id (ignored)
//        and for ping and ignored events; 400 for a payload that does not parse.
//
// Tokens are managed with an API write token and kept only as hashes:
//   POST   /api/v1/webhooks/{release-flows|preview-templates}/{name}
//          -> 201 {"token", "path"}: a new token (the old one stops working)
//   DELETE /api/v1/webhooks/{kind}/{name}   -> 204
//   GET    /api/v1/webhooks                 -> {"webhooks": [{kind, name, createdAt, lastUsedAt}]}
//
// Tokens never reach logs: a request is logged with the flow it resolved to.
#pragma once
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "daemon/api_json.h"
#include "sync/status.h"

namespace gitopsd::store {
class Store;
}
namespace gitopsd::triggers {
class TriggerStore;
}

namespace gitopsd::daemon {

class FlowRuns;
class PreviewManager;
class TokenStore;

// A repository that takes forge webhooks.
struct ForgeHook {
  std::string repository;  // configured name
  std::string forge;       // "github", "gitlab", "gitea"
  std::string url;         // how payloads name it (webhook.forgeUrl, else url)
  std::string secret;      // from webhook.secretFile
};

struct HookDeps {
  store::Store* store = nullptr;
  FlowRuns* runs = nullptr;
  PreviewManager* previews = nullptr;
  triggers::TriggerStore* triggers = nullptr;
  const TokenStore* tokens = nullptr;
  // Whether `sha` is a commit of `branch` of the configured repository as
  // fetched now (the branch is fetched first): an error says why not.
  std::function<Status(const std::string& repository, const std::string& branch, const std::string& sha)>
      verify_commit;
  // The head of `branch` of the repository as fetched now (fetching it).
  std::function<Result<std::string>(const std::string& repository, const std::string& branch)> head_of;
  // The repositories that take forge webhooks now (a reload may change them).
  std::function<std::vector<ForgeHook>()> forge_hooks;
  // Hears of each delivery: ("github" | "gitlab" | "gitea" | "generic", result).
  std::function<void(const std::string& source, const std::string& result)> on_delivery;
  // Look at the repository's refs soon (coalesced); a pull request's news.
  std::function<void(const std::string& repository)> look;
  std::function<void(const std::string& repository, const std::string& number, const std::string& source_branch,
                     bool draft, bool open, const std::string& why)>
      pull_request;
};

class HookRoutes {
 public:
  explicit HookRoutes(HookDeps deps) : deps_(std::move(deps)) {}

  // /hooks/...: `p` is the whole path, split.
  std::optional<Response> RouteHooks(const Request& req, const std::vector<std::string>& p);
  // /api/v1/webhooks...: `p` is the path below /api/v1, split.
  std::optional<Response> RouteTokens(const Request& req, const std::vector<std::string>& p);

 private:
  Response FlowHook(const Request& req, const std::string& token);
  Response PreviewHook(const Request& req, const std::string& token);
  // Checks the trigger values a webhook gave against Git: a sha must be on
  // its branch; a branch without a sha gets its head. The problem, if any.
  std::optional<std::string> CheckTriggerValues(const json::Value& body, json::Value& triggers);
  Response ForgeHookRequest(const Request& req, const std::string& forge);
  Response RotateToken(const Request& req, const std::string& kind, const std::string& name);
  Response RemoveToken(const Request& req, const std::string& kind, const std::string& name);
  Response ListTokens();

  HookDeps deps_;
};

}  // namespace gitopsd::daemon
