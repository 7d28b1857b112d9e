// What the benchmarks share: timing, percentiles, and the git command line
// run with a fixed identity and no user or system configuration.
#pragma once
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <map>
#include <string>
#include <vector>

#include "tests/support/process.h"

namespace gitopsd::bench {

inline double MsSince(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t).count();
}

// The p-th percentile (0..1) of `v`, nearest rank; 0 for none.
inline double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  size_t i = static_cast<size_t>(p * static_cast<double>(v.size() - 1) + 0.5);
  return v[std::min(i, v.size() - 1)];
}

inline const std::map<std::string, std::string>& GitEnv() {
  static const std::map<std::string, std::string> env = {
      {"GIT_AUTHOR_NAME", "bench"},    {"GIT_AUTHOR_EMAIL", "bench@localhost"},
      {"GIT_COMMITTER_NAME", "bench"}, {"GIT_COMMITTER_EMAIL", "bench@localhost"},
      {"GIT_CONFIG_NOSYSTEM", "1"},    {"HOME", "/nonexistent"}};
  return env;
}

// `git args...` in `cwd`; says what failed on stderr.
inline bool Git(const std::vector<std::string>& args, const std::string& cwd) {
  std::vector<std::string> argv = {"git", "-c", "init.defaultBranch=main", "-c", "protocol.file.allow=always"};
  argv.insert(argv.end(), args.begin(), args.end());
  auto r = test::RunCommand(argv, cwd, GitEnv());
  if (!r.ok()) std::fprintf(stderr, "git %s failed: %s\n", args[0].c_str(), r.output.c_str());
  return r.ok();
}

}  // namespace gitopsd::bench
