// gitopsctl as a person or a CI job uses it, against a real gitopsd with
// write-back on: tables, local validation before anything is sent, edits
// through $EDITOR, conflicts, and tokens made offline.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <regex>

#include "tests/daemon/write_fixture.h"

namespace gitopsd::test {
namespace {

class CtlTest : public WriteFixture {
 protected:
  std::map<std::string, std::string> Env(const std::string& token = kWriteToken) {
    return {{"GITOPSD_SERVER", daemon_.url()}, {"GITOPSD_TOKEN", token}, {"TMPDIR", dir_.path()}};
  }
  CommandResult Ctl(const std::vector<std::string>& args,
                    std::map<std::string, std::string> extra = {}) {
    auto env = Env();
    for (auto& [k, v] : extra) env[k] = v;
    return RunGitopsctl(args, env, dir_.path());
  }
};

TEST(CtlOfflineTest, TokenCreatePrintsATokenAndTheLineWithItsHash) {
  auto r = RunGitopsctl({"token", "create", "ci", "--role", "write"});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  std::smatch token, line;
  ASSERT_TRUE(std::regex_search(r.output, token, std::regex("\n  ([0-9a-f]{64})\n"))) << r.output;
  ASSERT_TRUE(std::regex_search(
      r.output, line,
      std::regex(R"re(\{"name": "ci", "role": "write", "sha256": "([0-9a-f]{64})"\})re")))
      << r.output;
  EXPECT_EQ(line[1].str(), daemon::ToHex(daemon::HashToken(token[1].str())));
  auto other = RunGitopsctl({"token", "create", "ci", "--role", "write"});
  EXPECT_FALSE(Contains(other.output, token[1].str())) << "every token is new";
  auto as_json = RunGitopsctl({"--json", "token", "create", "bot", "--role", "read"});
  ASSERT_EQ(as_json.exit_code, 0);
  auto doc = json::Parse(as_json.output);
  ASSERT_TRUE(doc) << as_json.output;
  EXPECT_EQ(StringField(*doc, "role"), "read");
  EXPECT_EQ(StringField(*doc, "sha256"),
            daemon::ToHex(daemon::HashToken(StringField(*doc, "token"))));
}

TEST(CtlOfflineTest, UsageErrorsExitWithTwo) {
  EXPECT_EQ(RunGitopsctl({}).exit_code, 2);
  EXPECT_EQ(RunGitopsctl({"frobnicate"}).exit_code, 2);
  EXPECT_EQ(RunGitopsctl({"token", "create", "x", "--role", "admin"}).exit_code, 2);
  EXPECT_EQ(RunGitopsctl({"conflicts", "resolve", "3"}).exit_code, 2);
  EXPECT_EQ(RunGitopsctl({"conflicts", "resolve", "3", "--take", "both"}).exit_code, 2);
  EXPECT_EQ(RunGitopsctl({"get", "widgets"}).exit_code, 2);
  EXPECT_EQ(RunGitopsctl({"--server", "ftp://x", "status"}).exit_code, 2);
  auto help = RunGitopsctl({"--help"});
  EXPECT_EQ(help.exit_code, 0);
  for (const char* command : {"status", "get", "apply", "edit", "conflicts", "token"}) {
    EXPECT_TRUE(Contains(help.output, command)) << command << "\n" << help.output;
  }
  auto down = RunGitopsctl({"--server", "http://127.0.0.1:1", "status"});
  EXPECT_EQ(down.exit_code, 3);
  EXPECT_TRUE(Contains(down.output, "cannot reach gitopsd")) << down.output;
}

TEST_F(CtlTest, StatusAndGetShowTablesAndJson) {
  ASSERT_TRUE(Start());
  auto status = Ctl({"status"});
  ASSERT_EQ(status.exit_code, 0) << status.output;
  EXPECT_TRUE(Contains(status.output, "REPOSITORY")) << status.output;
  EXPECT_TRUE(std::regex_search(
      status.output,
      std::regex("shop +main +" + RemoteHead().substr(0, 7) + " +\\S+ ago +0 +0 +0\n")))
      << status.output;

  auto list = Ctl({"get", "templates"});
  ASSERT_EQ(list.exit_code, 0) << list.output;
  EXPECT_TRUE(std::regex_search(list.output,
                                std::regex("web +1 +shop +\\.gitops/templates/web\\.json +synced")))
      << list.output;
  EXPECT_TRUE(Contains(list.output, "database")) << list.output;

  auto one = Ctl({"get", "templates", "web"});
  ASSERT_EQ(one.exit_code, 0) << one.output;
  EXPECT_TRUE(Contains(one.output, "\n  \"name\": \"web\",\n")) << one.output;
  auto as_json = Ctl({"--json", "get", "Template", "web"});
  ASSERT_EQ(as_json.exit_code, 0);
  EXPECT_TRUE(json::Parse(as_json.output).has_value()) << as_json.output;
  auto missing = Ctl({"get", "templates", "nope"});
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_TRUE(Contains(missing.output, "\"nope\" does not exist")) << missing.output;
}

TEST_F(CtlTest, ApplyValidatesLocallyAndSendsNothingWhenTheFileIsBad) {
  ASSERT_TRUE(Start());
  const std::string head = RemoteHead();
  const std::string file = dir_.Sub("release-flows/production.json");
  ASSERT_TRUE(WriteTextFile(file, "{\n  \"apiVersion\": \"v1.2\"\n  \"name\": \"production\"\n}\n"));
  auto r = Ctl({"apply", "-f", file});
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_TRUE(Contains(r.output, file + ":3:3: error: ")) << r.output;
  EXPECT_FALSE(Contains(daemon_.Output(), "PUT")) << "nothing reached the server";
  ExpectNothingWritten(head);
  // A file with no kind and no kind folder is a local error too.
  ASSERT_TRUE(WriteTextFile(dir_.Sub("loose.json"), ReleaseFlowJson("loose")));
  auto loose = Ctl({"apply", "-f", dir_.Sub("loose.json")});
  EXPECT_EQ(loose.exit_code, 1) << loose.output;
  EXPECT_TRUE(Contains(loose.output, "loose.json")) << loose.output;
}

TEST_F(CtlTest, ApplyPutsTheObjectAndSaysWhereItLanded) {
  ASSERT_TRUE(Start());
  const std::string file = dir_.Sub("release-flows/production.json");
  ASSERT_TRUE(WriteTextFile(file, ReleaseFlowJson("production")));
  auto created = Ctl({"apply", "-f", file});
  ASSERT_EQ(created.exit_code, 0) << created.output << daemon_.Output();
  EXPECT_EQ(created.output,
            "ReleaseFlow/production: revision 1, pushed " + RemoteHead().substr(0, 7) + " (new)\n");

  ASSERT_TRUE(WriteTextFile(dir_.Sub("web.json"), TemplateJson("web", "v2")));
  auto updated = Ctl({"apply", "-f", dir_.Sub("web.json"), "--kind", "templates"});
  ASSERT_EQ(updated.exit_code, 0) << updated.output;
  EXPECT_EQ(updated.output, "Template/web: revision 2, pushed " + RemoteHead().substr(0, 7) + "\n");
  ASSERT_TRUE(Pull());
  EXPECT_EQ(WorkFile(".gitops/templates/web.json"), TemplateJson("web", "v2"));

  auto no_token = RunGitopsctl({"apply", "-f", file}, {{"GITOPSD_SERVER", daemon_.url()}});
  EXPECT_EQ(no_token.exit_code, 1);
  EXPECT_TRUE(Contains(no_token.output, "Authorization: Bearer")) << no_token.output;
  EXPECT_TRUE(Contains(no_token.output, "HTTP 401")) << no_token.output;
  auto read_only = RunGitopsctl({"apply", "-f", file}, Env(kReadToken));
  EXPECT_EQ(read_only.exit_code, 1);
  EXPECT_TRUE(Contains(read_only.output, "read role")) << read_only.output;
}

TEST_F(CtlTest, EditRunsTheEditorAndSavesWithIfMatch) {
  ASSERT_TRUE(Start());
  auto r = Ctl({"edit", "templates", "web"}, {{"EDITOR", "sed -i s/\"v1\"/\"v3\"/"}});
  ASSERT_EQ(r.exit_code, 0) << r.output << daemon_.Output();
  EXPECT_EQ(r.output, "Template/web: revision 2, pushed " + RemoteHead().substr(0, 7) + "\n");
  EXPECT_EQ(Description("web"), "v3");
  ASSERT_TRUE(Pull());
  EXPECT_TRUE(Contains(WorkFile(".gitops/templates/web.json"), "\"v3\""));

  auto unchanged = Ctl({"edit", "templates", "web"}, {{"EDITOR", "true"}, {"VISUAL", ""}});
  EXPECT_EQ(unchanged.exit_code, 0);
  EXPECT_EQ(unchanged.output, "Edit cancelled, no changes made.\n");
}

TEST_F(CtlTest, AnEditThatBreaksTheFileIsNotSent) {
  ASSERT_TRUE(Start());
  const std::string head = RemoteHead();
  // Drops the comma after the name: a syntax error on the next line.
  auto r = Ctl({"edit", "templates", "web"}, {{"EDITOR", "sed -i s/\"web\",/\"web\"/"}});
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_TRUE(Contains(r.output, "web.json:4:3: error: ")) << r.output;
  EXPECT_TRUE(Contains(r.output, "Edit again? [Y/n]")) << r.output;
  EXPECT_TRUE(Contains(r.output, "kept in " + dir_.path())) << r.output;
  ExpectNothingWritten(head);
}

TEST_F(CtlTest, AnEditRacingAnotherChangeIsRefusedAndKept) {
  ASSERT_TRUE(Start());
  // The "editor" lets someone else change web first, then edits its copy.
  ASSERT_TRUE(WriteTextFile(dir_.Sub("other.json"), TemplateJson("web", "theirs")));
  const std::string script = dir_.Sub("racing-editor");
  ASSERT_TRUE(WriteTextFile(script, "#!/bin/sh\n\"" + GitopsctlBinary() +
                                        "\" apply --kind templates -f \"" + dir_.Sub("other.json") +
                                        "\" >/dev/null || exit 1\nsed -i 's/\"v1\"/\"mine\"/' \"$1\"\n"));
  ASSERT_EQ(::chmod(script.c_str(), 0755), 0);
  auto r = Ctl({"edit", "templates", "web"}, {{"VISUAL", script}});
  EXPECT_EQ(r.exit_code, 1) << r.output << daemon_.Output();
  EXPECT_TRUE(Contains(r.output, "someone else changed Template/web")) << r.output;
  std::smatch kept;
  ASSERT_TRUE(std::regex_search(r.output, kept, std::regex("kept in (\\S+\\.json)"))) << r.output;
  EXPECT_TRUE(Contains(ReadTextFile(kept[1].str()), "\"mine\"")) << "the user's version is kept";
  EXPECT_EQ(Description("web"), "theirs");
}

TEST_F(CtlTest, ConflictsAreListedAndResolved) {
  ASSERT_TRUE(Start());
  auto none = Ctl({"conflicts"});
  EXPECT_EQ(none.exit_code, 0);
  EXPECT_EQ(none.output, "No open conflicts.\n");

  ASSERT_TRUE(repo_.WriteFile(".gitops/templates/web.json", TemplateJson("web", "from-git")));
  ASSERT_FALSE(repo_.Commit("web from git").empty());
  ASSERT_TRUE(repo_.Push());
  ASSERT_TRUE(WriteTextFile(dir_.Sub("templates/web.json"), TemplateJson("web", "from-api")));
  auto applied = Ctl({"apply", "-f", dir_.Sub("templates/web.json")});
  ASSERT_EQ(applied.exit_code, 0) << applied.output;

  CommandResult list;
  ASSERT_TRUE(WaitUntil([&] {
    list = Ctl({"conflicts"});
    return Contains(list.output, "Template/web");
  }, std::chrono::seconds(10))) << list.output << daemon_.Output();
  EXPECT_TRUE(Contains(list.output, "/description")) << list.output;
  std::smatch id;
  ASSERT_TRUE(std::regex_search(list.output, id, std::regex("\n(\\d+) +shop +Template/web")))
      << list.output;
  auto status = Ctl({"status"});
  EXPECT_TRUE(std::regex_search(status.output, std::regex("shop +main +\\w+ +\\S+ ago +\\d+ +0 +1\n")))
      << status.output;

  auto resolved = Ctl({"conflicts", "resolve", id[1].str(), "--take", "git"});
  ASSERT_EQ(resolved.exit_code, 0) << resolved.output << daemon_.Output();
  EXPECT_TRUE(Contains(resolved.output, "conflict " + id[1].str() + " resolved: Template/web"))
      << resolved.output;
  EXPECT_EQ(Ctl({"conflicts"}).output, "No open conflicts.\n");
  auto again = Ctl({"conflicts", "resolve", id[1].str(), "--take", "git"});
  EXPECT_EQ(again.exit_code, 1);
  EXPECT_TRUE(Contains(again.output, "HTTP 409")) << again.output;
  EXPECT_EQ(Description("web"), "from-git");
}

}  // namespace
}  // namespace gitopsd::test
