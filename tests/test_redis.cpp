// The Redis backend against a real redis-server that each test starts on a free
// loopback port and stops: exactly-once across processes, a shared rate across
// processes, failing closed while Redis is down or hung, recovery after it is back.
#include <wsguard/redis.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <dirent.h>
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <type_traits>
#include <vector>

#include "catch.hpp"
#include "redis_fixture.hpp"

#ifndef WSGUARD_REDIS_SERVER
#error "tests/meson.build defines WSGUARD_REDIS_SERVER, the path of redis-server"
#endif

using wsguard::reason;
using std::chrono::milliseconds;
using std::chrono::steady_clock;
using std::chrono::system_clock;

namespace {

using wsguard_test::admin;
using wsguard_test::all_keys;
using wsguard_test::free_loopback_port;
using wsguard_test::redis_server;
using wsguard_test::reply_ptr;
// verify's typed arguments for the origin and endpoint most tests use.
const wsguard::expected_origin app_origin{"https://app.example.com"};
const wsguard::expected_audience chat_audience{"api.example.com/chat"};

wsguard::redis_connection_options connection_to(int port) {
    wsguard::redis_connection_options c;
    c.host = "127.0.0.1";
    c.port = port;
    c.connect_timeout = milliseconds{100};
    c.command_timeout = milliseconds{100};
    c.reconnect_backoff = milliseconds{10};
    c.max_reconnect_backoff = milliseconds{100};
    return c;
}

// An issue time after every epoch these tests' Redis servers begin, for
// store-level tests that are not about epochs (they run well under an hour).
const system_clock::time_point issued_late = system_clock::now() + std::chrono::hours{1};

// Test stores allow 100 ms of clock skew between issuer and Redis (the same
// machine): tickets issued that long after an epoch began are accepted.
constexpr milliseconds test_issuer_skew{100};

// A verifier may accept tickets issued up to its clock_skew ahead only when the
// store's issuer_clock_skew covers that (create refuses otherwise): these
// verifiers allow none, as an issuer on this machine needs none.
wsguard::ticket_verifier_options verifier_options() {
    wsguard::ticket_verifier_options o;
    o.clock_skew = std::chrono::seconds{0};
    return o;
}

wsguard::redis_replay_store_options store_options(int port) {
    wsguard::redis_replay_store_options o;
    o.connection = connection_to(port);
    o.issuer_clock_skew = test_issuer_skew;
    o.connection.log = [](std::string_view) {};  // each new Redis begins an epoch; tests that read the log capture it
    return o;
}

wsguard::redis_replay_store make_store(int port) {
    const wsguard::redis_replay_store_options o = store_options(port);
    auto created = wsguard::redis_replay_store::create(o);
    REQUIRE(created);
    return std::move(created).value();
}

wsguard::redis_limiter make_limiter(int port, std::uint64_t per_second, std::uint32_t burst) {
    wsguard::redis_limiter_options o;
    o.connection = connection_to(port);
    o.rate = wsguard::rate::per_second(per_second);
    o.burst = burst;
    auto created = wsguard::redis_limiter::create(o);
    REQUIRE(created);
    return std::move(created).value();
}

wsguard::ticket_nonce nonce_of(std::uint32_t i, std::uint32_t salt = 0) {
    wsguard::ticket_nonce n{};
    for (int b = 0; b < 4; ++b) {
        n[static_cast<std::size_t>(b)] = static_cast<std::uint8_t>(i >> (8 * b));
        n[static_cast<std::size_t>(4 + b)] = static_cast<std::uint8_t>(salt >> (8 * b));
    }
    n[15] = 0xa5;
    return n;
}

const std::string ticket_secret(32, 'k');

wsguard::keyring test_keys() {
    auto keys = wsguard::keyring::create(1, {wsguard::keyring_key{1, ticket_secret, std::nullopt}});
    REQUIRE(keys);
    return std::move(keys).value();
}

std::vector<std::string> issue_tickets(std::size_t count, system_clock::time_point now) {
    auto issuer = wsguard::ticket_issuer::create(test_keys());
    REQUIRE(issuer);
    std::vector<std::string> tickets;
    for (std::size_t i = 0; i < count; ++i) {
        const std::string subject = "user-" + std::to_string(i);
        wsguard::ticket_request request;
        request.subject = subject;
        request.origin = "https://app.example.com";
        request.audience = "api.example.com/chat";
        auto issued = issuer->issue(request, now);
        REQUIRE(issued);
        tickets.push_back(issued.ticket);
    }
    // These verifiers allow no clock skew (an issuer on this machine needs
    // none): a ticket issued at `now`, an epoch's first acceptable time, is
    // valid once this clock reaches it, at most test_issuer_skew from here.
    REQUIRE(now - system_clock::now() < std::chrono::seconds{2});
    std::this_thread::sleep_until(now);
    return tickets;
}

// Begins the epoch of the Redis on `port` (one spend) and answers the first
// issue time its stores accept: tickets issued then verify normally.
system_clock::time_point begin_epoch(int port) {
    auto store = make_store(port);
    const auto now = system_clock::now();
    REQUIRE(store.try_spend(nonce_of(0xffffffff, 0xffffffff), issued_late, now + std::chrono::seconds{30},
                            now) == reason::ok);
    REQUIRE(store.accepts_issued_after() > system_clock::time_point::min());
    return store.accepts_issued_after();
}

// Forks `count` children that start together; each runs work(index, write_fd) and
// exits with its return value. Returns every child's bytes, in child order; empty
// for a child that failed.
template <class Work>
std::vector<std::string> run_children(int count, Work work) {
    int go[2];
    REQUIRE(pipe(go) == 0);
    std::vector<pid_t> pids;
    std::vector<int> outputs;
    for (int c = 0; c < count; ++c) {
        int out[2];
        REQUIRE(pipe(out) == 0);
        const pid_t pid = fork();
        REQUIRE(pid >= 0);
        if (pid == 0) {
            close(go[1]);
            close(out[0]);
            char byte;
            while (read(go[0], &byte, 1) > 0) {
            }  // EOF: the parent has forked everyone
            const int code = work(c, out[1]);
            close(out[1]);
            _exit(code);
        }
        close(out[1]);
        pids.push_back(pid);
        outputs.push_back(out[0]);
    }
    close(go[0]);
    close(go[1]);
    std::vector<std::string> results(static_cast<std::size_t>(count));
    for (int c = 0; c < count; ++c) {
        std::string& bytes = results[static_cast<std::size_t>(c)];
        char buffer[4096];
        for (;;) {
            const ssize_t got = read(outputs[static_cast<std::size_t>(c)], buffer, sizeof buffer);
            if (got <= 0) break;
            bytes.append(buffer, static_cast<std::size_t>(got));
        }
        close(outputs[static_cast<std::size_t>(c)]);
        int status = 0;
        waitpid(pids[static_cast<std::size_t>(c)], &status, 0);
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) bytes.clear();
    }
    return results;
}

// All `size` bytes through read(2) or write(2), looping over short transfers.
template <class Byte, class Io>
bool transfer_all(Io io, int fd, Byte* p, std::size_t size) {
    while (size > 0) {
        const ssize_t n = io(fd, p, size);
        if (n <= 0) return false;
        p += n;
        size -= static_cast<std::size_t>(n);
    }
    return true;
}

bool write_all(int fd, const void* data, std::size_t size) {
    return transfer_all(::write, fd, static_cast<const char*>(data), size);
}

bool read_all(int fd, void* data, std::size_t size) { return transfer_all(::read, fd, static_cast<char*>(data), size); }

}  // namespace

TEST_CASE("redis options are validated once, with a readable error", "[redis]") {
    using wsguard::redis_replay_store_options;
    struct row { const char* what; void (*edit)(redis_replay_store_options&); };
    const row rows[] = {
        {"empty host", [](redis_replay_store_options& o) { o.connection.host = ""; }},
        {"host with CRLF", [](redis_replay_store_options& o) { o.connection.host = "a\r\nb"; }},
        {"port 0", [](redis_replay_store_options& o) { o.connection.port = 0; }},
        {"port 65536", [](redis_replay_store_options& o) { o.connection.port = 65536; }},
        {"socket path too long", [](redis_replay_store_options& o) { o.connection.unix_socket.assign(200, 'x'); }},
        {"zero command timeout", [](redis_replay_store_options& o) { o.connection.command_timeout = milliseconds{0}; }},
        {"zero connect timeout", [](redis_replay_store_options& o) { o.connection.connect_timeout = milliseconds{0}; }},
        {"backoff above its max", [](redis_replay_store_options& o) { o.connection.reconnect_backoff = milliseconds{5000}; }},
        {"username without password", [](redis_replay_store_options& o) { o.connection.username = "u"; }},
        {"negative database", [](redis_replay_store_options& o) { o.connection.database = -1; }},
        {"empty prefix", [](redis_replay_store_options& o) { o.key_prefix = ""; }},
        {"prefix with a space", [](redis_replay_store_options& o) { o.key_prefix = "a b"; }},
        {"prefix with a star", [](redis_replay_store_options& o) { o.key_prefix = "app:*"; }},
        {"prefix too long", [](redis_replay_store_options& o) { o.key_prefix.assign(65, 'a'); }},
        {"negative margin", [](redis_replay_store_options& o) { o.expiry_margin = milliseconds{-1}; }},
        {"wait longer than the command timeout", [](redis_replay_store_options& o) {
             o.wait_replicas = 1;
             o.wait_timeout = o.connection.command_timeout;
         }},
    };
    for (const row& r : rows) {
        INFO(r.what);
        redis_replay_store_options o;
        r.edit(o);
        const auto created = wsguard::redis_replay_store::create(o);
        CHECK_FALSE(created);
        CHECK(created.error().find("redis") == 0);
    }

    wsguard::redis_limiter_options l;
    l.rate = wsguard::rate::per_second(0);
    CHECK_FALSE(wsguard::redis_limiter::create(l));
    l.rate = wsguard::rate::per_second(2'000'000);  // under a microsecond apart
    CHECK_FALSE(wsguard::redis_limiter::create(l));
    l.rate = wsguard::rate{1, std::chrono::hours(24 * 366 * 101)};  // one burst spans a century
    l.burst = 1;
    CHECK_FALSE(wsguard::redis_limiter::create(l));
    l.rate = wsguard::rate::per_second(10);
    l.burst = 0;
    CHECK_FALSE(wsguard::redis_limiter::create(l));
    l.burst = 5;
    CHECK(wsguard::redis_limiter::create(l));

    redis_replay_store_options over_socket;
    over_socket.connection.unix_socket = "/run/redis/redis.sock";
    over_socket.connection.host = "";
    CHECK(wsguard::redis_replay_store::create(over_socket));
}

TEST_CASE("redis stores are created while Redis is down and fail closed until it answers", "[redis]") {
    const int port = free_loopback_port();  // nothing listens here
    auto store = make_store(port);
    auto limiter = make_limiter(port, 10, 5);
    const auto now = system_clock::now();
    CHECK(store.try_spend(nonce_of(1), issued_late, now + std::chrono::seconds{30}, now) == reason::store_unavailable);
    const wsguard::decision d = limiter.try_acquire("client");
    CHECK(d.reason == reason::store_unavailable);
    CHECK(d.http_status() == 503);
    CHECK(d.close_code() == 1011);
    CHECK(store.accepts_issued_after() == system_clock::time_point::min());

    redis_server server(port);
    REQUIRE(server.running());
    bool recovered = false;
    for (int attempt = 0; attempt < 200 && !recovered; ++attempt) {
        recovered = store.try_spend(nonce_of(1), issued_late, now + std::chrono::seconds{30}, system_clock::now()) ==
                    reason::ok;
        if (!recovered) std::this_thread::sleep_for(milliseconds{10});
    }
    CHECK(recovered);
}

TEST_CASE("redis_replay_store spends a nonce once and keeps it for its lifetime plus the margin", "[redis]") {
    redis_server server;
    REQUIRE(server.running());
    auto store = make_store(server.port());
    const auto now = system_clock::now();
    const auto expires = now + std::chrono::seconds{30};

    CHECK(store.try_spend(nonce_of(7), issued_late, expires, now) == reason::ok);
    CHECK(store.try_spend(nonce_of(7), issued_late, expires, now) == reason::ticket_replayed);
    CHECK(store.try_spend(nonce_of(8), issued_late, expires, now) == reason::ok);

    // The key is the prefix and the nonce in hex; it lives 30 s + the 10 s margin.
    const std::string key = "wsguard:nonce:07" + std::string(28, '0') + "a5";
    const std::vector<std::string> keys = all_keys(server.port());
    CHECK(std::count(keys.begin(), keys.end(), key) == 1);
    const reply_ptr ttl = admin(server.port(), {"PTTL", key});
    REQUIRE(ttl != nullptr);
    REQUIRE(ttl->type == REDIS_REPLY_INTEGER);
    CHECK(ttl->integer > 30'000);
    CHECK(ttl->integer <= 40'000);

    // An already expired nonce is still remembered (for the margin), never refused
    // by Redis for a zero or negative PX.
    CHECK(store.try_spend(nonce_of(9), issued_late, now - std::chrono::seconds{5}, now) == reason::ok);
    CHECK(store.try_spend(nonce_of(9), issued_late, now - std::chrono::seconds{5}, now) == reason::ticket_replayed);

    // Extreme time points neither overflow nor make Redis refuse the PX.
    const auto max = system_clock::time_point::max();
    const auto min = system_clock::time_point::min();
    CHECK(store.try_spend(nonce_of(10), issued_late, max, min) == reason::ok);
    CHECK(store.try_spend(nonce_of(11), issued_late, min, max) == reason::ok);
}

TEST_CASE("redis_replay_store spends a batch in one round trip with the same outcomes", "[redis]") {
    redis_server server;
    REQUIRE(server.running());
    auto store = make_store(server.port());
    const auto now = system_clock::now();
    const auto expires = now + std::chrono::seconds{30};
    REQUIRE(store.try_spend(nonce_of(3), issued_late, expires, now) == reason::ok);

    std::vector<wsguard::redis_spend> batch;
    for (std::uint32_t i = 0; i < 600; ++i)
        batch.push_back({nonce_of(i), issued_late, expires, reason::internal_error});
    batch.push_back({nonce_of(5), issued_late, expires, reason::internal_error});  // twice in one batch
    store.try_spend_batch(batch.data(), batch.size(), now);
    for (std::size_t i = 0; i < batch.size(); ++i) {
        INFO("spend " << i);
        const bool replay = i == 3 || i == 600;
        CHECK(batch[i].outcome == (replay ? reason::ticket_replayed : reason::ok));
    }
}

TEST_CASE("one redis_replay_store shared by two threads spends each nonce once", "[redis]") {
    redis_server server;
    REQUIRE(server.running());
    auto store = make_store(server.port());
    constexpr std::uint32_t nonces = 500;
    const auto now = system_clock::now();
    std::vector<std::uint8_t> won[2] = {std::vector<std::uint8_t>(nonces), std::vector<std::uint8_t>(nonces)};
    std::vector<std::uint32_t> errors(2, 0);
    const auto race = [&](int t) {
        for (std::uint32_t k = 0; k < nonces; ++k) {
            const std::uint32_t i = t == 0 ? k : nonces - 1 - k;
            const reason r = store.try_spend(nonce_of(i, 5), issued_late, now + std::chrono::seconds{30}, now);
            if (r == reason::ok) won[t][i] = 1;
            else if (r != reason::ticket_replayed) ++errors[static_cast<std::size_t>(t)];
        }
    };
    std::thread other(race, 1);
    race(0);
    other.join();
    CHECK(errors[0] + errors[1] == 0);
    for (std::uint32_t i = 0; i < nonces; ++i) {
        INFO("nonce " << i);
        REQUIRE(won[0][i] + won[1][i] == 1);
    }
}

TEST_CASE("redis_replay_store with wait_replicas fails closed without enough replicas", "[redis]") {
    redis_server primary(free_loopback_port(), {"--repl-diskless-sync-delay", "0"});
    REQUIRE(primary.running());
    wsguard::redis_replay_store_options o;
    o.connection = connection_to(primary.port());
    o.wait_replicas = 1;
    o.wait_timeout = milliseconds{20};
    auto created = wsguard::redis_replay_store::create(o);
    REQUIRE(created);
    auto& store = created.value();
    const auto now = system_clock::now();
    // No replica acknowledges: the spend may not survive a failover, so refuse.
    CHECK(store.try_spend(nonce_of(1), issued_late, now + std::chrono::seconds{30}, now) == reason::store_unavailable);

    redis_server replica(free_loopback_port(), {"--replicaof", "127.0.0.1", std::to_string(primary.port())});
    REQUIRE(replica.running());
    bool acknowledged = false;
    for (std::uint32_t attempt = 0; attempt < 500 && !acknowledged; ++attempt) {
        acknowledged = store.try_spend(nonce_of(100 + attempt), issued_late, now + std::chrono::seconds{30}, now) ==
                       reason::ok;
        if (!acknowledged) std::this_thread::sleep_for(milliseconds{10});
    }
    CHECK(acknowledged);
    CHECK(store.try_spend(nonce_of(1), issued_late, now + std::chrono::seconds{30}, now) == reason::ticket_replayed);
}

TEST_CASE("redis stores authenticate, select their database and connect over a unix socket", "[redis]") {
    const std::string socket_path = "/tmp/wsguard-redis-test-" + std::to_string(getpid()) + ".sock";
    redis_server server(free_loopback_port(), {"--requirepass", "s3cret-password", "--unixsocket", socket_path});
    REQUIRE(server.running());
    const auto now = system_clock::now();
    const auto expires = now + std::chrono::seconds{30};

    wsguard::redis_replay_store_options o;
    o.connection = connection_to(server.port());
    auto no_password = wsguard::redis_replay_store::create(o);
    REQUIRE(no_password);
    CHECK(no_password->try_spend(nonce_of(1), issued_late, expires, now) == reason::store_unavailable);  // NOAUTH

    o.connection.password = "wrong";
    auto wrong_password = wsguard::redis_replay_store::create(o);
    REQUIRE(wrong_password);
    CHECK(wrong_password->try_spend(nonce_of(1), issued_late, expires, now) == reason::store_unavailable);

    o.connection.password = "s3cret-password";
    o.connection.database = 3;
    o.connection.unix_socket = socket_path;
    auto over_socket = wsguard::redis_replay_store::create(o);
    REQUIRE(over_socket);
    CHECK(over_socket->try_spend(nonce_of(1), issued_late, expires, now) == reason::ok);
    CHECK(over_socket->try_spend(nonce_of(1), issued_late, expires, now) == reason::ticket_replayed);

    // The nonce landed in database 3.
    const timeval tv{1, 0};
    redisContext* context = redisConnectUnixWithTimeout(socket_path.c_str(), tv);
    REQUIRE(context != nullptr);
    const reply_ptr auth(static_cast<redisReply*>(redisCommand(context, "AUTH s3cret-password")));
    const reply_ptr select(static_cast<redisReply*>(redisCommand(context, "SELECT 3")));
    const reply_ptr size(static_cast<redisReply*>(redisCommand(context, "DBSIZE")));
    redisFree(context);
    REQUIRE(size != nullptr);
    CHECK(size->integer == 2);  // the nonce and the epoch record
    server.stop();
    unlink(socket_path.c_str());
}

TEST_CASE("each nonce is spent exactly once across four processes racing on the same nonces", "[redis]") {
    redis_server server;
    REQUIRE(server.running());
    constexpr int processes = 4;
    constexpr std::uint32_t nonces = 1000;
    const int port = server.port();
    const auto results = run_children(processes, [port](int child, int out) {
        wsguard::redis_replay_store_options o = store_options(port);
        o.connection.command_timeout = milliseconds{2000};  // a loaded CI machine is not a failure here
        auto created = wsguard::redis_replay_store::create(o);
        if (!created) return 2;
        std::vector<std::uint8_t> won(nonces, 0);
        const auto now = system_clock::now();
        for (std::uint32_t k = 0; k < nonces; ++k) {
            // Children walk in different orders so they collide all over the range.
            const std::uint32_t i = child % 2 == 0 ? k : nonces - 1 - k;
            const reason r = created->try_spend(nonce_of(i, 77), issued_late, now + std::chrono::seconds{30}, now);
            if (r == reason::ok) won[i] = 1;
            else if (r != reason::ticket_replayed) return 3;
        }
        return write_all(out, won.data(), won.size()) ? 0 : 4;
    });
    std::vector<int> wins(nonces, 0);
    for (const std::string& bytes : results) {
        REQUIRE(bytes.size() == nonces);
        for (std::uint32_t i = 0; i < nonces; ++i) wins[i] += bytes[i];
    }
    for (std::uint32_t i = 0; i < nonces; ++i) {
        INFO("nonce " << i);
        REQUIRE(wins[i] == 1);
    }
}

TEST_CASE("each ticket is accepted exactly once across four processes verifying the same tickets", "[redis]") {
    redis_server server;
    REQUIRE(server.running());
    constexpr std::size_t count = 1000;
    const auto now = begin_epoch(server.port());
    const std::vector<std::string> tickets = issue_tickets(count, now);
    const int port = server.port();
    // Two children verify one ticket per round trip, two in pipelined batches of 50.
    const auto results = run_children(4, [&](int child, int out) {
        wsguard::redis_replay_store_options o = store_options(port);
        o.connection.command_timeout = milliseconds{2000};  // a loaded CI machine is not a failure here
        auto store = wsguard::redis_replay_store::create(o);
        if (!store) return 2;
        std::vector<std::uint8_t> won(count, 0);
        const auto order = [&](std::size_t k) { return child % 2 == 0 ? k : count - 1 - k; };
        if (child < 2) {
            auto verifier = wsguard::ticket_verifier<wsguard::redis_replay_store>::create(test_keys(), *store, verifier_options());
            if (!verifier) return 2;
            wsguard::ticket_claims claims;
            for (std::size_t k = 0; k < count; ++k) {
                const std::size_t i = order(k);
                const wsguard::decision d =
                    verifier->verify(wsguard::presented_ticket(tickets[i]), app_origin, chat_audience, claims, now);
                if (d.allowed() && claims.subject() == "user-" + std::to_string(i)) won[i] = 1;
                else if (d.reason != reason::ticket_replayed) return 3;
            }
        } else {
            auto verifier = wsguard::redis_batch_verifier::create(test_keys(), *store, verifier_options());
            if (!verifier) return 2;
            constexpr std::size_t batch = 50;
            std::vector<wsguard::redis_batch_ticket> presented(batch);
            std::vector<wsguard::decision> decisions(batch);
            std::vector<wsguard::ticket_claims> claims(batch);
            for (std::size_t k = 0; k < count; k += batch) {
                for (std::size_t j = 0; j < batch; ++j)
                    presented[j] = {wsguard::presented_ticket(tickets[order(k + j)]), app_origin, chat_audience};
                verifier->verify(presented.data(), batch, decisions.data(), claims.data(), now);
                for (std::size_t j = 0; j < batch; ++j) {
                    if (decisions[j].allowed()) won[order(k + j)] = 1;
                    else if (decisions[j].reason != reason::ticket_replayed) return 3;
                }
            }
        }
        return write_all(out, won.data(), won.size()) ? 0 : 4;
    });
    std::vector<int> wins(count, 0);
    std::vector<int> per_child;
    for (const std::string& bytes : results) {
        REQUIRE(bytes.size() == count);
        per_child.push_back(static_cast<int>(std::count(bytes.begin(), bytes.end(), 1)));
        for (std::size_t i = 0; i < count; ++i) wins[i] += bytes[i];
    }
    CAPTURE(per_child);
    for (std::size_t i = 0; i < count; ++i) {
        INFO("ticket " << i);
        REQUIRE(wins[i] == 1);
    }
}

TEST_CASE("redis_batch_verifier answers each ticket as verify would, with one round trip", "[redis]") {
    redis_server server;
    REQUIRE(server.running());
    auto store = make_store(server.port());
    const auto now = begin_epoch(server.port());
    const std::vector<std::string> tickets = issue_tickets(3, now);
    auto single = wsguard::ticket_verifier<wsguard::redis_replay_store>::create(test_keys(), store, verifier_options());
    REQUIRE(single);
    wsguard::ticket_claims claims;
    REQUIRE(single->verify(wsguard::presented_ticket(tickets[0]), app_origin, chat_audience, claims, now).allowed());

    std::string bad_mac = tickets[1];
    bad_mac[10] = bad_mac[10] == 'A' ? 'B' : 'A';  // inside issued-at: authenticated, decodes fine
    const wsguard::expected_origin evil{"https://evil.example"};
    const auto entry = [](std::string_view ticket, wsguard::expected_origin origin = app_origin) {
        return wsguard::redis_batch_ticket{wsguard::presented_ticket(ticket), origin, chat_audience};
    };
    const wsguard::redis_batch_ticket presented[] = {
        entry(tickets[0]),        // spent above
        entry(tickets[1]),        // fresh
        entry(tickets[1]),        // the same again in this batch
        entry(bad_mac),           // forged
        entry(tickets[2], evil),  // wrong origin: not spent
        entry(tickets[2]),        // fresh
        entry(""),
    };
    constexpr std::size_t n = std::size(presented);
    wsguard::decision decisions[n];
    wsguard::ticket_claims batch_claims[n];
    auto batch = wsguard::redis_batch_verifier::create(test_keys(), store, verifier_options());
    REQUIRE(batch);
    batch->verify(presented, n, decisions, batch_claims, now);
    const reason expected[n] = {reason::ticket_replayed, reason::ok, reason::ticket_replayed,
                                reason::ticket_bad_mac, reason::ticket_origin_mismatch, reason::ok,
                                reason::ticket_missing};
    for (std::size_t i = 0; i < n; ++i) {
        INFO("ticket " << i);
        CHECK(decisions[i].reason == expected[i]);
        CHECK(batch_claims[i].subject().empty() == (expected[i] != reason::ok));
    }
    CHECK(batch_claims[1].subject() == "user-1");

    server.stop();
    const std::vector<std::string> later = issue_tickets(1, now);
    const wsguard::redis_batch_ticket fresh[] = {entry(later[0])};
    batch->verify(fresh, 1, decisions, batch_claims, now);
    CHECK(decisions[0].reason == reason::store_unavailable);
    CHECK(batch_claims[0].subject().empty());
}

TEST_CASE("redis_limiter passes a burst from idle, then refuses with a rounded-up retry_after", "[redis]") {
    redis_server server;
    REQUIRE(server.running());
    auto limiter = make_limiter(server.port(), 1, 3);  // one per second: no refill during the test
    for (int i = 0; i < 3; ++i) CHECK(limiter.try_acquire("alice").allowed());
    const wsguard::decision refused = limiter.try_acquire("alice");
    CHECK(refused.reason == reason::rate_limited);
    CHECK(refused.retry_after >= milliseconds{1});
    CHECK(refused.retry_after <= milliseconds{1000});
    CHECK(refused.retry_after_seconds() == 1);
    CHECK(refused.http_status() == 429);
    CHECK(limiter.try_acquire("bob").allowed());  // keys are independent

    CHECK(limiter.try_acquire("carol", 0).allowed());
    CHECK(limiter.try_acquire("carol", 4).reason == reason::rate_limited);  // over the burst: never passes
    CHECK(limiter.try_acquire("carol", 3).allowed());
    CHECK_FALSE(limiter.try_acquire("carol", 1).allowed());

    // Idle keys vanish: every key carries an expiry of at most the refill time.
    const std::vector<std::string> keys = all_keys(server.port());
    CHECK(keys.size() == 3);
    for (const std::string& key : keys) {
        const reply_ptr ttl = admin(server.port(), {"PTTL", key});
        REQUIRE(ttl != nullptr);
        CHECK(ttl->integer > 0);
        CHECK(ttl->integer <= 3000 + 1);
    }
}

TEST_CASE("redis_limiter never forms a Redis key from the caller's bytes", "[redis]") {
    redis_server server;
    REQUIRE(server.running());
    auto limiter = make_limiter(server.port(), 1, 10);
    const std::string hostile[] = {"a b", "x\r\nSET pwned 1\r\n", "*", "wsguard:rate:*", std::string("nul\0byte", 8),
                                   std::string(10'000, 'k'), ""};
    for (const std::string& key : hostile) CHECK(limiter.try_acquire(key).allowed());
    const std::vector<std::string> keys = all_keys(server.port());
    CHECK(keys.size() == std::size(hostile));
    for (const std::string& key : keys) {
        INFO(key);
        REQUIRE(key.size() == std::string("wsguard:rate:").size() + 32);
        CHECK(key.rfind("wsguard:rate:", 0) == 0);
        CHECK(key.find_first_not_of("0123456789abcdef", 13) == std::string::npos);
    }
}

TEST_CASE("redis_limiter hashes fixed-size keys by their bytes", "[redis]") {
    redis_server server;
    REQUIRE(server.running());
    auto limiter = make_limiter(server.port(), 1, 1);
    const std::array<std::uint8_t, 4> address{192, 0, 2, 1};
    CHECK(limiter.try_acquire(address).allowed());
    CHECK(limiter.try_acquire(address).reason == reason::rate_limited);
    const std::array<std::uint8_t, 4> other{192, 0, 2, 2};
    CHECK(limiter.try_acquire(other).allowed());
}

TEST_CASE("redis_limiter keys a peer address by its family and bytes", "[redis]") {
    redis_server server;
    REQUIRE(server.running());
    auto limiter = make_limiter(server.port(), 1, 1);
    const auto a = wsguard::address_key::from_text("2001:db8::1");
    const auto same_64 = wsguard::address_key::from_text("2001:db8::2");  // same /64
    const auto v4 = wsguard::address_key::from_text("192.0.2.1");
    const auto mapped = wsguard::address_key::from_text("::ffff:192.0.2.1");
    REQUIRE(a);
    REQUIRE(same_64);
    REQUIRE(v4);
    REQUIRE(mapped);
    CHECK(limiter.try_acquire(*a).allowed());
    CHECK(limiter.try_acquire(*same_64).reason == reason::rate_limited);
    CHECK(limiter.try_acquire(*v4).allowed());
    CHECK(limiter.try_acquire(*mapped).reason == reason::rate_limited);
}

TEST_CASE("redis_limiter runs its script again after Redis lost it", "[redis]") {
    redis_server server;
    REQUIRE(server.running());
    auto limiter = make_limiter(server.port(), 1, 2);
    CHECK(limiter.try_acquire("k").allowed());
    const reply_ptr flushed = admin(server.port(), {"SCRIPT", "FLUSH"});
    REQUIRE(flushed != nullptr);
    CHECK(limiter.try_acquire("k").allowed());  // NOSCRIPT, then EVAL
    CHECK(limiter.try_acquire("k").reason == reason::rate_limited);
}

TEST_CASE("four processes sharing one redis_limiter key get the combined rate", "[redis]") {
    redis_server server;
    REQUIRE(server.running());
    constexpr std::uint64_t rate = 200;
    constexpr std::uint32_t burst = 50;
    constexpr auto window = milliseconds{2000};
    const int port = server.port();
    const auto start = steady_clock::now() + milliseconds{1000};
    const auto results = run_children(4, [&](int, int out) {
        wsguard::redis_limiter_options o;
        o.connection = connection_to(port);
        o.connection.command_timeout = milliseconds{2000};
        o.rate = wsguard::rate::per_second(rate);
        o.burst = burst;
        auto created = wsguard::redis_limiter::create(o);
        if (!created) return 2;
        // Connected before the window opens: a slow connect (valgrind, a loaded
        // machine) must not eat into the time the rate is measured over.
        if (created->try_acquire("warm-up").reason == reason::store_unavailable) return 5;
        std::this_thread::sleep_until(start);
        std::uint32_t allowed = 0;
        std::uint32_t refused = 0;
        for (std::uint32_t i = 0; i < 10'000'000 && steady_clock::now() < start + window; ++i) {
            const wsguard::decision d = created->try_acquire("shared");
            if (d.allowed()) ++allowed;
            else if (d.reason == reason::rate_limited && d.retry_after >= milliseconds{1}) ++refused;
            else return 3;
        }
        const std::uint32_t counts[2] = {allowed, refused};
        return write_all(out, counts, sizeof counts) ? 0 : 4;
    });
    std::uint32_t allowed = 0;
    std::uint32_t refused = 0;
    for (const std::string& bytes : results) {
        REQUIRE(bytes.size() == 2 * sizeof(std::uint32_t));
        std::uint32_t counts[2];
        std::memcpy(counts, bytes.data(), sizeof counts);
        allowed += counts[0];
        refused += counts[1];
    }
    const double expected = burst + static_cast<double>(rate) * 2.0;  // 450
    CAPTURE(allowed, refused, expected);
    std::printf("combined rate of 4 processes: %u allowed of %u, expected %.0f\n", allowed, allowed + refused, expected);
    CHECK(refused > 0);  // the processes did push past the limit
    CHECK(allowed >= expected * 0.9);
    CHECK(allowed <= expected * 1.1);
}

// A running redis-server with a replay store and a limiter on it, both shown
// to work once (nonce 1 spent, key "k" charged) before a test breaks Redis.
struct working_backends {
    redis_server server;
    wsguard::redis_replay_store store;
    wsguard::redis_limiter limiter;
    system_clock::time_point expires = system_clock::now() + std::chrono::seconds{30};

    working_backends() : store(make_store(server.port())), limiter(make_limiter(server.port(), 1000, 1000)) {
        REQUIRE(server.running());
        REQUIRE(store.try_spend(nonce_of(1), issued_late, expires, system_clock::now()) == reason::ok);
        REQUIRE(limiter.try_acquire("k").allowed());
    }

    // Polls (bounded: 300 x 10 ms) until the store has spent `nonce` and the
    // limiter has allowed "k" again. Each is tracked on its own: the store
    // answers ticket_replayed once it has spent the nonce, so waiting for both
    // in the same attempt could miss a store that recovered one attempt early.
    bool recovers(const wsguard::ticket_nonce& nonce) {
        bool store_back = false;
        bool limiter_back = false;
        for (int attempt = 0; attempt < 300 && !(store_back && limiter_back); ++attempt) {
            store_back = store_back || store.try_spend(nonce, issued_late, expires, system_clock::now()) == reason::ok;
            limiter_back = limiter_back || limiter.try_acquire("k").allowed();
            if (!(store_back && limiter_back)) std::this_thread::sleep_for(milliseconds{10});
        }
        return store_back && limiter_back;
    }
};

TEST_CASE("decisions fail closed while Redis is stopped and recover after it restarts", "[redis]") {
    working_backends b;
    auto& [server, store, limiter, expires] = b;

    server.stop();
    // Every decision fails closed, none waits longer than its timeouts (with a
    // generous allowance for sanitizers), and the process keeps serving.
    const auto bound = milliseconds{100 + 100 + 1000};
    for (std::uint32_t i = 0; i < 50; ++i) {
        const auto before = steady_clock::now();
        CHECK(store.try_spend(nonce_of(1000 + i), issued_late, expires, system_clock::now()) ==
              reason::store_unavailable);
        CHECK(limiter.try_acquire("k").reason == reason::store_unavailable);
        CHECK(steady_clock::now() - before < 2 * bound);
        std::this_thread::sleep_for(milliseconds{2});
    }

    // Redis restarted empty (no persistence here): decisions work again.
    REQUIRE(server.start());
    CHECK(b.recovers(nonce_of(2)));
    CHECK(store.try_spend(nonce_of(2), issued_late, expires, system_clock::now()) == reason::ticket_replayed);
}

TEST_CASE("decisions fail closed within the timeout while Redis hangs, then recover", "[redis]") {
    working_backends b;
    auto& [server, store, limiter, expires] = b;

    server.pause();
    for (std::uint32_t i = 0; i < 5; ++i) {
        const auto before = steady_clock::now();
        CHECK(store.try_spend(nonce_of(100 + i), issued_late, expires, system_clock::now()) ==
              reason::store_unavailable);
        CHECK(limiter.try_acquire("k").reason == reason::store_unavailable);
        CHECK(steady_clock::now() - before < milliseconds{2 * (100 + 100) + 2000});
    }
    server.resume();
    CHECK(b.recovers(nonce_of(2)));
}

TEST_CASE("an error answer from Redis fails closed and keeps the connection", "[redis]") {
    working_backends b;
    auto& [server, store, limiter, expires] = b;

    // Out of memory: Redis refuses every write with an -OOM error.
    REQUIRE(admin(server.port(), {"CONFIG", "SET", "maxmemory", "1"}) != nullptr);
    CHECK(store.try_spend(nonce_of(2), issued_late, expires, system_clock::now()) == reason::store_unavailable);
    CHECK(limiter.try_acquire("k2").reason == reason::store_unavailable);

    REQUIRE(admin(server.port(), {"CONFIG", "SET", "maxmemory", "0"}) != nullptr);
    CHECK(store.try_spend(nonce_of(2), issued_late, expires, system_clock::now()) == reason::ok);
    CHECK(limiter.try_acquire("k2").allowed());
}

// ---------------------------------------------------------------------------
// Eviction: the replay store refuses a Redis that may forget spent nonces.
// ---------------------------------------------------------------------------

namespace {

// Log lines of a store or limiter, kept for the test to read.
struct captured_log {
    std::shared_ptr<std::vector<std::string>> lines = std::make_shared<std::vector<std::string>>();
    std::function<void(std::string_view)> sink() const {
        auto kept = lines;
        return [kept](std::string_view line) { kept->emplace_back(line); };
    }
    std::size_t containing(std::string_view text) const {
        return static_cast<std::size_t>(std::count_if(lines->begin(), lines->end(), [&](const std::string& l) {
            return l.find(text) != std::string::npos;
        }));
    }
};

// Calls spend() until it answers something other than store_unavailable
// (Redis restarting, the backoff running), at most 500 x 10 ms.
template <class Spend>
reason settled(Spend spend) {
    reason r = spend();
    for (int attempt = 0; attempt < 500 && r == reason::store_unavailable; ++attempt) {
        std::this_thread::sleep_for(milliseconds{10});
        r = spend();
    }
    return r;
}

}  // namespace

TEST_CASE("redis_replay_store fails closed on an evicting maxmemory-policy, with its reason and a log line",
          "[redis]") {
    for (const char* policy : {"allkeys-lru", "volatile-ttl"}) {
        INFO(policy);
        redis_server server(free_loopback_port(), {"--maxmemory", "4mb", "--maxmemory-policy", policy});
        REQUIRE(server.running());
        const auto now = system_clock::now();

        captured_log log;
        auto options = store_options(server.port());
        options.connection.log = log.sink();
        auto created = wsguard::redis_replay_store::create(options);
        REQUIRE(created);
        auto& store = created.value();
        for (int i = 0; i < 3; ++i) {
            const reason r = store.try_spend(nonce_of(1), issued_late, now + std::chrono::seconds{30}, now);
            CHECK(r == reason::store_evicting);
            CHECK(wsguard::decision(r).http_status() == 503);
            CHECK(wsguard::decision(r).close_code() == 1011);
            std::this_thread::sleep_for(milliseconds{20});  // past the backoff: each try reconnects and re-reads
        }
        CHECK(all_keys(server.port()).empty());  // refused before anything was written
        // One line (the others fall within log_interval), naming the policy, the reason and the fix.
        REQUIRE(log.lines->size() == 1);
        CHECK(log.containing(std::string("maxmemory-policy ") + policy) == 1);
        CHECK(log.containing("store_evicting") == 1);
        CHECK(log.containing("noeviction") == 1);

        // The limiter runs on it (a lost bucket grants one burst) and says so.
        captured_log limiter_log;
        wsguard::redis_limiter_options limit;
        limit.connection = connection_to(server.port());
        limit.connection.log = limiter_log.sink();
        auto limiter = wsguard::redis_limiter::create(limit);
        REQUIRE(limiter);
        CHECK(limiter->try_acquire("k").allowed());
        CHECK(limiter_log.containing("extra burst") == 1);

        // The loudly named option runs the store anyway, and the log says UNSAFE.
        captured_log unsafe_log;
        auto unsafe_options = store_options(server.port());
        unsafe_options.allow_evicting_policy_unsafe = true;
        unsafe_options.connection.log = unsafe_log.sink();
        auto unsafe = wsguard::redis_replay_store::create(unsafe_options);
        REQUIRE(unsafe);
        CHECK(unsafe->try_spend(nonce_of(2), issued_late, now + std::chrono::seconds{30}, now) == reason::ok);
        CHECK(unsafe->try_spend(nonce_of(2), issued_late, now + std::chrono::seconds{30}, now) ==
              reason::ticket_replayed);
        CHECK(unsafe_log.containing("UNSAFE") == 1);

        // Fixed by the operator: the next connection reads noeviction and the store runs.
        REQUIRE(admin(server.port(), {"CONFIG", "SET", "maxmemory-policy", "noeviction"}) != nullptr);
        CHECK(settled([&] {
                  const reason r =
                      store.try_spend(nonce_of(3), issued_late, now + std::chrono::seconds{30}, now);
                  return r == reason::store_evicting ? reason::store_unavailable : r;
              }) == reason::ok);
    }
}

TEST_CASE("redis_replay_store fails closed when INFO is disabled, and needs no CONFIG command", "[redis]") {
    const auto now = system_clock::now();
    {
        redis_server server(free_loopback_port(), {"--rename-command", "INFO", ""});
        REQUIRE(server.running());
        captured_log log;
        auto options = store_options(server.port());
        options.connection.log = log.sink();
        auto store = wsguard::redis_replay_store::create(options);
        REQUIRE(store);
        CHECK(store->try_spend(nonce_of(1), issued_late, now + std::chrono::seconds{30}, now) ==
              reason::store_policy_unknown);
        CHECK(log.containing("did not report maxmemory-policy") == 1);
        CHECK(log.containing("store_policy_unknown") == 1);
    }
    {
        // As on managed services: CONFIG renamed away, INFO memory still answers.
        redis_server server(free_loopback_port(), {"--rename-command", "CONFIG", ""});
        REQUIRE(server.running());
        auto store = make_store(server.port());
        CHECK(store.try_spend(nonce_of(1), issued_late, now + std::chrono::seconds{30}, now) == reason::ok);
    }
}

TEST_CASE("the log hook writes one line per kind per log_interval and counts the lines it left out", "[redis]") {
    redis_server server(free_loopback_port(), {"--maxmemory-policy", "allkeys-lru"});
    REQUIRE(server.running());
    const auto now = system_clock::now();
    const auto attempts = [&](milliseconds interval, int count) {
        captured_log log;
        auto options = store_options(server.port());
        options.connection.log = log.sink();
        options.connection.log_interval = interval;
        auto store = wsguard::redis_replay_store::create(options);
        REQUIRE(store);
        for (int i = 0; i < count; ++i) {
            CHECK(store->try_spend(nonce_of(1), issued_late, now + std::chrono::seconds{30}, now) ==
                  reason::store_evicting);
            std::this_thread::sleep_for(milliseconds{120});  // past the longest backoff of these tests
        }
        return log;
    };
    CHECK(attempts(milliseconds{60'000}, 4).lines->size() == 1);
    const captured_log every = attempts(milliseconds{0}, 3);
    CHECK(every.lines->size() == 3);

    // The interval on an injected clock: lines of one kind inside it are left
    // out and counted; another kind has its own interval.
    captured_log direct;
    wsguard::detail::redis_log log(direct.sink(), milliseconds{1000});
    const auto t0 = steady_clock::now();
    using kind = wsguard::detail::redis_log_kind;
    log.write(kind::memory_policy, t0, "policy 1");
    log.write(kind::memory_policy, t0 + milliseconds{500}, "policy 2");
    log.write(kind::epoch, t0 + milliseconds{600}, "epoch 1");
    log.write(kind::memory_policy, t0 + milliseconds{999}, "policy 3");
    log.write(kind::memory_policy, t0 + milliseconds{1000}, "policy 4");
    log.write(kind::memory_policy, t0 + milliseconds{1500}, "policy 5");
    const std::vector<std::string> expected = {"policy 1", "epoch 1", "policy 4 (2 similar lines left out)"};
    CHECK(*direct.lines == expected);
}

TEST_CASE("with noeviction and memory full, no spent nonce is accepted again", "[redis]") {
    redis_server server(free_loopback_port(), {"--maxmemory", "3mb", "--maxmemory-policy", "noeviction"});
    REQUIRE(server.running());
    auto store = make_store(server.port());
    const auto now = system_clock::now();
    const auto expires = now + std::chrono::seconds{30};
    constexpr std::uint32_t spent = 200;
    for (std::uint32_t i = 0; i < spent; ++i)
        REQUIRE(store.try_spend(nonce_of(i), issued_late, expires, now) == reason::ok);

    // Ordinary traffic fills memory until Redis refuses writes (OOM).
    const std::string filler(64 * 1024, 'x');
    bool full = false;
    for (int i = 0; i < 200 && !full; ++i) {
        const reply_ptr r = admin(server.port(), {"SET", "filler:" + std::to_string(i), filler});
        REQUIRE(r != nullptr);
        full = r->type == REDIS_REPLY_ERROR;
    }
    REQUIRE(full);

    std::uint32_t replayed = 0;
    std::uint32_t unavailable = 0;
    for (std::uint32_t i = 0; i < spent; ++i) {
        const reason r = store.try_spend(nonce_of(i), issued_late, expires, now);
        CHECK(r != reason::ok);
        if (r == reason::ticket_replayed) ++replayed;
        if (r == reason::store_unavailable) ++unavailable;  // OOM: the script may not write
    }
    CAPTURE(replayed, unavailable);
    CHECK(replayed + unavailable == spent);
    // A fresh nonce is refused when Redis cannot write, or accepted only once remembered.
    if (store.try_spend(nonce_of(spent), issued_late, expires, now) == reason::ok)
        CHECK(store.try_spend(nonce_of(spent), issued_late, expires, now) == reason::ticket_replayed);
}


TEST_CASE("a verifier whose clock_skew exceeds the store's issuer_clock_skew is refused at create", "[redis]") {
    // A ticket issued clock_skew ahead, spent just before Redis lost its data,
    // would be issued after the new epoch's start + issuer_clock_skew and be
    // accepted again: the configuration is refused instead.
    auto store = wsguard::redis_replay_store::create(store_options(free_loopback_port())).value();  // no server needed
    CHECK(store.issuer_clock_skew() == test_issuer_skew);
    wsguard::ticket_verifier_options wide;
    wide.clock_skew = std::chrono::seconds{1};
    const auto refused = wsguard::ticket_verifier<wsguard::redis_replay_store>::create(test_keys(), store, wide);
    REQUIRE_FALSE(refused);
    CHECK(refused.error().find("issuer_clock_skew") != std::string::npos);
    CHECK_FALSE(wsguard::redis_batch_verifier::create(test_keys(), store, wide));
    CHECK(wsguard::ticket_verifier<wsguard::redis_replay_store>::create(test_keys(), store, verifier_options()));
    CHECK(wsguard::redis_batch_verifier::create(test_keys(), store, verifier_options()));
    // The defaults agree: 5 s each.
    auto defaults = wsguard::redis_replay_store::create(wsguard::redis_replay_store_options{}).value();
    CHECK(wsguard::ticket_verifier<wsguard::redis_replay_store>::create(test_keys(), defaults));
}

// ---------------------------------------------------------------------------
// Epochs: a Redis that lost its data is detected.
// ---------------------------------------------------------------------------

TEST_CASE("after Redis lost its data, tickets issued before are refused as after a restart of the in-memory store",
          "[redis]") {
    struct row {
        const char* what;
        void (*lose)(redis_server&);
    };
    const row rows[] = {
        {"restart without persistence", [](redis_server& s) { s.stop(); REQUIRE(s.start()); }},
        {"FLUSHALL", [](redis_server& s) { REQUIRE(admin(s.port(), {"FLUSHALL"}) != nullptr); }},
        {"FLUSHDB", [](redis_server& s) { REQUIRE(admin(s.port(), {"FLUSHDB"}) != nullptr); }},
        {"the epoch record alone evicted", [](redis_server& s) {
             REQUIRE(admin(s.port(), {"DEL", "wsguard:nonce:epoch"}) != nullptr);
         }},
    };
    for (const row& r : rows) {
        INFO(r.what);
        redis_server server;
        REQUIRE(server.running());
        auto store = make_store(server.port());
        auto verifier = wsguard::ticket_verifier<wsguard::redis_replay_store>::create(test_keys(), store, verifier_options());
        REQUIRE(verifier);
        const std::string origin = "https://app.example.com";
        const std::string audience = "api.example.com/chat";
        wsguard::ticket_claims claims;
        const auto verify = [&](const std::string& ticket) {
            return settled(
                [&] { return verifier->verify(wsguard::presented_ticket(ticket), wsguard::expected_origin(origin),
                                                  wsguard::expected_audience(audience), claims, system_clock::now())
                               .reason; });
        };

        const system_clock::time_point first = begin_epoch(server.port());
        CHECK(store.accepts_issued_after() == system_clock::time_point::min());  // not yet looked
        const std::vector<std::string> old = issue_tickets(2, first);
        CHECK(verify(old[0]) == reason::ok);
        CHECK(store.accepts_issued_after() == first);  // adopted the epoch another store began

        r.lose(server);

        // Spent before the loss, or never spent: both issued before the new epoch.
        CHECK(verify(old[0]) == reason::ticket_before_store_start);
        CHECK(verify(old[1]) == reason::ticket_before_store_start);
        const system_clock::time_point second = store.accepts_issued_after();
        CHECK(second > first);
        // The record holds Redis's own clock: the new bound is near this machine's now.
        CHECK(second - system_clock::now() < std::chrono::seconds{2});
        CHECK(system_clock::now() - second < std::chrono::seconds{2});

        // Tickets issued after the new epoch work once, as before.
        const std::vector<std::string> fresh = issue_tickets(1, second);
        CHECK(verify(fresh[0]) == reason::ok);
        CHECK(verify(fresh[0]) == reason::ticket_replayed);
        // The early refusal by accepts_issued_after() answers without Redis.
        server.stop();
        CHECK(verifier->verify(wsguard::presented_ticket(old[1]), wsguard::expected_origin(origin),
                               wsguard::expected_audience(audience), claims, system_clock::now())
                  .reason ==
              reason::ticket_before_store_start);
    }
}

TEST_CASE("a moved-from redis_replay_store fails closed", "[redis]") {
    redis_server server;
    REQUIRE(server.running());
    auto store = make_store(server.port());
    const auto now = system_clock::now();
    wsguard::redis_replay_store moved = std::move(store);
    // Using the moved-from object is the point of this test.
    CHECK(store.try_spend(nonce_of(1), issued_late, now + std::chrono::seconds{30}, now) ==
          reason::store_unavailable);
    CHECK(moved.try_spend(nonce_of(1), issued_late, now + std::chrono::seconds{30}, now) == reason::ok);
}

TEST_CASE("a spend is one EVALSHA, and one EVAL after Redis forgot the script", "[redis]") {
    redis_server server;
    REQUIRE(server.running());
    auto store = make_store(server.port());
    const auto now = system_clock::now();
    const auto expires = now + std::chrono::seconds{30};
    REQUIRE(store.try_spend(nonce_of(0), issued_late, expires, now) == reason::ok);  // connects
    const auto calls = [&](const char* command) {
        const reply_ptr info = admin(server.port(), {"INFO", "commandstats"});
        REQUIRE(info != nullptr);
        REQUIRE(info->type == REDIS_REPLY_STRING);
        const std::string_view value = wsguard::detail::redis_info_field(
            std::string_view(info->str, info->len), std::string("cmdstat_") + command);
        const std::size_t at = value.find("calls=");
        return at == std::string_view::npos ? 0 : std::atoi(std::string(value.substr(at + 6)).c_str());
    };
    REQUIRE(admin(server.port(), {"CONFIG", "RESETSTAT"}) != nullptr);
    for (std::uint32_t i = 1; i <= 10; ++i)
        CHECK(store.try_spend(nonce_of(i), issued_late, expires, now) == reason::ok);
    CHECK(calls("evalsha") == 10);
    CHECK(calls("eval") == 0);
    CHECK(calls("script") == 0);

    REQUIRE(admin(server.port(), {"SCRIPT", "FLUSH"}) != nullptr);
    CHECK(store.try_spend(nonce_of(11), issued_late, expires, now) == reason::ok);  // NOSCRIPT, then EVAL
    CHECK(calls("eval") == 1);
    CHECK(store.try_spend(nonce_of(12), issued_late, expires, now) == reason::ok);
    CHECK(calls("eval") == 1);  // EVAL cached it again: EVALSHA from here on
    CHECK(store.try_spend(nonce_of(11), issued_late, expires, now) == reason::ticket_replayed);

    // A batch after Redis forgot the script: every spend is sent again with EVAL, once.
    REQUIRE(admin(server.port(), {"SCRIPT", "FLUSH"}) != nullptr);
    std::vector<wsguard::redis_spend> batch;
    for (std::uint32_t i = 20; i < 30; ++i)
        batch.push_back({nonce_of(i), issued_late, expires, reason::internal_error});
    batch.push_back({nonce_of(12), issued_late, expires, reason::internal_error});  // spent above
    store.try_spend_batch(batch.data(), batch.size(), now);
    for (std::size_t i = 0; i < batch.size(); ++i) {
        INFO("spend " << i);
        CHECK(batch[i].outcome == (i + 1 == batch.size() ? reason::ticket_replayed : reason::ok));
    }
    CHECK(calls("eval") == 1 + 11);
}

namespace {

// Verifier processes for the data-loss races: each child owns its own
// redis_replay_store (its own connection) and ticket_verifier. The parent sends
// every child the same list of tickets, lets them go at once, may break Redis
// meanwhile, then collects each child's final answer per ticket (a
// store_unavailable answer is retried, as a client retries a 503) and the
// accepts_issued_after() each child ended with.
class verifier_processes {
public:
    struct answers {
        std::vector<reason> outcome;  // per ticket, in list order
        long long accepts_after_ms = 0;
    };

    verifier_processes(int port, int count) {
        for (int c = 0; c < count; ++c) {
            int down[2];
            int up[2];
            // Close-on-exec: a redis-server the test (re)starts later must not
            // hold these pipes open, or a child would never see their end.
            REQUIRE(pipe2(down, O_CLOEXEC) == 0);
            REQUIRE(pipe2(up, O_CLOEXEC) == 0);
            const pid_t pid = fork();
            REQUIRE(pid >= 0);
            if (pid == 0) {
                close(down[1]);
                close(up[0]);
                for (const child& other : children_) {  // only this child's pipes stay open
                    close(other.to);
                    close(other.from);
                }
                _exit(serve(port, c, down[0], up[1]));
            }
            close(down[0]);
            close(up[1]);
            children_.push_back({pid, down[1], up[0]});
        }
    }
    ~verifier_processes() {
        for (const child& c : children_) {
            const std::uint32_t stop[2] = {0, 0};  // an empty list: the child exits
            static_cast<void>(write_all(c.to, stop, sizeof stop));
            close(c.to);
            close(c.from);
            waitpid(c.pid, nullptr, 0);
        }
    }
    verifier_processes(const verifier_processes&) = delete;
    verifier_processes& operator=(const verifier_processes&) = delete;

    // Sends the list to every child; they start together once all have it, and
    // pause `pace` after each ticket (so that a loss the parent causes meanwhile
    // lands mid-run).
    void start(const std::vector<std::string>& tickets, std::chrono::microseconds pace = {}) {
        count_ = tickets.size();
        for (const child& c : children_) {
            const std::uint32_t header[2] = {static_cast<std::uint32_t>(tickets.size()),
                                             static_cast<std::uint32_t>(pace.count())};
            REQUIRE(write_all(c.to, header, sizeof header));
            for (const std::string& t : tickets) {
                const auto size = static_cast<std::uint16_t>(t.size());
                REQUIRE(write_all(c.to, &size, sizeof size));
                REQUIRE(write_all(c.to, t.data(), t.size()));
            }
        }
        for (const child& c : children_) {
            const char go = 'g';
            REQUIRE(write_all(c.to, &go, 1));
        }
    }

    std::vector<answers> finish() {
        std::vector<answers> all;
        for (const child& c : children_) {
            answers a;
            std::vector<std::uint16_t> codes(count_);
            REQUIRE(read_all(c.from, codes.data(), codes.size() * sizeof(std::uint16_t)));
            REQUIRE(read_all(c.from, &a.accepts_after_ms, sizeof a.accepts_after_ms));
            for (std::uint16_t code : codes) a.outcome.push_back(static_cast<reason>(code));
            all.push_back(std::move(a));
        }
        return all;
    }

private:
    struct child {
        pid_t pid;
        int to;
        int from;
    };

    // The child's loop: no Catch2 here, only exit codes.
    static int serve(int port, int index, int in, int out) {
        wsguard::redis_replay_store_options o = store_options(port);
        o.connection.command_timeout = milliseconds{2000};  // a loaded CI machine is not a failure here
        auto store = wsguard::redis_replay_store::create(o);
        if (!store) return 2;
        auto verifier = wsguard::ticket_verifier<wsguard::redis_replay_store>::create(test_keys(), *store, verifier_options());
        if (!verifier) return 2;
        wsguard::ticket_claims claims;
        for (;;) {
            std::uint32_t header[2] = {0, 0};
            if (!read_all(in, header, sizeof header) || header[0] == 0) return 0;
            const std::uint32_t n = header[0];
            std::vector<std::string> tickets(n);
            for (std::string& t : tickets) {
                std::uint16_t size = 0;
                if (!read_all(in, &size, sizeof size)) return 3;
                t.resize(size);
                if (!read_all(in, t.data(), size)) return 3;
            }
            char go = 0;
            if (!read_all(in, &go, 1)) return 3;
            std::vector<std::uint16_t> codes(n);
            for (std::uint32_t k = 0; k < n; ++k) {
                // Children walk in opposite orders so they collide all over the list.
                const std::uint32_t i = index % 2 == 0 ? k : n - 1 - k;
                const reason r = settled([&] {
                    return verifier->verify(wsguard::presented_ticket(tickets[i]), app_origin, chat_audience, claims,
                                            system_clock::now())
                        .reason;
                });
                codes[i] = static_cast<std::uint16_t>(r);
                if (header[1] != 0) std::this_thread::sleep_for(std::chrono::microseconds{header[1]});
            }
            const auto after = store->accepts_issued_after();
            const long long after_ms =
                after == system_clock::time_point::min()
                    ? std::numeric_limits<long long>::min()
                    : std::chrono::duration_cast<milliseconds>(after.time_since_epoch()).count();
            if (!write_all(out, codes.data(), codes.size() * sizeof(std::uint16_t)) ||
                !write_all(out, &after_ms, sizeof after_ms))
                return 4;
        }
    }

    std::vector<child> children_;
    std::size_t count_ = 0;
};

// Waits (bounded: 2000 x 1 ms) until Redis holds at least `keys` keys: the
// children are mid-run.
void wait_for_keys(int port, long long keys) {
    for (int attempt = 0; attempt < 2000; ++attempt) {
        const reply_ptr size = admin(port, {"DBSIZE"});
        if (size != nullptr && size->type == REDIS_REPLY_INTEGER && size->integer >= keys) return;
        std::this_thread::sleep_for(milliseconds{1});
    }
}

system_clock::time_point from_ms(long long ms) { return system_clock::time_point(milliseconds{ms}); }

}  // namespace

TEST_CASE("two processes accept no ticket twice while Redis restarts empty and is flushed, mid-run and between runs",
          "[redis]") {
    redis_server server;
    REQUIRE(server.running());
    const int port = server.port();
    constexpr std::size_t batch = 300;
    std::map<std::string, int> accepted;       // ticket -> times accepted, over every phase and process
    std::map<reason, std::size_t> refused;     // every refusal, counted by reason
    std::vector<std::vector<std::string>> sets;
    verifier_processes children(port, 2);
    const auto nothing = [] {};

    // Runs one phase over `tickets`; `meanwhile` breaks Redis while the
    // children verify. Answers the bound both children ended with (it must be
    // the same: they adopted the same epoch).
    const auto phase = [&](const char* name, const std::vector<std::string>& tickets, auto meanwhile) {
        INFO(name);
        constexpr bool mid_run = !std::is_same_v<decltype(meanwhile), decltype(nothing)>;
        children.start(tickets, std::chrono::microseconds{mid_run ? 2000 : 0});
        meanwhile();
        const auto answers = children.finish();
        REQUIRE(answers.size() == 2);
        for (const auto& a : answers) {
            for (std::size_t i = 0; i < tickets.size(); ++i) {
                if (a.outcome[i] == reason::ok) ++accepted[tickets[i]];
                else ++refused[a.outcome[i]];
            }
        }
        CHECK(answers[0].accepts_after_ms == answers[1].accepts_after_ms);
        return answers;
    };
    const auto issue_after = [&](const auto& answers) {
        sets.push_back(issue_tickets(batch, from_ms(answers[0].accepts_after_ms)));
        return sets.back();
    };

    // 1. A race on fresh tickets: each accepted exactly once.
    const std::vector<std::string> a = issue_tickets(batch, begin_epoch(port));
    const auto first = phase("race", a, nothing);
    for (const std::string& t : a) REQUIRE(accepted[t] == 1);

    // 2. Redis restarted empty between runs: every ticket of before is refused,
    //    with ticket_before_store_start, by both processes; both find the loss
    //    and adopt one new epoch.
    server.stop();
    REQUIRE(server.start());
    const auto refused_before = refused[reason::ticket_before_store_start];
    const auto second = phase("after an empty restart", a, nothing);
    CHECK(refused[reason::ticket_before_store_start] - refused_before == 2 * batch);
    CHECK(second[0].accepts_after_ms > first[0].accepts_after_ms);

    // 3. FLUSHALL while both verify fresh tickets: a spend in flight is before
    //    or after the flush, never both.
    const std::vector<std::string> b = issue_after(second);
    const auto third = phase("FLUSHALL mid-run", b, [&] {
        wait_for_keys(port, batch / 4);
        REQUIRE(admin(port, {"FLUSHALL"}) != nullptr);
    });
    // Paced at 2 ms a ticket, the children are still running when the flush lands.
    CHECK(third[0].accepts_after_ms > second[0].accepts_after_ms);

    // 4. An empty restart (SIGTERM) while both verify fresh tickets; the
    //    children retry the answers they lost with the connection.
    const std::vector<std::string> c = issue_after(third);
    const auto fourth = phase("empty restart mid-run", c, [&] {
        wait_for_keys(port, batch / 4);
        server.stop();
        REQUIRE(server.start());
    });
    CHECK(fourth[0].accepts_after_ms > third[0].accepts_after_ms);

    // 5. Everything seen so far once more, then fresh tickets: the old ones are
    //    all refused, the fresh ones accepted exactly once.
    std::vector<std::string> everything = a;
    everything.insert(everything.end(), b.begin(), b.end());
    everything.insert(everything.end(), c.begin(), c.end());
    const auto before_replays = accepted;
    const auto fifth = phase("everything again", everything, nothing);
    CHECK(accepted == before_replays);
    CHECK(fifth[0].accepts_after_ms == fourth[0].accepts_after_ms);
    const std::vector<std::string> d = issue_after(fifth);
    phase("fresh after the losses", d, nothing);
    for (const std::string& t : d) CHECK(accepted[t] == 1);

    // Zero tickets accepted twice, over every phase and both processes.
    std::size_t twice = 0;
    for (const auto& [ticket, times] : accepted) twice += times > 1 ? 1 : 0;
    CHECK(twice == 0);
    std::printf("data-loss race, 2 processes: %zu tickets accepted once, %zu twice; refused:", accepted.size(), twice);
    for (const auto& [why, n] : refused) std::printf(" %s %zu", wsguard::to_string(why), n);
    std::printf("\n");
    // Every refusal is one the store explains; none is a failure to answer.
    for (const auto& [why, n] : refused) {
        INFO(wsguard::to_string(why));
        CHECK((why == reason::ticket_replayed || why == reason::ticket_before_store_start));
    }
}
