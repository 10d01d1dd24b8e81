// The shared vocabulary: reason, decision, result.
#include <wsguard.hpp>

#include <set>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "catch.hpp"

using wsguard::reason;

TEST_CASE("to_string of every reason is pinned and never changes", "[vocabulary]") {
    // This table is the contract for logs and dashboards: a failing line here
    // means a published name or number changed, which must not happen.
    struct pinned { reason r; int number; const char* name; };
    const std::vector<pinned> table = {
        {reason::ok, 0, "ok"},
        {reason::request_malformed, 100, "request_malformed"},
        {reason::method_not_get, 101, "method_not_get"},
        {reason::route_not_found, 102, "route_not_found"},
        {reason::forwarded_malformed, 103, "forwarded_malformed"},
        {reason::forwarded_too_many_hops, 104, "forwarded_too_many_hops"},
        {reason::forwarded_unknown_hop, 105, "forwarded_unknown_hop"},
        {reason::proxy_header_malformed, 106, "proxy_header_malformed"},
        {reason::proxy_header_missing, 107, "proxy_header_missing"},
        {reason::proxy_header_unsupported, 108, "proxy_header_unsupported"},
        {reason::request_head_too_large, 110, "request_head_too_large"},
        {reason::too_many_header_lines, 111, "too_many_header_lines"},
        {reason::mint_method_not_post, 112, "mint_method_not_post"},
        {reason::mint_not_preflighted, 113, "mint_not_preflighted"},
        {reason::mint_rate_limited, 114, "mint_rate_limited"},
        {reason::mint_subject_missing, 115, "mint_subject_missing"},
        {reason::security_header_repeated, 116, "security_header_repeated"},
        {reason::origin_missing, 200, "origin_missing"},
        {reason::origin_null, 201, "origin_null"},
        {reason::origin_malformed, 202, "origin_malformed"},
        {reason::origin_too_long, 203, "origin_too_long"},
        {reason::origin_not_allowed, 204, "origin_not_allowed"},
        {reason::host_missing, 210, "host_missing"},
        {reason::host_malformed, 211, "host_malformed"},
        {reason::host_not_allowed, 212, "host_not_allowed"},
        {reason::fetch_site_cross_site, 220, "fetch_site_cross_site"},
        {reason::fetch_site_malformed, 221, "fetch_site_malformed"},
        {reason::ticket_missing, 300, "ticket_missing"},
        {reason::ticket_too_long, 301, "ticket_too_long"},
        {reason::ticket_malformed, 302, "ticket_malformed"},
        {reason::ticket_bad_version, 303, "ticket_bad_version"},
        {reason::ticket_unknown_key, 304, "ticket_unknown_key"},
        {reason::ticket_bad_mac, 305, "ticket_bad_mac"},
        {reason::ticket_expired, 306, "ticket_expired"},
        {reason::ticket_not_yet_valid, 307, "ticket_not_yet_valid"},
        {reason::ticket_origin_mismatch, 308, "ticket_origin_mismatch"},
        {reason::ticket_audience_mismatch, 309, "ticket_audience_mismatch"},
        {reason::ticket_replayed, 310, "ticket_replayed"},
        {reason::ticket_before_store_start, 311, "ticket_before_store_start"},
        {reason::ticket_scope_missing, 312, "ticket_scope_missing"},
        {reason::ticket_field_too_long, 313, "ticket_field_too_long"},
        {reason::ticket_message_expected, 314, "ticket_message_expected"},
        {reason::ticket_deadline_passed, 315, "ticket_deadline_passed"},
        {reason::rate_limited, 400, "rate_limited"},
        {reason::too_many_connections, 401, "too_many_connections"},
        {reason::message_rate_limited, 402, "message_rate_limited"},
        {reason::address_malformed, 403, "address_malformed"},
        {reason::too_many_pending, 404, "too_many_pending"},
        {reason::handshake_deadline_passed, 405, "handshake_deadline_passed"},
        {reason::client_penalized, 406, "client_penalized"},
        {reason::too_many_connections_for_subject, 407, "too_many_connections_for_subject"},
        {reason::frame_too_large, 500, "frame_too_large"},
        {reason::message_too_large, 501, "message_too_large"},
        {reason::frame_not_masked, 502, "frame_not_masked"},
        {reason::frame_masked, 503, "frame_masked"},
        {reason::frame_reserved_bits, 504, "frame_reserved_bits"},
        {reason::frame_reserved_opcode, 505, "frame_reserved_opcode"},
        {reason::control_frame_too_long, 506, "control_frame_too_long"},
        {reason::control_frame_fragmented, 507, "control_frame_fragmented"},
        {reason::close_frame_length_one, 508, "close_frame_length_one"},
        {reason::frame_length_not_minimal, 509, "frame_length_not_minimal"},
        {reason::frame_length_msb_set, 510, "frame_length_msb_set"},
        {reason::unexpected_continuation, 511, "unexpected_continuation"},
        {reason::expected_continuation, 512, "expected_continuation"},
        {reason::too_many_fragments, 513, "too_many_fragments"},
        {reason::inflate_too_large, 514, "inflate_too_large"},
        {reason::inflate_ratio_exceeded, 515, "inflate_ratio_exceeded"},
        {reason::replay_store_full, 900, "replay_store_full"},
        {reason::store_unavailable, 901, "store_unavailable"},
        {reason::random_unavailable, 902, "random_unavailable"},
        {reason::internal_error, 903, "internal_error"},
        {reason::store_evicting, 904, "store_evicting"},
        {reason::store_policy_unknown, 905, "store_policy_unknown"},
    };
    // Every reason in the library's table is pinned here, and vice versa.
    REQUIRE(table.size() == std::size(wsguard::detail::reason_table));
    REQUIRE(table.size() == wsguard::all_reasons.size());
    for (std::size_t i = 0; i < table.size(); ++i) CHECK(wsguard::all_reasons[i] == table[i].r);
    for (const auto& p : table) {
        INFO(p.name);
        CHECK(static_cast<int>(p.r) == p.number);
        CHECK(std::string(wsguard::to_string(p.r)) == p.name);
    }
}

TEST_CASE("reason names are unique snake_case and numbers are unique", "[vocabulary]") {
    std::set<std::string> names;
    std::set<int> numbers;
    for (const auto& entry : wsguard::detail::reason_table) {
        const std::string name = entry.name;
        CHECK(names.insert(name).second);
        CHECK(numbers.insert(static_cast<int>(entry.value)).second);
        for (char c : name) CHECK(((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_'));
    }
}

TEST_CASE("ok is zero, allowed, HTTP 0, and the only reason in the ok category", "[vocabulary]") {
    CHECK(static_cast<int>(reason::ok) == 0);
    const wsguard::decision d;
    CHECK(d.allowed());
    CHECK(static_cast<bool>(d));
    CHECK(d.http_status() == 0);
    CHECK(d.reason == reason::ok);
    for (const auto& entry : wsguard::detail::reason_table) {
        CHECK((entry.category == wsguard::reason_category::ok) == (entry.value == reason::ok));
        if (entry.value != reason::ok) {
            INFO(entry.name);
            CHECK(entry.http_status >= 400);
            CHECK(entry.close_code >= 1002);
        }
    }
}

TEST_CASE("a refusal is falsy and carries the status and close code of its reason", "[vocabulary]") {
    const wsguard::decision null_origin{reason::origin_null};
    CHECK_FALSE(null_origin.allowed());
    CHECK_FALSE(static_cast<bool>(null_origin));
    CHECK(null_origin.http_status() == 403);
    CHECK(null_origin.close_code() == 1008);
    CHECK(null_origin.category() == wsguard::reason_category::origin);

    CHECK(wsguard::decision{reason::ticket_bad_mac}.http_status() == 401);
    CHECK(wsguard::decision{reason::rate_limited}.http_status() == 429);
    CHECK(wsguard::decision{reason::message_too_large}.close_code() == 1009);
    CHECK(wsguard::decision{reason::frame_not_masked}.close_code() == 1002);
    CHECK(wsguard::decision{reason::store_unavailable}.http_status() == 503);
}

TEST_CASE("Retry-After seconds round up and are never zero when a wait is set", "[vocabulary]") {
    using std::chrono::milliseconds;
    CHECK(wsguard::decision{reason::rate_limited, milliseconds(1)}.retry_after_seconds() == 1);
    CHECK(wsguard::decision{reason::rate_limited, milliseconds(1000)}.retry_after_seconds() == 1);
    CHECK(wsguard::decision{reason::rate_limited, milliseconds(1001)}.retry_after_seconds() == 2);
    CHECK(wsguard::decision{reason::rate_limited}.retry_after_seconds() == 0);
}

TEST_CASE("category names are stable", "[vocabulary]") {
    CHECK(std::string(wsguard::to_string(wsguard::reason_category::origin)) == "origin");
    CHECK(std::string(wsguard::to_string(wsguard::reason_category::rate_limit)) == "rate_limit");
    CHECK(std::string(wsguard::to_string(wsguard::reason_category::unavailable)) == "unavailable");
}

TEST_CASE("a successful result gives its value and an empty error", "[vocabulary]") {
    auto r = wsguard::result<int>::success(42);
    REQUIRE(r);
    CHECK(r.value() == 42);
    CHECK(*r == 42);
    CHECK(r.error().empty());
}

TEST_CASE("a failed result is falsy and says what is wrong", "[vocabulary]") {
    auto r = wsguard::result<std::string>::failure("pattern \"*\" allows every origin");
    CHECK_FALSE(r);
    CHECK(r.error().find("every origin") != std::string::npos);
}

// One spelling for an outcome: result types carry a data member `decision`,
// permits a decision() function. (The 0.1 spellings: test_outcome_spellings_0_1.cpp.)
template <class T>
constexpr bool has_decision_member = std::is_convertible<decltype(std::declval<const T&>().decision), wsguard::decision>::value;
template <class T>
constexpr bool answers_decision = std::is_same<decltype(std::declval<const T&>().decision()), wsguard::decision>::value;

TEST_CASE("every outcome is spelled decision, and close_code() is 1000 when allowed", "[vocabulary]") {
    static_assert(has_decision_member<wsguard::handshake_outcome>, "");
    static_assert(has_decision_member<wsguard::issued_ticket>, "");
    static_assert(has_decision_member<wsguard::ticket_source>, "");
    static_assert(has_decision_member<wsguard::gate_verdict>, "");
    static_assert(has_decision_member<wsguard::frame_verdict>, "");
    static_assert(has_decision_member<wsguard::proxy_header>, "");
    static_assert(has_decision_member<wsguard::client_address>, "");
    static_assert(has_decision_member<wsguard::head_verdict>, "");
    static_assert(has_decision_member<wsguard::mint_answer>, "");
    static_assert(has_decision_member<wsguard::refusal_event>, "");
    static_assert(answers_decision<wsguard::handshake_permit>, "");
    static_assert(answers_decision<wsguard::accept_permit>, "");
    static_assert(answers_decision<wsguard::connection_limiter<std::string_view>::permit>, "");

    CHECK(wsguard::decision{}.close_code() == 1000);
    CHECK(wsguard::ticket_source{}.decision.reason == reason::ticket_missing);
    CHECK(wsguard::frame_verdict{}.decision.close_code() == 1000);  // need_more: nothing refused
    const wsguard::decision copied = wsguard::frame_verdict{}.decision;
    CHECK(copied.allowed());
}

// That decision, result and reason are [[nodiscard]] is a compile-fail test
// (tests/compile_fail/, registered as the meson test "nodiscard").
TEST_CASE("a decision is trivially copyable and small", "[vocabulary]") {
    static_assert(std::is_trivially_copyable<wsguard::decision>::value, "decision must be cheap to copy");
    static_assert(sizeof(wsguard::decision) <= 16, "decision stays small");
    const wsguard::decision refused = wsguard::reason::rate_limited;
    const wsguard::decision copy = refused;
    CHECK(copy.reason == wsguard::reason::rate_limited);
    CHECK_FALSE(copy.allowed());
}

TEST_CASE("the README's reason table matches the library, row by row", "[vocabulary]") {
    // The table users read (reason → category → HTTP status → close code) must
    // not drift from the code: every reason has exactly its row in README.md.
    std::FILE* f = std::fopen(WSGUARD_SOURCE_DIR "/README.md", "rb");
    REQUIRE(f != nullptr);
    std::string readme;
    char buffer[4096];
    for (std::size_t n; (n = std::fread(buffer, 1, sizeof buffer, f)) > 0;) readme.append(buffer, n);
    std::fclose(f);
    for (const auto& e : wsguard::detail::reason_table) {
        const std::string row = std::string("| `") + e.name + "` | " + std::to_string(static_cast<int>(e.value)) +
                                " | " + wsguard::to_string(e.category) + " | " + std::to_string(e.http_status) +
                                " | " + std::to_string(e.close_code) + " |";
        INFO(row);
        CHECK(readme.find(row) != std::string::npos);
    }
}
