#include "tests/daemon/exposition.h"

#include <cctype>
#include <cmath>
#include <cstdlib>
#include <set>
#include <sstream>

namespace gitopsd::test {

namespace {

bool IsMetricName(const std::string& s) {
  if (s.empty() || !(std::isalpha(static_cast<unsigned char>(s[0])) || s[0] == '_' || s[0] == ':')) return false;
  for (char c : s) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == ':')) return false;
  }
  return true;
}

bool IsLabelName(const std::string& s) {
  if (s.empty() || !(std::isalpha(static_cast<unsigned char>(s[0])) || s[0] == '_')) return false;
  if (s.starts_with("__")) return false;  // reserved
  for (char c : s) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_')) return false;
  }
  return true;
}

std::optional<double> ParseValue(const std::string& s) {
  if (s == "NaN") return std::nan("");
  if (s == "+Inf") return HUGE_VAL;
  if (s == "-Inf") return -HUGE_VAL;
  if (s.empty()) return std::nullopt;
  char* end = nullptr;
  const double v = std::strtod(s.c_str(), &end);
  if (end != s.c_str() + s.size()) return std::nullopt;
  if (std::isnan(v) || std::isinf(v)) return std::nullopt;  // only the spellings above
  return v;
}

// Reads `{k="v",...}` at text[i]; advances i past it. Error text or "".
std::string ReadLabels(const std::string& text, size_t& i, SampleLabels& labels) {
  ++i;  // '{'
  while (true) {
    if (i < text.size() && text[i] == '}') {
      ++i;
      return "";
    }
    size_t eq = text.find('=', i);
    if (eq == std::string::npos) return "a label without '='";
    const std::string name = text.substr(i, eq - i);
    if (!IsLabelName(name)) return "bad label name \"" + name + "\"";
    i = eq + 1;
    if (i >= text.size() || text[i] != '"') return "label " + name + ": the value is not quoted";
    ++i;
    std::string value;
    while (true) {
      if (i >= text.size()) return "label " + name + ": unterminated value";
      const char c = text[i++];
      if (c == '"') break;
      if (c == '\n') return "label " + name + ": a raw newline in the value";
      if (c == '\\') {
        if (i >= text.size()) return "label " + name + ": a lone backslash";
        const char e = text[i++];
        if (e == '\\') value += '\\';
        else if (e == '"') value += '"';
        else if (e == 'n') value += '\n';
        else return std::string("label ") + name + ": unknown escape \\" + e;
      } else {
        value += c;
      }
    }
    if (!labels.emplace(name, value).second) return "label " + name + " given twice";
    if (i < text.size() && text[i] == ',') {
      ++i;
      continue;
    }
    if (i < text.size() && text[i] == '}') {
      ++i;
      return "";
    }
    return "label " + name + ": expected ',' or '}'";
  }
}

// The family a sample name belongs to, given the family being read.
bool BelongsTo(const std::string& sample, const std::string& family, const std::string& type) {
  if (sample == family) return type != "histogram";
  if (type == "histogram" || type == "summary") {
    for (const char* suffix : {"_bucket", "_sum", "_count"}) {
      if (sample == family + suffix) return type == "histogram" || std::string(suffix) != "_bucket";
    }
  }
  return false;
}

void CheckHistogram(const std::string& name, const Family& f, std::vector<std::string>& problems) {
  struct Series {
    std::vector<std::pair<double, double>> buckets;  // (le, cumulative count)
    std::optional<double> count, sum;
  };
  std::map<SampleLabels, Series> series;
  for (const Sample& s : f.samples) {
    SampleLabels key = s.labels;
    if (s.name == name + "_bucket") {
      auto le = key.find("le");
      if (le == key.end()) {
        problems.push_back(name + "_bucket without le");
        continue;
      }
      auto bound = ParseValue(le->second);
      if (!bound) {
        problems.push_back(name + "_bucket: le \"" + le->second + "\" is not a number");
        continue;
      }
      key.erase(le);
      series[key].buckets.emplace_back(*bound, s.value);
    } else if (s.name == name + "_count") {
      series[key].count = s.value;
    } else if (s.name == name + "_sum") {
      series[key].sum = s.value;
    }
  }
  for (const auto& [labels, se] : series) {
    if (se.buckets.empty() || !std::isinf(se.buckets.back().first)) {
      problems.push_back(name + ": a series without its +Inf bucket last");
      continue;
    }
    for (size_t i = 1; i < se.buckets.size(); ++i) {
      if (se.buckets[i].first <= se.buckets[i - 1].first) problems.push_back(name + ": le not increasing");
      if (se.buckets[i].second < se.buckets[i - 1].second) problems.push_back(name + ": buckets not cumulative");
    }
    if (!se.count || !se.sum) problems.push_back(name + ": a series without _count or _sum");
    else if (*se.count != se.buckets.back().second) problems.push_back(name + ": _count differs from +Inf");
  }
}

}  // namespace

const Family* Exposition::Find(const std::string& name) const {
  auto it = families.find(name);
  return it == families.end() ? nullptr : &it->second;
}

std::optional<double> Exposition::Value(const std::string& name, const SampleLabels& labels) const {
  for (const auto& [family_name, f] : families) {
    for (const Sample& s : f.samples) {
      if (s.name == name && s.labels == labels) return s.value;
    }
  }
  return std::nullopt;
}

Exposition ParseExposition(const std::string& text) {
  Exposition out;
  auto problem = [&](int line, const std::string& what) {
    out.problems.push_back("line " + std::to_string(line) + ": " + what);
  };
  if (!text.empty() && text.back() != '\n') problem(0, "the text does not end with a newline");
  std::string current;              // the family whose samples may follow
  std::set<std::string> closed;     // families already left: seeing them again is an error
  std::set<std::string> series;     // name + labels, to find duplicates
  std::istringstream in(text);
  std::string line;
  int n = 0;
  while (std::getline(in, line)) {
    ++n;
    if (line.empty()) continue;
    if (line.starts_with("# HELP ") || line.starts_with("# TYPE ")) {
      const bool help = line[2] == 'H';
      const std::string rest = line.substr(7);
      const size_t space = rest.find(' ');
      const std::string name = rest.substr(0, space);
      const std::string value = space == std::string::npos ? "" : rest.substr(space + 1);
      if (!IsMetricName(name)) problem(n, "bad metric name \"" + name + "\"");
      if (name != current) {
        if (closed.contains(name)) problem(n, name + " declared again after other families");
        if (!current.empty()) closed.insert(current);
        current = name;
      }
      Family& f = out.families[name];
      if (!f.samples.empty()) problem(n, name + ": # HELP or # TYPE after its samples");
      if (help) {
        if (!f.help.empty()) problem(n, name + ": a second # HELP");
        for (size_t i = 0; i < value.size(); ++i) {
          if (value[i] == '\\' && (i + 1 >= value.size() || (value[i + 1] != '\\' && value[i + 1] != 'n'))) {
            problem(n, name + ": bad escape in # HELP");
          }
          if (value[i] == '\\') ++i;
        }
        f.help = value;
        if (value.empty()) problem(n, name + ": empty # HELP");
      } else {
        if (!f.type.empty()) problem(n, name + ": a second # TYPE");
        static const std::set<std::string> kTypes = {"counter", "gauge", "histogram", "summary", "untyped"};
        if (!kTypes.contains(value)) problem(n, name + ": unknown type \"" + value + "\"");
        f.type = value;
      }
      continue;
    }
    if (line[0] == '#') continue;  // a comment
    size_t i = 0;
    while (i < line.size() && line[i] != '{' && line[i] != ' ') ++i;
    Sample s;
    s.name = line.substr(0, i);
    if (!IsMetricName(s.name)) {
      problem(n, "bad metric name \"" + s.name + "\"");
      continue;
    }
    if (i < line.size() && line[i] == '{') {
      if (std::string e = ReadLabels(line, i, s.labels); !e.empty()) {
        problem(n, s.name + ": " + e);
        continue;
      }
    }
    if (i >= line.size() || line[i] != ' ') {
      problem(n, s.name + ": no space before the value");
      continue;
    }
    std::istringstream fields(line.substr(i + 1));
    std::string value, timestamp, extra;
    fields >> value >> timestamp >> extra;
    auto v = ParseValue(value);
    if (!v) {
      problem(n, s.name + ": bad value \"" + value + "\"");
      continue;
    }
    if (!timestamp.empty() && timestamp.find_first_not_of("-0123456789") != std::string::npos) {
      problem(n, s.name + ": bad timestamp");
    }
    if (!extra.empty()) problem(n, s.name + ": text after the value");
    s.value = *v;
    auto f = out.families.find(current);
    if (f == out.families.end() || !BelongsTo(s.name, current, f->second.type)) {
      problem(n, s.name + ": a sample outside its family's # TYPE block");
      continue;
    }
    if (f->second.type.empty() || f->second.help.empty()) problem(n, current + ": no # HELP or # TYPE");
    if (f->second.type == "counter" && (std::isnan(s.value) || s.value < 0)) {
      problem(n, s.name + ": a counter below zero");
    }
    std::string key = s.name;
    for (const auto& [k, val] : s.labels) key += "\x1f" + k + "=" + val;
    if (!series.insert(key).second) problem(n, s.name + ": the same series twice");
    f->second.samples.push_back(std::move(s));
  }
  for (const auto& [name, f] : out.families) {
    if (f.type == "histogram") CheckHistogram(name, f, out.problems);
    if (f.type.empty()) out.problems.push_back(name + ": # HELP without # TYPE");
  }
  return out;
}

}  // namespace gitopsd::test
