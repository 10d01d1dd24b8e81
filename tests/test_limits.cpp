// Rate limits: token_bucket, keyed_limiter, connection_limiter, address_key.
// Time is always injected, so every expectation here is exact.
#include <wsguard.hpp>

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "catch.hpp"

using wsguard::address_key;
using wsguard::connection_limiter;
using wsguard::keyed_limiter;
using wsguard::reason;
using wsguard::token_bucket;
using std::chrono::milliseconds;
using std::chrono::nanoseconds;
using clock_point = std::chrono::steady_clock::time_point;

namespace {

constexpr std::int64_t second_ns = 1000000000;

// An arbitrary instant well inside the clock's range.
clock_point at_ns(std::int64_t ns) { return clock_point(nanoseconds(ns)) + std::chrono::hours(1000); }

// Deterministic, fast pseudo-random numbers for floods (splitmix64).
struct splitmix {
    std::uint64_t state;
    std::uint64_t next() {
        std::uint64_t z = (state += 0x9e3779b97f4a7c15ull);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        return z ^ (z >> 31);
    }
};

token_bucket make_bucket(wsguard::rate r, std::uint32_t burst) {
    auto created = token_bucket::create(r, burst);
    REQUIRE(created);
    return std::move(created).value();
}

int count_granted(token_bucket& bucket, clock_point now, int attempts) {
    int granted = 0;
    for (int i = 0; i < attempts; ++i) granted += bucket.try_acquire(now) ? 1 : 0;
    return granted;
}

address_key key_of(std::string_view text, wsguard::address_key_options options = {}) {
    const auto key = address_key::from_text(text, options);
    INFO(text);
    REQUIRE(key.has_value());
    return *key;
}

}  // namespace

// ---------------------------------------------------------------------------
// token_bucket
// ---------------------------------------------------------------------------

TEST_CASE("token_bucket refuses configurations that are mistakes", "[limits][token_bucket]") {
    struct bad {
        wsguard::rate r;
        std::uint32_t burst;
        const char* mentions;
    };
    const std::vector<bad> table = {
        {wsguard::rate::per_second(0), 10, "count must be at least 1"},
        {wsguard::rate::per_second(10), 0, "burst must be at least 1"},
        {wsguard::rate{1, nanoseconds(0)}, 1, "period must be positive"},
        {wsguard::rate{1, nanoseconds(-5)}, 1, "period must be positive"},
        {wsguard::rate::per_second(1000000001), 1, "over 1e9 per second"},
        {wsguard::rate{1, std::chrono::hours(24 * 365)}, 1000000, "100 years"},
        {wsguard::rate::per_second(1), 0xffffffffu, "100 years"},
    };
    for (const bad& b : table) {
        const auto created = token_bucket::create(b.r, b.burst);
        CAPTURE(b.mentions);
        CHECK_FALSE(created);
        CHECK(created.error().find(b.mentions) != std::string::npos);
        CHECK(created.error().find("token_bucket") == 0);
    }
    CHECK(token_bucket::create(wsguard::token_bucket_options{wsguard::rate::per_second(1000000000), 1}));
    CHECK(token_bucket::create(wsguard::rate{1, std::chrono::hours(24 * 365)}, 10));
    CHECK(token_bucket::create(wsguard::rate::per_hour(1), 3));
}

TEST_CASE("token_bucket passes exactly burst from idle, refuses the next, then one per interval", "[limits][token_bucket]") {
    token_bucket bucket = make_bucket(wsguard::rate::per_second(10), 5);
    const clock_point t0 = at_ns(0);
    for (int i = 0; i < 5; ++i) CHECK(bucket.try_acquire(t0).allowed());
    const wsguard::decision refused = bucket.try_acquire(t0);
    CHECK(refused.reason == reason::rate_limited);
    CHECK(refused.retry_after == milliseconds(100));
    CHECK(refused.http_status() == 429);

    CHECK_FALSE(bucket.try_acquire(t0 + nanoseconds(100 * 1000000 - 1)));
    for (int step = 1; step <= 20; ++step) {
        const clock_point t = t0 + milliseconds(100 * step);
        CHECK(count_granted(bucket, t, 10) == 1);
    }
    // Idle for a long time: the bucket holds burst again, never more.
    CHECK(count_granted(bucket, t0 + std::chrono::hours(5), 100) == 5);
}

TEST_CASE("token_bucket rounds retry_after up to whole milliseconds and never to zero", "[limits][token_bucket]") {
    SECTION("rate 3/s: the interval is 333,333,334 ns, so the wait is 334 ms") {
        token_bucket bucket = make_bucket(wsguard::rate::per_second(3), 1);
        const clock_point t0 = at_ns(0);
        CHECK(bucket.interval() == nanoseconds(333333334));
        REQUIRE(bucket.try_acquire(t0));
        CHECK(bucket.try_acquire(t0).retry_after == milliseconds(334));
        const wsguard::decision one_ns_short = bucket.try_acquire(t0 + nanoseconds(333333333));
        CHECK(one_ns_short.reason == reason::rate_limited);
        CHECK(one_ns_short.retry_after == milliseconds(1));
        CHECK(bucket.try_acquire(t0 + nanoseconds(333333334)));
    }
    SECTION("rate 1e9/s: a wait of 1 ns is reported as 1 ms") {
        token_bucket bucket = make_bucket(wsguard::rate::per_second(1000000000), 1);
        const clock_point t0 = at_ns(0);
        REQUIRE(bucket.try_acquire(t0));
        CHECK(bucket.try_acquire(t0).retry_after == milliseconds(1));
        CHECK(bucket.try_acquire(t0 + nanoseconds(1)));
    }
    SECTION("retry_after_seconds rounds up for the Retry-After header") {
        token_bucket bucket = make_bucket(wsguard::rate{2, std::chrono::seconds(3)}, 1);
        REQUIRE(bucket.try_acquire(at_ns(0)));
        const wsguard::decision refused = bucket.try_acquire(at_ns(0));
        CHECK(refused.retry_after == milliseconds(1500));
        CHECK(refused.retry_after_seconds() == 2);
    }
}

TEST_CASE("token_bucket never grants extra when the clock goes backwards", "[limits][token_bucket]") {
    token_bucket bucket = make_bucket(wsguard::rate::per_second(10), 5);
    const clock_point t1 = at_ns(10 * second_ns);
    CHECK(count_granted(bucket, t1, 10) == 5);
    CHECK(count_granted(bucket, t1 - std::chrono::seconds(10), 10) == 0);
    CHECK(count_granted(bucket, t1 - std::chrono::hours(1), 10) == 0);
    CHECK(bucket.try_acquire(t1 - milliseconds(1)).retry_after == milliseconds(101));
    CHECK(count_granted(bucket, t1 + milliseconds(100), 10) == 1);

    SECTION("property: grants never exceed burst plus elapsed time over the interval") {
        token_bucket fresh = make_bucket(wsguard::rate::per_second(1000), 20);
        splitmix rng{42};
        std::int64_t now = 0;
        std::int64_t earliest = 0;
        std::int64_t latest = 0;
        std::int64_t granted = 0;
        for (int i = 0; i < 200000; ++i) {
            // Mostly forward, sometimes far backwards.
            const std::int64_t jump = static_cast<std::int64_t>(rng.next() % 2000000) - (rng.next() % 8 == 0 ? 50000000 : 600000);
            now += jump;
            if (now > latest) latest = now;
            if (now < earliest) earliest = now;
            granted += fresh.try_acquire(at_ns(now), 1 + static_cast<std::uint32_t>(rng.next() % 3)) ? 1 : 0;
            const std::int64_t bound = 20 + (latest - earliest) / 1000000;  // burst + elapsed ms at 1000/s
            if (granted > bound) FAIL("granted " << granted << " > " << bound);
        }
        CHECK(granted > 0);
    }
}

TEST_CASE("token_bucket saturates at extreme rates, bursts and clock values", "[limits][token_bucket]") {
    SECTION("rate 1e9/s with burst 1e6") {
        token_bucket bucket = make_bucket(wsguard::rate::per_second(1000000000), 1000000);
        CHECK(count_granted(bucket, at_ns(0), 1000001) == 1000000);
        CHECK(bucket.try_acquire(at_ns(0)).retry_after == milliseconds(1));
        CHECK(count_granted(bucket, at_ns(1000), 2000) == 1000);
    }
    SECTION("rate 1 per year") {
        token_bucket bucket = make_bucket(wsguard::rate{1, std::chrono::hours(24 * 365)}, 2);
        CHECK(count_granted(bucket, at_ns(0), 5) == 2);
        CHECK(bucket.try_acquire(at_ns(0)).retry_after == milliseconds(std::int64_t{365} * 24 * 3600 * 1000));
        CHECK(count_granted(bucket, at_ns(0) + std::chrono::hours(24 * 365), 5) == 1);
    }
    SECTION("now at the largest time_point: at most burst, then fails closed") {
        token_bucket bucket = make_bucket(wsguard::rate::per_second(1000), 10);
        CHECK(count_granted(bucket, clock_point::max(), 100) <= 10);
        CHECK(count_granted(bucket, clock_point::max(), 100) == 0);
        CHECK(count_granted(bucket, clock_point::max() - std::chrono::seconds(1), 100) == 0);
    }
    SECTION("now at the smallest time_point") {
        token_bucket bucket = make_bucket(wsguard::rate::per_second(1000), 10);
        CHECK(count_granted(bucket, clock_point::min(), 100) == 10);
        CHECK(count_granted(bucket, clock_point::min() + milliseconds(1), 100) == 1);
        CHECK(count_granted(bucket, clock_point::min(), 100) == 0);
    }
    SECTION("jumping from min to max and back") {
        token_bucket bucket = make_bucket(wsguard::rate::per_second(1), 3);
        CHECK(count_granted(bucket, clock_point::min(), 10) == 3);
        const int at_max = count_granted(bucket, clock_point::max(), 10);
        CHECK(at_max <= 3);
        CHECK(count_granted(bucket, clock_point::min(), 10) == 0);
        CHECK(count_granted(bucket, at_ns(0), 10) == 0);
    }
}

TEST_CASE("token_bucket charges n tokens at once and refuses n over burst forever", "[limits][token_bucket]") {
    token_bucket bucket = make_bucket(wsguard::rate::per_second(10), 10);
    const clock_point t0 = at_ns(0);
    CHECK(bucket.try_acquire(t0, 4));
    CHECK(bucket.try_acquire(t0, 4));
    const wsguard::decision refused = bucket.try_acquire(t0, 4);
    CHECK(refused.reason == reason::rate_limited);
    CHECK(refused.retry_after == milliseconds(200));  // two more tokens needed
    CHECK(bucket.try_acquire(t0, 2));                 // the refusal charged nothing
    CHECK_FALSE(bucket.try_acquire(t0, 1));
    CHECK(bucket.try_acquire(t0 + milliseconds(300), 3));
    CHECK(bucket.try_acquire(t0, 0));  // asking for nothing always passes

    token_bucket idle = make_bucket(wsguard::rate::per_second(10), 10);
    CHECK(idle.try_acquire(t0, 10));
    token_bucket idle2 = make_bucket(wsguard::rate::per_second(10), 10);
    for (std::uint32_t n : {11u, 1000u, 0xffffffffu}) {
        const wsguard::decision never = idle2.try_acquire(t0 + std::chrono::hours(24), n);
        CHECK(never.reason == reason::rate_limited);
        CHECK(never.retry_after == milliseconds(0));  // waiting would not help
    }
    CHECK(idle2.try_acquire(t0, 10));  // the over-burst requests charged nothing
}

TEST_CASE("token_bucket keeps its state when moved at construction time", "[limits][token_bucket]") {
    token_bucket bucket = make_bucket(wsguard::rate::per_second(1), 2);
    CHECK(bucket.try_acquire(at_ns(0)));
    token_bucket moved(std::move(bucket));
    CHECK(count_granted(moved, at_ns(0), 5) == 1);
    CHECK(moved.burst() == 2);
    CHECK(moved.interval() == std::chrono::seconds(1));
}

TEST_CASE("token_bucket grants exactly burst in total to two threads at a fixed time", "[limits][token_bucket][concurrency]") {
    token_bucket bucket = make_bucket(wsguard::rate::per_second(1), 20000);
    const clock_point t0 = at_ns(0);
    std::atomic<int> granted{0};
    auto worker = [&] {
        int mine = 0;
        for (int i = 0; i < 50000; ++i) mine += bucket.try_acquire(t0) ? 1 : 0;
        granted += mine;
    };
    std::thread a(worker);
    std::thread b(worker);
    a.join();
    b.join();
    CHECK(granted.load() == 20000);
    CHECK_FALSE(bucket.try_acquire(t0));
}

// ---------------------------------------------------------------------------
// SipHash (the seeded hash behind the keyed tables)
// ---------------------------------------------------------------------------

TEST_CASE("the limiter hash is SipHash: reference vectors of SipHash-2-4", "[limits][siphash]") {
    // Key 00 01 .. 0f, message 00 01 .. (len-1): vectors from the SipHash paper
    // and its reference implementation.
    const std::uint64_t k0 = 0x0706050403020100ull;
    const std::uint64_t k1 = 0x0f0e0d0c0b0a0908ull;
    std::uint8_t message[15];
    for (int i = 0; i < 15; ++i) message[i] = static_cast<std::uint8_t>(i);
    CHECK(wsguard::detail::limits_siphash<2, 4>(k0, k1, message, 0).lo == 0x726fdb47dd0e0e31ull);
    CHECK(wsguard::detail::limits_siphash<2, 4>(k0, k1, message, 15).lo == 0xa129ca6149be45e5ull);
    // SipHash-1-3 differs from 2-4 and depends on every key bit.
    CHECK(wsguard::detail::limits_siphash<1, 3>(k0, k1, message, 15).lo != wsguard::detail::limits_siphash<2, 4>(k0, k1, message, 15).lo);
    CHECK(wsguard::detail::limits_siphash<1, 3>(k0, k1 ^ 1, message, 15).lo != wsguard::detail::limits_siphash<1, 3>(k0, k1, message, 15).lo);
}

TEST_CASE("the limiter's 128-bit hash is wide SipHash: reference vectors of SipHash-2-4-128", "[limits][siphash]") {
    // vectors_sip128 of the reference implementation (key 00 01 .. 0f, message
    // 00 01 .. (len-1)), as two little-endian 64-bit halves.
    const std::uint64_t k0 = 0x0706050403020100ull;
    const std::uint64_t k1 = 0x0f0e0d0c0b0a0908ull;
    std::uint8_t message[8];
    for (int i = 0; i < 8; ++i) message[i] = static_cast<std::uint8_t>(i);
    struct vector {
        std::size_t length;
        std::uint64_t lo, hi;
    };
    const vector vectors[] = {
        {0, 0xe6a825ba047f81a3ull, 0x930255c71472f66dull},
        {1, 0x44af996bd8c187daull, 0x45fc229b11597634ull},
        {7, 0x53c1dbd8beebf1a1ull, 0x3982f01fa64ab8c0ull},
    };
    for (const vector& v : vectors) {
        CAPTURE(v.length);
        const auto out = wsguard::detail::limits_siphash<2, 4>(k0, k1, message, v.length, true);
        CHECK(out.lo == v.lo);
        CHECK(out.hi == v.hi);
    }
    // The 1-3 variant the tables use: the two halves differ and depend on the key.
    const auto wide = wsguard::detail::limits_siphash13_128(k0, k1, message, 8);
    CHECK(wide.lo != wide.hi);
    CHECK(wsguard::detail::limits_siphash13_128(k0 ^ 1, k1, message, 8).hi != wide.hi);
}

// ---------------------------------------------------------------------------
// keyed_limiter
// ---------------------------------------------------------------------------

TEST_CASE("keyed_limiter refuses bad configurations with a readable message", "[limits][keyed_limiter]") {
    const auto zero_capacity = keyed_limiter<address_key>::create(wsguard::rate::per_second(10), 5, 0);
    CHECK_FALSE(zero_capacity);
    CHECK(zero_capacity.error().find("capacity") != std::string::npos);
    CHECK_FALSE(keyed_limiter<address_key>::create(wsguard::rate::per_second(10), 5, std::size_t{1} << 30));
    CHECK_FALSE(keyed_limiter<address_key>::create(wsguard::rate::per_second(0), 5, 100));
    CHECK_FALSE(keyed_limiter<address_key>::create(wsguard::rate::per_second(10), 0, 100));
    const auto ok = keyed_limiter<address_key>::create(wsguard::rate::per_second(10), 5, 1000);
    REQUIRE(ok);
    CHECK(ok->capacity() >= 1000);
    CHECK(ok->capacity() < 1000 + 64);
    CHECK(ok->memory_bytes() >= ok->capacity() * 16);  // a 64-bit tag and a 64-bit state per entry
}

TEST_CASE("keyed_limiter keeps one bucket per key with exact burst semantics", "[limits][keyed_limiter]") {
    auto created = keyed_limiter<address_key>::create(wsguard::rate::per_second(2), 3, 1024);
    REQUIRE(created);
    auto& limiter = *created;
    const address_key alice = key_of("192.0.2.1");
    const address_key bob = key_of("2001:db8::1");
    const clock_point t0 = at_ns(0);
    for (int i = 0; i < 3; ++i) CHECK(limiter.try_acquire(alice, t0));
    const wsguard::decision refused = limiter.try_acquire(alice, t0);
    CHECK(refused.reason == reason::rate_limited);
    CHECK(refused.retry_after == milliseconds(500));
    for (int i = 0; i < 3; ++i) CHECK(limiter.try_acquire(bob, t0));  // bob has his own bucket
    CHECK_FALSE(limiter.try_acquire(bob, t0));
    CHECK(limiter.try_acquire(alice, t0 + milliseconds(500)));
    CHECK_FALSE(limiter.try_acquire(alice, t0 + milliseconds(500)));
    CHECK_FALSE(limiter.try_acquire(alice, t0, 4));
    CHECK(limiter.try_acquire(alice, t0, 4).retry_after == milliseconds(0));
    // Same /64, same bucket.
    CHECK_FALSE(limiter.try_acquire(key_of("2001:db8::ffff:1"), t0));
}

TEST_CASE("keyed_limiter accepts string keys through a seeded 64-bit tag", "[limits][keyed_limiter]") {
    auto created = keyed_limiter<std::string_view>::create(wsguard::rate::per_second(1), 2, 256);
    REQUIRE(created);
    const clock_point t0 = at_ns(0);
    std::string user = "user-42";
    CHECK(created->try_acquire(user, t0));
    CHECK(created->try_acquire(std::string_view("user-42"), t0));
    CHECK_FALSE(created->try_acquire(user, t0));
    CHECK(created->try_acquire("user-43", t0));
    CHECK(created->try_acquire("", t0));
    CHECK(created->try_acquire(std::string(1000, 'x'), t0));

    auto strings = keyed_limiter<std::string>::create(wsguard::rate::per_second(1), 1, 16);
    REQUIRE(strings);
    CHECK(strings->try_acquire(std::string("a"), t0));
    CHECK_FALSE(strings->try_acquire(std::string("a"), t0));
}

TEST_CASE("keyed_limiter evicts the stalest bucket of a full group, so exhausted keys go last", "[limits][keyed_limiter]") {
    // Capacity 4 is one group of 4 entries: every key competes for it.
    auto created = keyed_limiter<std::uint64_t>::create(wsguard::rate::per_second(1), 5, 4);
    REQUIRE(created);
    auto& limiter = *created;
    REQUIRE(limiter.capacity() == 4);
    const clock_point t0 = at_ns(0);
    struct row {
        std::uint64_t key;
        int taken;  // tokens spent at t0: the more, the later the bucket is full again
    };
    const std::vector<row> table = {{1, 1}, {2, 5}, {3, 3}, {4, 2}};
    for (const row& r : table) {
        for (int i = 0; i < r.taken; ++i) REQUIRE(limiter.try_acquire(r.key, t0));
    }
    // A fifth key takes the entry of key 1, the closest to full again.
    CHECK(limiter.try_acquire(std::uint64_t{5}, t0));
    // Key 1 starts over with a full burst (its state was evicted) ...
    for (int i = 0; i < 5; ++i) CHECK(limiter.try_acquire(std::uint64_t{1}, t0));
    // ... and the exhausted and half-spent keys kept theirs.
    CHECK_FALSE(limiter.try_acquire(std::uint64_t{2}, t0));
    CHECK(limiter.try_acquire(std::uint64_t{3}, t0));
    CHECK(limiter.try_acquire(std::uint64_t{3}, t0));
    CHECK_FALSE(limiter.try_acquire(std::uint64_t{3}, t0));
}

TEST_CASE("keyed_limiter survives a flood of ten million random keys at a fixed memory cap", "[limits][keyed_limiter][flood]") {
    // 1 request per second, burst 5: the hot keys exhaust their burst, then a
    // flood of fresh keys (each allowed once) runs through a 64k-entry table.
    auto created = keyed_limiter<address_key>::create(wsguard::rate::per_second(1), 5, 65536);
    REQUIRE(created);
    auto& limiter = *created;
    const std::size_t memory_before = limiter.memory_bytes();
    const std::size_t capacity = limiter.capacity();
    CHECK(memory_before < 65536 * 16 + 64 * 1024);  // 16 bytes per entry, plus the shard locks

    std::vector<address_key> hot;
    for (int i = 0; i < 100; ++i) {
        const std::uint8_t v4[4] = {10, 0, static_cast<std::uint8_t>(i), 1};
        hot.push_back(*address_key::from_bytes(v4, 4));
    }
    const clock_point t0 = at_ns(0);
    for (const address_key& k : hot) {
        for (int i = 0; i < 5; ++i) REQUIRE(limiter.try_acquire(k, t0));
        REQUIRE_FALSE(limiter.try_acquire(k, t0));
    }

    splitmix rng{7};
    std::int64_t flood_allowed = 0;
    std::int64_t hot_allowed = 0;
    constexpr int flood = 10000000;
    for (int i = 0; i < flood; ++i) {
        std::uint8_t v6[16] = {0x20, 0x01};
        const std::uint64_t r = rng.next();
        for (int b = 0; b < 6; ++b) v6[2 + b] = static_cast<std::uint8_t>(r >> (8 * b));
        const clock_point now = t0 + nanoseconds(i * 10);  // the flood spans 100 ms
        flood_allowed += limiter.try_acquire(*address_key::from_bytes(v6, 16), now) ? 1 : 0;
        if (i % 10000 == 0) {
            for (const address_key& k : hot) hot_allowed += limiter.try_acquire(k, now) ? 1 : 0;
        }
    }
    CHECK(hot_allowed == 0);  // every hot key stayed exhausted during the flood
    CHECK(flood_allowed > flood * 99LL / 100);
    CHECK(limiter.memory_bytes() == memory_before);
    CHECK(limiter.capacity() == capacity);

    // After one interval each hot key has exactly one token: its state was kept.
    const clock_point later = t0 + std::chrono::seconds(1);
    for (const address_key& k : hot) {
        CHECK(limiter.try_acquire(k, later));
        CHECK_FALSE(limiter.try_acquire(k, later));
    }
}

TEST_CASE("keyed_limiter grants exactly burst per key to two threads at a fixed time", "[limits][keyed_limiter][concurrency]") {
    auto created = keyed_limiter<std::uint64_t>::create(wsguard::rate::per_second(1), 500, 1024);
    REQUIRE(created);
    auto& limiter = *created;
    const clock_point t0 = at_ns(0);
    std::atomic<int> granted{0};
    auto worker = [&](std::uint64_t salt) {
        int mine = 0;
        for (int i = 0; i < 20000; ++i) {
            const std::uint64_t key = static_cast<std::uint64_t>(i % 10) * 0x1234567ull + (i % 20 < 10 ? 0 : salt);
            mine += limiter.try_acquire(key, t0) ? 1 : 0;
        }
        granted += mine;
    };
    // Ten keys both threads share, and ten keys each thread has alone.
    std::thread a(worker, 1);
    std::thread b(worker, 2);
    a.join();
    b.join();
    CHECK(granted.load() == 30 * 500);
}

// ---------------------------------------------------------------------------
// connection_limiter
// ---------------------------------------------------------------------------

TEST_CASE("connection_limiter allows N per key and releases on destruction", "[limits][connection_limiter]") {
    CHECK_FALSE(connection_limiter<address_key>::create({0, 100}));
    CHECK_FALSE(connection_limiter<address_key>::create({1, 0}));
    CHECK_FALSE(connection_limiter<address_key>::create({1, 100, 0}));
    auto created = connection_limiter<address_key>::create({2, 100});
    REQUIRE(created);
    auto& limiter = *created;
    const address_key peer = key_of("198.51.100.7");
    {
        auto first = limiter.try_acquire(peer);
        auto second = limiter.try_acquire(peer);
        CHECK(first);
        CHECK(second);
        CHECK(first.decision().allowed());
        auto third = limiter.try_acquire(peer);
        CHECK_FALSE(third);
        CHECK(third.decision().reason == reason::too_many_connections);
        CHECK(third.decision().retry_after == milliseconds(1000));
        CHECK(third.decision().http_status() == 429);
        CHECK(limiter.connections(peer) == 2);
        CHECK(limiter.try_acquire(key_of("198.51.100.8")));  // another key is unaffected
        CHECK(limiter.total() == 2);

        first.release();
        first.release();  // idempotent
        CHECK_FALSE(first);
        CHECK(first.decision().allowed());  // still says how the acquisition went
        CHECK(limiter.connections(peer) == 1);
        auto again = limiter.try_acquire(peer);
        CHECK(again);

        auto moved = std::move(again);
        CHECK(moved);
        CHECK_FALSE(again);  // NOLINT: checking the moved-from state on purpose
        CHECK(limiter.connections(peer) == 2);
        moved = limiter.try_acquire(key_of("198.51.100.9"));  // assignment releases the old one
        CHECK(limiter.connections(peer) == 1);
    }
    CHECK(limiter.connections(peer) == 0);
    CHECK(limiter.total() == 0);

    connection_limiter<address_key>::permit nothing;
    CHECK_FALSE(nothing);
    CHECK(nothing.decision().reason == reason::too_many_connections);
    nothing.release();  // harmless
}

TEST_CASE("connection_limiter enforces a global cap across keys", "[limits][connection_limiter]") {
    auto created = connection_limiter<std::uint64_t>::create({5, 100, 3});
    REQUIRE(created);
    auto a = created->try_acquire(1);
    auto b = created->try_acquire(2);
    auto c = created->try_acquire(3);
    auto d = created->try_acquire(4);
    CHECK((a && b && c));
    CHECK_FALSE(d);
    CHECK(d.decision().reason == reason::too_many_connections);
    CHECK(created->connections(4) == 0);
    b.release();
    CHECK(created->try_acquire(4));
}

// Distinct /64 keys: splitmix64's output is a bijection of its counter.
address_key distinct_ipv6_key(splitmix& rng) {
    std::uint8_t bytes[16] = {0x20, 0x01};
    const std::uint64_t bits = rng.next();
    for (int i = 0; i < 8; ++i) bytes[i] = static_cast<std::uint8_t>(bits >> (8 * i));
    const auto key = address_key::from_bytes(bytes, 16);
    REQUIRE(key.has_value());
    return *key;
}

TEST_CASE("connection_limiter holds exactly capacity distinct keys, then refuses the next one", "[limits][connection_limiter]") {
    struct row {
        std::size_t capacity;
        std::uint64_t seed;
    };
    const std::vector<row> table = {
        {64, 1}, {64, 2}, {64, 3}, {100, 4}, {1000, 5}, {4096, 6}, {65536, 7}, {65536, 8}, {1000003, 9},
    };
    for (const row& r : table) {
        INFO("capacity " << r.capacity << ", seed " << r.seed);
        auto created = connection_limiter<address_key>::create({1, r.capacity});
        REQUIRE(created);
        auto& limiter = *created;
        CHECK(limiter.capacity() == r.capacity);
        const std::size_t memory = limiter.memory_bytes();
        splitmix rng{r.seed};
        std::vector<connection_limiter<address_key>::permit> held;
        held.reserve(r.capacity);
        std::size_t refusals = 0;
        for (std::size_t i = 0; i < r.capacity; ++i) {
            auto permit = limiter.try_acquire(distinct_ipv6_key(rng));
            if (!permit) ++refusals;
            held.push_back(std::move(permit));
        }
        CHECK(refusals == 0);
        CHECK(limiter.live_keys() == r.capacity);
        CHECK(limiter.total() == r.capacity);
        const address_key next = distinct_ipv6_key(rng);
        auto refused = limiter.try_acquire(next);
        CHECK_FALSE(refused);
        CHECK(refused.decision().reason == reason::too_many_connections);
        // Release one, and the next key fits; then full again.
        held[r.capacity / 2].release();
        CHECK(limiter.try_acquire(next));
        auto again = limiter.try_acquire(next);
        CHECK(again);
        CHECK_FALSE(limiter.try_acquire(distinct_ipv6_key(rng)));
        CHECK(limiter.memory_bytes() == memory);  // fixed from construction on
        again.release();
        held.clear();
        CHECK(limiter.total() == 0);
        CHECK(limiter.live_keys() == 0);
    }
}

TEST_CASE("connection_limiter never evicts a live key and finds every key again after churn", "[limits][connection_limiter]") {
    // Keys come and go at full load: backward-shift deletion must leave every
    // remaining key reachable, and its count intact.
    constexpr std::size_t capacity = 512;
    auto created = connection_limiter<std::uint64_t>::create({3, capacity});
    REQUIRE(created);
    auto& limiter = *created;
    splitmix rng{42};
    std::vector<std::uint64_t> keys;
    std::vector<std::vector<connection_limiter<std::uint64_t>::permit>> held;
    for (std::size_t i = 0; i < capacity; ++i) {
        keys.push_back(rng.next());
        held.emplace_back();
        held.back().push_back(limiter.try_acquire(keys.back()));
        REQUIRE(held.back().back());
    }
    std::size_t refusals = 0;
    for (int round = 0; round < 20000; ++round) {
        const std::size_t i = rng.next() % capacity;
        if (rng.next() % 2 == 0 && !held[i].empty()) {
            held[i].pop_back();
            if (held[i].empty()) {  // the key is gone: a new one takes its place
                keys[i] = rng.next();
            }
        } else {
            auto permit = limiter.try_acquire(keys[i]);
            if (permit) {
                held[i].push_back(std::move(permit));
            } else {
                ++refusals;
                CHECK(held[i].size() == 3);  // refused only at the per-key cap
            }
        }
    }
    std::size_t live = 0, total = 0;
    for (std::size_t i = 0; i < capacity; ++i) {
        if (!held[i].empty()) ++live;
        total += held[i].size();
        REQUIRE(limiter.connections(keys[i]) == held[i].size());
    }
    CHECK(limiter.live_keys() == live);
    CHECK(limiter.total() == total);
    held.clear();
    CHECK(limiter.total() == 0);
    CHECK(limiter.live_keys() == 0);
    for (std::uint64_t key : keys) CHECK(limiter.connections(key) == 0);
    CHECK(refusals > 0);  // the per-key cap was reached along the way
}

TEST_CASE("connection_limiter agrees with a reference model through random churn at every size", "[limits][connection_limiter]") {
    for (std::size_t capacity : {std::size_t{1}, std::size_t{2}, std::size_t{3}, std::size_t{7}, std::size_t{64}, std::size_t{500}}) {
        INFO("capacity " << capacity);
        auto created = connection_limiter<std::uint64_t>::create({2, capacity});
        REQUIRE(created);
        auto& limiter = *created;
        std::map<std::uint64_t, std::vector<connection_limiter<std::uint64_t>::permit>> held;
        std::size_t live = 0;  // keys with at least one permit
        splitmix rng{capacity};
        for (int i = 0; i < 20000; ++i) {
            const std::uint64_t key = rng.next() % (capacity * 3);
            std::vector<connection_limiter<std::uint64_t>::permit>& mine = held[key];
            if (rng.next() % 2 == 0) {
                const bool expected = mine.empty() ? live < capacity : mine.size() < 2;
                auto permit = limiter.try_acquire(key);
                REQUIRE(static_cast<bool>(permit) == expected);
                if (permit) {
                    live += mine.empty() ? 1 : 0;
                    mine.push_back(std::move(permit));
                }
            } else if (!mine.empty()) {
                mine.pop_back();
                live -= mine.empty() ? 1 : 0;
            }
            if (i % 500 == 0) {
                for (const auto& entry : held) REQUIRE(limiter.connections(entry.first) == entry.second.size());
                REQUIRE(limiter.live_keys() == live);
            }
        }
    }
}

TEST_CASE("connection_limiter with string keys holds exactly capacity subjects", "[limits][connection_limiter]") {
    auto created = connection_limiter<std::string_view>::create({1, 300});
    REQUIRE(created);
    std::vector<connection_limiter<std::string_view>::permit> held;
    for (int i = 0; i < 300; ++i) {
        const std::string subject = "user-" + std::to_string(i);
        held.push_back(created->try_acquire(subject));
        REQUIRE(held.back());
        CHECK_FALSE(created->try_acquire(subject));  // per-key cap 1
    }
    CHECK_FALSE(created->try_acquire(std::string_view("user-300")));
    held.front().release();
    CHECK(created->try_acquire(std::string_view("user-300")));
}

TEST_CASE("connection_limiter permits survive moving the limiter", "[limits][connection_limiter]") {
    auto created = connection_limiter<std::uint64_t>::create({1, 32});
    REQUIRE(created);
    auto permit = created->try_acquire(7);
    connection_limiter<std::uint64_t> limiter = std::move(created).value();
    CHECK_FALSE(limiter.try_acquire(7));
    permit.release();
    CHECK(limiter.try_acquire(7));
    CHECK(limiter.total() == 0);
}

TEST_CASE("connection_limiter never exceeds N per key with two threads and returns to zero", "[limits][connection_limiter][concurrency]") {
    constexpr std::uint32_t max_per_key = 3;
    auto created = connection_limiter<std::uint64_t>::create({max_per_key, 64, 10});
    REQUIRE(created);
    auto& limiter = *created;
    std::array<std::atomic<int>, 4> live{};
    std::atomic<int> live_total{0};
    std::atomic<bool> over_limit{false};
    auto worker = [&](std::uint64_t seed) {
        splitmix rng{seed};
        std::vector<connection_limiter<std::uint64_t>::permit> held;
        std::vector<std::uint64_t> held_keys;
        for (int i = 0; i < 20000; ++i) {
            const std::uint64_t key = rng.next() % live.size();
            auto permit = limiter.try_acquire(key);
            if (permit) {
                if (++live[key] > static_cast<int>(max_per_key)) over_limit = true;
                if (++live_total > 10) over_limit = true;
                held.push_back(std::move(permit));
                held_keys.push_back(key);
            }
            if (!held.empty() && (rng.next() % 2 == 0 || held.size() > 4)) {
                const std::size_t victim = rng.next() % held.size();
                --live[held_keys[victim]];
                --live_total;
                held[victim].release();
                held.erase(held.begin() + static_cast<std::ptrdiff_t>(victim));
                held_keys.erase(held_keys.begin() + static_cast<std::ptrdiff_t>(victim));
            }
        }
        for (std::size_t k = 0; k < held.size(); ++k) {
            --live[held_keys[k]];
            --live_total;
            held[k].release();
        }
    };
    std::thread a(worker, 1);
    std::thread b(worker, 2);
    a.join();
    b.join();
    CHECK_FALSE(over_limit.load());
    CHECK(limiter.total() == 0);
    for (std::uint64_t key = 0; key < live.size(); ++key) CHECK(limiter.connections(key) == 0);
}

TEST_CASE("connection_limiter grants exactly capacity distinct keys to two threads racing for them", "[limits][connection_limiter][concurrency]") {
    constexpr std::size_t capacity = 4096;
    auto created = connection_limiter<std::uint64_t>::create({1, capacity});
    REQUIRE(created);
    auto& limiter = *created;
    std::vector<connection_limiter<std::uint64_t>::permit> held_a, held_b;
    // Each thread offers capacity keys of its own: together twice what fits.
    auto worker = [&](std::uint64_t base, std::vector<connection_limiter<std::uint64_t>::permit>& held) {
        for (std::uint64_t i = 0; i < capacity; ++i) {
            auto permit = limiter.try_acquire(base + i);
            if (permit) held.push_back(std::move(permit));
        }
    };
    std::thread a(worker, std::uint64_t{1} << 40, std::ref(held_a));
    std::thread b(worker, std::uint64_t{2} << 40, std::ref(held_b));
    a.join();
    b.join();
    CHECK(held_a.size() + held_b.size() == capacity);
    CHECK(limiter.live_keys() == capacity);
    // Release everything from two threads at once; the table empties.
    std::thread c([&] { held_a.clear(); });
    std::thread d([&] { held_b.clear(); });
    c.join();
    d.join();
    CHECK(limiter.total() == 0);
    CHECK(limiter.live_keys() == 0);
    CHECK(limiter.try_acquire(std::uint64_t{7}));
}

// ---------------------------------------------------------------------------
// address_key
// ---------------------------------------------------------------------------

TEST_CASE("address_key parses every textual form of IPv4 and IPv6", "[limits][address_key]") {
    struct row {
        const char* text;
        const char* same_as;  // canonical spelling of the same key
        int family;
    };
    const std::vector<row> table = {
        {"192.0.2.1", "192.0.2.1", 4},
        {"0.0.0.0", "0.0.0.0", 4},
        {"255.255.255.255", "255.255.255.255", 4},
        {"::1", "0:0:0:0:0:0:0:1", 6},
        {"::", "0:0:0:0:0:0:0:0", 6},
        {"2001:db8::1", "2001:0db8:0000:0000:0000:0000:0000:0001", 6},
        {"2001:DB8::1", "2001:db8::1", 6},
        {"1::", "1:0:0:0:0:0:0:0", 6},
        {"1:2:3:4:5:6:7::", "1:2:3:4:5:6:7:0", 6},
        {"::2:3:4:5:6:7:8", "0:2:3:4:5:6:7:8", 6},
        {"1:2:3:4:5:6:1.2.3.4", "1:2:3:4:5:6:102:304", 6},
        {"::1.2.3.4", "::102:304", 6},  // IPv4-compatible (deprecated) stays IPv6
        {"[::1]", "::1", 6},
        {"[2001:db8::1]", "2001:db8::1", 6},
        {"fe80::1%eth0", "fe80::1", 6},
        {"fe80::1%25", "fe80::1", 6},
        {"[fe80::1%en0]", "fe80::1", 6},
        // IPv4-mapped IPv6 in every spelling is the IPv4 address.
        {"::ffff:1.2.3.4", "1.2.3.4", 4},
        {"::FFFF:127.0.0.1", "127.0.0.1", 4},
        {"::ffff:7f00:1", "127.0.0.1", 4},
        {"0000:0000:0000:0000:0000:ffff:7f00:0001", "127.0.0.1", 4},
        {"0:0:0:0:0:ffff:7f00:1", "127.0.0.1", 4},
        {"[::ffff:192.0.2.1]", "192.0.2.1", 4},
    };
    for (const row& r : table) {
        CAPTURE(r.text);
        const auto parsed = address_key::from_text(r.text);
        REQUIRE(parsed.has_value());
        CHECK(parsed->family() == r.family);
        CHECK(parsed->is_ipv4() == (r.family == 4));
        CHECK(*parsed == key_of(r.same_as));
    }
}

TEST_CASE("address_key refuses malformed addresses", "[limits][address_key]") {
    const std::vector<std::string> malformed = {
        "", "1.2.3", "1.2.3.4.5", "01.2.3.4", "1.02.3.4", "256.1.1.1", "1.2.3.256", "1.2.3.-1",
        "1..2.3", "1.2.3.", ".1.2.3", " 1.2.3.4", "1.2.3.4 ", "1.2.3.4:80", "1.2.3.4%eth0", "0x1.2.3.4",
        "1234", "::ffff::1", "1:2:3:4:5:6:7:8:9", "1:2:3:4:5:6:7:8::", "1:2:3:4:5:6:7", ":::", "1:", ":1",
        "1::2::3", "12345::", "g::1", "1:2:3:4:5:6:7:1.2.3.4", "::1.2.3", "::1.2.3.4:5", "[::1", "::1]",
        "[]", "[1.2.3.4]", "fe80::1%", "fe80::1%eth 0", "fe80::1%eth0%1", "::1/64", "localhost",
        std::string("1.2.3.4\0", 8), std::string(1 << 20, '1'), std::string(1 << 20, ':'),
    };
    for (const std::string& text : malformed) {
        CAPTURE(text.substr(0, 40));
        CHECK_FALSE(address_key::from_text(text).has_value());
    }
}

TEST_CASE("address_key reads endpoint text with a port", "[limits][address_key]") {
    CHECK(*address_key::from_endpoint_text("192.0.2.1:443") == key_of("192.0.2.1"));
    CHECK(*address_key::from_endpoint_text("[2001:db8::1]:8080") == key_of("2001:db8::1"));
    CHECK(*address_key::from_endpoint_text("[::ffff:1.2.3.4]:1") == key_of("1.2.3.4"));
    CHECK(*address_key::from_endpoint_text("[::1]") == key_of("::1"));
    CHECK(*address_key::from_endpoint_text("::1") == key_of("::1"));
    CHECK(*address_key::from_endpoint_text("192.0.2.1") == key_of("192.0.2.1"));
    for (const char* bad : {"192.0.2.1:", "192.0.2.1:65536", "192.0.2.1:-1", "192.0.2.1:80:80", "[::1]:",
                            "[::1]x", "[::1]:http", "[::1", ":80", "1.2.3:80", "[1.2.3.4]:80"}) {
        CAPTURE(bad);
        CHECK_FALSE(address_key::from_endpoint_text(bad).has_value());
    }
}

TEST_CASE("address_key groups IPv6 by /64 and applies configurable prefixes", "[limits][address_key]") {
    CHECK(key_of("2001:db8:1:2::1") == key_of("2001:db8:1:2:ffff:ffff:ffff:ffff"));
    CHECK(key_of("2001:db8:1:2::1") != key_of("2001:db8:1:3::1"));
    CHECK(key_of("192.0.2.1") != key_of("192.0.2.2"));
    CHECK(key_of("::ffff:192.0.2.1") == key_of("192.0.2.1"));
    CHECK(key_of("0.0.0.1") != key_of("::1"));  // families never collide

    const wsguard::address_key_options exact{32, 128};
    CHECK(key_of("2001:db8::1", exact) != key_of("2001:db8::2", exact));
    const wsguard::address_key_options coarse{24, 48};
    CHECK(key_of("192.0.2.1", coarse) == key_of("192.0.2.200", coarse));
    CHECK(key_of("192.0.2.1", coarse) != key_of("192.0.3.1", coarse));
    CHECK(key_of("2001:db8:1:ffff::1", coarse) == key_of("2001:db8:1::", coarse));
    const wsguard::address_key_options odd{20, 60};
    CHECK(key_of("10.0.15.1", odd) == key_of("10.0.0.0", odd));
    CHECK(key_of("10.0.16.1", odd) != key_of("10.0.0.0", odd));
    CHECK(key_of("2001:db8:0:f::", odd) == key_of("2001:db8::", odd));
    CHECK(key_of("2001:db8:0:10::", odd) != key_of("2001:db8::", odd));
    const wsguard::address_key_options oversized{200, 200};  // clamped to 32 and 128
    CHECK(key_of("2001:db8::1", oversized) != key_of("2001:db8::2", oversized));
    CHECK(key_of("192.0.2.1", oversized) == key_of("192.0.2.1"));
    const wsguard::address_key_options everything{0, 0};
    CHECK(key_of("192.0.2.1", everything) == key_of("203.0.113.9", everything));
}

TEST_CASE("address_key reads raw 4- and 16-byte addresses", "[limits][address_key]") {
    const std::uint8_t v4[4] = {192, 0, 2, 1};
    CHECK(*address_key::from_bytes(v4, 4) == key_of("192.0.2.1"));
    const std::uint8_t mapped[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 192, 0, 2, 1};
    CHECK(*address_key::from_bytes(mapped, 16) == key_of("192.0.2.1"));
    const std::uint8_t v6[16] = {0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
    CHECK(*address_key::from_bytes(v6, 16) == key_of("2001:db8::1"));
    CHECK_FALSE(address_key::from_bytes(v6, 5).has_value());
    CHECK_FALSE(address_key::from_bytes(v6, 0).has_value());
    CHECK_FALSE(address_key::from_bytes(nullptr, 4).has_value());
    const address_key k = *address_key::from_bytes(v4, 4);
    CHECK(k.is_ipv4());
    CHECK(k.family() == 4);
    CHECK(k.bytes()[0] == 0);
    CHECK(k.bytes()[10] == 0xff);
    CHECK(k.bytes()[12] == 192);
    CHECK(key_of("2001:db8::1").family() == 6);
}

// ---------------------------------------------------------------------------
// Named options: the documented way to configure each limiter
// ---------------------------------------------------------------------------

TEST_CASE("each limiter built from named options passes its burst, then refuses", "[limits][options]") {
    const clock_point t0 = at_ns(0);
    auto bucket = token_bucket::create(wsguard::token_bucket_options{wsguard::rate::per_second(2), 3});
    REQUIRE(bucket);
    for (int i = 0; i < 3; ++i) CHECK(bucket->try_acquire(t0).allowed());
    CHECK(bucket->try_acquire(t0).retry_after == milliseconds(500));

    wsguard::keyed_limiter_options keyed;
    keyed.rate = wsguard::rate::per_second(2);
    keyed.burst = 3;
    keyed.capacity = 1024;
    auto per_key = keyed_limiter<std::uint64_t>::create(keyed);
    REQUIRE(per_key);
    CHECK(per_key->capacity() >= 1024);
    for (int i = 0; i < 3; ++i) CHECK(per_key->try_acquire(7, t0));
    CHECK(per_key->try_acquire(7, t0).reason == reason::rate_limited);
    CHECK(per_key->try_acquire(8, t0));

    wsguard::connection_limiter_options sockets;
    sockets.max_per_key = 2;
    sockets.capacity = 100;
    sockets.max_total = 3;
    auto connections = connection_limiter<std::uint64_t>::create(sockets);
    REQUIRE(connections);
    auto a = connections->try_acquire(1);
    auto b = connections->try_acquire(1);
    auto c = connections->try_acquire(1);
    auto d = connections->try_acquire(2);
    auto e = connections->try_acquire(3);
    CHECK((a && b && d));
    CHECK(c.decision().reason == reason::too_many_connections);  // max_per_key
    CHECK(e.decision().reason == reason::too_many_connections);  // max_total
}

TEST_CASE("named options are validated like the positional arguments, with the same messages", "[limits][options]") {
    const auto no_rate = token_bucket::create(wsguard::token_bucket_options{wsguard::rate::per_second(0), 1});
    REQUIRE_FALSE(no_rate);
    CHECK(no_rate.error().find("token_bucket") == 0);

    wsguard::keyed_limiter_options keyed;
    keyed.capacity = 0;
    const auto no_capacity = keyed_limiter<address_key>::create(keyed);
    REQUIRE_FALSE(no_capacity);
    CHECK(no_capacity.error().find("capacity") != std::string::npos);
    keyed.capacity = 100;
    keyed.burst = 0;
    CHECK_FALSE(keyed_limiter<address_key>::create(keyed));

    wsguard::connection_limiter_options sockets;
    sockets.max_total = 0;
    const auto no_total = connection_limiter<address_key>::create(sockets);
    REQUIRE_FALSE(no_total);
    CHECK(no_total.error().find("max_total") != std::string::npos);
    sockets.max_total = 10;
    sockets.max_per_key = 0;
    CHECK_FALSE(connection_limiter<address_key>::create(sockets));
}
