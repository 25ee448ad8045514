// Presenting a finished load run: the terminal summary, the JSON document
// (schema in bench/README.md) and the self-contained HTML report. Pure:
// values in, text out; the caller writes the files.
#pragma once

#include "bench/load_options.hpp"
#include "bench/load_result.hpp"

#include <string>
#include <vector>

namespace sluice::bench {

struct run_report {
    const load_options& options;
    const run_result& result;
    double elapsed_s = 0;   // the measured window, seconds
    std::string started_at; // wall clock, RFC 3339 UTC
};

// The percentiles listed in JSON and plotted in HTML: 0, 10..90, then
// 95, 99, 99.5, 99.9, ... towards 100 (each step halves the remaining tail).
std::vector<double> plotted_percentiles();

// "850us", "1.25ms", "2.31s".
std::string format_latency_us(std::uint64_t us);
// "1.23 KiB", "45.6 MiB".
std::string format_bytes(double bytes);

std::string summary_text(const run_report& report);
std::string report_json(const run_report& report);
std::string report_html(const run_report& report);

} // namespace sluice::bench
