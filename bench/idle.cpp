// `sluice-bench idle URL --connections N --hold D`: N keep-alive connections,
// one GET each, then held open and silent for D. Set-up runs in a bounded
// number of lanes (--concurrency) so the target sees a steady trickle of
// connects rather than a SYN flood, and so at most that many requests are in
// flight upstream at once. Everything runs on one thread; the whole run is
// bounded by --timeout (set-up) plus --hold.
//
// Output, one JSON object per line on stdout, flushed:
//   {"msg":"holding","open":N,...}  once every connection is set up or failed
//   {"msg":"done","still_open":N,...} when the hold ends
#include "bench/idle.hpp"

#include "bench/load_options.hpp"
#include "bench/load_result.hpp"
#include "bench/response_parser.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include <array>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <variant>
#include <vector>

#include <sys/socket.h>

namespace sluice::bench {
namespace {

namespace net = boost::asio;
using tcp = net::ip::tcp;
using error_code = boost::system::error_code;
using clock_type = std::chrono::steady_clock;

constexpr auto use_tuple = net::as_tuple(net::use_awaitable);

constexpr std::string_view idle_usage =
    "usage: sluice-bench idle URL [--connections N] [--hold D] [--concurrency C] [--timeout D]\n"
    "\n"
    "Opens N keep-alive connections to URL (http:// only), sends one GET on each,\n"
    "reads the response, then holds every connection open without sending more.\n"
    "  --connections N   connections to open (default 1000, at most 100000)\n"
    "  --hold D          how long to hold them once all are set up (default 10s)\n"
    "  --concurrency C   connections being set up at once (default 64)\n"
    "  --timeout D       limit for the whole set-up phase (default 30s); connections\n"
    "                    not set up by then count as timeouts\n"
    "Prints {\"msg\":\"holding\",...} when set-up ends and {\"msg\":\"done\",...} after\n"
    "the hold. SIGTERM/SIGINT end the hold early. Exit 0 after a run, 1 if the host\n"
    "does not resolve, 2 for bad usage.\n";

struct idle_options {
    std::string url_text;
    target_url url;
    int connections = 1000;
    int concurrency = 64;
    std::chrono::nanoseconds hold = std::chrono::seconds{10};
    std::chrono::nanoseconds timeout = std::chrono::seconds{30};
};

struct usage_problem {
    std::string message; // empty for --help
};

// Parses `idle` arguments (without the subcommand): the options, or what is wrong.
std::variant<idle_options, usage_problem> parse_idle_args(std::span<char* const> args) {
    idle_options options;
    bool have_url = false;
    for (std::size_t i = 0; i < args.size(); ++i) {
        const std::string_view arg = args[i];
        if (arg == "--help" || arg == "-h") {
            return usage_problem{};
        }
        if (!arg.starts_with("--")) {
            if (auto problem = take_http_url(arg, have_url, options.url_text, options.url);
                !problem.empty()) {
                return usage_problem{std::move(problem)};
            }
            continue;
        }
        if (i + 1 >= args.size()) {
            return usage_problem{std::string{arg} + " needs a value"};
        }
        const std::string_view value = args[++i];
        auto bad = [&](std::string_view expected) {
            return usage_problem{std::string{arg} + ": expected " + std::string{expected} +
                                 ", got \"" + std::string{value} + "\""};
        };
        auto parse_int = [&](int& out, int low, int high) {
            const auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), out);
            return ec == std::errc{} && end == value.data() + value.size() && out >= low &&
                   out <= high;
        };
        if (arg == "--connections") {
            if (!parse_int(options.connections, 1, 100000)) {
                return bad("1..100000");
            }
        } else if (arg == "--concurrency") {
            if (!parse_int(options.concurrency, 1, 10000)) {
                return bad("1..10000");
            }
        } else if (arg == "--hold" || arg == "--timeout") {
            const auto d = parse_duration(value);
            if (!d) {
                return bad("a duration like 10s or 500ms");
            }
            (arg == "--hold" ? options.hold : options.timeout) = *d;
        } else {
            return usage_problem{"unknown option '" + std::string{arg} + "'"};
        }
    }
    if (!have_url) {
        return usage_problem{"URL is required"};
    }
    options.concurrency = std::min(options.concurrency, options.connections);
    return options;
}

// The whole run's state. Lives on run_idle's stack; every coroutine holds a
// reference to it and has ended before ioc.run() returns.
struct idle_run {
    explicit idle_run(const idle_options& options)
        : options{options}, setup_deadline{ioc}, setup_done{ioc}, hold_timer{ioc}, signals{
                                                                                       ioc, SIGINT,
                                                                                       SIGTERM} {}

    net::io_context ioc{1};
    const idle_options& options;
    std::string request;
    std::vector<tcp::endpoint> endpoints;

    // The connections that got a keep-alive response, held until the end.
    std::vector<std::unique_ptr<tcp::socket>> held;
    // Per lane: the socket being set up, so the deadline can close it.
    std::vector<tcp::socket*> in_setup;
    int started = 0; // connections handed to a lane so far
    int lanes_running = 0;
    bool setup_expired = false; // the --timeout deadline passed during set-up
    bool stopping = false;      // a signal arrived

    std::array<std::uint64_t, error_kind_count> errors{};
    std::uint64_t not_kept_alive = 0; // answered, but the response closed the connection
    std::map<unsigned, std::uint64_t> statuses;

    net::steady_timer setup_deadline;
    net::steady_timer setup_done; // never expires; cancelled when the last lane ends
    net::steady_timer hold_timer;
    net::signal_set signals;

    void close_in_setup() {
        for (tcp::socket* s : in_setup) {
            if (s != nullptr) {
                error_code ignored;
                s->close(ignored);
            }
        }
    }
};

// Connects `sock`, sends the request and reads one response. Returns the
// error kind on failure, nullopt when a complete response arrived (its
// status and keep-alive are recorded in `r`; `kept_alive` says whether the
// connection may be held).
net::awaitable<std::optional<error_kind>>
set_up(idle_run& r, tcp::socket& sock, std::array<char, 16 * 1024>& buffer, bool& kept_alive) {
    auto [connect_ec, ep] = co_await net::async_connect(sock, r.endpoints, use_tuple);
    if (connect_ec) {
        co_return error_kind::connect;
    }
    error_code ignored;
    sock.set_option(tcp::no_delay(true), ignored);
    auto [write_ec, written] = co_await net::async_write(sock, net::buffer(r.request), use_tuple);
    if (write_ec) {
        co_return error_kind::write;
    }
    response_parser parser;
    parser.reset(false);
    std::size_t buffered = 0;
    while (parser.result() == response_parser::state::need_more) {
        if (buffered == buffer.size()) {
            co_return error_kind::parse; // one header line longer than the buffer
        }
        auto [read_ec, n] = co_await sock.async_read_some(
            net::buffer(buffer.data() + buffered, buffer.size() - buffered), use_tuple);
        if (read_ec && read_ec != net::error::eof) {
            co_return error_kind::read;
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
        co_return parser.error() == response_parser::failure::truncated ? error_kind::read
                                                                        : error_kind::parse;
    }
    ++r.statuses[parser.status()];
    kept_alive = parser.keep_alive();
    co_return std::nullopt;
}

// One set-up lane: takes the next connection number until all are started.
net::awaitable<void> setup_lane(idle_run& r, std::size_t lane) {
    // Lifetime: this frame owns the response buffer for the lane's whole life.
    std::array<char, 16 * 1024> buffer{};
    while (!r.stopping && !r.setup_expired && r.started < r.options.connections) {
        ++r.started;
        auto sock = std::make_unique<tcp::socket>(r.ioc);
        r.in_setup[lane] = sock.get();
        bool kept_alive = false;
        const auto failed = co_await set_up(r, *sock, buffer, kept_alive);
        r.in_setup[lane] = nullptr;
        if (r.stopping) {
            break;
        }
        if (failed) {
            // A socket closed by the deadline fails with operation_aborted or
            // bad_descriptor: that is a timeout, whatever the step was.
            ++r.errors[static_cast<std::size_t>(r.setup_expired ? error_kind::timeout : *failed)];
        } else if (!kept_alive) {
            ++r.not_kept_alive;
        } else {
            r.held.push_back(std::move(sock));
        }
    }
    if (--r.lanes_running == 0) {
        r.setup_done.cancel();
        r.setup_deadline.cancel();
    }
}

// Counts held connections the peer has closed: a non-blocking peek that
// reads end-of-stream (0) or fails with anything but "would block".
std::uint64_t count_closed_by_peer(const idle_run& r) {
    std::uint64_t closed = 0;
    for (const auto& sock : r.held) {
        char byte = 0;
        const ssize_t n = ::recv(sock->native_handle(), &byte, 1, MSG_PEEK | MSG_DONTWAIT);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)) {
            ++closed;
        }
    }
    return closed;
}

std::string counts_json(const idle_run& r) {
    std::string out = "\"errors\":{";
    for (std::size_t k = 0; k < error_kind_count; ++k) {
        out += (k == 0 ? "\"" : ",\"") + std::string{error_kind_name(static_cast<error_kind>(k))} +
               "\":" + std::to_string(r.errors[k]);
    }
    out += "},\"not_kept_alive\":" + std::to_string(r.not_kept_alive) + ",\"status_codes\":{";
    bool first = true;
    for (const auto& [status, count] : r.statuses) {
        out += (first ? "\"" : ",\"") + std::to_string(status) + "\":" + std::to_string(count);
        first = false;
    }
    return out + "}";
}

net::awaitable<void> run_phases(idle_run& r) {
    const auto setup_start = clock_type::now();
    r.lanes_running = r.options.concurrency;
    r.in_setup.assign(static_cast<std::size_t>(r.options.concurrency), nullptr);
    for (std::size_t lane = 0; lane < r.in_setup.size(); ++lane) {
        net::co_spawn(r.ioc, setup_lane(r, lane), net::detached);
    }
    r.setup_done.expires_at(clock_type::time_point::max());
    co_await r.setup_done.async_wait(use_tuple);

    const double setup_s = std::chrono::duration<double>(clock_type::now() - setup_start).count();
    std::printf("{\"msg\":\"holding\",\"open\":%zu,\"failed\":%d,\"not_started\":%d,%s,"
                "\"setup_s\":%.3f}\n",
                r.held.size(), r.started - static_cast<int>(r.held.size()),
                r.options.connections - r.started, counts_json(r).c_str(), setup_s);
    std::fflush(stdout);

    const auto hold_start = clock_type::now();
    if (!r.stopping) {
        r.hold_timer.expires_after(r.options.hold);
        co_await r.hold_timer.async_wait(use_tuple);
    }
    const double held_s = std::chrono::duration<double>(clock_type::now() - hold_start).count();
    const std::uint64_t closed = count_closed_by_peer(r);
    std::printf("{\"msg\":\"done\",\"open\":%zu,\"still_open\":%llu,\"closed_by_peer\":%llu,"
                "\"held_s\":%.3f}\n",
                r.held.size(), static_cast<unsigned long long>(r.held.size() - closed),
                static_cast<unsigned long long>(closed), held_s);
    std::fflush(stdout);
    r.held.clear();
    error_code ignored;
    r.signals.cancel(ignored);
    r.setup_deadline.cancel();
}

} // namespace

int run_idle(std::span<char* const> args) {
    auto parsed = parse_idle_args(args);
    if (auto* problem = std::get_if<usage_problem>(&parsed)) {
        if (problem->message.empty()) {
            std::fputs(idle_usage.data(), stdout);
            return 0;
        }
        std::fprintf(stderr, "sluice-bench idle: %s\n", problem->message.c_str());
        std::fputs(idle_usage.data(), stderr);
        return 2;
    }
    const idle_options options = std::get<idle_options>(std::move(parsed));
    std::signal(SIGPIPE, SIG_IGN);

    idle_run r{options};
    {
        load_options request_shape;
        request_shape.url = options.url;
        r.request = build_request(request_shape);
    }
    {
        tcp::resolver resolver{r.ioc};
        error_code ec;
        const auto results =
            resolver.resolve(options.url.host, std::to_string(options.url.port), ec);
        if (ec || results.empty()) {
            std::fprintf(stderr, "sluice-bench idle: cannot resolve %s: %s\n",
                         options.url.host.c_str(), ec.message().c_str());
            return 1;
        }
        for (const auto& entry : results) {
            r.endpoints.push_back(entry.endpoint());
        }
    }

    r.signals.async_wait([&r](const error_code& ec, int) {
        if (ec) {
            return; // cancelled at the end of the run
        }
        r.stopping = true;
        r.close_in_setup();
        r.hold_timer.cancel();
    });
    r.setup_deadline.expires_after(options.timeout);
    r.setup_deadline.async_wait([&r](const error_code& ec) {
        if (ec) {
            return; // cancelled: set-up finished in time
        }
        r.setup_expired = true;
        r.close_in_setup();
    });
    net::co_spawn(r.ioc, run_phases(r), net::detached);
    r.ioc.run();
    return 0;
}

} // namespace sluice::bench
