// API tokens: who may call the HTTP API, and with which role. The tokens
// file (DESIGN §7 "apiTokensFile") holds only SHA-256 hashes:
//   [{"name": "ci", "role": "read" | "write", "sha256": "<64 hex>"}]
// A presented bearer token is hashed and compared against every entry in
// constant time (no early exit), so response timing reveals neither which
// entry nor how many bytes matched.
#pragma once
#include <array>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "sync/status.h"

namespace gitopsd::daemon {

enum class Role { kRead, kWrite };
const char* RoleName(Role role);

struct Principal {
  std::string name;  // the token's name from the file, for logs
  Role role = Role::kRead;
};

using Sha256 = std::array<uint8_t, 32>;

Sha256 HashToken(std::string_view token);
std::string ToHex(std::span<const uint8_t> bytes);

// A new secret token: 32 random bytes from /dev/urandom as 64 hex characters.
Result<std::string> NewRandomToken();

// Compares every byte whatever the differences; sizes must be equal to match.
bool ConstantTimeEqual(std::span<const uint8_t> a, std::span<const uint8_t> b);

class TokenStore {
 public:
  // Reads and checks the tokens file; errors name the file, line and column.
  static Result<TokenStore> LoadFile(const std::string& path);
  static Result<TokenStore> LoadText(const std::string& path, std::string_view text);

  // The principal the bearer token belongs to, or nullopt. Always compares
  // against every entry.
  std::optional<Principal> Authenticate(std::string_view token) const;

  size_t size() const;
  const std::string& path() const { return path_; }

  // Takes the tokens of `other` (a configuration reload re-read the file);
  // Authenticate calls on other threads see the old set or the new one.
  void ReplaceWith(TokenStore other);

 private:
  struct Entry {
    Principal principal;
    Sha256 digest;
  };
  std::string path_;
  std::unique_ptr<std::mutex> mu_ = std::make_unique<std::mutex>();  // guards entries_
  std::vector<Entry> entries_;
};

}  // namespace gitopsd::daemon
