#include "daemon/previews/preview_store.h"

#include <mutex>

#include "daemon/runtime/module_db.h"
#include "sync/sqlite.h"

namespace gitopsd::previews {
namespace {

const std::vector<std::string> kMigrations = {
    R"sql(CREATE TABLE previews (
            name TEXT PRIMARY KEY, template_name TEXT NOT NULL, trigger_ref TEXT NOT NULL,
            repository TEXT NOT NULL, branch TEXT NOT NULL, pull_request TEXT NOT NULL, sha TEXT NOT NULL,
            status TEXT NOT NULL, setup_run INTEGER, teardown_run INTEGER,
            created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL, expires_at INTEGER NOT NULL,
            url TEXT NOT NULL, resources TEXT NOT NULL, error TEXT NOT NULL, args TEXT NOT NULL);
          CREATE INDEX previews_source ON previews (template_name, pull_request, branch);)sql",
    R"sql(ALTER TABLE previews ADD COLUMN skip_teardown INTEGER NOT NULL DEFAULT 0;)sql",
};

constexpr const char* kColumns =
    "name, template_name, trigger_ref, repository, branch, pull_request, sha, status, setup_run, teardown_run, "
    "created_at, updated_at, expires_at, url, resources, error, args, skip_teardown";

constexpr PreviewStatus kAll[] = {PreviewStatus::kQueued,      PreviewStatus::kDeploying,
                                  PreviewStatus::kReady,       PreviewStatus::kFailed,
                                  PreviewStatus::kTearingDown, PreviewStatus::kTeardownFailed,
                                  PreviewStatus::kGone};

std::string ResourcesText(const std::vector<PreviewResource>& resources) {
  json::Value list = json::Value::Array();
  for (const PreviewResource& r : resources) {
    list.items().push_back(
        json::Value::Object({{"kind", json::Value::String(r.kind)}, {"name", json::Value::String(r.name)}}));
  }
  return json::SerializeCompact(list);
}

std::vector<PreviewResource> ParseResources(const std::string& text) {
  std::vector<PreviewResource> out;
  auto list = json::Parse(text);
  if (!list || !list->is_array()) return out;
  for (const json::Value& item : list->items()) {
    const json::Value* kind = item.Find("kind");
    const json::Value* name = item.Find("name");
    if (kind && name && kind->is_string() && name->is_string()) out.push_back({kind->as_string(), name->as_string()});
  }
  return out;
}

Preview FromRow(const sqlite::Statement& st) {
  Preview p;
  p.name = st.Text(0);
  p.template_name = st.Text(1);
  p.trigger = st.Text(2);
  p.repository = st.Text(3);
  p.branch = st.Text(4);
  p.pull_request = st.Text(5);
  p.sha = st.Text(6);
  p.status = ParsePreviewStatus(st.Text(7)).value_or(PreviewStatus::kFailed);
  if (!st.IsNull(8)) p.setup_run = st.Int(8);
  if (!st.IsNull(9)) p.teardown_run = st.Int(9);
  p.created_at = st.Int(10);
  p.updated_at = st.Int(11);
  p.expires_at = st.Int(12);
  p.url = st.Text(13);
  p.resources = ParseResources(st.Text(14));
  p.error = st.Text(15);
  auto args = json::Parse(st.Text(16));
  p.args = args && args->is_object() ? *args : json::Value::Object();
  p.skip_teardown = st.Int(17) != 0;
  return p;
}

void BindOptional(sqlite::Statement& st, int index, const std::optional<int64_t>& value) {
  if (value) {
    st.Bind(index, *value);
  } else {
    st.BindNull(index);
  }
}

// Binds every column of `p` in kColumns order (?1 .. ?18).
void BindAll(sqlite::Statement& st, const Preview& p) {
  st.Bind(1, p.name)
      .Bind(2, p.template_name)
      .Bind(3, p.trigger)
      .Bind(4, p.repository)
      .Bind(5, p.branch)
      .Bind(6, p.pull_request)
      .Bind(7, p.sha)
      .Bind(8, PreviewStatusName(p.status));
  BindOptional(st, 9, p.setup_run);
  BindOptional(st, 10, p.teardown_run);
  st.Bind(11, p.created_at)
      .Bind(12, p.updated_at)
      .Bind(13, p.expires_at)
      .Bind(14, p.url)
      .Bind(15, ResourcesText(p.resources))
      .Bind(16, p.error)
      .Bind(17, json::SerializeCompact(p.args.is_object() ? p.args : json::Value::Object()))
      .Bind(18, p.skip_teardown ? 1 : 0);
}

}  // namespace

const char* PreviewStatusName(PreviewStatus s) {
  switch (s) {
    case PreviewStatus::kQueued: return "queued";
    case PreviewStatus::kDeploying: return "deploying";
    case PreviewStatus::kReady: return "ready";
    case PreviewStatus::kFailed: return "failed";
    case PreviewStatus::kTearingDown: return "tearing_down";
    case PreviewStatus::kTeardownFailed: return "teardown_failed";
    case PreviewStatus::kGone: return "gone";
  }
  return "failed";
}

std::optional<PreviewStatus> ParsePreviewStatus(std::string_view s) {
  for (PreviewStatus status : kAll) {
    if (s == PreviewStatusName(status)) return status;
  }
  return std::nullopt;
}

bool IsLive(PreviewStatus s) { return s != PreviewStatus::kGone; }

struct PreviewStore::Impl {
  explicit Impl(sqlite::Database database) : db(std::move(database)) {}
  std::mutex mu;
  sqlite::Database db;

  Result<std::vector<Preview>> Query(const std::string& where, const std::vector<std::string>& params) {
    auto st = db.Prepare(std::string("SELECT ") + kColumns + " FROM previews WHERE " + where);
    if (!st) return std::unexpected(st.error());
    for (size_t i = 0; i < params.size(); ++i) st->Bind(static_cast<int>(i) + 1, params[i]);
    return sqlite::ReadAll<Preview>(*st, FromRow);
  }

  Result<std::optional<Preview>> One(const std::string& where, const std::vector<std::string>& params) {
    auto found = Query(where + " LIMIT 1", params);
    if (!found) return std::unexpected(found.error());
    if (found->empty()) return std::optional<Preview>();
    return std::optional<Preview>(std::move(found->front()));
  }
};

PreviewStore::PreviewStore(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
PreviewStore::~PreviewStore() = default;

Result<std::unique_ptr<PreviewStore>> PreviewStore::Open(const std::string& state_dir) {
  auto db = runtime::OpenModuleDatabase(state_dir + "/state.db", "previews", kMigrations);
  if (!db) return std::unexpected(db.error());
  return std::unique_ptr<PreviewStore>(new PreviewStore(std::make_unique<Impl>(std::move(*db))));
}

Status PreviewStore::Create(const Preview& preview) {
  std::lock_guard lock(impl_->mu);
  auto tx = sqlite::Transaction::Begin(impl_->db);
  if (!tx) return std::unexpected(tx.error());
  auto existing = impl_->One("name = ?1", {preview.name});
  if (!existing) return std::unexpected(existing.error());
  if (*existing && IsLive((*existing)->status)) {
    return Fail("preview \"" + preview.name + "\" already exists (" + PreviewStatusName((*existing)->status) + ")");
  }
  auto st = impl_->db.Prepare(std::string("INSERT OR REPLACE INTO previews (") + kColumns +
                              ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18)");
  if (!st) return std::unexpected(st.error());
  BindAll(*st, preview);
  if (auto s = st->Run(); !s) return s;
  return tx->Commit();
}

Status PreviewStore::Update(const Preview& preview) {
  std::lock_guard lock(impl_->mu);
  auto st = impl_->db.Prepare(
      "UPDATE previews SET template_name = ?2, trigger_ref = ?3, repository = ?4, branch = ?5, pull_request = ?6, "
      "sha = ?7, status = ?8, setup_run = ?9, teardown_run = ?10, created_at = ?11, updated_at = ?12, "
      "expires_at = ?13, url = ?14, resources = ?15, error = ?16, args = ?17, skip_teardown = ?18 WHERE name = ?1");
  if (!st) return std::unexpected(st.error());
  BindAll(*st, preview);
  if (auto s = st->Run(); !s) return s;
  if (impl_->db.Changes() == 0) return Fail("preview \"" + preview.name + "\" does not exist");
  return Ok();
}

Result<std::optional<Preview>> PreviewStore::Get(const std::string& name) {
  std::lock_guard lock(impl_->mu);
  return impl_->One("name = ?1", {name});
}

Result<std::optional<Preview>> PreviewStore::FindBySource(const std::string& template_name,
                                                          const std::string& pull_request,
                                                          const std::string& branch) {
  std::lock_guard lock(impl_->mu);
  if (!pull_request.empty()) {
    return impl_->One("template_name = ?1 AND pull_request = ?2 AND status != 'gone'", {template_name, pull_request});
  }
  return impl_->One("template_name = ?1 AND pull_request = '' AND branch = ?2 AND status != 'gone'",
                    {template_name, branch});
}

Result<std::vector<Preview>> PreviewStore::List(bool with_gone) {
  std::lock_guard lock(impl_->mu);
  return impl_->Query(with_gone ? "1 ORDER BY status = 'gone', created_at, name"
                                : "status != 'gone' ORDER BY created_at, name",
                      {});
}

Result<int> PreviewStore::CountActive(const std::string& template_name) {
  std::lock_guard lock(impl_->mu);
  auto st = impl_->db.Prepare(
      "SELECT COUNT(*) FROM previews WHERE status NOT IN ('gone', 'queued') AND (?1 = '' OR template_name = ?1)");
  if (!st) return std::unexpected(st.error());
  st->Bind(1, template_name);
  auto row = st->Step();
  if (!row) return std::unexpected(row.error());
  return static_cast<int>(st->Int(0));
}

}  // namespace gitopsd::previews
