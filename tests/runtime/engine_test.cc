// The release runner's engine, driven by a scripted executor: flows run in
// order, in parallel, nested; outputs feed later nodes; the dry run refuses
// what cannot resolve; waiting, timeouts, retries, approvals, cancel,
// concurrency policies, and a restart in the middle of a run.
#include "daemon/runner/engine.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <map>
#include <mutex>
#include <thread>
#include <tuple>

#include "tests/support/temp_dir.h"

namespace gitopsd::runner {
namespace {

using namespace std::chrono_literals;

json::Value Json(std::string_view text) {
  auto v = json::Parse(text);
  EXPECT_TRUE(v.has_value()) << (v ? "" : v.error().message) << "\n" << text;
  return v ? *v : json::Value();
}

// A flow body whose root workflow has the given type and steps.
json::Value Flow(std::string_view steps, std::string_view type = "sequential", std::string_view extra = "") {
  return Json(std::string(R"({"apiVersion": "v1.2", )") + std::string(extra) +
              R"("spec": {"kind": "Workflow", "spec": {"type": ")" + std::string(type) + R"(", "steps": )" +
              std::string(steps) + "}}}");
}

// What the executor was asked, in order.
struct CallRecord {
  int64_t run_id;
  std::string path;
  std::string ref;
  json::Value spec;
  int attempt;
  bool recheck;
  json::Value recorded;
  int64_t start_ms;
  int64_t end_ms;
};

// Each node's behaviour is scripted by its ref; unscripted nodes succeed at
// once with {"id": "<ref>-id"}.
class ScriptedExecutor : public NodeExecutor {
 public:
  using Script = std::function<NodeOutcome(const NodeContext&, bool recheck, const json::Value& recorded)>;

  void On(const std::string& ref, Script script) {
    std::lock_guard lock(mu_);
    scripts_[ref] = std::move(script);
  }

  NodeOutcome Execute(const NodeContext& ctx) override { return Do(ctx, false, json::Value()); }
  NodeOutcome Recheck(const NodeContext& ctx, const json::Value& recorded) override { return Do(ctx, true, recorded); }

  std::vector<CallRecord> Calls() {
    std::lock_guard lock(mu_);
    return calls_;
  }
  std::vector<CallRecord> CallsOf(const std::string& ref, std::optional<bool> recheck = std::nullopt) {
    std::vector<CallRecord> out;
    for (const CallRecord& c : Calls()) {
      if (c.ref == ref && (!recheck || c.recheck == *recheck)) out.push_back(c);
    }
    return out;
  }
  std::vector<std::string> ExecutedRefs() {
    std::vector<std::string> out;
    for (const CallRecord& c : Calls()) {
      if (!c.recheck) out.push_back(c.ref);
    }
    return out;
  }

 private:
  NodeOutcome Do(const NodeContext& ctx, bool recheck, const json::Value& recorded) {
    Script script;
    {
      std::lock_guard lock(mu_);
      if (auto it = scripts_.find(ctx.ref); it != scripts_.end()) script = it->second;
    }
    int64_t start = NowMillis();
    NodeOutcome out;
    if (script) {
      out = script(ctx, recheck, recorded);
    } else {
      json::Value data = json::Value::Object();
      data.Set("id", json::Value::String(ctx.ref + "-id"));
      out = NodeOutcome::Success(std::move(data));
    }
    std::lock_guard lock(mu_);
    calls_.push_back(CallRecord{ctx.run_id, ctx.node_path, ctx.ref, ctx.spec, ctx.attempt, recheck, recorded, start,
                                NowMillis()});
    return out;
  }

  std::mutex mu_;
  std::map<std::string, Script> scripts_;
  std::vector<CallRecord> calls_;
};

// A gate a scripted node blocks on until the test opens it.
class Gate {
 public:
  void Open() {
    std::lock_guard lock(mu_);
    open_ = true;
    cv_.notify_all();
  }
  // True when opened, false when the context says stop first.
  bool WaitOrCancelled(const NodeContext& ctx) {
    std::unique_lock lock(mu_);
    entered_ = true;
    cv_.notify_all();
    while (!open_) {
      if (ctx.cancelled()) return false;
      cv_.wait_for(lock, 5ms);
    }
    return true;
  }
  void WaitEntered() {
    std::unique_lock lock(mu_);
    ASSERT_TRUE(cv_.wait_for(lock, 10s, [&] { return entered_; })) << "the node never started";
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool open_ = false;
  bool entered_ = false;
};

class EngineTest : public ::testing::Test {
 protected:
  EngineTest() { Open(); }

  void Open() {
    EngineOptions options;
    options.state_db = dir_.Sub("state.db");
    options.poll_initial = 5ms;
    options.poll_max = 20ms;
    options.retry_delay = 10ms;
    auto engine = Engine::Open(options, &executor_);
    ASSERT_TRUE(engine.has_value()) << engine.error().message;
    engine_ = std::move(*engine);
  }
  // What a daemon restart does to the runner (minus the crash).
  void Restart() {
    engine_.reset();
    Open();
  }

  int64_t Start(const json::Value& body, std::string_view args = "{}", std::string_view triggers = "{}",
                const std::string& name = "prod") {
    StartRequest req;
    req.flow_name = name;
    req.flow_revision = "rev-1";
    req.body = body;
    req.args = Json(args);
    req.trigger_refs = Json(triggers);
    auto id = engine_->Start(req);
    EXPECT_TRUE(id.has_value()) << (id ? "" : id.error().message);
    return id.value_or(0);
  }

  RunStatus Finish(int64_t id) {
    auto status = engine_->Wait(id, 20s);
    EXPECT_TRUE(status.has_value());
    EXPECT_TRUE(status && IsFinished(*status)) << "run " << id << " did not finish";
    return status.value_or(RunStatus::kRunning);
  }

  RunRecord Get(int64_t id) {
    auto run = engine_->Get(id);
    EXPECT_TRUE(run.has_value());
    return run.value_or(RunRecord{});
  }

  static const NodeRecord& Node(const RunRecord& run, const std::string& path) {
    for (const NodeRecord& n : run.nodes) {
      if (n.path == path) return n;
    }
    static NodeRecord missing;
    ADD_FAILURE() << "no node " << path;
    return missing;
  }

  // Polls until `pred` holds for the run (or fails after 10 s).
  void WaitUntil(int64_t id, const std::function<bool(const RunRecord&)>& pred) {
    auto until = std::chrono::steady_clock::now() + 10s;
    while (std::chrono::steady_clock::now() < until) {
      if (pred(Get(id))) return;
      std::this_thread::sleep_for(2ms);
    }
    FAIL() << "condition not reached for run " << id;
  }

  test::TempDir dir_{"runner"};
  ScriptedExecutor executor_;
  std::unique_ptr<Engine> engine_;
};

// ---- order, failure, parallelism, nesting --------------------------------

TEST_F(EngineTest, SequentialStepsRunInOrderAndTheRunSucceeds) {
  int64_t id = Start(Flow(R"([
    {"kind": "Build", "ref": "a", "spec": {}},
    {"kind": "JobRun", "ref": "b", "spec": {}},
    {"kind": "Release", "ref": "c", "spec": {}}])"));
  EXPECT_EQ(Finish(id), RunStatus::kSuccess);
  EXPECT_EQ(executor_.ExecutedRefs(), (std::vector<std::string>{"a", "b", "c"}));
  RunRecord run = Get(id);
  ASSERT_EQ(run.nodes.size(), 4u);
  for (const NodeRecord& n : run.nodes) EXPECT_EQ(n.status, NodeStatus::kSuccess) << n.path;
  EXPECT_LE(Node(run, "0.0").ended_at, Node(run, "0.1").started_at);
  EXPECT_LE(Node(run, "0.1").ended_at, Node(run, "0.2").started_at);
  EXPECT_EQ(Node(run, "0.1").attempts, 1);
  EXPECT_EQ(Node(run, "0.1").data.Find("id")->as_string(), "b-id");
  EXPECT_GT(run.started_at, 0);
  EXPECT_GE(run.ended_at, run.started_at);

  // The shape the HTTP API serves.
  json::Value j = RunToJson(run);
  EXPECT_EQ(j.Find("status")->as_string(), "success");
  EXPECT_TRUE(j.Find("concluded")->as_bool());
  EXPECT_EQ(j.Find("flow")->Find("name")->as_string(), "prod");
  EXPECT_EQ(j.Find("flow")->Find("revision")->as_string(), "rev-1");
  EXPECT_EQ(j.Find("kind")->as_string(), "release");
  ASSERT_EQ(j.Find("nodes")->items().size(), 4u);
  EXPECT_EQ(j.Find("nodes")->items()[2].Find("ref")->as_string(), "b");
  EXPECT_TRUE(j.Find("nodes")->items()[2].Find("startedAt")->is_string());
}

TEST_F(EngineTest, AnIdempotencyKeyNeverMakesTwoRunsEvenAfterARestart) {
  StartRequest req;
  req.flow_name = "prod";
  req.body = Flow(R"([{"kind": "JobRun", "ref": "a", "spec": {}}])");
  req.idempotency_key = "trigger-event-7";
  auto first = engine_->Start(req);
  ASSERT_TRUE(first) << first.error().message;
  EXPECT_EQ(Finish(*first), RunStatus::kSuccess);
  Restart();
  auto again = engine_->Start(req);
  ASSERT_TRUE(again) << again.error().message;
  EXPECT_EQ(*again, *first);
  req.idempotency_key = "trigger-event-8";
  auto other = engine_->Start(req);
  ASSERT_TRUE(other);
  EXPECT_NE(*other, *first);
  EXPECT_EQ(Finish(*other), RunStatus::kSuccess);
  auto runs = engine_->List({});
  ASSERT_TRUE(runs);
  EXPECT_EQ(runs->size(), 2u);
  EXPECT_EQ(executor_.ExecutedRefs().size(), 2u) << "the repeated start executed nothing";
}

TEST(RunJsonTest, TheFlowSpecShownWithARunMasksSecretGroupValues) {
  RunRecord run;
  auto body = json::Parse(R"({"spec": {"kind": "Workflow", "spec": {"type": "sequential", "steps": [
    {"kind": "SecretGroup", "spec": {"name": "shop-secrets",
      "secrets": {"variables": {"API_KEY": "s3cret-value"}, "files": {"/etc/key": {"data": "pem"}}}}},
    {"kind": "JobRun", "spec": {"jobId": "secrets-are-not-here"}}]}}})");
  ASSERT_TRUE(body);
  run.body = *body;
  const std::string shown = json::Serialize(RunToJson(run, /*with_spec=*/true));
  EXPECT_EQ(shown.find("s3cret-value"), std::string::npos) << shown;
  EXPECT_EQ(shown.find("pem"), std::string::npos) << shown;
  EXPECT_NE(shown.find("API_KEY"), std::string::npos) << "the names stay: " << shown;
  EXPECT_NE(shown.find("secrets-are-not-here"), std::string::npos) << shown;
  EXPECT_NE(json::Serialize(run.body).find("s3cret-value"), std::string::npos) << "the record itself is untouched";
}

TEST_F(EngineTest, AFailedStepStopsTheFlowAndTheRunFails) {
  executor_.On("b", [](const NodeContext&, bool, const json::Value&) {
    return NodeOutcome::Failure("migration 0042 failed: relation exists");
  });
  int64_t id = Start(Flow(R"([
    {"kind": "Build", "ref": "a", "spec": {}},
    {"kind": "JobRun", "ref": "b", "spec": {}},
    {"kind": "Release", "ref": "c", "spec": {}},
    {"kind": "Workflow", "spec": {"type": "parallel", "steps": [{"kind": "Release", "ref": "d", "spec": {}}]}}])"));
  EXPECT_EQ(Finish(id), RunStatus::kFailure);
  EXPECT_EQ(executor_.ExecutedRefs(), (std::vector<std::string>{"a", "b"}));
  RunRecord run = Get(id);
  EXPECT_EQ(Node(run, "0.0").status, NodeStatus::kSuccess);
  EXPECT_EQ(Node(run, "0.1").status, NodeStatus::kFailure);
  EXPECT_EQ(Node(run, "0.1").error, "migration 0042 failed: relation exists");
  EXPECT_EQ(Node(run, "0.2").status, NodeStatus::kSkipped);
  EXPECT_EQ(Node(run, "0.2").error, "not run: step 0.1 failed");
  EXPECT_EQ(Node(run, "0.3.0").status, NodeStatus::kSkipped);
  EXPECT_EQ(Node(run, "0").status, NodeStatus::kFailure);
  EXPECT_NE(run.error.find("node 0.1 (JobRun \"b\"): migration 0042 failed"), std::string::npos) << run.error;
}

TEST_F(EngineTest, ParallelStepsReallyRunAtTheSameTime) {
  for (std::string ref : {"p1", "p2", "p3"}) {
    executor_.On(ref, [](const NodeContext&, bool, const json::Value&) {
      std::this_thread::sleep_for(150ms);
      return NodeOutcome::Success();
    });
  }
  auto begin = std::chrono::steady_clock::now();
  int64_t id = Start(Flow(R"([
    {"kind": "Build", "ref": "p1", "spec": {}},
    {"kind": "Build", "ref": "p2", "spec": {}},
    {"kind": "Build", "ref": "p3", "spec": {}}])", "parallel"));
  EXPECT_EQ(Finish(id), RunStatus::kSuccess);
  auto took = std::chrono::steady_clock::now() - begin;
  auto calls = executor_.Calls();
  ASSERT_EQ(calls.size(), 3u);
  int64_t last_start = 0, first_end = INT64_MAX;
  for (const CallRecord& c : calls) {
    last_start = std::max(last_start, c.start_ms);
    first_end = std::min(first_end, c.end_ms);
  }
  EXPECT_LT(last_start, first_end) << "the three nodes did not overlap";
  EXPECT_LT(took, 400ms);
}

TEST_F(EngineTest, WorkflowsNestToAnyDepth) {
  int64_t id = Start(Flow(R"([
    {"kind": "Workflow", "spec": {"type": "parallel", "steps": [
      {"kind": "Workflow", "spec": {"type": "sequential", "steps": [
        {"kind": "Build", "ref": "api-build", "spec": {}},
        {"kind": "Workflow", "spec": {"type": "parallel", "steps": [
          {"kind": "Release", "ref": "api", "spec": {"build": "${refs.api-build.id}"}}]}}]}},
      {"kind": "Build", "ref": "web-build", "spec": {}}]}},
    {"kind": "Message", "ref": "done", "spec": {"text": "${refs.api.id} ${refs.web-build.id}"}}])"));
  EXPECT_EQ(Finish(id), RunStatus::kSuccess);
  auto refs = executor_.ExecutedRefs();
  ASSERT_EQ(refs.size(), 4u);
  EXPECT_EQ(refs.back(), "done");
  auto api_build = std::find(refs.begin(), refs.end(), "api-build");
  EXPECT_LT(api_build, std::find(refs.begin(), refs.end(), "api"));
  EXPECT_EQ(executor_.CallsOf("api")[0].spec.Find("build")->as_string(), "api-build-id");
  EXPECT_EQ(executor_.CallsOf("done")[0].spec.Find("text")->as_string(), "api-id web-build-id");
  RunRecord run = Get(id);
  EXPECT_EQ(run.nodes.size(), 8u);
  EXPECT_EQ(Node(run, "0.0.0.1.0").status, NodeStatus::kSuccess);
}

TEST_F(EngineTest, SkipNodeExecutionSkipsANodeOrAWholeWorkflow) {
  int64_t id = Start(Flow(R"([
    {"kind": "Build", "ref": "a", "spec": {}, "skipNodeExecution": "${fn.eq(args.ENV, 'prod')}"},
    {"kind": "Workflow", "skipNodeExecution": true, "spec": {"type": "sequential", "steps": [
      {"kind": "JobRun", "ref": "b", "spec": {}}]}},
    {"kind": "Release", "ref": "c", "spec": {}, "skipNodeExecution": "false"}])",
                          "sequential", R"("arguments": {"ENV": "prod"}, )"));
  EXPECT_EQ(Finish(id), RunStatus::kSuccess);
  EXPECT_EQ(executor_.ExecutedRefs(), (std::vector<std::string>{"c"}));
  RunRecord run = Get(id);
  EXPECT_EQ(Node(run, "0.0").status, NodeStatus::kSkipped);
  EXPECT_EQ(Node(run, "0.1").status, NodeStatus::kSkipped);
  EXPECT_EQ(Node(run, "0.1.0").status, NodeStatus::kSkipped);
  EXPECT_EQ(Node(run, "0.2").status, NodeStatus::kSuccess);
}

// ---- refs, args, the dry run ---------------------------------------------

TEST_F(EngineTest, OutputsArgsAndTriggerRefsFeedLaterNodes) {
  executor_.On("build", [](const NodeContext& ctx, bool, const json::Value&) {
    return NodeOutcome::Success(Json(R"({"id": "build-42", "image": {"tags": ["v1", "latest"]}, "sha": ")" +
                                     ctx.spec.Find("sha")->as_string() + "\"}"));
  });
  json::Value body = Flow(R"([
    {"kind": "Build", "ref": "build", "spec": {"id": "api-builder", "branch": "${refs.app.branch}", "sha": "${refs.app.sha}"}},
    {"kind": "Release", "ref": "ship", "timeoutDuration": "${args.TIMEOUT}",
     "spec": {"origin": {"build": "${refs.build.id}", "tag": "${refs.build.image.tags.0}"},
              "target": {"id": "api-${args.ENV}"}, "replicas": "${fn.if(fn.eq(args.ENV, 'prod'), 3, 1)}"}}])",
                          "sequential", R"("arguments": {"ENV": "staging", "TIMEOUT": "60"}, )");
  int64_t id = Start(body, R"({"ENV": "prod"})", R"({"app": {"branch": "main", "sha": "9f1c2d"}})");
  EXPECT_EQ(Finish(id), RunStatus::kSuccess);
  auto ship = executor_.CallsOf("ship");
  ASSERT_EQ(ship.size(), 1u);
  EXPECT_EQ(ship[0].spec.Find("origin")->Find("build")->as_string(), "build-42");
  EXPECT_EQ(ship[0].spec.Find("origin")->Find("tag")->as_string(), "v1");
  EXPECT_EQ(ship[0].spec.Find("target")->Find("id")->as_string(), "api-prod");
  EXPECT_EQ(ship[0].spec.Find("replicas")->as_double(), 3);
  EXPECT_EQ(executor_.CallsOf("build")[0].spec.Find("branch")->as_string(), "main");
  RunRecord run = Get(id);
  EXPECT_EQ(run.args.Find("ENV")->as_string(), "prod");
  EXPECT_EQ(run.args.Find("TIMEOUT")->as_string(), "60");
  // The node keeps the spec as it was resolved.
  EXPECT_EQ(Node(run, "0.1").spec.Find("spec")->Find("origin")->Find("build")->as_string(), "build-42");
}

TEST_F(EngineTest, TheDryRunRefusesWhatCannotResolveAndNamesTheNode) {
  struct Case {
    std::string steps;
    std::string where;
    std::string expression;
    std::string why;
  } cases[] = {
      {R"([{"kind": "Build", "ref": "a", "spec": {}},
           {"kind": "JobRun", "spec": {"jobId": "${refs.nobody.id}"}}])",
       "spec.spec.steps[1].spec.jobId", "${refs.nobody.id}", "no trigger or node has the ref \"nobody\""},
      {R"([{"kind": "JobRun", "spec": {"jobId": "${refs.later.id}"}},
           {"kind": "Build", "ref": "later", "spec": {}}])",
       "spec.spec.steps[0].spec.jobId", "${refs.later.id}", "does not run before this node"},
      {R"([{"kind": "Workflow", "spec": {"type": "parallel", "steps": [
            {"kind": "Build", "ref": "sib", "spec": {}},
            {"kind": "JobRun", "spec": {"jobId": "${refs.sib.id}"}}]}}])",
       "spec.spec.steps[0].spec.steps[1].spec.jobId", "${refs.sib.id}", "does not run before this node"},
      {R"([{"kind": "Build", "ref": "a", "spec": {}},
           {"kind": "Build", "ref": "b", "spec": {}},
           {"kind": "JobRun", "spec": {"jobId": "job-${args.UNDECLARED}"}}])",
       "spec.spec.steps[2].spec.jobId", "${args.UNDECLARED}", "argument \"UNDECLARED\" is not set"},
      {R"([{"kind": "Release", "spec": {"branch": "${refs.app.branch}"}}])", "spec.spec.steps[0].spec.branch",
       "${refs.app.branch}", "no trigger or node has the ref \"app\""},
  };
  for (const Case& c : cases) {
    StartRequest req;
    req.flow_name = "prod";
    req.body = Flow(c.steps);
    auto id = engine_->Start(req);
    ASSERT_FALSE(id.has_value()) << c.where;
    EXPECT_EQ(id.error().code, RunError::Code::kInvalid);
    ASSERT_EQ(id.error().details.size(), 1u) << id.error().message;
    const std::string& detail = id.error().details[0];
    EXPECT_EQ(detail.rfind(c.where + ": " + c.expression + ": ", 0), 0u) << detail;
    EXPECT_NE(detail.find(c.why), std::string::npos) << detail;
    EXPECT_NE(id.error().message.find(c.where), std::string::npos) << id.error().message;
  }
  auto runs = engine_->List({});
  ASSERT_TRUE(runs.has_value());
  EXPECT_TRUE(runs->empty()) << "a refused run must not be created";
  EXPECT_TRUE(executor_.Calls().empty());
}

TEST_F(EngineTest, TheDryRunAcceptsRefsOfEarlierStepsAndTheirDescendants) {
  auto errors = DryRun(Flow(R"([
    {"kind": "Workflow", "ref": "group", "spec": {"type": "parallel", "steps": [
      {"kind": "Build", "ref": "inner", "spec": {}}]}},
    {"kind": "JobRun", "spec": {"a": "${refs.inner.id}", "b": "${fn.slug(refs.inner.x.0.y)}", "c": "${refs.app.sha}"}}])"),
                       Json("{}"), Json(R"({"app": {"sha": "abc"}})"));
  EXPECT_TRUE(errors.empty()) << errors[0].ToString();
}

// ---- waiting, timeouts, retries ------------------------------------------

TEST_F(EngineTest, AConditionWaitsUntilTheActionCompletes) {
  std::atomic<int> polls = 0;
  executor_.On("build", [&](const NodeContext& ctx, bool recheck, const json::Value& recorded) {
    EXPECT_EQ(ctx.condition, "success");
    if (!recheck) return NodeOutcome::Waiting(Json(R"({"buildId": "b-7", "phase": "queued"})"));
    EXPECT_EQ(recorded.Find("buildId")->as_string(), "b-7");
    if (++polls < 3) return NodeOutcome::Waiting(Json(R"({"buildId": "b-7", "phase": "building"})"));
    return NodeOutcome::Success(Json(R"({"id": "b-7"})"));
  });
  int64_t id = Start(Flow(R"([
    {"kind": "Build", "ref": "build", "condition": "success", "spec": {}},
    {"kind": "Release", "ref": "ship", "spec": {"build": "${refs.build.id}"}}])"));
  EXPECT_EQ(Finish(id), RunStatus::kSuccess);
  EXPECT_EQ(polls.load(), 3);
  EXPECT_EQ(executor_.CallsOf("build", false).size(), 1u) << "executed once, then only rechecked";
  EXPECT_EQ(executor_.CallsOf("ship")[0].spec.Find("build")->as_string(), "b-7");
  EXPECT_EQ(Node(Get(id), "0.0").attempts, 1);
}

TEST_F(EngineTest, ANodeThatOutlivesItsTimeoutFails) {
  executor_.On("deploy", [](const NodeContext&, bool, const json::Value&) {
    return NodeOutcome::Waiting(Json(R"({"deployment": "d-1"})"));
  });
  int64_t id = Start(Flow(R"([
    {"kind": "Release", "ref": "deploy", "condition": "running", "timeoutDuration": 0.2, "spec": {}},
    {"kind": "Message", "ref": "after", "spec": {}}])"));
  EXPECT_EQ(Finish(id), RunStatus::kFailure);
  RunRecord run = Get(id);
  EXPECT_EQ(Node(run, "0.0").status, NodeStatus::kFailure);
  EXPECT_EQ(Node(run, "0.0").error, "timed out after 0.2s");
  EXPECT_GE(Node(run, "0.0").ended_at - Node(run, "0.0").started_at, 200);
  EXPECT_EQ(Node(run, "0.1").status, NodeStatus::kSkipped);
}

TEST_F(EngineTest, RetriesUntilSuccessRecordingEachAttempt) {
  std::atomic<int> tries = 0;
  executor_.On("flaky", [&](const NodeContext& ctx, bool, const json::Value&) {
    EXPECT_EQ(ctx.attempt, tries + 1);
    if (++tries < 3) return NodeOutcome::Failure("registry returned 503");
    return NodeOutcome::Success();
  });
  executor_.On("broken", [](const NodeContext&, bool, const json::Value&) { return NodeOutcome::Failure("nope"); });
  int64_t ok = Start(Flow(R"([{"kind": "Build", "ref": "flaky", "retries": 2, "spec": {},
                               "settings": {"backoff": {"type": "fixed", "delay": 0.01}}}])"));
  EXPECT_EQ(Finish(ok), RunStatus::kSuccess);
  RunRecord ok_run = Get(ok);
  const NodeRecord& n = Node(ok_run, "0.0");
  EXPECT_EQ(n.attempts, 3);
  EXPECT_EQ(n.max_attempts, 3);
  EXPECT_NE(n.log.find("attempt 1 of 3 failed: registry returned 503"), std::string::npos) << n.log;

  int64_t bad = Start(Flow(R"([{"kind": "Build", "ref": "broken", "spec": {},
                                "settings": {"maxAttempts": 2, "backoff": {"delay": 0}}}])"),
                      "{}", "{}", "other");
  EXPECT_EQ(Finish(bad), RunStatus::kFailure);
  RunRecord run = Get(bad);
  EXPECT_EQ(Node(run, "0.0").attempts, 2);
  EXPECT_EQ(Node(run, "0.0").error, "nope");
}

// ---- approval and cancel -------------------------------------------------

TEST_F(EngineTest, AnApprovalHoldsTheRunUntilApproved) {
  int64_t id = Start(Flow(R"([
    {"kind": "Build", "ref": "a", "spec": {}},
    {"kind": "Approval", "ref": "ok", "spec": {"amount": 2}},
    {"kind": "Release", "ref": "b", "spec": {"approvals": "${refs.ok.approvals}"}}])"));
  WaitUntil(id, [](const RunRecord& r) { return r.status == RunStatus::kApprovalWait; });
  RunRecord run = Get(id);
  EXPECT_EQ(Node(run, "0.1").status, NodeStatus::kApprovalWait);
  EXPECT_EQ(executor_.ExecutedRefs(), (std::vector<std::string>{"a"}));

  ASSERT_TRUE(engine_->Approve(id).has_value());
  WaitUntil(id, [](const RunRecord& r) {
    for (const NodeRecord& n : r.nodes) {
      if (n.path == "0.1") return n.data.is_object() && n.data.Find("approvals")->as_double() == 1;
    }
    return false;
  });
  EXPECT_EQ(Get(id).status, RunStatus::kApprovalWait) << "two approvals are needed";
  ASSERT_TRUE(engine_->Approve(id).has_value());
  EXPECT_EQ(Finish(id), RunStatus::kSuccess);
  EXPECT_EQ(executor_.CallsOf("b")[0].spec.Find("approvals")->as_double(), 2);

  auto again = engine_->Approve(id);
  ASSERT_FALSE(again.has_value());
  EXPECT_EQ(again.error().code, RunError::Code::kConflict);
  EXPECT_EQ(engine_->Approve(9999).error().code, RunError::Code::kNotFound);
}

TEST_F(EngineTest, CancelAbortsTheRunningNodeAndSkipsTheRest) {
  Gate gate;
  std::atomic<bool> saw_cancel = false;
  executor_.On("long", [&](const NodeContext& ctx, bool, const json::Value&) {
    if (gate.WaitOrCancelled(ctx)) return NodeOutcome::Success();
    saw_cancel = true;
    return NodeOutcome::Failure("interrupted");
  });
  int64_t id = Start(Flow(R"([
    {"kind": "JobRun", "ref": "long", "spec": {}},
    {"kind": "Release", "ref": "after", "spec": {}}])"));
  gate.WaitEntered();
  ASSERT_TRUE(engine_->Cancel(id).has_value());
  EXPECT_EQ(Finish(id), RunStatus::kAborted);
  EXPECT_TRUE(saw_cancel);
  RunRecord run = Get(id);
  EXPECT_EQ(Node(run, "0.0").status, NodeStatus::kAborted);
  EXPECT_EQ(Node(run, "0.1").status, NodeStatus::kSkipped);
  EXPECT_EQ(Node(run, "0").status, NodeStatus::kAborted);
  EXPECT_EQ(executor_.ExecutedRefs(), (std::vector<std::string>{"long"}));
  EXPECT_EQ(engine_->Cancel(id).error().code, RunError::Code::kConflict);
}

// ---- concurrency policies ------------------------------------------------

TEST_F(EngineTest, ForbidRefusesASecondRunWhileOneIsActive) {
  Gate gate;
  executor_.On("hold", [&](const NodeContext& ctx, bool, const json::Value&) {
    gate.WaitOrCancelled(ctx);
    return NodeOutcome::Success();
  });
  json::Value body = Flow(R"([{"kind": "Build", "ref": "hold", "spec": {}}])", "sequential",
                          R"("options": {"concurrencyPolicy": "forbid"}, )");
  int64_t first = Start(body);
  gate.WaitEntered();
  StartRequest req;
  req.flow_name = "prod";
  req.body = body;
  auto second = engine_->Start(req);
  ASSERT_FALSE(second.has_value());
  EXPECT_EQ(second.error().code, RunError::Code::kConflict);
  EXPECT_NE(second.error().message.find("already has run " + std::to_string(first)), std::string::npos)
      << second.error().message;
  gate.Open();
  EXPECT_EQ(Finish(first), RunStatus::kSuccess);
  int64_t third = Start(body);
  EXPECT_EQ(Finish(third), RunStatus::kSuccess);
}

TEST_F(EngineTest, QueueRunsOneAtATimeInCreationOrder) {
  Gate gate;
  executor_.On("hold", [&](const NodeContext& ctx, bool, const json::Value&) {
    if (ctx.run_id == 1) gate.WaitOrCancelled(ctx);
    return NodeOutcome::Success();
  });
  json::Value body = Flow(R"([{"kind": "Build", "ref": "hold", "spec": {}}])", "sequential",
                          R"("options": {"concurrencyPolicy": "queue"}, )");
  int64_t a = Start(body);
  gate.WaitEntered();
  int64_t b = Start(body);
  int64_t c = Start(body);
  EXPECT_EQ(Get(b).status, RunStatus::kQueued);
  EXPECT_EQ(Get(c).status, RunStatus::kQueued);
  gate.Open();
  EXPECT_EQ(Finish(c), RunStatus::kSuccess);
  EXPECT_EQ(Finish(b), RunStatus::kSuccess);
  EXPECT_EQ(Finish(a), RunStatus::kSuccess);
  EXPECT_LE(Get(a).ended_at, Get(b).started_at);
  EXPECT_LE(Get(b).ended_at, Get(c).started_at);
  std::vector<int64_t> order;
  for (const CallRecord& call : executor_.Calls()) order.push_back(call.run_id);
  EXPECT_EQ(order, (std::vector<int64_t>{a, b, c}));
}

TEST_F(EngineTest, AllowRunsRunsSideBySide) {
  Gate gate;
  std::atomic<int> inside = 0, most = 0;
  executor_.On("hold", [&](const NodeContext& ctx, bool, const json::Value&) {
    int now = ++inside;
    int seen = most;
    while (now > seen && !most.compare_exchange_weak(seen, now)) {}
    gate.WaitOrCancelled(ctx);
    --inside;
    return NodeOutcome::Success();
  });
  json::Value body = Flow(R"([{"kind": "Build", "ref": "hold", "spec": {}}])");  // allow is the default
  int64_t a = Start(body);
  int64_t b = Start(body);
  WaitUntil(b, [&](const RunRecord&) { return most.load() == 2; });
  EXPECT_EQ(Get(a).status, RunStatus::kRunning);
  EXPECT_EQ(Get(b).status, RunStatus::kRunning);
  gate.Open();
  EXPECT_EQ(Finish(a), RunStatus::kSuccess);
  EXPECT_EQ(Finish(b), RunStatus::kSuccess);
}

// ---- restart -------------------------------------------------------------

TEST_F(EngineTest, AfterARestartTheRunningNodeIsRecheckedNotExecutedAgain) {
  Gate deploy_started;
  std::atomic<bool> deployment_done = false;
  executor_.On("deploy", [&](const NodeContext& ctx, bool recheck, const json::Value& recorded) {
    if (!recheck) {
      deploy_started.WaitOrCancelled(ctx);  // open: the daemon stops while the node is being executed
      return NodeOutcome::Waiting(Json(R"({"deployment": "d-42"})"));
    }
    EXPECT_EQ(recorded.Find("deployment")->as_string(), "d-42");
    if (!deployment_done) return NodeOutcome::Waiting(recorded);
    return NodeOutcome::Success(Json(R"({"id": "d-42"})"));
  });
  json::Value body = Flow(R"([
    {"kind": "Build", "ref": "build", "spec": {}},
    {"kind": "Release", "ref": "deploy", "condition": "running", "spec": {"build": "${refs.build.id}"}},
    {"kind": "Message", "ref": "notify", "spec": {"text": "${refs.deploy.id} from ${refs.build.id}"}}])",
                          "sequential", R"("options": {"concurrencyPolicy": "queue"}, )");
  int64_t id = Start(body);
  int64_t queued = Start(body);
  deploy_started.WaitEntered();
  EXPECT_EQ(Get(queued).status, RunStatus::kQueued);

  engine_.reset();  // the daemon stops with the node mid-execution
  {
    auto store = RunStore::Open(dir_.Sub("state.db"));
    ASSERT_TRUE(store.has_value());
    auto run = (*store)->Get(id);
    ASSERT_TRUE(run.has_value() && run->has_value());
    EXPECT_EQ((*run)->status, RunStatus::kRunning);
    EXPECT_EQ(Node(**run, "0.1").status, NodeStatus::kWaiting);
    EXPECT_EQ(Node(**run, "0.1").data.Find("deployment")->as_string(), "d-42");
    EXPECT_EQ(Node(**run, "0.2").status, NodeStatus::kPending);
  }
  deployment_done = true;
  deploy_started.Open();  // the queued run's deploy goes straight through
  Open();                 // a new daemon over the same state
  EXPECT_EQ(Finish(id), RunStatus::kSuccess);
  // The queued run started after the resumed one, in order.
  EXPECT_EQ(Finish(queued), RunStatus::kSuccess);
  EXPECT_LE(Get(id).ended_at, Get(queued).started_at);
  EXPECT_EQ(executor_.CallsOf("deploy", false).size(), 2u) << "one Execute per run: the first run's is not repeated";
  EXPECT_EQ(executor_.CallsOf("build", false).size(), 2u);
  int first_run_executes = 0;
  for (const CallRecord& c : executor_.CallsOf("deploy", false)) first_run_executes += c.run_id == id;
  EXPECT_EQ(first_run_executes, 1);
  EXPECT_GE(executor_.CallsOf("deploy", true).size(), 1u);
  auto notify = executor_.CallsOf("notify");
  ASSERT_FALSE(notify.empty());
  EXPECT_EQ(notify[0].spec.Find("text")->as_string(), "d-42 from build-id");
}

TEST_F(EngineTest, AfterARestartAnApprovalStillWaitsAndKeepsItsApprovals) {
  int64_t id = Start(Flow(R"([
    {"kind": "Approval", "ref": "ok", "spec": {"amount": 2}},
    {"kind": "Release", "ref": "b", "spec": {}}])"));
  WaitUntil(id, [](const RunRecord& r) { return r.status == RunStatus::kApprovalWait; });
  ASSERT_TRUE(engine_->Approve(id).has_value());
  WaitUntil(id, [](const RunRecord& r) { return r.nodes[1].data.is_object() && r.nodes[1].data.Find("approvals")->as_double() == 1; });
  Restart();
  WaitUntil(id, [](const RunRecord& r) { return r.status == RunStatus::kApprovalWait; });
  EXPECT_TRUE(executor_.Calls().empty());
  ASSERT_TRUE(engine_->Approve(id).has_value());
  EXPECT_EQ(Finish(id), RunStatus::kSuccess);
  EXPECT_EQ(executor_.ExecutedRefs(), (std::vector<std::string>{"b"}));
}

// ---- the records ---------------------------------------------------------

TEST_F(EngineTest, NodeLogsAreCappedKeepingTheNewestText) {
  executor_.On("chatty", [](const NodeContext& ctx, bool, const json::Value&) {
    std::string line(1000, 'x');
    for (int i = 0; i < 100; ++i) ctx.log("line " + std::to_string(i) + " " + line);
    return NodeOutcome::Success();
  });
  int64_t id = Start(Flow(R"([{"kind": "JobRun", "ref": "chatty", "spec": {}}])"));
  EXPECT_EQ(Finish(id), RunStatus::kSuccess);
  RunRecord run = Get(id);
  const std::string& log = Node(run, "0.0").log;
  EXPECT_EQ(log.size(), RunStore::kMaxLogBytes);
  EXPECT_NE(log.find("line 99 x"), std::string::npos);
  EXPECT_EQ(log.find("line 0 x"), std::string::npos);
}

TEST_F(EngineTest, RunsAreListedPerFlowNewestFirst) {
  json::Value body = Flow(R"([{"kind": "Build", "ref": "a", "spec": {}}])");
  int64_t a = Start(body, "{}", "{}", "shop");
  int64_t b = Start(body, "{}", "{}", "other");
  int64_t c = Start(body, "{}", "{}", "shop");
  for (int64_t id : {a, b, c}) Finish(id);
  RunFilter filter;
  filter.flow_kind = "ReleaseFlow";
  filter.flow_name = "shop";
  auto runs = engine_->List(filter);
  ASSERT_TRUE(runs.has_value());
  ASSERT_EQ(runs->size(), 2u);
  EXPECT_EQ((*runs)[0].id, c);
  EXPECT_EQ((*runs)[1].id, a);
  EXPECT_TRUE((*runs)[0].nodes.empty());
  EXPECT_EQ(engine_->Get(12345).error().code, RunError::Code::kNotFound);
}

TEST_F(EngineTest, RunsAreCountedPerFlowAndStatus) {
  executor_.On("bad", [](const NodeContext&, bool, const json::Value&) { return NodeOutcome::Failure("no"); });
  json::Value good = Flow(R"([{"kind": "Build", "ref": "a", "spec": {}}])");
  json::Value bad = Flow(R"([{"kind": "Build", "ref": "bad", "spec": {}}])");
  for (int64_t id : {Start(good, "{}", "{}", "shop"), Start(good, "{}", "{}", "shop"), Start(bad, "{}", "{}", "shop"),
                     Start(good, "{}", "{}", "other")}) {
    Finish(id);
  }
  auto counts = engine_->Count();
  ASSERT_TRUE(counts.has_value());
  std::map<std::tuple<std::string, std::string, RunStatus>, int64_t> seen;
  for (const RunCount& c : *counts) seen[{c.flow_kind, c.flow_name, c.status}] = c.count;
  EXPECT_EQ(seen.size(), 3u);
  EXPECT_EQ((seen[{"ReleaseFlow", "shop", RunStatus::kSuccess}]), 2);
  EXPECT_EQ((seen[{"ReleaseFlow", "shop", RunStatus::kFailure}]), 1);
  EXPECT_EQ((seen[{"ReleaseFlow", "other", RunStatus::kSuccess}]), 1);
}

// ---- overhead --------------------------------------------------------------

TEST_F(EngineTest, OverheadPerNodeOfAThousandNoOpNodes) {
  std::string steps = "[";
  for (int i = 0; i < 1000; ++i) {
    steps += (i ? "," : "") + std::string(R"({"kind": "Action", "ref": "n)") + std::to_string(i) +
             R"(", "spec": {"target": ")" + (i ? "${refs.n" + std::to_string(i - 1) + ".id}" : std::string("x")) +
             "\"}}";
  }
  steps += "]";
  json::Value body = Flow(steps);
  auto begin = std::chrono::steady_clock::now();
  int64_t id = Start(body);
  EXPECT_EQ(Finish(id), RunStatus::kSuccess);
  auto took = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - begin).count();
  RunRecord run = Get(id);
  EXPECT_EQ(run.nodes.size(), 1001u);
  EXPECT_EQ(executor_.Calls().size(), 1000u);
  EXPECT_EQ(executor_.CallsOf("n999")[0].spec.Find("target")->as_string(), "n998-id");
  std::printf("[ overhead ] 1000 no-op nodes (dry run, persistence, resolution): %.1f ms total, %.3f ms/node\n", took,
              took / 1000);
}

}  // namespace
}  // namespace gitopsd::runner
