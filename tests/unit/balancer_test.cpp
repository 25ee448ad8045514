// Server choice (SPEC 4): smooth weighted round robin and least connections with rotation, as
// pure functions over weights, running state and in-flight counts.

#include "proxy/balancer.hpp"

#include <catch2/catch.hpp>

#include <algorithm>
#include <array>
#include <string>
#include <vector>

namespace proxy = sluice::proxy;

namespace {

auto all_eligible = [](std::size_t) { return true; };

// `n` round-robin picks over `weights` from fresh state, as letters ("a" for server 0, ...),
// with `eligible` deciding which may be chosen.
template <typename Eligible>
std::string smooth_sequence(const std::vector<int>& weights, int n, Eligible eligible) {
    std::vector<std::int64_t> current(weights.size(), 0);
    std::string out;
    for (int i = 0; i < n; ++i) {
        const int pick = proxy::pick_smooth_weighted(std::span<std::int64_t>(current),
                                                     std::span<const int>(weights), eligible);
        out.push_back(pick < 0 ? '-' : static_cast<char>('a' + pick));
    }
    return out;
}

std::string smooth_sequence(const std::vector<int>& weights, int n) {
    return smooth_sequence(weights, n, all_eligible);
}

std::size_t longest_run(const std::string& s, char c) {
    std::size_t best = 0;
    std::size_t run = 0;
    for (char x : s) {
        run = x == c ? run + 1 : 0;
        best = std::max(best, run);
    }
    return best;
}

int least_loaded(const std::vector<int>& weights, std::size_t rotation,
                 const std::vector<std::int64_t>& in_flight, const std::vector<bool>& eligible) {
    return proxy::pick_least_loaded(
        std::span<const int>(weights), rotation, [&](std::size_t i) { return in_flight.at(i); },
        [&](std::size_t i) { return static_cast<bool>(eligible.at(i)); });
}

} // namespace

// ---------------------------------------------------------------------------------------------
// round_robin

TEST_CASE("equal weights alternate exactly", "[proxy][balancer]") {
    CHECK(smooth_sequence({1, 1}, 10) == "ababababab");
    CHECK(smooth_sequence({1, 1, 1}, 9) == "abcabcabc");
    CHECK(smooth_sequence({7, 7}, 6) == "ababab");
}

TEST_CASE("a single server is always chosen", "[proxy][balancer]") {
    CHECK(smooth_sequence({1}, 5) == "aaaaa");
    CHECK(smooth_sequence({1000}, 3) == "aaa");
}

TEST_CASE("weights 3:1 give 3:1 in every window of 4 without two light picks in a row",
          "[proxy][balancer]") {
    const std::string seq = smooth_sequence({3, 1}, 400);
    // The algorithm's cycle: running weights (3,1) a -> (-1,1); (2,2) a by list order ->
    // (-2,2); (1,3) b -> (1,-1); (4,0) a -> (0,0).
    CHECK(seq.substr(0, 8) == "aabaaaba");
    for (std::size_t i = 0; i + 4 <= seq.size(); ++i) {
        CAPTURE(i);
        const auto window = seq.substr(i, 4);
        REQUIRE(std::count(window.begin(), window.end(), 'a') == 3);
        REQUIRE(std::count(window.begin(), window.end(), 'b') == 1);
    }
    CHECK(seq.find("bb") == std::string::npos);
}

TEST_CASE("weights 5:1:1 give nginx's smooth sequence", "[proxy][balancer]") {
    // Derived from the algorithm (ties go to the lower index):
    //   +w -> (5,1,1) a, -7 -> (-2,1,1)   +w -> (3,2,2) a -> (-4,2,2)
    //   +w -> (1,3,3) b -> (1,-4,3)       +w -> (6,-3,4) a -> (-1,-3,4)
    //   +w -> (4,-2,5) c -> (4,-2,-2)     +w -> (9,-1,-1) a -> (2,-1,-1)
    //   +w -> (7,0,0) a -> (0,0,0), back to the start.
    // This is nginx's known "a a b a c a a" (the header comment's "a b a c a a a" is not what
    // the algorithm it describes produces).
    const std::string seq = smooth_sequence({5, 1, 1}, 70);
    CHECK(seq.substr(0, 7) == "aabacaa");
    CHECK(seq.substr(7, 7) == "aabacaa");
    for (std::size_t cycle = 0; cycle < 10; ++cycle) {
        CAPTURE(cycle);
        const auto window = seq.substr(cycle * 7, 7);
        CHECK(std::count(window.begin(), window.end(), 'a') == 5);
        CHECK(std::count(window.begin(), window.end(), 'b') == 1);
        CHECK(std::count(window.begin(), window.end(), 'c') == 1);
    }
    // Within one cycle the heavy server never runs more than twice; across the cycle boundary
    // ("...aa|aa...") four in a row, never the burst of five plain weighted round robin gives.
    CHECK(longest_run(seq.substr(0, 7), 'a') == 2);
    CHECK(longest_run(seq, 'a') == 4);
}

TEST_CASE("large weights are honoured exactly over a full cycle", "[proxy][balancer]") {
    const std::vector<int> weights{1000, 1, 999};
    const std::string seq = smooth_sequence(weights, 2000);
    CHECK(std::count(seq.begin(), seq.end(), 'a') == 1000);
    CHECK(std::count(seq.begin(), seq.end(), 'b') == 1);
    CHECK(std::count(seq.begin(), seq.end(), 'c') == 999);
    CHECK(longest_run(seq, 'a') <= 2);
}

TEST_CASE("ineligible servers are skipped by round robin", "[proxy][balancer]") {
    SECTION("the middle one of three is down") {
        CHECK(smooth_sequence({1, 1, 1}, 6, [](std::size_t i) { return i != 1; }) == "acacac");
    }
    SECTION("the heavy one is down") {
        CHECK(smooth_sequence({5, 1, 1}, 4, [](std::size_t i) { return i != 0; }) == "bcbc");
    }
    SECTION("the running state of a skipped server is left alone") {
        std::vector<std::int64_t> current{0, 0};
        const std::vector<int> weights{1, 1};
        const auto only_first = [](std::size_t i) { return i == 0; };
        for (int i = 0; i < 3; ++i) {
            CHECK(proxy::pick_smooth_weighted(std::span<std::int64_t>(current),
                                              std::span<const int>(weights), only_first) == 0);
        }
        CHECK(current[0] == 0);
        CHECK(current[1] == 0);
    }
}

TEST_CASE("a server coming back rejoins the rotation", "[proxy][balancer]") {
    std::vector<std::int64_t> current{0, 0};
    const std::vector<int> weights{1, 1};
    std::string seq;
    bool b_up = false;
    for (int i = 0; i < 8; ++i) {
        if (i == 4)
            b_up = true;
        const int pick = proxy::pick_smooth_weighted(std::span<std::int64_t>(current),
                                                     std::span<const int>(weights),
                                                     [&](std::size_t k) { return k == 0 || b_up; });
        seq.push_back(static_cast<char>('a' + pick));
    }
    CHECK(seq == "aaaaabab");
}

TEST_CASE("round robin with no eligible server returns -1", "[proxy][balancer]") {
    std::vector<std::int64_t> current{3, -3};
    const std::vector<int> weights{1, 1};
    CHECK(proxy::pick_smooth_weighted(std::span<std::int64_t>(current),
                                      std::span<const int>(weights),
                                      [](std::size_t) { return false; }) == -1);
    CHECK(current[0] == 3); // untouched
    CHECK(current[1] == -3);

    std::vector<std::int64_t> none;
    const std::vector<int> no_weights;
    CHECK(proxy::pick_smooth_weighted(std::span<std::int64_t>(none),
                                      std::span<const int>(no_weights), all_eligible) == -1);
}

// ---------------------------------------------------------------------------------------------
// least_conn

TEST_CASE("least_conn picks the lowest in-flight count", "[proxy][balancer]") {
    CHECK(least_loaded({1, 1, 1}, 0, {3, 1, 2}, {true, true, true}) == 1);
    CHECK(least_loaded({1, 1, 1}, 0, {0, 5, 5}, {true, true, true}) == 0);
    CHECK(least_loaded({1, 1, 1}, 0, {5, 5, 4}, {true, true, true}) == 2);
    // The rotation only breaks ties; it does not override a lower load.
    CHECK(least_loaded({1, 1, 1}, 2, {3, 1, 2}, {true, true, true}) == 1);
    CHECK(least_loaded({1, 1, 1}, 1, {0, 1, 1}, {true, true, true}) == 0);
}

TEST_CASE("least_conn divides the in-flight count by the weight", "[proxy][balancer]") {
    // 3/2 = 1.5 > 1/1.
    CHECK(least_loaded({2, 1}, 0, {3, 1}, {true, true}) == 1);
    // 3/4 = 0.75 < 1/1.
    CHECK(least_loaded({4, 1}, 1, {3, 1}, {true, true}) == 0);
    // 5/10 = 0.5 < 1/1 even though 5 > 1.
    CHECK(least_loaded({1, 10}, 0, {1, 5}, {true, true}) == 1);
    // 9/10 < 1/1.
    CHECK(least_loaded({1, 10}, 0, {1, 9}, {true, true}) == 1);
    // 11/10 > 1/1.
    CHECK(least_loaded({1, 10}, 1, {1, 11}, {true, true}) == 0);
}

TEST_CASE("least_conn ties are broken by the rotation", "[proxy][balancer]") {
    const std::vector<int> weights{1, 1, 1};
    const std::vector<std::int64_t> idle{0, 0, 0};
    const std::vector<bool> up{true, true, true};
    CHECK(least_loaded(weights, 0, idle, up) == 0);
    CHECK(least_loaded(weights, 1, idle, up) == 1);
    CHECK(least_loaded(weights, 2, idle, up) == 2);
    CHECK(least_loaded(weights, 3, idle, up) == 0); // mod n
    CHECK(least_loaded(weights, 3001, idle, up) == 1);

    SECTION("equal per-weight load counts as a tie") {
        // 2/2 == 1/1 == 3/3.
        CHECK(least_loaded({2, 1, 3}, 0, {2, 1, 3}, up) == 0);
        CHECK(least_loaded({2, 1, 3}, 1, {2, 1, 3}, up) == 1);
        CHECK(least_loaded({2, 1, 3}, 2, {2, 1, 3}, up) == 2);
    }
    SECTION("a tie between two of three starts at the rotation") {
        // Servers 0 and 2 tie at 1, server 1 is busier.
        CHECK(least_loaded(weights, 0, {1, 4, 1}, up) == 0);
        CHECK(least_loaded(weights, 1, {1, 4, 1}, up) == 2);
        CHECK(least_loaded(weights, 2, {1, 4, 1}, up) == 2);
    }
    SECTION("an increasing rotation spreads idle picks over all servers") {
        std::string seq;
        for (std::size_t r = 0; r < 6; ++r)
            seq.push_back(static_cast<char>('a' + least_loaded(weights, r, idle, up)));
        CHECK(seq == "abcabc");
    }
}

TEST_CASE("least_conn skips ineligible servers", "[proxy][balancer]") {
    CHECK(least_loaded({1, 1, 1}, 0, {5, 0, 3}, {true, false, true}) == 2);
    CHECK(least_loaded({1, 1, 1}, 1, {0, 0, 0}, {true, false, true}) == 2);
    CHECK(least_loaded({1, 1, 1}, 0, {0, 9, 9}, {false, true, true}) == 1);
    CHECK(least_loaded({1, 1, 1}, 0, {0, 0, 0}, {false, false, true}) == 2);
}

TEST_CASE("least_conn with no eligible server returns -1", "[proxy][balancer]") {
    CHECK(least_loaded({1, 1}, 0, {0, 0}, {false, false}) == -1);
    CHECK(least_loaded({}, 0, {}, {}) == -1);
}
