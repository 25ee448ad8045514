#pragma once
// A client connection: reads requests, routes them and relays each exchange
// with an upstream (ARCHITECTURE "Request flow"). One coroutine per
// connection on its worker's thread.

#include <boost/asio/ip/tcp.hpp>

#include <cstddef>

namespace sluice::proxy {

class worker;

// Starts serving `socket`, accepted on listener number `listener_index` of
// the worker's current snapshot. The connection keeps itself alive until it
// closes.
void start_session(worker& w, boost::asio::ip::tcp::socket socket, std::size_t listener_index);

} // namespace sluice::proxy
