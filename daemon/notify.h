// systemd's readiness protocol (sd_notify) without libsystemd: one datagram
// to the AF_UNIX socket named by $NOTIFY_SOCKET. A no-op when the variable is
// unset (not started by systemd with Type=notify).
#pragma once
#include <string_view>

namespace gitopsd::daemon {

// Sends e.g. "READY=1" or "STOPPING=1"; returns true if a datagram was sent.
bool NotifySystemd(std::string_view state);

}  // namespace gitopsd::daemon
