// What every test that releases through a real gitopsd needs about runs:
// the write token's headers, waiting for a run to conclude, reading its
// nodes, and a failure message that shows the run and its logs.
//
// Free functions over a DaemonUnderTest, so that fixtures of any shape use
// them. The write token is kWriteToken ("ci" in the fixtures' tokens.json).
#pragma once
#include <chrono>
#include <cstdint>
#include <map>
#include <string>

#include "tests/daemon/daemon_harness.h"
#include "tests/daemon/write_fixture.h"

namespace gitopsd::test {

// Headers of a write request with a JSON body.
inline std::map<std::string, std::string> Writer() {
  return {{"Authorization", Bearer(kWriteToken)}, {"Content-Type", "application/json"}};
}

// GET /api/v1/runs/<id> until the run says "concluded" or `timeout`
// passes; the run's JSON as last read (check its status: it may not have
// concluded).
inline json::Value Concluded(DaemonUnderTest& daemon, int64_t id,
                             std::chrono::milliseconds timeout = std::chrono::seconds(90)) {
  json::Value run;
  WaitUntil(
      [&] {
        auto body = daemon.Get("/api/v1/runs/" + std::to_string(id)).Json();
        if (body) run = *body;
        return body && body->Find("concluded") && body->Find("concluded")->as_bool();
      },
      timeout);
  return run;
}

// The run's JSON and its logs: what a failed assertion should show.
inline std::string Explain(DaemonUnderTest& daemon, const json::Value& run) {
  const auto id = static_cast<int64_t>(NumberField(run, "id"));
  return json::SerializeCompact(run) + "\n" + daemon.Get("/api/v1/runs/" + std::to_string(id) + "/logs").body;
}

// The node of `run` whose `key` ("path" or "ref") is `value` (null when absent).
inline json::Value NodeWhere(const json::Value& run, const std::string& key, const std::string& value) {
  if (const json::Value* nodes = run.Find("nodes"); nodes && nodes->is_array()) {
    for (const auto& n : nodes->items()) {
      if (StringField(n, key) == value) return n;
    }
  }
  return json::Value();
}

// The node at `path` ("0.2") of a run's JSON (null when absent).
inline json::Value Node(const json::Value& run, const std::string& path) { return NodeWhere(run, "path", path); }

// The node whose ref is `ref` (null when absent).
inline json::Value NodeByRef(const json::Value& run, const std::string& ref) { return NodeWhere(run, "ref", ref); }

// A string of a node's response data ("" when absent).
inline std::string DataField(const json::Value& node, const std::string& field) {
  const json::Value* data = node.Find("data");
  return data && data->is_object() ? StringField(*data, field) : "";
}

}  // namespace gitopsd::test
