#pragma once
// What the proxy knows about a socket's receive queue, told to Asio's
// reactor so that a receive skips a read that would find nothing.
//
// Asio's reactor (epoll, edge-triggered) keeps, per socket, whether a read
// may find bytes. Every readiness event sets it and only an end of stream
// clears it, so each receive starts with a read of its own, and that read
// fails whenever the peer has not sent yet: on a keep-alive exchange, once
// on each side per request (the next request, the upstream's answer), and
// once per new connection (the request follows the handshake). The proxy
// knows better:
// - a connection just accepted has had nothing read (worker.cpp's
//   adopt_client_socket); its registration with the event loop reports
//   bytes already there as an event;
// - a request without a body, whole in the buffer, read by the wait for
//   the next request with a read that returned short: nothing more is read
//   from the client until the response is out (connection.cpp's forward).
//   That read is made by the session itself where Asio's receive would
//   try one (and finding nothing marks the socket), or within the
//   readiness event's own handling: either way no other event can have
//   been collected since (Asio's own read tried at once completes a turn
//   later). Pipelined bytes in the buffer, or a head that came in pieces,
//   leave the socket unmarked and undo the last request's mark;
// - a response whole in the buffer, read the same way by the head's read
//   (and not while a body sender may still write: its write, completing
//   in the same event, would delay the read's completion by a turn):
//   marked before the relay, which may wait on the client; any read of
//   the relay, and the pool's idle watch (its peek is made at once), undo
//   it.
// Marked drained, the socket's next receive waits for the next readiness
// event without a read first. Any event (the next request, the answer, a
// close, a reset) sets the reactor's state again, as it would have anyway.
// The close of a connection skips its peek for bytes sent after the last
// request when nothing has come since the mark (as nginx's lingering_close
// on decides by its own readiness flag).
//
// Blind spot: an end of stream that came in the same event as the bytes
// the short read took (bytes cannot be missed so: the short read took all
// there were, and no event is collected between it and the mark). The
// next receive then waits for an event that does not come.
// On a client connection the wait between requests parks it after
// park_after, and the park's registration finds the close (with
// client_idle no longer than park_after, or in a drain, the connection
// closes then anyway). On a pooled upstream connection, a request that
// cannot be retried is sent only after a peek (upstream_pool::take), and
// a request that can be retried finds a closed connection by the
// upstream's reset to it; only an upstream that half-closes with its
// response (without Connection: close) and then reads on without
// answering or closing leaves the request to its response timeout.
//
// The reactor's state is private to Asio (Boost 1.81, epoll, one thread per
// io_context: the proxy's workers): read_hint.cpp reaches it by member
// pointers, checked against that version.

#include <boost/asio/ip/tcp.hpp>

namespace sluice::proxy {

// Nothing is left to read on `socket` as far as the proxy knows (its last
// read returned short, or it has had none): its next receive waits for a
// readiness event without a read first.
void mark_drained(boost::asio::ip::tcp::socket& socket) noexcept;

// The next receive on `socket` reads first (Asio's own behaviour).
void mark_maybe_readable(boost::asio::ip::tcp::socket& socket) noexcept;

// False when `socket` was marked drained and no readiness event has been
// handled for it since: nothing has arrived, but for bytes whose event the
// event loop has yet to collect.
bool read_may_find_bytes(boost::asio::ip::tcp::socket& socket) noexcept;

} // namespace sluice::proxy
