#include "daemon/ctl/commands.h"

#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <optional>
#include <sstream>
#include <vector>

#include "daemon/ctl/client.h"
#include "daemon/ctl/common.h"
#include "daemon/tokens.h"
#include "daemon/validate.h"
#include "sync/json.h"
#include "sync/model.h"

extern char** environ;

namespace gitopsd::ctl {
namespace fs = std::filesystem;
namespace {

std::optional<model::Kind> KindArg(const std::string& text, int* code) {
  auto kind = model::ParseKind(text);
  if (!kind) {
    *code = Complain("unknown kind \"" + text + "\"; use templates, release-flows or previews",
                     kExitUsage);
  }
  return kind;
}

std::string ObjectPath(model::Kind kind, const std::string& name) {
  return std::string("/api/v1/objects/") + model::KindFolder(kind) + "/" + EncodeSegment(name);
}

// One line for the answer to an accepted edit (PUT, DELETE, resolve).
int PrintEditAnswer(const Globals& g, const Reply& reply, const std::string& prefix = "") {
  int code = kExitOk;
  auto doc = ParseOrPrintJson(g, reply, &code);
  if (!doc) return code;
  const std::string what = Text(*doc, "kind") + "/" + Text(*doc, "name");
  const std::string revision = Text(*doc, "revision");
  std::string line = prefix + what + ": " +
                     (revision == "0" ? std::string("deleted") : "revision " + revision);
  const json::Value* wb = doc->Find("writeBack");
  if (!wb || wb->is_null()) {
    line += ", unchanged";
  } else if (Text(*wb, "status") == "pushed") {
    line += ", pushed " + Short(Text(*wb, "commit"));
    if (reply.status == 201) line += " (new)";
  } else {
    line += ", write-back " + Text(*wb, "status") + " (GET " + Text(*wb, "href") + ")";
    if (wb->Find("lastError")) line += ": " + Text(*wb, "lastError");
  }
  std::printf("%s\n", line.c_str());
  return kExitOk;
}

bool PrintDiagnostics(const Diagnostics& diagnostics) {
  for (const auto& d : diagnostics) std::fprintf(stderr, "%s\n", d.ToString().c_str());
  return !diagnostics.empty();
}

// ---- edit: the editor and its temporary file.

std::vector<std::string> EditorArgv() {
  std::string command = Env("VISUAL");
  if (Trimmed(command).empty()) command = Env("EDITOR");
  if (Trimmed(command).empty()) command = "vi";
  std::vector<std::string> argv;
  std::istringstream words(command);
  for (std::string w; words >> w;) argv.push_back(w);
  return argv;
}

// Runs the editor on `file` (argv split on spaces, no shell); its exit code.
int RunEditor(const std::string& file) {
  std::vector<std::string> args = EditorArgv();
  args.push_back(file);
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t pid = 0;
  if (posix_spawnp(&pid, argv[0], nullptr, nullptr, argv.data(), environ) != 0) {
    std::fprintf(stderr, "gitopsctl: cannot run the editor \"%s\" (set $VISUAL or $EDITOR)\n",
                 args[0].c_str());
    return 127;
  }
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
}

bool AskEditAgain() {
  std::fprintf(stderr, "Edit again? [Y/n] ");
  std::fflush(stderr);
  std::string answer;
  if (!std::getline(std::cin, answer)) return false;
  answer = Trimmed(answer);
  return answer.empty() || answer == "y" || answer == "Y" || answer == "yes";
}

struct TempFile {
  std::string dir;
  std::string path;
  void Remove() const {
    std::error_code ec;
    fs::remove_all(dir, ec);
  }
};

std::optional<TempFile> MakeTempFile(const std::string& name, const std::string& text) {
  std::string base = Env("TMPDIR");
  if (base.empty()) base = "/tmp";
  std::string pattern = base + "/gitopsctl-edit-XXXXXX";
  if (!mkdtemp(pattern.data())) return std::nullopt;
  TempFile t{pattern, pattern + "/" + name + ".json"};
  std::ofstream out(t.path, std::ios::binary);
  out << text;
  if (!out.flush()) return std::nullopt;
  return t;
}

}  // namespace

int RunGet(const Globals& g, const std::string& kind_text, const std::string& name) {
  if (kind_text == "run") {
    if (name.empty()) return Complain("get run needs the run's id: gitopsctl get run ID", kExitUsage);
    return RunGetRun(g, name);
  }
  if (kind_text == "runs") return name.empty() ? RunListRuns(g, "") : RunGetRun(g, name);
  if (kind_text == "services" || kind_text == "jobs" || kind_text == "addons" ||
      kind_text == "builds" || kind_text == "backups") {
    return RunGetResources(g, kind_text);
  }
  int code = kExitOk;
  auto kind = KindArg(kind_text, &code);
  if (!kind) return code;
  auto client = Connect(g, &code);
  if (!client) return code;
  if (!name.empty()) {
    auto reply = Call(*client, "GET", ObjectPath(*kind, name), &code);
    if (!reply) return code;
    auto doc = ParseOrPrintJson(g, *reply, &code);
    if (!doc) return code;
    std::printf("%s", json::Serialize(*doc).c_str());
    return kExitOk;
  }
  auto reply = Call(*client, "GET", std::string("/api/v1/objects?kind=") + model::KindName(*kind),
                    &code);
  if (!reply) return code;
  auto doc = ParseOrPrintJson(g, *reply, &code);
  if (!doc) return code;
  std::vector<std::vector<std::string>> rows{{"NAME", "REVISION", "REPOSITORY", "PATH", "STATUS"}};
  if (const json::Value* objects = doc->Find("objects"); objects && objects->is_array()) {
    for (const auto& o : objects->items()) {
      rows.push_back({Text(o, "name"), Text(o, "revision"), Text(o, "repository"), Text(o, "path"),
                      Text(o, "status")});
    }
  }
  PrintTable(rows);
  return kExitOk;
}

int RunApply(const Globals& g, const ApplyOptions& options) {
  int code = kExitOk;
  std::optional<model::Kind> wanted;
  if (!options.kind.empty()) {
    wanted = KindArg(options.kind, &code);
    if (!wanted) return code;
  }
  auto text = ReadFile(options.file);
  if (!text) return Complain(options.file + ": cannot read the file");
  auto loader = model::Loader::Create();
  if (!loader) return Complain(loader.error().message);
  const std::string folder_relative =
      wanted ? std::string(model::KindFolder(*wanted)) + "/" +
                   fs::path(options.file).filename().string()
             : daemon::FolderRelative(options.file);
  model::LoadResult loaded = loader->Load(options.file, folder_relative, *text);
  if (PrintDiagnostics(loaded.diagnostics)) return kExitFailed;
  const model::Object& object = *loaded.object;
  if (wanted && object.kind != *wanted) {
    return Complain(options.file + ": the file says \"kind\": \"" +
                    model::KindName(object.kind) + "\" but --kind says " +
                    model::KindName(*wanted));
  }
  auto client = Connect(g, &code);
  if (!client) return code;
  std::string path = ObjectPath(object.kind, object.name);
  if (!options.repository.empty()) path += "?repository=" + EncodeSegment(options.repository);
  auto reply = Call(*client, "PUT", path, &code, *text);
  if (!reply) return code;
  return PrintEditAnswer(g, *reply);
}

int RunEdit(const Globals& g, const std::string& kind_text, const std::string& name) {
  int code = kExitOk;
  auto kind = KindArg(kind_text, &code);
  if (!kind) return code;
  auto client = Connect(g, &code);
  if (!client) return code;
  auto reply = Call(*client, "GET", ObjectPath(*kind, name), &code);
  if (!reply) return code;
  const std::string etag = reply->Header("etag");
  auto doc = ParseReply(*reply, &code);
  if (!doc) return code;
  const std::string original = json::Serialize(*doc);
  auto temp = MakeTempFile(name, original);
  if (!temp) return Complain("cannot write a temporary file in $TMPDIR or /tmp");
  auto loader = model::Loader::Create();
  if (!loader) return Complain(loader.error().message);
  const std::string folder_relative = std::string(model::KindFolder(*kind)) + "/" + name + ".json";
  const std::string what = std::string(model::KindName(*kind)) + "/" + name;

  std::string edited;
  while (true) {
    if (const int status = RunEditor(temp->path); status != 0) {
      return Complain("the editor exited with status " + std::to_string(status) +
                      "; nothing was sent. Your file is kept in " + temp->path);
    }
    auto text = ReadFile(temp->path);
    if (!text) return Complain("cannot read " + temp->path + " back");
    edited = *text;
    if (edited == original) {
      temp->Remove();
      std::printf("Edit cancelled, no changes made.\n");
      return kExitOk;
    }
    if (!PrintDiagnostics(loader->Load(temp->path, folder_relative, edited).diagnostics)) break;
    if (!AskEditAgain()) {
      return Complain("nothing was sent; your file is kept in " + temp->path);
    }
  }
  std::map<std::string, std::string> headers;
  if (!etag.empty()) headers["If-Match"] = etag;
  auto put = client->Send("PUT", ObjectPath(*kind, name), edited, headers);
  if (!put) {
    return Complain(put.error().message + "; your file is kept in " + temp->path,
                    kExitUnreachable);
  }
  if (put->status == 412) {
    return Complain("someone else changed " + what + " since you opened it (you had revision " +
                    etag + "). Nothing was sent; your version is kept in " + temp->path +
                    ": run gitopsctl edit again and carry your change over");
  }
  if (!put->ok()) {
    return Complain(Client::ErrorMessage(*put) + "\nyour file is kept in " + temp->path);
  }
  temp->Remove();
  return PrintEditAnswer(g, *put);
}

int RunDelete(const Globals& g, const std::string& kind_text, const std::string& name) {
  int code = kExitOk;
  auto kind = KindArg(kind_text, &code);
  if (!kind) return code;
  auto client = Connect(g, &code);
  if (!client) return code;
  auto reply = Call(*client, "DELETE", ObjectPath(*kind, name), &code);
  if (!reply) return code;
  return PrintEditAnswer(g, *reply);
}

int RunConflicts(const Globals& g, bool all) {
  int code = kExitOk;
  auto client = Connect(g, &code);
  if (!client) return code;
  auto reply = Call(*client, "GET", all ? "/api/v1/conflicts?all=true" : "/api/v1/conflicts", &code);
  if (!reply) return code;
  auto doc = ParseOrPrintJson(g, *reply, &code);
  if (!doc) return code;
  std::vector<std::vector<std::string>> rows{
      {"ID", "REPOSITORY", "OBJECT", "IN FORCE", "POLICY", "POINTERS", "CREATED", "RESOLVED"}};
  const json::Value* conflicts = doc->Find("conflicts");
  if (conflicts && conflicts->is_array()) {
    for (const auto& c : conflicts->items()) {
      std::string pointers;
      if (const json::Value* p = c.Find("pointers"); p && p->is_array()) {
        for (const auto& item : p->items()) {
          pointers += (pointers.empty() ? "" : ",") + (item.is_string() ? item.as_string() : "?");
        }
      }
      std::string resolved = Text(c, "resolution");
      rows.push_back({Text(c, "id"), Text(c, "repository"), Text(c, "kind") + "/" + Text(c, "name"),
                      Text(c, "inForce"), Text(c, "policy"), pointers.empty() ? "-" : pointers,
                      Text(c, "createdAt"), resolved});
    }
  }
  if (rows.size() == 1) {
    std::printf(all ? "No conflicts.\n" : "No open conflicts.\n");
    return kExitOk;
  }
  PrintTable(rows);
  return kExitOk;
}

int RunResolve(const Globals& g, int64_t id, const std::string& take, const std::string& file) {
  int code = kExitOk;
  std::string body;
  if (!take.empty()) {
    body = "{\"take\": \"" + take + "\"}";
  } else {
    auto text = ReadFile(file);
    if (!text) return Complain(file + ": cannot read the file");
    auto parsed = json::Parse(*text);
    if (!parsed) {
      const json::LineCol at = json::LocateOffset(*text, parsed.error().offset);
      Diagnostic d{file, at.line, at.col, parsed.error().message, parsed.error().rule};
      PrintDiagnostics({d});
      return kExitFailed;
    }
    body = "{\"body\": " + *text + "}";
  }
  auto client = Connect(g, &code);
  if (!client) return code;
  auto reply = Call(*client, "POST", "/api/v1/conflicts/" + std::to_string(id) + "/resolve", &code,
                    body);
  if (!reply) return code;
  return PrintEditAnswer(g, *reply, "conflict " + std::to_string(id) + " resolved: ");
}

int RunTokenCreate(const Globals& g, const std::string& name, const std::string& role) {
  if (Trimmed(name).empty()) return Complain("the token needs a name", kExitUsage);
  auto random = daemon::NewRandomToken();
  if (!random) return Complain(random.error().message);
  const std::string& token = *random;
  const std::string hash = daemon::ToHex(daemon::HashToken(token));
  std::string line = "{\"name\": ";
  json::AppendQuoted(line, name);
  line += ", \"role\": \"" + role + "\", \"sha256\": \"" + hash + "\"}";
  if (g.json) {
    std::string out = "{\"name\": ";
    json::AppendQuoted(out, name);
    out += ", \"role\": \"" + role + "\", \"token\": \"" + token + "\", \"sha256\": \"" + hash +
           "\"}\n";
    std::printf("%s", out.c_str());
    return kExitOk;
  }
  std::printf(
      "New %s token \"%s\" (shown only now; gitopsd keeps just its hash):\n  %s\n\n"
      "Add this entry to the array in the tokens file (\"apiTokensFile\") and reload gitopsd (systemctl reload gitopsd, or SIGHUP):\n"
      "  %s\n",
      role.c_str(), name.c_str(), token.c_str(), line.c_str());
  return kExitOk;
}

}  // namespace gitopsd::ctl
