// Git triggers end to end on a real daemon over a real bare repository: a
// push to a watched branch starts its flow once (a look, a sync, a webhook
// or a restart never starts it twice), skip flags and path rules hold it
// back, a burst under queue keeps only the newest head waiting, and forge
// webhooks are believed only with a valid signature and only once.
#include <gtest/gtest.h>

#include "daemon/triggers/forge.h"
#include "tests/daemon/runs_fixture.h"

namespace gitopsd::test {
namespace {

using std::chrono::seconds;

// Flows on the daemon's own repository "shop". "deploy" fires on main and
// feature/* (not for docs-only changes); "gated" holds each run at an
// approval, queued, newest head wins.
std::string DeployFlowJson() {
  return R"({"apiVersion": "v1.2", "name": "deploy",
  "triggers": [{"ref": "app", "repository": "shop", "branchRestrictions": ["main", "feature/*"],
                "pathIgnoreRules": ["docs/**"], "ciIgnoreFlagsEnabled": true}],
  "spec": {"kind": "Workflow", "spec": {"type": "sequential", "steps": [
    {"kind": "Workflow", "ref": "noop", "spec": {"type": "parallel", "steps": []}}]}}})";
}

std::string GatedFlowJson(const std::string& burst) {
  return R"({"apiVersion": "v1.2", "name": "gated",
  "options": {"concurrencyPolicy": "queue", "triggerBurst": ")" + burst + R"("},
  "triggers": [{"ref": "app", "repository": "shop", "branchRestrictions": ["release"]}],
  "spec": {"kind": "Workflow", "spec": {"type": "sequential", "steps": [
    {"kind": "Approval", "ref": "gate", "spec": {"amount": 1, "message": "ship ${refs.app.sha}"}}]}}})";
}

constexpr const char* kSecret = "hook-secret-0123";

class TriggersTest : public WriteFixture {
 protected:
  void SetUp() override {
    WriteFixture::SetUp();
    if (HasFatalFailure()) return;
    ASSERT_TRUE(repo_.WriteFile(".gitops/release-flows/deploy.json", DeployFlowJson()));
    ASSERT_TRUE(repo_.WriteFile(".gitops/release-flows/gated.json", GatedFlowJson("newest")));
    ASSERT_FALSE(repo_.Commit("flows").empty());
    ASSERT_TRUE(repo_.Push());
    ASSERT_TRUE(WriteTextFile(dir_.Sub("hook.secret"), std::string(kSecret) + "\n"));
    ASSERT_TRUE(StartDaemon());
  }

  ::testing::AssertionResult StartDaemon() {
    const std::string config =
        "{\"stateDir\": \"@STATE@\", \"listen\": \"127.0.0.1:@PORT@\", \"apiTokensFile\": \"tokens.json\", "
        "\"repositories\": [{\"name\": \"shop\", \"url\": \"" + repo_.file_url() +
        "\", \"pollInterval\": \"1h\", \"sync\": {\"writeBack\": false}, \"webhook\": {\"type\": \"github\", "
        "\"secretFile\": \"hook.secret\", \"forgeUrl\": \"https://github.com/acme/shop\"}}], "
        "\"log\": {\"level\": \"debug\"}}";
    daemon_.SetEnv("GITOPSD_RUNNER_POLL", "100ms");
    auto started = daemon_.StartWithConfig(config);
    if (!started) return started;
    if (!daemon_.WaitReady()) return ::testing::AssertionFailure() << daemon_.Output();
    return ::testing::AssertionSuccess();
  }

  // Commits `files` on the current branch and pushes it.
  std::string Push(const std::map<std::string, std::string>& files, const std::string& message,
                   const std::string& branch = "main") {
    for (const auto& [path, content] : files) EXPECT_TRUE(repo_.WriteFile(path, content));
    std::string sha = repo_.Commit(message);
    EXPECT_FALSE(sha.empty());
    EXPECT_TRUE(repo_.Push(branch));
    return sha;
  }

  void Look() { ASSERT_EQ(daemon_.Post("/api/v1/repositories/shop/sync", Writer()).status, 200); }

  std::vector<json::Value> Runs(const std::string& flow) {
    std::vector<json::Value> out;
    auto body = daemon_.Get("/api/v1/runs?flow=" + flow).Json();
    if (body && body->Find("runs")) {
      for (const json::Value& r : body->Find("runs")->items()) out.push_back(r);
    }
    return out;  // newest first
  }

  static std::string ShaOf(const json::Value& run) {
    const json::Value* refs = run.Find("refs");
    const json::Value* app = refs ? refs->Find("app") : nullptr;
    return app ? StringField(*app, "sha") : "";
  }

  // Waits until `flow` has `n` runs; false on timeout.
  bool WaitForRuns(const std::string& flow, size_t n) {
    return WaitUntil([&] { return Runs(flow).size() == n; }, seconds(20));
  }

  // Nothing more starts for a while.
  void ExpectStillRuns(const std::string& flow, size_t n) {
    std::this_thread::sleep_for(std::chrono::milliseconds(700));
    EXPECT_EQ(Runs(flow).size(), n) << daemon_.Output();
  }

  HttpReply GitHubPush(const std::string& branch, const std::string& sha, const std::string& delivery,
                       const std::string& secret = kSecret) {
    const std::string body = R"({"ref": "refs/heads/)" + branch + R"(", "before": ")" + std::string(40, '0') +
                             R"(", "after": ")" + sha + R"(", "created": false, "deleted": false, "forced": false,
      "repository": {"id": 1, "name": "shop", "full_name": "acme/shop", "html_url": "https://github.com/acme/shop",
                     "clone_url": "https://github.com/acme/shop.git", "ssh_url": "git@github.com:acme/shop.git",
                     "default_branch": "main"},
      "pusher": {"name": "ada", "email": "ada@example.com"}, "commits": [], "head_commit": null})";
    return daemon_.Post("/hooks/github",
                        {{"Content-Type", "application/json"},
                         {"X-GitHub-Event", "push"},
                         {"X-GitHub-Delivery", delivery},
                         {"X-Hub-Signature-256", "sha256=" + triggers::HmacSha256Hex(secret, body)}},
                        body);
  }
};

TEST_F(TriggersTest, APushToAWatchedBranchStartsItsFlowOnceWithWhatGitSays) {
  Look();
  ExpectStillRuns("deploy", 0);  // the heads present at the first look are a baseline
  const std::string sha = Push({{"src/app.txt", "v2\n"}}, "version 2");
  Look();
  ASSERT_TRUE(WaitForRuns("deploy", 1)) << daemon_.Output();
  EXPECT_EQ(ShaOf(Runs("deploy")[0]), sha);
  EXPECT_EQ(StringField(*Runs("deploy")[0].Find("refs")->Find("app"), "branch"), "main");
  Look();
  Look();
  ExpectStillRuns("deploy", 1);

  // A new branch matching feature/* fires; one matching nothing does not.
  ASSERT_TRUE(repo_.CheckoutNewBranch("feature/x"));
  const std::string feature = Push({{"src/x.txt", "x\n"}}, "feature x", "feature/x");
  ASSERT_TRUE(repo_.CheckoutNewBranch("experiment"));
  Push({{"src/y.txt", "y\n"}}, "experiment", "experiment");
  Look();
  ASSERT_TRUE(WaitForRuns("deploy", 2)) << daemon_.Output();
  EXPECT_EQ(ShaOf(Runs("deploy")[0]), feature);
  ExpectStillRuns("deploy", 2);
}

TEST_F(TriggersTest, SkipFlagsAndPathRulesHoldAPushBack) {
  Look();
  Push({{"src/a.txt", "1\n"}}, "wip [skip ci]");
  Look();
  Push({{"docs/guide.md", "words\n"}}, "docs only");
  Look();
  ExpectStillRuns("deploy", 0);
  EXPECT_TRUE(Contains(daemon_.Output(), "[skip ci]")) << "the log says why";
  EXPECT_TRUE(Contains(daemon_.Output(), "only ignored paths changed: docs/guide.md")) << daemon_.Output();

  // One flagged commit among several suppresses the whole push.
  repo_.WriteFile("src/b.txt", "2\n");
  repo_.Commit("fine");
  Push({{"src/c.txt", "3\n"}}, "also [skip ci]");
  Look();
  ExpectStillRuns("deploy", 0);

  const std::string sha = Push({{"src/d.txt", "4\n"}}, "a real change");
  Look();
  ASSERT_TRUE(WaitForRuns("deploy", 1)) << daemon_.Output();
  EXPECT_EQ(ShaOf(Runs("deploy")[0]), sha);
}

TEST_F(TriggersTest, ABurstUnderQueueKeepsOnlyTheNewestHeadWaiting) {
  Look();  // baseline: main only
  // A branch first pushed after the baseline fires: run 1 holds at its approval.
  ASSERT_TRUE(repo_.CheckoutNewBranch("release"));
  const std::string first = Push({{"src/r.txt", "0\n"}}, "release branch", "release");
  Look();
  ASSERT_TRUE(WaitForRuns("gated", 1));
  std::vector<std::string> later;
  for (int i = 1; i <= 3; ++i) {
    later.push_back(Push({{"src/r.txt", std::to_string(i) + "\n"}}, "r" + std::to_string(i), "release"));
    Look();
    ASSERT_TRUE(WaitForRuns("gated", static_cast<size_t>(i + 1))) << daemon_.Output();
  }
  // r0 waits for approval; r1 and r2 were cancelled while queued; r3 waits its turn.
  auto runs = Runs("gated");
  ASSERT_EQ(runs.size(), 4u);
  EXPECT_EQ(ShaOf(runs[3]), first);
  EXPECT_EQ(StringField(runs[3], "status"), "approval_wait");
  EXPECT_TRUE(WaitUntil([&] { return StringField(Runs("gated")[2], "status") == "aborted"; }, seconds(5)));
  EXPECT_EQ(StringField(Runs("gated")[1], "status"), "aborted");
  EXPECT_EQ(ShaOf(runs[0]), later.back());
  EXPECT_EQ(StringField(runs[0], "status"), "queued");
  // Approved, r0 ends and the newest head runs.
  const int64_t id0 = static_cast<int64_t>(NumberField(runs[3], "id"));
  ASSERT_EQ(daemon_.Post("/api/v1/runs/" + std::to_string(id0) + "/approve", Writer()).status, 200);
  EXPECT_TRUE(WaitUntil([&] { return StringField(Runs("gated")[0], "status") == "approval_wait"; }, seconds(10)));
}

TEST_F(TriggersTest, APushWhileTheDaemonIsDownStartsOnceAfterTheRestart) {
  Look();
  ExpectStillRuns("deploy", 0);
  daemon_.Stop();
  const std::string sha = Push({{"src/app.txt", "while down\n"}}, "pushed while down");
  ASSERT_TRUE(StartDaemon());
  ASSERT_TRUE(WaitForRuns("deploy", 1)) << daemon_.Output();
  EXPECT_EQ(ShaOf(Runs("deploy")[0]), sha);
  daemon_.Stop();
  ASSERT_TRUE(StartDaemon());
  Look();
  ExpectStillRuns("deploy", 1);
}

TEST_F(TriggersTest, AForgeWebhookIsBelievedOnlyWithItsSignatureAndOnlyOnce) {
  Look();
  const std::string sha = Push({{"src/app.txt", "hooked\n"}}, "via webhook");
  auto forged = GitHubPush("main", sha, "d-1", "not-the-secret");
  EXPECT_EQ(forged.status, 401) << forged.body;
  ExpectStillRuns("deploy", 0);

  auto hooked = GitHubPush("main", sha, "d-2");
  EXPECT_EQ(hooked.status, 202) << hooked.body;
  ASSERT_TRUE(WaitForRuns("deploy", 1)) << daemon_.Output();
  EXPECT_EQ(ShaOf(Runs("deploy")[0]), sha);

  auto replayed = GitHubPush("main", sha, "d-2");
  EXPECT_EQ(replayed.status, 200) << replayed.body;
  EXPECT_TRUE(Contains(replayed.body, "handled before")) << replayed.body;

  // A payload naming a commit Git does not have runs nothing: Git decides.
  auto lying = GitHubPush("main", std::string(40, 'b'), "d-3");
  EXPECT_EQ(lying.status, 202) << lying.body;
  ExpectStillRuns("deploy", 1);

  const std::string metrics = daemon_.Get("/metrics").body;
  for (const char* line : {"gitopsd_webhook_deliveries_total{source=\"github\",result=\"refused\"} 1",
                           "gitopsd_webhook_deliveries_total{source=\"github\",result=\"accepted\"} 2",
                           "gitopsd_webhook_deliveries_total{source=\"github\",result=\"replayed\"} 1",
                           "gitopsd_trigger_events_total{result=\"fired\"} 1"}) {
    EXPECT_TRUE(Contains(metrics, line)) << line << "\n" << metrics;
  }
}

}  // namespace
}  // namespace gitopsd::test
