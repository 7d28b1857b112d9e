// A fresh private folder for one test (mkdtemp, mode 0700), removed with
// everything in it when the TempDir goes away. Move-only.
#pragma once
#include <string>

namespace gitopsd::test {

class TempDir {
 public:
  // Creates $TMPDIR/gitopsd-<prefix>-XXXXXX (or /tmp when TMPDIR is unset).
  // Aborts the test binary if the folder cannot be made: nothing can run without it.
  explicit TempDir(const std::string& prefix = "test");
  ~TempDir();
  TempDir(TempDir&& other) noexcept;
  TempDir& operator=(TempDir&& other) noexcept;
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::string& path() const { return path_; }
  // path() + "/" + relative.
  std::string Sub(const std::string& relative) const { return path_ + "/" + relative; }

 private:
  std::string path_;  // empty once moved from
};

// Writes `content` to `path`, creating parent folders. Returns false on failure.
bool WriteTextFile(const std::string& path, const std::string& content);
// The whole file, or "" if it cannot be read.
std::string ReadTextFile(const std::string& path);

}  // namespace gitopsd::test
