// Format-preserving write-back: edits the text of a JSON file so that it
// holds a new value while the diff against the old text shows only what
// changed. Write-back (DESIGN §3, control plane → Git) uses it so that an API
// edit of one value changes one line of the file in Git.
//
// What is kept from the original text: member order, indentation (spaces or
// tabs, any width), the spacing around ':' and ',', one-line vs multi-line
// layout of every container that is not replaced, newline style ("\n" or
// "\r\n"), the text before and after the root value (so a missing trailing
// newline stays missing), the spelling of every number and string that did
// not change (1.0 stays 1.0, "\u00e9" stays escaped).
//
// How changes are written:
//  - a changed scalar replaces its own text only;
//  - an object keeps its members where they are and recurses into changed
//    ones; a removed member goes with its separating comma and its line; a
//    new member is inserted after the member that precedes it in `updated`
//    (so usually at the end), at the indentation of its siblings;
//  - an array is aligned old-to-new: objects carrying a string "ref" match by
//    ref, other elements match when equal, and an element left over on both
//    sides at the same place is edited in place. Unmatched old elements are
//    removed with their lines, unmatched new ones inserted;
//  - new values are written like Serialize writes them (one member per
//    line) but with the file's indent unit, newline and spacing; inside a
//    one-line container they are written on one line.
#pragma once
#include <string>
#include <string_view>

#include "sync/json.h"
#include "sync/status.h"

namespace gitopsd::json {

// Returns `original_text` edited so that it parses to `updated` (deep-equal,
// as operator== defines it), changing as little text as possible. Rewriting
// with a value equal to the original returns the original bytes.
// REQUIRES: original_text parses with json::Parse (any size up to 4 GiB);
// an error is returned otherwise, and when `updated` holds a number JSON
// cannot spell (NaN, infinity). The result is re-parsed and checked before it
// is returned, so a caller never writes a file that does not hold `updated`.
Result<std::string> RewritePreservingFormat(std::string_view original_text, const Value& updated);

}  // namespace gitopsd::json
