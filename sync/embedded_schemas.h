// The JSON Schemas of schemas/*.schema.json, compiled into the binary at
// build time so that an installed gitopsd validates with exactly the files
// that editors read through "$schema".
#pragma once
#include <string>
#include <vector>

namespace gitopsd {

struct EmbeddedSchema {
  std::string file_name;  // e.g. "template.schema.json"
  std::string text;       // the file's bytes
};

const std::vector<EmbeddedSchema>& EmbeddedSchemas();

}  // namespace gitopsd
