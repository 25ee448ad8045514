// Route matching (SPEC 2 `routes`): Host without port, request-target forms, exact and wildcard
// hosts, literal path prefixes, first match wins.

#include "proxy/router.hpp"

#include <catch2/catch.hpp>

#include <deque>
#include <string>
#include <vector>

namespace cfg = sluice::config;
namespace proxy = sluice::proxy;

namespace {

cfg::route upstream_route(std::string host, std::string path_prefix, std::string upstream) {
    cfg::route r;
    r.match.host = std::move(host);
    r.match.path_prefix = std::move(path_prefix);
    r.action = std::move(upstream);
    return r;
}

// Routes and their compiled form; compiled routes point into `routes`, so a deque keeps
// them in place as routes are added.
struct route_table {
    std::deque<cfg::route> routes;
    std::vector<proxy::compiled_route> compiled;

    route_table& add(std::string host, std::string path_prefix, std::string upstream) {
        routes.push_back(
            upstream_route(std::move(host), std::move(path_prefix), std::move(upstream)));
        compiled.push_back(proxy::compile_route(routes.back()));
        return *this;
    }

    // The upstream name of the matching route, or "" when none matches.
    std::string match(std::string_view host, std::string_view path) const {
        const auto* r = proxy::match_route(compiled, host, path);
        if (r == nullptr)
            return "";
        REQUIRE(r->route != nullptr);
        return std::get<std::string>(r->route->action);
    }
};

} // namespace

TEST_CASE("host_without_port strips the port", "[proxy][router]") {
    struct row {
        const char* host;
        const char* expected;
    };
    const auto r = GENERATE(values<row>({
        {"example.com:8080", "example.com"},
        {"example.com", "example.com"},
        {"example.com:", "example.com"},
        {"127.0.0.1:80", "127.0.0.1"},
        {"[::1]:80", "[::1]"},
        {"[::1]", "[::1]"},
        {"[2001:db8::1]:8443", "[2001:db8::1]"},
        {"", ""},
    }));
    CAPTURE(r.host);
    CHECK(proxy::host_without_port(r.host) == r.expected);
}

TEST_CASE("target_path is the path without the query", "[proxy][router]") {
    struct row {
        const char* target;
        const char* expected;
    };
    const auto r = GENERATE(values<row>({
        {"/", "/"},
        {"/a?b", "/a"},
        {"/a/b/c?x=1&y=2", "/a/b/c"},
        {"/a/b/", "/a/b/"},
        {"/?q", "/"},
        {"/a??b", "/a"},
        {"http://h/p?q", "/p"},
        {"http://h:8080/p/q", "/p/q"},
        {"https://example.com/x/y?z", "/x/y"},
        {"HTTP://h/p", "/p"},
        {"http://h", "/"},
        {"http://h?q", "/"},
        {"https://h:1/", "/"},
        {"*", "*"},
    }));
    CAPTURE(r.target);
    CHECK(proxy::target_path(r.target) == r.expected);
}

TEST_CASE("target_authority is the authority of an absolute-form target", "[proxy][router]") {
    struct row {
        const char* target;
        const char* expected;
    };
    const auto r = GENERATE(values<row>({
        {"http://h:1/p", "h:1"},
        {"http://example.com/p?q", "example.com"},
        {"https://example.com:8443/x", "example.com:8443"},
        {"HTTPS://Example.com/x", "Example.com"},
        {"http://h", "h"},
        {"http://h?q", "h"},
        {"http://[::1]:8080/p", "[::1]:8080"},
        {"/p", ""},
        {"/p?http://x/", ""},
        {"*", ""},
        {"", ""},
    }));
    CAPTURE(r.target);
    CHECK(proxy::target_authority(r.target) == r.expected);
}

TEST_CASE("compile_route lowercases the host and splits wildcards", "[proxy][router]") {
    const auto exact = upstream_route("API.Example.com", "/api/", "a");
    const auto c = proxy::compile_route(exact);
    CHECK(c.host == "api.example.com");
    CHECK_FALSE(c.wildcard);
    CHECK(c.path_prefix == "/api/");
    CHECK(c.route == &exact);

    const auto wild = upstream_route("*.Example.com", "/", "b");
    const auto w = proxy::compile_route(wild);
    CHECK(w.wildcard);
    CHECK(w.host == ".example.com");
}

TEST_CASE("an exact host matches case-insensitively, ignoring the port and a trailing dot",
          "[proxy][router]") {
    route_table t;
    t.add("api.example.com", "/", "api");
    CHECK(t.match("api.example.com", "/") == "api");
    CHECK(t.match("API.EXAMPLE.COM", "/x") == "api");
    CHECK(t.match("Api.Example.Com:8080", "/") == "api");
    CHECK(t.match("api.example.com:443", "/") == "api");
    CHECK(t.match("api.example.com.", "/") == "api");
    CHECK(t.match("api.example.com.:8080", "/") == "api");

    CHECK(t.match("example.com", "/") == "");
    CHECK(t.match("xapi.example.com", "/") == "");
    CHECK(t.match("a.api.example.com", "/") == "");
    CHECK(t.match("api.example.com.evil", "/") == "");
    CHECK(t.match("api.example.co", "/") == "");
    CHECK(t.match("", "/") == "");
}

TEST_CASE("an uppercase configured host matches too", "[proxy][router]") {
    route_table t;
    t.add("API.Example.COM", "/", "api");
    CHECK(t.match("api.example.com", "/") == "api");
}

TEST_CASE("a wildcard host matches exactly one extra label", "[proxy][router]") {
    route_table t;
    t.add("*.example.com", "/", "wild");
    CHECK(t.match("a.example.com", "/") == "wild");
    CHECK(t.match("www.example.com", "/") == "wild");
    CHECK(t.match("A.Example.COM:8443", "/") == "wild");
    CHECK(t.match("a.example.com.", "/") == "wild");
    CHECK(t.match("x-1.example.com", "/") == "wild");

    CHECK(t.match("example.com", "/") == "");
    CHECK(t.match("a.b.example.com", "/") == "");
    CHECK(t.match(".example.com", "/") == "");
    CHECK(t.match("aexample.com", "/") == "");
    CHECK(t.match("a.example.org", "/") == "");
    CHECK(t.match("a.example.com.evil", "/") == "");
    CHECK(t.match("", "/") == "");
}

TEST_CASE("a route without a host matches any host", "[proxy][router]") {
    route_table t;
    t.add("", "/", "any");
    CHECK(t.match("example.com", "/") == "any");
    CHECK(t.match("a.b.c:1", "/x") == "any");
    CHECK(t.match("[::1]:80", "/") == "any");
    CHECK(t.match("", "/") == "any");
}

TEST_CASE("the path prefix is a literal prefix", "[proxy][router]") {
    SECTION("with a trailing slash") {
        route_table t;
        t.add("", "/api/", "api");
        CHECK(t.match("h", "/api/") == "api");
        CHECK(t.match("h", "/api/users/1") == "api");
        CHECK(t.match("h", "/api") == "");
        CHECK(t.match("h", "/apix") == "");
        CHECK(t.match("h", "/API/users") == "");
        CHECK(t.match("h", "/v1/api/") == "");
        CHECK(t.match("h", "/") == "");
    }
    SECTION("without a trailing slash") {
        route_table t;
        t.add("", "/api", "api");
        CHECK(t.match("h", "/api") == "api");
        CHECK(t.match("h", "/api/") == "api");
        CHECK(t.match("h", "/apix") == "api");
        CHECK(t.match("h", "/ap") == "");
    }
    SECTION("the default prefix matches every path") {
        cfg::route r;
        r.action = std::string("root");
        REQUIRE(r.match.path_prefix == "/");
        const std::vector<proxy::compiled_route> routes{proxy::compile_route(r)};
        CHECK(proxy::match_route(routes, "h", "/") == &routes[0]);
        CHECK(proxy::match_route(routes, "h", "/anything/at/all") == &routes[0]);
    }
    SECTION("the query is ignored by way of target_path") {
        route_table t;
        t.add("", "/search", "s");
        CHECK(t.match("h", proxy::target_path("/search?q=/api/")) == "s");
        CHECK(t.match("h", proxy::target_path("/other?path=/search")) == "");
    }
}

TEST_CASE("the first matching route wins", "[proxy][router]") {
    route_table t;
    t.add("api.example.com", "/v2/", "api-v2")
        .add("api.example.com", "/", "api")
        .add("*.example.com", "/", "wild")
        .add("", "/static/", "static")
        .add("", "/", "default");
    CHECK(t.match("api.example.com", "/v2/x") == "api-v2");
    CHECK(t.match("api.example.com", "/v1/x") == "api");
    CHECK(t.match("api.example.com", "/static/app.js") == "api");
    CHECK(t.match("www.example.com", "/static/app.js") == "wild");
    CHECK(t.match("example.com", "/static/app.js") == "static");
    CHECK(t.match("other.org", "/v2/x") == "default");

    const auto* r = proxy::match_route(t.compiled, "api.example.com", "/v2/");
    CHECK(r == &t.compiled[0]);
}

TEST_CASE("a broad route listed first shadows the later ones", "[proxy][router]") {
    route_table t;
    t.add("", "/", "catch-all").add("api.example.com", "/api/", "api");
    CHECK(t.match("api.example.com", "/api/x") == "catch-all");
}

TEST_CASE("no matching route gives nullptr", "[proxy][router]") {
    route_table t;
    t.add("a.example.com", "/", "a").add("", "/only/", "only");
    CHECK(proxy::match_route(t.compiled, "b.example.com", "/x") == nullptr);
    CHECK(proxy::match_route({}, "a.example.com", "/") == nullptr);
}

TEST_CASE("match_route with an absolute-form target uses its path", "[proxy][router]") {
    route_table t;
    t.add("api.example.com", "/api/", "api");
    const std::string_view target = "http://api.example.com:8080/api/x?y";
    CHECK(t.match(proxy::target_authority(target), proxy::target_path(target)) == "api");
}
