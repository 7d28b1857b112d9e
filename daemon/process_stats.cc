#include "daemon/process_stats.h"

#include <sys/resource.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace gitopsd::daemon {

namespace {

std::string ReadFile(const char* path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// The boot time (Unix seconds) from /proc/stat's "btime" line, or 0.
double BootTime() {
  std::istringstream in(ReadFile("/proc/stat"));
  std::string key;
  double value = 0;
  while (in >> key) {
    if (key == "btime" && in >> value) return value;
    in.ignore(1 << 20, '\n');
  }
  return 0;
}

// The soft "Max open files" of /proc/self/limits, or 0 when unlimited.
double MaxOpenFiles() {
  std::istringstream in(ReadFile("/proc/self/limits"));
  std::string line;
  while (std::getline(in, line)) {
    if (!line.starts_with("Max open files")) continue;
    std::istringstream fields(line.substr(sizeof("Max open files") - 1));
    std::string soft;
    fields >> soft;
    if (soft == "unlimited") return 0;
    try {
      return std::stod(soft);
    } catch (const std::exception&) {
      return 0;
    }
  }
  return 0;
}

double OpenFds() {
  std::error_code ec;
  double count = 0;
  for (auto it = std::filesystem::directory_iterator("/proc/self/fd", ec);
       !ec && it != std::filesystem::directory_iterator(); it.increment(ec)) {
    ++count;
  }
  return count;
}

}  // namespace

std::optional<ProcessStats> ReadProcessStats() {
  // /proc/self/stat: "pid (comm) state ppid ...": comm may hold spaces and
  // parentheses, so the fields are counted from the last ')'.
  const std::string stat = ReadFile("/proc/self/stat");
  const size_t close = stat.rfind(')');
  if (close == std::string::npos) return std::nullopt;
  std::istringstream in(stat.substr(close + 1));
  std::vector<std::string> fields;  // fields[0] is field 3 (state)
  for (std::string f; in >> f;) fields.push_back(f);
  if (fields.size() < 22) return std::nullopt;
  const double ticks = static_cast<double>(::sysconf(_SC_CLK_TCK));
  const double page = static_cast<double>(::sysconf(_SC_PAGESIZE));
  ProcessStats s;
  try {
    s.start_time_seconds = BootTime() + std::stod(fields[22 - 3]) / ticks;
    s.virtual_memory_bytes = std::stod(fields[23 - 3]);
    s.resident_memory_bytes = std::stod(fields[24 - 3]) * page;
  } catch (const std::exception&) {
    return std::nullopt;
  }
  rusage usage{};
  if (::getrusage(RUSAGE_SELF, &usage) == 0) {
    auto seconds = [](const timeval& t) { return static_cast<double>(t.tv_sec) + t.tv_usec / 1e6; };
    s.cpu_seconds = seconds(usage.ru_utime) + seconds(usage.ru_stime);
  }
  s.open_fds = OpenFds();
  s.max_fds = MaxOpenFiles();
  return s;
}

}  // namespace gitopsd::daemon
