#include "daemon/forge_api.h"

#include <Poco/Exception.h>
#include <Poco/Net/HTTPClientSession.h>
#include <Poco/Net/HTTPRequest.h>
#include <Poco/Net/HTTPResponse.h>
#include <Poco/Net/HTTPSClientSession.h>
#include <Poco/Timespan.h>
#include <Poco/URI.h>

#include <istream>
#include <memory>

#include "daemon/tls_client.h"

namespace gitopsd::daemon {
namespace {

bool AllDigits(const std::string& s) { return !s.empty() && s.find_first_not_of("0123456789") == std::string::npos; }

// "acme/shop" as one path segment for GitLab ("acme%2Fshop").
std::string EncodedProject(const std::string& project) {
  std::string out;
  Poco::URI::encode(project, "/", out);
  return out;
}

// The URL and headers of pull request `number`'s resource, or of its
// comments (`comments`).
Result<HttpCall> PullRequestCall(const ForgeApiAccess& api, const std::string& number, bool comments) {
  if (!AllDigits(number)) return Fail("a pull request number is wanted, not \"" + number + "\"");
  HttpCall call;
  if (api.forge == "github") {
    call.url = api.api_url + "/repos/" + api.project + (comments ? "/issues/" : "/pulls/") + number +
               (comments ? "/comments" : "");
    call.headers = {{"Authorization", "Bearer " + api.token},
                    {"Accept", "application/vnd.github+json"},
                    {"X-GitHub-Api-Version", "2022-11-28"}};
  } else if (api.forge == "gitlab") {
    call.url = api.api_url + "/projects/" + EncodedProject(api.project) + "/merge_requests/" + number +
               (comments ? "/notes" : "");
    call.headers = {{"PRIVATE-TOKEN", api.token}};
  } else if (api.forge == "gitea") {
    call.url = api.api_url + "/repos/" + api.project + (comments ? "/issues/" : "/pulls/") + number +
               (comments ? "/comments" : "");
    call.headers = {{"Authorization", "token " + api.token}, {"Accept", "application/json"}};
  } else {
    return Fail("forge \"" + api.forge + "\" has no API here (github, gitlab, gitea)");
  }
  return call;
}

}  // namespace

Result<HttpAnswer> CallHttp(const HttpCall& call, std::chrono::milliseconds timeout) {
  HttpAnswer answer;
  try {
    Poco::URI uri(call.url);
    answer.where = uri.getScheme() + "://" + uri.getHost() + ":" + std::to_string(uri.getPort());
    std::unique_ptr<Poco::Net::HTTPClientSession> session;
    if (uri.getScheme() == "http") {
      session = std::make_unique<Poco::Net::HTTPClientSession>(uri.getHost(), uri.getPort());
    } else if (uri.getScheme() == "https") {
      auto context = ClientTlsContext({}, uri.getHost());
      if (!context) return std::unexpected(context.error());
      session = std::make_unique<Poco::Net::HTTPSClientSession>(uri.getHost(), uri.getPort(), *context);
    } else {
      return Fail("only http:// and https:// URLs are supported, not " +
                  (uri.getScheme().empty() ? "\"" + call.url + "\"" : uri.getScheme() + "://"));
    }
    session->setTimeout(Poco::Timespan(std::chrono::duration_cast<std::chrono::microseconds>(timeout).count()));
    // The request target as written: Poco::URI decodes the path, which would
    // turn GitLab's "acme%2Fshop" back into two segments.
    const size_t slash = call.url.find('/', call.url.find("://") + 3);
    std::string target = slash == std::string::npos ? "/" : call.url.substr(slash);
    if (const size_t fragment = target.find('#'); fragment != std::string::npos) target.resize(fragment);
    Poco::Net::HTTPRequest request(call.method, target, Poco::Net::HTTPMessage::HTTP_1_1);
    request.set("User-Agent", "gitopsd/" GITOPSD_VERSION);
    for (const auto& [k, v] : call.headers) request.set(k, v);
    if (call.body) {
      const std::string body = json::SerializeCompact(*call.body);
      request.setContentType("application/json");
      request.setContentLength(static_cast<std::streamsize>(body.size()));
      session->sendRequest(request) << body;
    } else {
      session->sendRequest(request);
    }
    Poco::Net::HTTPResponse response;
    std::istream& in = session->receiveResponse(response);
    answer.body.resize(64 << 10);
    in.read(answer.body.data(), static_cast<std::streamsize>(answer.body.size()));
    answer.body.resize(static_cast<size_t>(in.gcount()));
    answer.status = static_cast<int>(response.getStatus());
    answer.reason = response.getReason();
    return answer;
  } catch (const Poco::Exception& e) {
    return Fail("cannot reach " + (answer.where.empty() ? std::string("the URL") : answer.where) + ": " +
                e.displayText());
  } catch (const std::exception& e) {
    return Fail("cannot make the call: " + std::string(e.what()));
  }
}

Result<HttpCall> CommentCall(const ForgeApiAccess& api, const std::string& number, const std::string& message) {
  auto call = PullRequestCall(api, number, /*comments=*/true);
  if (!call) return call;
  call->body = json::Value::Object({{"body", json::Value::String(message)}});
  return call;
}

Result<PullRequestState> GetPullRequest(const ForgeApiAccess& api, const std::string& number,
                                        std::chrono::milliseconds timeout) {
  auto call = PullRequestCall(api, number, /*comments=*/false);
  if (!call) return std::unexpected(call.error());
  call->method = "GET";
  auto answer = CallHttp(*call, timeout);
  if (!answer) return std::unexpected(answer.error());
  if (!answer->ok()) {
    return Fail(api.forge + " at " + answer->where + " answered " + std::to_string(answer->status) + " " +
                answer->reason + " for pull request #" + number);
  }
  auto body = json::Parse(answer->body);
  const json::Value* state = body && body->is_object() ? body->Find("state") : nullptr;
  if (!state || !state->is_string()) {
    return Fail(api.forge + " at " + answer->where + ": the answer for pull request #" + number + " has no state");
  }
  // GitHub and Gitea: "open" | "closed" (+ merged); GitLab: "opened" |
  // "closed" | "merged" | "locked".
  PullRequestState out;
  const std::string& s = state->as_string();
  out.open = s == "open" || s == "opened";
  const json::Value* merged = body->Find("merged");
  out.merged = s == "merged" || (merged && merged->is_bool() && merged->as_bool());
  const json::Value* draft = body->Find("draft");
  out.draft = draft && draft->is_bool() && draft->as_bool();
  return out;
}

}  // namespace gitopsd::daemon
