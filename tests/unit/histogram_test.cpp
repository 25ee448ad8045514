// The load generator's HDR latency histogram (bench/histogram.hpp): 3 significant digits from
// 1 µs to 1 h, percentiles checked against an exact sorted sample, merge, the empty histogram,
// and memory that does not depend on what is recorded.

#include "bench/histogram.hpp"

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <random>
#include <vector>

#include <malloc.h>

using sluice::bench::histogram;

namespace {

constexpr std::uint64_t one_hour_us = 3'600'000'000;

// `n` values spread log-uniformly over [lo, hi] from a fixed seed, so every decade of the
// range is exercised and a failure reproduces.
std::vector<std::uint64_t> log_uniform_sample(std::size_t n, std::uint64_t lo, std::uint64_t hi,
                                              std::uint64_t seed) {
    std::mt19937_64 rng{seed};
    std::uniform_real_distribution<double> exponent{std::log(static_cast<double>(lo)),
                                                    std::log(static_cast<double>(hi))};
    std::vector<std::uint64_t> out;
    out.reserve(n);
    for (std::size_t i = 0; i < n; ++i) {
        const auto v = static_cast<std::uint64_t>(std::llround(std::exp(exponent(rng))));
        out.push_back(std::clamp(v, lo, hi));
    }
    return out;
}

// The exact value of rank ceil(p/100 * n) (1-based, at least 1) in a sorted sample: the
// definition value_at_percentile approximates.
std::uint64_t exact_percentile(const std::vector<std::uint64_t>& sorted, double p) {
    const auto n = static_cast<double>(sorted.size());
    const auto rank =
        std::max<std::uint64_t>(1, static_cast<std::uint64_t>(std::ceil(p / 100.0 * n)));
    return sorted[static_cast<std::size_t>(rank - 1)];
}

const std::vector<double> checked_percentiles{0,  0.1,  1,    10,   25,    50,     75,      90,
                                              95, 99.0, 99.5, 99.9, 99.99, 99.999, 99.9999, 100};

// Bytes the C heap has handed out and not taken back (glibc). Under ASan malloc is
// intercepted and this stays 0, which weakens but does not break the check.
std::size_t heap_in_use() {
    return mallinfo2().uordblks;
}

} // namespace

TEST_CASE("values below 2048 are kept exactly", "[bench][histogram]") {
    for (std::uint64_t v = 1; v < 2048; ++v) {
        CHECK(histogram::lowest_equivalent(v) == v);
        CHECK(histogram::highest_equivalent(v) == v);
    }
}

TEST_CASE("every value from 1 us to 1 h keeps 3 significant digits", "[bench][histogram]") {
    // Every power of two and its neighbours (the bucket edges), plus a dense log-spaced walk.
    std::vector<std::uint64_t> values;
    for (std::uint64_t p = 1; p <= one_hour_us; p *= 2) {
        values.insert(values.end(), {p - 1, p, p + 1});
    }
    for (double v = 1; v <= static_cast<double>(one_hour_us); v *= 1.0007) {
        values.push_back(static_cast<std::uint64_t>(v));
    }
    values.push_back(one_hour_us);
    for (const std::uint64_t v : values) {
        if (v == 0) {
            continue;
        }
        const std::uint64_t low = histogram::lowest_equivalent(v);
        const std::uint64_t high = histogram::highest_equivalent(v);
        INFO("value " << v << " bucket [" << low << ", " << high << "]");
        REQUIRE(low <= v);
        REQUIRE(v <= high);
        // The bucket is narrower than 0.1 % of any value in it: 3 significant digits.
        REQUIRE(static_cast<double>(high - low) < static_cast<double>(low) / 1000.0 + 1.0);
        REQUIRE(static_cast<double>(high - low) <= static_cast<double>(v) / 1000.0);
    }
}

TEST_CASE("a recorded value reads back within 0.1 % and never below", "[bench][histogram]") {
    for (double x = 1; x <= static_cast<double>(one_hour_us); x *= 1.37) {
        const auto v = static_cast<std::uint64_t>(x);
        histogram h;
        h.record(v);
        h.record(one_hour_us); // so the answer for v is not capped by max()
        const std::uint64_t got = h.value_at_percentile(50);
        INFO("value " << v << " read back as " << got);
        REQUIRE(got >= v);
        REQUIRE(static_cast<double>(got - v) <= static_cast<double>(v) / 1000.0);
        CHECK(h.min() == v);
        CHECK(h.max() == one_hour_us);
    }
}

TEST_CASE("values above 1 h are clamped to the top of the range", "[bench][histogram]") {
    histogram h;
    h.record(one_hour_us * 10);
    h.record(UINT64_MAX);
    CHECK(h.count() == 2);
    CHECK(h.max() == histogram::highest_trackable);
    CHECK(h.min() == histogram::highest_trackable);
    CHECK(h.value_at_percentile(100) == histogram::highest_trackable);
}

TEST_CASE("a zero value is recorded in the lowest bucket", "[bench][histogram]") {
    histogram h;
    h.record(0);
    CHECK(h.count() == 1);
    CHECK(h.min() == 0);
    CHECK(h.max() == 0);
    CHECK(h.value_at_percentile(100) == 0);
}

TEST_CASE("percentiles match an exact sorted sample within 0.1 %", "[bench][histogram]") {
    const auto [lo, hi, seed] = GENERATE(table<std::uint64_t, std::uint64_t, std::uint64_t>({
        {1, one_hour_us, 1},   // the whole range
        {50, 5'000, 2},        // typical loopback latencies, partly exact
        {1'000, 2'000'000, 3}, // milliseconds to seconds
        {1'000'000, one_hour_us, 4},
    }));
    const auto sample = log_uniform_sample(200'000, lo, hi, seed);
    histogram h;
    for (const auto v : sample) {
        h.record(v);
    }
    auto sorted = sample;
    std::sort(sorted.begin(), sorted.end());

    REQUIRE(h.count() == sample.size());
    CHECK(h.min() == sorted.front());
    CHECK(h.max() == sorted.back());
    for (const double p : checked_percentiles) {
        const std::uint64_t exact = exact_percentile(sorted, p);
        const std::uint64_t got = h.value_at_percentile(p);
        INFO("p" << p << ": exact " << exact << ", histogram " << got);
        CHECK(got >= exact);
        CHECK(static_cast<double>(got - exact) <= static_cast<double>(exact) / 1000.0);
    }
    CHECK(h.value_at_percentile(100) == sorted.back());

    const double exact_mean =
        std::accumulate(sorted.begin(), sorted.end(), 0.0,
                        [](double sum, std::uint64_t v) { return sum + static_cast<double>(v); }) /
        static_cast<double>(sorted.size());
    CHECK(h.mean() == Approx(exact_mean).epsilon(0.001));
    double squares = 0;
    for (const auto v : sorted) {
        squares += (static_cast<double>(v) - exact_mean) * (static_cast<double>(v) - exact_mean);
    }
    const double exact_stddev = std::sqrt(squares / static_cast<double>(sorted.size()));
    CHECK(h.stddev() == Approx(exact_stddev).epsilon(0.002));
}

TEST_CASE("a constant sample reads back as that constant at every percentile",
          "[bench][histogram]") {
    histogram h;
    h.record(123'456, 1000);
    CHECK(h.count() == 1000);
    for (const double p : checked_percentiles) {
        CHECK(h.value_at_percentile(p) == 123'456);
    }
    CHECK(h.mean() == Approx(123'456).epsilon(0.001));
}

TEST_CASE("record with a count equals recording one by one", "[bench][histogram]") {
    histogram bulk;
    histogram single;
    bulk.record(777, 5);
    bulk.record(3, 2);
    for (int i = 0; i < 5; ++i) {
        single.record(777);
    }
    single.record(3);
    single.record(3);
    CHECK(bulk.count() == single.count());
    for (const double p : checked_percentiles) {
        CHECK(bulk.value_at_percentile(p) == single.value_at_percentile(p));
    }
}

TEST_CASE("merging equals recording everything in one histogram", "[bench][histogram]") {
    const auto a_values = log_uniform_sample(50'000, 10, 100'000, 11);
    const auto b_values = log_uniform_sample(30'000, 5'000, 50'000'000, 12);
    histogram a;
    histogram b;
    histogram all;
    for (const auto v : a_values) {
        a.record(v);
        all.record(v);
    }
    for (const auto v : b_values) {
        b.record(v);
        all.record(v);
    }
    histogram merged;
    merged.merge(a);
    merged.merge(b);

    CHECK(merged.count() == all.count());
    CHECK(merged.count() == a_values.size() + b_values.size());
    CHECK(merged.min() == all.min());
    CHECK(merged.max() == all.max());
    CHECK(merged.mean() == Approx(all.mean()));
    CHECK(merged.stddev() == Approx(all.stddev()));
    for (const double p : checked_percentiles) {
        INFO("p" << p);
        CHECK(merged.value_at_percentile(p) == all.value_at_percentile(p));
    }

    SECTION("merging an empty histogram changes nothing") {
        const histogram empty;
        const std::uint64_t p99 = merged.value_at_percentile(99);
        const std::uint64_t min = merged.min();
        merged.merge(empty);
        CHECK(merged.count() == all.count());
        CHECK(merged.min() == min);
        CHECK(merged.value_at_percentile(99) == p99);
    }
    SECTION("merge order does not matter") {
        histogram other_order;
        other_order.merge(b);
        other_order.merge(a);
        for (const double p : checked_percentiles) {
            CHECK(other_order.value_at_percentile(p) == merged.value_at_percentile(p));
        }
    }
}

TEST_CASE("an empty histogram answers zero everywhere", "[bench][histogram]") {
    histogram h;
    auto check_empty = [](const histogram& e) {
        CHECK(e.count() == 0);
        CHECK(e.min() == 0);
        CHECK(e.max() == 0);
        CHECK(e.mean() == 0.0);
        CHECK(e.stddev() == 0.0);
        CHECK(e.value_at_percentile(0) == 0);
        CHECK(e.value_at_percentile(50) == 0);
        CHECK(e.value_at_percentile(100) == 0);
    };
    check_empty(h);

    SECTION("reset empties a used histogram") {
        h.record(42);
        h.record(4'242'424);
        REQUIRE(h.count() == 2);
        h.reset();
        check_empty(h);
        h.record(7);
        CHECK(h.min() == 7);
        CHECK(h.max() == 7);
    }
}

TEST_CASE("percentiles outside 0..100 are clamped", "[bench][histogram]") {
    histogram h;
    h.record(10);
    h.record(20);
    CHECK(h.value_at_percentile(-5) == 10);
    CHECK(h.value_at_percentile(250) == 20);
}

TEST_CASE("memory is constant: fixed layout, no allocation while recording or merging",
          "[bench][histogram]") {
    // HdrHistogram's layout for 1 .. 3.6e9 at 3 digits: 22 buckets of 1024 + 1024 slots.
    CHECK(histogram::counts_length() == 23'552);
    CHECK(histogram::counts_length() * sizeof(std::uint64_t) == 184 * 1024);

    histogram h;
    histogram other;
    other.record(99);
    const auto values = log_uniform_sample(100'000, 1, one_hour_us, 21);
    const std::size_t before = heap_in_use();
    for (const auto v : values) {
        h.record(v);
    }
    h.record(UINT64_MAX);
    h.merge(other);
    (void)h.value_at_percentile(99.9);
    (void)h.stddev();
    const std::size_t after = heap_in_use();
    CHECK(after == before);
    CHECK(h.count() == values.size() + 2);
}
