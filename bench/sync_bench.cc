// Sync benchmark: repositories of 100, 1,000 and 10,000 objects.
//
// For each size it measures, in one run:
//  - the initial sync (fetch into an empty mirror, parse, validate, apply);
//  - a pushed one-file change until applied, started by the sync-now call
//    (POST /api/v1/repositories/{name}/sync on a real gitopsd over loopback),
//    beside the git command line fetching the same push into its own clone,
//    and the same sync in-process split into fetch and apply;
//  - the daemon's CPU time while idle for a few seconds after that;
// and prints the medians and the ratios. Usage: sync_bench [sizes...] [--rounds N]
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>
#include <thread>
#include <string>
#include <vector>

#include "daemon/tokens.h"
#include "sync/reconcile.h"
#include "bench/bench_util.h"
#include "tests/daemon/daemon_harness.h"
#include "tests/support/process.h"
#include "tests/support/temp_dir.h"

namespace {

using gitopsd::bench::MsSince;
using gitopsd::bench::Git;

using gitopsd::test::RunCommand;
using gitopsd::test::TempDir;
using Clock = std::chrono::steady_clock;

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

std::string ObjectJson(const std::string& name, int version) {
  return "{\n  \"apiVersion\": \"v1.2\",\n  \"name\": \"" + name +
         "\",\n  \"description\": \"version " + std::to_string(version) +
         "\",\n  \"arguments\": {\"REGION\": \"local\", \"REPLICAS\": \"2\"},\n"
         "  \"spec\": {\n    \"kind\": \"Workflow\",\n    \"spec\": {\n      \"type\": "
         "\"sequential\",\n      \"steps\": [\n        {\"kind\": \"Addon\", \"ref\": \"db\", "
         "\"spec\": {\"name\": \"" + name.substr(0, 30) + "-db\", \"type\": \"sqlite\"}}\n"
         "      ]\n    }\n  }\n}\n";
}

struct SizeResult {
  int objects;
  double initial_ms;
  double daemon_change_ms;  // sync-now call answered with the change applied
  double change_ms;         // the same in-process
  double change_fetch_ms;   // of change_ms: fetching into the mirror
  double change_apply_ms;   // of change_ms: diff, load, validate, store
  double git_fetch_ms;
  double idle_cpu_ms;       // daemon CPU time over kIdleSeconds of idling
};

constexpr int kIdleSeconds = 5;
const std::string kToken = "bench-token-0123456789";

// User + system CPU time of a process so far, in ms.
double CpuMs(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  size_t close = stat.rfind(')');
  if (close == std::string::npos) return -1;
  std::istringstream fields(stat.substr(close + 2));
  std::string f;
  long utime = 0, stime = 0;
  for (int i = 3; i <= 15 && fields >> f; ++i) {
    if (i == 14) utime = std::stol(f);
    if (i == 15) stime = std::stol(f);
  }
  return (utime + stime) * 1000.0 / static_cast<double>(sysconf(_SC_CLK_TCK));
}

// A real gitopsd on the bench repository, synced only when asked.
std::unique_ptr<gitopsd::test::DaemonUnderTest> StartDaemon(const TempDir& dir,
                                                            const std::string& bare) {
  std::ofstream(dir.Sub("tokens.json"))
      << "[{\"name\": \"bench\", \"role\": \"write\", \"sha256\": \""
      << gitopsd::daemon::ToHex(gitopsd::daemon::HashToken(kToken)) << "\"}]\n";
  auto daemon = std::make_unique<gitopsd::test::DaemonUnderTest>(dir.Sub("daemon"));
  std::filesystem::create_directories(dir.Sub("daemon"));
  std::string config = "{\"stateDir\": \"@STATE@\", \"listen\": \"127.0.0.1:@PORT@\", "
                       "\"apiTokensFile\": \"" + dir.Sub("tokens.json") + "\", "
                       "\"log\": {\"level\": \"warn\"}, "
                       "\"repositories\": [{\"name\": \"bench\", \"url\": \"file://" + bare +
                       "\", \"pollInterval\": \"1h\"}]}";
  auto started = daemon->StartWithConfig(config);
  if (!started || !daemon->WaitReady(std::chrono::seconds(60))) {
    std::fprintf(stderr, "gitopsd did not become ready: %s\n%s\n", started.message(),
                 daemon->Output().c_str());
    std::exit(1);
  }
  return daemon;
}

SizeResult RunSize(int objects, int rounds, const gitopsd::model::Loader& loader) {
  TempDir dir("bench");
  std::string bare = dir.Sub("origin.git"), work = dir.Sub("work"), baseline = dir.Sub("baseline");
  Git({"init", "-q", "--bare", bare}, dir.path());
  Git({"clone", "-q", bare, work}, dir.path());
  for (int i = 0; i < objects; ++i) {
    std::string name = "object-" + std::to_string(i);
    std::string path = work + "/.gitops/templates/" + name + ".json";
    std::filesystem::create_directories(std::filesystem::path(path).parent_path());
    std::ofstream(path) << ObjectJson(name, 0);
  }
  std::ofstream(work + "/README.md") << "bench\n";
  Git({"add", "-A"}, work);
  Git({"commit", "-q", "-m", "initial"}, work);
  Git({"push", "-q", "origin", "HEAD:main"}, work);
  Git({"clone", "-q", bare, baseline}, dir.path());

  auto store = gitopsd::store::Store::Open(dir.Sub("state.db"));
  if (!store) {
    std::fprintf(stderr, "%s\n", store.error().message.c_str());
    std::exit(1);
  }
  gitopsd::sync::RepositoryConfig config;
  config.name = "bench";
  config.url = "file://" + bare;
  config.mirror_dir = dir.Sub("mirror.git");
  auto reconciler = gitopsd::sync::Reconciler::Create(config, **store, loader);
  if (!reconciler) {
    std::fprintf(stderr, "%s\n", reconciler.error().message.c_str());
    std::exit(1);
  }
  SizeResult result{objects, 0, 0, 0, 0, 0, 0, 0};
  auto t0 = Clock::now();
  auto first = (*reconciler)->Sync();
  result.initial_ms = MsSince(t0);
  if (!first || first->added != objects) {
    std::fprintf(stderr, "initial sync failed: %s\n",
                 first ? first->Summary().c_str() : first.error().message.c_str());
    std::exit(1);
  }

  auto daemon = StartDaemon(dir, bare);
  std::vector<double> via_daemon, ours, ours_fetch, ours_apply, theirs;
  for (int round = 1; round <= rounds; ++round) {
    std::string name = "object-" + std::to_string((round * 7919) % objects);
    std::ofstream(work + "/.gitops/templates/" + name + ".json") << ObjectJson(name, round);
    Git({"commit", "-q", "-a", "-m", "change " + std::to_string(round)}, work);
    Git({"push", "-q", "origin", "HEAD:main"}, work);
    // Alternate who goes first so neither always gets a warm cache.
    auto run_ours = [&] {
      auto t = Clock::now();
      auto r = (*reconciler)->Sync();
      ours.push_back(MsSince(t));
      if (r) {
        ours_fetch.push_back(r->fetch_us / 1000.0);
        ours_apply.push_back(r->apply_us / 1000.0);
      }
      if (!r || r->updated != 1) {
        std::fprintf(stderr, "change not applied: %s\n",
                     r ? r->Summary().c_str() : r.error().message.c_str());
        std::exit(1);
      }
    };
    auto run_daemon = [&] {
      auto t = Clock::now();
      auto reply = daemon->Post("/api/v1/repositories/bench/sync",
                                {{"Authorization", "Bearer " + kToken}});
      via_daemon.push_back(MsSince(t));
      auto body = reply.Json();
      const auto* updated = body ? body->Find("updated") : nullptr;
      if (reply.status != 200 || !updated || updated->as_double() != 1) {
        std::fprintf(stderr, "sync-now did not apply the change: %d %s\n", reply.status,
                     reply.body.c_str());
        std::exit(1);
      }
    };
    auto run_git = [&] {
      auto t = Clock::now();
      Git({"fetch", "-q", "origin", "main"}, baseline);
      theirs.push_back(MsSince(t));
    };
    if (round % 2) {
      run_daemon();
      run_git();
      run_ours();
    } else {
      run_git();
      run_ours();
      run_daemon();
    }
  }
  double cpu_before = CpuMs(daemon->process().pid());
  std::this_thread::sleep_for(std::chrono::seconds(kIdleSeconds));
  result.idle_cpu_ms = CpuMs(daemon->process().pid()) - cpu_before;
  result.daemon_change_ms = Median(via_daemon);
  result.change_ms = Median(ours);
  result.change_fetch_ms = Median(ours_fetch);
  result.change_apply_ms = Median(ours_apply);
  result.git_fetch_ms = Median(theirs);
  return result;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<int> sizes;
  int rounds = 15;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--rounds" && i + 1 < argc) {
      rounds = std::atoi(argv[++i]);
    } else if (a == "--help" || a == "-h") {
      std::printf("usage: sync_bench [SIZE...] [--rounds N]   (default sizes 100 1000 10000)\n");
      return 0;
    } else {
      sizes.push_back(std::atoi(a.c_str()));
    }
  }
  if (sizes.empty()) sizes = {100, 1000, 10000};
  auto loader = gitopsd::model::Loader::Create();
  if (!loader) {
    std::fprintf(stderr, "%s\n", loader.error().message.c_str());
    return 1;
  }
  std::printf("%8s %11s %14s %13s %9s %9s %13s %7s %12s\n", "objects", "initial_ms",
              "sync_now_ms", "in_process", "(fetch", "apply)", "git_fetch_ms", "ratio",
              "idle_cpu_ms");
  for (int n : sizes) {
    SizeResult r = RunSize(n, rounds, *loader);
    std::printf("%8d %11.1f %14.2f %13.2f %9.2f %9.2f %13.2f %7.2f %12.1f\n", r.objects,
                r.initial_ms, r.daemon_change_ms, r.change_ms, r.change_fetch_ms,
                r.change_apply_ms, r.git_fetch_ms, r.daemon_change_ms / r.git_fetch_ms,
                r.idle_cpu_ms);
    std::fflush(stdout);
  }
  std::printf(
      "medians over %d one-file changes. sync_now_ms: POST .../sync answered with the change\n"
      "applied by a real gitopsd over loopback; in_process: the same sync without HTTP (fetch +\n"
      "apply); git_fetch_ms: 'git fetch' of the same push into a clone; ratio = sync_now /\n"
      "git fetch (target <= 1.5); idle_cpu_ms: daemon CPU time over %d s of idling.\n",
      rounds, kIdleSeconds);
  return 0;
}
