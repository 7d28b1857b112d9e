#include "sync/writeback.h"

#include <signal.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <map>
#include <set>

#include "sync/json.h"
#include "sync/json_edit.h"
#include "sync/merge.h"

namespace gitopsd::sync {
namespace {

#define TRY(expr)                                \
  do {                                           \
    auto _s = (expr);                            \
    if (!_s) return std::unexpected(_s.error()); \
  } while (0)

constexpr const char* kTrailer = "Gitopsd-Write-Back";

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// Crash tests name a point in GITOPSD_FAULT; the process dies there as if
// killed with -9, so the test can check what a restart makes of it.
void FaultPoint(const char* name) {
  const char* wanted = std::getenv("GITOPSD_FAULT");
  if (wanted && std::strcmp(wanted, name) == 0) raise(SIGKILL);
}

std::unexpected<EditError> EditFail(EditErrorCode code, std::string message,
                                    Diagnostics diagnostics = {}) {
  return std::unexpected(EditError{code, std::move(message), std::move(diagnostics)});
}

std::optional<json::Value> ParseStored(const std::string& compact) {
  if (compact.empty()) return std::nullopt;
  auto v = json::Parse(compact, json::ParseOptions{64 << 20, 1024});
  if (!v) return std::nullopt;
  return std::move(*v);
}

// Equality of two stored bodies as JSON values ("" = no object).
bool SameObject(const std::string& a, const std::string& b) {
  if (a.empty() || b.empty()) return a.empty() && b.empty();
  if (a == b) return true;
  auto va = ParseStored(a), vb = ParseStored(b);
  return va && vb && *va == *vb;
}

std::string Describe(const store::EditRecord& e) {
  return std::string(e.op == "delete" ? "delete " : "update ") + e.kind + " \"" + e.name + "\"";
}

// The unfinished edits of one object, merged into one change: the newest
// edit says what the object becomes; the oldest says what it was based on.
struct ObjectChange {
  std::vector<store::EditRecord> edits;
  const store::EditRecord& first() const { return edits.front(); }
  const store::EditRecord& last() const { return edits.back(); }
  std::vector<int64_t> ids() const {
    std::vector<int64_t> out;
    for (const auto& e : edits) out.push_back(e.id);
    return out;
  }
};

std::vector<ObjectChange> GroupByObject(const std::vector<store::EditRecord>& edits) {
  std::vector<ObjectChange> out;
  std::map<std::pair<std::string, std::string>, size_t> index;
  for (const auto& e : edits) {
    auto key = std::make_pair(e.kind, e.name);
    auto it = index.find(key);
    if (it == index.end()) {
      index.emplace(key, out.size());
      out.push_back(ObjectChange{{e}});
    } else {
      out[it->second].edits.push_back(e);
    }
  }
  return out;
}

std::string CommitMessage(const std::vector<const ObjectChange*>& changes) {
  std::set<std::string> actors;
  std::string ids;
  for (const auto* c : changes) {
    for (const auto& e : c->edits) {
      actors.insert(e.actor);
      ids += (ids.empty() ? "" : ", ") + std::to_string(e.id);
    }
  }
  std::string who;
  for (const auto& a : actors) who += (who.empty() ? "" : ", ") + a;
  std::string msg;
  if (changes.size() == 1) {
    const auto& e = changes[0]->last();
    msg = std::string(e.op == "delete" ? "Delete " : "Update ") + e.kind + " \"" + e.name +
          "\" through the API (token " + who + ")\n";
  } else {
    msg = "Update " + std::to_string(changes.size()) + " objects through the API (tokens " + who +
          ")\n\n";
    for (const auto* c : changes) msg += "- " + Describe(c->last()) + "\n";
  }
  msg += "\n" + std::string(kTrailer) + ": " + ids + "\n";
  return msg;
}

}  // namespace

std::string WriteBackReport::Summary() const {
  std::string out = "repository " + repository + ": write-back ";
  if (!error.empty()) return out + "pending: " + error;
  if (commit.empty()) {
    out += "had nothing to push";
  } else {
    out += "pushed " + commit.substr(0, 7) + " with " + std::to_string(edits_pushed) +
           (edits_pushed == 1 ? " edit" : " edits");
  }
  if (conflicts) out += ", " + std::to_string(conflicts) + " new conflicts";
  if (rounds > 1) out += " after " + std::to_string(rounds) + " attempts";
  return out;
}

WriteBack::WriteBack(Reconciler& reconciler, store::Store& store, const model::Loader& loader,
                     WriteBackConfig config)
    : reconciler_(reconciler), store_(store), loader_(loader), config_(std::move(config)) {}

const std::string& WriteBack::repository() const { return reconciler_.config().name; }

std::expected<EditReceipt, EditError> WriteBack::Submit(const EditRequest& request) {
  auto kind = model::ParseKind(request.kind);
  if (!kind) return EditFail(EditErrorCode::kNotFound, "unknown kind \"" + request.kind + "\"");
  const std::string kind_name = model::KindName(*kind);
  const RepositoryConfig& repo = reconciler_.config();

  auto existing = store_.GetObject(kind_name, request.name);
  if (!existing) return EditFail(EditErrorCode::kInternal, existing.error().message);
  if (*existing && (*existing)->repository != repo.name) {
    return EditFail(EditErrorCode::kNotWritable,
                    kind_name + " \"" + request.name + "\" belongs to repository \"" +
                        (*existing)->repository + "\"");
  }
  const std::string folder_prefix = repo.folder.empty() ? "" : repo.folder + "/";
  std::string path = *existing ? (*existing)->path
                               : folder_prefix + model::KindFolder(*kind) + "/" + request.name +
                                     ".json";

  // Validate exactly as a file at that path would be.
  std::string body;
  if (request.body_text) {
    std::string relative = path.compare(0, folder_prefix.size(), folder_prefix) == 0
                               ? path.substr(folder_prefix.size())
                               : path;
    model::LoadResult loaded = loader_.Load(path, relative, *request.body_text, repo.limits);
    if (!loaded.object) {
      return EditFail(EditErrorCode::kInvalid, "the object is not valid",
                      std::move(loaded.diagnostics));
    }
    if (loaded.object->kind != *kind || loaded.object->name != request.name) {
      return EditFail(EditErrorCode::kNameMismatch,
                      std::string("the body describes ") + model::KindName(loaded.object->kind) +
                          " \"" + loaded.object->name + "\" but the URL names " + kind_name +
                          " \"" + request.name + "\"");
    }
    body = json::SerializeCompact(loaded.object->body);
  }

  EditReceipt receipt;
  receipt.repository = repo.name;
  std::optional<EditError> refused;
  auto stored = store_.Apply([&](store::Tx& tx) -> Status {
    auto current = tx.GetObject(kind_name, request.name);
    if (!current) return std::unexpected(current.error());
    int64_t revision = *current ? (*current)->revision : 0;
    if (request.if_match && *request.if_match != revision) {
      refused = EditError{EditErrorCode::kPrecondition,
                          kind_name + " \"" + request.name + "\" is at revision " +
                              std::to_string(revision) + ", not " +
                              std::to_string(*request.if_match),
                          {}};
      return Ok();
    }
    if (!request.body_text && !*current) {
      refused = EditError{EditErrorCode::kNotFound,
                          kind_name + " \"" + request.name + "\" does not exist", {}};
      return Ok();
    }
    // The base: what Git holds for the path, as last applied (or, while
    // another edit of this object is in flight, what that edit holds).
    auto in_flight = tx.UnfinishedEditOf(kind_name, request.name);
    if (!in_flight) return std::unexpected(in_flight.error());
    std::string base;
    if (*in_flight) {
      base = (*in_flight)->base_body;
    } else {
      auto file = tx.GetFile(repo.name, path);
      if (!file) return std::unexpected(file.error());
      if (*file && (*file)->valid) {
        base = (*file)->body;
      } else if (*current) {
        base = (*current)->body;
      }
    }
    if (request.body_text) {
      store::ObjectRecord next{kind_name, request.name, repo.name, path, body,
                               *current ? (*current)->blob_id : "",
                               *current ? (*current)->source_commit : "", 0, 0};
      auto changed = tx.PutObject(next);
      if (!changed) return std::unexpected(changed.error());
      receipt.revision = revision + (*changed ? 1 : 0);
      receipt.created = !*current;
      if (!*changed) return Ok();  // nothing to write
    } else {
      TRY(tx.DeleteObject(kind_name, request.name));
    }
    store::EditRecord edit;
    edit.repository = repo.name;
    edit.kind = kind_name;
    edit.name = request.name;
    edit.op = request.body_text ? "put" : "delete";
    edit.body = body;
    edit.base_body = base;
    edit.path = path;
    edit.actor = request.actor.empty() ? "anonymous" : request.actor;
    edit.state = "pending";
    auto id = tx.AddEdit(edit);
    if (!id) return std::unexpected(id.error());
    receipt.edit_id = *id;
    return Ok();
  });
  if (!stored) return EditFail(EditErrorCode::kInternal, stored.error().message);
  if (refused) return std::unexpected(*refused);
  return receipt;
}

std::expected<EditReceipt, EditError> WriteBack::Resolve(
    int64_t conflict_id, const std::string& take, const std::optional<std::string>& body_text,
    const std::string& actor) {
  auto conflict = store_.GetConflict(conflict_id);
  if (!conflict) return EditFail(EditErrorCode::kInternal, conflict.error().message);
  if (!*conflict) {
    return EditFail(EditErrorCode::kNotFound,
                    "conflict " + std::to_string(conflict_id) + " does not exist");
  }
  const store::ConflictRecord& c = **conflict;
  if (c.resolved_at_ms) {
    return EditFail(EditErrorCode::kResolved, "conflict " + std::to_string(conflict_id) +
                                                  " was already resolved (" + c.resolution + ")");
  }
  if (c.repository != repository()) {
    return EditFail(EditErrorCode::kNotWritable, "conflict " + std::to_string(conflict_id) +
                                                     " belongs to repository " + c.repository);
  }
  std::optional<std::string> wanted;  // the body to write; nullopt = delete
  std::string resolution = take;
  if (body_text) {
    wanted = *body_text;
    resolution = "body";
  } else if (take == "git" || take == "api") {
    const std::string& chosen = take == "git" ? c.git_body : c.api_body;
    if (!chosen.empty()) wanted = chosen;
    // The chosen side is already what is in force: nothing to write.
    if (c.in_force == take) {
      auto done = store_.Apply([&](store::Tx& tx) {
        return tx.ResolveConflict(conflict_id, resolution, NowMs());
      });
      if (!done) return EditFail(EditErrorCode::kInternal, done.error().message);
      auto object = store_.GetObject(c.kind, c.name);
      EditReceipt receipt;
      receipt.repository = c.repository;
      receipt.revision = object && *object ? (*object)->revision : 0;
      return receipt;
    }
  } else {
    return EditFail(EditErrorCode::kNameMismatch,
                    "resolve takes {\"take\": \"git\"} or {\"take\": \"api\"} or {\"body\": ...}");
  }
  std::optional<std::string> text;
  if (wanted) {
    auto parsed = json::Parse(*wanted, json::ParseOptions{64 << 20, 1024});
    text = parsed ? json::Serialize(*parsed) : *wanted;
  }
  if (!text && !store_.GetObject(c.kind, c.name).value_or(std::nullopt)) {
    // Deleting what is already gone.
    auto done = store_.Apply(
        [&](store::Tx& tx) { return tx.ResolveConflict(conflict_id, resolution, NowMs()); });
    if (!done) return EditFail(EditErrorCode::kInternal, done.error().message);
    return EditReceipt{0, 0, false, c.repository};
  }
  auto receipt = Submit(EditRequest{c.kind, c.name, text, std::nullopt, actor});
  if (!receipt) return receipt;
  auto done = store_.Apply(
      [&](store::Tx& tx) { return tx.ResolveConflict(conflict_id, resolution, NowMs()); });
  if (!done) return EditFail(EditErrorCode::kInternal, done.error().message);
  return receipt;
}

namespace {

// One round of the write-back: decides, per object, what goes into the
// commit, and records conflicts as the policy says.
class RoundPlanner {
 public:
  RoundPlanner(store::Tx& tx, git::Repository& git, const RepositoryConfig& repo,
               const WriteBackConfig& config, const std::string& head)
      : tx_(tx), git_(git), repo_(repo), config_(config), head_(head) {}

  std::vector<git::FileWrite> writes;
  std::vector<const ObjectChange*> written;   // changes in the commit
  std::vector<const ObjectChange*> finished;  // nothing left to write
  std::vector<std::pair<std::string, std::string>> refresh;  // objects to re-decide
  int conflicts = 0;
  std::vector<std::string> conflict_details;

  Status Plan(const ObjectChange& change) {
    const store::EditRecord& last = change.last();
    const std::string& base = change.first().base_body;
    auto file = tx_.GetFile(repo_.name, last.path);
    if (!file) return std::unexpected(file.error());
    const bool file_exists = file->has_value();
    const bool file_valid = file_exists && (*file)->valid;
    const std::string theirs = file_valid ? (*file)->body : "";

    if (last.op == "delete") {
      if (!file_exists) return Finish(change);
      if (file_valid && !SameObject(theirs, base)) {
        return Conflict(change, base, theirs, "", {"/"});
      }
      writes.push_back(git::FileWrite{last.path, std::nullopt});
      written.push_back(&change);
      return Ok();
    }

    std::string result = last.body;
    if (file_valid && !SameObject(theirs, base) && !SameObject(theirs, last.body)) {
      // Git changed the object since the edit's base: merge three ways.
      auto mine = ParseStored(last.body);
      auto git_side = ParseStored(theirs);
      auto base_value = ParseStored(base);
      if (!mine || !git_side) return Fail("stored bodies of " + Describe(last) + " do not parse");
      if (!base_value) {
        return Conflict(change, base, theirs, last.body, {"/"});
      }
      json::MergeResult merged = json::Merge3(*base_value, *mine, *git_side);
      if (!merged.clean()) {
        std::vector<std::string> pointers;
        for (const auto& c : merged.conflicts) pointers.push_back(c.pointer);
        return Conflict(change, base, theirs, last.body, pointers);
      }
      result = json::SerializeCompact(merged.merged);
    } else if (!file_valid && file_exists && !base.empty()) {
      // Git's file is broken now; the edit replaces it (the last good
      // version was the base).
    } else if (!file_exists && !base.empty()) {
      // Git deleted the file while the API edited the object.
      return Conflict(change, base, "", last.body, {"/"});
    }
    if (file_valid && SameObject(theirs, result)) return Finish(change);  // Git has it already
    auto text = FileText(file_exists ? (*file)->blob_id : "", file_valid, result);
    if (!text) return std::unexpected(text.error());
    writes.push_back(git::FileWrite{last.path, std::move(*text)});
    written.push_back(&change);
    if (result != last.body) refresh.emplace_back(last.kind, last.name);
    return Ok();
  }

 private:
  // The new file: the old text edited in place when it parses, else canonical.
  Result<std::string> FileText(const std::string& blob_id, bool valid, const std::string& body) {
    auto value = ParseStored(body);
    if (!value) return Fail("cannot parse the stored body of an edit");
    if (!blob_id.empty() && valid) {
      auto original = git_.ReadBlob(blob_id, size_t{64} << 20);
      if (original) {
        auto rewritten = json::RewritePreservingFormat(*original, *value);
        if (rewritten) return rewritten;
      }
    }
    return json::Serialize(*value);
  }

  Status Finish(const ObjectChange& change) {
    finished.push_back(&change);
    refresh.emplace_back(change.last().kind, change.last().name);
    return Ok();
  }

  // Records a conflict; the policy decides which side stays in force.
  Status Conflict(const ObjectChange& change, const std::string& base, const std::string& git_body,
                  const std::string& api_body, const std::vector<std::string>& pointers) {
    const store::EditRecord& last = change.last();
    bool api_wins = config_.conflict_policy == "api-wins";
    std::string pointer_list = "[";
    for (size_t i = 0; i < pointers.size(); ++i) {
      if (i) pointer_list += ",";
      json::AppendQuoted(pointer_list, pointers[i]);
    }
    pointer_list += "]";
    store::ConflictRecord record{0,           last.id,        repo_.name, last.kind,
                                 last.name,   last.path,      base,       git_body,
                                 api_body,    config_.conflict_policy,
                                 api_wins ? "api" : "git",    pointer_list, 0, 0, ""};
    auto id = tx_.AddConflict(record);
    if (!id) return std::unexpected(id.error());
    ++conflicts;
    std::string where;
    for (const auto& p : pointers) where += (where.empty() ? "" : ", ") + p;
    conflict_details.push_back(
        "conflict " + std::to_string(*id) + ": " + last.kind + " \"" + last.name + "\" (" +
        last.path + ") was changed both in Git and through the API (edit " +
        std::to_string(last.id) + " by " + last.actor + ") at " + where + "; " +
        config_.conflict_policy + " keeps the " + (api_wins ? "API's" : "Git") +
        " version in force; both are kept: POST /api/v1/conflicts/" + std::to_string(*id) +
        "/resolve");
    if (api_wins) {
      if (api_body.empty()) {
        writes.push_back(git::FileWrite{last.path, std::nullopt});
      } else {
        auto value = ParseStored(api_body);
        if (!value) return Fail("cannot parse the stored body of an edit");
        writes.push_back(git::FileWrite{last.path, json::Serialize(*value)});
      }
      written.push_back(&change);
      return Ok();
    }
    for (auto e : change.edits) {
      e.state = "conflict";
      e.last_error = "conflicts with a change in Git (conflict " + std::to_string(*id) + ")";
      TRY(tx_.UpdateEdit(e));
    }
    refresh.emplace_back(last.kind, last.name);  // Git's version goes back in force
    return Ok();
  }

  store::Tx& tx_;
  git::Repository& git_;
  const RepositoryConfig& repo_;
  const WriteBackConfig& config_;
  const std::string& head_;
};

Status MarkEdits(store::Tx& tx, const std::vector<store::EditRecord>& edits,
                 const std::string& state, const std::string& commit, const std::string& error) {
  for (auto e : edits) {
    e.state = state;
    e.commit_id = commit;
    e.last_error = error;
    if (!error.empty()) ++e.attempts;
    TRY(tx.UpdateEdit(e));
  }
  return Ok();
}

}  // namespace

Result<WriteBackReport> WriteBack::Run() {
  WriteBackReport report;
  report.repository = repository();
  const RepositoryConfig& repo = reconciler_.config();
  git::Repository& git = reconciler_.repository();

  auto unfinished = [&]() -> Result<std::vector<store::EditRecord>> {
    std::vector<store::EditRecord> out;
    TRY(store_.Apply([&](store::Tx& tx) -> Status {
      auto edits = tx.UnfinishedEdits(repo.name);
      if (!edits) return std::unexpected(edits.error());
      out = std::move(*edits);
      return Ok();
    }));
    return out;
  };
  auto first = unfinished();
  if (!first) return std::unexpected(first.error());
  if (first->empty()) return report;

  for (int round = 1; round <= config_.max_rounds; ++round) {
    report.rounds = round;
    // The Git side first: fetch and apply (objects with edits in flight keep
    // the API's version until the edit is merged).
    auto synced = reconciler_.Sync();
    if (!synced) {
      report.error = synced.error().message;
      auto edits = unfinished();
      if (edits) {
        TRY(store_.Apply([&](store::Tx& tx) -> Status {
          for (auto e : *edits) {
            e.last_error = report.error;
            ++e.attempts;
            TRY(tx.UpdateEdit(e));
          }
          return Ok();
        }));
      }
      return report;
    }
    const std::string head = synced->to_commit;
    auto edits = unfinished();
    if (!edits) return std::unexpected(edits.error());

    // Edits recorded in a commit before a crash: landed or to be rebuilt.
    std::vector<std::pair<std::string, std::string>> landed;
    std::vector<store::EditRecord> pending;
    TRY(store_.Apply([&](store::Tx& tx) -> Status {
      for (auto e : *edits) {
        if (e.state == "committed") {
          if (git.HasCommit(e.commit_id) && git.IsAncestor(e.commit_id, head)) {
            e.state = "pushed";
            e.last_error.clear();
            TRY(tx.UpdateEdit(e));
            landed.emplace_back(e.kind, e.name);
            ++report.edits_pushed;
            continue;
          }
          e.state = "pending";
          e.commit_id.clear();
          TRY(tx.UpdateEdit(e));
        }
        pending.push_back(e);
      }
      return Ok();
    }));
    if (!landed.empty()) {
      TRY(reconciler_.Refresh(landed, head));
      report.changed_objects.insert(report.changed_objects.end(), landed.begin(), landed.end());
    }
    if (pending.empty()) return report;

    std::vector<ObjectChange> changes = GroupByObject(pending);
    std::string commit;
    std::vector<std::pair<std::string, std::string>> refresh;
    std::vector<store::EditRecord> in_commit;
    TRY(store_.Apply([&](store::Tx& tx) -> Status {
      RoundPlanner planner(tx, git, repo, config_, head);
      for (const auto& change : changes) TRY(planner.Plan(change));
      report.conflicts += planner.conflicts;
      report.conflict_details.insert(report.conflict_details.end(),
                                     planner.conflict_details.begin(),
                                     planner.conflict_details.end());
      refresh = planner.refresh;
      for (const auto* change : planner.finished) {
        TRY(MarkEdits(tx, change->edits, "pushed", head, ""));
      }
      if (planner.writes.empty()) return Ok();
      FaultPoint("before-commit");
      auto created = git.CreateCommit(head, planner.writes,
                                      git::Signature{config_.author_name, config_.author_email},
                                      CommitMessage(planner.written));
      if (!created) return std::unexpected(created.error());
      commit = *created;
      for (const auto* change : planner.written) {
        in_commit.insert(in_commit.end(), change->edits.begin(), change->edits.end());
      }
      TRY(MarkEdits(tx, in_commit, "committed", commit, ""));
      return tx.RecordOwnCommit(repo.name, commit);
    }));
    if (commit.empty()) {
      if (!refresh.empty()) TRY(reconciler_.Refresh(refresh, head));
      return report;
    }
    FaultPoint("after-commit");
    if (config_.before_push) config_.before_push();

    auto pushed = git.Push(commit, repo.branch, repo.credentials);
    if (!pushed || pushed->outcome == git::PushOutcome::kRejected) {
      report.error = pushed ? "the remote refused the push: " + pushed->message
                            : pushed.error().message;
      TRY(store_.Apply([&](store::Tx& tx) {
        return MarkEdits(tx, in_commit, "pending", "", report.error);
      }));
      return report;
    }
    if (pushed->outcome == git::PushOutcome::kRejectedNonFastForward) continue;  // rebase

    FaultPoint("after-push");
    TRY(store_.Apply([&](store::Tx& tx) { return MarkEdits(tx, in_commit, "pushed", commit, ""); }));
    report.commit = commit;
    report.edits_pushed += static_cast<int>(in_commit.size());
    auto applied = reconciler_.Apply(commit);
    if (!applied) return std::unexpected(applied.error());
    for (const auto& e : in_commit) {
      refresh.emplace_back(e.kind, e.name);
      report.changed_objects.emplace_back(e.kind, e.name);
    }
    TRY(reconciler_.Refresh(refresh, commit));
    return report;
  }
  report.error = "the remote kept moving: gave up after " + std::to_string(config_.max_rounds) +
                 " attempts; will retry";
  return report;
}

}  // namespace gitopsd::sync
