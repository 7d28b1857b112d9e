// Three-way merge of JSON documents, for objects that both Git and the API
// changed since the version they last agreed on (DESIGN §3, "Conflicts").
//
// The merge works on values, not text:
//  - Objects merge key by key. A key changed on one side only takes that
//    side's value (deletion included); changed identically on both sides, it
//    takes that value; changed on both sides to two objects, it recurses.
//    Anything else is a conflict at that key.
//  - Arrays whose elements, in all three versions, are objects with a string
//    "ref" unique within the array (workflow steps, triggers) merge element
//    by element, matched by ref: an element added on one side is kept, one
//    deleted on one side and untouched on the other is deleted, one deleted
//    on one side and changed on the other is a conflict. Order: theirs',
//    with elements only ours added inserted after their predecessor in ours;
//    when only ours reordered the elements both sides kept, ours' order wins
//    the same way; both reordering differently is a conflict at the array.
//  - Every other array is one value: changed differently on both sides, it
//    is a conflict.
//  - Scalars compare as JSON values (1 == 1.0); objects ignore member order.
//
// Conflicts name a JSON pointer. Elements of ref-matched arrays are named by
// "ref=<ref>" instead of an index, e.g. "/spec/spec/steps/ref=migrate/spec/jobId";
// keys are escaped as RFC 6901 says ("~0", "~1"). The root is "".
#pragma once
#include <string>
#include <vector>

#include "sync/json.h"

namespace gitopsd::json {

struct MergeConflict {
  std::string pointer;
};

struct MergeResult {
  // The merged document. Where there is a conflict, it holds theirs' value
  // (or lacks the key when theirs deleted it): conflicts resolve in favour
  // of `theirs`, and the caller decides from `conflicts` which side stays in
  // force. Member order: theirs', then the keys only ours added.
  Value merged;
  std::vector<MergeConflict> conflicts;  // in document order of theirs
  bool clean() const { return conflicts.empty(); }
};

// Merges the changes from `base` to `ours` with those from `base` to
// `theirs`. Symmetric except for what `merged` holds at a conflict and for
// member and element order.
MergeResult Merge3(const Value& base, const Value& ours, const Value& theirs);

}  // namespace gitopsd::json
