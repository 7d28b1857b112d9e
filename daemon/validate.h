// `gitopsd validate PATH...`: checks object files offline, with the same
// loader the daemon syncs with. Folders are walked recursively for *.json
// (".git" skipped); a file's kind comes from "kind" or from a templates/,
// release-flows/ or previews/ folder in its path.
//
// Problems go to stdout, one per line:
//   text:   path:line:col: error: message [rule]
//   github: ::error file=PATH,line=L,col=C,title=RULE::MESSAGE
// and a summary line to stderr.
#pragma once
#include <cstddef>
#include <string>
#include <vector>

namespace gitopsd::daemon {

struct ValidateOptions {
  std::vector<std::string> paths;
  std::string format = "text";  // "text" or "github"
  size_t max_file_bytes = 1 << 20;
  size_t max_depth = 64;
};

// Exit code: 0 no problem, 1 problems found, 2 usage error (a path that
// does not exist, an unknown format).
int RunValidate(const ValidateOptions& options);

// The path below the sync folder the loader derives kind and name from:
// from the last templates/, release-flows/ or previews/ component, else
// below ".gitops", else the file name.
std::string FolderRelative(const std::string& path);

// One problem in GitHub Actions' workflow-command syntax.
std::string GithubAnnotation(const std::string& path, int line, int col, const std::string& rule,
                             const std::string& message);

}  // namespace gitopsd::daemon
