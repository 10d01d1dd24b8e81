// Section 7 of wsguard.hpp (inlined into the release header). Not a public header.
// ===========================================================================
// 7. Frames: frame_guard, inflate_budget
// ===========================================================================
//
// frame_guard reads the first bytes of each RFC 6455 frame (2 to 14 bytes of
// header) and decides, before any payload is buffered, whether the frame may be
// read at all: masking direction, RSV bits, opcodes, control-frame rules,
// minimal length encoding, fragmentation order (close 1002), frame and message
// size caps (1009) and an optional fragments-per-message cap (1008).
// inflate_budget stops a permessage-deflate decompression bomb while it inflates.
#ifndef WSGUARD_HPP
#error "include <wsguard.hpp>, not this file"
#endif

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <string_view>

namespace wsguard {
inline namespace WSGUARD_ABI_NS {

// Which side of the connection the guard sits on. A server receives client
// frames, which RFC 6455 5.1 requires to be masked; a client receives server
// frames, which must not be.
enum class frame_role : std::uint8_t { server = 0, client = 1 };

// The 4-bit opcodes RFC 6455 5.2 defines. frame_verdict::opcode holds the raw
// value; it compares directly with these (verdict.opcode == frame_opcode::text).
enum class frame_opcode : std::uint8_t {
    continuation = 0x0,
    text = 0x1,
    binary = 0x2,
    close = 0x8,
    ping = 0x9,
    pong = 0xA,
};
constexpr bool operator==(std::uint8_t raw, frame_opcode op) noexcept { return raw == static_cast<std::uint8_t>(op); }
constexpr bool operator==(frame_opcode op, std::uint8_t raw) noexcept { return raw == op; }
constexpr bool operator!=(std::uint8_t raw, frame_opcode op) noexcept { return !(raw == op); }
constexpr bool operator!=(frame_opcode op, std::uint8_t raw) noexcept { return !(raw == op); }

// What the guard enforces on the frames it receives. An aggregate: either
// `frame_limits limits; limits.max_message_bytes = 1000;` or `frame_limits{1000}`.
// Every value is meaningful, so there is nothing to validate.
struct frame_limits {
    // Cap on one data message: the sum of its fragments' payloads (before any
    // permessage-deflate inflation; see inflate_budget for the inflated size).
    // Default 1 MiB. 0 allows only empty messages.
    std::uint64_t max_message_bytes = std::uint64_t{1} << 20;
    // Cap on one data frame's payload; 0 means "same as max_message_bytes".
    // Control frames are bounded by RFC 6455 (125 bytes) and not by these caps,
    // so a close handshake with a reason text always gets through.
    std::uint64_t max_frame_bytes = 0;
    // server: receive client frames (must be masked). client: the reverse.
    frame_role role = frame_role::server;
    // permessage-deflate (RFC 7692) was negotiated: RSV1 is then allowed on the
    // first frame of a data message (text or binary), never on a continuation
    // or a control frame. RSV2 and RSV3 stay refused.
    bool permessage_deflate = false;
    // Cap on the frames of one data message, the first one included; 0 = no cap.
    std::uint32_t max_fragments = 0;
};

// The answer to one frame_guard::inspect call: need more bytes, allowed (the
// header is valid and complete), or refused (close the connection with
// close_code()).
class [[nodiscard]] frame_verdict {
public:
    enum class state : std::uint8_t { need_more = 0, allowed = 1, refused = 2 };

    // Why the frame was refused; reason::ok while need_more and when allowed.
    wsguard::reason reason = wsguard::reason::ok;
    state status = state::need_more;

    // When allowed(): the raw opcode (compare with frame_opcode), FIN, RSV1
    // (a compressed message under permessage-deflate) and the mask bit.
    std::uint8_t opcode = 0;
    bool fin = false;
    bool rsv1 = false;
    bool masked = false;
    // When allowed() and the frame belongs to a data message: the opcode of its
    // first frame (text or binary, also for continuations) and whether that
    // frame had RSV1 set (the message is compressed). For control frames, the
    // control opcode and false.
    std::uint8_t message_opcode = 0;
    bool message_compressed = false;
    // When allowed(): the masking key (zeros when the frame is not masked).
    std::array<std::uint8_t, 4> masking_key{};
    // When allowed(): bytes of header, masking key included (2, 4, 6, 8, 10 or
    // 14); the payload starts at data + header_size.
    // While need_more(): how many bytes the header needs at least (2 until the
    // second byte is seen, then the exact header size), so a reader can wait for
    // that many. 0 on refusal.
    std::size_t header_size = 0;
    // When allowed(): the payload length, already checked against the caps.
    std::uint64_t payload_length = 0;

    constexpr bool need_more() const noexcept { return status == state::need_more; }
    constexpr bool allowed() const noexcept { return status == state::allowed; }
    constexpr bool refused() const noexcept { return status == state::refused; }
    constexpr explicit operator bool() const noexcept { return allowed(); }
    // The close code to send: 1002, 1008 or 1009 on refusal; 0 otherwise
    // (nothing to close, unlike decision::close_code() which says 1000 for ok).
    constexpr int close_code() const noexcept { return refused() ? close_code_of(reason) : 0; }
    // As a decision, e.g. for logging with the other checks. need_more maps to
    // an allowing decision: nothing has been refused yet.
    constexpr wsguard::decision decision() const noexcept { return wsguard::decision{reason}; }
    constexpr bool is_control() const noexcept { return (opcode & 0x8) != 0; }
};

namespace detail {

// The first bytes a frame may start with, as a 64-bit set indexed by
// FIN, RSV1 and the opcode (bit FIN<<5 | RSV1<<4 | opcode): RFC 6455 5.2-5.5
// for a guard with or without permessage-deflate, inside or outside a
// fragmented message. RSV2 and RSV3 are never allowed and tested apart.
constexpr std::uint64_t frame_legal_first_bytes(bool deflate, bool in_message) noexcept {
    std::uint64_t legal = 0;
    for (unsigned index = 0; index < 64; ++index) {
        const bool fin = (index & 0x20u) != 0;
        const bool rsv1 = (index & 0x10u) != 0;
        const unsigned opcode = index & 0x0Fu;
        const bool control = opcode == 0x8 || opcode == 0x9 || opcode == 0xA;
        const bool starts_message = opcode == 0x1 || opcode == 0x2;
        bool ok = control ? fin : (opcode == 0x0 ? in_message : starts_message && !in_message);
        if (rsv1 && !(deflate && starts_message)) ok = false;
        if (ok) legal |= std::uint64_t{1} << index;
    }
    return legal;
}

// [permessage_deflate][in_message]
inline constexpr std::uint64_t frame_legal_first_bytes_table[2][2] = {
    {frame_legal_first_bytes(false, false), frame_legal_first_bytes(false, true)},
    {frame_legal_first_bytes(true, false), frame_legal_first_bytes(true, true)},
};

constexpr unsigned frame_first_byte_index(std::uint8_t b0) noexcept {
    return ((b0 >> 2) & 0x30u) | (b0 & 0x0Fu);  // FIN (bit 7) and RSV1 (bit 6) move to bits 5 and 4
}

}  // namespace detail

// Inspects the header of every frame a connection receives, in order, and keeps
// the message state across frames (fragmentation, cumulative size, fragment
// count). One guard per connection and direction; not thread-safe (a
// connection's reads are sequential). Never allocates, never throws.
class frame_guard {
public:
    frame_guard() noexcept : frame_guard(frame_limits{}) {}
    explicit frame_guard(const frame_limits& limits) noexcept
        : limits_(limits),
          frame_cap_(limits.max_frame_bytes != 0 ? limits.max_frame_bytes : limits.max_message_bytes),
          fragment_cap_(limits.max_fragments != 0 ? limits.max_fragments : std::numeric_limits<std::uint64_t>::max()),
          mask_bit_(limits.role == frame_role::client ? 0x00 : 0x80) {
        start_message_state();
    }

    // `data` holds the bytes available from the start of the next frame (any
    // number, possibly 0, possibly more than the header). Answers:
    // - need_more(): no violation yet, the header is incomplete. Nothing
    //   changed: call again with the same bytes plus more.
    // - allowed(): the header is valid and complete (size >= header_size).
    //   The guard has now accounted for this frame: consume header_size +
    //   payload_length bytes, then call inspect for the next frame.
    // - refused(): fail the connection with close_code(). Sticky: every later
    //   call answers the same refusal until reset().
    // A refusal comes as soon as the bytes seen prove a violation (a bad opcode
    // after 1 byte, a bad mask bit after 2, a bad length after 2, 3, 4 or 10),
    // never before; the payload is never needed. When a header breaks several
    // rules, RFC 6455 violations (1002) win over caps, in byte order, then
    // frame_too_large, message_too_large, too_many_fragments; so every prefix of
    // the header answers need_more or the very refusal the whole header gets.
    frame_verdict inspect(const std::uint8_t* data, std::size_t size) noexcept;
    frame_verdict inspect(std::string_view bytes) noexcept {
        return inspect(reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size());
    }

    // Back to a fresh connection's state (no message, no refusal); limits kept.
    void reset() noexcept { *this = frame_guard(limits_); }

    const frame_limits& limits() const noexcept { return limits_; }
    // A fragmented data message is in progress (its final frame not yet seen).
    bool message_in_progress() const noexcept { return message_opcode_ != 0; }
    // Payload bytes and frames of the message in progress (0 when none).
    std::uint64_t message_bytes() const noexcept { return message_bytes_; }
    std::uint64_t message_fragments() const noexcept { return message_fragments_; }
    // The sticky refusal, or reason::ok.
    wsguard::reason refusal() const noexcept { return refusal_; }

private:
    frame_verdict refuse(wsguard::reason r) noexcept {
        refusal_ = r;
        legal_first_bytes_ = 0;  // every later frame takes the slow path, which repeats r
        frame_verdict v;
        v.reason = r;
        v.status = frame_verdict::state::refused;
        return v;
    }
    wsguard::reason first_byte_violation(std::uint8_t b0) const noexcept;
    void start_message_state() noexcept {
        message_opcode_ = 0;
        message_compressed_ = false;
        message_bytes_ = 0;
        message_fragments_ = 0;
        data_room_ = frame_cap_ < limits_.max_message_bytes ? frame_cap_ : limits_.max_message_bytes;
        legal_first_bytes_ = detail::frame_legal_first_bytes_table[limits_.permessage_deflate][0];
    }

    frame_limits limits_;
    // Derived from limits_ once, for the hot path.
    std::uint64_t frame_cap_;
    std::uint64_t fragment_cap_;
    std::uint8_t mask_bit_;  // the mask bit every received frame must carry
    // Message state. Invariants: message_bytes_ <= max_message_bytes and
    // data_room_ == min(frame_cap_, max_message_bytes - message_bytes_), the
    // largest data frame allowed next.
    std::uint8_t message_opcode_ = 0;  // text or binary while a message is in progress, else 0
    bool message_compressed_ = false;
    wsguard::reason refusal_ = wsguard::reason::ok;
    std::uint64_t message_bytes_ = 0;
    std::uint64_t message_fragments_ = 0;
    std::uint64_t data_room_ = 0;
    std::uint64_t legal_first_bytes_ = 0;  // frame_legal_first_bytes for the state; 0 once refused
};

// The precise reason for a first byte the fast test rejected, in the
// documented order. Kept apart so the common path is one table test.
inline wsguard::reason frame_guard::first_byte_violation(std::uint8_t b0) const noexcept {
    if (refusal_ != wsguard::reason::ok) return refusal_;
    const unsigned opcode = b0 & 0x0Fu;
    const bool starts_message = opcode == 0x1 || opcode == 0x2;
    // Defined opcodes 0, 1, 2, 8, 9, A as a bit set; 3-7 and B-F are reserved.
    if (((0x0707u >> opcode) & 1u) == 0) return wsguard::reason::frame_reserved_opcode;
    if ((b0 & 0x30) != 0) return wsguard::reason::frame_reserved_bits;
    if ((b0 & 0x40) != 0 && !(limits_.permessage_deflate && starts_message)) return wsguard::reason::frame_reserved_bits;
    if ((b0 & 0x88) == 0x08) return wsguard::reason::control_frame_fragmented;
    if (opcode == 0x0 && message_opcode_ == 0) return wsguard::reason::unexpected_continuation;
    if (starts_message && message_opcode_ != 0) return wsguard::reason::expected_continuation;
    return wsguard::reason::internal_error;  // unreachable: the table and this list agree (tested)
}

inline frame_verdict frame_guard::inspect(const std::uint8_t* data, std::size_t size) noexcept {
    frame_verdict v;
    v.header_size = 2;
    if (size == 0) return refusal_ == wsguard::reason::ok ? v : refuse(refusal_);

    // Byte 0: FIN, RSV1-3, opcode. One table test for the common case (and for
    // a sticky refusal, whose table is empty).
    const std::uint8_t b0 = data[0];
    if (((legal_first_bytes_ >> detail::frame_first_byte_index(b0)) & 1u) == 0 || (b0 & 0x30) != 0) {
        return refuse(first_byte_violation(b0));
    }
    if (size < 2) return v;

    // Byte 1: mask bit and the 7-bit length (126: a 16-bit length follows,
    // 127: a 64-bit length follows).
    const std::uint8_t b1 = data[1];
    const unsigned opcode = b0 & 0x0Fu;
    const bool control = (b0 & 0x08) != 0;
    if ((b1 & 0x80) != mask_bit_) {
        return refuse(mask_bit_ != 0 ? wsguard::reason::frame_not_masked : wsguard::reason::frame_masked);
    }
    const std::uint8_t length7 = b1 & 0x7F;
    if (control) {
        if (length7 > 125) return refuse(wsguard::reason::control_frame_too_long);
        if (length7 == 1 && opcode == 0x8) return refuse(wsguard::reason::close_frame_length_one);
    }
    const std::size_t length_end = length7 == 127 ? 10 : length7 == 126 ? 4 : 2;
    const std::size_t header_size = length_end + (mask_bit_ != 0 ? 4 : 0);
    v.header_size = header_size;
    if (size < length_end) {
        // The top bit of a 64-bit length is in byte 2: refuse it without waiting.
        if (length7 == 127 && size > 2 && (data[2] & 0x80) != 0) return refuse(wsguard::reason::frame_length_msb_set);
        return v;
    }

    std::uint64_t length = length7;
    if (length7 == 126) {
        length = (std::uint64_t{data[2]} << 8) | data[3];
        if (length < 126) return refuse(wsguard::reason::frame_length_not_minimal);
    } else if (length7 == 127) {
        if ((data[2] & 0x80) != 0) return refuse(wsguard::reason::frame_length_msb_set);
        length = 0;
        for (std::size_t i = 2; i < 10; ++i) length = (length << 8) | data[i];
        if (length <= 0xFFFF) return refuse(wsguard::reason::frame_length_not_minimal);
    }

    // Caps apply to data frames; control frames are already at most 125 bytes.
    if (!control) {
        if (length > data_room_) {
            return refuse(length > frame_cap_ ? wsguard::reason::frame_too_large : wsguard::reason::message_too_large);
        }
        if (message_fragments_ >= fragment_cap_) return refuse(wsguard::reason::too_many_fragments);
    }
    if (size < header_size) return v;

    // Allowed: account for the frame. Control frames leave the message alone.
    const bool fin = (b0 & 0x80) != 0;
    v.status = frame_verdict::state::allowed;
    v.opcode = static_cast<std::uint8_t>(opcode);
    v.fin = fin;
    v.rsv1 = (b0 & 0x40) != 0;
    v.masked = mask_bit_ != 0;
    v.payload_length = length;
    if (mask_bit_ != 0) std::memcpy(v.masking_key.data(), data + length_end, 4);
    if (control) {
        v.message_opcode = static_cast<std::uint8_t>(opcode);
        return v;
    }
    if (opcode != 0x0) {
        message_opcode_ = static_cast<std::uint8_t>(opcode);
        message_compressed_ = v.rsv1;
    }
    v.message_opcode = message_opcode_;
    v.message_compressed = message_compressed_;
    if (fin) {
        message_opcode_ = 0;
        message_compressed_ = false;
        if (message_fragments_ != 0) start_message_state();
    } else {
        if (message_fragments_ == 0) legal_first_bytes_ = detail::frame_legal_first_bytes_table[limits_.permessage_deflate][1];
        ++message_fragments_;
        message_bytes_ += length;
        const std::uint64_t message_room = limits_.max_message_bytes - message_bytes_;
        data_room_ = frame_cap_ < message_room ? frame_cap_ : message_room;
    }
    return v;
}

// Caps for inflating one permessage-deflate message.
struct inflate_limits {
    // Cap on the inflated size of one message. Default 1 MiB.
    std::uint64_t max_inflated_bytes = std::uint64_t{1} << 20;
    // Cap on inflated / compressed. Deflate reaches about 1032:1 on a bomb;
    // ordinary text and JSON stay well under 20:1. Default 100.
    std::uint64_t max_ratio = 100;
    // The ratio is enforced only once the inflated size passes this many bytes,
    // so tiny, very repetitive messages (a 10-byte frame inflating to 2 KiB)
    // are not refused. Default 4 KiB.
    std::uint64_t ratio_floor_bytes = 4096;
};

// Decides, after each chunk a server inflates, whether to keep inflating. The
// caller passes the running totals for the message (compressed bytes consumed,
// inflated bytes produced); a bomb is stopped after at most one output chunk
// past the budget. Stateless and const: one budget serves every connection.
class inflate_budget {
public:
    // Validates the limits; the error says which one is wrong.
    static result<inflate_budget> create(const inflate_limits& limits) {
        if (limits.max_inflated_bytes == 0) {
            return result<inflate_budget>::failure("inflate_budget: max_inflated_bytes must be greater than 0");
        }
        if (limits.max_ratio == 0) {
            return result<inflate_budget>::failure(
                "inflate_budget: max_ratio must be at least 1 (inflated bytes per compressed byte)");
        }
        return result<inflate_budget>::success(inflate_budget(limits));
    }
    static result<inflate_budget> create(std::uint64_t max_inflated_bytes, std::uint64_t max_ratio) {
        inflate_limits limits;
        limits.max_inflated_bytes = max_inflated_bytes;
        limits.max_ratio = max_ratio;
        return create(limits);
    }

    // Refuses with inflate_too_large once inflated_out passes max_inflated_bytes,
    // else with inflate_ratio_exceeded once inflated_out passes ratio_floor_bytes
    // and inflated_out > compressed_in * max_ratio (exact integer arithmetic,
    // no overflow). Equal to a bound is allowed.
    wsguard::decision check(std::uint64_t compressed_in, std::uint64_t inflated_out) const noexcept {
        if (inflated_out > limits_.max_inflated_bytes) return wsguard::decision::deny(wsguard::reason::inflate_too_large);
        if (inflated_out > limits_.ratio_floor_bytes && inflated_out > ratio_bound(compressed_in)) {
            return wsguard::decision::deny(wsguard::reason::inflate_ratio_exceeded);
        }
        return wsguard::decision::allow();
    }

    // The largest inflated_out that check(compressed_in, ...) allows: size the
    // next inflate output chunk to at most (this - produced so far) + 1 bytes
    // and a bomb never gets further than one byte past the budget.
    std::uint64_t max_output_for(std::uint64_t compressed_in) const noexcept {
        std::uint64_t bound = ratio_bound(compressed_in);
        if (bound < limits_.ratio_floor_bytes) bound = limits_.ratio_floor_bytes;
        return bound < limits_.max_inflated_bytes ? bound : limits_.max_inflated_bytes;
    }

    const inflate_limits& limits() const noexcept { return limits_; }

private:
    explicit inflate_budget(const inflate_limits& limits) noexcept : limits_(limits) {}

    // compressed_in * max_ratio, saturating (a saturated bound allows any size).
    std::uint64_t ratio_bound(std::uint64_t compressed_in) const noexcept {
        const std::uint64_t max = std::numeric_limits<std::uint64_t>::max();
        return compressed_in > max / limits_.max_ratio ? max : compressed_in * limits_.max_ratio;
    }

    inflate_limits limits_;
};

}  // inline namespace WSGUARD_ABI_NS
}  // namespace wsguard
