// A real gitopsd over a bare repository holding flows whose nodes need no
// runtime (workflows and approvals): the ground for the run API and the
// run commands of gitopsctl. Write token "ci", read token "dashboard".
#pragma once
#include <gtest/gtest.h>

#include <string>

#include "tests/daemon/write_fixture.h"

namespace gitopsd::test {

// A release flow of one Approval node, ref "gate".
inline std::string GateFlowJson(const std::string& name, const std::string& policy = "allow") {
  return R"({"apiVersion": "v1.2", "name": ")" + name +
         R"(", "options": {"concurrencyPolicy": ")" + policy + R"("},
  "spec": {"kind": "Workflow", "spec": {"type": "sequential", "steps": [
    {"kind": "Approval", "ref": "gate", "spec": {"amount": 1, "message": "ship it?"}}]}}})";
}

// A release flow whose approval message needs the sha of trigger "app", on a
// repository this daemon does not sync: only a caller can give it.
inline std::string TriggeredFlowJson() {
  return R"({"apiVersion": "v1.2", "name": "triggered",
  "triggers": [{"ref": "app", "repository": "elsewhere", "branchRestrictions": ["main"]}],
  "spec": {"kind": "Workflow", "spec": {"type": "sequential", "steps": [
    {"kind": "Workflow", "spec": {"type": "sequential", "steps": [
      {"kind": "Approval", "ref": "gate", "spec": {"amount": 1, "message": "deploy ${refs.app.sha}"}}]}}]}}})";
}

// A template with an argument; autorun as asked.
inline std::string ArgTemplateJson(const std::string& name, bool autorun,
                                   const std::string& description = "v1") {
  return R"({"apiVersion": "v1.2", "name": ")" + name + R"(", "description": ")" + description +
         R"(", "arguments": {"WHO": "nobody"}, "options": {"autorun": )" +
         (autorun ? "true" : "false") +
         R"(}, "spec": {"kind": "Workflow", "spec": {"type": "sequential", "steps": [
    {"kind": "Workflow", "ref": "inner", "spec": {"type": "parallel", "steps": []}}]}}})";
}

class RunsFixture : public WriteFixture {
 protected:
  void SetUp() override {
    WriteFixture::SetUp();
    if (HasFatalFailure()) return;
    ASSERT_TRUE(repo_.WriteFile(".gitops/release-flows/gate.json", GateFlowJson("gate")));
    ASSERT_TRUE(repo_.WriteFile(".gitops/release-flows/solo.json", GateFlowJson("solo", "forbid")));
    ASSERT_TRUE(repo_.WriteFile(".gitops/release-flows/triggered.json", TriggeredFlowJson()));
    ASSERT_TRUE(repo_.WriteFile(".gitops/templates/greeter.json", ArgTemplateJson("greeter", false)));
    ASSERT_TRUE(repo_.WriteFile(".gitops/templates/auto.json", ArgTemplateJson("auto", true)));
    ASSERT_FALSE(repo_.Commit("flows").empty());
    ASSERT_TRUE(repo_.Push());
  }

  std::map<std::string, std::string> Reader() { return {{"Authorization", Bearer(kReadToken)}}; }

  // POST .../runs; the reply.
  HttpReply StartRun(const std::string& flow, const std::string& body = "",
                     const std::string& kind = "release-flows") {
    return daemon_.Post("/api/v1/" + kind + "/" + flow + "/runs", Writer(), body);
  }

  // The id of a run started with 201, or -1.
  int64_t StartedId(const HttpReply& reply) {
    auto body = reply.Json();
    if (reply.status != 201 || !body) return -1;
    return static_cast<int64_t>(NumberField(*body, "id"));
  }

  json::Value GetRun(int64_t id) {
    auto body = daemon_.Get("/api/v1/runs/" + std::to_string(id)).Json();
    return body ? *body : json::Value();
  }

  std::string Status(int64_t id) { return StringField(GetRun(id), "status"); }

  bool WaitForStatus(int64_t id, const std::string& status) {
    return WaitUntil([&] { return Status(id) == status; });
  }

  // The node at `path` of a run's JSON (null when absent).
  static json::Value Node(const json::Value& run, const std::string& path) {
    const json::Value* nodes = run.Find("nodes");
    if (!nodes || !nodes->is_array()) return json::Value();
    for (const auto& n : nodes->items()) {
      if (StringField(n, "path") == path) return n;
    }
    return json::Value();
  }

  // Runs of a flow, newest first.
  std::vector<json::Value> Runs(const std::string& flow) {
    auto body = daemon_.Get("/api/v1/runs?flow=" + flow).Json();
    if (!body || !body->Find("runs")) return {};
    return body->Find("runs")->items();
  }

  static std::string ErrorCodeOf(const HttpReply& reply) {
    auto body = reply.Json();
    const json::Value* error = body ? body->Find("error") : nullptr;
    return error ? StringField(*error, "code") : "<" + reply.body + ">";
  }
};

}  // namespace gitopsd::test
