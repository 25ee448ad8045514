// The receive buffer: prepare/commit/consume, growth up to the owner's limit, and compaction
// that keeps the unread bytes.

#include "proxy/byte_buffer.hpp"

#include <catch2/catch.hpp>

#include <cstring>
#include <string>

using sluice::proxy::byte_buffer;

namespace {

// Appends `text` through prepare/commit, requiring room for all of it in one go.
void append(byte_buffer& b, std::string_view text, std::size_t limit) {
    auto [p, room] = b.prepare(text.size(), limit);
    REQUIRE(p != nullptr);
    REQUIRE(room == text.size());
    std::memcpy(p, text.data(), text.size());
    b.commit(text.size());
}

// A recognisable pattern of `n` bytes starting at `offset`.
std::string pattern(std::size_t n, std::size_t offset = 0) {
    std::string s(n, '\0');
    for (std::size_t i = 0; i < n; ++i)
        s[i] = static_cast<char>('A' + (offset + i) % 26);
    return s;
}

} // namespace

TEST_CASE("a new buffer is empty", "[proxy][byte_buffer]") {
    const byte_buffer b;
    CHECK(b.empty());
    CHECK(b.size() == 0);
    CHECK(b.data().empty());
}

TEST_CASE("prepare, commit and consume move the readable window", "[proxy][byte_buffer]") {
    byte_buffer b(64);
    auto [p, room] = b.prepare(10, 1024);
    REQUIRE(p != nullptr);
    CHECK(room == 10); // up to `want`
    std::memcpy(p, "hello", 5);
    b.commit(5);
    CHECK(b.data() == "hello");
    CHECK(b.size() == 5);
    CHECK_FALSE(b.empty());

    append(b, " world", 1024);
    CHECK(b.data() == "hello world");

    b.consume(6);
    CHECK(b.data() == "world");
    CHECK(b.size() == 5);

    append(b, "!", 1024);
    CHECK(b.data() == "world!");

    b.consume(6);
    CHECK(b.empty());
    CHECK(b.data().empty());
}

TEST_CASE("prepare returns at least one byte and at most want", "[proxy][byte_buffer]") {
    byte_buffer b(16);
    append(b, pattern(12), 16);
    // 4 bytes left in a block that may not grow: fewer than wanted, but not none.
    auto [p, room] = b.prepare(10, 16);
    REQUIRE(p != nullptr);
    CHECK(room == 4);
    CHECK(p == b.data().data() + 12);
}

TEST_CASE("consuming everything rewinds the window to the start", "[proxy][byte_buffer]") {
    byte_buffer b(16);
    append(b, pattern(10), 16);
    b.consume(10);
    // All 16 bytes are free again without growing.
    auto [p, room] = b.prepare(16, 16);
    CHECK(room == 16);
    std::memcpy(p, pattern(16).data(), 16);
    b.commit(16);
    CHECK(b.data() == pattern(16));
}

TEST_CASE("the block grows to fit what is wanted, keeping the data", "[proxy][byte_buffer]") {
    byte_buffer b(16);
    append(b, pattern(16), 1 << 20);
    auto [p, room] = b.prepare(100, 1 << 20);
    CHECK(room == 100);
    std::memcpy(p, pattern(100, 16).data(), 100);
    b.commit(100);
    CHECK(b.data() == pattern(116));
}

TEST_CASE("growth stops at the limit", "[proxy][byte_buffer]") {
    const std::size_t limit =
        GENERATE(std::size_t{16}, std::size_t{100}, std::size_t{1000}, std::size_t{4096});
    CAPTURE(limit);
    byte_buffer b(16);
    std::size_t total = 0;
    for (int i = 0; i < 10000; ++i) {
        auto [p, room] = b.prepare(7, limit);
        if (room == 0)
            break;
        REQUIRE(room <= 7);
        std::memset(p, 'x', room);
        b.commit(room);
        total += room;
    }
    CHECK(total == limit);
    CHECK(b.size() == limit);
    // Full: an empty span, and still so for a larger want.
    CHECK(b.prepare(1, limit).second == 0);
    CHECK(b.prepare(1 << 20, limit).second == 0);
    CHECK(b.data() == std::string(limit, 'x'));
}

TEST_CASE("a full buffer gets room again when bytes are consumed", "[proxy][byte_buffer]") {
    byte_buffer b(32);
    append(b, pattern(32), 32);
    REQUIRE(b.prepare(1, 32).second == 0);
    b.consume(8);
    auto [p, room] = b.prepare(16, 32);
    CHECK(room == 8);
    // Compaction moved the unread bytes to the front, intact.
    CHECK(b.data() == pattern(24, 8));
    CHECK(p == b.data().data() + 24);
    std::memcpy(p, "01234567", 8);
    b.commit(8);
    CHECK(b.data() == pattern(24, 8) + "01234567");
    CHECK(b.prepare(1, 32).second == 0);
}

TEST_CASE("compaction keeps the unread data", "[proxy][byte_buffer]") {
    byte_buffer b(16);
    append(b, "0123456789abcdef", 16);
    b.consume(10);
    REQUIRE(b.data() == "abcdef");
    // Only 0 bytes at the end, 10 at the front: prepare slides the window back.
    auto [p, room] = b.prepare(8, 16);
    CHECK(room == 8);
    CHECK(b.data() == "abcdef");
    CHECK(p == b.data().data() + 6);
    std::memcpy(p, "XYZ", 3);
    b.commit(3);
    CHECK(b.data() == "abcdefXYZ");
    // No growth happened: 7 bytes are left of 16.
    CHECK(b.prepare(100, 16).second == 7);
}

TEST_CASE("compaction then growth keeps the unread data", "[proxy][byte_buffer]") {
    byte_buffer b(16);
    append(b, pattern(16), 1024);
    b.consume(4);
    auto [p, room] = b.prepare(32, 1024);
    CHECK(room == 32);
    CHECK(b.data() == pattern(12, 4));
    CHECK(p == b.data().data() + 12);
    std::memcpy(p, pattern(32, 16).data(), 32);
    b.commit(32);
    CHECK(b.data() == pattern(44, 4));
}

TEST_CASE("a long stream through a small buffer arrives intact", "[proxy][byte_buffer]") {
    byte_buffer b(16);
    const std::string source = pattern(10000);
    std::string sink;
    std::size_t written = 0;
    std::size_t step = 1;
    while (sink.size() < source.size()) {
        if (written < source.size()) {
            auto [p, room] = b.prepare(13, 40);
            const std::size_t n = std::min(room, source.size() - written);
            std::memcpy(p, source.data() + written, n);
            b.commit(n);
            written += n;
        }
        // Read a varying amount, sometimes less than was written.
        const std::size_t take = std::min(b.size(), step % 11 + 1);
        sink.append(b.data().substr(0, take));
        b.consume(take);
        REQUIRE(b.size() <= 40);
        ++step;
    }
    CHECK(sink == source);
}

TEST_CASE("release_if_empty drops only an empty block", "[proxy][byte_buffer]") {
    byte_buffer b(16);
    append(b, "keep", 64);
    b.release_if_empty();
    CHECK(b.data() == "keep");
    b.consume(4);
    b.release_if_empty();
    CHECK(b.empty());
    append(b, "again", 64);
    CHECK(b.data() == "again");
}

TEST_CASE("the block never holds more than the limit", "[proxy][byte_buffer]") {
    // "growing the block up to `limit` bytes in all. Returns an empty span when the buffer
    // already holds `limit` bytes."
    SECTION("an initial block larger than the limit") {
        byte_buffer b(64);
        append(b, pattern(32), 32);
        CHECK(b.prepare(16, 32).second == 0);
    }
    SECTION("after release_if_empty") {
        byte_buffer b(16);
        append(b, "x", 16);
        b.consume(1);
        b.release_if_empty();
        append(b, pattern(16), 16);
        CHECK(b.prepare(16, 16).second == 0);
    }
}

TEST_CASE("a pooled buffer gives its block back when empty and takes it again",
          "[proxy][byte_buffer]") {
    sluice::proxy::block_pool pool(64, 2);
    byte_buffer b(&pool);
    CHECK_FALSE(b.holds_block());
    append(b, "GET / HTTP/1.1\r\n", 64);
    CHECK(b.holds_block());
    CHECK(pool.spare() == 0);

    SECTION("not while bytes are buffered") {
        b.consume(4);
        b.release_if_empty();
        CHECK(b.holds_block());
        CHECK(b.data() == "/ HTTP/1.1\r\n");
    }
    SECTION("emptied, the block returns to the pool and is reused") {
        b.consume(b.size());
        b.release_if_empty();
        CHECK_FALSE(b.holds_block());
        CHECK(pool.spare() == 1);
        append(b, "next", 64);
        CHECK(pool.spare() == 0);
        CHECK(b.data() == "next");
    }
    SECTION("a grown block is not pooled; the pool block it replaced is") {
        const auto big = pattern(100);
        append(b, big, 256);
        CHECK(pool.spare() == 1); // the 64-byte block went back when the data moved
        CHECK(b.data() == "GET / HTTP/1.1\r\n" + big);
        b.consume(b.size());
        b.release_if_empty();
        CHECK(pool.spare() == 1); // the grown block was freed, not pooled
    }
}

TEST_CASE("a buffer outgrowing its pool's block takes a large pooled block at once",
          "[proxy][byte_buffer]") {
    // "a block that must grow beyond pool's size grows to large's size at once when `limit`
    // allows it, and comes from and goes back to `large`."
    sluice::proxy::block_pool pool(64, 2);
    sluice::proxy::block_pool large(1024, 2);
    large.give(std::make_unique<char[]>(1024));
    byte_buffer b(&pool, &large);
    const auto first = pattern(60);
    append(b, first, 4096);
    b.consume(10);

    SECTION("grown past the pool's size, the block is a large one, not twice the size") {
        auto [p, room] = b.prepare(100, 4096);
        REQUIRE(p != nullptr);
        CHECK(room == 100);
        CHECK(pool.spare() == 1);                              // the small block went back
        CHECK(large.spare() == 0);                             // the large one came from its pool
        CHECK(b.data() == first.substr(10));                   // the unread bytes moved with it
        CHECK(b.prepare(1024 - 50, 4096).second == 1024 - 50); // 1024 bytes, not 128
        CHECK(large.spare() == 0);

        b.consume(b.size());
        b.release_if_empty();
        CHECK(large.spare() == 1); // given back when empty...
        append(b, "small again", 4096);
        CHECK(pool.spare() == 0); // ...and the next bytes take a small block
        CHECK(large.spare() == 1);
        append(b, pattern(200), 4096);
        CHECK(large.spare() == 0); // the same large block, reused
    }
    SECTION("a limit below the large size grows as without it") {
        CHECK(b.prepare(100, 512).second == 100);
        CHECK(b.prepare(1000, 512).second == 512 - 50); // 256 then 512: never the large block
        CHECK(large.spare() == 1);
        b.consume(b.size());
        b.release_if_empty();
        CHECK(large.spare() == 1); // freed, not pooled
        CHECK(pool.spare() == 1);
    }
}

TEST_CASE("a block pool keeps at most its limit of spare blocks", "[proxy][byte_buffer]") {
    sluice::proxy::block_pool pool(32, 2);
    auto a = pool.take();
    auto b = pool.take();
    auto c = pool.take();
    const char* second = b.get();
    pool.give(std::move(a));
    pool.give(std::move(b));
    pool.give(std::move(c)); // freed
    CHECK(pool.spare() == 2);
    auto again = pool.take();
    CHECK(again.get() == second); // last in, first out
    pool.give(std::move(again));
}
