// Series that are read from the state database when /metrics is scraped,
// not counted as things happen: runs by flow and status (the runner's
// tables) and live previews by state (the previews' table). Reading them at
// scrape time keeps the runner and the preview manager free of metrics
// calls, and the counts survive restarts.
#pragma once

namespace gitopsd::runner {
class Engine;
}
namespace gitopsd::previews {
class PreviewStore;
}

namespace gitopsd::daemon {

class DaemonMetrics;

// Adds a collector to `metrics` that reads `engine` and `previews`.
// REQUIRES: both outlive the last scrape (stop the API first).
void CollectStateMetrics(DaemonMetrics& metrics, runner::Engine& engine,
                         previews::PreviewStore& previews);

}  // namespace gitopsd::daemon
