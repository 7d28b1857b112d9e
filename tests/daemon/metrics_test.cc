// The Prometheus text format as a scraper reads it.
#include "daemon/metrics.h"

#include <gtest/gtest.h>

#include <thread>

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

}  // namespace
}  // namespace gitopsd::daemon
