// `sluice-bench load`: parse the options, resolve the target once, split the
// connections over the threads, show progress, merge and report.
#include "bench/load.hpp"

#include "bench/load_client.hpp"
#include "bench/load_options.hpp"
#include "bench/report.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>

#include <atomic>
#include <csignal>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <memory>
#include <thread>
#include <vector>

#include <unistd.h>

namespace sluice::bench {
namespace {

namespace net = boost::asio;
using tcp = net::ip::tcp;

std::string utc_now_rfc3339() {
    const std::time_t now = std::time(nullptr);
    std::tm tm{};
    gmtime_r(&now, &tm);
    char buf[32];
    std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
    return buf;
}

// Writes `text` to `path`. Returns false after printing why.
bool write_file(const std::string& path, const std::string& text) {
    std::ofstream out{path, std::ios::binary | std::ios::trunc};
    out << text;
    out.close();
    if (!out) {
        std::fprintf(stderr, "sluice-bench load: cannot write %s\n", path.c_str());
        return false;
    }
    return true;
}

// Checks that output files can be created before spending a whole run.
bool output_writable(const std::string& path) {
    if (path.empty()) {
        return true;
    }
    std::ofstream out{path, std::ios::binary | std::ios::app};
    if (!out) {
        std::fprintf(stderr, "sluice-bench load: cannot write %s\n", path.c_str());
        return false;
    }
    return true;
}

// Set by SIGINT/SIGTERM: end the run early but still report it.
std::atomic<bool> stop_requested{false};
static_assert(std::atomic<bool>::is_always_lock_free);

void request_stop(int) {
    stop_requested.store(true);
}

} // namespace

int run_load(std::span<char* const> args) {
    auto parsed = parse_load_args(args);
    if (auto* error = std::get_if<usage_error>(&parsed)) {
        if (error->message.empty()) {
            std::fputs(load_usage.data(), stdout);
            return 0;
        }
        std::fprintf(stderr, "sluice-bench load: %s\n", error->message.c_str());
        std::fputs(load_usage.data(), stderr);
        return 2;
    }
    const load_options options = std::get<load_options>(std::move(parsed));
    if (!output_writable(options.json_path) || !output_writable(options.report_path)) {
        return 1;
    }
    std::signal(SIGPIPE, SIG_IGN);
    std::signal(SIGINT, request_stop);
    std::signal(SIGTERM, request_stop);

    load_plan plan;
    plan.options = &options;
    plan.request = build_request(options);
    plan.head_request = options.method == "HEAD";
    {
        net::io_context ioc;
        tcp::resolver resolver{ioc};
        boost::system::error_code ec;
        const auto results =
            resolver.resolve(options.url.host, std::to_string(options.url.port), ec);
        if (ec || results.empty()) {
            std::fprintf(stderr, "sluice-bench load: cannot resolve %s: %s\n",
                         options.url.host.c_str(), ec.message().c_str());
            return 1;
        }
        for (const auto& entry : results) {
            plan.endpoints.push_back(entry.endpoint());
        }
    }

    const std::string started_at = utc_now_rfc3339();
    plan.start = clock_type::now();
    plan.end = plan.start + std::chrono::duration_cast<clock_type::duration>(options.duration);
    plan.stop_early = &stop_requested;

    const int threads = options.threads;
    std::vector<run_result> results(static_cast<std::size_t>(threads));
    std::unique_ptr<thread_progress[]> progress{
        new thread_progress[static_cast<std::size_t>(threads)]};
    std::atomic<int> running{threads};
    std::vector<std::thread> workers;
    int first = 0;
    for (int t = 0; t < threads; ++t) {
        // Spread the remainder over the first threads: 10 over 3 -> 4, 3, 3.
        const int count =
            options.connections / threads + (t < options.connections % threads ? 1 : 0);
        workers.emplace_back([&, t, first, count] {
            results[static_cast<std::size_t>(t)] = run_share(plan, first, count, progress[t]);
            running.fetch_sub(1);
        });
        first += count;
    }

    const bool tty = isatty(STDOUT_FILENO) != 0;
    auto next_tick = plan.start + std::chrono::seconds{1};
    std::uint64_t last_requests = 0;
    while (running.load() > 0) {
        std::this_thread::sleep_for(std::chrono::milliseconds{20});
        if (!tty || clock_type::now() < next_tick) {
            continue;
        }
        std::uint64_t requests = 0;
        std::uint64_t errors = 0;
        for (int t = 0; t < threads; ++t) {
            requests += progress[t].requests.load(std::memory_order_relaxed);
            errors += progress[t].errors.load(std::memory_order_relaxed);
        }
        const auto elapsed =
            std::chrono::duration_cast<std::chrono::seconds>(next_tick - plan.start);
        std::printf("\r[%3llds] %llu requests, %llu req/s, %llu errors   ",
                    static_cast<long long>(elapsed.count()),
                    static_cast<unsigned long long>(requests),
                    static_cast<unsigned long long>(requests - last_requests),
                    static_cast<unsigned long long>(errors));
        std::fflush(stdout);
        last_requests = requests;
        next_tick += std::chrono::seconds{1};
    }
    for (auto& worker : workers) {
        worker.join();
    }
    if (tty && last_requests != 0) {
        std::fputs("\r\033[K", stdout);
    }

    // The window is plan.start..plan.end (or the interruption): nothing
    // completing later is counted.
    const auto stopped = std::min(clock_type::now(), plan.end);
    const double elapsed_s = std::chrono::duration<double>(stopped - plan.start).count();
    run_result total;
    for (const auto& r : results) {
        total.merge(r);
    }
    const run_report report{options, total, elapsed_s, started_at};
    std::fputs(summary_text(report).c_str(), stdout);
    std::fflush(stdout);
    bool ok = true;
    if (!options.json_path.empty()) {
        ok = write_file(options.json_path, report_json(report)) && ok;
    }
    if (!options.report_path.empty()) {
        ok = write_file(options.report_path, report_html(report)) && ok;
    }
    return ok ? 0 : 1;
}

} // namespace sluice::bench
