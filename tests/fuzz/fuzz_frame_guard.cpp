// libFuzzer target for wsguard::frame_guard.
//
// The first 4 input bytes choose the limits (role, permessage-deflate, caps,
// fragments cap) and a chunking seed; the rest is a byte stream read as
// consecutive frames. For each frame the guard's answer on all available bytes
// is compared with
//  - an independent, straightforward model of RFC 6455 5.2 and the caps,
//  - the same guard fed the frame in random chunks (and byte by byte for the
//    header), asking again after every chunk: it must answer need_more until it
//    decides, then exactly what the whole feeding answered.
// After an allowed header the stream skips header_size + payload_length bytes
// (the payload is never inspected) and continues with the next frame, so the
// fragmentation state is exercised. Any disagreement aborts.
#include <wsguard.hpp>

#include <cstdint>
#include <cstdio>
#include <cstdlib>

namespace {

using wsguard::frame_guard;
using wsguard::frame_limits;
using wsguard::frame_role;
using wsguard::frame_verdict;
using wsguard::reason;

[[noreturn]] void fail(const char* what) {
    std::fprintf(stderr, "fuzz_frame_guard: %s\n", what);
    std::abort();
}
void require(bool ok, const char* what) {
    if (!ok) fail(what);
}

constexpr std::uint64_t u64_max = ~std::uint64_t{0};
constexpr std::uint64_t caps[] = {0, 1, 2, 10, 125, 126, 127, 1000, 65535, 65536, 65537, std::uint64_t{1} << 20,
                                  std::uint64_t{1} << 32, u64_max >> 1, u64_max - 1, u64_max};
constexpr std::uint32_t fragment_caps[] = {0, 1, 2, 3, 5, 100, 0, 0};

// The model: the rules in the documented priority, each looking only at the
// bytes it needs; written independently of the guard, as plainly as possible.
struct model {
    frame_limits limits;
    bool in_message = false;
    std::uint64_t total = 0;
    std::uint64_t count = 0;
    reason stuck = reason::ok;

    struct answer {
        frame_verdict::state status;
        reason why;
        std::size_t header_size;
        std::uint64_t length;
    };

    answer refuse(reason r) {
        stuck = r;
        return {frame_verdict::state::refused, r, 0, 0};
    }

    answer step(const std::uint8_t* p, std::size_t n) {
        if (stuck != reason::ok) return {frame_verdict::state::refused, stuck, 0, 0};
        if (n < 1) return {frame_verdict::state::need_more, reason::ok, 2, 0};
        const int op = p[0] % 16;
        const bool fin = p[0] >= 128;
        const bool r1 = (p[0] / 64) % 2 == 1, r2 = (p[0] / 32) % 2 == 1, r3 = (p[0] / 16) % 2 == 1;
        const bool is_data = op == 0 || op == 1 || op == 2;
        const bool is_control = op == 8 || op == 9 || op == 10;
        if (!is_data && !is_control) return refuse(reason::frame_reserved_opcode);
        if (r2 || r3) return refuse(reason::frame_reserved_bits);
        if (r1 && !(limits.permessage_deflate && (op == 1 || op == 2))) return refuse(reason::frame_reserved_bits);
        if (is_control && !fin) return refuse(reason::control_frame_fragmented);
        if (op == 0 && !in_message) return refuse(reason::unexpected_continuation);
        if (op != 0 && is_data && in_message) return refuse(reason::expected_continuation);
        if (n < 2) return {frame_verdict::state::need_more, reason::ok, 2, 0};
        const bool mask = p[1] >= 128;
        const int len7 = p[1] % 128;
        if (limits.role == frame_role::client && mask) return refuse(reason::frame_masked);
        if (limits.role != frame_role::client && !mask) return refuse(reason::frame_not_masked);
        if (is_control && len7 >= 126) return refuse(reason::control_frame_too_long);
        if (op == 8 && len7 == 1) return refuse(reason::close_frame_length_one);
        std::size_t extended = 0;
        if (len7 == 126) extended = 2;
        if (len7 == 127) extended = 8;
        const std::size_t hsize = 2 + extended + (mask ? 4 : 0);
        if (len7 == 127 && n >= 3 && p[2] >= 128) return refuse(reason::frame_length_msb_set);
        if (n < 2 + extended) return {frame_verdict::state::need_more, reason::ok, hsize, 0};
        std::uint64_t length = static_cast<std::uint64_t>(len7);
        if (extended != 0) {
            length = 0;
            for (std::size_t i = 0; i < extended; ++i) length = length * 256 + p[2 + i];
            if (extended == 2 && length <= 125) return refuse(reason::frame_length_not_minimal);
            if (extended == 8 && length <= 65535) return refuse(reason::frame_length_not_minimal);
        }
        if (is_data) {
            const std::uint64_t frame_cap = limits.max_frame_bytes == 0 ? limits.max_message_bytes : limits.max_frame_bytes;
            if (length > frame_cap) return refuse(reason::frame_too_large);
            // total <= max_message_bytes always holds, so this compares the true sum.
            if (total > limits.max_message_bytes || length > limits.max_message_bytes - total) {
                return refuse(reason::message_too_large);
            }
            if (limits.max_fragments != 0 && count + 1 > limits.max_fragments) return refuse(reason::too_many_fragments);
        }
        if (n < hsize) return {frame_verdict::state::need_more, reason::ok, hsize, 0};
        if (is_data) {
            if (fin) {
                in_message = false;
                total = 0;
                count = 0;
            } else {
                in_message = true;
                total += length;
                count += 1;
            }
        }
        return {frame_verdict::state::allowed, reason::ok, hsize, length};
    }
};

frame_verdict::state state_of(const frame_verdict& v) {
    return v.need_more() ? frame_verdict::state::need_more
                         : v.allowed() ? frame_verdict::state::allowed : frame_verdict::state::refused;
}

void same(const frame_verdict& a, const frame_verdict& b, const char* what) {
    require(a.need_more() == b.need_more() && a.allowed() == b.allowed() && a.decision.reason == b.decision.reason &&
                a.header_size == b.header_size &&
                a.payload_length == b.payload_length && a.opcode == b.opcode && a.fin == b.fin && a.rsv1 == b.rsv1 &&
                a.masked == b.masked && a.message_opcode == b.message_opcode &&
                a.message_compressed == b.message_compressed && a.masking_key == b.masking_key,
            what);
}

struct rng {
    std::uint32_t state;
    std::uint32_t next() {
        state = state * 1664525u + 1013904223u;
        return state >> 8;
    }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < 4) return 0;
    frame_limits limits;
    limits.role = (data[0] & 1) != 0 ? frame_role::client : frame_role::server;
    limits.permessage_deflate = (data[0] & 2) != 0;
    limits.max_fragments = fragment_caps[(data[0] >> 2) & 7];
    limits.max_message_bytes = caps[data[1] & 15];
    limits.max_frame_bytes = (data[1] & 16) != 0 ? caps[data[2] & 15] : 0;
    rng chunks{static_cast<std::uint32_t>(data[3]) * 2654435761u + 1u};
    const bool byte_by_byte = (data[2] & 16) != 0;
    data += 4;
    size -= 4;

    frame_guard guard{limits};
    model reference{limits};
    std::size_t at = 0;
    for (int frames = 0; frames < 100000; ++frames) {
        const std::uint8_t* p = data + at;
        const std::size_t left = size - at;
        const frame_guard before = guard;
        const std::uint64_t bytes_before = guard.message_bytes();

        const frame_verdict whole = guard.inspect(p, left);
        const model::answer want = reference.step(p, left);
        require(state_of(whole) == want.status, "state differs from the model");
        require(whole.decision.reason == want.why, "reason differs from the model");
        require(whole.header_size == want.header_size, "header_size differs from the model");
        require(whole.payload_length == want.length, "payload_length differs from the model");
        require(whole.decision.close_code() == (whole.refused() ? wsguard::close_code_of(want.why) : 1000), "close code");

        // Chunked feeding on a copy: need_more until it decides, then the same.
        frame_guard chunked = before;
        std::size_t fed = 0;
        frame_verdict last = chunked.inspect(p, 0);
        while (last.need_more() && fed < left) {
            const std::size_t step = byte_by_byte ? 1 : 1 + chunks.next() % 7;
            fed = step > left - fed ? left : fed + step;
            last = chunked.inspect(p, fed);
            if (last.need_more()) {
                require(fed < last.header_size, "need_more with the whole header present");
                const frame_verdict again = chunked.inspect(p, fed);
                require(again.need_more() && again.header_size == last.header_size, "need_more is not idempotent");
            }
        }
        same(last, whole, "chunked feeding disagrees with whole feeding");
        if (whole.allowed()) {
            require(fed >= whole.header_size, "allowed before the header was complete");
            const std::size_t expected = (whole.payload_length < 126 ? 2 : whole.payload_length <= 0xFFFF ? 4 : 10) +
                                         (whole.masked ? 4 : 0);
            require(whole.header_size == expected, "header size is not the minimal form");
            require(whole.masked == (limits.role == frame_role::server), "mask direction");
        }
        require(chunked.message_bytes() == guard.message_bytes(), "chunked state differs");
        require(chunked.message_fragments() == guard.message_fragments(), "chunked fragments differ");
        require(chunked.refusal() == guard.refusal(), "chunked refusal differs");

        if (whole.need_more()) {
            require(guard.message_bytes() == bytes_before && guard.refusal() == reason::ok, "need_more changed the state");
            break;
        }
        if (whole.refused()) {
            const frame_verdict again = guard.inspect(p, left);
            require(again.refused() && again.decision.reason == whole.decision.reason, "refusal is not sticky");
            require(guard.inspect(nullptr, 0).decision.reason == whole.decision.reason, "refusal is not sticky on no bytes");
            break;
        }
        // Allowed: the caps hold, then skip the payload.
        if (whole.is_control()) {
            require(whole.payload_length <= 125 && whole.fin, "control frame rules");
        } else {
            require(guard.message_bytes() <= limits.max_message_bytes, "message over its cap");
            const std::uint64_t frame_cap = limits.max_frame_bytes != 0 ? limits.max_frame_bytes : limits.max_message_bytes;
            require(whole.payload_length <= frame_cap, "frame over its cap");
            if (limits.max_fragments != 0) require(guard.message_fragments() <= limits.max_fragments, "fragments cap");
        }
        const std::size_t after_header = left - whole.header_size;
        const std::uint64_t skip = whole.payload_length < after_header ? whole.payload_length : after_header;
        at += whole.header_size + static_cast<std::size_t>(skip);
        if (at >= size) {
            // No bytes left: the next inspect must ask for more.
            require(guard.inspect(data + at, 0).need_more(), "no bytes must be need_more");
            break;
        }
    }
    return 0;
}
