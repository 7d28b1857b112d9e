// A release against PostgreSQL, end to end: a real gitopsd configured with
// runtime.postgres (a throwaway cluster), a repository whose Template
// declares a `postgresql` addon, and a release flow that backs the database
// up and then runs a migration job (psql, argv, with the addon's PG*
// variables from a secret group). Then a rollback with restoreBackup of a
// later release brings the rows back to what they were before it.
#include <gtest/gtest.h>
#include <signal.h>

#include <string>

#include "tests/daemon/run_waits.h"
#include "tests/daemon/write_fixture.h"
#include "tests/support/postgres.h"

namespace gitopsd::test {
namespace {

constexpr const char* kAddon = "shop-db";

// Every release adds one row: the row count tells which releases the data
// has seen.
std::string TemplateJson(const std::string& psql) {
  return R"json({
  "apiVersion": "v1.2",
  "name": "shop",
  "description": "A PostgreSQL database, a build service and a migration job",
  "options": {"autorun": true, "concurrencyPolicy": "queue"},
  "spec": {"kind": "Workflow", "spec": {"type": "sequential", "steps": [
    {"kind": "Workflow", "ref": "base", "spec": {"type": "parallel", "steps": [
      {"kind": "Addon", "ref": "db", "spec": {"name": "shop-db", "type": "postgresql"}},
      {"kind": "BuildService", "ref": "builder", "spec": {
        "name": "shop-builder",
        "vcsData": {"repository": "shop", "projectBranch": "main"},
        "buildSettings": {"command": ["true"]}}}
    ]}},
    {"kind": "SecretGroup", "ref": "connection", "spec": {
      "name": "shop-db-connection", "secretType": "runtime",
      "addonDependencies": [{"addonId": "${refs.db.name}"}]}},
    {"kind": "Build", "ref": "first-build",
     "spec": {"id": "${refs.builder.name}", "type": "service", "branch": "main"},
     "condition": "success"},
    {"kind": "ManualJob", "ref": "migrate", "spec": {
      "name": "shop-migrate",
      "deployment": {
        "internal": {"id": "${refs.builder.name}", "branch": "main", "buildId": "${refs.first-build.id}"},
        "command": [")json" + psql + R"json(", "-X", "-w", "-v", "ON_ERROR_STOP=1", "-c",
          "CREATE TABLE IF NOT EXISTS items (id serial PRIMARY KEY, note text NOT NULL); INSERT INTO items (note) VALUES ('migrated')"]},
      "backoffLimit": 0, "activeDeadlineSeconds": 60}}
  ]}}
}
)json";
}

constexpr const char* kProductionJson = R"({
  "apiVersion": "v1.2",
  "name": "production",
  "description": "Back up the database, then migrate it with the new build",
  "options": {"concurrencyPolicy": "queue"},
  "triggers": [{"ref": "app", "repository": "shop", "branchRestrictions": ["main"], "ciIgnoreFlagsEnabled": true}],
  "spec": {"kind": "Workflow", "spec": {"type": "sequential", "steps": [
    {"kind": "Build", "ref": "build",
     "spec": {"id": "shop-builder", "branch": "${refs.app.branch}", "sha": "${refs.app.sha}"},
     "condition": "success"},
    {"kind": "AddonBackup", "ref": "pre-release-backup",
     "spec": {"addonId": "shop-db", "backupType": "snapshot"}, "condition": "success"},
    {"kind": "Release", "ref": "ship-migrate", "spec": {"type": "build",
      "origin": {"id": "shop-builder", "branch": "${refs.app.branch}", "build": "${refs.build.id}"},
      "target": {"id": "shop-migrate", "type": "job"}}},
    {"kind": "JobRun", "ref": "migrate", "spec": {"jobId": "shop-migrate"}, "condition": "success"}
  ]}}
}
)";

class ReleasePgTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (std::string why = PostgresServer::Unavailable(); !why.empty()) GTEST_SKIP() << why;
    ASSERT_TRUE(pg_.Start()) << pg_.Log();
    ASSERT_TRUE(repo_.WriteFile(".gitops/templates/shop.json", TemplateJson(pg_.bin_dir() + "/psql")));
    ASSERT_TRUE(repo_.WriteFile(".gitops/release-flows/production.json", kProductionJson));
    ASSERT_TRUE(repo_.WriteFile("VERSION", "1\n"));
    ASSERT_FALSE(repo_.Commit("the shop on PostgreSQL").empty());
    ASSERT_TRUE(repo_.Push());
    ASSERT_TRUE(WriteTextFile(dir_.Sub("tokens.json"),
                              "[{\"name\": \"ci\", \"role\": \"write\", \"sha256\": \"" +
                                  daemon::ToHex(daemon::HashToken(kWriteToken)) + "\"}]\n"));
    ASSERT_TRUE(WriteTextFile(dir_.Sub("pg-password"), pg_.password() + "\n"));
    daemon_.SetEnv("GITOPSD_RUNNER_POLL", "100ms");
    const std::string config =
        "{\"stateDir\": \"@STATE@\", \"listen\": \"127.0.0.1:@PORT@\", \"apiTokensFile\": "
        "\"tokens.json\", \"repositories\": [{\"name\": \"shop\", \"url\": \"" + repo_.file_url() +
        "\", \"pollInterval\": \"1h\", \"sync\": {\"writeBack\": false}}], \"runtime\": "
        "{\"portRange\": [22000, 22999], \"postgres\": {\"host\": \"" + pg_.host() +
        "\", \"port\": " + std::to_string(pg_.port()) + ", \"user\": \"" + pg_.user() +
        "\", \"passwordFile\": \"pg-password\", \"adminDatabase\": \"" + pg_.admin_database() +
        "\", \"binDir\": \"" + pg_.bin_dir() + "\"}}, \"log\": {\"level\": \"debug\"}}";
    ASSERT_TRUE(daemon_.StartWithConfig(config));
    ASSERT_TRUE(daemon_.WaitReady()) << daemon_.Output();
    started_ = true;
  }

  // Whatever service the runtime started outlives the daemon: end it by pid.
  void TearDown() override {
    if (!started_) return;
    daemon_.Stop();  // first: its supervisor would restart a service killed under it
    for (pid_t pid : ProcessesIn(daemon_.state_dir())) ::kill(pid, SIGKILL);
  }

  json::Value Concluded(int64_t id) { return test::Concluded(daemon_, id, std::chrono::seconds(30)); }
  std::string Explain(const json::Value& run) { return test::Explain(daemon_, run) + "\n" + daemon_.Output(); }

  int64_t Release(const std::string& version) {
    EXPECT_TRUE(repo_.WriteFile("VERSION", version + "\n"));
    // [skip ci]: the flow's Git trigger stays out of it; the test starts runs itself.
    EXPECT_FALSE(repo_.Commit("version " + version + " [skip ci]").empty());
    EXPECT_TRUE(repo_.Push());
    EXPECT_EQ(daemon_.Post("/api/v1/repositories/shop/sync", Writer()).status, 200);
    auto started = daemon_.Post("/api/v1/release-flows/production/runs", Writer(), "{}");
    EXPECT_EQ(started.status, 201) << started.body;
    auto body = started.Json();
    return body ? static_cast<int64_t>(NumberField(*body, "id")) : -1;
  }

  // The addon's database name, as the daemon reports it.
  std::string Database() {
    auto body = daemon_.Get("/api/v1/addons").Json();
    if (!body || !body->Find("addons")) return "";
    for (const auto& a : body->Find("addons")->items()) {
      if (StringField(a, "name") == kAddon) return StringField(a, "location");
    }
    return "";
  }

  // The notes of the items table in id order, or the psql error.
  std::string Rows() {
    CommandResult r = pg_.Psql(Database(), "SELECT string_agg(note, ',' ORDER BY id) FROM items");
    return r.ok() ? r.output : "error: " + r.output;
  }

  json::Value BackupById(const std::string& id) {
    auto body = daemon_.Get("/api/v1/backups").Json();
    if (body && body->Find("backups")) {
      for (const auto& b : body->Find("backups")->items()) {
        if (StringField(b, "id") == id) return b;
      }
    }
    return json::Value();
  }

  PostgresServer pg_;  // declared first: it goes last, after the daemon
  TempDir dir_{"release-pg"};
  FixtureRepo repo_{dir_.path(), "shop"};
  DaemonUnderTest daemon_{dir_.path()};
  bool started_ = false;
};

TEST_F(ReleasePgTest, BackupMigrateThenRollBackRestoringTheBackup) {
  // The first sync autoran the Template: the database exists, empty.
  auto runs = daemon_.Get("/api/v1/runs?flow=shop").Json();
  ASSERT_TRUE(runs && runs->Find("runs") && runs->Find("runs")->items().size() == 1) << daemon_.Output();
  const json::Value setup =
      Concluded(static_cast<int64_t>(NumberField(runs->Find("runs")->items()[0], "id")));
  ASSERT_EQ(StringField(setup, "status"), "success") << Explain(setup);
  const std::string database = Database();
  ASSERT_FALSE(database.empty()) << daemon_.Get("/api/v1/addons").body;
  EXPECT_EQ(pg_.Psql(database, "SELECT 1").output, "1\n") << "the addon's database exists";

  // A release: the backup, then the migration creates the table.
  const json::Value first = Concluded(Release("2"));
  ASSERT_EQ(StringField(first, "status"), "success") << Explain(first);
  EXPECT_EQ(Rows(), "migrated\n");
  const std::string first_backup = DataField(NodeByRef(first, "pre-release-backup"), "id");
  ASSERT_FALSE(first_backup.empty()) << Explain(first);
  const json::Value listed = BackupById(first_backup);
  EXPECT_EQ(StringField(listed, "addon"), kAddon) << daemon_.Get("/api/v1/backups").body;
  EXPECT_EQ(StringField(listed, "type"), "postgresql");
  EXPECT_EQ(StringField(listed, "status"), "success");
  EXPECT_GT(NumberField(listed, "size"), 0) << "a pg_dump archive is never empty";

  // Someone adds a row between releases; the next release backs it up
  // before its migration adds another.
  ASSERT_TRUE(pg_.Psql(database, "INSERT INTO items (note) VALUES ('between')").ok());
  const std::string before_second = Rows();
  ASSERT_EQ(before_second, "migrated,between\n");
  const int64_t second_id = Release("3");
  const json::Value second = Concluded(second_id);
  ASSERT_EQ(StringField(second, "status"), "success") << Explain(second);
  EXPECT_EQ(Rows(), "migrated,between,migrated\n");
  const std::string second_backup = DataField(NodeByRef(second, "pre-release-backup"), "id");
  ASSERT_FALSE(second_backup.empty()) << Explain(second);
  EXPECT_NE(second_backup, first_backup);
  EXPECT_GT(NumberField(BackupById(second_backup), "size"), 0);

  // Rolling the second release back with its backup: the rows as before it.
  auto rollback = daemon_.Post("/api/v1/runs/" + std::to_string(second_id) + "/rollback", Writer(),
                               "{\"restoreBackup\": true}");
  ASSERT_EQ(rollback.status, 201) << rollback.body;
  const json::Value back = Concluded(static_cast<int64_t>(NumberField(*rollback.Json(), "id")));
  ASSERT_EQ(StringField(back, "status"), "success") << Explain(back);
  EXPECT_EQ(Rows(), before_second);
  const json::Value restore = Node(back, "0.0");
  EXPECT_EQ(StringField(restore, "kind"), "Action") << "the restore comes first: " << Explain(back);
  EXPECT_EQ(DataField(restore, "backupId"), second_backup) << Explain(back);

  // The password went to psql, pg_dump and pg_restore, never to the log.
  EXPECT_EQ(daemon_.Output().find(pg_.password()), std::string::npos);
  EXPECT_EQ(daemon_.Get("/api/v1/addons").body.find(pg_.password()), std::string::npos);
  for (const json::Value* run : {&first, &second, &back}) {
    const auto run_id = static_cast<int64_t>(NumberField(*run, "id"));
    const std::string logs = daemon_.Get("/api/v1/runs/" + std::to_string(run_id) + "/logs").body;
    EXPECT_FALSE(logs.empty());
    EXPECT_EQ(logs.find(pg_.password()), std::string::npos) << "run " << run_id;
  }
}

}  // namespace
}  // namespace gitopsd::test
