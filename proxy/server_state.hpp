#pragma once
// Runtime state of one upstream server that all workers share and that
// outlives a reload: the registry hands out the same object for the same
// (upstream name, address), so a server kept across a reload keeps its
// health and in-flight count. Laid out by writer.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>

namespace sluice::proxy {

// Consecutive active-check results (see health.hpp: record_check).
struct health_counters {
    bool healthy = true; // new servers start healthy (SPEC 5)
    int successes = 0;   // consecutive, while unhealthy
    int failures = 0;    // consecutive, while healthy
};

// The last active check, for /status.
struct check_result {
    bool done = false; // a check has completed
    bool ok = false;
    int status = 0;    // HTTP status, 0 when none arrived
    std::string error; // why it failed, when it did
    std::chrono::system_clock::time_point at;
};

// A process-wide number for a new server_state, never reused (see server_state::id).
std::uint32_t next_server_id();

struct server_state {
    // --- identity: set at creation, read by everyone ---
    // Index of this server in each worker's metrics table (proxy/metrics.hpp):
    // small, dense and unique for the life of the process, so a worker counts
    // upstream requests in a plain array without hashing or locking.
    std::uint32_t id = next_server_id();
    std::string upstream;
    std::string address; // resolved "ip:port" (also the metrics label)
    std::string name;    // as configured ("backend:8000"), may equal address
    std::string ip;
    std::uint16_t port = 0;

    // --- workers, every request: relaxed increments and decrements ---
    alignas(64) std::atomic<int> in_flight{0};

    // --- control thread (active health checks): release stores ---
    alignas(64) std::atomic<bool> healthy{true};

    // --- control thread only: the health prober writes, the admin reads ---
    health_counters health;
    check_result last_check;
    std::uint64_t checks_succeeded = 0; // sluice_health_checks_total{result="success"}
    std::uint64_t checks_failed = 0;    // sluice_health_checks_total{result="failure"}

    // --- workers, on connect failures and successes (passive checks) ---
    alignas(64) std::atomic<int> consecutive_failures{0};
    // steady_clock nanoseconds until which the server is out; 0 = in.
    std::atomic<std::int64_t> down_until_ns{0};

    // Whether a worker may send a new request here at `now_ns` (steady clock).
    bool available(std::int64_t now_ns) const {
        return healthy.load(std::memory_order_acquire) &&
               down_until_ns.load(std::memory_order_relaxed) <= now_ns;
    }
};

inline std::int64_t steady_now_ns() {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(
               std::chrono::steady_clock::now().time_since_epoch())
        .count();
}

// Records one connect failure or timeout at `now_ns` (steady clock); after
// `max_fails` in a row the server is out until now + `fail_timeout`, then
// tried again. Called by workers.
void record_connect_failure(server_state& s, int max_fails, std::chrono::milliseconds fail_timeout,
                            std::int64_t now_ns);
void record_connect_success(server_state& s);

// Owned by the control thread; snapshots hold shared_ptrs to its entries.
class server_registry {
  public:
    // The state for (upstream, address), created on first use.
    std::shared_ptr<server_state> get(const std::string& upstream, const std::string& address,
                                      const std::string& name, const std::string& ip,
                                      std::uint16_t port);
    // Forgets entries no snapshot references any more.
    void prune();

  private:
    std::map<std::pair<std::string, std::string>, std::shared_ptr<server_state>> entries_;
};

} // namespace sluice::proxy
