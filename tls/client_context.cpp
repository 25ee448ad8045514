#include "tls/client_context.hpp"

#include <boost/asio/ip/address.hpp>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <stdexcept>

namespace sluice::tls {
namespace net = boost::asio;

client_context::client_context(const config::upstream_tls& settings)
    : context_(net::ssl::context::tls_client), verify_(settings.verify),
      server_name_(settings.server_name) {
    SSL_CTX* native = context_.native_handle();
    SSL_CTX_set_min_proto_version(native, TLS1_2_VERSION);
    SSL_CTX_set_options(native, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
    static constexpr unsigned char alpn[] = {8, 'h', 't', 't', 'p', '/', '1', '.', '1'};
    SSL_CTX_set_alpn_protos(native, alpn, sizeof alpn);
    if (!verify_) {
        SSL_CTX_set_verify(native, SSL_VERIFY_NONE, nullptr);
        return;
    }
    SSL_CTX_set_verify(native, SSL_VERIFY_PEER, nullptr);
    const bool loaded =
        settings.ca_file.empty()
            ? SSL_CTX_set_default_verify_paths(native) == 1
            : SSL_CTX_load_verify_locations(native, settings.ca_file.c_str(), nullptr) == 1;
    if (!loaded) {
        char buf[256];
        ERR_error_string_n(ERR_get_error(), buf, sizeof buf);
        ERR_clear_error();
        throw std::runtime_error((settings.ca_file.empty()
                                      ? "cannot load the system's trust store"
                                      : "cannot load CA file " + settings.ca_file) +
                                 ": " + buf);
    }
}

bool client_context::prepare(SSL* ssl, const std::string& server) const {
    std::string name = server_name_;
    if (name.empty() && !server.empty() && server.front() == '[') {
        const auto end = server.find(']');
        name = server.substr(1, end == std::string::npos ? std::string::npos : end - 1);
    } else if (name.empty()) {
        name = server.substr(0, server.rfind(':'));
    }
    boost::system::error_code ec;
    net::ip::make_address(name, ec); // (only whether it is an address)
    const bool is_ip = !ec;
    // SNI carries DNS names only (RFC 6066 3).
    if (!is_ip && SSL_set_tlsext_host_name(ssl, name.c_str()) != 1)
        return false;
    if (!verify_)
        return true;
    X509_VERIFY_PARAM* param = SSL_get0_param(ssl);
    if (is_ip)
        return X509_VERIFY_PARAM_set1_ip_asc(param, name.c_str()) == 1;
    X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    return X509_VERIFY_PARAM_set1_host(param, name.c_str(), name.size()) == 1;
}

} // namespace sluice::tls
