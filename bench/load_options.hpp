// The load generator's command line and the values derived from it. Pure:
// strings in, values or error messages out, no sockets, no Boost.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace sluice::bench {

struct target_url {
    bool tls = false;
    std::string host;        // without brackets for IPv6 literals
    std::uint16_t port = 0;  // the scheme's default when the URL has none
    std::string path = "/";  // path and query, never empty
    std::string host_header; // host[:port] as the Host header should carry it
};

struct load_options {
    std::string url_text;
    target_url url;
    int connections = 10;
    int threads = 0; // 0: min(connections, hardware threads)
    std::chrono::nanoseconds duration = std::chrono::seconds{10};
    // Requests per second over all connections; 0 = closed loop.
    double rate = 0.0;
    bool new_connection = false;
    std::string method = "GET";
    std::uint64_t body_size = 0;
    std::vector<std::string> headers; // "Name: value", in command-line order
    bool insecure = false;
    // https with --new-connection: each connection offers the session of
    // the one before it on the same slot (abbreviated handshakes).
    bool tls_resume = false;
    // A request unanswered this long is abandoned and counted as a timeout.
    std::chrono::nanoseconds timeout = std::chrono::seconds{10};
    std::string json_path;
    std::string report_path;
};

// What parse_load_args found wrong, or that --help was asked for.
struct usage_error {
    std::string message; // empty for --help
};

// Parses `load` arguments (without the subcommand). Returns the options or
// the first problem found; threads is resolved, all numbers range-checked.
std::variant<load_options, usage_error> parse_load_args(std::span<char* const> args);

// "10s", "500ms", "1.5m", "250us", "2h"; a bare number means seconds.
// nullopt for junk, negative or zero durations.
std::optional<std::chrono::nanoseconds> parse_duration(std::string_view text);

// "1024", "4k", "1M", "2G" (powers of 1024), "10KiB"; nullopt for junk.
std::optional<std::uint64_t> parse_size(std::string_view text);

// http://host[:port][/path] or https://...; IPv6 as [::1]. nullopt for anything else.
std::optional<target_url> parse_url(std::string_view text);

// The positional URL of a command that takes exactly one plain http:// URL
// (`idle`, `probe`): stores it in `url_text`/`url` and returns an empty
// string, or returns what is wrong (a second URL, https, junk).
std::string take_http_url(std::string_view arg, bool& have_url, std::string& url_text,
                          target_url& url);

// The exact bytes of one request, body included, sent unchanged every time.
std::string build_request(const load_options& options);

// Human form of a duration for summaries ("10s", "500ms").
std::string format_duration(std::chrono::nanoseconds d);

extern const std::string_view load_usage;

} // namespace sluice::bench
