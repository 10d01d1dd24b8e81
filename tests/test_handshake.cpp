// handshake_guard: the one call that composes the components.
#include <wsguard.hpp>

#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "catch.hpp"

using wsguard::reason;
using namespace std::chrono_literals;

namespace {

const std::string secret(32, 'k');
const auto wall_t0 = std::chrono::system_clock::time_point(std::chrono::seconds(1'800'000'000));
const auto steady_t0 = std::chrono::steady_clock::time_point(std::chrono::seconds(1000));

// Everything a guard needs, built once per test with real components.
struct fixture {
    wsguard::memory_replay_store store = wsguard::memory_replay_store::create(1024, wall_t0 - 1min).value();
    wsguard::keyring keys = wsguard::keyring::create(1, {{1, secret, std::nullopt}}).value();
    wsguard::ticket_issuer issuer = wsguard::ticket_issuer::create(keys).value();
    wsguard::ticket_verifier<> verifier = wsguard::ticket_verifier<>::create(keys, store).value();
    std::vector<wsguard::refusal_event> events;
    std::vector<std::string> event_texts;  // events' views die with the call: copy what we check

    wsguard::handshake_config config() {
        wsguard::handshake_config cfg;
        wsguard::route_config chat;
        chat.path = "/chat";
        chat.origins = {"https://app.example.com", "https://*.example.org"};
        chat.hosts = {"api.example.com"};
        chat.audience = "api.example.com/chat";
        cfg.routes.push_back(chat);
        wsguard::route_config feed;
        feed.path = "/feed";
        feed.origins = {"https://feed.example.net"};
        feed.audience = "api.example.com/feed";
        cfg.routes.push_back(feed);
        wsguard::route_config open;
        open.path = "/public";
        open.origins = {"https://app.example.com"};
        open.ticket = wsguard::ticket_requirement::none;
        cfg.routes.push_back(open);
        cfg.verifier = &verifier;
        cfg.handshakes_per_second = 1;
        cfg.handshake_burst = 3;
        cfg.max_connections_per_address = 2;
        cfg.on_refusal = [this](const wsguard::refusal_event& e) {
            events.push_back(e);
            event_texts.push_back(std::string(wsguard::to_string(e.decision.reason)) + "|" + std::string(e.route) + "|" +
                                  std::string(e.origin) + "|" + std::string(e.address));
        };
        cfg.refusal_reports_per_second = 1;
        cfg.refusal_report_burst = 2;
        return cfg;
    }

    std::string ticket(std::string_view origin, std::string_view audience, std::string_view scopes = "chat:read") {
        wsguard::ticket_request req;
        req.subject = "user-42";
        req.origin = origin;
        req.audience = audience;
        req.scopes = scopes;
        auto issued = issuer.issue(req, wall_t0);
        REQUIRE(issued);
        return issued.ticket;
    }
};

// The request borrows `protocol_header`: keep the string alive while the request is used.
wsguard::upgrade_request chat_request(std::string_view protocol_header) {
    wsguard::upgrade_request r;
    r.method = "GET";
    r.path = "/chat";
    r.origin = "https://app.example.com";
    r.host = "api.example.com";
    r.sec_fetch_site = "same-site";
    r.sec_websocket_protocol = protocol_header;
    r.remote_address = "192.0.2.10:50000";
    return r;
}

}  // namespace

TEST_CASE("handshake_guard allows a valid request and echoes only wsguard.v1, never the ticket", "[handshake]") {
    fixture f;
    auto guard = wsguard::handshake_guard::create(f.config()).value();
    const std::string protocols = "wsguard.v1, " + f.ticket("https://app.example.com", "api.example.com/chat");
    auto outcome = guard.check(chat_request(protocols), steady_t0, wall_t0);
    REQUIRE(outcome.allowed());
    CHECK(outcome.http_status() == 0);
    CHECK(outcome.subprotocol() == "wsguard.v1");
    CHECK(outcome.claims().subject() == "user-42");
    CHECK(outcome.claims().has_scope("chat:read"));
    CHECK(outcome.route() == "/chat");
    CHECK(outcome.body().empty());
    CHECK(guard.live_connections() == 1);
    CHECK(guard.count(reason::ok) == 1);
}

TEST_CASE("handshake_guard refuses a replayed ticket", "[handshake]") {
    fixture f;
    auto guard = wsguard::handshake_guard::create(f.config()).value();
    const std::string protocols = "wsguard.v1, " + f.ticket("https://app.example.com", "api.example.com/chat");
    { auto first = guard.check(chat_request(protocols), steady_t0, wall_t0); CHECK(first.allowed()); }
    auto second = guard.check(chat_request(protocols), steady_t0 + 1s, wall_t0 + 1s);
    CHECK(second.decision.reason == reason::ticket_replayed);
    CHECK(second.http_status() == 401);
    CHECK(second.subprotocol().empty());
    CHECK(second.claims().subject().empty());
    CHECK(guard.live_connections() == 0);  // the refused request's slot was given back
}

TEST_CASE("handshake_guard takes the ticket from the query when the subprotocol has none", "[handshake]") {
    fixture f;
    auto guard = wsguard::handshake_guard::create(f.config()).value();
    auto req = chat_request("");
    const std::string path = "/chat?ticket=" + f.ticket("https://app.example.com", "api.example.com/chat");
    req.path = path;  // some stacks hand over the request target with its query
    auto outcome = guard.check(req, steady_t0, wall_t0);
    CHECK(outcome.allowed());
    CHECK(outcome.subprotocol().empty());  // nothing to echo: the client offered no subprotocol

    // A client that offers the marker without a ticket gets it echoed, so
    // clients that fail on an unanswered subprotocol offer still connect.
    const std::string query = "ticket=" + f.ticket("https://app.example.com", "api.example.com/chat");
    auto offered = chat_request("chat.v2,\twsguard.v1");
    offered.query = query;
    auto echoed = guard.check(offered, steady_t0, wall_t0);
    CHECK(echoed.allowed());
    CHECK(echoed.subprotocol() == "wsguard.v1");
}

TEST_CASE("handshake_guard checks cheap things first, each refusal with its own reason and status", "[handshake]") {
    fixture f;
    auto guard = wsguard::handshake_guard::create(f.config()).value();
    const std::string good = "wsguard.v1, " + f.ticket("https://app.example.com", "api.example.com/chat");
    const std::string huge(5000, 'a');
    struct row {
        const char* why;
        void (*mutate)(wsguard::upgrade_request&, const std::string&);
        reason expected;
        int status;
    };
    const row rows[] = {
        {"an oversized header is refused before anything is parsed",
         [](wsguard::upgrade_request& r, const std::string& h) { r.origin = h; }, reason::request_malformed, 400},
        {"a POST is not an upgrade", [](wsguard::upgrade_request& r, const std::string&) { r.method = "POST"; },
         reason::method_not_get, 405},
        {"an unknown path has no route", [](wsguard::upgrade_request& r, const std::string&) { r.path = "/admin"; },
         reason::route_not_found, 404},
        {"a missing Origin is refused for browsers' routes",
         [](wsguard::upgrade_request& r, const std::string&) { r.origin = {}; }, reason::origin_missing, 403},
        {"a sandboxed iframe's null Origin is refused",
         [](wsguard::upgrade_request& r, const std::string&) { r.origin = "null"; }, reason::origin_null, 403},
        {"another site's Origin is refused",
         [](wsguard::upgrade_request& r, const std::string&) { r.origin = "https://evil.example"; },
         reason::origin_not_allowed, 403},
        {"a rebinding attacker's Host is refused",
         [](wsguard::upgrade_request& r, const std::string&) { r.host = "attacker.example:80"; },
         reason::host_not_allowed, 403},
        {"Sec-Fetch-Site cross-site is refused even with an allowed Origin",
         [](wsguard::upgrade_request& r, const std::string&) { r.sec_fetch_site = "cross-site"; },
         reason::fetch_site_cross_site, 403},
        {"an unparseable peer address cannot be rate limited, so it is refused",
         [](wsguard::upgrade_request& r, const std::string&) { r.remote_address = "not-an-ip"; },
         reason::address_malformed, 400},
        {"no ticket at all", [](wsguard::upgrade_request& r, const std::string&) { r.sec_websocket_protocol = {}; },
         reason::ticket_missing, 401},
        {"a ticket with a flipped character",
         [](wsguard::upgrade_request& r, const std::string&) { r.sec_websocket_protocol = "wsguard.v1, AAAA"; },
         reason::ticket_malformed, 401},
    };
    for (const row& r : rows) {
        INFO(r.why);
        auto req = chat_request(good);
        r.mutate(req, huge);
        auto outcome = guard.check(req, steady_t0, wall_t0);
        CHECK(outcome.decision.reason == r.expected);
        CHECK(outcome.http_status() == r.status);
        CHECK(outcome.body() == wsguard::to_string(r.expected));
    }
    CHECK(guard.live_connections() == 0);
}

TEST_CASE("handshake_guard binds a ticket to its origin and to its route's audience", "[handshake]") {
    fixture f;
    auto guard = wsguard::handshake_guard::create(f.config()).value();
    SECTION("a ticket issued for another allowed origin fails") {
        const std::string protocols = "wsguard.v1, " + f.ticket("https://a.example.org", "api.example.com/chat");
        auto req = chat_request(protocols);
        CHECK(guard.check(req, steady_t0, wall_t0).decision.reason == reason::ticket_origin_mismatch);
    }
    SECTION("a ticket for /feed does not open /chat") {
        const std::string protocols = "wsguard.v1, " + f.ticket("https://app.example.com", "api.example.com/feed");
        auto req = chat_request(protocols);
        CHECK(guard.check(req, steady_t0, wall_t0).decision.reason == reason::ticket_audience_mismatch);
    }
    SECTION("each route has its own allowlist") {
        const std::string protocols = "wsguard.v1, " + f.ticket("https://feed.example.net", "api.example.com/feed");
        auto req = chat_request(protocols);
        req.path = "/feed";
        req.origin = "https://feed.example.net";
        auto outcome = guard.check(req, steady_t0, wall_t0);
        INFO(wsguard::to_string(outcome.decision.reason));
        CHECK(outcome.allowed());
        req.path = "/chat";
        CHECK(guard.check(req, steady_t0, wall_t0).decision.reason == reason::origin_not_allowed);
    }
}

TEST_CASE("handshake_guard answers 429 with Retry-After once an address spends its burst", "[handshake]") {
    fixture f;
    auto guard = wsguard::handshake_guard::create(f.config()).value();
    auto req = chat_request("");
    req.path = "/public";
    for (int i = 0; i < 3; ++i) {
        auto ok = guard.check(req, steady_t0, wall_t0);  // released at once: only the rate counts here
        CHECK(ok.allowed());
    }
    auto refused = guard.check(req, steady_t0, wall_t0);
    CHECK(refused.decision.reason == reason::rate_limited);
    CHECK(refused.http_status() == 429);
    CHECK(refused.retry_after_seconds() == 1);
    // Another address is not affected, and the first passes again after 1/rate.
    req.remote_address = "198.51.100.7";
    CHECK(guard.check(req, steady_t0, wall_t0).allowed());
    req.remote_address = "192.0.2.10:50000";
    CHECK(guard.check(req, steady_t0 + 1s, wall_t0).allowed());
}

TEST_CASE("handshake_guard caps live connections per address and releases them with the permit", "[handshake]") {
    fixture f;
    auto guard = wsguard::handshake_guard::create(f.config()).value();
    auto req = chat_request("");
    req.path = "/public";
    auto first = guard.check(req, steady_t0, wall_t0);
    auto second = guard.check(req, steady_t0, wall_t0);
    REQUIRE(first.allowed());
    REQUIRE(second.allowed());
    auto third = guard.check(req, steady_t0, wall_t0);
    CHECK(third.decision.reason == reason::too_many_connections);
    CHECK(third.http_status() == 429);
    CHECK(third.retry_after_seconds() >= 1);
    {
        auto moved = first.take_permit();  // a stack keeps the permit with its connection
        CHECK(guard.live_connections() == 2);
    }
    CHECK(guard.live_connections() == 1);
    CHECK(guard.check(req, steady_t0 + 1s, wall_t0).allowed());
}

TEST_CASE("handshake_guard keys IPv6 peers by /64 and accepts raw address bytes", "[handshake]") {
    fixture f;
    auto guard = wsguard::handshake_guard::create(f.config()).value();
    auto req = chat_request("");
    req.path = "/public";
    const char* same_64[] = {"[2001:db8:1:2::1]:4000", "2001:db8:1:2::ffff", "[2001:db8:1:2:aaaa::]:1"};
    for (const char* a : same_64) {
        req.remote_address = a;
        CHECK(guard.check(req, steady_t0, wall_t0).allowed());
    }
    req.remote_address = "2001:db8:1:2::99";  // same /64: its burst of 3 is spent
    CHECK(guard.check(req, steady_t0, wall_t0).decision.reason == reason::rate_limited);
    const std::uint8_t raw[4] = {203, 0, 113, 9};
    req.remote_address = {};
    req.remote_address_bytes = raw;
    req.remote_address_size = 4;
    CHECK(guard.check(req, steady_t0, wall_t0).allowed());
}

TEST_CASE("handshake_guard reports refusals once each, sanitized and rate-limited, and counts them all",
          "[handshake]") {
    fixture f;
    auto guard = wsguard::handshake_guard::create(f.config()).value();
    auto req = chat_request("");
    req.origin = "HTTPS://EVIL.example\r\nX-Injected: 1";
    for (int i = 0; i < 10; ++i) {
        auto outcome = guard.check(req, steady_t0, wall_t0);
        CHECK(outcome.decision.reason == reason::origin_malformed);
    }
    REQUIRE(f.event_texts.size() == 2);  // the report burst
    // Refused before the rate limits, the report still names the normalized client (no port).
    CHECK(f.event_texts[0] == "origin_malformed|/chat|https://evil.example??x-injected:?1|192.0.2.10");
    CHECK(guard.count(reason::origin_malformed) == 10);
    CHECK(guard.suppressed_reports() == 8);
    // The report budget runs on the injected clock: one more report a second later.
    CHECK(guard.check(req, steady_t0 + 1s, wall_t0).decision.reason == reason::origin_malformed);
    CHECK(f.event_texts.size() == 3);

    // A later refusal reports the normalized address key the limiter used.
    fixture g;
    auto cfg = g.config();
    cfg.handshake_burst = 1;
    auto guard2 = wsguard::handshake_guard::create(std::move(cfg)).value();
    auto pub = chat_request("");
    pub.path = "/public";
    pub.remote_address = "[2001:DB8:1:2::1]:4000";
    CHECK(guard2.check(pub, steady_t0, wall_t0).allowed());
    CHECK(guard2.check(pub, steady_t0, wall_t0).decision.reason == reason::rate_limited);
    pub.remote_address = "192.0.2.77:8000";
    CHECK(guard2.check(pub, steady_t0, wall_t0).allowed());
    CHECK(guard2.check(pub, steady_t0, wall_t0).decision.reason == reason::rate_limited);
    REQUIRE(g.event_texts.size() == 2);
    CHECK(g.event_texts[0] == "rate_limited|/public|https://app.example.com|2001:db8:1:2::/64");
    CHECK(g.event_texts[1] == "rate_limited|/public|https://app.example.com|192.0.2.77");
}

TEST_CASE("handshake_guard refuses a configuration that could never be safe, with a readable error",
          "[handshake]") {
    fixture f;
    SECTION("no routes") {
        auto r = wsguard::handshake_guard::create(wsguard::handshake_config{});
        CHECK_FALSE(r);
        CHECK(r.error().find("route") != std::string::npos);
    }
    SECTION("a wildcard-everything origin pattern, reported with its route") {
        auto cfg = f.config();
        cfg.routes[0].origins = {"*"};
        auto r = wsguard::handshake_guard::create(std::move(cfg));
        CHECK_FALSE(r);
        CHECK(r.error().find("/chat") != std::string::npos);
    }
    SECTION("tickets required but no verifier") {
        auto cfg = f.config();
        cfg.verifier = nullptr;
        CHECK_FALSE(wsguard::handshake_guard::create(std::move(cfg)));
    }
    SECTION("tickets required but no audience") {
        auto cfg = f.config();
        cfg.routes[1].audience.clear();
        CHECK_FALSE(wsguard::handshake_guard::create(std::move(cfg)));
    }
    SECTION("the same path twice") {
        auto cfg = f.config();
        cfg.routes[1].path = "/chat";
        CHECK_FALSE(wsguard::handshake_guard::create(std::move(cfg)));
    }
    SECTION("a path with a query") {
        auto cfg = f.config();
        cfg.routes[0].path = "/chat?x=1";
        CHECK_FALSE(wsguard::handshake_guard::create(std::move(cfg)));
    }
}

namespace {

// A config for the admission tests: generous rate and address caps, so only
// the feature under test refuses.
wsguard::handshake_config roomy_config(fixture& f) {
    auto cfg = f.config();
    cfg.handshakes_per_second = 1000;
    cfg.handshake_burst = 1000;
    cfg.max_connections_per_address = 100;
    return cfg;
}

std::string ticket_for(fixture& f, std::string_view subject, std::chrono::system_clock::time_point at = wall_t0) {
    wsguard::ticket_request req;
    req.subject = subject;
    req.origin = "https://app.example.com";
    req.audience = "api.example.com/chat";
    req.scopes = "chat:read";
    auto issued = f.issuer.issue(req, at);
    REQUIRE(issued);
    return issued.ticket;
}

// The same ticket with one character of its MAC changed.
std::string forged(std::string ticket) {
    char& c = ticket[ticket.size() - 5];
    c = c == 'A' ? 'B' : 'A';
    return ticket;
}

}  // namespace

TEST_CASE("handshake_guard bans a client after repeated forged tickets, before any MAC, and not its neighbours", "[handshake][penalty]") {
    fixture f;
    auto cfg = roomy_config(f);
    cfg.penalty.max_failures = 3;
    cfg.penalty.ban = 60s;
    auto guard = wsguard::handshake_guard::create(cfg).value();
    const std::string bad = "wsguard.v1, " + forged(ticket_for(f, "mallory"));
    for (int i = 0; i < 4; ++i) {  // three tolerated, the fourth starts the ban; each still says why
        auto out = guard.check(chat_request(bad), steady_t0, wall_t0);
        CHECK(out.decision.reason == reason::ticket_bad_mac);
    }
    // Now even a valid ticket is refused before it is verified: it stays unspent.
    const std::string good = "wsguard.v1, " + ticket_for(f, "mallory");
    auto banned = guard.check(chat_request(good), steady_t0 + 1s, wall_t0 + 1s);
    CHECK(banned.decision.reason == reason::client_penalized);
    CHECK(banned.http_status() == 429);
    CHECK(banned.retry_after_seconds() == 59);
    CHECK(guard.live_connections() == 0);
    CHECK(guard.count(reason::client_penalized) == 1);

    // A neighbour at another address is not affected.
    const std::string neighbour_protocols = "wsguard.v1, " + ticket_for(f, "alice");
    auto neighbour = chat_request(neighbour_protocols);
    neighbour.remote_address = "192.0.2.11:40000";
    CHECK(guard.check(neighbour, steady_t0 + 1s, wall_t0 + 1s).allowed());

    // When the ban ends, the unspent valid ticket is accepted: no MAC ran on it.
    CHECK(guard.check(chat_request(good), steady_t0 + 61s, wall_t0 + 2s).decision.reason == reason::ok);
}

TEST_CASE("handshake_guard never bans a user whose page is stale, with the default penalty box", "[handshake][penalty]") {
    fixture f;
    auto guard = wsguard::handshake_guard::create(roomy_config(f)).value();
    const std::string stale = "wsguard.v1, " + ticket_for(f, "alice", wall_t0 - 10min);
    for (int i = 0; i < 200; ++i) {
        auto out = guard.check(chat_request(stale), steady_t0 + std::chrono::milliseconds(10 * i), wall_t0);
        REQUIRE(out.decision.reason == reason::ticket_expired);
    }
    // A reload fetches a fresh ticket and connects.
    CHECK(guard.check(chat_request("wsguard.v1, " + ticket_for(f, "alice")), steady_t0 + 3s, wall_t0).allowed());
}

TEST_CASE("handshake_guard without the penalty box answers every forgery with its own reason", "[handshake][penalty]") {
    fixture f;
    auto cfg = roomy_config(f);
    cfg.penalty.enabled = false;
    auto guard = wsguard::handshake_guard::create(cfg).value();
    const std::string bad = "wsguard.v1, " + forged(ticket_for(f, "mallory"));
    for (int i = 0; i < 100; ++i) REQUIRE(guard.check(chat_request(bad), steady_t0, wall_t0).decision.reason == reason::ticket_bad_mac);
}

TEST_CASE("handshake_guard judges every cut or corrupted ticket as ticket_verifier::verify does", "[handshake][tickets]") {
    // The guard decodes a ticket's first characters once, to prefetch its
    // replay slot before the MAC, and verification goes on from there: no input
    // may be judged differently from a verifier that decodes it whole.
    fixture f;
    auto cfg = roomy_config(f);
    cfg.penalty.enabled = false;  // every forgery answered with its own reason
    auto guard = wsguard::handshake_guard::create(cfg).value();
    auto reference_store = wsguard::memory_replay_store::create(1024, wall_t0 - 1min).value();
    const auto reference = wsguard::ticket_verifier<>::create(f.keys, reference_store).value();
    const std::string good = ticket_for(f, "user-7");
    REQUIRE(good.size() > 60);  // longer than the part decoded first (52 characters)

    std::vector<std::string> variants;
    for (std::size_t n = 1; n < good.size(); ++n) variants.push_back(good.substr(0, n));
    for (std::size_t i = 0; i < good.size(); ++i) {
        // '!', '.' and '*' are token characters outside base64url; the last one stays in the alphabet.
        for (char c : {'!', '.', '*', good[i] == 'A' ? 'B' : 'A'}) {
            std::string v = good;
            v[i] = c;
            variants.push_back(v);
        }
    }
    variants.push_back(good + "A");
    variants.push_back(good + "AA");
    variants.push_back(good);  // last: the one that is allowed, by both

    std::size_t refused = 0;
    for (const std::string& v : variants) {
        INFO("ticket: " << v);
        wsguard::ticket_claims claims;
        const reason expected = reference.verify(wsguard::presented_ticket(v), wsguard::expected_origin("https://app.example.com"),
                                                 wsguard::expected_audience("api.example.com/chat"), claims, wall_t0)
                                    .reason;
        const std::string protocols = "wsguard.v1, " + v;
        const reason got = guard.check(chat_request(protocols), steady_t0, wall_t0).decision.reason;
        CHECK(got == expected);
        if (expected != reason::ok) ++refused;
    }
    CHECK(refused == variants.size() - 1);
}

// MinGW-w64's "win32" thread model has no std::thread (47-mingw builds this
// file with it too); the header takes the same condition for its replay lock.
#if !(defined(__GLIBCXX__) && !defined(_GLIBCXX_HAS_GTHREADS))
TEST_CASE("two threads sharing a guard accept every ticket exactly once", "[handshake][concurrency]") {
    // Both threads present the same tickets in the same order. The guard finds
    // each ticket's replay slot without the store's lock (to prefetch it), so
    // TSan runs this too (.ci/jobs/30-tsan.sh).
    fixture f;
    auto cfg = roomy_config(f);
    cfg.penalty.enabled = false;  // the losing thread replays 300 tickets: it would be banned
    auto guard = wsguard::handshake_guard::create(cfg).value();
    std::vector<std::string> protocols;
    for (int i = 0; i < 300; ++i) protocols.push_back("wsguard.v1, " + ticket_for(f, "user-" + std::to_string(i)));
    std::atomic<int> allowed{0}, replayed{0}, other{0};
    auto run = [&] {
        for (const std::string& p : protocols) {
            const reason r = guard.check(chat_request(p), steady_t0, wall_t0).decision.reason;
            (r == reason::ok ? allowed : r == reason::ticket_replayed ? replayed : other).fetch_add(1);
        }
    };
    std::thread a(run), b(run);
    a.join();
    b.join();
    CHECK(allowed.load() == 300);
    CHECK(replayed.load() == 300);
    CHECK(other.load() == 0);
    CHECK(guard.live_connections() == 0);
}
#endif

TEST_CASE("handshake_guard caps connections per ticket subject and releases them with the same permit", "[handshake][subject]") {
    fixture f;
    auto cfg = roomy_config(f);
    cfg.routes[0].max_connections_per_subject = 2;
    auto guard = wsguard::handshake_guard::create(cfg).value();
    // One user on two devices (two addresses), then a third.
    const char* addresses[] = {"192.0.2.20:1", "198.51.100.20:2", "203.0.113.20:3"};
    std::vector<wsguard::handshake_outcome::connection_permit> held;
    for (int i = 0; i < 2; ++i) {
        const std::string protocols = "wsguard.v1, " + ticket_for(f, "user-7");
        auto req = chat_request(protocols);
        req.remote_address = addresses[i];
        auto out = guard.check(req, steady_t0, wall_t0);
        REQUIRE(out.allowed());
        CHECK(out.permit().decision().allowed());
        held.push_back(out.take_permit());
        CHECK(held.back());
    }
    const std::string third_protocols = "wsguard.v1, " + ticket_for(f, "user-7");
    auto third = chat_request(third_protocols);
    third.remote_address = addresses[2];
    auto refused = guard.check(third, steady_t0, wall_t0);
    CHECK(refused.decision.reason == reason::too_many_connections_for_subject);
    CHECK(refused.http_status() == 429);
    CHECK(refused.retry_after_seconds() == 1);
    CHECK(refused.permit().decision().reason == reason::too_many_connections_for_subject);
    CHECK_FALSE(refused.permit());
    CHECK(guard.live_connections() == 2);  // the refused request's address slot was given back

    // Another user is not affected.
    const std::string other = "wsguard.v1, " + ticket_for(f, "user-8");
    CHECK(guard.check(chat_request(other), steady_t0, wall_t0).allowed());

    // Closing one connection (its permit) lets the user connect again.
    held[0].release();
    held[0].release();  // idempotent
    CHECK_FALSE(held[0]);
    CHECK(guard.live_connections() == 1);
    const std::string again = "wsguard.v1, " + ticket_for(f, "user-7");
    auto retry = chat_request(again);
    retry.remote_address = addresses[2];
    auto out = guard.check(retry, steady_t0 + 1s, wall_t0);
    CHECK(out.allowed());
    held.clear();
    CHECK(guard.live_connections() == 1);  // `out` still holds its permit
}

TEST_CASE("handshake_guard refuses a per-subject cap on a route without tickets", "[handshake][subject]") {
    fixture f;
    auto cfg = f.config();
    cfg.routes[2].max_connections_per_subject = 1;
    auto r = wsguard::handshake_guard::create(cfg);
    REQUIRE_FALSE(r);
    CHECK(r.error().find("needs tickets") != std::string::npos);
    auto bad_penalty = f.config();
    bad_penalty.penalty.max_failures = 0;
    CHECK_FALSE(wsguard::handshake_guard::create(bad_penalty));
}

// ---------------------------------------------------------------------------
// Behind trusted proxies, and the client in every refusal report
// ---------------------------------------------------------------------------

TEST_CASE("handshake_guard gives each client behind a trusted proxy its own bucket", "[handshake][proxy]") {
    fixture f;
    auto cfg = f.config();
    cfg.trusted_proxies = wsguard::trusted_proxies::create({"127.0.0.1", "10.0.0.0/8"}).value();
    auto guard = wsguard::handshake_guard::create(std::move(cfg)).value();
    auto req = chat_request("");
    req.path = "/public";
    req.remote_address = "127.0.0.1:40000";  // every request arrives from the proxy
    req.x_forwarded_for = "203.0.113.7";
    for (int i = 0; i < 3; ++i) CHECK(guard.check(req, steady_t0, wall_t0).allowed());  // the burst of 3
    CHECK(guard.check(req, steady_t0, wall_t0).decision.reason == reason::rate_limited);
    // Another client through the same proxy (and a second hop) is unaffected.
    req.x_forwarded_for = "198.51.100.9, 10.1.2.3";
    CHECK(guard.check(req, steady_t0, wall_t0).allowed());
    // Forwarded wins over X-Forwarded-For, and names the limited client.
    req.forwarded = "for=203.0.113.7;proto=https";
    CHECK(guard.check(req, steady_t0, wall_t0).decision.reason == reason::rate_limited);
    REQUIRE(f.event_texts.size() == 2);
    CHECK(f.event_texts[0] == "rate_limited|/public|https://app.example.com|203.0.113.7");
    CHECK(f.event_texts[1] == "rate_limited|/public|https://app.example.com|203.0.113.7");
}

TEST_CASE("handshake_guard ignores the X-Forwarded-For of a peer it does not trust", "[handshake][proxy]") {
    fixture f;
    auto cfg = f.config();
    cfg.trusted_proxies = wsguard::trusted_proxies::create({"127.0.0.1"}).value();
    auto guard = wsguard::handshake_guard::create(std::move(cfg)).value();
    auto req = chat_request("");
    req.path = "/public";
    req.remote_address = "192.0.2.10:50000";
    for (int i = 0; i < 3; ++i) {
        req.x_forwarded_for = i % 2 == 0 ? "1.2.3.4" : "5.6.7.8";  // a new "address" every time
        CHECK(guard.check(req, steady_t0, wall_t0).allowed());
    }
    req.x_forwarded_for = "9.9.9.9";
    CHECK(guard.check(req, steady_t0, wall_t0).decision.reason == reason::rate_limited);
    REQUIRE(f.event_texts.size() == 1);
    CHECK(f.event_texts[0] == "rate_limited|/public|https://app.example.com|192.0.2.10");
}

TEST_CASE("handshake_guard refuses what the resolver refuses, and counts the connection cap per real client",
          "[handshake][proxy]") {
    fixture f;
    auto cfg = f.config();
    cfg.handshake_burst = 100;
    cfg.trusted_proxies = wsguard::trusted_proxies::create({"127.0.0.1"}).value();
    auto guard = wsguard::handshake_guard::create(std::move(cfg)).value();
    auto req = chat_request("");
    req.path = "/public";
    req.remote_address = "127.0.0.1:40000";
    req.forwarded = "for=unknown";
    CHECK(guard.check(req, steady_t0, wall_t0).decision.reason == reason::forwarded_unknown_hop);
    req.forwarded = "for=\"[2001:db8::1]";  // unterminated quoted string
    auto malformed = guard.check(req, steady_t0, wall_t0);
    CHECK(malformed.decision.reason == reason::forwarded_malformed);
    CHECK(malformed.http_status() == 400);
    // The report names the proxy that sent the unreadable header.
    CHECK(f.event_texts.back() == "forwarded_malformed|/public|https://app.example.com|127.0.0.1");
    req.forwarded = {};
    req.x_forwarded_for = "203.0.113.7";
    auto first = guard.check(req, steady_t0, wall_t0);
    auto second = guard.check(req, steady_t0, wall_t0);
    CHECK(first.allowed());
    CHECK(second.allowed());
    CHECK(guard.check(req, steady_t0, wall_t0).decision.reason == reason::too_many_connections);  // cap of 2
    req.x_forwarded_for = "203.0.113.8";
    CHECK(guard.check(req, steady_t0, wall_t0).allowed());  // another client behind the same proxy: its own cap
    // Forwarded and X-Forwarded-For count against max_field_bytes.
    const std::string huge(5000, '1');
    req.x_forwarded_for = huge;
    CHECK(guard.check(req, steady_t0, wall_t0).decision.reason == reason::request_malformed);
}

TEST_CASE("handshake_guard reports the normalized client of early refusals, also for raw address bytes",
          "[handshake][proxy]") {
    fixture f;
    auto guard = wsguard::handshake_guard::create(f.config()).value();
    struct row {
        const char* method;
        const char* path;
        const char* origin;
        const char* fetch_site;
        reason expected;
    };
    const std::vector<row> table = {
        {"POST", "/chat", "https://app.example.com", "same-site", reason::method_not_get},
        {"GET", "/nowhere", "https://app.example.com", "same-site", reason::route_not_found},
        {"GET", "/chat", "https://evil.example", "same-site", reason::origin_not_allowed},
        {"GET", "/chat", "https://app.example.com", "cross-site", reason::fetch_site_cross_site},
    };
    const std::uint8_t v6[16] = {0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0x99};
    const std::uint8_t v4[4] = {198, 51, 100, 23};
    int hour = 0;  // each check an hour later: the report budget is full every time
    for (const row& r : table) {
        CAPTURE(r.path, r.origin);
        for (int form = 0; form < 3; ++form) {
            auto req = chat_request("");
            req.method = r.method;
            req.path = r.path;
            req.origin = r.origin;
            req.sec_fetch_site = r.fetch_site;
            std::string expected_address = "192.0.2.10";
            if (form == 1) {
                req.remote_address_bytes = v6;
                req.remote_address_size = 16;
                expected_address = "2001:db8:1:2::/64";
            } else if (form == 2) {
                req.remote_address_bytes = v4;
                req.remote_address_size = 4;
                expected_address = "198.51.100.23";
            }
            f.event_texts.clear();
            CHECK(guard.check(req, steady_t0 + std::chrono::hours(++hour), wall_t0).decision.reason == r.expected);
            REQUIRE(f.event_texts.size() == 1);
            const std::string text = f.event_texts[0];
            CHECK(text.substr(text.rfind('|') + 1) == expected_address);
        }
    }
    // A malformed peer is reported as sanitized, truncated text; bad raw bytes as nothing.
    auto req = chat_request("");
    req.remote_address = "not an address\r\nX-Injected: 1";
    f.event_texts.clear();
    CHECK(guard.check(req, steady_t0 + std::chrono::hours(++hour), wall_t0).decision.reason == reason::address_malformed);
    REQUIRE(f.event_texts.size() == 1);
    CHECK(f.event_texts[0].substr(f.event_texts[0].rfind('|') + 1) == "not?an?address??x-injected:?1");
    req.remote_address_bytes = v4;
    req.remote_address_size = 5;
    CHECK(guard.check(req, steady_t0 + std::chrono::hours(++hour), wall_t0).decision.reason == reason::address_malformed);
    REQUIRE(f.event_texts.size() == 2);
    CHECK(f.event_texts[1].substr(f.event_texts[1].rfind('|') + 1).empty());
}

TEST_CASE("handshake_guard resolves behind a proxy given as raw bytes, and takes a PROXY header's source",
          "[handshake][proxy]") {
    fixture f;
    auto cfg = f.config();
    cfg.handshake_burst = 1;
    cfg.trusted_proxies = wsguard::trusted_proxies::create({"127.0.0.1"}).value();
    auto guard = wsguard::handshake_guard::create(std::move(cfg)).value();
    auto req = chat_request("");
    req.path = "/public";
    const std::uint8_t proxy[4] = {127, 0, 0, 1};
    req.remote_address_bytes = proxy;
    req.remote_address_size = 4;
    req.forwarded = "for=\"[2001:db8:1:2::77]:5555\"";
    CHECK(guard.check(req, steady_t0, wall_t0).allowed());
    CHECK(guard.check(req, steady_t0, wall_t0).decision.reason == reason::rate_limited);
    REQUIRE(f.event_texts.size() == 1);
    CHECK(f.event_texts[0] == "rate_limited|/public|https://app.example.com|2001:db8:1:2::/64");

    // An L4 balancer's PROXY v1 header: the stack checks the peer is trusted,
    // then passes the header's source as the remote address.
    const std::string line = "PROXY TCP4 198.51.100.4 10.0.0.1 50000 443\r\nGET /public HTTP/1.1\r\n";
    const auto header = wsguard::parse_proxy_header(reinterpret_cast<const std::uint8_t*>(line.data()), line.size());
    REQUIRE(header.allowed());
    auto proxied = chat_request("");
    proxied.path = "/public";
    proxied.remote_address = header.source_text();
    CHECK(guard.check(proxied, steady_t0, wall_t0).allowed());
    CHECK(guard.check(proxied, steady_t0, wall_t0).decision.reason == reason::rate_limited);
    REQUIRE(f.event_texts.size() == 2);
    CHECK(f.event_texts[1] == "rate_limited|/public|https://app.example.com|198.51.100.4");
}

// ---------------------------------------------------------------------------
// upgrade_request_builder: the request from the stack's own header lines
// ---------------------------------------------------------------------------

namespace {
struct header_line {
    std::string_view name, value;
};

template <std::size_t N = 4096>
void add_lines(wsguard::basic_upgrade_request_builder<N>& build, std::initializer_list<header_line> lines) {
    for (const header_line& line : lines) build.add(line.name, line.value);
}
}  // namespace

TEST_CASE("upgrade_request_builder fills the request from header lines, names in any case", "[handshake][builder]") {
    fixture f;
    auto guard = wsguard::handshake_guard::create(f.config()).value();
    const std::string protocols = "wsguard.v1, " + f.ticket("https://app.example.com", "api.example.com/chat");
    wsguard::upgrade_request_builder build("GET", "/chat?lang=en");
    add_lines(build, {{"HOST", "api.example.com"},
                      {"origin", "https://app.example.com"},
                      {"Sec-Fetch-Site", "same-site"},
                      {"sec-websocket-PROTOCOL", protocols},
                      {"Upgrade", "websocket"},
                      {"Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="}});
    const wsguard::upgrade_request& r = build.request();
    CHECK(r.method == "GET");
    CHECK(r.path == "/chat?lang=en");
    CHECK(r.origin == "https://app.example.com");
    CHECK(r.host == "api.example.com");
    CHECK(r.sec_fetch_site == "same-site");
    CHECK(r.sec_websocket_protocol == protocols);
    CHECK(r.sec_websocket_protocol.data() == protocols.data());  // a view, not a copy
    CHECK_FALSE(r.repeated_security_header);
    CHECK_FALSE(r.forwarded_over_cap);
    build.request().remote_address = "192.0.2.10:50000";
    CHECK(guard.check(build.request(), steady_t0, wall_t0).allowed());
}

TEST_CASE("a security header on two lines is refused as security_header_repeated", "[handshake][builder]") {
    fixture f;
    auto guard = wsguard::handshake_guard::create(f.config()).value();
    const std::string protocols = "wsguard.v1, " + f.ticket("https://app.example.com", "api.example.com/chat");
    const std::vector<header_line> good = {{"Origin", "https://app.example.com"},
                                           {"Host", "api.example.com"},
                                           {"Sec-Fetch-Site", "same-site"},
                                           {"Sec-WebSocket-Protocol", protocols}};
    // Each counted header, repeated with the same value (so only the repetition
    // is wrong) and with another name case on its second line.
    const std::vector<header_line> repeats = {{"ORIGIN", "https://app.example.com"},
                                              {"host", "api.example.com"},
                                              {"sec-fetch-site", "same-site"},
                                              {"SEC-WEBSOCKET-PROTOCOL", protocols},
                                              {"Origin", ""}};  // an empty second line is still a second line
    for (const header_line& repeat : repeats) {
        INFO(std::string(repeat.name));
        wsguard::upgrade_request_builder build("GET", "/chat");
        for (const header_line& line : good) build.add(line.name, line.value);
        build.add(repeat.name, repeat.value);
        build.request().remote_address = "192.0.2.10:50000";
        CHECK(build.request().repeated_security_header);
        const auto outcome = guard.check(build.request(), steady_t0, wall_t0);
        CHECK(outcome.decision.reason == reason::security_header_repeated);
        CHECK(outcome.http_status() == 400);
    }
    CHECK(guard.count(reason::security_header_repeated) == repeats.size());
    CHECK(guard.live_connections() == 0);

    // Forwarded and X-Forwarded-For repeat legitimately; other names are ignored.
    wsguard::upgrade_request_builder build("GET", "/chat");
    for (const header_line& line : good) build.add(line.name, line.value);
    add_lines(build, {{"Forwarded", "for=192.0.2.1"}, {"Forwarded", "for=192.0.2.2"}, {"X-Forwarded-For", "192.0.2.3"},
                      {"x-forwarded-for", "192.0.2.4"}, {"Cookie", "a=1"}, {"Cookie", "b=2"}});
    build.request().remote_address = "192.0.2.10:50000";
    CHECK_FALSE(build.request().repeated_security_header);
    CHECK(guard.check(build.request(), steady_t0, wall_t0).allowed());

    // The flag is the contract: a stack that fills the fields by hand sets it too.
    auto by_hand = chat_request(protocols);
    by_hand.repeated_security_header = true;
    CHECK(guard.check(by_hand, steady_t0, wall_t0).decision.reason == reason::security_header_repeated);
}

TEST_CASE("upgrade_request_builder joins Forwarded and X-Forwarded-For lines in arrival order", "[handshake][builder]") {
    wsguard::upgrade_request_builder build("GET", "/public");
    const std::string first = "203.0.113.7";
    build.add("X-Forwarded-For", first);
    CHECK(build.request().x_forwarded_for.data() == first.data());  // one line: a view of the stack's value
    add_lines(build, {{"x-forwarded-for", ""},  // an empty line adds no element
                      {"X-FORWARDED-FOR", "198.51.100.9, 10.1.2.3"},
                      {"Forwarded", "for=192.0.2.60;proto=http"},
                      {"forwarded", "for=\"[2001:db8::1]\""}});
    CHECK(build.request().x_forwarded_for == "203.0.113.7, 198.51.100.9, 10.1.2.3");
    CHECK(build.request().forwarded == "for=192.0.2.60;proto=http, for=\"[2001:db8::1]\"");
    CHECK_FALSE(build.request().forwarded_over_cap);

    // The guard walks the joined list: the rightmost untrusted entry is the client.
    fixture f;
    auto cfg = f.config();
    cfg.trusted_proxies = wsguard::trusted_proxies::create({"127.0.0.1", "10.0.0.0/8"}).value();
    auto guard = wsguard::handshake_guard::create(std::move(cfg)).value();
    wsguard::upgrade_request_builder proxied("GET", "/public");
    add_lines(proxied, {{"Origin", "https://app.example.com"}, {"X-Forwarded-For", "203.0.113.7"},
                        {"X-Forwarded-For", "198.51.100.9"}, {"X-Forwarded-For", "10.1.2.3"}});
    proxied.request().remote_address = "127.0.0.1:40000";
    proxied.request().path = "/nowhere";  // refused, so the report names the client
    CHECK(guard.check(proxied.request(), steady_t0, wall_t0).decision.reason == reason::route_not_found);
    CHECK(f.event_texts.back() == "route_not_found|/nowhere|https://app.example.com|198.51.100.9");
}

TEST_CASE("upgrade_request_builder refuses a join over its buffer, never truncates it", "[handshake][builder]") {
    const std::string line(40, '1');
    wsguard::basic_upgrade_request_builder<100> build("GET", "/public");
    build.add("X-Forwarded-For", line);
    build.add("X-Forwarded-For", line);  // 82 bytes: fits
    CHECK(build.request().x_forwarded_for.size() == 82);
    CHECK_FALSE(build.request().forwarded_over_cap);
    build.add("X-Forwarded-For", std::string_view("1234567890123456", 16));  // 82 + 2 + 16 = 100: fits exactly
    CHECK(build.request().x_forwarded_for.size() == 100);
    build.add("X-Forwarded-For", "1");  // 103: over
    CHECK(build.request().forwarded_over_cap);
    CHECK(build.request().x_forwarded_for.empty());  // nothing half-read is left behind
    build.add("X-Forwarded-For", "2");  // stays refused
    build.add("Forwarded", "for=192.0.2.1");
    CHECK(build.request().x_forwarded_for.empty());
    CHECK(build.request().forwarded_over_cap);

    // One line longer than the buffer is still a view (the guard's max_field_bytes
    // judges it); a second line cannot be joined to it.
    const std::string long_line(150, '1');
    wsguard::basic_upgrade_request_builder<100> single("GET", "/public");
    single.add("Forwarded", long_line);
    CHECK(single.request().forwarded.size() == 150);
    CHECK_FALSE(single.request().forwarded_over_cap);
    single.add("Forwarded", "for=192.0.2.1");
    CHECK(single.request().forwarded_over_cap);

    // The guard refuses the overflow whether or not the peer is a trusted proxy.
    fixture f;
    auto guard = wsguard::handshake_guard::create(f.config()).value();
    build.request().origin = "https://app.example.com";
    build.request().remote_address = "192.0.2.10:50000";
    const auto outcome = guard.check(build.request(), steady_t0, wall_t0);
    CHECK(outcome.decision.reason == reason::request_malformed);
    CHECK(outcome.http_status() == 400);
}
