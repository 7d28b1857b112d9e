#include "sync/expressions.h"

#include <algorithm>
#include <array>
#include <charconv>

namespace gitopsd::expr {
namespace {

// The useful subset of the grammar's functions (§1.5). Adding one here is
// all it takes for the model to accept it; the runner must evaluate it too.
constexpr std::array kFunctions = {
    Function{"add", 2, 2},         Function{"and", 2, -1},
    Function{"concat", 2, -1},     Function{"date", 0, 1},
    Function{"eq", 2, 2},          Function{"fromBase64", 1, 1},
    Function{"gt", 2, 2},          Function{"gte", 2, 2},
    Function{"if", 2, 3},          Function{"join", 1, 2},
    Function{"length", 1, 1},      Function{"lt", 2, 2},
    Function{"lte", 2, 2},         Function{"neq", 2, 2},
    Function{"not", 1, 1},         Function{"or", 2, -1},
    Function{"randomSecret", 1, 2}, Function{"replace", 3, 3},
    Function{"replaceAll", 3, 3},  Function{"slug", 1, 1},
    Function{"split", 2, 3},       Function{"subtract", 2, 2},
    Function{"toBase64", 1, 1},    Function{"toLower", 1, 1},
    Function{"toUpper", 1, 1},
};

constexpr int kMaxNesting = 64;

Expr Make(Expr::Type type, size_t pos) {
  Expr e;
  e.type = type;
  e.pos = pos;
  return e;
}

bool IsIdentStart(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}
bool IsDigit(char c) { return c >= '0' && c <= '9'; }
bool IsIdentChar(char c) { return IsIdentStart(c) || IsDigit(c); }
// Path segments may hold '-' (refs such as "app-build") and be all digits
// (array indexes such as "ports.0").
bool IsSegmentChar(char c) { return IsIdentChar(c) || c == '-'; }

std::string Arity(const Function& f) {
  if (f.max_args < 0) return "at least " + std::to_string(f.min_args);
  if (f.min_args == f.max_args) return std::to_string(f.min_args);
  return std::to_string(f.min_args) + " to " + std::to_string(f.max_args);
}

class Parser {
 public:
  Parser(std::string_view text, size_t base) : s_(text), base_(base) {}

  std::expected<Expr, Error> ParseAll() {
    SkipSpace();
    if (AtEnd()) return Fail(0, "empty expression: write ${args.NAME}, ${refs.REF.FIELD} or ${fn.NAME(...)}");
    auto e = ParseExpr(0);
    if (!e) return e;
    SkipSpace();
    if (!AtEnd()) return Fail(i_, "unexpected '" + std::string(1, s_[i_]) + "' after the expression");
    return e;
  }

 private:
  bool AtEnd() const { return i_ >= s_.size(); }
  char Peek(size_t ahead = 0) const { return i_ + ahead < s_.size() ? s_[i_ + ahead] : '\0'; }
  void SkipSpace() {
    while (!AtEnd() && (s_[i_] == ' ' || s_[i_] == '\t' || s_[i_] == '\n' || s_[i_] == '\r')) ++i_;
  }
  std::unexpected<Error> Fail(size_t at, std::string message) const {
    return std::unexpected(Error{base_ + at, std::move(message)});
  }

  std::expected<Expr, Error> ParseExpr(int depth) {
    if (depth > kMaxNesting) return Fail(i_, "expression nested too deeply");
    SkipSpace();
    if (AtEnd()) return Fail(i_, "expected a value");
    char c = Peek();
    if (c == '\'') return ParseString();
    if (IsDigit(c) || (c == '-' && IsDigit(Peek(1)))) return ParseNumber();
    if (IsIdentStart(c)) return ParseName(depth);
    if (c == '"') return Fail(i_, "string literals use single quotes: 'text'");
    return Fail(i_, "unexpected '" + std::string(1, c) + "'");
  }

  std::expected<Expr, Error> ParseString() {
    Expr e = Make(Expr::Type::kString, base_ + i_);
    size_t start = i_++;
    while (!AtEnd()) {
      char c = s_[i_++];
      if (c == '\'') return e;
      if (c == '\\' && !AtEnd()) c = s_[i_++];
      e.text += c;
    }
    return Fail(start, "unterminated string literal (missing ')");
  }

  std::expected<Expr, Error> ParseNumber() {
    Expr e = Make(Expr::Type::kNumber, base_ + i_);
    size_t start = i_;
    if (Peek() == '-') ++i_;
    while (IsDigit(Peek())) ++i_;
    if (Peek() == '.') {
      ++i_;
      if (!IsDigit(Peek())) return Fail(i_, "expected a digit after '.'");
      while (IsDigit(Peek())) ++i_;
    }
    if (IsIdentChar(Peek())) return Fail(i_, "unexpected '" + std::string(1, Peek()) + "' in a number");
    e.text = std::string(s_.substr(start, i_ - start));
    std::from_chars(e.text.data(), e.text.data() + e.text.size(), e.number);
    return e;
  }

  std::string ReadIdent() {
    size_t start = i_;
    while (IsIdentChar(Peek())) ++i_;
    return std::string(s_.substr(start, i_ - start));
  }

  std::expected<Expr, Error> ParseName(int depth) {
    size_t start = i_;
    std::string root = ReadIdent();
    if (Peek() == '(') {
      return Fail(start, "functions are called as fn." + root + "(...)");
    }
    if (Peek() != '.') {
      if (root == "true" || root == "false") {
        Expr e = Make(Expr::Type::kBool, base_ + start);
        e.boolean = root == "true";
        return e;
      }
      if (root == "args" || root == "refs") {
        return Fail(start, root == "args" ? "write args.NAME" : "write refs.REF.FIELD");
      }
      return Fail(start, "unknown name '" + root +
                             "': expected args.NAME, refs.REF.FIELD, fn.NAME(...), a 'string', a number, true or false");
    }
    if (root == "fn") return ParseCall(start, depth);
    if (root == "secrets") {
      return Fail(start,
                  "secrets.* is not supported by gitopsd: secrets never live in the repository; keep them in the "
                  "daemon's argument overrides and use ${args.NAME}");
    }
    if (root == "template") {
      return Fail(start, "template.* (nested templates) is not supported by gitopsd");
    }
    if (root != "args" && root != "refs") {
      return Fail(start, "unknown name '" + root + "': expected args.NAME, refs.REF.FIELD or fn.NAME(...)");
    }
    return ParsePath(start, std::move(root));
  }

  std::expected<Expr, Error> ParsePath(size_t start, std::string root) {
    Expr e = Make(Expr::Type::kPath, base_ + start);
    e.path.push_back(std::move(root));
    while (Peek() == '.') {
      ++i_;
      size_t seg = i_;
      while (IsSegmentChar(Peek())) ++i_;
      if (i_ == seg) return Fail(seg, "expected a name after '.'");
      e.path.emplace_back(s_.substr(seg, i_ - seg));
    }
    if (e.path[0] == "args" && e.path.size() != 2) {
      return Fail(start, "an argument is read as args.NAME, with no further fields");
    }
    return e;
  }

  std::expected<Expr, Error> ParseCall(size_t start, int depth) {
    ++i_;  // '.'
    size_t name_at = i_;
    std::string name = ReadIdent();
    if (name.empty()) return Fail(name_at, "expected a function name after 'fn.'");
    const Function* f = FindFunction(name);
    if (f == nullptr) return Fail(name_at, "unknown function fn." + name);
    if (Peek() != '(') return Fail(i_, "expected '(' after fn." + name);
    ++i_;
    Expr e = Make(Expr::Type::kCall, base_ + start);
    e.text = std::move(name);
    SkipSpace();
    if (Peek() == ')') {
      ++i_;
    } else {
      while (true) {
        auto arg = ParseExpr(depth + 1);
        if (!arg) return arg;
        e.args.push_back(std::move(*arg));
        SkipSpace();
        if (Peek() == ',') {
          ++i_;
          continue;
        }
        if (Peek() == ')') {
          ++i_;
          break;
        }
        if (AtEnd()) return Fail(i_, "missing ')' to close fn." + e.text + "(");
        return Fail(i_, "expected ',' or ')' in the arguments of fn." + e.text);
      }
    }
    int n = static_cast<int>(e.args.size());
    if (n < f->min_args || (f->max_args >= 0 && n > f->max_args)) {
      return Fail(start, "fn." + e.text + " takes " + Arity(*f) + " argument" +
                             (f->min_args == 1 && f->max_args == 1 ? "" : "s") + ", not " + std::to_string(n));
    }
    return e;
  }

  std::string_view s_;
  size_t base_;
  size_t i_ = 0;
};

bool IsEscapedOpen(std::string_view text, size_t i) {
  return text[i] == '\\' && text.substr(i + 1, 2) == "${";
}

}  // namespace

std::vector<Span> FindExpressions(std::string_view text) {
  std::vector<Span> spans;
  size_t i = 0;
  while (i + 1 < text.size()) {
    if (IsEscapedOpen(text, i)) {
      i += 3;
      continue;
    }
    if (text[i] != '$' || text[i + 1] != '{') {
      ++i;
      continue;
    }
    size_t j = i + 2;
    bool quoted = false;
    for (; j < text.size(); ++j) {
      char c = text[j];
      if (quoted) {
        if (c == '\\') ++j;
        else if (c == '\'') quoted = false;
      } else if (c == '\'') {
        quoted = true;
      } else if (c == '}') {
        break;
      }
    }
    if (j >= text.size()) {
      spans.push_back(Span{i, text.size(), text.substr(i + 2), false});
      break;
    }
    spans.push_back(Span{i, j + 1, text.substr(i + 2, j - i - 2), true});
    i = j + 1;
  }
  return spans;
}

bool HasExpressions(std::string_view text) {
  for (size_t i = 0; i + 1 < text.size(); ++i) {
    if (IsEscapedOpen(text, i)) {
      i += 2;
    } else if (text[i] == '$' && text[i + 1] == '{') {
      return true;
    }
  }
  return false;
}

std::expected<Expr, Error> ParseExpression(std::string_view inner, size_t base) {
  return Parser(inner, base).ParseAll();
}

namespace {

// Appends literal text, turning each escaped "\${" into "${".
void AppendLiteral(std::string& out, std::string_view text) {
  for (size_t i = 0; i < text.size(); ++i) {
    if (IsEscapedOpen(text, i)) continue;  // drop the backslash
    out += text[i];
  }
}

}  // namespace

std::expected<std::vector<Part>, Error> ParseInterpolated(std::string_view text) {
  std::vector<Part> parts;
  size_t at = 0;
  for (const Span& span : FindExpressions(text)) {
    if (!span.terminated) return std::unexpected(Error{span.begin, "unterminated ${ (missing })"});
    if (span.begin > at) {
      Part lit;
      AppendLiteral(lit.literal, text.substr(at, span.begin - at));
      parts.push_back(std::move(lit));
    }
    auto e = ParseExpression(span.inner, span.begin + 2);
    if (!e) return std::unexpected(e.error());
    Part part;
    part.is_expr = true;
    part.expr = std::move(*e);
    parts.push_back(std::move(part));
    at = span.end;
  }
  if (at < text.size()) {
    Part lit;
    AppendLiteral(lit.literal, text.substr(at));
    parts.push_back(std::move(lit));
  }
  return parts;
}

std::span<const Function> Functions() { return kFunctions; }

const Function* FindFunction(std::string_view name) {
  auto it = std::lower_bound(kFunctions.begin(), kFunctions.end(), name,
                             [](const Function& f, std::string_view n) { return f.name < n; });
  if (it == kFunctions.end() || it->name != name) return nullptr;
  return &*it;
}

}  // namespace gitopsd::expr
