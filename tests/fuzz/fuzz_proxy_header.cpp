// libFuzzer target for wsguard::parse_proxy_header.
//
// Input: byte 0 picks a template (raw bytes, a v1 line, a v2 header with the
// input as its body) so the fuzzer reaches deep states quickly; the rest is the
// payload. Checked:
//  - the whole buffer's answer against an independent model of the v2 framing
//    (signature, version/command/family/transport, length, address block, TLV
//    bounds), written as plainly as possible;
//  - every prefix, and random splits fed as growing buffers: need_more until
//    the answer is decided, then exactly the whole buffer's answer; need_more
//    always asks for more bytes than it has;
//  - an allowed header fits the buffer, re-parses alone to the same answer, and
//    its source text is canonical.
#include <wsguard.hpp>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

namespace {

using wsguard::reason;

[[noreturn]] void fail(const char* what) {
    std::fprintf(stderr, "fuzz_proxy_header: %s\n", what);
    std::abort();
}
void require(bool ok, const char* what) {
    if (!ok) fail(what);
}

const std::uint8_t signature[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};

// The v2 model on a complete buffer: the reason the spec asks for, or ok.
// Returns false when the buffer is not a complete v2 header (not modelled).
bool model_v2(const std::vector<std::uint8_t>& b, reason& why, std::size_t& total) {
    if (b.size() < 16 || std::memcmp(b.data(), signature, 12) != 0) return false;
    const int version = b[12] >> 4, command = b[12] & 15, family = b[13] >> 4, transport = b[13] & 15;
    if (version != 2 || command > 1 || family > 3 || transport > 2) {
        why = reason::proxy_header_unsupported;
        return true;
    }
    const std::size_t length = b[14] * 256u + b[15];
    std::size_t block = 0;
    if (command == 1) block = family == 1 ? 12 : family == 2 ? 36 : family == 3 ? 216 : 0;
    if (length < block) {
        why = reason::proxy_header_malformed;
        return true;
    }
    if (b.size() < 16 + length) return false;
    total = 16 + length;
    why = reason::ok;
    if (command == 0) return true;
    std::size_t p = 16 + block;
    while (p < total) {
        if (p + 3 > total || p + 3 + (b[p + 1] * 256u + b[p + 2]) > total) {
            why = reason::proxy_header_malformed;
            return true;
        }
        p += 3 + b[p + 1] * 256u + b[p + 2];
    }
    return true;
}

void same(const wsguard::proxy_header& a, const wsguard::proxy_header& b, const char* what) {
    require(a.need_more() == b.need_more() && a.allowed() == b.allowed() && a.decision.reason == b.decision.reason &&
                a.header_size == b.header_size &&
                a.source_text() == b.source_text() && a.source_port == b.source_port && a.family == b.family &&
                a.local == b.local,
            what);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < 1) return 0;
    std::vector<std::uint8_t> b;
    const std::uint8_t mode = data[0];
    if (mode % 4 == 1) {
        const char* prefix = (mode & 0x10) != 0 ? "PROXY TCP6 " : "PROXY TCP4 ";
        b.assign(prefix, prefix + 11);
    } else if (mode % 4 == 2) {
        b.assign(signature, signature + 12);
    }
    b.insert(b.end(), data + 1, data + size);

    const wsguard::proxy_header whole = wsguard::parse_proxy_header(b.data(), b.size());
    switch (whole.decision.reason) {
        case reason::ok: case reason::proxy_header_malformed: case reason::proxy_header_missing:
        case reason::proxy_header_unsupported: break;
        default: fail("unexpected reason");
    }
    require(whole.refused() == (whole.decision.reason != reason::ok), "refused iff a refusal reason");
    if (whole.need_more()) require(whole.header_size > b.size(), "need_more must ask for more bytes");
    if (whole.refused()) require(whole.header_size == 0, "refusal with a size");
    if (whole.allowed()) {
        require(whole.header_size <= b.size() && whole.header_size >= 15, "header size out of the buffer");
        same(wsguard::parse_proxy_header(b.data(), whole.header_size), whole, "header alone differs");
        if (whole.has_source()) {
            const auto back = wsguard::client_address::from_peer(whole.source_text());
            require(back && back.text() == whole.source_text(), "source text not canonical");
            require(*whole.source_key() == back.key(), "source key differs");
        }
    }
    reason why = reason::ok;
    std::size_t total = 0;
    if (model_v2(b, why, total)) {
        require(whole.decision.reason == why, "v2 model: reason differs");
        if (why == reason::ok) require(whole.header_size == total, "v2 model: size differs");
    }

    // Every prefix, then random growth: the first decided answer is the whole answer.
    bool decided = false;
    const std::size_t limit = b.size() < 600 ? b.size() : 600;
    for (std::size_t n = 0; n <= limit; ++n) {
        const wsguard::proxy_header part = wsguard::parse_proxy_header(b.data(), n);
        if (!part.need_more()) decided = true;
        if (decided) same(part, whole, "prefix differs from the whole");
        else require(part.header_size > n, "prefix need_more must ask for more bytes");
    }
    std::size_t n = 0;
    std::uint32_t seed = 2166136261u;
    for (std::size_t i = 0; i < size; ++i) seed = (seed ^ data[i]) * 16777619u;
    while (n < b.size()) {
        seed = seed * 1103515245u + 12345u;
        n += 1 + (seed >> 16) % 97;
        if (n > b.size()) n = b.size();
        const wsguard::proxy_header part = wsguard::parse_proxy_header(b.data(), n);
        if (!part.need_more()) {
            same(part, whole, "random split differs from the whole");
            break;
        }
    }
    return 0;
}
