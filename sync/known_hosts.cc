#include "sync/known_hosts.h"

#include <Poco/HMACEngine.h>
#include <Poco/SHA1Engine.h>
#include <Poco/SHA2Engine.h>

#include <algorithm>
#include <cctype>
#include <fstream>
#include <sstream>

namespace gitopsd::git {
namespace {

constexpr std::string_view kBase64Alphabet =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

std::string Lower(std::string_view s) {
  std::string out(s);
  std::ranges::transform(out, out.begin(), [](unsigned char c) { return std::tolower(c); });
  return out;
}

std::vector<std::string_view> SplitFields(std::string_view line) {
  std::vector<std::string_view> fields;
  size_t i = 0;
  while (i < line.size()) {
    while (i < line.size() && (line[i] == ' ' || line[i] == '\t')) ++i;
    size_t start = i;
    while (i < line.size() && line[i] != ' ' && line[i] != '\t') ++i;
    if (i > start) fields.push_back(line.substr(start, i - start));
  }
  return fields;
}

std::vector<std::string> SplitCommas(std::string_view list) {
  std::vector<std::string> parts;
  size_t start = 0;
  while (start <= list.size()) {
    size_t comma = list.find(',', start);
    if (comma == std::string_view::npos) comma = list.size();
    if (comma > start) parts.emplace_back(list.substr(start, comma - start));
    start = comma + 1;
  }
  return parts;
}

// OpenSSH-style glob: '*' any run of characters, '?' exactly one.
bool GlobMatch(std::string_view text, std::string_view pattern) {
  size_t t = 0, p = 0, star = std::string_view::npos, mark = 0;
  while (t < text.size()) {
    if (p < pattern.size() && (pattern[p] == '?' || pattern[p] == text[t])) {
      ++t;
      ++p;
    } else if (p < pattern.size() && pattern[p] == '*') {
      star = p++;
      mark = t;
    } else if (star != std::string_view::npos) {
      p = star + 1;
      t = ++mark;
    } else {
      return false;
    }
  }
  while (p < pattern.size() && pattern[p] == '*') ++p;
  return p == pattern.size();
}

std::string HmacSha1(const std::string& key, const std::string& data) {
  Poco::HMACEngine<Poco::SHA1Engine> hmac(key);
  hmac.update(data);
  const Poco::DigestEngine::Digest& digest = hmac.digest();
  return std::string(digest.begin(), digest.end());
}

// Parses "|1|salt|hash" into raw salt and hash; false if malformed.
bool ParseHashedName(std::string_view field, std::string* salt, std::string* hash) {
  constexpr std::string_view kMagic = "|1|";
  if (!field.starts_with(kMagic)) return false;
  std::string_view rest = field.substr(kMagic.size());
  size_t bar = rest.find('|');
  if (bar == std::string_view::npos) return false;
  return Base64Decode(rest.substr(0, bar), salt) && Base64Decode(rest.substr(bar + 1), hash) &&
         !salt->empty() && hash->size() == 20;
}

}  // namespace

bool Base64Decode(std::string_view text, std::string* out) {
  out->clear();
  uint32_t buffer = 0;
  int bits = 0;
  size_t padding = 0;
  for (char c : text) {
    if (c == '=') {
      ++padding;
      continue;
    }
    if (padding > 0) return false;  // data after padding
    size_t value = kBase64Alphabet.find(c);
    if (value == std::string_view::npos) return false;
    buffer = (buffer << 6) | static_cast<uint32_t>(value);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out->push_back(static_cast<char>((buffer >> bits) & 0xFF));
    }
  }
  return padding <= 2 && bits < 6;
}

std::string Base64Encode(std::string_view bytes, bool padding) {
  std::string out;
  uint32_t buffer = 0;
  int bits = 0;
  for (unsigned char c : bytes) {
    buffer = (buffer << 8) | c;
    bits += 8;
    while (bits >= 6) {
      bits -= 6;
      out.push_back(kBase64Alphabet[(buffer >> bits) & 0x3F]);
    }
  }
  if (bits > 0) out.push_back(kBase64Alphabet[(buffer << (6 - bits)) & 0x3F]);
  if (padding) {
    while (out.size() % 4 != 0) out.push_back('=');
  }
  return out;
}

std::string KnownHostsName(std::string_view host, int port) {
  std::string name = Lower(host);
  if (port == 22 || port <= 0) return name;
  return "[" + name + "]:" + std::to_string(port);
}

std::string SshFingerprint(std::string_view key_blob) {
  Poco::SHA2Engine sha256(Poco::SHA2Engine::SHA_256);
  sha256.update(key_blob.data(), static_cast<unsigned>(key_blob.size()));
  const Poco::DigestEngine::Digest& digest = sha256.digest();
  std::string raw(digest.begin(), digest.end());
  return "SHA256:" + Base64Encode(raw, /*padding=*/false);
}

std::string KeyTypeOfBlob(std::string_view key_blob) {
  if (key_blob.size() < 4) return "";
  uint32_t len = (static_cast<uint32_t>(static_cast<unsigned char>(key_blob[0])) << 24) |
                 (static_cast<uint32_t>(static_cast<unsigned char>(key_blob[1])) << 16) |
                 (static_cast<uint32_t>(static_cast<unsigned char>(key_blob[2])) << 8) |
                 static_cast<uint32_t>(static_cast<unsigned char>(key_blob[3]));
  if (len == 0 || len > key_blob.size() - 4) return "";
  return std::string(key_blob.substr(4, len));
}

Result<KnownHosts> KnownHosts::Load(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Fail("cannot read known_hosts file " + path);
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) return Fail("cannot read known_hosts file " + path);
  return Parse(text.str());
}

KnownHosts KnownHosts::Parse(std::string_view text) {
  KnownHosts hosts;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t eol = text.find('\n', pos);
    if (eol == std::string_view::npos) eol = text.size();
    std::string_view line = text.substr(pos, eol - pos);
    pos = eol + 1;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);

    std::vector<std::string_view> fields = SplitFields(line);
    if (fields.empty() || fields[0].starts_with('#')) continue;
    Entry entry;
    if (fields[0].starts_with('@')) {
      if (fields[0] != "@revoked") continue;  // @cert-authority: not supported
      entry.marker = Marker::kRevoked;
      fields.erase(fields.begin());
    }
    if (fields.size() < 3) continue;
    if (fields[0].starts_with('|')) {
      if (!ParseHashedName(fields[0], &entry.hashed_salt, &entry.hashed_name)) continue;
    } else {
      entry.patterns = SplitCommas(Lower(fields[0]));
      if (entry.patterns.empty()) continue;
    }
    entry.key_type = std::string(fields[1]);
    if (!Base64Decode(fields[2], &entry.key_blob) || entry.key_blob.empty()) continue;
    hosts.entries_.push_back(std::move(entry));
  }
  return hosts;
}

bool KnownHosts::HostMatches(const Entry& entry, const std::string& name) const {
  if (!entry.hashed_salt.empty()) return HmacSha1(entry.hashed_salt, name) == entry.hashed_name;
  bool matched = false;
  for (const std::string& pattern : entry.patterns) {
    bool negated = pattern.starts_with('!');
    std::string_view glob = negated ? std::string_view(pattern).substr(1) : pattern;
    if (!GlobMatch(name, glob)) continue;
    if (negated) return false;  // a negated match rules the line out entirely
    matched = true;
  }
  return matched;
}

HostKeyVerdict KnownHosts::Check(std::string_view host, int port, std::string_view key_type,
                                 std::string_view key_blob) const {
  const std::string name = KnownHostsName(host, port);
  bool matched = false;
  bool type_known = false;
  for (const Entry& entry : entries_) {
    if (!HostMatches(entry, name)) continue;
    bool same_key = entry.key_type == key_type && entry.key_blob == key_blob;
    if (entry.marker == Marker::kRevoked) {
      if (same_key) return HostKeyVerdict::kRevoked;
      continue;
    }
    if (same_key) matched = true;
    if (entry.key_type == key_type) type_known = true;
  }
  if (matched) return HostKeyVerdict::kMatch;
  return type_known ? HostKeyVerdict::kMismatch : HostKeyVerdict::kUnknownHost;
}

std::vector<std::string> KnownHosts::KeyTypesFor(std::string_view host, int port) const {
  const std::string name = KnownHostsName(host, port);
  std::vector<std::string> types;
  for (const Entry& entry : entries_) {
    if (entry.marker != Marker::kNone || !HostMatches(entry, name)) continue;
    if (std::ranges::find(types, entry.key_type) == types.end()) types.push_back(entry.key_type);
  }
  return types;
}

}  // namespace gitopsd::git
