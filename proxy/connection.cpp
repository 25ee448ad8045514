#include "proxy/connection.hpp"

#include "proxy/balancer.hpp"
#include "proxy/body_buffer.hpp"
#include "proxy/errors.hpp"
#include "proxy/headers.hpp"
#include "proxy/http_parser.hpp"
#include "proxy/log.hpp"
#include "proxy/plain_stream.hpp"
#include "proxy/read_hint.hpp"
#include "proxy/relay.hpp"
#include "proxy/tls_stream.hpp"
#include "proxy/upstream_tls.hpp"
#include "proxy/worker.hpp"
#include "tls/client_context.hpp"
#include "tls/server_contexts.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <boost/assert.hpp>

#include <array>
#include <concepts>
#include <chrono>
#include <optional>
#include <tuple>
#include <type_traits>
#include <utility>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

namespace sluice::proxy {
namespace net = boost::asio;
namespace beast = boost::beast;
using tcp = net::ip::tcp;
using std::chrono::steady_clock;

namespace {

constexpr std::size_t read_chunk = 16 * 1024;
constexpr std::size_t max_response_head = 64 * 1024;
// A body relayed at the relay's full read size takes a pooled large block.
static_assert(relay_buffer_limit == worker::large_block_size);
// What a forwarded head may add to the one received (X-Forwarded-*, the
// request ID, Connection): reserved up front.
constexpr std::size_t head_headroom = 256;
constexpr auto linger_time = std::chrono::seconds(1);
constexpr std::size_t linger_bytes = 64 * 1024;
// A plain connection idle this long between requests is parked (worker::park).
// A client with its next request ready sends it within a round trip, on the
// networks an ingress proxy serves well under this; such short gaps are
// waited for in the session's coroutine, because parking and waking cost four or five
// epoll_ctl calls and a new session. Kept short so that a burst of
// connections going idle together never has its sessions all alive at once
// (the allocator keeps the high-water mark).
constexpr std::chrono::milliseconds park_after{10};

bool idempotent(std::string_view method) {
    return method == "GET" || method == "HEAD" || method == "PUT" || method == "DELETE" ||
           method == "OPTIONS" || method == "TRACE";
}

// The peer address as 16 bytes (IPv4 in the first 4; IPv4-mapped IPv6 as IPv4).
std::pair<std::array<std::uint8_t, 16>, bool> address_bytes(const net::ip::address& a) {
    std::array<std::uint8_t, 16> out{};
    if (a.is_v6() && a.to_v6().is_v4_mapped()) {
        const auto v4 = net::ip::make_address_v4(net::ip::v4_mapped, a.to_v6()).to_bytes();
        std::copy(v4.begin(), v4.end(), out.begin());
        return {out, false};
    }
    if (a.is_v4()) {
        const auto v4 = a.to_v4().to_bytes();
        std::copy(v4.begin(), v4.end(), out.begin());
        return {out, false};
    }
    const auto v6 = a.to_v6().to_bytes();
    std::copy(v6.begin(), v6.end(), out.begin());
    return {out, true};
}

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define SLUICE_NO_SPARES 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define SLUICE_NO_SPARES 1
#endif
#endif

// What a connection that ended leaves to the next one its worker thread
// accepts, so a connection per request does not allocate it anew: the
// buffers its per-request containers grew (never their contents) and its
// session's block, which is too large for malloc's per-thread cache.
// Per thread at most `max_spare_sets` of each; a container grown past
// `max_spare_bytes` is freed instead (under 1.5 MiB per worker at the very
// most, a few KiB in practice). A thread keeps spares only after it made a
// session, which reserves their room: giving back never allocates, and the
// control thread, which ends the sessions still open at shutdown, keeps
// none. Off under AddressSanitizer, which must see every buffer freed to
// find a view into one that outlived it, and under ThreadSanitizer, whose
// memory checks (test_chaos) must see what the proxy itself keeps.
struct spare_capacity {
    std::vector<http::field> req_fields;
    std::vector<http::field> resp_fields;
    std::string head_out;
    std::string request_head;
    std::string request_id;
    std::string path;
    std::vector<int> tried;
    relay_scratch scratch;
    relay_scratch sender_scratch;
};
[[maybe_unused]] constexpr std::size_t max_spare_sets = 32; // (unused under ASan and TSan)
constexpr std::size_t max_spare_bytes = 4 * 1024;

[[maybe_unused]] std::vector<spare_capacity>& spare_sets() {
    thread_local std::vector<spare_capacity> sets;
    return sets;
}

// Moves `from` into `to` emptied, unless it grew too large to keep.
template <typename Container> void keep_capacity(Container& to, Container& from) noexcept {
    from.clear();
    if (from.capacity() * sizeof(typename Container::value_type) <= max_spare_bytes)
        to = std::move(from);
}

// The blocks of `Size` bytes a thread keeps (see spare_capacity).
template <std::size_t Size> class block_cache {
  public:
    static void* take() {
#if !defined(SLUICE_NO_SPARES)
        auto& b = list().blocks;
        if (!b.empty()) {
            void* p = b.back();
            b.pop_back();
            return p;
        }
        if (b.capacity() == 0)
            b.reserve(max_spare_sets);
#endif
        return ::operator new(Size);
    }
    static void give(void* p) noexcept {
#if !defined(SLUICE_NO_SPARES)
        auto& b = list().blocks;
        if (b.size() < b.capacity()) {
            b.push_back(p); // (within the room reserved: does not allocate)
            return;
        }
#endif
        ::operator delete(p);
    }

  private:
    struct holder {
        std::vector<void*> blocks;
        ~holder() {
            for (void* p : blocks)
                ::operator delete(p);
        }
    };
    static holder& list() {
        thread_local holder h;
        return h;
    }
};

// Dotted-quad text of the IPv4 address in b[0..3] (what inet_ntop writes,
// without its printf: once per connection).
std::string ipv4_text(const std::array<std::uint8_t, 16>& b) {
    char text[16];
    char* p = text;
    for (int i = 0; i < 4; ++i) {
        if (i > 0)
            *p++ = '.';
        const unsigned v = b[static_cast<std::size_t>(i)];
        if (v >= 100)
            *p++ = static_cast<char>('0' + v / 100);
        if (v >= 10)
            *p++ = static_cast<char>('0' + v / 10 % 10);
        *p++ = static_cast<char>('0' + v % 10);
    }
    return std::string(text, p);
}

// The TCP socket under a tunnel end.
tcp::socket& socket_of(tcp::socket& s) {
    return s;
}
tcp::socket& socket_of(tls_stream& s) {
    return s.next_layer().socket();
}
tcp::socket& socket_of(net::ssl::stream<beast::tcp_stream&>& s) {
    return s.next_layer().socket();
}

// A tunnel end's read that never waits (both sockets are non-blocking):
// would_block when nothing has come, and the pump then waits for
// readiness_for(end) without holding a buffer. An upstream over TLS
// (Asio's stream, which keeps bytes of its own) is only read
// asynchronously, with a buffer held.
template <typename End>
constexpr bool reads_without_waiting = !std::is_same_v<End, net::ssl::stream<beast::tcp_stream&>>;
std::size_t tunnel_read_now(tcp::socket& s, net::mutable_buffer b, boost::system::error_code& ec) {
    // (Both ends are already: plain_stream, upstream_connect. Asio's
    // receive on a socket that is not would wait for data.)
    if (!s.non_blocking())
        s.non_blocking(true, ec);
    return ec ? 0 : s.receive(b, 0, ec);
}
std::size_t tunnel_read_now(tls_stream& s, net::mutable_buffer b, boost::system::error_code& ec) {
    return s.read_now(b, ec);
}
net::socket_base::wait_type readiness_for(tcp::socket&) {
    return net::socket_base::wait_read;
}
net::socket_base::wait_type readiness_for(tls_stream& s) {
    return s.want(); // (a TLS read may need to write first)
}

// An upstream connection as a stream for relay_body and async_write: TLS
// when the upstream has it, else the tcp_stream; both with the tcp_stream's
// timeouts (expires_after).
struct upstream_io {
    upstream_connection& c;
    using executor_type = net::any_io_executor;
    executor_type get_executor() { return c.stream.get_executor(); }
    void expires_after(std::chrono::milliseconds d) { c.stream.expires_after(d); }
    template <typename Buffers, typename Token> auto async_read_some(const Buffers& b, Token&& t) {
        if (c.tls)
            return c.tls->stream.async_read_some(b, std::forward<Token>(t));
        mark_maybe_readable(c.stream.socket()); // (a response's mark: read_hint.hpp)
        return c.stream.async_read_some(b, std::forward<Token>(t));
    }
    template <typename Buffers, typename Token> auto async_write_some(const Buffers& b, Token&& t) {
        if (c.tls)
            return c.tls->stream.async_write_some(b, std::forward<Token>(t));
        return c.stream.async_write_some(b, std::forward<Token>(t));
    }
};

// The body sender's way to the upstream while the exchange reads the same
// connection with its response timeout: a plain connection is written on
// its socket (no stream timeout to disturb the exchange's); TLS goes
// through the TLS stream, which allows one read and one write at once.
struct upstream_sender_io {
    upstream_connection& c;
    using executor_type = net::any_io_executor;
    executor_type get_executor() { return c.stream.get_executor(); }
    template <typename Buffers, typename Token> auto async_write_some(const Buffers& b, Token&& t) {
        if (c.tls)
            return c.tls->stream.async_write_some(b, std::forward<Token>(t));
        return c.stream.socket().async_write_some(b, std::forward<Token>(t));
    }
};

// Reads that never wait (relay.hpp), on a plain connection's socket.
template <typename Buffers>
std::size_t try_read_now(upstream_io& u, const Buffers& b, boost::system::error_code& ec) {
    if (u.c.tls) {
        ec = net::error::would_block;
        return 0;
    }
    mark_maybe_readable(u.c.stream.socket()); // (a response's mark: read_hint.hpp)
    return sluice::proxy::try_read_now(u.c.stream, b, ec);
}

// Writes that never wait (relay.hpp), through either upstream adapter: on
// the socket of a plain connection (non-blocking since it connected); TLS
// connections take none.
template <typename Adapter, typename Buffers>
requires std::same_as<Adapter, upstream_io> || std::same_as<Adapter, upstream_sender_io> std::size_t
try_write_now(Adapter& u, const Buffers& b, boost::system::error_code& ec) {
    if (u.c.tls) {
        ec = net::error::would_block;
        return 0;
    }
    return sluice::proxy::try_write_now(u.c.stream, b, ec);
}

// TLS to an HTTPS upstream on a connected `conn`, within `timeout`.
net::awaitable<boost::system::error_code> upstream_handshake(upstream_connection& conn,
                                                             tls::client_context& ctx,
                                                             std::chrono::milliseconds timeout) {
    conn.tls = std::make_unique<upstream_tls_stream>(conn.stream, ctx.get());
    if (!ctx.prepare(conn.tls->stream.native_handle(), conn.server->name))
        co_return net::error::invalid_argument;
    conn.stream.expires_after(timeout);
    auto [ec] = co_await conn.tls->stream.async_handshake(net::ssl::stream_base::client, use_tuple);
    co_return ec;
}

// Decrements a server's in-flight count when the exchange using it ends.
class in_flight_guard {
  public:
    in_flight_guard() = default;
    explicit in_flight_guard(server_state* s) : s_(s) {
        s_->in_flight.fetch_add(1, std::memory_order_relaxed);
    }
    in_flight_guard(const in_flight_guard&) = delete;
    in_flight_guard& operator=(in_flight_guard&& o) noexcept {
        release();
        s_ = std::exchange(o.s_, nullptr);
        return *this;
    }
    ~in_flight_guard() { release(); }

  private:
    void release() {
        if (s_ != nullptr)
            s_->in_flight.fetch_sub(1, std::memory_order_relaxed);
        s_ = nullptr;
    }
    server_state* s_ = nullptr;
};

// Maps how relaying the request body from the client ended to the error
// the client gets (none when the client's side did not fail).
proxy_error client_side_error(relay_outcome o) {
    switch (o) {
    case relay_outcome::read_failed:
        return proxy_error::client_closed;
    case relay_outcome::timeout:
        return proxy_error::body_timeout;
    case relay_outcome::bad_framing:
        return proxy_error::bad_request;
    case relay_outcome::too_large:
        return proxy_error::body_too_large;
    case relay_outcome::complete:
    case relay_outcome::write_failed:
        return proxy_error::none;
    }
    return proxy_error::none;
}

// What a request-body sender coroutine reports to the exchange that
// spawned it.
struct body_sender {
    explicit body_sender(const net::any_io_executor& ex)
        : done(ex, steady_clock::time_point::max()) {}
    net::steady_timer done; // cancelled when the sender has ended
    relay_result result;
    bool finished = false;
    bool stop = false; // set by the exchange: send no more
};

// Stream: plain_stream for plain HTTP, tls_stream (over a plain_stream) for
// HTTPS listeners.
template <typename Stream> class client_session final : public session_base {
  public:
    static constexpr bool is_tls = !std::is_same_v<Stream, plain_stream>;

    // `contexts` (HTTPS only) is kept for the connection's life: the SNI
    // callback refers to it, and a reload may drop the snapshot that held it.
    // `peer`: the client's address. `woken`: the connection was parked
    // between requests (plain HTTP only) and is already counted open.
    // `listener`: the current snapshot's entry of the listener it came on.
    client_session(worker& w, Stream stream, const listener_entry& listener,
                   std::shared_ptr<tls::server_contexts> contexts, const tcp::endpoint& peer,
                   bool woken = false)
        : worker_(w), stream_(std::move(stream)), listener_key_(listener.key),
          listener_id_(listener.metrics_id), contexts_(std::move(contexts)) {
        // Set again per request (a reload may rename it); set here too so a
        // request refused before routing (400, 408, 431) is logged with it.
        listener_name_ = listener.cfg->name;
        v6_ = peer.protocol() == tcp::v6();
        const auto [bytes, v6] = address_bytes(peer.address());
        client_ip_ = v6 ? peer.address().to_string() : ipv4_text(bytes);
        // (TCP_NODELAY comes from the listening socket.)
        for (const auto& cidr : worker_.current()->cfg.forwarded.trusted_proxies)
            peer_trusted_ = peer_trusted_ || cidr_contains(cidr, bytes, v6);
#if !defined(SLUICE_NO_SPARES)
        if (auto& spares = spare_sets(); spares.empty()) {
            if (spares.capacity() == 0)
                spares.reserve(max_spare_sets); // this thread keeps spares from now on
        } else {
            pair_spares(spares.back(), [](auto& spare, auto& mine) { mine = std::move(spare); });
            spares.pop_back();
        }
#endif
        woken_ = woken;
        // Last: a constructor that throws (out of memory) leaves nothing
        // registered with the worker, nor counted.
        if (!woken)
            worker_.metrics().on_connection_open(listener_id_);
        try {
            worker_.attach(this, !woken);
        } catch (...) {
            if (!woken)
                worker_.metrics().on_connection_close(listener_id_);
            throw;
        }
    }

    ~client_session() override {
        if (!parked_)
            worker_.metrics().on_connection_close(listener_id_);
        worker_.detach(this, !parked_);
#if !defined(SLUICE_NO_SPARES)
        // A parked connection's session shed its capacity already, as did an
        // HTTPS one that ended while waiting past park_after for its next
        // request; one that parsed no request (a failed handshake, a
        // scanner) grew none.
        auto& spares = spare_sets();
        if (!parked_ && req_.fields.capacity() != 0 && spares.size() < spares.capacity()) {
            pair_spares(spares.emplace_back(), // (within the room reserved)
                        [](auto& spare, auto& mine) { keep_capacity(spare, mine); });
        }
#endif
    }
    // Calls f(spare's container, this session's container) for each
    // container a spare_capacity holds.
    template <typename F> void pair_spares(spare_capacity& s, F f) {
        f(s.req_fields, req_.fields);
        f(s.resp_fields, resp_.fields);
        f(s.head_out, head_out_);
        f(s.request_head, request_head_);
        f(s.request_id, request_id_);
        f(s.path, path_);
        f(s.tried, tried_);
        f(s.scratch.pieces, scratch_.pieces);
        f(s.scratch.buffers, scratch_.buffers);
        f(s.sender_scratch.pieces, sender_scratch_.pieces);
        f(s.sender_scratch.buffers, sender_scratch_.buffers);
    }

    static void* operator new(std::size_t size) {
        static_assert(alignof(client_session) <= __STDCPP_DEFAULT_NEW_ALIGNMENT__);
        return size == sizeof(client_session) ? block_cache<sizeof(client_session)>::take()
                                              : ::operator new(size);
    }
    static void operator delete(void* p, std::size_t size) noexcept {
        if (size == sizeof(client_session))
            block_cache<sizeof(client_session)>::give(p);
        else
            ::operator delete(p);
    }

    // The connection's coroutine; owns the session (lifetime: until it returns).
    static net::awaitable<void> serve(std::unique_ptr<client_session> self) {
        // However the session ends, finish() runs: the stream's and the
        // client timer's handlers refer to the session and must all have
        // run before it goes. (An exception would otherwise vanish in
        // co_spawn, the session with it.)
        try {
            bool serving = true;
            if constexpr (is_tls)
                serving = co_await self->handshake();
            while (serving) {
                // Between requests serve_one's frame (and all it called) is
                // gone; a plain connection with nothing to read is parked by
                // await_request and this coroutine ends too.
                self->client_read_short_ = false; // (await_request says)
                if (self->in_.empty()) {
                    if (self->draining()) {
                        // Closed between requests: the next one may be on
                        // its way already (finish() lingers if so).
                        self->ended_by_proxy_ = true;
                        break;
                    }
                    // (A co_await apart from any && or ||: GCC 12 miscompiles those.)
                    const bool arrived = co_await self->await_request();
                    if (!arrived)
                        break;
                } else if constexpr (!is_tls) {
                    // Pipelined bytes: the last request's mark (read_hint.hpp)
                    // must not hold back the reads that complete this one.
                    mark_maybe_readable(self->lowest().socket());
                }
                if (!co_await self->serve_one()) {
                    self->ended_by_proxy_ = true;
                    break;
                }
            }
        } catch (const std::exception& e) {
            try {
                log::error("connection failed",
                           {{"client", self->client_ip_}, {"error", e.what()}});
            } catch (...) {
                // (out of memory: the session still ends through finish())
            }
        }
        co_await self->finish();
    }

    void on_drain() override {
        drain_requested_ = true;
        if (idle_)
            close_sockets();
        // Otherwise the response in progress carries Connection: close.
    }
    void close_now() override {
        close_sockets();
    }
    const std::string& listener() const override {
        return listener_key_;
    }

  private:
    // The TLS handshake, within client_header. Failures (scanners, old
    // clients) are logged at debug only: they must not flood the log.
    net::awaitable<bool> handshake() {
        lowest().expires_after(worker_.current()->cfg.timeouts.client_header);
        auto [ec] = co_await stream_.async_handshake(net::ssl::stream_base::server, use_tuple);
        lowest().expires_never();
        using handshake = worker_metrics::handshake;
        if (ec) {
            worker_.metrics().on_tls_handshake(listener_id_, handshake::failed);
            log::debug("tls handshake failed",
                       {{"client", client_ip_},
                        {"error", lowest().timed_out() ? "timeout" : ec.message()}});
            co_return false;
        }
        const bool resumed = SSL_session_reused(stream_.native_handle()) == 1;
        worker_.metrics().on_tls_handshake(listener_id_,
                                           resumed ? handshake::resumed : handshake::full);
        // A resumed handshake ends with the client's Finished, which
        // nothing from the proxy answers (unless a fresh ticket goes out):
        // if the request is not there when the session looks for it, the
        // client may be holding it until the Finished is acknowledged
        // (Nagle's algorithm), which must then not wait for the
        // delayed-acknowledgement timer (await_request). (After a full
        // handshake the proxy's last flight or session ticket carries it.)
        acknowledge_if_waiting_ = resumed;
        read_first_ = true; // (the request usually came with the client's Finished)
        co_return true;
    }

    // --- one request ---------------------------------------------------------

    // Serves one request; returns whether the connection stays open.
    net::awaitable<bool> serve_one();
    // Waits (up to client_idle) for the first bytes of the next request and
    // reads them into in_; false when the connection is to close. Reads the
    // current snapshot's settings afresh after every wait (a reload may
    // have freed the one current before it).
    net::awaitable<bool> await_request();
    // Gives back what only a request in progress needs (the receive block,
    // head and scratch capacity): an idle connection keeps its session and
    // socket only (and an HTTPS one its TLS state). Called when the next
    // request is not there yet, so a busy connection keeps reusing them.
    void shed_idle_memory() {
        // The last request's snapshot too: an idle connection must not keep
        // an old configuration alive across reloads (upstream_name_ is a
        // view into it). serve_one takes the current one first thing.
        snap_.reset();
        upstream_name_ = {};
        in_.release_if_empty();
        std::string().swap(head_out_);
        std::string().swap(request_head_);
        std::string().swap(path_);
        std::vector<http::field>().swap(req_.fields);
        std::vector<http::field>().swap(resp_.fields);
        relay_scratch().swap(scratch_);
        relay_scratch().swap(sender_scratch_);
        std::vector<int>().swap(tried_);
    }
    // Between requests: what the client has sent, read without waiting.
    enum class read_now { arrived, nothing, closed };
    read_now read_request_now() {
        auto [p, room] = in_.prepare(read_chunk, client_buffer_limit(worker_.current()->cfg));
        boost::system::error_code ec;
        const auto n = sluice::proxy::try_read_now(stream_, net::buffer(p, room), ec);
        if (!ec) {
            in_.commit(n);
            client_read_short_ = n < room;
            return read_now::arrived;
        }
        return ec == net::error::would_block ? read_now::nothing : read_now::closed;
    }
    // A connection waiting for its next request must not keep an old
    // configuration alive across reloads (serve_one takes the current one
    // first thing).
    void let_go_of_snapshot() {
        snap_.reset();
        upstream_name_ = {}; // (a view into it)
    }
    // Whether the client has sent bytes not read yet (never waits).
    bool client_bytes_waiting() {
        if constexpr (is_tls) {
            if (stream_.has_pending())
                return true;
        }
        // Nothing has come since a read emptied the socket: no need to look.
        // (Bytes whose event the loop has yet to collect are missed then,
        // as are bytes that come a moment after the peek.)
        if (!read_may_find_bytes(lowest().socket()))
            return false;
        char byte = 0;
        boost::system::error_code ec; // (would_block: nothing there)
        return lowest().socket().receive(net::buffer(&byte, 1), tcp::socket::message_peek, ec) > 0;
    }
    // The client is still sending this request (a head in pieces, a body
    // to come): what it has sent is acknowledged now, and what it sends
    // next at once too (until the proxy sends: Linux then goes back to
    // delaying). Accepted connections delay acknowledgements (the
    // listening socket's TCP_QUICKACK is off: an answer carries its
    // request's), but a client that waits for one before sending more
    // (Nagle's algorithm) would stall for the delayed-acknowledgement
    // timer (40 ms) at each piece.
    void acknowledge_at_once() {
        const int one = 1;
        ::setsockopt(lowest().socket().native_handle(), IPPROTO_TCP, TCP_QUICKACK, &one,
                     sizeof one);
    }
    // Reads and parses a request head into req_.
    net::awaitable<proxy_error> read_head(const config::config& cfg);
    // Parses the head in in_ (ending at head_end) into req_ and checks it.
    proxy_error parse_head(std::size_t head_end);
    // Answers with a response the proxy makes; returns keep_alive as sent.
    net::awaitable<bool> send_local(int status, std::string_view body, bool keep_alive,
                                    std::string_view location = {});
    net::awaitable<bool> send_error(proxy_error e, bool keep_alive);
    // Relays the request to an upstream and its response back.
    net::awaitable<bool> forward(const upstream_entry& up);
    // The heads forward() sends, into request_head_ and head_out_ (plain
    // functions: what they use stays out of forward's coroutine frame, which
    // then fits the event loop's recycled blocks).
    void build_request_head(const upstream_entry& up, const config::config& cfg, bool upgrade);
    void build_response_head(const config::config& cfg, response_facts& facts);
    // A 101 answer: relays it to a client that asked for the upgrade (else
    // 502) and tunnels the connection. Returns false (the connection ends).
    net::awaitable<bool> switch_protocols(const config::config& cfg, bool upgrade,
                                          body_sender* sender);
    // Picks, connects (with retries) and returns a connection in upstream_.
    // `verify_pooled`: peek at a pooled connection before reusing it (for a
    // request that could not be retried if the upstream had just closed it).
    net::awaitable<proxy_error> connect_upstream(const upstream_entry& up, std::vector<int>& tried,
                                                 in_flight_guard& guard, bool verify_pooled);
    // Reads the response head into resp_, skipping interim 1xx responses
    // other than 101 (the proxy answered Expect: 100-continue itself).
    net::awaitable<proxy_error> read_final_response_head(upstream_connection& conn,
                                                         std::chrono::milliseconds timeout,
                                                         bool& any_byte);
    // Streams the request head and body to upstream_ while the exchange
    // waits for the response. Lifetime: forward() waits for `state->finished`
    // before it uses the streams again or returns, so `self` and `head`
    // outlive this coroutine.
    static net::awaitable<void> send_body(client_session* self, std::shared_ptr<body_sender> state,
                                          std::string_view head, http::framing framing,
                                          std::uint64_t length);
    // Writes the interim "100 Continue" the client waits for before it sends
    // its body (Expect: 100-continue; the proxy answers it itself). Returns
    // false when the client has gone.
    net::awaitable<bool> write_continue(const config::config& cfg);
    // Stops a body sender that is still running and waits until it has.
    net::awaitable<void> stop_sender(body_sender& sender);
    // request_buffering: reads the whole chunked body, de-chunked, into
    // buffered_body_. Returns none, or the error the client gets.
    net::awaitable<proxy_error> buffer_request_body(const config::config& cfg, bool send_continue);
    net::awaitable<relay_outcome> write_buffered_request(std::string_view head,
                                                         std::chrono::milliseconds timeout);
    net::awaitable<void> tunnel();
    net::awaitable<void> finish();
    void close_sockets();
    // Arms client_timer_: after `d` the pending client read is cancelled and
    // client_timed_out_ set. Re-arming replaces the previous deadline. The
    // stream's own deadline is left alone: when one is set here, it is a
    // response write's, going on while the body sender reads (every other
    // operation clears its deadline when it ends).
    void arm_client_timer(std::chrono::milliseconds d) {
        client_timed_out_ = false;
        client_timer_armed_ = true;
        if (!client_timer_)
            client_timer_.emplace(stream_.get_executor());
        client_timer_->expires_after(d);
        ++client_timer_waits_;
        client_timer_->async_wait(
            [this, round = ++client_timer_round_](boost::system::error_code ec) {
                // Lifetime: finish() waits until every wait's handler has run
                // (one may be queued, expired, as the read it was to cancel
                // completes and the session ends).
                --client_timer_waits_;
                if (ec || round != client_timer_round_)
                    return;
                client_timed_out_ = true;
                boost::system::error_code ignored;
                lowest().socket().cancel(ignored);
            });
    }
    void disarm_client_timer() {
        if (!client_timer_armed_)
            return; // (a request without a body never armed it: no reactor call)
        client_timer_armed_ = false;
        ++client_timer_round_; // a wakeup already due must not cancel what comes next
        client_timer_->cancel();
    }
    // The client connection as relay_body's source: reads with
    // client_timer_ instead of the stream's closing timeout.
    struct client_source {
        client_session* s;
        using executor_type = net::any_io_executor;
        executor_type get_executor() { return s->stream_.get_executor(); }
        void expires_after(std::chrono::milliseconds d) { s->arm_client_timer(d); }
        template <typename Buffers, typename Token>
        auto async_read_some(const Buffers& b, Token&& t) {
            return s->stream_.async_read_some(b, std::forward<Token>(t));
        }
        template <typename Buffers, typename Token>
        auto async_write_some(const Buffers& b, Token&& t) {
            return s->stream_.async_write_some(b, std::forward<Token>(t));
        }
        // relay_body's read that never waits (plain or TLS). Its
        // outcome is its own: no earlier wait's timeout decides how it ended.
        template <typename Buffers>
        std::size_t read_now(const Buffers& b, boost::system::error_code& ec) {
            const auto n = sluice::proxy::try_read_now(s->stream_, b, ec);
            if (ec != net::error::would_block)
                s->client_timed_out_ = false;
            return n;
        }
        // After a wait: its deadline ends with it, so it cannot later cancel
        // whatever is pending on the connection (a response being written).
        void wait_done() { s->disarm_client_timer(); }
        template <typename Buffers>
        friend std::size_t try_read_now(client_source& c, const Buffers& b,
                                        boost::system::error_code& ec) {
            return c.read_now(b, ec);
        }
    };
    // The client connection as relay_body's destination: every write that
    // waits has client_body, plain or TLS (the TLS stream itself has no
    // deadline to set), and the deadline ends with the write.
    struct client_sink {
        client_session* s;
        bool closes = false; // the connection ends with this response
        using executor_type = net::any_io_executor;
        executor_type get_executor() { return s->stream_.get_executor(); }
        void expires_after(std::chrono::milliseconds d) { s->lowest().expires_after(d); }
        void expires_never() { s->client_op_done(); }
        template <typename Buffers, typename Token>
        auto async_write_some(const Buffers& b, Token&& t) {
            return s->stream_.async_write_some(b, std::forward<Token>(t));
        }
        template <typename Buffers>
        std::size_t write_now(const Buffers& b, boost::system::error_code& ec) {
            return sluice::proxy::try_write_now(s->stream_, b, ec);
        }
        // The response's last bytes, before a close: sent with MSG_MORE,
        // they wait in the socket for the FIN the close adds and leave with
        // it in one segment, which saves the client's kernel and this one a
        // segment and an acknowledgement each. The session closes or
        // half-closes the connection next, waiting for nothing on the way
        // but its own operations to end, and either pushes them out. (TLS
        // writes records through OpenSSL's socket BIO: unchanged.)
        template <typename Buffers>
        std::size_t write_last(const Buffers& b, boost::system::error_code& ec) {
            if constexpr (!is_tls) {
                if (closes)
                    return s->stream_.socket().send(b, MSG_MORE, ec);
            }
            return write_now(b, ec);
        }
        template <typename Buffers>
        friend std::size_t try_write_now(client_sink& c, const Buffers& b,
                                         boost::system::error_code& ec) {
            return c.write_now(b, ec);
        }
        template <typename Buffers>
        friend std::size_t try_write_last(client_sink& c, const Buffers& b,
                                          boost::system::error_code& ec) {
            return c.write_last(b, ec);
        }
    };
    // How relaying the request body from the client ended, as the error the
    // client gets (none when the client's side did not fail).
    proxy_error client_side_error(relay_outcome o) const {
        if (o == relay_outcome::read_failed && client_timed_out_)
            return proxy_error::body_timeout;
        return sluice::proxy::client_side_error(o);
    }
    void log_request();
    std::size_t client_buffer_limit(const config::config& cfg) const {
        return static_cast<std::size_t>(cfg.limits.max_header_bytes) + read_chunk;
    }

    // The TCP layer: the plain stream itself, or the one under TLS.
    plain_stream& lowest() {
        if constexpr (is_tls)
            return stream_.next_layer();
        else
            return stream_;
    }
    // An operation on the client that had a deadline has ended: the
    // deadline ends with it (plain_stream keeps it armed until told, so it
    // must not outlive what it guarded, e.g. into a wait on the upstream).
    void client_op_done() {
        lowest().expires_never();
    }
    // The address the client connected to, as a URI host ("[::1]" for IPv6).
    std::string local_host() {
        boost::system::error_code ec;
        const auto a = lowest().socket().local_endpoint(ec).address();
        if (ec)
            return "localhost";
        if (a.is_v6() && a.to_v6().is_v4_mapped())
            return net::ip::make_address_v4(net::ip::v4_mapped, a.to_v6()).to_string();
        return a.is_v6() ? "[" + a.to_string() + "]" : a.to_string();
    }
    decltype(auto) tunnel_end() {
        if constexpr (is_tls)
            return (stream_);
        else
            return (lowest().socket());
    }

    worker& worker_;
    Stream stream_;
    const std::string listener_key_;  // the bind it was accepted on (see listener_key)
    const std::uint32_t listener_id_; // its metrics id
    std::shared_ptr<tls::server_contexts> contexts_;
    std::string client_ip_;
    bool peer_trusted_ = false;
    bool v6_ = false; // the socket's family
    bool draining() const {
        return drain_requested_ || worker_.draining();
    }

    bool idle_ = false;              // waiting for the first byte of a request
    bool woken_ = false;             // was parked and is readable: read at once
    bool client_read_short_ = false; // await_request's read emptied the socket for good
    bool parked_ = false;            // the connection went on without this session
    bool drain_requested_ = false;   // this connection's listener is going away
    bool linger_ = false;            // close gracefully: the client may still be sending
    bool ended_by_proxy_ = false;    // a response or a drain ended the connection (not the client)
    byte_buffer in_{&worker_.blocks(), &worker_.large_blocks()};
    // Timeouts on reads from the client that must still be answered (408):
    // the stream's deadline would close the socket, this one only cancels.
    // Made when first armed: many connections never need it.
    std::optional<net::steady_timer> client_timer_;
    // The latest request's body sender: finish() waits for it should an
    // exception have ended the exchange while it ran.
    std::shared_ptr<body_sender> last_sender_;
    std::uint64_t client_timer_round_ = 0; // tells a stale wakeup from the current one
    int client_timer_waits_ = 0;           // client_timer_ handlers not yet run
    bool client_timer_armed_ = false;      // armed since the last disarm
    bool client_timed_out_ = false;
    bool response_timed_out_ = false;
    // Waits the worker times (worker::start_wait), being usually cut
    // short: the wait for the next request between requests (its expiry
    // cancels what waits on the socket: a plain connection's receive, to
    // park it or close it; an HTTPS one's readiness wait, to end its hold)
    // and a plain upstream's answer (its expiry closes the upstream
    // connection, as a timeout of its stream does).
    struct session_wait : timed_wait {
        session_wait(client_session* owner, action on_expiry) : timed_wait(on_expiry), s(owner) {}
        client_session* s;
    };
    session_wait idle_wait_{this, [](timed_wait& w) {
                                auto& s = *static_cast<session_wait&>(w).s;
                                s.client_timed_out_ = true;
                                boost::system::error_code ignored;
                                s.lowest().socket().cancel(ignored);
                            }};
    session_wait response_wait_{this, [](timed_wait& w) {
                                    auto& s = *static_cast<session_wait&>(w).s;
                                    s.response_timed_out_ = true;
                                    boost::system::error_code ignored;
                                    if (s.upstream_)
                                        s.upstream_->stream.socket().close(ignored);
                                }};
    http::message_head req_;
    http::message_head resp_;
    std::string head_out_;     // outgoing response head bytes; capacity reused
    std::string request_head_; // outgoing request head, kept for a retry; capacity reused
    std::vector<int> tried_;   // servers tried for the current request; capacity reused
    relay_scratch scratch_;
    relay_scratch sender_scratch_; // used by send_body while scratch_ may be in use
    body_buffer buffered_body_;
    std::unique_ptr<upstream_connection> upstream_; // during an exchange

    // The request in progress (copied out of in_, which later reads reuse).
    std::shared_ptr<const snapshot> snap_;
    steady_clock::time_point started_;
    std::string request_id_;
    std::string listener_name_;
    std::string method_;
    std::string path_;
    std::string host_;
    int status_ = 0;
    std::uint64_t bytes_in_ = 0;
    std::uint64_t bytes_out_ = 0;
    std::string_view upstream_name_;
    int upstream_index_ = -1; // in snap_->upstreams; -1 when the proxy answers
    std::string server_address_;
    proxy_error error_ = proxy_error::none;
    bool local_answer_whole_ = false;     // the proxy's own answer (an error's too) went out whole
    bool tunneled_ = false;               // the connection became a tunnel (101)
    bool acknowledge_if_waiting_ = false; // a resumed handshake's Finished: see handshake()
    bool read_first_ = false;             // TLS: read before waiting (await_request)
};

template <typename Stream> void client_session<Stream>::close_sockets() {
    boost::system::error_code ignored;
    lowest().socket().close(ignored);
    if (upstream_)
        upstream_->stream.socket().close(ignored);
}

template <typename Stream> net::awaitable<void> client_session<Stream>::finish() {
    // client_timer_'s handlers refer to this session: let them all run.
    disarm_client_timer();
    while (client_timer_waits_ > 0)
        co_await net::post(stream_.get_executor(), net::use_awaitable);
    // A response that ended the connection (HTTP/1.0, Connection: close, a
    // drain) while the client had sent more after that request: closing
    // with those bytes unread would reset the connection the same way. They
    // may have been read already, or wait in the socket (a peek that does
    // not wait: one system call per connection that ends this way). The
    // proxy's own answers count, errors' too, once they went out whole.
    const bool whole_answer_last = ended_by_proxy_ && lowest().socket().is_open() &&
                                   (error_ == proxy_error::none || local_answer_whole_);
    if (!linger_ && whole_answer_last)
        linger_ = !in_.empty() || client_bytes_waiting();
    // An HTTPS connection ended after a whole response says so; one cut
    // short must not look whole (a tunnel's end is its pumps' to tell).
    // The alert waits a moment for room in a full socket buffer (the end
    // of a large download), unless the client is still sending: the drain
    // below must then start at once.
    if constexpr (is_tls) {
        if (whole_answer_last && !tunneled_) {
            const bool no_room = stream_.send_close_notify();
            if (no_room && !linger_) {
                lowest().expires_after(linger_time);
                co_await lowest().async_wait(tcp::socket::wait_write, use_tuple);
                lowest().expires_never();
                stream_.send_close_notify();
            }
        }
    }
    if (linger_ && lowest().socket().is_open()) {
        // Half-close, then drain what the client still sends for a moment:
        // closing with unread data would send a reset that can destroy the
        // response before the client reads it.
        boost::system::error_code ec;
        lowest().socket().shutdown(tcp::socket::shutdown_send, ec);
        mark_maybe_readable(lowest().socket());
        const auto deadline = steady_clock::now() + linger_time;
        std::size_t drained = 0;
        while (!ec && drained < linger_bytes && steady_clock::now() < deadline) {
            lowest().expires_at(deadline);
            in_.consume(in_.size());
            auto [p, room] = in_.prepare(read_chunk, read_chunk);
            auto [rec, n] = co_await stream_.async_read_some(net::buffer(p, room), use_tuple);
            ec = rec;
            drained += n;
        }
    }
    close_sockets();
    if (last_sender_ && !last_sender_->finished)
        co_await stop_sender(*last_sender_); // (it refers to this session)
    // The stream's timer handlers refer to it: let them all run.
    lowest().expires_never();
    while (lowest().waits() > 0)
        co_await net::post(stream_.get_executor(), net::use_awaitable);
}

template <typename Stream>
net::awaitable<proxy_error> client_session<Stream>::read_head(const config::config& cfg) {
    const auto limit = static_cast<std::size_t>(cfg.limits.max_header_bytes);
    std::size_t scanned = 0;
    bool timer_armed = false;
    struct disarm_on_exit {
        client_session& s;
        const bool& armed;
        ~disarm_on_exit() {
            if (armed)
                s.disarm_client_timer();
        }
    } disarm{*this, timer_armed};
    std::size_t head_end = 0;
    for (;;) {
        const auto data = in_.data();
        head_end = http::find_head_end(data, scanned);
        if (head_end != 0) {
            if (head_end > limit)
                co_return proxy_error::header_too_large;
            break;
        }
        if (data.size() >= limit)
            co_return proxy_error::header_too_large;
        if (http::has_bare_lf(data, scanned))
            co_return proxy_error::bad_request;
        scanned = data.size();
        if (!timer_armed) {
            // The head has not arrived whole: from here on it has client_header.
            timer_armed = true;
            arm_client_timer(cfg.timeouts.client_header);
            acknowledge_at_once();
        } else if (client_timed_out_) {
            // client_header passed as the last read completed (its cancel
            // came too late): the timer is spent, and the head is still short.
            co_return proxy_error::header_timeout;
        }
        auto [p, room] = in_.prepare(read_chunk, client_buffer_limit(cfg));
        auto [ec, n] = co_await stream_.async_read_some(net::buffer(p, room), use_tuple);
        if (ec)
            co_return client_timed_out_ ? proxy_error::header_timeout : proxy_error::client_closed;
        in_.commit(n);
        client_read_short_ = false; // (a head in pieces is not marked: read_hint.hpp)
    }
    co_return parse_head(head_end);
}

template <typename Stream> proxy_error client_session<Stream>::parse_head(std::size_t head_end) {
    const auto status = http::parse_request_head(in_.data(), req_, head_end);
    if (status != http::parse_status::ok) {
        log::debug("bad request", {{"reason", http::to_string(status)}, {"client", client_ip_}});
        return status == http::parse_status::too_many_fields ? proxy_error::header_too_large
                                                             : proxy_error::bad_request;
    }
    if (req_.fields.size() > http::max_forwarded_fields)
        return proxy_error::header_too_large;
    // HTTP/1.1 requires exactly one Host (RFC 9112 3.2).
    if (req_.version_minor == 1 && req_.host.empty() &&
        std::none_of(req_.fields.begin(), req_.fields.end(),
                     [](const http::field& f) { return f.id == http::field_name::host; }))
        return proxy_error::bad_request;
    return proxy_error::none;
}

template <typename Stream>
net::awaitable<bool> client_session<Stream>::send_local(int status, std::string_view body,
                                                        bool keep_alive,
                                                        std::string_view location) {
    keep_alive = keep_alive && !draining();
    head_out_.clear();
    local_response r;
    r.status = status;
    r.body = body;
    r.location = location;
    r.request_id_header = snap_->cfg.request_id.header;
    r.request_id = request_id_;
    r.keep_alive = keep_alive;
    r.head_request = method_ == "HEAD";
    build_local_response(r, head_out_);
    status_ = status;
    lowest().expires_after(snap_->cfg.timeouts.client_body);
    auto [ec, n] = co_await net::async_write(stream_, net::buffer(head_out_), use_tuple);
    client_op_done();
    if (ec) {
        error_ = proxy_error::client_closed;
        co_return false;
    }
    bytes_out_ += r.head_request ? 0 : body.size();
    local_answer_whole_ = true;
    co_return keep_alive;
}

template <typename Stream>
net::awaitable<bool> client_session<Stream>::send_error(proxy_error e, bool keep_alive) {
    error_ = e;
    std::string body;
    body.reserve(96);
    body.append(std::to_string(status_for(e)));
    body.push_back(' ');
    body.append(reason_phrase(status_for(e)));
    body.append(": ");
    body.append(describe(e));
    body.append("\nrequest_id: ");
    body.append(request_id_);
    body.push_back('\n');
    const bool kept = co_await send_local(status_for(e), body, keep_alive);
    error_ = e; // send_local may have replaced it with client_closed
    co_return kept;
}

template <typename Stream> net::awaitable<bool> client_session<Stream>::await_request() {
    if constexpr (is_tls) {
        // As for plain HTTP below, the connection waits for the socket
        // first, unless OpenSSL holds bytes already (read ahead, or a
        // pipelined request) or the handshake has just ended (the request
        // came with it, as a rule): the response has just gone out, and under
        // load the next request is seldom there yet (a read tried first
        // found nothing for seven requests in ten, then waited anyway).
        // The wait costs an epoll_ctl (Asio re-arms every readiness wait).
        // It holds everything for a short gap (park_after, as plain HTTP
        // waits before parking), then goes on without the connection's
        // per-request memory. client_idle bounds the whole wait: records
        // that bring no request bytes (a KeyUpdate, a record trickling in)
        // do not extend it.
        idle_ = true; // a drain closes the connection from here on
        const auto client_idle = worker_.current()->cfg.timeouts.client_idle;
        const auto since = steady_clock::now();
        const auto hold_for = std::min(park_after, client_idle);
        bool holding = true;
        bool arrived = false;
        bool hold_started = false;
        bool read_first = std::exchange(read_first_, false) || stream_.has_pending();
        for (;;) {
            // (Until a read has told what OpenSSL wants, the wait is for a
            // record to read.)
            auto want = net::socket_base::wait_read;
            if (std::exchange(read_first, true)) {
                const auto got = read_request_now();
                if (got != read_now::nothing) {
                    arrived = got == read_now::arrived;
                    acknowledge_if_waiting_ = false;
                    break; // (or closed: a drain, the client, a reset, a TLS error)
                }
                want = stream_.want();
            }
            if (std::exchange(acknowledge_if_waiting_, false))
                acknowledge_at_once(); // (after a resumed handshake: see handshake())
            if (holding) {
                let_go_of_snapshot();
                // The hold is one wait the worker times, as plain HTTP's,
                // started at the first wait and kept through records that
                // bring no request bytes; the stream's deadline is armed
                // only once the hold is over.
                if (!hold_started) {
                    hold_started = true;
                    client_timed_out_ = false;
                    worker_.start_wait(idle_wait_, hold_for, since);
                }
                if (idle_wait_.waiting()) {
                    auto [wait] = co_await lowest().async_wait(want, use_tuple);
                    if (!wait)
                        continue; // (read; the hold goes on, unless it has just expired)
                    if (!client_timed_out_ || client_idle <= park_after ||
                        !lowest().socket().is_open())
                        break; // closed (a drain), or client_idle has passed
                }
                idle_wait_.end();
                client_timed_out_ = false;
                holding = false;
                lowest().expires_at(since + client_idle);
                shed_idle_memory();
                stream_.release_idle_memory();
            } else {
                // (Taken again by the read above when a record came: a
                // KeyUpdate, part of a request.)
                in_.release_if_empty();
                stream_.release_idle_memory();
            }
            auto [wait] = co_await lowest().async_wait(want, use_tuple);
            if (wait)
                break; // client_idle passed, or the connection was closed
        }
        idle_wait_.end();
        client_timed_out_ = false; // (the hold may have expired as the bytes came)
        lowest().expires_never();
        idle_ = false;
        co_return arrived;
    } else {
        // Plain HTTP: wait for the next request with a receive; if nothing
        // has come for park_after, park the connection with the worker, so
        // an idle one holds neither session nor coroutine. A connection
        // woken from the park is readable: it reads at once.
        auto& socket = lowest().socket();
        // A read first only where Asio's receive would make one anyway: a
        // connection woken from the park, or a socket not marked drained
        // (read_hint.hpp). Made here, it tells what Asio's would not: when
        // it finds nothing, the socket is marked, and the receive waits for
        // the event without a read; either way, a short read then emptied
        // the socket for good (none is made a turn later, when more may
        // have come unseen), which lets forward mark it for the next wait.
        if (std::exchange(woken_, false) || read_may_find_bytes(socket)) {
            if (const auto got = read_request_now(); got != read_now::nothing)
                co_return got == read_now::arrived; // (or closed, or reset)
            mark_drained(socket);
        }
        // Otherwise no read before the receive: the response has just gone
        // out, and under load the client's next request is seldom there yet
        // (such a read found nothing for about half the requests of a
        // keep-alive load). Unlike a readiness wait, Asio starts a receive
        // without an epoll_ctl; a connection idle for park_after is parked.
        const auto since = steady_clock::now();
        const auto client_idle = worker_.current()->cfg.timeouts.client_idle;
        let_go_of_snapshot();
        auto [p, room] = in_.prepare(read_chunk, client_buffer_limit(worker_.current()->cfg));
        idle_ = true;
        client_timed_out_ = false;
        worker_.start_wait(idle_wait_, std::min(park_after, client_idle), since);
        auto [rec, got] = co_await socket.async_receive(net::buffer(p, room), use_tuple);
        idle_wait_.end();
        idle_ = false;
        if (!rec) {
            // (The wait may have expired as the bytes came: they count.)
            client_timed_out_ = false;
            in_.commit(got);
            // (Read within the event's own handling, before the event loop
            // could collect another: see above.)
            client_read_short_ = got < room;
            co_return true;
        }
        if (!client_timed_out_ || client_idle <= park_after || draining() || !socket.is_open())
            co_return false; // client_idle passed, or the connection was closed
        // Parked: this session and its coroutine end, the connection
        // stays open, and the worker starts a new session when the next
        // request arrives.
        shed_idle_memory();
        worker_.park(lowest().release_socket(), listener_id_, v6_, since);
        parked_ = true;
        co_return false;
    }
}

template <typename Stream> net::awaitable<bool> client_session<Stream>::serve_one() {
    // The request runs on the snapshot current when its first byte arrived,
    // to its end, whatever reloads happen meanwhile. (A reference into a
    // snapshot must not outlive a wait unless snap_ holds that snapshot.)
    snap_ = worker_.current();
    const auto& cfg = snap_->cfg;
    started_ = steady_clock::now();
    status_ = 0;
    bytes_in_ = bytes_out_ = 0;
    upstream_name_ = {};
    upstream_index_ = -1;
    server_address_.clear();
    error_ = proxy_error::none;
    local_answer_whole_ = false;
    method_.clear();
    path_.clear();
    host_.clear();

    // Usually the whole head came with the first read: parse it here,
    // without read_head's coroutine.
    auto head_error = proxy_error::none;
    if (const auto end = http::find_head_end(in_.data(), 0);
        end != 0 && end <= static_cast<std::size_t>(cfg.limits.max_header_bytes))
        head_error = parse_head(end);
    else
        head_error = co_await read_head(cfg);
    if (head_error != proxy_error::none) {
        if (head_error == proxy_error::client_closed) {
            error_ = head_error; // (the client ended the connection, not a response)
            co_return false;
        }
        // The request ID of a request that could not be read is always new.
        std::array<char, 36> id{};
        worker_.ids().next(id);
        request_id_.assign(id.data(), id.size());
        linger_ = true;
        co_await send_error(head_error, false);
        log_request();
        co_return false;
    }

    // Everything needed after the head is copied now: reading the body
    // reuses in_, which the views in req_ point into.
    const auto& rid = cfg.request_id;
    std::string_view incoming_id;
    for (const auto& f : req_.fields)
        if (http::iequals(f.name, rid.header)) {
            incoming_id = f.value;
            break;
        }
    if (rid.trust_incoming && valid_request_id(incoming_id)) {
        request_id_.assign(incoming_id);
    } else {
        std::array<char, 36> id{};
        worker_.ids().next(id);
        request_id_.assign(id.data(), id.size());
    }
    method_.assign(req_.method);
    const auto authority = target_authority(req_.target);
    host_.assign(authority.empty() ? req_.host : authority);
    path_.assign(req_.target);
    const bool client_keep_alive = req_.keep_alive();
    const bool has_body = req_.body != http::framing::none;

    if (cfg.limits.max_body_bytes > 0 && req_.body == http::framing::content_length &&
        req_.content_length > cfg.limits.max_body_bytes) {
        linger_ = true;
        co_await send_error(proxy_error::body_too_large, false);
        log_request();
        co_return false;
    }

    const auto* listener = snap_->find_listener(listener_key_);
    if (listener == nullptr) {
        // A reload removed this listener: its connections drain. (The
        // head is done with; a body, or another request after it, makes
        // finish() linger.)
        in_.consume(req_.head_size);
        linger_ = has_body;
        co_return co_await send_local(503, "listener removed\n", false);
    }
    listener_name_ = listener->cfg->name;
    const auto* route = match_route(listener->routes, host_, target_path(req_.target));
    bool keep = false;
    const bool local = route == nullptr || route->upstream_index < 0;
    if (local) {
        // Consuming leaves the bytes (and req_'s views) in place until the
        // next read; a local answer reads nothing more.
        in_.consume(req_.head_size);
    }
    if (route == nullptr) {
        // Without a body to skip, the connection can stay.
        keep = co_await send_error(proxy_error::no_route, client_keep_alive && !has_body);
        linger_ = has_body;
    } else if (const auto* respond = std::get_if<config::respond_action>(&route->route->action)) {
        keep = co_await send_local(respond->status, respond->body, client_keep_alive && !has_body);
        linger_ = has_body;
    } else if (const auto* redirect = std::get_if<config::redirect_action>(&route->route->action)) {
        const int port = redirect->port ? *redirect->port : 0;
        // An HTTP/1.0 request may name no host: the address it came to
        // stands in, as it does for the upstream's Host.
        const auto location = redirect_location(redirect->scheme, port,
                                                host_.empty() ? local_host() : host_, req_.target);
        keep = co_await send_local(redirect->status, {}, client_keep_alive && !has_body, location);
        linger_ = has_body;
    } else {
        upstream_index_ = route->upstream_index;
        keep = co_await forward(snap_->upstreams[static_cast<std::size_t>(route->upstream_index)]);
    }
    log_request();
    co_return keep;
}

template <typename Stream>
net::awaitable<proxy_error>
client_session<Stream>::connect_upstream(const upstream_entry& up, std::vector<int>& tried,
                                         in_flight_guard& guard, bool verify_pooled) {
    const auto& cfg = *up.cfg;
    auto& cursor = up.cursors[static_cast<std::size_t>(worker_.id()) % up.cursors.size()];
    proxy_error last = proxy_error::no_healthy_server;
    for (int attempt = 0; attempt <= cfg.retries; ++attempt) {
        const auto now = steady_now_ns();
        auto eligible = [&](std::size_t i) {
            return up.servers[i]->available(now) &&
                   std::find(tried.begin(), tried.end(), static_cast<int>(i)) == tried.end();
        };
        int pick = -1;
        if (cfg.balance == config::balance_policy::least_conn) {
            pick = pick_least_loaded(
                up.weights, cursor.rotation++,
                [&](std::size_t i) {
                    return up.servers[i]->in_flight.load(std::memory_order_relaxed);
                },
                eligible);
        } else {
            pick = pick_smooth_weighted(cursor.current, up.weights, eligible);
        }
        if (pick < 0)
            co_return last;
        tried.push_back(pick);
        auto& server = up.servers[static_cast<std::size_t>(pick)];
        guard = in_flight_guard(server.get());
        server_address_ = server->address;

        if (auto pooled = worker_.pool().take(server.get(), verify_pooled)) {
            worker_.metrics().on_upstream_connect(*server, true, 0);
            upstream_ = std::move(pooled);
            co_return proxy_error::none;
        }
        auto conn = std::make_unique<upstream_connection>(worker_.io(), &worker_.blocks(),
                                                          &worker_.large_blocks());
        conn->server = server;
        boost::system::error_code ec;
        const auto address = net::ip::make_address(server->ip, ec);
        const auto connect_started = steady_clock::now();
        if (!ec) {
            conn->stream.expires_after(up.connect_timeout);
            auto [cec] = co_await conn->stream.async_connect(tcp::endpoint(address, server->port),
                                                             use_tuple);
            ec = cec;
        }
        if (!ec)
            conn->stream.socket().set_option(tcp::no_delay(true), ec);
        if (!ec)
            conn->stream.socket().non_blocking(true, ec); // for try_write_now
        if (!ec && up.tls)
            ec = co_await upstream_handshake(*conn, *up.tls, up.connect_timeout);
        if (!ec) {
            record_connect_success(*server);
            worker_.metrics().on_upstream_connect(
                *server, false,
                std::chrono::duration<double>(steady_clock::now() - connect_started).count());
            upstream_ = std::move(conn);
            co_return proxy_error::none;
        }
        last = ec == beast::error::timeout ? proxy_error::connect_timeout
                                           : proxy_error::connect_failed;
        record_connect_failure(*server, cfg.passive.max_fails, cfg.passive.fail_timeout,
                               steady_now_ns());
        worker_.metrics().on_upstream_connect_failure(*server);
        if (!server->available(steady_now_ns()))
            log::warn("server down", {{"upstream", cfg.name},
                                      {"server", server->address},
                                      {"reason", "passive: " + ec.message()}});
        log::debug("upstream connect failed",
                   {{"upstream", cfg.name}, {"server", server->address}, {"error", ec.message()}});
    }
    co_return last;
}

template <typename Stream>
net::awaitable<proxy_error> client_session<Stream>::read_final_response_head(
    upstream_connection& conn, std::chrono::milliseconds timeout, bool& any_byte) {
    struct wait_end {
        timed_wait& w;
        ~wait_end() { w.end(); }
    } end_response_wait{response_wait_};    // (however the head ends)
    BOOST_ASSERT(&conn == upstream_.get()); // (what the wait's expiry closes)
    response_timed_out_ = false;
    for (;;) { // one head per round; interim 1xx heads (but 101) are skipped
        std::size_t scanned = 0;
        std::size_t head_end = 0;
        bool timer_armed = false;
        for (;;) {
            const auto data = conn.buffer.data();
            if (!data.empty())
                any_byte = true;
            head_end = http::find_head_end(data, scanned);
            if (head_end != 0)
                break;
            if (data.size() >= max_response_head)
                co_return proxy_error::bad_response;
            scanned = data.size();
            auto [p, room] = conn.buffer.prepare(read_chunk, max_response_head + read_chunk);
            // The request has just gone out, and under load the answer is
            // seldom there yet (a read found nothing for four requests in
            // five): on a socket the last response marked drained
            // (forward, read_hint.hpp) the receive waits without a read,
            // otherwise one read is made first, where Asio's receive would.
            // The timeout counts from the first read, for the whole head: on
            // a plain connection a wait the worker times, over TLS the
            // stream's.
            if (!timer_armed) {
                timer_armed = true;
                if (conn.tls) {
                    conn.stream.expires_after(timeout);
                } else {
                    worker_.start_wait(response_wait_, timeout);
                }
            }
            boost::system::error_code ec;
            std::size_t n = 0;
            bool waits = true;
            if (conn.tls) {
                std::tie(ec, n) =
                    co_await upstream_io{conn}.async_read_some(net::buffer(p, room), use_tuple);
            } else {
                // As the client's wait for its next request does: the read
                // Asio would try, made here where it would, and the
                // socket marked drained when it finds nothing.
                auto& socket = conn.stream.socket();
                BOOST_ASSERT(socket.non_blocking()); // (connect_upstream)
                if (read_may_find_bytes(socket)) {
                    n = socket.receive(net::buffer(p, room), 0, ec);
                    waits = ec == net::error::would_block;
                    if (waits) {
                        ec = {};
                        mark_drained(socket);
                    }
                }
                if (waits)
                    std::tie(ec, n) =
                        co_await socket.async_receive(net::buffer(p, room), use_tuple);
            }
            if (response_timed_out_ || ec == beast::error::timeout)
                co_return proxy_error::response_timeout;
            if (ec)
                co_return proxy_error::upstream_reset;
            conn.buffer.commit(n);
            // A short read emptied the socket for good: made at once, or
            // within the readiness event's own handling.
            conn.read_short = !conn.tls && n < room;
        }
        if (http::parse_response_head(conn.buffer.data(), resp_, head_end) !=
                http::parse_status::ok ||
            resp_.fields.size() > http::max_forwarded_fields)
            co_return proxy_error::bad_response;
        if (resp_.status >= 200 || resp_.status == 101)
            co_return proxy_error::none;
        conn.buffer.consume(resp_.head_size);
    }
}

template <typename Stream>
void client_session<Stream>::build_request_head(const upstream_entry& up, const config::config& cfg,
                                                bool upgrade) {
    auto& request_head = request_head_;
    request_head.clear();
    request_head.reserve(req_.head_size + head_headroom); // one allocation, not a series
    forward_facts facts;
    facts.client_ip = client_ip_;
    facts.peer_trusted = peer_trusted_;
    facts.tls = is_tls;
    facts.request_id_header = cfg.request_id.header;
    facts.request_id = request_id_;
    facts.path = target_path(req_.target) == req_.target || req_.target.front() == '/'
                     ? req_.target
                     : std::string_view{};
    std::string origin_form;
    if (facts.path.empty()) {
        // Absolute-form target: send its path and query.
        const auto authority = target_authority(req_.target);
        auto rest = req_.target.substr(req_.target.find("://") + 3 + authority.size());
        origin_form =
            rest.empty() || rest.front() != '/' ? "/" + std::string(rest) : std::string(rest);
        facts.path = origin_form;
    }
    facts.upgrade = upgrade;
    facts.strip_expect = req_.expect_continue;
    facts.authority = target_authority(req_.target);
    // No Host at all (HTTP/1.0): name the server.
    facts.default_host = host_.empty() ? std::string_view(up.cfg->servers.front().address) : host_;
    build_upstream_request(req_, facts, request_head);
}

template <typename Stream>
void client_session<Stream>::build_response_head(const config::config& cfg, response_facts& facts) {
    facts.request_id_header = cfg.request_id.header;
    facts.request_id = request_id_;
    head_out_.clear();
    head_out_.reserve(resp_.head_size + head_headroom); // one allocation, not a series
    build_client_response(resp_, facts, head_out_);
}

template <typename Stream>
net::awaitable<bool> client_session<Stream>::switch_protocols(const config::config& cfg,
                                                              bool upgrade, body_sender* sender) {
    if (sender != nullptr)
        co_await stop_sender(*sender);
    if (!upgrade) {
        upstream_.reset();
        co_return co_await send_error(proxy_error::bad_response, false);
    }
    response_facts facts;
    facts.upgrade = true;
    build_response_head(cfg, facts);
    upstream_->buffer.consume(resp_.head_size);
    lowest().expires_after(cfg.timeouts.client_body);
    auto [ec, n] = co_await net::async_write(stream_, net::buffer(head_out_), use_tuple);
    client_op_done();
    if (ec) {
        upstream_.reset();
        error_ = proxy_error::client_closed;
        co_return false;
    }
    co_await tunnel();
    upstream_.reset();
    co_return false;
}

template <typename Stream>
net::awaitable<bool> client_session<Stream>::forward(const upstream_entry& up) {
    const auto& cfg = snap_->cfg;
    upstream_name_ = up.cfg->name;
    const bool client_keep_alive = req_.keep_alive();
    const bool upgrade = req_.connection_upgrade && !req_.upgrade.empty();
    const bool is_head = method_ == "HEAD";
    const bool client_http10 = req_.version_minor == 0;
    const auto request_framing = req_.body;
    const auto request_length = req_.content_length;
    const bool send_continue = req_.expect_continue && request_framing != http::framing::none;
    // Whether the whole body is already here, so head and body go out in one
    // write with no need to listen for an early answer.
    const bool body_at_hand = request_framing == http::framing::none ||
                              (request_framing == http::framing::content_length &&
                               in_.size() - req_.head_size >= request_length);
    // (After a 100 Continue, write_continue does it: answering the head
    // would put the socket back to delaying.)
    if (!body_at_hand && !send_continue)
        acknowledge_at_once();

    // request_buffering: take the whole chunked body first and send it with
    // a Content-Length (WSGI servers read no chunked bodies). req_'s views
    // point into in_, which reading the body reuses: parse a copy of the head.
    bool body_was_buffered = false;
    std::string saved_head;
    if (up.cfg->request_buffering && request_framing == http::framing::chunked) {
        saved_head.assign(in_.data().substr(0, req_.head_size));
        in_.consume(req_.head_size);
        const auto error = co_await buffer_request_body(cfg, send_continue);
        if (error != proxy_error::none) {
            buffered_body_.clear();
            if (error == proxy_error::client_closed) {
                error_ = error;
                co_return false;
            }
            linger_ = true;
            co_return co_await send_error(error, false);
        }
        http::parse_request_head(saved_head, req_);
        req_.body = http::framing::content_length;
        req_.content_length = buffered_body_.size();
        req_.head_size = 0; // already consumed
        body_was_buffered = true;
    }

    // The outgoing head is built while req_'s views are valid; kept in
    // request_head so a retry can resend it.
    build_request_head(up, cfg, upgrade);
    const auto& request_head = request_head_;
    if constexpr (!is_tls) {
        // Nothing more is read from the client until the response is out:
        // its next receive need not try a read first (read_hint.hpp). Should
        // that miss a close, the idle wait's park finds it (park_after).
        if (request_framing == http::framing::none && !upgrade && client_read_short_ &&
            in_.size() == req_.head_size)
            mark_drained(lowest().socket());
    }
    in_.consume(req_.head_size);
    const bool may_retry_stale = idempotent(method_) && request_framing == http::framing::none;

    auto& tried = tried_;
    tried.clear();
    in_flight_guard guard;
    proxy_error failure = proxy_error::none;
    std::shared_ptr<body_sender> sender; // streams the body beside the exchange, when needed
    for (int stale_retries = 0;; ++stale_retries) {
        // A retryable request skips the peek: a pooled connection the
        // upstream has just closed is then found by the exchange and retried.
        failure =
            co_await connect_upstream(up, tried, guard, !may_retry_stale || stale_retries > 0);
        if (failure != proxy_error::none)
            break;
        worker_.metrics().on_upstream_request(*upstream_->server);
        const bool reused = upstream_->requests > 0;
        bool any_byte = false;

        if (body_at_hand || body_was_buffered) {
            relay_outcome sent = relay_outcome::complete;
            if (body_was_buffered) {
                sent = co_await write_buffered_request(request_head, up.response_timeout);
            } else {
                client_source source{this};
                upstream_io destination{*upstream_};
                const auto r =
                    co_await relay_body(source, in_, destination, request_framing, request_length,
                                        false, cfg.timeouts.client_body, up.response_timeout,
                                        cfg.limits.max_body_bytes, request_head, scratch_);
                disarm_client_timer();
                sent = r.outcome;
                bytes_in_ += r.bytes;
            }
            if (const auto client_error = client_side_error(sent);
                client_error != proxy_error::none) {
                upstream_.reset();
                linger_ = client_error != proxy_error::client_closed;
                if (!linger_) {
                    error_ = client_error;
                    co_return false;
                }
                co_return co_await send_error(client_error, false);
            }
            if (sent == relay_outcome::complete) {
                failure =
                    co_await read_final_response_head(*upstream_, up.response_timeout, any_byte);
            } else {
                failure = proxy_error::upstream_reset; // the upstream stopped taking the request
            }
        } else {
            // Stream the body from a sibling coroutine while this one waits
            // for the response head: an upstream may answer (413, 401)
            // without reading a large body, and must be heard at once.
            // The sender keeps going while the response is relayed (an
            // upstream may stream its answer while it reads, as /echo does);
            // it is stopped once the response has ended.
            //
            // The interim 100 goes out here, before the sender starts: once
            // it has, this coroutine may write the response to the client,
            // and two writes must never overlap on one stream.
            bool client_there = true;
            if (send_continue)
                client_there = co_await write_continue(cfg); // (not inside &&: see serve)
            if (!client_there) {
                upstream_.reset();
                error_ = proxy_error::client_closed;
                co_return false;
            }
            sender = std::make_shared<body_sender>(stream_.get_executor());
            last_sender_ = sender;
            net::co_spawn(stream_.get_executor(),
                          send_body(this, sender, request_head, request_framing, request_length),
                          net::detached);
            // The sender may have failed before its first write (a bad chunk
            // in the bytes at hand); there is then no response to wait for.
            if (!sender->finished || sender->result.outcome == relay_outcome::complete)
                failure =
                    co_await read_final_response_head(*upstream_, up.response_timeout, any_byte);
            else
                failure = proxy_error::upstream_reset;
            if (failure == proxy_error::none)
                break;
            co_await stop_sender(*sender);
            bytes_in_ += sender->result.bytes;
            const auto client_error = client_side_error(sender->result.outcome);
            if (client_error != proxy_error::none) {
                // The client's side broke first; the upstream got a partial request.
                upstream_.reset();
                if (client_error == proxy_error::client_closed) {
                    error_ = client_error;
                    co_return false;
                }
                linger_ = true;
                co_return co_await send_error(client_error, false);
            }
        }
        if (failure == proxy_error::none)
            break;
        upstream_.reset();
        // A pooled connection the upstream had closed: retry on a fresh one.
        const bool stale = reused && !any_byte && failure == proxy_error::upstream_reset;
        if (!(stale && may_retry_stale && stale_retries < 2))
            break;
        tried.pop_back(); // the same server may be picked again
    }
    buffered_body_.clear();
    if (failure != proxy_error::none) {
        upstream_.reset();
        const bool keep = client_keep_alive && request_framing == http::framing::none;
        co_return co_await send_error(failure, keep);
    }

    auto& conn = *upstream_;
    status_ = resp_.status;
    if (resp_.status == 101)
        co_return co_await switch_protocols(cfg, upgrade, sender.get());

    const auto framing = http::response_framing(resp_, is_head);
    const bool dechunk = framing == http::framing::chunked && client_http10;
    // An answer may start before the upstream has the whole body (a 413, or
    // a streaming echo); whether the connection can stay open is known only
    // when the answer has ended (below).
    bool keep_alive =
        client_keep_alive && !draining() && framing != http::framing::until_close && !dechunk;
    {
        response_facts facts;
        facts.body = framing;
        facts.dechunk = dechunk;
        facts.keep_alive = keep_alive;
        facts.client_http10 = client_http10;
        build_response_head(cfg, facts);
    }
    const bool upstream_keep_alive = resp_.keep_alive();
    const auto response_length = resp_.content_length;
    conn.buffer.consume(resp_.head_size);
    // The whole response came with a short read: nothing more is read from
    // the upstream until its next request (read_hint.hpp). Marked now,
    // before the relay may wait on the client, when an event the mark
    // would hide could come. (A read of the relay's undoes it.)
    // (Not while a body sender may still write: its write, done in the
    // same event as the head's read, would have delayed that read's
    // completion by a turn of the event loop.)
    if (conn.read_short && !sender &&
        (framing == http::framing::none ||
         (framing == http::framing::content_length && conn.buffer.size() == response_length)))
        mark_drained(conn.stream.socket());

    upstream_io response_source{conn};
    client_sink response_sink{this, !keep_alive};
    const auto got = co_await relay_body(response_source, conn.buffer, response_sink, framing,
                                         response_length, dechunk, up.response_timeout,
                                         cfg.timeouts.client_body, 0, head_out_, scratch_);
    bytes_out_ += got.bytes;
    if (sender) {
        co_await stop_sender(*sender);
        bytes_in_ += sender->result.bytes;
        if (sender->result.outcome != relay_outcome::complete) {
            // The answer ended before the client's body: the rest of it is
            // unread, so the connection closes (after a linger) whatever
            // the answer said.
            linger_ = true;
            keep_alive = false;
        }
    }
    if (got.outcome != relay_outcome::complete) {
        upstream_.reset();
        if (!got.head_written && got.outcome != relay_outcome::write_failed) {
            // A body broken in the bytes that came with the head: nothing
            // reached the client yet, so it can still get a proper 502.
            co_return co_await send_error(
                got.outcome == relay_outcome::timeout       ? proxy_error::response_timeout
                : got.outcome == relay_outcome::bad_framing ? proxy_error::bad_response
                                                            : proxy_error::upstream_reset,
                false);
        }
        if (got.outcome == relay_outcome::write_failed)
            error_ = proxy_error::client_closed;
        else
            error_ = got.outcome == relay_outcome::timeout ? proxy_error::response_timeout
                                                           : proxy_error::upstream_reset;
        co_return false; // the response is cut short: closing tells the client
    }
    ++conn.requests;
    // The upstream connection is reusable when its exchange is complete:
    // the whole request went out and the response ended by its framing. The
    // client's own Connection: close has nothing to do with it.
    const bool request_sent_whole =
        !sender || (sender->finished && sender->result.outcome == relay_outcome::complete);
    if (upstream_keep_alive && request_sent_whole && framing != http::framing::until_close &&
        conn.buffer.empty()) {
        // After a bodiless answer (HEAD, 204, 304) an upstream that wrongly
        // sends a body leaves bytes the next exchange would read as its
        // answer: peek before reusing the connection.
        conn.verify_next = framing == http::framing::none;
        worker_.pool().put(std::move(upstream_));
    }
    upstream_.reset();
    co_return keep_alive;
}

template <typename Stream>
net::awaitable<void> client_session<Stream>::stop_sender(body_sender& sender) {
    if (sender.finished)
        co_return;
    // `stop` keeps the sender from starting another operation, cancel()
    // ends the one it is in (a read from the client or a write upstream).
    sender.stop = true;
    boost::system::error_code ignored;
    lowest().socket().cancel(ignored);
    if (upstream_)
        upstream_->stream.socket().cancel(ignored);
    co_await sender.done.async_wait(use_tuple);
}

template <typename Stream>
net::awaitable<void> client_session<Stream>::send_body(client_session* self,
                                                       std::shared_ptr<body_sender> state,
                                                       std::string_view head, http::framing framing,
                                                       std::uint64_t length) {
    const auto& cfg = self->snap_->cfg;
    // The exchange reads the same connection meanwhile, with the response
    // timeout on it (see upstream_sender_io).
    upstream_sender_io upstream{*self->upstream_};
    client_source source{self};
    state->result =
        co_await relay_body(source, self->in_, upstream, framing, length, false,
                            cfg.timeouts.client_body, cfg.timeouts.client_body,
                            cfg.limits.max_body_bytes, head, self->sender_scratch_, &state->stop);
    self->disarm_client_timer();
    state->finished = true;
    if (self->client_side_error(state->result.outcome) != proxy_error::none) {
        // Stop the exchange's wait for a response to a request that broke.
        boost::system::error_code ignored;
        upstream.c.stream.socket().cancel(ignored);
    }
    state->done.cancel();
}

template <typename Stream>
net::awaitable<proxy_error> client_session<Stream>::buffer_request_body(const config::config& cfg,
                                                                        bool send_continue) {
    constexpr std::uint64_t default_limit = 64ull * 1024 * 1024;
    const auto limit = cfg.limits.max_body_bytes > 0 ? cfg.limits.max_body_bytes : default_limit;
    http::chunked_scanner scanner;
    auto& pieces = scratch_.pieces;
    std::string error;
    for (;;) {
        if (!in_.empty()) {
            pieces.clear();
            const auto r = scanner.feed(in_.data(), &pieces);
            if (r.error)
                co_return proxy_error::bad_request;
            for (const auto piece : pieces) {
                if (buffered_body_.size() + piece.size() > limit)
                    co_return proxy_error::body_too_large;
                if (!buffered_body_.append(piece, error)) {
                    log::error("request buffering failed", {{"error", error}});
                    co_return proxy_error::body_too_large;
                }
            }
            bytes_in_ += r.consumed;
            in_.consume(r.consumed);
            if (r.done)
                co_return proxy_error::none;
        }
        if (send_continue) {
            send_continue = false;
            if (!co_await write_continue(cfg))
                co_return proxy_error::client_closed;
        }
        arm_client_timer(cfg.timeouts.client_body);
        auto [p, room] = in_.prepare(read_chunk, relay_buffer_limit);
        auto [ec, n] = co_await stream_.async_read_some(net::buffer(p, room), use_tuple);
        disarm_client_timer();
        if (ec)
            co_return client_timed_out_ ? proxy_error::body_timeout : proxy_error::client_closed;
        in_.commit(n);
    }
}

template <typename Stream>
net::awaitable<bool> client_session<Stream>::write_continue(const config::config& cfg) {
    static constexpr std::string_view reply = "HTTP/1.1 100 Continue\r\n\r\n";
    lowest().expires_after(cfg.timeouts.client_body);
    auto [ec, n] =
        co_await net::async_write(stream_, net::buffer(reply.data(), reply.size()), use_tuple);
    client_op_done();
    if (!ec)
        acknowledge_at_once(); // the body is to come
    co_return !ec;
}

template <typename Stream>
net::awaitable<relay_outcome>
client_session<Stream>::write_buffered_request(std::string_view head,
                                               std::chrono::milliseconds timeout) {
    upstream_io stream{*upstream_};
    stream.expires_after(timeout);
    const auto memory = buffered_body_.memory();
    const std::array<net::const_buffer, 2> first{net::buffer(head.data(), head.size()),
                                                 net::buffer(memory.data(), memory.size())};
    auto [ec, n] = co_await net::async_write(stream, first, use_tuple);
    if (ec)
        co_return relay_outcome::write_failed;
    std::vector<char> chunk(buffered_body_.spilled() > 0 ? relay_buffer_limit : 0);
    for (std::uint64_t offset = 0; offset < buffered_body_.spilled();) {
        const auto got = buffered_body_.read_spilled(offset, chunk.data(), chunk.size());
        if (got <= 0)
            co_return relay_outcome::write_failed;
        stream.expires_after(timeout);
        auto [wec, wn] = co_await net::async_write(
            stream, net::buffer(chunk.data(), static_cast<std::size_t>(got)), use_tuple);
        if (wec)
            co_return relay_outcome::write_failed;
        offset += static_cast<std::uint64_t>(got);
    }
    co_return relay_outcome::complete;
}

template <typename Stream> net::awaitable<void> client_session<Stream>::tunnel() {
    tunneled_ = true;
    // Two pumps run as coroutines of their own; this one keeps the session
    // (and both sockets) alive until both have ended, and closes an idle
    // tunnel after tunnel_idle.
    struct tunnel_state {
        explicit tunnel_state(net::any_io_executor ex) : timer(ex) {}
        net::steady_timer timer;
        steady_clock::time_point last_activity = steady_clock::now();
        int running = 2;
    };
    auto state = std::make_shared<tunnel_state>(worker_.io().get_executor());
    // The client end speaks TLS on HTTPS listeners; plain sockets otherwise.
    auto& client = tunnel_end();
    auto& upstream = upstream_->stream.socket();
    lowest().expires_never();
    upstream_->stream.expires_never();
    // The tunnel's traffic is the two peers' own: the client's side
    // acknowledges as a connection does by default, not as an exchange
    // whose answer carries the acknowledgement (see acknowledge_at_once).
    acknowledge_at_once();
    if constexpr (is_tls)
        stream_.release_buffers_between_records();

    // Lifetime: `from`, `to` and `pending` belong to this session, which
    // outlives both pumps (tunnel() returns only when running == 0);
    // `blocks` is the worker's.
    //
    // A pump holds a receive block only while bytes flow: once its source
    // has nothing more, the block goes back to the worker's pool and the
    // pump waits for readiness with none (an idle tunnel, a dev server's
    // hot-reload socket, holds no buffer; but for a pump reading an
    // upstream over TLS, which waits in a read with its block). On a plain
    // socket each wait costs an epoll_ctl (Asio re-arms a readiness wait).
    auto pump =
        []<typename From, typename To>(From& from, To& to, byte_buffer& pending, block_pool& blocks,
                                       std::shared_ptr<tunnel_state> st) -> net::awaitable<void> {
        boost::system::error_code ec;
        if (!pending.empty()) {
            auto [wec, n] = co_await net::async_write(
                to, net::buffer(pending.data().data(), pending.size()), use_tuple);
            pending.consume(n);
            ec = wec;
        }
        pending.release_if_empty();
        std::unique_ptr<char[]> block;
        bool ended_cleanly = false; // the source's end, not an error
        while (!ec) {
            if (!block)
                block = blocks.take();
            const auto room = net::buffer(block.get(), blocks.block_size());
            boost::system::error_code rec;
            std::size_t n = 0;
            if constexpr (reads_without_waiting<From>) {
                n = tunnel_read_now(from, room, rec);
                if (rec == net::error::would_block) {
                    blocks.give(std::move(block));
                    auto [wec] =
                        co_await socket_of(from).async_wait(readiness_for(from), use_tuple);
                    if (!wec)
                        continue;
                    rec = wec; // (closed: the other pump's error or tunnel_idle)
                }
            } else {
                std::tie(rec, n) = co_await from.async_read_some(room, use_tuple);
            }
            if (rec) {
                ended_cleanly = rec == net::error::eof;
                break;
            }
            st->last_activity = steady_clock::now();
            auto [wec, wn] = co_await net::async_write(to, net::buffer(block.get(), n), use_tuple);
            ec = wec;
        }
        if (block)
            blocks.give(std::move(block));
        // Pass the end on (a WebSocket close arrives as FIN); an error ends both.
        boost::system::error_code ignored;
        if (ec) {
            socket_of(from).close(ignored);
            socket_of(to).close(ignored);
        } else {
            if constexpr (std::is_same_v<To, tls_stream>) {
                if (ended_cleanly)
                    to.send_close_notify(); // (best effort: never waits here)
            }
            socket_of(to).shutdown(tcp::socket::shutdown_send, ignored);
        }
        if (--st->running == 0)
            st->timer.cancel();
    };
    auto& blocks = worker_.blocks();
    if (upstream_->tls) {
        auto& secure = upstream_->tls->stream;
        net::co_spawn(worker_.io(), pump(client, secure, in_, blocks, state), net::detached);
        net::co_spawn(worker_.io(), pump(secure, client, upstream_->buffer, blocks, state),
                      net::detached);
    } else {
        net::co_spawn(worker_.io(), pump(client, upstream, in_, blocks, state), net::detached);
        net::co_spawn(worker_.io(), pump(upstream, client, upstream_->buffer, blocks, state),
                      net::detached);
    }

    const auto idle_limit = snap_->cfg.timeouts.tunnel_idle;
    while (state->running > 0) {
        state->timer.expires_at(state->last_activity + idle_limit);
        co_await state->timer.async_wait(use_tuple);
        if (state->running > 0 && steady_clock::now() >= state->last_activity + idle_limit) {
            boost::system::error_code ignored;
            socket_of(client).close(ignored);
            upstream.close(ignored);
        }
    }
}

template <typename Stream> void client_session<Stream>::log_request() {
    const int status = error_ == proxy_error::client_closed && status_ == 0 ? 499 : status_;
    worker_.metrics().on_request(
        *snap_, listener_id_, upstream_index_, status,
        std::chrono::duration<double>(steady_clock::now() - started_).count(), bytes_in_,
        bytes_out_);
    if (!snap_->cfg.access_log.enabled)
        return;
    access_record r;
    r.request_id = request_id_;
    r.client = client_ip_;
    r.listener = listener_name_;
    r.method = method_;
    r.path = path_;
    r.host = host_;
    r.status = status;
    r.bytes_in = bytes_in_;
    r.bytes_out = bytes_out_;
    r.duration_ms =
        std::chrono::duration<double, std::milli>(steady_clock::now() - started_).count();
    r.upstream = upstream_name_;
    r.server = server_address_;
    if (error_ != proxy_error::none)
        r.error = describe(error_);
    worker_.log_access(r);
}

} // namespace

void start_session(worker& w, tcp::socket socket, const tcp::endpoint& peer,
                   const std::string& listener_key) {
    const auto* listener = w.current()->find_listener(listener_key);
    if (listener == nullptr)
        return; // removed by a reload a moment ago: close
    if (auto contexts = listener->tls) {
        auto& initial = contexts->initial();
        auto session = std::make_unique<client_session<tls_stream>>(
            w, tls_stream(plain_stream(std::move(socket)), initial), *listener, std::move(contexts),
            peer);
        net::co_spawn(w.io(), client_session<tls_stream>::serve(std::move(session)), net::detached);
        return;
    }
    auto session = std::make_unique<client_session<plain_stream>>(
        w, plain_stream(std::move(socket)), *listener, nullptr, peer);
    net::co_spawn(w.io(), client_session<plain_stream>::serve(std::move(session)), net::detached);
}

bool resume_session(worker& w, tcp::socket socket, std::uint32_t listener_id) {
    // (A reload that made the listener HTTPS leaves its connections plain,
    // as it does those not parked.)
    const auto* listener = w.current()->find_listener_by_id(listener_id);
    if (listener == nullptr)
        return false; // removed by a reload
    boost::system::error_code ec;
    const auto peer = socket.remote_endpoint(ec);
    if (ec)
        return false; // (the client has gone)
    auto session = std::make_unique<client_session<plain_stream>>(
        w, plain_stream(std::move(socket)), *listener, nullptr, peer, true);
    net::co_spawn(w.io(), client_session<plain_stream>::serve(std::move(session)), net::detached);
    return true;
}

} // namespace sluice::proxy
