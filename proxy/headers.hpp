#pragma once
// Header rewriting (SPEC 3) as pure functions from a parsed head to the
// bytes of the head that goes out. They append to a caller-owned string whose
// capacity is reused, so steady traffic allocates nothing here.

#include "config/model.hpp"
#include "proxy/http_parser.hpp"

#include <array>
#include <cstdint>

#include <string>
#include <string_view>

namespace sluice::proxy {

struct forward_facts {
    std::string_view client_ip;         // the TCP peer
    bool peer_trusted = false;          // peer within forwarded.trusted_proxies
    bool tls = false;                   // the client connection is HTTPS
    std::string_view request_id_header; // request_id.header
    std::string_view request_id;        // the ID this request carries
    std::string_view default_host;      // Host to send when the client sent none
    std::string_view authority;         // of an absolute-form target: replaces Host
    std::string_view path;              // origin-form target to send ("/p?q")
    bool upgrade = false;               // forward Upgrade + Connection: upgrade
    bool strip_expect = false;          // the proxy answered 100-continue itself
};

// The request head for the upstream: request line in HTTP/1.1, the client's
// fields minus hop-by-hop ones, minus the request-ID field and (from
// untrusted peers) X-Forwarded-*, then framing (Content-Length or
// Transfer-Encoding as received), X-Forwarded-For/Proto/Host and the request
// ID. Appends to `out`.
void build_upstream_request(const http::message_head& req, const forward_facts& facts,
                            std::string& out);

struct response_facts {
    std::string_view request_id_header;
    std::string_view request_id;
    http::framing body = http::framing::none; // framing of the response body as relayed
    bool dechunk = false;   // chunked upstream body sent to an HTTP/1.0 client without framing
    bool keep_alive = true; // the client connection stays open after this response
    bool client_http10 = false;
    bool upgrade = false; // a 101 to an Upgrade request
};

// The response head for the client: the upstream's status line (as
// HTTP/1.1), its fields minus hop-by-hop ones and minus its own request-ID
// field, then framing, Connection and the request ID. Appends to `out`.
void build_client_response(const http::message_head& resp, const response_facts& facts,
                           std::string& out);

// A response the proxy makes itself (errors, redirects, `respond` routes).
struct local_response {
    int status = 200;
    std::string_view body;
    std::string_view content_type = "text/plain; charset=utf-8";
    std::string_view location; // sets Location when not empty
    std::string_view request_id_header;
    std::string_view request_id;
    bool keep_alive = true;
    bool head_request = false; // a HEAD gets the head only
};
void build_local_response(const local_response& r, std::string& out);

// The Location of a `redirect` route: scheme://host[:port]/path?query, the
// host taken from the request without its port.
std::string redirect_location(std::string_view scheme, int port, std::string_view host,
                              std::string_view target);

} // namespace sluice::proxy

namespace sluice::proxy {
// Whether the address `bytes` (16 bytes, IPv4 in the first 4 when !v6) lies
// in `net`. IPv4-mapped IPv6 addresses must be passed as IPv4.
bool cidr_contains(const config::cidr& net, const std::array<std::uint8_t, 16>& bytes, bool v6);
} // namespace sluice::proxy
