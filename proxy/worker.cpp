#include "proxy/worker.hpp"

#include "proxy/connection.hpp"
#include "proxy/log.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/as_tuple.hpp>

namespace sluice::proxy {
namespace net = boost::asio;
using tcp = net::ip::tcp;

namespace {
constexpr auto pool_max_idle = std::chrono::seconds(60);
constexpr auto pool_sweep_every = std::chrono::seconds(5);
constexpr auto log_flush_every = std::chrono::milliseconds(100);

// Client connections open in the whole process (all workers), for
// limits.max_connections. Touched once per connection, not per request.
std::atomic<long> process_connections{0};
} // namespace

worker::worker(int id, std::shared_ptr<const snapshot> initial)
    : id_(id), snapshot_(std::move(initial)) {}

worker::~worker() {
    stop_and_join();
    // The thread is gone. Finish every coroutine here, while the worker is
    // still whole: closing the sockets completes their pending operations,
    // and the coroutines run to their end and free their frames (and the
    // sessions those own) instead of being destroyed mid-flight with the
    // io_context.
    boost::system::error_code ignored;
    for (auto& slot : acceptors_)
        slot->acceptor->close(ignored);
    const std::vector<session_base*> current(sessions_.begin(), sessions_.end());
    for (auto* s : current)
        if (sessions_.count(s) != 0)
            s->close_now();
    pool_.sweep(std::chrono::steady_clock::duration::zero());
    pool_sweep_timer_.cancel();
    log_flush_timer_.cancel();
    io_.restart();
    io_.run_for(std::chrono::seconds(5));
    if (!access_log_.empty())
        access_log_.flush();
}

void worker::add_acceptor(new_acceptor a) {
    acceptors_.push_back(
        std::make_shared<acceptor_slot>(acceptor_slot{std::move(a.acceptor), std::move(a.key)}));
}

void worker::start() {
    for (const auto& slot : acceptors_)
        accept_loop(slot);
    arm_pool_sweep();
    thread_ = std::thread([this] {
        // Keep running through the drain until the control thread stops us.
        auto guard = net::make_work_guard(io_);
        io_.run();
        if (!access_log_.empty())
            access_log_.flush();
    });
}

void worker::accept_loop(std::shared_ptr<acceptor_slot> slot_ptr) {
    net::co_spawn(
        io_,
        [this, slot_ptr]() -> net::awaitable<void> {
            auto& slot = *slot_ptr;
            bool logged_exhaustion = false;
            net::steady_timer backoff(io_);
            for (;;) {
                auto [ec, socket] =
                    co_await slot.acceptor->async_accept(net::as_tuple(net::use_awaitable));
                if (ec == net::error::operation_aborted || !slot.acceptor->is_open())
                    co_return;
                if (ec) {
                    // Out of descriptors (or another transient accept error):
                    // say so once, pause, and keep serving what is open.
                    if (!logged_exhaustion) {
                        log::error("accept failed",
                                   {{"error", ec.message()}, log::num("worker", id_)});
                        logged_exhaustion = true;
                    }
                    backoff.expires_after(std::chrono::milliseconds(100));
                    co_await backoff.async_wait(net::as_tuple(net::use_awaitable));
                    continue;
                }
                logged_exhaustion = false;
                // limits.max_connections: hold this one until a connection
                // closes; meanwhile this worker accepts nothing more, so
                // later clients wait in the kernel's backlog.
                const auto limit = static_cast<long>(snapshot_->cfg.limits.max_connections);
                while (limit > 0 && process_connections.load(std::memory_order_relaxed) >= limit &&
                       !draining_) {
                    backoff.expires_after(std::chrono::milliseconds(5));
                    co_await backoff.async_wait(net::as_tuple(net::use_awaitable));
                }
                start_session(*this, std::move(socket), slot.key);
            }
        },
        net::detached);
}

void worker::arm_pool_sweep() {
    pool_sweep_timer_.expires_after(pool_sweep_every);
    pool_sweep_timer_.async_wait([this](boost::system::error_code ec) {
        if (ec)
            return;
        pool_.sweep(pool_max_idle);
        arm_pool_sweep();
    });
}

void worker::publish(std::shared_ptr<const snapshot> next, std::vector<new_acceptor> added,
                     std::vector<std::string> removed) {
    net::post(io_, [this, next = std::move(next), added = std::move(added),
                    removed = std::move(removed)]() mutable {
        snapshot_ = std::move(next);
        for (const auto& key : removed) {
            std::erase_if(acceptors_, [&](const std::shared_ptr<acceptor_slot>& slot) {
                if (slot->key != key)
                    return false;
                boost::system::error_code ignored;
                slot->acceptor->close(ignored);
                return true;
            });
            // Its connections drain: idle ones close now, busy ones after
            // their response.
            const std::vector<session_base*> current(sessions_.begin(), sessions_.end());
            for (auto* session : current)
                if (sessions_.count(session) != 0 && session->listener() == key)
                    session->on_drain();
        }
        for (auto& a : added) {
            auto slot = std::make_shared<acceptor_slot>(
                acceptor_slot{std::move(a.acceptor), std::move(a.key)});
            acceptors_.push_back(slot);
            if (!draining_)
                accept_loop(slot);
        }
        // Idle connections to servers that left close now; one in use
        // finishes its exchange first.
        std::vector<const server_state*> keep;
        for (const auto& u : snapshot_->upstreams)
            for (const auto& s : u.servers)
                keep.push_back(s.get());
        pool_.retain(keep);
    });
}

void worker::begin_drain() {
    net::post(io_, [this] {
        draining_ = true;
        for (auto& slot : acceptors_) {
            boost::system::error_code ignored;
            slot->acceptor->close(ignored);
        }
        // on_drain may close a session, which detaches it: iterate a copy.
        const std::vector<session_base*> current(sessions_.begin(), sessions_.end());
        for (auto* s : current)
            if (sessions_.count(s) != 0)
                s->on_drain();
        pool_.sweep(std::chrono::steady_clock::duration::zero());
    });
}

void worker::close_all() {
    net::post(io_, [this] {
        const std::vector<session_base*> current(sessions_.begin(), sessions_.end());
        for (auto* s : current)
            if (sessions_.count(s) != 0)
                s->close_now();
        pool_.sweep(std::chrono::steady_clock::duration::zero());
    });
}

void worker::stop_and_join() {
    if (!thread_.joinable())
        return;
    net::post(io_, [this] {
        pool_sweep_timer_.cancel();
        log_flush_timer_.cancel();
        io_.stop();
    });
    thread_.join();
}

void worker::log_access(const access_record& r) {
    access_log_.append(r);
    if (access_log_.full()) {
        access_log_.flush();
        return;
    }
    if (log_flush_armed_)
        return;
    log_flush_armed_ = true;
    log_flush_timer_.expires_after(log_flush_every);
    log_flush_timer_.async_wait([this](boost::system::error_code) {
        log_flush_armed_ = false;
        if (!access_log_.empty())
            access_log_.flush();
    });
}

void worker::attach(session_base* s) {
    process_connections.fetch_add(1, std::memory_order_relaxed);
    sessions_.insert(s);
    active_.store(static_cast<int>(sessions_.size()), std::memory_order_relaxed);
}

void worker::detach(session_base* s) {
    process_connections.fetch_sub(1, std::memory_order_relaxed);
    sessions_.erase(s);
    active_.store(static_cast<int>(sessions_.size()), std::memory_order_relaxed);
}

} // namespace sluice::proxy
