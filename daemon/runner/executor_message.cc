// Message nodes of the runtime executor, POSTed as JSON over http:// or
// https:// (the peer's certificate checked, daemon/tls_client.h):
//  - RAW_WEBHOOK: {"message": ...} to spec.webhookUrl, with spec.headers;
//  - SLACK: {"text": ...} to spec.webhookUrl (an incoming webhook);
//  - VCS: a comment on pull request spec.pullRequestId of the configured
//    repository spec.repoUrl names, through its forge's REST API
//    (repositories[].forgeApi: GitHub issue comments, GitLab merge request
//    notes, Gitea issue comments), with the token of forgeApi.tokenFile.
// The only executor file that speaks HTTP (through daemon/forge_api). Error
// messages name where a post went as scheme://host:port only: a URL's path
// or query, and headers, may hold a secret.
#include "daemon/forge_api.h"
#include "daemon/runner/executor_internal.h"

namespace gitopsd::runner::executor_internal {
namespace {

// What a 2xx answer said worth keeping: the comment's id and page.
json::Value Posted(const daemon::HttpAnswer& answer) {
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
  daemon::HttpCall post;
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
    auto made = daemon::CommentCall(*api, pull_request, message);
    if (!made) return NodeOutcome::Failure("Message VCS: " + made.error().message);
    post = std::move(*made);
    what = "pull request #" + pull_request + " of " + api->project + " (" + api->forge + ")";
  } else {
    return NodeOutcome::Failure("Message kind " + Quoted(kind) + " is not supported; use RAW_WEBHOOK, SLACK or VCS");
  }
  return Journaled(ctx, json::Value::Object({{"message", Str(kind)}}), [&] {
    auto answer = daemon::CallHttp(post, d_.message_timeout);
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
