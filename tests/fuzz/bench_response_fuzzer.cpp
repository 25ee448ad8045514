// libFuzzer target: arbitrary bytes as what a server sends the load
// generator (sluice-bench's response_parser, bench/response_parser.hpp),
// for one or more responses on a connection. The parser must never read
// past what it is given, must use bytes only as its contract says (unused
// bytes are offered again with more), and must reach the same verdict
// (state, failure, status, body bytes, keep-alive) whether the bytes come in
// one piece, in pieces split where a hash of the input says, or one byte at
// a time. Then the peer closes: on_eof() must leave done or error.

#include "fuzz_support.hpp"

#include "bench/response_parser.hpp"

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace {

using sluice::bench::response_parser;

struct verdict {
    response_parser::state state;
    response_parser::failure failure;
    unsigned status;
    std::uint64_t body;
    bool keep_alive;
    std::size_t used; // bytes of the stream the responses took
    bool operator==(const verdict&) const = default;
};

// Feeds `stream` in pieces no longer than `piece` (0: all at once), with the
// contract's re-offer of unused bytes, through up to four responses.
std::vector<verdict> run(std::string_view stream, std::size_t piece, bool head_first) {
    std::vector<verdict> out;
    response_parser p;
    p.reset(head_first);
    std::size_t at = 0;      // start of what has not been used
    std::size_t offered = 0; // how far bytes have been made available
    while (out.size() < 4) {
        offered =
            piece == 0 ? stream.size() : std::min(stream.size(), std::max(offered, at) + piece);
        const auto window = stream.substr(at, offered - at);
        const auto used = p.parse(window);
        SLUICE_FUZZ_CHECK(used <= window.size(), "bench parser: used more than it was given");
        at += used;
        if (p.result() == response_parser::state::need_more) {
            if (offered == stream.size()) {
                p.on_eof();
                SLUICE_FUZZ_CHECK(p.result() != response_parser::state::need_more,
                                  "bench parser: still waiting after the peer closed");
            } else {
                continue; // more bytes
            }
        }
        out.push_back({p.result(), p.error(), p.status(), p.body_bytes(), p.keep_alive(), at});
        if (p.result() != response_parser::state::done || !p.keep_alive() || at == stream.size())
            break;
        p.reset(false);
    }
    return out;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* bytes, std::size_t size) {
    const std::string_view data(reinterpret_cast<const char*>(bytes), size);
    const std::uint64_t seed = sluice::fuzz::hash_of(data);
    const bool head_first = (seed & 1) != 0;
    const auto whole = run(data, 0, head_first);
    const auto split = run(data, 1 + static_cast<std::size_t>((seed >> 1) % 61), head_first);
    SLUICE_FUZZ_CHECK(whole == split, "bench parser: the verdict depends on how the bytes arrived");
    if (size <= 2048) {
        const auto bytewise = run(data, 1, head_first);
        SLUICE_FUZZ_CHECK(whole == bytewise, "bench parser: byte-by-byte verdict differs");
    }
    return 0;
}
