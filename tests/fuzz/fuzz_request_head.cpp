// libFuzzer target for wsguard::request_head_budget.
//
// The first 3 input bytes choose the byte cap, the line cap and a chunking
// seed; the rest is the byte stream a client sends. The budget's verdict on the
// whole stream is compared with the same budget fed the stream in random
// chunks (asking after every chunk: need_more until it decides, then the same
// verdict forever) and byte by byte. The verdict is then checked against what
// it claims about the bytes:
//  - complete: the head ends with CRLF CRLF, is within the byte cap, holds no
//    NUL and no LF without its CR, and has at most the cap of header lines;
//  - request_head_too_large: exactly cap + 1 bytes were inspected;
//  - too_many_header_lines: the inspected bytes hold more line starts than the cap;
//  - need_more: every byte was inspected and none of the above was decided.
// Any disagreement aborts.
#include <wsguard.hpp>

#include <cstdint>
#include <cstdio>
#include <cstdlib>

namespace {

using wsguard::head_status;
using wsguard::reason;

[[noreturn]] void fail(const char* what) {
    std::fprintf(stderr, "fuzz_request_head: %s\n", what);
    std::abort();
}
void require(bool ok, const char* what) {
    if (!ok) fail(what);
}

constexpr std::size_t byte_caps[] = {64, 65, 100, 128, 255, 256, 1000, 4096};
constexpr std::size_t line_caps[] = {1, 2, 3, 5, 8, 16, 64, 10000};

bool same(const wsguard::head_verdict& a, const wsguard::head_verdict& b) {
    return a.status == b.status && a.head_size == b.head_size && a.decision == b.decision;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < 3) return 0;
    wsguard::head_limits limits;
    limits.max_head_bytes = byte_caps[data[0] % 8];
    limits.max_header_lines = line_caps[data[1] % 8];
    std::uint32_t rng = 0x9e3779b9u ^ data[2];
    const char* stream = reinterpret_cast<const char*>(data + 3);
    const std::size_t n = size - 3;

    auto made = wsguard::request_head_budget::create(limits);
    require(static_cast<bool>(made), "the chosen limits are valid");
    const wsguard::request_head_budget fresh = made.value();

    wsguard::request_head_budget whole = fresh;
    const wsguard::head_verdict expected = whole.feed(stream, n);
    require(same(whole.verdict(), expected), "verdict() repeats the answer");

    // Random chunks, then byte by byte.
    wsguard::request_head_budget chunked = fresh;
    wsguard::head_verdict v{};
    bool decided = false;
    for (std::size_t at = 0; at < n;) {
        rng = rng * 1103515245u + 12345u;
        const std::size_t len = std::min<std::size_t>(n - at, 1 + (rng >> 16) % 64);
        v = chunked.feed(stream + at, len);
        at += len;
        if (decided) require(same(v, expected), "a decided budget keeps its answer");
        if (v.status != head_status::need_more) {
            require(same(v, expected), "chunked feeding decides what whole feeding decided");
            decided = true;
        }
    }
    if (n == 0) v = chunked.verdict();
    require(same(v, expected), "chunked feeding ends where whole feeding ended");
    wsguard::request_head_budget bytewise = fresh;
    for (std::size_t i = 0; i < n; ++i) v = bytewise.feed(stream + i, 1);
    if (n > 0) require(same(v, expected), "byte-by-byte feeding ends where whole feeding ended");

    const std::size_t seen = whole.bytes_seen();
    require(seen <= n && seen <= limits.max_head_bytes + 1, "never inspects past the cap");
    std::size_t line_starts = 0;  // header lines begun: a byte after CRLF other than CR, once a line was seen
    bool line_seen = false;
    for (std::size_t i = 0; i < seen; ++i) {
        const bool after_crlf = i >= 2 && stream[i - 2] == '\r' && stream[i - 1] == '\n';
        if (after_crlf && stream[i] != '\r' && line_seen) ++line_starts;
        if (stream[i] != '\r' && stream[i] != '\n') line_seen = true;
    }
    switch (expected.status) {
        case head_status::complete: {
            const std::size_t h = expected.head_size;
            require(expected.decision.allowed() && h == seen && h >= 4 && h <= limits.max_head_bytes, "complete is in bounds");
            require(stream[h - 4] == '\r' && stream[h - 3] == '\n' && stream[h - 2] == '\r' && stream[h - 1] == '\n',
                    "a complete head ends with CRLF CRLF");
            for (std::size_t i = 0; i < h; ++i) {
                require(stream[i] != '\0', "a complete head holds no NUL");
                if (stream[i] == '\n') require(i > 0 && stream[i - 1] == '\r', "a complete head holds no bare LF");
            }
            require(line_starts <= limits.max_header_lines, "a complete head is within the line cap");
            break;
        }
        case head_status::refused:
            require(!static_cast<bool>(expected), "refused converts to false");
            if (expected.decision.reason == reason::request_head_too_large) {
                require(seen == limits.max_head_bytes + 1, "too large exactly one byte past the cap");
            } else if (expected.decision.reason == reason::too_many_header_lines) {
                require(line_starts > limits.max_header_lines, "too many lines means more line starts than the cap");
            } else {
                require(expected.decision.reason == reason::request_malformed, "the only other refusal is malformed");
            }
            require(expected.decision.http_status() == 431 || expected.decision.http_status() == 400, "431 or 400");
            break;
        case head_status::need_more:
            require(seen == n && n <= limits.max_head_bytes, "need_more inspected everything within the cap");
            break;
    }
    return 0;
}
