// The Redis backend as a packaged consumer sees it: wsguard/redis.hpp found
// through the wsguard-redis module or the wsguard::redis target, hiredis
// linked through them. No server is needed: a store pointed at a loopback
// port nothing listens on must answer store_unavailable (fail closed), which
// takes a real hiredis connect attempt, so a missing -lhiredis fails the link.
#include <wsguard/redis.hpp>

#include <cstdio>

#include "expect.hpp"

int main() {
    consumer_checks expect;
    wsguard::redis_replay_store_options bad;
    bad.key_prefix = "no spaces";
    expect(!wsguard::redis_replay_store::create(bad), "an invalid key prefix is refused at create()");

    wsguard::redis_replay_store_options options;
    options.connection.port = 1;  // 127.0.0.1:1, closed: the connect is refused at once
    auto store = wsguard::redis_replay_store::create(options);
    expect(static_cast<bool>(store), "a valid configuration creates a store");
    if (store) {
        const wsguard::ticket_nonce nonce{};
        const auto now = std::chrono::system_clock::now();
        const auto issued_at = now - std::chrono::seconds(1), expires_at = now + std::chrono::seconds(30);
        expect(store->try_spend(nonce, issued_at, expires_at, now) == wsguard::reason::store_unavailable,
               "no Redis: the spend fails closed (store_unavailable)");
    }
    if (expect.failures == 0) std::printf("wsguard %s redis consumer: ok\n", WSGUARD_VERSION_STRING);
    return expect.failures == 0 ? 0 : 1;
}
