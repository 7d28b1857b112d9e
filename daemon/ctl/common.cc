#include "daemon/ctl/common.h"

#include <time.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <utility>

#include "daemon/ctl/settings.h"

namespace gitopsd::ctl {

int Complain(const std::string& message, int code) {
  std::fprintf(stderr, "gitopsctl: %s\n", message.c_str());
  return code;
}

std::string Env(const char* name) {
  const char* v = std::getenv(name);
  return v ? v : "";
}

std::string Trimmed(std::string s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.pop_back();
  size_t i = 0;
  while (i < s.size() && std::isspace(static_cast<unsigned char>(s[i]))) ++i;
  return s.substr(i);
}

std::optional<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return std::nullopt;
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

// The client for the global flags, or the exit code after complaining.
std::optional<Client> Connect(const Globals& g, int* code) {
  Flags flags{g.server, g.token, g.token_file, g.ca_file, g.insecure};
  auto settings = ResolveSettings(flags, Sources{[](const char* name) { return Env(name); }});
  if (!settings) {
    *code = Complain(settings.error().message, kExitUsage);
    return std::nullopt;
  }
  auto client = Client::Create(ClientOptions{settings->server, settings->token,
                                             settings->ca_file, settings->insecure,
                                             settings->origin});
  if (!client) {
    *code = Complain(client.error().message, kExitUsage);
    return std::nullopt;
  }
  return std::move(*client);
}

// Sends and reports transport failures (exit 3) and error statuses (exit
// 1); nullopt then (with *code set).
std::optional<Reply> Call(const Client& client, const std::string& method, const std::string& path,
                          int* code, const std::string& body,
                          const std::map<std::string, std::string>& headers) {
  auto reply = client.Send(method, path, body, headers);
  if (!reply) {
    *code = Complain(reply.error().message, kExitUnreachable);
    return std::nullopt;
  }
  if (!reply->ok()) {
    *code = Complain(Client::ErrorMessage(*reply));
    return std::nullopt;
  }
  return std::move(*reply);
}

std::optional<json::Value> ParseReply(const Reply& reply, int* code) {
  auto doc = json::Parse(reply.body, json::ParseOptions{64 << 20, 256});
  if (!doc) {
    *code = Complain("the server's answer is not JSON: " + reply.body.substr(0, 200));
    return std::nullopt;
  }
  return std::move(*doc);
}

std::optional<json::Value> ParseOrPrintJson(const Globals& g, const Reply& reply, int* code) {
  if (g.json) {
    std::printf("%s", reply.body.c_str());
    *code = kExitOk;
    return std::nullopt;
  }
  return ParseReply(reply, code);
}

// A member as text: strings as they are, numbers as spelled, null as "-".
std::string Text(const json::Value& v, std::string_view key) {
  const json::Value* f = v.Find(key);
  if (!f || f->is_null()) return "-";
  if (f->is_string()) return f->as_string();
  if (f->is_number()) return f->number_text();
  if (f->is_bool()) return f->as_bool() ? "true" : "false";
  if (f->is_array()) return std::to_string(f->items().size());
  return json::SerializeCompact(*f);
}

size_t Count(const json::Value& v, std::string_view key) {
  const json::Value* f = v.Find(key);
  return f && f->is_array() ? f->items().size() : 0;
}

std::string Short(const std::string& commit) {
  return commit == "-" ? commit : commit.substr(0, 7);
}

// Columns padded to their widest cell; the first row is the header.
void PrintTable(const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> width;
  for (const auto& row : rows) {
    if (width.size() < row.size()) width.resize(row.size(), 0);
    for (size_t i = 0; i < row.size(); ++i) width[i] = std::max(width[i], row[i].size());
  }
  for (const auto& row : rows) {
    std::string line;
    for (size_t i = 0; i < row.size(); ++i) {
      line += row[i];
      if (i + 1 < row.size()) line += std::string(width[i] - row[i].size() + 2, ' ');
    }
    std::printf("%s\n", line.c_str());
  }
}

// "2024-05-01T12:00:00.000Z" -> ms since the epoch; 0 for "-" or junk.
int64_t ParseIsoMillis(const std::string& text) {
  std::tm tm{};
  int ms = 0;
  if (std::sscanf(text.c_str(), "%d-%d-%dT%d:%d:%d.%dZ", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
                  &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &ms) != 7) {
    return 0;
  }
  tm.tm_year -= 1900;
  tm.tm_mon -= 1;
  return static_cast<int64_t>(timegm(&tm)) * 1000 + ms;
}

int64_t NowMillis() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string FormatMillis(int64_t ms) {
  char buf[32];
  if (ms < 1000) {
    std::snprintf(buf, sizeof buf, "%lldms", static_cast<long long>(ms));
  } else if (ms < 60'000) {
    std::snprintf(buf, sizeof buf, "%.1fs", static_cast<double>(ms) / 1000);
  } else if (ms < 3'600'000) {
    std::snprintf(buf, sizeof buf, "%lldm%02llds", static_cast<long long>(ms / 60'000),
                  static_cast<long long>(ms / 1000 % 60));
  } else {
    std::snprintf(buf, sizeof buf, "%lldh%02lldm", static_cast<long long>(ms / 3'600'000),
                  static_cast<long long>(ms / 60'000 % 60));
  }
  return buf;
}

// From startedAt to endedAt (or to now while it runs); "-" before it starts.
std::string Duration(const json::Value& v) {
  const int64_t start = ParseIsoMillis(Text(v, "startedAt"));
  if (start == 0) return "-";
  int64_t end = ParseIsoMillis(Text(v, "endedAt"));
  if (end == 0) end = NowMillis();
  return FormatMillis(std::max<int64_t>(0, end - start));
}

std::string FlowLabel(const json::Value& run) {
  const json::Value* flow = run.Find("flow");
  if (!flow) return "-";
  const std::string kind = Text(*flow, "kind");
  const std::string name = Text(*flow, "name");
  if (kind == "Template") return "template/" + name;
  if (kind == "PreviewTemplate") return "preview/" + name;
  return name;
}

bool Concluded(const json::Value& run) {
  const json::Value* c = run.Find("concluded");
  return c && c->is_bool() && c->as_bool();
}


}  // namespace gitopsd::ctl
