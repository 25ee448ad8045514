#pragma once
// The configuration as plain, immutable values: what config/load.cpp produces
// from the YAML file of SPEC section 2, with every default filled in. No
// yaml-cpp and no Boost here, so every part of the proxy can include it.

#include <array>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <variant>
#include <vector>

namespace sluice::config {

using duration = std::chrono::milliseconds;

// Where a value was written in the configuration file, 1-based.
struct position {
    int line = 0;
    int column = 0;
    bool operator==(const position&) const = default;
};

// "host:port" or "[v6addr]:port", split. `host` is kept as written, without
// brackets; it may be an IP literal or (for upstream servers) a DNS name.
struct host_port {
    std::string host;
    std::uint16_t port = 0;
    bool operator==(const host_port&) const = default;
};

// An IPv4 or IPv6 network in CIDR form ("10.0.0.0/8", "::1/128").
struct cidr {
    std::string text; // as written, for messages and /status
    bool v6 = false;
    std::array<std::uint8_t, 16> addr{}; // network bytes; IPv4 uses the first 4
    int prefix_len = 0;
};

struct certificate {
    std::string cert_file; // PEM, leaf first then chain
    std::string key_file;
};

struct tls_settings {
    std::vector<certificate> certificates; // at least one; the first is the default
    std::string min_version = "1.2";       // "1.2" or "1.3"
};

struct route_match {
    std::string host;              // "" = any; exact or "*.example.com", stored lowercase
    std::string path_prefix = "/"; // literal prefix of the path
};

struct redirect_action {
    std::string scheme = "https";      // "http" or "https"
    std::optional<std::uint16_t> port; // absent => the default port of `scheme`
    int status = 308;                  // 301, 302, 307 or 308
};

struct respond_action {
    int status = 200;
    std::string body;
};

struct route {
    route_match match;
    // Exactly one action: the name of an upstream, a redirect or a fixed answer.
    std::variant<std::string, redirect_action, respond_action> action;
};

struct listener {
    std::string name;
    std::string bind; // as written
    host_port address;
    std::optional<tls_settings> tls;
    std::vector<route> routes;
};

enum class balance_policy { round_robin, least_conn };

struct server {
    std::string address; // as written, "host:port"
    host_port endpoint;
    int weight = 1; // 1..1000
};

struct health_check {
    std::string path = "/healthz";
    std::string host; // "" => the server address
    duration interval = std::chrono::seconds(2);
    duration timeout = std::chrono::seconds(1);
    int healthy_threshold = 2;
    int unhealthy_threshold = 3;
    int expected_status_min = 200; // "200-399"
    int expected_status_max = 399;
};

struct passive_check {
    int max_fails = 3;
    duration fail_timeout = std::chrono::seconds(10);
};

// An upstream reached over HTTPS.
struct upstream_tls {
    bool verify = true;      // verify the server's certificate chain and name
    std::string ca_file;     // PEM bundle to verify with; "" => the system's trust store
    std::string server_name; // SNI and the name checked; "" => the server's host (name or IP)
};

struct upstream_timeouts {
    std::optional<duration> connect;  // absent => timeouts.upstream_connect
    std::optional<duration> response; // absent => timeouts.upstream_response
};

struct upstream {
    std::string name;
    balance_policy balance = balance_policy::round_robin;
    std::vector<server> servers;
    duration resolve_interval = std::chrono::seconds(10);
    std::optional<health_check> health;
    passive_check passive;
    int retries = 2;
    bool request_buffering = false;
    upstream_timeouts timeouts;
    std::optional<upstream_tls> tls; // present => HTTPS to every server
};

struct timeouts {
    duration client_header = std::chrono::seconds(10);
    duration client_body = std::chrono::seconds(60);
    duration client_idle = std::chrono::seconds(60);
    duration upstream_connect = std::chrono::seconds(5);
    duration upstream_response = std::chrono::seconds(120);
    duration tunnel_idle = std::chrono::hours(1);
    duration shutdown_grace = std::chrono::seconds(30);
};

struct limits {
    std::uint64_t max_header_bytes = 32 * 1024;
    std::uint64_t max_body_bytes = 0;  // 0 = unlimited
    std::uint64_t max_connections = 0; // 0 = unlimited
};

struct request_id_settings {
    std::string header = "X-Request-ID";
    bool trust_incoming = true;
};

struct forwarded_settings {
    std::vector<cidr> trusted_proxies;
};

struct access_log_settings {
    bool enabled = true;
    std::string path = "stdout";
};

struct admin_settings {
    std::string bind = "127.0.0.1:9901";
    host_port address{"127.0.0.1", 9901};
};

struct config {
    std::string path; // the file it was loaded from
    int workers = 0;  // resolved: "auto" => available_cpus() (cpus.hpp, >= 1)
    std::vector<listener> listeners;
    std::vector<upstream> upstreams;
    sluice::config::timeouts timeouts; // qualified: the member name hides the type
    sluice::config::limits limits;
    request_id_settings request_id;
    forwarded_settings forwarded;
    access_log_settings access_log;
    admin_settings admin;
    std::optional<host_port> resolver;
    bool watch = false;
    // Where each value was written, by key path ("listeners[0].tls.certificates[0].cert_file",
    // "upstreams[1]", "timeouts.client_header"), so checks made after loading (certificates,
    // binds) can still report file:line:col. Filled by load_file/load_string; see error_at().
    std::map<std::string, position, std::less<>> positions;
};

} // namespace sluice::config
