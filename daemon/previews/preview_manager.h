// Preview environments: one per pull request (or matching branch) of a
// PreviewTemplate, created when its trigger fires, re-run on each new
// commit, torn down when its source goes (a PR closed or merged, a branch
// deleted), when it expires, or when asked (DELETE /api/v1/previews/NAME).
//
// What callers can rely on:
//  - One live preview per (template, pull request | branch): an update of
//    the source re-runs the same preview's setup run, never a second one.
//    An update while the preview is being torn down (a PR closed and
//    reopened at once) is a transient error: the event stays pending and,
//    once the old preview is gone, makes a new one.
//  - The name comes from options.nameFormat: an expression over the
//    trigger's refs ("pr-${refs.app.pullRequestId}"), or one of the
//    conventions "pull-request-id" (pr-12), "branch" (its slug), "timestamp"
//    (yy-mm-dd-hhmm) and "random-words"; by default pr-<n> or the branch
//    slug. Lower-case letters, digits and dashes, at most 39 characters; a
//    taken name gets a suffix. ${args.name} and ${args.previewId} hold it.
//  - options.maxPreviews caps the live previews of a template: beyond it an
//    event is refused (logged, the event recorded as skipped), or with
//    options.overCap "queue" waits (pending) until a preview is gone.
//  - options.schedule (active hours, sync/schedule.h): outside them Git
//    trigger events wait, pending, and act at the next look inside them
//    (the newest head of a PR or branch; older ones are superseded).
//    Webhooks and manual previews are not bound by it; teardowns neither.
//  - options.expiry.previewLifetime (minutes) tears a preview down that long
//    after its creation, or after its last update with resetOnUpdate.
//  - The resources a preview owns are those its setup runs declared
//    (Addon, DeploymentService, jobs, SecretGroup, BuildService nodes) whose
//    name holds the preview's name or whose tags hold its previewId: shared
//    resources a template only names (a build service, the production
//    database it forks) are never removed.
//  - Teardown runs teardownSpec first (with the refs of the last setup run:
//    the trigger's and every node's output), unless skipped; with
//    failurePolicy "block" a failed teardown run stops there
//    (teardown_failed, resources kept); otherwise every owned resource is
//    removed: services stopped and forgotten, databases dropped with their
//    backups, state folders deleted. Then the preview is "gone".
//  - Crash-safe: every step is a state change recorded first; Tick() (every
//    tick, and at start) carries on whatever a preview was doing — a setup
//    run that concluded, a teardown half done — so a restart finishes it.
//    At start, resources of previews recorded gone that are still there
//    (processes, databases, folders) are swept.
//  - Thread-safe.
#pragma once
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "daemon/previews/preview_store.h"
#include "daemon/trigger_bridge.h"

namespace gitopsd::store {
class Store;
}
namespace gitopsd::runner {
class Engine;
}
namespace gitopsd::runtime {
class ServiceManager;
class Addons;
class ResourceRegistry;
}  // namespace gitopsd::runtime

namespace gitopsd::daemon {

class FlowRuns;

struct PreviewDeps {
  store::Store* store = nullptr;
  FlowRuns* runs = nullptr;
  previews::PreviewStore* previews = nullptr;
  runtime::ServiceManager* services = nullptr;
  runtime::Addons* addons = nullptr;
  runtime::ResourceRegistry* resources = nullptr;
  std::string state_dir;
  // A preview's URL: {name}, {service} and {port} filled in (runtime.previewUrl).
  std::string url_template = "http://127.0.0.1:{port}";
  std::chrono::milliseconds tick{1000};  // how often Tick() carries previews on
  // How long a minute of options.expiry.previewLifetime lasts (tests shorten
  // it with GITOPSD_PREVIEW_MINUTE).
  std::chrono::milliseconds minute{60'000};
  // The minute of the week now, for options.schedule (Monday 00:00 is 0);
  // unset: the host's local time.
  std::function<int()> minute_of_week = {};
  // Whether pull request `number` of the configured repository is open, as
  // its forge's API says (repositories[].forgeApi): nullopt when the
  // repository has no forge API. Unset: never asked. With it, previews of
  // pull requests closed on a forge that keeps their refs (GitHub) end
  // without webhooks: every `forge_check`, each live pull request preview's
  // state is asked, and a closed one goes to `pull_request_closed`.
  std::function<Result<std::optional<bool>>(const std::string& repository, const std::string& number)>
      pull_request_open = {};
  std::function<void(const std::string& repository, const std::string& number, const std::string& why)>
      pull_request_closed = {};
  // Five minutes: 100 live previews ask 1,200 times an hour, well within
  // GitHub's 5,000 an hour for a token.
  std::chrono::milliseconds forge_check{300'000};
  // Called (with the preview's repository) when a preview is gone: events
  // that waited for it are tried again on the look it asks for.
  std::function<void(const std::string& repository)> on_gone;
};

// A preview asked for by its generic webhook (or by hand).
struct ManualRequest {
  std::string template_name;
  std::string trigger;  // the trigger whose values `values` are ("" = none)
  json::Value values = json::Value::Object();  // {branch, sha, pullRequestId, repoUrl}
  std::string name;     // "" = by the naming convention
  json::Value args = json::Value::Object();    // extra ${args.X}
};

struct ManualPreview {
  previews::Preview preview;
  int64_t run = 0;
  bool created = false;  // false: an existing preview was re-run
};

class PreviewManager final : public PreviewFiring {
 public:
  explicit PreviewManager(PreviewDeps deps) : d_(std::move(deps)) {}
  ~PreviewManager() override;  // Stop()
  PreviewManager(const PreviewManager&) = delete;
  PreviewManager& operator=(const PreviewManager&) = delete;

  void Start();
  void Stop();

  Result<triggers::FireOutcome> Update(const triggers::TriggerEvent& event, const std::string& repo_url) override;
  void SourceGone(const triggers::FlowKey& preview_template, const std::string& repository, const std::string& branch,
                  const std::string& pull_request, const std::string& why) override;

  // Creates the preview or re-runs the one of that name (or of that pull
  // request or branch); the cap applies to a new one.
  Result<ManualPreview> Manual(const ManualRequest& request);

  // Starts tearing the preview down (kNotFound-like error for an unknown or
  // gone one); it is gone once Tick() finished it.
  Result<previews::Preview> Teardown(const std::string& name, bool skip_teardown, const std::string& why);
  // The preview expires `lifetime_minutes` from now (whatever its template's
  // expiry says); an error for an unknown, gone or departing preview.
  Result<previews::Preview> ResetExpiry(const std::string& name, int64_t lifetime_minutes);
  // Carries every live preview one step on; the manager's thread calls it.
  void Tick();
  // Asks the forge whether each live pull request preview's pull request is
  // still open (see PreviewDeps::pull_request_open); the manager's thread
  // calls it every forge_check. Takes no lock while it asks.
  void CheckPullRequests();

 private:
  Result<previews::Preview> Create(const triggers::TriggerEvent& event, const json::Value& body,
                                   const json::Value& refs, const std::string& wanted_name);
  // Why Git triggers must wait now (options.schedule), or nullopt.
  std::optional<std::string> OutsideActiveHours(const std::string& template_name, const json::Value& body) const;
  Result<int64_t> StartSetup(previews::Preview& preview, const triggers::TriggerEvent& event, const json::Value& refs);
  void Settle(previews::Preview& preview);
  void FinishTeardown(previews::Preview& preview);
  Status BeginTeardown(previews::Preview& preview, bool skip_teardown, const std::string& why);
  void StartTeardownRun(previews::Preview& preview);
  void RemoveResources(const previews::Preview& preview);
  // At start: what previews recorded gone left behind (a removal that failed,
  // or was cut short) is removed, unless a live preview owns that name now.
  void Sweep();
  bool StillThere(const previews::PreviewResource& resource);
  Status Save(const previews::Preview& preview);

  PreviewDeps d_;
  std::mutex mu_;  // one change of previews at a time
  std::mutex thread_mu_;
  std::condition_variable wake_;
  bool stopping_ = false;
  std::thread thread_;
};

// The name a preview gets (see above), before a suffix makes it unique.
std::string PreviewName(const json::Value& template_body, const json::Value& refs,
                        const triggers::TriggerEvent& event);

}  // namespace gitopsd::daemon
