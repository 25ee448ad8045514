#include "bench/load_options.hpp"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <thread>

namespace sluice::bench {

const std::string_view load_usage =
    "usage: sluice-bench load URL [options]\n"
    "\n"
    "  URL                   http://host[:port]/path or https://...\n"
    "  --connections N       concurrent connections (default 10)\n"
    "  --threads T           threads, each with its own share of connections\n"
    "                        (default min(N, hardware threads))\n"
    "  --duration D          run length, e.g. 10s, 500ms, 1m (default 10s)\n"
    "  --rate R              open loop: R requests/s in total, latency measured from\n"
    "                        each request's intended send time (default: closed loop)\n"
    "  --new-connection      one connection per request (default keep-alive)\n"
    "  --method M            request method (default GET)\n"
    "  --body-size S         request body of S bytes, e.g. 512, 4k, 1M (default 0)\n"
    "  --header 'K: V'       extra request header, repeatable\n"
    "  --insecure            https: skip certificate verification\n"
    "  --tls-resume          https with --new-connection: resume the previous\n"
    "                        connection's TLS session (default: full handshakes)\n"
    "  --timeout D           abandon a request after D, counted as a timeout (default 10s)\n"
    "  --json FILE           write the results as JSON (schema in bench/README.md)\n"
    "  --report FILE.html    write a self-contained HTML report\n";

namespace {

template <class T> bool parse_number(std::string_view text, T& out) {
    const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), out);
    return !text.empty() && ec == std::errc{} && end == text.data() + text.size();
}

bool parse_double(std::string_view text, double& out) {
    // from_chars rejects "+1", " 1" and hex; isfinite rejects "inf" and "nan".
    return parse_number(text, out) && std::isfinite(out);
}

} // namespace

std::optional<std::chrono::nanoseconds> parse_duration(std::string_view text) {
    std::size_t split = 0;
    while (split < text.size() &&
           ((text[split] >= '0' && text[split] <= '9') || text[split] == '.')) {
        ++split;
    }
    double value = 0;
    if (!parse_double(text.substr(0, split), value) || value <= 0) {
        return std::nullopt;
    }
    const std::string_view unit = text.substr(split);
    double ns_per_unit = 0;
    if (unit.empty() || unit == "s") {
        ns_per_unit = 1e9;
    } else if (unit == "ms") {
        ns_per_unit = 1e6;
    } else if (unit == "us") {
        ns_per_unit = 1e3;
    } else if (unit == "m" || unit == "min") {
        ns_per_unit = 60e9;
    } else if (unit == "h") {
        ns_per_unit = 3600e9;
    } else {
        return std::nullopt;
    }
    const double ns = value * ns_per_unit;
    if (ns < 1 || ns > 1e9 * 86400 * 365) {
        return std::nullopt;
    }
    return std::chrono::nanoseconds{static_cast<std::int64_t>(ns)};
}

std::optional<std::uint64_t> parse_size(std::string_view text) {
    std::size_t split = 0;
    while (split < text.size() && text[split] >= '0' && text[split] <= '9') {
        ++split;
    }
    std::uint64_t value = 0;
    if (!parse_number(text.substr(0, split), value)) {
        return std::nullopt;
    }
    std::string_view unit = text.substr(split);
    if (unit.ends_with("iB")) {
        unit.remove_suffix(2);
    } else if (unit.size() == 2 && (unit.back() == 'B' || unit.back() == 'b')) {
        unit.remove_suffix(1);
    }
    unsigned shift = 0;
    if (unit.empty() || unit == "B" || unit == "b") {
        shift = 0;
    } else if (unit == "k" || unit == "K") {
        shift = 10;
    } else if (unit == "m" || unit == "M") {
        shift = 20;
    } else if (unit == "g" || unit == "G") {
        shift = 30;
    } else {
        return std::nullopt;
    }
    if (value > (UINT64_MAX >> shift)) {
        return std::nullopt;
    }
    return value << shift;
}

std::optional<target_url> parse_url(std::string_view text) {
    target_url url;
    if (text.starts_with("http://")) {
        text.remove_prefix(7);
    } else if (text.starts_with("https://")) {
        text.remove_prefix(8);
        url.tls = true;
    } else {
        return std::nullopt;
    }
    const auto slash = text.find_first_of("/?");
    std::string_view authority = text.substr(0, slash);
    if (slash != std::string_view::npos) {
        url.path = std::string{text.substr(slash)};
        if (url.path.front() == '?') {
            url.path.insert(url.path.begin(), '/');
        }
    }
    if (authority.find('@') != std::string_view::npos || authority.empty()) {
        return std::nullopt;
    }
    std::string_view host = authority;
    std::string_view port_text;
    if (authority.front() == '[') {
        const auto close = authority.find(']');
        if (close == std::string_view::npos) {
            return std::nullopt;
        }
        host = authority.substr(1, close - 1);
        const std::string_view after = authority.substr(close + 1);
        if (!after.empty()) {
            if (after.front() != ':') {
                return std::nullopt;
            }
            port_text = after.substr(1);
        }
    } else if (const auto colon = authority.rfind(':'); colon != std::string_view::npos) {
        host = authority.substr(0, colon);
        port_text = authority.substr(colon + 1);
    }
    if (host.empty()) {
        return std::nullopt;
    }
    url.host = std::string{host};
    url.port = url.tls ? 443 : 80;
    if (!port_text.empty() && (!parse_number(port_text, url.port) || url.port == 0)) {
        return std::nullopt;
    }
    url.host_header = std::string{authority};
    return url;
}

std::string take_http_url(std::string_view arg, bool& have_url, std::string& url_text,
                          target_url& url) {
    const auto parsed = parse_url(arg);
    if (have_url || !parsed || parsed->tls)
        return "expected one http:// URL, got \"" + std::string{arg} + "\"";
    url_text = std::string{arg};
    url = *parsed;
    have_url = true;
    return {};
}

std::string build_request(const load_options& options) {
    std::string request;
    request.reserve(256 + options.body_size);
    request += options.method;
    request += ' ';
    request += options.url.path;
    request += " HTTP/1.1\r\n";
    bool has_host = false;
    bool has_user_agent = false;
    for (const auto& header : options.headers) {
        const std::string_view name = std::string_view{header}.substr(0, header.find(':'));
        auto is = [&](std::string_view want) {
            return std::equal(name.begin(), name.end(), want.begin(), want.end(),
                              [](char a, char b) { return std::tolower(a) == std::tolower(b); });
        };
        has_host = has_host || is("host");
        has_user_agent = has_user_agent || is("user-agent");
    }
    if (!has_host) {
        request += "Host: " + options.url.host_header + "\r\n";
    }
    if (!has_user_agent) {
        request += "User-Agent: sluice-bench\r\n";
    }
    for (const auto& header : options.headers) {
        request += header;
        request += "\r\n";
    }
    if (options.new_connection) {
        request += "Connection: close\r\n";
    }
    if (options.body_size > 0 || options.method == "POST" || options.method == "PUT" ||
        options.method == "PATCH") {
        request += "Content-Length: " + std::to_string(options.body_size) + "\r\n";
    }
    request += "\r\n";
    request.append(options.body_size, 'x');
    return request;
}

std::string format_duration(std::chrono::nanoseconds d) {
    const auto ns = d.count();
    auto trim = [](double v, const char* unit) {
        char buf[64];
        std::snprintf(buf, sizeof buf, "%.3f", v);
        std::string s = buf;
        while (s.back() == '0') {
            s.pop_back();
        }
        if (s.back() == '.') {
            s.pop_back();
        }
        return s + unit;
    };
    if (ns >= 1'000'000'000) {
        return trim(static_cast<double>(ns) / 1e9, "s");
    }
    if (ns >= 1'000'000) {
        return trim(static_cast<double>(ns) / 1e6, "ms");
    }
    return trim(static_cast<double>(ns) / 1e3, "us");
}

std::variant<load_options, usage_error> parse_load_args(std::span<char* const> args) {
    load_options options;
    bool have_url = false;
    for (std::size_t i = 0; i < args.size(); ++i) {
        const std::string_view arg = args[i];
        if (arg == "--help" || arg == "-h") {
            return usage_error{};
        }
        if (arg == "--new-connection") {
            options.new_connection = true;
            continue;
        }
        if (arg == "--insecure" || arg == "-k") {
            options.insecure = true;
            continue;
        }
        if (arg == "--tls-resume") {
            options.tls_resume = true;
            continue;
        }
        if (!arg.starts_with("--")) {
            if (have_url) {
                return usage_error{"unexpected argument '" + std::string{arg} + "'"};
            }
            const auto url = parse_url(arg);
            if (!url) {
                return usage_error{"URL: expected http://host[:port]/path or https://..., got \"" +
                                   std::string{arg} + "\""};
            }
            options.url_text = std::string{arg};
            options.url = *url;
            have_url = true;
            continue;
        }
        if (i + 1 >= args.size()) {
            return usage_error{std::string{arg} + " needs a value"};
        }
        const std::string_view value = args[++i];
        auto bad = [&](std::string_view expected) {
            return usage_error{std::string{arg} + ": expected " + std::string{expected} +
                               ", got \"" + std::string{value} + "\""};
        };
        if (arg == "--connections") {
            if (!parse_number(value, options.connections) || options.connections < 1 ||
                options.connections > 100000) {
                return bad("1..100000");
            }
        } else if (arg == "--threads") {
            if (!parse_number(value, options.threads) || options.threads < 1 ||
                options.threads > 256) {
                return bad("1..256");
            }
        } else if (arg == "--duration" || arg == "--timeout") {
            const auto d = parse_duration(value);
            if (!d) {
                return bad("a duration like 10s or 500ms");
            }
            (arg == "--duration" ? options.duration : options.timeout) = *d;
        } else if (arg == "--rate") {
            if (!parse_double(value, options.rate) || options.rate <= 0 || options.rate > 1e8) {
                return bad("requests per second, > 0");
            }
        } else if (arg == "--method") {
            const bool token =
                !value.empty() && std::all_of(value.begin(), value.end(), [](char c) {
                    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '-' || c == '_';
                });
            if (!token) {
                return bad("a method token like GET");
            }
            options.method = std::string{value};
        } else if (arg == "--body-size") {
            const auto size = parse_size(value);
            if (!size || *size > (std::uint64_t{1} << 30)) {
                return bad("a size up to 1G, like 512 or 4k");
            }
            options.body_size = *size;
        } else if (arg == "--header" || arg == "-H") {
            const auto colon = value.find(':');
            if (colon == 0 || colon == std::string_view::npos ||
                value.find_first_of("\r\n") != std::string_view::npos) {
                return bad("'Name: value'");
            }
            options.headers.emplace_back(value);
        } else if (arg == "--json") {
            options.json_path = std::string{value};
        } else if (arg == "--report") {
            options.report_path = std::string{value};
        } else {
            return usage_error{"unknown option '" + std::string{arg} + "'"};
        }
    }
    if (!have_url) {
        return usage_error{"URL is required"};
    }
    if (options.tls_resume && (!options.url.tls || !options.new_connection)) {
        return usage_error{"--tls-resume needs an https:// URL and --new-connection"};
    }
    if (options.threads == 0) {
        const int hardware = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
        options.threads = std::min(options.connections, hardware);
    }
    options.threads = std::min(options.threads, options.connections);
    return options;
}

} // namespace sluice::bench
