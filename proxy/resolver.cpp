#include "proxy/resolver.hpp"

#include <arpa/inet.h>
#include <ares.h>
#include <netdb.h>
#include <sys/select.h>

#include <algorithm>
#include <mutex>

namespace sluice::proxy {
namespace {

struct query_state {
    bool done = false;
    int status = ARES_SUCCESS;
    std::vector<std::string> v4;
    std::vector<std::string> v6;
};

void on_addrinfo(void* arg, int status, int /*timeouts*/, ares_addrinfo* result) {
    auto& q = *static_cast<query_state*>(arg);
    q.done = true;
    q.status = status;
    if (status != ARES_SUCCESS || result == nullptr) {
        if (result != nullptr)
            ares_freeaddrinfo(result);
        return;
    }
    for (auto* node = result->nodes; node != nullptr; node = node->ai_next) {
        char text[INET6_ADDRSTRLEN] = {};
        if (node->ai_family == AF_INET) {
            ::inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in*>(node->ai_addr)->sin_addr, text,
                        sizeof text);
            if (std::find(q.v4.begin(), q.v4.end(), text) == q.v4.end())
                q.v4.emplace_back(text);
        } else if (node->ai_family == AF_INET6) {
            ::inet_ntop(AF_INET6, &reinterpret_cast<sockaddr_in6*>(node->ai_addr)->sin6_addr, text,
                        sizeof text);
            if (std::find(q.v6.begin(), q.v6.end(), text) == q.v6.end())
                q.v6.emplace_back(text);
        }
    }
    ares_freeaddrinfo(result);
}

std::string describe_status(int status) {
    switch (status) {
    case ARES_ENOTFOUND:
        return "NXDOMAIN";
    case ARES_ESERVFAIL:
        return "SERVFAIL";
    case ARES_ETIMEOUT:
        return "timeout";
    case ARES_ECONNREFUSED:
        return "connection refused";
    case ARES_ENODATA:
        return "no addresses";
    default:
        return ares_strerror(status);
    }
}

} // namespace

bool is_ip_literal(const std::string& host) {
    in6_addr v6{};
    in_addr v4{};
    return ::inet_pton(AF_INET, host.c_str(), &v4) == 1 ||
           ::inet_pton(AF_INET6, host.c_str(), &v6) == 1;
}

resolve_result resolve_host(const std::string& host, const std::optional<config::host_port>& server,
                            std::chrono::milliseconds timeout) {
    static std::once_flag init_once;
    std::call_once(init_once, [] { ares_library_init(ARES_LIB_INIT_ALL); });

    resolve_result out;
    if (is_ip_literal(host)) {
        out.ok = true;
        out.addresses.push_back(host);
        return out;
    }
    ares_options options{};
    options.timeout = static_cast<int>(std::max<long>(100, timeout.count() / 2));
    options.tries = 2;
    ares_channel channel = nullptr;
    if (ares_init_options(&channel, &options, ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES) !=
        ARES_SUCCESS) {
        out.error = "cannot start the DNS resolver";
        return out;
    }
    if (server) {
        const bool v6 = server->host.find(':') != std::string::npos;
        const std::string csv =
            (v6 ? "[" + server->host + "]" : server->host) + ":" + std::to_string(server->port);
        if (ares_set_servers_ports_csv(channel, csv.c_str()) != ARES_SUCCESS) {
            ares_destroy(channel);
            out.error = "bad resolver address " + csv;
            return out;
        }
    }
    ares_addrinfo_hints hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    query_state q;
    ares_getaddrinfo(channel, host.c_str(), nullptr, &hints, on_addrinfo, &q);

    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!q.done) {
        const auto left = deadline - std::chrono::steady_clock::now();
        if (left <= std::chrono::milliseconds(0))
            break;
        fd_set readers;
        fd_set writers;
        FD_ZERO(&readers);
        FD_ZERO(&writers);
        const int nfds = ares_fds(channel, &readers, &writers);
        if (nfds == 0)
            break;
        timeval tv{};
        timeval max_wait{};
        const auto left_us = std::chrono::duration_cast<std::chrono::microseconds>(left).count();
        max_wait.tv_sec = static_cast<long>(left_us / 1000000);
        max_wait.tv_usec = static_cast<long>(left_us % 1000000);
        timeval* wait = ares_timeout(channel, &max_wait, &tv);
        ::select(nfds, &readers, &writers, nullptr, wait);
        ares_process(channel, &readers, &writers);
    }
    // Destroying the channel ends a query still running (its callback runs
    // with ARES_EDESTRUCTION and q.done is set then).
    const bool finished = q.done;
    ares_destroy(channel);
    if (!finished) {
        out.error = "timeout";
        return out;
    }
    if (q.status != ARES_SUCCESS) {
        out.error = describe_status(q.status);
        return out;
    }
    out.addresses = std::move(q.v4);
    out.addresses.insert(out.addresses.end(), q.v6.begin(), q.v6.end());
    out.ok = !out.addresses.empty();
    if (!out.ok)
        out.error = "no addresses";
    return out;
}

} // namespace sluice::proxy
