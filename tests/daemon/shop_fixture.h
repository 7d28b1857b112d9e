// The example shop (examples/shop) on a real gitopsd: the ground for the end
// to end tests that release it, crash it and give its pull requests previews.
//
// A test copies the example into its own bare repository (CopyShop, then
// edits if it needs them, then CommitShop), writes the API tokens (write
// token "ci", kWriteToken) and, for webhooks, the shared secret, then starts
// the daemon on ShopConfig(...). TearDown stops the daemon, then ends every
// process running in the test's state folder, by pid (services and jobs
// outlive the daemon by design).
//
// Each test file gives its own port range to the runtime: ctest runs test
// processes in parallel, and two daemons handing out one range would race
// for the same free port.
//
// REQUIRES: GITOPSD_EXAMPLES_DIR defined for the test target.
#pragma once
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/types.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <string>

#include "daemon/triggers/forge.h"
#include "tests/daemon/daemon_harness.h"
#include "tests/daemon/write_fixture.h"

#ifndef GITOPSD_EXAMPLES_DIR
#error "tests/daemon/shop_fixture.h needs GITOPSD_EXAMPLES_DIR (target_compile_definitions)"
#endif

namespace gitopsd::test {

// Which forge's webhook the shop repository takes, if any.
enum class Forge { kNone, kGitHub, kGitLab };

inline constexpr const char* kShopOnGitHub = "https://github.com/acme/shop";
inline constexpr const char* kShopOnGitLab = "https://gitlab.example.com/acme/shop";

// The runtime's portRange, both ends included.
struct Ports {
  int first;
  int last;
};

// A GitHub pull_request event about acme/shop, as the webhook delivers it.
struct PullRequestEvent {
  std::string action;  // "opened", "synchronize", "closed", "reopened", ...
  int number = 1;
  std::string branch;    // the head's ref
  std::string sha;       // the head's commit
  std::string base_sha;  // main's commit
  bool draft = false;
  bool merged = false;
};

class ShopFixture : public ::testing::Test {
 protected:
  // `name` names the test's temporary folder.
  explicit ShopFixture(const std::string& name) : dir_(name) {
    daemon_.SetEnv("GITOPSD_RUNNER_POLL", "100ms");
  }

  void TearDown() override {
    // The daemon first: while it runs, its supervisor would start again a
    // service killed under it, and that one would outlive the test.
    daemon_.Stop();
    for (pid_t pid : ProcessesIn(daemon_.state_dir())) ::kill(pid, SIGKILL);
  }

  // examples/shop into the work clone, bin/shop executable; not committed.
  ::testing::AssertionResult CopyShop() {
    namespace fs = std::filesystem;
    fs::copy(fs::path(GITOPSD_EXAMPLES_DIR) / "shop", repo_.work_path(),
             fs::copy_options::recursive | fs::copy_options::overwrite_existing);
    if (!repo_.MakeExecutable("bin/shop")) return ::testing::AssertionFailure() << "chmod +x bin/shop";
    return ::testing::AssertionSuccess();
  }

  // Commits the work clone as it is and pushes it to main.
  ::testing::AssertionResult CommitShop(const std::string& message = "the shop") {
    if (repo_.Commit(message).empty()) return ::testing::AssertionFailure() << "commit \"" << message << "\"";
    if (!repo_.Push()) return ::testing::AssertionFailure() << "push \"" << message << "\"";
    return ::testing::AssertionSuccess();
  }

  // tokens.json: one write token, "ci" (kWriteToken).
  ::testing::AssertionResult WriteTokens() {
    return WriteTextFile(dir_.Sub("tokens.json"), "[{\"name\": \"ci\", \"role\": \"write\", \"sha256\": \"" +
                                                      daemon::ToHex(daemon::HashToken(kWriteToken)) + "\"}]\n")
               ? ::testing::AssertionSuccess()
               : ::testing::AssertionFailure() << "tokens.json not written";
  }

  // hook.secret, the webhooks' shared secret, holding `text` (with or
  // without a final newline, which the daemon ignores); GitHub events are
  // signed with it.
  ::testing::AssertionResult WriteHookSecret(const std::string& text) {
    hook_secret_ = text.ends_with('\n') ? text.substr(0, text.size() - 1) : text;
    return WriteTextFile(dir_.Sub("hook.secret"), text) ? ::testing::AssertionSuccess()
                                                        : ::testing::AssertionFailure() << "hook.secret not written";
  }

  // The daemon's configuration: the shop repository, polled only when asked
  // ("1h"), no write-back, the webhook of `forge` if any; the runtime on
  // `ports`, with runtime.previewUrl `preview_url` unless it is empty.
  // `repository_extra`: more keys of the shop repository (", \"forgeApi\": {...}").
  std::string ShopConfig(Ports ports, Forge forge = Forge::kNone, const std::string& preview_url = "",
                         const std::string& repository_extra = "") const {
    return "{\"stateDir\": \"@STATE@\", \"listen\": \"127.0.0.1:@PORT@\", \"apiTokensFile\": \"tokens.json\", "
           "\"repositories\": [{\"name\": \"shop\", \"url\": \"" + repo_.file_url() +
           "\", \"pollInterval\": \"1h\", \"sync\": {\"writeBack\": false}" + Webhook(forge) + repository_extra +
           "}], \"runtime\": {\"portRange\": [" + std::to_string(ports.first) + ", " + std::to_string(ports.last) +
           "]" + (preview_url.empty() ? "" : ", \"previewUrl\": \"" + preview_url + "\"") +
           "}, \"log\": {\"level\": \"debug\"}}";
  }

  // 20 ports out of [base, base + 20 * slots), chosen by this process's pid:
  // ctest runs every case in a process of its own.
  static Ports PortsOfThisProcess(int base, int slots) {
    const int first = base + static_cast<int>(getpid() % slots) * 20;
    return {first, first + 19};
  }

  // Starts the daemon on `config` and waits until it is ready.
  ::testing::AssertionResult StartDaemon(const std::string& config) {
    ::testing::AssertionResult started = daemon_.StartWithConfig(config);
    if (!started) return started;
    if (!daemon_.WaitReady()) return ::testing::AssertionFailure() << "not ready in time:\n" << daemon_.Output();
    return ::testing::AssertionSuccess();
  }

  // Waits until production serves: the shop Template's autorun has its web
  // service (shop-web) running.
  ::testing::AssertionResult WaitForProduction(std::chrono::seconds timeout) {
    if (WaitUntil([&] { return !ServiceNamed("shop-web").is_null(); }, timeout)) return ::testing::AssertionSuccess();
    return ::testing::AssertionFailure() << "shop-web is not running:\n" << daemon_.Output();
  }

  // Writes VERSION and commits it on the work clone's HEAD as "version
  // <version> [skip ci]" ([skip ci]: the production flow's Git trigger stays
  // out of it); the commit, "" when that failed.
  std::string CommitVersion(const std::string& version) {
    EXPECT_TRUE(repo_.WriteFile("VERSION", version + "\n"));
    return repo_.Commit("version " + version + " [skip ci]");
  }

  // CommitVersion, pushed as `branch` and as the head of pull request
  // `number` (`prefix` refs/pull/ on GitHub, refs/merge-requests/ on
  // GitLab); the commit.
  std::string PushPullRequestVersion(int number, const std::string& branch, const std::string& version,
                                     const std::string& prefix = "refs/pull/") {
    const std::string sha = CommitVersion(version);
    EXPECT_TRUE(repo_.Push(branch));
    EXPECT_TRUE(repo_.Git({"push", "-q", "-f", "origin", "HEAD:" + prefix + std::to_string(number) + "/head"}).ok());
    return sha;
  }

  // Delivers `event` to /hooks/github, signed with the hook secret.
  HttpReply PostPullRequestEvent(const PullRequestEvent& event, const std::string& delivery) {
    const std::string number = std::to_string(event.number);
    const std::string body = R"({"action": ")" + event.action + R"(", "number": )" + number + R"(,
      "pull_request": {"number": )" + number + R"(, "state": ")" +
                             (event.action == "closed" ? "closed" : "open") + R"(",
        "draft": )" + (event.draft ? "true" : "false") + R"(, "merged": )" + (event.merged ? "true" : "false") + R"(,
        "head": {"ref": ")" + event.branch + R"(", "sha": ")" + event.sha + R"(",
                 "repo": {"full_name": "acme/shop", "clone_url": "https://github.com/acme/shop.git"}},
        "base": {"ref": "main", "sha": ")" + event.base_sha + R"(",
                 "repo": {"full_name": "acme/shop", "clone_url": "https://github.com/acme/shop.git"}}},
      "repository": {"full_name": "acme/shop", "html_url": "https://github.com/acme/shop",
                     "clone_url": "https://github.com/acme/shop.git", "ssh_url": "git@github.com:acme/shop.git"}})";
    return daemon_.Post("/hooks/github",
                        {{"Content-Type", "application/json"},
                         {"X-GitHub-Event", "pull_request"},
                         {"X-GitHub-Delivery", delivery},
                         {"X-Hub-Signature-256", "sha256=" + triggers::HmacSha256Hex(hook_secret_, body)}},
                        body);
  }

  // Service `name` as GET /api/v1/services lists it, when it is running;
  // null otherwise.
  json::Value ServiceNamed(const std::string& name) { return Service(name, /*running_only=*/true); }
  // Production's web service, shop-web, as listed, whatever its state.
  json::Value ProductionWeb() { return Service("shop-web", /*running_only=*/false); }

  // The version production's web service answers with ("" when it does not).
  std::string ServedVersion() { return VersionOnPort(static_cast<int>(NumberField(ProductionWeb(), "port"))); }
  // The version the server at `url` (http://host:port...) answers with.
  std::string ServedVersion(const std::string& url) {
    if (url.empty()) return "";
    return VersionOnPort(std::stoi(url.substr(url.rfind(':') + 1)));
  }

  // Preview `name` as GET /api/v1/previews/<name> answers; null unless 200.
  json::Value Preview(const std::string& name) {
    auto reply = daemon_.Get("/api/v1/previews/" + name);
    auto body = reply.status == 200 ? reply.Json() : std::nullopt;
    return body ? *body : json::Value();
  }
  std::string Status(const std::string& name) { return StringField(Preview(name), "status"); }

  size_t LivePreviews() {
    auto body = daemon_.Get("/api/v1/previews").Json();
    return body && body->Find("previews") ? body->Find("previews")->items().size() : 0;
  }

  ::testing::AssertionResult WaitForStatus(const std::string& name, const std::string& status,
                                           std::chrono::seconds timeout = std::chrono::seconds(30)) {
    if (WaitUntil([&] { return Status(name) == status; }, timeout)) return ::testing::AssertionSuccess();
    return ::testing::AssertionFailure() << "preview " << name << " is not " << status << ": "
                                         << json::SerializeCompact(Preview(name)) << "\n"
                                         << daemon_.Output();
  }

  // GET /api/v1/runs/<id>; null when there is no answer.
  json::Value Run(int64_t id) {
    auto body = daemon_.Get("/api/v1/runs/" + std::to_string(id)).Json();
    return body ? *body : json::Value();
  }

  TempDir dir_;
  FixtureRepo repo_{dir_.path(), "shop"};
  DaemonUnderTest daemon_{dir_.path()};
  std::string hook_secret_;  // as WriteHookSecret wrote it

 private:
  static std::string Webhook(Forge forge) {
    if (forge == Forge::kNone) return "";
    const bool github = forge == Forge::kGitHub;
    return std::string(", \"webhook\": {\"type\": \"") + (github ? "github" : "gitlab") +
           "\", \"secretFile\": \"hook.secret\", \"forgeUrl\": \"" + (github ? kShopOnGitHub : kShopOnGitLab) + "\"}";
  }

  json::Value Service(const std::string& name, bool running_only) {
    auto body = daemon_.Get("/api/v1/services").Json();
    if (body && body->Find("services")) {
      for (const json::Value& s : body->Find("services")->items()) {
        if (StringField(s, "name") != name) continue;
        if (!running_only || StringField(s, "state") == "running") return s;
      }
    }
    return json::Value();
  }

  static std::string VersionOnPort(int port) {
    if (port <= 0) return "";
    auto page = Http(port, "GET", "/").Json();
    return page ? StringField(*page, "version") : "";
  }
};

}  // namespace gitopsd::test
