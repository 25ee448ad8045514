// libFuzzer target: arbitrary bytes as an upstream's response, through what
// proxy/connection.cpp does with one (parse_response_head, response_framing,
// build_client_response, the chunked body scan). The request it answers
// (HEAD or not, HTTP/1.0 client or not, keep-alive, Upgrade) is chosen from
// a hash of the input. Stops (crash) on any invariant the head sent to the
// client must keep.

#include "fuzz_support.hpp"

#include "proxy/errors.hpp"
#include "proxy/headers.hpp"
#include "proxy/http_parser.hpp"

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace {

namespace http = sluice::proxy::http;
namespace proxy = sluice::proxy;
using sluice::fuzz::count_fields;
using sluice::fuzz::first_field;
using sluice::fuzz::list_elements;
using sluice::fuzz::same_name;

constexpr std::string_view request_id_header = "X-Request-ID";
constexpr std::string_view request_id = "0f8fad5b-d9cb-469f-a165-70867728950e";

struct request_facts {
    bool is_head;
    bool client_http10;
    bool client_keep_alive;
    bool upgrade; // the request asked for an Upgrade
};

void check_parse(std::string_view data, http::parse_status status, const http::message_head& resp) {
    const auto end = http::find_head_end(data, 0);
    SLUICE_FUZZ_CHECK((status == http::parse_status::incomplete) == (end == 0),
                      "parse: incomplete iff no head end");
    if (status != http::parse_status::ok)
        return;
    SLUICE_FUZZ_CHECK(resp.head_size == end, "parse: head_size is not the head's end");
    SLUICE_FUZZ_CHECK(resp.status >= 100 && resp.status <= 999, "parse: status out of range");
    const auto lengths = count_fields(resp, "content-length");
    const auto codings = count_fields(resp, "transfer-encoding");
    SLUICE_FUZZ_CHECK(lengths == 0 || codings == 0,
                      "smuggling: accepted Content-Length with Transfer-Encoding");
    SLUICE_FUZZ_CHECK(codings <= 1, "smuggling: accepted two Transfer-Encoding fields");
    if (codings == 1) {
        SLUICE_FUZZ_CHECK(resp.version_minor == 1,
                          "smuggling: accepted Transfer-Encoding on HTTP/1.0");
        SLUICE_FUZZ_CHECK(resp.body == http::framing::chunked,
                          "smuggling: Transfer-Encoding not framed as chunked");
    }
}

// Names the proxy writes itself after the upstream's fields.
bool is_generated_name(std::string_view name) {
    for (const auto* g : {"content-length", "transfer-encoding", "connection", "upgrade"})
        if (same_name(name, g))
            return true;
    return same_name(name, request_id_header);
}

void relay_and_check(const http::message_head& resp, const request_facts& req) {
    // forward(): 1xx other than 101 are not relayed; a 101 only to an Upgrade request.
    if (resp.status < 200 && resp.status != 101)
        return;
    if (resp.status == 101 && !req.upgrade)
        return;

    proxy::response_facts facts;
    facts.request_id_header = request_id_header;
    facts.request_id = request_id;
    http::framing framing = http::framing::none;
    bool dechunk = false;
    if (resp.status == 101) {
        facts.upgrade = true;
    } else {
        framing = http::response_framing(resp, req.is_head);
        dechunk = framing == http::framing::chunked && req.client_http10;
        facts.body = framing;
        facts.dechunk = dechunk;
        facts.keep_alive =
            req.client_keep_alive && framing != http::framing::until_close && !dechunk;
        facts.client_http10 = req.client_http10;
    }
    SLUICE_FUZZ_CHECK(!(req.is_head && framing != http::framing::none),
                      "framing: a body on a HEAD response");
    if (resp.status == 204 || resp.status == 304)
        SLUICE_FUZZ_CHECK(framing == http::framing::none, "framing: a body on 204/304");

    std::string out;
    proxy::build_client_response(resp, facts, out);

    // 1. Only CRLF line ends, nothing after the end, no control characters
    //    in the fields or the reason phrase.
    SLUICE_FUZZ_CHECK(sluice::fuzz::crlf_only(out),
                      "relay: bare CR/LF injected into the client head");
    const auto status_line_end = out.find("\r\n");
    SLUICE_FUZZ_CHECK(sluice::fuzz::no_controls(std::string_view(out).substr(status_line_end)),
                      "relay: a control character in a field relayed to the client");
    SLUICE_FUZZ_CHECK(sluice::fuzz::no_controls(std::string_view(out).substr(0, status_line_end)),
                      "relay: a control character in the reason phrase relayed to the client");
    // 2. It parses again, whole, as the same status.
    http::message_head back;
    const auto reparsed = http::parse_response_head(out, back);
    // The upstream's fields (at most max_forwarded_fields) plus the proxy's
    // own stay within what the parser takes.
    SLUICE_FUZZ_CHECK(reparsed != http::parse_status::too_many_fields,
                      "relay: head has more fields than the parser accepts");
    SLUICE_FUZZ_CHECK(reparsed == http::parse_status::ok, "relay: head does not re-parse");
    SLUICE_FUZZ_CHECK(back.head_size == out.size(),
                      "relay: re-parsed head is shorter than what was built");
    SLUICE_FUZZ_CHECK(back.status == resp.status && back.version_minor == 1,
                      "relay: status line changed");
    if (!resp.reason.empty())
        SLUICE_FUZZ_CHECK(back.reason == resp.reason, "relay: reason phrase changed");

    // 3. The client frames the body as the proxy relays it.
    if (resp.status != 101) {
        const auto relayed = dechunk ? http::framing::until_close : framing;
        SLUICE_FUZZ_CHECK(http::response_framing(back, req.is_head) == relayed,
                          "relay: client would frame the body differently");
        if (framing == http::framing::content_length)
            SLUICE_FUZZ_CHECK(back.content_length == resp.content_length,
                              "relay: Content-Length changed");
        if (relayed == http::framing::chunked)
            SLUICE_FUZZ_CHECK(back.transfer_encoding == resp.transfer_encoding,
                              "relay: Transfer-Encoding changed");
    }
    SLUICE_FUZZ_CHECK(count_fields(back, "content-length") <= 1 &&
                          count_fields(back, "transfer-encoding") <= 1,
                      "relay: framing field repeated");

    // 4. Connection as the proxy decides it; no hop-by-hop field of the upstream.
    for (const auto& f : back.fields)
        for (const auto* h : {"keep-alive", "proxy-connection", "te", "trailer"})
            SLUICE_FUZZ_CHECK(!same_name(f.name, h),
                              "hop-by-hop: Keep-Alive/Proxy-Connection/TE/Trailer relayed");
    SLUICE_FUZZ_CHECK(count_fields(back, "connection") <= 1,
                      "hop-by-hop: several Connection fields");
    SLUICE_FUZZ_CHECK(count_fields(back, "upgrade") == (facts.upgrade ? 1u : 0u),
                      "hop-by-hop: Upgrade relayed");
    if (facts.upgrade) {
        SLUICE_FUZZ_CHECK(back.connection_upgrade, "relay: 101 without Connection: upgrade");
    } else {
        SLUICE_FUZZ_CHECK(back.connection_close == !facts.keep_alive,
                          "relay: Connection: close disagrees with keep-alive");
        if (req.client_http10 && facts.keep_alive)
            SLUICE_FUZZ_CHECK(back.connection_keep_alive,
                              "relay: HTTP/1.0 client not told keep-alive");
    }

    // 5. The upstream's end-to-end fields in order, byte for byte, then
    //    only fields the proxy writes.
    std::vector<std::string_view> options;
    for (const auto& f : resp.fields)
        if (same_name(f.name, "connection"))
            for (const auto o : list_elements(f.value))
                if (!same_name(o, "close") && !same_name(o, "keep-alive") &&
                    !same_name(o, "upgrade"))
                    options.push_back(o);
    auto listed = [&](std::string_view name) {
        for (const auto o : options)
            if (same_name(o, name))
                return true;
        return false;
    };
    std::vector<http::field> expected;
    for (const auto& f : resp.fields) {
        if (same_name(f.name, "close") || same_name(f.name, "content-length") ||
            sluice::fuzz::is_fixed_hop_by_hop(f.name) || listed(f.name) ||
            same_name(f.name, request_id_header))
            continue;
        expected.push_back(f);
    }
    std::size_t i = 0;
    for (const auto& f : back.fields) {
        if (same_name(f.name, "close"))
            continue;
        if (i < expected.size()) {
            SLUICE_FUZZ_CHECK(f.name == expected[i].name && f.value == expected[i].value,
                              "relay: end-to-end field dropped, changed or reordered");
            ++i;
        } else {
            SLUICE_FUZZ_CHECK(is_generated_name(f.name),
                              "relay: a field neither the upstream's nor the proxy's");
        }
    }
    SLUICE_FUZZ_CHECK(i == expected.size(), "relay: end-to-end field missing");

    // 6. Exactly one request ID, the proxy's.
    SLUICE_FUZZ_CHECK(count_fields(back, request_id_header) == 1, "request id: not exactly one");
    SLUICE_FUZZ_CHECK(first_field(back, request_id_header)->value == request_id,
                      "request id: wrong value");
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* bytes, std::size_t size) {
    const std::string_view data(reinterpret_cast<const char*>(bytes), size);
    const std::uint64_t seed = sluice::fuzz::hash_of(data);
    const request_facts req{(seed & 1) != 0, (seed & 2) != 0, (seed & 4) != 0, (seed & 8) != 0};

    http::message_head resp;
    const auto status = http::parse_response_head(data, resp);
    check_parse(data, status, resp);
    if (status != http::parse_status::ok)
        return 0;
    if (resp.fields.size() > http::max_forwarded_fields)
        return 0; // connection.cpp treats it as a bad response (502)
    (void)proxy::reason_phrase(resp.status);
    relay_and_check(resp, req);

    if (http::response_framing(resp, req.is_head) == http::framing::chunked)
        sluice::fuzz::check_chunked_scanner(data.substr(resp.head_size),
                                            static_cast<std::size_t>(seed >> 8));
    return 0;
}
