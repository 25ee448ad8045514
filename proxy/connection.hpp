#pragma once
// A client connection: reads requests, routes them and relays each exchange
// with an upstream (ARCHITECTURE "Request flow"). One coroutine per
// connection on its worker's thread.

#include <boost/asio/ip/tcp.hpp>

#include <string>

namespace sluice::proxy {

class worker;

// Starts serving `socket`, accepted on the listener bound at `listener_key`
// (see snapshot.hpp). The connection keeps itself alive until it closes.
void start_session(worker& w, boost::asio::ip::tcp::socket socket, const std::string& listener_key);

} // namespace sluice::proxy
