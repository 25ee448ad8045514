// One thread's share of a load run: its own io_context, its own connections,
// its own run_result. Threads share nothing but the read-only plan and one
// progress cell each, read once a second by the main thread.
#pragma once

#include "bench/load_options.hpp"
#include "bench/load_result.hpp"

#include <boost/asio/ip/tcp.hpp>

#include <atomic>
#include <chrono>
#include <string>
#include <vector>

namespace sluice::bench {

using clock_type = std::chrono::steady_clock;

// Read-only for the whole run, shared by every thread.
struct load_plan {
    const load_options* options = nullptr;
    std::string request; // the exact request bytes, sent unchanged every time
    bool head_request = false;
    std::vector<boost::asio::ip::tcp::endpoint> endpoints;
    clock_type::time_point start;
    clock_type::time_point end;
    // Set (from a signal handler) to end the run before `end`; checked by
    // each thread's sweep every 50 ms.
    const std::atomic<bool>* stop_early = nullptr;
};

// Written only by its thread (relaxed stores), read by the main thread for
// the progress line. One cache line each so threads do not share one.
struct alignas(64) thread_progress {
    std::atomic<std::uint64_t> requests{0};
    std::atomic<std::uint64_t> errors{0};
    std::atomic<std::uint64_t> bytes_read{0};
};

// Runs connections [first, first + count) of the plan on the calling thread
// until plan.end, then returns what they measured. `first` staggers the
// open-loop send times across threads. Requests still in flight at plan.end
// are abandoned and not counted.
run_result run_share(const load_plan& plan, int first, int count, thread_progress& progress);

} // namespace sluice::bench
