#include "tests/daemon/daemon_harness.h"

#include <signal.h>

#include <Poco/Net/HTTPClientSession.h>
#include <Poco/Net/HTTPRequest.h>
#include <Poco/Net/HTTPResponse.h>
#include <Poco/StreamCopier.h>
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <thread>

namespace gitopsd::test {

std::string GitopsdBinary() { return GITOPSD_BIN; }
std::string GitopsctlBinary() { return GITOPSCTL_BIN; }

std::optional<json::Value> HttpReply::Json() const {
  auto v = json::Parse(body);
  if (!v) return std::nullopt;
  return std::move(*v);
}

HttpReply Http(int port, const std::string& method, const std::string& path,
               const std::map<std::string, std::string>& headers, const std::string& body) {
  HttpReply reply;
  try {
    Poco::Net::HTTPClientSession session("127.0.0.1", static_cast<Poco::UInt16>(port));
    session.setTimeout(Poco::Timespan(30, 0));
    Poco::Net::HTTPRequest request(method, path, Poco::Net::HTTPMessage::HTTP_1_1);
    for (const auto& [k, v] : headers) request.set(k, v);
    if (!body.empty() || method == "POST" || method == "PUT") {
      request.setContentLength64(static_cast<Poco::Int64>(body.size()));
    }
    session.sendRequest(request) << body;
    Poco::Net::HTTPResponse response;
    std::istream& in = session.receiveResponse(response);
    Poco::StreamCopier::copyToString(in, reply.body);
    reply.status = static_cast<int>(response.getStatus());
    for (const auto& [k, v] : response) reply.headers[k] = v;
  } catch (const Poco::Exception& e) {
    reply.error = e.displayText();
  } catch (const std::exception& e) {
    reply.error = e.what();
  }
  return reply;
}

bool WaitUntil(const std::function<bool()>& condition, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (true) {
    if (condition()) return true;
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

CommandResult RunGitopsd(const std::vector<std::string>& args) {
  std::vector<std::string> argv{GitopsdBinary()};
  argv.insert(argv.end(), args.begin(), args.end());
  return RunCommand(argv);
}

CommandResult RunGitopsctl(const std::vector<std::string>& args,
                           std::map<std::string, std::string> env, const std::string& cwd) {
  std::vector<std::string> argv{GitopsctlBinary()};
  argv.insert(argv.end(), args.begin(), args.end());
  // Nothing of the developer's own set-up leaks in: no server, token or CA
  // from the environment, no ~/.config/gitopsd/ctl.json.
  for (const char* name : {"GITOPSD_URL", "GITOPSD_SERVER", "GITOPSD_TOKEN", "GITOPSD_CACERT"}) {
    env.try_emplace(name, "");
  }
  env.try_emplace("XDG_CONFIG_HOME", "/nonexistent/gitopsd-tests");
  return RunCommand(argv, cwd, env);
}

std::optional<int> WaitForExit(Process& process, std::chrono::milliseconds timeout) {
  if (!WaitUntil([&] { return !process.Running(); }, timeout)) return std::nullopt;
  int status = process.Stop();
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  return 128 + (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
}

namespace {
void ReplaceAll(std::string& s, const std::string& from, const std::string& to) {
  for (size_t at = s.find(from); at != std::string::npos; at = s.find(from, at + to.size())) {
    s.replace(at, from.size(), to);
  }
}
}  // namespace

::testing::AssertionResult DaemonUnderTest::StartWithConfig(const std::string& config) {
  port_ = FreeLoopbackPort();
  std::string text = config;
  ReplaceAll(text, "@PORT@", std::to_string(port_));
  ReplaceAll(text, "@STATE@", state_dir());
  if (!WriteTextFile(config_path(), text)) {
    return ::testing::AssertionFailure() << "cannot write " << config_path();
  }
  return StartWithArgs({"serve", "--config", config_path()});
}

::testing::AssertionResult DaemonUnderTest::StartWithArgs(std::vector<std::string> args) {
  if (port_ < 0) port_ = FreeLoopbackPort();
  std::vector<std::string> argv{GitopsdBinary()};
  for (auto& a : args) {
    ReplaceAll(a, "@PORT@", std::to_string(port_));
    ReplaceAll(a, "@STATE@", state_dir());
    argv.push_back(a);
  }
  SpawnOptions options;
  options.cwd = dir_;
  options.output_file = log_path();
  options.env = env_;
  auto p = Process::Start(argv, options);
  if (!p) return ::testing::AssertionFailure() << p.error().message;
  process_.emplace(std::move(*p));
  if (!WaitUntil([&] { return WaitForPort(port_, std::chrono::milliseconds(50)) ||
                              !process_->Running(); },
                 std::chrono::seconds(10)) ||
      !process_->Running()) {
    return ::testing::AssertionFailure()
           << "gitopsd did not start listening on port " << port_ << ":\n" << Output();
  }
  return ::testing::AssertionSuccess();
}

bool DaemonUnderTest::WaitReady(std::chrono::milliseconds timeout) {
  return WaitUntil([&] { return Get("/readyz").status == 200; }, timeout);
}

void KillReportedServices(DaemonUnderTest& daemon) {
  auto body = daemon.Get("/api/v1/services").Json();
  const json::Value* services = body ? body->Find("services") : nullptr;
  if (!services || !services->is_array()) return;
  for (const auto& s : services->items()) {
    const json::Value* pid = s.Find("pid");
    if (pid && pid->is_number() && pid->as_double() > 0) {
      ::kill(static_cast<pid_t>(pid->as_double()), SIGKILL);
    }
  }
}

std::vector<pid_t> ProcessesIn(const std::string& dir, const std::string& word) {
  namespace fs = std::filesystem;
  std::vector<pid_t> out;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator("/proc", ec)) {
    const std::string name = entry.path().filename().string();
    if (name.empty() || !std::all_of(name.begin(), name.end(), ::isdigit)) continue;
    std::error_code link_ec;
    const std::string cwd = fs::read_symlink(entry.path() / "cwd", link_ec).string();
    if (link_ec || !cwd.starts_with(dir + "/")) continue;
    std::string stat = ReadTextFile(entry.path() / "stat");
    const size_t close = stat.rfind(')');
    if (close == std::string::npos || close + 2 >= stat.size() || stat[close + 2] == 'Z') continue;
    std::string cmdline = ReadTextFile(entry.path() / "cmdline");
    std::replace(cmdline.begin(), cmdline.end(), '\0', ' ');
    if (!word.empty() && cmdline.find(word) == std::string::npos) continue;
    out.push_back(static_cast<pid_t>(std::stol(name)));
  }
  return out;
}

}  // namespace gitopsd::test
