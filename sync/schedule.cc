#include "sync/schedule.h"

#include <algorithm>
#include <array>
#include <cstdio>

namespace gitopsd::model {
namespace {

constexpr int kMinutesPerDay = 24 * 60;
constexpr std::array<const char*, 7> kDays = {"mon", "tue", "wed", "thu", "fri", "sat", "sun"};
constexpr std::array<const char*, 7> kDayNames = {"Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"};

int DayIndex(const std::string& key) {
  for (size_t i = 0; i < kDays.size(); ++i) {
    if (key == kDays[i]) return static_cast<int>(i);
  }
  return -1;
}

class Parser {
 public:
  explicit Parser(std::vector<ScheduleProblem>& problems) : problems_(problems) {}

  void Problem(const json::Value& at, std::string message) {
    problems_.push_back(ScheduleProblem{at.offset(), std::move(message)});
  }

  // HHMM as minutes of the day; nullopt (with a problem) when it is not
  // one. 2400 (the day's end) only as an endTime.
  std::optional<int> Time(const json::Value& v, const std::string& where, bool end) {
    const double n = v.is_number() ? v.as_double() : -1;
    if (!v.is_integer() || n < 0 || n > 2400) {
      Problem(v, where + ": give a time of day as HHMM, 0 to 2400 (900 is 09:00)");
      return std::nullopt;
    }
    const int hhmm = static_cast<int>(n);
    if (hhmm % 100 >= 60) {
      Problem(v, where + ": " + std::to_string(hhmm) + " is not a time of day (minutes " +
                     std::to_string(hhmm % 100) + " are 60 or more)");
      return std::nullopt;
    }
    if (hhmm == 2400 && !end) {
      Problem(v, where + ": 2400 is the day's end; a day starts at 0");
      return std::nullopt;
    }
    return hhmm / 100 * 60 + hhmm % 100;
  }

 private:
  std::vector<ScheduleProblem>& problems_;
};

}  // namespace

Result<ActiveHours> ActiveHours::Parse(const json::Value& schedule, std::vector<ScheduleProblem>* problems_out) {
  std::vector<ScheduleProblem> problems;
  Parser p(problems);
  ActiveHours hours;
  struct Named {
    Edge edge;
    std::string where;
    const json::Value* value;
  };
  std::vector<Named> edges;
  if (!schedule.is_object()) {
    p.Problem(schedule, "schedule: give an object of weekdays (mon ... sun)");
  } else {
    for (const json::Member& m : schedule.members()) {
      const int day = DayIndex(m.first);
      const std::string where = "schedule." + m.first;
      if (day < 0) {
        p.Problem(m.second, where + ": not a weekday (mon, tue, wed, thu, fri, sat, sun)");
        continue;
      }
      if (!m.second.is_object()) {
        p.Problem(m.second, where + ": give {\"startTime\": HHMM, \"endTime\": HHMM}");
        continue;
      }
      const json::Value* start_v = m.second.Find("startTime");
      const json::Value* end_v = m.second.Find("endTime");
      if (!start_v && !end_v) {
        p.Problem(m.second, where + ": give a startTime, an endTime or both");
        continue;
      }
      const std::optional<int> start = start_v ? p.Time(*start_v, where + ".startTime", false) : std::nullopt;
      const std::optional<int> end = end_v ? p.Time(*end_v, where + ".endTime", true) : std::nullopt;
      if ((start_v && !start) || (end_v && !end)) continue;
      const int base = day * kMinutesPerDay;
      const int start_at = start.value_or(0), end_at = end.value_or(0);
      if (start_v && end_v) {
        if (start_at == end_at) {
          p.Problem(*end_v, where + ": startTime and endTime are equal, an empty window (0 to 2400 is the whole day)");
          continue;
        }
        // A start after the end is a night: it ends the next day.
        hours.windows_.push_back(Window{base + start_at, base + end_at + (start_at > end_at ? kMinutesPerDay : 0)});
      } else if (start_v) {
        edges.push_back(Named{Edge{base + start_at, true}, where + ".startTime", start_v});
      } else {
        edges.push_back(Named{Edge{base + end_at, false}, where + ".endTime", end_v});
      }
    }
  }
  // Spans over days: in the week's order, each opening is closed before the
  // next one opens.
  std::sort(edges.begin(), edges.end(), [](const Named& a, const Named& b) { return a.edge.at < b.edge.at; });
  for (size_t i = 0; i < edges.size(); ++i) {
    const Named& next = edges[(i + 1) % edges.size()];
    if (edges.size() == 1 || edges[i].edge.opens == next.edge.opens) {
      const bool opens = edges[i].edge.opens;
      p.Problem(*edges[i].value,
                edges[i].where + (opens ? ": opens a span that no later day's endTime closes (give this day an "
                                          "endTime, or a later day an endTime alone)"
                                        : ": closes a span that no earlier day's startTime opens (give this day a "
                                          "startTime, or an earlier day a startTime alone)"));
      break;
    }
  }
  for (const Named& e : edges) hours.edges_.push_back(e.edge);
  if (problems_out) *problems_out = problems;
  if (!problems.empty()) return Fail(problems.front().message);
  return hours;
}

bool ActiveHours::ActiveAt(int minute) const {
  if (always()) return true;
  minute = ((minute % kMinutesPerWeek) + kMinutesPerWeek) % kMinutesPerWeek;
  for (const Window& w : windows_) {
    // A Sunday night's window runs past the week's end into Monday.
    if ((w.open <= minute && minute < w.close) ||
        (w.open <= minute + kMinutesPerWeek && minute + kMinutesPerWeek < w.close)) {
      return true;
    }
  }
  if (edges_.empty()) return false;
  // The latest edge at or before this minute, going round the week.
  const Edge* last = &edges_.back();
  for (const Edge& e : edges_) {
    if (e.at <= minute) last = &e;
  }
  return last->opens;
}

std::optional<int> ActiveHours::NextOpening(int minute) const {
  if (ActiveAt(minute)) return std::nullopt;
  minute = ((minute % kMinutesPerWeek) + kMinutesPerWeek) % kMinutesPerWeek;
  std::optional<int> best;  // minutes from now
  auto consider = [&](int at) {
    const int ahead = ((at - minute) % kMinutesPerWeek + kMinutesPerWeek) % kMinutesPerWeek;
    if (!best || ahead < *best) best = ahead;
  };
  for (const Window& w : windows_) consider(w.open % kMinutesPerWeek);
  for (const Edge& e : edges_) {
    if (e.opens) consider(e.at);
  }
  if (!best) return std::nullopt;
  return (minute + *best) % kMinutesPerWeek;
}

int LocalMinuteOfWeek(std::time_t t) {
  std::tm local{};
  localtime_r(&t, &local);
  const int day = (local.tm_wday + 6) % 7;  // tm_wday: 0 is Sunday
  return day * kMinutesPerDay + local.tm_hour * 60 + local.tm_min;
}

std::string FormatMinuteOfWeek(int minute) {
  minute = ((minute % kMinutesPerWeek) + kMinutesPerWeek) % kMinutesPerWeek;
  const int in_day = minute % kMinutesPerDay;
  char text[16];
  std::snprintf(text, sizeof text, "%s %02d:%02d", kDayNames[minute / kMinutesPerDay], in_day / 60, in_day % 60);
  return text;
}

}  // namespace gitopsd::model
