#include "daemon/config.h"

#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <filesystem>
#include <fstream>
#include <limits>
#include <set>
#include <sstream>

#include "sync/diagnostic.h"
#include "sync/git.h"
#include "sync/json.h"
#include "sync/model.h"

namespace gitopsd::daemon {
namespace fs = std::filesystem;

std::optional<Millis> ParseDuration(std::string_view text) {
  size_t digits = 0;
  while (digits < text.size() && std::isdigit(static_cast<unsigned char>(text[digits]))) ++digits;
  if (digits == 0 || digits > 12) return std::nullopt;
  int64_t n = 0;
  std::from_chars(text.data(), text.data() + digits, n);
  std::string_view unit = text.substr(digits);
  int64_t scale;
  if (unit == "ms") scale = 1;
  else if (unit == "s") scale = 1000;
  else if (unit == "m") scale = 60'000;
  else if (unit == "h") scale = 3'600'000;
  else return std::nullopt;
  if (n <= 0) return std::nullopt;
  return Millis(n * scale);
}

std::string FormatDuration(Millis d) {
  int64_t ms = d.count();
  if (ms % 3'600'000 == 0 && ms != 0) return std::to_string(ms / 3'600'000) + "h";
  if (ms % 60'000 == 0 && ms != 0) return std::to_string(ms / 60'000) + "m";
  if (ms % 1000 == 0 && ms != 0) return std::to_string(ms / 1000) + "s";
  return std::to_string(ms) + "ms";
}

bool LooksLikeUrl(std::string_view text) {
  if (text.find("://") != std::string_view::npos) return true;
  // scp-like: user@host:path (no slash before the colon)
  size_t at = text.find('@');
  size_t colon = text.find(':');
  size_t slash = text.find('/');
  return at != std::string_view::npos && colon != std::string_view::npos && at < colon &&
         (slash == std::string_view::npos || colon < slash);
}

std::string RepositoryNameFromUrl(std::string_view url) {
  std::string_view s = url;
  while (!s.empty() && (s.back() == '/' || s.back() == '\\')) s.remove_suffix(1);
  size_t cut = s.find_last_of("/:");
  if (cut != std::string_view::npos) s.remove_prefix(cut + 1);
  if (s.ends_with(".git")) s.remove_suffix(4);
  std::string name;
  for (char c : s) {
    unsigned char u = static_cast<unsigned char>(c);
    if (std::isalnum(u)) {
      name += static_cast<char>(std::tolower(u));
    } else if (!name.empty() && name.back() != '-') {
      name += '-';
    }
  }
  if (name.size() > 63) name.resize(63);  // the schema's limit for names
  while (!name.empty() && name.back() == '-') name.pop_back();
  return name.empty() ? "repo" : name;
}

std::optional<ListenAddress> ParseListen(std::string_view text) {
  ListenAddress out;
  std::string_view port_text;
  if (text.starts_with('[')) {
    size_t close = text.find(']');
    if (close == std::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':') {
      return std::nullopt;
    }
    out.host = std::string(text.substr(1, close - 1));
    port_text = text.substr(close + 2);
  } else {
    size_t colon = text.rfind(':');
    if (colon == std::string_view::npos) return std::nullopt;
    out.host = std::string(text.substr(0, colon));
    port_text = text.substr(colon + 1);
    if (out.host.find(':') != std::string::npos) return std::nullopt;  // v6 needs brackets
  }
  if (out.host.empty() || port_text.empty()) return std::nullopt;
  unsigned port = 0;
  auto [end, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
  if (ec != std::errc() || end != port_text.data() + port_text.size() || port > 65535) {
    return std::nullopt;
  }
  out.port = static_cast<uint16_t>(port);
  return out;
}

namespace {

std::optional<std::string> ReadWholeFile(const std::string& path) {
  std::error_code ec;
  if (!fs::is_regular_file(path, ec)) return std::nullopt;
  std::ifstream in(path, std::ios::binary);
  if (!in) return std::nullopt;
  std::stringstream buffer;
  buffer << in.rdbuf();
  if (in.bad()) return std::nullopt;
  return buffer.str();
}

std::string Absolute(const fs::path& base, const std::string& p) {
  fs::path path(p);
  if (path.is_relative()) path = base / path;
  return path.lexically_normal().string();
}

std::string FileUrlFor(const fs::path& base, const std::string& path) {
  return "file://" + Absolute(base, path);
}

// Walks the validated JSON tree and fills the typed Config. The schema has
// already checked keys and types; what is left are the rules a schema cannot
// express (durations as numbers, files that must exist, unique names).
class ConfigReader {
 public:
  ConfigReader(const std::string& path, std::string_view text)
      : path_(path), text_(text), base_(fs::absolute(fs::path(path)).parent_path()) {}

  Result<Config> Read(const json::Value& root) {
    Config c;
    c.source = path_;
    if (const auto* v = String(root, "stateDir")) c.state_dir = Absolute(base_, *v);
    else c.state_dir = Absolute(base_, c.state_dir);
    if (const auto* v = root.Find("listen")) {
      if (!ParseListen(v->as_string())) {
        Problem(*v, "listen: \"" + v->as_string() + "\" is not host:port (e.g. 127.0.0.1:7780)",
                "config:listen");
      } else {
        c.listen = v->as_string();
      }
    }
    if (const auto* v = String(root, "apiTokensFile")) c.api_tokens_file = Absolute(base_, *v);
    if (const auto* tls = root.Find("tls"); tls && tls->is_object()) ReadTls(*tls, c);
    if (const auto* v = root.Find("unixSocket"); v && v->is_string()) {
      c.unix_socket = Absolute(base_, v->as_string());
      if (c.unix_socket.size() > kMaxUnixSocketPath) {
        Problem(*v,
                "unixSocket: " + c.unix_socket + " is longer than " +
                    std::to_string(kMaxUnixSocketPath) +
                    " bytes, too long for a unix socket (use e.g. /run/gitopsd/api.sock)",
                "config:unix-socket");
      }
    }
    if (const auto* repos = root.Find("repositories"); repos && repos->is_array()) {
      std::set<std::string> names;
      for (const auto& r : repos->items()) {
        RepositorySettings s = ReadRepository(r);
        if (!s.name.empty() && !names.insert(s.name).second) {
          const json::Value* at = r.Find("name");
          Problem(at ? *at : r, "repositories: the name \"" + s.name + "\" is used twice",
                  "config:unique-name");
        }
        c.repositories.push_back(std::move(s));
      }
    }
    if (const auto* rt = root.Find("runtime"); rt && rt->is_object()) {
      if (const auto* v = String(*rt, "kind")) c.runtime_kind = *v;
      if (const auto* range = rt->Find("portRange"); range && range->is_array() &&
                                                     range->items().size() == 2) {
        c.port_range_first = static_cast<int>(range->items()[0].as_double());
        c.port_range_last = static_cast<int>(range->items()[1].as_double());
        if (c.port_range_first > c.port_range_last) {
          Problem(*range, "runtime.portRange: the first port is above the last",
                  "config:port-range");
        }
      }
      if (const auto* pg = rt->Find("postgres"); pg && pg->is_object()) {
        c.postgres = ReadPostgres(*pg);
      }
      if (const auto* v = String(*rt, "previewUrl")) c.preview_url = *v;
    }
    if (const auto* log = root.Find("log"); log && log->is_object()) {
      if (const auto* v = String(*log, "level")) c.log_level = *v;
      if (const auto* v = String(*log, "format")) c.log_format = *v;
    }
    if (!problems_.empty()) return Fail(Joined());
    return c;
  }

 private:
  RepositorySettings ReadRepository(const json::Value& r) {
    RepositorySettings s;
    if (const auto* v = String(r, "name")) s.name = *v;
    if (const auto* v = String(r, "url")) {
      s.url = LooksLikeUrl(*v) ? *v : FileUrlFor(base_, *v);
    }
    if (const auto* v = String(r, "branch")) s.branch = *v;
    if (const auto* v = r.Find("pollInterval")) {
      s.poll_interval = Duration(*v, "pollInterval", s.poll_interval);
    }
    if (const auto* auth = r.Find("auth"); auth && auth->is_object()) ReadAuth(*auth, s);
    if (const auto* sync = r.Find("sync"); sync && sync->is_object()) ReadSync(*sync, s);
    if (const auto* hook = r.Find("webhook"); hook && hook->is_object()) {
      if (const auto* v = String(*hook, "type")) s.webhook_type = *v;
      if (const auto* v = String(*hook, "secretFile")) s.webhook_secret_file = Absolute(base_, *v);
      if (const auto* v = String(*hook, "forgeUrl")) s.webhook_forge_url = *v;
    }
    if (const auto* api = r.Find("forgeApi"); api && api->is_object()) ReadForgeApi(*api, s);
    return s;
  }

  // forgeApi: the forge's REST API, for VCS Message nodes (comments on pull
  // requests). The URL defaults from the forge and the repository's web URL.
  void ReadForgeApi(const json::Value& api, RepositorySettings& s) {
    if (const auto* v = String(api, "type")) s.forge_api_type = *v;
    if (const auto* v = String(api, "url")) s.forge_api_url = *v;
    if (const auto* v = api.Find("tokenFile"); v && v->is_string()) {
      ReadSecretFile(*v, "forgeApi.tokenFile", &s.forge_api_token_file, &s.forge_api_token);
    }
    while (!s.forge_api_url.empty() && s.forge_api_url.back() == '/') s.forge_api_url.pop_back();
    if (!s.forge_api_url.empty()) return;
    if (s.forge_api_type == "github") {
      s.forge_api_url = "https://api.github.com";
      return;
    }
    // GitLab and Gitea: the API lives on the forge's own host.
    const std::string& web = s.webhook_forge_url.empty() ? s.url : s.webhook_forge_url;
    const size_t scheme = web.find("://");
    const bool http = web.starts_with("http://") || web.starts_with("https://");
    const size_t slash = scheme == std::string::npos ? std::string::npos : web.find('/', scheme + 3);
    if (!http || slash == std::string::npos) {
      Problem(api, "forgeApi.url is required: the repository's URL (" + git::RedactUrl(web) +
                       ") is not an http(s) URL of the forge; give forgeApi.url, or webhook.forgeUrl",
              "config:forge-api");
      return;
    }
    s.forge_api_url = web.substr(0, slash) + (s.forge_api_type == "gitlab" ? "/api/v4" : "/api/v1");
  }

  void ReadAuth(const json::Value& auth, RepositorySettings& s) {
    if (const auto* v = String(auth, "username")) s.username = *v;
    if (const auto* v = String(auth, "sshKeyFile")) s.ssh_key_file = Absolute(base_, *v);
    if (const auto* v = String(auth, "knownHostsFile")) s.known_hosts_file = Absolute(base_, *v);
    if (const auto* v = String(auth, "caFile")) s.ca_file = Absolute(base_, *v);
    if (const auto* v = auth.Find("passwordFile"); v && v->is_string()) {
      ReadSecretFile(*v, "auth.passwordFile", &s.password_file, &s.password);
    }
  }

  // The files must be readable now: a daemon that cannot serve its API
  // should stop at start-up, not at the first client. Whether they hold a
  // usable certificate and key is checked when the listener is built.
  void ReadTls(const json::Value& tls, Config& c) {
    for (auto [key, out] : {std::pair{"certFile", &c.tls_cert_file},
                            std::pair{"keyFile", &c.tls_key_file}}) {
      const json::Value* v = tls.Find(key);
      if (!v || !v->is_string()) continue;  // the schema reports it
      *out = Absolute(base_, v->as_string());
      std::error_code ec;
      if (!fs::is_regular_file(*out, ec) || ::access(out->c_str(), R_OK) != 0) {
        Problem(*v, std::string("tls.") + key + ": cannot read " + *out, "config:file");
      }
    }
  }

  PostgresSettings ReadPostgres(const json::Value& pg) {
    PostgresSettings p;
    if (const auto* v = String(pg, "host")) p.host = *v;
    if (const auto* v = pg.Find("port"); v && v->is_number()) {
      p.port = static_cast<int>(v->as_double());
    }
    if (const auto* v = String(pg, "user")) p.user = *v;
    if (const auto* v = String(pg, "adminDatabase")) p.admin_database = *v;
    if (const auto* v = pg.Find("passwordFile"); v && v->is_string()) {
      ReadSecretFile(*v, "runtime.postgres.passwordFile", &p.password_file, &p.password);
    }
    if (const auto* v = pg.Find("binDir"); v && v->is_string()) {
      p.bin_dir = Absolute(base_, v->as_string());
      CheckClientTools(*v, p.bin_dir);
    }
    return p;
  }

  // The PostgreSQL client tools the addons run must be in binDir; saying so
  // now beats a failed backup in the middle of a release.
  void CheckClientTools(const json::Value& at, const std::string& dir) {
    std::error_code ec;
    if (!fs::is_directory(dir, ec)) {
      Problem(at, "runtime.postgres.binDir: " + dir + " is not a folder", "config:file");
      return;
    }
    std::string missing;
    for (const char* tool : {"psql", "pg_dump", "pg_restore"}) {
      const fs::path program = fs::path(dir) / tool;
      if (::access(program.c_str(), X_OK) != 0) {
        missing += std::string(missing.empty() ? "" : ", ") + tool;
      }
    }
    if (!missing.empty()) {
      Problem(at,
              "runtime.postgres.binDir: " + dir + " has no runnable " + missing +
                  " (give the bin folder of a PostgreSQL client, e.g. /usr/lib/postgresql/16/bin)",
              "config:file");
    }
  }

  // Reads the file `v` names into `secret` (trailing newlines trimmed) and
  // its absolute path into `path`; a file that cannot be read is a problem
  // naming `key` and the path, never the content.
  void ReadSecretFile(const json::Value& v, const std::string& key, std::string* path,
                      std::string* secret) {
    *path = Absolute(base_, v.as_string());
    auto content = ReadWholeFile(*path);
    if (!content) {
      Problem(v, key + ": cannot read " + *path, "config:file");
      return;
    }
    *secret = std::move(*content);
    while (!secret->empty() && (secret->back() == '\n' || secret->back() == '\r')) {
      secret->pop_back();
    }
  }

  void ReadSync(const json::Value& sync, RepositorySettings& s) {
    if (const auto* v = String(sync, "path")) {
      s.sync_path = *v;
      while (s.sync_path.size() > 1 && s.sync_path.back() == '/') s.sync_path.pop_back();
    }
    if (const auto* v = sync.Find("writeBack"); v && v->is_bool()) s.write_back = v->as_bool();
    if (const auto* v = sync.Find("prune"); v && v->is_bool()) s.prune = v->as_bool();
    if (const auto* v = String(sync, "conflictPolicy")) s.conflict_policy = *v;
    if (const auto* author = sync.Find("author"); author && author->is_object()) {
      if (const auto* v = String(*author, "name")) s.author_name = *v;
      if (const auto* v = String(*author, "email")) s.author_email = *v;
    }
    if (const auto* v = sync.Find("maxFileBytes"); v && v->is_number()) {
      s.max_file_bytes = static_cast<size_t>(v->as_double());
    }
    if (const auto* v = sync.Find("maxDepth"); v && v->is_number()) {
      s.max_depth = static_cast<size_t>(v->as_double());
    }
  }

  Millis Duration(const json::Value& v, const std::string& key, Millis fallback) {
    if (!v.is_string()) return fallback;  // the schema reports the type
    auto d = ParseDuration(v.as_string());
    if (!d) {
      Problem(v,
              key + ": \"" + v.as_string() +
                  "\" is not a duration; write a positive number and a unit: 500ms, 30s, 5m, 1h",
              "config:duration");
      return fallback;
    }
    if (*d < Millis(100)) {
      Problem(v, key + ": " + v.as_string() + " is too short; the minimum is 100ms",
              "config:duration");
      return fallback;
    }
    return *d;
  }

  const std::string* String(const json::Value& obj, std::string_view key) {
    const json::Value* v = obj.Find(key);
    return v && v->is_string() ? &v->as_string() : nullptr;
  }

  void Problem(const json::Value& at, std::string message, std::string rule) {
    json::LineCol lc = json::LocateOffset(text_, at.offset());
    problems_.push_back(Diagnostic{path_, lc.line, lc.col, std::move(message), std::move(rule)});
  }

  std::string Joined() const {
    std::string out;
    for (const auto& d : problems_) {
      if (!out.empty()) out += '\n';
      out += d.ToString();
    }
    return out;
  }

  std::string path_;
  std::string_view text_;
  fs::path base_;
  Diagnostics problems_;
};

std::string JoinDiagnostics(const Diagnostics& diags) {
  std::string out;
  for (const auto& d : diags) {
    if (!out.empty()) out += '\n';
    out += d.ToString();
  }
  return out;
}

}  // namespace

Result<Config> LoadConfigText(const std::string& path, std::string_view text,
                              const model::Loader& loader) {
  json::Value root;
  Diagnostics diags = loader.ValidateConfig(path, std::string(text), &root);
  if (!diags.empty()) return Fail(JoinDiagnostics(diags));
  return ConfigReader(path, text).Read(root);
}

Result<Config> LoadConfigFile(const std::string& path, const model::Loader& loader) {
  std::error_code ec;
  if (!fs::is_regular_file(path, ec)) {
    return Fail(path + ": cannot read the configuration file: " +
                (fs::exists(path, ec) ? "not a regular file" : "no such file") +
                " (pass another with --config FILE, or try quick mode: gitopsd serve --repo PATH)");
  }
  auto text = ReadWholeFile(path);
  if (!text) return Fail(path + ": cannot read the configuration file");
  return LoadConfigText(path, *text, loader);
}

Result<Config> QuickConfig(const QuickOptions& options) {
  if (options.repo.empty()) return Fail("--repo: give a repository URL or path");
  Config c;
  c.source = "command line";
  fs::path cwd = fs::current_path();
  RepositorySettings s;
  if (LooksLikeUrl(options.repo)) {
    s.url = options.repo;
  } else {
    std::error_code ec;
    if (!fs::exists(options.repo, ec)) {
      return Fail("--repo " + options.repo + ": no such folder (give a URL or a local repository)");
    }
    s.url = FileUrlFor(cwd, options.repo);
  }
  s.name = RepositoryNameFromUrl(s.url);
  s.branch = options.branch.empty() ? "main" : options.branch;
  if (!options.poll_interval.empty()) {
    auto d = ParseDuration(options.poll_interval);
    if (!d) {
      return Fail("--poll-interval " + options.poll_interval +
                  ": not a duration; write a positive number and a unit: 500ms, 30s, 5m, 1h");
    }
    if (*d < Millis(100)) return Fail("--poll-interval: the minimum is 100ms");
    s.poll_interval = *d;
  }
  if (!ParseListen(options.listen)) {
    return Fail("--listen " + options.listen + ": not host:port (e.g. 127.0.0.1:7780)");
  }
  c.listen = options.listen;
  if (options.state_dir.empty()) {
    c.state_dir = Absolute(cwd, ".gitopsd-state");
    c.notes.push_back("quick mode: keeping state in " + c.state_dir +
                      " (the default ./.gitopsd-state; choose another with --state-dir)");
  } else {
    c.state_dir = Absolute(cwd, options.state_dir);
  }
  if (!options.api_tokens_file.empty()) c.api_tokens_file = Absolute(cwd, options.api_tokens_file);
  c.repositories.push_back(std::move(s));
  return c;
}

}  // namespace gitopsd::daemon
