#pragma once
// Moving a message (head and body) from one stream to another through a
// bounded buffer: the body is forwarded as it arrives, so memory per exchange
// is fixed whatever the body's size, and a slow reader slows the writer
// (back-pressure) instead of filling memory. Included only by the files that
// run exchanges (heavy: Asio and Beast).

#include "proxy/byte_buffer.hpp"
#include "proxy/http_parser.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/buffer.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/core/tcp_stream.hpp>

#include <chrono>
#include <string_view>
#include <tuple>
#include <vector>

namespace sluice::proxy {

inline constexpr auto use_tuple = boost::asio::as_tuple(boost::asio::use_awaitable);

enum class relay_outcome : std::uint8_t {
    complete,     // the whole body went through
    read_failed,  // the source closed or failed before the body ended
    write_failed, // the destination closed or failed
    timeout,      // the source sent nothing for read_timeout
    bad_framing,  // a malformed chunked body
    too_large,    // the body passed max_bytes
};

struct relay_result {
    relay_outcome outcome = relay_outcome::complete;
    std::uint64_t bytes = 0;   // body bytes taken from the source (with chunk framing)
    std::uint64_t payload = 0; // of which content (without chunk framing)
    bool head_written = false; // the head reached the destination
};

// Reused between exchanges so steady traffic allocates nothing.
struct relay_scratch {
    std::vector<std::string_view> pieces;
    std::vector<boost::asio::const_buffer> buffers;

    void swap(relay_scratch& other) noexcept {
        pieces.swap(other.pieces);
        buffers.swap(other.buffers);
    }
};

// A write that never waits, for destinations that offer one: a plain
// socket in non-blocking mode takes what it can now (so does a client's
// tls_stream, proxy/tls_stream.hpp). Other destinations (TLS to an
// upstream) take nothing here and are written asynchronously. Overloads
// for the exchange's own stream adapters live beside them (found by ADL).
template <typename Stream, typename Buffers>
std::size_t try_write_now(Stream&, const Buffers&, boost::system::error_code& ec) {
    ec = boost::asio::error::would_block;
    return 0;
}
template <typename Buffers>
std::size_t try_write_now(boost::beast::tcp_stream& s, const Buffers& b,
                          boost::system::error_code& ec) {
    if (!s.socket().non_blocking()) {
        ec = boost::asio::error::would_block;
        return 0;
    }
    return s.socket().send(b, 0, ec);
}

// The write that ends the body. A destination that closes right after it
// may hold its last segment back to leave with the FIN (a plain client
// connection after a closing response: client_sink in connection.cpp);
// elsewhere the same as try_write_now.
template <typename Stream, typename Buffers>
std::size_t try_write_last(Stream& s, const Buffers& b, boost::system::error_code& ec) {
    return try_write_now(s, b, ec);
}

// Drops the first `n` bytes of `b`.
inline void drop_front(std::vector<boost::asio::const_buffer>& b, std::size_t n) {
    std::size_t whole = 0;
    while (whole < b.size() && n >= b[whole].size()) {
        n -= b[whole].size();
        ++whole;
    }
    b.erase(b.begin(), b.begin() + static_cast<std::ptrdiff_t>(whole));
    if (n > 0 && !b.empty())
        b.front() += n;
}

// Reads ask for relay_chunk; once a read has filled all it asked for (a
// large body streaming in), for relay_buffer_limit, so big transfers take a
// quarter of the system calls; from the start when the body's bytes came
// with its head and Content-Length says more than a chunk follows. The
// block grows to that size only for them (not for a slow upload, whose
// head comes alone).
inline constexpr std::size_t relay_chunk = 16 * 1024;
inline constexpr std::size_t relay_buffer_limit = 64 * 1024;
// Reads relay_body takes without waiting before it lets the event loop run
// (16 x 64 KiB: a megabyte of a fast transfer).
inline constexpr int max_reads_without_wait = 16;

// Writes `head` to `dst`, then the body that follows it in `src`, delimited
// by `framing` (`length` bytes for content_length). `src_buf` holds bytes
// already read from `src`, starting with the body; on return the body's
// bytes have been consumed from it and whatever follows (a pipelined
// request) is left. The first body bytes go out with the head in one write.
// A read that never waits, the same way: a plain socket in non-blocking
// mode gives what it has now; would_block when it has nothing (or the
// source reads only asynchronously), and the caller then waits as usual.
template <typename Stream, typename Buffers>
std::size_t try_read_now(Stream&, const Buffers&, boost::system::error_code& ec) {
    ec = boost::asio::error::would_block;
    return 0;
}
template <typename Buffers>
std::size_t try_read_now(boost::beast::tcp_stream& s, const Buffers& b,
                         boost::system::error_code& ec) {
    if (!s.socket().non_blocking()) {
        ec = boost::asio::error::would_block;
        return 0;
    }
    return s.socket().receive(b, 0, ec);
}

// `dechunk`: strip chunked framing (for HTTP/1.0 clients). `max_bytes`: 0 or
// the most body bytes accepted. `stop`: when set, no further read or write
// is started (the outcome is then read_failed).
template <typename Src, typename Dst>
boost::asio::awaitable<relay_result>
relay_body(Src& src, byte_buffer& src_buf, Dst& dst, http::framing framing, std::uint64_t length,
           bool dechunk, std::chrono::milliseconds read_timeout,
           std::chrono::milliseconds write_timeout, std::uint64_t max_bytes, std::string_view head,
           relay_scratch& scratch, const bool* stop = nullptr) {
    namespace net = boost::asio;
    relay_result r;
    http::chunked_scanner scanner;
    std::uint64_t remaining = length;
    bool done = framing == http::framing::none;
    // A body already arriving, known to be larger than a chunk, is read in
    // the largest pieces from the start (64 KiB: one read after the head's,
    // not two).
    std::size_t want = framing == http::framing::content_length && !src_buf.empty() &&
                               length > src_buf.size() + relay_chunk
                           ? relay_buffer_limit
                           : relay_chunk;
    int reads_without_wait = 0;
    // A head with no body bytes behind it yet (an origin that writes its
    // head and its body separately): look for them once before the head
    // leaves, so that both go in one write and one segment. Not for a body
    // that ends with the connection, where a reset met here and an end met
    // later would read as a whole body. When nothing is there, the read
    // after the head's write waits at once (tried_read). The end of the
    // stream or an error there (an origin that closed after its head) ends
    // the relay before the head leaves: head_written stays false, so that
    // a response's caller can still answer for it (a 502 rather than a cut
    // response); a request's ends there.
    bool tried_read = false;
    if (!head.empty() && !done && src_buf.empty() && framing != http::framing::until_close &&
        (stop == nullptr || !*stop)) {
        auto [p, room] = src_buf.prepare(want, relay_buffer_limit);
        boost::system::error_code ec;
        const std::size_t n = try_read_now(src, net::buffer(p, room), ec);
        if (ec == net::error::would_block) {
            tried_read = true;
        } else if (ec) {
            r.outcome = relay_outcome::read_failed;
            co_return r;
        } else {
            src_buf.commit(n);
            if (n == room)
                want = relay_buffer_limit;
        }
    }
    for (;;) {
        // Forward what is buffered (possibly nothing, to send the head).
        std::size_t take = 0;
        scratch.buffers.clear();
        if (!head.empty())
            scratch.buffers.emplace_back(head.data(), head.size());
        const auto data = src_buf.data();
        if (!done && !data.empty()) {
            switch (framing) {
            case http::framing::content_length:
                take = static_cast<std::size_t>(std::min<std::uint64_t>(remaining, data.size()));
                remaining -= take;
                done = remaining == 0;
                scratch.buffers.emplace_back(data.data(), take);
                break;
            case http::framing::chunked: {
                scratch.pieces.clear();
                // Pieces are needed to de-chunk, and to hold the payload (not
                // the framing) against max_bytes.
                const bool want_pieces = dechunk || max_bytes > 0;
                const auto res = scanner.feed(data, want_pieces ? &scratch.pieces : nullptr);
                if (res.error) {
                    r.outcome = relay_outcome::bad_framing;
                    co_return r;
                }
                take = res.consumed;
                done = res.done;
                for (const auto piece : scratch.pieces)
                    r.payload += piece.size();
                if (dechunk) {
                    for (const auto piece : scratch.pieces)
                        if (!piece.empty())
                            scratch.buffers.emplace_back(piece.data(), piece.size());
                } else {
                    scratch.buffers.emplace_back(data.data(), take);
                }
                break;
            }
            case http::framing::until_close:
                take = data.size();
                scratch.buffers.emplace_back(data.data(), take);
                break;
            case http::framing::none:
                break;
            }
            r.bytes += take;
            if (framing != http::framing::chunked)
                r.payload += take;
            if (max_bytes > 0 && r.payload > max_bytes) {
                r.outcome = relay_outcome::too_large;
                co_return r;
            }
        }
        if (stop != nullptr && *stop) {
            r.outcome = relay_outcome::read_failed;
            co_return r;
        }
        if (const auto total = net::buffer_size(scratch.buffers); total > 0) {
            // Most writes go out whole at once: try that first, and wait
            // (with the write timeout) only for what the socket did not take.
            boost::system::error_code ec;
            const auto sent = done ? try_write_last(dst, scratch.buffers, ec)
                                   : try_write_now(dst, scratch.buffers, ec);
            if (ec && ec != net::error::would_block) {
                r.outcome = relay_outcome::write_failed;
                co_return r;
            }
            if (sent < total) {
                drop_front(scratch.buffers, sent);
                if constexpr (requires { dst.expires_after(write_timeout); })
                    dst.expires_after(write_timeout);
                auto [wec, n] = co_await net::async_write(dst, scratch.buffers, use_tuple);
                // A destination whose deadline outlives the write (the
                // client connection's) is told that the write has ended.
                if constexpr (requires { dst.expires_never(); })
                    dst.expires_never();
                if (wec) {
                    r.outcome = relay_outcome::write_failed;
                    co_return r;
                }
            }
            r.head_written = true;
        }
        src_buf.consume(take);
        head = {};
        if (done)
            co_return r;

        if (stop != nullptr && *stop) {
            r.outcome = relay_outcome::read_failed;
            co_return r;
        }
        // What has arrived is taken at once; only an empty socket is waited
        // for (with the read timeout, armed for that wait only). A body that
        // keeps arriving as fast as it leaves gives the worker's other
        // connections their turn every few reads.
        if (++reads_without_wait > max_reads_without_wait) {
            reads_without_wait = 0;
            co_await net::post(src.get_executor(), net::use_awaitable);
            if (stop != nullptr && *stop) { // set while this yielded: no cancel reached us
                r.outcome = relay_outcome::read_failed;
                co_return r;
            }
        }
        auto [p, room] = src_buf.prepare(want, relay_buffer_limit);
        boost::system::error_code ec = net::error::would_block;
        std::size_t n = 0;
        if (!std::exchange(tried_read, false))
            n = try_read_now(src, net::buffer(p, room), ec);
        if (ec == net::error::would_block) {
            reads_without_wait = 0;
            src.expires_after(read_timeout);
            std::tie(ec, n) = co_await src.async_read_some(net::buffer(p, room), use_tuple);
            if constexpr (requires { src.wait_done(); })
                src.wait_done();
        }
        if (n == room)
            want = relay_buffer_limit;
        if (ec) {
            if (framing == http::framing::until_close && ec == net::error::eof)
                co_return r;
            r.outcome = ec == boost::beast::error::timeout ? relay_outcome::timeout
                                                           : relay_outcome::read_failed;
            co_return r;
        }
        src_buf.commit(n);
    }
}

} // namespace sluice::proxy
