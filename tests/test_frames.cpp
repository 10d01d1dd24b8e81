// frame_guard and inflate_budget: RFC 6455 header rules, size caps, fragmentation
// state, incremental feeding, and the permessage-deflate budget.
#include <wsguard.hpp>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

#include "catch.hpp"
#include "frame_header_bytes.hpp"

using wsguard::frame_guard;
using wsguard::frame_limits;
using wsguard::frame_opcode;
using wsguard::frame_role;
using wsguard::frame_verdict;
using wsguard::reason;

namespace {

using bytes = std::vector<std::uint8_t>;

constexpr std::uint64_t u64_max = std::numeric_limits<std::uint64_t>::max();

const auto& mask_key = wsguard_test::frame_mask_key;

// A header in minimal length encoding, with the masking key when masked.
bytes header(std::uint8_t first_byte, std::uint64_t length, bool masked) {
    return wsguard_test::frame_header_bytes(first_byte, length, masked);
}

bool masked_for(frame_role role) { return role == frame_role::server; }

frame_limits make_limits(frame_role role, bool deflate, std::uint64_t max_message = std::uint64_t{1} << 20,
                         std::uint64_t max_frame = 0, std::uint32_t max_fragments = 0) {
    frame_limits limits;
    limits.max_message_bytes = max_message;
    limits.max_frame_bytes = max_frame;
    limits.role = role;
    limits.permessage_deflate = deflate;
    limits.max_fragments = max_fragments;
    return limits;
}

// What one frame should get: allowed with a header size and length, or a refusal.
struct expectation {
    reason refusal = reason::ok;
    std::size_t header_size = 0;
    std::uint64_t payload_length = 0;
};

expectation allowed(std::size_t header_size, std::uint64_t payload_length) {
    return expectation{reason::ok, header_size, payload_length};
}
expectation refused(reason r) { return expectation{r, 0, 0}; }

std::string describe(const frame_verdict& v) {
    std::ostringstream out;
    out << (v.need_more() ? "need_more" : v.allowed() ? "allowed" : "refused") << " reason=" << wsguard::to_string(v.decision.reason)
        << " header_size=" << v.header_size << " payload_length=" << v.payload_length;
    return out.str();
}

// Feeds one frame to `guard` three ways and checks they agree:
//  - every strict prefix, each on a copy of the guard: need_more (with a
//    header_size the prefix does not reach, for an allowed frame) or the
//    expected refusal, never allowed and never another refusal;
//  - growing prefixes on `guard` itself, one byte more per call, until it
//    decides (need_more must leave the state untouched);
//  - the whole frame, on a copy.
// Leaves `guard` in the state after the frame.
void feed_frame(frame_guard& guard, const bytes& frame, const expectation& want) {
    CAPTURE(wsguard::to_string(want.refusal), want.header_size, want.payload_length, frame.size());
    const bool want_allowed = want.refusal == reason::ok;

    for (std::size_t k = 0; k < frame.size(); ++k) {
        frame_guard copy = guard;
        const frame_verdict v = copy.inspect(frame.data(), k);
        CAPTURE(k, describe(v));
        if (want_allowed && k < want.header_size) {
            REQUIRE(v.need_more());
            CHECK(v.header_size > k);
            CHECK(v.decision.close_code() == 1000);
            CHECK(v.decision.reason == reason::ok);
        } else if (want_allowed) {
            REQUIRE(v.allowed());
            CHECK(v.header_size == want.header_size);
            CHECK(v.payload_length == want.payload_length);
        } else {
            REQUIRE((v.need_more() || v.refused()));
            if (v.refused()) CHECK(v.decision.reason == want.refusal);
        }
    }

    frame_guard whole_copy = guard;
    const frame_verdict whole = whole_copy.inspect(frame.data(), frame.size());

    frame_verdict v;
    std::size_t k = 0;
    for (; k <= frame.size(); ++k) {
        v = guard.inspect(frame.data(), k);
        if (!v.need_more()) break;
        // Idempotent: asking again with the same bytes gives the same answer.
        const frame_verdict again = guard.inspect(frame.data(), k);
        REQUIRE(again.need_more());
        REQUIRE(again.header_size == v.header_size);
    }
    CAPTURE(k, describe(v), describe(whole));
    REQUIRE_FALSE(v.need_more());
    CHECK(v.allowed() == whole.allowed());
    CHECK(v.refused() == whole.refused());
    CHECK(v.decision.reason == whole.decision.reason);
    CHECK(v.header_size == whole.header_size);
    CHECK(v.payload_length == whole.payload_length);
    if (want_allowed) {
        REQUIRE(v.allowed());
        CHECK(k == want.header_size);  // allowed exactly when the header is complete
        CHECK(v.header_size == want.header_size);
        CHECK(v.payload_length == want.payload_length);
        CHECK(v.decision.reason == reason::ok);
        CHECK(v.decision.close_code() == 1000);
        CHECK(v.decision.allowed());
        CHECK(static_cast<bool>(v));
        CHECK(v.opcode == (frame[0] & 0x0F));
        CHECK(v.fin == ((frame[0] & 0x80) != 0));
        CHECK(v.rsv1 == ((frame[0] & 0x40) != 0));
        CHECK(v.masked == ((frame[1] & 0x80) != 0));
        if (v.masked) {
            for (std::size_t i = 0; i < 4; ++i) CHECK(v.masking_key[i] == frame[v.header_size - 4 + i]);
        }
    } else {
        REQUIRE(v.refused());
        CHECK(v.decision.reason == want.refusal);
        CHECK(v.decision.close_code() == wsguard::close_code_of(want.refusal));
        CHECK(v.decision.reason == want.refusal);
        CHECK_FALSE(static_cast<bool>(v));
        // Sticky: the connection must be closed; nothing passes any more.
        const frame_verdict later = guard.inspect(frame.data(), frame.size());
        CHECK(later.refused());
        CHECK(later.decision.reason == want.refusal);
        const bytes fine = header(0x81, 0, masked_for(guard.limits().role));
        const frame_verdict other = guard.inspect(fine.data(), fine.size());
        CHECK(other.decision.reason == want.refusal);
        CHECK(guard.inspect(nullptr, 0).decision.reason == want.refusal);
        CHECK(guard.refusal() == want.refusal);
    }
}

void feed_all(const frame_limits& limits, const std::vector<bytes>& frames, const std::vector<expectation>& wants) {
    REQUIRE(frames.size() == wants.size());
    frame_guard guard{limits};
    for (std::size_t i = 0; i < frames.size(); ++i) {
        CAPTURE(i);
        feed_frame(guard, frames[i], wants[i]);
    }
}

// --- the vector file

std::string trim(const std::string& s) {
    const auto first = s.find_first_not_of(" \t\r");
    if (first == std::string::npos) return {};
    const auto last = s.find_last_not_of(" \t\r");
    return s.substr(first, last - first + 1);
}

std::vector<std::string> split(const std::string& s, char sep) {
    std::vector<std::string> parts;
    std::string part;
    std::istringstream in(s);
    while (std::getline(in, part, sep)) parts.push_back(trim(part));
    return parts;
}

bool reason_from_name(const std::string& name, reason& out) {
    for (const auto& entry : wsguard::detail::reason_table) {
        if (name == entry.name) {
            out = entry.value;
            return true;
        }
    }
    return false;
}

// Server-form frame to client form: clear the mask bit, drop the masking key.
bytes unmask_form(const bytes& frame) {
    bytes out = frame;
    if (out.size() < 2 || (out[1] & 0x80) == 0) return out;
    out[1] &= 0x7F;
    const std::uint8_t length7 = out[1];
    const std::size_t key_at = length7 == 127 ? 10 : length7 == 126 ? 4 : 2;
    if (out.size() > key_at) {
        const std::size_t key_end = std::min(out.size(), key_at + 4);
        out.erase(out.begin() + static_cast<std::ptrdiff_t>(key_at), out.begin() + static_cast<std::ptrdiff_t>(key_end));
    }
    return out;
}

struct vector_case {
    std::string name;
    std::string role;     // server, client, both
    std::string deflate;  // 0, 1, *
    frame_limits limits;
    std::vector<bytes> frames;
    std::vector<expectation> wants;
};

std::vector<vector_case> load_vectors() {
    std::ifstream in(std::string(WSGUARD_TEST_VECTORS_DIR) + "/frames_headers.txt");
    REQUIRE(in.good());
    std::vector<vector_case> cases;
    std::string line;
    while (std::getline(in, line)) {
        line = trim(line);
        if (line.empty() || line[0] == '#') continue;
        CAPTURE(line);
        const auto fields = split(line, '|');
        REQUIRE(fields.size() == 6);
        vector_case c;
        c.name = fields[0];
        c.role = fields[1];
        c.deflate = fields[2];
        REQUIRE((c.role == "server" || c.role == "client" || c.role == "both"));
        REQUIRE((c.deflate == "0" || c.deflate == "1" || c.deflate == "*"));
        std::istringstream limits_in(fields[3]);
        std::string message;
        limits_in >> message;
        if (message != "default") c.limits.max_message_bytes = std::strtoull(message.c_str(), nullptr, 10);
        std::uint64_t frame_cap = 0;
        std::uint32_t fragments = 0;
        if (limits_in >> frame_cap >> fragments) {
            c.limits.max_frame_bytes = frame_cap;
            c.limits.max_fragments = fragments;
        }
        for (const auto& frame_hex : split(fields[4], ';')) {
            bytes frame;
            std::istringstream hex_in(frame_hex);
            std::string byte_hex;
            while (hex_in >> byte_hex) frame.push_back(static_cast<std::uint8_t>(std::strtoul(byte_hex.c_str(), nullptr, 16)));
            REQUIRE(frame.size() >= 1);
            if (c.role == "both") REQUIRE((frame.size() >= 2 && (frame[1] & 0x80) != 0));
            c.frames.push_back(frame);
        }
        for (const auto& want_text : split(fields[5], ';')) {
            std::istringstream want_in(want_text);
            std::string word;
            want_in >> word;
            expectation want;
            if (word == "ok") {
                REQUIRE(static_cast<bool>(want_in >> want.header_size >> want.payload_length));
            } else {
                REQUIRE(reason_from_name(word, want.refusal));
                REQUIRE(want.refusal != reason::ok);
                // In `both` cases the expectation must not depend on the mask.
                if (c.role == "both") REQUIRE((want.refusal != reason::frame_masked && want.refusal != reason::frame_not_masked));
            }
            c.wants.push_back(want);
        }
        REQUIRE(c.frames.size() == c.wants.size());
        for (std::size_t i = 0; i + 1 < c.wants.size(); ++i) REQUIRE(c.wants[i].refusal == reason::ok);
        cases.push_back(c);
    }
    return cases;
}

}  // namespace

TEST_CASE("frame_guard answers every RFC 6455 vector whole, byte by byte and prefix by prefix", "[frames]") {
    const auto cases = load_vectors();
    REQUIRE(cases.size() >= 100);
    std::size_t runs = 0;
    for (const auto& c : cases) {
        CAPTURE(c.name, c.role, c.deflate);
        for (const bool deflate : {false, true}) {
            if (c.deflate == "0" && deflate) continue;
            if (c.deflate == "1" && !deflate) continue;
            for (const frame_role role : {frame_role::server, frame_role::client}) {
                if (c.role == "server" && role != frame_role::server) continue;
                if (c.role == "client" && role != frame_role::client) continue;
                CAPTURE(deflate, role == frame_role::server ? "server" : "client");
                frame_limits limits = c.limits;
                limits.role = role;
                limits.permessage_deflate = deflate;
                std::vector<bytes> frames = c.frames;
                std::vector<expectation> wants = c.wants;
                if (c.role == "both" && role == frame_role::client) {
                    for (auto& frame : frames) frame = unmask_form(frame);
                    for (auto& want : wants) {
                        if (want.refusal == reason::ok) want.header_size -= 4;
                    }
                }
                feed_all(limits, frames, wants);
                ++runs;
            }
        }
    }
    CHECK(runs > cases.size());
}

TEST_CASE("frame_guard accepts every length at its encoding boundaries when the caps allow it", "[frames]") {
    const std::uint64_t lengths[] = {0,     1,     124,   125,       126,           127,           128,
                                     255,   256,   65534, 65535,     65536,         65537,         std::uint64_t{1} << 32,
                                     u64_max >> 1};
    for (const frame_role role : {frame_role::server, frame_role::client}) {
        for (const bool deflate : {false, true}) {
            for (const std::uint64_t length : lengths) {
                for (const std::uint8_t first : {std::uint8_t{0x81}, std::uint8_t{0x82}}) {
                    CAPTURE(length, first, deflate);
                    const bytes h = header(first, length, masked_for(role));
                    const std::size_t size = h.size();
                    CHECK(size == (length < 126 ? 2u : length <= 0xFFFF ? 4u : 10u) + (masked_for(role) ? 4u : 0u));
                    // Cap equal to the length: allowed, by either cap.
                    feed_all(make_limits(role, deflate, length), {h}, {allowed(size, length)});
                    feed_all(make_limits(role, deflate, u64_max, length), {h}, {allowed(size, length)});
                    if (length == 0) continue;
                    // One past: the frame cap (or the message cap standing in for it).
                    feed_all(make_limits(role, deflate, length - 1), {h}, {refused(reason::frame_too_large)});
                    // (A frame cap of 0 means "same as the message cap".)
                    if (length > 1) {
                        feed_all(make_limits(role, deflate, u64_max, length - 1), {h}, {refused(reason::frame_too_large)});
                    }
                    // Frame cap above the length, message cap one under it.
                    feed_all(make_limits(role, deflate, length - 1, length), {h}, {refused(reason::message_too_large)});
                }
            }
        }
    }
}

TEST_CASE("frame_guard refuses every non-minimal length encoding", "[frames]") {
    for (const frame_role role : {frame_role::server, frame_role::client}) {
        const bool masked = masked_for(role);
        const std::uint8_t mask_bit = masked ? 0x80 : 0x00;
        std::vector<std::uint64_t> samples;
        for (std::uint64_t n = 0; n < 126; ++n) samples.push_back(n);
        for (std::uint64_t n : {126u, 127u, 255u, 256u, 4096u, 65534u, 65535u}) samples.push_back(n);
        for (const std::uint64_t n : samples) {
            CAPTURE(n);
            if (n < 126) {
                bytes h{0x82, static_cast<std::uint8_t>(mask_bit | 126), 0, static_cast<std::uint8_t>(n)};
                if (masked) h.insert(h.end(), mask_key, mask_key + 4);
                feed_all(make_limits(role, false), {h}, {refused(reason::frame_length_not_minimal)});
            }
            bytes h{0x82, static_cast<std::uint8_t>(mask_bit | 127), 0, 0, 0, 0, 0, 0,
                    static_cast<std::uint8_t>(n >> 8), static_cast<std::uint8_t>(n)};
            if (masked) h.insert(h.end(), mask_key, mask_key + 4);
            feed_all(make_limits(role, false), {h}, {refused(reason::frame_length_not_minimal)});
        }
    }
}

TEST_CASE("frame_guard refuses a 64-bit length with its top bit after three bytes", "[frames]") {
    frame_guard guard{make_limits(frame_role::server, false, u64_max)};
    const std::uint8_t prefix[] = {0x82, 0xFF, 0x80};
    CHECK(guard.inspect(prefix, 2).need_more());
    const frame_verdict v = guard.inspect(prefix, 3);
    CHECK(v.refused());
    CHECK(v.decision.reason == reason::frame_length_msb_set);
    CHECK(v.decision.close_code() == 1002);
}

// A straightforward model of RFC 6455 5.2 for the first byte, written as a
// switch, to cross-check the guard's bit tricks on all 256 values.
reason first_byte_model(std::uint8_t b0, bool deflate, bool in_message) {
    const int opcode = b0 & 0x0F;
    const bool fin = (b0 & 0x80) != 0;
    const bool rsv1 = (b0 & 0x40) != 0, rsv2 = (b0 & 0x20) != 0, rsv3 = (b0 & 0x10) != 0;
    bool data = false, control = false;
    switch (opcode) {
        case 0x0: case 0x1: case 0x2: data = true; break;
        case 0x8: case 0x9: case 0xA: control = true; break;
        default: return reason::frame_reserved_opcode;
    }
    if (rsv2 || rsv3) return reason::frame_reserved_bits;
    if (rsv1 && !(deflate && (opcode == 0x1 || opcode == 0x2))) return reason::frame_reserved_bits;
    if (control && !fin) return reason::control_frame_fragmented;
    if (data && opcode == 0x0 && !in_message) return reason::unexpected_continuation;
    if (data && opcode != 0x0 && in_message) return reason::expected_continuation;
    return reason::ok;
}

TEST_CASE("frame_guard judges all 256 first bytes after one byte, inside and outside a message", "[frames]") {
    for (const frame_role role : {frame_role::server, frame_role::client}) {
        for (const bool deflate : {false, true}) {
            for (const bool in_message : {false, true}) {
                for (int b = 0; b < 256; ++b) {
                    CAPTURE(b, deflate, in_message);
                    frame_guard guard{make_limits(role, deflate)};
                    if (in_message) {
                        const bytes start = header(0x01, 0, masked_for(role));
                        REQUIRE(guard.inspect(start.data(), start.size()).allowed());
                        REQUIRE(guard.message_in_progress());
                    }
                    const std::uint8_t b0 = static_cast<std::uint8_t>(b);
                    const reason want = first_byte_model(b0, deflate, in_message);
                    const frame_verdict v = guard.inspect(&b0, 1);
                    if (want == reason::ok) {
                        CHECK(v.need_more());
                        CHECK(v.header_size == 2);
                        // And the whole empty frame is then allowed.
                        const bytes h = header(b0, 0, masked_for(role));
                        const frame_verdict whole = guard.inspect(h.data(), h.size());
                        CHECK(whole.allowed());
                    } else {
                        CHECK(v.refused());
                        CHECK(v.decision.reason == want);
                        CHECK(v.decision.close_code() == 1002);
                    }
                }
            }
        }
    }
}

TEST_CASE("frame_guard tracks a message's size across fragments, equal to and one past the cap", "[frames]") {
    for (const frame_role role : {frame_role::server, frame_role::client}) {
        const bool m = masked_for(role);
        const std::size_t h16 = m ? 8 : 4;
        // Three fragments of 300 against a cap of 900 and of 899.
        feed_all(make_limits(role, false, 900), {header(0x02, 300, m), header(0x00, 300, m), header(0x80, 300, m)},
                 {allowed(h16, 300), allowed(h16, 300), allowed(h16, 300)});
        feed_all(make_limits(role, false, 899), {header(0x02, 300, m), header(0x00, 300, m), header(0x80, 300, m)},
                 {allowed(h16, 300), allowed(h16, 300), refused(reason::message_too_large)});
        // The state accessors follow the message.
        frame_guard guard{make_limits(role, true, 900)};
        const bytes first = header(0x42, 300, m), middle = header(0x00, 200, m), last = header(0x80, 100, m);
        const frame_verdict v1 = guard.inspect(first.data(), first.size());
        REQUIRE(v1.allowed());
        CHECK(v1.message_opcode == frame_opcode::binary);
        CHECK(v1.message_compressed);
        CHECK(guard.message_in_progress());
        CHECK(guard.message_bytes() == 300);
        CHECK(guard.message_fragments() == 1);
        const frame_verdict v2 = guard.inspect(middle.data(), middle.size());
        REQUIRE(v2.allowed());
        CHECK(v2.opcode == frame_opcode::continuation);
        CHECK(v2.message_opcode == frame_opcode::binary);
        CHECK(v2.message_compressed);
        CHECK_FALSE(v2.rsv1);
        CHECK(guard.message_bytes() == 500);
        CHECK(guard.message_fragments() == 2);
        const bytes ping = header(0x89, 4, m);
        const frame_verdict vp = guard.inspect(ping.data(), ping.size());
        REQUIRE(vp.allowed());
        CHECK(vp.is_control());
        CHECK(vp.message_opcode == frame_opcode::ping);
        CHECK(guard.message_bytes() == 500);
        CHECK(guard.message_fragments() == 2);
        const frame_verdict v3 = guard.inspect(last.data(), last.size());
        REQUIRE(v3.allowed());
        CHECK(v3.fin);
        CHECK(guard.message_bytes() == 0);
        CHECK(guard.message_fragments() == 0);
        CHECK_FALSE(guard.message_in_progress());
    }
}

TEST_CASE("frame_guard's message total cannot wrap around a cap near 2^64", "[frames]") {
    const std::uint64_t big = u64_max >> 1;  // the largest length a frame can carry
    for (const frame_role role : {frame_role::server, frame_role::client}) {
        const bool m = masked_for(role);
        const std::size_t h64 = m ? 14 : 10;
        // 2 * (2^63 - 1) fits under 2^64 - 1; a third frame would wrap a naive sum.
        feed_all(make_limits(role, false, u64_max),
                 {header(0x02, big, m), header(0x00, big, m), header(0x00, 2, m)},
                 {allowed(h64, big), allowed(h64, big), refused(reason::message_too_large)});
        feed_all(make_limits(role, false, u64_max),
                 {header(0x02, big, m), header(0x00, big, m), header(0x80, 1, m)},
                 {allowed(h64, big), allowed(h64, big), allowed(m ? 6 : 2, 1)});
    }
}

TEST_CASE("frame_guard caps the fragments of a message, equal to and one past the cap", "[frames]") {
    for (const frame_role role : {frame_role::server, frame_role::client}) {
        const bool m = masked_for(role);
        const std::size_t h = m ? 6 : 2;
        for (std::uint32_t cap = 1; cap <= 5; ++cap) {
            CAPTURE(cap);
            // A message of exactly `cap` frames is allowed.
            std::vector<bytes> exact;
            std::vector<expectation> exact_wants;
            if (cap == 1) {
                exact.push_back(header(0x81, 1, m));
            } else {
                exact.push_back(header(0x01, 1, m));
                for (std::uint32_t i = 2; i < cap; ++i) exact.push_back(header(0x00, 1, m));
                exact.push_back(header(0x80, 1, m));
            }
            exact_wants.assign(exact.size(), allowed(h, 1));
            feed_all(make_limits(role, false, 1000, 0, cap), exact, exact_wants);
            // Its frame number cap + 1 is refused, final or not.
            for (const std::uint8_t last : {std::uint8_t{0x80}, std::uint8_t{0x00}}) {
                std::vector<bytes> over{header(0x01, 1, m)};
                for (std::uint32_t i = 1; i < cap; ++i) over.push_back(header(0x00, 1, m));
                std::vector<expectation> over_wants(over.size(), allowed(h, 1));
                over.push_back(header(last, 1, m));
                over_wants.push_back(refused(reason::too_many_fragments));
                feed_all(make_limits(role, false, 1000, 0, cap), over, over_wants);
            }
        }
    }
    CHECK(wsguard::close_code_of(reason::too_many_fragments) == 1008);
}

TEST_CASE("frame_guard needs no bytes to be safe: nullptr, zero size and reset", "[frames]") {
    frame_guard guard;
    CHECK(guard.limits().max_message_bytes == (std::uint64_t{1} << 20));
    CHECK(guard.limits().max_frame_bytes == 0);
    CHECK(guard.limits().role == frame_role::server);
    CHECK_FALSE(guard.limits().permessage_deflate);
    CHECK(guard.limits().max_fragments == 0);
    const frame_verdict v = guard.inspect(nullptr, 0);
    CHECK(v.need_more());
    CHECK(v.header_size == 2);
    CHECK(v.decision.close_code() == 1000);
    CHECK(guard.inspect(std::string_view{}).need_more());

    // string_view overload, the RFC's masked "Hello".
    const std::string hello("\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58", 11);
    const frame_verdict h = guard.inspect(std::string_view(hello));
    CHECK(h.allowed());
    CHECK(h.opcode == frame_opcode::text);
    CHECK(frame_opcode::text == h.opcode);
    CHECK(h.opcode != frame_opcode::binary);
    CHECK(h.header_size == 6);
    CHECK(h.payload_length == 5);

    // A refusal sticks until reset.
    const std::string unmasked("\x81\x05Hello", 7);
    CHECK(guard.inspect(std::string_view(unmasked)).decision.reason == reason::frame_not_masked);
    CHECK(guard.inspect(std::string_view(hello)).decision.reason == reason::frame_not_masked);
    guard.reset();
    CHECK(guard.refusal() == reason::ok);
    CHECK(guard.inspect(std::string_view(hello)).allowed());

    // reset also forgets a message in progress.
    const std::string start("\x01\x80\x37\xfa\x21\x3d", 6);
    CHECK(guard.inspect(std::string_view(start)).allowed());
    CHECK(guard.message_in_progress());
    guard.reset();
    CHECK_FALSE(guard.message_in_progress());
    CHECK(guard.inspect(std::string_view(hello)).allowed());
}

TEST_CASE("frame_limits is an aggregate with safe defaults", "[frames]") {
    const frame_limits positional{1000};
    CHECK(positional.max_message_bytes == 1000);
    CHECK(positional.max_frame_bytes == 0);
    CHECK(positional.role == frame_role::server);
    frame_limits assigned;
    assigned.max_message_bytes = 1000;
    frame_guard guard{assigned};
    CHECK(guard.limits().max_message_bytes == 1000);
    const frame_limits full{10, 5, frame_role::client, true, 3};
    CHECK(full.max_frame_bytes == 5);
    CHECK(full.max_fragments == 3);
#if __cplusplus >= 202002L
    const frame_limits designated{.max_message_bytes = 64, .role = frame_role::client};
    CHECK(designated.max_message_bytes == 64);
    CHECK(designated.role == frame_role::client);
    CHECK_FALSE(designated.permessage_deflate);
#endif
}

TEST_CASE("frame_guard walks a stream of frames as a server read loop does", "[frames]") {
    // RFC 6455 5.7: fragmented masked "Hel" "lo" with a ping in between, then a
    // masked "Hello"; the loop skips each payload and inspects the next header.
    const bytes stream = {0x01, 0x83, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d,        // "Hel"
                          0x89, 0x80, 0x37, 0xfa, 0x21, 0x3d,                          // ping
                          0x80, 0x82, 0x37, 0xfa, 0x21, 0x3d, 0x5b, 0x95,              // "lo"
                          0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58};  // "Hello"
    frame_guard guard;
    std::size_t at = 0;
    std::vector<std::uint8_t> opcodes;
    std::string text;
    while (at < stream.size()) {
        const frame_verdict v = guard.inspect(stream.data() + at, stream.size() - at);
        REQUIRE(v.allowed());
        opcodes.push_back(v.opcode);
        for (std::uint64_t i = 0; i < v.payload_length; ++i) {
            text.push_back(static_cast<char>(stream[at + v.header_size + i] ^ v.masking_key[i % 4]));
        }
        at += v.header_size + v.payload_length;
    }
    CHECK(at == stream.size());
    CHECK(opcodes == std::vector<std::uint8_t>{0x1, 0x9, 0x0, 0x1});
    CHECK(text == "HelloHello");
    CHECK(guard.inspect(stream.data() + at, 0).need_more());
}

TEST_CASE("frame_guard's need_more reports the header size as soon as byte 1 is seen", "[frames]") {
    frame_guard guard{make_limits(frame_role::server, false)};
    const bytes h = header(0x82, 70000, true);
    REQUIRE(h.size() == 14);
    CHECK(guard.inspect(h.data(), 1).header_size == 2);
    for (std::size_t k = 2; k < 14; ++k) {
        const frame_verdict v = guard.inspect(h.data(), k);
        CHECK(v.need_more());
        CHECK(v.header_size == 14);
    }
    CHECK(guard.inspect(h.data(), 14).allowed());
}

// --- inflate_budget

TEST_CASE("inflate_budget refuses limits that cannot work, with a readable error", "[frames][inflate]") {
    const auto zero_size = wsguard::inflate_budget::create({0, 100});
    CHECK_FALSE(zero_size);
    CHECK(zero_size.error().find("max_inflated_bytes") != std::string::npos);
    const auto zero_ratio = wsguard::inflate_budget::create(1000, 0);
    CHECK_FALSE(zero_ratio);
    CHECK(zero_ratio.error().find("max_ratio") != std::string::npos);
    const auto ok = wsguard::inflate_budget::create({1 << 20, 100});
    REQUIRE(ok);
    CHECK(ok.error().empty());
    CHECK(ok->limits().ratio_floor_bytes == 4096);
    const auto defaults = wsguard::inflate_budget::create(wsguard::inflate_limits{});
    REQUIRE(defaults);
    CHECK(defaults->limits().max_inflated_bytes == (std::uint64_t{1} << 20));
    CHECK(defaults->limits().max_ratio == 100);
}

TEST_CASE("inflate_budget stops at the size cap, equal allowed and one past refused", "[frames][inflate]") {
    const auto budget = wsguard::inflate_budget::create({1 << 20, 2000});
    REQUIRE(budget);
    CHECK(budget->check(1000, 1 << 20).allowed());
    const wsguard::decision over = budget->check(1000, (1 << 20) + 1);
    CHECK(over.reason == reason::inflate_too_large);
    CHECK(over.close_code() == 1009);
    CHECK(budget->check(0, 0).allowed());
}

TEST_CASE("inflate_budget stops a ratio past its bound once past the floor", "[frames][inflate]") {
    const auto budget = wsguard::inflate_budget::create({u64_max, 100});
    REQUIRE(budget);
    CHECK(budget->check(1000, 100000).allowed());
    const wsguard::decision over = budget->check(1000, 100001);
    CHECK(over.reason == reason::inflate_ratio_exceeded);
    CHECK(over.close_code() == 1009);
    // Tiny, very repetitive messages are allowed up to the floor.
    CHECK(budget->check(1, 4096).allowed());
    CHECK(budget->check(0, 4096).allowed());
    CHECK(budget->check(0, 4097).reason == reason::inflate_ratio_exceeded);
    CHECK(budget->check(41, 4097).allowed());
    CHECK(budget->check(40, 4097).reason == reason::inflate_ratio_exceeded);
    CHECK(budget->check(40, 4096).allowed());
    // The size cap is reported before the ratio.
    const auto small = wsguard::inflate_budget::create({5000, 10});
    REQUIRE(small);
    CHECK(small->check(1, 5001).reason == reason::inflate_too_large);
    CHECK(small->check(1, 4097).reason == reason::inflate_ratio_exceeded);
}

TEST_CASE("inflate_budget's ratio arithmetic cannot overflow", "[frames][inflate]") {
    const auto budget = wsguard::inflate_budget::create({u64_max, u64_max / 2 + 1});  // 2^63
    REQUIRE(budget);
    CHECK(budget->check(u64_max, u64_max).allowed());
    CHECK(budget->check(2, u64_max).allowed());  // 2 * 2^63 wraps to 0 in naive code
    CHECK(budget->check(1, u64_max).reason == reason::inflate_ratio_exceeded);
    CHECK(budget->max_output_for(u64_max) == u64_max);
    const auto capped = wsguard::inflate_budget::create({100000, 100});
    REQUIRE(capped);
    CHECK(capped->max_output_for(0) == 4096);
    CHECK(capped->max_output_for(500) == 50000);
    CHECK(capped->max_output_for(5000) == 100000);
    for (const std::uint64_t in : {0u, 1u, 40u, 41u, 500u, 999u, 1000u, 1001u, 5000u}) {
        CAPTURE(in);
        CHECK(capped->check(in, capped->max_output_for(in)).allowed());
        CHECK_FALSE(capped->check(in, capped->max_output_for(in) + 1).allowed());
    }
}

TEST_CASE("inflate_budget stops a simulated decompression bomb within one chunk", "[frames][inflate]") {
    // A bomb: every 16 compressed bytes inflate to 16 KiB (1024:1).
    const auto budget = wsguard::inflate_budget::create({1 << 20, 100});
    REQUIRE(budget);
    std::uint64_t in = 0, out = 0, chunks = 0;
    wsguard::decision verdict;
    while (verdict.allowed() && chunks < 1000000) {
        in += 16;
        out += 16 * 1024;
        ++chunks;
        verdict = budget->check(in, out);
    }
    CHECK(verdict.reason == reason::inflate_ratio_exceeded);
    CHECK(chunks == 1);  // 16 KiB from 16 bytes is past the floor and 1024:1
}
