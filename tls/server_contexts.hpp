#pragma once
// The TLS side of a listener (SPEC 6): one OpenSSL context per certificate,
// the first being the default, the others chosen by SNI. Heavy (Asio SSL):
// included only where handshakes happen.

#include "config/model.hpp"

#include <boost/asio/ssl/context.hpp>

#include <memory>
#include <string>
#include <vector>

namespace sluice::tls {

class server_contexts {
  public:
    // Loads every certificate and key of `settings` (chain included) into
    // its own context: TLS 1.2 and 1.3 only (min_version may raise the
    // floor), ECDHE with AEAD ciphers, server preference, ALPN http/1.1,
    // stateless session tickets, no compression, no renegotiation.
    // Throws std::runtime_error naming the file on any failure.
    explicit server_contexts(const config::tls_settings& settings);
    server_contexts(const server_contexts&) = delete;
    server_contexts& operator=(const server_contexts&) = delete;

    // The context handshakes start with; the SNI callback may switch.
    boost::asio::ssl::context& initial() { return *contexts_.front(); }

    // The index of the certificate for `server_name` (SAN or CN, exact or
    // one-label wildcard, case-insensitive), or 0 (the default).
    std::size_t pick(std::string_view server_name) const;
    boost::asio::ssl::context& context(std::size_t index) const { return *contexts_[index]; }

  private:
    std::vector<std::unique_ptr<boost::asio::ssl::context>> contexts_;
    std::vector<std::vector<std::string>> names_; // lowercase DNS names per certificate
};

// Whether a certificate name ("example.com", "*.example.com") covers
// `host` (lowercase): exact, or a wildcard for exactly one extra label.
bool certificate_name_matches(std::string_view pattern, std::string_view host);

} // namespace sluice::tls
