// frame_guard header inspection beside the header parsers servers write by hand.
//
// Every benchmark walks the same cyclic stream of 8 frame headers, one header
// per iteration: 2-byte (server-to-client, unmasked), 6-byte (masked, 7-bit
// length), 8-byte (masked, 16-bit length) and 14-byte (masked, 64-bit length)
// headers, including a fragmented message with a ping inside it. Two guards
// (server role and client role) keep the fragmentation state across the cycle.
//
// Baselines, in the same binary, on the same bytes:
//  - typical_parser: what most small servers and tutorials write: parse FIN,
//    opcode, mask bit, the 7/16/64-bit length and the masking key into a
//    struct; refuse unknown opcodes and a length over the cap. No RSV, mask
//    direction, control-frame, minimal-length or fragmentation checks: it does
//    less work than the guard, so it is a lower bound on the cost of parsing.
//  - naive_full_check: the same rules as frame_guard, written the plain way
//    (parse the whole header first, then a switch on the opcode and one `if`
//    per rule, message state in a struct) — what a careful hand-written check
//    costs.
// After the runs, a summary prints ns per header and the ratios.
#include <wsguard.hpp>

#include <benchmark/benchmark.h>

#include "../tests/frame_header_bytes.hpp"
#include "bench_summary.hpp"

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <map>
#include <string>
#include <vector>

namespace {

constexpr std::uint64_t cap = std::uint64_t{1} << 20;

struct stream_frame {
    int role;  // 0: received by the server (masked), 1: received by the client
    std::vector<std::uint8_t> bytes;
};

std::vector<std::uint8_t> make_header(std::uint8_t b0, std::uint64_t length, bool masked) {
    return wsguard_test::frame_header_bytes(b0, length, masked);
}

// 8 headers: sizes 2, 6, 8, 2, 14, 6, 6, 6.
std::vector<stream_frame> make_stream() {
    return {
        {1, make_header(0x81, 5, false)},     // 2: text "Hello" to a client
        {0, make_header(0x81, 100, true)},    // 6: text
        {0, make_header(0x82, 1000, true)},   // 8: binary
        {1, make_header(0x8A, 0, false)},     // 2: pong to a client
        {0, make_header(0x82, 70000, true)},  // 14: binary, 64-bit length
        {0, make_header(0x01, 50, true)},     // 6: first fragment
        {0, make_header(0x89, 4, true)},      // 6: ping inside the message
        {0, make_header(0x80, 50, true)},     // 6: final fragment
    };
}

// Flat copies so the hot loop reads plain arrays.
struct flat_stream {
    std::uint8_t bytes[8][16];
    std::size_t sizes[8];
    int roles[8];
};

flat_stream flatten() {
    flat_stream f{};
    const auto s = make_stream();
    for (std::size_t i = 0; i < 8; ++i) {
        std::memcpy(f.bytes[i], s[i].bytes.data(), s[i].bytes.size());
        f.sizes[i] = s[i].bytes.size();
        f.roles[i] = s[i].role;
    }
    return f;
}

// --- baseline 1: the typical hand-written parser
struct ws_header {
    bool fin;
    std::uint8_t opcode;
    bool masked;
    std::uint8_t mask[4];
    std::uint64_t length;
    std::size_t header_length;
};

// -1 need more, 0 refuse, 1 ok.
inline int typical_parse(const std::uint8_t* p, std::size_t n, std::uint64_t max_length, ws_header& h) {
    if (n < 2) return -1;
    h.fin = (p[0] & 0x80) != 0;
    h.opcode = p[0] & 0x0F;
    h.masked = (p[1] & 0x80) != 0;
    std::uint64_t length = p[1] & 0x7F;
    std::size_t pos = 2;
    if (length == 126) {
        if (n < 4) return -1;
        length = (static_cast<std::uint64_t>(p[2]) << 8) | p[3];
        pos = 4;
    } else if (length == 127) {
        if (n < 10) return -1;
        length = 0;
        for (int i = 0; i < 8; ++i) length = (length << 8) | p[2 + i];
        pos = 10;
    }
    if (h.masked) {
        if (n < pos + 4) return -1;
        std::memcpy(h.mask, p + pos, 4);
        pos += 4;
    }
    if (h.opcode != 0x0 && h.opcode != 0x1 && h.opcode != 0x2 && h.opcode != 0x8 && h.opcode != 0x9 && h.opcode != 0xA) {
        return 0;
    }
    if (length > max_length) return 0;
    h.length = length;
    h.header_length = pos;
    return 1;
}

// --- baseline 2: the same rules as frame_guard, written plainly
struct naive_checker {
    bool server = true;
    bool deflate = false;
    std::uint64_t max_message = cap;
    bool in_message = false;
    std::uint64_t total = 0;
    bool failed = false;

    // -1 need more, 0 refuse, 1 ok; on ok, fills h.
    int check(const std::uint8_t* p, std::size_t n, ws_header& h) {
        if (failed) return 0;
        const int r = typical_parse(p, n, ~std::uint64_t{0}, h);
        if (r <= 0) return fail_if(r == 0, r);
        const bool rsv1 = (p[0] & 0x40) != 0, rsv2 = (p[0] & 0x20) != 0, rsv3 = (p[0] & 0x10) != 0;
        bool control = false;
        switch (h.opcode) {
            case 0x0:
                if (!in_message) return fail_if(true, 0);
                break;
            case 0x1:
            case 0x2:
                if (in_message) return fail_if(true, 0);
                break;
            case 0x8:
            case 0x9:
            case 0xA:
                control = true;
                break;
            default:
                return fail_if(true, 0);
        }
        if (rsv2 || rsv3) return fail_if(true, 0);
        if (rsv1 && !(deflate && (h.opcode == 0x1 || h.opcode == 0x2))) return fail_if(true, 0);
        if (h.masked != server) return fail_if(true, 0);
        if (control) {
            if (!h.fin || h.length > 125 || (h.opcode == 0x8 && h.length == 1)) return fail_if(true, 0);
            return 1;
        }
        const std::uint8_t length7 = p[1] & 0x7F;
        if (length7 == 126 && h.length < 126) return fail_if(true, 0);
        if (length7 == 127 && (h.length < 65536 || (h.length >> 63) != 0)) return fail_if(true, 0);
        if (h.length > max_message || h.length > max_message - total) return fail_if(true, 0);
        if (h.fin) {
            in_message = false;
            total = 0;
        } else {
            in_message = true;
            total += h.length;
        }
        return 1;
    }
    int fail_if(bool refuse, int r) {
        if (refuse) failed = true;
        return r;
    }
};

const flat_stream stream = flatten();

void BM_frame_guard(benchmark::State& state) {
    wsguard::frame_limits server_limits;
    server_limits.max_message_bytes = cap;
    wsguard::frame_limits client_limits = server_limits;
    client_limits.role = wsguard::frame_role::client;
    wsguard::frame_guard guards[2] = {wsguard::frame_guard{server_limits}, wsguard::frame_guard{client_limits}};
    // Each frame's connection, as a server's read path holds a pointer to it.
    wsguard::frame_guard* guard_of[8];
    for (std::size_t k = 0; k < 8; ++k) guard_of[k] = &guards[stream.roles[k]];
    const flat_stream* s = &stream;
    benchmark::DoNotOptimize(s);
    std::size_t i = 0;
    std::uint64_t allowed = 0, consumed = 0;
    for (auto _ : state) {
        const wsguard::frame_verdict v = guard_of[i]->inspect(s->bytes[i], s->sizes[i]);
        allowed += v.allowed() ? 1 : 0;
        consumed += v.header_size + v.payload_length;
        benchmark::DoNotOptimize(consumed);
        i = (i + 1) & 7;
    }
    if (allowed != static_cast<std::uint64_t>(state.iterations())) state.SkipWithError("frame_guard refused the stream");
    state.SetItemsProcessed(state.iterations());
}

void BM_typical_parser(benchmark::State& state) {
    const flat_stream* s = &stream;
    benchmark::DoNotOptimize(s);
    std::size_t i = 0;
    std::uint64_t allowed = 0, consumed = 0;
    for (auto _ : state) {
        ws_header h{};
        const int r = typical_parse(s->bytes[i], s->sizes[i], cap, h);
        allowed += r == 1 ? 1 : 0;
        consumed += h.header_length + h.length;
        benchmark::DoNotOptimize(consumed);
        i = (i + 1) & 7;
    }
    if (allowed != static_cast<std::uint64_t>(state.iterations())) state.SkipWithError("typical parser refused the stream");
    state.SetItemsProcessed(state.iterations());
}

void BM_naive_full_check(benchmark::State& state) {
    naive_checker checkers[2];
    checkers[1].server = false;
    naive_checker* checker_of[8];
    for (std::size_t k = 0; k < 8; ++k) checker_of[k] = &checkers[stream.roles[k]];
    const flat_stream* s = &stream;
    benchmark::DoNotOptimize(s);
    std::size_t i = 0;
    std::uint64_t allowed = 0, consumed = 0;
    for (auto _ : state) {
        ws_header h{};
        const int r = checker_of[i]->check(s->bytes[i], s->sizes[i], h);
        allowed += r == 1 ? 1 : 0;
        consumed += h.header_length + h.length;
        benchmark::DoNotOptimize(consumed);
        i = (i + 1) & 7;
    }
    if (allowed != static_cast<std::uint64_t>(state.iterations())) state.SkipWithError("naive checker refused the stream");
    state.SetItemsProcessed(state.iterations());
}

// Byte-by-byte arrival: the guard asked after every byte of a 14-byte header
// (13 need_more answers, then allowed) — the worst case for a reader that
// calls it on every partial read.
void BM_frame_guard_byte_by_byte(benchmark::State& state) {
    wsguard::frame_guard guard;
    const flat_stream* s = &stream;
    benchmark::DoNotOptimize(s);
    std::uint64_t allowed = 0;
    for (auto _ : state) {
        for (std::size_t k = 0; k <= s->sizes[4]; ++k) {
            const wsguard::frame_verdict v = guard.inspect(s->bytes[4], k);
            allowed += v.allowed() ? 1 : 0;
            benchmark::DoNotOptimize(allowed);
        }
    }
    if (allowed != static_cast<std::uint64_t>(state.iterations())) state.SkipWithError("byte by byte did not allow");
    state.SetItemsProcessed(state.iterations());
}

void BM_inflate_budget_check(benchmark::State& state) {
    const auto budget = wsguard::inflate_budget::create({cap, 100});
    if (!budget) {
        state.SkipWithError("budget");
        return;
    }
    std::uint64_t in = 1000, out = 4000, allowed = 0;
    for (auto _ : state) {
        benchmark::DoNotOptimize(in);
        allowed += budget->check(in, out).allowed() ? 1 : 0;
        out = (out + 4096) & 0xFFFFF;
        benchmark::DoNotOptimize(allowed);
    }
    state.SetItemsProcessed(state.iterations());
}

BENCHMARK(BM_frame_guard);
BENCHMARK(BM_typical_parser);
BENCHMARK(BM_naive_full_check);
BENCHMARK(BM_frame_guard_byte_by_byte);
BENCHMARK(BM_inflate_budget_check);


}  // namespace

int main(int argc, char** argv) {
    benchmark::Initialize(&argc, argv);
    if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
    wsguard_bench::summary_reporter reporter;
    benchmark::RunSpecifiedBenchmarks(&reporter);

    const auto ns = [&](const char* name) { return reporter.ns(name); };
    const double guard = ns("BM_frame_guard"), typical = ns("BM_typical_parser"), naive = ns("BM_naive_full_check");
    std::printf("\nFrame header inspection, CPU ns per header (mix of 2/6/8/14-byte headers)\n");
    std::printf("  frame_guard (every RFC 6455 rule + caps): %6.2f ns\n", guard);
    if (guard > 0) {
        std::printf("  typical parser (opcode + length only):   %6.2f ns  (typical/guard = %.2fx)\n", typical, typical / guard);
        std::printf("  naive full check (same rules, plainly):  %6.2f ns  (naive/guard = %.2fx)\n", naive, naive / guard);
    }
    const double bytewise = ns("BM_frame_guard_byte_by_byte");
    if (bytewise > 0) std::printf("  14-byte header fed byte by byte (15 calls): %.2f ns per header\n", bytewise);
    benchmark::Shutdown();
    return 0;
}
