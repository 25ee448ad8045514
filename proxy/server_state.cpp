#include "proxy/server_state.hpp"

#include <atomic>

namespace sluice::proxy {

std::uint32_t next_server_id() {
    // Atomic only because unit tests may build states on several threads;
    // in the proxy every server_state is made on the control thread.
    static std::atomic<std::uint32_t> next{0};
    return next.fetch_add(1, std::memory_order_relaxed);
}

void record_connect_failure(server_state& s, int max_fails, std::chrono::milliseconds fail_timeout,
                            std::int64_t now_ns) {
    const int fails = s.consecutive_failures.fetch_add(1, std::memory_order_relaxed) + 1;
    if (max_fails > 0 && fails >= max_fails) {
        s.consecutive_failures.store(0, std::memory_order_relaxed);
        const auto until =
            now_ns + std::chrono::duration_cast<std::chrono::nanoseconds>(fail_timeout).count();
        s.down_until_ns.store(until, std::memory_order_relaxed);
    }
}

void record_connect_success(server_state& s) {
    // Plain load first: the common case writes nothing shared.
    if (s.consecutive_failures.load(std::memory_order_relaxed) != 0)
        s.consecutive_failures.store(0, std::memory_order_relaxed);
}

std::shared_ptr<server_state> server_registry::get(const std::string& upstream,
                                                   const std::string& address,
                                                   const std::string& name, const std::string& ip,
                                                   std::uint16_t port) {
    auto& slot = entries_[{upstream, address}];
    if (!slot) {
        slot = std::make_shared<server_state>();
        slot->upstream = upstream;
        slot->address = address;
        slot->name = name;
        slot->ip = ip;
        slot->port = port;
    }
    return slot;
}

void server_registry::prune() {
    for (auto it = entries_.begin(); it != entries_.end();) {
        if (it->second.use_count() == 1)
            it = entries_.erase(it);
        else
            ++it;
    }
}

} // namespace sluice::proxy
