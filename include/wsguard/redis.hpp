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
//                                server: one Lua script per spend checks the epoch
//                                and runs SET <prefix><hex(nonce)> 1 NX PX <ttl>.
//   wsguard::redis_limiter       a keyed GCRA limiter whose decision is one atomic
//                                Lua script on the Redis server's clock (TIME).
// Operations (durability, eviction, failover, what the log says):
// docs/redis-operations.md.
//
// Eviction. Each new connection reads maxmemory-policy from INFO memory (which
// works where CONFIG is renamed or disabled) and loads its script, in one
// pipelined round trip. A policy that evicts keys (allkeys-*, volatile-*)
// would forget spent nonces: the replay store refuses that connection, logs
// why, and answers store_evicting (store_policy_unknown when INFO does not name
// a policy) until a reconnect finds noeviction, unless
// allow_evicting_policy_unsafe is set. The limiter runs on any policy (a lost
// bucket grants one extra burst) and logs it.
//
// Epochs: a Redis that lost its data is detected. The store keeps a record
// <prefix>epoch in Redis, begun with SET NX on Redis's own clock (TIME), and
// every spend is one script that reads it, begins a new one when it is missing
// (a restart without persistence, FLUSHALL, a failover to an empty replica),
// refuses a ticket issued before the epoch began (+ issuer_clock_skew) with
// ticket_before_store_start, and only then SET NX PX the nonce. Scripts run
// alone on Redis, so two servers that both find the record missing adopt the
// one the first began, and a spend is entirely before or entirely after a
// loss. A nonce spent before the loss belongs to a ticket issued before the
// new epoch: it cannot be accepted again. The script is called with EVALSHA
// (one round trip) and sent again with EVAL when Redis forgot it.
// A partial loss that keeps the record (an RDB snapshot older than the last
// spends, AOF everysec's last second, a failover to a lagging replica) is not
// detected: that is what AOF fsync always and wait_replicas are for.
//
// Failing closed. When Redis is unreachable, slower than the configured timeout,
// or answers an error, every decision is store_unavailable (HTTP 503, close 1011):
// a ticket is never accepted twice because Redis could not say whether it was spent,
// and a limiter never waves traffic through. Nothing waits without bound: opening
// a connection waits at most connect_timeout, and each reply at most
// command_timeout (a decision reads one or two replies, plus AUTH / SELECT on a
// new connection, and INFO memory + SCRIPT LOAD pipelined). A broken connection is dropped and re-opened
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
// Failover and one-time use. Redis replication is asynchronous: a spend that the
// primary acknowledged can be lost if the primary dies before a replica received
// it and that replica is promoted. The same ticket can then be accepted once more,
// until it expires. Two bounds: tickets are short-lived (default 30 s), so the
// window of a replay after a failover is at most the ticket lifetime; and
// wait_replicas = N makes each spend wait (WAIT N wait_timeout, pipelined with the
// script) until N replicas acknowledged it, failing closed otherwise. WAIT does not
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
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <limits>
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
    // Where the backend reports what an operator must act on (an evicting
    // maxmemory-policy, a detected loss of Redis's data): one line, no newline,
    // called from the deciding thread. Empty: standard error. At most one line
    // of each kind per log_interval; the next one counts those left out.
    std::function<void(std::string_view line)> log;
    std::chrono::milliseconds log_interval{10'000};
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
    // Data loss (see "Epochs" above): after Redis lost its data, tickets issued
    // before the new epoch's start + issuer_clock_skew are refused. Cover how far
    // an issuer's clock may run ahead of the clock of any Redis host you run,
    // and at least the verifier's clock_skew (ticket_verifier::create checks).
    std::chrono::milliseconds issuer_clock_skew{5'000};
    // A Redis whose maxmemory-policy evicts keys (allkeys-*, volatile-*), or
    // whose policy cannot be read, forgets spent nonces: the store refuses to run
    // on it (store_evicting, store_policy_unknown). true runs anyway, and an
    // evicted nonce lets its ticket be accepted again. Never in production.
    bool allow_evicting_policy_unsafe = false;
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

// One nonce of a pipelined batch: in nonce, issued_at and expires_at, out outcome.
// issued_at is the ticket's issue time (ticket_claims::issued_at()); left at its
// default the spend is refused (ticket_before_store_start), never waved through.
struct redis_spend {
    ticket_nonce nonce{};
    std::chrono::system_clock::time_point issued_at = std::chrono::system_clock::time_point::min();
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
    if (!in(o.log_interval, milliseconds{0}, milliseconds{3'600'000}))
        return "redis: log_interval must be 0 to 1 h";
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

// Reads one reply; nullptr when the connection failed or timed out.
inline redis_reply_ptr redis_read(redisContext* context) noexcept {
    void* reply = nullptr;
    if (redisGetReply(context, &reply) != REDIS_OK) return nullptr;
    return redis_reply_ptr(static_cast<redisReply*>(reply));
}

// Rate-limited operator log lines: at most one per kind per interval, the next
// one saying how many were left out. Used under the link's mutex only.
enum class redis_log_kind : std::uint8_t { memory_policy = 0, epoch = 1 };

class redis_log {
public:
    redis_log(std::function<void(std::string_view)> sink, std::chrono::milliseconds interval) noexcept
        : sink_(std::move(sink)), interval_(interval) {}

    void write(redis_log_kind kind, std::chrono::steady_clock::time_point now, std::string_view line) noexcept {
        const auto k = static_cast<std::size_t>(kind);
        if (written_[k] && now - last_[k] < interval_) {
            ++left_out_[k];
            return;
        }
        written_[k] = true;
        last_[k] = now;
        char text[640];
        int n = std::snprintf(text, sizeof text, "%.*s", static_cast<int>(line.size()), line.data());
        if (left_out_[k] > 0 && n > 0 && static_cast<std::size_t>(n) < sizeof text) {
            const int more = std::snprintf(text + n, sizeof text - static_cast<std::size_t>(n),
                                           " (%llu similar lines left out)", left_out_[k]);
            if (more > 0) n += more;
        }
        left_out_[k] = 0;
        const std::string_view out(text, std::min(static_cast<std::size_t>(n > 0 ? n : 0), sizeof text - 1));
        if (sink_) {
            sink_(out);
        } else {
            std::fprintf(stderr, "%.*s\n", static_cast<int>(out.size()), out.data());
        }
    }

private:
    std::function<void(std::string_view)> sink_;
    std::chrono::milliseconds interval_;
    std::array<bool, 2> written_{};
    std::array<std::chrono::steady_clock::time_point, 2> last_{};
    std::array<unsigned long long, 2> left_out_{};
};

// What `INFO memory` says about eviction.
enum class redis_memory_policy : std::uint8_t { unknown, noeviction, evicting };

// The value of maxmemory_policy in an INFO reply, or empty.
inline std::string_view redis_info_field(std::string_view info, std::string_view field) noexcept {
    for (std::size_t at = 0; at < info.size();) {
        std::size_t end = info.find('\n', at);
        if (end == std::string_view::npos) end = info.size();
        std::string_view line = info.substr(at, end - at);
        if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
        if (line.size() > field.size() && line.compare(0, field.size(), field) == 0 && line[field.size()] == ':')
            return line.substr(field.size() + 1);
        at = end + 1;
    }
    return {};
}

inline redis_memory_policy redis_classify_policy(std::string_view policy) noexcept {
    if (policy == "noeviction") return redis_memory_policy::noeviction;
    if (policy.rfind("allkeys-", 0) == 0 || policy.rfind("volatile-", 0) == 0) return redis_memory_policy::evicting;
    return redis_memory_policy::unknown;
}

// What a new connection must satisfy beyond AUTH and SELECT.
struct redis_link_requirements {
    const char* component;          // names the owner in log lines
    bool refuse_evicting;           // an evicting or unreadable maxmemory-policy fails closed
    bool unsafe_accepted;           // refuse_evicting was waived by an _unsafe option (log says so)
    std::string_view script;        // loaded (SCRIPT LOAD) on every connection
};

// One connection to Redis, opened lazily and re-opened after a failure once the
// backoff has passed. Every use holds the mutex. Each connection first reads
// maxmemory-policy (INFO memory, which works where CONFIG is renamed or
// disabled) and loads the owner's Lua script, in one pipelined round trip.
class redis_link {
public:
    redis_link(redis_connection_options options, redis_link_requirements requirements) noexcept
        : options_(std::move(options)),
          requirements_(requirements),
          log_(options_.log, options_.log_interval),
          backoff_(options_.reconnect_backoff) {}
    ~redis_link() {
        if (context_ != nullptr) redisFree(context_);
    }
    redis_link(const redis_link&) = delete;
    redis_link& operator=(const redis_link&) = delete;

    // Runs exchange(redisContext*) with a live connection and answers ok, or
    // answers without waiting why there is none (store_unavailable while the
    // backoff runs; store_evicting / store_policy_unknown when the last
    // connection was refused for its policy). A connection that failed during
    // the exchange is dropped (store_unavailable).
    template <class Exchange>
    reason run(std::chrono::steady_clock::time_point now, Exchange&& exchange) noexcept {
        std::lock_guard<std::mutex> lock(mutex_);
        redis_sigpipe_guard sigpipe(options_.guard_sigpipe);
        const reason connected = connect_if_due(now);
        if (connected != reason::ok) return connected;
        exchange(context_);
        if (context_->err != 0) {
            // An I/O error or a timeout: a late reply could still arrive on this
            // socket and be taken for the answer to a later command, so drop it.
            drop(now, reason::store_unavailable);
            return reason::store_unavailable;
        }
        backoff_ = options_.reconnect_backoff;
        return reason::ok;
    }

    // Inside an exchange: the SHA-1 of the script this connection loaded.
    std::string_view script_sha() const noexcept { return std::string_view(sha_, sizeof sha_); }
    // Inside an exchange: an operator log line, rate-limited per kind.
    void log(redis_log_kind kind, std::string_view line) noexcept {
        log_.write(kind, std::chrono::steady_clock::now(), line);
    }
    const redis_connection_options& options() const noexcept { return options_; }

private:
    reason connect_if_due(std::chrono::steady_clock::time_point now) noexcept {
        if (context_ != nullptr) return reason::ok;
        if (now < retry_at_) return refusal_;
        const timeval connect_tv = redis_timeval(options_.connect_timeout);
        context_ = options_.unix_socket.empty()
                       ? redisConnectWithTimeout(options_.host.c_str(), options_.port, connect_tv)
                       : redisConnectUnixWithTimeout(options_.unix_socket.c_str(), connect_tv);
        if (context_ == nullptr || context_->err != 0 ||
            redisSetTimeout(context_, redis_timeval(options_.command_timeout)) != REDIS_OK || !handshake()) {
            drop(now, reason::store_unavailable);
            return reason::store_unavailable;
        }
        const reason checked = check_policy_and_load_script();
        if (checked != reason::ok || context_->err != 0) {
            drop(now, checked != reason::ok ? checked : reason::store_unavailable);
            return refusal_;
        }
        return reason::ok;
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

    // INFO memory and SCRIPT LOAD, pipelined: ok, or why this connection is refused.
    reason check_policy_and_load_script() noexcept {
        const char* info_argv[2] = {"INFO", "memory"};
        const std::size_t info_lens[2] = {4, 6};
        const char* load_argv[3] = {"SCRIPT", "LOAD", requirements_.script.data()};
        const std::size_t load_lens[3] = {6, 4, requirements_.script.size()};
        if (redisAppendCommandArgv(context_, 2, info_argv, info_lens) != REDIS_OK ||
            redisAppendCommandArgv(context_, 3, load_argv, load_lens) != REDIS_OK)
            return reason::store_unavailable;
        const redis_reply_ptr info = redis_read(context_);
        const redis_reply_ptr loaded = redis_read(context_);
        if (loaded == nullptr || loaded->type != REDIS_REPLY_STRING || loaded->len != sizeof sha_)
            return reason::store_unavailable;
        std::memcpy(sha_, loaded->str, sizeof sha_);

        std::string_view policy;
        if (info != nullptr && info->type == REDIS_REPLY_STRING)
            policy = redis_info_field(std::string_view(info->str, info->len), "maxmemory_policy");
        const redis_memory_policy kind = redis_classify_policy(policy);
        if (kind == redis_memory_policy::noeviction) return reason::ok;

        const bool refuse = requirements_.refuse_evicting && !requirements_.unsafe_accepted;
        const char* consequence =
            !requirements_.refuse_evicting
                ? "an evicted bucket grants its key one extra burst; running anyway"
                : refuse ? "spent nonces could be evicted and their tickets accepted twice; refusing to run "
                           "(set maxmemory-policy noeviction, see docs/redis-operations.md)"
                         : "UNSAFE: allow_evicting_policy_unsafe is set, so an evicted nonce lets its ticket be "
                           "accepted again; running anyway";
        char line[512];
        const int n = std::snprintf(
            line, sizeof line, "wsguard %s: Redis at %s:%d %s%.*s%s: %s%s", requirements_.component,
            options_.unix_socket.empty() ? options_.host.c_str() : options_.unix_socket.c_str(),
            options_.unix_socket.empty() ? options_.port : 0,
            kind == redis_memory_policy::evicting ? "has maxmemory-policy " : "did not report maxmemory-policy",
            kind == redis_memory_policy::evicting ? static_cast<int>(std::min<std::size_t>(policy.size(), 64)) : 0,
            policy.data() != nullptr ? policy.data() : "",
            kind == redis_memory_policy::evicting ? "" : " in INFO memory", consequence,
            !refuse ? ""
                    : kind == redis_memory_policy::evicting ? "; decisions are store_evicting"
                                                            : "; decisions are store_policy_unknown");
        log(redis_log_kind::memory_policy,
            std::string_view(line, std::min(static_cast<std::size_t>(n > 0 ? n : 0), sizeof line - 1)));
        if (!refuse) return reason::ok;
        return kind == redis_memory_policy::evicting ? reason::store_evicting : reason::store_policy_unknown;
    }

    void drop(std::chrono::steady_clock::time_point now, reason why) noexcept {
        if (context_ != nullptr) redisFree(context_);
        context_ = nullptr;
        refusal_ = why;
        retry_at_ = now + backoff_;
        backoff_ = std::min(options_.max_reconnect_backoff, backoff_ * 2 + std::chrono::milliseconds{1});
    }

    std::mutex mutex_;
    redis_connection_options options_;
    redis_link_requirements requirements_;
    redis_log log_;
    redisContext* context_ = nullptr;
    std::chrono::steady_clock::time_point retry_at_{};
    std::chrono::milliseconds backoff_;
    reason refusal_ = reason::store_unavailable;
    char sha_[40]{};
};

// Appends `EVALSHA sha|EVAL script numkeys keys... args...` to the pipeline.
template <std::size_t N>
bool redis_append_script(redisContext* context, bool by_sha, std::string_view sha, std::string_view script,
                         std::size_t key_count, const std::array<std::string_view, N>& keys_and_args) noexcept {
    const char* argv[N + 3];
    std::size_t lens[N + 3];
    const std::string_view body = by_sha ? sha : script;
    const redis_number keys(static_cast<long long>(key_count));
    argv[0] = by_sha ? "EVALSHA" : "EVAL";
    lens[0] = by_sha ? 7 : 4;
    argv[1] = body.data();
    lens[1] = body.size();
    argv[2] = keys.text;
    lens[2] = keys.size;
    for (std::size_t i = 0; i < N; ++i) {
        argv[i + 3] = keys_and_args[i].data();
        lens[i + 3] = keys_and_args[i].size();
    }
    return redisAppendCommandArgv(context, static_cast<int>(N + 3), argv, lens) == REDIS_OK;
}

inline bool redis_is_noscript(const redisReply* reply) noexcept {
    return reply != nullptr && reply->type == REDIS_REPLY_ERROR && std::strncmp(reply->str, "NOSCRIPT", 8) == 0;
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

// One spend, atomically with the data-loss check (see "Epochs" in the header
// comment). KEYS[1] the epoch record, KEYS[2] the nonce. ARGV[1] the epoch this
// store last saw ("" at first); ARGV[2] the ticket's issue time, Unix ms on the
// issuer's clock; ARGV[3] the nonce's lifetime in ms; ARGV[4] issuer_clock_skew
// in ms; ARGV[5] this store's random id.
// The record is "<start, Unix us on Redis's clock>-<id of the store that began
// it>". Missing (Redis lost its data), it is begun here: nothing else runs
// inside a script, so of two servers that both find it missing the first to
// run begins it and the second adopts it. A ticket issued before the start +
// skew is refused (2) without spending; otherwise SET NX PX: 1 spent, 0 replay.
// The reply is {code} while the record is ARGV[1], else {code, record, begun}.
inline constexpr const char redis_spend_script[] =
    "local epoch = redis.call('GET', KEYS[1])\n"
    "local begun = 0\n"
    "if not epoch then\n"
    "  local t = redis.call('TIME')\n"
    "  epoch = t[1] .. string.format('%06d', tonumber(t[2])) .. '-' .. ARGV[5]\n"
    "  redis.call('SET', KEYS[1], epoch, 'NX')\n"
    "  begun = 1\n"
    "end\n"
    "local start_us = tonumber(string.match(epoch, '^(%d+)%-'))\n"
    "if not start_us then return redis.error_reply('WSGUARD malformed epoch record') end\n"
    "local code = 1\n"
    "if tonumber(ARGV[2]) < math.ceil(start_us / 1000) + tonumber(ARGV[4]) then\n"
    "  code = 2\n"
    "elseif not redis.call('SET', KEYS[2], '1', 'NX', 'PX', ARGV[3]) then\n"
    "  code = 0\n"
    "end\n"
    "if epoch == ARGV[1] then return {code} end\n"
    "return {code, epoch, begun}\n";

// The start of an epoch record (Unix ms on Redis's clock, rounded up, as the
// script rounds it), or -1 when the record is not one the script writes.
inline long long redis_epoch_start_ms(std::string_view record) noexcept {
    unsigned long long us = 0;
    std::size_t i = 0;
    for (; i < record.size() && i < 17 && record[i] >= '0' && record[i] <= '9'; ++i)
        us = us * 10 + static_cast<unsigned>(record[i] - '0');
    if (i == 0 || i >= record.size() || record[i] != '-') return -1;
    return static_cast<long long>((us + 999) / 1000);
}

// What a redis_replay_store last saw of the epoch: the record (compared by the
// script) under the link's mutex, its acceptance bound also lock-free for
// accepts_issued_after().
struct redis_epoch_state {
    static constexpr long long unknown = std::numeric_limits<long long>::min();
    std::array<char, 64> record{};
    std::size_t record_size = 0;
    std::atomic<long long> accepts_after_ms{unknown};
};

}  // namespace detail

// ---------------------------------------------------------------------------
// redis_replay_store: the ReplayStore concept of ticket_verifier on Redis.
// ---------------------------------------------------------------------------
class redis_replay_store {
public:
    // Validates the options; does not contact Redis, so a server starts even when
    // Redis is down (its decisions then fail closed until Redis answers).
    static result<redis_replay_store> create(redis_replay_store_options options) {
        using std::chrono::milliseconds;
        std::string error = detail::redis_validate_connection(options.connection);
        if (!error.empty()) return result<redis_replay_store>::failure(std::move(error));
        if (!detail::redis_prefix_valid(options.key_prefix))
            return result<redis_replay_store>::failure(
                "redis_replay_store: key_prefix must be 1 to 64 of [A-Za-z0-9:_.-]");
        if (options.expiry_margin < milliseconds{0} || options.expiry_margin > std::chrono::hours{24})
            return result<redis_replay_store>::failure("redis_replay_store: expiry_margin must be 0 to 24 h");
        if (options.wait_replicas < 0 || options.wait_replicas > 64)
            return result<redis_replay_store>::failure("redis_replay_store: wait_replicas must be 0 to 64");
        if (options.wait_replicas > 0 &&
            (options.wait_timeout < milliseconds{1} || options.wait_timeout >= options.connection.command_timeout))
            return result<redis_replay_store>::failure(
                "redis_replay_store: wait_timeout must be at least 1 ms and below command_timeout");
        if (options.issuer_clock_skew < milliseconds{0} || options.issuer_clock_skew > std::chrono::minutes{10})
            return result<redis_replay_store>::failure("redis_replay_store: issuer_clock_skew must be 0 to 10 min");
        return result<redis_replay_store>::success(redis_replay_store(std::move(options)));
    }

    // ok: first use, remembered until expires_at + expiry_margin; ticket_replayed:
    // already spent (on any server); ticket_before_store_start: issued before
    // the epoch Redis is in (Redis lost its data since); store_unavailable: Redis
    // did not answer in time or answered an error; store_evicting /
    // store_policy_unknown: Redis may evict keys (see the options). One round
    // trip (EVALSHA), plus WAIT in the same write when wait_replicas is set.
    reason try_spend(const ticket_nonce& nonce, std::chrono::system_clock::time_point issued_at,
                     std::chrono::system_clock::time_point expires_at,
                     std::chrono::system_clock::time_point now) noexcept {
        redis_spend one{nonce, issued_at, expires_at, reason::store_unavailable};
        try_spend_batch(&one, 1, now);
        return one.outcome;
    }

    // Spends several nonces in one round trip (pipelined scripts, then one WAIT
    // when wait_replicas is set). Each spend's outcome is as try_spend answers.
    void try_spend_batch(redis_spend* spends, std::size_t count,
                         std::chrono::system_clock::time_point now) noexcept {
        for (std::size_t i = 0; i < count; ++i) spends[i].outcome = reason::store_unavailable;
        if (!link_) return;  // a moved-from store
        for (std::size_t done = 0; done < count; done += detail::redis_max_batch) {
            const std::size_t n = std::min(detail::redis_max_batch, count - done);
            spend_pipelined(spends + done, n, now);
        }
    }

    // The start of the epoch this store last saw in Redis + issuer_clock_skew:
    // tickets issued before it are refused (ticket_before_store_start), as the
    // in-memory store refuses tickets issued before a restart. time_point::min()
    // until the first spend has reached Redis. It moves forward when Redis lost
    // its data; each spend checks the epoch Redis is in atomically, so a value
    // read here may lag but never lets a ticket through.
    std::chrono::system_clock::time_point accepts_issued_after() const noexcept {
        if (!epoch_) return std::chrono::system_clock::time_point::min();  // moved-from: every spend fails closed
        const long long ms = epoch_->accepts_after_ms.load(std::memory_order_acquire);
        if (ms == detail::redis_epoch_state::unknown) return std::chrono::system_clock::time_point::min();
        return detail::ticket_time_point(ms);
    }

    // ticket_verifier::create refuses a clock_skew above this: a ticket issued
    // that far ahead and spent just before a data loss must fall before the
    // new epoch's start + this skew.
    std::chrono::milliseconds issuer_clock_skew() const noexcept { return options_.issuer_clock_skew; }

    const redis_replay_store_options& options() const noexcept { return options_; }

private:
    explicit redis_replay_store(redis_replay_store_options options)
        : options_(std::move(options)),
          link_(std::make_unique<detail::redis_link>(
              options_.connection,
              detail::redis_link_requirements{"redis_replay_store", true, options_.allow_evicting_policy_unsafe,
                                              std::string_view(detail::redis_spend_script,
                                                               sizeof(detail::redis_spend_script) - 1)})),
          epoch_(std::make_unique<detail::redis_epoch_state>()),
          epoch_key_(options_.key_prefix + "epoch"),
          skew_text_(options_.issuer_clock_skew.count()) {
        // Only names who began an epoch, so two stores beginning one in the same
        // microsecond still write different records: not a secret.
        std::uint8_t id[8];
        if (random_bytes(id, sizeof id) != reason::ok) {
            const auto mix = static_cast<std::uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count()) ^
                             reinterpret_cast<std::uintptr_t>(this);
            std::memcpy(id, &mix, sizeof id);
        }
        detail::redis_hex(id, sizeof id, store_id_);
    }

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

    // Appends the spend script for every spend marked in `send`.
    bool append_spends(redisContext* context, const redis_spend* spends, std::size_t n,
                       const std::array<bool, detail::redis_max_batch>& send, bool by_sha,
                       std::chrono::system_clock::time_point now) noexcept {
        const std::string_view known(epoch_->record.data(), epoch_->record_size);
        for (std::size_t i = 0; i < n; ++i) {
            if (!send[i]) continue;
            const detail::redis_key key(options_.key_prefix, spends[i].nonce.data());
            const detail::redis_number issued(
                std::chrono::floor<std::chrono::milliseconds>(spends[i].issued_at.time_since_epoch()).count());
            const detail::redis_number ttl(ttl_ms(spends[i].expires_at, now));
            const std::array<std::string_view, 7> keys_and_args = {
                epoch_key_, std::string_view(key.text.data(), key.size), known,
                std::string_view(issued.text, issued.size), std::string_view(ttl.text, ttl.size),
                std::string_view(skew_text_.text, skew_text_.size), std::string_view(store_id_, sizeof store_id_)};
            if (!detail::redis_append_script(context, by_sha, link_->script_sha(),
                                             std::string_view(detail::redis_spend_script,
                                                              sizeof(detail::redis_spend_script) - 1),
                                             2, keys_and_args))
                return false;
        }
        if (options_.wait_replicas > 0) {
            const detail::redis_number replicas(options_.wait_replicas);
            const detail::redis_number wait_ms(options_.wait_timeout.count());
            const char* argv[3] = {"WAIT", replicas.text, wait_ms.text};
            const std::size_t lens[3] = {4, replicas.size, wait_ms.size};
            if (redisAppendCommandArgv(context, 3, argv, lens) != REDIS_OK) return false;
        }
        return true;
    }

    // Reads the replies of append_spends; marks in `send` the spends Redis
    // answered NOSCRIPT (it lost the script: they ran nothing) and clears the
    // rest. false: the connection failed (the rest stay store_unavailable).
    bool read_spends(redisContext* context, redis_spend* spends, std::size_t n,
                     std::array<bool, detail::redis_max_batch>& send) noexcept {
        for (std::size_t i = 0; i < n; ++i) {
            if (!send[i]) continue;
            const detail::redis_reply_ptr reply = detail::redis_read(context);
            if (reply == nullptr) return false;
            send[i] = detail::redis_is_noscript(reply.get());
            spends[i].outcome = outcome_of(*reply);
        }
        if (options_.wait_replicas > 0) {
            const detail::redis_reply_ptr reply = detail::redis_read(context);
            const bool acknowledged =
                reply != nullptr && reply->type == REDIS_REPLY_INTEGER && reply->integer >= options_.wait_replicas;
            if (!acknowledged) {
                // Spent on the primary, but a failover could still lose it.
                for (std::size_t i = 0; i < n; ++i) {
                    if (spends[i].outcome == reason::ok) spends[i].outcome = reason::store_unavailable;
                }
            }
        }
        return true;
    }

    // A script reply: {code} or {code, record, begun}. Anything else (an error
    // such as OOM or READONLY, a malformed record) fails closed.
    reason outcome_of(const redisReply& reply) noexcept {
        if (reply.type != REDIS_REPLY_ARRAY || (reply.elements != 1 && reply.elements != 3) ||
            reply.element[0]->type != REDIS_REPLY_INTEGER)
            return reason::store_unavailable;
        if (reply.elements == 3) {
            const redisReply& record = *reply.element[1];
            if (record.type != REDIS_REPLY_STRING ||
                record.len > static_cast<std::size_t>(epoch_->record.size()) ||
                reply.element[2]->type != REDIS_REPLY_INTEGER)
                return reason::store_unavailable;
            if (!adopt_epoch(std::string_view(record.str, record.len), reply.element[2]->integer == 1))
                return reason::store_unavailable;
        }
        switch (reply.element[0]->integer) {
            case 1: return reason::ok;
            case 0: return reason::ticket_replayed;
            case 2: return reason::ticket_before_store_start;
            default: return reason::store_unavailable;
        }
    }

    // Redis is in an epoch other than the one this store last saw: remember it,
    // and tell the operator when that means Redis lost its data.
    bool adopt_epoch(std::string_view record, bool begun_here) noexcept {
        const std::string_view known(epoch_->record.data(), epoch_->record_size);
        if (record == known) return true;  // an earlier reply of this batch already adopted it
        const long long start_ms = detail::redis_epoch_start_ms(record);
        if (start_ms < 0) return false;
        const bool lost = epoch_->record_size != 0 || begun_here;
        std::memcpy(epoch_->record.data(), record.data(), record.size());
        epoch_->record_size = record.size();
        const long long accepts_after = start_ms + options_.issuer_clock_skew.count();
        epoch_->accepts_after_ms.store(accepts_after, std::memory_order_release);
        if (!lost) return true;  // the first look of this store at a running epoch
        char line[512];
        const int n = std::snprintf(
            line, sizeof line,
            "wsguard redis_replay_store: Redis %s (a restart without persistence, FLUSHALL/FLUSHDB, a failover "
            "to an empty replica, an evicted record): epoch %.*s began at %lld ms Unix time on Redis's clock; "
            "tickets issued before %lld ms are refused with ticket_before_store_start",
            begun_here ? "had no epoch record (its first use by wsguard, or it lost its data), so this server "
                         "began one"
                       : "lost its data",
            static_cast<int>(record.size()), record.data(), start_ms, accepts_after);
        link_->log(detail::redis_log_kind::epoch,
                   std::string_view(line, std::min(static_cast<std::size_t>(n > 0 ? n : 0), sizeof line - 1)));
        return true;
    }

    void spend_pipelined(redis_spend* spends, std::size_t n, std::chrono::system_clock::time_point now) noexcept {
        const reason link = link_->run(std::chrono::steady_clock::now(), [&](redisContext* context) {
            std::array<bool, detail::redis_max_batch> send{};
            for (std::size_t i = 0; i < n; ++i) send[i] = true;
            if (!append_spends(context, spends, n, send, true, now) || !read_spends(context, spends, n, send))
                return;
            // Redis forgot the script (restart, SCRIPT FLUSH, failover): EVAL
            // sends it again (and caches it), for those spends only.
            if (std::none_of(send.begin(), send.begin() + static_cast<std::ptrdiff_t>(n), [](bool b) { return b; }))
                return;
            if (append_spends(context, spends, n, send, false, now))
                static_cast<void>(read_spends(context, spends, n, send));  // a failure: the link drops the connection
        });
        if (link == reason::ok) return;
        for (std::size_t i = 0; i < n; ++i) {
            if (spends[i].outcome == reason::store_unavailable) spends[i].outcome = link;
        }
    }

    redis_replay_store_options options_;
    std::unique_ptr<detail::redis_link> link_;
    std::unique_ptr<detail::redis_epoch_state> epoch_;  // behind a pointer: the store moves, atomics do not
    std::string epoch_key_;
    detail::redis_number skew_text_;
    char store_id_[16]{};
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
        decision verdict(reason::store_unavailable);
        const reason link = link_->run(now, [&](redisContext* context) { verdict = evaluate(context, bucket, cost); });
        return link == reason::ok ? verdict : decision(link);
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
          link_(std::make_unique<detail::redis_link>(
              options_.connection,
              // A lost bucket only grants one extra burst: an evicting Redis is logged, not refused.
              detail::redis_link_requirements{
                  "redis_limiter", false, false,
                  std::string_view(detail::redis_gcra_script, sizeof(detail::redis_gcra_script) - 1)})),
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

    // EVALSHA with the SHA-1 of the script the connection loaded; EVAL when
    // Redis lost it since (SCRIPT FLUSH): EVAL also caches it again, so the next
    // call is an EVALSHA once more.
    decision evaluate(redisContext* context, const detail::redis_key& bucket,
                      const detail::redis_number& cost) noexcept {
        detail::redis_reply_ptr reply = call(context, true, bucket, cost);
        if (detail::redis_is_noscript(reply.get())) reply = call(context, false, bucket, cost);
        if (reply == nullptr || reply->type != REDIS_REPLY_ARRAY || reply->elements != 2 ||
            reply->element[0]->type != REDIS_REPLY_INTEGER || reply->element[1]->type != REDIS_REPLY_INTEGER)
            return decision(reason::store_unavailable);
        if (reply->element[0]->integer == 1) return decision::allow();
        return decision(reason::rate_limited, wait_ms(static_cast<double>(reply->element[1]->integer)));
    }

    detail::redis_reply_ptr call(redisContext* context, bool by_sha, const detail::redis_key& bucket,
                                 const detail::redis_number& cost) noexcept {
        const std::array<std::string_view, 4> keys_and_args = {
            std::string_view(bucket.text.data(), bucket.size), std::string_view(interval_text_, interval_size_),
            std::string_view(burst_text_, burst_size_), std::string_view(cost.text, cost.size)};
        if (!detail::redis_append_script(context, by_sha, link_->script_sha(),
                                         std::string_view(detail::redis_gcra_script,
                                                          sizeof(detail::redis_gcra_script) - 1),
                                         1, keys_and_args))
            return nullptr;
        return detail::redis_read(context);
    }

    redis_limiter_options options_;
    std::unique_ptr<detail::redis_link> link_;
    unsigned long long interval_us_;
    char interval_text_[24]{};
    std::size_t interval_size_ = 0;
    char burst_text_[16]{};
    std::size_t burst_size_ = 0;
};


// ---------------------------------------------------------------------------
// redis_batch_verifier: verifies several tickets with one Redis round trip for
// all their spends (pipelined spend scripts), for a server that accepts upgrades in
// bursts or several per event-loop turn. Each decision is exactly what
// ticket_verifier::verify would answer. Not thread-safe: one per thread.
// ---------------------------------------------------------------------------
// One entry of a batch: verify's three typed arguments (wsguard.hpp), so a
// swapped origin and audience does not compile here either.
struct redis_batch_ticket {
    presented_ticket ticket;
    expected_origin origin;
    expected_audience audience;
};

namespace detail {

// A ReplayStore that only records: it lets ticket_verifier run every check up
// to the spend, then redis_batch_verifier spends everything it recorded at once.
// Its provisional ok never reaches a caller: the batch verifier replaces it with
// Redis's answer.
class redis_spend_recorder {
public:
    reason try_spend(const ticket_nonce& nonce, std::chrono::system_clock::time_point issued_at,
                     std::chrono::system_clock::time_point expires_at, std::chrono::system_clock::time_point) noexcept {
        if (count_ == spends_.size()) return reason::replay_store_full;
        spends_[count_++] = redis_spend{nonce, issued_at, expires_at, reason::store_unavailable};
        return reason::ok;
    }
    // The Redis store's epoch check runs with each recorded spend.
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
        if (store.issuer_clock_skew() < options.clock_skew)  // as ticket_verifier::create checks it
            return result<redis_batch_verifier>::failure(
                "redis_batch_verifier: the replay store's issuer_clock_skew is below clock_skew; a ticket spent just "
                "before the store lost its data could be accepted again: raise the store's issuer_clock_skew or "
                "lower clock_skew");
        auto recorder = std::make_unique<detail::redis_spend_recorder>();
        auto verifier = ticket_verifier<detail::redis_spend_recorder>::create(std::move(keys), *recorder, options);
        if (!verifier) return result<redis_batch_verifier>::failure("redis_batch_verifier: " + verifier.error());
        return result<redis_batch_verifier>::success(
            redis_batch_verifier(std::move(recorder), std::move(verifier).value(), store));
    }

    // decisions[i] and claims[i] answer tickets[i] (claims cleared unless ok).
    void verify(const redis_batch_ticket* tickets, std::size_t count, decision* decisions, ticket_claims* claims,
                std::chrono::system_clock::time_point now) noexcept {
        for (std::size_t done = 0; done < count; done += max_batch) {
            const std::size_t n = std::min(max_batch, count - done);
            verify_chunk(tickets + done, n, decisions + done, claims + done, now);
        }
    }
    void verify(const redis_batch_ticket* tickets, std::size_t count, decision* decisions,
                ticket_claims* claims) noexcept {
        verify(tickets, count, decisions, claims, std::chrono::system_clock::now());
    }

private:
    redis_batch_verifier(std::unique_ptr<detail::redis_spend_recorder> recorder,
                         ticket_verifier<detail::redis_spend_recorder> verifier, redis_replay_store& store)
        : recorder_(std::move(recorder)), verifier_(std::move(verifier)), store_(&store) {}

    void verify_chunk(const redis_batch_ticket* tickets, std::size_t n, decision* decisions, ticket_claims* claims,
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
