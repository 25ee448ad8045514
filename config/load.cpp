// YAML -> config::config (SPEC section 2): the schema. The generic reading (types, positions,
// unknown keys) is in yaml_reader.cpp.
//
// Every section is read field by field; a field that is wrong produces an error with the
// line:col where it was written and its key path, keeps its default, and reading goes on, so
// one run reports every problem in the file. Cross-field checks live in validate.cpp.

#include "config/load.hpp"
#include "config/cpus.hpp"
#include "config/yaml_reader.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <system_error>
#include <tuple>

namespace sluice::config {
namespace {

using detail::describe;
using detail::item;
using detail::mapping;
using detail::position_of;
using detail::quote;

// The schema of SPEC section 2, one function per section; every value read through
// yaml_reader, so each is type-checked and its position recorded.
class loader : public detail::yaml_reader {
  public:
    using yaml_reader::yaml_reader;

    void read_root(const YAML::Node& root);

  private:
    void read_workers(const item& it);
    void read_listeners(const mapping& root);
    void read_listener(const item& it, listener& out);
    void read_tls(const item& it, tls_settings& out);
    void read_route(const item& it, route& out);
    void read_match(const item& it, route_match& out);
    void read_action(const mapping& m, route& out);
    void read_redirect(const item& it, redirect_action& out);
    void read_respond(const item& it, respond_action& out);
    void read_upstreams(const mapping& root);
    void read_upstream(const item& it, upstream& out);
    void read_servers(const mapping& m, std::vector<server>& out);
    void read_health(const item& it, health_check& out);
    void read_expected_status(const item& it, health_check& out);
    void read_passive(const item& it, passive_check& out);
    void read_upstream_timeouts(const item& it, upstream_timeouts& out);
    void read_upstream_tls(const item& it, upstream_tls& out);
    void read_timeouts(const item& it);
    void read_limits(const item& it);
    void read_request_id(const item& it);
    void read_forwarded(const item& it);
    void read_access_log(const item& it);
    void read_admin(const item& it);
    void read_resolver(const item& it);
    void read_config_section(const item& it);
};

// ---- top level ----------------------------------------------------------------------------

// Takes the document root. Fills out_ (defaults stay where a section or key is absent) and
// reports an empty document or a root that is not a mapping.
void loader::read_root(const YAML::Node& root) {
    out_.positions.insert_or_assign("", position{1, 1});
    if (root.IsNull() || !root.IsDefined()) {
        fail({1, 1}, "",
             "the configuration is empty; expected a mapping with at least \"listeners\"");
        return;
    }
    const item top{root, "", position_of(root.Mark())};
    if (!root.IsMap()) {
        fail(top, "expected a mapping at the top level, got " + describe(root));
        return;
    }
    const auto m =
        as_mapping(top, {"workers", "listeners", "upstreams", "timeouts", "limits", "request_id",
                         "forwarded", "access_log", "admin", "resolver", "config"});
    const auto section = [&](std::string_view key, void (loader::*reader)(const item&)) {
        if (const item* it = m->find(key)) {
            (this->*reader)(*it);
        }
    };
    if (m->find("workers") == nullptr)
        out_.workers = available_cpus(); // (only then: it reads /proc and /sys)
    section("workers", &loader::read_workers);
    read_listeners(*m);
    read_upstreams(*m);
    section("timeouts", &loader::read_timeouts);
    section("limits", &loader::read_limits);
    section("request_id", &loader::read_request_id);
    section("forwarded", &loader::read_forwarded);
    section("access_log", &loader::read_access_log);
    section("admin", &loader::read_admin);
    section("resolver", &loader::read_resolver);
    section("config", &loader::read_config_section);
}

// `workers`: an integer >= 1 or "auto" (the default, set by read_root when absent).
void loader::read_workers(const item& it) {
    if (it.node.IsScalar() && it.node.Scalar() == "auto") {
        out_.workers = available_cpus();
        return;
    }
    if (it.node.IsScalar() && !it.node.Scalar().empty() &&
        it.node.Scalar().find_first_not_of("-0123456789") == std::string::npos) {
        if (const auto n = as_integer(it, 1, INT_MAX)) {
            out_.workers = static_cast<int>(*n);
        }
        return;
    }
    fail(it, "expected an integer >= 1 or \"auto\", got " + describe(it.node));
}

// ---- listeners ----------------------------------------------------------------------------

void loader::read_listeners(const mapping& root) {
    const item* it = require(root, "listeners");
    if (it == nullptr) {
        return;
    }
    const auto items = as_sequence(*it);
    if (!items) {
        return;
    }
    if (items->empty()) {
        fail(*it, "at least one listener is required");
    }
    for (const auto& element : *items) {
        read_listener(element, out_.listeners.emplace_back());
    }
}

void loader::read_listener(const item& it, listener& out) {
    const auto m = as_mapping(it, {"name", "bind", "tls", "routes"});
    if (!m) {
        return;
    }
    read_non_empty(*m, "name", out.name, true);
    if (const item* bind = require(*m, "bind")) {
        if (const auto address = as_host_port(*bind, true)) {
            out.bind = bind->node.Scalar();
            out.address = *address;
        }
    }
    if (const item* tls = m->find("tls")) {
        read_tls(*tls, out.tls.emplace());
    }
    if (const item* routes = m->find("routes")) {
        if (const auto items = as_sequence(*routes)) {
            for (const auto& element : *items) {
                read_route(element, out.routes.emplace_back());
            }
        }
    }
}

void loader::read_tls(const item& it, tls_settings& out) {
    const auto m = as_mapping(it, {"certificates", "min_version"});
    if (!m) {
        return;
    }
    if (const item* certs = require(*m, "certificates")) {
        if (const auto items = as_sequence(*certs)) {
            if (items->empty()) {
                fail(*certs, "at least one certificate is required");
            }
            for (const auto& element : *items) {
                const auto cert = as_mapping(element, {"cert_file", "key_file"});
                auto& c = out.certificates.emplace_back();
                if (cert) {
                    read_non_empty(*cert, "cert_file", c.cert_file, true);
                    read_non_empty(*cert, "key_file", c.key_file, true);
                }
            }
        }
    }
    if (const item* version = m->find("min_version")) {
        const auto text = as_string(*version);
        if (text && (*text == "1.2" || *text == "1.3")) {
            out.min_version = *text;
        } else if (text) {
            fail(*version, "must be \"1.2\" or \"1.3\", got " + quote(*text));
        }
    }
}

void loader::read_route(const item& it, route& out) {
    const auto m = as_mapping(it, {"match", "upstream", "redirect", "respond"});
    if (!m) {
        return;
    }
    if (const item* match = require(*m, "match")) {
        read_match(*match, out.match);
    }
    read_action(*m, out);
}

// Exactly one of upstream | redirect | respond. None: reported at the route. More than one:
// reported at each extra key, naming the first one, which is the one read.
void loader::read_action(const mapping& m, route& out) {
    const mapping::entry* first = nullptr;
    for (const auto& e : m.entries) {
        if (e.key != "upstream" && e.key != "redirect" && e.key != "respond") {
            continue;
        }
        if (first != nullptr) {
            fail(e.key_where, e.value.path,
                 "a route takes only one of \"upstream\", \"redirect\" or \"respond\", and it "
                 "already has " +
                     quote(first->key));
            continue;
        }
        first = &e;
    }
    if (first == nullptr) {
        fail(m.where, m.path, "a route needs one of \"upstream\", \"redirect\" or \"respond\"");
    } else if (first->key == "upstream") {
        std::string name;
        read_non_empty(m, "upstream", name, true);
        out.action = std::move(name);
    } else if (first->key == "redirect") {
        read_redirect(first->value, out.action.emplace<redirect_action>());
    } else {
        read_respond(first->value, out.action.emplace<respond_action>());
    }
}

// Takes the `match` mapping; see host_pattern(). path_prefix must start with "/".
void loader::read_match(const item& it, route_match& out) {
    const auto m = as_mapping(it, {"host", "path_prefix"});
    if (!m) {
        return;
    }
    if (const item* host = m->find("host")) {
        if (const auto text = as_string(*host)) {
            std::string problem;
            if (auto pattern = detail::host_pattern(*text, problem)) {
                out.host = std::move(*pattern);
            } else {
                fail(*host, "invalid host pattern " + quote(*text) + problem);
            }
        }
    }
    if (const item* prefix = m->find("path_prefix")) {
        if (auto text = as_string(*prefix)) {
            if (text->starts_with('/')) {
                out.path_prefix = std::move(*text);
            } else {
                fail(*prefix, "must start with \"/\", got " + quote(*text));
            }
        }
    }
}

void loader::read_redirect(const item& it, redirect_action& out) {
    const auto m = as_mapping(it, {"scheme", "port", "status"});
    if (!m) {
        return;
    }
    if (const item* scheme = m->find("scheme")) {
        const auto text = as_string(*scheme);
        if (text && (*text == "http" || *text == "https")) {
            out.scheme = *text;
        } else if (text) {
            fail(*scheme, "must be \"http\" or \"https\", got " + quote(*text));
        }
    }
    if (const item* port = m->find("port")) {
        if (const auto value = as_integer(*port, 1, 65535)) {
            out.port = static_cast<std::uint16_t>(*value);
        }
    }
    if (const item* status = m->find("status")) {
        if (const auto value = as_integer(*status, 0, INT_MAX)) {
            if (*value == 301 || *value == 302 || *value == 307 || *value == 308) {
                out.status = static_cast<int>(*value);
            } else {
                fail(*status, "must be one of 301, 302, 307 or 308, got " + std::to_string(*value));
            }
        }
    }
}

void loader::read_respond(const item& it, respond_action& out) {
    const auto m = as_mapping(it, {"status", "body"});
    if (!m) {
        return;
    }
    read(*m, "status", out.status, 100, 599);
    read(*m, "body", out.body);
}

// ---- upstreams ----------------------------------------------------------------------------

void loader::read_upstreams(const mapping& root) {
    const item* it = root.find("upstreams");
    if (it == nullptr) {
        return;
    }
    if (const auto items = as_sequence(*it)) {
        for (const auto& element : *items) {
            read_upstream(element, out_.upstreams.emplace_back());
        }
    }
}

void loader::read_upstream(const item& it, upstream& out) {
    const auto m = as_mapping(it, {"name", "balance", "servers", "resolve_interval", "health_check",
                                   "passive", "retries", "request_buffering", "timeouts", "tls"});
    if (!m) {
        return;
    }
    read_non_empty(*m, "name", out.name, true);
    if (const item* balance = m->find("balance")) {
        const auto text = as_string(*balance);
        if (text && *text == "round_robin") {
            out.balance = balance_policy::round_robin;
        } else if (text && *text == "least_conn") {
            out.balance = balance_policy::least_conn;
        } else if (text) {
            fail(*balance, "must be \"round_robin\" or \"least_conn\", got " + quote(*text));
        }
    }
    read_servers(*m, out.servers);
    read(*m, "resolve_interval", out.resolve_interval, true);
    if (const item* health = m->find("health_check")) {
        read_health(*health, out.health.emplace());
    }
    if (const item* passive = m->find("passive")) {
        read_passive(*passive, out.passive);
    }
    read(*m, "retries", out.retries, 0, INT_MAX);
    read(*m, "request_buffering", out.request_buffering);
    if (const item* timeouts = m->find("timeouts")) {
        read_upstream_timeouts(*timeouts, out.timeouts);
    }
    if (const item* tls = m->find("tls")) {
        read_upstream_tls(*tls, out.tls.emplace());
    }
}

void loader::read_upstream_tls(const item& it, upstream_tls& out) {
    const auto m = as_mapping(it, {"verify", "ca_file", "server_name"});
    if (!m) {
        return;
    }
    read(*m, "verify", out.verify);
    read(*m, "ca_file", out.ca_file);
    read(*m, "server_name", out.server_name);
}

void loader::read_servers(const mapping& m, std::vector<server>& out) {
    const item* it = require(m, "servers");
    if (it == nullptr) {
        return;
    }
    const auto items = as_sequence(*it);
    if (!items) {
        return;
    }
    if (items->empty()) {
        fail(*it, "at least one server is required");
    }
    for (const auto& element : *items) {
        auto& s = out.emplace_back();
        const auto sm = as_mapping(element, {"address", "weight"});
        if (!sm) {
            continue;
        }
        if (const item* address = require(*sm, "address")) {
            if (const auto endpoint = as_host_port(*address, false)) {
                s.address = address->node.Scalar();
                s.endpoint = *endpoint;
            }
        }
        read(*sm, "weight", s.weight, 1, 1000);
    }
}

void loader::read_health(const item& it, health_check& out) {
    const auto m = as_mapping(it, {"path", "host", "interval", "timeout", "healthy_threshold",
                                   "unhealthy_threshold", "expected_status"});
    if (!m) {
        return;
    }
    if (const item* path = m->find("path")) {
        if (auto text = as_string(*path)) {
            if (text->starts_with('/')) {
                out.path = std::move(*text);
            } else {
                fail(*path, "must start with \"/\", got " + quote(*text));
            }
        }
    }
    read(*m, "host", out.host);
    read(*m, "interval", out.interval, false);
    read(*m, "timeout", out.timeout, false);
    read(*m, "healthy_threshold", out.healthy_threshold, 1, INT_MAX);
    read(*m, "unhealthy_threshold", out.unhealthy_threshold, 1, INT_MAX);
    if (const item* status = m->find("expected_status")) {
        read_expected_status(*status, out);
    }
}

void loader::read_expected_status(const item& it, health_check& out) {
    const auto range =
        it.node.IsScalar() ? detail::parse_status_range(it.node.Scalar()) : std::nullopt;
    if (range) {
        out.expected_status_min = range->first;
        out.expected_status_max = range->second;
    } else {
        fail(it,
             "expected a status or a range of statuses like \"200-399\", got " + describe(it.node));
    }
}

void loader::read_passive(const item& it, passive_check& out) {
    const auto m = as_mapping(it, {"max_fails", "fail_timeout"});
    if (!m) {
        return;
    }
    read(*m, "max_fails", out.max_fails, 1, INT_MAX);
    read(*m, "fail_timeout", out.fail_timeout, true);
}

void loader::read_upstream_timeouts(const item& it, upstream_timeouts& out) {
    const auto m = as_mapping(it, {"connect", "response"});
    if (!m) {
        return;
    }
    if (const item* connect = m->find("connect")) {
        out.connect = as_duration(*connect, false);
    }
    if (const item* response = m->find("response")) {
        out.response = as_duration(*response, false);
    }
}

// ---- global sections ----------------------------------------------------------------------

void loader::read_timeouts(const item& it) {
    const auto m =
        as_mapping(it, {"client_header", "client_body", "client_idle", "upstream_connect",
                        "upstream_response", "tunnel_idle", "shutdown_grace"});
    if (!m) {
        return;
    }
    auto& t = out_.timeouts;
    read(*m, "client_header", t.client_header, false);
    read(*m, "client_body", t.client_body, false);
    read(*m, "client_idle", t.client_idle, false);
    read(*m, "upstream_connect", t.upstream_connect, false);
    read(*m, "upstream_response", t.upstream_response, false);
    read(*m, "tunnel_idle", t.tunnel_idle, false);
    // 0s is meaningful here: stop at once, cutting in-flight requests.
    read(*m, "shutdown_grace", t.shutdown_grace, true);
}

void loader::read_limits(const item& it) {
    const auto m = as_mapping(it, {"max_header_bytes", "max_body_bytes", "max_connections"});
    if (!m) {
        return;
    }
    auto& l = out_.limits;
    if (const item* header = m->find("max_header_bytes")) {
        const auto size = as_size(*header);
        if (size && *size == 0) {
            fail(*header, "must be greater than 0");
        } else if (size) {
            l.max_header_bytes = *size;
        }
    }
    read_size(*m, "max_body_bytes", l.max_body_bytes);
    if (const item* connections = m->find("max_connections")) {
        if (const auto n = as_integer(*connections, 0, LLONG_MAX)) {
            l.max_connections = static_cast<std::uint64_t>(*n);
        }
    }
}

// The header name must be an RFC 9110 token: it is sent on every request and response.
void loader::read_request_id(const item& it) {
    const auto m = as_mapping(it, {"header", "trust_incoming"});
    if (!m) {
        return;
    }
    if (const item* header = m->find("header")) {
        if (auto text = as_string(*header)) {
            const bool token =
                text->find_first_not_of("!#$%&'*+-.^_`|~0123456789"
                                        "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ") ==
                std::string::npos;
            if (text->empty()) {
                fail(*header, "must not be empty");
            } else if (!token) {
                fail(*header, "invalid header name " + quote(*text));
            } else {
                out_.request_id.header = std::move(*text);
            }
        }
    }
    read(*m, "trust_incoming", out_.request_id.trust_incoming);
}

void loader::read_forwarded(const item& it) {
    const auto m = as_mapping(it, {"trusted_proxies"});
    if (!m) {
        return;
    }
    const item* proxies = m->find("trusted_proxies");
    if (proxies == nullptr) {
        return;
    }
    if (const auto items = as_sequence(*proxies)) {
        for (const auto& element : *items) {
            const auto net =
                element.node.IsScalar() ? parse_cidr(element.node.Scalar()) : std::nullopt;
            if (net) {
                out_.forwarded.trusted_proxies.push_back(*net);
            } else {
                fail(element, "expected a CIDR like \"10.0.0.0/8\" or an IP address, got " +
                                  describe(element.node));
            }
        }
    }
}

void loader::read_access_log(const item& it) {
    const auto m = as_mapping(it, {"enabled", "path"});
    if (!m) {
        return;
    }
    read(*m, "enabled", out_.access_log.enabled);
    read_non_empty(*m, "path", out_.access_log.path, false);
}

void loader::read_admin(const item& it) {
    const auto m = as_mapping(it, {"bind"});
    if (!m) {
        return;
    }
    if (const item* bind = m->find("bind")) {
        if (const auto address = as_host_port(*bind, true)) {
            out_.admin.bind = bind->node.Scalar();
            out_.admin.address = *address;
        }
    }
}

// "" (the system's resolver) or "ip:port" with an IP literal: the resolver cannot be looked up
// by name.
void loader::read_resolver(const item& it) {
    const auto text = as_string(it);
    if (!text || text->empty()) {
        return;
    }
    const auto address = parse_host_port(*text);
    const bool ip = address && parse_cidr(address->host).has_value();
    if (!ip || address->port == 0) {
        fail(it, "expected ip:port, got " + quote(*text));
        return;
    }
    out_.resolver = address;
}

void loader::read_config_section(const item& it) {
    const auto m = as_mapping(it, {"watch"});
    if (m) {
        read(*m, "watch", out_.watch);
    }
}

// Parses `yaml` and reads it; YAML syntax errors come back as one error at yaml-cpp's mark.
load_result load_text(const std::string& yaml, const std::string& file_name) {
    config cfg;
    cfg.path = file_name;
    loader reader(file_name, cfg);
    auto& errors = reader.errors();
    try {
        reader.read_root(YAML::Load(yaml));
        // Also after errors: the cross-field checks are written to cope with fields that kept
        // their defaults, and a user fixing a file wants every problem in one go.
        detail::validate(cfg, errors);
    } catch (const YAML::Exception& e) {
        const position where = position_of(e.mark);
        errors.push_back({file_name, where.line, where.column, "", e.msg});
    }
    if (errors.empty()) {
        return cfg;
    }
    std::stable_sort(errors.begin(), errors.end(), [](const error& a, const error& b) {
        return std::tie(a.line, a.column) < std::tie(b.line, b.column);
    });
    return std::move(errors);
}

} // namespace

std::string to_string(const error& e) {
    std::string out = e.file + ":" + std::to_string(e.line) + ":" + std::to_string(e.column) + ": ";
    if (!e.key.empty()) {
        out += e.key + ": ";
    }
    return out + e.message;
}

load_result load_string(std::string_view yaml, const std::string& file_name) {
    try {
        return load_text(std::string(yaml), file_name);
    } catch (const std::exception& e) {
        // Resource failures (std::bad_alloc) only: YAML errors are caught inside. The contract
        // is "never throws", so they become an error too.
        return std::vector<error>{{file_name, 1, 1, "", e.what()}};
    }
}

// Reads the whole file with POSIX calls so the errno (ENOENT, EACCES, EISDIR) reaches the
// message.
load_result load_file(const std::string& path) {
    const auto cannot_read = [&](int err) {
        return std::vector<error>{
            {path, 1, 1, "", "cannot read config file: " + std::generic_category().message(err)}};
    };
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return cannot_read(errno);
    }
    std::string text;
    char buf[16384];
    for (;;) {
        const ssize_t n = ::read(fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            const int err = errno;
            ::close(fd);
            return cannot_read(err);
        }
        if (n == 0) {
            break;
        }
        text.append(buf, static_cast<std::size_t>(n));
    }
    ::close(fd);
    return load_string(text, path);
}

} // namespace sluice::config
