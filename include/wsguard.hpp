// wsguard: a C++17, single-header, dependency-free toolkit that makes a WebSocket
// server's handshake safe: Origin policy, one-time HMAC tickets, rate limits and a
// frame-size guard, composed by one call from any stack's upgrade callback.
//
// SPDX-License-Identifier: MIT
// Copyright (c) 2026 the wsguard authors. See LICENSE.
//
// Using it: #include <wsguard.hpp> and nothing else. The header includes one
// file of generated data, wsguard/detail/public_suffix_data.hpp (the Public
// Suffix List table), so copy the whole include/ folder, not this file alone.
// The optional Redis backend is <wsguard/redis.hpp> (needs hiredis).
//
// Layout of this file, in the order a connection meets the parts; each section
// opens with its public API, then its storage types, then its internals:
//   1. version and configuration macros
//   2. vocabulary: reason, decision, result (and the few detail helpers that
//      more than one section shares)
//   3. rate limits: token_bucket, keyed_limiter, connection_limiter, address keys,
//      accept_gate, penalty_box
//   4. request_head_budget: byte and line caps on a raw request head
//   5. origin policy, host allowlist, Sec-Fetch-Site
//   6. client address behind proxies: trusted_proxies, client_address, PROXY protocol
//   7. crypto: sha256, hmac_sha256, base64url, random bytes
//   8. tickets: keyring, issuer, verifier, replay store, transport helpers
//   9. mint_guard: the application's ticket endpoint (POST /ticket, CORS)
//  10. handshake_guard: the one call that composes them
//  11. frames: frame_guard, inflate_budget
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

// Test hook, not a configuration macro: the constant-time job (tests/ct/)
// defines it to valgrind's VALGRIND_MAKE_MEM_DEFINED so that the few values the
// library means to branch on although they derive from a secret (the answer of
// a MAC comparison) are declassified there, and every other secret-dependent
// branch is still reported. It expands to nothing otherwise and changes no
// layout; never define it in production code.
#ifndef WSGUARD_CT_DECLASSIFY
#define WSGUARD_CT_DECLASSIFY(address, size) static_cast<void>(0)
#endif

// The library still sets the 0.1 spellings of an outcome (deprecated, removed
// in 0.3) next to the new ones; these silence its own writes to them. Wrapped
// around a type with such members, they also keep the implicit constructors the
// compiler writes there quiet: the warning comes only where user code names one.
#if defined(__GNUC__) || defined(__clang__)
#define WSGUARD_DETAIL_SET_DEPRECATED_BEGIN \
    _Pragma("GCC diagnostic push") _Pragma("GCC diagnostic ignored \"-Wdeprecated-declarations\"")
#define WSGUARD_DETAIL_SET_DEPRECATED_END _Pragma("GCC diagnostic pop")
#elif defined(_MSC_VER)
#define WSGUARD_DETAIL_SET_DEPRECATED_BEGIN __pragma(warning(push)) __pragma(warning(disable : 4996))
#define WSGUARD_DETAIL_SET_DEPRECATED_END __pragma(warning(pop))
#else
#define WSGUARD_DETAIL_SET_DEPRECATED_BEGIN
#define WSGUARD_DETAIL_SET_DEPRECATED_END
#endif

#if WSGUARD_NO_SIMD
#define WSGUARD_ABI_NS abi_v0_1_portable
#else
#define WSGUARD_ABI_NS abi_v0_1
#endif

// The functions an allowed handshake runs through (handshake_guard::check and
// what it calls). Marked hot, they land in .text.hot, which the linker places
// together: a check then spans a few code pages instead of a dozen or more
// scattered ones. Inside a server, where every system call may empty the TLB
// (page-table isolation without PCID), each page costs a page walk per check
// (docs/performance.md).
#if defined(__GNUC__) || defined(__clang__)
#define WSGUARD_DETAIL_HOT __attribute__((hot))
#else
#define WSGUARD_DETAIL_HOT
#endif

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <initializer_list>
#include <iterator>
#include <limits>
#include <memory>
#include <mutex>
#include <new>
#include <optional>
#include <ratio>
#include <string>
#include <string_view>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

// Random bytes come from the operating system only. (<sys/mman.h>: huge
// pages for the keyed limiter's table.)
#if defined(__linux__)
#include <sys/random.h>
#include <sys/mman.h>
#elif defined(_WIN32)
// Declared here rather than through <windows.h>, whose min/max macros would
// leak into every program that includes wsguard. Same types as <bcrypt.h>
// (NTSTATUS, BCRYPT_ALG_HANDLE, PUCHAR, ULONG), so both may be included.
// MinGW users link -lbcrypt.
extern "C" long __stdcall BCryptGenRandom(void* algorithm, unsigned char* buffer, unsigned long size,
                                          unsigned long flags);
#if defined(_MSC_VER)
#pragma comment(lib, "bcrypt")
#endif
#endif

namespace wsguard {
inline namespace WSGUARD_ABI_NS {

// ===========================================================================
// 2. Vocabulary: reason, decision, result
// ===========================================================================

// One value per outcome. Numbers are explicit and never reused: a retired value
// keeps its number and a new one takes the next free number in its block.
// Blocks: 0 ok, 1xx request shape, 2xx origin/host, 3xx ticket, 4xx rate limits,
// 5xx frames, 9xx unavailable/internal.
enum class [[nodiscard]] reason : std::uint16_t {
    ok = 0,

    // Request shape (handshake_guard)
    request_malformed = 100,      // a header is over its cap or not text
    method_not_get = 101,         // RFC 6455 4.1: the upgrade must be a GET
    route_not_found = 102,        // no route is configured for this path
    forwarded_malformed = 103,    // Forwarded / X-Forwarded-For unreadable where the walk must read it
    forwarded_too_many_hops = 104,  // more trusted proxies in the chain than the hop limit
    forwarded_unknown_hop = 105,  // a trusted proxy reported "unknown" or an obfuscated node: no client
    proxy_header_malformed = 106,   // PROXY protocol header that breaks the spec
    proxy_header_missing = 107,   // the connection does not start with a PROXY header
    proxy_header_unsupported = 108,  // PROXY v2 with another version, command, family or protocol
    request_head_too_large = 110,  // request_head_budget: the head is over its byte cap (431)
    too_many_header_lines = 111,  // request_head_budget: over its header-line cap (431)
    mint_method_not_post = 112,   // mint_guard: the ticket endpoint takes POST (and the OPTIONS preflight)
    mint_not_preflighted = 113,   // mint_guard: the non-simple marker header is missing (a form or beacon POST)
    mint_rate_limited = 114,      // mint_guard: this subject minted too many tickets; retry_after says when
    mint_subject_missing = 115,   // mint_guard: no authenticated subject (the application found no login)
    security_header_repeated = 116,  // Origin, Host, Sec-Fetch-Site or Sec-WebSocket-Protocol on more than one line

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
    ticket_before_store_start = 311,  // issued before the replay store existed (restart), or within clock_skew after
    ticket_scope_missing = 312,   // verified, but lacks the scope an action needs
    ticket_field_too_long = 313,  // issuing: subject/origin/audience/scopes over their caps
    ticket_message_expected = 314,  // first-message gate: a message before the ticket
    ticket_deadline_passed = 315,   // first-message gate: no ticket within the deadline

    // Rate limits
    rate_limited = 400,           // token bucket empty; retry_after says when
    too_many_connections = 401,   // per-key concurrent connection cap
    message_rate_limited = 402,   // per-connection message rate
    address_malformed = 403,      // peer address could not be parsed into a key
    too_many_pending = 404,       // accept_gate: too many handshakes in progress (per client or in total)
    handshake_deadline_passed = 405,  // accept_gate: no complete upgrade request within the deadline
    client_penalized = 406,       // penalty box: banned after repeated forged tickets; retry_after says when
    too_many_connections_for_subject = 407,  // per-subject (ticket subject) concurrent connection cap

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
    store_evicting = 904,         // shared replay store's Redis may evict keys (maxmemory-policy)
    store_policy_unknown = 905,   // shared replay store could not read Redis's maxmemory-policy
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
    {reason::forwarded_malformed, "forwarded_malformed", reason_category::request, 400, 1008},
    {reason::forwarded_too_many_hops, "forwarded_too_many_hops", reason_category::request, 400, 1008},
    {reason::forwarded_unknown_hop, "forwarded_unknown_hop", reason_category::request, 403, 1008},
    {reason::proxy_header_malformed, "proxy_header_malformed", reason_category::request, 400, 1002},
    {reason::proxy_header_missing, "proxy_header_missing", reason_category::request, 400, 1002},
    {reason::proxy_header_unsupported, "proxy_header_unsupported", reason_category::request, 400, 1002},
    {reason::request_head_too_large, "request_head_too_large", reason_category::request, 431, 1008},
    {reason::too_many_header_lines, "too_many_header_lines", reason_category::request, 431, 1008},
    {reason::mint_method_not_post, "mint_method_not_post", reason_category::request, 405, 1008},
    {reason::mint_not_preflighted, "mint_not_preflighted", reason_category::request, 403, 1008},
    {reason::mint_rate_limited, "mint_rate_limited", reason_category::rate_limit, 429, 1013},
    {reason::mint_subject_missing, "mint_subject_missing", reason_category::ticket, 401, 1008},
    {reason::security_header_repeated, "security_header_repeated", reason_category::request, 400, 1002},
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
    {reason::too_many_pending, "too_many_pending", reason_category::rate_limit, 503, 1013},
    {reason::handshake_deadline_passed, "handshake_deadline_passed", reason_category::rate_limit, 408, 1008},
    {reason::client_penalized, "client_penalized", reason_category::rate_limit, 429, 1008},
    {reason::too_many_connections_for_subject, "too_many_connections_for_subject", reason_category::rate_limit, 429, 1013},
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
    {reason::store_evicting, "store_evicting", reason_category::unavailable, 503, 1011},
    {reason::store_policy_unknown, "store_policy_unknown", reason_category::unavailable, 503, 1011},
};

inline constexpr reason_info unknown_reason_info{reason::internal_error, "unknown", reason_category::unavailable, 500, 1011};

constexpr const reason_info& info_of(reason r) noexcept {
    for (const reason_info& entry : reason_table) {
        if (entry.value == r) return entry;
    }
    return unknown_reason_info;
}

// ASCII-only lowercase: header values are compared byte-wise, never by locale.
constexpr char ascii_lower(char c) noexcept { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

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
//
// One spelling for an outcome: every public type that reports one carries it
// as a member named `decision` of this type: a data member on result types
// (issued_ticket, ticket_source, gate_verdict, frame_verdict, proxy_header,
// client_address, handshake_outcome, head_verdict, mint_answer,
// refusal_event), a decision() function on the move-only permits whose state
// is private (connection_limiter::permit, handshake_permit, accept_permit).
// Only low-level calls give a bare reason: random_bytes, a replay store's
// try_spend (redis_spend::outcome in a batch) and frame_guard::refusal().
// One close-code rule: close_code() is the WebSocket code to close with for
// this decision, 1000 (normal closure) when allowed.
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

namespace detail {
// The `decision` data member of frame_verdict, proxy_header and client_address:
// a wsguard::decision that 0.1 code may still call as a function, v.decision(),
// with a deprecation warning. In 0.3 the member becomes a plain wsguard::decision.
class callable_decision : public wsguard::decision {
public:
    using wsguard::decision::decision;
    constexpr callable_decision(const wsguard::decision& d) noexcept : wsguard::decision(d) {}  // NOLINT: implicit by design
    [[deprecated("use the data member: .decision instead of .decision(); removed in 0.3")]]
    constexpr wsguard::decision operator()() const noexcept { return *this; }
};
}  // namespace detail

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

// ---------------------------------------------------------------------------
// Shared detail: helpers that more than one section uses. They sit here, ahead
// of every component, so that the sections can follow the handshake order.
// ---------------------------------------------------------------------------
namespace detail {

// A test-and-test-and-set lock for short critical sections (a few dozen
// instructions): spinning beats parking; after a while it yields. The keyed
// limiters' shards, the connection table and the replay store use it.
class spinlock {
public:
    WSGUARD_DETAIL_HOT void lock() noexcept {
        for (;;) {
            if (!locked_.exchange(true, std::memory_order_acquire)) return;
            for (unsigned spins = 0; locked_.load(std::memory_order_relaxed); ++spins) {
                if (spins >= 64) std::this_thread::yield();
            }
        }
    }
    void unlock() noexcept { locked_.store(false, std::memory_order_release); }

private:
    std::atomic<bool> locked_{false};
};

// Whether a comma-separated header list (optional spaces or tabs around each
// element) has an element for which `match` is true.
template <class Match>
WSGUARD_DETAIL_HOT inline bool header_list_has(std::string_view list, Match match) noexcept {
    while (!list.empty()) {
        const std::size_t comma = list.find(',');
        std::string_view token = list.substr(0, comma);
        list = comma == std::string_view::npos ? std::string_view() : list.substr(comma + 1);
        while (!token.empty() && (token.front() == ' ' || token.front() == '\t')) token.remove_prefix(1);
        while (!token.empty() && (token.back() == ' ' || token.back() == '\t')) token.remove_suffix(1);
        if (match(token)) return true;
    }
    return false;
}

}  // namespace detail


}  // inline namespace WSGUARD_ABI_NS
}  // namespace wsguard

// ===========================================================================
// 3. Rate limits: token_bucket, keyed_limiter, connection_limiter, address keys,
//    accept_gate, penalty_box
// ===========================================================================
//
// token_bucket             one lock-free bucket (GCRA): a rate and a burst.
// keyed_limiter<Key>       one bucket per key (a client address, a user id) in
//                          a fixed-capacity table.
// connection_limiter<Key>  at most N concurrent connections per key, exactly.
// address_key              a peer address as a key (IPv4, or IPv6 by /64).
// accept_gate              admission at accept time: pending handshakes per
//                          client, and the deadline for the upgrade request.
// penalty_box              bans a client that keeps presenting forged tickets.
// rate                     `count` events per `period`: what they all take.
//
// Time is integer nanoseconds of std::chrono::steady_clock, pushed in by the
// caller (every call has an overload that reads the clock). No floating point,
// every addition and product saturates, and a clock that goes backwards can
// only make a limiter stricter, never grant extra.

namespace wsguard {
inline namespace WSGUARD_ABI_NS {

// Defined in section 7 (crypto); the limiters draw their SipHash seed from it.
inline reason random_bytes(std::uint8_t* out, std::size_t size) noexcept;

// A rate: `count` events per `period`, e.g. rate{3, std::chrono::seconds(1)} or
// rate{1, std::chrono::hours(24)}. Rates below one per second need no floats.
struct rate {
    std::uint64_t count = 0;
    std::chrono::nanoseconds period{std::chrono::seconds(1)};

    static constexpr rate per_second(std::uint64_t n) noexcept { return rate{n, std::chrono::seconds(1)}; }
    static constexpr rate per_minute(std::uint64_t n) noexcept { return rate{n, std::chrono::minutes(1)}; }
    static constexpr rate per_hour(std::uint64_t n) noexcept { return rate{n, std::chrono::hours(1)}; }
};

// ---------------------------------------------------------------------------
// Storage the public classes hold by value, so it is complete before them: a
// bucket's constants, a sharded table's geometry, groups and memory, the hash
// seed and how each Key type is stored. Their bodies, the hash and the locks
// live with the other internals, below the public classes.
// ---------------------------------------------------------------------------
namespace detail {

inline constexpr std::uint64_t limits_u64_max = std::numeric_limits<std::uint64_t>::max();
// The longest window a bucket may span (burst x interval): 100 years. Beyond
// that a configuration is a mistake, and the bound keeps every sum below 2^64.
inline constexpr std::uint64_t limits_max_window_ns = 100ull * 366 * 24 * 3600 * 1000000000ull;
// How many slots a lookup inspects: bounds the work per request and is the
// neighbourhood in which the stalest entry is evicted. keyed_limiter's four
// 16-byte slots fill one cache line, so a decision costs one cache miss.
inline constexpr std::uint32_t limits_keyed_window = 4;
inline constexpr std::uint32_t limits_max_shards = 64;
inline constexpr std::size_t limits_max_capacity = std::size_t{1} << 28;

// The validated constants of one GCRA bucket, shared by token_bucket and
// keyed_limiter. `tat` is the theoretical arrival time: the instant at which
// the bucket would be full again. A request of n passes if, after charging
// n x interval, the bucket is at most burst x interval ahead of now.
struct limits_gcra {
    std::uint64_t interval_ns = 0;  // 1/rate, rounded up: never faster than asked
    std::uint64_t window_ns = 0;    // burst x interval
    std::uint64_t horizon = 0;      // latest usable clock value, see clamp()
    std::uint32_t burst = 0;

    // Validates once; returns an empty string when the configuration is good.
    static std::string configure(rate r, std::uint32_t burst_size, limits_gcra& out);

    std::uint64_t clamp(std::chrono::steady_clock::time_point now) const noexcept;

    // One step of the algorithm on a loaded tat. On success writes the new tat.
    // Preconditions: 1 <= n <= burst, t == clamp(now).
    decision step(std::uint64_t tat, std::uint64_t t, std::uint32_t n, std::uint64_t& new_tat) const noexcept;
};

struct limits_siphash_output {
    std::uint64_t lo = 0;
    std::uint64_t hi = 0;  // only with wide output
};

// Defined with the internals below; the key traits hash with it.
inline limits_siphash_output limits_siphash13_128(std::uint64_t k0, std::uint64_t k1, const void* data,
                                                  std::size_t len) noexcept;

// The 128-bit SipHash key, drawn from the OS at construction.
struct limits_seed {
    std::uint64_t k[2] = {0, 0};
};

// A 128-bit keyed fingerprint: what connection_limiter stores for
// variable-length keys. Two different strings share one with probability
// 2^-128 for a party that does not know the seed.
struct limits_fingerprint {
    std::uint64_t lo = 0;
    std::uint64_t hi = 0;
};

template <class T>
struct limits_always_false : std::false_type {};

// How a Key is hashed and stored. `hash` places it in a table; `tag` is an
// independent 64-bit keyed hash, all keyed_limiter stores (two keys share a
// bucket only if they agree on both: probability 2^-64 per lookup for a party
// that does not know the seed). connection_limiter, which must never confuse
// two keys' connection counts, stores `key`: fixed-size keys with no padding
// (address_key, integers, arrays of bytes) as they are, strings as a 128-bit
// fingerprint. Any other Key does not compile.
template <class Key, class Enable = void>
struct limits_key_traits {
    static_assert(limits_always_false<Key>::value,
                  "wsguard limiter keys must be trivially copyable with no padding bits "
                  "(address_key, std::uint64_t, std::array<std::uint8_t, N>) or std::string_view / std::string");
};

template <class Key>
struct limits_key_traits<Key, std::enable_if_t<std::is_trivially_copyable<Key>::value &&
                                               std::has_unique_object_representations<Key>::value>> {
    using stored = Key;
    struct digest {
        stored key;
        std::uint64_t hash;
        std::uint64_t tag;
    };
    static digest make(const Key& key, const limits_seed& seed) noexcept {
        const limits_siphash_output h = limits_siphash13_128(seed.k[0], seed.k[1], &key, sizeof key);
        return digest{key, h.lo, h.hi};
    }
    static bool equal(const stored& a, const stored& b) noexcept { return std::memcmp(&a, &b, sizeof a) == 0; }
};

struct limits_string_key_traits {
    using stored = limits_fingerprint;
    struct digest {
        stored key;
        std::uint64_t hash;
        std::uint64_t tag;
    };
    static digest make(std::string_view key, const limits_seed& seed) noexcept {
        const limits_siphash_output h = limits_siphash13_128(seed.k[0], seed.k[1], key.data(), key.size());
        return digest{stored{h.lo, h.hi}, h.lo, h.hi};
    }
    static bool equal(const stored& a, const stored& b) noexcept { return a.lo == b.lo && a.hi == b.hi; }
};
template <>
struct limits_key_traits<std::string_view> : limits_string_key_traits {};
template <>
struct limits_key_traits<std::string> : limits_string_key_traits {};

// A spin lock per shard (detail::spinlock, section 2): critical sections are a
// few dozen instructions, so spinning beats parking.
using limits_spinlock = spinlock;

struct alignas(64) limits_shard {
    limits_spinlock lock;
};

// Geometry of a sharded table: shard_count shards (a power of two, up to 64,
// each with its own lock) of groups_per_shard groups of `window` slots. A key
// hashes to one group, its whole probe window; groups are aligned to cache
// lines.
struct limits_geometry {
    std::uint32_t shard_count = 1;
    std::uint32_t groups_per_shard = 0;
    std::uint32_t window = 1;

    static std::string configure(std::size_t capacity, std::uint32_t window, limits_geometry& out);
    std::size_t group_count() const noexcept { return std::size_t{shard_count} * groups_per_shard; }
    std::size_t capacity() const noexcept { return group_count() * window; }
    std::uint32_t shard_of(std::uint64_t hash) const noexcept {
        return static_cast<std::uint32_t>(hash >> 32) & (shard_count - 1);
    }
    // The key's group (Lemire's multiply-shift range reduction inside its shard).
    std::size_t group_of(std::uint64_t hash, std::uint32_t shard) const noexcept {
        return std::size_t{shard} * groups_per_shard +
               static_cast<std::size_t>(((hash & 0xffffffffull) * groups_per_shard) >> 32);
    }
};

template <class Slot, std::uint32_t Window>
struct alignas(64) limits_group {
    Slot slots[Window];
};

// A zeroed array of groups, allocated once. Tables of 2 MiB or more are
// 2 MiB-aligned and, on Linux, offered transparent huge pages: a random key
// then costs one cache miss rather than a miss plus a page-table walk. Every
// page is written here, at construction, so no request ever takes a page fault.
template <class Group>
class limits_table {
    static_assert(std::is_trivially_copyable<Group>::value && std::is_trivially_destructible<Group>::value,
                  "limits_table holds plain slots");

public:
    limits_table() noexcept = default;
    limits_table(limits_table&& other) noexcept
        : groups_(std::exchange(other.groups_, nullptr)), alignment_(other.alignment_) {}
    limits_table& operator=(limits_table&& other) noexcept {
        if (this != &other) {
            release();
            groups_ = std::exchange(other.groups_, nullptr);
            alignment_ = other.alignment_;
        }
        return *this;
    }
    limits_table(const limits_table&) = delete;
    limits_table& operator=(const limits_table&) = delete;
    ~limits_table() { release(); }

    bool allocate(std::size_t count) noexcept;
    explicit operator bool() const noexcept { return groups_ != nullptr; }
    Group& operator[](std::size_t i) noexcept { return groups_[i]; }
    const Group& operator[](std::size_t i) const noexcept { return groups_[i]; }

private:
    void release() noexcept {
        if (groups_ != nullptr) ::operator delete(groups_, std::align_val_t(alignment_));
        groups_ = nullptr;
    }

    Group* groups_ = nullptr;
    std::size_t alignment_ = alignof(Group);
};

}  // namespace detail

// ---------------------------------------------------------------------------
// token_bucket: one lock-free bucket (GCRA) in one atomic 64-bit word.
// ---------------------------------------------------------------------------
//
// From idle, `burst` requests pass at once, the next is refused, then one more
// passes every 1/rate. A refusal is reason::rate_limited with retry_after
// (rounded up, never zero) and changes nothing. A request for n > burst can
// never pass: it is refused with rate_limited and retry_after == 0 (waiting
// does not help). Safe to call from any number of threads at once.
struct token_bucket_options {
    wsguard::rate rate = wsguard::rate::per_second(10);  // sustained
    std::uint32_t burst = 20;                            // requests that pass at once from idle
};

class token_bucket {
public:
    // The documented way: a rate and a burst by name, as redis_limiter_options.
    static result<token_bucket> create(const token_bucket_options& options) {
        return create(options.rate, options.burst);
    }
    static result<token_bucket> create(wsguard::rate r, std::uint32_t burst);
    [[deprecated("use create(token_bucket_options{rate::per_second(n), burst})")]]
    static result<token_bucket> create(std::uint64_t rate_per_second, std::uint32_t burst) {
        return create(wsguard::rate::per_second(rate_per_second), burst);
    }

    // std::atomic is not movable; result<token_bucket> needs a move. Moving
    // copies the current state and is meant for construction time only: a
    // bucket other threads are using must not be moved.
    token_bucket(token_bucket&& other) noexcept
        : gcra_(other.gcra_), tat_(other.tat_.load(std::memory_order_relaxed)) {}
    token_bucket& operator=(token_bucket&&) = delete;
    token_bucket(const token_bucket&) = delete;
    token_bucket& operator=(const token_bucket&) = delete;

    decision try_acquire(std::chrono::steady_clock::time_point now, std::uint32_t n = 1) noexcept;
    decision try_acquire(std::uint32_t n = 1) noexcept { return try_acquire(std::chrono::steady_clock::now(), n); }

    std::uint32_t burst() const noexcept { return gcra_.burst; }
    // 1/rate, rounded up to a whole nanosecond.
    std::chrono::nanoseconds interval() const noexcept {
        return std::chrono::nanoseconds(static_cast<std::chrono::nanoseconds::rep>(gcra_.interval_ns));
    }

private:
    explicit token_bucket(const detail::limits_gcra& gcra) noexcept : gcra_(gcra) {}

    detail::limits_gcra gcra_;
    std::atomic<std::uint64_t> tat_{0};  // 0 = idle since the beginning of time
    static_assert(std::atomic<std::uint64_t>::is_always_lock_free, "token_bucket needs a lock-free 64-bit atomic");
};

// ---------------------------------------------------------------------------
// keyed_limiter<Key>: one bucket per key in a fixed-capacity table.
// ---------------------------------------------------------------------------
//
// Memory is allocated once, in create(), and never grows. Keys are hashed with
// SipHash-1-3 under a random 128-bit seed, and an entry is 16 bytes: a 64-bit
// keyed tag that recognises the key and the bucket's 64-bit state. A key's
// probe window is a group of 4 entries in one cache line. An entry whose
// bucket is full again is free for reuse; when a new key's group has no such
// entry, the stalest one (the closest to full) is evicted, so keys that
// exhausted their burst are the last to go. Sharded (up to 64 shards) with one
// small lock per shard.
struct keyed_limiter_options {
    wsguard::rate rate = wsguard::rate::per_second(10);  // sustained, per key
    std::uint32_t burst = 20;                            // per key, from idle
    std::size_t capacity = 65536;                        // distinct keys tracked at once
};

template <class Key>
class keyed_limiter {
    using traits = detail::limits_key_traits<Key>;

public:
    // The documented way: every number by name, as redis_limiter_options.
    static result<keyed_limiter> create(const keyed_limiter_options& options) {
        return create(options.rate, options.burst, options.capacity);
    }
    static result<keyed_limiter> create(wsguard::rate r, std::uint32_t burst, std::size_t capacity);
    [[deprecated("use create(keyed_limiter_options{rate::per_second(n), burst, capacity})")]]
    static result<keyed_limiter> create(std::uint64_t rate_per_second, std::uint32_t burst, std::size_t capacity) {
        return create(wsguard::rate::per_second(rate_per_second), burst, capacity);
    }

    decision try_acquire(const Key& key, std::chrono::steady_clock::time_point now, std::uint32_t n = 1) noexcept;
    decision try_acquire(const Key& key, std::uint32_t n = 1) noexcept {
        return try_acquire(key, std::chrono::steady_clock::now(), n);
    }

    // Number of keys the table holds at once (the requested capacity, rounded
    // up to a whole number of slots per shard).
    std::size_t capacity() const noexcept { return geometry_.capacity(); }
    // Everything this limiter owns; constant from construction on.
    std::size_t memory_bytes() const noexcept {
        return sizeof(*this) + geometry_.group_count() * sizeof(group) +
               std::size_t{geometry_.shard_count} * sizeof(detail::limits_shard);
    }
    std::uint32_t burst() const noexcept { return gcra_.burst; }

private:
    struct slot {
        std::uint64_t tag;
        std::uint64_t tat;  // 0: never used, the same as an idle (full) bucket
    };
    using group = detail::limits_group<slot, detail::limits_keyed_window>;
    static_assert(sizeof(group) == 64, "a keyed_limiter group is one cache line");

    friend class penalty_box;  // keeps its bans in a keyed_limiter's table
    template <class>
    friend class basic_handshake_guard;

    using prepared_key = typename traits::digest;

    keyed_limiter() = default;

    // The key hashed, its group already on its way. handshake_guard prepares
    // every table's key before it looks at any, so the misses overlap.
    WSGUARD_DETAIL_HOT prepared_key prepare(const Key& key) noexcept;
    // prepare's second half, for a key already hashed with this table's seed:
    // handshake_guard gives its address tables one seed and hashes once.
    WSGUARD_DETAIL_HOT void prefetch(const prepared_key& digest) noexcept;
    // try_acquire's work, for 1 <= n <= burst.
    WSGUARD_DETAIL_HOT decision try_acquire_prepared(const prepared_key& key, std::chrono::steady_clock::time_point now,
                                                     std::uint32_t n = 1) noexcept;

    // Runs visit(entry, clamped now) on the key's entry under its shard lock
    // and returns its decision. Without `insert`, a key that has no entry is
    // allowed without visiting (a lookup must not evict anyone).
    template <class Visit>
    decision with_entry(const Key& key, std::chrono::steady_clock::time_point now, bool insert, Visit visit) noexcept;
    template <class Visit>
    WSGUARD_DETAIL_HOT decision with_entry(const prepared_key& digest, std::chrono::steady_clock::time_point now,
                                           bool insert, Visit visit) noexcept;

    // The key's entry, or the stalest entry of its group reset for it. A
    // never-used entry has tat 0, so it is the stalest. Matching one by its tag
    // is harmless: an idle bucket is what a new key starts from anyway.
    static slot& find_or_evict(group& candidates, std::uint64_t tag) noexcept;

    detail::limits_gcra gcra_;
    detail::limits_geometry geometry_;
    detail::limits_seed seed_;
    std::unique_ptr<detail::limits_shard[]> shards_;
    detail::limits_table<group> groups_;
};

// ---------------------------------------------------------------------------
// connection_limiter<Key>: at most N concurrent connections per key.
// ---------------------------------------------------------------------------
//
// try_acquire returns a move-only permit; the connection counts until the
// permit is destroyed or release()d. The limiter must outlive its permits.
//
// Exact capacity: a new key is refused only when `capacity` distinct keys
// hold connections (or its per-key count, or the total, is at its cap) —
// never because of where its hash falls. The table is one open-addressing
// array of 2 x capacity slots with linear probing over the whole array, and a
// count of live keys checked before a new key is placed: at most half the
// slots are ever in use, so every probe ends at an empty slot (expected 2.5
// slots for a miss, 1.5 for a hit at full load; the seeded hash keeps a remote
// client from building clusters). A key's slot is emptied when its count
// drops to 0, by backward-shift deletion (no tombstones), so the table never
// degrades with churn. A live count is never evicted. One lock guards the
// table: a connection is acquired and released once each, and exactness needs
// one table rather than shards that could fill unevenly.
struct connection_limiter_options {
    std::uint32_t max_per_key = 8;  // concurrent connections per key
    std::size_t capacity = 65536;   // distinct keys with live connections at once, exactly
    // connections across all keys (default: no cap beyond max_per_key x capacity)
    std::uint32_t max_total = std::numeric_limits<std::uint32_t>::max();
};

template <class Key>
class connection_limiter {
    using traits = detail::limits_key_traits<Key>;
    using stored_key = typename traits::stored;
    struct table;  // the shared state permits point at, defined in the private part

public:
    // How long a refused client is told to wait (Retry-After): connections
    // end at an unknown time, so this is a polite hint, not a promise.
    static constexpr std::chrono::milliseconds refusal_retry_after{1000};

    class permit {
    public:
        permit() noexcept = default;
        permit(permit&& other) noexcept
            : table_(std::exchange(other.table_, nullptr)), key_(other.key_), home_(other.home_),
              decision_(other.decision_) {}
        permit& operator=(permit&& other) noexcept {
            if (this != &other) {
                release();
                table_ = std::exchange(other.table_, nullptr);
                key_ = other.key_;
                home_ = other.home_;
                decision_ = other.decision_;
            }
            return *this;
        }
        permit(const permit&) = delete;
        permit& operator=(const permit&) = delete;
        ~permit() { release(); }

        // True while the permit holds a connection (not after release()).
        explicit operator bool() const noexcept { return table_ != nullptr; }
        // The outcome of try_acquire: ok, or too_many_connections with
        // retry_after 1 s. A default-constructed permit reads as refused.
        wsguard::decision decision() const noexcept { return decision_; }
        // Gives the connection back now instead of at destruction. Idempotent.
        WSGUARD_DETAIL_HOT void release() noexcept;

    private:
        friend class connection_limiter;
        permit(table* t, const stored_key& key, std::uint32_t home) noexcept
            : table_(t), key_(key), home_(home), decision_(wsguard::decision::allow()) {}
        explicit permit(wsguard::decision refusal) noexcept : decision_(refusal) {}

        table* table_ = nullptr;
        stored_key key_{};
        std::uint32_t home_ = 0;
        wsguard::decision decision_{reason::too_many_connections, refusal_retry_after};
    };

    // The documented way: every number by name (connection_limiter_options).
    static result<connection_limiter> create(const connection_limiter_options& options);
    // Three adjacent numbers whose order is easy to get wrong. Kept for one minor version.
    [[deprecated("use create(connection_limiter_options{max_per_key, capacity, max_total})")]]
    static result<connection_limiter> create(std::uint32_t max_per_key, std::size_t capacity,
                                             std::uint32_t max_total = std::numeric_limits<std::uint32_t>::max()) {
        return create(connection_limiter_options{max_per_key, capacity, max_total});
    }

    permit try_acquire(const Key& key) noexcept { return try_acquire_prepared(prepare(key)); }

    // Live connections for one key (0 when unknown).
    std::uint32_t connections(const Key& key) const noexcept;
    // Live connections across all keys.
    std::uint32_t total() const noexcept { return table_->total.load(std::memory_order_relaxed); }
    // Distinct keys holding at least one connection.
    std::size_t live_keys() const noexcept;
    // Distinct keys held at once: exactly the capacity given to create().
    std::size_t capacity() const noexcept { return table_->capacity; }
    // Everything this limiter owns; constant from construction on.
    std::size_t memory_bytes() const noexcept {
        return sizeof(*this) + sizeof(table) + std::size_t{table_->slot_count} * sizeof(slot);
    }

private:
    struct slot {
        stored_key key;
        std::uint32_t count;  // 0: empty
        std::uint32_t home;   // the slot the key hashes to, for deletion
    };
    struct table {
        detail::limits_seed seed;
        std::size_t capacity = 0;
        std::uint32_t slot_count = 0;
        std::uint32_t max_per_key = 0;
        std::uint32_t max_total = 0;
        std::size_t live_keys = 0;  // under `lock`
        alignas(64) detail::limits_spinlock lock;
        std::atomic<std::uint32_t> total{0};  // written under `lock`, read without it
        detail::limits_table<slot> slots;

        std::uint32_t home_of(std::uint64_t hash) const noexcept {
            return static_cast<std::uint32_t>(((hash >> 32) * slot_count) >> 32);
        }
        std::uint32_t next(std::uint32_t i) const noexcept { return i + 1 == slot_count ? 0 : i + 1; }
        // The key's slot, or the empty slot that ends its probe. Under `lock`.
        slot& find(const stored_key& key, std::uint32_t home) noexcept {
            std::uint32_t i = home;
            while (slots[i].count != 0 && !traits::equal(slots[i].key, key)) i = next(i);
            return slots[i];
        }
        // Backward-shift deletion: pulls each later entry of the cluster that
        // may sit earlier into the hole, so no probe ever crosses a gap it
        // should not. Under `lock`.
        void erase(std::uint32_t hole) noexcept {
            for (std::uint32_t j = next(hole); slots[j].count != 0; j = next(j)) {
                const std::uint32_t h = slots[j].home;
                const std::uint32_t from_home = j >= h ? j - h : j + slot_count - h;
                const std::uint32_t from_hole = j >= hole ? j - hole : j + slot_count - hole;
                if (from_home >= from_hole) {
                    slots[hole] = slots[j];
                    hole = j;
                }
            }
            slots[hole].count = 0;
            --live_keys;
        }
        std::uint32_t index_of(const slot& s) const noexcept { return static_cast<std::uint32_t>(&s - &slots[0]); }
    };

    template <class>
    friend class basic_handshake_guard;

    using prepared_key = typename traits::digest;

    // The key hashed, its home slot already on its way (see keyed_limiter::prepare).
    WSGUARD_DETAIL_HOT prepared_key prepare(const Key& key) noexcept;
    WSGUARD_DETAIL_HOT void prefetch(const prepared_key& digest) noexcept;  // see keyed_limiter::prefetch
    WSGUARD_DETAIL_HOT permit try_acquire_prepared(const prepared_key& digest) noexcept;

    connection_limiter() = default;
    static permit refused() noexcept {
        return permit(wsguard::decision(reason::too_many_connections, refusal_retry_after));
    }

    // On the heap so that moving the limiter leaves permits pointing at it.
    std::unique_ptr<table> table_;
};

// ---------------------------------------------------------------------------
// address_key: a peer address as a rate-limit key.
// ---------------------------------------------------------------------------
//
// A fixed-size value (16 bytes, no padding) with the grouping prefix already
// applied: by default one key per IPv4 address and one per IPv6 /64 (a single
// host usually owns a whole /64, so finer keys are free to rotate). IPv4 is
// held as IPv4-mapped IPv6 (::ffff:a.b.c.d), so an IPv4 address and its
// mapped spelling are the same key and no IPv6 key can equal an IPv4 one.

struct address_key_options {
    std::uint8_t ipv4_prefix = 32;  // bits kept of an IPv4 address; values over 32 mean 32
    std::uint8_t ipv6_prefix = 64;  // bits kept of an IPv6 address; values over 128 mean 128
};

class address_key {
public:

    // A bare address: "192.0.2.1", "2001:db8::1", "[2001:db8::1]",
    // "fe80::1%eth0" (zone dropped), "::ffff:192.0.2.1" (IPv4). No port: use
    // from_endpoint_text for "ip:port". Anything else, or over 128 bytes, is
    // nullopt (reason::address_malformed).
    static std::optional<address_key> from_text(std::string_view text, address_key_options options = {}) noexcept;

    // What stacks report as the remote endpoint: "192.0.2.1:443",
    // "[2001:db8::1]:443", or a bare address. An unbracketed IPv6 address
    // never carries a port (its last group would be ambiguous).
    static std::optional<address_key> from_endpoint_text(std::string_view text, address_key_options options = {}) noexcept;

    // Raw network-order bytes: 4 (IPv4) or 16 (IPv6, e.g. sin6_addr). Other
    // sizes, or a null pointer, are nullopt.
    static std::optional<address_key> from_bytes(const std::uint8_t* data, std::size_t size, address_key_options options = {}) noexcept;

    // 4 or 6 (a default-constructed key is the IPv6 key of "::").
    int family() const noexcept { return is_ipv4() ? 4 : 6; }
    bool is_ipv4() const noexcept { return is_v4_mapped(bytes_); }
    // 16 bytes in network order; an IPv4 address is the last 4 (::ffff:a.b.c.d).
    const std::uint8_t* bytes() const noexcept { return bytes_; }

    friend bool operator==(const address_key& a, const address_key& b) noexcept {
        return std::memcmp(a.bytes_, b.bytes_, sizeof a.bytes_) == 0;
    }
    friend bool operator!=(const address_key& a, const address_key& b) noexcept { return !(a == b); }

private:
    static bool is_v4_mapped(const std::uint8_t* b) noexcept;
    static std::optional<address_key> parse_ipv6_text(std::string_view text, address_key_options options) noexcept;
    // Zeroes every bit after the first `bits` bits counted from byte `from`.
    // Precondition: bits <= (16 - from) * 8.
    void keep_prefix(unsigned from, unsigned bits) noexcept;

    std::uint8_t bytes_[16] = {};
};

static_assert(std::has_unique_object_representations<address_key>::value && sizeof(address_key) == 16,
              "address_key is stored and hashed as raw bytes: it must have no padding");

// ---------------------------------------------------------------------------
// accept_gate: admission at accept time, before any byte of HTTP is read.
// ---------------------------------------------------------------------------
//
// A server's socket budget is shared by everyone, so a client that opens
// sockets and sends nothing (or trickles a header, slowloris) must not be able
// to fill it. Call try_admit right after accept(): at most
// max_pending_per_address handshakes in progress per client (IPv4 address or
// IPv6 /64, like address_key; the client behind a trusted PROXY header when
// one came first) and max_pending_total in all, each with a deadline by which
// its upgrade request must be complete. The returned accept_permit holds the
// pending slot; the slot returns when the handshake ends either way — upgraded
// (the connection_limiter permit from handshake_guard takes over) or dropped —
// by release() or destruction. A refusal is too_many_pending: answer 503 with
// Retry-After, or simply close the socket (cheaper, and what a flood deserves).
// A stack polls permit.expired(now) (or arms a timer at deadline()) and closes
// the socket when the deadline passed: handshake_deadline_passed is the reason
// to log (408, or a close without an answer). Fixed capacity (the exact
// connection_limiter table), seeded hashing, no allocation after create.
struct accept_limits {
    std::uint32_t max_pending_per_address = 8;   // handshakes in progress per client
    std::uint32_t max_pending_total = 1024;      // in progress across all clients
    std::chrono::milliseconds handshake_deadline{10000};  // accept to complete upgrade request
    std::size_t table_capacity = 65536;          // clients with a pending handshake at once (exact)
    address_key_options address_options{};       // for address_of(); IPv6 grouped by /64 by default
};

class [[nodiscard]] accept_permit {
public:
    // How long a refused client is told to wait when the stack answers 503.
    static constexpr std::chrono::milliseconds refusal_retry_after{1000};

    // Refused (too_many_pending) and holding nothing.
    accept_permit() noexcept = default;
    accept_permit(accept_permit&&) noexcept = default;
    accept_permit& operator=(accept_permit&&) noexcept = default;
    accept_permit(const accept_permit&) = delete;
    accept_permit& operator=(const accept_permit&) = delete;

    // True while the permit holds a pending slot (not after release()).
    explicit operator bool() const noexcept { return static_cast<bool>(slot_); }
    // ok, or too_many_pending with retry_after 1 s.
    wsguard::decision decision() const noexcept { return decision_; }
    // When the upgrade request must be complete (try_admit's now + deadline).
    std::chrono::steady_clock::time_point deadline() const noexcept { return deadline_; }
    // True from the deadline on: close the socket, log handshake_deadline_passed.
    bool expired(std::chrono::steady_clock::time_point now) const noexcept { return now >= deadline_; }
    bool expired() const noexcept { return expired(std::chrono::steady_clock::now()); }
    // ok before the deadline, handshake_deadline_passed from it on: for logs
    // and for stacks that answer 408 before closing.
    wsguard::decision check_deadline(std::chrono::steady_clock::time_point now) const noexcept {
        return expired(now) ? wsguard::decision(reason::handshake_deadline_passed) : wsguard::decision::allow();
    }
    wsguard::decision check_deadline() const noexcept { return check_deadline(std::chrono::steady_clock::now()); }
    // Gives the pending slot back now (the handshake ended: upgraded or
    // dropped). Idempotent; the destructor does the same.
    void release() noexcept { slot_.release(); }

private:
    friend class accept_gate;
    accept_permit(connection_limiter<address_key>::permit slot, wsguard::decision d,
                  std::chrono::steady_clock::time_point deadline) noexcept
        : slot_(std::move(slot)), decision_(d), deadline_(deadline) {}

    connection_limiter<address_key>::permit slot_;
    wsguard::decision decision_{reason::too_many_pending, refusal_retry_after};
    std::chrono::steady_clock::time_point deadline_{};
};

class accept_gate {
public:
    static result<accept_gate> create(const accept_limits& limits);

    // Call right after accept(), before reading anything from the socket.
    accept_permit try_admit(const address_key& client, std::chrono::steady_clock::time_point now) noexcept;
    accept_permit try_admit(const address_key& client) noexcept {
        return try_admit(client, std::chrono::steady_clock::now());
    }

    // The key for a peer, grouped by this gate's address options: raw
    // network-order bytes (4 or 16, e.g. from sockaddr) or endpoint text.
    std::optional<address_key> address_of(const std::uint8_t* data, std::size_t size) const noexcept {
        return address_key::from_bytes(data, size, limits_.address_options);
    }
    std::optional<address_key> address_of(std::string_view endpoint_text) const noexcept {
        return address_key::from_endpoint_text(endpoint_text, limits_.address_options);
    }

    // Handshakes in progress, in total and for one client.
    std::uint32_t pending() const noexcept { return pending_.total(); }
    std::uint32_t pending(const address_key& client) const noexcept { return pending_.connections(client); }
    std::chrono::milliseconds handshake_deadline() const noexcept { return limits_.handshake_deadline; }
    // Everything this gate owns; constant from construction on.
    std::size_t memory_bytes() const noexcept { return sizeof(*this) - sizeof(pending_) + pending_.memory_bytes(); }

private:
    accept_gate(connection_limiter<address_key> table, const accept_limits& limits) noexcept
        : pending_(std::move(table)), limits_(limits) {}
    static wsguard::decision refusal() noexcept {
        return wsguard::decision(reason::too_many_pending, accept_permit::refusal_retry_after);
    }

    connection_limiter<address_key> pending_;
    accept_limits limits_;
};

// ---------------------------------------------------------------------------
// penalty_box: bans a client that keeps presenting forged tickets.
// ---------------------------------------------------------------------------
//
// A forged ticket costs the server a MAC; a client that sends them by the
// thousand is an attacker, not a user. record_failure counts the failures that
// only forgery or replay produce — ticket_bad_mac, ticket_unknown_key,
// ticket_replayed, ticket_malformed — and ignores every other reason (an
// expired ticket from a stale page, a clock skew, a wrong origin are honest
// mistakes). A client may fail max_failures times at once and one more time
// every window / max_failures after that; the failure beyond that bans it for
// `ban`. check() refuses a banned client with client_penalized (429, with
// retry_after until the ban ends) and is meant to run before any MAC is
// computed. After a ban the client's failure budget refills from empty: a
// client that resumes forging at once is banned again on its first failure.
// Defaults: 20 failures (per 60 s) and a 5-minute ban; a user with a stale
// page fails with ticket_expired, which is not counted, and a reload spends a
// fresh ticket, so an ordinary user is never banned.
//
// Storage is keyed_limiter's fixed table (one 16-byte entry per client,
// seeded hashing, sharded locks, no allocation after create): a ban is stored
// as a bucket state far in the future, so bans are the last entries evicted
// when a flood of new clients passes through; when a probe group holds only
// bans, the one closest to its end goes first.
struct penalty_options {
    std::uint32_t max_failures = 20;                       // tolerated at once
    std::chrono::milliseconds window = std::chrono::minutes(1);  // max_failures more per window
    std::chrono::milliseconds ban = std::chrono::minutes(5);
    std::size_t capacity = 65536;                          // clients tracked at once
    bool enabled = true;                                   // read by handshake_guard only
};

class penalty_box {
public:
    static result<penalty_box> create(const penalty_options& options);

    // Whether a failure with this reason counts towards a ban.
    static constexpr bool counts(reason r) noexcept {
        return r == reason::ticket_bad_mac || r == reason::ticket_unknown_key || r == reason::ticket_replayed ||
               r == reason::ticket_malformed;
    }

    // ok, or client_penalized with retry_after until the ban ends. Never
    // creates an entry.
    decision check(const address_key& client, std::chrono::steady_clock::time_point now) noexcept {
        return check_prepared(table_.prepare(client), now);
    }
    decision check(const address_key& client) noexcept { return check(client, std::chrono::steady_clock::now()); }

    // Counts one failure of `r` (ignored unless counts(r)). Returns ok while the
    // client is tolerated, client_penalized (retry_after: the ban) when this
    // failure started a ban or one is running.
    decision record_failure(const address_key& client, reason r, std::chrono::steady_clock::time_point now) noexcept;
    decision record_failure(const address_key& client, reason r) noexcept {
        return record_failure(client, r, std::chrono::steady_clock::now());
    }

    std::size_t capacity() const noexcept { return table_.capacity(); }
    std::size_t memory_bytes() const noexcept { return sizeof(*this) - sizeof(table_) + table_.memory_bytes(); }

private:
    using slot = keyed_limiter<address_key>::slot;
    using prepared_key = keyed_limiter<address_key>::prepared_key;

    template <class>
    friend class basic_handshake_guard;

    // handshake_guard's hooks (see keyed_limiter::prepare).
    prepared_key prepare(const address_key& client) noexcept { return table_.prepare(client); }
    void prefetch(const prepared_key& client) noexcept { table_.prefetch(client); }
    WSGUARD_DETAIL_HOT decision check_prepared(const prepared_key& client, std::chrono::steady_clock::time_point now) noexcept;

    penalty_box(keyed_limiter<address_key> table, std::uint64_t ban_ns) noexcept
        : table_(std::move(table)), ban_ns_(ban_ns) {}

    // A bucket never runs more than one window ahead of now unless banned:
    // the excess is what is left of the ban. The bucket is clamped below
    // 2^64 by the clock horizon, and ban_ns is at most a year.
    decision ban_left(const slot& entry, std::uint64_t t) const noexcept;

    keyed_limiter<address_key> table_;
    std::uint64_t ban_ns_ = 0;
};

// ---------------------------------------------------------------------------
// Internals: the clock, the hash, the locks and the address parser, then the
// out-of-line bodies of the storage types and of the public classes above.
// ---------------------------------------------------------------------------
namespace detail {

static_assert(std::ratio_less_equal<std::chrono::steady_clock::period, std::nano>::value,
              "wsguard rate limits need a steady_clock with at least nanosecond resolution");

// steady_clock time as unsigned nanoseconds, order-preserving over the whole
// int64 range (min maps to 0, max to 2^64-1), so no subtraction can wrap.
inline std::uint64_t limits_ticks(std::chrono::steady_clock::time_point t) noexcept {
    const std::int64_t ns = std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
    return static_cast<std::uint64_t>(ns) ^ (std::uint64_t{1} << 63);
}

// A refusal's wait, rounded up to whole milliseconds and never zero: a client
// that retries exactly at retry_after must succeed, not be refused again.
inline std::chrono::milliseconds limits_wait(std::uint64_t wait_ns) noexcept {
    std::uint64_t ms = wait_ns / 1000000 + (wait_ns % 1000000 != 0 ? 1 : 0);
    if (ms == 0) ms = 1;
    return std::chrono::milliseconds(static_cast<std::chrono::milliseconds::rep>(ms));
}

// SipHash-c-d (Aumasson and Bernstein), portable and endian-independent.
// Keyed with a random seed, so a remote client cannot choose keys that collide.
inline std::uint64_t limits_load_le64(const unsigned char* p) noexcept {
    std::uint64_t v = 0;
    for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
    return v;
}

inline std::uint64_t limits_rotl(std::uint64_t x, int b) noexcept { return (x << b) | (x >> (64 - b)); }

// One SipRound. A named function rather than a lambda: a lambda the compiler
// keeps out of line would sit apart from the hot code (WSGUARD_DETAIL_HOT).
WSGUARD_DETAIL_HOT inline void limits_sip_round(std::uint64_t& v0, std::uint64_t& v1, std::uint64_t& v2,
                                                std::uint64_t& v3) noexcept {
    v0 += v1; v1 = limits_rotl(v1, 13); v1 ^= v0; v0 = limits_rotl(v0, 32);
    v2 += v3; v3 = limits_rotl(v3, 16); v3 ^= v2;
    v0 += v3; v3 = limits_rotl(v3, 21); v3 ^= v0;
    v2 += v1; v1 = limits_rotl(v1, 17); v1 ^= v2; v2 = limits_rotl(v2, 32);
}

// `wide`: the 128-bit variant of the reference implementation (hi is then
// the second 64 bits; lo differs from the 64-bit variant's output).
template <int CompressionRounds, int FinalRounds>
WSGUARD_DETAIL_HOT inline limits_siphash_output limits_siphash(std::uint64_t k0, std::uint64_t k1, const void* data, std::size_t len,
                                                               bool wide = false) noexcept {
    const auto* in = static_cast<const unsigned char*>(data);
    std::uint64_t v0 = 0x736f6d6570736575ull ^ k0;
    std::uint64_t v1 = 0x646f72616e646f6dull ^ k1 ^ (wide ? 0xee : 0);
    std::uint64_t v2 = 0x6c7967656e657261ull ^ k0;
    std::uint64_t v3 = 0x7465646279746573ull ^ k1;
    const auto sip_round = [&]() noexcept { limits_sip_round(v0, v1, v2, v3); };
    const std::size_t whole = len - len % 8;
    for (std::size_t i = 0; i < whole; i += 8) {
        const std::uint64_t m = limits_load_le64(in + i);
        v3 ^= m;
        for (int r = 0; r < CompressionRounds; ++r) sip_round();
        v0 ^= m;
    }
    std::uint64_t last = static_cast<std::uint64_t>(len) << 56;
    for (std::size_t i = 0; i < len % 8; ++i) last |= static_cast<std::uint64_t>(in[whole + i]) << (8 * i);
    v3 ^= last;
    for (int r = 0; r < CompressionRounds; ++r) sip_round();
    v0 ^= last;
    v2 ^= wide ? 0xee : 0xff;
    for (int r = 0; r < FinalRounds; ++r) sip_round();
    limits_siphash_output out;
    out.lo = v0 ^ v1 ^ v2 ^ v3;
    if (wide) {
        v1 ^= 0xdd;
        for (int r = 0; r < FinalRounds; ++r) sip_round();
        out.hi = v0 ^ v1 ^ v2 ^ v3;
    }
    return out;
}

// SipHash-1-3 with its 128-bit output: `lo` places a key in the table and
// `hi` is the independent 64-bit tag stored to recognise it.
inline limits_siphash_output limits_siphash13_128(std::uint64_t k0, std::uint64_t k1, const void* data,
                                                  std::size_t len) noexcept {
    return limits_siphash<1, 3>(k0, k1, data, len, true);
}

// From the OS through the crypto section; false if the OS refused.
inline bool limits_make_seed(limits_seed& seed) noexcept {
    std::uint8_t raw[16] = {};
    if (random_bytes(raw, sizeof raw) != reason::ok) return false;
    for (int i = 0; i < 2; ++i) seed.k[i] = limits_load_le64(raw + 8 * i);
    return true;
}

class limits_lock_guard {
public:
    explicit limits_lock_guard(limits_spinlock& l) noexcept : lock_(l) { lock_.lock(); }
    ~limits_lock_guard() { lock_.unlock(); }
    limits_lock_guard(const limits_lock_guard&) = delete;
    limits_lock_guard& operator=(const limits_lock_guard&) = delete;

private:
    limits_spinlock& lock_;
};

// Starts loading a group while the shard lock is being taken: under a flood
// of new keys the group is rarely cached.
template <class Group>
inline void limits_prefetch(const Group& group) noexcept {
#if defined(__GNUC__) || defined(__clang__)
    const char* bytes = reinterpret_cast<const char*>(&group);
    for (std::size_t offset = 0; offset < sizeof(Group); offset += 64) __builtin_prefetch(bytes + offset, 1);
    // A slot not aligned to a line (connection_limiter's, the replay store's) may straddle two.
    if constexpr (alignof(Group) < 64) __builtin_prefetch(bytes + sizeof(Group) - 1, 1);
#else
    (void)group;
#endif
}

template <class T>
std::unique_ptr<T[]> limits_allocate(std::size_t n) noexcept {
    return std::unique_ptr<T[]>(new (std::nothrow) T[n]());
}

inline constexpr std::size_t limits_address_text_cap = 128;  // longer input is refused unread
inline constexpr std::size_t limits_zone_cap = 32;

inline bool limits_is_digit(char c) noexcept { return c >= '0' && c <= '9'; }
inline int limits_hex_value(char c) noexcept {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

// Strict dotted quad: exactly four decimal parts 0-255, no leading zeros (a
// leading zero means octal to inet_aton, so "010.0.0.1" is ambiguous).
inline bool limits_parse_ipv4(std::string_view s, std::uint8_t out[4]) noexcept {
    std::size_t i = 0;
    for (int part = 0; part < 4; ++part) {
        if (part > 0) {
            if (i >= s.size() || s[i] != '.') return false;
            ++i;
        }
        const std::size_t begin = i;
        unsigned value = 0;
        while (i < s.size() && limits_is_digit(s[i]) && i - begin < 3) value = value * 10 + static_cast<unsigned>(s[i++] - '0');
        const std::size_t digits = i - begin;
        if (digits == 0 || value > 255 || (digits > 1 && s[begin] == '0')) return false;
        out[part] = static_cast<std::uint8_t>(value);
    }
    return i == s.size();
}

// RFC 4291 section 2.2 text forms: eight groups of 1-4 hex digits, at most one
// "::" standing for one or more zero groups, optionally a dotted quad as the
// last 32 bits. Case-insensitive.
inline bool limits_parse_ipv6(std::string_view s, std::uint8_t out[16]) noexcept {
    std::uint16_t groups[8] = {};
    int count = 0;
    int gap = -1;  // index in groups where "::" stands
    std::size_t i = 0;
    if (s.size() >= 2 && s[0] == ':' && s[1] == ':') {
        gap = 0;
        i = 2;
    }
    while (i < s.size()) {
        std::size_t j = i;
        while (j < s.size() && limits_hex_value(s[j]) >= 0 && j - i < 5) ++j;
        if (j < s.size() && s[j] == '.') {
            std::uint8_t quad[4];
            if (count > 6 || !limits_parse_ipv4(s.substr(i), quad)) return false;
            groups[count++] = static_cast<std::uint16_t>(quad[0] << 8 | quad[1]);
            groups[count++] = static_cast<std::uint16_t>(quad[2] << 8 | quad[3]);
            i = s.size();
            break;
        }
        if (j == i || j - i > 4 || count == 8) return false;
        unsigned value = 0;
        for (std::size_t k = i; k < j; ++k) value = value << 4 | static_cast<unsigned>(limits_hex_value(s[k]));
        groups[count++] = static_cast<std::uint16_t>(value);
        i = j;
        if (i == s.size()) break;
        if (s[i] != ':') return false;
        ++i;
        if (i < s.size() && s[i] == ':') {
            if (gap >= 0) return false;
            gap = count;
            ++i;
        } else if (i == s.size()) {
            return false;  // a single trailing colon
        }
    }
    if (gap < 0) {
        if (count != 8) return false;
    } else {
        if (count > 7) return false;  // "::" must stand for at least one group
        const int tail = count - gap;
        for (int k = 0; k < tail; ++k) groups[7 - k] = groups[count - 1 - k];
        for (int k = gap; k < 8 - tail; ++k) groups[k] = 0;
    }
    for (int k = 0; k < 8; ++k) {
        out[2 * k] = static_cast<std::uint8_t>(groups[k] >> 8);
        out[2 * k + 1] = static_cast<std::uint8_t>(groups[k] & 0xff);
    }
    return true;
}

// A zone id (fe80::1%eth0) names the local interface: it is dropped, after
// checking that it is a plausible interface name or index.
inline bool limits_strip_zone(std::string_view& s) noexcept {
    const std::size_t percent = s.find('%');
    if (percent == std::string_view::npos) return true;
    const std::string_view zone = s.substr(percent + 1);
    if (zone.empty() || zone.size() > limits_zone_cap) return false;
    for (char c : zone) {
        const bool ok = limits_hex_value(c) >= 0 || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == '-' || c == '.';
        if (!ok) return false;
    }
    s = s.substr(0, percent);
    return true;
}

inline bool limits_parse_port(std::string_view s) noexcept {
    if (s.empty() || s.size() > 5) return false;
    unsigned value = 0;
    for (char c : s) {
        if (!limits_is_digit(c)) return false;
        value = value * 10 + static_cast<unsigned>(c - '0');
    }
    return value <= 65535;
}

inline std::string limits_gcra::configure(rate r, std::uint32_t burst_size, limits_gcra& out) {
    const std::int64_t period = r.period.count();
    if (r.count == 0) return "rate: count must be at least 1 (a limiter that refuses everything is a configuration error)";
    if (period <= 0) return "rate: period must be positive";
    if (r.count > static_cast<std::uint64_t>(period))
        return "rate: more than one event per nanosecond (over 1e9 per second) is not supported";
    if (burst_size == 0) return "burst must be at least 1 (0 would refuse every request)";
    const std::uint64_t p = static_cast<std::uint64_t>(period);
    const std::uint64_t interval = p / r.count + (p % r.count != 0 ? 1 : 0);
    if (interval > limits_max_window_ns / burst_size)
        return "burst / rate spans more than 100 years: lower the burst or raise the rate";
    out.interval_ns = interval;
    out.window_ns = interval * burst_size;
    // Clock values above the horizon are clamped to it, so tat (at most
    // now + window) never reaches 2^64: near the end of time the bucket
    // stops refilling instead of wrapping around (fails closed).
    out.horizon = limits_u64_max - 2 * out.window_ns;
    out.burst = burst_size;
    return std::string();
}

inline std::uint64_t limits_gcra::clamp(std::chrono::steady_clock::time_point now) const noexcept {
    const std::uint64_t t = limits_ticks(now);
    return t < horizon ? t : horizon;
}

inline decision limits_gcra::step(std::uint64_t tat, std::uint64_t t, std::uint32_t n,
                                  std::uint64_t& new_tat) const noexcept {
    const std::uint64_t cost = interval_ns * n;                 // <= window_ns
    const std::uint64_t base = tat > t ? tat : t;               // an idle bucket starts from now
    const std::uint64_t debt = base - t;                        // how far ahead the bucket runs
    if (debt > window_ns - cost) return decision(reason::rate_limited, limits_wait(debt + cost - window_ns));
    new_tat = base + cost;
    return decision::allow();
}

inline std::string limits_geometry::configure(std::size_t capacity, std::uint32_t window, limits_geometry& out) {
    if (capacity == 0) return "capacity must be at least 1";
    if (capacity > limits_max_capacity) return "capacity over 2^28 entries: that is gigabytes of table, surely a mistake";
    std::uint32_t shards = 1;
    while (shards < limits_max_shards && std::size_t{shards} * 4 * window <= capacity) shards *= 2;
    const std::size_t per_shard = std::size_t{shards} * window;
    out.shard_count = shards;
    out.groups_per_shard = static_cast<std::uint32_t>((capacity + per_shard - 1) / per_shard);
    out.window = window;
    return std::string();
}

template <class Group>
inline bool limits_table<Group>::allocate(std::size_t count) noexcept {
    release();
    constexpr std::size_t huge_page = std::size_t{2} << 20;
    std::size_t bytes = count * sizeof(Group);
    alignment_ = bytes >= huge_page ? huge_page : alignof(Group);
    bytes = (bytes + alignment_ - 1) / alignment_ * alignment_;
    void* memory = ::operator new(bytes, std::align_val_t(alignment_), std::nothrow);
    if (memory == nullptr) return false;
#if defined(__linux__) && defined(MADV_HUGEPAGE)
    if (alignment_ == huge_page) (void)::madvise(memory, bytes, MADV_HUGEPAGE);  // a hint: fine if refused
#endif
    std::memset(memory, 0, bytes);
    groups_ = static_cast<Group*>(memory);
    return true;
}

}  // namespace detail

// The out-of-line bodies of the public classes, in the order of the classes.

inline result<token_bucket> token_bucket::create(wsguard::rate r, std::uint32_t burst) {
    detail::limits_gcra gcra;
    std::string error = detail::limits_gcra::configure(r, burst, gcra);
    if (!error.empty()) return result<token_bucket>::failure("token_bucket: " + error);
    return result<token_bucket>::success(token_bucket(gcra));
}

inline decision token_bucket::try_acquire(std::chrono::steady_clock::time_point now, std::uint32_t n) noexcept {
    if (n == 0) return decision::allow();
    if (n > gcra_.burst) return decision(reason::rate_limited);
    const std::uint64_t t = gcra_.clamp(now);
    std::uint64_t tat = tat_.load(std::memory_order_relaxed);
    for (;;) {
        std::uint64_t new_tat = 0;
        const decision d = gcra_.step(tat, t, n, new_tat);
        if (!d) return d;
        // The word is the whole state: relaxed ordering is enough.
        if (tat_.compare_exchange_weak(tat, new_tat, std::memory_order_relaxed, std::memory_order_relaxed)) return d;
    }
}

template <class Key>
inline result<keyed_limiter<Key>> keyed_limiter<Key>::create(wsguard::rate r, std::uint32_t burst,
                                                             std::size_t capacity) {
    keyed_limiter limiter;
    std::string error = detail::limits_gcra::configure(r, burst, limiter.gcra_);
    if (error.empty()) error = detail::limits_geometry::configure(capacity, detail::limits_keyed_window, limiter.geometry_);
    if (!error.empty()) return result<keyed_limiter>::failure("keyed_limiter: " + error);
    if (!detail::limits_make_seed(limiter.seed_))
        return result<keyed_limiter>::failure("keyed_limiter: the OS refused random bytes for the hash seed");
    limiter.shards_ = detail::limits_allocate<detail::limits_shard>(limiter.geometry_.shard_count);
    if (!limiter.shards_ || !limiter.groups_.allocate(limiter.geometry_.group_count()))
        return result<keyed_limiter>::failure("keyed_limiter: out of memory for the table");
    return result<keyed_limiter>::success(std::move(limiter));
}

template <class Key>
inline decision keyed_limiter<Key>::try_acquire(const Key& key, std::chrono::steady_clock::time_point now,
                                                std::uint32_t n) noexcept {
    if (n == 0) return decision::allow();
    if (n > gcra_.burst) return decision(reason::rate_limited);
    return try_acquire_prepared(prepare(key), now, n);
}

template <class Key>
inline typename keyed_limiter<Key>::prepared_key keyed_limiter<Key>::prepare(const Key& key) noexcept {
    const prepared_key digest = traits::make(key, seed_);
    prefetch(digest);
    return digest;
}

template <class Key>
inline void keyed_limiter<Key>::prefetch(const prepared_key& digest) noexcept {
    detail::limits_prefetch(groups_[geometry_.group_of(digest.hash, geometry_.shard_of(digest.hash))]);
}

template <class Key>
inline decision keyed_limiter<Key>::try_acquire_prepared(const prepared_key& key,
                                                         std::chrono::steady_clock::time_point now,
                                                         std::uint32_t n) noexcept {
    return with_entry(key, now, true, [&](slot& entry, std::uint64_t t) noexcept {
        std::uint64_t new_tat = 0;
        const decision d = gcra_.step(entry.tat, t, n, new_tat);
        if (d) entry.tat = new_tat;
        return d;
    });
}

template <class Key>
template <class Visit>
inline decision keyed_limiter<Key>::with_entry(const Key& key, std::chrono::steady_clock::time_point now, bool insert,
                                               Visit visit) noexcept {
    return with_entry(prepare(key), now, insert, visit);
}

template <class Key>
template <class Visit>
inline decision keyed_limiter<Key>::with_entry(const prepared_key& digest, std::chrono::steady_clock::time_point now,
                                               bool insert, Visit visit) noexcept {
    const std::uint64_t t = gcra_.clamp(now);
    const std::uint32_t shard = geometry_.shard_of(digest.hash);
    group& candidates = groups_[geometry_.group_of(digest.hash, shard)];

    detail::limits_lock_guard guard(shards_[shard].lock);
    if (!insert) {
        for (slot& s : candidates.slots) {
            if (s.tag == digest.tag) return visit(s, t);
        }
        return decision::allow();
    }
    return visit(find_or_evict(candidates, digest.tag), t);
}

template <class Key>
inline typename keyed_limiter<Key>::slot& keyed_limiter<Key>::find_or_evict(group& candidates,
                                                                             std::uint64_t tag) noexcept {
    slot* stalest = &candidates.slots[0];
    for (slot& s : candidates.slots) {
        if (s.tag == tag) return s;
        if (s.tat < stalest->tat) stalest = &s;
    }
    stalest->tag = tag;
    stalest->tat = 0;
    return *stalest;
}

template <class Key>
inline void connection_limiter<Key>::permit::release() noexcept {
    if (table_ == nullptr) return;
    {
        detail::limits_lock_guard guard(table_->lock);
        slot& s = table_->find(key_, home_);  // entries move on deletion: found again by key
        if (s.count != 0 && --s.count == 0) table_->erase(table_->index_of(s));
        table_->total.fetch_sub(1, std::memory_order_relaxed);
    }
    table_ = nullptr;
}

template <class Key>
inline result<connection_limiter<Key>> connection_limiter<Key>::create(const connection_limiter_options& options) {
    const std::uint32_t max_per_key = options.max_per_key, max_total = options.max_total;
    const std::size_t capacity = options.capacity;
    if (max_per_key == 0) return result<connection_limiter>::failure("connection_limiter: max_per_key must be at least 1");
    if (max_total == 0) return result<connection_limiter>::failure("connection_limiter: max_total must be at least 1");
    if (capacity == 0) return result<connection_limiter>::failure("connection_limiter: capacity must be at least 1");
    if (capacity > detail::limits_max_capacity)
        return result<connection_limiter>::failure(
            "connection_limiter: capacity over 2^28 keys: that is gigabytes of table, surely a mistake");
    connection_limiter limiter;
    limiter.table_.reset(new (std::nothrow) table());
    if (!limiter.table_) return result<connection_limiter>::failure("connection_limiter: out of memory");
    table& t = *limiter.table_;
    if (!detail::limits_make_seed(t.seed))
        return result<connection_limiter>::failure("connection_limiter: the OS refused random bytes for the hash seed");
    t.capacity = capacity;
    t.slot_count = static_cast<std::uint32_t>(2 * capacity);  // load factor at most 1/2
    t.max_per_key = max_per_key;
    t.max_total = max_total;
    if (!t.slots.allocate(t.slot_count)) return result<connection_limiter>::failure("connection_limiter: out of memory for the table");
    return result<connection_limiter>::success(std::move(limiter));
}

template <class Key>
inline std::uint32_t connection_limiter<Key>::connections(const Key& key) const noexcept {
    table& t = *table_;
    const auto digest = traits::make(key, t.seed);
    detail::limits_lock_guard guard(t.lock);
    return t.find(digest.key, t.home_of(digest.hash)).count;
}

template <class Key>
inline std::size_t connection_limiter<Key>::live_keys() const noexcept {
    detail::limits_lock_guard guard(table_->lock);
    return table_->live_keys;
}

template <class Key>
inline typename connection_limiter<Key>::prepared_key connection_limiter<Key>::prepare(const Key& key) noexcept {
    const prepared_key digest = traits::make(key, table_->seed);
    prefetch(digest);
    return digest;
}

template <class Key>
inline void connection_limiter<Key>::prefetch(const prepared_key& digest) noexcept {
    detail::limits_prefetch(table_->slots[table_->home_of(digest.hash)]);
}

template <class Key>
inline typename connection_limiter<Key>::permit connection_limiter<Key>::try_acquire_prepared(
    const prepared_key& digest) noexcept {
    table& t = *table_;
    const std::uint32_t home = t.home_of(digest.hash);

    detail::limits_lock_guard guard(t.lock);
    slot& s = t.find(digest.key, home);
    if (s.count != 0 ? s.count >= t.max_per_key : t.live_keys >= t.capacity) return refused();
    if (t.total.load(std::memory_order_relaxed) >= t.max_total) return refused();
    t.total.fetch_add(1, std::memory_order_relaxed);
    if (s.count == 0) {
        s.key = digest.key;
        s.home = home;
        ++t.live_keys;
    }
    ++s.count;
    return permit(&t, digest.key, home);
}

inline std::optional<address_key> address_key::from_text(std::string_view text, address_key_options options) noexcept {
    if (text.size() > detail::limits_address_text_cap) return std::nullopt;
    if (!text.empty() && text.front() == '[') {
        if (text.size() < 2 || text.back() != ']') return std::nullopt;
        return parse_ipv6_text(text.substr(1, text.size() - 2), options);
    }
    if (text.find(':') != std::string_view::npos) return parse_ipv6_text(text, options);
    std::uint8_t quad[4];
    if (!detail::limits_parse_ipv4(text, quad)) return std::nullopt;
    return from_bytes(quad, 4, options);
}

inline std::optional<address_key> address_key::from_endpoint_text(std::string_view text,
                                                                   address_key_options options) noexcept {
    if (text.size() > detail::limits_address_text_cap) return std::nullopt;
    if (!text.empty() && text.front() == '[') {
        const std::size_t close = text.find(']');
        if (close == std::string_view::npos) return std::nullopt;
        const std::string_view rest = text.substr(close + 1);
        if (!rest.empty() && (rest.front() != ':' || !detail::limits_parse_port(rest.substr(1)))) return std::nullopt;
        return parse_ipv6_text(text.substr(1, close - 1), options);
    }
    const std::size_t colon = text.find(':');
    if (colon != std::string_view::npos && text.find(':', colon + 1) == std::string_view::npos) {
        if (!detail::limits_parse_port(text.substr(colon + 1))) return std::nullopt;
        std::uint8_t quad[4];
        if (!detail::limits_parse_ipv4(text.substr(0, colon), quad)) return std::nullopt;
        return from_bytes(quad, 4, options);
    }
    return from_text(text, options);
}

WSGUARD_DETAIL_HOT inline std::optional<address_key> address_key::from_bytes(const std::uint8_t* data, std::size_t size,
                                                                             address_key_options options) noexcept {
    if (data == nullptr || (size != 4 && size != 16)) return std::nullopt;
    address_key key;
    if (size == 16 && !is_v4_mapped(data)) {
        std::memcpy(key.bytes_, data, 16);
        key.keep_prefix(0, options.ipv6_prefix > 128 ? 128 : options.ipv6_prefix);
    } else {
        key.bytes_[10] = 0xff;
        key.bytes_[11] = 0xff;
        std::memcpy(key.bytes_ + 12, size == 16 ? data + 12 : data, 4);
        key.keep_prefix(12, options.ipv4_prefix > 32 ? 32 : options.ipv4_prefix);
    }
    return key;
}

inline bool address_key::is_v4_mapped(const std::uint8_t* b) noexcept {
    for (int i = 0; i < 10; ++i) {
        if (b[i] != 0) return false;
    }
    return b[10] == 0xff && b[11] == 0xff;
}

inline std::optional<address_key> address_key::parse_ipv6_text(std::string_view text,
                                                                address_key_options options) noexcept {
    if (!detail::limits_strip_zone(text)) return std::nullopt;
    std::uint8_t raw[16];
    if (!detail::limits_parse_ipv6(text, raw)) return std::nullopt;
    return from_bytes(raw, 16, options);
}

inline void address_key::keep_prefix(unsigned from, unsigned bits) noexcept {
    unsigned i = from + bits / 8;
    if (i < 16 && bits % 8 != 0) {
        bytes_[i] = static_cast<std::uint8_t>(bytes_[i] & (0xff << (8 - bits % 8)));
        ++i;
    }
    if (i < 16) std::memset(bytes_ + i, 0, 16 - i);
}

inline result<accept_gate> accept_gate::create(const accept_limits& limits) {
    if (limits.handshake_deadline <= std::chrono::milliseconds::zero())
        return result<accept_gate>::failure("accept_gate: handshake_deadline must be positive (10 s is a good default)");
    if (limits.max_pending_per_address > limits.max_pending_total)
        return result<accept_gate>::failure("accept_gate: max_pending_per_address is over max_pending_total");
    auto table = connection_limiter<address_key>::create(
        {limits.max_pending_per_address, limits.table_capacity, limits.max_pending_total});
    if (!table) return result<accept_gate>::failure("accept_gate: " + table.error());
    return result<accept_gate>::success(accept_gate(std::move(table).value(), limits));
}

inline accept_permit accept_gate::try_admit(const address_key& client,
                                            std::chrono::steady_clock::time_point now) noexcept {
    connection_limiter<address_key>::permit slot = pending_.try_acquire(client);
    if (!slot) return accept_permit(std::move(slot), refusal(), now);
    return accept_permit(std::move(slot), wsguard::decision::allow(), now + limits_.handshake_deadline);
}

inline result<penalty_box> penalty_box::create(const penalty_options& options) {
    if (options.max_failures == 0) return result<penalty_box>::failure("penalty_box: max_failures must be at least 1");
    if (options.window <= std::chrono::milliseconds::zero())
        return result<penalty_box>::failure("penalty_box: window must be positive");
    if (options.ban <= std::chrono::milliseconds::zero() || options.ban > std::chrono::hours(24 * 365))
        return result<penalty_box>::failure("penalty_box: ban must be positive and at most a year");
    auto table = keyed_limiter<address_key>::create(wsguard::rate{options.max_failures, options.window},
                                                     options.max_failures, options.capacity);
    if (!table) return result<penalty_box>::failure("penalty_box: " + table.error());
    const std::uint64_t ban_ns = static_cast<std::uint64_t>(std::chrono::nanoseconds(options.ban).count());
    return result<penalty_box>::success(penalty_box(std::move(table).value(), ban_ns));
}

inline decision penalty_box::record_failure(const address_key& client, reason r,
                                            std::chrono::steady_clock::time_point now) noexcept {
    if (!counts(r)) return decision::allow();
    const detail::limits_gcra& gcra = table_.gcra_;
    return table_.with_entry(client, now, true, [&](slot& entry, std::uint64_t t) noexcept {
        if (decision running = ban_left(entry, t); !running) return running;
        std::uint64_t new_tat = 0;
        if (gcra.step(entry.tat, t, 1, new_tat)) {
            entry.tat = new_tat;
            return decision::allow();
        }
        // Banned: the bucket runs `ban` beyond full debt, see ban_left.
        const std::uint64_t room = detail::limits_u64_max - gcra.window_ns - t;  // t <= horizon: no wrap
        entry.tat = t + gcra.window_ns + (ban_ns_ < room ? ban_ns_ : room);
        return decision(reason::client_penalized, detail::limits_wait(ban_ns_));
    });
}

inline decision penalty_box::check_prepared(const prepared_key& client,
                                            std::chrono::steady_clock::time_point now) noexcept {
    return table_.with_entry(client, now, false, [&](const slot& entry, std::uint64_t t) noexcept {
        return ban_left(entry, t);
    });
}

inline decision penalty_box::ban_left(const slot& entry, std::uint64_t t) const noexcept {
    const std::uint64_t window = table_.gcra_.window_ns;
    if (entry.tat <= t || entry.tat - t <= window) return decision::allow();
    return decision(reason::client_penalized, detail::limits_wait(entry.tat - t - window));
}

}  // inline namespace WSGUARD_ABI_NS
}  // namespace wsguard

// ===========================================================================
// 4. request_head_budget: caps on the upgrade request's head, byte by byte
// ===========================================================================
//
// For stacks that read raw bytes (an epoll loop, a custom parser): feed every
// chunk as it arrives, before buffering or parsing it. The budget answers as
// soon as the answer is known, so a client that streams an endless head or
// thousands of tiny header lines is refused at the first byte over a cap,
// and the answer does not depend on how the bytes were split into chunks.
//
//   auto verdict = budget.feed(chunk.data(), chunk.size());
//   if (verdict.status == wsguard::head_status::refused) answer(verdict.decision.http_status());  // 431 or 400
//   else if (verdict.status == wsguard::head_status::complete) parse(buffer.substr(0, verdict.head_size));
//
// Line endings are CRLF only. A bare LF, a bare CR, a NUL byte or an obs-fold
// continuation line (RFC 9112 5.2) is refused as request_malformed: two
// parsers that disagree on where a line ends are how requests get smuggled,
// and no browser sends any of them. Empty lines before the request line are
// skipped as RFC 9112 2.2 asks (their bytes still count).

namespace wsguard {
inline namespace WSGUARD_ABI_NS {

struct head_limits {
    // The whole head: request line, header lines and the blank line (CRLF
    // included). Browsers send 0.5-2 KB for an upgrade; cookies make it more.
    std::size_t max_head_bytes = 8 * 1024;
    // Header field lines after the request line. A browser upgrade has 10-20.
    std::size_t max_header_lines = 64;
};

enum class head_status : std::uint8_t {
    need_more,  // no blank line yet and no cap crossed: read more
    complete,   // the head ends at head_size (bytes from the first one fed)
    refused,    // decision says why; nothing more is read
};

struct [[nodiscard]] head_verdict {
    head_status status = head_status::need_more;
    // complete: bytes from the first byte ever fed through the blank line's
    // LF. Bytes after it (a body, the first WebSocket frame) are not the head's.
    std::size_t head_size = 0;
    // ok unless refused: request_head_too_large or too_many_header_lines (431),
    // request_malformed (400).
    wsguard::decision decision;
    // False once refused: the connection gets decision.http_status() and closes.
    explicit operator bool() const noexcept { return status != head_status::refused; }
};

class request_head_budget {
public:
    static result<request_head_budget> create(head_limits limits = {}) {
        if (limits.max_head_bytes < 64)
            return result<request_head_budget>::failure(
                "request_head_budget: max_head_bytes under 64 cannot hold a request line and a Host header");
        if (limits.max_head_bytes > 1024 * 1024)
            return result<request_head_budget>::failure(
                "request_head_budget: max_head_bytes over 1 MiB; a head that large is an attack, not a browser");
        if (limits.max_header_lines < 1 || limits.max_header_lines > 10000)
            return result<request_head_budget>::failure(
                "request_head_budget: max_header_lines must be 1 to 10000 (a browser upgrade sends 10-20)");
        return result<request_head_budget>::success(request_head_budget(limits));
    }

    // Inspects `n` more bytes of the request. After complete or refused,
    // further calls change nothing and answer the same verdict.
    head_verdict feed(const char* data, std::size_t n) noexcept;
    head_verdict feed(std::string_view bytes) noexcept { return feed(bytes.data(), bytes.size()); }

    // The verdict so far (need_more before the first byte).
    head_verdict verdict() const noexcept { return verdict_; }
    // Bytes inspected so far (never more than head_size once complete).
    std::size_t bytes_seen() const noexcept { return bytes_; }
    // For the next request on the same connection.
    void reset() noexcept { *this = request_head_budget(limits_); }
    const head_limits& limits() const noexcept { return limits_; }

private:
    explicit request_head_budget(head_limits limits) noexcept : limits_(limits) {}
    head_verdict refuse(reason r) noexcept {
        verdict_.status = head_status::refused;
        verdict_.decision = r;
        return verdict_;
    }

    head_limits limits_;
    head_verdict verdict_{};
    std::size_t bytes_ = 0;
    std::size_t header_lines_ = 0;
    std::size_t line_bytes_ = 0;     // bytes of the current line before its CR
    bool request_line_seen_ = false;
    bool after_cr_ = false;
};

inline head_verdict request_head_budget::feed(const char* data, std::size_t n) noexcept {
    if (verdict_.status != head_status::need_more || data == nullptr) return verdict_;
    for (std::size_t i = 0; i < n; ++i) {
        const char c = data[i];
        if (++bytes_ > limits_.max_head_bytes) return refuse(reason::request_head_too_large);
        if (after_cr_) {
            if (c != '\n') return refuse(reason::request_malformed);  // a bare CR
            after_cr_ = false;
            if (line_bytes_ == 0 && request_line_seen_) {
                verdict_.status = head_status::complete;
                verdict_.head_size = bytes_;
                return verdict_;
            }
            if (line_bytes_ != 0) request_line_seen_ = true;  // else an empty line before the request line
            line_bytes_ = 0;
            continue;
        }
        if (c == '\r') {
            after_cr_ = true;
            continue;
        }
        if (c == '\n' || c == '\0') return refuse(reason::request_malformed);  // a bare LF, a NUL
        if (line_bytes_ == 0 && request_line_seen_) {
            if (c == ' ' || c == '\t') return refuse(reason::request_malformed);  // obs-fold
            // Counted at its first byte, so the line over the cap is refused
            // before the rest of it arrives.
            if (++header_lines_ > limits_.max_header_lines) return refuse(reason::too_many_header_lines);
        }
        ++line_bytes_;
    }
    return verdict_;
}

}  // inline namespace WSGUARD_ABI_NS
}  // namespace wsguard

// ===========================================================================
// 5. Origin policy, Host allowlist, Sec-Fetch-Site
// ===========================================================================
//
// origin_policy   the Origin allowlist: exact origins, whole-label subdomain
//                 wildcards (https://*.example.com), any-port (http://localhost:*).
// host_allowlist  the Host allowlist: the DNS-rebinding defence for servers
//                 reachable on localhost or a private address.
// check_sec_fetch_site  an extra denial of cross-site handshakes; never a grant.
//
// Patterns are validated once, in create(); check() parses the header without
// copying, hashes it case-insensitively and probes a flat open-addressing table,
// so its cost does not grow with the allowlist and it never allocates or throws.

// The generated Public Suffix List table lives in its own file, out of the
// reading path (tests/psl/generate_psl_table.py writes it; do not edit it).
// It is a part of this header: users include <wsguard.hpp> and copy include/.
#include "wsguard/detail/public_suffix_data.hpp"

namespace wsguard {
inline namespace WSGUARD_ABI_NS {

// ---------------------------------------------------------------------------
// Storage the public classes hold by value, so it is complete before them: the
// flat host table (its hashing lives with the other internals, below) and the
// trait that lets create() take any range of pattern strings.
// ---------------------------------------------------------------------------
namespace detail {

template <class T, class = void>
struct origin_is_pattern_range : std::false_type {};

// Any container whose elements convert to std::string_view, but not a string
// itself (a std::string is a range of chars, not of patterns).
template <class T>
using origin_element_t = decltype(*std::begin(std::declval<const T&>()));

template <class T>
struct origin_is_pattern_range<T, std::void_t<origin_element_t<T>, decltype(std::end(std::declval<const T&>()))>>
    : std::integral_constant<bool, std::is_convertible<origin_element_t<T>, std::string_view>::value &&
                                       !std::is_convertible<const T&, std::string_view>::value> {};

template <class Patterns>
std::vector<std::string_view> origin_views(const Patterns& patterns) {
    std::vector<std::string_view> views;
    for (const auto& p : patterns) views.emplace_back(std::string_view(p));
    return views;
}

inline std::uint64_t origin_hash_host(std::string_view host) noexcept;
inline bool origin_folded_equal(const char* host, const char* stored, std::size_t n) noexcept;

// The set behind origin_policy and host_allowlist: keys are (tag, port, host).
class origin_table {
public:
    // Adds a key once; returns false when it was already there.
    bool insert(std::uint8_t tag, std::uint32_t port, std::string_view host) {
        if (host.size() > 255 || arena_.size() > 0xffffff00u) return false;
        if (find(tag, port, host, origin_hash_host(host))) return false;
        if ((count_ + 1) * 2 > slots_.size()) grow();
        place(slot{key_hash(origin_hash_host(host), tag, port), static_cast<std::uint32_t>(arena_.size()),
                   static_cast<std::uint8_t>(host.size()), tag, static_cast<std::uint16_t>(port)});
        for (char c : host) arena_ += static_cast<char>(c | 0x20);
        ++count_;
        return true;
    }

    WSGUARD_DETAIL_HOT bool find(std::uint8_t tag, std::uint32_t port, std::string_view host, std::uint64_t host_hash) const noexcept {
        if (slots_.empty()) return false;
        const std::uint64_t h = key_hash(host_hash, tag, port);
        const std::size_t mask = slots_.size() - 1;
        for (std::size_t i = static_cast<std::size_t>(h >> shift_);; i = (i + 1) & mask) {
            const slot& s = slots_[i];
            if (s.hash == 0) return false;
            if (s.hash == h && s.tag == tag && s.port == port && s.length == host.size() &&
                origin_folded_equal(host.data(), arena_.data() + s.offset, host.size())) {
                return true;
            }
        }
    }

    std::size_t size() const noexcept { return count_; }

private:
    struct slot {
        std::uint64_t hash;  // 0: empty
        std::uint32_t offset;
        std::uint8_t length;
        std::uint8_t tag;
        std::uint16_t port;
    };

    // Multiply-shift: the index is the product's top bits, which depend on
    // every bit of the key.
    static std::uint64_t key_hash(std::uint64_t host_hash, std::uint8_t tag, std::uint32_t port) noexcept {
        const std::uint64_t h = (host_hash ^ (static_cast<std::uint64_t>(tag) << 16) ^ port) * 0x9e3779b97f4a7c15ULL;
        return h == 0 ? 1 : h;
    }

    void place(const slot& entry) {
        const std::size_t mask = slots_.size() - 1;
        std::size_t i = static_cast<std::size_t>(entry.hash >> shift_);
        while (slots_[i].hash != 0) i = (i + 1) & mask;
        slots_[i] = entry;
    }

    void grow() {
        std::vector<slot> old = std::move(slots_);
        slots_.assign(old.empty() ? 16 : old.size() * 2, slot{0, 0, 0, 0, 0});
        shift_ = 64;
        for (std::size_t size = slots_.size(); size > 1; size >>= 1) --shift_;
        for (const slot& s : old) {
            if (s.hash != 0) place(s);
        }
    }

    std::vector<slot> slots_;
    std::string arena_;  // every host, folded, back to back
    std::size_t count_ = 0;
    unsigned shift_ = 64;  // 64 - log2(slots_.size())
};

}  // namespace detail

// ---------------------------------------------------------------------------
// origin_policy
// ---------------------------------------------------------------------------
struct origin_options {
    // Let a handshake with no Origin header through. Browsers always send
    // Origin on a WebSocket handshake; only set this for non-browser clients
    // (native apps, server-to-server), and authenticate them another way.
    bool allow_missing_origin = false;
    // Accept every well-formed origin: the policy then checks nothing but the
    // syntax. "null" and malformed values are still refused. Dangerous with
    // cookies or any ambient credential: any page can open the socket.
    bool allow_any_origin_unsafe = false;
};

class origin_policy {
public:
    using options = origin_options;
    // Longer Origin values are refused before they are parsed. A real origin
    // is at most about 270 bytes (253-byte host, scheme, port).
    static constexpr std::size_t max_header_length = 2048;

    // Patterns: "https://app.example.com", "https://app.example.com:8443",
    // "http://[::1]:8080", "https://*.example.com" (one or more labels, not the
    // apex), "http://localhost:*" (any port). ASCII case and default ports are
    // folded; everything else is significant.
    static result<origin_policy> create(std::initializer_list<std::string_view> patterns) {
        return build(std::vector<std::string_view>(patterns), options{});
    }
    static result<origin_policy> create(std::initializer_list<std::string_view> patterns, const options& opts) {
        return build(std::vector<std::string_view>(patterns), opts);
    }
    template <class Patterns, class = std::enable_if_t<detail::origin_is_pattern_range<Patterns>::value>>
    static result<origin_policy> create(const Patterns& patterns) {
        return build(detail::origin_views(patterns), options{});
    }
    template <class Patterns, class = std::enable_if_t<detail::origin_is_pattern_range<Patterns>::value>>
    static result<origin_policy> create(const Patterns& patterns, const options& opts) {
        return build(detail::origin_views(patterns), opts);
    }

    // `origin_header` is the Origin field value as the HTTP parser gives it;
    // an empty view means the header was absent.
    decision check(std::string_view origin_header) const noexcept;

    // Distinct patterns after folding case and default ports.
    std::size_t size() const noexcept { return table_.size(); }
    const options& settings() const noexcept { return options_; }

private:
    origin_policy() = default;
    static result<origin_policy> build(const std::vector<std::string_view>& patterns, const options& opts);

    detail::origin_table table_;
    options options_;
    std::uint64_t wildcard_labels_ = 0;  // bit k-1: some wildcard parent has k labels (k >= 64 -> bit 63)
    bool any_port_exact_ = false;
    bool any_port_wildcard_ = false;
};

// ---------------------------------------------------------------------------
// host_allowlist: the DNS-rebinding defence
// ---------------------------------------------------------------------------
// A page on attacker.example whose DNS answer flips to 127.0.0.1 talks to your
// local server with Origin and Host both "attacker.example": an "Origin equals
// Host" check passes, a Host allowlist does not.
class host_allowlist {
public:
    // Patterns: "localhost:8080", "127.0.0.1:8080", "[::1]:8080",
    // "app.example.com" (no port: matches a Host with no port, :80 or :443),
    // "localhost:*" (any port). No wildcard hosts.
    static result<host_allowlist> create(std::initializer_list<std::string_view> patterns) {
        return build(std::vector<std::string_view>(patterns));
    }
    template <class Patterns, class = std::enable_if_t<detail::origin_is_pattern_range<Patterns>::value>>
    static result<host_allowlist> create(const Patterns& patterns) {
        return build(detail::origin_views(patterns));
    }

    // `host_header` is the Host field value; an empty view means it was absent.
    decision check(std::string_view host_header) const noexcept;

    std::size_t size() const noexcept { return table_.size(); }

private:
    host_allowlist() = default;
    static result<host_allowlist> build(const std::vector<std::string_view>& patterns);

    detail::origin_table table_;
    bool any_port_ = false;
};

// ---------------------------------------------------------------------------
// Sec-Fetch-Site: an extra denial, never a grant
// ---------------------------------------------------------------------------
enum class fetch_site_policy : std::uint8_t {
    deny_cross_site,               // refuse "cross-site"
    deny_cross_site_and_same_site, // also refuse "same-site" (sibling subdomains)
};

// Browsers send Sec-Fetch-Site on every request; older browsers and
// non-browser clients send none, so an absent value passes. Passing this
// check grants nothing: the Origin check must still pass.
WSGUARD_DETAIL_HOT inline decision check_sec_fetch_site(std::string_view value,
                                                        fetch_site_policy policy = fetch_site_policy::deny_cross_site) noexcept {
    if (value.empty() || value == "same-origin" || value == "none") return decision::allow();
    if (value == "same-site") {
        if (policy == fetch_site_policy::deny_cross_site) return decision::allow();
        return reason::fetch_site_cross_site;
    }
    if (value == "cross-site") return reason::fetch_site_cross_site;
    return reason::fetch_site_malformed;
}

// ---------------------------------------------------------------------------
// Internals: the parser, the Public Suffix List lookups, the host hashing
// ---------------------------------------------------------------------------
namespace detail {

// ---------------------------------------------------------------------------
// Public Suffix List lookups, used only by create() to refuse wildcards such as
// https://*.co.uk or https://*.github.io. The table itself (origin_psl_chunks,
// about 117 KB of generated data) is in wsguard/detail/public_suffix_data.hpp,
// included above.
// ---------------------------------------------------------------------------

// Line starting at or before `pos` within a chunk of '\n'-terminated lines.
inline std::string_view origin_psl_line_at(std::string_view chunk, std::size_t pos) noexcept {
    std::size_t start = pos;
    while (start > 0 && chunk[start - 1] != '\n') --start;
    const std::size_t end = chunk.find('\n', start);
    return chunk.substr(start, end - start);
}

// First table line >= key (byte order), or an empty view when there is none.
inline std::string_view origin_psl_lower_bound(std::string_view key) noexcept {
    for (std::string_view chunk : origin_psl_chunks) {
        if (chunk.empty()) continue;
        if (origin_psl_line_at(chunk, chunk.size() - 1) < key) continue;
        std::size_t lo = 0, hi = chunk.size();  // both always at line starts
        while (lo < hi) {
            const std::size_t mid = lo + (hi - lo) / 2;
            std::size_t start = mid;
            while (start > lo && chunk[start - 1] != '\n') --start;
            const std::string_view line = origin_psl_line_at(chunk, start);
            if (line < key) lo = start + line.size() + 1;
            else hi = start;
        }
        return origin_psl_line_at(chunk, lo);
    }
    return {};
}

inline bool origin_psl_has_line(std::string_view line) noexcept { return origin_psl_lower_bound(line) == line; }

inline std::vector<std::string_view> origin_psl_labels(std::string_view domain) {
    std::vector<std::string_view> labels;
    std::size_t start = 0;
    while (true) {
        const std::size_t dot = domain.find('.', start);
        labels.push_back(domain.substr(start, dot == std::string_view::npos ? std::string_view::npos : dot - start));
        if (dot == std::string_view::npos) return labels;
        start = dot + 1;
    }
}

// "a.b.example.com" -> "com.example.b.a": the table's key order.
inline std::string origin_psl_reversed(std::string_view domain) {
    const std::vector<std::string_view> labels = origin_psl_labels(domain);
    std::string out;
    for (std::size_t k = labels.size(); k-- > 0;) {
        out.append(labels[k]);
        if (k > 0) out += '.';
    }
    return out;
}

// Number of labels of the public suffix of `domain` (lowercase ASCII, no
// trailing dot), by the PSL algorithm: an exception rule prevails, else the
// longest matching rule, else the implicit rule "*" (one label).
inline std::size_t origin_psl_suffix_labels(std::string_view domain) {
    const std::vector<std::string_view> labels = origin_psl_labels(domain);
    std::size_t best = 1;
    std::string rev;
    for (std::size_t k = 1; k <= labels.size(); ++k) {
        const std::string parent_rev = rev;  // the last k-1 labels, reversed
        if (!rev.empty()) rev += '.';
        rev.append(labels[labels.size() - k]);
        if (origin_psl_has_line(rev + "!")) return k - 1;               // !rule
        if (origin_psl_has_line(rev)) best = k;                         // rule
        if (k >= 2 && origin_psl_has_line(parent_rev + ".*")) best = k;  // *.rule
    }
    return best;
}

inline bool origin_psl_is_public_suffix(std::string_view domain) {
    return origin_psl_suffix_labels(domain) >= origin_psl_labels(domain).size();
}

// A rule strictly beneath `domain` (e.g. s3.amazonaws.com beneath
// amazonaws.com), written as in the list, or "" when there is none.
// Exception rules do not count: they carve sites out, not in.
inline std::string origin_psl_rule_beneath(std::string_view domain) {
    const std::string prefix = origin_psl_reversed(domain) + ".";
    std::string_view line = origin_psl_lower_bound(prefix);
    while (!line.empty() && line.substr(0, prefix.size()) == prefix) {
        if (line.back() != '!') {
            if (line.size() >= 2 && line.substr(line.size() - 2) == ".*") {
                return "*." + origin_psl_reversed(line.substr(0, line.size() - 2));
            }
            return origin_psl_reversed(line);
        }
        // The next line: every table line sorts above line + "\x01".
        line = origin_psl_lower_bound(std::string(line) + '\x01');
    }
    return {};
}

// ---------------------------------------------------------------------------
// Character classes and parsing
// ---------------------------------------------------------------------------
enum : std::uint8_t {
    origin_cc_alpha = 1,
    origin_cc_digit = 2,
    origin_cc_hex = 4,
    origin_cc_label = 8,    // may appear in a host label: A-Z a-z 0-9 - _
    origin_cc_scheme = 16,  // may appear after a scheme's first letter: A-Z a-z 0-9 + - .
};

struct origin_char_classes {
    std::uint8_t of[256];
};

constexpr origin_char_classes origin_make_char_classes() noexcept {
    origin_char_classes t{};
    for (int c = 0; c < 256; ++c) {
        std::uint8_t v = 0;
        const bool upper = c >= 'A' && c <= 'Z', lower = c >= 'a' && c <= 'z', digit = c >= '0' && c <= '9';
        if (upper || lower) v |= origin_cc_alpha;
        if (digit) v |= origin_cc_digit;
        if (digit || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')) v |= origin_cc_hex;
        if (upper || lower || digit || c == '-' || c == '_') v |= origin_cc_label;
        if (upper || lower || digit || c == '+' || c == '-' || c == '.') v |= origin_cc_scheme;
        t.of[c] = v;
    }
    return t;
}

inline constexpr origin_char_classes origin_chars = origin_make_char_classes();

inline bool origin_is(char c, std::uint8_t cls) noexcept {
    return (origin_chars.of[static_cast<unsigned char>(c)] & cls) != 0;
}


inline bool origin_iequal(std::string_view a, std::string_view b) noexcept {
    if (a.size() != b.size()) return false;
    for (std::size_t i = 0; i < a.size(); ++i) {
        if (ascii_lower(a[i]) != ascii_lower(b[i])) return false;
    }
    return true;
}

// What is wrong with an origin, a pattern or a Host value. check() only
// reports malformed; create() turns each into a message.
enum class origin_syntax : std::uint8_t {
    ok,
    no_scheme,          // no "scheme://" in front
    websocket_scheme,   // ws: or wss: (never a page's origin)
    unsupported_scheme, // patterns: only http and https
    no_host,            // nothing (or only a port) after "://"
    userinfo,           // user@ or user:pass@
    path,               // "/" (even alone), "?" or "#"
    bad_char,           // whitespace, control, non-ASCII, '%', ',', ...
    non_ascii,          // a byte >= 0x80 in the host: needs punycode
    bad_label,          // empty label, label over 63, name over 253
    bad_ipv4,           // numeric host that is not a canonical dotted quad
    bad_ipv6,           // not a valid IPv6 literal
    ipv6_not_canonical, // valid, but not the RFC 5952 form
    ipv6_zone,          // a zone id (%25...)
    bad_port,           // empty, leading zero, non-digit or over 65535
    bad_wildcard,       // '*' anywhere but a whole leftmost label / the port
    wildcard_ip,        // *.<IP address>
};

enum class origin_host_kind : std::uint8_t { name, ipv4, ipv6 };

// A parsed origin, pattern or Host. `host` points into the input, except for
// IPv6, where it is the canonical text (without brackets) in `ipv6_text`.
struct origin_parts {
    std::uint8_t scheme = 0;  // 0 none (Host), 1 http, 2 https, 3 other
    bool wildcard = false;    // pattern "*.": host is the parent domain
    bool any_port = false;    // pattern ":*"
    bool has_port = false;    // a port was written
    origin_host_kind kind = origin_host_kind::name;
    std::uint32_t port = 0;   // the written port, else the scheme's default
    std::size_t labels = 0;   // dots + 1 (names only)
    std::size_t dot_at[16];   // offsets in `host` of its first 16 dots
    std::string_view host;
    char ipv6_text[40];       // written only for IPv6 hosts
};

inline constexpr std::uint8_t origin_scheme_http = 1;
inline constexpr std::uint8_t origin_scheme_https = 2;
inline constexpr std::uint8_t origin_scheme_other = 3;

inline origin_syntax origin_stray_char(char c) noexcept {
    switch (c) {
        case '/': case '?': case '#': return origin_syntax::path;
        case '@': return origin_syntax::userinfo;
        case '*': return origin_syntax::bad_wildcard;
        default: return static_cast<unsigned char>(c) >= 0x80 ? origin_syntax::non_ascii : origin_syntax::bad_char;
    }
}

// RFC 5952 text of eight IPv6 groups into `out` (at most 39 characters, no
// terminator written): 4.2 compresses the longest run of two or more zero
// groups, the first one on a tie; 4.3 lowercase, no leading zeros. Shared by
// the Origin parser, the address reports and the client address behind proxies.
inline std::size_t ipv6_format_rfc5952(const std::uint16_t (&groups)[8], char* out) noexcept {
    int best_at = -1, best_len = 1;
    for (int k = 0; k < 8;) {
        int run = 0;
        while (k + run < 8 && groups[k + run] == 0) ++run;
        if (run > best_len) {
            best_at = k;
            best_len = run;
        }
        k += run > 0 ? run : 1;
    }
    std::size_t n = 0;
    for (int k = 0; k < 8; ++k) {
        if (k == best_at) {
            out[n++] = ':';
            out[n++] = ':';
            k += best_len - 1;
            continue;
        }
        if (n > 0 && out[n - 1] != ':') out[n++] = ':';
        static constexpr char hex[] = "0123456789abcdef";
        bool started = false;
        for (int shift = 12; shift >= 0; shift -= 4) {
            const int nibble = (groups[k] >> shift) & 0xf;
            if (nibble != 0 || started || shift == 0) {
                out[n++] = hex[nibble];
                started = true;
            }
        }
    }
    return n;
}

// Parses an IPv6 literal's content (between the brackets) and writes its
// RFC 5952 text to `out`; the input must equal it up to ASCII case.
inline origin_syntax origin_parse_ipv6(std::string_view s, char (&out)[40]) noexcept {
    if (s.find('%') != std::string_view::npos) return origin_syntax::ipv6_zone;
    std::uint16_t groups[8] = {};
    int count = 0, compress_at = -1;
    std::size_t p = 0;
    if (s.size() >= 2 && s[0] == ':' && s[1] == ':') {
        compress_at = 0;
        p = 2;
    } else if (!s.empty() && s[0] == ':') {
        return origin_syntax::bad_ipv6;
    }
    while (p < s.size()) {
        std::uint32_t value = 0;
        std::size_t digits = 0;
        while (p < s.size() && origin_is(s[p], origin_cc_hex)) {
            if (++digits > 4) return origin_syntax::bad_ipv6;
            const char c = ascii_lower(s[p++]);
            value = value * 16 + static_cast<std::uint32_t>(c <= '9' ? c - '0' : c - 'a' + 10);
        }
        if (digits == 0 || count == 8) return origin_syntax::bad_ipv6;
        groups[count++] = static_cast<std::uint16_t>(value);
        if (p == s.size()) break;
        if (s[p] != ':') return origin_syntax::bad_ipv6;  // includes a dotted IPv4 tail
        ++p;
        if (p < s.size() && s[p] == ':') {
            if (compress_at >= 0) return origin_syntax::bad_ipv6;
            compress_at = count;
            ++p;
        } else if (p == s.size()) {
            return origin_syntax::bad_ipv6;
        }
    }
    if (compress_at < 0 ? count != 8 : count > 7) return origin_syntax::bad_ipv6;
    if (compress_at >= 0) {
        const int moved = count - compress_at, gap = 8 - count;
        for (int k = moved - 1; k >= 0; --k) groups[compress_at + gap + k] = groups[compress_at + k];
        for (int k = 0; k < gap; ++k) groups[compress_at + k] = 0;
    }
    const std::size_t n = ipv6_format_rfc5952(groups, out);
    out[n] = '\0';
    return origin_iequal(s, std::string_view(out, n)) ? origin_syntax::ok : origin_syntax::ipv6_not_canonical;
}

// WHATWG URL: a host whose last label is a number is an IPv4 address, and a
// browser serializes it as a dotted quad: 127.1, 0x7f.1 and 0127.0.0.1 never
// appear in a browser's Origin.
WSGUARD_DETAIL_HOT inline bool origin_ends_in_number(std::string_view host) noexcept {
    if (!host.empty() && host.back() == '.') host.remove_suffix(1);
    const std::size_t dot = host.rfind('.');
    const std::string_view last = dot == std::string_view::npos ? host : host.substr(dot + 1);
    if (last.empty()) return false;
    bool all_digits = true;
    for (char c : last) all_digits = all_digits && origin_is(c, origin_cc_digit);
    if (all_digits) return true;
    if (last.size() >= 2 && last[0] == '0' && (last[1] == 'x' || last[1] == 'X')) {
        for (char c : last.substr(2)) {
            if (!origin_is(c, origin_cc_hex)) return false;
        }
        return true;
    }
    return false;
}

WSGUARD_DETAIL_HOT inline bool origin_is_dotted_quad(std::string_view host) noexcept {
    int parts = 0;
    std::size_t p = 0;
    while (true) {
        std::size_t digits = 0;
        std::uint32_t value = 0;
        while (p < host.size() && origin_is(host[p], origin_cc_digit)) {
            if (++digits > 3) return false;
            value = value * 10 + static_cast<std::uint32_t>(host[p] - '0');
            ++p;
        }
        if (digits == 0 || value > 255 || (digits > 1 && host[p - digits] == '0')) return false;
        ++parts;
        if (p == host.size()) return parts == 4;
        if (host[p] != '.' || parts == 4) return false;
        ++p;
    }
}

enum class origin_parse_mode : std::uint8_t { header, pattern, host_header, host_pattern };

// Parses host[:port] from s[i..] to the end. Hosts are reg-names of labels
// [A-Za-z0-9_-]{1,63} joined by dots (253 bytes at most, one optional
// trailing dot), canonical dotted quads or canonical bracketed IPv6.
WSGUARD_DETAIL_HOT inline origin_syntax origin_parse_authority(std::string_view s, std::size_t i, origin_parse_mode mode,
                                                               origin_parts& out) noexcept {
    const bool pattern = mode == origin_parse_mode::pattern || mode == origin_parse_mode::host_pattern;
    const std::size_t n = s.size();
    if (i == n || s[i] == ':') return origin_syntax::no_host;
    if (s[i] == '*') {
        if (mode != origin_parse_mode::pattern || i + 1 == n || s[i + 1] != '.') return origin_syntax::bad_wildcard;
        out.wildcard = true;
        i += 2;
        if (i == n) return origin_syntax::bad_wildcard;
    }
    const std::size_t host_start = i;
    if (s[i] == '[') {
        const std::size_t close = s.find(']', i);
        if (close == std::string_view::npos || close - i - 1 > 64) return origin_syntax::bad_ipv6;
        if (out.wildcard) return origin_syntax::wildcard_ip;
        const origin_syntax r = origin_parse_ipv6(s.substr(i + 1, close - i - 1), out.ipv6_text);
        if (r != origin_syntax::ok) return r;
        out.kind = origin_host_kind::ipv6;
        out.host = std::string_view(out.ipv6_text);
        i = close + 1;
    } else {
        std::size_t dots = 0, label_start = i, previous_start = i;
        for (; i < n; ++i) {
            if (origin_is(s[i], origin_cc_label)) continue;
            if (s[i] != '.') break;
            if (i == label_start || i - label_start > 63) return origin_syntax::bad_label;
            if (dots < 16) out.dot_at[dots] = i - host_start;
            ++dots;
            previous_start = label_start;
            label_start = i + 1;
        }
        if (i - label_start > 63) return origin_syntax::bad_label;
        out.host = s.substr(host_start, i - host_start);
        if (out.host.empty()) {
            if (i < n && s[i] != ':') return origin_stray_char(s[i]);
            return out.wildcard ? origin_syntax::bad_wildcard : origin_syntax::no_host;
        }
        out.labels = dots + 1;
        const bool trailing_dot = i == label_start;
        if (out.host.size() - trailing_dot > 253) return origin_syntax::bad_label;
        // Only a last label that starts with a digit can be a number.
        const std::size_t last_label = trailing_dot ? previous_start : label_start;
        if (origin_is(s[last_label], origin_cc_digit) && origin_ends_in_number(out.host)) {
            if (out.wildcard) return origin_syntax::wildcard_ip;
            if (!origin_is_dotted_quad(out.host)) return origin_syntax::bad_ipv4;
            out.kind = origin_host_kind::ipv4;
        }
    }
    if (i < n && s[i] == ':') {
        ++i;
        if (pattern && i + 1 == n && s[i] == '*') {
            out.any_port = true;
            out.has_port = true;
            return origin_syntax::ok;
        }
        const std::size_t start = i;
        std::uint32_t value = 0;
        while (i < n && origin_is(s[i], origin_cc_digit) && i - start < 5) {
            value = value * 10 + static_cast<std::uint32_t>(s[i] - '0');
            ++i;
        }
        const std::size_t digits = i - start;
        if (digits == 0 || value > 65535 || (digits > 1 && s[start] == '0')) return origin_syntax::bad_port;
        if (i < n && origin_is(s[i], origin_cc_digit)) return origin_syntax::bad_port;
        out.has_port = true;
        out.port = value;
    }
    if (i < n) {
        if (s[i] == '*') return origin_syntax::bad_wildcard;
        if (s[i] == ':' || (out.has_port && origin_is(s[i], origin_cc_alpha))) return origin_syntax::bad_port;
        return origin_stray_char(s[i]);
    }
    return origin_syntax::ok;
}

// Parses "scheme://host[:port]". Schemes other than http and https parse (an
// extension's origin is well formed) but can never be allowed.
WSGUARD_DETAIL_HOT inline origin_syntax origin_parse(std::string_view s, origin_parse_mode mode, origin_parts& out) noexcept {
    const std::size_t n = s.size();
    // Scheme bytes are letters, digits, + - and .: OR 0x20 lowercases the
    // letters and leaves the others unequal to any letter.
    const auto is = [&](std::size_t k, char lower) { return (s[k] | 0x20) == lower; };
    std::size_t i = 0;
    if (n > 8 && is(0, 'h') && is(1, 't') && is(2, 't') && is(3, 'p')) {  // the common case, first
        if (s[4] == ':' && s[5] == '/' && s[6] == '/') {
            out.scheme = origin_scheme_http;
            i = 7;
        } else if (is(4, 's') && s[5] == ':' && s[6] == '/' && s[7] == '/') {
            out.scheme = origin_scheme_https;
            i = 8;
        }
    }
    if (i == 0) {
        if (n == 0 || !origin_is(s[0], origin_cc_alpha)) {
            if (n > 0 && s[0] == '*') return origin_syntax::bad_wildcard;
            return origin_syntax::no_scheme;
        }
        while (i < n && origin_is(s[i], origin_cc_scheme)) ++i;
        if (i + 3 > n || s[i] != ':' || s[i + 1] != '/' || s[i + 2] != '/') {
            if (i < n && static_cast<unsigned char>(s[i]) >= 0x80) return origin_syntax::non_ascii;
            return origin_syntax::no_scheme;  // "example.com", "localhost:8080", "https//x"
        }
        if (i >= 4 && i <= 5 && is(0, 'h') && is(1, 't') && is(2, 't') && is(3, 'p') && (i == 4 || is(4, 's'))) {
            out.scheme = i == 4 ? origin_scheme_http : origin_scheme_https;
        } else if (i >= 2 && i <= 3 && is(0, 'w') && is(1, 's') && (i == 2 || is(2, 's'))) {
            return origin_syntax::websocket_scheme;
        } else if (mode == origin_parse_mode::pattern) {
            return origin_syntax::unsupported_scheme;
        } else {
            out.scheme = origin_scheme_other;
        }
        i += 3;
    }
    if (mode == origin_parse_mode::pattern) {
        // Name userinfo before anything else mistakes it for a port or a host.
        for (std::size_t k = i; k < n && s[k] != '/' && s[k] != '?' && s[k] != '#'; ++k) {
            if (s[k] == '@') return origin_syntax::userinfo;
        }
    }
    const origin_syntax r = origin_parse_authority(s, i, mode, out);
    if (r != origin_syntax::ok) return r;
    if (!out.has_port) {
        out.port = out.scheme == origin_scheme_http ? 80u : out.scheme == origin_scheme_https ? 443u : 0u;
    }
    return origin_syntax::ok;
}

// ---------------------------------------------------------------------------
// A flat open-addressing set of (tag, port, host), hashed and compared
// case-insensitively straight from the header bytes.
// ---------------------------------------------------------------------------
// Folding: OR 0x20 into every byte. On the bytes a parsed host can hold
// (A-Z a-z 0-9 - . _ :) it lowercases letters and is otherwise one-to-one
// ('_' becomes 0x7f, which no host holds), so folded bytes compare exactly.
inline constexpr std::uint64_t origin_fold_mask = 0x2020202020202020ULL;

inline std::uint64_t origin_load8_folded(const char* p) noexcept {
    std::uint64_t w;
    std::memcpy(&w, p, 8);
    return w | origin_fold_mask;
}

// Hosts are hashed and compared by 8-byte words: every whole 8 bytes, then
// the last 8 bytes (overlapping) for the rest; a host under 8 bytes is
// assembled byte by byte. Equal lengths give equal word sequences exactly
// when the folded bytes are equal, and nothing is read outside the host.
inline std::uint64_t origin_load_short_folded(const char* p, std::size_t n) noexcept {
    std::uint64_t w = 0;
    for (std::size_t k = 0; k < n; ++k) w |= static_cast<std::uint64_t>(static_cast<unsigned char>(p[k])) << (8 * k);
    return w | origin_fold_mask;
}

inline std::uint64_t origin_hash_round(std::uint64_t h, std::uint64_t w) noexcept {
    h = (h ^ w) * 0xbf58476d1ce4e5b9ULL;
    return (h << 29) | (h >> 35);  // low input bits reach every output bit
}

WSGUARD_DETAIL_HOT inline std::uint64_t origin_hash_host(std::string_view host) noexcept {
    const char* p = host.data();
    const std::size_t n = host.size();
    std::uint64_t h = 0x9e3779b97f4a7c15ULL ^ n;
    if (n < 8) return origin_hash_round(h, origin_load_short_folded(p, n));
    std::size_t k = 0;
    for (; k + 8 <= n; k += 8) h = origin_hash_round(h, origin_load8_folded(p + k));
    return k == n ? h : origin_hash_round(h, origin_load8_folded(p + n - 8));
}

// `stored` holds a host already folded, of the same length as `host`.
inline bool origin_folded_equal(const char* host, const char* stored, std::size_t n) noexcept {
    if (n < 8) return origin_load_short_folded(host, n) == origin_load_short_folded(stored, n);
    std::size_t k = 0;
    for (; k + 8 <= n; k += 8) {
        if (origin_load8_folded(host + k) != origin_load8_folded(stored + k)) return false;
    }
    return k == n || origin_load8_folded(host + n - 8) == origin_load8_folded(stored + n - 8);
}

// Key tags. A tag says what an entry means; the port is part of the key.
enum : std::uint8_t {
    origin_tag_exact = 0x10,     // | scheme: scheme://host:port
    origin_tag_wildcard = 0x20,  // | scheme: scheme://*.host:port
    origin_tag_any_port = 0x40,  // | one of the above: any port
    origin_tag_host = 0x80,      // host_allowlist: host:port
    origin_tag_host_default = 0x81,  // host_allowlist: host with no port (none, 80 or 443)
};


// Quotes a pattern for an error message, control and non-ASCII bytes escaped.
inline std::string origin_quote(std::string_view s) {
    std::string out = "\"";
    const std::size_t shown = s.size() > 200 ? 200 : s.size();
    for (std::size_t i = 0; i < shown; ++i) {
        const unsigned char c = static_cast<unsigned char>(s[i]);
        if (c < 0x20 || c >= 0x7f || c == '"' || c == '\\') {
            static constexpr char hex[] = "0123456789abcdef";
            out += "\\x";
            out += hex[c >> 4];
            out += hex[c & 15];
        } else {
            out += static_cast<char>(c);
        }
    }
    if (shown < s.size()) out += "...";
    return out + "\"";
}

inline std::string origin_syntax_message(origin_syntax e, bool host_list) {
    const char* example = host_list ? "app.example.com, localhost:8080 or [::1]:*" : "https://app.example.com";
    switch (e) {
        case origin_syntax::ok: return "ok";
        case origin_syntax::no_scheme:
            return host_list ? std::string("is not host[:port]; write e.g. ") + example
                             : "has no scheme: an origin is scheme://host[:port], e.g. https://app.example.com";
        case origin_syntax::websocket_scheme:
            return "uses ws: or wss:, but Origin carries the page's scheme: write http:// or https://";
        case origin_syntax::unsupported_scheme: return "has a scheme other than http or https";
        case origin_syntax::no_host: return "has no host";
        case origin_syntax::userinfo: return "has userinfo (user@): an origin never carries one";
        case origin_syntax::path:
            return "has a path, query or fragment (even a trailing \"/\"): an origin is scheme://host[:port] only";
        case origin_syntax::bad_char:
            return "has a character no host can hold (whitespace, control byte, %, comma, ...)";
        case origin_syntax::non_ascii:
            return "has a non-ASCII host: write its punycode form (xn--...), which is what browsers send";
        case origin_syntax::bad_label: return "has an empty label, a label over 63 bytes or a name over 253 bytes";
        case origin_syntax::bad_ipv4:
            return "has a numeric host that is not a dotted quad such as 127.0.0.1 (browsers rewrite 127.1, 0x7f.1, "
                   "0127.0.0.1 and a trailing dot)";
        case origin_syntax::bad_ipv6: return "has an invalid IPv6 literal";
        case origin_syntax::ipv6_not_canonical: return "has an IPv6 literal not in RFC 5952 form";
        case origin_syntax::ipv6_zone: return "has an IPv6 zone id, which an origin never carries";
        case origin_syntax::bad_port: return "has an invalid port (1-5 digits, no leading zero, at most 65535)";
        case origin_syntax::bad_wildcard:
            return host_list ? std::string("has a wildcard: list each host; \":*\" after a host means any port")
                             : "has a wildcard that is not a whole leftmost label (https://*.example.com) or the "
                               "port (http://localhost:*)";
        case origin_syntax::wildcard_ip: return "puts a wildcard over an IP address";
    }
    return "is invalid";
}

}  // namespace detail

// ---------------------------------------------------------------------------
// origin_policy and host_allowlist: out-of-line bodies
// ---------------------------------------------------------------------------
inline result<origin_policy> origin_policy::build(const std::vector<std::string_view>& patterns, const options& opts) {
    origin_policy policy;
    policy.options_ = opts;
    if (patterns.empty() && !opts.allow_missing_origin && !opts.allow_any_origin_unsafe) {
        return result<origin_policy>::failure(
            "origin_policy: the pattern list is empty, so no browser could ever connect; list the origins of your "
            "pages (e.g. https://app.example.com), or set options.allow_missing_origin for non-browser clients only");
    }
    for (const std::string_view pattern : patterns) {
        const auto fail = [&](const std::string& why) {
            return result<origin_policy>::failure("origin_policy: pattern " + detail::origin_quote(pattern) + " " +
                                                  why);
        };
        if (pattern == "*") {
            return fail(
                "would allow every origin, which lets any web page open the socket with the user's cookies; "
                "list your origins, or set options.allow_any_origin_unsafe if you really mean it");
        }
        if (detail::origin_iequal(pattern, "null")) {
            return fail("is the opaque origin of sandboxed iframes, file: pages and some redirects; any site can "
                        "produce it, so it cannot be allowed");
        }
        if (pattern.size() > max_header_length) return fail("is longer than any origin can be");
        detail::origin_parts parts;
        const detail::origin_syntax syntax = detail::origin_parse(pattern, detail::origin_parse_mode::pattern, parts);
        if (syntax != detail::origin_syntax::ok) {
            std::string why = detail::origin_syntax_message(syntax, false);
            if (syntax == detail::origin_syntax::ipv6_not_canonical) {
                why += ": write [" + std::string(parts.ipv6_text) + "]";
            }
            return fail(why);
        }
        std::uint8_t tag = parts.wildcard ? detail::origin_tag_wildcard : detail::origin_tag_exact;
        tag = static_cast<std::uint8_t>(tag | parts.scheme | (parts.any_port ? detail::origin_tag_any_port : 0));
        const std::uint32_t port = parts.any_port ? 0 : parts.port;
        if (parts.wildcard) {
            std::string parent;
            for (char c : parts.host) parent += detail::ascii_lower(c);
            if (!parent.empty() && parent.back() == '.') parent.pop_back();
            if (detail::origin_psl_is_public_suffix(parent)) {
                return fail("puts a wildcard over \"" + parent + "\", " +
                            (parent.find('.') == std::string::npos ? "a top-level domain" : "a public suffix") +
                            " (publicsuffix.org): it would match sites of unrelated owners; wildcard a domain you "
                            "own, e.g. https://*.example.co.uk");
            }
            const std::string beneath = detail::origin_psl_rule_beneath(parent);
            if (!beneath.empty()) {
                return fail("puts a wildcard over \"" + parent + "\", which has public suffixes beneath it (\"" +
                            beneath + "\"), so it would match sites of unrelated owners; list your hosts instead");
            }
            std::size_t labels = 1;
            for (char c : parts.host) labels += (c == '.');
            policy.wildcard_labels_ |= std::uint64_t{1} << (labels >= 64 ? 63 : labels - 1);
            policy.any_port_wildcard_ = policy.any_port_wildcard_ || parts.any_port;
        } else {
            policy.any_port_exact_ = policy.any_port_exact_ || parts.any_port;
        }
        (void)policy.table_.insert(tag, port, parts.host);  // a duplicate is harmless
    }
    return result<origin_policy>::success(std::move(policy));
}

WSGUARD_DETAIL_HOT inline decision origin_policy::check(std::string_view origin_header) const noexcept {
    if (origin_header.empty()) {
        return options_.allow_missing_origin ? decision::allow() : decision(reason::origin_missing);
    }
    if (origin_header.size() > max_header_length) return reason::origin_too_long;
    if (origin_header.size() == 4 && detail::origin_iequal(origin_header, "null")) return reason::origin_null;
    detail::origin_parts parts;
    if (detail::origin_parse(origin_header, detail::origin_parse_mode::header, parts) != detail::origin_syntax::ok) {
        return reason::origin_malformed;
    }
    if (options_.allow_any_origin_unsafe) return decision::allow();
    if (parts.scheme == detail::origin_scheme_other) return reason::origin_not_allowed;

    const std::string_view host = parts.host;
    const std::uint16_t port = static_cast<std::uint16_t>(parts.port);
    const std::uint8_t exact = static_cast<std::uint8_t>(detail::origin_tag_exact | parts.scheme);
    const std::uint64_t host_hash = detail::origin_hash_host(host);
    if (table_.find(exact, port, host, host_hash)) return decision::allow();
    const std::uint8_t exact_any_port = static_cast<std::uint8_t>(exact | detail::origin_tag_any_port);
    if (any_port_exact_ && table_.find(exact_any_port, 0, host, host_hash)) return decision::allow();

    if (wildcard_labels_ == 0 || parts.kind != detail::origin_host_kind::name) return reason::origin_not_allowed;
    const std::uint8_t wildcard = static_cast<std::uint8_t>(detail::origin_tag_wildcard | parts.scheme);
    const std::uint8_t wildcard_any_port = static_cast<std::uint8_t>(wildcard | detail::origin_tag_any_port);
    // Each proper parent domain, longest first: a.b.example.com -> b.example.com
    // -> example.com -> com. Only label counts some wildcard has are probed.
    std::size_t start = 0;
    for (std::size_t parent_labels = parts.labels - 1, dot = 0; parent_labels >= 1; --parent_labels, ++dot) {
        if (dot < 16) {
            start = parts.dot_at[dot] + 1;
        } else {
            while (host[start] != '.') ++start;
            ++start;
        }
        const std::uint64_t bit = std::uint64_t{1} << (parent_labels >= 64 ? 63 : parent_labels - 1);
        if ((wildcard_labels_ & bit) == 0) continue;
        const std::string_view parent = host.substr(start);
        if (parent.empty()) break;  // "example.com." has an empty last "label"
        const std::uint64_t parent_hash = detail::origin_hash_host(parent);
        if (table_.find(wildcard, port, parent, parent_hash)) return decision::allow();
        if (any_port_wildcard_ && table_.find(wildcard_any_port, 0, parent, parent_hash)) {
            return decision::allow();
        }
    }
    return reason::origin_not_allowed;
}

inline result<host_allowlist> host_allowlist::build(const std::vector<std::string_view>& patterns) {
    if (patterns.empty()) {
        return result<host_allowlist>::failure(
            "host_allowlist: the list is empty, so every request would be refused; list the hosts clients use to "
            "reach this server, e.g. localhost:8080 and 127.0.0.1:8080");
    }
    host_allowlist list;
    for (const std::string_view pattern : patterns) {
        const auto fail = [&](const std::string& why) {
            return result<host_allowlist>::failure("host_allowlist: pattern " + detail::origin_quote(pattern) + " " +
                                                   why);
        };
        if (pattern.find("://") != std::string_view::npos) {
            return fail("has a scheme: a Host value is host[:port], e.g. localhost:8080");
        }
        if (pattern.size() > origin_policy::max_header_length) return fail("is longer than any host can be");
        detail::origin_parts parts;
        const detail::origin_syntax syntax =
            detail::origin_parse_authority(pattern, 0, detail::origin_parse_mode::host_pattern, parts);
        if (syntax != detail::origin_syntax::ok) {
            std::string why = detail::origin_syntax_message(syntax, true);
            if (syntax == detail::origin_syntax::ipv6_not_canonical) {
                why += ": write [" + std::string(parts.ipv6_text) + "]";
            }
            return fail(why);
        }
        if (parts.any_port) {
            list.any_port_ = true;
            (void)list.table_.insert(detail::origin_tag_host | detail::origin_tag_any_port, 0, parts.host);
        } else if (parts.has_port) {
            (void)list.table_.insert(detail::origin_tag_host, parts.port, parts.host);
        } else {
            (void)list.table_.insert(detail::origin_tag_host_default, 0, parts.host);
        }
    }
    return result<host_allowlist>::success(std::move(list));
}

WSGUARD_DETAIL_HOT inline decision host_allowlist::check(std::string_view host_header) const noexcept {
    if (host_header.empty()) return reason::host_missing;
    if (host_header.size() > origin_policy::max_header_length) return reason::host_malformed;
    detail::origin_parts parts;
    if (detail::origin_parse_authority(host_header, 0, detail::origin_parse_mode::host_header, parts) !=
        detail::origin_syntax::ok) {
        return reason::host_malformed;
    }
    const std::uint64_t hash = detail::origin_hash_host(parts.host);
    const bool default_port = !parts.has_port || parts.port == 80 || parts.port == 443;
    if (default_port && table_.find(detail::origin_tag_host_default, 0, parts.host, hash)) return decision::allow();
    if (parts.has_port && table_.find(detail::origin_tag_host, parts.port, parts.host, hash)) return decision::allow();
    if (any_port_ && table_.find(detail::origin_tag_host | detail::origin_tag_any_port, 0, parts.host, hash)) {
        return decision::allow();
    }
    return reason::host_not_allowed;
}

}  // inline namespace WSGUARD_ABI_NS
}  // namespace wsguard

// ===========================================================================
// 6. Client address behind proxies: trusted_proxies, client_address,
//    parse_proxy_header
// ===========================================================================
//
// Behind nginx, HAProxy, a load balancer or a CDN, every socket's peer is the
// proxy. trusted_proxies names the proxies whose word is taken; resolve() walks
// Forwarded (RFC 7239) or X-Forwarded-For from the right, stepping over
// trusted proxies only (nginx "real_ip_recursive on"): the first address that
// is not trusted is the client. A client that reaches the server directly
// cannot forge its address (its headers are never read), and a client behind
// the proxies cannot choose it (whatever it writes sits left of the address
// the last trusted proxy appended, and the walk stops before it).
//
// parse_proxy_header reads the PROXY protocol (v1 text, v2 binary) that L4
// balancers (HAProxy send-proxy, AWS NLB, ...) put before any HTTP. Only a
// connection from a trusted proxy may carry one: check trusts() first.
//
// Both read borrowed bytes, never allocate and never throw; the blocks of a
// trusted_proxies are validated once, in create().

namespace wsguard {
inline namespace WSGUARD_ABI_NS {

struct trusted_proxy_options {
    // The most trusted proxies one request may have passed through. A longer
    // chain is refused (forwarded_too_many_hops) rather than walked. 1 to 64.
    std::size_t max_hops = 16;
    // Accept a block that trusts the whole internet: 0.0.0.0/0, ::/0, any IPv4
    // block wider than /8, any IPv6 block wider than /7 or holding every
    // IPv4-mapped address. With it, any client reaching the server directly
    // chooses its own address, so per-client limits stop meaning anything.
    bool trust_everything_unsafe = false;
};

// The client behind the proxies, or why there is none. A plain value: no
// pointer into the request.
WSGUARD_DETAIL_SET_DEPRECATED_BEGIN  // quiet implicit members: see the macro
class [[nodiscard]] client_address {
public:
    // ok; address_malformed (the peer itself is not an address);
    // forwarded_malformed (an entry the walk had to read is unreadable);
    // forwarded_too_many_hops (more trusted proxies than max_hops);
    // forwarded_unknown_hop (a trusted proxy wrote "unknown", an obfuscated
    // node such as "_hidden", or a Forwarded element without for=: the client
    // is unknown, and the walk never skips to an entry further left, which
    // the client could have written).
    detail::callable_decision decision{wsguard::reason::address_malformed};
    // Trusted proxies stepped over: 0 when the peer itself is the client.
    std::size_t hops = 0;
    // 0.1 spelling, set by the library alongside decision.
    [[deprecated("use client_address::decision.reason; removed in 0.3")]]
    wsguard::reason reason = wsguard::reason::address_malformed;

    // The peer itself as the client: for servers that no proxy fronts.
    // `peer` as address_key::from_endpoint_text accepts it; `bytes` 4 or 16.
    static client_address from_peer(std::string_view peer) noexcept;
    static client_address from_peer_bytes(const std::uint8_t* bytes, std::size_t size) noexcept;

    bool allowed() const noexcept { return decision.allowed(); }
    explicit operator bool() const noexcept { return allowed(); }
    // The client's IP in canonical form: "192.0.2.1", or RFC 5952 IPv6
    // ("2001:db8::1") without brackets, port or zone; an IPv4-mapped IPv6
    // address reads as IPv4. Empty on a refusal.
    std::string_view text() const noexcept { return std::string_view(text_, text_size_); }
    // The client's rate-limit key (IPv6 grouped as `options` say). On a
    // refusal, the key of "::", shared by every refused request: check the
    // reason first.
    WSGUARD_DETAIL_HOT address_key key(address_key_options options = {}) const noexcept {
        return address_key::from_bytes(bytes_, sizeof bytes_, options).value_or(address_key{});
    }

private:
    friend class trusted_proxies;
    template <class>
    friend class basic_handshake_guard;
    static client_address of(const std::uint8_t (&bytes)[16], std::size_t hops) noexcept;
    // from_peer_bytes without text(): handshake_guard names a client by its
    // key (detail::handshake_address_text), and only when it reports one.
    static client_address from_peer_bytes_untexted(const std::uint8_t* data, std::size_t size) noexcept;
    static client_address refused(wsguard::reason r, std::size_t hops) noexcept {
        client_address out;
        out.settle(r);
        out.hops = hops;
        return out;
    }
    void settle(wsguard::reason r) noexcept {
        decision = r;
        reason = r;
    }

    std::uint8_t bytes_[16] = {};  // IPv4 as ::ffff:a.b.c.d, full address (no prefix applied)
    char text_[40] = {};
    std::uint8_t text_size_ = 0;
};
WSGUARD_DETAIL_SET_DEPRECATED_END

class trusted_proxies {
public:
    using options = trusted_proxy_options;
    static constexpr std::size_t max_hop_limit = 64;

    // Patterns: addresses or CIDR blocks, IPv4 or IPv6: "127.0.0.1",
    // "10.0.0.0/8", "2001:db8::/32", "::1". An IPv4 block also matches the
    // IPv4-mapped spelling of its addresses (::ffff:10.0.0.1). Refused here:
    // malformed patterns, zone ids, host bits set beyond the prefix
    // ("10.0.0.1/8"), an empty list, and blocks that trust the whole internet
    // unless options.trust_everything_unsafe.
    static result<trusted_proxies> create(std::initializer_list<std::string_view> patterns, const options& opts = {}) {
        return build(std::vector<std::string_view>(patterns), opts);
    }
    template <class Patterns, class = std::enable_if_t<detail::origin_is_pattern_range<Patterns>::value>>
    static result<trusted_proxies> create(const Patterns& patterns, const options& opts = {}) {
        return build(detail::origin_views(patterns), opts);
    }

    // `peer`: the socket's remote endpoint, as address_key::from_endpoint_text
    // accepts it. `forwarded`: every Forwarded line, `x_forwarded_for`: every
    // X-Forwarded-For line, each joined with ", " in arrival order (empty:
    // absent). An untrusted peer is the client and its headers are ignored;
    // a trusted peer that sent neither header is itself the client. Forwarded
    // wins over X-Forwarded-For when both are present. When every address in
    // the chain is trusted, the leftmost is the client (as nginx does).
    //
    // Only the entries the walk needs are read, right to left: whatever lies
    // left of the client is never parsed. In the part that is read, Forwarded
    // follows RFC 7239 (quoted strings, "[v6]:port", case-insensitive names,
    // by=/proto=/host=/extensions checked as token or quoted-string, each
    // name once per element, OWS around ';' and ','); X-Forwarded-For entries
    // are "a.b.c.d", "a.b.c.d:port", bare IPv6, "[v6]" or "[v6]:port" (the
    // port is tolerated and dropped, as nginx does), "unknown" ends the walk.
    // An empty list element in the read part is forwarded_malformed.
    client_address resolve(std::string_view peer, std::string_view forwarded,
                           std::string_view x_forwarded_for) const noexcept;
    // The same with the peer as raw network-order bytes (4 or 16, e.g.
    // sin_addr / sin6_addr), for stacks that hold a sockaddr.
    client_address resolve_bytes(const std::uint8_t* peer, std::size_t peer_size, std::string_view forwarded,
                                 std::string_view x_forwarded_for) const noexcept;

    // Whether an address (bare or "ip:port" text, or 4/16 raw bytes) is in
    // one of the blocks: e.g. before honouring a PROXY protocol header.
    bool trusts(std::string_view address) const noexcept;
    bool trusts_bytes(const std::uint8_t* address, std::size_t size) const noexcept;

    // Blocks after parsing (duplicates kept).
    std::size_t size() const noexcept { return blocks_.size(); }
    const options& settings() const noexcept { return options_; }

private:
    // A block in the IPv4-mapped 128-bit space (an IPv4 /8 is a /104), as two
    // words of network and mask in memory order: a match is two AND-compares.
    struct block {
        std::uint64_t network[2];
        std::uint64_t mask[2];
    };

    trusted_proxies() = default;
    static result<trusted_proxies> build(const std::vector<std::string_view>& patterns, const options& opts);
    bool trusts_raw(const std::uint8_t (&address)[16]) const noexcept;
    client_address walk(const std::uint8_t (&peer)[16], std::string_view forwarded,
                        std::string_view x_forwarded_for) const noexcept;

    std::vector<block> blocks_;
    options options_;
};

// ---------------------------------------------------------------------------
// PROXY protocol v1 and v2 (https://www.haproxy.org/download/2.9/doc/proxy-protocol.txt)
// ---------------------------------------------------------------------------

enum class proxy_family : std::uint8_t {
    unspecified = 0,  // v1 UNKNOWN, v2 AF_UNSPEC, or a v2 LOCAL header
    ipv4 = 4,
    ipv6 = 6,
    unix_socket = 1,  // v2 AF_UNIX: the client is a local socket of the balancer
};

// The answer to one parse_proxy_header call: need more bytes, allowed (a
// complete, valid header of header_size bytes), or refused (close the
// connection: nothing after a broken header can be trusted).
WSGUARD_DETAIL_SET_DEPRECATED_BEGIN  // quiet implicit members: see the macro
class [[nodiscard]] proxy_header {
public:
    enum class state : std::uint8_t { need_more = 0, allowed = 1, refused = 2 };

    // ok while need_more and when allowed; otherwise proxy_header_missing
    // (the bytes start like neither signature: this peer must send PROXY),
    // proxy_header_malformed or proxy_header_unsupported (v2 version,
    // command, family or transport the spec does not define).
    detail::callable_decision decision;
    // When allowed: the bytes the header takes (v1 line with its CRLF, or 16 +
    // the v2 length); the application's bytes start at data + header_size.
    // While need_more: the least total size the header needs. 0 on refusal.
    std::size_t header_size = 0;
    std::uint8_t version = 0;  // 1 or 2 once the signature is recognized
    // When allowed: v2 LOCAL (the balancer's own health check). Like an
    // unspecified family, it carries no client: the socket's peer is the client.
    bool local = false;
    proxy_family family = proxy_family::unspecified;
    std::uint16_t source_port = 0;       // when has_source()
    std::uint16_t destination_port = 0;  // when has_source()
    // 0.1 spellings, set by the library alongside decision and the state.
    [[deprecated("use proxy_header::decision.reason; removed in 0.3")]]
    wsguard::reason reason = wsguard::reason::ok;
    [[deprecated("use need_more(), allowed(), refused(); removed in 0.3")]]
    state status = state::need_more;

    constexpr bool need_more() const noexcept { return state_ == state::need_more; }
    constexpr bool allowed() const noexcept { return state_ == state::allowed; }
    constexpr bool refused() const noexcept { return state_ == state::refused; }
    constexpr explicit operator bool() const noexcept { return allowed(); }

    // Whether the header names the client's IP (TCP4/TCP6, AF_INET/AF_INET6
    // with PROXY). False for LOCAL, UNKNOWN, AF_UNSPEC and AF_UNIX.
    bool has_source() const noexcept { return source_text_size_ != 0; }
    // The client's IP, canonical as client_address::text(); empty without one.
    // Pass it as upgrade_request::remote_address.
    std::string_view source_text() const noexcept { return std::string_view(source_text_, source_text_size_); }
    // The client's rate-limit key; nullopt without a source.
    std::optional<address_key> source_key(address_key_options options = {}) const noexcept {
        if (!has_source()) return std::nullopt;
        return address_key::from_bytes(source_, sizeof source_, options);
    }
    // The client's IP as 16 network-order bytes (IPv4 as ::ffff:a.b.c.d), for
    // upgrade_request::remote_address_bytes; nullptr without a source.
    const std::uint8_t* source_bytes() const noexcept { return has_source() ? source_ : nullptr; }

private:
    friend proxy_header parse_proxy_header(const std::uint8_t* data, std::size_t size) noexcept;
    void settle(state s, wsguard::reason r) noexcept {
        state_ = s;
        decision = r;
        status = s;
        reason = r;
    }

    state state_ = state::need_more;
    std::uint8_t source_[16] = {};
    char source_text_[40] = {};
    std::uint8_t source_text_size_ = 0;
};
WSGUARD_DETAIL_SET_DEPRECATED_END

// Reads the PROXY header at the start of a connection from the bytes received
// so far. Call it again with more bytes while need_more(): a header split at
// any byte gives need_more until it is complete, then the answer the whole
// header gives. v1 lines are limited to the spec's 107 bytes; v2 TLVs are
// skipped with bounds checks (a TLV running past the header is malformed).
// v1 is read strictly: single spaces, dotted quads without leading zeros,
// ports 0-65535 without leading zeros.
inline proxy_header parse_proxy_header(const std::uint8_t* data, std::size_t size) noexcept;

// ---------------------------------------------------------------------------
// Bodies
// ---------------------------------------------------------------------------
namespace detail {

inline constexpr address_key_options proxy_full_address{32, 128};  // no grouping: the exact address
inline constexpr std::size_t forwarded_node_cap = 128;  // longer for= values are forwarded_malformed

// 16 bytes (IPv4 as ::ffff:a.b.c.d) from endpoint text or raw bytes.
inline bool proxy_address_from_text(std::string_view text, std::uint8_t (&out)[16]) noexcept {
    const std::optional<address_key> key = address_key::from_endpoint_text(text, proxy_full_address);
    if (!key) return false;
    std::memcpy(out, key->bytes(), 16);
    return true;
}
inline bool proxy_address_from_bytes(const std::uint8_t* data, std::size_t size, std::uint8_t (&out)[16]) noexcept {
    const std::optional<address_key> key = address_key::from_bytes(data, size, proxy_full_address);
    if (!key) return false;
    std::memcpy(out, key->bytes(), 16);
    return true;
}

// Canonical text of 16 address bytes: a dotted quad for IPv4-mapped, else
// RFC 5952. At most 39 characters; returns the length (no terminator).
inline std::size_t proxy_address_text(const std::uint8_t (&b)[16], char (&out)[40]) noexcept {
    address_key probe;
    if (const auto key = address_key::from_bytes(b, 16, proxy_full_address)) probe = *key;
    if (probe.is_ipv4()) {
        std::size_t n = 0;
        for (int i = 12; i < 16; ++i) {
            if (i > 12) out[n++] = '.';
            const unsigned v = b[i];
            if (v >= 100) out[n++] = static_cast<char>('0' + v / 100);
            if (v >= 10) out[n++] = static_cast<char>('0' + v / 10 % 10);
            out[n++] = static_cast<char>('0' + v % 10);
        }
        return n;
    }
    std::uint16_t groups[8];
    for (int k = 0; k < 8; ++k) groups[k] = static_cast<std::uint16_t>(b[2 * k] << 8 | b[2 * k + 1]);
    return ipv6_format_rfc5952(groups, out);
}

// `address` with every bit after the first `prefix` cleared.
inline void proxy_mask(const std::uint8_t (&address)[16], unsigned prefix, std::uint8_t (&out)[16]) noexcept {
    for (unsigned i = 0; i < 16; ++i) {
        const unsigned kept = prefix >= 8 * (i + 1) ? 8 : prefix > 8 * i ? prefix - 8 * i : 0;
        out[i] = static_cast<std::uint8_t>(address[i] & (0xff00u >> kept & 0xffu));
    }
}

inline bool proxy_is_ows(char c) noexcept { return c == ' ' || c == '\t'; }
inline std::string_view proxy_trim(std::string_view s) noexcept {
    while (!s.empty() && proxy_is_ows(s.front())) s.remove_prefix(1);
    while (!s.empty() && proxy_is_ows(s.back())) s.remove_suffix(1);
    return s;
}
inline bool proxy_iequal(std::string_view a, std::string_view b) noexcept {
    if (a.size() != b.size()) return false;
    for (std::size_t i = 0; i < a.size(); ++i) {
        if (ascii_lower(a[i]) != ascii_lower(b[i])) return false;
    }
    return true;
}
// RFC 7230 tchar.
inline bool forwarded_is_tchar(char c) noexcept {
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return true;
    switch (c) {
        case '!': case '#': case '$': case '%': case '&': case '\'': case '*': case '+':
        case '-': case '.': case '^': case '_': case '`': case '|': case '~': return true;
        default: return false;
    }
}

// One hop of the chain, as the walk needs it.
enum class proxy_hop : std::uint8_t { address, unknown, malformed };

// RFC 7239 obfnode / obfport: "_" 1*(ALPHA / DIGIT / "." / "_" / "-").
inline bool forwarded_is_obfuscated(std::string_view s) noexcept {
    if (s.size() < 2 || s.front() != '_') return false;
    for (char c : s.substr(1)) {
        const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
                        c == '_' || c == '-';
        if (!ok) return false;
    }
    return true;
}

// RFC 7239 section 6: node = nodename [ ":" node-port ].
inline proxy_hop forwarded_parse_node(std::string_view node, std::uint8_t (&out)[16]) noexcept {
    std::string_view name = node, port;
    if (!node.empty() && node.front() == '[') {
        const std::size_t close = node.find(']');
        if (close == std::string_view::npos) return proxy_hop::malformed;
        name = node.substr(1, close - 1);
        const std::string_view rest = node.substr(close + 1);
        if (!rest.empty()) {
            if (rest.front() != ':') return proxy_hop::malformed;
            port = rest.substr(1);
            if (port.empty()) return proxy_hop::malformed;
        }
        if (!limits_parse_ipv6(name, out)) return proxy_hop::malformed;
        // Re-fold an IPv4-mapped address into the IPv4 form of the key.
        if (!proxy_address_from_bytes(out, 16, out)) return proxy_hop::malformed;
    } else {
        const std::size_t colon = node.find(':');
        if (colon != std::string_view::npos) {
            name = node.substr(0, colon);
            port = node.substr(colon + 1);
            if (port.empty()) return proxy_hop::malformed;
        }
    }
    if (!port.empty() && !limits_parse_port(port) && !forwarded_is_obfuscated(port)) return proxy_hop::malformed;
    if (!node.empty() && node.front() == '[') return proxy_hop::address;
    if (proxy_iequal(name, "unknown") || forwarded_is_obfuscated(name)) return proxy_hop::unknown;
    std::uint8_t quad[4];
    if (!limits_parse_ipv4(name, quad)) return proxy_hop::malformed;  // a bare IPv6 must be "[...]"
    return proxy_address_from_bytes(quad, 4, out) ? proxy_hop::address : proxy_hop::malformed;
}

// Reads a token or a quoted-string value at s[i]; on success i is past it and,
// when `copy` is set, the unescaped value is in copy[0, copy_size).
inline bool forwarded_read_value(std::string_view s, std::size_t& i, char* copy, std::size_t& copy_size) noexcept {
    copy_size = 0;
    const auto put = [&](char c) {
        if (copy == nullptr) return true;
        if (copy_size == forwarded_node_cap) return false;
        copy[copy_size++] = c;
        return true;
    };
    if (i < s.size() && s[i] == '"') {
        for (++i; i < s.size(); ++i) {
            const unsigned char c = static_cast<unsigned char>(s[i]);
            if (c == '"') {
                ++i;
                return true;
            }
            if (c == '\\') {
                if (++i == s.size()) return false;
                const unsigned char e = static_cast<unsigned char>(s[i]);
                if (!(e == '\t' || (e >= 0x20 && e != 0x7f))) return false;
                if (!put(static_cast<char>(e))) return false;
                continue;
            }
            if (!(c == '\t' || (c >= 0x20 && c != 0x7f))) return false;  // qdtext and obs-text
            if (!put(static_cast<char>(c))) return false;
        }
        return false;  // no closing quote
    }
    const std::size_t begin = i;
    while (i < s.size() && forwarded_is_tchar(s[i])) {
        if (!put(s[i])) return false;
        ++i;
    }
    return i > begin;
}

// RFC 7239 section 4: forwarded-element = [ forwarded-pair *( ";" forwarded-pair ) ],
// forwarded-pair = token "=" value. Each parameter at most once per element.
inline proxy_hop forwarded_parse_element(std::string_view element, std::uint8_t (&out)[16]) noexcept {
    element = proxy_trim(element);
    if (element.empty()) return proxy_hop::malformed;
    char node[forwarded_node_cap];
    std::size_t node_size = 0;
    unsigned seen = 0;  // bits: for, by, proto, host
    std::size_t i = 0;
    for (;;) {
        const std::size_t name_begin = i;
        while (i < element.size() && forwarded_is_tchar(element[i])) ++i;
        const std::string_view name = element.substr(name_begin, i - name_begin);
        if (name.empty() || i == element.size() || element[i] != '=') return proxy_hop::malformed;
        ++i;
        unsigned bit = 0;
        if (proxy_iequal(name, "for")) bit = 1;
        else if (proxy_iequal(name, "by")) bit = 2;
        else if (proxy_iequal(name, "proto")) bit = 4;
        else if (proxy_iequal(name, "host")) bit = 8;
        if ((seen & bit) != 0) return proxy_hop::malformed;
        seen |= bit;
        std::size_t copied = 0;
        if (!forwarded_read_value(element, i, bit == 1 ? node : nullptr, copied)) return proxy_hop::malformed;
        if (bit == 1) node_size = copied;
        while (i < element.size() && proxy_is_ows(element[i])) ++i;
        if (i == element.size()) break;
        if (element[i] != ';') return proxy_hop::malformed;
        ++i;
        while (i < element.size() && proxy_is_ows(element[i])) ++i;
    }
    if ((seen & 1) == 0) return proxy_hop::unknown;  // the proxy did not say whom it forwarded for
    return forwarded_parse_node(std::string_view(node, node_size), out);
}

// Splits the rightmost list element off `rest` (a Forwarded value): the last
// comma outside a quoted string. Scanning backwards, a '"' ends a quoted
// string unless an odd run of backslashes escapes it; a list whose quotes do
// not balance is malformed. `more` says whether a comma was found.
inline bool forwarded_take_last(std::string_view& rest, std::string_view& element, bool& more) noexcept {
    std::size_t i = rest.size();
    bool in_quote = false;
    while (i > 0) {
        const char c = rest[i - 1];
        if (in_quote) {
            if (c == '"') {
                std::size_t run_begin = i - 1;
                while (run_begin > 0 && rest[run_begin - 1] == '\\') --run_begin;
                if ((i - 1 - run_begin) % 2 == 0) in_quote = false;
            }
        } else if (c == '"') {
            in_quote = true;
        } else if (c == ',') {
            break;
        }
        --i;
    }
    if (in_quote) return false;
    element = rest.substr(i);
    more = i > 0;
    rest = rest.substr(0, more ? i - 1 : 0);
    return true;
}

inline proxy_hop forwarded_next_hop(std::string_view& rest, bool& more, std::uint8_t (&out)[16]) noexcept {
    std::string_view element;
    if (!forwarded_take_last(rest, element, more)) return proxy_hop::malformed;
    return forwarded_parse_element(element, out);
}

inline proxy_hop xff_next_hop(std::string_view& rest, bool& more, std::uint8_t (&out)[16]) noexcept {
    const std::size_t comma = rest.rfind(',');
    more = comma != std::string_view::npos;
    const std::string_view element = proxy_trim(more ? rest.substr(comma + 1) : rest);
    rest = more ? rest.substr(0, comma) : std::string_view();
    if (proxy_iequal(element, "unknown")) return proxy_hop::unknown;
    return proxy_address_from_text(element, out) ? proxy_hop::address : proxy_hop::malformed;
}

}  // namespace detail

inline client_address client_address::of(const std::uint8_t (&bytes)[16], std::size_t hops) noexcept {
    client_address out;
    out.settle(wsguard::reason::ok);
    out.hops = hops;
    std::memcpy(out.bytes_, bytes, 16);
    out.text_size_ = static_cast<std::uint8_t>(detail::proxy_address_text(bytes, out.text_));
    return out;
}

inline client_address client_address::from_peer(std::string_view peer) noexcept {
    std::uint8_t bytes[16];
    if (!detail::proxy_address_from_text(peer, bytes)) return refused(wsguard::reason::address_malformed, 0);
    return of(bytes, 0);
}

inline client_address client_address::from_peer_bytes(const std::uint8_t* data, std::size_t size) noexcept {
    client_address out = from_peer_bytes_untexted(data, size);
    if (out) out.text_size_ = static_cast<std::uint8_t>(detail::proxy_address_text(out.bytes_, out.text_));
    return out;
}

WSGUARD_DETAIL_HOT inline client_address client_address::from_peer_bytes_untexted(const std::uint8_t* data,
                                                                                  std::size_t size) noexcept {
    client_address out;
    if (!detail::proxy_address_from_bytes(data, size, out.bytes_)) return refused(wsguard::reason::address_malformed, 0);
    out.settle(wsguard::reason::ok);
    return out;
}

inline bool trusted_proxies::trusts_raw(const std::uint8_t (&address)[16]) const noexcept {
    std::uint64_t words[2];
    std::memcpy(words, address, 16);
    for (const block& b : blocks_) {
        if ((words[0] & b.mask[0]) == b.network[0] && (words[1] & b.mask[1]) == b.network[1]) return true;
    }
    return false;
}

inline bool trusted_proxies::trusts(std::string_view address) const noexcept {
    std::uint8_t bytes[16];
    return detail::proxy_address_from_text(address, bytes) && trusts_raw(bytes);
}

inline bool trusted_proxies::trusts_bytes(const std::uint8_t* address, std::size_t size) const noexcept {
    std::uint8_t bytes[16];
    return detail::proxy_address_from_bytes(address, size, bytes) && trusts_raw(bytes);
}

inline client_address trusted_proxies::resolve(std::string_view peer, std::string_view forwarded,
                                               std::string_view x_forwarded_for) const noexcept {
    std::uint8_t bytes[16];
    if (!detail::proxy_address_from_text(peer, bytes)) return client_address::refused(reason::address_malformed, 0);
    return walk(bytes, forwarded, x_forwarded_for);
}

inline client_address trusted_proxies::resolve_bytes(const std::uint8_t* peer, std::size_t peer_size,
                                                     std::string_view forwarded,
                                                     std::string_view x_forwarded_for) const noexcept {
    std::uint8_t bytes[16];
    if (!detail::proxy_address_from_bytes(peer, peer_size, bytes))
        return client_address::refused(reason::address_malformed, 0);
    return walk(bytes, forwarded, x_forwarded_for);
}

inline client_address trusted_proxies::walk(const std::uint8_t (&peer)[16], std::string_view forwarded,
                                            std::string_view x_forwarded_for) const noexcept {
    if (!trusts_raw(peer)) return client_address::of(peer, 0);
    forwarded = detail::proxy_trim(forwarded);
    const bool use_forwarded = !forwarded.empty();
    std::string_view rest = use_forwarded ? forwarded : detail::proxy_trim(x_forwarded_for);
    std::uint8_t current[16];
    std::memcpy(current, peer, 16);
    std::size_t hops = 0;
    bool more = !rest.empty();
    // `current` is trusted here: its word on the next address to the left is taken.
    while (more) {
        if (hops == options_.max_hops) return client_address::refused(reason::forwarded_too_many_hops, hops);
        std::uint8_t next[16];
        const detail::proxy_hop hop = use_forwarded ? detail::forwarded_next_hop(rest, more, next)
                                                    : detail::xff_next_hop(rest, more, next);
        if (hop == detail::proxy_hop::malformed) return client_address::refused(reason::forwarded_malformed, hops);
        if (hop == detail::proxy_hop::unknown) return client_address::refused(reason::forwarded_unknown_hop, hops);
        ++hops;
        std::memcpy(current, next, 16);
        if (!trusts_raw(current)) return client_address::of(current, hops);
    }
    return client_address::of(current, hops);
}

inline result<trusted_proxies> trusted_proxies::build(const std::vector<std::string_view>& patterns,
                                                      const options& opts) {
    using failure = result<trusted_proxies>;
    if (opts.max_hops < 1 || opts.max_hops > max_hop_limit)
        return failure::failure("trusted_proxies: options.max_hops must be 1 to 64 (default 16)");
    if (patterns.empty())
        return failure::failure(
            "trusted_proxies: the list is empty; list your proxies' addresses or blocks (e.g. \"127.0.0.1\", "
            "\"10.0.0.0/8\"), or configure no trusted_proxies at all");
    trusted_proxies out;
    out.options_ = opts;
    for (const std::string_view pattern : patterns) {
        const auto fail = [&](const std::string& why) {
            return failure::failure("trusted_proxies: pattern " + detail::origin_quote(pattern) + " " + why);
        };
        const std::size_t slash = pattern.find('/');
        const std::string_view address = pattern.substr(0, slash);
        if (address.find('%') != std::string_view::npos)
            return fail("has a zone id (%...): list the address without it");
        const std::optional<address_key> key = address_key::from_text(address, detail::proxy_full_address);
        if (!key) return fail("is not an IPv4 or IPv6 address or a CIDR block such as 10.0.0.0/8 or 2001:db8::/32");
        const bool ipv6_spelling = address.find(':') != std::string_view::npos;
        const unsigned max_bits = ipv6_spelling ? 128 : 32;
        unsigned bits = max_bits;
        if (slash != std::string_view::npos) {
            const std::string_view digits = pattern.substr(slash + 1);
            bool ok = !digits.empty() && digits.size() <= 3 && (digits.size() == 1 || digits[0] != '0');
            bits = 0;
            for (char c : digits) {
                ok = ok && detail::limits_is_digit(c);
                if (ok) bits = bits * 10 + static_cast<unsigned>(c - '0');
            }
            if (!ok || bits > max_bits)
                return fail("has an invalid prefix length: write /0 to /" + std::to_string(max_bits) + " after the address");
        }
        std::uint8_t address_bytes[16];
        std::memcpy(address_bytes, key->bytes(), 16);
        const unsigned prefix = ipv6_spelling ? bits : 96 + bits;  // in the IPv4-mapped 128-bit space
        std::uint8_t network[16];
        detail::proxy_mask(address_bytes, prefix, network);
        if (std::memcmp(network, address_bytes, 16) != 0) {
            char text[40];
            const std::size_t n = detail::proxy_address_text(network, text);
            const bool mapped_spelling = ipv6_spelling && key->is_ipv4();
            return fail("has host bits set beyond the prefix: write " + std::string(mapped_spelling ? "::ffff:" : "") +
                        std::string(text, n) + "/" + std::to_string(bits));
        }
        static constexpr std::uint8_t ipv4_space[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0, 0, 0};
        std::uint8_t ipv4_space_masked[16];
        detail::proxy_mask(ipv4_space, prefix, ipv4_space_masked);
        const bool holds_all_ipv4 = prefix <= 96 && std::memcmp(ipv4_space_masked, network, 16) == 0;
        const bool wide_ipv4 = prefix > 96 && key->is_ipv4() && prefix - 96 < 8;
        const bool wide_ipv6 = prefix < 7;
        if ((holds_all_ipv4 || wide_ipv4 || wide_ipv6) && !opts.trust_everything_unsafe)
            return fail("trusts a large part of the internet (wider than an IPv4 /8 or an IPv6 /7, or every IPv4 "
                        "address): any client could then choose its own address. List your proxies' own addresses "
                        "or private blocks; options.trust_everything_unsafe exists only for servers no client can "
                        "reach except through the proxies");
        static constexpr std::uint8_t all_ones[16] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                                                      0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
        std::uint8_t mask[16];
        detail::proxy_mask(all_ones, prefix, mask);
        block b{};
        std::memcpy(b.network, network, 16);
        std::memcpy(b.mask, mask, 16);
        out.blocks_.push_back(b);
    }
    return failure::success(std::move(out));
}

namespace detail {

inline constexpr std::uint8_t proxy_v2_signature[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                                         0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};
inline constexpr std::size_t proxy_v1_max_line = 107;  // "PROXY TCP6 <39> <39> 65535 65535\r\n" is 104

// v1 port: 0-65535 in decimal, no sign, no leading zero.
inline bool proxy_v1_port(std::string_view s, std::uint16_t& out) noexcept {
    if (s.empty() || s.size() > 5 || (s.size() > 1 && s[0] == '0')) return false;
    unsigned value = 0;
    for (char c : s) {
        if (!limits_is_digit(c)) return false;
        value = value * 10 + static_cast<unsigned>(c - '0');
    }
    if (value > 65535) return false;
    out = static_cast<std::uint16_t>(value);
    return true;
}

// The next field of a v1 line up to a single space (or the end).
inline std::string_view proxy_v1_field(std::string_view& rest, bool last) noexcept {
    const std::size_t space = rest.find(' ');
    if (last) {
        const std::string_view field = rest;
        rest = {};
        return space == std::string_view::npos ? field : std::string_view();
    }
    if (space == std::string_view::npos) return {};
    const std::string_view field = rest.substr(0, space);
    rest = rest.substr(space + 1);
    return field;
}

}  // namespace detail

inline proxy_header parse_proxy_header(const std::uint8_t* data, std::size_t size) noexcept {
    proxy_header out;
    const auto refuse = [&out](reason r) {
        out.settle(proxy_header::state::refused, r);
        out.header_size = 0;
        return out;
    };
    const auto wait_for = [&out](std::size_t total) {
        out.header_size = total;
        return out;
    };
    const auto set_source = [&out](const std::uint8_t* address, std::size_t address_size) {
        std::uint8_t bytes[16];
        if (!detail::proxy_address_from_bytes(address, address_size, bytes)) return false;
        std::memcpy(out.source_, bytes, 16);
        out.source_text_size_ = static_cast<std::uint8_t>(detail::proxy_address_text(bytes, out.source_text_));
        return true;
    };
    if (data == nullptr || size == 0) return wait_for(16);

    if (data[0] == detail::proxy_v2_signature[0]) {
        // v2: signature, ver/cmd, fam/proto, 16-bit length, address block, TLVs.
        if (std::memcmp(data, detail::proxy_v2_signature, std::min<std::size_t>(size, 12)) != 0)
            return refuse(reason::proxy_header_missing);
        out.version = 2;
        if (size > 12) {
            if ((data[12] >> 4) != 2 || (data[12] & 0x0f) > 1) return refuse(reason::proxy_header_unsupported);
        }
        if (size > 13) {
            if ((data[13] >> 4) > 3 || (data[13] & 0x0f) > 2) return refuse(reason::proxy_header_unsupported);
        }
        if (size < 16) return wait_for(16);
        out.local = (data[12] & 0x0f) == 0;
        const unsigned family = data[13] >> 4;
        const std::size_t length = std::size_t{data[14]} << 8 | data[15];
        const std::size_t total = 16 + length;
        static constexpr std::size_t address_sizes[4] = {0, 12, 36, 216};
        const std::size_t address_size = out.local ? 0 : address_sizes[family];
        if (length < address_size) return refuse(reason::proxy_header_malformed);
        if (size < total) return wait_for(total);
        out.header_size = total;
        out.settle(proxy_header::state::allowed, reason::ok);
        // LOCAL: the balancer speaks for itself; the spec says to ignore the
        // rest of the header, address block and TLVs alike.
        if (out.local) return out;
        for (std::size_t p = 16 + address_size; p < total;) {
            if (total - p < 3) return refuse(reason::proxy_header_malformed);
            const std::size_t value_size = std::size_t{data[p + 1]} << 8 | data[p + 2];
            if (value_size > total - p - 3) return refuse(reason::proxy_header_malformed);
            p += 3 + value_size;
        }
        const std::uint8_t* block = data + 16;
        if (family == 1 || family == 2) {
            const std::size_t bytes = family == 1 ? 4 : 16;
            if (!set_source(block, bytes)) return refuse(reason::internal_error);
            out.family = family == 1 ? proxy_family::ipv4 : proxy_family::ipv6;
            out.source_port = static_cast<std::uint16_t>(block[2 * bytes] << 8 | block[2 * bytes + 1]);
            out.destination_port = static_cast<std::uint16_t>(block[2 * bytes + 2] << 8 | block[2 * bytes + 3]);
        } else if (family == 3) {
            out.family = proxy_family::unix_socket;
        }
        return out;
    }

    // v1: "PROXY " then one line of printable ASCII ending in CRLF, at most
    // 107 bytes. Every byte is judged as it arrives, so a prefix never
    // answers differently from the whole line.
    static constexpr char v1_signature[] = "PROXY ";
    if (std::memcmp(data, v1_signature, std::min<std::size_t>(size, 6)) != 0) return refuse(reason::proxy_header_missing);
    out.version = 1;
    const std::size_t scan = std::min(size, detail::proxy_v1_max_line);
    std::size_t line_end = 0;
    for (std::size_t i = 0; i < scan && line_end == 0; ++i) {
        const std::uint8_t c = data[i];
        if (c == '\n') {
            if (i == 0 || data[i - 1] != '\r') return refuse(reason::proxy_header_malformed);
            line_end = i + 1;
        } else if (c == '\r') {
            if (i + 1 < size && data[i + 1] != '\n') return refuse(reason::proxy_header_malformed);
        } else if (c < 0x20 || c > 0x7e) {
            return refuse(reason::proxy_header_malformed);
        }
    }
    if (line_end == 0) {
        if (size >= detail::proxy_v1_max_line) return refuse(reason::proxy_header_malformed);
        return wait_for(size + 1);
    }
    std::string_view rest(reinterpret_cast<const char*>(data) + 6, line_end - 8);
    const std::string_view protocol = detail::proxy_v1_field(rest, rest.find(' ') == std::string_view::npos);
    if (protocol == "UNKNOWN") {
        // The spec: a receiver ignores whatever follows UNKNOWN up to the CRLF.
        out.header_size = line_end;
        out.settle(proxy_header::state::allowed, reason::ok);
        return out;
    }
    if (protocol != "TCP4" && protocol != "TCP6") return refuse(reason::proxy_header_malformed);
    const std::string_view source = detail::proxy_v1_field(rest, false);
    const std::string_view destination = detail::proxy_v1_field(rest, false);
    const std::string_view source_port = detail::proxy_v1_field(rest, false);
    const std::string_view destination_port = detail::proxy_v1_field(rest, true);
    std::uint8_t source_bytes[16], destination_bytes[16];
    const bool v4 = protocol == "TCP4";
    const bool addresses_ok = v4 ? detail::limits_parse_ipv4(source, source_bytes) &&
                                       detail::limits_parse_ipv4(destination, destination_bytes)
                                 : detail::limits_parse_ipv6(source, source_bytes) &&
                                       detail::limits_parse_ipv6(destination, destination_bytes);
    if (!addresses_ok || !detail::proxy_v1_port(source_port, out.source_port) ||
        !detail::proxy_v1_port(destination_port, out.destination_port))
        return refuse(reason::proxy_header_malformed);
    if (!set_source(source_bytes, v4 ? 4 : 16)) return refuse(reason::internal_error);
    out.family = v4 ? proxy_family::ipv4 : proxy_family::ipv6;
    out.header_size = line_end;
    out.settle(proxy_header::state::allowed, reason::ok);
    return out;
}

}  // inline namespace WSGUARD_ABI_NS
}  // namespace wsguard


// ===========================================================================
// 7. Crypto: sha256, hmac_sha256, base64url, random bytes
// ===========================================================================

// The public promise: sha256 and sha256_hasher, hmac_sha256 and hmac_sha256_key,
// constant_time_equal, base64url_encode / base64url_decode with their sizes,
// and random_bytes. Below them: the portable SHA-256 and the base64url codec,
// then, fenced at the end, the SIMD compression backends and the choice
// between them.

namespace wsguard {
inline namespace WSGUARD_ABI_NS {

using sha256_digest = std::array<std::uint8_t, 32>;

namespace detail {

// What the public classes hold by value (complete before them), and the
// internals their inline members call: declared here, defined below.

// Compresses `count` consecutive 64-byte blocks into `state` (FIPS 180-4 6.2.2).
using sha256_compress_fn = void (*)(std::uint32_t* state, const std::uint8_t* blocks, std::size_t count) noexcept;

inline constexpr std::uint32_t sha256_initial_state[8] = {
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
};

inline void crypto_wipe(void* p, std::size_t size) noexcept;
inline sha256_compress_fn sha256_active_compress() noexcept;
inline void sha256_store_digest(const std::uint32_t* state, std::uint8_t* out) noexcept;
WSGUARD_DETAIL_HOT inline void sha256_absorb_final(std::uint32_t* state, std::uint64_t prefix, const std::uint8_t* data,
                                                   std::size_t size, sha256_compress_fn compress) noexcept;
WSGUARD_DETAIL_HOT inline void hmac_sha256_finish(sha256_compress_fn compress, const std::uint32_t* inner,
                                                  std::uint64_t prefix, const std::uint8_t* data, std::size_t size,
                                                  const std::uint32_t* outer, std::uint8_t* out) noexcept;
inline sha256_digest sha256_with(sha256_compress_fn compress, const std::uint8_t* data, std::size_t size) noexcept;

// Buffered incremental SHA-256 from any starting state.
struct sha256_engine {
    std::uint32_t state[8];
    std::uint8_t buffer[64];
    std::size_t buffered;  // 0..63
    std::uint64_t total;   // bytes absorbed, including the prefix a start state stands for
    sha256_compress_fn compress;

    void start(const std::uint32_t* initial, std::uint64_t prefix, sha256_compress_fn fn) noexcept {
        std::memcpy(state, initial, sizeof state);
        buffered = 0;
        total = prefix;
        compress = fn;
    }

    void update(const std::uint8_t* data, std::size_t size) noexcept {
        if (size == 0) return;
        total += size;
        if (buffered != 0) {
            const std::size_t take = size < 64 - buffered ? size : 64 - buffered;
            std::memcpy(buffer + buffered, data, take);
            buffered += take;
            data += take;
            size -= take;
            if (buffered < 64) return;
            compress(state, buffer, 1);
            buffered = 0;
        }
        const std::size_t whole = size / 64;
        if (whole != 0) compress(state, data, whole);
        buffered = size % 64;
        if (buffered != 0) std::memcpy(buffer, data + whole * 64, buffered);
    }

    void finish(std::uint8_t* out) noexcept {
        sha256_absorb_final(state, total - buffered, buffer, buffered, compress);
        sha256_store_digest(state, out);
    }

    void wipe() noexcept { crypto_wipe(this, sizeof *this); }
};

// Builds the hasher and key objects on one chosen backend (with the backends, at the end).
struct sha256_backend_access;

}  // namespace detail

// ---------------------------------------------------------------------------
// SHA-256
// ---------------------------------------------------------------------------

// Incremental SHA-256. finish() returns the digest and resets the hasher.
class sha256_hasher {
public:
    sha256_hasher() noexcept : sha256_hasher(detail::sha256_active_compress()) {}
    sha256_hasher(const sha256_hasher&) noexcept = default;
    sha256_hasher& operator=(const sha256_hasher&) noexcept = default;
    ~sha256_hasher() { engine_.wipe(); }

    void update(const std::uint8_t* data, std::size_t size) noexcept { engine_.update(data, size); }
    void update(std::string_view data) noexcept {
        engine_.update(reinterpret_cast<const std::uint8_t*>(data.data()), data.size());
    }
    sha256_digest finish() noexcept {
        sha256_digest out;
        engine_.finish(out.data());
        engine_.start(detail::sha256_initial_state, 0, engine_.compress);
        return out;
    }

private:
    friend struct detail::sha256_backend_access;
    explicit sha256_hasher(detail::sha256_compress_fn compress) noexcept {
        engine_.start(detail::sha256_initial_state, 0, compress);
    }
    detail::sha256_engine engine_;
};

inline sha256_digest sha256(const std::uint8_t* data, std::size_t size) noexcept {
    return detail::sha256_with(detail::sha256_active_compress(), data, size);
}
inline sha256_digest sha256(std::string_view data) noexcept {
    return sha256(reinterpret_cast<const std::uint8_t*>(data.data()), data.size());
}

// ---------------------------------------------------------------------------
// HMAC-SHA256 (RFC 2104)
// ---------------------------------------------------------------------------

// A MAC key with its inner and outer pad blocks already compressed, so each MAC
// costs only the message's compressions plus one. Wiped on destruction.
// Any key length is accepted, as RFC 2104 (and RFC 4231's 20-byte vectors) has
// it: this is the primitive. Ticket keys go through keyring::create, which
// refuses secrets shorter than 32 bytes.
class hmac_sha256_key {
public:
    explicit hmac_sha256_key(std::string_view key) noexcept
        : hmac_sha256_key(reinterpret_cast<const std::uint8_t*>(key.data()), key.size()) {}
    hmac_sha256_key(const std::uint8_t* key, std::size_t size) noexcept
        : hmac_sha256_key(key, size, detail::sha256_active_compress()) {}
    hmac_sha256_key(const hmac_sha256_key&) noexcept = default;
    hmac_sha256_key& operator=(const hmac_sha256_key&) noexcept = default;
    ~hmac_sha256_key() {
        detail::crypto_wipe(inner_, sizeof inner_);
        detail::crypto_wipe(outer_, sizeof outer_);
    }

    sha256_digest mac(const std::uint8_t* message, std::size_t size) const noexcept {
        sha256_digest out;
        detail::hmac_sha256_finish(compress_, inner_, 64, message, size, outer_, out.data());
        return out;
    }
    sha256_digest mac(std::string_view message) const noexcept {
        return mac(reinterpret_cast<const std::uint8_t*>(message.data()), message.size());
    }

    // An incremental MAC over several parts, without copying them together.
    // finish() once per message; begin() again (or a copy made earlier) for the next.
    class stream {
    public:
        stream(const stream&) noexcept = default;
        stream& operator=(const stream&) noexcept = default;
        ~stream() {
            inner_.wipe();
            detail::crypto_wipe(outer_, sizeof outer_);
        }
        void update(const std::uint8_t* data, std::size_t size) noexcept { inner_.update(data, size); }
        void update(std::string_view data) noexcept {
            inner_.update(reinterpret_cast<const std::uint8_t*>(data.data()), data.size());
        }
        // The MAC of everything absorbed. A copy of a stream continues on its
        // own: absorb a shared prefix once, copy the stream per message.
        sha256_digest finish() noexcept {
            sha256_digest out;
            detail::hmac_sha256_finish(inner_.compress, inner_.state, inner_.total - inner_.buffered, inner_.buffer,
                                       inner_.buffered, outer_, out.data());
            return out;
        }

    private:
        friend class hmac_sha256_key;
        explicit stream(const hmac_sha256_key& key) noexcept {
            inner_.start(key.inner_, 64, key.compress_);
            std::memcpy(outer_, key.outer_, sizeof outer_);
        }
        detail::sha256_engine inner_;
        std::uint32_t outer_[8];
    };

    stream begin() const noexcept { return stream(*this); }

private:
    friend struct detail::sha256_backend_access;
    hmac_sha256_key(const std::uint8_t* key, std::size_t size, detail::sha256_compress_fn compress) noexcept
        : compress_(compress) {
        // RFC 2104: a key longer than the block is replaced by its hash, then zero-padded.
        std::uint8_t block[64] = {};
        if (size > 64) {
            const sha256_digest hashed = detail::sha256_with(compress_, key, size);
            std::memcpy(block, hashed.data(), hashed.size());
            detail::crypto_wipe(const_cast<std::uint8_t*>(hashed.data()), hashed.size());
        } else if (size != 0) {
            std::memcpy(block, key, size);
        }
        for (std::uint8_t& byte : block) byte ^= 0x36;
        std::memcpy(inner_, detail::sha256_initial_state, sizeof inner_);
        compress_(inner_, block, 1);
        for (std::uint8_t& byte : block) byte ^= 0x36 ^ 0x5c;
        std::memcpy(outer_, detail::sha256_initial_state, sizeof outer_);
        compress_(outer_, block, 1);
        detail::crypto_wipe(block, sizeof block);
    }
    std::uint32_t inner_[8];
    std::uint32_t outer_[8];
    detail::sha256_compress_fn compress_;
};

inline sha256_digest hmac_sha256(const std::uint8_t* key, std::size_t key_size, const std::uint8_t* message,
                                 std::size_t message_size) noexcept {
    return hmac_sha256_key(key, key_size).mac(message, message_size);
}
inline sha256_digest hmac_sha256(std::string_view key, std::string_view message) noexcept {
    return hmac_sha256_key(key).mac(message);
}

// ---------------------------------------------------------------------------
// Constant-time comparison
// ---------------------------------------------------------------------------

// True when the two buffers are equal. constant-time: the time depends only on
// size, never on where or whether the buffers differ.
inline bool constant_time_equal(const std::uint8_t* a, const std::uint8_t* b, std::size_t size) noexcept {
    std::uint32_t difference = 0;
    for (std::size_t i = 0; i < size; ++i) {
        difference |= static_cast<std::uint32_t>(a[i] ^ b[i]);
#if defined(__GNUC__) || defined(__clang__)
        // Hides the accumulator from the optimiser, which could otherwise stop
        // early once it saw every bit set.
        __asm__("" : "+r"(difference));
#endif
    }
    // 0 -> 1, 1..255 -> 0, without a comparison the compiler could branch on.
    const bool equal = static_cast<bool>(((difference - 1u) >> 8) & 1u);
    WSGUARD_CT_DECLASSIFY(&equal, sizeof equal);  // the answer is public; how it was reached is not
    return equal;
}
inline bool constant_time_equal(const sha256_digest& a, const sha256_digest& b) noexcept {
    return constant_time_equal(a.data(), b.data(), a.size());
}

// ---------------------------------------------------------------------------
// base64url (RFC 4648 section 5), no padding, strict and canonical
// ---------------------------------------------------------------------------

// Characters needed for `bytes` bytes; saturates at SIZE_MAX (no buffer is that large).
constexpr std::size_t base64url_encoded_size(std::size_t bytes) noexcept {
    return bytes / 3 > std::numeric_limits<std::size_t>::max() / 4 - 1
               ? std::numeric_limits<std::size_t>::max()
               : bytes / 3 * 4 + (bytes % 3 == 0 ? 0 : bytes % 3 + 1);
}
// Bytes that `chars` characters decode to at most (exactly, when they are valid).
constexpr std::size_t base64url_max_decoded_size(std::size_t chars) noexcept {
    return chars / 4 * 3 + (chars % 4) * 3 / 4;
}

// Writes the encoding of in[0..size) to out (no terminator). Returns the number
// of characters written, or 0 when out_capacity is too small (and size > 0).
inline std::size_t base64url_encode(const std::uint8_t* in, std::size_t size, char* out,
                                    std::size_t out_capacity) noexcept;

// Convenience for configuration and tests (allocates: not for the request path).
inline std::string base64url_encode(const std::uint8_t* in, std::size_t size) {
    std::string out(base64url_encoded_size(size), '\0');
    const std::size_t written = base64url_encode(in, size, &out[0], out.size());
    out.resize(written);
    return out;
}

// Decodes canonical unpadded base64url into out[0..out_capacity). Refuses (and
// sets out_size to 0) anything but the one encoding an encoder would produce:
// a character outside A-Z a-z 0-9 - _ (so '=', '+', '/', whitespace), a length
// of 1 mod 4, non-zero unused bits in the last character, or an output larger
// than out_capacity. Nothing is written past out_capacity; on refusal the
// bytes written so far are zeroed.
inline bool base64url_decode(std::string_view in, std::uint8_t* out, std::size_t out_capacity,
                             std::size_t& out_size) noexcept;

// ---------------------------------------------------------------------------
// Random bytes from the operating system
// ---------------------------------------------------------------------------

// Fills out[0..size) from the OS generator. Fails closed: anything but a full
// fill answers reason::random_unavailable (and the buffer is zeroed).
inline reason random_bytes(std::uint8_t* out, std::size_t size) noexcept {
    std::size_t filled = 0;
#if defined(__linux__)
    // getrandom() blocks only until the pool is first seeded; a signal may cut
    // it short (EINTR) and large requests may come back partial.
    while (filled < size) {
        const ssize_t got = getrandom(out + filled, size - filled, 0);
        if (got > 0) {
            filled += static_cast<std::size_t>(got);
        } else if (got < 0 && errno == EINTR) {
            continue;
        } else {
            break;
        }
    }
#elif defined(__APPLE__) || defined(__FreeBSD__) || defined(__OpenBSD__) || defined(__NetBSD__) || \
    defined(__DragonFly__)
    if (size != 0) arc4random_buf(out, size);  // cannot fail
    filled = size;
#elif defined(_WIN32)
    const unsigned long use_system_preferred_rng = 0x00000002;  // BCRYPT_USE_SYSTEM_PREFERRED_RNG
    while (filled < size) {
        const std::size_t chunk_max = 0x40000000;  // fits the ULONG size argument
        const std::size_t chunk = size - filled < chunk_max ? size - filled : chunk_max;
        const long status = BCryptGenRandom(nullptr, out + filled, static_cast<unsigned long>(chunk), use_system_preferred_rng);
        if (status < 0) break;  // NT_SUCCESS(status) is status >= 0
        filled += chunk;
    }
#endif
    if (filled != size) {
        if (size != 0) detail::crypto_wipe(out, size);
        return reason::random_unavailable;
    }
    return reason::ok;
}

// Overwrites out[0..size) with zeros in a way the optimiser cannot remove as a
// dead store (memset, then an empty asm that claims to read the memory, as
// explicit_bzero does; volatile stores where inline asm is unavailable). For a
// raw key once keyring::create has derived its own copy: the keyring keeps no
// view of the secret, so the caller's buffer is the last plain copy.
inline void secure_wipe(void* out, std::size_t size) noexcept { detail::crypto_wipe(out, size); }

// ---------------------------------------------------------------------------
// Internals: the portable SHA-256, the end of an HMAC, the base64url codec
// ---------------------------------------------------------------------------
namespace detail {

alignas(64) inline constexpr std::uint32_t sha256_round_constants[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};

constexpr std::uint32_t sha256_load_be32(const std::uint8_t* p) noexcept {
    return (std::uint32_t{p[0]} << 24) | (std::uint32_t{p[1]} << 16) | (std::uint32_t{p[2]} << 8) | std::uint32_t{p[3]};
}

inline void sha256_store_be32(std::uint8_t* p, std::uint32_t v) noexcept {
    p[0] = static_cast<std::uint8_t>(v >> 24);
    p[1] = static_cast<std::uint8_t>(v >> 16);
    p[2] = static_cast<std::uint8_t>(v >> 8);
    p[3] = static_cast<std::uint8_t>(v);
}

constexpr std::uint32_t sha256_rotr(std::uint32_t x, int n) noexcept { return (x >> n) | (x << (32 - n)); }

// Erases secrets (key pads, hash states derived from a key) in a way the
// compiler cannot drop as a dead store: memset followed by an empty asm that
// claims to read the memory (as explicit_bzero does), or volatile stores where
// inline asm is not available.
inline void crypto_wipe(void* p, std::size_t size) noexcept {
#if defined(__GNUC__) || defined(__clang__)
    if (size == 0) return;
    std::memset(p, 0, size);
    __asm__ __volatile__("" : : "r"(p) : "memory");
#else
    volatile std::uint8_t* bytes = static_cast<volatile std::uint8_t*>(p);
    for (std::size_t i = 0; i < size; ++i) bytes[i] = 0;
#endif
}

// constant-time: no branch or index depends on the data, only on the block count.
WSGUARD_DETAIL_HOT inline void sha256_compress_portable(std::uint32_t* state, const std::uint8_t* blocks, std::size_t count) noexcept {
    for (std::size_t block = 0; block < count; ++block, blocks += 64) {
        std::uint32_t w[64];
        for (int i = 0; i < 16; ++i) w[i] = sha256_load_be32(blocks + 4 * i);
        for (int i = 16; i < 64; ++i) {
            const std::uint32_t s0 = sha256_rotr(w[i - 15], 7) ^ sha256_rotr(w[i - 15], 18) ^ (w[i - 15] >> 3);
            const std::uint32_t s1 = sha256_rotr(w[i - 2], 17) ^ sha256_rotr(w[i - 2], 19) ^ (w[i - 2] >> 10);
            w[i] = w[i - 16] + s0 + w[i - 7] + s1;
        }
        std::uint32_t a = state[0], b = state[1], c = state[2], d = state[3];
        std::uint32_t e = state[4], f = state[5], g = state[6], h = state[7];
        for (int i = 0; i < 64; ++i) {
            const std::uint32_t s1 = sha256_rotr(e, 6) ^ sha256_rotr(e, 11) ^ sha256_rotr(e, 25);
            const std::uint32_t choose = (e & f) ^ (~e & g);
            const std::uint32_t t1 = h + s1 + choose + sha256_round_constants[i] + w[i];
            const std::uint32_t s0 = sha256_rotr(a, 2) ^ sha256_rotr(a, 13) ^ sha256_rotr(a, 22);
            const std::uint32_t majority = (a & b) ^ (a & c) ^ (b & c);
            const std::uint32_t t2 = s0 + majority;
            h = g;
            g = f;
            f = e;
            e = d + t1;
            d = c;
            c = b;
            b = a;
            a = t1 + t2;
        }
        state[0] += a;
        state[1] += b;
        state[2] += c;
        state[3] += d;
        state[4] += e;
        state[5] += f;
        state[6] += g;
        state[7] += h;
    }
}

inline void sha256_store_digest(const std::uint32_t* state, std::uint8_t* out) noexcept {
    for (int i = 0; i < 8; ++i) sha256_store_be32(out + 4 * i, state[i]);
}

// Hashes `data` to its end, padding included, into a state that has already
// absorbed `prefix` bytes (a multiple of 64). A short message (under two
// blocks, e.g. an HMAC of a ticket) is copied so that one call compresses it
// all; a longer one is compressed in place, only its tail copied.
inline void sha256_absorb_final(std::uint32_t* state, std::uint64_t prefix, const std::uint8_t* data, std::size_t size,
                                sha256_compress_fn compress) noexcept {
    const std::size_t in_place = size >= 128 ? size / 64 : 0;
    if (in_place != 0) compress(state, data, in_place);
    const std::size_t rest = size - in_place * 64;  // 0..127
    const std::size_t blocks = (rest + 1 + 8 + 63) / 64;  // room for 0x80 and the 64-bit length
    std::uint8_t last[192];
    if (rest != 0) std::memcpy(last, data + in_place * 64, rest);
    last[rest] = 0x80;
    std::memset(last + rest + 1, 0, blocks * 64 - rest - 1 - 8);
    const std::uint64_t bits = (prefix + size) * 8;
    sha256_store_be32(last + blocks * 64 - 8, static_cast<std::uint32_t>(bits >> 32));
    sha256_store_be32(last + blocks * 64 - 4, static_cast<std::uint32_t>(bits));
    compress(state, last, blocks);
    crypto_wipe(last, blocks * 64);
}

// The end of an HMAC: the inner hash continues from `inner` (standing for
// `prefix` bytes) over data[0..size) to its digest, the outer hash from `outer`
// over that digest; the MAC goes to out[0..32).
inline void hmac_sha256_finish(sha256_compress_fn compress, const std::uint32_t* inner, std::uint64_t prefix,
                               const std::uint8_t* data, std::size_t size, const std::uint32_t* outer,
                               std::uint8_t* out) noexcept {
    std::uint32_t state[8];
    std::memcpy(state, inner, sizeof state);
    sha256_absorb_final(state, prefix, data, size, compress);
    std::uint8_t inner_digest[32];
    sha256_store_digest(state, inner_digest);
    std::memcpy(state, outer, sizeof state);
    sha256_absorb_final(state, 64, inner_digest, sizeof inner_digest, compress);
    sha256_store_digest(state, out);
    crypto_wipe(inner_digest, sizeof inner_digest);
    crypto_wipe(state, sizeof state);
}

}  // namespace detail

namespace detail {
inline sha256_digest sha256_with(sha256_compress_fn compress, const std::uint8_t* data, std::size_t size) noexcept {
    std::uint32_t state[8];
    std::memcpy(state, sha256_initial_state, sizeof state);
    sha256_absorb_final(state, 0, data, size, compress);
    sha256_digest out;
    sha256_store_digest(state, out.data());
    return out;
}
}  // namespace detail

namespace detail {
// All-ones when the condition holds, else zero; keeps the codec free of
// branches and tables indexed by data, so encoding or decoding a secret (a key,
// a MAC) does not leak it through timing.
constexpr std::uint32_t base64url_mask(bool condition) noexcept { return 0u - static_cast<std::uint32_t>(condition); }

constexpr char base64url_char(std::uint32_t six_bits) noexcept {
    const std::uint32_t v = six_bits & 63u;
    std::uint32_t c = v + 'A';
    c += base64url_mask(v >= 26) & ('a' - 'A' - 26);
    c -= base64url_mask(v >= 52) & ('a' + 26 - '0');  // 'a' + (52 - 26) down to '0'
    c -= base64url_mask(v >= 62) & ('0' + 10 - '-');
    c += base64url_mask(v >= 63) & ('_' - '-' - 1);
    return static_cast<char>(c);
}

// The six bits a character stands for, or 0x100 and above when it is not in the alphabet.
constexpr std::uint32_t base64url_value(unsigned char c) noexcept {
    const std::uint32_t x = c;
    const std::uint32_t upper = base64url_mask(x >= 'A') & base64url_mask(x <= 'Z');
    const std::uint32_t lower = base64url_mask(x >= 'a') & base64url_mask(x <= 'z');
    const std::uint32_t digit = base64url_mask(x >= '0') & base64url_mask(x <= '9');
    const std::uint32_t dash = base64url_mask(x == '-');
    const std::uint32_t underscore = base64url_mask(x == '_');
    const std::uint32_t value = (upper & (x - 'A')) | (lower & (x - 'a' + 26)) | (digit & (x - '0' + 52)) |
                                (dash & 62u) | (underscore & 63u);
    const std::uint32_t valid = upper | lower | digit | dash | underscore;
    return value | (~valid & 0x100u);
}
}  // namespace detail

namespace detail {
// The same encoding as base64url_encode, NOT constant time (a table lookup per
// character): only for output that is not secret (benchmark baselines).
// Allocates; about 4x faster.
inline std::string base64url_encode_public(const std::uint8_t* in, std::size_t size) {
    static constexpr char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    std::string out(base64url_encoded_size(size), '\0');
    char* o = &out[0];
    std::size_t i = 0;
    for (; i + 3 <= size; i += 3) {
        const std::uint32_t v = (std::uint32_t{in[i]} << 16) | (std::uint32_t{in[i + 1]} << 8) | in[i + 2];
        *o++ = alphabet[v >> 18];
        *o++ = alphabet[(v >> 12) & 63];
        *o++ = alphabet[(v >> 6) & 63];
        *o++ = alphabet[v & 63];
    }
    if (size - i == 1) {
        const std::uint32_t v = std::uint32_t{in[i]} << 16;
        *o++ = alphabet[v >> 18];
        *o++ = alphabet[(v >> 12) & 63];
    } else if (size - i == 2) {
        const std::uint32_t v = (std::uint32_t{in[i]} << 16) | (std::uint32_t{in[i + 1]} << 8);
        *o++ = alphabet[v >> 18];
        *o++ = alphabet[(v >> 12) & 63];
        *o++ = alphabet[(v >> 6) & 63];
    }
    return out;
}
}  // namespace detail

namespace detail {
// 0..63 for the alphabet, 0xFF for every other byte. Indexed by input byte, so
// only for public input (see detail::base64url_decode_public).
struct base64url_table {
    std::uint8_t value[256];
    constexpr base64url_table() noexcept : value() {
        for (int c = 0; c < 256; ++c) {
            const std::uint32_t v = base64url_value(static_cast<unsigned char>(c));
            value[c] = v > 63 ? std::uint8_t{0xFF} : static_cast<std::uint8_t>(v);
        }
    }
};
inline constexpr base64url_table base64url_lookup{};
}  // namespace detail

namespace detail {
// The same strict, canonical decoding as base64url_decode, but NOT constant
// time: a table lookup indexed by each character and an early exit on the
// first bad one. Only for input that is not secret, such as a ticket the
// client already holds (its MAC is checked afterwards, in constant time).
// Nothing is written past out_capacity; out_size is 0 on refusal. (An SSSE3
// version saved under 10% of a ticketed handshake_guard::check: removed.)
WSGUARD_DETAIL_HOT inline bool base64url_decode_public(std::string_view text, std::uint8_t* out, std::size_t out_capacity,
                                                       std::size_t& out_size) noexcept {
    out_size = 0;
    const char* const in = text.data();
    const std::size_t n = text.size();
    if (n % 4 == 1 || base64url_max_decoded_size(n) > out_capacity) return false;  // 1 mod 4: no encoding
    const std::uint8_t* table = base64url_lookup.value;
    std::size_t o = 0;
    std::size_t i = 0;
    for (; i + 4 <= n; i += 4) {
        const std::uint32_t a = table[static_cast<unsigned char>(in[i])];
        const std::uint32_t b = table[static_cast<unsigned char>(in[i + 1])];
        const std::uint32_t c = table[static_cast<unsigned char>(in[i + 2])];
        const std::uint32_t d = table[static_cast<unsigned char>(in[i + 3])];
        if ((a | b | c | d) > 63) return false;
        const std::uint32_t v = (a << 18) | (b << 12) | (c << 6) | d;
        out[o++] = static_cast<std::uint8_t>(v >> 16);
        out[o++] = static_cast<std::uint8_t>(v >> 8);
        out[o++] = static_cast<std::uint8_t>(v);
    }
    const std::size_t rest = n - i;  // 0, 2 or 3
    if (rest != 0) {
        const std::uint32_t a = table[static_cast<unsigned char>(in[i])];
        const std::uint32_t b = table[static_cast<unsigned char>(in[i + 1])];
        const std::uint32_t c = rest == 3 ? table[static_cast<unsigned char>(in[i + 2])] : 0;
        if ((a | b | c) > 63) return false;
        const std::uint32_t v = (a << 18) | (b << 12) | (c << 6);
        // Canonical: the bits below the last whole byte must be zero.
        if ((rest == 2 ? (v & 0xFFFFu) : (v & 0xFFu)) != 0) return false;
        out[o++] = static_cast<std::uint8_t>(v >> 16);
        if (rest == 3) out[o++] = static_cast<std::uint8_t>(v >> 8);
    }
    out_size = o;
    return true;
}

}  // namespace detail

// ---------------------------------------------------------------------------
// base64url: out-of-line bodies
// ---------------------------------------------------------------------------
inline std::size_t base64url_encode(const std::uint8_t* in, std::size_t size, char* out,
                                    std::size_t out_capacity) noexcept {
    const std::size_t needed = base64url_encoded_size(size);
    if (needed > out_capacity) return 0;
    std::size_t o = 0;
    std::size_t i = 0;
    for (; i + 3 <= size; i += 3) {
        const std::uint32_t v = (std::uint32_t{in[i]} << 16) | (std::uint32_t{in[i + 1]} << 8) | in[i + 2];
        out[o++] = detail::base64url_char(v >> 18);
        out[o++] = detail::base64url_char(v >> 12);
        out[o++] = detail::base64url_char(v >> 6);
        out[o++] = detail::base64url_char(v);
    }
    if (size - i == 1) {
        const std::uint32_t v = std::uint32_t{in[i]} << 16;
        out[o++] = detail::base64url_char(v >> 18);
        out[o++] = detail::base64url_char(v >> 12);
    } else if (size - i == 2) {
        const std::uint32_t v = (std::uint32_t{in[i]} << 16) | (std::uint32_t{in[i + 1]} << 8);
        out[o++] = detail::base64url_char(v >> 18);
        out[o++] = detail::base64url_char(v >> 12);
        out[o++] = detail::base64url_char(v >> 6);
    }
    return o;
}

inline bool base64url_decode(std::string_view in, std::uint8_t* out, std::size_t out_capacity,
                             std::size_t& out_size) noexcept {
    out_size = 0;
    const std::size_t n = in.size();
    if (n % 4 == 1) return false;
    const std::size_t decoded = base64url_max_decoded_size(n);
    if (decoded > out_capacity) return false;
    std::uint32_t characters = 0;  // bit 8 set by any character outside the alphabet
    std::uint32_t unused_bits = 0;  // must stay zero for the encoding to be canonical
    std::size_t o = 0;
    std::size_t i = 0;
    for (; i + 4 <= n; i += 4) {
        const std::uint32_t a = detail::base64url_value(static_cast<unsigned char>(in[i]));
        const std::uint32_t b = detail::base64url_value(static_cast<unsigned char>(in[i + 1]));
        const std::uint32_t c = detail::base64url_value(static_cast<unsigned char>(in[i + 2]));
        const std::uint32_t d = detail::base64url_value(static_cast<unsigned char>(in[i + 3]));
        characters |= a | b | c | d;
        const std::uint32_t v = (a << 18) | (b << 12) | (c << 6) | d;
        out[o++] = static_cast<std::uint8_t>(v >> 16);
        out[o++] = static_cast<std::uint8_t>(v >> 8);
        out[o++] = static_cast<std::uint8_t>(v);
    }
    const std::size_t rest = n - i;  // 0, 2 or 3
    if (rest != 0) {
        const std::uint32_t a = detail::base64url_value(static_cast<unsigned char>(in[i]));
        const std::uint32_t b = detail::base64url_value(static_cast<unsigned char>(in[i + 1]));
        const std::uint32_t c = rest == 3 ? detail::base64url_value(static_cast<unsigned char>(in[i + 2])) : 0;
        characters |= a | b | c;
        const std::uint32_t v = (a << 18) | (b << 12) | (c << 6);
        out[o++] = static_cast<std::uint8_t>(v >> 16);
        if (rest == 3) out[o++] = static_cast<std::uint8_t>(v >> 8);
        // Canonical: the bits below the last whole byte must be zero.
        unused_bits = rest == 2 ? (v & 0xFFFFu) : (v & 0xFFu);
    }
    if ((characters & 0x100u) != 0 || unused_bits != 0) {
        detail::crypto_wipe(out, o);
        return false;
    }
    out_size = o;
    return true;
}

// ===========================================================================
// detail, fenced: the SIMD SHA-256 compressions (SHA-NI, ARMv8 SHA2) and the
// choice between them. Everything above reaches them only through
// sha256_active_compress() and the sha256_backend_access hook; with
// WSGUARD_NO_SIMD only the portable compression remains.
// ===========================================================================
}  // inline namespace WSGUARD_ABI_NS
}  // namespace wsguard

// Which SHA-256 compressions are compiled. Each SIMD path is compiled with a
// target attribute (no -msha needed) and only ever called after a CPU check.
#if !WSGUARD_NO_SIMD && (defined(__x86_64__) || defined(_M_X64)) && \
    (defined(__GNUC__) || defined(__clang__) || defined(_MSC_VER))
#define WSGUARD_DETAIL_SHA256_SHANI 1
#else
#define WSGUARD_DETAIL_SHA256_SHANI 0
#endif

// Clang before 16 only declares the ARMv8 SHA2 intrinsics when the whole
// translation unit targets them; GCC and newer Clang accept a target attribute.
#if !WSGUARD_NO_SIMD && defined(__aarch64__) &&                                                      \
    (defined(__ARM_FEATURE_SHA2) || defined(__ARM_FEATURE_CRYPTO) ||                                  \
     (defined(__GNUC__) && !defined(__clang__)) || (defined(__clang__) && __clang_major__ >= 16))
#define WSGUARD_DETAIL_SHA256_ARMV8 1
#else
#define WSGUARD_DETAIL_SHA256_ARMV8 0
#endif

#if WSGUARD_DETAIL_SHA256_SHANI
#include <immintrin.h>
#if defined(_MSC_VER) && !defined(__clang__)
#include <intrin.h>
#define WSGUARD_DETAIL_TARGET_SHANI
#else
#include <cpuid.h>
#define WSGUARD_DETAIL_TARGET_SHANI __attribute__((target("sha,sse4.1")))
#endif
// For the per-block helpers: the compression stays one straight-line function
// with no calls (GCC -O2 would otherwise call a block, passing the state through
// memory), which is what the constant-time job checks.
#if defined(__GNUC__) || defined(__clang__)
#define WSGUARD_DETAIL_SHANI_INLINE __attribute__((always_inline)) inline
#else
#define WSGUARD_DETAIL_SHANI_INLINE inline
#endif
#endif

#if WSGUARD_DETAIL_SHA256_ARMV8
#include <arm_neon.h>
#if defined(__ARM_FEATURE_SHA2) || defined(__ARM_FEATURE_CRYPTO)
#define WSGUARD_DETAIL_TARGET_ARMV8
#elif defined(__clang__)
#define WSGUARD_DETAIL_TARGET_ARMV8 __attribute__((target("sha2")))
#else
// GCC 12 declares the SHA2 intrinsics under "+crypto" (SHA2 and AES), later GCC under "+sha2".
#define WSGUARD_DETAIL_TARGET_ARMV8 __attribute__((target("+crypto")))
#endif
#if defined(__linux__) && !(defined(__ARM_FEATURE_SHA2) || defined(__ARM_FEATURE_CRYPTO))
#include <sys/auxv.h>
#endif
// As WSGUARD_DETAIL_SHANI_INLINE: one block's code in each caller, no call.
#if defined(__GNUC__) || defined(__clang__)
#define WSGUARD_DETAIL_ARMV8_INLINE __attribute__((always_inline)) inline
#else
#define WSGUARD_DETAIL_ARMV8_INLINE inline
#endif
#endif

namespace wsguard {
inline namespace WSGUARD_ABI_NS {

namespace detail {

enum class sha256_backend : std::uint8_t { portable, x86_shani, armv8_sha2 };

constexpr const char* sha256_backend_name(sha256_backend b) noexcept {
    switch (b) {
        case sha256_backend::portable: return "portable";
        case sha256_backend::x86_shani: return "x86_shani";
        case sha256_backend::armv8_sha2: return "armv8_sha2";
    }
    return "unknown";
}

// ---------------------------------------------------------------------------
// detail, x86-64 backend: the SHA-NI compression
// Why it is here: the one second implementation on the secret path that moves
// a number users feel. A ticketed handshake_guard::check (bench_handshake_check,
// medians of CPU time on a shared 2-vCPU EPYC) took 1.8 us with it and 2.8 us
// with the portable compression: it saves about a third of the check. Nothing
// else in it is fused or special-cased (issue 13: a fused HMAC finish saved
// about 3% of the check, so HMAC runs on plain compress() calls everywhere;
// docs/performance.md, "What the secret path keeps").
// Checked in CI by structure, as valgrind cannot run it (.ci/jobs/45).
// ---------------------------------------------------------------------------
#if WSGUARD_DETAIL_SHA256_SHANI
// Four rounds with message words w (already in SHA-NI lane order) and round constants k.
WSGUARD_DETAIL_TARGET_SHANI WSGUARD_DETAIL_SHANI_INLINE
void sha256_shani_rounds4(__m128i& abef, __m128i& cdgh, __m128i w, const std::uint32_t* k) noexcept {
    __m128i wk = _mm_add_epi32(w, _mm_loadu_si128(reinterpret_cast<const __m128i*>(k)));
    cdgh = _mm_sha256rnds2_epu32(cdgh, abef, wk);
    wk = _mm_shuffle_epi32(wk, 0x0E);
    abef = _mm_sha256rnds2_epu32(abef, cdgh, wk);
}

// Completes the next four message words: next + sigma-free part + sigma1(current).
WSGUARD_DETAIL_TARGET_SHANI WSGUARD_DETAIL_SHANI_INLINE
__m128i sha256_shani_schedule(__m128i next, __m128i current, __m128i previous) noexcept {
    return _mm_sha256msg2_epu32(_mm_add_epi32(next, _mm_alignr_epi8(current, previous, 4)), current);
}

// The byte order of SHA-256 message words (big-endian) within each 32-bit lane.
WSGUARD_DETAIL_TARGET_SHANI WSGUARD_DETAIL_SHANI_INLINE
__m128i sha256_shani_byte_swap() noexcept {
    return _mm_set_epi64x(0x0c0d0e0f08090a0bLL, 0x0405060700010203LL);
}

// The instructions want the state as ABEF and CDGH.
WSGUARD_DETAIL_TARGET_SHANI WSGUARD_DETAIL_SHANI_INLINE
void sha256_shani_load_state(const std::uint32_t* state, __m128i& abef, __m128i& cdgh) noexcept {
    const __m128i tmp = _mm_shuffle_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(state)), 0xB1);  // CDAB
    cdgh = _mm_shuffle_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(state + 4)), 0x1B);         // EFGH
    abef = _mm_alignr_epi8(tmp, cdgh, 8);
    cdgh = _mm_blend_epi16(cdgh, tmp, 0xF0);
}

// Back from ABEF and CDGH to the state words in order: abcd holds A B C D, efgh E F G H.
WSGUARD_DETAIL_TARGET_SHANI WSGUARD_DETAIL_SHANI_INLINE
void sha256_shani_state_words(__m128i abef, __m128i cdgh, __m128i& abcd, __m128i& efgh) noexcept {
    const __m128i feba = _mm_shuffle_epi32(abef, 0x1B);
    const __m128i dchg = _mm_shuffle_epi32(cdgh, 0xB1);
    abcd = _mm_blend_epi16(feba, dchg, 0xF0);
    efgh = _mm_alignr_epi8(dchg, feba, 8);
}

// One 64-byte block on a state held in registers; w0..w3 are its sixteen
// message words (already in lane order). constant-time: fixed instruction sequence.
WSGUARD_DETAIL_TARGET_SHANI WSGUARD_DETAIL_SHANI_INLINE
void sha256_shani_block(__m128i& abef, __m128i& cdgh, __m128i w0, __m128i w1, __m128i w2, __m128i w3) noexcept {
    const std::uint32_t* k = sha256_round_constants;
    const __m128i abef_before = abef;
    const __m128i cdgh_before = cdgh;
    sha256_shani_rounds4(abef, cdgh, w0, k + 0);
    sha256_shani_rounds4(abef, cdgh, w1, k + 4);
    w0 = _mm_sha256msg1_epu32(w0, w1);
    sha256_shani_rounds4(abef, cdgh, w2, k + 8);
    w1 = _mm_sha256msg1_epu32(w1, w2);
    sha256_shani_rounds4(abef, cdgh, w3, k + 12);
    w0 = sha256_shani_schedule(w0, w3, w2);
    w2 = _mm_sha256msg1_epu32(w2, w3);
    // Rounds 16-47: the same four steps twice, the message words rotating
    // (written out: GCC -O2 would keep a loop here).
    sha256_shani_rounds4(abef, cdgh, w0, k + 16);
    w1 = sha256_shani_schedule(w1, w0, w3);
    w3 = _mm_sha256msg1_epu32(w3, w0);
    sha256_shani_rounds4(abef, cdgh, w1, k + 20);
    w2 = sha256_shani_schedule(w2, w1, w0);
    w0 = _mm_sha256msg1_epu32(w0, w1);
    sha256_shani_rounds4(abef, cdgh, w2, k + 24);
    w3 = sha256_shani_schedule(w3, w2, w1);
    w1 = _mm_sha256msg1_epu32(w1, w2);
    sha256_shani_rounds4(abef, cdgh, w3, k + 28);
    w0 = sha256_shani_schedule(w0, w3, w2);
    w2 = _mm_sha256msg1_epu32(w2, w3);
    sha256_shani_rounds4(abef, cdgh, w0, k + 32);
    w1 = sha256_shani_schedule(w1, w0, w3);
    w3 = _mm_sha256msg1_epu32(w3, w0);
    sha256_shani_rounds4(abef, cdgh, w1, k + 36);
    w2 = sha256_shani_schedule(w2, w1, w0);
    w0 = _mm_sha256msg1_epu32(w0, w1);
    sha256_shani_rounds4(abef, cdgh, w2, k + 40);
    w3 = sha256_shani_schedule(w3, w2, w1);
    w1 = _mm_sha256msg1_epu32(w1, w2);
    sha256_shani_rounds4(abef, cdgh, w3, k + 44);
    w0 = sha256_shani_schedule(w0, w3, w2);
    w2 = _mm_sha256msg1_epu32(w2, w3);
    sha256_shani_rounds4(abef, cdgh, w0, k + 48);
    w1 = sha256_shani_schedule(w1, w0, w3);
    w3 = _mm_sha256msg1_epu32(w3, w0);
    sha256_shani_rounds4(abef, cdgh, w1, k + 52);
    w2 = sha256_shani_schedule(w2, w1, w0);
    sha256_shani_rounds4(abef, cdgh, w2, k + 56);
    w3 = sha256_shani_schedule(w3, w2, w1);
    sha256_shani_rounds4(abef, cdgh, w3, k + 60);

    abef = _mm_add_epi32(abef, abef_before);
    cdgh = _mm_add_epi32(cdgh, cdgh_before);
}

// Sixteen message words from 64 bytes of input.
WSGUARD_DETAIL_TARGET_SHANI WSGUARD_DETAIL_SHANI_INLINE
void sha256_shani_block_from(__m128i& abef, __m128i& cdgh, const std::uint8_t* block) noexcept {
    const __m128i byte_swap = sha256_shani_byte_swap();
    const __m128i w0 = _mm_shuffle_epi8(_mm_loadu_si128(reinterpret_cast<const __m128i*>(block)), byte_swap);
    const __m128i w1 = _mm_shuffle_epi8(_mm_loadu_si128(reinterpret_cast<const __m128i*>(block + 16)), byte_swap);
    const __m128i w2 = _mm_shuffle_epi8(_mm_loadu_si128(reinterpret_cast<const __m128i*>(block + 32)), byte_swap);
    const __m128i w3 = _mm_shuffle_epi8(_mm_loadu_si128(reinterpret_cast<const __m128i*>(block + 48)), byte_swap);
    sha256_shani_block(abef, cdgh, w0, w1, w2, w3);
}

// constant-time: fixed instruction sequence per block.
WSGUARD_DETAIL_TARGET_SHANI WSGUARD_DETAIL_HOT inline void sha256_compress_shani(std::uint32_t* state, const std::uint8_t* blocks,
                                                                                 std::size_t count) noexcept {
    __m128i abef, cdgh;
    sha256_shani_load_state(state, abef, cdgh);
    for (std::size_t block = 0; block < count; ++block, blocks += 64) sha256_shani_block_from(abef, cdgh, blocks);
    __m128i abcd, efgh;
    sha256_shani_state_words(abef, cdgh, abcd, efgh);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(state), abcd);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(state + 4), efgh);
}

inline bool sha256_cpu_has_shani() noexcept {
    // SHA (leaf 7 EBX bit 29) plus the SSSE3/SSE4.1 shuffles and blends the path uses.
#if defined(_MSC_VER) && !defined(__clang__)
    int regs[4];
    __cpuid(regs, 0);
    if (regs[0] < 7) return false;
    __cpuid(regs, 1);
    const unsigned ecx1 = static_cast<unsigned>(regs[2]);
    __cpuidex(regs, 7, 0);
    const unsigned ebx7 = static_cast<unsigned>(regs[1]);
#else
    unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
    if (__get_cpuid_max(0, nullptr) < 7) return false;
    __cpuid_count(1, 0, eax, ebx, ecx, edx);
    const unsigned ecx1 = ecx;
    __cpuid_count(7, 0, eax, ebx, ecx, edx);
    const unsigned ebx7 = ebx;
#endif
    const bool ssse3 = (ecx1 >> 9) & 1u;
    const bool sse41 = (ecx1 >> 19) & 1u;
    const bool sha = (ebx7 >> 29) & 1u;
    return ssse3 && sse41 && sha;
}
#endif  // WSGUARD_DETAIL_SHA256_SHANI

// ---------------------------------------------------------------------------
// detail, aarch64 backend: the ARMv8 SHA2 compression
// Why it is here: the same role as SHA-NI on x86-64 (the compression is most of
// a ticketed check's time; SHA2 instructions replace about 2,000 scalar
// operations per block). Measured only under qemu here (.ci/jobs/46 checks it
// against the same vectors), not on ARM hardware.
// ---------------------------------------------------------------------------
#if WSGUARD_DETAIL_SHA256_ARMV8
// Four rounds with message words `current`, then `current` becomes the words
// four groups ahead (computed from it and the next three groups).
WSGUARD_DETAIL_TARGET_ARMV8 inline void sha256_armv8_rounds4(uint32x4_t& abcd, uint32x4_t& efgh, uint32x4_t& current,
                                                             uint32x4_t next1, uint32x4_t next2, uint32x4_t next3,
                                                             const std::uint32_t* k, bool schedule) noexcept {
    const uint32x4_t wk = vaddq_u32(current, vld1q_u32(k));
    if (schedule) current = vsha256su1q_u32(vsha256su0q_u32(current, next1), next2, next3);
    const uint32x4_t abcd_before = abcd;
    abcd = vsha256hq_u32(abcd, efgh, wk);
    efgh = vsha256h2q_u32(efgh, abcd_before, wk);
}

// One 64-byte block on a state held in registers (A B C D and E F G H); w0..w3
// are its sixteen message words. constant-time: fixed instruction sequence.
WSGUARD_DETAIL_TARGET_ARMV8 WSGUARD_DETAIL_ARMV8_INLINE
void sha256_armv8_block(uint32x4_t& abcd, uint32x4_t& efgh, uint32x4_t w0, uint32x4_t w1, uint32x4_t w2,
                        uint32x4_t w3) noexcept {
    const std::uint32_t* k = sha256_round_constants;
    const uint32x4_t abcd_before = abcd;
    const uint32x4_t efgh_before = efgh;
    // Rounds 0-47 schedule the words of rounds 16-63; rounds 48-63 only consume.
    for (int i = 0; i < 64; i += 16) {
        const bool schedule = i < 48;
        sha256_armv8_rounds4(abcd, efgh, w0, w1, w2, w3, k + i, schedule);
        sha256_armv8_rounds4(abcd, efgh, w1, w2, w3, w0, k + i + 4, schedule);
        sha256_armv8_rounds4(abcd, efgh, w2, w3, w0, w1, k + i + 8, schedule);
        sha256_armv8_rounds4(abcd, efgh, w3, w0, w1, w2, k + i + 12, schedule);
    }
    abcd = vaddq_u32(abcd, abcd_before);
    efgh = vaddq_u32(efgh, efgh_before);
}

// Sixteen message words (big-endian) from 64 bytes of input.
WSGUARD_DETAIL_TARGET_ARMV8 WSGUARD_DETAIL_ARMV8_INLINE
void sha256_armv8_block_from(uint32x4_t& abcd, uint32x4_t& efgh, const std::uint8_t* block) noexcept {
    sha256_armv8_block(abcd, efgh, vreinterpretq_u32_u8(vrev32q_u8(vld1q_u8(block))),
                       vreinterpretq_u32_u8(vrev32q_u8(vld1q_u8(block + 16))),
                       vreinterpretq_u32_u8(vrev32q_u8(vld1q_u8(block + 32))),
                       vreinterpretq_u32_u8(vrev32q_u8(vld1q_u8(block + 48))));
}

// constant-time: fixed instruction sequence per block.
WSGUARD_DETAIL_TARGET_ARMV8 WSGUARD_DETAIL_HOT inline void sha256_compress_armv8(std::uint32_t* state, const std::uint8_t* blocks,
                                                                                 std::size_t count) noexcept {
    uint32x4_t abcd = vld1q_u32(state);
    uint32x4_t efgh = vld1q_u32(state + 4);
    for (std::size_t block = 0; block < count; ++block, blocks += 64) sha256_armv8_block_from(abcd, efgh, blocks);
    vst1q_u32(state, abcd);
    vst1q_u32(state + 4, efgh);
}

inline bool sha256_cpu_has_armv8_sha2() noexcept {
#if defined(__ARM_FEATURE_SHA2) || defined(__ARM_FEATURE_CRYPTO)
    return true;  // the whole program is compiled for a CPU that has it
#elif defined(__linux__)
    const unsigned long hwcap_sha2 = 1ul << 6;  // HWCAP_SHA2 in the kernel's <asm/hwcap.h> for arm64
    return (getauxval(AT_HWCAP) & hwcap_sha2) != 0;
#else
    return false;
#endif
}
#endif  // WSGUARD_DETAIL_SHA256_ARMV8

// Whether this build and this CPU can run a backend.
inline bool sha256_backend_available(sha256_backend b) noexcept {
    switch (b) {
        case sha256_backend::portable: return true;
        case sha256_backend::x86_shani:
#if WSGUARD_DETAIL_SHA256_SHANI
        {
            static const bool has = sha256_cpu_has_shani();
            return has;
        }
#else
            return false;
#endif
        case sha256_backend::armv8_sha2:
#if WSGUARD_DETAIL_SHA256_ARMV8
        {
            static const bool has = sha256_cpu_has_armv8_sha2();
            return has;
        }
#else
            return false;
#endif
    }
    return false;
}

// The compression for a backend; a backend this CPU lacks gets the portable
// code (never an illegal instruction).
inline sha256_compress_fn sha256_compress_for(sha256_backend b) noexcept {
#if WSGUARD_DETAIL_SHA256_SHANI
    if (b == sha256_backend::x86_shani && sha256_backend_available(b)) return &sha256_compress_shani;
#endif
#if WSGUARD_DETAIL_SHA256_ARMV8
    if (b == sha256_backend::armv8_sha2 && sha256_backend_available(b)) return &sha256_compress_armv8;
#endif
    static_cast<void>(b);
    return &sha256_compress_portable;
}

// Every backend this build and CPU can run, portable first (for tests and benchmarks).
inline std::vector<sha256_backend> available_backends() {
    std::vector<sha256_backend> out;
    for (sha256_backend b : {sha256_backend::portable, sha256_backend::x86_shani, sha256_backend::armv8_sha2}) {
        if (sha256_backend_available(b)) out.push_back(b);
    }
    return out;
}

// The fastest backend, chosen once (a function-local static is initialised
// exactly once even when threads race to it).
inline sha256_backend sha256_active_backend() noexcept {
    static const sha256_backend chosen = sha256_backend_available(sha256_backend::x86_shani)    ? sha256_backend::x86_shani
                                         : sha256_backend_available(sha256_backend::armv8_sha2) ? sha256_backend::armv8_sha2
                                                                                                : sha256_backend::portable;
    return chosen;
}

inline sha256_compress_fn sha256_active_compress() noexcept {
    static const sha256_compress_fn chosen = sha256_compress_for(sha256_active_backend());
    return chosen;
}

}  // namespace detail

namespace detail {
// One compression backend forced (tests, benchmarks, the constant-time job);
// a backend this CPU lacks runs the portable code. Not a public constructor:
// users get the fastest backend the CPU has.
struct sha256_backend_access {
    static sha256_hasher hasher(sha256_backend backend) noexcept { return sha256_hasher(sha256_compress_for(backend)); }
    static hmac_sha256_key key(const std::uint8_t* key, std::size_t size, sha256_backend backend) noexcept {
        return hmac_sha256_key(key, size, sha256_compress_for(backend));
    }
};
inline sha256_hasher sha256_hasher_for(sha256_backend backend) noexcept { return sha256_backend_access::hasher(backend); }
inline hmac_sha256_key hmac_sha256_key_for(sha256_backend backend, const std::uint8_t* key, std::size_t size) noexcept {
    return sha256_backend_access::key(key, size, backend);
}
}  // namespace detail

}  // inline namespace WSGUARD_ABI_NS
}  // namespace wsguard

// ===========================================================================
// 8. Tickets: keyring, issuer, verifier, replay store, transport helpers
// ===========================================================================
//
// keyring              HMAC keys by id: one issues, older ones keep verifying.
// ticket_claims        what a verified ticket says; require_scope checks one.
// ticket_issuer        mints a ticket for the authenticated POST (issue()).
// memory_replay_store  the default ReplayStore: spent nonces, one process.
// ticket_verifier      checks a presented ticket, cheapest first, and spends it.
// ticket_from_subprotocol, ticket_from_query  where the browser puts a ticket.
// first_message_gate   the ticket as the first message, for stacks that need it.
//
// The browser WebSocket API cannot send an Authorization header. The page
// fetches a ticket with an authenticated HTTP POST, presents it once in the
// upgrade request (Sec-WebSocket-Protocol or a query parameter), and the server
// verifies it before answering 101. A ticket is short-lived, works once, and is
// bound to the origin it was issued for and to one endpoint (audience).
//
// Wire format: base64url without padding (valid in a query string and as a
// Sec-WebSocket-Protocol token) of
//   version u8 = 1 | key id u32 | issued_at i64 | expires_at i64 | nonce 16 bytes
//   | subject u8-len | origin u16-len | audience u16-len | scope count u8,
//     each scope u8-len | HMAC-SHA256 32 bytes
// Integers big-endian; times in milliseconds since the Unix epoch (wall clock:
// tickets cross machines). The MAC covers one 64-byte block, "wsguard-ticket-v1"
// zero-padded (domain separation), then every ticket byte before the MAC. The
// block is absorbed once per key, at construction, so it costs nothing per ticket.

namespace wsguard {
inline namespace WSGUARD_ABI_NS {

template <class ReplayStore>
class ticket_verifier;
class ticket_issuer;

// The 128-bit random nonce that makes a ticket one-time. Replay stores key on
// these decoded bytes, never on the ticket string.
using ticket_nonce = std::array<std::uint8_t, 16>;

// Field caps, checked when issuing (ticket_field_too_long) and when parsing.
struct ticket_limits {
    static constexpr std::size_t max_subject = 128;
    static constexpr std::size_t max_origin = 256;
    static constexpr std::size_t max_audience = 256;
    static constexpr std::size_t max_scopes = 8;
    static constexpr std::size_t max_scope = 32;
    // Largest decoded ticket and its base64url length: longer input is refused
    // (ticket_too_long) before it is decoded.
    static constexpr std::size_t max_bytes = 37 + (1 + max_subject) + (2 + max_origin) + (2 + max_audience) +
                                             1 + max_scopes * (1 + max_scope) + 32;
    static constexpr std::size_t max_chars = (max_bytes / 3) * 4 + (max_bytes % 3 == 0 ? 0 : max_bytes % 3 + 1);
};

// ---------------------------------------------------------------------------
// Storage the public classes hold by value, so it is complete before them: a
// keyring's precomputed keys and the replay store's slots and lock. The wire
// format's helpers and the MAC live with the other internals, below.
// ---------------------------------------------------------------------------
namespace detail {

struct ticket_key_entry {
    std::uint32_t id;
    hmac_sha256_key::stream after_domain;  // HMAC state with the domain block absorbed
    std::chrono::system_clock::time_point verify_until;  // max(): no end
};

// Defined with the internals below; ticket_claims reports its times with it.
inline std::chrono::system_clock::time_point ticket_time_point(std::int64_t unix_ms) noexcept;

// A ticket's first characters, decoded by handshake_guard (defined with the internals below).
struct ticket_head;

struct replay_slot {
    std::uint64_t low = 0;
    std::uint64_t high = 0;
    std::int64_t expires_ms = 0;  // 0: never used (ends a probe); <= now: expired, reusable
};

// The replay store's lock: the spin lock (section 2), as the limiters'. Its
// critical section is a probe of a few slots, and a check inside a server
// starts with an empty TLB (docs/performance.md): a pthread mutex would add
// two more code pages to each check, for nothing a short section needs.
using replay_lock = spinlock;

}  // namespace detail

// ---------------------------------------------------------------------------
// keyring: HMAC keys by id. One key issues; older keys keep verifying until
// their verify_until, so tickets issued just before a rotation still work.
// ---------------------------------------------------------------------------
// Every member has a default initializer, so {{id, secret}} compiles without
// -Wmissing-field-initializers (g++ and clang++ warn on an omitted member that
// has none, even a std::optional).
struct keyring_key {
    std::uint32_t id = 0;
    std::string_view secret = {};  // raw bytes, at least 32 (e.g. 32 bytes from a CSPRNG)
    // When set, the key stops verifying at this time (ticket_unknown_key after).
    // Rotating: keep the old key with verify_until = now + the longest ticket lifetime.
    std::optional<std::chrono::system_clock::time_point> verify_until = std::nullopt;
};

class keyring {
public:
    static constexpr std::size_t max_keys = 16;
    static constexpr std::size_t min_secret_size = 32;

    static result<keyring> create(std::uint32_t issuing_key_id, std::initializer_list<keyring_key> keys) {
        return create(issuing_key_id, keys.begin(), keys.size());
    }

    static result<keyring> create(std::uint32_t issuing_key_id, const keyring_key* keys, std::size_t count);

    std::uint32_t issuing_key_id() const noexcept { return issuing_key_id_; }
    std::size_t size() const noexcept { return keys_.size(); }

    // True when a ticket under key `id` verifies at `now`.
    bool verifies(std::uint32_t id, std::chrono::system_clock::time_point now) const noexcept {
        return verifying_key(id, now) != nullptr;
    }

private:
    friend class ticket_issuer;
    template <class ReplayStore>
    friend class ticket_verifier;

    keyring() = default;

    // The precomputed key for issuing / for a ticket's key id.
    const hmac_sha256_key::stream& issuing_key() const noexcept;
    const hmac_sha256_key::stream* verifying_key(std::uint32_t id,
                                                 std::chrono::system_clock::time_point now) const noexcept;

    std::uint32_t issuing_key_id_ = 0;
    std::vector<detail::ticket_key_entry> keys_;  // at most max_keys, filled at construction
};

// ---------------------------------------------------------------------------
// ticket_claims: what a verified ticket says. Fixed capacity, no allocation.
// ---------------------------------------------------------------------------
class ticket_claims {
public:
    std::string_view subject() const noexcept { return std::string_view(subject_.data(), subject_size_); }
    std::size_t scope_count() const noexcept { return scope_count_; }
    std::string_view scope(std::size_t i) const noexcept {
        return i < scope_count_ ? std::string_view(scopes_[i].data(), scope_sizes_[i]) : std::string_view();
    }
    bool has_scope(std::string_view wanted) const noexcept {
        for (std::size_t i = 0; i < scope_count_; ++i) {
            if (scope(i) == wanted) return true;
        }
        return false;
    }
    std::chrono::system_clock::time_point issued_at() const noexcept { return detail::ticket_time_point(issued_ms_); }
    // The lifetime end the verifier applied (the ticket's, cut to the verifier's max_ttl).
    std::chrono::system_clock::time_point expires_at() const noexcept { return detail::ticket_time_point(expires_ms_); }
    std::uint32_t key_id() const noexcept { return key_id_; }
    const ticket_nonce& nonce() const noexcept { return nonce_; }

    // Empties the claims (cheaply: only the sizes and times are reset).
    void clear() noexcept {
        subject_size_ = 0;
        scope_count_ = 0;
        key_id_ = 0;
        issued_ms_ = 0;
        expires_ms_ = 0;
        nonce_ = ticket_nonce{};
    }

private:
    template <class ReplayStore>
    friend class ticket_verifier;

    // Filled by ticket_verifier only, from authenticated bytes within the caps.
    void set_subject(std::string_view s) noexcept {
        subject_size_ = static_cast<std::uint8_t>(s.size());
        std::memcpy(subject_.data(), s.data(), s.size());
    }
    void add_scope(std::string_view s) noexcept {
        scope_sizes_[scope_count_] = static_cast<std::uint8_t>(s.size());
        std::memcpy(scopes_[scope_count_].data(), s.data(), s.size());
        ++scope_count_;
    }
    void set_header(std::uint32_t key_id, std::int64_t issued_ms, std::int64_t expires_ms,
                    const ticket_nonce& nonce) noexcept {
        key_id_ = key_id;
        issued_ms_ = issued_ms;
        expires_ms_ = expires_ms;
        nonce_ = nonce;
    }

    std::array<char, ticket_limits::max_subject> subject_{};
    std::array<std::array<char, ticket_limits::max_scope>, ticket_limits::max_scopes> scopes_{};
    std::array<std::uint8_t, ticket_limits::max_scopes> scope_sizes_{};
    std::uint8_t subject_size_ = 0;
    std::uint8_t scope_count_ = 0;
    std::uint32_t key_id_ = 0;
    std::int64_t issued_ms_ = 0;
    std::int64_t expires_ms_ = 0;
    ticket_nonce nonce_{};
};

// Authorizes one action (e.g. each later message) by scope.
inline decision require_scope(const ticket_claims& claims, std::string_view scope) noexcept {
    return claims.has_scope(scope) ? decision::allow() : decision::deny(reason::ticket_scope_missing);
}

// ---------------------------------------------------------------------------
// ticket_issuer: answers the authenticated HTTP POST that fetches a ticket.
// ---------------------------------------------------------------------------
struct ticket_issuer_options {
    std::chrono::seconds default_ttl{30};
    std::chrono::seconds max_ttl{120};  // a request's ttl is cut to this
};

struct ticket_request {
    std::string_view subject = {};  // who (user id); any bytes, at most 128
    std::string_view origin = {};   // the page's Origin, e.g. "https://app.example.com"; empty for non-browser clients
    std::string_view audience = {}; // the endpoint, e.g. "api.example.com/chat"; the verifier must pass the same
    std::string_view scopes = {};   // space-separated, at most 8 of at most 32 bytes: "chat:read chat:write"
    std::chrono::seconds ttl{0};  // 0: the issuer's default_ttl; cut to max_ttl
};

WSGUARD_DETAIL_SET_DEPRECATED_BEGIN  // quiet implicit members: see the macro
struct [[nodiscard]] issued_ticket {
    wsguard::decision decision;  // ok, ticket_field_too_long, random_unavailable or internal_error
    std::string ticket;          // empty unless decision allows
    std::chrono::system_clock::time_point expires_at{};
    explicit operator bool() const noexcept { return decision.allowed(); }
    // 0.1 spelling, set by the library alongside decision.
    [[deprecated("use issued_ticket::decision; removed in 0.3")]] wsguard::decision status{};
};
WSGUARD_DETAIL_SET_DEPRECATED_END

class ticket_issuer {
public:
    static result<ticket_issuer> create(keyring keys, ticket_issuer_options options = {});

    issued_ticket issue(const ticket_request& request) const { return issue(request, std::chrono::system_clock::now()); }

    issued_ticket issue(const ticket_request& request, std::chrono::system_clock::time_point now) const;

    const keyring& keys() const noexcept { return keys_; }
    const ticket_issuer_options& options() const noexcept { return options_; }

private:
    ticket_issuer(keyring keys, ticket_issuer_options options) : keys_(std::move(keys)), options_(options) {}
    static std::uint8_t* put(std::uint8_t* p, std::string_view s) noexcept {
        if (!s.empty()) std::memcpy(p, s.data(), s.size());
        return p + s.size();
    }
    static void settle(issued_ticket& out, wsguard::decision d) noexcept {
        out.decision = d;
        WSGUARD_DETAIL_SET_DEPRECATED_BEGIN
        out.status = d;
        WSGUARD_DETAIL_SET_DEPRECATED_END
    }
    keyring keys_;
    ticket_issuer_options options_;
};

// ---------------------------------------------------------------------------
// memory_replay_store: the default ReplayStore; one process, bounded, thread-safe.
//
// ReplayStore concept (what ticket_verifier calls; a shared store, e.g. Redis
// SET NX PX, implements the same two members):
//   wsguard::reason try_spend(const wsguard::ticket_nonce& nonce,
//                             std::chrono::system_clock::time_point expires_at,
//                             std::chrono::system_clock::time_point now) noexcept;
//       ok: first use, remembered until expires_at; ticket_replayed: already
//       spent; replay_store_full / store_unavailable: fail closed.
//   std::chrono::system_clock::time_point accepts_issued_after() const noexcept;
//       tickets issued before this are refused (ticket_before_store_start): a
//       fresh in-memory store does not know what the previous process spent, so
//       it returns its construction time; the verifier adds its clock_skew
//       (ticket_verifier::spendable_from).
// A store whose start can move while it runs (a shared store that detects that
// its backend lost data, e.g. redis_replay_store) implements instead of the
// three-argument try_spend:
//   wsguard::reason try_spend(const wsguard::ticket_nonce& nonce,
//                             std::chrono::system_clock::time_point issued_at,
//                             std::chrono::system_clock::time_point expires_at,
//                             std::chrono::system_clock::time_point now) noexcept;
//       as above, and ticket_before_store_start when issued_at is before the
//       store's start, decided atomically with the spend. The verifier calls
//       this form when it exists; accepts_issued_after() is then the start the
//       store last saw (a cheap early refusal, not the final word).
//
// Exact capacity: up to `capacity` unexpired nonces are always stored, and
// the next one is refused (replay_store_full) rather than a live one
// forgotten; size capacity >= peak tickets per second x the longest ticket
// lifetime (+ skew). Layout: one open-addressing array of 2 x capacity slots
// (24 bytes each) with linear probing over the whole array, behind one mutex,
// and a count of stored nonces checked before one is added: at most half the
// slots are in use, so a probe always ends at an empty slot (expected 2.5
// slots). Expired nonces are removed by backward-shift deletion (no
// tombstones): a few slots behind a moving cursor on every spend, and the
// whole array when the count reaches `capacity` while some stored nonce has
// expired (the earliest expiry is tracked, so a store full of live nonces
// refuses at once without a sweep). Creation is rounded up to the next whole
// millisecond: a ticket issued in the very millisecond of creation may have
// been spent by the previous process, so it is refused.
// ---------------------------------------------------------------------------
class memory_replay_store {
public:
    static constexpr std::size_t max_capacity = std::size_t(1) << 24;

    static result<memory_replay_store> create(std::size_t capacity) {
        return create(capacity, std::chrono::system_clock::now());
    }

    // `now`: the creation time; tickets issued before it, or in its
    // millisecond, are refused.
    static result<memory_replay_store> create(std::size_t capacity, std::chrono::system_clock::time_point now);

    reason try_spend(const ticket_nonce& nonce, std::chrono::system_clock::time_point expires_at,
                     std::chrono::system_clock::time_point now) noexcept;

    std::chrono::system_clock::time_point accepts_issued_after() const noexcept { return created_; }
    // Unexpired nonces always stored: exactly the capacity given to create().
    std::size_t capacity() const noexcept { return state_ ? state_->capacity : 0; }
    std::size_t slot_count() const noexcept { return state_ ? state_->slot_count : 0; }
    // Everything this store owns; constant from construction on.
    std::size_t memory_bytes() const noexcept {
        return sizeof(*this) + (state_ ? sizeof(state) + state_->slot_count * sizeof(detail::replay_slot) : 0);
    }

private:
    struct state {
        detail::replay_lock lock;
        // Zeroed, 2 MiB-aligned and offered huge pages when that large, as the
        // limiters' tables (section 3): a spend then costs one cache miss, not a
        // page walk as well.
        detail::limits_table<detail::replay_slot> slots;
        std::size_t capacity = 0;
        std::size_t slot_count = 0;
        std::size_t stored = 0;  // occupied slots, live or expired-not-yet-removed
        std::size_t cursor = 0;  // where reclaim_some looks next
        std::int64_t earliest_ms = std::numeric_limits<std::int64_t>::max();  // <= every stored expiry
        std::uint64_t seed_low = 0;
        std::uint64_t seed_high = 0;

        std::size_t home_of(std::uint64_t low, std::uint64_t high) const noexcept;
        std::size_t next(std::size_t i) const noexcept { return i + 1 == slot_count ? 0 : i + 1; }
        // Backward-shift deletion of the entry at `hole` (see connection_limiter).
        void erase(std::size_t hole) noexcept;
        bool expired_at(std::size_t i, std::int64_t now_ms) const noexcept {
            return slots[i].expires_ms != 0 && slots[i].expires_ms <= now_ms;
        }
        void reclaim_some(std::int64_t now_ms) noexcept;
        // Removes every expired nonce and recomputes the earliest expiry. An
        // entry moved by a deletion only moves to the slot being examined or
        // to one not yet reached (or, across the wrap, among slots already
        // kept), so every expired entry is seen once.
        void sweep(std::int64_t now_ms) noexcept;
    };

    memory_replay_store() = default;

    template <class>
    friend class ticket_verifier;
    // handshake_guard's hook, through ticket_verifier::spend_slot: the slot
    // where try_spend will start looking for `nonce` (public: the client holds
    // it), for the guard to prefetch while it computes the MAC. The seeds and
    // the table are fixed at creation, so finding it takes no lock.
    const detail::replay_slot* home_slot(const ticket_nonce& nonce) const noexcept;

    // On the heap so the store moves (the mutex does not).
    std::unique_ptr<state> state_;
    std::chrono::system_clock::time_point created_{};
};

// ---------------------------------------------------------------------------
// ticket_verifier: checks a presented ticket, cheapest first, and spends it.
// Holds a pointer to the store: the store must outlive every verifier using it
// (and not be moved while they do). Several verifiers (routes) may share one.
// ---------------------------------------------------------------------------

// verify's three strings, each its own type: swapping the origin and the
// audience (or passing either as the ticket) does not compile. Explicit from
// std::string_view, a view inside, nothing copied.
struct presented_ticket {
    constexpr presented_ticket() noexcept = default;  // empty
    constexpr explicit presented_ticket(std::string_view text) noexcept : value(text) {}
    std::string_view value{};  // as taken from the request (ticket_source)
};
struct expected_origin {
    constexpr expected_origin() noexcept = default;  // empty
    constexpr explicit expected_origin(std::string_view origin) noexcept : value(origin) {}
    std::string_view value{};  // the request's Origin header, empty when absent
};
struct expected_audience {
    constexpr expected_audience() noexcept = default;  // empty
    constexpr explicit expected_audience(std::string_view audience) noexcept : value(audience) {}
    std::string_view value{};  // this endpoint, as passed to the issuer
};

struct ticket_verifier_options {
    // A ticket claiming a longer lifetime is cut to this (keys shared with a
    // more generous issuer cannot widen this server's window).
    std::chrono::seconds max_ttl{120};
    // How far an issuer's clock may run ahead: a ticket issued later than
    // now + clock_skew is ticket_not_yet_valid. Expiry gets no such allowance.
    // The price: a ticket issued up to clock_skew after a memory_replay_store
    // was created may have been spent by the process before it, so it is
    // refused (ticket_before_store_start). An issuer in this same process
    // (same clock) needs 0: then nothing is refused after a start.
    std::chrono::seconds clock_skew{5};
};

template <class ReplayStore = memory_replay_store>
class ticket_verifier {
public:
    static result<ticket_verifier> create(keyring keys, ReplayStore& store, ticket_verifier_options options = {});

    // `origin`: the request's Origin header (empty when absent); `audience`:
    // this endpoint, as passed to the issuer. On ok, `claims` holds the ticket's
    // claims; otherwise it is cleared. Never allocates.
    decision verify(presented_ticket ticket, expected_origin origin, expected_audience audience,
                    ticket_claims& claims) const noexcept {
        return verify(ticket, origin, audience, claims, std::chrono::system_clock::now());
    }

    // Three adjacent strings: a swapped origin and audience compiled. Kept for one minor version.
    [[deprecated("use verify(presented_ticket, expected_origin, expected_audience, ...)")]]
    decision verify(std::string_view ticket, std::string_view origin, std::string_view audience,
                    ticket_claims& claims) const noexcept {
        return verify(presented_ticket(ticket), expected_origin(origin), expected_audience(audience), claims,
                      std::chrono::system_clock::now());
    }
    [[deprecated("use verify(presented_ticket, expected_origin, expected_audience, ...)")]]
    decision verify(std::string_view ticket, std::string_view origin, std::string_view audience, ticket_claims& claims,
                    std::chrono::system_clock::time_point now) const noexcept {
        return verify(presented_ticket(ticket), expected_origin(origin), expected_audience(audience), claims, now);
    }

    decision verify(presented_ticket presented, expected_origin expected, expected_audience endpoint,
                    ticket_claims& claims, std::chrono::system_clock::time_point now) const noexcept {
        return verify_from(presented, nullptr, expected, endpoint, claims, now);
    }

    const keyring& keys() const noexcept { return keys_; }
    const ticket_verifier_options& options() const noexcept { return options_; }

    // The earliest issue time this verifier accepts. A ticket issued up to
    // clock_skew after a store's start may have been spent before it (its
    // issuer's clock ran ahead), by a previous process the store knows nothing
    // of: so a store that cannot tell (memory_replay_store) costs clock_skew
    // after its start; a store that decides this itself with each spend
    // (redis_replay_store, whose start already includes its issuer_clock_skew,
    // checked >= clock_skew by create) is taken at its word.
    std::chrono::system_clock::time_point spendable_from() const noexcept;

private:
    template <class>
    friend class basic_handshake_guard;

    ticket_verifier(keyring keys, ReplayStore& store, ticket_verifier_options options)
        : keys_(std::move(keys)), store_(&store), options_(options) {}

    // handshake_guard's hook: decodes the ticket's first characters into
    // `head` (public; a ticket that does not decode is left to verify()) and
    // returns the in-memory store's slot where verify() will spend its nonce,
    // or nullptr. It returns the slot for the guard to prefetch: g++ 12 judged a
    // function that only prefetched pure and deleted the call (it had not
    // inlined it first), so the prefetch sits in the caller.
    const detail::replay_slot* spend_slot(presented_ticket presented, detail::ticket_head& head) const noexcept;
    // verify(), starting from the characters spend_slot decoded into `head`
    // when it did (the same ticket), so that no character is decoded twice.
    decision verify_from(presented_ticket presented, const detail::ticket_head* head, expected_origin expected,
                         expected_audience endpoint, ticket_claims& claims,
                         std::chrono::system_clock::time_point now) const noexcept;

    // A length-prefixed field of at most `cap` bytes.
    static bool take(const std::uint8_t*& p, const std::uint8_t* end, int prefix, std::size_t cap,
                     std::string_view& field) noexcept;

    // The ticket holds the folded origin; fold the request's the same way.
    static bool origin_matches(std::string_view request_origin, std::string_view ticket_origin) noexcept;

    keyring keys_;
    ReplayStore* store_;
    ticket_verifier_options options_;
};

// ---------------------------------------------------------------------------
// Transport helpers: where the browser puts the ticket. All allocation-free;
// the views point into the caller's header or query.
// ---------------------------------------------------------------------------

// The subprotocol marker that carries a ticket: new WebSocket(url, ["wsguard.v1", ticket]).
inline constexpr std::string_view ticket_subprotocol = "wsguard.v1";

WSGUARD_DETAIL_SET_DEPRECATED_BEGIN  // quiet implicit members: see the macro
struct [[nodiscard]] ticket_source {
    std::string_view ticket;         // pass to ticket_verifier::verify
    std::string_view echo_protocol;  // the server's Sec-WebSocket-Protocol answer: "wsguard.v1", never the ticket
    wsguard::decision decision{wsguard::reason::ticket_missing};  // ok, ticket_missing or ticket_malformed
    explicit operator bool() const noexcept { return decision.allowed(); }
    // 0.1 spelling, set by the library alongside decision.
    [[deprecated("use ticket_source::decision.reason; removed in 0.3")]]
    wsguard::reason reason = wsguard::reason::ticket_missing;
};
WSGUARD_DETAIL_SET_DEPRECATED_END

namespace detail {
inline void settle(ticket_source& out, wsguard::reason r) noexcept {
    out.decision = r;
    WSGUARD_DETAIL_SET_DEPRECATED_BEGIN
    out.reason = r;
    WSGUARD_DETAIL_SET_DEPRECATED_END
}
}  // namespace detail

// Sec-WebSocket-Protocol: "wsguard.v1, <ticket>". Comma-separated tokens with
// optional spaces or tabs; empty list elements are skipped. The ticket is the
// token right after the first "wsguard.v1". Other offered protocols are ignored.
WSGUARD_DETAIL_HOT inline ticket_source ticket_from_subprotocol(std::string_view header) noexcept {
    ticket_source out;
    bool marker_seen = false;
    std::size_t i = 0;
    while (i <= header.size()) {
        std::size_t end = header.find(',', i);
        if (end == std::string_view::npos) end = header.size();
        std::string_view token = header.substr(i, end - i);
        while (!token.empty() && (token.front() == ' ' || token.front() == '\t')) token.remove_prefix(1);
        while (!token.empty() && (token.back() == ' ' || token.back() == '\t')) token.remove_suffix(1);
        i = end + 1;
        if (token.empty()) continue;
        if (marker_seen) {
            out.ticket = token;
            out.echo_protocol = ticket_subprotocol;
            detail::settle(out, reason::ok);
            return out;
        }
        if (token == ticket_subprotocol) marker_seen = true;
    }
    return out;  // no marker, or no token after it: ticket_missing
}

// The fallback: "?ticket=<ticket>" (a leading '?' and a '#fragment' are
// tolerated). Exact, case-sensitive name; first occurrence. base64url needs no
// percent-encoding, so a '%' in the value means a mangled ticket: malformed.
WSGUARD_DETAIL_HOT inline ticket_source ticket_from_query(std::string_view query) noexcept {
    ticket_source out;
    if (!query.empty() && query.front() == '?') query.remove_prefix(1);
    const std::size_t fragment = query.find('#');
    if (fragment != std::string_view::npos) query = query.substr(0, fragment);
    std::size_t i = 0;
    while (i <= query.size()) {
        std::size_t end = query.find('&', i);
        if (end == std::string_view::npos) end = query.size();
        const std::string_view pair = query.substr(i, end - i);
        i = end + 1;
        const std::size_t equals = pair.find('=');
        if (pair.substr(0, equals) != "ticket") continue;
        if (equals == std::string_view::npos || equals + 1 == pair.size()) return out;  // ticket_missing
        out.ticket = pair.substr(equals + 1);
        detail::settle(out, out.ticket.find('%') == std::string_view::npos ? reason::ok : reason::ticket_malformed);
        if (!out) out.ticket = {};
        return out;
    }
    return out;
}

// ---------------------------------------------------------------------------
// first_message_gate: for stacks that can carry the ticket in neither the
// subprotocol nor the URL. One per connection (not thread-safe, like the
// connection). The first message must be "wsguard.v1 <ticket>" and arrive
// within the deadline; until then nothing reaches the application, and any
// refusal is final.
//
//   auto verdict = gate.on_message(msg, verifier, origin, audience, claims);
//   if (!verdict.decision) ws.close(verdict.decision.close_code(), to_string(verdict.decision.reason));
//   else if (verdict.deliver) handle(msg);   // false for the ticket message itself
// ---------------------------------------------------------------------------
struct [[nodiscard]] gate_verdict {
    wsguard::decision decision;
    bool deliver = false;  // hand this message to the application
};

class first_message_gate {
public:
    static constexpr std::string_view message_prefix = "wsguard.v1 ";

    explicit first_message_gate(std::chrono::milliseconds deadline = std::chrono::seconds(10)) noexcept
        : first_message_gate(std::chrono::steady_clock::now(), deadline) {}
    // `connected_at`: when the connection opened (101 sent).
    first_message_gate(std::chrono::steady_clock::time_point connected_at,
                       std::chrono::milliseconds deadline = std::chrono::seconds(10)) noexcept
        : deadline_(connected_at + deadline) {}

    bool is_open() const noexcept { return state_ == state::open; }

    // For a timer: ticket_deadline_passed (and the gate closes for good) once
    // the deadline passed without a ticket; the final reason after a refusal;
    // ok while open or still within the deadline.
    decision poll() noexcept { return poll(std::chrono::steady_clock::now()); }
    decision poll(std::chrono::steady_clock::time_point now) noexcept {
        if (state_ == state::waiting && now >= deadline_) refuse(reason::ticket_deadline_passed);
        return refused_;
    }

    template <class Verifier>
    gate_verdict on_message(std::string_view message, const Verifier& verifier, std::string_view origin,
                            std::string_view audience, ticket_claims& claims) noexcept {
        return on_message(message, verifier, origin, audience, claims, std::chrono::steady_clock::now(),
                          std::chrono::system_clock::now());
    }

    // `now`: the connection's clock for the deadline; `wall_now`: the wall clock for the ticket.
    template <class Verifier>
    gate_verdict on_message(std::string_view message, const Verifier& verifier, std::string_view origin,
                            std::string_view audience, ticket_claims& claims, std::chrono::steady_clock::time_point now,
                            std::chrono::system_clock::time_point wall_now) noexcept {
        if (state_ == state::open) return gate_verdict{decision::allow(), true};
        if (!poll(now)) return gate_verdict{refused_, false};
        if (message.substr(0, message_prefix.size()) != message_prefix) {
            refuse(reason::ticket_message_expected);
            return gate_verdict{refused_, false};
        }
        const decision verified =
            verifier.verify(presented_ticket(message.substr(message_prefix.size())), expected_origin(origin),
                            expected_audience(audience), claims, wall_now);
        if (!verified) {
            refuse(verified.reason);
            return gate_verdict{refused_, false};
        }
        state_ = state::open;
        return gate_verdict{decision::allow(), false};
    }

private:
    enum class state : std::uint8_t { waiting, open, refused };
    void refuse(reason r) noexcept {
        state_ = state::refused;
        refused_ = r;
    }
    std::chrono::steady_clock::time_point deadline_;
    state state_ = state::waiting;
    decision refused_{};
};

// ---------------------------------------------------------------------------
// Internals: the wire format's constants and helpers, the MAC, the replay
// store's hash and the traits that tell store kinds apart; then the
// out-of-line bodies of the public classes above.
// ---------------------------------------------------------------------------
namespace detail {

inline constexpr char ticket_domain[] = "wsguard-ticket-v1";  // zero-padded to one SHA-256 block
inline constexpr std::uint8_t ticket_version = 1;
inline constexpr std::size_t ticket_header_size = 1 + 4 + 8 + 8 + 16;
inline constexpr std::size_t ticket_mac_size = 32;
// Header, empty subject/origin/audience, no scopes, MAC.
inline constexpr std::size_t ticket_min_bytes = ticket_header_size + 1 + 2 + 2 + 1 + ticket_mac_size;
// Times outside [0, ticket_max_unix_ms] are refused: they fit any system_clock.
inline constexpr std::int64_t ticket_max_unix_ms = 8'000'000'000'000;  // year 2223

inline void ticket_store_be(std::uint8_t* out, std::uint64_t value, int bytes) noexcept {
    for (int i = bytes - 1; i >= 0; --i) {
        out[i] = static_cast<std::uint8_t>(value);
        value >>= 8;
    }
}

inline std::uint64_t ticket_load_be(const std::uint8_t* in, int bytes) noexcept {
    std::uint64_t value = 0;
    for (int i = 0; i < bytes; ++i) value = (value << 8) | in[i];
    return value;
}

inline std::int64_t ticket_unix_ms(std::chrono::system_clock::time_point t) noexcept {
    return std::chrono::floor<std::chrono::milliseconds>(t.time_since_epoch()).count();
}

inline std::chrono::system_clock::time_point ticket_time_point(std::int64_t unix_ms) noexcept {
    return std::chrono::system_clock::time_point(
        std::chrono::duration_cast<std::chrono::system_clock::duration>(std::chrono::milliseconds(unix_ms)));
}

// Whether a folded origin has this scheme and ends in this (default) port.
WSGUARD_DETAIL_HOT inline bool ticket_origin_default_port(std::string_view folded, std::string_view scheme,
                                                          std::string_view port) noexcept {
    return folded.size() > scheme.size() + port.size() && folded.substr(0, scheme.size()) == scheme &&
           folded.substr(folded.size() - port.size()) == port;
}

// Origins are compared after the folding the Origin policy applies: scheme and
// host are case-insensitive and a default port (:443 for https/wss, :80 for
// http/ws) is dropped. Returns the folded length (never longer than the input).
WSGUARD_DETAIL_HOT inline std::size_t ticket_fold_origin(std::string_view origin, char* out) noexcept {
    for (std::size_t i = 0; i < origin.size(); ++i) out[i] = ascii_lower(origin[i]);
    const std::string_view folded(out, origin.size());
    if (ticket_origin_default_port(folded, "https://", ":443") || ticket_origin_default_port(folded, "wss://", ":443"))
        return folded.size() - 4;
    if (ticket_origin_default_port(folded, "http://", ":80") || ticket_origin_default_port(folded, "ws://", ":80"))
        return folded.size() - 3;
    return folded.size();
}

// Scopes are given as one space-separated string ("chat:read chat:write"), as
// OAuth does. Calls visit(scope) for each; false when over the caps.
template <class Visit>
bool ticket_for_each_scope(std::string_view scopes, Visit&& visit) noexcept {
    std::size_t count = 0;
    std::size_t i = 0;
    while (i < scopes.size()) {
        if (scopes[i] == ' ') {
            ++i;
            continue;
        }
        std::size_t end = scopes.find(' ', i);
        if (end == std::string_view::npos) end = scopes.size();
        const std::string_view scope = scopes.substr(i, end - i);
        if (scope.size() > ticket_limits::max_scope || ++count > ticket_limits::max_scopes) return false;
        visit(scope);
        i = end;
    }
    return true;
}

inline hmac_sha256_key::stream ticket_mac_start(std::string_view secret) noexcept {
    std::uint8_t block[64] = {};
    std::memcpy(block, ticket_domain, sizeof ticket_domain - 1);
    hmac_sha256_key::stream mac = hmac_sha256_key(secret).begin();
    mac.update(block, sizeof block);
    return mac;
}

// A ticket's first characters, decoded once: handshake_guard decodes them to
// find the nonce's replay slot before the MAC, and verify() goes on from there.
struct ticket_head {
    static constexpr std::size_t chars = (ticket_header_size + 2) / 3 * 4;  // whole groups: the header's 37 of 39 bytes
    std::uint8_t bytes[chars / 4 * 3];
    bool decoded = false;
};

WSGUARD_DETAIL_HOT inline sha256_digest ticket_mac(const hmac_sha256_key::stream& after_domain, const std::uint8_t* bytes,
                                                   std::size_t size) noexcept {
    hmac_sha256_key::stream mac = after_domain;
    mac.update(bytes, size);
    return mac.finish();
}

// Slots examined for expired nonces on every spend, behind a moving cursor:
// keeps expired entries from piling up, so the full sweep stays rare.
inline constexpr std::size_t replay_reclaim_per_spend = 2;

// Whether a ReplayStore spends with the ticket's issue time (a store whose start can move).
template <class Store, class = void>
struct replay_store_spends_with_issued_at : std::false_type {};
template <class Store>
struct replay_store_spends_with_issued_at<
    Store, std::void_t<decltype(std::declval<Store&>().try_spend(
               std::declval<const ticket_nonce&>(), std::declval<std::chrono::system_clock::time_point>(),
               std::declval<std::chrono::system_clock::time_point>(),
               std::declval<std::chrono::system_clock::time_point>()))>> : std::true_type {};

// Whether a ReplayStore names how far an issuer's clock may run ahead of its own start.
template <class Store, class = void>
struct replay_store_reports_issuer_skew : std::false_type {};
template <class Store>
struct replay_store_reports_issuer_skew<Store, std::void_t<decltype(std::declval<const Store&>().issuer_clock_skew())>>
    : std::true_type {};

// t + d, or the latest time point when that would overflow.
inline std::chrono::system_clock::time_point saturating_add(std::chrono::system_clock::time_point t,
                                                            std::chrono::seconds d) noexcept {
    const auto latest = std::chrono::system_clock::time_point::max();
    return t > latest - d ? latest : t + d;  // d is 0..60 s (checked by create)
}

inline std::uint64_t replay_mix(std::uint64_t x) noexcept {  // splitmix64 finalizer
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    x ^= x >> 31;
    return x;
}

}  // namespace detail

// The out-of-line bodies of the public classes, in the order of the classes.

inline result<keyring> keyring::create(std::uint32_t issuing_key_id, const keyring_key* keys, std::size_t count) {
    using failure = result<keyring>;
    if (count == 0) return failure::failure("keyring: no keys; give at least the key that issues tickets");
    if (count > max_keys)
        return failure::failure("keyring: " + std::to_string(count) + " keys; at most " + std::to_string(max_keys));
    keyring ring;
    ring.issuing_key_id_ = issuing_key_id;
    bool has_issuing_key = false;
    for (std::size_t i = 0; i < count; ++i) {
        const keyring_key& k = keys[i];
        const std::string name = "keyring: key " + std::to_string(k.id);
        if (k.secret.size() < min_secret_size)
            return failure::failure(name + " is " + std::to_string(k.secret.size()) +
                                    " bytes; HMAC-SHA256 keys must be at least 32 random bytes");
        for (std::size_t j = 0; j < i; ++j) {
            if (keys[j].id == k.id) return failure::failure(name + " appears twice; key ids must be unique");
        }
        if (k.id == issuing_key_id) {
            has_issuing_key = true;
            if (k.verify_until)
                return failure::failure(name + " issues tickets, so it cannot have a verify_until");
        }
        ring.keys_.push_back(detail::ticket_key_entry{
            k.id, detail::ticket_mac_start(k.secret), k.verify_until.value_or(std::chrono::system_clock::time_point::max())});
    }
    if (!has_issuing_key)
        return failure::failure("keyring: the issuing key id " + std::to_string(issuing_key_id) +
                                " is not among the keys");
    return failure::success(std::move(ring));
}

inline const hmac_sha256_key::stream& keyring::issuing_key() const noexcept {
    for (const detail::ticket_key_entry& e : keys_) {
        if (e.id == issuing_key_id_) return e.after_domain;
    }
    detail::contract_violation("keyring without its issuing key");
}

inline const hmac_sha256_key::stream* keyring::verifying_key(std::uint32_t id,
                                                             std::chrono::system_clock::time_point now) const noexcept {
    for (const detail::ticket_key_entry& e : keys_) {
        if (e.id == id) return now < e.verify_until ? &e.after_domain : nullptr;
    }
    return nullptr;
}

inline result<ticket_issuer> ticket_issuer::create(keyring keys, ticket_issuer_options options) {
    using failure = result<ticket_issuer>;
    if (options.default_ttl < std::chrono::seconds(1) || options.default_ttl > options.max_ttl)
        return failure::failure("ticket_issuer: default_ttl must be at least 1 s and at most max_ttl");
    if (options.max_ttl > std::chrono::hours(1))
        return failure::failure("ticket_issuer: max_ttl over 1 hour; tickets are meant to be short-lived");
    return failure::success(ticket_issuer(std::move(keys), options));
}

inline issued_ticket ticket_issuer::issue(const ticket_request& request,
                                          std::chrono::system_clock::time_point now) const {
    issued_ticket out;
    if (request.subject.size() > ticket_limits::max_subject || request.origin.size() > ticket_limits::max_origin ||
        request.audience.size() > ticket_limits::max_audience ||
        !detail::ticket_for_each_scope(request.scopes, [](std::string_view) {})) {
        settle(out, reason::ticket_field_too_long);
        return out;
    }
    std::chrono::seconds ttl = request.ttl > std::chrono::seconds(0) ? request.ttl : options_.default_ttl;
    if (ttl > options_.max_ttl) ttl = options_.max_ttl;
    const std::int64_t issued_ms = detail::ticket_unix_ms(now);
    const std::int64_t expires_ms = issued_ms + std::chrono::milliseconds(ttl).count();
    if (issued_ms < 0 || expires_ms > detail::ticket_max_unix_ms) {
        settle(out, reason::internal_error);  // the clock is outside any sane range
        return out;
    }

    std::uint8_t body[ticket_limits::max_bytes];
    std::uint8_t* p = body;
    *p++ = detail::ticket_version;
    detail::ticket_store_be(p, keys_.issuing_key_id(), 4);
    detail::ticket_store_be(p + 4, static_cast<std::uint64_t>(issued_ms), 8);
    detail::ticket_store_be(p + 12, static_cast<std::uint64_t>(expires_ms), 8);
    const reason random = random_bytes(p + 20, 16);
    if (random != reason::ok) {
        settle(out, random);
        return out;
    }
    p += 36;
    *p++ = static_cast<std::uint8_t>(request.subject.size());
    p = put(p, request.subject);
    char origin[ticket_limits::max_origin];
    const std::size_t origin_size = detail::ticket_fold_origin(request.origin, origin);
    detail::ticket_store_be(p, origin_size, 2);
    p = put(p + 2, std::string_view(origin, origin_size));
    detail::ticket_store_be(p, request.audience.size(), 2);
    p = put(p + 2, request.audience);
    std::uint8_t* const scope_count = p++;
    *scope_count = 0;
    (void)detail::ticket_for_each_scope(request.scopes, [&](std::string_view scope) {
        ++*scope_count;
        *p++ = static_cast<std::uint8_t>(scope.size());
        p = put(p, scope);
    });
    const sha256_digest mac = detail::ticket_mac(keys_.issuing_key(), body, static_cast<std::size_t>(p - body));
    std::memcpy(p, mac.data(), detail::ticket_mac_size);
    p += detail::ticket_mac_size;

    // constant-time: until the client spends it, the ticket is a bearer
    // credential, so its nonce and MAC must not index a table (a cache
    // observer on this host could read them and spend the ticket first).
    out.ticket = base64url_encode(body, static_cast<std::size_t>(p - body));
    out.expires_at = detail::ticket_time_point(expires_ms);
    settle(out, reason::ok);
    return out;
}

inline result<memory_replay_store> memory_replay_store::create(std::size_t capacity,
                                                               std::chrono::system_clock::time_point now) {
    using failure = result<memory_replay_store>;
    if (capacity == 0 || capacity > max_capacity)
        return failure::failure("memory_replay_store: capacity must be between 1 and " +
                                std::to_string(max_capacity) +
                                " live tickets (peak tickets per second x longest ticket lifetime)");
    memory_replay_store store;
    store.state_.reset(new (std::nothrow) state());
    if (!store.state_) return failure::failure("memory_replay_store: out of memory");
    state& st = *store.state_;
    st.capacity = capacity;
    st.slot_count = 2 * capacity;  // load factor at most 1/2
    if (!st.slots.allocate(st.slot_count)) return failure::failure("memory_replay_store: out of memory for the table");
    // A keyed hash, so nonces chosen by someone holding a valid MAC cannot
    // be lined up into one long cluster. Not a secret that guards anything else.
    std::uint8_t seed[16];
    if (random_bytes(seed, sizeof seed) != reason::ok) {
        const std::uint64_t fallback = static_cast<std::uint64_t>(
            std::chrono::steady_clock::now().time_since_epoch().count()) ^ reinterpret_cast<std::uintptr_t>(&store);
        std::memcpy(seed, &fallback, 8);
        std::memcpy(seed + 8, &fallback, 8);
    }
    st.seed_low = detail::ticket_load_be(seed, 8);
    st.seed_high = detail::ticket_load_be(seed + 8, 8);
    // The first whole millisecond after creation: tickets carry
    // milliseconds, and one issued in the creation millisecond may predate it.
    store.created_ = detail::ticket_time_point(detail::ticket_unix_ms(now) + 1);
    return failure::success(std::move(store));
}

WSGUARD_DETAIL_HOT inline reason memory_replay_store::try_spend(const ticket_nonce& nonce,
                                                                std::chrono::system_clock::time_point expires_at,
                                                                std::chrono::system_clock::time_point now) noexcept {
    if (!state_) return reason::store_unavailable;  // a moved-from store
    state& st = *state_;
    const std::uint64_t low = detail::ticket_load_be(nonce.data(), 8);
    const std::uint64_t high = detail::ticket_load_be(nonce.data() + 8, 8);
    const std::int64_t now_ms = detail::ticket_unix_ms(now);
    std::int64_t expires_ms = detail::ticket_unix_ms(expires_at);
    if (expires_ms < 1) expires_ms = 1;

    const std::lock_guard<detail::replay_lock> guard(st.lock);
    st.reclaim_some(now_ms);
    for (bool swept = false;; swept = true) {
        std::size_t i = st.home_of(low, high);
        for (; st.slots[i].expires_ms != 0; i = st.next(i)) {
            detail::replay_slot& slot = st.slots[i];
            if (slot.low != low || slot.high != high) continue;
            if (slot.expires_ms > now_ms) return reason::ticket_replayed;
            slot.expires_ms = expires_ms;  // the same nonce, expired: remembered again
            st.earliest_ms = std::min(st.earliest_ms, expires_ms);
            return reason::ok;
        }
        if (st.stored < st.capacity) {
            st.slots[i] = detail::replay_slot{low, high, expires_ms};
            ++st.stored;
            st.earliest_ms = std::min(st.earliest_ms, expires_ms);
            return reason::ok;
        }
        // Full: exactly `capacity` live nonces unless one has expired.
        if (swept || st.earliest_ms > now_ms) return reason::replay_store_full;
        st.sweep(now_ms);  // entries moved: probe again
    }
}

inline std::size_t memory_replay_store::state::home_of(std::uint64_t low, std::uint64_t high) const noexcept {
    const std::uint64_t hash = detail::replay_mix(detail::replay_mix(low ^ seed_low) ^ high ^ seed_high);
    return static_cast<std::size_t>(((hash >> 32) * slot_count) >> 32);
}

inline void memory_replay_store::state::erase(std::size_t hole) noexcept {
    for (std::size_t j = next(hole); slots[j].expires_ms != 0; j = next(j)) {
        const std::size_t h = home_of(slots[j].low, slots[j].high);
        const std::size_t from_home = j >= h ? j - h : j + slot_count - h;
        const std::size_t from_hole = j >= hole ? j - hole : j + slot_count - hole;
        if (from_home >= from_hole) {
            slots[hole] = slots[j];
            hole = j;
        }
    }
    slots[hole] = detail::replay_slot{};
    --stored;
}

WSGUARD_DETAIL_HOT inline void memory_replay_store::state::reclaim_some(std::int64_t now_ms) noexcept {
    for (std::size_t k = 0; k < detail::replay_reclaim_per_spend; ++k) {
        if (expired_at(cursor, now_ms)) {
            erase(cursor);  // look at the same slot again next time: something may have moved in
        } else {
            cursor = next(cursor);
        }
    }
}

inline void memory_replay_store::state::sweep(std::int64_t now_ms) noexcept {
    earliest_ms = std::numeric_limits<std::int64_t>::max();
    for (std::size_t i = 0; i < slot_count; ++i) {
        while (expired_at(i, now_ms)) erase(i);
        if (slots[i].expires_ms != 0) earliest_ms = std::min(earliest_ms, slots[i].expires_ms);
    }
}

inline const detail::replay_slot* memory_replay_store::home_slot(const ticket_nonce& nonce) const noexcept {
    if (!state_) return nullptr;
    const state& st = *state_;
    return &st.slots[st.home_of(detail::ticket_load_be(nonce.data(), 8), detail::ticket_load_be(nonce.data() + 8, 8))];
}

template <class ReplayStore>
inline result<ticket_verifier<ReplayStore>> ticket_verifier<ReplayStore>::create(keyring keys, ReplayStore& store,
                                                                               ticket_verifier_options options) {
    using failure = result<ticket_verifier>;
    if (options.max_ttl < std::chrono::seconds(1) || options.max_ttl > std::chrono::hours(1))
        return failure::failure("ticket_verifier: max_ttl must be between 1 s and 1 hour");
    if (options.clock_skew < std::chrono::seconds(0) || options.clock_skew > std::chrono::minutes(1))
        return failure::failure("ticket_verifier: clock_skew must be between 0 and 60 s");
    if constexpr (detail::replay_store_reports_issuer_skew<ReplayStore>::value) {
        // Otherwise a ticket issued up to clock_skew ahead, spent before the
        // store lost its data, would be issued after the new start + the
        // store's skew, and accepted again.
        if (store.issuer_clock_skew() < options.clock_skew)
            return failure::failure(
                "ticket_verifier: the replay store's issuer_clock_skew is below this verifier's clock_skew; a "
                "ticket spent just before the store lost its data could be accepted again: raise the store's "
                "issuer_clock_skew or lower clock_skew");
    }
    return failure::success(ticket_verifier(std::move(keys), store, options));
}

template <class ReplayStore>
WSGUARD_DETAIL_HOT inline decision ticket_verifier<ReplayStore>::verify_from(presented_ticket presented, const detail::ticket_head* head,
                                                                             expected_origin expected, expected_audience endpoint,
                                                                             ticket_claims& claims,
                                                                             std::chrono::system_clock::time_point now) const noexcept {
    const std::string_view ticket = presented.value, origin = expected.value, audience = endpoint.value;
    claims.clear();
    if (ticket.empty()) return reason::ticket_missing;
    if (ticket.size() > ticket_limits::max_chars) return reason::ticket_too_long;

    std::uint8_t body[ticket_limits::max_bytes];
    std::size_t size = 0;
    // The ticket is public (the client holds it): no need for the constant-time decoder.
    if (head != nullptr && head->decoded) {  // its first characters, whole groups, decoded by spend_slot
        constexpr std::size_t done = sizeof head->bytes;
        std::memcpy(body, head->bytes, done);
        if (!detail::base64url_decode_public(ticket.substr(detail::ticket_head::chars), body + done,
                                             ticket_limits::max_bytes - done, size))
            return reason::ticket_malformed;
        size += done;
    } else if (!detail::base64url_decode_public(ticket, body, ticket_limits::max_bytes, size)) {
        return reason::ticket_malformed;
    }
    if (size < detail::ticket_min_bytes) return reason::ticket_malformed;
    if (body[0] != detail::ticket_version) return reason::ticket_bad_version;
    const std::uint32_t key_id = static_cast<std::uint32_t>(detail::ticket_load_be(body + 1, 4));
    const hmac_sha256_key::stream* key = keys_.verifying_key(key_id, now);
    if (!key) return reason::ticket_unknown_key;

    ticket_nonce nonce;
    std::memcpy(nonce.data(), body + 21, nonce.size());

    const std::size_t signed_size = size - detail::ticket_mac_size;
    sha256_digest mac = detail::ticket_mac(*key, body, signed_size);
    // constant-time: the whole MAC is compared, whatever byte differs first.
    const bool authentic = constant_time_equal(mac.data(), body + signed_size, detail::ticket_mac_size);
    // The expected MAC of a forged body would make it valid: leave no copy on the stack.
    detail::crypto_wipe(mac.data(), mac.size());
    if (!authentic) return reason::ticket_bad_mac;

    // Authenticated from here on; the layout is still checked field by field.
    const std::int64_t issued_ms = static_cast<std::int64_t>(detail::ticket_load_be(body + 5, 8));
    std::int64_t expires_ms = static_cast<std::int64_t>(detail::ticket_load_be(body + 13, 8));
    if (issued_ms < 0 || issued_ms >= expires_ms || expires_ms > detail::ticket_max_unix_ms)
        return reason::ticket_malformed;
    const std::uint8_t* p = body + detail::ticket_header_size;
    const std::uint8_t* const end = body + signed_size;
    std::string_view subject, ticket_origin, ticket_audience;
    if (!take(p, end, 1, ticket_limits::max_subject, subject) ||
        !take(p, end, 2, ticket_limits::max_origin, ticket_origin) ||
        !take(p, end, 2, ticket_limits::max_audience, ticket_audience) || p == end)
        return reason::ticket_malformed;
    const std::size_t scope_count = *p++;
    if (scope_count > ticket_limits::max_scopes) return reason::ticket_malformed;
    // Checked now, copied into the claims at the end by walking them again
    // (cheaper than keeping an array of views, which would be zeroed per call).
    const std::uint8_t* const scopes = p;
    for (std::size_t i = 0; i < scope_count; ++i) {
        std::string_view scope;
        if (!take(p, end, 1, ticket_limits::max_scope, scope)) return reason::ticket_malformed;
    }
    if (p != end) return reason::ticket_malformed;

    const std::int64_t now_ms = detail::ticket_unix_ms(now);
    const std::int64_t max_ttl_ms = std::chrono::milliseconds(options_.max_ttl).count();
    if (expires_ms - issued_ms > max_ttl_ms) expires_ms = issued_ms + max_ttl_ms;
    if (now_ms >= expires_ms) return reason::ticket_expired;
    if (issued_ms > now_ms + std::chrono::milliseconds(options_.clock_skew).count())
        return reason::ticket_not_yet_valid;
    if (!origin_matches(origin, ticket_origin)) return reason::ticket_origin_mismatch;
    if (audience != ticket_audience) return reason::ticket_audience_mismatch;
    if (detail::ticket_time_point(issued_ms) < spendable_from())
        return reason::ticket_before_store_start;
    // Remembered past expiry by the skew, so a server whose clock runs behind
    // cannot accept the ticket after another forgot it.
    const std::chrono::system_clock::time_point remember_until =
        detail::ticket_time_point(expires_ms) + options_.clock_skew;
    reason spent;
    if constexpr (detail::replay_store_spends_with_issued_at<ReplayStore>::value)
        spent = store_->try_spend(nonce, detail::ticket_time_point(issued_ms), remember_until, now);
    else
        spent = store_->try_spend(nonce, remember_until, now);
    if (spent != reason::ok) return spent;

    claims.set_header(key_id, issued_ms, expires_ms, nonce);
    claims.set_subject(subject);
    p = scopes;
    for (std::size_t i = 0; i < scope_count; ++i) {
        std::string_view scope;
        static_cast<void>(take(p, end, 1, ticket_limits::max_scope, scope));  // succeeded above
        claims.add_scope(scope);
    }
    return decision::allow();
}

template <class ReplayStore>
inline std::chrono::system_clock::time_point ticket_verifier<ReplayStore>::spendable_from() const noexcept {
    if constexpr (detail::replay_store_spends_with_issued_at<ReplayStore>::value)
        return store_->accepts_issued_after();
    else
        return detail::saturating_add(store_->accepts_issued_after(), options_.clock_skew);
}

template <class ReplayStore>
WSGUARD_DETAIL_HOT inline const detail::replay_slot* ticket_verifier<ReplayStore>::spend_slot(presented_ticket presented,
                                                                                              detail::ticket_head& head) const noexcept {
    if constexpr (std::is_same<ReplayStore, memory_replay_store>::value) {
        constexpr std::size_t chars = detail::ticket_head::chars;
        std::size_t size = 0;
        if (presented.value.size() < chars ||
            !detail::base64url_decode_public(presented.value.substr(0, chars), head.bytes, sizeof head.bytes, size))
            return nullptr;
        head.decoded = true;
        ticket_nonce nonce;
        std::memcpy(nonce.data(), head.bytes + detail::ticket_header_size - nonce.size(), nonce.size());
        return store_->home_slot(nonce);
    } else {
        (void)presented;
        (void)head;
        return nullptr;
    }
}

template <class ReplayStore>
inline bool ticket_verifier<ReplayStore>::take(const std::uint8_t*& p, const std::uint8_t* end, int prefix,
                                               std::size_t cap, std::string_view& field) noexcept {
    if (end - p < prefix) return false;
    const std::size_t size = static_cast<std::size_t>(detail::ticket_load_be(p, prefix));
    p += prefix;
    if (size > cap || static_cast<std::size_t>(end - p) < size) return false;
    field = std::string_view(reinterpret_cast<const char*>(p), size);
    p += size;
    return true;
}

template <class ReplayStore>
WSGUARD_DETAIL_HOT inline bool ticket_verifier<ReplayStore>::origin_matches(std::string_view request_origin,
                                                                            std::string_view ticket_origin) noexcept {
    if (request_origin.size() > ticket_limits::max_origin) return false;
    char folded[ticket_limits::max_origin];
    const std::size_t size = detail::ticket_fold_origin(request_origin, folded);
    return std::string_view(folded, size) == ticket_origin;
}

}  // inline namespace WSGUARD_ABI_NS
}  // namespace wsguard

// ===========================================================================
// 9. mint_guard: the application's ticket endpoint (POST /ticket)
// ===========================================================================
//
// The endpoint that turns a login (a cookie) into a ticket is the next thing a
// cross-site page attacks: if evil.example can make the browser POST /ticket
// with the user's cookie and read the answer, it has a ticket. mint_guard
// decides, before the application issues anything:
//   1. POST only (OPTIONS is the CORS preflight, answered by preflight()).
//   2. Origin on the allowlist (the same origin_policy rules as the socket).
//   3. Sec-Fetch-Site, when the browser sends it: cross-site refused (unless
//      configured), same-site per configuration.
//   4. A marker header (default "X-Wsguard-Ticket: 1") that no HTML form,
//      <img>, navigator.sendBeacon or "simple" fetch can send: a browser sends
//      a custom header cross-origin only after a CORS preflight this guard
//      answers for the allowed origins alone. A cross-site form POST, which
//      needs no preflight, therefore never carries it.
//   5. A per-address rate, then an authenticated subject, then a per-subject
//      mint rate (keyed, fixed-memory tables, like keyed_limiter).
// Every answer carries the CORS response headers to send, so a page on
// another allowed origin can read its ticket and no other page can.

namespace wsguard {
inline namespace WSGUARD_ABI_NS {

// What the application knows about one request to its ticket endpoint,
// borrowed for the call. Header values as the parser gives them; an empty view
// means the header was absent.
struct mint_request {
    std::string_view method;          // "POST", or "OPTIONS" for a preflight
    std::string_view origin;          // Origin
    std::string_view sec_fetch_site;  // Sec-Fetch-Site
    std::string_view marker;          // the value of mint_config::marker_header ("X-Wsguard-Ticket")
    // The user the application authenticated from its cookie or session, or
    // empty when the caller is not logged in. At most ticket_limits::max_subject bytes.
    std::string_view subject;
    // The client (after your trusted-proxy logic), for the per-address rate:
    // "203.0.113.7", "203.0.113.7:5000", "[2001:db8::1]:443". Required by
    // check(): neither this nor the bytes below is address_malformed.
    std::string_view remote_address;
    // Raw peer address (4 or 16 bytes, network order); used instead of
    // remote_address when set.
    const std::uint8_t* remote_address_bytes = nullptr;
    std::size_t remote_address_size = 0;
    // Preflight only: Access-Control-Request-Method and -Headers.
    std::string_view access_control_request_method;
    std::string_view access_control_request_headers;
};

struct mint_config {
    // The pages that may fetch a ticket: origin_policy patterns (exact
    // origins, whole-label wildcards; never "*" nor "null").
    std::vector<std::string> origins;
    // allow_missing_origin lets clients that send no Origin (native apps,
    // scripts with a bearer token) mint; browsers always send one on a POST.
    wsguard::origin_options origin_options{};
    // Sec-Fetch-Site: "same-site" passes with deny_cross_site (the default),
    // is refused with deny_cross_site_and_same_site.
    fetch_site_policy fetch_site = fetch_site_policy::deny_cross_site;
    // Set only when a listed origin is on another site than this endpoint
    // (app.example.com calling tickets.example.net): the browser then says
    // "cross-site", and the Origin allowlist alone decides.
    bool allow_cross_site = false;
    // The non-simple header the page must send with the value "1". An HTTP
    // token that is neither CORS-safelisted nor forbidden to scripts.
    std::string marker_header = "X-Wsguard-Ticket";
    // Per remote address (IPv6 by /64), spent before the subject is looked
    // at: caps login guessing and one address minting for many subjects.
    wsguard::rate address_rate = rate::per_minute(120);
    std::uint32_t address_burst = 60;
    std::size_t address_table_capacity = 65536;
    address_key_options address_options{};
    // Per authenticated subject: a page fetches one ticket per socket it opens.
    wsguard::rate subject_rate = rate::per_minute(30);
    std::uint32_t subject_burst = 20;
    std::size_t subject_table_capacity = 65536;
    // How long a browser may cache an allowed preflight (Access-Control-Max-Age).
    // Chromium caps it at 2 hours, Firefox at 24.
    std::chrono::seconds preflight_max_age{600};
};

// One response header to send: views into the request and the guard.
struct http_header {
    std::string_view name;
    std::string_view value;
};

// The verdict on one request, with the exact headers the response carries.
// Borrows from the mint_request (the allowed origin) and the guard.
class [[nodiscard]] mint_answer {
public:
    static constexpr std::size_t max_headers = 6;

    wsguard::decision decision;

    bool allowed() const noexcept { return decision.allowed(); }
    explicit operator bool() const noexcept { return allowed(); }
    // Allowed: 204 for a preflight, 200 for the POST (the application writes
    // the ticket into the body). Refused: the reason's status (403, 405, 429, ...).
    int http_status() const noexcept { return allowed() ? success_status_ : decision.http_status(); }
    // > 0: send "Retry-After: <n>" (429).
    std::int64_t retry_after_seconds() const noexcept { return decision.retry_after_seconds(); }
    // A short plain-text body for a refusal: the reason's stable name.
    std::string_view body() const noexcept { return allowed() ? std::string_view() : to_string(decision.reason); }
    // The response headers, allowed or refused (Vary: Origin always; the
    // Access-Control-Allow-* pair only for an allowed origin).
    const http_header* begin() const noexcept { return headers_.data(); }
    const http_header* end() const noexcept { return headers_.data() + header_count_; }
    std::size_t header_count() const noexcept { return header_count_; }

private:
    friend class mint_guard;
    void add(std::string_view name, std::string_view value) noexcept {
        if (header_count_ < max_headers) headers_[header_count_++] = http_header{name, value};
    }
    std::array<http_header, max_headers> headers_{};
    std::uint8_t header_count_ = 0;
    std::uint16_t success_status_ = 200;
};

class mint_guard {
public:
    static result<mint_guard> create(mint_config config);

    // POST /ticket. Allowed: issue the ticket for request.subject bound to
    // request.origin, answer 200 with the answer's headers. Thread-safe.
    mint_answer check(const mint_request& request) noexcept { return check(request, std::chrono::steady_clock::now()); }
    mint_answer check(const mint_request& request, std::chrono::steady_clock::time_point now) noexcept;

    // OPTIONS /ticket, the CORS preflight: allowed (204 with
    // Access-Control-Allow-Origin/-Credentials/-Methods/-Headers/-Max-Age and
    // Vary) only for an allowed origin asking for POST with the marker header
    // among Access-Control-Request-Headers; otherwise refused with
    // only Vary: Origin, so the browser never sends the POST. Spends no rate.
    mint_answer preflight(const mint_request& request) const noexcept;

    // The header name the page must send ("X-Wsguard-Ticket") with value "1".
    std::string_view marker_header() const noexcept { return marker_header_; }
    static constexpr std::string_view marker_value = "1";

private:
    mint_guard() = default;
    static std::string validate_marker(std::string_view name);
    decision decide(const mint_request& request, std::chrono::steady_clock::time_point now) noexcept;
    decision check_origin_and_site(const mint_request& request) const noexcept;
    void add_cors(mint_answer& answer, std::string_view origin) const noexcept;

    std::optional<origin_policy> origins_;
    fetch_site_policy fetch_site_ = fetch_site_policy::deny_cross_site;
    bool allow_cross_site_ = false;
    std::string marker_header_;
    std::string max_age_;
    address_key_options address_options_{};
    std::optional<keyed_limiter<address_key>> address_rate_;
    std::optional<keyed_limiter<std::string_view>> subject_rate_;
};

namespace detail {

inline bool mint_is_token_char(char c) noexcept {
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return true;
    return std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}

// Whether a header-name list (Access-Control-Request-Headers, e.g.
// "content-type,x-wsguard-ticket") names `header`, ASCII case-insensitive.
inline bool mint_lists_header(std::string_view list, std::string_view header) noexcept {
    return header_list_has(list, [header](std::string_view name) { return origin_iequal(name, header); });
}

}  // namespace detail

inline std::string mint_guard::validate_marker(std::string_view name) {
    if (name.empty() || name.size() > 64) return "marker_header must be 1 to 64 characters, e.g. X-Wsguard-Ticket";
    for (char c : name) {
        if (!detail::mint_is_token_char(c)) return "marker_header \"" + std::string(name) + "\" is not an HTTP token";
    }
    // CORS-safelisted headers need no preflight: they would prove nothing.
    for (std::string_view safelisted : {"accept", "accept-language", "content-language", "content-type", "range"}) {
        if (detail::origin_iequal(name, safelisted))
            return "marker_header \"" + std::string(name) +
                   "\" is CORS-safelisted: a cross-site page may send it without a preflight";
    }
    // Forbidden request headers: a page's script cannot set them at all.
    const std::string_view lower_prefix[] = {"sec-", "proxy-"};
    for (std::string_view prefix : lower_prefix) {
        if (name.size() >= prefix.size() && detail::origin_iequal(name.substr(0, prefix.size()), prefix))
            return "marker_header \"" + std::string(name) + "\" starts with " + std::string(prefix) +
                   ", which browsers forbid scripts to set";
    }
    for (std::string_view forbidden :
         {"accept-charset", "accept-encoding", "access-control-request-headers", "access-control-request-method",
          "connection", "content-length", "cookie", "cookie2", "date", "dnt", "expect", "host", "keep-alive", "origin",
          "referer", "set-cookie", "te", "trailer", "transfer-encoding", "upgrade", "via"}) {
        if (detail::origin_iequal(name, forbidden))
            return "marker_header \"" + std::string(name) + "\" is a header browsers forbid scripts to set";
    }
    return std::string();
}

inline result<mint_guard> mint_guard::create(mint_config config) {
    using failure = result<mint_guard>;
    mint_guard guard;
    auto origins = origin_policy::create(config.origins, config.origin_options);
    if (!origins) return failure::failure("mint_guard: " + origins.error());
    if (config.origin_options.allow_any_origin_unsafe)
        return failure::failure(
            "mint_guard: origin_options.allow_any_origin_unsafe would let every page fetch tickets with the "
            "user's cookies; list the origins of your pages");
    guard.origins_.emplace(std::move(origins).value());
    const std::string marker_error = validate_marker(config.marker_header);
    if (!marker_error.empty()) return failure::failure("mint_guard: " + marker_error);
    if (config.preflight_max_age < std::chrono::seconds(0) || config.preflight_max_age > std::chrono::hours(24))
        return failure::failure("mint_guard: preflight_max_age must be 0 to 86400 s (browsers cap it lower)");
    auto address_rate =
        keyed_limiter<address_key>::create(config.address_rate, config.address_burst, config.address_table_capacity);
    if (!address_rate) return failure::failure("mint_guard: address rate: " + address_rate.error());
    auto subject_rate = keyed_limiter<std::string_view>::create(config.subject_rate, config.subject_burst,
                                                                config.subject_table_capacity);
    if (!subject_rate) return failure::failure("mint_guard: subject rate: " + subject_rate.error());
    guard.fetch_site_ = config.fetch_site;
    guard.allow_cross_site_ = config.allow_cross_site;
    guard.marker_header_ = std::move(config.marker_header);
    guard.max_age_ = std::to_string(config.preflight_max_age.count());
    guard.address_options_ = config.address_options;
    guard.address_rate_.emplace(std::move(address_rate).value());
    guard.subject_rate_.emplace(std::move(subject_rate).value());
    return failure::success(std::move(guard));
}

inline decision mint_guard::check_origin_and_site(const mint_request& request) const noexcept {
    if (decision d = origins_->check(request.origin); !d) return d;
    if (allow_cross_site_ && request.sec_fetch_site == "cross-site") return decision::allow();
    return check_sec_fetch_site(request.sec_fetch_site, fetch_site_);
}

inline void mint_guard::add_cors(mint_answer& answer, std::string_view origin) const noexcept {
    // Only an origin that passed the allowlist is echoed; without it the
    // browser hides the answer from the page. Never "*": credentials need an
    // exact origin, and "*" would hand tickets to every page.
    if (!origin.empty()) {
        answer.add("Access-Control-Allow-Origin", origin);
        answer.add("Access-Control-Allow-Credentials", "true");
    }
}

inline mint_answer mint_guard::preflight(const mint_request& request) const noexcept {
    mint_answer answer;
    answer.success_status_ = 204;
    answer.add("Vary", "Origin");
    if (request.method != "OPTIONS") {
        answer.decision = reason::mint_method_not_post;
        return answer;
    }
    // A preflight always has an Origin: without one this is no browser's
    // preflight, and allow_missing_origin does not apply.
    if (request.origin.empty()) {
        answer.decision = reason::origin_missing;
        return answer;
    }
    if (decision d = check_origin_and_site(request); !d) {
        answer.decision = d;
        return answer;
    }
    // Access-Control-Request-Method is case-sensitive (Fetch: methods are
    // normalized only for DELETE/GET/HEAD/OPTIONS/POST/PUT, and fetch() sends "POST").
    if (request.access_control_request_method != "POST") {
        answer.decision = reason::mint_method_not_post;
        return answer;
    }
    // A browser lists the non-safelisted headers the POST will carry: without
    // the marker among them, the POST would be refused anyway.
    if (!detail::mint_lists_header(request.access_control_request_headers, marker_header_)) {
        answer.decision = reason::mint_not_preflighted;
        return answer;
    }
    add_cors(answer, request.origin);
    answer.add("Access-Control-Allow-Methods", "POST");
    answer.add("Access-Control-Allow-Headers", marker_header_);
    answer.add("Access-Control-Max-Age", max_age_);
    return answer;
}

inline mint_answer mint_guard::check(const mint_request& request, std::chrono::steady_clock::time_point now) noexcept {
    mint_answer answer;
    answer.add("Vary", "Origin");
    answer.decision = decide(request, now);
    if (answer.decision.reason == reason::mint_method_not_post) answer.add("Allow", "POST, OPTIONS");
    // The pair is sent whenever the origin itself passed, also on a later
    // refusal (429, 401), so an allowed page can read why and when to retry.
    if (!request.origin.empty() && check_origin_and_site(request)) add_cors(answer, request.origin);
    return answer;
}

inline decision mint_guard::decide(const mint_request& request, std::chrono::steady_clock::time_point now) noexcept {
    if (request.method != "POST") return reason::mint_method_not_post;
    if (decision d = check_origin_and_site(request); !d) return d;
    if (request.marker != marker_value) return reason::mint_not_preflighted;
    const std::optional<address_key> address =
        request.remote_address_bytes != nullptr
            ? address_key::from_bytes(request.remote_address_bytes, request.remote_address_size, address_options_)
            : address_key::from_endpoint_text(request.remote_address, address_options_);
    if (!address) return reason::address_malformed;
    if (decision d = address_rate_->try_acquire(*address, now); !d) return d;  // rate_limited
    if (request.subject.empty()) return reason::mint_subject_missing;
    if (request.subject.size() > ticket_limits::max_subject) return reason::ticket_field_too_long;
    if (decision d = subject_rate_->try_acquire(request.subject, now); !d)
        return decision(reason::mint_rate_limited, d.retry_after);
    return decision::allow();
}

}  // inline namespace WSGUARD_ABI_NS
}  // namespace wsguard
// ===========================================================================
// 10. handshake_guard: the one call that composes them
// ===========================================================================

namespace wsguard {
inline namespace WSGUARD_ABI_NS {

// What a stack knows about one upgrade request, borrowed for the call. Every
// field is the raw header value as the stack's parser gives it; an empty view
// means the header was absent.
struct upgrade_request {
    std::string_view method = {};                  // "GET"
    std::string_view path = {};                    // "/ws"; a "?query" tail is split off if present
    std::string_view query = {};                   // "ticket=..." without '?'; may be empty
    std::string_view origin = {};                  // Origin
    std::string_view host = {};                    // Host
    std::string_view sec_fetch_site = {};          // Sec-Fetch-Site
    std::string_view sec_websocket_protocol = {};  // Sec-WebSocket-Protocol, e.g. "wsguard.v1, <ticket>"
    // The socket's peer: "203.0.113.7", "203.0.113.7:5000", "[2001:db8::1]:443".
    // Behind a PROXY protocol balancer, the header's source instead (after
    // checking the balancer is trusted): proxy_header::source_text(), or
    // source_bytes() with size 16 below; for LOCAL/UNKNOWN, the socket's peer.
    std::string_view remote_address = {};
    // Raw peer address (4 or 16 bytes, network order); used instead of
    // remote_address when set, so stacks with a sockaddr need not format it.
    const std::uint8_t* remote_address_bytes = nullptr;
    std::size_t remote_address_size = 0;
    // Every Forwarded (RFC 7239) line and every X-Forwarded-For line, each
    // joined with ", " in arrival order. Read only when the config has
    // trusted_proxies and the peer is one of them; otherwise ignored.
    std::string_view forwarded = {};
    std::string_view x_forwarded_for = {};
    // Origin, Host, Sec-Fetch-Site or Sec-WebSocket-Protocol came on more than
    // one line: refused as security_header_repeated before any is read.
    // upgrade_request_builder sets it; a stack that fills the fields by hand
    // must count the lines itself.
    bool repeated_security_header = false;
    // The Forwarded / X-Forwarded-For lines did not fit upgrade_request_builder's
    // buffer: refused as request_malformed, as one line over max_field_bytes is.
    bool forwarded_over_cap = false;
};

// Fills an upgrade_request from the stack's own header iteration, so that no
// stack copies the field assignments by hand or misses a repeated header. Feed
// it every header line in arrival order; names compare case-insensitively,
// values are kept as views of the stack's storage (which must outlive the
// check). No allocation, no exceptions.
//
//   wsguard::upgrade_request_builder build(method, target);  // target: "/ws?ticket=..."
//   for (const auto& [name, value] : headers) build.add(name, value);
//   build.request().remote_address = peer;                    // the stack knows the peer
//   wsguard::handshake_outcome outcome = guard.check(build.request());
//
// - Origin, Host, Sec-Fetch-Site and Sec-WebSocket-Protocol must come on one
//   line each; a second line sets repeated_security_header. Two lines are two
//   chances for parsers to disagree (a proxy or a log reads the first, the
//   stack the last). RFC 6454 7.3: one Origin; RFC 9112 3.2: 400 for more
//   than one Host; Fetch: one Sec-Fetch-Site. RFC 6455 11.3.4 lets
//   Sec-WebSocket-Protocol repeat as a split list, but it carries the ticket,
//   and browsers (and Node ws, Python websockets, Go) send one line: a split
//   list is refused rather than read one way here and another by the stack
//   that picks the subprotocol.
// - Forwarded and X-Forwarded-For legitimately repeat (a line per proxy):
//   their lines are joined with ", " in arrival order (empty lines add no
//   element). One line stays a view; from the second on they are copied into
//   a fixed buffer of JoinBytes per header inside the builder. A join that
//   does not fit sets forwarded_over_cap, which the guard refuses: never
//   truncated, since a cut list would name another client. Keep JoinBytes at
//   least handshake_config::max_field_bytes (both 4096 by default), so the
//   builder is never stricter than the guard.
// The request's views point into the builder: keep it alive, in place (it
// cannot be copied), until check() returns.
template <std::size_t JoinBytes = 4096>
class basic_upgrade_request_builder {
public:
    basic_upgrade_request_builder(std::string_view method, std::string_view target) noexcept {
        request_.method = method;
        request_.path = target;  // the guard splits a "?query" tail off
    }
    basic_upgrade_request_builder(const basic_upgrade_request_builder&) = delete;
    basic_upgrade_request_builder& operator=(const basic_upgrade_request_builder&) = delete;

    // One header line, name and value as the stack parsed them. Other names are ignored.
    void add(std::string_view name, std::string_view value) noexcept {
        if (header_name_is(name, "origin")) once(request_.origin, value, 1u);
        else if (header_name_is(name, "host")) once(request_.host, value, 2u);
        else if (header_name_is(name, "sec-fetch-site")) once(request_.sec_fetch_site, value, 4u);
        else if (header_name_is(name, "sec-websocket-protocol")) once(request_.sec_websocket_protocol, value, 8u);
        else if (header_name_is(name, "forwarded")) join(request_.forwarded, value, forwarded_);
        else if (header_name_is(name, "x-forwarded-for")) join(request_.x_forwarded_for, value, x_forwarded_for_);
    }

    // The request so far; set the remote address fields on it before check().
    upgrade_request& request() noexcept { return request_; }
    const upgrade_request& request() const noexcept { return request_; }

private:
    // Whether a header name equals `lower` (lowercase ASCII), ignoring case.
    static constexpr bool header_name_is(std::string_view name, std::string_view lower) noexcept {
        if (name.size() != lower.size()) return false;
        for (std::size_t i = 0; i < name.size(); ++i) {
            if (detail::ascii_lower(name[i]) != lower[i]) return false;
        }
        return true;
    }

    void once(std::string_view& field, std::string_view value, unsigned bit) noexcept {
        if ((seen_ & bit) != 0) {
            request_.repeated_security_header = true;
            return;
        }
        seen_ |= bit;
        field = value;
    }

    void join(std::string_view& field, std::string_view value, std::array<char, JoinBytes>& buffer) noexcept {
        if (value.empty() || request_.forwarded_over_cap) return;
        if (field.empty()) {
            field = value;  // one line: a view of the stack's own value
            return;
        }
        const std::size_t size = field.size();
        if (value.size() > JoinBytes || size + 2 > JoinBytes - value.size()) {
            request_.forwarded_over_cap = true;
            field = {};
            return;
        }
        if (field.data() != buffer.data()) std::memcpy(buffer.data(), field.data(), size);  // the first line
        buffer[size] = ',';
        buffer[size + 1] = ' ';
        std::memcpy(buffer.data() + size + 2, value.data(), value.size());
        field = std::string_view(buffer.data(), size + 2 + value.size());
    }

    upgrade_request request_;
    unsigned seen_ = 0;  // one bit per once() header
    std::array<char, JoinBytes> forwarded_;
    std::array<char, JoinBytes> x_forwarded_for_;
};
using upgrade_request_builder = basic_upgrade_request_builder<>;

// How a route authenticates its handshakes.
enum class ticket_requirement : std::uint8_t {
    required,  // a valid one-time ticket or no upgrade (the default)
    none,      // no ticket: the application authenticates some other way
};

// One endpoint. Two routes may have different allowlists and audiences.
struct route_config {
    std::string path = {};                    // exact path, e.g. "/ws"
    std::vector<std::string> origins = {};    // origin_policy patterns
    wsguard::origin_options origin_options{};  // e.g. allow_missing_origin for native clients
    std::vector<std::string> hosts = {};      // host_allowlist patterns; empty: Host is not checked
    bool deny_cross_site = true;              // refuse Sec-Fetch-Site: cross-site
    ticket_requirement ticket = ticket_requirement::required;
    std::string audience = {};                // what the issuer bound the ticket to, e.g. "app.example.com/ws"
    bool ticket_in_query = true;              // accept "?ticket=" when the subprotocol carries none
    // Concurrent connections per verified ticket subject (user); 0: no cap.
    // At the cap a new connection is refused (too_many_connections_for_subject),
    // never an old one evicted: evicting would let a stolen ticket's holder
    // disconnect the real user, and the refused client can retry or close a tab.
    std::uint32_t max_connections_per_subject = 0;
};

// One refusal, as the logging hook sees it. Every text is bounded, printable
// ASCII (anything else shown as '?'), so it is safe to write to a log line.
WSGUARD_DETAIL_SET_DEPRECATED_BEGIN  // quiet implicit members: see the macro
struct refusal_event {
    wsguard::decision decision;  // the refusal, with its retry_after when it sets one
    std::string_view route;    // the configured path, or the request's (truncated) when no route matched
    std::string_view origin;   // lowercased, truncated Origin ("" when absent)
    // The client's rate-limit key: "192.0.2.1" or "2001:db8:0:1::/64" (RFC 5952),
    // the client behind trusted proxies, for every refusal; when the client
    // could not be resolved, the proxy that sent the request, or the
    // sanitized, truncated peer text when even that is not an address.
    std::string_view address;
    // 0.1 spelling, set by the library alongside decision.
    [[deprecated("use refusal_event::decision.reason; removed in 0.3")]]
    wsguard::reason reason = wsguard::reason::ok;
};
WSGUARD_DETAIL_SET_DEPRECATED_END

template <class ReplayStore>
struct basic_handshake_config {
    std::vector<route_config> routes;
    // Verifies tickets for every route that requires one; must outlive the guard.
    const ticket_verifier<ReplayStore>* verifier = nullptr;

    // Per-address handshake rate (token bucket) and concurrent connection cap.
    std::uint64_t handshakes_per_second = 10;
    std::uint32_t handshake_burst = 20;
    std::uint32_t max_connections_per_address = 32;
    std::uint32_t max_connections_total = 100000;
    std::size_t address_table_capacity = 65536;  // distinct addresses tracked at once (fixed memory)
    address_key_options address_options{};       // IPv6 grouped by /64 by default
    std::size_t subject_table_capacity = 65536;  // subjects tracked at once per capped route (exact)

    // Bans a client after repeated forged tickets, checked before any MAC is
    // computed (penalty_box; on by default: 20 forgeries, then 5 minutes).
    penalty_options penalty{};

    // The proxies in front of the server. When set, the client that the
    // per-address rate limit, connection cap, penalty box and refusal reports
    // use is trusted_proxies->resolve(peer, forwarded, x_forwarded_for), and a
    // refusal of the resolver (forwarded_malformed, ...) is the decision.
    std::optional<wsguard::trusted_proxies> trusted_proxies;

    // A header longer than this is refused as request_malformed before any parsing.
    std::size_t max_field_bytes = 4096;

    // Called once per refusal, at most refusal_reports_per_second (burst
    // refusal_report_burst); further refusals are only counted.
    std::function<void(const refusal_event&)> on_refusal;
    std::uint64_t refusal_reports_per_second = 20;
    std::uint32_t refusal_report_burst = 50;
};
using handshake_config = basic_handshake_config<memory_replay_store>;

// The slots one upgraded connection holds: its address's connection slot and,
// on a route with max_connections_per_subject, its subject's. Keep it as long
// as the connection; destroying it (or release()) gives both back.
class handshake_permit {
public:
    handshake_permit() noexcept = default;

    // True while the permit holds the connection (not after release()).
    explicit operator bool() const noexcept { return static_cast<bool>(address_); }
    // ok, or the refusal that stopped the connection (too_many_connections,
    // too_many_connections_for_subject). A default-constructed permit reads
    // as refused.
    wsguard::decision decision() const noexcept { return decision_; }
    // Gives both slots back now. Idempotent.
    void release() noexcept {
        subject_.release();
        address_.release();
    }

    const connection_limiter<address_key>::permit& address() const noexcept { return address_; }
    const connection_limiter<std::string_view>::permit& subject() const noexcept { return subject_; }

private:
    template <class>
    friend class basic_handshake_guard;

    connection_limiter<address_key>::permit address_;
    connection_limiter<std::string_view>::permit subject_;
    wsguard::decision decision_{reason::too_many_connections, connection_limiter<address_key>::refusal_retry_after};
};

// What the stack must do with one upgrade request.
class [[nodiscard]] handshake_outcome {
public:
    using connection_permit = handshake_permit;

    wsguard::decision decision;

    bool allowed() const noexcept { return decision.allowed(); }
    explicit operator bool() const noexcept { return allowed(); }
    // 0 when allowed (answer 101); otherwise the status to answer instead.
    int http_status() const noexcept { return decision.http_status(); }
    // A short plain-text body for the refusal: the reason's stable name.
    std::string_view body() const noexcept { return allowed() ? std::string_view() : to_string(decision.reason); }
    // > 0: send "Retry-After: <n>" with the refusal (429).
    std::int64_t retry_after_seconds() const noexcept { return decision.retry_after_seconds(); }
    // The Sec-WebSocket-Protocol value to answer with ("wsguard.v1"), or empty
    // for none. Never the ticket: echoing it would log it in every proxy.
    std::string_view subprotocol() const noexcept { return subprotocol_; }
    // The verified ticket's claims (subject, scopes); empty without a ticket.
    const ticket_claims& claims() const noexcept { return claims_; }
    // The route that matched (its configured path), empty if none did.
    std::string_view route() const noexcept { return route_; }

    // Keep this alive as long as the connection: destroying it (or the
    // outcome) gives the per-address (and per-subject) connection slots back.
    connection_permit& permit() noexcept { return permit_; }
    connection_permit take_permit() noexcept { return std::move(permit_); }

private:
    template <class>
    friend class basic_handshake_guard;

    std::string_view subprotocol_;
    std::string_view route_;
    ticket_claims claims_;
    connection_permit permit_;
};

// Reason phrase for a status line ("403 Forbidden"): refusals, and the ticket endpoint's 200 and 204.
constexpr std::string_view http_reason_phrase(int status) noexcept {
    switch (status) {
        case 200: return "OK";
        case 204: return "No Content";
        case 400: return "Bad Request";
        case 401: return "Unauthorized";
        case 403: return "Forbidden";
        case 404: return "Not Found";
        case 405: return "Method Not Allowed";
        case 408: return "Request Timeout";
        case 429: return "Too Many Requests";
        case 431: return "Request Header Fields Too Large";
        case 500: return "Internal Server Error";
        case 503: return "Service Unavailable";
        default: return "Error";
    }
}

// basic_handshake_guard's log and counter helpers, defined below the class.
namespace detail {
constexpr std::size_t handshake_reason_index(reason r) noexcept;
template <std::size_t N>
inline std::string_view handshake_log_text(std::string_view text, std::array<char, N>& out) noexcept;
inline std::string_view handshake_address_text(const address_key& key, unsigned ipv6_prefix,
                                               std::array<char, 48>& out) noexcept;
inline bool handshake_offers_protocol(std::string_view header, std::string_view protocol) noexcept;
}  // namespace detail

// Composes the components for one upgrade request, cheapest checks first:
// request shape → route → Origin / Host / Sec-Fetch-Site → penalty box →
// per-address rate and connection cap → ticket → per-subject cap (the MAC is
// the expensive step, so it comes late: a flood of forged tickets is rate
// limited, and its sender banned, before it is verified).
template <class ReplayStore = memory_replay_store>
class basic_handshake_guard {
public:
    using config = basic_handshake_config<ReplayStore>;

    static result<basic_handshake_guard> create(config cfg) {
        using failure = result<basic_handshake_guard>;
        if (cfg.routes.empty()) return failure::failure("handshake_guard: configure at least one route");
        if (cfg.max_field_bytes < 256) return failure::failure("handshake_guard: max_field_bytes must be at least 256");
        basic_handshake_guard guard;
        for (route_config& rc : cfg.routes) {
            const std::string where = "handshake_guard route \"" + rc.path + "\": ";
            if (rc.path.empty() || rc.path.front() != '/' || rc.path.find('?') != std::string::npos)
                return failure::failure(where + "path must start with '/' and hold no query");
            for (const route& existing : guard.routes_) {
                if (existing.path == rc.path) return failure::failure(where + "path is configured twice");
            }
            auto origins = origin_policy::create(rc.origins, rc.origin_options);
            if (!origins) return failure::failure(where + origins.error());
            std::optional<host_allowlist> hosts;
            if (!rc.hosts.empty()) {
                auto allowlist = host_allowlist::create(rc.hosts);
                if (!allowlist) return failure::failure(where + allowlist.error());
                hosts.emplace(std::move(allowlist).value());
            }
            if (rc.ticket == ticket_requirement::required) {
                if (cfg.verifier == nullptr)
                    return failure::failure(where + "requires tickets but the config has no verifier");
                if (rc.audience.empty())
                    return failure::failure(where + "requires tickets but has no audience (e.g. \"app.example.com" +
                                            rc.path + "\")");
            }
            std::optional<connection_limiter<std::string_view>> subjects;
            if (rc.max_connections_per_subject != 0) {
                if (rc.ticket != ticket_requirement::required)
                    return failure::failure(where + "max_connections_per_subject needs tickets (the subject is the ticket's)");
                auto limiter = connection_limiter<std::string_view>::create(
                    {rc.max_connections_per_subject, cfg.subject_table_capacity});
                if (!limiter) return failure::failure(where + limiter.error());
                subjects.emplace(std::move(limiter).value());
            }
            guard.routes_.push_back(route{rc.path, std::move(origins).value(), std::move(hosts), rc.deny_cross_site,
                                          rc.ticket, rc.audience, rc.ticket_in_query, std::move(subjects)});
        }
        if (cfg.penalty.enabled) {
            auto penalty = penalty_box::create(cfg.penalty);
            if (!penalty) return failure::failure("handshake_guard: " + penalty.error());
            guard.penalty_.emplace(std::move(penalty).value());
        }
        auto rate = keyed_limiter<address_key>::create(
            {wsguard::rate::per_second(cfg.handshakes_per_second), cfg.handshake_burst, cfg.address_table_capacity});
        if (!rate) return failure::failure("handshake_guard: " + rate.error());
        auto connections = connection_limiter<address_key>::create(
            {cfg.max_connections_per_address, cfg.address_table_capacity, cfg.max_connections_total});
        if (!connections) return failure::failure("handshake_guard: " + connections.error());
        auto reports = token_bucket::create(
            {wsguard::rate::per_second(cfg.refusal_reports_per_second), cfg.refusal_report_burst});
        if (!reports) return failure::failure("handshake_guard: refusal reports: " + reports.error());

        guard.verifier_ = cfg.verifier;
        guard.rate_.emplace(std::move(rate).value());
        guard.connections_.emplace(std::move(connections).value());
        // One seed for the three address tables, still empty here, so that a
        // check hashes its client once (decide). A seed only has to be secret
        // and per process for flooding resistance; tables need not differ.
        guard.connections_->table_->seed = guard.rate_->seed_;
        if (guard.penalty_) guard.penalty_->table_.seed_ = guard.rate_->seed_;
        guard.report_budget_.reset(new (std::nothrow) token_bucket(std::move(reports).value()));
        guard.counters_.reset(new (std::nothrow) counters());
        if (!guard.report_budget_ || !guard.counters_) return failure::failure("handshake_guard: out of memory");
        guard.address_options_ = cfg.address_options;
        guard.trusted_proxies_ = std::move(cfg.trusted_proxies);
        guard.max_field_bytes_ = cfg.max_field_bytes;
        guard.on_refusal_ = std::move(cfg.on_refusal);
        return failure::success(std::move(guard));
    }

    WSGUARD_DETAIL_HOT handshake_outcome check(const upgrade_request& request) noexcept {
        return check(request, std::chrono::steady_clock::now(), std::chrono::system_clock::now());
    }

    // `steady_now` drives the rate limits, `wall_now` the ticket lifetime.
    WSGUARD_DETAIL_HOT handshake_outcome check(const upgrade_request& request, std::chrono::steady_clock::time_point steady_now,
                                               std::chrono::system_clock::time_point wall_now) noexcept {
        handshake_outcome out;
        // Resolved up front (a few dozen nanoseconds, bounded, no allocation)
        // so that every refusal report names the client, also those decided
        // before the rate limits.
        const client_address client = resolve_client(request);
        out.decision = decide(request, steady_now, wall_now, out, client);
        if (!out.allowed()) {
            out.permit_.release();
            out.subprotocol_ = {};
            out.claims_.clear();
            report(out.decision, request, out.route_, client, steady_now);
        }
        counters_->by_reason[detail::handshake_reason_index(out.decision.reason)].fetch_add(1, std::memory_order_relaxed);
        return out;
    }

    // How many requests ended with `r` since construction (ok counts upgrades).
    std::uint64_t count(reason r) const noexcept {
        return counters_->by_reason[detail::handshake_reason_index(r)].load(std::memory_order_relaxed);
    }
    // Refusals counted but not passed to on_refusal (over the report rate).
    std::uint64_t suppressed_reports() const noexcept { return counters_->suppressed.load(std::memory_order_relaxed); }
    // Live connections across all addresses (permits not yet released).
    std::uint32_t live_connections() const noexcept { return connections_->total(); }

private:
    struct route {
        std::string path;
        origin_policy origins;
        std::optional<host_allowlist> hosts;
        bool deny_cross_site;
        ticket_requirement ticket;
        std::string audience;
        bool ticket_in_query;
        // max_connections_per_subject; mutable: routes are matched through const
        // pointers, and the limiter synchronises itself.
        mutable std::optional<connection_limiter<std::string_view>> subjects;
    };
    struct counters {
        std::array<std::atomic<std::uint64_t>, std::size(detail::reason_table) + 1> by_reason{};
        std::atomic<std::uint64_t> suppressed{0};
    };

    basic_handshake_guard() = default;

    bool field_too_long(const upgrade_request& r) const noexcept {
        for (std::string_view field : {r.method, r.path, r.query, r.origin, r.host, r.sec_fetch_site,
                                       r.sec_websocket_protocol, r.remote_address, r.forwarded, r.x_forwarded_for}) {
            if (field.size() > max_field_bytes_) return true;
        }
        return false;
    }

    WSGUARD_DETAIL_HOT decision decide(const upgrade_request& request, std::chrono::steady_clock::time_point steady_now,
                                       std::chrono::system_clock::time_point wall_now, handshake_outcome& out,
                                       const client_address& client) noexcept {
        // 1. Request shape and route.
        if (field_too_long(request) || request.forwarded_over_cap) return reason::request_malformed;
        if (request.repeated_security_header) return reason::security_header_repeated;
        if (request.method != "GET") return reason::method_not_get;
        std::string_view path = request.path;
        std::string_view query = request.query;
        if (const std::size_t mark = path.find('?'); mark != std::string_view::npos) {
            if (query.empty()) query = path.substr(mark + 1);
            path = path.substr(0, mark);
        }
        const route* matched = nullptr;
        for (const route& r : routes_) {
            if (r.path == path) {
                matched = &r;
                break;
            }
        }
        if (matched == nullptr) return reason::route_not_found;
        out.route_ = matched->path;

        // 2. Origin, Host, Sec-Fetch-Site: string checks, no state.
        if (decision d = matched->origins.check(request.origin); !d) return d;
        if (matched->hosts) {
            if (decision d = matched->hosts->check(request.host); !d) return d;
        }
        if (matched->deny_cross_site) {
            if (decision d = check_sec_fetch_site(request.sec_fetch_site); !d) return d;
        }

        // 3. Per-client penalty box, rate limit, then the connection cap.
        if (!client) return client.decision;
        const address_key address = client.key(address_options_);
        // Every table line the check will touch is requested here, together:
        // with large tables each is a cache miss, and waited for one after
        // another they cost more than the MAC (issue 11). The replay store's
        // line then arrives while the MAC is computed. Only public inputs (the
        // address, the ticket's nonce) choose the lines.
        // The three tables share one seed (create): one hash serves them all.
        const detail::limits_key_traits<address_key>::digest address_digest = rate_->prepare(address);
        if (penalty_) penalty_->prefetch(address_digest);
        connections_->prefetch(address_digest);
        ticket_source source;
        detail::ticket_head head;  // decoded once, here and in verify
        if (matched->ticket == ticket_requirement::required) {
            source = ticket_from_subprotocol(request.sec_websocket_protocol);
            if (!source && matched->ticket_in_query) source = ticket_from_query(query);
            if (source) {
                if (const detail::replay_slot* slot = verifier_->spend_slot(presented_ticket(source.ticket), head))
                    detail::limits_prefetch(*slot);
            }
        }
        if (penalty_) {
            if (decision d = penalty_->check_prepared(address_digest, steady_now); !d) return d;
        }
        if (decision d = rate_->try_acquire_prepared(address_digest, steady_now); !d) return d;
        out.permit_.address_ = connections_->try_acquire_prepared(address_digest);
        out.permit_.decision_ = out.permit_.address_.decision();
        if (!out.permit_) return out.permit_.decision();

        // 4. The ticket: MAC and replay store last.
        if (matched->ticket == ticket_requirement::none) return decision::allow();
        if (!source) return source.decision;
        if (decision d = verifier_->verify_from(presented_ticket(source.ticket), &head, expected_origin(request.origin),
                                                expected_audience(matched->audience), out.claims_, wall_now); !d) {
            if (penalty_) static_cast<void>(penalty_->record_failure(address, d.reason, steady_now));
            return d;
        }
        // 5. Per-subject cap, once the subject is authentic (the ticket is spent).
        if (matched->subjects) {
            out.permit_.subject_ = matched->subjects->try_acquire(out.claims_.subject());
            if (!out.permit_.subject_) {
                out.permit_.decision_ = decision(reason::too_many_connections_for_subject,
                                                 connection_limiter<std::string_view>::refusal_retry_after);
                return out.permit_.decision_;
            }
        }
        // Echo the marker whenever the client offered it (also with a query
        // ticket): clients such as Node's ws fail a connection whose offered
        // subprotocols all went unanswered.
        if (detail::handshake_offers_protocol(request.sec_websocket_protocol, ticket_subprotocol))
            out.subprotocol_ = ticket_subprotocol;
        return decision::allow();
    }

    // The client: the peer itself, or the client behind trusted proxies.
    WSGUARD_DETAIL_HOT client_address resolve_client(const upgrade_request& r) const noexcept {
        const bool raw = r.remote_address_bytes != nullptr;
        if (!trusted_proxies_)
            return raw ? client_address::from_peer_bytes_untexted(r.remote_address_bytes, r.remote_address_size)
                       : client_address::from_peer(r.remote_address);
        return raw ? trusted_proxies_->resolve_bytes(r.remote_address_bytes, r.remote_address_size, r.forwarded,
                                                     r.x_forwarded_for)
                   : trusted_proxies_->resolve(r.remote_address, r.forwarded, r.x_forwarded_for);
    }

    void report(wsguard::decision d, const upgrade_request& request, std::string_view route_path, const client_address& client,
                std::chrono::steady_clock::time_point now) noexcept {
        if (!on_refusal_) return;
        if (!report_budget_->try_acquire(now)) {
            counters_->suppressed.fetch_add(1, std::memory_order_relaxed);
            return;
        }
        std::array<char, 128> origin_text{};
        std::array<char, 64> route_text{};
        std::array<char, 48> address_text{};
        refusal_event event;
        event.decision = d;
        WSGUARD_DETAIL_SET_DEPRECATED_BEGIN
        event.reason = d.reason;
        WSGUARD_DETAIL_SET_DEPRECATED_END
        event.route = route_path.empty() ? detail::handshake_log_text(request.path, route_text) : route_path;
        event.origin = detail::handshake_log_text(request.origin, origin_text);
        // The client; else the proxy whose headers could not be resolved; else
        // the peer text, sanitized and truncated (raw bytes of a bad size: "").
        const client_address named = client ? client
                                     : request.remote_address_bytes != nullptr
                                         ? client_address::from_peer_bytes(request.remote_address_bytes,
                                                                           request.remote_address_size)
                                         : client_address::from_peer(request.remote_address);
        if (named) {
            event.address = detail::handshake_address_text(named.key(address_options_), address_options_.ipv6_prefix,
                                                           address_text);
        } else if (request.remote_address_bytes == nullptr) {
            event.address = detail::handshake_log_text(request.remote_address, address_text);
        }
        on_refusal_(event);
    }

    std::vector<route> routes_;
    const ticket_verifier<ReplayStore>* verifier_ = nullptr;
    std::optional<keyed_limiter<address_key>> rate_;
    std::optional<connection_limiter<address_key>> connections_;
    std::optional<penalty_box> penalty_;
    std::unique_ptr<token_bucket> report_budget_;
    std::unique_ptr<counters> counters_;
    address_key_options address_options_{};
    std::optional<trusted_proxies> trusted_proxies_;
    std::size_t max_field_bytes_ = 4096;
    std::function<void(const refusal_event&)> on_refusal_;
};

using handshake_guard = basic_handshake_guard<memory_replay_store>;

namespace detail {

// Index of a reason in reason_table, for per-reason counters.
constexpr std::size_t handshake_reason_index(reason r) noexcept {
    for (std::size_t i = 0; i < std::size(reason_table); ++i) {
        if (reason_table[i].value == r) return i;
    }
    return std::size(reason_table);  // the "unknown" counter
}

// Copies `text` into `out` for a log line: lowercased, printable ASCII only,
// truncated with "..." so a hostile header cannot forge or flood log lines.
template <std::size_t N>
inline std::string_view handshake_log_text(std::string_view text, std::array<char, N>& out) noexcept {
    static_assert(N > 3, "room for the ellipsis");
    const bool truncated = text.size() > N;
    const std::size_t n = truncated ? N - 3 : text.size();
    for (std::size_t i = 0; i < n; ++i) {
        const char c = ascii_lower(text[i]);
        out[i] = (c >= 0x21 && c <= 0x7e) ? c : '?';
    }
    if (!truncated) return std::string_view(out.data(), n);
    out[N - 3] = out[N - 2] = out[N - 1] = '.';
    return std::string_view(out.data(), N);
}

// "192.0.2.1" or "2001:db8:0:1::/64" (RFC 5952): the key the limiter counted.
inline std::string_view handshake_address_text(const address_key& key, unsigned ipv6_prefix,
                                               std::array<char, 48>& out) noexcept {
    std::uint8_t bytes[16];
    std::memcpy(bytes, key.bytes(), 16);
    char text[40];
    std::size_t n = proxy_address_text(bytes, text);
    std::memcpy(out.data(), text, n);
    if (!key.is_ipv4()) {
        const int suffix = std::snprintf(out.data() + n, out.size() - n, "/%u", ipv6_prefix > 128 ? 128 : ipv6_prefix);
        if (suffix > 0) n += static_cast<std::size_t>(suffix);
    }
    return std::string_view(out.data(), std::min(n, out.size() - 1));
}

// Whether the Sec-WebSocket-Protocol list offers `protocol` (case-sensitive).
inline bool handshake_offers_protocol(std::string_view header, std::string_view protocol) noexcept {
    return header_list_has(header, [protocol](std::string_view token) { return token == protocol; });
}

}  // namespace detail

}  // inline namespace WSGUARD_ABI_NS
}  // namespace wsguard


// ===========================================================================
// 11. Frames: frame_guard, inflate_budget
// ===========================================================================
//
// frame_guard reads the first bytes of each RFC 6455 frame (2 to 14 bytes of
// header) and decides, before any payload is buffered, whether the frame may be
// read at all: masking direction, RSV bits, opcodes, control-frame rules,
// minimal length encoding, fragmentation order (close 1002), frame and message
// size caps (1009) and an optional fragments-per-message cap (1008).
// inflate_budget stops a permessage-deflate decompression bomb while it inflates.

namespace wsguard {
inline namespace WSGUARD_ABI_NS {

// Which side of the connection the guard sits on. A server receives client
// frames, which RFC 6455 5.1 requires to be masked; a client receives server
// frames, which must not be.
enum class frame_role : std::uint8_t { server = 0, client = 1 };

// The 4-bit opcodes RFC 6455 5.2 defines. frame_verdict::opcode holds the raw
// value; it compares directly with these (verdict.opcode == frame_opcode::text).
enum class frame_opcode : std::uint8_t {
    continuation = 0x0,
    text = 0x1,
    binary = 0x2,
    close = 0x8,
    ping = 0x9,
    pong = 0xA,
};
constexpr bool operator==(std::uint8_t raw, frame_opcode op) noexcept { return raw == static_cast<std::uint8_t>(op); }
constexpr bool operator==(frame_opcode op, std::uint8_t raw) noexcept { return raw == op; }
constexpr bool operator!=(std::uint8_t raw, frame_opcode op) noexcept { return !(raw == op); }
constexpr bool operator!=(frame_opcode op, std::uint8_t raw) noexcept { return !(raw == op); }

// What the guard enforces on the frames it receives. An aggregate: either
// `frame_limits limits; limits.max_message_bytes = 1000;` or `frame_limits{1000}`.
// Every value is meaningful, so there is nothing to validate.
struct frame_limits {
    // Cap on one data message: the sum of its fragments' payloads (before any
    // permessage-deflate inflation; see inflate_budget for the inflated size).
    // Default 1 MiB. 0 allows only empty messages.
    std::uint64_t max_message_bytes = std::uint64_t{1} << 20;
    // Cap on one data frame's payload; 0 means "same as max_message_bytes".
    // Control frames are bounded by RFC 6455 (125 bytes) and not by these caps,
    // so a close handshake with a reason text always gets through.
    std::uint64_t max_frame_bytes = 0;
    // server: receive client frames (must be masked). client: the reverse.
    frame_role role = frame_role::server;
    // permessage-deflate (RFC 7692) was negotiated: RSV1 is then allowed on the
    // first frame of a data message (text or binary), never on a continuation
    // or a control frame. RSV2 and RSV3 stay refused.
    bool permessage_deflate = false;
    // Cap on the frames of one data message, the first one included; 0 = no cap.
    std::uint32_t max_fragments = 0;
};

// The answer to one frame_guard::inspect call: need more bytes, allowed (the
// header is valid and complete), or refused (close the connection with
// decision.close_code()).
WSGUARD_DETAIL_SET_DEPRECATED_BEGIN  // quiet implicit members: see the macro
class [[nodiscard]] frame_verdict {
public:
    enum class state : std::uint8_t { need_more = 0, allowed = 1, refused = 2 };

    // Why the frame was refused; ok while need_more (nothing refused yet) and
    // when allowed. After refused(), close with decision.close_code().
    detail::callable_decision decision;

    // When allowed(): the raw opcode (compare with frame_opcode), FIN, RSV1
    // (a compressed message under permessage-deflate) and the mask bit.
    std::uint8_t opcode = 0;
    bool fin = false;
    bool rsv1 = false;
    bool masked = false;
    // When allowed() and the frame belongs to a data message: the opcode of its
    // first frame (text or binary, also for continuations) and whether that
    // frame had RSV1 set (the message is compressed). For control frames, the
    // control opcode and false.
    std::uint8_t message_opcode = 0;
    bool message_compressed = false;
    // When allowed(): the masking key (zeros when the frame is not masked).
    std::array<std::uint8_t, 4> masking_key{};
    // When allowed(): bytes of header, masking key included (2, 4, 6, 8, 10 or
    // 14); the payload starts at data + header_size.
    // While need_more(): how many bytes the header needs at least (2 until the
    // second byte is seen, then the exact header size), so a reader can wait for
    // that many. 0 on refusal.
    std::size_t header_size = 0;
    // When allowed(): the payload length, already checked against the caps.
    std::uint64_t payload_length = 0;

    // 0.1 spellings, set by the library alongside decision and the state.
    [[deprecated("use frame_verdict::decision.reason; removed in 0.3")]]
    wsguard::reason reason = wsguard::reason::ok;
    [[deprecated("use need_more(), allowed(), refused(); removed in 0.3")]]
    state status = state::need_more;

    constexpr bool need_more() const noexcept { return state_ == state::need_more; }
    constexpr bool allowed() const noexcept { return state_ == state::allowed; }
    constexpr bool refused() const noexcept { return state_ == state::refused; }
    constexpr explicit operator bool() const noexcept { return allowed(); }
    // 0.1: 0 unless refused (decision.close_code() says 1000 for ok).
    [[deprecated("use decision.close_code() after refused(); removed in 0.3")]]
    constexpr int close_code() const noexcept { return refused() ? decision.close_code() : 0; }
    constexpr bool is_control() const noexcept { return (opcode & 0x8) != 0; }

private:
    friend class frame_guard;
    void settle(state s, wsguard::reason r) noexcept {
        state_ = s;
        decision = r;
        status = s;
        reason = r;
    }

    state state_ = state::need_more;
};
WSGUARD_DETAIL_SET_DEPRECATED_END

// Inspects the header of every frame a connection receives, in order, and keeps
// the message state across frames (fragmentation, cumulative size, fragment
// count). One guard per connection and direction; not thread-safe (a
// connection's reads are sequential). Never allocates, never throws.
class frame_guard {
public:
    frame_guard() noexcept : frame_guard(frame_limits{}) {}
    explicit frame_guard(const frame_limits& limits) noexcept
        : limits_(limits),
          frame_cap_(limits.max_frame_bytes != 0 ? limits.max_frame_bytes : limits.max_message_bytes),
          fragment_cap_(limits.max_fragments != 0 ? limits.max_fragments : std::numeric_limits<std::uint64_t>::max()),
          mask_bit_(limits.role == frame_role::client ? 0x00 : 0x80) {
        start_message_state();
    }

    // `data` holds the bytes available from the start of the next frame (any
    // number, possibly 0, possibly more than the header). Answers:
    // - need_more(): no violation yet, the header is incomplete. Nothing
    //   changed: call again with the same bytes plus more.
    // - allowed(): the header is valid and complete (size >= header_size).
    //   The guard has now accounted for this frame: consume header_size +
    //   payload_length bytes, then call inspect for the next frame.
    // - refused(): fail the connection with decision.close_code(). Sticky: every later
    //   call answers the same refusal until reset().
    // A refusal comes as soon as the bytes seen prove a violation (a bad opcode
    // after 1 byte, a bad mask bit after 2, a bad length after 2, 3, 4 or 10),
    // never before; the payload is never needed. When a header breaks several
    // rules, RFC 6455 violations (1002) win over caps, in byte order, then
    // frame_too_large, message_too_large, too_many_fragments; so every prefix of
    // the header answers need_more or the very refusal the whole header gets.
    frame_verdict inspect(const std::uint8_t* data, std::size_t size) noexcept;
    frame_verdict inspect(std::string_view bytes) noexcept {
        return inspect(reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size());
    }

    // Back to a fresh connection's state (no message, no refusal); limits kept.
    void reset() noexcept { *this = frame_guard(limits_); }

    const frame_limits& limits() const noexcept { return limits_; }
    // A fragmented data message is in progress (its final frame not yet seen).
    bool message_in_progress() const noexcept { return message_opcode_ != 0; }
    // Payload bytes and frames of the message in progress (0 when none).
    std::uint64_t message_bytes() const noexcept { return message_bytes_; }
    std::uint64_t message_fragments() const noexcept { return message_fragments_; }
    // The sticky refusal, or reason::ok.
    wsguard::reason refusal() const noexcept { return refusal_; }

private:
    frame_verdict refuse(wsguard::reason r) noexcept {
        refusal_ = r;
        legal_first_bytes_ = 0;  // every later frame takes the slow path, which repeats r
        frame_verdict v;
        v.settle(frame_verdict::state::refused, r);
        return v;
    }
    wsguard::reason first_byte_violation(std::uint8_t b0) const noexcept;
    void start_message_state() noexcept;

    frame_limits limits_;
    // Derived from limits_ once, for the hot path.
    std::uint64_t frame_cap_;
    std::uint64_t fragment_cap_;
    std::uint8_t mask_bit_;  // the mask bit every received frame must carry
    // Message state. Invariants: message_bytes_ <= max_message_bytes and
    // data_room_ == min(frame_cap_, max_message_bytes - message_bytes_), the
    // largest data frame allowed next.
    std::uint8_t message_opcode_ = 0;  // text or binary while a message is in progress, else 0
    bool message_compressed_ = false;
    wsguard::reason refusal_ = wsguard::reason::ok;
    std::uint64_t message_bytes_ = 0;
    std::uint64_t message_fragments_ = 0;
    std::uint64_t data_room_ = 0;
    std::uint64_t legal_first_bytes_ = 0;  // frame_legal_first_bytes for the state; 0 once refused
};

namespace detail {

// The first bytes a frame may start with, as a 64-bit set indexed by
// FIN, RSV1 and the opcode (bit FIN<<5 | RSV1<<4 | opcode): RFC 6455 5.2-5.5
// for a guard with or without permessage-deflate, inside or outside a
// fragmented message. RSV2 and RSV3 are never allowed and tested apart.
constexpr std::uint64_t frame_legal_first_bytes(bool deflate, bool in_message) noexcept {
    std::uint64_t legal = 0;
    for (unsigned index = 0; index < 64; ++index) {
        const bool fin = (index & 0x20u) != 0;
        const bool rsv1 = (index & 0x10u) != 0;
        const unsigned opcode = index & 0x0Fu;
        const bool control = opcode == 0x8 || opcode == 0x9 || opcode == 0xA;
        const bool starts_message = opcode == 0x1 || opcode == 0x2;
        bool ok = control ? fin : (opcode == 0x0 ? in_message : starts_message && !in_message);
        if (rsv1 && !(deflate && starts_message)) ok = false;
        if (ok) legal |= std::uint64_t{1} << index;
    }
    return legal;
}

// [permessage_deflate][in_message]
inline constexpr std::uint64_t frame_legal_first_bytes_table[2][2] = {
    {frame_legal_first_bytes(false, false), frame_legal_first_bytes(false, true)},
    {frame_legal_first_bytes(true, false), frame_legal_first_bytes(true, true)},
};

constexpr unsigned frame_first_byte_index(std::uint8_t b0) noexcept {
    return ((b0 >> 2) & 0x30u) | (b0 & 0x0Fu);  // FIN (bit 7) and RSV1 (bit 6) move to bits 5 and 4
}

}  // namespace detail

// The precise reason for a first byte the fast test rejected, in the
// documented order. Kept apart so the common path is one table test.
inline wsguard::reason frame_guard::first_byte_violation(std::uint8_t b0) const noexcept {
    if (refusal_ != wsguard::reason::ok) return refusal_;
    const unsigned opcode = b0 & 0x0Fu;
    const bool starts_message = opcode == 0x1 || opcode == 0x2;
    // Defined opcodes 0, 1, 2, 8, 9, A as a bit set; 3-7 and B-F are reserved.
    if (((0x0707u >> opcode) & 1u) == 0) return wsguard::reason::frame_reserved_opcode;
    if ((b0 & 0x30) != 0) return wsguard::reason::frame_reserved_bits;
    if ((b0 & 0x40) != 0 && !(limits_.permessage_deflate && starts_message)) return wsguard::reason::frame_reserved_bits;
    if ((b0 & 0x88) == 0x08) return wsguard::reason::control_frame_fragmented;
    if (opcode == 0x0 && message_opcode_ == 0) return wsguard::reason::unexpected_continuation;
    if (starts_message && message_opcode_ != 0) return wsguard::reason::expected_continuation;
    return wsguard::reason::internal_error;  // unreachable: the table and this list agree (tested)
}

inline frame_verdict frame_guard::inspect(const std::uint8_t* data, std::size_t size) noexcept {
    frame_verdict v;
    v.header_size = 2;
    if (size == 0) return refusal_ == wsguard::reason::ok ? v : refuse(refusal_);

    // Byte 0: FIN, RSV1-3, opcode. One table test for the common case (and for
    // a sticky refusal, whose table is empty).
    const std::uint8_t b0 = data[0];
    if (((legal_first_bytes_ >> detail::frame_first_byte_index(b0)) & 1u) == 0 || (b0 & 0x30) != 0) {
        return refuse(first_byte_violation(b0));
    }
    if (size < 2) return v;

    // Byte 1: mask bit and the 7-bit length (126: a 16-bit length follows,
    // 127: a 64-bit length follows).
    const std::uint8_t b1 = data[1];
    const unsigned opcode = b0 & 0x0Fu;
    const bool control = (b0 & 0x08) != 0;
    if ((b1 & 0x80) != mask_bit_) {
        return refuse(mask_bit_ != 0 ? wsguard::reason::frame_not_masked : wsguard::reason::frame_masked);
    }
    const std::uint8_t length7 = b1 & 0x7F;
    if (control) {
        if (length7 > 125) return refuse(wsguard::reason::control_frame_too_long);
        if (length7 == 1 && opcode == 0x8) return refuse(wsguard::reason::close_frame_length_one);
    }
    const std::size_t length_end = length7 == 127 ? 10 : length7 == 126 ? 4 : 2;
    const std::size_t header_size = length_end + (mask_bit_ != 0 ? 4 : 0);
    v.header_size = header_size;
    if (size < length_end) {
        // The top bit of a 64-bit length is in byte 2: refuse it without waiting.
        if (length7 == 127 && size > 2 && (data[2] & 0x80) != 0) return refuse(wsguard::reason::frame_length_msb_set);
        return v;
    }

    std::uint64_t length = length7;
    if (length7 == 126) {
        length = (std::uint64_t{data[2]} << 8) | data[3];
        if (length < 126) return refuse(wsguard::reason::frame_length_not_minimal);
    } else if (length7 == 127) {
        if ((data[2] & 0x80) != 0) return refuse(wsguard::reason::frame_length_msb_set);
        length = 0;
        for (std::size_t i = 2; i < 10; ++i) length = (length << 8) | data[i];
        if (length <= 0xFFFF) return refuse(wsguard::reason::frame_length_not_minimal);
    }

    // Caps apply to data frames; control frames are already at most 125 bytes.
    if (!control) {
        if (length > data_room_) {
            return refuse(length > frame_cap_ ? wsguard::reason::frame_too_large : wsguard::reason::message_too_large);
        }
        if (message_fragments_ >= fragment_cap_) return refuse(wsguard::reason::too_many_fragments);
    }
    if (size < header_size) return v;

    // Allowed: account for the frame. Control frames leave the message alone.
    const bool fin = (b0 & 0x80) != 0;
    v.settle(frame_verdict::state::allowed, wsguard::reason::ok);
    v.opcode = static_cast<std::uint8_t>(opcode);
    v.fin = fin;
    v.rsv1 = (b0 & 0x40) != 0;
    v.masked = mask_bit_ != 0;
    v.payload_length = length;
    if (mask_bit_ != 0) std::memcpy(v.masking_key.data(), data + length_end, 4);
    if (control) {
        v.message_opcode = static_cast<std::uint8_t>(opcode);
        return v;
    }
    if (opcode != 0x0) {
        message_opcode_ = static_cast<std::uint8_t>(opcode);
        message_compressed_ = v.rsv1;
    }
    v.message_opcode = message_opcode_;
    v.message_compressed = message_compressed_;
    if (fin) {
        message_opcode_ = 0;
        message_compressed_ = false;
        if (message_fragments_ != 0) start_message_state();
    } else {
        if (message_fragments_ == 0) legal_first_bytes_ = detail::frame_legal_first_bytes_table[limits_.permessage_deflate][1];
        ++message_fragments_;
        message_bytes_ += length;
        const std::uint64_t message_room = limits_.max_message_bytes - message_bytes_;
        data_room_ = frame_cap_ < message_room ? frame_cap_ : message_room;
    }
    return v;
}

inline void frame_guard::start_message_state() noexcept {
    message_opcode_ = 0;
    message_compressed_ = false;
    message_bytes_ = 0;
    message_fragments_ = 0;
    data_room_ = frame_cap_ < limits_.max_message_bytes ? frame_cap_ : limits_.max_message_bytes;
    legal_first_bytes_ = detail::frame_legal_first_bytes_table[limits_.permessage_deflate][0];
}

// Caps for inflating one permessage-deflate message.
struct inflate_limits {
    // Cap on the inflated size of one message. Default 1 MiB.
    std::uint64_t max_inflated_bytes = std::uint64_t{1} << 20;
    // Cap on inflated / compressed. Deflate reaches about 1032:1 on a bomb;
    // ordinary text and JSON stay well under 20:1. Default 100.
    std::uint64_t max_ratio = 100;
    // The ratio is enforced only once the inflated size passes this many bytes,
    // so tiny, very repetitive messages (a 10-byte frame inflating to 2 KiB)
    // are not refused. Default 4 KiB.
    std::uint64_t ratio_floor_bytes = 4096;
};

// Decides, after each chunk a server inflates, whether to keep inflating. The
// caller passes the running totals for the message (compressed bytes consumed,
// inflated bytes produced); a bomb is stopped after at most one output chunk
// past the budget. Stateless and const: one budget serves every connection.
class inflate_budget {
public:
    // Validates the limits; the error says which one is wrong.
    static result<inflate_budget> create(const inflate_limits& limits) {
        if (limits.max_inflated_bytes == 0) {
            return result<inflate_budget>::failure("inflate_budget: max_inflated_bytes must be greater than 0");
        }
        if (limits.max_ratio == 0) {
            return result<inflate_budget>::failure(
                "inflate_budget: max_ratio must be at least 1 (inflated bytes per compressed byte)");
        }
        return result<inflate_budget>::success(inflate_budget(limits));
    }
    static result<inflate_budget> create(std::uint64_t max_inflated_bytes, std::uint64_t max_ratio) {
        inflate_limits limits;
        limits.max_inflated_bytes = max_inflated_bytes;
        limits.max_ratio = max_ratio;
        return create(limits);
    }

    // Refuses with inflate_too_large once inflated_out passes max_inflated_bytes,
    // else with inflate_ratio_exceeded once inflated_out passes ratio_floor_bytes
    // and inflated_out > compressed_in * max_ratio (exact integer arithmetic,
    // no overflow). Equal to a bound is allowed.
    wsguard::decision check(std::uint64_t compressed_in, std::uint64_t inflated_out) const noexcept {
        if (inflated_out > limits_.max_inflated_bytes) return wsguard::decision::deny(wsguard::reason::inflate_too_large);
        if (inflated_out > limits_.ratio_floor_bytes && inflated_out > ratio_bound(compressed_in)) {
            return wsguard::decision::deny(wsguard::reason::inflate_ratio_exceeded);
        }
        return wsguard::decision::allow();
    }

    // The largest inflated_out that check(compressed_in, ...) allows: size the
    // next inflate output chunk to at most (this - produced so far) + 1 bytes
    // and a bomb never gets further than one byte past the budget.
    std::uint64_t max_output_for(std::uint64_t compressed_in) const noexcept {
        std::uint64_t bound = ratio_bound(compressed_in);
        if (bound < limits_.ratio_floor_bytes) bound = limits_.ratio_floor_bytes;
        return bound < limits_.max_inflated_bytes ? bound : limits_.max_inflated_bytes;
    }

    const inflate_limits& limits() const noexcept { return limits_; }

private:
    explicit inflate_budget(const inflate_limits& limits) noexcept : limits_(limits) {}

    // compressed_in * max_ratio, saturating (a saturated bound allows any size).
    std::uint64_t ratio_bound(std::uint64_t compressed_in) const noexcept {
        const std::uint64_t max = std::numeric_limits<std::uint64_t>::max();
        return compressed_in > max / limits_.max_ratio ? max : compressed_in * limits_.max_ratio;
    }

    inflate_limits limits_;
};

}  // inline namespace WSGUARD_ABI_NS
}  // namespace wsguard


#endif  // WSGUARD_HPP
