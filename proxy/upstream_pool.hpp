#pragma once
// A worker's idle upstream connections, per server. Owned by one worker and
// used only on its thread: no lock. Connections are taken LIFO (the most
// recently used is the least likely to have been closed by the upstream).

#include "proxy/byte_buffer.hpp"
#include "proxy/server_state.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/beast/core/tcp_stream.hpp>

#include <chrono>
#include <memory>
#include <unordered_map>
#include <vector>

namespace sluice::proxy {

struct upstream_tls_stream; // proxy/upstream_tls.hpp

struct upstream_connection {
    explicit upstream_connection(boost::asio::io_context& io);
    ~upstream_connection();
    upstream_connection(const upstream_connection&) = delete;
    upstream_connection& operator=(const upstream_connection&) = delete;

    boost::beast::tcp_stream stream;
    std::unique_ptr<upstream_tls_stream> tls; // HTTPS upstreams: TLS over `stream`
    byte_buffer buffer;                       // bytes read from the upstream not yet relayed
    std::shared_ptr<server_state> server;
    std::chrono::steady_clock::time_point idle_since;
    std::uint64_t requests = 0;   // exchanges completed on this connection
    std::uint64_t pool_round = 0; // which stay in the pool a watch belongs to
};

class upstream_pool {
  public:
    // An idle connection to `server` that still looks open, or nullptr.
    // Connections the upstream closed while idle are dropped on the way.
    std::unique_ptr<upstream_connection> take(const server_state* server);

    // Keeps `conn` for reuse; it must have completed its last exchange.
    // While it waits, it is watched: the moment the upstream closes it (or
    // sends anything), it is closed and forgotten, not held in CLOSE_WAIT
    // until a request or the sweep comes by.
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

    static constexpr std::size_t max_idle_per_server = 256;
    std::unordered_map<const server_state*, std::vector<std::unique_ptr<upstream_connection>>>
        idle_;
    std::size_t count_ = 0;
};

} // namespace sluice::proxy
