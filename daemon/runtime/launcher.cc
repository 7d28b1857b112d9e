#include "daemon/runtime/launcher.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>
#include <utility>

namespace gitopsd::runtime {
namespace {

namespace fs = std::filesystem;
using std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;

constexpr const char* kInheritedVariables[] = {"PATH", "HOME", "LANG"};

struct ProcStat {
  char state = '?';
  int64_t start_time = 0;
};

// Fields of /proc/<pid>/stat; the command name (field 2) may hold spaces
// and parentheses, so fields are counted from the last ')'.
std::optional<ProcStat> ReadProcStat(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!in || !std::getline(in, line)) return std::nullopt;
  size_t close = line.rfind(')');
  if (close == std::string::npos) return std::nullopt;
  std::istringstream fields(line.substr(close + 1));
  ProcStat stat;
  fields >> stat.state;
  std::string skip;
  for (int field = 4; field < 22; ++field) fields >> skip;  // fields 4..21
  if (!(fields >> stat.start_time)) return std::nullopt;
  return stat;
}

ExitStatus FromWaitStatus(int status) {
  ExitStatus exit;
  if (WIFEXITED(status)) {
    exit.exit_code = WEXITSTATUS(status);
  } else if (WIFSIGNALED(status)) {
    exit.signal = WTERMSIG(status);
  }
  return exit;
}

// The environment value the child will see for `key`.
std::string ChildVariable(const LaunchSpec& spec, const std::string& key) {
  if (auto it = spec.env.find(key); it != spec.env.end()) return it->second;
  const char* inherited = std::getenv(key.c_str());
  return inherited != nullptr ? inherited : "";
}

std::vector<std::string> ChildEnvironment(const LaunchSpec& spec) {
  std::vector<std::string> env;
  for (const auto& [key, value] : spec.env) env.push_back(key + "=" + value);
  for (const char* key : kInheritedVariables) {
    const char* value = std::getenv(key);
    if (!spec.env.contains(key) && value != nullptr) env.push_back(std::string(key) + "=" + value);
  }
  return env;
}

std::vector<std::string> ChildArgv(const LaunchSpec& spec) {
  if (!spec.shell) return spec.argv;
  std::vector<std::string> argv = {"/bin/sh", "-c"};
  argv.insert(argv.end(), spec.argv.begin(), spec.argv.end());
  return argv;
}

// Why `path` cannot be executed, or "" if it can.
std::string ExecProblem(const std::string& path) {
  struct stat st {};
  if (stat(path.c_str(), &st) != 0) return errno == EACCES ? "permission denied" : "not found";
  if (S_ISDIR(st.st_mode)) return "is a folder";
  if (access(path.c_str(), X_OK) != 0) return "permission denied";
  return "";
}

std::string SpawnErrorReason(int rc) {
  switch (rc) {
    case ENOENT: return "not found";
    case EACCES: return "permission denied";
    case ENOEXEC: return "not an executable format";
    default: return std::strerror(rc);
  }
}

// Owns the posix_spawn attribute and file-action objects for one launch.
class SpawnPlan {
 public:
  SpawnPlan() {
    posix_spawn_file_actions_init(&actions_);
    posix_spawnattr_init(&attr_);
  }
  ~SpawnPlan() {
    posix_spawn_file_actions_destroy(&actions_);
    posix_spawnattr_destroy(&attr_);
    if (log_fd_ >= 0) close(log_fd_);
  }
  SpawnPlan(const SpawnPlan&) = delete;
  SpawnPlan& operator=(const SpawnPlan&) = delete;

  Status Prepare(const LaunchSpec& spec) {
    std::string log = spec.log_file.empty() ? "/dev/null" : spec.log_file;
    if (!spec.log_file.empty()) {
      std::error_code ec;
      fs::create_directories(fs::path(log).parent_path(), ec);
    }
    log_fd_ = open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (log_fd_ < 0) return Fail("cannot open the log file " + log + ": " + std::strerror(errno));
    posix_spawn_file_actions_addopen(&actions_, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&actions_, log_fd_, 1);
    posix_spawn_file_actions_adddup2(&actions_, log_fd_, 2);
    if (!spec.cwd.empty()) {
      cwd_ = spec.cwd;
      posix_spawn_file_actions_addchdir_np(&actions_, cwd_.c_str());
    }
    posix_spawn_file_actions_addclosefrom_np(&actions_, 3);

    sigset_t defaults, empty;
    sigemptyset(&defaults);
    sigemptyset(&empty);
    for (int sig : {SIGPIPE, SIGTERM, SIGINT, SIGHUP, SIGCHLD, SIGQUIT}) sigaddset(&defaults, sig);
    posix_spawnattr_setsigdefault(&attr_, &defaults);
    posix_spawnattr_setsigmask(&attr_, &empty);
    // Its own session, so its own process group (pgid = pid), and no
    // controlling terminal: a ^C to a foreground daemon does not reach it.
    posix_spawnattr_setflags(&attr_, POSIX_SPAWN_SETSID | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK);
    return Ok();
  }

  Result<pid_t> Spawn(const std::string& program, std::vector<std::string> argv, std::vector<std::string> env) {
    std::vector<char*> args, envp;
    for (std::string& arg : argv) args.push_back(arg.data());
    args.push_back(nullptr);
    for (std::string& entry : env) envp.push_back(entry.data());
    envp.push_back(nullptr);
    pid_t pid = -1;
    int rc = posix_spawn(&pid, program.c_str(), &actions_, &attr_, args.data(), envp.data());
    if (rc != 0) return Fail("cannot run " + argv[0] + ": " + SpawnErrorReason(rc));
    return pid;
  }

 private:
  posix_spawn_file_actions_t actions_;
  posix_spawnattr_t attr_;
  std::string cwd_;  // keeps c_str() alive until the spawn
  int log_fd_ = -1;
};

void SleepStep(milliseconds* step) {
  std::this_thread::sleep_for(*step);
  *step = std::min(*step * 2, milliseconds(50));
}

}  // namespace

std::string ExitStatus::Describe() const {
  std::string how;
  if (signal != 0) {
    const char* name = strsignal(signal);
    how = "killed by signal " + std::to_string(signal) + (name != nullptr ? std::string(" (") + name + ")" : "");
  } else {
    how = "exit code " + std::to_string(exit_code);
  }
  if (timed_out) return "timed out (" + how + ")";
  return abandoned ? "stopped on request (" + how + ")" : how;
}

std::optional<int64_t> ProcessStartTime(pid_t pid) {
  if (pid <= 0) return std::nullopt;
  auto stat = ReadProcStat(pid);
  if (!stat || stat->state == 'Z' || stat->state == 'X') return std::nullopt;
  return stat->start_time;
}

bool IsRunning(const ProcessIdentity& id) {
  auto start = ProcessStartTime(id.pid);
  return start.has_value() && *start == id.start_time;
}

void TerminateGroup(const ProcessIdentity& id, milliseconds grace) {
  auto reap_if_ours = [&] {
    int status = 0;
    waitpid(id.pid, &status, WNOHANG);
  };
  if (!IsRunning(id)) {
    reap_if_ours();
    return;
  }
  kill(-id.pid, SIGTERM);
  kill(id.pid, SIGTERM);
  auto deadline = Clock::now() + grace;
  milliseconds step(1);
  while (Clock::now() < deadline) {
    reap_if_ours();
    if (!IsRunning(id)) return;
    SleepStep(&step);
  }
  if (!IsRunning(id)) return;
  kill(-id.pid, SIGKILL);
  kill(id.pid, SIGKILL);
  auto hard_deadline = Clock::now() + milliseconds(2000);
  while (Clock::now() < hard_deadline) {
    reap_if_ours();
    if (!IsRunning(id)) return;
    SleepStep(&step);
  }
}

Result<std::string> ResolveProgram(const LaunchSpec& spec) {
  if (spec.argv.empty()) return Fail("cannot run a process: the command is empty");
  if (!spec.cwd.empty()) {
    std::error_code ec;
    if (!fs::is_directory(spec.cwd, ec)) {
      return Fail("cannot run " + spec.argv[0] + ": working folder " + spec.cwd + " does not exist");
    }
  }
  const std::string program = spec.shell ? "/bin/sh" : spec.argv[0];
  if (program.find('/') != std::string::npos) {
    std::string path = program;
    if (program[0] != '/' && !spec.cwd.empty()) path = (fs::path(spec.cwd) / program).string();
    if (std::string problem = ExecProblem(path); !problem.empty()) {
      return Fail("cannot run " + program + ": " + problem);
    }
    return path;
  }
  std::string search = ChildVariable(spec, "PATH");
  bool denied = false;
  std::istringstream dirs(search);
  for (std::string dir; std::getline(dirs, dir, ':');) {
    if (dir.empty()) continue;
    std::string candidate = dir + "/" + program;
    std::string problem = ExecProblem(candidate);
    if (problem.empty()) return candidate;
    denied = denied || problem == "permission denied";
  }
  return Fail("cannot run " + program + ": " + (denied ? "permission denied" : "not found") +
              " (searched PATH=" + search + ")");
}

Result<Child> Child::Launch(const LaunchSpec& spec) {
  auto program = ResolveProgram(spec);
  if (!program) return std::unexpected(program.error());
  SpawnPlan plan;
  if (auto s = plan.Prepare(spec); !s) return std::unexpected(s.error());
  auto pid = plan.Spawn(*program, ChildArgv(spec), ChildEnvironment(spec));
  if (!pid) return std::unexpected(pid.error());
  // Read while the child cannot have been reaped: even a zombie keeps its stat.
  auto stat = ReadProcStat(*pid);
  return Child(ProcessIdentity{*pid, stat ? stat->start_time : 0});
}

Child::Child(Child&& other) noexcept : id_(std::exchange(other.id_, ProcessIdentity{})), status_(other.status_) {}

Child& Child::operator=(Child&& other) noexcept {
  if (this != &other) {
    if (id_.pid > 0 && !status_) Stop(milliseconds(2000));
    id_ = std::exchange(other.id_, ProcessIdentity{});
    status_ = other.status_;
  }
  return *this;
}

Child::~Child() {
  if (id_.pid > 0 && !status_) Stop(milliseconds(2000));
}

std::optional<ExitStatus> Child::TryWait() {
  if (status_) return status_;
  if (id_.pid <= 0) return std::nullopt;
  siginfo_t info{};
  int rc = waitid(P_PID, static_cast<id_t>(id_.pid), &info, WEXITED | WNOHANG | WNOWAIT);
  if (rc == 0 && info.si_pid == 0) return std::nullopt;
  if (rc == 0) {
    // The leader is a zombie, so its pid (the group id) cannot be reused
    // yet: clear out what is left of its group, then reap it.
    kill(-id_.pid, SIGKILL);
    int status = 0;
    while (waitpid(id_.pid, &status, 0) < 0 && errno == EINTR) {
    }
    status_ = FromWaitStatus(status);
  } else {
    status_ = ExitStatus{};  // reaped by someone else: the status is lost
  }
  return status_;
}

ExitStatus Child::Wait(std::optional<Clock::time_point> deadline, milliseconds grace,
                       const std::function<bool()>& abandon, const std::function<bool()>& leave) {
  milliseconds step(1);
  while (true) {
    if (auto done = TryWait()) return *done;
    if (leave && leave()) {
      Release();
      ExitStatus left;
      left.left = true;
      return left;
    }
    const bool late = deadline && Clock::now() >= *deadline;
    if (late || (abandon && abandon())) {
      ExitStatus stopped = Stop(grace);
      (late ? stopped.timed_out : stopped.abandoned) = true;
      status_ = stopped;
      return stopped;
    }
    SleepStep(&step);
  }
}

ExitStatus Child::Stop(milliseconds grace) {
  if (auto done = TryWait()) return *done;
  if (id_.pid <= 0) return ExitStatus{};
  kill(-id_.pid, SIGTERM);
  auto deadline = Clock::now() + grace;
  milliseconds step(1);
  while (Clock::now() < deadline) {
    if (auto done = TryWait()) return *done;
    SleepStep(&step);
  }
  kill(-id_.pid, SIGKILL);
  int status = 0;
  while (waitpid(id_.pid, &status, 0) < 0 && errno == EINTR) {
  }
  status_ = FromWaitStatus(status);
  return *status_;
}

ProcessIdentity Child::Release() { return std::exchange(id_, ProcessIdentity{}); }

Result<ExitStatus> RunToCompletion(const LaunchSpec& spec, milliseconds timeout, milliseconds grace,
                                   const std::function<bool()>& abandon) {
  auto child = Child::Launch(spec);
  if (!child) return std::unexpected(child.error());
  std::optional<Clock::time_point> deadline;
  if (timeout.count() > 0) deadline = Clock::now() + timeout;
  return child->Wait(deadline, grace, abandon);
}

bool RotateLogIfLarger(const std::string& path, uint64_t max_bytes, int keep) {
  std::error_code ec;
  uintmax_t size = fs::file_size(path, ec);
  if (ec || size <= max_bytes) return false;
  auto numbered = [&](int n) { return path + "." + std::to_string(n); };
  if (keep > 0) {
    fs::remove(numbered(keep), ec);
    for (int n = keep - 1; n >= 1; --n) fs::rename(numbered(n), numbered(n + 1), ec);
    fs::copy_file(path, numbered(1), fs::copy_options::overwrite_existing, ec);
  }
  return truncate(path.c_str(), 0) == 0;
}

std::string ReadTail(const std::string& path, size_t max_lines) {
  constexpr std::streamoff kMaxBytes = 64 * 1024;
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) return "";
  std::streamoff size = in.tellg();
  std::streamoff start = std::max<std::streamoff>(0, size - kMaxBytes);
  in.seekg(start);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (!text.empty() && text.back() == '\n') text.pop_back();
  if (text.empty() || max_lines == 0) return "";
  size_t pos = text.size();
  for (size_t lines = 0; lines < max_lines && pos != std::string::npos && pos > 0; ++lines) {
    pos = text.rfind('\n', pos - 1);
  }
  if (pos == std::string::npos) return text;
  return text.substr(pos + 1);
}

LogFollower::LogFollower(std::string path, std::function<void(std::string_view)> sink)
    : path_(std::move(path)), sink_(std::move(sink)) {
  std::error_code ec;
  auto size = fs::file_size(path_, ec);
  offset_ = ec ? 0 : size;
}

void LogFollower::Poll() {
  if (!sink_) return;
  std::error_code ec;
  const uint64_t size = fs::file_size(path_, ec);
  if (ec || size == offset_) return;
  if (size < offset_) offset_ = 0;  // rotated or truncated: what is there now is new
  std::ifstream in(path_, std::ios::binary);
  if (!in) return;
  in.seekg(static_cast<std::streamoff>(offset_));
  constexpr uint64_t kMaxRead = 256 * 1024;
  std::string chunk(std::min(size - offset_, kMaxRead), '\0');
  in.read(chunk.data(), static_cast<std::streamsize>(chunk.size()));
  chunk.resize(static_cast<size_t>(in.gcount()));
  offset_ += chunk.size();
  constexpr size_t kMaxLine = 4096;
  size_t start = 0;
  for (size_t nl = chunk.find('\n'); nl != std::string::npos; nl = chunk.find('\n', start)) {
    partial_.append(chunk, start, nl - start);
    sink_(std::string_view(partial_).substr(0, kMaxLine));
    partial_.clear();
    start = nl + 1;
  }
  partial_.append(chunk, start);
  if (partial_.size() > kMaxLine) {
    sink_(std::string_view(partial_).substr(0, kMaxLine));
    partial_.clear();
  }
}

void LogFollower::Flush() {
  Poll();
  if (sink_ && !partial_.empty()) sink_(partial_);
  partial_.clear();
}

Status CheckResourceName(const std::string& what, const std::string& name) {
  bool ok = !name.empty() && name.size() <= 100 && name[0] != '.';
  for (unsigned char c : name) ok = ok && (std::isalnum(c) != 0 || c == '.' || c == '_' || c == '-');
  if (!ok) {
    return Fail(what + " name '" + name + "' is not usable as a folder name (use letters, digits, '.', '_', '-')");
  }
  return Ok();
}

int64_t NowMillis() {
  return std::chrono::duration_cast<milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

void AppendToLog(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::app);
  out << text;
}

std::string DurationText(std::chrono::milliseconds d) {
  if (d.count() % 1000 == 0) return std::to_string(d.count() / 1000) + "s";
  return std::to_string(d.count()) + "ms";
}

}  // namespace gitopsd::runtime
