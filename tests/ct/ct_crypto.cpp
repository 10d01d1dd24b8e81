// Constant-time check ("ctgrind"): runs every secret-handling function on keys
// and MACs that valgrind's memcheck believes are uninitialised. Memcheck then
// reports any branch or memory index that depends on them ("Conditional jump
// or move depends on uninitialised value", "Use of uninitialised value of size
// 8"), which is exactly a timing leak. Results that are meant to be public (the
// answer of a comparison) are declassified before the program looks at them.
//
//   valgrind --error-exitcode=1 --track-origins=yes ./ct_crypto               -> must pass
//   valgrind --error-exitcode=1 --track-origins=yes ./ct_crypto --leaky-control -> must FAIL:
//     it also runs a memcmp-style early-exit comparison, proving the check can see a leak.
//
// The library's own declassification points (the answer of a MAC comparison,
// which verify branches on by design) are marked with WSGUARD_CT_DECLASSIFY;
// defined here, they tell memcheck that this one value is public. Every other
// branch on a secret is still reported.
//
// Valgrind 3.19 does not emulate SHA-NI: under it the CPU check hides SHA-NI
// and only the portable compression runs (see .ci/jobs/45-constant-time.sh).
#include <valgrind/memcheck.h>
// Built with -DCT_WITHOUT_DECLASSIFY (a second negative control), memcheck
// must report verify's branch on the MAC comparison: proof that the ticket
// path really runs on secret data here.
#if !defined(CT_WITHOUT_DECLASSIFY)
#define WSGUARD_CT_DECLASSIFY(address, size) VALGRIND_MAKE_MEM_DEFINED(address, size)
#endif

#include <wsguard.hpp>

#include <cstdio>
#include <cstring>

namespace {

void make_secret(const void* p, std::size_t n) { VALGRIND_MAKE_MEM_UNDEFINED(p, n); }
void make_public(const void* p, std::size_t n) { VALGRIND_MAKE_MEM_DEFINED(p, n); }

// The negative control: leaks where the first difference is.
bool leaky_equal(const std::uint8_t* a, const std::uint8_t* b, std::size_t n) {
    for (std::size_t i = 0; i < n; ++i) {
        if (a[i] != b[i]) return false;
    }
    return true;
}

int failures = 0;
void expect(bool condition, const char* what) {
    if (!condition) {
        std::fprintf(stderr, "ct_crypto: wrong result: %s\n", what);
        ++failures;
    }
}

bool public_equal(const wsguard::sha256_digest& a, const wsguard::sha256_digest& b) {
    bool equal = wsguard::constant_time_equal(a.data(), b.data(), a.size());
    make_public(&equal, sizeof equal);
    return equal;
}

void check_backend(wsguard::detail::sha256_backend backend, bool leaky) {
    using wsguard::sha256_digest;
    std::uint8_t message[96];
    for (std::size_t i = 0; i < sizeof message; ++i) message[i] = static_cast<std::uint8_t>(i * 7);

    for (std::size_t key_size : {32u, 64u, 100u}) {  // short, one block, hashed first (RFC 2104)
        std::uint8_t key[100];
        if (wsguard::random_bytes(key, sizeof key) != wsguard::reason::ok) {
            expect(false, "random_bytes");
            return;
        }
        make_secret(key, sizeof key);

        const wsguard::hmac_sha256_key key_object = wsguard::detail::hmac_sha256_key_for(backend, key, key_size);
        const sha256_digest mac = key_object.mac(message, sizeof message);

        wsguard::hmac_sha256_key::stream stream = key_object.begin();
        stream.update(message, 40);
        stream.update(message + 40, sizeof message - 40);
        const sha256_digest streamed = stream.finish();
        // A prefix stream copied and continued, as the ticket MAC does.
        wsguard::hmac_sha256_key::stream prefix = key_object.begin();
        prefix.update(message, 40);
        wsguard::hmac_sha256_key::stream continued = prefix;
        continued.update(message + 40, sizeof message - 40);
        const sha256_digest prefixed = continued.finish();

        const sha256_digest one_shot = wsguard::hmac_sha256(key, key_size, message, sizeof message);
        const sha256_digest hashed_key = wsguard::sha256(key, key_size);

        expect(public_equal(mac, streamed), "stream MAC equals key-object MAC");
        expect(public_equal(mac, one_shot), "one-shot MAC equals key-object MAC");
        expect(public_equal(mac, prefixed), "copied-stream MAC equals key-object MAC");
        sha256_digest forged = mac;
        forged[31] ^= 1;
        expect(!public_equal(mac, forged), "a forged MAC differs");

        // Encoding a MAC or a key for transport must not leak it either.
        char text[64];
        const std::size_t chars = wsguard::base64url_encode(mac.data(), mac.size(), text, sizeof text);
        expect(chars == 43, "base64url length");
        make_public(text, sizeof text);
        make_public(hashed_key.data(), hashed_key.size());

        if (leaky) {
            bool equal = leaky_equal(mac.data(), forged.data(), mac.size());
            make_public(&equal, sizeof equal);
            expect(!equal, "leaky comparison result");
        }
    }
}

// The ticket path as users call it: a keyring built from a secret, a ticket
// issued and verified with it, and a forged one refused. The ticket text is
// what the client holds, so it is public once issued.
void check_tickets() {
    std::uint8_t secret[32];
    if (wsguard::random_bytes(secret, sizeof secret) != wsguard::reason::ok) {
        expect(false, "random_bytes");
        return;
    }
    make_secret(secret, sizeof secret);
    const std::string_view secret_view(reinterpret_cast<const char*>(secret), sizeof secret);
    auto keys = wsguard::keyring::create(1, {wsguard::keyring_key{1, secret_view, std::nullopt}});
    expect(static_cast<bool>(keys), "keyring::create");
    if (!keys) return;
    auto issuer = wsguard::ticket_issuer::create(keys.value());
    auto store = wsguard::memory_replay_store::create(1024, std::chrono::system_clock::now() - std::chrono::minutes(1));
    expect(issuer && store, "issuer and store");
    if (!issuer || !store) return;
    auto verifier = wsguard::ticket_verifier<>::create(keys.value(), store.value());
    expect(static_cast<bool>(verifier), "ticket_verifier::create");
    if (!verifier) return;

    wsguard::ticket_request request;
    request.subject = "user-42";
    request.origin = "https://app.example.com";
    request.audience = "api.example.com/chat";
    request.scopes = "chat:read chat:write";
    wsguard::issued_ticket issued = issuer.value().issue(request);
    make_public(&issued.decision, sizeof issued.decision);
    expect(static_cast<bool>(issued), "issue");
    if (!issued) return;
    make_public(issued.ticket.data(), issued.ticket.size());

    std::string forged = issued.ticket;
    forged[forged.size() - 2] = forged[forged.size() - 2] == 'A' ? 'B' : 'A';  // inside the MAC
    wsguard::ticket_claims claims;
    wsguard::decision refused =
        verifier.value().verify(wsguard::presented_ticket(forged), wsguard::expected_origin("https://app.example.com"),
                                wsguard::expected_audience("api.example.com/chat"), claims);
    make_public(&refused, sizeof refused);
    expect(refused.reason == wsguard::reason::ticket_bad_mac, "a forged MAC is refused");
    wsguard::decision accepted =
        verifier.value().verify(wsguard::presented_ticket(issued.ticket), wsguard::expected_origin("https://app.example.com"),
                                wsguard::expected_audience("api.example.com/chat"), claims);
    make_public(&accepted, sizeof accepted);
    expect(accepted.allowed(), "the issued ticket verifies");
    expect(claims.subject() == "user-42", "the claims carry the subject");
    wsguard::decision replayed =
        verifier.value().verify(wsguard::presented_ticket(issued.ticket), wsguard::expected_origin("https://app.example.com"),
                                wsguard::expected_audience("api.example.com/chat"), claims);
    make_public(&replayed, sizeof replayed);
    expect(replayed.reason == wsguard::reason::ticket_replayed, "a spent ticket is refused");
}

}  // namespace

int main(int argc, char** argv) {
    const bool leaky = argc > 1 && std::strcmp(argv[1], "--leaky-control") == 0;
    if (!RUNNING_ON_VALGRIND) {
        std::fprintf(stderr, "ct_crypto: run me under valgrind (see the comment at the top)\n");
        return 2;
    }
    for (wsguard::detail::sha256_backend backend : wsguard::detail::available_backends()) {
        std::printf("ct_crypto: checking the %s backend%s\n", wsguard::detail::sha256_backend_name(backend),
                    leaky ? " with the leaky control" : "");
        check_backend(backend, leaky);
    }
    std::printf("ct_crypto: checking keyring::create, ticket_issuer::issue and ticket_verifier::verify\n");
    check_tickets();
    return failures == 0 ? 0 : 1;
}
