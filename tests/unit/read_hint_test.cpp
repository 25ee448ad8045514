// read_hint.hpp's marks on real loopback sockets, against Asio's reactor:
// a receive on a socket marked drained waits for a readiness event without
// a read first, every event clears the mark, the registration of a socket
// reports bytes already there, and mark_maybe_readable gives the read back.

#include "proxy/read_hint.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>

#include <catch2/catch.hpp>

#include <chrono>
#include <optional>
#include <string_view>

namespace {

namespace net = boost::asio;
using tcp = net::ip::tcp;
using namespace std::chrono_literals;
using sluice::proxy::mark_drained;
using sluice::proxy::mark_maybe_readable;
using sluice::proxy::read_may_find_bytes;

// A connection on 127.0.0.1: `socket` is the accepted end, `peer` the
// client. The io_context is made as the workers' are.
struct connection {
    net::io_context io{BOOST_ASIO_CONCURRENCY_HINT_UNSAFE_IO};
    tcp::acceptor acceptor{io, tcp::endpoint(net::ip::make_address("127.0.0.1"), 0)};
    tcp::socket peer{io};
    std::optional<tcp::socket> socket;
    char buf[16]{};
    std::optional<std::size_t> received; // what start_receive's receive got

    connection() { peer.connect(acceptor.local_endpoint()); }
    void accept() { socket.emplace(acceptor.accept()); }
    void send(std::string_view bytes) { net::write(peer, net::buffer(bytes)); }
    void start_receive() {
        socket->async_receive(net::buffer(buf),
                              [this](boost::system::error_code ec, std::size_t n) {
                                  if (!ec)
                                      received = n;
                              });
    }
    // Runs the loop (a timer keeps it busy) until `done` or `limit` passes;
    // whether `done` came.
    template <typename Pred> bool run_until(Pred done, std::chrono::milliseconds limit = 5s) {
        io.restart(); // (the last run ran out of work, which stops the loop)
        net::steady_timer keep_busy(io, limit);
        keep_busy.async_wait([](boost::system::error_code) {});
        const auto deadline = std::chrono::steady_clock::now() + limit;
        while (!done() && std::chrono::steady_clock::now() < deadline)
            io.run_one_for(10ms);
        keep_busy.cancel();
        io.poll();
        return done();
    }
};

} // namespace

TEST_CASE("a socket marked drained waits for an event, and the event clears the mark") {
    connection c;
    c.accept();
    mark_drained(*c.socket);
    CHECK_FALSE(read_may_find_bytes(*c.socket));
    c.start_receive();
    c.send("next");
    REQUIRE(c.run_until([&] { return c.received.has_value(); }));
    CHECK(std::string_view(c.buf, *c.received) == "next");
    CHECK(read_may_find_bytes(*c.socket));
}

TEST_CASE("an event for a socket marked drained clears the mark with no receive waiting") {
    connection c;
    c.accept();
    mark_drained(*c.socket);
    c.send("x");
    CHECK(c.run_until([&] { return read_may_find_bytes(*c.socket); }));
}

TEST_CASE("bytes there before the socket was registered come as an event") {
    // As a new client connection is marked when it is adopted: the request
    // may be there already.
    connection c;
    c.send("early");
    c.accept();
    mark_drained(*c.socket);
    c.start_receive();
    REQUIRE(c.run_until([&] { return c.received.has_value(); }));
    CHECK(std::string_view(c.buf, *c.received) == "early");
}

TEST_CASE("a receive on a socket marked drained tries no read first") {
    // Bytes whose event has been handled already, then the mark: nothing
    // reads them until the next event (what the callers must rule out).
    connection c;
    c.accept();
    c.send("ab");
    net::steady_timer settle(c.io, 50ms); // (the bytes' event is handled meanwhile)
    bool settled = false;
    settle.async_wait([&](boost::system::error_code) { settled = true; });
    REQUIRE(c.run_until([&] { return settled; }));

    SECTION("marked drained: the receive waits for the next bytes") {
        mark_drained(*c.socket);
        c.start_receive();
        CHECK_FALSE(c.run_until([&] { return c.received.has_value(); }, 100ms));
        c.send("c");
        REQUIRE(c.run_until([&] { return c.received.has_value(); }));
        CHECK(std::string_view(c.buf, *c.received) == "abc");
    }
    SECTION("marked maybe readable again: the receive reads at once") {
        mark_drained(*c.socket);
        mark_maybe_readable(*c.socket);
        c.start_receive();
        REQUIRE(c.run_until([&] { return c.received.has_value(); }, 1s));
        CHECK(std::string_view(c.buf, *c.received) == "ab");
    }
}

TEST_CASE("a closed socket may always find bytes") {
    connection c;
    c.accept();
    mark_drained(*c.socket);
    c.socket->close();
    CHECK(read_may_find_bytes(*c.socket));
    mark_drained(*c.socket); // (does nothing)
}
