#include <wsguard.hpp>
#include <arpa/inet.h>
#include <cstdio>
#include <cstdlib>
#include <string>
// Differential: address_key::from_text against glibc inet_pton on bare addresses.
extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    std::string_view text(reinterpret_cast<const char*>(data), size);
    const wsguard::address_key_options exact{32, 128};
    auto ours = wsguard::address_key::from_text(text, exact);
    (void)wsguard::address_key::from_endpoint_text(text);
    (void)wsguard::address_key::from_text(text);
    if (text.find_first_of("[]%") != std::string_view::npos || text.find('\0') != std::string_view::npos) return 0;
    std::string s(text);
    unsigned char v4[4], v6[16];
    const bool is4 = inet_pton(AF_INET, s.c_str(), v4) == 1;
    const bool is6 = inet_pton(AF_INET6, s.c_str(), v6) == 1;
    if (ours.has_value() != (is4 || is6)) {
        std::fprintf(stderr, "mismatch on '%s': ours %d pton4 %d pton6 %d\n", s.c_str(), ours.has_value(), is4, is6);
        std::abort();
    }
    if (ours) {
        auto theirs = is4 ? wsguard::address_key::from_bytes(v4, 4, exact) : wsguard::address_key::from_bytes(v6, 16, exact);
        if (!theirs || *theirs != *ours) { std::fprintf(stderr, "bytes differ on '%s'\n", s.c_str()); std::abort(); }
    }
    return 0;
}
