// wsguard: a C++17, single-header, dependency-free toolkit that makes a WebSocket
// server's handshake safe: Origin policy, one-time HMAC tickets, rate limits and a
// frame-size guard, composed by one call from any stack's upgrade callback.
//
// SPDX-License-Identifier: MIT
// Copyright (c) 2026 the wsguard authors. See LICENSE.
//
// Layout of this file, in data order of a handshake:
//   1. version and configuration macros
//   2. vocabulary: reason, decision, result
//   3. origin policy, host allowlist, Sec-Fetch-Site
//   4. crypto: sha256, hmac_sha256, base64url, random bytes
//   5. tickets: keyring, issuer, verifier, replay store, transport helpers
//   6. rate limits: token_bucket, keyed_limiter, connection_limiter, address keys
//   7. frames: frame_guard, inflate_budget
//   8. handshake_guard: the one call that composes them
#ifndef WSGUARD_HPP
#define WSGUARD_HPP

// ===========================================================================
// 1. Version and configuration
// ===========================================================================
//
// Every configuration macro holds 0 or 1 and is tested with #if, so -Wundef
// catches a typo. No macro changes the layout of a public type; a macro that
// changes code is folded into the inline ABI namespace so that translation
// units built with different settings fail to link instead of mixing.
//
//   WSGUARD_NO_SIMD  1: only the portable SHA-256 compression is compiled
//                    (no SHA-NI, no ARMv8 SHA2 paths). Default 0.

#define WSGUARD_VERSION_MAJOR 0
#define WSGUARD_VERSION_MINOR 1
#define WSGUARD_VERSION_PATCH 0
#define WSGUARD_VERSION_STRING "0.1.0"

#ifndef WSGUARD_NO_SIMD
#define WSGUARD_NO_SIMD 0
#endif

#if WSGUARD_NO_SIMD
#define WSGUARD_ABI_NS abi_v0_1_portable
#else
#define WSGUARD_ABI_NS abi_v0_1
#endif

#include <array>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <initializer_list>
#include <limits>
#include <memory>
#include <mutex>
#include <new>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

namespace wsguard {
inline namespace WSGUARD_ABI_NS {

// ===========================================================================
// 2. Vocabulary: reason, decision, result
// ===========================================================================

// One value per outcome. Numbers are explicit and never reused: a retired value
// keeps its number and a new one takes the next free number in its block.
// Blocks: 0 ok, 1xx request shape, 2xx origin/host, 3xx ticket, 4xx rate limits,
// 5xx frames, 9xx unavailable/internal.
enum class reason : std::uint16_t {
    ok = 0,

    // Request shape (handshake_guard)
    request_malformed = 100,      // a header is over its cap or not text
    method_not_get = 101,         // RFC 6455 4.1: the upgrade must be a GET
    route_not_found = 102,        // no route is configured for this path

    // Origin, Host and Sec-Fetch-Site
    origin_missing = 200,         // no Origin header, and non-browser clients are not allowed
    origin_null = 201,            // Origin: null (sandboxed iframe, file:, data:, redirects)
    origin_malformed = 202,       // not exactly one canonical serialized origin
    origin_too_long = 203,        // over the length cap; refused before it is parsed
    origin_not_allowed = 204,     // well-formed, but not on the allowlist
    host_missing = 210,           // no Host header
    host_malformed = 211,         // not a canonical host[:port]
    host_not_allowed = 212,       // not on the Host allowlist (DNS rebinding)
    fetch_site_cross_site = 220,  // Sec-Fetch-Site: cross-site
    fetch_site_malformed = 221,   // Sec-Fetch-Site present but not a known value

    // Tickets
    ticket_missing = 300,
    ticket_too_long = 301,        // over the length cap; refused before decoding
    ticket_malformed = 302,       // not canonical base64url, or a bad layout
    ticket_bad_version = 303,
    ticket_unknown_key = 304,     // key id not in the keyring (or rotated out)
    ticket_bad_mac = 305,
    ticket_expired = 306,
    ticket_not_yet_valid = 307,   // issued in the future beyond the allowed skew
    ticket_origin_mismatch = 308,
    ticket_audience_mismatch = 309,
    ticket_replayed = 310,        // the nonce was already spent
    ticket_before_store_start = 311,  // issued before the replay store existed (restart)
    ticket_scope_missing = 312,   // verified, but lacks the scope an action needs
    ticket_field_too_long = 313,  // issuing: subject/origin/audience/scopes over their caps
    ticket_message_expected = 314,  // first-message gate: a message before the ticket
    ticket_deadline_passed = 315,   // first-message gate: no ticket within the deadline

    // Rate limits
    rate_limited = 400,           // token bucket empty; retry_after says when
    too_many_connections = 401,   // per-key concurrent connection cap
    message_rate_limited = 402,   // per-connection message rate
    address_malformed = 403,      // peer address could not be parsed into a key

    // Frames (RFC 6455 section 5)
    frame_too_large = 500,        // one frame's payload over its cap (1009)
    message_too_large = 501,      // cumulative message size over its cap (1009)
    frame_not_masked = 502,       // client-to-server frame without mask (1002)
    frame_masked = 503,           // server-to-client frame with mask (1002)
    frame_reserved_bits = 504,    // RSV bits set without a defining extension (1002)
    frame_reserved_opcode = 505,  // opcode 3-7 or B-F (1002)
    control_frame_too_long = 506,  // control payload over 125 bytes (1002)
    control_frame_fragmented = 507,  // control frame without FIN (1002)
    close_frame_length_one = 508,  // close payload of exactly one byte (1002)
    frame_length_not_minimal = 509,  // length encoded in more bytes than needed (1002)
    frame_length_msb_set = 510,   // 64-bit length with its top bit set (1002)
    unexpected_continuation = 511,  // continuation with no message in progress (1002)
    expected_continuation = 512,  // new data frame inside a fragmented message (1002)
    too_many_fragments = 513,     // over the configured fragments-per-message cap (1008)
    inflate_too_large = 514,      // permessage-deflate output over its cap (1009)
    inflate_ratio_exceeded = 515,  // permessage-deflate ratio over its bound (1009)

    // Unavailable or internal: fail closed
    replay_store_full = 900,      // no free slot for a nonce: refuse rather than forget
    store_unavailable = 901,      // shared backend (e.g. Redis) unreachable, slow or erroring
    random_unavailable = 902,     // the OS refused to give random bytes
    internal_error = 903,
};

// Coarse grouping for dashboards and for code that only cares "whose fault".
enum class reason_category : std::uint8_t {
    ok = 0,
    request = 1,      // the upgrade request itself is not acceptable
    origin = 2,       // Origin, Host, Sec-Fetch-Site
    ticket = 3,       // authentication of the handshake
    rate_limit = 4,   // too many requests, connections or messages
    protocol = 5,     // a WebSocket frame broke RFC 6455 or a size cap
    unavailable = 6,  // the server could not decide safely and failed closed
};

namespace detail {

struct reason_info {
    reason value;
    const char* name;
    reason_category category;
    std::uint16_t http_status;
    std::uint16_t close_code;
};

// The single table behind to_string, category_of, http_status and close_code.
// HTTP status applies before 101; close code applies after it (first-message
// gate, frames, per-message limits).
inline constexpr reason_info reason_table[] = {
    {reason::ok, "ok", reason_category::ok, 0, 1000},
    {reason::request_malformed, "request_malformed", reason_category::request, 400, 1002},
    {reason::method_not_get, "method_not_get", reason_category::request, 405, 1002},
    {reason::route_not_found, "route_not_found", reason_category::request, 404, 1008},
    {reason::origin_missing, "origin_missing", reason_category::origin, 403, 1008},
    {reason::origin_null, "origin_null", reason_category::origin, 403, 1008},
    {reason::origin_malformed, "origin_malformed", reason_category::origin, 403, 1008},
    {reason::origin_too_long, "origin_too_long", reason_category::origin, 403, 1008},
    {reason::origin_not_allowed, "origin_not_allowed", reason_category::origin, 403, 1008},
    {reason::host_missing, "host_missing", reason_category::origin, 400, 1008},
    {reason::host_malformed, "host_malformed", reason_category::origin, 400, 1008},
    {reason::host_not_allowed, "host_not_allowed", reason_category::origin, 403, 1008},
    {reason::fetch_site_cross_site, "fetch_site_cross_site", reason_category::origin, 403, 1008},
    {reason::fetch_site_malformed, "fetch_site_malformed", reason_category::origin, 400, 1008},
    {reason::ticket_missing, "ticket_missing", reason_category::ticket, 401, 1008},
    {reason::ticket_too_long, "ticket_too_long", reason_category::ticket, 401, 1008},
    {reason::ticket_malformed, "ticket_malformed", reason_category::ticket, 401, 1008},
    {reason::ticket_bad_version, "ticket_bad_version", reason_category::ticket, 401, 1008},
    {reason::ticket_unknown_key, "ticket_unknown_key", reason_category::ticket, 401, 1008},
    {reason::ticket_bad_mac, "ticket_bad_mac", reason_category::ticket, 401, 1008},
    {reason::ticket_expired, "ticket_expired", reason_category::ticket, 401, 1008},
    {reason::ticket_not_yet_valid, "ticket_not_yet_valid", reason_category::ticket, 401, 1008},
    {reason::ticket_origin_mismatch, "ticket_origin_mismatch", reason_category::ticket, 401, 1008},
    {reason::ticket_audience_mismatch, "ticket_audience_mismatch", reason_category::ticket, 401, 1008},
    {reason::ticket_replayed, "ticket_replayed", reason_category::ticket, 401, 1008},
    {reason::ticket_before_store_start, "ticket_before_store_start", reason_category::ticket, 401, 1008},
    {reason::ticket_scope_missing, "ticket_scope_missing", reason_category::ticket, 403, 1008},
    {reason::ticket_field_too_long, "ticket_field_too_long", reason_category::ticket, 400, 1008},
    {reason::ticket_message_expected, "ticket_message_expected", reason_category::ticket, 401, 1008},
    {reason::ticket_deadline_passed, "ticket_deadline_passed", reason_category::ticket, 401, 1008},
    {reason::rate_limited, "rate_limited", reason_category::rate_limit, 429, 1013},
    {reason::too_many_connections, "too_many_connections", reason_category::rate_limit, 429, 1013},
    {reason::message_rate_limited, "message_rate_limited", reason_category::rate_limit, 429, 1008},
    {reason::address_malformed, "address_malformed", reason_category::request, 400, 1008},
    {reason::frame_too_large, "frame_too_large", reason_category::protocol, 400, 1009},
    {reason::message_too_large, "message_too_large", reason_category::protocol, 400, 1009},
    {reason::frame_not_masked, "frame_not_masked", reason_category::protocol, 400, 1002},
    {reason::frame_masked, "frame_masked", reason_category::protocol, 400, 1002},
    {reason::frame_reserved_bits, "frame_reserved_bits", reason_category::protocol, 400, 1002},
    {reason::frame_reserved_opcode, "frame_reserved_opcode", reason_category::protocol, 400, 1002},
    {reason::control_frame_too_long, "control_frame_too_long", reason_category::protocol, 400, 1002},
    {reason::control_frame_fragmented, "control_frame_fragmented", reason_category::protocol, 400, 1002},
    {reason::close_frame_length_one, "close_frame_length_one", reason_category::protocol, 400, 1002},
    {reason::frame_length_not_minimal, "frame_length_not_minimal", reason_category::protocol, 400, 1002},
    {reason::frame_length_msb_set, "frame_length_msb_set", reason_category::protocol, 400, 1002},
    {reason::unexpected_continuation, "unexpected_continuation", reason_category::protocol, 400, 1002},
    {reason::expected_continuation, "expected_continuation", reason_category::protocol, 400, 1002},
    {reason::too_many_fragments, "too_many_fragments", reason_category::protocol, 400, 1008},
    {reason::inflate_too_large, "inflate_too_large", reason_category::protocol, 400, 1009},
    {reason::inflate_ratio_exceeded, "inflate_ratio_exceeded", reason_category::protocol, 400, 1009},
    {reason::replay_store_full, "replay_store_full", reason_category::unavailable, 503, 1013},
    {reason::store_unavailable, "store_unavailable", reason_category::unavailable, 503, 1011},
    {reason::random_unavailable, "random_unavailable", reason_category::unavailable, 503, 1011},
    {reason::internal_error, "internal_error", reason_category::unavailable, 500, 1011},
};

inline constexpr reason_info unknown_reason_info{reason::internal_error, "unknown", reason_category::unavailable, 500, 1011};

constexpr const reason_info& info_of(reason r) noexcept {
    for (const reason_info& entry : reason_table) {
        if (entry.value == r) return entry;
    }
    return unknown_reason_info;
}

// A violated contract (reading the value of a failed result) ends the program:
// unlike assert, this does not vanish under NDEBUG.
[[noreturn]] inline void contract_violation(const char* what) noexcept {
    std::fputs("wsguard: contract violation: ", stderr);
    std::fputs(what, stderr);
    std::fputc('\n', stderr);
    std::abort();
}

}  // namespace detail

namespace detail {
template <std::size_t... I>
constexpr std::array<reason, sizeof...(I)> reason_values(std::index_sequence<I...>) noexcept {
    return {{reason_table[I].value...}};
}
}  // namespace detail

// Every reason, in number order: for metrics that list a counter per reason.
inline constexpr std::array<reason, std::size(detail::reason_table)> all_reasons =
    detail::reason_values(std::make_index_sequence<std::size(detail::reason_table)>{});

// Stable snake_case name, for logs and metrics. Pinned by a test: never changes.
constexpr const char* to_string(reason r) noexcept { return detail::info_of(r).name; }
constexpr reason_category category_of(reason r) noexcept { return detail::info_of(r).category; }
constexpr const char* to_string(reason_category c) noexcept {
    switch (c) {
        case reason_category::ok: return "ok";
        case reason_category::request: return "request";
        case reason_category::origin: return "origin";
        case reason_category::ticket: return "ticket";
        case reason_category::rate_limit: return "rate_limit";
        case reason_category::protocol: return "protocol";
        case reason_category::unavailable: return "unavailable";
    }
    return "unknown";
}
// HTTP status to answer an upgrade with (0 for ok: the stack answers 101).
constexpr int http_status_of(reason r) noexcept { return detail::info_of(r).http_status; }
// WebSocket close code to send once the connection is open.
constexpr int close_code_of(reason r) noexcept { return detail::info_of(r).close_code; }

// What every check returns. Cheap to copy, never allocates, never throws.
class [[nodiscard]] decision {
public:
    wsguard::reason reason = wsguard::reason::ok;
    // Set on rate-limit refusals: how long until the same request would pass.
    // Rounded up to whole milliseconds and never zero on a refusal that sets it.
    std::chrono::milliseconds retry_after{0};

    constexpr decision() noexcept = default;
    constexpr decision(wsguard::reason r) noexcept : reason(r) {}  // NOLINT: implicit by design
    constexpr decision(wsguard::reason r, std::chrono::milliseconds wait) noexcept
        : reason(r), retry_after(wait) {}

    static constexpr decision allow() noexcept { return decision{}; }
    static constexpr decision deny(wsguard::reason r) noexcept { return decision{r}; }

    constexpr bool allowed() const noexcept { return reason == wsguard::reason::ok; }
    constexpr explicit operator bool() const noexcept { return allowed(); }
    constexpr reason_category category() const noexcept { return category_of(reason); }
    constexpr int http_status() const noexcept { return http_status_of(reason); }
    constexpr int close_code() const noexcept { return close_code_of(reason); }
    // Value for an HTTP Retry-After header: whole seconds, rounded up, at least 1
    // when a wait is set; 0 when there is nothing to wait for.
    constexpr std::int64_t retry_after_seconds() const noexcept {
        const std::int64_t ms = retry_after.count();
        if (ms <= 0) return 0;
        return ms / 1000 + (ms % 1000 != 0 ? 1 : 0);
    }

    friend constexpr bool operator==(const decision& a, const decision& b) noexcept {
        return a.reason == b.reason && a.retry_after == b.retry_after;
    }
    friend constexpr bool operator!=(const decision& a, const decision& b) noexcept { return !(a == b); }
};

// A value or a readable configuration error. Returned by the factories that
// validate configuration once, at construction, never at request time.
template <class T>
class [[nodiscard]] result {
public:
    static result success(T value) { return result(std::move(value)); }
    static result failure(std::string message) {
        result r;
        r.error_ = std::move(message);
        return r;
    }

    explicit operator bool() const noexcept { return value_.has_value(); }
    bool has_value() const noexcept { return value_.has_value(); }

    // Reading the value of a failed result terminates: a configuration error
    // must never turn into a policy that silently allows everything.
    T& value() & noexcept { return checked(); }
    const T& value() const& noexcept { return const_cast<result*>(this)->checked(); }
    T&& value() && noexcept { return std::move(checked()); }
    T* operator->() noexcept { return &checked(); }
    const T* operator->() const noexcept { return &const_cast<result*>(this)->checked(); }
    T& operator*() & noexcept { return checked(); }
    const T& operator*() const& noexcept { return const_cast<result*>(this)->checked(); }

    // Empty on success; otherwise says what is wrong and how to fix it.
    const std::string& error() const noexcept { return error_; }

private:
    result() = default;
    explicit result(T value) : value_(std::move(value)) {}
    T& checked() noexcept {
        if (!value_) detail::contract_violation(error_.empty() ? "value() of a failed result" : error_.c_str());
        return *value_;
    }

    std::optional<T> value_;
    std::string error_;
};

}  // inline namespace WSGUARD_ABI_NS
}  // namespace wsguard

// Component sections. During development each lives in its own file; the
// release header has them inlined below, in this order.
#include "wsguard/section_origin.hpp"
#include "wsguard/section_crypto.hpp"
#include "wsguard/section_tickets.hpp"
#include "wsguard/section_limits.hpp"
#include "wsguard/section_frames.hpp"
#include "wsguard/section_handshake.hpp"

#endif  // WSGUARD_HPP
