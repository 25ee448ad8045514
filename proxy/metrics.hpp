#pragma once
// Prometheus metrics (SPEC 8), counted per worker and folded at scrape time.
//
// Why not prometheus-cpp's Counter/Histogram on the hot path: each of their
// updates is an atomic read-modify-write on an object every worker shares, so
// every request would bounce the same cache lines between cores
// (../shared/ARCHITECTURE.md, "Cross-thread state on the hot path"). Instead
// each worker owns a worker_metrics and is its only writer: a counter is an
// std::atomic<std::uint64_t> updated by a relaxed load and a relaxed store
// (a plain `mov`, no lock prefix), which lets the control thread read it at
// scrape time without a data race. render_prometheus() sums the workers'
// numbers into prometheus-cpp MetricFamily objects and serializes them with
// its TextSerializer. docs/METRICS.md lists every metric.
//
// Keys. Listeners are counted by listener_entry::metrics_id, stable per
// bind for the life of the process (a reload may add or remove listeners). Upstreams are counted by
// name: a per-worker table gives each name a small slot, and a cache maps a snapshot's upstream
// index to that slot (rebuilt once per worker when a new snapshot is first seen), so series survive
// reloads that reorder, add or remove upstreams; the series of a removed upstream keep their last
// value. Servers are counted by server_state::id, a dense process-wide number; the names are copied
// on the first request, so a removed server's counters keep their last value too.
//
// This header stays light (no Boost, no prometheus-cpp): worker.hpp includes it.

#include "proxy/server_state.hpp"

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <vector>

namespace sluice::proxy {

struct snapshot;

// sluice_http_request_duration_seconds: 1 ms .. 120 s, a web stack's range.
inline constexpr std::array<double, 16> request_duration_bounds{
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120};
// sluice_upstream_connect_duration_seconds: a connect is usually well under 1 ms
// on a LAN; the top is above any sane connect timeout.
inline constexpr std::array<double, 14> connect_duration_bounds{
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};

// A counter with one writer thread and any number of reader threads. Adding
// is a load and a store, not an atomic add: correct only while a single
// thread writes, which is what makes it cheap.
class local_counter {
  public:
    void add(std::uint64_t n = 1, std::memory_order order = std::memory_order_relaxed) {
        value_.store(value_.load(std::memory_order_relaxed) + n, order);
    }
    std::uint64_t value(std::memory_order order = std::memory_order_relaxed) const {
        return value_.load(order);
    }

  private:
    std::atomic<std::uint64_t> value_{0};
};

// A histogram with one writer: per-bucket (not cumulative) counts, the last
// bucket being +Inf, and the sum of the observed values.
template <std::size_t Bounds> class local_histogram {
  public:
    void observe(double v, const std::array<double, Bounds>& bounds) {
        std::size_t i = 0;
        while (i < Bounds && v > bounds[i])
            ++i; // le: v <= bound falls in bucket i
        buckets_[i].add();
        sum_.store(sum_.load(std::memory_order_relaxed) + v, std::memory_order_relaxed);
    }
    std::uint64_t bucket(std::size_t i) const { return buckets_[i].value(); }
    double sum() const { return sum_.load(std::memory_order_relaxed); }

  private:
    std::array<local_counter, Bounds + 1> buckets_;
    std::atomic<double> sum_{0};
};

// Everything of the requests of one (listener, upstream) pair on one worker.
// alignas(64): series of different workers never share a cache line.
struct alignas(64) request_series {
    // Status codes 0..999 in ten chunks of a hundred, allocated when a code
    // of that hundred is first seen (a handful per series over a process's
    // life). Codes outside 0..999 count as 0: "no status was sent".
    struct alignas(64) code_chunk {
        std::array<local_counter, 100> count;
    };
    std::array<std::unique_ptr<code_chunk>, 10> codes;
    local_histogram<request_duration_bounds.size()> duration;
    local_counter bytes_in;  // request body bytes from the client
    local_counter bytes_out; // response body bytes to the client
};

// One upstream server on one worker. The names are copied when the server is
// first seen, so the series outlives the server_state.
struct alignas(64) server_series {
    std::string upstream;
    std::string address;
    local_counter requests;         // requests sent
    local_counter connects;         // new connections made
    local_counter reuses;           // idle pooled connections taken
    local_counter connect_failures; // connects that failed or timed out
    local_histogram<connect_duration_bounds.size()> connect_duration;
};

// Client connections of one listener on one worker.
struct alignas(64) connection_series {
    local_counter opened;
    local_counter closed; // written with release: see fold_into
    // TLS handshakes on HTTPS listeners, by how they ended.
    local_counter tls_full;
    local_counter tls_resumed;
    local_counter tls_failed;
};

// All workers' numbers summed by label set: what render_prometheus exposes.
// Plain values, so tests can check the folding without parsing text.
struct folded_metrics {
    struct request_key {
        std::size_t listener = 0;
        std::string upstream; // empty: answered by the proxy
        auto operator<=>(const request_key&) const = default;
    };
    struct request_totals {
        std::map<int, std::uint64_t> codes; // status -> requests
        std::array<std::uint64_t, request_duration_bounds.size() + 1>
            duration_buckets{}; // not cumulative
        double duration_sum = 0;
        std::uint64_t bytes_in = 0;
        std::uint64_t bytes_out = 0;
    };
    struct server_key {
        std::string upstream;
        std::string address;
        auto operator<=>(const server_key&) const = default;
    };
    struct server_totals {
        std::uint64_t requests = 0;
        std::uint64_t connects = 0;
        std::uint64_t reuses = 0;
        std::uint64_t connect_failures = 0;
        std::array<std::uint64_t, connect_duration_bounds.size() + 1>
            connect_buckets{}; // not cumulative
        double connect_sum = 0;
    };
    struct connection_totals {
        std::uint64_t opened = 0;
        std::uint64_t closed = 0;
        std::uint64_t tls_full = 0;
        std::uint64_t tls_resumed = 0;
        std::uint64_t tls_failed = 0;
    };

    std::map<request_key, request_totals> requests;
    std::map<server_key, server_totals> servers;
    std::vector<connection_totals> connections; // by listener index
};

// One worker's metrics. The on_* hooks are called on the worker's thread
// only (single writer) and take no lock: after the first request of a key
// they touch only this worker's counters. fold_into may run on any thread
// at any time. A hook that meets a key for the first time (a new listener,
// upstream, status hundred or server) allocates under mutex_; that is rare
// and is the only time the worker can wait for a scrape.
class alignas(64) worker_metrics {
  public:
    worker_metrics();
    ~worker_metrics();
    worker_metrics(const worker_metrics&) = delete;
    worker_metrics& operator=(const worker_metrics&) = delete;

    // --- worker thread ---

    // A client connection accepted on / closed by the listener whose
    // metrics_id is `listener`.
    void on_connection_open(std::size_t listener) { connections(listener).opened.add(); }
    void on_connection_close(std::size_t listener) {
        connections(listener).closed.add(1, std::memory_order_release);
    }
    // A TLS handshake on the listener ended: completed (a full handshake or
    // a resumed session) or failed.
    enum class handshake { full, resumed, failed };
    void on_tls_handshake(std::size_t listener, handshake how) {
        auto& c = connections(listener);
        (how == handshake::full      ? c.tls_full
         : how == handshake::resumed ? c.tls_resumed
                                     : c.tls_failed)
            .add();
    }

    // One request finished (once per request, whatever its outcome).
    // `snap`: the snapshot the request ran with; `upstream`: the index of its
    // upstream in snap.upstreams, or -1 when the proxy answered itself (no
    // route, respond, redirect, an error before routing); `status`: the code
    // sent to the client (499 when the client left first); `seconds`: from
    // the first byte of the request to the last of the response.
    void on_request(const snapshot& snap, std::size_t listener, int upstream, int status,
                    double seconds, std::uint64_t bytes_in, std::uint64_t bytes_out);

    // A request sent to `server` (each attempt that got a connection).
    void on_upstream_request(const server_state& server) {
        if (counting_)
            servers(server).requests.add();
    }
    // A connection to `server` is ready: taken from the pool (`reused`) or
    // newly connected in `connect_seconds`.
    void on_upstream_connect(const server_state& server, bool reused, double connect_seconds);
    // Connecting to `server` failed or timed out.
    void on_upstream_connect_failure(const server_state& server) {
        servers(server).connect_failures.add();
    }

    // --- any thread ---

    // Adds this worker's counters to `out`.
    void fold_into(folded_metrics& out) const;

    // Whether the per-request hooks count. Off only for measuring what
    // counting costs (docs/PERFORMANCE.md): SLUICE_BENCH_NO_METRICS=1 in the
    // environment at start-up. Connection counts are kept either way.
    static bool counting_enabled();

  private:
    const bool counting_ = counting_enabled();
    // The slot of snap.upstreams[index] in upstream_names_ (slot 0 = "").
    std::uint32_t upstream_slot(const snapshot& snap, std::size_t index);
    std::uint32_t fill_slot_cache(const snapshot& snap, std::size_t index);

    request_series& requests(std::size_t listener, std::uint32_t slot) {
        if (listener < requests_.size() && slot < requests_[listener].size() &&
            requests_[listener][slot])
            return *requests_[listener][slot];
        return add_requests(listener, slot);
    }
    request_series& add_requests(std::size_t listener, std::uint32_t slot);
    local_counter& code(request_series& s, int status) {
        const auto c = status >= 0 && status <= 999 ? static_cast<unsigned>(status) : 0U;
        auto& chunk = s.codes[c / 100];
        if (!chunk)
            add_chunk(chunk);
        return chunk->count[c % 100];
    }
    void add_chunk(std::unique_ptr<request_series::code_chunk>& chunk);
    server_series& servers(const server_state& s) {
        if (s.id < servers_.size() && servers_[s.id])
            return *servers_[s.id];
        return add_server(s);
    }
    server_series& add_server(const server_state& s);
    connection_series& connections(std::size_t listener) {
        if (listener < connections_.size() && connections_[listener])
            return *connections_[listener];
        return add_listener(listener);
    }
    connection_series& add_listener(std::size_t listener);

    // Structure (the containers and pointers below, not the counters in
    // them) changes only on the worker's thread and only with mutex_ held;
    // fold_into reads it with mutex_ held. The worker reads it without the
    // lock: it is the only thread that changes it.
    mutable std::mutex mutex_;
    std::vector<std::string> upstream_names_;                            // by slot
    std::vector<std::vector<std::unique_ptr<request_series>>> requests_; // [listener][slot]
    std::vector<std::unique_ptr<server_series>> servers_;                // by server_state::id
    std::vector<std::unique_ptr<connection_series>> connections_;        // by listener

    // Worker thread only: snapshot upstream index -> slot, for the last two
    // snapshots seen (requests of the previous snapshot still finish for a
    // while after a reload).
    struct slot_cache_entry {
        const snapshot* snap = nullptr;
        std::uint64_t generation = 0;
        std::vector<std::uint32_t> slots;
    };
    std::array<slot_cache_entry, 2> slot_cache_;
    std::size_t slot_cache_next_ = 0; // the entry to replace next
};

// What a scrape shows besides the workers' counters.
struct exposition_input {
    const snapshot* snap = nullptr; // the current one: names, servers, health
    std::uint64_t reload_successes = 0;
    std::uint64_t reload_failures = 0;
    bool last_reload_ok = true;
    std::span<const worker_metrics* const> workers;
};

// Sums the workers' counters. Call on any thread.
folded_metrics fold(std::span<const worker_metrics* const> workers);

// The /metrics body: Prometheus text format 0.0.4, every metric of SPEC 8
// (and docs/METRICS.md) with HELP and TYPE. Runs on the control thread: it
// reads the control-thread fields of server_state (health-check counts).
std::string render_prometheus(const exposition_input& in);

} // namespace sluice::proxy
