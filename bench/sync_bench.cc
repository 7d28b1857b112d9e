// Sync benchmark: repositories of 100, 1,000 and 10,000 objects.
//
// For each size it measures, in one run:
//  - the initial sync (fetch into an empty mirror, parse, validate, apply);
//  - a pushed one-file change until applied (fetch + diff + apply), beside
//    the git command line fetching the same push into its own clone;
// and prints the medians and the ratio. Usage: sync_bench [sizes...] [--rounds N]
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "sync/reconcile.h"
#include "tests/support/process.h"
#include "tests/support/temp_dir.h"

namespace {

using gitopsd::test::RunCommand;
using gitopsd::test::TempDir;
using Clock = std::chrono::steady_clock;

double MsSince(Clock::time_point t) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t).count();
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

const std::map<std::string, std::string> kGitEnv = {
    {"GIT_AUTHOR_NAME", "bench"},       {"GIT_AUTHOR_EMAIL", "bench@localhost"},
    {"GIT_COMMITTER_NAME", "bench"},    {"GIT_COMMITTER_EMAIL", "bench@localhost"},
    {"GIT_CONFIG_NOSYSTEM", "1"},       {"HOME", "/nonexistent"}};

bool Git(const std::vector<std::string>& args, const std::string& cwd) {
  std::vector<std::string> argv = {"git", "-c", "init.defaultBranch=main", "-c",
                                    "protocol.file.allow=always"};
  argv.insert(argv.end(), args.begin(), args.end());
  auto r = RunCommand(argv, cwd, kGitEnv);
  if (!r.ok()) std::fprintf(stderr, "git %s failed: %s\n", args[0].c_str(), r.output.c_str());
  return r.ok();
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
  double change_ms;
  double change_fetch_ms;  // of change_ms: fetching into the mirror
  double change_apply_ms;  // of change_ms: diff, load, validate, store
  double git_fetch_ms;
};

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
  SizeResult result{objects, 0, 0, 0, 0, 0};
  auto t0 = Clock::now();
  auto first = (*reconciler)->Sync();
  result.initial_ms = MsSince(t0);
  if (!first || first->added != objects) {
    std::fprintf(stderr, "initial sync failed: %s\n",
                 first ? first->Summary().c_str() : first.error().message.c_str());
    std::exit(1);
  }

  std::vector<double> ours, ours_fetch, ours_apply, theirs;
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
    auto run_git = [&] {
      auto t = Clock::now();
      Git({"fetch", "-q", "origin", "main"}, baseline);
      theirs.push_back(MsSince(t));
    };
    if (round % 2) {
      run_ours();
      run_git();
    } else {
      run_git();
      run_ours();
    }
  }
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
  std::printf("%8s %12s %15s %10s %10s %13s %7s\n", "objects", "initial_ms", "change_applied",
              "(fetch", "apply)", "git_fetch_ms", "ratio");
  for (int n : sizes) {
    SizeResult r = RunSize(n, rounds, *loader);
    std::printf("%8d %12.1f %15.2f %10.2f %10.2f %13.2f %7.2f\n", r.objects, r.initial_ms,
                r.change_ms, r.change_fetch_ms, r.change_apply_ms, r.git_fetch_ms,
                r.change_ms / r.git_fetch_ms);
    std::fflush(stdout);
  }
  std::printf("(medians over %d one-file changes; ratio = change applied / git fetch; target <= 1.5)\n",
              rounds);
  return 0;
}
