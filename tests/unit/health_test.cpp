// Health (SPEC 5): the active-check state machine (record_check, expected) and the passive
// check (record_connect_failure / record_connect_success) with an injected steady clock.

#include "proxy/health.hpp"
#include "proxy/server_state.hpp"

#include <catch2/catch.hpp>

#include <chrono>
#include <cstdint>

namespace proxy = sluice::proxy;
namespace config = sluice::config;
using namespace std::chrono_literals;

namespace {

constexpr std::int64_t ms_ns(std::int64_t ms) {
    return ms * 1'000'000;
}

// Applies `n` results of `ok`; returns how many of them reported a change.
int feed(proxy::health_counters& c, bool ok, int n, int healthy_threshold,
         int unhealthy_threshold) {
    int changes = 0;
    for (int i = 0; i < n; ++i)
        if (proxy::record_check(c, ok, healthy_threshold, unhealthy_threshold))
            ++changes;
    return changes;
}

} // namespace

TEST_CASE("a new server starts healthy with no counts", "[health]") {
    proxy::health_counters c;
    CHECK(c.healthy);
    CHECK(c.successes == 0);
    CHECK(c.failures == 0);
    proxy::server_state s;
    CHECK(s.healthy.load());
    CHECK(s.available(0));
}

TEST_CASE("record_check: down after exactly unhealthy_threshold consecutive failures", "[health]") {
    for (int threshold : {1, 2, 3, 5}) {
        CAPTURE(threshold);
        proxy::health_counters c;
        for (int i = 1; i < threshold; ++i) {
            CHECK_FALSE(proxy::record_check(c, false, 2, threshold));
            CHECK(c.healthy);
        }
        CHECK(proxy::record_check(c, false, 2, threshold)); // the threshold-th failure
        CHECK_FALSE(c.healthy);
    }
}

TEST_CASE("record_check: up after exactly healthy_threshold consecutive successes", "[health]") {
    for (int threshold : {1, 2, 4}) {
        CAPTURE(threshold);
        proxy::health_counters c;
        REQUIRE(feed(c, false, 3, threshold, 3) == 1);
        REQUIRE_FALSE(c.healthy);
        for (int i = 1; i < threshold; ++i) {
            CHECK_FALSE(proxy::record_check(c, true, threshold, 3));
            CHECK_FALSE(c.healthy);
        }
        CHECK(proxy::record_check(c, true, threshold, 3));
        CHECK(c.healthy);
    }
}

TEST_CASE("record_check: a success resets the failure count while healthy", "[health]") {
    proxy::health_counters c;
    CHECK(feed(c, false, 2, 2, 3) == 0);
    CHECK_FALSE(proxy::record_check(c, true, 2, 3)); // resets
    CHECK(c.healthy);
    // Two more failures are not enough: the count started again.
    CHECK(feed(c, false, 2, 2, 3) == 0);
    CHECK(c.healthy);
    CHECK(proxy::record_check(c, false, 2, 3));
    CHECK_FALSE(c.healthy);
}

TEST_CASE("record_check: a failure resets the success count while unhealthy", "[health]") {
    proxy::health_counters c;
    REQUIRE(feed(c, false, 3, 3, 3) == 1);
    CHECK(feed(c, true, 2, 3, 3) == 0);
    CHECK_FALSE(proxy::record_check(c, false, 3, 3)); // resets, no change: already down
    CHECK_FALSE(c.healthy);
    CHECK(feed(c, true, 2, 3, 3) == 0);
    CHECK_FALSE(c.healthy);
    CHECK(proxy::record_check(c, true, 3, 3));
    CHECK(c.healthy);
}

TEST_CASE("record_check: no change is reported when already in that state", "[health]") {
    proxy::health_counters c;
    // Healthy and succeeding: never a change.
    CHECK(feed(c, true, 10, 2, 3) == 0);
    CHECK(c.healthy);
    // Down once, then more failures: exactly one change.
    CHECK(feed(c, false, 10, 2, 3) == 1);
    CHECK_FALSE(c.healthy);
    // Up once, then more successes: exactly one change.
    CHECK(feed(c, true, 10, 2, 3) == 1);
    CHECK(c.healthy);
}

TEST_CASE("record_check: alternating results never change the verdict with thresholds > 1",
          "[health]") {
    proxy::health_counters c;
    for (int i = 0; i < 20; ++i)
        CHECK_FALSE(proxy::record_check(c, i % 2 == 0, 2, 2));
    CHECK(c.healthy);
    REQUIRE(feed(c, false, 2, 2, 2) == 1);
    for (int i = 0; i < 20; ++i)
        CHECK_FALSE(proxy::record_check(c, i % 2 == 0, 2, 2));
    CHECK_FALSE(c.healthy);
}

TEST_CASE("expected: status inside the configured range, bounds included", "[health]") {
    config::health_check hc; // default "200-399"
    CHECK_FALSE(proxy::expected(hc, 199));
    CHECK(proxy::expected(hc, 200));
    CHECK(proxy::expected(hc, 204));
    CHECK(proxy::expected(hc, 399));
    CHECK_FALSE(proxy::expected(hc, 400));
    CHECK_FALSE(proxy::expected(hc, 503));
    CHECK_FALSE(proxy::expected(hc, 0));

    hc.expected_status_min = 200; // "200"
    hc.expected_status_max = 200;
    CHECK(proxy::expected(hc, 200));
    CHECK_FALSE(proxy::expected(hc, 204));
    CHECK_FALSE(proxy::expected(hc, 199));
}

TEST_CASE("passive: out for fail_timeout after max_fails consecutive failures",
          "[health][passive]") {
    proxy::server_state s;
    const std::int64_t t0 = ms_ns(1'000'000);
    proxy::record_connect_failure(s, 3, 1000ms, t0);
    proxy::record_connect_failure(s, 3, 1000ms, t0 + ms_ns(1));
    CHECK(s.available(t0 + ms_ns(2))); // two of three: still in
    const std::int64_t t3 = t0 + ms_ns(10);
    proxy::record_connect_failure(s, 3, 1000ms, t3);
    CHECK_FALSE(s.available(t3));
    CHECK_FALSE(s.available(t3 + ms_ns(999)));
    CHECK_FALSE(s.available(t3 + ms_ns(1000) - 1));
    CHECK(s.available(t3 + ms_ns(1000)));
    CHECK(s.available(t3 + ms_ns(5000)));
    // Active health is untouched by passive failures.
    CHECK(s.healthy.load());
}

TEST_CASE("passive: max_fails 1 takes the server out at the first failure", "[health][passive]") {
    proxy::server_state s;
    const std::int64_t t0 = ms_ns(50);
    proxy::record_connect_failure(s, 1, 250ms, t0);
    CHECK_FALSE(s.available(t0));
    CHECK_FALSE(s.available(t0 + ms_ns(249)));
    CHECK(s.available(t0 + ms_ns(250)));
}

TEST_CASE("passive: only consecutive failures count; a success in between resets",
          "[health][passive]") {
    proxy::server_state s;
    const std::int64_t t0 = ms_ns(10'000);
    proxy::record_connect_failure(s, 3, 1000ms, t0);
    proxy::record_connect_failure(s, 3, 1000ms, t0);
    proxy::record_connect_success(s);
    proxy::record_connect_failure(s, 3, 1000ms, t0);
    proxy::record_connect_failure(s, 3, 1000ms, t0);
    CHECK(s.available(t0)); // 2 + 2 with a success between: never 3 in a row
    proxy::record_connect_failure(s, 3, 1000ms, t0 + ms_ns(5));
    CHECK_FALSE(s.available(t0 + ms_ns(5)));
    CHECK(s.available(t0 + ms_ns(1005)));
}

TEST_CASE("passive: after the fail_timeout the count starts again", "[health][passive]") {
    proxy::server_state s;
    const std::int64_t t0 = ms_ns(10'000);
    proxy::record_connect_failure(s, 2, 500ms, t0);
    proxy::record_connect_failure(s, 2, 500ms, t0);
    REQUIRE_FALSE(s.available(t0));
    const std::int64_t t1 = t0 + ms_ns(600);
    REQUIRE(s.available(t1));
    // Tried again and failing once: max_fails is 2, so one failure does not take it out.
    proxy::record_connect_failure(s, 2, 500ms, t1);
    CHECK(s.available(t1));
    proxy::record_connect_failure(s, 2, 500ms, t1 + ms_ns(1));
    CHECK_FALSE(s.available(t1 + ms_ns(1)));
    CHECK(s.available(t1 + ms_ns(501)));
}

TEST_CASE("passive and active: an actively unhealthy server is unavailable whatever the clock",
          "[health]") {
    proxy::server_state s;
    s.healthy.store(false);
    CHECK_FALSE(s.available(0));
    CHECK_FALSE(s.available(ms_ns(1'000'000'000)));
}
