// The process launcher against real processes: argv without a shell, the
// shell only when asked, the exact environment, deadlines that take the
// whole process group, clear errors for what cannot run, log rotation.
#include "daemon/runtime/launcher.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <thread>
#include <vector>

#include "tests/support/temp_dir.h"

namespace gitopsd::runtime {
namespace {

using namespace std::chrono_literals;
using test::ReadTextFile;
using test::TempDir;
using test::WriteTextFile;

class LauncherTest : public ::testing::Test {
 protected:
  LaunchSpec Spec(std::vector<std::string> argv, bool shell = false) {
    return LaunchSpec{.argv = std::move(argv), .shell = shell, .cwd = dir_.path(), .env = {}, .log_file = log_};
  }
  TempDir dir_{"launcher"};
  std::string log_ = dir_.Sub("out.log");
};

TEST_F(LauncherTest, ArgvGoesToTheProgramWithoutAShell) {
  auto exit = RunToCompletion(Spec({"/bin/echo", "a;b", "$HOME", "`id`"}), 5s, 1s);
  ASSERT_TRUE(exit) << exit.error().message;
  EXPECT_TRUE(exit->ok()) << exit->Describe();
  EXPECT_EQ(ReadTextFile(log_), "a;b $HOME `id`\n");
}

TEST_F(LauncherTest, ProgramIsFoundOnPathAndRunsInItsFolder) {
  auto exit = RunToCompletion(Spec({"pwd"}), 5s, 1s);
  ASSERT_TRUE(exit) << exit.error().message;
  EXPECT_EQ(ReadTextFile(log_), std::filesystem::canonical(dir_.path()).string() + "\n");
}

TEST_F(LauncherTest, ShellOnlyWhenAskedWithStdoutAndStderrInTheLog) {
  auto exit = RunToCompletion(Spec({"echo one; echo two >&2; exit 3"}, /*shell=*/true), 5s, 1s);
  ASSERT_TRUE(exit) << exit.error().message;
  EXPECT_EQ(exit->exit_code, 3);
  EXPECT_FALSE(exit->ok());
  EXPECT_EQ(exit->Describe(), "exit code 3");
  EXPECT_EQ(ReadTextFile(log_), "one\ntwo\n");
}

TEST_F(LauncherTest, EnvironmentIsExactlyTheGivenVariablesPlusPathHomeLang) {
  setenv("GITOPSD_TEST_DAEMON_SECRET", "hunter2", 1);
  LaunchSpec spec = Spec({"/usr/bin/env"});
  spec.env = {{"DATABASE_URL", "postgres://x"}, {"ARG", "a b;c"}};
  auto exit = RunToCompletion(spec, 5s, 1s);
  unsetenv("GITOPSD_TEST_DAEMON_SECRET");
  ASSERT_TRUE(exit) << exit.error().message;
  std::set<std::string> keys;
  std::istringstream lines(ReadTextFile(log_));
  for (std::string line; std::getline(lines, line);) keys.insert(line.substr(0, line.find('=')));
  EXPECT_TRUE(keys.contains("DATABASE_URL"));
  EXPECT_TRUE(keys.contains("ARG"));
  EXPECT_TRUE(keys.contains("PATH"));
  EXPECT_FALSE(keys.contains("GITOPSD_TEST_DAEMON_SECRET"));
  for (const std::string& key : keys) {
    EXPECT_TRUE(key == "DATABASE_URL" || key == "ARG" || key == "PATH" || key == "HOME" || key == "LANG") << key;
  }
  EXPECT_NE(ReadTextFile(log_).find("ARG=a b;c\n"), std::string::npos);
}

TEST_F(LauncherTest, DeadlineStopsTheWholeGroupIncludingAGrandchild) {
  const std::string pid_file = dir_.Sub("grandchild.pid");
  auto started = std::chrono::steady_clock::now();
  auto exit = RunToCompletion(Spec({"sleep 30 & echo $! > " + pid_file + "; wait"}, true), 300ms, 500ms);
  ASSERT_TRUE(exit) << exit.error().message;
  EXPECT_TRUE(exit->timed_out);
  EXPECT_NE(exit->signal, 0);
  EXPECT_LT(std::chrono::steady_clock::now() - started, 3s);
  pid_t grandchild = std::stoi(ReadTextFile(pid_file));
  for (int i = 0; i < 200 && ProcessStartTime(grandchild); ++i) std::this_thread::sleep_for(10ms);
  EXPECT_FALSE(ProcessStartTime(grandchild).has_value()) << "grandchild " << grandchild << " survived";
}

TEST_F(LauncherTest, AbandonStopsTheGroupAndSaysSo) {
  std::atomic<bool> abandon{false};
  std::thread later([&] {
    std::this_thread::sleep_for(150ms);
    abandon = true;
  });
  auto started = std::chrono::steady_clock::now();
  auto exit = RunToCompletion(Spec({"sleep 30"}, true), 20s, 500ms, [&] { return abandon.load(); });
  later.join();
  ASSERT_TRUE(exit) << exit.error().message;
  EXPECT_TRUE(exit->abandoned);
  EXPECT_FALSE(exit->timed_out);
  EXPECT_FALSE(exit->ok());
  EXPECT_LT(std::chrono::steady_clock::now() - started, 3s);
  EXPECT_EQ(exit->Describe().rfind("stopped on request (", 0), 0u) << exit->Describe();
}

TEST_F(LauncherTest, LeftoversOfAGroupDieWhenItsLeaderExits) {
  const std::string pid_file = dir_.Sub("bg.pid");
  auto exit = RunToCompletion(Spec({"sleep 30 & echo $! > " + pid_file}, true), 5s, 500ms);
  ASSERT_TRUE(exit) << exit.error().message;
  EXPECT_TRUE(exit->ok());
  pid_t background = std::stoi(ReadTextFile(pid_file));
  for (int i = 0; i < 200 && ProcessStartTime(background); ++i) std::this_thread::sleep_for(10ms);
  EXPECT_FALSE(ProcessStartTime(background).has_value());
}

TEST_F(LauncherTest, WhatCannotRunIsAClearErrorNamingIt) {
  auto missing = Child::Launch(Spec({"gitopsd-no-such-program", "x"}));
  ASSERT_FALSE(missing);
  EXPECT_NE(missing.error().message.find("cannot run gitopsd-no-such-program: not found"), std::string::npos)
      << missing.error().message;

  ASSERT_TRUE(WriteTextFile(dir_.Sub("script.sh"), "#!/bin/sh\necho hi\n"));
  auto denied = Child::Launch(Spec({"./script.sh"}));
  ASSERT_FALSE(denied);
  EXPECT_EQ(denied.error().message, "cannot run ./script.sh: permission denied");

  LaunchSpec nowhere = Spec({"/bin/true"});
  nowhere.cwd = dir_.Sub("missing");
  auto no_cwd = Child::Launch(nowhere);
  ASSERT_FALSE(no_cwd);
  EXPECT_NE(no_cwd.error().message.find("working folder " + dir_.Sub("missing") + " does not exist"),
            std::string::npos);

  chmod(dir_.Sub("script.sh").c_str(), 0755);
  auto runs = RunToCompletion(Spec({"./script.sh"}), 5s, 1s);
  ASSERT_TRUE(runs) << runs.error().message;
  EXPECT_TRUE(runs->ok());
}

TEST_F(LauncherTest, IdentityTellsARunningProcessFromAnEndedOne) {
  auto child = Child::Launch(Spec({"sleep", "30"}));
  ASSERT_TRUE(child) << child.error().message;
  ProcessIdentity id = child->identity();
  EXPECT_TRUE(IsRunning(id));
  EXPECT_FALSE(IsRunning(ProcessIdentity{id.pid, id.start_time + 1}));
  EXPECT_FALSE(child->TryWait().has_value());
  ExitStatus stopped = child->Stop(1s);
  EXPECT_EQ(stopped.signal, SIGTERM);
  EXPECT_FALSE(IsRunning(id));
}

TEST_F(LauncherTest, TerminateGroupStopsAProcessKnownOnlyByItsIdentity) {
  auto child = Child::Launch(Spec({"trap '' TERM; sleep 30 & wait; sleep 30"}, true));  // ignores TERM
  ASSERT_TRUE(child) << child.error().message;
  ProcessIdentity id = child->Release();
  std::this_thread::sleep_for(50ms);
  TerminateGroup(id, 200ms);
  EXPECT_FALSE(IsRunning(id));
}

TEST_F(LauncherTest, LogsRotateByCopyAndTruncateKeepingN) {
  const std::string log = dir_.Sub("svc.log");
  ASSERT_TRUE(WriteTextFile(log, std::string(100, 'a')));
  EXPECT_FALSE(RotateLogIfLarger(log, 100, 2));
  ASSERT_TRUE(WriteTextFile(log, std::string(101, 'a')));
  EXPECT_TRUE(RotateLogIfLarger(log, 100, 2));
  EXPECT_EQ(ReadTextFile(log), "");
  EXPECT_EQ(ReadTextFile(log + ".1").size(), 101u);
  ASSERT_TRUE(WriteTextFile(log, std::string(150, 'b')));
  EXPECT_TRUE(RotateLogIfLarger(log, 100, 2));
  ASSERT_TRUE(WriteTextFile(log, std::string(150, 'c')));
  EXPECT_TRUE(RotateLogIfLarger(log, 100, 2));
  EXPECT_EQ(ReadTextFile(log + ".1"), std::string(150, 'c'));
  EXPECT_EQ(ReadTextFile(log + ".2"), std::string(150, 'b'));
  EXPECT_FALSE(std::filesystem::exists(log + ".3"));
}

TEST_F(LauncherTest, AFollowerHandsOverNewCompleteLinesAndStartsAgainAfterARotation) {
  const std::string log = dir_.Sub("follow.log");
  ASSERT_TRUE(WriteTextFile(log, "written before\n"));
  std::vector<std::string> lines;
  LogFollower follow(log, [&](std::string_view line) { lines.emplace_back(line); });
  follow.Poll();
  EXPECT_TRUE(lines.empty()) << "it starts at the end";
  {
    std::ofstream out(log, std::ios::app);
    out << "one\ntwo\nthr";
  }
  follow.Poll();
  EXPECT_EQ(lines, (std::vector<std::string>{"one", "two"}));
  {
    std::ofstream out(log, std::ios::app);
    out << "ee\n";
  }
  follow.Poll();
  EXPECT_EQ(lines.back(), "three");
  ASSERT_TRUE(WriteTextFile(log, "after rotation\nlast"));  // shorter: truncated and written again
  follow.Flush();
  EXPECT_EQ(lines, (std::vector<std::string>{"one", "two", "three", "after rotation", "last"}));
}

TEST_F(LauncherTest, TailGivesTheLastLines) {
  const std::string file = dir_.Sub("t.log");
  ASSERT_TRUE(WriteTextFile(file, "1\n2\n3\n4\n"));
  EXPECT_EQ(ReadTail(file, 2), "3\n4");
  EXPECT_EQ(ReadTail(file, 10), "1\n2\n3\n4");
  EXPECT_EQ(ReadTail(dir_.Sub("none"), 3), "");
}

}  // namespace
}  // namespace gitopsd::runtime
