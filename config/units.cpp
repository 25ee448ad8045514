// Units of SPEC section 2: durations, sizes, host:port pairs and CIDR networks. Pure functions
// of their text; no yaml-cpp here, so they are usable (and tested) on their own.

#include "config/detail.hpp"
#include "config/load.hpp"

#include <arpa/inet.h>

#include <algorithm>
#include <charconv>
#include <cstdint>
#include <limits>

namespace sluice::config {
namespace {

// Reads the leading run of decimal digits of `text` into `value`.
// Returns how many characters it consumed: 0 when `text` does not start with a digit or the
// number does not fit in 64 bits (callers then reject the whole text).
std::size_t read_digits(std::string_view text, std::uint64_t& value) {
    const auto* const first = text.data();
    const auto* const last = text.data() + text.size();
    // from_chars accepts no sign, no spaces and no "0x", which is what we want; only check that
    // it starts with a digit so an empty run is told apart from the number 0.
    if (text.empty() || text[0] < '0' || text[0] > '9') {
        return 0;
    }
    const auto [end, ec] = std::from_chars(first, last, value);
    if (ec != std::errc{}) {
        return 0;
    }
    return static_cast<std::size_t>(end - first);
}

// `amount * factor` if it fits in `limit`, else nullopt.
std::optional<std::uint64_t> checked_multiply(std::uint64_t amount, std::uint64_t factor,
                                              std::uint64_t limit) {
    if (factor != 0 && amount > limit / factor) {
        return std::nullopt;
    }
    return amount * factor;
}

// A port: 1 to 5 decimal digits, 0..65535.
std::optional<std::uint16_t> parse_port(std::string_view text) {
    std::uint64_t value = 0;
    if (text.empty() || text.size() > 5 || read_digits(text, value) != text.size() ||
        value > 65535) {
        return std::nullopt;
    }
    return static_cast<std::uint16_t>(value);
}

bool is_ipv4(const std::string& text) {
    in_addr out{};
    return ::inet_pton(AF_INET, text.c_str(), &out) == 1;
}

bool is_ipv6(const std::string& text) {
    in6_addr out{};
    return ::inet_pton(AF_INET6, text.c_str(), &out) == 1;
}

// An unbracketed host: an IPv4 literal or a DNS name (letters, digits, '-', '.', '_').
// Something made only of digits and dots must be a valid IPv4 address: "10.0.0.300" is a typo,
// not a host name.
bool is_plain_host(const std::string& host) {
    if (host.empty()) {
        return false;
    }
    const bool name_chars = std::all_of(host.begin(), host.end(), [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
               c == '-' || c == '.' || c == '_';
    });
    if (!name_chars) {
        return false;
    }
    const bool numeric = std::all_of(host.begin(), host.end(),
                                     [](char c) { return (c >= '0' && c <= '9') || c == '.'; });
    return !numeric || is_ipv4(host);
}

// Three digits, 100..599.
std::optional<int> parse_status(std::string_view text) {
    std::uint64_t value = 0;
    if (text.size() != 3 || read_digits(text, value) != 3 || value < 100 || value > 599) {
        return std::nullopt;
    }
    return static_cast<int>(value);
}

} // namespace

// Takes "<digits><unit>" with unit ms, s, m or h. Returns the duration, or nullopt for an empty
// text, a missing unit ("5"), a sign ("-1s"), a fraction ("1.5s"), an unknown unit or a value
// that does not fit in std::chrono::milliseconds.
std::optional<duration> parse_duration(std::string_view text) {
    std::uint64_t amount = 0;
    const std::size_t digits = read_digits(text, amount);
    if (digits == 0) {
        return std::nullopt;
    }
    const std::string_view unit = text.substr(digits);
    std::uint64_t factor = 0;
    if (unit == "ms") {
        factor = 1;
    } else if (unit == "s") {
        factor = 1000;
    } else if (unit == "m") {
        factor = 60 * 1000;
    } else if (unit == "h") {
        factor = 60 * 60 * 1000;
    } else {
        return std::nullopt;
    }
    constexpr auto limit = static_cast<std::uint64_t>(std::numeric_limits<duration::rep>::max());
    const auto millis = checked_multiply(amount, factor, limit);
    if (!millis) {
        return std::nullopt;
    }
    return duration(static_cast<duration::rep>(*millis));
}

// Takes "<digits>[unit]" with unit B, KiB, MiB, GiB, TiB (powers of 1024) or KB, MB, GB, TB
// (powers of 1000); no unit means bytes. Returns the byte count, or nullopt for anything else
// or a value beyond 64 bits.
std::optional<std::uint64_t> parse_size(std::string_view text) {
    std::uint64_t amount = 0;
    const std::size_t digits = read_digits(text, amount);
    if (digits == 0) {
        return std::nullopt;
    }
    struct unit_factor {
        std::string_view unit;
        std::uint64_t factor;
    };
    static constexpr unit_factor units[] = {
        {"", 1},
        {"B", 1},
        {"KiB", 1ULL << 10},
        {"MiB", 1ULL << 20},
        {"GiB", 1ULL << 30},
        {"TiB", 1ULL << 40},
        {"KB", 1000ULL},
        {"MB", 1000ULL * 1000},
        {"GB", 1000ULL * 1000 * 1000},
        {"TB", 1000ULL * 1000 * 1000 * 1000},
    };
    const std::string_view unit = text.substr(digits);
    for (const auto& u : units) {
        if (u.unit == unit) {
            return checked_multiply(amount, u.factor, std::numeric_limits<std::uint64_t>::max());
        }
    }
    return std::nullopt;
}

// Takes "host:port" (host an IPv4 literal or a DNS name) or "[v6]:port" (v6 a valid IPv6
// literal). Returns host (without brackets) and port, or nullopt for a missing host or port, a
// port outside 0..65535, an unbracketed IPv6 address or characters no host name has. Callers
// that cannot use port 0 (upstream servers) check that themselves.
std::optional<host_port> parse_host_port(std::string_view text) {
    std::string host;
    std::string_view port_text;
    if (!text.empty() && text.front() == '[') {
        const auto close = text.find(']');
        if (close == std::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':') {
            return std::nullopt;
        }
        host = std::string(text.substr(1, close - 1));
        port_text = text.substr(close + 2);
        if (!is_ipv6(host)) {
            return std::nullopt;
        }
    } else {
        const auto colon = text.find(':');
        // A second colon means an IPv6 literal without brackets: its port would be ambiguous.
        if (colon == std::string_view::npos ||
            text.find(':', colon + 1) != std::string_view::npos) {
            return std::nullopt;
        }
        host = std::string(text.substr(0, colon));
        port_text = text.substr(colon + 1);
        if (!is_plain_host(host)) {
            return std::nullopt;
        }
    }
    const auto port = parse_port(port_text);
    if (!port) {
        return std::nullopt;
    }
    return host_port{std::move(host), *port};
}

// Takes "addr/prefix" or a bare "addr" (IPv4 or IPv6; a bare address is a /32 or /128).
// Returns the network with the host bits cleared ("10.1.2.3/8" is 10.0.0.0/8), or nullopt for
// an invalid address or a prefix beyond the address length.
std::optional<cidr> parse_cidr(std::string_view text) {
    const auto slash = text.find('/');
    const std::string address(text.substr(0, slash));
    cidr out;
    out.text = std::string(text);
    if (::inet_pton(AF_INET, address.c_str(), out.addr.data()) == 1) {
        out.v6 = false;
    } else if (::inet_pton(AF_INET6, address.c_str(), out.addr.data()) == 1) {
        out.v6 = true;
    } else {
        return std::nullopt;
    }
    const int max_len = out.v6 ? 128 : 32;
    out.prefix_len = max_len;
    if (slash != std::string_view::npos) {
        const std::string_view prefix = text.substr(slash + 1);
        std::uint64_t len = 0;
        if (prefix.empty() || prefix.size() > 3 || read_digits(prefix, len) != prefix.size() ||
            len > static_cast<std::uint64_t>(max_len)) {
            return std::nullopt;
        }
        out.prefix_len = static_cast<int>(len);
    }
    // Clear the host bits so that matching can compare whole bytes against the network.
    for (int bit = out.prefix_len; bit < max_len; ++bit) {
        out.addr[static_cast<std::size_t>(bit / 8)] &=
            static_cast<std::uint8_t>(~(0x80u >> (bit % 8)));
    }
    return out;
}

namespace detail {

std::optional<std::string> host_pattern(std::string_view written, std::string& problem) {
    std::string host(written);
    std::transform(host.begin(), host.end(), host.begin(),
                   [](char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c + 32) : c; });
    if (host.empty()) {
        return host;
    }
    const bool bracketed = host.front() == '[';
    const auto colon = bracketed ? host.find(':', host.find(']')) : host.find(':');
    if (colon != std::string::npos) {
        const std::string_view port = std::string_view(host).substr(colon + 1);
        if (port.empty() || port.size() > 5 ||
            port.find_first_not_of("0123456789") != std::string_view::npos) {
            return std::nullopt;
        }
        host.erase(colon);
    }
    if (bracketed) {
        // parse_host_port checks the brackets and the IPv6 literal inside them.
        return parse_host_port(host + ":1") ? std::optional(host) : std::nullopt;
    }
    const std::string_view name =
        host.starts_with("*.") ? std::string_view(host).substr(2) : std::string_view(host);
    if (name.empty()) {
        problem = ": nothing after \"*.\"";
        return std::nullopt;
    }
    if (name.find('*') != std::string_view::npos) {
        problem = ": \"*\" is only allowed as a whole first label, as in \"*.example.com\"";
        return std::nullopt;
    }
    if (name.find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789-._") !=
        std::string_view::npos) {
        return std::nullopt;
    }
    return host;
}

std::optional<std::pair<int, int>> parse_status_range(std::string_view text) {
    const auto dash = text.find('-');
    const auto low = parse_status(text.substr(0, dash));
    const auto high = dash == std::string_view::npos ? low : parse_status(text.substr(dash + 1));
    if (!low || !high || *low > *high) {
        return std::nullopt;
    }
    return std::pair(*low, *high);
}

} // namespace detail
} // namespace sluice::config
