// Units of SPEC section 2: durations, sizes, host:port and CIDR parsing.

#include "config/load.hpp"

#include <catch2/catch.hpp>

#include <limits>

namespace cfg = sluice::config;
using namespace std::chrono_literals;

TEST_CASE("parse_duration accepts integer amounts with a unit", "[config][units]") {
    struct row {
        const char* text;
        cfg::duration expected;
    };
    const auto r = GENERATE(values<row>({
        {"250ms", 250ms},
        {"5s", 5s},
        {"2m", 2min},
        {"1h", 1h},
        {"0s", 0ms},
        {"0ms", 0ms},
        {"120s", 120s},
        {"05s", 5s},
        {"2562047788015h", 2562047788015h},
        {"9223372036854775807ms", cfg::duration(std::numeric_limits<std::int64_t>::max())},
    }));
    CAPTURE(r.text);
    const auto d = cfg::parse_duration(r.text);
    REQUIRE(d.has_value());
    CHECK(*d == r.expected);
}

TEST_CASE("parse_duration rejects malformed text", "[config][units]") {
    const char* text = GENERATE("", "5", "-1s", "+1s", "1.5s", "s", "5 s", " 5s", "5s ", "5S",
                                "5sec", "1d", "1m30s", "0x10s", "9223372036854775808ms",
                                "2562047788016h", "99999999999999999999s", "ms");
    CAPTURE(text);
    CHECK_FALSE(cfg::parse_duration(text).has_value());
}

TEST_CASE("parse_size accepts bytes and binary or decimal units", "[config][units]") {
    struct row {
        const char* text;
        std::uint64_t expected;
    };
    const auto r = GENERATE(values<row>({
        {"0", 0},
        {"512", 512},
        {"512B", 512},
        {"16KiB", 16 * 1024},
        {"1MiB", 1024 * 1024},
        {"1GiB", 1024ULL * 1024 * 1024},
        {"2TiB", 2ULL << 40},
        {"1KB", 1000},
        {"3MB", 3'000'000},
        {"1GB", 1'000'000'000},
        {"1TB", 1'000'000'000'000},
        {"18446744073709551615", std::numeric_limits<std::uint64_t>::max()},
    }));
    CAPTURE(r.text);
    const auto s = cfg::parse_size(r.text);
    REQUIRE(s.has_value());
    CHECK(*s == r.expected);
}

TEST_CASE("parse_size rejects malformed text", "[config][units]") {
    const char* text = GENERATE("", "KiB", "-1", "1.5MiB", "16kib", "16 KiB", "16K", "16KiBs",
                                "18446744073709551616", "17179869184GiB", "1PiB");
    CAPTURE(text);
    CHECK_FALSE(cfg::parse_size(text).has_value());
}

TEST_CASE("parse_host_port splits host and port", "[config][units]") {
    struct row {
        const char* text;
        const char* host;
        std::uint16_t port;
    };
    const auto r = GENERATE(values<row>({
        {"127.0.0.1:9001", "127.0.0.1", 9001},
        {"0.0.0.0:0", "0.0.0.0", 0},
        {"backend:65535", "backend", 65535},
        {"api-1.svc.cluster.local:8000", "api-1.svc.cluster.local", 8000},
        {"my_host:80", "my_host", 80},
        {"[::1]:80", "::1", 80},
        {"[::]:8443", "::", 8443},
        {"[2001:db8::1]:443", "2001:db8::1", 443},
        {"[::ffff:10.0.0.1]:1", "::ffff:10.0.0.1", 1},
    }));
    CAPTURE(r.text);
    const auto hp = cfg::parse_host_port(r.text);
    REQUIRE(hp.has_value());
    CHECK(hp->host == r.host);
    CHECK(hp->port == r.port);
}

TEST_CASE("parse_host_port rejects malformed text", "[config][units]") {
    const char* text = GENERATE("", "backend", ":80", "host:", "host:99999", "host:65536",
                                "host:-1", "host:8o", "host: 80", "::1:80", "2001:db8::1", "[::1]",
                                "[::1]80", "[::1:80", "[backend]:80", "[1.2.3.4]:80", "[]:80",
                                "a b:80", "host/x:80", "10.0.0.300:80", "1.2.3:80", "host:123456");
    CAPTURE(text);
    CHECK_FALSE(cfg::parse_host_port(text).has_value());
}

TEST_CASE("parse_cidr reads networks and bare addresses", "[config][units]") {
    struct row {
        const char* text;
        bool v6;
        int prefix_len;
        std::array<std::uint8_t, 16> addr;
    };
    const auto r = GENERATE(values<row>({
        {"10.0.0.0/8", false, 8, {10}},
        {"192.168.1.7", false, 32, {192, 168, 1, 7}},
        {"10.1.2.3/8", false, 8, {10}}, // host bits cleared
        {"172.16.255.1/12", false, 12, {172, 16}},
        {"0.0.0.0/0", false, 0, {}},
        {"::1/128", true, 128, {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}},
        {"::1", true, 128, {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}},
        {"fd00::/8", true, 8, {0xfd}},
        {"2001:db8:ffff::/33", true, 33, {0x20, 0x01, 0x0d, 0xb8, 0x80}},
    }));
    CAPTURE(r.text);
    const auto c = cfg::parse_cidr(r.text);
    REQUIRE(c.has_value());
    CHECK(c->text == r.text);
    CHECK(c->v6 == r.v6);
    CHECK(c->prefix_len == r.prefix_len);
    CHECK(c->addr == r.addr);
}

TEST_CASE("parse_cidr rejects malformed text", "[config][units]") {
    const char* text =
        GENERATE("", "10.0.0.0/33", "::/129", "10.0.0.0/", "10.0.0.0/-1", "10.0.0.0/8/8",
                 "10.0.0/8", "example.com", "10.0.0.0/ 8", "/8", "10.0.0.0/0008", "::1/x");
    CAPTURE(text);
    CHECK_FALSE(cfg::parse_cidr(text).has_value());
}
