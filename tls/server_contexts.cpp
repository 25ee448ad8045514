#include "tls/server_contexts.hpp"

#include "tls/ticket_keys.hpp"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <stdexcept>

namespace sluice::tls {
namespace net = boost::asio;

namespace {

// TLS 1.2: ECDHE key exchange with AEAD ciphers only.
constexpr const char* tls12_ciphers = "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
                                      "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
                                      "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";

// TLS 1.3: OpenSSL's three suites (all AEAD with (EC)DHE) in the same order
// as the 1.2 list, AES-128 first. OpenSSL's own order starts with
// AES-256-GCM with SHA-384: both ends then run the handshake's key schedule
// and transcript with SHA-384 (half SHA-256's speed where the CPU has SHA
// instructions) and every record through 14 AES rounds instead of 10, for
// a key longer than the 128-bit strength of the P-256 or X25519 exchange
// that agreed it (~3 % of a full ECDSA handshake's instructions here).
constexpr const char* tls13_suites = "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:"
                                     "TLS_CHACHA20_POLY1305_SHA256";

std::string openssl_error() {
    const unsigned long code = ERR_get_error();
    ERR_clear_error();
    if (code == 0)
        return "unknown error";
    char buf[256];
    ERR_error_string_n(code, buf, sizeof buf);
    return buf;
}

std::string lowercase(std::string_view s) {
    std::string out(s);
    for (auto& c : out)
        if (c >= 'A' && c <= 'Z')
            c = static_cast<char>(c + 32);
    return out;
}

// The DNS names of the context's certificate: its SAN dNSNames, or its CN
// when it has none.
std::vector<std::string> certificate_names(SSL_CTX* ctx) {
    std::vector<std::string> names;
    X509* cert = SSL_CTX_get0_certificate(ctx);
    if (cert == nullptr)
        return names;
    auto* sans =
        static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr));
    if (sans != nullptr) {
        for (int i = 0; i < sk_GENERAL_NAME_num(sans); ++i) {
            const GENERAL_NAME* name = sk_GENERAL_NAME_value(sans, i);
            if (name->type != GEN_DNS)
                continue;
            const auto* data = ASN1_STRING_get0_data(name->d.dNSName);
            names.push_back(
                lowercase({reinterpret_cast<const char*>(data),
                           static_cast<std::size_t>(ASN1_STRING_length(name->d.dNSName))}));
        }
        GENERAL_NAMES_free(sans);
    }
    if (names.empty()) {
        char cn[256] = {};
        if (X509_NAME_get_text_by_NID(X509_get_subject_name(cert), NID_commonName, cn, sizeof cn) >
            0)
            names.push_back(lowercase(cn));
    }
    return names;
}

int select_alpn(SSL*, const unsigned char** out, unsigned char* outlen, const unsigned char* in,
                unsigned int inlen, void*) {
    static constexpr unsigned char http11[] = {8, 'h', 't', 't', 'p', '/', '1', '.', '1'};
    unsigned char* selected = nullptr;
    if (SSL_select_next_proto(&selected, outlen, http11, sizeof http11, in, inlen) !=
        OPENSSL_NPN_NEGOTIATED)
        return SSL_TLSEXT_ERR_NOACK; // no common protocol: go on without ALPN
    *out = selected;
    return SSL_TLSEXT_ERR_OK;
}

int on_server_name(SSL* ssl, int*, void* arg) {
    const auto& self = *static_cast<server_contexts*>(arg);
    const char* name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
    if (name == nullptr)
        return SSL_TLSEXT_ERR_OK; // no SNI: the default certificate
    const auto index = self.pick(name);
    if (index != 0)
        SSL_set_SSL_CTX(ssl, self.context(index).native_handle());
    return SSL_TLSEXT_ERR_OK;
}

} // namespace

bool certificate_name_matches(std::string_view pattern, std::string_view host) {
    if (pattern.size() > 2 && pattern[0] == '*' && pattern[1] == '.') {
        const auto suffix = pattern.substr(1); // ".example.com"
        if (host.size() <= suffix.size() || host.substr(host.size() - suffix.size()) != suffix)
            return false;
        return host.substr(0, host.size() - suffix.size()).find('.') == std::string_view::npos;
    }
    return pattern == host;
}

server_contexts::server_contexts(const config::tls_settings& settings) {
    for (const auto& cert : settings.certificates) {
        auto ctx = std::make_unique<net::ssl::context>(net::ssl::context::tls_server);
        SSL_CTX* native = ctx->native_handle();
        SSL_CTX_set_min_proto_version(native, settings.min_version == "1.3" ? TLS1_3_VERSION
                                                                            : TLS1_2_VERSION);
        SSL_CTX_set_max_proto_version(native, TLS1_3_VERSION);
        SSL_CTX_set_options(native, SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_NO_COMPRESSION |
                                        SSL_OP_NO_RENEGOTIATION | SSL_OP_SINGLE_ECDH_USE);
        if (SSL_CTX_set_cipher_list(native, tls12_ciphers) != 1)
            throw std::runtime_error("cannot set the TLS 1.2 ciphers: " + openssl_error());
        if (SSL_CTX_set_ciphersuites(native, tls13_suites) != 1)
            throw std::runtime_error("cannot set the TLS 1.3 suites: " + openssl_error());
        // Resumption by stateless tickets only: no server-side session cache
        // (it would take a lock per handshake); the process's rotating ticket
        // keys serve every worker and survive reloads (tls/ticket_keys.hpp).
        SSL_CTX_set_session_cache_mode(native, SSL_SESS_CACHE_OFF);
        ticket_keys::process().install(native);
        static constexpr unsigned char sid_context[] = "sluice";
        SSL_CTX_set_session_id_context(native, sid_context, sizeof sid_context - 1);
        // One TLS 1.3 ticket per full handshake, not OpenSSL's two: each
        // costs the handshake a session encoding, an encryption and a MAC
        // (~6 % of a full ECDSA handshake's instructions), and a client
        // resuming with it may use it again while it is valid.
        SSL_CTX_set_num_tickets(native, 1);
        SSL_CTX_set_alpn_select_cb(native, select_alpn, nullptr);
        if (SSL_CTX_use_certificate_chain_file(native, cert.cert_file.c_str()) != 1)
            throw std::runtime_error("cannot load certificate " + cert.cert_file + ": " +
                                     openssl_error());
        if (SSL_CTX_use_PrivateKey_file(native, cert.key_file.c_str(), SSL_FILETYPE_PEM) != 1)
            throw std::runtime_error("cannot load key " + cert.key_file + ": " + openssl_error());
        if (SSL_CTX_check_private_key(native) != 1) {
            ERR_clear_error();
            throw std::runtime_error("key " + cert.key_file + " does not match certificate " +
                                     cert.cert_file);
        }
        names_.push_back(certificate_names(native));
        contexts_.push_back(std::move(ctx));
    }
    if (contexts_.empty())
        throw std::runtime_error("no certificates");
    SSL_CTX* first = contexts_.front()->native_handle();
    SSL_CTX_set_tlsext_servername_callback(first, on_server_name);
    SSL_CTX_set_tlsext_servername_arg(first, this);
}

std::size_t server_contexts::pick(std::string_view server_name) const {
    const auto host = lowercase(server_name);
    for (std::size_t i = 0; i < names_.size(); ++i)
        for (const auto& pattern : names_[i])
            if (certificate_name_matches(pattern, host))
                return i;
    return 0;
}

} // namespace sluice::tls
