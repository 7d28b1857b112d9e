// The pieces of the log shapes (daemon/logging.h): JSON strings that any
// parser takes back byte for byte, RFC 3339 times, and the journal check.
// The shapes themselves are checked on a real daemon in observability_test.
#include "daemon/logging.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>

#include "sync/json.h"
#include "tests/support/temp_dir.h"

namespace gitopsd::daemon {
namespace {

std::string Quoted(std::string_view text) {
  std::string out;
  AppendJsonString(out, text);
  return out;
}

// The string a JSON parser reads back from Quoted(text).
std::string RoundTrip(std::string_view text) {
  auto v = json::Parse("{\"m\": " + Quoted(text) + "}");
  if (!v || !v->Find("m") || !v->Find("m")->is_string()) return "<not JSON: " + Quoted(text) + ">";
  return v->Find("m")->as_string();
}

TEST(LoggingTest, JsonStringsEscapeQuotesBackslashesAndControlCharacters) {
  EXPECT_EQ(Quoted("plain"), "\"plain\"");
  EXPECT_EQ(Quoted("say \"hi\""), "\"say \\\"hi\\\"\"");
  EXPECT_EQ(Quoted("C:\\dir"), "\"C:\\\\dir\"");
  EXPECT_EQ(Quoted("a\nb\tc\rd"), "\"a\\nb\\tc\\rd\"");
  EXPECT_EQ(Quoted(std::string_view("\x01\x1f\0", 3)), "\"\\u0001\\u001f\\u0000\"");
  EXPECT_EQ(Quoted("\b\f"), "\"\\b\\f\"");
  const std::string tricky = std::string("q\" b\\ n\n nul") + '\0' + " bell\a del\x7f";
  EXPECT_EQ(RoundTrip(tricky), tricky);
}

TEST(LoggingTest, JsonStringsKeepUtf8AndReplaceWhatIsNotUtf8) {
  EXPECT_EQ(RoundTrip("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x9a\x80"), "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x9a\x80");
  const std::string replacement = "\xEF\xBF\xBD";
  EXPECT_EQ(RoundTrip("bad \xff byte"), "bad " + replacement + " byte");
  EXPECT_EQ(RoundTrip("cut \xe2\x82"), "cut " + replacement + replacement);
  EXPECT_EQ(RoundTrip("overlong \xc0\xaf"), "overlong " + replacement + replacement);
  EXPECT_EQ(RoundTrip("surrogate \xed\xa0\x80"), "surrogate " + replacement + replacement + replacement);
  EXPECT_EQ(RoundTrip("too high \xf4\x90\x80\x80"),
            "too high " + replacement + replacement + replacement + replacement);
}

TEST(LoggingTest, TimesAreRfc3339InUtcWithMilliseconds) {
  using namespace std::chrono;
  const system_clock::time_point t{milliseconds(1714557600123)};  // 2024-05-01T10:00:00.123Z
  EXPECT_EQ(Rfc3339Millis(t), "2024-05-01T10:00:00.123Z");
  EXPECT_EQ(Rfc3339Millis(system_clock::time_point{}), "1970-01-01T00:00:00.000Z");
  EXPECT_EQ(Rfc3339Millis(system_clock::time_point{milliseconds(951782400005)}), "2000-02-29T00:00:00.005Z");
}

class JournalStreamTest : public ::testing::Test {
 protected:
  void TearDown() override { ::unsetenv("JOURNAL_STREAM"); }
  test::TempDir dir_{"journal"};
};

TEST_F(JournalStreamTest, MatchesOnlyTheStreamTheVariableNames) {
  const int fd = ::open(dir_.Sub("stream").c_str(), O_CREAT | O_WRONLY, 0600);
  const int other = ::open(dir_.Sub("other").c_str(), O_CREAT | O_WRONLY, 0600);
  ASSERT_GE(fd, 0);
  ASSERT_GE(other, 0);
  struct stat st {};
  ASSERT_EQ(::fstat(fd, &st), 0);
  const std::string value = std::to_string(st.st_dev) + ":" + std::to_string(st.st_ino);

  ::unsetenv("JOURNAL_STREAM");
  EXPECT_FALSE(IsJournalStream(fd)) << "no variable: not the journal";
  ::setenv("JOURNAL_STREAM", value.c_str(), 1);
  EXPECT_TRUE(IsJournalStream(fd));
  EXPECT_FALSE(IsJournalStream(other)) << "output redirected elsewhere since";
  for (const char* bad : {"", "12", "12:", ":34", "x:y", "1:2:3", "1:2 "}) {
    ::setenv("JOURNAL_STREAM", bad, 1);
    EXPECT_FALSE(IsJournalStream(fd)) << "JOURNAL_STREAM=\"" << bad << "\"";
  }
  ::close(fd);
  ::close(other);
}

TEST(LoggingTest, SettingsAreChecked) {
  EXPECT_TRUE(IsLogFormat("text"));
  EXPECT_TRUE(IsLogFormat("json"));
  EXPECT_FALSE(IsLogFormat("JSON"));
  EXPECT_FALSE(IsLogFormat("logfmt"));
  EXPECT_TRUE(IsLogLevel("critical"));
  EXPECT_FALSE(IsLogLevel("verbose"));
  auto bad_format = SetUpLogging(LogSettings{"info", "xml"});
  ASSERT_FALSE(bad_format.has_value());
  EXPECT_NE(bad_format.error().message.find("use text or json"), std::string::npos);
  EXPECT_FALSE(SetUpLogging(LogSettings{"loud", "text"}).has_value());
}

}  // namespace
}  // namespace gitopsd::daemon
