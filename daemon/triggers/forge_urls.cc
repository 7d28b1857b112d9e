// Repository URLs in every spelling forges and operators use, reduced to a
// host and a path so that a repository compares equal to itself.
#include "daemon/triggers/forge.h"

#include <algorithm>
#include <cctype>
#include <optional>

namespace gitopsd::triggers {
namespace {

constexpr size_t kNone = std::string_view::npos;

struct RepoLocation {
  std::string host;  // lowercase; no user info, no port
  std::string path;  // lowercase; "acme/shop", without slashes at the ends or ".git"
};

struct Split {
  std::string_view authority;  // [user[:password]@]host[:port]
  std::string_view path;
};

std::string Lowercase(std::string_view s) {
  std::string out(s);
  std::ranges::transform(out, out.begin(),
                         [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

std::string_view Trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return s;
}

// "scheme://authority/path", or git's scp-like "[user@]host:path", which git
// recognises only when the ':' comes before any '/' (else it is a local
// path). An IPv6 host is bracketed in both forms.
std::optional<Split> SplitUrl(std::string_view url) {
  if (size_t scheme = url.find("://"); scheme != kNone) {
    std::string_view rest = url.substr(scheme + 3);
    size_t slash = rest.find('/');
    if (slash == kNone) return Split{rest, {}};
    return Split{rest.substr(0, slash), rest.substr(slash)};
  }
  size_t search_from = 0;
  if (size_t open = url.find('['); open != kNone && open < url.find('/')) {
    search_from = url.find(']', open);
    if (search_from == kNone) return std::nullopt;
  }
  size_t colon = url.find(':', search_from);
  size_t slash = url.find('/');
  if (colon == kNone || (slash != kNone && slash < colon)) return std::nullopt;
  return Split{url.substr(0, colon), url.substr(colon + 1)};
}

std::string_view HostOf(std::string_view authority) {
  if (size_t at = authority.rfind('@'); at != kNone) authority.remove_prefix(at + 1);
  if (authority.starts_with('[')) {
    size_t close = authority.find(']');
    return close == kNone ? std::string_view() : authority.substr(1, close - 1);
  }
  return authority.substr(0, authority.find(':'));
}

// "/Acme//Shop.git/" -> "acme/shop".
std::string NormalPath(std::string_view path) {
  std::string out;
  while (!path.empty()) {
    size_t slash = path.find('/');
    std::string_view segment = path.substr(0, slash);
    path = slash == kNone ? std::string_view() : path.substr(slash + 1);
    if (segment.empty()) continue;
    if (!out.empty()) out += '/';
    out += Lowercase(segment);
  }
  if (out.ends_with(".git")) out.resize(out.size() - 4);
  if (out.ends_with('/')) out.pop_back();
  return out;
}

std::optional<RepoLocation> Locate(std::string_view url) {
  url = Trim(url);
  url = url.substr(0, url.find_first_of("?#"));
  std::optional<Split> split = SplitUrl(url);
  if (!split) return std::nullopt;
  RepoLocation where{Lowercase(HostOf(split->authority)), NormalPath(split->path)};
  if (where.host.empty() || where.path.empty()) return std::nullopt;
  return where;
}

}  // namespace

bool SameRepository(std::string_view configured_url, std::string_view payload_url) {
  std::optional<RepoLocation> configured = Locate(configured_url);
  std::optional<RepoLocation> payload = Locate(payload_url);
  return configured && payload && configured->host == payload->host &&
         configured->path == payload->path;
}

bool NamesRepository(const ForgeEvent& event, std::string_view configured_url) {
  return std::ranges::any_of(event.repo_urls, [&](const std::string& url) {
    return SameRepository(configured_url, url);
  });
}

}  // namespace gitopsd::triggers
