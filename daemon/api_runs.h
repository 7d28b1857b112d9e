// The runs of the HTTP API (DESIGN §8): start a run of a release flow or a
// template, list and read runs with their node trees, cancel, approve,
// roll back, and read or follow the logs.
//
//   POST /api/v1/release-flows/{name}/runs   POST /api/v1/templates/{name}/runs
//        body (optional): {"arguments": {...}, "name", "description",
//                          "triggers": {"<ref>": {"branch", "sha"}}}
//        -> 201, the run, Location: /api/v1/runs/{id}
//   GET  /api/v1/runs[?flow=F&kind=K&status=S[,S...]&limit=N]   newest first
//   GET  /api/v1/runs/{id}[?spec=true]     the run and every node (data, error, log)
//   POST /api/v1/runs/{id}/cancel | /approve           -> 200, the run
//   POST /api/v1/runs/{id}/rollback {"restoreBackup": bool}  -> 201, the new run
//   GET  /api/v1/runs/{id}/logs[?follow=true]   text/plain; follow streams
//        (chunked) until the run concludes
//
// POSTs need a write token. The runner's refusals map to 422 (the dry run
// failed; "details" holds one line per problem, each naming the node's
// JSON path), 404 and 409 (concurrencyPolicy forbid, a run that is not
// concluded, nothing waiting for approval).
#pragma once
#include <atomic>
#include <optional>
#include <string>
#include <vector>

#include "daemon/api.h"
#include "daemon/api_json.h"

namespace gitopsd::runner {
struct RunError;
}

namespace gitopsd::daemon {

// The HTTP answer to a refusal of the runner: 422 (with "details"), 404,
// 409, or 500 (logged).
Response RunFailed(const runner::RunError& e);

class RunRoutes {
 public:
  // `stopping` ends the log streams when the server shuts down.
  RunRoutes(const ApiOptions& options, const ApiDeps& deps, const std::atomic<bool>& stopping)
      : options_(options), deps_(deps), stopping_(stopping) {}

  // The answer when `p` (the path below /api/v1, split) is one of these
  // routes; nullopt otherwise.
  std::optional<Response> Route(const Request& req, const std::vector<std::string>& p);

 private:
  Response StartRun(const Request& req, const std::string& kind, const std::string& name);
  Response ListRuns(const Request& req);
  Response GetRun(const Request& req, const std::string& id_text);
  Response Act(const Request& req, const std::string& id_text, const std::string& action);
  Response Logs(const Request& req, const std::string& id_text);
  void FollowLogs(int64_t id, const StreamWriter& write);
  Response RunCreated(int64_t id);

  ApiOptions options_;
  ApiDeps deps_;
  const std::atomic<bool>& stopping_;
};

}  // namespace gitopsd::daemon
