// Section 5 of wsguard.hpp (inlined into the release header). Not a public header.
// ===========================================================================
// 5. Tickets: keyring, issuer, verifier, replay store, transport helpers
// ===========================================================================
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
#ifndef WSGUARD_HPP
#error "include <wsguard.hpp>, not this file"
#endif

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

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

inline char ticket_ascii_lower(char c) noexcept { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c + 32) : c; }

// Origins are compared after the folding the Origin policy applies: scheme and
// host are case-insensitive and a default port (:443 for https/wss, :80 for
// http/ws) is dropped. Returns the folded length (never longer than the input).
inline std::size_t ticket_fold_origin(std::string_view origin, char* out) noexcept {
    for (std::size_t i = 0; i < origin.size(); ++i) out[i] = ticket_ascii_lower(origin[i]);
    const std::string_view folded(out, origin.size());
    const auto drop = [&](std::string_view scheme, std::string_view port) {
        return folded.size() > scheme.size() + port.size() && folded.compare(0, scheme.size(), scheme) == 0 &&
               folded.compare(folded.size() - port.size(), port.size(), port) == 0;
    };
    if (drop("https://", ":443") || drop("wss://", ":443")) return folded.size() - 4;
    if (drop("http://", ":80") || drop("ws://", ":80")) return folded.size() - 3;
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

struct ticket_key_entry {
    std::uint32_t id;
    hmac_sha256_key::stream after_domain;  // HMAC state with the domain block absorbed
    std::chrono::system_clock::time_point verify_until;  // max(): no end
};

inline hmac_sha256_key::stream ticket_mac_start(std::string_view secret) noexcept {
    std::uint8_t block[64] = {};
    std::memcpy(block, ticket_domain, sizeof ticket_domain - 1);
    hmac_sha256_key::stream mac = hmac_sha256_key(secret).begin();
    mac.update(block, sizeof block);
    return mac;
}

inline sha256_digest ticket_mac(const hmac_sha256_key::stream& after_domain, const std::uint8_t* bytes,
                                std::size_t size) noexcept {
    hmac_sha256_key::stream mac = after_domain;
    mac.update(bytes, size);
    return mac.finish();
}

}  // namespace detail

// ---------------------------------------------------------------------------
// keyring: HMAC keys by id. One key issues; older keys keep verifying until
// their verify_until, so tickets issued just before a rotation still work.
// ---------------------------------------------------------------------------
struct keyring_key {
    std::uint32_t id = 0;
    std::string_view secret;  // raw bytes, at least 32 (e.g. 32 bytes from a CSPRNG)
    // When set, the key stops verifying at this time (ticket_unknown_key after).
    // Rotating: keep the old key with verify_until = now + the longest ticket lifetime.
    std::optional<std::chrono::system_clock::time_point> verify_until;
};

class keyring {
public:
    static constexpr std::size_t max_keys = 16;
    static constexpr std::size_t min_secret_size = 32;

    static result<keyring> create(std::uint32_t issuing_key_id, std::initializer_list<keyring_key> keys) {
        return create(issuing_key_id, keys.begin(), keys.size());
    }

    static result<keyring> create(std::uint32_t issuing_key_id, const keyring_key* keys, std::size_t count) {
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
    const hmac_sha256_key::stream& issuing_key() const noexcept {
        for (const detail::ticket_key_entry& e : keys_) {
            if (e.id == issuing_key_id_) return e.after_domain;
        }
        detail::contract_violation("keyring without its issuing key");
    }
    const hmac_sha256_key::stream* verifying_key(std::uint32_t id,
                                                 std::chrono::system_clock::time_point now) const noexcept {
        for (const detail::ticket_key_entry& e : keys_) {
            if (e.id == id) return now < e.verify_until ? &e.after_domain : nullptr;
        }
        return nullptr;
    }

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
    std::string_view subject;   // who (user id); any bytes, at most 128
    std::string_view origin;    // the page's Origin, e.g. "https://app.example.com"; empty for non-browser clients
    std::string_view audience;  // the endpoint, e.g. "api.example.com/chat"; the verifier must pass the same
    std::string_view scopes;    // space-separated, at most 8 of at most 32 bytes: "chat:read chat:write"
    std::chrono::seconds ttl{0};  // 0: the issuer's default_ttl; cut to max_ttl
};

struct [[nodiscard]] issued_ticket {
    wsguard::decision status;  // ok, ticket_field_too_long, random_unavailable or internal_error
    std::string ticket;        // empty unless status allows
    std::chrono::system_clock::time_point expires_at{};
    explicit operator bool() const noexcept { return status.allowed(); }
};

class ticket_issuer {
public:
    static result<ticket_issuer> create(keyring keys, ticket_issuer_options options = {}) {
        using failure = result<ticket_issuer>;
        if (options.default_ttl < std::chrono::seconds(1) || options.default_ttl > options.max_ttl)
            return failure::failure("ticket_issuer: default_ttl must be at least 1 s and at most max_ttl");
        if (options.max_ttl > std::chrono::hours(1))
            return failure::failure("ticket_issuer: max_ttl over 1 hour; tickets are meant to be short-lived");
        return failure::success(ticket_issuer(std::move(keys), options));
    }

    issued_ticket issue(const ticket_request& request) const { return issue(request, std::chrono::system_clock::now()); }

    issued_ticket issue(const ticket_request& request, std::chrono::system_clock::time_point now) const {
        issued_ticket out;
        if (request.subject.size() > ticket_limits::max_subject || request.origin.size() > ticket_limits::max_origin ||
            request.audience.size() > ticket_limits::max_audience ||
            !detail::ticket_for_each_scope(request.scopes, [](std::string_view) {})) {
            out.status = reason::ticket_field_too_long;
            return out;
        }
        std::chrono::seconds ttl = request.ttl > std::chrono::seconds(0) ? request.ttl : options_.default_ttl;
        if (ttl > options_.max_ttl) ttl = options_.max_ttl;
        const std::int64_t issued_ms = detail::ticket_unix_ms(now);
        const std::int64_t expires_ms = issued_ms + std::chrono::milliseconds(ttl).count();
        if (issued_ms < 0 || expires_ms > detail::ticket_max_unix_ms) {
            out.status = reason::internal_error;  // the clock is outside any sane range
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
            out.status = random;
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

        out.ticket = base64url_encode(body, static_cast<std::size_t>(p - body));
        out.expires_at = detail::ticket_time_point(expires_ms);
        out.status = reason::ok;
        return out;
    }

    const keyring& keys() const noexcept { return keys_; }
    const ticket_issuer_options& options() const noexcept { return options_; }

private:
    ticket_issuer(keyring keys, ticket_issuer_options options) : keys_(std::move(keys)), options_(options) {}
    static std::uint8_t* put(std::uint8_t* p, std::string_view s) noexcept {
        if (!s.empty()) std::memcpy(p, s.data(), s.size());
        return p + s.size();
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
//       it returns its construction time; a shared store returns time_point::min().
//
// Layout: 4 x capacity slots (24 bytes each) in up to 64 shards, each behind
// its own mutex. A nonce may sit in any of the 32 slots after its keyed hash
// position in its shard; a slot whose nonce has expired is reused. When those
// 32 slots all hold live nonces the store refuses (replay_store_full) rather
// than forget one. At or below `capacity` live nonces that happens with
// probability < 1e-8 per ticket; size capacity >= peak tickets per second x
// the longest ticket lifetime.
// ---------------------------------------------------------------------------
namespace detail {

struct replay_slot {
    std::uint64_t low = 0;
    std::uint64_t high = 0;
    std::int64_t expires_ms = 0;  // 0: never used (ends a probe); <= now: expired, reusable
};

struct alignas(64) replay_shard {
    std::mutex lock;
};

inline constexpr std::size_t replay_window = 32;
inline constexpr std::size_t replay_min_shard_slots = 64;
inline constexpr std::size_t replay_max_shards = 64;

inline std::uint64_t replay_mix(std::uint64_t x) noexcept {  // splitmix64 finalizer
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    x ^= x >> 31;
    return x;
}

}  // namespace detail

class memory_replay_store {
public:
    static constexpr std::size_t max_capacity = std::size_t(1) << 24;

    static result<memory_replay_store> create(std::size_t capacity) {
        return create(capacity, std::chrono::system_clock::now());
    }

    // `now`: the creation time; tickets issued before it are refused.
    static result<memory_replay_store> create(std::size_t capacity, std::chrono::system_clock::time_point now) {
        using failure = result<memory_replay_store>;
        if (capacity == 0 || capacity > max_capacity)
            return failure::failure("memory_replay_store: capacity must be between 1 and " +
                                    std::to_string(max_capacity) +
                                    " live tickets (peak tickets per second x longest ticket lifetime)");
        memory_replay_store store;
        store.capacity_ = capacity;
        std::size_t slots = detail::replay_min_shard_slots;
        while (slots < 4 * capacity) slots *= 2;
        std::size_t shards = 1;
        while (shards < detail::replay_max_shards && slots / (shards * 2) >= detail::replay_min_shard_slots) shards *= 2;
        store.shard_count_ = shards;
        store.shard_slots_ = slots / shards;
        store.slots_.reset(new detail::replay_slot[slots]);
        store.shards_.reset(new detail::replay_shard[shards]);
        // A keyed hash, so nonces chosen by someone holding a valid MAC cannot
        // be lined up on one probe window. Not a secret that guards anything else.
        std::uint8_t seed[16];
        if (random_bytes(seed, sizeof seed) != reason::ok) {
            const std::uint64_t fallback = static_cast<std::uint64_t>(
                std::chrono::steady_clock::now().time_since_epoch().count()) ^ reinterpret_cast<std::uintptr_t>(&store);
            std::memcpy(seed, &fallback, 8);
            std::memcpy(seed + 8, &fallback, 8);
        }
        store.seed_low_ = detail::ticket_load_be(seed, 8);
        store.seed_high_ = detail::ticket_load_be(seed + 8, 8);
        store.created_ = now;
        return failure::success(std::move(store));
    }

    reason try_spend(const ticket_nonce& nonce, std::chrono::system_clock::time_point expires_at,
                     std::chrono::system_clock::time_point now) noexcept {
        if (!slots_) return reason::store_unavailable;  // a moved-from store
        const std::uint64_t low = detail::ticket_load_be(nonce.data(), 8);
        const std::uint64_t high = detail::ticket_load_be(nonce.data() + 8, 8);
        const std::uint64_t hash = detail::replay_mix(detail::replay_mix(low ^ seed_low_) ^ high ^ seed_high_);
        const std::size_t shard = static_cast<std::size_t>(hash >> 40) & (shard_count_ - 1);
        const std::size_t start = static_cast<std::size_t>(hash) & (shard_slots_ - 1);
        detail::replay_slot* const base = slots_.get() + shard * shard_slots_;
        const std::int64_t now_ms = detail::ticket_unix_ms(now);
        std::int64_t expires_ms = detail::ticket_unix_ms(expires_at);
        if (expires_ms < 1) expires_ms = 1;

        const std::lock_guard<std::mutex> guard(shards_[shard].lock);
        detail::replay_slot* free_slot = nullptr;
        for (std::size_t k = 0; k < detail::replay_window; ++k) {
            detail::replay_slot& slot = base[(start + k) & (shard_slots_ - 1)];
            if (slot.expires_ms == 0) {
                // Slots are never emptied, only reused: the nonce, if present,
                // was stored before this never-used slot.
                if (!free_slot) free_slot = &slot;
                break;
            }
            if (slot.expires_ms > now_ms) {
                if (slot.low == low && slot.high == high) return reason::ticket_replayed;
            } else if (!free_slot) {
                free_slot = &slot;
            }
        }
        if (!free_slot) return reason::replay_store_full;
        *free_slot = detail::replay_slot{low, high, expires_ms};
        return reason::ok;
    }

    std::chrono::system_clock::time_point accepts_issued_after() const noexcept { return created_; }
    std::size_t capacity() const noexcept { return capacity_; }
    std::size_t slot_count() const noexcept { return shard_count_ * shard_slots_; }

private:
    memory_replay_store() = default;
    std::unique_ptr<detail::replay_slot[]> slots_;
    std::unique_ptr<detail::replay_shard[]> shards_;
    std::size_t capacity_ = 0;
    std::size_t shard_count_ = 1;
    std::size_t shard_slots_ = 0;
    std::uint64_t seed_low_ = 0;
    std::uint64_t seed_high_ = 0;
    std::chrono::system_clock::time_point created_{};
};

// ---------------------------------------------------------------------------
// ticket_verifier: checks a presented ticket, cheapest first, and spends it.
// Holds a pointer to the store: the store must outlive every verifier using it
// (and not be moved while they do). Several verifiers (routes) may share one.
// ---------------------------------------------------------------------------
struct ticket_verifier_options {
    // A ticket claiming a longer lifetime is cut to this (keys shared with a
    // more generous issuer cannot widen this server's window).
    std::chrono::seconds max_ttl{120};
    // How far an issuer's clock may run ahead: a ticket issued later than
    // now + clock_skew is ticket_not_yet_valid. Expiry gets no such allowance.
    std::chrono::seconds clock_skew{5};
};

template <class ReplayStore = memory_replay_store>
class ticket_verifier {
public:
    static result<ticket_verifier> create(keyring keys, ReplayStore& store, ticket_verifier_options options = {}) {
        using failure = result<ticket_verifier>;
        if (options.max_ttl < std::chrono::seconds(1) || options.max_ttl > std::chrono::hours(1))
            return failure::failure("ticket_verifier: max_ttl must be between 1 s and 1 hour");
        if (options.clock_skew < std::chrono::seconds(0) || options.clock_skew > std::chrono::minutes(1))
            return failure::failure("ticket_verifier: clock_skew must be between 0 and 60 s");
        return failure::success(ticket_verifier(std::move(keys), store, options));
    }

    // `origin`: the request's Origin header (empty when absent); `audience`:
    // this endpoint, as passed to the issuer. On ok, `claims` holds the ticket's
    // claims; otherwise it is cleared. Never allocates.
    decision verify(std::string_view ticket, std::string_view origin, std::string_view audience,
                    ticket_claims& claims) const noexcept {
        return verify(ticket, origin, audience, claims, std::chrono::system_clock::now());
    }

    decision verify(std::string_view ticket, std::string_view origin, std::string_view audience, ticket_claims& claims,
                    std::chrono::system_clock::time_point now) const noexcept {
        claims.clear();
        if (ticket.empty()) return reason::ticket_missing;
        if (ticket.size() > ticket_limits::max_chars) return reason::ticket_too_long;

        std::uint8_t body[ticket_limits::max_bytes];
        std::size_t size = 0;
        // The ticket is public (the client holds it): no need for the constant-time decoder.
        if (!base64url_decode_public(ticket, body, ticket_limits::max_bytes, size)) return reason::ticket_malformed;
        if (size < detail::ticket_min_bytes) return reason::ticket_malformed;
        if (body[0] != detail::ticket_version) return reason::ticket_bad_version;
        const std::uint32_t key_id = static_cast<std::uint32_t>(detail::ticket_load_be(body + 1, 4));
        const hmac_sha256_key::stream* key = keys_.verifying_key(key_id, now);
        if (!key) return reason::ticket_unknown_key;

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
        ticket_nonce nonce;
        std::memcpy(nonce.data(), body + 21, nonce.size());
        const std::uint8_t* p = body + detail::ticket_header_size;
        const std::uint8_t* const end = body + signed_size;
        std::string_view subject, ticket_origin, ticket_audience;
        if (!take(p, end, 1, ticket_limits::max_subject, subject) ||
            !take(p, end, 2, ticket_limits::max_origin, ticket_origin) ||
            !take(p, end, 2, ticket_limits::max_audience, ticket_audience) || p == end)
            return reason::ticket_malformed;
        const std::size_t scope_count = *p++;
        if (scope_count > ticket_limits::max_scopes) return reason::ticket_malformed;
        std::string_view scopes[ticket_limits::max_scopes];
        for (std::size_t i = 0; i < scope_count; ++i) {
            if (!take(p, end, 1, ticket_limits::max_scope, scopes[i])) return reason::ticket_malformed;
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
        if (detail::ticket_time_point(issued_ms) < store_->accepts_issued_after())
            return reason::ticket_before_store_start;
        // Remembered past expiry by the skew, so a server whose clock runs behind
        // cannot accept the ticket after another forgot it.
        const std::chrono::system_clock::time_point remember_until =
            detail::ticket_time_point(expires_ms) + options_.clock_skew;
        const reason spent = store_->try_spend(nonce, remember_until, now);
        if (spent != reason::ok) return spent;

        claims.set_header(key_id, issued_ms, expires_ms, nonce);
        claims.set_subject(subject);
        for (std::size_t i = 0; i < scope_count; ++i) claims.add_scope(scopes[i]);
        return decision::allow();
    }

    const keyring& keys() const noexcept { return keys_; }
    const ticket_verifier_options& options() const noexcept { return options_; }

private:
    ticket_verifier(keyring keys, ReplayStore& store, ticket_verifier_options options)
        : keys_(std::move(keys)), store_(&store), options_(options) {}

    // A length-prefixed field of at most `cap` bytes.
    static bool take(const std::uint8_t*& p, const std::uint8_t* end, int prefix, std::size_t cap,
                     std::string_view& field) noexcept {
        if (end - p < prefix) return false;
        const std::size_t size = static_cast<std::size_t>(detail::ticket_load_be(p, prefix));
        p += prefix;
        if (size > cap || static_cast<std::size_t>(end - p) < size) return false;
        field = std::string_view(reinterpret_cast<const char*>(p), size);
        p += size;
        return true;
    }

    // The ticket holds the folded origin; fold the request's the same way.
    static bool origin_matches(std::string_view request_origin, std::string_view ticket_origin) noexcept {
        if (request_origin.size() > ticket_limits::max_origin) return false;
        char folded[ticket_limits::max_origin];
        const std::size_t size = detail::ticket_fold_origin(request_origin, folded);
        return std::string_view(folded, size) == ticket_origin;
    }

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

struct [[nodiscard]] ticket_source {
    std::string_view ticket;         // pass to ticket_verifier::verify
    std::string_view echo_protocol;  // the server's Sec-WebSocket-Protocol answer: "wsguard.v1", never the ticket
    wsguard::reason reason = wsguard::reason::ticket_missing;
    explicit operator bool() const noexcept { return reason == wsguard::reason::ok; }
};

// Sec-WebSocket-Protocol: "wsguard.v1, <ticket>". Comma-separated tokens with
// optional spaces or tabs; empty list elements are skipped. The ticket is the
// token right after the first "wsguard.v1". Other offered protocols are ignored.
inline ticket_source ticket_from_subprotocol(std::string_view header) noexcept {
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
            out.reason = reason::ok;
            return out;
        }
        if (token == ticket_subprotocol) marker_seen = true;
    }
    return out;  // no marker, or no token after it: ticket_missing
}

// The fallback: "?ticket=<ticket>" (a leading '?' and a '#fragment' are
// tolerated). Exact, case-sensitive name; first occurrence. base64url needs no
// percent-encoding, so a '%' in the value means a mangled ticket: malformed.
inline ticket_source ticket_from_query(std::string_view query) noexcept {
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
        out.reason = out.ticket.find('%') == std::string_view::npos ? reason::ok : reason::ticket_malformed;
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
            verifier.verify(message.substr(message_prefix.size()), origin, audience, claims, wall_now);
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

}  // inline namespace WSGUARD_ABI_NS
}  // namespace wsguard
