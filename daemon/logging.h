// Logging set-up: spdlog's default logger writes every line to stdout,
// flushed line by line, in one of these shapes:
//  - text (the default): "[2024-05-01 12:00:00.123] [info] message", local
//    time, for a terminal or a plain file;
//  - journal, whatever the format says is text, when stdout is connected to
//    the systemd journal (JOURNAL_STREAM holds fd 1's "device:inode"):
//    "<6>message", no time (the journal stamps each entry) and the syslog
//    priority as sd-daemon(3) prefixes it: <7> trace and debug, <6> info,
//    <4> warn, <3> error, <2> critical. Every line of a message of several
//    lines carries the prefix, so none of them loses its priority;
//  - json (log.format or --log-format): one object a line, for log shippers:
//    {"time":"2024-05-01T10:00:00.123Z","level":"info","logger":"gitopsd",
//     "thread":4242,"message":"..."}, time in UTC with milliseconds, level
//    one of trace, debug, info, warn, error, critical. Under the journal the
//    line also gets the priority prefix: the journal strips it and keeps the
//    JSON object as the entry's message.
// Message text is escaped as JSON wants (quotes, backslashes, control
// characters); bytes that are not UTF-8 become U+FFFD. Nothing here filters
// secrets: callers never put them in messages.
#pragma once
#include <chrono>
#include <string>
#include <string_view>

#include "sync/status.h"

namespace gitopsd::daemon {

struct LogSettings {
  std::string level = "info";   // trace, debug, info, warn, error, critical or off
  std::string format = "text";  // text or json
};

// Replaces the default logger. Fails (and changes nothing) on an unknown
// level or format. Not thread-safe: call it once, before threads log.
Status SetUpLogging(const LogSettings& settings);
bool IsLogLevel(const std::string& level);
bool IsLogFormat(const std::string& format);

// True when `fd` is the stream JOURNAL_STREAM names (its device and inode
// numbers, as systemd documents the variable); false when the variable is
// unset, malformed or names another file (output redirected since).
bool IsJournalStream(int fd);

// A fatal error that ends the program, for where the logger cannot be used
// (before SetUpLogging, or on the way out): "gitopsd: <message>" on stderr,
// or, once SetUpLogging chose json, a JSON line of level "critical"; with
// the <2> prefix on each line when stderr is the journal.
void ReportFatal(const std::string& message);

// The pieces of the json shape, for tests.
// Appends `text` as a quoted JSON string.
void AppendJsonString(std::string& out, std::string_view text);
// RFC 3339 in UTC with milliseconds: "2024-05-01T10:00:00.123Z".
std::string Rfc3339Millis(std::chrono::system_clock::time_point t);

}  // namespace gitopsd::daemon
