// URI references (RFC 3986) and JSON pointers (RFC 6901) for the schema
// validator: how "$id" and "$ref" are resolved and how pointers are read.
#include "sync/schema_internal.h"

#include <algorithm>
#include <cctype>

namespace gitopsd::schema::internal {
namespace {

struct UriRef {
  std::optional<std::string> scheme, authority, query, fragment;
  std::string path;
};

bool IsScheme(std::string_view s) {
  if (s.empty() || !std::isalpha(static_cast<unsigned char>(s[0]))) return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '+' || c == '-' || c == '.';
  });
}

UriRef ParseUriRef(std::string_view s) {
  UriRef r;
  if (size_t hash = s.find('#'); hash != s.npos) {
    r.fragment = std::string(s.substr(hash + 1));
    s = s.substr(0, hash);
  }
  if (size_t q = s.find('?'); q != s.npos) {
    r.query = std::string(s.substr(q + 1));
    s = s.substr(0, q);
  }
  if (size_t colon = s.find(':'); colon != s.npos && IsScheme(s.substr(0, colon))) {
    r.scheme = std::string(s.substr(0, colon));
    s = s.substr(colon + 1);
  }
  if (s.starts_with("//")) {
    size_t end = s.find('/', 2);
    r.authority = std::string(s.substr(2, end == s.npos ? s.npos : end - 2));
    s = end == s.npos ? std::string_view() : s.substr(end);
  }
  r.path = std::string(s);
  return r;
}

std::string RemoveDotSegments(std::string_view in) {
  std::string out;
  auto drop_last_segment = [&out] {
    size_t slash = out.rfind('/');
    out.erase(slash == std::string::npos ? 0 : slash);
  };
  while (!in.empty()) {
    if (in.starts_with("../")) in.remove_prefix(3);
    else if (in.starts_with("./")) in.remove_prefix(2);
    else if (in.starts_with("/./")) in.remove_prefix(2);
    else if (in == "/.") in = "/";
    else if (in.starts_with("/../")) { in.remove_prefix(3); drop_last_segment(); }
    else if (in == "/..") { in = "/"; drop_last_segment(); }
    else if (in == "." || in == "..") in = {};
    else {
      size_t end = in.find('/', 1);
      if (end == in.npos) end = in.size();
      out.append(in.substr(0, end));
      in.remove_prefix(end);
    }
  }
  return out;
}

std::string ComposeUri(const UriRef& r) {
  std::string out;
  if (r.scheme) out += *r.scheme + ":";
  if (r.authority) out += "//" + *r.authority;
  out += r.path;
  if (r.query) out += "?" + *r.query;
  if (r.fragment) out += "#" + *r.fragment;
  return out;
}

int HexDigit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

std::string ResolveUri(std::string_view base_text, std::string_view ref_text) {
  UriRef ref = ParseUriRef(ref_text);
  UriRef base = ParseUriRef(base_text);
  UriRef t;
  if (ref.scheme || ref.authority) {
    t.scheme = ref.scheme ? ref.scheme : base.scheme;
    t.authority = ref.authority;
    t.path = RemoveDotSegments(ref.path);
    t.query = ref.query;
  } else {
    t.scheme = base.scheme;
    t.authority = base.authority;
    if (ref.path.empty()) {
      t.path = base.path;
      t.query = ref.query ? ref.query : base.query;
    } else {
      if (ref.path.front() == '/') {
        t.path = RemoveDotSegments(ref.path);
      } else if (base.authority && base.path.empty()) {
        t.path = RemoveDotSegments("/" + ref.path);
      } else {
        size_t slash = base.path.rfind('/');
        std::string merged = slash == std::string::npos ? "" : base.path.substr(0, slash + 1);
        t.path = RemoveDotSegments(merged + ref.path);
      }
      t.query = ref.query;
    }
  }
  t.fragment = ref.fragment;
  return ComposeUri(t);
}

// Splits "a#b" into ("a", "b"); a missing fragment is an empty one.
std::pair<std::string, std::string> SplitFragment(std::string_view uri) {
  size_t hash = uri.find('#');
  if (hash == uri.npos) return {std::string(uri), ""};
  return {std::string(uri.substr(0, hash)), std::string(uri.substr(hash + 1))};
}

std::string PercentDecode(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size() && HexDigit(s[i + 1]) >= 0 && HexDigit(s[i + 2]) >= 0) {
      out.push_back(static_cast<char>(HexDigit(s[i + 1]) * 16 + HexDigit(s[i + 2])));
      i += 2;
    } else {
      out.push_back(s[i]);
    }
  }
  return out;
}

// ---------------------------------------------------------------------------
// JSON pointers (RFC 6901).

std::string EscapeToken(std::string_view token) {
  std::string out;
  for (char c : token) {
    if (c == '~') out += "~0";
    else if (c == '/') out += "~1";
    else out.push_back(c);
  }
  return out;
}

Result<std::vector<std::string>> SplitPointer(std::string_view pointer) {
  std::vector<std::string> tokens;
  if (pointer.empty()) return tokens;
  if (pointer.front() != '/') {
    return Fail("JSON pointer " + Quote(pointer) + " must start with \"/\"");
  }
  pointer.remove_prefix(1);
  while (true) {
    size_t end = pointer.find('/');
    std::string_view raw = pointer.substr(0, end);
    std::string token;
    for (size_t i = 0; i < raw.size(); ++i) {
      if (raw[i] != '~') { token.push_back(raw[i]); continue; }
      if (i + 1 < raw.size() && (raw[i + 1] == '0' || raw[i + 1] == '1')) {
        token.push_back(raw[i + 1] == '0' ? '~' : '/');
        ++i;
      } else {
        return Fail("JSON pointer has a \"~\" not followed by 0 or 1");
      }
    }
    tokens.push_back(std::move(token));
    if (end == pointer.npos) break;
    pointer.remove_prefix(end + 1);
  }
  return tokens;
}

const json::Value* Child(const json::Value& v, const std::string& token) {
  if (v.is_object()) return v.Find(token);
  if (!v.is_array() || token.empty() || token.size() > 9) return nullptr;
  if (!std::all_of(token.begin(), token.end(), [](char c) { return c >= '0' && c <= '9'; })) return nullptr;
  if (token.size() > 1 && token[0] == '0') return nullptr;
  size_t index = std::stoul(token);
  return index < v.items().size() ? &v.items()[index] : nullptr;
}

}  // namespace gitopsd::schema::internal
