// Trigger and preview benchmark, against a real gitopsd over loopback and a
// bare repository over file://:
//  1. Webhook received -> run started: a commit is pushed, a signed GitHub
//     push webhook is posted, and the time until the run of that commit
//     exists is measured, p50 and p99; beside `git fetch` of the same push
//     by the git command line from a clone (the least any fetch-on-webhook
//     design pays).
//  2. A burst of webhook deliveries (distinct delivery ids, one push) from
//     concurrent clients: every delivery answered, and how many looks
//     (ls-remote) and fetches the daemon made for them, and how many runs.
//  3. Previews of the example shop: N pull requests opened at once; time to
//     create each (until every preview is ready, divided by N), the memory
//     per preview (the daemon's RSS growth plus each preview service's and
//     its processes' PSS), then every pull request closed: time to tear each
//     down.
// Usage: trigger_bench [--rounds 50] [--burst 1000] [--clients 16] [--previews 100]
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "daemon/tokens.h"
#include "daemon/triggers/forge.h"
#include "bench/bench_util.h"
#include "tests/daemon/daemon_harness.h"
#include "tests/support/git_servers.h"
#include "tests/support/process.h"
#include "tests/support/temp_dir.h"

namespace {

using gitopsd::bench::MsSince;
using gitopsd::bench::Percentile;

namespace fs = std::filesystem;
using gitopsd::json::Value;
using gitopsd::test::DaemonUnderTest;
using gitopsd::test::FixtureRepo;
using gitopsd::test::HttpReply;
using gitopsd::test::TempDir;
using Clock = std::chrono::steady_clock;

const std::string kToken = "bench-write-token-0123456789";
const std::string kSecret = "bench-webhook-secret";

std::string Field(const Value& v, std::string_view key) {
  const Value* f = v.is_object() ? v.Find(key) : nullptr;
  if (!f) return "";
  if (f->is_string()) return f->as_string();
  if (f->is_number()) return f->number_text();
  return "";
}

const char* kRepoJson = R"(, "webhook": {"type": "github", "secretFile": "@SECRET@", "forgeUrl": "https://github.com/acme/shop"})";

std::string RepositoryHead(const std::string& kind, const std::string& ref, const std::string& sha, int number = 0) {
  if (kind == "push") {
    return R"({"ref": ")" + ref + R"(", "before": ")" + std::string(40, '0') + R"(", "after": ")" + sha +
           R"(", "deleted": false, "repository": {"full_name": "acme/shop", "html_url": "https://github.com/acme/shop",
           "clone_url": "https://github.com/acme/shop.git"}, "commits": [], "head_commit": null})";
  }
  return R"({"action": ")" + kind + R"(", "number": )" + std::to_string(number) +
         R"(, "pull_request": {"number": )" + std::to_string(number) + R"(, "state": ")" +
         (kind == "closed" ? "closed" : "open") + R"(", "draft": false, "merged": false,
         "head": {"ref": ")" + ref + R"(", "sha": ")" + sha + R"(", "repo": {"full_name": "acme/shop",
         "clone_url": "https://github.com/acme/shop.git"}}, "base": {"ref": "main", "sha": ")" + std::string(40, '0') +
         R"(", "repo": {"full_name": "acme/shop", "clone_url": "https://github.com/acme/shop.git"}}},
         "repository": {"full_name": "acme/shop", "html_url": "https://github.com/acme/shop",
         "clone_url": "https://github.com/acme/shop.git"}})";
}

HttpReply Deliver(DaemonUnderTest& daemon, const std::string& event, const std::string& body, const std::string& id) {
  return daemon.Post("/hooks/github",
                     {{"Content-Type", "application/json"},
                      {"X-GitHub-Event", event},
                      {"X-GitHub-Delivery", id},
                      {"X-Hub-Signature-256", "sha256=" + gitopsd::triggers::HmacSha256Hex(kSecret, body)}},
                     body);
}

double Metric(DaemonUnderTest& daemon, const std::string& prefix) {
  const std::string text = daemon.Get("/metrics").body;
  double total = 0;
  for (size_t at = text.find("\n" + prefix); at != std::string::npos; at = text.find("\n" + prefix, at + 1)) {
    const size_t end = text.find('\n', at + 1);
    const std::string line = text.substr(at + 1, end - at - 1);
    total += std::atof(line.substr(line.rfind(' ') + 1).c_str());
  }
  return total;
}

// A run of `flow` for commit `sha` exists.
bool HasRun(DaemonUnderTest& daemon, const std::string& flow, const std::string& sha) {
  auto body = daemon.Get("/api/v1/runs?flow=" + flow + "&limit=5").Json();
  if (!body || !body->Find("runs")) return false;
  for (const Value& r : body->Find("runs")->items()) {
    const Value* refs = r.Find("refs");
    const Value* app = refs ? refs->Find("app") : nullptr;
    if (app && Field(*app, "sha") == sha) return true;
  }
  return false;
}

size_t RunCount(DaemonUnderTest& daemon, const std::string& flow) {
  auto body = daemon.Get("/api/v1/runs?flow=" + flow + "&limit=1000").Json();
  return body && body->Find("runs") ? body->Find("runs")->items().size() : 0;
}

bool WaitFor(const std::function<bool()>& done, std::chrono::seconds timeout) {
  const auto until = Clock::now() + timeout;
  while (Clock::now() < until) {
    if (done()) return true;
    std::this_thread::sleep_for(std::chrono::microseconds(500));
  }
  return done();
}

long RssKb(int pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("VmRSS:", 0) == 0) return std::atol(line.c_str() + 6);
  }
  return 0;
}

long PssKb(int pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/smaps_rollup");
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("Pss:", 0) == 0) return std::atol(line.c_str() + 4);
  }
  return 0;
}

// The PSS of a process group (a service and what it started).
long GroupPssKb(int pgid) {
  long total = 0;
  for (const auto& entry : fs::directory_iterator("/proc")) {
    const std::string name = entry.path().filename();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    const int pid = std::stoi(name);
    if (getpgid(pid) == pgid) total += PssKb(pid);
  }
  return total;
}

std::map<std::string, std::string> Writer() { return {{"Authorization", "Bearer " + kToken}}; }

struct Setup {
  TempDir dir{"trigger-bench"};
  FixtureRepo repo{dir.path(), "shop"};
  DaemonUnderTest daemon{dir.Sub("daemon")};
};

bool Start(Setup& s, const std::string& extra_runtime) {
  std::ofstream(s.dir.Sub("tokens.json"))
      << "[{\"name\": \"bench\", \"role\": \"write\", \"sha256\": \""
      << gitopsd::daemon::ToHex(gitopsd::daemon::HashToken(kToken)) << "\"}]\n";
  std::ofstream(s.dir.Sub("hook.secret")) << kSecret;
  std::string repo = kRepoJson;
  repo.replace(repo.find("@SECRET@"), 8, s.dir.Sub("hook.secret"));
  s.daemon.SetEnv("GITOPSD_RUNNER_POLL", "50ms");
  auto started = s.daemon.StartWithConfig(
      "{\"stateDir\": \"@STATE@\", \"listen\": \"127.0.0.1:@PORT@\", \"apiTokensFile\": \"" + s.dir.Sub("tokens.json") +
      "\", \"repositories\": [{\"name\": \"shop\", \"url\": \"" + s.repo.file_url() +
      "\", \"pollInterval\": \"1h\", \"sync\": {\"writeBack\": false}" + repo + "}], \"runtime\": {" + extra_runtime +
      "}, \"log\": {\"level\": \"warn\"}}");
  if (!started || !s.daemon.WaitReady(std::chrono::seconds(60))) {
    std::fprintf(stderr, "the daemon did not start:\n%s\n", s.daemon.Output().c_str());
    return false;
  }
  return true;
}

int WebhookLatency(int rounds, int burst, int clients) {
  Setup s;
  s.repo.WriteFile(".gitops/release-flows/deploy.json", R"({"apiVersion": "v1.2", "name": "deploy",
    "triggers": [{"ref": "app", "repository": "shop", "branchRestrictions": ["main"]}],
    "spec": {"kind": "Workflow", "spec": {"type": "sequential", "steps": [
      {"kind": "Workflow", "spec": {"type": "parallel", "steps": []}}]}}})");
  s.repo.Commit("a flow with a trigger");
  s.repo.Push();
  if (!Start(s, "")) return 1;
  s.daemon.Post("/api/v1/repositories/shop/sync", Writer());
  // The clone the git baseline fetches into.
  const std::string clone = s.dir.Sub("baseline");
  gitopsd::test::RunCommand({"git", "clone", "-q", s.repo.bare_path(), clone}, s.dir.path(), {});
  std::this_thread::sleep_for(std::chrono::milliseconds(300));

  std::vector<double> hook_ms, fetch_ms;
  for (int i = 0; i < rounds; ++i) {
    s.repo.WriteFile("src/round.txt", std::to_string(i) + "\n");
    const std::string sha = s.repo.Commit("round " + std::to_string(i));
    s.repo.Push();
    auto t0 = Clock::now();
    auto reply = Deliver(s.daemon, "push", RepositoryHead("push", "refs/heads/main", sha), "lat-" + std::to_string(i));
    if (reply.status != 202 || !WaitFor([&] { return HasRun(s.daemon, "deploy", sha); }, std::chrono::seconds(30))) {
      std::fprintf(stderr, "round %d: no run (%d %s)\n%s\n", i, reply.status, reply.body.c_str(),
                   s.daemon.Output().c_str());
      return 1;
    }
    hook_ms.push_back(MsSince(t0));
    t0 = Clock::now();
    gitopsd::test::RunCommand({"git", "fetch", "-q", "origin"}, clone, {});
    fetch_ms.push_back(MsSince(t0));
  }
  std::printf("webhook -> run started (%d pushes): p50 %.1f ms, p99 %.1f ms | git fetch of the same push: "
              "p50 %.1f ms, p99 %.1f ms | ratio p50 %.2f\n",
              rounds, Percentile(hook_ms, 0.5), Percentile(hook_ms, 0.99), Percentile(fetch_ms, 0.5),
              Percentile(fetch_ms, 0.99), Percentile(hook_ms, 0.5) / Percentile(fetch_ms, 0.5));

  // The burst: one push, `burst` deliveries of it.
  s.repo.WriteFile("src/burst.txt", "burst\n");
  const std::string sha = s.repo.Commit("the burst");
  s.repo.Push();
  const double looks0 = Metric(s.daemon, "gitopsd_trigger_looks_total");
  const double fetches0 = Metric(s.daemon, "gitopsd_trigger_fetches_total");
  const size_t runs0 = RunCount(s.daemon, "deploy");
  const std::string body = RepositoryHead("push", "refs/heads/main", sha);
  std::atomic<int> next{0}, accepted{0}, other{0};
  auto t0 = Clock::now();
  std::vector<std::thread> threads;
  for (int c = 0; c < clients; ++c) {
    threads.emplace_back([&] {
      for (int i = next++; i < burst; i = next++) {
        auto r = Deliver(s.daemon, "push", body, "burst-" + std::to_string(i));
        (r.status == 202 ? accepted : other)++;
      }
    });
  }
  for (auto& t : threads) t.join();
  const double answered_ms = MsSince(t0);
  WaitFor([&] { return HasRun(s.daemon, "deploy", sha); }, std::chrono::seconds(30));
  std::this_thread::sleep_for(std::chrono::milliseconds(500));  // let the last looks end
  std::printf("burst of %d deliveries from %d clients: %d accepted, %d other, all answered in %.0f ms "
              "(%.2f ms each); %.0f looks (ls-remote) and %.0f fetches for them; %zu run(s) started\n",
              burst, clients, accepted.load(), other.load(), answered_ms, answered_ms / burst,
              Metric(s.daemon, "gitopsd_trigger_looks_total") - looks0,
              Metric(s.daemon, "gitopsd_trigger_fetches_total") - fetches0, RunCount(s.daemon, "deploy") - runs0);
  return 0;
}

int Previews(int count) {
  Setup s;
  const fs::path example = fs::path(GITOPSD_SOURCE_DIR) / "examples" / "shop";
  fs::copy(example, s.repo.work_path(), fs::copy_options::recursive | fs::copy_options::overwrite_existing);
  // No cap for the benchmark, and no teardown message to an unreachable port.
  std::string preview = gitopsd::test::ReadTextFile(s.repo.work_path() + "/.gitops/previews/pull-requests.json");
  preview.replace(preview.find("\"maxPreviews\": 10"), 17, "\"maxPreviews\": 1000");
  s.repo.WriteFile(".gitops/previews/pull-requests.json", preview);
  s.repo.MakeExecutable("bin/shop");
  s.repo.Commit("the shop");
  s.repo.Push();
  if (!Start(s, "\"portRange\": [40000, 40999]")) return 1;
  if (!WaitFor([&] { return s.daemon.Get("/api/v1/services").body.find("shop-web") != std::string::npos; },
               std::chrono::seconds(120))) {
    std::fprintf(stderr, "the shop did not come up\n%s\n", s.daemon.Output().c_str());
    return 1;
  }
  const int daemon_pid = s.daemon.process().pid();
  const long rss0 = RssKb(daemon_pid);
  s.repo.CheckoutNewBranch("feature/bench");
  s.repo.WriteFile("VERSION", "2\n");
  const std::string sha = s.repo.Commit("the pull requests' code");
  s.repo.Push("feature/bench");
  for (int n = 1; n <= count; ++n) {
    s.repo.Git({"push", "-q", "origin", "HEAD:refs/pull/" + std::to_string(n) + "/head"});
  }
  auto live = [&](const std::string& status) {
    auto body = s.daemon.Get("/api/v1/previews").Json();
    size_t n = 0;
    if (body && body->Find("previews")) {
      for (const Value& p : body->Find("previews")->items()) n += Field(p, "status") == status;
    }
    return n;
  };
  auto t0 = Clock::now();
  for (int n = 1; n <= count; ++n) {
    Deliver(s.daemon, "pull_request", RepositoryHead("opened", "feature/bench", sha, n), "open-" + std::to_string(n));
  }
  if (!WaitFor([&] { return live("ready") == static_cast<size_t>(count); }, std::chrono::seconds(60 * 30))) {
    std::fprintf(stderr, "only %zu previews ready\n", live("ready"));
    return 1;
  }
  const double create_ms = MsSince(t0);
  long pss = 0;
  if (auto body = s.daemon.Get("/api/v1/services").Json(); body && body->Find("services")) {
    for (const Value& svc : body->Find("services")->items()) {
      if (Field(svc, "name").rfind("web-pr-", 0) == 0) pss += GroupPssKb(std::atoi(Field(svc, "pid").c_str()));
    }
  }
  const long rss1 = RssKb(daemon_pid);
  t0 = Clock::now();
  for (int n = 1; n <= count; ++n) {
    Deliver(s.daemon, "pull_request", RepositoryHead("closed", "feature/bench", sha, n), "close-" + std::to_string(n));
  }
  if (!WaitFor([&] { return live("ready") + live("tearing_down") == 0; }, std::chrono::seconds(60 * 10))) {
    std::fprintf(stderr, "previews left: %zu\n", live("ready") + live("tearing_down"));
    return 1;
  }
  const double teardown_ms = MsSince(t0);
  std::printf("%d previews of the example shop: created in %.1f s (%.0f ms each, one after another: the template's "
              "concurrencyPolicy is queue); memory %.1f MB per preview (its processes' PSS %.1f MB + the daemon's "
              "RSS growth %.2f MB); torn down in %.1f s (%.0f ms each)\n",
              count, create_ms / 1000, create_ms / count, (pss + (rss1 - rss0)) / 1024.0 / count,
              pss / 1024.0 / count, (rss1 - rss0) / 1024.0 / count, teardown_ms / 1000, teardown_ms / count);
  gitopsd::test::KillReportedServices(s.daemon);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  int rounds = 50, burst = 1000, clients = 16, previews = 100;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    const int value = std::atoi(argv[i + 1]);
    if (flag == "--rounds") rounds = value;
    else if (flag == "--burst") burst = value;
    else if (flag == "--clients") clients = value;
    else if (flag == "--previews") previews = value;
    else {
      std::fprintf(stderr, "usage: trigger_bench [--rounds 50] [--burst 1000] [--clients 16] [--previews 100]\n");
      return 2;
    }
  }
  if (int rc = WebhookLatency(rounds, burst, clients); rc != 0) return rc;
  return previews > 0 ? Previews(previews) : 0;
}
