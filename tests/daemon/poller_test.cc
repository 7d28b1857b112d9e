// How long the poller waits between attempts, and the validate helpers.
#include "daemon/poller.h"

#include <gtest/gtest.h>

#include "daemon/validate.h"

namespace gitopsd::daemon {
namespace {

using std::chrono::milliseconds;

TEST(PollDelayTest, GoodFetchesKeepTheInterval) {
  EXPECT_EQ(NextPollDelay(milliseconds(60'000), 0), milliseconds(60'000));
}

TEST(PollDelayTest, FailuresBackOffUpToFiveMinutes) {
  const milliseconds i(60'000);
  EXPECT_EQ(NextPollDelay(i, 1), milliseconds(60'000));
  EXPECT_EQ(NextPollDelay(i, 2), milliseconds(120'000));
  EXPECT_EQ(NextPollDelay(i, 3), milliseconds(240'000));
  EXPECT_EQ(NextPollDelay(i, 4), milliseconds(300'000));
  EXPECT_EQ(NextPollDelay(i, 1000), milliseconds(300'000));
}

TEST(PollDelayTest, ALongIntervalIsItsOwnCap) {
  EXPECT_EQ(NextPollDelay(milliseconds(3'600'000), 5), milliseconds(3'600'000));
}

TEST(ValidateHelpersTest, KindFolderIsFoundInThePath) {
  EXPECT_EQ(FolderRelative("repo/.gitops/templates/web.json"), "templates/web.json");
  EXPECT_EQ(FolderRelative("release-flows/prod.json"), "release-flows/prod.json");
  EXPECT_EQ(FolderRelative("/abs/previews/sub/pr.json"), "previews/sub/pr.json");
  EXPECT_EQ(FolderRelative("repo/.gitops/other/x.json"), "other/x.json");
  EXPECT_EQ(FolderRelative("somewhere/x.json"), "x.json");
  EXPECT_EQ(FolderRelative("templates.json"), "templates.json");
}

TEST(ValidateHelpersTest, GithubAnnotationsEscape) {
  EXPECT_EQ(GithubAnnotation("a,b.json", 3, 4, "schema:required", "missing \"x\"\nhere 100%"),
            "::error file=a%2Cb.json,line=3,col=4,title=schema%3Arequired::missing \"x\"%0Ahere 100%25");
  EXPECT_EQ(GithubAnnotation("a.json", 0, 0, "json-size", "too big"),
            "::error file=a.json,title=json-size::too big");
}

}  // namespace
}  // namespace gitopsd::daemon
