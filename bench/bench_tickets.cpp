// Tickets: full verify (decode, MAC, layout, expiry, origin, audience, replay
// store) and issue, each beside the ticket a user would hand-roll: the same
// layout and checks with OpenSSL's one-shot HMAC(), RAND_bytes and a
// std::mutex + std::unordered_map replay set (built when libcrypto is found).
//
// Honesty notes:
// - Every verify spends a fresh ticket: a batch of 65,536 tickets is issued
//   beforehand; when it is used up, timing pauses, a new batch is issued and
//   both replay stores are emptied (wsguard: a new store of that capacity;
//   baseline: clear()). So each timed verify is a first use that is stored.
// - Both sides read the wall clock (system_clock::now()) in every call, as a
//   server does; both share the base64url codec (the public one the verifier
//   uses, SSSE3 where the CPU has it), so the difference is the MAC,
//   the replay store and the parsing.
#include <wsguard.hpp>

#include <benchmark/benchmark.h>

#include <cstdio>
#include <map>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#if WSGUARD_BENCH_OPENSSL
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#endif

namespace {

using clock_type = std::chrono::system_clock;
const std::string secret = "0123456789abcdef0123456789abcdef";
constexpr std::string_view origin = "https://app.example.com";
constexpr std::string_view audience = "api.example.com/chat";
const wsguard::ticket_request request{"user-42", origin, audience, "chat:read chat:write", std::chrono::seconds(0)};
constexpr std::size_t batch = 65536;

const wsguard::keyring& keys() {
    static const wsguard::keyring ring = wsguard::keyring::create(1, {{1, secret, std::nullopt}}).value();
    return ring;
}
const wsguard::ticket_issuer& issuer() {
    static const wsguard::ticket_issuer i = wsguard::ticket_issuer::create(keys()).value();
    return i;
}

std::vector<std::string> issue_batch() {
    std::vector<std::string> tickets;
    tickets.reserve(batch);
    for (std::size_t i = 0; i < batch; ++i) tickets.push_back(issuer().issue(request).ticket);
    return tickets;
}

void BM_wsguard_verify(benchmark::State& state) {
    auto store = wsguard::memory_replay_store::create(batch, clock_type::now() - std::chrono::minutes(1)).value();
    const auto verifier = wsguard::ticket_verifier<>::create(keys(), store).value();
    std::vector<std::string> tickets = issue_batch();
    wsguard::ticket_claims claims;
    std::size_t next = 0;
    std::size_t refused = 0;
    for (auto _ : state) {
        if (next == batch) {
            state.PauseTiming();
            store = wsguard::memory_replay_store::create(batch, clock_type::now() - std::chrono::minutes(1)).value();
            tickets = issue_batch();
            next = 0;
            state.ResumeTiming();
        }
        const wsguard::decision d = verifier.verify(wsguard::presented_ticket(tickets[next++]), wsguard::expected_origin(origin),
                                                    wsguard::expected_audience(audience), claims);
        refused += !d.allowed();
        benchmark::DoNotOptimize(claims);
    }
    if (refused) state.SkipWithError("a fresh ticket was refused");
}
BENCHMARK(BM_wsguard_verify);

void BM_wsguard_verify_forged(benchmark::State& state) {
    auto store = wsguard::memory_replay_store::create(1024).value();
    const auto verifier = wsguard::ticket_verifier<>::create(keys(), store).value();
    std::string forged = issuer().issue(request).ticket;
    forged[forged.size() / 2] = forged[forged.size() / 2] == 'A' ? 'B' : 'A';
    wsguard::ticket_claims claims;
    for (auto _ : state) {
        const wsguard::decision d = verifier.verify(wsguard::presented_ticket(forged), wsguard::expected_origin(origin),
                                                    wsguard::expected_audience(audience), claims);
        benchmark::DoNotOptimize(d);
    }
}
BENCHMARK(BM_wsguard_verify_forged);

// Parts of a verify, to see where the time goes: decoding one ticket.
template <class Decode>
void decode_ticket(benchmark::State& state, Decode decode) {
    const std::string ticket = issuer().issue(request).ticket;
    std::uint8_t bytes[wsguard::ticket_limits::max_bytes];
    std::size_t size = 0;
    for (auto _ : state) {
        benchmark::DoNotOptimize(decode(ticket, bytes, sizeof bytes, size));
        benchmark::ClobberMemory();
    }
    state.SetLabel(std::to_string(ticket.size()) + " chars");
}

// The constant-time decoder (for secrets).
void BM_part_base64url_decode(benchmark::State& state) {
    decode_ticket(state, [](std::string_view t, std::uint8_t* out, std::size_t capacity, std::size_t& size) {
        return wsguard::base64url_decode(t, out, capacity, size);
    });
}
BENCHMARK(BM_part_base64url_decode);

// The decoder verify uses: tickets are public, so the variable-time table one.
void BM_part_base64url_decode_public(benchmark::State& state) {
    decode_ticket(state, [](std::string_view t, std::uint8_t* out, std::size_t capacity, std::size_t& size) {
        return wsguard::detail::base64url_decode_public(t, out, capacity, size);
    });
}
BENCHMARK(BM_part_base64url_decode_public);

void BM_part_hmac(benchmark::State& state) {
    const std::string ticket = issuer().issue(request).ticket;
    std::uint8_t bytes[wsguard::ticket_limits::max_bytes];
    std::size_t size = 0;
    (void)wsguard::base64url_decode(ticket, bytes, sizeof bytes, size);
    const wsguard::hmac_sha256_key key(secret);
    for (auto _ : state) benchmark::DoNotOptimize(key.mac(bytes, size - 32));
    state.SetLabel(std::to_string(size - 32) + " bytes");
}
BENCHMARK(BM_part_hmac);

void BM_part_replay_store(benchmark::State& state) {
    auto store = wsguard::memory_replay_store::create(batch).value();
    const clock_type::time_point now = clock_type::now();
    std::uint64_t n = 0;
    for (auto _ : state) {
        if (++n % batch == 0) {
            state.PauseTiming();
            store = wsguard::memory_replay_store::create(batch).value();
            state.ResumeTiming();
        }
        wsguard::ticket_nonce nonce{};
        std::memcpy(nonce.data(), &n, sizeof n);
        benchmark::DoNotOptimize(store.try_spend(nonce, now + std::chrono::seconds(30), now));
    }
}
BENCHMARK(BM_part_replay_store);

void BM_wsguard_issue(benchmark::State& state) {
    for (auto _ : state) {
        wsguard::issued_ticket t = issuer().issue(request);
        benchmark::DoNotOptimize(t.ticket.data());
    }
}
BENCHMARK(BM_wsguard_issue);

#if WSGUARD_BENCH_OPENSSL
// The hand-rolled ticket: same bytes on the wire, same checks, written the way
// most services do it.
namespace handrolled {

// The MAC input starts with "wsguard-ticket-v1" zero-padded to 64 bytes. A
// one-shot HMAC() cannot keep that block absorbed, so it hashes it every time.
constexpr char domain[64] = "wsguard-ticket-v1";

void put_be(std::string& out, std::uint64_t v, int bytes) {
    for (int i = bytes - 1; i >= 0; --i) out.push_back(static_cast<char>(v >> (8 * i)));
}
std::uint64_t get_be(const std::uint8_t* p, int bytes) {
    std::uint64_t v = 0;
    for (int i = 0; i < bytes; ++i) v = (v << 8) | p[i];
    return v;
}

std::string issue(const wsguard::ticket_request& r) {
    const std::int64_t now_ms =
        std::chrono::duration_cast<std::chrono::milliseconds>(clock_type::now().time_since_epoch()).count();
    std::string body(domain, sizeof domain);
    body.push_back(1);
    put_be(body, 1, 4);
    put_be(body, static_cast<std::uint64_t>(now_ms), 8);
    put_be(body, static_cast<std::uint64_t>(now_ms + 30000), 8);
    unsigned char nonce[16];
    if (RAND_bytes(nonce, sizeof nonce) != 1) return {};
    body.append(reinterpret_cast<const char*>(nonce), sizeof nonce);
    body.push_back(static_cast<char>(r.subject.size()));
    body.append(r.subject);
    put_be(body, r.origin.size(), 2);
    body.append(r.origin);
    put_be(body, r.audience.size(), 2);
    body.append(r.audience);
    body.push_back(2);
    for (std::string_view s : {std::string_view("chat:read"), std::string_view("chat:write")}) {
        body.push_back(static_cast<char>(s.size()));
        body.append(s);
    }
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int mac_size = 0;
    HMAC(EVP_sha256(), secret.data(), static_cast<int>(secret.size()),
         reinterpret_cast<const unsigned char*>(body.data()), body.size(), mac, &mac_size);
    body.append(reinterpret_cast<const char*>(mac), mac_size);
    return wsguard::detail::base64url_encode_public(reinterpret_cast<const std::uint8_t*>(body.data()) + sizeof domain,
                                            body.size() - sizeof domain);
}

struct replay_set {
    std::mutex lock;
    std::unordered_map<std::string, std::int64_t> spent;  // nonce -> expiry
};

bool verify(std::string_view ticket, std::string_view want_origin, std::string_view want_audience, replay_set& replay) {
    std::uint8_t buffer[sizeof domain + wsguard::ticket_limits::max_bytes];
    std::memcpy(buffer, domain, sizeof domain);
    std::uint8_t* body = buffer + sizeof domain;
    std::size_t size = 0;
    if (ticket.size() > wsguard::ticket_limits::max_chars) return false;
    if (!wsguard::detail::base64url_decode_public(ticket, body, wsguard::ticket_limits::max_bytes, size) || size < 75)
        return false;
    if (body[0] != 1 || get_be(body + 1, 4) != 1) return false;
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int mac_size = 0;
    HMAC(EVP_sha256(), secret.data(), static_cast<int>(secret.size()), buffer, sizeof domain + size - 32, mac,
         &mac_size);
    if (CRYPTO_memcmp(mac, body + size - 32, 32) != 0) return false;
    const std::uint8_t* p = body + 37;
    const std::uint8_t* end = body + size - 32;
    auto field = [&](int prefix, std::string_view& out) {
        if (end - p < prefix) return false;
        const std::size_t n = get_be(p, prefix);
        p += prefix;
        if (static_cast<std::size_t>(end - p) < n) return false;
        out = std::string_view(reinterpret_cast<const char*>(p), n);
        p += n;
        return true;
    };
    std::string_view subject, o, a, scope;
    if (!field(1, subject) || !field(2, o) || !field(2, a) || p == end) return false;
    const std::size_t scopes = *p++;
    for (std::size_t i = 0; i < scopes; ++i)
        if (!field(1, scope)) return false;
    const auto now_ms =
        std::chrono::duration_cast<std::chrono::milliseconds>(clock_type::now().time_since_epoch()).count();
    const auto issued = static_cast<std::int64_t>(get_be(body + 5, 8));
    const auto expires = static_cast<std::int64_t>(get_be(body + 13, 8));
    if (now_ms >= expires || issued > now_ms + 5000) return false;
    if (o != want_origin || a != want_audience) return false;
    std::string nonce(reinterpret_cast<const char*>(body + 21), 16);
    std::lock_guard<std::mutex> guard(replay.lock);
    return replay.spent.emplace(std::move(nonce), expires).second;
}

}  // namespace handrolled

std::vector<std::string> issue_handrolled_batch() {
    std::vector<std::string> tickets;
    tickets.reserve(batch);
    for (std::size_t i = 0; i < batch; ++i) tickets.push_back(handrolled::issue(request));
    return tickets;
}

void BM_openssl_handrolled_verify(benchmark::State& state) {
    handrolled::replay_set replay;
    std::vector<std::string> tickets = issue_handrolled_batch();
    std::size_t next = 0;
    std::size_t refused = 0;
    for (auto _ : state) {
        if (next == batch) {
            state.PauseTiming();
            replay.spent.clear();
            tickets = issue_handrolled_batch();
            next = 0;
            state.ResumeTiming();
        }
        refused += !handrolled::verify(tickets[next++], origin, audience, replay);
    }
    if (refused) state.SkipWithError("a fresh hand-rolled ticket was refused");
}
BENCHMARK(BM_openssl_handrolled_verify);

void BM_openssl_handrolled_verify_forged(benchmark::State& state) {
    handrolled::replay_set replay;
    std::string forged = handrolled::issue(request);
    forged[forged.size() / 2] = forged[forged.size() / 2] == 'A' ? 'B' : 'A';
    for (auto _ : state) benchmark::DoNotOptimize(handrolled::verify(forged, origin, audience, replay));
}
BENCHMARK(BM_openssl_handrolled_verify_forged);

void BM_openssl_handrolled_issue(benchmark::State& state) {
    for (auto _ : state) {
        std::string t = handrolled::issue(request);
        benchmark::DoNotOptimize(t.data());
    }
}
BENCHMARK(BM_openssl_handrolled_issue);
#endif

// Records each benchmark's CPU time (equal to real time on an idle machine,
// steadier on a busy one; every benchmark here is single-threaded) so the
// summary can print ratios.
class ratio_reporter : public benchmark::ConsoleReporter {
public:
    std::map<std::string, double> ns;
    void ReportRuns(const std::vector<Run>& runs) override {
        for (const Run& r : runs) {
            if (r.run_type == Run::RT_Iteration && !r.error_occurred)
                ns[r.benchmark_name()] = r.GetAdjustedCPUTime();  // default unit: ns
        }
        ConsoleReporter::ReportRuns(runs);
    }
};

}  // namespace

int main(int argc, char** argv) {
#if WSGUARD_BENCH_OPENSSL
    {  // The baseline speaks the same wire format: each side accepts the other's tickets.
        auto store = wsguard::memory_replay_store::create(16, clock_type::now() - std::chrono::minutes(1)).value();
        const auto verifier = wsguard::ticket_verifier<>::create(keys(), store).value();
        wsguard::ticket_claims claims;
        handrolled::replay_set replay;
        if (!verifier.verify(wsguard::presented_ticket(handrolled::issue(request)), wsguard::expected_origin(origin),
                             wsguard::expected_audience(audience), claims).allowed() ||
            !handrolled::verify(issuer().issue(request).ticket, origin, audience, replay)) {
            std::fprintf(stderr, "bench_tickets: the baseline does not match the wire format\n");
            return 1;
        }
    }
#endif
    benchmark::Initialize(&argc, argv);
    if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
    ratio_reporter reporter;
    benchmark::RunSpecifiedBenchmarks(&reporter);
    benchmark::Shutdown();

    std::printf("\nCPU time per operation; SHA-256 backend: %s\n",
                wsguard::detail::sha256_backend_name(wsguard::detail::sha256_active_backend()));
    const auto line = [&](const char* what, const char* ours, const char* theirs, double goal_ns) {
        const auto a = reporter.ns.find(ours);
        if (a == reporter.ns.end()) return;
        std::printf("%-34s wsguard %8.1f ns (goal < %.0f ns: %s)", what, a->second, goal_ns,
                    a->second < goal_ns ? "met" : "MISSED");
        const auto b = reporter.ns.find(theirs);
        if (b != reporter.ns.end())
            std::printf("  hand-rolled OpenSSL %8.1f ns  -> wsguard %.2fx faster", b->second, b->second / a->second);
        std::printf("\n");
    };
    line("full verify (fresh ticket, stored)", "BM_wsguard_verify", "BM_openssl_handrolled_verify", 300);
    line("verify of a forged ticket", "BM_wsguard_verify_forged", "BM_openssl_handrolled_verify_forged", 300);
    line("issue", "BM_wsguard_issue", "BM_openssl_handrolled_issue", 1000);
    const auto part = [&](const char* name) {
        const auto it = reporter.ns.find(name);
        return it == reporter.ns.end() ? 0.0 : it->second;
    };
    std::printf("verify parts: base64url decode %.1f ns (constant-time), %.1f ns (public, as verify uses), "
                "HMAC %.1f ns, replay store %.1f ns\n",
                part("BM_part_base64url_decode"), part("BM_part_base64url_decode_public"), part("BM_part_hmac"),
                part("BM_part_replay_store"));
#if !WSGUARD_BENCH_OPENSSL
    std::printf("(built without libcrypto: no OpenSSL baseline)\n");
#endif
    return 0;
}
