// The HTTP API of DESIGN §8: a Poco HTTP server bound to the configured
// address, with a bounded thread pool, a request body limit and read
// timeouts. Poco stays inside api.cc.
//
// Reads come from the store; a sync request goes to the Poller and waits
// for its report; edits go to the repository's WriteBack (api_write.h);
// runs go to the release runner (api_runs.h) and the runtime's resources
// are listed by api_resources.h.
// Errors are JSON {"error": {"code", "message"}} with the matching status.
//
// Slow clients: the headers of a request must arrive within read_timeout,
// and then its body within read_timeout again, whatever pace the client
// trickles them at; a connection that misses the deadline is closed and its
// request never reaches a route.
#pragma once
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "daemon/api_hooks.h"
#include "sync/status.h"

namespace gitopsd::store {
class Store;
}

namespace gitopsd::runtime {
class BuildRunner;
class JobRunner;
class ServiceManager;
class Addons;
}  // namespace gitopsd::runtime

namespace gitopsd::previews {
class PreviewStore;
}

namespace gitopsd::daemon {

class PreviewManager;

class Poller;
class DaemonMetrics;
class TokenStore;
class FlowRuns;

struct ApiOptions {
  std::string listen = "127.0.0.1:7780";
  // HTTPS on `listen` (TLS 1.2 or later) with this PEM certificate chain and
  // key; both empty = plain HTTP.
  std::string tls_cert_file;
  std::string tls_key_file;
  // A second listener on this unix socket path ("" = none). The socket is
  // created with mode 0660 whatever the umask, replaces a stale socket left
  // by a crash (never a live one, nor a file that is not a socket), and is
  // removed by Stop(). Requests on it are trusted as write role without a
  // token: the file's owner and group are who may write.
  std::string unix_socket;
  int max_threads = 32;  // requests waiting for a push hold a thread
  int max_queued = 1024;
  size_t max_body_bytes = 1 << 20;
  std::chrono::milliseconds read_timeout{10'000};
  // How long POST .../sync waits for the repository's sync to finish.
  std::chrono::seconds sync_timeout{120};
  // How long an accepted edit waits for its push before answering 202.
  std::chrono::milliseconds writeback_wait{3'000};
  // How often GET /api/v1/runs/{id}/logs?follow=true looks for new output.
  std::chrono::milliseconds follow_interval{200};
  // A follow that has sent nothing for this long says which nodes are still
  // running and for how long.
  std::chrono::milliseconds follow_progress{10'000};
};

struct ApiDeps {
  store::Store* store = nullptr;
  Poller* poller = nullptr;
  DaemonMetrics* metrics = nullptr;
  const TokenStore* tokens = nullptr;  // null: no apiTokensFile, writes are refused
  // The release runner and the runtime (api_runs.h, api_resources.h); null
  // when not running, and their routes answer 503.
  FlowRuns* runs = nullptr;
  runtime::BuildRunner* builds = nullptr;
  runtime::JobRunner* jobs = nullptr;
  runtime::ServiceManager* services = nullptr;
  runtime::Addons* addons = nullptr;
  HookDeps hooks{};  // webhooks and their tokens (api_hooks.h)
  PreviewManager* previews = nullptr;            // GET/DELETE /api/v1/previews
  previews::PreviewStore* preview_store = nullptr;
};

// Loads options.tls_cert_file and tls_key_file as the listener would (a
// no-op without TLS); the message names the file and what is wrong with it.
// gitopsd serve calls it first, so that a bad certificate is a
// configuration error.
Status CheckTlsFiles(const ApiOptions& options);

class ApiServer {
 public:
  // Binds and starts serving; fails with a message naming the address.
  static Result<std::unique_ptr<ApiServer>> Start(const ApiOptions& options, const ApiDeps& deps);
  ~ApiServer();  // Stop()
  ApiServer(const ApiServer&) = delete;
  ApiServer& operator=(const ApiServer&) = delete;

  // Stops accepting and waits for requests in progress.
  void Stop();
  uint16_t port() const;

  struct Impl;

 private:
  explicit ApiServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace gitopsd::daemon
