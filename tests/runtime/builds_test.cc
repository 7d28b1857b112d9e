// Builds against a real fixture repository: the commit's tree is exported
// with libgit2 (modes and symlinks kept), the build command runs in it, a
// success is cached by commit, failures keep their exit status and log
// tail, a timeout stops the build, and a crash never leaves a "running" build.
#include "daemon/runtime/builds.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>

#include "daemon/runtime/launcher.h"
#include "sync/git.h"
#include "sync/sqlite.h"
#include "tests/support/git_servers.h"
#include "tests/support/temp_dir.h"

namespace gitopsd::runtime {
namespace {

using namespace std::chrono_literals;
using test::FixtureRepo;
using test::ReadTextFile;
using test::TempDir;

class BuildsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // build.sh counts its runs in a file outside the build folder.
    ASSERT_TRUE(origin_.WriteFile("build.sh", "#!/bin/sh\nn=$(cat \"$COUNTER\" 2>/dev/null || echo 0)\n"
                                              "echo $((n + 1)) > \"$COUNTER\"\necho building in $(pwd)\n"
                                              "cat app/version.txt > out.txt\n"));
    ASSERT_TRUE(origin_.MakeExecutable("build.sh"));
    ASSERT_TRUE(origin_.WriteFile("app/version.txt", "v1\n"));
    ASSERT_TRUE(origin_.Symlink("app/version.txt", "VERSION"));
    commit_ = origin_.Commit("first");
    ASSERT_FALSE(commit_.empty());
    ASSERT_TRUE(origin_.Push());
    auto mirror = git::Repository::OpenOrInit(dir_.Sub("mirror.git"), origin_.file_url());
    ASSERT_TRUE(mirror) << mirror.error().message;
    mirror_.emplace(std::move(*mirror));
    auto fetched = mirror_->Fetch("main", {});
    ASSERT_TRUE(fetched) << fetched.error().message;
    ASSERT_EQ(*fetched, commit_);
    auto runner = ProcessBuildRunner::Open(state_dir_);
    ASSERT_TRUE(runner) << runner.error().message;
    runner_ = std::move(*runner);
  }

  BuildSpec Spec() {
    return BuildSpec{.service = "web", .command = {"./build.sh"}, .env = {{"COUNTER", counter_}}, .timeout = 10s};
  }

  TempDir dir_{"builds"};
  FixtureRepo origin_{dir_.path(), "app"};
  std::optional<git::Repository> mirror_;
  std::string commit_;
  std::string state_dir_ = dir_.Sub("state");
  std::string counter_ = dir_.Sub("counter");
  std::unique_ptr<ProcessBuildRunner> runner_;
};

TEST_F(BuildsTest, ExportTreeWritesFilesModesAndSymlinks) {
  const std::string out = dir_.Sub("export/tree");
  auto exported = mirror_->ExportTree(commit_, out);
  ASSERT_TRUE(exported) << exported.error().message;
  EXPECT_EQ(ReadTextFile(out + "/app/version.txt"), "v1\n");
  struct stat st {};
  ASSERT_EQ(stat((out + "/build.sh").c_str(), &st), 0);
  EXPECT_NE(st.st_mode & S_IXUSR, 0u);
  ASSERT_EQ(stat((out + "/app/version.txt").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & S_IXUSR, 0u);
  ASSERT_TRUE(std::filesystem::is_symlink(out + "/VERSION"));
  EXPECT_EQ(std::filesystem::read_symlink(out + "/VERSION").string(), "app/version.txt");
  EXPECT_FALSE(std::filesystem::exists(out + "/.git"));
  EXPECT_FALSE(std::filesystem::exists(dir_.Sub("mirror.git/index"))) << "the mirror has no index";

  auto again = mirror_->ExportTree(commit_, out);
  ASSERT_FALSE(again);
  EXPECT_NE(again.error().message.find("not empty"), std::string::npos);
  auto unknown = mirror_->ExportTree(std::string(40, 'e'), dir_.Sub("export/none"));
  ASSERT_FALSE(unknown);
  EXPECT_NE(unknown.error().message.find("not in the mirror"), std::string::npos);
}

TEST_F(BuildsTest, BuildRunsInTheCheckoutAndASecondBuildOfTheCommitIsCached) {
  auto first = runner_->Build(Spec(), *mirror_, commit_);
  ASSERT_TRUE(first) << first.error().message;
  EXPECT_TRUE(first->succeeded()) << first->error << "\n" << first->log_tail;
  EXPECT_FALSE(first->cached);
  EXPECT_EQ(first->dir, state_dir_ + "/builds/web/" + commit_ + "/src");
  EXPECT_EQ(ReadTextFile(first->dir + "/out.txt"), "v1\n");
  EXPECT_EQ(first->exit_code, 0);
  EXPECT_NE(ReadTextFile(first->log_path).find("building in " + first->dir), std::string::npos);
  EXPECT_EQ(ReadTextFile(counter_), "1\n");

  auto second = runner_->Build(Spec(), *mirror_, commit_);
  ASSERT_TRUE(second) << second.error().message;
  EXPECT_TRUE(second->succeeded());
  EXPECT_TRUE(second->cached);
  EXPECT_EQ(ReadTextFile(counter_), "1\n");

  // The cache survives the daemon.
  runner_.reset();
  auto reopened = ProcessBuildRunner::Open(state_dir_);
  ASSERT_TRUE(reopened) << reopened.error().message;
  auto third = (*reopened)->Build(Spec(), *mirror_, commit_);
  ASSERT_TRUE(third) << third.error().message;
  EXPECT_TRUE(third->cached);
  EXPECT_EQ(ReadTextFile(counter_), "1\n");
}

TEST_F(BuildsTest, AFailedBuildIsRecordedWithItsExitCodeAndLogTailAndRetried) {
  BuildSpec spec = Spec();
  spec.command = {"echo compiling; echo 'error: main.c:3: boom' >&2; exit 2"};
  spec.shell = true;
  auto failed = runner_->Build(spec, *mirror_, commit_);
  ASSERT_TRUE(failed) << failed.error().message;
  EXPECT_EQ(failed->state, BuildState::kFailed);
  EXPECT_EQ(failed->exit_code, 2);
  EXPECT_NE(failed->error.find("exit code 2"), std::string::npos) << failed->error;
  EXPECT_NE(failed->log_tail.find("error: main.c:3: boom"), std::string::npos) << failed->log_tail;
  auto found = runner_->Find("web", commit_);
  ASSERT_TRUE(found && *found);
  EXPECT_EQ((*found)->state, BuildState::kFailed);
  EXPECT_NE((*found)->log_tail.find("boom"), std::string::npos);

  auto fixed = runner_->Build(Spec(), *mirror_, commit_);  // not cached: built again
  ASSERT_TRUE(fixed) << fixed.error().message;
  EXPECT_TRUE(fixed->succeeded());
  EXPECT_EQ(fixed->attempts, 2);
  EXPECT_EQ(ReadTextFile(counter_), "1\n");
}

TEST_F(BuildsTest, ATimeoutStopsTheBuild) {
  BuildSpec spec = Spec();
  spec.command = {"sleep 30"};
  spec.shell = true;
  spec.timeout = 300ms;
  auto started = std::chrono::steady_clock::now();
  auto result = runner_->Build(spec, *mirror_, commit_);
  ASSERT_TRUE(result) << result.error().message;
  EXPECT_LT(std::chrono::steady_clock::now() - started, 5s);
  EXPECT_EQ(result->state, BuildState::kFailed);
  EXPECT_NE(result->error.find("timed out after 300ms"), std::string::npos) << result->error;
  EXPECT_FALSE(result->exit_code.has_value());
}

TEST_F(BuildsTest, ACommandThatCannotRunFailsTheBuildNamingIt) {
  BuildSpec spec = Spec();
  spec.command = {"./no-such-build-script"};
  auto result = runner_->Build(spec, *mirror_, commit_);
  ASSERT_TRUE(result) << result.error().message;
  EXPECT_EQ(result->state, BuildState::kFailed);
  EXPECT_EQ(result->error, "cannot run ./no-such-build-script: not found");
}

TEST_F(BuildsTest, ABuildLeftRunningByACrashedDaemonIsFailedAsInterrupted) {
  runner_.reset();
  {
    auto db = sqlite::Database::Open(state_dir_ + "/state.db", false);
    ASSERT_TRUE(db) << db.error().message;
    ASSERT_TRUE(db->Exec("INSERT INTO builds (service, commit_id, status, started_at, log_path, dir, attempts) "
                         "VALUES ('web', '" + commit_ + "', 'running', 1, '/x/build.log', '/x/src', 1)"));
  }
  auto reopened = ProcessBuildRunner::Open(state_dir_);
  ASSERT_TRUE(reopened) << reopened.error().message;
  auto found = (*reopened)->Find("web", commit_);
  ASSERT_TRUE(found && *found);
  EXPECT_EQ((*found)->state, BuildState::kFailed);
  EXPECT_NE((*found)->error.find("interrupted"), std::string::npos);
  auto rebuilt = (*reopened)->Build(Spec(), *mirror_, commit_);
  ASSERT_TRUE(rebuilt) << rebuilt.error().message;
  EXPECT_TRUE(rebuilt->succeeded());
  EXPECT_FALSE(rebuilt->cached);
}

TEST_F(BuildsTest, BadNamesAndCommitsAreRefusedBeforeAnythingRuns) {
  BuildSpec spec = Spec();
  spec.service = "../escape";
  EXPECT_FALSE(runner_->Build(spec, *mirror_, commit_));
  EXPECT_FALSE(runner_->Build(Spec(), *mirror_, "main"));
  auto missing = runner_->Build(Spec(), *mirror_, std::string(40, 'a'));
  ASSERT_FALSE(missing);
  EXPECT_NE(missing.error().message.find("not in the mirror"), std::string::npos);
  EXPECT_FALSE(std::filesystem::exists(counter_));
}

}  // namespace
}  // namespace gitopsd::runtime
