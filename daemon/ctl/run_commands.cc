// gitopsctl's run commands: start, list, show, follow, cancel, approve and
// roll back runs, and list the runtime's resources.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <thread>

#include "daemon/ctl/common.h"

namespace gitopsd::ctl {
namespace {

std::string RunPath(const std::string& id) { return "/api/v1/runs/" + EncodeSegment(id); }

// The body of a run in JSON, or nullopt after complaining.
std::optional<json::Value> FetchRun(const Client& client, const std::string& id, int* code) {
  auto reply = Call(client, "GET", RunPath(id), code);
  if (!reply) return std::nullopt;
  return ParseReply(*reply, code);
}

// Polls the run until it concludes; exit 0 when it succeeded. With --json
// the concluded run's JSON is what is printed.
int WaitForRun(const Globals& g, const Client& client, const std::string& id) {
  int code = kExitOk;
  while (true) {
    auto run = FetchRun(client, id, &code);
    if (!run) return code;
    if (Concluded(*run)) {
      const std::string status = Text(*run, "status");
      if (g.json) {
        std::string text = json::Serialize(*run);
        if (text.empty() || text.back() != '\n') text += '\n';
        std::fputs(text.c_str(), stdout);
        return status == "success" ? kExitOk : kExitFailed;
      }
      std::printf("run %s %s after %s\n", id.c_str(), status.c_str(), Duration(*run).c_str());
      if (status == "success") return kExitOk;
      if (Text(*run, "error") != "-") std::fprintf(stderr, "%s\n", Text(*run, "error").c_str());
      return kExitFailed;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
  }
}

// "run 12 of production started (pending)" for a 201 answer.
int PrintStarted(const Globals& g, const Reply& reply, const std::string& verb) {
  int code = kExitOk;
  auto run = ParseOrPrintJson(g, reply, &code);
  if (!run) return code;
  const std::string id = Text(*run, "id");
  std::printf("run %s of %s %s (%s); follow it with: gitopsctl logs %s --follow\n", id.c_str(),
              FlowLabel(*run).c_str(), verb.c_str(), Text(*run, "status").c_str(), id.c_str());
  return kExitOk;
}

std::string IdOf(const Reply& reply) {
  if (auto doc = json::Parse(reply.body)) return Text(*doc, "id");
  return "";
}

}  // namespace

int RunStartRun(const Globals& g, const StartRunOptions& options) {
  json::Value args = json::Value::Object();
  for (const std::string& kv : options.args) {
    const size_t eq = kv.find('=');
    if (eq == std::string::npos || eq == 0) {
      return Complain("--arg " + kv + ": write it as NAME=VALUE", kExitUsage);
    }
    args.Set(kv.substr(0, eq), json::Value::String(kv.substr(eq + 1)));
  }
  int code = kExitOk;
  auto client = Connect(g, &code);
  if (!client) return code;
  const std::string path = std::string(options.template_flow ? "/api/v1/templates/"
                                                             : "/api/v1/release-flows/") +
                           EncodeSegment(options.flow) + "/runs";
  const std::string body =
      args.members().empty()
          ? std::string("{}")
          : json::SerializeCompact(json::Value::Object({{"arguments", std::move(args)}}));
  auto reply = Call(*client, "POST", path, &code, body);
  if (!reply) return code;
  if (options.wait && g.json) return WaitForRun(g, *client, IdOf(*reply));
  if (const int printed = PrintStarted(g, *reply, "started"); printed != kExitOk) return printed;
  return options.wait ? WaitForRun(g, *client, IdOf(*reply)) : kExitOk;
}

int RunListRuns(const Globals& g, const std::string& flow) {
  int code = kExitOk;
  auto client = Connect(g, &code);
  if (!client) return code;
  std::string path = "/api/v1/runs";
  if (!flow.empty()) path += "?flow=" + EncodeSegment(flow);
  auto reply = Call(*client, "GET", path, &code);
  if (!reply) return code;
  auto doc = ParseOrPrintJson(g, *reply, &code);
  if (!doc) return code;
  std::vector<std::vector<std::string>> rows{{"ID", "FLOW", "KIND", "STATUS", "STARTED", "DURATION"}};
  if (const json::Value* runs = doc->Find("runs"); runs && runs->is_array()) {
    for (const auto& r : runs->items()) {
      std::string kind = Text(r, "kind");
      if (kind == "rollback") kind += " of " + Text(r, "rollbackOf");
      rows.push_back({Text(r, "id"), FlowLabel(r), kind, Text(r, "status"), Text(r, "startedAt"),
                      Duration(r)});
    }
  }
  if (rows.size() == 1) {
    std::printf("No runs.\n");
    return kExitOk;
  }
  PrintTable(rows);
  return kExitOk;
}

int RunGetRun(const Globals& g, const std::string& id) {
  int code = kExitOk;
  auto client = Connect(g, &code);
  if (!client) return code;
  auto reply = Call(*client, "GET", RunPath(id), &code);
  if (!reply) return code;
  auto run = ParseOrPrintJson(g, *reply, &code);
  if (!run) return code;
  const json::Value* flow = run->Find("flow");
  std::printf("run %s: %s revision %s, %s, %s, %s\n", Text(*run, "id").c_str(),
              FlowLabel(*run).c_str(), flow ? Text(*flow, "revision").c_str() : "-",
              Text(*run, "kind").c_str(), Text(*run, "status").c_str(), Duration(*run).c_str());
  if (Text(*run, "error") != "-") std::printf("error: %s\n", Text(*run, "error").c_str());
  std::vector<std::vector<std::string>> rows{{"NODE", "KIND", "REF", "STATUS", "DURATION", "ERROR"}};
  if (const json::Value* nodes = run->Find("nodes"); nodes && nodes->is_array()) {
    for (const auto& n : nodes->items()) {
      const std::string path = Text(n, "path");
      const size_t depth = static_cast<size_t>(std::count(path.begin(), path.end(), '.'));
      rows.push_back({std::string(2 * depth, ' ') + path, Text(n, "kind"), Text(n, "ref"),
                      Text(n, "status"), Duration(n), Text(n, "error")});
    }
  }
  PrintTable(rows);
  return kExitOk;
}

int RunLogs(const Globals& g, const std::string& id, bool follow) {
  if (g.json && follow) {
    return Complain("logs --follow prints text; for JSON poll gitopsctl --json logs ID", kExitUsage);
  }
  int code = kExitOk;
  auto client = Connect(g, &code);
  if (!client) return code;
  if (g.json) {  // the run with its nodes, each holding its log
    auto reply = Call(*client, "GET", RunPath(id), &code);
    if (!reply) return code;
    std::fwrite(reply->body.data(), 1, reply->body.size(), stdout);
    return kExitOk;
  }
  const std::string path = RunPath(id) + "/logs";
  if (!follow) {
    auto reply = Call(*client, "GET", path, &code);
    if (!reply) return code;
    std::fwrite(reply->body.data(), 1, reply->body.size(), stdout);
    return kExitOk;
  }
  auto reply = client->Stream(path + "?follow=true", [](std::string_view piece) {
    std::fwrite(piece.data(), 1, piece.size(), stdout);
    std::fflush(stdout);
  });
  if (!reply) return Complain(reply.error().message, kExitUnreachable);
  if (!reply->ok()) return Complain(Client::ErrorMessage(*reply));
  return kExitOk;
}

int RunRollback(const Globals& g, const std::string& id, bool restore_backup) {
  int code = kExitOk;
  auto client = Connect(g, &code);
  if (!client) return code;
  auto reply = Call(*client, "POST", RunPath(id) + "/rollback", &code,
                    restore_backup ? "{\"restoreBackup\": true}" : "{\"restoreBackup\": false}");
  if (!reply) return code;
  return PrintStarted(g, *reply, "started to roll back to run " + id);
}

int RunAct(const Globals& g, const std::string& id, const std::string& action) {
  int code = kExitOk;
  auto client = Connect(g, &code);
  if (!client) return code;
  auto reply = Call(*client, "POST", RunPath(id) + "/" + action, &code, "{}");
  if (!reply) return code;
  auto run = ParseOrPrintJson(g, *reply, &code);
  if (!run) return code;
  std::printf("run %s: %s (%s)\n", id.c_str(),
              action == "cancel" ? "cancel requested" : "approved", Text(*run, "status").c_str());
  return kExitOk;
}

int RunGetResources(const Globals& g, const std::string& what) {
  int code = kExitOk;
  auto client = Connect(g, &code);
  if (!client) return code;
  auto reply = Call(*client, "GET", "/api/v1/" + what, &code);
  if (!reply) return code;
  auto doc = ParseOrPrintJson(g, *reply, &code);
  if (!doc) return code;
  std::vector<std::vector<std::string>> rows;
  if (what == "services") {
    rows.push_back({"NAME", "BUILD", "STATE", "HEALTHY", "PORT", "PID", "RESTARTS"});
  } else if (what == "jobs") {
    rows.push_back({"ID", "JOB", "BUILD", "STATE", "ATTEMPTS", "EXIT", "STARTED", "DURATION"});
  } else if (what == "addons") {
    rows.push_back({"NAME", "TYPE", "LOCATION", "FORKED FROM", "CREATED"});
  } else if (what == "builds") {
    rows.push_back({"ID", "STATE", "ATTEMPTS", "STARTED", "DURATION", "ERROR"});
  } else {
    rows.push_back({"ID", "ADDON", "STATUS", "SIZE", "STARTED", "ERROR"});
  }
  if (const json::Value* items = doc->Find(what); items && items->is_array()) {
    for (const auto& i : items->items()) {
      if (what == "services") {
        rows.push_back({Text(i, "name"), Text(i, "build"), Text(i, "state"), Text(i, "healthy"),
                        Text(i, "port"), Text(i, "pid"), Text(i, "restarts")});
      } else if (what == "jobs") {
        rows.push_back({Text(i, "id"), Text(i, "job"), Text(i, "build"), Text(i, "state"),
                        Text(i, "attempts"), Text(i, "exitCode"), Text(i, "startedAt"), Duration(i)});
      } else if (what == "addons") {
        rows.push_back({Text(i, "name"), Text(i, "type"), Text(i, "location"),
                        Text(i, "forkedFrom"), Text(i, "createdAt")});
      } else if (what == "builds") {
        rows.push_back({Text(i, "id"), Text(i, "state"), Text(i, "attempts"), Text(i, "startedAt"),
                        Duration(i), Text(i, "error")});
      } else {
        rows.push_back({Text(i, "id"), Text(i, "addon"), Text(i, "status"), Text(i, "size"),
                        Text(i, "startedAt"), Text(i, "error")});
      }
    }
  }
  if (rows.size() == 1) {
    std::printf("No %s.\n", what.c_str());
    return kExitOk;
  }
  PrintTable(rows);
  return kExitOk;
}

}  // namespace gitopsd::ctl
