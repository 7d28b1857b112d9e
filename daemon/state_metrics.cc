#include "daemon/state_metrics.h"

#include <spdlog/spdlog.h>

#include <map>
#include <string>
#include <vector>

#include "daemon/metrics.h"
#include "daemon/previews/preview_store.h"
#include "daemon/runner/engine.h"

namespace gitopsd::daemon {

void CollectStateMetrics(DaemonMetrics& metrics, runner::Engine& engine,
                         previews::PreviewStore& previews) {
  metrics.AddCollector([&metrics, &engine, &previews] {
    // A read that fails keeps the values of the last scrape.
    if (auto counts = engine.Count()) {
      std::vector<RunTally> tallies;
      for (const runner::RunCount& c : *counts) {
        tallies.push_back(RunTally{c.flow_kind, c.flow_name, runner::RunStatusName(c.status), c.count});
      }
      metrics.SetRuns(tallies);
    } else {
      spdlog::warn("metrics: cannot count runs: {}", counts.error().message);
    }
    if (auto live = previews.List(/*with_gone=*/false)) {
      std::map<std::string, double> by_state;
      for (const previews::Preview& p : *live) by_state[previews::PreviewStatusName(p.status)] += 1;
      metrics.SetPreviews(by_state);
    } else {
      spdlog::warn("metrics: cannot list previews: {}", live.error().message);
    }
  });
}

}  // namespace gitopsd::daemon
