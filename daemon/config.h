// The daemon's configuration: the JSON file of DESIGN §7, validated against
// schemas/config.schema.json (the one source of rules), turned into typed
// settings with every default filled in. Or, for a first try, a
// one-repository configuration built from command-line flags ("quick mode").
//
// What callers can rely on:
//  - Load errors name the file, line and column and the key at fault.
//  - Relative paths in the file resolve against the file's folder; the
//    returned Config holds only absolute paths (and file:// for local repos).
//  - Password files (a repository's auth.passwordFile, runtime.postgres's
//    passwordFile) are read at load time; a missing one is a load error, and
//    the password is kept only in memory and never logged.
#pragma once
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "sync/status.h"

namespace gitopsd::model {
class Loader;
}

namespace gitopsd::daemon {

using Millis = std::chrono::milliseconds;

struct RepositorySettings {
  std::string name;
  std::string url;  // file://, http(s)://, ssh:// or scp-like user@host:path
  std::string branch = "main";
  Millis poll_interval{60'000};

  // auth
  std::string username;
  std::string password;  // read from auth.passwordFile; never logged
  std::string password_file;
  std::string ssh_key_file;
  std::string known_hosts_file;
  std::string ca_file;

  // sync
  std::string sync_path = ".gitops";
  bool write_back = true;
  bool prune = true;
  std::string conflict_policy = "git-wins";
  std::string author_name = "gitopsd";
  std::string author_email = "gitopsd@localhost";
  size_t max_file_bytes = 1 << 20;
  size_t max_depth = 64;

  // webhook (kept for the trigger room; not used by the sync loop)
  std::string webhook_type;
  std::string webhook_secret_file;
  std::string webhook_forge_url;  // how payloads name the repository ("" = url)

  // forgeApi (VCS Message nodes): "" type = none
  std::string forge_api_type;
  std::string forge_api_url;  // no trailing slash
  std::string forge_api_token;  // read from forgeApi.tokenFile; never logged
  std::string forge_api_token_file;

  bool operator==(const RepositorySettings&) const = default;
};

// runtime.postgres: the PostgreSQL server postgresql addons live on.
struct PostgresSettings {
  std::string host = "127.0.0.1";
  int port = 5432;
  std::string user = "postgres";
  std::string password;  // read from passwordFile; "" = none; never logged
  std::string password_file;
  std::string admin_database = "postgres";
  std::string bin_dir;  // absolute; "" = psql, pg_dump, pg_restore from PATH
};

struct Config {
  std::string source;  // the config file, or "command line" in quick mode
  std::string state_dir = "/var/lib/gitopsd";
  std::string listen = "127.0.0.1:7780";
  std::string api_tokens_file;  // empty: writes through the API are refused
  // tls: the API's TCP listener speaks HTTPS (TLS 1.2 or later) with this
  // certificate chain and key (PEM); both empty = plain HTTP.
  std::string tls_cert_file;
  std::string tls_key_file;
  // unixSocket: a second listener on this path ("" = none), mode 0660;
  // requests arriving on it are trusted as write role without a token.
  std::string unix_socket;
  std::vector<RepositorySettings> repositories;
  std::string runtime_kind = "process";
  int port_range_first = 20000;
  int port_range_last = 29999;
  std::optional<PostgresSettings> postgres;  // unset: sqlite addons only
  std::string preview_url = "http://127.0.0.1:{port}";  // runtime.previewUrl
  std::string log_level = "info";   // log.level
  std::string log_format = "text";  // log.format: text or json
  // Things worth telling the operator once logging is up (defaults chosen
  // on their behalf, for instance).
  std::vector<std::string> notes;
};

inline constexpr std::string_view kDefaultConfigPath = "/etc/gitopsd/gitopsd.json";
// The longest unixSocket path accepted: sun_path holds 108 bytes, and the
// daemon binds a slightly longer temporary name first.
inline constexpr size_t kMaxUnixSocketPath = 96;

// "500ms", "30s", "5m", "1h" (a positive integer and one unit).
std::optional<Millis> ParseDuration(std::string_view text);
std::string FormatDuration(Millis d);

// Reads, validates and types the configuration file at `path`.
Result<Config> LoadConfigFile(const std::string& path, const model::Loader& loader);
// Same, from text already in memory (`path` names it in messages and anchors
// relative paths).
Result<Config> LoadConfigText(const std::string& path, std::string_view text,
                              const model::Loader& loader);

// Quick mode: `gitopsd serve --repo PATH_OR_URL [...]`.
struct QuickOptions {
  std::string repo;  // a URL, or a path to a local repository
  std::string branch = "main";
  std::string listen = "127.0.0.1:7780";
  std::string state_dir;      // empty: ./.gitopsd-state
  std::string poll_interval;  // empty: 60s
  std::string api_tokens_file;
};
Result<Config> QuickConfig(const QuickOptions& options);

// The repository name quick mode derives from a URL or path: its last
// segment without ".git", lower-cased, anything but [a-z0-9] turned into '-'.
std::string RepositoryNameFromUrl(std::string_view url);
// True for "scheme://..." and scp-like "user@host:path".
bool LooksLikeUrl(std::string_view text);

// "host:port" or "[v6]:port" split in two; port 0..65535.
struct ListenAddress {
  std::string host;
  uint16_t port = 0;
};
std::optional<ListenAddress> ParseListen(std::string_view text);

}  // namespace gitopsd::daemon
