// Logs and metrics of a real gitopsd as an operator's tools read them: the
// journal's priority prefixes, JSON lines for log shippers, /metrics read
// strictly (and by promtool when it is installed), and the sample Grafana
// dashboard's queries checked against a live scrape.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <regex>
#include <set>

#include "sync/json.h"
#include "tests/daemon/exposition.h"
#include "tests/daemon/runs_fixture.h"

namespace gitopsd::test {
namespace {

std::vector<std::string> Lines(const std::string& text) {
  std::vector<std::string> lines;
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    lines.push_back(text.substr(start, end - start));
    start = end + 1;
  }
  return lines;
}

// "device:inode" of a file, as systemd writes JOURNAL_STREAM.
std::string DeviceAndInode(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return "";
  return std::to_string(st.st_dev) + ":" + std::to_string(st.st_ino);
}

double Now() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

// promtool from $GITOPSD_PROMTOOL or PATH (Debian's prometheus package), or "".
std::string Promtool() {
  if (const char* given = std::getenv("GITOPSD_PROMTOOL"); given && *given) return FindExecutable(given);
  return FindExecutable("promtool");
}

// Every family the daemon promises on /metrics, with its type.
const std::map<std::string, std::string>& PromisedFamilies() {
  static const std::map<std::string, std::string> families = {
      {"gitopsd_sync_total", "counter"},
      {"gitopsd_sync_duration_seconds", "histogram"},
      {"gitopsd_sync_errors", "gauge"},
      {"gitopsd_last_sync_timestamp_seconds", "gauge"},
      {"gitopsd_fetch_failures_total", "counter"},
      {"gitopsd_objects", "gauge"},
      {"gitopsd_writeback_pending", "gauge"},
      {"gitopsd_writeback_pushed_total", "counter"},
      {"gitopsd_writeback_failures_total", "counter"},
      {"gitopsd_conflicts_open", "gauge"},
      {"gitopsd_conflicts_total", "counter"},
      {"gitopsd_webhook_deliveries_total", "counter"},
      {"gitopsd_trigger_events_total", "counter"},
      {"gitopsd_http_requests_total", "counter"},
      {"gitopsd_http_request_duration_seconds", "histogram"},
      {"gitopsd_runs_total", "counter"},
      {"gitopsd_runs_active", "gauge"},
      {"gitopsd_previews", "gauge"},
      {"process_resident_memory_bytes", "gauge"},
      {"process_virtual_memory_bytes", "gauge"},
      {"process_open_fds", "gauge"},
      {"process_max_fds", "gauge"},
      {"process_start_time_seconds", "gauge"},
      {"process_cpu_seconds_total", "counter"},
  };
  return families;
}

class ObservabilityTest : public RunsFixture {
 protected:
  // A scrape after a few requests and runs: an autorun Template run that
  // succeeds and a release flow run waiting for its approval.
  std::string ScrapeAfterTraffic() {
    auto started = Start();
    EXPECT_TRUE(started);
    if (!started) return "";
    for (int i = 0; i < 3; ++i) EXPECT_EQ(daemon_.Get("/healthz").status, 200);
    EXPECT_EQ(daemon_.Get("/api/v1/runs/987654").status, 404);
    EXPECT_EQ(daemon_.Get("/no/such/endpoint").status, 404);
    const int64_t gate = StartedId(StartRun("gate"));
    EXPECT_GT(gate, 0);
    EXPECT_TRUE(WaitForStatus(gate, "approval_wait")) << daemon_.Output();
    EXPECT_TRUE(WaitUntil([&] {
      auto runs = Runs("auto");
      return !runs.empty() && StringField(runs[0], "status") == "success";
    })) << daemon_.Output();
    auto reply = daemon_.Get("/metrics");
    EXPECT_EQ(reply.status, 200);
    return reply.body;
  }

  // Everything the daemon wrote (stdout and stderr), stopped or not.
  std::string Log() { return ReadTextFile(daemon_.log_path()); }
  // What it wrote after the first `offset` bytes.
  std::string LogFrom(size_t offset) {
    const std::string all = Log();
    return offset < all.size() ? all.substr(offset) : "";
  }
};

TEST_F(ObservabilityTest, MetricsCoverTheDaemonAndReadStrictly) {
  const std::string text = ScrapeAfterTraffic();
  ASSERT_FALSE(text.empty()) << daemon_.Output();
  const Exposition e = ParseExposition(text);
  for (const auto& p : e.problems) ADD_FAILURE() << p;
  if (!e.problems.empty()) std::cerr << text;

  for (const auto& [name, type] : PromisedFamilies()) {
    const Family* f = e.Find(name);
    ASSERT_NE(f, nullptr) << name << " is missing:\n" << text;
    EXPECT_EQ(f->type, type) << name;
    EXPECT_FALSE(f->help.empty()) << name;
  }
  for (const auto& [name, f] : e.families) {
    EXPECT_TRUE(name.starts_with("gitopsd_") || name.starts_with("process_")) << name;
    if (f.type == "counter") {
      EXPECT_TRUE(name.ends_with("_total")) << name;
    }
  }

  // The process, as the kernel sees it.
  EXPECT_GT(e.Value("process_resident_memory_bytes").value_or(0), 1 << 20);
  EXPECT_GE(e.Value("process_virtual_memory_bytes").value_or(0), e.Value("process_resident_memory_bytes").value_or(1));
  EXPECT_GT(e.Value("process_open_fds").value_or(0), 3);
  EXPECT_GE(e.Value("process_max_fds").value_or(0), e.Value("process_open_fds").value_or(1));
  EXPECT_GE(e.Value("process_cpu_seconds_total").value_or(-1), 0);
  const double started = e.Value("process_start_time_seconds").value_or(0);
  EXPECT_LE(started, Now() + 1);
  EXPECT_GT(started, Now() - 300) << "the daemon started during this test";

  // HTTP: counted by route template, never by raw path.
  EXPECT_GE(e.Value("gitopsd_http_requests_total", {{"method", "GET"}, {"route", "/healthz"}, {"code", "200"}})
                .value_or(0),
            3);
  EXPECT_GE(e.Value("gitopsd_http_requests_total", {{"method", "GET"}, {"route", "/api/v1/runs/{id}"}, {"code", "404"}})
                .value_or(0),
            1);
  EXPECT_GE(e.Value("gitopsd_http_requests_total", {{"method", "GET"}, {"route", "other"}, {"code", "404"}}).value_or(0),
            1);
  EXPECT_GE(e.Value("gitopsd_http_requests_total",
                    {{"method", "POST"}, {"route", "/api/v1/release-flows/{name}/runs"}, {"code", "201"}})
                .value_or(0),
            1);
  EXPECT_GE(e.Value("gitopsd_http_request_duration_seconds_count", {{"method", "GET"}, {"route", "/healthz"}})
                .value_or(0),
            3);
  for (const Sample& s : e.Find("gitopsd_http_requests_total")->samples) {
    EXPECT_EQ(s.labels.at("route").find("987654"), std::string::npos) << "a raw path as a label";
    EXPECT_EQ(s.labels.at("route").find("no/such"), std::string::npos) << "a raw path as a label";
  }

  // Runs and previews, read from the state.
  EXPECT_GE(e.Value("gitopsd_runs_total", {{"kind", "Template"}, {"flow", "auto"}, {"result", "success"}}).value_or(0),
            1);
  EXPECT_EQ(e.Value("gitopsd_runs_active", {{"kind", "ReleaseFlow"}, {"status", "approval_wait"}}), 1.0);
  EXPECT_EQ(e.Value("gitopsd_runs_active", {{"kind", "Template"}, {"status", "running"}}), 0.0);
  EXPECT_EQ(e.Value("gitopsd_previews", {{"state", "ready"}}), 0.0);
  EXPECT_EQ(e.Value("gitopsd_previews", {{"state", "deploying"}}), 0.0);

  // Sync and write-back of the one repository.
  EXPECT_GE(e.Value("gitopsd_sync_total", {{"repository", "shop"}, {"result", "success"}}).value_or(0), 1);
  EXPECT_EQ(e.Value("gitopsd_writeback_pending", {{"repository", "shop"}}), 0.0);
  EXPECT_GT(e.Value("gitopsd_last_sync_timestamp_seconds", {{"repository", "shop"}}).value_or(0), Now() - 300);
}

TEST_F(ObservabilityTest, CountersOnlyGrowBetweenScrapes) {
  const Exposition first = ParseExposition(ScrapeAfterTraffic());
  ASSERT_TRUE(first.Find("gitopsd_http_requests_total")) << daemon_.Output();
  ASSERT_EQ(daemon_.Get("/healthz").status, 200);
  const Exposition second = ParseExposition(daemon_.Get("/metrics").body);
  for (const auto& [name, f] : first.families) {
    if (f.type != "counter" && f.type != "histogram") continue;
    for (const Sample& s : f.samples) {
      auto later = second.Value(s.name, s.labels);
      ASSERT_TRUE(later.has_value()) << s.name << " disappeared";
      EXPECT_GE(*later, s.value) << s.name;
    }
  }
  const SampleLabels healthz = {{"method", "GET"}, {"route", "/healthz"}, {"code", "200"}};
  EXPECT_EQ(second.Value("gitopsd_http_requests_total", healthz).value_or(0),
            first.Value("gitopsd_http_requests_total", healthz).value_or(0) + 1);
}

TEST_F(ObservabilityTest, PromtoolAcceptsTheExposition) {
  const std::string promtool = Promtool();
  if (promtool.empty()) GTEST_SKIP() << "promtool is not installed (Debian: prometheus); set GITOPSD_PROMTOOL";
  const std::string text = ScrapeAfterTraffic();
  ASSERT_FALSE(text.empty());
  const std::string file = dir_.Sub("scrape.txt");
  ASSERT_TRUE(WriteTextFile(file, text));
  auto checked = RunCommand({"/bin/sh", "-c", "exec \"$0\" check metrics < \"$1\"", promtool, file});
  EXPECT_TRUE(checked.ok()) << checked.output << "\n" << text;
}

// ---- The Grafana dashboard.

json::Value Dashboard() {
  auto parsed = json::Parse(ReadTextFile(std::string(GITOPSD_SOURCE_DIR) + "/packaging/grafana-dashboard.json"));
  EXPECT_TRUE(parsed.has_value()) << "packaging/grafana-dashboard.json is not JSON";
  return parsed ? std::move(*parsed) : json::Value();
}

// Every PromQL expression of the dashboard's panels (rows included).
void CollectExpressions(const json::Value& panels, std::vector<std::string>& out) {
  if (!panels.is_array()) return;
  for (const auto& p : panels.items()) {
    if (const json::Value* nested = p.Find("panels")) CollectExpressions(*nested, out);
    const json::Value* targets = p.Find("targets");
    if (StringField(p, "type") == "row") continue;
    EXPECT_TRUE(targets && targets->is_array() && !targets->items().empty())
        << "panel \"" << StringField(p, "title") << "\" has no query";
    if (!targets) continue;
    for (const auto& t : targets->items()) out.push_back(StringField(t, "expr"));
  }
}

// The metric names an expression reads (histogram samples mapped to their family).
std::set<std::string> MetricsIn(const std::string& expr) {
  std::set<std::string> names;
  static const std::regex kName(R"((gitopsd|process)_[a-zA-Z0-9_]+)");
  for (auto it = std::sregex_iterator(expr.begin(), expr.end(), kName); it != std::sregex_iterator(); ++it) {
    names.insert(it->str());
  }
  return names;
}

TEST_F(ObservabilityTest, TheGrafanaDashboardQueriesOnlyWhatTheDaemonExports) {
  const json::Value dashboard = Dashboard();
  ASSERT_TRUE(dashboard.is_object());
  const json::Value* inputs = dashboard.Find("__inputs");
  ASSERT_TRUE(inputs && inputs->is_array() && !inputs->items().empty()) << "importable: __inputs";
  EXPECT_EQ(StringField(inputs->items()[0], "type"), "datasource");
  EXPECT_EQ(StringField(inputs->items()[0], "pluginId"), "prometheus");
  EXPECT_FALSE(StringField(dashboard, "title").empty());
  EXPECT_FALSE(StringField(dashboard, "uid").empty());
  std::vector<std::string> expressions;
  ASSERT_TRUE(dashboard.Find("panels"));
  CollectExpressions(*dashboard.Find("panels"), expressions);
  ASSERT_GE(expressions.size(), 10u);

  const Exposition e = ParseExposition(ScrapeAfterTraffic());
  ASSERT_TRUE(e.problems.empty()) << e.problems.front();
  std::set<std::string> used;
  for (const std::string& expr : expressions) {
    const std::set<std::string> names = MetricsIn(expr);
    EXPECT_FALSE(names.empty()) << "reads no gitopsd metric: " << expr;
    for (std::string name : names) {
      if (!e.Find(name)) {
        for (const char* suffix : {"_bucket", "_sum", "_count"}) {
          if (name.ends_with(suffix)) {
            const std::string family = name.substr(0, name.size() - std::string(suffix).size());
            if (e.Find(family) && e.Find(family)->type == "histogram") name = family;
          }
        }
      }
      EXPECT_NE(e.Find(name), nullptr) << name << " (in " << expr << ") is not exported";
      used.insert(name);
    }
  }
  // The dashboard shows every area the issue names.
  for (const char* needed : {"gitopsd_last_sync_timestamp_seconds", "gitopsd_sync_errors", "gitopsd_writeback_pushed_total",
                             "gitopsd_runs_total", "gitopsd_runs_active", "gitopsd_previews",
                             "gitopsd_webhook_deliveries_total", "gitopsd_http_requests_total",
                             "gitopsd_http_request_duration_seconds", "process_resident_memory_bytes",
                             "process_open_fds"}) {
    EXPECT_TRUE(used.contains(needed)) << "no panel shows " << needed;
  }

  // With promtool, every expression must also be valid PromQL.
  const std::string promtool = Promtool();
  if (promtool.empty()) return;
  std::string rules = "groups:\n- name: dashboard\n  rules:\n";
  for (size_t i = 0; i < expressions.size(); ++i) {
    std::string expr = std::regex_replace(expressions[i], std::regex(R"(\$__rate_interval)"), "5m");
    expr = std::regex_replace(expr, std::regex(R"(\$instance)"), ".*");
    std::string quoted;
    for (char c : expr) quoted += c == '\'' ? std::string("''") : std::string(1, c);
    rules += "  - record: dashboard:expr" + std::to_string(i) + "\n    expr: '" + quoted + "'\n";
  }
  const std::string file = dir_.Sub("dashboard-rules.yml");
  ASSERT_TRUE(WriteTextFile(file, rules));
  auto checked = RunCommand({promtool, "check", "rules", file});
  EXPECT_TRUE(checked.ok()) << checked.output << "\n" << rules;
}

// ---- Logs.

// A value for GITOPSD_HTTP_READ_TIMEOUT that is no duration: the daemon
// logs it back in a warning, quotes, backslash, control character, a byte
// that is not UTF-8 and a second line included.
const std::string kOddValue = std::string("x\"y\\z\x01 \xff") + "\nsecond line";

TEST_F(ObservabilityTest, UnderTheJournalEveryLineCarriesItsPriorityAndNoTime) {
  ASSERT_TRUE(WriteTextFile(daemon_.log_path(), ""));
  const std::string stream = DeviceAndInode(daemon_.log_path());
  ASSERT_FALSE(stream.empty());
  daemon_.SetEnv("JOURNAL_STREAM", stream);
  daemon_.SetEnv("GITOPSD_HTTP_READ_TIMEOUT", "soon\nor later");
  ASSERT_TRUE(Start());
  ASSERT_EQ(daemon_.Get("/healthz").status, 200);  // a debug line
  daemon_.Stop();

  const std::vector<std::string> lines = Lines(Log());
  ASSERT_FALSE(lines.empty());
  std::map<std::string, int> by_priority;
  static const std::regex kPrefixed(R"(^<[0-7]>.*)");
  static const std::regex kTimestamp(R"(\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d)");
  for (const std::string& line : lines) {
    ASSERT_TRUE(std::regex_match(line, kPrefixed)) << "no priority: \"" << line << "\"\n" << Log();
    EXPECT_FALSE(std::regex_search(line.substr(0, 30), kTimestamp)) << "the journal adds the time: " << line;
    by_priority[line.substr(0, 3)]++;
  }
  EXPECT_GT(by_priority["<6>"], 0) << Log();
  EXPECT_GT(by_priority["<7>"], 0) << "debug lines (log.level debug)\n" << Log();
  EXPECT_GT(by_priority["<4>"], 0) << Log();
  const std::string out = Log();
  EXPECT_NE(out.find("<4>GITOPSD_HTTP_READ_TIMEOUT=soon\n<4>or later: not a duration"), std::string::npos)
      << "each line of a message keeps its priority:\n" << out;
  EXPECT_NE(out.find("<6>stopped\n"), std::string::npos) << out;
}

TEST_F(ObservabilityTest, AJournalStreamThatIsNotStdoutChangesNothing) {
  ASSERT_TRUE(WriteTextFile(dir_.Sub("elsewhere"), ""));
  daemon_.SetEnv("JOURNAL_STREAM", DeviceAndInode(dir_.Sub("elsewhere")));
  ASSERT_TRUE(Start());
  daemon_.Stop();
  ASSERT_FALSE(Log().empty());
  for (const std::string& line : Lines(Log())) {
    EXPECT_TRUE(line.starts_with("[20")) << "text lines with their time: " << line;
  }
}

// Each line an object with the promised fields; returns the objects.
std::vector<json::Value> JsonLines(const std::string& text) {
  std::vector<json::Value> out;
  static const std::regex kTime(R"(^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$)");
  static const std::set<std::string> kLevels = {"trace", "debug", "info", "warn", "error", "critical"};
  for (const std::string& line : Lines(text)) {
    auto v = json::Parse(line);
    if (!v || !v->is_object()) {
      ADD_FAILURE() << "not a JSON object: \"" << line << "\"";
      continue;
    }
    EXPECT_TRUE(std::regex_match(StringField(*v, "time"), kTime)) << line;
    EXPECT_TRUE(kLevels.contains(StringField(*v, "level"))) << line;
    EXPECT_EQ(StringField(*v, "logger"), "gitopsd") << line;
    EXPECT_GT(NumberField(*v, "thread"), 0) << line;
    EXPECT_TRUE(v->Find("message") && v->Find("message")->is_string()) << line;
    out.push_back(std::move(*v));
  }
  return out;
}

TEST_F(ObservabilityTest, JsonLogsAreOneObjectALineWithEveryByteEscaped) {
  daemon_.SetEnv("GITOPSD_HTTP_READ_TIMEOUT", kOddValue);
  ASSERT_TRUE(daemon_.StartWithArgs({"serve", "--repo", repo_.file_url(), "--listen", "127.0.0.1:@PORT@",
                                     "--state-dir", "@STATE@", "--poll-interval", "1h", "--log-format", "json",
                                     "--log-level", "debug"}));
  ASSERT_TRUE(daemon_.WaitReady()) << Log();
  // A webhook token is a secret: the request's debug line must not show it.
  const std::string token = "tok-" + std::to_string(::getpid()) + "-secret";
  EXPECT_NE(daemon_.Post("/hooks/release-flows/" + token + "?WHO=x").status, 0);
  ASSERT_EQ(daemon_.Get("/healthz").status, 200);
  daemon_.Stop();

  const std::string out = Log();
  EXPECT_EQ(out.find(token), std::string::npos) << "a webhook token was logged:\n" << out;
  const std::vector<json::Value> lines = JsonLines(out);
  ASSERT_GT(lines.size(), 3u) << out;
  std::set<std::string> levels, messages;
  for (const auto& l : lines) {
    levels.insert(StringField(l, "level"));
    messages.insert(StringField(l, "message"));
  }
  EXPECT_TRUE(levels.contains("info") && levels.contains("warn") && levels.contains("debug")) << out;
  // The odd value comes back byte for byte, the stray byte as U+FFFD.
  const std::string expected = "GITOPSD_HTTP_READ_TIMEOUT=x\"y\\z\x01 \xEF\xBF\xBD\nsecond line: not a duration";
  bool found = false;
  for (const std::string& m : messages) found = found || m.starts_with(expected);
  EXPECT_TRUE(found) << out;
  bool hook_logged = false;
  for (const std::string& m : messages) hook_logged = hook_logged || m.starts_with("POST /hooks/release-flows/{token} -> ");
  EXPECT_TRUE(hook_logged) << "the request's line shows the route instead:\n" << out;
  EXPECT_TRUE(messages.contains("stopped")) << out;
}

TEST_F(ObservabilityTest, TheConfigurationChoosesTheFormatAndTheFlagWins) {
  const std::string config =
      "{\"stateDir\": \"@STATE@\", \"listen\": \"127.0.0.1:@PORT@\",\n"
      " \"repositories\": [{\"name\": \"shop\", \"url\": \"" + repo_.file_url() + "\", \"pollInterval\": \"1h\"}],\n"
      " \"log\": {\"level\": \"info\", \"format\": \"json\"}}\n";
  ASSERT_TRUE(daemon_.StartWithConfig(config));
  ASSERT_TRUE(daemon_.WaitReady()) << Log();
  daemon_.Stop();
  const std::string first = Log();
  const std::vector<json::Value> lines = JsonLines(first);
  EXPECT_GT(lines.size(), 2u) << first;
  for (const auto& l : lines) EXPECT_NE(StringField(l, "level"), "debug") << "log.level info";

  // Same file, --log-format text and --log-level debug on the command line.
  ASSERT_TRUE(daemon_.StartWithArgs({"serve", "--config", daemon_.config_path(), "--log-format", "text",
                                     "--log-level", "debug"}));
  ASSERT_TRUE(daemon_.WaitReady()) << Log();
  daemon_.Stop();
  const std::string second = LogFrom(first.size());
  ASSERT_FALSE(second.empty());
  bool debug = false;
  for (const std::string& line : Lines(second)) {
    EXPECT_TRUE(line.starts_with("[20")) << "text, as the flag says: " << line;
    debug = debug || line.find("] [debug] ") != std::string::npos;
  }
  EXPECT_TRUE(debug) << second;
}

TEST_F(ObservabilityTest, AFatalErrorAfterLoggingIsUpFollowsTheFormat) {
  // The state folder cannot be made (its parent is a file): the daemon ends
  // with a JSON line saying why.
  ASSERT_TRUE(WriteTextFile(dir_.Sub("not-a-folder"), ""));
  EXPECT_FALSE(daemon_.StartWithArgs({"serve", "--repo", repo_.file_url(), "--listen", "127.0.0.1:@PORT@",
                                      "--state-dir", dir_.Sub("not-a-folder/state"), "--log-format", "json"}));
  EXPECT_EQ(WaitForExit(daemon_.process(), std::chrono::seconds(10)), 1);
  const std::string out = Log();
  const std::vector<json::Value> lines = JsonLines(out);
  ASSERT_FALSE(lines.empty()) << out;
  EXPECT_EQ(StringField(lines.back(), "level"), "critical") << out;
  EXPECT_NE(StringField(lines.back(), "message").find("not-a-folder"), std::string::npos) << out;
}

}  // namespace
}  // namespace gitopsd::test
