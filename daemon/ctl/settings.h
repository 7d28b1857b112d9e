// Where gitopsctl finds gitopsd and how it proves who it is. Each setting
// comes from the first of:
//   1. a flag: --server, --token or --token-file, --cacert;
//   2. the environment: $GITOPSD_URL (else the older $GITOPSD_SERVER),
//      $GITOPSD_TOKEN, $GITOPSD_CACERT;
//   3. the file $XDG_CONFIG_HOME/gitopsd/ctl.json (~/.config/gitopsd/ctl.json
//      without $XDG_CONFIG_HOME): {"server", "token" or "tokenFile", "caFile"};
//   4. the default: the unix socket /run/gitopsd/api.sock when it accepts a
//      connection, else http://127.0.0.1:7780; no token; the system's CAs.
// An empty variable counts as unset.
//
// What callers can rely on:
//  - The file's token is sent only to the file's server (or, when the file
//    names none, to the default server): a --server or $GITOPSD_URL pointing
//    elsewhere never receives it.
//  - A file holding a token (ctl.json with "token", or the file its
//    "tokenFile" names) that other users may read is refused, with the chmod
//    that fixes it. Errors here are usage/configuration errors (exit 2).
#pragma once
#include <functional>
#include <string>

#include "sync/status.h"

namespace gitopsd::ctl {

inline constexpr const char* kDefaultSocket = "/run/gitopsd/api.sock";
inline constexpr const char* kDefaultUrl = "http://127.0.0.1:7780";

struct Flags {
  std::string server;
  std::string token;
  std::string token_file;
  std::string ca_file;
  bool insecure = false;
};

struct Settings {
  std::string server;
  std::string origin;  // where the server came from, for messages
  std::string token;
  std::string ca_file;
  bool insecure = false;
};

// Reads one environment variable ("" when unset).
using EnvLookup = std::function<std::string(const char*)>;

struct Sources {
  EnvLookup env;
  std::string default_socket = kDefaultSocket;  // tests put their own
};

// $XDG_CONFIG_HOME/gitopsd/ctl.json, else $HOME/.config/gitopsd/ctl.json;
// "" when neither variable is set.
std::string CtlConfigPath(const EnvLookup& env);

Result<Settings> ResolveSettings(const Flags& flags, const Sources& sources);

}  // namespace gitopsd::ctl
