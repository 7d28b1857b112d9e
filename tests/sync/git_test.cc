// The Git room against real remotes: bare repositories over file://,
// git-http-backend behind lighttpd with basic auth, and sshd with pinned host
// keys. Each test builds its repository with the git CLI, fetches it into a
// fresh mirror and checks what a user of the daemon would notice.
#include "sync/git.h"

#include <gtest/gtest.h>

#include <map>

#include <algorithm>
#include <chrono>

#include "tests/support/git_servers.h"

namespace gitopsd::git {
namespace {

using test::FixtureRepo;
using test::TempDir;

::testing::AssertionResult Contains(const std::string& haystack, const std::string& needle) {
  if (haystack.find(needle) != std::string::npos) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "\"" << haystack << "\" does not contain \"" << needle << "\"";
}

class GitTest : public ::testing::Test {
 protected:
  // A fresh mirror of `url` in this test's folder.
  Result<Repository> Mirror(const std::string& url, const std::string& name = "mirror") {
    return Repository::OpenOrInit(dir_.Sub(name), url);
  }

  const Change* Find(const std::vector<Change>& changes, const std::string& new_path) {
    auto it = std::ranges::find_if(changes, [&](const Change& c) { return c.new_path == new_path; });
    return it == changes.end() ? nullptr : &*it;
  }

  TempDir dir_{"git"};
};

// ---- Fetching ---------------------------------------------------------------

TEST_F(GitTest, FetchOverFileFollowsNewCommitsAndForcePushes) {
  FixtureRepo origin(dir_.path(), "origin");
  origin.WriteFile(".gitops/app.json", "{\"v\": 1}\n");
  std::string first = origin.Commit("first");
  ASSERT_TRUE(origin.Push());

  auto mirror = Mirror(origin.file_url());
  ASSERT_TRUE(mirror) << mirror.error().message;
  EXPECT_FALSE(mirror->FetchedHead("main")) << "nothing is fetched before the first Fetch";
  auto fetched = mirror->Fetch("main", {});
  ASSERT_TRUE(fetched) << fetched.error().message;
  EXPECT_EQ(*fetched, first);
  EXPECT_EQ(mirror->FetchedHead("main").value_or(""), first);

  // A second commit arrives with the next fetch.
  origin.WriteFile(".gitops/app.json", "{\"v\": 2}\n");
  std::string second = origin.Commit("second");
  ASSERT_TRUE(origin.Push());
  EXPECT_EQ(mirror->Fetch("main", {}).value_or("fetch failed"), second);

  // History rewritten and force-pushed: the mirror follows.
  ASSERT_TRUE(origin.ResetHard("HEAD~1"));
  origin.WriteFile(".gitops/app.json", "{\"v\": 3}\n");
  std::string rewritten = origin.Commit("rewritten");
  ASSERT_TRUE(origin.ForcePush());
  auto after_force = mirror->Fetch("main", {});
  ASSERT_TRUE(after_force) << after_force.error().message;
  EXPECT_EQ(*after_force, rewritten);
  EXPECT_TRUE(mirror->HasCommit(first));
  EXPECT_TRUE(mirror->HasCommit(rewritten));
}

TEST_F(GitTest, ListRemoteFetchRefAndCommitsBetweenSeeWhatATriggerWatches) {
  FixtureRepo origin(dir_.path(), "origin");
  ASSERT_TRUE(origin.WriteFile("a.txt", "1\n"));
  const std::string first = origin.Commit("first");
  ASSERT_TRUE(origin.Push());
  ASSERT_TRUE(origin.CheckoutNewBranch("feature/x"));
  ASSERT_TRUE(origin.WriteFile("b.txt", "2\n"));
  const std::string second = origin.Commit("second [skip ci]");
  ASSERT_TRUE(origin.WriteFile("c.txt", "3\n"));
  const std::string third = origin.Commit("third");
  ASSERT_TRUE(origin.Push("feature/x"));
  // What a forge keeps for a pull request: refs/pull/<n>/head.
  ASSERT_TRUE(origin.Git({"push", "-q", "origin", "HEAD:refs/pull/7/head"}).ok());

  auto mirror = Mirror(origin.file_url());
  ASSERT_TRUE(mirror) << mirror.error().message;
  auto refs = mirror->ListRemote({});
  ASSERT_TRUE(refs) << refs.error().message;
  std::map<std::string, std::string> by_name;
  for (const RemoteRef& r : *refs) by_name[r.name] = r.id;
  EXPECT_EQ(by_name["refs/heads/main"], first);
  EXPECT_EQ(by_name["refs/heads/feature/x"], third);
  EXPECT_EQ(by_name["refs/pull/7/head"], third);
  EXPECT_FALSE(mirror->HasCommit(third)) << "listing downloads nothing";

  auto fetched = mirror->FetchRef("refs/pull/7/head", "refs/remotes/origin/pull/7", {});
  ASSERT_TRUE(fetched) << fetched.error().message;
  EXPECT_EQ(*fetched, third);
  EXPECT_TRUE(mirror->HasCommit(third));
  // Only the ref asked for moves: the sync loop's refs/remotes/origin/* stay.
  auto branch = mirror->FetchRef("refs/heads/feature/x", "refs/gitopsd/heads/feature/x", {});
  ASSERT_TRUE(branch) << branch.error().message;
  EXPECT_FALSE(mirror->FetchedHead("feature/x")) << "refs/remotes/origin/feature/x was not written";
  auto missing = mirror->FetchRef("refs/pull/8/head", "refs/remotes/origin/pull/8", {});
  ASSERT_FALSE(missing);
  EXPECT_NE(missing.error().message.find("refs/pull/8/head"), std::string::npos) << missing.error().message;

  auto between = mirror->CommitsBetween(first, third, 10);
  ASSERT_TRUE(between) << between.error().message;
  ASSERT_EQ(between->size(), 2u);
  EXPECT_EQ((*between)[0].id, third) << "newest first";
  EXPECT_EQ((*between)[1].id, second);
  EXPECT_EQ((*between)[1].message, "second [skip ci]\n");
  auto capped = mirror->CommitsBetween("", third, 1);
  ASSERT_TRUE(capped);
  ASSERT_EQ(capped->size(), 1u);
  EXPECT_EQ((*capped)[0].id, third);
  auto unknown_from = mirror->CommitsBetween(std::string(40, 'a'), third, 10);
  ASSERT_TRUE(unknown_from) << unknown_from.error().message;
  EXPECT_EQ(unknown_from->size(), 3u) << "an unknown previous head hides nothing";
}

TEST_F(GitTest, OpenOrInitReopensTheMirrorAndFollowsANewUrl) {
  FixtureRepo one(dir_.path(), "one");
  one.WriteFile("a.txt", "one\n");
  std::string one_head = one.Commit("one");
  ASSERT_TRUE(one.Push());
  FixtureRepo two(dir_.path(), "two");
  two.WriteFile("a.txt", "two\n");
  std::string two_head = two.Commit("two");
  ASSERT_TRUE(two.Push());

  {
    auto mirror = Mirror(one.file_url());
    ASSERT_TRUE(mirror) << mirror.error().message;
    EXPECT_EQ(mirror->Fetch("main", {}).value_or(""), one_head);
  }
  auto reopened = Mirror(two.file_url());
  ASSERT_TRUE(reopened) << reopened.error().message;
  EXPECT_EQ(reopened->FetchedHead("main").value_or(""), one_head) << "reopening keeps what was fetched";
  EXPECT_EQ(reopened->Fetch("main", {}).value_or(""), two_head) << "the new URL is used";
}

TEST_F(GitTest, OpenOrInitRefusesAFolderThatIsNotARepository) {
  ASSERT_TRUE(test::WriteTextFile(dir_.Sub("stuff/file.txt"), "not git\n"));
  auto mirror = Repository::OpenOrInit(dir_.Sub("stuff"), "file:///nowhere");
  ASSERT_FALSE(mirror);
  EXPECT_TRUE(Contains(mirror.error().message, "not a Git repository"));
}

TEST_F(GitTest, CommitInfoCarriesMessageAndAuthor) {
  FixtureRepo origin(dir_.path(), "origin");
  origin.WriteFile("a.txt", "a\n");
  std::string head = origin.Commit("Add a\n\nWith a body.");
  ASSERT_TRUE(origin.Push());
  auto mirror = Mirror(origin.file_url());
  ASSERT_TRUE(mirror && mirror->Fetch("main", {}));

  auto info = mirror->LookupCommit(head);
  ASSERT_TRUE(info) << info.error().message;
  EXPECT_EQ(info->id, head);
  EXPECT_EQ(info->message, "Add a\n\nWith a body.\n");
  EXPECT_EQ(info->author_name, "Fixture Author");
  EXPECT_EQ(info->author_email, "author@example.test");
  EXPECT_GT(info->time, 1600000000);
  EXPECT_FALSE(mirror->HasCommit(std::string(40, '0')));
  auto bad = mirror->LookupCommit("main");
  ASSERT_FALSE(bad);
  EXPECT_TRUE(Contains(bad.error().message, "40 hex"));
}

TEST_F(GitTest, MissingBranchIsNamedInTheError) {
  FixtureRepo origin(dir_.path(), "origin");
  origin.WriteFile("a.txt", "a\n");
  origin.Commit("a");
  ASSERT_TRUE(origin.Push());
  auto mirror = Mirror(origin.file_url());
  ASSERT_TRUE(mirror);
  auto fetched = mirror->Fetch("release", {});
  ASSERT_FALSE(fetched);
  EXPECT_TRUE(Contains(fetched.error().message, "branch 'release' does not exist on the remote"));
  EXPECT_TRUE(Contains(fetched.error().message, "it has: main"));
  EXPECT_TRUE(Contains(fetched.error().message, origin.file_url()));
}

TEST_F(GitTest, UnreachableRemoteFailsWithAClearError) {
  int closed_port = test::FreeLoopbackPort();
  std::string url = "http://127.0.0.1:" + std::to_string(closed_port) + "/git/demo.git";
  auto mirror = Mirror(url);
  ASSERT_TRUE(mirror);
  auto started = std::chrono::steady_clock::now();
  auto fetched = mirror->Fetch("main", {});
  ASSERT_FALSE(fetched);
  EXPECT_TRUE(Contains(fetched.error().message, "cannot reach the remote"));
  EXPECT_TRUE(Contains(fetched.error().message, url));
  EXPECT_LT(std::chrono::steady_clock::now() - started, std::chrono::seconds(10));
}

TEST_F(GitTest, MissingLocalRepositoryFailsWithAClearError) {
  auto mirror = Mirror("file://" + dir_.Sub("nothing-here.git"));
  ASSERT_TRUE(mirror);
  auto fetched = mirror->Fetch("main", {});
  ASSERT_FALSE(fetched);
  EXPECT_TRUE(Contains(fetched.error().message, "there is no repository at this URL"));
  EXPECT_TRUE(Contains(fetched.error().message, "nothing-here.git"));
}

// ---- HTTP -------------------------------------------------------------------

TEST_F(GitTest, FetchOverHttpWithBasicAuth) {
  test::HttpGitServer server("alice", "s3cret");
  GITOPSD_START_OR_SKIP(server);
  FixtureRepo origin(server.repos_root(), "demo");
  origin.WriteFile(".gitops/app.json", "{}\n");
  std::string first = origin.Commit("first");
  ASSERT_TRUE(origin.Push());

  auto mirror = Mirror(server.url_for("demo.git"));
  ASSERT_TRUE(mirror);
  Credentials creds{.username = "alice", .password = "s3cret"};
  auto fetched = mirror->Fetch("main", creds);
  ASSERT_TRUE(fetched) << fetched.error().message << "\nserver log:\n" << server.Log();
  EXPECT_EQ(*fetched, first);

  origin.WriteFile(".gitops/app.json", "{\"v\": 2}\n");
  std::string second = origin.Commit("second");
  ASSERT_TRUE(origin.Push());
  EXPECT_EQ(mirror->Fetch("main", creds).value_or("fetch failed"), second);
}

TEST_F(GitTest, WrongHttpPasswordFailsQuicklyAndSaysAuthenticationFailed) {
  test::HttpGitServer server("alice", "s3cret");
  GITOPSD_START_OR_SKIP(server);
  FixtureRepo origin(server.repos_root(), "demo");
  origin.WriteFile("a.txt", "a\n");
  origin.Commit("a");
  ASSERT_TRUE(origin.Push());

  auto mirror = Mirror(server.url_for("demo.git"));
  ASSERT_TRUE(mirror);
  auto started = std::chrono::steady_clock::now();
  auto fetched = mirror->Fetch("main", {.username = "alice", .password = "wrong-password"});
  auto elapsed = std::chrono::steady_clock::now() - started;
  ASSERT_FALSE(fetched);
  const std::string& message = fetched.error().message;
  EXPECT_TRUE(Contains(message, "authentication failed"));
  EXPECT_TRUE(Contains(message, server.url_for("demo.git")));
  EXPECT_FALSE(Contains(message, "wrong-password")) << "the password must never appear";
  // One anonymous request and one with the password; lighttpd delays each
  // rejected password by about a second, so a loop would show here.
  EXPECT_LT(elapsed, std::chrono::seconds(4)) << "no credential loop";

  // No credentials at all: the same clear cause.
  auto anonymous = mirror->Fetch("main", {});
  ASSERT_FALSE(anonymous);
  EXPECT_TRUE(Contains(anonymous.error().message, "authentication failed"));
}

TEST_F(GitTest, PasswordInTheUrlIsRedactedFromErrors) {
  test::HttpGitServer server("alice", "s3cret");
  GITOPSD_START_OR_SKIP(server);
  FixtureRepo origin(server.repos_root(), "demo");
  origin.WriteFile("a.txt", "a\n");
  origin.Commit("a");
  ASSERT_TRUE(origin.Push());

  std::string url = "http://alice:hunter2@127.0.0.1:" + std::to_string(server.port()) + "/git/demo.git";
  auto mirror = Mirror(url);
  ASSERT_TRUE(mirror);
  auto fetched = mirror->Fetch("no-such-branch", {});
  ASSERT_FALSE(fetched);
  EXPECT_FALSE(Contains(fetched.error().message, "hunter2")) << fetched.error().message;
  EXPECT_TRUE(Contains(fetched.error().message, "authentication failed")) << "a wrong password in the URL";
}

// ---- HTTPS ------------------------------------------------------------------

// lighttpd with a self-signed certificate made for this server alone, served
// at https://localhost:PORT. libgit2 1.5 keeps the CA file process-wide (the
// last fetch naming one wins), so every fetch that should be trusted names
// this server's certificate, and the untrusted cases use a certificate no
// other test ever trusts: the tests pass in any order.
class GitHttpsTest : public GitTest {
 protected:
  void SetUp() override {
    GITOPSD_START_OR_SKIP(server_);
    origin_.emplace(server_.repos_root(), "demo");
    origin_->WriteFile(".gitops/app.json", "{}\n");
    head_ = origin_->Commit("first");
    ASSERT_TRUE(origin_->Push());
  }

  Credentials Creds(const std::string& ca_file, const std::string& password = "s3cret") {
    return Credentials{.username = "alice", .password = password, .ca_file = ca_file};
  }

  // A self-signed certificate for DNS:localhost that the server does not use.
  std::string OtherCa() {
    std::string cert = dir_.Sub("other-ca.pem");
    auto made = test::MakeSelfSignedCertificate(cert, dir_.Sub("other-ca.key"), "localhost");
    EXPECT_TRUE(made) << made.error().message;
    return cert;
  }

  test::HttpGitServer server_{"alice", "s3cret", test::HttpGitServer::Scheme::kHttps};
  std::optional<FixtureRepo> origin_;
  std::string head_;
};

TEST_F(GitHttpsTest, FetchWithBasicAuthTrustingTheServerCertificate) {
  std::string url = server_.url_for("demo.git");
  ASSERT_TRUE(url.starts_with("https://localhost:")) << url;
  auto mirror = Mirror(url);
  ASSERT_TRUE(mirror);
  auto fetched = mirror->Fetch("main", Creds(server_.ca_file()));
  ASSERT_TRUE(fetched) << fetched.error().message << "\nserver log:\n" << server_.Log();
  EXPECT_EQ(*fetched, head_);

  origin_->WriteFile(".gitops/app.json", "{\"v\": 2}\n");
  std::string second = origin_->Commit("second");
  ASSERT_TRUE(origin_->Push());
  EXPECT_EQ(mirror->Fetch("main", Creds(server_.ca_file())).value_or("fetch failed"), second);
}

TEST_F(GitHttpsTest, ACertificateSignedByAnotherCaIsRefused) {
  std::string other_ca = OtherCa();
  auto mirror = Mirror(server_.url_for("demo.git"));
  ASSERT_TRUE(mirror);
  auto fetched = mirror->Fetch("main", Creds(other_ca));
  ASSERT_FALSE(fetched) << "a server the CA file does not vouch for must be refused";
  const std::string& message = fetched.error().message;
  EXPECT_TRUE(Contains(message, "certificate")) << "the cause names the certificate";
  EXPECT_TRUE(Contains(message, server_.url_for("demo.git")));
  EXPECT_FALSE(Contains(message, "authentication failed")) << "TLS fails before any password is sent";
  EXPECT_FALSE(mirror->FetchedHead("main")) << "nothing may be fetched from an untrusted server";

  // The same server, credentials and mirror with the right CA file: fetched.
  auto trusted = mirror->Fetch("main", Creds(server_.ca_file()));
  ASSERT_TRUE(trusted) << trusted.error().message;
  EXPECT_EQ(*trusted, head_);
}

TEST_F(GitHttpsTest, WithoutACaFileASelfSignedServerIsRefused) {
  // Whatever CA file an earlier test left set, it is not this server's
  // fresh certificate, and the system bundle does not vouch for it either.
  auto mirror = Mirror(server_.url_for("demo.git"));
  ASSERT_TRUE(mirror);
  auto fetched = mirror->Fetch("main", Creds(""));
  ASSERT_FALSE(fetched);
  EXPECT_TRUE(Contains(fetched.error().message, "certificate"));
  EXPECT_FALSE(mirror->FetchedHead("main"));
}

TEST_F(GitHttpsTest, AWrongPasswordOverTlsIsAnAuthenticationFailure) {
  auto mirror = Mirror(server_.url_for("demo.git"));
  ASSERT_TRUE(mirror);
  auto fetched = mirror->Fetch("main", Creds(server_.ca_file(), "wrong-password"));
  ASSERT_FALSE(fetched);
  const std::string& message = fetched.error().message;
  EXPECT_TRUE(Contains(message, "authentication failed"));
  EXPECT_FALSE(Contains(message, "certificate")) << "the certificate was trusted";
  EXPECT_FALSE(Contains(message, "wrong-password"));
}

// ---- SSH --------------------------------------------------------------------

class GitSshTest : public GitTest {
 protected:
  void SetUp() override {
    GITOPSD_START_OR_SKIP(server_);
    origin_.emplace(server_.repos_root(), "demo");
    origin_->WriteFile(".gitops/app.json", "{}\n");
    head_ = origin_->Commit("first");
    ASSERT_TRUE(origin_->Push());
  }

  Credentials Creds(const std::string& known_hosts) {
    return Credentials{.ssh_key_file = server_.client_key_path(), .known_hosts_file = known_hosts};
  }

  test::SshGitServer server_;
  std::optional<FixtureRepo> origin_;
  std::string head_;
};

TEST_F(GitSshTest, FetchWithKeyAndKnownHosts) {
  auto mirror = Mirror(server_.url_for(origin_->bare_path()));
  ASSERT_TRUE(mirror);
  auto fetched = mirror->Fetch("main", Creds(server_.known_hosts_path()));
  ASSERT_TRUE(fetched) << fetched.error().message << "\nsshd log:\n" << server_.Log();
  EXPECT_EQ(*fetched, head_);

  origin_->WriteFile(".gitops/app.json", "{\"v\": 2}\n");
  std::string second = origin_->Commit("second");
  ASSERT_TRUE(origin_->Push());
  EXPECT_EQ(mirror->Fetch("main", Creds(server_.known_hosts_path())).value_or("fetch failed"), second);
}

TEST_F(GitSshTest, UnknownHostKeyIsRefusedWithItsFingerprint) {
  ASSERT_TRUE(test::WriteTextFile(dir_.Sub("empty_known_hosts"), "# nothing trusted yet\n"));
  auto mirror = Mirror(server_.url_for(origin_->bare_path()));
  ASSERT_TRUE(mirror);
  auto fetched = mirror->Fetch("main", Creds(dir_.Sub("empty_known_hosts")));
  ASSERT_FALSE(fetched);
  const std::string& message = fetched.error().message;
  std::string fingerprint = server_.host_key_fingerprint();
  ASSERT_FALSE(fingerprint.empty());
  EXPECT_TRUE(Contains(message, "host key verification failed"));
  EXPECT_TRUE(Contains(message, fingerprint));
  EXPECT_TRUE(Contains(message, "[127.0.0.1]:" + std::to_string(server_.port())));
  EXPECT_FALSE(mirror->FetchedHead("main")) << "nothing may be fetched from an unverified host";
}

TEST_F(GitSshTest, ADifferentPinnedKeyIsRefusedAsAMismatch) {
  test::CommandResult keygen =
      test::RunCommand({"ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", dir_.Sub("impostor")});
  ASSERT_TRUE(keygen.ok()) << keygen.output;
  std::string pub = test::ReadTextFile(dir_.Sub("impostor.pub"));
  ASSERT_TRUE(test::WriteTextFile(dir_.Sub("other_known_hosts"),
                                  "[127.0.0.1]:" + std::to_string(server_.port()) + " " + pub));
  auto mirror = Mirror(server_.url_for(origin_->bare_path()));
  ASSERT_TRUE(mirror);
  auto fetched = mirror->Fetch("main", Creds(dir_.Sub("other_known_hosts")));
  ASSERT_FALSE(fetched);
  EXPECT_TRUE(Contains(fetched.error().message, "does not match"));
  EXPECT_TRUE(Contains(fetched.error().message, server_.host_key_fingerprint()));
}

TEST_F(GitSshTest, RevokedHostKeyIsRefused) {
  std::string known = test::ReadTextFile(server_.known_hosts_path());
  std::string pub = test::ReadTextFile(server_.host_public_key_path());
  ASSERT_TRUE(test::WriteTextFile(dir_.Sub("revoked_known_hosts"), known + "@revoked * " + pub));
  auto mirror = Mirror(server_.url_for(origin_->bare_path()));
  ASSERT_TRUE(mirror);
  auto fetched = mirror->Fetch("main", Creds(dir_.Sub("revoked_known_hosts")));
  ASSERT_FALSE(fetched);
  EXPECT_TRUE(Contains(fetched.error().message, "@revoked"));
}

TEST_F(GitSshTest, WithoutKnownHostsSshIsRefusedBeforeConnecting) {
  auto mirror = Mirror(server_.url_for(origin_->bare_path()));
  ASSERT_TRUE(mirror);
  auto fetched = mirror->Fetch("main", Creds(""));
  ASSERT_FALSE(fetched);
  EXPECT_TRUE(Contains(fetched.error().message, "known_hosts"));
}

TEST_F(GitSshTest, AKeyTheServerDoesNotKnowFailsAuthentication) {
  test::CommandResult keygen =
      test::RunCommand({"ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", dir_.Sub("stranger")});
  ASSERT_TRUE(keygen.ok()) << keygen.output;
  auto mirror = Mirror(server_.url_for(origin_->bare_path()));
  ASSERT_TRUE(mirror);
  auto started = std::chrono::steady_clock::now();
  auto fetched = mirror->Fetch("main", {.ssh_key_file = dir_.Sub("stranger"),
                                        .known_hosts_file = server_.known_hosts_path()});
  ASSERT_FALSE(fetched);
  EXPECT_TRUE(Contains(fetched.error().message, "authentication failed"));
  EXPECT_LT(std::chrono::steady_clock::now() - started, std::chrono::seconds(10));
}

// ---- Trees, diffs and blobs --------------------------------------------------

class GitTreeTest : public GitTest {
 protected:
  void SetUp() override { origin_.emplace(dir_.path(), "origin"); }

  // Commits, pushes and fetches; returns the commit id.
  std::string Publish(const std::string& message) {
    std::string id = origin_->Commit(message);
    EXPECT_TRUE(origin_->Push());
    if (!mirror_) {
      auto opened = Mirror(origin_->file_url());
      EXPECT_TRUE(opened) << opened.error().message;
      mirror_.emplace(std::move(*opened));
    }
    auto fetched = mirror_->Fetch("main", {});
    EXPECT_TRUE(fetched) << fetched.error().message;
    EXPECT_EQ(fetched.value_or(""), id);
    return id;
  }

  std::optional<FixtureRepo> origin_;
  std::optional<Repository> mirror_;
};

std::string Lines(const std::string& prefix, int count) {
  std::string text;
  for (int i = 0; i < count; ++i) text += prefix + " line " + std::to_string(i) + "\n";
  return text;
}

TEST_F(GitTreeTest, DiffReportsAddModifyDeleteAndRenameInsideTheFolderOnly) {
  origin_->WriteFile(".gitops/a.json", "{\"a\": 1}\n");
  origin_->WriteFile(".gitops/b.json", "{\"b\": 1}\n");
  origin_->WriteFile(".gitops/old-name.json", Lines("moved", 20));
  origin_->WriteFile("README.md", "hello\n");
  origin_->WriteFile("src/main.cc", "int main() {}\n");
  std::string before = Publish("before");

  origin_->WriteFile(".gitops/a.json", "{\"a\": 2}\n");
  origin_->Remove(".gitops/b.json");
  origin_->WriteFile(".gitops/sub/c.json", "{\"c\": 1}\n");
  origin_->Rename(".gitops/old-name.json", ".gitops/sub/new-name.json");
  origin_->WriteFile("README.md", "changed outside\n");
  origin_->Remove("src/main.cc");
  origin_->WriteFile("other/x.json", "{}\n");
  std::string after = Publish("after");

  auto changes = mirror_->DiffTrees(before, after, ".gitops");
  ASSERT_TRUE(changes) << changes.error().message;
  ASSERT_EQ(changes->size(), 4u);

  const Change* modified = Find(*changes, ".gitops/a.json");
  ASSERT_NE(modified, nullptr);
  EXPECT_EQ(modified->kind, Change::Kind::kModified);
  EXPECT_EQ(modified->old_path, ".gitops/a.json");
  EXPECT_NE(modified->old_blob_id, modified->new_blob_id);
  EXPECT_EQ(mirror_->ReadBlob(modified->new_blob_id, 1024).value_or(""), "{\"a\": 2}\n");
  EXPECT_EQ(mirror_->ReadBlob(modified->old_blob_id, 1024).value_or(""), "{\"a\": 1}\n");

  const Change* deleted = Find(*changes, ".gitops/b.json");
  ASSERT_NE(deleted, nullptr);
  EXPECT_EQ(deleted->kind, Change::Kind::kDeleted);
  EXPECT_TRUE(deleted->new_blob_id.empty());
  EXPECT_FALSE(deleted->old_blob_id.empty());

  const Change* added = Find(*changes, ".gitops/sub/c.json");
  ASSERT_NE(added, nullptr);
  EXPECT_EQ(added->kind, Change::Kind::kAdded);
  EXPECT_TRUE(added->old_blob_id.empty());
  EXPECT_EQ(added->new_kind, EntryKind::kFile);

  const Change* renamed = Find(*changes, ".gitops/sub/new-name.json");
  ASSERT_NE(renamed, nullptr);
  EXPECT_EQ(renamed->kind, Change::Kind::kRenamed);
  EXPECT_EQ(renamed->old_path, ".gitops/old-name.json");
  EXPECT_EQ(renamed->old_blob_id, renamed->new_blob_id) << "an exact rename";
}

TEST_F(GitTreeTest, ARenameWithSmallEditsIsStillARename) {
  origin_->WriteFile(".gitops/service.json", Lines("service", 40));
  std::string before = Publish("before");
  origin_->Rename(".gitops/service.json", ".gitops/service-v2.json");
  std::string edited = Lines("service", 40);
  edited.replace(edited.find("line 7"), 6, "LINE 7");
  origin_->WriteFile(".gitops/service-v2.json", edited);
  std::string after = Publish("after");

  auto changes = mirror_->DiffTrees(before, after, ".gitops");
  ASSERT_TRUE(changes) << changes.error().message;
  ASSERT_EQ(changes->size(), 1u);
  EXPECT_EQ((*changes)[0].kind, Change::Kind::kRenamed);
  EXPECT_EQ((*changes)[0].old_path, ".gitops/service.json");
  EXPECT_EQ((*changes)[0].new_path, ".gitops/service-v2.json");
  EXPECT_NE((*changes)[0].old_blob_id, (*changes)[0].new_blob_id);
}

TEST_F(GitTreeTest, SymlinksAndSubmodulesAreReportedWithTheirKind) {
  origin_->WriteFile(".gitops/a.json", "{}\n");
  std::string before = Publish("before");
  origin_->Symlink("a.json", ".gitops/link.json");
  origin_->AddGitlink(".gitops/vendored", before);
  origin_->WriteFile(".gitops/run.sh", "#!/bin/sh\n");
  ASSERT_TRUE(origin_->MakeExecutable(".gitops/run.sh"));
  std::string after = Publish("after");

  auto changes = mirror_->DiffTrees(before, after, ".gitops");
  ASSERT_TRUE(changes) << changes.error().message;
  ASSERT_EQ(changes->size(), 3u);
  const Change* link = Find(*changes, ".gitops/link.json");
  ASSERT_NE(link, nullptr);
  EXPECT_EQ(link->kind, Change::Kind::kAdded);
  EXPECT_EQ(link->new_kind, EntryKind::kSymlink);
  EXPECT_EQ(mirror_->ReadBlob(link->new_blob_id, 100).value_or(""), "a.json") << "a symlink's blob is its target";
  const Change* submodule = Find(*changes, ".gitops/vendored");
  ASSERT_NE(submodule, nullptr);
  EXPECT_EQ(submodule->new_kind, EntryKind::kSubmodule);
  EXPECT_EQ(submodule->new_blob_id, before) << "a submodule points at a commit";
  const Change* script = Find(*changes, ".gitops/run.sh");
  ASSERT_NE(script, nullptr);
  EXPECT_EQ(script->new_kind, EntryKind::kExecutable);

  auto listed = mirror_->ListTree(after, ".gitops");
  ASSERT_TRUE(listed) << listed.error().message;
  ASSERT_EQ(listed->size(), 4u);
  auto kind_of = [&](const std::string& path) {
    auto it = std::ranges::find_if(*listed, [&](const TreeEntry& e) { return e.path == path; });
    return it == listed->end() ? EntryKind::kTree : it->kind;
  };
  EXPECT_EQ(kind_of(".gitops/a.json"), EntryKind::kFile);
  EXPECT_EQ(kind_of(".gitops/link.json"), EntryKind::kSymlink);
  EXPECT_EQ(kind_of(".gitops/vendored"), EntryKind::kSubmodule);
  EXPECT_EQ(kind_of(".gitops/run.sh"), EntryKind::kExecutable);
}

TEST_F(GitTreeTest, AFileReplacedByASymlinkIsAModificationWithNewKind) {
  origin_->WriteFile(".gitops/target.json", "{}\n");
  origin_->WriteFile(".gitops/app.json", "{\"a\": 1}\n");
  std::string before = Publish("file");
  origin_->Symlink("target.json", ".gitops/app.json");
  std::string after = Publish("symlink");

  auto changes = mirror_->DiffTrees(before, after, ".gitops");
  ASSERT_TRUE(changes) << changes.error().message;
  ASSERT_EQ(changes->size(), 1u);
  EXPECT_EQ((*changes)[0].kind, Change::Kind::kModified);
  EXPECT_EQ((*changes)[0].new_path, ".gitops/app.json");
  EXPECT_EQ((*changes)[0].old_kind, EntryKind::kFile);
  EXPECT_EQ((*changes)[0].new_kind, EntryKind::kSymlink);
}

TEST_F(GitTreeTest, FirstDiffFromTheEmptyTreeAddsEverythingInTheFolder) {
  origin_->WriteFile(".gitops/a.json", "{}\n");
  origin_->WriteFile(".gitops/deep/b.json", "{}\n");
  origin_->WriteFile("outside.json", "{}\n");
  std::string head = Publish("first");

  auto changes = mirror_->DiffTrees("", head, ".gitops");
  ASSERT_TRUE(changes) << changes.error().message;
  ASSERT_EQ(changes->size(), 2u);
  EXPECT_EQ((*changes)[0].kind, Change::Kind::kAdded);
  EXPECT_EQ((*changes)[0].new_path, ".gitops/a.json");
  EXPECT_EQ((*changes)[1].new_path, ".gitops/deep/b.json");

  // A folder that does not exist is simply empty.
  auto none = mirror_->DiffTrees("", head, "no-such-folder");
  ASSERT_TRUE(none) << none.error().message;
  EXPECT_TRUE(none->empty());
  auto listed = mirror_->ListTree(head, "./.gitops/");
  ASSERT_TRUE(listed) << listed.error().message;
  EXPECT_EQ(listed->size(), 2u);
}

TEST_F(GitTreeTest, ManyFilesOutsideTheFolderAreNeverListed) {
  for (int dir = 0; dir < 20; ++dir) {
    for (int file = 0; file < 100; ++file) {
      origin_->WriteFile("apps/app" + std::to_string(dir) + "/f" + std::to_string(file) + ".txt",
                         std::to_string(dir * 1000 + file));
    }
  }
  origin_->WriteFile(".gitops/a.json", "{\"a\": 1}\n");
  origin_->WriteFile(".gitops/b.json", "{}\n");
  std::string before = Publish("many files");
  for (int dir = 0; dir < 20; ++dir) {
    for (int file = 0; file < 100; file += 2) {
      origin_->WriteFile("apps/app" + std::to_string(dir) + "/f" + std::to_string(file) + ".txt", "changed");
    }
  }
  origin_->WriteFile(".gitops/a.json", "{\"a\": 2}\n");
  std::string after = Publish("one change inside");

  auto changes = mirror_->DiffTrees(before, after, ".gitops");
  ASSERT_TRUE(changes) << changes.error().message;
  ASSERT_EQ(changes->size(), 1u);
  EXPECT_EQ((*changes)[0].new_path, ".gitops/a.json");
  auto listed = mirror_->ListTree(after, ".gitops");
  ASSERT_TRUE(listed);
  EXPECT_EQ(listed->size(), 2u);
}

TEST_F(GitTreeTest, ReadBlobRefusesContentOverTheLimit) {
  std::string content(1000, 'x');
  origin_->WriteFile(".gitops/big.json", content);
  std::string head = Publish("big");
  auto listed = mirror_->ListTree(head, ".gitops");
  ASSERT_TRUE(listed);
  ASSERT_EQ(listed->size(), 1u);
  const std::string& id = (*listed)[0].blob_id;

  EXPECT_EQ(mirror_->BlobSize(id).value_or(0), 1000u);
  EXPECT_EQ(mirror_->ReadBlob(id, 1000).value_or(""), content);
  auto refused = mirror_->ReadBlob(id, 999);
  ASSERT_FALSE(refused);
  EXPECT_TRUE(Contains(refused.error().message, "1000 bytes"));
  EXPECT_TRUE(Contains(refused.error().message, "limit of 999"));
  EXPECT_TRUE(Contains(refused.error().message, id));
  EXPECT_FALSE(mirror_->ReadBlob(std::string(40, 'a'), 10));
  EXPECT_FALSE(mirror_->ReadBlob("not-an-id", 10));
}

// ---- RedactUrl ---------------------------------------------------------------

TEST(RedactUrlTest, RemovesUserAndPasswordButKeepsEverythingElse) {
  EXPECT_EQ(RedactUrl("https://alice:s3cret@git.example.com/org/repo.git"),
            "https://git.example.com/org/repo.git");
  EXPECT_EQ(RedactUrl("http://alice:p%40ss@127.0.0.1:8080/git/x.git"), "http://127.0.0.1:8080/git/x.git");
  EXPECT_EQ(RedactUrl("ssh://git@github.com/org/repo.git"), "ssh://git@github.com/org/repo.git");
  EXPECT_EQ(RedactUrl("https://git.example.com/a@b"), "https://git.example.com/a@b");
  EXPECT_EQ(RedactUrl("file:///srv/repo.git"), "file:///srv/repo.git");
  EXPECT_EQ(RedactUrl("git@github.com:org/repo.git"), "git@github.com:org/repo.git");
  EXPECT_EQ(RedactUrl("https://token:x-oauth@host"), "https://host");
}

}  // namespace
}  // namespace gitopsd::git
