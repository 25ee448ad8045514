#pragma once
// A client connection: reads requests, routes them and relays each exchange
// with an upstream (ARCHITECTURE "Request flow"). One coroutine per
// connection on its worker's thread.

#include <boost/asio/ip/tcp.hpp>

#include <cstdint>
#include <string>

namespace sluice::proxy {

class worker;

// Starts serving `socket`, accepted on the listener bound at `listener_key`
// (see snapshot.hpp). The connection keeps itself alive until it closes.
// `peer`: the client's address, as accept returned it.
void start_session(worker& w, boost::asio::ip::tcp::socket socket,
                   const boost::asio::ip::tcp::endpoint& peer, const std::string& listener_key);

// Serves the next request of a connection the worker parked (see
// worker::park), now readable, accepted on the listener with metrics id
// `listener_id`. False when no session took it (its listener has gone, or
// the client has): the socket is closed, and the caller counts the
// connection closed.
bool resume_session(worker& w, boost::asio::ip::tcp::socket socket, std::uint32_t listener_id);

} // namespace sluice::proxy
