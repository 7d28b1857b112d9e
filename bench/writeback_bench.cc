// Write-back benchmark, against a real gitopsd over loopback and a bare
// repository over file://, with the git command line as the baseline in the
// same run:
//  1. 200 sequential edits: API PUT until the answer carries the pushed
//     commit, beside `git commit -a && git push` of the same kind of change
//     (one value in one file) from a clone; p50 and p99 of each.
//  2. 100 concurrent edits to 100 objects: time until every edit is pushed,
//     and how many commits carried them.
// Usage: writeback_bench [--edits N] [--concurrent N]
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "daemon/tokens.h"
#include "bench/bench_util.h"
#include "tests/daemon/daemon_harness.h"
#include "tests/support/process.h"
#include "tests/support/temp_dir.h"

namespace {

using gitopsd::bench::MsSince;
using gitopsd::bench::Percentile;
using gitopsd::bench::Git;

using gitopsd::test::DaemonUnderTest;
using gitopsd::test::Http;
using gitopsd::test::HttpReply;
using gitopsd::test::RunCommand;
using gitopsd::test::TempDir;
using Clock = std::chrono::steady_clock;

const std::string kToken = "bench-write-token-0123456789";
constexpr int kObjects = 100;

std::string ObjectJson(const std::string& name, const std::string& description) {
  return "{\n  \"apiVersion\": \"v1.2\",\n  \"name\": \"" + name + "\",\n  \"description\": \"" +
         description +
         "\",\n  \"arguments\": {\"REGION\": \"local\"},\n  \"spec\": {\n    \"kind\": "
         "\"Workflow\",\n    \"spec\": {\"type\": \"sequential\", \"steps\": []}\n  }\n}\n";
}

std::string Name(int i) { return "object-" + std::to_string(i); }

int CommitCount(const std::string& bare) {
  auto r = RunCommand({"git", "--git-dir", bare, "rev-list", "--count", "main"}, "", gitopsd::bench::GitEnv());
  return r.ok() ? std::stoi(r.output) : -1;
}

// PUT one object; returns true once the answer says it was pushed (waiting
// on the write-back link when the daemon answered 202).
bool PutAndWaitPushed(int port, const std::string& name, const std::string& description) {
  HttpReply reply = Http(port, "PUT", "/api/v1/objects/templates/" + name,
                         {{"Authorization", "Bearer " + kToken},
                          {"Content-Type", "application/json"}},
                         ObjectJson(name, description));
  if (reply.status == 200 || reply.status == 201) return true;
  if (reply.status != 202) {
    std::fprintf(stderr, "PUT %s: %d %s\n", name.c_str(), reply.status, reply.body.c_str());
    return false;
  }
  auto body = reply.Json();
  const auto* wb = body ? body->Find("writeBack") : nullptr;
  const auto* href = wb ? wb->Find("href") : nullptr;
  if (!href) return false;
  auto deadline = Clock::now() + std::chrono::seconds(60);
  while (Clock::now() < deadline) {
    auto status = Http(port, "GET", href->as_string()).Json();
    const auto* s = status ? status->Find("status") : nullptr;
    if (s && s->as_string() == "pushed") return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return false;
}

}  // namespace

int main(int argc, char** argv) {
  int edits = 200, concurrent = 100;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--edits" && i + 1 < argc) {
      edits = std::atoi(argv[++i]);
    } else if (a == "--concurrent" && i + 1 < argc) {
      concurrent = std::min(kObjects, std::atoi(argv[++i]));
    } else {
      std::printf("usage: writeback_bench [--edits N] [--concurrent N<=100]\n");
      return a == "--help" || a == "-h" ? 0 : 2;
    }
  }
  TempDir dir("wbbench");
  const std::string bare = dir.Sub("origin.git"), seed = dir.Sub("seed");
  Git({"init", "-q", "--bare", bare}, dir.path());
  Git({"clone", "-q", bare, seed}, dir.path());
  std::filesystem::create_directories(seed + "/.gitops/templates");
  for (int i = 0; i < kObjects; ++i) {
    std::ofstream(seed + "/.gitops/templates/" + Name(i) + ".json") << ObjectJson(Name(i), "v0");
  }
  Git({"add", "-A"}, seed);
  Git({"commit", "-q", "-m", "seed"}, seed);
  Git({"push", "-q", "origin", "HEAD:main"}, seed);
  // The baseline gets its own copy, so neither side moves the other's remote.
  const std::string baseline_bare = dir.Sub("baseline.git"), baseline = dir.Sub("baseline");
  Git({"clone", "-q", "--bare", bare, baseline_bare}, dir.path());
  Git({"clone", "-q", baseline_bare, baseline}, dir.path());

  std::ofstream(dir.Sub("tokens.json"))
      << "[{\"name\": \"bench\", \"role\": \"write\", \"sha256\": \""
      << gitopsd::daemon::ToHex(gitopsd::daemon::HashToken(kToken)) << "\"}]\n";
  std::filesystem::create_directories(dir.Sub("daemon"));
  DaemonUnderTest daemon(dir.Sub("daemon"));
  auto started = daemon.StartWithConfig(
      "{\"stateDir\": \"@STATE@\", \"listen\": \"127.0.0.1:@PORT@\", \"apiTokensFile\": \"" +
      dir.Sub("tokens.json") +
      "\", \"log\": {\"level\": \"warn\"}, \"repositories\": [{\"name\": \"bench\", \"url\": "
      "\"file://" + bare + "\", \"pollInterval\": \"1h\"}]}");
  if (!started || !daemon.WaitReady(std::chrono::seconds(60))) {
    std::fprintf(stderr, "gitopsd did not start: %s\n%s\n", started.message(),
                 daemon.Output().c_str());
    return 1;
  }

  // 1. Sequential edits, alternating with the baseline.
  std::vector<double> ours, theirs;
  for (int i = 1; i <= edits; ++i) {
    std::string name = Name(i % kObjects);
    auto t = Clock::now();
    if (!PutAndWaitPushed(daemon.port(), name, "edit " + std::to_string(i))) return 1;
    ours.push_back(MsSince(t));

    std::ofstream(baseline + "/.gitops/templates/" + name + ".json")
        << ObjectJson(name, "edit " + std::to_string(i));
    t = Clock::now();
    if (!Git({"commit", "-q", "-a", "-m", "edit"}, baseline)) return 1;
    if (!Git({"push", "-q", "origin", "HEAD:main"}, baseline)) return 1;
    theirs.push_back(MsSince(t));
  }
  std::printf("%d sequential edits (PUT until pushed vs git commit -a && git push)\n", edits);
  std::printf("  %-22s p50 %8.2f ms   p99 %8.2f ms\n", "gitopsd PUT -> pushed", Percentile(ours, 0.5),
              Percentile(ours, 0.99));
  std::printf("  %-22s p50 %8.2f ms   p99 %8.2f ms\n", "git commit && push", Percentile(theirs, 0.5),
              Percentile(theirs, 0.99));
  std::printf("  ratio p50 %.2f (target <= 1.0)\n", Percentile(ours, 0.5) / Percentile(theirs, 0.5));

  // 2. Concurrent edits to distinct objects.
  int commits_before = CommitCount(bare);
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  auto t = Clock::now();
  for (int i = 0; i < concurrent; ++i) {
    threads.emplace_back([&, i] {
      if (!PutAndWaitPushed(daemon.port(), Name(i), "concurrent " + std::to_string(i))) ++failures;
    });
  }
  for (auto& th : threads) th.join();
  double all_ms = MsSince(t);
  int commits = CommitCount(bare) - commits_before;
  std::printf("%d concurrent edits to %d objects: all pushed in %.1f ms, in %d commits%s\n",
              concurrent, concurrent, all_ms, commits,
              failures ? " (SOME FAILED)" : "");
  return failures ? 1 : 0;
}
