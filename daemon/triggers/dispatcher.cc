#include "daemon/triggers/dispatcher.h"

#include <spdlog/spdlog.h>

#include <algorithm>

namespace gitopsd::triggers {
namespace {

std::string Short(const std::string& sha) { return sha.substr(0, 12); }

std::string Describe(const TriggerEvent& e) {
  return e.flow.kind + " \"" + e.flow.name + "\" trigger " + e.trigger + ": " +
         (e.pull_request.empty() ? "branch " + e.branch : "pull request #" + e.pull_request) + " at " + Short(e.sha);
}

const GitTrigger* FindTrigger(const std::vector<WatchingFlow>& flows, const TriggerEvent& e,
                              const WatchingFlow** flow_out) {
  for (const WatchingFlow& f : flows) {
    if (!(f.flow == e.flow)) continue;
    for (const GitTrigger& t : f.triggers) {
      if (t.ref == e.trigger) {
        *flow_out = &f;
        return &t;
      }
    }
  }
  return nullptr;
}

}  // namespace

Dispatcher::Dispatcher(TriggerStore& store, GitView& git, Firing& firing,
                       std::function<std::vector<WatchingFlow>()> flows,
                       std::function<std::optional<std::string>(const std::string&)> resolve,
                       DispatcherOptions options)
    : store_(store),
      git_(git),
      firing_(firing),
      flows_(std::move(flows)),
      resolve_(std::move(resolve)),
      options_(options) {}

Dispatcher::~Dispatcher() { Stop(); }

void Dispatcher::Start() {
  std::lock_guard lock(mu_);
  if (thread_.joinable()) return;
  stopping_ = false;
  thread_ = std::thread([this] { Loop(); });
}

void Dispatcher::Stop() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void Dispatcher::RequestLook(const std::string& repository) {
  {
    std::lock_guard lock(mu_);
    requested_.insert(repository);
  }
  wake_.notify_all();
}

uint64_t Dispatcher::looks() const {
  std::lock_guard lock(mu_);
  return looks_;
}

void Dispatcher::Poll(const std::string& repository, std::chrono::milliseconds interval) {
  {
    std::lock_guard lock(mu_);
    polled_[repository] = Polled{interval, std::chrono::steady_clock::now()};
  }
  wake_.notify_all();
}

void Dispatcher::Unpoll(const std::string& repository) {
  std::lock_guard lock(mu_);
  polled_.erase(repository);
  requested_.erase(repository);
}

void Dispatcher::Loop() {
  StartPending();  // what a crash left between recording and starting
  std::unique_lock lock(mu_);
  while (!stopping_) {
    // Polled repositories that are due join the requests.
    auto next = std::chrono::steady_clock::time_point::max();
    const auto now = std::chrono::steady_clock::now();
    for (auto& [repository, p] : polled_) {
      if (p.due <= now) {
        requested_.insert(repository);
        p.due = now + p.interval;
      }
      next = std::min(next, p.due);
    }
    if (requested_.empty()) {
      auto woken = [&] { return stopping_ || !requested_.empty(); };
      if (next == std::chrono::steady_clock::time_point::max()) {
        wake_.wait(lock, woken);  // (waiting until max() overflows in some libraries)
      } else {
        wake_.wait_until(lock, next, woken);
      }
      continue;
    }
    const std::string repository = *requested_.begin();
    requested_.erase(requested_.begin());
    lock.unlock();
    if (auto s = LookNow(repository); !s) {
      spdlog::warn("triggers: cannot look at repository {}: {}", repository, s.error().message);
    }
    lock.lock();
  }
}

Status Dispatcher::LookNow(const std::string& repository) {
  std::lock_guard look(look_mu_);
  {
    std::lock_guard lock(mu_);
    ++looks_;
  }
  Status s = Look(repository);
  StartPending();
  return s;
}

bool Dispatcher::Watches(const GitTrigger& trigger, const std::string& repository) const {
  const std::string& named = trigger.repository.empty() ? trigger.repo_url : trigger.repository;
  auto resolved = resolve_(named);
  return resolved && *resolved == repository;
}

Status Dispatcher::Look(const std::string& repository) {
  std::vector<WatchingFlow> flows = flows_();
  bool watched = false;
  for (const WatchingFlow& f : flows) {
    for (const GitTrigger& t : f.triggers) watched = watched || (!f.paused && !t.manual_only && Watches(t, repository));
  }
  if (!watched) return Ok();
  if (options_.on_look) options_.on_look(repository);
  auto heads = git_.ListHeads(repository);
  if (!heads) return std::unexpected(heads.error());
  auto prs = store_.PullRequests(repository);
  if (!prs) return std::unexpected(prs.error());
  for (const WatchingFlow& f : flows) {
    if (f.paused) continue;
    for (const GitTrigger& t : f.triggers) {
      if (!t.manual_only && Watches(t, repository)) LookAtTrigger(repository, *heads, f, t, *prs);
    }
  }
  return Ok();
}

void Dispatcher::LookAtTrigger(const std::string& repository, const RemoteHeads& heads, const WatchingFlow& flow,
                               const GitTrigger& trigger, const std::vector<PullRequestInfo>& prs) {
  std::vector<HeadSeen> seen;
  if (!trigger.branch_patterns.empty()) {
    for (const auto& [branch, sha] : heads.branches) {
      const bool match = std::ranges::any_of(trigger.branch_patterns,
                                             [&](const std::string& p) { return MatchesPattern(p, branch); });
      if (match) seen.push_back(HeadSeen{repository, branch, sha, ""});
    }
  }
  if (!trigger.pr_patterns.empty()) {
    for (const auto& [number, sha] : heads.pull_requests) {
      auto info = std::ranges::find_if(prs, [&](const PullRequestInfo& p) { return p.number == number; });
      if (info != prs.end() && !info->open) continue;  // closed: its ref stays on the forge
      seen.push_back(HeadSeen{repository, info == prs.end() ? "" : info->source_branch, sha, number});
    }
  }
  const bool previews = flow.flow.kind == "PreviewTemplate";
  auto events = store_.RecordHeads(flow.flow, trigger.ref, seen, /*fire_on_first=*/previews);
  if (!events) {
    spdlog::error("triggers: {} \"{}\" trigger {}: cannot record heads: {}", flow.flow.kind, flow.flow.name,
                  trigger.ref, events.error().message);
    return;
  }
  for (const TriggerEvent& e : *events) spdlog::info("triggers: new head for {}", Describe(e));
  // Branches that are gone: forgotten (pushed again, they fire again), and
  // their branch previews torn down.
  auto handled = store_.Handled(flow.flow, trigger.ref);
  if (!handled) return;
  for (const HeadSeen& h : *handled) {
    if (!h.pull_request.empty() || heads.branches.contains(h.branch)) continue;
    spdlog::info("triggers: {} \"{}\" trigger {}: branch {} is gone", flow.flow.kind, flow.flow.name, trigger.ref,
                 h.branch);
    if (previews) firing_.SourceGone(flow.flow, repository, h.branch, "", "branch " + h.branch + " was deleted");
    (void)store_.ForgetHead(flow.flow, trigger.ref, h.branch, "");
  }
}

Status Dispatcher::PullRequestNews(const std::string& repository, const PullRequestInfo& pr, const std::string& why) {
  std::lock_guard look(look_mu_);
  auto known = store_.PullRequests(repository);
  if (!known) return std::unexpected(known.error());
  const bool was_draft =
      std::ranges::any_of(*known, [&](const PullRequestInfo& p) { return p.number == pr.number && p.draft; });
  if (auto s = store_.NotePullRequest(repository, pr); !s) return s;
  const bool ready = pr.open && was_draft && !pr.draft;
  if (pr.open && !ready) return Ok();
  for (const WatchingFlow& f : flows_()) {
    for (const GitTrigger& t : f.triggers) {
      if (t.pr_patterns.empty() || !Watches(t, repository)) continue;
      if (!pr.open && f.flow.kind == "PreviewTemplate") {
        firing_.SourceGone(f.flow, repository, "", pr.number, why);
      } else if (pr.open && t.ignore_drafts) {
        spdlog::info("triggers: {} \"{}\" trigger {}: pull request #{} is ready for review; its head fires anew",
                     f.flow.kind, f.flow.name, t.ref, pr.number);
      } else {
        continue;
      }
      (void)store_.ForgetHead(f.flow, t.ref, "", pr.number);
    }
  }
  return Ok();
}

void Dispatcher::StartPending() {
  auto pending = store_.Pending();
  if (!pending) {
    spdlog::error("triggers: cannot read pending events: {}", pending.error().message);
    return;
  }
  if (pending->empty()) return;
  std::vector<WatchingFlow> flows = flows_();
  for (const TriggerEvent& e : *pending) Handle(e, flows, *pending);
}

void Dispatcher::Handle(const TriggerEvent& event, const std::vector<WatchingFlow>& flows,
                        const std::vector<TriggerEvent>& pending) {
  const WatchingFlow* flow = nullptr;
  const GitTrigger* trigger = FindTrigger(flows, event, &flow);
  auto skip = [&](const std::string& reason) {
    waiting_logged_.erase(event.id);
    spdlog::info("triggers: {}: not fired: {}", Describe(event), reason);
    if (options_.on_event) options_.on_event(false);
    (void)store_.MarkSkipped(event.id, reason);
  };
  if (!trigger) return skip("the flow or its trigger is no longer in force");
  if (flow->paused) return skip("the flow's triggers are paused");
  const bool newer_pending = std::ranges::any_of(pending, [&](const TriggerEvent& other) {
    return other.id > event.id && other.flow == event.flow && other.trigger == event.trigger &&
           other.branch == event.branch && other.pull_request == event.pull_request;
  });
  if (newer_pending && !flow->burst_each) return skip("superseded by a newer head of the same branch");
  auto prs = store_.PullRequests(event.repository);
  auto decided = Decide(event, *trigger, prs ? *prs : std::vector<PullRequestInfo>{});
  if (!decided) {
    spdlog::warn("triggers: {}: cannot decide now (tried again on the next look): {}", Describe(event),
                 decided.error().message);
    return;
  }
  const Decision& decision = *decided;
  if (!decision.fires) return skip(decision.reason);
  const std::string url = git_.UrlOf(event.repository);
  auto fired = flow->flow.kind == "PreviewTemplate" ? firing_.UpdatePreview(event, url)
                                                    : firing_.StartRelease(event, url, !flow->burst_each);
  if (!fired) {
    // Left pending: the next look tries again.
    spdlog::warn("triggers: {}: cannot start now (tried again on the next look): {}", Describe(event),
                 fired.error().message);
    return;
  }
  if (!fired->run && !fired->waiting.empty()) {
    // Said once at info; the looks after it only at debug.
    const bool first = waiting_logged_.insert(event.id).second;
    if (first) {
      spdlog::info("triggers: {}: waits: {}", Describe(event), fired->waiting);
    } else {
      spdlog::debug("triggers: {}: still waits: {}", Describe(event), fired->waiting);
    }
    return;
  }
  waiting_logged_.erase(event.id);
  if (!fired->run) return skip(fired->skipped);
  spdlog::info("triggers: {}: fired ({}), run {}", Describe(event), decision.reason, *fired->run);
  if (options_.on_event) options_.on_event(true);
  if (auto s = store_.MarkStarted(event.id, *fired->run); !s) {
    spdlog::error("triggers: event {}: cannot record run {}: {}", event.id, *fired->run, s.error().message);
  }
}

Result<Decision> Dispatcher::Decide(const TriggerEvent& event, const GitTrigger& trigger,
                                    const std::vector<PullRequestInfo>& prs) {
  if (auto s = git_.Fetch(event.repository, event.branch, event.pull_request, event.sha); !s) {
    return Fail("cannot fetch " + Short(event.sha) + ": " + s.error().message);
  }
  auto commits = git_.NewCommits(event.repository, event.previous_sha, event.sha, options_.max_commits);
  if (!commits) return Fail("cannot read the commits: " + commits.error().message);
  auto paths = git_.ChangedPaths(event.repository, event.previous_sha, event.sha);
  if (!paths) return Fail("cannot read the changed paths: " + paths.error().message);
  if (event.pull_request.empty()) {
    return Evaluate(trigger, PushEvent{event.branch, std::move(*commits), std::move(*paths)});
  }
  PullRequestEvent pr{.source_branch = event.branch, .head = {}, .changed_paths = std::move(*paths)};
  if (!commits->empty()) pr.head = commits->front();
  auto info = std::ranges::find_if(prs, [&](const PullRequestInfo& p) { return p.number == event.pull_request; });
  if (info != prs.end()) pr.draft = info->draft;
  return Evaluate(trigger, pr);
}

}  // namespace gitopsd::triggers
