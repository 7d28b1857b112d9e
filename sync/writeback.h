// Control plane -> Git: edits made through the API are stored durably (an
// outbox row, in the same transaction as the object's new version), then
// committed on top of the newest fetched head and pushed.
//
// Contract:
//  - Submit() validates the body exactly as a Git file is validated; an
//    invalid edit is refused and never reaches Git. It returns once the edit
//    is committed to SQLite: from then on a crash cannot lose it.
//  - Run() turns everything pending into one commit (one per round), written
//    with the file's own formatting kept, and pushes it. A rejected push
//    means: fetch, apply the Git side first, then rebase the edits: unchanged
//    files take the edit as is; changed ones are merged three ways against
//    the edit's base (the version both sides last agreed on). Overlapping
//    changes become a conflict: both versions kept, the policy decides which
//    stays in force.
//  - Exactly once: the commit id is recorded before the push; after a crash
//    a recorded commit that the remote already has is marked pushed, one it
//    does not have is rebuilt on the new head. Never two commits for one edit.
//  - gitopsd's commits carry a trailer ("Gitopsd-Write-Back: <ids>") and are
//    recorded, so the sync never treats them as foreign changes.
#pragma once
#include <cstdint>
#include <expected>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "sync/diagnostic.h"
#include "sync/reconcile.h"
#include "sync/status.h"

namespace gitopsd::sync {

struct WriteBackConfig {
  std::string author_name = "gitopsd";
  std::string author_email = "gitopsd@localhost";
  std::string conflict_policy = "git-wins";  // or "api-wins"
  int max_rounds = 5;                        // fetch/rebase/push attempts per Run
  // Called after a round's commit is made and before it is pushed. Tests use
  // it to move the remote at that very moment; production leaves it empty.
  std::function<void()> before_push{};
};

struct EditRequest {
  std::string kind;                      // "Template", "ReleaseFlow", "PreviewTemplate"
  std::string name;
  std::optional<std::string> body_text;  // the object's JSON; nullopt = delete
  std::optional<int64_t> if_match;       // expected current revision
  std::string actor;                     // API token name, for the commit message
};

struct EditReceipt {
  int64_t edit_id = 0;   // outbox row; 0 when nothing had to change
  int64_t revision = 0;  // the object's revision now in force (0 after a delete)
  bool created = false;
  std::string repository;
};

enum class EditErrorCode {
  kInvalid,       // the body fails validation (diagnostics say where)      -> 422
  kNameMismatch,  // "name"/"kind" in the body disagree with the URL        -> 400
  kPrecondition,  // if_match is not the current revision                   -> 412
  kNotFound,      // delete of an object that does not exist                -> 404
  kNotWritable,   // the object's repository has writeBack off / no repo    -> 409
  kResolved,      // the conflict is already resolved                       -> 409
  kInternal,      //                                                        -> 500
};

struct EditError {
  EditErrorCode code;
  std::string message;
  Diagnostics diagnostics;
};

// What Run() did, for the log and the API.
struct WriteBackReport {
  std::string repository;
  std::string commit;       // pushed commit ("" when nothing was pushed)
  int edits_pushed = 0;
  int conflicts = 0;        // new conflicts recorded
  std::vector<std::string> conflict_details;  // one sentence per new conflict, for the log
  // (kind, name) of the objects whose edits were pushed.
  std::vector<std::pair<std::string, std::string>> changed_objects;
  int rounds = 0;           // push attempts
  std::string error;        // why the pending edits are still pending
  std::string Summary() const;
};

class WriteBack {
 public:
  WriteBack(Reconciler& reconciler, store::Store& store, const model::Loader& loader,
            WriteBackConfig config);

  // Thread-safe (only touches the store). The edit is durable on success.
  std::expected<EditReceipt, EditError> Submit(const EditRequest& request);

  // Thread-safe, like Submit. Resolves an open conflict: take "git" (the Git version stays; the API
  // edit is dropped), "api" (the API version is written to Git), or a body
  // (written as a new edit on top of the Git version). Returns the receipt of
  // the resulting edit (edit_id 0 when nothing has to be written).
  std::expected<EditReceipt, EditError> Resolve(int64_t conflict_id, const std::string& take,
                                                const std::optional<std::string>& body_text,
                                                const std::string& actor);

  // Commits and pushes what is pending. Not thread-safe: call it from the
  // thread that calls the reconciler's Sync, never concurrently with it.
  Result<WriteBackReport> Run();

  const std::string& repository() const;

 private:
  Reconciler& reconciler_;
  store::Store& store_;
  const model::Loader& loader_;
  WriteBackConfig config_;
};

}  // namespace gitopsd::sync
