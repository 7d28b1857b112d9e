#include "daemon/tokens.h"

#include <Poco/SHA2Engine.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "sync/json.h"

namespace gitopsd::daemon {

Result<std::string> NewRandomToken() {
  std::ifstream random("/dev/urandom", std::ios::binary);
  uint8_t bytes[32];
  if (!random.read(reinterpret_cast<char*>(bytes), sizeof bytes)) return Fail("cannot read /dev/urandom");
  return ToHex(bytes);
}

const char* RoleName(Role role) { return role == Role::kWrite ? "write" : "read"; }

Sha256 HashToken(std::string_view token) {
  Poco::SHA2Engine engine(Poco::SHA2Engine::SHA_256);
  engine.update(token.data(), static_cast<unsigned>(token.size()));
  const Poco::DigestEngine::Digest& d = engine.digest();
  Sha256 out{};
  for (size_t i = 0; i < out.size() && i < d.size(); ++i) out[i] = d[i];
  return out;
}

std::string ToHex(std::span<const uint8_t> bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (uint8_t b : bytes) {
    out += kDigits[b >> 4];
    out += kDigits[b & 0xF];
  }
  return out;
}

bool ConstantTimeEqual(std::span<const uint8_t> a, std::span<const uint8_t> b) {
  if (a.size() != b.size()) return false;
  // volatile keeps the compiler from turning the loop into an early-exit memcmp.
  volatile uint8_t diff = 0;
  for (size_t i = 0; i < a.size(); ++i) diff = diff | (a[i] ^ b[i]);
  return diff == 0;
}

namespace {

std::optional<Sha256> ParseHexDigest(std::string_view hex) {
  if (hex.size() != 64) return std::nullopt;
  Sha256 out{};
  auto nibble = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  for (size_t i = 0; i < 32; ++i) {
    int hi = nibble(hex[2 * i]), lo = nibble(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) return std::nullopt;
    out[i] = static_cast<uint8_t>(hi << 4 | lo);
  }
  return out;
}

}  // namespace

Result<TokenStore> TokenStore::LoadFile(const std::string& path) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) {
    return Fail(path + ": cannot read the API tokens file (apiTokensFile): no such file");
  }
  std::ifstream in(path, std::ios::binary);
  std::stringstream buffer;
  buffer << in.rdbuf();
  if (!in) return Fail(path + ": cannot read the API tokens file (apiTokensFile)");
  return LoadText(path, buffer.str());
}

Result<TokenStore> TokenStore::LoadText(const std::string& path, std::string_view text) {
  auto at = [&](uint32_t offset) {
    json::LineCol lc = json::LocateOffset(text, offset);
    return path + ":" + std::to_string(lc.line) + ":" + std::to_string(lc.col) + ": ";
  };
  auto parsed = json::Parse(text);
  if (!parsed) return Fail(at(static_cast<uint32_t>(parsed.error().offset)) + parsed.error().message);
  const json::Value& root = *parsed;
  if (!root.is_array()) {
    return Fail(at(root.offset()) +
                "the tokens file must be a JSON array of {\"name\", \"role\", \"sha256\"}");
  }
  TokenStore store;
  store.path_ = path;
  for (const json::Value& item : root.items()) {
    if (!item.is_object()) return Fail(at(item.offset()) + "each token must be an object");
    for (const auto& [key, value] : item.members()) {
      if (key != "name" && key != "role" && key != "sha256") {
        return Fail(at(value.key_offset()) + "unknown key \"" + key +
                    "\" (allowed: name, role, sha256)");
      }
    }
    const json::Value* name = item.Find("name");
    const json::Value* role = item.Find("role");
    const json::Value* sha = item.Find("sha256");
    if (!name || !name->is_string() || name->as_string().empty()) {
      return Fail(at(item.offset()) + "a token needs a \"name\" string");
    }
    Entry e;
    e.principal.name = name->as_string();
    if (!role || !role->is_string() ||
        (role->as_string() != "read" && role->as_string() != "write")) {
      return Fail(at(role ? role->offset() : item.offset()) + "token \"" + e.principal.name +
                  "\": \"role\" must be \"read\" or \"write\"");
    }
    e.principal.role = role->as_string() == "write" ? Role::kWrite : Role::kRead;
    std::optional<Sha256> digest;
    if (sha && sha->is_string()) digest = ParseHexDigest(sha->as_string());
    if (!digest) {
      return Fail(at(sha ? sha->offset() : item.offset()) + "token \"" + e.principal.name +
                  "\": \"sha256\" must be the 64 hex digits of the token's SHA-256 "
                  "(e.g. printf %s TOKEN | sha256sum)");
    }
    e.digest = *digest;
    for (const Entry& earlier : store.entries_) {
      if (earlier.digest == e.digest) {
        return Fail(at(sha->offset()) + "tokens \"" + earlier.principal.name + "\" and \"" +
                    e.principal.name + "\" have the same hash; give each its own token");
      }
    }
    store.entries_.push_back(std::move(e));
  }
  return store;
}

std::optional<Principal> TokenStore::Authenticate(std::string_view token) const {
  if (token.empty()) return std::nullopt;
  const Sha256 digest = HashToken(token);
  // Every entry is compared; the match is picked without branching on the
  // comparison result.
  size_t found = 0;  // index + 1 of the matching entry, 0 for none
  std::lock_guard lock(*mu_);
  for (size_t i = 0; i < entries_.size(); ++i) {
    size_t equal = ConstantTimeEqual(digest, entries_[i].digest) ? 1 : 0;
    found |= (i + 1) & (0 - equal);
  }
  if (found == 0) return std::nullopt;
  return entries_[found - 1].principal;
}

size_t TokenStore::size() const {
  std::lock_guard lock(*mu_);
  return entries_.size();
}

void TokenStore::ReplaceWith(TokenStore other) {
  std::lock_guard lock(*mu_);
  entries_ = std::move(other.entries_);
  path_ = std::move(other.path_);
}

}  // namespace gitopsd::daemon
