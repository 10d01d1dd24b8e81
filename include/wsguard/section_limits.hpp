// Section 6 of wsguard.hpp (inlined into the release header). Not a public header.
// ===========================================================================
// 6. Rate limits: token_bucket, keyed_limiter, connection_limiter, address keys
// ===========================================================================
//
// Time is integer nanoseconds of std::chrono::steady_clock, pushed in by the
// caller (every call has an overload that reads the clock). No floating point,
// every addition and product saturates, and a clock that goes backwards can
// only make a limiter stricter, never grant extra.
#ifndef WSGUARD_HPP
#error "include <wsguard.hpp>, not this file"
#endif

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <new>
#include <optional>
#include <ratio>
#include <string>
#include <string_view>
#include <thread>
#include <type_traits>
#include <utility>

namespace wsguard {
inline namespace WSGUARD_ABI_NS {

// A rate: `count` events per `period`, e.g. rate{3, std::chrono::seconds(1)} or
// rate{1, std::chrono::hours(24)}. Rates below one per second need no floats.
struct rate {
    std::uint64_t count = 0;
    std::chrono::nanoseconds period{std::chrono::seconds(1)};

    static constexpr rate per_second(std::uint64_t n) noexcept { return rate{n, std::chrono::seconds(1)}; }
    static constexpr rate per_minute(std::uint64_t n) noexcept { return rate{n, std::chrono::minutes(1)}; }
    static constexpr rate per_hour(std::uint64_t n) noexcept { return rate{n, std::chrono::hours(1)}; }
};

namespace detail {

inline constexpr std::uint64_t limits_u64_max = std::numeric_limits<std::uint64_t>::max();
// The longest window a bucket may span (burst x interval): 100 years. Beyond
// that a configuration is a mistake, and the bound keeps every sum below 2^64.
inline constexpr std::uint64_t limits_max_window_ns = 100ull * 366 * 24 * 3600 * 1000000000ull;
// How many slots a lookup inspects: bounds the work per request and is the
// neighbourhood in which the stalest entry is evicted.
inline constexpr std::uint32_t limits_probe_window = 8;
inline constexpr std::uint32_t limits_max_shards = 64;
inline constexpr std::size_t limits_max_capacity = std::size_t{1} << 28;

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
    static std::string configure(rate r, std::uint32_t burst_size, limits_gcra& out) {
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

    std::uint64_t clamp(std::chrono::steady_clock::time_point now) const noexcept {
        const std::uint64_t t = limits_ticks(now);
        return t < horizon ? t : horizon;
    }

    // One step of the algorithm on a loaded tat. On success writes the new tat.
    // Preconditions: 1 <= n <= burst, t == clamp(now).
    decision step(std::uint64_t tat, std::uint64_t t, std::uint32_t n, std::uint64_t& new_tat) const noexcept {
        const std::uint64_t cost = interval_ns * n;                 // <= window_ns
        const std::uint64_t base = tat > t ? tat : t;               // an idle bucket starts from now
        const std::uint64_t debt = base - t;                        // how far ahead the bucket runs
        if (debt > window_ns - cost) return decision(reason::rate_limited, limits_wait(debt + cost - window_ns));
        new_tat = base + cost;
        return decision::allow();
    }
};

// SipHash-c-d (Aumasson and Bernstein), portable and endian-independent.
// Keyed with a random seed, so a remote client cannot choose keys that collide.
inline std::uint64_t limits_load_le64(const unsigned char* p) noexcept {
    std::uint64_t v = 0;
    for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
    return v;
}

template <int CompressionRounds, int FinalRounds>
inline std::uint64_t limits_siphash(std::uint64_t k0, std::uint64_t k1, const void* data, std::size_t len) noexcept {
    const auto* in = static_cast<const unsigned char*>(data);
    std::uint64_t v0 = 0x736f6d6570736575ull ^ k0;
    std::uint64_t v1 = 0x646f72616e646f6dull ^ k1;
    std::uint64_t v2 = 0x6c7967656e657261ull ^ k0;
    std::uint64_t v3 = 0x7465646279746573ull ^ k1;
    auto rotl = [](std::uint64_t x, int b) noexcept { return (x << b) | (x >> (64 - b)); };
    auto sip_round = [&]() noexcept {
        v0 += v1; v1 = rotl(v1, 13); v1 ^= v0; v0 = rotl(v0, 32);
        v2 += v3; v3 = rotl(v3, 16); v3 ^= v2;
        v0 += v3; v3 = rotl(v3, 21); v3 ^= v0;
        v2 += v1; v1 = rotl(v1, 17); v1 ^= v2; v2 = rotl(v2, 32);
    };
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
    v2 ^= 0xff;
    for (int r = 0; r < FinalRounds; ++r) sip_round();
    return v0 ^ v1 ^ v2 ^ v3;
}

inline std::uint64_t limits_siphash24(std::uint64_t k0, std::uint64_t k1, const void* data, std::size_t len) noexcept {
    return limits_siphash<2, 4>(k0, k1, data, len);
}
inline std::uint64_t limits_siphash13(std::uint64_t k0, std::uint64_t k1, const void* data, std::size_t len) noexcept {
    return limits_siphash<1, 3>(k0, k1, data, len);
}

// Two independent 128-bit SipHash keys, drawn from the OS at construction.
struct limits_seed {
    std::uint64_t k[4] = {0, 0, 0, 0};
};

// From the OS through the crypto section; false if the OS refused.
inline bool limits_make_seed(limits_seed& seed) noexcept {
    std::uint8_t raw[32] = {};
    if (random_bytes(raw, sizeof raw) != reason::ok) return false;
    for (int i = 0; i < 4; ++i) seed.k[i] = limits_load_le64(raw + 8 * i);
    return true;
}

// A 128-bit keyed fingerprint: what the tables store for variable-length keys.
// Two different strings share one with probability 2^-128 for a party that
// does not know the seed.
struct limits_fingerprint {
    std::uint64_t lo = 0;
    std::uint64_t hi = 0;
};

template <class T>
struct limits_always_false : std::false_type {};

// How a Key is stored in a fixed-size slot and hashed. Fixed-size keys with no
// padding (address_key, integers, arrays of bytes) are stored as they are;
// string keys as a fingerprint. Any other Key does not compile.
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
    };
    static digest make(const Key& key, const limits_seed& seed) noexcept {
        return digest{key, limits_siphash13(seed.k[0], seed.k[1], &key, sizeof key)};
    }
    static bool equal(const stored& a, const stored& b) noexcept { return std::memcmp(&a, &b, sizeof a) == 0; }
};

struct limits_string_key_traits {
    using stored = limits_fingerprint;
    struct digest {
        stored key;
        std::uint64_t hash;
    };
    static digest make(std::string_view key, const limits_seed& seed) noexcept {
        stored fp;
        fp.lo = limits_siphash13(seed.k[0], seed.k[1], key.data(), key.size());
        fp.hi = limits_siphash13(seed.k[2], seed.k[3], key.data(), key.size());
        return digest{fp, fp.lo};
    }
    static bool equal(const stored& a, const stored& b) noexcept { return a.lo == b.lo && a.hi == b.hi; }
};
template <>
struct limits_key_traits<std::string_view> : limits_string_key_traits {};
template <>
struct limits_key_traits<std::string> : limits_string_key_traits {};

// A test-and-test-and-set lock per shard: critical sections are a few dozen
// instructions, so spinning beats parking; after a while it yields.
class limits_spinlock {
public:
    void lock() noexcept {
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

struct alignas(64) limits_shard {
    limits_spinlock lock;
};

class limits_lock_guard {
public:
    explicit limits_lock_guard(limits_spinlock& l) noexcept : lock_(l) { lock_.lock(); }
    ~limits_lock_guard() { lock_.unlock(); }
    limits_lock_guard(const limits_lock_guard&) = delete;
    limits_lock_guard& operator=(const limits_lock_guard&) = delete;

private:
    limits_spinlock& lock_;
};

// Geometry of a sharded table: shard_count shards (a power of two, up to 64,
// each with its own lock) of groups_per_shard groups of limits_probe_window
// slots. A key hashes to one group, its whole probe window; groups are
// aligned to cache lines (8 x 24-byte slots for address_key: three lines).
struct limits_geometry {
    std::uint32_t shard_count = 1;
    std::uint32_t groups_per_shard = 0;

    static std::string configure(std::size_t capacity, limits_geometry& out) {
        if (capacity == 0) return "capacity must be at least 1";
        if (capacity > limits_max_capacity) return "capacity over 2^28 entries: that is gigabytes of table, surely a mistake";
        std::uint32_t shards = 1;
        while (shards < limits_max_shards && std::size_t{shards} * 4 * limits_probe_window <= capacity) shards *= 2;
        const std::size_t per_shard = std::size_t{shards} * limits_probe_window;
        out.shard_count = shards;
        out.groups_per_shard = static_cast<std::uint32_t>((capacity + per_shard - 1) / per_shard);
        return std::string();
    }
    std::size_t group_count() const noexcept { return std::size_t{shard_count} * groups_per_shard; }
    std::size_t capacity() const noexcept { return group_count() * limits_probe_window; }
    std::uint32_t shard_of(std::uint64_t hash) const noexcept {
        return static_cast<std::uint32_t>(hash >> 32) & (shard_count - 1);
    }
    // The key's group (Lemire's multiply-shift range reduction inside its shard).
    std::size_t group_of(std::uint64_t hash, std::uint32_t shard) const noexcept {
        return std::size_t{shard} * groups_per_shard +
               static_cast<std::size_t>(((hash & 0xffffffffull) * groups_per_shard) >> 32);
    }
};

template <class Slot>
struct alignas(64) limits_group {
    Slot slots[limits_probe_window];
};

// Starts loading a group while the shard lock is being taken: under a flood
// of new keys the group is rarely cached.
template <class Group>
inline void limits_prefetch(const Group& group) noexcept {
#if defined(__GNUC__) || defined(__clang__)
    const char* bytes = reinterpret_cast<const char*>(&group);
    for (std::size_t offset = 0; offset < sizeof(Group); offset += 64) __builtin_prefetch(bytes + offset, 1);
#else
    (void)group;
#endif
}

template <class T>
std::unique_ptr<T[]> limits_allocate(std::size_t n) noexcept {
    return std::unique_ptr<T[]>(new (std::nothrow) T[n]());
}

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
class token_bucket {
public:
    static result<token_bucket> create(wsguard::rate r, std::uint32_t burst) {
        detail::limits_gcra gcra;
        std::string error = detail::limits_gcra::configure(r, burst, gcra);
        if (!error.empty()) return result<token_bucket>::failure("token_bucket: " + error);
        return result<token_bucket>::success(token_bucket(gcra));
    }
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

    decision try_acquire(std::chrono::steady_clock::time_point now, std::uint32_t n = 1) noexcept {
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
// SipHash-1-3 under a random 128-bit seed. An entry whose bucket is full again
// is free for reuse; when a new key's probe window (its group of 8 slots) has
// no such entry, the stalest one (the closest to full) is evicted, so keys
// that exhausted their burst are the last to go. Sharded (up to 64 shards)
// with one small lock per shard.
template <class Key>
class keyed_limiter {
    using traits = detail::limits_key_traits<Key>;
    using stored_key = typename traits::stored;

public:
    static result<keyed_limiter> create(wsguard::rate r, std::uint32_t burst, std::size_t capacity) {
        keyed_limiter limiter;
        std::string error = detail::limits_gcra::configure(r, burst, limiter.gcra_);
        if (error.empty()) error = detail::limits_geometry::configure(capacity, limiter.geometry_);
        if (!error.empty()) return result<keyed_limiter>::failure("keyed_limiter: " + error);
        if (!detail::limits_make_seed(limiter.seed_))
            return result<keyed_limiter>::failure("keyed_limiter: the OS refused random bytes for the hash seed");
        limiter.shards_ = detail::limits_allocate<detail::limits_shard>(limiter.geometry_.shard_count);
        limiter.groups_ = detail::limits_allocate<group>(limiter.geometry_.group_count());
        if (!limiter.shards_ || !limiter.groups_) return result<keyed_limiter>::failure("keyed_limiter: out of memory for the table");
        return result<keyed_limiter>::success(std::move(limiter));
    }
    static result<keyed_limiter> create(std::uint64_t rate_per_second, std::uint32_t burst, std::size_t capacity) {
        return create(wsguard::rate::per_second(rate_per_second), burst, capacity);
    }

    decision try_acquire(const Key& key, std::chrono::steady_clock::time_point now, std::uint32_t n = 1) noexcept {
        if (n == 0) return decision::allow();
        if (n > gcra_.burst) return decision(reason::rate_limited);
        const auto digest = traits::make(key, seed_);
        const std::uint64_t t = gcra_.clamp(now);
        const std::uint32_t shard = geometry_.shard_of(digest.hash);
        group& candidates = groups_[geometry_.group_of(digest.hash, shard)];
        detail::limits_prefetch(candidates);

        detail::limits_lock_guard guard(shards_[shard].lock);
        slot* found = nullptr;
        slot* stalest = nullptr;
        for (slot& s : candidates.slots) {
            if (traits::equal(s.key, digest.key)) {
                found = &s;
                break;
            }
            if (stalest == nullptr || s.tat < stalest->tat) stalest = &s;
            // tat 0 marks a slot never used (a grant always leaves tat >= 1).
            // Slots are never emptied, so the key cannot sit beyond it.
            if (s.tat == 0) break;
        }
        if (found == nullptr) {
            // Reuse an idle entry (tat <= now: nothing lost) or evict the stalest.
            found = stalest;
            found->key = digest.key;
            found->tat = 0;
        }
        std::uint64_t new_tat = 0;
        const decision d = gcra_.step(found->tat, t, n, new_tat);
        if (d) found->tat = new_tat;
        return d;
    }
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
        stored_key key;
        std::uint64_t tat;
    };
    using group = detail::limits_group<slot>;

    keyed_limiter() = default;

    detail::limits_gcra gcra_;
    detail::limits_geometry geometry_;
    detail::limits_seed seed_;
    std::unique_ptr<detail::limits_shard[]> shards_;
    std::unique_ptr<group[]> groups_;
};

// ---------------------------------------------------------------------------
// connection_limiter<Key>: at most N concurrent connections per key.
// ---------------------------------------------------------------------------
//
// try_acquire returns a move-only permit; the connection counts until the
// permit is destroyed or release()d. Fixed-capacity table with the same seeded
// hashing as keyed_limiter. A key's entry is freed when its count drops to 0;
// a live count is never evicted: when a key's probe window is full of keys
// that hold connections, the new key is refused (fails closed). The limiter
// must outlive its permits.
template <class Key>
class connection_limiter {
    using traits = detail::limits_key_traits<Key>;
    using stored_key = typename traits::stored;

    struct slot {
        stored_key key;
        std::uint32_t count;
    };
    using group = detail::limits_group<slot>;
    struct table {
        detail::limits_geometry geometry;
        detail::limits_seed seed;
        std::uint32_t max_per_key = 0;
        std::uint32_t max_total = 0;
        std::atomic<std::uint32_t> total{0};
        std::unique_ptr<detail::limits_shard[]> shards;
        std::unique_ptr<group[]> groups;
    };

public:
    // How long a refused client is told to wait (Retry-After): connections
    // end at an unknown time, so this is a polite hint, not a promise.
    static constexpr std::chrono::milliseconds refusal_retry_after{1000};

    class permit {
    public:
        permit() noexcept = default;
        permit(permit&& other) noexcept
            : table_(std::exchange(other.table_, nullptr)), slot_(std::exchange(other.slot_, nullptr)),
              shard_(other.shard_), decision_(other.decision_) {}
        permit& operator=(permit&& other) noexcept {
            if (this != &other) {
                release();
                table_ = std::exchange(other.table_, nullptr);
                slot_ = std::exchange(other.slot_, nullptr);
                shard_ = other.shard_;
                decision_ = other.decision_;
            }
            return *this;
        }
        permit(const permit&) = delete;
        permit& operator=(const permit&) = delete;
        ~permit() { release(); }

        // True while the permit holds a connection (not after release()).
        explicit operator bool() const noexcept { return slot_ != nullptr; }
        // The outcome of try_acquire: ok, or too_many_connections with
        // retry_after 1 s. A default-constructed permit reads as refused.
        wsguard::decision decision() const noexcept { return decision_; }
        // Gives the connection back now instead of at destruction. Idempotent.
        void release() noexcept {
            if (slot_ == nullptr) return;
            {
                detail::limits_lock_guard guard(table_->shards[shard_].lock);
                --slot_->count;
            }
            table_->total.fetch_sub(1, std::memory_order_relaxed);
            slot_ = nullptr;
            table_ = nullptr;
        }

    private:
        friend class connection_limiter;
        permit(table* t, slot* s, std::uint32_t shard) noexcept
            : table_(t), slot_(s), shard_(shard), decision_(wsguard::decision::allow()) {}
        explicit permit(wsguard::decision refusal) noexcept : decision_(refusal) {}

        table* table_ = nullptr;
        slot* slot_ = nullptr;
        std::uint32_t shard_ = 0;
        wsguard::decision decision_{reason::too_many_connections, refusal_retry_after};
    };

    // max_per_key: concurrent connections per key; capacity: distinct keys
    // with live connections tracked at once; max_total: connections across all
    // keys (defaults to no cap beyond what the table can hold).
    static result<connection_limiter> create(std::uint32_t max_per_key, std::size_t capacity,
                                             std::uint32_t max_total = std::numeric_limits<std::uint32_t>::max()) {
        if (max_per_key == 0) return result<connection_limiter>::failure("connection_limiter: max_per_key must be at least 1");
        if (max_total == 0) return result<connection_limiter>::failure("connection_limiter: max_total must be at least 1");
        connection_limiter limiter;
        limiter.table_.reset(new (std::nothrow) table());
        if (!limiter.table_) return result<connection_limiter>::failure("connection_limiter: out of memory");
        table& t = *limiter.table_;
        std::string error = detail::limits_geometry::configure(capacity, t.geometry);
        if (!error.empty()) return result<connection_limiter>::failure("connection_limiter: " + error);
        if (!detail::limits_make_seed(t.seed))
            return result<connection_limiter>::failure("connection_limiter: the OS refused random bytes for the hash seed");
        t.max_per_key = max_per_key;
        t.max_total = max_total;
        t.shards = detail::limits_allocate<detail::limits_shard>(t.geometry.shard_count);
        t.groups = detail::limits_allocate<group>(t.geometry.group_count());
        if (!t.shards || !t.groups) return result<connection_limiter>::failure("connection_limiter: out of memory for the table");
        return result<connection_limiter>::success(std::move(limiter));
    }

    permit try_acquire(const Key& key) noexcept {
        table& t = *table_;
        const auto digest = traits::make(key, t.seed);
        const std::uint32_t shard = t.geometry.shard_of(digest.hash);
        group& candidates = t.groups[t.geometry.group_of(digest.hash, shard)];
        detail::limits_prefetch(candidates);

        detail::limits_lock_guard guard(t.shards[shard].lock);
        slot* found = nullptr;
        slot* free_slot = nullptr;
        for (slot& s : candidates.slots) {
            if (s.count == 0) {
                if (free_slot == nullptr) free_slot = &s;
            } else if (traits::equal(s.key, digest.key)) {
                found = &s;
                break;
            }
        }
        if (found != nullptr ? found->count >= t.max_per_key : free_slot == nullptr) return refused();
        if (t.total.fetch_add(1, std::memory_order_relaxed) >= t.max_total) {
            t.total.fetch_sub(1, std::memory_order_relaxed);
            return refused();
        }
        if (found == nullptr) {
            found = free_slot;
            found->key = digest.key;
        }
        ++found->count;
        return permit(&t, found, shard);
    }

    // Live connections for one key (0 when unknown).
    std::uint32_t connections(const Key& key) const noexcept {
        const table& t = *table_;
        const auto digest = traits::make(key, t.seed);
        const std::uint32_t shard = t.geometry.shard_of(digest.hash);
        const group& candidates = t.groups[t.geometry.group_of(digest.hash, shard)];
        detail::limits_lock_guard guard(t.shards[shard].lock);
        for (const slot& s : candidates.slots) {
            if (s.count != 0 && traits::equal(s.key, digest.key)) return s.count;
        }
        return 0;
    }
    // Live connections across all keys.
    std::uint32_t total() const noexcept { return table_->total.load(std::memory_order_relaxed); }
    std::size_t capacity() const noexcept { return table_->geometry.capacity(); }
    std::size_t memory_bytes() const noexcept {
        return sizeof(*this) + sizeof(table) + table_->geometry.group_count() * sizeof(group) +
               std::size_t{table_->geometry.shard_count} * sizeof(detail::limits_shard);
    }

private:
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

namespace detail {

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

}  // namespace detail

class address_key {
public:

    // A bare address: "192.0.2.1", "2001:db8::1", "[2001:db8::1]",
    // "fe80::1%eth0" (zone dropped), "::ffff:192.0.2.1" (IPv4). No port: use
    // from_endpoint_text for "ip:port". Anything else, or over 128 bytes, is
    // nullopt (reason::address_malformed).
    static std::optional<address_key> from_text(std::string_view text, address_key_options options = {}) noexcept {
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

    // What stacks report as the remote endpoint: "192.0.2.1:443",
    // "[2001:db8::1]:443", or a bare address. An unbracketed IPv6 address
    // never carries a port (its last group would be ambiguous).
    static std::optional<address_key> from_endpoint_text(std::string_view text, address_key_options options = {}) noexcept {
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

    // Raw network-order bytes: 4 (IPv4) or 16 (IPv6, e.g. sin6_addr). Other
    // sizes, or a null pointer, are nullopt.
    static std::optional<address_key> from_bytes(const std::uint8_t* data, std::size_t size, address_key_options options = {}) noexcept {
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
    static bool is_v4_mapped(const std::uint8_t* b) noexcept {
        for (int i = 0; i < 10; ++i) {
            if (b[i] != 0) return false;
        }
        return b[10] == 0xff && b[11] == 0xff;
    }
    static std::optional<address_key> parse_ipv6_text(std::string_view text, address_key_options options) noexcept {
        if (!detail::limits_strip_zone(text)) return std::nullopt;
        std::uint8_t raw[16];
        if (!detail::limits_parse_ipv6(text, raw)) return std::nullopt;
        return from_bytes(raw, 16, options);
    }
    // Zeroes every bit after the first `bits` bits counted from byte `from`.
    // Precondition: bits <= (16 - from) * 8.
    void keep_prefix(unsigned from, unsigned bits) noexcept {
        unsigned i = from + bits / 8;
        if (i < 16 && bits % 8 != 0) {
            bytes_[i] = static_cast<std::uint8_t>(bytes_[i] & (0xff << (8 - bits % 8)));
            ++i;
        }
        if (i < 16) std::memset(bytes_ + i, 0, 16 - i);
    }

    std::uint8_t bytes_[16] = {};
};

static_assert(std::has_unique_object_representations<address_key>::value && sizeof(address_key) == 16,
              "address_key is stored and hashed as raw bytes: it must have no padding");

}  // inline namespace WSGUARD_ABI_NS
}  // namespace wsguard
