// A stand-in for a forge's REST API on loopback (GitHub, GitLab and Gitea
// cannot exist here), answering the one call gitopsd makes — a comment on a
// pull request — as each forge documents it:
//   GitHub  POST /repos/{owner}/{repo}/issues/{number}/comments
//           Authorization: Bearer TOKEN          -> 201 {id, html_url, body}
//   GitLab  POST /api/v4/projects/{owner%2Frepo}/merge_requests/{iid}/notes
//           PRIVATE-TOKEN: TOKEN                 -> 201 {id, body, noteable_type}
//   Gitea   POST /api/v1/repos/{owner}/{repo}/issues/{index}/comments
//           Authorization: token TOKEN           -> 201 {id, html_url, body}
// and the state of a pull request:
//   GitHub  GET /repos/{owner}/{repo}/pulls/{number}      -> {number, state "open"|"closed", merged, draft}
//   GitLab  GET /api/v4/projects/{id}/merge_requests/{iid} -> {iid, state "opened"|"closed"|"merged", draft}
//   Gitea   GET /api/v1/repos/{owner}/{repo}/pulls/{index}  -> {number, state "open"|"closed", merged}
// (open unless SetPullRequest says otherwise).
// A wrong token gets 401 with the forge's error body; any other path 404.
// Every request is recorded.
#pragma once
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace gitopsd::test {

class FakeForgeApi {
 public:
  struct Received {
    std::string method, uri, authorization, private_token, content_type;
    std::string body;
    int answered = 0;
  };

  explicit FakeForgeApi(std::string token);
  ~FakeForgeApi();
  FakeForgeApi(const FakeForgeApi&) = delete;
  FakeForgeApi& operator=(const FakeForgeApi&) = delete;

  int port() const;
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port()); }
  std::vector<Received> received() const;
  // Pull request `number` is closed from now on (merged or not).
  void ClosePullRequest(int number, bool merged);

  struct State;  // shared with the request handlers

 private:
  std::shared_ptr<State> state_;
  struct Server;
  std::unique_ptr<Server> server_;
};

}  // namespace gitopsd::test
