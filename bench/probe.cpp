// `sluice-bench probe URL [--timeout D]`: resolve, connect, send one
// `GET` with `Connection: close`, read the response head (and body, counted,
// not kept), all under one deadline. Exit 0 on a 2xx final status; 1 with
// one line on stderr for anything else.
#include "bench/probe.hpp"

#include "bench/response_parser.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include <array>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <string>
#include <string_view>

namespace sluice::bench {
namespace {

namespace net = boost::asio;
using tcp = net::ip::tcp;
using error_code = boost::system::error_code;

constexpr auto use_tuple = net::as_tuple(net::use_awaitable);

constexpr std::string_view probe_usage_text =
    "usage: sluice-bench probe URL [--timeout D]\n"
    "\n"
    "Sends one GET to URL (http:// only) and exits 0 when the answer is 2xx,\n"
    "1 otherwise (refused, timed out, another status, a malformed answer, bad\n"
    "usage), with one line on stderr saying why. Made for container health\n"
    "checks, e.g. HEALTHCHECK CMD [\"sluice-bench\", \"probe\",\n"
    "\"http://127.0.0.1:9901/healthz\"].\n"
    "  --timeout D   limit for the whole probe (default 2s)\n";

const char* failure_name(response_parser::failure why) {
    switch (why) {
    case response_parser::failure::none:
        return "none";
    case response_parser::failure::status_line:
        return "bad status line";
    case response_parser::failure::header_line:
        return "bad header line";
    case response_parser::failure::header_too_big:
        return "header too big";
    case response_parser::failure::content_length:
        return "bad Content-Length";
    case response_parser::failure::chunk_size:
        return "bad chunk";
    case response_parser::failure::truncated:
        return "connection closed before the response ended";
    }
    return "unknown";
}

// One probe's state. Lives on run_probe's stack; the exchange coroutine and
// the deadline handler hold references to it and have both finished before
// ioc.run() returns.
struct probe_run {
    explicit probe_run(const probe_options& options) : options{options} {}

    const probe_options& options;
    net::io_context ioc{1};
    tcp::resolver resolver{ioc};
    tcp::socket socket{ioc};
    net::steady_timer deadline{ioc};
    bool timed_out = false;
    std::string failure; // empty while nothing went wrong
    unsigned status = 0; // the final status, once a complete response arrived
};

// Resolves, connects, writes the request and reads one complete response.
// Sets r.status on success, r.failure (one short clause) otherwise. When the
// deadline closes the socket, the pending step fails with operation_aborted
// and the caller reports the timeout instead of that error.
net::awaitable<void> exchange(probe_run& r) {
    const target_url& url = r.options.url;
    auto [resolve_ec, endpoints] =
        co_await r.resolver.async_resolve(url.host, std::to_string(url.port), use_tuple);
    if (resolve_ec) {
        r.failure = "cannot resolve " + url.host + ": " + resolve_ec.message();
        co_return;
    }
    auto [connect_ec, endpoint] = co_await net::async_connect(r.socket, endpoints, use_tuple);
    if (connect_ec) {
        r.failure = "connect: " + connect_ec.message();
        co_return;
    }
    const std::string request = "GET " + url.path + " HTTP/1.1\r\nHost: " + url.host_header +
                                "\r\nUser-Agent: sluice-bench-probe\r\nConnection: close\r\n\r\n";
    auto [write_ec, written] = co_await net::async_write(r.socket, net::buffer(request), use_tuple);
    if (write_ec) {
        r.failure = "send: " + write_ec.message();
        co_return;
    }
    response_parser parser;
    parser.reset(false);
    std::array<char, 16 * 1024> buffer{};
    std::size_t buffered = 0;
    while (parser.result() == response_parser::state::need_more) {
        if (buffered == buffer.size()) {
            r.failure = "bad response: a header line over 16 KiB";
            co_return;
        }
        auto [read_ec, n] = co_await r.socket.async_read_some(
            net::buffer(buffer.data() + buffered, buffer.size() - buffered), use_tuple);
        if (read_ec && read_ec != net::error::eof) {
            r.failure = "receive: " + read_ec.message();
            co_return;
        }
        buffered += n;
        const std::size_t used = parser.parse({buffer.data(), buffered});
        std::memmove(buffer.data(), buffer.data() + used, buffered - used);
        buffered -= used;
        if (read_ec) {
            parser.on_eof();
        }
    }
    if (parser.result() == response_parser::state::error) {
        r.failure = std::string{"bad response: "} + failure_name(parser.error());
        co_return;
    }
    r.status = parser.status();
}

} // namespace

std::variant<probe_options, probe_usage> parse_probe_args(std::span<char* const> args) {
    probe_options options;
    bool have_url = false;
    for (std::size_t i = 0; i < args.size(); ++i) {
        const std::string_view arg = args[i];
        if (arg == "--help" || arg == "-h") {
            return probe_usage{};
        }
        if (!arg.starts_with("--")) {
            if (auto problem = take_http_url(arg, have_url, options.url_text, options.url);
                !problem.empty()) {
                return probe_usage{std::move(problem)};
            }
            continue;
        }
        if (arg != "--timeout") {
            return probe_usage{"unknown option '" + std::string{arg} + "'"};
        }
        if (i + 1 >= args.size()) {
            return probe_usage{"--timeout needs a value"};
        }
        const std::string_view value = args[++i];
        const auto d = parse_duration(value);
        if (!d) {
            return probe_usage{"--timeout: expected a duration like 2s or 500ms, got \"" +
                               std::string{value} + "\""};
        }
        options.timeout = *d;
    }
    if (!have_url) {
        return probe_usage{"URL is required"};
    }
    return options;
}

int run_probe(std::span<char* const> args) {
    auto parsed = parse_probe_args(args);
    if (auto* problem = std::get_if<probe_usage>(&parsed)) {
        if (problem->message.empty()) {
            std::fputs(probe_usage_text.data(), stdout);
            return 0;
        }
        std::fprintf(stderr, "sluice-bench probe: %s (see sluice-bench probe --help)\n",
                     problem->message.c_str());
        return 1;
    }
    const probe_options options = std::get<probe_options>(std::move(parsed));
    // A peer that closes while the request is written must not kill the probe.
    std::signal(SIGPIPE, SIG_IGN);

    probe_run r{options};
    r.deadline.expires_after(options.timeout);
    r.deadline.async_wait([&r](const error_code& ec) {
        if (ec) {
            return; // cancelled: the exchange ended first
        }
        r.timed_out = true;
        r.resolver.cancel();
        error_code ignored;
        r.socket.close(ignored);
    });
    net::co_spawn(r.ioc, exchange(r), [&r](const std::exception_ptr& e) {
        if (e && r.failure.empty()) {
            r.failure = "internal error"; // e.g. out of memory; the exchange did not finish
        }
        r.deadline.cancel();
    });
    r.ioc.run();

    const char* url = options.url_text.c_str();
    if (r.timed_out && r.status == 0) {
        std::fprintf(stderr, "sluice-bench probe: %s: no answer within %s\n", url,
                     format_duration(options.timeout).c_str());
        return 1;
    }
    if (!r.failure.empty()) {
        std::fprintf(stderr, "sluice-bench probe: %s: %s\n", url, r.failure.c_str());
        return 1;
    }
    if (r.status < 200 || r.status > 299) {
        std::fprintf(stderr, "sluice-bench probe: %s: status %u\n", url, r.status);
        return 1;
    }
    return 0;
}

} // namespace sluice::bench
