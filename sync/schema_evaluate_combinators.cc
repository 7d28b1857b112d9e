// The evaluator's allOf/anyOf/oneOf/not/if keywords, and how a document
// that matches no branch of an anyOf/oneOf is explained.
#include "sync/schema_evaluator.h"

#include <algorithm>

namespace gitopsd::schema::internal {

bool Evaluator::CheckCombinators(const Node& n, const json::Value& v) {
  bool ok = true;
  for (const Node* part : n.all_of) {
    if (!Continue(ok)) return false;
    ok = Eval(*part, v) && ok;
  }
  if (!n.any_of.empty() && Continue(ok)) {
    bool any = std::any_of(n.any_of.begin(), n.any_of.end(),
                           [&](const Branch& b) { return Test(*b.schema, v); });
    if (!any) ok = ExplainNoMatch(n.any_of, v, "anyOf");
  }
  if (!n.one_of.empty() && Continue(ok)) ok = CheckOneOf(n, v) && ok;
  if (n.not_schema && Continue(ok) && Test(*n.not_schema, v)) {
    ok = Reject(v, "not", [&] { return Subject() + " must not match the schema in \"not\""; });
  }
  if (n.if_schema && Continue(ok)) {
    const Node* next = IfHolds(n, v) ? n.then_schema : n.else_schema;
    if (next) ok = Eval(*next, v) && ok;
  }
  return ok;
}

bool Evaluator::IfHolds(const Node& n, const json::Value& v) {
  if (!n.if_const) return Test(*n.if_schema, v);
  if (!v.is_object()) return true;
  const json::Value* value = v.Find(n.if_const->property);
  return value ? *value == n.if_const->value : !n.if_const->required;
}

bool Evaluator::CheckOneOf(const Node& n, const json::Value& v) {
  std::vector<size_t> matched;
  for (size_t i = 0; i < n.one_of.size(); ++i) {
    if (Test(*n.one_of[i].schema, v)) matched.push_back(i);
    if (matched.size() > 1 && !collecting()) return false;
  }
  if (matched.size() == 1) return true;
  if (matched.empty()) return ExplainNoMatch(n.one_of, v, "oneOf");
  return Reject(v, "oneOf", [&] {
    return Subject() + " matches more than one of the allowed forms (" + n.one_of[matched[0]].label +
           " and " + n.one_of[matched[1]].label + "); it must match exactly one";
  });
}

// Why no branch of an anyOf/oneOf matched, in the fewest useful words: the
// errors of the branch the document evidently meant (by a discriminating
// const/enum property such as "kind", or by being the only branch of its
// type), else one summary naming the allowed forms.
bool Evaluator::ExplainNoMatch(const std::vector<Branch>& branches, const json::Value& v,
                               const char* keyword) {
  if (!collecting()) return false;
  size_t before = out_->size();
  if (v.is_object()) {
    std::vector<const Branch*> discriminated, matching;
    for (const Branch& b : branches) {
      if (b.discriminators.empty()) continue;
      discriminated.push_back(&b);
      bool all = std::all_of(b.discriminators.begin(), b.discriminators.end(), [&](const Discriminator& d) {
        const json::Value* value = v.Find(d.property);
        return value && std::find(d.values.begin(), d.values.end(), *value) != d.values.end();
      });
      if (all) matching.push_back(&b);
    }
    if (!matching.empty()) {
      ReportBestBranch(matching, v);
    } else if (!discriminated.empty()) {
      ExplainDiscriminator(discriminated, v, keyword);
    }
  }
  if (out_->size() == before) {
    std::vector<const Branch*> typed;
    for (const Branch& b : branches) {
      if (TypeAllows(b.types, v)) typed.push_back(&b);
    }
    if (typed.size() == 1 && branches.size() > 1) ReportBestBranch(typed, v);
  }
  if (out_->size() == before) {
    Reject(v, keyword, [&] {
      std::string forms;
      for (const Branch& b : branches) forms += (forms.empty() ? "" : "; ") + b.label;
      return Subject() + " does not match any of the allowed forms: " + forms + " (got " + Brief(v) + ")";
    });
  }
  return false;
}

bool Evaluator::ExplainDiscriminator(const std::vector<const Branch*>& branches, const json::Value& v,
                                     const char* keyword) {
  // A property every discriminated branch constrains, whose value in the
  // document no branch accepts: that is the one to point at.
  for (const Discriminator& first : branches.front()->discriminators) {
    std::vector<json::Value> allowed;
    bool common = true;
    for (const Branch* b : branches) {
      auto d = std::find_if(b->discriminators.begin(), b->discriminators.end(),
                            [&](const Discriminator& x) { return x.property == first.property; });
      if (d == b->discriminators.end()) { common = false; break; }
      for (const auto& value : d->values) {
        if (std::find(allowed.begin(), allowed.end(), value) == allowed.end()) allowed.push_back(value);
      }
    }
    if (!common) continue;
    const json::Value* value = v.Find(first.property);
    if (!value) {
      return Reject(v, keyword, [&] {
        return "missing required property " + Quote(first.property) +
               (path_.empty() ? "" : " in " + Subject()) +
               " (one of " + JoinBrief(allowed) + ")";
      });
    }
    if (std::find(allowed.begin(), allowed.end(), *value) != allowed.end()) continue;
    PathScope scope(*this, first.property);
    return Reject(*value, keyword, [&] {
      return Subject() + " must be one of " + JoinBrief(allowed) + " (got " + Brief(*value) + ")";
    });
  }
  return true;
}

void Evaluator::ReportBestBranch(const std::vector<const Branch*>& branches, const json::Value& v) {
  if (branches.size() == 1) {
    Eval(*branches.front()->schema, v);
    return;
  }
  std::vector<Violation> best;
  for (const Branch* b : branches) {
    std::vector<Violation> found = CollectInto(*b->schema, v);
    if (best.empty() || (!found.empty() && found.size() < best.size())) best = std::move(found);
  }
  for (auto& violation : best) {
    if (full()) break;
    out_->push_back(std::move(violation));
  }
}

}  // namespace gitopsd::schema::internal
