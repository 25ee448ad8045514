// tls_stream (proxy/tls_stream.hpp) on a real loopback connection, a
// tls_stream in client mode at the other end: handshake, reads and
// gathered writes, how a connection's end is reported, the deadline of the
// plain_stream under it, a large write to a slow reader, and completions
// that are never run inside the initiating call.

#include "proxy/tls_stream.hpp"

#include "self_signed.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>

#include <unistd.h>

#include <catch2/catch.hpp>

#include <algorithm>
#include <csignal>
#include <array>
#include <chrono>
#include <optional>
#include <string>
#include <vector>

namespace {

namespace net = boost::asio;
namespace ssl = boost::asio::ssl;
using tcp = net::ip::tcp;
using sluice::proxy::plain_stream;
using sluice::proxy::tls_stream;
using namespace std::chrono_literals;
using error_code = boost::system::error_code;

// A server context with a fresh self-signed P-256 certificate.
ssl::context server_context() {
    ssl::context ctx(ssl::context::tls_server);
    sluice::test::use_self_signed_p256(ctx.native_handle(), "stream.test");
    return ctx;
}

// `server` and `client`, TLS over a connected pair on 127.0.0.1, handshaken.
struct tls_pair {
    net::io_context io;
    ssl::context server_ctx = server_context();
    ssl::context client_ctx{ssl::context::tls_client};
    std::optional<tls_stream> server;
    std::optional<tls_stream> client;

    tls_pair() {
        std::signal(SIGPIPE, SIG_IGN); // (as the proxy: tls_stream writes with write(2))
        tcp::acceptor acceptor(io, tcp::endpoint(net::ip::make_address("127.0.0.1"), 0));
        tcp::socket peer(io);
        peer.connect(acceptor.local_endpoint());
        server.emplace(plain_stream(acceptor.accept()), server_ctx);
        client.emplace(plain_stream(std::move(peer)), client_ctx);
        std::optional<error_code> s, c;
        server->async_handshake(ssl::stream_base::server, [&](error_code ec) { s = ec; });
        client->async_handshake(ssl::stream_base::client, [&](error_code ec) { c = ec; });
        REQUIRE(run_until([&] { return s && c; }));
        REQUIRE_FALSE(*s);
        REQUIRE_FALSE(*c);
    }
    // Runs the loop until `done` or `limit` passes; whether `done` came.
    template <typename Pred> bool run_until(Pred done, std::chrono::milliseconds limit = 5s) {
        const auto deadline = std::chrono::steady_clock::now() + limit;
        while (!done() && std::chrono::steady_clock::now() < deadline) {
            if (io.stopped())
                io.restart(); // (out of work between steps: it stops)
            io.run_one_for(10ms);
        }
        return done();
    }
    // Reads from `s` until `n` bytes came or a read failed.
    std::string read_exactly(tls_stream& s, std::size_t n) {
        std::string out(n, '\0');
        std::optional<error_code> result;
        net::async_read(s, net::buffer(out), [&](error_code ec, std::size_t) { result = ec; });
        REQUIRE(run_until([&] { return result.has_value(); }));
        REQUIRE_FALSE(*result);
        return out;
    }
    // How one read on `s` ends.
    error_code read_outcome(tls_stream& s) {
        std::array<char, 64> buf;
        std::optional<error_code> result;
        s.async_read_some(net::buffer(buf), [&](error_code ec, std::size_t) { result = ec; });
        REQUIRE(run_until([&] { return result.has_value(); }));
        return *result;
    }
};

} // namespace

TEST_CASE("tls_stream: a gathered write arrives whole, in order") {
    tls_pair p;
    const std::string head = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n";
    const std::array<net::const_buffer, 3> pieces{net::buffer(head), net::buffer("hel", 3),
                                                  net::buffer("lo", 2)};
    std::optional<error_code> wrote;
    std::size_t written = 0;
    net::async_write(*p.server, pieces, [&](error_code ec, std::size_t n) {
        wrote = ec;
        written = n;
    });
    CHECK(p.read_exactly(*p.client, head.size() + 5) == head + "hello");
    REQUIRE(p.run_until([&] { return wrote.has_value(); }));
    CHECK_FALSE(*wrote);
    CHECK(written == head.size() + 5);
    // ... and the other way.
    std::optional<error_code> back;
    net::async_write(*p.client, net::buffer("ping", 4),
                     [&](error_code ec, std::size_t) { back = ec; });
    CHECK(p.read_exactly(*p.server, 4) == "ping");
    REQUIRE(p.run_until([&] { return back.has_value(); }));
    CHECK_FALSE(*back);
}

TEST_CASE("tls_stream: a close_notify ends reads with eof") {
    tls_pair p;
    SSL_shutdown(p.client->native_handle()); // sends close_notify (non-blocking: at once)
    CHECK(p.read_outcome(*p.server) == net::error::eof);
}

TEST_CASE("tls_stream: a connection ended without close_notify ends reads as truncated") {
    tls_pair p;
    // (A FIN: a close with the session tickets unread would send a reset.)
    p.client->next_layer().socket().shutdown(tcp::socket::shutdown_send);
    CHECK(p.read_outcome(*p.server) == ssl::error::stream_truncated);
}

TEST_CASE("tls_stream: a read waiting past the plain_stream's deadline fails, the socket closed") {
    tls_pair p;
    auto& lower = p.server->next_layer();
    lower.expires_after(50ms);
    const auto ec = p.read_outcome(*p.server);
    CHECK(ec == net::error::operation_aborted);
    CHECK(lower.timed_out());
    CHECK_FALSE(lower.socket().is_open());
    REQUIRE(p.run_until([&] { return lower.waits() == 0; }));
}

TEST_CASE("tls_stream: a large write to a reader that starts late arrives whole") {
    tls_pair p;
    // More than the socket buffers hold: the writer must wait and retry.
    std::vector<char> data(8 * 1024 * 1024);
    for (std::size_t i = 0; i < data.size(); ++i)
        data[i] = static_cast<char>('a' + i % 23);
    std::optional<error_code> wrote;
    std::size_t written = 0;
    net::async_write(*p.server, net::buffer(data), [&](error_code ec, std::size_t n) {
        wrote = ec;
        written = n;
    });
    // The writer fills the socket and waits; nothing has been read yet.
    net::steady_timer pause(p.io, 200ms);
    bool paused = false;
    pause.async_wait([&](error_code) { paused = true; });
    REQUIRE(p.run_until([&] { return paused; }));
    CHECK_FALSE(wrote.has_value());
    const auto got = p.read_exactly(*p.client, data.size());
    CHECK(std::equal(got.begin(), got.end(), data.begin()));
    REQUIRE(p.run_until([&] { return wrote.has_value(); }));
    CHECK_FALSE(*wrote);
    CHECK(written == data.size());
}

TEST_CASE("tls_stream: an operation that completes at once completes after its initiating call") {
    tls_pair p;
    std::optional<error_code> sent;
    net::async_write(*p.client, net::buffer("abc", 3),
                     [&](error_code ec, std::size_t) { sent = ec; });
    REQUIRE(p.run_until([&] { return sent.has_value(); }));
    // One byte read without waiting: the other two stay decrypted inside
    // OpenSSL, so the read below cannot wait, yet its handler must run from
    // the event loop, not from within async_read_some.
    std::array<char, 8> buf;
    error_code ec;
    bool first = false;
    REQUIRE(p.run_until([&] {
        if (!first) {
            const auto n = sluice::proxy::try_read_now(*p.server, net::buffer(buf, 1), ec);
            first = n == 1;
        }
        return first;
    }));
    REQUIRE(SSL_pending(p.server->native_handle()) == 2);
    std::optional<std::size_t> got;
    p.server->async_read_some(net::buffer(buf), [&](error_code e, std::size_t n) {
        ec = e;
        got = n;
    });
    CHECK_FALSE(got.has_value());
    REQUIRE(p.run_until([&] { return got.has_value(); }));
    CHECK_FALSE(ec);
    CHECK(std::string(buf.data(), *got) == "bc");
}

TEST_CASE("tls_stream: reads and writes that never wait") {
    tls_pair p;
    std::array<char, 8> buf;
    error_code ec;
    CHECK(sluice::proxy::try_read_now(*p.server, net::buffer(buf), ec) == 0);
    CHECK(ec == net::error::would_block);
    const std::array<net::const_buffer, 2> pieces{net::buffer("x", 1), net::buffer("yz", 2)};
    CHECK(sluice::proxy::try_write_now(*p.client, pieces, ec) == 3);
    CHECK_FALSE(ec);
    REQUIRE(p.run_until([&] { return p.server->next_layer().socket().available() > 0; }));
    // (Polled: the record may still be on its way.)
    std::size_t n = 0;
    bool read = false;
    REQUIRE(p.run_until([&] {
        if (!read) {
            n = sluice::proxy::try_read_now(*p.server, net::buffer(buf), ec);
            read = ec != net::error::would_block;
        }
        return read;
    }));
    CHECK_FALSE(ec);
    CHECK(std::string(buf.data(), n) == "xyz");
}

TEST_CASE("tls_stream: once its socket is closed, nothing reaches the descriptor") {
    tls_pair p;
    auto& lower = p.server->next_layer().socket();
    const int fd = lower.native_handle();
    tcp::acceptor acceptor(p.io, tcp::endpoint(net::ip::make_address("127.0.0.1"), 0));
    tcp::socket other(p.io);
    other.connect(acceptor.local_endpoint());
    tcp::socket other_peer = acceptor.accept();
    other_peer.non_blocking(true);
    lower.close();
    // The number now names another connection (as the next socket opened
    // anywhere in the process could), non-blocking like the old one.
    REQUIRE(::dup2(other_peer.native_handle(), fd) == fd);
    struct close_fd {
        int fd;
        ~close_fd() { ::close(fd); }
    } reused{fd};
    net::write(other, net::buffer("z", 1)); // (a read through the number would take it)
    CHECK(p.read_outcome(*p.server) == net::error::bad_descriptor);
    error_code ec;
    CHECK(sluice::proxy::try_write_now(*p.server, net::buffer("x", 1), ec) == 0);
    CHECK(ec == net::error::bad_descriptor);
    std::optional<error_code> wrote;
    net::async_write(*p.server, net::buffer("y", 1), [&](error_code e, std::size_t) { wrote = e; });
    REQUIRE(p.run_until([&] { return wrote.has_value(); }));
    CHECK(*wrote == net::error::bad_descriptor);
    // Nothing was written to the connection that has the number now.
    net::steady_timer settle(p.io, 100ms);
    bool settled = false;
    settle.async_wait([&](error_code) { settled = true; });
    REQUIRE(p.run_until([&] { return settled; }));
    CHECK(other.available() == 0);
    CHECK(other_peer.available() == 1);
}

// Writes 150 pieces of 100 bytes at a time (one gathered record, under
// 16 KiB, which OpenSSL either sends whole or holds) to `s` without
// waiting, the reader reading nothing, until OpenSSL holds one. `buffers`
// is then that last write's, `expected` all that was offered.
struct held_write {
    std::vector<std::string> pieces = std::vector<std::string>(150);
    std::vector<net::const_buffer> buffers;
    std::string expected;

    explicit held_write(tls_stream& s) {
        bool held = false;
        for (int round = 0; round < 4000 && !held; ++round) {
            buffers.clear();
            for (std::size_t i = 0; i < pieces.size(); ++i) {
                pieces[i].assign(100, static_cast<char>('a' + (round + i) % 26));
                buffers.push_back(net::buffer(pieces[i]));
                expected += pieces[i];
            }
            error_code ec;
            const auto n = sluice::proxy::try_write_now(s, buffers, ec);
            if (ec == net::error::would_block) {
                CHECK(n == 0);
                held = true;
            } else {
                REQUIRE_FALSE(ec);
                REQUIRE(n == pieces.size() * 100);
            }
        }
        REQUIRE(held);
    }
};

// relay_body's way with a de-chunked response: many small pieces, tried
// without waiting, then through net::async_write, which offers at most
// sixteen buffers per write. A gathered write OpenSSL had to hold must be
// offered again whole, not as the fewer bytes of those sixteen.
TEST_CASE("tls_stream: a gathered write that had to wait is retried whole") {
    tls_pair p;
    held_write h(*p.server);
    std::optional<error_code> wrote;
    net::async_write(*p.server, h.buffers, [&](error_code e, std::size_t) { wrote = e; });
    CHECK(p.read_exactly(*p.client, h.expected.size()) == h.expected);
    REQUIRE(p.run_until([&] { return wrote.has_value(); }));
    CHECK_FALSE(*wrote);
}

// A write whose wait is cancelled (the socket stays open) never completes
// what OpenSSL holds: no later write may go out after it, stale or not.
TEST_CASE("tls_stream: after a write failed, later writes fail too") {
    tls_pair p;
    held_write h(*p.server);
    std::optional<error_code> wrote;
    net::async_write(*p.server, h.buffers, [&](error_code e, std::size_t) { wrote = e; });
    p.server->next_layer().socket().cancel();
    REQUIRE(p.run_until([&] { return wrote.has_value(); }));
    CHECK(*wrote == net::error::operation_aborted);
    error_code ec;
    const std::string later(200, 'L');
    CHECK(sluice::proxy::try_write_now(*p.server, net::buffer(later), ec) == 0);
    CHECK(ec == net::error::broken_pipe);
    std::optional<error_code> again;
    net::async_write(*p.server, net::buffer(later), [&](error_code e, std::size_t) { again = e; });
    REQUIRE(p.run_until([&] { return again.has_value(); }));
    CHECK(*again == net::error::broken_pipe);
    CHECK(p.server->next_layer().socket().is_open());
}
