// The preview environments gitopsd keeps, in <stateDir>/state.db (module
// "previews"): one row per preview, from the moment it is asked for until
// it is torn down (then kept as "gone" for the record). A preview belongs to
// one PreviewTemplate and one source: a pull request (number) or a branch;
// FindBySource() is how a new commit finds the preview to re-run, so one
// source never gets two live previews.
//
// Every change is one transaction. Thread-safe.
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "sync/json.h"
#include "sync/status.h"

namespace gitopsd::previews {

enum class PreviewStatus {
  kQueued,          // over the cap: waits for a free slot
  kDeploying,       // its setup run is running
  kReady,           // its last setup run succeeded
  kFailed,          // its last setup run failed (resources kept for a re-run or teardown)
  kTearingDown,     // teardown in progress (resumed after a restart)
  kTeardownFailed,  // teardownSpec failed with failurePolicy "block"
  kGone,            // torn down: nothing of it remains
};
const char* PreviewStatusName(PreviewStatus s);  // "queued", "deploying", "ready", ...
std::optional<PreviewStatus> ParsePreviewStatus(std::string_view s);
bool IsLive(PreviewStatus s);  // not gone

// A resource a preview's runs declared, removed at teardown.
struct PreviewResource {
  std::string kind;  // "service", "job", "addon", "build service", "secret group"
  std::string name;
  bool operator==(const PreviewResource&) const = default;
};

struct Preview {
  std::string name;
  std::string template_name;
  std::string trigger;       // the trigger's ref ("" when made by hand or by a webhook without one)
  std::string repository;
  std::string branch;
  std::string pull_request;  // "" for a branch preview
  std::string sha;           // the head its last setup run deployed
  PreviewStatus status = PreviewStatus::kQueued;
  std::optional<int64_t> setup_run;     // the last setup run
  std::optional<int64_t> teardown_run;  // the teardown run, once started
  // No teardown run is wanted: skipped on request, the template has no
  // teardownSpec, or its run could not start (then `error` says why).
  bool skip_teardown = false;
  int64_t created_at = 0, updated_at = 0;
  int64_t expires_at = 0;  // ms since the epoch; 0 = never
  std::string url;
  std::vector<PreviewResource> resources;
  std::string error;       // why it failed, or why teardown was blocked
  json::Value args;        // the arguments of its runs (object)
};

class PreviewStore {
 public:
  static Result<std::unique_ptr<PreviewStore>> Open(const std::string& state_dir);
  ~PreviewStore();
  PreviewStore(const PreviewStore&) = delete;
  PreviewStore& operator=(const PreviewStore&) = delete;

  // Inserts a new preview; kConflict-like error when the name is taken by a
  // live preview (a gone one of that name is replaced).
  Status Create(const Preview& preview);
  // Replaces the row of preview.name.
  Status Update(const Preview& preview);
  Result<std::optional<Preview>> Get(const std::string& name);
  // The live preview of `template_name` for a pull request (when
  // `pull_request` is not empty) or else for `branch`.
  Result<std::optional<Preview>> FindBySource(const std::string& template_name, const std::string& pull_request,
                                              const std::string& branch);
  // Live previews first (by creation), then gone ones when `with_gone`.
  Result<std::vector<Preview>> List(bool with_gone = false);
  // Live previews of `template_name` ("" = all) that count against a cap
  // (not queued).
  Result<int> CountActive(const std::string& template_name);

 private:
  struct Impl;
  explicit PreviewStore(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace gitopsd::previews
