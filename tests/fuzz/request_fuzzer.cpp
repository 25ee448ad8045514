// libFuzzer target: arbitrary bytes as a client's request stream, through the
// pure parts of the request path in the order proxy/connection.cpp runs them
// (read_head's head scan, parse_request_head, the Host rule, the request ID,
// routing, build_upstream_request, the chunked body scan), for up to
// `max_pipelined` pipelined requests. It stops (crash) on any invariant the
// forwarded request must keep; see the checks in forward_and_check().

#include "fuzz_support.hpp"

#include "config/model.hpp"
#include "proxy/headers.hpp"
#include "proxy/http_parser.hpp"
#include "proxy/request_id.hpp"
#include "proxy/router.hpp"

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace {

namespace http = sluice::proxy::http;
namespace config = sluice::config;
namespace proxy = sluice::proxy;
using sluice::fuzz::connection_options;
using sluice::fuzz::count_fields;
using sluice::fuzz::first_field;
using sluice::fuzz::is_fixed_hop_by_hop;
using sluice::fuzz::list_elements;
using sluice::fuzz::same_name;

constexpr int max_pipelined = 8;
constexpr std::string_view request_id_header = "X-Request-ID";
constexpr std::string_view generated_id = "0f8fad5b-d9cb-469f-a165-70867728950e";
constexpr std::string_view client_ip = "192.0.2.7";

// A small route table with every kind of match and action: exact host with
// a prefix, a wildcard host, local answers, and a catch-all upstream.
struct route_table {
    std::vector<config::route> routes;
    std::vector<proxy::compiled_route> compiled;

    route_table() {
        auto add = [&](std::string host, std::string prefix, auto action) {
            config::route r;
            r.match.host = std::move(host);
            r.match.path_prefix = std::move(prefix);
            r.action = action;
            routes.push_back(std::move(r));
        };
        add("api.example.com", "/api", std::string("api"));
        add("*.example.com", "/", std::string("wild"));
        add("", "/ping", config::respond_action{200, "pong\n"});
        add("", "/old", config::redirect_action{});
        add("", "/", std::string("default"));
        // compiled_route::route points into `routes`, which no longer grows.
        int upstream_index = 0;
        for (const auto& r : routes) {
            auto c = proxy::compile_route(r);
            if (std::holds_alternative<std::string>(r.action))
                c.upstream_index = upstream_index++;
            compiled.push_back(std::move(c));
        }
    }
};

const route_table& routes() {
    static const route_table table;
    return table;
}

// The outcome of read_head for a stream that arrived in the given pieces:
// the head's end (> 0), or 0 with `refused` when a bare LF ended it early.
struct head_scan {
    std::size_t end = 0;
    bool refused = false;
};

head_scan scan_head(std::string_view data, const std::vector<std::size_t>& arrivals) {
    std::size_t scanned = 0;
    for (const auto have : arrivals) {
        const auto buffered = data.substr(0, have);
        const auto end = http::find_head_end(buffered, scanned);
        if (end != 0)
            return {end, false};
        if (http::has_bare_lf(buffered, scanned))
            return {0, true};
        scanned = buffered.size();
    }
    return {};
}

// read_head's verdict must not depend on how the bytes were split into
// reads, and must agree with parse_request_head on the whole buffer.
void check_head_scan(std::string_view data, std::uint64_t seed) {
    const head_scan once = scan_head(data, {data.size()});
    const std::size_t split = data.empty() ? 0 : static_cast<std::size_t>(seed % (data.size() + 1));
    const head_scan twice = scan_head(data, {split, data.size()});

    http::message_head a;
    const auto status_once = once.end != 0 ? http::parse_request_head(data.substr(0, once.end), a)
                                           : http::parse_status::incomplete;
    http::message_head b;
    const auto status_twice = twice.end != 0
                                  ? http::parse_request_head(data.substr(0, twice.end), b)
                                  : http::parse_status::incomplete;
    const bool ok_once = status_once == http::parse_status::ok;
    const bool ok_twice = status_twice == http::parse_status::ok;
    SLUICE_FUZZ_CHECK(ok_once == ok_twice, "head scan: accepting depends on how the head arrived");
    if (ok_once)
        SLUICE_FUZZ_CHECK(a.head_size == b.head_size, "head scan: head size depends on arrival");
    SLUICE_FUZZ_CHECK(once.refused || once.end != 0 || !twice.refused,
                      "head scan: refused in two reads, waiting in one");
    SLUICE_FUZZ_CHECK(once.end == 0 || once.end == http::find_head_end(data, 0),
                      "head scan: end differs from find_head_end");
}

// The parser's verdict against the rules of docs/HTTP.md, checked from the
// fields it returned (on ok every field line is in head.fields).
void check_parse(std::string_view data, http::parse_status status, const http::message_head& req) {
    const auto end = http::find_head_end(data, 0);
    if (status == http::parse_status::incomplete)
        SLUICE_FUZZ_CHECK(end == 0 && !http::has_bare_lf(data, 0),
                          "parse: incomplete with a whole head");
    if (end == 0 && !http::has_bare_lf(data, 0))
        SLUICE_FUZZ_CHECK(status == http::parse_status::incomplete,
                          "parse: verdict before the head ended");
    if (status != http::parse_status::ok)
        return;

    SLUICE_FUZZ_CHECK(req.head_size == end, "parse: head_size is not the head's end");
    SLUICE_FUZZ_CHECK(sluice::fuzz::clean_head(data.substr(0, end)),
                      "parse: accepted a head with a bare CR/LF or control");
    SLUICE_FUZZ_CHECK(!req.method.empty() && !req.target.empty(), "parse: empty method or target");
    SLUICE_FUZZ_CHECK(req.version_minor == 0 || req.version_minor == 1, "parse: version");

    const auto lengths = count_fields(req, "content-length");
    const auto codings = count_fields(req, "transfer-encoding");
    SLUICE_FUZZ_CHECK(lengths == 0 || codings == 0,
                      "smuggling: accepted Content-Length with Transfer-Encoding");
    SLUICE_FUZZ_CHECK(codings <= 1, "smuggling: accepted two Transfer-Encoding fields");
    if (codings == 1) {
        SLUICE_FUZZ_CHECK(req.version_minor == 1,
                          "smuggling: accepted Transfer-Encoding on HTTP/1.0");
        const auto codes = list_elements(first_field(req, "transfer-encoding")->value);
        SLUICE_FUZZ_CHECK(!codes.empty() && same_name(codes.back(), "chunked"),
                          "smuggling: accepted a final coding other than chunked");
        int chunked = 0;
        for (const auto c : codes)
            chunked += same_name(c, "chunked") ? 1 : 0;
        SLUICE_FUZZ_CHECK(chunked == 1, "smuggling: accepted chunked twice");
        SLUICE_FUZZ_CHECK(req.body == http::framing::chunked,
                          "smuggling: Transfer-Encoding not framed as chunked");
    }
    if (lengths > 0) {
        // Every element of every Content-Length is 1*DIGIT and the same number.
        for (const auto& f : req.fields) {
            if (!same_name(f.name, "content-length"))
                continue;
            const auto elements = list_elements(f.value);
            SLUICE_FUZZ_CHECK(!elements.empty(), "smuggling: accepted an empty Content-Length");
            for (const auto e : elements) {
                std::uint64_t n = 0;
                SLUICE_FUZZ_CHECK(e.size() <= 19, "smuggling: accepted an overlong Content-Length");
                for (const char c : e) {
                    SLUICE_FUZZ_CHECK(c >= '0' && c <= '9',
                                      "smuggling: accepted a non-digit Content-Length");
                    n = n * 10 + static_cast<std::uint64_t>(c - '0');
                }
                SLUICE_FUZZ_CHECK(n == req.content_length,
                                  "smuggling: accepted differing Content-Lengths");
            }
        }
        SLUICE_FUZZ_CHECK(req.body == (req.content_length > 0 ? http::framing::content_length
                                                              : http::framing::none),
                          "framing: Content-Length framed wrongly");
    }
    if (lengths == 0 && codings == 0)
        SLUICE_FUZZ_CHECK(req.body == http::framing::none, "framing: body without length");
}

// Names the proxy writes itself after the client's fields.
bool is_generated_name(std::string_view name) {
    for (const auto* g : {"host", "content-length", "transfer-encoding", "x-forwarded-for",
                          "x-forwarded-proto", "x-forwarded-host", "connection", "upgrade"})
        if (same_name(name, g))
            return true;
    return same_name(name, request_id_header);
}

struct choices {
    bool peer_trusted;
    bool tls;
    bool trust_incoming_id;
};

// What serve_one() and forward() do with a parsed head, then the invariants
// of the head that goes to the upstream.
void forward_and_check(const http::message_head& req, const choices& how) {
    // read_head: HTTP/1.1 requires a Host field (RFC 9112 3.2).
    if (req.version_minor == 1 && req.host.empty() && count_fields(req, "host") == 0)
        return;

    // serve_one: the request ID, the routing host.
    std::string_view request_id = generated_id;
    if (const auto* incoming = first_field(req, request_id_header);
        how.trust_incoming_id && incoming != nullptr && proxy::valid_request_id(incoming->value))
        request_id = incoming->value;
    const auto authority = proxy::target_authority(req.target);
    const std::string host(authority.empty() ? req.host : authority);
    const auto* route = proxy::match_route(routes().compiled, host, proxy::target_path(req.target));
    const bool forwarded = route != nullptr && route->upstream_index >= 0;

    // forward(): the facts, exactly as connection.cpp computes them.
    const bool upgrade = req.connection_upgrade && !req.upgrade.empty();
    proxy::forward_facts facts;
    facts.client_ip = client_ip;
    facts.peer_trusted = how.peer_trusted;
    facts.tls = how.tls;
    facts.request_id_header = request_id_header;
    facts.request_id = request_id;
    facts.path = proxy::target_path(req.target) == req.target || req.target.front() == '/'
                     ? req.target
                     : std::string_view{};
    std::string origin_form;
    if (facts.path.empty()) {
        const auto rest = req.target.substr(req.target.find("://") + 3 + authority.size());
        origin_form =
            rest.empty() || rest.front() != '/' ? "/" + std::string(rest) : std::string(rest);
        facts.path = origin_form;
    }
    facts.upgrade = upgrade;
    facts.strip_expect = req.expect_continue;
    facts.authority = authority;
    // As connection.cpp: with no Host at all, the server's address.
    facts.default_host =
        host.empty() ? std::string_view("upstream.test:8000") : std::string_view(host);

    std::string out;
    proxy::build_upstream_request(req, facts, out);

    // 1. Only CRLF line ends, no control characters, nothing after the end.
    SLUICE_FUZZ_CHECK(sluice::fuzz::clean_head(out),
                      "forward: CR/LF or a control character injected");
    // 2. It parses again, whole.
    http::message_head fwd;
    const auto reparsed = http::parse_request_head(out, fwd);
    // The client's fields (at most max_forwarded_fields) plus the proxy's own
    // stay within what the parser takes.
    SLUICE_FUZZ_CHECK(reparsed != http::parse_status::too_many_fields,
                      "forward: head has more fields than the parser accepts");
    SLUICE_FUZZ_CHECK(reparsed == http::parse_status::ok, "forward: head does not re-parse");
    SLUICE_FUZZ_CHECK(fwd.head_size == out.size(),
                      "forward: re-parsed head is shorter than what was built");
    if (!forwarded)
        return; // connection.cpp answers locally; the rest is about what reaches an upstream

    // 3. Same method, same path, HTTP/1.1, origin form.
    SLUICE_FUZZ_CHECK(fwd.method == req.method, "forward: method changed");
    SLUICE_FUZZ_CHECK(fwd.version_minor == 1, "forward: not HTTP/1.1");
    SLUICE_FUZZ_CHECK(proxy::target_path(fwd.target) == proxy::target_path(req.target),
                      "forward: path changed");
    if (req.target.front() == '/')
        SLUICE_FUZZ_CHECK(fwd.target == req.target, "forward: origin-form target changed");
    SLUICE_FUZZ_CHECK(fwd.target.front() == '/', "forward: target not in origin form");

    // 4. Same body framing and length.
    SLUICE_FUZZ_CHECK(fwd.body == req.body, "forward: body framing changed");
    SLUICE_FUZZ_CHECK(fwd.content_length == req.content_length, "forward: Content-Length changed");
    if (req.body == http::framing::chunked)
        SLUICE_FUZZ_CHECK(fwd.transfer_encoding == req.transfer_encoding,
                          "forward: Transfer-Encoding changed");
    SLUICE_FUZZ_CHECK(count_fields(fwd, "content-length") <= 1 &&
                          count_fields(fwd, "transfer-encoding") <= 1,
                      "forward: framing field repeated");

    // 5. No hop-by-hop field of the client's survives; Connection and
    //    Upgrade only as the proxy writes them for an upgrade.
    for (const auto& f : fwd.fields) {
        for (const auto* h : {"keep-alive", "proxy-connection", "te", "trailer"})
            SLUICE_FUZZ_CHECK(!same_name(f.name, h),
                              "hop-by-hop: Keep-Alive/Proxy-Connection/TE/Trailer forwarded");
        if (same_name(f.name, "connection"))
            SLUICE_FUZZ_CHECK(upgrade && f.value == "upgrade", "hop-by-hop: Connection forwarded");
        if (same_name(f.name, "upgrade"))
            SLUICE_FUZZ_CHECK(upgrade && f.value == req.upgrade, "hop-by-hop: Upgrade forwarded");
        if (same_name(f.name, "transfer-encoding"))
            SLUICE_FUZZ_CHECK(req.body == http::framing::chunked,
                              "hop-by-hop: Transfer-Encoding without chunked body");
    }
    SLUICE_FUZZ_CHECK(count_fields(fwd, "connection") == (upgrade ? 1u : 0u) &&
                          count_fields(fwd, "upgrade") == (upgrade ? 1u : 0u),
                      "hop-by-hop: Connection/Upgrade count");
    if (req.expect_continue)
        SLUICE_FUZZ_CHECK(count_fields(fwd, "expect") == 0,
                          "forward: Expect kept after 100-continue");

    // 6. The client's end-to-end fields, in order and byte for byte, then
    //    only fields the proxy writes. A field named "close" is left out of
    //    the comparison: whether Connection: close also names a field is
    //    moot.
    std::vector<std::string_view> options;
    for (const auto o : connection_options(req))
        if (!same_name(o, "close") && !same_name(o, "keep-alive") && !same_name(o, "upgrade"))
            options.push_back(o);
    auto listed = [&](std::string_view name) {
        for (const auto o : options)
            if (same_name(o, name))
                return true;
        return false;
    };
    std::vector<http::field> expected;
    for (const auto& f : req.fields) {
        if (same_name(f.name, "close") || same_name(f.name, "content-length") ||
            is_fixed_hop_by_hop(f.name) || listed(f.name) || same_name(f.name, request_id_header) ||
            same_name(f.name, "x-forwarded-for") || same_name(f.name, "x-forwarded-proto") ||
            same_name(f.name, "x-forwarded-host"))
            continue;
        if (req.expect_continue && same_name(f.name, "expect"))
            continue;
        if (same_name(f.name, "host"))
            continue; // checked in 8.
        expected.push_back(f);
    }
    std::size_t i = 0;
    for (const auto& f : fwd.fields) {
        if (same_name(f.name, "close") || same_name(f.name, "host"))
            continue;
        if (i < expected.size()) {
            SLUICE_FUZZ_CHECK(f.name == expected[i].name && f.value == expected[i].value,
                              "forward: end-to-end field dropped, changed or reordered");
            ++i;
        } else {
            SLUICE_FUZZ_CHECK(is_generated_name(f.name),
                              "forward: a field neither the client's nor the proxy's");
        }
    }
    SLUICE_FUZZ_CHECK(i == expected.size(), "forward: end-to-end field missing");

    // 7. Exactly one request ID, the one this request carries.
    SLUICE_FUZZ_CHECK(count_fields(fwd, request_id_header) == 1, "request id: not exactly one");
    SLUICE_FUZZ_CHECK(first_field(fwd, request_id_header)->value == request_id,
                      "request id: wrong value");

    // 8. The upstream sees the host the request was routed by (RFC 9112
    //    3.2.2: a proxy replaces Host with the authority of an absolute-form
    //    target), in exactly one Host field (RFC 9112 3.2: an HTTP/1.1
    //    request has one, empty when there is no authority). What
    //    build_upstream_request does today is checked strictly; where that
    //    differs from the rule is a known finding (README.md).
    std::string_view want_host = facts.default_host;
    if (!authority.empty())
        want_host = authority;
    else if (const auto* h = first_field(req, "host"); h != nullptr)
        want_host = h->value;
    const auto* fwd_host = first_field(fwd, "host");
    SLUICE_FUZZ_CHECK(count_fields(fwd, "host") == 1, "host: not exactly one Host forwarded");
    SLUICE_FUZZ_CHECK(fwd_host->value == want_host,
                      "host: upstream Host differs from the routing host");

    // 9. X-Forwarded-*: the client's only from a trusted peer, as one list.
    SLUICE_FUZZ_CHECK(count_fields(fwd, "x-forwarded-for") == 1 &&
                          count_fields(fwd, "x-forwarded-proto") == 1 &&
                          count_fields(fwd, "x-forwarded-host") <= 1,
                      "x-forwarded: field count");
    std::vector<std::string_view> want_xff;
    std::string_view want_proto = how.tls ? "https" : "http";
    std::string_view want_xfh = host;
    bool have_xfh = false; // from a trusted peer's X-Forwarded-Host
    if (how.peer_trusted) {
        bool have_proto = false;
        for (const auto& f : req.fields) {
            if (same_name(f.name, "x-forwarded-for"))
                for (const auto e : list_elements(f.value))
                    want_xff.push_back(e);
            if (same_name(f.name, "x-forwarded-proto") && !have_proto && !f.value.empty()) {
                want_proto = f.value;
                have_proto = true;
            }
            if (same_name(f.name, "x-forwarded-host") && !have_xfh && !f.value.empty()) {
                want_xfh = f.value;
                have_xfh = true;
            }
        }
    }
    want_xff.push_back(client_ip);
    // The client's address is always the last hop, and the only one from an
    // untrusted peer.
    const auto sent_xff = list_elements(first_field(fwd, "x-forwarded-for")->value);
    SLUICE_FUZZ_CHECK(!sent_xff.empty() && sent_xff.back() == client_ip,
                      "x-forwarded-for: client not the last hop");
    if (!how.peer_trusted)
        SLUICE_FUZZ_CHECK(first_field(fwd, "x-forwarded-for")->value == client_ip,
                          "x-forwarded-for: an untrusted peer's list forwarded");
    SLUICE_FUZZ_CHECK(sent_xff == want_xff,
                      "x-forwarded-for: not the trusted list plus the client");
    SLUICE_FUZZ_CHECK(first_field(fwd, "x-forwarded-proto")->value == want_proto,
                      "x-forwarded-proto: wrong value");
    // The trusted X-Forwarded-Host, else the host the request was routed by.
    const auto* xfh = first_field(fwd, "x-forwarded-host");
    SLUICE_FUZZ_CHECK(want_xfh.empty() ? xfh == nullptr
                                       : (xfh != nullptr && xfh->value == want_xfh),
                      "x-forwarded-host: not the routing host");
}

// One request at the start of `stream`. Returns the bytes it took (head and
// body), or 0 when the stream cannot go on (refused, incomplete, or a body
// that did not end).
std::size_t one_request(std::string_view stream, std::uint64_t seed) {
    check_head_scan(stream, seed);
    http::message_head req;
    const auto status = http::parse_request_head(stream, req);
    check_parse(stream, status, req);
    if (status != http::parse_status::ok)
        return 0;
    if (req.fields.size() > http::max_forwarded_fields)
        return 0; // connection.cpp answers 431 and closes

    const choices how{(seed & 1) != 0, (seed & 2) != 0, (seed & 4) != 0};
    forward_and_check(req, how);

    const auto body = stream.substr(req.head_size);
    switch (req.body) {
    case http::framing::none:
        return req.head_size;
    case http::framing::content_length:
        return req.content_length <= body.size()
                   ? req.head_size + static_cast<std::size_t>(req.content_length)
                   : 0;
    case http::framing::chunked: {
        const auto r =
            sluice::fuzz::check_chunked_scanner(body, static_cast<std::size_t>(seed >> 8));
        return r.done ? req.head_size + r.consumed : 0;
    }
    case http::framing::until_close:
        SLUICE_FUZZ_CHECK(false, "parse: a request framed until close");
    }
    return 0;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* bytes, std::size_t size) {
    std::string_view stream(reinterpret_cast<const char*>(bytes), size);
    std::uint64_t seed = sluice::fuzz::hash_of(stream);
    for (int n = 0; n < max_pipelined && !stream.empty(); ++n) {
        const auto used = one_request(stream, seed);
        if (used == 0)
            break;
        SLUICE_FUZZ_CHECK(used <= stream.size(), "pipeline: a request took more than the stream");
        stream.remove_prefix(used);
        seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
    }
    return 0;
}
