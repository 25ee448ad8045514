// Header rewriting (SPEC 3): the upstream request head, the client response head, responses the
// proxy makes itself, redirect locations and trusted-proxy CIDR checks. Each built head is parsed
// back with the strict parser, so what goes out is also a valid head.

#include "config/load.hpp"
#include "proxy/headers.hpp"

#include <catch2/catch.hpp>
#include "http_printers.hpp"

#include <arpa/inet.h>

#include <array>
#include <optional>
#include <string>
#include <vector>

namespace cfg = sluice::config;
namespace http = sluice::proxy::http;
namespace proxy = sluice::proxy;

namespace {

// A head parsed from text it owns. Not copyable: the head's views point into `raw`.
struct parsed {
    parsed(std::string text, bool request) : raw(std::move(text)) {
        const auto st =
            request ? http::parse_request_head(raw, head) : http::parse_response_head(raw, head);
        INFO(raw);
        REQUIRE(st == http::parse_status::ok);
    }
    parsed(const parsed&) = delete;
    parsed& operator=(const parsed&) = delete;

    // Every value of the fields named `name` (case-insensitive), in order.
    std::vector<std::string> values(std::string_view name) const {
        std::vector<std::string> out;
        for (const auto& f : head.fields)
            if (http::iequals(f.name, name))
                out.emplace_back(f.value);
        return out;
    }
    bool has(std::string_view name) const { return !values(name).empty(); }

    std::string raw;
    http::message_head head;
};

std::vector<std::string> one(std::string v) {
    return {std::move(v)};
}

proxy::forward_facts default_facts() {
    proxy::forward_facts f;
    f.client_ip = "10.1.2.3";
    f.peer_trusted = false;
    f.tls = false;
    f.request_id_header = "X-Request-ID";
    f.request_id = "rid-1";
    f.default_host = "backend:9001";
    f.path = "/";
    return f;
}

std::string upstream_request(const std::string& request, const proxy::forward_facts& facts) {
    const parsed req(request, true);
    std::string out;
    proxy::build_upstream_request(req.head, facts, out);
    return out;
}

proxy::response_facts default_response_facts(http::framing body) {
    proxy::response_facts f;
    f.request_id_header = "X-Request-ID";
    f.request_id = "rid-1";
    f.body = body;
    return f;
}

std::string client_response(const std::string& response, const proxy::response_facts& facts) {
    const parsed resp(response, false);
    std::string out;
    proxy::build_client_response(resp.head, facts, out);
    return out;
}

std::array<std::uint8_t, 16> v4(const char* text) {
    std::array<std::uint8_t, 16> b{};
    REQUIRE(::inet_pton(AF_INET, text, b.data()) == 1);
    return b;
}

std::array<std::uint8_t, 16> v6(const char* text) {
    std::array<std::uint8_t, 16> b{};
    REQUIRE(::inet_pton(AF_INET6, text, b.data()) == 1);
    return b;
}

cfg::cidr net(const char* text) {
    const auto c = cfg::parse_cidr(text);
    REQUIRE(c.has_value());
    return *c;
}

} // namespace

// ---------------------------------------------------------------------------------------------
// build_upstream_request

TEST_CASE("the upstream request keeps the client's fields and adds X-Forwarded-* and the ID",
          "[proxy][headers]") {
    auto facts = default_facts();
    facts.path = "/p?q=1";
    const std::string out = upstream_request(
        "GET /p?q=1 HTTP/1.1\r\nHost: example.com\r\nUser-Agent: t\r\nAccept: */*\r\n\r\n", facts);
    CHECK(out == "GET /p?q=1 HTTP/1.1\r\n"
                 "Host: example.com\r\n"
                 "User-Agent: t\r\n"
                 "Accept: */*\r\n"
                 "X-Forwarded-For: 10.1.2.3\r\n"
                 "X-Forwarded-Proto: http\r\n"
                 "X-Forwarded-Host: example.com\r\n"
                 "X-Request-ID: rid-1\r\n"
                 "\r\n");
}

TEST_CASE("the upstream request line uses facts.path and HTTP/1.1", "[proxy][headers]") {
    auto facts = default_facts();
    facts.path = "/a/b?c";
    const parsed out(
        upstream_request("DELETE http://example.com/a/b?c HTTP/1.0\r\nHost: example.com\r\n\r\n",
                         facts),
        true);
    CHECK(out.head.method == "DELETE");
    CHECK(out.head.target == "/a/b?c");
    CHECK(out.head.version_minor == 1);
}

TEST_CASE("hop-by-hop fields are not forwarded upstream", "[proxy][headers]") {
    const auto facts = default_facts();
    const parsed out(upstream_request("GET / HTTP/1.1\r\n"
                                      "Host: example.com\r\n"
                                      "Connection: keep-alive, X-Secret, x-other\r\n"
                                      "Keep-Alive: timeout=5\r\n"
                                      "Proxy-Connection: keep-alive\r\n"
                                      "TE: trailers\r\n"
                                      "Trailer: X-Checksum\r\n"
                                      "Upgrade: websocket\r\n"
                                      "X-Secret: s\r\n"
                                      "X-Other: o\r\n"
                                      "X-Kept: k\r\n"
                                      "\r\n",
                                      facts),
                     true);
    for (const char* name : {"Connection", "Keep-Alive", "Proxy-Connection", "TE", "Trailer",
                             "Upgrade", "X-Secret", "X-Other", "Transfer-Encoding"}) {
        CAPTURE(name);
        CHECK_FALSE(out.has(name));
    }
    CHECK(out.values("X-Kept") == one("k"));
    CHECK(out.values("Host") == one("example.com"));
}

TEST_CASE("a field listed in Connection is dropped whatever its case", "[proxy][headers]") {
    const auto facts = default_facts();
    const parsed out(upstream_request("GET / HTTP/1.1\r\nHost: h\r\nConnection: X-HOP\r\n"
                                      "x-hop: 1\r\nX-Hopper: 2\r\n\r\n",
                                      facts),
                     true);
    CHECK_FALSE(out.has("X-Hop"));
    CHECK(out.values("X-Hopper") == one("2"));
}

TEST_CASE("an HTTP/1.0 client's keep-alive is not forwarded", "[proxy][headers]") {
    const auto facts = default_facts();
    const parsed out(
        upstream_request(
            "GET / HTTP/1.0\r\nHost: h\r\nConnection: keep-alive\r\nKeep-Alive: 5\r\n\r\n", facts),
        true);
    CHECK(out.head.version_minor == 1);
    CHECK_FALSE(out.has("Connection"));
    CHECK_FALSE(out.has("Keep-Alive"));
}

TEST_CASE("an Upgrade request is forwarded with Upgrade and Connection: upgrade",
          "[proxy][headers]") {
    auto facts = default_facts();
    facts.upgrade = true;
    facts.path = "/ws";
    const parsed out(upstream_request("GET /ws HTTP/1.1\r\n"
                                      "Host: example.com\r\n"
                                      "Connection: keep-alive, Upgrade\r\n"
                                      "Upgrade: websocket\r\n"
                                      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                                      "Sec-WebSocket-Version: 13\r\n"
                                      "\r\n",
                                      facts),
                     true);
    CHECK(out.values("Connection") == one("upgrade"));
    CHECK(out.values("Upgrade") == one("websocket"));
    CHECK(out.values("Sec-WebSocket-Key") == one("dGhlIHNhbXBsZSBub25jZQ=="));
    CHECK(out.values("Sec-WebSocket-Version") == one("13"));
    CHECK(out.head.connection_upgrade);
    CHECK_FALSE(out.head.connection_keep_alive);
    CHECK_FALSE(out.head.connection_lists_fields);
}

TEST_CASE("without facts.upgrade an Upgrade request loses Upgrade and Connection",
          "[proxy][headers]") {
    const auto facts = default_facts();
    const parsed out(upstream_request("GET / HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\n"
                                      "Upgrade: h2c\r\n\r\n",
                                      facts),
                     true);
    CHECK_FALSE(out.has("Upgrade"));
    CHECK_FALSE(out.has("Connection"));
}

TEST_CASE("X-Forwarded-* from an untrusted peer are replaced", "[proxy][headers]") {
    auto facts = default_facts();
    const std::string request = "GET / HTTP/1.1\r\n"
                                "Host: example.com\r\n"
                                "X-Forwarded-For: 1.1.1.1, 2.2.2.2\r\n"
                                "x-forwarded-for: 3.3.3.3\r\n"
                                "X-Forwarded-Proto: https\r\n"
                                "X-Forwarded-Host: evil.example\r\n"
                                "\r\n";
    SECTION("plain HTTP") {
        const parsed out(upstream_request(request, facts), true);
        CHECK(out.values("X-Forwarded-For") == one("10.1.2.3"));
        CHECK(out.values("X-Forwarded-Proto") == one("http"));
        CHECK(out.values("X-Forwarded-Host") == one("example.com"));
    }
    SECTION("HTTPS") {
        facts.tls = true;
        const parsed out(upstream_request(request, facts), true);
        CHECK(out.values("X-Forwarded-For") == one("10.1.2.3"));
        CHECK(out.values("X-Forwarded-Proto") == one("https"));
        CHECK(out.values("X-Forwarded-Host") == one("example.com"));
    }
}

TEST_CASE("X-Forwarded-* from a trusted peer are kept and appended to", "[proxy][headers]") {
    auto facts = default_facts();
    facts.peer_trusted = true;
    SECTION("several X-Forwarded-For fields are joined in order") {
        const parsed out(upstream_request("GET / HTTP/1.1\r\n"
                                          "Host: example.com\r\n"
                                          "X-Forwarded-For: 1.1.1.1, 2.2.2.2\r\n"
                                          "Accept: */*\r\n"
                                          "x-forwarded-for: 3.3.3.3\r\n"
                                          "X-Forwarded-Proto: https\r\n"
                                          "X-Forwarded-Host: public.example\r\n"
                                          "\r\n",
                                          facts),
                         true);
        CHECK(out.values("X-Forwarded-For") == one("1.1.1.1, 2.2.2.2, 3.3.3.3, 10.1.2.3"));
        CHECK(out.values("X-Forwarded-Proto") == one("https"));
        CHECK(out.values("X-Forwarded-Host") == one("public.example"));
        CHECK(out.values("Accept") == one("*/*"));
    }
    SECTION("one X-Forwarded-For field") {
        const parsed out(
            upstream_request("GET / HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: 192.0.2.7\r\n\r\n",
                             facts),
            true);
        CHECK(out.values("X-Forwarded-For") == one("192.0.2.7, 10.1.2.3"));
    }
    SECTION("no incoming values: they are set as for anyone") {
        facts.tls = true;
        const parsed out(
            upstream_request("GET / HTTP/1.1\r\nHost: example.com:8443\r\n\r\n", facts), true);
        CHECK(out.values("X-Forwarded-For") == one("10.1.2.3"));
        CHECK(out.values("X-Forwarded-Proto") == one("https"));
        CHECK(out.values("X-Forwarded-Host") == one("example.com:8443"));
    }
}

TEST_CASE("the request-ID field is replaced by facts.request_id", "[proxy][headers]") {
    auto facts = default_facts();
    SECTION("the default name, sent twice with different cases") {
        const parsed out(upstream_request("GET / HTTP/1.1\r\nHost: h\r\nX-Request-ID: client-id\r\n"
                                          "x-request-id: second\r\n\r\n",
                                          facts),
                         true);
        CHECK(out.values("X-Request-ID") == one("rid-1"));
    }
    SECTION("a configured name") {
        facts.request_id_header = "X-Trace";
        facts.request_id = "3f2504e0-4f89-41d3-9a0c-0305e82c3301";
        const parsed out(upstream_request("GET / HTTP/1.1\r\nHost: h\r\nx-trace: evil\r\n"
                                          "X-Request-ID: other\r\n\r\n",
                                          facts),
                         true);
        CHECK(out.values("X-Trace") == one("3f2504e0-4f89-41d3-9a0c-0305e82c3301"));
        // A field that is not the configured one passes through.
        CHECK(out.values("X-Request-ID") == one("other"));
    }
}

TEST_CASE("Content-Length is re-emitted once as a plain number", "[proxy][headers]") {
    const auto facts = default_facts();
    SECTION("one field") {
        const parsed out(
            upstream_request("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 12\r\n\r\n", facts),
            true);
        CHECK(out.values("Content-Length") == one("12"));
        CHECK(out.head.body == http::framing::content_length);
        CHECK(out.head.content_length == 12);
    }
    SECTION("identical duplicates and lists") {
        const parsed out(upstream_request("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 12, 12\r\n"
                                          "Content-Length: 012\r\n\r\n",
                                          facts),
                         true);
        CHECK(out.values("Content-Length") == one("12"));
    }
    SECTION("an explicit zero") {
        const parsed out(
            upstream_request("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n", facts),
            true);
        CHECK(out.values("Content-Length") == one("0"));
    }
    SECTION("none when the client sent none") {
        const parsed out(upstream_request("GET / HTTP/1.1\r\nHost: h\r\n\r\n", facts), true);
        CHECK_FALSE(out.has("Content-Length"));
        CHECK_FALSE(out.has("Transfer-Encoding"));
    }
}

TEST_CASE("a chunked request keeps its Transfer-Encoding", "[proxy][headers]") {
    const auto facts = default_facts();
    SECTION("chunked") {
        const parsed out(
            upstream_request("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n",
                             facts),
            true);
        CHECK(out.values("Transfer-Encoding") == one("chunked"));
        CHECK_FALSE(out.has("Content-Length"));
        CHECK(out.head.body == http::framing::chunked);
    }
    SECTION("gzip, chunked") {
        const parsed out(
            upstream_request(
                "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", facts),
            true);
        CHECK(out.values("Transfer-Encoding") == one("gzip, chunked"));
    }
}

TEST_CASE("Expect is removed only when the proxy answered it", "[proxy][headers]") {
    auto facts = default_facts();
    const std::string request =
        "POST / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n";
    SECTION("strip_expect") {
        facts.strip_expect = true;
        const parsed out(upstream_request(request, facts), true);
        CHECK_FALSE(out.has("Expect"));
        CHECK(out.values("Content-Length") == one("3"));
    }
    SECTION("kept") {
        const parsed out(upstream_request(request, facts), true);
        CHECK(out.values("Expect") == one("100-continue"));
    }
}

TEST_CASE("a request without Host gets default_host", "[proxy][headers]") {
    const auto facts = default_facts();
    const parsed out(upstream_request("GET / HTTP/1.0\r\nAccept: */*\r\n\r\n", facts), true);
    CHECK(out.values("Host") == one("backend:9001"));
    CHECK(out.values("X-Forwarded-For") == one("10.1.2.3"));
    CHECK(out.values("X-Request-ID") == one("rid-1"));
}

TEST_CASE("several Host fields are sent as one", "[proxy][headers]") {
    const auto facts = default_facts();
    const parsed out(
        upstream_request("GET / HTTP/1.1\r\nHost: a.example\r\nhost: b.example\r\n\r\n", facts),
        true);
    CHECK(out.values("Host") == one("a.example"));
    CHECK(out.values("X-Forwarded-Host") == one("a.example"));
}

TEST_CASE("build_upstream_request appends to the output", "[proxy][headers]") {
    const auto facts = default_facts();
    const parsed req("GET / HTTP/1.1\r\nHost: h\r\n\r\n", true);
    std::string out = "PREVIOUS";
    proxy::build_upstream_request(req.head, facts, out);
    CHECK(out.rfind("PREVIOUSGET / HTTP/1.1\r\n", 0) == 0);
}

TEST_CASE("forwarded fields go out byte for byte as received, in order", "[proxy][headers]") {
    const auto facts = default_facts();
    // Kept lines around dropped ones (hop-by-hop, the request ID, framing),
    // with their own spacing and case.
    const auto out = upstream_request("POST / HTTP/1.1\r\nhost:h\r\nX-A:1\r\nTE: trailers\r\n"
                                      "x-b:   two  words \t\r\nX-Request-ID: old\r\n"
                                      "Content-Length: 2\r\nX-C: 3\r\n\r\n",
                                      facts);
    CHECK(out.find("\r\nhost:h\r\nX-A:1\r\nx-b:   two  words \t\r\nX-C: 3\r\n") !=
          std::string::npos);
    CHECK(out.find("TE:") == std::string::npos);
    CHECK(out.find("old") == std::string::npos);
    CHECK(out.find("Content-Length: 2\r\n") != std::string::npos);
}

TEST_CASE("fields of a head built by hand are written from name and value", "[proxy][headers]") {
    // A field the parser did not make has no line to copy, and its name is
    // recognised from the text when it was given no id.
    http::message_head head;
    head.method = "GET";
    head.fields.push_back({"Host", "h", http::field_name::host});
    head.fields.push_back({"X-A", "1"});
    head.fields.push_back({"connection", "close"});
    head.fields.push_back({"Content-Length", "7"});
    head.fields.push_back({"X-B", "2"});
    head.host = "h";
    auto facts = default_facts();
    std::string out;
    proxy::build_upstream_request(head, facts, out);
    CHECK(out.rfind("GET / HTTP/1.1\r\nHost: h\r\nX-A: 1\r\nX-B: 2\r\n", 0) == 0);
    CHECK(out.find("close") == std::string::npos);
    // The framing field is the head's own (no body: an explicit zero kept).
    CHECK(out.find("Content-Length: 7") == std::string::npos);
    CHECK(out.find("Content-Length: 0\r\n") != std::string::npos);
}

// ---------------------------------------------------------------------------------------------
// build_client_response

TEST_CASE("the client response drops hop-by-hop fields and replaces the request ID",
          "[proxy][headers]") {
    const auto facts = default_response_facts(http::framing::content_length);
    const std::string out = client_response("HTTP/1.1 200 OK\r\n"
                                            "Content-Type: text/plain\r\n"
                                            "Content-Length: 5\r\n"
                                            "Connection: keep-alive, X-Hop\r\n"
                                            "Keep-Alive: timeout=5\r\n"
                                            "Proxy-Connection: keep-alive\r\n"
                                            "Trailer: X-Sum\r\n"
                                            "X-Hop: 1\r\n"
                                            "X-Request-ID: upstream-id\r\n"
                                            "Server: origin\r\n"
                                            "\r\n",
                                            facts);
    CHECK(out == "HTTP/1.1 200 OK\r\n"
                 "Content-Type: text/plain\r\n"
                 "Server: origin\r\n"
                 "Content-Length: 5\r\n"
                 "X-Request-ID: rid-1\r\n"
                 "\r\n");
}

TEST_CASE("the client response keeps the upstream's field lines as received", "[proxy][headers]") {
    const auto facts = default_response_facts(http::framing::content_length);
    const std::string out = client_response("HTTP/1.1 200 OK\r\n"
                                            "content-type:text/plain\r\n"
                                            "Content-Length: 5\r\n"
                                            "X-Pad:   a  b\t\r\n"
                                            "Connection: close\r\n"
                                            "Set-Cookie: a=1\r\n"
                                            "Set-Cookie: b=2\r\n"
                                            "\r\n",
                                            facts);
    CHECK(out == "HTTP/1.1 200 OK\r\n"
                 "content-type:text/plain\r\n"
                 "X-Pad:   a  b\t\r\n"
                 "Set-Cookie: a=1\r\n"
                 "Set-Cookie: b=2\r\n"
                 "Content-Length: 5\r\n"
                 "X-Request-ID: rid-1\r\n"
                 "\r\n");
}

TEST_CASE("the client response is HTTP/1.1 whatever the upstream spoke", "[proxy][headers]") {
    const auto facts = default_response_facts(http::framing::until_close);
    const parsed out(client_response("HTTP/1.0 200 OK\r\nServer: old\r\n\r\n", facts), false);
    CHECK(out.head.version_minor == 1);
    CHECK(out.head.status == 200);
    CHECK(out.head.reason == "OK");
}

TEST_CASE("Connection in the client response follows keep_alive and the client's version",
          "[proxy][headers]") {
    auto facts = default_response_facts(http::framing::content_length);
    const std::string response =
        "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\n";
    SECTION("HTTP/1.1, kept open: no Connection field") {
        const parsed out(client_response(response, facts), false);
        CHECK_FALSE(out.has("Connection"));
        CHECK(out.head.keep_alive());
    }
    SECTION("HTTP/1.1, closing") {
        facts.keep_alive = false;
        const parsed out(client_response(response, facts), false);
        CHECK(out.values("Connection") == one("close"));
        CHECK_FALSE(out.head.keep_alive());
    }
    SECTION("HTTP/1.0, kept open") {
        facts.client_http10 = true;
        const parsed out(client_response(response, facts), false);
        CHECK(out.values("Connection") == one("keep-alive"));
    }
    SECTION("HTTP/1.0, closing") {
        facts.client_http10 = true;
        facts.keep_alive = false;
        const parsed out(client_response(response, facts), false);
        CHECK(out.values("Connection") == one("close"));
    }
    SECTION("upstream Connection: close is not passed on") {
        const parsed out(
            client_response("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n",
                            facts),
            false);
        CHECK_FALSE(out.has("Connection"));
    }
}

TEST_CASE("the client response framing", "[proxy][headers]") {
    SECTION("chunked is relayed with its Transfer-Encoding") {
        const auto facts = default_response_facts(http::framing::chunked);
        const parsed out(
            client_response("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", facts), false);
        CHECK(out.values("Transfer-Encoding") == one("chunked"));
        CHECK_FALSE(out.has("Content-Length"));
    }
    SECTION("dechunk drops Transfer-Encoding") {
        auto facts = default_response_facts(http::framing::chunked);
        facts.dechunk = true;
        facts.client_http10 = true;
        facts.keep_alive = false;
        const parsed out(
            client_response("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", facts), false);
        CHECK_FALSE(out.has("Transfer-Encoding"));
        CHECK_FALSE(out.has("Content-Length"));
        CHECK(out.values("Connection") == one("close"));
    }
    SECTION("a 304 keeps its Content-Length") {
        const auto facts = default_response_facts(http::framing::none);
        const parsed out(
            client_response(
                "HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\nContent-Length: 100\r\n\r\n", facts),
            false);
        CHECK(out.values("Content-Length") == one("100"));
        CHECK(out.values("ETag") == one("\"x\""));
    }
    SECTION("until close has no length") {
        auto facts = default_response_facts(http::framing::until_close);
        facts.keep_alive = false;
        const parsed out(client_response("HTTP/1.1 200 OK\r\nServer: s\r\n\r\n", facts), false);
        CHECK_FALSE(out.has("Content-Length"));
        CHECK_FALSE(out.has("Transfer-Encoding"));
        CHECK(out.values("Connection") == one("close"));
    }
}

TEST_CASE("a 101 to an Upgrade request keeps Upgrade and Connection: upgrade", "[proxy][headers]") {
    auto facts = default_response_facts(http::framing::none);
    facts.upgrade = true;
    const parsed out(client_response("HTTP/1.1 101 Switching Protocols\r\n"
                                     "Connection: Upgrade\r\n"
                                     "Upgrade: websocket\r\n"
                                     "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
                                     "\r\n",
                                     facts),
                     false);
    CHECK(out.head.status == 101);
    CHECK(out.values("Connection") == one("upgrade"));
    CHECK(out.values("Upgrade") == one("websocket"));
    CHECK(out.values("Sec-WebSocket-Accept") == one("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="));
    CHECK(out.values("X-Request-ID") == one("rid-1"));
}

// ---------------------------------------------------------------------------------------------
// build_local_response

TEST_CASE("a local response has the status, length, type, request ID and body",
          "[proxy][headers]") {
    proxy::local_response r;
    r.status = 404;
    r.body = "no route (request rid-9)\n";
    r.request_id_header = "X-Request-ID";
    r.request_id = "rid-9";
    std::string out;
    proxy::build_local_response(r, out);
    const parsed head(out, false);
    CHECK(head.head.status == 404);
    CHECK(head.head.reason == "Not Found");
    CHECK(head.values("Content-Length") == one(std::to_string(r.body.size())));
    CHECK(head.values("Content-Type") == one("text/plain; charset=utf-8"));
    CHECK(head.values("X-Request-ID") == one("rid-9"));
    CHECK_FALSE(head.has("Location"));
    CHECK_FALSE(head.has("Connection"));
    CHECK(out.substr(head.head.head_size) == r.body);
}

TEST_CASE("a local response to HEAD has no body but the body's length", "[proxy][headers]") {
    proxy::local_response r;
    r.status = 200;
    r.body = "pong\n";
    r.request_id_header = "X-Request-ID";
    r.request_id = "rid";
    r.head_request = true;
    std::string out;
    proxy::build_local_response(r, out);
    const parsed head(out, false);
    CHECK(head.values("Content-Length") == one("5"));
    CHECK(head.head.head_size == out.size());
}

TEST_CASE("a local redirect carries Location and an empty body", "[proxy][headers]") {
    proxy::local_response r;
    r.status = 308;
    r.location = "https://example.com/a?b";
    r.request_id_header = "X-Request-ID";
    r.request_id = "rid";
    r.keep_alive = false;
    std::string out;
    proxy::build_local_response(r, out);
    const parsed head(out, false);
    CHECK(head.head.status == 308);
    CHECK(head.head.reason == "Permanent Redirect");
    CHECK(head.values("Location") == one("https://example.com/a?b"));
    CHECK(head.values("Content-Length") == one("0"));
    CHECK(head.values("Connection") == one("close"));
    CHECK(head.head.head_size == out.size());
}

TEST_CASE("a local response uses the content type given", "[proxy][headers]") {
    proxy::local_response r;
    r.status = 503;
    r.body = "{}";
    r.content_type = "application/json";
    r.request_id_header = "X-Trace";
    r.request_id = "t";
    std::string out;
    proxy::build_local_response(r, out);
    const parsed head(out, false);
    CHECK(head.head.reason == "Service Unavailable");
    CHECK(head.values("Content-Type") == one("application/json"));
    CHECK(head.values("X-Trace") == one("t"));
    CHECK(out.substr(head.head.head_size) == "{}");
}

// ---------------------------------------------------------------------------------------------
// redirect_location

TEST_CASE("redirect_location builds scheme://host[:port]/path?query", "[proxy][headers]") {
    struct row {
        const char* scheme;
        int port;
        const char* host;
        const char* target;
        const char* expected;
    };
    const auto r = GENERATE(values<row>({
        {"https", 443, "example.com", "/a?b=1", "https://example.com/a?b=1"},
        {"https", 443, "example.com:8080", "/a?b=1", "https://example.com/a?b=1"},
        {"https", 8443, "example.com:8080", "/x", "https://example.com:8443/x"},
        {"http", 80, "example.com:8443", "/", "http://example.com/"},
        {"http", 8080, "example.com", "/p", "http://example.com:8080/p"},
        {"https", 80, "example.com", "/p", "https://example.com:80/p"},
        {"http", 443, "example.com", "/p", "http://example.com:443/p"},
        {"https", 443, "[::1]:8080", "/p?q", "https://[::1]/p?q"},
        {"https", 8443, "[2001:db8::1]", "/", "https://[2001:db8::1]:8443/"},
        {"https", 443, "example.com", "http://other.example:8080/p?q", "https://example.com/p?q"},
        {"https", 443, "example.com", "http://other.example", "https://example.com/"},
        {"https", 443, "example.com", "http://other.example?q", "https://example.com/?q"},
    }));
    CAPTURE(r.scheme, r.port, r.host, r.target);
    CHECK(proxy::redirect_location(r.scheme, r.port, r.host, r.target) == r.expected);
}

// ---------------------------------------------------------------------------------------------
// cidr_contains

TEST_CASE("cidr_contains for IPv4 networks", "[proxy][headers][cidr]") {
    SECTION("/8") {
        const auto n = net("10.0.0.0/8");
        CHECK(proxy::cidr_contains(n, v4("10.0.0.0"), false));
        CHECK(proxy::cidr_contains(n, v4("10.1.2.3"), false));
        CHECK(proxy::cidr_contains(n, v4("10.255.255.255"), false));
        CHECK_FALSE(proxy::cidr_contains(n, v4("11.0.0.1"), false));
        CHECK_FALSE(proxy::cidr_contains(n, v4("9.255.255.255"), false));
    }
    SECTION("/32") {
        const auto n = net("192.168.1.7/32");
        CHECK(proxy::cidr_contains(n, v4("192.168.1.7"), false));
        CHECK_FALSE(proxy::cidr_contains(n, v4("192.168.1.6"), false));
        CHECK_FALSE(proxy::cidr_contains(n, v4("192.168.1.8"), false));
    }
    SECTION("a bare address is a /32") {
        const auto n = net("127.0.0.1");
        CHECK(proxy::cidr_contains(n, v4("127.0.0.1"), false));
        CHECK_FALSE(proxy::cidr_contains(n, v4("127.0.0.2"), false));
    }
    SECTION("/0") {
        const auto n = net("0.0.0.0/0");
        CHECK(proxy::cidr_contains(n, v4("0.0.0.0"), false));
        CHECK(proxy::cidr_contains(n, v4("203.0.113.9"), false));
        CHECK(proxy::cidr_contains(n, v4("255.255.255.255"), false));
    }
    SECTION("a prefix off a byte boundary") {
        const auto n = net("172.16.0.0/12");
        CHECK(proxy::cidr_contains(n, v4("172.16.0.1"), false));
        CHECK(proxy::cidr_contains(n, v4("172.31.255.255"), false));
        CHECK_FALSE(proxy::cidr_contains(n, v4("172.32.0.0"), false));
        CHECK_FALSE(proxy::cidr_contains(n, v4("172.15.255.255"), false));
    }
    SECTION("host bits set in the network") {
        const auto n = net("192.168.1.77/24");
        CHECK(proxy::cidr_contains(n, v4("192.168.1.200"), false));
        CHECK_FALSE(proxy::cidr_contains(n, v4("192.168.2.1"), false));
    }
}

TEST_CASE("cidr_contains for IPv6 networks", "[proxy][headers][cidr]") {
    SECTION("/64") {
        const auto n = net("2001:db8:1:2::/64");
        CHECK(proxy::cidr_contains(n, v6("2001:db8:1:2::1"), true));
        CHECK(proxy::cidr_contains(n, v6("2001:db8:1:2:ffff:ffff:ffff:ffff"), true));
        CHECK_FALSE(proxy::cidr_contains(n, v6("2001:db8:1:3::1"), true));
        CHECK_FALSE(proxy::cidr_contains(n, v6("2001:db8:1:1:ffff:ffff:ffff:ffff"), true));
    }
    SECTION("/128") {
        const auto n = net("::1/128");
        CHECK(proxy::cidr_contains(n, v6("::1"), true));
        CHECK_FALSE(proxy::cidr_contains(n, v6("::2"), true));
    }
    SECTION("/0") {
        const auto n = net("::/0");
        CHECK(proxy::cidr_contains(n, v6("::1"), true));
        CHECK(proxy::cidr_contains(n, v6("fe80::1"), true));
    }
    SECTION("/10 off a byte boundary") {
        const auto n = net("fe80::/10");
        CHECK(proxy::cidr_contains(n, v6("fe80::1"), true));
        CHECK(proxy::cidr_contains(n, v6("febf::1"), true));
        CHECK_FALSE(proxy::cidr_contains(n, v6("fec0::1"), true));
    }
}

TEST_CASE("cidr_contains never matches across address families", "[proxy][headers][cidr]") {
    CHECK_FALSE(proxy::cidr_contains(net("0.0.0.0/0"), v6("::1"), true));
    CHECK_FALSE(proxy::cidr_contains(net("::/0"), v4("10.0.0.1"), false));
    CHECK_FALSE(proxy::cidr_contains(net("10.0.0.0/8"), v6("a00::1"), true));
    CHECK_FALSE(proxy::cidr_contains(net("a00::/8"), v4("10.0.0.1"), false));
}
