#include "proxy/metrics.hpp"

#include "proxy/snapshot.hpp"

#include <prometheus/client_metric.h>
#include <prometheus/collectable.h>
#include <prometheus/metric_family.h>
#include <prometheus/metric_type.h>
#include <prometheus/text_serializer.h>

#include <algorithm>
#include <cstdlib>
#include <limits>
#include <set>
#include <string_view>
#include <utility>

namespace sluice::proxy {

// --- worker side ------------------------------------------------------------

worker_metrics::worker_metrics() {
    upstream_names_.emplace_back(); // slot 0: requests the proxy answered itself
}

worker_metrics::~worker_metrics() = default;

bool worker_metrics::counting_enabled() {
    static const bool enabled = [] {
        const char* v = std::getenv("SLUICE_BENCH_NO_METRICS");
        return v == nullptr || std::string_view(v) != "1";
    }();
    return enabled;
}

void worker_metrics::on_request(const snapshot& snap, std::size_t listener, int upstream,
                                int status, double seconds, std::uint64_t bytes_in,
                                std::uint64_t bytes_out) {
    if (!counting_)
        return;
    const std::uint32_t slot =
        upstream < 0 ? 0 : upstream_slot(snap, static_cast<std::size_t>(upstream));
    auto& s = requests(listener, slot);
    code(s, status).add();
    // A clock that went backwards or a NaN must not make the sum decrease.
    s.duration.observe(seconds >= 0 ? seconds : 0.0, request_duration_bounds);
    if (bytes_in != 0)
        s.bytes_in.add(bytes_in);
    if (bytes_out != 0)
        s.bytes_out.add(bytes_out);
}

void worker_metrics::on_upstream_connect(const server_state& server, bool reused,
                                         double connect_seconds) {
    if (!counting_)
        return;
    auto& s = servers(server);
    if (reused) {
        s.reuses.add();
        return;
    }
    s.connects.add();
    s.connect_duration.observe(connect_seconds >= 0 ? connect_seconds : 0.0,
                               connect_duration_bounds);
}

std::uint32_t worker_metrics::upstream_slot(const snapshot& snap, std::size_t index) {
    // The generation as well as the address: a freed snapshot's address can
    // be reused by a later one. Two snapshots with the same generation have
    // the same upstream list (re-resolution keeps the config).
    for (const auto& c : slot_cache_)
        if (c.snap == &snap && c.generation == snap.generation && index < c.slots.size())
            return c.slots[index];
    return fill_slot_cache(snap, index);
}

// Slow path, once per worker per snapshot: maps every upstream of `snap` to
// its slot, giving new names a slot. Linear search: there are few upstreams
// and this runs rarely.
std::uint32_t worker_metrics::fill_slot_cache(const snapshot& snap, std::size_t index) {
    auto& c = slot_cache_[slot_cache_next_];
    slot_cache_next_ = (slot_cache_next_ + 1) % slot_cache_.size();
    c.snap = &snap;
    c.generation = snap.generation;
    c.slots.clear();
    c.slots.reserve(snap.upstreams.size());
    for (const auto& u : snap.upstreams) {
        const auto& name = u.cfg->name;
        const auto it = std::find(upstream_names_.begin() + 1, upstream_names_.end(), name);
        auto slot = static_cast<std::uint32_t>(it - upstream_names_.begin());
        if (it == upstream_names_.end()) {
            const std::lock_guard lock(mutex_);
            upstream_names_.push_back(name);
        }
        c.slots.push_back(slot);
    }
    // An index the snapshot does not have cannot come from a route; count it
    // with the proxy's own answers rather than fail.
    return index < c.slots.size() ? c.slots[index] : 0;
}

request_series& worker_metrics::add_requests(std::size_t listener, std::uint32_t slot) {
    const std::lock_guard lock(mutex_);
    if (requests_.size() <= listener)
        requests_.resize(listener + 1);
    auto& row = requests_[listener];
    if (row.size() <= slot)
        row.resize(slot + 1);
    if (!row[slot])
        row[slot] = std::make_unique<request_series>();
    return *row[slot];
}

void worker_metrics::add_chunk(std::unique_ptr<request_series::code_chunk>& chunk) {
    const std::lock_guard lock(mutex_);
    chunk = std::make_unique<request_series::code_chunk>();
}

server_series& worker_metrics::add_server(const server_state& s) {
    const std::lock_guard lock(mutex_);
    if (servers_.size() <= s.id)
        servers_.resize(static_cast<std::size_t>(s.id) + 1);
    auto& slot = servers_[s.id];
    if (!slot) {
        slot = std::make_unique<server_series>();
        slot->upstream = s.upstream;
        slot->address = s.address;
    }
    return *slot;
}

connection_series& worker_metrics::add_listener(std::size_t listener) {
    const std::lock_guard lock(mutex_);
    if (connections_.size() <= listener)
        connections_.resize(listener + 1);
    auto& slot = connections_[listener];
    if (!slot)
        slot = std::make_unique<connection_series>();
    return *slot;
}

void worker_metrics::fold_into(folded_metrics& out) const {
    const std::lock_guard lock(mutex_);
    for (std::size_t l = 0; l < requests_.size(); ++l) {
        for (std::size_t slot = 0; slot < requests_[l].size(); ++slot) {
            const auto* s = requests_[l][slot].get();
            if (s == nullptr)
                continue;
            auto& t = out.requests[{l, upstream_names_[slot]}];
            for (std::size_t h = 0; h < s->codes.size(); ++h) {
                if (!s->codes[h])
                    continue;
                for (std::size_t i = 0; i < 100; ++i)
                    if (const auto n = s->codes[h]->count[i].value(); n != 0)
                        t.codes[static_cast<int>(h * 100 + i)] += n;
            }
            for (std::size_t b = 0; b < t.duration_buckets.size(); ++b)
                t.duration_buckets[b] += s->duration.bucket(b);
            t.duration_sum += s->duration.sum();
            t.bytes_in += s->bytes_in.value();
            t.bytes_out += s->bytes_out.value();
        }
    }
    for (const auto& s : servers_) {
        if (!s)
            continue;
        auto& t = out.servers[{s->upstream, s->address}];
        t.requests += s->requests.value();
        t.connects += s->connects.value();
        t.reuses += s->reuses.value();
        t.connect_failures += s->connect_failures.value();
        for (std::size_t b = 0; b < t.connect_buckets.size(); ++b)
            t.connect_buckets[b] += s->connect_duration.bucket(b);
        t.connect_sum += s->connect_duration.sum();
    }
    if (out.connections.size() < connections_.size())
        out.connections.resize(connections_.size());
    for (std::size_t l = 0; l < connections_.size(); ++l) {
        if (!connections_[l])
            continue;
        // Closed first, with acquire (the worker stores it with release):
        // every close seen has its open seen too, so opened >= closed.
        const auto closed = connections_[l]->closed.value(std::memory_order_acquire);
        const auto opened = connections_[l]->opened.value();
        out.connections[l].closed += closed;
        out.connections[l].opened += opened;
        out.connections[l].tls_full += connections_[l]->tls_full.value();
        out.connections[l].tls_resumed += connections_[l]->tls_resumed.value();
        out.connections[l].tls_failed += connections_[l]->tls_failed.value();
    }
}

folded_metrics fold(std::span<const worker_metrics* const> workers) {
    folded_metrics out;
    for (const auto* w : workers)
        if (w != nullptr)
            w->fold_into(out);
    return out;
}

// --- exposition -------------------------------------------------------------

namespace {

using prometheus::ClientMetric;
using prometheus::MetricFamily;
using prometheus::MetricType;
using labels = std::vector<ClientMetric::Label>;

MetricFamily family(std::string name, std::string help, MetricType type) {
    MetricFamily f;
    f.name = std::move(name);
    f.help = std::move(help);
    f.type = type;
    return f;
}

ClientMetric& sample(MetricFamily& f, labels l) {
    auto& m = f.metric.emplace_back();
    m.label = std::move(l);
    return m;
}

void counter(MetricFamily& f, labels l, std::uint64_t v) {
    sample(f, std::move(l)).counter.value = static_cast<double>(v);
}

void gauge(MetricFamily& f, labels l, double v) {
    sample(f, std::move(l)).gauge.value = v;
}

// `buckets` are per bucket, the last one +Inf; Prometheus wants them cumulative.
template <std::size_t N>
void histogram(MetricFamily& f, labels l, const std::array<double, N>& bounds,
               const std::array<std::uint64_t, N + 1>& buckets, double sum) {
    auto& h = sample(f, std::move(l)).histogram;
    std::uint64_t cumulative = 0;
    for (std::size_t i = 0; i <= N; ++i) {
        cumulative += buckets[i];
        h.bucket.push_back(
            {cumulative, i < N ? bounds[i] : std::numeric_limits<double>::infinity()});
    }
    h.sample_count = cumulative;
    h.sample_sum = sum;
}

// Folds the workers when collected: the one Collectable of a scrape.
class folded_collector final : public prometheus::Collectable {
  public:
    explicit folded_collector(const exposition_input& in) : in_(in) {}

    std::vector<MetricFamily> Collect() const override {
        const auto& snap = *in_.snap;
        const auto totals = fold(in_.workers);
        std::vector<MetricFamily> out;

        auto build = family("sluice_build_info", "The sluice version running.", MetricType::Gauge);
        gauge(build, {{"version", SLUICE_VERSION}}, 1);
        out.push_back(std::move(build));

        auto reloads = family("sluice_config_reloads_total", "Configuration reloads by result.",
                              MetricType::Counter);
        counter(reloads, {{"result", "success"}}, in_.reload_successes);
        counter(reloads, {{"result", "failure"}}, in_.reload_failures);
        out.push_back(std::move(reloads));

        auto last = family("sluice_config_last_reload_successful",
                           "Whether the last configuration reload succeeded (1) or failed (0).",
                           MetricType::Gauge);
        gauge(last, {}, in_.last_reload_ok ? 1 : 0);
        out.push_back(std::move(last));

        add_request_families(out, snap, totals);
        add_connection_families(out, snap, totals);
        add_server_families(out, snap, totals);
        return out;
    }

  private:
    static std::string listener_name(const snapshot&, std::size_t id) {
        // Listener ids are stable per bind (see listener_entry::metrics_id).
        return listener_name_for_metrics(static_cast<std::uint32_t>(id));
    }

    static void add_request_families(std::vector<MetricFamily>& out, const snapshot& snap,
                                     const folded_metrics& totals) {
        auto requests = family("sluice_http_requests_total",
                               "Requests answered, by listener, upstream (empty when the proxy "
                               "answered itself) and status code sent to the client.",
                               MetricType::Counter);
        auto duration = family("sluice_http_request_duration_seconds",
                               "Time from the first byte of a request to the last byte of its "
                               "response, by listener and upstream.",
                               MetricType::Histogram);
        auto bytes_in = family("sluice_http_request_body_bytes_total",
                               "Request body bytes received from clients.", MetricType::Counter);
        auto bytes_out = family("sluice_http_response_body_bytes_total",
                                "Response body bytes sent to clients.", MetricType::Counter);
        for (const auto& [key, t] : totals.requests) {
            const auto listener = listener_name(snap, key.listener);
            for (const auto& [code, n] : t.codes)
                counter(requests,
                        {{"listener", listener},
                         {"upstream", key.upstream},
                         {"code", std::to_string(code)}},
                        n);
            const labels l{{"listener", listener}, {"upstream", key.upstream}};
            histogram(duration, l, request_duration_bounds, t.duration_buckets, t.duration_sum);
            counter(bytes_in, l, t.bytes_in);
            counter(bytes_out, l, t.bytes_out);
        }
        out.push_back(std::move(requests));
        out.push_back(std::move(duration));
        out.push_back(std::move(bytes_in));
        out.push_back(std::move(bytes_out));
    }

    static void add_connection_families(std::vector<MetricFamily>& out, const snapshot& snap,
                                        const folded_metrics& totals) {
        auto active = family("sluice_downstream_connections_active",
                             "Client connections open now, by listener.", MetricType::Gauge);
        auto total = family("sluice_downstream_connections_total",
                            "Client connections accepted, by listener.", MetricType::Counter);
        auto handshakes = family("sluice_tls_handshakes_total",
                                 "TLS handshakes on HTTPS listeners, by result: full, resumed "
                                 "(a session ticket was accepted) or failure.",
                                 MetricType::Counter);
        std::size_t n = totals.connections.size();
        std::vector<bool> tls(n);
        for (const auto& l : snap.listeners) {
            n = std::max<std::size_t>(n, l.metrics_id + 1);
            tls.resize(n);
            if (l.tls)
                tls[l.metrics_id] = true;
        }
        for (std::size_t l = 0; l < n; ++l) {
            const auto c = l < totals.connections.size() ? totals.connections[l]
                                                         : folded_metrics::connection_totals{};
            const auto name = listener_name(snap, l);
            const labels lb{{"listener", name}};
            gauge(active, lb, static_cast<double>(c.opened >= c.closed ? c.opened - c.closed : 0));
            counter(total, lb, c.opened);
            // HTTPS listeners (and any that had handshakes before a reload
            // made them plain) have the three series from the start.
            if (tls[l] || c.tls_full + c.tls_resumed + c.tls_failed > 0) {
                counter(handshakes, {{"listener", name}, {"result", "full"}}, c.tls_full);
                counter(handshakes, {{"listener", name}, {"result", "resumed"}}, c.tls_resumed);
                counter(handshakes, {{"listener", name}, {"result", "failure"}}, c.tls_failed);
            }
        }
        out.push_back(std::move(active));
        out.push_back(std::move(total));
        out.push_back(std::move(handshakes));
    }

    static void add_server_families(std::vector<MetricFamily>& out, const snapshot& snap,
                                    const folded_metrics& totals) {
        // Every server of the current snapshot has a series from the start;
        // servers gone since keep theirs (from the workers' counters).
        auto servers = totals.servers;
        auto healthy = family("sluice_upstream_server_healthy",
                              "Whether a server receives new requests (1) or is out (0), by "
                              "active or passive health checks.",
                              MetricType::Gauge);
        auto in_flight = family("sluice_upstream_server_in_flight",
                                "Requests in flight to a server.", MetricType::Gauge);
        auto checks = family("sluice_health_checks_total",
                             "Active health checks of a server, by result.", MetricType::Counter);
        const auto now = steady_now_ns();
        // A server listed twice (two names for one address) is one series.
        std::set<folded_metrics::server_key> seen;
        for (const auto& u : snap.upstreams) {
            for (const auto& s : u.servers) {
                folded_metrics::server_key key{u.cfg->name, s->address};
                if (!seen.insert(key).second)
                    continue;
                servers[key]; // zero unless counted
                const labels l{{"upstream", u.cfg->name}, {"server", s->address}};
                gauge(healthy, l, s->available(now) ? 1 : 0);
                gauge(in_flight, l, s->in_flight.load(std::memory_order_relaxed));
                if (u.cfg->health) {
                    // Control-thread fields: render_prometheus runs there.
                    counter(
                        checks,
                        {{"upstream", u.cfg->name}, {"server", s->address}, {"result", "success"}},
                        s->checks_succeeded);
                    counter(
                        checks,
                        {{"upstream", u.cfg->name}, {"server", s->address}, {"result", "failure"}},
                        s->checks_failed);
                }
            }
        }

        auto requests = family("sluice_upstream_requests_total", "Requests sent to a server.",
                               MetricType::Counter);
        auto connects = family("sluice_upstream_connections_opened_total",
                               "New connections made to a server.", MetricType::Counter);
        auto reuses =
            family("sluice_upstream_connection_reuses_total",
                   "Idle pooled connections to a server taken for a request.", MetricType::Counter);
        auto failures = family("sluice_upstream_connect_failures_total",
                               "Connects to a server that failed or timed out (each one is "
                               "retried on another server while retries are left).",
                               MetricType::Counter);
        auto connect_time =
            family("sluice_upstream_connect_duration_seconds",
                   "Time to open a new connection to a server.", MetricType::Histogram);
        for (const auto& [key, t] : servers) {
            const labels l{{"upstream", key.upstream}, {"server", key.address}};
            counter(requests, l, t.requests);
            counter(connects, l, t.connects);
            counter(reuses, l, t.reuses);
            counter(failures, l, t.connect_failures);
            histogram(connect_time, l, connect_duration_bounds, t.connect_buckets, t.connect_sum);
        }
        out.push_back(std::move(requests));
        out.push_back(std::move(healthy));
        out.push_back(std::move(in_flight));
        out.push_back(std::move(checks));
        out.push_back(std::move(connects));
        out.push_back(std::move(reuses));
        out.push_back(std::move(failures));
        out.push_back(std::move(connect_time));
    }

    const exposition_input& in_;
};

} // namespace

std::string render_prometheus(const exposition_input& in) {
    const folded_collector collector(in);
    return prometheus::TextSerializer().Serialize(collector.Collect());
}

} // namespace sluice::proxy
