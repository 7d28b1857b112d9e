// What the run engine reads from a node's JSON: its children (a Workflow's
// steps, by path) and its settings (retries, backoff, timeout).
#include <algorithm>
#include <cmath>

#include "daemon/runner/engine_internal.h"

namespace gitopsd::runner::detail {

// ---- the node tree -----------------------------------------------------

std::string StringField(const json::Value& node, std::string_view key) {
  const json::Value* v = node.is_object() ? node.Find(key) : nullptr;
  return v && v->is_string() ? v->as_string() : "";
}

bool IsParallel(const json::Value& node) {
  const json::Value* spec = node.Find("spec");
  return spec && spec->is_object() && StringField(*spec, "type") == "parallel";
}

std::string ChildPath(const std::string& path, size_t i) { return path + "." + std::to_string(i); }
std::string ChildWhere(const std::string& where, size_t i) {
  return where + ".spec.steps[" + std::to_string(i) + "]";
}

void CollectNodes(const json::Value& node, const std::string& path, std::vector<NodeRecord>& out) {
  NodeRecord r;
  r.path = path;
  r.kind = NodeKind(node);
  r.ref = NodeRef(node);
  out.push_back(std::move(r));
  if (const json::Value* steps = WorkflowSteps(node)) {
    for (size_t i = 0; i < steps->items().size(); ++i) CollectNodes(steps->items()[i], ChildPath(path, i), out);
  }
}

// ---- node settings -----------------------------------------------------

milliseconds Seconds(double s) { return milliseconds(static_cast<int64_t>(std::llround(s * 1000))); }

std::string SecondsText(double s) {
  return s == std::floor(s) ? std::to_string(static_cast<int64_t>(s)) + "s" : json::Value::Number(s).number_text() + "s";
}

namespace {

Result<double> PositiveNumber(const json::Value& v, std::string_view field, double min) {
  auto n = ToNumber(v);
  if (!n || *n < min || !std::isfinite(*n)) {
    return Fail(std::string(field) + ": \"" + ToText(v) + "\" is not a number of at least " +
                json::Value::Number(min).number_text());
  }
  return *n;
}

}  // namespace

Result<NodePolicy> ReadPolicy(const json::Value& node, const EngineOptions& options) {
  NodePolicy p;
  p.max_attempts = std::max(1, options.default_max_attempts);
  p.retry_delay = options.retry_delay;
  if (const json::Value* settings = node.Find("settings"); settings && settings->is_object()) {
    if (const json::Value* m = settings->Find("maxAttempts")) {
      auto n = PositiveNumber(*m, "settings.maxAttempts", 1);
      if (!n) return std::unexpected(n.error());
      p.max_attempts = static_cast<int>(std::min(*n, 100.0));
    }
    const json::Value* backoff = settings->Find("backoff");
    if (const json::Value* d = backoff && backoff->is_object() ? backoff->Find("delay") : nullptr) {
      auto n = PositiveNumber(*d, "settings.backoff.delay", 0);
      if (!n) return std::unexpected(n.error());
      p.retry_delay = Seconds(*n);
    }
  }
  if (const json::Value* r = node.Find("retries")) {
    auto n = PositiveNumber(*r, "retries", 0);
    if (!n) return std::unexpected(n.error());
    p.max_attempts = static_cast<int>(std::min(*n, 99.0)) + 1;
  }
  const json::Value* timeout = node.Find("timeoutDuration");
  if (timeout == nullptr) {  // Condition and Action nodes carry it in spec.spec.data
    const json::Value* spec = node.Find("spec");
    const json::Value* inner = spec && spec->is_object() ? spec->Find("spec") : nullptr;
    const json::Value* data = inner && inner->is_object() ? inner->Find("data") : nullptr;
    timeout = data && data->is_object() ? data->Find("timeoutDuration") : nullptr;
  }
  if (timeout) {
    auto n = PositiveNumber(*timeout, "timeoutDuration", 0.001);
    if (!n) return std::unexpected(n.error());
    p.timeout_seconds = *n;
  }
  return p;
}

int RecordedApprovals(const json::Value& data, std::string_view key, int fallback) {
  const json::Value* v = data.is_object() ? data.Find(key) : nullptr;
  return v ? static_cast<int>(ToNumber(*v).value_or(fallback)) : fallback;
}

}  // namespace gitopsd::runner::detail
