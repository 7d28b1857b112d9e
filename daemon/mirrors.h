// The configured repositories' bare mirrors as the release runner needs
// them: a fresh libgit2 handle per call (handles are not shared across
// threads; the sync thread keeps its own), and the fetched head of a
// branch. Thread-safe.
#pragma once
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "sync/reconcile.h"
#include "sync/status.h"

namespace gitopsd::git {
class Repository;
}
namespace gitopsd::store {
class Store;
}

namespace gitopsd::daemon {

class Mirrors {
 public:
  // `repos`: configured repository name -> its sync configuration.
  Mirrors(std::map<std::string, sync::RepositoryConfig> repos, store::Store& store)
      : repos_(std::move(repos)), store_(store) {}

  // Opens the mirror of a configured repository; an unknown name is an
  // error that lists the configured ones.
  Result<std::unique_ptr<git::Repository>> Open(const std::string& name) const;

  // The fetched head of `branch` ("" = the synced branch): from the store
  // for the synced branch, else from the mirror's remote-tracking ref.
  Result<std::string> HeadOf(const std::string& name, const std::string& branch) const;

  // Configured repository -> its synced branch.
  std::map<std::string, std::string> Branches() const;

  // Fetches `branch` of a configured repository into its mirror now (into
  // refs/gitopsd/heads/<branch>, apart from the sync loop's refs); the
  // fetched commit. Fetches through Mirrors are serialised.
  Result<std::string> FetchBranch(const std::string& name, const std::string& branch) const;

  // The configuration of a configured repository (nullopt: unknown).
  std::optional<sync::RepositoryConfig> Config(const std::string& name) const;
  // A configuration reload adds, changes or removes a repository. Thread-safe,
  // as every call here.
  void Set(const std::string& name, sync::RepositoryConfig config);
  void Remove(const std::string& name);

  // The configured repository a trigger names: by name, or by a URL equal
  // to its configured one (ignoring a trailing ".git" or "/").
  std::optional<std::string> Resolve(const std::string& name_or_url) const;

 private:
  std::string UnknownRepository(const std::string& name) const;

  mutable std::mutex repos_mu_;
  std::map<std::string, sync::RepositoryConfig> repos_;
  store::Store& store_;
  mutable std::mutex fetch_mu_;
};

}  // namespace gitopsd::daemon
