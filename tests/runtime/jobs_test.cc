// Jobs against real processes: success and failure decided by the exit
// status, the active deadline, retries up to the backoff limit, and runs a
// crashed daemon left behind (settled, failed, or watched again).
#include "daemon/runtime/jobs.h"

#include <gtest/gtest.h>

#include <filesystem>

#include "daemon/runtime/launcher.h"
#include "sync/sqlite.h"
#include "tests/support/temp_dir.h"

namespace gitopsd::runtime {
namespace {

using namespace std::chrono_literals;
using test::ReadTextFile;
using test::TempDir;
using test::WriteTextFile;

class JobsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::filesystem::create_directories(build_dir_);
    ASSERT_TRUE(WriteTextFile(build_dir_ + "/count.sh",
                              "#!/bin/sh\nn=$(cat attempts 2>/dev/null || echo 0); n=$((n + 1)); echo $n > attempts\n"
                              "echo attempt $n; [ $n -ge \"$SUCCEED_AT\" ]\n"));
    std::filesystem::permissions(build_dir_ + "/count.sh", std::filesystem::perms::owner_all);
    Open();
  }

  void Open() {
    auto runner = ProcessJobRunner::Open(state_dir_, ProcessJobOptions{.stop_grace = 500ms, .poll_interval = 20ms});
    ASSERT_TRUE(runner) << runner.error().message;
    runner_ = std::move(*runner);
  }

  JobSpec Spec(std::vector<std::string> command, bool shell = false) {
    return JobSpec{.job = "migrate", .build = "api@abc", .build_dir = build_dir_, .command = std::move(command),
                   .shell = shell, .retry_delay = 10ms};
  }

  // Records a run as a crashed daemon would have left it.
  int64_t InsertRunningRun(const ProcessIdentity& process, const std::string& status_file) {
    auto db = sqlite::Database::Open(state_dir_ + "/state.db", false);
    EXPECT_TRUE(db) << db.error().message;
    auto st = db->Prepare(
        "INSERT INTO job_runs (job, build, status, attempts, log_path, status_file, started_at, pid, pid_start) "
        "VALUES ('migrate', 'api@abc', 'running', 1, ?1, ?2, 1, ?3, ?4)");
    EXPECT_TRUE(st);
    EXPECT_TRUE(st->Bind(1, dir_.Sub("old.log"))
                    .Bind(2, status_file)
                    .Bind(3, static_cast<int64_t>(process.pid))
                    .Bind(4, process.start_time)
                    .Run());
    return db->LastInsertRowId();
  }

  TempDir dir_{"jobs"};
  std::string state_dir_ = dir_.Sub("state");
  std::string build_dir_ = dir_.Sub("build/src");
  std::unique_ptr<ProcessJobRunner> runner_;
};

TEST_F(JobsTest, ASuccessfulRunIsRecordedWithItsEnvironmentAndLog) {
  JobSpec spec = Spec({"/bin/echo", "migrating", "$DATABASE_URL;"});
  spec.env = {{"DATABASE_URL", "postgres://db/app"}};
  auto run = runner_->Run(spec);
  ASSERT_TRUE(run) << run.error().message;
  EXPECT_TRUE(run->succeeded()) << run->error;
  EXPECT_EQ(run->attempts, 1);
  EXPECT_EQ(run->exit_code, 0);
  EXPECT_GT(run->ended_at, 0);
  EXPECT_NE(ReadTextFile(run->log_path).find("migrating $DATABASE_URL;\n"), std::string::npos);

  auto shell = Spec({"echo \"url=$DATABASE_URL\""}, true);
  shell.env = spec.env;
  auto second = runner_->Run(shell);
  ASSERT_TRUE(second) << second.error().message;
  EXPECT_NE(ReadTextFile(second->log_path).find("url=postgres://db/app"), std::string::npos);

  auto listed = runner_->List("migrate");
  ASSERT_TRUE(listed) << listed.error().message;
  ASSERT_EQ(listed->size(), 2u);
  EXPECT_EQ((*listed)[0].id, second->id);
  EXPECT_EQ((*listed)[1].build, "api@abc");
}

TEST_F(JobsTest, TheExitStatusDecidesFailure) {
  auto run = runner_->Run(Spec({"echo failing; exit 7"}, true));
  ASSERT_TRUE(run) << run.error().message;
  EXPECT_EQ(run->state, JobState::kFailed);
  EXPECT_EQ(run->exit_code, 7);
  EXPECT_EQ(run->error, "exit code 7");
  auto stored = runner_->Get(run->id);
  ASSERT_TRUE(stored && *stored);
  EXPECT_EQ((*stored)->state, JobState::kFailed);
  EXPECT_EQ((*stored)->exit_code, 7);
}

TEST_F(JobsTest, TheActiveDeadlineStopsTheRun) {
  JobSpec spec = Spec({"sleep 30"}, true);
  spec.active_deadline = 300ms;
  spec.backoff_limit = 3;
  auto started = std::chrono::steady_clock::now();
  auto run = runner_->Run(spec);
  ASSERT_TRUE(run) << run.error().message;
  EXPECT_LT(std::chrono::steady_clock::now() - started, 5s);
  EXPECT_EQ(run->state, JobState::kFailed);
  EXPECT_EQ(run->attempts, 1);  // no retry after the deadline
  EXPECT_NE(run->error.find("deadline exceeded"), std::string::npos) << run->error;
}

TEST_F(JobsTest, FailedAttemptsAreRetriedUpToTheBackoffLimit) {
  JobSpec spec = Spec({"./count.sh"});
  spec.env = {{"SUCCEED_AT", "99"}};
  spec.backoff_limit = 2;
  auto run = runner_->Run(spec);
  ASSERT_TRUE(run) << run.error().message;
  EXPECT_EQ(run->state, JobState::kFailed);
  EXPECT_EQ(run->attempts, 3);
  EXPECT_EQ(ReadTextFile(build_dir_ + "/attempts"), "3\n");
  std::string log = ReadTextFile(run->log_path);
  EXPECT_NE(log.find("attempt 3"), std::string::npos) << log;

  std::filesystem::remove(build_dir_ + "/attempts");
  spec.env = {{"SUCCEED_AT", "2"}};
  auto flaky = runner_->Run(spec);
  ASSERT_TRUE(flaky) << flaky.error().message;
  EXPECT_TRUE(flaky->succeeded()) << flaky->error;
  EXPECT_EQ(flaky->attempts, 2);
  EXPECT_EQ(ReadTextFile(build_dir_ + "/attempts"), "2\n");
}

TEST_F(JobsTest, ACommandThatCannotRunFailsTheRunNamingIt) {
  auto run = runner_->Run(Spec({"./missing.sh"}));
  ASSERT_TRUE(run) << run.error().message;
  EXPECT_EQ(run->state, JobState::kFailed);
  EXPECT_EQ(run->error, "cannot run ./missing.sh: not found");
  EXPECT_NE(ReadTextFile(run->log_path).find("not found"), std::string::npos);
}

TEST_F(JobsTest, ARunWhoseProcessDiedWithTheDaemonIsFailedOnRestart) {
  runner_.reset();
  auto gone = Child::Launch(LaunchSpec{.argv = {"/bin/true"}});
  ASSERT_TRUE(gone) << gone.error().message;
  ProcessIdentity identity = gone->identity();
  gone->Wait(std::nullopt, 1s);
  int64_t id = InsertRunningRun(identity, dir_.Sub("no-status"));
  Open();
  auto run = runner_->Get(id);
  ASSERT_TRUE(run && *run);
  EXPECT_EQ((*run)->state, JobState::kFailed);
  EXPECT_EQ((*run)->error, "the job's process died with the daemon");
}

TEST_F(JobsTest, ARunThatFinishedWhileTheDaemonWasDownIsSettledFromItsStatus) {
  runner_.reset();
  ASSERT_TRUE(WriteTextFile(dir_.Sub("status"), "0\n"));
  int64_t id = InsertRunningRun(ProcessIdentity{999999, 1}, dir_.Sub("status"));
  Open();
  auto run = runner_->Get(id);
  ASSERT_TRUE(run && *run);
  EXPECT_TRUE((*run)->succeeded()) << (*run)->error;
  EXPECT_EQ((*run)->exit_code, 0);
}

TEST_F(JobsTest, ARunWhoseProcessStillRunsIsWatchedAgain) {
  runner_.reset();
  const std::string status = dir_.Sub("status");
  auto still = Child::Launch(LaunchSpec{.argv = {"sleep 0.4; echo 3 > " + status}, .shell = true});
  ASSERT_TRUE(still) << still.error().message;
  int64_t id = InsertRunningRun(still->identity(), status);
  Open();
  auto during = runner_->Get(id);
  ASSERT_TRUE(during && *during);
  EXPECT_EQ((*during)->state, JobState::kRunning);
  auto after = runner_->WaitFor(id, 5s);
  ASSERT_TRUE(after) << after.error().message;
  EXPECT_EQ(after->state, JobState::kFailed);
  EXPECT_EQ(after->exit_code, 3);
  still->Wait(std::nullopt, 1s);
}

}  // namespace
}  // namespace gitopsd::runtime
