#include "daemon/ctl/common.h"

#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <utility>

namespace gitopsd::ctl {
namespace {

constexpr const char* kDefaultServer = "http://127.0.0.1:7780";

}  // namespace

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
  std::string server = g.server;
  if (server.empty()) server = Env("GITOPSD_SERVER");
  if (server.empty()) server = kDefaultServer;
  std::string token = g.token;
  if (token.empty() && !g.token_file.empty()) {
    auto text = ReadFile(g.token_file);
    if (!text) {
      *code = Complain("--token-file " + g.token_file + ": cannot read it", kExitUsage);
      return std::nullopt;
    }
    token = Trimmed(*text);
  }
  if (token.empty()) token = Env("GITOPSD_TOKEN");
  auto client = Client::Create(server, token);
  if (!client) {
    *code = Complain(client.error().message, kExitUsage);
    return std::nullopt;
  }
  return std::move(*client);
}

// Sends and reports transport failures and error statuses; nullopt then
// (with *code set).
std::optional<Reply> Call(const Client& client, const std::string& method, const std::string& path,
                          int* code, const std::string& body,
                          const std::map<std::string, std::string>& headers) {
  auto reply = client.Send(method, path, body, headers);
  if (!reply) {
    *code = Complain(reply.error().message);
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

}  // namespace gitopsd::ctl
