// The load generator's response parser (bench/response_parser.hpp): Content-Length, chunked
// bodies with extensions and trailers, bodies delimited by close, interim 1xx responses, HEAD,
// 204/304, keep-alive decisions, malformed responses, and every message split at every byte.

#include "bench/response_parser.hpp"

#include <catch2/catch.hpp>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

using sluice::bench::response_parser;
using state = response_parser::state;
using failure = response_parser::failure;

namespace Catch {
template <> struct StringMaker<state> {
    static std::string convert(state s) {
        switch (s) {
        case state::need_more:
            return "need_more";
        case state::done:
            return "done";
        case state::error:
            return "error";
        }
        return "state(?)";
    }
};
template <> struct StringMaker<failure> {
    static std::string convert(failure f) {
        switch (f) {
        case failure::none:
            return "none";
        case failure::status_line:
            return "status_line";
        case failure::header_line:
            return "header_line";
        case failure::header_too_big:
            return "header_too_big";
        case failure::content_length:
            return "content_length";
        case failure::chunk_size:
            return "chunk_size";
        case failure::truncated:
            return "truncated";
        }
        return "failure(?)";
    }
};
} // namespace Catch

namespace {

// What a parse ended with, comparable across ways of feeding the same bytes.
struct outcome {
    state result = state::need_more;
    failure error = failure::none;
    unsigned status = 0;
    bool keep_alive = false;
    std::uint64_t body_bytes = 0;
    std::size_t consumed = 0; // bytes of the input the message used
    bool operator==(const outcome&) const = default;
};

std::ostream& operator<<(std::ostream& os, const outcome& o) {
    return os << "{" << Catch::StringMaker<state>::convert(o.result) << ", "
              << Catch::StringMaker<failure>::convert(o.error) << ", status " << o.status
              << ", keep_alive " << o.keep_alive << ", body " << o.body_bytes << ", consumed "
              << o.consumed << "}";
}

// Feeds `pieces` in order the way the load client does: unused bytes stay buffered and are
// offered again with the next piece; parsing stops once the message is done or failed.
// `eof`: the peer closes after the last piece.
outcome feed(const std::vector<std::string_view>& pieces, bool head = false, bool eof = false) {
    response_parser p;
    p.reset(head);
    std::string buffered;
    std::size_t consumed = 0;
    for (const auto piece : pieces) {
        if (p.result() != state::need_more) {
            break;
        }
        buffered.append(piece);
        const std::size_t used = p.parse(buffered);
        REQUIRE(used <= buffered.size());
        consumed += used;
        buffered.erase(0, used);
    }
    if (eof) {
        p.on_eof();
    }
    return {p.result(), p.error(), p.status(), p.keep_alive(), p.body_bytes(), consumed};
}

outcome feed_whole(std::string_view text, bool head = false, bool eof = false) {
    return feed({text}, head, eof);
}

outcome feed_bytewise(std::string_view text, bool head = false, bool eof = false) {
    std::vector<std::string_view> pieces;
    for (std::size_t i = 0; i < text.size(); ++i) {
        pieces.push_back(text.substr(i, 1));
    }
    return feed(pieces, head, eof);
}

// The outcome of `text` fed whole must also come out of every two-piece split and of
// byte-by-byte feeding.
void require_split_invariant(std::string_view text, bool head = false, bool eof = false) {
    const outcome whole = feed_whole(text, head, eof);
    for (std::size_t cut = 0; cut <= text.size(); ++cut) {
        INFO("split at byte " << cut << " of " << text.size());
        REQUIRE(feed({text.substr(0, cut), text.substr(cut)}, head, eof) == whole);
    }
    REQUIRE(feed_bytewise(text, head, eof) == whole);
}

constexpr std::string_view content_length_response = "HTTP/1.1 200 OK\r\n"
                                                     "Content-Type: text/plain\r\n"
                                                     "Content-Length: 12\r\n"
                                                     "\r\n"
                                                     "hello world\n";

constexpr std::string_view chunked_response = "HTTP/1.1 200 OK\r\n"
                                              "Transfer-Encoding: chunked\r\n"
                                              "Trailer: X-Checksum\r\n"
                                              "\r\n"
                                              "5;name=value\r\n"
                                              "hello\r\n"
                                              "1A\r\n"
                                              "abcdefghijklmnopqrstuvwxyz\r\n"
                                              "0\r\n"
                                              "X-Checksum: 1234\r\n"
                                              "X-Other: a, b\r\n"
                                              "\r\n";

constexpr std::string_view interim_then_final = "HTTP/1.1 100 Continue\r\n"
                                                "\r\n"
                                                "HTTP/1.1 103 Early Hints\r\n"
                                                "Link: </style.css>; rel=preload\r\n"
                                                "\r\n"
                                                "HTTP/1.1 201 Created\r\n"
                                                "Content-Length: 2\r\n"
                                                "\r\n"
                                                "ok";

} // namespace

TEST_CASE("a Content-Length body is counted and ends the message", "[bench][response_parser]") {
    const outcome o = feed_whole(content_length_response);
    CHECK(o.result == state::done);
    CHECK(o.status == 200);
    CHECK(o.body_bytes == 12);
    CHECK(o.keep_alive);
    CHECK(o.consumed == content_length_response.size());
}

TEST_CASE("bytes after a complete message are left for the next one", "[bench][response_parser]") {
    const std::string two = std::string{content_length_response} + "HTTP/1.1 404 Not Found\r\n";
    response_parser p;
    p.reset();
    const std::size_t used = p.parse(two);
    CHECK(p.result() == state::done);
    CHECK(used == content_length_response.size());

    // The client resets and parses the rest as the next response.
    p.reset();
    const std::string rest = two.substr(used) + "Content-Length: 0\r\n\r\n";
    CHECK(p.parse(rest) == rest.size());
    CHECK(p.result() == state::done);
    CHECK(p.status() == 404);
    CHECK(p.body_bytes() == 0);
}

TEST_CASE("Content-Length: 0 completes at the end of the head", "[bench][response_parser]") {
    const outcome o = feed_whole("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
    CHECK(o.result == state::done);
    CHECK(o.body_bytes == 0);
    CHECK(o.keep_alive);
}

TEST_CASE("header names are matched without regard to case", "[bench][response_parser]") {
    const outcome o = feed_whole("HTTP/1.1 200 OK\r\ncOnTeNt-LeNgTh:   3  \r\n\r\nabc");
    CHECK(o.result == state::done);
    CHECK(o.body_bytes == 3);
}

TEST_CASE("a repeated identical Content-Length is accepted", "[bench][response_parser]") {
    const outcome o =
        feed_whole("HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc");
    CHECK(o.result == state::done);
    CHECK(o.body_bytes == 3);
}

TEST_CASE("a body larger than any buffer is counted, not stored", "[bench][response_parser]") {
    response_parser p;
    p.reset();
    const std::string head = "HTTP/1.1 200 OK\r\nContent-Length: 1073741824\r\n\r\n";
    REQUIRE(p.parse(head) == head.size());
    const std::string slice(64 * 1024, 'a');
    std::uint64_t sent = 0;
    while (p.result() == state::need_more) {
        sent += p.parse(slice);
    }
    CHECK(p.result() == state::done);
    CHECK(sent == (std::uint64_t{1} << 30));
    CHECK(p.body_bytes() == (std::uint64_t{1} << 30));
}

TEST_CASE("a chunked body with extensions and trailers", "[bench][response_parser]") {
    const outcome o = feed_whole(chunked_response);
    CHECK(o.result == state::done);
    CHECK(o.status == 200);
    CHECK(o.body_bytes == 5 + 26);
    CHECK(o.keep_alive);
    CHECK(o.consumed == chunked_response.size());
}

TEST_CASE("chunked wins when it is the final transfer coding", "[bench][response_parser]") {
    const outcome o = feed_whole("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, Chunked\r\n\r\n"
                                 "3\r\nabc\r\n0\r\n\r\n");
    CHECK(o.result == state::done);
    CHECK(o.body_bytes == 3);
    CHECK(o.keep_alive);
}

TEST_CASE("a transfer coding other than chunked runs to close", "[bench][response_parser]") {
    const std::string_view text = "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nzzzz";
    CHECK(feed_whole(text).result == state::need_more);
    const outcome o = feed_whole(text, false, true);
    CHECK(o.result == state::done);
    CHECK(o.body_bytes == 4);
    CHECK_FALSE(o.keep_alive);
}

TEST_CASE("a body without length runs until the peer closes", "[bench][response_parser]") {
    const std::string_view text = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil close";
    SECTION("more is needed while the connection is open") {
        const outcome o = feed_whole(text);
        CHECK(o.result == state::need_more);
        CHECK(o.body_bytes == 11);
        CHECK_FALSE(o.keep_alive);
    }
    SECTION("end of stream completes it") {
        const outcome o = feed_whole(text, false, true);
        CHECK(o.result == state::done);
        CHECK(o.status == 200);
        CHECK(o.body_bytes == 11);
        CHECK_FALSE(o.keep_alive);
    }
    SECTION("an empty close-delimited body") {
        const outcome o = feed_whole("HTTP/1.0 200 OK\r\n\r\n", false, true);
        CHECK(o.result == state::done);
        CHECK(o.body_bytes == 0);
    }
}

TEST_CASE("interim 1xx responses are skipped; the final one counts", "[bench][response_parser]") {
    const outcome o = feed_whole(interim_then_final);
    CHECK(o.result == state::done);
    CHECK(o.status == 201);
    CHECK(o.body_bytes == 2);
    CHECK(o.keep_alive);
    CHECK(o.consumed == interim_then_final.size());
}

TEST_CASE("101 Switching Protocols ends the HTTP exchange", "[bench][response_parser]") {
    const outcome o = feed_whole(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n");
    CHECK(o.result == state::done);
    CHECK(o.status == 101);
    CHECK_FALSE(o.keep_alive);
}

TEST_CASE("a response to HEAD has no body whatever its headers say", "[bench][response_parser]") {
    SECTION("Content-Length") {
        const outcome o = feed_whole("HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n", true);
        CHECK(o.result == state::done);
        CHECK(o.body_bytes == 0);
        CHECK(o.keep_alive);
    }
    SECTION("chunked") {
        const outcome o = feed_whole("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", true);
        CHECK(o.result == state::done);
        CHECK(o.body_bytes == 0);
    }
    SECTION("no framing at all does not wait for close") {
        const outcome o = feed_whole("HTTP/1.1 200 OK\r\n\r\n", true);
        CHECK(o.result == state::done);
        CHECK(o.keep_alive);
    }
    SECTION("reset(false) forgets HEAD") {
        response_parser p;
        p.reset(true);
        p.reset(false);
        const std::string_view text = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n";
        CHECK(p.parse(text) == text.size());
        CHECK(p.result() == state::need_more);
    }
}

TEST_CASE("204 and 304 have no body", "[bench][response_parser]") {
    SECTION("204 without framing headers") {
        const outcome o = feed_whole("HTTP/1.1 204 No Content\r\nX-A: b\r\n\r\n");
        CHECK(o.result == state::done);
        CHECK(o.status == 204);
        CHECK(o.body_bytes == 0);
        CHECK(o.keep_alive);
    }
    SECTION("304 with the Content-Length of the full representation") {
        const std::string_view text = "HTTP/1.1 304 Not Modified\r\nContent-Length: 1234\r\n\r\n";
        const outcome o = feed_whole(text);
        CHECK(o.result == state::done);
        CHECK(o.status == 304);
        CHECK(o.body_bytes == 0);
        CHECK(o.consumed == text.size());
    }
    SECTION("304 with chunked") {
        const outcome o =
            feed_whole("HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n");
        CHECK(o.result == state::done);
        CHECK(o.body_bytes == 0);
    }
}

TEST_CASE("keep-alive follows the version and Connection", "[bench][response_parser]") {
    CHECK(feed_whole("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n").keep_alive);
    CHECK_FALSE(
        feed_whole("HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n").keep_alive);
    CHECK_FALSE(feed_whole("HTTP/1.1 200 OK\r\nConnection: foo, Close\r\nContent-Length: 0\r\n\r\n")
                    .keep_alive);
    CHECK_FALSE(feed_whole("HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n").keep_alive);
    CHECK(feed_whole("HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n")
              .keep_alive);
}

TEST_CASE("a status line without a reason phrase is accepted", "[bench][response_parser]") {
    const outcome o = feed_whole("HTTP/1.1 503\r\nContent-Length: 0\r\n\r\n");
    CHECK(o.result == state::done);
    CHECK(o.status == 503);
}

TEST_CASE("bare LF line endings are tolerated", "[bench][response_parser]") {
    const outcome o = feed_whole("HTTP/1.1 200 OK\nContent-Length: 2\n\nok");
    CHECK(o.result == state::done);
    CHECK(o.body_bytes == 2);
}

TEST_CASE("malformed responses fail with the reason", "[bench][response_parser]") {
    struct bad {
        std::string_view text;
        failure why;
    };
    const auto [text, why] = GENERATE(values<bad>({
        {"HTTP/2 200 OK\r\n\r\n", failure::status_line},
        {"HTTP/1.1 20 OK\r\n\r\n", failure::status_line},
        {"HTTP/1.1 2000 OK\r\n\r\n", failure::status_line},
        {"HTTP/1.1 099 Low\r\n\r\n", failure::status_line},
        {"SSH-2.0-OpenSSH\r\n\r\n", failure::status_line},
        {"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n", failure::header_line},
        {"HTTP/1.1 200 OK\r\nName : value\r\n\r\n", failure::header_line},
        {"HTTP/1.1 200 OK\r\n folded: value\r\n\r\n", failure::header_line},
        {"HTTP/1.1 200 OK\r\n: empty name\r\n\r\n", failure::header_line},
        {"HTTP/1.1 200 OK\r\nContent-Length: abc\r\n\r\n", failure::content_length},
        {"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", failure::content_length},
        {"HTTP/1.1 200 OK\r\nContent-Length: \r\n\r\n", failure::content_length},
        {"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
         failure::content_length},
        {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nxyz\r\n", failure::chunk_size},
        {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\r\n", failure::chunk_size},
        {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcX\r\n", failure::chunk_size},
    }));
    INFO(std::string{text});
    const outcome whole = feed_whole(text);
    CHECK(whole.result == state::error);
    CHECK(whole.error == why);
    CHECK_FALSE(whole.keep_alive);
    CHECK(feed_bytewise(text) == whole);
}

TEST_CASE("the peer closing before the end is a truncation", "[bench][response_parser]") {
    const std::string_view text = GENERATE(values<std::string_view>({
        "",
        "HTTP/1.1 200 OK\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX-T: 1\r\n",
    }));
    INFO(std::string{text});
    const outcome o = feed_whole(text, false, true);
    CHECK(o.result == state::error);
    CHECK(o.error == failure::truncated);
}

TEST_CASE("end of stream after a complete message changes nothing", "[bench][response_parser]") {
    const outcome o = feed_whole(content_length_response, false, true);
    CHECK(o.result == state::done);
    CHECK(o.error == failure::none);
}

TEST_CASE("a head over 64 KiB fails", "[bench][response_parser]") {
    SECTION("one long header line") {
        const std::string text =
            "HTTP/1.1 200 OK\r\nX-Big: " + std::string(70 * 1024, 'x') + "\r\n\r\n";
        const outcome o = feed_whole(text);
        CHECK(o.result == state::error);
        CHECK(o.error == failure::header_too_big);
    }
    SECTION("many lines adding up") {
        std::string text = "HTTP/1.1 200 OK\r\n";
        for (int i = 0; i < 2000; ++i) {
            text += "X-Header-" + std::to_string(i) + ": " + std::string(30, 'v') + "\r\n";
        }
        text += "\r\n";
        const outcome o = feed_whole(text);
        CHECK(o.result == state::error);
        CHECK(o.error == failure::header_too_big);
    }
}

TEST_CASE("every message parses the same when split at any byte", "[bench][response_parser]") {
    SECTION("Content-Length") {
        require_split_invariant(content_length_response);
    }
    SECTION("Content-Length followed by the next response") {
        require_split_invariant(std::string{content_length_response} +
                                "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
    }
    SECTION("chunked with extensions and trailers") {
        require_split_invariant(chunked_response);
    }
    SECTION("interim 1xx, then the final response") {
        require_split_invariant(interim_then_final);
    }
    SECTION("until close") {
        require_split_invariant("HTTP/1.1 200 OK\r\nX-A: b\r\n\r\nclose-delimited body", false,
                                true);
    }
    SECTION("HEAD") {
        require_split_invariant("HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n", true);
    }
    SECTION("204 and 304") {
        require_split_invariant("HTTP/1.1 204 No Content\r\nX-A: b\r\n\r\n");
        require_split_invariant("HTTP/1.1 304 Not Modified\r\nContent-Length: 7\r\n\r\n");
    }
    SECTION("a malformed chunk") {
        require_split_invariant(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcX\r\n0\r\n\r\n");
    }
    SECTION("truncated") {
        require_split_invariant("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", false, true);
    }
}
