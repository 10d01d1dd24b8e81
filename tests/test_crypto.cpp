// Crypto: SHA-256 and HMAC-SHA256 against the FIPS 180-4 / RFC 4231 / OpenSSL
// vectors in tests/vectors/hmac_sha256.txt on every compression backend this
// machine can run; strict base64url; constant-time equality; OS random bytes.
#include <wsguard.hpp>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "catch.hpp"

namespace {

using bytes = std::vector<std::uint8_t>;
using wsguard::detail::sha256_backend;

struct vector_case {
    std::string name;
    std::string source;
    std::string alg;
    bytes key;
    bytes data;
    std::size_t key_len = 0;
    std::size_t data_len = 0;
    std::size_t trunc_bytes = 0;  // 0: the whole MAC
    bytes mac;
    bytes mac_untruncated;
};

int hex_digit(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

// Lowercase hex only, as the file promises; anything else fails the test.
bool parse_hex(const std::string& text, bytes& out) {
    if (text.size() % 2 != 0) return false;
    out.clear();
    for (std::size_t i = 0; i < text.size(); i += 2) {
        const int hi = hex_digit(text[i]);
        const int lo = hex_digit(text[i + 1]);
        if (hi < 0 || lo < 0) return false;
        out.push_back(static_cast<std::uint8_t>(hi * 16 + lo));
    }
    return true;
}

std::string to_hex(const std::uint8_t* p, std::size_t n) {
    static const char digits[] = "0123456789abcdef";
    std::string s;
    for (std::size_t i = 0; i < n; ++i) {
        s += digits[p[i] >> 4];
        s += digits[p[i] & 15];
    }
    return s;
}
std::string to_hex(const wsguard::sha256_digest& d) { return to_hex(d.data(), d.size()); }
std::string to_hex(const bytes& b) { return to_hex(b.data(), b.size()); }

// Parses the whole file; `problems` collects anything malformed so the test can fail on it.
std::vector<vector_case> load_vectors(std::vector<std::string>& problems) {
    std::vector<vector_case> cases;
    std::ifstream file(WSGUARD_TEST_VECTORS_DIR "/hmac_sha256.txt");
    if (!file) {
        problems.push_back("cannot open " WSGUARD_TEST_VECTORS_DIR "/hmac_sha256.txt");
        return cases;
    }
    vector_case current;
    bool open = false;
    std::size_t repeat = 1;
    bytes data_unit;
    auto close_block = [&] {
        if (!open) return;
        for (std::size_t i = 0; i < repeat; ++i) current.data.insert(current.data.end(), data_unit.begin(), data_unit.end());
        if (current.key.size() != current.key_len) problems.push_back(current.name + ": key_len mismatch");
        if (current.data.size() != current.data_len) problems.push_back(current.name + ": data_len mismatch");
        if (current.mac.empty()) problems.push_back(current.name + ": no mac");
        cases.push_back(current);
        current = vector_case{};
        data_unit.clear();
        repeat = 1;
        open = false;
    };
    std::string line;
    while (std::getline(file, line)) {
        if (!line.empty() && line.back() == '\r') line.pop_back();
        if (line.empty()) {
            close_block();
            continue;
        }
        if (line[0] == '#') continue;
        const std::size_t eq = line.find('=');
        if (eq == std::string::npos) {
            problems.push_back("line without '=': " + line);
            continue;
        }
        open = true;
        const std::string field = line.substr(0, eq);
        const std::string value = line.substr(eq + 1);
        bool ok = true;
        if (field == "name") current.name = value;
        else if (field == "source") current.source = value;
        else if (field == "alg") current.alg = value;
        else if (field == "key") ok = parse_hex(value, current.key);
        else if (field == "data") ok = parse_hex(value, data_unit);
        else if (field == "key_len") current.key_len = std::stoul(value);
        else if (field == "data_len") current.data_len = std::stoul(value);
        else if (field == "repeat") repeat = std::stoul(value);
        else if (field == "trunc_bytes") current.trunc_bytes = std::stoul(value);
        else if (field == "mac") ok = parse_hex(value, current.mac);
        else if (field == "mac_untruncated_openssl") ok = parse_hex(value, current.mac_untruncated);
        else problems.push_back("unknown field: " + field);
        if (!ok) problems.push_back(current.name + ": bad hex in " + field);
    }
    close_block();
    return cases;
}

const std::vector<vector_case>& vectors() {
    static std::vector<std::string> problems;
    static const std::vector<vector_case> cases = load_vectors(problems);
    std::string all;
    for (const std::string& p : problems) all += p + "; ";
    INFO(all);
    REQUIRE(problems.empty());
    return cases;
}

// Split points for the incremental APIs: deterministic, from a fixed seed.
std::vector<std::size_t> random_cuts(std::size_t size, std::mt19937& rng) {
    std::vector<std::size_t> cuts{0};
    std::size_t at = 0;
    while (at < size) {
        // Mostly small pieces (to cross block edges often), sometimes large ones.
        const std::size_t max_piece = rng() % 4 == 0 ? 300 : 70;
        at = std::min(size, at + rng() % (max_piece + 1));
        cuts.push_back(at);
    }
    return cuts;
}

template <class Sink>
void feed_in_pieces(Sink& sink, const bytes& data, std::mt19937& rng) {
    const std::vector<std::size_t> cuts = random_cuts(data.size(), rng);
    for (std::size_t i = 1; i < cuts.size(); ++i) sink.update(data.data() + cuts[i - 1], cuts[i] - cuts[i - 1]);
    sink.update(data.data() + data.size(), 0);  // an empty update changes nothing
}

std::string expected_prefix(const vector_case& v, const wsguard::sha256_digest& got) {
    return to_hex(got.data(), v.trunc_bytes != 0 ? v.trunc_bytes : got.size());
}

const char* name_of(sha256_backend b) { return wsguard::detail::sha256_backend_name(b); }

}  // namespace

TEST_CASE("the vector file parses and holds the FIPS 180-4 and RFC 4231 vectors") {
    const std::vector<vector_case>& cases = vectors();
    REQUIRE(cases.size() >= 35);
    std::size_t rfc4231 = 0, fips = 0, sha = 0, hmac = 0;
    for (const vector_case& v : cases) {
        rfc4231 += v.source == "rfc4231";
        fips += v.source == "fips180-4";
        sha += v.alg == "sha256";
        hmac += v.alg == "hmac-sha256";
        CHECK((v.alg == "sha256" || v.alg == "hmac-sha256"));
    }
    CHECK(rfc4231 == 7);
    CHECK(fips == 3);
    CHECK(sha + hmac == cases.size());
}

TEST_CASE("the portable backend is always available and the active one is among the available") {
    const std::vector<sha256_backend> backends = wsguard::detail::available_backends();
    REQUIRE(!backends.empty());
    CHECK(backends.front() == sha256_backend::portable);
    CHECK(std::find(backends.begin(), backends.end(), wsguard::detail::sha256_active_backend()) != backends.end());
    std::string names;
    for (sha256_backend b : backends) names += std::string(" ") + name_of(b);
    std::printf("crypto: SHA-256 backends tested on this machine:%s (active: %s)\n", names.c_str(),
                name_of(wsguard::detail::sha256_active_backend()));
}

TEST_CASE("sha256 matches every vector on every backend, one-shot and incremental") {
    std::mt19937 rng(20261121);
    for (sha256_backend backend : wsguard::detail::available_backends()) {
        for (const vector_case& v : vectors()) {
            if (v.alg != "sha256") continue;
            INFO(v.name << " on " << name_of(backend));
            const std::string expected = to_hex(v.mac);

            CHECK(to_hex(wsguard::detail::sha256_with(wsguard::detail::sha256_compress_for(backend), v.data.data(),
                                                      v.data.size())) == expected);

            wsguard::sha256_hasher whole = wsguard::detail::sha256_hasher_for(backend);
            whole.update(v.data.data(), v.data.size());
            CHECK(to_hex(whole.finish()) == expected);
            // finish() resets: the same hasher hashes the next message from scratch.
            whole.update(v.data.data(), v.data.size());
            CHECK(to_hex(whole.finish()) == expected);

            wsguard::sha256_hasher pieces = wsguard::detail::sha256_hasher_for(backend);
            feed_in_pieces(pieces, v.data, rng);
            CHECK(to_hex(pieces.finish()) == expected);
        }
    }
    // The public one-shots use the active backend.
    for (const vector_case& v : vectors()) {
        if (v.alg != "sha256") continue;
        INFO(v.name);
        CHECK(to_hex(wsguard::sha256(v.data.data(), v.data.size())) == to_hex(v.mac));
        const std::string_view text(reinterpret_cast<const char*>(v.data.data()), v.data.size());
        CHECK(to_hex(wsguard::sha256(text)) == to_hex(v.mac));
        wsguard::sha256_hasher hasher;  // the public constructor: the active backend
        hasher.update(text);
        CHECK(to_hex(hasher.finish()) == to_hex(v.mac));
        hasher.update(v.data.data(), v.data.size());  // finish() reset it
        CHECK(to_hex(hasher.finish()) == to_hex(v.mac));
    }
}

TEST_CASE("hmac_sha256 matches every vector on every backend: one-shot, key object, stream in pieces") {
    std::mt19937 rng(4231);
    for (sha256_backend backend : wsguard::detail::available_backends()) {
        for (const vector_case& v : vectors()) {
            if (v.alg != "hmac-sha256") continue;
            INFO(v.name << " on " << name_of(backend));
            const std::string expected = to_hex(v.mac);

            const wsguard::hmac_sha256_key key = wsguard::detail::hmac_sha256_key_for(backend, v.key.data(), v.key.size());
            const wsguard::sha256_digest mac = key.mac(v.data.data(), v.data.size());
            CHECK(expected_prefix(v, mac) == expected);
            if (!v.mac_untruncated.empty()) CHECK(to_hex(mac) == to_hex(v.mac_untruncated));
            // The key object is reusable: a second MAC with it gives the same answer.
            CHECK(key.mac(v.data.data(), v.data.size()) == mac);

            wsguard::hmac_sha256_key::stream whole = key.begin();
            whole.update(v.data.data(), v.data.size());
            CHECK(whole.finish() == mac);

            wsguard::hmac_sha256_key::stream pieces = key.begin();
            feed_in_pieces(pieces, v.data, rng);
            CHECK(pieces.finish() == mac);

            // A prefix absorbed once (whole blocks or not), then a copy of the
            // stream per message (the ticket MAC's shape): each copy continues
            // on its own and the prefix stream is left as it was.
            for (std::size_t split : {std::size_t{0}, std::size_t{64}, std::size_t{128}, v.data.size() / 2}) {
                if (split > v.data.size()) continue;
                CAPTURE(split);
                wsguard::hmac_sha256_key::stream prefix = key.begin();
                prefix.update(v.data.data(), split);
                for (int copy = 0; copy < 2; ++copy) {
                    wsguard::hmac_sha256_key::stream message = prefix;
                    message.update(v.data.data() + split, v.data.size() - split);
                    CHECK(message.finish() == mac);
                }
                prefix.update(v.data.data() + split, v.data.size() - split);
                CHECK(prefix.finish() == mac);
            }
        }
    }
    for (const vector_case& v : vectors()) {
        if (v.alg != "hmac-sha256") continue;
        INFO(v.name);
        const std::string_view key(reinterpret_cast<const char*>(v.key.data()), v.key.size());
        const std::string_view data(reinterpret_cast<const char*>(v.data.data()), v.data.size());
        CHECK(expected_prefix(v, wsguard::hmac_sha256(v.key.data(), v.key.size(), v.data.data(), v.data.size())) ==
              to_hex(v.mac));
        CHECK(expected_prefix(v, wsguard::hmac_sha256(key, data)) == to_hex(v.mac));
        CHECK(expected_prefix(v, wsguard::hmac_sha256_key(key).mac(data)) == to_hex(v.mac));
        wsguard::hmac_sha256_key::stream stream = wsguard::hmac_sha256_key(key).begin();  // outlives its key
        stream.update(data);
        CHECK(expected_prefix(v, stream.finish()) == to_hex(v.mac));
    }
}

TEST_CASE("every backend agrees with the portable one on random keys and messages of every length up to 300") {
    std::mt19937 rng(7);
    for (sha256_backend backend : wsguard::detail::available_backends()) {
        INFO(name_of(backend));
        for (std::size_t size = 0; size <= 300; ++size) {
            bytes message(size), key(rng() % 200);
            for (std::uint8_t& b : message) b = static_cast<std::uint8_t>(rng());
            for (std::uint8_t& b : key) b = static_cast<std::uint8_t>(rng());
            CAPTURE(size, key.size());
            wsguard::sha256_hasher simd = wsguard::detail::sha256_hasher_for(backend);
            wsguard::sha256_hasher portable = wsguard::detail::sha256_hasher_for(sha256_backend::portable);
            simd.update(message.data(), message.size());
            portable.update(message.data(), message.size());
            CHECK(simd.finish() == portable.finish());
            const wsguard::sha256_digest expected =
                wsguard::detail::hmac_sha256_key_for(sha256_backend::portable, key.data(), key.size()).mac(message.data(), message.size());
            const wsguard::hmac_sha256_key simd_key = wsguard::detail::hmac_sha256_key_for(backend, key.data(), key.size());
            CHECK(simd_key.mac(message.data(), message.size()) == expected);
            // A copied stream after a prefix of whole blocks (the ticket MAC's
            // shape) and after a partly buffered one.
            for (std::size_t split : {std::size_t{64}, std::size_t{5}, size}) {
                if (split > size) continue;
                wsguard::hmac_sha256_key::stream stream = simd_key.begin();
                stream.update(message.data(), split);
                wsguard::hmac_sha256_key::stream rest = stream;
                rest.update(message.data() + split, size - split);
                CHECK(rest.finish() == expected);
            }
        }
    }
}

TEST_CASE("a backend the CPU lacks falls back to portable code and still gives correct digests") {
    for (sha256_backend backend : {sha256_backend::x86_shani, sha256_backend::armv8_sha2}) {
        INFO(name_of(backend));
        wsguard::sha256_hasher hasher = wsguard::detail::sha256_hasher_for(backend);
        hasher.update("abc");
        CHECK(to_hex(hasher.finish()) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        if (!wsguard::detail::sha256_backend_available(backend)) {
            CHECK(wsguard::detail::sha256_compress_for(backend) == &wsguard::detail::sha256_compress_portable);
        }
    }
}

TEST_CASE("hmac_sha256 with a key over 64 bytes equals hmac_sha256 with the key's hash (RFC 2104)") {
    std::mt19937 rng(2104);
    for (std::size_t key_size : {65u, 100u, 131u, 1000u}) {
        CAPTURE(key_size);
        bytes key(key_size);
        for (std::uint8_t& b : key) b = static_cast<std::uint8_t>(rng());
        const wsguard::sha256_digest hashed = wsguard::sha256(key.data(), key.size());
        const std::string_view message = "a message of some length";
        const std::string_view long_key(reinterpret_cast<const char*>(key.data()), key.size());
        const std::string_view hashed_key(reinterpret_cast<const char*>(hashed.data()), hashed.size());
        CHECK(wsguard::hmac_sha256(long_key, message) == wsguard::hmac_sha256(hashed_key, message));
    }
    // Exactly 64 bytes is used as is, so it differs from its hash.
    const std::string key64(64, 'k');
    const wsguard::sha256_digest hashed = wsguard::sha256(key64);
    CHECK(wsguard::hmac_sha256(key64, "m") !=
          wsguard::hmac_sha256(std::string_view(reinterpret_cast<const char*>(hashed.data()), hashed.size()), "m"));
}

TEST_CASE("copies of a key object and of a stream are independent") {
    const wsguard::hmac_sha256_key key(std::string_view("0123456789abcdef0123456789abcdef"));
    wsguard::hmac_sha256_key copy = key;
    CHECK(copy.mac("x") == key.mac("x"));

    wsguard::hmac_sha256_key::stream a = key.begin();
    a.update("common prefix, ");
    wsguard::hmac_sha256_key::stream b = a;
    a.update("then one ending");
    b.update("then another");
    CHECK(a.finish() == key.mac("common prefix, then one ending"));
    CHECK(b.finish() == key.mac("common prefix, then another"));
}

TEST_CASE("one key object serves MACs to many threads at once", "[concurrency]") {
    // The key object is immutable after construction and the backend choice is
    // a function-local static: both safe to share (the TSan job checks this).
    const wsguard::hmac_sha256_key key(std::string_view("a shared key of thirty-two bytes"));
    const wsguard::sha256_digest expected = key.mac("message");
    std::vector<int> agreed(8, 0);
    std::vector<std::thread> threads;
    for (std::size_t t = 0; t < agreed.size(); ++t) {
        threads.emplace_back([&key, &expected, &agreed, t] {
            for (int i = 0; i < 200; ++i) agreed[t] += key.mac("message") == expected && wsguard::sha256("x") == wsguard::sha256("x");
        });
    }
    for (std::thread& thread : threads) thread.join();
    for (int count : agreed) CHECK(count == 200);
}

TEST_CASE("constant_time_equal is true only for equal buffers") {
    std::uint8_t a[32], b[32];
    for (int i = 0; i < 32; ++i) a[i] = b[i] = static_cast<std::uint8_t>(i * 37 + 1);
    CHECK(wsguard::constant_time_equal(a, b, 32));
    CHECK(wsguard::constant_time_equal(a, b, 0));
    CHECK(wsguard::constant_time_equal(nullptr, nullptr, 0));
    for (int i = 0; i < 32; ++i) {
        for (int bit = 0; bit < 8; ++bit) {
            b[i] ^= static_cast<std::uint8_t>(1u << bit);
            CAPTURE(i, bit);
            CHECK_FALSE(wsguard::constant_time_equal(a, b, 32));
            CHECK(wsguard::constant_time_equal(a, b, static_cast<std::size_t>(i)));  // the prefix before it still equal
            b[i] ^= static_cast<std::uint8_t>(1u << bit);
        }
    }
    const wsguard::sha256_digest d1 = wsguard::sha256("one"), d2 = wsguard::sha256("two");
    CHECK(wsguard::constant_time_equal(d1, d1));
    CHECK_FALSE(wsguard::constant_time_equal(d1, d2));
}

TEST_CASE("base64url matches the RFC 4648 vectors in the URL alphabet, without padding") {
    struct row {
        const char* raw;
        const char* encoded;
    };
    const row rows[] = {
        {"", ""}, {"f", "Zg"}, {"fo", "Zm8"}, {"foo", "Zm9v"}, {"foob", "Zm9vYg"}, {"fooba", "Zm9vYmE"},
        {"foobar", "Zm9vYmFy"}, {"\xfb\xff", "-_8"}, {"\xff\xff\xff", "____"}, {"\xf8", "-A"},
    };
    for (const row& r : rows) {
        const std::string raw = r.raw;
        INFO(r.encoded);
        CHECK(wsguard::base64url_encode(reinterpret_cast<const std::uint8_t*>(raw.data()), raw.size()) == r.encoded);
        std::uint8_t out[16];
        std::size_t size = 99;
        REQUIRE(wsguard::base64url_decode(r.encoded, out, sizeof out, size));
        CHECK(std::string(reinterpret_cast<const char*>(out), size) == raw);
    }
    // Every 6-bit value maps to its character and back.
    const std::string alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    for (std::uint32_t v = 0; v < 64; ++v) {
        CHECK(wsguard::detail::base64url_char(v) == alphabet[v]);
        CHECK(wsguard::detail::base64url_value(static_cast<unsigned char>(alphabet[v])) == v);
    }
}

TEST_CASE("base64url round-trips every length from 0 to 100") {
    std::mt19937 rng(4648);
    for (std::size_t size = 0; size <= 100; ++size) {
        CAPTURE(size);
        bytes raw(size);
        for (std::uint8_t& b : raw) b = static_cast<std::uint8_t>(rng());
        char text[200];
        const std::size_t chars = wsguard::base64url_encode(raw.data(), raw.size(), text, sizeof text);
        CHECK(chars == wsguard::base64url_encoded_size(size));
        CHECK(wsguard::base64url_max_decoded_size(chars) == size);
        CHECK(wsguard::base64url_encode(raw.data(), raw.size()) == std::string(text, chars));
        std::uint8_t back[100];
        std::size_t back_size = 0;
        REQUIRE(wsguard::base64url_decode(std::string_view(text, chars), back, sizeof back, back_size));
        CHECK(bytes(back, back + back_size) == raw);
        // An exactly sized output buffer is enough; one byte less is refused.
        CHECK(wsguard::base64url_decode(std::string_view(text, chars), back, size, back_size));
        if (size > 0) {
            CHECK_FALSE(wsguard::base64url_decode(std::string_view(text, chars), back, size - 1, back_size));
            CHECK(back_size == 0);
            CHECK(wsguard::base64url_encode(raw.data(), raw.size(), text, chars - 1) == 0);
        }
    }
}

TEST_CASE("base64url_decode rejects every non-canonical or foreign form") {
    const std::string_view rejected[] = {
        "Z",             // length 1 mod 4
        "Zm9vY",         // length 1 mod 4
        "Zg==",          // padding
        "Zg=",           // padding
        "Zm8=",          // padding
        "=",             // padding alone
        "Zh",            // non-zero trailing bits (one byte)
        "Zm9",           // non-zero trailing bits (two bytes)
        "Zm+v",          // standard-alphabet '+'
        "Zm/v",          // standard-alphabet '/'
        "Zm9v\n",        // trailing newline
        " Zm9v",         // leading space
        "Zm 9v",         // inner space
        "Zm9v\t",        // tab
        "Zm9v\r\n",      // CRLF
        "Zm.v",          // other punctuation
        "Zm%2",          // percent-encoding
        "Zm9\xc3\xa9",   // UTF-8
        std::string_view("Zm\0v", 4),  // NUL
    };
    for (std::string_view text : rejected) {
        INFO("input: " << to_hex(reinterpret_cast<const std::uint8_t*>(text.data()), text.size()));
        std::uint8_t out[16];
        std::size_t size = 99;
        CHECK_FALSE(wsguard::base64url_decode(text, out, sizeof out, size));
        CHECK(size == 0);
    }
}

TEST_CASE("base64url_decode accepts a byte in any position exactly when it is in the alphabet") {
    const std::string alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    for (int c = 0; c < 256; ++c) {
        for (std::size_t position = 0; position < 4; ++position) {
            std::string text = "AAAA";
            text[position] = static_cast<char>(c);
            std::uint8_t out[3];
            std::size_t size = 0;
            CAPTURE(c, position);
            CHECK(wsguard::base64url_decode(text, out, sizeof out, size) ==
                  (alphabet.find(static_cast<char>(c)) != std::string::npos));
        }
    }
}

TEST_CASE("base64url_decode accepts a short tail exactly when re-encoding gives it back") {
    // All 64^2 two-character and 64^3 three-character strings: the canonical
    // ones are exactly those whose unused low bits are zero.
    const std::string alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    std::size_t accepted2 = 0, accepted3 = 0;
    for (char a : alphabet) {
        for (char b : alphabet) {
            const std::string two{a, b};
            std::uint8_t out[2];
            std::size_t size = 0;
            if (wsguard::base64url_decode(two, out, sizeof out, size)) {
                ++accepted2;
                CHECK(wsguard::base64url_encode(out, size) == two);
            }
            for (char c : alphabet) {
                const std::string three{a, b, c};
                if (wsguard::base64url_decode(three, out, sizeof out, size)) {
                    ++accepted3;
                    REQUIRE(wsguard::base64url_encode(out, size) == three);
                }
            }
        }
    }
    CHECK(accepted2 == 256);    // one per byte value
    CHECK(accepted3 == 65536);  // one per two-byte value
}

TEST_CASE("base64url_decode never writes past out_capacity") {
    std::uint8_t buffer[8];
    std::fill(buffer, buffer + sizeof buffer, std::uint8_t{0xAA});
    std::size_t size = 0;
    CHECK_FALSE(wsguard::base64url_decode("Zm9vYmFy", buffer, 5, size));  // needs 6
    for (std::uint8_t b : buffer) CHECK(b == 0xAA);
    // A refusal found late (bad last character) zeroes what it wrote and nothing more.
    CHECK_FALSE(wsguard::base64url_decode("Zm9vYm=y", buffer, 6, size));
    for (int i = 6; i < 8; ++i) CHECK(buffer[i] == 0xAA);
    for (int i = 0; i < 6; ++i) CHECK(buffer[i] == 0);
}

TEST_CASE("base64url sizes are exact and saturate instead of overflowing") {
    CHECK(wsguard::base64url_encoded_size(0) == 0);
    CHECK(wsguard::base64url_encoded_size(1) == 2);
    CHECK(wsguard::base64url_encoded_size(2) == 3);
    CHECK(wsguard::base64url_encoded_size(3) == 4);
    CHECK(wsguard::base64url_encoded_size(32) == 43);
    CHECK(wsguard::base64url_max_decoded_size(43) == 32);
    CHECK(wsguard::base64url_max_decoded_size(5) == 3);
    const std::size_t huge = std::numeric_limits<std::size_t>::max();
    CHECK(wsguard::base64url_encoded_size(huge) == huge);
    CHECK(wsguard::base64url_encoded_size(huge / 4 * 3) == huge);
    static_assert(wsguard::base64url_encoded_size(16) == 22, "usable in constant expressions");
    char out[4];
    const std::uint8_t in[1] = {0};
    CHECK(wsguard::base64url_encode(in, huge, out, sizeof out) == 0);  // refused by size, never read
}

TEST_CASE("random_bytes fills buffers with fresh bytes from the OS") {
    std::uint8_t a[32] = {}, b[32] = {};
    REQUIRE(wsguard::random_bytes(a, sizeof a) == wsguard::reason::ok);
    REQUIRE(wsguard::random_bytes(b, sizeof b) == wsguard::reason::ok);
    CHECK_FALSE(wsguard::constant_time_equal(a, b, sizeof a));
    const std::uint8_t zero[32] = {};
    CHECK_FALSE(wsguard::constant_time_equal(a, zero, sizeof a));
    CHECK(wsguard::random_bytes(nullptr, 0) == wsguard::reason::ok);
}

TEST_CASE("random_bytes fills a buffer larger than one getrandom call returns") {
    // Linux returns at most 32 MiB - 1 per call: the rest needs the retry loop.
    bytes big((std::size_t{32} << 20) + 4096, 0);
    REQUIRE(wsguard::random_bytes(big.data(), big.size()) == wsguard::reason::ok);
    std::size_t zero_tail = 0;
    for (std::size_t i = big.size() - 64; i < big.size(); ++i) zero_tail += big[i] == 0;
    CHECK(zero_tail < 16);
}

TEST_CASE("the public (variable-time) base64url codec agrees with the constant-time one on every input") {
    // The fast decoder is used for tickets; it must accept and produce exactly
    // what the constant-time one does, or tickets would be read differently.
    const std::string chars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_=+/ \n\x00\xff.";
    std::uint64_t state = 0x9e3779b97f4a7c15ULL;
    auto next = [&state]() {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        return state;
    };
    std::size_t accepted = 0;
    for (int round = 0; round < 200000; ++round) {
        const std::size_t length = next() % 24;
        const bool only_alphabet = (round % 2) == 0;  // half the inputs are valid characters only
        std::string text;
        for (std::size_t i = 0; i < length; ++i) text += chars[next() % (only_alphabet ? 64 : chars.size())];
        std::uint8_t slow[24], fast[24];
        std::size_t slow_size = 99, fast_size = 99;
        const bool slow_ok = wsguard::base64url_decode(text, slow, sizeof slow, slow_size);
        const bool fast_ok = wsguard::detail::base64url_decode_public(text, fast, sizeof fast, fast_size);
        CAPTURE(text);
        REQUIRE(slow_ok == fast_ok);
        REQUIRE(slow_size == fast_size);
        if (slow_ok) {
            ++accepted;
            REQUIRE(std::memcmp(slow, fast, slow_size) == 0);
        }
    }
    CHECK(accepted > 10000);  // the comparison covered real decodings, not only refusals

    // And the fast encoder (tickets) writes exactly what the constant-time one does.
    for (std::size_t length = 0; length < 300; ++length) {
        std::vector<std::uint8_t> bytes(length);
        for (auto& b : bytes) b = static_cast<std::uint8_t>(next());
        CAPTURE(length);
        REQUIRE(wsguard::detail::base64url_encode_public(bytes.data(), length) == wsguard::base64url_encode(bytes.data(), length));
    }
    std::uint8_t small[2];
    std::size_t size = 0;
    CHECK_FALSE(wsguard::detail::base64url_decode_public("AAAA", small, sizeof small, size));  // 3 bytes do not fit
}

TEST_CASE("the public decoder agrees with the constant-time one at every length") {
    // Both decoders must read every input alike: detail::base64url_decode_public
    // (the tickets' table decoder) and the constant-time base64url_decode.
    // Lengths 0..300; each length is tried valid, with every byte value planted
    // at several positions, and with every last character (non-canonical tails).
    const std::string alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    std::mt19937 rng(4648);
    std::size_t accepted = 0, refused = 0;
    const auto agree = [&](const std::string& text) {
        std::uint8_t ct[240], fast[240];
        std::size_t ct_size = 99, fast_size = 99;
        const bool ct_ok = wsguard::base64url_decode(text, ct, sizeof ct, ct_size);
        const bool fast_ok = wsguard::detail::base64url_decode_public(text, fast, sizeof fast, fast_size);
        CAPTURE(text);
        REQUIRE(ct_ok == fast_ok);
        REQUIRE(ct_size == fast_size);
        if (ct_ok) {
            ++accepted;
            REQUIRE(std::memcmp(ct, fast, ct_size) == 0);
        } else {
            ++refused;
        }
    };
    for (std::size_t length = 0; length <= 300; ++length) {
        CAPTURE(length);
        std::string valid(length, 'A');
        for (char& c : valid) c = alphabet[rng() % 64];
        // The unused bits of a short last group must be zero to be canonical.
        if (length % 4 == 2) valid.back() = alphabet[(rng() % 4) * 16];
        if (length % 4 == 3) valid.back() = alphabet[(rng() % 16) * 4];
        agree(valid);
        if (length == 0) continue;
        for (int byte = 0; byte < 256; ++byte) {
            for (std::size_t position : {std::size_t{0}, length - 1, (static_cast<std::size_t>(byte) * 7 + length) % length}) {
                std::string text = valid;
                text[position] = static_cast<char>(byte);
                agree(text);
            }
        }
        for (char last : alphabet) {
            std::string text = valid;
            text.back() = last;
            agree(text);
        }
    }
    CHECK(accepted > 10000);
    CHECK(refused > 10000);
}

TEST_CASE("the public decoder writes nothing past out_capacity at any length") {
    const std::string alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    for (std::size_t length = 0; length <= 300; ++length) {
        if (length % 4 == 1) continue;
        std::string text(length, 'A');
        for (std::size_t i = 0; i < length; ++i) text[i] = alphabet[(i * 37) % 64];
        if (length % 4 == 2) text.back() = 'A';
        if (length % 4 == 3) text.back() = 'E';
        const std::size_t exact = wsguard::base64url_max_decoded_size(length);
        std::vector<std::uint8_t> buffer(exact + 32, 0xEE);
        std::size_t size = 0;
        CAPTURE(length);
        REQUIRE(wsguard::detail::base64url_decode_public(text, buffer.data(), exact, size));
        CHECK(size == exact);
        for (std::size_t i = exact; i < buffer.size(); ++i) REQUIRE(buffer[i] == 0xEE);
    }
}

TEST_CASE("secure_wipe zeroes a key buffer", "[crypto]") {
    std::uint8_t secret[32];
    REQUIRE(wsguard::random_bytes(secret, sizeof secret) == wsguard::reason::ok);
    auto keys = wsguard::keyring::create(1, {{1, std::string_view(reinterpret_cast<const char*>(secret), sizeof secret)}});
    REQUIRE(keys);
    wsguard::secure_wipe(secret, sizeof secret);
    const volatile std::uint8_t* read = secret;  // read back through volatile: the stores happened
    for (std::size_t i = 0; i < sizeof secret; ++i) CHECK(read[i] == 0);
    wsguard::secure_wipe(nullptr, 0);  // nothing to wipe is fine
    // The keyring keeps its own derived copy: it still issues and verifies.
    const auto wall_t0 = std::chrono::system_clock::time_point(std::chrono::seconds(1'800'000'000));
    wsguard::memory_replay_store store = wsguard::memory_replay_store::create(16, wall_t0 - std::chrono::minutes(1)).value();  // older than clock_skew
    auto issuer = wsguard::ticket_issuer::create(*keys).value();
    auto verifier = wsguard::ticket_verifier<>::create(*keys, store).value();
    wsguard::ticket_request req;
    req.subject = "u";
    req.origin = "https://app.example.com";
    req.audience = "a";
    const auto issued = issuer.issue(req, wall_t0);
    REQUIRE(issued);
    wsguard::ticket_claims claims;
    CHECK(verifier
              .verify(wsguard::presented_ticket(issued.ticket), wsguard::expected_origin("https://app.example.com"),
                      wsguard::expected_audience("a"), claims, wall_t0)
              .allowed());
}
