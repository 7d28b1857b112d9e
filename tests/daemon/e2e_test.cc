// The daemon end to end: a real gitopsd process syncing a real repository
// over file://, answered over loopback HTTP, as an operator or a CI job
// would use it.
#include <gtest/gtest.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>

#include "daemon/tokens.h"
#include "tests/daemon/daemon_harness.h"
#include "tests/support/git_servers.h"
#include "tests/support/temp_dir.h"

namespace gitopsd::test {
namespace {

constexpr const char* kWriteToken = "write-token-0123";
constexpr const char* kReadToken = "read-token-4567";

std::string TemplateJson(const std::string& name, const std::string& description) {
  return "{\n  \"apiVersion\": \"v1.2\",\n  \"name\": \"" + name + "\",\n  \"description\": \"" +
         description +
         "\",\n  \"spec\": {\n    \"kind\": \"Workflow\",\n    \"spec\": {\"type\": "
         "\"sequential\", \"steps\": []}\n  }\n}\n";
}

std::string Bearer(const std::string& token) { return "Bearer " + token; }

const json::Value* Field(const json::Value& v, std::string_view key) { return v.Find(key); }

std::string StringField(const json::Value& v, std::string_view key) {
  const json::Value* f = v.Find(key);
  return f && f->is_string() ? f->as_string() : "";
}

double NumberField(const json::Value& v, std::string_view key) {
  const json::Value* f = v.Find(key);
  return f && f->is_number() ? f->as_double() : -1;
}

class DaemonE2ETest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(repo_.WriteFile(".gitops/templates/web.json", TemplateJson("web", "v1")));
    ASSERT_TRUE(repo_.WriteFile(".gitops/templates/database.json", TemplateJson("database", "v1")));
    ASSERT_TRUE(repo_.WriteFile("README.md", "not synced\n"));
    ASSERT_FALSE(repo_.Commit("first").empty());
    ASSERT_TRUE(repo_.Push());
    const std::string tokens =
        "[{\"name\": \"ci\", \"role\": \"write\", \"sha256\": \"" +
        daemon::ToHex(daemon::HashToken(kWriteToken)) +
        "\"},\n {\"name\": \"dashboard\", \"role\": \"read\", \"sha256\": \"" +
        daemon::ToHex(daemon::HashToken(kReadToken)) + "\"}]\n";
    ASSERT_TRUE(WriteTextFile(dir_.Sub("tokens.json"), tokens));
  }

  std::string Config(const std::string& url, const std::string& poll = "200ms",
                     bool tokens = true) {
    return std::string("{\n  \"stateDir\": \"@STATE@\",\n  \"listen\": \"127.0.0.1:@PORT@\",\n") +
           (tokens ? "  \"apiTokensFile\": \"tokens.json\",\n" : "") +
           "  \"repositories\": [{\"name\": \"shop\", \"url\": \"" + url +
           "\", \"pollInterval\": \"" + poll + "\"}],\n  \"log\": {\"level\": \"debug\"}\n}\n";
  }

  ::testing::AssertionResult StartAndWaitReady(const std::string& config) {
    auto started = daemon_.StartWithConfig(config);
    if (!started) return started;
    if (!daemon_.WaitReady()) {
      return ::testing::AssertionFailure() << "not ready in time:\n" << daemon_.Output();
    }
    return ::testing::AssertionSuccess();
  }

  std::string Description(const std::string& name) {
    auto reply = daemon_.Get("/api/v1/objects/templates/" + name);
    auto body = reply.Json();
    return body ? StringField(*body, "description") : "<" + std::to_string(reply.status) + ">";
  }

  TempDir dir_{"daemon"};
  FixtureRepo repo_{dir_.path(), "shop"};
  DaemonUnderTest daemon_{dir_.path()};
};

TEST_F(DaemonE2ETest, SyncsTheRepositoryAndServesItsObjects) {
  ASSERT_TRUE(StartAndWaitReady(Config(repo_.file_url())));

  EXPECT_EQ(daemon_.Get("/healthz").body, "ok\n");
  auto list = daemon_.Get("/api/v1/objects");
  ASSERT_EQ(list.status, 200) << list.body;
  EXPECT_NE(list.headers["Content-Type"].find("application/json"), std::string::npos);
  auto objects = list.Json();
  ASSERT_TRUE(objects && Field(*objects, "objects")) << list.body;
  const auto& items = Field(*objects, "objects")->items();
  ASSERT_EQ(items.size(), 2u) << list.body << daemon_.Output();
  for (const auto& o : items) {
    EXPECT_EQ(StringField(o, "kind"), "Template");
    EXPECT_EQ(StringField(o, "repository"), "shop");
    EXPECT_EQ(StringField(o, "sourceCommit"), repo_.Head());
    EXPECT_EQ(StringField(o, "status"), "synced");
    EXPECT_EQ(NumberField(o, "revision"), 1);
    EXPECT_EQ(StringField(o, "path"), ".gitops/templates/" + StringField(o, "name") + ".json");
  }
  auto templates = daemon_.Get("/api/v1/objects?kind=templates").Json();
  ASSERT_TRUE(templates);
  EXPECT_EQ(Field(*templates, "objects")->items().size(), 2u);
  auto flows = daemon_.Get("/api/v1/objects?kind=ReleaseFlow").Json();
  ASSERT_TRUE(flows);
  EXPECT_EQ(Field(*flows, "objects")->items().size(), 0u);
  EXPECT_EQ(daemon_.Get("/api/v1/objects?kind=widgets").status, 400);

  auto web = daemon_.Get("/api/v1/objects/templates/web");
  ASSERT_EQ(web.status, 200) << web.body;
  EXPECT_EQ(web.headers["ETag"], "\"1\"");
  auto body = web.Json();
  ASSERT_TRUE(body) << web.body;
  EXPECT_EQ(StringField(*body, "name"), "web");
  EXPECT_EQ(StringField(*body, "apiVersion"), "v1.2");
  EXPECT_EQ(daemon_.Get("/api/v1/objects/Template/web").status, 200) << "kind names work too";
  EXPECT_EQ(daemon_.Get("/api/v1/objects/templates/web", {{"If-None-Match", "\"1\""}}).status, 304);

  auto missing = daemon_.Get("/api/v1/objects/templates/nope");
  EXPECT_EQ(missing.status, 404);
  auto error = missing.Json();
  ASSERT_TRUE(error && Field(*error, "error")) << missing.body;
  EXPECT_EQ(StringField(*Field(*error, "error"), "code"), "not_found");
  EXPECT_NE(StringField(*Field(*error, "error"), "message").find("nope"), std::string::npos);
  EXPECT_EQ(daemon_.Get("/api/v1/objects/widgets/web").status, 404);
  EXPECT_EQ(daemon_.Get("/no/such/path").status, 404);
  auto wrong_method = Http(daemon_.port(), "DELETE", "/api/v1/sync");
  EXPECT_EQ(wrong_method.status, 405);
  EXPECT_EQ(wrong_method.headers["Allow"], "GET");

  struct stat st{};
  ASSERT_EQ(::stat(daemon_.state_dir().c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u) << "the state folder is private";
  EXPECT_TRUE(std::filesystem::exists(daemon_.state_dir() + "/state.db"));
  EXPECT_TRUE(std::filesystem::is_directory(daemon_.state_dir() + "/repos/shop.git"));
}

TEST_F(DaemonE2ETest, APushedChangeIsAppliedWhenCiAsksForASync) {
  ASSERT_TRUE(StartAndWaitReady(Config(repo_.file_url(), "1h")));  // only on request
  const std::string first = repo_.Head();
  ASSERT_TRUE(repo_.WriteFile(".gitops/templates/web.json", TemplateJson("web", "v2")));
  ASSERT_FALSE(repo_.Commit("web v2").empty());
  ASSERT_TRUE(repo_.Push());
  EXPECT_EQ(Description("web"), "v1");

  const std::string path = "/api/v1/repositories/shop/sync";
  EXPECT_EQ(daemon_.Post(path).status, 401);
  EXPECT_EQ(daemon_.Post(path, {{"Authorization", Bearer("wrong")}}).status, 401);
  EXPECT_EQ(daemon_.Post(path, {{"Authorization", "Basic Y2k6eA=="}}).status, 401);
  auto read_only = daemon_.Post(path, {{"Authorization", Bearer(kReadToken)}});
  EXPECT_EQ(read_only.status, 403) << read_only.body;
  EXPECT_NE(read_only.body.find("dashboard"), std::string::npos) << read_only.body;
  EXPECT_EQ(daemon_.Post("/api/v1/repositories/nope/sync", {{"Authorization", Bearer(kWriteToken)}})
                .status,
            404);
  EXPECT_EQ(daemon_.Get(path).status, 405);
  EXPECT_EQ(Description("web"), "v1") << "refused requests change nothing";

  auto synced = daemon_.Post(path, {{"Authorization", Bearer(kWriteToken)}});
  ASSERT_EQ(synced.status, 200) << synced.body << daemon_.Output();
  auto report = synced.Json();
  ASSERT_TRUE(report) << synced.body;
  EXPECT_EQ(StringField(*report, "from"), first);
  EXPECT_EQ(StringField(*report, "to"), repo_.Head());
  EXPECT_EQ(NumberField(*report, "updated"), 1);
  EXPECT_EQ(NumberField(*report, "added"), 0);
  EXPECT_EQ(NumberField(*report, "deleted"), 0);
  ASSERT_TRUE(Field(*report, "errors"));
  EXPECT_TRUE(Field(*report, "errors")->items().empty());

  EXPECT_EQ(Description("web"), "v2");
  EXPECT_EQ(daemon_.Get("/api/v1/objects/templates/web").headers["ETag"], "\"2\"");
  auto sync = daemon_.Get("/api/v1/sync").Json();
  ASSERT_TRUE(sync);
  const auto& repo = Field(*sync, "repositories")->items().at(0);
  EXPECT_EQ(StringField(repo, "appliedCommit"), repo_.Head());
  EXPECT_EQ(StringField(repo, "fetchedCommit"), repo_.Head());
  EXPECT_EQ(StringField(repo, "branch"), "main");
  EXPECT_EQ(StringField(repo, "url"), repo_.file_url());
  EXPECT_NE(daemon_.Output().find("sync requested through the API by token \"ci\""),
            std::string::npos)
      << daemon_.Output();
}

TEST_F(DaemonE2ETest, PollingPicksUpAPushByItself) {
  ASSERT_TRUE(StartAndWaitReady(Config(repo_.file_url(), "200ms")));
  ASSERT_TRUE(repo_.WriteFile(".gitops/templates/cache.json", TemplateJson("cache", "v1")));
  ASSERT_FALSE(repo_.Commit("add cache").empty());
  ASSERT_TRUE(repo_.Push());
  EXPECT_TRUE(WaitUntil([&] { return Description("cache") == "v1"; })) << daemon_.Output();
}

TEST_F(DaemonE2ETest, ReadinessAndMetricsFollowTheSyncs) {
  ASSERT_TRUE(StartAndWaitReady(Config(repo_.file_url())));
  EXPECT_EQ(daemon_.Get("/readyz").status, 200);
  auto metrics = daemon_.Get("/metrics");
  ASSERT_EQ(metrics.status, 200);
  EXPECT_NE(metrics.headers["Content-Type"].find("text/plain; version=0.0.4"), std::string::npos);
  const std::string& text = metrics.body;
  EXPECT_NE(text.find("# TYPE gitopsd_sync_total counter"), std::string::npos) << text;
  EXPECT_NE(text.find("gitopsd_sync_total{repository=\"shop\",result=\"success\"} "),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("gitopsd_objects{kind=\"Template\"} 2\n"), std::string::npos) << text;
  EXPECT_NE(text.find("gitopsd_last_applied_commit_info{repository=\"shop\",commit=\"" +
                      repo_.Head() + "\"} 1\n"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("gitopsd_sync_duration_seconds_count{repository=\"shop\"} "),
            std::string::npos);
  EXPECT_NE(text.find("gitopsd_fetch_failures_total{repository=\"shop\"} 0\n"), std::string::npos);
  EXPECT_NE(text.find("gitopsd_sync_errors{repository=\"shop\"} 0\n"), std::string::npos);
  EXPECT_NE(text.find("gitopsd_last_sync_timestamp_seconds{repository=\"shop\"} "),
            std::string::npos);
}

TEST_F(DaemonE2ETest, ABadFileIsReportedWithItsPositionWhileTheOthersStay) {
  ASSERT_TRUE(StartAndWaitReady(Config(repo_.file_url())));
  // Line 3, column 3: the missing comma before "name".
  ASSERT_TRUE(repo_.WriteFile(".gitops/templates/broken.json",
                              "{\n  \"apiVersion\": \"v1.2\"\n  \"name\": \"broken\"\n}\n"));
  ASSERT_TRUE(repo_.WriteFile(".gitops/templates/web.json", TemplateJson("web", "v2")));
  ASSERT_FALSE(repo_.Commit("one good, one bad").empty());
  ASSERT_TRUE(repo_.Push());

  std::optional<json::Value> status;
  ASSERT_TRUE(WaitUntil([&] {
    status = daemon_.Get("/api/v1/sync").Json();
    if (!status || !Field(*status, "repositories")) return false;
    const auto& repo = Field(*status, "repositories")->items().at(0);
    return StringField(repo, "appliedCommit") == repo_.Head();
  })) << daemon_.Output();
  const auto& repo = Field(*status, "repositories")->items().at(0);
  const auto& errors = Field(repo, "errors")->items();
  ASSERT_EQ(errors.size(), 1u) << json::SerializeCompact(*status);
  EXPECT_EQ(StringField(errors[0], "path"), ".gitops/templates/broken.json");
  EXPECT_EQ(NumberField(errors[0], "line"), 3);
  EXPECT_EQ(NumberField(errors[0], "column"), 3);
  EXPECT_EQ(StringField(errors[0], "rule"), "json-syntax");
  EXPECT_EQ(StringField(errors[0], "commit"), repo_.Head());
  EXPECT_FALSE(StringField(errors[0], "message").empty());
  EXPECT_EQ(NumberField(repo, "pendingWriteBacks"), 0);

  EXPECT_EQ(Description("web"), "v2") << "the good file of the commit still applies";
  EXPECT_EQ(Description("database"), "v1");
  EXPECT_NE(daemon_.Get("/metrics").body.find("gitopsd_sync_errors{repository=\"shop\"} 1\n"),
            std::string::npos);
  EXPECT_NE(daemon_.Output().find(".gitops/templates/broken.json:3:3: error: "), std::string::npos)
      << daemon_.Output();
}

TEST_F(DaemonE2ETest, AnUnreachableRemoteKeepsTheDaemonRunningAndReportsIt) {
  const std::string url = "file://" + dir_.Sub("missing.git");
  ASSERT_TRUE(StartAndWaitReady(Config(url))) << "ready means: the first attempt finished";
  std::optional<json::Value> status;
  ASSERT_TRUE(WaitUntil([&] {
    status = daemon_.Get("/api/v1/sync").Json();
    return status && Field(*status, "repositories") &&
           !Field(*status, "repositories")->items().empty() &&
           !StringField(Field(*status, "repositories")->items()[0], "lastFetchError").empty();
  })) << daemon_.Output();
  const auto& repo = Field(*status, "repositories")->items()[0];
  EXPECT_GE(NumberField(repo, "fetchFailures"), 1);
  EXPECT_NE(StringField(repo, "lastFetchError").find("missing.git"), std::string::npos)
      << StringField(repo, "lastFetchError");
  EXPECT_TRUE(daemon_.process().Running());

  auto post = daemon_.Post("/api/v1/repositories/shop/sync", {{"Authorization", Bearer(kWriteToken)}});
  EXPECT_EQ(post.status, 502) << post.body;
  EXPECT_NE(post.body.find("fetch_failed"), std::string::npos) << post.body;
  const std::string metrics = daemon_.Get("/metrics").body;
  EXPECT_EQ(metrics.find("gitopsd_fetch_failures_total{repository=\"shop\"} 0\n"), std::string::npos)
      << metrics;
  EXPECT_NE(metrics.find("gitopsd_sync_total{repository=\"shop\",result=\"fetch_error\"}"),
            std::string::npos)
      << metrics;
  EXPECT_NE(daemon_.Output().find("fetch failed"), std::string::npos) << daemon_.Output();
  EXPECT_TRUE(daemon_.process().Running());
}

TEST_F(DaemonE2ETest, WithoutATokensFileWritesAreRefusedWithAHint) {
  ASSERT_TRUE(StartAndWaitReady(Config(repo_.file_url(), "200ms", /*tokens=*/false)));
  auto post = daemon_.Post("/api/v1/repositories/shop/sync", {{"Authorization", Bearer(kWriteToken)}});
  EXPECT_EQ(post.status, 403);
  EXPECT_NE(post.body.find("apiTokensFile"), std::string::npos) << post.body;
  EXPECT_EQ(daemon_.Get("/api/v1/objects").status, 200) << "reads stay open";
}

TEST_F(DaemonE2ETest, SigtermStopsCleanly) {
  ASSERT_TRUE(StartAndWaitReady(Config(repo_.file_url())));
  const int status = daemon_.process().Stop(std::chrono::seconds(10));
  ASSERT_TRUE(WIFEXITED(status)) << "killed instead of exiting:\n" << daemon_.Output();
  EXPECT_EQ(WEXITSTATUS(status), 0) << daemon_.Output();
  EXPECT_NE(daemon_.Output().find("shutting down"), std::string::npos);
}

TEST_F(DaemonE2ETest, QuickModeNeedsNoConfigFile) {
  ASSERT_TRUE(daemon_.StartWithArgs({"serve", "--repo", repo_.bare_path(), "--listen",
                                     "127.0.0.1:@PORT@", "--poll-interval", "200ms"}));
  ASSERT_TRUE(daemon_.WaitReady()) << daemon_.Output();
  EXPECT_EQ(Description("web"), "v1");
  auto status = daemon_.Get("/api/v1/sync").Json();
  ASSERT_TRUE(status);
  EXPECT_EQ(StringField(Field(*status, "repositories")->items().at(0), "name"), "shop");
  EXPECT_NE(daemon_.Output().find(".gitopsd-state"), std::string::npos) << daemon_.Output();
  EXPECT_TRUE(std::filesystem::exists(dir_.Sub(".gitopsd-state/state.db")));
  EXPECT_EQ(daemon_.Post("/api/v1/repositories/shop/sync").status, 403) << "no tokens: read-only";
}

// A TCP listener that never answers: a fetch from it hangs until the socket
// closes, which keeps the first sync pending for as long as the test likes.
class SilentServer {
 public:
  SilentServer() {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof addr;
    if (::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0 &&
        ::listen(fd_, 16) == 0 &&
        ::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
      port_ = ntohs(addr.sin_port);
    }
  }
  ~SilentServer() { Close(); }
  void Close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }
  int port() const { return port_; }

 private:
  int fd_ = -1;
  int port_ = -1;
};

TEST_F(DaemonE2ETest, ReadyzWaitsForTheFirstSyncOfEveryRepository) {
  SilentServer silent;
  ASSERT_GT(silent.port(), 0);
  const std::string url = "http://127.0.0.1:" + std::to_string(silent.port()) + "/shop.git";
  ASSERT_TRUE(daemon_.StartWithConfig(Config(url)));
  auto pending = daemon_.Get("/readyz");
  EXPECT_EQ(pending.status, 503) << pending.body;
  EXPECT_NE(pending.body.find("shop"), std::string::npos) << pending.body;
  EXPECT_EQ(daemon_.Get("/healthz").status, 200) << "alive while not ready";
  silent.Close();  // the hanging fetch fails now
  EXPECT_TRUE(daemon_.WaitReady()) << daemon_.Output();
}

TEST_F(DaemonE2ETest, OversizedBodiesAreRefused) {
  ASSERT_TRUE(StartAndWaitReady(Config(repo_.file_url())));
  auto reply = daemon_.Post("/api/v1/repositories/shop/sync",
                            {{"Authorization", Bearer(kWriteToken)}}, std::string(2 << 20, 'x'));
  EXPECT_EQ(reply.status, 413) << reply.error;
}


// The credentials of the configuration reach Git: a password file for smart
// HTTP, a key and a known_hosts file for SSH. A wrong password is a fetch
// error the operator can read, and the daemon keeps running.
class DaemonRemoteTest : public ::testing::Test {
 protected:
  std::string Config(const std::string& url, const std::string& auth) {
    return "{\"stateDir\": \"@STATE@\", \"listen\": \"127.0.0.1:@PORT@\", "
           "\"repositories\": [{\"name\": \"shop\", \"url\": \"" + url +
           "\", \"pollInterval\": \"1h\", \"auth\": " + auth + "}]}";
  }
  void PushTemplate(FixtureRepo& origin) {
    ASSERT_TRUE(origin.WriteFile(".gitops/templates/web.json", TemplateJson("web", "v1")));
    ASSERT_FALSE(origin.Commit("first").empty());
    ASSERT_TRUE(origin.Push());
  }
  TempDir dir_{"remote"};
  DaemonUnderTest daemon_{dir_.path()};
};

TEST_F(DaemonRemoteTest, SyncsOverHttpWithAPasswordFile) {
  HttpGitServer server("alice", "s3cret");
  GITOPSD_START_OR_SKIP(server);
  FixtureRepo origin(server.repos_root(), "shop");
  PushTemplate(origin);
  ASSERT_TRUE(WriteTextFile(dir_.Sub("password"), "s3cret\n"));
  ASSERT_TRUE(daemon_.StartWithConfig(
      Config(server.url_for("shop.git"),
             "{\"username\": \"alice\", \"passwordFile\": \"" + dir_.Sub("password") + "\"}")));
  ASSERT_TRUE(daemon_.WaitReady()) << daemon_.Output();
  EXPECT_EQ(daemon_.Get("/api/v1/objects/templates/web").status, 200) << daemon_.Output();
  EXPECT_EQ(daemon_.Output().find("s3cret"), std::string::npos) << "the password is never logged";
}

TEST_F(DaemonRemoteTest, AWrongPasswordIsAReadableFetchError) {
  HttpGitServer server("alice", "s3cret");
  GITOPSD_START_OR_SKIP(server);
  FixtureRepo origin(server.repos_root(), "shop");
  PushTemplate(origin);
  ASSERT_TRUE(WriteTextFile(dir_.Sub("password"), "not-the-password\n"));
  ASSERT_TRUE(daemon_.StartWithConfig(Config(
      server.url_for("shop.git"),
      "{\"username\": \"alice\", \"passwordFile\": \"" + dir_.Sub("password") + "\"}")));
  ASSERT_TRUE(daemon_.WaitReady()) << daemon_.Output();
  auto sync = daemon_.Get("/api/v1/sync").Json();
  ASSERT_TRUE(sync);
  const auto& repo = Field(*sync, "repositories")->items().at(0);
  EXPECT_NE(StringField(repo, "lastFetchError").find("authentication failed"), std::string::npos)
      << StringField(repo, "lastFetchError");
  EXPECT_GE(NumberField(repo, "fetchFailures"), 1);
  EXPECT_TRUE(daemon_.process().Running());
  EXPECT_EQ(daemon_.Output().find("not-the-password"), std::string::npos);
}

TEST_F(DaemonRemoteTest, SyncsOverSshWithAKeyAndKnownHosts) {
  SshGitServer server;
  GITOPSD_START_OR_SKIP(server);
  FixtureRepo origin(server.repos_root(), "shop");
  PushTemplate(origin);
  ASSERT_TRUE(daemon_.StartWithConfig(
      Config(server.url_for(origin.bare_path()),
             "{\"sshKeyFile\": \"" + server.client_key_path() + "\", \"knownHostsFile\": \"" +
                 server.known_hosts_path() + "\"}")));
  ASSERT_TRUE(daemon_.WaitReady()) << daemon_.Output();
  EXPECT_EQ(daemon_.Get("/api/v1/objects/templates/web").status, 200) << daemon_.Output();
}

}  // namespace
}  // namespace gitopsd::test
