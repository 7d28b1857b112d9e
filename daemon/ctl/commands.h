// gitopsctl's commands, each a function returning the exit code: 0 done,
// 1 refused by the server or by validation (the reason is printed), 2 a
// usage error. Tables for people, --json for scripts (the server's JSON as
// is). main.cc only parses arguments.
#pragma once
#include <cstdint>
#include <string>

namespace gitopsd::ctl {

inline constexpr int kExitOk = 0;
inline constexpr int kExitFailed = 1;
inline constexpr int kExitUsage = 2;

struct Globals {
  std::string server;      // "" = $GITOPSD_SERVER or http://127.0.0.1:7780
  std::string token;       // "" = --token-file, else $GITOPSD_TOKEN
  std::string token_file;
  bool json = false;
};

int RunStatus(const Globals& g);
// Lists the objects of a kind (name empty) or prints one object's JSON.
int RunGet(const Globals& g, const std::string& kind, const std::string& name);

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
