// `gitopsd serve`: loads the configuration (a file, or quick-mode flags),
// opens the state, starts one sync thread per repository and the HTTP API,
// and runs until SIGTERM or SIGINT, then shuts down cleanly.
#pragma once
#include <optional>
#include <string>

#include "daemon/config.h"

namespace gitopsd::daemon {

struct ServeRequest {
  std::string config_path = std::string(kDefaultConfigPath);
  std::optional<QuickOptions> quick;  // set: ignore config_path
  std::string log_level;              // overrides the configuration's log.level when set
  std::string log_format;             // overrides the configuration's log.format when set
};

// Exit codes of `gitopsd serve`.
inline constexpr int kExitOk = 0;
inline constexpr int kExitRuntime = 1;  // state database, listen address, ...
inline constexpr int kExitConfig = 2;   // bad configuration or usage

// Runs the daemon; returns the process exit code. Fatal start-up errors go
// to stderr with the reason. REQUIRES: called from main before any other
// thread exists (it blocks SIGTERM/SIGINT for every thread it starts).
int RunServe(const ServeRequest& request);

}  // namespace gitopsd::daemon
