// What the kernel says about this process, for the process_* series that
// Prometheus clients conventionally export: memory, CPU time, start time
// and file descriptors, read from /proc/self (Linux only).
#pragma once
#include <optional>

namespace gitopsd::daemon {

struct ProcessStats {
  double resident_memory_bytes = 0;
  double virtual_memory_bytes = 0;
  double cpu_seconds = 0;         // user + system
  double start_time_seconds = 0;  // Unix time
  double open_fds = 0;
  double max_fds = 0;  // the soft limit; 0 when unlimited or unknown
};

// nullopt when /proc/self/stat cannot be read or parsed; fields that other
// files give stay 0 when those cannot be read.
std::optional<ProcessStats> ReadProcessStats();

}  // namespace gitopsd::daemon
