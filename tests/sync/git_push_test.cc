// The write side of the Git room against real remotes: commits made in the
// bare mirror without a work tree, pushed over file://, git-http-backend
// behind lighttpd (basic auth) and sshd (pinned host key). Each test checks
// the remote afterwards with the git CLI, as a user of the repository would.
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <optional>
#include <ostream>

#include "sync/git.h"
#include "tests/support/git_servers.h"

namespace gitopsd::git {
namespace {

using test::FixtureRepo;
using test::TempDir;

::testing::AssertionResult Contains(const std::string& haystack, const std::string& needle) {
  if (haystack.find(needle) != std::string::npos) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "\"" << haystack << "\" does not contain \"" << needle << "\"";
}

std::string Trimmed(std::string text) {
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
  return text;
}

// `git <args>` in `cwd`, its output without the final newline.
std::string GitOutput(const std::string& cwd, const std::vector<std::string>& args) {
  return Trimmed(test::RunGit(args, cwd).output);
}

const char* OutcomeName(PushOutcome outcome) {
  switch (outcome) {
    case PushOutcome::kPushed:
      return "kPushed";
    case PushOutcome::kRejectedNonFastForward:
      return "kRejectedNonFastForward";
    case PushOutcome::kRejected:
      return "kRejected";
  }
  return "?";
}

::testing::AssertionResult Outcome(const Result<PushResult>& pushed, PushOutcome expected) {
  if (!pushed) return ::testing::AssertionFailure() << "push failed: " << pushed.error().message;
  if (pushed->outcome == expected) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "outcome " << OutcomeName(pushed->outcome) << " (\""
                                       << pushed->message << "\"), expected " << OutcomeName(expected);
}

bool WriteHook(const std::string& bare_path, const std::string& name, const std::string& script) {
  std::string path = bare_path + "/hooks/" + name;
  if (!test::WriteTextFile(path, script)) return false;
  std::error_code ec;
  std::filesystem::permissions(path, std::filesystem::perms::owner_all, std::filesystem::perm_options::add,
                               ec);
  return !ec;
}

const Signature kEditor{.name = "API Editor", .email = "editor@example.test"};

enum class Transport { kFile, kHttp, kHttps, kSsh };

const char* TransportName(Transport transport) {
  switch (transport) {
    case Transport::kFile:
      return "File";
    case Transport::kHttp:
      return "Http";
    case Transport::kHttps:
      return "Https";
    case Transport::kSsh:
      return "Ssh";
  }
  return "Unknown";
}

void PrintTo(Transport transport, std::ostream* out) { *out << TransportName(transport); }

// Given a remote with one commit (.gitops/app.json, .gitops/old.json,
// README.md) over `Transport` and a mirror that has fetched it.
class PushTest : public ::testing::TestWithParam<Transport> {
 protected:
  void SetUp() override {
    switch (GetParam()) {
      case Transport::kFile:
        origin_.emplace(dir_.path(), "origin");
        url_ = origin_->file_url();
        break;
      case Transport::kHttp:
      case Transport::kHttps:
        http_.emplace("alice", "s3cret",
                      GetParam() == Transport::kHttps ? test::HttpGitServer::Scheme::kHttps
                                                      : test::HttpGitServer::Scheme::kHttp);
        GITOPSD_START_OR_SKIP(*http_);
        origin_.emplace(http_->repos_root(), "demo");
        url_ = http_->url_for("demo.git");
        creds_ = {.username = "alice", .password = "s3cret", .ca_file = http_->ca_file()};
        break;
      case Transport::kSsh:
        ssh_.emplace();
        GITOPSD_START_OR_SKIP(*ssh_);
        origin_.emplace(ssh_->repos_root(), "demo");
        url_ = ssh_->url_for(origin_->bare_path());
        creds_ = {.ssh_key_file = ssh_->client_key_path(), .known_hosts_file = ssh_->known_hosts_path()};
        break;
    }
    origin_->WriteFile(".gitops/app.json", "{\"replicas\": 1}\n");
    origin_->WriteFile(".gitops/old.json", "{}\n");
    origin_->WriteFile("README.md", "demo\n");
    base_ = origin_->Commit("base");
    ASSERT_TRUE(origin_->Push());

    auto mirror = Repository::OpenOrInit(dir_.Sub("mirror"), url_);
    ASSERT_TRUE(mirror) << mirror.error().message;
    mirror_.emplace(std::move(*mirror));
    auto fetched = mirror_->Fetch("main", creds_);
    ASSERT_TRUE(fetched) << fetched.error().message << ServerLog();
    ASSERT_EQ(*fetched, base_);
  }

  std::string ServerLog() const {
    if (http_) return "\nserver log:\n" + http_->Log();
    if (ssh_) return "\nsshd log:\n" + ssh_->Log();
    return "";
  }

  // Where main is in the bare repository, read through the work clone.
  std::string RemoteMain() {
    origin_->Git({"fetch", "-q", "origin"});
    return GitOutput(origin_->work_path(), {"rev-parse", "origin/main"});
  }

  // Someone else pushes a commit to main; returns its id.
  std::string SomeoneElsePushes(const std::string& content) {
    origin_->Git({"pull", "-q", "--ff-only", "origin", "main"});
    origin_->WriteFile("README.md", content);
    std::string id = origin_->Commit("someone else");
    EXPECT_TRUE(origin_->Push());
    return id;
  }

  std::string Edit(const std::string& parent, const std::string& replicas) {
    auto commit = mirror_->CreateCommit(
        parent, {{.path = ".gitops/app.json", .content = "{\"replicas\": " + replicas + "}\n"}}, kEditor,
        "Scale to " + replicas + "\n");
    EXPECT_TRUE(commit) << commit.error().message;
    return commit.value_or("");
  }

  TempDir dir_{"push"};
  std::optional<test::HttpGitServer> http_;
  std::optional<test::SshGitServer> ssh_;
  std::optional<FixtureRepo> origin_;
  std::string url_;
  Credentials creds_;
  std::string base_;
  std::optional<Repository> mirror_;
};

TEST_P(PushTest, ACommitWithModifiedAddedAndDeletedFilesBecomesTheBranch) {
  auto commit = mirror_->CreateCommit(base_,
                                      {{.path = ".gitops/app.json", .content = "{\"replicas\": 3}\n"},
                                       {.path = ".gitops/web/new.json", .content = "{\"new\": true}\n"},
                                       {.path = ".gitops/old.json", .content = std::nullopt}},
                                      kEditor, "Edit from the API\n\nThree changes.\n");
  ASSERT_TRUE(commit) << commit.error().message;
  EXPECT_EQ(mirror_->FetchedHead("main").value_or(""), base_) << "creating a commit moves no ref";

  auto pushed = mirror_->Push(*commit, "main", creds_);
  ASSERT_TRUE(Outcome(pushed, PushOutcome::kPushed)) << ServerLog();
  EXPECT_EQ(pushed->message, "");
  EXPECT_EQ(mirror_->FetchedHead("main").value_or(""), *commit);

  // The remote, as a user of the repository sees it.
  const std::string work = origin_->work_path();
  origin_->Git({"pull", "-q", "--ff-only", "origin", "main"});
  EXPECT_EQ(GitOutput(work, {"rev-parse", "HEAD"}), *commit);
  EXPECT_EQ(GitOutput(work, {"rev-parse", "HEAD~1"}), base_);
  EXPECT_EQ(GitOutput(work, {"show", "HEAD:.gitops/app.json"}), "{\"replicas\": 3}");
  EXPECT_EQ(GitOutput(work, {"show", "HEAD:.gitops/web/new.json"}), "{\"new\": true}");
  EXPECT_EQ(GitOutput(work, {"show", "HEAD:README.md"}), "demo");
  EXPECT_EQ(GitOutput(work, {"ls-tree", "-r", "--name-only", "HEAD"}),
            ".gitops/app.json\n.gitops/web/new.json\nREADME.md");
  EXPECT_EQ(GitOutput(work, {"log", "-1", "--format=%an <%ae>|%cn <%ce>|%B"}),
            "API Editor <editor@example.test>|API Editor <editor@example.test>|Edit from the API\n\nThree "
            "changes.");
  EXPECT_EQ(GitOutput(work, {"status", "--porcelain"}), "") << "the pulled work tree matches the commit";
  EXPECT_EQ(GitOutput(origin_->bare_path(), {"fsck", "--no-progress"}), "");
  // The private ref the push went out from is gone again.
  EXPECT_EQ(GitOutput(mirror_->path(), {"for-each-ref", "refs/gitopsd"}), "");
}

TEST_P(PushTest, APushAfterTheRemoteMovedIsRejectedUntilRebased) {
  std::string ours = Edit(base_, "2");
  std::string theirs = SomeoneElsePushes("changed elsewhere\n");

  // libgit2 sees a remote head it does not have.
  auto pushed = mirror_->Push(ours, "main", creds_);
  ASSERT_TRUE(Outcome(pushed, PushOutcome::kRejectedNonFastForward)) << ServerLog();
  EXPECT_TRUE(Contains(pushed->message, "branch 'main' moved on the remote"));
  EXPECT_EQ(RemoteMain(), theirs) << "nothing changed remotely";
  EXPECT_EQ(mirror_->FetchedHead("main").value_or(""), base_);

  // After a fetch libgit2 knows the remote head is not an ancestor.
  ASSERT_EQ(mirror_->Fetch("main", creds_).value_or(""), theirs);
  EXPECT_FALSE(mirror_->IsAncestor(theirs, ours));
  pushed = mirror_->Push(ours, "main", creds_);
  ASSERT_TRUE(Outcome(pushed, PushOutcome::kRejectedNonFastForward));
  EXPECT_EQ(RemoteMain(), theirs);

  // Rebased onto the fetched head, the edit goes through and keeps both.
  std::string rebased = Edit(theirs, "2");
  ASSERT_TRUE(Outcome(mirror_->Push(rebased, "main", creds_), PushOutcome::kPushed));
  EXPECT_EQ(RemoteMain(), rebased);
  EXPECT_EQ(GitOutput(origin_->work_path(), {"show", "origin/main:README.md"}), "changed elsewhere");
  EXPECT_EQ(GitOutput(origin_->work_path(), {"show", "origin/main:.gitops/app.json"}), "{\"replicas\": 2}");
}

// Hooks run only where a server runs git-receive-pack: libgit2's local
// transport (file://) writes into the repository itself.
class ServerPushTest : public PushTest {};

TEST_P(ServerPushTest, APreReceiveHookThatDeclinesIsARejectionWithItsMessage) {
  ASSERT_TRUE(
      WriteHook(origin_->bare_path(), "pre-receive", "#!/bin/sh\necho 'protected branch: main'\nexit 1\n"));
  std::string ours = Edit(base_, "5");

  auto pushed = mirror_->Push(ours, "main", creds_);
  ASSERT_TRUE(Outcome(pushed, PushOutcome::kRejected)) << ServerLog();
  EXPECT_TRUE(Contains(pushed->message, "protected branch: main"));
  EXPECT_TRUE(Contains(pushed->message, "pre-receive hook declined"));
  EXPECT_EQ(RemoteMain(), base_);
  EXPECT_EQ(mirror_->FetchedHead("main").value_or(""), base_);
}

TEST_P(ServerPushTest, ABranchThatMovesWhileTheServerChecksIsANonFastForwardRejection) {
  // The pre-receive hook plays the other writer: it moves main after the
  // server advertised it and before the server updates it.
  std::string theirs =
      GitOutput(origin_->bare_path(), {"commit-tree", "-p", base_, "-m", "racing", base_ + "^{tree}"});
  ASSERT_TRUE(WriteHook(origin_->bare_path(), "pre-receive",
                        "#!/bin/sh\nunset GIT_QUARANTINE_PATH\ngit update-ref refs/heads/main " + theirs +
                            " || exit 1\nexit 0\n"));
  std::string ours = Edit(base_, "7");

  auto pushed = mirror_->Push(ours, "main", creds_);
  ASSERT_TRUE(Outcome(pushed, PushOutcome::kRejectedNonFastForward)) << ServerLog();
  EXPECT_EQ(RemoteMain(), theirs);
}

TEST_P(PushTest, PushingToABranchTheRemoteDoesNotHaveCreatesIt) {
  std::string ours = Edit(base_, "4");
  ASSERT_TRUE(Outcome(mirror_->Push(ours, "review/edit-1", creds_), PushOutcome::kPushed)) << ServerLog();
  EXPECT_EQ(GitOutput(origin_->bare_path(), {"rev-parse", "refs/heads/review/edit-1"}), ours);
  EXPECT_EQ(GitOutput(origin_->bare_path(), {"rev-parse", "refs/heads/main"}), base_);
  EXPECT_EQ(mirror_->FetchedHead("review/edit-1").value_or(""), ours);
}

TEST_P(PushTest, PushingTheCommitTheBranchAlreadyHasIsPushed) {
  ASSERT_TRUE(Outcome(mirror_->Push(base_, "main", creds_), PushOutcome::kPushed)) << ServerLog();
  EXPECT_EQ(RemoteMain(), base_);
}

TEST_P(PushTest, ACommitThatIsNotInTheMirrorIsAnError) {
  auto pushed = mirror_->Push(std::string(40, 'a'), "main", creds_);
  ASSERT_FALSE(pushed);
  EXPECT_TRUE(Contains(pushed.error().message, "is not in the mirror"));
  EXPECT_FALSE(mirror_->Push(base_, "bad..name", creds_));
}

std::string TestName(const ::testing::TestParamInfo<Transport>& info) { return TransportName(info.param); }

INSTANTIATE_TEST_SUITE_P(Transports, PushTest,
                         ::testing::Values(Transport::kFile, Transport::kHttp, Transport::kHttps,
                                           Transport::kSsh),
                         TestName);
INSTANTIATE_TEST_SUITE_P(Transports, ServerPushTest,
                         ::testing::Values(Transport::kHttp, Transport::kHttps, Transport::kSsh), TestName);

// ---- Failures of the transport ----------------------------------------------

class PushFailureTest : public ::testing::Test {
 protected:
  TempDir dir_{"push"};
};

TEST_F(PushFailureTest, AWrongHttpPasswordFailsQuicklyAndSaysAuthenticationFailed) {
  test::HttpGitServer server("alice", "s3cret");
  GITOPSD_START_OR_SKIP(server);
  FixtureRepo origin(server.repos_root(), "demo");
  origin.WriteFile("a.txt", "a\n");
  std::string base = origin.Commit("a");
  ASSERT_TRUE(origin.Push());
  auto mirror = Repository::OpenOrInit(dir_.Sub("mirror"), server.url_for("demo.git"));
  ASSERT_TRUE(mirror);
  ASSERT_TRUE(mirror->Fetch("main", {.username = "alice", .password = "s3cret"}));
  auto commit = mirror->CreateCommit(base, {{.path = "a.txt", .content = "b\n"}}, kEditor, "b\n");
  ASSERT_TRUE(commit) << commit.error().message;

  auto started = std::chrono::steady_clock::now();
  auto pushed = mirror->Push(*commit, "main", {.username = "alice", .password = "wrong-password"});
  auto elapsed = std::chrono::steady_clock::now() - started;
  ASSERT_FALSE(pushed) << "outcome " << OutcomeName(pushed->outcome) << ": " << pushed->message;
  const std::string& message = pushed.error().message;
  EXPECT_TRUE(Contains(
      message, "cannot push commit " + *commit + " to branch 'main' of " + server.url_for("demo.git")));
  EXPECT_TRUE(Contains(message, "authentication failed"));
  EXPECT_FALSE(Contains(message, "wrong-password")) << "the password must never appear";
  // One anonymous request and one with the password; lighttpd delays each
  // rejected one by about a second.
  EXPECT_LT(elapsed, std::chrono::seconds(5));
  EXPECT_EQ(GitOutput(origin.bare_path(), {"rev-parse", "refs/heads/main"}), base);
}

TEST_F(PushFailureTest, AServerThatForbidsPushingIsARejection) {
  test::HttpGitServer server("alice", "s3cret");
  GITOPSD_START_OR_SKIP(server);
  FixtureRepo origin(server.repos_root(), "demo");
  origin.WriteFile("a.txt", "a\n");
  std::string base = origin.Commit("a");
  ASSERT_TRUE(origin.Push());
  // git-http-backend answers 403 to receive-pack when it is switched off.
  test::RunGit({"config", "http.receivepack", "false"}, origin.bare_path());
  Credentials creds{.username = "alice", .password = "s3cret"};
  auto mirror = Repository::OpenOrInit(dir_.Sub("mirror"), server.url_for("demo.git"));
  ASSERT_TRUE(mirror && mirror->Fetch("main", creds));
  auto commit = mirror->CreateCommit(base, {{.path = "a.txt", .content = "b\n"}}, kEditor, "b\n");
  ASSERT_TRUE(commit) << commit.error().message;

  auto pushed = mirror->Push(*commit, "main", creds);
  ASSERT_TRUE(Outcome(pushed, PushOutcome::kRejected)) << server.Log();
  EXPECT_TRUE(Contains(pushed->message, "permission denied"));
  EXPECT_EQ(GitOutput(origin.bare_path(), {"rev-parse", "refs/heads/main"}), base);
}

TEST_F(PushFailureTest, AnUnknownSshHostKeyIsRefusedBeforeAnythingIsSent) {
  test::SshGitServer server;
  GITOPSD_START_OR_SKIP(server);
  FixtureRepo origin(server.repos_root(), "demo");
  origin.WriteFile("a.txt", "a\n");
  std::string base = origin.Commit("a");
  ASSERT_TRUE(origin.Push());
  Credentials creds{.ssh_key_file = server.client_key_path(), .known_hosts_file = server.known_hosts_path()};
  auto mirror = Repository::OpenOrInit(dir_.Sub("mirror"), server.url_for(origin.bare_path()));
  ASSERT_TRUE(mirror && mirror->Fetch("main", creds));
  auto commit = mirror->CreateCommit(base, {{.path = "a.txt", .content = "b\n"}}, kEditor, "b\n");
  ASSERT_TRUE(commit) << commit.error().message;

  ASSERT_TRUE(test::WriteTextFile(dir_.Sub("empty_known_hosts"), "# nothing trusted\n"));
  creds.known_hosts_file = dir_.Sub("empty_known_hosts");
  auto pushed = mirror->Push(*commit, "main", creds);
  ASSERT_FALSE(pushed);
  EXPECT_TRUE(Contains(pushed.error().message, "host key verification failed"));
  EXPECT_TRUE(Contains(pushed.error().message, server.host_key_fingerprint()));

  creds.known_hosts_file = "";
  pushed = mirror->Push(*commit, "main", creds);
  ASSERT_FALSE(pushed);
  EXPECT_TRUE(Contains(pushed.error().message, "known_hosts"));
  EXPECT_EQ(GitOutput(origin.bare_path(), {"rev-parse", "refs/heads/main"}), base);
}

TEST_F(PushFailureTest, AnUnreachableRemoteIsAnError) {
  FixtureRepo origin(dir_.path(), "origin");
  origin.WriteFile("a.txt", "a\n");
  std::string base = origin.Commit("a");
  ASSERT_TRUE(origin.Push());
  auto mirror = Repository::OpenOrInit(dir_.Sub("mirror"), origin.file_url());
  ASSERT_TRUE(mirror && mirror->Fetch("main", {}));
  std::string url = "http://127.0.0.1:" + std::to_string(test::FreeLoopbackPort()) + "/git/demo.git";
  auto moved = Repository::OpenOrInit(dir_.Sub("mirror"), url);
  ASSERT_TRUE(moved);
  auto pushed = moved->Push(base, "main", {});
  ASSERT_FALSE(pushed);
  EXPECT_TRUE(Contains(pushed.error().message, "cannot reach the remote"));
  EXPECT_TRUE(Contains(pushed.error().message, url));
}

// ---- Commits and ancestry in the mirror --------------------------------------

// Given a mirror that fetched one commit with a few files.
class CreateCommitTest : public ::testing::Test {
 protected:
  void SetUp() override {
    origin_.emplace(dir_.path(), "origin");
    origin_->WriteFile(".gitops/app.json", "{}\n");
    origin_->WriteFile(".gitops/only/one.json", "{}\n");
    origin_->WriteFile("tools/run.sh", "#!/bin/sh\n");
    origin_->MakeExecutable("tools/run.sh");
    base_ = origin_->Commit("base");
    ASSERT_TRUE(origin_->Push());
    auto mirror = Repository::OpenOrInit(dir_.Sub("mirror"), origin_->file_url());
    ASSERT_TRUE(mirror) << mirror.error().message;
    mirror_.emplace(std::move(*mirror));
    ASSERT_TRUE(mirror_->Fetch("main", {}));
  }

  std::string Tree(const std::string& commit) {
    return GitOutput(mirror_->path(), {"rev-parse", commit + "^{tree}"});
  }

  TempDir dir_{"commit"};
  std::optional<FixtureRepo> origin_;
  std::optional<Repository> mirror_;
  std::string base_;
};

TEST_F(CreateCommitTest, IdenticalContentAndMissingDeletionsKeepTheParentsTree) {
  auto commit = mirror_->CreateCommit(base_,
                                      {{.path = ".gitops/app.json", .content = "{}\n"},
                                       {.path = ".gitops/gone.json", .content = std::nullopt},
                                       {.path = "no/such/folder/x.json", .content = std::nullopt}},
                                      kEditor, "No change\n");
  ASSERT_TRUE(commit) << commit.error().message;
  EXPECT_NE(*commit, base_) << "still a new commit";
  EXPECT_EQ(Tree(*commit), Tree(base_));
  EXPECT_TRUE(mirror_->DiffTrees(base_, *commit, "")->empty());
  auto info = mirror_->LookupCommit(*commit);
  ASSERT_TRUE(info);
  EXPECT_EQ(info->message, "No change\n");
  EXPECT_EQ(info->author_name, "API Editor");
  EXPECT_EQ(info->author_email, "editor@example.test");
  EXPECT_EQ(GitOutput(mirror_->path(), {"for-each-ref", "--contains", *commit}), "")
      << "no ref points at a created commit";
}

TEST_F(CreateCommitTest, ARootCommitHoldsOnlyTheWrites) {
  auto root = mirror_->CreateCommit(
      "", {{.path = "a/b.json", .content = "1\n"}, {.path = "c.txt", .content = ""}}, kEditor, "Root\n");
  ASSERT_TRUE(root) << root.error().message;
  EXPECT_EQ(GitOutput(mirror_->path(), {"rev-list", "--parents", "-n", "1", *root}), *root) << "no parents";
  EXPECT_EQ(GitOutput(mirror_->path(), {"ls-tree", "-r", "--name-only", *root}), "a/b.json\nc.txt");
  EXPECT_EQ(GitOutput(mirror_->path(), {"show", *root + ":a/b.json"}), "1");

  auto empty = mirror_->CreateCommit("", {}, kEditor, "Empty\n");
  ASSERT_TRUE(empty) << empty.error().message;
  EXPECT_EQ(Tree(*empty), "4b825dc642cb6eb9a060e54bf8d69288fbee4904") << "Git's empty tree";
}

TEST_F(CreateCommitTest, EmptiedFoldersVanishExecutablesStayExecutableAndTheLastWriteWins) {
  auto commit = mirror_->CreateCommit(base_,
                                      {{.path = ".gitops/only/one.json", .content = std::nullopt},
                                       {.path = "tools/run.sh", .content = "#!/bin/sh\necho hi\n"},
                                       {.path = "notes.txt", .content = "first\n"},
                                       {.path = "notes.txt", .content = "second\n"}},
                                      kEditor, "Edits\n");
  ASSERT_TRUE(commit) << commit.error().message;
  EXPECT_EQ(GitOutput(mirror_->path(), {"ls-tree", "-r", "--name-only", *commit}),
            ".gitops/app.json\nnotes.txt\ntools/run.sh");
  EXPECT_EQ(GitOutput(mirror_->path(), {"ls-tree", *commit, "tools/run.sh"}).substr(0, 6), "100755");
  EXPECT_EQ(GitOutput(mirror_->path(), {"show", *commit + ":notes.txt"}), "second");
}

TEST_F(CreateCommitTest, BadPathsAndFileFolderClashesAreRefused) {
  for (const std::string path :
       {"", "/abs.json", "a//b.json", "./a.json", "a/../b.json", ".git/config", "sub/.GIT/x", ".gitops/"}) {
    auto commit = mirror_->CreateCommit(base_, {{.path = path, .content = "x"}}, kEditor, "bad\n");
    ASSERT_FALSE(commit) << "path '" << path << "' was accepted";
    EXPECT_TRUE(Contains(commit.error().message, "cannot create a commit on " + base_));
  }
  auto over_folder = mirror_->CreateCommit(base_, {{.path = ".gitops/only", .content = "x"}}, kEditor, "x\n");
  ASSERT_FALSE(over_folder);
  EXPECT_TRUE(Contains(over_folder.error().message, "'.gitops/only' is a folder"));
  auto delete_folder =
      mirror_->CreateCommit(base_, {{.path = ".gitops", .content = std::nullopt}}, kEditor, "x\n");
  ASSERT_FALSE(delete_folder);
  auto under_file =
      mirror_->CreateCommit(base_, {{.path = ".gitops/app.json/x.json", .content = "x"}}, kEditor, "x\n");
  ASSERT_FALSE(under_file);
  EXPECT_TRUE(Contains(under_file.error().message, "cannot apply the file changes"));
  auto unknown = mirror_->CreateCommit(std::string(40, 'b'), {}, kEditor, "x\n");
  ASSERT_FALSE(unknown);
  EXPECT_TRUE(Contains(unknown.error().message, "is not in the mirror"));
  auto nameless = mirror_->CreateCommit(base_, {}, {.name = "", .email = ""}, "x\n");
  ASSERT_FALSE(nameless);
  EXPECT_TRUE(Contains(nameless.error().message, "is not valid"));
}

TEST_F(CreateCommitTest, IsAncestorFollowsHistory) {
  auto child = mirror_->CreateCommit(base_, {{.path = "x", .content = "1"}}, kEditor, "child\n");
  auto grandchild = mirror_->CreateCommit(*child, {{.path = "x", .content = "2"}}, kEditor, "grandchild\n");
  auto root = mirror_->CreateCommit("", {{.path = "x", .content = "1"}}, kEditor, "unrelated\n");
  ASSERT_TRUE(child && grandchild && root);
  EXPECT_TRUE(mirror_->IsAncestor(base_, base_));
  EXPECT_TRUE(mirror_->IsAncestor(base_, *child));
  EXPECT_TRUE(mirror_->IsAncestor(base_, *grandchild));
  EXPECT_FALSE(mirror_->IsAncestor(*grandchild, base_));
  EXPECT_FALSE(mirror_->IsAncestor(*root, *grandchild));
  EXPECT_FALSE(mirror_->IsAncestor(base_, *root));
  EXPECT_FALSE(mirror_->IsAncestor(std::string(40, 'c'), base_)) << "unknown commit";
  EXPECT_FALSE(mirror_->IsAncestor(base_, "main")) << "not a commit id";
}

}  // namespace
}  // namespace gitopsd::git
