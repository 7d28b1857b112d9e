// The example repository end to end, as the README tells it: gitopsd syncs
// examples/shop, its Template autoruns (database, build, migration job, web
// service up), a release of a new VERSION through the production flow
// serves the new version, and a rollback to an earlier release serves that
// one again. Real builds, jobs and services (python3) on this host.
#include <gtest/gtest.h>
#include <signal.h>

#include <Poco/Net/HTTPRequestHandler.h>
#include <Poco/Net/HTTPRequestHandlerFactory.h>
#include <Poco/Net/HTTPServer.h>
#include <Poco/Net/HTTPServerRequest.h>
#include <Poco/Net/HTTPServerResponse.h>
#include <Poco/Net/ServerSocket.h>

#include <atomic>
#include <filesystem>

#include "tests/daemon/run_waits.h"
#include "tests/daemon/write_fixture.h"

namespace gitopsd::test {
namespace {

namespace fs = std::filesystem;

// Where the production flow's Message node posts: counts what it gets.
class Receiver {
 public:
  Receiver() : server_(new Factory(count_), Poco::Net::ServerSocket(0), new Poco::Net::HTTPServerParams) {
    server_.start();
  }
  ~Receiver() { server_.stop(); }
  std::string url() const {
    return "http://127.0.0.1:" + std::to_string(server_.port()) + "/hooks/deploys";
  }
  int count() const { return count_; }

 private:
  class Handler : public Poco::Net::HTTPRequestHandler {
   public:
    explicit Handler(std::atomic<int>& count) : count_(count) {}
    void handleRequest(Poco::Net::HTTPServerRequest& in, Poco::Net::HTTPServerResponse& out) override {
      in.stream().ignore(1 << 20);
      ++count_;
      out.setStatus(Poco::Net::HTTPResponse::HTTP_NO_CONTENT);
      out.send();
    }

   private:
    std::atomic<int>& count_;
  };
  class Factory : public Poco::Net::HTTPRequestHandlerFactory {
   public:
    explicit Factory(std::atomic<int>& count) : count_(count) {}
    Poco::Net::HTTPRequestHandler* createRequestHandler(const Poco::Net::HTTPServerRequest&) override {
      return new Handler(count_);
    }

   private:
    std::atomic<int>& count_;
  };
  std::atomic<int> count_{0};
  Poco::Net::HTTPServer server_;
};

class ShopTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const fs::path example = fs::path(GITOPSD_EXAMPLES_DIR) / "shop";
    fs::copy(example, repo_.work_path(), fs::copy_options::recursive | fs::copy_options::overwrite_existing);
    ASSERT_TRUE(repo_.MakeExecutable("bin/shop"));
    ASSERT_FALSE(repo_.Commit("the shop").empty());
    ASSERT_TRUE(repo_.Push());
    ASSERT_TRUE(WriteTextFile(
        dir_.Sub("tokens.json"),
        "[{\"name\": \"ci\", \"role\": \"write\", \"sha256\": \"" +
            daemon::ToHex(daemon::HashToken(kWriteToken)) + "\"}]\n"));
    daemon_.SetEnv("GITOPSD_RUNNER_POLL", "100ms");
    const std::string config =
        "{\"stateDir\": \"@STATE@\", \"listen\": \"127.0.0.1:@PORT@\", \"apiTokensFile\": "
        "\"tokens.json\", \"repositories\": [{\"name\": \"shop\", \"url\": \"" +
        repo_.file_url() +
        "\", \"pollInterval\": \"1h\", \"sync\": {\"writeBack\": false}}], \"runtime\": "
        "{\"portRange\": [21000, 21999]}, \"log\": {\"level\": \"debug\"}}";
    ASSERT_TRUE(daemon_.StartWithConfig(config));
    ASSERT_TRUE(daemon_.WaitReady()) << daemon_.Output();
  }

  // Services outlive the daemon by design: end them here, by their pids.
  void TearDown() override {
    KillReportedServices(daemon_);
    daemon_.Stop();
  }

  // Waits for the run to conclude; its JSON.
  json::Value Concluded(int64_t id) { return test::Concluded(daemon_, id, std::chrono::seconds(90)); }
  std::string Explain(const json::Value& run) { return test::Explain(daemon_, run); }

  // The version the shop's web service answers with ("" when it does not).
  std::string ServedVersion() {
    auto body = daemon_.Get("/api/v1/services").Json();
    if (!body || !body->Find("services")) return "";
    for (const auto& s : body->Find("services")->items()) {
      if (StringField(s, "name") != "shop-web") continue;
      const int port = static_cast<int>(NumberField(s, "port"));
      auto page = Http(port, "GET", "/").Json();
      return page ? StringField(*page, "version") : "";
    }
    return "";
  }

  int64_t Release(const std::string& version) {
    EXPECT_TRUE(repo_.WriteFile("VERSION", version + "\n"));
    // [skip ci]: the production flow's Git trigger stays out of it; this
    // test starts the release itself, with a NOTIFY_URL.
    EXPECT_FALSE(repo_.Commit("version " + version + " [skip ci]").empty());
    EXPECT_TRUE(repo_.Push());
    EXPECT_EQ(daemon_.Post("/api/v1/repositories/shop/sync", Writer()).status, 200);
    auto started = daemon_.Post("/api/v1/release-flows/production/runs", Writer(),
                                "{\"arguments\": {\"NOTIFY_URL\": \"" + receiver_.url() + "\"}}");
    EXPECT_EQ(started.status, 201) << started.body;
    auto body = started.Json();
    return body ? static_cast<int64_t>(NumberField(*body, "id")) : -1;
  }

  TempDir dir_{"shop-e2e"};
  FixtureRepo repo_{dir_.path(), "shop"};
  DaemonUnderTest daemon_{dir_.path()};
  Receiver receiver_;
};

TEST_F(ShopTest, AutorunThenReleaseThenRollBack) {
  // The first sync autoran the shop Template.
  auto runs = daemon_.Get("/api/v1/runs?flow=shop").Json();
  ASSERT_TRUE(runs && runs->Find("runs")->items().size() == 1) << daemon_.Output();
  const json::Value setup = Concluded(static_cast<int64_t>(NumberField(runs->Find("runs")->items()[0], "id")));
  ASSERT_EQ(StringField(setup, "status"), "success") << Explain(setup);
  EXPECT_TRUE(WaitUntil([&] { return ServedVersion() == "1"; })) << ServedVersion();

  const int64_t two = Release("2");
  const json::Value release = Concluded(two);
  ASSERT_EQ(StringField(release, "status"), "success") << Explain(release);
  EXPECT_EQ(ServedVersion(), "2");
  EXPECT_EQ(receiver_.count(), 1) << "the Message node posted once";

  const json::Value three = Concluded(Release("3"));
  ASSERT_EQ(StringField(three, "status"), "success") << Explain(three);
  EXPECT_EQ(ServedVersion(), "3");

  auto rollback = daemon_.Post("/api/v1/runs/" + std::to_string(two) + "/rollback", Writer(),
                               "{\"restoreBackup\": true}");
  ASSERT_EQ(rollback.status, 201) << rollback.body;
  auto started = rollback.Json();
  EXPECT_EQ(StringField(*started, "kind"), "rollback");
  EXPECT_EQ(NumberField(*started, "rollbackOf"), two);
  const json::Value back = Concluded(static_cast<int64_t>(NumberField(*started, "id")));
  ASSERT_EQ(StringField(back, "status"), "success") << Explain(back);
  EXPECT_EQ(StringField(Node(back, "0.0"), "kind"), "Action") << "the restore comes first";
  EXPECT_EQ(ServedVersion(), "2");

  for (const char* what : {"services", "jobs", "addons", "builds", "backups"}) {
    auto list = daemon_.Get(std::string("/api/v1/") + what).Json();
    ASSERT_TRUE(list && list->Find(what)) << what;
    EXPECT_FALSE(list->Find(what)->items().empty()) << what;
  }
}

}  // namespace
}  // namespace gitopsd::test
