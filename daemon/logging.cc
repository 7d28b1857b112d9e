#include "daemon/logging.h"

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

namespace gitopsd::daemon {

bool IsLogLevel(const std::string& level) {
  // from_str maps unknown names to "off", so check the known spellings.
  for (const char* known : {"trace", "debug", "info", "warn", "warning", "error", "err",
                            "critical", "off"}) {
    if (level == known) return true;
  }
  return false;
}

Status SetUpLogging(const std::string& level) {
  if (!IsLogLevel(level)) {
    return Fail("log level \"" + level + "\": use trace, debug, info, warn, error or off");
  }
  std::string name = level == "warning" ? "warn" : level == "error" ? "err" : level;
  auto logger = std::make_shared<spdlog::logger>(
      "gitopsd", std::make_shared<spdlog::sinks::stdout_color_sink_mt>());
  logger->set_pattern("[%Y-%m-%d %H:%M:%S.%e] [%l] %v");
  logger->set_level(spdlog::level::from_str(name));
  logger->flush_on(spdlog::level::trace);
  spdlog::set_default_logger(logger);
  return Ok();
}

}  // namespace gitopsd::daemon
