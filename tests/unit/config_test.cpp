// The config loader (SPEC section 2): values, defaults, and every class of error with its
// exact file:line:col, key path and message.

#include "config/cpus.hpp"
#include "config/load.hpp"

#include <catch2/catch.hpp>

#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <thread>

namespace cfg = sluice::config;
using namespace std::chrono_literals;

namespace {

std::vector<std::string> messages(const std::vector<cfg::error>& errors) {
    std::vector<std::string> out;
    for (const auto& e : errors) {
        out.push_back(cfg::to_string(e));
    }
    return out;
}

// Loads `yaml` as "t.yaml" and requires success.
cfg::config load_ok(const std::string& yaml) {
    auto result = cfg::load_string(yaml, "t.yaml");
    if (const auto* errors = std::get_if<std::vector<cfg::error>>(&result)) {
        FAIL("unexpected errors:\n" << Catch::Detail::stringify(messages(*errors)));
    }
    return std::get<cfg::config>(std::move(result));
}

// Loads `yaml` as "t.yaml" and requires failure; returns the errors as to_string() lines.
std::vector<std::string> load_errors(const std::string& yaml) {
    const auto result = cfg::load_string(yaml, "t.yaml");
    const auto* errors = std::get_if<std::vector<cfg::error>>(&result);
    REQUIRE(errors != nullptr);
    return messages(*errors);
}

// A valid listener section to put in front of snippets that test other sections.
const std::string listener = "listeners:\n"
                             "  - name: public\n"
                             "    bind: \"0.0.0.0:8080\"\n";

const std::string full_file = R"(workers: 3

listeners:
  - name: public
    bind: "0.0.0.0:8080"
    routes:
      - match:
          host: "API.Example.com"
          path_prefix: "/api/"
        upstream: backend
      - match: { path_prefix: "/" }
        redirect: { scheme: https, port: 8443, status: 301 }
      - match: { path_prefix: "/ping" }
        respond: { status: 204, body: "pong\n" }
  - name: secure
    bind: "[::1]:8443"
    tls:
      certificates:
        - cert_file: /etc/sluice/tls/site.crt
          key_file: /etc/sluice/tls/site.key
        - cert_file: /etc/sluice/tls/other.crt
          key_file: /etc/sluice/tls/other.key
      min_version: "1.3"
    routes:
      - match: { host: "*.example.com:8443" }
        upstream: frontend

upstreams:
  - name: backend
    balance: least_conn
    servers:
      - address: "127.0.0.1:9001"
        weight: 5
      - address: "api.internal:9002"
    resolve_interval: 0s
    health_check:
      path: /status
      host: "health.internal"
      interval: 500ms
      timeout: 250ms
      healthy_threshold: 4
      unhealthy_threshold: 6
      expected_status: "200"
    passive:
      max_fails: 7
      fail_timeout: 1m
    retries: 0
    request_buffering: true
    timeouts:
      connect: 3s
      response: 2m
  - name: frontend
    servers:
      - address: "[::1]:5173"

timeouts:
  client_header: 11s
  client_body: 12s
  client_idle: 13s
  upstream_connect: 14s
  upstream_response: 15s
  tunnel_idle: 2h
  shutdown_grace: 0s

limits:
  max_header_bytes: 16KiB
  max_body_bytes: 1GiB
  max_connections: 10000

request_id:
  header: X-Correlation-ID
  trust_incoming: false

forwarded:
  trusted_proxies: ["10.0.0.0/8", "::1"]

access_log:
  enabled: false
  path: /var/log/sluice/access.log

admin:
  bind: "127.0.0.1:9902"

resolver: "10.0.0.2:53"

config:
  watch: true
)";

} // namespace

TEST_CASE("a file using every key of SPEC 2 loads into the expected values", "[config]") {
    const cfg::config c = load_ok(full_file);
    CHECK(c.path == "t.yaml");
    CHECK(c.workers == 3);

    REQUIRE(c.listeners.size() == 2);
    const auto& pub = c.listeners[0];
    CHECK(pub.name == "public");
    CHECK(pub.bind == "0.0.0.0:8080");
    CHECK(pub.address == cfg::host_port{"0.0.0.0", 8080});
    CHECK_FALSE(pub.tls.has_value());
    REQUIRE(pub.routes.size() == 3);
    CHECK(pub.routes[0].match.host == "api.example.com");
    CHECK(pub.routes[0].match.path_prefix == "/api/");
    CHECK(std::get<std::string>(pub.routes[0].action) == "backend");
    CHECK(pub.routes[1].match.host.empty());
    CHECK(pub.routes[1].match.path_prefix == "/");
    const auto& redirect = std::get<cfg::redirect_action>(pub.routes[1].action);
    CHECK(redirect.scheme == "https");
    CHECK(redirect.port == std::optional<std::uint16_t>(8443));
    CHECK(redirect.status == 301);
    CHECK(pub.routes[2].match.path_prefix == "/ping");
    const auto& respond = std::get<cfg::respond_action>(pub.routes[2].action);
    CHECK(respond.status == 204);
    CHECK(respond.body == "pong\n");

    const auto& secure = c.listeners[1];
    CHECK(secure.name == "secure");
    CHECK(secure.bind == "[::1]:8443");
    CHECK(secure.address == cfg::host_port{"::1", 8443});
    REQUIRE(secure.tls.has_value());
    REQUIRE(secure.tls->certificates.size() == 2);
    CHECK(secure.tls->certificates[0].cert_file == "/etc/sluice/tls/site.crt");
    CHECK(secure.tls->certificates[0].key_file == "/etc/sluice/tls/site.key");
    CHECK(secure.tls->certificates[1].cert_file == "/etc/sluice/tls/other.crt");
    CHECK(secure.tls->certificates[1].key_file == "/etc/sluice/tls/other.key");
    CHECK(secure.tls->min_version == "1.3");
    REQUIRE(secure.routes.size() == 1);
    CHECK(secure.routes[0].match.host == "*.example.com"); // port stripped
    CHECK(secure.routes[0].match.path_prefix == "/");
    CHECK(std::get<std::string>(secure.routes[0].action) == "frontend");

    REQUIRE(c.upstreams.size() == 2);
    const auto& backend = c.upstreams[0];
    CHECK(backend.name == "backend");
    CHECK(backend.balance == cfg::balance_policy::least_conn);
    REQUIRE(backend.servers.size() == 2);
    CHECK(backend.servers[0].address == "127.0.0.1:9001");
    CHECK(backend.servers[0].endpoint == cfg::host_port{"127.0.0.1", 9001});
    CHECK(backend.servers[0].weight == 5);
    CHECK(backend.servers[1].address == "api.internal:9002");
    CHECK(backend.servers[1].endpoint == cfg::host_port{"api.internal", 9002});
    CHECK(backend.servers[1].weight == 1);
    CHECK(backend.resolve_interval == 0ms);
    REQUIRE(backend.health.has_value());
    CHECK(backend.health->path == "/status");
    CHECK(backend.health->host == "health.internal");
    CHECK(backend.health->interval == 500ms);
    CHECK(backend.health->timeout == 250ms);
    CHECK(backend.health->healthy_threshold == 4);
    CHECK(backend.health->unhealthy_threshold == 6);
    CHECK(backend.health->expected_status_min == 200);
    CHECK(backend.health->expected_status_max == 200);
    CHECK(backend.passive.max_fails == 7);
    CHECK(backend.passive.fail_timeout == 1min);
    CHECK(backend.retries == 0);
    CHECK(backend.request_buffering);
    CHECK(backend.timeouts.connect == std::optional<cfg::duration>(3s));
    CHECK(backend.timeouts.response == std::optional<cfg::duration>(2min));

    const auto& frontend = c.upstreams[1];
    CHECK(frontend.name == "frontend");
    REQUIRE(frontend.servers.size() == 1);
    CHECK(frontend.servers[0].endpoint == cfg::host_port{"::1", 5173});

    CHECK(c.timeouts.client_header == 11s);
    CHECK(c.timeouts.client_body == 12s);
    CHECK(c.timeouts.client_idle == 13s);
    CHECK(c.timeouts.upstream_connect == 14s);
    CHECK(c.timeouts.upstream_response == 15s);
    CHECK(c.timeouts.tunnel_idle == 2h);
    CHECK(c.timeouts.shutdown_grace == 0s);
    CHECK(c.limits.max_header_bytes == 16 * 1024);
    CHECK(c.limits.max_body_bytes == 1024ULL * 1024 * 1024);
    CHECK(c.limits.max_connections == 10000);
    CHECK(c.request_id.header == "X-Correlation-ID");
    CHECK_FALSE(c.request_id.trust_incoming);
    REQUIRE(c.forwarded.trusted_proxies.size() == 2);
    CHECK(c.forwarded.trusted_proxies[0].text == "10.0.0.0/8");
    CHECK(c.forwarded.trusted_proxies[0].prefix_len == 8);
    CHECK(c.forwarded.trusted_proxies[1].v6);
    CHECK(c.forwarded.trusted_proxies[1].prefix_len == 128);
    CHECK_FALSE(c.access_log.enabled);
    CHECK(c.access_log.path == "/var/log/sluice/access.log");
    CHECK(c.admin.bind == "127.0.0.1:9902");
    CHECK(c.admin.address == cfg::host_port{"127.0.0.1", 9902});
    CHECK(c.resolver == std::optional<cfg::host_port>(cfg::host_port{"10.0.0.2", 53}));
    CHECK(c.watch);
}

TEST_CASE("every value's position is recorded by key path", "[config]") {
    const cfg::config c = load_ok(full_file);
    struct row {
        const char* key;
        int line;
        int column;
    };
    const auto r = GENERATE(values<row>({
        {"workers", 1, 10},
        {"listeners[0]", 4, 5},
        {"listeners[0].bind", 5, 11},
        {"listeners[0].routes[1].redirect.port", 12, 42},
        {"listeners[1].tls.certificates[1].key_file", 22, 21},
        {"upstreams[0].servers[1].address", 34, 18},
        {"timeouts.client_header", 57, 18},
        {"config.watch", 87, 10},
    }));
    CAPTURE(r.key);
    const auto it = c.positions.find(r.key);
    REQUIRE(it != c.positions.end());
    CHECK(it->second == cfg::position{r.line, r.column});
}

TEST_CASE("error_at places later errors at the value or its nearest written parent", "[config]") {
    const cfg::config c = load_ok(full_file);
    const auto e = cfg::error_at(c, "listeners[1].tls.certificates[0].cert_file", "cannot read");
    CHECK(cfg::to_string(e) ==
          "t.yaml:19:22: listeners[1].tls.certificates[0].cert_file: cannot read");
    // Not written (a default): placed at the parent that was.
    CHECK(cfg::to_string(cfg::error_at(c, "upstreams[1].health_check.path", "x")) ==
          "t.yaml:52:5: upstreams[1].health_check.path: x");
    CHECK(cfg::to_string(cfg::error_at(c, "nowhere.at.all", "x")) ==
          "t.yaml:1:1: nowhere.at.all: x");
}

TEST_CASE("an upstream's tls: defaults and values", "[config]") {
    const cfg::config c = load_ok("listeners:\n"
                                  "  - name: public\n"
                                  "    bind: \"0.0.0.0:8080\"\n"
                                  "upstreams:\n"
                                  "  - name: plain\n"
                                  "    servers: [{address: \"127.0.0.1:9001\"}]\n"
                                  "  - name: defaults\n"
                                  "    servers: [{address: \"api:443\"}]\n"
                                  "    tls: {}\n"
                                  "  - name: set\n"
                                  "    servers: [{address: \"10.0.0.1:443\"}]\n"
                                  "    tls: { verify: false, ca_file: /etc/ca.pem, server_name: "
                                  "api.internal }\n");
    REQUIRE(c.upstreams.size() == 3);
    CHECK_FALSE(c.upstreams[0].tls.has_value());
    REQUIRE(c.upstreams[1].tls.has_value());
    CHECK(c.upstreams[1].tls->verify);
    CHECK(c.upstreams[1].tls->ca_file.empty());
    CHECK(c.upstreams[1].tls->server_name.empty());
    REQUIRE(c.upstreams[2].tls.has_value());
    CHECK_FALSE(c.upstreams[2].tls->verify);
    CHECK(c.upstreams[2].tls->ca_file == "/etc/ca.pem");
    CHECK(c.upstreams[2].tls->server_name == "api.internal");
}

TEST_CASE("a minimal file gets every default", "[config]") {
    const cfg::config c = load_ok("listeners:\n"
                                  "  - name: public\n"
                                  "    bind: \"0.0.0.0:8080\"\n"
                                  "    routes:\n"
                                  "      - match: {}\n"
                                  "        upstream: backend\n"
                                  "      - match: {}\n"
                                  "        redirect: {}\n"
                                  "      - match: {}\n"
                                  "        respond: {}\n"
                                  "upstreams:\n"
                                  "  - name: backend\n"
                                  "    servers:\n"
                                  "      - address: \"127.0.0.1:9001\"\n"
                                  "    health_check: {}\n");
    CHECK(c.workers == cfg::available_cpus());
    REQUIRE(c.listeners.size() == 1);
    const auto& l = c.listeners[0];
    CHECK_FALSE(l.tls.has_value());
    REQUIRE(l.routes.size() == 3);
    CHECK(l.routes[0].match.host.empty());
    CHECK(l.routes[0].match.path_prefix == "/");
    const auto& redirect = std::get<cfg::redirect_action>(l.routes[1].action);
    CHECK(redirect.scheme == "https");
    CHECK_FALSE(redirect.port.has_value());
    CHECK(redirect.status == 308);
    const auto& respond = std::get<cfg::respond_action>(l.routes[2].action);
    CHECK(respond.status == 200);
    CHECK(respond.body.empty());

    REQUIRE(c.upstreams.size() == 1);
    const auto& u = c.upstreams[0];
    CHECK(u.balance == cfg::balance_policy::round_robin);
    CHECK(u.servers[0].weight == 1);
    CHECK(u.resolve_interval == 10s);
    REQUIRE(u.health.has_value());
    CHECK(u.health->path == "/healthz");
    CHECK(u.health->host.empty());
    CHECK(u.health->interval == 2s);
    CHECK(u.health->timeout == 1s);
    CHECK(u.health->healthy_threshold == 2);
    CHECK(u.health->unhealthy_threshold == 3);
    CHECK(u.health->expected_status_min == 200);
    CHECK(u.health->expected_status_max == 399);
    CHECK(u.passive.max_fails == 3);
    CHECK(u.passive.fail_timeout == 10s);
    CHECK(u.retries == 2);
    CHECK_FALSE(u.request_buffering);
    CHECK_FALSE(u.timeouts.connect.has_value());
    CHECK_FALSE(u.timeouts.response.has_value());

    CHECK(c.timeouts.client_header == 10s);
    CHECK(c.timeouts.client_body == 60s);
    CHECK(c.timeouts.client_idle == 60s);
    CHECK(c.timeouts.upstream_connect == 5s);
    CHECK(c.timeouts.upstream_response == 120s);
    CHECK(c.timeouts.tunnel_idle == 1h);
    CHECK(c.timeouts.shutdown_grace == 30s);
    CHECK(c.limits.max_header_bytes == 32 * 1024);
    CHECK(c.limits.max_body_bytes == 0);
    CHECK(c.limits.max_connections == 0);
    CHECK(c.request_id.header == "X-Request-ID");
    CHECK(c.request_id.trust_incoming);
    CHECK(c.forwarded.trusted_proxies.empty());
    CHECK(c.access_log.enabled);
    CHECK(c.access_log.path == "stdout");
    CHECK(c.admin.bind == "127.0.0.1:9901");
    CHECK(c.admin.address == cfg::host_port{"127.0.0.1", 9901});
    CHECK_FALSE(c.resolver.has_value());
    CHECK_FALSE(c.watch);
}

TEST_CASE("a listener without routes, upstreams or optional sections is valid", "[config]") {
    const cfg::config c = load_ok(listener);
    CHECK(c.listeners[0].routes.empty());
    CHECK(c.upstreams.empty());
}

TEST_CASE("workers is an integer or auto", "[config]") {
    CHECK(load_ok(listener + "workers: auto\n").workers == cfg::available_cpus());
    CHECK(load_ok(listener + "workers: 1\n").workers == 1);
    CHECK(load_ok(listener + "workers: \"8\"\n").workers == 8);
}

TEST_CASE("route host patterns are stored lowercase without a port", "[config]") {
    struct row {
        const char* written;
        const char* stored;
    };
    const auto r = GENERATE(values<row>({
        {"api.example.com", "api.example.com"},
        {"API.Example.COM", "api.example.com"},
        {"api.example.com:8080", "api.example.com"},
        {"*.Example.com", "*.example.com"},
        {"*.example.com:443", "*.example.com"},
        {"localhost", "localhost"},
        {"10.0.0.1:8080", "10.0.0.1"},
        {"[::1]:8080", "[::1]"},
        {"[::1]", "[::1]"},
        {"", ""},
    }));
    CAPTURE(r.written);
    const auto c = load_ok(listener + "    routes:\n      - match: { host: \"" + r.written +
                           "\" }\n        respond: {}\n");
    CHECK(c.listeners[0].routes[0].match.host == r.stored);
}

TEST_CASE("YAML booleans are only true and false", "[config]") {
    CHECK(load_ok(listener + "config: { watch: True }\n").watch);
    CHECK_FALSE(load_ok(listener + "config: { watch: FALSE }\n").watch);
    CHECK(load_errors(listener + "config: { watch: yes }\n") ==
          std::vector<std::string>{
              "t.yaml:4:18: config.watch: expected a boolean (true or false), got \"yes\""});
}

// One snippet per class of error, with every message it must produce, in order.
TEST_CASE("each class of error is reported with file:line:col, key path and message", "[config]") {
    struct row {
        const char* name;
        std::string yaml;
        std::vector<std::string> expected;
    };
    const auto r = GENERATE_COPY(values<row>({
        {"empty file",
         "",
         {"t.yaml:1:1: the configuration is empty; expected a mapping with at least "
          "\"listeners\""}},
        {"only comments",
         "# nothing\n",
         {"t.yaml:1:1: the configuration is empty; expected a mapping with at least "
          "\"listeners\""}},
        {"top level is a sequence",
         "- a\n- b\n",
         {"t.yaml:1:1: expected a mapping at the top level, got a sequence"}},
        {"top level is a scalar",
         "hello\n",
         {"t.yaml:1:1: expected a mapping at the top level, got \"hello\""}},
        {"YAML syntax error", "listeners: [\n", {"t.yaml:2:1: end of sequence flow not found"}},
        {"YAML syntax error: a map value in a plain scalar",
         "a: b: c\n",
         {"t.yaml:1:5: illegal map value"}},
        {"YAML syntax error: bad indentation",
         "listeners:\n  - name: a\n   bind: b\n",
         {"t.yaml:3:4: end of sequence not found"}},
        {"unknown key, with a suggestion",
         "listeners:\n  - name: public\n    bnid: \"0.0.0.0:80\"\n    bind: \"0.0.0.0:80\"\n",
         {"t.yaml:3:5: listeners[0].bnid: unknown key \"bnid\" (did you mean \"bind\"?)"}},
        {"unknown key, no suggestion",
         listener + "color: blue\n",
         {"t.yaml:4:1: color: unknown key \"color\""}},
        {"unknown top-level key, close to one",
         listener + "timeout: {}\n",
         {"t.yaml:4:1: timeout: unknown key \"timeout\" (did you mean \"timeouts\"?)"}},
        {"duplicate key",
         listener + "workers: 2\nworkers: 3\n",
         {"t.yaml:5:1: workers: duplicate key \"workers\""}},
        {"listeners missing",
         "workers: 2\n",
         {"t.yaml:1:1: listeners: missing required key \"listeners\""}},
        {"listeners empty",
         "listeners: []\n",
         {"t.yaml:1:12: listeners: at least one listener is required"}},
        {"listeners not a sequence",
         "listeners: {name: a}\n",
         {"t.yaml:1:12: listeners: expected a sequence, got a mapping"}},
        {"listener not a mapping",
         "listeners:\n  - public\n",
         {"t.yaml:2:5: listeners[0]: expected a mapping, got \"public\""}},
        {"listener name and bind missing",
         "listeners:\n  - routes: []\n",
         {"t.yaml:2:5: listeners[0].name: missing required key \"name\"",
          "t.yaml:2:5: listeners[0].bind: missing required key \"bind\""}},
        {"listener name empty",
         "listeners:\n  - name: \"\"\n    bind: \":80\"\n",
         {"t.yaml:2:11: listeners[0].name: must not be empty",
          "t.yaml:3:11: listeners[0].bind: expected host:port, got \":80\""}},
        {"listener name is a sequence",
         "listeners:\n  - name: [a]\n    bind: \"0.0.0.0:1\"\n",
         {"t.yaml:2:11: listeners[0].name: expected a string, got a sequence"}},
        {"bind not host:port",
         "listeners:\n  - name: a\n    bind: backend\n",
         {"t.yaml:3:11: listeners[0].bind: expected host:port, got \"backend\""}},
        {"bind with an unbracketed IPv6 address",
         "listeners:\n  - name: a\n    bind: \"::1:80\"\n",
         {"t.yaml:3:11: listeners[0].bind: expected host:port, got \"::1:80\""}},
        {"bind with a port too large",
         "listeners:\n  - name: a\n    bind: \"host:99999\"\n",
         {"t.yaml:3:11: listeners[0].bind: expected host:port, got \"host:99999\""}},
        {"bind left empty",
         "listeners:\n  - name: a\n    bind:\n",
         {"t.yaml:3:5: listeners[0].bind: expected host:port, got nothing"}},
        {"duplicate listener names",
         "listeners:\n  - name: a\n    bind: \"0.0.0.0:1\"\n  - name: a\n    bind: \"0.0.0.0:2\"\n",
         {"t.yaml:4:11: listeners[1].name: duplicate listener name \"a\" (first at line 2)"}},
        {"duplicate listener binds",
         "listeners:\n  - name: a\n    bind: \"0.0.0.0:1\"\n  - name: b\n    bind: \"0.0.0.0:1\"\n",
         {"t.yaml:5:11: listeners[1].bind: duplicate bind \"0.0.0.0:1\" (first at line 3)"}},
        {"listener binds overlapping a wildcard",
         "listeners:\n  - name: a\n    bind: \"0.0.0.0:1\"\n  - name: b\n    bind: "
         "\"127.0.0.1:1\"\n",
         {"t.yaml:5:11: listeners[1].bind: bind \"127.0.0.1:1\" overlaps \"0.0.0.0:1\" of "
          "listeners[0].bind (first at line 3)"}},
        {"tls without certificates",
         "listeners:\n  - name: a\n    bind: \"0.0.0.0:1\"\n    tls: { min_version: \"1.2\" }\n",
         {"t.yaml:4:10: listeners[0].tls.certificates: missing required key \"certificates\""}},
        {"tls with an empty certificate list",
         "listeners:\n  - name: a\n    bind: \"0.0.0.0:1\"\n    tls:\n      certificates: []\n",
         {"t.yaml:5:21: listeners[0].tls.certificates: at least one certificate is required"}},
        {"certificate without key_file",
         "listeners:\n  - name: a\n    bind: \"0.0.0.0:1\"\n    tls:\n      certificates:\n        "
         "- cert_file: a.crt\n",
         {"t.yaml:6:11: listeners[0].tls.certificates[0].key_file: missing required key "
          "\"key_file\""}},
        {"tls min_version",
         "listeners:\n  - name: a\n    bind: \"0.0.0.0:1\"\n    tls:\n      certificates: "
         "[{cert_file: a, key_file: b}]\n      min_version: 1.1\n",
         {"t.yaml:6:20: listeners[0].tls.min_version: must be \"1.2\" or \"1.3\", got \"1.1\""}},
        {"route without match",
         listener + "    routes:\n      - upstream: x\n",
         {"t.yaml:5:9: listeners[0].routes[0].match: missing required key \"match\"",
          "t.yaml:5:19: listeners[0].routes[0].upstream: unknown upstream \"x\""}},
        {"route without action",
         listener + "    routes:\n      - match: { path_prefix: / }\n",
         {"t.yaml:5:9: listeners[0].routes[0]: a route needs one of \"upstream\", \"redirect\" or "
          "\"respond\""}},
        {"route with two actions",
         listener + "    routes:\n      - match: {}\n        respond: {}\n        redirect: {}\n",
         {"t.yaml:7:9: listeners[0].routes[0].redirect: a route takes only one of \"upstream\", "
          "\"redirect\" or \"respond\", and it already has \"respond\""}},
        {"route naming an unknown upstream",
         listener + "    routes:\n      - match: {}\n        upstream: bakend\nupstreams:\n  - "
                    "name: backend\n    servers: [{address: \"a:1\"}]\n",
         {"t.yaml:6:19: listeners[0].routes[0].upstream: unknown upstream \"bakend\" (did you mean "
          "\"backend\"?)"}},
        {"path_prefix without a leading slash",
         listener + "    routes:\n      - match: { path_prefix: api/ }\n        respond: {}\n",
         {"t.yaml:5:31: listeners[0].routes[0].match.path_prefix: must start with \"/\", got "
          "\"api/\""}},
        {"host with a misplaced wildcard",
         listener + "    routes:\n      - match: { host: \"api.*.com\" }\n        respond: {}\n",
         {"t.yaml:5:24: listeners[0].routes[0].match.host: invalid host pattern \"api.*.com\": "
          "\"*\" is only allowed as a whole first label, as in \"*.example.com\""}},
        {"host with a partial wildcard label",
         listener +
             "    routes:\n      - match: { host: \"*api.example.com\" }\n        respond: {}\n",
         {"t.yaml:5:24: listeners[0].routes[0].match.host: invalid host pattern "
          "\"*api.example.com\": \"*\" is only allowed as a whole first label, as in "
          "\"*.example.com\""}},
        {"host that is only a wildcard",
         listener + "    routes:\n      - match: { host: \"*.\" }\n        respond: {}\n",
         {"t.yaml:5:24: listeners[0].routes[0].match.host: invalid host pattern \"*.\": nothing "
          "after \"*.\""}},
        {"host with a bad port",
         listener + "    routes:\n      - match: { host: \"a.com:x\" }\n        respond: {}\n",
         {"t.yaml:5:24: listeners[0].routes[0].match.host: invalid host pattern \"a.com:x\""}},
        {"host with a bad IPv6 literal",
         listener + "    routes:\n      - match: { host: \"[::g]\" }\n        respond: {}\n",
         {"t.yaml:5:24: listeners[0].routes[0].match.host: invalid host pattern \"[::g]\""}},
        {"host that is an unbracketed IPv6 literal",
         listener + "    routes:\n      - match: { host: \"::1\" }\n        respond: {}\n",
         {"t.yaml:5:24: listeners[0].routes[0].match.host: invalid host pattern \"::1\""}},
        {"non-string key",
         listener + "[a, b]: 1\n",
         {"t.yaml:4:1: expected a string key, got a sequence"}},
        {"host with a space",
         listener + "    routes:\n      - match: { host: \"a b\" }\n        respond: {}\n",
         {"t.yaml:5:24: listeners[0].routes[0].match.host: invalid host pattern \"a b\""}},
        {"redirect status",
         listener + "    routes:\n      - match: {}\n        redirect: { status: 303, scheme: ftp, "
                    "port: 0 }\n",
         {"t.yaml:6:29: listeners[0].routes[0].redirect.status: must be one of 301, 302, 307 or "
          "308, got 303",
          "t.yaml:6:42: listeners[0].routes[0].redirect.scheme: must be \"http\" or \"https\", got "
          "\"ftp\"",
          "t.yaml:6:53: listeners[0].routes[0].redirect.port: must be between 1 and 65535, got 0"}},
        {"respond status",
         listener + "    routes:\n      - match: {}\n        respond: { status: 99, body: [] }\n",
         {"t.yaml:6:28: listeners[0].routes[0].respond.status: must be between 100 and 599, got 99",
          "t.yaml:6:38: listeners[0].routes[0].respond.body: expected a string, got a sequence"}},
        {"upstreams not a sequence",
         listener + "upstreams: backend\n",
         {"t.yaml:4:12: upstreams: expected a sequence, got \"backend\""}},
        {"upstream name and servers missing",
         listener + "upstreams:\n  - balance: least_conn\n",
         {"t.yaml:5:5: upstreams[0].name: missing required key \"name\"",
          "t.yaml:5:5: upstreams[0].servers: missing required key \"servers\""}},
        {"upstream servers empty",
         listener + "upstreams:\n  - name: b\n    servers: []\n",
         {"t.yaml:6:14: upstreams[0].servers: at least one server is required"}},
        {"server address missing",
         listener + "upstreams:\n  - name: b\n    servers:\n      - weight: 2\n",
         {"t.yaml:7:9: upstreams[0].servers[0].address: missing required key \"address\""}},
        {"server address not host:port",
         listener + "upstreams:\n  - name: b\n    servers:\n      - address: \"127.0.0.1:9001\"\n  "
                    "    - address: backend\n",
         {"t.yaml:8:18: upstreams[0].servers[1].address: expected host:port, got \"backend\""}},
        {"server address with port 0",
         listener + "upstreams:\n  - name: b\n    servers: [{address: \"10.0.0.1:0\"}]\n",
         {"t.yaml:6:25: upstreams[0].servers[0].address: expected a port from 1 to 65535, got "
          "\"10.0.0.1:0\""}},
        {"duplicate server",
         listener +
             "upstreams:\n  - name: b\n    servers: [{address: \"a:1\"}, {address: \"A:1\"}]\n",
         {"t.yaml:6:43: upstreams[0].servers[1].address: duplicate server \"A:1\" in this upstream "
          "(first at line 6)"}},
        {"server weight",
         listener + "upstreams:\n  - name: b\n    servers:\n      - { address: \"a:1\", weight: "
                    "1001 }\n      - { address: \"a:2\", weight: heavy }\n",
         {"t.yaml:7:35: upstreams[0].servers[0].weight: must be between 1 and 1000, got 1001",
          "t.yaml:8:35: upstreams[0].servers[1].weight: expected an integer, got \"heavy\""}},
        {"duplicate upstream names",
         listener + "upstreams:\n  - name: b\n    servers: [{address: \"a:1\"}]\n  - name: b\n    "
                    "servers: [{address: \"a:1\"}]\n",
         {"t.yaml:7:11: upstreams[1].name: duplicate upstream name \"b\" (first at line 5)"}},
        {"balance",
         listener +
             "upstreams:\n  - name: b\n    balance: random\n    servers: [{address: \"a:1\"}]\n",
         {"t.yaml:6:14: upstreams[0].balance: must be \"round_robin\" or \"least_conn\", got "
          "\"random\""}},
        {"retries and request_buffering",
         listener + "upstreams:\n  - name: b\n    servers: [{address: \"a:1\"}]\n    retries: -1\n "
                    "   request_buffering: 1\n",
         {"t.yaml:7:14: upstreams[0].retries: must be at least 0, got -1",
          "t.yaml:8:24: upstreams[0].request_buffering: expected a boolean (true or false), got "
          "\"1\""}},
        {"resolve_interval",
         listener + "upstreams:\n  - name: b\n    servers: [{address: \"a:1\"}]\n    "
                    "resolve_interval: 1.5s\n",
         {"t.yaml:7:23: upstreams[0].resolve_interval: expected a duration like \"250ms\", \"5s\", "
          "\"2m\" or \"1h\", got \"1.5s\""}},
        {"health check values",
         listener +
             "upstreams:\n  - name: b\n    servers: [{address: \"a:1\"}]\n    health_check:\n      "
             "path: healthz\n      interval: 0s\n      healthy_threshold: 0\n      "
             "unhealthy_threshold: 0\n      expected_status: \"399-200\"\n",
         {"t.yaml:8:13: upstreams[0].health_check.path: must start with \"/\", got \"healthz\"",
          "t.yaml:9:17: upstreams[0].health_check.interval: must be greater than 0s",
          "t.yaml:10:26: upstreams[0].health_check.healthy_threshold: must be at least 1, got 0",
          "t.yaml:11:28: upstreams[0].health_check.unhealthy_threshold: must be at least 1, got 0",
          "t.yaml:12:24: upstreams[0].health_check.expected_status: expected a status or a range "
          "of statuses like \"200-399\", got \"399-200\""}},
        {"health check not a mapping",
         listener + "upstreams:\n  - name: b\n    servers: [{address: \"a:1\"}]\n    health_check: "
                    "/healthz\n",
         {"t.yaml:7:19: upstreams[0].health_check: expected a mapping, got \"/healthz\""}},
        {"expected_status out of range",
         listener + "upstreams:\n  - name: b\n    servers: [{address: \"a:1\"}]\n    health_check: "
                    "{ expected_status: 600 }\n",
         {"t.yaml:7:38: upstreams[0].health_check.expected_status: expected a status or a range of "
          "statuses like \"200-399\", got \"600\""}},
        {"passive",
         listener + "upstreams:\n  - name: b\n    servers: [{address: \"a:1\"}]\n    passive: { "
                    "max_fails: 0, fail_timeout: 10 }\n",
         {"t.yaml:7:27: upstreams[0].passive.max_fails: must be at least 1, got 0",
          "t.yaml:7:44: upstreams[0].passive.fail_timeout: expected a duration like \"250ms\", "
          "\"5s\", \"2m\" or \"1h\", got \"10\""}},
        {"upstream timeouts",
         listener + "upstreams:\n  - name: b\n    servers: [{address: \"a:1\"}]\n    timeouts: { "
                    "connect: 0s, read: 5s }\n",
         {"t.yaml:7:26: upstreams[0].timeouts.connect: must be greater than 0s",
          "t.yaml:7:30: upstreams[0].timeouts.read: unknown key \"read\""}},
        {"upstream tls",
         listener + "upstreams:\n  - name: b\n    servers: [{address: \"a:1\"}]\n    tls: { "
                    "verify: maybe, ca: x }\n",
         {"t.yaml:7:20: upstreams[0].tls.verify: expected a boolean (true or false), got \"maybe\"",
          "t.yaml:7:27: upstreams[0].tls.ca: unknown key \"ca\""}},
        {"global timeouts",
         listener + "timeouts:\n  client_header: 5\n  tunnel_idle: -1s\n  client_idle: 0s\n",
         {"t.yaml:5:18: timeouts.client_header: expected a duration like \"250ms\", \"5s\", \"2m\" "
          "or \"1h\", got \"5\"",
          "t.yaml:6:16: timeouts.tunnel_idle: expected a duration like \"250ms\", \"5s\", \"2m\" "
          "or \"1h\", got \"-1s\"",
          "t.yaml:7:16: timeouts.client_idle: must be greater than 0s"}},
        {"timeouts not a mapping",
         listener + "timeouts: 5s\n",
         {"t.yaml:4:11: timeouts: expected a mapping, got \"5s\""}},
        {"limits",
         listener +
             "limits:\n  max_header_bytes: 0\n  max_body_bytes: 16kb\n  max_connections: 1KiB\n",
         {"t.yaml:5:21: limits.max_header_bytes: must be greater than 0",
          "t.yaml:6:19: limits.max_body_bytes: expected a size like \"512\", \"16KiB\" or "
          "\"1MiB\", got \"16kb\"",
          "t.yaml:7:20: limits.max_connections: expected an integer, got \"1KiB\""}},
        {"request_id header empty",
         listener + "request_id: { header: \"\" }\n",
         {"t.yaml:4:23: request_id.header: must not be empty"}},
        {"request_id header not a token",
         listener + "request_id: { header: \"X Request ID\", trust_incoming: maybe }\n",
         {"t.yaml:4:23: request_id.header: invalid header name \"X Request ID\"",
          "t.yaml:4:55: request_id.trust_incoming: expected a boolean (true or false), got "
          "\"maybe\""}},
        {"trusted proxies",
         listener + "forwarded:\n  trusted_proxies:\n    - 10.0.0.0/8\n    - 10.0.0.0/33\n    - "
                    "proxy.local\n",
         {"t.yaml:7:7: forwarded.trusted_proxies[1]: expected a CIDR like \"10.0.0.0/8\" or an IP "
          "address, got \"10.0.0.0/33\"",
          "t.yaml:8:7: forwarded.trusted_proxies[2]: expected a CIDR like \"10.0.0.0/8\" or an IP "
          "address, got \"proxy.local\""}},
        {"trusted proxies left empty",
         listener + "forwarded:\n  trusted_proxies:\n",
         {"t.yaml:5:3: forwarded.trusted_proxies: expected a sequence, got nothing"}},
        {"access_log",
         listener + "access_log: { enabled: 1, path: \"\" }\n",
         {"t.yaml:4:24: access_log.enabled: expected a boolean (true or false), got \"1\"",
          "t.yaml:4:33: access_log.path: must not be empty"}},
        {"admin bind equal to a listener bind",
         listener + "admin: { bind: \"0.0.0.0:8080\" }\n",
         {"t.yaml:4:16: admin.bind: \"0.0.0.0:8080\" overlaps the bind \"0.0.0.0:8080\" of "
          "listener \"public\"; the admin listener must not be reachable on a public listener's "
          "address"}},
        {"admin bind overlapping a wildcard listener",
         listener + "admin: { bind: \"127.0.0.1:8080\" }\n",
         {"t.yaml:4:16: admin.bind: \"127.0.0.1:8080\" overlaps the bind \"0.0.0.0:8080\" of "
          "listener \"public\"; the admin listener must not be reachable on a public listener's "
          "address"}},
        {"admin bind not host:port",
         listener + "admin: { bind: 9901 }\n",
         {"t.yaml:4:16: admin.bind: expected host:port, got \"9901\""}},
        {"resolver not an ip:port",
         listener + "resolver: \"dns.google:53\"\n",
         {"t.yaml:4:11: resolver: expected ip:port, got \"dns.google:53\""}},
        {"resolver port 0",
         listener + "resolver: \"8.8.8.8:0\"\n",
         {"t.yaml:4:11: resolver: expected ip:port, got \"8.8.8.8:0\""}},
        {"workers", listener + "workers: 0\n", {"t.yaml:4:10: workers: must be at least 1, got 0"}},
        {"workers not a number",
         listener + "workers: many\n",
         {"t.yaml:4:10: workers: expected an integer >= 1 or \"auto\", got \"many\""}},
        {"workers too large",
         listener + "workers: 99999999999\n",
         {"t.yaml:4:10: workers: must be at most 2147483647, got 99999999999"}},
        {"config section",
         listener + "config: { watch: true, poll: 1s }\n",
         {"t.yaml:4:24: config.poll: unknown key \"poll\""}},
    }));
    CAPTURE(r.name, r.yaml);
    CHECK(load_errors(r.yaml) == r.expected);
}

TEST_CASE("several different errors are all reported, in file order", "[config]") {
    const auto errors = load_errors("listeners:\n"
                                    "  - name: public\n"
                                    "    bind: \"0.0.0.0:8080\"\n"
                                    "    routes:\n"
                                    "      - match: {}\n"
                                    "        upstream: nowhere\n"
                                    "upstreams:\n"
                                    "  - name: backend\n"
                                    "    servers:\n"
                                    "      - address: \"127.0.0.1:9001\"\n"
                                    "        wieght: 2\n"
                                    "timeouts:\n"
                                    "  client_header: 10\n");
    CHECK(errors ==
          std::vector<std::string>{
              "t.yaml:6:19: listeners[0].routes[0].upstream: unknown upstream \"nowhere\"",
              "t.yaml:11:9: upstreams[0].servers[0].wieght: unknown key \"wieght\" (did "
              "you mean \"weight\"?)",
              "t.yaml:13:18: timeouts.client_header: expected a duration like \"250ms\", "
              "\"5s\", \"2m\" or \"1h\", got \"10\"",
          });
}

TEST_CASE("to_string omits an empty key", "[config]") {
    CHECK(cfg::to_string({"a.yaml", 3, 4, "k.x", "bad"}) == "a.yaml:3:4: k.x: bad");
    CHECK(cfg::to_string({"a.yaml", 1, 1, "", "bad"}) == "a.yaml:1:1: bad");
}

namespace {

// A directory under the system temp dir, removed with everything in it at scope exit.
struct temp_dir {
    std::filesystem::path path;
    temp_dir() {
        std::string pattern = (std::filesystem::temp_directory_path() / "sluice-config-XXXXXX");
        REQUIRE(::mkdtemp(pattern.data()) != nullptr);
        path = pattern;
    }
    ~temp_dir() {
        std::error_code ignored;
        std::filesystem::remove_all(path, ignored);
    }
};

} // namespace

TEST_CASE("load_file reads a real file and names it in errors", "[config]") {
    const temp_dir dir;
    const auto file = (dir.path / "sluice.yaml").string();
    {
        std::ofstream out(file);
        out << full_file;
    }
    auto result = cfg::load_file(file);
    REQUIRE(std::holds_alternative<cfg::config>(result));
    const auto& c = std::get<cfg::config>(result);
    CHECK(c.path == file);
    CHECK(c.listeners.size() == 2);
    CHECK(c.upstreams.size() == 2);

    {
        std::ofstream out(file);
        out << "listeners:\n  - name: a\n    bind: backend\n";
    }
    result = cfg::load_file(file);
    REQUIRE(std::holds_alternative<std::vector<cfg::error>>(result));
    CHECK(messages(std::get<std::vector<cfg::error>>(result)) ==
          std::vector<std::string>{
              file + ":3:11: listeners[0].bind: expected host:port, got \"backend\""});
}

TEST_CASE("load_file reports a file it cannot read as one error", "[config]") {
    const temp_dir dir;
    const auto missing = (dir.path / "missing.yaml").string();
    auto result = cfg::load_file(missing);
    REQUIRE(std::holds_alternative<std::vector<cfg::error>>(result));
    CHECK(messages(std::get<std::vector<cfg::error>>(result)) ==
          std::vector<std::string>{missing +
                                   ":1:1: cannot read config file: " + std::strerror(ENOENT)});

    // A directory opens but cannot be read.
    result = cfg::load_file(dir.path.string());
    REQUIRE(std::holds_alternative<std::vector<cfg::error>>(result));
    CHECK(messages(std::get<std::vector<cfg::error>>(result)) ==
          std::vector<std::string>{dir.path.string() +
                                   ":1:1: cannot read config file: " + std::strerror(EISDIR)});
}

TEST_CASE("load_string never throws, whatever the input", "[config]") {
    const char* yaml =
        GENERATE("\t\t", "{", "[[[[", "a: b: c", "? [a]\n: b\n", "&a [*a]\n",
                 "listeners: !!binary AAAA\n", "\xff\xfe", "--- !\n", "listeners:\n  - *missing\n");
    CAPTURE(yaml);
    CHECK_NOTHROW(cfg::load_string(yaml, "t.yaml"));
}
