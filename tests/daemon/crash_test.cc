// Crash safety of the write-back, with a real gitopsd killed (-9) at named
// points of its work (GITOPSD_FAULT) and started again on the same state:
// the edit is pushed exactly once, in exactly one commit, whatever the point.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <csignal>
#include <filesystem>
#include <thread>

#include "daemon/tokens.h"
#include "tests/daemon/daemon_harness.h"
#include "tests/support/git_servers.h"
#include "tests/support/temp_dir.h"

namespace gitopsd::test {
namespace {

constexpr const char* kToken = "crash-test-token-0123";

std::string TemplateJson(const std::string& description) {
  return "{\n  \"apiVersion\": \"v1.2\",\n  \"name\": \"web\",\n  \"description\": \"" +
         description +
         "\",\n  \"spec\": {\n    \"kind\": \"Workflow\",\n    \"spec\": {\"type\": "
         "\"sequential\", \"steps\": []}\n  }\n}\n";
}

class CrashTest : public ::testing::TestWithParam<const char*> {
 protected:
  void SetUp() override {
    ASSERT_TRUE(repo_.WriteFile(".gitops/templates/web.json", TemplateJson("v1")));
    ASSERT_FALSE(repo_.Commit("first").empty());
    ASSERT_TRUE(repo_.Push());
    ASSERT_TRUE(WriteTextFile(dir_.Sub("tokens.json"),
                              "[{\"name\": \"ci\", \"role\": \"write\", \"sha256\": \"" +
                                  daemon::ToHex(daemon::HashToken(kToken)) + "\"}]"));
  }

  std::string Config() {
    return "{\"stateDir\": \"" + dir_.Sub("state") +
           "\", \"listen\": \"127.0.0.1:@PORT@\", \"apiTokensFile\": \"" + dir_.Sub("tokens.json") +
           "\", \"repositories\": [{\"name\": \"shop\", \"url\": \"" + repo_.file_url() +
           "\", \"pollInterval\": \"200ms\"}]}";
  }

  int RemoteCommits() {
    auto r = RunCommand({"git", "--git-dir", repo_.bare_path(), "rev-list", "--count", "main"});
    return r.ok() ? std::stoi(r.output) : -1;
  }
  std::string RemoteFile() {
    auto r = RunCommand(
        {"git", "--git-dir", repo_.bare_path(), "show", "main:.gitops/templates/web.json"});
    return r.ok() ? r.output : "";
  }

  TempDir dir_{"crash"};
  FixtureRepo repo_{dir_.path(), "shop"};
};

TEST_P(CrashTest, AnEditSurvivesAKillAndIsPushedExactlyOnce) {
  const std::string point = GetParam();
  const int commits_before = RemoteCommits();
  {
    DaemonUnderTest first(dir_.Sub("first"));
    std::filesystem::create_directories(dir_.Sub("first"));
    first.SetEnv("GITOPSD_FAULT", point);
    ASSERT_TRUE(first.StartWithConfig(Config()));
    ASSERT_TRUE(first.WaitReady()) << first.Output();
    HttpReply put = first.Put("/api/v1/objects/templates/web",
                              {{"Authorization", std::string("Bearer ") + kToken},
                               {"Content-Type", "application/json"}},
                              TemplateJson("v2"));
    // The process dies at the fault point, whether or not it answered.
    std::optional<int> status = WaitForExit(first.process(), std::chrono::seconds(20));
    ASSERT_TRUE(status.has_value()) << "gitopsd did not reach " << point << ":\n" << first.Output();
    ASSERT_TRUE(WIFSIGNALED(*status) && WTERMSIG(*status) == SIGKILL)
        << "expected a kill at " << point << "; PUT answered " << put.status << " " << put.body;
  }
  DaemonUnderTest second(dir_.Sub("second"));
  std::filesystem::create_directories(dir_.Sub("second"));
  ASSERT_TRUE(second.StartWithConfig(Config()));
  ASSERT_TRUE(second.WaitReady()) << second.Output();
  ASSERT_TRUE(WaitUntil([&] { return RemoteFile().find("\"v2\"") != std::string::npos; },
                        std::chrono::seconds(30)))
      << "the edit was lost after a kill at " << point << ":\n" << second.Output();
  // Let a few more polls and write-back rounds pass: nothing may be pushed twice.
  std::this_thread::sleep_for(std::chrono::milliseconds(800));
  EXPECT_EQ(RemoteCommits(), commits_before + 1) << "exactly one commit for one edit";
  auto edit = second.Get("/api/v1/writebacks/1").Json();
  ASSERT_TRUE(edit.has_value());
  EXPECT_EQ(edit->Find("status") ? edit->Find("status")->as_string() : "", "pushed");
  auto object = second.Get("/api/v1/objects/templates/web").Json();
  ASSERT_TRUE(object.has_value());
  EXPECT_EQ(object->Find("description")->as_string(), "v2");
}

INSTANTIATE_TEST_SUITE_P(FaultPoints, CrashTest,
                         ::testing::Values("before-commit", "after-commit", "after-push"),
                         [](const auto& info) {
                           std::string name = info.param;
                           for (auto& c : name) {
                             if (c == '-') c = '_';
                           }
                           return name;
                         });

}  // namespace
}  // namespace gitopsd::test
