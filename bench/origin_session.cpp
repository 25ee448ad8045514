// The test origin's request handling. Bodies are never buffered whole:
// /bytes/N writes slices of one static pattern, /echo relays through a
// 16 KiB buffer, so any size works in constant memory.
#include "bench/origin_session.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>
#include <boost/json.hpp>

#include <atomic>
#include <charconv>
#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

namespace sluice::bench {
namespace {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = boost::beast::http;
namespace websocket = boost::beast::websocket;
using tcp = net::ip::tcp;

constexpr auto use_tuple = net::as_tuple(net::use_awaitable);

// /bytes/N body source: a piece size that is a multiple of 26, so every piece
// starts at pattern offset 0 and the same static buffer serves all of them.
constexpr std::size_t bytes_piece = 26 * 2520; // 65520
const std::string& bytes_pattern() {
    static const std::string pattern = [] {
        std::string s(bytes_piece, '\0');
        for (std::size_t i = 0; i < s.size(); ++i) {
            s[i] = static_cast<char>('a' + i % 26);
        }
        return s;
    }();
    return pattern;
}

// What a connection knows about itself, stamped on each of its responses.
struct connection_info {
    origin_state& state;
    std::uint64_t id;
    std::string peer;
};

using request_parser = http::request_parser<http::buffer_body>;

template <class Fields>
void stamp(Fields& fields, const connection_info& conn, std::uint64_t request_count) {
    fields.set("X-Origin", conn.state.name);
    fields.set("X-Origin-Connection", std::to_string(conn.id));
    fields.set("X-Origin-Request-Count", std::to_string(request_count));
}

// Parses the decimal number after `prefix` in `path`; nullopt when absent or junk.
std::optional<std::uint64_t> number_after(std::string_view path, std::string_view prefix) {
    if (!path.starts_with(prefix)) {
        return std::nullopt;
    }
    const std::string_view digits = path.substr(prefix.size());
    std::uint64_t value = 0;
    const auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), value);
    if (ec != std::errc{} || end != digits.data() + digits.size() || digits.empty()) {
        return std::nullopt;
    }
    return value;
}

// Sends "100 Continue" when the client waits for it before sending its body.
// Returns false when the socket failed.
net::awaitable<bool> maybe_continue(tcp::socket& sock, request_parser& parser) {
    const auto& req = parser.get();
    if (parser.is_done() || req.version() < 11) {
        co_return true;
    }
    const auto expect = req[http::field::expect];
    if (!beast::iequals(expect, "100-continue")) {
        co_return true;
    }
    static constexpr std::string_view interim = "HTTP/1.1 100 Continue\r\n\r\n";
    auto [ec, n] = co_await net::async_write(sock, net::buffer(interim), use_tuple);
    co_return !ec;
}

// Reads and throws away the rest of the request body so the next request on
// the connection starts at a message boundary. Returns false on a read error.
net::awaitable<bool> drain_body(tcp::socket& sock, beast::flat_buffer& buffer,
                                request_parser& parser) {
    if (!co_await maybe_continue(sock, parser)) {
        co_return false;
    }
    char scratch[8192];
    while (!parser.is_done()) {
        parser.get().body().data = scratch;
        parser.get().body().size = sizeof scratch;
        auto [ec, n] = co_await http::async_read(sock, buffer, parser, use_tuple);
        if (ec && ec != http::error::need_buffer) {
            co_return false;
        }
    }
    co_return true;
}

// Answers with a complete in-memory body (or none for HEAD/204/304).
// Returns true when the connection may carry another request.
net::awaitable<bool> send_simple(tcp::socket& sock, const request_parser& parser,
                                 const connection_info& conn, std::uint64_t count,
                                 http::status status, std::string body,
                                 std::string_view content_type = "text/plain") {
    const auto& req = parser.get();
    http::response<http::string_body> res{status, req.version()};
    stamp(res, conn, count);
    res.keep_alive(req.keep_alive());
    if (http::obsolete_reason(status) == "<unknown-status>") {
        res.reason("Unknown");
    }
    if (status == http::status::no_content || status == http::status::not_modified) {
        // RFC 9110 6.4.1: no body, and 204 must not carry Content-Length.
        res.content_length(boost::none);
    } else {
        res.set(http::field::content_type, content_type);
        res.body() = std::move(body);
        res.prepare_payload();
    }
    const bool keep_alive = res.keep_alive();
    if (req.method() == http::verb::head) {
        http::response_serializer<http::string_body> sr{res};
        auto [ec, n] = co_await http::async_write_header(sock, sr, use_tuple);
        co_return !ec && keep_alive;
    }
    auto [ec, n] = co_await http::async_write(sock, res, use_tuple);
    co_return !ec && keep_alive;
}

// /bytes/N: the header through Beast, then the body as raw slices of the
// static pattern, so N may be far larger than memory.
net::awaitable<bool> send_bytes(tcp::socket& sock, const request_parser& parser,
                                const connection_info& conn, std::uint64_t count,
                                std::uint64_t size) {
    const auto& req = parser.get();
    http::response<http::empty_body> res{http::status::ok, req.version()};
    stamp(res, conn, count);
    res.keep_alive(req.keep_alive());
    res.set(http::field::content_type, "application/octet-stream");
    res.content_length(size);
    const bool keep_alive = res.keep_alive();
    http::response_serializer<http::empty_body> sr{res};
    if (auto [ec, n] = co_await http::async_write_header(sock, sr, use_tuple); ec) {
        co_return false;
    }
    if (req.method() == http::verb::head) {
        co_return keep_alive;
    }
    const std::string& pattern = bytes_pattern();
    std::uint64_t remaining = size;
    while (remaining > 0) {
        const std::size_t piece =
            static_cast<std::size_t>(std::min<std::uint64_t>(remaining, bytes_piece));
        auto [ec, n] =
            co_await net::async_write(sock, net::buffer(pattern.data(), piece), use_tuple);
        if (ec) {
            co_return false;
        }
        remaining -= piece;
    }
    co_return keep_alive;
}

// /echo: relays the request body into the response as it arrives (Beast's
// http_relay pattern). Content-Length in -> the same Content-Length out;
// chunked in -> chunked out; no body -> empty body.
net::awaitable<bool> send_echo(tcp::socket& sock, beast::flat_buffer& buffer,
                               request_parser& parser, const connection_info& conn,
                               std::uint64_t count) {
    if (!co_await maybe_continue(sock, parser)) {
        co_return false;
    }
    const auto& req = parser.get();
    http::response<http::buffer_body> res{http::status::ok, req.version()};
    stamp(res, conn, count);
    res.keep_alive(req.keep_alive());
    res.set(http::field::content_type, req.count(http::field::content_type)
                                           ? req[http::field::content_type]
                                           : beast::string_view{"application/octet-stream"});
    if (const auto length = parser.content_length()) {
        res.content_length(*length);
    } else if (parser.chunked() && req.version() >= 11) {
        res.chunked(true);
    } else if (parser.chunked()) {
        // HTTP/1.0 has no chunked responses: delimit the echo by closing.
        res.keep_alive(false);
    } else {
        res.content_length(0);
    }
    const bool keep_alive = res.keep_alive();
    http::response_serializer<http::buffer_body> sr{res};
    res.body().data = nullptr;
    res.body().more = !parser.is_done();
    if (auto [ec, n] = co_await http::async_write_header(sock, sr, use_tuple); ec) {
        co_return false;
    }
    char relay[16384];
    do {
        if (!parser.is_done()) {
            parser.get().body().data = relay;
            parser.get().body().size = sizeof relay;
            auto [ec, n] = co_await http::async_read(sock, buffer, parser, use_tuple);
            if (ec && ec != http::error::need_buffer) {
                co_return false;
            }
            res.body().data = relay;
            res.body().size = sizeof relay - parser.get().body().size;
            res.body().more = !parser.is_done();
        } else {
            res.body().data = nullptr;
            res.body().size = 0;
            res.body().more = false;
        }
        auto [ec, n] = co_await http::async_write(sock, sr, use_tuple);
        if (ec && ec != http::error::need_buffer) {
            co_return false;
        }
    } while (!parser.is_done() || !sr.is_done());
    co_return keep_alive;
}

std::string headers_json(const request_parser& parser, const connection_info& conn) {
    const auto& req = parser.get();
    boost::json::array headers;
    for (const auto& field : req) {
        headers.push_back(boost::json::array{
            boost::json::string_view{field.name_string().data(), field.name_string().size()},
            boost::json::string_view{field.value().data(), field.value().size()}});
    }
    boost::json::object doc;
    doc["method"] =
        boost::json::string_view{req.method_string().data(), req.method_string().size()};
    doc["target"] = boost::json::string_view{req.target().data(), req.target().size()};
    doc["version"] = req.version() == 10 ? "1.0" : "1.1";
    doc["headers"] = std::move(headers);
    doc["peer"] = conn.peer;
    return boost::json::serialize(doc) + "\n";
}

// /ws: completes the upgrade with the already-parsed request, then echoes
// every message with its text/binary kind until the peer closes.
net::awaitable<void> serve_websocket(tcp::socket sock, http::request<http::buffer_body> req,
                                     const connection_info& conn, std::uint64_t count) {
    websocket::stream<tcp::socket> ws{std::move(sock)};
    // The decorator runs inside async_accept below, while conn is alive.
    ws.set_option(websocket::stream_base::decorator(
        [&conn, count](websocket::response_type& res) { stamp(res, conn, count); }));
    ws.read_message_max(64 * 1024 * 1024);
    if (auto [ec] = co_await ws.async_accept(req, use_tuple); ec) {
        co_return;
    }
    beast::flat_buffer buffer;
    for (;;) {
        auto [read_ec, n] = co_await ws.async_read(buffer, use_tuple);
        if (read_ec) {
            // websocket::error::closed: Beast already answered the close frame.
            co_return;
        }
        ws.text(ws.got_text());
        auto [write_ec, m] = co_await ws.async_write(buffer.data(), use_tuple);
        if (write_ec) {
            co_return;
        }
        buffer.consume(buffer.size());
    }
}

// Routes one request whose header has been read. Returns true when the
// connection may carry another request.
net::awaitable<bool> answer(tcp::socket& sock, beast::flat_buffer& buffer, request_parser& parser,
                            const connection_info& conn, std::uint64_t count) {
    const auto& req = parser.get();
    const std::string_view target{req.target().data(), req.target().size()};
    const std::string_view path = target.substr(0, target.find('?'));
    const http::verb method = req.method();
    origin_state& state = conn.state;

    if (path == "/echo") {
        co_return co_await send_echo(sock, buffer, parser, conn, count);
    }
    if (!co_await drain_body(sock, buffer, parser)) {
        co_return false;
    }
    if (path == "/" || path == "/small") {
        co_return co_await send_simple(sock, parser, conn, count, http::status::ok,
                                       "hello from " + state.name + "\n");
    }
    if (path.starts_with("/bytes/")) {
        if (const auto size = number_after(path, "/bytes/")) {
            co_return co_await send_bytes(sock, parser, conn, count, *size);
        }
    } else if (path == "/headers") {
        co_return co_await send_simple(sock, parser, conn, count, http::status::ok,
                                       headers_json(parser, conn), "application/json");
    } else if (path.starts_with("/status/")) {
        const auto code = number_after(path, "/status/");
        if (code && *code >= 200 && *code <= 599) {
            const auto status = static_cast<http::status>(*code);
            co_return co_await send_simple(sock, parser, conn, count, status,
                                           "status " + std::to_string(*code) + "\n");
        }
    } else if (path.starts_with("/delay/")) {
        const auto ms = number_after(path, "/delay/");
        if (ms && *ms <= 3'600'000) {
            net::steady_timer timer{sock.get_executor(), std::chrono::milliseconds{*ms}};
            co_await timer.async_wait(use_tuple);
            co_return co_await send_simple(sock, parser, conn, count, http::status::ok,
                                           "delayed " + std::to_string(*ms) + "ms\n");
        }
    } else if (path == "/health" && (method == http::verb::get || method == http::verb::head)) {
        const bool up = state.healthy.load(std::memory_order_relaxed);
        co_return co_await send_simple(sock, parser, conn, count,
                                       up ? http::status::ok : http::status::service_unavailable,
                                       up ? "ok\n" : "down\n");
    } else if ((path == "/health/down" || path == "/health/up") && method == http::verb::post) {
        const bool up = path == "/health/up";
        state.healthy.store(up, std::memory_order_relaxed);
        co_return co_await send_simple(sock, parser, conn, count, http::status::ok,
                                       up ? "ok\n" : "down\n");
    }
    co_return co_await send_simple(sock, parser, conn, count, http::status::not_found,
                                   "not found\n");
}

} // namespace

std::string endpoint_string(const tcp::endpoint& ep) {
    const auto addr = ep.address();
    std::string host = addr.is_v6() ? "[" + addr.to_string() + "]" : addr.to_string();
    return host + ":" + std::to_string(ep.port());
}

void prepare_origin_data() {
    (void)bytes_pattern();
}

// One TCP connection, start to close. The coroutine frame owns the socket.
net::awaitable<void> serve_connection(tcp::socket sock, origin_state& state, std::uint64_t id) {
    beast::error_code ignored;
    const auto peer = sock.remote_endpoint(ignored);
    const connection_info conn{state, id, endpoint_string(peer)};
    beast::flat_buffer buffer;
    for (;;) {
        // A parser serves one message only; a fresh one per request.
        request_parser parser;
        parser.header_limit(64 * 1024);
        parser.body_limit(boost::none);
        auto [ec, n] = co_await http::async_read_header(sock, buffer, parser, use_tuple);
        if (ec) {
            if (ec != http::error::end_of_stream && ec != net::error::eof &&
                ec != net::error::connection_reset) {
                // Malformed request: say so, then close like any server would.
                const std::uint64_t count =
                    state.requests.fetch_add(1, std::memory_order_relaxed) + 1;
                http::response<http::string_body> bad{http::status::bad_request, 11};
                stamp(bad, conn, count);
                bad.keep_alive(false);
                bad.set(http::field::content_type, "text/plain");
                bad.body() = "bad request\n";
                bad.prepare_payload();
                co_await http::async_write(sock, bad, use_tuple);
            }
            break;
        }
        const std::uint64_t count = state.requests.fetch_add(1, std::memory_order_relaxed) + 1;
        const auto& target = parser.get().target();
        if (websocket::is_upgrade(parser.get()) && target.starts_with("/ws")) {
            co_await serve_websocket(std::move(sock), parser.release(), conn, count);
            co_return;
        }
        if (!co_await answer(sock, buffer, parser, conn, count)) {
            break;
        }
    }
    sock.shutdown(tcp::socket::shutdown_send, ignored);
    sock.close(ignored);
}

} // namespace sluice::bench
