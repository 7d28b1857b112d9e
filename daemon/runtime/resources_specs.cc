// What a resource's stored spec says: the typed views of build services,
// services and jobs (errors name the resource and the field), the redacted
// spec, and the environment secret groups and addons give a workload.
#include <algorithm>
#include <cmath>
#include <set>
#include <utility>

#include "daemon/runtime/addons.h"
#include "daemon/runtime/resources.h"

namespace gitopsd::runtime {
namespace {

using std::chrono::milliseconds;

// ---- reading specs ----

const json::Value* At(const json::Value& v, std::initializer_list<std::string_view> path) {
  const json::Value* cur = &v;
  for (std::string_view key : path) {
    cur = cur->Find(key);
    if (!cur) return nullptr;
  }
  return cur;
}

std::string StringAt(const json::Value& v, std::initializer_list<std::string_view> path) {
  const json::Value* s = At(v, path);
  return s && s->is_string() ? s->as_string() : "";
}

// A number, or a string spelling one (a resolved "${...}").
std::optional<double> NumberOf(const json::Value* v) {
  if (!v) return std::nullopt;
  if (v->is_number()) return v->as_double();
  if (v->is_string()) {
    try {
      size_t used = 0;
      double d = std::stod(v->as_string(), &used);
      if (used == v->as_string().size()) return d;
    } catch (...) {
    }
  }
  return std::nullopt;
}

class SpecReader {
 public:
  SpecReader(const Resource& r) : r_(r) {}

  Result<std::vector<std::string>> Argv(std::initializer_list<std::string_view> path, std::string_view field,
                                        bool required) {
    const json::Value* v = At(r_.spec, path);
    if (!v) {
      if (!required) return std::vector<std::string>{};
      return Fail(Name() + " has no " + std::string(field) +
                  ": give the command as an argv array, e.g. [\"bin/app\", \"serve\"]");
    }
    std::vector<std::string> argv;
    if (v->is_array()) {
      for (const json::Value& item : v->items()) {
        if (!item.is_string()) return Fail(Name() + ": " + std::string(field) + " must be an array of strings");
        argv.push_back(item.as_string());
      }
    }
    if (!v->is_array() || (required && argv.empty())) {
      return Fail(Name() + ": " + std::string(field) + " must be a non-empty array of strings (argv)");
    }
    return argv;
  }

  Result<std::map<std::string, std::string>> StringMap(std::string_view key) {
    std::map<std::string, std::string> out;
    const json::Value* v = r_.spec.Find(key);
    if (!v || v->is_null()) return out;
    if (!v->is_object()) return Fail(Name() + ": " + std::string(key) + " must be an object of strings");
    for (const auto& [k, val] : v->members()) {
      if (val.is_string())
        out[k] = val.as_string();
      else if (val.is_number())
        out[k] = val.number_text();
      else if (val.is_bool())
        out[k] = val.as_bool() ? "true" : "false";
      else
        return Fail(Name() + ": " + std::string(key) + "." + k + " must be a string");
    }
    return out;
  }

  Result<int> Count(std::string_view key, int fallback) {
    const json::Value* v = r_.spec.Find(key);
    if (!v) return fallback;
    auto n = NumberOf(v);
    if (!n || *n < 0 || *n != std::floor(*n))
      return Fail(Name() + ": " + std::string(key) + " must be a whole number >= 0");
    return static_cast<int>(*n);
  }

  Result<milliseconds> Seconds(const json::Value* v, std::string_view field, milliseconds fallback) {
    if (!v) return fallback;
    auto n = NumberOf(v);
    if (!n || *n < 0) return Fail(Name() + ": " + std::string(field) + " must be a number of seconds");
    return milliseconds(static_cast<int64_t>(*n * 1000));
  }

  std::string Name() const { return std::string(ResourceNoun(r_.kind)) + " \"" + r_.name + "\""; }

 private:
  const Resource& r_;
};

Result<WorkloadConfig> ReadWorkload(const Resource& r) {
  SpecReader read(r);
  WorkloadConfig w;
  w.name = r.name;
  w.build_service = StringAt(r.spec, {"deployment", "internal", "id"});
  w.build_id = StringAt(r.spec, {"deployment", "internal", "buildId"});
  w.build_sha = StringAt(r.spec, {"deployment", "internal", "buildSHA"});
  w.branch = StringAt(r.spec, {"deployment", "internal", "branch"});
  if (At(r.spec, {"deployment", "external"})) {
    return Fail(read.Name() +
                ": deployment.external (an image) cannot run on the process runtime; "
                "deploy a build of a build service (deployment.internal)");
  }
  auto command = read.Argv({"deployment", "command"}, "deployment.command", /*required=*/true);
  if (!command) return std::unexpected(command.error());
  w.command = std::move(*command);
  auto env = read.StringMap("runtimeEnvironment");
  if (!env) return std::unexpected(env.error());
  w.runtime_env = std::move(*env);
  return w;
}

bool AppliesTo(const json::Value& group, const Resource& workload) {
  const std::string secret_type = StringAt(group, {"secretType"});
  if (secret_type == "build") return false;
  const json::Value* restricted = At(group, {"restrictions", "restricted"});
  if (!restricted || !restricted->is_bool() || !restricted->as_bool()) return true;
  const std::string type = workload.kind == ResourceKind::kJob ? "job" : "service";
  if (const json::Value* objects = At(group, {"restrictions", "nfObjects"}); objects && objects->is_array()) {
    for (const json::Value& o : objects->items()) {
      std::string id = StringAt(o, {"id"}), t = StringAt(o, {"type"});
      if (id == workload.name && (t.empty() || t == type)) return true;
    }
  }
  const json::Value* tags = At(group, {"restrictions", "tags"});
  const json::Value* own = workload.spec.Find("tags");
  if (tags && tags->is_array() && own && own->is_array()) {
    for (const json::Value& t : tags->items()) {
      for (const json::Value& o : own->items()) {
        if (t.is_string() && o.is_string() && t.as_string() == o.as_string()) return true;
      }
    }
  }
  return false;
}

// The connection variables a group's addonDependencies bring.
Status AddAddonEnv(const Resource& group, Addons& addons, std::map<std::string, std::string>& env) {
  const json::Value* deps = group.spec.Find("addonDependencies");
  if (!deps || !deps->is_array()) return Ok();
  for (const json::Value& dep : deps->items()) {
    const std::string addon_id = StringAt(dep, {"addonId"});
    auto addon = addons.FindAddon(addon_id);
    if (!addon) return std::unexpected(addon.error());
    if (!*addon) {
      return Fail("secret group \"" + group.name + "\" depends on addon \"" + addon_id +
                  "\", which does not exist; declare it in a Template");
    }
    std::map<std::string, std::string> all = (*addon)->env;
    all.insert((*addon)->secret_env.begin(), (*addon)->secret_env.end());
    const json::Value* keys = dep.Find("keys");
    if (!keys || !keys->is_array() || keys->items().empty()) {
      for (const auto& [k, v] : all) env[k] = v;
      continue;
    }
    for (const json::Value& key : keys->items()) {
      const std::string name = StringAt(key, {"keyName"});
      auto it = all.find(name);
      if (it == all.end()) {
        std::string known;
        for (const auto& [k, v] : all) known += (known.empty() ? "" : ", ") + k;
        return Fail("secret group \"" + group.name + "\": addon \"" + addon_id + "\" has no key \"" + name +
                    "\"; it has " + known);
      }
      env[name] = it->second;
      if (const json::Value* aliases = key.Find("aliases"); aliases && aliases->is_array()) {
        for (const json::Value& a : aliases->items()) {
          if (a.is_string()) env[a.as_string()] = it->second;
        }
      }
    }
  }
  return Ok();
}

}  // namespace

json::Value RedactedSpec(const Resource& resource) {
  json::Value spec = resource.spec;
  if (resource.kind != ResourceKind::kSecretGroup) return spec;
  if (json::Value* secrets = spec.Find("secrets"); secrets && secrets->is_object()) {
    for (auto& [section, values] : secrets->members()) {
      if (!values.is_object()) continue;
      for (auto& [key, value] : values.members()) value = json::Value::String("***");
    }
  }
  return spec;
}

Result<BuildServiceConfig> ReadBuildService(const Resource& r) {
  SpecReader read(r);
  BuildServiceConfig b;
  b.name = r.name;
  b.repository = StringAt(r.spec, {"vcsData", "repository"});
  if (b.repository.empty()) {
    return Fail(read.Name() + " names no repository: set vcsData.repository to a configured repository's name");
  }
  b.branch = StringAt(r.spec, {"vcsData", "projectBranch"});
  auto command = read.Argv({"buildSettings", "command"}, "buildSettings.command", /*required=*/true);
  if (!command) return std::unexpected(command.error());
  b.command = std::move(*command);
  auto env = read.StringMap("buildArguments");
  if (!env) return std::unexpected(env.error());
  b.env = std::move(*env);
  auto timeout =
      read.Seconds(At(r.spec, {"buildSettings", "timeoutSeconds"}), "buildSettings.timeoutSeconds", b.timeout);
  if (!timeout) return std::unexpected(timeout.error());
  b.timeout = *timeout;
  return b;
}

// healthChecks[i]: protocol, path, periodSeconds, timeoutSeconds, failureThreshold.
Status ReadHealthCheck(SpecReader& read, const json::Value& check, size_t i, HealthCheck* h) {
  const std::string at = "healthChecks[" + std::to_string(i) + "]";
  const std::string protocol = StringAt(check, {"protocol"});
  if (protocol == "HTTP" || protocol == "HTTP/2") {
    h->kind = HealthCheck::Kind::kHttp;
    h->path = StringAt(check, {"path"});
    if (h->path.empty()) h->path = "/";
  } else if (protocol == "TCP" || protocol.empty()) {
    h->kind = HealthCheck::Kind::kTcp;
  } else {
    return Fail(read.Name() + ": " + at + ".protocol \"" + protocol + "\" is not supported; use HTTP or TCP");
  }
  auto interval = read.Seconds(check.Find("periodSeconds"), at + ".periodSeconds", h->interval);
  if (!interval) return std::unexpected(interval.error());
  auto timeout = read.Seconds(check.Find("timeoutSeconds"), at + ".timeoutSeconds", h->timeout);
  if (!timeout) return std::unexpected(timeout.error());
  h->interval = std::max(*interval, milliseconds(100));
  h->timeout = std::max(*timeout, milliseconds(100));
  if (auto n = NumberOf(check.Find("failureThreshold")); n && *n >= 1) h->failure_threshold = static_cast<int>(*n);
  return Ok();
}

Result<ServiceConfig> ReadService(const Resource& r) {
  auto workload = ReadWorkload(r);
  if (!workload) return std::unexpected(workload.error());
  ServiceConfig s;
  static_cast<WorkloadConfig&>(s) = std::move(*workload);
  const json::Value* checks = r.spec.Find("healthChecks");
  if (!checks || !checks->is_array() || checks->items().empty()) return s;
  SpecReader read(r);
  // The supervised check is the first that is not a startup probe (else the
  // startup probe itself); a startup probe sets the deploy's startup window.
  std::optional<size_t> probe, startup;
  for (size_t i = 0; i < checks->items().size(); ++i) {
    const bool is_startup = StringAt(checks->items()[i], {"type"}) == "startupProbe";
    if (is_startup && !startup) startup = i;
    if (!is_startup && !probe) probe = i;
  }
  const size_t chosen = probe.value_or(*startup);
  if (auto read_probe = ReadHealthCheck(read, checks->items()[chosen], chosen, &s.health); !read_probe) {
    return std::unexpected(read_probe.error());
  }
  if (startup) {
    HealthCheck h;
    const json::Value& check = checks->items()[*startup];
    if (auto read_startup = ReadHealthCheck(read, check, *startup, &h); !read_startup) {
      return std::unexpected(read_startup.error());
    }
    const std::string at = "healthChecks[" + std::to_string(*startup) + "].initialDelaySeconds";
    auto delay = read.Seconds(check.Find("initialDelaySeconds"), at, milliseconds(0));
    if (!delay) return std::unexpected(delay.error());
    s.health.startup_window = *delay + h.interval * h.failure_threshold;
  }
  return s;
}

Result<JobConfig> ReadJob(const Resource& r) {
  auto workload = ReadWorkload(r);
  if (!workload) return std::unexpected(workload.error());
  JobConfig j;
  static_cast<WorkloadConfig&>(j) = std::move(*workload);
  SpecReader read(r);
  auto backoff = read.Count("backoffLimit", 0);
  if (!backoff) return std::unexpected(backoff.error());
  j.backoff_limit = *backoff;
  auto deadline = read.Seconds(r.spec.Find("activeDeadlineSeconds"), "activeDeadlineSeconds", milliseconds(0));
  if (!deadline) return std::unexpected(deadline.error());
  j.active_deadline = *deadline;
  return j;
}

Result<std::map<std::string, std::string>> ResourceRegistry::RuntimeEnvironment(
    const Resource& workload, Addons& addons, const std::map<std::string, std::string>& overrides) {
  auto groups = List(ResourceKind::kSecretGroup);
  if (!groups) return std::unexpected(groups.error());
  std::vector<const Resource*> applying;
  for (const Resource& g : *groups) {
    if (AppliesTo(g.spec, workload)) applying.push_back(&g);
  }
  // Higher priority wins, so it is applied last; equal priorities by name.
  std::stable_sort(applying.begin(), applying.end(), [](const Resource* a, const Resource* b) {
    return NumberOf(a->spec.Find("priority")).value_or(0) < NumberOf(b->spec.Find("priority")).value_or(0);
  });
  std::map<std::string, std::string> env;
  for (const Resource* g : applying) {
    if (auto s = AddAddonEnv(*g, addons, env); !s) return std::unexpected(s.error());
    if (const json::Value* vars = At(g->spec, {"secrets", "variables"}); vars && vars->is_object()) {
      for (const auto& [k, v] : vars->members()) {
        if (v.is_string()) env[k] = v.as_string();
      }
    }
  }
  SpecReader read(workload);
  auto own = read.StringMap("runtimeEnvironment");
  if (!own) return std::unexpected(own.error());
  for (const auto& [k, v] : *own) env[k] = v;
  for (const auto& [k, v] : overrides) env[k] = v;
  return env;
}

}  // namespace gitopsd::runtime
