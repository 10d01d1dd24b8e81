// mint_guard (the ticket endpoint) and request_head_budget (raw head caps).
#include <wsguard.hpp>

#include <map>
#include <string>
#include <vector>

#include "catch.hpp"

using wsguard::reason;
using namespace std::chrono_literals;

namespace {

const auto t0 = std::chrono::steady_clock::time_point(std::chrono::seconds(1000));
const std::string page = "https://app.example.com";

wsguard::mint_config base_config() {
    wsguard::mint_config cfg;
    cfg.origins = {page, "https://*.example.org"};
    cfg.subject_rate = wsguard::rate::per_second(1);
    cfg.subject_burst = 3;
    cfg.address_rate = wsguard::rate::per_second(100);
    cfg.address_burst = 100;
    cfg.preflight_max_age = 600s;
    return cfg;
}

wsguard::mint_guard make_guard(wsguard::mint_config cfg = base_config()) {
    auto guard = wsguard::mint_guard::create(std::move(cfg));
    INFO(guard.error());
    REQUIRE(guard);
    return std::move(guard).value();
}

// What fetch("/ticket", {method: "POST", credentials: "include",
// headers: {"X-Wsguard-Ticket": "1"}}) sends from the page, after the
// application found the user "alice" behind the cookie.
wsguard::mint_request page_post(std::string_view origin = page) {
    wsguard::mint_request r;
    r.method = "POST";
    r.origin = origin;
    r.sec_fetch_site = "same-origin";
    r.marker = "1";
    r.subject = "alice";
    r.remote_address = "192.0.2.10:50000";
    return r;
}

wsguard::mint_request preflight_from(std::string_view origin) {
    wsguard::mint_request r;
    r.method = "OPTIONS";
    r.origin = origin;
    r.sec_fetch_site = "same-site";
    r.access_control_request_method = "POST";
    r.access_control_request_headers = "x-wsguard-ticket";
    return r;
}

std::map<std::string, std::string> headers_of(const wsguard::mint_answer& answer) {
    std::map<std::string, std::string> out;
    for (const wsguard::http_header& h : answer) out[std::string(h.name)] = std::string(h.value);
    return out;
}

}  // namespace

TEST_CASE("mint_guard allows the page's own POST with the marker and answers 200 with the CORS pair", "[mint]") {
    wsguard::mint_guard guard = make_guard();
    const wsguard::mint_request request = page_post();
    const wsguard::mint_answer answer = guard.check(request, t0);
    REQUIRE(answer.allowed());
    CHECK(answer.http_status() == 200);
    CHECK(answer.body().empty());
    const std::map<std::string, std::string> expected = {
        {"Vary", "Origin"},
        {"Access-Control-Allow-Origin", page},
        {"Access-Control-Allow-Credentials", "true"},
    };
    CHECK(headers_of(answer) == expected);
}

TEST_CASE("mint_guard refuses a simple cross-site form POST, whatever the form's origin", "[mint]") {
    // <form method=post action=https://api/ticket> on evil.example: no custom
    // header is possible, Sec-Fetch-Site says cross-site, Origin is evil's.
    wsguard::mint_guard guard = make_guard();
    wsguard::mint_request form = page_post("https://evil.example");
    form.marker = {};
    form.sec_fetch_site = "cross-site";
    CHECK(guard.check(form, t0).decision.reason == reason::origin_not_allowed);

    // Even from an allowed page (same-origin), a POST without the marker
    // is a simple request a browser would send without preflight: refused.
    wsguard::mint_request same_origin_form = page_post();
    same_origin_form.marker = {};
    const wsguard::mint_answer answer = guard.check(same_origin_form, t0);
    CHECK(answer.decision.reason == reason::mint_not_preflighted);
    CHECK(answer.http_status() == 403);
    CHECK(answer.body() == "mint_not_preflighted");

    // Any value but "1" is not the marker either.
    same_origin_form.marker = "true";
    CHECK(guard.check(same_origin_form, t0).decision.reason == reason::mint_not_preflighted);
}

TEST_CASE("mint_guard refuses each bad request with its precise reason", "[mint]") {
    wsguard::mint_guard guard = make_guard();
    struct row {
        const char* what;
        void (*edit)(wsguard::mint_request&);
        reason expected;
    };
    const row rows[] = {
        {"GET", [](wsguard::mint_request& r) { r.method = "GET"; }, reason::mint_method_not_post},
        {"lowercase post", [](wsguard::mint_request& r) { r.method = "post"; }, reason::mint_method_not_post},
        {"OPTIONS sent to check", [](wsguard::mint_request& r) { r.method = "OPTIONS"; }, reason::mint_method_not_post},
        {"wrong origin", [](wsguard::mint_request& r) { r.origin = "https://evil.example"; }, reason::origin_not_allowed},
        {"suffix trick", [](wsguard::mint_request& r) { r.origin = "https://app.example.com.evil.example"; },
         reason::origin_not_allowed},
        {"other scheme", [](wsguard::mint_request& r) { r.origin = "http://app.example.com"; }, reason::origin_not_allowed},
        {"no origin", [](wsguard::mint_request& r) { r.origin = {}; }, reason::origin_missing},
        {"null origin", [](wsguard::mint_request& r) { r.origin = "null"; }, reason::origin_null},
        {"cross-site", [](wsguard::mint_request& r) { r.sec_fetch_site = "cross-site"; }, reason::fetch_site_cross_site},
        {"odd fetch site", [](wsguard::mint_request& r) { r.sec_fetch_site = "elsewhere"; }, reason::fetch_site_malformed},
        {"no marker", [](wsguard::mint_request& r) { r.marker = {}; }, reason::mint_not_preflighted},
        {"bad address", [](wsguard::mint_request& r) { r.remote_address = "not-an-address"; }, reason::address_malformed},
        {"not logged in", [](wsguard::mint_request& r) { r.subject = {}; }, reason::mint_subject_missing},
    };
    for (const row& r : rows) {
        INFO(r.what);
        wsguard::mint_request request = page_post();
        r.edit(request);
        const wsguard::mint_answer answer = guard.check(request, t0);
        CHECK(answer.decision.reason == r.expected);
        CHECK(answer.http_status() == wsguard::http_status_of(r.expected));
    }
    const std::string long_subject(wsguard::ticket_limits::max_subject + 1, 'u');
    wsguard::mint_request request = page_post();
    request.subject = long_subject;
    CHECK(guard.check(request, t0).decision.reason == reason::ticket_field_too_long);
}

TEST_CASE("mint_guard answers a wrong method with 405 and an Allow header", "[mint]") {
    wsguard::mint_guard guard = make_guard();
    wsguard::mint_request request = page_post();
    request.method = "PUT";
    const wsguard::mint_answer answer = guard.check(request, t0);
    CHECK(answer.http_status() == 405);
    CHECK(headers_of(answer).at("Allow") == "POST, OPTIONS");
}

TEST_CASE("mint_guard sends the CORS pair on a later refusal only for an allowed origin", "[mint]") {
    wsguard::mint_guard guard = make_guard();
    wsguard::mint_request logged_out = page_post();
    logged_out.subject = {};
    const auto allowed_page = headers_of(guard.check(logged_out, t0));
    CHECK(allowed_page.at("Access-Control-Allow-Origin") == page);  // the page may read "401"
    wsguard::mint_request evil = page_post("https://evil.example");
    const auto refused = headers_of(guard.check(evil, t0));
    CHECK(refused.count("Access-Control-Allow-Origin") == 0);
    CHECK(refused.count("Access-Control-Allow-Credentials") == 0);
    CHECK(refused.at("Vary") == "Origin");
}

TEST_CASE("mint_guard answers the preflight of an allowed origin with exactly the CORS headers", "[mint]") {
    wsguard::mint_guard guard = make_guard();
    for (const char* origin : {"https://app.example.com", "https://shop.example.org"}) {
        INFO(origin);
        const wsguard::mint_request request = preflight_from(origin);
        const wsguard::mint_answer answer = guard.preflight(request);
        REQUIRE(answer.allowed());
        CHECK(answer.http_status() == 204);
        const std::map<std::string, std::string> expected = {
            {"Access-Control-Allow-Origin", origin},
            {"Access-Control-Allow-Credentials", "true"},
            {"Access-Control-Allow-Methods", "POST"},
            {"Access-Control-Allow-Headers", "X-Wsguard-Ticket"},
            {"Access-Control-Max-Age", "600"},
            {"Vary", "Origin"},
        };
        CHECK(headers_of(answer) == expected);
        CHECK(answer.header_count() == expected.size());
    }
}

TEST_CASE("mint_guard refuses the preflight of any other origin and sends no Allow-Origin", "[mint]") {
    wsguard::mint_guard guard = make_guard();
    struct row {
        const char* origin;
        const char* method;
        const char* fetch_site;
        reason expected;
    };
    const row rows[] = {
        {"https://evil.example", "POST", "cross-site", reason::origin_not_allowed},
        {"https://example.org", "POST", "same-site", reason::origin_not_allowed},  // the wildcard's apex
        {"null", "POST", "cross-site", reason::origin_null},
        {"", "POST", "", reason::origin_missing},
        {"https://app.example.com", "PUT", "same-origin", reason::mint_method_not_post},
        {"https://app.example.com", "", "same-origin", reason::mint_method_not_post},
        {"https://app.example.com", "POST", "cross-site", reason::fetch_site_cross_site},
    };
    for (const row& r : rows) {
        INFO(r.origin << " " << r.method);
        wsguard::mint_request request = preflight_from(r.origin);
        request.access_control_request_method = r.method;
        request.sec_fetch_site = r.fetch_site;
        const wsguard::mint_answer answer = guard.preflight(request);
        CHECK(answer.decision.reason == r.expected);
        const auto headers = headers_of(answer);
        CHECK(headers.count("Access-Control-Allow-Origin") == 0);
        CHECK(headers.count("Access-Control-Allow-Headers") == 0);
        CHECK(headers.at("Vary") == "Origin");
    }
    // The marker must be among the headers the POST will carry (any case, any spacing).
    wsguard::mint_request without_marker = preflight_from(page);
    without_marker.access_control_request_headers = "content-type";
    CHECK(guard.preflight(without_marker).decision.reason == reason::mint_not_preflighted);
    without_marker.access_control_request_headers = {};
    CHECK(guard.preflight(without_marker).decision.reason == reason::mint_not_preflighted);
    wsguard::mint_request listed = preflight_from(page);
    listed.access_control_request_headers = "content-type , X-WSGUARD-TICKET";
    CHECK(guard.preflight(listed).allowed());
    // A POST sent to preflight() is not a preflight.
    CHECK(guard.preflight(page_post()).decision.reason == reason::mint_method_not_post);
}

TEST_CASE("mint_guard's preflight needs an Origin even when missing origins may mint", "[mint]") {
    wsguard::mint_config cfg = base_config();
    cfg.origin_options.allow_missing_origin = true;
    wsguard::mint_guard guard = make_guard(cfg);
    CHECK(guard.preflight(preflight_from("")).decision.reason == reason::origin_missing);
    wsguard::mint_request native = page_post("");
    native.sec_fetch_site = {};
    const wsguard::mint_answer answer = guard.check(native, t0);
    CHECK(answer.allowed());
    CHECK(headers_of(answer).count("Access-Control-Allow-Origin") == 0);
}

TEST_CASE("mint_guard applies the same-site rule and the cross-site opt-in as configured", "[mint]") {
    wsguard::mint_request sibling = page_post();
    sibling.sec_fetch_site = "same-site";
    CHECK(make_guard().check(sibling, t0).allowed());
    wsguard::mint_config strict = base_config();
    strict.fetch_site = wsguard::fetch_site_policy::deny_cross_site_and_same_site;
    CHECK(make_guard(strict).check(sibling, t0).decision.reason == reason::fetch_site_cross_site);

    wsguard::mint_request other_site = page_post();
    other_site.sec_fetch_site = "cross-site";
    CHECK(make_guard().check(other_site, t0).decision.reason == reason::fetch_site_cross_site);
    wsguard::mint_config cross = base_config();
    cross.allow_cross_site = true;
    wsguard::mint_guard cross_guard = make_guard(cross);
    CHECK(cross_guard.check(other_site, t0).allowed());
    CHECK(cross_guard.preflight(preflight_from(page)).allowed());
    // The opt-in never widens the Origin allowlist.
    wsguard::mint_request evil = page_post("https://evil.example");
    evil.sec_fetch_site = "cross-site";
    CHECK(cross_guard.check(evil, t0).decision.reason == reason::origin_not_allowed);
}

TEST_CASE("mint_guard limits mints per subject with retry_after, independently per subject", "[mint]") {
    wsguard::mint_guard guard = make_guard();  // 1 per second, burst 3
    wsguard::mint_request alice = page_post();
    for (int i = 0; i < 3; ++i) CHECK(guard.check(alice, t0).allowed());
    const wsguard::mint_answer limited = guard.check(alice, t0);
    CHECK(limited.decision.reason == reason::mint_rate_limited);
    CHECK(limited.http_status() == 429);
    CHECK(limited.decision.retry_after == 1000ms);
    CHECK(limited.retry_after_seconds() == 1);

    wsguard::mint_request bob = page_post();
    bob.subject = "bob";
    CHECK(guard.check(bob, t0).allowed());  // another subject has its own budget

    CHECK(guard.check(alice, t0 + 999ms).decision.reason == reason::mint_rate_limited);
    CHECK(guard.check(alice, t0 + 1000ms).allowed());

    // Refusals before the rate (no marker, wrong origin) spend nothing.
    wsguard::mint_request carol = page_post();
    carol.subject = "carol";
    carol.marker = {};
    const auto later = t0 + 10s;
    for (int i = 0; i < 10; ++i) CHECK(guard.check(carol, later).decision.reason == reason::mint_not_preflighted);
    carol.marker = "1";
    for (int i = 0; i < 3; ++i) CHECK(guard.check(carol, later).allowed());
    CHECK(guard.check(carol, later).decision.reason == reason::mint_rate_limited);
}

TEST_CASE("mint_guard limits mints per address before it looks at the subject", "[mint]") {
    wsguard::mint_config cfg = base_config();
    cfg.address_rate = wsguard::rate::per_minute(1);
    cfg.address_burst = 2;
    wsguard::mint_guard guard = make_guard(cfg);
    wsguard::mint_request guess = page_post();
    guess.subject = {};  // a caller guessing cookies: never logged in
    CHECK(guard.check(guess, t0).decision.reason == reason::mint_subject_missing);
    CHECK(guard.check(guess, t0).decision.reason == reason::mint_subject_missing);
    const wsguard::mint_answer limited = guard.check(guess, t0);
    CHECK(limited.decision.reason == reason::rate_limited);
    CHECK(limited.retry_after_seconds() == 60);  // one per minute
    wsguard::mint_request elsewhere = page_post();
    const std::uint8_t other[4] = {198, 51, 100, 7};
    elsewhere.remote_address_bytes = other;
    elsewhere.remote_address_size = sizeof other;
    CHECK(guard.check(elsewhere, t0).allowed());
}

TEST_CASE("mint_guard::create refuses configurations that would defeat it", "[mint]") {
    struct row {
        const char* what;
        void (*edit)(wsguard::mint_config&);
        const char* message_part;
    };
    const row rows[] = {
        {"no origins", [](wsguard::mint_config& c) { c.origins.clear(); }, "pattern list is empty"},
        {"star", [](wsguard::mint_config& c) { c.origins = {"*"}; }, "every origin"},
        {"any origin", [](wsguard::mint_config& c) { c.origin_options.allow_any_origin_unsafe = true; }, "every page"},
        {"safelisted marker", [](wsguard::mint_config& c) { c.marker_header = "Content-Type"; }, "CORS-safelisted"},
        {"forbidden marker", [](wsguard::mint_config& c) { c.marker_header = "Cookie"; }, "forbid"},
        {"sec- marker", [](wsguard::mint_config& c) { c.marker_header = "Sec-Wsguard"; }, "forbid"},
        {"not a token", [](wsguard::mint_config& c) { c.marker_header = "X Wsguard"; }, "not an HTTP token"},
        {"empty marker", [](wsguard::mint_config& c) { c.marker_header.clear(); }, "1 to 64"},
        {"zero rate", [](wsguard::mint_config& c) { c.subject_rate = wsguard::rate::per_second(0); }, "subject rate"},
        {"zero table", [](wsguard::mint_config& c) { c.address_table_capacity = 0; }, "address rate"},
        {"max age", [](wsguard::mint_config& c) { c.preflight_max_age = std::chrono::hours(48); }, "preflight_max_age"},
    };
    for (const row& r : rows) {
        INFO(r.what);
        wsguard::mint_config cfg = base_config();
        r.edit(cfg);
        const auto made = wsguard::mint_guard::create(cfg);
        REQUIRE_FALSE(made);
        INFO(made.error());
        CHECK(made.error().find("mint_guard") != std::string::npos);
        CHECK(made.error().find(r.message_part) != std::string::npos);
    }
}

TEST_CASE("mint_guard takes a custom marker header and names it in the preflight answer", "[mint]") {
    wsguard::mint_config cfg = base_config();
    cfg.marker_header = "X-Requested-With";
    wsguard::mint_guard guard = make_guard(cfg);
    CHECK(guard.marker_header() == "X-Requested-With");
    wsguard::mint_request request = preflight_from(page);
    request.access_control_request_headers = "x-requested-with";
    CHECK(headers_of(guard.preflight(request)).at("Access-Control-Allow-Headers") == "X-Requested-With");
}

// ---------------------------------------------------------------------------
// request_head_budget
// ---------------------------------------------------------------------------
namespace {

// The client handshake of RFC 6455 section 1.2 (lines end in CRLF, 4.1).
const std::string rfc6455_request =
    "GET /chat HTTP/1.1\r\n"
    "Host: server.example.com\r\n"
    "Upgrade: websocket\r\n"
    "Connection: Upgrade\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    "Origin: http://example.com\r\n"
    "Sec-WebSocket-Protocol: chat, superchat\r\n"
    "Sec-WebSocket-Version: 13\r\n"
    "\r\n";

wsguard::request_head_budget make_budget(wsguard::head_limits limits = {}) {
    auto budget = wsguard::request_head_budget::create(limits);
    INFO(budget.error());
    REQUIRE(budget);
    return std::move(budget).value();
}

struct outcome {
    wsguard::head_status status;
    std::size_t head_size;
    reason why;
    bool operator==(const outcome& o) const { return status == o.status && head_size == o.head_size && why == o.why; }
};

outcome feed_whole(const std::string& bytes, wsguard::head_limits limits) {
    wsguard::request_head_budget budget = make_budget(limits);
    const wsguard::head_verdict v = budget.feed(bytes);
    return {v.status, v.head_size, v.decision.reason};
}

// Feeds bytes[0, split) then the rest; then byte by byte.
std::vector<outcome> feed_split_everywhere(const std::string& bytes, wsguard::head_limits limits) {
    std::vector<outcome> outcomes;
    for (std::size_t split = 0; split <= bytes.size(); ++split) {
        wsguard::request_head_budget budget = make_budget(limits);
        (void)budget.feed(bytes.data(), split);
        const wsguard::head_verdict v = budget.feed(bytes.data() + split, bytes.size() - split);
        outcomes.push_back({v.status, v.head_size, v.decision.reason});
    }
    wsguard::request_head_budget budget = make_budget(limits);
    wsguard::head_verdict v{};
    for (char c : bytes) v = budget.feed(&c, 1);
    outcomes.push_back({v.status, v.head_size, v.decision.reason});
    return outcomes;
}

}  // namespace

TEST_CASE("request_head_budget finds the end of RFC 6455's sample handshake and leaves the rest", "[head]") {
    const std::string with_frame = rfc6455_request + "\x81\x85";  // the first frame follows the head
    const outcome whole = feed_whole(with_frame, {});
    CHECK(whole == outcome{wsguard::head_status::complete, rfc6455_request.size(), reason::ok});
    wsguard::request_head_budget budget = make_budget();
    const wsguard::head_verdict partial = budget.feed(rfc6455_request.substr(0, 40));
    CHECK(partial.status == wsguard::head_status::need_more);
    CHECK(static_cast<bool>(partial));
}

TEST_CASE("request_head_budget gives the same answer wherever the bytes are split", "[head]") {
    wsguard::head_limits tight;
    tight.max_head_bytes = 200;
    tight.max_header_lines = 5;
    std::string many_lines = "GET / HTTP/1.1\r\n";
    for (int i = 0; i < 6; ++i) many_lines += "A: b\r\n";
    many_lines += "\r\n";
    struct row {
        const char* what;
        std::string bytes;
        wsguard::head_limits limits;
        outcome expected;
    };
    const std::vector<row> rows = {
        {"RFC 6455 sample", rfc6455_request + "tail", {}, {wsguard::head_status::complete, rfc6455_request.size(), reason::ok}},
        {"exactly at the byte cap", rfc6455_request, {rfc6455_request.size(), 64},
         {wsguard::head_status::complete, rfc6455_request.size(), reason::ok}},
        {"one byte over the byte cap", rfc6455_request, {rfc6455_request.size() - 1, 64},
         {wsguard::head_status::refused, 0, reason::request_head_too_large}},
        {"an endless header", "GET / HTTP/1.1\r\nX: " + std::string(300, 'a'), tight,
         {wsguard::head_status::refused, 0, reason::request_head_too_large}},
        {"too many header lines", many_lines, tight, {wsguard::head_status::refused, 0, reason::too_many_header_lines}},
        {"exactly the line cap", "GET / HTTP/1.1\r\nA: b\r\nA: b\r\nA: b\r\nA: b\r\nA: b\r\n\r\n", tight,
         {wsguard::head_status::complete, 48, reason::ok}},
        {"bare LF", "GET / HTTP/1.1\nHost: a\r\n\r\n", {}, {wsguard::head_status::refused, 0, reason::request_malformed}},
        {"bare CR", "GET / HTTP/1.1\rHost: a\r\n\r\n", {}, {wsguard::head_status::refused, 0, reason::request_malformed}},
        {"NUL", std::string("GET / HTTP/1.1\r\nHost: a\0b\r\n\r\n", 29), {},
         {wsguard::head_status::refused, 0, reason::request_malformed}},
        {"obs-fold", "GET / HTTP/1.1\r\nX: a\r\n b\r\n\r\n", {}, {wsguard::head_status::refused, 0, reason::request_malformed}},
        {"empty lines before the request line", "\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", {},
         {wsguard::head_status::complete, 31, reason::ok}},
        {"not finished", "GET / HTTP/1.1\r\nHost: a\r\n", {}, {wsguard::head_status::need_more, 0, reason::ok}},
    };
    for (const row& r : rows) {
        INFO(r.what);
        CHECK(feed_whole(r.bytes, r.limits) == r.expected);
        for (const outcome& o : feed_split_everywhere(r.bytes, r.limits)) CHECK(o == r.expected);
    }
}

TEST_CASE("request_head_budget refuses at the first byte over a cap, not at the end of the line", "[head]") {
    wsguard::head_limits limits;
    limits.max_head_bytes = 100;
    wsguard::request_head_budget budget = make_budget(limits);
    const std::string start = "GET / HTTP/1.1\r\nX: ";
    CHECK(budget.feed(start + std::string(100 - start.size(), 'a')).status == wsguard::head_status::need_more);
    const wsguard::head_verdict over = budget.feed("a", 1);
    CHECK(over.status == wsguard::head_status::refused);
    CHECK(over.decision.http_status() == 431);
    CHECK_FALSE(static_cast<bool>(over));
    // Sticky: nothing more is inspected.
    CHECK(budget.feed("\r\n\r\n").decision.reason == reason::request_head_too_large);
    CHECK(budget.bytes_seen() == 101);
}

TEST_CASE("request_head_budget is reusable for the next request after reset", "[head]") {
    wsguard::request_head_budget budget = make_budget();
    CHECK(budget.feed(rfc6455_request).status == wsguard::head_status::complete);
    CHECK(budget.feed("GET").head_size == rfc6455_request.size());  // still the first head
    budget.reset();
    CHECK(budget.verdict().status == wsguard::head_status::need_more);
    CHECK(budget.feed(rfc6455_request).head_size == rfc6455_request.size());
}

TEST_CASE("request_head_budget::create refuses limits that are no limits", "[head]") {
    CHECK_FALSE(wsguard::request_head_budget::create({10, 64}));
    CHECK_FALSE(wsguard::request_head_budget::create({2 * 1024 * 1024, 64}));
    CHECK_FALSE(wsguard::request_head_budget::create({8192, 0}));
    CHECK(wsguard::request_head_budget::create({8192, 64}));
}
