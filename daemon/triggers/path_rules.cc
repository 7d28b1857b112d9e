#include "daemon/triggers/path_rules.h"

#include <optional>
#include <utility>

namespace gitopsd::triggers {
namespace {

using Chars = std::bitset<256>;

unsigned char Byte(char c) { return static_cast<unsigned char>(c); }

Chars Only(char c) {
  Chars set;
  set.set(Byte(c));
  return set;
}

Chars AnyButSlash() {
  Chars set;
  set.set();
  set.reset(Byte('/'));
  return set;
}

bool IsDigit(int c) { return c >= '0' && c <= '9'; }
bool IsUpper(int c) { return c >= 'A' && c <= 'Z'; }
bool IsLower(int c) { return c >= 'a' && c <= 'z'; }
bool IsSpace(int c) { return c == ' ' || (c >= '\t' && c <= '\r'); }
bool IsGraph(int c) { return c > ' ' && c < 0x7F; }

// The POSIX classes of '[[:name:]]', in the C locale (ASCII only).
std::optional<Chars> NamedClass(std::string_view name) {
  bool (*member)(int) = nullptr;
  if (name == "alnum") member = [](int c) { return IsDigit(c) || IsUpper(c) || IsLower(c); };
  if (name == "alpha") member = [](int c) { return IsUpper(c) || IsLower(c); };
  if (name == "blank") member = [](int c) { return c == ' ' || c == '\t'; };
  if (name == "cntrl") member = [](int c) { return c < ' ' || c == 0x7F; };
  if (name == "digit") member = IsDigit;
  if (name == "graph") member = IsGraph;
  if (name == "lower") member = IsLower;
  if (name == "print") member = [](int c) { return c == ' ' || IsGraph(c); };
  if (name == "punct") member = [](int c) { return IsGraph(c) && !IsDigit(c) && !IsUpper(c) && !IsLower(c); };
  if (name == "space") member = IsSpace;
  if (name == "upper") member = IsUpper;
  if (name == "xdigit") member = [](int c) { return IsDigit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); };
  if (!member) return std::nullopt;
  Chars set;
  for (int c = 0; c < 128; ++c) set[c] = member(c);
  return set;
}

// A bracket expression starting at text[open] == '['. On success `end` is
// the index of its closing ']'. Git's reading: a ']' right after '[' or
// '[!' is a member, '-' between two members is a range, "[:" without ":]"
// is a literal '['.
struct Bracket {
  Chars set;
  size_t end = 0;
};

Result<Bracket> ParseBracket(std::string_view p, size_t open) {
  const auto unclosed = [] { return Fail("has a '[' with no closing ']' (write \"\\[\" for a literal '[')"); };
  size_t k = open + 1;
  const bool negated = k < p.size() && (p[k] == '!' || p[k] == '^');
  if (negated) ++k;
  Chars set;
  int previous = -1;  // the last single member, the start of a possible range
  for (bool first = true;; first = false) {
    if (k >= p.size()) return unclosed();
    const char c = p[k];
    if (c == ']' && !first) break;
    if (c == '\\') {
      if (k + 1 >= p.size()) return unclosed();
      set.set(Byte(p[k + 1]));
      previous = Byte(p[k + 1]);
      k += 2;
    } else if (c == '-' && previous >= 0 && k + 1 < p.size() && p[k + 1] != ']') {
      k += 1;
      if (p[k] == '\\' && ++k >= p.size()) return unclosed();
      for (int m = previous; m <= Byte(p[k]); ++m) set.set(m);
      previous = -1;
      k += 1;
    } else if (c == '[' && k + 1 < p.size() && p[k + 1] == ':') {
      const size_t close = p.find(']', k + 2);
      if (close == std::string_view::npos) return unclosed();
      if (close < k + 3 || p[close - 1] != ':') {  // not "[:name:]": a plain '['
        set.set(Byte('['));
        previous = Byte('[');
        k += 1;
        continue;
      }
      const std::string_view name = p.substr(k + 2, close - 1 - (k + 2));
      std::optional<Chars> named = NamedClass(name);
      if (!named)
        return Fail("unknown character class [:" + std::string(name) +
                    ":] (known: alnum, alpha, blank, cntrl, digit, graph, lower, print, punct, space, upper, xdigit)");
      set |= *named;
      previous = -1;
      k = close + 1;
    } else {
      set.set(Byte(c));
      previous = Byte(c);
      k += 1;
    }
  }
  if (negated) set.flip();
  set.reset(Byte('/'));
  return Bracket{set, k};
}

// Trailing spaces go unless the last one is escaped with '\'.
std::string_view TrimTrailingSpaces(std::string_view line) {
  size_t end = line.size();
  while (end > 0 && line[end - 1] == ' ') {
    size_t backslashes = 0;
    while (backslashes < end - 1 && line[end - 2 - backslashes] == '\\') ++backslashes;
    if (backslashes % 2 == 1) break;  // "\ " keeps this space
    --end;
  }
  return line.substr(0, end);
}

}  // namespace

Result<PathRules> PathRules::Parse(const std::vector<std::string>& lines) {
  PathRules rules;
  for (size_t i = 0; i < lines.size(); ++i) {
    const std::string& line = lines[i];
    if (line.find_first_of("\r\n") != std::string::npos) {
      return Fail("[" + std::to_string(i) + "]: has a line break; give one rule per string");
    }
    if (line.empty() || line[0] == '#' || TrimTrailingSpaces(line).empty()) continue;
    Result<Rule> rule = ParseRule(TrimTrailingSpaces(line));
    if (!rule) return Fail("[" + std::to_string(i) + "]: rule \"" + line + "\": " + rule.error().message);
    rules.rules_.push_back(std::move(*rule));
  }
  return rules;
}

Result<PathRules::Rule> PathRules::ParseRule(std::string_view p) {
  Rule rule;
  if (p.starts_with('!')) {
    rule.negated = true;
    p.remove_prefix(1);
  }
  if (p.ends_with('/')) {
    rule.directories_only = true;
    p.remove_suffix(1);
  }
  rule.any_depth = p.find('/') == std::string_view::npos;
  if (p.starts_with('/')) p.remove_prefix(1);
  if (p.empty()) return Fail("matches nothing once '!' and its slashes are removed");
  // Git compares the literal start of a rule with a '/' on its own and
  // wildmatches the rest, so there the first wildcard starts the pattern: a
  // '**' in that place crosses directories even after a letter ("a**/b"
  // matches "ab" and "a/x/b"). Matching Git matters more than its manual.
  const size_t literal_start = rule.any_depth ? 0 : p.find_first_of("*?[\\");

  for (size_t i = 0; i < p.size();) {
    const char c = p[i];
    if (c == '\\') {
      if (i + 1 == p.size()) return Fail("ends in a lone '\\' (write \"\\\\\" for a backslash)");
      rule.tokens.push_back({Token::kChar, Only(p[i + 1])});
      i += 2;
    } else if (c == '?') {
      rule.tokens.push_back({Token::kChar, AnyButSlash()});
      i += 1;
    } else if (c == '[') {
      Result<Bracket> bracket = ParseBracket(p, i);
      if (!bracket) return std::unexpected(bracket.error());
      rule.tokens.push_back({Token::kChar, bracket->set});
      i = bracket->end + 1;
    } else if (c == '*') {
      size_t j = i;
      while (j < p.size() && p[j] == '*') ++j;
      const bool starts_segment = i == 0 || p[i - 1] == '/' || i == literal_start;
      const bool globstar = j - i >= 2 && starts_segment;
      if (globstar && j == p.size()) {
        rule.tokens.push_back({Token::kAnyRest, {}});
      } else if (globstar && p[j] == '/') {
        rule.tokens.push_back({Token::kAnyDirs, {}});
        j += 1;
      } else if (globstar && p.substr(j).starts_with("\\/")) {
        rule.tokens.push_back({Token::kAnyDirs, {}});
        j += 2;
      } else {
        rule.tokens.push_back({Token::kStar, {}});
      }
      i = j;
    } else {
      rule.tokens.push_back({Token::kChar, Only(c)});
      i += 1;
    }
  }
  return rule;
}

// Runs the rule over the text as a set of reachable positions, one token at
// a time, so no rule can make matching slower than tokens x text.
bool PathRules::MatchTokens(const std::vector<Token>& tokens, std::string_view text) {
  const size_t n = text.size();
  std::vector<bool> reach(n + 1, false), next(n + 1, false);
  reach[0] = true;
  for (const Token& token : tokens) {
    std::fill(next.begin(), next.end(), false);
    bool carry = false;
    for (size_t j = 0; j <= n; ++j) {
      switch (token.kind) {
        case Token::kChar:  // one character of the set
          if (j > 0 && reach[j - 1] && token.chars[Byte(text[j - 1])]) next[j] = true;
          break;
        case Token::kStar:  // any run without '/'
          carry = carry || reach[j];
          next[j] = carry;
          if (j < n && text[j] == '/') carry = false;
          break;
        case Token::kAnyDirs:  // nothing, or anything ending in '/'
          next[j] = reach[j] || (j > 0 && text[j - 1] == '/' && carry);
          carry = carry || reach[j];
          break;
        case Token::kAnyRest:  // anything
          carry = carry || reach[j];
          next[j] = carry;
          break;
      }
    }
    std::swap(reach, next);
  }
  return reach[n];
}

bool PathRules::Matches(const Rule& rule, std::string_view path, bool is_directory) {
  if (rule.directories_only && !is_directory) return false;
  if (rule.any_depth) {
    const size_t slash = path.rfind('/');
    if (slash != std::string_view::npos) path.remove_prefix(slash + 1);
  }
  return MatchTokens(rule.tokens, path);
}

int PathRules::Verdict(std::string_view path, bool is_directory) const {
  for (auto it = rules_.rbegin(); it != rules_.rend(); ++it) {
    if (Matches(*it, path, is_directory)) return it->negated ? -1 : +1;
  }
  return 0;
}

bool PathRules::Ignored(std::string_view path) const {
  if (rules_.empty() || path.empty()) return false;
  // Git never looks inside an ignored directory, so its verdict is final.
  for (size_t slash = path.find('/'); slash != std::string_view::npos; slash = path.find('/', slash + 1)) {
    if (Verdict(path.substr(0, slash), true) > 0) return true;
  }
  return Verdict(path, false) > 0;
}

}  // namespace gitopsd::triggers
