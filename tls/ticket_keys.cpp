#include "tls/ticket_keys.hpp"

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include <algorithm>
#include <cstring>
#include <stdexcept>

namespace sluice::tls {
namespace {

ticket_keys::key random_key() {
    ticket_keys::key k;
    if (RAND_bytes(k.name.data(), static_cast<int>(k.name.size())) != 1 ||
        RAND_bytes(k.aes.data(), static_cast<int>(k.aes.size())) != 1 ||
        RAND_bytes(k.hmac.data(), static_cast<int>(k.hmac.size())) != 1)
        throw std::runtime_error("no random bytes for a session-ticket key");
    return k;
}

// The slot of an SSL_CTX that points to its ring (Asio uses the app data).
int ring_index() {
    static const int index = SSL_CTX_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
    return index;
}

int on_ticket(SSL* ssl, unsigned char name[16], unsigned char* iv, EVP_CIPHER_CTX* cipher,
              EVP_MAC_CTX* mac, int encrypt) {
    auto* ring = static_cast<ticket_keys*>(SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), ring_index()));
    if (ring == nullptr)
        return 0;
    return ring->seal_or_open(name, iv, cipher, mac, encrypt);
}

bool use_mac_key(EVP_MAC_CTX* mac, const ticket_keys::key& k) {
    static char digest[] = "SHA256";
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_KEY,
                                          const_cast<unsigned char*>(k.hmac.data()), k.hmac.size()),
        OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
        OSSL_PARAM_construct_end()};
    return EVP_MAC_CTX_set_params(mac, params) == 1;
}

} // namespace

ticket_keys& ticket_keys::process() {
    static ticket_keys ring;
    return ring;
}

ticket_keys::ticket_keys() {
    auto first = std::make_shared<key_set>();
    first->keys[0] = random_key();
    first->count = 1;
    keys_.store(std::move(first));
}

void ticket_keys::rotate() {
    const auto old = keys_.load();
    auto next = std::make_shared<key_set>();
    next->keys[0] = random_key();
    next->count = std::min(kept, old->count + 1);
    for (std::size_t i = 1; i < next->count; ++i)
        next->keys[i] = old->keys[i - 1];
    keys_.store(std::move(next));
}

void ticket_keys::install(SSL_CTX* ctx) {
    SSL_CTX_set_ex_data(ctx, ring_index(), this);
    SSL_CTX_set_tlsext_ticket_key_evp_cb(ctx, on_ticket);
    SSL_CTX_set_timeout(ctx, lifetime_seconds);
}

std::array<unsigned char, 16> ticket_keys::current_name() const {
    return keys_.load()->keys[0].name;
}

int ticket_keys::seal_or_open(unsigned char name[16], unsigned char* iv, EVP_CIPHER_CTX* cipher,
                              EVP_MAC_CTX* mac, int encrypt) {
    const auto set = keys_.load();
    if (encrypt == 1) {
        const auto& k = set->keys[0];
        if (RAND_bytes(iv, EVP_CIPHER_get_iv_length(EVP_aes_256_cbc())) != 1)
            return -1;
        std::memcpy(name, k.name.data(), k.name.size());
        if (EVP_EncryptInit_ex(cipher, EVP_aes_256_cbc(), nullptr, k.aes.data(), iv) != 1 ||
            !use_mac_key(mac, k))
            return -1;
        return 1;
    }
    for (std::size_t i = 0; i < set->count; ++i) {
        const auto& k = set->keys[i];
        if (std::memcmp(name, k.name.data(), k.name.size()) != 0)
            continue;
        if (EVP_DecryptInit_ex(cipher, EVP_aes_256_cbc(), nullptr, k.aes.data(), iv) != 1 ||
            !use_mac_key(mac, k))
            return -1;
        return i == 0 ? 1 : 2;
    }
    return 0; // sealed with a key rotated out: a full handshake
}

} // namespace sluice::tls
