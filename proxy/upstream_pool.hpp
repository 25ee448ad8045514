#pragma once
// A worker's idle upstream connections, per server. Owned by one worker and
// used only on its thread: no lock. Connections are taken LIFO (the most
// recently used is the least likely to have been closed by the upstream).
//
// A connection that stays idle is watched (a pending one-byte peek): the
// moment the upstream closes it (or sends anything), it is closed and
// forgotten, not held in CLOSE_WAIT until a request or the sweep comes by.
// The watch starts only once the connection has been idle for
// `watch_after`: under load a connection is taken again within
// microseconds, and a watch started at every return would cost a system
// call per request (the peek, made at once, or an epoll re-arm for a
// readiness wait).

#include "proxy/byte_buffer.hpp"
#include "proxy/server_state.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core/tcp_stream.hpp>

#include <chrono>
#include <memory>
#include <unordered_map>
#include <vector>

namespace sluice::proxy {

struct upstream_tls_stream; // proxy/upstream_tls.hpp

struct upstream_connection {
    // `blocks`, `large_blocks`: where `buffer` takes its blocks (may be
    // null; see byte_buffer).
    upstream_connection(boost::asio::io_context& io, block_pool* blocks, block_pool* large_blocks);
    ~upstream_connection();
    upstream_connection(const upstream_connection&) = delete;
    upstream_connection& operator=(const upstream_connection&) = delete;

    boost::beast::tcp_stream stream;
    std::unique_ptr<upstream_tls_stream> tls; // HTTPS upstreams: TLS over `stream`
    byte_buffer buffer; // bytes read from the upstream not yet relayed; no block while pooled
    std::shared_ptr<server_state> server;
    std::chrono::steady_clock::time_point idle_since;
    std::uint64_t requests = 0;   // exchanges completed on this connection
    std::uint64_t pool_round = 0; // which stay in the pool a watch belongs to
    bool watched = false;         // the idle watch is pending
    bool verify_next = false;     // peek before the next reuse (see take())
    bool read_short = false;      // the last head read emptied the socket (read_hint.hpp)
    char watch_byte = 0;          // where the idle watch peeks
};

class upstream_pool {
  public:
    static constexpr auto watch_after = std::chrono::milliseconds(100);

    explicit upstream_pool(boost::asio::io_context& io) : watch_timer_(io) {}

    // An idle connection to `server`, or nullptr. Connections whose watch
    // has run are gone already. A non-blocking peek finds the rest that are
    // closed or hold stray bytes; it is made when `verify` is set (a request
    // that could not be retried on a fresh connection), when the connection
    // asked for it (verify_next: its last response had no body, the answer
    // a careless upstream is most likely to follow with stray bytes), and
    // for a watched connection (idle 100 ms or more, off the hot path; its
    // watch may have fired without having run yet). A retryable request on
    // a busy connection skips it: a close is then found by the exchange and
    // retried.
    std::unique_ptr<upstream_connection> take(const server_state* server, bool verify);

    // Keeps `conn` for reuse; it must have completed its last exchange.
    // It is watched once it has been idle for watch_after.
    void put(std::unique_ptr<upstream_connection> conn);

    // Closes connections idle longer than `max_idle` (and all of them when
    // max_idle is zero). Returns how many are left.
    std::size_t sweep(std::chrono::steady_clock::duration max_idle);

    std::size_t idle_count() const { return count_; }

    // Closes the idle connections of every server not in `servers`.
    void retain(const std::vector<const server_state*>& servers);

  private:
    // The watch of `conn` (in the pool since `round`) saw it readable.
    void on_readable(const server_state* server, const upstream_connection* conn,
                     std::uint64_t round);
    // Starts the watch of every connection idle for watch_after; runs
    // again while some are still too fresh.
    void watch_settled();
    // Arms watch_timer_ (once: does nothing while it is armed).
    void arm_watch();
    // Starts the idle watch of pooled `conn`: a pending one-byte peek whose
    // completion (anything but a cancel) drops it from the pool.
    void watch(upstream_connection& conn);

    boost::asio::steady_timer watch_timer_;
    bool watch_armed_ = false;

    static constexpr std::size_t max_idle_per_server = 256;
    std::unordered_map<const server_state*, std::vector<std::unique_ptr<upstream_connection>>>
        idle_;
    std::size_t count_ = 0;
};

} // namespace sluice::proxy
