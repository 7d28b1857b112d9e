// The `${...}` interpolation language of object files (the template
// grammar's args, refs and functions), parsed into a small AST so that the
// model can check it before anything runs and the release runner can
// evaluate it later.
//
//   "web-${args.name}"                       a literal, then an argument
//   "${refs.app-build.ports.0.dns}"          a node's or trigger's output
//   "${fn.if(fn.eq(args.ENV, 'prod'), 3, 1)}" function calls, nested
//   "\${HOME}"                               an escaped, literal "${HOME}"
//
// Inside `${...}` an expression is one of: a path (`args.X`, `refs.a.b.0`),
// a call `fn.name(expr, ...)`, a single-quoted string ('it\'s'), a number
// (`-1.5`), `true` or `false`. `secrets.X` is refused: secrets never live in
// the repository. Every function is checked against the supported list and
// its arity at parse time, so a parsed Expr is always well formed.
//
// Positions are byte offsets into the string that was parsed (the decoded
// JSON string value, not the file).
#pragma once
#include <cstddef>
#include <expected>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace gitopsd::expr {

struct Expr {
  enum class Type { kString, kNumber, kBool, kPath, kCall };
  Type type = Type::kString;
  size_t pos = 0;            // where the expression starts
  std::string text;          // kString: the value; kNumber: as spelled; kCall: function name
  double number = 0;         // kNumber
  bool boolean = false;      // kBool
  std::vector<std::string> path;  // kPath: {"args","X"} or {"refs","node","ports","0"}
  std::vector<Expr> args;         // kCall

  bool is_args() const { return type == Type::kPath && path.front() == "args"; }
  bool is_refs() const { return type == Type::kPath && path.front() == "refs"; }
};

struct Error {
  size_t pos = 0;       // where the problem is
  std::string message;  // e.g. "unknown function fn.slugify"
};

// One `${...}` found in a string: [begin, end) covers "${" through "}".
// `inner` is the text between the braces. An unterminated "${" gives a span
// with terminated = false that runs to the end of the string.
struct Span {
  size_t begin = 0;
  size_t end = 0;
  std::string_view inner;
  bool terminated = true;
};

// Every `${...}` in `text`, in order, skipping escaped `\${`. A `}` inside a
// single-quoted string literal does not close the expression.
std::vector<Span> FindExpressions(std::string_view text);

// True when the string holds at least one unescaped "${".
bool HasExpressions(std::string_view text);

// Parses the inside of one `${...}`; `base` is added to every position so
// they are relative to the containing string.
std::expected<Expr, Error> ParseExpression(std::string_view inner, size_t base = 0);

// A whole string split into literal text and expressions, for evaluation.
struct Part {
  bool is_expr = false;
  std::string literal;  // !is_expr: the text, with "\${" already unescaped to "${"
  Expr expr;            // is_expr
};
std::expected<std::vector<Part>, Error> ParseInterpolated(std::string_view text);

// Calls `visit` for each path (args/refs) in each expression, nested calls
// included, so callers can check names without walking the AST themselves.
template <class Visit>
void ForEachPath(const Expr& e, Visit&& visit) {
  if (e.type == Expr::Type::kPath) visit(e);
  for (const Expr& a : e.args) ForEachPath(a, visit);
}

// The supported functions and how many arguments each takes.
struct Function {
  std::string_view name;
  int min_args;
  int max_args;  // -1: no upper bound
};
std::span<const Function> Functions();
const Function* FindFunction(std::string_view name);

}  // namespace gitopsd::expr
