// base64url_decode on arbitrary input: when it accepts, re-encoding gives back
// exactly the input (canonical); it accepts exactly what a naive reference
// decoder accepts; the public decoder (SIMD where the CPU has it) and its
// scalar path agree with it; it never writes past the capacity it was given (the output
// buffers are exactly sized heap blocks, so ASan sees any overflow); and
// encoding arbitrary bytes always decodes back to them.
#include <wsguard.hpp>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>

namespace {

[[noreturn]] void fail(const char* what) {
    std::fputs(what, stderr);
    std::fputc('\n', stderr);
    std::abort();
}

// Obviously-right reference: -1 for a character outside the URL alphabet.
int reference_value(unsigned char c) {
    const char* alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    for (int i = 0; i < 64; ++i) {
        if (alphabet[i] == static_cast<char>(c)) return i;
    }
    return -1;
}

bool reference_accepts(std::string_view in) {
    if (in.size() % 4 == 1) return false;
    for (char c : in) {
        if (reference_value(static_cast<unsigned char>(c)) < 0) return false;
    }
    const int last = in.empty() ? 0 : reference_value(static_cast<unsigned char>(in.back()));
    if (in.size() % 4 == 2 && (last & 0x0F) != 0) return false;  // 4 unused bits
    if (in.size() % 4 == 3 && (last & 0x03) != 0) return false;  // 2 unused bits
    return true;
}

std::unique_ptr<std::uint8_t[]> exact_buffer(std::size_t size) {
    return std::unique_ptr<std::uint8_t[]>(new std::uint8_t[size == 0 ? 1 : size]);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view text(reinterpret_cast<const char*>(data), size);
    const std::size_t capacity = wsguard::base64url_max_decoded_size(size);

    // Exactly the capacity the input can need.
    std::unique_ptr<std::uint8_t[]> out = exact_buffer(capacity);
    std::size_t out_size = 12345;
    const bool accepted = wsguard::base64url_decode(text, out.get(), capacity, out_size);
    if (accepted != reference_accepts(text)) fail("decode disagrees with the reference");
    if (accepted) {
        if (out_size != capacity) fail("decoded size is not the exact size");
        if (wsguard::base64url_encode(out.get(), out_size) != text) fail("accepted a non-canonical encoding");
    } else if (out_size != 0) {
        fail("out_size not reset on refusal");
    }

    // The fast decoder for public input (tickets) must agree exactly.
    {
        std::unique_ptr<std::uint8_t[]> fast = exact_buffer(capacity);
        std::size_t fast_size = 12345;
        if (wsguard::detail::base64url_decode_public(text, fast.get(), capacity, fast_size) != accepted ||
            (accepted && (fast_size != out_size || std::memcmp(fast.get(), out.get(), out_size) != 0)) ||
            (!accepted && fast_size != 0))
            fail("detail::base64url_decode_public disagrees with base64url_decode");
        if (capacity > 0) {
            std::unique_ptr<std::uint8_t[]> small = exact_buffer(capacity - 1);
            if (wsguard::detail::base64url_decode_public(text, small.get(), capacity - 1, fast_size))
                fail("detail::base64url_decode_public decoded into a buffer that is too small");
        }
    }

    // One byte less than needed: refused, nothing written past the buffer.
    if (capacity > 0) {
        std::unique_ptr<std::uint8_t[]> small = exact_buffer(capacity - 1);
        if (wsguard::base64url_decode(text, small.get(), capacity - 1, out_size) || out_size != 0)
            fail("decoded into a buffer that is too small");
    }

    // The fuzz input as raw bytes: encode into an exact buffer, decode back.
    const std::size_t chars = wsguard::base64url_encoded_size(size);
    std::unique_ptr<char[]> encoded(new char[chars == 0 ? 1 : chars]);
    if (wsguard::base64url_encode(data, size, encoded.get(), chars) != chars) fail("encode wrote the wrong length");
    std::unique_ptr<std::uint8_t[]> back = exact_buffer(size);
    if (!wsguard::base64url_decode(std::string_view(encoded.get(), chars), back.get(), size, out_size) ||
        out_size != size || (size != 0 && std::memcmp(back.get(), data, size) != 0))
        fail("encode/decode round trip failed");
    return 0;
}
