// How types and values read in the validator's messages, and the code-point
// handling behind "minLength" and "pattern".
#include "sync/schema_internal.h"

#include <algorithm>

namespace gitopsd::schema::internal {
namespace {

std::wstring Utf8ToWide(std::string_view s) {
  std::wstring out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) {
    auto c = static_cast<unsigned char>(s[i]);
    size_t len = c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
    uint32_t cp = len == 1 ? c : len == 2 ? (c & 0x1F) : len == 3 ? (c & 0x0F) : (c & 0x07);
    for (size_t k = 1; k < len && i + k < s.size(); ++k) cp = (cp << 6) | (s[i + k] & 0x3F);
    out.push_back(static_cast<wchar_t>(cp));
    i += len;
  }
  return out;
}

}  // namespace

std::string Quote(std::string_view s) {
  std::string out;
  json::AppendQuoted(out, s);
  return out;
}

// "string", "string or null", "object, array or null".
std::string DescribeTypes(uint8_t mask) {
  std::vector<std::string> names;
  for (const auto& [name, bit] : kTypeNames) {
    if ((mask & bit) && !(bit == kIntegerBit && (mask & kNumberBit))) names.push_back(name);
  }
  std::string out;
  for (size_t i = 0; i < names.size(); ++i) {
    if (i > 0) out += i + 1 == names.size() ? " or " : ", ";
    out += names[i];
  }
  return out;
}

// A value as it reads in a message: strings quoted, containers named.
std::string Brief(const json::Value& v) {
  constexpr size_t kMax = 60;
  std::string out;
  switch (v.type()) {
    case json::Type::kObject: return v.members().empty() ? "{}" : "an object";
    case json::Type::kArray: return v.items().empty() ? "[]" : "an array";
    case json::Type::kString: out = Quote(v.as_string()); break;
    default: out = json::SerializeCompact(v); break;
  }
  if (out.size() > kMax) {
    size_t cut = kMax - 4;
    while (cut > 0 && (out[cut] & 0xC0) == 0x80) --cut;  // keep whole characters
    out = out.substr(0, cut) + (v.is_string() ? "...\"" : "...");
  }
  return out;
}

std::string JoinBrief(const std::vector<json::Value>& values, size_t max) {
  std::string out;
  for (size_t i = 0; i < values.size() && i < max; ++i) {
    if (i > 0) out += ", ";
    out += Brief(values[i]);
  }
  if (values.size() > max) out += ", ... (" + std::to_string(values.size() - max) + " more)";
  return out;
}

size_t CodePoints(std::string_view s) {
  return std::count_if(s.begin(), s.end(), [](char c) { return (c & 0xC0) != 0x80; });
}

size_t EditDistance(std::string_view a, std::string_view b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diagonal = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = up;
    }
  }
  return row[b.size()];
}

Result<Pattern> Pattern::Compile(const std::string& source) {
  Pattern p;
  p.source_ = source;
  try {
    p.regex_ = std::wregex(Utf8ToWide(source), std::regex::ECMAScript);
  } catch (const std::regex_error& e) {
    return Fail("invalid regular expression " + Quote(source) + ": " + e.what());
  }
  return p;
}

bool Pattern::Search(std::string_view text) const {
  try {
    return std::regex_search(Utf8ToWide(text), regex_);
  } catch (const std::regex_error&) {
    return false;
  }
}

}  // namespace gitopsd::schema::internal
