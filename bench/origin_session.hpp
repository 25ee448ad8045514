// One test-origin connection: read a request, route on its path, answer,
// repeat while keep-alive (the paths are listed in bench/README.md).
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>

#include <atomic>
#include <cstdint>
#include <string>

namespace sluice::bench {

// Process-wide state, shared by every thread's connections.
struct origin_state {
    // Written once at start-up, then only read.
    std::string name;
    // Written on every accepted connection.
    alignas(64) std::atomic<std::uint64_t> connections{0};
    // Written on every request.
    alignas(64) std::atomic<std::uint64_t> requests{0};
    // Written only by POST /health/{up,down}.
    alignas(64) std::atomic<bool> healthy{true};
};

// Serves one accepted connection until the peer closes, an error, a
// Connection: close, or a WebSocket session ends. The coroutine frame owns
// the socket; `state` must outlive it (it lives for the whole process).
boost::asio::awaitable<void> serve_connection(boost::asio::ip::tcp::socket sock,
                                              origin_state& state, std::uint64_t id);

// "127.0.0.1:8080" or "[::1]:8080".
std::string endpoint_string(const boost::asio::ip::tcp::endpoint& ep);

// Builds the static /bytes/N pattern, so the first requests on several
// threads do not race to do it. Call once before serving.
void prepare_origin_data();

} // namespace sluice::bench
