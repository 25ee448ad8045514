#include "proxy/upstream_pool.hpp"

#include "proxy/read_hint.hpp"
#include "proxy/upstream_tls.hpp"

#include <algorithm>
#include <cerrno>
#include <sys/socket.h>

namespace sluice::proxy {
namespace {

// An idle connection must have nothing to read: a FIN (the upstream closed
// it, as Gunicorn does after each response) or stray bytes both make it
// unusable. One non-blocking peek tells.
bool still_open(upstream_connection& c) {
    char byte;
    const auto fd = c.stream.socket().native_handle();
    const auto n = ::recv(fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT);
    return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
}

} // namespace

upstream_connection::upstream_connection(boost::asio::io_context& io, block_pool* blocks,
                                         block_pool* large_blocks)
    : stream(io), buffer(blocks, large_blocks) {}
upstream_connection::~upstream_connection() = default;

std::unique_ptr<upstream_connection> upstream_pool::take(const server_state* server, bool verify) {
    const auto it = idle_.find(server);
    if (it == idle_.end())
        return nullptr;
    auto& list = it->second;
    while (!list.empty()) {
        auto conn = std::move(list.back());
        list.pop_back();
        --count_;
        if (!(verify || conn->verify_next || conn->watched) || still_open(*conn)) {
            conn->verify_next = false;
            if (conn->watched) {
                boost::system::error_code ignored;
                conn->stream.socket().cancel(ignored); // ends the idle watch
                conn->watched = false;
            }
            return conn;
        }
    }
    return nullptr;
}

void upstream_pool::put(std::unique_ptr<upstream_connection> conn) {
    auto& list = idle_[conn->server.get()];
    if (list.size() >= max_idle_per_server)
        return;                      // closes conn
    conn->buffer.release_if_empty(); // an idle connection holds no receive block
    conn->idle_since = std::chrono::steady_clock::now();
    ++conn->pool_round;
    list.push_back(std::move(conn));
    ++count_;
    arm_watch();
}

void upstream_pool::arm_watch() {
    if (watch_armed_)
        return;
    watch_armed_ = true;
    watch_timer_.expires_after(watch_after);
    // Lifetime: the timer is the pool's; cancelled or destroyed, it
    // completes with an error and touches nothing.
    watch_timer_.async_wait([this](boost::system::error_code ec) {
        if (ec)
            return;
        watch_armed_ = false;
        watch_settled();
    });
}

void upstream_pool::watch_settled() {
    const auto settled = std::chrono::steady_clock::now() - watch_after;
    bool fresh = false;
    for (auto& [server, list] : idle_)
        for (auto& conn : list) {
            if (conn->watched)
                continue;
            if (conn->idle_since <= settled)
                watch(*conn);
            else
                fresh = true;
        }
    if (fresh)
        arm_watch();
}

void upstream_pool::watch(upstream_connection& conn) {
    conn.watched = true;
    const auto round = conn.pool_round;
    const upstream_connection* raw = &conn;
    const server_state* server = conn.server.get();
    // Any end but a cancel (take() or closing) means the connection is done:
    // a byte to read, end of stream, or a reset. Lifetime: the pool outlives
    // its connections' pending operations (the worker closes every
    // connection before the pool goes); a cancelled watch does nothing.
    // The peek is made at once, whatever the connection's last read told
    // the event loop (read_hint.hpp): a close that came as that read
    // emptied the socket would otherwise go unseen until a request.
    mark_maybe_readable(conn.stream.socket());
    conn.stream.socket().async_receive(
        boost::asio::buffer(&conn.watch_byte, 1), boost::asio::socket_base::message_peek,
        [this, server, raw, round](boost::system::error_code ec, std::size_t) {
            if (ec != boost::asio::error::operation_aborted)
                on_readable(server, raw, round);
        });
}

void upstream_pool::on_readable(const server_state* server, const upstream_connection* conn,
                                std::uint64_t round) {
    const auto it = idle_.find(server);
    if (it == idle_.end())
        return;
    // Taken meanwhile (and maybe put back, with a new round): not this one.
    const auto found = std::find_if(it->second.begin(), it->second.end(), [&](const auto& c) {
        return c.get() == conn && c->pool_round == round;
    });
    if (found == it->second.end())
        return;
    it->second.erase(found); // closes it
    --count_;
}

void upstream_pool::retain(const std::vector<const server_state*>& servers) {
    for (auto it = idle_.begin(); it != idle_.end();) {
        if (std::find(servers.begin(), servers.end(), it->first) == servers.end()) {
            count_ -= it->second.size();
            it = idle_.erase(it);
        } else {
            ++it;
        }
    }
}

std::size_t upstream_pool::sweep(std::chrono::steady_clock::duration max_idle) {
    const auto now = std::chrono::steady_clock::now();
    for (auto it = idle_.begin(); it != idle_.end();) {
        auto& list = it->second;
        std::erase_if(list, [&](const std::unique_ptr<upstream_connection>& c) {
            const bool old = max_idle == std::chrono::steady_clock::duration::zero() ||
                             now - c->idle_since > max_idle;
            if (old)
                --count_;
            return old;
        });
        if (list.empty())
            it = idle_.erase(it);
        else
            ++it;
    }
    if (count_ == 0 && watch_armed_) {
        // Nothing left to watch: do not keep the worker's loop waiting.
        watch_timer_.cancel();
        watch_armed_ = false;
    }
    return count_;
}

} // namespace sluice::proxy
