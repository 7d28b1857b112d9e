// Active hours of a preview template (options.schedule): outside them Git
// triggers neither create nor update previews (webhooks and people still
// can). The form follows the template grammar:
//
//   "schedule": { "mon": { "startTime": 900, "endTime": 1800 }, ... }
//
// Times are HHMM in the host's local time (the daemon's TZ; under systemd,
// /etc/localtime), 0000 to 2400. What a day's entry means:
//  - startTime and endTime, start < end: open that day from start to end.
//  - start > end: open from start that day to end the next day (a night).
//  - startTime only: opens there and stays open until the next day, later
//    in the week, that has only an endTime: "mon": {"startTime": 900},
//    "fri": {"endTime": 1800} is Monday 09:00 to Friday 18:00.
//  - endTime only: closes such a span.
// A missing or empty schedule is always active.
#pragma once
#include <cstdint>
#include <ctime>
#include <optional>
#include <string>
#include <vector>

#include "sync/json.h"
#include "sync/status.h"

namespace gitopsd::model {

// Minutes since Monday 00:00, 0 to kMinutesPerWeek - 1.
inline constexpr int kMinutesPerWeek = 7 * 24 * 60;

// A problem of a schedule, at the JSON value it is about.
struct ScheduleProblem {
  uint32_t offset = 0;
  std::string message;
};

class ActiveHours {
 public:
  // Parses options.schedule; problems name "schedule.<day>.<field>".
  // A schedule with problems is refused as a whole.
  static Result<ActiveHours> Parse(const json::Value& schedule, std::vector<ScheduleProblem>* problems = nullptr);

  bool always() const { return windows_.empty() && edges_.empty(); }
  bool ActiveAt(int minute_of_week) const;
  // The next minute (from minute_of_week, within a week) at which it opens;
  // nullopt when active now or never.
  std::optional<int> NextOpening(int minute_of_week) const;

 private:
  struct Window {
    int open = 0;   // minute of the week
    int close = 0;  // may be past the week's end (a Sunday night)
  };
  struct Edge {
    int at = 0;
    bool opens = false;
  };
  std::vector<Window> windows_;  // a day's start and end
  std::vector<Edge> edges_;      // spans over days, sorted by `at`
};

// The minute of the week of a time, in the host's local time.
int LocalMinuteOfWeek(std::time_t t);
// "Tue 09:00".
std::string FormatMinuteOfWeek(int minute_of_week);

}  // namespace gitopsd::model
