// Section 4 of wsguard.hpp (inlined into the release header). Not a public header.
// ===========================================================================
// 4. Crypto: sha256, hmac_sha256, base64url, random bytes
// ===========================================================================
#ifndef WSGUARD_HPP
#error "include <wsguard.hpp>, not this file"
#endif

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
#endif

// Random bytes come from the operating system only.
#if defined(__linux__)
#include <cerrno>
#include <sys/random.h>
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

using sha256_digest = std::array<std::uint8_t, 32>;

namespace detail {

// Compresses `count` consecutive 64-byte blocks into `state` (FIPS 180-4 6.2.2).
using sha256_compress_fn = void (*)(std::uint32_t* state, const std::uint8_t* blocks, std::size_t count) noexcept;

enum class sha256_backend : std::uint8_t { portable, x86_shani, armv8_sha2 };

constexpr const char* sha256_backend_name(sha256_backend b) noexcept {
    switch (b) {
        case sha256_backend::portable: return "portable";
        case sha256_backend::x86_shani: return "x86_shani";
        case sha256_backend::armv8_sha2: return "armv8_sha2";
    }
    return "unknown";
}

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

inline constexpr std::uint32_t sha256_initial_state[8] = {
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
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
inline void sha256_compress_portable(std::uint32_t* state, const std::uint8_t* blocks, std::size_t count) noexcept {
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


#if WSGUARD_DETAIL_SHA256_SHANI
// Four rounds with message words w (already in SHA-NI lane order) and round constants k.
WSGUARD_DETAIL_TARGET_SHANI inline void sha256_shani_rounds4(__m128i& abef, __m128i& cdgh, __m128i w,
                                                             const std::uint32_t* k) noexcept {
    __m128i wk = _mm_add_epi32(w, _mm_loadu_si128(reinterpret_cast<const __m128i*>(k)));
    cdgh = _mm_sha256rnds2_epu32(cdgh, abef, wk);
    wk = _mm_shuffle_epi32(wk, 0x0E);
    abef = _mm_sha256rnds2_epu32(abef, cdgh, wk);
}

// Completes the next four message words: next + sigma-free part + sigma1(current).
WSGUARD_DETAIL_TARGET_SHANI inline __m128i sha256_shani_schedule(__m128i next, __m128i current, __m128i previous) noexcept {
    return _mm_sha256msg2_epu32(_mm_add_epi32(next, _mm_alignr_epi8(current, previous, 4)), current);
}

// constant-time: fixed instruction sequence per block.
WSGUARD_DETAIL_TARGET_SHANI inline void sha256_compress_shani(std::uint32_t* state, const std::uint8_t* blocks,
                                                              std::size_t count) noexcept {
    const std::uint32_t* k = sha256_round_constants;
    const __m128i byte_swap = _mm_set_epi64x(0x0c0d0e0f08090a0bLL, 0x0405060700010203LL);
    // The instructions want the state as ABEF and CDGH.
    __m128i tmp = _mm_shuffle_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(state)), 0xB1);  // CDAB
    __m128i cdgh = _mm_shuffle_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(state + 4)), 0x1B);  // EFGH
    __m128i abef = _mm_alignr_epi8(tmp, cdgh, 8);
    cdgh = _mm_blend_epi16(cdgh, tmp, 0xF0);

    for (std::size_t block = 0; block < count; ++block, blocks += 64) {
        const __m128i abef_before = abef;
        const __m128i cdgh_before = cdgh;
        __m128i w0 = _mm_shuffle_epi8(_mm_loadu_si128(reinterpret_cast<const __m128i*>(blocks)), byte_swap);
        __m128i w1 = _mm_shuffle_epi8(_mm_loadu_si128(reinterpret_cast<const __m128i*>(blocks + 16)), byte_swap);
        __m128i w2 = _mm_shuffle_epi8(_mm_loadu_si128(reinterpret_cast<const __m128i*>(blocks + 32)), byte_swap);
        __m128i w3 = _mm_shuffle_epi8(_mm_loadu_si128(reinterpret_cast<const __m128i*>(blocks + 48)), byte_swap);

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

    tmp = _mm_shuffle_epi32(abef, 0x1B);                  // FEBA
    cdgh = _mm_shuffle_epi32(cdgh, 0xB1);                 // DCHG
    abef = _mm_blend_epi16(tmp, cdgh, 0xF0);              // DCBA
    cdgh = _mm_alignr_epi8(cdgh, tmp, 8);                 // HGFE
    _mm_storeu_si128(reinterpret_cast<__m128i*>(state), abef);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(state + 4), cdgh);
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

// constant-time: fixed instruction sequence per block.
WSGUARD_DETAIL_TARGET_ARMV8 inline void sha256_compress_armv8(std::uint32_t* state, const std::uint8_t* blocks,
                                                              std::size_t count) noexcept {
    const std::uint32_t* k = sha256_round_constants;
    uint32x4_t abcd = vld1q_u32(state);
    uint32x4_t efgh = vld1q_u32(state + 4);
    for (std::size_t block = 0; block < count; ++block, blocks += 64) {
        const uint32x4_t abcd_before = abcd;
        const uint32x4_t efgh_before = efgh;
        uint32x4_t w0 = vreinterpretq_u32_u8(vrev32q_u8(vld1q_u8(blocks)));
        uint32x4_t w1 = vreinterpretq_u32_u8(vrev32q_u8(vld1q_u8(blocks + 16)));
        uint32x4_t w2 = vreinterpretq_u32_u8(vrev32q_u8(vld1q_u8(blocks + 32)));
        uint32x4_t w3 = vreinterpretq_u32_u8(vrev32q_u8(vld1q_u8(blocks + 48)));
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

}  // namespace detail

// ---------------------------------------------------------------------------
// SHA-256
// ---------------------------------------------------------------------------

// Incremental SHA-256. finish() returns the digest and resets the hasher.
class sha256_hasher {
public:
    sha256_hasher() noexcept : sha256_hasher(detail::sha256_active_backend()) {}
    // Forces one compression backend (tests, benchmarks); one the CPU lacks runs portable code.
    explicit sha256_hasher(detail::sha256_backend backend) noexcept {
        engine_.start(detail::sha256_initial_state, 0, detail::sha256_compress_for(backend));
    }
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
    detail::sha256_engine engine_;
};

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
class hmac_sha256_key {
public:
    explicit hmac_sha256_key(std::string_view key) noexcept
        : hmac_sha256_key(reinterpret_cast<const std::uint8_t*>(key.data()), key.size()) {}
    hmac_sha256_key(const std::uint8_t* key, std::size_t size) noexcept
        : hmac_sha256_key(key, size, detail::sha256_active_backend()) {}
    // Forces one compression backend (tests, benchmarks); one the CPU lacks runs portable code.
    hmac_sha256_key(const std::uint8_t* key, std::size_t size, detail::sha256_backend backend) noexcept {
        compress_ = detail::sha256_compress_for(backend);
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
    hmac_sha256_key(const hmac_sha256_key&) noexcept = default;
    hmac_sha256_key& operator=(const hmac_sha256_key&) noexcept = default;
    ~hmac_sha256_key() {
        detail::crypto_wipe(inner_, sizeof inner_);
        detail::crypto_wipe(outer_, sizeof outer_);
    }

    sha256_digest mac(const std::uint8_t* message, std::size_t size) const noexcept {
        std::uint32_t state[8];
        std::memcpy(state, inner_, sizeof state);
        detail::sha256_absorb_final(state, 64, message, size, compress_);
        std::uint8_t inner_digest[32];
        detail::sha256_store_digest(state, inner_digest);
        sha256_digest out = finish_outer(outer_, inner_digest, compress_);
        detail::crypto_wipe(inner_digest, sizeof inner_digest);
        detail::crypto_wipe(state, sizeof state);
        return out;
    }
    sha256_digest mac(std::string_view message) const noexcept {
        return mac(reinterpret_cast<const std::uint8_t*>(message.data()), message.size());
    }

    // An incremental MAC over several parts, without copying them together.
    // finish() once; begin() again for the next message.
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
        sha256_digest finish() noexcept {
            std::uint8_t inner_digest[32];
            inner_.finish(inner_digest);
            sha256_digest out = hmac_sha256_key::finish_outer(outer_, inner_digest, inner_.compress);
            detail::crypto_wipe(inner_digest, sizeof inner_digest);
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
    // The outer hash: H((K ^ opad) || inner digest), from the precomputed outer state.
    static sha256_digest finish_outer(const std::uint32_t* outer, const std::uint8_t* inner_digest,
                                      detail::sha256_compress_fn compress) noexcept {
        std::uint32_t state[8];
        std::memcpy(state, outer, sizeof state);
        detail::sha256_absorb_final(state, 64, inner_digest, 32, compress);
        sha256_digest out;
        detail::sha256_store_digest(state, out.data());
        return out;
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
    return static_cast<bool>(((difference - 1u) >> 8) & 1u);
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

// Writes the encoding of in[0..size) to out (no terminator). Returns the number
// of characters written, or 0 when out_capacity is too small (and size > 0).
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

namespace detail {
// 0..63 for the alphabet, 0xFF for every other byte. Indexed by input byte, so
// only for public input (see base64url_decode_public).
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

// The same strict, canonical decoding as base64url_decode, but NOT constant
// time: a table lookup per character and an early exit on the first bad one.
// Only for input that is not secret, such as a ticket the client already holds
// (its MAC is checked afterwards, in constant time). About 5x faster.
inline bool base64url_decode_public(std::string_view in, std::uint8_t* out, std::size_t out_capacity,
                                    std::size_t& out_size) noexcept {
    out_size = 0;
    const std::size_t n = in.size();
    if (n % 4 == 1 || base64url_max_decoded_size(n) > out_capacity) return false;
    const std::uint8_t* table = detail::base64url_lookup.value;
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

}  // inline namespace WSGUARD_ABI_NS
}  // namespace wsguard
