#pragma once
// One event-loop thread (ARCHITECTURE "shared-nothing workers"): its own
// io_context, its own SO_REUSEPORT acceptor per listener, its own upstream
// pool, request-ID generator and access-log buffer, and its own pointer to
// the current snapshot. Everything here is touched only on the worker's
// thread, except the members marked otherwise; other threads talk to a
// worker by posting to its io_context.

#include "proxy/access_log.hpp"
#include "proxy/request_id.hpp"
#include "proxy/snapshot.hpp"
#include "proxy/upstream_pool.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>

#include <atomic>
#include <memory>
#include <thread>
#include <unordered_set>
#include <vector>

namespace sluice::proxy {

// What a worker needs from each client connection it runs.
class session_base {
public:
    virtual ~session_base() = default;
    // Draining: close now if between requests, else after the current response.
    virtual void on_drain() = 0;
    // Shutdown grace is over: close whatever the state.
    virtual void close_now() = 0;
};

class worker {
public:
    worker(int id, std::shared_ptr<const snapshot> initial);
    ~worker();
    worker(const worker&) = delete;
    worker& operator=(const worker&) = delete;

    int id() const { return id_; }
    boost::asio::io_context& io() { return io_; }

    // Before start(): accept on `acceptor` (opened, bound and listening on
    // this worker's io_context) for listener number `listener_index`.
    void add_acceptor(std::unique_ptr<boost::asio::ip::tcp::acceptor> acceptor,
                      std::size_t listener_index);
    void start();

    // --- called from the control thread ---
    void publish(std::shared_ptr<const snapshot> next);
    void begin_drain();
    void close_all();
    void stop_and_join();
    int active_connections() const { return active_.load(std::memory_order_relaxed); }

    // --- called on the worker's thread ---
    const std::shared_ptr<const snapshot>& current() const { return snapshot_; }
    bool draining() const { return draining_; }
    upstream_pool& pool() { return pool_; }
    request_id_generator& ids() { return ids_; }
    void log_access(const access_record& r);
    void attach(session_base* s);
    void detach(session_base* s);

private:
    void accept_loop(std::size_t acceptor_index);
    void arm_pool_sweep();

    const int id_;
    boost::asio::io_context io_{1};
    std::thread thread_;
    std::shared_ptr<const snapshot> snapshot_;
    struct acceptor_slot {
        std::unique_ptr<boost::asio::ip::tcp::acceptor> acceptor;
        std::size_t listener_index;
    };
    std::vector<acceptor_slot> acceptors_;
    std::unordered_set<session_base*> sessions_;
    upstream_pool pool_;
    request_id_generator ids_;
    access_log_writer access_log_;
    boost::asio::steady_timer log_flush_timer_{io_};
    bool log_flush_armed_ = false;
    boost::asio::steady_timer pool_sweep_timer_{io_};
    bool draining_ = false;

    // Written by the worker, read by the control thread to see a drain end.
    std::atomic<int> active_{0};
};

} // namespace sluice::proxy
