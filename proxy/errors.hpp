#pragma once
// The proxy's one error vocabulary: where a failed exchange went wrong,
// whether another server may be tried, and the status the client gets.
// The mapping to HTTP lives here and nowhere else.

#include <cstdint>
#include <string_view>

namespace sluice::proxy {

enum class proxy_error : std::uint8_t {
    none,
    bad_request,       // malformed request head or body framing (client)
    header_timeout,    // client_header elapsed before a full head (client)
    header_too_large,  // head beyond limits.max_header_bytes (client)
    body_timeout,      // client_body elapsed between two body reads (client)
    body_too_large,    // body beyond limits.max_body_bytes (client)
    no_route,          // no route matched (config)
    no_healthy_server, // every server of the upstream is down (upstream)
    connect_failed,    // refused, unreachable (upstream, retryable)
    connect_timeout,   // upstream_connect elapsed (upstream, retryable)
    upstream_reset,    // closed or reset before a complete response head (upstream)
    bad_response,      // malformed response head or body framing (upstream)
    response_timeout,  // upstream_response elapsed (upstream)
    client_closed,     // the client went away mid-exchange (nothing to send)
};

// The status the client gets for `e` (400, 404, 408, 413, 431, 502, 503, 504).
int status_for(proxy_error e);

// A short phrase for bodies and logs, e.g. "upstream connect timeout".
std::string_view describe(proxy_error e);

// Whether another server may be tried: nothing was sent to the failed one.
constexpr bool retryable(proxy_error e) {
    return e == proxy_error::connect_failed || e == proxy_error::connect_timeout;
}

// The reason phrase of a status code ("Not Found"), or "" for unknown codes.
std::string_view reason_phrase(int status);

} // namespace sluice::proxy
