// A release cut off by kill -9: the example shop, whose migration job takes a
// few seconds, released through the production flow; the daemon is killed
// (SIGKILL) while the JobRun node runs, then started again on the same
// state. The run must end in a definite state (never hang), the job must
// have run exactly once (it appends to a marker file), and the shop's web
// service must never run twice: the restarted daemon adopts the process the
// first one left, and the release then replaces it with exactly one new one.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "tests/daemon/run_waits.h"
#include "tests/daemon/shop_fixture.h"

namespace gitopsd::test {
namespace {

namespace fs = std::filesystem;

// Processes holding a listening TCP socket on `port` (any address).
std::set<pid_t> Listeners(int port) {
  std::set<std::string> inodes;
  for (const char* table : {"/proc/net/tcp", "/proc/net/tcp6"}) {
    std::istringstream lines(ReadTextFile(table));
    std::string line;
    std::getline(lines, line);  // the header
    while (std::getline(lines, line)) {
      std::istringstream fields(line);
      std::string slot, local, remote, state, queues, timer, retransmits, uid, timeout, inode;
      fields >> slot >> local >> remote >> state >> queues >> timer >> retransmits >> uid >> timeout >> inode;
      const size_t colon = local.rfind(':');
      if (state != "0A" || colon == std::string::npos) continue;  // 0A: LISTEN
      if (std::stoi(local.substr(colon + 1), nullptr, 16) == port) inodes.insert(inode);
    }
  }
  std::set<pid_t> pids;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator("/proc", ec)) {
    const std::string name = entry.path().filename().string();
    if (name.empty() || !std::all_of(name.begin(), name.end(), ::isdigit)) continue;
    std::error_code fd_ec;
    for (const auto& fd : fs::directory_iterator(entry.path() / "fd", fd_ec)) {
      std::error_code link_ec;
      const std::string target = fs::read_symlink(fd.path(), link_ec).string();
      if (!link_ec && target.starts_with("socket:[") &&
          inodes.contains(target.substr(8, target.size() - 9))) {
        pids.insert(static_cast<pid_t>(std::stol(name)));
      }
    }
  }
  return pids;
}

int CountLines(const std::string& path) {
  const std::string text = ReadTextFile(path);
  return static_cast<int>(std::count(text.begin(), text.end(), '\n'));
}

// When the second daemon starts: while the job still runs (it adopts the
// job's process), or once the job has ended on its own (it settles the run
// from the exit status the job's wrapper left). kAfterATerm: the first
// daemon is stopped by SIGTERM (systemctl stop) instead of killed; it parks
// the run at its node and exits 0 at once, without waiting for the job.
enum class Restart { kWhileTheJobRuns, kAfterTheJobEnded, kAfterATerm };

class RunCrashTest : public ShopFixture, public ::testing::WithParamInterface<Restart> {
 protected:
  RunCrashTest() : ShopFixture("run-crash") {}

  void SetUp() override {
    ASSERT_TRUE(CopyShop());
    // The migration job, slowed down and counted: a shell command, written
    // as the executor wants it (argv ["sh", "-c", script]).
    const std::string template_path = repo_.work_path() + "/.gitops/templates/shop.json";
    std::string shop = ReadTextFile(template_path);
    const std::string migrate = R"("command": ["bin/shop", "migrate"])";
    ASSERT_EQ(shop.find(migrate), shop.rfind(migrate)) << "one migration command in " << template_path;
    ASSERT_NE(shop.find(migrate), std::string::npos) << template_path;
    shop.replace(shop.find(migrate), migrate.size(),
                 R"("command": ["sh", "-c", "echo started >> ')" + marker() +
                     R"(' && bin/shop migrate && sleep 3"])");
    ASSERT_TRUE(repo_.WriteFile(".gitops/templates/shop.json", shop));
    ASSERT_TRUE(CommitShop("the shop, with a slow migration"));
    ASSERT_TRUE(WriteTokens());
    ASSERT_TRUE(StartDaemon(Config()));
  }

  std::string Config() const { return ShopConfig(PortRange()); }
  // Each case its own ports: ctest runs the cases in parallel processes, and
  // two daemons handing out one range would race for the same free port.
  Ports PortRange() const {
    // (23800-23999 belongs to previews_more_test.)
    const int first = GetParam() == Restart::kAfterTheJobEnded ? 23500
                      : GetParam() == Restart::kAfterATerm     ? 23300
                                                               : 23000;
    return {first, first + (first == 23300 ? 199 : 299)};
  }
  std::string marker() const { return dir_.Sub("migrations.marker"); }

  json::Value Concluded(int64_t id, std::chrono::seconds timeout) { return test::Concluded(daemon_, id, timeout); }
  // With the daemon's output: a restart's trouble shows there.
  std::string Explain(const json::Value& run) { return test::Explain(daemon_, run) + "\n" + daemon_.Output(); }

  std::vector<pid_t> ShopServers() { return ProcessesIn(daemon_.state_dir(), "bin/shop serve"); }
};

TEST_P(RunCrashTest, AKillDuringAJobRunEndsTheRunOnceWithOneService) {
  auto runs = daemon_.Get("/api/v1/runs?flow=shop").Json();
  ASSERT_TRUE(runs && runs->Find("runs") && runs->Find("runs")->items().size() == 1) << daemon_.Output();
  const json::Value setup =
      Concluded(static_cast<int64_t>(NumberField(runs->Find("runs")->items()[0], "id")), std::chrono::seconds(30));
  ASSERT_EQ(StringField(setup, "status"), "success") << Explain(setup);
  ASSERT_TRUE(WaitUntil([&] { return ServedVersion() == "1"; }, std::chrono::seconds(10))) << daemon_.Output();
  const auto first_web = static_cast<pid_t>(NumberField(ProductionWeb(), "pid"));
  ASSERT_EQ(ShopServers(), std::vector<pid_t>{first_web});
  ASSERT_EQ(CountLines(marker()), 0) << "declaring the job does not run it";

  // A release, which the test starts itself; the daemon dies while its
  // migration job runs.
  ASSERT_FALSE(CommitVersion("2").empty());
  ASSERT_TRUE(repo_.Push());
  ASSERT_EQ(daemon_.Post("/api/v1/repositories/shop/sync", Writer()).status, 200);
  auto started = daemon_.Post("/api/v1/release-flows/production/runs", Writer(), "{}");
  ASSERT_EQ(started.status, 201) << started.body;
  const auto id = static_cast<int64_t>(NumberField(*started.Json(), "id"));
  ASSERT_TRUE(WaitUntil([&] { return CountLines(marker()) > 0; }, std::chrono::seconds(15)))
      << Explain(Run(id));
  const bool term = GetParam() == Restart::kAfterATerm;
  ASSERT_EQ(::kill(daemon_.process().pid(), term ? SIGTERM : SIGKILL), 0);
  std::optional<int> status = WaitForExit(daemon_.process(), std::chrono::seconds(5));
  ASSERT_TRUE(status.has_value()) << "the daemon did not end within 5 s: " << daemon_.Output();
  if (term) {
    EXPECT_EQ(*status, 0) << "a clean exit: " << daemon_.Output();
    EXPECT_TRUE(Contains(daemon_.Output(), "received SIGTERM, shutting down")) << daemon_.Output();
    EXPECT_TRUE(Contains(daemon_.Output(), "stopped")) << daemon_.Output();
  }
  const auto killed_at = std::chrono::steady_clock::now();
  EXPECT_EQ(ShopServers(), std::vector<pid_t>{first_web}) << "the service outlives the daemon";
  EXPECT_FALSE(ProcessesIn(daemon_.state_dir(), "sleep 3").empty()) << "the kill hit the job's middle" << daemon_.Output();
  if (GetParam() == Restart::kAfterTheJobEnded) {
    ASSERT_TRUE(WaitUntil([&] { return ProcessesIn(daemon_.state_dir(), "sleep 3").empty(); },
                          std::chrono::seconds(10)))
        << "the job did not end without the daemon";
  }

  // Started again on the same state: the old service is adopted, not doubled.
  ASSERT_TRUE(StartDaemon(Config()));
  EXPECT_EQ(static_cast<pid_t>(NumberField(ProductionWeb(), "pid")), first_web) << daemon_.Output();
  // (How many servers run right now is not asserted: under load the adopted
  // one may be mid-restart by its supervisor. Once the run has ended there
  // must be exactly one; that is checked below.)

  // The run ends, definitely, within the job's time and a little more.
  const json::Value run = Concluded(id, std::chrono::seconds(20));
  ASSERT_TRUE(run.Find("concluded") && run.Find("concluded")->as_bool())
      << "the run hangs after the restart: " << Explain(run);
  const auto ended_after = std::chrono::duration_cast<std::chrono::milliseconds>(
      std::chrono::steady_clock::now() - killed_at);
  const std::string outcome = StringField(run, "status");
  if (outcome != "success") {
    EXPECT_FALSE(StringField(run, "error").empty()) << "a failure says why: " << Explain(run);
  }
  EXPECT_EQ(outcome, "success") << "the job outlived the daemon and exited 0: " << Explain(run);
  EXPECT_EQ(CountLines(marker()), 1) << "the job ran exactly once";
  auto jobs = daemon_.Get("/api/v1/jobs").Json();
  ASSERT_TRUE(jobs && jobs->Find("jobs"));
  int migrate_runs = 0;
  for (const auto& j : jobs->Find("jobs")->items()) {
    if (StringField(j, "job") == "shop-migrate") {
      ++migrate_runs;
      EXPECT_EQ(StringField(j, "state"), "succeeded") << json::SerializeCompact(j);
    }
  }
  EXPECT_EQ(migrate_runs, 1) << json::SerializeCompact(*jobs);

  // Exactly one web server: the new version's, alone on its port.
  EXPECT_EQ(ServedVersion(), "2") << Explain(run);
  const json::Value web = ProductionWeb();
  const auto web_pid = static_cast<pid_t>(NumberField(web, "pid"));
  EXPECT_NE(web_pid, first_web) << "the release replaced the adopted server";
  EXPECT_EQ(ShopServers(), std::vector<pid_t>{web_pid}) << "no duplicate shop server";
  EXPECT_EQ(Listeners(static_cast<int>(NumberField(web, "port"))), std::set<pid_t>{web_pid});
  RecordProperty("run_end_after_kill_ms", std::to_string(ended_after.count()));
}

INSTANTIATE_TEST_SUITE_P(Restarts, RunCrashTest,
                         ::testing::Values(Restart::kWhileTheJobRuns, Restart::kAfterTheJobEnded,
                                           Restart::kAfterATerm),
                         [](const ::testing::TestParamInfo<Restart>& info) {
                           switch (info.param) {
                             case Restart::kWhileTheJobRuns: return std::string("WhileTheJobRuns");
                             case Restart::kAfterTheJobEnded: return std::string("AfterTheJobEnded");
                             case Restart::kAfterATerm: return std::string("AfterATerm");
                           }
                           return std::string("Unknown");
                         });

}  // namespace
}  // namespace gitopsd::test
