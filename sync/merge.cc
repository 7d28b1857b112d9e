#include "sync/merge.h"

#include <optional>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <utility>

namespace gitopsd::json {
namespace {

std::string PointerToken(std::string_view s) {
  std::string out;
  for (char c : s) {
    if (c == '~') out += "~0";
    else if (c == '/') out += "~1";
    else out += c;
  }
  return out;
}

// Presence counts: a missing key differs from every value.
bool Same(const Value* a, const Value* b) { return (!a && !b) || (a && b && *a == *b); }

// An array whose elements are objects with a string "ref", unique within it,
// indexed by ref. Empty arrays qualify: a list of steps may start empty.
struct RefIndex {
  std::vector<std::string_view> order;
  std::unordered_map<std::string_view, const Value*> by_ref;

  const Value* Find(std::string_view ref) const {
    auto it = by_ref.find(ref);
    return it == by_ref.end() ? nullptr : it->second;
  }
};

std::optional<RefIndex> IndexByRef(const Value& array) {
  RefIndex index;
  for (const Value& item : array.items()) {
    const Value* ref = item.is_object() ? item.Find("ref") : nullptr;
    if (!ref || !ref->is_string()) return std::nullopt;
    if (!index.by_ref.emplace(ref->as_string(), &item).second) return std::nullopt;
    index.order.push_back(ref->as_string());
  }
  return index;
}

// The refs of `side` that the other two versions also have, in side's order.
std::vector<std::string_view> CommonOrder(const RefIndex& side, const RefIndex& x, const RefIndex& y) {
  std::vector<std::string_view> out;
  for (std::string_view r : side.order) {
    if (x.Find(r) && y.Find(r)) out.push_back(r);
  }
  return out;
}

class Merger {
 public:
  std::vector<MergeConflict> TakeConflicts() { return std::move(conflicts_); }

  // Merges one slot (a key or an element); nullptr means absent. Returns
  // nullopt when the merged document does not have the slot.
  std::optional<Value> Slot(const Value* base, const Value* ours, const Value* theirs,
                            const std::string& pointer) {
    if (Same(ours, theirs) || Same(ours, base)) return Copy(theirs);
    if (Same(theirs, base)) return Copy(ours);
    if (ours && theirs && ours->is_object() && theirs->is_object()) {
      static const Value kEmpty = Value::Object();
      return Objects(base && base->is_object() ? *base : kEmpty, *ours, *theirs, pointer);
    }
    if (ours && theirs && ours->is_array() && theirs->is_array()) {
      static const Value kEmpty = Value::Array();
      auto merged = RefArrays(base && base->is_array() ? *base : kEmpty, *ours, *theirs, pointer);
      if (merged) return merged;
    }
    conflicts_.push_back({pointer});
    return Copy(theirs);
  }

 private:
  static std::optional<Value> Copy(const Value* v) {
    return v ? std::optional<Value>(*v) : std::nullopt;
  }

  Value Objects(const Value& base, const Value& ours, const Value& theirs, const std::string& pointer) {
    std::vector<Member> members;
    auto merge_key = [&](const std::string& key) {
      auto v = Slot(base.Find(key), ours.Find(key), theirs.Find(key), pointer + "/" + PointerToken(key));
      if (v) members.emplace_back(key, std::move(*v));
    };
    for (const Member& m : theirs.members()) merge_key(m.first);
    for (const Member& m : ours.members()) {
      if (!theirs.Find(m.first)) merge_key(m.first);
    }
    return Value::Object(std::move(members));
  }

  // nullopt when the three arrays are not all matched by ref.
  std::optional<Value> RefArrays(const Value& base, const Value& ours, const Value& theirs,
                                 const std::string& pointer) {
    auto b = IndexByRef(base), o = IndexByRef(ours), t = IndexByRef(theirs);
    if (!b || !o || !t) return std::nullopt;
    std::unordered_map<std::string_view, Value> merged;
    auto merge_ref = [&](std::string_view ref) {
      auto v = Slot(b->Find(ref), o->Find(ref), t->Find(ref),
                    pointer + "/ref=" + PointerToken(ref));
      if (v) merged.emplace(ref, std::move(*v));
    };
    for (std::string_view r : t->order) merge_ref(r);
    for (std::string_view r : o->order) {
      if (!t->Find(r)) merge_ref(r);
    }
    // Whose order leads: theirs, unless only ours moved elements around.
    auto base_order = CommonOrder(*b, *o, *t);
    auto ours_order = CommonOrder(*o, *b, *t);
    auto theirs_order = CommonOrder(*t, *b, *o);
    bool ours_lead = theirs_order == base_order && ours_order != base_order;
    if (ours_order != base_order && theirs_order != base_order && ours_order != theirs_order) {
      conflicts_.push_back({pointer});
    }
    const RefIndex& lead = ours_lead ? *o : *t;
    const RefIndex& other = ours_lead ? *t : *o;
    return Value::Array(Interleave(lead, other, merged));
  }

  // The lead side's elements in its order, with the elements only the other
  // side has inserted after their predecessor there.
  static std::vector<Value> Interleave(const RefIndex& lead, const RefIndex& other,
                                       std::unordered_map<std::string_view, Value>& merged) {
    std::unordered_map<std::string_view, std::vector<std::string_view>> after;
    std::vector<std::string_view> front;
    std::vector<std::string_view>* cursor = &front;
    for (std::string_view r : other.order) {
      if (!merged.contains(r)) continue;
      if (lead.Find(r)) cursor = &after[r];
      else cursor->push_back(r);
    }
    std::vector<Value> items;
    auto take = [&](std::string_view r) {
      auto it = merged.find(r);
      if (it != merged.end()) items.push_back(std::move(it->second));
    };
    for (std::string_view r : front) take(r);
    for (std::string_view r : lead.order) {
      take(r);
      auto it = after.find(r);
      if (it == after.end()) continue;
      for (std::string_view added : it->second) take(added);
    }
    return items;
  }

  std::vector<MergeConflict> conflicts_;
};

}  // namespace

MergeResult Merge3(const Value& base, const Value& ours, const Value& theirs) {
  Merger merger;
  std::optional<Value> merged = merger.Slot(&base, &ours, &theirs, "");
  return MergeResult{merged ? std::move(*merged) : Value(), merger.TakeConflicts()};
}

}  // namespace gitopsd::json
