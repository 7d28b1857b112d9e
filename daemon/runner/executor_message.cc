// Message nodes of the runtime executor: a RAW_WEBHOOK message POSTed as
// JSON over http://. The only executor file that speaks HTTP.
#include <Poco/Exception.h>
#include <Poco/Net/HTTPClientSession.h>
#include <Poco/Net/HTTPRequest.h>
#include <Poco/Net/HTTPResponse.h>
#include <Poco/Timespan.h>
#include <Poco/URI.h>

#include <istream>

#include "daemon/runner/executor_internal.h"

namespace gitopsd::runner::executor_internal {

// ---- messages ----

NodeOutcome RuntimeExecutor::Message(const NodeContext& ctx) {
  if (std::string kind = Text(ctx.spec, {"kind"}); kind != "RAW_WEBHOOK") {
    return NodeOutcome::Failure("Message kind " + Quoted(kind) + " is not supported; use RAW_WEBHOOK");
  }
  const std::string url = Text(ctx.spec, {"spec", "webhookUrl"}), message = Text(ctx.spec, {"spec", "message"});
  const json::Value* spec = ctx.spec.Find("spec");
  auto headers = StringMap(spec ? spec->Find("headers") : nullptr, "Message spec.headers");
  if (!headers) return FailWith(headers.error());
  return Journaled(ctx, json::Value::Object({{"message", Str("RAW_WEBHOOK")}}), [&] {
    std::string where;  // scheme://host:port only: a URL's path or query may hold a token
    try {
      Poco::URI uri(url);
      where = uri.getScheme() + "://" + uri.getHost() + ":" + std::to_string(uri.getPort());
      if (uri.getScheme() != "http") {
        return NodeOutcome::Failure("Message: only http:// webhook URLs are supported, not " + uri.getScheme() + "://");
      }
      Poco::Net::HTTPClientSession session(uri.getHost(), uri.getPort());
      session.setTimeout(
          Poco::Timespan(std::chrono::duration_cast<std::chrono::microseconds>(d_.message_timeout).count()));
      std::string path = uri.getPathAndQuery();
      if (path.empty()) path = "/";
      Poco::Net::HTTPRequest request(Poco::Net::HTTPRequest::HTTP_POST, path, Poco::Net::HTTPMessage::HTTP_1_1);
      std::string body;
      json::Value payload = json::Value::Object({{"message", Str(message)}});
      body = json::SerializeCompact(payload);
      request.setContentType("application/json");
      request.setContentLength(static_cast<std::streamsize>(body.size()));
      for (const auto& [k, v] : *headers) request.set(k, v);
      session.sendRequest(request) << body;
      Poco::Net::HTTPResponse response;
      std::istream& in = session.receiveResponse(response);
      std::string answer(512, '\0');
      in.read(answer.data(), static_cast<std::streamsize>(answer.size()));
      answer.resize(static_cast<size_t>(in.gcount()));
      int status = static_cast<int>(response.getStatus());
      if (status < 200 || status > 299) {
        return NodeOutcome::Failure("the webhook at " + where + " answered " + std::to_string(status) + " " +
                                    response.getReason() + (answer.empty() ? "" : ": " + answer));
      }
      ctx.log("posted the message to " + where + " (" + std::to_string(status) + ")");
      return NodeOutcome::Success(json::Value::Object({{"status", Num(status)}}));
    } catch (const Poco::Exception& e) {
      return NodeOutcome::Failure("cannot post the message to " + (where.empty() ? std::string("the webhook") : where) +
                                  ": " + e.displayText());
    } catch (const std::exception& e) {
      return NodeOutcome::Failure("cannot post the message: " + std::string(e.what()));
    }
  });
}

}  // namespace gitopsd::runner::executor_internal
