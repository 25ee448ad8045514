#pragma once
// TLS to an upstream (its `tls` key), layered over the connection's own
// tcp_stream so the stream's timeouts still apply. Heavy (Asio SSL):
// included only where upstream connections are used.

#include <boost/asio/ssl/stream.hpp>
#include <boost/beast/core/tcp_stream.hpp>

namespace sluice::proxy {

struct upstream_tls_stream {
    upstream_tls_stream(boost::beast::tcp_stream& next, boost::asio::ssl::context& ctx)
        : stream(next, ctx) {}
    boost::asio::ssl::stream<boost::beast::tcp_stream&> stream;
};

} // namespace sluice::proxy
