// Git -> control plane, told as stories on a real bare repository over
// file://: what a person pushes is what the store holds, bad files never
// replace good versions, and nothing outside the sync folder matters.
#include "sync/reconcile.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <iostream>
#include <map>
#include <set>

#include "sync/json.h"
#include "tests/support/git_servers.h"
#include "tests/support/temp_dir.h"

namespace gitopsd::sync {
namespace {

using test::FixtureRepo;
using test::TempDir;

std::string TemplateJson(const std::string& name, const std::string& description) {
  return "{\n  \"apiVersion\": \"v1.2\",\n  \"name\": \"" + name + "\",\n  \"description\": \"" +
         description +
         "\",\n  \"spec\": {\n    \"kind\": \"Workflow\",\n    \"spec\": {\"type\": "
         "\"sequential\", \"steps\": []}\n  }\n}\n";
}

// A loader and a fresh state database for each test.
class StateFixture : public ::testing::Test {
 protected:
  void SetUp() override {
    auto loader = model::Loader::Create();
    ASSERT_TRUE(loader.has_value()) << loader.error().message;
    loader_.emplace(std::move(*loader));
    auto store = store::Store::Open(state_.Sub("state.db"));
    ASSERT_TRUE(store.has_value()) << store.error().message;
    store_ = std::move(*store);
  }

  TempDir state_{"state"};
  std::optional<model::Loader> loader_;
  std::unique_ptr<store::Store> store_;
};

class ReconcileTest : public StateFixture {
 protected:

  std::unique_ptr<Reconciler> MakeReconciler(bool prune = true,
                                             model::LoadOptions limits = {}) {
    RepositoryConfig config;
    config.limits = limits;
    config.name = "shop";
    config.url = repo_.file_url();
    config.prune = prune;
    config.mirror_dir = state_.Sub("repos/shop.git");
    auto r = Reconciler::Create(config, *store_, *loader_);
    EXPECT_TRUE(r.has_value()) << r.error().message;
    return r ? std::move(*r) : nullptr;
  }

  // Commits and pushes what the work tree holds, then syncs.
  SyncReport PushAndSync(Reconciler& reconciler, const std::string& message = "change") {
    EXPECT_FALSE(repo_.Commit(message).empty());
    EXPECT_TRUE(repo_.Push());
    auto report = reconciler.Sync();
    EXPECT_TRUE(report.has_value()) << report.error().message;
    if (report) {
      for (const auto& e : report->errors) std::cerr << "  sync reported: " << e.ToString() << "\n";
    }
    return report ? *report : SyncReport{};
  }

  std::optional<store::ObjectRecord> Object(const std::string& kind, const std::string& name) {
    auto o = store_->GetObject(kind, name);
    EXPECT_TRUE(o.has_value());
    return o ? *o : std::nullopt;
  }

  std::string Description(const std::string& name) {
    auto o = Object("Template", name);
    if (!o) return "<absent>";
    auto body = json::Parse(o->body);
    return body && body->Find("description") ? body->Find("description")->as_string() : "?";
  }

  TempDir dir_{"reconcile"};
  FixtureRepo repo_{dir_.path(), "shop"};
};

TEST_F(ReconcileTest, FirstSyncAppliesEveryObjectAndASecondSyncIsANoOp) {
  repo_.WriteFile(".gitops/templates/web.json", TemplateJson("web", "v1"));
  repo_.WriteFile(".gitops/templates/store.json", TemplateJson("store", "v1"));
  repo_.WriteFile("README.md", "not ours");
  auto r = MakeReconciler();
  SyncReport report = PushAndSync(*r, "initial");
  EXPECT_EQ(report.added, 2);
  EXPECT_TRUE(report.errors.empty());
  EXPECT_EQ(*store_->CountObjects(), 2);
  auto again = r->Sync();
  ASSERT_TRUE(again.has_value());
  EXPECT_FALSE(again->changed());
  EXPECT_EQ(again->added + again->updated + again->deleted, 0);
  auto state = store_->GetRepository("shop");
  ASSERT_TRUE(state && *state);
  EXPECT_EQ((*state)->applied_commit, repo_.Head());
}

TEST_F(ReconcileTest, OneChangedFileUpdatesOnlyItsObject) {
  repo_.WriteFile(".gitops/templates/web.json", TemplateJson("web", "v1"));
  repo_.WriteFile(".gitops/templates/store.json", TemplateJson("store", "v1"));
  auto r = MakeReconciler();
  PushAndSync(*r);
  repo_.WriteFile(".gitops/templates/web.json", TemplateJson("web", "v2"));
  SyncReport report = PushAndSync(*r);
  EXPECT_EQ(report.files_changed, 1);
  EXPECT_EQ(report.updated, 1);
  EXPECT_EQ(Object("Template", "web")->revision, 2);
  EXPECT_EQ(Object("Template", "store")->revision, 1);
  EXPECT_EQ(Description("web"), "v2");
}

TEST_F(ReconcileTest, InvalidJsonKeepsTheLastGoodVersionAndTheRestApplies) {
  repo_.WriteFile(".gitops/templates/web.json", TemplateJson("web", "v1"));
  repo_.WriteFile(".gitops/templates/store.json", TemplateJson("store", "v1"));
  auto r = MakeReconciler();
  PushAndSync(*r);
  repo_.WriteFile(".gitops/templates/web.json", "{\n  \"apiVersion\": \"v1.2\",\n  \"name\": }\n");
  repo_.WriteFile(".gitops/templates/store.json", TemplateJson("store", "v2"));
  SyncReport report = PushAndSync(*r, "break web, change store");
  ASSERT_EQ(report.errors.size(), 1u);
  EXPECT_EQ(report.errors[0].path, ".gitops/templates/web.json");
  EXPECT_EQ(report.errors[0].line, 3);
  EXPECT_EQ(report.errors[0].rule, "json-syntax");
  EXPECT_EQ(Description("web"), "v1");  // last good version stays in force
  EXPECT_EQ(Description("store"), "v2");   // the rest of the commit applied
  auto errors = store_->ListErrors("shop");
  ASSERT_EQ(errors->size(), 1u);
  EXPECT_EQ((*errors)[0].commit_id, repo_.Head());

  repo_.WriteFile(".gitops/templates/web.json", TemplateJson("web", "v3"));
  report = PushAndSync(*r, "fix web");
  EXPECT_TRUE(report.errors.empty());
  EXPECT_TRUE(store_->ListErrors("shop")->empty());
  EXPECT_EQ(Description("web"), "v3");
}

TEST_F(ReconcileTest, SchemaViolationIsReportedWithItsRule) {
  repo_.WriteFile(".gitops/templates/web.json", "{\"name\": \"web\", \"spec\": {}}\n");
  auto r = MakeReconciler();
  SyncReport report = PushAndSync(*r);
  ASSERT_FALSE(report.errors.empty());
  EXPECT_EQ(report.errors[0].rule.rfind("schema:", 0), 0u) << report.errors[0].ToString();
  EXPECT_FALSE(Object("Template", "web").has_value());
}

TEST_F(ReconcileTest, RenameKeepsIdentityAndDeletePrunes) {
  repo_.WriteFile(".gitops/templates/web.json", TemplateJson("web", "v1"));
  auto r = MakeReconciler();
  PushAndSync(*r);
  repo_.Rename(".gitops/templates/web.json", ".gitops/templates/frontend.json");
  SyncReport report = PushAndSync(*r, "rename");
  EXPECT_EQ(report.added, 0);
  EXPECT_EQ(report.deleted, 0);
  auto web = Object("Template", "web");
  ASSERT_TRUE(web);
  EXPECT_EQ(web->path, ".gitops/templates/frontend.json");
  EXPECT_EQ(Description("web"), "v1");

  repo_.Remove(".gitops/templates/frontend.json");
  report = PushAndSync(*r, "delete");
  EXPECT_EQ(report.deleted, 1);
  EXPECT_FALSE(Object("Template", "web").has_value());
}

TEST_F(ReconcileTest, PruneOffKeepsObjectsOfDeletedFiles) {
  repo_.WriteFile(".gitops/templates/web.json", TemplateJson("web", "v1"));
  repo_.WriteFile(".gitops/templates/store.json", TemplateJson("store", "v1"));
  auto r = MakeReconciler(/*prune=*/false);
  PushAndSync(*r);
  repo_.Remove(".gitops/templates/web.json");
  SyncReport report = PushAndSync(*r);
  EXPECT_EQ(report.deleted, 0);
  EXPECT_TRUE(Object("Template", "web").has_value());
}

TEST_F(ReconcileTest, TwoFilesWithOneIdentityAreAnErrorOnBoth) {
  repo_.WriteFile(".gitops/templates/web.json", TemplateJson("web", "v1"));
  auto r = MakeReconciler();
  PushAndSync(*r);
  repo_.WriteFile(".gitops/templates/web-copy.json", TemplateJson("web", "copy"));
  SyncReport report = PushAndSync(*r, "duplicate");
  ASSERT_EQ(report.errors.size(), 2u);
  for (const auto& e : report.errors) EXPECT_EQ(e.rule, "model:duplicate") << e.ToString();
  EXPECT_EQ(Description("web"), "v1");  // neither replaces the last good version

  repo_.Remove(".gitops/templates/web.json");
  report = PushAndSync(*r, "keep the copy");
  EXPECT_TRUE(store_->ListErrors("shop")->empty());
  EXPECT_EQ(Description("web"), "copy");
  EXPECT_EQ(Object("Template", "web")->path, ".gitops/templates/web-copy.json");
}

TEST_F(ReconcileTest, ForcePushIsDiffedAgainstWhatIsApplied) {
  repo_.WriteFile(".gitops/templates/web.json", TemplateJson("web", "v1"));
  auto r = MakeReconciler();
  PushAndSync(*r);
  repo_.WriteFile(".gitops/templates/extra.json", TemplateJson("extra", "v1"));
  repo_.WriteFile(".gitops/templates/web.json", TemplateJson("web", "v2"));
  PushAndSync(*r, "to be rewritten");
  ASSERT_TRUE(Object("Template", "extra").has_value());

  ASSERT_TRUE(repo_.ResetHard("HEAD~1"));
  repo_.WriteFile(".gitops/templates/store.json", TemplateJson("store", "v1"));
  ASSERT_FALSE(repo_.Commit("rewritten history").empty());
  ASSERT_TRUE(repo_.ForcePush());
  auto report = r->Sync();
  ASSERT_TRUE(report.has_value()) << report.error().message;
  EXPECT_FALSE(Object("Template", "extra").has_value());
  EXPECT_TRUE(Object("Template", "store").has_value());
  EXPECT_EQ(Description("web"), "v1");
}

TEST_F(ReconcileTest, NonJsonFilesAreIgnoredSymlinksAndSubmodulesAreErrors) {
  repo_.WriteFile(".gitops/templates/web.json", TemplateJson("web", "v1"));
  repo_.WriteFile(".gitops/notes.md", "# notes");
  repo_.Symlink("templates/web.json", ".gitops/templates/link.json");
  std::string some_commit = repo_.Commit("base");
  repo_.AddGitlink(".gitops/vendor", some_commit);
  auto r = MakeReconciler();
  SyncReport report = PushAndSync(*r);
  std::set<std::string> rules;
  for (const auto& e : report.errors) rules.insert(e.rule + " " + e.path);
  EXPECT_EQ(rules, (std::set<std::string>{"model:symlink .gitops/templates/link.json",
                                          "model:submodule .gitops/vendor"}));
  EXPECT_EQ(*store_->CountObjects(), 1);
}

TEST_F(ReconcileTest, FileOverTheSizeLimitIsAnError) {
  std::string big = TemplateJson("web", std::string(2 << 20, 'x'));
  repo_.WriteFile(".gitops/templates/web.json", big);
  auto r = MakeReconciler();
  SyncReport report = PushAndSync(*r);
  ASSERT_EQ(report.errors.size(), 1u);
  EXPECT_EQ(report.errors[0].rule, "json-size");
  EXPECT_NE(report.errors[0].message.find("over the limit"), std::string::npos);
}

TEST_F(ReconcileTest, InvalidUtf8AndTooDeepNestingAreErrorsWhileGoodFilesApply) {
  std::string deep = "{\"apiVersion\": \"v1.2\", \"arguments\": " + std::string(100, '[') +
                     std::string(100, ']') + "}";
  repo_.WriteFile(".gitops/templates/deep.json", deep);
  repo_.WriteFile(".gitops/templates/latin1.json", TemplateJson("latin", "caf\xE9"));
  repo_.WriteFile(".gitops/templates/web.json", TemplateJson("web", "v1"));
  auto r = MakeReconciler();
  SyncReport report = PushAndSync(*r);
  std::map<std::string, std::string> rule_by_path;
  for (const auto& e : report.errors) rule_by_path[e.path] = e.rule;
  EXPECT_EQ(rule_by_path[".gitops/templates/deep.json"], "json-depth");
  EXPECT_EQ(rule_by_path[".gitops/templates/latin1.json"], "json-utf8");
  EXPECT_EQ(report.files_failed, 2);
  EXPECT_EQ(Description("web"), "v1");
}

TEST_F(ReconcileTest, TheRepositorysOwnLimitsApply) {
  repo_.WriteFile(".gitops/templates/web.json", TemplateJson("web", "v1"));  // 3 levels deep
  model::LoadOptions limits;
  limits.max_depth = 2;
  limits.max_bytes = 4096;
  auto r = MakeReconciler(true, limits);
  SyncReport report = PushAndSync(*r);
  ASSERT_EQ(report.errors.size(), 1u);
  EXPECT_EQ(report.errors[0].rule, "json-depth");
}

TEST_F(ReconcileTest, ChangesOutsideTheFolderDoNotTouchObjects) {
  repo_.WriteFile(".gitops/templates/web.json", TemplateJson("web", "v1"));
  auto r = MakeReconciler();
  PushAndSync(*r);
  repo_.WriteFile("src/app.json", "{ not even json");
  SyncReport report = PushAndSync(*r);
  EXPECT_EQ(report.files_changed, 0);
  EXPECT_TRUE(report.errors.empty());
  EXPECT_EQ(Object("Template", "web")->revision, 1);
}

TEST_F(ReconcileTest, ALostMirrorConvergesByComparingRecordedFiles) {
  repo_.WriteFile(".gitops/templates/web.json", TemplateJson("web", "v1"));
  repo_.WriteFile(".gitops/templates/store.json", TemplateJson("store", "v1"));
  {
    auto r = MakeReconciler();
    PushAndSync(*r);
  }
  std::filesystem::remove_all(state_.Sub("repos"));
  repo_.Remove(".gitops/templates/store.json");
  ASSERT_FALSE(repo_.Commit("drop store").empty());
  ASSERT_TRUE(repo_.Push());
  auto r = MakeReconciler();
  auto report = r->Sync();
  ASSERT_TRUE(report.has_value()) << report.error().message;
  EXPECT_EQ(report->deleted, 1);
  EXPECT_FALSE(Object("Template", "store").has_value());
  EXPECT_EQ(Object("Template", "web")->revision, 1);
}

TEST_F(ReconcileTest, UnreachableRemoteIsRecordedAndNothingElseChanges) {
  repo_.WriteFile(".gitops/templates/web.json", TemplateJson("web", "v1"));
  auto r = MakeReconciler();
  PushAndSync(*r);
  std::filesystem::rename(repo_.bare_path(), repo_.bare_path() + ".moved");
  auto report = r->Sync();
  ASSERT_FALSE(report.has_value());
  auto state = store_->GetRepository("shop");
  EXPECT_EQ((*state)->fetch_failures, 1);
  EXPECT_FALSE((*state)->last_fetch_error.empty());
  EXPECT_TRUE(Object("Template", "web").has_value());
  std::filesystem::rename(repo_.bare_path() + ".moved", repo_.bare_path());
}

// The same sync over the transports users run: smart HTTP with basic auth and
// SSH with a pinned host key. The store ends equal to what was pushed.
class ReconcileTransportTest : public StateFixture {
 protected:

  void SyncTwice(FixtureRepo& origin, const std::string& url, const git::Credentials& creds) {
    origin.WriteFile(".gitops/templates/web.json", TemplateJson("web", "v1"));
    ASSERT_FALSE(origin.Commit("first").empty());
    ASSERT_TRUE(origin.Push());
    RepositoryConfig config;
    config.name = "remote";
    config.url = url;
    config.credentials = creds;
    config.mirror_dir = state_.Sub("repos/remote.git");
    auto r = Reconciler::Create(config, *store_, *loader_);
    ASSERT_TRUE(r.has_value()) << r.error().message;
    auto first = (*r)->Sync();
    ASSERT_TRUE(first.has_value()) << first.error().message;
    EXPECT_EQ(first->added, 1);

    origin.WriteFile(".gitops/templates/web.json", TemplateJson("web", "v2"));
    origin.WriteFile(".gitops/templates/api.json", TemplateJson("api", "v1"));
    ASSERT_FALSE(origin.Commit("second").empty());
    ASSERT_TRUE(origin.Push());
    auto second = (*r)->Sync();
    ASSERT_TRUE(second.has_value()) << second.error().message;
    EXPECT_EQ(second->added, 1);
    EXPECT_EQ(second->updated, 1);
    auto state = store_->GetRepository("remote");
    EXPECT_EQ((*state)->applied_commit, origin.Head());
    EXPECT_EQ((*state)->url.find("s3cret"), std::string::npos) << "no password in the state";
  }
};

TEST_F(ReconcileTransportTest, SyncsOverSmartHttpWithBasicAuth) {
  test::HttpGitServer server("alice", "s3cret");
  GITOPSD_START_OR_SKIP(server);
  FixtureRepo origin(server.repos_root(), "shop");
  SyncTwice(origin, server.url_for("shop.git"), {.username = "alice", .password = "s3cret"});
}

TEST_F(ReconcileTransportTest, SyncsOverSshWithAPinnedHostKey) {
  test::SshGitServer server;
  GITOPSD_START_OR_SKIP(server);
  FixtureRepo origin(server.repos_root(), "shop");
  SyncTwice(origin, server.url_for(origin.bare_path()),
            {.ssh_key_file = server.client_key_path(),
             .known_hosts_file = server.known_hosts_path()});
}

}  // namespace
}  // namespace gitopsd::sync
