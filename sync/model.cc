#include "sync/model.h"

#include <algorithm>
#include <array>
#include <utility>
#include <vector>

#include "sync/embedded_schemas.h"
#include "sync/expressions.h"
#include "sync/schedule.h"
#include "sync/schema.h"

namespace gitopsd::model {
namespace {

constexpr std::string_view kWorkflow = "Workflow";

// Node kinds gitopsd runs, per kind of object (the grammar's §1.4 table,
// cut to what the process runtime supports).
constexpr std::array<std::string_view, 9> kReleaseFlowKinds = {
    "Workflow", "Release", "Build", "JobRun", "AddonBackup", "Action", "Condition", "Message", "Approval"};
constexpr std::array<std::string_view, 14> kTemplateKinds = {
    "Workflow", "Addon",  "BuildService", "DeploymentService", "ManualJob", "Job",     "SecretGroup",
    "Build",    "JobRun", "AddonBackup",  "Action",            "Condition", "Message", "Approval"};
constexpr std::array<std::string_view, 15> kPreviewKinds = {
    "Workflow", "Addon",       "BuildService", "DeploymentService", "ManualJob", "Job",     "SecretGroup", "Build",
    "BuildSource", "JobRun", "AddonBackup",  "Action",            "Condition", "Message", "Approval"};
constexpr std::array<std::string_view, 7> kTeardownKinds = {
    "Workflow", "JobRun", "AddonBackup", "Action", "Condition", "Message", "Approval"};
constexpr std::array<std::string_view, 6> kResourceKinds = {
    "Addon", "BuildService", "DeploymentService", "ManualJob", "Job", "SecretGroup"};
// Kinds of the hosted platform's grammar that gitopsd does not run. Naming
// them gives a clearer error than "unknown kind".
constexpr std::array<std::string_view, 31> kPlatformKinds = {
    "LoopWorkflow", "LoopData",        "Project",     "BYOCIntegration", "BYOCCluster",   "BYOCRegistry",
    "CustomPlan",   "CustomDockerCredentials", "EgressIp", "LoadBalancer", "ResourceTag", "SecretInheritance",
    "SSHIdentity",  "Subdomain",       "SubdomainPath", "WorkloadIdentity", "CombinedService", "CronJob",
    "ExternalAddon", "Volume",         "Pipeline",    "ReleaseStage",    "LLMModelDeployment", "AddonImport",
    "OpenTofu",     "OpenTofuDestroy", "RolloutStrategy", "Template",    "WorkflowTemplate", "PreviewBlueprint",
    "RunTemplate"};
// What to use instead, for platform kinds with a local equivalent.
constexpr std::pair<std::string_view, std::string_view> kPlatformHints[] = {
    {"CronJob", "use a ManualJob and run it from a release flow"},
    {"CombinedService", "use a BuildService and a DeploymentService"},
    {"AddonImport", "restore a backup with an Action of kind AddonBackup"},
    {"LoopWorkflow", "write the steps out in a Workflow"},
    {"Project", "gitopsd has no projects: put the resources directly in the workflow"},
};

// What a Git trigger exposes as ${refs.<trigger>.<field>}.
constexpr std::array<std::string_view, 5> kTriggerFields = {"branch", "sha", "pullRequestId", "repoUrl",
                                                            "repository"};

template <size_t N>
bool Contains(const std::array<std::string_view, N>& set, std::string_view s) {
  return std::find(set.begin(), set.end(), s) != set.end();
}

template <size_t N>
std::string JoinKinds(const std::array<std::string_view, N>& set) {
  std::string out;
  for (std::string_view k : set) {
    if (!out.empty()) out += ", ";
    out += k;
  }
  return out;
}

const char* SchemaFile(Kind kind) {
  switch (kind) {
    case Kind::kTemplate: return "template.schema.json";
    case Kind::kReleaseFlow: return "release-flow.schema.json";
    case Kind::kPreviewTemplate: return "preview-template.schema.json";
  }
  return "";
}

// A problem found while loading, located by byte offset until the end, when
// all of them are turned into line:col diagnostics at once.
struct Finding {
  uint32_t offset = 0;
  std::string message;
  std::string rule;
};

// Collects findings. A semantic check that explains a construct better than
// the schema can "claims" its JSON pointer; schema violations at or below a
// claimed pointer are then dropped, so one mistake gives one message.
class Findings {
 public:
  void Add(uint32_t offset, std::string message, std::string rule) {
    items_.push_back(Finding{offset, std::move(message), std::move(rule)});
  }
  void Claim(std::string pointer) { claimed_.push_back(std::move(pointer)); }
  bool IsClaimed(std::string_view pointer) const {
    for (const std::string& c : claimed_) {
      if (pointer.starts_with(c) && (pointer.size() == c.size() || pointer[c.size()] == '/')) return true;
    }
    return false;
  }
  bool empty() const { return items_.empty(); }

  Diagnostics ToDiagnostics(std::string_view path, std::string_view text) {
    std::stable_sort(items_.begin(), items_.end(),
                     [](const Finding& a, const Finding& b) { return a.offset < b.offset; });
    Diagnostics out;
    for (size_t i = 0; i < items_.size(); ++i) {
      const Finding& f = items_[i];
      if (i > 0 && f.offset == items_[i - 1].offset && f.message == items_[i - 1].message) continue;
      json::LineCol lc = json::LocateOffset(text, f.offset);
      out.push_back(Diagnostic{std::string(path), lc.line, lc.col, f.message, f.rule});
    }
    return out;
  }

 private:
  std::vector<Finding> items_;
  std::vector<std::string> claimed_;
};

std::string Quoted(std::string_view s) { return "\"" + std::string(s) + "\""; }

std::string Child(const std::string& pointer, size_t index) { return pointer + "/" + std::to_string(index); }

void AddParseError(Findings& findings, const json::ParseError& e) {
  findings.Add(static_cast<uint32_t>(e.offset), e.message, e.rule);
}

// Adds the schema's violations, except those a semantic check claimed.
Status AddSchemaViolations(Findings& findings, const schema::Validator& validator, std::string_view uri,
                           const json::Value& body) {
  auto violations = validator.Validate(uri, body);
  if (!violations) return std::unexpected(violations.error());
  for (const schema::Violation& v : *violations) {
    if (findings.IsClaimed(v.instance_path)) continue;
    findings.Add(v.offset, v.message, "schema:" + v.keyword);
  }
  return Ok();
}

// The grammar's name rule: 3-100 characters, letters and digits in groups
// joined by single dashes or spaces.
bool IsValidName(std::string_view name) {
  if (name.size() < 3 || name.size() > 100) return false;
  bool need_alnum = true;
  for (char c : name) {
    bool alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
    bool sep = c == '-' || c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
    if (alnum) {
      need_alnum = false;
    } else if (sep && !need_alnum) {
      need_alnum = true;
    } else {
      return false;
    }
  }
  return !need_alnum;
}

std::optional<Kind> KindOfFolder(std::string_view folder_relative) {
  size_t slash = folder_relative.find('/');
  if (slash == std::string_view::npos) return std::nullopt;
  std::string_view folder = folder_relative.substr(0, slash);
  for (Kind k : {Kind::kTemplate, Kind::kReleaseFlow, Kind::kPreviewTemplate}) {
    if (folder == KindFolder(k)) return k;
  }
  return std::nullopt;
}

std::string FileStem(std::string_view folder_relative) {
  size_t slash = folder_relative.rfind('/');
  std::string_view base = slash == std::string_view::npos ? folder_relative : folder_relative.substr(slash + 1);
  if (base.ends_with(".json")) base.remove_suffix(5);
  return std::string(base);
}

// The checks a schema cannot express, over one parsed object. Tolerates
// any shape: what the schema already rejects is skipped, not re-reported.
class SemanticChecker {
 public:
  SemanticChecker(Kind kind, std::string_view text, Findings& findings)
      : kind_(kind), text_(text), findings_(findings) {}

  void Run(const json::Value& body) {
    if (!body.is_object()) return;
    CheckArgumentOverrides(body);
    CollectArguments(body);
    CollectTriggers(body);
    const json::Value* spec = body.Find("spec");
    const json::Value* teardown = body.Find("teardownSpec");
    const json::Value* teardown_root = teardown && teardown->is_object() ? teardown->Find("spec") : nullptr;
    if (spec) CollectRefs(*spec, /*check_duplicates=*/true);
    if (teardown_root) CollectRefs(*teardown_root, /*check_duplicates=*/true);

    std::vector<std::string_view> visible;
    if (spec) WalkNode(*spec, "/spec", visible, /*teardown=*/false);
    if (teardown_root) {
      // A teardown runs after a successful setup run: it sees every ref of spec.
      visible.clear();
      if (spec) AppendSubtreeRefs(*spec, visible);
      WalkNode(*teardown_root, "/teardownSpec/spec", visible, /*teardown=*/true);
    }
    if (const json::Value* options = body.Find("options"); options && options->is_object()) {
      std::vector<std::string_view> none;
      if (const json::Value* name_format = options->Find("nameFormat")) CheckStrings(*name_format, none);
      if (const json::Value* schedule = options->Find("schedule"); schedule && schedule->is_object()) {
        std::vector<ScheduleProblem> problems;
        (void)ActiveHours::Parse(*schedule, &problems);
        for (const ScheduleProblem& p : problems) findings_.Add(p.offset, "options." + p.message, "model:schedule");
      }
    }
  }

 private:
  void CheckArgumentOverrides(const json::Value& body) {
    const json::Value* overrides = body.Find("argumentOverrides");
    if (!overrides) return;
    findings_.Add(overrides->key_offset(),
                  "\"argumentOverrides\" is not allowed in a file: secrets never live in Git. Set overrides "
                  "through the gitopsd API and keep only defaults in \"arguments\"",
                  "model:argument-overrides");
    findings_.Claim("/argumentOverrides");
  }

  void CollectArguments(const json::Value& body) {
    if (const json::Value* args = body.Find("arguments"); args && args->is_object()) {
      for (const json::Member& m : args->members()) arguments_.push_back(m.first);
    }
    if (kind_ == Kind::kPreviewTemplate) {
      arguments_.push_back("name");
      arguments_.push_back("previewId");
    }
  }

  void CollectTriggers(const json::Value& body) {
    const json::Value* triggers = body.Find("triggers");
    if (!triggers || !triggers->is_array()) return;
    for (const json::Value& t : triggers->items()) {
      const json::Value* ref = t.is_object() ? t.Find("ref") : nullptr;
      if (!ref || !ref->is_string()) continue;
      if (std::find(triggers_.begin(), triggers_.end(), ref->as_string()) != triggers_.end()) {
        findings_.Add(ref->offset(), "duplicate trigger ref " + Quoted(ref->as_string()), "model:duplicate-ref");
        continue;
      }
      triggers_.push_back(ref->as_string());
    }
  }

  static const json::Value* Steps(const json::Value& node) {
    const json::Value* kind = node.Find("kind");
    if (!kind || !kind->is_string() || kind->as_string() != kWorkflow) return nullptr;
    const json::Value* spec = node.Find("spec");
    const json::Value* steps = spec && spec->is_object() ? spec->Find("steps") : nullptr;
    return steps && steps->is_array() ? steps : nullptr;
  }

  // Records every node ref of a subtree; reports refs used twice.
  void CollectRefs(const json::Value& node, bool check_duplicates) {
    if (!node.is_object()) return;
    if (const json::Value* ref = node.Find("ref"); ref && ref->is_string()) {
      const std::string& name = ref->as_string();
      bool node_dup = std::any_of(node_refs_.begin(), node_refs_.end(),
                                  [&](const auto& r) { return r.first == name; });
      bool trigger_dup = std::find(triggers_.begin(), triggers_.end(), name) != triggers_.end();
      if (check_duplicates && (node_dup || trigger_dup)) {
        findings_.Add(ref->offset(),
                      "duplicate ref " + Quoted(name) + ": " +
                          (trigger_dup ? "a trigger already has it" : "another node already has it") +
                          "; refs must be unique within an object",
                      "model:duplicate-ref");
      } else {
        node_refs_.emplace_back(name, ref->offset());
      }
    }
    if (const json::Value* steps = Steps(node)) {
      for (const json::Value& step : steps->items()) CollectRefs(step, check_duplicates);
    }
  }

  static void AppendSubtreeRefs(const json::Value& node, std::vector<std::string_view>& out) {
    if (!node.is_object()) return;
    if (const json::Value* ref = node.Find("ref"); ref && ref->is_string()) out.push_back(ref->as_string());
    if (const json::Value* steps = Steps(node)) {
      for (const json::Value& step : steps->items()) AppendSubtreeRefs(step, out);
    }
  }

  // `visible` holds the node refs that have run before `node` starts.
  void WalkNode(const json::Value& node, const std::string& pointer, std::vector<std::string_view>& visible,
                bool teardown) {
    if (!node.is_object()) return;
    if (!CheckNodeKind(node, pointer, teardown)) return;
    const json::Value* steps = Steps(node);
    for (const json::Member& m : node.members()) {
      if (steps && m.first == "spec") {
        for (const json::Member& sm : m.second.members()) {
          if (sm.first != "steps") CheckStrings(sm.second, visible);
        }
      } else {
        CheckStrings(m.second, visible);
      }
    }
    if (!steps) return;
    const json::Value* type = node.Find("spec")->Find("type");
    bool sequential = !(type && type->is_string() && type->as_string() == "parallel");
    size_t mark = visible.size();
    std::string steps_pointer = pointer + "/spec/steps";
    for (size_t i = 0; i < steps->items().size(); ++i) {
      const json::Value& step = steps->items()[i];
      size_t before = visible.size();
      WalkNode(step, Child(steps_pointer, i), visible, teardown);
      visible.resize(before);
      // In a sequential workflow each step starts after the previous one
      // finished, so its outputs (and its descendants') are readable.
      if (sequential) AppendSubtreeRefs(step, visible);
    }
    visible.resize(mark);
  }

  // Returns false when the node is not one gitopsd can run here; its
  // contents are then not checked any further.
  bool CheckNodeKind(const json::Value& node, const std::string& pointer, bool teardown) {
    const json::Value* kind_value = node.Find("kind");
    if (!kind_value || !kind_value->is_string()) return true;  // the schema reports it
    const std::string& kind = kind_value->as_string();
    std::string problem;
    std::string rule = "model:node-kind";
    if (teardown ? Contains(kTeardownKinds, kind) : IsAllowed(kind)) {
      if (kind == "Message") return CheckMessage(node, pointer);
      return true;
    }
    if (Contains(kPlatformKinds, kind)) {
      problem = "node kind " + Quoted(kind) + " is not supported by gitopsd";
      for (const auto& [platform_kind, hint] : kPlatformHints) {
        if (kind == platform_kind) problem += ": " + std::string(hint);
      }
      rule = "model:unsupported";
    } else if (teardown && (IsAllowed(kind) || Contains(kTeardownKinds, kind))) {
      problem = "node kind " + Quoted(kind) + " is not allowed in a teardownSpec; allowed: " +
                JoinKinds(kTeardownKinds);
    } else if (IsKnown(kind)) {
      problem = "node kind " + Quoted(kind) + " is not allowed in a " + KindName(kind_) + "; allowed: " +
                AllowedList();
      if (kind_ == Kind::kReleaseFlow && Contains(kResourceKinds, kind)) {
        problem += " (a release flow acts on existing resources: declare them in a template)";
      } else if (kind == "Release") {
        problem += " (Release nodes belong in release flows)";
      } else if (kind == "BuildSource") {
        problem += " (BuildSource builds a preview's commit: use Build here)";
      }
    } else {
      problem = "unknown node kind " + Quoted(kind) + "; allowed in a " + std::string(KindName(kind_)) + ": " +
                AllowedList();
    }
    findings_.Add(kind_value->offset(), problem, rule);
    findings_.Claim(pointer);
    return false;
  }

  bool CheckMessage(const json::Value& node, const std::string& pointer) {
    const json::Value* spec = node.Find("spec");
    const json::Value* kind = spec && spec->is_object() ? spec->Find("kind") : nullptr;
    if (!kind || !kind->is_string()) return true;
    const std::string& k = kind->as_string();
    if (k == "RAW_WEBHOOK" || k == "SLACK" || k == "VCS") return true;
    findings_.Add(kind->offset(), "unknown Message kind " + Quoted(k) + "; use RAW_WEBHOOK, SLACK or VCS",
                  "model:unsupported");
    findings_.Claim(pointer + "/spec");
    return false;
  }

  bool IsAllowed(std::string_view kind) const {
    switch (kind_) {
      case Kind::kTemplate: return Contains(kTemplateKinds, kind);
      case Kind::kReleaseFlow: return Contains(kReleaseFlowKinds, kind);
      case Kind::kPreviewTemplate: return Contains(kPreviewKinds, kind);
    }
    return false;
  }
  static bool IsKnown(std::string_view kind) { return Contains(kPreviewKinds, kind) || kind == "Release"; }
  std::string AllowedList() const {
    switch (kind_) {
      case Kind::kTemplate: return JoinKinds(kTemplateKinds);
      case Kind::kReleaseFlow: return JoinKinds(kReleaseFlowKinds);
      case Kind::kPreviewTemplate: return JoinKinds(kPreviewKinds);
    }
    return "";
  }

  // Checks the ${...} expressions of every string in a value.
  void CheckStrings(const json::Value& v, const std::vector<std::string_view>& visible) {
    switch (v.type()) {
      case json::Type::kString: CheckString(v, visible); break;
      case json::Type::kArray:
        for (const json::Value& item : v.items()) CheckStrings(item, visible);
        break;
      case json::Type::kObject:
        for (const json::Member& m : v.members()) CheckStrings(m.second, visible);
        break;
      default: break;
    }
  }

  // Source offset of position `pos` of a string value: exact while no JSON
  // escape precedes it, else the string's opening quote.
  uint32_t SourceOffset(const json::Value& v, size_t pos) const {
    size_t start = v.offset() + 1;
    if (start + pos > text_.size()) return v.offset();
    if (text_.substr(start, pos).find('\\') != std::string_view::npos) return v.offset();
    return static_cast<uint32_t>(start + pos);
  }

  void CheckString(const json::Value& v, const std::vector<std::string_view>& visible) {
    const std::string& s = v.as_string();
    if (s.find("${") == std::string::npos) return;
    for (const expr::Span& span : expr::FindExpressions(s)) {
      if (!span.terminated) {
        findings_.Add(SourceOffset(v, span.begin), "unterminated ${ (missing })", "model:expression");
        return;
      }
      auto e = expr::ParseExpression(span.inner, span.begin + 2);
      if (!e) {
        findings_.Add(SourceOffset(v, span.begin), "in " + std::string(s.substr(span.begin, span.end - span.begin)) +
                                                      ": " + e.error().message,
                      "model:expression");
        continue;
      }
      uint32_t at = SourceOffset(v, span.begin);
      expr::ForEachPath(*e, [&](const expr::Expr& path) { CheckPath(path, at, visible); });
    }
  }

  void CheckPath(const expr::Expr& path, uint32_t at, const std::vector<std::string_view>& visible) {
    const std::string& name = path.path[1];
    if (path.is_args()) {
      if (std::find(arguments_.begin(), arguments_.end(), name) == arguments_.end()) {
        findings_.Add(at,
                      "${args." + name + "} is not declared: add " + Quoted(name) + " to \"arguments\"" +
                          (kind_ == Kind::kPreviewTemplate ? " (built in: name, previewId)" : ""),
                      "model:arg");
      }
      return;
    }
    std::string text = "${refs." + name;
    if (std::find(triggers_.begin(), triggers_.end(), name) != triggers_.end()) {
      if (path.path.size() < 3 || !Contains(kTriggerFields, path.path[2])) {
        findings_.Add(at,
                      text + (path.path.size() < 3 ? "" : "." + path.path[2]) + "}: trigger " + Quoted(name) +
                          " has the fields branch, sha, pullRequestId, repoUrl and repository",
                      "model:ref");
      }
      return;
    }
    if (std::find(visible.begin(), visible.end(), name) != visible.end()) return;
    bool exists = std::any_of(node_refs_.begin(), node_refs_.end(), [&](const auto& r) { return r.first == name; });
    if (!exists) {
      findings_.Add(at, text + "...}: no trigger or node has the ref " + Quoted(name), "model:ref");
    } else {
      findings_.Add(at,
                    text + "...}: node " + Quoted(name) +
                        " does not run before this one (it is a later step, a parallel sibling, or contains this "
                        "node), so its outputs are not available here",
                    "model:ref");
    }
  }

  Kind kind_;
  std::string_view text_;
  Findings& findings_;
  std::vector<std::string> arguments_;
  std::vector<std::string> triggers_;
  std::vector<std::pair<std::string, uint32_t>> node_refs_;
};

}  // namespace

const char* KindName(Kind kind) {
  switch (kind) {
    case Kind::kTemplate: return "Template";
    case Kind::kReleaseFlow: return "ReleaseFlow";
    case Kind::kPreviewTemplate: return "PreviewTemplate";
  }
  return "";
}

const char* KindFolder(Kind kind) {
  switch (kind) {
    case Kind::kTemplate: return "templates";
    case Kind::kReleaseFlow: return "release-flows";
    case Kind::kPreviewTemplate: return "previews";
  }
  return "";
}

std::optional<Kind> ParseKind(std::string_view text) {
  static constexpr std::pair<std::string_view, Kind> kSpellings[] = {
      {"Template", Kind::kTemplate},
      {"template", Kind::kTemplate},
      {"templates", Kind::kTemplate},
      {"ReleaseFlow", Kind::kReleaseFlow},
      {"releaseflow", Kind::kReleaseFlow},
      {"release-flow", Kind::kReleaseFlow},
      {"release-flows", Kind::kReleaseFlow},
      {"PreviewTemplate", Kind::kPreviewTemplate},
      {"previewtemplate", Kind::kPreviewTemplate},
      {"preview", Kind::kPreviewTemplate},
      {"previews", Kind::kPreviewTemplate},
  };
  for (const auto& [spelling, kind] : kSpellings) {
    if (text == spelling) return kind;
  }
  return std::nullopt;
}

Loader::Loader(std::unique_ptr<schema::Validator> validator, LoadOptions options)
    : validator_(std::move(validator)), options_(options) {}
Loader::Loader(Loader&&) noexcept = default;
Loader& Loader::operator=(Loader&&) noexcept = default;
Loader::~Loader() = default;

Result<Loader> Loader::Create(LoadOptions options) {
  auto validator = std::make_unique<schema::Validator>();
  for (const EmbeddedSchema& s : EmbeddedSchemas()) {
    auto doc = json::Parse(s.text);
    if (!doc) {
      json::LineCol lc = json::LocateOffset(s.text, doc.error().offset);
      return Fail("embedded schema " + s.file_name + ":" + std::to_string(lc.line) + ":" + std::to_string(lc.col) +
                  ": " + doc.error().message);
    }
    if (auto st = validator->AddSchema(s.file_name, *doc); !st) {
      return Fail("embedded schema " + s.file_name + ": " + st.error().message);
    }
  }
  for (Kind k : {Kind::kTemplate, Kind::kReleaseFlow, Kind::kPreviewTemplate}) {
    if (!validator->HasSchema(SchemaFile(k))) return Fail(std::string("embedded schema missing: ") + SchemaFile(k));
  }
  if (!validator->HasSchema("config.schema.json")) return Fail("embedded schema missing: config.schema.json");
  return Loader(std::move(validator), options);
}

LoadResult Loader::Load(std::string_view path, std::string_view folder_relative, std::string_view text) const {
  return Load(path, folder_relative, text, options_);
}

LoadResult Loader::Load(std::string_view path, std::string_view folder_relative, std::string_view text,
                        const LoadOptions& options) const {
  LoadResult result;
  Findings findings;
  auto parsed = json::Parse(text, json::ParseOptions{options.max_bytes, options.max_depth});
  if (!parsed) {
    AddParseError(findings, parsed.error());
    result.diagnostics = findings.ToDiagnostics(path, text);
    return result;
  }
  json::Value& body = *parsed;

  // The kind: "kind" wins, else the folder.
  std::optional<Kind> folder_kind = KindOfFolder(folder_relative);
  std::optional<Kind> kind = folder_kind;
  const json::Value* kind_value = body.is_object() ? body.Find("kind") : nullptr;
  if (kind_value && kind_value->is_string()) {
    std::optional<Kind> declared;
    for (Kind k : {Kind::kTemplate, Kind::kReleaseFlow, Kind::kPreviewTemplate}) {
      if (kind_value->as_string() == KindName(k)) declared = k;
    }
    if (!declared) {
      findings.Add(kind_value->offset(),
                   "unknown kind " + Quoted(kind_value->as_string()) + ": expected Template, ReleaseFlow or PreviewTemplate",
                   "model:kind");
      findings.Claim("/kind");
    } else if (folder_kind && *declared != *folder_kind) {
      findings.Add(kind_value->offset(),
                   "\"kind\" is " + Quoted(KindName(*declared)) + " but the file is under " + KindFolder(*folder_kind) +
                       "/ (" + KindName(*folder_kind) + "): move it to " + KindFolder(*declared) + "/ or fix \"kind\"",
                   "model:kind");
      kind = declared;
    } else {
      kind = declared;
    }
  }
  if (!kind) {
    if (findings.empty()) {
      findings.Add(0,
                   "cannot tell the object's kind: add \"kind\" or put the file under templates/, release-flows/ or "
                   "previews/",
                   "model:kind");
    }
    result.diagnostics = findings.ToDiagnostics(path, text);
    return result;
  }

  // The name: "name", else the file stem.
  std::string name;
  if (const json::Value* n = body.is_object() ? body.Find("name") : nullptr; n && n->is_string()) {
    name = n->as_string();
  } else {
    name = FileStem(folder_relative);
    if (!IsValidName(name)) {
      findings.Add(0,
                   "the file name gives the object the name " + Quoted(name) +
                       ", which is not a valid name (3 to 100 letters or digits, in groups joined by single dashes "
                       "or spaces): rename the file or add \"name\"",
                   "model:name");
    }
  }

  SemanticChecker(*kind, text, findings).Run(body);
  if (auto st = AddSchemaViolations(findings, *validator_, SchemaFile(*kind), body); !st) {
    findings.Add(0, "internal error: " + st.error().message, "schema:internal");
  }

  if (!findings.empty()) {
    result.diagnostics = findings.ToDiagnostics(path, text);
    return result;
  }
  result.object = Object{*kind, std::move(name), std::string(path), std::move(body)};
  return result;
}

Diagnostics Loader::ValidateConfig(std::string_view path, std::string_view text, json::Value* out) const {
  Findings findings;
  auto parsed = json::Parse(text);
  if (!parsed) {
    AddParseError(findings, parsed.error());
    return findings.ToDiagnostics(path, text);
  }
  const json::Value& body = *parsed;
  if (auto st = AddSchemaViolations(findings, *validator_, "config.schema.json", body); !st) {
    findings.Add(0, "internal error: " + st.error().message, "schema:internal");
  }
  if (body.is_object()) {
    if (const json::Value* repos = body.Find("repositories"); repos && repos->is_array()) {
      std::vector<std::string_view> names;
      for (const json::Value& r : repos->items()) {
        const json::Value* n = r.is_object() ? r.Find("name") : nullptr;
        if (!n || !n->is_string()) continue;
        if (std::find(names.begin(), names.end(), n->as_string()) != names.end()) {
          findings.Add(n->offset(), "two repositories are named " + Quoted(n->as_string()) + "; names must be unique",
                       "model:config");
        }
        names.push_back(n->as_string());
      }
    }
    const json::Value* runtime = body.Find("runtime");
    const json::Value* range = runtime && runtime->is_object() ? runtime->Find("portRange") : nullptr;
    if (range && range->is_array() && range->items().size() == 2 && range->items()[0].is_number() &&
        range->items()[1].is_number() && range->items()[0].as_double() > range->items()[1].as_double()) {
      findings.Add(range->offset(), "portRange is [lowest, highest]: the first port is above the second",
                   "model:config");
    }
  }
  Diagnostics diagnostics = findings.ToDiagnostics(path, text);
  if (diagnostics.empty() && out) *out = std::move(*parsed);
  return diagnostics;
}

}  // namespace gitopsd::model
