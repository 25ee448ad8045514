// The HTTP/1.1 head parser and chunked scanner (SPEC section 3): valid heads, the flags the proxy
// acts on, every smuggling rule with its exact parse_status, heads arriving in pieces, response
// framing, and chunked bodies fed whole, byte by byte and split anywhere.

#include "proxy/http_parser.hpp"

#include <catch2/catch.hpp>
#include "http_printers.hpp"

#include <cctype>
#include <string>
#include <vector>

namespace http = sluice::proxy::http;
using http::framing;
using http::parse_status;

namespace {

parse_status parse_request(const std::string& text) {
    http::message_head head;
    return http::parse_request_head(text, head);
}

parse_status parse_response(const std::string& text) {
    http::message_head head;
    return http::parse_response_head(text, head);
}

// A request head "GET / HTTP/1.1" with `fields` (each "Name: value", CRLF added) and the
// final empty line.
std::string get_with(const std::vector<std::string>& fields,
                     const std::string& version = "HTTP/1.1") {
    std::string out = "GET / " + version + "\r\nHost: example.com\r\n";
    for (const auto& f : fields)
        out += f + "\r\n";
    out += "\r\n";
    return out;
}

std::string response_with(const std::vector<std::string>& fields,
                          const std::string& status_line = "HTTP/1.1 200 OK") {
    std::string out = status_line + "\r\n";
    for (const auto& f : fields)
        out += f + "\r\n";
    out += "\r\n";
    return out;
}

std::string joined(const std::vector<std::string_view>& pieces) {
    std::string out;
    for (auto p : pieces)
        out.append(p);
    return out;
}

} // namespace

// ---------------------------------------------------------------------------------------------
// Valid request heads

TEST_CASE("a GET head parses into method, target, version and ordered trimmed fields",
          "[proxy][http]") {
    const std::string head = "GET /index.html?x=1&y=2 HTTP/1.1\r\n"
                             "Host: example.com\r\n"
                             "User-Agent:   curl/8.5  \r\n"
                             "Accept:\t*/*\t\r\n"
                             "X-Empty:\r\n"
                             "X-Multi: a b  c\r\n"
                             "\r\n";
    http::message_head h;
    REQUIRE(http::parse_request_head(head, h) == parse_status::ok);
    CHECK(h.method == "GET");
    CHECK(h.target == "/index.html?x=1&y=2");
    CHECK(h.version_minor == 1);
    REQUIRE(h.fields.size() == 5);
    CHECK(h.fields[0].name == "Host");
    CHECK(h.fields[0].value == "example.com");
    CHECK(h.fields[1].name == "User-Agent");
    CHECK(h.fields[1].value == "curl/8.5");
    CHECK(h.fields[2].name == "Accept");
    CHECK(h.fields[2].value == "*/*");
    CHECK(h.fields[3].name == "X-Empty");
    CHECK(h.fields[3].value == "");
    CHECK(h.fields[4].name == "X-Multi");
    CHECK(h.fields[4].value == "a b  c");
    CHECK(h.host == "example.com");
    CHECK(h.body == framing::none);
    CHECK(h.content_length == 0);
    CHECK(h.head_size == head.size());
    CHECK_FALSE(h.connection_close);
    CHECK_FALSE(h.connection_keep_alive);
    CHECK_FALSE(h.connection_upgrade);
    CHECK_FALSE(h.connection_lists_fields);
    CHECK_FALSE(h.expect_continue);
    CHECK(h.upgrade.empty());
    CHECK(h.keep_alive());
}

TEST_CASE("field names keep their case and obs-text is allowed in values", "[proxy][http]") {
    const std::string head = "GET / HTTP/1.1\r\nhOsT: Example.COM\r\nX-Latin: caf\xc3\xa9\r\n\r\n";
    http::message_head h;
    REQUIRE(http::parse_request_head(head, h) == parse_status::ok);
    REQUIRE(h.fields.size() == 2);
    CHECK(h.fields[0].name == "hOsT");
    CHECK(h.host == "Example.COM");
    CHECK(h.fields[1].value == "caf\xc3\xa9");
}

TEST_CASE("a POST head with Content-Length has content_length framing", "[proxy][http]") {
    const std::string head = "POST /api/items HTTP/1.1\r\nHost: h\r\nContent-Length: 11\r\n"
                             "Content-Type: application/json\r\n\r\n";
    const std::string message = head + "{\"a\":12345}";
    http::message_head h;
    REQUIRE(http::parse_request_head(message, h) == parse_status::ok);
    CHECK(h.method == "POST");
    CHECK(h.target == "/api/items");
    CHECK(h.body == framing::content_length);
    CHECK(h.content_length == 11);
    CHECK(h.head_size == head.size()); // the body is not part of the head
}

TEST_CASE("Content-Length: 0 means no body", "[proxy][http]") {
    http::message_head h;
    const std::string head = "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n";
    REQUIRE(http::parse_request_head(head, h) == parse_status::ok);
    CHECK(h.body == framing::none);
    CHECK(h.content_length == 0);
}

TEST_CASE("Content-Length with leading zeros is a decimal number", "[proxy][http]") {
    http::message_head h;
    const std::string head = get_with({"Content-Length: 007"});
    REQUIRE(http::parse_request_head(head, h) == parse_status::ok);
    CHECK(h.body == framing::content_length);
    CHECK(h.content_length == 7);
}

TEST_CASE("a chunked POST has chunked framing and keeps the coding as received", "[proxy][http]") {
    http::message_head h;
    SECTION("chunked") {
        const std::string head = get_with({"Transfer-Encoding: chunked"});
        REQUIRE(http::parse_request_head(head, h) == parse_status::ok);
        CHECK(h.body == framing::chunked);
        CHECK(h.transfer_encoding == "chunked");
    }
    SECTION("case-insensitive") {
        const std::string head = get_with({"Transfer-Encoding: Chunked"});
        REQUIRE(http::parse_request_head(head, h) == parse_status::ok);
        CHECK(h.body == framing::chunked);
    }
    SECTION("gzip then chunked") {
        const std::string head = get_with({"Transfer-Encoding: gzip, chunked"});
        REQUIRE(http::parse_request_head(head, h) == parse_status::ok);
        CHECK(h.body == framing::chunked);
        CHECK(h.transfer_encoding == "gzip, chunked");
    }
}

TEST_CASE("HTTP/1.0 requests parse with version_minor 0", "[proxy][http]") {
    http::message_head h;
    const std::string head = "GET /old HTTP/1.0\r\n\r\n";
    REQUIRE(http::parse_request_head(head, h) == parse_status::ok);
    CHECK(h.version_minor == 0);
    CHECK(h.target == "/old");
    CHECK(h.fields.empty());
    CHECK(h.host.empty());
    CHECK(h.head_size == head.size());
}

TEST_CASE("keep_alive follows the version and the Connection field", "[proxy][http]") {
    struct row {
        const char* version;
        const char* connection; // "" = no Connection field
        bool keep_alive;
    };
    const auto r = GENERATE(values<row>({
        {"HTTP/1.1", "", true},
        {"HTTP/1.1", "close", false},
        {"HTTP/1.1", "Close", false},
        {"HTTP/1.1", "keep-alive", true},
        {"HTTP/1.1", "keep-alive, close", false},
        {"HTTP/1.0", "", false},
        {"HTTP/1.0", "keep-alive", true},
        {"HTTP/1.0", "Keep-Alive", true},
        {"HTTP/1.0", "close", false},
        {"HTTP/1.0", "keep-alive, close", false},
    }));
    CAPTURE(r.version, r.connection);
    std::vector<std::string> fields;
    if (*r.connection != '\0')
        fields.push_back(std::string("Connection: ") + r.connection);
    const std::string head = get_with(fields, r.version);
    http::message_head h;
    REQUIRE(http::parse_request_head(head, h) == parse_status::ok);
    CHECK(h.keep_alive() == r.keep_alive);
}

TEST_CASE("Connection tokens set the matching flags", "[proxy][http]") {
    http::message_head h;
    SECTION("close") {
        const std::string head = get_with({"Connection: close"});
        REQUIRE(http::parse_request_head(head, h) == parse_status::ok);
        CHECK(h.connection_close);
        CHECK_FALSE(h.connection_keep_alive);
        CHECK_FALSE(h.connection_upgrade);
        CHECK_FALSE(h.connection_lists_fields);
    }
    SECTION("keep-alive") {
        const std::string head = get_with({"Connection: keep-alive"});
        REQUIRE(http::parse_request_head(head, h) == parse_status::ok);
        CHECK(h.connection_keep_alive);
        CHECK_FALSE(h.connection_close);
        CHECK_FALSE(h.connection_lists_fields);
    }
    SECTION("upgrade with an Upgrade field") {
        const std::string head = get_with({"Connection: Upgrade", "Upgrade: websocket"});
        REQUIRE(http::parse_request_head(head, h) == parse_status::ok);
        CHECK(h.connection_upgrade);
        CHECK(h.upgrade == "websocket");
        CHECK_FALSE(h.connection_lists_fields);
    }
    SECTION("other names are listed fields") {
        const std::string head = get_with({"Connection: keep-alive, X-Secret"});
        REQUIRE(http::parse_request_head(head, h) == parse_status::ok);
        CHECK(h.connection_keep_alive);
        CHECK(h.connection_lists_fields);
        CHECK_FALSE(h.connection_close);
    }
    SECTION("several Connection fields combine") {
        const std::string head = get_with({"Connection: keep-alive", "Connection: Upgrade , X-A"});
        REQUIRE(http::parse_request_head(head, h) == parse_status::ok);
        CHECK(h.connection_keep_alive);
        CHECK(h.connection_upgrade);
        CHECK(h.connection_lists_fields);
        CHECK_FALSE(h.connection_close);
    }
    SECTION("empty list elements are ignored") {
        const std::string head = get_with({"Connection: , close ,"});
        REQUIRE(http::parse_request_head(head, h) == parse_status::ok);
        CHECK(h.connection_close);
        CHECK_FALSE(h.connection_lists_fields);
    }
}

TEST_CASE("Expect: 100-continue sets expect_continue", "[proxy][http]") {
    http::message_head h;
    SECTION("lowercase") {
        const std::string head = get_with({"Expect: 100-continue"});
        REQUIRE(http::parse_request_head(head, h) == parse_status::ok);
        CHECK(h.expect_continue);
    }
    SECTION("mixed case") {
        const std::string head = get_with({"expect: 100-Continue"});
        REQUIRE(http::parse_request_head(head, h) == parse_status::ok);
        CHECK(h.expect_continue);
    }
    SECTION("another expectation") {
        const std::string head = get_with({"Expect: something-else"});
        REQUIRE(http::parse_request_head(head, h) == parse_status::ok);
        CHECK_FALSE(h.expect_continue);
    }
}

TEST_CASE("host is the first Host field", "[proxy][http]") {
    http::message_head h;
    const std::string head =
        "GET / HTTP/1.1\r\nHost: first.example\r\nHost: second.example\r\n\r\n";
    REQUIRE(http::parse_request_head(head, h) == parse_status::ok);
    CHECK(h.host == "first.example");
}

TEST_CASE("a message_head reused for a second message keeps nothing of the first",
          "[proxy][http]") {
    http::message_head h;
    const std::string first =
        "POST /a HTTP/1.0\r\nHost: one\r\nConnection: close, X-A\r\n"
        "Expect: 100-continue\r\nUpgrade: websocket\r\nContent-Length: 5\r\n\r\n";
    REQUIRE(http::parse_request_head(first, h) == parse_status::ok);
    const std::string second = "GET /b HTTP/1.1\r\nAccept: x\r\n\r\n";
    REQUIRE(http::parse_request_head(second, h) == parse_status::ok);
    CHECK(h.method == "GET");
    CHECK(h.target == "/b");
    CHECK(h.version_minor == 1);
    REQUIRE(h.fields.size() == 1);
    CHECK(h.fields[0].name == "Accept");
    CHECK(h.host.empty());
    CHECK(h.upgrade.empty());
    CHECK_FALSE(h.connection_close);
    CHECK_FALSE(h.connection_lists_fields);
    CHECK_FALSE(h.expect_continue);
    CHECK(h.body == framing::none);
    CHECK(h.content_length == 0);
    CHECK(h.head_size == second.size());
}

// ---------------------------------------------------------------------------------------------
// Smuggling defences (SPEC 3): each answered with its own status

TEST_CASE("Content-Length together with Transfer-Encoding is conflicting framing",
          "[proxy][http][smuggling]") {
    CHECK(parse_request(get_with({"Content-Length: 5", "Transfer-Encoding: chunked"})) ==
          parse_status::conflicting_framing);
    CHECK(parse_request(get_with({"Transfer-Encoding: chunked", "Content-Length: 5"})) ==
          parse_status::conflicting_framing);
    CHECK(parse_request(get_with({"Transfer-Encoding: chunked", "Content-Length: 0"})) ==
          parse_status::conflicting_framing);
}

TEST_CASE("differing Content-Length values are refused", "[proxy][http][smuggling]") {
    SECTION("two fields") {
        CHECK(parse_request(get_with({"Content-Length: 5", "Content-Length: 6"})) ==
              parse_status::bad_content_length);
    }
    SECTION("a list") {
        CHECK(parse_request(get_with({"Content-Length: 5, 6"})) ==
              parse_status::bad_content_length);
    }
    SECTION("a list then a field") {
        CHECK(parse_request(get_with({"Content-Length: 5, 5", "Content-Length: 6"})) ==
              parse_status::bad_content_length);
    }
}

TEST_CASE("identical repeated Content-Length values are one length", "[proxy][http][smuggling]") {
    http::message_head h;
    SECTION("two fields") {
        const std::string head = get_with({"Content-Length: 5", "Content-Length: 5"});
        REQUIRE(http::parse_request_head(head, h) == parse_status::ok);
        CHECK(h.body == framing::content_length);
        CHECK(h.content_length == 5);
    }
    SECTION("a list") {
        const std::string head = get_with({"Content-Length: 5, 5"});
        REQUIRE(http::parse_request_head(head, h) == parse_status::ok);
        CHECK(h.body == framing::content_length);
        CHECK(h.content_length == 5);
    }
}

TEST_CASE("invalid Content-Length values are refused", "[proxy][http][smuggling]") {
    const std::string value =
        GENERATE(as<std::string>{}, "abc", "-1", "+5", "1 2", "", "   ", "12345678901234567890",
                 "99999999999999999999999", "0x10", "5a", "5.0", "1_000");
    CAPTURE(value);
    CHECK(parse_request(get_with({"Content-Length: " + value})) ==
          parse_status::bad_content_length);
}

TEST_CASE("a Content-Length made only of commas is invalid", "[proxy][http][smuggling]") {
    // "," holds no decimal number at all; it must not pass as "no Content-Length".
    CHECK(parse_request(get_with({"Content-Length: ,"})) == parse_status::bad_content_length);
}

TEST_CASE("Transfer-Encoding other than a final chunked is refused", "[proxy][http][smuggling]") {
    const std::string value =
        GENERATE(as<std::string>{}, "gzip", "chunked, gzip", "chunked, chunked", "identity", "",
                 "chunkedx", "xchunked", "chunked;q=1", "gzip, chunked, chunked");
    CAPTURE(value);
    CHECK(parse_request(get_with({"Transfer-Encoding: " + value})) ==
          parse_status::bad_transfer_encoding);
}

TEST_CASE("two Transfer-Encoding fields are refused", "[proxy][http][smuggling]") {
    CHECK(parse_request(get_with({"Transfer-Encoding: gzip", "Transfer-Encoding: chunked"})) ==
          parse_status::bad_transfer_encoding);
    CHECK(parse_request(get_with({"Transfer-Encoding: chunked", "Transfer-Encoding: chunked"})) ==
          parse_status::bad_transfer_encoding);
}

TEST_CASE("Transfer-Encoding on HTTP/1.0 is refused", "[proxy][http][smuggling]") {
    CHECK(parse_request(get_with({"Transfer-Encoding: chunked"}, "HTTP/1.0")) ==
          parse_status::bad_transfer_encoding);
}

TEST_CASE("whitespace before a field colon is refused", "[proxy][http][smuggling]") {
    CHECK(parse_request(get_with({"Content-Length : 5"})) == parse_status::space_before_colon);
    CHECK(parse_request(get_with({"Transfer-Encoding\t: chunked"})) ==
          parse_status::space_before_colon);
    CHECK(parse_request(get_with({"X-A  : b"})) == parse_status::space_before_colon);
}

TEST_CASE("obs-fold is refused", "[proxy][http][smuggling]") {
    CHECK(parse_request(get_with({"X-A: b", " continued"})) == parse_status::obs_fold);
    CHECK(parse_request(get_with({"X-A: b", "\tcontinued"})) == parse_status::obs_fold);
    // A field line starting with whitespace right after the request line.
    CHECK(parse_request("GET / HTTP/1.1\r\n Host: h\r\n\r\n") == parse_status::obs_fold);
}

TEST_CASE("bare LF line endings are refused", "[proxy][http][smuggling]") {
    SECTION("a field line ending in LF") {
        CHECK(parse_request("GET / HTTP/1.1\r\nHost: h\nX-A: b\r\n\r\n") ==
              parse_status::bad_field);
    }
    SECTION("a bare LF inside a value") {
        CHECK(parse_request("GET / HTTP/1.1\r\nX-A: b\nc: d\r\nHost: h\r\n\r\n") ==
              parse_status::bad_field);
    }
    SECTION("the request line ending in LF") {
        CHECK(parse_request("GET / HTTP/1.1\nHost: h\r\n\r\n") == parse_status::bad_start_line);
    }
}

TEST_CASE("a head using bare LF only is refused, not awaited", "[proxy][http][smuggling]") {
    // Only CRLF ends a line, so such a head would otherwise wait for a CRLFCRLF that never
    // comes: the client gets a 408/431 instead of a 400.
    SECTION("every line") {
        CHECK(parse_request("GET / HTTP/1.1\nHost: h\n\n") == parse_status::bad_start_line);
    }
    SECTION("every field line") {
        CHECK(parse_request("GET / HTTP/1.1\r\nHost: h\n\n") == parse_status::bad_field);
    }
}

TEST_CASE("bare CR is refused", "[proxy][http][smuggling]") {
    CHECK(parse_request("GET / HTTP/1.1\r\nHost: h\r\nX-A: b\rc\r\n\r\n") ==
          parse_status::bad_field);
    CHECK(parse_request("GET / HTTP/1.1\r\nHost: h\rX-A: b\r\n\r\n") == parse_status::bad_field);
    CHECK(parse_request("GET /\r HTTP/1.1\r\nHost: h\r\n\r\n") == parse_status::bad_start_line);
}

TEST_CASE("control characters in field values are refused", "[proxy][http][smuggling]") {
    const char ctl = GENERATE(char(0x00), char(0x01), char(0x08), char(0x0b), char(0x0c),
                              char(0x1b), char(0x1f), char(0x7f));
    CAPTURE(static_cast<int>(ctl));
    std::string value = "a";
    value.push_back(ctl);
    value += "b";
    CHECK(parse_request(get_with({"X-A: " + value})) == parse_status::bad_field);
}

TEST_CASE("a control character anywhere in a long value is refused", "[proxy][http][smuggling]") {
    // Values are scanned sixteen bytes at a time: put the byte in every
    // position of the blocks and of the tail after them.
    const char ctl =
        GENERATE(char(0x00), char(0x01), char(0x0a), char(0x0d), char(0x1f), char(0x7f));
    for (std::size_t at = 0; at < 45; ++at) {
        std::string value(45, 'v');
        value[at] = ctl;
        CAPTURE(static_cast<int>(ctl), at);
        CHECK(parse_request(get_with({"X-A: " + value})) == parse_status::bad_field);
    }
}

TEST_CASE("tabs, spaces and obs-text are allowed throughout a long value", "[proxy][http]") {
    std::string value;
    for (int i = 0; i < 70; ++i)
        value.push_back(i % 5 == 0   ? '\t'
                        : i % 5 == 1 ? ' '
                        : i % 5 == 2 ? '\x80'
                        : i % 5 == 3 ? '\xff'
                                     : '~');
    value = "<" + value + ">";
    http::message_head h;
    const std::string head = get_with({"X-A: " + value});
    REQUIRE(http::parse_request_head(head, h) == parse_status::ok);
    CHECK(h.fields[1].value == value);
}

TEST_CASE("a horizontal tab inside a value is allowed", "[proxy][http]") {
    http::message_head h;
    const std::string head = get_with({"X-A: a\tb"});
    REQUIRE(http::parse_request_head(head, h) == parse_status::ok);
    CHECK(h.fields[1].value == "a\tb");
}

TEST_CASE("malformed field lines are bad_field", "[proxy][http][smuggling]") {
    const std::string line = GENERATE(as<std::string>{}, "NoColon", ": empty-name", "Bad(Name): v",
                                      "Bad/Name: v", "Bad\"Name: v", "X\x01Y: v", "\xc3\xa9: v");
    CAPTURE(line);
    CHECK(parse_request(get_with({line})) == parse_status::bad_field);
}

TEST_CASE("a malformed request line is bad_start_line", "[proxy][http][smuggling]") {
    const std::string line =
        GENERATE(as<std::string>{}, "G(T / HTTP/1.1", "G@T / HTTP/1.1", "GE\"T / HTTP/1.1",
                 "G:T / HTTP/1.1", " / HTTP/1.1", " GET / HTTP/1.1", "GET  / HTTP/1.1", "GET /",
                 "GET", "GET /a\x01 HTTP/1.1", "GET /\x7f HTTP/1.1", "GET /caf\xc3\xa9 HTTP/1.1");
    CAPTURE(line);
    CHECK(parse_request(line + "\r\nHost: h\r\n\r\n") == parse_status::bad_start_line);
}

TEST_CASE("versions other than HTTP/1.0 and HTTP/1.1 are bad_version", "[proxy][http][smuggling]") {
    const std::string version =
        GENERATE(as<std::string>{}, "HTTP/2.0", "HTTP/1.10", "HTTP/1.2", "HTTP/0.9", "HTTP/1",
                 "http/1.1", "HTTP/1.1 ", "HTTPS/1.1", "HTTP/11");
    CAPTURE(version);
    CHECK(parse_request("GET / " + version + "\r\nHost: h\r\n\r\n") == parse_status::bad_version);
}

TEST_CASE("at most 128 fields are accepted", "[proxy][http][smuggling]") {
    auto head_with = [](int n) {
        std::string out = "GET / HTTP/1.1\r\n";
        for (int i = 0; i < n; ++i)
            out += "X-F" + std::to_string(i) + ": v\r\n";
        return out + "\r\n";
    };
    const std::string ok = head_with(128);
    http::message_head h;
    REQUIRE(http::parse_request_head(ok, h) == parse_status::ok);
    CHECK(h.fields.size() == 128);
    CHECK(parse_request(head_with(129)) == parse_status::too_many_fields);
    CHECK(parse_request(head_with(500)) == parse_status::too_many_fields);
}

// ---------------------------------------------------------------------------------------------
// Heads arriving in pieces

TEST_CASE("a head is incomplete until its last byte arrives", "[proxy][http]") {
    const std::string head = GENERATE(
        as<std::string>{}, "GET /a?b=c HTTP/1.1\r\nHost: example.com\r\nAccept: */*\r\n\r\n",
        "POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\n", "GET / HTTP/1.0\r\n\r\n");
    CAPTURE(head);
    for (std::size_t k = 0; k < head.size(); ++k) {
        CAPTURE(k);
        http::message_head h;
        REQUIRE(http::parse_request_head(std::string_view(head).substr(0, k), h) ==
                parse_status::incomplete);
    }
    http::message_head h;
    CHECK(http::parse_request_head(head, h) == parse_status::ok);
    CHECK(h.head_size == head.size());
}

TEST_CASE("a response head is incomplete until its last byte arrives", "[proxy][http]") {
    const std::string head = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nServer: s\r\n\r\n";
    for (std::size_t k = 0; k < head.size(); ++k) {
        CAPTURE(k);
        http::message_head h;
        REQUIRE(http::parse_response_head(std::string_view(head).substr(0, k), h) ==
                parse_status::incomplete);
    }
    http::message_head h;
    CHECK(http::parse_response_head(head + "ok", h) == parse_status::ok);
    CHECK(h.head_size == head.size());
}

TEST_CASE("find_head_end finds a terminator split across reads", "[proxy][http]") {
    const std::string head = "GET / HTTP/1.1\r\nHost: a\r\n\r\n";
    const std::string data = head + "BODY\r\n\r\nMORE";
    // Every way the head can arrive in two reads: the first read of k bytes has no end yet,
    // and the second search starts where the first one stopped.
    for (std::size_t k = 0; k < head.size(); ++k) {
        CAPTURE(k);
        REQUIRE(http::find_head_end(std::string_view(data).substr(0, k), 0) == 0);
        CHECK(http::find_head_end(data, k) == head.size());
        CHECK(http::find_head_end(std::string_view(head), k) == head.size());
    }
}

TEST_CASE("find_head_end returns 0 while the terminator is partial", "[proxy][http]") {
    CHECK(http::find_head_end("", 0) == 0);
    CHECK(http::find_head_end("\r\n\r", 0) == 0);
    CHECK(http::find_head_end("GET / HTTP/1.1\r\n\r", 0) == 0);
    CHECK(http::find_head_end("GET / HTTP/1.1\r\n\n\r\n", 0) == 0);
    CHECK(http::find_head_end("\r\n\r\n", 0) == 4);
    CHECK(http::find_head_end("a\r\r\n\r\n", 0) == 6);
}

// ---------------------------------------------------------------------------------------------
// Response heads

TEST_CASE("a response head parses into status, reason and framing", "[proxy][http]") {
    http::message_head h;
    SECTION("Content-Length") {
        const std::string head =
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n\r\n";
        REQUIRE(http::parse_response_head(head, h) == parse_status::ok);
        CHECK(h.status == 200);
        CHECK(h.reason == "OK");
        CHECK(h.version_minor == 1);
        CHECK(h.body == framing::content_length);
        CHECK(h.content_length == 3);
        REQUIRE(h.fields.size() == 2);
        CHECK(h.fields[0].name == "Content-Type");
        CHECK(h.fields[1].value == "3");
        CHECK(h.head_size == head.size());
    }
    SECTION("a reason with spaces") {
        const std::string head = "HTTP/1.0 404 Not Found Here\r\n\r\n";
        REQUIRE(http::parse_response_head(head, h) == parse_status::ok);
        CHECK(h.status == 404);
        CHECK(h.reason == "Not Found Here");
        CHECK(h.version_minor == 0);
    }
    SECTION("an empty reason") {
        const std::string head = "HTTP/1.1 204 \r\n\r\n";
        REQUIRE(http::parse_response_head(head, h) == parse_status::ok);
        CHECK(h.status == 204);
        CHECK(h.reason.empty());
    }
    SECTION("chunked") {
        const std::string head = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
        REQUIRE(http::parse_response_head(head, h) == parse_status::ok);
        CHECK(h.body == framing::chunked);
        CHECK(h.transfer_encoding == "chunked");
    }
    SECTION("101 with Upgrade") {
        const std::string head =
            "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n";
        REQUIRE(http::parse_response_head(head, h) == parse_status::ok);
        CHECK(h.status == 101);
        CHECK(h.connection_upgrade);
        CHECK(h.upgrade == "websocket");
    }
}

TEST_CASE("the smuggling rules apply to responses too", "[proxy][http][smuggling]") {
    struct row {
        std::vector<std::string> fields;
        const char* status_line;
        parse_status expected;
    };
    const auto r = GENERATE(values<row>({
        {{"Content-Length: 5", "Transfer-Encoding: chunked"},
         "HTTP/1.1 200 OK",
         parse_status::conflicting_framing},
        {{"Content-Length: 5", "Content-Length: 6"},
         "HTTP/1.1 200 OK",
         parse_status::bad_content_length},
        {{"Content-Length: 5, 6"}, "HTTP/1.1 200 OK", parse_status::bad_content_length},
        {{"Content-Length: abc"}, "HTTP/1.1 200 OK", parse_status::bad_content_length},
        {{"Content-Length: -1"}, "HTTP/1.1 200 OK", parse_status::bad_content_length},
        {{"Transfer-Encoding: gzip"}, "HTTP/1.1 200 OK", parse_status::bad_transfer_encoding},
        {{"Transfer-Encoding: chunked, gzip"},
         "HTTP/1.1 200 OK",
         parse_status::bad_transfer_encoding},
        {{"Transfer-Encoding: chunked", "Transfer-Encoding: chunked"},
         "HTTP/1.1 200 OK",
         parse_status::bad_transfer_encoding},
        {{"Transfer-Encoding: chunked"}, "HTTP/1.0 200 OK", parse_status::bad_transfer_encoding},
        {{"Content-Length : 5"}, "HTTP/1.1 200 OK", parse_status::space_before_colon},
        {{"X-A: b", " c"}, "HTTP/1.1 200 OK", parse_status::obs_fold},
        {{"X-A: b\x01"}, "HTTP/1.1 200 OK", parse_status::bad_field},
        {{}, "HTTP/2.0 200 OK", parse_status::bad_version},
        {{}, "HTTP/1.10 200 OK", parse_status::bad_version},
        {{}, "HTTP/1.1 2000 OK", parse_status::bad_start_line},
        {{}, "HTTP/1.1 20 OK", parse_status::bad_start_line},
        {{}, "HTTP/1.1 099 Low", parse_status::bad_start_line},
        {{}, "HTTP/1.1 2x0 OK", parse_status::bad_start_line},
        {{}, "HTTP/1.1  200 OK", parse_status::bad_start_line},
    }));
    const std::string head = response_with(r.fields, r.status_line);
    CAPTURE(head);
    CHECK(parse_response(head) == r.expected);
}

TEST_CASE("a response with bare LF or bare CR line endings is refused",
          "[proxy][http][smuggling]") {
    CHECK(parse_response("HTTP/1.1 200 OK\r\nX-A: b\nContent-Length: 1\r\n\r\n") ==
          parse_status::bad_field);
    CHECK(parse_response("HTTP/1.1 200 OK\r\nX-A: b\rContent-Length: 1\r\n\r\n") ==
          parse_status::bad_field);
    CHECK(parse_response("HTTP/1.1 200 OK\nX-A: b\r\n\r\n") == parse_status::bad_start_line);
}

TEST_CASE("a response with 129 fields is refused", "[proxy][http][smuggling]") {
    std::vector<std::string> fields;
    for (int i = 0; i < 129; ++i)
        fields.push_back("X-F" + std::to_string(i) + ": v");
    CHECK(parse_response(response_with(fields)) == parse_status::too_many_fields);
    fields.pop_back();
    CHECK(parse_response(response_with(fields)) == parse_status::ok);
}

TEST_CASE("response_framing applies the request method and the status", "[proxy][http]") {
    struct row {
        const char* head;
        bool request_was_head;
        framing expected;
    };
    const auto r = GENERATE(values<row>({
        {"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n", true, framing::none},
        {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", true, framing::none},
        {"HTTP/1.1 200 OK\r\n\r\n", true, framing::none},
        {"HTTP/1.1 100 Continue\r\n\r\n", false, framing::none},
        {"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n", false, framing::none},
        {"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n", false, framing::none},
        {"HTTP/1.1 204 No Content\r\n\r\n", false, framing::none},
        {"HTTP/1.1 204 No Content\r\nContent-Length: 7\r\n\r\n", false, framing::none},
        {"HTTP/1.1 304 Not Modified\r\nContent-Length: 100\r\n\r\n", false, framing::none},
        {"HTTP/1.1 304 Not Modified\r\n\r\n", false, framing::none},
        {"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", false, framing::none},
        {"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n", false, framing::none},
        {"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", false, framing::content_length},
        {"HTTP/1.1 500 Oops\r\nContent-Length: 5\r\n\r\n", false, framing::content_length},
        {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", false, framing::chunked},
        {"HTTP/1.1 200 OK\r\n\r\n", false, framing::until_close},
        {"HTTP/1.0 200 OK\r\nServer: old\r\n\r\n", false, framing::until_close},
    }));
    CAPTURE(r.head, r.request_was_head);
    http::message_head h;
    const std::string head = r.head;
    REQUIRE(http::parse_response_head(head, h) == parse_status::ok);
    CHECK(http::response_framing(h, r.request_was_head) == r.expected);
}

// ---------------------------------------------------------------------------------------------
// Chunked bodies

namespace {

// Feeds `body` to a fresh scanner in the pieces given by `cuts` (ascending offsets), the way it
// arrives from a socket: the unconsumed rest of a piece is fed again with the next one.
struct scan_outcome {
    std::size_t consumed = 0;
    bool done = false;
    bool error = false;
    std::string payload;
};

scan_outcome scan_in_pieces(const std::string& body, const std::vector<std::size_t>& cuts) {
    http::chunked_scanner s;
    scan_outcome out;
    std::size_t start = 0;
    std::vector<std::size_t> ends = cuts;
    ends.push_back(body.size());
    for (const std::size_t end : ends) {
        if (end < start)
            continue;
        std::vector<std::string_view> pieces;
        const auto r = s.feed(std::string_view(body).substr(start, end - start), &pieces);
        out.payload += joined(pieces);
        out.consumed += r.consumed;
        start += r.consumed;
        if (r.error) {
            out.error = true;
            return out;
        }
        if (r.done) {
            out.done = true;
            return out;
        }
        // A scanner that is neither done nor failed takes everything it is given.
        REQUIRE(start == end);
    }
    return out;
}

scan_outcome scan_byte_by_byte(const std::string& body) {
    std::vector<std::size_t> cuts;
    for (std::size_t i = 1; i < body.size(); ++i)
        cuts.push_back(i);
    return scan_in_pieces(body, cuts);
}

} // namespace

TEST_CASE("a chunked body fed whole is consumed, done, and dechunks to its data",
          "[proxy][http][chunked]") {
    const std::string body = "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n";
    http::chunked_scanner s;
    std::vector<std::string_view> pieces;
    const auto r = s.feed(body, &pieces);
    CHECK(r.consumed == body.size());
    CHECK(r.done);
    CHECK_FALSE(r.error);
    CHECK(joined(pieces) == "hello world");
    // Pieces are views into the data that was fed.
    for (auto p : pieces) {
        CHECK(p.data() >= body.data());
        CHECK(p.data() + p.size() <= body.data() + body.size());
    }
}

TEST_CASE("a chunked body fed byte by byte gives the same result as fed whole",
          "[proxy][http][chunked]") {
    const std::string body =
        GENERATE(as<std::string>{}, "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
                 "A\r\n0123456789\r\na\r\nabcdefghij\r\n0\r\n\r\n",
                 "3;name=value;flag\r\nabc\r\n0;last\r\nX-Sum: 1\r\nY: 2\r\n\r\n", "0\r\n\r\n",
                 "1\r\n\r\r\n0\r\n\r\n", "000000000000010\r\n0123456789abcdef\r\n0\r\n\r\n");
    CAPTURE(body);
    http::chunked_scanner whole_scanner;
    std::vector<std::string_view> whole_pieces;
    const auto whole = whole_scanner.feed(body, &whole_pieces);
    REQUIRE_FALSE(whole.error);
    REQUIRE(whole.done);
    REQUIRE(whole.consumed == body.size());

    const auto bytes = scan_byte_by_byte(body);
    CHECK_FALSE(bytes.error);
    CHECK(bytes.done);
    CHECK(bytes.consumed == whole.consumed);
    CHECK(bytes.payload == joined(whole_pieces));
}

TEST_CASE("a chunked body split at any one point gives the same result", "[proxy][http][chunked]") {
    const std::string body = "4;ext=\"a b\"\r\nWiki\r\n5\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n"
                             "0\r\nTrailer-A: x\r\n\r\n";
    for (std::size_t cut = 0; cut <= body.size(); ++cut) {
        CAPTURE(cut);
        const auto r = scan_in_pieces(body, {cut});
        CHECK_FALSE(r.error);
        CHECK(r.done);
        CHECK(r.consumed == body.size());
        CHECK(r.payload == "Wikipedia in\r\n\r\nchunks.");
    }
}

TEST_CASE("the done flag is set only by the final byte", "[proxy][http][chunked]") {
    const std::string body = "2\r\nab\r\n0\r\n\r\n";
    http::chunked_scanner s;
    for (std::size_t i = 0; i < body.size(); ++i) {
        CAPTURE(i);
        const auto r = s.feed(std::string_view(body).substr(i, 1));
        REQUIRE_FALSE(r.error);
        CHECK(r.consumed == 1);
        CHECK(r.done == (i + 1 == body.size()));
    }
}

TEST_CASE("feed without a payload vector scans the same", "[proxy][http][chunked]") {
    http::chunked_scanner s;
    const std::string body = "3\r\nabc\r\n0\r\n\r\n";
    const auto r = s.feed(body);
    CHECK(r.done);
    CHECK(r.consumed == body.size());
}

TEST_CASE("chunk extensions are accepted and not part of the payload", "[proxy][http][chunked]") {
    const std::string body =
        GENERATE(as<std::string>{}, "5;a=b\r\nhello\r\n0\r\n\r\n", "5;a\r\nhello\r\n0\r\n\r\n",
                 "5;a=\"quoted value\";b=2\r\nhello\r\n0\r\n\r\n", "5 ;a=b\r\nhello\r\n0\r\n\r\n",
                 "5\t;a=b\r\nhello\r\n0;end=1\r\n\r\n");
    CAPTURE(body);
    http::chunked_scanner s;
    std::vector<std::string_view> pieces;
    const auto r = s.feed(body, &pieces);
    CHECK_FALSE(r.error);
    CHECK(r.done);
    CHECK(r.consumed == body.size());
    CHECK(joined(pieces) == "hello");
}

TEST_CASE("trailers are consumed and not part of the payload", "[proxy][http][chunked]") {
    const std::string body = "5\r\nhello\r\n0\r\nX-Checksum: abc\r\nX-Other:  v \r\n\r\n";
    http::chunked_scanner s;
    std::vector<std::string_view> pieces;
    const auto r = s.feed(body, &pieces);
    CHECK_FALSE(r.error);
    CHECK(r.done);
    CHECK(r.consumed == body.size());
    CHECK(joined(pieces) == "hello");
    CHECK(scan_byte_by_byte(body).consumed == body.size());
}

TEST_CASE("invalid chunk sizes are errors", "[proxy][http][chunked]") {
    const std::string body =
        GENERATE(as<std::string>{}, "g\r\nhello\r\n0\r\n\r\n", "-5\r\nhello\r\n0\r\n\r\n",
                 "+5\r\nhello\r\n0\r\n\r\n", "0x5\r\nhello\r\n0\r\n\r\n", "\r\nhello\r\n0\r\n\r\n",
                 " 5\r\nhello\r\n0\r\n\r\n", ";a\r\nhello\r\n0\r\n\r\n", "5z\r\nhello\r\n0\r\n\r\n",
                 "5\nhello\r\n0\r\n\r\n", "5\rhello\r\n0\r\n\r\n");
    CAPTURE(body);
    http::chunked_scanner s;
    const auto r = s.feed(body);
    CHECK(r.error);
    CHECK_FALSE(r.done);
    CHECK(scan_byte_by_byte(body).error);
}

TEST_CASE("a chunk size followed by whitespace and more digits is an error",
          "[proxy][http][chunked]") {
    // "5 5" is not `chunk-size [ chunk-ext ]`: a reader that takes the last digits sees 0x55.
    const std::string body =
        GENERATE(as<std::string>{}, "5 5\r\nhello\r\n0\r\n\r\n", "5 x\r\nhello\r\n0\r\n\r\n");
    CAPTURE(body);
    http::chunked_scanner s;
    CHECK(s.feed(body).error);
}

TEST_CASE("chunk sizes of 16 or more hex digits are errors", "[proxy][http][chunked]") {
    const std::string size = GENERATE(as<std::string>{}, "ffffffffffffffff", "10000000000000000",
                                      "0000000000000001", "fffffffffffffffffffff");
    CAPTURE(size);
    const std::string body = size + "\r\nx\r\n0\r\n\r\n";
    http::chunked_scanner s;
    CHECK(s.feed(body).error);
    CHECK(scan_byte_by_byte(body).error);
}

TEST_CASE("a 15-digit chunk size is accepted", "[proxy][http][chunked]") {
    // The data would be huge; only the size line is checked here.
    http::chunked_scanner s;
    const std::string line = "fffffffffffffff\r\n";
    const auto r = s.feed(line + "abc");
    CHECK_FALSE(r.error);
    CHECK_FALSE(r.done);
    CHECK(r.consumed == line.size() + 3);
}

TEST_CASE("chunk data not followed by CRLF is an error", "[proxy][http][chunked]") {
    const std::string body =
        GENERATE(as<std::string>{}, "5\r\nhelloX\r\n0\r\n\r\n", "5\r\nhello\n0\r\n\r\n",
                 "5\r\nhello\r0\r\n\r\n", "3\r\nhello\r\n0\r\n\r\n", "5\r\nhello\r\r\n0\r\n\r\n");
    CAPTURE(body);
    http::chunked_scanner s;
    const auto r = s.feed(body);
    CHECK(r.error);
    CHECK_FALSE(r.done);
    CHECK(scan_byte_by_byte(body).error);
}

TEST_CASE("line breaks and controls hidden in extensions or trailers are errors",
          "[proxy][http][chunked]") {
    const std::string body =
        GENERATE(as<std::string>{}, "5;a\nb\r\nhello\r\n0\r\n\r\n", "5;a\x01\r\nhello\r\n0\r\n\r\n",
                 "0\r\nX-T: a\nb\r\n\r\n", "0\r\nX-T: a\rb\r\n\r\n", "0\r\n folded: x\r\n\r\n",
                 "0\r\nX-T: v\r\n\n", "0\r\n\n");
    CAPTURE(body);
    http::chunked_scanner s;
    CHECK(s.feed(body).error);
}

TEST_CASE("bytes after the end of a chunked body are not consumed", "[proxy][http][chunked]") {
    const std::string body = "5\r\nhello\r\n0\r\n\r\n";
    const std::string next = "GET /next HTTP/1.1\r\n\r\n";
    const std::string data = body + next; // the pieces are views into it
    http::chunked_scanner s;
    std::vector<std::string_view> pieces;
    const auto r = s.feed(data, &pieces);
    CHECK(r.done);
    CHECK_FALSE(r.error);
    CHECK(r.consumed == body.size());
    CHECK(joined(pieces) == "hello");

    SECTION("a finished scanner consumes nothing more") {
        const auto again = s.feed(next);
        CHECK(again.done);
        CHECK_FALSE(again.error);
        CHECK(again.consumed == 0);
    }
    SECTION("reset starts a new body") {
        s.reset();
        const std::string second = "2\r\nhi\r\n0\r\n\r\n";
        const std::string data2 = second + "x";
        std::vector<std::string_view> p2;
        const auto r2 = s.feed(data2, &p2);
        CHECK(r2.done);
        CHECK(r2.consumed == second.size());
        CHECK(joined(p2) == "hi");
    }
}

TEST_CASE("bytes after the end arriving in the same read as the last byte are left",
          "[proxy][http][chunked]") {
    const std::string body = "5\r\nhello\r\n0\r\n\r\n";
    const std::string data = body + "NEXT";
    for (std::size_t cut = 0; cut < body.size(); ++cut) {
        CAPTURE(cut);
        const auto r = scan_in_pieces(data, {cut});
        CHECK(r.done);
        CHECK(r.consumed == body.size());
        CHECK(r.payload == "hello");
    }
}

// ---------------------------------------------------------------------------------------------
// Field names and lines as parsed

TEST_CASE("the names the proxy acts on are recognised in any case", "[proxy][http]") {
    using id = http::field_name;
    const std::vector<std::pair<std::string, id>> names = {
        {"host", id::host},
        {"HOST", id::host},
        {"Content-Length", id::content_length},
        {"transfer-ENCODING", id::transfer_encoding},
        {"Connection", id::connection},
        {"Upgrade", id::upgrade},
        {"Expect", id::expect},
        {"TE", id::te},
        {"Trailer", id::trailer},
        {"Keep-Alive", id::keep_alive},
        {"Proxy-Connection", id::proxy_connection},
        {"X-Forwarded-For", id::x_forwarded_for},
        {"x-forwarded-proto", id::x_forwarded_proto},
        {"X-Forwarded-Host", id::x_forwarded_host},
        {"Hos", id::other},
        {"Hostx", id::other},
        {"Content-Lengths", id::other},
        {"Content_Length", id::other},
        {"X-Forwarded-Fox", id::other},
        {"Trailers", id::other},
        {"", id::other},
    };
    for (const auto& [name, want] : names) {
        CAPTURE(name);
        CHECK(http::classify_field_name(name) == want);
    }
}

TEST_CASE("names are compared exactly but for letter case", "[proxy][http]") {
    // Every letter of a known name in either case; a byte that only differs
    // in bit 0x20 from '-' or from a non-letter is another name.
    const std::string name = "x-forwarded-proto";
    for (std::size_t k = 0; k < name.size(); ++k) {
        std::string upper = name;
        upper[k] = static_cast<char>(std::toupper(static_cast<unsigned char>(upper[k])));
        CAPTURE(upper);
        CHECK(http::classify_field_name(upper) == http::field_name::x_forwarded_proto);
        std::string other = name;
        other[k] = static_cast<char>(other[k] ^ 0x20);
        if (other[k] == '\r' || std::isalpha(static_cast<unsigned char>(other[k])) == 0) {
            CAPTURE(other);
            CHECK(http::classify_field_name(other) == http::field_name::other);
        }
    }
    CHECK(http::classify_field_name("Content\rLength") == http::field_name::other);
    CHECK(http::classify_field_name("te\x7f") == http::field_name::other);
}

TEST_CASE("a known name with any one byte replaced is another name", "[proxy][http]") {
    // Every position of every name the proxy acts on is compared (names
    // longer than sixteen bytes included).
    const std::vector<std::pair<std::string, http::field_name>> names = {
        {"te", http::field_name::te},
        {"host", http::field_name::host},
        {"expect", http::field_name::expect},
        {"upgrade", http::field_name::upgrade},
        {"trailer", http::field_name::trailer},
        {"connection", http::field_name::connection},
        {"keep-alive", http::field_name::keep_alive},
        {"content-length", http::field_name::content_length},
        {"x-forwarded-for", http::field_name::x_forwarded_for},
        {"proxy-connection", http::field_name::proxy_connection},
        {"x-forwarded-host", http::field_name::x_forwarded_host},
        {"transfer-encoding", http::field_name::transfer_encoding},
        {"x-forwarded-proto", http::field_name::x_forwarded_proto},
    };
    for (const auto& [name, id] : names) {
        REQUIRE(http::classify_field_name(name) == id);
        for (std::size_t k = 0; k < name.size(); ++k) {
            for (const char c : {'+', '_', '0', 'q', 'Q', '-'}) {
                if (std::tolower(static_cast<unsigned char>(c)) == name[k])
                    continue;
                std::string other = name;
                other[k] = c;
                CAPTURE(other);
                CHECK(http::classify_field_name(other) != id);
            }
        }
    }
}

TEST_CASE("long field names with any token characters parse; other bytes do not",
          "[proxy][http][smuggling]") {
    // Names are scanned sixteen bytes at a time for the usual characters:
    // put the unusual ones, and a forbidden one, at every position.
    const std::string tokens = "!#$%&'*+-.^_`|~";
    for (std::size_t at = 0; at < 40; ++at) {
        std::string name(40, 'n');
        name[at] = tokens[at % tokens.size()];
        http::message_head h;
        const std::string head = get_with({name + ": v"});
        CAPTURE(name);
        REQUIRE(http::parse_request_head(head, h) == parse_status::ok);
        CHECK(h.fields[1].name == name);
        CHECK(h.fields[1].value == "v");

        std::string bad = std::string(40, 'n');
        bad[at] = at % 2 == 0 ? '(' : '\x80';
        CAPTURE(bad);
        CHECK(parse_request(get_with({bad + ": v"})) == parse_status::bad_field);
    }
}

TEST_CASE("each parsed field knows its name and its whole line as received", "[proxy][http]") {
    http::message_head h;
    const std::string head = "GET / HTTP/1.1\r\nhost:h\r\nX-Pad:  a b \t\r\n"
                             "content-length: 0\r\nX-Empty:\r\n\r\n";
    REQUIRE(http::parse_request_head(head, h) == parse_status::ok);
    REQUIRE(h.fields.size() == 4);
    CHECK(h.fields[0].id == http::field_name::host);
    CHECK(h.fields[0].line() == "host:h\r\n");
    CHECK(h.fields[1].id == http::field_name::other);
    CHECK(h.fields[1].value == "a b");
    CHECK(h.fields[1].line() == "X-Pad:  a b \t\r\n");
    CHECK(h.fields[2].id == http::field_name::content_length);
    CHECK(h.fields[2].line() == "content-length: 0\r\n");
    CHECK(h.fields[3].line() == "X-Empty:\r\n");
}

TEST_CASE("a head parsed with its end given parses as without", "[proxy][http]") {
    const std::string data = "GET /a HTTP/1.1\r\nHost: h\r\nX-A: 1\r\n\r\nGET /next";
    const auto end = http::find_head_end(data, 0);
    REQUIRE(end == data.size() - 9);
    http::message_head with_end;
    http::message_head without;
    REQUIRE(http::parse_request_head(data, with_end, end) == parse_status::ok);
    REQUIRE(http::parse_request_head(data, without) == parse_status::ok);
    CHECK(with_end.head_size == without.head_size);
    CHECK(with_end.fields.size() == 2);
    CHECK(with_end.target == "/a");

    const std::string response = "HTTP/1.1 204 No Content\r\nX-B: 2\r\n\r\n";
    http::message_head r;
    REQUIRE(http::parse_response_head(response, r, response.size()) == parse_status::ok);
    CHECK(r.status == 204);
    CHECK(r.fields.size() == 1);
}
