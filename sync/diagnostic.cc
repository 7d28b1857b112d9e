#include "sync/diagnostic.h"

namespace gitopsd {

std::string Diagnostic::ToString() const {
  std::string out = path;
  if (line > 0) {
    out += ':' + std::to_string(line) + ':' + std::to_string(col);
  }
  out += ": error: " + message;
  if (!rule.empty()) out += " [" + rule + "]";
  return out;
}

}  // namespace gitopsd
