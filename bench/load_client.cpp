// The request loop. Each connection is a coroutine on its thread's
// io_context: (connect) -> write the pre-built request -> read and parse the
// response into a fixed buffer -> record -> repeat. Nothing on this path
// allocates in steady state: the request bytes are shared, the read buffer is
// per connection, and Asio recycles coroutine frames per thread.
//
// Timeouts and the end of the run are enforced from outside the loop: a
// per-thread sweep closes the socket of any connection past its deadline, and
// the end timer closes every socket, so the loop never needs a second timer
// per request.
#include "bench/load_client.hpp"

#include "bench/response_parser.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include <cstring>
#include <memory>
#include <optional>
#include <type_traits>

namespace sluice::bench {
namespace {

namespace net = boost::asio;
namespace ssl = boost::asio::ssl;
using tcp = net::ip::tcp;
using error_code = boost::system::error_code;

constexpr auto use_tuple = net::as_tuple(net::use_awaitable);
constexpr std::size_t read_buffer_size = 64 * 1024;
constexpr auto no_deadline = clock_type::time_point::max();

// What the sweep and the end timer need to reach a connection from outside.
struct connection_slot {
    explicit connection_slot(net::io_context& ioc) : pacing{ioc} {}
    tcp::socket* socket = nullptr; // the TCP layer of the open stream, or null
    clock_type::time_point deadline = no_deadline;
    bool timed_out = false;   // set by the sweep when it closed the socket
    net::steady_timer pacing; // open loop: waits for the next send time
    // --tls-resume: the last connection's session, offered by the next one.
    std::unique_ptr<SSL_SESSION, decltype(&SSL_SESSION_free)> tls_session{nullptr,
                                                                          SSL_SESSION_free};
};

// Everything one thread owns. Lives on run_share's stack for the whole run;
// every coroutine below holds a reference to it and ends before run() returns.
struct thread_runner {
    thread_runner(const load_plan& plan, thread_progress& progress)
        : plan{plan}, options{*plan.options}, progress{progress}, sweep{ioc}, finish{ioc} {}

    net::io_context ioc{1};
    const load_plan& plan;
    const load_options& options;
    thread_progress& progress;
    std::optional<ssl::context> tls;
    std::vector<std::unique_ptr<connection_slot>> slots;
    net::steady_timer sweep;
    net::steady_timer finish;
    bool stopping = false;
    run_result result;

    void publish_progress() {
        progress.requests.store(result.requests, std::memory_order_relaxed);
        progress.errors.store(result.error_total(), std::memory_order_relaxed);
        progress.bytes_read.store(result.bytes_read, std::memory_order_relaxed);
    }
};

tcp::socket& tcp_layer(tcp::socket& s) {
    return s;
}
tcp::socket& tcp_layer(ssl::stream<tcp::socket>& s) {
    return s.next_layer();
}

bool is_eof(const error_code& ec) {
    return ec == net::error::eof || ec == ssl::error::stream_truncated;
}

// Microseconds, rounded to nearest, at least 1 (the histogram's floor).
std::uint64_t to_micros(clock_type::duration d) {
    const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(d).count();
    return ns <= 500 ? 1 : static_cast<std::uint64_t>((ns + 500) / 1000);
}

// Opens a connection (TCP, then TLS when Stream is an ssl::stream) into
// `stream`. Returns false after counting a connect or timeout error.
template <class Stream>
net::awaitable<bool> open_connection(thread_runner& r, connection_slot& slot,
                                     std::optional<Stream>& stream) {
    if constexpr (std::is_same_v<Stream, tcp::socket>) {
        stream.emplace(r.ioc);
    } else {
        stream.emplace(r.ioc, *r.tls);
        // SNI and the name to verify: the URL's host.
        SSL_set_tlsext_host_name(stream->native_handle(), r.options.url.host.c_str());
        if (!r.options.insecure) {
            stream->set_verify_callback(ssl::host_name_verification(r.options.url.host));
        }
        if (slot.tls_session) {
            SSL_set_session(stream->native_handle(), slot.tls_session.get());
        }
    }
    slot.socket = &tcp_layer(*stream);
    slot.deadline = clock_type::now() + r.options.timeout;
    slot.timed_out = false;
    auto [ec, ep] = co_await net::async_connect(tcp_layer(*stream), r.plan.endpoints, use_tuple);
    if (!ec) {
        tcp_layer(*stream).set_option(tcp::no_delay(true), ec);
        if constexpr (!std::is_same_v<Stream, tcp::socket>) {
            std::tie(ec) = co_await stream->async_handshake(ssl::stream_base::client, use_tuple);
            if (!ec && SSL_session_reused(stream->native_handle()) == 1) {
                ++r.result.tls_resumed;
            }
        }
    }
    if (ec) {
        if (!r.stopping) {
            r.result.count_error(slot.timed_out ? error_kind::timeout : error_kind::connect);
        }
        slot.socket = nullptr;
        stream.reset();
        co_return false;
    }
    ++r.result.connections_opened;
    co_return true;
}

// One connection's request loop, reconnecting after errors and closes,
// until the run ends. Stream: tcp::socket or ssl::stream<tcp::socket>.
template <class Stream>
net::awaitable<void> connection_loop(thread_runner& r, connection_slot& slot, int global_index) {
    const load_options& options = r.options;
    const bool open_loop = options.rate > 0;
    const auto interval = std::chrono::duration_cast<clock_type::duration>(
        std::chrono::duration<double>(open_loop ? options.connections / options.rate : 0.0));
    // Spread the connections' first sends evenly over one interval.
    auto next_send = r.plan.start + interval * global_index / options.connections;

    std::optional<Stream> stream; // this frame owns the connection
    std::unique_ptr<char[]> buffer{new char[read_buffer_size]};
    std::size_t buffered = 0;
    response_parser parser;

    auto drop_connection = [&] {
        if constexpr (!std::is_same_v<Stream, tcp::socket>) {
            // The session is kept if it can resume (a TLS 1.3 one only once
            // the ticket sent after the handshake was read, as it is with a
            // response). The connection counts as shut down: OpenSSL marks
            // the session of a connection freed without a shutdown as not
            // resumable.
            if (stream && options.tls_resume && !r.stopping) {
                SSL_set_shutdown(stream->native_handle(),
                                 SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
                SSL_SESSION* session = SSL_get1_session(stream->native_handle());
                if (session != nullptr && SSL_SESSION_is_resumable(session) == 1) {
                    slot.tls_session.reset(session);
                } else if (session != nullptr) {
                    SSL_SESSION_free(session);
                }
            }
        }
        if (stream) {
            error_code ignored;
            tcp_layer(*stream).close(ignored);
        }
        slot.socket = nullptr;
        slot.deadline = no_deadline;
        stream.reset();
        buffered = 0;
    };
    auto fail = [&](error_kind kind) {
        if (!r.stopping) {
            r.result.count_error(slot.timed_out ? error_kind::timeout : kind);
            r.publish_progress();
        }
        drop_connection();
    };

    while (!r.stopping) {
        clock_type::time_point intended{};
        if (open_loop) {
            if (next_send >= r.plan.end) {
                break;
            }
            if (clock_type::now() < next_send) {
                slot.pacing.expires_at(next_send);
                co_await slot.pacing.async_wait(use_tuple);
                if (r.stopping) {
                    break;
                }
            }
            intended = next_send;
            next_send += interval;
        } else if (clock_type::now() >= r.plan.end) {
            break;
        }

        const auto connect_start = clock_type::now();
        if (!stream) {
            if (!co_await open_connection(r, slot, stream)) {
                if (r.stopping) {
                    break;
                }
                // Do not spin on a refused port: at most ~100 attempts/s per connection.
                slot.pacing.expires_after(std::chrono::milliseconds{10});
                co_await slot.pacing.async_wait(use_tuple);
                continue;
            }
        }
        const auto sent_at = clock_type::now();
        const auto measured_from =
            open_loop ? intended : (options.new_connection ? connect_start : sent_at);
        slot.deadline = sent_at + options.timeout;
        slot.timed_out = false;

        auto [write_ec, written] =
            co_await net::async_write(*stream, net::buffer(r.plan.request), use_tuple);
        if (r.stopping) {
            break;
        }
        if (write_ec) {
            fail(error_kind::write);
            continue;
        }
        r.result.bytes_written += written;

        parser.reset(r.plan.head_request);
        bool failed = false;
        while (parser.result() == response_parser::state::need_more) {
            auto [read_ec, n] = co_await stream->async_read_some(
                net::buffer(buffer.get() + buffered, read_buffer_size - buffered), use_tuple);
            if (r.stopping) {
                break;
            }
            if (read_ec && !is_eof(read_ec)) {
                fail(error_kind::read);
                failed = true;
                break;
            }
            r.result.bytes_read += n;
            buffered += n;
            const std::size_t used = parser.parse({buffer.get(), buffered});
            std::memmove(buffer.get(), buffer.get() + used, buffered - used);
            buffered -= used;
            if (read_ec) {
                parser.on_eof();
            }
            if (parser.result() == response_parser::state::need_more &&
                buffered == read_buffer_size) {
                // A single header line longer than the whole buffer.
                fail(error_kind::parse);
                failed = true;
                break;
            }
        }
        if (r.stopping) {
            break;
        }
        if (failed) {
            continue;
        }
        if (parser.result() == response_parser::state::error) {
            fail(parser.error() == response_parser::failure::truncated ? error_kind::read
                                                                       : error_kind::parse);
            continue;
        }
        r.result.latency_us.record(to_micros(clock_type::now() - measured_from));
        ++r.result.requests;
        r.result.count_status(parser.status());
        r.publish_progress();
        slot.deadline = no_deadline;
        if (!parser.keep_alive() || options.new_connection) {
            drop_connection();
        }
    }
    drop_connection();
}

// Every 50 ms: close the socket of each connection past its deadline, so its
// pending operation fails and the loop counts a timeout.
net::awaitable<void> sweep_loop(thread_runner& r) {
    while (!r.stopping) {
        r.sweep.expires_after(std::chrono::milliseconds{50});
        co_await r.sweep.async_wait(use_tuple);
        if (r.plan.stop_early != nullptr && r.plan.stop_early->load(std::memory_order_relaxed)) {
            r.finish.cancel(); // finish_at_end proceeds now
            co_return;
        }
        const auto now = clock_type::now();
        for (auto& slot : r.slots) {
            if (slot->socket != nullptr && now > slot->deadline) {
                slot->timed_out = true;
                slot->deadline = no_deadline;
                error_code ignored;
                slot->socket->close(ignored);
            }
        }
    }
}

// At plan.end (or earlier when the sweep cancels the timer): stop every loop
// wherever it waits.
net::awaitable<void> finish_at_end(thread_runner& r) {
    r.finish.expires_at(r.plan.end);
    co_await r.finish.async_wait(use_tuple);
    r.stopping = true;
    r.sweep.cancel();
    for (auto& slot : r.slots) {
        slot->pacing.cancel();
        if (slot->socket != nullptr) {
            error_code ignored;
            slot->socket->close(ignored);
        }
    }
}

} // namespace

run_result run_share(const load_plan& plan, int first, int count, thread_progress& progress) {
    thread_runner r{plan, progress};
    const load_options& options = *plan.options;
    if (options.url.tls) {
        r.tls.emplace(ssl::context::tls_client);
        if (options.insecure) {
            r.tls->set_verify_mode(ssl::verify_none);
        } else {
            r.tls->set_default_verify_paths();
            r.tls->set_verify_mode(ssl::verify_peer);
        }
    }
    r.slots.reserve(static_cast<std::size_t>(count));
    for (int i = 0; i < count; ++i) {
        r.slots.push_back(std::make_unique<connection_slot>(r.ioc));
        connection_slot& slot = *r.slots.back();
        if (options.url.tls) {
            net::co_spawn(r.ioc, connection_loop<ssl::stream<tcp::socket>>(r, slot, first + i),
                          net::detached);
        } else {
            net::co_spawn(r.ioc, connection_loop<tcp::socket>(r, slot, first + i), net::detached);
        }
    }
    net::co_spawn(r.ioc, sweep_loop(r), net::detached);
    net::co_spawn(r.ioc, finish_at_end(r), net::detached);
    r.ioc.run();
    r.publish_progress();
    return std::move(r.result);
}

} // namespace sluice::bench
