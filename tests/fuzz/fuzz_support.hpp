#pragma once
// Helpers shared by the fuzz targets: the invariant check that stops the
// fuzzer, a hash that turns an input into the few choices a target makes
// beside the bytes themselves, and independent re-implementations of the
// small HTTP rules the invariants compare against (so a bug in the proxy's
// version is not also in the oracle).

#include "proxy/http_parser.hpp"

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <set>
#include <string>
#include <string_view>
#include <vector>

namespace sluice::fuzz {

namespace http = sluice::proxy::http;

// Stops the run with the invariant's name on stderr. __builtin_trap rather
// than abort(): libFuzzer (and ASan's report) treat both as a crash, but a
// trap also survives builds where abort() is intercepted or NDEBUG is set.
[[noreturn]] inline void fail(const char* invariant, const char* file, int line) {
    std::fprintf(stderr, "\n*** fuzz invariant violated at %s:%d: %s\n", file, line, invariant);
    std::fflush(stderr);
    __builtin_trap();
}

#define SLUICE_FUZZ_CHECK(cond, what)                                                              \
    do {                                                                                           \
        if (!(cond))                                                                               \
            ::sluice::fuzz::fail(what, __FILE__, __LINE__);                                        \
    } while (0)

// A check that found a bug in proxy/ or config/ which is reported but not yet
// fixed (README.md, "Known findings"). It stops the run only when
// SLUICE_FUZZ_STRICT=1 is set, so CI keeps fuzzing everything else meanwhile;
// otherwise each one is reported once per process. Delete the tolerance (turn
// it back into SLUICE_FUZZ_CHECK) in the change that fixes the bug.
inline void known_finding(const char* invariant, const char* file, int line) {
    static const bool strict = [] {
        const char* v = std::getenv("SLUICE_FUZZ_STRICT");
        return v != nullptr && v[0] == '1';
    }();
    if (strict)
        fail(invariant, file, line);
    static std::set<std::string> reported;
    if (reported.insert(invariant).second)
        std::fprintf(stderr,
                     "*** known finding (not fatal without SLUICE_FUZZ_STRICT=1) at %s:%d: %s\n",
                     file, line, invariant);
}

#define SLUICE_FUZZ_KNOWN(cond, what)                                                              \
    do {                                                                                           \
        if (!(cond))                                                                               \
            ::sluice::fuzz::known_finding(what, __FILE__, __LINE__);                               \
    } while (0)

// FNV-1a: the same input always makes the same choices, so a crash replays.
inline std::uint64_t hash_of(std::string_view data) {
    std::uint64_t h = 0xcbf29ce484222325ULL;
    for (const char c : data) {
        h ^= static_cast<unsigned char>(c);
        h *= 0x100000001b3ULL;
    }
    return h;
}

inline char ascii_lower(char c) {
    return (c >= 'A' && c <= 'Z') ? static_cast<char>(c + 32) : c;
}

inline bool same_name(std::string_view a, std::string_view b) {
    if (a.size() != b.size())
        return false;
    for (std::size_t i = 0; i < a.size(); ++i)
        if (ascii_lower(a[i]) != ascii_lower(b[i]))
            return false;
    return true;
}

inline std::string_view trim_ows(std::string_view v) {
    while (!v.empty() && (v.front() == ' ' || v.front() == '\t'))
        v.remove_prefix(1);
    while (!v.empty() && (v.back() == ' ' || v.back() == '\t'))
        v.remove_suffix(1);
    return v;
}

// The comma-separated elements of a list value, trimmed, empty ones dropped
// (RFC 9110 5.6.1: a recipient ignores empty list elements).
inline std::vector<std::string_view> list_elements(std::string_view v) {
    std::vector<std::string_view> out;
    for (;;) {
        const auto comma = v.find(',');
        const auto e = trim_ows(v.substr(0, comma));
        if (!e.empty())
            out.push_back(e);
        if (comma == std::string_view::npos)
            break;
        v.remove_prefix(comma + 1);
    }
    return out;
}

inline std::size_t count_fields(const http::message_head& h, std::string_view name) {
    std::size_t n = 0;
    for (const auto& f : h.fields)
        if (same_name(f.name, name))
            ++n;
    return n;
}

inline const http::field* first_field(const http::message_head& h, std::string_view name) {
    for (const auto& f : h.fields)
        if (same_name(f.name, name))
            return &f;
    return nullptr;
}

// Every element named by the message's Connection fields, lowercase
// comparison left to the caller.
inline std::vector<std::string_view> connection_options(const http::message_head& h) {
    std::vector<std::string_view> out;
    for (const auto& f : h.fields)
        if (same_name(f.name, "connection"))
            for (const auto e : list_elements(f.value))
                out.push_back(e);
    return out;
}

// The fixed hop-by-hop names of RFC 9110 7.6.1, plus Keep-Alive and
// Proxy-Connection.
inline bool is_fixed_hop_by_hop(std::string_view name) {
    for (const auto* h : {"connection", "keep-alive", "proxy-connection", "te", "trailer",
                          "transfer-encoding", "upgrade"})
        if (same_name(name, h))
            return true;
    return false;
}

// A head as the proxy writes it: CRLF line ends only, and its end
// ("\r\n\r\n") is its last 4 bytes, so no line was split or ended early by
// injected bytes.
inline bool crlf_only(std::string_view head) {
    for (std::size_t i = 0; i < head.size(); ++i) {
        if (head[i] == '\r' && (i + 1 >= head.size() || head[i + 1] != '\n'))
            return false;
        if (head[i] == '\n' && (i == 0 || head[i - 1] != '\r'))
            return false;
    }
    return http::find_head_end(head, 0) == head.size();
}

// No control character but HTAB (and the CR and LF of line ends) in `text`.
inline bool no_controls(std::string_view text) {
    for (const char ch : text) {
        const auto c = static_cast<unsigned char>(ch);
        if (c == '\r' || c == '\n' || c == '\t')
            continue;
        if (c < 0x20 || c == 0x7f)
            return false;
    }
    return true;
}

inline bool clean_head(std::string_view head) {
    return crlf_only(head) && no_controls(head);
}

// Scans a chunked body whole, split in two at `split`, and one byte at a
// time, and checks the three agree: where it ends or breaks, whether it
// ended, and the payload bytes it yields. Returns the whole-scan result.
inline http::chunked_scanner::result check_chunked_scanner(std::string_view body,
                                                           std::size_t split) {
    using result = http::chunked_scanner::result;

    auto join = [](const std::vector<std::string_view>& pieces) {
        std::string s;
        for (const auto p : pieces)
            s.append(p);
        return s;
    };

    http::chunked_scanner whole_scanner;
    std::vector<std::string_view> whole_pieces;
    const result whole = whole_scanner.feed(body, &whole_pieces);
    SLUICE_FUZZ_CHECK(whole.consumed <= body.size(), "chunked: consumed beyond the data");
    SLUICE_FUZZ_CHECK(!(whole.done && whole.error), "chunked: both done and error");
    SLUICE_FUZZ_CHECK(whole.done || whole.error || whole.consumed == body.size(),
                      "chunked: stopped early without done or error");
    for (const auto p : whole_pieces)
        SLUICE_FUZZ_CHECK(p.data() >= body.data() &&
                              p.data() + p.size() <= body.data() + whole.consumed,
                          "chunked: payload piece outside the consumed bytes");
    const std::string whole_payload = join(whole_pieces);

    // Two feeds, as when the body arrives in two reads.
    split = body.empty() ? 0 : split % (body.size() + 1);
    http::chunked_scanner two_scanner;
    std::vector<std::string_view> two_pieces;
    result first = two_scanner.feed(body.substr(0, split), &two_pieces);
    result two = first;
    if (!first.done && !first.error) {
        SLUICE_FUZZ_CHECK(first.consumed == split, "chunked: first feed stopped early");
        const result second = two_scanner.feed(body.substr(split), &two_pieces);
        two.consumed = split + second.consumed;
        two.done = second.done;
        two.error = second.error;
    }
    SLUICE_FUZZ_CHECK(two.consumed == whole.consumed, "chunked: split scan consumed differently");
    SLUICE_FUZZ_CHECK(two.done == whole.done, "chunked: split scan done differently");
    SLUICE_FUZZ_CHECK(two.error == whole.error, "chunked: split scan error differently");
    SLUICE_FUZZ_CHECK(join(two_pieces) == whole_payload, "chunked: split scan payload differs");

    // One byte per feed, the worst case for a state machine; bounded so a
    // large input does not slow every run.
    if (body.size() <= 4096) {
        http::chunked_scanner byte_scanner;
        std::vector<std::string_view> byte_pieces;
        result bytes;
        for (std::size_t i = 0; i < body.size(); ++i) {
            const result r = byte_scanner.feed(body.substr(i, 1), &byte_pieces);
            bytes.consumed = i + r.consumed;
            if (r.done || r.error) {
                bytes.done = r.done;
                bytes.error = r.error;
                break;
            }
        }
        SLUICE_FUZZ_CHECK(bytes.consumed == whole.consumed,
                          "chunked: bytewise scan consumed differently");
        SLUICE_FUZZ_CHECK(bytes.done == whole.done && bytes.error == whole.error,
                          "chunked: bytewise scan ended differently");
        SLUICE_FUZZ_CHECK(join(byte_pieces) == whole_payload,
                          "chunked: bytewise scan payload differs");
    }
    return whole;
}

} // namespace sluice::fuzz
