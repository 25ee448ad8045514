#pragma once
// What the admin listener shows: /status JSON, /metrics text and the HTML
// status page, rendered from the current snapshot and the shared server
// state. Runs on the control thread, at request time only.

#include "proxy/snapshot.hpp"

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

namespace sluice::proxy {

class worker_metrics;

struct reload_history {
    std::chrono::system_clock::time_point loaded_at; // of the config in force
    bool any = false;                                // a reload was attempted
    bool last_ok = true;
    std::chrono::system_clock::time_point last_at;
    std::string last_error;
    std::uint64_t successes = 0;
    std::uint64_t failures = 0;

    void record_success(std::chrono::system_clock::time_point at) {
        any = true;
        last_ok = true;
        last_at = loaded_at = at;
        last_error.clear();
        ++successes;
    }
    void record_failure(std::string error) {
        any = true;
        last_ok = false;
        last_at = std::chrono::system_clock::now();
        last_error = std::move(error);
        ++failures;
    }
};

struct status_facts {
    const snapshot* snap = nullptr;
    const reload_history* history = nullptr;
    int active_connections = 0;
    // Each worker's counters, folded by render_metrics (proxy/metrics.hpp).
    std::vector<const worker_metrics*> workers;
};

std::string render_status_json(const status_facts& f);
std::string render_metrics(const status_facts& f);
std::string render_status_page(const status_facts& f);
std::string format_utc(std::chrono::system_clock::time_point t);

} // namespace sluice::proxy
