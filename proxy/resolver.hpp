#pragma once
// DNS for upstream server names (SPEC 4), through c-ares: a name becomes one
// server per A/AAAA address. Blocking, with a deadline: called at start-up
// and from the resolver thread, never on a worker.

#include "config/model.hpp"

#include <chrono>
#include <optional>
#include <string>
#include <vector>

namespace sluice::proxy {

struct resolve_result {
    bool ok = false;
    std::vector<std::string> addresses; // IP literals, IPv4 first, no duplicates
    std::string error;                  // when !ok: "NXDOMAIN", "timeout", ...
};

// Whether `host` is an IP literal (needs no resolution).
bool is_ip_literal(const std::string& host);

// Resolves `host` (A and AAAA) with the DNS server `server` ("ip:port"), or
// the system's resolvers when absent, waiting at most `timeout`.
resolve_result resolve_host(const std::string& host, const std::optional<config::host_port>& server,
                            std::chrono::milliseconds timeout);

} // namespace sluice::proxy
