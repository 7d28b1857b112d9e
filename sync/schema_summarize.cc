// What the compiler works out once for the evaluator: which groups of
// keywords a node uses, a cheap test for the "if" of a kind switch, and for
// each anyOf/oneOf branch the properties that tell it apart and its name in
// messages.
#include "sync/schema_internal.h"

#include <algorithm>

namespace gitopsd::schema::internal {
namespace {

void CollectDiscriminators(const Node* n, std::vector<Discriminator>& out, int depth) {
  n = Deref(n);
  if (!n || n->boolean || depth > 3) return;
  for (const auto& [name, schema] : n->properties) {
    const Node* p = Deref(schema);
    if (p && p->const_value) out.push_back({name, {*p->const_value}});
    else if (p && p->enum_values && !p->enum_values->empty()) out.push_back({name, *p->enum_values});
  }
  for (const Node* part : n->all_of) CollectDiscriminators(part, out, depth + 1);
}

std::string LabelBranch(const Branch& b, size_t index) {
  const Node* n = Deref(b.schema);
  if (n && !n->title.empty()) return n->title;
  if (!b.discriminators.empty()) {
    const Discriminator& d = b.discriminators.front();
    std::string out = "object with " + Quote(d.property) + ": ";
    for (size_t i = 0; i < d.values.size() && i < 4; ++i) out += (i ? " or " : "") + Brief(d.values[i]);
    return out;
  }
  if (n && n->const_value) return Brief(*n->const_value);
  if (b.types != 0) return DescribeTypes(b.types);
  if (b.schema->has_ref) return "$ref " + Quote(b.schema->ref_text);
  return "form " + std::to_string(index + 1);
}

// A property tells branches apart when at least two branches pin it with
// const/enum and no value is allowed by two of them ("kind": "Build" vs
// "Deploy"). A property every branch pins to the same value (apiVersion),
// or that only one branch constrains (an enum field), selects nothing.
bool Discriminates(const std::vector<std::vector<Discriminator>>& candidates,
                   const std::string& property) {
  std::vector<const std::vector<json::Value>*> sets;
  for (const auto& branch : candidates) {
    for (const auto& d : branch) {
      if (d.property == property) sets.push_back(&d.values);
    }
  }
  if (sets.size() < 2) return false;
  for (size_t i = 0; i < sets.size(); ++i) {
    for (size_t j = i + 1; j < sets.size(); ++j) {
      for (const auto& value : *sets[i]) {
        if (std::find(sets[j]->begin(), sets[j]->end(), value) != sets[j]->end()) return false;
      }
    }
  }
  return true;
}

}  // namespace

void FinalizeBranches(std::vector<Branch>& branches) {
  std::vector<std::vector<Discriminator>> candidates(branches.size());
  for (size_t i = 0; i < branches.size(); ++i) {
    std::vector<Discriminator> found;
    CollectDiscriminators(branches[i].schema, found, 0);
    for (auto& d : found) {  // the first constraint on a property wins
      auto same = [&](const Discriminator& x) { return x.property == d.property; };
      if (std::none_of(candidates[i].begin(), candidates[i].end(), same)) {
        candidates[i].push_back(std::move(d));
      }
    }
  }
  for (size_t i = 0; i < branches.size(); ++i) {
    Branch& b = branches[i];
    b.discriminators.clear();
    for (const auto& d : candidates[i]) {
      if (Discriminates(candidates, d.property)) b.discriminators.push_back(d);
    }
    const Node* n = Deref(b.schema);
    b.types = n && !n->boolean ? n->types : 0;
    b.label = LabelBranch(b, i);
  }
}

void Summarize(Node& n) {
  n.value_checks = n.types != 0 || n.enum_values || n.const_value;
  n.object_checks = !n.properties.empty() || !n.required.empty() || n.additional_properties ||
                    !n.pattern_properties.empty() || n.property_names || !n.dependencies.empty() ||
                    n.min_properties || n.max_properties;
  n.array_checks = n.items || n.tuple_items || n.contains || n.min_items || n.max_items || n.unique_items;
  n.string_checks = n.min_length || n.max_length || n.pattern;
  n.number_checks = n.minimum || n.maximum || n.exclusive_minimum || n.exclusive_maximum || n.multiple_of;
  n.combinators = !n.all_of.empty() || !n.any_of.empty() || !n.one_of.empty() || n.not_schema || n.if_schema;

  const Node* test = n.if_schema;
  if (!test || test->boolean || test->has_ref || test->value_checks || test->array_checks ||
      test->string_checks || test->number_checks || test->combinators || test->properties.size() != 1 ||
      test->additional_properties || !test->pattern_properties.empty() || test->property_names ||
      !test->dependencies.empty() || test->min_properties || test->max_properties) {
    return;
  }
  const auto& [property, schema] = test->properties.front();
  bool const_only = !schema->boolean && !schema->has_ref && schema->const_value && schema->types == 0 &&
                    !schema->enum_values && !schema->object_checks && !schema->array_checks &&
                    !schema->string_checks && !schema->number_checks && !schema->combinators;
  bool required_ok = std::all_of(test->required.begin(), test->required.end(),
                                 [&](const std::string& r) { return r == property; });
  if (const_only && required_ok) {
    n.if_const = Node::ConstTest{property, *schema->const_value, !test->required.empty()};
  }
}

}  // namespace gitopsd::schema::internal
