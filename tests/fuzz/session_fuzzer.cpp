// libFuzzer target: arbitrary bytes as one client connection, served by the
// real client session (proxy/connection.cpp) of a real worker, which forwards
// to an upstream inside this process. Everything runs on the worker's
// io_context in this thread, over loopback sockets; the upstream keeps what
// it receives in memory and checks it.
//
// Per input: the bytes are written to the proxy in one or more writes (their
// split comes from a hash of the input), the client half-closes, and reads
// until the proxy closes. Then:
//   - every request the upstream received parses with the strict parser,
//     carries one Host and one request ID, no hop-by-hop field but its own
//     framing (and Upgrade on an upgrade request), and a body exactly as its
//     framing says (nothing smuggled after it);
//   - the client's byte stream is a sequence of well-formed responses, whole,
//     with nothing after the last one, each with a request ID; nothing
//     follows a response that said Connection: close;
//   - each request the upstream received whole was answered to the client
//     exactly once (the upstream's answers are tagged), and in order;
//   - the session ends within a bound (no hang), and the worker has no
//     session left.
// A crash, a sanitizer report, a leak or a violated invariant stops the run.

#include "fuzz_support.hpp"

#include "config/load.hpp"
#include "proxy/connection.hpp"
#include "proxy/http_parser.hpp"
#include "proxy/log.hpp"
#include "proxy/server_state.hpp"
#include "proxy/snapshot.hpp"
#include "proxy/worker.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace {

namespace net = boost::asio;
namespace http = sluice::proxy::http;
namespace proxy = sluice::proxy;
using tcp = net::ip::tcp;
using sluice::fuzz::count_fields;
using sluice::fuzz::first_field;
constexpr auto use_tuple = net::as_tuple(net::use_awaitable);

constexpr std::string_view request_id_header = "X-Request-ID";
// The header the upstream tags its answers with: its request number.
constexpr std::string_view tag_header = "X-Upstream-Seq";

// What the upstream saw during one input.
struct upstream_log {
    int whole = 0;             // requests received with their whole body (and answered)
    std::string request_lines; // theirs, one per line, for a failure's report
    void reset() { *this = {}; }
};
upstream_log seen;

// Appends what `sock` has to `buf`; false when the connection has ended.
net::awaitable<bool> fill(tcp::socket& sock, std::string& buf) {
    char chunk[4096];
    auto [ec, n] = co_await sock.async_read_some(net::buffer(chunk), use_tuple);
    if (ec)
        co_return false;
    buf.append(chunk, n);
    co_return true;
}

void check_forwarded_head(const http::message_head& req) {
    SLUICE_FUZZ_CHECK(count_fields(req, "host") == 1, "upstream: not exactly one Host");
    SLUICE_FUZZ_CHECK(count_fields(req, request_id_header) == 1,
                      "upstream: not exactly one request ID");
    SLUICE_FUZZ_CHECK(
        count_fields(req, "content-length") + count_fields(req, "transfer-encoding") <= 1,
        "upstream: more than one framing field");
    const bool upgrade = req.connection_upgrade && !req.upgrade.empty();
    for (const auto& f : req.fields) {
        const bool framing = http::iequals(f.name, "transfer-encoding");
        const bool upgrade_field =
            upgrade && (http::iequals(f.name, "upgrade") || http::iequals(f.name, "connection"));
        if (framing || upgrade_field)
            continue;
        SLUICE_FUZZ_CHECK(!sluice::fuzz::is_fixed_hop_by_hop(f.name),
                          "upstream: a hop-by-hop field was forwarded");
        // The proxy answers 100-continue itself; another expectation passes.
        SLUICE_FUZZ_CHECK(!http::iequals(f.name, "expect") ||
                              !http::iequals(sluice::fuzz::trim_ows(f.value), "100-continue"),
                          "upstream: Expect: 100-continue was forwarded");
    }
    SLUICE_FUZZ_CHECK(req.fields.size() <= http::max_fields, "upstream: too many fields");
}

// One upstream connection: requests in, a tagged 200 out for each whole one.
net::awaitable<void> serve_upstream(tcp::socket sock) {
    std::string buf;
    for (;;) {
        std::size_t end = 0;
        while ((end = http::find_head_end(buf, 0)) == 0) {
            SLUICE_FUZZ_CHECK(buf.size() < 256 * 1024, "upstream: endless head");
            if (!co_await fill(sock, buf)) {
                // A head cut short can only be a write the proxy abandoned.
                co_return;
            }
        }
        http::message_head req;
        const auto status = http::parse_request_head(std::string_view(buf).substr(0, end), req);
        SLUICE_FUZZ_CHECK(status == http::parse_status::ok,
                          "upstream: the forwarded head does not parse");
        check_forwarded_head(req);
        const bool is_head = req.method == "HEAD";
        std::size_t taken = req.head_size;
        switch (req.body) {
        case http::framing::none:
            break;
        case http::framing::content_length:
            while (buf.size() - req.head_size < req.content_length)
                if (!co_await fill(sock, buf))
                    co_return; // the proxy gave up mid-body (the client went away)
            taken += static_cast<std::size_t>(req.content_length);
            break;
        case http::framing::chunked: {
            http::chunked_scanner scanner;
            std::size_t at = req.head_size;
            for (;;) {
                const auto r = scanner.feed(std::string_view(buf).substr(at), nullptr);
                SLUICE_FUZZ_CHECK(!r.error, "upstream: a malformed chunked body was forwarded");
                at += r.consumed;
                if (r.done)
                    break;
                if (!co_await fill(sock, buf))
                    co_return;
            }
            taken = at;
            break;
        }
        case http::framing::until_close:
            SLUICE_FUZZ_CHECK(false, "upstream: a request framed until close");
        }
        const int seq = ++seen.whole;
        seen.request_lines.append(buf, 0, std::min<std::size_t>(buf.find("\r\n"), 200));
        seen.request_lines += '\n';
        buf.erase(0, taken);
        std::string answer = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n";
        answer += tag_header;
        answer += ": " + std::to_string(seq) + "\r\n\r\n";
        if (!is_head)
            answer += "ok";
        auto [ec, n] = co_await net::async_write(sock, net::buffer(answer), use_tuple);
        if (ec)
            co_return;
    }
}

net::awaitable<void> accept_upstreams(tcp::acceptor& acceptor) {
    for (;;) {
        auto [ec, sock] = co_await acceptor.async_accept(use_tuple);
        if (ec)
            co_return;
        net::co_spawn(acceptor.get_executor(), serve_upstream(std::move(sock)), net::detached);
    }
}

// The client's side of one input.
struct client_run {
    std::string received;
    bool done = false;
};

net::awaitable<void> run_client(tcp::socket sock, std::string_view input, std::size_t split,
                                client_run& out) {
    // Two writes: the second may arrive while the proxy is mid-request.
    const std::string_view first = input.substr(0, split);
    const std::string_view second = input.substr(split);
    boost::system::error_code ignored;
    if (!first.empty())
        co_await net::async_write(sock, net::buffer(first.data(), first.size()), use_tuple);
    if (!second.empty())
        co_await net::async_write(sock, net::buffer(second.data(), second.size()), use_tuple);
    sock.shutdown(tcp::socket::shutdown_send, ignored);
    char chunk[8192];
    for (;;) {
        auto [ec, n] = co_await sock.async_read_some(net::buffer(chunk), use_tuple);
        if (ec)
            break;
        out.received.append(chunk, n);
    }
    out.done = true;
}

// What the client got, on stderr, before an invariant about it stops the run.
#define CLIENT_CHECK(cond, what)                                                                   \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            std::fprintf(stderr, "client received (%zu bytes):\n%.*s\n", whole.size(),             \
                         static_cast<int>(std::min<std::size_t>(whole.size(), 4096)),              \
                         whole.data());                                                            \
            std::fprintf(stderr, "upstream answered %d requests:\n%s", seen.whole,                 \
                         seen.request_lines.c_str());                                              \
            SLUICE_FUZZ_CHECK(false, what);                                                        \
        }                                                                                          \
    } while (0)

// The client's byte stream, response by response.
void check_client_stream(const std::string_view whole) {
    std::string_view stream = whole;
    int last_tag = 0;
    int answered = 0;
    while (!stream.empty()) {
        http::message_head resp;
        const auto status = http::parse_response_head(stream, resp);
        CLIENT_CHECK(status == http::parse_status::ok, "client: a response head does not parse");
        if (resp.status >= 100 && resp.status < 200) {
            CLIENT_CHECK(resp.status == 100, "client: an interim response other than 100");
            stream.remove_prefix(resp.head_size);
            continue;
        }
        CLIENT_CHECK(count_fields(resp, request_id_header) == 1,
                     "client: a response without exactly one request ID");
        const auto* tag = first_field(resp, tag_header);
        // Answers to HEAD have no body; the client cannot tell which
        // requests the proxy read as HEAD, so the bytes after a head decide.
        std::uint64_t body = 0;
        if (tag != nullptr) {
            const int seq = std::stoi(std::string(tag->value));
            CLIENT_CHECK(seq == last_tag + 1, "client: upstream answers out of order");
            last_tag = seq;
            ++answered;
            // 2 bytes, or none for HEAD: the next bytes tell.
            const auto rest = stream.substr(resp.head_size);
            body = rest.substr(0, 2) == "ok" ? 2 : 0;
        } else {
            CLIENT_CHECK(resp.body == http::framing::content_length ||
                             resp.body == http::framing::none,
                         "client: a proxy answer framed by neither Content-Length nor none");
            // An answer to HEAD has none of the body its Content-Length
            // announces: the next response, or the end, follows the head.
            const auto rest = stream.substr(resp.head_size);
            const bool bodiless = rest.empty() || rest.substr(0, 7) == "HTTP/1.";
            body = bodiless ? 0 : resp.content_length;
        }
        CLIENT_CHECK(stream.size() - resp.head_size >= body, "client: a response body cut short");
        stream.remove_prefix(resp.head_size + static_cast<std::size_t>(body));
        if (!resp.keep_alive())
            CLIENT_CHECK(stream.empty(), "client: bytes after a Connection: close response");
    }
    CLIENT_CHECK(answered == seen.whole,
                 "client: a request the upstream got whole was not answered once");
}

struct harness {
    std::unique_ptr<proxy::worker> worker;
    std::unique_ptr<tcp::acceptor> front; // the client connects here; sockets go to the session
    std::unique_ptr<tcp::acceptor> back;  // the upstream
    std::string listener_key;
    proxy::server_registry registry;

    harness() {
        sluice::log::init(sluice::log::level::error);
        // The acceptors live on the worker's io_context, so the worker starts
        // on a placeholder snapshot, replaced once the upstream's port is known.
        worker = std::make_unique<proxy::worker>(0, snapshot_for(config_text(0)));
        back = std::make_unique<tcp::acceptor>(
            worker->io(), tcp::endpoint(net::ip::make_address("127.0.0.1"), 0));
        front = std::make_unique<tcp::acceptor>(
            worker->io(), tcp::endpoint(net::ip::make_address("127.0.0.1"), 0));
        worker->publish(snapshot_for(config_text(back->local_endpoint().port())));
        worker->io().poll();
        worker->io().restart(); // poll() ran out of work, which stops an io_context
        listener_key = worker->current()->listeners.front().key;
        net::co_spawn(worker->io(), accept_upstreams(*back), net::detached);
    }

    static std::string config_text(unsigned short upstream_port) {
        const std::string server =
            "127.0.0.1:" + std::to_string(upstream_port == 0 ? 9 : upstream_port);
        return R"(
workers: 1
listeners:
  - name: fuzz
    bind: "127.0.0.1:1"
    routes:
      - match: { host: "api.example.com", path_prefix: "/api" }
        upstream: backend
      - match: { path_prefix: "/buffered" }
        upstream: buffered
      - match: { path_prefix: "/ping" }
        respond: { status: 200, body: "pong\n" }
      - match: { path_prefix: "/old" }
        redirect: { scheme: https, status: 308 }
      - match: { path_prefix: "/" }
        upstream: backend
upstreams:
  - name: backend
    servers: [{ address: ")" +
               server + R"(" }]
    retries: 0
  - name: buffered
    servers: [{ address: ")" +
               server + R"(" }]
    request_buffering: true
    retries: 0
timeouts:
  client_header: 2s
  client_body: 2s
  client_idle: 2s
  upstream_connect: 2s
  upstream_response: 2s
limits:
  max_header_bytes: 4KiB
  max_body_bytes: 16KiB
access_log: { enabled: false }
)";
    }

    std::shared_ptr<const proxy::snapshot> snapshot_for(const std::string& yaml) {
        auto loaded = sluice::config::load_string(yaml, "fuzz.yaml");
        if (auto* errors = std::get_if<std::vector<sluice::config::error>>(&loaded)) {
            for (const auto& e : *errors)
                std::fprintf(stderr, "%s\n", sluice::config::to_string(e).c_str());
            std::abort();
        }
        return proxy::build_snapshot(std::get<sluice::config::config>(std::move(loaded)), 1,
                                     registry, {});
    }
};

harness& the_harness() {
    static harness* h = new harness(); // never destroyed: libFuzzer exits the process
    return *h;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* bytes, std::size_t size) {
    auto& h = the_harness();
    auto& io = h.worker->io();
    const std::string_view input(reinterpret_cast<const char*>(bytes), size);
    const std::uint64_t seed = sluice::fuzz::hash_of(input);
    seen.reset();

    // Blocking connect and accept; libFuzzer's timer signals may interrupt
    // them (EINTR), and a connect interrupted goes on in the background.
    tcp::socket client(io);
    boost::system::error_code ec;
    client.connect(h.front->local_endpoint(), ec);
    if (ec == net::error::interrupted) {
        do
            client.wait(tcp::socket::wait_write, ec);
        while (ec == net::error::interrupted);
    }
    SLUICE_FUZZ_CHECK(!ec, "harness: cannot connect to the proxy's socket");
    tcp::socket served(io);
    tcp::endpoint peer;
    do
        h.front->accept(served, peer, ec);
    while (ec == net::error::interrupted);
    SLUICE_FUZZ_CHECK(!ec, "harness: cannot accept the client");
    proxy::start_session(*h.worker, std::move(served), peer, h.listener_key);

    client_run run;
    const std::size_t split = input.empty() ? 0 : static_cast<std::size_t>(seed % (size + 1));
    net::co_spawn(io, run_client(std::move(client), input, split, run), net::detached);

    // Bounded: the proxy must end the exchange by itself once the client has
    // half-closed (its timeouts are 2 s; nothing here should need them).
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(8);
    while ((!run.done || h.worker->active_connections() != 0) &&
           std::chrono::steady_clock::now() < deadline) {
        // One handler at a time, so the loop ends as soon as the session has.
        io.run_one_for(std::chrono::milliseconds(50));
    }
    // What the upstream still has to read (a connection not yet accepted, a
    // request not yet parsed) belongs to this input, not the next: run
    // everything that is ready before checking, a handler at a time, so a
    // coroutine yielding in a loop cannot hold one call past the deadline.
    while (io.poll_one() != 0 && std::chrono::steady_clock::now() < deadline) {
    }
    io.restart(); // (in case poll_one() ran out of work)
    SLUICE_FUZZ_CHECK(run.done, "session: the proxy never closed the client connection");
    SLUICE_FUZZ_CHECK(h.worker->active_connections() == 0,
                      "session: a session outlived its client");
    check_client_stream(run.received);
    return 0;
}
