// Request IDs (SPEC 3): which incoming IDs are kept, and that new ones are lowercase canonical
// UUIDv4s that do not repeat.

#include "proxy/request_id.hpp"

#include <catch2/catch.hpp>

#include <array>
#include <regex>
#include <string>
#include <unordered_set>
#include <vector>

namespace proxy = sluice::proxy;

namespace {

std::string next_id(proxy::request_id_generator& g) {
    std::array<char, 36> out{};
    g.next(out);
    return std::string(out.data(), out.size());
}

const std::regex uuid_v4("^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$");

} // namespace

TEST_CASE("valid_request_id accepts 1 to 200 characters of the allowed set",
          "[proxy][request_id]") {
    CHECK(proxy::valid_request_id("a"));
    CHECK(proxy::valid_request_id("Z"));
    CHECK(proxy::valid_request_id("0"));
    CHECK(proxy::valid_request_id("3f2504e0-4f89-41d3-9a0c-0305e82c3301"));
    CHECK(proxy::valid_request_id(
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._:@+=-"));
    CHECK(proxy::valid_request_id("trace@host:1234+span=7.x_y-z"));
    for (const char c : std::string("._:@+=-")) {
        CAPTURE(c);
        CHECK(proxy::valid_request_id(std::string(1, c)));
    }
    CHECK(proxy::valid_request_id(std::string(200, 'x')));
    CHECK(proxy::valid_request_id(std::string(199, '-') + "Q"));
}

TEST_CASE("valid_request_id rejects empty and over-long IDs", "[proxy][request_id]") {
    CHECK_FALSE(proxy::valid_request_id(""));
    CHECK_FALSE(proxy::valid_request_id(std::string(201, 'x')));
    CHECK_FALSE(proxy::valid_request_id(std::string(1000, 'x')));
}

TEST_CASE("valid_request_id rejects characters outside the set", "[proxy][request_id]") {
    const std::string id =
        GENERATE(as<std::string>{}, "a b", "a/b", "/", "a\tb", "a,b", "a;b", "a\"b", "a'b", "a\\b",
                 "a#b", "a%20b", "a?b", "a&b", "a*b", "a!b", "a~b", "a(b)", "<a>", "a\r\nX-Evil: 1",
                 "caf\xc3\xa9", "\xe2\x9c\x93", "a\x7f", " a", "a ");
    CAPTURE(id);
    CHECK_FALSE(proxy::valid_request_id(id));
}

TEST_CASE("valid_request_id rejects a NUL byte", "[proxy][request_id]") {
    CHECK_FALSE(proxy::valid_request_id(std::string_view("ab\0cd", 5)));
}

TEST_CASE("generated IDs are lowercase canonical UUIDv4s", "[proxy][request_id]") {
    proxy::request_id_generator seeded(12345);
    proxy::request_id_generator from_os;
    for (int i = 0; i < 1000; ++i) {
        const auto a = next_id(seeded);
        const auto b = next_id(from_os);
        CAPTURE(a, b);
        REQUIRE(std::regex_match(a, uuid_v4));
        REQUIRE(std::regex_match(b, uuid_v4));
        // A generated ID is also one the proxy would keep.
        REQUIRE(proxy::valid_request_id(a));
    }
}

TEST_CASE("10,000 generated IDs are distinct and well formed", "[proxy][request_id]") {
    proxy::request_id_generator g;
    std::unordered_set<std::string> seen;
    for (int i = 0; i < 10000; ++i) {
        const auto id = next_id(g);
        REQUIRE(std::regex_match(id, uuid_v4));
        REQUIRE(seen.insert(id).second);
    }
    CHECK(seen.size() == 10000);
}

TEST_CASE("the variable bits of generated IDs all vary", "[proxy][request_id]") {
    // Over many IDs every hex position except the fixed version digit takes several values,
    // so no field is stuck (e.g. a half of the UUID left at zero).
    proxy::request_id_generator g(7);
    std::vector<std::unordered_set<char>> seen(36);
    for (int i = 0; i < 2000; ++i) {
        const auto id = next_id(g);
        for (std::size_t k = 0; k < id.size(); ++k)
            seen[k].insert(id[k]);
    }
    for (std::size_t k = 0; k < 36; ++k) {
        CAPTURE(k);
        if (k == 8 || k == 13 || k == 18 || k == 23) {
            CHECK(seen[k] == std::unordered_set<char>{'-'});
        } else if (k == 14) {
            CHECK(seen[k] == std::unordered_set<char>{'4'});
        } else if (k == 19) {
            CHECK(seen[k] == std::unordered_set<char>{'8', '9', 'a', 'b'});
        } else {
            CHECK(seen[k].size() == 16);
        }
    }
}

TEST_CASE("generators with different seeds differ", "[proxy][request_id]") {
    proxy::request_id_generator a(1);
    proxy::request_id_generator b(2);
    std::unordered_set<std::string> from_a;
    for (int i = 0; i < 100; ++i)
        from_a.insert(next_id(a));
    for (int i = 0; i < 100; ++i)
        CHECK(from_a.count(next_id(b)) == 0);
}

TEST_CASE("generators with the same seed give the same sequence", "[proxy][request_id]") {
    proxy::request_id_generator a(42);
    proxy::request_id_generator b(42);
    for (int i = 0; i < 100; ++i) {
        CAPTURE(i);
        CHECK(next_id(a) == next_id(b));
    }
}

TEST_CASE("two generators seeded from the OS differ", "[proxy][request_id]") {
    proxy::request_id_generator a;
    proxy::request_id_generator b;
    CHECK(next_id(a) != next_id(b));
}

TEST_CASE("a seeded generator's IDs are its random words in order, as hex", "[proxy][request_id]") {
    // The first two 64-bit words of xoshiro256** seeded by splitmix64(1) and
    // (42), most significant byte first, with the version and variant bits set.
    proxy::request_id_generator one(1);
    CHECK(next_id(one) == "b3f2af6d-0fc7-40c5-853b-559647364cea");
    CHECK(next_id(one) == "92f89756-082a-4514-a42e-1c7bc266a3a7");
    proxy::request_id_generator forty_two(42);
    CHECK(next_id(forty_two) == "15780b2e-0c2e-4716-a104-d9866d113a7e");
    CHECK(next_id(forty_two) == "ae175332-39e4-49a1-acb8-ad4703b360a1");
}

TEST_CASE("every hex digit appears at every random position of new IDs", "[proxy][request_id]") {
    proxy::request_id_generator g(99);
    std::array<std::array<bool, 16>, 36> seen{};
    for (int i = 0; i < 4000; ++i) {
        const auto id = next_id(g);
        REQUIRE(std::regex_match(id, uuid_v4));
        for (std::size_t p = 0; p < id.size(); ++p)
            if (id[p] != '-')
                seen[p][id[p] <= '9' ? id[p] - '0' : id[p] - 'a' + 10] = true;
    }
    for (std::size_t p = 0; p < 36; ++p) {
        if (p == 8 || p == 13 || p == 18 || p == 23 || p == 14 || p == 19)
            continue; // dashes, the version digit, the variant digit
        for (int d = 0; d < 16; ++d) {
            CAPTURE(p, d);
            CHECK(seen[p][d]);
        }
    }
}
