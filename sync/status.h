// Errors are values: everything below daemon/ that can fail returns a
// Result<T> (std::expected) whose error names the thing that failed and what
// to do about it. Exceptions from libraries are caught at the boundary and
// turned into an Error.
#pragma once
#include <expected>
#include <string>
#include <utility>

namespace gitopsd {

struct Error {
  std::string message;
};

template <class T>
using Result = std::expected<T, Error>;
using Status = std::expected<void, Error>;

inline std::unexpected<Error> Fail(std::string message) {
  return std::unexpected<Error>(Error{std::move(message)});
}

inline Status Ok() { return {}; }

}  // namespace gitopsd
