#pragma once
// Active health checks (SPEC 5). The state machine is a pure function over
// consecutive results; the prober runs the checks on the control thread and
// publishes each server's verdict through server_state::healthy, which
// workers read.

#include "config/model.hpp"
#include "proxy/server_state.hpp"

#include <chrono>
#include <memory>

namespace sluice::proxy {

// Applies one check result. A healthy server turns unhealthy after
// `unhealthy_threshold` consecutive failures; an unhealthy one turns healthy
// after `healthy_threshold` consecutive successes. Returns whether the
// verdict changed.
bool record_check(health_counters& c, bool ok, int healthy_threshold, int unhealthy_threshold);

// Whether `status` lies in the check's expected range.
inline bool expected(const config::health_check& hc, int status) {
    return status >= hc.expected_status_min && status <= hc.expected_status_max;
}

struct snapshot;
class health_prober_impl;
} // namespace sluice::proxy

namespace boost::asio {
class io_context;
} // namespace boost::asio

namespace sluice::proxy {

// Runs the checks of one snapshot's upstreams until stopped. A reload or a
// DNS change starts a prober for the new snapshot and stops the old one;
// the verdicts live in the shared server_state, so they carry over.
class health_prober {
  public:
    // Checks run on `io`, the control thread's io_context.
    health_prober(boost::asio::io_context& io, std::shared_ptr<const snapshot> snap);
    ~health_prober(); // stops
    health_prober(const health_prober&) = delete;
    health_prober& operator=(const health_prober&) = delete;

  private:
    std::shared_ptr<health_prober_impl> impl_;
};

} // namespace sluice::proxy
