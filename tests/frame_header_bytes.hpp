// The bytes of one WebSocket frame header (RFC 6455 section 5.2), for the frame
// tests and the frame benchmark: minimal length encoding, and the masking key
// when masked. Shared so both feed frame_guard exactly the same headers.
#ifndef WSGUARD_TESTS_FRAME_HEADER_BYTES_HPP
#define WSGUARD_TESTS_FRAME_HEADER_BYTES_HPP

#include <cstdint>
#include <vector>

namespace wsguard_test {

// The masking key every masked header carries.
inline constexpr std::uint8_t frame_mask_key[4] = {0x37, 0xfa, 0x21, 0x3d};

inline std::vector<std::uint8_t> frame_header_bytes(std::uint8_t first_byte, std::uint64_t length, bool masked) {
    std::vector<std::uint8_t> h{first_byte};
    const std::uint8_t mask_bit = masked ? 0x80 : 0x00;
    if (length < 126) {
        h.push_back(static_cast<std::uint8_t>(mask_bit | length));
    } else if (length <= 0xFFFF) {
        h.push_back(mask_bit | 126);
        h.push_back(static_cast<std::uint8_t>(length >> 8));
        h.push_back(static_cast<std::uint8_t>(length));
    } else {
        h.push_back(mask_bit | 127);
        for (int shift = 56; shift >= 0; shift -= 8) h.push_back(static_cast<std::uint8_t>(length >> shift));
    }
    if (masked) h.insert(h.end(), frame_mask_key, frame_mask_key + 4);
    return h;
}

}  // namespace wsguard_test

#endif
