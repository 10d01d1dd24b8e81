// For benchmarks that call handshake_guard::check in process: ticketed
// upgrade requests from synthetic clients, 10.x.y.z, drawn at random (a fixed
// LCG, so every build sees the same sequence) from a given number of addresses.
#ifndef WSGUARD_BENCH_UPGRADE_HPP
#define WSGUARD_BENCH_UPGRADE_HPP

#include <wsguard.hpp>

#include <cstdint>
#include <string_view>

namespace wsguard_bench {

class synthetic_clients {
public:
    // `addresses`: how many distinct clients, at most 2^24 (10.0.0.0/8).
    explicit synthetic_clients(std::uint32_t addresses) noexcept : addresses_(addresses) {}

    // GET /ws from the next client, with the given Origin, Host and
    // Sec-WebSocket-Protocol ("wsguard.v1, <ticket>"). The request borrows the
    // three views and this object's address bytes: use it before the next call.
    wsguard::upgrade_request next(std::string_view origin, std::string_view host, std::string_view protocol) noexcept {
        state_ = state_ * 6364136223846793005ull + 1442695040888963407ull;
        const std::uint32_t v4 = 0x0a000000u | static_cast<std::uint32_t>((state_ >> 33) % addresses_);
        bytes_[0] = static_cast<std::uint8_t>(v4 >> 24);
        bytes_[1] = static_cast<std::uint8_t>(v4 >> 16);
        bytes_[2] = static_cast<std::uint8_t>(v4 >> 8);
        bytes_[3] = static_cast<std::uint8_t>(v4);
        wsguard::upgrade_request up;
        up.method = "GET";
        up.path = "/ws";
        up.origin = origin;
        up.host = host;
        up.sec_websocket_protocol = protocol;
        up.remote_address_bytes = bytes_;
        up.remote_address_size = sizeof bytes_;
        return up;
    }

private:
    std::uint32_t addresses_;
    std::uint64_t state_ = 0x9e3779b97f4a7c15ull;
    std::uint8_t bytes_[4] = {};
};

}  // namespace wsguard_bench

#endif
