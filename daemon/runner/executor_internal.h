// Private to the runtime executor: the NodeExecutor that MakeRuntimeExecutor
// (executor.h) returns, and the small JSON helpers its files share. The
// class is one idea split by node kind:
//   executor.cc          dispatch, resources a Template declares, the
//                        re-check after a restart, the shared helpers
//   executor_release.cc  Build and Release nodes (and the deploys they make)
//   executor_work.cc     JobRun, AddonBackup, Action and Condition nodes
//   executor_message.cc  Message nodes (the webhook POST; Poco stays there)
// Nothing outside daemon/runner/executor*.cc includes this header.
#pragma once
#include <functional>
#include <initializer_list>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "daemon/runner/executor.h"
#include "daemon/runtime/addons.h"
#include "daemon/runtime/builds.h"
#include "daemon/runtime/jobs.h"
#include "daemon/runtime/launcher.h"
#include "daemon/runtime/resources.h"
#include "daemon/runtime/services.h"

namespace gitopsd::runner::executor_internal {

using runtime::BuildRecord;
using runtime::Execution;
using runtime::Resource;
using runtime::ResourceKind;

// ---- small JSON helpers ----

inline json::Value Str(std::string s) { return json::Value::String(std::move(s)); }
inline json::Value Num(double d) { return json::Value::Number(d); }

// The string or number at `path` in `v` as text; "" when absent.
std::string Text(const json::Value& v, std::initializer_list<std::string_view> path);
std::string Quoted(const std::string& s);
// A whole number spelled in full ("42"), or nullopt.
std::optional<int64_t> ParseInt(const std::string& text);
// An argv from an array of strings, or a string split on spaces (no shell).
Result<std::vector<std::string>> CommandOf(const json::Value* v, const std::string& what);
Result<std::map<std::string, std::string>> StringMap(const json::Value* v, const std::string& what);

// "<service>@<commit>", or a bare commit of `service`.
struct BuildRef {
  std::string service, commit;
  std::string id() const { return service + "@" + commit; }
};
BuildRef ParseBuildId(const std::string& id, const std::string& service);

json::Value BuildData(const BuildRecord& b, const std::string& branch);
json::Value JobRunData(const runtime::JobRun& run);
json::Value BackupData(const runtime::Backup& b);
json::Value OutcomeToJson(const NodeOutcome& out);
NodeOutcome OutcomeFromJson(const json::Value& v);
NodeOutcome FailWith(const Error& e);
// A process's output lines into the node log, indented under gitopsd's own.
std::function<void(std::string_view)> ProcessOutput(const NodeContext& ctx);

// The NodeExecutor of the process runtime; executor.h states its contract.
class RuntimeExecutor final : public NodeExecutor {
 public:
  explicit RuntimeExecutor(RuntimeDeps deps) : d_(std::move(deps)) {}

  NodeOutcome Execute(const NodeContext& ctx) override;
  NodeOutcome Recheck(const NodeContext& ctx, const json::Value& recorded) override;
  ResourceExists ResourceLookup() override;

 private:
  // Records `detail` before `work` touches the runtime and its outcome after.
  template <class Work>
  NodeOutcome Journaled(const NodeContext& ctx, json::Value detail, Work&& work);

  NodeOutcome Declare(const NodeContext& ctx, ResourceKind kind);
  NodeOutcome DeclareAddon(const NodeContext& ctx);
  NodeOutcome DeclareService(const NodeContext& ctx, const runtime::UpsertOutcome& up);
  NodeOutcome DeclareJob(const NodeContext& ctx, const runtime::UpsertOutcome& up);
  NodeOutcome Build(const NodeContext& ctx);
  NodeOutcome Release(const NodeContext& ctx);
  NodeOutcome JobRun(const NodeContext& ctx, const std::string& job_id, const json::Value* env_overrides,
                     const json::Value* command);
  NodeOutcome Backup(const NodeContext& ctx);
  NodeOutcome Action(const NodeContext& ctx);
  NodeOutcome ServiceExecute(const NodeContext& ctx, const json::Value& data);
  NodeOutcome Condition(const NodeContext& ctx);
  NodeOutcome Message(const NodeContext& ctx);

  NodeOutcome RecheckBuild(const NodeContext& ctx, const Execution& e);
  NodeOutcome RecheckJobRun(const NodeContext& ctx, const Execution& e, const json::Value& recorded);
  NodeOutcome RecheckRelease(const NodeContext& ctx, const Execution& e);
  NodeOutcome RecheckBackup(const NodeContext& ctx, const Execution& e);

  // The build a Release's origin names: a build id, a commit, or the newest
  // successful build of the branch ("latest").
  Result<BuildRecord> OriginBuild(const json::Value& origin);
  // What a Release of type deployment promotes: the build its origin service
  // runs or its origin job is set to run.
  Result<BuildRecord> PromotedBuild(const json::Value& origin);
  Result<std::optional<BuildRecord>> SucceededBuild(const BuildRef& ref);
  // The build a service or job declares in deployment.internal, if any.
  Result<std::optional<BuildRecord>> DeclaredBuild(const runtime::WorkloadConfig& w);
  Result<json::Value> DeployToService(const NodeContext& ctx, const Resource& service, const BuildRecord& build,
                                      const std::string& previous);
  // The build a deployed service runs, from its status.
  Result<std::pair<runtime::ServiceStatus, BuildRecord>> RunningBuild(const std::string& service);
  // `streamed`: its output already went to the node log line by line.
  NodeOutcome JobRunOutcome(const NodeContext& ctx, const runtime::JobRun& run, bool streamed = false);

  RuntimeDeps d_;
};

template <class Work>
NodeOutcome RuntimeExecutor::Journaled(const NodeContext& ctx, json::Value detail, Work&& work) {
  Execution e;
  e.run_id = ctx.run_id;
  e.node_path = ctx.node_path;
  e.attempt = ctx.attempt;
  e.kind = ctx.kind;
  e.detail = std::move(detail);
  e.started_at = runtime::NowMillis();
  if (auto s = d_.resources->RecordStart(e); !s) {
    return NodeOutcome::Failure("not started: cannot record what this node starts (" + s.error().message + ")");
  }
  NodeOutcome out = work();
  if (out.status != NodeOutcome::Status::kWaiting) {
    if (auto s = d_.resources->RecordOutcome(ctx.run_id, ctx.node_path, ctx.attempt, OutcomeToJson(out)); !s) {
      ctx.log("warning: cannot record the outcome: " + s.error().message);
    }
  }
  return out;
}

}  // namespace gitopsd::runner::executor_internal
