// Signatures, delivery ids and header lookup. Payload parsing lives in
// forge_payloads.cc, repository URL matching in forge_urls.cc.
#include "daemon/triggers/forge.h"

#include <Poco/HMACEngine.h>
#include <Poco/SHA2Engine.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <optional>

namespace gitopsd::triggers {
namespace {

// Poco 1.11's SHA2Engine lacks the BLOCK_SIZE and DIGEST_SIZE that
// HMACEngine<> reads (1.12 adds SHA2Engine256 for this); this supplies them.
class Sha256Engine : public Poco::SHA2Engine {
 public:
  enum { BLOCK_SIZE = 64, DIGEST_SIZE = 32 };
  Sha256Engine() : Poco::SHA2Engine(Poco::SHA2Engine::SHA_256) {}
};

using Digest = std::array<unsigned char, 32>;

Digest HmacSha256(std::string_view key, std::string_view data) {
  Poco::HMACEngine<Sha256Engine> hmac(key.data(), key.size());
  hmac.update(data.data(), static_cast<unsigned>(data.size()));
  const Poco::DigestEngine::Digest& d = hmac.digest();
  Digest out{};
  std::copy_n(d.begin(), std::min(d.size(), out.size()), out.begin());
  return out;
}

Digest Sha256(std::string_view data) {
  Poco::SHA2Engine sha(Poco::SHA2Engine::SHA_256);
  sha.update(data.data(), static_cast<unsigned>(data.size()));
  const Poco::DigestEngine::Digest& d = sha.digest();
  Digest out{};
  std::copy_n(d.begin(), std::min(d.size(), out.size()), out.begin());
  return out;
}

std::string_view AsText(const Digest& d) {
  return {reinterpret_cast<const char*>(d.data()), d.size()};
}

int HexNibble(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// 64 hex digits (either case) to 32 bytes; nullopt for anything else. The
// input is what the sender presented, so rejecting it early reveals nothing.
std::optional<Digest> ParseHexDigest(std::string_view hex) {
  if (hex.size() != 64) return std::nullopt;
  Digest out{};
  for (size_t i = 0; i < out.size(); ++i) {
    int hi = HexNibble(hex[2 * i]), lo = HexNibble(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) return std::nullopt;
    out[i] = static_cast<unsigned char>(hi << 4 | lo);
  }
  return out;
}

bool EqualsIgnoringCase(std::string_view a, std::string_view b) {
  return std::ranges::equal(a, b, [](char x, char y) {
    return std::tolower(static_cast<unsigned char>(x)) ==
           std::tolower(static_cast<unsigned char>(y));
  });
}

// A present, non-empty header value; Gitea sends its signature fields empty
// when the webhook has no secret, which is no signature at all.
const std::string* NonEmpty(const Headers& headers, std::string_view name) {
  const std::string* value = headers.Find(name);
  return value != nullptr && !value->empty() ? value : nullptr;
}

constexpr std::string_view kHubSignature = "X-Hub-Signature-256";
constexpr std::string_view kGiteaSignature = "X-Gitea-Signature";
constexpr std::string_view kGitLabToken = "X-Gitlab-Token";

Status CheckHexSignature(std::string_view header, std::string_view hex, std::string_view body,
                         std::string_view secret, std::string_view expected_form) {
  std::optional<Digest> presented = ParseHexDigest(hex);
  if (!presented) {
    return Fail("malformed " + std::string(header) + " header: expected " +
                std::string(expected_form));
  }
  if (!ConstantTimeEqual(AsText(*presented), AsText(HmacSha256(secret, body)))) {
    return Fail(std::string(header) +
                " does not match the body: the webhook's secret differs from the one "
                "gitopsd has, or the body was changed on the way");
  }
  return Ok();
}

Status CheckHubSignature(const std::string& value, std::string_view body, std::string_view secret) {
  constexpr std::string_view kPrefix = "sha256=";
  std::string_view hex = value;
  if (!hex.starts_with(kPrefix)) {
    return Fail("malformed " + std::string(kHubSignature) +
                " header: expected \"sha256=\" and 64 hex digits");
  }
  hex.remove_prefix(kPrefix.size());
  return CheckHexSignature(kHubSignature, hex, body, secret, "\"sha256=\" and 64 hex digits");
}

Status VerifyGitHub(const Headers& headers, std::string_view body, std::string_view secret) {
  const std::string* signature = NonEmpty(headers, kHubSignature);
  if (signature == nullptr) {
    return Fail("missing " + std::string(kHubSignature) +
                " header: set a secret on the GitHub webhook");
  }
  return CheckHubSignature(*signature, body, secret);
}

Status VerifyGitea(const Headers& headers, std::string_view body, std::string_view secret) {
  if (const std::string* signature = NonEmpty(headers, kGiteaSignature)) {
    return CheckHexSignature(kGiteaSignature, *signature, body, secret, "64 hex digits");
  }
  if (const std::string* signature = NonEmpty(headers, kHubSignature)) {
    return CheckHubSignature(*signature, body, secret);
  }
  return Fail("missing " + std::string(kGiteaSignature) + " and " + std::string(kHubSignature) +
              " headers: set a secret on the Gitea webhook (without one Gitea sends them empty)");
}

// Both sides are hashed first so that the comparison is 32 bytes long
// whatever the token's length: timing says nothing about the secret's size.
Status VerifyGitLab(const Headers& headers, std::string_view secret) {
  const std::string* token = headers.Find(kGitLabToken);
  if (token == nullptr || token->empty()) {
    return Fail("missing " + std::string(kGitLabToken) +
                " header: set a secret token on the GitLab webhook");
  }
  if (!ConstantTimeEqual(AsText(Sha256(*token)), AsText(Sha256(secret)))) {
    return Fail(std::string(kGitLabToken) + " does not match the secret gitopsd has");
  }
  return Ok();
}

}  // namespace

const char* ForgeName(Forge forge) {
  switch (forge) {
    case Forge::kGitHub: return "github";
    case Forge::kGitLab: return "gitlab";
    case Forge::kGitea: return "gitea";
  }
  return "?";
}

const char* ForgeTitle(Forge forge) {
  switch (forge) {
    case Forge::kGitHub: return "GitHub";
    case Forge::kGitLab: return "GitLab";
    case Forge::kGitea: return "Gitea";
  }
  return "?";
}

Result<Forge> ForgeFromName(std::string_view name) {
  for (Forge forge : {Forge::kGitHub, Forge::kGitLab, Forge::kGitea}) {
    if (name == ForgeName(forge)) return forge;
  }
  return Fail("unknown forge \"" + std::string(name) + "\": expected github, gitlab or gitea");
}

const char* EventHeaderName(Forge forge) {
  switch (forge) {
    case Forge::kGitHub: return "X-GitHub-Event";
    case Forge::kGitLab: return "X-Gitlab-Event";
    case Forge::kGitea: return "X-Gitea-Event";
  }
  return "?";
}

Headers::Headers(std::initializer_list<std::pair<std::string, std::string>> fields) {
  for (const auto& [name, value] : fields) Add(name, value);
}

void Headers::Add(std::string name, std::string value) {
  fields_.emplace_back(std::move(name), std::move(value));
}

const std::string* Headers::Find(std::string_view name) const {
  for (const auto& [field, value] : fields_) {
    if (EqualsIgnoringCase(field, name)) return &value;
  }
  return nullptr;
}

std::string HmacSha256Hex(std::string_view key, std::string_view data) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string hex;
  for (unsigned char b : HmacSha256(key, data)) {
    hex += kDigits[b >> 4];
    hex += kDigits[b & 0xF];
  }
  return hex;
}

bool ConstantTimeEqual(std::string_view a, std::string_view b) {
  const size_t n = std::max(a.size(), b.size());
  // volatile keeps the compiler from turning the loop into an early-exit memcmp.
  volatile unsigned char diff = a.size() == b.size() ? 0 : 1;
  for (size_t i = 0; i < n; ++i) {
    const unsigned char x = i < a.size() ? static_cast<unsigned char>(a[i]) : 0;
    const unsigned char y = i < b.size() ? static_cast<unsigned char>(b[i]) : 0;
    diff = diff | (x ^ y);
  }
  return diff == 0;
}

Status VerifyDelivery(Forge forge, const Headers& headers, std::string_view body,
                      std::string_view secret) {
  if (secret.empty()) {
    return Fail(std::string("no webhook secret is configured for ") + ForgeTitle(forge) +
                " deliveries; gitopsd refuses unsigned ones");
  }
  switch (forge) {
    case Forge::kGitHub: return VerifyGitHub(headers, body, secret);
    case Forge::kGitea: return VerifyGitea(headers, body, secret);
    case Forge::kGitLab: return VerifyGitLab(headers, secret);
  }
  return Fail("unknown forge");
}

std::string DeliveryId(Forge forge, const Headers& headers) {
  auto value = [&](std::string_view name) {
    const std::string* v = NonEmpty(headers, name);
    return v != nullptr ? *v : std::string();
  };
  switch (forge) {
    case Forge::kGitHub: return value("X-GitHub-Delivery");
    case Forge::kGitea: return value("X-Gitea-Delivery");
    case Forge::kGitLab: {
      std::string key = value("Idempotency-Key");
      return key.empty() ? value("X-Gitlab-Event-UUID") : key;
    }
  }
  return {};
}

Result<ForgeEvent> ParseDelivery(Forge forge, const Headers& headers, std::string_view body) {
  const std::string* event = NonEmpty(headers, EventHeaderName(forge));
  if (event == nullptr) {
    return Fail(std::string("missing ") + EventHeaderName(forge) + " header: is this a " +
                ForgeTitle(forge) + " webhook delivery?");
  }
  Result<ForgeEvent> parsed = ParseEvent(forge, *event, body);
  if (parsed) parsed->delivery_id = DeliveryId(forge, headers);
  return parsed;
}

const char* KindName(ForgeEvent::Kind kind) {
  switch (kind) {
    case ForgeEvent::Kind::kPush: return "push";
    case ForgeEvent::Kind::kPullRequest: return "pull request";
    case ForgeEvent::Kind::kPing: return "ping";
    case ForgeEvent::Kind::kIgnored: return "ignored";
  }
  return "?";
}

const char* PrActionName(ForgeEvent::PrAction action) {
  using A = ForgeEvent::PrAction;
  switch (action) {
    case A::kNone: return "none";
    case A::kOpened: return "opened";
    case A::kReopened: return "reopened";
    case A::kUpdated: return "updated";
    case A::kReadyForReview: return "ready for review";
    case A::kClosed: return "closed";
    case A::kMerged: return "merged";
    case A::kOther: return "other";
  }
  return "?";
}

}  // namespace gitopsd::triggers
