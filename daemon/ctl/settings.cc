#include "daemon/ctl/settings.h"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>

#include "sync/json.h"

namespace gitopsd::ctl {
namespace {

namespace fs = std::filesystem;

struct FileSettings {
  std::string path;        // "" when there is no file
  std::string server;
  std::string token;
  std::string token_file;  // absolute
  std::string ca_file;     // absolute
};

std::optional<std::string> ReadText(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return std::nullopt;
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

std::string Trimmed(std::string s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.pop_back();
  size_t i = 0;
  while (i < s.size() && std::isspace(static_cast<unsigned char>(s[i]))) ++i;
  return s.substr(i);
}

// A file holding a token must not be readable by other users.
Status CheckPrivate(const std::string& path, const std::string& what) {
  struct stat st{};
  if (::stat(path.c_str(), &st) != 0) return Ok();  // reading it reports the problem
  if ((st.st_mode & S_IRWXO) == 0) return Ok();
  char mode[8];
  std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
  return Fail(path + " holds " + what + " and other users can read it (mode " + mode +
              "); refusing to use it. Fix it with: chmod 600 " + path);
}

std::string Absolute(const std::string& base_file, const std::string& path) {
  fs::path p(path);
  if (p.is_relative()) p = fs::path(base_file).parent_path() / p;
  return p.lexically_normal().string();
}

Result<FileSettings> ReadCtlFile(const std::string& path) {
  FileSettings out;
  std::error_code ec;
  if (path.empty() || !fs::exists(path, ec)) return out;
  auto text = ReadText(path);
  if (!text) return Fail(path + ": cannot read it");
  auto doc = json::Parse(*text);
  if (!doc) {
    const json::LineCol at = json::LocateOffset(*text, doc.error().offset);
    return Fail(path + ":" + std::to_string(at.line) + ":" + std::to_string(at.col) +
                ": error: " + doc.error().message);
  }
  if (!doc->is_object()) return Fail(path + ": must hold a JSON object");
  out.path = path;
  for (const auto& [key, value] : doc->members()) {
    std::string* field = key == "server"      ? &out.server
                         : key == "token"     ? &out.token
                         : key == "tokenFile" ? &out.token_file
                         : key == "caFile"    ? &out.ca_file
                                              : nullptr;
    const json::LineCol at = json::LocateOffset(*text, value.offset());
    const std::string where =
        path + ":" + std::to_string(at.line) + ":" + std::to_string(at.col) + ": error: ";
    if (!field) {
      return Fail(where + "unknown key \"" + key + "\"; use server, token, tokenFile or caFile");
    }
    if (!value.is_string() || value.as_string().empty()) {
      return Fail(where + "\"" + key + "\" must be a non-empty string");
    }
    *field = value.as_string();
  }
  if (!out.token.empty() && !out.token_file.empty()) {
    return Fail(path + ": give \"token\" or \"tokenFile\", not both");
  }
  if (!out.token.empty()) {
    if (auto s = CheckPrivate(path, "a token"); !s) return std::unexpected(s.error());
  }
  if (!out.token_file.empty()) out.token_file = Absolute(path, out.token_file);
  if (!out.ca_file.empty()) out.ca_file = Absolute(path, out.ca_file);
  return out;
}

// "" when a connection to the unix socket at `path` succeeds, else why not.
std::string TryUnixSocket(const std::string& path) {
  sockaddr_un address{};
  if (path.size() >= sizeof address.sun_path) return "path too long";
  address.sun_family = AF_UNIX;
  std::memcpy(address.sun_path, path.c_str(), path.size() + 1);
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return std::strerror(errno);
  const int rc = ::connect(fd, reinterpret_cast<const sockaddr*>(&address), sizeof address);
  const int error = errno;
  ::close(fd);
  return rc == 0 ? "" : std::strerror(error);
}

}  // namespace

std::string CtlConfigPath(const EnvLookup& env) {
  if (const std::string xdg = env("XDG_CONFIG_HOME"); !xdg.empty()) {
    return xdg + "/gitopsd/ctl.json";
  }
  if (const std::string home = env("HOME"); !home.empty()) {
    return home + "/.config/gitopsd/ctl.json";
  }
  return "";
}

Result<Settings> ResolveSettings(const Flags& flags, const Sources& sources) {
  auto file = ReadCtlFile(CtlConfigPath(sources.env));
  if (!file) return std::unexpected(file.error());
  Settings s;
  bool from_default = false;
  if (!flags.server.empty()) {
    s.server = flags.server;
    s.origin = "from --server";
  } else if (const std::string url = sources.env("GITOPSD_URL"); !url.empty()) {
    s.server = url;
    s.origin = "from $GITOPSD_URL";
  } else if (const std::string old = sources.env("GITOPSD_SERVER"); !old.empty()) {
    s.server = old;
    s.origin = "from $GITOPSD_SERVER";
  } else if (!file->server.empty()) {
    s.server = file->server;
    s.origin = "from " + file->path;
  } else {
    from_default = true;
    const std::string why_not = TryUnixSocket(sources.default_socket);
    if (why_not.empty()) {
      s.server = "unix:" + sources.default_socket;
      s.origin = "the default";
    } else {
      s.server = kDefaultUrl;
      s.origin = "the default; unix:" + sources.default_socket + ": " + why_not;
    }
  }

  const bool file_token_applies =
      !file->path.empty() &&
      (file->server.empty() ? from_default : s.server == file->server);
  if (!flags.token.empty()) {
    s.token = flags.token;
  } else if (!flags.token_file.empty()) {
    auto text = ReadText(flags.token_file);
    if (!text) return Fail("--token-file " + flags.token_file + ": cannot read it");
    s.token = Trimmed(*text);
  } else if (const std::string env = sources.env("GITOPSD_TOKEN"); !env.empty()) {
    s.token = env;
  } else if (file_token_applies && !file->token.empty()) {
    s.token = file->token;
  } else if (file_token_applies && !file->token_file.empty()) {
    if (auto ok = CheckPrivate(file->token_file, "the token"); !ok) {
      return std::unexpected(ok.error());
    }
    auto text = ReadText(file->token_file);
    if (!text) {
      return Fail(file->path + ": tokenFile " + file->token_file + ": cannot read it");
    }
    s.token = Trimmed(*text);
  }

  if (!flags.ca_file.empty()) {
    s.ca_file = flags.ca_file;
  } else if (const std::string env = sources.env("GITOPSD_CACERT"); !env.empty()) {
    s.ca_file = env;
  } else {
    s.ca_file = file->ca_file;
  }
  s.insecure = flags.insecure;
  return s;
}

}  // namespace gitopsd::ctl
