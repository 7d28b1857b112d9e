// Control plane -> Git, told as stories on real bare repositories over
// file://: an API edit becomes a normal, minimal commit; concurrent changes
// merge or become a visible conflict; nothing is lost.
#include "sync/writeback.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <functional>

#include "sync/json.h"
#include "tests/support/git_servers.h"
#include "tests/support/temp_dir.h"

namespace gitopsd::sync {
namespace {

using test::FixtureRepo;
using test::TempDir;

std::string TemplateJson(const std::string& name, const std::string& description,
                         const std::string& region = "eu") {
  return "{\n  \"apiVersion\": \"v1.2\",\n  \"name\": \"" + name + "\",\n  \"description\": \"" +
         description + "\",\n  \"arguments\": {\n    \"REGION\": \"" + region +
         "\"\n  },\n  \"spec\": {\n    \"kind\": \"Workflow\",\n    \"spec\": {\"type\": "
         "\"sequential\", \"steps\": []}\n  }\n}\n";
}

// Lines of b that differ from a, position by position (enough for edits that
// keep the line count).
int ChangedLines(const std::string& a, const std::string& b) {
  auto split = [](const std::string& s) {
    std::vector<std::string> lines;
    size_t i = 0;
    while (i <= s.size()) {
      size_t j = s.find('\n', i);
      if (j == std::string::npos) j = s.size();
      lines.push_back(s.substr(i, j - i));
      i = j + 1;
    }
    return lines;
  };
  auto la = split(a), lb = split(b);
  if (la.size() != lb.size()) return -1;
  int n = 0;
  for (size_t i = 0; i < la.size(); ++i) n += la[i] != lb[i];
  return n;
}

class WriteBackTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(origin_.WriteFile(".gitops/templates/web.json", TemplateJson("web", "v1")));
    ASSERT_TRUE(origin_.WriteFile(".gitops/templates/api.json", TemplateJson("api", "v1")));
    ASSERT_FALSE(origin_.Commit("first").empty());
    ASSERT_TRUE(origin_.Push());
    auto loader = model::Loader::Create();
    ASSERT_TRUE(loader.has_value());
    loader_.emplace(std::move(*loader));
    auto store = store::Store::Open(state_.Sub("state.db"));
    ASSERT_TRUE(store.has_value()) << store.error().message;
    store_ = std::move(*store);
    RepositoryConfig config;
    config.name = "shop";
    config.url = origin_.file_url();
    config.mirror_dir = state_.Sub("repos/shop.git");
    auto r = Reconciler::Create(config, *store_, *loader_);
    ASSERT_TRUE(r.has_value()) << r.error().message;
    reconciler_ = std::move(*r);
    ASSERT_TRUE(reconciler_->Sync().has_value());
    MakeWriteBack({});
  }

  void MakeWriteBack(WriteBackConfig config) {
    config.author_name = "gitopsd-test";
    config.author_email = "bot@example.org";
    writeback_.emplace(*reconciler_, *store_, *loader_, std::move(config));
  }

  EditReceipt Put(const std::string& name, const std::string& body,
                  std::optional<int64_t> if_match = std::nullopt) {
    auto r = writeback_->Submit(EditRequest{"Template", name, body, if_match, "ci"});
    EXPECT_TRUE(r.has_value()) << (r ? "" : r.error().message);
    return r ? *r : EditReceipt{};
  }

  WriteBackReport Run() {
    auto r = writeback_->Run();
    EXPECT_TRUE(r.has_value()) << (r ? "" : r.error().message);
    return r ? *r : WriteBackReport{};
  }

  // What the remote's main holds at `path` ("" when absent).
  std::string RemoteFile(const std::string& path) {
    origin_.Git({"fetch", "-q", "origin"});
    // Not origin_.Git: a missing file is an answer here, not a failure.
    auto r = test::RunCommand({"git", "show", "origin/main:" + path}, origin_.work_path(),
                              test::FixtureGitEnv());
    return r.ok() ? r.output : "";
  }
  std::string RemoteHead() {
    origin_.Git({"fetch", "-q", "origin"});
    auto r = origin_.Git({"rev-parse", "origin/main"});
    return r.ok() ? r.output.substr(0, 40) : "";
  }
  int RemoteCommitCount() {
    origin_.Git({"fetch", "-q", "origin"});
    auto r = origin_.Git({"rev-list", "--count", "origin/main"});
    return r.ok() ? std::stoi(r.output) : -1;
  }
  std::string InForce(const std::string& name, const std::string& key) {
    auto o = store_->GetObject("Template", name);
    if (!o || !*o) return "<absent>";
    auto v = json::Parse((*o)->body);
    if (!v) return "<unparsable>";
    const json::Value* f = v->Find(key);
    if (key == "REGION") f = v->Find("arguments") ? v->Find("arguments")->Find("REGION") : nullptr;
    return f && f->is_string() ? f->as_string() : "<missing>";
  }
  // Someone else pushes a change to `path` through the git command line.
  void ForeignPush(const std::string& path, const std::string& content) {
    ASSERT_TRUE(origin_.Git({"pull", "-q", "--rebase", "origin", "main"}).ok());
    ASSERT_TRUE(origin_.WriteFile(path, content));
    ASSERT_FALSE(origin_.Commit("a person's change").empty());
    ASSERT_TRUE(origin_.Push());
  }

  TempDir dir_{"writeback"};
  TempDir state_{"state"};
  FixtureRepo origin_{dir_.path(), "shop"};
  std::optional<model::Loader> loader_;
  std::unique_ptr<store::Store> store_;
  std::unique_ptr<Reconciler> reconciler_;
  std::optional<WriteBack> writeback_;
};

TEST_F(WriteBackTest, AnEditBecomesAOneLineCommitWithAuthorAndTrailer) {
  EditReceipt receipt = Put("web", TemplateJson("web", "v2"), 1);
  EXPECT_EQ(receipt.revision, 2);
  EXPECT_GT(receipt.edit_id, 0);
  WriteBackReport report = Run();
  ASSERT_TRUE(report.error.empty()) << report.error;
  ASSERT_FALSE(report.commit.empty());
  EXPECT_EQ(RemoteHead(), report.commit);
  std::string after = RemoteFile(".gitops/templates/web.json");
  EXPECT_EQ(ChangedLines(TemplateJson("web", "v1"), after), 1) << after;
  auto log = origin_.Git({"log", "-1", "--format=%an <%ae>%n%B", "origin/main"});
  EXPECT_NE(log.output.find("gitopsd-test <bot@example.org>"), std::string::npos) << log.output;
  EXPECT_NE(log.output.find("Template \"web\""), std::string::npos) << log.output;
  EXPECT_NE(log.output.find("token ci"), std::string::npos) << log.output;
  EXPECT_NE(log.output.find("Gitopsd-Write-Back: " + std::to_string(receipt.edit_id)),
            std::string::npos)
      << log.output;
  auto edit = store_->GetEdit(receipt.edit_id);
  ASSERT_TRUE(edit && *edit);
  EXPECT_EQ((*edit)->state, "pushed");
  EXPECT_EQ((*edit)->commit_id, report.commit);
  // The daemon's own commit is applied, not taken as a foreign change.
  auto state = store_->GetRepository("shop");
  EXPECT_EQ((*state)->applied_commit, report.commit);
  EXPECT_EQ((*store_->GetObject("Template", "web"))->revision, 2);
  auto again = reconciler_->Sync();
  ASSERT_TRUE(again.has_value());
  EXPECT_FALSE(again->changed());
  EXPECT_EQ(Run().commit, "") << "nothing left to push";
}

TEST_F(WriteBackTest, ANewObjectGetsACanonicalFileAndADeleteRemovesIt) {
  EditReceipt created = Put("cart", TemplateJson("cart", "new"));
  EXPECT_TRUE(created.created);
  EXPECT_EQ(created.revision, 1);
  ASSERT_FALSE(Run().commit.empty());
  std::string file = RemoteFile(".gitops/templates/cart.json");
  auto parsed = json::Parse(file);
  ASSERT_TRUE(parsed.has_value()) << file;
  EXPECT_EQ(file, json::Serialize(*parsed)) << "new files use the canonical style";

  auto deleted = writeback_->Submit(EditRequest{"Template", "cart", std::nullopt, 1, "ci"});
  ASSERT_TRUE(deleted.has_value());
  ASSERT_FALSE(Run().commit.empty());
  EXPECT_EQ(RemoteFile(".gitops/templates/cart.json"), "");
  EXPECT_EQ(InForce("cart", "description"), "<absent>");
}

TEST_F(WriteBackTest, InvalidEditsAndStaleRevisionsNeverReachGit) {
  std::string head = RemoteHead();
  auto invalid = writeback_->Submit(
      EditRequest{"Template", "web", std::string("{\"apiVersion\": \"v1.2\",\n \"name\": }"),
                  std::nullopt, "ci"});
  ASSERT_FALSE(invalid.has_value());
  EXPECT_EQ(invalid.error().code, EditErrorCode::kInvalid);
  ASSERT_FALSE(invalid.error().diagnostics.empty());
  EXPECT_EQ(invalid.error().diagnostics[0].line, 2);

  auto stale = writeback_->Submit(EditRequest{"Template", "web", TemplateJson("web", "v2"), 7, "ci"});
  ASSERT_FALSE(stale.has_value());
  EXPECT_EQ(stale.error().code, EditErrorCode::kPrecondition);

  auto renamed = writeback_->Submit(
      EditRequest{"Template", "web", TemplateJson("other", "v2"), std::nullopt, "ci"});
  ASSERT_FALSE(renamed.has_value());
  EXPECT_EQ(renamed.error().code, EditErrorCode::kNameMismatch);

  EXPECT_EQ(*store_->CountUnfinishedEdits(), 0);
  EXPECT_EQ(Run().commit, "");
  EXPECT_EQ(RemoteHead(), head);
  EXPECT_EQ(InForce("web", "description"), "v1");
}

TEST_F(WriteBackTest, ManyEditsShareOneCommit) {
  Put("web", TemplateJson("web", "v2"));
  Put("api", TemplateJson("api", "v2"));
  Put("cart", TemplateJson("cart", "v1"));
  Put("web", TemplateJson("web", "v3"));  // a second edit of the same object
  int before = RemoteCommitCount();
  WriteBackReport report = Run();
  EXPECT_EQ(report.edits_pushed, 4);
  EXPECT_EQ(RemoteCommitCount(), before + 1);
  EXPECT_NE(RemoteFile(".gitops/templates/web.json").find("\"v3\""), std::string::npos);
  EXPECT_NE(RemoteFile(".gitops/templates/api.json").find("\"v2\""), std::string::npos);
  EXPECT_NE(RemoteFile(".gitops/templates/cart.json").find("\"v1\""), std::string::npos);
}

TEST_F(WriteBackTest, ARemoteThatMovedBeforeThePushIsFetchedAndDisjointChangesMerge) {
  Put("web", TemplateJson("web", "from the API"));
  MakeWriteBack(WriteBackConfig{.before_push = [this] {
    static bool once = false;
    if (once) return;
    once = true;
    ForeignPush(".gitops/templates/web.json", TemplateJson("web", "v1", "us"));
  }});
  WriteBackReport report = Run();
  ASSERT_TRUE(report.error.empty()) << report.error;
  EXPECT_EQ(report.rounds, 2) << "the first push is refused as non-fast-forward";
  std::string file = RemoteFile(".gitops/templates/web.json");
  EXPECT_NE(file.find("from the API"), std::string::npos) << file;
  EXPECT_NE(file.find("\"us\""), std::string::npos) << file;
  EXPECT_EQ(InForce("web", "description"), "from the API");
  EXPECT_EQ(InForce("web", "REGION"), "us");
  EXPECT_TRUE(store_->ListConflicts()->empty());
}

TEST_F(WriteBackTest, OverlappingChangesAreAConflictGitWinsByDefault) {
  Put("web", TemplateJson("web", "from the API"));
  ForeignPush(".gitops/templates/web.json", TemplateJson("web", "from Git"));
  WriteBackReport report = Run();
  EXPECT_EQ(report.conflicts, 1);
  ASSERT_EQ(report.conflict_details.size(), 1u);
  EXPECT_NE(report.conflict_details[0].find("/description"), std::string::npos)
      << report.conflict_details[0];
  EXPECT_EQ(report.commit, "");
  EXPECT_EQ(InForce("web", "description"), "from Git");
  auto conflicts = store_->ListConflicts();
  ASSERT_EQ(conflicts->size(), 1u);
  const auto& c = (*conflicts)[0];
  EXPECT_EQ(c.in_force, "git");
  EXPECT_NE(c.api_body.find("from the API"), std::string::npos) << "both versions are kept";
  EXPECT_NE(c.git_body.find("from Git"), std::string::npos);
  EXPECT_NE(c.pointers.find("/description"), std::string::npos) << c.pointers;

  // The way out: take the API's version.
  auto resolved = writeback_->Resolve(c.id, "api", std::nullopt, "ci");
  ASSERT_TRUE(resolved.has_value()) << resolved.error().message;
  ASSERT_FALSE(Run().commit.empty());
  EXPECT_NE(RemoteFile(".gitops/templates/web.json").find("from the API"), std::string::npos);
  EXPECT_EQ(InForce("web", "description"), "from the API");
  EXPECT_TRUE(store_->ListConflicts(/*open_only=*/true)->empty());
  auto again = writeback_->Resolve(c.id, "git", std::nullopt, "ci");
  ASSERT_FALSE(again.has_value());
  EXPECT_EQ(again.error().code, EditErrorCode::kResolved);
}

TEST_F(WriteBackTest, ApiWinsWritesTheApiVersionOverGits) {
  MakeWriteBack(WriteBackConfig{.conflict_policy = "api-wins"});
  Put("web", TemplateJson("web", "from the API"));
  ForeignPush(".gitops/templates/web.json", TemplateJson("web", "from Git"));
  WriteBackReport report = Run();
  EXPECT_EQ(report.conflicts, 1);
  ASSERT_FALSE(report.commit.empty());
  EXPECT_NE(RemoteFile(".gitops/templates/web.json").find("from the API"), std::string::npos);
  EXPECT_EQ(InForce("web", "description"), "from the API");
  auto conflicts = store_->ListConflicts();
  ASSERT_EQ(conflicts->size(), 1u);
  EXPECT_EQ((*conflicts)[0].in_force, "api");
  EXPECT_NE((*conflicts)[0].git_body.find("from Git"), std::string::npos);
}

TEST_F(WriteBackTest, AGitChangeToAnotherObjectDoesNotDisturbAPendingEdit) {
  Put("web", TemplateJson("web", "from the API"));
  ForeignPush(".gitops/templates/api.json", TemplateJson("api", "from Git"));
  ASSERT_TRUE(reconciler_->Sync().has_value());
  EXPECT_EQ(InForce("web", "description"), "from the API") << "a pending edit stays in force";
  EXPECT_EQ(InForce("api", "description"), "from Git");
  ASSERT_FALSE(Run().commit.empty());
  EXPECT_NE(RemoteFile(".gitops/templates/web.json").find("from the API"), std::string::npos);
  EXPECT_NE(RemoteFile(".gitops/templates/api.json").find("from Git"), std::string::npos);
}

TEST_F(WriteBackTest, ACommitRecordedBeforeACrashIsNeverPushedTwice) {
  // A commit made and recorded, then the process "dies" before the push:
  // the next Run rebuilds it on the head instead of pushing a stale commit.
  EditReceipt receipt = Put("web", TemplateJson("web", "v2"));
  MakeWriteBack(WriteBackConfig{.max_rounds = 1, .before_push = [this] {
                                  ForeignPush(".gitops/templates/api.json",
                                              TemplateJson("api", "moved"));
                                }});
  WriteBackReport first = Run();
  EXPECT_TRUE(first.commit.empty());
  MakeWriteBack({});
  int before = RemoteCommitCount();
  WriteBackReport second = Run();
  ASSERT_FALSE(second.commit.empty()) << second.error;
  EXPECT_EQ(RemoteCommitCount(), before + 1);
  EXPECT_EQ((*store_->GetEdit(receipt.edit_id))->state, "pushed");
  EXPECT_NE(RemoteFile(".gitops/templates/api.json").find("moved"), std::string::npos);
}

// A repository behind a real server: the remote (with web.json at v1), and
// gitopsd's store, reconciler and write-back for it.
struct RemoteRig {
  RemoteRig(const std::string& repos_root, std::function<std::string(const FixtureRepo&)> url,
            git::Credentials creds)
      : origin(repos_root, "shop") {
    EXPECT_TRUE(origin.WriteFile(".gitops/templates/web.json", TemplateJson("web", "v1")));
    EXPECT_FALSE(origin.Commit("first").empty());
    EXPECT_TRUE(origin.Push());
    auto l = model::Loader::Create();
    auto s = store::Store::Open(state.Sub("state.db"));
    if (!l || !s) {
      ADD_FAILURE() << "cannot set up the loader or the store";
      return;
    }
    loader.emplace(std::move(*l));
    store = std::move(*s);
    RepositoryConfig config;
    config.name = "shop";
    config.url = url(origin);
    config.credentials = std::move(creds);
    config.mirror_dir = state.Sub("repos/shop.git");
    auto r = Reconciler::Create(config, *store, *loader);
    if (!r) {
      ADD_FAILURE() << r.error().message;
      return;
    }
    reconciler = std::move(*r);
    writeback.emplace(*reconciler, *store, *loader, WriteBackConfig{});
  }
  bool ready() const { return writeback.has_value(); }

  TempDir state{"state"};
  FixtureRepo origin;
  std::optional<model::Loader> loader;
  std::unique_ptr<store::Store> store;
  std::unique_ptr<Reconciler> reconciler;
  std::optional<WriteBack> writeback;
};

// Server-side refusals need a real server: libgit2 writes file:// remotes
// itself and runs no hooks there.
TEST(WriteBackHttpTest, ARefusedPushKeepsTheEditPendingAndVisible) {
  test::HttpGitServer server("alice", "s3cret");
  GITOPSD_START_OR_SKIP(server);
  RemoteRig rig(server.repos_root(), [&](const FixtureRepo&) { return server.url_for("shop.git"); },
                {.username = "alice", .password = "s3cret"});
  ASSERT_TRUE(rig.ready());
  const std::string hook = rig.origin.bare_path() + "/hooks/pre-receive";
  ASSERT_TRUE(test::WriteTextFile(hook, "#!/bin/sh\necho 'protected branch: main' >&2\nexit 1\n"));
  std::filesystem::permissions(hook, std::filesystem::perms::owner_all);
  ASSERT_TRUE(rig.reconciler->Sync().has_value());
  auto receipt =
      rig.writeback->Submit(EditRequest{"Template", "web", TemplateJson("web", "v2"), 1, "ci"});
  ASSERT_TRUE(receipt.has_value());
  auto report = rig.writeback->Run();
  ASSERT_TRUE(report.has_value());
  EXPECT_NE(report->error.find("protected branch"), std::string::npos) << report->error;
  auto edit = rig.store->GetEdit(receipt->edit_id);
  EXPECT_EQ((*edit)->state, "pending");
  EXPECT_NE((*edit)->last_error.find("protected branch"), std::string::npos);
  EXPECT_EQ(*rig.store->CountUnfinishedEdits("shop"), 1);

  std::filesystem::remove(hook);
  report = rig.writeback->Run();
  ASSERT_TRUE(report.has_value());
  ASSERT_FALSE(report->commit.empty()) << report->error;
  EXPECT_EQ((*rig.store->GetEdit(receipt->edit_id))->state, "pushed");
}

TEST(WriteBackSshTest, AnEditIsPushedOverSsh) {
  test::SshGitServer server;
  GITOPSD_START_OR_SKIP(server);
  RemoteRig rig(server.repos_root(),
                [&](const FixtureRepo& origin) { return server.url_for(origin.bare_path()); },
                {.ssh_key_file = server.client_key_path(),
                 .known_hosts_file = server.known_hosts_path()});
  ASSERT_TRUE(rig.ready());
  ASSERT_TRUE(rig.reconciler->Sync().has_value());
  ASSERT_TRUE(
      rig.writeback->Submit(EditRequest{"Template", "web", TemplateJson("web", "v2"), 1, "ci"}));
  auto report = rig.writeback->Run();
  ASSERT_TRUE(report.has_value());
  ASSERT_FALSE(report->commit.empty()) << report->error;
  auto head =
      test::RunCommand({"git", "--git-dir", rig.origin.bare_path(), "rev-parse", "main"});
  EXPECT_EQ(head.output.substr(0, 40), report->commit);
}

}  // namespace
}  // namespace gitopsd::sync
