// The write side of the HTTP API (DESIGN §8): PUT and DELETE of objects,
// the state of one write-back, the conflicts and their resolution.
//
// An accepted edit is durable before it is answered (WriteBack::Submit
// stores it in the outbox); the route then wakes the repository's
// write-back and waits a short bound for the push: 200/201 with the commit
// when it lands in time, else 202 with where to follow it. A refused edit
// writes nothing. Request bodies are never logged: they may hold values
// people consider sensitive.
#pragma once
#include <atomic>
#include <cstdint>
#include <optional>
#include <string>

#include "daemon/api.h"
#include "daemon/api_json.h"

namespace gitopsd::sync {
class WriteBack;
struct EditReceipt;
struct EditError;
}  // namespace gitopsd::sync

namespace gitopsd::store {
struct EditRecord;
}

namespace gitopsd::daemon {

class WriteRoutes {
 public:
  // `stopping` cuts the waits short when the server shuts down.
  WriteRoutes(const ApiOptions& options, const ApiDeps& deps, const std::atomic<bool>& stopping)
      : options_(options), deps_(deps), stopping_(stopping) {}

  Response PutObject(const Request& req, const std::string& kind, const std::string& name);
  Response DeleteObject(const Request& req, const std::string& kind, const std::string& name);
  Response GetWriteBack(const std::string& id);
  Response ListConflicts(const Request& req);
  Response ResolveConflict(const Request& req, const std::string& id);

 private:
  struct Target {
    sync::WriteBack* writeback = nullptr;
    std::string repository;
  };
  // The repository an edit of (kind, name) goes to, or the answer refusing it.
  std::optional<Response> PickTarget(const Request& req, const std::string& kind,
                                     const std::string& name, bool must_exist, Target* target);
  // Common checks of PUT and DELETE up to the If-Match header.
  std::optional<Response> Precheck(const Request& req, const std::string& kind_text,
                                   bool needs_body, std::string* who, std::string* kind,
                                   std::optional<int64_t>* if_match);
  Response Accepted(const std::string& op, const std::string& who, const std::string& kind,
                    const std::string& name, const std::string& repository,
                    const sync::EditReceipt& receipt);
  std::optional<store::EditRecord> WaitForPush(int64_t edit_id);
  static Response EditFailed(const sync::EditError& error);

  ApiOptions options_;
  ApiDeps deps_;
  const std::atomic<bool>& stopping_;
};

}  // namespace gitopsd::daemon
