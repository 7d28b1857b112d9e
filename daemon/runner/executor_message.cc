// Message nodes of the runtime executor, POSTed as JSON over http:// or
// https:// (the peer's certificate checked, daemon/tls_client.h):
//  - RAW_WEBHOOK: {"message": ...} to spec.webhookUrl, with spec.headers;
//  - SLACK: {"text": ...} to spec.webhookUrl (an incoming webhook);
//  - VCS: a comment on pull request spec.pullRequestId of the configured
//    repository spec.repoUrl names, through its forge's REST API
//    (repositories[].forgeApi: GitHub issue comments, GitLab merge request
//    notes, Gitea issue comments), with the token of forgeApi.tokenFile.
// The only executor file that speaks HTTP. Error messages name where a post
// went as scheme://host:port only: a URL's path or query, and headers, may
// hold a secret.
#include <Poco/Exception.h>
#include <Poco/Net/HTTPClientSession.h>
#include <Poco/Net/HTTPRequest.h>
#include <Poco/Net/HTTPResponse.h>
#include <Poco/Net/HTTPSClientSession.h>
#include <Poco/Timespan.h>
#include <Poco/URI.h>

#include <istream>
#include <memory>

#include "daemon/runner/executor_internal.h"
#include "daemon/tls_client.h"

namespace gitopsd::runner::executor_internal {
namespace {

struct Post {
  std::string url;
  std::vector<std::pair<std::string, std::string>> headers;
  json::Value body;
};

struct Answer {
  int status = 0;
  std::string reason;
  std::string body;  // the first 64 KiB
  std::string where;  // scheme://host:port
};

// POSTs `post` and reads the answer; an error for a URL that is not http(s)
// or a connection that fails (naming scheme://host:port only).
Result<Answer> PostJson(const Post& post, std::chrono::milliseconds timeout) {
  Answer answer;
  try {
    Poco::URI uri(post.url);
    answer.where = uri.getScheme() + "://" + uri.getHost() + ":" + std::to_string(uri.getPort());
    std::unique_ptr<Poco::Net::HTTPClientSession> session;
    if (uri.getScheme() == "http") {
      session = std::make_unique<Poco::Net::HTTPClientSession>(uri.getHost(), uri.getPort());
    } else if (uri.getScheme() == "https") {
      auto context = daemon::ClientTlsContext({}, uri.getHost());
      if (!context) return std::unexpected(context.error());
      session = std::make_unique<Poco::Net::HTTPSClientSession>(uri.getHost(), uri.getPort(), *context);
    } else {
      return Fail("only http:// and https:// URLs are supported, not " +
                  (uri.getScheme().empty() ? std::string("\"") + post.url + "\"" : uri.getScheme() + "://"));
    }
    session->setTimeout(Poco::Timespan(std::chrono::duration_cast<std::chrono::microseconds>(timeout).count()));
    // The request target as written: Poco::URI decodes the path, which would
    // turn GitLab's "acme%2Fshop" back into two segments.
    const size_t authority = post.url.find("://") + 3;
    const size_t slash = post.url.find('/', authority);
    std::string path = slash == std::string::npos ? "/" : post.url.substr(slash);
    if (const size_t fragment = path.find('#'); fragment != std::string::npos) path.resize(fragment);
    Poco::Net::HTTPRequest request(Poco::Net::HTTPRequest::HTTP_POST, path, Poco::Net::HTTPMessage::HTTP_1_1);
    const std::string body = json::SerializeCompact(post.body);
    request.setContentType("application/json");
    request.setContentLength(static_cast<std::streamsize>(body.size()));
    request.set("User-Agent", "gitopsd/" GITOPSD_VERSION);
    for (const auto& [k, v] : post.headers) request.set(k, v);
    session->sendRequest(request) << body;
    Poco::Net::HTTPResponse response;
    std::istream& in = session->receiveResponse(response);
    answer.body.resize(64 << 10);
    in.read(answer.body.data(), static_cast<std::streamsize>(answer.body.size()));
    answer.body.resize(static_cast<size_t>(in.gcount()));
    answer.status = static_cast<int>(response.getStatus());
    answer.reason = response.getReason();
    return answer;
  } catch (const Poco::Exception& e) {
    return Fail("cannot post to " + (answer.where.empty() ? std::string("the URL") : answer.where) + ": " +
                e.displayText());
  } catch (const std::exception& e) {
    return Fail("cannot post: " + std::string(e.what()));
  }
}

bool AllDigits(const std::string& s) {
  return !s.empty() && s.find_first_not_of("0123456789") == std::string::npos;
}

// "acme/shop" as one path segment for GitLab ("acme%2Fshop").
std::string EncodedProject(const std::string& project) {
  std::string out;
  Poco::URI::encode(project, "/", out);
  return out;
}

// The forge's API call that comments on a pull request.
Result<Post> CommentPost(const ForgeApiAccess& api, const std::string& pull_request, const std::string& message) {
  if (!AllDigits(pull_request)) {
    return Fail("spec.pullRequestId must be a pull request number, not \"" + pull_request + "\"");
  }
  Post post;
  post.body = json::Value::Object({{"body", Str(message)}});
  if (api.forge == "github") {
    post.url = api.api_url + "/repos/" + api.project + "/issues/" + pull_request + "/comments";
    post.headers = {{"Authorization", "Bearer " + api.token},
                    {"Accept", "application/vnd.github+json"},
                    {"X-GitHub-Api-Version", "2022-11-28"}};
  } else if (api.forge == "gitlab") {
    post.url = api.api_url + "/projects/" + EncodedProject(api.project) + "/merge_requests/" + pull_request + "/notes";
    post.headers = {{"PRIVATE-TOKEN", api.token}};
  } else if (api.forge == "gitea") {
    post.url = api.api_url + "/repos/" + api.project + "/issues/" + pull_request + "/comments";
    post.headers = {{"Authorization", "token " + api.token}, {"Accept", "application/json"}};
  } else {
    return Fail("forge \"" + api.forge + "\" has no comment API here (github, gitlab, gitea)");
  }
  return post;
}

// What a 2xx answer said worth keeping: the comment's id and page.
json::Value Posted(const Answer& answer) {
  json::Value out = json::Value::Object({{"status", Num(answer.status)}});
  auto body = json::Parse(answer.body);
  if (body && body->is_object()) {
    if (const json::Value* id = body->Find("id"); id && id->is_number()) out.Set("commentId", *id);
    if (const json::Value* url = body->Find("html_url"); url && url->is_string()) out.Set("url", *url);
  }
  return out;
}

}  // namespace

NodeOutcome RuntimeExecutor::Message(const NodeContext& ctx) {
  const std::string kind = Text(ctx.spec, {"kind"});
  const std::string message = Text(ctx.spec, {"spec", "message"});
  const json::Value* spec = ctx.spec.Find("spec");
  Post post;
  std::string what;  // for the log: "the webhook", "pull request #12 of acme/shop"
  if (kind == "RAW_WEBHOOK" || kind == "SLACK") {
    post.url = Text(ctx.spec, {"spec", "webhookUrl"});
    if (post.url.empty()) {
      return NodeOutcome::Failure("Message " + kind + ": spec.webhookUrl is required" +
                                  (kind == "SLACK" ? " (Slack integrations by id are not supported here)" : ""));
    }
    auto headers = StringMap(spec ? spec->Find("headers") : nullptr, "Message spec.headers");
    if (!headers) return FailWith(headers.error());
    for (const auto& [k, v] : *headers) post.headers.emplace_back(k, v);
    post.body = json::Value::Object({{kind == "SLACK" ? "text" : "message", Str(message)}});
    what = kind == "SLACK" ? "the Slack webhook" : "the webhook";
  } else if (kind == "VCS") {
    const std::string repo = Text(ctx.spec, {"spec", "repoUrl"});
    const std::string pull_request = Text(ctx.spec, {"spec", "pullRequestId"});
    if (!d_.forge_api) return NodeOutcome::Failure("Message VCS: no forge API is configured in this daemon");
    auto api = d_.forge_api(repo);
    if (!api) return NodeOutcome::Failure("Message VCS: " + api.error().message);
    auto made = CommentPost(*api, pull_request, message);
    if (!made) return NodeOutcome::Failure("Message VCS: " + made.error().message);
    post = std::move(*made);
    what = "pull request #" + pull_request + " of " + api->project + " (" + api->forge + ")";
  } else {
    return NodeOutcome::Failure("Message kind " + Quoted(kind) + " is not supported; use RAW_WEBHOOK, SLACK or VCS");
  }
  return Journaled(ctx, json::Value::Object({{"message", Str(kind)}}), [&] {
    auto answer = PostJson(post, d_.message_timeout);
    if (!answer) return NodeOutcome::Failure("cannot post the message to " + what + ": " + answer.error().message);
    if (answer->status < 200 || answer->status > 299) {
      std::string said = answer->body.substr(0, 512);
      return NodeOutcome::Failure(what + " at " + answer->where + " answered " + std::to_string(answer->status) +
                                  " " + answer->reason + (said.empty() ? "" : ": " + said));
    }
    ctx.log("posted the message to " + what + " at " + answer->where + " (" + std::to_string(answer->status) + ")");
    return NodeOutcome::Success(Posted(*answer));
  });
}

}  // namespace gitopsd::runner::executor_internal
