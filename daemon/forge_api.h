// The two calls gitopsd makes to a forge's REST API (repositories[].forgeApi):
// a comment on a pull request (VCS Message nodes) and the state of a pull
// request (so that previews of pull requests closed on a forge that keeps
// their refs, as GitHub does, end without webhooks). GitHub, GitLab and
// Gitea, as each documents its API. Over http or https (daemon/tls_client).
// Errors name where a call went as scheme://host:port only; the token is
// sent in a header and never appears in a message.
#pragma once
#include <chrono>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "sync/json.h"
#include "sync/status.h"

namespace gitopsd::daemon {

// A forge's API for one repository.
struct ForgeApiAccess {
  std::string forge;    // "github", "gitlab" or "gitea"
  std::string api_url;  // e.g. https://api.github.com, https://gitlab.example.com/api/v4 (no trailing /)
  std::string project;  // "acme/shop"
  std::string token;    // never logged
};

struct HttpCall {
  std::string method = "POST";
  std::string url;
  std::vector<std::pair<std::string, std::string>> headers;
  std::optional<json::Value> body;  // sent as JSON when set
};

struct HttpAnswer {
  int status = 0;
  std::string reason;
  std::string body;   // the first 64 KiB
  std::string where;  // scheme://host:port
  bool ok() const { return status >= 200 && status <= 299; }
};

// Makes the call and reads the answer (any status); an error when the URL
// is not http(s) or the connection fails.
Result<HttpAnswer> CallHttp(const HttpCall& call, std::chrono::milliseconds timeout);

// The call that comments `message` on pull request `number`.
Result<HttpCall> CommentCall(const ForgeApiAccess& api, const std::string& number, const std::string& message);

struct PullRequestState {
  bool open = true;
  bool merged = false;
  bool draft = false;
};
// Asks the forge for pull request `number`'s state.
Result<PullRequestState> GetPullRequest(const ForgeApiAccess& api, const std::string& number,
                                        std::chrono::milliseconds timeout);

}  // namespace gitopsd::daemon
