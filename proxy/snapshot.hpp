#pragma once
// One immutable version of everything a request needs: the config, compiled
// routes and the upstreams with their resolved servers. Built on the control
// thread, then shared by every worker through shared_ptr<const snapshot>; a
// request keeps the version it started with until it ends.

#include "config/model.hpp"
#include "proxy/router.hpp"
#include "proxy/server_state.hpp"

#include <chrono>
#include <cstdint>
#include <map>
#include <stdexcept>
#include <memory>
#include <string>
#include <vector>

namespace sluice::tls {
class server_contexts;
class client_context;
} // namespace sluice::tls

namespace sluice::proxy {

struct upstream_entry {
    const config::upstream* cfg = nullptr;
    std::vector<std::shared_ptr<server_state>> servers;
    std::vector<int> weights; // parallel to servers
    std::chrono::milliseconds connect_timeout{};
    std::chrono::milliseconds response_timeout{};
    std::shared_ptr<tls::client_context> tls; // HTTPS upstreams only

    // Per-worker balancer state: slot k is read and written by worker k only.
    struct alignas(64) worker_cursor {
        std::vector<std::int64_t> current; // smooth weighted round robin
        std::size_t rotation = 0;          // least_conn tie rotation
    };
    mutable std::vector<worker_cursor> cursors;
};

// A listener's identity across reloads: its bind address. A reload that
// keeps a bind keeps the sockets (and connections) of that listener.
std::string listener_key(const config::listener& l);

struct listener_entry {
    const config::listener* cfg = nullptr;
    std::string key;              // listener_key(*cfg)
    std::uint32_t metrics_id = 0; // stable per bind for the process's life (metrics series)
    std::vector<compiled_route> routes;
    std::shared_ptr<tls::server_contexts> tls; // certificates read for this snapshot; null for HTTP
};

struct snapshot {
    config::config cfg;
    std::uint64_t generation = 0;
    std::chrono::system_clock::time_point loaded_at;
    std::vector<upstream_entry> upstreams; // parallel to cfg.upstreams
    std::vector<listener_entry> listeners; // parallel to cfg.listeners

    const upstream_entry* find_upstream(std::string_view name) const;
    // The listener bound at `key`, or nullptr (a reload removed it).
    const listener_entry* find_listener(std::string_view key) const;
    // The same by its metrics id (one per key for the process's life).
    const listener_entry* find_listener_by_id(std::uint32_t metrics_id) const;
};

// The name last seen for a listener metrics id (control thread only).
std::string listener_name_for_metrics(std::uint32_t id);

// A part of the configuration that could not be loaded (a certificate):
// `key` is its key path, for config::error_at.
struct snapshot_error : std::runtime_error {
    snapshot_error(std::string key_path, const std::string& message)
        : std::runtime_error(message), key(std::move(key_path)) {}
    std::string key;
};

// Host name -> its addresses (IP literals), as last resolved.
using address_book = std::map<std::string, std::vector<std::string>>;

// Builds a snapshot from a validated config: compiles routes, expands each
// server into one server per address (IP literals as they are, names from
// `dns`; a name not in `dns` gives no server until it resolves) and takes
// each server's shared state from `registry`, and loads the listeners'
// certificates (snapshot_error naming the key and file when one fails). Runs on the control thread.
// `same_files`: a snapshot of this very configuration (a re-resolution
// builds one with new addresses), whose TLS contexts are taken instead of
// reading the certificate, key and CA files again: those are read at a
// reload only, which can fail and keep what runs (a file broken on disk
// since must not stop the new addresses, nor end the process).
std::shared_ptr<const snapshot> build_snapshot(config::config cfg, std::uint64_t generation,
                                               server_registry& registry, const address_book& dns,
                                               const snapshot* same_files = nullptr);

// Without active checks a server is healthy (SPEC 2), also when a reload
// removed its checks: clears the active-check verdicts of the servers of
// every upstream of `installed` that has no health_check. Called once a
// snapshot is installed, never while one is built (a reload that fails
// must change nothing). Control thread.
void forget_unchecked_verdicts(const snapshot& installed);

} // namespace sluice::proxy
