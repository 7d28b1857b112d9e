#include "daemon/runner/evaluate.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <ctime>
#include <random>

#include "daemon/runner/references.h"
#include "sync/expressions.h"

namespace gitopsd::runner {
namespace {

using expr::Expr;

// What an expression evaluates to. Unresolved values are kept apart from
// values so the top level can refuse them and function calls can read them
// as false; placeholders stand for outputs a dry run cannot know.
struct Val {
  enum class State { kValue, kUnresolved, kPlaceholder };
  State state = State::kValue;
  json::Value value;
  std::string why;  // kUnresolved: what did not resolve, and why
};

Val Value(json::Value v) { return Val{Val::State::kValue, std::move(v), {}}; }
Val Unresolved(std::string why) { return Val{Val::State::kUnresolved, {}, std::move(why)}; }
Val Placeholder() { return Val{Val::State::kPlaceholder, {}, {}}; }

using Args = std::vector<json::Value>;
using FnResult = std::expected<json::Value, std::string>;

std::string Quoted(std::string_view s) {
  std::string out;
  json::AppendQuoted(out, s);
  return out;
}

// ---- paths -------------------------------------------------------------

std::string FieldList(const json::Value& v) {
  if (v.is_array()) return "an array of " + std::to_string(v.items().size());
  if (!v.is_object()) return std::string("a ") + json::TypeName(v.type());
  if (v.members().empty()) return "no fields";
  std::string out = "fields: ";
  size_t shown = 0;
  for (const json::Member& m : v.members()) {
    if (shown++ == 12) {
      out += ", ...";
      break;
    }
    out += (shown > 1 ? ", " : "") + m.first;
  }
  return out;
}

const json::Value* Step(const json::Value& v, const std::string& seg) {
  if (v.is_object()) return v.Find(seg);
  if (!v.is_array() || seg.empty()) return nullptr;
  size_t index = 0;
  auto [end, ec] = std::from_chars(seg.data(), seg.data() + seg.size(), index);
  if (ec != std::errc() || end != seg.data() + seg.size() || index >= v.items().size()) return nullptr;
  return &v.items()[index];
}

Val WalkRef(const Expr& e, const json::Value& data) {
  const json::Value* at = &data;
  for (size_t i = 2; i < e.path.size(); ++i) {
    const json::Value* next = Step(*at, e.path[i]);
    if (next == nullptr) {
      std::string prefix = "refs";
      for (size_t j = 1; j < i; ++j) prefix += "." + e.path[j];
      return Unresolved(prefix + " has no " + Quoted(e.path[i]) + " (it has " + FieldList(*at) + ")");
    }
    at = next;
  }
  return Value(*at);
}

Val ResolveRef(const Expr& e, const Scope& scope) {
  const std::string& name = e.path[1];
  if (scope.refs) {
    if (auto it = scope.refs->find(name); it != scope.refs->end()) return WalkRef(e, it->second);
  }
  if (scope.pending_refs && scope.pending_refs->contains(name)) return Placeholder();
  if (scope.all_refs && scope.all_refs->contains(name)) {
    return Unresolved("node " + Quoted(name) +
                      " has no outputs here: it does not run before this node (a later step, a parallel "
                      "sibling, or a workflow containing this node), or it was skipped");
  }
  return Unresolved("no trigger or node has the ref " + Quoted(name) +
                    " (a trigger's refs exist only when the run was started by that trigger or given its values)");
}

Val ResolvePath(const Expr& e, const Scope& scope) {
  if (e.is_args()) {
    const json::Value* v = scope.args ? scope.args->Find(e.path[1]) : nullptr;
    if (v == nullptr) {
      return Unresolved("argument " + Quoted(e.path[1]) +
                        " is not set: declare it in \"arguments\" or pass it when starting the run");
    }
    return Value(*v);
  }
  return ResolveRef(e, scope);
}

// ---- conversions -------------------------------------------------------

}  // namespace

std::optional<double> ToNumber(const json::Value& v) {
  if (v.is_number()) return v.as_double();
  if (v.is_bool()) return v.as_bool() ? 1 : 0;
  if (!v.is_string() || v.as_string().empty()) return std::nullopt;
  const std::string& s = v.as_string();
  double d = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), d);
  if (ec != std::errc() || end != s.data() + s.size()) return std::nullopt;
  return d;
}

namespace {

FnResult Number(std::string_view fn, const json::Value& v) {
  if (auto d = ToNumber(v)) return json::Value::Number(*d);
  return std::unexpected("fn." + std::string(fn) + ": " + Quoted(ToText(v)) + " is not a number");
}

bool Equal(const json::Value& a, const json::Value& b) {
  if (a.type() == b.type()) return a == b;
  if (a.is_number() || b.is_number()) {
    auto x = ToNumber(a), y = ToNumber(b);
    if (x && y && !a.is_bool() && !b.is_bool()) return *x == *y;
  }
  if (a.is_object() || a.is_array() || b.is_object() || b.is_array()) return false;
  return ToText(a) == ToText(b);
}

// <0, 0, >0; numerically when both are numbers, else as text.
int Compare(const json::Value& a, const json::Value& b) {
  auto x = ToNumber(a), y = ToNumber(b);
  if (x && y) return *x < *y ? -1 : (*x > *y ? 1 : 0);
  return ToText(a).compare(ToText(b));
}

size_t Utf8Length(std::string_view s) {
  return static_cast<size_t>(std::count_if(s.begin(), s.end(), [](char c) { return (c & 0xC0) != 0x80; }));
}

std::vector<std::string> Utf8Chars(std::string_view s) {
  std::vector<std::string> out;
  for (size_t i = 0; i < s.size(); ++i) {
    if ((s[i] & 0xC0) != 0x80 || out.empty()) out.emplace_back();
    out.back() += s[i];
  }
  return out;
}

// ---- strings -----------------------------------------------------------

constexpr std::string_view kBase64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

std::string EncodeBase64(std::string_view in) {
  std::string out;
  out.reserve((in.size() + 2) / 3 * 4);
  for (size_t i = 0; i < in.size(); i += 3) {
    uint32_t n = static_cast<uint8_t>(in[i]) << 16;
    if (i + 1 < in.size()) n |= static_cast<uint8_t>(in[i + 1]) << 8;
    if (i + 2 < in.size()) n |= static_cast<uint8_t>(in[i + 2]);
    out += kBase64[(n >> 18) & 63];
    out += kBase64[(n >> 12) & 63];
    out += i + 1 < in.size() ? kBase64[(n >> 6) & 63] : '=';
    out += i + 2 < in.size() ? kBase64[n & 63] : '=';
  }
  return out;
}

int Base64Digit(char c) {
  if (c == '-') return 62;  // the URL-safe alphabet is accepted too
  if (c == '_') return 63;
  size_t at = kBase64.find(c);
  return at == std::string_view::npos ? -1 : static_cast<int>(at);
}

std::optional<std::string> DecodeBase64(std::string_view in) {
  while (!in.empty() && in.back() == '=') in.remove_suffix(1);
  if (in.size() % 4 == 1) return std::nullopt;
  std::string out;
  uint32_t acc = 0;
  int bits = 0;
  for (char c : in) {
    int d = Base64Digit(c);
    if (d < 0) return std::nullopt;
    acc = (acc << 6) | static_cast<uint32_t>(d);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out += static_cast<char>((acc >> bits) & 0xFF);
    }
  }
  return out;
}

std::string Slug(std::string_view s) {
  std::string out;
  for (char c : s) {
    char lower = (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
    bool keep = (lower >= 'a' && lower <= 'z') || (lower >= '0' && lower <= '9');
    if (keep) {
      out += lower;
    } else if (!out.empty() && out.back() != '-') {
      out += '-';
    }
  }
  while (!out.empty() && out.back() == '-') out.pop_back();
  return out;
}

std::string MapAscii(std::string s, bool upper) {
  for (char& c : s) {
    if (upper && c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
    if (!upper && c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return s;
}

// JavaScript's String.replace / replaceAll with a string pattern.
std::string Replace(const std::string& s, const std::string& from, const std::string& to, bool all) {
  if (from.empty()) {
    if (!all) return to + s;
    std::string out = to;
    for (const std::string& ch : Utf8Chars(s)) out += ch + to;
    return out;
  }
  std::string out;
  size_t at = 0;
  while (true) {
    size_t hit = s.find(from, at);
    if (hit == std::string::npos) break;
    out.append(s, at, hit - at);
    out += to;
    at = hit + from.size();
    if (!all) break;
  }
  out.append(s, at);
  return out;
}

// ---- functions ---------------------------------------------------------

FnResult FnIf(const Args& a, const Scope&) {
  if (IsTruthy(a[0])) return a[1];
  return a.size() > 2 ? a[2] : json::Value::String("");
}
FnResult FnNot(const Args& a, const Scope&) { return json::Value::Bool(!IsTruthy(a[0])); }
FnResult FnAnd(const Args& a, const Scope&) {
  return json::Value::Bool(std::all_of(a.begin(), a.end(), IsTruthy));
}
FnResult FnOr(const Args& a, const Scope&) {
  return json::Value::Bool(std::any_of(a.begin(), a.end(), IsTruthy));
}
FnResult FnEq(const Args& a, const Scope&) { return json::Value::Bool(Equal(a[0], a[1])); }
FnResult FnNeq(const Args& a, const Scope&) { return json::Value::Bool(!Equal(a[0], a[1])); }
FnResult FnGt(const Args& a, const Scope&) { return json::Value::Bool(Compare(a[0], a[1]) > 0); }
FnResult FnGte(const Args& a, const Scope&) { return json::Value::Bool(Compare(a[0], a[1]) >= 0); }
FnResult FnLt(const Args& a, const Scope&) { return json::Value::Bool(Compare(a[0], a[1]) < 0); }
FnResult FnLte(const Args& a, const Scope&) { return json::Value::Bool(Compare(a[0], a[1]) <= 0); }

FnResult Arithmetic(std::string_view fn, const Args& a, double sign) {
  auto x = Number(fn, a[0]);
  if (!x) return x;
  auto y = Number(fn, a[1]);
  if (!y) return y;
  return json::Value::Number(x->as_double() + sign * y->as_double());
}
FnResult FnAdd(const Args& a, const Scope&) { return Arithmetic("add", a, 1); }
FnResult FnSubtract(const Args& a, const Scope&) { return Arithmetic("subtract", a, -1); }

FnResult FnSlug(const Args& a, const Scope&) { return json::Value::String(Slug(ToText(a[0]))); }
FnResult FnToLower(const Args& a, const Scope&) { return json::Value::String(MapAscii(ToText(a[0]), false)); }
FnResult FnToUpper(const Args& a, const Scope&) { return json::Value::String(MapAscii(ToText(a[0]), true)); }
FnResult FnReplace(const Args& a, const Scope&) {
  return json::Value::String(Replace(ToText(a[0]), ToText(a[1]), ToText(a[2]), false));
}
FnResult FnReplaceAll(const Args& a, const Scope&) {
  return json::Value::String(Replace(ToText(a[0]), ToText(a[1]), ToText(a[2]), true));
}
FnResult FnToBase64(const Args& a, const Scope&) { return json::Value::String(EncodeBase64(ToText(a[0]))); }
FnResult FnFromBase64(const Args& a, const Scope&) {
  auto decoded = DecodeBase64(ToText(a[0]));
  if (!decoded) return std::unexpected("fn.fromBase64: " + Quoted(ToText(a[0])) + " is not base64");
  return json::Value::String(std::move(*decoded));
}

FnResult FnLength(const Args& a, const Scope&) {
  const json::Value& v = a[0];
  if (v.is_array()) return json::Value::Number(static_cast<double>(v.items().size()));
  if (v.is_object()) return json::Value::Number(static_cast<double>(v.members().size()));
  if (v.is_string()) return json::Value::Number(static_cast<double>(Utf8Length(v.as_string())));
  return std::unexpected(std::string("fn.length takes a string or an array, not ") + json::TypeName(v.type()));
}

FnResult FnSplit(const Args& a, const Scope&) {
  std::string s = ToText(a[0]), sep = ToText(a[1]);
  size_t limit = SIZE_MAX;
  if (a.size() > 2) {
    auto n = ToNumber(a[2]);
    if (!n || *n < 0) return std::unexpected("fn.split: the limit " + Quoted(ToText(a[2])) + " is not a count");
    limit = static_cast<size_t>(*n);
  }
  std::vector<json::Value> items;
  if (sep.empty()) {
    for (std::string& ch : Utf8Chars(s)) items.push_back(json::Value::String(std::move(ch)));
  } else {
    size_t at = 0;
    for (size_t hit; (hit = s.find(sep, at)) != std::string::npos; at = hit + sep.size()) {
      items.push_back(json::Value::String(s.substr(at, hit - at)));
    }
    items.push_back(json::Value::String(s.substr(at)));
  }
  if (items.size() > limit) items.resize(limit);
  return json::Value::Array(std::move(items));
}

FnResult FnJoin(const Args& a, const Scope&) {
  if (!a[0].is_array()) return std::unexpected(std::string("fn.join takes an array, not ") + json::TypeName(a[0].type()));
  std::string sep = a.size() > 1 ? ToText(a[1]) : ",";
  std::string out;
  for (size_t i = 0; i < a[0].items().size(); ++i) {
    if (i > 0) out += sep;
    out += ToText(a[0].items()[i]);
  }
  return json::Value::String(std::move(out));
}

// Arrays concatenate into an array (other values become items); anything
// else concatenates as text.
FnResult FnConcat(const Args& a, const Scope&) {
  if (a[0].is_array()) {
    std::vector<json::Value> items;
    for (const json::Value& v : a) {
      if (v.is_array()) items.insert(items.end(), v.items().begin(), v.items().end());
      else items.push_back(v);
    }
    return json::Value::Array(std::move(items));
  }
  std::string out;
  for (const json::Value& v : a) out += ToText(v);
  return json::Value::String(std::move(out));
}

FnResult FnRandomSecret(const Args& a, const Scope& scope) {
  auto n = ToNumber(a[0]);
  if (!n || *n < 1 || *n > 4096 || *n != std::floor(*n)) {
    return std::unexpected("fn.randomSecret: the length " + Quoted(ToText(a[0])) + " must be a whole number from 1 to 4096");
  }
  std::string encoding = a.size() > 1 ? ToText(a[1]) : "";
  std::string_view alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
  if (encoding == "hex") alphabet = "0123456789abcdef";
  else if (encoding == "base64") alphabet = kBase64;
  else if (!encoding.empty()) {
    return std::unexpected("fn.randomSecret: unknown encoding " + Quoted(encoding) + " (use 'base64' or 'hex')");
  }
  std::random_device device;
  auto pick = [&](size_t bound) -> size_t {
    if (scope.random) return scope.random(bound) % bound;
    return std::uniform_int_distribution<size_t>(0, bound - 1)(device);
  };
  std::string out;
  for (size_t i = 0; i < static_cast<size_t>(*n); ++i) out += alphabet[pick(alphabet.size())];
  return json::Value::String(std::move(out));
}

// Moment.js-style tokens, longest first; text in [brackets] is literal.
std::string FormatDate(std::chrono::system_clock::time_point now, std::string_view format) {
  auto ms_total = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count();
  std::time_t secs = static_cast<std::time_t>(ms_total / 1000);
  int ms = static_cast<int>(ms_total % 1000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  auto pad = [](long v, int width) {
    std::string s = std::to_string(v);
    return std::string(s.size() < static_cast<size_t>(width) ? width - s.size() : 0, '0') + s;
  };
  const std::pair<std::string_view, std::string> tokens[] = {
      {"YYYY", pad(tm.tm_year + 1900, 4)}, {"SSS", pad(ms, 3)},           {"YY", pad((tm.tm_year + 1900) % 100, 2)},
      {"MM", pad(tm.tm_mon + 1, 2)},       {"DD", pad(tm.tm_mday, 2)},    {"HH", pad(tm.tm_hour, 2)},
      {"mm", pad(tm.tm_min, 2)},           {"ss", pad(tm.tm_sec, 2)},     {"M", std::to_string(tm.tm_mon + 1)},
      {"D", std::to_string(tm.tm_mday)},   {"H", std::to_string(tm.tm_hour)}, {"m", std::to_string(tm.tm_min)},
      {"s", std::to_string(tm.tm_sec)},    {"X", std::to_string(secs)},   {"x", std::to_string(ms_total)},
  };
  std::string out;
  for (size_t i = 0; i < format.size();) {
    if (format[i] == '[') {
      size_t close = format.find(']', i);
      if (close == std::string_view::npos) close = format.size();
      out.append(format.substr(i + 1, close - i - 1));
      i = close + 1;
      continue;
    }
    bool matched = false;
    for (const auto& [token, text] : tokens) {
      if (format.substr(i, token.size()) == token) {
        out += text;
        i += token.size();
        matched = true;
        break;
      }
    }
    if (!matched) out += format[i++];
  }
  return out;
}

FnResult FnDate(const Args& a, const Scope& scope) {
  auto now = scope.now.value_or(std::chrono::system_clock::now());
  std::string format = a.empty() ? "YYYY-MM-DD[T]HH:mm:ss.SSS[Z]" : ToText(a[0]);
  return json::Value::String(FormatDate(now, format));
}

using Fn = FnResult (*)(const Args&, const Scope&);
const std::map<std::string_view, Fn>& FunctionTable() {
  static const std::map<std::string_view, Fn> table = {
      {"add", FnAdd},           {"and", FnAnd},         {"concat", FnConcat},
      {"date", FnDate},         {"eq", FnEq},           {"fromBase64", FnFromBase64},
      {"gt", FnGt},             {"gte", FnGte},         {"if", FnIf},
      {"join", FnJoin},         {"length", FnLength},   {"lt", FnLt},
      {"lte", FnLte},           {"neq", FnNeq},         {"not", FnNot},
      {"or", FnOr},             {"randomSecret", FnRandomSecret}, {"replace", FnReplace},
      {"replaceAll", FnReplaceAll}, {"slug", FnSlug},   {"split", FnSplit},
      {"subtract", FnSubtract}, {"toBase64", FnToBase64}, {"toLower", FnToLower},
      {"toUpper", FnToUpper},
  };
  return table;
}

// ---- evaluation --------------------------------------------------------

std::expected<Val, std::string> Eval(const Expr& e, const Scope& scope);

std::expected<Val, std::string> Call(const Expr& e, const Scope& scope) {
  Args args;
  args.reserve(e.args.size());
  bool placeholder = false;
  for (const Expr& a : e.args) {
    auto v = Eval(a, scope);
    if (!v) return v;
    if (v->state == Val::State::kPlaceholder) placeholder = true;
    // Inside a call an unresolved value counts as false (grammar §1.5).
    args.push_back(v->state == Val::State::kValue ? std::move(v->value) : json::Value::Bool(false));
  }
  if (placeholder) return Placeholder();
  auto it = FunctionTable().find(e.text);
  if (it == FunctionTable().end()) return std::unexpected("fn." + e.text + " is not implemented by the runner");
  auto out = it->second(args, scope);
  if (!out) return std::unexpected(out.error());
  return Value(std::move(*out));
}

std::expected<Val, std::string> Eval(const Expr& e, const Scope& scope) {
  switch (e.type) {
    case Expr::Type::kString: return Value(json::Value::String(e.text));
    case Expr::Type::kNumber: return Value(json::Value::NumberText(e.text));
    case Expr::Type::kBool: return Value(json::Value::Bool(e.boolean));
    case Expr::Type::kPath: return ResolvePath(e, scope);
    case Expr::Type::kCall: return Call(e, scope);
  }
  return std::unexpected("unknown expression");
}

EvalError MakeError(std::string_view where, std::string expression, std::string message) {
  return EvalError{std::string(where), std::move(expression), std::move(message)};
}

}  // namespace

std::string EvalError::ToString() const {
  std::string out = where;
  if (!expression.empty()) out += (out.empty() ? "" : ": ") + expression;
  return out + (out.empty() ? "" : ": ") + message;
}

bool IsTruthy(const json::Value& v) {
  switch (v.type()) {
    case json::Type::kNull: return false;
    case json::Type::kBool: return v.as_bool();
    case json::Type::kNumber: return v.as_double() != 0 && !std::isnan(v.as_double());
    case json::Type::kString: {
      const std::string& s = v.as_string();
      return !(s.empty() || s == "0" || MapAscii(s, false) == "false");
    }
    default: return true;
  }
}

std::string ToText(const json::Value& v) {
  switch (v.type()) {
    case json::Type::kNull: return "";
    case json::Type::kBool: return v.as_bool() ? "true" : "false";
    case json::Type::kNumber: return v.number_text();
    case json::Type::kString: return v.as_string();
    default: return json::SerializeCompact(v);
  }
}

std::expected<json::Value, EvalError> EvaluateString(std::string_view text, const Scope& scope,
                                                     std::string_view where) {
  auto parts = expr::ParseInterpolated(text);
  if (!parts) {
    return std::unexpected(MakeError(where, std::string(text),
                                     parts.error().message + " (at byte " + std::to_string(parts.error().pos) + ")"));
  }
  auto spans = expr::FindExpressions(text);
  std::vector<Val> values;
  size_t span_index = 0;
  for (const expr::Part& part : *parts) {
    if (!part.is_expr) continue;
    const expr::Span& span = spans[span_index++];
    std::string spelled(text.substr(span.begin, span.end - span.begin));
    auto v = Eval(part.expr, scope);
    if (!v) return std::unexpected(MakeError(where, spelled, v.error()));
    if (v->state == Val::State::kUnresolved) return std::unexpected(MakeError(where, spelled, v->why));
    if (v->state == Val::State::kPlaceholder) v->value = json::Value::String(spelled);
    values.push_back(std::move(*v));
  }
  if (parts->size() == 1 && (*parts)[0].is_expr) return std::move(values[0].value);
  std::string out;
  size_t value_index = 0;
  for (const expr::Part& part : *parts) {
    out += part.is_expr ? ToText(values[value_index++].value) : part.literal;
  }
  return json::Value::String(std::move(out));
}

json::Value Resolve(const json::Value& value, const Scope& scope, const std::string& where,
                    std::vector<EvalError>* errors) {
  switch (value.type()) {
    case json::Type::kString: {
      const std::string& s = value.as_string();
      if (s.find("${") == std::string::npos) return value;
      auto v = EvaluateString(s, scope, where);
      if (v) return std::move(*v);
      if (errors) errors->push_back(std::move(v.error()));
      return value;
    }
    case json::Type::kArray: {
      json::Value out = json::Value::Array();
      out.items().reserve(value.items().size());
      for (size_t i = 0; i < value.items().size(); ++i) {
        out.items().push_back(Resolve(value.items()[i], scope, where + "[" + std::to_string(i) + "]", errors));
      }
      return out;
    }
    case json::Type::kObject: {
      json::Value out = json::Value::Object();
      out.members().reserve(value.members().size());
      for (const json::Member& m : value.members()) {
        out.members().emplace_back(m.first, Resolve(m.second, scope, where.empty() ? m.first : where + "." + m.first, errors));
      }
      return out;
    }
    default: return value;
  }
}


// ---- node trees --------------------------------------------------------

namespace {

constexpr std::string_view kWorkflow = "Workflow";

std::string StringField(const json::Value& node, std::string_view key) {
  const json::Value* v = node.is_object() ? node.Find(key) : nullptr;
  return v && v->is_string() ? v->as_string() : "";
}

std::string ChildWhere(const std::string& where, size_t i) {
  return where + ".spec.steps[" + std::to_string(i) + "]";
}

class DryRunner {
 public:
  DryRunner(const json::Value& args, const RefMap& triggers, const NameSet& all_refs) {
    scope_.args = &args;
    scope_.refs = &triggers;
    scope_.pending_refs = &visible_;
    scope_.all_refs = &all_refs;
  }

  void Node(const json::Value& node, const std::string& where) {
    if (!node.is_object()) return Problem(where, "a node must be an object {\"kind\": ..., \"spec\": ...}");
    if (NodeKind(node).empty()) return Problem(where + ".kind", "a node needs a \"kind\" (a string)");
    json::Value resolved = ResolveNode(node, scope_, where, &errors_);
    for (NamedResource& r : DeclaredResources(resolved, where)) declared_.insert(r.kind + "\n" + r.name);
    for (NamedResource& r : UsedResources(resolved, where)) used_.push_back(std::move(r));
    if (NodeKind(node) != kWorkflow) return;
    const json::Value* steps = WorkflowSteps(node);
    if (steps == nullptr) return Problem(where + ".spec.steps", "a Workflow needs \"spec\": {\"steps\": [...]}");
    std::string type = StringField(*node.Find("spec"), "type");
    if (!type.empty() && type != "sequential" && type != "parallel") {
      Problem(where + ".spec.type", "a Workflow's type is \"sequential\" or \"parallel\", not \"" + type + "\"");
    }
    // In a sequential workflow each step sees the refs of the steps before
    // it (and of their descendants); parallel siblings see none of each other's.
    std::vector<std::string> added;
    for (size_t i = 0; i < steps->items().size(); ++i) {
      Node(steps->items()[i], ChildWhere(where, i));
      if (type == "parallel") continue;
      NameSet refs;
      CollectNodeRefs(steps->items()[i], refs);
      for (const std::string& r : refs) {
        if (visible_.insert(r).second) added.push_back(r);
      }
    }
    for (const std::string& r : added) visible_.erase(r);
  }

  // Every resource used by name must exist or be declared in the flow.
  void CheckResources(const ResourceExists& exists) {
    for (const NamedResource& r : used_) {
      if (declared_.contains(r.kind + "\n" + r.name) || exists(r.kind, r.name)) continue;
      Problem(r.where, r.kind + " \"" + r.name + "\" does not exist; declare it in a Template");
    }
  }

  std::vector<EvalError> TakeErrors() { return std::move(errors_); }

 private:
  void Problem(const std::string& where, std::string message) {
    errors_.push_back(EvalError{where, "", std::move(message)});
  }

  Scope scope_;
  NameSet visible_;
  std::vector<EvalError> errors_;
  NameSet declared_;  // "kind\nname" of resources the flow's nodes declare
  std::vector<NamedResource> used_;
};

}  // namespace

std::string NodeKind(const json::Value& node) { return StringField(node, "kind"); }
std::string NodeRef(const json::Value& node) { return StringField(node, "ref"); }

const json::Value* WorkflowSteps(const json::Value& node) {
  if (NodeKind(node) != kWorkflow) return nullptr;
  const json::Value* spec = node.Find("spec");
  const json::Value* steps = spec && spec->is_object() ? spec->Find("steps") : nullptr;
  return steps && steps->is_array() ? steps : nullptr;
}

void CollectNodeRefs(const json::Value& node, NameSet& out) {
  if (std::string ref = NodeRef(node); !ref.empty()) out.insert(ref);
  if (const json::Value* steps = WorkflowSteps(node)) {
    for (const json::Value& step : steps->items()) CollectNodeRefs(step, out);
  }
}

// The flow's declared arguments (their defaults) overlaid with the run's.
json::Value MergeArgs(const json::Value& body, const json::Value& overrides) {
  json::Value args = json::Value::Object();
  if (const json::Value* declared = body.Find("arguments"); declared && declared->is_object()) args = *declared;
  if (overrides.is_object()) {
    for (const json::Member& m : overrides.members()) args.Set(m.first, m.second);
  }
  return args;
}

RefMap RefsFromTriggers(const json::Value& trigger_refs) {
  RefMap refs;
  if (trigger_refs.is_object()) {
    for (const json::Member& m : trigger_refs.members()) refs[m.first] = m.second;
  }
  return refs;
}

// Every member of a node but "kind", "ref" and a Workflow's spec.steps
// (steps resolve when they run), resolved.
json::Value ResolveNode(const json::Value& node, const Scope& scope, const std::string& where,
                        std::vector<EvalError>* errors) {
  json::Value out = json::Value::Object();
  bool workflow = NodeKind(node) == kWorkflow;
  for (const json::Member& m : node.members()) {
    if (m.first == "kind" || m.first == "ref") {
      out.members().push_back(m);
    } else if (workflow && m.first == "spec" && m.second.is_object()) {
      json::Value spec = json::Value::Object();
      for (const json::Member& sm : m.second.members()) {
        if (sm.first != "steps") spec.members().emplace_back(sm.first, Resolve(sm.second, scope, where + ".spec." + sm.first, errors));
      }
      out.members().emplace_back("spec", std::move(spec));
    } else {
      out.members().emplace_back(m.first, Resolve(m.second, scope, where + "." + m.first, errors));
    }
  }
  return out;
}

std::vector<EvalError> DryRun(const json::Value& body, const json::Value& args, const json::Value& trigger_refs,
                              const ResourceExists& exists) {
  const json::Value* root = body.is_object() ? body.Find("spec") : nullptr;
  if (root == nullptr || !root->is_object()) {
    return {EvalError{"spec", "", "the flow has no \"spec\" (one root Workflow node)"}};
  }
  json::Value merged = MergeArgs(body, args);
  RefMap triggers = RefsFromTriggers(trigger_refs);
  NameSet all_refs;
  CollectNodeRefs(*root, all_refs);
  DryRunner runner(merged, triggers, all_refs);
  runner.Node(*root, "spec");
  if (exists) runner.CheckResources(exists);
  return runner.TakeErrors();
}

}  // namespace gitopsd::runner
