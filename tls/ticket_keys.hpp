#pragma once
// Session-ticket keys (SPEC 6, resumption): one ring for the whole process,
// shared by every HTTPS listener and every worker, so a ticket issued on one
// worker resumes on any other, and across reloads (a reload builds new
// contexts, not new keys). The ring rotates: new tickets are sealed with the
// newest key; tickets sealed with the keys kept from the last rotations are
// still accepted (and replaced by a fresh ticket); older ones fall back to a
// full handshake. A leaked key thus exposes at most `kept` rotation periods.
//
// Thread safety: rotate() on the control thread, the OpenSSL callback on any
// worker; the current key set is an immutable object swapped atomically.

#include <openssl/ssl.h>

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>

namespace sluice::tls {

class ticket_keys {
  public:
    // How often the control thread rotates, and how many keys are accepted
    // (the newest included): a ticket lives between 2 and 3 periods.
    static constexpr auto rotate_every = std::chrono::hours(1);
    static constexpr std::size_t kept = 3;
    // The ticket lifetime told to clients (RFC 8446 4.6.1).
    static constexpr long lifetime_seconds = 2 * 3600;

    // The process's ring, with one key from the start.
    static ticket_keys& process();

    // A new random key becomes the one new tickets are sealed with.
    void rotate();
    // Makes `ctx` seal and open its tickets with this ring (which must
    // outlive it).
    void install(SSL_CTX* ctx);

    // The name (first 16 bytes of a ticket) of the current key, for tests.
    std::array<unsigned char, 16> current_name() const;

    struct key {
        std::array<unsigned char, 16> name;
        std::array<unsigned char, 32> aes;  // AES-256-CBC
        std::array<unsigned char, 32> hmac; // HMAC-SHA256
    };
    struct key_set {
        std::array<key, kept> keys; // [0] is current
        std::size_t count = 0;
    };

    ticket_keys();
    // OpenSSL's ticket callback: 1 = ticket sealed/opened with the current
    // key, 2 = opened with an older key (send a new ticket), 0 = unknown key.
    int seal_or_open(unsigned char name[16], unsigned char* iv, EVP_CIPHER_CTX* cipher,
                     EVP_MAC_CTX* mac, int encrypt);

  private:
    std::atomic<std::shared_ptr<const key_set>> keys_;
};

} // namespace sluice::tls
