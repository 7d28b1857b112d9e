// systemd's service protocol without libsystemd: readiness and status
// (sd_notify: one datagram to the AF_UNIX socket named by $NOTIFY_SOCKET, a
// no-op when the variable is unset, i.e. not started by systemd with
// Type=notify), the watchdog interval, and the daemon's signals.
#pragma once
#include <chrono>
#include <functional>
#include <optional>
#include <string_view>

namespace gitopsd::daemon {

// Sends e.g. "READY=1" or "STOPPING=1"; returns true if a datagram was sent.
bool NotifySystemd(std::string_view state);

// The watchdog interval systemd asks for (WatchdogSec= sets WATCHDOG_USEC,
// and WATCHDOG_PID names the process it is meant for); nullopt when there
// is none or it is meant for another process. Ping ("WATCHDOG=1") at half
// of it.
std::optional<std::chrono::microseconds> WatchdogInterval();

// Blocks SIGTERM, SIGINT and SIGHUP in the calling thread; call before any
// thread starts so that every thread inherits the mask and only
// WaitForSignals sees them.
void BlockDaemonSignals();

// Waits for SIGTERM or SIGINT and returns it. Meanwhile each SIGHUP calls
// `on_reload`, and `on_tick` is called every `tick` (and after a reload).
int WaitForSignals(std::chrono::milliseconds tick, const std::function<void()>& on_reload,
                   const std::function<void()>& on_tick);

}  // namespace gitopsd::daemon
