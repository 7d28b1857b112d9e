#include "daemon/validate.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include "sync/diagnostic.h"
#include "sync/model.h"

namespace gitopsd::daemon {
namespace fs = std::filesystem;

std::string FolderRelative(const std::string& path) {
  std::vector<std::string> parts;
  for (const auto& part : fs::path(path).lexically_normal()) parts.push_back(part.string());
  auto join_from = [&](size_t i) {
    std::string out;
    for (size_t k = i; k < parts.size(); ++k) {
      if (!out.empty()) out += '/';
      out += parts[k];
    }
    return out;
  };
  // Folders only (never the file's own name), the innermost first.
  for (size_t i = parts.size() - std::min<size_t>(parts.size(), 1); i-- > 0;) {
    if (parts[i] == "templates" || parts[i] == "release-flows" || parts[i] == "previews") {
      return join_from(i);
    }
  }
  for (size_t i = parts.size(); i-- > 0;) {
    if (parts[i] == ".gitops" && i + 1 < parts.size()) return join_from(i + 1);
  }
  return parts.empty() ? path : parts.back();
}

namespace {

std::string EscapeData(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '%') out += "%25";
    else if (c == '\r') out += "%0D";
    else if (c == '\n') out += "%0A";
    else out += c;
  }
  return out;
}

std::string EscapeProperty(const std::string& s) {
  std::string out;
  for (char c : EscapeData(s)) {
    if (c == ':') out += "%3A";
    else if (c == ',') out += "%2C";
    else out += c;
  }
  return out;
}

// The files to check, in a stable order; false if a path does not exist.
bool CollectFiles(const std::vector<std::string>& paths, std::vector<std::string>* files) {
  for (const auto& p : paths) {
    std::error_code ec;
    if (fs::is_directory(p, ec)) {
      std::vector<std::string> found;
      fs::recursive_directory_iterator it(p, fs::directory_options::skip_permission_denied, ec), end;
      for (; !ec && it != end; it.increment(ec)) {
        if (it->is_directory(ec) && it->path().filename() == ".git") {
          it.disable_recursion_pending();
          continue;
        }
        if (it->is_regular_file(ec) && it->path().extension() == ".json") {
          found.push_back(it->path().string());
        }
      }
      std::sort(found.begin(), found.end());
      files->insert(files->end(), found.begin(), found.end());
    } else if (fs::exists(p, ec)) {
      files->push_back(p);
    } else {
      std::fprintf(stderr, "gitopsd validate: %s: no such file or folder\n", p.c_str());
      return false;
    }
  }
  return true;
}

Diagnostics CheckFile(const model::Loader& loader, const std::string& path,
                      const ValidateOptions& options) {
  std::error_code ec;
  const uintmax_t size = fs::file_size(path, ec);
  if (ec) return {Diagnostic{path, 0, 0, "cannot read the file: " + ec.message(), "file-read"}};
  if (size > options.max_file_bytes) {
    return {Diagnostic{path, 0, 0,
                       "the file is " + std::to_string(size) + " bytes; the limit is " +
                           std::to_string(options.max_file_bytes) + " (--max-file-bytes)",
                       "json-size"}};
  }
  std::ifstream in(path, std::ios::binary);
  std::string text(static_cast<size_t>(size), '\0');
  in.read(text.data(), static_cast<std::streamsize>(size));
  if (!in) return {Diagnostic{path, 0, 0, "cannot read the file", "file-read"}};
  model::LoadOptions limits{options.max_file_bytes, options.max_depth};
  return loader.Load(path, FolderRelative(path), text, limits).diagnostics;
}

}  // namespace

std::string GithubAnnotation(const std::string& path, int line, int col, const std::string& rule,
                             const std::string& message) {
  std::string out = "::error file=" + EscapeProperty(path);
  if (line > 0) out += ",line=" + std::to_string(line) + ",col=" + std::to_string(col);
  if (!rule.empty()) out += ",title=" + EscapeProperty(rule);
  out += "::" + EscapeData(message);
  return out;
}

int RunValidate(const ValidateOptions& options) {
  if (options.format != "text" && options.format != "github") {
    std::fprintf(stderr, "gitopsd validate: --format %s: use text or github\n",
                 options.format.c_str());
    return 2;
  }
  std::vector<std::string> files;
  if (!CollectFiles(options.paths, &files)) return 2;
  auto loader = model::Loader::Create();
  if (!loader) {
    std::fprintf(stderr, "gitopsd validate: %s\n", loader.error().message.c_str());
    return 2;
  }
  size_t problems = 0, bad_files = 0;
  for (const auto& file : files) {
    Diagnostics diags = CheckFile(*loader, file, options);
    if (!diags.empty()) ++bad_files;
    for (const auto& d : diags) {
      ++problems;
      std::string line = options.format == "github"
                             ? GithubAnnotation(d.path, d.line, d.col, d.rule, d.message)
                             : d.ToString();
      std::fprintf(stdout, "%s\n", line.c_str());
    }
  }
  std::fflush(stdout);
  std::fprintf(stderr, "gitopsd validate: %zu file%s checked, %zu problem%s in %zu file%s\n",
               files.size(), files.size() == 1 ? "" : "s", problems, problems == 1 ? "" : "s",
               bad_files, bad_files == 1 ? "" : "s");
  return problems == 0 ? 0 : 1;
}

}  // namespace gitopsd::daemon
