#include "daemon/serve.h"

#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <cstdlib>
#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <string>
#include <thread>

#include "daemon/api.h"
#include "daemon/flow_runs.h"
#include "daemon/previews/preview_manager.h"
#include "daemon/trigger_bridge.h"
#include "daemon/triggers/dispatcher.h"
#include "daemon/triggers/trigger_store.h"
#include "daemon/logging.h"
#include "daemon/metrics.h"
#include "daemon/forge_api.h"
#include "daemon/mirrors.h"
#include "daemon/notify.h"
#include "daemon/poller.h"
#include "daemon/state_metrics.h"
#include "daemon/runner/engine.h"
#include "daemon/runner/executor.h"
#include "daemon/runtime/addons.h"
#include "daemon/runtime/builds.h"
#include "daemon/runtime/jobs.h"
#include "daemon/runtime/resources.h"
#include "daemon/runtime/services.h"
#include "daemon/tokens.h"
#include "sync/model.h"
#include "sync/reconcile.h"
#include "sync/store.h"
#include "sync/writeback.h"

namespace gitopsd::daemon {
namespace fs = std::filesystem;

namespace {

void PrintFatal(const std::string& message) { ReportFatal(message); }

// Creates the folder and its missing parents; the folders it creates are
// private (0700): the state holds secrets.
Status EnsurePrivateDir(const fs::path& dir) {
  std::error_code ec;
  if (fs::is_directory(dir, ec)) return Ok();
  if (dir.has_parent_path() && dir.parent_path() != dir) {
    if (auto s = EnsurePrivateDir(dir.parent_path()); !s) return s;
  }
  if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) {
    return Fail("cannot create the state folder " + dir.string() + ": " + std::strerror(errno));
  }
  return Ok();
}

sync::RepositoryConfig ToRepositoryConfig(const RepositorySettings& s, const Config& c) {
  sync::RepositoryConfig r;
  r.name = s.name;
  r.url = s.url;
  r.branch = s.branch;
  r.folder = s.sync_path;
  r.prune = s.prune;
  r.credentials.username = s.username;
  r.credentials.password = s.password;
  r.credentials.ssh_key_file = s.ssh_key_file;
  r.credentials.known_hosts_file = s.known_hosts_file;
  r.credentials.ca_file = s.ca_file;
  r.limits.max_bytes = s.max_file_bytes;
  r.limits.max_depth = s.max_depth;
  r.mirror_dir = (fs::path(c.state_dir) / "repos" / (s.name + ".git")).string();
  return r;
}

// runtime.postgres as the addons room wants it; nullopt: sqlite addons only.
std::optional<runtime::PostgresServerSettings> ToPostgresServer(const Config& c) {
  if (!c.postgres) return std::nullopt;
  runtime::PostgresServerSettings p;
  p.host = c.postgres->host;
  p.port = c.postgres->port;
  p.user = c.postgres->user;
  p.password = c.postgres->password;
  p.admin_database = c.postgres->admin_database;
  p.bin_dir = c.postgres->bin_dir;
  return p;
}

// For the log: where postgresql addons live and who connects, never the
// password itself.
std::string DescribeAddons(const Config& c) {
  if (!c.postgres) return "sqlite addons (no runtime.postgres configured)";
  const PostgresSettings& p = *c.postgres;
  return "sqlite and postgresql addons (server " + p.user + "@" + p.host + ":" +
         std::to_string(p.port) +
         (p.password_file.empty() ? ", no password file" : ", password from " + p.password_file) +
         ")";
}

sync::WriteBackConfig ToWriteBackConfig(const RepositorySettings& s) {
  sync::WriteBackConfig w;
  w.author_name = s.author_name;
  w.author_email = s.author_email;
  w.conflict_policy = s.conflict_policy;
  return w;
}

// Hidden knobs for tests (no configuration key): a short HTTP read timeout
// keeps the slow-client test quick, a wait bound of 0 forces 202 answers.
// A value that does not parse is ignored with a warning.
void ApplyEnvironment(ApiOptions* options) {
  auto duration = [](const char* name, std::chrono::milliseconds* out) {
    const char* text = std::getenv(name);
    if (!text || !*text) return;
    if (std::string_view(text) == "0") {
      *out = std::chrono::milliseconds(0);
    } else if (auto d = ParseDuration(text)) {
      *out = *d;
    } else {
      spdlog::warn("{}={}: not a duration (e.g. 1s, 500ms); ignored", name, text);
      return;
    }
    spdlog::info("{}={} (from the environment)", name, text);
  };
  duration("GITOPSD_HTTP_READ_TIMEOUT", &options->read_timeout);
  duration("GITOPSD_WRITEBACK_WAIT", &options->writeback_wait);
  duration("GITOPSD_FOLLOW_PROGRESS", &options->follow_progress);
}

// The runner's polling of waiting nodes (tests make it quick).
void ApplyEnvironment(runner::EngineOptions* options) {
  const char* text = std::getenv("GITOPSD_RUNNER_POLL");
  if (!text || !*text) return;
  if (auto d = ParseDuration(text)) {
    options->poll_initial = *d;
    options->poll_max = std::max(*d, std::chrono::milliseconds(1000));
    spdlog::info("GITOPSD_RUNNER_POLL={} (from the environment)", text);
  } else {
    spdlog::warn("GITOPSD_RUNNER_POLL={}: not a duration (e.g. 100ms); ignored", text);
  }
}

// Preview timing for tests: GITOPSD_PREVIEW_TICK (how often the manager
// carries previews on), GITOPSD_PREVIEW_MINUTE (how long a minute of
// options.expiry.previewLifetime lasts) and GITOPSD_PREVIEW_FORGE_CHECK (how
// often forges are asked whether pull requests are still open).
void ApplyEnvironment(PreviewDeps* deps) {
  for (auto [name, out] : {std::pair{"GITOPSD_PREVIEW_TICK", &deps->tick},
                           std::pair{"GITOPSD_PREVIEW_MINUTE", &deps->minute},
                           std::pair{"GITOPSD_PREVIEW_FORGE_CHECK", &deps->forge_check}}) {
    const char* text = std::getenv(name);
    if (!text || !*text) continue;
    auto d = ParseDuration(text);
    if (!d || d->count() <= 0) {
      spdlog::warn("{}={}: not a positive duration (e.g. 1s, 200ms); ignored", name, text);
      continue;
    }
    *out = *d;
    spdlog::info("{}={} (from the environment)", name, text);
  }
}

// How long shutdown waits for syncs in progress.
constexpr std::chrono::seconds kSyncGrace{10};

// After a sync: autorun the Templates that changed.
class AutorunListener final : public SyncListener {
 public:
  AutorunListener(FlowRuns& runs, triggers::Dispatcher& dispatcher,
                  std::function<std::vector<std::string>()> repositories)
      : runs_(runs), dispatcher_(dispatcher), repositories_(std::move(repositories)) {}
  void ObjectsChanged(const std::string& repository,
                      const FlowRuns::ChangedObjects* changed) override {
    runs_.Autorun(repository, changed);
    // A flow's triggers may have changed: a look at what they watch.
    for (const std::string& r : repositories_()) dispatcher_.RequestLook(r);
  }

 private:
  FlowRuns& runs_;
  triggers::Dispatcher& dispatcher_;
  std::function<std::vector<std::string>()> repositories_;  // configured now
};

// "acme/shop" of https://github.com/acme/shop(.git), ssh://git@host/acme/shop
// or git@host:acme/shop.git.
std::string ProjectPath(std::string url) {
  while (!url.empty() && url.back() == '/') url.pop_back();
  if (url.ends_with(".git")) url.resize(url.size() - 4);
  if (const size_t scheme = url.find("://"); scheme != std::string::npos) {
    const size_t slash = url.find('/', scheme + 3);
    return slash == std::string::npos ? "" : url.substr(slash + 1);
  }
  const size_t colon = url.find(':');  // scp-like
  return colon == std::string::npos ? "" : url.substr(colon + 1);
}

std::string_view TrimmedUrl(std::string_view url) {
  while (!url.empty() && url.back() == '/') url.remove_suffix(1);
  if (url.ends_with(".git")) url.remove_suffix(4);
  return url;
}

// A repository's forge API (forgeApi), with the names it is known by.
struct ForgeApiEntry {
  std::string name, url, forge_url;
  ForgeApiAccess access;
};

std::vector<ForgeApiEntry> ForgeApisOf(const Config& config) {
  std::vector<ForgeApiEntry> out;
  for (const auto& r : config.repositories) {
    if (r.forge_api_type.empty()) continue;
    const std::string& web = r.webhook_forge_url.empty() ? r.url : r.webhook_forge_url;
    out.push_back(ForgeApiEntry{r.name, r.url, r.webhook_forge_url,
                                ForgeApiAccess{r.forge_api_type, r.forge_api_url, ProjectPath(web),
                                                       r.forge_api_token}});
  }
  return out;
}

// What a reload cannot change in a running daemon: (what, old, new) for
// each setting that differs; they take effect at the next start.
std::vector<std::string> NeedsRestart(const Config& now, const Config& next) {
  std::vector<std::string> out;
  auto check = [&](const char* what, const std::string& a, const std::string& b) {
    if (a != b) out.push_back(std::string(what) + " (" + a + " -> " + b + ")");
  };
  check("stateDir", now.state_dir, next.state_dir);
  check("listen", now.listen, next.listen);
  check("unixSocket", now.unix_socket, next.unix_socket);
  check("tls", now.tls_cert_file + " " + now.tls_key_file, next.tls_cert_file + " " + next.tls_key_file);
  check("runtime.portRange", std::to_string(now.port_range_first) + "-" + std::to_string(now.port_range_last),
        std::to_string(next.port_range_first) + "-" + std::to_string(next.port_range_last));
  check("runtime.previewUrl", now.preview_url, next.preview_url);
  check("log.format", now.log_format, next.log_format);
  auto pg = [](const Config& c) {
    return c.postgres ? c.postgres->user + "@" + c.postgres->host + ":" + std::to_string(c.postgres->port) +
                            " " + c.postgres->password_file
                      : std::string("none");
  };
  check("runtime.postgres", pg(now), pg(next));
  if (now.api_tokens_file.empty() != next.api_tokens_file.empty()) {
    check("apiTokensFile", now.api_tokens_file.empty() ? "none" : now.api_tokens_file,
          next.api_tokens_file.empty() ? "none" : next.api_tokens_file);
  }
  return out;
}

// Everything the running daemon owns, destroyed in reverse order.
class Daemon {
 public:
  int Run(const Config& config, const model::Loader& loader, const ServeRequest& request) {
    config_ = config;
    loader_ = &loader;
    request_ = request;
    SetForgeApis(config);  // before the runner resumes runs that may post messages
    if (auto s = EnsurePrivateDir(config.state_dir); !s) return Fatal(s.error().message);
    if (auto s = EnsurePrivateDir(fs::path(config.state_dir) / "repos"); !s) {
      return Fatal(s.error().message);
    }
    const std::string db_path = (fs::path(config.state_dir) / "state.db").string();
    auto store = store::Store::Open(db_path);
    if (!store) {
      std::string why = store.error().message;
      if (why.find(db_path) == std::string::npos) {
        why = "cannot open the state database " + db_path + ": " + why;
      }
      return Fatal(why +
                   " (move the file away to start from an empty state; gitopsd re-syncs from Git)");
    }
    store_ = std::move(*store);

    if (!config.api_tokens_file.empty()) {
      auto tokens = TokenStore::LoadFile(config.api_tokens_file);
      if (!tokens) return Fatal(tokens.error().message, kExitConfig);
      tokens_ = std::make_unique<TokenStore>(std::move(*tokens));
      spdlog::info("API tokens: {} from {}", tokens_->size(), config.api_tokens_file);
    } else {
      spdlog::warn("no apiTokensFile configured: the API is read-only (writes answer 403)");
    }

    std::vector<PollTarget> targets;
    for (const auto& s : config.repositories) {
      auto target = MakeTarget(s, config);
      if (!target) return Fatal(target.error().message);
      targets.push_back(std::move(*target));
    }
    if (config.repositories.empty()) {
      spdlog::warn("no repositories configured: there is nothing to sync");
    }
    if (auto s = OpenRuntime(config); !s) return Fatal(s.error().message);
    autorun_ = std::make_unique<AutorunListener>(*runs_, *dispatcher_, [this] { return poller_->Names(); });
    poller_ = std::make_unique<Poller>(*store_, metrics_, std::move(targets), autorun_.get());

    auto forge_hooks = ReadForgeHooks(config);
    if (!forge_hooks) return Fatal(forge_hooks.error().message, kExitConfig);
    SetForgeHooks(std::move(*forge_hooks));
    ApiOptions api_options;
    api_options.listen = config.listen;
    api_options.tls_cert_file = config.tls_cert_file;
    api_options.tls_key_file = config.tls_key_file;
    api_options.unix_socket = config.unix_socket;
    if (auto s = CheckTlsFiles(api_options); !s) return Fatal(s.error().message, kExitConfig);
    ApplyEnvironment(&api_options);
    ApiDeps deps{store_.get(), poller_.get(), &metrics_, tokens_.get()};
    deps.runs = runs_.get();
    deps.builds = builds_.get();
    deps.jobs = jobs_.get();
    deps.services = services_.get();
    deps.addons = addons_.get();
    deps.previews = previews_.get();
    deps.preview_store = preview_store_.get();
    deps.hooks = HookDeps{.store = store_.get(),
                          .runs = runs_.get(),
                          .previews = previews_.get(),
                          .triggers = trigger_store_.get(),
                          .tokens = tokens_.get(),
                          .verify_commit = [this](const std::string& repository, const std::string& branch,
                                                  const std::string& sha) { return VerifyCommit(repository, branch, sha); },
                          .head_of = [this](const std::string& repository,
                                            const std::string& branch) -> Result<std::string> {
                            auto name = mirrors_->Resolve(repository);
                            if (!name) return Fail("the trigger's repository \"" + repository + "\" is not configured");
                            return mirrors_->FetchBranch(*name, branch);
                          },
                          .forge_hooks = [this] { return ForgeHooks(); },
                          .on_delivery = [this](const std::string& source, const std::string& result) {
                            metrics_.RecordWebhook(source, result);
                          },
                          .look = [this](const std::string& repository) { dispatcher_->RequestLook(repository); },
                          .pull_request = [this](const std::string& repository, const std::string& number,
                                                 const std::string& source_branch, bool draft, bool open,
                                                 const std::string& why) {
                            NotePullRequest(repository, number, source_branch, draft, open, why);
                          }};
    auto api = ApiServer::Start(api_options, deps);
    if (!api) return Fatal(api.error().message);
    api_ = std::move(*api);
    spdlog::info("gitopsd {} listening on {} (port {}), state in {}", GITOPSD_VERSION,
                 config.listen, api_->port(), config.state_dir);

    previews_->Start();  // sweeps what gone previews left behind before the daemon is ready
    poller_->Start();
    for (const auto& r : config.repositories) {
      dispatcher_->Poll(r.name, std::chrono::duration_cast<std::chrono::milliseconds>(r.poll_interval));
    }
    dispatcher_->Start();
    NotifySystemd("READY=1\nSTATUS=" + StatusLine());
    const auto watchdog = WatchdogInterval();
    if (watchdog) {
      spdlog::info("systemd watchdog: a ping every {} ms",
                   std::chrono::duration_cast<std::chrono::milliseconds>(*watchdog / 2).count());
    }
    const auto tick = watchdog ? std::chrono::duration_cast<std::chrono::milliseconds>(*watchdog / 2)
                               : std::chrono::milliseconds(kStatusTick);
    const int sig = WaitForSignals(
        tick, [this] { Reload(); }, [this, ping = watchdog.has_value()] { Tick(ping); });
    spdlog::info("received {}, shutting down", sig == SIGINT ? "SIGINT" : "SIGTERM");
    NotifySystemd("STOPPING=1\nSTATUS=stopping: finishing syncs, parking runs at their node");
    BoundShutdown();
    poller_->BeginStop();  // releases API requests waiting for a sync
    api_->Stop();
    dispatcher_->Stop();
    previews_->Stop();
    if (!poller_->Stop(kSyncGrace)) {
      // A thread is stuck inside a fetch; joining it would hang the exit.
      // Every store change is one transaction, so ending here loses nothing.
      spdlog::warn("exiting without waiting for the running sync");
      spdlog::shutdown();
      std::_Exit(kExitOk);
    }
    StopRuntime();
    spdlog::info("stopped");
    return kExitOk;
  }

 private:
  static int Fatal(const std::string& message, int code = kExitRuntime) {
    PrintFatal(message);
    return code;
  }

  // The repositories that take forge webhooks, with their secrets.
  static Result<std::vector<ForgeHook>> ReadForgeHooks(const Config& config) {
    std::vector<ForgeHook> hooks;
    for (const auto& r : config.repositories) {
      if (r.webhook_type.empty()) continue;
      std::ifstream in(r.webhook_secret_file, std::ios::binary);
      std::string secret((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
      while (!secret.empty() && (secret.back() == '\n' || secret.back() == '\r')) secret.pop_back();
      if (!in.good() && !in.eof()) secret.clear();
      if (secret.empty()) {
        return Fail("repository " + r.name + ": webhook.secretFile " + r.webhook_secret_file +
                    " cannot be read or is empty");
      }
      hooks.push_back(ForgeHook{r.name, r.webhook_type,
                                r.webhook_forge_url.empty() ? r.url : r.webhook_forge_url, std::move(secret)});
    }
    return hooks;
  }

  // A repository's sync loop (its reconciler, and its write-back when on).
  Result<PollTarget> MakeTarget(const RepositorySettings& s, const Config& config) {
    auto reconciler = sync::Reconciler::Create(ToRepositoryConfig(s, config), *store_, *loader_);
    if (!reconciler) return Fail(s.name + ": " + reconciler.error().message);
    spdlog::info("repository {}: {} branch {} folder {} every {}, write-back {}", s.name, git::RedactUrl(s.url),
                 s.branch, s.sync_path, FormatDuration(s.poll_interval),
                 s.write_back ? "on (" + s.conflict_policy + ")" : std::string("off"));
    PollTarget target{s.name, s.poll_interval, std::move(*reconciler), nullptr};
    if (s.write_back) {
      target.writeback =
          std::make_unique<sync::WriteBack>(*target.reconciler, *store_, *loader_, ToWriteBackConfig(s));
    }
    return target;
  }

  // The forge API of a configured repository, by name; nullopt when it has none.
  std::optional<ForgeApiAccess> ForgeApiOf(const std::string& repository) {
    std::lock_guard lock(hooks_mu_);
    for (const ForgeApiEntry& e : forge_apis_) {
      if (e.name == repository && !e.access.project.empty()) return e.access;
    }
    return std::nullopt;
  }

  // The forge API a VCS Message's repoUrl (or repository name) names.
  Result<ForgeApiAccess> ForgeApiFor(const std::string& repo) {
    std::lock_guard lock(hooks_mu_);
    for (const ForgeApiEntry& e : forge_apis_) {
      if (e.name == repo || TrimmedUrl(e.url) == TrimmedUrl(repo) ||
          (!e.forge_url.empty() && TrimmedUrl(e.forge_url) == TrimmedUrl(repo))) {
        if (e.access.project.empty()) return Fail("repository " + e.name + ": cannot tell owner/name from its URL");
        return e.access;
      }
    }
    for (const auto& r : config_repositories_) {
      if (r == repo) return Fail("repository " + r + " has no forgeApi in the configuration");
    }
    return Fail("no configured repository with a forgeApi is " + (repo.empty() ? std::string("\"\"") : repo) +
                " (spec.repoUrl names it by its url, webhook.forgeUrl or name)");
  }

  void SetForgeHooks(std::vector<ForgeHook> hooks) {
    std::lock_guard lock(hooks_mu_);
    forge_hooks_ = std::move(hooks);
  }
  void SetForgeApis(const Config& config) {
    std::lock_guard lock(hooks_mu_);
    forge_apis_ = ForgeApisOf(config);
    config_repositories_.clear();
    for (const auto& r : config.repositories) config_repositories_.push_back(r.name);
  }
  std::vector<ForgeHook> ForgeHooks() {
    std::lock_guard lock(hooks_mu_);
    return forge_hooks_;
  }

  // SIGHUP: reads the configuration file again. A bad one is refused as a
  // whole (logged; the running configuration stays). Otherwise repositories
  // added, removed or changed take effect now (a changed one's sync loop
  // restarts), so do the log level, webhook secrets and API tokens; what a
  // running daemon cannot change (listen, stateDir, runtime) is logged and
  // waits for the next start.
  void Reload() {
    if (request_.quick) {
      spdlog::info("received SIGHUP: quick mode (--repo) has no configuration file to reload");
      return;
    }
    NotifySystemd("RELOADING=1\nSTATUS=reloading " + request_.config_path);
    spdlog::info("received SIGHUP: reloading the configuration from {}", request_.config_path);
    auto refused = [&](const std::string& why) {
      spdlog::error("configuration reload refused, the running configuration stays: {}", why);
      last_reload_error_ = why;
      NotifySystemd("READY=1\nSTATUS=reload refused (see the log); serving the previous configuration");
    };
    auto next = LoadConfigFile(request_.config_path, *loader_);
    if (!next) return refused("bad configuration:\n" + next.error().message);
    auto hooks = ReadForgeHooks(*next);
    if (!hooks) return refused(hooks.error().message);
    std::optional<TokenStore> tokens;
    if (!next->api_tokens_file.empty() && tokens_) {
      auto loaded = TokenStore::LoadFile(next->api_tokens_file);
      if (!loaded) return refused(loaded.error().message);
      tokens.emplace(std::move(*loaded));
    }
    // The sync loops of new and changed repositories, made before anything
    // changes: one that cannot be made refuses the whole reload.
    std::map<std::string, const RepositorySettings*> before, after;
    for (const auto& r : config_.repositories) before[r.name] = &r;
    for (const auto& r : next->repositories) after[r.name] = &r;
    std::vector<PollTarget> starting;
    for (const auto& [name, r] : after) {
      auto old = before.find(name);
      if (old != before.end() && *old->second == *r) continue;
      auto target = MakeTarget(*r, config_);
      if (!target) return refused(target.error().message);
      starting.push_back(std::move(*target));
    }
    ApplyRepositories(before, after, std::move(starting));
    SetForgeHooks(std::move(*hooks));
    SetForgeApis(*next);
    if (tokens) {
      spdlog::info("API tokens: {} from {}", tokens->size(), next->api_tokens_file);
      tokens_->ReplaceWith(std::move(*tokens));
    }
    const std::string level = request_.log_level.empty() ? next->log_level : request_.log_level;
    if (level != (request_.log_level.empty() ? config_.log_level : request_.log_level)) {
      spdlog::set_level(spdlog::level::from_str(level));
      spdlog::info("log level: {}", level);
    }
    for (const std::string& what : NeedsRestart(config_, *next)) {
      spdlog::warn("configuration reload: {} changed; it takes effect at the next start", what);
    }
    // What waits for a restart stays as it runs now.
    Config kept = *next;
    kept.state_dir = config_.state_dir;
    kept.listen = config_.listen;
    kept.unix_socket = config_.unix_socket;
    kept.tls_cert_file = config_.tls_cert_file;
    kept.tls_key_file = config_.tls_key_file;
    kept.port_range_first = config_.port_range_first;
    kept.port_range_last = config_.port_range_last;
    kept.preview_url = config_.preview_url;
    kept.log_format = config_.log_format;
    kept.postgres = config_.postgres;
    kept.api_tokens_file = tokens_ ? next->api_tokens_file : config_.api_tokens_file;
    config_ = std::move(kept);
    last_reload_error_.clear();
    spdlog::info("configuration reloaded: {} repositories", config_.repositories.size());
    NotifySystemd("READY=1\nSTATUS=" + StatusLine());
  }

  void ApplyRepositories(const std::map<std::string, const RepositorySettings*>& before,
                         const std::map<std::string, const RepositorySettings*>& after,
                         std::vector<PollTarget> starting) {
    for (const auto& [name, r] : before) {
      auto now = after.find(name);
      if (now != after.end() && *now->second == *r) continue;
      spdlog::info("repository {}: {} by the reload", name, now == after.end() ? "removed" : "changed");
      dispatcher_->Unpoll(name);
      if (!poller_->Remove(name, kSyncGrace)) {
        spdlog::warn("repository {}: its sync is still running; it ends by itself", name);
      }
      mirrors_->Remove(name);
      metrics_.ForgetRepository(name);
    }
    for (PollTarget& target : starting) {
      const RepositorySettings& r = *after.at(target.name);
      mirrors_->Set(r.name, ToRepositoryConfig(r, config_));
      if (auto s = poller_->Add(std::move(target)); !s) {
        spdlog::error("repository {}: {}", r.name, s.error().message);
        continue;
      }
      dispatcher_->Poll(r.name, std::chrono::duration_cast<std::chrono::milliseconds>(r.poll_interval));
    }
  }

  // Every tick of the signal loop: the watchdog's ping while the state
  // database answers, and STATUS= when it changed.
  void Tick(bool ping) {
    const bool healthy = store_->ListConflicts(true).has_value();
    if (!healthy) spdlog::error("the state database does not answer; the watchdog is not pinged");
    std::string message;
    const std::string status = StatusLine();
    if (status != last_status_) {
      message = "STATUS=" + status;
      last_status_ = status;
    }
    if (ping && healthy) message += std::string(message.empty() ? "" : "\n") + "WATCHDOG=1";
    if (!message.empty()) NotifySystemd(message);
  }

  // "serving 2 repositories, 1 run active, 3 previews live".
  std::string StatusLine() {
    const auto names = poller_->Names();
    const auto pending = poller_->Pending();
    std::string line = "serving " + std::to_string(names.size()) + " repositor" + (names.size() == 1 ? "y" : "ies");
    if (!pending.empty()) line += " (first sync of " + std::to_string(pending.size()) + " in progress)";
    runner::RunFilter active;
    active.statuses = {runner::RunStatus::kPending, runner::RunStatus::kQueued, runner::RunStatus::kRunning,
                       runner::RunStatus::kApprovalWait};
    active.limit = 1000;
    if (auto runs = engine_->List(active)) {
      line += ", " + std::to_string(runs->size()) + " run" + (runs->size() == 1 ? "" : "s") + " active";
    }
    if (auto live = preview_store_->List(false)) {
      line += ", " + std::to_string(live->size()) + " preview" + (live->size() == 1 ? "" : "s") + " live";
    }
    if (!last_reload_error_.empty()) line += "; the last reload was refused";
    return line;
  }

  // SIGTERM must end the process within systemd's TimeoutStopSec: past
  // GITOPSD_STOP_TIMEOUT (default 20s) the process exits at once. Every
  // state change is a transaction, so that loses nothing; the next start
  // resumes what was in progress.
  static void BoundShutdown() {
    std::chrono::milliseconds bound{20'000};
    if (const char* text = std::getenv("GITOPSD_STOP_TIMEOUT"); text && *text) {
      if (auto d = ParseDuration(text)) {
        bound = *d;
      } else {
        spdlog::warn("GITOPSD_STOP_TIMEOUT={}: not a duration (e.g. 20s); the shutdown is bounded by {}", text,
                     FormatDuration(bound));
      }
    }
    std::thread([bound] {
      std::this_thread::sleep_for(bound);
      spdlog::warn("shutdown is taking longer than {}; exiting now (the next start resumes what was in progress)",
                   FormatDuration(bound));
      spdlog::shutdown();
      std::_Exit(kExitOk);
    }).detach();
  }

  void NotePullRequest(const std::string& repository, const std::string& number, const std::string& source_branch,
                       bool draft, bool open, const std::string& why) {
    if (auto s = dispatcher_->PullRequestNews(repository, triggers::PullRequestInfo{number, source_branch, draft, open},
                                              why);
        !s) {
      spdlog::error("triggers: cannot record pull request #{} of {}: {}", number, repository, s.error().message);
    }
  }

  // A commit a webhook names must be one of the branch as fetched now.
  Status VerifyCommit(const std::string& repository, const std::string& branch, const std::string& sha) {
    auto name = mirrors_->Resolve(repository);
    if (!name) return Fail("the trigger's repository \"" + repository + "\" is not configured");
    auto head = mirrors_->FetchBranch(*name, branch);
    if (!head) return std::unexpected(head.error());
    auto mirror = mirrors_->Open(*name);
    if (!mirror) return std::unexpected(mirror.error());
    if (!(*mirror)->IsAncestor(sha, *head)) {
      return Fail("commit " + sha + " is not on branch " + (branch.empty() ? std::string("(configured)") : branch) +
                  " of " + *name + " (head " + *head + ")");
    }
    return Ok();
  }

  // The runtime rooms, the executor over them, the runner over the
  // executor, and the starter of runs. Each room keeps its own tables in
  // <stateDir>/state.db and recovers what a previous daemon left: services
  // still running are re-adopted, runs that were running resume.
  Status OpenRuntime(const Config& config) {
    const std::string& dir = config.state_dir;
    auto builds = runtime::ProcessBuildRunner::Open(dir);
    if (!builds) return Fail("builds: " + builds.error().message);
    builds_ = std::move(*builds);
    auto jobs = runtime::ProcessJobRunner::Open(dir);
    if (!jobs) return Fail("jobs: " + jobs.error().message);
    jobs_ = std::move(*jobs);
    runtime::ProcessServiceOptions service_options;
    service_options.port_min = config.port_range_first;
    service_options.port_max = config.port_range_last;
    auto services = runtime::ProcessServiceManager::Open(dir, service_options);
    if (!services) return Fail("services: " + services.error().message);
    services_ = std::move(*services);
    auto addons =
        runtime::LocalAddons::Open(runtime::LocalAddonsOptions{dir, ToPostgresServer(config)});
    if (!addons) return Fail("addons: " + addons.error().message);
    addons_ = std::move(*addons);
    auto resources = runtime::ResourceRegistry::Open(dir);
    if (!resources) return Fail("resources: " + resources.error().message);
    resources_ = std::move(*resources);

    std::map<std::string, sync::RepositoryConfig> repos;
    for (const auto& r : config.repositories) repos.emplace(r.name, ToRepositoryConfig(r, config));
    mirrors_ = std::make_unique<Mirrors>(std::move(repos), *store_);
    const Mirrors* mirrors = mirrors_.get();
    runner::RuntimeDeps deps;
    deps.builds = builds_.get();
    deps.jobs = jobs_.get();
    deps.services = services_.get();
    deps.addons = addons_.get();
    deps.resources = resources_.get();
    deps.open_mirror = [mirrors](const std::string& repo) { return mirrors->Open(repo); };
    deps.head_of = [mirrors](const std::string& repo, const std::string& branch) {
      return mirrors->HeadOf(repo, branch);
    };
    deps.forge_api = [this](const std::string& repo) { return ForgeApiFor(repo); };
    executor_ = runner::MakeRuntimeExecutor(std::move(deps));

    runner::EngineOptions engine_options;
    engine_options.state_db = (fs::path(dir) / "state.db").string();
    ApplyEnvironment(&engine_options);
    auto engine = runner::Engine::Open(engine_options, executor_.get());
    if (!engine) return Fail("release runner: " + engine.error().message);
    engine_ = std::move(*engine);
    runs_ = std::make_unique<FlowRuns>(
        *store_, *engine_,
        [mirrors](const std::string& repo, const std::string& branch) {
          return mirrors->HeadOf(repo, branch);
        },
        [mirrors] { return mirrors->Branches(); });
    auto trigger_store = triggers::TriggerStore::Open(dir);
    if (!trigger_store) return Fail("triggers: " + trigger_store.error().message);
    trigger_store_ = std::move(*trigger_store);
    git_view_ = std::make_unique<MirrorGit>(*mirrors_,
                                            [this](const std::string& repo) { metrics_.RecordTriggerFetch(repo); });
    auto preview_store = previews::PreviewStore::Open(dir);
    if (!preview_store) return Fail("previews: " + preview_store.error().message);
    preview_store_ = std::move(*preview_store);
    PreviewDeps preview_deps{.store = store_.get(),
                             .runs = runs_.get(),
                             .previews = preview_store_.get(),
                             .services = services_.get(),
                             .addons = addons_.get(),
                             .resources = resources_.get(),
                             .state_dir = dir,
                             .url_template = config.preview_url,
                             .pull_request_open = [this](const std::string& repository,
                                                         const std::string& number) -> Result<std::optional<bool>> {
                               auto api = ForgeApiOf(repository);
                               if (!api) return std::nullopt;
                               auto state = GetPullRequest(*api, number, std::chrono::seconds(10));
                               if (!state) return std::unexpected(state.error());
                               return state->open;
                             },
                             .pull_request_closed = [this](const std::string& repository, const std::string& number,
                                                           const std::string& why) {
                               NotePullRequest(repository, number, "", false, false, why);
                             },
                             .on_gone = [this](const std::string& repository) {
                               if (dispatcher_) dispatcher_->RequestLook(repository);
                             }};
    ApplyEnvironment(&preview_deps);
    previews_ = std::make_unique<PreviewManager>(std::move(preview_deps));
    CollectStateMetrics(metrics_, *engine_, *preview_store_);
    firing_ = std::make_unique<RunFiring>(*runs_, previews_.get());
    flows_with_triggers_ = std::make_unique<FlowsWithTriggers>(*store_);
    dispatcher_ = std::make_unique<triggers::Dispatcher>(
        *trigger_store_, *git_view_, *firing_, [this] { return (*flows_with_triggers_)(); },
        [mirrors](const std::string& name_or_url) { return mirrors->Resolve(name_or_url); },
        triggers::DispatcherOptions{
            .on_look = [this](const std::string& repo) { metrics_.RecordTriggerLook(repo); },
            .on_event = [this](bool fired) { metrics_.RecordTriggerEvent(fired ? "fired" : "skipped"); }});
    spdlog::info("runtime: processes on this host, service ports {}-{}, {}", config.port_range_first,
                 config.port_range_last, DescribeAddons(config));
    return Ok();
  }

  // The runner first (its threads stop without changing any run's state;
  // the next start resumes them), then what it drives. Services keep
  // running: the next daemon re-adopts them.
  void StopRuntime() {
    dispatcher_.reset();
    previews_.reset();
    runs_.reset();
    engine_.reset();
    executor_.reset();
    resources_.reset();
    addons_.reset();
    services_.reset();
    jobs_.reset();
    builds_.reset();
    spdlog::info("runner stopped; services keep running and are re-adopted at the next start");
  }

  // How often STATUS= is refreshed without a watchdog.
  static constexpr std::chrono::seconds kStatusTick{10};

  Config config_;  // in force (a reload replaces what it can)
  const model::Loader* loader_ = nullptr;
  ServeRequest request_;
  std::mutex hooks_mu_;
  std::vector<ForgeHook> forge_hooks_;
  std::vector<ForgeApiEntry> forge_apis_;  // under hooks_mu_ too
  std::vector<std::string> config_repositories_;
  std::string last_status_;
  std::string last_reload_error_;
  DaemonMetrics metrics_;
  std::unique_ptr<store::Store> store_;
  std::unique_ptr<TokenStore> tokens_;
  std::unique_ptr<Mirrors> mirrors_;
  std::unique_ptr<runtime::ProcessBuildRunner> builds_;
  std::unique_ptr<runtime::ProcessJobRunner> jobs_;
  std::unique_ptr<runtime::ProcessServiceManager> services_;
  std::unique_ptr<runtime::LocalAddons> addons_;
  std::unique_ptr<runtime::ResourceRegistry> resources_;
  std::unique_ptr<runner::NodeExecutor> executor_;
  std::unique_ptr<runner::Engine> engine_;
  std::unique_ptr<FlowRuns> runs_;
  std::unique_ptr<triggers::TriggerStore> trigger_store_;
  std::unique_ptr<previews::PreviewStore> preview_store_;
  std::unique_ptr<PreviewManager> previews_;
  std::unique_ptr<MirrorGit> git_view_;
  std::unique_ptr<RunFiring> firing_;
  std::unique_ptr<FlowsWithTriggers> flows_with_triggers_;
  std::unique_ptr<triggers::Dispatcher> dispatcher_;
  std::unique_ptr<AutorunListener> autorun_;
  std::unique_ptr<Poller> poller_;
  std::unique_ptr<ApiServer> api_;
};

}  // namespace

int RunServe(const ServeRequest& request) {
  // Before any thread starts: every thread inherits the mask, and only the
  // signal loop of this thread sees SIGTERM, SIGINT and SIGHUP.
  BlockDaemonSignals();
  ::signal(SIGPIPE, SIG_IGN);

  auto loader = model::Loader::Create();
  if (!loader) {
    PrintFatal("cannot compile the embedded schemas: " + loader.error().message);
    return kExitRuntime;
  }
  Result<Config> config = request.quick ? QuickConfig(*request.quick)
                                        : LoadConfigFile(request.config_path, *loader);
  if (!config) {
    PrintFatal("bad configuration:\n" + config.error().message);
    return kExitConfig;
  }
  // The command line wins over the configuration, which wins over the defaults.
  LogSettings log{config->log_level, config->log_format};
  if (!request.log_level.empty()) log.level = request.log_level;
  if (!request.log_format.empty()) log.format = request.log_format;
  if (auto s = SetUpLogging(log); !s) {
    PrintFatal(s.error().message);
    return kExitConfig;
  }
  spdlog::info("configuration: {} ({} repositories)", config->source, config->repositories.size());
  for (const auto& note : config->notes) spdlog::info("{}", note);
  Daemon daemon;
  return daemon.Run(*config, *loader, request);
}

}  // namespace gitopsd::daemon
