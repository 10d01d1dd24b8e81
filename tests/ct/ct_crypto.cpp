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
// Valgrind 3.19 does not emulate SHA-NI: under it the CPU check hides SHA-NI
// and only the portable compression runs (see .ci/jobs/45-constant-time.sh).
#include <wsguard.hpp>

#include <valgrind/memcheck.h>

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

        const wsguard::hmac_sha256_key key_object(key, key_size, backend);
        const sha256_digest mac = key_object.mac(message, sizeof message);

        wsguard::hmac_sha256_key::stream stream = key_object.begin();
        stream.update(message, 40);
        stream.update(message + 40, sizeof message - 40);
        const sha256_digest streamed = stream.finish();

        const sha256_digest one_shot = wsguard::hmac_sha256(key, key_size, message, sizeof message);
        const sha256_digest hashed_key = wsguard::sha256(key, key_size);

        expect(public_equal(mac, streamed), "stream MAC equals key-object MAC");
        expect(public_equal(mac, one_shot), "one-shot MAC equals key-object MAC");
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
    return failures == 0 ? 0 : 1;
}
