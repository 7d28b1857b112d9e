// gitopsctl's commands against a real daemon (the runs fixture: approval
// flows and templates, plus a preview template with nothing to deploy),
// each as a table for people and as JSON for scripts; status's one-screen
// picture; the exit codes; and where the server and token come from (flags,
// environment, ctl.json).
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>
#include <regex>

#include "tests/daemon/runs_fixture.h"

namespace gitopsd::test {
namespace {

namespace fs = std::filesystem;

// A preview per pull request, whose set-up deploys nothing.
constexpr const char* kLightPreviewJson = R"({"apiVersion": "v1.2", "name": "light",
  "options": {"nameFormat": "pr-${refs.app.pullRequestId}"},
  "triggers": [{"ref": "app", "type": "git", "repository": "shop", "prRestrictions": ["*"]}],
  "spec": {"kind": "Workflow", "spec": {"type": "sequential", "steps": []}}})";

class CtlOutputTest : public RunsFixture {
 protected:
  void SetUp() override {
    RunsFixture::SetUp();
    if (HasFatalFailure()) return;
    ASSERT_TRUE(repo_.WriteFile(".gitops/previews/light.json", kLightPreviewJson));
    ASSERT_FALSE(repo_.Commit("a light preview template").empty());
    ASSERT_TRUE(repo_.Push());
    daemon_.SetEnv("GITOPSD_RUNNER_POLL", "100ms");
    daemon_.SetEnv("GITOPSD_PREVIEW_TICK", "200ms");
  }

  // gitopsctl with the server and write token in the environment, and a
  // ctl.json folder of the test's own.
  CommandResult Ctl(const std::vector<std::string>& args,
                    std::map<std::string, std::string> env = {}) {
    env.try_emplace("GITOPSD_URL", daemon_.url());
    env.try_emplace("GITOPSD_TOKEN", kWriteToken);
    env.try_emplace("XDG_CONFIG_HOME", dir_.path());
    return RunGitopsctl(args, env, dir_.path());
  }

  // The command's output parsed as JSON (a failed expectation if it is not).
  json::Value JsonOf(const std::vector<std::string>& args) {
    std::vector<std::string> with{"--json"};
    with.insert(with.end(), args.begin(), args.end());
    auto r = Ctl(with);
    EXPECT_EQ(r.exit_code, 0) << r.output;
    auto doc = json::Parse(r.output);
    EXPECT_TRUE(doc.has_value()) << r.output;
    return doc ? *doc : json::Value();
  }

  // True when `pattern` (a regex) matches whole lines of `output`.
  static bool HasLine(const std::string& output, const std::string& pattern) {
    return std::regex_search(output, std::regex("(^|\n)" + pattern + "\n"));
  }

  static size_t Items(const json::Value& doc, std::string_view key) {
    const json::Value* v = doc.Find(key);
    return v && v->is_array() ? v->items().size() : 0;
  }

  // Pull request `number` at a new commit, seen by a look at the repository.
  void OpenPullRequest(int number) {
    ASSERT_TRUE(repo_.Git({"checkout", "-q", "-b", "feature"}).ok());
    ASSERT_TRUE(repo_.WriteFile("README", "feature\n"));
    ASSERT_FALSE(repo_.Commit("feature [skip ci]").empty());
    ASSERT_TRUE(repo_.Git({"push", "-q", "-f", "origin",
                           "HEAD:refs/pull/" + std::to_string(number) + "/head"}).ok());
    ASSERT_TRUE(repo_.Git({"checkout", "-q", "main"}).ok());
    ASSERT_EQ(daemon_.Post("/api/v1/repositories/shop/sync", Writer()).status, 200);
  }

  std::string PreviewStatus(const std::string& name) {
    auto body = daemon_.Get("/api/v1/previews/" + name).Json();
    return body ? StringField(*body, "status") : "";
  }

  // A conflict on template web: Git and the API both change its description.
  void MakeConflict() {
    ASSERT_TRUE(repo_.WriteFile(".gitops/templates/web.json", TemplateJson("web", "from-git")));
    ASSERT_FALSE(repo_.Commit("web from git").empty());
    ASSERT_TRUE(repo_.Push());
    ASSERT_TRUE(WriteTextFile(dir_.Sub("templates/web.json"), TemplateJson("web", "from-api")));
    auto applied = Ctl({"apply", "-f", dir_.Sub("templates/web.json")});
    ASSERT_EQ(applied.exit_code, 0) << applied.output;
    ASSERT_TRUE(WaitUntil([&] {
      auto c = daemon_.Get("/api/v1/conflicts").Json();
      return c && Items(*c, "conflicts") == 1;
    })) << daemon_.Output();
  }
};

TEST_F(CtlOutputTest, StatusShowsRepositoriesConflictsRunsAndPreviewsInOneScreen) {
  ASSERT_TRUE(Start());
  auto quiet = Ctl({"status"});
  ASSERT_EQ(quiet.exit_code, 0) << quiet.output;
  EXPECT_TRUE(HasLine(quiet.output, "Repositories \\(1\\)\nREPOSITORY +BRANCH +APPLIED +LAST SYNC +PENDING +ERRORS +CONFLICTS"))
      << quiet.output;
  EXPECT_TRUE(Contains(quiet.output, "\nConflicts: none\n")) << quiet.output;
  EXPECT_TRUE(Contains(quiet.output, "\nRuns in progress: none\n")) << quiet.output;
  EXPECT_TRUE(Contains(quiet.output, "\nPreviews: none\n")) << quiet.output;

  // Now something of everything: a file in error, a run at its approval,
  // a conflict and a preview.
  ASSERT_TRUE(repo_.WriteFile(".gitops/templates/broken.json", "{\n  \"name\": \n}\n"));
  ASSERT_FALSE(repo_.Commit("broken").empty());
  ASSERT_TRUE(repo_.Push());
  ASSERT_EQ(daemon_.Post("/api/v1/repositories/shop/sync", Writer()).status, 200);
  const int64_t run = StartedId(StartRun("gate"));
  ASSERT_GT(run, 0);
  ASSERT_TRUE(WaitForStatus(run, "approval_wait"));
  MakeConflict();
  if (HasFatalFailure()) return;
  OpenPullRequest(3);
  if (HasFatalFailure()) return;
  ASSERT_TRUE(WaitUntil([&] { return PreviewStatus("pr-3") == "ready"; })) << daemon_.Output();

  auto status = Ctl({"status"});
  EXPECT_EQ(status.exit_code, 0) << status.output;
  EXPECT_TRUE(std::regex_search(
      status.output, std::regex("\nshop +main +[0-9a-f]{7} +\\S+ ago +\\d+ +1 +1\n")))
      << status.output;
  EXPECT_TRUE(Contains(status.output, "\n  shop: .gitops/templates/broken.json:")) << status.output;
  EXPECT_TRUE(HasLine(status.output, "Conflicts \\(1\\)\nID +REPOSITORY +OBJECT +IN FORCE +POLICY +CREATED"))
      << status.output;
  EXPECT_TRUE(std::regex_search(status.output, std::regex("\n\\d+ +shop +Template/web +\\w+ +git-wins")))
      << status.output;
  EXPECT_TRUE(HasLine(status.output,
                      "Runs in progress \\(1\\)\nID +FLOW +KIND +STATUS +AT NODE +STARTED"))
      << status.output;
  EXPECT_TRUE(std::regex_search(
      status.output,
      std::regex("\n" + std::to_string(run) + " +gate +release +approval_wait +Approval gate \\(0\\.0\\)")))
      << status.output;
  EXPECT_TRUE(HasLine(status.output, "Previews \\(1\\)\nNAME +TEMPLATE +STATUS +URL +EXPIRES"))
      << status.output;
  EXPECT_TRUE(std::regex_search(status.output, std::regex("\npr-3 +light +ready ")))
      << status.output;

  json::Value doc = JsonOf({"status"});
  EXPECT_EQ(StringField(doc, "server"), daemon_.url());
  ASSERT_EQ(Items(doc, "repositories"), 1u) << json::Serialize(doc);
  const json::Value& repo = doc.Find("repositories")->items()[0];
  EXPECT_EQ(StringField(repo, "name"), "shop");
  EXPECT_EQ(Items(repo, "errors"), 1u);
  EXPECT_FALSE(StringField(repo, "lastSyncAt").empty());
  ASSERT_EQ(Items(doc, "conflicts"), 1u);
  EXPECT_EQ(StringField(doc.Find("conflicts")->items()[0], "name"), "web");
  ASSERT_EQ(Items(doc, "runs"), 1u);
  const json::Value& listed = doc.Find("runs")->items()[0];
  EXPECT_EQ(NumberField(listed, "id"), static_cast<double>(run));
  ASSERT_EQ(Items(listed, "currentNodes"), 1u) << json::Serialize(listed);
  EXPECT_EQ(StringField(listed.Find("currentNodes")->items()[0], "ref"), "gate");
  ASSERT_EQ(Items(doc, "previews"), 1u);
  EXPECT_EQ(StringField(doc.Find("previews")->items()[0], "name"), "pr-3");
  EXPECT_EQ(Items(doc, "problems"), 0u);
}

TEST_F(CtlOutputTest, GetAndRunsAsTablesAndJson) {
  ASSERT_TRUE(Start());
  auto flows = Ctl({"get", "release-flows"});
  ASSERT_EQ(flows.exit_code, 0) << flows.output;
  EXPECT_TRUE(HasLine(flows.output, "NAME +REVISION +REPOSITORY +PATH +STATUS")) << flows.output;
  EXPECT_TRUE(std::regex_search(
      flows.output, std::regex("\ngate +1 +shop +\\.gitops/release-flows/gate\\.json +synced\n")))
      << flows.output;
  json::Value objects = JsonOf({"get", "release-flows"});
  EXPECT_EQ(Items(objects, "objects"), 3u) << json::Serialize(objects);
  EXPECT_EQ(StringField(JsonOf({"get", "release-flows", "gate"}), "name"), "gate");

  // run: a line for people, the run for scripts.
  auto started = Ctl({"run", "gate"});
  ASSERT_EQ(started.exit_code, 0) << started.output;
  std::smatch id;
  ASSERT_TRUE(std::regex_search(started.output, id, std::regex("^run (\\d+) of gate started")))
      << started.output;
  json::Value second = JsonOf({"run", "gate"});
  EXPECT_EQ(StringField(*second.Find("flow"), "name"), "gate");
  EXPECT_GT(NumberField(second, "id"), std::stod(id[1].str()));
  ASSERT_TRUE(WaitForStatus(std::stoll(id[1].str()), "approval_wait"));

  auto runs = Ctl({"runs"});
  ASSERT_EQ(runs.exit_code, 0) << runs.output;
  EXPECT_TRUE(HasLine(runs.output, "ID +FLOW +KIND +STATUS +STARTED +DURATION")) << runs.output;
  EXPECT_TRUE(std::regex_search(runs.output,
                                std::regex("\n" + id[1].str() + " +gate +release +approval_wait ")))
      << runs.output;
  EXPECT_EQ(Items(JsonOf({"runs", "--flow", "gate"}), "runs"), 2u);

  auto tree = Ctl({"get", "run", id[1].str()});
  ASSERT_EQ(tree.exit_code, 0) << tree.output;
  EXPECT_TRUE(HasLine(tree.output, "NODE +KIND +REF +STATUS +DURATION +ERROR")) << tree.output;
  EXPECT_TRUE(std::regex_search(tree.output, std::regex("\n  0\\.0 +Approval +gate +approval_wait")))
      << tree.output;
  json::Value run = JsonOf({"get", "run", id[1].str()});
  EXPECT_EQ(Items(run, "nodes"), 2u) << json::Serialize(run);

  // logs: text, or the run with each node's log.
  ASSERT_EQ(Ctl({"approve", id[1].str()}).exit_code, 0);
  ASSERT_TRUE(WaitForStatus(std::stoll(id[1].str()), "success"));
  auto logs = Ctl({"logs", id[1].str()});
  ASSERT_EQ(logs.exit_code, 0) << logs.output;
  EXPECT_TRUE(Contains(logs.output, "gate")) << logs.output;
  json::Value with_logs = JsonOf({"logs", id[1].str()});
  EXPECT_EQ(StringField(with_logs, "status"), "success");
  ASSERT_EQ(Items(with_logs, "nodes"), 2u);
  EXPECT_NE(with_logs.Find("nodes")->items()[1].Find("log"), nullptr);
  EXPECT_EQ(Ctl({"--json", "logs", id[1].str(), "--follow"}).exit_code, 2);

  // run --wait --json: only the concluded run, parseable.
  json::Value waited = JsonOf({"run", "greeter", "--template", "--arg", "WHO=me", "--wait"});
  EXPECT_EQ(StringField(waited, "status"), "success");

  // rollback: refused for a run that deployed nothing, and said why.
  auto rollback = Ctl({"rollback", id[1].str()});
  EXPECT_EQ(rollback.exit_code, 1) << rollback.output;
  EXPECT_TRUE(Contains(rollback.output, "deployed nothing")) << rollback.output;
  EXPECT_EQ(Ctl({"--json", "rollback", id[1].str()}).exit_code, 1);

  auto conflicts = JsonOf({"conflicts"});
  EXPECT_EQ(Items(conflicts, "conflicts"), 0u);
}

TEST_F(CtlOutputTest, PreviewsAndTeardownAsTablesAndJson) {
  ASSERT_TRUE(Start());
  auto none = Ctl({"previews"});
  EXPECT_EQ(none.output, "No previews.\n");
  EXPECT_EQ(Items(JsonOf({"previews"}), "previews"), 0u);

  OpenPullRequest(4);
  if (HasFatalFailure()) return;
  ASSERT_TRUE(WaitUntil([&] { return PreviewStatus("pr-4") == "ready"; })) << daemon_.Output();
  auto table = Ctl({"previews"});
  ASSERT_EQ(table.exit_code, 0) << table.output;
  EXPECT_TRUE(HasLine(table.output, "NAME +TEMPLATE +STATUS +SOURCE +COMMIT +URL +EXPIRES"))
      << table.output;
  EXPECT_TRUE(std::regex_search(table.output, std::regex("\npr-4 +light +ready +#4 ")))
      << table.output;
  json::Value listed = JsonOf({"previews"});
  ASSERT_EQ(Items(listed, "previews"), 1u);
  EXPECT_EQ(StringField(listed.Find("previews")->items()[0], "template"), "light");

  auto torn = Ctl({"--json", "teardown", "pr-4"});
  ASSERT_EQ(torn.exit_code, 0) << torn.output;
  auto doc = json::Parse(torn.output);
  ASSERT_TRUE(doc) << torn.output;
  EXPECT_EQ(StringField(*doc, "name"), "pr-4");
  ASSERT_TRUE(WaitUntil([&] { return PreviewStatus("pr-4") == "gone"; })) << daemon_.Output();
  auto unknown = Ctl({"teardown", "pr-4"});
  EXPECT_EQ(unknown.exit_code, 1) << unknown.output;
}

TEST_F(CtlOutputTest, ExitCodesSayWhatWentWrong) {
  ASSERT_TRUE(Start());
  // 3: nothing answers (refused connection, unknown host).
  const std::string dead = "http://127.0.0.1:" + std::to_string(FreeLoopbackPort());
  auto refused = Ctl({"status"}, {{"GITOPSD_URL", dead}});
  EXPECT_EQ(refused.exit_code, 3) << refused.output;
  EXPECT_TRUE(Contains(refused.output, "cannot reach gitopsd at " + dead + " (from $GITOPSD_URL)"))
      << refused.output;
  EXPECT_EQ(Ctl({"--server", "http://no-such-host.invalid:7780", "runs"}).exit_code, 3);
  EXPECT_EQ(Ctl({"logs", "1", "--follow"}, {{"GITOPSD_URL", dead}}).exit_code, 3);
  auto no_socket = Ctl({"--server", "unix:" + dir_.Sub("none.sock"), "previews"});
  EXPECT_EQ(no_socket.exit_code, 3) << no_socket.output;
  EXPECT_TRUE(Contains(no_socket.output, "cannot reach gitopsd at unix:" + dir_.Sub("none.sock")))
      << no_socket.output;
  // 2: usage and configuration.
  EXPECT_EQ(Ctl({"--server", "ftp://x", "status"}).exit_code, 2);
  EXPECT_EQ(Ctl({"--server", "unix:relative.sock", "status"}).exit_code, 2);
  EXPECT_EQ(Ctl({"--token-file", dir_.Sub("missing"), "status"}).exit_code, 2);
  EXPECT_EQ(Ctl({"runs", "--bogus"}).exit_code, 2);
  // 1: the server refused.
  EXPECT_EQ(Ctl({"get", "templates", "nope"}).exit_code, 1);
  EXPECT_EQ(Ctl({"run", "gate"}, {{"GITOPSD_TOKEN", kReadToken}}).exit_code, 1);
  auto help = Ctl({"--help"});
  EXPECT_EQ(help.exit_code, 0);
  EXPECT_TRUE(Contains(help.output, "3 gitopsd cannot be reached")) << help.output;
  EXPECT_TRUE(Contains(help.output, "$GITOPSD_URL")) << help.output;
}

TEST_F(CtlOutputTest, TheServerAndTokenComeFromFlagsThenEnvironmentThenCtlJson) {
  ASSERT_TRUE(Start());
  ASSERT_TRUE(fs::create_directories(dir_.Sub("gitopsd")));
  const std::string file = dir_.Sub("gitopsd/ctl.json");
  ASSERT_TRUE(WriteTextFile(file, "{\"server\": \"" + daemon_.url() + "\", \"token\": \"" +
                                      std::string(kWriteToken) + "\"}\n"));
  ASSERT_EQ(::chmod(file.c_str(), 0600), 0);
  const std::map<std::string, std::string> only_the_file{{"GITOPSD_URL", ""}, {"GITOPSD_TOKEN", ""}};

  // The file alone is enough to write.
  auto run = Ctl({"run", "gate"}, only_the_file);
  EXPECT_EQ(run.exit_code, 0) << run.output;

  // The environment wins over the file, a flag over the environment.
  const std::string dead = "http://127.0.0.1:" + std::to_string(FreeLoopbackPort());
  EXPECT_EQ(Ctl({"runs"}, {{"GITOPSD_URL", dead}, {"GITOPSD_TOKEN", ""}}).exit_code, 3);
  EXPECT_EQ(Ctl({"runs"}, {{"GITOPSD_URL", ""}, {"GITOPSD_SERVER", dead}, {"GITOPSD_TOKEN", ""}}).exit_code, 3);
  EXPECT_EQ(Ctl({"--server", daemon_.url(), "runs"}, {{"GITOPSD_URL", dead}}).exit_code, 0);
  auto read_env = Ctl({"run", "gate"}, {{"GITOPSD_URL", ""}, {"GITOPSD_TOKEN", kReadToken}});
  EXPECT_EQ(read_env.exit_code, 1) << "the environment's read token, not the file's:\n" << read_env.output;
  EXPECT_TRUE(Contains(read_env.output, "read role")) << read_env.output;

  // The file's token is not sent to a server the file does not name.
  const std::string same_daemon = "http://localhost:" + std::to_string(daemon_.port());
  auto elsewhere = Ctl({"--server", same_daemon, "run", "gate"}, only_the_file);
  EXPECT_EQ(elsewhere.exit_code, 1) << elsewhere.output;
  EXPECT_TRUE(Contains(elsewhere.output, "HTTP 401")) << elsewhere.output;

  // Readable by others while it holds a token: refused (2), with the fix.
  ASSERT_EQ(::chmod(file.c_str(), 0644), 0);
  auto exposed = Ctl({"runs"}, only_the_file);
  EXPECT_EQ(exposed.exit_code, 2) << exposed.output;
  EXPECT_TRUE(Contains(exposed.output, "chmod 600 " + file)) << exposed.output;
}

}  // namespace
}  // namespace gitopsd::test
