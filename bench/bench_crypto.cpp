// HMAC-SHA256 of a 96-byte message (about the size of a ticket's signed body)
// and SHA-256 of 1 KiB: wsguard (one-shot, precomputed key object, portable path
// forced) against what a user would otherwise pick, OpenSSL, in the same binary:
// the one-shot HMAC(), and pre-keyed contexts reused per message in the fastest
// ways OpenSSL 3 offers. A summary of ratios is printed after the runs.
#include <wsguard.hpp>

#include <benchmark/benchmark.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#ifndef WSGUARD_BENCH_OPENSSL
#define WSGUARD_BENCH_OPENSSL 0  // bench/meson.build sets 1 when it finds libcrypto
#endif

#if WSGUARD_BENCH_OPENSSL
// HMAC_CTX is deprecated in OpenSSL 3 but still the cheapest reuse on some builds: measure it too.
#define OPENSSL_SUPPRESS_DEPRECATED
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/params.h>
#include <openssl/sha.h>
#endif

namespace {

using wsguard::detail::sha256_backend;

struct inputs {
    std::uint8_t key[32];
    std::uint8_t message[96];
    std::uint8_t kib[1024];
    inputs() {
        for (std::size_t i = 0; i < sizeof key; ++i) key[i] = static_cast<std::uint8_t>(0xA5 ^ i);
        for (std::size_t i = 0; i < sizeof message; ++i) message[i] = static_cast<std::uint8_t>(i * 31 + 7);
        for (std::size_t i = 0; i < sizeof kib; ++i) kib[i] = static_cast<std::uint8_t>(i * 13 + 1);
    }
};
const inputs in;

// ---- wsguard -------------------------------------------------------------

void wsguard_hmac_one_shot(benchmark::State& state) {
    for (auto _ : state) {
        wsguard::sha256_digest mac = wsguard::hmac_sha256(in.key, sizeof in.key, in.message, sizeof in.message);
        benchmark::DoNotOptimize(mac);
    }
}

void wsguard_hmac_key_object(benchmark::State& state) {
    const wsguard::hmac_sha256_key key(in.key, sizeof in.key);
    for (auto _ : state) {
        wsguard::sha256_digest mac = key.mac(in.message, sizeof in.message);
        benchmark::DoNotOptimize(mac);
    }
}

void wsguard_hmac_key_object_portable(benchmark::State& state) {
    const wsguard::hmac_sha256_key key = wsguard::detail::hmac_sha256_key_for(sha256_backend::portable, in.key, sizeof in.key);
    for (auto _ : state) {
        wsguard::sha256_digest mac = key.mac(in.message, sizeof in.message);
        benchmark::DoNotOptimize(mac);
    }
}

void wsguard_hmac_one_shot_portable(benchmark::State& state) {
    for (auto _ : state) {
        wsguard::sha256_digest mac =
            wsguard::detail::hmac_sha256_key_for(sha256_backend::portable, in.key, sizeof in.key).mac(in.message, sizeof in.message);
        benchmark::DoNotOptimize(mac);
    }
}

void wsguard_sha256_1k(benchmark::State& state) {
    for (auto _ : state) {
        wsguard::sha256_digest d = wsguard::sha256(in.kib, sizeof in.kib);
        benchmark::DoNotOptimize(d);
    }
    state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) * 1024);
}

void wsguard_sha256_1k_portable(benchmark::State& state) {
    for (auto _ : state) {
        wsguard::sha256_hasher hasher = wsguard::detail::sha256_hasher_for(sha256_backend::portable);
        hasher.update(in.kib, sizeof in.kib);
        wsguard::sha256_digest d = hasher.finish();
        benchmark::DoNotOptimize(d);
    }
    state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) * 1024);
}

// ---- The hardware floor ----------------------------------------------------
// An HMAC of 96 bytes needs three SHA-256 compressions in a chain: two inner
// blocks, then the outer block whose message is the inner digest. These
// benchmarks time exactly that chain and nothing else (each iteration starts
// afresh, as a MAC does), so the summary can tell a ratio goal that is
// physically out of reach from one that is merely missed.

struct floor_blocks {
    std::uint8_t block[3][64];
    floor_blocks() {
        for (int b = 0; b < 3; ++b)
            for (int i = 0; i < 64; ++i) block[b][i] = static_cast<std::uint8_t>(b * 64 + i);
    }
};
const floor_blocks blocks;

// Through the dispatched compression, one call per block (the chain passes through memory).
void floor_3_compressions_dispatched(benchmark::State& state) {
    const wsguard::detail::sha256_compress_fn compress = wsguard::detail::sha256_active_compress();
    for (auto _ : state) {
        std::uint32_t s[8];
        std::memcpy(s, wsguard::detail::sha256_initial_state, sizeof s);
        for (int b = 0; b < 3; ++b) compress(s, blocks.block[b], 1);
        benchmark::DoNotOptimize(s);
    }
}

#if WSGUARD_DETAIL_SHA256_SHANI
// The lower bound for SHA-NI: three blocks on a state that never leaves the
// registers, no loads of the state, no padding, no output conversion.
WSGUARD_DETAIL_TARGET_SHANI void floor_3_shani_blocks(std::uint32_t* out) {
    __m128i abef, cdgh;
    wsguard::detail::sha256_shani_load_state(wsguard::detail::sha256_initial_state, abef, cdgh);
    for (int b = 0; b < 3; ++b) wsguard::detail::sha256_shani_block_from(abef, cdgh, blocks.block[b]);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out), abef);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + 4), cdgh);
}

// An HMAC's own shape, still without padding, bytes or function calls: two
// chained inner blocks, then the outer block from the outer pad state with the
// inner digest as its first eight message words. Unlike the chain above, the
// third block's message schedule cannot start before the second block ends.
WSGUARD_DETAIL_TARGET_SHANI void floor_hmac_shaped_shani_blocks(std::uint32_t* out) {
    __m128i abef, cdgh;
    wsguard::detail::sha256_shani_load_state(wsguard::detail::sha256_initial_state, abef, cdgh);
    for (int b = 0; b < 2; ++b) wsguard::detail::sha256_shani_block_from(abef, cdgh, blocks.block[b]);
    __m128i w0, w1;
    wsguard::detail::sha256_shani_state_words(abef, cdgh, w0, w1);
    const __m128i w2 = _mm_set_epi32(0, 0, 0, static_cast<int>(0x80000000u));
    const __m128i w3 = _mm_set_epi32(768, 0, 0, 0);
    wsguard::detail::sha256_shani_load_state(wsguard::detail::sha256_round_constants, abef, cdgh);  // any state
    wsguard::detail::sha256_shani_block(abef, cdgh, w0, w1, w2, w3);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out), abef);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + 4), cdgh);
}

// Times one of the SHA-NI floors above; skipped on a CPU without SHA-NI.
template <void (*blocks_of)(std::uint32_t*)>
void shani_floor(benchmark::State& state) {
    if (!wsguard::detail::sha256_backend_available(sha256_backend::x86_shani)) {
        state.SkipWithError("no SHA-NI on this CPU");
        return;
    }
    for (auto _ : state) {
        std::uint32_t s[8];
        blocks_of(s);
        benchmark::DoNotOptimize(s);
    }
}
void floor_3_compressions_shani_registers(benchmark::State& state) { shani_floor<floor_3_shani_blocks>(state); }
void floor_hmac_shaped_shani_registers(benchmark::State& state) { shani_floor<floor_hmac_shaped_shani_blocks>(state); }
#endif

#if WSGUARD_BENCH_OPENSSL
// ---- OpenSSL -------------------------------------------------------------

[[noreturn]] void fail(const char* what) {
    std::fprintf(stderr, "bench_crypto: %s\n", what);
    std::exit(1);
}

void openssl_hmac_one_shot(benchmark::State& state) {
    for (auto _ : state) {
        unsigned char mac[32];
        unsigned int size = 0;
        HMAC(EVP_sha256(), in.key, sizeof in.key, in.message, sizeof in.message, mac, &size);
        benchmark::DoNotOptimize(mac);
    }
}

// EVP_MAC keyed once; per message a re-init without a key, which restores the
// saved pad states instead of rehashing the key.
struct evp_mac_keyed {
    EVP_MAC* mac = EVP_MAC_fetch(nullptr, "HMAC", nullptr);
    EVP_MAC_CTX* ctx = nullptr;
    evp_mac_keyed() {
        if (mac == nullptr) fail("EVP_MAC_fetch(HMAC) failed");
        ctx = EVP_MAC_CTX_new(mac);
        char digest[] = "SHA256";
        const OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
                                     OSSL_PARAM_construct_end()};
        if (ctx == nullptr || EVP_MAC_init(ctx, in.key, sizeof in.key, params) != 1) fail("EVP_MAC_init failed");
    }
    ~evp_mac_keyed() {
        EVP_MAC_CTX_free(ctx);
        EVP_MAC_free(mac);
    }
    void compute(unsigned char* out) {
        std::size_t size = 0;
        if (EVP_MAC_init(ctx, nullptr, 0, nullptr) != 1 || EVP_MAC_update(ctx, in.message, sizeof in.message) != 1 ||
            EVP_MAC_final(ctx, out, &size, 32) != 1)
            fail("EVP_MAC re-init failed");
    }
};

// One MAC per iteration on a pre-keyed OpenSSL context of type Keyed.
template <class Keyed>
void reused_context_macs(benchmark::State& state) {
    Keyed keyed;
    for (auto _ : state) {
        unsigned char mac[32];
        keyed.compute(mac);
        benchmark::DoNotOptimize(mac);
    }
}

void openssl_evp_mac_reinit(benchmark::State& state) { reused_context_macs<evp_mac_keyed>(state); }

// A keyed template duplicated per message (what a multi-threaded server might do).
void openssl_evp_mac_dup(benchmark::State& state) {
    evp_mac_keyed keyed;
    for (auto _ : state) {
        unsigned char mac[32];
        std::size_t size = 0;
        EVP_MAC_CTX* ctx = EVP_MAC_CTX_dup(keyed.ctx);
        EVP_MAC_update(ctx, in.message, sizeof in.message);
        EVP_MAC_final(ctx, mac, &size, sizeof mac);
        EVP_MAC_CTX_free(ctx);
        benchmark::DoNotOptimize(mac);
    }
}

// The legacy HMAC_CTX, keyed once and re-initialised with a null key per message.
struct hmac_ctx_keyed {
    HMAC_CTX* ctx = HMAC_CTX_new();
    hmac_ctx_keyed() {
        if (ctx == nullptr || HMAC_Init_ex(ctx, in.key, sizeof in.key, EVP_sha256(), nullptr) != 1)
            fail("HMAC_Init_ex failed");
    }
    ~hmac_ctx_keyed() { HMAC_CTX_free(ctx); }
    void compute(unsigned char* out) {
        unsigned int size = 0;
        if (HMAC_Init_ex(ctx, nullptr, 0, nullptr, nullptr) != 1 || HMAC_Update(ctx, in.message, sizeof in.message) != 1 ||
            HMAC_Final(ctx, out, &size) != 1)
            fail("HMAC_CTX reuse failed");
    }
};

void openssl_hmac_ctx_reuse(benchmark::State& state) { reused_context_macs<hmac_ctx_keyed>(state); }

// HMAC by hand on EVP digests: inner and outer contexts keyed once, copied per
// message (EVP_MD_CTX_copy_ex), which is what HMAC does inside, minus its layers.
struct evp_md_keyed {
    EVP_MD* md = EVP_MD_fetch(nullptr, "SHA256", nullptr);  // fetched once: no per-call lookup
    EVP_MD_CTX* inner = EVP_MD_CTX_new();
    EVP_MD_CTX* outer = EVP_MD_CTX_new();
    EVP_MD_CTX* work = EVP_MD_CTX_new();
    evp_md_keyed() {
        unsigned char pad[64] = {};
        std::memcpy(pad, in.key, sizeof in.key);
        for (unsigned char& b : pad) b ^= 0x36;
        if (EVP_DigestInit_ex(inner, md, nullptr) != 1 || EVP_DigestUpdate(inner, pad, 64) != 1) fail("inner pad");
        for (unsigned char& b : pad) b ^= 0x36 ^ 0x5c;
        if (EVP_DigestInit_ex(outer, md, nullptr) != 1 || EVP_DigestUpdate(outer, pad, 64) != 1) fail("outer pad");
    }
    ~evp_md_keyed() {
        EVP_MD_CTX_free(work);
        EVP_MD_CTX_free(outer);
        EVP_MD_CTX_free(inner);
        EVP_MD_free(md);
    }
    void compute(unsigned char* out) {
        unsigned char inner_digest[32];
        unsigned int size = 0;
        if (EVP_MD_CTX_copy_ex(work, inner) != 1 || EVP_DigestUpdate(work, in.message, sizeof in.message) != 1 ||
            EVP_DigestFinal_ex(work, inner_digest, &size) != 1 || EVP_MD_CTX_copy_ex(work, outer) != 1 ||
            EVP_DigestUpdate(work, inner_digest, 32) != 1 || EVP_DigestFinal_ex(work, out, &size) != 1)
            fail("EVP_MD pad-state copy failed");
    }
};

void openssl_evp_md_pad_copy(benchmark::State& state) { reused_context_macs<evp_md_keyed>(state); }

// OpenSSL's own compression (its SHA-NI assembly where the CPU has it), three
// blocks chained through SHA256_Transform (deprecated, still exported).
void floor_3_compressions_openssl(benchmark::State& state) {
    for (auto _ : state) {
        SHA256_CTX ctx;
        SHA256_Init(&ctx);
        for (int b = 0; b < 3; ++b) SHA256_Transform(&ctx, blocks.block[b]);
        benchmark::DoNotOptimize(ctx.h);
    }
}

void openssl_sha256_1k(benchmark::State& state) {
    for (auto _ : state) {
        unsigned char d[32];
        SHA256(in.kib, sizeof in.kib, d);
        benchmark::DoNotOptimize(d);
    }
    state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) * 1024);
}

// Every OpenSSL variant must compute the same MAC as wsguard, or the race is meaningless.
void check_baselines_agree() {
    const wsguard::sha256_digest expected = wsguard::hmac_sha256(in.key, sizeof in.key, in.message, sizeof in.message);
    unsigned char mac[32];
    unsigned int size = 0;
    HMAC(EVP_sha256(), in.key, sizeof in.key, in.message, sizeof in.message, mac, &size);
    if (size != 32 || std::memcmp(mac, expected.data(), 32) != 0) fail("HMAC() disagrees with wsguard");
    for (int round = 0; round < 2; ++round) {  // twice: the reuse must really reset
        evp_mac_keyed a;
        a.compute(mac);
        a.compute(mac);
        if (std::memcmp(mac, expected.data(), 32) != 0) fail("EVP_MAC re-init disagrees with wsguard");
        hmac_ctx_keyed b;
        b.compute(mac);
        b.compute(mac);
        if (std::memcmp(mac, expected.data(), 32) != 0) fail("HMAC_CTX reuse disagrees with wsguard");
        evp_md_keyed c;
        c.compute(mac);
        c.compute(mac);
        if (std::memcmp(mac, expected.data(), 32) != 0) fail("EVP_MD pad copy disagrees with wsguard");
    }
    SHA256(in.kib, sizeof in.kib, mac);
    const wsguard::sha256_digest digest = wsguard::sha256(in.kib, sizeof in.kib);
    if (std::memcmp(mac, digest.data(), 32) != 0) fail("SHA256() disagrees with wsguard");
}
#endif

// Records each benchmark's time per iteration for the summary.
class recording_reporter : public benchmark::ConsoleReporter {
public:
    std::map<std::string, double> ns;
    std::map<std::string, double> median;
    void ReportRuns(const std::vector<Run>& runs) override {
        for (const Run& run : runs) {
            // CPU time: the ratio stays meaningful on a shared, busy machine (all benchmarks report ns).
            // With --benchmark_repetitions the median stands for the benchmark.
            if (run.run_type == Run::RT_Iteration && run.iterations > 0) {
                ns[run.run_name.str()] = run.GetAdjustedCPUTime();
            } else if (run.run_type == Run::RT_Aggregate && run.aggregate_name == "median") {
                median[run.run_name.str()] = run.GetAdjustedCPUTime();
            }
        }
        ConsoleReporter::ReportRuns(runs);
    }
};

void print_ratio(const recording_reporter& r, const char* label, const char* ours, const char* theirs) {
    const auto a = r.ns.find(ours);
    const auto b = r.ns.find(theirs);
    if (a == r.ns.end() || b == r.ns.end() || a->second <= 0) return;
    std::printf("  %-58s %8.1f ns vs %8.1f ns  = %5.2fx faster\n", label, a->second, b->second, b->second / a->second);
}

#if WSGUARD_BENCH_OPENSSL
// What a MAC of 96 bytes cannot go below, beside what a ratio goal of 2x the
// best reused OpenSSL context would need. Each floor runs like the MAC
// benchmarks (independent iterations, which the CPU partly overlaps).
void print_floor(const recording_reporter& r, double best_reused_ns) {
    const auto time = [&](const char* name) {
        const auto it = r.ns.find(name);
        return it == r.ns.end() ? 0.0 : it->second;
    };
    const double chained = time("floor_3_compressions_shani_registers");
    const double hmac_shaped = time("floor_hmac_shaped_shani_registers");
    const double dispatched = time("floor_3_compressions_dispatched");
    const double openssl = time("floor_3_compressions_openssl");
    const double mac = time("wsguard_hmac_key_object");
    const char* backend = wsguard::detail::sha256_backend_name(wsguard::detail::sha256_active_backend());
    std::printf("  floor, 3 chained SHA-256 compressions: %.1f ns dispatched (%s, one call per block), %.1f ns "
                "OpenSSL SHA256_Transform",
                dispatched, backend, openssl);
    if (chained > 0) std::printf(", %.1f ns SHA-NI in registers", chained);
    std::printf("\n");
    // Without SHA-NI (another CPU, WSGUARD_NO_SIMD=1) the dispatched chain is the floor.
    const bool shani = hmac_shaped > 0;
    const double floor = shani ? hmac_shaped : dispatched;
    if (floor > 0 && mac > 0 && best_reused_ns > 0) {
        const double goal = best_reused_ns / 2;
        std::printf("  floor of an HMAC (%s): %.1f ns; key object = floor + %.1f ns\n",
                    shani ? "outer block fed by the inner digest, SHA-NI in registers" : "3 dispatched compressions",
                    floor, mac - floor);
        std::printf("  2x best reused OpenSSL needs <= %.1f ns per MAC: %s %s (at the HMAC floor: %.2fx)\n", goal,
                    goal < floor ? "out of reach with" : "within reach with", shani ? "SHA-NI on this CPU" : backend,
                    best_reused_ns / floor);
    }
}
#endif

}  // namespace

BENCHMARK(wsguard_hmac_one_shot);
BENCHMARK(wsguard_hmac_key_object);
BENCHMARK(wsguard_hmac_one_shot_portable);
BENCHMARK(wsguard_hmac_key_object_portable);
BENCHMARK(wsguard_sha256_1k);
BENCHMARK(wsguard_sha256_1k_portable);
BENCHMARK(floor_3_compressions_dispatched);
#if WSGUARD_DETAIL_SHA256_SHANI
BENCHMARK(floor_3_compressions_shani_registers);
BENCHMARK(floor_hmac_shaped_shani_registers);
#endif
#if WSGUARD_BENCH_OPENSSL
BENCHMARK(openssl_hmac_one_shot);
BENCHMARK(openssl_evp_mac_reinit);
BENCHMARK(openssl_evp_mac_dup);
BENCHMARK(openssl_hmac_ctx_reuse);
BENCHMARK(openssl_evp_md_pad_copy);
BENCHMARK(openssl_sha256_1k);
BENCHMARK(floor_3_compressions_openssl);
#endif

int main(int argc, char** argv) {
    benchmark::Initialize(&argc, argv);
    if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
#if WSGUARD_BENCH_OPENSSL
    check_baselines_agree();
#endif
    recording_reporter reporter;
    benchmark::RunSpecifiedBenchmarks(&reporter);
    for (const auto& entry : reporter.median) reporter.ns[entry.first] = entry.second;

    std::printf("\nwsguard SHA-256 backend: %s\n",
                wsguard::detail::sha256_backend_name(wsguard::detail::sha256_active_backend()));
    std::printf("HMAC-SHA256 of 96 bytes, SHA-256 of 1 KiB (ratio = baseline time / wsguard time):\n");
#if WSGUARD_BENCH_OPENSSL
    // The best reused OpenSSL context is whichever reuse variant ran fastest.
    const char* reuse[] = {"openssl_evp_mac_reinit", "openssl_evp_mac_dup", "openssl_hmac_ctx_reuse",
                           "openssl_evp_md_pad_copy"};
    const char* best = nullptr;
    for (const char* name : reuse) {
        const auto it = reporter.ns.find(name);
        if (it != reporter.ns.end() && (best == nullptr || it->second < reporter.ns[best])) best = name;
    }
    print_ratio(reporter, "one-shot hmac_sha256 vs OpenSSL HMAC()", "wsguard_hmac_one_shot", "openssl_hmac_one_shot");
    print_ratio(reporter, "key object vs OpenSSL HMAC()", "wsguard_hmac_key_object", "openssl_hmac_one_shot");
    if (best != nullptr) {
        const std::string label = std::string("key object vs best reused OpenSSL (") + best + ")";
        print_ratio(reporter, label.c_str(), "wsguard_hmac_key_object", best);
        const std::string portable = std::string("portable key object vs best reused OpenSSL");
        print_ratio(reporter, portable.c_str(), "wsguard_hmac_key_object_portable", best);
        print_floor(reporter, reporter.ns[best]);
    }
    print_ratio(reporter, "portable one-shot vs OpenSSL HMAC()", "wsguard_hmac_one_shot_portable", "openssl_hmac_one_shot");
    print_ratio(reporter, "sha256 1 KiB vs OpenSSL SHA256()", "wsguard_sha256_1k", "openssl_sha256_1k");
    print_ratio(reporter, "portable sha256 1 KiB vs OpenSSL SHA256()", "wsguard_sha256_1k_portable", "openssl_sha256_1k");
#else
    std::printf("  (built without libcrypto: no OpenSSL baseline)\n");
#endif
    print_ratio(reporter, "key object vs one-shot (pad states precomputed)", "wsguard_hmac_key_object",
                "wsguard_hmac_one_shot");
    print_ratio(reporter, "SIMD key object vs portable key object", "wsguard_hmac_key_object",
                "wsguard_hmac_key_object_portable");
    benchmark::Shutdown();
    return 0;
}
