#include "proxy/snapshot.hpp"

#include "proxy/resolver.hpp"
#include "tls/client_context.hpp"
#include "tls/server_contexts.hpp"

#include <stdexcept>

namespace sluice::proxy {
namespace {

std::string join_host_port(const std::string& ip, std::uint16_t port) {
    if (ip.find(':') != std::string::npos)
        return "[" + ip + "]:" + std::to_string(port);
    return ip + ":" + std::to_string(port);
}

} // namespace

namespace {
// Listener metrics ids by bind key, and the names they were last given.
// Written by build_snapshot and read at scrape, both on the control thread.
std::map<std::string, std::uint32_t>& listener_ids() {
    static std::map<std::string, std::uint32_t> ids;
    return ids;
}
std::vector<std::string>& listener_names() {
    static std::vector<std::string> names;
    return names;
}
} // namespace

std::string listener_name_for_metrics(std::uint32_t id) {
    return id < listener_names().size() ? listener_names()[id] : std::to_string(id);
}

std::string listener_key(const config::listener& l) {
    return join_host_port(l.address.host, l.address.port);
}

const listener_entry* snapshot::find_listener(std::string_view key) const {
    for (const auto& l : listeners)
        if (l.key == key)
            return &l;
    return nullptr;
}

const listener_entry* snapshot::find_listener_by_id(std::uint32_t metrics_id) const {
    for (const auto& l : listeners)
        if (l.metrics_id == metrics_id)
            return &l;
    return nullptr;
}

const upstream_entry* snapshot::find_upstream(std::string_view name) const {
    for (const auto& u : upstreams)
        if (u.cfg->name == name)
            return &u;
    return nullptr;
}

std::shared_ptr<const snapshot> build_snapshot(config::config cfg, std::uint64_t generation,
                                               server_registry& registry, const address_book& dns,
                                               const snapshot* same_files) {
    auto snap = std::make_shared<snapshot>();
    snap->cfg = std::move(cfg);
    snap->generation = generation;
    snap->loaded_at = std::chrono::system_clock::now();
    const auto workers = static_cast<std::size_t>(std::max(1, snap->cfg.workers));

    // The entries point into snap->cfg, which is not moved again.
    for (const auto& u : snap->cfg.upstreams) {
        upstream_entry e;
        e.cfg = &u;
        e.connect_timeout = u.timeouts.connect.value_or(snap->cfg.timeouts.upstream_connect);
        e.response_timeout = u.timeouts.response.value_or(snap->cfg.timeouts.upstream_response);
        if (u.tls && same_files != nullptr) {
            e.tls = same_files->upstreams.at(snap->upstreams.size()).tls;
        } else if (u.tls) {
            try {
                e.tls = std::make_shared<tls::client_context>(*u.tls);
            } catch (const std::exception& ex) {
                throw snapshot_error("upstreams[" + std::to_string(snap->upstreams.size()) +
                                         "].tls.ca_file",
                                     ex.what());
            }
        }
        for (const auto& s : u.servers) {
            std::vector<std::string> ips;
            if (is_ip_literal(s.endpoint.host))
                ips.push_back(s.endpoint.host);
            else if (const auto it = dns.find(s.endpoint.host); it != dns.end())
                ips = it->second;
            for (const auto& ip : ips) {
                const auto address = join_host_port(ip, s.endpoint.port);
                bool duplicate = false;
                for (const auto& existing : e.servers)
                    duplicate = duplicate || existing->address == address;
                if (duplicate)
                    continue; // two names for one address: one server
                e.servers.push_back(registry.get(u.name, address, s.address, ip, s.endpoint.port));
                e.weights.push_back(s.weight);
            }
        }
        e.cursors.resize(workers);
        for (auto& c : e.cursors)
            c.current.assign(e.servers.size(), 0);
        snap->upstreams.push_back(std::move(e));
    }
    for (const auto& l : snap->cfg.listeners) {
        listener_entry e;
        e.cfg = &l;
        e.key = listener_key(l);
        const auto [it, added] =
            listener_ids().try_emplace(e.key, static_cast<std::uint32_t>(listener_ids().size()));
        e.metrics_id = it->second;
        if (listener_names().size() <= e.metrics_id)
            listener_names().resize(e.metrics_id + 1);
        listener_names()[e.metrics_id] = l.name;
        if (l.tls && same_files != nullptr) {
            e.tls = same_files->listeners.at(snap->listeners.size()).tls;
        } else if (l.tls) {
            try {
                e.tls = std::make_shared<tls::server_contexts>(*l.tls);
            } catch (const std::exception& ex) {
                throw snapshot_error("listeners[" + std::to_string(snap->listeners.size()) +
                                         "].tls.certificates",
                                     ex.what());
            }
        }
        for (const auto& r : l.routes) {
            auto compiled = compile_route(r);
            if (const auto* name = std::get_if<std::string>(&r.action)) {
                for (std::size_t i = 0; i < snap->upstreams.size(); ++i)
                    if (snap->upstreams[i].cfg->name == *name)
                        compiled.upstream_index = static_cast<int>(i);
            }
            e.routes.push_back(std::move(compiled));
        }
        snap->listeners.push_back(std::move(e));
    }
    return snap;
}

void forget_unchecked_verdicts(const snapshot& installed) {
    for (const auto& u : installed.upstreams) {
        if (u.cfg->health)
            continue;
        for (const auto& state : u.servers) {
            state->health = {};
            state->healthy.store(true, std::memory_order_release);
        }
    }
}

} // namespace sluice::proxy
