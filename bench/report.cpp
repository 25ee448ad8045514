#include "bench/report.hpp"

#include <boost/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>

namespace sluice::bench {
namespace {

namespace json = boost::json;

std::string printf_string(const char* format, double value) {
    char buf[64];
    std::snprintf(buf, sizeof buf, format, value);
    return buf;
}

std::string html_escape(std::string_view text) {
    std::string out;
    out.reserve(text.size());
    for (const char c : text) {
        switch (c) {
        case '&':
            out += "&amp;";
            break;
        case '<':
            out += "&lt;";
            break;
        case '>':
            out += "&gt;";
            break;
        case '"':
            out += "&quot;";
            break;
        default:
            out += c;
        }
    }
    return out;
}

// Label for a percentile: "50", "99.9", "99.999".
std::string percentile_label(double p) {
    std::string s = printf_string("%.6f", p);
    while (s.back() == '0') {
        s.pop_back();
    }
    if (s.back() == '.') {
        s.pop_back();
    }
    return s;
}

json::object parameters_json(const load_options& o) {
    json::object p;
    p["url"] = o.url_text;
    p["method"] = o.method;
    p["connections"] = o.connections;
    p["threads"] = o.threads;
    p["duration_s"] = std::chrono::duration<double>(o.duration).count();
    p["mode"] = o.rate > 0 ? "open" : "closed";
    p["rate"] = o.rate > 0 ? json::value(o.rate) : json::value(nullptr);
    p["new_connection"] = o.new_connection;
    p["body_size"] = o.body_size;
    json::array headers;
    for (const auto& h : o.headers) {
        headers.emplace_back(h);
    }
    p["headers"] = std::move(headers);
    p["insecure"] = o.insecure;
    p["tls_resume"] = o.tls_resume;
    p["timeout_s"] = std::chrono::duration<double>(o.timeout).count();
    return p;
}

} // namespace

std::vector<double> plotted_percentiles() {
    std::vector<double> out{0,  10, 20,   30,   40,    50,    60,     70,     80, 90,
                            95, 99, 99.5, 99.9, 99.95, 99.99, 99.995, 99.999, 100};
    return out;
}

std::string format_latency_us(std::uint64_t us) {
    if (us < 1000) {
        return std::to_string(us) + "us";
    }
    if (us < 1'000'000) {
        return printf_string("%.2fms", static_cast<double>(us) / 1e3);
    }
    return printf_string("%.2fs", static_cast<double>(us) / 1e6);
}

std::string format_bytes(double bytes) {
    static constexpr const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    std::size_t unit = 0;
    while (bytes >= 1024 && unit + 1 < std::size(units)) {
        bytes /= 1024;
        ++unit;
    }
    return printf_string(unit == 0 ? "%.0f" : "%.2f", bytes) + " " + units[unit];
}

std::string summary_text(const run_report& report) {
    const load_options& o = report.options;
    const run_result& r = report.result;
    const double secs = std::max(report.elapsed_s, 1e-9);
    const histogram& h = r.latency_us;
    std::string out;
    out += "sluice-bench load " + o.url_text + "\n";
    out +=
        "  " + format_duration(o.duration) + ", " + std::to_string(o.connections) +
        " connections, " + std::to_string(o.threads) + " threads, " +
        (o.rate > 0 ? "open loop at " + printf_string("%.0f", o.rate) + " req/s" : "closed loop") +
        ", " + (o.new_connection ? "new connection per request" : "keep-alive") + "\n";
    out += "  requests    " + std::to_string(r.requests) + " in " + printf_string("%.2fs", secs) +
           ", " + printf_string("%.1f", static_cast<double>(r.requests) / secs) + " req/s\n";
    out += "  transfer    " + format_bytes(static_cast<double>(r.bytes_read)) + " read (" +
           format_bytes(static_cast<double>(r.bytes_read) / secs) + "/s), " +
           format_bytes(static_cast<double>(r.bytes_written)) + " written, " +
           std::to_string(r.connections_opened) + " connections opened" +
           (o.url.tls ? ", " + std::to_string(r.tls_resumed) + " TLS sessions resumed" : "") + "\n";
    out += "  latency     p50 " + format_latency_us(h.value_at_percentile(50)) + "  p90 " +
           format_latency_us(h.value_at_percentile(90)) + "  p99 " +
           format_latency_us(h.value_at_percentile(99)) + "  p99.9 " +
           format_latency_us(h.value_at_percentile(99.9)) + "  max " + format_latency_us(h.max()) +
           "\n";
    out += "              mean " + format_latency_us(static_cast<std::uint64_t>(h.mean())) +
           "  stdev " + format_latency_us(static_cast<std::uint64_t>(h.stddev())) + "  min " +
           format_latency_us(h.min()) + "\n";
    out += "  status     ";
    bool any_status = false;
    for (std::size_t code = 0; code < r.status_counts.size(); ++code) {
        if (r.status_counts[code] != 0) {
            out += " " + (code == 0 ? std::string{"other"} : std::to_string(code)) + ": " +
                   std::to_string(r.status_counts[code]);
            any_status = true;
        }
    }
    out += any_status ? "\n" : " none\n";
    out += "  errors     ";
    for (std::size_t k = 0; k < error_kind_count; ++k) {
        out += " " + std::string{error_kind_name(static_cast<error_kind>(k))} + " " +
               std::to_string(r.errors[k]);
    }
    out += "\n";
    return out;
}

std::string report_json(const run_report& report) {
    const run_result& r = report.result;
    const histogram& h = r.latency_us;
    const double secs = std::max(report.elapsed_s, 1e-9);
    json::object doc;
    doc["tool"] = "sluice-bench";
    doc["version"] = SLUICE_VERSION;
    doc["started_at"] = report.started_at;
    doc["parameters"] = parameters_json(report.options);
    doc["elapsed_s"] = report.elapsed_s;
    doc["requests"] = r.requests;
    doc["requests_per_s"] = static_cast<double>(r.requests) / secs;
    doc["bytes_read"] = r.bytes_read;
    doc["bytes_read_per_s"] = static_cast<double>(r.bytes_read) / secs;
    doc["bytes_written"] = r.bytes_written;
    doc["connections_opened"] = r.connections_opened;
    doc["tls_resumed"] = r.tls_resumed;
    json::object latency;
    latency["count"] = h.count();
    latency["min"] = h.min();
    latency["mean"] = h.mean();
    latency["stdev"] = h.stddev();
    latency["p50"] = h.value_at_percentile(50);
    latency["p90"] = h.value_at_percentile(90);
    latency["p99"] = h.value_at_percentile(99);
    latency["p99_9"] = h.value_at_percentile(99.9);
    latency["max"] = h.max();
    doc["latency_us"] = std::move(latency);
    json::array percentiles;
    for (const double p : plotted_percentiles()) {
        percentiles.push_back(
            json::object{{"percentile", p}, {"latency_us", h.value_at_percentile(p)}});
    }
    doc["latency_percentiles"] = std::move(percentiles);
    json::object statuses;
    for (std::size_t code = 0; code < r.status_counts.size(); ++code) {
        if (r.status_counts[code] != 0) {
            statuses[code == 0 ? std::string{"other"} : std::to_string(code)] =
                r.status_counts[code];
        }
    }
    doc["status_codes"] = std::move(statuses);
    json::object errors;
    for (std::size_t k = 0; k < error_kind_count; ++k) {
        errors[error_kind_name(static_cast<error_kind>(k))] = r.errors[k];
    }
    errors["total"] = r.error_total();
    doc["errors"] = std::move(errors);
    return json::serialize(doc) + "\n";
}

// The plot: latency (y, linear, ms) against percentile on the usual HDR
// axis x = log10(1 / (1 - p)), so 90, 99, 99.9 ... are evenly spaced.
namespace {

std::string latency_svg(const histogram& h) {
    constexpr double width = 760, height = 360, left = 70, right = 20, top = 20, bottom = 50;
    constexpr double max_x = 5; // 99.999
    const double plot_w = width - left - right;
    const double plot_h = height - top - bottom;
    const double max_ms = std::max(0.001, static_cast<double>(h.max()) / 1e3);
    // A round top for the y axis: 1, 2 or 5 times a power of ten.
    const double magnitude = std::pow(10.0, std::floor(std::log10(max_ms)));
    double y_top = magnitude;
    for (const double step : {1.0, 2.0, 5.0, 10.0}) {
        if (step * magnitude >= max_ms) {
            y_top = step * magnitude;
            break;
        }
    }
    auto x_of = [&](double p) {
        const double x = p >= 100 ? max_x : std::min(max_x, std::log10(100.0 / (100.0 - p)));
        return left + x / max_x * plot_w;
    };
    auto y_of = [&](double ms) { return top + plot_h - ms / y_top * plot_h; };

    std::string svg = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" +
                      printf_string("%.0f", width) + "\" height=\"" +
                      printf_string("%.0f", height) +
                      "\" font-family=\"sans-serif\" font-size=\"12\">\n";
    svg += "<rect x=\"0\" y=\"0\" width=\"100%\" height=\"100%\" fill=\"#fff\"/>\n";
    for (int i = 0; i <= 5; ++i) {
        const double ms = y_top * i / 5;
        const double y = y_of(ms);
        svg += "<line x1=\"" + printf_string("%.1f", left) + "\" x2=\"" +
               printf_string("%.1f", left + plot_w) + "\" y1=\"" + printf_string("%.1f", y) +
               "\" y2=\"" + printf_string("%.1f", y) + "\" stroke=\"#ddd\"/>\n";
        svg += "<text x=\"" + printf_string("%.1f", left - 6) + "\" y=\"" +
               printf_string("%.1f", y + 4) + "\" text-anchor=\"end\">" + printf_string("%g", ms) +
               "</text>\n";
    }
    for (const double p : {0.0, 90.0, 99.0, 99.9, 99.99, 99.999}) {
        const double x = x_of(p);
        svg += "<line x1=\"" + printf_string("%.1f", x) + "\" x2=\"" + printf_string("%.1f", x) +
               "\" y1=\"" + printf_string("%.1f", top) + "\" y2=\"" +
               printf_string("%.1f", top + plot_h) + "\" stroke=\"#ddd\"/>\n";
        svg += "<text x=\"" + printf_string("%.1f", x) + "\" y=\"" +
               printf_string("%.1f", top + plot_h + 18) + "\" text-anchor=\"middle\">" +
               percentile_label(p) + "%</text>\n";
    }
    svg += "<text x=\"" + printf_string("%.1f", left + plot_w / 2) + "\" y=\"" +
           printf_string("%.1f", height - 8) + "\" text-anchor=\"middle\">percentile</text>\n";
    svg += "<text transform=\"rotate(-90)\" x=\"" + printf_string("%.1f", -(top + plot_h / 2)) +
           "\" y=\"16\" text-anchor=\"middle\">latency (ms)</text>\n";
    // Dense points along the curve, so steps between buckets show.
    std::string points;
    for (int i = 0; i <= 500; ++i) {
        const double x = max_x * i / 500.0;
        const double p = 100.0 - 100.0 / std::pow(10.0, x);
        const double ms = static_cast<double>(h.value_at_percentile(p)) / 1e3;
        points += printf_string("%.1f", x_of(p)) + "," + printf_string("%.1f", y_of(ms)) + " ";
    }
    svg += "<polyline fill=\"none\" stroke=\"#1f6fb2\" stroke-width=\"2\" points=\"" + points +
           "\"/>\n";
    svg += "<rect x=\"" + printf_string("%.1f", left) + "\" y=\"" + printf_string("%.1f", top) +
           "\" width=\"" + printf_string("%.1f", plot_w) + "\" height=\"" +
           printf_string("%.1f", plot_h) + "\" fill=\"none\" stroke=\"#444\"/>\n";
    svg += "</svg>\n";
    return svg;
}

} // namespace

std::string report_html(const run_report& report) {
    const load_options& o = report.options;
    const run_result& r = report.result;
    const histogram& h = r.latency_us;
    const double secs = std::max(report.elapsed_s, 1e-9);
    auto row = [](std::string_view name, const std::string& value) {
        return "<tr><th>" + html_escape(name) + "</th><td>" + html_escape(value) + "</td></tr>\n";
    };
    std::string html =
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n<title>sluice-bench: " +
        html_escape(o.url_text) +
        "</title>\n<style>body{font-family:sans-serif;margin:2em;color:#222}"
        "table{border-collapse:collapse;margin:1em 0}th,td{border:1px solid #ccc;padding:4px 10px;"
        "text-align:left}th{background:#f4f4f4}td{font-family:monospace}</style>\n</head><body>\n";
    html += "<h1>sluice-bench load</h1>\n<p>Started " + html_escape(report.started_at) + "</p>\n";
    html += "<h2>Parameters</h2>\n<table>\n";
    html += row("URL", o.url_text) + row("method", o.method) +
            row("connections", std::to_string(o.connections)) +
            row("threads", std::to_string(o.threads)) +
            row("duration", format_duration(o.duration)) +
            row("mode", o.rate > 0 ? "open loop, " + printf_string("%.1f", o.rate) + " req/s"
                                   : "closed loop") +
            row("connections", o.new_connection ? "new connection per request" : "keep-alive") +
            row("body size", std::to_string(o.body_size) + " bytes") +
            row("timeout", format_duration(o.timeout));
    for (const auto& header : o.headers) {
        html += row("header", header);
    }
    html += "</table>\n<h2>Results</h2>\n<table>\n";
    html += row("requests", std::to_string(r.requests)) +
            row("requests/s", printf_string("%.1f", static_cast<double>(r.requests) / secs)) +
            row("read", format_bytes(static_cast<double>(r.bytes_read)) + " (" +
                            format_bytes(static_cast<double>(r.bytes_read) / secs) + "/s)") +
            row("written", format_bytes(static_cast<double>(r.bytes_written))) +
            row("connections opened", std::to_string(r.connections_opened)) +
            (o.url.tls ? row("TLS sessions resumed", std::to_string(r.tls_resumed)) : "") +
            row("elapsed", printf_string("%.3fs", report.elapsed_s));
    for (std::size_t code = 0; code < r.status_counts.size(); ++code) {
        if (r.status_counts[code] != 0) {
            html += row("status " + (code == 0 ? std::string{"other"} : std::to_string(code)),
                        std::to_string(r.status_counts[code]));
        }
    }
    for (std::size_t k = 0; k < error_kind_count; ++k) {
        html += row("errors: " + std::string{error_kind_name(static_cast<error_kind>(k))},
                    std::to_string(r.errors[k]));
    }
    html += "</table>\n<h2>Latency</h2>\n" + latency_svg(h) +
            "<table>\n<tr><th>percentile</th><th>latency</th></tr>\n";
    for (const double p : plotted_percentiles()) {
        html += "<tr><td>" + percentile_label(p) + "</td><td>" +
                format_latency_us(h.value_at_percentile(p)) + "</td></tr>\n";
    }
    html += "</table>\n</body></html>\n";
    return html;
}

} // namespace sluice::bench
