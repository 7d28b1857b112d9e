// The Prometheus text format as a scraper reads it.
#include "daemon/metrics.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <thread>

#include "daemon/api_routes.h"
#include "daemon/process_stats.h"

namespace gitopsd::daemon {
namespace {

bool Has(const std::string& text, const std::string& line) {
  return text.find(line + "\n") != std::string::npos;
}

TEST(MetricsTest, CountersAndGaugesRender) {
  Registry r;
  r.Describe("jobs_total", Registry::Type::kCounter, "Jobs done.");
  r.Describe("queue", Registry::Type::kGauge, "Queue length.");
  r.Add("jobs_total", {{"result", "ok"}});
  r.Add("jobs_total", {{"result", "ok"}}, 2);
  r.Set("queue", {}, 1.5);
  r.Add("undeclared", {}, 1);  // ignored
  const std::string text = r.Render();
  EXPECT_TRUE(Has(text, "# HELP jobs_total Jobs done.")) << text;
  EXPECT_TRUE(Has(text, "# TYPE jobs_total counter")) << text;
  EXPECT_TRUE(Has(text, "jobs_total{result=\"ok\"} 3")) << text;
  EXPECT_TRUE(Has(text, "# TYPE queue gauge")) << text;
  EXPECT_TRUE(Has(text, "queue 1.5")) << text;
  EXPECT_EQ(text.find("undeclared"), std::string::npos);
}

TEST(MetricsTest, LabelValuesAreEscaped) {
  EXPECT_EQ(Registry::EscapeLabelValue("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
  Registry r;
  r.Describe("g", Registry::Type::kGauge, "help with \\ and\nnewline");
  r.Set("g", {{"path", "x\"y"}}, 1);
  const std::string text = r.Render();
  EXPECT_TRUE(Has(text, "g{path=\"x\\\"y\"} 1")) << text;
  EXPECT_TRUE(Has(text, "# HELP g help with \\\\ and\\nnewline")) << text;
}

TEST(MetricsTest, HistogramBucketsAreCumulative) {
  Registry r;
  r.Describe("d_seconds", Registry::Type::kHistogram, "Durations.", {0.1, 1, 10});
  r.Observe("d_seconds", {{"repository", "shop"}}, 0.05);
  r.Observe("d_seconds", {{"repository", "shop"}}, 0.5);
  r.Observe("d_seconds", {{"repository", "shop"}}, 100);
  const std::string text = r.Render();
  EXPECT_TRUE(Has(text, "# TYPE d_seconds histogram")) << text;
  EXPECT_TRUE(Has(text, "d_seconds_bucket{repository=\"shop\",le=\"0.1\"} 1")) << text;
  EXPECT_TRUE(Has(text, "d_seconds_bucket{repository=\"shop\",le=\"1\"} 2")) << text;
  EXPECT_TRUE(Has(text, "d_seconds_bucket{repository=\"shop\",le=\"10\"} 2")) << text;
  EXPECT_TRUE(Has(text, "d_seconds_bucket{repository=\"shop\",le=\"+Inf\"} 3")) << text;
  EXPECT_TRUE(Has(text, "d_seconds_sum{repository=\"shop\"} 100.55")) << text;
  EXPECT_TRUE(Has(text, "d_seconds_count{repository=\"shop\"} 3")) << text;
}

TEST(MetricsTest, DaemonSeries) {
  DaemonMetrics m;
  m.RegisterRepository("shop");
  m.RecordSync("shop", "success", 0.02);
  m.RecordSync("shop", "fetch_error", 0.3);
  m.RecordFetchFailure("shop");
  m.SetSyncErrors("shop", 2);
  m.SetAppliedCommit("shop", "aaaa");
  m.SetAppliedCommit("shop", "bbbb");
  m.SetLastSyncTimestamp("shop", 1700000000);
  m.SetObjects("Template", 4);
  const std::string text = m.Render();
  EXPECT_TRUE(Has(text, "gitopsd_sync_total{repository=\"shop\",result=\"success\"} 1")) << text;
  EXPECT_TRUE(Has(text, "gitopsd_sync_total{repository=\"shop\",result=\"fetch_error\"} 1")) << text;
  EXPECT_TRUE(Has(text, "gitopsd_fetch_failures_total{repository=\"shop\"} 1")) << text;
  EXPECT_TRUE(Has(text, "gitopsd_sync_errors{repository=\"shop\"} 2")) << text;
  EXPECT_TRUE(Has(text, "gitopsd_last_applied_commit_info{commit=\"bbbb\",repository=\"shop\"} 1") ||
              Has(text, "gitopsd_last_applied_commit_info{repository=\"shop\",commit=\"bbbb\"} 1"))
      << text;
  EXPECT_EQ(text.find("aaaa"), std::string::npos) << "the old commit's series is gone";
  EXPECT_TRUE(Has(text, "gitopsd_last_sync_timestamp_seconds{repository=\"shop\"} 1700000000"))
      << text;
  EXPECT_TRUE(Has(text, "gitopsd_objects{kind=\"Template\"} 4")) << text;
  EXPECT_TRUE(Has(text, "gitopsd_objects{kind=\"ReleaseFlow\"} 0")) << text;
  EXPECT_TRUE(Has(text, "gitopsd_sync_duration_seconds_count{repository=\"shop\"} 2")) << text;
}

TEST(MetricsTest, WriteBackSeries) {
  DaemonMetrics m;
  std::string text = m.Render();
  EXPECT_TRUE(Has(text, "# TYPE gitopsd_conflicts_open gauge")) << text;
  EXPECT_TRUE(Has(text, "gitopsd_conflicts_open 0")) << text;
  m.RegisterWriteBack("shop");
  text = m.Render();
  EXPECT_TRUE(Has(text, "gitopsd_writeback_pending{repository=\"shop\"} 0")) << text;
  EXPECT_TRUE(Has(text, "gitopsd_writeback_pushed_total{repository=\"shop\"} 0")) << text;
  EXPECT_TRUE(Has(text, "gitopsd_writeback_failures_total{repository=\"shop\"} 0")) << text;
  EXPECT_TRUE(Has(text, "gitopsd_conflicts_total{repository=\"shop\"} 0")) << text;
  m.SetWriteBackPending("shop", 3);
  m.RecordWriteBack("shop", 2, 1);
  m.RecordWriteBack("shop", 1, 0);
  m.RecordWriteBackFailure("shop");
  m.SetConflictsOpen(1);
  text = m.Render();
  EXPECT_TRUE(Has(text, "gitopsd_writeback_pending{repository=\"shop\"} 3")) << text;
  EXPECT_TRUE(Has(text, "gitopsd_writeback_pushed_total{repository=\"shop\"} 3")) << text;
  EXPECT_TRUE(Has(text, "gitopsd_writeback_failures_total{repository=\"shop\"} 1")) << text;
  EXPECT_TRUE(Has(text, "gitopsd_conflicts_total{repository=\"shop\"} 1")) << text;
  EXPECT_TRUE(Has(text, "gitopsd_conflicts_open 1")) << text;
}

TEST(MetricsTest, ConcurrentUpdatesAreCounted) {
  Registry r;
  r.Describe("c", Registry::Type::kCounter, "c");
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 1000; ++i) r.Add("c", {});
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_TRUE(Has(r.Render(), "c 4000"));
}

TEST(MetricsTest, RoutesAreTemplatesNeverRawPaths) {
  EXPECT_EQ(RouteTemplate("/healthz"), "/healthz");
  EXPECT_EQ(RouteTemplate("/metrics/"), "/metrics") << "empty segments are ignored, as the router does";
  EXPECT_EQ(RouteTemplate("/api/v1/runs/42"), "/api/v1/runs/{id}");
  EXPECT_EQ(RouteTemplate("/api/v1/runs/42/cancel"), "/api/v1/runs/{id}/cancel");
  EXPECT_EQ(RouteTemplate("/api/v1/runs"), "/api/v1/runs");
  EXPECT_EQ(RouteTemplate("/api/v1/objects/templates/web"), "/api/v1/objects/{kind}/{name}");
  EXPECT_EQ(RouteTemplate("/api/v1/release-flows/deploy/runs"), "/api/v1/release-flows/{name}/runs");
  EXPECT_EQ(RouteTemplate("/api/v1/repositories/shop/sync"), "/api/v1/repositories/{name}/sync");
  EXPECT_EQ(RouteTemplate("/api/v1/previews/pr-7"), "/api/v1/previews/{name}");
  EXPECT_EQ(RouteTemplate("/hooks/github"), "/hooks/github");
  EXPECT_EQ(RouteTemplate("/hooks/release-flows/s3cr3t"), "/hooks/release-flows/{token}");
  for (const char* unknown : {"/", "/nope", "/api/v1/runs/1/2/3", "/api/v2/runs", "/hooks/bitbucket",
                              "/wp-admin/../../etc/passwd"}) {
    EXPECT_EQ(RouteTemplate(unknown), "other") << unknown;
  }
  EXPECT_EQ(MethodLabel("GET"), "GET");
  EXPECT_EQ(MethodLabel("DELETE"), "DELETE");
  EXPECT_EQ(MethodLabel("get"), "other");
  EXPECT_EQ(MethodLabel("BREW"), "other");
  EXPECT_EQ(PathForLog("/hooks/previews/s3cr3t"), "/hooks/previews/{token}");
  EXPECT_EQ(PathForLog("/api/v1/runs/42"), "/api/v1/runs/42");
}

TEST(MetricsTest, HttpRequestsAreCountedAndTimed) {
  DaemonMetrics m;
  m.RecordHttpRequest("GET", "/api/v1/runs/{id}", 200, 0.003);
  m.RecordHttpRequest("GET", "/api/v1/runs/{id}", 200, 0.2);
  m.RecordHttpRequest("GET", "/api/v1/runs/{id}", 404, 0.001);
  const std::string text = m.Render();
  EXPECT_TRUE(Has(text, "# TYPE gitopsd_http_requests_total counter")) << text;
  EXPECT_TRUE(Has(text, "gitopsd_http_requests_total{method=\"GET\",route=\"/api/v1/runs/{id}\",code=\"200\"} 2"))
      << text;
  EXPECT_TRUE(Has(text, "gitopsd_http_requests_total{method=\"GET\",route=\"/api/v1/runs/{id}\",code=\"404\"} 1"))
      << text;
  EXPECT_TRUE(Has(text, "# TYPE gitopsd_http_request_duration_seconds histogram")) << text;
  EXPECT_TRUE(Has(text,
                  "gitopsd_http_request_duration_seconds_bucket{method=\"GET\",route=\"/api/v1/runs/{id}\",le=\"0.005\"} 2"))
      << text;
  EXPECT_TRUE(Has(text, "gitopsd_http_request_duration_seconds_count{method=\"GET\",route=\"/api/v1/runs/{id}\"} 3"))
      << text;
}

TEST(MetricsTest, RunsAreCountedByFlowAndResultAndActiveByState) {
  DaemonMetrics m;
  std::string text = m.Render();
  EXPECT_TRUE(Has(text, "# TYPE gitopsd_runs_total counter")) << text;
  EXPECT_TRUE(Has(text, "gitopsd_runs_active{kind=\"ReleaseFlow\",status=\"running\"} 0")) << text;
  m.SetRuns({{"ReleaseFlow", "deploy", "success", 3},
             {"ReleaseFlow", "deploy", "failure", 1},
             {"ReleaseFlow", "deploy", "running", 1},
             {"ReleaseFlow", "hotfix", "approval_wait", 2},
             {"PreviewTemplate", "pr", "aborted", 1}});
  text = m.Render();
  EXPECT_TRUE(Has(text, "gitopsd_runs_total{kind=\"ReleaseFlow\",flow=\"deploy\",result=\"success\"} 3")) << text;
  EXPECT_TRUE(Has(text, "gitopsd_runs_total{kind=\"ReleaseFlow\",flow=\"deploy\",result=\"failure\"} 1")) << text;
  EXPECT_TRUE(Has(text, "gitopsd_runs_total{kind=\"PreviewTemplate\",flow=\"pr\",result=\"aborted\"} 1")) << text;
  EXPECT_TRUE(Has(text, "gitopsd_runs_active{kind=\"ReleaseFlow\",status=\"running\"} 1")) << text;
  EXPECT_TRUE(Has(text, "gitopsd_runs_active{kind=\"ReleaseFlow\",status=\"approval_wait\"} 2")) << text;
  EXPECT_TRUE(Has(text, "gitopsd_runs_active{kind=\"Template\",status=\"queued\"} 0")) << text;
  m.SetRuns({{"ReleaseFlow", "deploy", "success", 4}});
  text = m.Render();
  EXPECT_TRUE(Has(text, "gitopsd_runs_active{kind=\"ReleaseFlow\",status=\"running\"} 0")) << text;
  EXPECT_EQ(text.find("result=\"failure\""), std::string::npos) << "the family is replaced whole: " << text;
}

TEST(MetricsTest, PreviewsByStateHaveEveryLiveState) {
  DaemonMetrics m;
  m.SetPreviews({{"ready", 2}, {"deploying", 1}});
  const std::string text = m.Render();
  EXPECT_TRUE(Has(text, "# TYPE gitopsd_previews gauge")) << text;
  EXPECT_TRUE(Has(text, "gitopsd_previews{state=\"ready\"} 2")) << text;
  EXPECT_TRUE(Has(text, "gitopsd_previews{state=\"deploying\"} 1")) << text;
  EXPECT_TRUE(Has(text, "gitopsd_previews{state=\"teardown_failed\"} 0")) << text;
}

TEST(MetricsTest, CollectorsRunAtEachScrape) {
  DaemonMetrics m;
  m.registry().Describe("scrapes", Registry::Type::kCounter, "Scrapes seen.");
  m.AddCollector([&m] { m.registry().Add("scrapes", {}); });
  m.Render();
  EXPECT_TRUE(Has(m.Render(), "scrapes 2"));
}

TEST(MetricsTest, ProcessStatsAreThoseOfThisProcess) {
  auto stats = ReadProcessStats();
  ASSERT_TRUE(stats.has_value());
  EXPECT_GT(stats->resident_memory_bytes, 1 << 20);
  EXPECT_GE(stats->virtual_memory_bytes, stats->resident_memory_bytes);
  EXPECT_GE(stats->open_fds, 3) << "stdin, stdout and stderr at least";
  EXPECT_GE(stats->max_fds, stats->open_fds);
  EXPECT_GE(stats->cpu_seconds, 0);
  const double now = std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
  EXPECT_LE(stats->start_time_seconds, now + 1);
  EXPECT_GT(stats->start_time_seconds, now - 24 * 3600) << "this test process started recently";

  const std::string text = DaemonMetrics().Render();
  for (const char* family : {"process_resident_memory_bytes", "process_virtual_memory_bytes",
                             "process_cpu_seconds_total", "process_start_time_seconds", "process_open_fds",
                             "process_max_fds"}) {
    EXPECT_NE(text.find(std::string("\n") + family + " "), std::string::npos) << family << "\n" << text;
  }
}

}  // namespace
}  // namespace gitopsd::daemon
