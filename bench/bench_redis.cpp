// Ticket verification with the Redis replay store (one round trip per ticket, and
// pipelined batches) against the in-memory store; the store's spend (the epoch
// script, one EVALSHA) against the plain SET NX PX it sent before epochs; and
// the Redis limiter against the in-memory keyed_limiter, in one binary. Starts its own redis-server on a
// free loopback port (WSGUARD_REDIS_SERVER, else redis-server from PATH) and
// skips with a message when it cannot. Prints the ratios after the run.
#include <wsguard/redis.hpp>

#include <benchmark/benchmark.h>

#include "../tests/redis_fixture.hpp"

#include <time.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>
#include <thread>
#include <vector>

namespace {

using std::chrono::milliseconds;
using std::chrono::system_clock;

int redis_port = 0;  // the running server's, once main has started it

const std::string secret(32, 's');
const char* const origin = "https://app.example.com";
const char* const audience = "api.example.com/chat";

wsguard::keyring keys() { return wsguard::keyring::create(1, {wsguard::keyring_key{1, secret, std::nullopt}}).value(); }

// Every verification needs a ticket never spent before: issued up front.
std::vector<std::string> tickets;
std::size_t next_ticket = 0;

const std::string& fresh_ticket() {
    if (next_ticket == tickets.size()) {
        std::fprintf(stderr, "bench_redis: ran out of pre-issued tickets\n");
        std::abort();
    }
    return tickets[next_ticket++];
}

system_clock::time_point issued_at;

// Tickets are issued once the epoch has begun (as on a running server): a
// ticket issued before it would be refused, ticket_before_store_start.
void issue_tickets(std::size_t count, system_clock::time_point now) {
    auto issuer = wsguard::ticket_issuer::create(keys()).value();
    issued_at = now;
    tickets.reserve(count);
    for (std::size_t i = 0; i < count; ++i) {
        wsguard::ticket_request r;
        r.subject = "user";
        r.origin = origin;
        r.audience = audience;
        r.ttl = std::chrono::seconds{120};
        tickets.push_back(issuer.issue(r, now).ticket);
    }
}

wsguard::redis_connection_options connection() {
    wsguard::redis_connection_options c;
    c.port = redis_port;
    c.command_timeout = milliseconds{1000};  // measure throughput, not timeouts
    return c;
}

wsguard::redis_replay_store_options store_options() {
    wsguard::redis_replay_store_options o;
    o.connection = connection();
    o.issuer_clock_skew = milliseconds{100};  // issuer and Redis share this machine's clock
    return o;
}

// Begins the epoch (one spend) and answers the first issue time it accepts.
system_clock::time_point begin_epoch() {
    auto store = wsguard::redis_replay_store::create(store_options()).value();
    const auto now = system_clock::now();
    const wsguard::reason r =
        store.try_spend(wsguard::ticket_nonce{}, now + std::chrono::hours{1}, now + std::chrono::seconds{30}, now);
    if (r != wsguard::reason::ok) {
        std::fprintf(stderr, "bench_redis: could not begin the epoch: %s\n", wsguard::to_string(r));
        std::abort();
    }
    return store.accepts_issued_after();
}

// A distinct nonce per spend of the store-level benchmarks.
wsguard::ticket_nonce nonce_number(std::uint64_t n, std::uint8_t tag) {
    wsguard::ticket_nonce nonce{};
    std::memcpy(nonce.data(), &n, sizeof n);
    nonce[15] = tag;
    return nonce;
}

// Wall and this thread's CPU ns per item of each benchmark, for the summary.
// On a loaded machine wall time includes waiting for redis-server to be
// scheduled; CPU time is what a decision costs the server process itself.
struct cost {
    double wall_ns = 0;
    double cpu_ns = 0;
};
std::map<std::string, cost> ns_per_item;

double thread_cpu_ns() {
    timespec t{};
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return static_cast<double>(t.tv_sec) * 1e9 + static_cast<double>(t.tv_nsec);
}

template <class Body>
void measure(benchmark::State& state, const char* name, std::size_t items_per_iteration, Body body) {
    const auto start = std::chrono::steady_clock::now();
    const double cpu_start = thread_cpu_ns();
    std::size_t failures = 0;
    for (auto _ : state) failures += body();
    const double cpu = thread_cpu_ns() - cpu_start;
    const double ns = std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now() - start).count();
    const double items = static_cast<double>(state.iterations()) * static_cast<double>(items_per_iteration);
    state.SetItemsProcessed(static_cast<std::int64_t>(items));
    state.counters["failures"] = static_cast<double>(failures);
    ns_per_item[name] = cost{ns / items, cpu / items};
}

void BM_verify_memory_store(benchmark::State& state) {
    // Created "before" the tickets were issued, as a long-running server's store is.
    auto store = wsguard::memory_replay_store::create(std::size_t{1} << 20, issued_at - std::chrono::minutes{1}).value();
    auto verifier = wsguard::ticket_verifier<wsguard::memory_replay_store>::create(keys(), store).value();
    wsguard::ticket_claims claims;
    measure(state, "memory", 1, [&] {
        return verifier.verify(wsguard::presented_ticket(fresh_ticket()), wsguard::expected_origin(origin),
                               wsguard::expected_audience(audience), claims).allowed() ? 0 : 1;
    });
}

void BM_verify_redis_store(benchmark::State& state) {
    wsguard::redis_replay_store_options o = store_options();
    o.connection.guard_sigpipe = state.range(0) != 0;
    auto store = wsguard::redis_replay_store::create(o).value();
    auto verifier = wsguard::ticket_verifier<wsguard::redis_replay_store>::create(keys(), store).value();
    wsguard::ticket_claims claims;
    measure(state, o.connection.guard_sigpipe ? "redis" : "redis, SIGPIPE guard off", 1, [&] {
        return verifier.verify(wsguard::presented_ticket(fresh_ticket()), wsguard::expected_origin(origin),
                               wsguard::expected_audience(audience), claims).allowed() ? 0 : 1;
    });
}

void BM_verify_redis_pipelined(benchmark::State& state) {
    const auto batch = static_cast<std::size_t>(state.range(0));
    auto store = wsguard::redis_replay_store::create(store_options()).value();
    auto verifier = wsguard::redis_batch_verifier::create(keys(), store).value();
    std::vector<wsguard::redis_batch_ticket> presented(batch);
    std::vector<wsguard::decision> decisions(batch);
    std::vector<wsguard::ticket_claims> claims(batch);
    const std::string name = "redis pipelined x" + std::to_string(batch);
    measure(state, name.c_str(), batch, [&] {
        for (auto& p : presented)
            p = {wsguard::presented_ticket(fresh_ticket()), wsguard::expected_origin(origin),
                 wsguard::expected_audience(audience)};
        verifier.verify(presented.data(), batch, decisions.data(), claims.data());
        std::size_t failures = 0;
        for (const auto& d : decisions) failures += d.allowed() ? 0 : 1;
        return failures;
    });
}

// The spend itself, at the store level: today's script (epoch check + SET NX
// PX, one EVALSHA) against the plain SET NX PX the store sent before epochs,
// over the same connection machinery (mutex, SIGPIPE guard, timeouts).
void BM_spend_epoch_script(benchmark::State& state) {
    auto store = wsguard::redis_replay_store::create(store_options()).value();
    const auto issued = system_clock::now() + std::chrono::hours{1};
    std::uint64_t n = 0;
    measure(state, "spend, epoch script", 1, [&] {
        const auto now = system_clock::now();
        return store.try_spend(nonce_number(n++, 0xe1), issued, now + std::chrono::seconds{30}, now) ==
                       wsguard::reason::ok
                   ? 0
                   : 1;
    });
}

void BM_spend_plain_set_nx(benchmark::State& state) {
    static constexpr char unused_script[] = "return 1";  // the link loads a script on connect; unused here
    wsguard::detail::redis_link link(connection(),
                                     wsguard::detail::redis_link_requirements{"bench", false, false, unused_script});
    const std::string prefix = "wsguard:nonce:";
    std::uint64_t n = 0;
    measure(state, "spend, plain SET NX PX", 1, [&] {
        const wsguard::ticket_nonce nonce = nonce_number(n++, 0x5e);
        const wsguard::detail::redis_key key(prefix, nonce.data());
        const wsguard::detail::redis_number ttl(35'000);
        bool spent = false;
        const wsguard::reason r = link.run(std::chrono::steady_clock::now(), [&](redisContext* context) {
            const char* argv[6] = {"SET", key.text.data(), "1", "NX", "PX", ttl.text};
            const std::size_t lens[6] = {3, key.size, 1, 2, 2, ttl.size};
            const wsguard::detail::redis_reply_ptr reply(
                static_cast<redisReply*>(redisCommandArgv(context, 6, argv, lens)));
            spent = reply != nullptr && reply->type == REDIS_REPLY_STATUS;
        });
        return r == wsguard::reason::ok && spent ? 0 : 1;
    });
}

void BM_limiter_memory(benchmark::State& state) {
    auto limiter = wsguard::keyed_limiter<std::string_view>::create(wsguard::rate::per_second(1'000'000), 1000,
                                                                     1 << 16).value();
    std::uint32_t i = 0;
    char key[16];
    measure(state, "limiter memory", 1, [&] {
        const int n = std::snprintf(key, sizeof key, "client-%u", (i++) & 1023);
        return limiter.try_acquire(std::string_view(key, static_cast<std::size_t>(n))).reason ==
                       wsguard::reason::store_unavailable
                   ? 1
                   : 0;
    });
}

void BM_limiter_redis(benchmark::State& state) {
    wsguard::redis_limiter_options o;
    o.connection = connection();
    o.rate = wsguard::rate::per_second(1'000'000);
    o.burst = 1000;
    auto limiter = wsguard::redis_limiter::create(o).value();
    std::uint32_t i = 0;
    char key[16];
    measure(state, "limiter redis", 1, [&] {
        const int n = std::snprintf(key, sizeof key, "client-%u", (i++) & 1023);
        return limiter.try_acquire(std::string_view(key, static_cast<std::size_t>(n))).reason ==
                       wsguard::reason::store_unavailable
                   ? 1
                   : 0;
    });
}

// Fixed iteration counts: every verification consumes one pre-issued ticket.
constexpr std::int64_t memory_iterations = 300'000;
constexpr std::int64_t redis_iterations = 30'000;
constexpr std::int64_t pipelined_tickets = 150'000;

}  // namespace

BENCHMARK(BM_verify_memory_store)->Iterations(memory_iterations)->Unit(benchmark::kNanosecond);
BENCHMARK(BM_verify_redis_store)->Arg(1)->Iterations(redis_iterations)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_verify_redis_store)->Arg(0)->Iterations(redis_iterations)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_verify_redis_pipelined)->Arg(16)->Iterations(pipelined_tickets / 16)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_verify_redis_pipelined)->Arg(64)->Iterations(pipelined_tickets / 64)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_verify_redis_pipelined)->Arg(256)->Iterations(pipelined_tickets / 256)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_spend_plain_set_nx)->Iterations(redis_iterations)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_spend_epoch_script)->Iterations(redis_iterations)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_limiter_memory)->Unit(benchmark::kNanosecond);
BENCHMARK(BM_limiter_redis)->Unit(benchmark::kMicrosecond);

int main(int argc, char** argv) {
    benchmark::Initialize(&argc, argv);
    wsguard_test::redis_server server;  // stopped by its destructor
    if (!server.running()) {
        std::printf("bench_redis: skipped: could not start redis-server on loopback "
                    "(install redis-server or set WSGUARD_REDIS_SERVER)\n");
        return 0;
    }
    redis_port = server.port();
    issue_tickets(static_cast<std::size_t>(memory_iterations + 2 * redis_iterations + 3 * pipelined_tickets),
                  begin_epoch());
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    server.stop();

    std::printf("\nSummary per ticket (verify), spend or decision (limiter); ratio = cost / baseline (the in-memory\n"
                "store or limiter; for the spend, the plain SET NX PX the store sent before epochs), lower is better\n");
    std::printf("  %-28s %10s %8s %10s %8s %12s\n", "", "wall ns", "ratio", "CPU ns", "ratio", "wall /s");
    const auto row = [](const char* name, const char* baseline) {
        const auto it = ns_per_item.find(name);
        const auto base = ns_per_item.find(baseline);
        if (it == ns_per_item.end() || base == ns_per_item.end()) return;
        const cost& c = it->second;
        const cost& b = base->second;
        std::printf("  %-28s %10.0f %7.1fx %10.0f %7.1fx %12.0f\n", name, c.wall_ns, c.wall_ns / b.wall_ns, c.cpu_ns,
                    c.cpu_ns / b.cpu_ns, 1e9 / c.wall_ns);
    };
    row("memory", "memory");
    row("redis", "memory");
    row("redis, SIGPIPE guard off", "memory");
    row("redis pipelined x16", "memory");
    row("redis pipelined x64", "memory");
    row("redis pipelined x256", "memory");
    row("spend, plain SET NX PX", "spend, plain SET NX PX");
    row("spend, epoch script", "spend, plain SET NX PX");
    row("limiter memory", "limiter memory");
    row("limiter redis", "limiter memory");
    const auto single = ns_per_item.find("redis");
    const auto piped = ns_per_item.find("redis pipelined x64");
    if (single != ns_per_item.end() && piped != ns_per_item.end())
        std::printf("  pipelining (x64) speeds Redis verification up %.1fx (wall) over one round trip per ticket\n",
                    single->second.wall_ns / piped->second.wall_ns);
    return 0;
}
