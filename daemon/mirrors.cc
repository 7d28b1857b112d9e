#include "daemon/mirrors.h"

#include "sync/git.h"
#include "sync/store.h"

namespace gitopsd::daemon {

Result<std::unique_ptr<git::Repository>> Mirrors::Open(const std::string& name) const {
  auto config = Config(name);
  if (!config) return Fail(UnknownRepository(name));
  auto repo = git::Repository::OpenOrInit(config->mirror_dir, config->url);
  if (!repo) return std::unexpected(repo.error());
  return std::make_unique<git::Repository>(std::move(*repo));
}

Result<std::string> Mirrors::HeadOf(const std::string& name, const std::string& branch) const {
  auto config = Config(name);
  if (!config) return Fail(UnknownRepository(name));
  if (branch.empty() || branch == config->branch) {
    auto state = store_.GetRepository(name);
    if (!state) return std::unexpected(state.error());
    if (!*state || (*state)->fetched_commit.empty()) {
      return Fail("repository \"" + name + "\" has not been fetched yet");
    }
    return (*state)->fetched_commit;
  }
  auto repo = Open(name);
  if (!repo) return std::unexpected(repo.error());
  auto head = (*repo)->FetchedHead(branch);
  if (!head) {
    return Fail("repository \"" + name + "\" syncs branch " + config->branch + "; branch " +
                branch + " has not been fetched: " + head.error().message);
  }
  return *head;
}

std::map<std::string, std::string> Mirrors::Branches() const {
  std::map<std::string, std::string> out;
  std::lock_guard lock(repos_mu_);
  for (const auto& [name, r] : repos_) out.emplace(name, r.branch);
  return out;
}

Result<std::string> Mirrors::FetchBranch(const std::string& name, const std::string& branch) const {
  auto config = Config(name);
  if (!config) return Fail(UnknownRepository(name));
  auto repo = Open(name);
  if (!repo) return std::unexpected(repo.error());
  const std::string wanted = branch.empty() ? config->branch : branch;
  std::lock_guard lock(fetch_mu_);
  // Into refs of its own: the sync loop fetches refs/remotes/origin/* with
  // a handle of its own, and two writers of one ref would fail each other.
  return (*repo)->FetchRef("refs/heads/" + wanted, "refs/gitopsd/heads/" + wanted, config->credentials);
}

namespace {
std::string_view TrimUrl(std::string_view url) {
  while (!url.empty() && url.back() == '/') url.remove_suffix(1);
  if (url.ends_with(".git")) url.remove_suffix(4);
  return url;
}
}  // namespace

std::optional<sync::RepositoryConfig> Mirrors::Config(const std::string& name) const {
  std::lock_guard lock(repos_mu_);
  auto it = repos_.find(name);
  if (it == repos_.end()) return std::nullopt;
  return it->second;
}

void Mirrors::Set(const std::string& name, sync::RepositoryConfig config) {
  std::lock_guard lock(repos_mu_);
  repos_.insert_or_assign(name, std::move(config));
}

void Mirrors::Remove(const std::string& name) {
  std::lock_guard lock(repos_mu_);
  repos_.erase(name);
}

std::optional<std::string> Mirrors::Resolve(const std::string& name_or_url) const {
  std::lock_guard lock(repos_mu_);
  if (repos_.contains(name_or_url)) return name_or_url;
  for (const auto& [name, r] : repos_) {
    if (TrimUrl(r.url) == TrimUrl(name_or_url)) return name;
  }
  return std::nullopt;
}

std::string Mirrors::UnknownRepository(const std::string& name) const {
  std::string known;
  std::lock_guard lock(repos_mu_);
  for (const auto& [n, r] : repos_) known += (known.empty() ? "" : ", ") + n;
  return "no repository named \"" + name + "\" is configured (configured: " +
         (known.empty() ? std::string("none") : known) + ")";
}

}  // namespace gitopsd::daemon
