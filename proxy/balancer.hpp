#pragma once
// Server choice (SPEC 4) as pure functions over the candidates' numbers, so
// they are tested without sockets or threads. The caller supplies which
// servers are eligible (healthy and not passively failed).

#include <cstddef>
#include <cstdint>
#include <span>

namespace sluice::proxy {

// Smooth weighted round robin (as nginx does it): every eligible server's
// running weight grows by its weight, the largest wins and pays back the sum.
// Weights 5:1:1 give a a b a c a a, never a burst of five.
// `current` is the caller's per-server running state (one per worker, so no
// lock); `eligible(i)` says whether server i may be chosen.
// Returns the chosen index, or -1 when no server is eligible.
template <typename Eligible>
int pick_smooth_weighted(std::span<std::int64_t> current, std::span<const int> weights,
                         Eligible&& eligible) {
    std::int64_t total = 0;
    int best = -1;
    for (std::size_t i = 0; i < current.size(); ++i) {
        if (!eligible(i))
            continue;
        current[i] += weights[i];
        total += weights[i];
        if (best < 0 || current[i] > current[static_cast<std::size_t>(best)])
            best = static_cast<int>(i);
    }
    if (best >= 0)
        current[static_cast<std::size_t>(best)] -= total;
    return best;
}

// Least connections: the eligible server with the fewest in-flight requests
// per unit of weight. Ties go to the first such server at or after `rotation`
// (mod n), so equal servers take turns instead of the first one winning.
// `in_flight(i)` reads server i's counter. Returns -1 when none is eligible.
template <typename InFlight, typename Eligible>
int pick_least_loaded(std::span<const int> weights, std::size_t rotation, InFlight&& in_flight,
                      Eligible&& eligible) {
    const std::size_t n = weights.size();
    int best = -1;
    std::int64_t best_load = 0;
    int best_weight = 1;
    for (std::size_t k = 0; k < n; ++k) {
        const std::size_t i = (rotation + k) % n;
        if (!eligible(i))
            continue;
        const std::int64_t load = in_flight(i);
        // load/weight < best_load/best_weight, without division.
        if (best < 0 || load * best_weight < best_load * weights[i]) {
            best = static_cast<int>(i);
            best_load = load;
            best_weight = weights[i];
        }
    }
    return best;
}

} // namespace sluice::proxy
