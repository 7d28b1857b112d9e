// The configuration file as an operator writes it: defaults filled in,
// mistakes named by file, line, column and key, paths anchored at the file.
#include "daemon/config.h"

#include <gtest/gtest.h>

#include <filesystem>

#include "sync/model.h"
#include "tests/support/temp_dir.h"

namespace gitopsd::daemon {
namespace {

using test::TempDir;
using test::WriteTextFile;

class ConfigTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto loader = model::Loader::Create();
    ASSERT_TRUE(loader.has_value()) << loader.error().message;
    loader_.emplace(std::move(*loader));
  }

  Result<Config> Load(const std::string& text) {
    const std::string path = dir_.Sub("gitopsd.json");
    EXPECT_TRUE(WriteTextFile(path, text));
    return LoadConfigFile(path, *loader_);
  }

  TempDir dir_{"config"};
  std::optional<model::Loader> loader_;
};

TEST_F(ConfigTest, AMinimalFileGetsEveryDefault) {
  auto c = Load(R"({"repositories": [{"name": "shop", "url": "https://git.example.com/shop.git"}]})");
  ASSERT_TRUE(c.has_value()) << c.error().message;
  EXPECT_EQ(c->state_dir, "/var/lib/gitopsd");
  EXPECT_EQ(c->listen, "127.0.0.1:7780");
  EXPECT_EQ(c->api_tokens_file, "");
  EXPECT_EQ(c->log_level, "info");
  EXPECT_EQ(c->log_format, "text");
  EXPECT_EQ(c->runtime_kind, "process");
  EXPECT_EQ(c->port_range_first, 20000);
  EXPECT_EQ(c->port_range_last, 29999);
  ASSERT_EQ(c->repositories.size(), 1u);
  const RepositorySettings& r = c->repositories[0];
  EXPECT_EQ(r.name, "shop");
  EXPECT_EQ(r.url, "https://git.example.com/shop.git");
  EXPECT_EQ(r.branch, "main");
  EXPECT_EQ(r.poll_interval, Millis(60'000));
  EXPECT_EQ(r.sync_path, ".gitops");
  EXPECT_TRUE(r.prune);
  EXPECT_TRUE(r.write_back);
  EXPECT_EQ(r.conflict_policy, "git-wins");
  EXPECT_EQ(r.author_name, "gitopsd");
  EXPECT_EQ(r.author_email, "gitopsd@localhost");
  EXPECT_EQ(r.max_file_bytes, 1u << 20);
  EXPECT_EQ(r.max_depth, 64u);
}

TEST_F(ConfigTest, EveryFieldIsRead) {
  ASSERT_TRUE(WriteTextFile(dir_.Sub("secrets/password"), "s3cret\n"));
  auto c = Load(R"({
  "stateDir": "/srv/gitopsd",
  "listen": "0.0.0.0:9000",
  "repositories": [{
    "name": "shop", "url": "https://git.example.com/shop.git", "branch": "release",
    "pollInterval": "500ms",
    "auth": {"username": "bot", "passwordFile": "secrets/password"},
    "sync": {"path": "deploy/", "prune": false, "writeBack": false, "conflictPolicy": "api-wins",
             "author": {"name": "Bot", "email": "bot@example.com"},
             "maxFileBytes": 4096, "maxDepth": 8}
  }],
  "runtime": {"kind": "process", "portRange": [30000, 30010]},
  "log": {"level": "debug", "format": "json"}
})");
  ASSERT_TRUE(c.has_value()) << c.error().message;
  EXPECT_EQ(c->state_dir, "/srv/gitopsd");
  EXPECT_EQ(c->listen, "0.0.0.0:9000");
  EXPECT_EQ(c->log_level, "debug");
  EXPECT_EQ(c->log_format, "json");
  EXPECT_EQ(c->port_range_first, 30000);
  EXPECT_EQ(c->port_range_last, 30010);
  const RepositorySettings& r = c->repositories.at(0);
  EXPECT_EQ(r.branch, "release");
  EXPECT_EQ(r.poll_interval, Millis(500));
  EXPECT_EQ(r.username, "bot");
  EXPECT_EQ(r.password, "s3cret") << "the trailing newline is trimmed";
  EXPECT_EQ(r.sync_path, "deploy");
  EXPECT_FALSE(r.prune);
  EXPECT_FALSE(r.write_back);
  EXPECT_EQ(r.conflict_policy, "api-wins");
  EXPECT_EQ(r.author_name, "Bot");
  EXPECT_EQ(r.author_email, "bot@example.com");
  EXPECT_EQ(r.max_file_bytes, 4096u);
  EXPECT_EQ(r.max_depth, 8u);
}

TEST_F(ConfigTest, AnUnknownKeyIsNamedWithItsLineAndColumn) {
  auto c = Load("{\n  \"listen\": \"127.0.0.1:1\",\n  \"stateDri\": \"/tmp/x\"\n}\n");
  ASSERT_FALSE(c.has_value());
  const std::string& m = c.error().message;
  EXPECT_NE(m.find(dir_.Sub("gitopsd.json") + ":3:3"), std::string::npos) << m;
  EXPECT_NE(m.find("stateDri"), std::string::npos) << m;
}

TEST_F(ConfigTest, AnUnknownKeyInsideARepositoryIsNamed) {
  auto c = Load("{\"repositories\": [\n  {\"name\": \"a\", \"url\": \"/x\",\n   \"pollIntervall\": \"5s\"}]}");
  ASSERT_FALSE(c.has_value());
  const std::string& m = c.error().message;
  EXPECT_NE(m.find(":3:4"), std::string::npos) << m;
  EXPECT_NE(m.find("pollIntervall"), std::string::npos) << m;
}

TEST_F(ConfigTest, ABadDurationIsRefusedWithItsPosition) {
  auto c = Load("{\"repositories\": [{\"name\": \"a\", \"url\": \"/x\",\n \"pollInterval\": \"5 minutes\"}]}");
  ASSERT_FALSE(c.has_value());
  const std::string& m = c.error().message;
  EXPECT_NE(m.find(":2:"), std::string::npos) << m;
  EXPECT_NE(m.find("5 minutes"), std::string::npos) << m;
}

TEST_F(ConfigTest, AnUnknownLogFormatOrLevelIsRefusedWithItsPosition) {
  auto c = Load("{\"log\": {\"level\": \"info\",\n  \"format\": \"logfmt\"}}");
  ASSERT_FALSE(c.has_value());
  EXPECT_NE(c.error().message.find(":2:"), std::string::npos) << c.error().message;
  EXPECT_NE(c.error().message.find("logfmt"), std::string::npos) << c.error().message;
  auto level = Load(R"({"log": {"level": "verbose"}})");
  ASSERT_FALSE(level.has_value());
  EXPECT_NE(level.error().message.find("verbose"), std::string::npos) << level.error().message;
}

TEST_F(ConfigTest, AZeroDurationIsRefused) {
  auto c = Load(R"({"repositories": [{"name": "a", "url": "/x", "pollInterval": "0s"}]})");
  ASSERT_FALSE(c.has_value());
  EXPECT_NE(c.error().message.find("pollInterval"), std::string::npos) << c.error().message;
}

TEST_F(ConfigTest, RelativePathsResolveAgainstTheConfigFolder) {
  ASSERT_TRUE(WriteTextFile(dir_.Sub("pw"), "x"));
  auto c = Load(R"({"stateDir": "state", "apiTokensFile": "conf/tokens.json",
    "repositories": [{"name": "a", "url": "../repos/a.git",
                      "auth": {"passwordFile": "pw", "sshKeyFile": "keys/id", "knownHostsFile": "kh",
                               "caFile": "ca.pem"}}]})");
  ASSERT_TRUE(c.has_value()) << c.error().message;
  const std::string base = std::filesystem::path(dir_.path()).lexically_normal().string();
  const std::string parent = std::filesystem::path(dir_.path()).parent_path().string();
  EXPECT_EQ(c->state_dir, base + "/state");
  EXPECT_EQ(c->api_tokens_file, base + "/conf/tokens.json");
  const RepositorySettings& r = c->repositories.at(0);
  EXPECT_EQ(r.url, "file://" + parent + "/repos/a.git");
  EXPECT_EQ(r.password_file, base + "/pw");
  EXPECT_EQ(r.ssh_key_file, base + "/keys/id");
  EXPECT_EQ(r.known_hosts_file, base + "/kh");
  EXPECT_EQ(r.ca_file, base + "/ca.pem");
}

TEST_F(ConfigTest, AMissingPasswordFileIsNamed) {
  auto c = Load(R"({"repositories": [{"name": "a", "url": "https://h/a.git",
                                      "auth": {"passwordFile": "nope.txt"}}]})");
  ASSERT_FALSE(c.has_value());
  EXPECT_NE(c.error().message.find(dir_.Sub("nope.txt")), std::string::npos) << c.error().message;
}

TEST_F(ConfigTest, WithoutRuntimePostgresThereIsNoServer) {
  auto c = Load(R"({"runtime": {"portRange": [30000, 30010]}})");
  ASSERT_TRUE(c.has_value()) << c.error().message;
  EXPECT_FALSE(c->postgres.has_value()) << "sqlite addons only";
}

TEST_F(ConfigTest, RuntimePostgresIsReadWithItsPasswordFile) {
  ASSERT_TRUE(WriteTextFile(dir_.Sub("secrets/pg"), "pg-s3cret\n"));
  ASSERT_TRUE(WriteTextFile(dir_.Sub("pgbin/psql"), "#!/bin/sh\n"));
  ASSERT_TRUE(WriteTextFile(dir_.Sub("pgbin/pg_dump"), "#!/bin/sh\n"));
  ASSERT_TRUE(WriteTextFile(dir_.Sub("pgbin/pg_restore"), "#!/bin/sh\n"));
  for (const char* tool : {"psql", "pg_dump", "pg_restore"}) {
    std::filesystem::permissions(dir_.Sub(std::string("pgbin/") + tool),
                                 std::filesystem::perms::owner_all);
  }
  auto c = Load(R"({"runtime": {"postgres": {
    "host": "db.internal", "port": 6543, "user": "gitopsd", "passwordFile": "secrets/pg",
    "adminDatabase": "template1", "binDir": "pgbin"}}})");
  ASSERT_TRUE(c.has_value()) << c.error().message;
  ASSERT_TRUE(c->postgres.has_value());
  const PostgresSettings& p = *c->postgres;
  EXPECT_EQ(p.host, "db.internal");
  EXPECT_EQ(p.port, 6543);
  EXPECT_EQ(p.user, "gitopsd");
  EXPECT_EQ(p.password, "pg-s3cret") << "the trailing newline is trimmed";
  EXPECT_EQ(p.password_file, dir_.Sub("secrets/pg"));
  EXPECT_EQ(p.admin_database, "template1");
  EXPECT_EQ(p.bin_dir, dir_.Sub("pgbin")) << "relative to the configuration's folder";
}

TEST_F(ConfigTest, RuntimePostgresDefaults) {
  auto c = Load(R"({"runtime": {"postgres": {}}})");
  ASSERT_TRUE(c.has_value()) << c.error().message;
  ASSERT_TRUE(c->postgres.has_value());
  EXPECT_EQ(c->postgres->host, "127.0.0.1");
  EXPECT_EQ(c->postgres->port, 5432);
  EXPECT_EQ(c->postgres->user, "postgres");
  EXPECT_EQ(c->postgres->password, "") << "trust, peer or ~/.pgpass";
  EXPECT_EQ(c->postgres->admin_database, "postgres");
  EXPECT_EQ(c->postgres->bin_dir, "") << "the tools come from PATH";
}

TEST_F(ConfigTest, RuntimePostgresMistakesAreNamed) {
  {
    auto c = Load("{\"runtime\": {\"postgres\": {\"host\": \"h\",\n  \"passwd\": \"x\"}}}");
    ASSERT_FALSE(c.has_value());
    EXPECT_NE(c.error().message.find(":2:3"), std::string::npos) << c.error().message;
    EXPECT_NE(c.error().message.find("passwd"), std::string::npos) << c.error().message;
  }
  {
    auto c = Load(R"({"runtime": {"postgres": {"port": 70000}}})");
    ASSERT_FALSE(c.has_value()) << "the port is out of range";
  }
  {
    auto c = Load(R"({"runtime": {"postgres": {"passwordFile": "nope"}}})");
    ASSERT_FALSE(c.has_value());
    EXPECT_NE(c.error().message.find("runtime.postgres.passwordFile"), std::string::npos)
        << c.error().message;
    EXPECT_NE(c.error().message.find(dir_.Sub("nope")), std::string::npos) << c.error().message;
  }
  {
    ASSERT_TRUE(WriteTextFile(dir_.Sub("secret"), "hunter2-do-not-print"));
    auto c = Load(R"({"runtime": {"postgres": {"passwordFile": "secret", "binDir": "no/such/dir"}}})");
    ASSERT_FALSE(c.has_value());
    EXPECT_NE(c.error().message.find("runtime.postgres.binDir"), std::string::npos) << c.error().message;
    EXPECT_EQ(c.error().message.find("hunter2"), std::string::npos) << "never the password";
  }
}

// forgeApi: the token read from its file, the API's URL from the forge and
// the repository's web address unless given.
TEST_F(ConfigTest, ForgeApiUrlsDefaultFromTheForge) {
  ASSERT_TRUE(WriteTextFile(dir_.Sub("forge.token"), "s3cret\n"));
  auto c = Load(R"({"repositories": [
    {"name": "a", "url": "git@github.com:acme/a.git", "forgeApi": {"type": "github", "tokenFile": "forge.token"}},
    {"name": "b", "url": "file:///srv/mirror/b.git",
     "webhook": {"type": "gitlab", "secretFile": "forge.token", "forgeUrl": "https://gitlab.example.com/acme/b"},
     "forgeApi": {"type": "gitlab", "tokenFile": "forge.token"}},
    {"name": "c", "url": "https://gitea.example.com/acme/c.git", "forgeApi": {"type": "gitea", "tokenFile": "forge.token"}},
    {"name": "d", "url": "https://git.example.com/acme/d.git",
     "forgeApi": {"type": "gitea", "url": "https://api.example.com/gitea/api/v1/", "tokenFile": "forge.token"}}]})");
  ASSERT_TRUE(c.has_value()) << c.error().message;
  EXPECT_EQ(c->repositories[0].forge_api_url, "https://api.github.com");
  EXPECT_EQ(c->repositories[0].forge_api_token, "s3cret");
  EXPECT_EQ(c->repositories[1].forge_api_url, "https://gitlab.example.com/api/v4");
  EXPECT_EQ(c->repositories[2].forge_api_url, "https://gitea.example.com/api/v1");
  EXPECT_EQ(c->repositories[3].forge_api_url, "https://api.example.com/gitea/api/v1");
  EXPECT_EQ(c->repositories[3].forge_api_type, "gitea");
}

TEST_F(ConfigTest, ForgeApiMistakesAreNamed) {
  // No web address to find a GitLab on.
  auto c = Load(R"({"repositories": [{"name": "a", "url": "file:///srv/a.git",
    "forgeApi": {"type": "gitlab", "tokenFile": "/nonexistent/token"}}]})");
  ASSERT_FALSE(c.has_value());
  EXPECT_NE(c.error().message.find("forgeApi.tokenFile: cannot read /nonexistent/token"), std::string::npos)
      << c.error().message;
  EXPECT_NE(c.error().message.find("forgeApi.url is required"), std::string::npos) << c.error().message;
  c = Load(R"({"repositories": [{"name": "a", "url": "https://x.example.com/a.git", "forgeApi": {"type": "bitbucket", "tokenFile": "t"}}]})");
  ASSERT_FALSE(c.has_value());
  EXPECT_NE(c.error().message.find("bitbucket"), std::string::npos) << c.error().message;
}

TEST_F(ConfigTest, AMissingFileSaysSoAndSuggestsQuickMode) {
  auto c = LoadConfigFile(dir_.Sub("absent.json"), *loader_);
  ASSERT_FALSE(c.has_value());
  EXPECT_NE(c.error().message.find("absent.json"), std::string::npos);
  EXPECT_NE(c.error().message.find("--repo"), std::string::npos);
}

TEST_F(ConfigTest, InvalidJsonIsReportedWithAPosition) {
  auto c = Load("{\n  \"listen\": \"127.0.0.1:1\",\n}");
  ASSERT_FALSE(c.has_value());
  EXPECT_NE(c.error().message.find("gitopsd.json:"), std::string::npos) << c.error().message;
}

TEST(DurationTest, UnitsAndMistakes) {
  EXPECT_EQ(ParseDuration("500ms"), Millis(500));
  EXPECT_EQ(ParseDuration("30s"), Millis(30'000));
  EXPECT_EQ(ParseDuration("5m"), Millis(300'000));
  EXPECT_EQ(ParseDuration("1h"), Millis(3'600'000));
  EXPECT_EQ(ParseDuration("0s"), std::nullopt);
  EXPECT_EQ(ParseDuration("5"), std::nullopt);
  EXPECT_EQ(ParseDuration("s"), std::nullopt);
  EXPECT_EQ(ParseDuration("1.5s"), std::nullopt);
  EXPECT_EQ(ParseDuration("-1s"), std::nullopt);
  EXPECT_EQ(ParseDuration("5d"), std::nullopt);
  EXPECT_EQ(FormatDuration(Millis(300'000)), "5m");
  EXPECT_EQ(FormatDuration(Millis(1500)), "1500ms");
}

TEST(QuickModeTest, APathBecomesAFileUrlNamedAfterItsFolder) {
  TempDir dir("quick");
  std::filesystem::create_directories(dir.Sub("My_Shop.git"));
  QuickOptions o;
  o.repo = dir.Sub("My_Shop.git");
  o.poll_interval = "5s";
  o.state_dir = dir.Sub("state");
  auto c = QuickConfig(o);
  ASSERT_TRUE(c.has_value()) << c.error().message;
  ASSERT_EQ(c->repositories.size(), 1u);
  EXPECT_EQ(c->repositories[0].name, "my-shop");
  EXPECT_EQ(c->repositories[0].url, "file://" + dir.Sub("My_Shop.git"));
  EXPECT_EQ(c->repositories[0].poll_interval, Millis(5000));
  EXPECT_EQ(c->repositories[0].branch, "main");
  EXPECT_EQ(c->state_dir, dir.Sub("state"));
  EXPECT_TRUE(c->notes.empty());
}

TEST(QuickModeTest, DefaultsAndUrls) {
  QuickOptions o;
  o.repo = "https://git.example.com/acme/shop.git";
  o.branch = "dev";
  auto c = QuickConfig(o);
  ASSERT_TRUE(c.has_value()) << c.error().message;
  EXPECT_EQ(c->repositories[0].url, o.repo);
  EXPECT_EQ(c->repositories[0].name, "shop");
  EXPECT_EQ(c->repositories[0].branch, "dev");
  EXPECT_EQ(c->repositories[0].poll_interval, Millis(60'000));
  EXPECT_EQ(c->state_dir, (std::filesystem::current_path() / ".gitopsd-state").string());
  ASSERT_FALSE(c->notes.empty()) << "the default state folder is announced";
  EXPECT_NE(c->notes[0].find(".gitopsd-state"), std::string::npos);
}

TEST(QuickModeTest, Mistakes) {
  QuickOptions o;
  o.repo = "/definitely/not/here";
  EXPECT_FALSE(QuickConfig(o).has_value());
  o.repo = "git@github.com:acme/shop.git";
  o.poll_interval = "soon";
  EXPECT_FALSE(QuickConfig(o).has_value());
  o.poll_interval = "";
  o.listen = "localhost";
  EXPECT_FALSE(QuickConfig(o).has_value());
}

TEST(NamingTest, UrlsGiveSlugs) {
  EXPECT_EQ(RepositoryNameFromUrl("https://h/acme/Shop.git"), "shop");
  EXPECT_EQ(RepositoryNameFromUrl("git@github.com:acme/my_app.git"), "my-app");
  EXPECT_EQ(RepositoryNameFromUrl("file:///tmp/x/repo.git/"), "repo");
  EXPECT_EQ(RepositoryNameFromUrl("file:///tmp/x/--.git"), "repo");
  EXPECT_TRUE(LooksLikeUrl("ssh://git@h/x"));
  EXPECT_TRUE(LooksLikeUrl("git@github.com:acme/x.git"));
  EXPECT_FALSE(LooksLikeUrl("./x"));
  EXPECT_FALSE(LooksLikeUrl("/srv/git/x.git"));
}

TEST(ListenTest, HostAndPort) {
  auto a = ParseListen("127.0.0.1:7780");
  ASSERT_TRUE(a);
  EXPECT_EQ(a->host, "127.0.0.1");
  EXPECT_EQ(a->port, 7780);
  auto b = ParseListen("[::1]:80");
  ASSERT_TRUE(b);
  EXPECT_EQ(b->host, "::1");
  EXPECT_FALSE(ParseListen("127.0.0.1"));
  EXPECT_FALSE(ParseListen("127.0.0.1:99999"));
  EXPECT_FALSE(ParseListen("::1:80"));
}

}  // namespace
}  // namespace gitopsd::daemon
