// A strict reader of the Prometheus text exposition format 0.0.4, for tests
// that scrape a real daemon: it reads every family and sample and lists
// every departure from the format a scraper would trip on (bad names,
// escapes or numbers, samples before their # TYPE or outside their family,
// duplicate series, histograms whose buckets do not add up).
#pragma once
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace gitopsd::test {

using SampleLabels = std::map<std::string, std::string>;

struct Sample {
  std::string name;  // as written: "x_bucket", "x_count"...
  SampleLabels labels;
  double value = 0;
};

struct Family {
  std::string type;  // counter, gauge, histogram, summary or untyped
  std::string help;
  std::vector<Sample> samples;
};

struct Exposition {
  std::map<std::string, Family> families;
  std::vector<std::string> problems;  // "line N: what is wrong"; empty when the text is good

  // The value of the sample `name` with exactly `labels`, if present.
  std::optional<double> Value(const std::string& name, const SampleLabels& labels = {}) const;
  // The family `name` (a family name, not a sample's) or nullptr.
  const Family* Find(const std::string& name) const;
};

Exposition ParseExposition(const std::string& text);

}  // namespace gitopsd::test
