// Generic webhook triggers end to end: tokens created, listed, rotated and
// removed through the API with a write token; GET or POST on
// /hooks/release-flows/{token} starts a run with the query's trigger values,
// labels and arguments; a paused flow answers 202 and runs nothing; a sha
// that is not on the branch as fetched is refused.
#include <gtest/gtest.h>

#include "tests/daemon/runs_fixture.h"

namespace gitopsd::test {
namespace {

// A flow with a trigger on the daemon's own repository ("shop") and one
// approval that shows the trigger's sha, so runs stay open to be read.
std::string WatchedFlowJson(const std::string& name, bool paused = false) {
  return R"({"apiVersion": "v1.2", "name": ")" + name + R"(", "paused": )" + (paused ? "true" : "false") + R"(,
  "arguments": {"WHO": "nobody"},
  "triggers": [{"ref": "app", "repository": "shop", "branchRestrictions": ["main"]}],
  "spec": {"kind": "Workflow", "spec": {"type": "sequential", "steps": [
    {"kind": "Approval", "ref": "gate", "spec": {"amount": 1, "message": "ship ${refs.app.sha} for ${args.WHO}"}}]}}})";
}

class HooksTest : public RunsFixture {
 protected:
  void SetUp() override {
    RunsFixture::SetUp();
    if (HasFatalFailure()) return;
    ASSERT_TRUE(repo_.WriteFile(".gitops/release-flows/watched.json", WatchedFlowJson("watched")));
    ASSERT_TRUE(repo_.WriteFile(".gitops/release-flows/frozen.json", WatchedFlowJson("frozen", true)));
    ASSERT_FALSE(repo_.Commit("watched flows").empty());
    ASSERT_TRUE(repo_.Push());
    ASSERT_TRUE(Start());
  }

  // A new token for the flow; "" when refused.
  std::string NewToken(const std::string& flow) {
    auto reply = daemon_.Post("/api/v1/webhooks/release-flows/" + flow, Writer());
    EXPECT_EQ(reply.status, 201) << reply.body;
    auto body = reply.Json();
    if (!body) return "";
    EXPECT_EQ(StringField(*body, "path"), "/hooks/release-flows/" + StringField(*body, "token"));
    return StringField(*body, "token");
  }

  int RunCount(const std::string& flow) {
    auto body = daemon_.Get("/api/v1/runs?flow=" + flow).Json();
    return body && body->Find("runs") ? static_cast<int>(body->Find("runs")->items().size()) : -1;
  }
};

TEST_F(HooksTest, AWebhookStartsARunWithItsTriggerValuesLabelsAndArguments) {
  const std::string token = NewToken("watched");
  ASSERT_EQ(token.size(), 64u);
  const std::string head = RemoteHead();

  auto hooked = daemon_.Get("/hooks/release-flows/" + token +
                            "?name=hotfix-42&description=from%20CI&WHO=ci&app%2Ebranch=main&app.sha=" + head);
  ASSERT_EQ(hooked.status, 201) << hooked.body;
  auto run = hooked.Json();
  ASSERT_TRUE(run);
  EXPECT_EQ(StringField(*run, "name"), "hotfix-42");
  EXPECT_EQ(StringField(*run, "description"), "from CI");
  EXPECT_EQ(StringField(*run->Find("args"), "WHO"), "ci");
  EXPECT_EQ(StringField(*run->Find("refs")->Find("app"), "sha"), head);
  EXPECT_EQ(StringField(*run->Find("refs")->Find("app"), "branch"), "main");
  const int64_t id = static_cast<int64_t>(NumberField(*run, "id"));
  ASSERT_TRUE(WaitForStatus(id, "approval_wait"));

  // POST works too; without values the trigger's branch head is used.
  auto posted = daemon_.Post("/hooks/release-flows/" + token, {}, "");
  ASSERT_EQ(posted.status, 201) << posted.body;
  auto second = posted.Json();
  ASSERT_TRUE(second);
  EXPECT_EQ(StringField(*second->Find("refs")->Find("app"), "sha"), head);
  EXPECT_EQ(StringField(*second->Find("args"), "WHO"), "nobody");
  EXPECT_EQ(RunCount("watched"), 2);
}

TEST_F(HooksTest, ACommitThatIsNotOnTheBranchIsRefused) {
  const std::string token = NewToken("watched");
  auto forged = daemon_.Get("/hooks/release-flows/" + token + "?app.sha=" + std::string(40, 'a'));
  EXPECT_EQ(forged.status, 422) << forged.body;
  EXPECT_TRUE(Contains(forged.body, "app.sha")) << forged.body;
  EXPECT_EQ(RunCount("watched"), 0);
}

TEST_F(HooksTest, TokensAreSecretsOfTheDaemonRotatedAndRemovedWithAWriteToken) {
  auto refused = daemon_.Post("/api/v1/webhooks/release-flows/watched", Reader());
  EXPECT_EQ(refused.status, 403) << refused.body;
  EXPECT_EQ(daemon_.Post("/api/v1/webhooks/release-flows/nope", Writer()).status, 404);
  EXPECT_EQ(daemon_.Post("/api/v1/webhooks/templates/greeter", Writer()).status, 404);

  const std::string first = NewToken("watched");
  const std::string second = NewToken("watched");
  EXPECT_NE(first, second);
  EXPECT_EQ(daemon_.Get("/hooks/release-flows/" + first).status, 404) << "the rotated token stopped working";
  EXPECT_EQ(daemon_.Get("/hooks/release-flows/" + std::string(64, '0')).status, 404);

  auto listed = daemon_.Get("/api/v1/webhooks");
  ASSERT_EQ(listed.status, 200);
  EXPECT_TRUE(Contains(listed.body, "\"name\":\"watched\"")) << listed.body;
  EXPECT_FALSE(Contains(listed.body, second)) << "the list never shows a token";
  EXPECT_FALSE(Contains(daemon_.Output(), second)) << "nor do the logs";

  ASSERT_EQ(daemon_.Delete("/api/v1/webhooks/release-flows/watched", Writer()).status, 204);
  EXPECT_EQ(daemon_.Get("/hooks/release-flows/" + second).status, 404);
  EXPECT_EQ(RunCount("watched"), 0);
}

TEST_F(HooksTest, APausedFlowAnswers202AndRunsNothing) {
  const std::string token = NewToken("frozen");
  auto paused = daemon_.Get("/hooks/release-flows/" + token);
  EXPECT_EQ(paused.status, 202) << paused.body;
  EXPECT_TRUE(Contains(paused.body, "paused")) << paused.body;
  EXPECT_EQ(RunCount("frozen"), 0);
}

}  // namespace
}  // namespace gitopsd::test
