// OpenSSH known_hosts: parse the file and decide whether a server's host key
// is the one the operator pinned. libgit2 1.5 does not read known_hosts, so
// the Git room pins SSH host keys through this.
//
// What callers can rely on:
//  - Lines are read as OpenSSH does: plain host patterns (comma lists, `*`
//    and `?` wildcards, `!negation`), `[host]:port` for ports other than 22,
//    and hashed `|1|salt|hmac-sha1` names (`ssh-keygen -H`). Comments, blank
//    and malformed lines are skipped. `@cert-authority` lines are ignored
//    (certificates are not supported); a key named by a matching `@revoked`
//    line is refused even when another line accepts it.
//  - Keys are compared as raw bytes (the base64-decoded key blob), never by
//    a fingerprint alone.
//  - Nothing here throws; KnownHosts is an immutable value once loaded and
//    safe to share between threads for reading.
#pragma once
#include <string>
#include <string_view>
#include <vector>

#include "sync/status.h"

namespace gitopsd::git {

enum class HostKeyVerdict {
  kMatch,        // a line for this host carries exactly this key
  kUnknownHost,  // no line for this host carries a key of this type
  kMismatch,     // the host is known with a different key of this type
  kRevoked,      // a matching @revoked line names this key
};

class KnownHosts {
 public:
  // Reads an OpenSSH known_hosts file. Fails if it is missing or unreadable.
  static Result<KnownHosts> Load(const std::string& path);
  // Parses known_hosts text (for tests and in-memory configuration).
  static KnownHosts Parse(std::string_view text);

  // Checks the key a server presented. `key_type` is the OpenSSH name
  // ("ssh-ed25519", "ssh-rsa", "ecdsa-sha2-nistp256", ...); `key_blob` is the
  // raw public key in SSH wire format (what the base64 field decodes to).
  HostKeyVerdict Check(std::string_view host, int port, std::string_view key_type,
                       std::string_view key_blob) const;

  // The key types known for a host (e.g. to say what was expected).
  std::vector<std::string> KeyTypesFor(std::string_view host, int port) const;

  size_t size() const { return entries_.size(); }

 private:
  enum class Marker { kNone, kRevoked };
  struct Entry {
    Marker marker = Marker::kNone;
    std::vector<std::string> patterns;  // plain patterns, may start with '!'
    std::string hashed_salt;            // set for |1| entries (raw bytes)
    std::string hashed_name;            // HMAC-SHA1 of the host name (raw bytes)
    std::string key_type;
    std::string key_blob;  // raw bytes
  };
  bool HostMatches(const Entry& entry, const std::string& name) const;

  std::vector<Entry> entries_;
};

// The name known_hosts uses for a host: "host" on port 22, else "[host]:port".
std::string KnownHostsName(std::string_view host, int port);

// The key's fingerprint as `ssh-keygen -l` and ssh print it: "SHA256:<base64,
// no padding>" over the raw key blob.
std::string SshFingerprint(std::string_view key_blob);

// The key type named inside an SSH wire-format key blob ("" if malformed).
std::string KeyTypeOfBlob(std::string_view key_blob);

// Base64 helpers shared with the Git room. Decode returns false on bad input.
bool Base64Decode(std::string_view text, std::string* out);
std::string Base64Encode(std::string_view bytes, bool padding = true);

}  // namespace gitopsd::git
