// A tiny metrics registry rendered in the Prometheus text format 0.0.4:
// counters, gauges and histograms with fixed buckets, each a family of
// series told apart by labels. Thread-safe; rendering takes a consistent
// snapshot. DaemonMetrics names the series gitopsd exports.
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace gitopsd::daemon {

using Labels = std::vector<std::pair<std::string, std::string>>;

class Registry {
 public:
  enum class Type { kCounter, kGauge, kHistogram };

  // Declares a family. REQUIRES: called before the family is used.
  void Describe(const std::string& name, Type type, const std::string& help,
                std::vector<double> buckets = {});

  void Add(const std::string& name, const Labels& labels, double delta = 1);  // counter or gauge
  void Set(const std::string& name, const Labels& labels, double value);      // gauge
  void Observe(const std::string& name, const Labels& labels, double value);  // histogram
  // Drops every series of `name` whose label `key` equals `value`.
  void RemoveWhere(const std::string& name, const std::string& key, const std::string& value);
  // The same in every family.
  void RemoveEverywhere(const std::string& key, const std::string& value);
  // Replaces every series of a counter or gauge at once (a scrape never
  // sees the family half updated).
  void Replace(const std::string& name, const std::vector<std::pair<Labels, double>>& series);

  std::string Render() const;

  // Label values escaped as the text format wants: \\, \" and \n.
  static std::string EscapeLabelValue(std::string_view value);
  static std::string FormatNumber(double value);

 private:
  struct Series {
    double value = 0;
    std::vector<double> bucket_counts;  // histograms: cumulative at render time
    double sum = 0;
    double count = 0;
  };
  struct Family {
    Type type = Type::kGauge;
    std::string help;
    std::vector<double> buckets;
    std::map<Labels, Series> series;
  };
  Family* Find(const std::string& name);

  mutable std::mutex mu_;
  std::map<std::string, Family> families_;
};

// One count of runs in the runner's tables.
struct RunTally {
  std::string flow_kind;  // "ReleaseFlow", "Template", "PreviewTemplate"
  std::string flow;       // the flow's name
  std::string status;     // runner::RunStatusName
  int64_t count = 0;
};

// The series of DESIGN §8's /metrics, with typed setters.
class DaemonMetrics {
 public:
  // Registers the process_* collector (process_stats.h).
  DaemonMetrics();

  void RegisterRepository(const std::string& repo);
  // A repository a reload removed: its series go (a dashboard would
  // otherwise show it stale forever).
  void ForgetRepository(const std::string& repo);
  // result: "success", "fetch_error" or "error".
  void RecordSync(const std::string& repo, const std::string& result, double seconds);
  void RecordFetchFailure(const std::string& repo);
  void SetSyncErrors(const std::string& repo, double files_in_error);
  void SetAppliedCommit(const std::string& repo, const std::string& commit);
  void SetLastSyncTimestamp(const std::string& repo, double unix_seconds);
  void SetObjects(const std::string& kind, double count);

  // Write-back (API edits on their way to Git).
  void RegisterWriteBack(const std::string& repo);
  void SetWriteBackPending(const std::string& repo, double edits);
  // One successful Run: edits pushed and conflicts it recorded.
  void RecordWriteBack(const std::string& repo, int pushed, int conflicts);
  void RecordWriteBackFailure(const std::string& repo);
  void SetConflictsOpen(double count);
  void RecordTriggerLook(const std::string& repo);
  void RecordTriggerFetch(const std::string& repo);
  void RecordTriggerEvent(const std::string& result);                     // "fired", "skipped"
  void RecordWebhook(const std::string& source, const std::string& result);  // ("github", "accepted")

  // One answered HTTP request. `route` is a template (api_routes.h), never
  // a raw path; `method` a MethodLabel.
  void RecordHttpRequest(std::string_view method, std::string_view route, int code, double seconds);
  // Every run the runner's tables hold: concluded ones are the counter
  // gitopsd_runs_total{kind,flow,result}, the others the gauge
  // gitopsd_runs_active{kind,status} (0 for states without runs).
  void SetRuns(const std::vector<RunTally>& tallies);
  // Live previews by state (previews::PreviewStatusName); states not given are 0.
  void SetPreviews(const std::map<std::string, double>& by_state);

  // Something to bring up to date before each scrape (values read from a
  // store or from /proc). Collectors run one scrape at a time, in the
  // scraping thread; they must not call Render.
  void AddCollector(std::function<void()> collect);
  // Runs the collectors, then renders.
  std::string Render();
  Registry& registry() { return registry_; }

 private:
  Registry registry_;
  std::mutex mu_;
  std::map<std::string, std::string> applied_;  // repo -> commit in the info series
  std::mutex collect_mu_;                       // one scrape at a time runs collectors
  std::vector<std::function<void()>> collectors_;
};

}  // namespace gitopsd::daemon
