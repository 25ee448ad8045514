// A high-dynamic-range latency histogram (HdrHistogram's log-linear layout):
// values from 1 to 3.6e9 (1 µs .. 1 h when recording microseconds) kept to 3
// significant decimal digits in constant memory (~184 KiB). Recording is a few
// integer operations and one increment; no allocation after construction.
// Pure: no I/O, no clock, no Boost, so it is unit-testable and fuzzable.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace sluice::bench {

class histogram {
  public:
    // Values above highest_trackable are recorded as highest_trackable.
    static constexpr std::uint64_t highest_trackable = 3'600'000'000;
    // 3 significant digits: 2 * 10^3 rounded up to a power of two.
    static constexpr unsigned sub_bucket_half_count_magnitude = 10;
    static constexpr std::uint64_t sub_bucket_count = std::uint64_t{1}
                                                      << (sub_bucket_half_count_magnitude + 1);
    static constexpr std::uint64_t sub_bucket_half_count = sub_bucket_count / 2;

    histogram();

    // Adds `count` observations of `value`.
    void record(std::uint64_t value, std::uint64_t count = 1) noexcept;

    // Adds every observation of `other` to this one (same layout by construction).
    void merge(const histogram& other) noexcept;

    void reset() noexcept;

    std::uint64_t count() const noexcept { return total_; }
    // Exact extremes of what was recorded (after clamping); 0 when empty.
    std::uint64_t min() const noexcept { return total_ == 0 ? 0 : min_; }
    std::uint64_t max() const noexcept { return max_; }
    double mean() const noexcept;
    double stddev() const noexcept;

    // The value at `percentile` (0..100): the highest value equivalent to the
    // bucket holding the observation of that rank, capped at max(). 0 when empty.
    std::uint64_t value_at_percentile(double percentile) const noexcept;

    // Layout helpers, public so tests can check the precision contract:
    // every value in [lowest_equivalent(v), highest_equivalent(v)] shares v's bucket.
    static std::uint64_t lowest_equivalent(std::uint64_t value) noexcept;
    static std::uint64_t highest_equivalent(std::uint64_t value) noexcept;
    static std::size_t counts_length() noexcept;

  private:
    static std::size_t index_of(std::uint64_t value) noexcept;
    static std::uint64_t value_at_index(std::size_t index) noexcept;

    std::vector<std::uint64_t> counts_;
    std::uint64_t total_ = 0;
    std::uint64_t min_ = UINT64_MAX;
    std::uint64_t max_ = 0;
};

} // namespace sluice::bench
