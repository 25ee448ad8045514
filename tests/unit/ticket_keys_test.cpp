// The session-ticket key ring (tls/ticket_keys.hpp), through real OpenSSL
// handshakes in memory: a server context using the ring, a client that
// keeps its session, and rotations in between.

#include "tls/ticket_keys.hpp"

#include "self_signed.hpp"

#include <catch2/catch.hpp>

#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <memory>

namespace {

using sluice::tls::ticket_keys;

template <typename T, void (*Free)(T*)> struct deleter {
    void operator()(T* p) const { Free(p); }
};
using ctx_ptr = std::unique_ptr<SSL_CTX, deleter<SSL_CTX, SSL_CTX_free>>;
using ssl_ptr = std::unique_ptr<SSL, deleter<SSL, SSL_free>>;
using session_ptr = std::unique_ptr<SSL_SESSION, deleter<SSL_SESSION, SSL_SESSION_free>>;

// A server context with a fresh self-signed P-256 certificate.
ctx_ptr server_context(ticket_keys& ring) {
    ctx_ptr ctx(SSL_CTX_new(TLS_server_method()));
    sluice::test::use_self_signed_p256(ctx.get(), "ticket.test");
    SSL_CTX_set_session_cache_mode(ctx.get(), SSL_SESS_CACHE_OFF);
    static constexpr unsigned char sid[] = "t";
    SSL_CTX_set_session_id_context(ctx.get(), sid, 1);
    ring.install(ctx.get());
    return ctx;
}

// One TLS 1.2 handshake over a BIO pair (1.2: the ticket arrives within
// the handshake). Returns whether it resumed; `session` gets the client's
// session afterwards.
bool handshake(SSL_CTX* server_ctx, session_ptr& session) {
    ctx_ptr client_ctx(SSL_CTX_new(TLS_client_method()));
    SSL_CTX_set_max_proto_version(client_ctx.get(), TLS1_2_VERSION);
    ssl_ptr client(SSL_new(client_ctx.get()));
    ssl_ptr server(SSL_new(server_ctx));
    BIO* client_end = nullptr;
    BIO* server_end = nullptr;
    BIO_new_bio_pair(&client_end, 0, &server_end, 0);
    SSL_set_bio(client.get(), client_end, client_end);
    SSL_set_bio(server.get(), server_end, server_end);
    SSL_set_connect_state(client.get());
    SSL_set_accept_state(server.get());
    if (session)
        SSL_set_session(client.get(), session.get());
    bool client_done = false;
    bool server_done = false;
    for (int round = 0; round < 20 && !(client_done && server_done); ++round) {
        if (!client_done)
            client_done = SSL_do_handshake(client.get()) == 1;
        if (!server_done)
            server_done = SSL_do_handshake(server.get()) == 1;
    }
    REQUIRE(client_done);
    REQUIRE(server_done);
    const bool resumed = SSL_session_reused(client.get()) == 1;
    session.reset(SSL_get1_session(client.get()));
    // Freed without a close_notify, a connection's session is marked not
    // resumable: close cleanly, as a client keeping its session would.
    SSL_shutdown(client.get());
    return resumed;
}

} // namespace

TEST_CASE("a ticket resumes until its key has been rotated out", "[tls]") {
    ticket_keys ring;
    auto ctx = server_context(ring);
    session_ptr session;
    CHECK_FALSE(handshake(ctx.get(), session)); // full: the first ticket
    CHECK(handshake(ctx.get(), session));       // resumed with the current key

    SECTION("a ticket of an older key still kept resumes, and is replaced") {
        session_ptr kept_session(SSL_SESSION_dup(session.get()));
        ring.rotate();
        ring.rotate(); // the key of `session` is now the oldest of three
        CHECK(handshake(ctx.get(), session));
        // The renewed ticket is sealed with the current key: it survives
        // two more rotations, the old one does not.
        ring.rotate();
        ring.rotate();
        CHECK(handshake(ctx.get(), session));
        CHECK_FALSE(handshake(ctx.get(), kept_session));
    }
    SECTION("after `kept` rotations the ticket gives a full handshake") {
        for (std::size_t i = 0; i < ticket_keys::kept; ++i)
            ring.rotate();
        CHECK_FALSE(handshake(ctx.get(), session));
        CHECK(handshake(ctx.get(), session)); // with the new ticket
    }
}

TEST_CASE("rotation changes the current key name", "[tls]") {
    ticket_keys ring;
    const auto before = ring.current_name();
    ring.rotate();
    CHECK(ring.current_name() != before);
}
