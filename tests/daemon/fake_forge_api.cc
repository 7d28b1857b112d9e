#include "tests/daemon/fake_forge_api.h"

#include <Poco/Net/HTTPRequestHandler.h>
#include <Poco/Net/HTTPRequestHandlerFactory.h>
#include <Poco/Net/HTTPServer.h>
#include <Poco/Net/HTTPServerRequest.h>
#include <Poco/Net/HTTPServerResponse.h>
#include <Poco/Net/ServerSocket.h>
#include <Poco/StreamCopier.h>

#include <map>
#include <regex>

#include "sync/json.h"

namespace gitopsd::test {

struct FakeForgeApi::State {
  std::string token;
  std::map<int, bool> closed;  // number -> merged
  mutable std::mutex mu;
  std::vector<Received> received;
  int next_id = 1000;
};

namespace {

using Poco::Net::HTTPResponse;

class Handler : public Poco::Net::HTTPRequestHandler {
 public:
  explicit Handler(std::shared_ptr<FakeForgeApi::State> state) : state_(std::move(state)) {}

  void handleRequest(Poco::Net::HTTPServerRequest& in, Poco::Net::HTTPServerResponse& out) override {
    FakeForgeApi::Received r;
    r.method = in.getMethod();
    r.uri = in.getURI();
    r.authorization = in.get("Authorization", "");
    r.private_token = in.get("PRIVATE-TOKEN", "");
    r.content_type = in.getContentType();
    Poco::StreamCopier::copyToString(in.stream(), r.body);
    auto [status, answer] = Answer(r);
    r.answered = status;
    {
      std::lock_guard lock(state_->mu);
      state_->received.push_back(r);
    }
    out.setStatusAndReason(static_cast<HTTPResponse::HTTPStatus>(status));
    out.setContentType("application/json");
    out.sendBuffer(answer.data(), answer.size());
  }

 private:
  std::pair<int, std::string> Answer(const FakeForgeApi::Received& r) {
    static const std::regex github(R"(^/repos/([^/]+)/([^/]+)/issues/([0-9]+)/comments$)");
    static const std::regex gitlab(R"(^/api/v4/projects/([^/]+)/merge_requests/([0-9]+)/notes$)");
    static const std::regex gitea(R"(^/api/v1/repos/([^/]+)/([^/]+)/issues/([0-9]+)/comments$)");
    std::smatch m;
    auto body = json::Parse(r.body);
    const json::Value* text = body && body->is_object() ? body->Find("body") : nullptr;
    const std::string said = text && text->is_string() ? text->as_string() : "";
    if (r.method == "GET") return PullRequest(r);
    if (r.method != "POST") return {405, R"({"message": "Method Not Allowed"})"};
    int id = 0;
    {
      std::lock_guard lock(state_->mu);
      id = ++state_->next_id;
    }
    auto comment = [&](const std::string& page) {
      json::Value v = json::Value::Object({{"id", json::Value::Number(id)}, {"body", json::Value::String(said)}});
      if (!page.empty()) v.Set("html_url", json::Value::String(page));
      return json::SerializeCompact(v);
    };
    if (std::regex_match(r.uri, m, github)) {
      if (r.authorization != "Bearer " + state_->token) {
        return {401, R"({"message": "Bad credentials", "documentation_url": "https://docs.github.com/rest"})"};
      }
      if (said.empty()) return {422, R"({"message": "Validation Failed"})"};
      return {201, comment("https://github.com/" + m[1].str() + "/" + m[2].str() + "/pull/" + m[3].str() +
                           "#issuecomment-" + std::to_string(id))};
    }
    if (std::regex_match(r.uri, m, gitlab)) {
      if (r.private_token != state_->token) return {401, R"({"message": "401 Unauthorized"})"};
      if (said.empty()) return {400, R"({"message": {"note": ["can't be blank"]}})"};
      return {201, comment("")};
    }
    if (std::regex_match(r.uri, m, gitea)) {
      if (r.authorization != "token " + state_->token) return {401, R"({"message": "token is required"})"};
      return {201, comment("https://gitea.example.com/" + m[1].str() + "/" + m[2].str() + "/pulls/" + m[3].str() +
                           "#issuecomment-" + std::to_string(id))};
    }
    return {404, R"({"message": "Not Found"})"};
  }

  std::pair<int, std::string> PullRequest(const FakeForgeApi::Received& r) {
    static const std::regex github(R"(^/repos/[^/]+/[^/]+/pulls/([0-9]+)$)");
    static const std::regex gitlab(R"(^/api/v4/projects/[^/]+/merge_requests/([0-9]+)$)");
    static const std::regex gitea(R"(^/api/v1/repos/[^/]+/[^/]+/pulls/([0-9]+)$)");
    std::smatch m;
    auto state_of = [&](int number) {
      std::lock_guard lock(state_->mu);
      auto it = state_->closed.find(number);
      return it == state_->closed.end() ? std::pair{false, false} : std::pair{true, it->second};
    };
    if (std::regex_match(r.uri, m, gitlab)) {
      if (r.private_token != state_->token) return {401, R"({"message": "401 Unauthorized"})"};
      const auto [closed, merged] = state_of(std::stoi(m[1].str()));
      return {200, R"({"iid": )" + m[1].str() + R"(, "state": ")" +
                       (closed ? (merged ? "merged" : "closed") : "opened") + R"(", "draft": false})"};
    }
    const bool is_github = std::regex_match(r.uri, m, github);
    if (!is_github && !std::regex_match(r.uri, m, gitea)) return {404, R"({"message": "Not Found"})"};
    if (r.authorization != (is_github ? "Bearer " : "token ") + state_->token) {
      return {401, R"({"message": "Bad credentials"})"};
    }
    const auto [closed, merged] = state_of(std::stoi(m[1].str()));
    return {200, R"({"number": )" + m[1].str() + R"(, "state": ")" + (closed ? "closed" : "open") +
                     R"(", "merged": )" + (merged ? "true" : "false") + R"(, "draft": false})"};
  }

  std::shared_ptr<FakeForgeApi::State> state_;
};

class Factory : public Poco::Net::HTTPRequestHandlerFactory {
 public:
  explicit Factory(std::shared_ptr<FakeForgeApi::State> state) : state_(std::move(state)) {}
  Poco::Net::HTTPRequestHandler* createRequestHandler(const Poco::Net::HTTPServerRequest&) override {
    return new Handler(state_);
  }

 private:
  std::shared_ptr<FakeForgeApi::State> state_;
};

}  // namespace

struct FakeForgeApi::Server {
  explicit Server(std::shared_ptr<State> state)
      : http(new Factory(std::move(state)), Poco::Net::ServerSocket(Poco::Net::SocketAddress("127.0.0.1", 0)),
             new Poco::Net::HTTPServerParams) {
    http.start();
  }
  ~Server() { http.stop(); }
  Poco::Net::HTTPServer http;
};

FakeForgeApi::FakeForgeApi(std::string token) : state_(std::make_shared<State>()) {
  state_->token = std::move(token);
  server_ = std::make_unique<Server>(state_);
}

FakeForgeApi::~FakeForgeApi() = default;

int FakeForgeApi::port() const { return server_->http.port(); }

void FakeForgeApi::ClosePullRequest(int number, bool merged) {
  std::lock_guard lock(state_->mu);
  state_->closed[number] = merged;
}

std::vector<FakeForgeApi::Received> FakeForgeApi::received() const {
  std::lock_guard lock(state_->mu);
  return state_->received;
}

}  // namespace gitopsd::test
