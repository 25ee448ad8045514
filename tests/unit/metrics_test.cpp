// Metrics (SPEC 8, proxy/metrics.hpp): per-worker counters folded into sums,
// histograms cumulative with the right _count and _sum, upstream slots kept
// across snapshots, and the text exposition with every SPEC metric, its HELP
// and TYPE, and escaped label values. No sockets.

#include "config/load.hpp"
#include "proxy/metrics.hpp"
#include "proxy/snapshot.hpp"

#include <catch2/catch.hpp>

#include <array>
#include <sstream>
#include <string>
#include <vector>

using namespace sluice::proxy;
namespace cfg = sluice::config;

namespace {

// Two listeners; upstreams "api" (two servers) and "web" (one, with a
// health check); IP literal servers, so no resolver is needed.
const char* const base_yaml = R"(
listeners:
  - name: public
    bind: "127.0.0.1:18080"
    routes:
      - match: { path_prefix: "/api" }
        upstream: api
      - match: { path_prefix: "/" }
        upstream: web
  - name: internal
    bind: "127.0.0.1:18081"
    routes:
      - match: { path_prefix: "/" }
        upstream: api
upstreams:
  - name: api
    servers:
      - address: "10.0.0.1:8000"
      - address: "10.0.0.2:8000"
  - name: web
    servers:
      - address: "10.0.0.3:80"
    health_check:
      path: /healthz
)";

std::shared_ptr<const snapshot> make_snapshot(const std::string& yaml, std::uint64_t generation,
                                              server_registry& registry) {
    auto loaded = cfg::load_string(yaml, "t.yaml");
    if (const auto* errors = std::get_if<std::vector<cfg::error>>(&loaded)) {
        std::string all;
        for (const auto& e : *errors)
            all += cfg::to_string(e) + "\n";
        FAIL("config errors:\n" << all);
    }
    return build_snapshot(std::get<cfg::config>(std::move(loaded)), generation, registry, {});
}

std::size_t upstream_index(const snapshot& snap, const std::string& name) {
    for (std::size_t i = 0; i < snap.upstreams.size(); ++i)
        if (snap.upstreams[i].cfg->name == name)
            return i;
    FAIL("no upstream " << name);
    return 0;
}

const server_state& server(const snapshot& snap, const std::string& upstream, std::size_t i) {
    return *snap.upstreams[upstream_index(snap, upstream)].servers.at(i);
}

std::uint64_t code_count(const folded_metrics& f, std::size_t listener, const std::string& upstream,
                         int code) {
    const auto it = f.requests.find({listener, upstream});
    if (it == f.requests.end())
        return 0;
    const auto c = it->second.codes.find(code);
    return c == it->second.codes.end() ? 0 : c->second;
}

// The value of the sample written exactly as `series` ("name{labels}"), or -1.
double sample_value(const std::string& text, const std::string& series) {
    std::istringstream in(text);
    std::string line;
    while (std::getline(in, line)) {
        if (line.rfind(series + " ", 0) == 0)
            return std::stod(line.substr(series.size() + 1));
    }
    return -1;
}

} // namespace

TEST_CASE("two workers' counters fold into their sums", "[metrics]") {
    server_registry registry;
    const auto snap = make_snapshot(base_yaml, 1, registry);
    const int api = static_cast<int>(upstream_index(*snap, "api"));
    const int web = static_cast<int>(upstream_index(*snap, "web"));
    worker_metrics a;
    worker_metrics b;

    for (int i = 0; i < 3; ++i)
        a.on_request(*snap, 0, api, 200, 0.002, 10, 100);
    a.on_request(*snap, 0, api, 503, 0.5, 0, 5);
    a.on_request(*snap, 0, -1, 404, 0.0001, 0, 9);
    for (int i = 0; i < 4; ++i)
        b.on_request(*snap, 0, api, 200, 0.02, 1, 1);
    b.on_request(*snap, 1, api, 200, 0.02, 0, 0);
    b.on_request(*snap, 0, web, 302, 0.001, 0, 0);
    b.on_request(*snap, 0, -1, 404, 0.0001, 0, 9);

    a.on_upstream_request(server(*snap, "api", 0));
    a.on_upstream_request(server(*snap, "api", 0));
    b.on_upstream_request(server(*snap, "api", 0));
    b.on_upstream_request(server(*snap, "api", 1));
    a.on_upstream_connect(server(*snap, "api", 0), false, 0.0007);
    b.on_upstream_connect(server(*snap, "api", 0), true, 0);
    b.on_upstream_connect_failure(server(*snap, "api", 1));

    a.on_connection_open(0);
    a.on_connection_open(0);
    a.on_connection_close(0);
    b.on_connection_open(0);
    b.on_connection_open(1);

    const std::array<const worker_metrics*, 2> workers{&a, &b};
    const auto f = fold(workers);

    CHECK(code_count(f, 0, "api", 200) == 7);
    CHECK(code_count(f, 0, "api", 503) == 1);
    CHECK(code_count(f, 1, "api", 200) == 1);
    CHECK(code_count(f, 0, "web", 302) == 1);
    CHECK(code_count(f, 0, "", 404) == 2);
    CHECK(code_count(f, 1, "", 404) == 0);
    const auto& api_totals = f.requests.at({0, "api"});
    CHECK(api_totals.bytes_in == 34);
    CHECK(api_totals.bytes_out == 309);

    const auto& s0 = f.servers.at({"api", "10.0.0.1:8000"});
    CHECK(s0.requests == 3);
    CHECK(s0.connects == 1);
    CHECK(s0.reuses == 1);
    CHECK(s0.connect_failures == 0);
    CHECK(s0.connect_buckets[1] == 1); // 0.7 ms: le 0.001
    const auto& s1 = f.servers.at({"api", "10.0.0.2:8000"});
    CHECK(s1.requests == 1);
    CHECK(s1.connect_failures == 1);

    REQUIRE(f.connections.size() == 2);
    CHECK(f.connections[0].opened == 3);
    CHECK(f.connections[0].closed == 1);
    CHECK(f.connections[1].opened == 1);
    CHECK(f.connections[1].closed == 0);
}

TEST_CASE("histogram buckets are cumulative with _count and _sum", "[metrics]") {
    server_registry registry;
    const auto snap = make_snapshot(base_yaml, 1, registry);
    const int api = static_cast<int>(upstream_index(*snap, "api"));
    worker_metrics w;
    // On a bound counts in that bucket (le = less or equal).
    const std::array<double, 6> seconds{0.001, 0.0015, 0.01, 0.3, 7, 500};
    for (const double s : seconds)
        w.on_request(*snap, 0, api, 200, s, 0, 0);

    const std::array<const worker_metrics*, 1> workers{&w};
    const auto f = fold(workers);
    const auto& d = f.requests.at({0, "api"});
    CHECK(d.duration_buckets[0] == 1);                              // le 0.001
    CHECK(d.duration_buckets[1] == 1);                              // le 0.0025
    CHECK(d.duration_buckets[3] == 1);                              // le 0.01
    CHECK(d.duration_buckets[8] == 1);                              // le 0.5
    CHECK(d.duration_buckets[12] == 1);                             // le 10
    CHECK(d.duration_buckets[request_duration_bounds.size()] == 1); // +Inf

    exposition_input in;
    in.snap = snap.get();
    in.workers = workers;
    const auto text = render_prometheus(in);
    const std::string b =
        "sluice_http_request_duration_seconds_bucket{listener=\"public\",upstream=\"api\",le=\"";
    CHECK(sample_value(text, b + "0.001\"}") == 1);
    CHECK(sample_value(text, b + "0.0025\"}") == 2);
    CHECK(sample_value(text, b + "0.005\"}") == 2);
    CHECK(sample_value(text, b + "0.01\"}") == 3);
    CHECK(sample_value(text, b + "0.5\"}") == 4);
    CHECK(sample_value(text, b + "10\"}") == 5);
    CHECK(sample_value(text, b + "120\"}") == 5);
    CHECK(sample_value(text, b + "+Inf\"}") == 6);
    const std::string l = "{listener=\"public\",upstream=\"api\"}";
    CHECK(sample_value(text, "sluice_http_request_duration_seconds_count" + l) == 6);
    CHECK(sample_value(text, "sluice_http_request_duration_seconds_sum" + l) ==
          Approx(0.001 + 0.0015 + 0.01 + 0.3 + 7 + 500));
}

TEST_CASE("the exposition has every SPEC metric with HELP and TYPE", "[metrics]") {
    server_registry registry;
    const auto snap = make_snapshot(base_yaml, 1, registry);
    const int api = static_cast<int>(upstream_index(*snap, "api"));
    worker_metrics w;
    w.on_request(*snap, 0, api, 200, 0.01, 0, 0);
    w.on_request(*snap, 0, -1, 404, 0.01, 0, 0);
    w.on_upstream_request(server(*snap, "api", 1));
    w.on_connection_open(0);
    const std::array<const worker_metrics*, 1> workers{&w};
    exposition_input in;
    in.snap = snap.get();
    in.workers = workers;
    in.reload_successes = 2;
    in.reload_failures = 1;
    in.last_reload_ok = false;
    const auto text = render_prometheus(in);

    const std::array<std::pair<const char*, const char*>, 11> spec{{
        {"sluice_http_requests_total", "counter"},
        {"sluice_http_request_duration_seconds", "histogram"},
        {"sluice_upstream_requests_total", "counter"},
        {"sluice_upstream_server_healthy", "gauge"},
        {"sluice_upstream_server_in_flight", "gauge"},
        {"sluice_health_checks_total", "counter"},
        {"sluice_downstream_connections_active", "gauge"},
        {"sluice_downstream_connections_total", "counter"},
        {"sluice_config_reloads_total", "counter"},
        {"sluice_config_last_reload_successful", "gauge"},
        {"sluice_build_info", "gauge"},
    }};
    for (const auto& [name, type] : spec) {
        INFO(name);
        CHECK(text.find(std::string("# HELP ") + name + " ") != std::string::npos);
        CHECK(text.find(std::string("# TYPE ") + name + " " + type + "\n") != std::string::npos);
    }

    CHECK(sample_value(
              text,
              "sluice_http_requests_total{listener=\"public\",upstream=\"api\",code=\"200\"}") ==
          1);
    CHECK(sample_value(
              text, "sluice_http_requests_total{listener=\"public\",upstream=\"\",code=\"404\"}") ==
          1);
    CHECK(sample_value(
              text, "sluice_upstream_requests_total{upstream=\"api\",server=\"10.0.0.2:8000\"}") ==
          1);
    // Every current server has its series from the start.
    CHECK(sample_value(
              text, "sluice_upstream_requests_total{upstream=\"api\",server=\"10.0.0.1:8000\"}") ==
          0);
    CHECK(sample_value(
              text, "sluice_upstream_server_healthy{upstream=\"api\",server=\"10.0.0.1:8000\"}") ==
          1);
    CHECK(sample_value(
              text, "sluice_upstream_server_in_flight{upstream=\"web\",server=\"10.0.0.3:80\"}") ==
          0);
    // Health checks: only upstreams that have them.
    CHECK(sample_value(text, "sluice_health_checks_total{upstream=\"web\",server=\"10.0.0.3:80\","
                             "result=\"success\"}") == 0);
    CHECK(sample_value(text, "sluice_health_checks_total{upstream=\"web\",server=\"10.0.0.3:80\","
                             "result=\"failure\"}") == 0);
    CHECK(text.find("sluice_health_checks_total{upstream=\"api\"") == std::string::npos);
    CHECK(sample_value(text, "sluice_downstream_connections_active{listener=\"public\"}") == 1);
    CHECK(sample_value(text, "sluice_downstream_connections_total{listener=\"public\"}") == 1);
    CHECK(sample_value(text, "sluice_downstream_connections_total{listener=\"internal\"}") == 0);
    CHECK(sample_value(text, "sluice_config_reloads_total{result=\"success\"}") == 2);
    CHECK(sample_value(text, "sluice_config_reloads_total{result=\"failure\"}") == 1);
    CHECK(sample_value(text, "sluice_config_last_reload_successful") == 0);
    CHECK(sample_value(text, "sluice_build_info{version=\"" SLUICE_VERSION "\"}") == 1);
}

TEST_CASE("health-check counters come from the server state", "[metrics]") {
    server_registry registry;
    const auto snap = make_snapshot(base_yaml, 1, registry);
    auto& web = const_cast<server_state&>(server(*snap, "web", 0));
    web.checks_succeeded = 5;
    web.checks_failed = 2;
    exposition_input in;
    in.snap = snap.get();
    const auto text = render_prometheus(in);
    CHECK(sample_value(text, "sluice_health_checks_total{upstream=\"web\",server=\"10.0.0.3:80\","
                             "result=\"success\"}") == 5);
    CHECK(sample_value(text, "sluice_health_checks_total{upstream=\"web\",server=\"10.0.0.3:80\","
                             "result=\"failure\"}") == 2);
}

TEST_CASE("label values are escaped", "[metrics]") {
    // A listener name with a backslash, a quote and a newline (YAML escapes).
    std::string yaml = base_yaml;
    const std::string from = "name: internal";
    yaml.replace(yaml.find(from), from.size(), R"(name: "in\\ter\"nal\nx")");
    server_registry registry;
    const auto snap = make_snapshot(yaml, 1, registry);
    worker_metrics w;
    w.on_connection_open(1);
    const std::array<const worker_metrics*, 1> workers{&w};
    exposition_input in;
    in.snap = snap.get();
    in.workers = workers;
    const auto text = render_prometheus(in);
    CHECK(sample_value(text,
                       R"(sluice_downstream_connections_total{listener="in\\ter\"nal\nx"})") == 1);
}

TEST_CASE("upstream series follow the name across reloads", "[metrics]") {
    server_registry registry;
    const auto first = make_snapshot(base_yaml, 1, registry);
    // The reload swaps the upstreams' order and drops "web" from the routes.
    const std::string reordered = R"(
listeners:
  - name: public
    bind: "127.0.0.1:18080"
    routes:
      - match: { path_prefix: "/" }
        upstream: api
  - name: internal
    bind: "127.0.0.1:18081"
    routes:
      - match: { path_prefix: "/" }
        upstream: api
upstreams:
  - name: extra
    servers:
      - address: "10.0.0.9:80"
  - name: api
    servers:
      - address: "10.0.0.1:8000"
)";
    const auto second = make_snapshot(reordered, 2, registry);
    worker_metrics w;
    w.on_request(*first, 0, static_cast<int>(upstream_index(*first, "api")), 200, 0.01, 0, 0);
    w.on_request(*first, 0, static_cast<int>(upstream_index(*first, "web")), 200, 0.01, 0, 0);
    w.on_request(*second, 0, static_cast<int>(upstream_index(*second, "api")), 200, 0.01, 0, 0);
    // A request of the old snapshot that ends after the reload.
    w.on_request(*first, 0, static_cast<int>(upstream_index(*first, "api")), 200, 0.01, 0, 0);
    w.on_request(*second, 0, static_cast<int>(upstream_index(*second, "extra")), 500, 0.01, 0, 0);

    // The same server across the reload is the same server_state (same id).
    CHECK(server(*first, "api", 0).id == server(*second, "api", 0).id);
    w.on_upstream_request(server(*first, "api", 0));
    w.on_upstream_request(server(*second, "api", 0));
    w.on_upstream_request(server(*first, "api", 1)); // gone after the reload

    const std::array<const worker_metrics*, 1> workers{&w};
    const auto f = fold(workers);
    CHECK(code_count(f, 0, "api", 200) == 3);
    CHECK(code_count(f, 0, "web", 200) == 1);
    CHECK(code_count(f, 0, "extra", 500) == 1);
    CHECK(f.servers.at({"api", "10.0.0.1:8000"}).requests == 2);

    exposition_input in;
    in.snap = second.get();
    in.workers = workers;
    const auto text = render_prometheus(in);
    // Series of a removed upstream and server keep their last value.
    CHECK(sample_value(
              text,
              "sluice_http_requests_total{listener=\"public\",upstream=\"web\",code=\"200\"}") ==
          1);
    CHECK(sample_value(
              text, "sluice_upstream_requests_total{upstream=\"api\",server=\"10.0.0.2:8000\"}") ==
          1);
    // Gauges show only the servers of the current snapshot.
    CHECK(text.find("sluice_upstream_server_healthy{upstream=\"api\",server=\"10.0.0.2:8000\"}") ==
          std::string::npos);
    CHECK(sample_value(
              text, "sluice_upstream_server_healthy{upstream=\"extra\",server=\"10.0.0.9:80\"}") ==
          1);
}

TEST_CASE("status codes outside 0..999 count as 0", "[metrics]") {
    server_registry registry;
    const auto snap = make_snapshot(base_yaml, 1, registry);
    worker_metrics w;
    w.on_request(*snap, 0, -1, 1000, 0.01, 0, 0);
    w.on_request(*snap, 0, -1, -3, 0.01, 0, 0);
    w.on_request(*snap, 0, -1, 999, 0.01, 0, 0);
    const std::array<const worker_metrics*, 1> workers{&w};
    const auto f = fold(workers);
    CHECK(code_count(f, 0, "", 0) == 2);
    CHECK(code_count(f, 0, "", 999) == 1);
}

TEST_CASE("worker metrics do not share cache lines", "[metrics]") {
    STATIC_REQUIRE(alignof(worker_metrics) >= 64);
    STATIC_REQUIRE(alignof(request_series) >= 64);
    STATIC_REQUIRE(alignof(server_series) >= 64);
    STATIC_REQUIRE(alignof(connection_series) >= 64);
    STATIC_REQUIRE(std::atomic<std::uint64_t>::is_always_lock_free);
    STATIC_REQUIRE(std::atomic<double>::is_always_lock_free);
}
