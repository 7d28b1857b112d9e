#include "daemon/runner/references.h"

#include <initializer_list>
#include <string_view>

namespace gitopsd::runner {
namespace {

const json::Value* At(const json::Value& v, std::initializer_list<std::string_view> path) {
  const json::Value* cur = &v;
  for (std::string_view key : path) {
    if (!cur->is_object()) return nullptr;
    cur = cur->Find(key);
    if (!cur) return nullptr;
  }
  return cur;
}

std::string TextAt(const json::Value& v, std::initializer_list<std::string_view> path) {
  const json::Value* found = At(v, path);
  return found && found->is_string() ? found->as_string() : "";
}

// Adds the name at `path` (below the node's "spec") when it is a literal.
void Add(std::vector<NamedResource>* out, const json::Value& node, const std::string& where, std::string kind,
         std::initializer_list<std::string_view> path, const std::string& suffix) {
  const json::Value* spec = node.Find("spec");
  if (!spec) return;
  std::string name = TextAt(*spec, path);
  if (name.empty() || name.find("${") != std::string::npos) return;
  out->push_back(NamedResource{std::move(kind), std::move(name), where + ".spec" + suffix});
}

// "service" / "job" for a Release's origin or target type.
std::string WorkloadKind(const std::string& type) { return type == "service" ? "service" : type == "job" ? "job" : ""; }

void ReleaseUses(std::vector<NamedResource>* out, const json::Value& node, const std::string& where) {
  const json::Value& spec = *node.Find("spec");
  if (std::string kind = WorkloadKind(TextAt(spec, {"target", "type"})); !kind.empty()) {
    Add(out, node, where, kind, {"target", "id"}, ".target.id");
  }
  const std::string type = TextAt(spec, {"type"});
  if (type == "build") {
    Add(out, node, where, "build service", {"origin", "id"}, ".origin.id");
  } else if (type == "deployment") {
    if (std::string kind = WorkloadKind(TextAt(spec, {"origin", "type"})); !kind.empty()) {
      Add(out, node, where, kind, {"origin", "id"}, ".origin.id");
    }
  }
}

// Condition and Action nodes: {kind, spec: {type, data: {...Id}}}.
void DataUses(std::vector<NamedResource>* out, const json::Value& node, const std::string& where,
              const std::string& node_kind) {
  const json::Value& spec = *node.Find("spec");
  const std::string kind = TextAt(spec, {"kind"}), type = TextAt(spec, {"spec", "type"});
  auto add = [&](std::string resource, std::string_view field) {
    Add(out, node, where, std::move(resource), {"spec", "data", field}, ".spec.data." + std::string(field));
  };
  if (node_kind == "Condition") {
    if (kind == "Service" && type == "running") add("service", "serviceId");
    if (kind == "JobRun" && type == "success") add("job", "jobId");
    return;
  }
  if (kind == "Service") add("service", "serviceId");
  if (kind == "Job") add("job", "jobId");
  if (kind == "AddonBackup" || kind == "Addon") add("addon", "addonId");
}

}  // namespace

std::vector<NamedResource> UsedResources(const json::Value& node, const std::string& where) {
  std::vector<NamedResource> out;
  const json::Value* spec = node.is_object() ? node.Find("spec") : nullptr;
  if (!spec || !spec->is_object()) return out;
  const std::string kind = TextAt(node, {"kind"});
  if (kind == "JobRun") Add(&out, node, where, "job", {"jobId"}, ".jobId");
  if (kind == "AddonBackup") Add(&out, node, where, "addon", {"addonId"}, ".addonId");
  if (kind == "Build") Add(&out, node, where, "build service", {"id"}, ".id");
  if (kind == "Release") ReleaseUses(&out, node, where);
  if (kind == "Condition" || kind == "Action") DataUses(&out, node, where, kind);
  return out;
}

std::vector<NamedResource> DeclaredResources(const json::Value& node, const std::string& where) {
  std::vector<NamedResource> out;
  const std::string kind = TextAt(node, {"kind"});
  auto declare = [&](std::string resource) { Add(&out, node, where, std::move(resource), {"name"}, ".name"); };
  if (kind == "DeploymentService" || kind == "CombinedService") declare("service");
  if (kind == "BuildService" || kind == "CombinedService") declare("build service");
  if (kind == "ManualJob" || kind == "Job" || kind == "CronJob") declare("job");
  if (kind == "Addon") declare("addon");
  return out;
}

}  // namespace gitopsd::runner
