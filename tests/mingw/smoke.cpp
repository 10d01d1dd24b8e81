// Windows smoke test, built by .ci/jobs/47-mingw.sh with both MinGW-w64 thread
// models. <windows.h> and <bcrypt.h> come first on purpose: wsguard declares
// BCryptGenRandom itself (to keep <windows.h>'s min/max macros out of user
// code), and the two declarations must agree. Then the paths that differ on
// Windows run: random bytes from BCryptGenRandom (a link without bcrypt fails),
// the replay store's shard locks (a spin lock under the win32 thread model,
// which has no std::mutex) and the keyed limiter, through handshake_guard's
// components.
#ifndef NOMINMAX  // libstdc++ on MinGW may define it already
#define NOMINMAX 1
#endif
#include <windows.h>
#include <bcrypt.h>

#include <wsguard.hpp>

#include <cstdio>

int main() {
    int failures = 0;
    auto expect = [&failures](bool ok, const char* what) {
        std::printf("%s: %s\n", ok ? "ok  " : "FAIL", what);
        if (!ok) ++failures;
    };
    std::uint8_t a[32] = {}, b[32] = {};
    expect(wsguard::random_bytes(a, sizeof a) == wsguard::reason::ok, "random_bytes answers ok (BCryptGenRandom)");
    expect(wsguard::random_bytes(b, sizeof b) == wsguard::reason::ok && std::memcmp(a, b, sizeof a) != 0,
           "two draws of 32 bytes differ");

    auto store = wsguard::memory_replay_store::create(1000);
    expect(static_cast<bool>(store), "memory_replay_store::create");
    if (store) {
        const auto now = std::chrono::system_clock::now();
        wsguard::ticket_nonce nonce{};
        std::memcpy(nonce.data(), a, nonce.size());
        expect(store->try_spend(nonce, now + std::chrono::seconds(30), now) == wsguard::reason::ok, "a nonce is spent once");
        expect(store->try_spend(nonce, now + std::chrono::seconds(30), now) == wsguard::reason::ticket_replayed,
               "and refused the second time");
    }
    const wsguard::sha256_digest abc = wsguard::sha256("abc");
    expect(abc[0] == 0xba && abc[31] == 0xad, "sha256(\"abc\") (FIPS 180-4)");
    std::printf("wsguard %s on Windows (%s thread model): %s\n", WSGUARD_VERSION_STRING,
#if defined(_GLIBCXX_HAS_GTHREADS)
                "posix",
#else
                "win32",
#endif
                failures == 0 ? "ok" : "FAILED");
    return failures == 0 ? 0 : 1;
}
