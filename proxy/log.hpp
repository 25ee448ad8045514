#pragma once
// Structured logs: one JSON object per line on stdout, with "ts", "level",
// "msg" and context fields. Light on purpose (no spdlog here), so any file
// may log.

#include <initializer_list>
#include <string>
#include <string_view>

namespace sluice::log {

enum class level { trace, debug, info, warn, error };

// A context field. Text values are quoted and escaped; `raw` values
// (numbers, true/false) are written as they are.
struct field {
    std::string_view key;
    std::string value;
    bool raw = false;
};
field num(std::string_view key, long long value);
field flag(std::string_view key, bool value);

// Sets up the process logger; call once before any other function here.
void init(level min_level);
// Parses "trace|debug|info|warn|error".
bool parse_level(std::string_view text, level& out);
bool enabled(level l);

void write(level l, std::string_view msg, std::initializer_list<field> fields = {});
inline void debug(std::string_view m, std::initializer_list<field> f = {}) {
    write(level::debug, m, f);
}
inline void info(std::string_view m, std::initializer_list<field> f = {}) {
    write(level::info, m, f);
}
inline void warn(std::string_view m, std::initializer_list<field> f = {}) {
    write(level::warn, m, f);
}
inline void error(std::string_view m, std::initializer_list<field> f = {}) {
    write(level::error, m, f);
}

// Appends `text` to `out` as the inside of a JSON string: quotes,
// backslashes and control characters escaped, bytes that are not valid
// UTF-8 written as \u00XX, so a hostile header never breaks a log line.
void append_json_escaped(std::string& out, std::string_view text);

// "2026-11-27T10:00:00.123Z" for the current time (UTC).
void append_timestamp(std::string& out);

} // namespace sluice::log
