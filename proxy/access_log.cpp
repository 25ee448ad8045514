#include "proxy/access_log.hpp"

#include "proxy/log.hpp"

#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstring>
#include <fcntl.h>
#include <limits.h>
#include <unistd.h>

namespace sluice::proxy {
namespace {

int log_fd = STDOUT_FILENO;
std::string log_path = "stdout";

void append_uint(std::string& out, std::uint64_t n) {
    char digits[24];
    const auto [end, ec] = std::to_chars(digits, digits + sizeof digits, n);
    out.append(digits, end);
}

void append_text_field(std::string& out, std::string_view key, std::string_view value) {
    out.append(",\"");
    out.append(key);
    out.append("\":\"");
    log::append_json_escaped(out, value);
    out.push_back('"');
}

} // namespace

bool open_access_log(const std::string& path, std::string& error) {
    log_path = path;
    if (path == "stdout") {
        log_fd = STDOUT_FILENO;
        return true;
    }
    const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0) {
        error = "cannot open access log " + path + ": " + std::strerror(errno);
        return false;
    }
    log_fd = fd;
    return true;
}

bool reopen_access_log(std::string& error) {
    if (log_path == "stdout")
        return true;
    const int fd = ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0) {
        error = "cannot reopen access log " + log_path + ": " + std::strerror(errno);
        return false;
    }
    ::dup3(fd, log_fd, O_CLOEXEC);
    ::close(fd);
    return true;
}

void access_log_writer::append(const access_record& r) {
    const auto now = std::chrono::system_clock::now();
    const auto secs = std::chrono::system_clock::to_time_t(now);
    if (secs != cached_second_) {
        std::tm tm{};
        ::gmtime_r(&secs, &tm);
        std::strftime(cached_prefix_, sizeof cached_prefix_, "%Y-%m-%dT%H:%M:%S.", &tm);
        cached_second_ = secs;
    }
    const auto ms =
        std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() %
        1000;
    auto& out = buffer_;
    out.append(R"({"ts":")");
    out.append(cached_prefix_);
    out.push_back(static_cast<char>('0' + ms / 100));
    out.push_back(static_cast<char>('0' + ms / 10 % 10));
    out.push_back(static_cast<char>('0' + ms % 10));
    out.append(R"(Z","level":"info","type":"access","msg":"request")");
    append_text_field(out, "request_id", r.request_id);
    append_text_field(out, "client", r.client);
    append_text_field(out, "listener", r.listener);
    append_text_field(out, "method", r.method);
    append_text_field(out, "path", r.path);
    append_text_field(out, "host", r.host);
    out.append(",\"status\":");
    append_uint(out, static_cast<std::uint64_t>(r.status));
    out.append(",\"bytes_in\":");
    append_uint(out, r.bytes_in);
    out.append(",\"bytes_out\":");
    append_uint(out, r.bytes_out);
    // Milliseconds with three decimals, without going through printf.
    const auto micros = static_cast<std::uint64_t>(r.duration_ms * 1000.0 + 0.5);
    out.append(",\"duration_ms\":");
    append_uint(out, micros / 1000);
    out.push_back('.');
    const auto frac = micros % 1000;
    out.push_back(static_cast<char>('0' + frac / 100));
    out.push_back(static_cast<char>('0' + frac / 10 % 10));
    out.push_back(static_cast<char>('0' + frac % 10));
    append_text_field(out, "upstream", r.upstream);
    append_text_field(out, "server", r.server);
    if (!r.error.empty())
        append_text_field(out, "error", r.error);
    out.append("}\n");
}

void access_log_writer::flush() {
    std::string_view rest = buffer_;
    while (!rest.empty()) {
        std::size_t n = rest.size();
        if (n > PIPE_BUF) {
            // Cut after the last whole line that fits; a single longer line
            // goes out whole.
            const auto cut = rest.rfind('\n', PIPE_BUF - 1);
            n = cut == std::string_view::npos ? rest.find('\n') + 1 : cut + 1;
        }
        const auto written = ::write(log_fd, rest.data(), n);
        if (written < 0) {
            if (errno == EINTR)
                continue;
            break; // the log is lost rather than the proxy blocked
        }
        rest.remove_prefix(static_cast<std::size_t>(written));
    }
    buffer_.clear();
}

} // namespace sluice::proxy
