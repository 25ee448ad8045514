#include "proxy/server.hpp"

#include "config/load.hpp"
#include "proxy/access_log.hpp"
#include "proxy/admin.hpp"
#include "proxy/log.hpp"
#include "proxy/snapshot.hpp"
#include "proxy/status.hpp"
#include "proxy/worker.hpp"

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>

#include <csignal>
#include <cstdio>
#include <sys/socket.h>

namespace sluice::proxy {
namespace net = boost::asio;
using tcp = net::ip::tcp;

namespace {

constexpr int listen_backlog = 4096;
constexpr auto drain_poll = std::chrono::milliseconds(20);

// Opens, binds and listens. `reuse_port`: every worker binds the same
// address with SO_REUSEPORT and the kernel spreads connections over them.
// Returns nullptr and sets `error` on failure.
std::unique_ptr<tcp::acceptor> bind_acceptor(net::io_context& io, const config::host_port& hp,
                                             bool reuse_port, std::string& error) {
    boost::system::error_code ec;
    tcp::endpoint endpoint;
    const auto address = net::ip::make_address(hp.host, ec);
    if (!ec) {
        endpoint = tcp::endpoint(address, hp.port);
    } else {
        tcp::resolver resolver(io);
        const auto results = resolver.resolve(hp.host, std::to_string(hp.port), ec);
        if (ec || results.empty()) {
            error = "cannot resolve \"" + hp.host + "\": " + ec.message();
            return nullptr;
        }
        endpoint = results.begin()->endpoint();
    }
    auto acceptor = std::make_unique<tcp::acceptor>(io);
    acceptor->open(endpoint.protocol(), ec);
    if (!ec) acceptor->set_option(tcp::acceptor::reuse_address(true), ec);
    if (!ec && reuse_port) {
        const int one = 1;
        if (::setsockopt(acceptor->native_handle(), SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0)
            ec.assign(errno, boost::system::system_category());
    }
    if (!ec) acceptor->bind(endpoint, ec);
    if (!ec) acceptor->listen(listen_backlog, ec);
    if (ec) {
        error = "cannot listen on " + endpoint.address().to_string() + ":" +
                std::to_string(endpoint.port()) + ": " + ec.message();
        return nullptr;
    }
    return acceptor;
}


// A start-up failure: logged, and printed on stderr as file:line:col so it
// reads like a config error.
void fail_start(const config::error& e) {
    log::error("start-up failed", {{"error", config::to_string(e)}});
    std::fprintf(stderr, "%s\n", config::to_string(e).c_str());
}

bool same_listeners(const config::config& a, const config::config& b) {
    if (a.listeners.size() != b.listeners.size()) return false;
    for (std::size_t i = 0; i < a.listeners.size(); ++i) {
        const auto& x = a.listeners[i];
        const auto& y = b.listeners[i];
        if (x.name != y.name || !(x.address == y.address) || x.tls.has_value() != y.tls.has_value())
            return false;
    }
    return a.admin.address == b.admin.address;
}

} // namespace

class server_impl final : public control_plane {
public:
    explicit server_impl(config::config cfg) : initial_(std::move(cfg)) {}

    int run();

    // control_plane
    bool ready() const override { return ready_; }
    std::string status_json() const override { return render_status_json(facts()); }
    std::string metrics_text() const override { return render_metrics(facts()); }
    std::string status_page() const override { return render_status_page(facts()); }
    reload_result reload(const char* trigger) override;

private:
    void wait_for_signals();
    void begin_shutdown();
    void poll_drain(std::chrono::steady_clock::time_point deadline);
    status_facts facts() const;

    config::config initial_;
    net::io_context io_{1};
    server_registry registry_;
    std::shared_ptr<const snapshot> current_;
    std::vector<std::unique_ptr<worker>> workers_;
    std::unique_ptr<admin_server> admin_;
    net::signal_set signals_{io_};
    net::steady_timer drain_timer_{io_};
    bool ready_ = false;
    bool draining_ = false;
    reload_history history_;
};

int server_impl::run() {
    std::signal(SIGPIPE, SIG_IGN);
    for (const int signo : {SIGINT, SIGTERM, SIGHUP, SIGUSR1}) signals_.add(signo);
    const std::string path = initial_.path;
    try {
        current_ = build_snapshot(std::move(initial_), 1, registry_);
    } catch (const std::exception& e) {
        log::error("start-up failed", {{"file", path}, {"error", e.what()}});
        return 1;
    }
    history_.loaded_at = current_->loaded_at;
    const auto& cfg = current_->cfg;

    std::string error;
    if (!open_access_log(cfg.access_log.path, error)) {
        fail_start(config::error_at(cfg, "access_log.path", error));
        return 1;
    }

    for (std::size_t l = 0; l < cfg.listeners.size(); ++l) {
        if (cfg.listeners[l].tls) {
            // Never serve plain HTTP on a listener configured for HTTPS.
            fail_start(config::error_at(cfg, "listeners[" + std::to_string(l) + "].tls",
                                        "TLS termination is not supported by this version yet"));
            return 1;
        }
    }
    const int worker_count = std::max(1, cfg.workers);
    for (int i = 0; i < worker_count; ++i) workers_.push_back(std::make_unique<worker>(i, current_));
    for (std::size_t l = 0; l < cfg.listeners.size(); ++l) {
        const auto& listener = cfg.listeners[l];
        for (auto& w : workers_) {
            auto acceptor = bind_acceptor(w->io(), listener.address, true, error);
            if (!acceptor) {
                fail_start(config::error_at(cfg, "listeners[" + std::to_string(l) + "].bind", error));
                return 1;
            }
            w->add_acceptor(std::move(acceptor), l);
        }
    }
    auto admin_acceptor = bind_acceptor(io_, cfg.admin.address, false, error);
    if (!admin_acceptor) {
        fail_start(config::error_at(cfg, "admin.bind", error));
        return 1;
    }
    admin_ = std::make_unique<admin_server>(io_, std::move(*admin_acceptor), *this);

    for (auto& w : workers_) w->start();
    admin_->start();
    wait_for_signals();
    ready_ = true;
    for (const auto& listener : cfg.listeners)
        log::info("listening", {{"listener", listener.name}, {"bind", listener.bind},
                                log::flag("tls", listener.tls.has_value())});
    log::info("started", {{"version", SLUICE_VERSION}, log::num("workers", worker_count),
                          {"admin", cfg.admin.bind}, {"config", path}});

    io_.run();

    workers_.clear(); // joins each worker and frees what it still held
    log::info("stopped");
    return 0;
}

void server_impl::wait_for_signals() {
    signals_.async_wait([this](boost::system::error_code ec, int signo) {
        if (ec) return;
        switch (signo) {
        case SIGHUP:
            reload("signal");
            break;
        case SIGUSR1: {
            std::string error;
            if (!reopen_access_log(error)) log::error("access log reopen failed", {{"error", error}});
            else log::info("access log reopened");
            break;
        }
        default:
            if (draining_) {
                // A second SIGTERM/SIGINT: stop waiting for in-flight requests.
                log::warn("second stop signal: closing all connections");
                poll_drain(std::chrono::steady_clock::now());
                return;
            }
            begin_shutdown();
            break;
        }
        wait_for_signals();
    });
}

void server_impl::begin_shutdown() {
    draining_ = true;
    ready_ = false;
    const auto grace = current_->cfg.timeouts.shutdown_grace;
    log::info("draining", {log::num("grace_ms", grace.count())});
    for (auto& w : workers_) w->begin_drain();
    poll_drain(std::chrono::steady_clock::now() + grace);
}

// Waits, without blocking the control thread, until every worker's
// connections have ended or the deadline passes; then stops.
void server_impl::poll_drain(std::chrono::steady_clock::time_point deadline) {
    int active = 0;
    for (const auto& w : workers_) active += w->active_connections();
    const bool late = std::chrono::steady_clock::now() >= deadline;
    if (active == 0 || late) {
        if (active > 0) {
            log::warn("shutdown grace over", {log::num("connections_closed", active)});
            for (auto& w : workers_) w->close_all();
        }
        drain_timer_.cancel();
        signals_.cancel();
        if (admin_) admin_->stop();
        io_.stop();
        return;
    }
    drain_timer_.expires_after(drain_poll);
    drain_timer_.async_wait([this, deadline](boost::system::error_code ec) {
        if (!ec) poll_drain(deadline);
    });
}

reload_result server_impl::reload(const char* trigger) {
    reload_result result;
    auto fail = [&](std::string error) {
        result.error = std::move(error);
        history_.record_failure(result.error);
        log::error("reload failed", {{"trigger", trigger}, {"error", result.error}});
        return result;
    };
    auto loaded = config::load_file(current_->cfg.path);
    if (auto* errors = std::get_if<std::vector<config::error>>(&loaded)) {
        std::string text;
        for (const auto& e : *errors) {
            if (!text.empty()) text.push_back('\n');
            text.append(config::to_string(e));
        }
        return fail(std::move(text));
    }
    auto& cfg = std::get<config::config>(loaded);
    if (!same_listeners(cfg, current_->cfg))
        return fail(cfg.path + ": listeners: adding, removing or rebinding listeners needs a restart");
    // Balancer state is per worker: size it for the workers that run.
    cfg.workers = static_cast<int>(workers_.size());
    std::shared_ptr<const snapshot> next;
    try {
        next = build_snapshot(std::move(cfg), current_->generation + 1, registry_);
    } catch (const std::exception& e) {
        return fail(current_->cfg.path + ": " + e.what());
    }
    current_ = next;
    for (auto& w : workers_) w->publish(next);
    registry_.prune();
    history_.record_success(next->loaded_at);
    result.ok = true;
    result.generation = next->generation;
    log::info("config reloaded", {{"trigger", trigger}, log::num("generation", static_cast<long long>(next->generation))});
    return result;
}

status_facts server_impl::facts() const {
    status_facts f;
    f.snap = current_.get();
    f.history = &history_;
    for (const auto& w : workers_) f.active_connections += w->active_connections();
    return f;
}

server::server(config::config cfg) : impl_(std::make_unique<server_impl>(std::move(cfg))) {}
server::~server() = default;
int server::run() { return impl_->run(); }

} // namespace sluice::proxy
