// A problem found in a file, reported the way compilers do:
//   path:line:col: error: message [rule]
// line and col are 1-based; col counts bytes, as editors and GitHub do for
// ASCII text.
#pragma once
#include <string>
#include <vector>

namespace gitopsd {

struct Diagnostic {
  std::string path;     // repository-relative path, e.g. ".gitops/templates/a.json"
  int line = 0;         // 1-based; 0 when the problem is about the whole file
  int col = 0;          // 1-based
  std::string message;  // what is wrong, in a sentence a person can act on
  std::string rule;     // short stable id: "json-syntax", "schema:required", ...

  std::string ToString() const;  // "path:line:col: error: message [rule]"
};

using Diagnostics = std::vector<Diagnostic>;

}  // namespace gitopsd
