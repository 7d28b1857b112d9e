// options.schedule: which minutes of the week a preview template's Git
// triggers may act, and what a bad schedule says.
#include "sync/schedule.h"

#include <gtest/gtest.h>

#include <cstdlib>

#include "sync/json.h"
#include "sync/model.h"

namespace gitopsd::model {
namespace {

constexpr int kDay = 24 * 60;
constexpr int kMon = 0, kTue = 1, kWed = 2, kFri = 4, kSat = 5, kSun = 6;

int At(int day, int hour, int minute = 0) { return day * kDay + hour * 60 + minute; }

ActiveHours Hours(std::string_view text) {
  auto v = json::Parse(text);
  EXPECT_TRUE(v.has_value()) << text;
  auto h = ActiveHours::Parse(*v);
  EXPECT_TRUE(h.has_value()) << text << ": " << (h ? "" : h.error().message);
  return h ? *h : ActiveHours{};
}

std::vector<ScheduleProblem> Problems(std::string_view text) {
  auto v = json::Parse(text);
  EXPECT_TRUE(v.has_value()) << text;
  std::vector<ScheduleProblem> problems;
  auto h = ActiveHours::Parse(*v, &problems);
  EXPECT_FALSE(h.has_value()) << text;
  return problems;
}

TEST(ScheduleTest, EmptyIsAlwaysActive) {
  ActiveHours h = Hours("{}");
  EXPECT_TRUE(h.always());
  for (int m = 0; m < kMinutesPerWeek; m += 97) EXPECT_TRUE(h.ActiveAt(m));
  EXPECT_EQ(h.NextOpening(At(kWed, 3)), std::nullopt);
}

TEST(ScheduleTest, DayWindowIsHalfOpen) {
  ActiveHours h = Hours(R"({"mon": {"startTime": 900, "endTime": 1730}})");
  EXPECT_FALSE(h.ActiveAt(At(kMon, 8, 59)));
  EXPECT_TRUE(h.ActiveAt(At(kMon, 9, 0)));
  EXPECT_TRUE(h.ActiveAt(At(kMon, 17, 29)));
  EXPECT_FALSE(h.ActiveAt(At(kMon, 17, 30)));
  EXPECT_FALSE(h.ActiveAt(At(kTue, 10)));  // only Monday
  EXPECT_EQ(h.NextOpening(At(kMon, 18)), At(kMon, 9));  // next week's Monday
  EXPECT_EQ(h.NextOpening(At(kSun, 23)), At(kMon, 9));
  EXPECT_EQ(h.NextOpening(At(kMon, 10)), std::nullopt);  // open now
  EXPECT_EQ(FormatMinuteOfWeek(*h.NextOpening(At(kFri, 1))), "Mon 09:00");
}

TEST(ScheduleTest, WholeDayAndSeveralDays) {
  ActiveHours h = Hours(R"({"sat": {"startTime": 0, "endTime": 2400}, "tue": {"startTime": 1200, "endTime": 1300}})");
  EXPECT_TRUE(h.ActiveAt(At(kSat, 0)));
  EXPECT_TRUE(h.ActiveAt(At(kSat, 23, 59)));
  EXPECT_FALSE(h.ActiveAt(At(kSun, 0)));
  EXPECT_FALSE(h.ActiveAt(At(kFri, 23, 59)));
  EXPECT_TRUE(h.ActiveAt(At(kTue, 12, 30)));
  EXPECT_EQ(h.NextOpening(At(kTue, 13)), At(kSat, 0));
  EXPECT_EQ(h.NextOpening(At(kSun, 1)), At(kTue, 12));
}

TEST(ScheduleTest, NightCrossesMidnightAndTheWeeksEnd) {
  ActiveHours h = Hours(R"({"sun": {"startTime": 2200, "endTime": 600}})");
  EXPECT_FALSE(h.ActiveAt(At(kSun, 21, 59)));
  EXPECT_TRUE(h.ActiveAt(At(kSun, 22)));
  EXPECT_TRUE(h.ActiveAt(At(kMon, 0)));      // past the week's end
  EXPECT_TRUE(h.ActiveAt(At(kMon, 5, 59)));
  EXPECT_FALSE(h.ActiveAt(At(kMon, 6)));
  EXPECT_EQ(h.NextOpening(At(kMon, 6)), At(kSun, 22));
}

TEST(ScheduleTest, SpanOverDays) {
  // Monday 09:00 to Friday 18:00.
  ActiveHours h = Hours(R"({"mon": {"startTime": 900}, "fri": {"endTime": 1800}})");
  EXPECT_FALSE(h.ActiveAt(At(kMon, 8)));
  EXPECT_TRUE(h.ActiveAt(At(kMon, 9)));
  EXPECT_TRUE(h.ActiveAt(At(kWed, 3)));  // nights inside the span count
  EXPECT_TRUE(h.ActiveAt(At(kFri, 17, 59)));
  EXPECT_FALSE(h.ActiveAt(At(kFri, 18)));
  EXPECT_FALSE(h.ActiveAt(At(kSun, 12)));
  EXPECT_EQ(h.NextOpening(At(kSat, 12)), At(kMon, 9));
}

TEST(ScheduleTest, SpanAcrossTheWeeksEnd) {
  // Friday 20:00 to Monday 06:00, plus a Wednesday window.
  ActiveHours h = Hours(
      R"({"fri": {"startTime": 2000}, "mon": {"endTime": 600}, "wed": {"startTime": 100, "endTime": 200}})");
  EXPECT_TRUE(h.ActiveAt(At(kSat, 12)));
  EXPECT_TRUE(h.ActiveAt(At(kMon, 5)));  // the latest edge is last week's Friday opening
  EXPECT_FALSE(h.ActiveAt(At(kMon, 6)));
  EXPECT_FALSE(h.ActiveAt(At(kTue, 12)));
  EXPECT_TRUE(h.ActiveAt(At(kWed, 1, 30)));
  EXPECT_FALSE(h.ActiveAt(At(kFri, 19, 59)));
  EXPECT_EQ(h.NextOpening(At(kTue, 0)), At(kWed, 1));
  EXPECT_EQ(h.NextOpening(At(kWed, 3)), At(kFri, 20));
}

TEST(ScheduleTest, BadSchedulesNameTheField) {
  auto p = Problems(R"({"mon": {"startTime": 975, "endTime": 1800}})");
  ASSERT_EQ(p.size(), 1u);
  EXPECT_EQ(p[0].message, "schedule.mon.startTime: 975 is not a time of day (minutes 75 are 60 or more)");
  p = Problems(R"({"tue": {"startTime": 800, "endTime": 800}})");
  ASSERT_EQ(p.size(), 1u);
  EXPECT_NE(p[0].message.find("schedule.tue: startTime and endTime are equal"), std::string::npos);
  p = Problems(R"({"wed": {"startTime": 2400, "endTime": 100}})");
  ASSERT_EQ(p.size(), 1u);
  EXPECT_NE(p[0].message.find("schedule.wed.startTime: 2400 is the day's end"), std::string::npos);
  p = Problems(R"({"mon": {"startTime": 900}})");  // never closed
  ASSERT_EQ(p.size(), 1u);
  EXPECT_NE(p[0].message.find("schedule.mon.startTime: opens a span that no later day's endTime closes"),
            std::string::npos);
  p = Problems(R"({"mon": {"startTime": 900}, "tue": {"startTime": 900}, "fri": {"endTime": 1800}})");
  ASSERT_EQ(p.size(), 1u);
  EXPECT_NE(p[0].message.find("schedule.mon.startTime: opens a span"), std::string::npos);
  p = Problems(R"({"fri": {"endTime": 1800}, "sat": {"endTime": 100}, "mon": {"startTime": 900}})");
  ASSERT_EQ(p.size(), 1u);
  EXPECT_NE(p[0].message.find("schedule.fri.endTime: closes a span that no earlier day's startTime opens"),
            std::string::npos);
  p = Problems(R"({"thu": {}})");
  ASSERT_EQ(p.size(), 1u);
  EXPECT_EQ(p[0].message, "schedule.thu: give a startTime, an endTime or both");
}

TEST(ScheduleTest, LocalMinuteOfWeekFollowsTz) {
  const char* old = std::getenv("TZ");
  const std::string saved = old ? old : "";
  ::setenv("TZ", "UTC", 1);
  ::tzset();
  EXPECT_EQ(LocalMinuteOfWeek(0), At(3, 0));  // 1970-01-01 was a Thursday
  EXPECT_EQ(LocalMinuteOfWeek(4 * 86400 + 9 * 3600 + 30 * 60), At(kMon, 9, 30));
  ::setenv("TZ", "UTC-2", 1);  // POSIX: two hours east of UTC
  ::tzset();
  EXPECT_EQ(LocalMinuteOfWeek(4 * 86400 + 23 * 3600), At(kTue, 1));
  if (old) {
    ::setenv("TZ", saved.c_str(), 1);
  } else {
    ::unsetenv("TZ");
  }
  ::tzset();
}

// The loader reports a bad schedule of a preview template at its line.
TEST(ScheduleTest, LoaderReportsTheScheduleAtItsLine) {
  auto loader = Loader::Create();
  ASSERT_TRUE(loader.has_value());
  const std::string text = R"({"apiVersion": "v1.2",
"options": {"schedule": {
  "mon": {"startTime": 900, "endTime": 1890}}},
"triggers": [{"ref": "app", "repository": "shop", "prRestrictions": ["*"]}],
"spec": {"kind": "Workflow", "spec": {"type": "sequential", "steps": []}}}
)";
  LoadResult r = loader->Load(".gitops/previews/office.json", "previews/office.json", text);
  EXPECT_FALSE(r.object.has_value());
  std::string all;
  for (const Diagnostic& d : r.diagnostics) all += d.ToString() + "\n";
  ASSERT_EQ(r.diagnostics.size(), 1u) << all;
  EXPECT_EQ(r.diagnostics[0].rule, "model:schedule");
  EXPECT_EQ(r.diagnostics[0].line, 3);
  EXPECT_NE(r.diagnostics[0].message.find("options.schedule.mon.endTime: 1890 is not a time of day"),
            std::string::npos);
}

}  // namespace
}  // namespace gitopsd::model
