// Logging set-up: spdlog's default logger writes "[time] [level] message"
// to stdout (the journal under systemd), flushed line by line.
#pragma once
#include <string>

#include "sync/status.h"

namespace gitopsd::daemon {

// level: trace, debug, info, warn, error, critical or off.
Status SetUpLogging(const std::string& level);
bool IsLogLevel(const std::string& level);

}  // namespace gitopsd::daemon
