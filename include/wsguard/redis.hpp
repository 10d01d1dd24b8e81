// wsguard/redis.hpp: an optional Redis backend for wsguard, for services that run
// on several machines behind a load balancer. A ticket then works once across all
// of them, and a client's rate limit counts its requests on every machine.
//
// SPDX-License-Identifier: MIT
// Copyright (c) 2026 the wsguard authors. See LICENSE.
//
// This header needs hiredis (Debian: libhiredis-dev; link with -lhiredis). The core
// header <wsguard.hpp> never includes it and stays dependency-free.
//
//   wsguard::redis_replay_store  the ReplayStore of ticket_verifier, shared by every
//                                server: SET <prefix><hex(nonce)> 1 NX PX <ttl>.
//   wsguard::redis_limiter       a keyed GCRA limiter whose decision is one atomic
//                                Lua script on the Redis server's clock (TIME).
//
// Failing closed. When Redis is unreachable, slower than the configured timeout,
// or answers an error, every decision is store_unavailable (HTTP 503, close 1011):
// a ticket is never accepted twice because Redis could not say whether it was spent,
// and a limiter never waves traffic through. Nothing waits without bound: opening
// a connection waits at most connect_timeout, and each reply at most
// command_timeout (a decision reads one or two replies, plus AUTH / SELECT on a
// new connection and SCRIPT LOAD once per limiter). A broken connection is dropped and re-opened
// lazily by a later decision, after a backoff that doubles up to
// max_reconnect_backoff, so a dead Redis is not hammered and decisions recover by
// themselves once it is back.
//
// Threads. Each store or limiter owns one connection guarded by a mutex: it is safe
// to share between threads, but round trips through one object are serialized.
// For parallel throughput create one object per thread (or per event loop).
//
// Event loops (uWebSockets, ...). There is no asynchronous form. A decision is one
// loopback or LAN round trip (tens of microseconds), and a hung or dead Redis costs
// one decision its timeouts (50 ms + 20 ms by default) before failing closed,
// after which the backoff makes further decisions fail at once. Keep the timeouts
// short and call the store from the upgrade handler directly; a loop that must never
// block even that long can run verify() on a worker thread and complete uWS's async
// upgrade (res->upgrade) through Loop::defer.
//
// Failover and one-time use. Redis replication is asynchronous: a SET NX that the
// primary acknowledged can be lost if the primary dies before a replica received
// it and that replica is promoted. The same ticket can then be accepted once more,
// until it expires. Two bounds: tickets are short-lived (default 30 s), so the
// window of a replay after a failover is at most the ticket lifetime; and
// wait_replicas = N makes each spend wait (WAIT N wait_timeout, pipelined with the
// SET) until N replicas acknowledged it, failing closed otherwise. WAIT does not
// make Redis strongly consistent, but a failover that promotes the most up-to-date
// replica (as Sentinel does) then keeps every acknowledged spend.
//
// Allocation. The core header does not allocate per request; hiredis does (its
// reply objects and output buffer), so this backend allocates per round trip.
//
// Signals. hiredis 0.14 writes with write(2): a write to a connection Redis has
// closed raises SIGPIPE, which would end a process that did not ignore it. Each
// round trip therefore blocks SIGPIPE in the calling thread and discards one that
// it caused (guard_sigpipe, default on; turn it off if the process already ignores
// SIGPIPE, saving four system calls per round trip).
#ifndef WSGUARD_REDIS_HPP
#define WSGUARD_REDIS_HPP

#include <wsguard.hpp>

#include <hiredis/hiredis.h>

#include <pthread.h>
#include <signal.h>
#include <sys/time.h>
#include <sys/un.h>
#include <time.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>

namespace wsguard {
inline namespace WSGUARD_ABI_NS {

// Where Redis is and how long a decision may wait for it.
struct redis_connection_options {
    std::string host = "127.0.0.1";  // an IP literal: a name is resolved by getaddrinfo, which no timeout bounds
    int port = 6379;
    std::string unix_socket;         // when set, used instead of host and port
    std::string username;            // AUTH username password (Redis 6 ACL); empty: AUTH password
    std::string password;            // empty: no AUTH
    int database = 0;                // SELECT, when not 0
    std::chrono::milliseconds connect_timeout{50};
    std::chrono::milliseconds command_timeout{20};
    std::chrono::milliseconds reconnect_backoff{25};        // first wait after a failure
    std::chrono::milliseconds max_reconnect_backoff{1000};  // the doubling stops here
    bool guard_sigpipe = true;       // see "Signals" above
};

struct redis_replay_store_options {
    redis_connection_options connection;
    // Every nonce key is key_prefix + 32 lowercase hex digits. Letters, digits and
    // ":_.-" only, 1 to 64 characters.
    std::string key_prefix = "wsguard:nonce:";
    // Added to each nonce's lifetime in Redis (on top of the verifier's
    // clock_skew, which it already adds), so a server whose clock runs behind
    // cannot accept a ticket after the nonce vanished from Redis. Cover the
    // largest clock difference between your servers.
    std::chrono::milliseconds expiry_margin{5'000};
    // Failover bound (see the header comment): 0 = off; N = each spend waits until
    // N replicas acknowledged it, at most wait_timeout, else store_unavailable.
    int wait_replicas = 0;
    std::chrono::milliseconds wait_timeout{10};  // must be below connection.command_timeout
};

struct redis_limiter_options {
    redis_connection_options connection;
    // Every bucket key is key_prefix + 32 lowercase hex digits (a hash of the
    // caller's key). Letters, digits and ":_.-" only, 1 to 64 characters.
    // Use one prefix per limit: two limiters with the same prefix share buckets.
    std::string key_prefix = "wsguard:rate:";
    wsguard::rate rate = wsguard::rate::per_second(10);  // sustained; at most one per microsecond
    std::uint32_t burst = 20;  // requests that pass at once from idle
};

// One nonce of a pipelined batch: in nonce and expires_at, out outcome.
struct redis_spend {
    ticket_nonce nonce{};
    std::chrono::system_clock::time_point expires_at{};
    reason outcome = reason::store_unavailable;
};

namespace detail {

inline constexpr std::size_t redis_max_prefix = 64;
inline constexpr std::size_t redis_hash_hex = 32;  // 16 bytes of SHA-256, or a whole nonce
inline constexpr std::size_t redis_max_batch = 256;  // commands per pipelined write

struct redis_reply_free {
    void operator()(redisReply* r) const noexcept {
        if (r != nullptr) freeReplyObject(r);
    }
};
using redis_reply_ptr = std::unique_ptr<redisReply, redis_reply_free>;

inline timeval redis_timeval(std::chrono::milliseconds ms) noexcept {
    timeval tv{};
    tv.tv_sec = static_cast<decltype(tv.tv_sec)>(ms.count() / 1000);
    tv.tv_usec = static_cast<decltype(tv.tv_usec)>((ms.count() % 1000) * 1000);
    return tv;
}

inline bool redis_prefix_valid(std::string_view prefix) noexcept {
    if (prefix.empty() || prefix.size() > redis_max_prefix) return false;
    for (char c : prefix) {
        const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == ':' ||
                        c == '_' || c == '.' || c == '-';
        if (!ok) return false;
    }
    return true;
}

inline std::string redis_validate_connection(const redis_connection_options& o) {
    using std::chrono::milliseconds;
    if (o.unix_socket.empty()) {
        if (o.host.empty() || o.host.size() > 253) return "redis: host must be 1 to 253 characters (or set unix_socket)";
        for (char c : o.host) {
            if (static_cast<unsigned char>(c) <= ' ' || c == 0x7f)
                return "redis: host must not contain spaces or control characters";
        }
        if (o.port < 1 || o.port > 65535) return "redis: port must be in 1..65535";
    } else {
        if (o.unix_socket.size() >= sizeof(sockaddr_un{}.sun_path))
            return "redis: unix_socket path is longer than a socket address holds";
        if (o.unix_socket.find('\0') != std::string::npos) return "redis: unix_socket path contains a NUL byte";
    }
    if (o.password.empty() && !o.username.empty()) return "redis: username needs a password";
    if (o.database < 0) return "redis: database must not be negative";
    const auto in = [](milliseconds v, milliseconds lo, milliseconds hi) { return v >= lo && v <= hi; };
    if (!in(o.connect_timeout, milliseconds{1}, milliseconds{60'000}))
        return "redis: connect_timeout must be 1 ms to 60 s (a decision waits for it)";
    if (!in(o.command_timeout, milliseconds{1}, milliseconds{60'000}))
        return "redis: command_timeout must be 1 ms to 60 s (a decision waits for it)";
    if (!in(o.reconnect_backoff, milliseconds{0}, milliseconds{60'000}) ||
        !in(o.max_reconnect_backoff, o.reconnect_backoff, milliseconds{600'000}))
        return "redis: need 0 <= reconnect_backoff <= max_reconnect_backoff <= 600 s";
    return {};
}

inline void redis_hex(const std::uint8_t* bytes, std::size_t n, char* out) noexcept {
    static constexpr char digits[] = "0123456789abcdef";
    for (std::size_t i = 0; i < n; ++i) {
        out[2 * i] = digits[bytes[i] >> 4];
        out[2 * i + 1] = digits[bytes[i] & 0x0f];
    }
}

// prefix + 32 hex digits, in a fixed buffer (no allocation on the request path).
struct redis_key {
    std::array<char, redis_max_prefix + redis_hash_hex> text{};
    std::size_t size = 0;

    redis_key(std::string_view prefix, const std::uint8_t* sixteen_bytes) noexcept {
        std::memcpy(text.data(), prefix.data(), prefix.size());
        redis_hex(sixteen_bytes, 16, text.data() + prefix.size());
        size = prefix.size() + redis_hash_hex;
    }
};

// Decimal text of a non-negative integer, for command arguments.
struct redis_number {
    char text[24]{};
    std::size_t size = 0;
    explicit redis_number(long long v) noexcept {
        const int n = std::snprintf(text, sizeof text, "%lld", v);
        size = n > 0 ? static_cast<std::size_t>(n) : 0;
    }
};

// Blocks SIGPIPE in this thread for one round trip and discards a SIGPIPE that the
// round trip raised (one that was pending before is left alone).
class redis_sigpipe_guard {
public:
    explicit redis_sigpipe_guard(bool active) noexcept : active_(active) {
        if (!active_) return;
        sigemptyset(&pipe_);
        sigaddset(&pipe_, SIGPIPE);
        sigset_t pending;
        sigemptyset(&pending);
        sigpending(&pending);
        was_pending_ = sigismember(&pending, SIGPIPE) == 1;
        pthread_sigmask(SIG_BLOCK, &pipe_, &old_);
    }
    ~redis_sigpipe_guard() {
        if (!active_) return;
        if (!was_pending_) {
            sigset_t pending;
            sigemptyset(&pending);
            sigpending(&pending);
            if (sigismember(&pending, SIGPIPE) == 1) {
                const timespec zero{};
                sigtimedwait(&pipe_, nullptr, &zero);
            }
        }
        pthread_sigmask(SIG_SETMASK, &old_, nullptr);
    }
    redis_sigpipe_guard(const redis_sigpipe_guard&) = delete;
    redis_sigpipe_guard& operator=(const redis_sigpipe_guard&) = delete;

private:
    bool active_;
    bool was_pending_ = false;
    sigset_t pipe_{};
    sigset_t old_{};
};

// One connection to Redis, opened lazily and re-opened after a failure once the
// backoff has passed. Every use holds the mutex.
class redis_link {
public:
    explicit redis_link(redis_connection_options options) noexcept
        : options_(std::move(options)), backoff_(options_.reconnect_backoff) {}
    ~redis_link() {
        if (context_ != nullptr) redisFree(context_);
    }
    redis_link(const redis_link&) = delete;
    redis_link& operator=(const redis_link&) = delete;

    // Runs exchange(redisContext*) -> R with a live connection, or returns
    // unavailable without waiting when there is none and the backoff has not
    // passed. A connection that failed during the exchange is dropped.
    template <class R, class Exchange>
    R run(std::chrono::steady_clock::time_point now, R unavailable, Exchange&& exchange) noexcept {
        std::lock_guard<std::mutex> lock(mutex_);
        redis_sigpipe_guard sigpipe(options_.guard_sigpipe);
        if (!connect_if_due(now)) return unavailable;
        R outcome = exchange(context_);
        if (context_->err != 0) {
            // An I/O error or a timeout: a late reply could still arrive on this
            // socket and be taken for the answer to a later command, so drop it.
            drop(now);
            return unavailable;
        }
        backoff_ = options_.reconnect_backoff;
        return outcome;
    }

    const redis_connection_options& options() const noexcept { return options_; }

private:
    bool connect_if_due(std::chrono::steady_clock::time_point now) noexcept {
        if (context_ != nullptr) return true;
        if (now < retry_at_) return false;
        const timeval connect_tv = redis_timeval(options_.connect_timeout);
        context_ = options_.unix_socket.empty()
                       ? redisConnectWithTimeout(options_.host.c_str(), options_.port, connect_tv)
                       : redisConnectUnixWithTimeout(options_.unix_socket.c_str(), connect_tv);
        if (context_ == nullptr || context_->err != 0 ||
            redisSetTimeout(context_, redis_timeval(options_.command_timeout)) != REDIS_OK || !handshake()) {
            drop(now);
            return false;
        }
        return true;
    }

    // AUTH and SELECT, when configured.
    bool handshake() noexcept {
        const auto ok = [this](int argc, const char** argv, const std::size_t* lens) {
            redis_reply_ptr reply(static_cast<redisReply*>(redisCommandArgv(context_, argc, argv, lens)));
            return reply != nullptr && reply->type == REDIS_REPLY_STATUS;
        };
        if (!options_.password.empty()) {
            const char* argv[3] = {"AUTH", options_.username.c_str(), options_.password.c_str()};
            std::size_t lens[3] = {4, options_.username.size(), options_.password.size()};
            const bool with_user = !options_.username.empty();
            if (!with_user) {
                argv[1] = argv[2];
                lens[1] = lens[2];
            }
            if (!ok(with_user ? 3 : 2, argv, lens)) return false;
        }
        if (options_.database != 0) {
            const redis_number db(options_.database);
            const char* argv[2] = {"SELECT", db.text};
            const std::size_t lens[2] = {6, db.size};
            if (!ok(2, argv, lens)) return false;
        }
        return true;
    }

    void drop(std::chrono::steady_clock::time_point now) noexcept {
        if (context_ != nullptr) redisFree(context_);
        context_ = nullptr;
        retry_at_ = now + backoff_;
        backoff_ = std::min(options_.max_reconnect_backoff, backoff_ * 2 + std::chrono::milliseconds{1});
    }

    std::mutex mutex_;
    redis_connection_options options_;
    redisContext* context_ = nullptr;
    std::chrono::steady_clock::time_point retry_at_{};
    std::chrono::milliseconds backoff_;
};

// Reads one reply; nullptr when the connection failed or timed out.
inline redis_reply_ptr redis_read(redisContext* context) noexcept {
    void* reply = nullptr;
    if (redisGetReply(context, &reply) != REDIS_OK) return nullptr;
    return redis_reply_ptr(static_cast<redisReply*>(reply));
}

// GCRA on the Redis server's clock, in microseconds (doubles hold them exactly).
// KEYS[1] bucket; ARGV[1] emission interval in us; ARGV[2] burst; ARGV[3] cost.
// The stored value is the theoretical arrival time (TAT); it expires when the
// bucket is full again, so idle keys vanish. Returns {1, 0} or {0, wait_us}.
inline constexpr const char redis_gcra_script[] =
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000000 + tonumber(t[2])\n"
    "local interval = tonumber(ARGV[1])\n"
    "local limit = interval * tonumber(ARGV[2])\n"
    "local tat = tonumber(redis.call('GET', KEYS[1]) or '')\n"
    "if tat == nil or tat < now then tat = now end\n"
    "local new_tat = tat + interval * tonumber(ARGV[3])\n"
    "if new_tat - now > limit then\n"
    "  return {0, math.ceil(new_tat - limit - now)}\n"
    "end\n"
    "redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX',\n"
    "           string.format('%d', math.max(1, math.ceil((new_tat - now) / 1000))))\n"
    "return {1, 0}\n";

}  // namespace detail

// ---------------------------------------------------------------------------
// redis_replay_store: the ReplayStore concept of ticket_verifier on Redis.
// ---------------------------------------------------------------------------
class redis_replay_store {
public:
    // Validates the options; does not contact Redis, so a server starts even when
    // Redis is down (its decisions then fail closed until Redis answers).
    static result<redis_replay_store> create(redis_replay_store_options options) {
        std::string error = detail::redis_validate_connection(options.connection);
        if (!error.empty()) return result<redis_replay_store>::failure(std::move(error));
        if (!detail::redis_prefix_valid(options.key_prefix))
            return result<redis_replay_store>::failure(
                "redis_replay_store: key_prefix must be 1 to 64 of [A-Za-z0-9:_.-]");
        if (options.expiry_margin < std::chrono::milliseconds{0} ||
            options.expiry_margin > std::chrono::hours{24})
            return result<redis_replay_store>::failure("redis_replay_store: expiry_margin must be 0 to 24 h");
        if (options.wait_replicas < 0 || options.wait_replicas > 64)
            return result<redis_replay_store>::failure("redis_replay_store: wait_replicas must be 0 to 64");
        if (options.wait_replicas > 0 && (options.wait_timeout < std::chrono::milliseconds{1} ||
                                          options.wait_timeout >= options.connection.command_timeout))
            return result<redis_replay_store>::failure(
                "redis_replay_store: wait_timeout must be at least 1 ms and below command_timeout");
        return result<redis_replay_store>::success(redis_replay_store(std::move(options)));
    }

    // ok: first use, remembered until expires_at + expiry_margin; ticket_replayed:
    // already spent (on any server); store_unavailable: Redis did not answer in
    // time or answered an error, so the ticket is refused.
    reason try_spend(const ticket_nonce& nonce, std::chrono::system_clock::time_point expires_at,
                     std::chrono::system_clock::time_point now) noexcept {
        redis_spend one{nonce, expires_at, reason::store_unavailable};
        try_spend_batch(&one, 1, now);
        return one.outcome;
    }

    // Spends several nonces in one round trip (pipelined SETs, then one WAIT when
    // wait_replicas is set). Each spend's outcome is as try_spend would answer.
    void try_spend_batch(redis_spend* spends, std::size_t count,
                         std::chrono::system_clock::time_point now) noexcept {
        for (std::size_t i = 0; i < count; ++i) spends[i].outcome = reason::store_unavailable;
        for (std::size_t done = 0; done < count; done += detail::redis_max_batch) {
            const std::size_t n = std::min(detail::redis_max_batch, count - done);
            spend_pipelined(spends + done, n, now);
        }
    }

    // A shared store remembers spends across restarts of any one server.
    std::chrono::system_clock::time_point accepts_issued_after() const noexcept {
        return std::chrono::system_clock::time_point::min();
    }

    const redis_replay_store_options& options() const noexcept { return options_; }

private:
    explicit redis_replay_store(redis_replay_store_options options)
        : options_(std::move(options)), link_(std::make_unique<detail::redis_link>(options_.connection)) {}

    long long ttl_ms(std::chrono::system_clock::time_point expires_at,
                     std::chrono::system_clock::time_point now) const noexcept {
        using std::chrono::milliseconds;
        // Whole milliseconds since the epoch cannot overflow when subtracted,
        // whatever time points a caller passes.
        const long long expires_ms = std::chrono::ceil<milliseconds>(expires_at.time_since_epoch()).count();
        const long long now_ms = std::chrono::floor<milliseconds>(now.time_since_epoch()).count();
        // An already expired nonce still gets the margin: the verifier decides
        // expiry; the store only must not forget too early.
        const long long left = expires_ms > now_ms ? expires_ms - now_ms : 0;
        const long long capped = std::min<long long>(left, 366LL * 24 * 3600 * 1000);
        return std::max<long long>(1, capped + options_.expiry_margin.count());
    }

    void spend_pipelined(redis_spend* spends, std::size_t n, std::chrono::system_clock::time_point now) noexcept {
        const std::string_view prefix = options_.key_prefix;
        link_->run(std::chrono::steady_clock::now(), 0, [&](redisContext* context) {
            for (std::size_t i = 0; i < n; ++i) {
                const detail::redis_key key(prefix, spends[i].nonce.data());
                const detail::redis_number ttl(ttl_ms(spends[i].expires_at, now));
                const char* argv[6] = {"SET", key.text.data(), "1", "NX", "PX", ttl.text};
                const std::size_t lens[6] = {3, key.size, 1, 2, 2, ttl.size};
                if (redisAppendCommandArgv(context, 6, argv, lens) != REDIS_OK) return 0;
            }
            const detail::redis_number replicas(options_.wait_replicas);
            const detail::redis_number wait_ms(options_.wait_timeout.count());
            if (options_.wait_replicas > 0) {
                const char* argv[3] = {"WAIT", replicas.text, wait_ms.text};
                const std::size_t lens[3] = {4, replicas.size, wait_ms.size};
                if (redisAppendCommandArgv(context, 3, argv, lens) != REDIS_OK) return 0;
            }
            for (std::size_t i = 0; i < n; ++i) {
                const detail::redis_reply_ptr reply = detail::redis_read(context);
                if (reply == nullptr) return 0;  // the rest stay store_unavailable
                if (reply->type == REDIS_REPLY_STATUS && std::strcmp(reply->str, "OK") == 0) {
                    spends[i].outcome = reason::ok;
                } else if (reply->type == REDIS_REPLY_NIL) {
                    spends[i].outcome = reason::ticket_replayed;
                }  // an error reply (OOM, READONLY, ...) leaves store_unavailable
            }
            if (options_.wait_replicas > 0) {
                const detail::redis_reply_ptr reply = detail::redis_read(context);
                const bool acknowledged = reply != nullptr && reply->type == REDIS_REPLY_INTEGER &&
                                          reply->integer >= options_.wait_replicas;
                if (!acknowledged) {
                    // Spent on the primary, but a failover could still lose it.
                    for (std::size_t i = 0; i < n; ++i) {
                        if (spends[i].outcome == reason::ok) spends[i].outcome = reason::store_unavailable;
                    }
                }
            }
            return 0;
        });
    }

    redis_replay_store_options options_;
    std::unique_ptr<detail::redis_link> link_;
};

// ---------------------------------------------------------------------------
// redis_limiter: a keyed rate limit shared by every server.
// ---------------------------------------------------------------------------
class redis_limiter {
public:
    // Validates the options; does not contact Redis (see redis_replay_store::create).
    static result<redis_limiter> create(redis_limiter_options options) {
        std::string error = detail::redis_validate_connection(options.connection);
        if (!error.empty()) return result<redis_limiter>::failure(std::move(error));
        if (!detail::redis_prefix_valid(options.key_prefix))
            return result<redis_limiter>::failure("redis_limiter: key_prefix must be 1 to 64 of [A-Za-z0-9:_.-]");
        const std::int64_t period_ns = options.rate.period.count();
        if (options.rate.count == 0 || period_ns <= 0)
            return result<redis_limiter>::failure("redis_limiter: rate needs a count of at least 1 and a positive period");
        // Redis's clock counts microseconds, and the script's doubles hold
        // now + window exactly only while the window stays within 100 years.
        if (static_cast<std::uint64_t>(period_ns) / options.rate.count < 1000)
            return result<redis_limiter>::failure("redis_limiter: rate over one per microsecond (1e6 per second)");
        if (options.burst == 0)
            return result<redis_limiter>::failure("redis_limiter: burst must be at least 1 (0 would refuse every request)");
        if (interval_us(options.rate) > 100ULL * 366 * 24 * 3600 * 1000000 / options.burst)
            return result<redis_limiter>::failure(
                "redis_limiter: burst / rate spans more than 100 years: lower the burst or raise the rate");
        return result<redis_limiter>::success(redis_limiter(std::move(options)));
    }

    // One decision for `key` (any bytes: a user id, an address, ...) costing n.
    // Allowed, or rate_limited with retry_after (whole ms, rounded up, never 0),
    // or store_unavailable. The rate runs on the Redis server's clock, so servers
    // with skewed clocks still agree; `now` only paces reconnect attempts.
    decision try_acquire(std::string_view key, std::chrono::steady_clock::time_point now,
                         std::uint32_t n = 1) noexcept {
        if (n == 0) return decision::allow();
        if (n > options_.burst) return decision(reason::rate_limited);  // can never pass (as keyed_limiter)
        const std::array<std::uint8_t, 32> digest = sha256(key);
        const detail::redis_key bucket(options_.key_prefix, digest.data());
        const detail::redis_number cost(n);
        return link_->run(now, decision(reason::store_unavailable), [&](redisContext* context) {
            return evaluate(context, bucket, cost);
        });
    }
    decision try_acquire(std::string_view key, std::uint32_t n = 1) noexcept {
        return try_acquire(key, std::chrono::steady_clock::now(), n);
    }

    // A peer address: hashed by its family and 16 bytes, so every server names
    // the same bucket for the same client (IPv6 grouped as the key was built).
    decision try_acquire(const address_key& key, std::chrono::steady_clock::time_point now,
                         std::uint32_t n = 1) noexcept {
        std::array<std::uint8_t, 17> bytes{};
        bytes[0] = key.family();
        std::memcpy(bytes.data() + 1, key.bytes(), 16);
        return try_acquire(std::string_view(reinterpret_cast<const char*>(bytes.data()), bytes.size()), now, n);
    }
    decision try_acquire(const address_key& key, std::uint32_t n = 1) noexcept {
        return try_acquire(key, std::chrono::steady_clock::now(), n);
    }

    // Other fixed-size keys (integers, byte arrays) are hashed by their object
    // bytes (integers: mind the byte order if your servers differ). A type with
    // padding or pointers is refused at compile time.
    template <class Key, class = std::enable_if_t<!std::is_convertible<const Key&, std::string_view>::value>>
    decision try_acquire(const Key& key, std::chrono::steady_clock::time_point now, std::uint32_t n = 1) noexcept {
        static_assert(std::has_unique_object_representations<Key>::value && !std::is_pointer<Key>::value,
                      "redis_limiter: a key type must be plain bytes without padding");
        return try_acquire(std::string_view(reinterpret_cast<const char*>(&key), sizeof key), now, n);
    }
    template <class Key, class = std::enable_if_t<!std::is_convertible<const Key&, std::string_view>::value>>
    decision try_acquire(const Key& key, std::uint32_t n = 1) noexcept {
        return try_acquire(key, std::chrono::steady_clock::now(), n);
    }

    const redis_limiter_options& options() const noexcept { return options_; }

private:
    explicit redis_limiter(redis_limiter_options options)
        : options_(std::move(options)),
          link_(std::make_unique<detail::redis_link>(options_.connection)),
          interval_us_(interval_us(options_.rate)) {
        const int n = std::snprintf(interval_text_, sizeof interval_text_, "%llu", interval_us_);
        interval_size_ = n > 0 ? static_cast<std::size_t>(n) : 0;
        const int b = std::snprintf(burst_text_, sizeof burst_text_, "%u", static_cast<unsigned>(options_.burst));
        burst_size_ = b > 0 ? static_cast<std::size_t>(b) : 0;
    }

    // 1/rate rounded up to a whole microsecond, Redis's clock resolution: never
    // faster than asked, and every sum in the script stays an exact integer.
    static unsigned long long interval_us(wsguard::rate r) noexcept {
        const auto period_us = (static_cast<unsigned long long>(r.period.count()) + 999) / 1000;
        return (period_us + r.count - 1) / r.count;
    }

    static std::chrono::milliseconds wait_ms(double us) noexcept {
        const double ms = std::ceil(us / 1000.0);
        return std::chrono::milliseconds(ms < 1.0 ? 1 : static_cast<long long>(std::min(ms, 1e12)));
    }

    // EVALSHA when the script's SHA-1 is known (SCRIPT LOAD, once per limiter),
    // EVAL when Redis lost the script (restart, SCRIPT FLUSH, failover): EVAL also
    // caches it again, so the next call is an EVALSHA once more.
    decision evaluate(redisContext* context, const detail::redis_key& bucket,
                      const detail::redis_number& cost) noexcept {
        if (sha_size_ == 0 && !load_script(context)) return decision(reason::store_unavailable);
        detail::redis_reply_ptr reply = call(context, "EVALSHA", std::string_view(sha_, sha_size_), bucket, cost);
        if (reply != nullptr && reply->type == REDIS_REPLY_ERROR && std::strncmp(reply->str, "NOSCRIPT", 8) == 0) {
            reply = call(context, "EVAL", std::string_view(detail::redis_gcra_script), bucket, cost);
        }
        if (reply == nullptr || reply->type != REDIS_REPLY_ARRAY || reply->elements != 2 ||
            reply->element[0]->type != REDIS_REPLY_INTEGER || reply->element[1]->type != REDIS_REPLY_INTEGER)
            return decision(reason::store_unavailable);
        if (reply->element[0]->integer == 1) return decision::allow();
        return decision(reason::rate_limited, wait_ms(static_cast<double>(reply->element[1]->integer)));
    }

    detail::redis_reply_ptr call(redisContext* context, const char* verb, std::string_view script_or_sha,
                                 const detail::redis_key& bucket, const detail::redis_number& cost) noexcept {
        const char* argv[7] = {verb, script_or_sha.data(), "1", bucket.text.data(), interval_text_, burst_text_,
                               cost.text};
        const std::size_t lens[7] = {std::strlen(verb), script_or_sha.size(), 1, bucket.size, interval_size_,
                                     burst_size_, cost.size};
        return detail::redis_reply_ptr(static_cast<redisReply*>(redisCommandArgv(context, 7, argv, lens)));
    }

    bool load_script(redisContext* context) noexcept {
        const char* argv[3] = {"SCRIPT", "LOAD", detail::redis_gcra_script};
        const std::size_t lens[3] = {6, 4, sizeof(detail::redis_gcra_script) - 1};
        const detail::redis_reply_ptr reply(static_cast<redisReply*>(redisCommandArgv(context, 3, argv, lens)));
        if (reply == nullptr || reply->type != REDIS_REPLY_STRING || reply->len != sizeof sha_) return false;
        std::memcpy(sha_, reply->str, sizeof sha_);
        sha_size_ = sizeof sha_;
        return true;
    }

    redis_limiter_options options_;
    std::unique_ptr<detail::redis_link> link_;
    unsigned long long interval_us_;
    char interval_text_[24]{};
    std::size_t interval_size_ = 0;
    char burst_text_[16]{};
    std::size_t burst_size_ = 0;
    char sha_[40]{};  // written under the link's mutex, read only there
    std::size_t sha_size_ = 0;
};


// ---------------------------------------------------------------------------
// redis_batch_verifier: verifies several tickets with one Redis round trip for
// all their spends (pipelined SET NX), for a server that accepts upgrades in
// bursts or several per event-loop turn. Each decision is exactly what
// ticket_verifier::verify would answer. Not thread-safe: one per thread.
// ---------------------------------------------------------------------------
struct presented_ticket {
    std::string_view ticket;    // as taken from the request (ticket_source)
    std::string_view origin;    // the request's Origin header, empty when absent
    std::string_view audience;  // this endpoint, as passed to the issuer
};

namespace detail {

// A ReplayStore that only records: it lets ticket_verifier run every check up
// to the spend, then redis_batch_verifier spends everything it recorded at once.
// Its provisional ok never reaches a caller: the batch verifier replaces it with
// Redis's answer.
class redis_spend_recorder {
public:
    reason try_spend(const ticket_nonce& nonce, std::chrono::system_clock::time_point expires_at,
                     std::chrono::system_clock::time_point) noexcept {
        if (count_ == spends_.size()) return reason::replay_store_full;
        spends_[count_++] = redis_spend{nonce, expires_at, reason::store_unavailable};
        return reason::ok;
    }
    std::chrono::system_clock::time_point accepts_issued_after() const noexcept {
        return std::chrono::system_clock::time_point::min();
    }

    std::array<redis_spend, redis_max_batch> spends_{};
    std::size_t count_ = 0;
};

}  // namespace detail

class redis_batch_verifier {
public:
    // At most this many tickets share a round trip; verify() takes any count.
    static constexpr std::size_t max_batch = detail::redis_max_batch;

    // `store` must outlive the batch verifier.
    static result<redis_batch_verifier> create(keyring keys, redis_replay_store& store,
                                               ticket_verifier_options options = {}) {
        auto recorder = std::make_unique<detail::redis_spend_recorder>();
        auto verifier = ticket_verifier<detail::redis_spend_recorder>::create(std::move(keys), *recorder, options);
        if (!verifier) return result<redis_batch_verifier>::failure("redis_batch_verifier: " + verifier.error());
        return result<redis_batch_verifier>::success(
            redis_batch_verifier(std::move(recorder), std::move(verifier).value(), store));
    }

    // decisions[i] and claims[i] answer tickets[i] (claims cleared unless ok).
    void verify(const presented_ticket* tickets, std::size_t count, decision* decisions, ticket_claims* claims,
                std::chrono::system_clock::time_point now) noexcept {
        for (std::size_t done = 0; done < count; done += max_batch) {
            const std::size_t n = std::min(max_batch, count - done);
            verify_chunk(tickets + done, n, decisions + done, claims + done, now);
        }
    }
    void verify(const presented_ticket* tickets, std::size_t count, decision* decisions,
                ticket_claims* claims) noexcept {
        verify(tickets, count, decisions, claims, std::chrono::system_clock::now());
    }

private:
    redis_batch_verifier(std::unique_ptr<detail::redis_spend_recorder> recorder,
                         ticket_verifier<detail::redis_spend_recorder> verifier, redis_replay_store& store)
        : recorder_(std::move(recorder)), verifier_(std::move(verifier)), store_(&store) {}

    void verify_chunk(const presented_ticket* tickets, std::size_t n, decision* decisions, ticket_claims* claims,
                      std::chrono::system_clock::time_point now) noexcept {
        recorder_->count_ = 0;
        std::array<std::uint16_t, max_batch> spend_of{};  // ticket -> its recorded spend
        for (std::size_t i = 0; i < n; ++i) {
            decisions[i] = verifier_.verify(tickets[i].ticket, tickets[i].origin, tickets[i].audience, claims[i], now);
            if (decisions[i].allowed()) spend_of[i] = static_cast<std::uint16_t>(recorder_->count_ - 1);
        }
        store_->try_spend_batch(recorder_->spends_.data(), recorder_->count_, now);
        for (std::size_t i = 0; i < n; ++i) {
            if (!decisions[i].allowed()) continue;
            const reason spent = recorder_->spends_[spend_of[i]].outcome;
            if (spent != reason::ok) {
                decisions[i] = decision(spent);
                claims[i].clear();
            }
        }
        recorder_->count_ = 0;
    }

    std::unique_ptr<detail::redis_spend_recorder> recorder_;
    ticket_verifier<detail::redis_spend_recorder> verifier_;
    redis_replay_store* store_;
};

}  // inline namespace WSGUARD_ABI_NS
}  // namespace wsguard

#endif  // WSGUARD_REDIS_HPP
