// The daemon as systemd runs it: SIGHUP reloads the configuration file
// (repositories added and removed without a restart, API tokens re-read, a
// bad file refused with the running configuration kept), and the service
// protocol (READY=1, STATUS=, WATCHDOG=1, RELOADING=1, STOPPING=1) heard on
// a real AF_UNIX datagram socket, as systemd's $NOTIFY_SOCKET.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <cstring>

#include "tests/daemon/write_fixture.h"

namespace gitopsd::test {
namespace {

using std::chrono::seconds;

constexpr const char* kNewToken = "rotated-token-8901";

class LifecycleTest : public WriteFixture {
 protected:
  void SetUp() override {
    WriteFixture::SetUp();
    if (HasFatalFailure()) return;
    ASSERT_TRUE(billing_.WriteFile(".gitops/templates/invoice.json", TemplateJson("invoice", "billing v1")));
    ASSERT_FALSE(billing_.Commit("billing").empty());
    ASSERT_TRUE(billing_.Push());
  }

  static std::string Repository(const std::string& name, const FixtureRepo& repo) {
    return "{\"name\": \"" + name + "\", \"url\": \"" + repo.file_url() +
           "\", \"pollInterval\": \"1h\", \"sync\": {\"writeBack\": true}}";
  }

  // The configuration with these repositories, on the running daemon's port.
  std::string ConfigWith(const std::vector<std::string>& repositories, const std::string& listen = "") const {
    std::string list;
    for (const std::string& r : repositories) list += (list.empty() ? "" : ", ") + r;
    return "{\"stateDir\": \"" + daemon_.state_dir() + "\", \"listen\": \"" +
           (listen.empty() ? "127.0.0.1:" + std::to_string(daemon_.port()) : listen) +
           "\", \"apiTokensFile\": \"tokens.json\", \"repositories\": [" + list +
           "], \"log\": {\"level\": \"debug\"}}\n";
  }

  // Rewrites the configuration file and sends SIGHUP.
  void Reload(const std::string& config) {
    ASSERT_TRUE(WriteTextFile(daemon_.config_path(), config));
    ASSERT_EQ(::kill(daemon_.process().pid(), SIGHUP), 0);
  }

  ::testing::AssertionResult LogSays(const std::string& text, size_t times = 1) {
    auto count = [&] {
      const std::string out = daemon_.Output();
      size_t n = 0;
      for (size_t at = out.find(text); at != std::string::npos; at = out.find(text, at + 1)) ++n;
      return n;
    };
    if (WaitUntil([&] { return count() >= times; }, seconds(20))) return ::testing::AssertionSuccess();
    return ::testing::AssertionFailure() << "the log never says \"" << text << "\" " << times << " time(s):\n"
                                         << daemon_.Output();
  }

  std::vector<std::string> SyncedRepositories() {
    std::vector<std::string> names;
    auto sync = daemon_.Get("/api/v1/sync").Json();
    if (sync && sync->Find("repositories")) {
      for (const json::Value& r : sync->Find("repositories")->items()) names.push_back(StringField(r, "name"));
    }
    return names;
  }

  FixtureRepo billing_{dir_.path(), "billing"};
};

TEST_F(LifecycleTest, ASighupAddsAndRemovesRepositoriesWithoutARestart) {
  ASSERT_TRUE(Start());
  const pid_t pid = daemon_.process().pid();
  EXPECT_EQ(SyncedRepositories(), std::vector<std::string>{"shop"});
  EXPECT_EQ(daemon_.Get("/api/v1/objects/templates/invoice").status, 404);

  Reload(ConfigWith({Repository("shop", repo_), Repository("billing", billing_)}));
  ASSERT_TRUE(WaitUntil([&] { return daemon_.Get("/api/v1/objects/templates/invoice").status == 200; }, seconds(20)))
      << daemon_.Output();
  EXPECT_EQ(SyncedRepositories(), (std::vector<std::string>{"billing", "shop"}));
  EXPECT_TRUE(LogSays("configuration reloaded: 2 repositories"));
  EXPECT_EQ(daemon_.process().pid(), pid);
  EXPECT_TRUE(daemon_.process().Running()) << "the same process, never restarted";
  // The new repository syncs both ways: an edit through the API is pushed.
  ASSERT_EQ(daemon_.Put("/api/v1/objects/templates/invoice", Writer(), TemplateJson("invoice", "billing v2")).status,
            200);
  ASSERT_TRUE(WaitUntil([&] {
    return billing_.Git({"fetch", "-q", "origin"}).ok() &&
           Contains(billing_.Git({"show", "origin/main:.gitops/templates/invoice.json"}).output, "billing v2");
  }, seconds(20))) << daemon_.Output();

  // shop goes: no longer synced, a sync request for it is 404; the process
  // stays the same and billing keeps syncing.
  Reload(ConfigWith({Repository("billing", billing_)}));
  ASSERT_TRUE(LogSays("repository shop: removed by the reload"));
  ASSERT_TRUE(LogSays("configuration reloaded: 1 repositories"));
  EXPECT_EQ(SyncedRepositories(), std::vector<std::string>{"billing"});
  EXPECT_EQ(daemon_.Post("/api/v1/repositories/shop/sync", Writer()).status, 404);
  const std::string metrics = daemon_.Get("/metrics").body;
  EXPECT_FALSE(Contains(metrics, "repository=\"shop\"")) << "its series are gone";
  EXPECT_TRUE(Contains(metrics, "repository=\"billing\"")) << metrics;
  ASSERT_TRUE(billing_.Git({"pull", "-q", "--ff-only", "origin", "main"}).ok());
  ASSERT_TRUE(billing_.WriteFile(".gitops/templates/invoice.json", TemplateJson("invoice", "billing v3")));
  ASSERT_FALSE(billing_.Commit("billing v3").empty());
  ASSERT_TRUE(billing_.Push());
  ASSERT_EQ(daemon_.Post("/api/v1/repositories/billing/sync", Writer()).status, 200);
  EXPECT_EQ(Description("invoice"), "billing v3");
  EXPECT_EQ(daemon_.process().pid(), pid);
}

TEST_F(LifecycleTest, ABadConfigurationIsRefusedWholeAndTheRunningOneStays) {
  ASSERT_TRUE(Start());

  // Not JSON: refused, naming the file and the line.
  Reload("{\"stateDir\": \"x\",\n  \"repositories\": [\n");
  ASSERT_TRUE(LogSays("configuration reload refused, the running configuration stays"));
  EXPECT_TRUE(LogSays(daemon_.config_path() + ":3")) << "file and line";
  // Valid JSON, but a repository the schema refuses, beside a new good one:
  // nothing of it applies, not even the good repository.
  Reload(ConfigWith({Repository("shop", repo_), Repository("billing", billing_),
                     R"({"name": "broken", "url": "file:///nowhere", "pollInterval": "soon"})"}));
  ASSERT_TRUE(LogSays("configuration reload refused, the running configuration stays", 2));
  EXPECT_TRUE(LogSays("soon"));
  EXPECT_EQ(SyncedRepositories(), std::vector<std::string>{"shop"});
  EXPECT_EQ(daemon_.Get("/api/v1/objects/templates/invoice").status, 404);
  // Still serving as before: reads, writes, syncs.
  ASSERT_EQ(daemon_.Put("/api/v1/objects/templates/web", Writer(), TemplateJson("web", "v2")).status, 200);
  EXPECT_EQ(Description("web"), "v2");
  EXPECT_EQ(daemon_.Post("/api/v1/repositories/shop/sync", Writer()).status, 200);

  // What a running daemon cannot change waits for a restart; the rest applies.
  Reload(ConfigWith({Repository("shop", repo_), Repository("billing", billing_)}, "127.0.0.1:1"));
  ASSERT_TRUE(LogSays("configuration reloaded: 2 repositories"));
  EXPECT_TRUE(LogSays("listen (127.0.0.1:" + std::to_string(daemon_.port()) +
                      " -> 127.0.0.1:1) changed; it takes effect at the next start"));
  EXPECT_EQ(daemon_.Get("/healthz").status, 200) << "still on the old port";
  EXPECT_TRUE(WaitUntil([&] { return daemon_.Get("/api/v1/objects/templates/invoice").status == 200; }));
}

TEST_F(LifecycleTest, ASighupReReadsTheApiTokens) {
  ASSERT_TRUE(Start());
  auto put = [&](const std::string& token, const std::string& description) {
    return daemon_.Put("/api/v1/objects/templates/web",
                       {{"Authorization", Bearer(token)}, {"Content-Type", "application/json"}},
                       TemplateJson("web", description))
        .status;
  };
  EXPECT_EQ(put(kWriteToken, "v2"), 200);
  EXPECT_EQ(put(kNewToken, "v3"), 401);
  // The old write token is rotated out, a new one in.
  ASSERT_TRUE(WriteTextFile(dir_.Sub("tokens.json"), "[{\"name\": \"ci-2\", \"role\": \"write\", \"sha256\": \"" +
                                                          daemon::ToHex(daemon::HashToken(kNewToken)) + "\"}]\n"));
  Reload(ReadTextFile(daemon_.config_path()));
  ASSERT_TRUE(LogSays("API tokens: 1 from"));
  ASSERT_TRUE(LogSays("configuration reloaded"));
  EXPECT_EQ(put(kNewToken, "v3"), 200);
  EXPECT_EQ(put(kWriteToken, "v4"), 401);
  EXPECT_EQ(Description("web"), "v3");
  // A tokens file that does not parse refuses the reload: the new token stays valid.
  ASSERT_TRUE(WriteTextFile(dir_.Sub("tokens.json"), "[{\"name\": \n"));
  Reload(ReadTextFile(daemon_.config_path()));
  ASSERT_TRUE(LogSays("configuration reload refused"));
  EXPECT_EQ(put(kNewToken, "v5"), 200);
}

// A datagram socket standing in for systemd's notification socket.
class NotifySocket {
 public:
  explicit NotifySocket(std::string path) : path_(std::move(path)) {
    fd_ = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, path_.c_str(), sizeof addr.sun_path - 1);
    ::unlink(path_.c_str());
    bound_ = ::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
    timeval tv{0, 100'000};
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  }
  ~NotifySocket() {
    ::close(fd_);
    ::unlink(path_.c_str());
  }
  bool bound() const { return bound_; }
  // Reads what has arrived; every message so far, in order.
  const std::vector<std::string>& Drain() {
    char buf[4096];
    while (true) {
      const ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
      if (n <= 0) break;
      messages_.emplace_back(buf, static_cast<size_t>(n));
    }
    return messages_;
  }
  // Waits until a message holding `text` arrived after the first `from`;
  // its index.
  std::optional<size_t> WaitFor(const std::string& text, size_t from = 0, seconds timeout = seconds(20)) {
    std::optional<size_t> at;
    WaitUntil([&] {
      const auto& all = Drain();
      for (size_t i = from; i < all.size(); ++i) {
        if (Contains(all[i], text)) {
          at = i;
          return true;
        }
      }
      return false;
    }, timeout);
    return at;
  }

 private:
  std::string path_;
  int fd_ = -1;
  bool bound_ = false;
  std::vector<std::string> messages_;
};

TEST_F(LifecycleTest, SystemdHearsReadyStatusWatchdogReloadAndStop) {
  NotifySocket systemd(dir_.Sub("notify.sock"));
  ASSERT_TRUE(systemd.bound());
  daemon_.SetEnv("NOTIFY_SOCKET", dir_.Sub("notify.sock"));
  daemon_.SetEnv("WATCHDOG_USEC", "400000");  // a ping every 200 ms
  ASSERT_TRUE(Start());
  auto ready = systemd.WaitFor("READY=1");
  ASSERT_TRUE(ready) << daemon_.Output();
  EXPECT_TRUE(Contains(systemd.Drain()[*ready], "STATUS=serving 1 repository")) << systemd.Drain()[*ready];
  // Pings keep coming while it runs.
  auto first_ping = systemd.WaitFor("WATCHDOG=1", *ready);
  ASSERT_TRUE(first_ping);
  auto third_ping = systemd.WaitFor("WATCHDOG=1", *first_ping + 2);
  EXPECT_TRUE(third_ping) << "pings every half interval";

  Reload(ReadTextFile(daemon_.config_path()));
  auto reloading = systemd.WaitFor("RELOADING=1", *ready + 1);
  ASSERT_TRUE(reloading) << daemon_.Output();
  auto ready_again = systemd.WaitFor("READY=1", *reloading + 1);
  ASSERT_TRUE(ready_again) << "READY=1 once the reload is done";
  // A refused reload says so in STATUS=.
  Reload("not json");
  auto refused = systemd.WaitFor("STATUS=reload refused", *ready_again + 1);
  EXPECT_TRUE(refused) << daemon_.Output();

  // A run in progress shows in the status line.
  ASSERT_TRUE(repo_.WriteFile(".gitops/release-flows/gate.json",
                              R"({"apiVersion": "v1.2", "name": "gate", "spec": {"kind": "Workflow", "spec": {
    "type": "sequential", "steps": [{"kind": "Approval", "ref": "gate", "spec": {"amount": 1}}]}}})"));
  ASSERT_FALSE(repo_.Commit("a gate").empty());
  ASSERT_TRUE(repo_.Push());
  ASSERT_EQ(daemon_.Post("/api/v1/repositories/shop/sync", Writer()).status, 200);
  ASSERT_EQ(daemon_.Post("/api/v1/release-flows/gate/runs", Writer(), "{}").status, 201);
  EXPECT_TRUE(systemd.WaitFor("1 run active", *ready_again + 1)) << daemon_.Output();

  const size_t before_stop = systemd.Drain().size();
  ASSERT_EQ(::kill(daemon_.process().pid(), SIGTERM), 0);
  auto code = WaitForExit(daemon_.process(), seconds(20));
  ASSERT_TRUE(code.has_value());
  EXPECT_EQ(*code, 0);
  EXPECT_TRUE(systemd.WaitFor("STOPPING=1", before_stop > 0 ? before_stop - 1 : 0, seconds(2)));
}

}  // namespace
}  // namespace gitopsd::test
