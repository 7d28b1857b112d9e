// A real gitopsd with write-back on, syncing a bare repository over
// file:// (two templates, web and database), with a write token "ci" and a
// read token "dashboard": the ground for the write API and gitopsctl tests.
#pragma once
#include <gtest/gtest.h>

#include <string>

#include "daemon/tokens.h"
#include "tests/daemon/daemon_harness.h"
#include "tests/support/git_servers.h"
#include "tests/support/temp_dir.h"

namespace gitopsd::test {

inline constexpr const char* kWriteToken = "write-token-0123";
inline constexpr const char* kReadToken = "read-token-4567";

inline std::string TemplateJson(const std::string& name, const std::string& description) {
  return "{\n  \"apiVersion\": \"v1.2\",\n  \"name\": \"" + name + "\",\n  \"description\": \"" +
         description +
         "\",\n  \"spec\": {\n    \"kind\": \"Workflow\",\n    \"spec\": {\"type\": "
         "\"sequential\", \"steps\": []}\n  }\n}\n";
}

inline std::string ReleaseFlowJson(const std::string& name) {
  return "{\n  \"apiVersion\": \"v1.2\",\n  \"name\": \"" + name +
         "\",\n  \"spec\": {\"kind\": \"Workflow\", \"spec\": {\"type\": \"sequential\", "
         "\"steps\": []}}\n}\n";
}

inline std::string Bearer(const std::string& token) { return "Bearer " + token; }

inline std::string StringField(const json::Value& v, std::string_view key) {
  const json::Value* f = v.Find(key);
  return f && f->is_string() ? f->as_string() : "";
}

inline double NumberField(const json::Value& v, std::string_view key) {
  const json::Value* f = v.Find(key);
  return f && f->is_number() ? f->as_double() : -1;
}

inline bool Contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

class WriteFixture : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(repo_.WriteFile(".gitops/templates/web.json", TemplateJson("web", "v1")));
    ASSERT_TRUE(repo_.WriteFile(".gitops/templates/database.json", TemplateJson("database", "v1")));
    ASSERT_FALSE(repo_.Commit("first").empty());
    ASSERT_TRUE(repo_.Push());
    const std::string tokens =
        "[{\"name\": \"ci\", \"role\": \"write\", \"sha256\": \"" +
        daemon::ToHex(daemon::HashToken(kWriteToken)) +
        "\"},\n {\"name\": \"dashboard\", \"role\": \"read\", \"sha256\": \"" +
        daemon::ToHex(daemon::HashToken(kReadToken)) + "\"}]\n";
    ASSERT_TRUE(WriteTextFile(dir_.Sub("tokens.json"), tokens));
  }

  // Polls only on request ("1h"), so Git changes only when a test says so.
  ::testing::AssertionResult Start(const std::string& extra_sync = "") {
    const std::string config =
        "{\n  \"stateDir\": \"@STATE@\",\n  \"listen\": \"127.0.0.1:@PORT@\",\n"
        "  \"apiTokensFile\": \"tokens.json\",\n"
        "  \"repositories\": [{\"name\": \"shop\", \"url\": \"" + repo_.file_url() +
        "\", \"pollInterval\": \"1h\", \"sync\": {\"writeBack\": true" + extra_sync +
        "}}],\n  \"log\": {\"level\": \"debug\"}\n}\n";
    auto started = daemon_.StartWithConfig(config);
    if (!started) return started;
    if (!daemon_.WaitReady()) {
      return ::testing::AssertionFailure() << "not ready in time:\n" << daemon_.Output();
    }
    return ::testing::AssertionSuccess();
  }

  std::map<std::string, std::string> Writer(const std::string& content_type = "application/json") {
    return {{"Authorization", Bearer(kWriteToken)}, {"Content-Type", content_type}};
  }

  // The commit the bare repository's main points at.
  std::string RemoteHead() {
    auto r = repo_.Git({"ls-remote", "origin", "refs/heads/main"});
    return r.output.substr(0, 40);
  }
  // Brings the work clone up to the bare repository's main.
  bool Pull() { return repo_.Git({"pull", "-q", "--ff-only", "origin", "main"}).ok(); }
  std::string WorkFile(const std::string& path) { return ReadTextFile(repo_.work_path() + "/" + path); }

  std::string Description(const std::string& name) {
    auto reply = daemon_.Get("/api/v1/objects/templates/" + name);
    auto body = reply.Json();
    return body ? StringField(*body, "description") : "<" + std::to_string(reply.status) + ">";
  }

  double PendingWriteBacks() {
    auto sync = daemon_.Get("/api/v1/sync").Json();
    if (!sync || !sync->Find("repositories") || sync->Find("repositories")->items().empty()) {
      return -1;
    }
    return NumberField(sync->Find("repositories")->items()[0], "pendingWriteBacks");
  }

  // A refused request left no trace: the object as it was, no outbox row,
  // nothing new in Git.
  void ExpectNothingWritten(const std::string& head_before) {
    EXPECT_EQ(Description("web"), "v1");
    EXPECT_EQ(daemon_.Get("/api/v1/objects/templates/web").headers["ETag"], "\"1\"");
    EXPECT_EQ(PendingWriteBacks(), 0);
    EXPECT_EQ(RemoteHead(), head_before);
    EXPECT_EQ(daemon_.Get("/api/v1/writebacks/1").status, 404) << "no outbox row was made";
  }

  TempDir dir_{"write"};
  FixtureRepo repo_{dir_.path(), "shop"};
  DaemonUnderTest daemon_{dir_.path()};
};

}  // namespace gitopsd::test
