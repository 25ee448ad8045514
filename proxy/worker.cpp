#include "proxy/worker.hpp"

#include "proxy/connection.hpp"
#include "proxy/log.hpp"
#include "proxy/read_hint.hpp"
#include "proxy/socket_access.hpp"

#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <exception>
#include <type_traits>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/as_tuple.hpp>
#include <boost/version.hpp>

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

// `socket` (closed) takes `fd`, a client connection's descriptor that this process
// holds alone (no duplicate anywhere) and that is non-blocking already:
// from accept4 with SOCK_NONBLOCK, or taken back from the parked set.
// assign() assumes neither, which costs two system calls per connection:
// an ioctl to make it non-blocking at its first operation, and, as the
// descriptor might have a duplicate that outlives it, an epoll_ctl to take
// it out of the event loop before closing it. Closing the only descriptor
// takes it out by itself; should something outside hold the socket for a
// moment (a /proc reader), a late event reaches Asio's record of it, which
// Asio keeps for reuse rather than frees, and at worst wakes a wait whose
// non-blocking retry finds nothing. Registered with the event loop as by
// assign().
void adopt_client_socket(tcp::socket& socket, int fd, bool v6, boost::system::error_code& ec) {
    static_assert(BOOST_VERSION / 100 == 1081,
                  "adopt_client_socket sets Asio 1.81's socket state flags: check them");
    namespace ops = net::detail::socket_ops;
    socket.assign(v6 ? tcp::v6() : tcp::v4(), fd, ec);
    if (!ec) {
        auto& state = socket_access::implementation(socket).state_;
        state =
            static_cast<ops::state_type>((state | ops::user_set_non_blocking) & ~ops::possible_dup);
        // Nothing has been read, and the registration reports bytes that
        // are there already as an event (one the event loop collects after
        // this): the first receive waits for it rather than trying a read
        // first, which on a new connection finds nothing as a rule (the
        // request follows the handshake by a round trip). See read_hint.hpp.
        mark_drained(socket);
    }
}

// accept(2) errors that belong to the connection being accepted (it was
// reset, or the network failed it), not to the listener: the next one may
// well succeed.
bool accept_error_is_transient(int err) {
    switch (err) {
    case EINTR:
    case ECONNABORTED:
    case EPROTO:
    case ENETDOWN:
    case ENOPROTOOPT:
    case EHOSTDOWN:
    case ENONET:
    case EHOSTUNREACH:
    case EOPNOTSUPP:
    case ENETUNREACH:
        return true;
    default:
        return false;
    }
}
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
    draining_ = true; // a parked connection woken from here on closes
    close_parked_if([](const parked_connection&) { return true; });
    pool_.sweep(std::chrono::steady_clock::duration::zero());
    pool_sweep_timer_.cancel();
    idle_sweep_timer_.cancel();
    if (parked_events_)
        parked_events_->close(ignored);
    log_flush_timer_.cancel();
    for (auto& t : waits_)
        t->timer->cancel();
    io_.restart();
    io_.run_for(std::chrono::seconds(5));
    if (!access_log_.empty())
        access_log_.flush();
    for (auto& t : waits_)
        t->timer.reset(); // (its handler refers to the list)
}

void worker::add_acceptor(new_acceptor a) {
    acceptors_.push_back(
        std::make_shared<acceptor_slot>(acceptor_slot{adopt(*a.acceptor), std::move(a.key)}));
}

std::unique_ptr<tcp::acceptor> worker::adopt(tcp::acceptor& a) {
    boost::system::error_code ec;
    const auto protocol = a.local_endpoint(ec).protocol();
    const int fd = ec ? -1 : a.release(ec);
    auto adopted = std::make_unique<tcp::acceptor>(io_);
    if (!ec)
        adopted->assign(protocol, fd, ec);
    if (ec) {
        // (Left closed: its accept loop ends at once.)
        log::error("cannot take over a listening socket",
                   {{"error", ec.message()}, log::num("worker", id_)});
        if (fd >= 0)
            ::close(fd);
    }
    return adopted;
}

void worker::start() {
    const int epfd = ::epoll_create1(EPOLL_CLOEXEC);
    if (epfd >= 0) {
        parked_events_ = std::make_unique<net::posix::stream_descriptor>(io_, epfd);
        wait_parked();
    } else {
        log::error("cannot create the parked set: idle connections will be closed",
                   {{"error", std::strerror(errno)}, log::num("worker", id_)});
    }
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
            auto& acceptor = *slot.acceptor;
            bool logged_accept_error = false;
            net::steady_timer backoff(io_);
            tcp::socket socket(io_); // (closed again once moved to its session)
            boost::system::error_code ec;
            acceptor.non_blocking(true, ec); // (accept4 below must never wait)
            if (ec) {
                if (acceptor.is_open())
                    log::error("cannot accept on a listening socket",
                               {{"error", ec.message()}, log::num("worker", id_)});
                co_return;
            }
            for (;;) {
                if (!acceptor.is_open())
                    co_return;
                // accept4, not Asio's accept: the connection comes
                // non-blocking (see adopt_client_socket), and with the
                // client's address (no getpeername per connection).
                tcp::endpoint peer;
                auto peer_len = static_cast<socklen_t>(peer.capacity());
                const int fd = ::accept4(acceptor.native_handle(), peer.data(), &peer_len,
                                         SOCK_NONBLOCK | SOCK_CLOEXEC);
                if (fd < 0) {
                    const int err = errno;
                    if (err == EAGAIN || err == EWOULDBLOCK) {
                        auto [wait_ec] = co_await acceptor.async_wait(
                            tcp::acceptor::wait_read, net::as_tuple(net::use_awaitable));
                        if (wait_ec == net::error::operation_aborted || !acceptor.is_open())
                            co_return;
                        if (!wait_ec)
                            continue;
                        ec = wait_ec; // (the back-off below, not a loop)
                    } else if (accept_error_is_transient(err)) {
                        // That client is gone: the next one, after the
                        // connections open already had their turn.
                        co_await net::post(io_, net::use_awaitable);
                        continue;
                    } else {
                        ec.assign(err, boost::system::system_category());
                    }
                } else {
                    peer.resize(peer_len);
                    adopt_client_socket(socket, fd, peer.protocol() == tcp::v6(), ec);
                    if (ec)
                        ::close(fd); // (not in the event loop: nothing to serve it with)
                }
                if (ec) {
                    // Out of descriptors or memory, refused, or the wait
                    // or the event loop's registration failed: say so
                    // once, pause, and keep serving what is open.
                    if (!logged_accept_error) {
                        log::error("accept failed",
                                   {{"error", ec.message()}, log::num("worker", id_)});
                        logged_accept_error = true;
                    }
                    backoff.expires_after(std::chrono::milliseconds(100));
                    co_await backoff.async_wait(net::as_tuple(net::use_awaitable));
                    continue;
                }
                logged_accept_error = false;
                // limits.max_connections: hold this one until a connection
                // closes; meanwhile this worker accepts nothing more, so
                // later clients wait in the kernel's backlog.
                const auto limit = static_cast<long>(snapshot_->cfg.limits.max_connections);
                while (limit > 0 && process_connections.load(std::memory_order_relaxed) >= limit &&
                       !draining_) {
                    backoff.expires_after(std::chrono::milliseconds(5));
                    co_await backoff.async_wait(net::as_tuple(net::use_awaitable));
                }
                try {
                    start_session(*this, std::move(socket), peer, slot.key);
                } catch (const std::exception& e) {
                    // Out of memory (OpenSSL's SSL_new, the session): that
                    // connection closes; this loop must not end with it.
                    try {
                        log::error("cannot serve a connection",
                                   {{"error", e.what()}, log::num("worker", id_)});
                    } catch (...) {
                        // (no memory to say so either)
                    }
                }
                // One connection per turn of the event loop, as Asio's
                // accept completes: the connections open already go on.
                co_await net::post(io_, net::use_awaitable);
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
        if (!removed.empty())
            close_parked_if([&](const parked_connection& c) {
                return snapshot_->find_listener_by_id(c.listener_id) == nullptr;
            });
        // client_idle may have changed: the sweep follows the new value.
        if (parked_head_ != nullptr)
            arm_idle_sweep(parked_head_->since + snapshot_->cfg.timeouts.client_idle);
        for (auto& a : added) {
            auto slot = std::make_shared<acceptor_slot>(
                acceptor_slot{adopt(*a.acceptor), std::move(a.key)});
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
        close_parked_if([](const parked_connection&) { return true; });
        pool_.sweep(std::chrono::steady_clock::duration::zero());
    });
}

void worker::close_all() {
    net::post(io_, [this] {
        const std::vector<session_base*> current(sessions_.begin(), sessions_.end());
        for (auto* s : current)
            if (sessions_.count(s) != 0)
                s->close_now();
        close_parked_if([](const parked_connection&) { return true; });
        pool_.sweep(std::chrono::steady_clock::duration::zero());
    });
}

void worker::stop_and_join() {
    if (!thread_.joinable())
        return;
    net::post(io_, [this] {
        pool_sweep_timer_.cancel();
        idle_sweep_timer_.cancel();
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

void worker::attach(session_base* s, bool opens) {
    sessions_.insert(s); // (first: it may throw, and then nothing is counted)
    if (opens)
        process_connections.fetch_add(1, std::memory_order_relaxed);
    update_active();
}

void worker::detach(session_base* s, bool closes) {
    if (closes)
        process_connections.fetch_sub(1, std::memory_order_relaxed);
    sessions_.erase(s);
    update_active();
}

void worker::update_active() {
    active_.store(static_cast<int>(sessions_.size() + parked_), std::memory_order_relaxed);
}

void worker::park(tcp::socket socket, std::uint32_t listener_id, bool v6,
                  std::chrono::steady_clock::time_point idle_since) {
    if (!parked_events_) {
        connection_closed(listener_id); // no parked set (see start): the socket closes on return
        return;
    }
    // Taken out of the event loop (one epoll_ctl), into parked_events_.
    boost::system::error_code ec;
    const int fd = socket.release(ec);
    if (ec) {
        connection_closed(listener_id);
        return;
    }
    // (Parked in idle_since order but for timer jitter: the sweep, which
    // stops at the first connection not yet due, is late by that at most.)
    auto* c = new parked_connection{fd, v6, listener_id, idle_since};
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.ptr = c;
    ++parked_;
    if (::epoll_ctl(parked_events_->native_handle(), EPOLL_CTL_ADD, fd, &ev) != 0) {
        close_parked(c);
        return;
    }
    c->prev = parked_tail_;
    (parked_tail_ != nullptr ? parked_tail_->next : parked_head_) = c;
    parked_tail_ = c;
    update_active();
    // (Armed already for a later deadline when a reload shortened
    // client_idle while nothing was parked.)
    const auto due = c->since + snapshot_->cfg.timeouts.client_idle;
    if (!idle_sweep_armed_ || due < idle_sweep_timer_.expiry())
        arm_idle_sweep(due);
}

void worker::wait_parked() {
    parked_events_->async_wait(net::posix::stream_descriptor::wait_read,
                               [this](boost::system::error_code ec) {
                                   if (ec)
                                       return; // closed: the worker is stopping
                                   wake_parked();
                                   wait_parked();
                               });
}

// Every readable parked connection goes back into the event loop with a new
// session, all of them at each wake-up (in batches of 64).
void worker::wake_parked() {
    constexpr int batch = 64;
    epoll_event events[batch];
    for (;;) {
        const int n = ::epoll_wait(parked_events_->native_handle(), events, batch, 0);
        if (n < 0 && errno == EINTR)
            continue;
        for (int i = 0; i < n; ++i) {
            auto* c = static_cast<parked_connection*>(events[i].data.ptr);
            unlink(c);
            ::epoll_ctl(parked_events_->native_handle(), EPOLL_CTL_DEL, c->fd, nullptr);
            tcp::socket socket(io_);
            boost::system::error_code ec;
            adopt_client_socket(socket, c->fd, c->v6, ec);
            if (ec || draining_ || !resume_session(*this, std::move(socket), c->listener_id)) {
                if (!ec)
                    c->fd = -1; // the socket closed it
                close_parked(c);
                continue;
            }
            --parked_;
            delete c;
        }
        if (n < batch)
            break;
    }
    update_active();
}

void worker::connection_closed(std::uint32_t listener_id) {
    metrics_.on_connection_close(listener_id);
    process_connections.fetch_sub(1, std::memory_order_relaxed);
}

void worker::unlink(parked_connection* c) {
    (c->prev != nullptr ? c->prev->next : parked_head_) = c->next;
    (c->next != nullptr ? c->next->prev : parked_tail_) = c->prev;
    c->prev = c->next = nullptr;
}

void worker::close_parked(parked_connection* c) {
    if (c->fd >= 0) {
        // Out of the parked set first: close alone leaves the registration
        // (and this record's address in it) while anything else holds the
        // socket open, if only for a moment (/proc readers, lsof).
        if (parked_events_)
            ::epoll_ctl(parked_events_->native_handle(), EPOLL_CTL_DEL, c->fd, nullptr);
        ::close(c->fd);
    }
    connection_closed(c->listener_id);
    --parked_;
    update_active();
    delete c;
}

template <typename Pred> void worker::close_parked_if(Pred which) {
    for (auto* c = parked_head_; c != nullptr;) {
        auto* next = c->next;
        if (which(*c)) {
            unlink(c);
            close_parked(c);
        }
        c = next;
    }
}

void worker::start_wait(timed_wait& w, std::chrono::milliseconds length,
                        std::chrono::steady_clock::time_point from) {
    timed_waits* t = nullptr;
    for (auto& candidate : waits_)
        if (candidate->length == length) {
            t = candidate.get();
            break;
        }
    if (t == nullptr) {
        // (One per length ever used: a few, unless reloads keep changing
        // timeouts; an empty one holds an idle timer.)
        auto made = std::make_unique<timed_waits>();
        made->length = length;
        made->timer.emplace(io_);
        t = waits_.emplace_back(std::move(made)).get();
    }
    const auto due = from + length;
    t->list.add(w, due);
    // Waits of one length come in deadline order, so an armed timer is
    // usually due no later than this one; one that started earlier (a
    // `from` in the past) may be due before it.
    if (!t->armed || due < t->armed_for)
        arm_waits(*t, due);
}

void worker::arm_waits(timed_waits& t, std::chrono::steady_clock::time_point at) {
    t.armed = true;
    t.armed_for = at;
    t.timer->expires_at(at); // (a wait pending is cancelled: its handler returns)
    t.timer->async_wait([this, &t](boost::system::error_code ec) {
        // Cancelled: replaced by an earlier deadline (still armed), or the
        // worker is stopping (its sockets closed: no wait is left to expire).
        if (ec)
            return;
        t.armed = false;
        t.list.expire_due(std::chrono::steady_clock::now());
        if (const auto next = t.list.next_due(); next && !t.armed)
            arm_waits(t, *next);
    });
}

void worker::arm_idle_sweep(std::chrono::steady_clock::time_point at) {
    idle_sweep_armed_ = true;
    idle_sweep_timer_.expires_at(at); // replaces a wait already pending
    idle_sweep_timer_.async_wait([this](boost::system::error_code ec) {
        if (ec)
            return; // replaced, or the worker is stopping
        idle_sweep_armed_ = false;
        sweep_idle();
    });
}

// The list is in parking order, so the connections whose client_idle has
// passed are at its head (client_idle is read now: a reload changes it for
// the connections already parked too).
void worker::sweep_idle() {
    const auto limit = snapshot_->cfg.timeouts.client_idle;
    const auto now = std::chrono::steady_clock::now();
    while (parked_head_ != nullptr && parked_head_->since + limit <= now) {
        auto* c = parked_head_;
        unlink(c);
        close_parked(c);
    }
    if (parked_head_ != nullptr)
        arm_idle_sweep(parked_head_->since + limit);
}

} // namespace sluice::proxy
