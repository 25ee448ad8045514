#pragma once
// The TLS side of an upstream reached over HTTPS (its `tls` key): one client
// context per upstream, shared by every worker (OpenSSL allows SSL_new on one
// context from several threads). Heavy (Asio SSL): included only where
// upstream connections are made.

#include "config/model.hpp"

#include <boost/asio/ssl/context.hpp>

#include <string>

namespace sluice::tls {

class client_context {
  public:
    // TLS 1.2 and 1.3, ALPN http/1.1, and with `verify` the peer's chain
    // checked against `ca_file` (or the system's trust store). Throws
    // std::runtime_error naming the file when the CA bundle does not load.
    explicit client_context(const config::upstream_tls& settings);
    client_context(const client_context&) = delete;
    client_context& operator=(const client_context&) = delete;

    boost::asio::ssl::context& get() { return context_; }

    // Prepares `ssl`, a new connection to `server` (a server's configured
    // "host:port", "[v6]:port" too), for its handshake. The name is the
    // configured server_name, else the server's host: sent as SNI when it is
    // a DNS name and, when verifying, the name (or IP address) the
    // certificate must carry. Returns false when OpenSSL refuses the name.
    bool prepare(SSL* ssl, const std::string& server) const;

  private:
    boost::asio::ssl::context context_;
    bool verify_;
    std::string server_name_;
};

} // namespace sluice::tls
