// The run API end to end, with flows that need no runtime: a real gitopsd,
// a real bare repository, runs started, approved, cancelled, listed and
// read over loopback HTTP, autorun across a restart, and gitopsctl's run
// commands.
#include <gtest/gtest.h>

#include <thread>

#include "tests/daemon/runs_fixture.h"

namespace gitopsd::test {
namespace {

class RunsApiTest : public RunsFixture {};

TEST_F(RunsApiTest, AnApprovalRunWaitsUntilApprovedThenSucceeds) {
  ASSERT_TRUE(Start());
  auto started = StartRun("gate");
  ASSERT_EQ(started.status, 201) << started.body;
  const int64_t id = StartedId(started);
  ASSERT_GT(id, 0) << started.body;
  EXPECT_EQ(started.headers["Location"], "/api/v1/runs/" + std::to_string(id));
  auto body = started.Json();
  ASSERT_TRUE(body);
  EXPECT_EQ(StringField(*body->Find("flow"), "kind"), "ReleaseFlow");
  EXPECT_EQ(StringField(*body->Find("flow"), "name"), "gate");
  EXPECT_EQ(StringField(*body->Find("flow"), "revision"), "1");
  EXPECT_EQ(StringField(*body, "kind"), "release");

  ASSERT_TRUE(WaitForStatus(id, "approval_wait")) << GetRun(id).Find("status");
  EXPECT_EQ(StringField(Node(GetRun(id), "0.0"), "status"), "approval_wait");

  auto approved = daemon_.Post("/api/v1/runs/" + std::to_string(id) + "/approve", Writer());
  ASSERT_EQ(approved.status, 200) << approved.body;
  ASSERT_TRUE(WaitForStatus(id, "success")) << json::SerializeCompact(GetRun(id));
  const json::Value run = GetRun(id);
  const json::Value root = Node(run, "0");
  const json::Value gate = Node(run, "0.0");
  EXPECT_EQ(StringField(root, "kind"), "Workflow");
  EXPECT_EQ(StringField(root, "status"), "success");
  EXPECT_EQ(StringField(gate, "kind"), "Approval");
  EXPECT_EQ(StringField(gate, "ref"), "gate");
  EXPECT_EQ(StringField(gate, "status"), "success");
  EXPECT_FALSE(StringField(gate, "startedAt").empty());
  EXPECT_FALSE(StringField(gate, "endedAt").empty());
  EXPECT_EQ(run.Find("concluded")->as_bool(), true);

  // Nothing waits any more.
  auto again = daemon_.Post("/api/v1/runs/" + std::to_string(id) + "/approve", Writer());
  EXPECT_EQ(again.status, 409) << again.body;
}

TEST_F(RunsApiTest, CancelAbortsAWaitingRunAndAConcludedRunCannotBeCancelledOrRolledBack) {
  ASSERT_TRUE(Start());
  const int64_t id = StartedId(StartRun("gate"));
  ASSERT_GT(id, 0);
  ASSERT_TRUE(WaitForStatus(id, "approval_wait"));
  const std::string base = "/api/v1/runs/" + std::to_string(id);
  auto early = daemon_.Post(base + "/rollback", Writer(), "{\"restoreBackup\": false}");
  EXPECT_EQ(early.status, 409) << "a run that has not concluded: " << early.body;

  auto cancelled = daemon_.Post(base + "/cancel", Writer());
  ASSERT_EQ(cancelled.status, 200) << cancelled.body;
  ASSERT_TRUE(WaitForStatus(id, "aborted"));
  EXPECT_EQ(daemon_.Post(base + "/cancel", Writer()).status, 409);
  auto nothing = daemon_.Post(base + "/rollback", Writer(), "{\"restoreBackup\": true}");
  EXPECT_EQ(nothing.status, 422) << "it deployed nothing: " << nothing.body;
  EXPECT_TRUE(Contains(nothing.body, "deployed nothing")) << nothing.body;
  EXPECT_EQ(daemon_.Post(base + "/rollback", Writer(), "{\"restoreBackup\": 1}").status, 400);
}

TEST_F(RunsApiTest, ADryRunFailureIs422NamingTheNodeAndStartsNothing) {
  ASSERT_TRUE(Start());
  auto refused = StartRun("triggered");
  ASSERT_EQ(refused.status, 422) << refused.body;
  EXPECT_EQ(ErrorCodeOf(refused), "invalid_run");
  auto body = refused.Json();
  ASSERT_TRUE(body);
  const json::Value* details = body->Find("error")->Find("details");
  ASSERT_TRUE(details && details->items().size() == 1) << refused.body;
  const std::string line = details->items()[0].as_string();
  EXPECT_TRUE(Contains(line, "spec.spec.steps[0].spec.steps[0]")) << line;
  EXPECT_TRUE(Contains(line, "${refs.app.sha}")) << line;
  EXPECT_TRUE(Runs("triggered").empty()) << "nothing was created";

  // The caller gives the trigger: it runs, and the refs are the run's.
  auto given = StartRun("triggered",
                        R"({"triggers": {"app": {"branch": "main", "sha": "0123abc"}},
                            "name": "by hand", "description": "from a test"})");
  ASSERT_EQ(given.status, 201) << given.body;
  auto run = given.Json();
  EXPECT_EQ(StringField(*run->Find("refs")->Find("app"), "sha"), "0123abc");
  EXPECT_EQ(StringField(*run, "name"), "by hand");
}

TEST_F(RunsApiTest, BadRequestsAndUnknownThings) {
  ASSERT_TRUE(Start());
  EXPECT_EQ(StartRun("nope").status, 404);
  EXPECT_EQ(StartRun("gate", "", "templates").status, 404) << "gate is a release flow";
  EXPECT_EQ(daemon_.Get("/api/v1/runs/999").status, 404);
  EXPECT_EQ(daemon_.Get("/api/v1/runs/abc").status, 404);
  EXPECT_EQ(daemon_.Get("/api/v1/runs/999/logs").status, 404);
  EXPECT_EQ(daemon_.Post("/api/v1/runs/999/cancel", Writer()).status, 404);
  EXPECT_EQ(StartRun("gate", "[1]").status, 400);
  EXPECT_EQ(StartRun("gate", "{\"arguments\": 3}").status, 400);
  EXPECT_EQ(StartRun("gate", "{\"bogus\": 1}").status, 400);
  EXPECT_EQ(StartRun("gate", "{nope").status, 400);
  EXPECT_EQ(daemon_.Get("/api/v1/runs?status=done").status, 400);
  EXPECT_EQ(daemon_.Get("/api/v1/runs?limit=0").status, 400);
  EXPECT_EQ(daemon_.Get("/api/v1/release-flows/gate/runs").status, 405);
  EXPECT_EQ(daemon_.Get("/api/v1/runs/1/cancel").status, 405);
  EXPECT_TRUE(Runs("gate").empty());
}

TEST_F(RunsApiTest, WritesNeedAWriteToken) {
  ASSERT_TRUE(Start());
  const std::string flow = "/api/v1/release-flows/gate/runs";
  EXPECT_EQ(daemon_.Post(flow).status, 401);
  EXPECT_EQ(daemon_.Post(flow, {{"Authorization", Bearer("wrong")}}).status, 401);
  EXPECT_EQ(daemon_.Post(flow, Reader()).status, 403);
  EXPECT_EQ(daemon_.Post("/api/v1/templates/greeter/runs", Reader()).status, 403);
  const int64_t id = StartedId(StartRun("gate"));
  ASSERT_GT(id, 0);
  ASSERT_TRUE(WaitForStatus(id, "approval_wait"));
  const std::string base = "/api/v1/runs/" + std::to_string(id);
  for (const char* action : {"/cancel", "/approve", "/rollback"}) {
    EXPECT_EQ(daemon_.Post(base + action).status, 401) << action;
    EXPECT_EQ(daemon_.Post(base + action, Reader()).status, 403) << action;
  }
  EXPECT_EQ(Status(id), "approval_wait") << "a refused request changed nothing";
  // Reads are open.
  EXPECT_EQ(daemon_.Get(base).status, 200);
  EXPECT_EQ(daemon_.Get(base + "/logs").status, 200);
}

TEST_F(RunsApiTest, ForbidRefusesASecondRunWith409) {
  ASSERT_TRUE(Start());
  const int64_t first = StartedId(StartRun("solo"));
  ASSERT_GT(first, 0);
  auto second = StartRun("solo");
  EXPECT_EQ(second.status, 409) << second.body;
  EXPECT_EQ(ErrorCodeOf(second), "conflict");
}

TEST_F(RunsApiTest, ListsAreNewestFirstAndFilter) {
  ASSERT_TRUE(Start());
  const int64_t a = StartedId(StartRun("gate"));
  const int64_t b = StartedId(StartRun("gate"));
  auto templ = StartRun("greeter", R"({"arguments": {"WHO": "ops"}})", "templates");
  ASSERT_EQ(templ.status, 201) << templ.body;
  const int64_t c = StartedId(templ);
  ASSERT_TRUE(a > 0 && b > a && c > b);
  ASSERT_TRUE(WaitForStatus(c, "success"));
  auto greeter = GetRun(c);
  EXPECT_EQ(StringField(*greeter.Find("args"), "WHO"), "ops");
  EXPECT_EQ(StringField(*greeter.Find("flow"), "kind"), "Template");

  auto gate = Runs("gate");
  ASSERT_EQ(gate.size(), 2u);
  EXPECT_EQ(NumberField(gate[0], "id"), b);
  EXPECT_EQ(NumberField(gate[1], "id"), a);
  EXPECT_EQ(gate[0].Find("nodes"), nullptr) << "lists hold no nodes";
  auto waiting = daemon_.Get("/api/v1/runs?status=approval_wait,running").Json();
  ASSERT_TRUE(waiting);
  ASSERT_EQ(waiting->Find("runs")->items().size(), 2u) << json::SerializeCompact(*waiting);
  EXPECT_EQ(NumberField(waiting->Find("runs")->items()[0], "id"), b);
  auto limited = daemon_.Get("/api/v1/runs?limit=1").Json();
  ASSERT_EQ(limited->Find("runs")->items().size(), 1u);
  auto templates = daemon_.Get("/api/v1/runs?kind=Template&flow=greeter").Json();
  ASSERT_EQ(templates->Find("runs")->items().size(), 1u);
  auto with_spec = daemon_.Get("/api/v1/runs/" + std::to_string(c) + "?spec=true").Json();
  ASSERT_TRUE(with_spec && with_spec->Find("spec"));
  EXPECT_EQ(StringField(*with_spec->Find("spec"), "kind"), "Workflow");
}

TEST_F(RunsApiTest, LogsAreTextPerNodeAndFollowStreamsUntilTheRunConcludes) {
  daemon_.SetEnv("GITOPSD_FOLLOW_PROGRESS", "150ms");
  ASSERT_TRUE(Start());
  const int64_t id = StartedId(StartRun("gate"));
  ASSERT_GT(id, 0);
  ASSERT_TRUE(WaitForStatus(id, "approval_wait"));
  const std::string logs = "/api/v1/runs/" + std::to_string(id) + "/logs";
  auto now = daemon_.Get(logs);
  ASSERT_EQ(now.status, 200);
  EXPECT_TRUE(Contains(now.headers["Content-Type"], "text/plain"));
  EXPECT_TRUE(Contains(now.body, "== 0 Workflow [running]\n")) << now.body;
  EXPECT_TRUE(Contains(now.body, "== 0.0 Approval gate [approval_wait]\n")) << now.body;

  HttpReply followed;
  std::thread follower([&] { followed = daemon_.Get(logs + "?follow=true"); });
  std::this_thread::sleep_for(std::chrono::milliseconds(700));
  ASSERT_EQ(daemon_.Post("/api/v1/runs/" + std::to_string(id) + "/approve", Writer()).status, 200);
  follower.join();
  // While nothing new was logged, the follow said what is still at work.
  EXPECT_TRUE(Contains(followed.body, "... 0.0 Approval gate approval_wait for ")) << followed.body;
  ASSERT_EQ(followed.status, 200) << followed.error;
  EXPECT_EQ(followed.headers["Transfer-Encoding"], "chunked");
  EXPECT_TRUE(Contains(followed.body, "== 0.0 Approval gate [approval_wait]")) << followed.body;
  EXPECT_TRUE(Contains(followed.body, "approved (1 of 1)")) << followed.body;
  EXPECT_TRUE(Contains(followed.body, "== 0.0 Approval gate [success]")) << followed.body;
  EXPECT_TRUE(Contains(followed.body, "== run " + std::to_string(id) + " success\n"))
      << followed.body;
}

TEST_F(RunsApiTest, AutorunStartsEachTemplateRevisionOnceAcrossRestarts) {
  ASSERT_TRUE(Start());
  // The first sync applied "auto" (autorun) and "greeter" (not).
  ASSERT_EQ(Runs("auto").size(), 1u);
  EXPECT_TRUE(Runs("greeter").empty());
  EXPECT_EQ(StringField(*Runs("auto")[0].Find("flow"), "revision"), "1");
  EXPECT_EQ(StringField(Runs("auto")[0], "name"), "autorun");

  // A commit that leaves "auto" alone runs nothing.
  ASSERT_TRUE(repo_.WriteFile(".gitops/templates/greeter.json", ArgTemplateJson("greeter", false, "v2")));
  ASSERT_FALSE(repo_.Commit("greeter v2").empty());
  ASSERT_TRUE(repo_.Push());
  auto quiet = daemon_.Post("/api/v1/repositories/shop/sync", Writer());
  ASSERT_EQ(quiet.status, 200) << quiet.body;
  EXPECT_EQ(Runs("auto").size(), 1u);

  // A new revision runs once.
  ASSERT_TRUE(repo_.WriteFile(".gitops/templates/auto.json", ArgTemplateJson("auto", true, "v2")));
  ASSERT_FALSE(repo_.Commit("auto v2").empty());
  ASSERT_TRUE(repo_.Push());
  ASSERT_EQ(daemon_.Post("/api/v1/repositories/shop/sync", Writer()).status, 200);
  auto runs = Runs("auto");
  ASSERT_EQ(runs.size(), 2u);
  EXPECT_EQ(StringField(*runs[0].Find("flow"), "revision"), "2");
  ASSERT_TRUE(WaitForStatus(static_cast<int64_t>(NumberField(runs[0], "id")), "success"));

  // A restart re-reads everything and runs nothing again.
  daemon_.Stop();
  ASSERT_TRUE(Start());
  auto synced = daemon_.Post("/api/v1/repositories/shop/sync", Writer());
  ASSERT_EQ(synced.status, 200) << synced.body << daemon_.Output();
  EXPECT_EQ(Runs("auto").size(), 2u);
}

// The store and the runner share state.db through separate connections:
// reading an object, then a run writing, must not keep the next sync from
// applying (a read statement left mid-row pins a stale snapshot, and the
// store's next BEGIN IMMEDIATE then fails with "database is locked").
TEST_F(RunsApiTest, SyncsKeepApplyingWhileRunsWrite) {
  ASSERT_TRUE(Start());
  ASSERT_EQ(daemon_.Get("/api/v1/objects/release-flows/gate").status, 200);
  const int64_t id = StartedId(StartRun("gate"));
  ASSERT_GT(id, 0);
  ASSERT_TRUE(WaitForStatus(id, "approval_wait"));
  ASSERT_EQ(daemon_.Post("/api/v1/runs/" + std::to_string(id) + "/approve", Writer()).status, 200);
  ASSERT_TRUE(WaitForStatus(id, "success"));
  ASSERT_TRUE(repo_.WriteFile(".gitops/templates/greeter.json", ArgTemplateJson("greeter", false, "v2")));
  ASSERT_FALSE(repo_.Commit("greeter v2").empty());
  ASSERT_TRUE(repo_.Push());
  auto synced = daemon_.Post("/api/v1/repositories/shop/sync", Writer());
  ASSERT_EQ(synced.status, 200) << synced.body;
  EXPECT_EQ(Description("greeter"), "v2");
}

TEST_F(RunsApiTest, TheRuntimeListsAnswerEvenWhenEmpty) {
  ASSERT_TRUE(Start());
  for (const char* what : {"services", "jobs", "addons", "builds", "backups"}) {
    auto reply = daemon_.Get(std::string("/api/v1/") + what);
    ASSERT_EQ(reply.status, 200) << what << ": " << reply.body;
    auto body = reply.Json();
    ASSERT_TRUE(body && body->Find(what) && body->Find(what)->is_array()) << reply.body;
  }
  EXPECT_EQ(daemon_.Post("/api/v1/services", Writer()).status, 405);
}

// ---- gitopsctl

class RunsCtlTest : public RunsFixture {
 protected:
  CommandResult Ctl(const std::vector<std::string>& args, const std::string& token = kWriteToken) {
    return RunGitopsctl(args, {{"GITOPSD_SERVER", daemon_.url()}, {"GITOPSD_TOKEN", token}},
                        dir_.path());
  }
};

TEST_F(RunsCtlTest, RunApproveLogsAndTables) {
  ASSERT_TRUE(Start());
  auto started = Ctl({"run", "gate"});
  ASSERT_EQ(started.exit_code, 0) << started.output;
  EXPECT_TRUE(Contains(started.output, "of gate started")) << started.output;
  const int64_t id = Runs("gate").empty() ? -1 : static_cast<int64_t>(NumberField(Runs("gate")[0], "id"));
  ASSERT_GT(id, 0);
  const std::string sid = std::to_string(id);
  ASSERT_TRUE(WaitForStatus(id, "approval_wait"));

  auto tree = Ctl({"get", "run", sid});
  ASSERT_EQ(tree.exit_code, 0) << tree.output;
  EXPECT_TRUE(Contains(tree.output, "NODE")) << tree.output;
  EXPECT_TRUE(Contains(tree.output, "\n  0.0  ")) << "indented by depth:\n" << tree.output;
  EXPECT_TRUE(Contains(tree.output, "approval_wait")) << tree.output;

  EXPECT_EQ(Ctl({"approve", sid}, kReadToken).exit_code, 1) << "a read token cannot approve";
  auto approve = Ctl({"approve", sid});
  ASSERT_EQ(approve.exit_code, 0) << approve.output;
  ASSERT_TRUE(WaitForStatus(id, "success"));

  auto follow = Ctl({"logs", sid, "--follow"});
  ASSERT_EQ(follow.exit_code, 0) << follow.output;
  EXPECT_TRUE(Contains(follow.output, "== run " + sid + " success")) << follow.output;

  auto runs = Ctl({"runs", "--flow", "gate"});
  ASSERT_EQ(runs.exit_code, 0) << runs.output;
  EXPECT_TRUE(Contains(runs.output, "ID")) << runs.output;
  EXPECT_TRUE(Contains(runs.output, "success")) << runs.output;

  auto templ = Ctl({"run", "greeter", "--template", "--arg", "WHO=me", "--wait"});
  ASSERT_EQ(templ.exit_code, 0) << templ.output;
  EXPECT_TRUE(Contains(templ.output, "success")) << templ.output;

  auto refused = Ctl({"run", "triggered"});
  EXPECT_EQ(refused.exit_code, 1);
  EXPECT_TRUE(Contains(refused.output, "${refs.app.sha}")) << refused.output;
  EXPECT_EQ(Ctl({"run", "gate", "--arg", "novalue"}).exit_code, 2);

  auto waiting = StartedId(StartRun("gate"));
  ASSERT_GT(waiting, 0);
  auto cancel = Ctl({"cancel", std::to_string(waiting)});
  EXPECT_EQ(cancel.exit_code, 0) << cancel.output;
  auto rollback = Ctl({"rollback", sid});
  EXPECT_EQ(rollback.exit_code, 1) << rollback.output;
  EXPECT_TRUE(Contains(rollback.output, "deployed nothing")) << rollback.output;

  auto services = Ctl({"get", "services"});
  EXPECT_EQ(services.exit_code, 0) << services.output;
  EXPECT_TRUE(Contains(services.output, "No services.")) << services.output;
}

}  // namespace
}  // namespace gitopsd::test
