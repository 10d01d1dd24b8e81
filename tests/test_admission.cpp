// Admission: accept_gate (pending handshakes and their deadline) and
// penalty_box (bans after repeated forged tickets). Time is always injected.
#include <wsguard.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "catch.hpp"

using wsguard::accept_gate;
using wsguard::accept_limits;
using wsguard::accept_permit;
using wsguard::address_key;
using wsguard::penalty_box;
using wsguard::penalty_options;
using wsguard::reason;
using std::chrono::milliseconds;
using std::chrono::seconds;
using clock_point = std::chrono::steady_clock::time_point;

namespace {

const clock_point t0 = clock_point(std::chrono::hours(1000));

address_key key_of(std::string_view text) {
    const auto key = address_key::from_text(text);
    INFO(text);
    REQUIRE(key.has_value());
    return *key;
}

accept_gate make_gate(const accept_limits& limits) {
    auto created = accept_gate::create(limits);
    INFO(created.error());
    REQUIRE(created);
    return std::move(created).value();
}

penalty_box make_box(const penalty_options& options = {}) {
    auto created = penalty_box::create(options);
    INFO(created.error());
    REQUIRE(created);
    return std::move(created).value();
}

}  // namespace

// ---------------------------------------------------------------------------
// accept_gate
// ---------------------------------------------------------------------------

TEST_CASE("accept_gate refuses configurations that are mistakes, with a readable error", "[admission][accept_gate]") {
    struct bad {
        accept_limits limits;
        const char* mentions;
    };
    accept_limits zero_deadline;
    zero_deadline.handshake_deadline = milliseconds(0);
    accept_limits per_address_over_total;
    per_address_over_total.max_pending_per_address = 10;
    per_address_over_total.max_pending_total = 5;
    accept_limits zero_per_address;
    zero_per_address.max_pending_per_address = 0;
    accept_limits zero_capacity;
    zero_capacity.table_capacity = 0;
    const std::vector<bad> table = {
        {zero_deadline, "handshake_deadline must be positive"},
        {per_address_over_total, "over max_pending_total"},
        {zero_per_address, "max_per_key must be at least 1"},
        {zero_capacity, "capacity must be at least 1"},
    };
    for (const bad& b : table) {
        auto created = accept_gate::create(b.limits);
        REQUIRE_FALSE(created);
        INFO(created.error());
        CHECK(created.error().find(b.mentions) != std::string::npos);
    }
    const accept_limits defaults;
    CHECK(defaults.handshake_deadline == seconds(10));
    CHECK(accept_gate::create(defaults));
}

TEST_CASE("accept_gate caps pending handshakes per address and returns each slot when its permit ends", "[admission][accept_gate]") {
    accept_limits limits;
    limits.max_pending_per_address = 2;
    limits.max_pending_total = 100;
    accept_gate gate = make_gate(limits);
    const address_key attacker = key_of("127.0.0.2");
    const address_key victim = key_of("127.0.0.3");

    accept_permit first = gate.try_admit(attacker, t0);
    accept_permit second = gate.try_admit(attacker, t0);
    CHECK(first);
    CHECK(second);
    CHECK(first.decision().allowed());
    accept_permit third = gate.try_admit(attacker, t0);
    CHECK_FALSE(third);
    CHECK(third.decision().reason == reason::too_many_pending);
    CHECK(third.decision().http_status() == 503);
    CHECK(wsguard::http_reason_phrase(third.decision().http_status()) == "Service Unavailable");
    CHECK(third.decision().retry_after == milliseconds(1000));
    CHECK(gate.pending(attacker) == 2);
    CHECK(gate.pending() == 2);

    // Another client is not affected by the attacker's pending sockets.
    accept_permit victims = gate.try_admit(victim, t0);
    CHECK(victims);
    CHECK(gate.pending() == 3);

    // The handshake became a connection: the pending slot returns.
    first.release();
    first.release();  // idempotent
    CHECK_FALSE(first);
    CHECK(gate.pending(attacker) == 1);
    // The handshake was dropped: destruction returns the slot too.
    { accept_permit dropped = std::move(second); }
    CHECK(gate.pending(attacker) == 0);
    CHECK(gate.try_admit(attacker, t0));  // a temporary: released at once
    CHECK(gate.pending(attacker) == 0);

    victims = accept_permit();  // assignment releases
    CHECK(gate.pending() == 0);
    const accept_permit nothing;
    CHECK_FALSE(nothing);
    CHECK(nothing.decision().reason == reason::too_many_pending);
}

TEST_CASE("accept_gate caps pending handshakes in total across addresses", "[admission][accept_gate]") {
    accept_limits limits;
    limits.max_pending_per_address = 4;
    limits.max_pending_total = 10;
    accept_gate gate = make_gate(limits);
    std::vector<accept_permit> held;
    for (int i = 0; i < 10; ++i) {
        held.push_back(gate.try_admit(key_of("192.0.2." + std::to_string(i + 1)), t0));
        REQUIRE(held.back());
    }
    const accept_permit refused = gate.try_admit(key_of("198.51.100.1"), t0);
    CHECK_FALSE(refused);
    CHECK(refused.decision().reason == reason::too_many_pending);
    held.pop_back();
    CHECK(gate.try_admit(key_of("198.51.100.1"), t0));
}

TEST_CASE("accept_gate keys IPv6 clients by /64, like address_key", "[admission][accept_gate]") {
    accept_limits limits;
    limits.max_pending_per_address = 1;
    accept_gate gate = make_gate(limits);
    const auto a = gate.address_of("[2001:db8:1:2::1]:5000");
    const auto b = gate.address_of("[2001:db8:1:2:ffff::9]:443");
    const auto c = gate.address_of("[2001:db8:1:3::1]:443");
    REQUIRE((a && b && c));
    const accept_permit held = gate.try_admit(*a, t0);
    CHECK(held);
    CHECK_FALSE(gate.try_admit(*b, t0));  // the same /64
    CHECK(gate.try_admit(*c, t0));        // the next /64
    const std::uint8_t v4[4] = {127, 0, 0, 2};
    REQUIRE(gate.address_of(v4, 4));
    CHECK(*gate.address_of(v4, 4) == key_of("127.0.0.2"));
    CHECK_FALSE(gate.address_of("not an address"));
}

TEST_CASE("accept_permit deadline is admission time plus handshake_deadline, on an injected clock", "[admission][accept_gate]") {
    struct row {
        milliseconds deadline;
        milliseconds elapsed;
        bool expired;
    };
    const std::vector<row> table = {
        {seconds(10), milliseconds(0), false},
        {seconds(10), milliseconds(9999), false},
        {seconds(10), milliseconds(10000), true},  // the deadline itself has passed
        {seconds(10), seconds(60), true},
        {milliseconds(250), milliseconds(249), false},
        {milliseconds(250), milliseconds(250), true},
    };
    for (const row& r : table) {
        INFO("deadline " << r.deadline.count() << " ms, elapsed " << r.elapsed.count() << " ms");
        accept_limits limits;
        limits.handshake_deadline = r.deadline;
        accept_gate gate = make_gate(limits);
        CHECK(gate.handshake_deadline() == r.deadline);
        const accept_permit permit = gate.try_admit(key_of("192.0.2.1"), t0);
        REQUIRE(permit);
        CHECK(permit.deadline() == t0 + r.deadline);
        CHECK(permit.expired(t0 + r.elapsed) == r.expired);
        const wsguard::decision late = permit.check_deadline(t0 + r.elapsed);
        CHECK(late.allowed() == !r.expired);
        if (r.expired) {
            CHECK(late.reason == reason::handshake_deadline_passed);
            CHECK(late.http_status() == 408);
            CHECK(wsguard::http_reason_phrase(late.http_status()) == "Request Timeout");
        }
    }
}

TEST_CASE("accept_gate memory is fixed from construction on", "[admission][accept_gate]") {
    accept_limits limits;
    limits.table_capacity = 1000;
    limits.max_pending_per_address = 1;
    limits.max_pending_total = 5000;
    accept_gate gate = make_gate(limits);
    const std::size_t memory = gate.memory_bytes();
    std::vector<accept_permit> held;
    for (std::uint32_t i = 0; i < 1000; ++i) {
        const std::uint8_t v4[4] = {10, static_cast<std::uint8_t>(i >> 16), static_cast<std::uint8_t>(i >> 8),
                                    static_cast<std::uint8_t>(i)};
        held.push_back(gate.try_admit(*gate.address_of(v4, 4), t0));
        REQUIRE(held.back());  // exactly table_capacity clients fit
    }
    const std::uint8_t next[4] = {10, 99, 0, 0};
    CHECK(gate.try_admit(*gate.address_of(next, 4), t0).decision().reason == reason::too_many_pending);
    CHECK(gate.memory_bytes() == memory);
}

TEST_CASE("accept_gate never exceeds its caps with two threads and drains to zero", "[admission][accept_gate][concurrency]") {
    accept_limits limits;
    limits.max_pending_per_address = 3;
    limits.max_pending_total = 8;
    accept_gate gate = make_gate(limits);
    std::atomic<int> live{0};
    std::atomic<bool> over{false};
    auto worker = [&](int id) {
        std::vector<accept_permit> held;
        for (int i = 0; i < 20000; ++i) {
            const std::uint8_t v4[4] = {127, 0, 0, static_cast<std::uint8_t>(2 + (i + id) % 4)};
            accept_permit p = gate.try_admit(*gate.address_of(v4, 4), t0);
            if (p) {
                if (++live > 8) over = true;
                held.push_back(std::move(p));
            }
            if (held.size() > 3 || (i % 3 == 0 && !held.empty())) {
                --live;
                held.erase(held.begin());
            }
        }
        live -= static_cast<int>(held.size());
    };
    std::thread a(worker, 0), b(worker, 1);
    a.join();
    b.join();
    CHECK_FALSE(over.load());
    CHECK(gate.pending() == 0);
}

// ---------------------------------------------------------------------------
// penalty_box
// ---------------------------------------------------------------------------

TEST_CASE("penalty_box refuses configurations that are mistakes", "[admission][penalty_box]") {
    penalty_options zero_failures;
    zero_failures.max_failures = 0;
    penalty_options zero_window;
    zero_window.window = milliseconds(0);
    penalty_options zero_ban;
    zero_ban.ban = milliseconds(0);
    penalty_options zero_capacity;
    zero_capacity.capacity = 0;
    for (const penalty_options& o : {zero_failures, zero_window, zero_ban, zero_capacity}) {
        auto created = penalty_box::create(o);
        REQUIRE_FALSE(created);
        CHECK(created.error().find("penalty_box: ") == 0);
    }
    const penalty_options defaults;
    CHECK(defaults.max_failures == 20);
    CHECK(defaults.window == std::chrono::minutes(1));
    CHECK(defaults.ban == std::chrono::minutes(5));
    CHECK(defaults.enabled);
}

TEST_CASE("penalty_box counts only the failures forgery and replay produce", "[admission][penalty_box]") {
    struct row {
        reason r;
        bool counted;
    };
    const std::vector<row> table = {
        {reason::ticket_bad_mac, true},          {reason::ticket_unknown_key, true},
        {reason::ticket_replayed, true},         {reason::ticket_malformed, true},
        {reason::ticket_expired, false},         {reason::ticket_not_yet_valid, false},
        {reason::ticket_origin_mismatch, false}, {reason::ticket_audience_mismatch, false},
        {reason::ticket_missing, false},         {reason::ticket_before_store_start, false},
        {reason::rate_limited, false},           {reason::ok, false},
    };
    for (const row& r : table) {
        INFO(wsguard::to_string(r.r));
        CHECK(penalty_box::counts(r.r) == r.counted);
        penalty_options options;
        options.max_failures = 1;
        penalty_box box = make_box(options);
        const address_key client = key_of("203.0.113.9");
        (void)box.record_failure(client, r.r, t0);
        (void)box.record_failure(client, r.r, t0);
        CHECK(box.check(client, t0).allowed() == !r.counted);
    }
}

TEST_CASE("penalty_box bans after max_failures at once, for exactly the ban, with Retry-After", "[admission][penalty_box]") {
    penalty_box box = make_box();  // 20 per minute, 5-minute ban
    const address_key forger = key_of("127.0.0.2");
    const address_key bystander = key_of("127.0.0.3");
    for (int i = 0; i < 20; ++i) {
        CHECK(box.record_failure(forger, reason::ticket_bad_mac, t0).allowed());
        CHECK(box.check(forger, t0).allowed());
    }
    const wsguard::decision banned = box.record_failure(forger, reason::ticket_bad_mac, t0);
    CHECK(banned.reason == reason::client_penalized);
    CHECK(banned.retry_after == std::chrono::minutes(5));

    const wsguard::decision during = box.check(forger, t0 + seconds(60));
    CHECK(during.reason == reason::client_penalized);
    CHECK(during.http_status() == 429);
    CHECK(during.retry_after == seconds(240));
    CHECK(during.retry_after_seconds() == 240);
    CHECK(box.check(forger, t0 + std::chrono::minutes(5) - milliseconds(1)).reason == reason::client_penalized);
    CHECK(box.check(forger, t0 + std::chrono::minutes(5)).allowed());
    CHECK(box.check(bystander, t0 + seconds(1)).allowed());  // another client is not affected

    // Right after the ban the budget is empty: one more forgery bans again.
    CHECK(box.record_failure(forger, reason::ticket_replayed, t0 + std::chrono::minutes(5)).reason ==
          reason::client_penalized);
}

TEST_CASE("penalty_box never bans a client whose failures stay under the rate", "[admission][penalty_box]") {
    penalty_box box = make_box();
    const address_key user = key_of("192.0.2.44");
    // One failure every 3 s (20 per minute) for an hour: the budget keeps up.
    for (int i = 0; i < 1200; ++i) {
        const clock_point now = t0 + seconds(3 * i);
        REQUIRE(box.check(user, now).allowed());
        REQUIRE(box.record_failure(user, reason::ticket_replayed, now).allowed());
    }
    // A stale page: expired tickets by the hundred, none counted.
    for (int i = 0; i < 500; ++i) REQUIRE(box.record_failure(user, reason::ticket_expired, t0).allowed());
}

TEST_CASE("penalty_box check never creates an entry and keeps bans through a flood of new clients", "[admission][penalty_box]") {
    penalty_options options;
    options.capacity = 1024;
    options.max_failures = 2;
    penalty_box box = make_box(options);
    const std::size_t memory = box.memory_bytes();
    // 8 bans in 256 groups of 4: a group full of bans (the only way one is
    // evicted) has probability about 4e-6.
    std::vector<address_key> forgers;
    for (int i = 0; i < 8; ++i) {
        forgers.push_back(key_of("198.51.100." + std::to_string(i + 1)));
        for (int k = 0; k < 3; ++k) (void)box.record_failure(forgers.back(), reason::ticket_bad_mac, t0);
        REQUIRE(box.check(forgers.back(), t0).reason == reason::client_penalized);
    }
    // 100,000 other clients fail once each: not one ban is evicted.
    for (std::uint32_t i = 0; i < 100000; ++i) {
        const std::uint8_t v4[4] = {10, static_cast<std::uint8_t>(i >> 16), static_cast<std::uint8_t>(i >> 8),
                                    static_cast<std::uint8_t>(i)};
        const address_key client = *address_key::from_bytes(v4, 4);
        CHECK(box.check(client, t0 + seconds(1)).allowed());
        (void)box.record_failure(client, reason::ticket_bad_mac, t0 + seconds(1));
    }
    for (const address_key& f : forgers) CHECK(box.check(f, t0 + seconds(2)).reason == reason::client_penalized);
    CHECK(box.memory_bytes() == memory);
}

TEST_CASE("penalty_box bans a forger exactly once under two threads", "[admission][penalty_box][concurrency]") {
    penalty_options options;
    options.max_failures = 100;
    penalty_box box = make_box(options);
    const address_key forger = key_of("127.0.0.2");
    std::atomic<int> tolerated{0}, bans{0};
    auto worker = [&] {
        for (int i = 0; i < 5000; ++i) {
            const wsguard::decision d = box.record_failure(forger, reason::ticket_bad_mac, t0);
            if (d.allowed()) ++tolerated;
            else ++bans;
        }
    };
    std::thread a(worker), b(worker);
    a.join();
    b.join();
    CHECK(tolerated.load() == 100);
    CHECK(bans.load() == 10000 - 100);
    CHECK(box.check(forger, t0).reason == reason::client_penalized);
}
