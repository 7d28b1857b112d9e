#include "daemon/triggers/trigger_store.h"

#include <chrono>
#include <mutex>

#include "daemon/runtime/module_db.h"
#include "daemon/tokens.h"
#include "sync/sqlite.h"

namespace gitopsd::triggers {
namespace {

int64_t NowMillis() {
  using namespace std::chrono;
  return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
}

const std::vector<std::string> kMigrations = {
    R"sql(CREATE TABLE trigger_baselines (
            flow_kind TEXT NOT NULL, flow_name TEXT NOT NULL, trigger_ref TEXT NOT NULL,
            created_at INTEGER NOT NULL,
            PRIMARY KEY (flow_kind, flow_name, trigger_ref));
          CREATE TABLE trigger_heads (
            flow_kind TEXT NOT NULL, flow_name TEXT NOT NULL, trigger_ref TEXT NOT NULL,
            branch TEXT NOT NULL, pull_request TEXT NOT NULL, sha TEXT NOT NULL,
            updated_at INTEGER NOT NULL,
            PRIMARY KEY (flow_kind, flow_name, trigger_ref, branch, pull_request));
          CREATE TABLE trigger_events (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            flow_kind TEXT NOT NULL, flow_name TEXT NOT NULL, trigger_ref TEXT NOT NULL,
            repository TEXT NOT NULL, branch TEXT NOT NULL, sha TEXT NOT NULL, previous_sha TEXT NOT NULL,
            pull_request TEXT NOT NULL, status TEXT NOT NULL, run_id INTEGER,
            reason TEXT NOT NULL DEFAULT '', created_at INTEGER NOT NULL);
          CREATE INDEX trigger_events_pending ON trigger_events (status) WHERE status = 'pending';
          CREATE TABLE webhook_tokens (
            flow_kind TEXT NOT NULL, flow_name TEXT NOT NULL, sha256 TEXT NOT NULL UNIQUE,
            created_at INTEGER NOT NULL, last_used_at INTEGER NOT NULL DEFAULT 0,
            PRIMARY KEY (flow_kind, flow_name));
          CREATE TABLE pull_requests (
            repository TEXT NOT NULL, number TEXT NOT NULL, source_branch TEXT NOT NULL,
            draft INTEGER NOT NULL, open INTEGER NOT NULL, updated_at INTEGER NOT NULL,
            PRIMARY KEY (repository, number));
          CREATE TABLE forge_deliveries (
            forge TEXT NOT NULL, delivery_id TEXT NOT NULL, received_at INTEGER NOT NULL,
            PRIMARY KEY (forge, delivery_id));)sql",
};

constexpr int64_t kDeliveryMemoryMs = 7LL * 24 * 3600 * 1000;

constexpr const char* kEventColumns =
    "id, flow_kind, flow_name, trigger_ref, repository, branch, sha, pull_request, status, run_id, reason, "
    "created_at, previous_sha";

EventStatus ParseStatus(const std::string& s) {
  if (s == "started") return EventStatus::kStarted;
  if (s == "skipped") return EventStatus::kSkipped;
  return EventStatus::kPending;
}

TriggerEvent EventFromRow(const sqlite::Statement& st) {
  TriggerEvent e;
  e.id = st.Int(0);
  e.flow = FlowKey{st.Text(1), st.Text(2)};
  e.trigger = st.Text(3);
  e.repository = st.Text(4);
  e.branch = st.Text(5);
  e.sha = st.Text(6);
  e.pull_request = st.Text(7);
  e.status = ParseStatus(st.Text(8));
  if (!st.IsNull(9)) e.run_id = st.Int(9);
  e.reason = st.Text(10);
  e.created_at = st.Int(11);
  e.previous_sha = st.Text(12);
  return e;
}

std::string TokenDigest(const std::string& token) { return daemon::ToHex(daemon::HashToken(token)); }

}  // namespace

const char* EventStatusName(EventStatus s) {
  switch (s) {
    case EventStatus::kPending: return "pending";
    case EventStatus::kStarted: return "started";
    case EventStatus::kSkipped: return "skipped";
  }
  return "pending";
}


struct TriggerStore::Impl {
  explicit Impl(sqlite::Database database) : db(std::move(database)) {}
  std::mutex mu;
  sqlite::Database db;

  // Whether the trigger had its first look; records it if not.
  Result<bool> TakeBaseline(const FlowKey& flow, const std::string& trigger) {
    auto st = db.Cached(
        "INSERT OR IGNORE INTO trigger_baselines (flow_kind, flow_name, trigger_ref, created_at) "
        "VALUES (?1, ?2, ?3, ?4)");
    if (!st) return std::unexpected(st.error());
    if (auto s = (*st)->Bind(1, flow.kind).Bind(2, flow.name).Bind(3, trigger).Bind(4, NowMillis()).Run(); !s) {
      return std::unexpected(s.error());
    }
    return db.Changes() == 0;
  }

  // The handled head of one (branch, pull request), "" when none.
  Result<std::string> HandledSha(const FlowKey& flow, const std::string& trigger, const HeadSeen& head) {
    auto st = db.Cached(
        "SELECT sha FROM trigger_heads WHERE flow_kind = ?1 AND flow_name = ?2 AND trigger_ref = ?3 "
        "AND branch = ?4 AND pull_request = ?5");
    if (!st) return std::unexpected(st.error());
    (*st)->Bind(1, flow.kind).Bind(2, flow.name).Bind(3, trigger).Bind(4, head.branch).Bind(5, head.pull_request);
    auto row = (*st)->Step();
    if (!row) return std::unexpected(row.error());
    return *row ? (*st)->Text(0) : std::string();
  }

  Status SetHandled(const FlowKey& flow, const std::string& trigger, const HeadSeen& head) {
    auto st = db.Cached(
        "INSERT INTO trigger_heads (flow_kind, flow_name, trigger_ref, branch, pull_request, sha, updated_at) "
        "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT (flow_kind, flow_name, trigger_ref, branch, pull_request) "
        "DO UPDATE SET sha = excluded.sha, updated_at = excluded.updated_at");
    if (!st) return std::unexpected(st.error());
    return (*st)
        ->Bind(1, flow.kind)
        .Bind(2, flow.name)
        .Bind(3, trigger)
        .Bind(4, head.branch)
        .Bind(5, head.pull_request)
        .Bind(6, head.sha)
        .Bind(7, NowMillis())
        .Run();
  }

  Result<TriggerEvent> InsertEvent(const FlowKey& flow, const std::string& trigger, const HeadSeen& head,
                                   const std::string& previous) {
    TriggerEvent e;
    e.flow = flow;
    e.trigger = trigger;
    e.repository = head.repository;
    e.branch = head.branch;
    e.sha = head.sha;
    e.previous_sha = previous;
    e.pull_request = head.pull_request;
    e.created_at = NowMillis();
    auto st = db.Cached(
        "INSERT INTO trigger_events (flow_kind, flow_name, trigger_ref, repository, branch, sha, pull_request, "
        "status, created_at, previous_sha) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'pending', ?8, ?9)");
    if (!st) return std::unexpected(st.error());
    if (auto s = (*st)
                     ->Bind(1, flow.kind)
                     .Bind(2, flow.name)
                     .Bind(3, trigger)
                     .Bind(4, head.repository)
                     .Bind(5, head.branch)
                     .Bind(6, head.sha)
                     .Bind(7, head.pull_request)
                     .Bind(8, e.created_at)
                     .Bind(9, previous)
                     .Run();
        !s) {
      return std::unexpected(s.error());
    }
    e.id = db.LastInsertRowId();
    return e;
  }

  Result<std::vector<TriggerEvent>> Select(const std::string& where, const FlowKey& flow, int limit) {
    auto st = db.Prepare(std::string("SELECT ") + kEventColumns + " FROM trigger_events WHERE " + where +
                         " ORDER BY id DESC LIMIT ?3");
    if (!st) return std::unexpected(st.error());
    st->Bind(1, flow.kind).Bind(2, flow.name).Bind(3, limit);
    return sqlite::ReadAll<TriggerEvent>(*st, EventFromRow);
  }

  Status SetEventStatus(int64_t id, const char* status, std::optional<int64_t> run_id, const std::string& reason) {
    auto st = db.Cached("UPDATE trigger_events SET status = ?2, run_id = ?3, reason = ?4 WHERE id = ?1");
    if (!st) return std::unexpected(st.error());
    (*st)->Bind(1, id).Bind(2, status).Bind(4, reason);
    if (run_id) {
      (*st)->Bind(3, *run_id);
    } else {
      (*st)->BindNull(3);
    }
    if (auto s = (*st)->Run(); !s) return s;
    if (db.Changes() == 0) return Fail("no trigger event " + std::to_string(id));
    return Ok();
  }
};

TriggerStore::TriggerStore(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
TriggerStore::~TriggerStore() = default;

Result<std::unique_ptr<TriggerStore>> TriggerStore::Open(const std::string& state_dir) {
  auto db = runtime::OpenModuleDatabase(state_dir + "/state.db", "triggers", kMigrations);
  if (!db) return std::unexpected(db.error());
  return std::unique_ptr<TriggerStore>(new TriggerStore(std::make_unique<Impl>(std::move(*db))));
}

Result<std::vector<TriggerEvent>> TriggerStore::RecordHeads(const FlowKey& flow, const std::string& trigger,
                                                            const std::vector<HeadSeen>& heads, bool fire_on_first) {
  std::lock_guard lock(impl_->mu);
  auto tx = sqlite::Transaction::Begin(impl_->db);
  if (!tx) return std::unexpected(tx.error());
  auto seen_before = impl_->TakeBaseline(flow, trigger);
  if (!seen_before) return std::unexpected(seen_before.error());
  const bool fire = *seen_before || fire_on_first;
  std::vector<TriggerEvent> events;
  for (const HeadSeen& head : heads) {
    auto handled = impl_->HandledSha(flow, trigger, head);
    if (!handled) return std::unexpected(handled.error());
    if (*handled == head.sha) continue;
    if (auto s = impl_->SetHandled(flow, trigger, head); !s) return std::unexpected(s.error());
    if (!fire) continue;
    auto event = impl_->InsertEvent(flow, trigger, head, *handled);
    if (!event) return std::unexpected(event.error());
    events.push_back(std::move(*event));
  }
  if (auto s = tx->Commit(); !s) return std::unexpected(s.error());
  return events;
}

Status TriggerStore::ForgetHead(const FlowKey& flow, const std::string& trigger, const std::string& branch,
                                const std::string& pull_request) {
  std::lock_guard lock(impl_->mu);
  auto st = impl_->db.Cached(
      "DELETE FROM trigger_heads WHERE flow_kind = ?1 AND flow_name = ?2 AND trigger_ref = ?3 "
      "AND pull_request = ?5 AND (branch = ?4 OR ?5 != '')");
  if (!st) return std::unexpected(st.error());
  return (*st)->Bind(1, flow.kind).Bind(2, flow.name).Bind(3, trigger).Bind(4, branch).Bind(5, pull_request).Run();
}

Result<std::vector<HeadSeen>> TriggerStore::Handled(const FlowKey& flow, const std::string& trigger) {
  std::lock_guard lock(impl_->mu);
  auto st = impl_->db.Prepare(
      "SELECT branch, sha, pull_request FROM trigger_heads WHERE flow_kind = ?1 AND flow_name = ?2 "
      "AND trigger_ref = ?3 ORDER BY branch, pull_request");
  if (!st) return std::unexpected(st.error());
  st->Bind(1, flow.kind).Bind(2, flow.name).Bind(3, trigger);
  return sqlite::ReadAll<HeadSeen>(*st, [](const sqlite::Statement& row) {
    return HeadSeen{.repository = "", .branch = row.Text(0), .sha = row.Text(1), .pull_request = row.Text(2)};
  });
}

Result<std::vector<TriggerEvent>> TriggerStore::Pending() {
  std::lock_guard lock(impl_->mu);
  auto st = impl_->db.Prepare(std::string("SELECT ") + kEventColumns +
                              " FROM trigger_events WHERE status = 'pending' ORDER BY id");
  if (!st) return std::unexpected(st.error());
  return sqlite::ReadAll<TriggerEvent>(*st, EventFromRow);
}

Status TriggerStore::MarkStarted(int64_t event_id, int64_t run_id) {
  std::lock_guard lock(impl_->mu);
  return impl_->SetEventStatus(event_id, "started", run_id, "");
}

Status TriggerStore::MarkSkipped(int64_t event_id, const std::string& reason) {
  std::lock_guard lock(impl_->mu);
  return impl_->SetEventStatus(event_id, "skipped", std::nullopt, reason);
}

Result<std::vector<TriggerEvent>> TriggerStore::Events(const FlowKey& flow, int limit) {
  std::lock_guard lock(impl_->mu);
  return impl_->Select("(?1 = '' OR (flow_kind = ?1 AND flow_name = ?2))", flow, limit);
}

Result<std::string> TriggerStore::RotateToken(const FlowKey& flow) {
  auto token = daemon::NewRandomToken();
  if (!token) return token;
  std::lock_guard lock(impl_->mu);
  auto st = impl_->db.Cached(
      "INSERT INTO webhook_tokens (flow_kind, flow_name, sha256, created_at) VALUES (?1, ?2, ?3, ?4) "
      "ON CONFLICT (flow_kind, flow_name) DO UPDATE SET sha256 = excluded.sha256, "
      "created_at = excluded.created_at, last_used_at = 0");
  if (!st) return std::unexpected(st.error());
  if (auto s = (*st)->Bind(1, flow.kind).Bind(2, flow.name).Bind(3, TokenDigest(*token)).Bind(4, NowMillis()).Run();
      !s) {
    return std::unexpected(s.error());
  }
  return token;
}

Result<std::optional<FlowKey>> TriggerStore::FlowOfToken(const std::string& token) {
  // The token's digest is looked up, not the token: equal digests are what
  // the index finds, and a timing difference would only reveal the digest.
  const std::string digest = TokenDigest(token);
  std::lock_guard lock(impl_->mu);
  auto st = impl_->db.Cached("SELECT flow_kind, flow_name FROM webhook_tokens WHERE sha256 = ?1");
  if (!st) return std::unexpected(st.error());
  (*st)->Bind(1, digest);
  auto row = (*st)->Step();
  if (!row) return std::unexpected(row.error());
  if (!*row) return std::optional<FlowKey>();
  FlowKey flow{(*st)->Text(0), (*st)->Text(1)};
  auto used = impl_->db.Cached("UPDATE webhook_tokens SET last_used_at = ?2 WHERE sha256 = ?1");
  if (used) (void)(*used)->Bind(1, digest).Bind(2, NowMillis()).Run();
  return std::optional<FlowKey>(std::move(flow));
}

Result<std::vector<WebhookToken>> TriggerStore::Tokens() {
  std::lock_guard lock(impl_->mu);
  auto st = impl_->db.Prepare(
      "SELECT flow_kind, flow_name, created_at, last_used_at FROM webhook_tokens ORDER BY flow_kind, flow_name");
  if (!st) return std::unexpected(st.error());
  return sqlite::ReadAll<WebhookToken>(*st, [](const sqlite::Statement& row) {
    return WebhookToken{FlowKey{row.Text(0), row.Text(1)}, row.Int(2), row.Int(3)};
  });
}

Status TriggerStore::RemoveToken(const FlowKey& flow) {
  std::lock_guard lock(impl_->mu);
  auto st = impl_->db.Cached("DELETE FROM webhook_tokens WHERE flow_kind = ?1 AND flow_name = ?2");
  if (!st) return std::unexpected(st.error());
  return (*st)->Bind(1, flow.kind).Bind(2, flow.name).Run();
}

Status TriggerStore::NotePullRequest(const std::string& repository, const PullRequestInfo& pr) {
  std::lock_guard lock(impl_->mu);
  auto st = impl_->db.Cached(
      "INSERT INTO pull_requests (repository, number, source_branch, draft, open, updated_at) "
      "VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (repository, number) DO UPDATE SET "
      "source_branch = CASE WHEN excluded.source_branch = '' THEN source_branch ELSE excluded.source_branch END, "
      "draft = excluded.draft, open = excluded.open, updated_at = excluded.updated_at");
  if (!st) return std::unexpected(st.error());
  return (*st)
      ->Bind(1, repository)
      .Bind(2, pr.number)
      .Bind(3, pr.source_branch)
      .Bind(4, pr.draft ? 1 : 0)
      .Bind(5, pr.open ? 1 : 0)
      .Bind(6, NowMillis())
      .Run();
}

Result<std::vector<PullRequestInfo>> TriggerStore::PullRequests(const std::string& repository) {
  std::lock_guard lock(impl_->mu);
  auto st = impl_->db.Prepare(
      "SELECT number, source_branch, draft, open FROM pull_requests WHERE repository = ?1 "
      "ORDER BY CAST(number AS INTEGER), number");
  if (!st) return std::unexpected(st.error());
  st->Bind(1, repository);
  return sqlite::ReadAll<PullRequestInfo>(*st, [](const sqlite::Statement& row) {
    return PullRequestInfo{row.Text(0), row.Text(1), row.Int(2) != 0, row.Int(3) != 0};
  });
}

Result<bool> TriggerStore::FirstDelivery(const std::string& forge, const std::string& delivery_id) {
  std::lock_guard lock(impl_->mu);
  const int64_t now = NowMillis();
  auto forget = impl_->db.Cached("DELETE FROM forge_deliveries WHERE received_at < ?1");
  if (!forget) return std::unexpected(forget.error());
  if (auto s = (*forget)->Bind(1, now - kDeliveryMemoryMs).Run(); !s) return std::unexpected(s.error());
  auto st = impl_->db.Cached(
      "INSERT OR IGNORE INTO forge_deliveries (forge, delivery_id, received_at) VALUES (?1, ?2, ?3)");
  if (!st) return std::unexpected(st.error());
  if (auto s = (*st)->Bind(1, forge).Bind(2, delivery_id).Bind(3, now).Run(); !s) return std::unexpected(s.error());
  return impl_->db.Changes() == 1;
}

}  // namespace gitopsd::triggers
