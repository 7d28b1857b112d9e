// The rollback body built from a run's recorded nodes (daemon/flow_runs.h).
#include "daemon/flow_runs.h"

#include <gtest/gtest.h>

namespace gitopsd::daemon {
namespace {

using runner::NodeRecord;
using runner::NodeStatus;

json::Value Parsed(const std::string& text) {
  auto v = json::Parse(text);
  EXPECT_TRUE(v) << text;
  return v ? *v : json::Value();
}

NodeRecord Recorded(std::string path, std::string kind, NodeStatus status, const std::string& data,
                    const std::string& spec = "{}") {
  NodeRecord n;
  n.path = std::move(path);
  n.kind = std::move(kind);
  n.status = status;
  n.data = Parsed(data);
  n.spec = Parsed(spec);
  return n;
}

// A production run: a backup, a release to the job, a release to the web
// service (waits until running), and a release that failed.
runner::RunRecord ProductionRun() {
  runner::RunRecord run;
  run.id = 7;
  run.flow_kind = "ReleaseFlow";
  run.flow_name = "production";
  run.body = Parsed(R"({"name": "production", "options": {"concurrencyPolicy": "queue"}, "spec": {}})");
  run.nodes = {
      Recorded("0", "Workflow", NodeStatus::kSuccess, "null"),
      Recorded("0.0", "AddonBackup", NodeStatus::kSuccess,
               R"({"id": "20250101T000000.000Z-abc", "addonId": "shop-db", "size": 10, "path": "/x"})"),
      Recorded("0.1", "Release", NodeStatus::kSuccess,
               R"({"target": "shop-migrate", "targetType": "job", "build": "shop-builder@c0ffee", "commit": "c0ffee", "previousBuild": ""})"),
      Recorded("0.2", "Release", NodeStatus::kSuccess,
               R"({"target": "shop-web", "targetType": "service", "build": "shop-builder@c0ffee", "commit": "c0ffee", "previousBuild": "shop-builder@beef"})",
               R"({"kind": "Release", "condition": "running", "timeoutDuration": 900, "spec": {}})"),
      Recorded("0.3", "Release", NodeStatus::kFailure,
               R"({"target": "other", "targetType": "service", "build": "shop-builder@c0ffee"})"),
  };
  return run;
}

const json::Value& Steps(const json::Value& body) {
  return *body.Find("spec")->Find("spec")->Find("steps");
}

TEST(RollbackBodyTest, RedeploysEverySuccessfulReleaseToItsTarget) {
  auto body = RollbackBody(ProductionRun(), /*restore_backup=*/false);
  ASSERT_TRUE(body) << body.error().message;
  EXPECT_EQ(body->Find("name")->as_string(), "production");
  EXPECT_EQ(body->Find("options")->Find("concurrencyPolicy")->as_string(), "queue");
  const auto& steps = Steps(*body).items();
  ASSERT_EQ(steps.size(), 2u) << json::SerializeCompact(*body);
  EXPECT_EQ(steps[0], Parsed(R"({"kind": "Release", "spec": {"type": "build",
      "origin": {"id": "shop-builder", "build": "shop-builder@c0ffee"},
      "target": {"id": "shop-migrate", "type": "job"}}})"));
  EXPECT_EQ(steps[1], Parsed(R"({"kind": "Release", "spec": {"type": "build",
      "origin": {"id": "shop-builder", "build": "shop-builder@c0ffee"},
      "target": {"id": "shop-web", "type": "service"}}, "condition": "running", "timeoutDuration": 900})"));
}

TEST(RollbackBodyTest, RestoresTheBackupsFirstWhenAsked) {
  auto body = RollbackBody(ProductionRun(), /*restore_backup=*/true);
  ASSERT_TRUE(body) << body.error().message;
  const auto& steps = Steps(*body).items();
  ASSERT_EQ(steps.size(), 3u);
  EXPECT_EQ(steps[0], Parsed(R"({"kind": "Action", "spec": {"kind": "AddonBackup", "spec": {
      "type": "restore", "data": {"addonId": "shop-db", "backupId": "20250101T000000.000Z-abc"}}}})"));
  EXPECT_EQ(steps[1].Find("kind")->as_string(), "Release");
}

TEST(RollbackBodyTest, ARunThatDeployedNothingIsInvalid) {
  runner::RunRecord run = ProductionRun();
  run.nodes.resize(2);  // the workflow and the backup only
  auto body = RollbackBody(run, true);
  ASSERT_FALSE(body);
  EXPECT_EQ(body.error().code, runner::RunError::Code::kInvalid);
  EXPECT_NE(body.error().message.find("deployed nothing"), std::string::npos);
}

}  // namespace
}  // namespace gitopsd::daemon
