#include "sync/json_edit.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <unordered_map>
#include <utility>
#include <vector>

namespace gitopsd::json {
namespace {

// The habits of a file, used for text the file does not have yet.
struct Style {
  std::string newline = "\n";
  std::string unit = "  ";     // one level of indentation
  std::string colon = ": ";    // ':' and what follows it
  std::string comma = ", ";    // ',' between items on one line
  bool object_pad = true;      // "{ " rather than "{" on one line
  bool array_pad = false;      // "[ " rather than "["
};

bool IsSpace(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }
bool IsBreak(char c) { return c == '\n' || c == '\r'; }

// REQUIRES: text[i] is the opening quote of a valid JSON string.
size_t StringEnd(std::string_view text, size_t i) {
  for (++i; text[i] != '"'; ++i) {
    if (text[i] == '\\') ++i;
  }
  return i + 1;
}

std::string_view Blanks(std::string_view text, size_t i) {
  size_t j = i;
  while (j < text.size() && (text[j] == ' ' || text[j] == '\t')) ++j;
  return text.substr(i, j - i);
}

// One pass over the text: the first instance of each habit decides it.
Style DetectStyle(std::string_view text) {
  Style s;
  bool newline = false, unit = false, colon = false, comma = false, obj = false, arr = false;
  for (size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (c == '"') {
      i = StringEnd(text, i) - 1;
    } else if (c == '\n') {
      if (!newline) s.newline = (i > 0 && text[i - 1] == '\r') ? "\r\n" : "\n";
      newline = true;
      std::string_view lead = Blanks(text, i + 1);
      size_t next = i + 1 + lead.size();
      if (!unit && !lead.empty() && next < text.size() && !IsBreak(text[next])) {
        s.unit = std::string(lead);
        unit = true;
      }
    } else if (c == ':' && !colon) {
      s.colon = ":" + std::string(Blanks(text, i + 1));
      colon = true;
    } else if (c == ',' && !comma) {
      std::string_view after = Blanks(text, i + 1);
      size_t next = i + 1 + after.size();
      if (next < text.size() && !IsBreak(text[next])) {
        s.comma = "," + std::string(after);
        comma = true;
      }
    } else if ((c == '{' && !obj) || (c == '[' && !arr)) {
      std::string_view after = Blanks(text, i + 1);
      size_t next = i + 1 + after.size();
      if (next < text.size() && !IsBreak(text[next]) && text[next] != '}' && text[next] != ']') {
        (c == '{' ? s.object_pad : s.array_pad) = !after.empty();
        (c == '{' ? obj : arr) = true;
      }
    }
  }
  if (!comma) s.comma = s.colon.size() > 1 ? ", " : ",";
  if (!obj) s.object_pad = s.colon.size() > 1;
  return s;
}

const std::string* RefOf(const Value& v) {
  const Value* ref = v.is_object() ? v.Find("ref") : nullptr;
  return ref && ref->is_string() ? &ref->as_string() : nullptr;
}

// Whether an old element and a new one are "the same element" for aligning
// arrays: the same ref, or equal when neither has a ref.
bool SameElement(const Value& a, const Value& b) {
  const std::string* ra = RefOf(a);
  const std::string* rb = RefOf(b);
  if (ra || rb) return ra && rb && *ra == *rb;
  return a == b;
}

// Whether an unmatched old element may be edited into an unmatched new one
// (rather than removed while the other is inserted).
bool Pairable(const Value& a, const Value& b) { return !RefOf(a) && !RefOf(b); }

// Pairs (old index, new index) of a longest common subsequence of
// old[from, from + a) and new[from, from + b) under SameElement, ascending.
std::vector<std::pair<size_t, size_t>> CommonElements(const std::vector<Value>& old_items,
                                                      const std::vector<Value>& new_items,
                                                      size_t from, size_t a, size_t b) {
  std::vector<std::pair<size_t, size_t>> pairs;
  std::vector<uint32_t> lcs((a + 1) * (b + 1), 0);
  auto at = [&](size_t i, size_t j) -> uint32_t& { return lcs[i * (b + 1) + j]; };
  auto same = [&](size_t i, size_t j) { return SameElement(old_items[from + i], new_items[from + j]); };
  for (size_t i = a; i-- > 0;) {
    for (size_t j = b; j-- > 0;) {
      at(i, j) = same(i, j) ? at(i + 1, j + 1) + 1 : std::max(at(i + 1, j), at(i, j + 1));
    }
  }
  for (size_t i = 0, j = 0; i < a && j < b;) {
    if (same(i, j)) {
      pairs.emplace_back(from + i, from + j);
      ++i, ++j;
    } else if (at(i + 1, j) >= at(i, j + 1)) {
      ++i;
    } else {
      ++j;
    }
  }
  return pairs;
}

// For each new element, the old element it continues (or -1 when new).
// Common ends are trimmed first (an edit usually touches few elements); the
// middle is aligned by a longest common subsequence when small enough, else
// taken as one run of edits. Between aligned elements, leftovers on both
// sides are paired position by position when Pairable.
std::vector<int> AlignArrays(const std::vector<Value>& old_items, const std::vector<Value>& new_items) {
  const size_t n = old_items.size(), m = new_items.size();
  std::vector<int> match(m, -1);
  size_t head = 0;
  while (head < n && head < m && SameElement(old_items[head], new_items[head])) {
    match[head] = static_cast<int>(head);
    ++head;
  }
  size_t tail = 0;
  while (tail < n - head && tail < m - head &&
         SameElement(old_items[n - 1 - tail], new_items[m - 1 - tail])) {
    match[m - 1 - tail] = static_cast<int>(n - 1 - tail);
    ++tail;
  }
  const size_t a = n - head - tail, b = m - head - tail;
  constexpr size_t kMaxCells = size_t{1} << 18;
  std::vector<std::pair<size_t, size_t>> anchors;
  if (a > 0 && b > 0 && a * b <= kMaxCells) anchors = CommonElements(old_items, new_items, head, a, b);
  anchors.emplace_back(n - tail, m - tail);  // the end of the middle
  size_t oi = head, nj = head;
  for (auto [ao, an] : anchors) {
    for (; oi < ao && nj < an; ++oi, ++nj) {
      if (Pairable(old_items[oi], new_items[nj])) match[nj] = static_cast<int>(oi);
    }
    if (an < m - tail) match[an] = static_cast<int>(ao);
    oi = ao + 1;
    nj = an + 1;
  }
  return match;
}

// One item of a rewritten container: an old item (by index) carried over and
// edited into `value`, or a new one. A new one may reuse the text of an old
// item that moved (`moved_from`), though it does not take that item's place.
struct Entry {
  int old = -1;
  const Value* value = nullptr;
  const std::string* key = nullptr;  // objects only
  int moved_from = -1;
};

std::vector<Entry> PlanObject(const Value& old_obj, const Value& new_obj) {
  std::unordered_map<std::string_view, size_t> old_index;
  for (size_t i = 0; i < old_obj.members().size(); ++i) old_index[old_obj.members()[i].first] = i;
  // New members go after the nearest preceding member of `new_obj` that the
  // old object has (before all of them when there is none).
  const size_t n = old_obj.members().size();
  std::vector<std::vector<const Member*>> inserted_after(n + 1);
  std::vector<const Value*> kept(n, nullptr);
  size_t anchor = n;  // n: the front
  for (const Member& m : new_obj.members()) {
    auto it = old_index.find(m.first);
    if (it == old_index.end()) {
      inserted_after[anchor].push_back(&m);
    } else {
      anchor = it->second;
      kept[anchor] = &m.second;
    }
  }
  std::vector<Entry> plan;
  for (const Member* m : inserted_after[n]) plan.push_back({-1, &m->second, &m->first});
  for (size_t i = 0; i < n; ++i) {
    if (kept[i]) plan.push_back({static_cast<int>(i), kept[i], &old_obj.members()[i].first});
    for (const Member* m : inserted_after[i]) plan.push_back({-1, &m->second, &m->first});
  }
  return plan;
}

// Elements that moved keep their text: an old element left unmatched is
// reused for an unmatched new one with its ref (or equal to it, when neither
// has a ref and there are few to compare).
void FindMovedElements(const Value& old_arr, const Value& new_arr, std::vector<Entry>& plan) {
  std::vector<bool> used(old_arr.items().size(), false);
  for (const Entry& e : plan) {
    if (e.old >= 0) used[e.old] = true;
  }
  std::vector<size_t> unused;
  for (size_t i = 0; i < used.size(); ++i) {
    if (!used[i]) unused.push_back(i);
  }
  constexpr size_t kMaxCompared = 64;
  if (unused.empty() || unused.size() > kMaxCompared) return;
  for (size_t j = 0; j < plan.size(); ++j) {
    if (plan[j].old >= 0) continue;
    for (size_t& i : unused) {
      const Value& old_item = old_arr.items()[i];
      if (i != SIZE_MAX && SameElement(old_item, new_arr.items()[j])) {
        plan[j].moved_from = static_cast<int>(i);
        i = SIZE_MAX;
        break;
      }
    }
  }
}

std::vector<Entry> PlanArray(const Value& old_arr, const Value& new_arr) {
  std::vector<int> match = AlignArrays(old_arr.items(), new_arr.items());
  std::vector<Entry> plan;
  for (size_t j = 0; j < match.size(); ++j) plan.push_back({match[j], &new_arr.items()[j], nullptr});
  FindMovedElements(old_arr, new_arr, plan);
  return plan;
}

// Where a fresh value is written: the indentation of its line, and whether
// it has to stay on that line.
struct Place {
  std::string_view indent;
  bool one_line = false;
};

class Rewriter {
 public:
  Rewriter(std::string_view text, Style style) : text_(text), style_(std::move(style)) {}

  Result<std::string> Run(const Value& old_root, const Value& new_root) {
    std::string out;
    out.reserve(text_.size() + 64);
    out.append(text_.substr(0, old_root.offset()));
    bool one_line = text_.find_first_of("\r\n") == std::string_view::npos;
    Emit(old_root, new_root, Place{LineIndent(old_root.offset()), one_line}, out);
    out.append(text_.substr(End(old_root)));
    if (!error_.empty()) return Fail(error_);
    return out;
  }

 private:
  // Offset just past the value's text.
  size_t End(const Value& v) const {
    size_t i = v.offset();
    switch (v.type()) {
      case Type::kString: return StringEnd(text_, i);
      case Type::kArray:
        if (!v.items().empty()) i = End(v.items().back());
        else ++i;
        break;
      case Type::kObject:
        if (!v.members().empty()) i = End(v.members().back().second);
        else ++i;
        break;
      default:
        while (i < text_.size() && !IsSpace(text_[i]) && text_[i] != ',' && text_[i] != ']' &&
               text_[i] != '}')
          ++i;
        return i;
    }
    while (IsSpace(text_[i])) ++i;
    return i + 1;  // past the closing bracket
  }

  std::string_view LineIndent(size_t offset) const {
    size_t start = text_.find_last_of("\r\n", offset == 0 ? 0 : offset - 1);
    start = (start == std::string_view::npos || offset == 0) ? 0 : start + 1;
    return Blanks(text_, start);
  }

  size_t ItemStart(const Value& c, size_t i) const {
    return c.is_object() ? c.members()[i].second.key_offset() : c.items()[i].offset();
  }
  const Value& ItemValue(const Value& c, size_t i) const {
    return c.is_object() ? c.members()[i].second : c.items()[i];
  }
  size_t ItemCount(const Value& c) const {
    return c.is_object() ? c.members().size() : c.items().size();
  }
  std::string_view Slice(size_t from, size_t to) const { return text_.substr(from, to - from); }
  // The text between item i and item i+1: the comma and the line break.
  std::string_view SepAfter(const Value& c, size_t i) const {
    return Slice(End(ItemValue(c, i)), ItemStart(c, i + 1));
  }

  void Emit(const Value& old_v, const Value& new_v, Place place, std::string& out) {
    if (old_v == new_v) {
      out.append(Slice(old_v.offset(), End(old_v)));
    } else if (old_v.is_object() && new_v.is_object() && !old_v.members().empty()) {
      EmitContainer(old_v, PlanObject(old_v, new_v), out);
    } else if (old_v.is_array() && new_v.is_array() && !old_v.items().empty()) {
      EmitContainer(old_v, PlanArray(old_v, new_v), out);
    } else {
      WriteFresh(new_v, place, out);
    }
  }

  // The text between two consecutive items of the rewritten container:
  // an old separator wherever one is next to an old item, else `generic`.
  std::string_view Separator(const Value& old_c, const Entry& prev, const Entry& next,
                             std::string_view generic) const {
    const size_t n = ItemCount(old_c);
    if (prev.old >= 0 && static_cast<size_t>(prev.old) + 1 < n) return SepAfter(old_c, prev.old);
    if (next.old > 0) return SepAfter(old_c, next.old - 1);
    return generic;
  }

  // REQUIRES: `old_c` is a non-empty object or array.
  void EmitContainer(const Value& old_c, const std::vector<Entry>& plan, std::string& out) {
    const bool is_object = old_c.is_object();
    if (plan.empty()) {
      out += is_object ? "{}" : "[]";
      return;
    }
    const size_t n = ItemCount(old_c);
    std::string_view prefix = Slice(old_c.offset(), ItemStart(old_c, 0));
    std::string_view suffix = Slice(End(ItemValue(old_c, n - 1)), End(old_c));
    const size_t last_break = prefix.find_last_of("\r\n");
    const bool one_line = last_break == std::string_view::npos;
    // New items: at the indentation of the first old one, or on its line.
    const Place fresh{one_line ? std::string_view() : prefix.substr(last_break + 1), one_line};
    std::string generic_sep;
    if (n >= 2) generic_sep = SepAfter(old_c, 0);
    else if (!one_line) generic_sep = "," + style_.newline + std::string(fresh.indent);
    else generic_sep = prefix.size() > 1 ? ", " : style_.comma;
    std::string_view colon = style_.colon;
    if (is_object) {
      const Value& first = old_c.members()[0].second;
      colon = Slice(StringEnd(text_, first.key_offset()), first.offset());
    }

    out += prefix;
    for (size_t k = 0; k < plan.size(); ++k) {
      const Entry& e = plan[k];
      if (k > 0) out += Separator(old_c, plan[k - 1], e, generic_sep);
      if (e.old >= 0) {
        const Value& old_item = ItemValue(old_c, e.old);
        size_t start = ItemStart(old_c, e.old);
        out += Slice(start, old_item.offset());  // the key and colon as they were
        Place place{one_line ? std::string_view() : LineIndent(start), one_line};
        Emit(old_item, *e.value, place, out);
        continue;
      }
      if (is_object) {
        AppendQuoted(out, *e.key);
        out += colon;
      }
      if (e.moved_from >= 0) Emit(ItemValue(old_c, e.moved_from), *e.value, fresh, out);
      else WriteFresh(*e.value, fresh, out);
    }
    out += suffix;
  }

  void WriteScalar(const Value& v, std::string& out) {
    switch (v.type()) {
      case Type::kNull: out += "null"; break;
      case Type::kBool: out += v.as_bool() ? "true" : "false"; break;
      case Type::kString: AppendQuoted(out, v.as_string()); break;
      case Type::kNumber:
        if (!std::isfinite(v.as_double()) && error_.empty()) {
          error_ = "the value holds a number JSON cannot represent (" + v.number_text() +
                   "); replace it before writing the file";
        }
        out += v.number_text();
        break;
      default: break;
    }
  }

  // A value the file does not have: written like Serialize, in the file's
  // style, starting on a line indented by `place.indent`.
  void WriteFresh(const Value& v, Place place, std::string& out) {
    const bool is_object = v.is_object();
    if (!is_object && !v.is_array()) return WriteScalar(v, out);
    const size_t n = ItemCount(v);
    if (n == 0) {
      out += is_object ? "{}" : "[]";
      return;
    }
    const bool pad = is_object ? style_.object_pad : style_.array_pad;
    std::string inner;
    if (!place.one_line) inner = std::string(place.indent) + style_.unit;
    out += is_object ? '{' : '[';
    if (place.one_line && pad) out += ' ';
    for (size_t i = 0; i < n; ++i) {
      if (place.one_line) {
        if (i > 0) out += style_.comma;
      } else {
        if (i > 0) out += ',';
        out += style_.newline;
        out += inner;
      }
      if (is_object) {
        AppendQuoted(out, v.members()[i].first);
        out += style_.colon;
      }
      WriteFresh(ItemValue(v, i), Place{inner, place.one_line}, out);
    }
    if (place.one_line) {
      if (pad) out += ' ';
    } else {
      out += style_.newline;
      out += place.indent;
    }
    out += is_object ? '}' : ']';
  }

  std::string_view text_;
  Style style_;
  std::string error_;
};

}  // namespace

Result<std::string> RewritePreservingFormat(std::string_view original_text, const Value& updated) {
  ParseOptions options;
  options.max_bytes = std::numeric_limits<uint32_t>::max();  // offsets are 32-bit
  auto original = Parse(original_text, options);
  if (!original) {
    LineCol at = LocateOffset(original_text, original.error().offset);
    return Fail("cannot edit the file in place: it does not parse at line " +
                std::to_string(at.line) + ", column " + std::to_string(at.col) + ": " +
                original.error().message);
  }
  auto text = Rewriter(original_text, DetectStyle(original_text)).Run(*original, updated);
  if (!text) return text;
  // The promise is that the file holds `updated`; check it rather than trust it.
  auto check = Parse(*text, options);
  if (!check || !(*check == updated)) {
    return Fail("internal error: the edited file would not hold the updated object (" +
                (check ? std::string("values differ") : check.error().message) +
                "); write it canonically instead");
  }
  return text;
}

}  // namespace gitopsd::json
