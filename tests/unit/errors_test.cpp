// The proxy's error vocabulary (SPEC 3): the status each error gives the client, which errors
// allow another server to be tried, and the reason phrases of the statuses the proxy sends.

#include "proxy/errors.hpp"

#include <catch2/catch.hpp>

#include <set>
#include <string>

namespace proxy = sluice::proxy;
using proxy::proxy_error;

TEST_CASE("status_for maps each error to the status SPEC 3 names", "[proxy][errors]") {
    struct row {
        proxy_error error;
        int status;
    };
    const auto r = GENERATE(values<row>({
        {proxy_error::bad_request, 400},
        {proxy_error::no_route, 404},
        {proxy_error::header_timeout, 408},
        {proxy_error::body_too_large, 413},
        {proxy_error::header_too_large, 431},
        {proxy_error::connect_failed, 502},
        {proxy_error::connect_timeout, 502},
        {proxy_error::upstream_reset, 502},
        {proxy_error::bad_response, 502},
        {proxy_error::no_healthy_server, 503},
        {proxy_error::response_timeout, 504},
    }));
    CAPTURE(static_cast<int>(r.error));
    CHECK(proxy::status_for(r.error) == r.status);
}

TEST_CASE("only connect errors are retryable", "[proxy][errors]") {
    CHECK(proxy::retryable(proxy_error::connect_failed));
    CHECK(proxy::retryable(proxy_error::connect_timeout));
    const auto e = GENERATE(
        proxy_error::none, proxy_error::bad_request, proxy_error::header_timeout,
        proxy_error::header_too_large, proxy_error::body_too_large, proxy_error::no_route,
        proxy_error::no_healthy_server, proxy_error::upstream_reset, proxy_error::bad_response,
        proxy_error::response_timeout, proxy_error::client_closed);
    CAPTURE(static_cast<int>(e));
    CHECK_FALSE(proxy::retryable(e));
}

TEST_CASE("retryable is usable at compile time", "[proxy][errors]") {
    STATIC_REQUIRE(proxy::retryable(proxy_error::connect_failed));
    STATIC_REQUIRE_FALSE(proxy::retryable(proxy_error::upstream_reset));
}

TEST_CASE("every error has its own short description", "[proxy][errors]") {
    std::set<std::string> seen;
    for (int i = static_cast<int>(proxy_error::none);
         i <= static_cast<int>(proxy_error::client_closed); ++i) {
        const auto e = static_cast<proxy_error>(i);
        const auto d = proxy::describe(e);
        CAPTURE(i, d);
        CHECK_FALSE(d.empty());
        CHECK(d.size() < 60);
        CHECK(d.find('\n') == std::string_view::npos);
        CHECK(seen.insert(std::string(d)).second);
    }
}

TEST_CASE("reason phrases of the statuses the proxy sends", "[proxy][errors]") {
    struct row {
        int status;
        const char* phrase;
    };
    const auto r = GENERATE(values<row>({
        {100, "Continue"},
        {101, "Switching Protocols"},
        {200, "OK"},
        {204, "No Content"},
        {301, "Moved Permanently"},
        {302, "Found"},
        {304, "Not Modified"},
        {307, "Temporary Redirect"},
        {308, "Permanent Redirect"},
        {400, "Bad Request"},
        {404, "Not Found"},
        {408, "Request Timeout"},
        {413, "Content Too Large"},
        {431, "Request Header Fields Too Large"},
        {502, "Bad Gateway"},
        {503, "Service Unavailable"},
        {504, "Gateway Timeout"},
    }));
    CAPTURE(r.status);
    CHECK(proxy::reason_phrase(r.status) == r.phrase);
}

TEST_CASE("reason_phrase of an unknown status is empty", "[proxy][errors]") {
    CHECK(proxy::reason_phrase(299).empty());
    CHECK(proxy::reason_phrase(0).empty());
    CHECK(proxy::reason_phrase(999).empty());
}

TEST_CASE("every status a proxy error maps to has a reason phrase", "[proxy][errors]") {
    for (int i = static_cast<int>(proxy_error::bad_request);
         i <= static_cast<int>(proxy_error::response_timeout); ++i) {
        const auto e = static_cast<proxy_error>(i);
        CAPTURE(i);
        CHECK_FALSE(proxy::reason_phrase(proxy::status_for(e)).empty());
    }
}
