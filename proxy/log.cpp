#include "proxy/log.hpp"

#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include <chrono>
#include <ctime>

namespace sluice::log {
namespace {

std::shared_ptr<spdlog::logger>& logger() {
    static std::shared_ptr<spdlog::logger> instance;
    return instance;
}

spdlog::level::level_enum to_spdlog(level l) {
    switch (l) {
    case level::trace:
        return spdlog::level::trace;
    case level::debug:
        return spdlog::level::debug;
    case level::info:
        return spdlog::level::info;
    case level::warn:
        return spdlog::level::warn;
    case level::error:
        return spdlog::level::err;
    }
    return spdlog::level::info;
}

// Length of the valid UTF-8 sequence starting at s[i], or 0.
std::size_t utf8_length(std::string_view s, std::size_t i) {
    const auto c = static_cast<unsigned char>(s[i]);
    std::size_t n = 0;
    if (c >= 0xc2 && c <= 0xdf)
        n = 2;
    else if (c >= 0xe0 && c <= 0xef)
        n = 3;
    else if (c >= 0xf0 && c <= 0xf4)
        n = 4;
    else
        return 0;
    if (i + n > s.size())
        return 0;
    for (std::size_t k = 1; k < n; ++k)
        if ((static_cast<unsigned char>(s[i + k]) & 0xc0) != 0x80)
            return 0;
    return n;
}

} // namespace

field num(std::string_view key, long long value) {
    return {key, std::to_string(value), true};
}
field flag(std::string_view key, bool value) {
    return {key, value ? "true" : "false", true};
}

namespace {
// The level as --log-level spells it ("warn", not spdlog's "warning").
class level_flag final : public spdlog::custom_flag_formatter {
  public:
    void format(const spdlog::details::log_msg& m, const std::tm&,
                spdlog::memory_buf_t& dest) override {
        std::string_view name = "error";
        switch (m.level) {
        case spdlog::level::trace:
            name = "trace";
            break;
        case spdlog::level::debug:
            name = "debug";
            break;
        case spdlog::level::info:
            name = "info";
            break;
        case spdlog::level::warn:
            name = "warn";
            break;
        default:
            break;
        }
        dest.append(name.data(), name.data() + name.size());
    }
    std::unique_ptr<custom_flag_formatter> clone() const override {
        return std::make_unique<level_flag>();
    }
};
} // namespace

void init(level min_level) {
    auto sink = std::make_shared<spdlog::sinks::stdout_sink_mt>();
    auto l = std::make_shared<spdlog::logger>("sluice", sink);
    // The message (%v) carries "msg" and the context fields, already JSON.
    auto formatter = std::make_unique<spdlog::pattern_formatter>(spdlog::pattern_time_type::utc);
    formatter->add_flag<level_flag>('*').set_pattern(
        R"({"ts":"%Y-%m-%dT%H:%M:%S.%eZ","level":"%*",%v})");
    l->set_formatter(std::move(formatter));
    l->set_level(to_spdlog(min_level));
    l->flush_on(spdlog::level::trace);
    logger() = std::move(l);
}

bool parse_level(std::string_view text, level& out) {
    if (text == "trace")
        out = level::trace;
    else if (text == "debug")
        out = level::debug;
    else if (text == "info")
        out = level::info;
    else if (text == "warn")
        out = level::warn;
    else if (text == "error")
        out = level::error;
    else
        return false;
    return true;
}

bool enabled(level l) {
    return logger() && logger()->should_log(to_spdlog(l));
}

void write(level l, std::string_view msg, std::initializer_list<field> fields) {
    if (!enabled(l))
        return;
    std::string line;
    line.reserve(128);
    line.append("\"msg\":\"");
    append_json_escaped(line, msg);
    line.push_back('"');
    for (const auto& f : fields) {
        line.append(",\"");
        append_json_escaped(line, f.key);
        line.append("\":");
        if (f.raw) {
            line.append(f.value);
        } else {
            line.push_back('"');
            append_json_escaped(line, f.value);
            line.push_back('"');
        }
    }
    logger()->log(to_spdlog(l), line);
}

void append_json_escaped(std::string& out, std::string_view text) {
    static constexpr char hex[] = "0123456789abcdef";
    for (std::size_t i = 0; i < text.size();) {
        const auto c = static_cast<unsigned char>(text[i]);
        if (c == '"' || c == '\\') {
            out.push_back('\\');
            out.push_back(static_cast<char>(c));
            ++i;
        } else if (c < 0x20 || c == 0x7f) {
            out.append("\\u00");
            out.push_back(hex[c >> 4]);
            out.push_back(hex[c & 0xf]);
            ++i;
        } else if (c < 0x80) {
            out.push_back(static_cast<char>(c));
            ++i;
        } else if (const auto n = utf8_length(text, i); n > 0) {
            out.append(text.substr(i, n));
            i += n;
        } else {
            out.append("\\u00");
            out.push_back(hex[c >> 4]);
            out.push_back(hex[c & 0xf]);
            ++i;
        }
    }
}

void append_timestamp(std::string& out) {
    const auto now = std::chrono::system_clock::now();
    const auto secs = std::chrono::system_clock::to_time_t(now);
    const auto ms =
        std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() %
        1000;
    std::tm tm{};
    ::gmtime_r(&secs, &tm);
    char buf[40];
    const auto n = std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
    out.append(buf, n);
    out.push_back('.');
    out.push_back(static_cast<char>('0' + ms / 100));
    out.push_back(static_cast<char>('0' + ms / 10 % 10));
    out.push_back(static_cast<char>('0' + ms % 10));
    out.push_back('Z');
}

} // namespace sluice::log
