// The write API end to end: a real gitopsd, a real bare repository over
// file://, edits over loopback HTTP. Bad requests are refused with the
// right status and leave nothing behind; good ones land in Git as commits
// that change only what was edited; slow clients are cut off.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <thread>

#include "tests/daemon/write_fixture.h"

namespace gitopsd::test {
namespace {

using std::chrono::milliseconds;

const json::Value* ErrorOf(const json::Value& body) { return body.Find("error"); }

std::string ErrorCode(const HttpReply& reply) {
  auto body = reply.Json();
  if (!body || !ErrorOf(*body)) return "<no error body: " + reply.body + ">";
  return StringField(*ErrorOf(*body), "code");
}

class WriteApiTest : public WriteFixture {};

// ---- Bad input: refused, and nothing written.

TEST_F(WriteApiTest, ABodyThatIsNotJsonIs422WithTheLineAndColumn) {
  ASSERT_TRUE(Start());
  const std::string head = RemoteHead();
  // The comma after "v1.2" is missing: line 3, column 3.
  auto reply = daemon_.Put("/api/v1/objects/templates/web", Writer(),
                           "{\n  \"apiVersion\": \"v1.2\"\n  \"name\": \"web\"\n}\n");
  ASSERT_EQ(reply.status, 422) << reply.body;
  auto body = reply.Json();
  ASSERT_TRUE(body && ErrorOf(*body)) << reply.body;
  EXPECT_EQ(StringField(*ErrorOf(*body), "code"), "invalid_object");
  const json::Value* details = ErrorOf(*body)->Find("details");
  ASSERT_TRUE(details && !details->items().empty()) << reply.body;
  const json::Value& first = details->items()[0];
  EXPECT_EQ(NumberField(first, "line"), 3) << reply.body;
  EXPECT_EQ(NumberField(first, "column"), 3) << reply.body;
  EXPECT_EQ(StringField(first, "rule"), "json-syntax");
  EXPECT_TRUE(Contains(StringField(first, "path"), "web.json")) << reply.body;
  EXPECT_FALSE(StringField(first, "message").empty());
  ExpectNothingWritten(head);
}

TEST_F(WriteApiTest, AnObjectThatBreaksTheSchemaIs422) {
  ASSERT_TRUE(Start());
  const std::string head = RemoteHead();
  auto reply = daemon_.Put("/api/v1/objects/templates/web", Writer(),
                           "{\"apiVersion\": \"v1.2\", \"name\": \"web\", \"bogus\": 1, "
                           "\"spec\": {\"kind\": \"Workflow\", \"spec\": {\"type\": "
                           "\"sequential\", \"steps\": []}}}");
  EXPECT_EQ(reply.status, 422) << reply.body;
  EXPECT_EQ(ErrorCode(reply), "invalid_object");
  ExpectNothingWritten(head);
}

TEST_F(WriteApiTest, AWrongContentTypeIs415) {
  ASSERT_TRUE(Start());
  const std::string head = RemoteHead();
  auto plain = daemon_.Put("/api/v1/objects/templates/web", Writer("text/plain"),
                           TemplateJson("web", "v2"));
  EXPECT_EQ(plain.status, 415) << plain.body;
  EXPECT_EQ(ErrorCode(plain), "unsupported_media_type");
  auto none = daemon_.Put("/api/v1/objects/templates/web",
                          {{"Authorization", Bearer(kWriteToken)}}, TemplateJson("web", "v2"));
  EXPECT_EQ(none.status, 415) << none.body;
  ExpectNothingWritten(head);
}

TEST_F(WriteApiTest, ABodyOverTheLimitIs413) {
  ASSERT_TRUE(Start());
  const std::string head = RemoteHead();
  std::string huge = "{\"apiVersion\": \"v1.2\", \"name\": \"web\", \"description\": \"" +
                     std::string((1 << 20) + 16, 'x') + "\"}";
  auto reply = daemon_.Put("/api/v1/objects/templates/web", Writer(), huge);
  EXPECT_EQ(reply.status, 413) << reply.error;
  ExpectNothingWritten(head);
}

TEST_F(WriteApiTest, AnUnknownKindIs404) {
  ASSERT_TRUE(Start());
  const std::string head = RemoteHead();
  auto reply = daemon_.Put("/api/v1/objects/widgets/web", Writer(), TemplateJson("web", "v2"));
  EXPECT_EQ(reply.status, 404) << reply.body;
  EXPECT_EQ(ErrorCode(reply), "unknown_kind");
  EXPECT_EQ(daemon_.Delete("/api/v1/objects/widgets/web", Writer()).status, 404);
  ExpectNothingWritten(head);
}

TEST_F(WriteApiTest, ANameThatDisagreesWithThePathIs400) {
  ASSERT_TRUE(Start());
  const std::string head = RemoteHead();
  auto reply = daemon_.Put("/api/v1/objects/templates/web", Writer(), TemplateJson("other", "v2"));
  EXPECT_EQ(reply.status, 400) << reply.body;
  EXPECT_EQ(ErrorCode(reply), "name_mismatch");
  EXPECT_EQ(daemon_.Get("/api/v1/objects/templates/other").status, 404);
  ExpectNothingWritten(head);
}

TEST_F(WriteApiTest, AMalformedIfMatchIs400) {
  ASSERT_TRUE(Start());
  const std::string head = RemoteHead();
  for (const std::string bad : {"abc", "\"1", "*", "\"1\", \"2\"", "-1", "W/abc"}) {
    auto headers = Writer();
    headers["If-Match"] = bad;
    auto reply = daemon_.Put("/api/v1/objects/templates/web", headers, TemplateJson("web", "v2"));
    EXPECT_EQ(reply.status, 400) << bad << ": " << reply.body;
    EXPECT_EQ(ErrorCode(reply), "bad_if_match") << bad;
  }
  ExpectNothingWritten(head);
}

TEST_F(WriteApiTest, AStaleIfMatchIs412) {
  ASSERT_TRUE(Start());
  const std::string head = RemoteHead();
  for (const std::string stale : {"\"7\"", "7", "W/\"7\""}) {
    auto headers = Writer();
    headers["If-Match"] = stale;
    auto reply = daemon_.Put("/api/v1/objects/templates/web", headers, TemplateJson("web", "v2"));
    EXPECT_EQ(reply.status, 412) << stale << ": " << reply.body;
    EXPECT_EQ(ErrorCode(reply), "precondition_failed");
  }
  auto headers = Writer();
  headers["If-Match"] = "\"7\"";
  EXPECT_EQ(daemon_.Delete("/api/v1/objects/templates/web", headers).status, 412);
  ExpectNothingWritten(head);
}

TEST_F(WriteApiTest, AReadTokenIs403) {
  ASSERT_TRUE(Start());
  const std::string head = RemoteHead();
  auto reply = daemon_.Put("/api/v1/objects/templates/web",
                           {{"Authorization", Bearer(kReadToken)},
                            {"Content-Type", "application/json"}},
                           TemplateJson("web", "v2"));
  EXPECT_EQ(reply.status, 403) << reply.body;
  EXPECT_TRUE(Contains(reply.body, "dashboard")) << reply.body;
  EXPECT_EQ(daemon_.Delete("/api/v1/objects/templates/web", {{"Authorization", Bearer(kReadToken)}})
                .status,
            403);
  ExpectNothingWritten(head);
}

TEST_F(WriteApiTest, NoTokenOrAnUnknownOneIs401) {
  ASSERT_TRUE(Start());
  const std::string head = RemoteHead();
  auto none = daemon_.Put("/api/v1/objects/templates/web", {{"Content-Type", "application/json"}},
                          TemplateJson("web", "v2"));
  EXPECT_EQ(none.status, 401) << none.body;
  EXPECT_FALSE(none.headers["WWW-Authenticate"].empty());
  auto unknown = daemon_.Put("/api/v1/objects/templates/web",
                             {{"Authorization", Bearer("not-a-token")},
                              {"Content-Type", "application/json"}},
                             TemplateJson("web", "v2"));
  EXPECT_EQ(unknown.status, 401) << unknown.body;
  EXPECT_EQ(daemon_.Delete("/api/v1/objects/templates/web").status, 401);
  EXPECT_EQ(daemon_.Post("/api/v1/conflicts/1/resolve", {{"Content-Type", "application/json"}},
                         "{\"take\": \"git\"}")
                .status,
            401);
  ExpectNothingWritten(head);
}

TEST_F(WriteApiTest, UnknownWriteBacksAndConflictsAre404) {
  ASSERT_TRUE(Start());
  EXPECT_EQ(daemon_.Get("/api/v1/writebacks/99").status, 404);
  EXPECT_EQ(daemon_.Get("/api/v1/writebacks/abc").status, 404);
  EXPECT_EQ(daemon_.Post("/api/v1/conflicts/99/resolve", Writer(), "{\"take\": \"git\"}").status,
            404);
  auto conflicts = daemon_.Get("/api/v1/conflicts");
  ASSERT_EQ(conflicts.status, 200);
  auto body = conflicts.Json();
  ASSERT_TRUE(body && body->Find("conflicts")) << conflicts.body;
  EXPECT_TRUE(body->Find("conflicts")->items().empty());
  EXPECT_EQ(Http(daemon_.port(), "POST", "/api/v1/objects/templates/web").status, 405);
}

// ---- Slow clients.

class RawClient {
 public:
  explicit RawClient(int port) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    connected_ = ::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  }
  ~RawClient() {
    if (fd_ >= 0) ::close(fd_);
  }
  bool connected() const { return connected_; }
  bool Send(const std::string& data) {
    return ::send(fd_, data.data(), data.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(data.size());
  }
  // Sends `trickle` one byte every `every` (when not empty) and waits for the
  // server to close the connection; how long that took, or nullopt if it
  // was still open after `limit`.
  std::optional<milliseconds> WaitClosed(milliseconds limit, const std::string& trickle = "",
                                         milliseconds every = milliseconds(200)) {
    const auto start = std::chrono::steady_clock::now();
    auto next_send = start;
    size_t sent = 0;
    while (std::chrono::steady_clock::now() - start < limit) {
      if (sent < trickle.size() && std::chrono::steady_clock::now() >= next_send) {
        if (!Send(trickle.substr(sent, 1))) return Elapsed(start);
        ++sent;
        next_send += every;
      }
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, 20) > 0) {
        char buf[512];
        const ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
        if (n <= 0) return Elapsed(start);  // closed (or reset)
      }
    }
    return std::nullopt;
  }

 private:
  static milliseconds Elapsed(std::chrono::steady_clock::time_point start) {
    return std::chrono::duration_cast<milliseconds>(std::chrono::steady_clock::now() - start);
  }
  int fd_ = -1;
  bool connected_ = false;
};

TEST_F(WriteApiTest, SlowClientsAreCutOffByTheReadTimeoutWhileOthersAreServed) {
  daemon_.SetEnv("GITOPSD_HTTP_READ_TIMEOUT", "1s");
  ASSERT_TRUE(Start());
  const std::string head = RemoteHead();
  const std::string request_line = "PUT /api/v1/objects/templates/web HTTP/1.1\r\n";
  const std::string headers = "Host: x\r\nAuthorization: Bearer " + std::string(kWriteToken) +
                              "\r\nContent-Type: application/json\r\n";
  const std::string body = TemplateJson("web", "slow");

  RawClient stalled(daemon_.port()), trickling(daemon_.port()), slow_body(daemon_.port());
  ASSERT_TRUE(stalled.connected() && trickling.connected() && slow_body.connected());
  // Half a request, then silence.
  ASSERT_TRUE(stalled.Send(request_line + "Host: x\r\n"));
  // The headers, a byte every 100 ms: each read succeeds, the whole never ends in time.
  ASSERT_TRUE(trickling.Send("PUT "));
  // Complete headers, then the body a byte every 100 ms.
  ASSERT_TRUE(slow_body.Send(request_line + headers + "Content-Length: " +
                             std::to_string(body.size()) + "\r\n\r\n"));

  std::optional<milliseconds> stalled_closed, trickle_closed, body_closed;
  std::thread a([&] { stalled_closed = stalled.WaitClosed(milliseconds(2500)); });
  std::thread b([&] {
    trickle_closed = trickling.WaitClosed(milliseconds(2500), request_line.substr(4) + headers,
                                          milliseconds(100));
  });
  std::thread c([&] { body_closed = slow_body.WaitClosed(milliseconds(2500), body, milliseconds(100)); });
  // Meanwhile the server answers everyone else.
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(daemon_.Get("/healthz").status, 200);
    std::this_thread::sleep_for(milliseconds(100));
  }
  a.join();
  b.join();
  c.join();
  ASSERT_TRUE(stalled_closed) << "a stalled client was not cut off\n" << daemon_.Output();
  ASSERT_TRUE(trickle_closed) << "a client trickling its headers was not cut off";
  ASSERT_TRUE(body_closed) << "a client trickling its body was not cut off";
  EXPECT_LT(stalled_closed->count(), 2000);
  EXPECT_LT(trickle_closed->count(), 2000);
  EXPECT_LT(body_closed->count(), 2000);
  EXPECT_EQ(daemon_.Get("/healthz").status, 200);
  EXPECT_TRUE(Contains(daemon_.Output(), "no complete request within 1000 ms")) << daemon_.Output();
  ExpectNothingWritten(head);  // the cut-off body never reached the route
}

// ---- Accepted edits (these need the write-back engine).

TEST_F(WriteApiTest, APutOfAnExistingObjectIsPushedAsAOneLineChange) {
  ASSERT_TRUE(Start());
  auto headers = Writer("application/json; charset=utf-8");
  headers["If-Match"] = "\"1\"";
  auto reply =
      daemon_.Put("/api/v1/objects/templates/web", headers, TemplateJson("web", "s3cr3t-v2"));
  ASSERT_EQ(reply.status, 200) << reply.body << daemon_.Output();
  EXPECT_EQ(reply.headers["ETag"], "\"2\"");
  auto body = reply.Json();
  ASSERT_TRUE(body) << reply.body;
  EXPECT_EQ(StringField(*body, "kind"), "Template");
  EXPECT_EQ(StringField(*body, "name"), "web");
  EXPECT_EQ(NumberField(*body, "revision"), 2);
  const json::Value* wb = body->Find("writeBack");
  ASSERT_TRUE(wb && wb->is_object()) << reply.body;
  EXPECT_EQ(StringField(*wb, "status"), "pushed");
  const std::string commit = StringField(*wb, "commit");
  EXPECT_EQ(commit, RemoteHead()) << "the answer names the bare repository's new main";

  ASSERT_TRUE(Pull());
  EXPECT_EQ(repo_.Head(), commit);
  auto numstat = repo_.Git({"diff", "--numstat", "HEAD~1", "HEAD"});
  EXPECT_EQ(numstat.output, "1\t1\t.gitops/templates/web.json\n") << "exactly one line changed";
  EXPECT_EQ(WorkFile(".gitops/templates/web.json"), TemplateJson("web", "s3cr3t-v2"));
  auto message = repo_.Git({"log", "-1", "--format=%B"}).output;
  EXPECT_TRUE(Contains(message, "web")) << message;
  EXPECT_TRUE(Contains(message, "ci")) << message;
  EXPECT_TRUE(Contains(message, "Gitopsd-Write-Back:")) << message;

  EXPECT_EQ(Description("web"), "s3cr3t-v2");
  const std::string id = std::to_string(static_cast<int64_t>(NumberField(*wb, "id")));
  auto edit = daemon_.Get("/api/v1/writebacks/" + id).Json();
  ASSERT_TRUE(edit);
  EXPECT_EQ(StringField(*edit, "status"), "pushed");
  EXPECT_EQ(StringField(*edit, "commit"), commit);
  EXPECT_EQ(StringField(*edit, "op"), "put");
  EXPECT_EQ(StringField(*edit, "repository"), "shop");
  EXPECT_EQ(PendingWriteBacks(), 0);
  EXPECT_TRUE(Contains(daemon_.Output(),
                       "edit " + id + ": PUT Template/web by token \"ci\" (revision 2)"))
      << daemon_.Output();
  EXPECT_FALSE(Contains(daemon_.Output(), "s3cr3t")) << "bodies are never logged";
  const std::string metrics = daemon_.Get("/metrics").body;
  EXPECT_TRUE(Contains(metrics, "gitopsd_writeback_pushed_total{repository=\"shop\"} 1\n"))
      << metrics;
  EXPECT_TRUE(Contains(metrics, "gitopsd_writeback_pending{repository=\"shop\"} 0\n")) << metrics;

  // The same body again changes nothing: no edit, no commit.
  headers["If-Match"] = "\"2\"";
  auto again =
      daemon_.Put("/api/v1/objects/templates/web", headers, TemplateJson("web", "s3cr3t-v2"));
  EXPECT_EQ(again.status, 200) << again.body;
  EXPECT_TRUE(Contains(again.body, "\"writeBack\":null")) << again.body;
  EXPECT_EQ(RemoteHead(), commit);
}

TEST_F(WriteApiTest, APutOfANewObjectIs201AndAddsItsFile) {
  ASSERT_TRUE(Start());
  auto reply = daemon_.Put("/api/v1/objects/release-flows/production", Writer(),
                           ReleaseFlowJson("production"));
  ASSERT_EQ(reply.status, 201) << reply.body << daemon_.Output();
  EXPECT_EQ(reply.headers["ETag"], "\"1\"");
  EXPECT_EQ(reply.headers["Location"], "/api/v1/objects/release-flows/production");
  auto body = reply.Json();
  ASSERT_TRUE(body && body->Find("writeBack")) << reply.body;
  EXPECT_EQ(StringField(*body->Find("writeBack"), "commit"), RemoteHead());
  ASSERT_TRUE(Pull());
  auto written = json::Parse(WorkFile(".gitops/release-flows/production.json"));
  ASSERT_TRUE(written) << "a new file is canonical JSON";
  EXPECT_TRUE(*written == *json::Parse(ReleaseFlowJson("production")));
  EXPECT_EQ(daemon_.Get("/api/v1/objects/release-flows/production").status, 200);
  auto wrong_repo = daemon_.Put("/api/v1/objects/release-flows/staging?repository=nope", Writer(),
                                ReleaseFlowJson("staging"));
  EXPECT_EQ(wrong_repo.status, 404) << wrong_repo.body;
}

TEST_F(WriteApiTest, ADeleteRemovesTheFile) {
  ASSERT_TRUE(Start());
  auto reply = daemon_.Delete("/api/v1/objects/templates/database", Writer());
  ASSERT_EQ(reply.status, 200) << reply.body << daemon_.Output();
  auto body = reply.Json();
  ASSERT_TRUE(body && body->Find("writeBack")) << reply.body;
  EXPECT_EQ(StringField(*body->Find("writeBack"), "commit"), RemoteHead());
  ASSERT_TRUE(Pull());
  EXPECT_FALSE(std::filesystem::exists(repo_.work_path() + "/.gitops/templates/database.json"));
  EXPECT_TRUE(std::filesystem::exists(repo_.work_path() + "/.gitops/templates/web.json"));
  EXPECT_EQ(daemon_.Get("/api/v1/objects/templates/database").status, 404);
  EXPECT_EQ(daemon_.Delete("/api/v1/objects/templates/database", Writer()).status, 404);
  EXPECT_EQ(daemon_.Delete("/api/v1/objects/templates/nothing", Writer()).status, 404);
}

TEST_F(WriteApiTest, ARefusedPushLeavesTheEditPendingAndRetriesWithBackoff) {
  // A remote whose main cannot be updated while a stale lock file holds it
  // (a file:// push runs no hooks, and tests may run as root).
  const std::string lock = repo_.bare_path() + "/refs/heads/main.lock";
  ASSERT_TRUE(WriteTextFile(lock, ""));
  daemon_.SetEnv("GITOPSD_WRITEBACK_WAIT", "300ms");
  ASSERT_TRUE(Start());
  const std::string head = RemoteHead();

  auto reply = daemon_.Put("/api/v1/objects/templates/web", Writer(), TemplateJson("web", "v2"));
  ASSERT_EQ(reply.status, 202) << reply.body << daemon_.Output();
  auto body = reply.Json();
  ASSERT_TRUE(body && body->Find("writeBack")) << reply.body;
  const json::Value& wb = *body->Find("writeBack");
  const std::string href = StringField(wb, "href");
  EXPECT_EQ(href, "/api/v1/writebacks/" + std::to_string(static_cast<int64_t>(NumberField(wb, "id"))));
  EXPECT_EQ(reply.headers["Location"], href);
  EXPECT_NE(StringField(wb, "status"), "pushed");
  EXPECT_EQ(Description("web"), "v2") << "the edit is in force while it waits";
  EXPECT_EQ(RemoteHead(), head);
  EXPECT_EQ(PendingWriteBacks(), 1);

  // It keeps failing, is retried, and logged once for the one reason.
  ASSERT_TRUE(WaitUntil([&] {
    return Contains(daemon_.Get("/metrics").body,
                    "gitopsd_writeback_failures_total{repository=\"shop\"} 2\n");
  }, std::chrono::seconds(10))) << daemon_.Get("/metrics").body << daemon_.Output();
  const std::string log = daemon_.Output();
  size_t warnings = 0;
  for (size_t at = log.find("write-back failed,"); at != std::string::npos;
       at = log.find("write-back failed,", at + 1)) {
    ++warnings;
  }
  EXPECT_EQ(warnings, 1u) << log;
  EXPECT_TRUE(Contains(daemon_.Get("/metrics").body,
                       "gitopsd_writeback_pending{repository=\"shop\"} 1\n"));
  auto edit = daemon_.Get(href).Json();
  ASSERT_TRUE(edit);
  EXPECT_NE(StringField(*edit, "status"), "pushed");

  // The remote accepts pushes again: the retry lands it.
  ASSERT_EQ(::unlink(lock.c_str()), 0);
  ASSERT_TRUE(WaitUntil([&] {
    auto e = daemon_.Get(href).Json();
    return e && StringField(*e, "status") == "pushed";
  }, std::chrono::seconds(15))) << daemon_.Output();
  EXPECT_NE(RemoteHead(), head);
  EXPECT_EQ(PendingWriteBacks(), 0);
  EXPECT_TRUE(Contains(daemon_.Output(), "write-back works again")) << daemon_.Output();
}

TEST_F(WriteApiTest, OverlappingGitAndApiEditsBecomeAConflictThatCanBeResolved) {
  ASSERT_TRUE(Start());
  // Git changes the description behind the daemon's back (it polls hourly)...
  ASSERT_TRUE(repo_.WriteFile(".gitops/templates/web.json", TemplateJson("web", "from-git")));
  ASSERT_FALSE(repo_.Commit("web from git").empty());
  ASSERT_TRUE(repo_.Push());
  // ...and the API changes it too, based on revision 1.
  auto headers = Writer();
  headers["If-Match"] = "\"1\"";
  auto reply = daemon_.Put("/api/v1/objects/templates/web", headers, TemplateJson("web", "from-api"));
  ASSERT_TRUE(reply.status == 202 || reply.status == 200) << reply.body;

  std::optional<json::Value> list;
  ASSERT_TRUE(WaitUntil([&] {
    list = daemon_.Get("/api/v1/conflicts").Json();
    return list && list->Find("conflicts") && !list->Find("conflicts")->items().empty();
  }, std::chrono::seconds(10))) << daemon_.Output();
  const json::Value& c = list->Find("conflicts")->items()[0];
  EXPECT_EQ(StringField(c, "repository"), "shop");
  EXPECT_EQ(StringField(c, "kind"), "Template");
  EXPECT_EQ(StringField(c, "name"), "web");
  EXPECT_EQ(StringField(c, "path"), ".gitops/templates/web.json");
  EXPECT_EQ(StringField(c, "policy"), "git-wins");
  EXPECT_EQ(StringField(c, "inForce"), "git");
  ASSERT_TRUE(c.Find("pointers") && c.Find("pointers")->is_array());
  EXPECT_TRUE(Contains(json::SerializeCompact(*c.Find("pointers")), "/description"));
  ASSERT_TRUE(c.Find("git") && c.Find("api") && c.Find("base"));
  EXPECT_EQ(StringField(*c.Find("git"), "description"), "from-git");
  EXPECT_EQ(StringField(*c.Find("api"), "description"), "from-api");
  EXPECT_EQ(StringField(*c.Find("base"), "description"), "v1");
  EXPECT_TRUE(c.Find("resolvedAt")->is_null());
  const std::string id = std::to_string(static_cast<int64_t>(NumberField(c, "id")));

  auto sync = daemon_.Get("/api/v1/sync").Json();
  ASSERT_TRUE(sync);
  const auto& repo = sync->Find("repositories")->items().at(0);
  ASSERT_EQ(repo.Find("conflicts")->items().size(), 1u);
  EXPECT_EQ(StringField(repo.Find("conflicts")->items()[0], "inForce"), "git");
  const std::string metrics = daemon_.Get("/metrics").body;
  EXPECT_TRUE(Contains(metrics, "gitopsd_conflicts_open 1\n")) << metrics;
  EXPECT_TRUE(Contains(metrics, "gitopsd_conflicts_total{repository=\"shop\"} 1\n")) << metrics;

  // Resolving: bad requests first, then take the API's version.
  const std::string path = "/api/v1/conflicts/" + id + "/resolve";
  EXPECT_EQ(daemon_.Post(path, Writer(), "{\"take\": \"mine\"}").status, 400);
  EXPECT_EQ(daemon_.Post(path, Writer(), "{\"take\": \"git\", \"body\": {}}").status, 400);
  EXPECT_EQ(daemon_.Post(path, Writer(), "not json").status, 400);
  EXPECT_EQ(daemon_.Post(path, Writer("text/plain"), "{\"take\": \"api\"}").status, 415);
  EXPECT_EQ(daemon_.Post(path, {{"Authorization", Bearer(kReadToken)},
                                {"Content-Type", "application/json"}},
                         "{\"take\": \"api\"}")
                .status,
            403);
  auto resolved = daemon_.Post(path, Writer(), "{\"take\": \"api\"}");
  ASSERT_TRUE(resolved.status == 200 || resolved.status == 202) << resolved.body;
  EXPECT_EQ(daemon_.Post(path, Writer(), "{\"take\": \"api\"}").status, 409) << "resolved once";
  auto open = daemon_.Get("/api/v1/conflicts").Json();
  ASSERT_TRUE(open);
  EXPECT_TRUE(open->Find("conflicts")->items().empty());
  auto all = daemon_.Get("/api/v1/conflicts?all=true").Json();
  ASSERT_TRUE(all);
  ASSERT_EQ(all->Find("conflicts")->items().size(), 1u);
  EXPECT_EQ(StringField(all->Find("conflicts")->items()[0], "resolution"), "api");
  ASSERT_TRUE(WaitUntil([&] {
    return Pull() && Contains(WorkFile(".gitops/templates/web.json"), "from-api");
  }, std::chrono::seconds(10))) << daemon_.Output();
  EXPECT_EQ(Description("web"), "from-api");
}

}  // namespace
}  // namespace gitopsd::test
