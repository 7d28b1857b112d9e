// The evaluator's core (recursion, paths, $refs) and the keywords that apply
// to any value, strings and numbers.
#include "sync/schema_evaluator.h"

#include <algorithm>
#include <cmath>

namespace gitopsd::schema::internal {
namespace {

// Deeper than this without the document getting deeper means a $ref cycle.
constexpr int kMaxDepth = 512;

bool IsMultipleOf(double value, double divisor) {
  double quotient = value / divisor;
  if (!std::isfinite(quotient)) return false;
  // Decimal divisors such as 0.01 are not exact in binary; accept quotients
  // within rounding error of an integer.
  return std::abs(quotient - std::round(quotient)) <= 1e-9 * std::max(1.0, std::abs(quotient));
}

}  // namespace

std::string Evaluator::Pointer() const {
  std::string out;
  for (const Segment& s : path_) {
    out += '/';
    out += s.is_index ? std::to_string(s.index) : EscapeToken(s.key);
  }
  return out;
}

std::string Evaluator::Subject() const {
  if (!subject_override_.empty()) return subject_override_;
  if (path_.empty()) return "the document";
  std::string out;
  for (const Segment& s : path_) {
    if (s.is_index) {
      out += "[" + std::to_string(s.index) + "]";
    } else {
      if (!out.empty()) out += '.';
      out += s.key;
    }
  }
  return Quote(out);
}

bool Evaluator::Test(const Node& n, const json::Value& v) {
  std::vector<Violation>* saved = std::exchange(out_, nullptr);
  bool ok = Eval(n, v);
  out_ = saved;
  return ok;
}

std::vector<Violation> Evaluator::CollectInto(const Node& n, const json::Value& v) {
  std::vector<Violation> local;
  std::vector<Violation>* saved = std::exchange(out_, &local);
  Eval(n, v);
  out_ = saved;
  return local;
}

bool Evaluator::Eval(const Node& n, const json::Value& v) {
  if (!error_.empty()) return false;
  if (depth_ >= kMaxDepth) {
    error_ = "schema recursion is too deep at " + n.location +
             " (a $ref cycle that never descends into the document?)";
    return false;
  }
  ++depth_;
  bool ok = EvalKeywords(n, v);
  --depth_;
  return ok;
}

bool Evaluator::EvalKeywords(const Node& n, const json::Value& v) {
  if (n.boolean) {
    if (*n.boolean) return true;
    return Reject(v, "false", [&] { return Subject() + " is not allowed here"; });
  }
  if (n.has_ref) {
    if (n.ref) return Eval(*n.ref, v);
    error_ = "\"$ref\" " + Quote(n.ref_text) + " at " + n.location + " names " +
             Quote(SplitFragment(n.ref_uri).first) + ", which is not a registered schema";
    return false;
  }
  bool ok = !n.value_checks || CheckValue(n, v);
  if (!Continue(ok)) return false;
  switch (v.type()) {
    case json::Type::kObject: ok = (!n.object_checks || CheckObject(n, v)) && ok; break;
    case json::Type::kArray: ok = (!n.array_checks || CheckArray(n, v)) && ok; break;
    case json::Type::kString: ok = (!n.string_checks || CheckString(n, v)) && ok; break;
    case json::Type::kNumber: ok = (!n.number_checks || CheckNumber(n, v)) && ok; break;
    default: break;
  }
  if (!n.combinators || !Continue(ok)) return ok;
  return CheckCombinators(n, v) && ok;
}

bool Evaluator::CheckValue(const Node& n, const json::Value& v) {
  if (!TypeAllows(n.types, v)) {
    return Reject(v, "type", [&] {
      return "expected " + DescribeTypes(n.types) + ", got " + json::TypeName(v.type());
    });
  }
  if (n.enum_values && std::find(n.enum_values->begin(), n.enum_values->end(), v) == n.enum_values->end()) {
    return Reject(v, "enum", [&] {
      std::string allowed = n.enum_values->size() == 1 ? Brief(n.enum_values->front())
                                                       : "one of " + JoinBrief(*n.enum_values);
      return Subject() + " must be " + allowed + " (got " + Brief(v) + ")";
    });
  }
  if (n.const_value && !(*n.const_value == v)) {
    return Reject(v, "const", [&] {
      return Subject() + " must be " + Brief(*n.const_value) + " (got " + Brief(v) + ")";
    });
  }
  return true;
}

bool Evaluator::CheckString(const Node& n, const json::Value& v) {
  bool ok = true;
  if (n.min_length || n.max_length) {
    size_t length = CodePoints(v.as_string());
    if (n.min_length && length < *n.min_length) {
      ok = Reject(v, "minLength", [&] {
        return Subject() + " must be at least " + std::to_string(*n.min_length) + " character" +
               (*n.min_length == 1 ? "" : "s") + " long (got " + std::to_string(length) + ")";
      });
    }
    if (n.max_length && length > *n.max_length) {
      ok = Reject(v, "maxLength", [&] {
        return Subject() + " must be at most " + std::to_string(*n.max_length) + " character" +
               (*n.max_length == 1 ? "" : "s") + " long (got " + std::to_string(length) + ")";
      });
    }
  }
  if (n.pattern && Continue(ok) && !n.pattern->Search(v.as_string())) {
    ok = Reject(v, "pattern", [&] {
      return Subject() + " must match the pattern " + Quote(n.pattern->source()) + " (got " + Brief(v) + ")";
    });
  }
  return ok;
}

bool Evaluator::CheckNumber(const Node& n, const json::Value& v) {
  bool ok = true;
  double x = v.as_double();
  auto bound = [&](const std::optional<Bound>& b, bool pass, const char* keyword, const char* relation) {
    if (!b || pass || !Continue(ok)) return;
    ok = Reject(v, keyword, [&] {
      return Subject() + " must be " + relation + " " + b->text + " (got " + v.number_text() + ")";
    });
  };
  bound(n.minimum, n.minimum && x >= n.minimum->value, "minimum", ">=");
  bound(n.maximum, n.maximum && x <= n.maximum->value, "maximum", "<=");
  bound(n.exclusive_minimum, n.exclusive_minimum && x > n.exclusive_minimum->value, "exclusiveMinimum", ">");
  bound(n.exclusive_maximum, n.exclusive_maximum && x < n.exclusive_maximum->value, "exclusiveMaximum", "<");
  if (n.multiple_of && Continue(ok) && !IsMultipleOf(x, n.multiple_of->value)) {
    ok = Reject(v, "multipleOf", [&] {
      return Subject() + " must be a multiple of " + n.multiple_of->text + " (got " + v.number_text() + ")";
    });
  }
  return ok;
}

}  // namespace gitopsd::schema::internal
