#include "proxy/admin.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http.hpp>
#include <boost/json.hpp>

namespace sluice::proxy {
namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = net::ip::tcp;

namespace {

constexpr auto use_tuple = net::as_tuple(net::use_awaitable);

http::response<http::string_body> answer(const http::request<http::string_body>& req,
                                         control_plane& control) {
    http::response<http::string_body> res;
    res.version(11);
    res.keep_alive(req.keep_alive());
    res.set(http::field::server, "sluice");
    const auto target = req.target();
    const auto path = target.substr(0, target.find('?'));
    auto text = [&](http::status s, std::string body) {
        res.result(s);
        res.set(http::field::content_type, "text/plain; charset=utf-8");
        res.body() = std::move(body);
    };
    auto json = [&](http::status s, std::string body) {
        res.result(s);
        res.set(http::field::content_type, "application/json");
        res.body() = std::move(body);
    };
    const bool get = req.method() == http::verb::get || req.method() == http::verb::head;
    if (path == "/healthz" && get) {
        text(http::status::ok, "ok\n");
    } else if (path == "/ready" && get) {
        if (control.ready())
            text(http::status::ok, "ready\n");
        else
            text(http::status::service_unavailable, "not ready\n");
    } else if (path == "/status" && get) {
        json(http::status::ok, control.status_json());
    } else if (path == "/metrics" && get) {
        text(http::status::ok, control.metrics_text());
        res.set(http::field::content_type, "text/plain; version=0.0.4; charset=utf-8");
    } else if (path == "/" && get) {
        res.result(http::status::ok);
        res.set(http::field::content_type, "text/html; charset=utf-8");
        res.body() = control.status_page();
    } else if (path == "/reload" && req.method() == http::verb::post) {
        const auto r = control.reload("admin");
        boost::json::object o;
        o["ok"] = r.ok;
        if (r.ok)
            o["generation"] = r.generation;
        else
            o["error"] = r.error;
        json(r.ok ? http::status::ok : http::status::bad_request, boost::json::serialize(o));
    } else if (path == "/healthz" || path == "/ready" || path == "/status" || path == "/metrics" ||
               path == "/reload" || path == "/") {
        text(http::status::method_not_allowed, "method not allowed\n");
    } else {
        text(http::status::not_found, "not found\n");
    }
    res.prepare_payload();
    if (req.method() == http::verb::head)
        res.body().clear();
    return res;
}

net::awaitable<void> serve_admin_connection(tcp::socket socket, control_plane* control) {
    beast::tcp_stream stream(std::move(socket));
    beast::flat_buffer buffer;
    for (;;) {
        stream.expires_after(std::chrono::seconds(30));
        http::request_parser<http::string_body> parser;
        parser.header_limit(16 * 1024);
        parser.body_limit(64 * 1024);
        auto [ec, n] = co_await http::async_read(stream, buffer, parser, use_tuple);
        if (ec)
            break;
        auto req = parser.release();
        auto res = answer(req, *control);
        const bool keep = res.keep_alive();
        auto [wec, wn] = co_await http::async_write(stream, res, use_tuple);
        if (wec || !keep)
            break;
    }
    boost::system::error_code ignored;
    stream.socket().shutdown(tcp::socket::shutdown_send, ignored);
}

} // namespace

admin_server::admin_server(net::io_context& io, tcp::acceptor acceptor, control_plane& control)
    : io_(io), acceptor_(std::move(acceptor)), control_(control) {}

void admin_server::start() {
    net::co_spawn(
        io_,
        [this]() -> net::awaitable<void> {
            for (;;) {
                auto [ec, socket] = co_await acceptor_.async_accept(use_tuple);
                if (ec == net::error::operation_aborted || !acceptor_.is_open())
                    co_return;
                if (ec)
                    continue;
                net::co_spawn(io_, serve_admin_connection(std::move(socket), &control_),
                              net::detached);
            }
        },
        net::detached);
}

void admin_server::stop() {
    boost::system::error_code ignored;
    acceptor_.close(ignored);
}

} // namespace sluice::proxy
