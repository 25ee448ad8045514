#include "proxy/health.hpp"

#include "proxy/http_parser.hpp"
#include "proxy/log.hpp"
#include "proxy/snapshot.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/beast/core/tcp_stream.hpp>

#include "tls/client_context.hpp"

#include <array>

namespace sluice::proxy {
namespace net = boost::asio;
namespace beast = boost::beast;
using tcp = net::ip::tcp;

namespace {
constexpr auto use_tuple = net::as_tuple(net::use_awaitable);
constexpr std::size_t max_check_head = 16 * 1024;
} // namespace

bool record_check(health_counters& c, bool ok, int healthy_threshold, int unhealthy_threshold) {
    if (ok) {
        c.failures = 0;
        if (c.healthy)
            return false;
        if (++c.successes < healthy_threshold)
            return false;
        c.healthy = true;
        c.successes = 0;
        return true;
    }
    c.successes = 0;
    if (!c.healthy)
        return false;
    if (++c.failures < unhealthy_threshold)
        return false;
    c.healthy = false;
    c.failures = 0;
    return true;
}

class health_prober_impl : public std::enable_shared_from_this<health_prober_impl> {
  public:
    health_prober_impl(net::io_context& io, std::shared_ptr<const snapshot> snap)
        : io_(io), snap_(std::move(snap)) {}

    void start() {
        for (const auto& up : snap_->upstreams) {
            if (!up.cfg->health)
                continue;
            for (const auto& server : up.servers) {
                auto timer = std::make_shared<net::steady_timer>(io_);
                timers_.push_back(timer);
                net::co_spawn(io_, probe(shared_from_this(), &up, server, timer), net::detached);
            }
        }
    }

    void stop() {
        stopped_ = true;
        for (auto& t : timers_)
            t->cancel();
    }

  private:
    // One server's checks, every interval, the first at once. Lifetime:
    // `self` keeps the snapshot (and so `up`) alive until the loop ends.
    static net::awaitable<void> probe(std::shared_ptr<health_prober_impl> self,
                                      const upstream_entry* up,
                                      std::shared_ptr<server_state> server,
                                      std::shared_ptr<net::steady_timer> timer) {
        const auto& hc = *up->cfg->health;
        while (!self->stopped_) {
            auto result = co_await check_once(hc, *server, up->tls.get());
            if (self->stopped_)
                break;
            result.at = std::chrono::system_clock::now();
            server->last_check = result;
            ++(result.ok ? server->checks_succeeded : server->checks_failed);
            if (record_check(server->health, result.ok, hc.healthy_threshold,
                             hc.unhealthy_threshold)) {
                server->healthy.store(server->health.healthy, std::memory_order_release);
                const std::string reason =
                    result.ok ? "status " + std::to_string(result.status) : result.error;
                log::write(
                    server->health.healthy ? log::level::info : log::level::warn,
                    server->health.healthy ? "server up" : "server down",
                    {{"upstream", up->cfg->name}, {"server", server->address}, {"reason", reason}});
            }
            timer->expires_after(hc.interval);
            co_await timer->async_wait(use_tuple);
        }
    }

    // One HTTP/1.1 GET of the check path, within the check timeout; over
    // TLS (as requests go) when the upstream has `tls`.
    static net::awaitable<check_result>
    check_once(const config::health_check& hc, server_state& server, tls::client_context* secure) {
        check_result r;
        r.done = true;
        beast::tcp_stream stream(co_await net::this_coro::executor);
        boost::system::error_code ec;
        const auto address = net::ip::make_address(server.ip, ec);
        if (ec) {
            r.error = "bad address";
            co_return r;
        }
        stream.expires_after(hc.timeout);
        auto [cec] = co_await stream.async_connect(tcp::endpoint(address, server.port), use_tuple);
        if (cec) {
            r.error = cec == beast::error::timeout ? "timeout" : "connect: " + cec.message();
            co_return r;
        }
        if (secure != nullptr) {
            net::ssl::stream<beast::tcp_stream&> tls_stream(stream, secure->get());
            if (!secure->prepare(tls_stream.native_handle(), server.name)) {
                r.error = "tls: bad server name";
                co_return r;
            }
            auto [hec] =
                co_await tls_stream.async_handshake(net::ssl::stream_base::client, use_tuple);
            if (hec) {
                r.error = hec == beast::error::timeout ? "timeout" : "tls: " + hec.message();
                co_return r;
            }
            co_return co_await get(tls_stream, hc, server, r);
        }
        co_return co_await get(stream, hc, server, r);
    }

    // The check's request and response on a connected stream.
    template <typename Stream>
    static net::awaitable<check_result> get(Stream& stream, const config::health_check& hc,
                                            server_state& server, check_result r) {
        const std::string host = hc.host.empty() ? server.address : hc.host;
        const std::string request =
            "GET " + hc.path + " HTTP/1.1\r\nHost: " + host +
            "\r\nUser-Agent: sluice-health-check\r\nConnection: close\r\n\r\n";
        auto [wec, wn] = co_await net::async_write(stream, net::buffer(request), use_tuple);
        if (wec) {
            r.error = wec == beast::error::timeout ? "timeout" : "write: " + wec.message();
            co_return r;
        }
        std::string head;
        std::array<char, 4096> buf;
        while (http::find_head_end(head, 0) == 0) {
            if (head.size() > max_check_head) {
                r.error = "response head too large";
                co_return r;
            }
            auto [rec, n] = co_await stream.async_read_some(net::buffer(buf), use_tuple);
            if (rec) {
                r.error = rec == beast::error::timeout ? "timeout" : "read: " + rec.message();
                co_return r;
            }
            head.append(buf.data(), n);
        }
        http::message_head parsed;
        if (http::parse_response_head(head, parsed) != http::parse_status::ok) {
            r.error = "malformed response";
            co_return r;
        }
        r.status = parsed.status;
        r.ok = expected(hc, parsed.status);
        if (!r.ok)
            r.error = "status " + std::to_string(parsed.status);
        boost::system::error_code ignored;
        beast::get_lowest_layer(stream).socket().shutdown(tcp::socket::shutdown_both, ignored);
        co_return r;
    }

    net::io_context& io_;
    std::shared_ptr<const snapshot> snap_;
    std::vector<std::shared_ptr<net::steady_timer>> timers_;
    bool stopped_ = false;
};

health_prober::health_prober(net::io_context& io, std::shared_ptr<const snapshot> snap)
    : impl_(std::make_shared<health_prober_impl>(io, std::move(snap))) {
    impl_->start();
}

health_prober::~health_prober() {
    impl_->stop();
}

} // namespace sluice::proxy
