// Path rules in .gitignore syntax: the `pathIgnoreRules` of a Git trigger,
// which decide whether the files a push changed are worth a run. A rule set
// answers one question, Ignored(path), exactly as `git check-ignore` answers
// it for a single .gitignore at the root of the repository.
//
// What callers can rely on:
//  - A path is relative to the repository root, '/'-separated, without a
//    leading '/' ("docs/guide/intro.md"), and names a file. Every directory
//    above it ("docs", "docs/guide") is a directory.
//  - Lines: blank ones and those starting with '#' are skipped; trailing
//    spaces are dropped unless escaped ("\ "); a leading '!' negates the
//    rule; '\' takes the next character literally ("\#", "\!", "\*", "\[").
//  - '*' matches any run of characters but '/', '?' one character but '/',
//    '[abc]', '[a-z]', '[!a-z]' (or '[^a-z]') and '[[:digit:]]' one character
//    of a set, never '/'. '**' between slashes or at an end of the rule
//    crosses directories: "**/x" is x at any depth, "x/**" everything below
//    x, "a/**/b" b below a at any depth (a/b too). '**' elsewhere is '*',
//    except, as in Git, when it is the first wildcard of a rule with a '/':
//    then it crosses directories too ("a**/b" matches ab and a/x/b).
//  - A rule with a '/' at its start or in its middle matches from the root
//    ("/build", "docs/*.md"); a rule without one matches a name at any depth
//    ("*.log", "tmp/"). A trailing '/' matches directories only, so a file
//    matches it through a directory above it.
//  - The last matching rule decides, and, as in Git, nothing below an
//    ignored directory can be re-included: with "docs/" and "!docs/keep.md"
//    docs/keep.md stays ignored (write "docs/*" or "docs/**" to allow the
//    exception).
//  - Case-sensitive, as Git is with core.ignoreCase=false.
//  - Stricter than Git, which silently never matches such rules: Parse
//    refuses a rule with an unclosed '[', an unknown '[:class:]', a lone
//    '\' at its end, a line break, or nothing left to match once '!' and
//    the slashes around it are removed ("!", "/").
//  - A rule matches a path in time proportional to the rule's length times
//    the path's, however the rule is written. A PathRules is immutable and
//    safe to share between threads.
#pragma once
#include <bitset>
#include <string>
#include <string_view>
#include <vector>

#include "sync/status.h"

namespace gitopsd::triggers {

class PathRules {
 public:
  PathRules() = default;  // no rules: nothing is ignored

  // One rule per string, in order. An error starts with the rule's index in
  // `lines` ("[2]: ...") so that a caller can prefix the field's name.
  static Result<PathRules> Parse(const std::vector<std::string>& lines);

  bool empty() const { return rules_.empty(); }  // comments and blanks do not count
  size_t size() const { return rules_.size(); }

  bool Ignored(std::string_view path) const;

 private:
  // One step of a compiled rule: a character of a set, or a wildcard.
  struct Token {
    enum Kind { kChar, kStar, kAnyDirs, kAnyRest } kind;
    std::bitset<256> chars;  // kChar only
  };
  struct Rule {
    std::vector<Token> tokens;
    bool negated = false;
    bool directories_only = false;  // trailing '/'
    bool any_depth = false;         // no '/' but a trailing one: matches a path's last name
  };

  static Result<Rule> ParseRule(std::string_view line);
  static bool Matches(const Rule& rule, std::string_view path, bool is_directory);
  static bool MatchTokens(const std::vector<Token>& tokens, std::string_view text);
  // +1 ignored, -1 re-included by a '!' rule, 0 no rule matches.
  int Verdict(std::string_view path, bool is_directory) const;

  std::vector<Rule> rules_;
};

}  // namespace gitopsd::triggers
