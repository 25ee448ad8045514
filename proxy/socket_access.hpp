#pragma once
// Asio's record of a TCP socket (its implementation: descriptor, state
// flags, the reactor's per-socket data), which the socket keeps protected.
// A class derived from the socket may name that member, and a pointer to it
// reaches any socket's. For the two places that need it: worker.cpp's
// adopt_client_socket (state flags) and read_hint.cpp (the reactor's state).
// Written against Asio 1.81's epoll reactor (CMakeLists.txt pins Boost).
// Included only by those two files.

#include <boost/asio/ip/tcp.hpp>

#include <type_traits>

namespace sluice::proxy {

struct socket_access : boost::asio::ip::tcp::socket {
    static auto& implementation(boost::asio::ip::tcp::socket& s) {
        auto& impl = (s.*&socket_access::impl_).get_implementation();
        static_assert(std::is_same_v<std::remove_cvref_t<decltype(impl)>,
                                     boost::asio::detail::reactive_socket_service<
                                         boost::asio::ip::tcp>::implementation_type>,
                      "socket_access knows the epoll reactor's socket implementation only");
        return impl;
    }
};

} // namespace sluice::proxy
