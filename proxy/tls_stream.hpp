#pragma once
// A client connection's TLS layer: an OpenSSL SSL object that reads and
// writes the socket itself (through a socket BIO, non-blocking), over a
// plain_stream whose deadline guards every wait. In place of Asio's
// ssl::stream (with Beast's ssl_stream around it), which runs each record
// through a BIO pair and buffers of its own: there every read copies the
// ciphertext twice and every operation is a composed operation with a
// handler allocation, even when the bytes are already there.
//
// An operation first tries OpenSSL at once. When OpenSSL needs the socket
// (SSL_ERROR_WANT_READ / WANT_WRITE), it waits for readiness through the
// plain_stream (which arms the deadline) and tries again; when it
// completes without waiting, its completion is posted, never run inside the
// initiating call. try_read_now/try_write_now (relay.hpp) never wait.
// A read and a write may be outstanding together (a request body streaming
// in while the response goes out), as on any socket: OpenSSL allows the two
// to interleave on one thread, each retried with the same arguments.
//
// Errors as Asio's stream reports them: a close_notify ends reads with
// error::eof; a connection that ends without one, with
// ssl::error::stream_truncated; OpenSSL's errors in the ssl category.
// Included only by the files that run exchanges (Asio).

#include "proxy/plain_stream.hpp"

#include <boost/asio/compose.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/asio/ssl/stream_base.hpp>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <iterator>
#include <memory>
#include <new>
#include <type_traits>
#include <utility>

namespace sluice::proxy {

class tls_stream {
  public:
    using executor_type = plain_stream::executor_type;
    using next_layer_type = plain_stream;

    // Writes gathered into one record when they are this small together
    // (a response head and the first body bytes): one record, one syscall.
    static constexpr std::size_t gather_limit = 16 * 1024;

    tls_stream(plain_stream next, boost::asio::ssl::context& ctx)
        : next_(std::move(next)), ssl_(SSL_new(ctx.native_handle())) {
        if (!ssl_)
            throw std::bad_alloc();
        // As Asio's stream sets them but for SSL_MODE_RELEASE_BUFFERS, and
        // read-ahead: a record (or several) in one read() instead of a
        // header read and a body read. Released buffers (17 KiB each for
        // reading and writing) would be freed whenever they empty and
        // allocated again for the next record, a malloc and a free of each
        // per request; they are freed when the connection goes idle
        // instead (release_idle_memory), and between records in a tunnel.
        SSL_set_mode(ssl_.get(),
                     SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
        SSL_set_read_ahead(ssl_.get(), 1);
        // OpenSSL's reads and writes must not block: plain_stream made the
        // socket non-blocking. The socket BIO writes with write(2): the
        // process ignores SIGPIPE.
        if (SSL_set_fd(ssl_.get(), next_.socket().native_handle()) != 1)
            throw std::bad_alloc();
    }
    // Movable only before use (the session takes it whole).
    tls_stream(tls_stream&& other) noexcept
        : next_(std::move(other.next_)), ssl_(std::move(other.ssl_)),
          gather_(std::move(other.gather_)), pending_gathered_(other.pending_gathered_),
          write_failed_(other.write_failed_), want_(other.want_) {}
    tls_stream& operator=(tls_stream&&) = delete;

    executor_type get_executor() { return next_.get_executor(); }
    plain_stream& next_layer() { return next_; }
    SSL* native_handle() { return ssl_.get(); }
    // Whether OpenSSL holds bytes read from the socket, decrypted or not
    // (read ahead: possibly only part of a record, which a read cannot
    // return without the socket).
    bool has_pending() const { return SSL_has_pending(ssl_.get()) == 1; }
    // Frees the gather block unless a write that waits holds it, and
    // OpenSSL's record buffers unless they hold bytes (a connection waiting
    // for its next request need not keep them; OpenSSL allocates them
    // again for the next record). Only between records: OpenSSL before
    // 3.0.14 freed the read buffer under a record whose header had come
    // without its body (CVE-2024-4741), and a distribution's backport
    // keeps the old version number.
    void release_idle_memory() {
        if (pending_gathered_ == 0)
            gather_.reset();
        if (!has_pending() && std::strcmp(SSL_rstate_string(ssl_.get()), "RH") == 0)
            SSL_free_buffers(ssl_.get());
    }
    // For a connection that becomes a tunnel: mostly idle and long-lived
    // (a WebSocket), it holds OpenSSL's record buffers only while a record
    // is on its way (the mode frees them at a record's end; what is held
    // now goes at once).
    void release_buffers_between_records() {
        SSL_set_mode(ssl_.get(), SSL_MODE_RELEASE_BUFFERS);
        release_idle_memory();
    }
    // Sends close_notify, as a party must before closing its write side
    // (RFC 8446 6.1): a client reading a response that ends with the
    // connection tells by it that the response is whole. Never waits:
    // returns true when the socket has no room for the alert now (OpenSSL
    // holds it; call again once the socket is writable), false when it went
    // out or cannot be sent (the socket closed, a write failed, the
    // handshake not done). (A connection shut down this way also keeps its
    // session: one that is not is removed from the context's cache when
    // freed, under the context's lock.)
    bool send_close_notify() {
        boost::system::error_code ec;
        if (closed(ec) || write_failed_ || SSL_is_init_finished(ssl_.get()) != 1)
            return false;
        before_call();
        const int r = SSL_shutdown(ssl_.get());
        const bool again = r < 0 && SSL_get_error(ssl_.get(), r) == SSL_ERROR_WANT_WRITE;
        ERR_clear_error();
        return again;
    }
    // What the last operation that failed with would_block waits for.
    boost::asio::socket_base::wait_type want() const { return want_; }

    // --- operations that never wait ------------------------------------------

    // One SSL_read; would_block when OpenSSL needs the socket first.
    std::size_t read_now(boost::asio::mutable_buffer b, boost::system::error_code& ec) {
        std::size_t n = 0;
        if (!closed(ec))
            ec = read_once(b, n);
        return n;
    }
    // One SSL_write of the buffers' first bytes (gathered when small).
    template <typename Buffers>
    std::size_t write_now(const Buffers& buffers, boost::system::error_code& ec) {
        std::size_t n = 0;
        if (!closed(ec))
            ec = write_once(flatten(buffers), n);
        return n;
    }

    // --- asynchronous operations ---------------------------------------------

    template <typename Token>
    auto async_handshake(boost::asio::ssl::stream_base::handshake_type type, Token&& token) {
        if (type == boost::asio::ssl::stream_base::server)
            SSL_set_accept_state(ssl_.get());
        else
            SSL_set_connect_state(ssl_.get());
        return boost::asio::async_compose<Token, void(boost::system::error_code)>(
            op<handshake_step>{this, {}}, token, next_.socket());
    }
    template <typename Buffers, typename Token>
    auto async_read_some(const Buffers& buffers, Token&& token) {
        const boost::asio::mutable_buffer first = *boost::asio::buffer_sequence_begin(buffers);
        return boost::asio::async_compose<Token, void(boost::system::error_code, std::size_t)>(
            op<read_step>{this, {first}}, token, next_.socket());
    }
    template <typename Buffers, typename Token>
    auto async_write_some(const Buffers& buffers, Token&& token) {
        // Gathered once: a retry after a wait must offer OpenSSL the same bytes.
        return boost::asio::async_compose<Token, void(boost::system::error_code, std::size_t)>(
            op<write_step>{this, {flatten(buffers)}}, token, next_.socket());
    }

  private:
    struct ssl_free {
        void operator()(SSL* s) const { SSL_free(s); }
    };

    // What one attempt of an operation does.
    struct handshake_step {
        static constexpr bool has_size = false;
        boost::system::error_code operator()(tls_stream& s, std::size_t&) const {
            before_call();
            const int r = SSL_do_handshake(s.ssl_.get());
            return r == 1 ? boost::system::error_code{} : s.failure(r);
        }
    };
    struct read_step {
        static constexpr bool has_size = true;
        boost::asio::mutable_buffer b;
        boost::system::error_code operator()(tls_stream& s, std::size_t& n) const {
            return s.read_once(b, n);
        }
    };
    struct write_step {
        static constexpr bool has_size = true;
        boost::asio::const_buffer b;
        boost::system::error_code operator()(tls_stream& s, std::size_t& n) const {
            return s.write_once(b, n);
        }
    };

    boost::system::error_code read_once(boost::asio::mutable_buffer b, std::size_t& n) {
        if (b.size() == 0)
            return {};
        before_call();
        const int r = SSL_read_ex(ssl_.get(), b.data(), b.size(), &n);
        return r == 1 ? boost::system::error_code{} : failure(r);
    }
    boost::system::error_code write_once(boost::asio::const_buffer b, std::size_t& n) {
        if (write_failed_)
            return boost::asio::error::broken_pipe;
        if (b.size() == 0)
            return {};
        before_call();
        const int r = SSL_write_ex(ssl_.get(), b.data(), b.size(), &n);
        const auto ec = r == 1 ? boost::system::error_code{} : failure(r);
        write_failed_ = ec && ec != boost::asio::error::would_block;
        // OpenSSL now holds a record of these bytes and must be offered at
        // least as many again: remember how many when they were gathered.
        pending_gathered_ =
            ec == boost::asio::error::would_block && b.data() == gather_.get() ? b.size() : 0;
        return ec;
    }

    template <typename Step> struct op {
        tls_stream* s;
        Step step;
        bool waited = false;
        bool done = false; // completed at once; its completion was posted
        boost::system::error_code ec{};
        std::size_t n = 0;

        template <typename Self>
        void operator()(Self& self, boost::system::error_code wait_ec = {}) {
            if (!done) {
                if (wait_ec) {
                    // The wait failed: the socket closed (a deadline) or
                    // cancelled. A write OpenSSL holds is then never
                    // completed, so no later write may follow it.
                    ec = wait_ec;
                    if constexpr (std::is_same_v<Step, write_step>)
                        s->write_failed_ = true;
                } else if (!s->closed(ec)) {
                    ec = step(*s, n);
                    if (ec == boost::asio::error::would_block) {
                        waited = true;
                        ec = {};
                        s->next_.async_wait(s->want_, std::move(self));
                        return;
                    }
                }
                if (!waited) {
                    // Never inside the initiating call.
                    done = true;
                    boost::asio::post(s->get_executor(), std::move(self));
                    return;
                }
            }
            if constexpr (Step::has_size)
                self.complete(ec, n);
            else
                self.complete(ec);
        }
    };

    // The buffers as one: the first alone when it is large or alone;
    // otherwise as many as fit in gather_limit, copied together. While a
    // gathered write waits, the same gathered bytes again: the caller
    // offers the same buffers (or, through net::async_write, their first
    // sixteen only, which may be fewer bytes than OpenSSL holds).
    template <typename Buffers> boost::asio::const_buffer flatten(const Buffers& buffers) {
        if (pending_gathered_ > 0)
            return {gather_.get(), pending_gathered_};
        auto it = boost::asio::buffer_sequence_begin(buffers);
        const auto end = boost::asio::buffer_sequence_end(buffers);
        if (it == end)
            return {};
        const boost::asio::const_buffer first = *it;
        if (std::next(it) == end || first.size() >= gather_limit / 2)
            return first;
        if (!gather_)
            gather_ = std::make_unique_for_overwrite<char[]>(gather_limit);
        std::size_t used = 0;
        for (; it != end && used < gather_limit; ++it) {
            const boost::asio::const_buffer piece = *it;
            const auto take = std::min(piece.size(), gather_limit - used);
            std::memcpy(gather_.get() + used, piece.data(), take);
            used += take;
        }
        return {gather_.get(), used};
    }

    // OpenSSL knows the socket by its descriptor only: once the socket is
    // closed (a deadline, the session ending) the number may already be
    // another connection's, so nothing may reach OpenSSL's reads and writes.
    bool closed(boost::system::error_code& ec) const {
        if (next_.socket().is_open())
            return false;
        ec = boost::asio::error::bad_descriptor;
        return true;
    }

    // SSL_get_error reads the thread's error queue and errno: both must be
    // clear of what came before the call.
    static void before_call() {
        ERR_clear_error();
        errno = 0;
    }

    // An SSL call's failure `r` as an error code; would_block (with want_
    // set) when OpenSSL waits for the socket.
    boost::system::error_code failure(int r) {
        namespace net = boost::asio;
        const int e = SSL_get_error(ssl_.get(), r);
        switch (e) {
        case SSL_ERROR_WANT_READ:
            want_ = net::socket_base::wait_read;
            return net::error::would_block;
        case SSL_ERROR_WANT_WRITE:
            want_ = net::socket_base::wait_write;
            return net::error::would_block;
        case SSL_ERROR_ZERO_RETURN:
            return net::error::eof;
        case SSL_ERROR_SYSCALL: {
            const int err = errno;
            ERR_clear_error();
            if (err == 0)
                return net::ssl::error::stream_truncated;
            return {err, boost::system::system_category()};
        }
        default: {
            const unsigned long code = ERR_peek_error(); // the first, as Asio reports
            ERR_clear_error();
            if (ERR_GET_LIB(code) == ERR_LIB_SSL &&
                ERR_GET_REASON(code) == SSL_R_UNEXPECTED_EOF_WHILE_READING)
                return net::ssl::error::stream_truncated;
            if (code == 0)
                return net::ssl::error::unspecified_system_error;
            return {static_cast<int>(code), net::error::get_ssl_category()};
        }
        }
    }

    plain_stream next_;
    std::unique_ptr<SSL, ssl_free> ssl_;
    std::unique_ptr<char[]> gather_;   // made on the first gathered write
    std::size_t pending_gathered_ = 0; // gather_'s bytes of a write that waits
    bool write_failed_ = false;        // a write failed: every later one fails too
    boost::asio::socket_base::wait_type want_ = boost::asio::socket_base::wait_read;
};

// Reads and writes that never wait (relay.hpp).
template <typename Buffers>
std::size_t try_read_now(tls_stream& s, const Buffers& b, boost::system::error_code& ec) {
    return s.read_now(*boost::asio::buffer_sequence_begin(b), ec);
}
template <typename Buffers>
std::size_t try_write_now(tls_stream& s, const Buffers& b, boost::system::error_code& ec) {
    return s.write_now(b, ec);
}

} // namespace sluice::proxy
