// The evaluator's object and array keywords.
#include "sync/schema_evaluator.h"

#include <algorithm>

namespace gitopsd::schema::internal {

bool Evaluator::CheckObject(const Node& n, const json::Value& v) {
  bool ok = true;
  size_t count = v.members().size();
  if (n.min_properties && count < *n.min_properties) {
    ok = Reject(v, "minProperties", [&] {
      return Subject() + " must have at least " + std::to_string(*n.min_properties) + " properties (got " +
             std::to_string(count) + ")";
    });
  }
  if (n.max_properties && count > *n.max_properties) {
    ok = Reject(v, "maxProperties", [&] {
      return Subject() + " must have at most " + std::to_string(*n.max_properties) + " properties (got " +
             std::to_string(count) + ")";
    });
  }
  for (const std::string& name : n.required) {
    if (!Continue(ok)) return false;
    if (!v.Find(name)) {
      ok = Reject(v, "required", [&] {
        std::string where = path_.empty() ? "" : " in " + Subject();
        return "missing required property " + Quote(name) + where;
      });
    }
  }
  if (!Continue(ok)) return false;
  ok = CheckMembers(n, v) && ok;
  if (!Continue(ok)) return false;
  ok = CheckPropertyNames(n, v) && ok;
  if (!Continue(ok)) return false;
  return CheckDependencies(n, v) && ok;
}

std::string Evaluator::UnknownKeyMessage(const Node& n, std::string_view key) const {
  std::string message = "unknown key " + Quote(key);
  const std::string* best = nullptr;
  size_t best_distance = std::max<size_t>(1, std::min<size_t>(3, key.size() / 3)) + 1;
  for (const auto& [name, schema] : n.properties) {
    size_t d = EditDistance(key, name);
    if (d < best_distance) {
      best_distance = d;
      best = &name;
    }
  }
  if (!path_.empty()) message += " in " + Subject();
  if (best) message += " (did you mean " + Quote(*best) + "?)";
  return message;
}

bool Evaluator::CheckMembers(const Node& n, const json::Value& v) {
  // Schemas that only list a few properties (the "if" of a kind switch) are
  // cheaper to drive from the schema side.
  constexpr size_t kFewProperties = 4;
  if (n.pattern_properties.empty() && !n.additional_properties && n.properties.size() <= kFewProperties) {
    return CheckListedProperties(n, v);
  }
  bool ok = true;
  for (const auto& [key, value] : v.members()) {
    if (!Continue(ok)) return false;
    bool known = false;
    if (const Node* schema = n.FindProperty(key)) {
      known = true;
      PathScope scope(*this, key);
      ok = Eval(*schema, value) && ok;
    }
    for (const PatternProperty& pp : n.pattern_properties) {
      if (!Continue(ok)) return false;
      if (!pp.pattern.Search(key)) continue;
      known = true;
      PathScope scope(*this, key);
      ok = Eval(*pp.schema, value) && ok;
    }
    if (known || !n.additional_properties) continue;
    if (n.additional_properties->boolean == false) {
      std::string message = collecting() ? UnknownKeyMessage(n, key) : "";
      PathScope scope(*this, key);
      ok = RejectAt(value.key_offset(), "additionalProperties", [&] { return message; });
    } else {
      PathScope scope(*this, key);
      ok = Eval(*n.additional_properties, value) && ok;
    }
  }
  return ok;
}

bool Evaluator::CheckListedProperties(const Node& n, const json::Value& v) {
  bool ok = true;
  for (const auto& [name, schema] : n.properties) {
    if (!Continue(ok)) return false;
    const json::Value* value = v.Find(name);
    if (!value) continue;
    PathScope scope(*this, name);
    ok = Eval(*schema, *value) && ok;
  }
  return ok;
}

bool Evaluator::CheckPropertyNames(const Node& n, const json::Value& v) {
  if (!n.property_names) return true;
  bool ok = true;
  for (const auto& [key, value] : v.members()) {
    if (!Continue(ok)) return false;
    json::Value name = json::Value::String(key);
    name.set_offset(value.key_offset());
    if (Test(*n.property_names, name)) continue;
    ok = false;
    if (!collecting()) return false;
    PathScope scope(*this, key);
    std::string saved = std::exchange(subject_override_, "key " + Quote(key));
    Eval(*n.property_names, name);
    subject_override_ = std::move(saved);
  }
  return ok;
}

bool Evaluator::CheckDependencies(const Node& n, const json::Value& v) {
  bool ok = true;
  for (const Dependency& d : n.dependencies) {
    if (!Continue(ok)) return false;
    if (!v.Find(d.property)) continue;
    for (const std::string& name : d.required) {
      if (v.Find(name)) continue;
      ok = Reject(v, "dependencies", [&] {
        return "missing property " + Quote(name) + ", which is required when " + Quote(d.property) +
               " is present" + (path_.empty() ? "" : " in " + Subject());
      });
    }
    if (d.schema) ok = Eval(*d.schema, v) && ok;
  }
  return ok;
}

bool Evaluator::CheckArray(const Node& n, const json::Value& v) {
  bool ok = true;
  const auto& items = v.items();
  if (n.min_items && items.size() < *n.min_items) {
    ok = Reject(v, "minItems", [&] {
      return Subject() + " must have at least " + std::to_string(*n.min_items) + " item" +
             (*n.min_items == 1 ? "" : "s") + " (got " + std::to_string(items.size()) + ")";
    });
  }
  if (n.max_items && items.size() > *n.max_items) {
    ok = Reject(v, "maxItems", [&] {
      return Subject() + " must have at most " + std::to_string(*n.max_items) + " item" +
             (*n.max_items == 1 ? "" : "s") + " (got " + std::to_string(items.size()) + ")";
    });
  }
  if (!Continue(ok)) return false;
  ok = CheckItems(n, v) && ok;
  if (n.contains && Continue(ok)) {
    bool found = std::any_of(items.begin(), items.end(),
                             [&](const auto& item) { return Test(*n.contains, item); });
    if (!found) {
      ok = Reject(v, "contains", [&] {
        const Node* c = Deref(n.contains);
        if (c && c->const_value) return Subject() + " must contain " + Brief(*c->const_value);
        return Subject() + " must contain at least one item that matches the \"contains\" schema";
      });
    }
  }
  if (n.unique_items && Continue(ok)) {
    for (size_t j = 1; j < items.size() && Continue(ok); ++j) {
      for (size_t i = 0; i < j; ++i) {
        if (!(items[i] == items[j])) continue;
        std::string subject = collecting() ? Subject() : "";
        PathScope scope(*this, j);
        ok = Reject(items[j], "uniqueItems", [&] {
          return subject + " must not contain duplicates (items " + std::to_string(i) + " and " +
                 std::to_string(j) + " are equal)";
        });
        break;
      }
    }
  }
  return ok;
}

bool Evaluator::CheckItems(const Node& n, const json::Value& v) {
  bool ok = true;
  const auto& items = v.items();
  if (n.items) {
    for (size_t i = 0; i < items.size() && Continue(ok); ++i) {
      PathScope scope(*this, i);
      ok = Eval(*n.items, items[i]) && ok;
    }
    return ok;
  }
  if (!n.tuple_items) return true;
  const auto& tuple = *n.tuple_items;
  for (size_t i = 0; i < items.size() && Continue(ok); ++i) {
    if (i < tuple.size()) {
      PathScope scope(*this, i);
      ok = Eval(*tuple[i], items[i]) && ok;
    } else if (!n.additional_items) {
      break;
    } else if (n.additional_items->boolean == false) {
      std::string subject = collecting() ? Subject() : "";
      PathScope scope(*this, i);
      return RejectAt(items[i].offset(), "additionalItems", [&] {
        return subject + " must have at most " + std::to_string(tuple.size()) + " items (got " +
               std::to_string(items.size()) + ")";
      });
    } else {
      PathScope scope(*this, i);
      ok = Eval(*n.additional_items, items[i]) && ok;
    }
  }
  return ok;
}

}  // namespace gitopsd::schema::internal
