#include "daemon/previews/preview_manager.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cctype>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <random>
#include <set>

#include "daemon/flow_runs.h"
#include "daemon/runner/engine.h"
#include "daemon/runner/evaluate.h"
#include "daemon/runtime/addons.h"
#include "daemon/runtime/resources.h"
#include "daemon/runtime/services.h"
#include "sync/schedule.h"
#include "sync/store.h"

namespace gitopsd::daemon {
namespace {

namespace fs = std::filesystem;
using previews::Preview;
using previews::PreviewResource;
using previews::PreviewStatus;
using triggers::FireOutcome;
using triggers::TriggerEvent;

constexpr size_t kMaxName = 39;

// Crash tests name a point in GITOPSD_FAULT; the process dies there as if
// killed with -9.
void FaultPoint(const char* name) {
  const char* wanted = std::getenv("GITOPSD_FAULT");
  if (wanted && std::strcmp(wanted, name) == 0) raise(SIGKILL);
}

int64_t NowMs() {
  using namespace std::chrono;
  return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
}

std::string Text(const json::Value* v, std::string_view key) {
  const json::Value* found = v && v->is_object() ? v->Find(key) : nullptr;
  return found && found->is_string() ? found->as_string() : "";
}

const json::Value* Options(const json::Value& body) {
  const json::Value* options = body.Find("options");
  return options && options->is_object() ? options : nullptr;
}

std::optional<int64_t> Number(const json::Value* v, std::string_view key) {
  const json::Value* found = v && v->is_object() ? v->Find(key) : nullptr;
  if (!found || !found->is_number()) return std::nullopt;
  return static_cast<int64_t>(found->as_double());
}

// Lower-case letters, digits and single dashes, at most kMaxName.
std::string Slug(std::string_view text) {
  std::string out;
  for (unsigned char c : text) {
    if (std::isalnum(c)) {
      out += static_cast<char>(std::tolower(c));
    } else if (!out.empty() && out.back() != '-') {
      out += '-';
    }
  }
  if (out.size() > kMaxName) out.resize(kMaxName);
  while (!out.empty() && out.back() == '-') out.pop_back();
  return out;
}

std::string RandomWords() {
  static constexpr const char* kFirst[] = {"amber", "brisk", "calm", "dusty", "eager", "fuzzy", "gentle", "hollow",
                                           "icy", "jolly", "keen", "lucky", "misty", "nimble", "quiet", "rapid"};
  static constexpr const char* kSecond[] = {"anchor", "badger", "cedar", "delta", "ember", "falcon", "garden",
                                            "harbor", "island", "jasper", "kettle", "lantern", "meadow", "nectar",
                                            "orchard", "pebble"};
  std::random_device random;
  return std::string(kFirst[random() % 16]) + "-" + kSecond[random() % 16];
}

std::string Timestamp() {
  std::time_t now = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&now, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%y-%m-%d-%H%M", &tm);
  return buf;
}

// The URL template with {name}, {service} and {port} filled in.
std::string FillUrl(std::string url, const std::string& name, const std::string& service, const std::string& port) {
  for (const auto& [key, value] : {std::pair<std::string, std::string>{"{name}", name},
                                   {"{service}", service},
                                   {"{port}", port}}) {
    for (size_t at = url.find(key); at != std::string::npos; at = url.find(key, at + value.size())) {
      url.replace(at, key.size(), value);
    }
  }
  return url;
}

// A resource a setup run's node declared: ("service", name) etc.
std::optional<PreviewResource> DeclaredBy(const runner::NodeRecord& node) {
  std::string kind;
  if (node.kind == "DeploymentService" || node.kind == "CombinedService") kind = "service";
  if (node.kind == "ManualJob" || node.kind == "Job" || node.kind == "CronJob") kind = "job";
  if (node.kind == "Addon") kind = "addon";
  if (node.kind == "SecretGroup") kind = "secret group";
  if (node.kind == "BuildService") kind = "build service";
  std::string name = Text(&node.data, "name");
  if (kind.empty() || name.empty() || node.status != runner::NodeStatus::kSuccess) return std::nullopt;
  return PreviewResource{kind, name};
}

bool TaggedWith(const runner::NodeRecord& node, const std::string& tag) {
  const json::Value* spec = node.spec.is_object() ? node.spec.Find("spec") : nullptr;
  const json::Value* tags = spec && spec->is_object() ? spec->Find("tags") : nullptr;
  if (!tags || !tags->is_array()) return false;
  for (const json::Value& t : tags->items()) {
    if (t.is_string() && t.as_string() == tag) return true;
  }
  return false;
}

// The refs a teardown run sees: the setup run's trigger refs and every
// node's output by its ref.
json::Value SetupRefs(const runner::RunRecord& run) {
  json::Value refs = run.trigger_refs.is_object() ? run.trigger_refs : json::Value::Object();
  for (const runner::NodeRecord& n : run.nodes) {
    if (!n.ref.empty() && n.data.is_object()) refs.Set(n.ref, n.data);
  }
  return refs;
}

}  // namespace

std::string PreviewName(const json::Value& body, const json::Value& refs,
                        const TriggerEvent& event) {
  const std::string format = Text(Options(body), "nameFormat");
  const std::string fallback = event.pull_request.empty() ? Slug(event.branch) : "pr-" + event.pull_request;
  std::string name;
  if (format == "pull-request-id") {
    name = event.pull_request.empty() ? "" : "pr-" + event.pull_request;
  } else if (format == "branch") {
    name = Slug(event.branch);
  } else if (format == "timestamp") {
    name = Timestamp();
  } else if (format == "random-words") {
    name = RandomWords();
  } else if (!format.empty()) {
    runner::RefMap ref_map = runner::RefsFromTriggers(refs);
    json::Value args = json::Value::Object();
    runner::Scope scope;
    scope.args = &args;
    scope.refs = &ref_map;
    auto value = runner::EvaluateString(format, scope, "options.nameFormat");
    if (value) name = Slug(runner::ToText(*value));
  } else {
    name = fallback;
  }
  name = Slug(name);
  return name.empty() ? RandomWords() : name;
}

PreviewManager::~PreviewManager() { Stop(); }

void PreviewManager::Start() {
  Sweep();
  std::lock_guard lock(thread_mu_);
  if (thread_.joinable()) return;
  stopping_ = false;
  thread_ = std::thread([this] {
    std::unique_lock lock(thread_mu_);
    auto next_forge_check = std::chrono::steady_clock::now();
    while (!stopping_) {
      lock.unlock();
      Tick();
      if (d_.pull_request_open && std::chrono::steady_clock::now() >= next_forge_check) {
        CheckPullRequests();
        next_forge_check = std::chrono::steady_clock::now() + d_.forge_check;
      }
      lock.lock();
      wake_.wait_for(lock, d_.tick, [&] { return stopping_; });
    }
  });
}

void PreviewManager::Stop() {
  {
    std::lock_guard lock(thread_mu_);
    stopping_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
}

Status PreviewManager::Save(const Preview& preview) {
  auto s = d_.previews->Update(preview);
  if (!s) spdlog::error("previews: cannot record preview {}: {}", preview.name, s.error().message);
  return s;
}

Result<FireOutcome> PreviewManager::Update(const TriggerEvent& event, const std::string& repo_url) {
  std::lock_guard lock(mu_);
  auto object = d_.store->GetObject("PreviewTemplate", event.flow.name);
  if (!object) return std::unexpected(object.error());
  if (!*object) return FireOutcome::Skipped("PreviewTemplate \"" + event.flow.name + "\" no longer exists");
  auto body = json::Parse((*object)->body, json::ParseOptions{64 << 20, 512});
  if (!body) return Fail("PreviewTemplate " + event.flow.name + ": the stored body does not parse");
  if (auto closed = OutsideActiveHours(event.flow.name, *body)) {
    return FireOutcome::Waiting(*closed);
  }
  const json::Value refs = TriggerRefsOf(event, repo_url);
  auto existing = d_.previews->FindBySource(event.flow.name, event.pull_request, event.branch);
  if (!existing) return std::unexpected(existing.error());
  Preview preview;
  if (*existing) {
    preview = **existing;
    if (preview.status == PreviewStatus::kTearingDown) {
      // Transient: the event stays pending, and is tried again once the
      // preview is gone (on_gone asks for a look): then it gets a new one.
      return Fail("preview " + preview.name + " is still being torn down; the event waits until it is gone");
    }
    if (preview.status == PreviewStatus::kTeardownFailed) {
      return FireOutcome::Skipped("preview " + preview.name + " failed its teardown (failurePolicy block): "
                                       "tear it down again (DELETE /api/v1/previews/" + preview.name + ") first");
    }
    const json::Value* expiry = Options(*body) ? Options(*body)->Find("expiry") : nullptr;
    auto lifetime = Number(expiry, "previewLifetime");
    const json::Value* reset = expiry && expiry->is_object() ? expiry->Find("resetOnUpdate") : nullptr;
    if (lifetime && reset && reset->is_bool() && reset->as_bool()) {
      preview.expires_at = NowMs() + *lifetime * d_.minute.count();
    }
  } else {
    if (auto cap = Number(Options(*body), "maxPreviews")) {
      auto active = d_.previews->CountActive(event.flow.name);
      if (!active) return std::unexpected(active.error());
      if (*active >= *cap) {
        const std::string why = "PreviewTemplate \"" + event.flow.name + "\" already has " +
                                std::to_string(*active) + " live previews (options.maxPreviews " +
                                std::to_string(*cap) + ")";
        // overCap "queue": the event stays pending, and a preview gone asks
        // for a look (on_gone), which tries it again.
        if (Text(Options(*body), "overCap") == "queue") {
          return FireOutcome::Waiting(why + "; it waits for a free slot (overCap queue)");
        }
        return FireOutcome::Skipped(why);
      }
    }
    auto created = Create(event, *body, refs, "");
    if (!created) return std::unexpected(created.error());
    preview = std::move(*created);
  }
  preview.sha = event.sha;
  preview.updated_at = NowMs();
  auto run = StartSetup(preview, event, refs);
  if (!run) {
    preview.status = PreviewStatus::kFailed;
    preview.error = run.error().message;
    (void)Save(preview);
    return FireOutcome::Skipped("preview " + preview.name + ": " + run.error().message);
  }
  return FireOutcome::Started(*run);
}

std::optional<std::string> PreviewManager::OutsideActiveHours(const std::string& template_name,
                                                               const json::Value& body) const {
  const json::Value* schedule = Options(body) ? Options(body)->Find("schedule") : nullptr;
  if (!schedule) return std::nullopt;
  auto hours = model::ActiveHours::Parse(*schedule);
  if (!hours) return std::nullopt;  // the loader refuses such a template; an older body counts as always
  const int now = d_.minute_of_week ? d_.minute_of_week() : model::LocalMinuteOfWeek(std::time(nullptr));
  if (hours->ActiveAt(now)) return std::nullopt;
  auto next = hours->NextOpening(now);
  return "outside the active hours of PreviewTemplate \"" + template_name + "\" (options.schedule; now " +
         model::FormatMinuteOfWeek(now) + " host time); it waits" +
         (next ? " until " + model::FormatMinuteOfWeek(*next) : std::string());
}

Result<Preview> PreviewManager::Create(const TriggerEvent& event, const json::Value& body, const json::Value& refs,
                                       const std::string& wanted_name) {
  std::string base = wanted_name.empty() ? PreviewName(body, refs, event) : Slug(wanted_name);
  if (base.empty()) base = RandomWords();
  std::string name = base;
  for (int i = 2;; ++i) {
    auto taken = d_.previews->Get(name);
    if (!taken) return std::unexpected(taken.error());
    if (!*taken || !previews::IsLive((*taken)->status)) break;
    const std::string suffix = "-" + std::to_string(i);
    name = base.substr(0, kMaxName - suffix.size()) + suffix;
  }
  Preview p;
  p.name = name;
  p.template_name = event.flow.name;
  p.trigger = event.trigger;
  p.repository = event.repository;
  p.branch = event.branch;
  p.pull_request = event.pull_request;
  p.sha = event.sha;
  p.status = PreviewStatus::kDeploying;
  p.created_at = p.updated_at = NowMs();
  const json::Value* expiry = Options(body) ? Options(body)->Find("expiry") : nullptr;
  if (auto lifetime = Number(expiry, "previewLifetime")) p.expires_at = p.created_at + *lifetime * d_.minute.count();
  p.args = json::Value::Object({{"name", json::Value::String(name)}, {"previewId", json::Value::String(name)}});
  if (auto s = d_.previews->Create(p); !s) return std::unexpected(s.error());
  spdlog::info("previews: preview {} created for {} of {}", name,
               event.pull_request.empty() ? "branch " + event.branch : "pull request #" + event.pull_request,
               event.repository);
  return p;
}

Result<int64_t> PreviewManager::StartSetup(Preview& preview, const TriggerEvent& event, const json::Value& refs) {
  RunOptions options;
  options.args = preview.args;
  options.triggers = refs;
  options.name = preview.name;
  options.description = "preview " + preview.name + " at " + event.sha.substr(0, 12);
  // A trigger event's run once; a webhook's or a person's each time.
  options.idempotency_key = event.id > 0 ? "trigger-event-" + std::to_string(event.id) : "";
  auto id = d_.runs->Start("PreviewTemplate", preview.template_name, options);
  if (!id) return Fail(id.error().message);
  preview.setup_run = *id;
  preview.status = PreviewStatus::kDeploying;
  preview.error.clear();
  if (auto s = Save(preview); !s) return std::unexpected(s.error());
  spdlog::info("previews: preview {}: setup run {} for {}", preview.name, *id, event.sha.substr(0, 12));
  return *id;
}

Result<ManualPreview> PreviewManager::Manual(const ManualRequest& request) {
  std::lock_guard lock(mu_);
  auto object = d_.store->GetObject("PreviewTemplate", request.template_name);
  if (!object) return std::unexpected(object.error());
  if (!*object) return Fail("PreviewTemplate \"" + request.template_name + "\" does not exist");
  auto body = json::Parse((*object)->body, json::ParseOptions{64 << 20, 512});
  if (!body) return Fail("PreviewTemplate " + request.template_name + ": the stored body does not parse");
  TriggerEvent event;
  event.flow = triggers::FlowKey{"PreviewTemplate", request.template_name};
  event.trigger = request.trigger;
  event.branch = Text(&request.values, "branch");
  event.sha = Text(&request.values, "sha");
  event.pull_request = Text(&request.values, "pullRequestId");
  const json::Value refs =
      request.trigger.empty() ? json::Value::Object() : json::Value::Object({{request.trigger, request.values}});
  // The preview of that name, else the one of that pull request or branch.
  std::optional<Preview> existing;
  if (!request.name.empty()) {
    auto named = d_.previews->Get(Slug(request.name));
    if (!named) return std::unexpected(named.error());
    if (*named && previews::IsLive((*named)->status)) existing = **named;
  } else if (!event.pull_request.empty() || !event.branch.empty()) {
    auto found = d_.previews->FindBySource(request.template_name, event.pull_request, event.branch);
    if (!found) return std::unexpected(found.error());
    existing = *found;
  }
  Preview preview;
  if (existing) {
    if (existing->status == PreviewStatus::kTearingDown || existing->status == PreviewStatus::kTeardownFailed) {
      return Fail("preview " + existing->name + " is being torn down");
    }
    preview = *existing;
  } else {
    if (auto cap = Number(Options(*body), "maxPreviews")) {
      auto active = d_.previews->CountActive(request.template_name);
      if (!active) return std::unexpected(active.error());
      if (*active >= *cap) {
        return Fail("PreviewTemplate \"" + request.template_name + "\" already has " + std::to_string(*active) +
                    " live previews (options.maxPreviews " + std::to_string(*cap) + ")");
      }
    }
    auto created = Create(event, *body, refs, request.name);
    if (!created) return std::unexpected(created.error());
    preview = std::move(*created);
  }
  if (request.args.is_object()) {
    for (const auto& [key, value] : request.args.members()) {
      if (key != "name" && key != "previewId") preview.args.Set(key, value);
    }
  }
  preview.updated_at = NowMs();
  auto run = StartSetup(preview, event, refs);
  if (!run) return std::unexpected(run.error());
  return ManualPreview{preview, *run, !existing.has_value()};
}

void PreviewManager::SourceGone(const triggers::FlowKey& preview_template, const std::string& repository,
                                const std::string& branch, const std::string& pull_request, const std::string& why) {
  std::lock_guard lock(mu_);
  (void)repository;
  auto found = d_.previews->FindBySource(preview_template.name, pull_request, branch);
  if (!found || !*found) return;
  Preview preview = **found;
  if (preview.status == PreviewStatus::kTearingDown) return;
  (void)BeginTeardown(preview, false, why);
}

Result<Preview> PreviewManager::Teardown(const std::string& name, bool skip_teardown, const std::string& why) {
  std::lock_guard lock(mu_);
  auto found = d_.previews->Get(name);
  if (!found) return std::unexpected(found.error());
  if (!*found || !previews::IsLive((*found)->status)) return Fail("no live preview named \"" + name + "\"");
  Preview preview = **found;
  if (preview.status != PreviewStatus::kTearingDown) {
    if (auto s = BeginTeardown(preview, skip_teardown, why); !s) return std::unexpected(s.error());
  }
  return preview;
}

Result<Preview> PreviewManager::ResetExpiry(const std::string& name, int64_t lifetime_minutes) {
  std::lock_guard lock(mu_);
  auto found = d_.previews->Get(name);
  if (!found) return std::unexpected(found.error());
  if (!*found || !previews::IsLive((*found)->status)) return Fail("no live preview named \"" + name + "\"");
  Preview preview = **found;
  if (preview.status == PreviewStatus::kTearingDown) return Fail("preview " + name + " is being torn down");
  preview.expires_at = NowMs() + lifetime_minutes * d_.minute.count();
  if (auto s = Save(preview); !s) return std::unexpected(s.error());
  spdlog::info("previews: preview {} now expires in {} minute(s)", name, lifetime_minutes);
  return preview;
}

Status PreviewManager::BeginTeardown(Preview& preview, bool skip_teardown, const std::string& why) {
  spdlog::info("previews: tearing preview {} down: {}", preview.name, why);
  preview.status = PreviewStatus::kTearingDown;
  preview.error = why;
  preview.skip_teardown = skip_teardown;
  if (auto s = Save(preview); !s) return s;  // recorded first: a restart carries on
  FaultPoint("preview-before-teardown-run");
  if (!skip_teardown) StartTeardownRun(preview);
  return Ok();
}

// Starts the teardown run (idempotent: its key is the preview's), or records
// that none is wanted. A crash before this ran is made good by Tick().
void PreviewManager::StartTeardownRun(Preview& preview) {
  auto none = [&](const std::string& why) {
    preview.skip_teardown = true;
    if (!why.empty()) {
      spdlog::warn("previews: preview {}: {}", preview.name, why);
      preview.error += "; " + why;
    }
    (void)Save(preview);
  };
  auto object = d_.store->GetObject("PreviewTemplate", preview.template_name);
  if (!object || !*object) return none("its PreviewTemplate is gone: no teardown run");
  auto body = json::Parse((*object)->body, json::ParseOptions{64 << 20, 512});
  const json::Value* teardown = body ? body->Find("teardownSpec") : nullptr;
  const json::Value* spec = teardown && teardown->is_object() ? teardown->Find("spec") : nullptr;
  if (!spec) return none("");
  json::Value refs = json::Value::Object();
  if (preview.setup_run) {
    if (auto setup = d_.runs->engine().Get(*preview.setup_run)) refs = SetupRefs(*setup);
  }
  runner::StartRequest request;
  request.flow_kind = "PreviewTemplate";
  request.flow_name = preview.template_name;
  request.flow_revision = std::to_string((*object)->revision);
  request.body = json::Value::Object({{"spec", *spec}});
  if (const json::Value* arguments = body->Find("arguments")) request.body.Set("arguments", *arguments);
  request.args = preview.args;
  request.trigger_refs = refs;
  request.name = "teardown-" + preview.name;
  request.description = "teardown of preview " + preview.name + ": " + preview.error;
  request.idempotency_key = "preview-teardown-" + preview.name + "-" + std::to_string(preview.created_at);
  auto id = d_.runs->engine().Start(request);
  if (!id) return none("the teardown run could not start: " + id.error().message);
  preview.teardown_run = *id;
  (void)Save(preview);
}

void PreviewManager::Tick() {
  std::lock_guard lock(mu_);
  auto live = d_.previews->List();
  if (!live) {
    spdlog::error("previews: cannot list previews: {}", live.error().message);
    return;
  }
  const int64_t now = NowMs();
  for (Preview& p : *live) {
    if (p.status == PreviewStatus::kDeploying) Settle(p);
    if ((p.status == PreviewStatus::kReady || p.status == PreviewStatus::kFailed) && p.expires_at > 0 &&
        now >= p.expires_at) {
      (void)BeginTeardown(p, false, "it expired (options.expiry.previewLifetime)");
    }
    if (p.status == PreviewStatus::kTearingDown) FinishTeardown(p);
  }
}

void PreviewManager::CheckPullRequests() {
  auto live = d_.previews->List();
  if (!live) return;
  for (const Preview& p : *live) {
    if (p.pull_request.empty() || p.status == PreviewStatus::kTearingDown) continue;
    auto open = d_.pull_request_open(p.repository, p.pull_request);
    if (!open) {
      // The forge does not answer: the others wait for the next round rather
      // than hold the previews' thread one timeout each.
      spdlog::warn("previews: preview {}: cannot ask the forge about pull request #{}: {}; asking again later",
                   p.name, p.pull_request, open.error().message);
      return;
    }
    if (!*open || **open) continue;  // no forge API, or still open
    spdlog::info("previews: preview {}: pull request #{} of {} is closed on the forge", p.name, p.pull_request,
                 p.repository);
    if (d_.pull_request_closed) {
      d_.pull_request_closed(p.repository, p.pull_request, "pull request #" + p.pull_request + " is closed on the forge");
    }
  }
}

void PreviewManager::Settle(Preview& preview) {
  if (!preview.setup_run) return;
  auto run = d_.runs->engine().Get(*preview.setup_run);
  if (!run || !runner::IsFinished(run->status)) return;
  for (const runner::NodeRecord& n : run->nodes) {
    auto resource = DeclaredBy(n);
    if (!resource) continue;
    const bool owned = resource->name.find(preview.name) != std::string::npos || TaggedWith(n, preview.name);
    const bool known = std::ranges::find(preview.resources, *resource) != preview.resources.end();
    if (owned && !known) preview.resources.push_back(*resource);
    if ((n.kind == "DeploymentService" || n.kind == "CombinedService") && owned) {
      if (const json::Value* port = n.data.Find("port"); port && port->is_number() && port->as_double() > 0) {
        preview.url = FillUrl(d_.url_template, preview.name, resource->name,
                              std::to_string(static_cast<int>(port->as_double())));
      }
    }
  }
  if (run->status == runner::RunStatus::kSuccess) {
    preview.status = PreviewStatus::kReady;
    preview.error.clear();
    spdlog::info("previews: preview {} is ready{}", preview.name, preview.url.empty() ? "" : " at " + preview.url);
  } else {
    preview.status = PreviewStatus::kFailed;
    preview.error = "setup run " + std::to_string(run->id) + " " + runner::RunStatusName(run->status) + ": " + run->error;
    spdlog::warn("previews: preview {}: {}", preview.name, preview.error);
  }
  (void)Save(preview);
}

void PreviewManager::FinishTeardown(Preview& preview) {
  if (!preview.teardown_run && !preview.skip_teardown) {
    StartTeardownRun(preview);  // the daemon stopped between recording and starting it
    return;
  }
  if (preview.teardown_run) {
    auto run = d_.runs->engine().Get(*preview.teardown_run);
    if (!run) return;
    if (!runner::IsFinished(run->status)) return;
    if (run->status != runner::RunStatus::kSuccess) {
      auto object = d_.store->GetObject("PreviewTemplate", preview.template_name);
      json::Value body;
      if (object && *object) {
        if (auto parsed = json::Parse((*object)->body)) body = std::move(*parsed);
      }
      const json::Value* teardown = body.is_object() ? body.Find("teardownSpec") : nullptr;
      if (Text(teardown, "failurePolicy") == "block") {
        preview.status = PreviewStatus::kTeardownFailed;
        preview.error = "teardown run " + std::to_string(run->id) + " failed (failurePolicy block): " + run->error;
        spdlog::warn("previews: preview {}: {}; its resources are kept", preview.name, preview.error);
        (void)Save(preview);
        return;
      }
      spdlog::warn("previews: preview {}: teardown run {} failed ({}); removing its resources anyway", preview.name,
                   run->id, run->error);
    }
  }
  RemoveResources(preview);
  preview.status = PreviewStatus::kGone;
  preview.updated_at = NowMs();
  if (!Save(preview)) return;
  spdlog::info("previews: preview {} is gone", preview.name);
  if (d_.on_gone) d_.on_gone(preview.repository);  // an event that waited for it
}

bool PreviewManager::StillThere(const PreviewResource& r) {
  using runtime::ResourceKind;
  std::error_code ec;
  if (r.kind == "service") {
    auto status = d_.services->Get(r.name);
    return (status && *status) || fs::exists(fs::path(d_.state_dir) / "services" / r.name, ec);
  }
  if (r.kind == "addon") {
    auto found = d_.addons->FindAddon(r.name);
    return found && *found;
  }
  if (r.kind == "job") {
    auto found = d_.resources->Find(ResourceKind::kJob, r.name);
    return (found && *found) || fs::exists(fs::path(d_.state_dir) / "jobs" / r.name, ec);
  }
  const ResourceKind kind = r.kind == "secret group" ? ResourceKind::kSecretGroup : ResourceKind::kBuildService;
  auto found = d_.resources->Find(kind, r.name);
  return found && *found;
}

void PreviewManager::Sweep() {
  std::lock_guard lock(mu_);
  auto all = d_.previews->List(/*with_gone=*/true);
  if (!all) {
    spdlog::error("previews: cannot list previews: {}", all.error().message);
    return;
  }
  std::set<std::pair<std::string, std::string>> live;
  for (const Preview& p : *all) {
    if (!previews::IsLive(p.status)) continue;
    for (const PreviewResource& r : p.resources) live.insert({r.kind, r.name});
  }
  for (const Preview& p : *all) {
    if (previews::IsLive(p.status)) continue;
    Preview leftover = p;
    leftover.resources.clear();
    for (const PreviewResource& r : p.resources) {
      if (!live.contains({r.kind, r.name}) && StillThere(r)) leftover.resources.push_back(r);
    }
    if (leftover.resources.empty()) continue;
    spdlog::warn("previews: preview {} is gone but {} of its resources remain; removing them", p.name,
                 leftover.resources.size());
    RemoveResources(leftover);
  }
}

void PreviewManager::RemoveResources(const Preview& preview) {
  using runtime::ResourceKind;
  for (const PreviewResource& r : preview.resources) {
    Status s = Ok();
    if (r.kind == "service") {
      if (auto status = d_.services->Get(r.name); status && *status) s = d_.services->Remove(r.name);
      if (s) s = d_.resources->Remove(ResourceKind::kDeploymentService, r.name);
      std::error_code ec;
      fs::remove_all(fs::path(d_.state_dir) / "services" / r.name, ec);
    } else if (r.kind == "job") {
      s = d_.resources->Remove(ResourceKind::kJob, r.name);
      std::error_code ec;
      fs::remove_all(fs::path(d_.state_dir) / "jobs" / r.name, ec);
    } else if (r.kind == "addon") {
      if (auto found = d_.addons->FindAddon(r.name); found && *found) s = d_.addons->RemoveAddon(r.name, true);
      if (s) s = d_.resources->Remove(ResourceKind::kAddon, r.name);
    } else if (r.kind == "secret group") {
      s = d_.resources->Remove(ResourceKind::kSecretGroup, r.name);
    } else if (r.kind == "build service") {
      s = d_.resources->Remove(ResourceKind::kBuildService, r.name);
      std::error_code ec;
      fs::remove_all(fs::path(d_.state_dir) / "builds" / r.name, ec);
    }
    if (!s) spdlog::warn("previews: preview {}: cannot remove {} {}: {}", preview.name, r.kind, r.name, s.error().message);
  }
}

}  // namespace gitopsd::daemon
