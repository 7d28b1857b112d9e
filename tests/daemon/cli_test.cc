// The command line as a person and a CI job meet it: help, exit codes,
// validate's two formats, and start-up failures that say what is wrong.
#include <gtest/gtest.h>
#include <sqlite3.h>

#include <filesystem>

#include "tests/daemon/daemon_harness.h"
#include "tests/support/temp_dir.h"

namespace gitopsd::test {
namespace {

constexpr const char* kGoodTemplate =
    "{\n  \"apiVersion\": \"v1.2\",\n  \"name\": \"web\",\n  \"spec\": {\"kind\": \"Workflow\", "
    "\"spec\": {\"type\": \"sequential\", \"steps\": []}}\n}\n";
// The comma after "v1.2" is missing: line 3, column 3.
constexpr const char* kBrokenTemplate = "{\n  \"apiVersion\": \"v1.2\"\n  \"name\": \"x\"\n}\n";

bool Contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

TEST(CliTest, HelpDescribesEveryCommand) {
  auto top = RunGitopsd({"--help"});
  EXPECT_EQ(top.exit_code, 0) << top.output;
  EXPECT_TRUE(Contains(top.output, "serve")) << top.output;
  EXPECT_TRUE(Contains(top.output, "validate")) << top.output;
  EXPECT_TRUE(Contains(top.output, "version")) << top.output;

  auto serve = RunGitopsd({"serve", "--help"});
  EXPECT_EQ(serve.exit_code, 0) << serve.output;
  EXPECT_TRUE(Contains(serve.output, "--config")) << serve.output;
  EXPECT_TRUE(Contains(serve.output, "--repo")) << serve.output;
  EXPECT_TRUE(Contains(serve.output, "/etc/gitopsd/gitopsd.json")) << serve.output;

  auto validate = RunGitopsd({"validate", "--help"});
  EXPECT_EQ(validate.exit_code, 0) << validate.output;
  EXPECT_TRUE(Contains(validate.output, "--format")) << validate.output;
  EXPECT_TRUE(Contains(validate.output, "--max-file-bytes")) << validate.output;
}

TEST(CliTest, VersionAndUsageErrors) {
  auto version = RunGitopsd({"version"});
  EXPECT_EQ(version.exit_code, 0);
  EXPECT_TRUE(Contains(version.output, "gitopsd ")) << version.output;
  EXPECT_EQ(RunGitopsd({}).exit_code, 2);
  EXPECT_EQ(RunGitopsd({"frobnicate"}).exit_code, 2);
  EXPECT_EQ(RunGitopsd({"serve", "--bogus"}).exit_code, 2);
  EXPECT_EQ(RunGitopsd({"serve", "--branch", "x"}).exit_code, 2) << "--branch needs --repo";
  EXPECT_EQ(RunGitopsd({"serve", "--config", "a.json", "--repo", "/tmp"}).exit_code, 2);
}

class ValidateCliTest : public ::testing::Test {
 protected:
  TempDir dir_{"validate"};
};

TEST_F(ValidateCliTest, AGoodFolderPasses) {
  ASSERT_TRUE(WriteTextFile(dir_.Sub(".gitops/templates/web.json"), kGoodTemplate));
  ASSERT_TRUE(WriteTextFile(dir_.Sub(".gitops/README.md"), "not json"));
  auto r = RunGitopsd({"validate", dir_.Sub(".gitops")});
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(Contains(r.output, "1 file checked, 0 problems")) << r.output;
}

TEST_F(ValidateCliTest, ProblemsArePrintedAsPathLineColumn) {
  ASSERT_TRUE(WriteTextFile(dir_.Sub(".gitops/templates/web.json"), kGoodTemplate));
  const std::string bad = dir_.Sub(".gitops/templates/bad.json");
  ASSERT_TRUE(WriteTextFile(bad, kBrokenTemplate));
  auto r = RunGitopsd({"validate", dir_.Sub(".gitops")});
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_TRUE(Contains(r.output, bad + ":3:3: error: ")) << r.output;
  EXPECT_TRUE(Contains(r.output, "[json-syntax]")) << r.output;
  EXPECT_TRUE(Contains(r.output, "2 files checked, 1 problem in 1 file")) << r.output;
}

TEST_F(ValidateCliTest, GithubFormatPrintsAnnotations) {
  const std::string bad = dir_.Sub("templates/bad.json");
  ASSERT_TRUE(WriteTextFile(bad, kBrokenTemplate));
  auto r = RunGitopsd({"validate", "--format", "github", bad});
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_TRUE(Contains(r.output, "::error file=" + bad + ",line=3,col=3,title=json-syntax::"))
      << r.output;
}

TEST_F(ValidateCliTest, KindComesFromTheFolderOrTheFile) {
  // No kind folder and no "kind": the kind is unknown.
  ASSERT_TRUE(WriteTextFile(dir_.Sub("loose/x.json"), kGoodTemplate));
  auto r = RunGitopsd({"validate", dir_.Sub("loose")});
  EXPECT_EQ(r.exit_code, 1) << r.output;
  ASSERT_TRUE(WriteTextFile(
      dir_.Sub("loose/x.json"),
      std::string("{\"kind\": \"Template\",") + std::string(kGoodTemplate).substr(1)));
  r = RunGitopsd({"validate", dir_.Sub("loose")});
  EXPECT_EQ(r.exit_code, 0) << r.output;
}

TEST_F(ValidateCliTest, TooLargeFilesAreRefused) {
  ASSERT_TRUE(WriteTextFile(dir_.Sub("templates/web.json"), kGoodTemplate));
  auto r = RunGitopsd({"validate", "--max-file-bytes", "10", dir_.Sub("templates")});
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_TRUE(Contains(r.output, "json-size")) << r.output;
}

TEST_F(ValidateCliTest, UsageErrorsExitWithTwo) {
  EXPECT_EQ(RunGitopsd({"validate"}).exit_code, 2);
  EXPECT_EQ(RunGitopsd({"validate", dir_.Sub("absent")}).exit_code, 2);
  ASSERT_TRUE(WriteTextFile(dir_.Sub("templates/web.json"), kGoodTemplate));
  EXPECT_EQ(RunGitopsd({"validate", "--format", "xml", dir_.Sub("templates")}).exit_code, 2);
}

class StartupFailureTest : public ::testing::Test {
 protected:
  CommandResult Serve(const std::string& config) {
    EXPECT_TRUE(WriteTextFile(dir_.Sub("gitopsd.json"), config));
    return RunGitopsd({"serve", "--config", dir_.Sub("gitopsd.json")});
  }
  TempDir dir_{"startup"};
};

TEST_F(StartupFailureTest, AnUnknownKeyIsNamedAndExitsWithTwo) {
  auto r = Serve("{\n  \"stateDir\": \"state\",\n  \"listn\": \"127.0.0.1:1\"\n}\n");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_TRUE(Contains(r.output, "listn")) << r.output;
  EXPECT_TRUE(Contains(r.output, dir_.Sub("gitopsd.json") + ":3:3")) << r.output;
  EXPECT_FALSE(std::filesystem::exists(dir_.Sub("state"))) << "nothing is created on a bad config";
}

TEST_F(StartupFailureTest, AMissingConfigFileExitsWithTwo) {
  auto r = RunGitopsd({"serve", "--config", dir_.Sub("absent.json")});
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_TRUE(Contains(r.output, "absent.json")) << r.output;
}

TEST_F(StartupFailureTest, AMissingTokensFileIsNamed) {
  auto r = Serve(R"({"stateDir": "state", "listen": "127.0.0.1:1", "apiTokensFile": "nope.json"})");
  EXPECT_NE(r.exit_code, 0) << r.output;
  EXPECT_TRUE(Contains(r.output, dir_.Sub("nope.json"))) << r.output;
}

TEST_F(StartupFailureTest, ACorruptStateDatabaseStopsTheStart) {
  ASSERT_TRUE(WriteTextFile(dir_.Sub("state/state.db"),
                            std::string(4096, 'x') + "this is not an SQLite database"));
  ASSERT_TRUE(WriteTextFile(dir_.Sub("gitopsd.json"),
                            "{\"stateDir\": \"state\", \"listen\": \"127.0.0.1:" +
                                std::to_string(FreeLoopbackPort()) + "\"}"));
  SpawnOptions options;
  options.output_file = dir_.Sub("out.log");
  auto p = Process::Start({GitopsdBinary(), "serve", "--config", dir_.Sub("gitopsd.json")}, options);
  ASSERT_TRUE(p.has_value()) << p.error().message;
  auto code = WaitForExit(*p, std::chrono::seconds(10));
  ASSERT_TRUE(code.has_value()) << "gitopsd kept running on a corrupt database:\n" << p->Output();
  EXPECT_NE(*code, 0);
  EXPECT_TRUE(Contains(p->Output(), "state.db")) << p->Output();
}

TEST_F(StartupFailureTest, AStateDatabaseFromANewerGitopsdIsRefused) {
  std::filesystem::create_directories(dir_.Sub("state"));
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(dir_.Sub("state/state.db").c_str(), &db), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(db, "PRAGMA user_version = 999", nullptr, nullptr, nullptr), SQLITE_OK);
  sqlite3_close(db);
  ASSERT_TRUE(WriteTextFile(dir_.Sub("gitopsd.json"),
                            "{\"stateDir\": \"state\", \"listen\": \"127.0.0.1:" +
                                std::to_string(FreeLoopbackPort()) + "\"}"));
  SpawnOptions options;
  options.output_file = dir_.Sub("out.log");
  auto p = Process::Start({GitopsdBinary(), "serve", "--config", dir_.Sub("gitopsd.json")}, options);
  ASSERT_TRUE(p.has_value()) << p.error().message;
  auto code = WaitForExit(*p, std::chrono::seconds(10));
  ASSERT_TRUE(code.has_value()) << "gitopsd kept running on a newer database:\n" << p->Output();
  EXPECT_NE(*code, 0);
  EXPECT_TRUE(Contains(p->Output(), "newer")) << p->Output();
}

}  // namespace
}  // namespace gitopsd::test
