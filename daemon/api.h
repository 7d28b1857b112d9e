// The HTTP API of DESIGN §8 (the read side and on-demand sync): a Poco
// HTTPServer bound to the configured address, with a bounded thread pool,
// a request body limit and read timeouts. Poco stays inside api.cc.
//
// Reads come from the store; a sync request goes to the Poller and waits
// for its report. Errors are JSON {"error": {"code", "message"}} with the
// matching status.
#pragma once
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "sync/status.h"

namespace gitopsd::store {
class Store;
}

namespace gitopsd::daemon {

class Poller;
class DaemonMetrics;
class TokenStore;

struct ApiOptions {
  std::string listen = "127.0.0.1:7780";
  int max_threads = 8;
  int max_queued = 64;
  size_t max_body_bytes = 1 << 20;
  std::chrono::seconds read_timeout{10};
  // How long POST .../sync waits for the repository's sync to finish.
  std::chrono::seconds sync_timeout{120};
};

struct ApiDeps {
  store::Store* store = nullptr;
  Poller* poller = nullptr;
  DaemonMetrics* metrics = nullptr;
  const TokenStore* tokens = nullptr;  // null: no apiTokensFile, writes are refused
};

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
