// gitopsctl's preview commands: list the preview environments and tear one
// down (DELETE /api/v1/previews/NAME).
#include <cstdio>

#include "daemon/ctl/commands.h"
#include "daemon/ctl/common.h"

namespace gitopsd::ctl {

int RunListPreviews(const Globals& g, bool all) {
  int code = kExitOk;
  auto client = Connect(g, &code);
  if (!client) return code;
  auto reply = Call(*client, "GET", std::string("/api/v1/previews") + (all ? "?all=true" : ""), &code);
  if (!reply) return code;
  auto doc = ParseOrPrintJson(g, *reply, &code);
  if (!doc) return code;
  std::vector<std::vector<std::string>> rows{{"NAME", "TEMPLATE", "STATUS", "SOURCE", "COMMIT", "URL", "EXPIRES"}};
  if (const json::Value* previews = doc->Find("previews"); previews && previews->is_array()) {
    for (const auto& p : previews->items()) {
      const std::string pr = Text(p, "pullRequest");  // "-" for a branch preview
      rows.push_back({Text(p, "name"), Text(p, "template"), Text(p, "status"),
                      pr == "-" ? Text(p, "branch") : "#" + pr + " (" + Text(p, "branch") + ")",
                      Short(Text(p, "sha")), Text(p, "url"), Text(p, "expiresAt")});
    }
  }
  if (rows.size() == 1) {
    std::printf("No previews.\n");
    return kExitOk;
  }
  PrintTable(rows);
  return kExitOk;
}

int RunTeardown(const Globals& g, const std::string& name, bool skip_teardown) {
  int code = kExitOk;
  auto client = Connect(g, &code);
  if (!client) return code;
  std::string path = "/api/v1/previews/" + EncodeSegment(name);
  if (skip_teardown) path += "?skipTeardown=true";
  auto reply = Call(*client, "DELETE", path, &code);
  if (!reply) return code;
  auto doc = ParseOrPrintJson(g, *reply, &code);
  if (!doc) return code;
  std::printf("preview %s is being torn down%s; 'gitopsctl previews --all' shows when it is gone\n",
              name.c_str(), skip_teardown ? " (its teardown run skipped)" : "");
  return kExitOk;
}

}  // namespace gitopsd::ctl
