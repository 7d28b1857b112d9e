// The TLS set-up of gitopsd's outgoing HTTPS (gitopsctl to the daemon, the
// daemon's Message nodes to forges and webhooks): TLS 1.2 or later, the
// peer's chain checked against a CA file or the system's CAs, and its name
// (or IP address) checked by OpenSSL during the handshake, by the rules
// browsers use. Poco's own name check stays off: it skips loopback names and
// matches a certificate's names by resolving them.
#pragma once
#include <Poco/Net/Context.h>

#include <string>

#include "sync/status.h"

namespace gitopsd::daemon {

struct TlsClientOptions {
  std::string ca_file;    // "" = the system's CAs
  bool insecure = false;  // no check of chain or name at all (an explicit choice)
};

// A client context for connections to `host`.
Result<Poco::Net::Context::Ptr> ClientTlsContext(const TlsClientOptions& options, const std::string& host);

}  // namespace gitopsd::daemon
