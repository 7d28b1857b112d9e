#include "daemon/metrics.h"

#include <fmt/format.h>

#include <cmath>

#include "daemon/process_stats.h"

namespace gitopsd::daemon {

namespace {

const char* TypeName(Registry::Type t) {
  switch (t) {
    case Registry::Type::kCounter: return "counter";
    case Registry::Type::kGauge: return "gauge";
    case Registry::Type::kHistogram: return "histogram";
  }
  return "untyped";
}

std::string EscapeHelp(std::string_view help) {
  std::string out;
  for (char c : help) {
    if (c == '\\') out += "\\\\";
    else if (c == '\n') out += "\\n";
    else out += c;
  }
  return out;
}

void AppendLabels(std::string& out, const Labels& labels, const std::string& extra_key = "",
                  const std::string& extra_value = "") {
  if (labels.empty() && extra_key.empty()) return;
  out += '{';
  bool first = true;
  for (const auto& [k, v] : labels) {
    if (!first) out += ',';
    first = false;
    out += k;
    out += "=\"";
    out += Registry::EscapeLabelValue(v);
    out += '"';
  }
  if (!extra_key.empty()) {
    if (!first) out += ',';
    out += extra_key + "=\"" + extra_value + "\"";
  }
  out += '}';
}

}  // namespace

std::string Registry::EscapeLabelValue(std::string_view value) {
  std::string out;
  out.reserve(value.size());
  for (char c : value) {
    if (c == '\\') out += "\\\\";
    else if (c == '"') out += "\\\"";
    else if (c == '\n') out += "\\n";
    else out += c;
  }
  return out;
}

std::string Registry::FormatNumber(double value) {
  if (std::isnan(value)) return "NaN";
  if (std::isinf(value)) return value > 0 ? "+Inf" : "-Inf";
  if (value == std::floor(value) && std::fabs(value) < 1e15) {
    return fmt::format("{}", static_cast<long long>(value));
  }
  return fmt::format("{}", value);
}

void Registry::Describe(const std::string& name, Type type, const std::string& help,
                        std::vector<double> buckets) {
  std::lock_guard lock(mu_);
  Family& f = families_[name];
  f.type = type;
  f.help = help;
  f.buckets = std::move(buckets);
}

Registry::Family* Registry::Find(const std::string& name) {
  auto it = families_.find(name);
  return it == families_.end() ? nullptr : &it->second;
}

void Registry::Add(const std::string& name, const Labels& labels, double delta) {
  std::lock_guard lock(mu_);
  if (Family* f = Find(name)) f->series[labels].value += delta;
}

void Registry::Set(const std::string& name, const Labels& labels, double value) {
  std::lock_guard lock(mu_);
  if (Family* f = Find(name)) f->series[labels].value = value;
}

void Registry::Observe(const std::string& name, const Labels& labels, double value) {
  std::lock_guard lock(mu_);
  Family* f = Find(name);
  if (!f) return;
  Series& s = f->series[labels];
  s.bucket_counts.resize(f->buckets.size());
  for (size_t i = 0; i < f->buckets.size(); ++i) {
    if (value <= f->buckets[i]) {
      s.bucket_counts[i] += 1;
      break;  // cumulated at render time
    }
  }
  s.sum += value;
  s.count += 1;
}

void Registry::RemoveWhere(const std::string& name, const std::string& key,
                           const std::string& value) {
  std::lock_guard lock(mu_);
  Family* f = Find(name);
  if (!f) return;
  std::erase_if(f->series, [&](const auto& entry) {
    for (const auto& [k, v] : entry.first) {
      if (k == key && v == value) return true;
    }
    return false;
  });
}

void Registry::RemoveEverywhere(const std::string& key, const std::string& value) {
  std::lock_guard lock(mu_);
  for (auto& [name, f] : families_) {
    std::erase_if(f.series, [&](const auto& entry) {
      for (const auto& [k, v] : entry.first) {
        if (k == key && v == value) return true;
      }
      return false;
    });
  }
}

void Registry::Replace(const std::string& name,
                       const std::vector<std::pair<Labels, double>>& series) {
  std::lock_guard lock(mu_);
  Family* f = Find(name);
  if (!f) return;
  f->series.clear();
  for (const auto& [labels, value] : series) f->series[labels].value = value;
}

std::string Registry::Render() const {
  std::lock_guard lock(mu_);
  std::string out;
  for (const auto& [name, f] : families_) {
    out += "# HELP " + name + " " + EscapeHelp(f.help) + "\n";
    out += "# TYPE " + name + " " + TypeName(f.type) + "\n";
    for (const auto& [labels, s] : f.series) {
      if (f.type != Type::kHistogram) {
        out += name;
        AppendLabels(out, labels);
        out += ' ' + FormatNumber(s.value) + '\n';
        continue;
      }
      double cumulative = 0;
      for (size_t i = 0; i < f.buckets.size(); ++i) {
        cumulative += i < s.bucket_counts.size() ? s.bucket_counts[i] : 0;
        out += name + "_bucket";
        AppendLabels(out, labels, "le", FormatNumber(f.buckets[i]));
        out += ' ' + FormatNumber(cumulative) + '\n';
      }
      out += name + "_bucket";
      AppendLabels(out, labels, "le", "+Inf");
      out += ' ' + FormatNumber(s.count) + '\n';
      out += name + "_sum";
      AppendLabels(out, labels);
      out += ' ' + FormatNumber(s.sum) + '\n';
      out += name + "_count";
      AppendLabels(out, labels);
      out += ' ' + FormatNumber(s.count) + '\n';
    }
  }
  return out;
}

namespace {
constexpr const char* kSyncDuration = "gitopsd_sync_duration_seconds";
constexpr const char* kSyncTotal = "gitopsd_sync_total";
constexpr const char* kObjects = "gitopsd_objects";
constexpr const char* kSyncErrors = "gitopsd_sync_errors";
constexpr const char* kAppliedInfo = "gitopsd_last_applied_commit_info";
constexpr const char* kLastSync = "gitopsd_last_sync_timestamp_seconds";
constexpr const char* kFetchFailures = "gitopsd_fetch_failures_total";
constexpr const char* kWriteBackPending = "gitopsd_writeback_pending";
constexpr const char* kWriteBackPushed = "gitopsd_writeback_pushed_total";
constexpr const char* kWriteBackFailures = "gitopsd_writeback_failures_total";
constexpr const char* kConflictsOpen = "gitopsd_conflicts_open";
constexpr const char* kTriggerLooks = "gitopsd_trigger_looks_total";
constexpr const char* kTriggerFetches = "gitopsd_trigger_fetches_total";
constexpr const char* kTriggerEvents = "gitopsd_trigger_events_total";
constexpr const char* kWebhookDeliveries = "gitopsd_webhook_deliveries_total";
constexpr const char* kConflictsTotal = "gitopsd_conflicts_total";
constexpr const char* kHttpRequests = "gitopsd_http_requests_total";
constexpr const char* kHttpDuration = "gitopsd_http_request_duration_seconds";
constexpr const char* kRunsTotal = "gitopsd_runs_total";
constexpr const char* kRunsActive = "gitopsd_runs_active";
constexpr const char* kPreviews = "gitopsd_previews";
constexpr const char* kProcessRss = "process_resident_memory_bytes";
constexpr const char* kProcessVsize = "process_virtual_memory_bytes";
constexpr const char* kProcessCpu = "process_cpu_seconds_total";
constexpr const char* kProcessStart = "process_start_time_seconds";
constexpr const char* kProcessOpenFds = "process_open_fds";
constexpr const char* kProcessMaxFds = "process_max_fds";

constexpr const char* kFlowKinds[] = {"ReleaseFlow", "Template", "PreviewTemplate"};
constexpr const char* kActiveRunStates[] = {"pending", "queued", "running", "approval_wait"};
constexpr const char* kLivePreviewStates[] = {"queued",       "deploying",       "ready", "failed",
                                              "tearing_down", "teardown_failed"};

bool IsConcluded(const std::string& status) {
  return status == "success" || status == "failure" || status == "aborted";
}

void DescribeRuntimeSeries(Registry& r) {
  using T = Registry::Type;
  r.Describe(kHttpRequests, T::kCounter,
             "HTTP requests answered, by method, route template and status code.");
  r.Describe(kHttpDuration, T::kHistogram,
             "Time from a request's headers to the end of its answer, by method and route template "
             "(a followed run log counts until it ends).",
             {0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30});
  r.Describe(kRunsTotal, T::kCounter,
             "Concluded runs recorded in the state database, by flow kind, flow and result "
             "(success, failure, aborted).");
  r.Describe(kRunsActive, T::kGauge,
             "Runs not concluded yet, by flow kind and state (pending, queued, running, approval_wait).");
  r.Describe(kPreviews, T::kGauge, "Live preview environments by state.");
  r.Describe(kProcessRss, T::kGauge, "Resident memory size in bytes.");
  r.Describe(kProcessVsize, T::kGauge, "Virtual memory size in bytes.");
  r.Describe(kProcessCpu, T::kCounter, "User and system CPU time spent in seconds.");
  r.Describe(kProcessStart, T::kGauge, "Start time of the process since the Unix epoch in seconds.");
  r.Describe(kProcessOpenFds, T::kGauge, "Number of open file descriptors.");
  r.Describe(kProcessMaxFds, T::kGauge, "Maximum number of open file descriptors.");
}

void CollectProcess(Registry& r) {
  auto stats = ReadProcessStats();
  if (!stats) return;
  r.Set(kProcessRss, {}, stats->resident_memory_bytes);
  r.Set(kProcessVsize, {}, stats->virtual_memory_bytes);
  r.Set(kProcessCpu, {}, stats->cpu_seconds);
  r.Set(kProcessStart, {}, stats->start_time_seconds);
  r.Set(kProcessOpenFds, {}, stats->open_fds);
  if (stats->max_fds > 0) r.Set(kProcessMaxFds, {}, stats->max_fds);
}
}  // namespace

DaemonMetrics::DaemonMetrics() {
  using T = Registry::Type;
  registry_.Describe(kSyncDuration, T::kHistogram,
                     "Time taken by one sync (fetch and apply) of a repository.",
                     {0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60});
  registry_.Describe(kSyncTotal, T::kCounter,
                     "Sync attempts by repository and result (success, fetch_error, error).");
  registry_.Describe(kObjects, T::kGauge, "Objects in force, by kind.");
  registry_.Describe(kSyncErrors, T::kGauge, "Files of a repository that are in error now.");
  registry_.Describe(kAppliedInfo, T::kGauge, "The commit applied last, as a label; always 1.");
  registry_.Describe(kLastSync, T::kGauge,
                     "Unix time of the last successful sync of a repository.");
  registry_.Describe(kFetchFailures, T::kCounter, "Failed fetches of a repository.");
  registry_.Describe(kWriteBackPending, T::kGauge,
                     "API edits of a repository not yet pushed to Git (pending or committed).");
  registry_.Describe(kWriteBackPushed, T::kCounter, "API edits pushed to Git, by repository.");
  registry_.Describe(kWriteBackFailures, T::kCounter,
                     "Write-back rounds that failed (push refused, remote unreachable).");
  registry_.Describe(kConflictsOpen, T::kGauge,
                     "Conflicts between Git and API edits that are not resolved yet.");
  registry_.Describe(kConflictsTotal, T::kCounter, "Conflicts recorded, by repository.");
  registry_.Set(kConflictsOpen, {}, 0);
  registry_.Describe(kTriggerLooks, T::kCounter,
                     "Looks at a repository's refs by the trigger dispatcher (one ls-remote each).");
  registry_.Describe(kTriggerFetches, T::kCounter, "Fetches the trigger dispatcher made for new heads.");
  registry_.Describe(kTriggerEvents, T::kCounter,
                     "New heads of watched branches and pull requests, by what came of them (fired, skipped).");
  registry_.Describe(kWebhookDeliveries, T::kCounter,
                     "Webhook deliveries by forge (or generic) and result (accepted, refused, replayed, ignored, "
                     "invalid).");
  for (const char* kind : {"Template", "ReleaseFlow", "PreviewTemplate"}) {
    registry_.Set(kObjects, {{"kind", kind}}, 0);
  }
  DescribeRuntimeSeries(registry_);
  SetRuns({});
  SetPreviews({});
  collectors_.push_back([this] { CollectProcess(registry_); });
}

void DaemonMetrics::RecordHttpRequest(std::string_view method, std::string_view route, int code,
                                      double seconds) {
  const std::string m(method), r(route);
  registry_.Add(kHttpRequests, {{"method", m}, {"route", r}, {"code", std::to_string(code)}});
  registry_.Observe(kHttpDuration, {{"method", m}, {"route", r}}, seconds);
}

void DaemonMetrics::SetRuns(const std::vector<RunTally>& tallies) {
  std::map<Labels, double> totals, active;
  for (const char* kind : kFlowKinds) {
    for (const char* state : kActiveRunStates) active[{{"kind", kind}, {"status", state}}] = 0;
  }
  for (const RunTally& t : tallies) {
    if (IsConcluded(t.status)) {
      totals[{{"kind", t.flow_kind}, {"flow", t.flow}, {"result", t.status}}] += static_cast<double>(t.count);
    } else {
      active[{{"kind", t.flow_kind}, {"status", t.status}}] += static_cast<double>(t.count);
    }
  }
  registry_.Replace(kRunsTotal, {totals.begin(), totals.end()});
  registry_.Replace(kRunsActive, {active.begin(), active.end()});
}

void DaemonMetrics::SetPreviews(const std::map<std::string, double>& by_state) {
  std::map<Labels, double> series;
  for (const char* state : kLivePreviewStates) series[{{"state", state}}] = 0;
  for (const auto& [state, count] : by_state) series[{{"state", state}}] = count;
  registry_.Replace(kPreviews, {series.begin(), series.end()});
}

void DaemonMetrics::AddCollector(std::function<void()> collect) {
  std::lock_guard lock(collect_mu_);
  collectors_.push_back(std::move(collect));
}

std::string DaemonMetrics::Render() {
  std::lock_guard lock(collect_mu_);
  for (const auto& collect : collectors_) collect();
  return registry_.Render();
}

void DaemonMetrics::RegisterRepository(const std::string& repo) {
  registry_.Add(kFetchFailures, {{"repository", repo}}, 0);
  registry_.Add(kSyncTotal, {{"repository", repo}, {"result", "success"}}, 0);
  registry_.Set(kSyncErrors, {{"repository", repo}}, 0);
}

void DaemonMetrics::ForgetRepository(const std::string& repo) { registry_.RemoveEverywhere("repository", repo); }

void DaemonMetrics::RecordSync(const std::string& repo, const std::string& result,
                               double seconds) {
  registry_.Add(kSyncTotal, {{"repository", repo}, {"result", result}}, 1);
  registry_.Observe(kSyncDuration, {{"repository", repo}}, seconds);
}

void DaemonMetrics::RecordFetchFailure(const std::string& repo) {
  registry_.Add(kFetchFailures, {{"repository", repo}}, 1);
}

void DaemonMetrics::SetSyncErrors(const std::string& repo, double files_in_error) {
  registry_.Set(kSyncErrors, {{"repository", repo}}, files_in_error);
}

void DaemonMetrics::SetAppliedCommit(const std::string& repo, const std::string& commit) {
  std::lock_guard lock(mu_);
  auto it = applied_.find(repo);
  if (it != applied_.end() && it->second == commit) return;
  registry_.RemoveWhere(kAppliedInfo, "repository", repo);
  if (!commit.empty()) registry_.Set(kAppliedInfo, {{"repository", repo}, {"commit", commit}}, 1);
  applied_[repo] = commit;
}

void DaemonMetrics::SetLastSyncTimestamp(const std::string& repo, double unix_seconds) {
  registry_.Set(kLastSync, {{"repository", repo}}, unix_seconds);
}

void DaemonMetrics::SetObjects(const std::string& kind, double count) {
  registry_.Set(kObjects, {{"kind", kind}}, count);
}

void DaemonMetrics::RegisterWriteBack(const std::string& repo) {
  registry_.Set(kWriteBackPending, {{"repository", repo}}, 0);
  registry_.Add(kWriteBackPushed, {{"repository", repo}}, 0);
  registry_.Add(kWriteBackFailures, {{"repository", repo}}, 0);
  registry_.Add(kConflictsTotal, {{"repository", repo}}, 0);
}

void DaemonMetrics::SetWriteBackPending(const std::string& repo, double edits) {
  registry_.Set(kWriteBackPending, {{"repository", repo}}, edits);
}

void DaemonMetrics::RecordWriteBack(const std::string& repo, int pushed, int conflicts) {
  registry_.Add(kWriteBackPushed, {{"repository", repo}}, pushed);
  registry_.Add(kConflictsTotal, {{"repository", repo}}, conflicts);
}

void DaemonMetrics::RecordWriteBackFailure(const std::string& repo) {
  registry_.Add(kWriteBackFailures, {{"repository", repo}}, 1);
}

void DaemonMetrics::SetConflictsOpen(double count) { registry_.Set(kConflictsOpen, {}, count); }

void DaemonMetrics::RecordTriggerLook(const std::string& repo) { registry_.Add(kTriggerLooks, {{"repository", repo}}); }

void DaemonMetrics::RecordTriggerFetch(const std::string& repo) {
  registry_.Add(kTriggerFetches, {{"repository", repo}});
}

void DaemonMetrics::RecordTriggerEvent(const std::string& result) { registry_.Add(kTriggerEvents, {{"result", result}}); }

void DaemonMetrics::RecordWebhook(const std::string& source, const std::string& result) {
  registry_.Add(kWebhookDeliveries, {{"source", source}, {"result", result}});
}

}  // namespace gitopsd::daemon
