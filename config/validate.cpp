// Cross-field checks on a loaded config (duplicates, references, overlapping binds), and
// error_at() for placing errors found after loading. Works on values only: positions come from
// config::positions, so no yaml-cpp here.

#include "config/detail.hpp"

#include <algorithm>
#include <map>

namespace sluice::config {
namespace {

using detail::quote;

std::string lowercase(std::string text) {
    std::transform(text.begin(), text.end(), text.begin(),
                   [](char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c + 32) : c; });
    return text;
}

std::string at_line(const config& cfg, const std::string& key) {
    const auto it = cfg.positions.find(key);
    return it == cfg.positions.end() ? std::string{}
                                     : " (first at line " + std::to_string(it->second.line) + ")";
}

std::string item_key(std::string_view section, std::size_t i, std::string_view field) {
    return std::string(section) + "[" + std::to_string(i) + "]." + std::string(field);
}

bool is_wildcard(const std::string& host) {
    return host == "0.0.0.0" || host == "::";
}

// Whether two sockets bound to `a` and `b` would accept on the same address. Port 0 asks the
// kernel for a fresh port, so it never conflicts; a wildcard host covers every host on its port
// (and "::" also takes IPv4 on Linux by default). Worth an error because every worker binds
// with SO_REUSEPORT: an overlap is not refused by the kernel but silently splits connections.
bool binds_overlap(const host_port& a, const host_port& b) {
    if (a.port == 0 || a.port != b.port) {
        return false;
    }
    return lowercase(a.host) == lowercase(b.host) || is_wildcard(a.host) || is_wildcard(b.host);
}

// Reports each non-empty value of `name_of(i)` that an earlier element already used, at
// `section[i].name`.
template <class Items, class NameOf>
void check_unique_names(const config& cfg, const Items& items, std::string_view section,
                        std::string_view what, NameOf name_of, std::vector<error>& errors) {
    std::map<std::string, std::size_t, std::less<>> first;
    for (std::size_t i = 0; i < items.size(); ++i) {
        const std::string& name = name_of(items[i]);
        if (name.empty()) {
            continue;
        }
        const auto [it, inserted] = first.try_emplace(name, i);
        if (!inserted) {
            const auto key = item_key(section, i, "name");
            errors.push_back(error_at(cfg, key,
                                      "duplicate " + std::string(what) + " name " + quote(name) +
                                          at_line(cfg, item_key(section, it->second, "name"))));
        }
    }
}

void check_listener_binds(const config& cfg, std::vector<error>& errors) {
    const auto& ls = cfg.listeners;
    for (std::size_t i = 0; i < ls.size(); ++i) {
        for (std::size_t j = 0; j < i; ++j) {
            if (ls[i].bind.empty() || ls[j].bind.empty() ||
                !binds_overlap(ls[i].address, ls[j].address)) {
                continue;
            }
            const auto key = item_key("listeners", i, "bind");
            const auto other = item_key("listeners", j, "bind");
            const std::string message =
                ls[i].address == ls[j].address
                    ? "duplicate bind " + quote(ls[i].bind) + at_line(cfg, other)
                    : "bind " + quote(ls[i].bind) + " overlaps " + quote(ls[j].bind) + " of " +
                          other + at_line(cfg, other);
            errors.push_back(error_at(cfg, key, message));
            break; // one report per listener is enough
        }
    }
}

// The same address twice in one upstream would be one server with two entries in the
// registry keyed by (upstream, address); a doubled weight is written as `weight`.
void check_servers(const config& cfg, std::vector<error>& errors) {
    for (std::size_t u = 0; u < cfg.upstreams.size(); ++u) {
        const auto& servers = cfg.upstreams[u].servers;
        std::map<std::pair<std::string, std::uint16_t>, std::size_t> first;
        for (std::size_t s = 0; s < servers.size(); ++s) {
            if (servers[s].address.empty()) {
                continue;
            }
            const auto& e = servers[s].endpoint;
            const auto [it, inserted] = first.try_emplace({lowercase(e.host), e.port}, s);
            if (!inserted) {
                const auto base = "upstreams[" + std::to_string(u) + "].servers";
                errors.push_back(error_at(
                    cfg, base + "[" + std::to_string(s) + "].address",
                    "duplicate server " + quote(servers[s].address) + " in this upstream" +
                        at_line(cfg, base + "[" + std::to_string(it->second) + "].address")));
            }
        }
    }
}

void check_route_upstreams(const config& cfg, std::vector<error>& errors) {
    std::vector<std::string_view> names;
    for (const auto& u : cfg.upstreams) {
        names.push_back(u.name);
    }
    for (std::size_t l = 0; l < cfg.listeners.size(); ++l) {
        const auto& routes = cfg.listeners[l].routes;
        for (std::size_t r = 0; r < routes.size(); ++r) {
            const auto* name = std::get_if<std::string>(&routes[r].action);
            if (name == nullptr || name->empty() ||
                std::find(names.begin(), names.end(), *name) != names.end()) {
                continue;
            }
            const auto key =
                "listeners[" + std::to_string(l) + "].routes[" + std::to_string(r) + "].upstream";
            errors.push_back(error_at(
                cfg, key, "unknown upstream " + quote(*name) + detail::did_you_mean(*name, names)));
        }
    }
}

// SPEC 2: the admin listener is "never on a public listener".
void check_admin_bind(const config& cfg, std::vector<error>& errors) {
    for (const auto& l : cfg.listeners) {
        if (!l.bind.empty() && binds_overlap(cfg.admin.address, l.address)) {
            errors.push_back(error_at(cfg, "admin.bind",
                                      quote(cfg.admin.bind) + " overlaps the bind " +
                                          quote(l.bind) + " of listener " + quote(l.name) +
                                          "; the admin listener must not be reachable on a "
                                          "public listener's address"));
            return;
        }
    }
}

} // namespace

error error_at(const config& cfg, std::string_view key, std::string message) {
    // Walk up "a.b[2].c" -> "a.b[2]" -> "a.b" -> "a" -> "" until a written value is found.
    std::string_view probe = key;
    position where{1, 1};
    for (;;) {
        const auto it = cfg.positions.find(probe);
        if (it != cfg.positions.end()) {
            where = it->second;
            break;
        }
        const auto cut = probe.find_last_of(".[");
        if (cut == std::string_view::npos) {
            break;
        }
        probe = probe.substr(0, cut);
    }
    return error{cfg.path, where.line, where.column, std::string(key), std::move(message)};
}

namespace detail {

void validate(const config& cfg, std::vector<error>& errors) {
    check_unique_names(
        cfg, cfg.listeners, "listeners", "listener",
        [](const listener& l) -> const std::string& { return l.name; }, errors);
    check_listener_binds(cfg, errors);
    check_unique_names(
        cfg, cfg.upstreams, "upstreams", "upstream",
        [](const upstream& u) -> const std::string& { return u.name; }, errors);
    check_servers(cfg, errors);
    check_route_upstreams(cfg, errors);
    check_admin_bind(cfg, errors);
}

} // namespace detail
} // namespace sluice::config
