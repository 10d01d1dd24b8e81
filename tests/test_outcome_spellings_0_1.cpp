// The 0.1 spellings of an outcome (deprecated, removed in 0.3) still compile and
// answer what their `decision` replacements answer. This is the one file that
// names them, so it alone silences the deprecation warning.
#if defined(__GNUC__) || defined(__clang__)
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
#elif defined(_MSC_VER)
#pragma warning(disable : 4996)
#endif

#include <wsguard.hpp>

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "catch.hpp"

using wsguard::reason;

namespace {

const std::string secret(32, 's');

wsguard::ticket_issuer make_issuer() {
    auto keys = wsguard::keyring::create(1, {{1, secret, std::nullopt}});
    REQUIRE(keys);
    auto issuer = wsguard::ticket_issuer::create(std::move(keys).value());
    REQUIRE(issuer);
    return std::move(issuer).value();
}

}  // namespace

TEST_CASE("0.1: issued_ticket::status is the decision", "[vocabulary][deprecated]") {
    const wsguard::ticket_issuer issuer = make_issuer();
    wsguard::ticket_request ok;
    ok.subject = "user-42";
    ok.audience = "api.example.com/chat";
    const wsguard::issued_ticket issued = issuer.issue(ok);
    CHECK(issued.status == issued.decision);
    CHECK(issued.status.allowed());

    const std::string long_subject(200, 'a');
    wsguard::ticket_request too_long = ok;
    too_long.subject = long_subject;
    const wsguard::issued_ticket refused = issuer.issue(too_long);
    CHECK(refused.status == refused.decision);
    CHECK(refused.status.reason == reason::ticket_field_too_long);
}

TEST_CASE("0.1: ticket_source::reason is decision.reason", "[vocabulary][deprecated]") {
    for (const wsguard::ticket_source& source :
         {wsguard::ticket_from_subprotocol("wsguard.v1, abc"), wsguard::ticket_from_subprotocol("chat"),
          wsguard::ticket_from_query("?ticket=a%2b"), wsguard::ticket_from_query("?ticket=abc")}) {
        CHECK(source.reason == source.decision.reason);
        CHECK(static_cast<bool>(source) == (source.reason == reason::ok));
    }
    CHECK(wsguard::ticket_source{}.reason == reason::ticket_missing);
}

TEST_CASE("0.1: frame_verdict::status, reason, close_code() and decision()", "[vocabulary][deprecated]") {
    using state = wsguard::frame_verdict::state;
    wsguard::frame_guard guard;
    const std::uint8_t masked_text[] = {0x81, 0x80, 1, 2, 3, 4};

    const wsguard::frame_verdict need_more = guard.inspect(masked_text, 1);
    CHECK(need_more.status == state::need_more);
    CHECK(need_more.reason == reason::ok);
    CHECK(need_more.close_code() == 0);  // 0.1: nothing to close; decision.close_code() says 1000
    CHECK(need_more.decision.close_code() == 1000);
    CHECK(need_more.decision() == need_more.decision);

    const wsguard::frame_verdict allowed = guard.inspect(masked_text, sizeof masked_text);
    CHECK(allowed.status == state::allowed);
    CHECK(allowed.reason == reason::ok);
    CHECK(allowed.close_code() == 0);
    CHECK(allowed.decision().allowed());

    const std::uint8_t unmasked[] = {0x81, 0x00};
    const wsguard::frame_verdict refused = guard.inspect(unmasked, sizeof unmasked);
    CHECK(refused.status == state::refused);
    CHECK(refused.reason == reason::frame_not_masked);
    CHECK(refused.close_code() == 1002);
    CHECK(refused.close_code() == refused.decision.close_code());
    CHECK(refused.decision().reason == refused.decision.reason);
}

TEST_CASE("0.1: proxy_header::status and reason, client_address::reason, decision()", "[vocabulary][deprecated]") {
    using state = wsguard::proxy_header::state;
    const std::string v1 = "PROXY TCP4 198.51.100.7 10.0.0.9 56324 443\r\n";
    const auto* bytes = reinterpret_cast<const std::uint8_t*>(v1.data());
    const wsguard::proxy_header part = wsguard::parse_proxy_header(bytes, 10);
    CHECK(part.status == state::need_more);
    CHECK(part.reason == reason::ok);
    const wsguard::proxy_header whole = wsguard::parse_proxy_header(bytes, v1.size());
    CHECK(whole.status == state::allowed);
    CHECK(whole.decision().allowed());
    const std::string http = "GET / HTTP/1.1\r\n";
    const wsguard::proxy_header missing =
        wsguard::parse_proxy_header(reinterpret_cast<const std::uint8_t*>(http.data()), http.size());
    CHECK(missing.status == state::refused);
    CHECK(missing.reason == reason::proxy_header_missing);
    CHECK(missing.decision() == missing.decision);

    const wsguard::client_address good = wsguard::client_address::from_peer("192.0.2.1");
    CHECK(good.reason == reason::ok);
    CHECK(good.decision().allowed());
    const wsguard::client_address bad = wsguard::client_address::from_peer("not an address");
    CHECK(bad.reason == reason::address_malformed);
    CHECK(bad.decision().reason == bad.decision.reason);
}

TEST_CASE("0.1: refusal_event::reason is decision.reason", "[vocabulary][deprecated]") {
    std::vector<wsguard::refusal_event> events;
    wsguard::handshake_config cfg;
    wsguard::route_config route;
    route.path = "/ws";
    route.origins = {"https://app.example.com"};
    route.ticket = wsguard::ticket_requirement::none;
    cfg.routes.push_back(route);
    cfg.on_refusal = [&events](const wsguard::refusal_event& e) { events.push_back(e); };
    auto guard = wsguard::handshake_guard::create(cfg);
    REQUIRE(guard);
    wsguard::upgrade_request request;
    request.method = "GET";
    request.path = "/ws";
    request.origin = "https://evil.example";
    request.remote_address = "192.0.2.10:50000";
    const wsguard::handshake_outcome outcome = guard->check(request);
    REQUIRE_FALSE(outcome.allowed());
    REQUIRE(events.size() == 1);
    CHECK(events[0].reason == outcome.decision.reason);
    CHECK(events[0].decision == outcome.decision);
}
