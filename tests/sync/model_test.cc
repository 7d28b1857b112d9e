#include "sync/model.h"

#include <gtest/gtest.h>

#include <chrono>
#include <fstream>
#include <sstream>

namespace gitopsd::model {
namespace {

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

const Loader& TheLoader() {
  static const Loader* loader = [] {
    auto l = Loader::Create();
    if (!l) {
      ADD_FAILURE() << l.error().message;
      std::abort();
    }
    return new Loader(std::move(*l));
  }();
  return *loader;
}

std::string Dump(const Diagnostics& ds) {
  std::string out;
  for (const Diagnostic& d : ds) out += d.ToString() + "\n";
  return out;
}

LoadResult LoadText(std::string_view folder_relative, std::string_view text) {
  return TheLoader().Load(std::string(".gitops/") + std::string(folder_relative), folder_relative, text);
}

// Loads text that must fail with exactly one diagnostic of `rule`.
Diagnostic OneError(std::string_view folder_relative, std::string_view text, std::string_view rule) {
  LoadResult r = LoadText(folder_relative, text);
  EXPECT_FALSE(r.object.has_value());
  EXPECT_EQ(r.diagnostics.size(), 1u) << Dump(r.diagnostics);
  if (r.diagnostics.empty()) return {};
  EXPECT_EQ(r.diagnostics[0].rule, rule) << Dump(r.diagnostics);
  return r.diagnostics[0];
}

constexpr std::string_view kTrigger =
    "\"triggers\": [{\"ref\": \"app\", \"repository\": \"shop\", \"branchRestrictions\": [\"main\"]}],\n";

// An object around the given steps (one per line, from line 5 on). Release
// flows and previews get a Git trigger "app"; templates have no triggers.
std::string Object3(std::string_view steps, std::string_view extra, bool trigger) {
  return std::string("{\"apiVersion\": \"v1.2\",\n") + "\"arguments\": {\"TAG\": \"latest\"},\n" +
         std::string(trigger ? kTrigger : "\"description\": \"no triggers\",\n") +
         std::string(extra) + "\"spec\": {\"kind\": \"Workflow\", \"spec\": {\"type\": \"sequential\", \"steps\": [\n" +
         std::string(steps) + "\n]}}}\n";
}
std::string Flow(std::string_view steps, std::string_view extra = "") { return Object3(steps, extra, true); }
std::string Tpl(std::string_view steps, std::string_view extra = "") { return Object3(steps, extra, false); }

constexpr std::string_view kJobRun = R"({"kind": "JobRun", "ref": "%s", "spec": {"jobId": "%s"}})";

std::string JobRun(std::string_view ref, std::string_view job) {
  std::string s(kJobRun);
  s.replace(s.find("%s"), 2, ref);
  s.replace(s.find("%s"), 2, job);
  return s;
}

// --- the bundled example repository ---------------------------------------

struct Example {
  const char* folder_relative;
  Kind kind;
  const char* name;
  const char* schema;
};

TEST(ModelExamples, LoadCleanlyAndPointAtTheirSchema) {
  for (const Example& e : {Example{"templates/shop.json", Kind::kTemplate, "shop", "template"},
                           Example{"release-flows/production.json", Kind::kReleaseFlow, "production", "release-flow"},
                           Example{"previews/pull-requests.json", Kind::kPreviewTemplate, "pull-requests",
                                   "preview-template"}}) {
    std::string rel = std::string(".gitops/") + e.folder_relative;
    std::string text = ReadFile(std::string(GITOPSD_SOURCE_DIR "/examples/shop/") + rel);
    ASSERT_FALSE(text.empty()) << rel;
    LoadResult r = TheLoader().Load(rel, e.folder_relative, text);
    ASSERT_TRUE(r.object.has_value()) << Dump(r.diagnostics);
    EXPECT_TRUE(r.diagnostics.empty());
    EXPECT_EQ(r.object->kind, e.kind);
    EXPECT_EQ(r.object->name, e.name);
    EXPECT_EQ(r.object->path, rel);
    const json::Value* schema = r.object->body.Find("$schema");
    ASSERT_NE(schema, nullptr) << rel;
    EXPECT_EQ(schema->as_string(), std::string("../../../../schemas/") + e.schema + ".schema.json");
    // The relative path must lead to a real schema file.
    EXPECT_FALSE(ReadFile(std::string(GITOPSD_SOURCE_DIR "/schemas/") + e.schema + ".schema.json").empty());
  }
}

// --- kinds, names -----------------------------------------------------------

TEST(ModelKinds, NamesAndSpellings) {
  EXPECT_STREQ(KindName(Kind::kReleaseFlow), "ReleaseFlow");
  EXPECT_EQ(ParseKind("Template"), Kind::kTemplate);
  EXPECT_EQ(ParseKind("templates"), Kind::kTemplate);
  EXPECT_EQ(ParseKind("release-flow"), Kind::kReleaseFlow);
  EXPECT_EQ(ParseKind("release-flows"), Kind::kReleaseFlow);
  EXPECT_EQ(ParseKind("ReleaseFlow"), Kind::kReleaseFlow);
  EXPECT_EQ(ParseKind("preview"), Kind::kPreviewTemplate);
  EXPECT_EQ(ParseKind("previews"), Kind::kPreviewTemplate);
  EXPECT_EQ(ParseKind("PreviewTemplate"), Kind::kPreviewTemplate);
  EXPECT_EQ(ParseKind("flows"), std::nullopt);
  EXPECT_EQ(ParseKind(""), std::nullopt);
}

TEST(ModelKinds, FromTheFolderOrFromKind) {
  std::string flow = Flow(JobRun("m", "migrate"));
  LoadResult r = LoadText("release-flows/deploy-api.json", flow);
  ASSERT_TRUE(r.object) << Dump(r.diagnostics);
  EXPECT_EQ(r.object->kind, Kind::kReleaseFlow);
  EXPECT_EQ(r.object->name, "deploy-api");  // the file stem

  // "kind" lets a file live anywhere in the folder.
  std::string with_kind = flow;
  with_kind.insert(1, "\"kind\": \"ReleaseFlow\", \"name\": \"Deploy API\", ");
  r = LoadText("misc/x.json", with_kind);
  ASSERT_TRUE(r.object) << Dump(r.diagnostics);
  EXPECT_EQ(r.object->kind, Kind::kReleaseFlow);
  EXPECT_EQ(r.object->name, "Deploy API");

  Diagnostic d = OneError("misc/x.json", flow, "model:kind");
  EXPECT_EQ(d.ToString(),
            ".gitops/misc/x.json:1:1: error: cannot tell the object's kind: add \"kind\" or put the file under "
            "templates/, release-flows/ or previews/ [model:kind]");
  d = OneError("x.json", flow, "model:kind");

  d = OneError("templates/x-y.json", with_kind, "model:kind");
  EXPECT_EQ(d.line, 1);
  EXPECT_EQ(d.col, 10);
  EXPECT_NE(d.message.find("under templates/"), std::string::npos) << d.message;

  std::string bad_kind = flow;
  bad_kind.insert(1, "\"kind\": \"Flow\", ");
  d = OneError("release-flows/abc.json", bad_kind, "model:kind");
  EXPECT_NE(d.message.find("unknown kind \"Flow\""), std::string::npos) << d.message;
}

TEST(ModelNames, TheStemMustBeAValidName) {
  Diagnostic d = OneError("release-flows/a_b.json", Flow(JobRun("m", "migrate")), "model:name");
  EXPECT_NE(d.message.find("\"a_b\""), std::string::npos) << d.message;
}

// --- parse errors and limits ------------------------------------------------

TEST(ModelParse, SyntaxErrorHasLineAndColumn) {
  Diagnostic d = OneError("templates/tpl.json", "{\n  \"apiVersion\": \"v1.2\"\n  \"spec\": {}\n}\n", "json-syntax");
  EXPECT_EQ(d.line, 3);
  EXPECT_EQ(d.path, ".gitops/templates/tpl.json");
}

TEST(ModelParse, SizeLimit) {
  std::string big = Flow(JobRun("m", "migrate"), "\"description\": \"" + std::string(300, 'x') + "\",\n");
  LoadResult r = TheLoader().Load("p", "release-flows/big.json", big, LoadOptions{.max_bytes = 200});
  ASSERT_EQ(r.diagnostics.size(), 1u) << Dump(r.diagnostics);
  EXPECT_EQ(r.diagnostics[0].rule, "json-size");
  EXPECT_FALSE(r.object);
}

TEST(ModelParse, DepthLimit) {
  std::string deep = std::string(20, '[') + std::string(20, ']');
  std::string text = Flow(JobRun("m", "migrate"), "\"gitops\": {\"x\": " + deep + "},\n");
  LoadResult r = TheLoader().Load("p", "release-flows/deep.json", text, LoadOptions{.max_depth = 16});
  ASSERT_EQ(r.diagnostics.size(), 1u) << Dump(r.diagnostics);
  EXPECT_EQ(r.diagnostics[0].rule, "json-depth");
  EXPECT_TRUE(TheLoader().Load("p", "release-flows/deep.json", text).object) << "fits the default depth";
}

// --- schema violations ------------------------------------------------------

TEST(ModelSchema, MissingRequiredField) {
  Diagnostic d = OneError("templates/tpl.json",
                          "{\"spec\": {\"kind\": \"Workflow\", \"spec\": {\"type\": \"parallel\", \"steps\": []}}}",
                          "schema:required");
  EXPECT_NE(d.message.find("apiVersion"), std::string::npos) << d.message;
}

TEST(ModelSchema, UnknownKeyIsNamedAtItsPosition) {
  std::string flow = Flow(JobRun("m", "migrate"), "  \"optoins\": {},\n");
  Diagnostic d = OneError("release-flows/flow.json", flow, "schema:additionalProperties");
  EXPECT_NE(d.message.find("optoins"), std::string::npos) << d.message;
  EXPECT_EQ(d.line, 4);
  EXPECT_EQ(d.col, 3);

  // Inside a node's spec too.
  d = OneError("release-flows/flow.json", Flow(R"({"kind": "JobRun", "spec": {"jobId": "m", "jobid": "x"}})"),
               "schema:additionalProperties");
  EXPECT_NE(d.message.find("jobid"), std::string::npos) << d.message;
  EXPECT_EQ(d.line, 5);
  EXPECT_EQ(d.col, 43);
}

TEST(ModelSchema, TypedFieldsAcceptExpressions) {
  std::string step = R"({"kind": "Release", "spec": {"type": "build", "origin": {"id": "b"},
  "target": {"id": "web", "type": "service"}}, "condition": "running", "timeoutDuration": "${args.TAG}"})";
  EXPECT_TRUE(LoadText("release-flows/flow.json", Flow(step)).object);
  std::string bad = step;
  bad.replace(bad.find("\"${args.TAG}\""), 13, "\"soon\"");
  OneError("release-flows/flow.json", Flow(bad), "schema:pattern");
  bad = step;
  bad.replace(bad.find("\"${args.TAG}\""), 13, "5");
  OneError("release-flows/flow.json", Flow(bad), "schema:minimum");
}

TEST(ModelSchema, ArgumentOverridesAreRefused) {
  Diagnostic d = OneError("release-flows/flow.json",
                          Flow(JobRun("m", "migrate"), "\"argumentOverrides\": {\"DB_PASSWORD\": \"hunter2\"},\n"),
                          "model:argument-overrides");
  EXPECT_EQ(d.line, 4);
  EXPECT_EQ(d.col, 1);
  EXPECT_NE(d.message.find("secrets never live in Git"), std::string::npos);
}

// --- node kinds ---------------------------------------------------------------

TEST(ModelNodes, UnsupportedPlatformKind) {
  Diagnostic d = OneError("templates/tpl.json", Tpl(R"({"kind": "LoadBalancer", "spec": {"name": "lb"}})"),
                          "model:unsupported");
  EXPECT_EQ(d.message, "node kind \"LoadBalancer\" is not supported by gitopsd");
  EXPECT_EQ(d.line, 5);
  EXPECT_EQ(d.col, 10);
  OneError("release-flows/flow.json", Flow(R"({"kind": "RunTemplate", "spec": {}})"), "model:unsupported");
  d = OneError("templates/tpl.json", Tpl(R"({"kind": "CronJob", "spec": {"name": "nightly"}})"), "model:unsupported");
  EXPECT_NE(d.message.find("use a ManualJob"), std::string::npos) << d.message;
}

TEST(ModelNodes, KindsPerFlavour) {
  std::string svc = R"({"kind": "DeploymentService", "spec": {"name": "web"}})";
  EXPECT_TRUE(LoadText("templates/tpl.json", Tpl(svc)).object);
  Diagnostic d = OneError("release-flows/flow.json", Flow(svc), "model:node-kind");
  EXPECT_NE(d.message.find("not allowed in a ReleaseFlow"), std::string::npos) << d.message;
  EXPECT_NE(d.message.find("declare them in a template"), std::string::npos) << d.message;

  std::string release = R"({"kind": "Release", "spec": {"type": "deployment", "origin": {"id": "a", "type": "service"},
    "target": {"id": "b", "type": "service"}}})";
  d = OneError("templates/tpl.json", Tpl(release), "model:node-kind");
  EXPECT_NE(d.message.find("not allowed in a Template"), std::string::npos) << d.message;

  std::string source = R"({"kind": "BuildSource", "spec": {"id": "builder"}})";
  EXPECT_TRUE(LoadText("previews/prv.json", Flow(source)).object);
  OneError("templates/tpl.json", Tpl(source), "model:node-kind");

  d = OneError("templates/tpl.json", Tpl(R"({"kind": "Deployment", "spec": {}})"), "model:node-kind");
  EXPECT_NE(d.message.find("unknown node kind \"Deployment\""), std::string::npos) << d.message;
}

TEST(ModelNodes, MessageKinds) {
  std::string raw = R"({"kind": "Message", "spec": {"kind": "RAW_WEBHOOK", "spec": {"webhookUrl": "http://x", "message": "hi"}}})";
  EXPECT_TRUE(LoadText("release-flows/flow.json", Flow(raw)).object);
  std::string slack = R"({"kind": "Message", "spec": {"kind": "SLACK", "spec": {"webhookUrl": "https://hooks.slack.com/services/T/B/x", "message": "hi"}}})";
  EXPECT_TRUE(LoadText("release-flows/flow.json", Flow(slack)).object);
  std::string vcs = R"({"kind": "Message", "spec": {"kind": "VCS", "spec": {"vcsService": "github", "repoUrl": "https://github.com/acme/shop", "pullRequestId": "${refs.app.pullRequestId}", "message": "hi"}}})";
  EXPECT_TRUE(LoadText("release-flows/flow.json", Flow(vcs)).object) << Dump(LoadText("release-flows/flow.json", Flow(vcs)).diagnostics);
  // A VCS message needs its pull request; a webhook message its URL.
  LoadResult r = LoadText("release-flows/flow.json",
                          Flow(R"({"kind": "Message", "spec": {"kind": "VCS", "spec": {"repoUrl": "shop", "message": "hi"}}})"));
  EXPECT_FALSE(r.object);
  EXPECT_NE(Dump(r.diagnostics).find("pullRequestId"), std::string::npos) << Dump(r.diagnostics);
  r = LoadText("release-flows/flow.json", Flow(R"({"kind": "Message", "spec": {"kind": "SLACK", "spec": {"message": "hi"}}})"));
  EXPECT_FALSE(r.object);
  EXPECT_NE(Dump(r.diagnostics).find("webhookUrl"), std::string::npos) << Dump(r.diagnostics);
  r = LoadText("release-flows/flow.json", Flow(R"({"kind": "Message", "spec": {"kind": "EMAIL", "spec": {"message": "hi"}}})"));
  EXPECT_FALSE(r.object);
  EXPECT_NE(Dump(r.diagnostics).find("EMAIL"), std::string::npos) << Dump(r.diagnostics);
}

TEST(ModelNodes, RootMustBeAWorkflow) {
  OneError("release-flows/flow.json", "{\"apiVersion\": \"v1\", \"spec\": {\"kind\": \"JobRun\", \"spec\": {\"jobId\": \"m\"}}}",
           "schema:const");
}

TEST(ModelNodes, DuplicateRef) {
  Diagnostic d = OneError("release-flows/flow.json", Flow(JobRun("m", "a") + ",\n" + JobRun("m", "b")),
                          "model:duplicate-ref");
  EXPECT_EQ(d.line, 6);
  EXPECT_NE(d.message.find("duplicate ref \"m\""), std::string::npos);
  d = OneError("release-flows/flow.json", Flow(JobRun("app", "a")), "model:duplicate-ref");
  EXPECT_NE(d.message.find("trigger"), std::string::npos);
}

// --- ${...} references ----------------------------------------------------------

TEST(ModelRefs, EarlierStepsAndTriggersResolve) {
  std::string steps = JobRun("first", "${refs.app.branch}") + ",\n" +
                      R"({"kind": "Workflow", "ref": "par", "spec": {"type": "parallel", "steps": [)" +
                      JobRun("a", "${refs.first.id}") + ", " +
                      R"({"kind": "Workflow", "spec": {"type": "sequential", "steps": [)" + JobRun("b1", "x") + ", " +
                      JobRun("b2", "${refs.b1.id}-${refs.first.id}") + "]}}]}},\n" +
                      JobRun("last", "${refs.a.id}${refs.b2.id}${refs.par.status}");
  LoadResult r = LoadText("release-flows/flow.json", Flow(steps));
  EXPECT_TRUE(r.object) << Dump(r.diagnostics);
}

TEST(ModelRefs, LaterNodeParallelSiblingAndUnknownRefAreErrors) {
  Diagnostic d = OneError("release-flows/flow.json",
                          Flow(JobRun("a", "job-${refs.b.id}") + ",\n" + JobRun("b", "x")), "model:ref");
  EXPECT_EQ(d.line, 5);
  EXPECT_EQ(d.col, 55);  // the "${" inside the string
  EXPECT_NE(d.message.find("does not run before this one"), std::string::npos) << d.message;

  std::string par = R"({"kind": "Workflow", "spec": {"type": "parallel", "steps": [)" + JobRun("a", "x") + ", " +
                    JobRun("b", "${refs.a.id}") + "]}}";
  d = OneError("release-flows/flow.json", Flow(par), "model:ref");
  EXPECT_NE(d.message.find("parallel sibling"), std::string::npos) << d.message;

  d = OneError("release-flows/flow.json", Flow(JobRun("a", "${refs.nope.id}")), "model:ref");
  EXPECT_NE(d.message.find("no trigger or node has the ref \"nope\""), std::string::npos) << d.message;

  d = OneError("release-flows/flow.json", Flow(JobRun("a", "${refs.app.brnach}")), "model:ref");
  EXPECT_NE(d.message.find("branch, sha"), std::string::npos) << d.message;

  // A workflow's own steps cannot read the workflow's ref.
  std::string self = R"({"kind": "Workflow", "ref": "w", "spec": {"type": "sequential", "steps": [)" +
                     JobRun("a", "${refs.w.id}") + "]}}";
  OneError("release-flows/flow.json", Flow(self), "model:ref");
}

TEST(ModelRefs, TeardownSeesEveryRefOfSpec) {
  std::string teardown = R"("teardownSpec": {"spec": {"kind": "Workflow", "spec": {"type": "sequential", "steps": [)" +
                         JobRun("t", "${refs.m.id}-${args.name}-${args.previewId}") + "]}}},\n";
  std::string text = Flow(JobRun("m", "migrate"), teardown);
  text.replace(text.find("\"repository\""), 0, "\"type\": \"git\", ");
  LoadResult r = LoadText("previews/prv.json", text);
  EXPECT_TRUE(r.object) << Dump(r.diagnostics);
}

TEST(ModelArgs, MustBeDeclared) {
  EXPECT_TRUE(LoadText("release-flows/flow.json", Flow(JobRun("a", "${args.TAG}"))).object);
  Diagnostic d = OneError("release-flows/flow.json", Flow(JobRun("a", "${args.TAGS}")), "model:arg");
  EXPECT_NE(d.message.find("add \"TAGS\" to \"arguments\""), std::string::npos) << d.message;
  // Preview built-ins exist only in previews.
  OneError("release-flows/flow.json", Flow(JobRun("a", "${args.previewId}")), "model:arg");
  // Args inside function calls are checked too.
  OneError("release-flows/flow.json", Flow(JobRun("a", "${fn.slug(args.NOPE)}")), "model:arg");
}

TEST(ModelFunctions, UnknownFunctionArityAndSyntax) {
  Diagnostic d = OneError("release-flows/flow.json", Flow(JobRun("a", "x-${fn.slugify(args.TAG)}")), "model:expression");
  EXPECT_NE(d.message.find("unknown function fn.slugify"), std::string::npos) << d.message;
  EXPECT_EQ(d.col, 53);
  d = OneError("release-flows/flow.json", Flow(JobRun("a", "${fn.eq(args.TAG)}")), "model:expression");
  EXPECT_NE(d.message.find("fn.eq takes 2 arguments, not 1"), std::string::npos) << d.message;
  OneError("release-flows/flow.json", Flow(JobRun("a", "${fn.eq(args.TAG, 'x'}")), "model:expression");
  OneError("release-flows/flow.json", Flow(JobRun("a", "${args.TAG")), "model:expression");
  d = OneError("release-flows/flow.json", Flow(JobRun("a", "${secrets.DB}")), "model:expression");
  EXPECT_NE(d.message.find("not supported"), std::string::npos);
  // Escaped: a literal "${...}", not an expression.
  EXPECT_TRUE(LoadText("release-flows/flow.json", Flow(JobRun("a", "\\\\${HOME}"))).object);
}

TEST(ModelFunctions, PositionFallsBackToTheStringWhenEscapesPrecedeIt) {
  Diagnostic d = OneError("release-flows/flow.json", Flow(JobRun("a", "\\u0041${fn.nope()}")), "model:expression");
  EXPECT_EQ(d.col, 50);  // the opening quote of the string
}

// --- configuration ------------------------------------------------------------

constexpr std::string_view kGoodConfig = R"({
  "$schema": "../schemas/config.schema.json",
  "stateDir": "/var/lib/gitopsd",
  "listen": "127.0.0.1:7780",
  "apiTokensFile": "/etc/gitopsd/tokens.json",
  "repositories": [
    { "name": "shop", "url": "https://git.example.com/acme/shop.git", "branch": "main",
      "pollInterval": "60s",
      "auth": { "username": "bot", "passwordFile": "/etc/gitopsd/pw", "sshKeyFile": "/k", "knownHostsFile": "/kh" },
      "sync": { "path": ".gitops", "writeBack": true, "prune": true, "conflictPolicy": "git-wins",
                "author": { "name": "gitopsd", "email": "gitopsd@localhost" } },
      "webhook": { "type": "github", "secretFile": "/etc/gitopsd/hook" } }
  ],
  "runtime": { "kind": "process", "portRange": [20000, 29999] },
  "log": { "level": "info" }
}
)";

TEST(ModelConfig, GoodConfigIsAccepted) {
  json::Value out;
  Diagnostics ds = TheLoader().ValidateConfig("gitopsd.json", kGoodConfig, &out);
  EXPECT_TRUE(ds.empty()) << Dump(ds);
  ASSERT_TRUE(out.is_object());
  EXPECT_EQ(out.Find("listen")->as_string(), "127.0.0.1:7780");
}

TEST(ModelConfig, UnknownKeyIsNamed) {
  std::string text(kGoodConfig);
  text.replace(text.find("\"prune\""), 7, "\"purne\"");
  json::Value out;
  Diagnostics ds = TheLoader().ValidateConfig("gitopsd.json", text, &out);
  ASSERT_EQ(ds.size(), 1u) << Dump(ds);
  EXPECT_EQ(ds[0].rule, "schema:additionalProperties");
  EXPECT_NE(ds[0].message.find("purne"), std::string::npos);
  EXPECT_EQ(ds[0].line, 10);
  EXPECT_TRUE(out.is_null()) << "nothing is stored on failure";
}

TEST(ModelConfig, BadDurationAndSemanticChecks) {
  std::string text(kGoodConfig);
  text.replace(text.find("\"60s\""), 5, "\"1 minute\"");
  Diagnostics ds = TheLoader().ValidateConfig("gitopsd.json", text, nullptr);
  ASSERT_EQ(ds.size(), 1u) << Dump(ds);
  EXPECT_EQ(ds[0].rule, "schema:pattern");
  EXPECT_EQ(ds[0].line, 8);

  text = kGoodConfig;
  text.replace(text.find("[20000, 29999]"), 14, "[29999, 20000]");
  ds = TheLoader().ValidateConfig("gitopsd.json", text, nullptr);
  ASSERT_EQ(ds.size(), 1u) << Dump(ds);
  EXPECT_EQ(ds[0].rule, "model:config");

  ds = TheLoader().ValidateConfig("gitopsd.json", R"({"listen": "localhost"})", nullptr);
  ASSERT_EQ(ds.size(), 1u) << Dump(ds);
  EXPECT_EQ(ds[0].rule, "schema:pattern");
}

// --- speed ----------------------------------------------------------------------

TEST(ModelSpeed, TenThousandSmallObjects) {
  std::string steps = JobRun("backup", "${refs.app.branch}") + ",\n" + JobRun("migrate", "job-${args.TAG}") +
                      ",\n" + R"({"kind": "Release", "ref": "deploy", "spec": {"type": "build",
    "origin": {"id": "builder", "branch": "${refs.app.branch}", "build": "${refs.migrate.id}"},
    "target": {"id": "web", "type": "service"}}, "condition": "running", "timeoutDuration": 900},)" +
                      "\n" + R"({"kind": "Message", "spec": {"kind": "RAW_WEBHOOK", "spec": {"webhookUrl": "http://x",
    "message": "${fn.if(fn.eq(refs.app.branch, 'main'), 'prod', 'other')} ${refs.deploy.id}"}}})";
  std::string text = Flow(steps, "\"description\": \"" + std::string(180, 'd') + "\",\n");
  ASSERT_TRUE(LoadText("release-flows/flow.json", text).object);
  constexpr int kCount = 10000;
  auto start = std::chrono::steady_clock::now();
  size_t ok = 0;
  for (int i = 0; i < kCount; ++i) {
    ok += TheLoader().Load("p", "release-flows/f" + std::to_string(i) + "x.json", text).object.has_value();
  }
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_EQ(ok, static_cast<size_t>(kCount));
  std::printf("[ figures  ] loaded %d objects of %zu bytes in %.3f s (%.1f us each, %.1f MB/s)\n", kCount, text.size(),
              seconds, seconds * 1e6 / kCount, kCount * text.size() / seconds / 1e6);
#ifdef NDEBUG
  EXPECT_LT(seconds, 1.0);
#endif
}

}  // namespace
}  // namespace gitopsd::model
