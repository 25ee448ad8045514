#pragma once
// A client connection's TCP layer: the socket and one deadline, in place of
// Beast's tcp_stream (under TLS too, as the TLS stream's next layer). The
// tcp_stream keeps its state in a shared block with three timers, built and
// torn down on every connection, and arms a timer around each operation;
// this stream makes its one timer on first use and arms it once per
// deadline, at the first asynchronous operation after the deadline was set.
// Included only by the files that run exchanges (Asio).
//
// The deadline works as the tcp_stream's does for the session's purposes:
// set with expires_after/expires_at, cleared with expires_never; when it
// passes with the timer armed, the socket is closed, so whatever is pending
// on it ends (operation_aborted) and what follows fails (timed_out() then
// says why). Unlike the tcp_stream's, it stays armed after the operation
// that armed it has ended, until it is cleared or passes: its owner clears
// it when that operation ends (before, say, a long wait elsewhere).
// Setting it anew while armed re-arms it for what may still be waiting.
// Operations that complete without waiting (the non-blocking
// try_read_now/try_write_now) never arm it.
//
// Lifetime: the timer's handler refers to this stream. Its owner must let
// every wait's handler run before destroying it (expires_never(), then
// yield until waits() is 0); a handler that finds its wait cancelled
// touches nothing but the count.

#include <boost/asio/any_io_executor.hpp>
#include <boost/assert.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>

#include <chrono>
#include <cstdint>
#include <optional>
#include <utility>

namespace sluice::proxy {

class plain_stream {
  public:
    using executor_type = boost::asio::any_io_executor;
    using socket_type = boost::asio::ip::tcp::socket;
    using clock = std::chrono::steady_clock;

    // The socket is non-blocking from here on (Asio would make it so only at
    // its first asynchronous operation): try_read_now/try_write_now, the TLS
    // layer's reads and writes and the session's receive between requests
    // must never block the worker. Accepted sockets come so already
    // (adopt_client_socket, worker.cpp); one that cannot be made so is
    // closed (nothing is served).
    explicit plain_stream(socket_type socket) : socket_(std::move(socket)) {
        boost::system::error_code ec;
        if (!socket_.non_blocking())
            socket_.non_blocking(true, ec);
        if (ec)
            socket_.close(ec);
    }
    // Movable only before a deadline was set (the session takes it whole).
    plain_stream(plain_stream&& other) noexcept : socket_(std::move(other.socket_)) {
        BOOST_ASSERT(!other.timer_ && !other.set_);
    }
    plain_stream& operator=(plain_stream&&) = delete;

    executor_type get_executor() { return socket_.get_executor(); }
    socket_type& socket() { return socket_; }
    const socket_type& socket() const { return socket_; }

    void expires_after(clock::duration d) { expires_at(clock::now() + d); }
    void expires_at(clock::time_point t) {
        if (armed_ && t == deadline_)
            return; // (the linger loop sets the same one before each read)
        deadline_ = t;
        set_ = true;
        if (armed_) {
            // Armed for another deadline: what may still wait gets this one.
            disarm();
            arm();
        }
    }
    void expires_never() {
        set_ = false;
        if (armed_)
            disarm();
    }
    // Whether the socket was closed because a deadline passed.
    bool timed_out() const { return timed_out_; }
    // Timer handlers not yet run (see Lifetime above).
    int waits() const { return waits_; }

    // The socket, for another owner; the deadline is cleared.
    socket_type release_socket() {
        expires_never();
        return std::move(socket_);
    }

    template <typename Buffers, typename Token>
    auto async_read_some(const Buffers& b, Token&& token) {
        arm();
        return socket_.async_read_some(b, std::forward<Token>(token));
    }
    template <typename Buffers, typename Token>
    auto async_write_some(const Buffers& b, Token&& token) {
        arm();
        return socket_.async_write_some(b, std::forward<Token>(token));
    }
    // Readiness, for a layer above that does its own reads and writes (TLS).
    template <typename Token>
    auto async_wait(boost::asio::socket_base::wait_type w, Token&& token) {
        arm();
        return socket_.async_wait(w, std::forward<Token>(token));
    }

  private:
    void arm() {
        if (!set_ || armed_)
            return;
        armed_ = true;
        if (!timer_)
            timer_.emplace(socket_.get_executor());
        timer_->expires_at(deadline_);
        ++waits_;
        timer_->async_wait([this, round = ++round_](boost::system::error_code ec) {
            --waits_;
            if (ec || round != round_)
                return;
            armed_ = false;
            set_ = false;
            timed_out_ = true;
            boost::system::error_code ignored;
            socket_.close(ignored);
        });
    }
    void disarm() {
        armed_ = false;
        ++round_; // a wakeup already due must not close the socket
        timer_->cancel();
    }

    socket_type socket_;
    std::optional<boost::asio::steady_timer> timer_; // made when first armed
    clock::time_point deadline_{};
    std::uint64_t round_ = 0; // tells a stale wakeup from the current one
    int waits_ = 0;
    bool set_ = false;   // a deadline is set
    bool armed_ = false; // the timer waits for it
    bool timed_out_ = false;
};

// Reads and writes that never wait (relay.hpp): the socket is non-blocking
// (see the constructor).
template <typename Buffers>
std::size_t try_read_now(plain_stream& s, const Buffers& b, boost::system::error_code& ec) {
    return s.socket().receive(b, 0, ec);
}
template <typename Buffers>
std::size_t try_write_now(plain_stream& s, const Buffers& b, boost::system::error_code& ec) {
    return s.socket().send(b, 0, ec);
}

} // namespace sluice::proxy
