// plain_stream's deadline (proxy/plain_stream.hpp) on a real loopback
// connection: it closes the socket when an operation waits past it, never
// fires once cleared, and arms nothing until an operation waits.

#include "proxy/plain_stream.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>

#include <catch2/catch.hpp>

#include <chrono>
#include <optional>

namespace {

namespace net = boost::asio;
using tcp = net::ip::tcp;
using sluice::proxy::plain_stream;
using namespace std::chrono_literals;

// A connected pair on 127.0.0.1: `peer` is the far end of `stream`.
struct connected_pair {
    net::io_context io;
    tcp::socket peer{io};
    std::optional<plain_stream> stream;
    char buf[16]{};
    std::optional<boost::system::error_code> result; // how start_read's read ended

    connected_pair() {
        tcp::acceptor acceptor(io, tcp::endpoint(net::ip::make_address("127.0.0.1"), 0));
        peer.connect(acceptor.local_endpoint());
        stream.emplace(acceptor.accept());
    }
    void start_read() {
        stream->async_read_some(net::buffer(buf),
                                [this](boost::system::error_code ec, std::size_t) { result = ec; });
    }
    // Runs the loop until `done` or `limit` passes; whether `done` came.
    template <typename Pred> bool run_until(Pred done, std::chrono::milliseconds limit = 5s) {
        const auto deadline = std::chrono::steady_clock::now() + limit;
        while (!done() && std::chrono::steady_clock::now() < deadline)
            io.run_one_for(10ms);
        return done();
    }
    // Runs the loop for `d` (what must not happen meanwhile is checked after).
    void run_for(std::chrono::milliseconds d) {
        net::steady_timer t(io, d);
        bool fired = false;
        t.async_wait([&](boost::system::error_code) { fired = true; });
        run_until([&] { return fired; });
    }
};

// The deadline did not close `s`.
void check_untouched(plain_stream& s) {
    CHECK(s.socket().is_open());
    CHECK_FALSE(s.timed_out());
}

} // namespace

TEST_CASE("plain_stream: a read waiting past its deadline closes the socket") {
    connected_pair p;
    auto& s = *p.stream;
    s.expires_after(50ms);
    CHECK(s.waits() == 0); // nothing waits yet: no timer
    p.start_read();
    CHECK(s.waits() == 1);
    REQUIRE(p.run_until([&] { return p.result.has_value(); }));
    CHECK(*p.result == net::error::operation_aborted);
    CHECK(s.timed_out());
    CHECK_FALSE(s.socket().is_open());
    REQUIRE(p.run_until([&] { return s.waits() == 0; }));
}

TEST_CASE("plain_stream: a deadline cleared after its operation never fires") {
    connected_pair p;
    auto& s = *p.stream;
    s.expires_after(300ms);
    p.start_read();
    net::write(p.peer, net::buffer("x", 1));
    REQUIRE(p.run_until([&] { return p.result.has_value(); }));
    CHECK_FALSE(*p.result);
    s.expires_never();
    p.run_for(500ms); // past the old deadline
    check_untouched(s);
    CHECK(s.waits() == 0);
}

TEST_CASE("plain_stream: a new deadline replaces the armed one") {
    connected_pair p;
    auto& s = *p.stream;
    s.expires_after(60ms);
    p.start_read();
    // Moved later before it passed: the read waits on, under the later one.
    s.expires_after(10s);
    p.run_for(200ms);
    CHECK_FALSE(p.result.has_value());
    check_untouched(s);
    net::write(p.peer, net::buffer("y", 1));
    REQUIRE(p.run_until([&] { return p.result.has_value(); }));
    CHECK_FALSE(*p.result);
    s.expires_never();
    REQUIRE(p.run_until([&] { return s.waits() == 0; }));
}

TEST_CASE("plain_stream: a sooner deadline replaces a later one") {
    connected_pair p;
    auto& s = *p.stream;
    s.expires_after(10s);
    p.start_read();
    const auto soon = std::chrono::steady_clock::now() + 50ms;
    s.expires_at(soon);
    s.expires_at(soon); // (the same one again: its wait goes on)
    REQUIRE(p.run_until([&] { return p.result.has_value(); }, 3s));
    CHECK(*p.result == net::error::operation_aborted);
    CHECK(s.timed_out());
    CHECK_FALSE(s.socket().is_open());
    REQUIRE(p.run_until([&] { return s.waits() == 0; }));
}

TEST_CASE("plain_stream: released, the socket goes on and the deadline ends") {
    connected_pair p;
    auto& s = *p.stream;
    s.expires_after(200ms);
    p.start_read();
    s.socket().cancel();
    REQUIRE(p.run_until([&] { return p.result.has_value(); }));
    auto socket = s.release_socket();
    p.run_for(400ms);
    CHECK(socket.is_open());
    CHECK_FALSE(s.timed_out());
    CHECK(s.waits() == 0);
}
