// What gitopsctl's commands share: reaching the server from the global
// flags, sending a request and reporting failures, reading the JSON answer,
// and printing tables. Messages go to stderr as "gitopsctl: ...".
#pragma once
#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "daemon/ctl/client.h"
#include "daemon/ctl/commands.h"
#include "sync/json.h"

namespace gitopsd::ctl {

// Prints the message; returns `code`.
int Complain(const std::string& message, int code = kExitFailed);
std::string Env(const char* name);
std::string Trimmed(std::string s);
std::optional<std::string> ReadFile(const std::string& path);

// The client for the global flags, or nullopt after complaining (*code set).
std::optional<Client> Connect(const Globals& g, int* code);
// Sends; reports transport failures and error statuses (nullopt, *code set).
std::optional<Reply> Call(const Client& client, const std::string& method, const std::string& path,
                          int* code, const std::string& body = "",
                          const std::map<std::string, std::string>& headers = {});
std::optional<json::Value> ParseReply(const Reply& reply, int* code);
// The answer parsed for a table or a line for people; with --json the body
// is printed as it came instead, and nullopt returned with *code kExitOk.
// Either way a caller does: if (!doc) return code;
std::optional<json::Value> ParseOrPrintJson(const Globals& g, const Reply& reply, int* code);

// A member as text: strings as they are, numbers as spelled, null as "-".
std::string Text(const json::Value& v, std::string_view key);
size_t Count(const json::Value& v, std::string_view key);
std::string Short(const std::string& commit);  // 7 characters
// Columns padded to their widest cell; the first row is the header.
void PrintTable(const std::vector<std::vector<std::string>>& rows);

// ---- time and runs

// "2024-05-01T12:00:00.000Z" -> ms since the epoch; 0 for "-" or junk.
int64_t ParseIsoMillis(const std::string& text);
int64_t NowMillis();
// 850ms, 4.2s, 3m07s, 2h05m.
std::string FormatMillis(int64_t ms);
// A member's "startedAt" to its "endedAt" (or to now while it runs); "-"
// before it starts.
std::string Duration(const json::Value& v);
// A run's flow: the name of a release flow, template/NAME or preview/NAME.
std::string FlowLabel(const json::Value& run);
bool Concluded(const json::Value& run);

}  // namespace gitopsd::ctl
