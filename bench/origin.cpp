// The test origin. One io_context per thread, each with its own SO_REUSEPORT
// acceptor on the same port, so the kernel spreads connections and no state is
// shared between threads except the counters in origin_state. Each accepted
// connection becomes one serve_connection coroutine (origin_session.cpp).
#include "bench/origin.hpp"

#include "bench/origin_session.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/error.hpp>

#include <charconv>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <pthread.h>

namespace sluice::bench {
namespace {

namespace net = boost::asio;
namespace beast = boost::beast;
using tcp = net::ip::tcp;

constexpr auto use_tuple = net::as_tuple(net::use_awaitable);

constexpr std::string_view origin_usage =
    "usage: sluice-bench origin --listen HOST:PORT [--name NAME] [--threads N]\n"
    "\n"
    "A fast HTTP/1.1 test upstream. Paths:\n"
    "  /, /small        short body \"hello from NAME\\n\"\n"
    "  /bytes/N         N bytes of the pattern 'a'..'z' repeated (byte i = 'a' + i % 26)\n"
    "  /echo            the request body streamed back\n"
    "  /headers         the request line, headers and TCP peer as JSON\n"
    "  /status/N        status N (200..599)\n"
    "  /delay/MS        200 after MS milliseconds\n"
    "  /health          200 \"ok\" or 503 \"down\"; POST /health/down, POST /health/up\n"
    "  /ws              WebSocket echo\n"
    "Every response carries X-Origin, X-Origin-Connection (per-process connection\n"
    "number) and X-Origin-Request-Count (requests served so far).\n"
    "Prints {\"msg\":\"listening\",\"address\":\"HOST:PORT\"} once listening (port 0 picks one).\n";

struct origin_options {
    tcp::endpoint listen;
    std::string name = "origin";
    int threads = 1;
};

void start_session(tcp::socket sock, const net::any_io_executor& executor, origin_state& state) {
    beast::error_code ignored;
    sock.set_option(tcp::no_delay(true), ignored);
    const std::uint64_t id = state.connections.fetch_add(1, std::memory_order_relaxed) + 1;
    net::co_spawn(executor, serve_connection(std::move(sock), state, id), net::detached);
}

// Accepts forever. After each asynchronous accept it also takes every
// connection already queued, without waiting: otherwise each accept costs a
// full pass of the scheduler behind every busy connection, and a burst of
// hundreds of connects waits up to a second in the listen queue.
net::awaitable<void> accept_loop(tcp::acceptor& acceptor, origin_state& state) {
    const net::any_io_executor executor = acceptor.get_executor();
    beast::error_code ec;
    acceptor.non_blocking(true, ec);
    for (;;) {
        auto [accept_ec, sock] = co_await acceptor.async_accept(use_tuple);
        if (accept_ec == net::error::operation_aborted || !acceptor.is_open()) {
            co_return;
        }
        if (accept_ec) {
            // EMFILE and friends: back off briefly instead of spinning.
            net::steady_timer pause{executor, std::chrono::milliseconds{10}};
            co_await pause.async_wait(use_tuple);
            continue;
        }
        start_session(std::move(sock), executor, state);
        for (int burst = 0; burst < 256; ++burst) {
            tcp::socket queued{executor};
            acceptor.accept(queued, ec);
            if (ec) {
                break; // would_block: the queue is empty
            }
            start_session(std::move(queued), executor, state);
        }
    }
}

// Opens an SO_REUSEPORT acceptor on `ep`. Returns an error code on failure.
beast::error_code open_acceptor(tcp::acceptor& acceptor, const tcp::endpoint& ep) {
    beast::error_code ec;
    acceptor.open(ep.protocol(), ec);
    if (!ec) {
        acceptor.set_option(net::socket_base::reuse_address(true), ec);
    }
    if (!ec) {
        using reuse_port = net::detail::socket_option::boolean<SOL_SOCKET, SO_REUSEPORT>;
        acceptor.set_option(reuse_port(true), ec);
    }
    if (!ec) {
        acceptor.bind(ep, ec);
    }
    if (!ec) {
        acceptor.listen(net::socket_base::max_listen_connections, ec);
    }
    return ec;
}

// Parses HOST:PORT or [V6]:PORT; "localhost" means 127.0.0.1.
std::optional<tcp::endpoint> parse_listen(std::string_view text) {
    const auto colon = text.rfind(':');
    if (colon == std::string_view::npos) {
        return std::nullopt;
    }
    std::string host{text.substr(0, colon)};
    const std::string_view port_text = text.substr(colon + 1);
    if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
        host = host.substr(1, host.size() - 2);
    }
    if (host.empty() || host == "localhost") {
        host = "127.0.0.1";
    }
    unsigned port = 0;
    const auto [end, pec] =
        std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
    if (pec != std::errc{} || end != port_text.data() + port_text.size() || port > 65535) {
        return std::nullopt;
    }
    beast::error_code ec;
    const auto addr = net::ip::make_address(host, ec);
    if (ec) {
        return std::nullopt;
    }
    return tcp::endpoint{addr, static_cast<unsigned short>(port)};
}

// Parses the origin's arguments. Returns nullopt after printing the problem
// (exit 2) or the usage (exit 0, signalled through `help`).
std::optional<origin_options> parse_origin_args(std::span<char* const> args, bool& help) {
    origin_options options;
    bool have_listen = false;
    for (std::size_t i = 0; i < args.size(); ++i) {
        const std::string_view arg = args[i];
        const bool has_value = i + 1 < args.size();
        if (arg == "--help" || arg == "-h") {
            help = true;
            return std::nullopt;
        }
        if ((arg == "--listen" || arg == "--name" || arg == "--threads") && !has_value) {
            std::fprintf(stderr, "sluice-bench origin: %s needs a value\n", args[i]);
            return std::nullopt;
        }
        if (arg == "--listen") {
            const auto ep = parse_listen(args[++i]);
            if (!ep) {
                std::fprintf(stderr,
                             "sluice-bench origin: --listen: expected HOST:PORT, got \"%s\"\n",
                             args[i]);
                return std::nullopt;
            }
            options.listen = *ep;
            have_listen = true;
        } else if (arg == "--name") {
            options.name = args[++i];
        } else if (arg == "--threads") {
            const std::string_view value = args[++i];
            int n = 0;
            const auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), n);
            if (ec != std::errc{} || end != value.data() + value.size() || n < 1 || n > 256) {
                std::fprintf(stderr,
                             "sluice-bench origin: --threads: expected 1..256, got \"%s\"\n",
                             args[i]);
                return std::nullopt;
            }
            options.threads = n;
        } else {
            std::fprintf(stderr, "sluice-bench origin: unknown argument '%s'\n", args[i]);
            return std::nullopt;
        }
    }
    if (!have_listen) {
        std::fputs("sluice-bench origin: --listen HOST:PORT is required\n", stderr);
        return std::nullopt;
    }
    return options;
}

} // namespace

int run_origin(std::span<char* const> args) {
    bool help = false;
    const auto options = parse_origin_args(args, help);
    if (!options) {
        std::fputs(origin_usage.data(), help ? stdout : stderr);
        return help ? 0 : 2;
    }

    // Signals are taken synchronously by this thread (sigwait below); every
    // worker inherits the blocked mask, so none of them is interrupted.
    sigset_t stop_signals;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGINT);
    sigaddset(&stop_signals, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
    std::signal(SIGPIPE, SIG_IGN);

    origin_state state;
    state.name = options->name;
    prepare_origin_data();

    struct worker {
        net::io_context ioc{1};
        tcp::acceptor acceptor{ioc};
    };
    std::vector<std::unique_ptr<worker>> workers;
    tcp::endpoint bound = options->listen;
    for (int i = 0; i < options->threads; ++i) {
        auto w = std::make_unique<worker>();
        if (const auto ec = open_acceptor(w->acceptor, bound)) {
            std::fprintf(stderr, "sluice-bench origin: cannot listen on %s: %s\n",
                         endpoint_string(bound).c_str(), ec.message().c_str());
            return 1;
        }
        // With port 0 the first bind picks the port; the rest join it.
        bound = w->acceptor.local_endpoint();
        net::co_spawn(w->ioc, accept_loop(w->acceptor, state), net::detached);
        workers.push_back(std::move(w));
    }

    std::vector<std::thread> threads;
    for (auto& w : workers) {
        threads.emplace_back([&ioc = w->ioc] { ioc.run(); });
    }
    std::printf("{\"msg\":\"listening\",\"address\":\"%s\"}\n", endpoint_string(bound).c_str());
    std::fflush(stdout);

    int signal_number = 0;
    sigwait(&stop_signals, &signal_number);
    for (auto& w : workers) {
        w->ioc.stop();
    }
    for (auto& t : threads) {
        t.join();
    }
    std::fflush(stdout);
    // Skip tearing down io_contexts that still own suspended connection
    // coroutines: nothing is left to flush and exit must be prompt.
    std::_Exit(0);
}

} // namespace sluice::bench
