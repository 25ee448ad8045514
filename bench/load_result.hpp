// What one load run measured: filled per thread without locks, merged at the
// end. Plain types only (no Boost), shared by the client and the reports.
#pragma once

#include "bench/histogram.hpp"

#include <array>
#include <cstdint>
#include <string_view>

namespace sluice::bench {

enum class error_kind : std::uint8_t {
    connect, // TCP connect or TLS handshake failed
    timeout, // no complete response within --timeout
    read,    // socket error or early close while reading the response
    write,   // socket error while sending the request
    parse,   // the response was not valid HTTP/1.1
};
inline constexpr std::size_t error_kind_count = 5;

constexpr std::string_view error_kind_name(error_kind kind) {
    constexpr std::array<std::string_view, error_kind_count> names{"connect", "timeout", "read",
                                                                   "write", "parse"};
    return names[static_cast<std::size_t>(kind)];
}

struct run_result {
    // Response latency in microseconds: from the write of the request (closed
    // loop), from the connect (closed loop with --new-connection), or from the
    // intended send time (open loop) to the last byte of the response.
    histogram latency_us;
    std::uint64_t requests = 0; // complete responses, any status
    std::uint64_t bytes_read = 0;
    std::uint64_t bytes_written = 0;
    std::uint64_t connections_opened = 0;
    std::uint64_t tls_resumed = 0; // TLS handshakes that resumed a session
    // Index = status code; index 0 counts codes outside 100..599.
    std::array<std::uint64_t, 600> status_counts{};
    std::array<std::uint64_t, error_kind_count> errors{};

    void count_status(unsigned status) noexcept { ++status_counts[status < 600 ? status : 0]; }
    void count_error(error_kind kind) noexcept { ++errors[static_cast<std::size_t>(kind)]; }
    std::uint64_t error_total() const noexcept {
        std::uint64_t total = 0;
        for (const auto n : errors) {
            total += n;
        }
        return total;
    }

    void merge(const run_result& other) noexcept {
        latency_us.merge(other.latency_us);
        requests += other.requests;
        bytes_read += other.bytes_read;
        bytes_written += other.bytes_written;
        connections_opened += other.connections_opened;
        tls_resumed += other.tls_resumed;
        for (std::size_t i = 0; i < status_counts.size(); ++i) {
            status_counts[i] += other.status_counts[i];
        }
        for (std::size_t i = 0; i < errors.size(); ++i) {
            errors[i] += other.errors[i];
        }
    }
};

} // namespace sluice::bench
