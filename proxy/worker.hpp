#pragma once
// One event-loop thread (ARCHITECTURE "shared-nothing workers"): its own
// io_context, its own SO_REUSEPORT acceptor per listener, its own upstream
// pool, request-ID generator and access-log buffer, and its own pointer to
// the current snapshot. Everything here is touched only on the worker's
// thread, except the members marked otherwise; other threads talk to a
// worker by posting to its io_context.

#include "proxy/access_log.hpp"
#include "proxy/metrics.hpp"
#include "proxy/request_id.hpp"
#include "proxy/snapshot.hpp"
#include "proxy/upstream_pool.hpp"
#include "proxy/wait_list.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
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
    // The key of the listener it was accepted on.
    virtual const std::string& listener() const = 0;
};

class worker {
  public:
    // A receive block holds a typical request head (or a response's first
    // bytes) whole; `spare_blocks` (512 KiB) are kept between uses.
    static constexpr std::size_t receive_block_size = 16 * 1024;
    static constexpr std::size_t spare_blocks = 32;
    // A receive buffer relaying a large body grows to one of these (the
    // relay's read size); `spare_large_blocks` (1 MiB) are kept between uses.
    static constexpr std::size_t large_block_size = 64 * 1024;
    static constexpr std::size_t spare_large_blocks = 16;

    worker(int id, std::shared_ptr<const snapshot> initial);
    ~worker();
    worker(const worker&) = delete;
    worker& operator=(const worker&) = delete;

    int id() const { return id_; }
    boost::asio::io_context& io() { return io_; }

    // An acceptor (opened, bound and listening on any io_context other than
    // this worker's: the worker re-registers its socket with its own event
    // loop, on its own thread) for the listener bound at `key`.
    struct new_acceptor {
        std::unique_ptr<boost::asio::ip::tcp::acceptor> acceptor;
        std::string key;
    };
    // Before start(): accept on `a`.
    void add_acceptor(new_acceptor a);
    void start();

    // --- called from the control thread ---
    // Makes `next` current; then starts accepting on `added` and stops
    // accepting (and closes the idle connections of) the listeners in
    // `removed` (keys). Unchanged listeners keep their sockets.
    void publish(std::shared_ptr<const snapshot> next, std::vector<new_acceptor> added = {},
                 std::vector<std::string> removed = {});
    void begin_drain();
    void close_all();
    void stop_and_join();
    int active_connections() const { return active_.load(std::memory_order_relaxed); }
    const worker_metrics& metrics() const { return metrics_; }

    // --- called on the worker's thread ---
    const std::shared_ptr<const snapshot>& current() const { return snapshot_; }
    bool draining() const { return draining_; }
    upstream_pool& pool() { return pool_; }
    // Receive blocks for client and upstream connections (byte_buffer.hpp).
    block_pool& blocks() { return blocks_; }
    block_pool& large_blocks() { return large_blocks_; }
    request_id_generator& ids() { return ids_; }
    worker_metrics& metrics() { return metrics_; }
    void log_access(const access_record& r);
    // A session starts (`opens`: on a new connection, not a woken parked
    // one) or ends (`closes`: its connection too, not parked).
    void attach(session_base* s, bool opens);
    void detach(session_base* s, bool closes);
    // Parks a plain-HTTP client connection between requests (ARCHITECTURE
    // "Memory between requests"): the worker keeps its descriptor, with no
    // session, coroutine or Asio state, until its next request arrives (a
    // new session then serves it), client_idle passes or a drain closes it.
    // The connection stays counted as open. `v6`: the socket's family;
    // `idle_since`: when its idle time (client_idle) began.
    void park(boost::asio::ip::tcp::socket socket, std::uint32_t listener_id, bool v6,
              std::chrono::steady_clock::time_point idle_since);
    // Starts `w`, which expires `length` after `from` unless it ends first
    // (wait_list.hpp): for the waits a request usually cuts short, which
    // then cost no timer of their own. One list and timer per length.
    void start_wait(timed_wait& w, std::chrono::milliseconds length,
                    std::chrono::steady_clock::time_point from = std::chrono::steady_clock::now());

  private:
    struct acceptor_slot {
        std::unique_ptr<boost::asio::ip::tcp::acceptor> acceptor;
        std::string key;
    };
    // Lifetime: the loop holds its slot, so removing it from acceptors_ is safe.
    void accept_loop(std::shared_ptr<acceptor_slot> slot);
    // `a`'s socket, registered with this worker's event loop instead.
    std::unique_ptr<boost::asio::ip::tcp::acceptor> adopt(boost::asio::ip::tcp::acceptor& a);
    void arm_pool_sweep();
    // A parked connection: its descriptor is registered with parked_events_
    // (an epoll instance of its own) instead of the event loop.
    struct parked_connection {
        int fd;
        bool v6;
        std::uint32_t listener_id;
        std::chrono::steady_clock::time_point since; // its idle time began
        parked_connection* prev = nullptr;           // the parked list, oldest first
        parked_connection* next = nullptr;
    };
    // A connection that was counted open (attach) has closed.
    void connection_closed(std::uint32_t listener_id);
    void wait_parked();
    void wake_parked();
    void unlink(parked_connection* c);
    // Closes a parked connection (unlinked) and frees it.
    void close_parked(parked_connection* c);
    template <typename Pred> void close_parked_if(Pred which);
    void arm_idle_sweep(std::chrono::steady_clock::time_point at);
    // The waits of one length and their timer (start_wait).
    struct timed_waits {
        std::chrono::milliseconds length;
        wait_list list;
        std::optional<boost::asio::steady_timer> timer; // reset before io_ goes
        std::chrono::steady_clock::time_point armed_for{};
        bool armed = false;
    };
    void arm_waits(timed_waits& t, std::chrono::steady_clock::time_point at);
    void sweep_idle();
    void update_active();

    const int id_;
    // Declared before io_: coroutine frames destroyed with io_ may still
    // hold buffers that give their blocks back here.
    block_pool blocks_{receive_block_size, spare_blocks};
    block_pool large_blocks_{large_block_size, spare_large_blocks};
    // Declared before io_ as well: a session destroyed with io_ ends its
    // waits (their timers go first, in the destructor).
    std::vector<std::unique_ptr<timed_waits>> waits_;
    // One thread runs it, and only that thread touches its sockets: its
    // reactor takes no lock per I/O operation (the scheduler and descriptor
    // registration still lock, for posts and timers from other threads).
    boost::asio::io_context io_{BOOST_ASIO_CONCURRENCY_HINT_UNSAFE_IO};
    std::thread thread_;
    std::shared_ptr<const snapshot> snapshot_;
    std::vector<std::shared_ptr<acceptor_slot>> acceptors_;
    std::unordered_set<session_base*> sessions_;
    // Readable when a parked connection is (opened by start()).
    std::unique_ptr<boost::asio::posix::stream_descriptor> parked_events_;
    parked_connection* parked_head_ = nullptr;
    parked_connection* parked_tail_ = nullptr;
    std::size_t parked_ = 0;
    upstream_pool pool_{io_};
    request_id_generator ids_;
    access_log_writer access_log_;
    worker_metrics metrics_; // written by this worker only, read at scrape
    boost::asio::steady_timer log_flush_timer_{io_};
    bool log_flush_armed_ = false;
    boost::asio::steady_timer pool_sweep_timer_{io_};
    boost::asio::steady_timer idle_sweep_timer_{io_};
    bool idle_sweep_armed_ = false;
    bool draining_ = false;

    // Written by the worker, read by the control thread to see a drain end.
    std::atomic<int> active_{0};
};

} // namespace sluice::proxy
