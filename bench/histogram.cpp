#include "bench/histogram.hpp"

#include <algorithm>
#include <bit>
#include <cmath>

namespace sluice::bench {
namespace {

// Values below sub_bucket_count land in bucket 0 one-to-one; each further
// bucket covers twice the range of the previous with the same number of
// slots (only the upper half of each is used, the lower half being the
// previous bucket's range): log-linear.
constexpr std::uint64_t sub_bucket_mask = histogram::sub_bucket_count - 1;
constexpr int leading_zero_count_base =
    64 - static_cast<int>(histogram::sub_bucket_half_count_magnitude) - 1;

constexpr std::size_t compute_bucket_count() {
    std::uint64_t smallest_untrackable = histogram::sub_bucket_count;
    std::size_t buckets = 1;
    while (smallest_untrackable <= histogram::highest_trackable) {
        smallest_untrackable <<= 1;
        ++buckets;
    }
    return buckets;
}
constexpr std::size_t bucket_count = compute_bucket_count();
constexpr std::size_t counts_len = (bucket_count + 1) * histogram::sub_bucket_half_count;

int bucket_index(std::uint64_t value) {
    return leading_zero_count_base - std::countl_zero(value | sub_bucket_mask);
}

} // namespace

histogram::histogram() : counts_(counts_len, 0) {}

std::size_t histogram::counts_length() noexcept {
    return counts_len;
}

std::size_t histogram::index_of(std::uint64_t value) noexcept {
    const int bucket = bucket_index(value);
    const std::uint64_t sub_bucket = value >> bucket;
    return (static_cast<std::size_t>(bucket + 1) << sub_bucket_half_count_magnitude) +
           static_cast<std::size_t>(sub_bucket - sub_bucket_half_count);
}

std::uint64_t histogram::value_at_index(std::size_t index) noexcept {
    int bucket = static_cast<int>(index >> sub_bucket_half_count_magnitude) - 1;
    std::uint64_t sub_bucket = (index & (sub_bucket_half_count - 1)) + sub_bucket_half_count;
    if (bucket < 0) {
        sub_bucket -= sub_bucket_half_count;
        bucket = 0;
    }
    return sub_bucket << bucket;
}

std::uint64_t histogram::lowest_equivalent(std::uint64_t value) noexcept {
    const int bucket = bucket_index(value);
    return (value >> bucket) << bucket;
}

std::uint64_t histogram::highest_equivalent(std::uint64_t value) noexcept {
    const int bucket = bucket_index(value);
    return lowest_equivalent(value) + (std::uint64_t{1} << bucket) - 1;
}

void histogram::record(std::uint64_t value, std::uint64_t count) noexcept {
    value = std::min(value, highest_trackable);
    counts_[index_of(value)] += count;
    total_ += count;
    min_ = std::min(min_, value);
    max_ = std::max(max_, value);
}

void histogram::merge(const histogram& other) noexcept {
    for (std::size_t i = 0; i < counts_.size(); ++i) {
        counts_[i] += other.counts_[i];
    }
    total_ += other.total_;
    min_ = std::min(min_, other.min_);
    max_ = std::max(max_, other.max_);
}

void histogram::reset() noexcept {
    std::fill(counts_.begin(), counts_.end(), 0);
    total_ = 0;
    min_ = UINT64_MAX;
    max_ = 0;
}

// Mean and deviation use each bucket's midpoint, as HdrHistogram does: exact
// within the 3-digit precision and free of a per-record multiply.
double histogram::mean() const noexcept {
    if (total_ == 0) {
        return 0.0;
    }
    double sum = 0.0;
    for (std::size_t i = 0; i < counts_.size(); ++i) {
        if (counts_[i] != 0) {
            const std::uint64_t low = value_at_index(i);
            const double mid = static_cast<double>(low + highest_equivalent(low)) / 2.0;
            sum += mid * static_cast<double>(counts_[i]);
        }
    }
    return std::min(sum / static_cast<double>(total_), static_cast<double>(max_));
}

double histogram::stddev() const noexcept {
    if (total_ == 0) {
        return 0.0;
    }
    const double m = mean();
    double sum = 0.0;
    for (std::size_t i = 0; i < counts_.size(); ++i) {
        if (counts_[i] != 0) {
            const std::uint64_t low = value_at_index(i);
            const double mid = static_cast<double>(low + highest_equivalent(low)) / 2.0;
            sum += (mid - m) * (mid - m) * static_cast<double>(counts_[i]);
        }
    }
    return std::sqrt(sum / static_cast<double>(total_));
}

std::uint64_t histogram::value_at_percentile(double percentile) const noexcept {
    if (total_ == 0) {
        return 0;
    }
    percentile = std::clamp(percentile, 0.0, 100.0);
    // The rank of the wanted observation, 1-based; at least the first one.
    const auto target = std::max<std::uint64_t>(
        1, static_cast<std::uint64_t>(std::ceil(percentile / 100.0 * static_cast<double>(total_))));
    std::uint64_t seen = 0;
    for (std::size_t i = 0; i < counts_.size(); ++i) {
        seen += counts_[i];
        if (seen >= target) {
            const std::uint64_t value = highest_equivalent(value_at_index(i));
            return std::clamp(value, min_, max_);
        }
    }
    return max_;
}

} // namespace sluice::bench
