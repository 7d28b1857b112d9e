// gitopsctl's commands, each a function returning the exit code (below).
// Tables for people, --json for scripts (the server's JSON as is, or one
// object for status). main.cc only parses arguments.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace gitopsd::ctl {

inline constexpr int kExitOk = 0;
// The server refused (an HTTP error status), a waited-for run did not
// succeed, or local validation failed; the reason is printed.
inline constexpr int kExitFailed = 1;
// Usage or configuration: bad flags, a server that is not a URL, an
// unreadable token file or ctl.json, a CA file that cannot be loaded.
inline constexpr int kExitUsage = 2;
// No answer from the server: connection refused, name not found, TLS
// handshake or certificate failure, timeout, connection cut.
inline constexpr int kExitUnreachable = 3;

// The global flags, before the environment and ctl.json fill the gaps
// (settings.h).
struct Globals {
  std::string server;
  std::string token;
  std::string token_file;
  std::string ca_file;
  bool insecure = false;
  bool json = false;
};

int RunStatus(const Globals& g);
// Lists the objects of a kind (name empty) or prints one object's JSON;
// "run ID" prints a run's node tree, "runs" lists runs, and services, jobs,
// addons, builds and backups list the runtime's resources.
int RunGet(const Globals& g, const std::string& kind, const std::string& name);

// ---- runs (run_commands.cc)

struct StartRunOptions {
  std::string flow;
  std::vector<std::string> args;  // "K=V"
  bool template_flow = false;     // a Template instead of a release flow
  bool wait = false;              // until it concludes; exit 1 unless it succeeded
};
int RunStartRun(const Globals& g, const StartRunOptions& options);
int RunListRuns(const Globals& g, const std::string& flow);
int RunGetRun(const Globals& g, const std::string& id);
int RunLogs(const Globals& g, const std::string& id, bool follow);
int RunRollback(const Globals& g, const std::string& id, bool restore_backup);
// action: "cancel" or "approve".
int RunAct(const Globals& g, const std::string& id, const std::string& action);
// what: services, jobs, addons, builds or backups.
int RunGetResources(const Globals& g, const std::string& what);

// previews [--all]; teardown NAME [--skip-teardown]
int RunListPreviews(const Globals& g, bool all);
int RunTeardown(const Globals& g, const std::string& name, bool skip_teardown);

struct ApplyOptions {
  std::string file;
  std::string repository;  // "" = the server decides
  std::string kind;        // "" = from the file's "kind" or its folder
};
// Validates the file locally (the daemon's own rules), then PUTs it.
int RunApply(const Globals& g, const ApplyOptions& options);

// GET, $VISUAL/$EDITOR/vi on a temporary file, validate, PUT with If-Match.
int RunEdit(const Globals& g, const std::string& kind, const std::string& name);

// DELETE: the file is removed from Git in a commit.
int RunDelete(const Globals& g, const std::string& kind, const std::string& name);

int RunConflicts(const Globals& g, bool all);
// take: "git" or "api"; or file: the object to write instead.
int RunResolve(const Globals& g, int64_t id, const std::string& take, const std::string& file);

// Prints a new random token and the tokens-file line holding its hash.
int RunTokenCreate(const Globals& g, const std::string& name, const std::string& role);

}  // namespace gitopsd::ctl
