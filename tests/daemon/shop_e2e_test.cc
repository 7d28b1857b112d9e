// The example repository end to end, as the README tells it: gitopsd syncs
// examples/shop, its Template autoruns (database, build, migration job, web
// service up), a release of a new VERSION through the production flow
// serves the new version, and a rollback to an earlier release serves that
// one again. Real builds, jobs and services (python3) on this host.
#include <gtest/gtest.h>

#include <Poco/Net/HTTPRequestHandler.h>
#include <Poco/Net/HTTPRequestHandlerFactory.h>
#include <Poco/Net/HTTPServer.h>
#include <Poco/Net/HTTPServerRequest.h>
#include <Poco/Net/HTTPServerResponse.h>
#include <Poco/Net/ServerSocket.h>

#include <atomic>

#include "tests/daemon/run_waits.h"
#include "tests/daemon/shop_fixture.h"

namespace gitopsd::test {
namespace {

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

class ShopTest : public ShopFixture {
 protected:
  ShopTest() : ShopFixture("shop-e2e") {}

  void SetUp() override {
    ASSERT_TRUE(CopyShop());
    ASSERT_TRUE(CommitShop());
    ASSERT_TRUE(WriteTokens());
    ASSERT_TRUE(StartDaemon(ShopConfig({21000, 21999})));
  }

  // Waits for the run to conclude; its JSON.
  json::Value Concluded(int64_t id) { return test::Concluded(daemon_, id, std::chrono::seconds(90)); }
  std::string Explain(const json::Value& run) { return test::Explain(daemon_, run); }

  int64_t Release(const std::string& version) {
    // The test starts the release itself, with a NOTIFY_URL.
    EXPECT_FALSE(CommitVersion(version).empty());
    EXPECT_TRUE(repo_.Push());
    EXPECT_EQ(daemon_.Post("/api/v1/repositories/shop/sync", Writer()).status, 200);
    auto started = daemon_.Post("/api/v1/release-flows/production/runs", Writer(),
                                "{\"arguments\": {\"NOTIFY_URL\": \"" + receiver_.url() + "\"}}");
    EXPECT_EQ(started.status, 201) << started.body;
    auto body = started.Json();
    return body ? static_cast<int64_t>(NumberField(*body, "id")) : -1;
  }

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
