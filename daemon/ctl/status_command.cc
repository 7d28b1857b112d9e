// gitopsctl status: the whole picture in one screen, from the endpoints a
// dashboard would read (sync, conflicts, runs, previews): repositories with
// their applied commit, last sync and errors; open conflicts; runs that have
// not concluded and the node each is at; live previews. --json prints one
// object holding the four lists.
//
// A part the server refuses (say, previews answering 503) is reported in
// its place and the rest still shows; the exit code is 1 then. No answer at
// all is exit 3, as for every command.
#include <cstdio>

#include "daemon/ctl/commands.h"
#include "daemon/ctl/common.h"

namespace gitopsd::ctl {
namespace {

// How many runs in progress get their nodes fetched (one request each).
constexpr size_t kMaxRunDetails = 20;
// Errors listed per repository before "... and N more".
constexpr size_t kMaxErrorsShown = 5;

struct Part {
  std::optional<json::Value> doc;  // unset when the server refused
  std::string problem;             // why, when refused
};

// GET path. A refusal becomes the part's problem; no answer is nullopt
// (with *code set to 3 after complaining).
std::optional<Part> Fetch(const Client& client, const std::string& path, int* code) {
  auto reply = client.Send("GET", path);
  if (!reply) {
    *code = Complain(reply.error().message, kExitUnreachable);
    return std::nullopt;
  }
  Part part;
  if (!reply->ok()) {
    part.problem = Client::ErrorMessage(*reply);
    return part;
  }
  auto doc = json::Parse(reply->body, json::ParseOptions{64 << 20, 256});
  if (!doc) {
    part.problem = "the answer to GET " + path + " is not JSON";
    return part;
  }
  part.doc = std::move(*doc);
  return part;
}

const std::vector<json::Value>* List(const Part& part, std::string_view key) {
  if (!part.doc) return nullptr;
  const json::Value* v = part.doc->Find(key);
  return v && v->is_array() ? &v->items() : nullptr;
}

bool InProgress(const std::string& node_status) {
  return node_status == "running" || node_status == "waiting" || node_status == "retrying" ||
         node_status == "approval_wait";
}

// The nodes a run is at: the ones in progress that are not mere workflows.
json::Value CurrentNodes(const json::Value& run) {
  json::Value out = json::Value::Array();
  const json::Value* nodes = run.Find("nodes");
  if (!nodes || !nodes->is_array()) return out;
  for (const auto& n : nodes->items()) {
    if (Text(n, "kind") == "Workflow" || !InProgress(Text(n, "status"))) continue;
    out.items().push_back(json::Value::Object({{"path", json::Value::String(Text(n, "path"))},
                                               {"kind", json::Value::String(Text(n, "kind"))},
                                               {"ref", json::Value::String(Text(n, "ref"))},
                                               {"status", json::Value::String(Text(n, "status"))}}));
  }
  return out;
}

std::string NodeLabel(const json::Value& current) {
  if (current.items().empty()) return "-";
  const json::Value& n = current.items().front();
  std::string label = Text(n, "kind");
  if (Text(n, "ref") != "-") label += " " + Text(n, "ref");
  label += " (" + Text(n, "path") + ")";
  if (current.items().size() > 1) label += " +" + std::to_string(current.items().size() - 1);
  return label;
}

std::string Age(const std::string& iso) {
  const int64_t at = ParseIsoMillis(iso);
  if (at == 0) return "never";
  return FormatMillis(std::max<int64_t>(0, NowMillis() - at)) + " ago";
}

// The runs in progress, each with "currentNodes" (fetched run by run).
std::optional<Part> FetchRuns(const Client& client, int* code) {
  auto part = Fetch(client, "/api/v1/runs?status=pending,queued,running,approval_wait", code);
  if (!part || !part->doc) return part;
  json::Value* runs = part->doc->Find("runs");
  if (!runs || !runs->is_array()) return part;
  size_t fetched = 0;
  for (json::Value& run : runs->items()) {
    json::Value current = json::Value::Array();
    if (fetched++ < kMaxRunDetails) {
      auto detail = Fetch(client, "/api/v1/runs/" + Text(run, "id"), code);
      if (!detail) return std::nullopt;
      if (detail->doc) current = CurrentNodes(*detail->doc);
    }
    run.Set("currentNodes", std::move(current));
  }
  return part;
}

void PrintHeading(const std::string& title, const std::vector<json::Value>* items,
                  const Part& part, const std::string& none) {
  if (!part.problem.empty()) {
    std::printf("%s: cannot list them: %s\n", title.c_str(), part.problem.c_str());
  } else if (!items || items->empty()) {
    std::printf("%s: %s\n", title.c_str(), none.c_str());
  } else {
    std::printf("%s (%zu)\n", title.c_str(), items->size());
  }
}

void PrintRepositories(const Part& part) {
  const auto* repos = List(part, "repositories");
  PrintHeading("Repositories", repos, part, "none configured");
  if (!repos || repos->empty()) return;
  std::vector<std::vector<std::string>> rows{
      {"REPOSITORY", "BRANCH", "APPLIED", "LAST SYNC", "PENDING", "ERRORS", "CONFLICTS"}};
  std::vector<std::string> notes;
  for (const auto& r : *repos) {
    const std::string name = Text(r, "name");
    rows.push_back({name, Text(r, "branch"), Short(Text(r, "appliedCommit")),
                    Age(Text(r, "lastSyncAt")), Text(r, "pendingWriteBacks"),
                    std::to_string(Count(r, "errors")), std::to_string(Count(r, "conflicts"))});
    if (Text(r, "lastFetchError") != "-") {
      notes.push_back("  " + name + ": fetch failing: " + Text(r, "lastFetchError"));
    }
    const json::Value* errors = r.Find("errors");
    if (!errors || !errors->is_array()) continue;
    size_t shown = 0;
    for (const auto& e : errors->items()) {
      if (shown++ == kMaxErrorsShown) {
        notes.push_back("  " + name + ": ... and " +
                        std::to_string(errors->items().size() - kMaxErrorsShown) +
                        " more (gitopsctl --json status)");
        break;
      }
      notes.push_back("  " + name + ": " + Text(e, "path") + ":" + Text(e, "line") + ":" +
                      Text(e, "column") + ": error: " + Text(e, "message") + " (commit " +
                      Short(Text(e, "commit")) + ")");
    }
  }
  PrintTable(rows);
  for (const auto& n : notes) std::printf("%s\n", n.c_str());
}

void PrintConflicts(const Part& part) {
  const auto* conflicts = List(part, "conflicts");
  PrintHeading("Conflicts", conflicts, part, "none");
  if (!conflicts || conflicts->empty()) return;
  std::vector<std::vector<std::string>> rows{
      {"ID", "REPOSITORY", "OBJECT", "IN FORCE", "POLICY", "CREATED"}};
  for (const auto& c : *conflicts) {
    rows.push_back({Text(c, "id"), Text(c, "repository"), Text(c, "kind") + "/" + Text(c, "name"),
                    Text(c, "inForce"), Text(c, "policy"), Age(Text(c, "createdAt"))});
  }
  PrintTable(rows);
}

void PrintRuns(const Part& part) {
  const auto* runs = List(part, "runs");
  PrintHeading("Runs in progress", runs, part, "none");
  if (!runs || runs->empty()) return;
  std::vector<std::vector<std::string>> rows{
      {"ID", "FLOW", "KIND", "STATUS", "AT NODE", "STARTED"}};
  for (const auto& r : *runs) {
    const json::Value* current = r.Find("currentNodes");
    const std::string started = Text(r, "startedAt") == "-" ? "not yet" : Age(Text(r, "startedAt"));
    rows.push_back({Text(r, "id"), FlowLabel(r), Text(r, "kind"), Text(r, "status"),
                    current ? NodeLabel(*current) : "-", started});
  }
  PrintTable(rows);
}

void PrintPreviews(const Part& part) {
  const auto* previews = List(part, "previews");
  PrintHeading("Previews", previews, part, "none");
  if (!previews || previews->empty()) return;
  std::vector<std::vector<std::string>> rows{{"NAME", "TEMPLATE", "STATUS", "URL", "EXPIRES"}};
  for (const auto& p : *previews) {
    rows.push_back({Text(p, "name"), Text(p, "template"), Text(p, "status"), Text(p, "url"),
                    Text(p, "expiresAt")});
  }
  PrintTable(rows);
}

// The part's list as it came, or null when the server refused it.
json::Value ListOrNull(const Part& part, std::string_view key) {
  const auto* items = List(part, key);
  return items ? json::Value::Array(*items) : json::Value();
}

}  // namespace

int RunStatus(const Globals& g) {
  int code = kExitOk;
  auto client = Connect(g, &code);
  if (!client) return code;
  auto sync = Fetch(*client, "/api/v1/sync", &code);
  if (!sync) return code;
  auto conflicts = Fetch(*client, "/api/v1/conflicts", &code);
  if (!conflicts) return code;
  auto runs = FetchRuns(*client, &code);
  if (!runs) return code;
  auto previews = Fetch(*client, "/api/v1/previews", &code);
  if (!previews) return code;

  const std::vector<std::pair<std::string, const Part*>> parts{
      {"repositories", &*sync}, {"conflicts", &*conflicts}, {"runs", &*runs},
      {"previews", &*previews}};
  json::Value problems = json::Value::Array();
  for (const auto& [key, part] : parts) {
    if (!part->problem.empty()) problems.items().push_back(json::Value::String(key + ": " + part->problem));
  }
  const int exit_code = problems.items().empty() ? kExitOk : kExitFailed;
  if (g.json) {
    json::Value out = json::Value::Object({{"server", json::Value::String(client->server())}});
    for (const auto& [key, part] : parts) out.Set(key, ListOrNull(*part, key));
    out.Set("problems", std::move(problems));
    std::string text = json::Serialize(out);
    if (text.empty() || text.back() != '\n') text += '\n';
    std::fputs(text.c_str(), stdout);
    return exit_code;
  }
  PrintRepositories(*sync);
  std::printf("\n");
  PrintConflicts(*conflicts);
  std::printf("\n");
  PrintRuns(*runs);
  std::printf("\n");
  PrintPreviews(*previews);
  return exit_code;
}

}  // namespace gitopsd::ctl
