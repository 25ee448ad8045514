#include "proxy/snapshot.hpp"

#include <arpa/inet.h>
#include <netdb.h>
#include <stdexcept>
#include <sys/socket.h>

namespace sluice::proxy {
namespace {

struct resolved_address {
    std::string ip;
    std::string address; // "ip:port" or "[v6]:port"
};

std::string join_host_port(const std::string& ip, std::uint16_t port) {
    if (ip.find(':') != std::string::npos) return "[" + ip + "]:" + std::to_string(port);
    return ip + ":" + std::to_string(port);
}

// Resolves a server's host (an IP literal or a DNS name) to its addresses,
// in the resolver's order, without duplicates.
std::vector<resolved_address> resolve(const config::host_port& hp) {
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* list = nullptr;
    const int rc = ::getaddrinfo(hp.host.c_str(), nullptr, &hints, &list);
    if (rc != 0) throw std::runtime_error("cannot resolve \"" + hp.host + "\": " + gai_strerror(rc));
    std::vector<resolved_address> out;
    for (auto* ai = list; ai != nullptr; ai = ai->ai_next) {
        char text[INET6_ADDRSTRLEN] = {};
        if (ai->ai_family == AF_INET)
            ::inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in*>(ai->ai_addr)->sin_addr, text, sizeof text);
        else if (ai->ai_family == AF_INET6)
            ::inet_ntop(AF_INET6, &reinterpret_cast<sockaddr_in6*>(ai->ai_addr)->sin6_addr, text, sizeof text);
        else
            continue;
        resolved_address r{text, join_host_port(text, hp.port)};
        bool seen = false;
        for (const auto& o : out) seen = seen || o.address == r.address;
        if (!seen) out.push_back(std::move(r));
    }
    ::freeaddrinfo(list);
    return out;
}

} // namespace

const upstream_entry* snapshot::find_upstream(std::string_view name) const {
    for (const auto& u : upstreams)
        if (u.cfg->name == name) return &u;
    return nullptr;
}

std::shared_ptr<const snapshot> build_snapshot(config::config cfg, std::uint64_t generation,
                                               server_registry& registry) {
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
        for (const auto& s : u.servers) {
            for (const auto& r : resolve(s.endpoint)) {
                e.servers.push_back(registry.get(u.name, r.address, s.address, r.ip, s.endpoint.port));
                e.weights.push_back(s.weight);
            }
        }
        e.cursors.resize(workers);
        for (auto& c : e.cursors) c.current.assign(e.servers.size(), 0);
        snap->upstreams.push_back(std::move(e));
    }
    for (const auto& l : snap->cfg.listeners) {
        listener_entry e;
        e.cfg = &l;
        for (const auto& r : l.routes) {
            auto compiled = compile_route(r);
            if (const auto* name = std::get_if<std::string>(&r.action)) {
                for (std::size_t i = 0; i < snap->upstreams.size(); ++i)
                    if (snap->upstreams[i].cfg->name == *name) compiled.upstream_index = static_cast<int>(i);
            }
            e.routes.push_back(std::move(compiled));
        }
        snap->listeners.push_back(std::move(e));
    }
    return snap;
}

} // namespace sluice::proxy
