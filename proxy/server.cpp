#include "proxy/server.hpp"

#include "config/load.hpp"
#include "proxy/access_log.hpp"
#include "proxy/admin.hpp"
#include "proxy/config_watch.hpp"
#include "proxy/health.hpp"
#include "proxy/resolver.hpp"
#include "proxy/log.hpp"
#include "proxy/snapshot.hpp"
#include "proxy/status.hpp"
#include "proxy/worker.hpp"
#include "tls/ticket_keys.hpp"

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>

#include <csignal>
#include <set>
#include <thread>
#include <utility>
#include <cstdio>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

namespace sluice::proxy {
namespace net = boost::asio;
using tcp = net::ip::tcp;

namespace {

// What config.watch watches: the file, and the files it names (read again
// at every reload), added to `files`.
std::vector<std::string> watched_files(const config::config& cfg,
                                       std::vector<std::string> files = {}) {
    files.push_back(cfg.path);
    for (const auto& l : cfg.listeners)
        if (l.tls)
            for (const auto& c : l.tls->certificates) {
                files.push_back(c.cert_file);
                files.push_back(c.key_file);
            }
    for (const auto& u : cfg.upstreams)
        if (u.tls && !u.tls->ca_file.empty())
            files.push_back(u.tls->ca_file);
    return files;
}

constexpr int listen_backlog = 4096;
constexpr auto drain_poll = std::chrono::milliseconds(20);

// Opens, binds and listens. `reuse_port`: every worker binds the same
// address with SO_REUSEPORT and the kernel spreads connections over them.
// `delayed_ack`: see below (the proxy's listeners; not the admin one).
// Returns nullptr and sets `error` on failure.
std::unique_ptr<tcp::acceptor> bind_acceptor(net::io_context& io, const config::host_port& hp,
                                             bool reuse_port, bool delayed_ack,
                                             std::string& error) {
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
    if (!ec)
        acceptor->set_option(tcp::acceptor::reuse_address(true), ec);
    // Accepted connections inherit TCP_NODELAY from the listening socket
    // (Linux): no setsockopt per connection.
    if (!ec)
        acceptor->set_option(tcp::no_delay(true), ec);
    if (!ec && reuse_port) {
        const int one = 1;
        if (::setsockopt(acceptor->native_handle(), SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) !=
            0)
            ec.assign(errno, boost::system::system_category());
    }
    if (!ec)
        acceptor->bind(endpoint, ec);
    if (!ec)
        acceptor->listen(listen_backlog, ec);
    if (!ec && delayed_ack) {
        // Accepted connections start with delayed acknowledgements (Linux:
        // inherited from the listening socket; after listen(), which resets
        // them): a request is acknowledged by the response that answers it,
        // not by a segment of its own first. A session turns them back on
        // while a request is still coming in (acknowledge_at_once). Best
        // effort: without it, one segment more per new connection.
        const int zero = 0;
        ::setsockopt(acceptor->native_handle(), IPPROTO_TCP, TCP_QUICKACK, &zero, sizeof zero);
    }
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

constexpr auto dns_timeout = std::chrono::seconds(2);

// The host names (not IP literals) the config's servers use.
std::set<std::string> server_names(const config::config& cfg) {
    std::set<std::string> names;
    for (const auto& u : cfg.upstreams)
        for (const auto& s : u.servers)
            if (!is_ip_literal(s.endpoint.host))
                names.insert(s.endpoint.host);
    return names;
}

// How often names are re-resolved: the shortest non-zero resolve_interval
// of the upstreams that use names (zero: never).
std::chrono::milliseconds resolve_every(const config::config& cfg) {
    std::chrono::milliseconds every{0};
    for (const auto& u : cfg.upstreams) {
        bool named = false;
        for (const auto& s : u.servers)
            named = named || !is_ip_literal(s.endpoint.host);
        if (named && u.resolve_interval.count() > 0 &&
            (every.count() == 0 || u.resolve_interval < every))
            every = u.resolve_interval;
    }
    return every;
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
    // One acceptor per worker for `listener`, or none (and `error`) when
    // the address cannot be bound.
    std::vector<worker::new_acceptor> bind_everywhere(const config::listener& listener,
                                                      std::string& error);
    // Resolves the names of `cfg` that dns_ does not know yet, blocking.
    void resolve_missing(const config::config& cfg);
    // Makes `next` current: every worker gets it, health checks follow it.
    void install(std::shared_ptr<const snapshot> next,
                 std::vector<std::vector<worker::new_acceptor>> added = {},
                 std::vector<std::string> removed = {});
    // Re-resolution: every resolve_every(), names are resolved on a thread
    // of their own; changed answers make a new snapshot (same generation).
    void arm_resolve_timer();
    // Rotates the process's session-ticket keys every ticket_keys::rotate_every.
    void arm_ticket_rotation();
    // Starts or stops watching the files as config.watch says, and follows
    // the files the current configuration names.
    void update_watch() {
        if (current_->cfg.watch && !watch_ && !draining_)
            watch_ = std::make_unique<config_watch>(io_, watched_files(current_->cfg),
                                                    [this] { reload("watch"); });
        else if (current_->cfg.watch && watch_)
            watch_->watch(watched_files(current_->cfg));
        else if (!current_->cfg.watch)
            watch_.reset();
    }
    void apply_resolution(std::map<std::string, resolve_result> results);
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
    address_book dns_; // last good answer per name
    std::unique_ptr<health_prober> prober_;
    std::unique_ptr<config_watch> watch_; // while config.watch is on
    net::steady_timer resolve_timer_{io_};
    net::steady_timer ticket_timer_{io_};
    std::thread resolve_thread_;
    bool resolving_ = false;
};

int server_impl::run() {
    std::signal(SIGPIPE, SIG_IGN);
    for (const int signo : {SIGINT, SIGTERM, SIGHUP, SIGUSR1})
        signals_.add(signo);
    const std::string path = initial_.path;
    resolve_missing(initial_);
    config::config where;
    where.path = initial_.path;
    where.positions = initial_.positions;
    try {
        current_ = build_snapshot(std::move(initial_), 1, registry_, dns_);
    } catch (const snapshot_error& e) {
        fail_start(config::error_at(where, e.key, e.what()));
        return 1;
    }
    history_.loaded_at = current_->loaded_at;
    const auto& cfg = current_->cfg;

    std::string error;
    if (!open_access_log(cfg.access_log.path, error)) {
        fail_start(config::error_at(cfg, "access_log.path", error));
        return 1;
    }

    const int worker_count = std::max(1, cfg.workers);
    for (int i = 0; i < worker_count; ++i)
        workers_.push_back(std::make_unique<worker>(i, current_));
    for (std::size_t l = 0; l < cfg.listeners.size(); ++l) {
        auto acceptors = bind_everywhere(cfg.listeners[l], error);
        if (acceptors.empty()) {
            fail_start(config::error_at(cfg, "listeners[" + std::to_string(l) + "].bind", error));
            return 1;
        }
        for (std::size_t w = 0; w < workers_.size(); ++w)
            workers_[w]->add_acceptor(std::move(acceptors[w]));
    }
    auto admin_acceptor = bind_acceptor(io_, cfg.admin.address, false, false, error);
    if (!admin_acceptor) {
        fail_start(config::error_at(cfg, "admin.bind", error));
        return 1;
    }
    admin_ = std::make_unique<admin_server>(io_, std::move(*admin_acceptor), *this);

    for (auto& w : workers_)
        w->start();
    prober_ = std::make_unique<health_prober>(io_, current_);
    arm_resolve_timer();
    arm_ticket_rotation();
    update_watch();
    admin_->start();
    wait_for_signals();
    ready_ = true;
    for (const auto& listener : cfg.listeners)
        log::info("listening", {{"listener", listener.name},
                                {"bind", listener.bind},
                                log::flag("tls", listener.tls.has_value())});
    log::info("started", {{"version", SLUICE_VERSION},
                          log::num("workers", worker_count),
                          {"admin", cfg.admin.bind},
                          {"config", path}});

    io_.run();

    prober_.reset();
    watch_.reset();
    if (resolve_thread_.joinable())
        resolve_thread_.join();
    workers_.clear(); // joins each worker and frees what it still held
    log::info("stopped");
    return 0;
}

void server_impl::wait_for_signals() {
    signals_.async_wait([this](boost::system::error_code ec, int signo) {
        if (ec)
            return;
        switch (signo) {
        case SIGHUP:
            reload("signal");
            break;
        case SIGUSR1: {
            std::string error;
            if (!reopen_access_log(error))
                log::error("access log reopen failed", {{"error", error}});
            else
                log::info("access log reopened");
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
    for (auto& w : workers_)
        w->begin_drain();
    poll_drain(std::chrono::steady_clock::now() + grace);
}

// Waits, without blocking the control thread, until every worker's
// connections have ended or the deadline passes; then stops.
void server_impl::poll_drain(std::chrono::steady_clock::time_point deadline) {
    int active = 0;
    for (const auto& w : workers_)
        active += w->active_connections();
    const bool late = std::chrono::steady_clock::now() >= deadline;
    if (active == 0 || late) {
        if (active > 0) {
            log::warn("shutdown grace over", {log::num("connections_closed", active)});
            for (auto& w : workers_)
                w->close_all();
        }
        drain_timer_.cancel();
        resolve_timer_.cancel();
        ticket_timer_.cancel();
        if (prober_)
            prober_.reset();
        watch_.reset();
        signals_.cancel();
        if (admin_)
            admin_->stop();
        io_.stop();
        return;
    }
    drain_timer_.expires_after(drain_poll);
    drain_timer_.async_wait([this, deadline](boost::system::error_code ec) {
        if (!ec)
            poll_drain(deadline);
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
            if (!text.empty())
                text.push_back('\n');
            text.append(config::to_string(e));
        }
        return fail(std::move(text));
    }
    auto& cfg = std::get<config::config>(loaded);
    // A configuration may name a file not there yet (a certificate its
    // deploy writes after it) and fail below: until a reload succeeds the
    // watch follows the files it names as well as the running ones', so
    // that file's arrival reloads again.
    if (watch_)
        watch_->watch(watched_files(cfg, watched_files(current_->cfg)));
    if (!(cfg.admin.address == current_->cfg.admin.address))
        return fail(config::to_string(
            config::error_at(cfg, "admin.bind", "changing the admin bind needs a restart")));
    // Listeners are kept by bind: new binds are bound now (so a bind that
    // fails fails the reload before anything changed), gone ones stop
    // accepting once the new snapshot is in place.
    std::vector<std::vector<worker::new_acceptor>> added(workers_.size());
    std::vector<std::string> removed;
    for (std::size_t l = 0; l < cfg.listeners.size(); ++l) {
        const auto key = listener_key(cfg.listeners[l]);
        bool known = false;
        for (const auto& old : current_->cfg.listeners)
            known = known || listener_key(old) == key;
        if (known)
            continue;
        std::string error;
        auto acceptors = bind_everywhere(cfg.listeners[l], error);
        if (acceptors.empty())
            return fail(config::to_string(
                config::error_at(cfg, "listeners[" + std::to_string(l) + "].bind", error)));
        for (std::size_t w = 0; w < workers_.size(); ++w)
            added[w].push_back(std::move(acceptors[w]));
    }
    for (const auto& old : current_->cfg.listeners) {
        bool kept = false;
        for (const auto& l : cfg.listeners)
            kept = kept || listener_key(l) == listener_key(old);
        if (!kept)
            removed.push_back(listener_key(old));
    }
    // Balancer state is per worker: size it for the workers that run.
    cfg.workers = static_cast<int>(workers_.size());
    resolve_missing(cfg);
    // Where things are in the file, for errors found while building.
    config::config where;
    where.path = cfg.path;
    where.positions = cfg.positions;
    std::shared_ptr<const snapshot> next;
    try {
        next = build_snapshot(std::move(cfg), current_->generation + 1, registry_, dns_);
    } catch (const snapshot_error& e) {
        return fail(config::to_string(config::error_at(where, e.key, e.what())));
    }
    install(next, std::move(added), std::move(removed));
    arm_resolve_timer();
    update_watch();
    history_.record_success(next->loaded_at);
    result.ok = true;
    result.generation = next->generation;
    log::info(
        "config reloaded",
        {{"trigger", trigger}, log::num("generation", static_cast<long long>(next->generation))});
    return result;
}

std::vector<worker::new_acceptor> server_impl::bind_everywhere(const config::listener& listener,
                                                               std::string& error) {
    std::vector<worker::new_acceptor> out;
    for (std::size_t i = 0; i < workers_.size(); ++i) {
        // Bound on the control thread's io_context; the worker moves it into
        // its own (worker::adopt: its event loop does not lock for I/O).
        auto acceptor = bind_acceptor(io_, listener.address, true, true, error);
        if (!acceptor)
            return {};
        out.push_back({std::move(acceptor), listener_key(listener)});
    }
    return out;
}

void server_impl::resolve_missing(const config::config& cfg) {
    for (const auto& name : server_names(cfg)) {
        if (dns_.count(name) != 0)
            continue;
        const auto r = resolve_host(name, cfg.resolver, dns_timeout);
        if (r.ok) {
            dns_[name] = r.addresses;
            log::info("resolved",
                      {{"name", name},
                       log::num("addresses", static_cast<long long>(r.addresses.size()))});
        } else {
            // Start anyway: the upstream has no server (503) until the name
            // resolves, which is retried every resolve_interval.
            log::warn("dns resolution failed", {{"name", name}, {"error", r.error}});
        }
    }
}

void server_impl::install(std::shared_ptr<const snapshot> next,
                          std::vector<std::vector<worker::new_acceptor>> added,
                          std::vector<std::string> removed) {
    current_ = next;
    forget_unchecked_verdicts(*next);
    for (std::size_t w = 0; w < workers_.size(); ++w)
        workers_[w]->publish(
            next, w < added.size() ? std::move(added[w]) : std::vector<worker::new_acceptor>{},
            removed);
    if (!draining_)
        prober_ = std::make_unique<health_prober>(io_, next);
    registry_.prune();
}

void server_impl::arm_ticket_rotation() {
    ticket_timer_.expires_after(tls::ticket_keys::rotate_every);
    ticket_timer_.async_wait([this](boost::system::error_code ec) {
        if (ec || draining_)
            return;
        tls::ticket_keys::process().rotate();
        log::debug("session ticket keys rotated");
        arm_ticket_rotation();
    });
}

void server_impl::arm_resolve_timer() {
    const auto every = resolve_every(current_->cfg);
    resolve_timer_.cancel();
    if (every.count() == 0 || draining_)
        return;
    resolve_timer_.expires_after(every);
    resolve_timer_.async_wait([this](boost::system::error_code ec) {
        if (ec || draining_)
            return;
        if (resolving_) {
            arm_resolve_timer();
            return;
        }
        if (resolve_thread_.joinable())
            resolve_thread_.join(); // finished: resolving_ is false
        resolving_ = true;
        // Lifetime: the thread is joined before the server goes away.
        resolve_thread_ = std::thread(
            [this, names = server_names(current_->cfg), resolver = current_->cfg.resolver] {
                std::map<std::string, resolve_result> results;
                for (const auto& name : names)
                    results[name] = resolve_host(name, resolver, dns_timeout);
                net::post(io_, [this, results = std::move(results)]() mutable {
                    resolving_ = false;
                    apply_resolution(std::move(results));
                });
            });
        arm_resolve_timer();
    });
}

void server_impl::apply_resolution(std::map<std::string, resolve_result> results) {
    if (draining_)
        return;
    bool changed = false;
    for (auto& [name, r] : results) {
        if (!r.ok) {
            // SERVFAIL, NXDOMAIN, timeout, empty: keep the last good set.
            log::debug("dns resolution failed", {{"name", name}, {"error", r.error}});
            continue;
        }
        auto& known = dns_[name];
        if (known == r.addresses)
            continue;
        log::info("dns answer changed",
                  {{"name", name},
                   log::num("before", static_cast<long long>(known.size())),
                   log::num("after", static_cast<long long>(r.addresses.size()))});
        known = std::move(r.addresses);
        changed = true;
    }
    if (!changed)
        return;
    // Same configuration, new addresses: servers that stay keep their state,
    // new ones join, gone ones get no new requests.
    auto cfg = current_->cfg;
    install(build_snapshot(std::move(cfg), current_->generation, registry_, dns_, current_.get()));
}

status_facts server_impl::facts() const {
    status_facts f;
    f.snap = current_.get();
    f.history = &history_;
    for (const auto& w : workers_) {
        f.active_connections += w->active_connections();
        f.workers.push_back(&std::as_const(*w).metrics());
    }
    return f;
}

server::server(config::config cfg) : impl_(std::make_unique<server_impl>(std::move(cfg))) {}
server::~server() = default;
int server::run() {
    return impl_->run();
}

} // namespace sluice::proxy
