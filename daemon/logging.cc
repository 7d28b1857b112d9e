#include "daemon/logging.h"

#include <spdlog/formatter.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <memory>

namespace gitopsd::daemon {

namespace {

// What ReportFatal writes once SetUpLogging has run.
std::atomic<bool> g_json_fatal{false};

// The sd-daemon(3) prefix of a level.
std::string_view PriorityPrefix(spdlog::level::level_enum level) {
  switch (level) {
    case spdlog::level::trace:
    case spdlog::level::debug: return "<7>";
    case spdlog::level::info: return "<6>";
    case spdlog::level::warn: return "<4>";
    case spdlog::level::err: return "<3>";
    case spdlog::level::critical: return "<2>";
    default: return "<6>";
  }
}

// The names --log-level takes, so that a filter and a line agree.
std::string_view LevelName(spdlog::level::level_enum level) {
  switch (level) {
    case spdlog::level::trace: return "trace";
    case spdlog::level::debug: return "debug";
    case spdlog::level::info: return "info";
    case spdlog::level::warn: return "warn";
    case spdlog::level::err: return "error";
    case spdlog::level::critical: return "critical";
    default: return "info";
  }
}

// Appends `text` with `prefix` before it and before each of its lines; a
// final newline ends the line.
void AppendPrefixedLines(std::string& out, std::string_view prefix, std::string_view text) {
  out += prefix;
  for (size_t i = 0; i < text.size(); ++i) {
    out += text[i];
    if (text[i] == '\n' && i + 1 < text.size()) out += prefix;
  }
  if (out.empty() || out.back() != '\n') out += '\n';
}

std::string JsonLine(std::chrono::system_clock::time_point time, std::string_view level,
                     std::string_view logger, size_t thread, std::string_view message) {
  std::string line;
  line.reserve(96 + message.size());
  line += "{\"time\":\"";
  line += Rfc3339Millis(time);
  line += "\",\"level\":\"";
  line += level;
  line += "\",\"logger\":";
  AppendJsonString(line, logger);
  line += ",\"thread\":";
  line += std::to_string(thread);
  line += ",\"message\":";
  AppendJsonString(line, message);
  line += '}';
  return line;
}

class JournalFormatter final : public spdlog::formatter {
 public:
  void format(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& dest) override {
    std::string line;
    AppendPrefixedLines(line, PriorityPrefix(msg.level),
                        std::string_view(msg.payload.data(), msg.payload.size()));
    dest.append(line.data(), line.data() + line.size());
  }
  std::unique_ptr<spdlog::formatter> clone() const override {
    return std::make_unique<JournalFormatter>();
  }
};

class JsonFormatter final : public spdlog::formatter {
 public:
  explicit JsonFormatter(bool journal) : journal_(journal) {}
  void format(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& dest) override {
    std::string line = journal_ ? std::string(PriorityPrefix(msg.level)) : std::string();
    line += JsonLine(std::chrono::time_point_cast<std::chrono::system_clock::duration>(msg.time),
                     LevelName(msg.level),
                     std::string_view(msg.logger_name.data(), msg.logger_name.size()),
                     msg.thread_id, std::string_view(msg.payload.data(), msg.payload.size()));
    line += '\n';
    dest.append(line.data(), line.data() + line.size());
  }
  std::unique_ptr<spdlog::formatter> clone() const override {
    return std::make_unique<JsonFormatter>(journal_);
  }

 private:
  bool journal_;
};

// The length of the well-formed UTF-8 sequence at text[i] (RFC 3629: no
// overlong forms, no surrogates, nothing above U+10FFFF), or 0.
size_t Utf8Length(std::string_view text, size_t i) {
  const auto byte = [&](size_t k) { return static_cast<unsigned char>(text[k]); };
  const unsigned char b = byte(i);
  if (b < 0x80) return 1;
  size_t n = 0;
  unsigned char lo = 0x80, hi = 0xBF;  // the range of the second byte
  if (b >= 0xC2 && b <= 0xDF) {
    n = 2;
  } else if (b >= 0xE0 && b <= 0xEF) {
    n = 3;
    if (b == 0xE0) lo = 0xA0;
    if (b == 0xED) hi = 0x9F;
  } else if (b >= 0xF0 && b <= 0xF4) {
    n = 4;
    if (b == 0xF0) lo = 0x90;
    if (b == 0xF4) hi = 0x8F;
  } else {
    return 0;
  }
  if (i + n > text.size()) return 0;
  if (byte(i + 1) < lo || byte(i + 1) > hi) return 0;
  for (size_t k = 2; k < n; ++k) {
    if (byte(i + k) < 0x80 || byte(i + k) > 0xBF) return 0;
  }
  return n;
}

}  // namespace

void AppendJsonString(std::string& out, std::string_view text) {
  static constexpr char kHex[] = "0123456789abcdef";
  out += '"';
  for (size_t i = 0; i < text.size();) {
    const unsigned char c = static_cast<unsigned char>(text[i]);
    if (c >= 0x80) {
      const size_t n = Utf8Length(text, i);
      if (n == 0) {
        out += "\xEF\xBF\xBD";  // U+FFFD for the byte that is not UTF-8
        i += 1;
      } else {
        out.append(text.substr(i, n));
        i += n;
      }
      continue;
    }
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      default:
        if (c < 0x20) {
          out += "\\u00";
          out += kHex[c >> 4];
          out += kHex[c & 0xF];
        } else {
          out += static_cast<char>(c);
        }
    }
    ++i;
  }
  out += '"';
}

std::string Rfc3339Millis(std::chrono::system_clock::time_point t) {
  using namespace std::chrono;
  const auto ms = duration_cast<milliseconds>(t.time_since_epoch()).count();
  const std::time_t seconds = static_cast<std::time_t>(ms >= 0 ? ms / 1000 : (ms - 999) / 1000);
  const int millis = static_cast<int>(ms - static_cast<long long>(seconds) * 1000);
  std::tm tm{};
  gmtime_r(&seconds, &tm);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, millis);
  return buf;
}

bool IsJournalStream(int fd) {
  const char* value = std::getenv("JOURNAL_STREAM");
  if (!value || !*value) return false;
  unsigned long long dev = 0, ino = 0;
  char extra = 0;
  if (std::sscanf(value, "%llu:%llu%c", &dev, &ino, &extra) != 2) return false;
  struct stat st {};
  if (::fstat(fd, &st) != 0) return false;
  return static_cast<unsigned long long>(st.st_dev) == dev &&
         static_cast<unsigned long long>(st.st_ino) == ino;
}

bool IsLogLevel(const std::string& level) {
  // from_str maps unknown names to "off", so check the known spellings.
  for (const char* known : {"trace", "debug", "info", "warn", "warning", "error", "err",
                            "critical", "off"}) {
    if (level == known) return true;
  }
  return false;
}

bool IsLogFormat(const std::string& format) { return format == "text" || format == "json"; }

Status SetUpLogging(const LogSettings& settings) {
  const std::string& level = settings.level;
  if (!IsLogLevel(level)) {
    return Fail("log level \"" + level + "\": use trace, debug, info, warn, error, critical or off");
  }
  if (!IsLogFormat(settings.format)) {
    return Fail("log format \"" + settings.format + "\": use text or json");
  }
  const bool journal = IsJournalStream(STDOUT_FILENO);
  const bool json = settings.format == "json";
  std::shared_ptr<spdlog::sinks::sink> sink;
  if (json || journal) {
    sink = std::make_shared<spdlog::sinks::stdout_sink_mt>();
    if (json) sink->set_formatter(std::make_unique<JsonFormatter>(journal));
    else sink->set_formatter(std::make_unique<JournalFormatter>());
  } else {
    sink = std::make_shared<spdlog::sinks::stdout_color_sink_mt>();
    sink->set_pattern("[%Y-%m-%d %H:%M:%S.%e] [%l] %v");
  }
  std::string name = level == "warning" ? "warn" : level == "error" ? "err" : level;
  auto logger = std::make_shared<spdlog::logger>("gitopsd", std::move(sink));
  logger->set_level(spdlog::level::from_str(name));
  logger->flush_on(spdlog::level::trace);
  spdlog::set_default_logger(std::move(logger));
  g_json_fatal = json;
  return Ok();
}

void ReportFatal(const std::string& message) {
  std::string line;
  const std::string_view prefix = IsJournalStream(STDERR_FILENO) ? "<2>" : "";
  if (g_json_fatal) {
    line = std::string(prefix) + JsonLine(std::chrono::system_clock::now(), "critical", "gitopsd",
                                          static_cast<size_t>(::gettid()), message);
    line += '\n';
  } else {
    AppendPrefixedLines(line, prefix, "gitopsd: " + message);
  }
  spdlog::default_logger_raw()->flush();
  std::fwrite(line.data(), 1, line.size(), stderr);
  std::fflush(stderr);
}

}  // namespace gitopsd::daemon
