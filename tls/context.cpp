#include "tls/context.hpp"

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>

#include <cstdio>
#include <memory>

namespace sluice::tls {
namespace {

std::string last_openssl_error() {
    const unsigned long code = ERR_get_error();
    ERR_clear_error();
    if (code == 0)
        return "unknown error";
    char buf[256];
    ERR_error_string_n(code, buf, sizeof buf);
    return buf;
}

} // namespace

std::vector<std::string> check_certificates(const config::tls_settings& settings) {
    std::vector<std::string> problems;
    for (const auto& c : settings.certificates) {
        std::unique_ptr<SSL_CTX, decltype(&SSL_CTX_free)> ctx(SSL_CTX_new(TLS_server_method()),
                                                              SSL_CTX_free);
        if (!ctx) {
            problems.push_back("cannot create a TLS context: " + last_openssl_error());
            continue;
        }
        if (SSL_CTX_use_certificate_chain_file(ctx.get(), c.cert_file.c_str()) != 1) {
            problems.push_back("cannot load certificate " + c.cert_file + ": " +
                               last_openssl_error());
            continue;
        }
        if (SSL_CTX_use_PrivateKey_file(ctx.get(), c.key_file.c_str(), SSL_FILETYPE_PEM) != 1) {
            problems.push_back("cannot load key " + c.key_file + ": " + last_openssl_error());
            continue;
        }
        if (SSL_CTX_check_private_key(ctx.get()) != 1) {
            problems.push_back("key " + c.key_file + " does not match certificate " + c.cert_file);
            ERR_clear_error();
        }
    }
    return problems;
}

std::string check_upstream_tls(const config::upstream_tls& settings) {
    if (settings.ca_file.empty())
        return {};
    std::unique_ptr<SSL_CTX, decltype(&SSL_CTX_free)> ctx(SSL_CTX_new(TLS_client_method()),
                                                          SSL_CTX_free);
    if (!ctx)
        return "cannot create a TLS context: " + last_openssl_error();
    if (SSL_CTX_load_verify_locations(ctx.get(), settings.ca_file.c_str(), nullptr) != 1)
        return "cannot load CA file " + settings.ca_file + ": " + last_openssl_error();
    return {};
}

} // namespace sluice::tls
