#include "tests/support/process.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <thread>

#include "tests/support/temp_dir.h"

extern char** environ;

namespace gitopsd::test {
namespace {

// Owns the posix_spawn attribute and file-action objects.
class SpawnSetup {
 public:
  SpawnSetup() {
    posix_spawn_file_actions_init(&actions_);
    posix_spawnattr_init(&attr_);
    sigset_t defaults;
    sigemptyset(&defaults);
    for (int sig : {SIGPIPE, SIGTERM, SIGINT, SIGHUP, SIGCHLD}) sigaddset(&defaults, sig);
    sigset_t empty;
    sigemptyset(&empty);
    posix_spawnattr_setsigdefault(&attr_, &defaults);
    posix_spawnattr_setsigmask(&attr_, &empty);
  }
  ~SpawnSetup() {
    posix_spawn_file_actions_destroy(&actions_);
    posix_spawnattr_destroy(&attr_);
  }
  SpawnSetup(const SpawnSetup&) = delete;
  SpawnSetup& operator=(const SpawnSetup&) = delete;

  void NewProcessGroup() { flags_ |= POSIX_SPAWN_SETPGROUP; }
  void Open(int fd, const std::string& path, int flags) {
    paths_.push_back(path);
    posix_spawn_file_actions_addopen(&actions_, fd, paths_.back().c_str(), flags, 0644);
  }
  void Dup(int from, int to) { posix_spawn_file_actions_adddup2(&actions_, from, to); }
  void Close(int fd) { posix_spawn_file_actions_addclose(&actions_, fd); }
  void Chdir(const std::string& dir) {
    paths_.push_back(dir);
    posix_spawn_file_actions_addchdir_np(&actions_, paths_.back().c_str());
  }

  Result<pid_t> Spawn(const std::vector<std::string>& argv, const std::map<std::string, std::string>& env) {
    if (argv.empty()) return Fail("cannot start a process: empty argv");
    flags_ |= POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK;
    posix_spawnattr_setflags(&attr_, static_cast<short>(flags_));
    posix_spawnattr_setpgroup(&attr_, 0);

    std::vector<char*> args;
    for (const std::string& arg : argv) args.push_back(const_cast<char*>(arg.c_str()));
    args.push_back(nullptr);
    std::vector<std::string> env_strings;
    for (char** e = environ; *e != nullptr; ++e) {
      std::string_view entry(*e);
      std::string key(entry.substr(0, entry.find('=')));
      if (!env.contains(key)) env_strings.emplace_back(entry);
    }
    for (const auto& [key, value] : env) env_strings.push_back(key + "=" + value);
    std::vector<char*> envp;
    for (std::string& entry : env_strings) envp.push_back(entry.data());
    envp.push_back(nullptr);

    pid_t pid = -1;
    int rc = posix_spawnp(&pid, argv[0].c_str(), &actions_, &attr_, args.data(), envp.data());
    if (rc != 0) return Fail("cannot start " + JoinArgv(argv) + ": " + std::strerror(rc));
    return pid;
  }

 private:
  posix_spawn_file_actions_t actions_;
  posix_spawnattr_t attr_;
  int flags_ = 0;
  std::vector<std::string> paths_{};  // keeps c_str() alive until the spawn
};

int WaitStatusToExitCode(int status) { return WIFEXITED(status) ? WEXITSTATUS(status) : -1; }

}  // namespace

std::string JoinArgv(const std::vector<std::string>& argv) {
  std::string joined;
  for (const std::string& arg : argv) joined += (joined.empty() ? "" : " ") + arg;
  return joined;
}

Result<Process> Process::Start(const std::vector<std::string>& argv, const SpawnOptions& options) {
  SpawnSetup setup;
  setup.NewProcessGroup();
  setup.Open(0, "/dev/null", O_RDONLY);
  setup.Open(1, options.output_file.empty() ? "/dev/null" : options.output_file,
             O_WRONLY | O_CREAT | O_APPEND);
  setup.Dup(1, 2);
  if (!options.cwd.empty()) setup.Chdir(options.cwd);
  auto pid = setup.Spawn(argv, options.env);
  if (!pid) return std::unexpected(pid.error());
  return Process(*pid, options.output_file);
}

Process::Process(Process&& other) noexcept
    : pid_(std::exchange(other.pid_, -1)), status_(other.status_), output_file_(std::move(other.output_file_)) {}

Process& Process::operator=(Process&& other) noexcept {
  if (this != &other) {
    Stop();
    pid_ = std::exchange(other.pid_, -1);
    status_ = other.status_;
    output_file_ = std::move(other.output_file_);
  }
  return *this;
}

Process::~Process() { Stop(); }

bool Process::Running() {
  if (pid_ <= 0) return false;
  int status = 0;
  pid_t rc = waitpid(pid_, &status, WNOHANG);
  if (rc == 0) return true;
  if (rc == pid_) status_ = status;
  pid_ = -1;
  return false;
}

int Process::Stop(std::chrono::milliseconds grace) {
  if (pid_ <= 0) return status_;
  kill(-pid_, SIGTERM);  // the whole group: workers die with their parent
  kill(pid_, SIGTERM);
  auto deadline = std::chrono::steady_clock::now() + grace;
  int status = 0;
  while (true) {
    pid_t rc = waitpid(pid_, &status, WNOHANG);
    if (rc == pid_ || (rc < 0 && errno != EINTR)) break;
    if (std::chrono::steady_clock::now() >= deadline) {
      kill(-pid_, SIGKILL);
      kill(pid_, SIGKILL);
      while (waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
      }
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  status_ = status;
  pid_ = -1;
  return status_;
}

std::string Process::Output() const { return output_file_.empty() ? "" : ReadTextFile(output_file_); }

CommandResult RunCommand(const std::vector<std::string>& argv, const std::string& cwd,
                         const std::map<std::string, std::string>& env) {
  CommandResult result;
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) {
    result.output = std::string("pipe: ") + std::strerror(errno);
    return result;
  }
  pid_t pid = -1;
  {
    SpawnSetup setup;
    setup.Open(0, "/dev/null", O_RDONLY);
    setup.Dup(fds[1], 1);
    setup.Dup(fds[1], 2);
    if (!cwd.empty()) setup.Chdir(cwd);
    auto spawned = setup.Spawn(argv, env);
    close(fds[1]);
    if (!spawned) {
      close(fds[0]);
      result.output = spawned.error().message;
      return result;
    }
    pid = *spawned;
  }
  char buffer[4096];
  while (true) {
    ssize_t n = read(fds[0], buffer, sizeof(buffer));
    if (n > 0) {
      result.output.append(buffer, static_cast<size_t>(n));
    } else if (n == 0 || errno != EINTR) {
      break;
    }
  }
  close(fds[0]);
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  result.exit_code = WaitStatusToExitCode(status);
  return result;
}

int FreeLoopbackPort() {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof(addr);
  int port = -1;
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 &&
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
    port = ntohs(addr.sin_port);
  }
  close(fd);
  return port;
}

bool WaitForPort(int port, std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (true) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return false;
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons(static_cast<uint16_t>(port));
    bool connected = connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
    close(fd);
    if (connected) return true;
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

std::string FindExecutable(const std::string& name) {
  if (name.find('/') != std::string::npos) return access(name.c_str(), X_OK) == 0 ? name : "";
  const char* path_env = std::getenv("PATH");
  std::string path = std::string(path_env != nullptr ? path_env : "/usr/bin:/bin") + ":/usr/sbin:/sbin";
  size_t start = 0;
  while (start <= path.size()) {
    size_t colon = path.find(':', start);
    if (colon == std::string::npos) colon = path.size();
    std::string dir = path.substr(start, colon - start);
    if (!dir.empty()) {
      std::string candidate = dir + "/" + name;
      if (access(candidate.c_str(), X_OK) == 0) return candidate;
    }
    start = colon + 1;
  }
  return "";
}

}  // namespace gitopsd::test
